//! The conversation list, read positions and unread counts, as the server keeps them for every
//! device of the user.

use serde::{Deserialize, Serialize};
use tidings_proto::conversation_type;
use tidings_proto::v1::{self, query::Body};
use tokio::sync::oneshot;

use crate::{Client, ClientError, Command, Message};

/// One conversation as this user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub conversation_type: u32,
    pub target_id: String,
    /// The newest message a person sees (its `inbox_seq` is 0: it is not an inbox entry here):
    /// never a recall, edit or reaction event; a recalled newest message shows `recalled`.
    pub latest: Option<Message>,
    /// Counted messages from others after the read position.
    pub unread: u64,
    /// Read up to this conversation seq.
    pub read_seq: u64,
    pub pinned: bool,
    pub muted: bool,
    /// Only in `conversations_changed` answers: the conversation was removed.
    pub removed: bool,
    /// This user's history is cleared up to this seq.
    pub cleared_seq: u64,
    /// Of the unread messages, those that mention this user (or everyone).
    pub mentioned: u64,
    /// PRIVATE only: the other participant has read up to this seq, as their read receipts
    /// told (0 otherwise).
    pub peer_read_seq: u64,
}

impl From<v1::Conversation> for Conversation {
    fn from(c: v1::Conversation) -> Conversation {
        Conversation {
            conversation_type: c.conversation_type,
            target_id: c.target_id,
            latest: c.latest.map(Message::from),
            unread: c.unread,
            read_seq: c.read_seq,
            pinned: c.pinned,
            muted: c.muted,
            removed: c.removed,
            cleared_seq: c.cleared_seq,
            mentioned: c.mentioned,
            peer_read_seq: c.peer_read_seq,
        }
    }
}

/// A page of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    /// Pass to [`Client::conversations`] for the next page; `None` on the last one.
    pub next_page_token: Option<String>,
    /// Pass to [`Client::conversations_changed`] later to get only what changed since.
    pub version: u64,
    /// From `conversations_changed`: more changed than one answer holds; fetch the list from
    /// the start instead.
    pub too_many_changes: bool,
}

/// A conversation's settings after a change, as reported by [`crate::Event::Conversation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationChange {
    pub conversation_type: u32,
    pub target_id: String,
    pub read_seq: u64,
    pub pinned: bool,
    pub muted: bool,
    /// Out of the list while its newest seq is at most this.
    pub removed_seq: u64,
    /// History up to this seq is cleared for this user.
    #[serde(default)]
    pub cleared_seq: u64,
    /// The event's position in the user's inbox (acknowledge it like a message's).
    #[serde(skip)]
    pub inbox_seq: u64,
}

/// A change to make to one conversation; build it with the methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationUpdate {
    pub conversation_type: u32,
    pub target_id: String,
    pub read_seq: u64,
    pub read_time: i64,
    pub pinned: Option<bool>,
    pub muted: Option<bool>,
    pub remove: bool,
    pub clear_before_time: i64,
    /// No read receipt to the other participant.
    pub silent: bool,
}

impl ConversationUpdate {
    /// A change to the private chat with `user`.
    pub fn private(user: &str) -> ConversationUpdate {
        ConversationUpdate {
            conversation_type: conversation_type::PRIVATE,
            target_id: user.into(),
            ..Default::default()
        }
    }
    /// A change to this user's side of a group's conversation.
    pub fn group(group_id: &str) -> ConversationUpdate {
        ConversationUpdate {
            conversation_type: conversation_type::GROUP,
            target_id: group_id.into(),
            ..Default::default()
        }
    }
    /// Read up to this conversation seq (never moves backwards).
    pub fn read_up_to(mut self, seq: u64) -> Self {
        self.read_seq = seq;
        self
    }
    /// Read everything sent at or before this time (ms since the epoch).
    pub fn read_until(mut self, time_ms: i64) -> Self {
        self.read_time = time_ms;
        self
    }
    pub fn pinned(mut self, on: bool) -> Self {
        self.pinned = Some(on);
        self
    }
    pub fn muted(mut self, on: bool) -> Self {
        self.muted = Some(on);
        self
    }
    /// Remove from the list (until its next message), reading everything in it.
    pub fn remove(mut self) -> Self {
        self.remove = true;
        self
    }
    /// Clear this user's history of what was sent at or before this time (ms), reading it.
    pub fn clear_history_until(mut self, time_ms: i64) -> Self {
        self.clear_before_time = time_ms;
        self
    }
    /// Move the read position without telling the other participant.
    pub fn silently(mut self) -> Self {
        self.silent = true;
        self
    }
}

