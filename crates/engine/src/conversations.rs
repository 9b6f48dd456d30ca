//! The conversation queries: the list (paged, or what changed since a version), one
//! conversation, updates (read position, pin, mute, removal), removal by types, and unread
//! totals. Unread counts come from the store, derived from read positions; every change is a user
//! event in the user's inbox, pushed to all of the user's devices and synced by offline ones.

use std::cmp::Ordering;
use std::sync::Arc;

use tidings_proto::{
    CONVERSATION_EVENT_TYPE, Code, DELETED_EVENT_TYPE, QUIET_HOURS_EVENT_TYPE, READ_EVENT_TYPE,
    conversation_type,
};
use tidings_store::{
    Amend, AmendAction, AmendRefusal, AppendMessage, ConversationFilter, ConversationRecord,
    ConversationUpdate, HistoryFrom, HistoryQuery, Page, SearchQuery, WriteOp, WriteResult,
};
use tokio::sync::oneshot;

use crate::commit::{CommitReply, CommitRequest};
use crate::validate::{self, Refusal};
use crate::{ConversationOut, Delivered, Engine, Outbound, QueryAckOut, Session};

/// Conversations per page when the client does not say.
pub const PAGE_DEFAULT: u32 = 50;
/// The most conversations per page.
pub const PAGE_MAX: u32 = 100;

/// A conversation query from a client.
#[derive(Debug, Clone)]
pub enum ConversationQuery {
    List {
        types: Vec<u32>,
        limit: u32,
        page_token: String,
        changed_since: u64,
    },
    Get {
        conversation_type: u32,
        target: String,
    },
    Update(ConversationUpdateRequest),
    RemoveAll {
        types: Vec<u32>,
    },
    Unread {
        types: Vec<u32>,
    },
    History {
        conversation_type: u32,
        target: String,
        from: HistoryStart,
        count: u32,
    },
    Delete {
        conversation_type: u32,
        target: String,
        seqs: Vec<u64>,
    },
    SetBlocked {
        user: String,
        blocked: bool,
    },
    Blocklist,
    BlockStatus {
        user: String,
    },
    Amend {
        conversation_type: u32,
        target: String,
        seq: u64,
        action: AmendRequest,
    },
    SetQuietHours {
        start_minute: u32,
        minutes: u32,
    },
    QuietHours,
    /// Saves this device's push token or Web Push subscription; answered with the VAPID
    /// public key.
    RegisterPush(crate::push::PushTokenRequest),
    /// Removes this user's token (for Web Push, the endpoint).
    UnregisterPush {
        /// `webpush` (also when empty), `fcm` or `apns`.
        provider: String,
        token: String,
    },
    /// This connection's app went to the background (or came back).
    SetAppState {
        background: bool,
    },
    /// Uploads this device's MLS key packages (see [`Engine::publish_key_packages`]).
    PublishKeyPackages {
        key_packages: Vec<Vec<u8>>,
        replace: bool,
    },
    /// Claims a key package of each device of these users (see
    /// [`Engine::claim_key_packages`]).
    ClaimKeyPackages {
        users: Vec<String>,
        /// Devices (`user:device`) to leave out.
        except: Vec<String>,
    },
    Search {
        query: String,
        /// Only this conversation.
        conversation: Option<(u32, String)>,
        limit: u32,
        page_token: String,
    },
}

/// What a participant does to a message.
#[derive(Debug, Clone)]
pub enum AmendRequest {
    Recall,
    Edit { content: String },
    React { emoji: String, remove: bool },
}

/// Where a history page starts, as the client asked (at most one of these non-zero).
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryStart {
    pub before_seq: u64,
    pub after_seq: u64,
    pub before_time: i64,
    pub after_time: i64,
}

/// Messages per history page when the client does not say.
pub const HISTORY_DEFAULT: u32 = 20;
/// The most messages per history page, and per delete.
pub const HISTORY_MAX: u32 = 100;

#[derive(Debug, Clone, Default)]
pub struct ConversationUpdateRequest {
    pub conversation_type: u32,
    pub target: String,
    pub read_seq: u64,
    pub read_time: i64,
    pub pinned: Option<bool>,
    pub muted: Option<bool>,
    pub remove: bool,
    pub clear_before_time: i64,
    /// No read receipt to the other participant.
    pub silent: bool,
}

