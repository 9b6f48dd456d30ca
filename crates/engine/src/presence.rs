//! Presence: whether a user is connected from at least one device, and when they last were.
//! A connection subscribes to up to [`MAX_WATCHED`] users; when one of them comes online (first
//! session) or goes offline (last session ends), each watching connection gets a status message
//! (`tidings:presence`, at most once, like typing). Subscriptions last as long as the
//! connection. The time a user went offline is stored, so last-seen survives restarts.

use std::sync::Arc;

use tidings_proto::{Code, PRESENCE_EVENT_TYPE, conversation_type};
use tidings_store::{StoredMessage, WriteOp};

use crate::session::SessionShared;
use crate::validate::{self, Refusal};
use crate::{Delivered, Engine, Outbound, QueryAckOut, Session};

/// The most users one connection may watch, or ask about at once.
pub const MAX_WATCHED: usize = 200;

/// One user's presence, for a QUERYACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceOut {
    pub user: String,
    pub online: bool,
    /// When last connected (ms; 0 if never recorded); 0 while online.
    pub last_seen: i64,
}

impl Engine {
    /// Tells the connections watching `user` that it came online or went offline.
    pub(crate) fn presence_changed(
        &self,
        user: &str,
        online: bool,
        watchers: &[Arc<SessionShared>],
    ) {
        let now = self.now_ms();
        if !online {
            // Stored in the background, never dropped for a full queue.
            let op = WriteOp::SetLastSeen {
                user: user.to_string(),
                time: now,
            };
            crate::commit::commit_later(&self.inner.commits, op);
        }
        if watchers.is_empty() {
            return;
        }
        let content = serde_json::json!({
            "userId": user,
            "online": online,
            "lastSeen": if online { 0 } else { now },
        })
        .to_string();
        for watcher in watchers {
            let message = StoredMessage {
                uid: ulid::Ulid::new().to_string(),
                conversation_type: conversation_type::USER_EVENT,
                conversation_id: format!("~{}", watcher.user),
                target: watcher.user.clone(),
                sent_time: now,
                msg_type: PRESENCE_EVENT_TYPE.into(),
                content: content.clone(),
                ..Default::default()
            };
            let view = Delivered::for_viewer(&watcher.user, Arc::new(message), 0);
            watcher
                .outbox
                .push_droppable(Outbound::Status(Arc::new(view)));
        }
    }

    async fn presence_of(&self, users: &[String]) -> Result<Vec<PresenceOut>, Refusal> {
        let online: Vec<bool> = {
            let registry = self.registry();
            users
                .iter()
                .map(|u| registry.by_user.contains_key(u) || self.online_elsewhere(u))
                .collect()
        };
        let last_seen = self.inner.store.last_seen(users).await.map_err(|e| {
            tracing::error!(error = %e, "last-seen read failed");
            Refusal::from(Code::ServerError)
        })?;
        Ok(users
            .iter()
            .zip(online)
            .zip(last_seen)
            .map(|((user, online), seen)| PresenceOut {
                user: user.clone(),
                online,
                last_seen: if online { 0 } else { seen },
            })
            .collect())
    }
}

impl Session {
    /// Replaces this connection's presence subscriptions with `users`; answers their presence.
    pub async fn subscribe_presence(&self, query_id: u32, users: Vec<String>) {
        let answer = match checked(users, true, MAX_WATCHED) {
            Ok(users) => {
                self.engine.watch(&self.shared, &users);
                self.engine.presence_of(&users).await
            }
            Err(r) => Err(r),
        };
        self.answer_presence(query_id, answer);
    }

    /// Answers the presence of `users`, once.
    pub async fn get_presence(&self, query_id: u32, users: Vec<String>) {
        let answer = match checked(users, false, MAX_WATCHED) {
            Ok(users) => self.engine.presence_of(&users).await,
            Err(r) => Err(r),
        };
        self.answer_presence(query_id, answer);
    }

    fn answer_presence(&self, query_id: u32, answer: Result<Vec<PresenceOut>, Refusal>) {
        let out = match answer {
            Ok(presence) => QueryAckOut {
                query_id,
                presence,
                ..Default::default()
            },
            Err(r) => QueryAckOut::refused(query_id, r),
        };
        self.shared
            .reply(&self.engine, Outbound::QueryAck(Box::new(out)));
    }
}

/// The users asked about, deduplicated in order, if the list is valid (at most `max`, and at
/// least one unless `may_be_empty`).
pub(crate) fn checked(
    users: Vec<String>,
    may_be_empty: bool,
    max: usize,
) -> Result<Vec<String>, Refusal> {
    let mut seen = std::collections::HashSet::new();
    let users: Vec<String> = users
        .into_iter()
        .filter(|u| seen.insert(u.clone()))
        .collect();
    if (users.is_empty() && !may_be_empty) || users.len() > max {
        return Err(Refusal::new(
            Code::InvalidQuery,
            format!("ask about 1-{max} users"),
        ));
    }
    if !users.iter().all(|u| validate::is_user_id(u)) {
        return Err(Refusal::new(
            Code::InvalidTarget,
            "a user id is 1-64 of A-Z a-z 0-9 _ - . @",
        ));
    }
    Ok(users)
}