/// How far the other participant of a private conversation has read, as reported by
/// [`crate::Event::ReadReceipt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    pub conversation_type: u32,
    /// The user who read.
    pub target_id: String,
    /// They have read up to this conversation seq.
    pub read_seq: u64,
    /// The event's position in this user's inbox (acknowledge it like a message's).
    #[serde(skip)]
    pub inbox_seq: u64,
}

/// Where a page of history starts. Continue paging by seq: `BeforeSeq` of the first message of
/// a page for older ones, `AfterSeq` of the last for newer ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStart {
    Newest,
    BeforeSeq(u64),
    AfterSeq(u64),
    BeforeTime(i64),
    AfterTime(i64),
}

/// A page of search results, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResults {
    pub messages: Vec<Message>,
    /// Pass to [`Client::search`] for the next page; `None` on the last one.
    pub next_page_token: Option<String>,
}

/// A page of history, in increasing seq order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    /// More messages exist beyond the page, in the direction it was read.
    pub has_more: bool,
}

/// Messages this user deleted for themself, as reported by [`crate::Event::MessagesDeleted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesDeleted {
    pub conversation_type: u32,
    pub target_id: String,
    pub seqs: Vec<u64>,
    /// The event's position in the user's inbox (acknowledge it like a message's).
    #[serde(skip)]
    pub inbox_seq: u64,
}

impl Client {
    pub(crate) async fn query(&self, body: Body) -> Result<v1::QueryAck, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Query(body, reply))
            .map_err(|_| ClientError::Closed)?;
        self.answer(rx).await
    }

    /// A page of the conversation list (pinned first, then newest message first), of `types`
    /// (empty: all), at most `limit` (0: the server's default of 50).
    pub async fn conversations(
        &self,
        types: &[u32],
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<ConversationPage, ClientError> {
        let ack = self
            .query(Body::ListConversations(v1::ListConversations {
                types: types.to_vec(),
                limit,
                page_token: page_token.unwrap_or_default().into(),
                changed_since: 0,
            }))
            .await?;
        Ok(page(ack))
    }

    /// The conversations that changed after `version` (a page's version): new messages and
    /// settings, removed ones included and marked.
    pub async fn conversations_changed(
        &self,
        version: u64,
    ) -> Result<ConversationPage, ClientError> {
        let ack = self
            .query(Body::ListConversations(v1::ListConversations {
                changed_since: version.max(1),
                ..Default::default()
            }))
            .await?;
        Ok(page(ack))
    }

    /// One conversation, if the user has it.
    pub async fn conversation(
        &self,
        conversation_type: u32,
        target_id: &str,
    ) -> Result<Option<Conversation>, ClientError> {
        let ack = self
            .query(Body::GetConversation(v1::GetConversation {
                conversation_type,
                target_id: target_id.into(),
            }))
            .await?;
        Ok(ack.conversations.into_iter().next().map(Conversation::from))
    }

    /// Applies `update`; answers the conversation as it is afterwards. Every device of the user,
    /// this one included, also gets an [`crate::Event::Conversation`].
    pub async fn update_conversation(
        &self,
        update: ConversationUpdate,
    ) -> Result<Conversation, ClientError> {
        let ack = self
            .query(Body::UpdateConversation(v1::UpdateConversation {
                conversation_type: update.conversation_type,
                target_id: update.target_id,
                read_seq: update.read_seq,
                read_time: update.read_time,
                pinned: update.pinned,
                muted: update.muted,
                remove: update.remove,
                clear_before_time: update.clear_before_time,
                silent: update.silent,
            }))
            .await?;
        ack.conversations
            .into_iter()
            .next()
            .map(Conversation::from)
            .ok_or(ClientError::Refused {
                code: tidings_proto::Code::ServerError.as_u32(),
                message: "the answer held no conversation".into(),
            })
    }

    /// Removes every conversation of `types` (empty: all); answers how many were removed.
    pub async fn remove_conversations(&self, types: &[u32]) -> Result<usize, ClientError> {
        let mut removed = 0;
        loop {
            // The server removes a bounded number per request and says when more remain.
            let ack = self
                .query(Body::RemoveConversations(v1::RemoveConversations {
                    types: types.to_vec(),
                }))
                .await?;
            removed += ack.conversations.len();
            if !ack.has_more {
                return Ok(removed);
            }
        }
    }

    /// The total unread count over conversations of `types` (empty: all).
    pub async fn unread(&self, types: &[u32]) -> Result<u64, ClientError> {
        let ack = self
            .query(Body::GetUnread(v1::GetUnread {
                types: types.to_vec(),
            }))
            .await?;
        Ok(ack.unread)
    }
}