impl Session {
    /// Marks read the messages at these seqs of the user's own inbox, for protocols that name
    /// messages by their inbox position (seed 003's read confirmation): each conversation's
    /// read position moves up to the newest message named in it, as a conversation update
    /// would. Seqs that name no entry are skipped; at most 100 seqs are read. Returns how many
    /// conversations moved.
    pub async fn read_inbox(&self, seqs: &[u64]) -> Result<usize, Refusal> {
        let mut newest: std::collections::BTreeMap<(u32, String), u64> = Default::default();
        for &seq in seqs.iter().filter(|s| **s > 0).take(100) {
            let entries = self
                .engine
                .inner
                .store
                .inbox_after(&self.shared.user, seq - 1, 1)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "inbox read failed");
                    Refusal::from(Code::ServerError)
                })?;
            let Some(entry) = entries.into_iter().find(|e| e.inbox_seq == seq) else {
                continue;
            };
            let m = Delivered::for_viewer(&self.shared.user, Arc::new(entry.message), seq);
            if m.conversation_type() == 0 {
                continue;
            }
            let key = (m.conversation_type(), m.target_id().to_string());
            let read = newest.entry(key).or_default();
            *read = (*read).max(m.seq());
        }
        let moved = newest.len();
        for ((conversation_type, target), read_seq) in newest {
            self.update(ConversationUpdateRequest {
                conversation_type,
                target,
                read_seq,
                ..Default::default()
            })
            .await?;
        }
        Ok(moved)
    }

    /// Answers a conversation query; the QUERYACK arrives through the outbox.
    pub async fn conversation_query(&self, query_id: u32, query: ConversationQuery) {
        let answer = match self.answer(query).await {
            Ok(mut out) => {
                out.query_id = query_id;
                out
            }
            Err(refusal) => QueryAckOut::refused(query_id, refusal),
        };
        self.shared
            .reply(&self.engine, Outbound::QueryAck(Box::new(answer)));
    }

    async fn answer(&self, query: ConversationQuery) -> Result<QueryAckOut, Refusal> {
        match query {
            ConversationQuery::List {
                types,
                limit,
                page_token,
                changed_since,
            } => self.list(types, limit, &page_token, changed_since).await,
            ConversationQuery::Get {
                conversation_type,
                target,
            } => {
                check_key(conversation_type, &target)?;
                let found = self
                    .read(ConversationFilter {
                        one: Some((conversation_type, target)),
                        ..Default::default()
                    })
                    .await?;
                Ok(self.out(found.conversations, found.version))
            }
            ConversationQuery::Update(req) => self.update(req).await,
            ConversationQuery::History {
                conversation_type,
                target,
                from,
                count,
            } => self.history(conversation_type, &target, from, count).await,
            ConversationQuery::Delete {
                conversation_type,
                target,
                seqs,
            } => self.delete(conversation_type, &target, seqs).await,
            ConversationQuery::Amend {
                conversation_type,
                target,
                seq,
                action,
            } => self.amend(conversation_type, &target, seq, action).await,
            ConversationQuery::Search {
                query,
                conversation,
                limit,
                page_token,
            } => self.search(&query, conversation, limit, &page_token).await,
            ConversationQuery::SetQuietHours {
                start_minute,
                minutes,
            } => {
                if start_minute >= 1440 || minutes > 1440 {
                    return Err(Refusal::new(
                        Code::InvalidQuery,
                        "start_minute is 0-1439 and minutes 0-1440",
                    ));
                }
                let user = self.shared.user.clone();
                let content = serde_json::json!({"startMinute": start_minute, "minutes": minutes});
                let event = self.user_event(&user, QUIET_HOURS_EVENT_TYPE, content.to_string());
                self.commit_user_change(vec![
                    WriteOp::SetQuietHours {
                        user,
                        start_minute,
                        minutes,
                    },
                    WriteOp::Append(event),
                ])
                .await?;
                Ok(QueryAckOut {
                    quiet_hours: Some((start_minute, minutes)),
                    ..Default::default()
                })
            }
            ConversationQuery::QuietHours => {
                let hours = self
                    .engine
                    .inner
                    .store
                    .quiet_hours(&self.shared.user)
                    .await
                    .map_err(crate::store_failed("quiet hours read"))?;
                Ok(QueryAckOut {
                    quiet_hours: Some(hours),
                    ..Default::default()
                })
            }
            ConversationQuery::RegisterPush(request) => {
                let device = if self.shared.anonymous {
                    ""
                } else {
                    self.shared.device.as_str()
                };
                self.engine
                    .register_push_token(&self.shared.user, device, request)
                    .await
                    .map_err(|e| e.0)?;
                Ok(QueryAckOut {
                    vapid_public_key: self.engine.vapid_public_key().unwrap_or_default(),
                    ..Default::default()
                })
            }
            ConversationQuery::UnregisterPush { provider, token } => {
                let outcome = if crate::push::push_provider(&provider)
                    .is_ok_and(|p| p == tidings_store::PushProvider::WebPush)
                {
                    self.engine.unregister_push(&self.shared.user, &token).await
                } else {
                    self.engine
                        .unregister_push_token(&self.shared.user, &provider, &token)
                        .await
                };
                outcome.map_err(|e| e.0)?;
                Ok(QueryAckOut {
                    vapid_public_key: self.engine.vapid_public_key().unwrap_or_default(),
                    ..Default::default()
                })
            }
            ConversationQuery::SetAppState { background } => {
                self.shared.set_background(background);
                Ok(QueryAckOut::default())
            }
            ConversationQuery::PublishKeyPackages {
                key_packages,
                replace,
            } => {
                let device = if self.shared.anonymous {
                    ""
                } else {
                    self.shared.device.as_str()
                };
                let key_package_count = self
                    .engine
                    .publish_key_packages(&self.shared.user, device, key_packages, replace)
                    .await?;
                Ok(QueryAckOut {
                    key_package_count,
                    ..Default::default()
                })
            }
            ConversationQuery::ClaimKeyPackages { users, except } => {
                let key_packages = self
                    .engine
                    .claim_key_packages(&self.shared.user, users, except)
                    .await?;
                Ok(QueryAckOut {
                    key_packages,
                    ..Default::default()
                })
            }
            ConversationQuery::SetBlocked { user, blocked } => {
                self.set_blocked(user, blocked).await
            }
            ConversationQuery::BlockStatus { user } => {
                if !validate::is_user_id(&user) {
                    return Err(Refusal::new(
                        Code::InvalidTarget,
                        "a user id is 1-64 of A-Z a-z 0-9 _ - . @",
                    ));
                }
                let blocked = self
                    .engine
                    .inner
                    .store
                    .is_blocked(&self.shared.user, &user)
                    .await
                    .map_err(crate::store_failed("blocklist read"))?;
                Ok(QueryAckOut {
                    user_ids: if blocked { vec![user] } else { Vec::new() },
                    ..Default::default()
                })
            }
            ConversationQuery::Blocklist => {
                let user_ids = self
                    .engine
                    .inner
                    .store
                    .blocklist(&self.shared.user)
                    .await
                    .map_err(crate::store_failed("blocklist read"))?;
                Ok(QueryAckOut {
                    user_ids,
                    ..Default::default()
                })
            }
            ConversationQuery::RemoveAll { types } => self.remove_all(types).await,
            ConversationQuery::Unread { types } => {
                let all = self
                    .read(ConversationFilter {
                        types,
                        ..Default::default()
                    })
                    .await?;
                Ok(QueryAckOut {
                    unread: all.conversations.iter().map(|c| c.unread).sum(),
                    version: all.version,
                    ..Default::default()
                })
            }
        }
    }

    async fn list(
        &self,
        types: Vec<u32>,
        limit: u32,
        page_token: &str,
        changed_since: u64,
    ) -> Result<QueryAckOut, Refusal> {
        if changed_since > 0 {
            let changed = self
                .read(ConversationFilter {
                    types,
                    changed_since: Some(changed_since),
                    ..Default::default()
                })
                .await?;
            let mut conversations = changed.conversations;
            let fit = fitting(&conversations, self.budget(), record_bytes);
            let more = fit < conversations.len();
            conversations.truncate(fit);
            let mut out = self.out(conversations, changed.version);
            // Too many changes for one answer: the client fetches the list from the start.
            out.has_more = more;
            return Ok(out);
        }
        if limit > PAGE_MAX {
            return Err(Refusal::new(
                Code::InvalidQuery,
                format!("limit must be at most {PAGE_MAX}"),
            ));
        }
        let limit = if limit == 0 { PAGE_DEFAULT } else { limit } as usize;
        let after = match page_token {
            "" => None,
            t => Some(SortKey::parse(t).ok_or_else(|| {
                Refusal::new(
                    Code::InvalidQuery,
                    "page_token is not one this server issued",
                )
            })?),
        };
        let all = self
            .read(ConversationFilter {
                types,
                ..Default::default()
            })
            .await?;
        let mut visible: Vec<(SortKey, ConversationRecord)> = all
            .conversations
            .into_iter()
            .filter(|c| !c.removed())
            .map(|c| (SortKey::of(&c), c))
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k.cmp(a) == Ordering::Greater))
            .collect();
        visible.sort_by(|a, b| a.0.cmp(&b.0));
        let fit = fitting(&visible, self.budget(), |(_, c)| record_bytes(c)).min(limit);
        let more = visible.len() > fit;
        visible.truncate(fit);
        let next_page_token = match (more, visible.last()) {
            (true, Some((k, _))) => k.token(),
            _ => String::new(),
        };
        let mut out = self.out(visible.into_iter().map(|(_, c)| c).collect(), all.version);
        out.next_page_token = next_page_token;
        Ok(out)
    }

    async fn update(&self, req: ConversationUpdateRequest) -> Result<QueryAckOut, Refusal> {
        check_key(req.conversation_type, &req.target)?;
        if req.read_time < 0 || req.clear_before_time < 0 {
            return Err(Refusal::new(
                Code::InvalidQuery,
                "times must not be negative",
            ));
        }
        if req.read_seq == 0
            && req.read_time == 0
            && req.clear_before_time == 0
            && req.pinned.is_none()
            && req.muted.is_none()
            && !req.remove
        {
            return Err(Refusal::new(
                Code::InvalidQuery,
                "the update changes nothing",
            ));
        }
        if req.conversation_type == conversation_type::GROUP {
            // Only members, and those who were, have a group's conversation.
            let found = self
                .read(ConversationFilter {
                    one: Some((req.conversation_type, req.target.clone())),
                    ..Default::default()
                })
                .await?;
            if found.conversations.is_empty() {
                return Err(Code::NotInGroup.into());
            }
        }
        let key = (req.conversation_type, req.target.clone());
        let update = self.update_of(req);
        self.commit_user_change(vec![WriteOp::UpdateConversation(Box::new(update))])
            .await?;
        let found = self
            .read(ConversationFilter {
                one: Some(key),
                ..Default::default()
            })
            .await?;
        Ok(self.out(found.conversations, found.version))
    }

    async fn remove_all(&self, types: Vec<u32>) -> Result<QueryAckOut, Refusal> {
        let all = self
            .read(ConversationFilter {
                types,
                ..Default::default()
            })
            .await?;
        let removable: Vec<&ConversationRecord> =
            all.conversations.iter().filter(|c| !c.removed()).collect();
        let more = removable.len() > REMOVE_MAX;
        let updates: Vec<WriteOp> = removable
            .into_iter()
            .take(REMOVE_MAX)
            .map(|c| {
                WriteOp::UpdateConversation(Box::new(self.update_of(ConversationUpdateRequest {
                    conversation_type: c.settings.conversation_type,
                    target: c.settings.target_id.clone(),
                    remove: true,
                    ..Default::default()
                })))
            })
            .collect();
        let mut conversations = Vec::new();
        if !updates.is_empty() {
            for r in self.commit_user_change(updates).await? {
                if let WriteResult::ConversationUpdated { settings, .. } = r {
                    conversations.push(ConversationOut {
                        settings,
                        latest: None,
                        unread: 0,
                        mentioned: 0,
                        removed: true,
                        peer_read_seq: 0,
                    });
                }
            }
        }
        Ok(QueryAckOut {
            conversations,
            // More remain: the client asks again.
            has_more: more,
            ..Default::default()
        })
    }

    fn update_of(&self, req: ConversationUpdateRequest) -> ConversationUpdate {
        let user = self.shared.user.clone();
        let receipt = (req.conversation_type == conversation_type::PRIVATE
            && req.target != user
            && !req.silent)
            .then(|| self.user_event(&req.target, READ_EVENT_TYPE, String::new()));
        ConversationUpdate {
            conversation_id: conversation_id(req.conversation_type, &user, &req.target)
                .unwrap_or_default(),
            conversation_type: req.conversation_type,
            target: req.target,
            read_seq: req.read_seq,
            read_time: req.read_time,
            pinned: req.pinned,
            muted: req.muted,
            remove: req.remove,
            clear_before_time: req.clear_before_time,
            // The store fills in the contents.
            event: self.user_event(&user, CONVERSATION_EVENT_TYPE, String::new()),
            receipt,
            user,
        }
    }

    /// A user event for `user` of `msg_type` with `content`; the committer gives it its uid and
    /// time.
    fn user_event(&self, user: &str, msg_type: &str, content: String) -> AppendMessage {
        let user = user.to_string();
        AppendMessage {
            conversation_type: conversation_type::USER_EVENT,
            conversation_id: format!("~{user}"),
            target: user.clone(),
            msg_type: msg_type.into(),
            content,
            recipients: vec![user],
            sender: user_event_sender(),
            ..Default::default()
        }
    }

    async fn history(
        &self,
        conversation_type: u32,
        target: &str,
        start: HistoryStart,
        count: u32,
    ) -> Result<QueryAckOut, Refusal> {
        let chatroom = conversation_type == conversation_type::CHATROOM;
        if chatroom {
            crate::chatrooms::check_id(target)?;
        } else {
            check_key(conversation_type, target)?;
        }
        if count > HISTORY_MAX {
            return Err(Refusal::new(
                Code::InvalidQuery,
                format!("count must be at most {HISTORY_MAX}"),
            ));
        }
        let given = [
            start.before_seq != 0,
            start.after_seq != 0,
            start.before_time != 0,
            start.after_time != 0,
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(Refusal::new(
                Code::InvalidQuery,
                "give at most one of before_seq, after_seq, before_time, after_time",
            ));
        }
        if start.before_time < 0 || start.after_time < 0 {
            return Err(Refusal::new(
                Code::InvalidQuery,
                "times must not be negative",
            ));
        }
        let from = if start.after_seq != 0 {
            HistoryFrom::AfterSeq(start.after_seq)
        } else if start.before_time != 0 {
            HistoryFrom::BeforeTime(start.before_time)
        } else if start.after_time != 0 {
            HistoryFrom::AfterTime(start.after_time)
        } else if start.before_seq != 0 {
            HistoryFrom::BeforeSeq(start.before_seq)
        } else {
            HistoryFrom::BeforeSeq(u64::MAX)
        };
        let count = if count == 0 { HISTORY_DEFAULT } else { count } as usize;
        if chatroom {
            let (messages, has_more) = self.chatroom_history(target, from, count).await?;
            return Ok(QueryAckOut {
                messages,
                has_more,
                ..Default::default()
            });
        }
        let user = &self.shared.user;
        let history = self
            .engine
            .user_history(user, conversation_type, target, from, count)
            .await?;
        // Within the answer's byte budget, keeping the messages nearest the starting point.
        let mut messages = history.messages;
        let mut has_more = history.has_more;
        let backwards = matches!(from, HistoryFrom::BeforeSeq(_) | HistoryFrom::BeforeTime(_));
        if backwards {
            messages.reverse();
        }
        let fit = fitting(&messages, self.budget(), message_bytes);
        if fit < messages.len() {
            messages.truncate(fit);
            has_more = true;
        }
        if backwards {
            messages.reverse();
        }
        Ok(QueryAckOut {
            messages: messages
                .into_iter()
                .map(|m| Delivered::for_viewer(user, Arc::new(m), 0))
                .collect(),
            has_more,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        conversation_type: u32,
        target: &str,
        mut seqs: Vec<u64>,
    ) -> Result<QueryAckOut, Refusal> {
        check_key(conversation_type, target)?;
        seqs.sort_unstable();
        seqs.dedup();
        if seqs.is_empty() || seqs.len() > HISTORY_MAX as usize || seqs[0] == 0 {
            return Err(Refusal::new(
                Code::InvalidQuery,
                format!("give 1-{HISTORY_MAX} seqs, each at least 1"),
            ));
        }
        let user = self.shared.user.clone();
        let content = serde_json::json!({
            "conversationType": conversation_type,
            "targetId": target,
            "seqs": seqs,
        })
        .to_string();
        let event = self.user_event(&user, DELETED_EVENT_TYPE, content);
        self.commit_user_change(vec![
            WriteOp::DeleteForUser {
                conversation_id: conversation_id(conversation_type, &user, target)?,
                user,
                seqs,
            },
            WriteOp::Append(event),
        ])
        .await?;
        Ok(QueryAckOut::default())
    }

    async fn search(
        &self,
        query: &str,
        conversation: Option<(u32, String)>,
        limit: u32,
        page_token: &str,
    ) -> Result<QueryAckOut, Refusal> {
        if !self.engine.inner.config.search {
            return Err(Refusal::new(
                Code::InvalidQuery,
                "search is turned off on this server",
            ));
        }
        let chars = query.chars().count();
        if chars == 0 || chars > 100 {
            return Err(Refusal::new(
                Code::InvalidQuery,
                "a search query is 1-100 characters",
            ));
        }
        if limit > HISTORY_MAX {
            return Err(Refusal::new(
                Code::InvalidQuery,
                format!("limit must be at most {HISTORY_MAX}"),
            ));
        }
        let before = match page_token {
            "" => 0,
            t => t.parse().map_err(|_| {
                Refusal::new(
                    Code::InvalidQuery,
                    "page_token is not one this server issued",
                )
            })?,
        };
        let user = &self.shared.user;
        let conversation_id = match &conversation {
            Some((conversation_type, target)) => {
                Some(conversation_id(*conversation_type, user, target)?)
            }
            None => None,
        };
        let limit = if limit == 0 { HISTORY_DEFAULT } else { limit } as usize;
        let page = self
            .engine
            .inner
            .store
            .search(
                user,
                SearchQuery {
                    text: query.to_string(),
                    conversation_id,
                    before,
                    limit,
                },
            )
            .await
            .map_err(crate::store_failed("search"))?;
        let mut messages = page.messages;
        let fit = fitting(&messages, self.budget(), message_bytes);
        let next = if fit < messages.len() {
            messages.truncate(fit);
            page.positions.get(fit - 1).copied()
        } else {
            page.next
        };
        Ok(QueryAckOut {
            messages: messages
                .into_iter()
                .map(|m| Delivered::for_viewer(user, Arc::new(m), 0))
                .collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
            ..Default::default()
        })
    }

    async fn amend(
        &self,
        conversation_type: u32,
        target: &str,
        seq: u64,
        action: AmendRequest,
    ) -> Result<QueryAckOut, Refusal> {
        check_key(conversation_type, target)?;
        if conversation_type == conversation_type::SYSTEM {
            return Err(Refusal::new(
                Code::UnknownConversationType,
                "messages of system conversations are not changed by their readers",
            ));
        }
        // Recalls, edits and reactions are sends too: the same limit applies.
        let limited = !self.engine.may_send(&self.shared.user);
        if limited {
            return Err(Refusal::new(
                Code::SendTooFast,
                format!(
                    "at most {} messages a second",
                    self.engine.inner.config.send_rate
                ),
            ));
        }
        let user = self.shared.user.clone();
        let conversation_id = conversation_id(conversation_type, &user, target)?;
        let config = &self.engine.inner.config;
        let action = match action {
            AmendRequest::Recall => {
                let not_before = if config.recall_window.is_zero() {
                    0
                } else {
                    self.engine.now_ms() - config.recall_window.as_millis() as i64
                };
                AmendAction::Recall { not_before }
            }
            AmendRequest::Edit { content } => {
                // The new content follows the rules of the message's type.
                let found = self
                    .engine
                    .inner
                    .store
                    .conversation_after(
                        &conversation_id,
                        Page {
                            after: seq.saturating_sub(1),
                            limit: 1,
                        },
                    )
                    .await
                    .map_err(crate::store_failed("message read"))?;
                let Some(m) = found.into_iter().find(|m| m.seq == seq) else {
                    return Err(Code::MessageNotFound.into());
                };
                validate::check_content(&m.msg_type, &content, config.max_content_bytes)?;
                let content = self.engine.filter_edit(content)?;
                let search_text = if config.search {
                    validate::search_text(&m.msg_type, &content)
                } else {
                    String::new()
                };
                AmendAction::Edit {
                    content,
                    search_text,
                }
            }
            AmendRequest::React { emoji, remove } => {
                if emoji.is_empty() || emoji.len() > 32 || emoji.chars().any(char::is_control) {
                    return Err(Refusal::new(
                        Code::InvalidQuery,
                        "an emoji is 1-32 bytes without control characters",
                    ));
                }
                AmendAction::React {
                    emoji,
                    add: !remove,
                }
            }
        };
        let op = amend_op(&user, conversation_type, target, seq, action, false)?;
        let results = self.commit_user_change(vec![op]).await?;
        let message = amended(results)?;
        Ok(QueryAckOut {
            messages: vec![Delivered::for_viewer(&user, Arc::new(message), 0)],
            ..Default::default()
        })
    }

    async fn set_blocked(&self, other: String, blocked: bool) -> Result<QueryAckOut, Refusal> {
        if !validate::is_user_id(&other) || other == self.shared.user {
            return Err(Refusal::new(
                Code::InvalidTarget,
                "a user id (1-64 of A-Z a-z 0-9 _ - . @) other than your own",
            ));
        }
        let max = self.engine.inner.config.max_blocklist;
        let ops = vec![WriteOp::SetBlocked {
            user: self.shared.user.clone(),
            other,
            blocked,
            max,
        }];
        let results = self
            .commit(|reply| CommitRequest::Write { ops, reply })
            .await?;
        match results.first() {
            Some(WriteResult::BlockSet) => Ok(QueryAckOut::default()),
            Some(WriteResult::BlocklistFull) => Err(Refusal::new(
                Code::InvalidQuery,
                format!("a blocklist holds at most {max} users"),
            )),
            other => {
                tracing::error!(?other, "unexpected store result for a blocklist change");
                Err(Code::ServerError.into())
            }
        }
    }

    async fn commit_user_change(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, Refusal> {
        self.commit(|reply| CommitRequest::UserChange { ops, reply })
            .await
    }

    /// Hands a request to the committer and waits for its results.
    async fn commit(
        &self,
        request: impl FnOnce(CommitReply) -> CommitRequest,
    ) -> Result<Vec<WriteResult>, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.engine
            .inner
            .commits
            .send(request(reply))
            .await
            .map_err(|_| Refusal::from(Code::ServerShutdown))?;
        match answer.await {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a user's change failed");
                Err(Code::ServerError.into())
            }
            Err(_) => Err(Code::ServerShutdown.into()),
        }
    }

    async fn read(
        &self,
        filter: ConversationFilter,
    ) -> Result<tidings_store::Conversations, Refusal> {
        self.engine
            .inner
            .store
            .conversations(&self.shared.user, filter)
            .await
            .map_err(crate::store_failed("conversation read"))
    }

    /// The bytes one answer may hold (see `Session::page_budget`).
    fn budget(&self) -> usize {
        self.engine.inner.config.outbound_queue_bytes / 4
    }

    fn out(&self, records: Vec<ConversationRecord>, version: u64) -> QueryAckOut {
        let user = &self.shared.user;
        QueryAckOut {
            conversations: records
                .into_iter()
                .map(|c| ConversationOut {
                    removed: c.removed(),
                    latest: c
                        .latest
                        .map(|m| Delivered::for_viewer(user, Arc::new(m), 0)),
                    unread: c.unread,
                    mentioned: c.mentioned,
                    peer_read_seq: c.peer_read_seq,
                    settings: c.settings,
                })
                .collect(),
            version,
            ..Default::default()
        }
    }
}