impl Client {
    /// A page of at most `count` messages (0: 20; at most 100) of one conversation's history as
    /// this user sees it.
    pub async fn history(
        &self,
        conversation_type: u32,
        target_id: &str,
        start: HistoryStart,
        count: u32,
    ) -> Result<HistoryPage, ClientError> {
        let mut q = v1::GetHistory {
            conversation_type,
            target_id: target_id.into(),
            count,
            ..Default::default()
        };
        match start {
            HistoryStart::Newest => {}
            HistoryStart::BeforeSeq(s) => q.before_seq = s,
            HistoryStart::AfterSeq(s) => q.after_seq = s,
            HistoryStart::BeforeTime(t) => q.before_time = t,
            HistoryStart::AfterTime(t) => q.after_time = t,
        }
        let ack = self.query(Body::GetHistory(q)).await?;
        Ok(HistoryPage {
            messages: ack.messages.into_iter().map(Message::from).collect(),
            has_more: ack.has_more,
        })
    }

    /// Deletes messages (by conversation seq) for this user only; every device of the user gets
    /// an [`crate::Event::MessagesDeleted`].
    pub async fn delete_messages(
        &self,
        conversation_type: u32,
        target_id: &str,
        seqs: &[u64],
    ) -> Result<(), ClientError> {
        self.query(Body::DeleteMessages(v1::DeleteMessages {
            conversation_type,
            target_id: target_id.into(),
            seqs: seqs.to_vec(),
        }))
        .await
        .map(drop)
    }
}

impl Client {
    /// Blocks `user`: their messages to this user are refused (405) from now on.
    pub async fn block(&self, user: &str) -> Result<(), ClientError> {
        self.set_blocked(user, true).await
    }

    /// Unblocks `user`.
    pub async fn unblock(&self, user: &str) -> Result<(), ClientError> {
        self.set_blocked(user, false).await
    }

    async fn set_blocked(&self, user: &str, blocked: bool) -> Result<(), ClientError> {
        self.query(Body::SetBlocked(v1::SetBlocked {
            user_id: user.into(),
            blocked,
        }))
        .await
        .map(drop)
    }

    /// Whether this user blocks `user`.
    pub async fn is_blocked(&self, user: &str) -> Result<bool, ClientError> {
        let ack = self
            .query(Body::GetBlockStatus(v1::GetBlockStatus {
                user_id: user.into(),
            }))
            .await?;
        Ok(!ack.user_ids.is_empty())
    }

    /// The users this user blocks, in id order.
    pub async fn blocklist(&self) -> Result<Vec<String>, ClientError> {
        Ok(self
            .query(Body::GetBlocklist(v1::GetBlocklist {}))
            .await?
            .user_ids)
    }
}

impl Client {
    /// Recalls this user's message at `seq` (within the server's recall window, default two
    /// minutes): it becomes a tombstone everywhere. Answers the message as it now is.
    pub async fn recall(
        &self,
        conversation_type: u32,
        target_id: &str,
        seq: u64,
    ) -> Result<Message, ClientError> {
        self.amended(Body::RecallMessage(v1::RecallMessage {
            conversation_type,
            target_id: target_id.into(),
            seq,
        }))
        .await
    }

    /// Replaces the content of this user's message at `seq`.
    pub async fn edit(
        &self,
        conversation_type: u32,
        target_id: &str,
        seq: u64,
        content: &str,
    ) -> Result<Message, ClientError> {
        self.amended(Body::EditMessage(v1::EditMessage {
            conversation_type,
            target_id: target_id.into(),
            seq,
            content: content.into(),
        }))
        .await
    }

    /// Adds this user's `emoji` reaction to the message at `seq` (or removes it).
    pub async fn react(
        &self,
        conversation_type: u32,
        target_id: &str,
        seq: u64,
        emoji: &str,
        remove: bool,
    ) -> Result<Message, ClientError> {
        self.amended(Body::ReactToMessage(v1::ReactToMessage {
            conversation_type,
            target_id: target_id.into(),
            seq,
            emoji: emoji.into(),
            remove,
        }))
        .await
    }