/// How many of `items`, from the first, fit in `budget` bytes (at least one, so a page always
/// moves on).
fn fitting<T>(items: &[T], budget: usize, size: impl Fn(&T) -> usize) -> usize {
    let mut used = 0;
    for (i, item) in items.iter().enumerate() {
        used += size(item);
        if i > 0 && used > budget {
            return i;
        }
    }
    items.len()
}

/// Roughly what a conversation costs in a QUERYACK.
fn record_bytes(c: &ConversationRecord) -> usize {
    64 + c.settings.target_id.len()
        + c.latest
            .as_ref()
            .map_or(0, |m| 160 + m.content.len() + m.push_text.len())
}

/// Roughly what a message costs in a QUERYACK.
fn message_bytes(m: &tidings_store::StoredMessage) -> usize {
    160 + m.content.len() + m.push_text.len() + 48 * m.reactions.len()
}

/// The store op of `user`'s amend of message `seq` of their conversation `(type, target)`, with
/// the event that records it. `moderated`: made by the app server, so the user's right to send
/// there (blocklist, group membership, mutes) is not checked.
pub(crate) fn amend_op(
    user: &str,
    conversation_type: u32,
    target: &str,
    seq: u64,
    action: AmendAction,
    moderated: bool,
) -> Result<WriteOp, Refusal> {
    let group = conversation_type == conversation_type::GROUP;
    // A system message is changed by the system account that sent it (`user`), in its
    // conversation with the one user it went to (`target`), who alone is told.
    let system = conversation_type == conversation_type::SYSTEM;
    let (conversation_id, recipients, participants) = if system {
        validate::check_user_id(target)?;
        let participant = tidings_store::Participant {
            user: target.to_string(),
            target: user.to_string(),
        };
        (
            system_conversation_id(user, target),
            vec![target.to_string()],
            vec![participant],
        )
    } else {
        let mut recipients = vec![user.to_string()];
        if target != user && !group {
            recipients.push(target.to_string());
        }
        (
            conversation_id(conversation_type, user, target)?,
            recipients,
            Vec::new(),
        )
    };
    let msg_type = action.event_type().into();
    Ok(WriteOp::Amend(Box::new(Amend {
        by: user.to_string(),
        conversation_id: conversation_id.clone(),
        seq,
        action,
        event: AppendMessage {
            conversation_type,
            conversation_id,
            sender: user.to_string(),
            target: target.to_string(),
            msg_type,
            recipients,
            participants,
            // The store sends it to the members, if the user may send there.
            to_group: group,
            ..Default::default()
        },
        blocking_recipient: (target != user && !group && !system && !moderated)
            .then(|| target.to_string()),
        moderated,
    })))
}

/// The message as an amend left it, or the refusal.
pub(crate) fn amended(results: Vec<WriteResult>) -> Result<tidings_store::StoredMessage, Refusal> {
    match results.into_iter().next() {
        Some(WriteResult::Amended { message, .. }) => Ok(message),
        Some(WriteResult::AmendRefused(r)) => Err(match r {
            AmendRefusal::NotFound => Code::MessageNotFound,
            AmendRefusal::NotSender => Code::NotMessageSender,
            AmendRefusal::TooLate => Code::RecallWindowPassed,
            AmendRefusal::Recalled => Code::MessageRecalled,
            AmendRefusal::Blocked => Code::RejectedByBlacklist,
            AmendRefusal::Group(r) => crate::validate::group_refusal_code(r),
            AmendRefusal::Encrypted => {
                return Err(Refusal::new(
                    Code::InvalidMessageType,
                    "an end-to-end encrypted message is edited and reacted to inside the \
                     encryption, as a message of the conversation (docs/e2ee.md)",
                ));
            }
            AmendRefusal::TooManyReactions => {
                return Err(Refusal::new(
                    Code::InvalidQuery,
                    format!(
                        "a message takes at most {} different emoji, and {} reactions a user",
                        tidings_store::MAX_EMOJI_PER_MESSAGE,
                        tidings_store::MAX_REACTIONS_PER_USER
                    ),
                ));
            }
        }
        .into()),
        other => {
            tracing::error!(?other, "unexpected store result for an amend");
            Err(Code::ServerError.into())
        }
    }
}