    /// Messages this user can see whose text contains `query` (any substring; case-insensitive
    /// for ASCII), newest first, in one conversation if given, at most `limit` (0: 20).
    pub async fn search(
        &self,
        query: &str,
        conversation: Option<(u32, &str)>,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<SearchResults, ClientError> {
        let (conversation_type, target_id) = conversation.unwrap_or((0, ""));
        let ack = self
            .query(Body::SearchMessages(v1::SearchMessages {
                query: query.into(),
                conversation_type,
                target_id: target_id.into(),
                limit,
                page_token: page_token.unwrap_or_default().into(),
            }))
            .await?;
        Ok(SearchResults {
            messages: ack.messages.into_iter().map(Message::from).collect(),
            next_page_token: Some(ack.next_page_token).filter(|t| !t.is_empty()),
        })
    }

    async fn amended(&self, body: Body) -> Result<Message, ClientError> {
        let ack = self.query(body).await?;
        ack.messages
            .into_iter()
            .next()
            .map(Message::from)
            .ok_or(ClientError::Refused {
                code: tidings_proto::Code::ServerError.as_u32(),
                message: "the answer held no message".into(),
            })
    }
}

/// A user's presence, as answered or as reported by [`crate::Event::Presence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub user_id: String,
    /// Connected from at least one device.
    pub online: bool,
    /// When last connected (ms; 0 if never recorded); 0 while online.
    pub last_seen: i64,
}

impl Client {
    /// Watches the presence of `users` (at most 200; replaces what this client watched; empty
    /// stops watching): changes arrive as [`crate::Event::Presence`]. The SDK watches again after
    /// every reconnect. Answers their presence now.
    pub async fn subscribe_presence(&self, users: &[&str]) -> Result<Vec<Presence>, ClientError> {
        let users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let _ = self.commands.send(Command::Watch(users.clone()));
        let ack = self
            .query(Body::SubscribePresence(v1::SubscribePresence {
                user_ids: users,
            }))
            .await?;
        Ok(presence(ack))
    }

    /// The presence of `users` (1-200), once.
    pub async fn presence(&self, users: &[&str]) -> Result<Vec<Presence>, ClientError> {
        let ack = self
            .query(Body::GetPresence(v1::GetPresence {
                user_ids: users.iter().map(|u| u.to_string()).collect(),
            }))
            .await?;
        Ok(presence(ack))
    }
}

/// Another user's public profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub user_id: String,
    /// Empty if never set.
    pub name: String,
    /// A link to the user's picture; empty if never set.
    pub portrait: String,
}

impl Client {
    /// The names and portraits of `users` (1-100), each once, in the order asked. A user the
    /// server does not know comes back with an empty name and portrait.
    pub async fn users(&self, users: &[&str]) -> Result<Vec<UserProfile>, ClientError> {
        let ack = self
            .query(Body::GetUsers(v1::GetUsers {
                user_ids: users.iter().map(|u| u.to_string()).collect(),
            }))
            .await?;
        Ok(ack
            .users
            .into_iter()
            .map(|u| UserProfile {
                user_id: u.user_id,
                name: u.name,
                portrait: u.portrait,
            })
            .collect())
    }
}

/// Quiet hours: no push notifications for `minutes` from `start_minute` after midnight UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuietHours {
    pub start_minute: u32,
    /// 0: no quiet hours.
    pub minutes: u32,
}

impl Client {
    /// Sets this user's quiet hours on every device (each gets an
    /// [`crate::Event::QuietHours`]); `minutes` 0 turns them off.
    pub async fn set_quiet_hours(&self, hours: QuietHours) -> Result<QuietHours, ClientError> {
        let ack = self
            .query(Body::SetQuietHours(v1::SetQuietHours {
                start_minute: hours.start_minute,
                minutes: hours.minutes,
            }))
            .await?;
        Ok(quiet_hours(ack))
    }

    pub async fn quiet_hours(&self) -> Result<QuietHours, ClientError> {
        let ack = self
            .query(Body::GetQuietHours(v1::GetQuietHours {}))
            .await?;
        Ok(quiet_hours(ack))
    }
}

fn quiet_hours(ack: v1::QueryAck) -> QuietHours {
    ack.quiet_hours
        .map(|q| QuietHours {
            start_minute: q.start_minute,
            minutes: q.minutes,
        })
        .unwrap_or_default()
}

fn presence(ack: v1::QueryAck) -> Vec<Presence> {
    ack.presence
        .into_iter()
        .map(|p| Presence {
            user_id: p.user_id,
            online: p.online,
            last_seen: p.last_seen,
        })
        .collect()
}

/// The presence change a status message reports, if `m` is one.
pub(crate) fn presence_of(m: &Message) -> Option<Presence> {
    if m.conversation_type != conversation_type::USER_EVENT
        || m.msg_type != tidings_proto::PRESENCE_EVENT_TYPE
    {
        return None;
    }
    serde_json::from_str(&m.content).ok()
}