/// The most conversations one `removeConversations` removes; the answer says if more remain.
const REMOVE_MAX: usize = 200;

/// The refusal for a failed store call, logged with what was being done.
impl Engine {
    /// A page of the conversation `(conversation_type, target)` as `user` sees its history:
    /// without what they cleared or deleted, a group's only from their joining to their
    /// leaving, directed messages only if they are in the audience.
    pub(crate) async fn user_history(
        &self,
        user: &str,
        conversation_type: u32,
        target: &str,
        from: HistoryFrom,
        count: usize,
    ) -> Result<tidings_store::History, Refusal> {
        self.inner
            .store
            .history(
                user,
                HistoryQuery {
                    conversation_id: conversation_id(conversation_type, user, target)?,
                    from,
                    limit: count,
                },
            )
            .await
            .map_err(crate::store_failed("history read"))
    }
}

/// User events have no sender: they are the server's report of the user's own change.
fn user_event_sender() -> String {
    String::new()
}

pub(crate) fn check_key(conversation_type: u32, target: &str) -> Result<(), Refusal> {
    conversation_id(conversation_type, "", target).map(drop)
}

/// The conversation of system account `from` with `user`.
pub(crate) fn system_conversation_id(from: &str, user: &str) -> String {
    format!("{}:{from}|{user}", conversation_type::SYSTEM)
}

/// The canonical id of `user`'s conversation `(conversation_type, target)`, if it is one this
/// server keeps (PRIVATE or GROUP, with a well-formed target).
pub(crate) fn conversation_id(
    conversation_type: u32,
    user: &str,
    target: &str,
) -> Result<String, Refusal> {
    match conversation_type {
        conversation_type::PRIVATE => {
            validate::check_user_id(target)?;
            Ok(private_conversation_id(user, target))
        }
        conversation_type::GROUP => {
            validate::check_group_id(target)?;
            Ok(tidings_store::group_conversation_id(target))
        }
        conversation_type::SYSTEM => {
            validate::check_user_id(target)?;
            Ok(system_conversation_id(target, user))
        }
        other => Err(Refusal::new(
            Code::UnknownConversationType,
            format!("type {other} is not supported"),
        )),
    }
}

/// The list's order: pinned first, then newest message first (by time, then by uid: uids are
/// made in commit order), then by type and target so the order is total and paging never skips
/// or repeats a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SortKey {
    pinned: bool,
    time: i64,
    uid: String,
    conversation_type: u32,
    target: String,
}

impl SortKey {
    fn of(c: &ConversationRecord) -> SortKey {
        SortKey {
            pinned: c.settings.pinned,
            time: c.newest.as_ref().map_or(0, |m| m.sent_time),
            uid: c.newest.as_ref().map(|m| m.uid.clone()).unwrap_or_default(),
            conversation_type: c.settings.conversation_type,
            target: c.settings.target_id.clone(),
        }
    }