fn page(ack: v1::QueryAck) -> ConversationPage {
    ConversationPage {
        conversations: ack
            .conversations
            .into_iter()
            .map(Conversation::from)
            .collect(),
        next_page_token: Some(ack.next_page_token).filter(|t| !t.is_empty()),
        version: ack.version,
        too_many_changes: ack.has_more,
    }
}

/// The event a user event stands for, if `m` is one this SDK knows.
pub(crate) fn event_of(m: &Message) -> Option<crate::Event> {
    if m.conversation_type != conversation_type::USER_EVENT {
        return None;
    }
    match m.msg_type.as_str() {
        tidings_proto::CONVERSATION_EVENT_TYPE => {
            let mut change: ConversationChange = serde_json::from_str(&m.content).ok()?;
            change.inbox_seq = m.inbox_seq;
            Some(crate::Event::Conversation(change))
        }
        tidings_proto::READ_EVENT_TYPE => {
            let mut receipt: ReadReceipt = serde_json::from_str(&m.content).ok()?;
            receipt.inbox_seq = m.inbox_seq;
            Some(crate::Event::ReadReceipt(receipt))
        }
        tidings_proto::QUIET_HOURS_EVENT_TYPE => {
            let hours: QuietHours = serde_json::from_str(&m.content).ok()?;
            Some(crate::Event::QuietHours {
                hours,
                inbox_seq: m.inbox_seq,
            })
        }
        tidings_proto::DELETED_EVENT_TYPE => {
            let mut deleted: MessagesDeleted = serde_json::from_str(&m.content).ok()?;
            deleted.inbox_seq = m.inbox_seq;
            Some(crate::Event::MessagesDeleted(deleted))
        }
        _ => None,
    }
}

/// A browser-style Web Push subscription: the push service's endpoint and the keys (base64url)
/// notifications are encrypted to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSubscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

/// A phone's push token: what FCM or APNs gave the app for this device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushToken {
    /// `fcm` or `apns`.
    pub provider: String,
    /// FCM: the registration token; APNs: the device token, hex.
    pub token: String,
    /// The app's bundle id (APNs topic) or package name; empty: the server's default.
    pub app_id: String,
    /// APNs: a development build's token (the sandbox environment).
    pub sandbox: bool,
    /// The device's language (a BCP 47 tag), for localised notifications.
    pub locale: String,
}

impl Client {
    /// Registers a Web Push subscription for this device (notifications while it is not
    /// connected or in the background). Returns the server's VAPID public key.
    pub async fn register_push(&self, sub: &PushSubscription) -> Result<String, ClientError> {
        let ack = self
            .query(Body::RegisterPush(v1::RegisterPush {
                endpoint: sub.endpoint.clone(),
                p256dh: sub.p256dh.clone(),
                auth: sub.auth.clone(),
                ..Default::default()
            }))
            .await?;
        Ok(ack.vapid_public_key)
    }

    /// Registers this device's FCM or APNs token (one per device, provider and app: a new token
    /// replaces the device's earlier one; a token registered by another user moves here).
    pub async fn register_push_token(&self, token: &PushToken) -> Result<(), ClientError> {
        self.query(Body::RegisterPush(v1::RegisterPush {
            provider: token.provider.clone(),
            token: token.token.clone(),
            app_id: token.app_id.clone(),
            sandbox: token.sandbox,
            locale: token.locale.clone(),
            ..Default::default()
        }))
        .await?;
        Ok(())
    }

    /// Removes one of this user's FCM or APNs tokens.
    pub async fn unregister_push_token(
        &self,
        provider: &str,
        token: &str,
    ) -> Result<(), ClientError> {
        self.query(Body::UnregisterPush(v1::UnregisterPush {
            provider: provider.to_string(),
            token: token.to_string(),
            ..Default::default()
        }))
        .await?;
        Ok(())
    }

    /// Tells the server whether the app is in the background: the device then gets push
    /// notifications as if it were not connected (and again not, once it is back).
    pub async fn set_app_state(&self, background: bool) -> Result<(), ClientError> {
        self.query(Body::SetAppState(v1::SetAppState { background }))
            .await?;
        Ok(())
    }

    /// Removes one of this user's Web Push subscriptions.
    pub async fn unregister_push(&self, endpoint: &str) -> Result<(), ClientError> {
        self.query(Body::UnregisterPush(v1::UnregisterPush {
            endpoint: endpoint.to_string(),
            ..Default::default()
        }))
        .await?;
        Ok(())
    }
}