    /// `pinned:time:uid:type:target`; uids and user ids hold no ':'.
    fn token(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            u8::from(self.pinned),
            self.time,
            self.uid,
            self.conversation_type,
            self.target
        )
    }

    fn parse(token: &str) -> Option<SortKey> {
        let mut parts = token.splitn(5, ':');
        let pinned = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(SortKey {
            pinned,
            time: parts.next()?.parse().ok()?,
            uid: parts.next()?.to_string(),
            conversation_type: parts.next()?.parse().ok()?,
            target: parts.next()?.to_string(),
        })
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &SortKey) -> Ordering {
        other
            .pinned
            .cmp(&self.pinned)
            .then(other.time.cmp(&self.time))
            .then_with(|| other.uid.cmp(&self.uid))
            .then(self.conversation_type.cmp(&other.conversation_type))
            .then_with(|| self.target.cmp(&other.target))
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &SortKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The canonical id of the private conversation between two users (either order).
pub(crate) fn private_conversation_id(a: &str, b: &str) -> String {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    format!("{}:{a}|{b}", conversation_type::PRIVATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pinned: bool, time: i64, target: &str) -> SortKey {
        SortKey {
            pinned,
            time,
            uid: String::new(),
            conversation_type: 1,
            target: target.into(),
        }
    }

    #[test]
    fn pinned_first_then_newest_then_by_target() {
        let mut keys = [
            key(false, 5, "b"),
            key(true, 1, "z"),
            key(false, 9, "c"),
            key(false, 5, "a"),
        ];
        keys.sort();
        let order: Vec<_> = keys.iter().map(|k| k.target.as_str()).collect();
        assert_eq!(order, ["z", "c", "a", "b"]);
        // Within one millisecond, the later commit (the greater uid) first.
        let mut same_ms = [key(false, 5, "a"), key(false, 5, "b")];
        same_ms[0].uid = "01A".into();
        same_ms[1].uid = "01B".into();
        same_ms.sort();
        assert_eq!(same_ms[0].target, "b");
    }

    #[test]
    fn page_tokens_round_trip_and_bad_ones_are_refused() {
        let k = key(true, -3, "user@x.y");
        assert_eq!(SortKey::parse(&k.token()), Some(k));
        for bad in ["", "2:1:u:1:a", "1:x:u:1:a", "1:1", "0:1:u:-1:a", "0:1:1:a"] {
            assert_eq!(SortKey::parse(bad), None, "{bad}");
        }
    }
}
