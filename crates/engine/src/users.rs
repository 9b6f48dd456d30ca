//! What the app server does with users and messages through the HTTP API: profiles, bans,
//! online status, and messages sent on a user's behalf (to a user or a group) or from a system
//! account (conversation type 6, one message per recipient). Also what a connected user reads
//! of other users: their names and portraits.

use tidings_proto::{Code, conversation_type};
use tidings_store::{Participant, UserProfile, WriteOp, WriteResult};
use tokio::sync::oneshot;

use crate::commit::{CommitRequest, PendingPublish};
use crate::publish::check_send;
use crate::session::SendRequest;
use crate::validate::{self, Refusal};
use crate::{ApiError, Engine};

/// The most users one batch query or one system message names.
pub const MAX_BATCH_USERS: usize = 100;
/// The most recipients of one system message call.
pub const MAX_SYSTEM_RECIPIENTS: usize = 1000;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOut {
    pub user: String,
    pub profile: UserProfile,
    /// Connected from at least one device now.
    pub online: bool,
}

/// What any connected user may read of another: not `extra` (the app's own data), not bans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOut {
    pub user: String,
    pub name: String,
    pub portrait: String,
}

impl crate::Session {
    /// Answers the names and portraits of `users` (1-[`MAX_BATCH_USERS`], each once, in the
    /// order asked). A user the server does not know answers as one without a profile, so the
    /// answer does not tell which ids exist.
    pub async fn get_users(&self, query_id: u32, users: Vec<String>) {
        let out = match self.profiles_of(users).await {
            Ok(users) => crate::QueryAckOut {
                query_id,
                users,
                ..Default::default()
            },
            Err(r) => crate::QueryAckOut::refused(query_id, r),
        };
        self.shared
            .reply(&self.engine, crate::Outbound::QueryAck(Box::new(out)));
    }

    async fn profiles_of(&self, users: Vec<String>) -> Result<Vec<ProfileOut>, Refusal> {
        let users = crate::presence::checked(users, false, MAX_BATCH_USERS)?;
        let profiles = self
            .engine
            .inner
            .store
            .profiles(&users)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "profile read failed");
                Refusal::from(Code::ServerError)
            })?;
        Ok(users
            .into_iter()
            .zip(profiles)
            .map(|(user, p)| ProfileOut {
                user,
                name: p.name,
                portrait: p.portrait,
            })
            .collect())
    }
}

/// A message sent through the API, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The recipient, for system messages (one message each).
    pub user: String,
    pub uid: String,
    pub seq: u64,
    pub sent_time: i64,
    /// An earlier call with the same client message id stored it.
    pub duplicate: bool,
}

fn store_failed(e: tidings_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "user store call failed");
    ApiError::from(Code::ServerError)
}

pub(crate) fn check_user(user: &str) -> Result<(), ApiError> {
    if validate::is_user_id(user) {
        Ok(())
    } else {
        Err(Code::InvalidUserId.into())
    }
}

impl Engine {
    /// Sets the profile fields given (creating the user's record if needed).
    pub async fn set_profile(
        &self,
        user: &str,
        name: Option<String>,
        portrait: Option<String>,
        extra: Option<String>,
    ) -> Result<UserOut, ApiError> {
        check_user(user)?;
        crate::groups::check_profile(name.as_deref(), portrait.as_deref(), extra.as_deref())?;
        self.write(vec![WriteOp::SetProfile {
            user: user.into(),
            name,
            portrait,
            extra,
        }])
        .await?;
        Ok(self.users(&[user.to_string()]).await?.remove(0))
    }

    /// Users' profiles and whether they are online, in the order asked.
    pub async fn users(&self, users: &[String]) -> Result<Vec<UserOut>, ApiError> {
        if users.is_empty() || users.len() > MAX_BATCH_USERS {
            return Err(ApiError(Refusal::new(
                Code::BadRequest,
                format!("give 1-{MAX_BATCH_USERS} user ids"),
            )));
        }
        for u in users {
            check_user(u)?;
        }
        let profiles = self
            .inner
            .store
            .profiles(users)
            .await
            .map_err(store_failed)?;
        let registry = self.registry();
        Ok(users
            .iter()
            .zip(profiles)
            .map(|(user, profile)| UserOut {
                online: registry.by_user.contains_key(user) || self.online_elsewhere(user),
                user: user.clone(),
                profile,
            })
            .collect())
    }

    /// Bans a user (refused at connect with 31009; connected devices are disconnected with it),
    /// or lifts the ban.
    pub async fn set_banned(&self, user: &str, banned: bool) -> Result<(), ApiError> {
        check_user(user)?;
        self.write(vec![WriteOp::SetBanned {
            user: user.into(),
            banned,
        }])
        .await?;
        self.banned_here(user, banned);
        self.bus_publish(crate::cluster::BusEvent::Banned {
            user: user.to_string(),
            banned,
        });
        Ok(())
    }

    /// Sends a message as `sender` (a private or group message, checked as a client's is, but
    /// not rate-limited). Every device of the participants gets it, the sender's included.
    pub async fn send_as(&self, sender: &str, send: SendRequest) -> Result<Posted, ApiError> {
        check_user(sender)?;
        check_send(&self.inner.config, &send).map_err(ApiError)?;
        refuse_mls(&send)?;
        if send.conversation_type == conversation_type::CHATROOM {
            let priority = crate::stream::Priority::from_wire(send.priority).unwrap_or_default();
            let pending = PendingPublish::chatroom(sender, send);
            return self.post_to_chatroom(pending, priority).await;
        }
        let search = self.inner.config.search;
        let pending = if send.conversation_type == conversation_type::GROUP {
            PendingPublish::group(sender, send, search)
        } else {
            PendingPublish::private(sender, send, search)
        };
        let result = self.post(pending).await?;
        posted(String::new(), result)
    }

    /// Sends a system message from account `sender` to each of `users` (one message each, in
    /// the system conversation `(6, sender)` as each user sees it). `send`'s conversation type
    /// and target are ignored; its client message id, if any, is suffixed per recipient.
    pub async fn send_system(
        &self,
        sender: &str,
        users: &[String],
        send: SendRequest,
    ) -> Result<Vec<Posted>, ApiError> {
        check_user(sender)?;
        if users.is_empty() || users.len() > MAX_SYSTEM_RECIPIENTS {
            return Err(ApiError(Refusal::new(
                Code::BadRequest,
                format!("give 1-{MAX_SYSTEM_RECIPIENTS} recipients"),
            )));
        }
        for u in users {
            check_user(u)?;
        }
        let base_id = if send.client_msg_id.is_empty() {
            ulid::Ulid::new().to_string()
        } else {
            send.client_msg_id.clone()
        };
        let mut out = Vec::with_capacity(users.len());
        let mut waiting = Vec::with_capacity(users.len());
        for user in users {
            let mut one = SendRequest {
                conversation_type: conversation_type::PRIVATE,
                target_id: user.clone(),
                client_msg_id: recipient_msg_id(&base_id, user),
                ..send.clone()
            };
            check_send(&self.inner.config, &one).map_err(ApiError)?;
            refuse_mls(&one)?;
            let mut pending =
                PendingPublish::private(sender, std::mem::take(&mut one), self.inner.config.search);
            pending.conversation_type = conversation_type::SYSTEM;
            pending.conversation_id = crate::conversations::system_conversation_id(sender, user);
            pending.recipients = vec![user.clone()];
            pending.participants = vec![Participant {
                user: user.clone(),
                target: sender.to_string(),
            }];
            pending.blocking_recipient = None;
            let (reply, answer) = oneshot::channel();
            self.inner
                .commits
                .send(CommitRequest::Post {
                    message: pending,
                    reply,
                })
                .await
                .map_err(|_| ApiError::from(Code::ServerShutdown))?;
            waiting.push((user.clone(), answer));
        }
        // All were queued before any answer is awaited, so they share commits.
        for (user, answer) in waiting {
            let result = match answer.await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(store_failed(e)),
                Err(_) => return Err(Code::ServerShutdown.into()),
            };
            out.push(posted(user, result)?);
        }
        Ok(out)
    }

    /// Sends a system message from `sender` to every user the server knows (but `sender`),
    /// a page of users at a time. Returns how many got it.
    pub async fn broadcast(&self, sender: &str, send: SendRequest) -> Result<u64, ApiError> {
        check_user(sender)?;
        let base_id = if send.client_msg_id.is_empty() {
            ulid::Ulid::new().to_string()
        } else {
            send.client_msg_id.clone()
        };
        let mut after = String::new();
        let mut count = 0;
        loop {
            let page = self
                .inner
                .store
                .user_ids_after(&after, MAX_SYSTEM_RECIPIENTS)
                .await
                .map_err(store_failed)?;
            let Some(last) = page.last().cloned() else {
                return Ok(count);
            };
            let users: Vec<String> = page.into_iter().filter(|u| u != sender).collect();
            if !users.is_empty() {
                let one = SendRequest {
                    client_msg_id: base_id.clone(),
                    ..send.clone()
                };
                count += self.send_system(sender, &users, one).await?.len() as u64;
            }
            after = last;
        }
    }

    /// Recalls `sender`'s message `seq` of their conversation `(type, target)` for the app
    /// server: at any time, and in a group even if the sender has left it or is muted. Returns
    /// the message as it now is (a tombstone).
    pub async fn recall_as(
        &self,
        sender: &str,
        conversation_type: u32,
        target: &str,
        seq: u64,
    ) -> Result<Posted, ApiError> {
        check_user(sender)?;
        if !matches!(
            conversation_type,
            conversation_type::PRIVATE | conversation_type::GROUP | conversation_type::SYSTEM
        ) {
            return Err(ApiError(Refusal::new(
                Code::UnknownConversationType,
                "recall messages of private (1), group (3) and system (6) conversations",
            )));
        }
        let op = crate::conversations::amend_op(
            sender,
            conversation_type,
            target,
            seq,
            tidings_store::AmendAction::Recall { not_before: 0 },
            true,
        )
        .map_err(ApiError)?;
        let (reply, answer) = oneshot::channel();
        self.inner
            .commits
            .send(CommitRequest::UserChange {
                ops: vec![op],
                reply,
            })
            .await
            .map_err(|_| ApiError::from(Code::ServerShutdown))?;
        let results = match answer.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(store_failed(e)),
            Err(_) => return Err(Code::ServerShutdown.into()),
        };
        let message = crate::conversations::amended(results).map_err(ApiError)?;
        Ok(Posted {
            user: String::new(),
            uid: message.uid,
            seq: message.seq,
            sent_time: message.sent_time,
            duplicate: false,
        })
    }

    /// A user's blocklist, in id order.
    pub async fn blocklist_of(&self, user: &str) -> Result<Vec<String>, ApiError> {
        check_user(user)?;
        self.inner.store.blocklist(user).await.map_err(store_failed)
    }

    /// Adds `others` to `user`'s blocklist, or removes them; returns the list after.
    pub async fn set_blocklist(
        &self,
        user: &str,
        others: &[String],
        blocked: bool,
    ) -> Result<Vec<String>, ApiError> {
        check_user(user)?;
        if others.is_empty() || others.len() > MAX_BATCH_USERS {
            return Err(ApiError(Refusal::new(
                Code::BadRequest,
                format!("give 1-{MAX_BATCH_USERS} user ids"),
            )));
        }
        for other in others {
            check_user(other)?;
            if other == user {
                return Err(ApiError(Refusal::new(
                    Code::BadRequest,
                    "a user does not block themself",
                )));
            }
        }
        let max = self.inner.config.max_blocklist;
        let ops = others
            .iter()
            .map(|other| WriteOp::SetBlocked {
                user: user.into(),
                other: other.clone(),
                blocked,
                max,
            })
            .collect();
        let results = self.write(ops).await?;
        if results
            .iter()
            .any(|r| matches!(r, WriteResult::BlocklistFull))
        {
            return Err(ApiError(Refusal::new(
                Code::BadRequest,
                format!("a blocklist holds at most {max} users; the others were added"),
            )));
        }
        self.blocklist_of(user).await
    }

    /// A page of a conversation's messages, as stored (for export: what users deleted for
    /// themselves is included), after `after_seq`, at most `limit` (1-500). For a private or
    /// system conversation `user` is one side and `target` the other; for a group, `target` is
    /// the group.
    pub async fn export(
        &self,
        conversation_type: u32,
        user: &str,
        target: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<crate::Delivered>, ApiError> {
        let id = crate::conversations::conversation_id(conversation_type, user, target)
            .map_err(ApiError)?;
        if conversation_type != conversation_type::GROUP {
            check_user(user)?;
        }
        if limit == 0 || limit > crate::SYNC_PAGE_MAX {
            return Err(ApiError(Refusal::new(
                Code::BadRequest,
                format!("limit is 1-{}", crate::SYNC_PAGE_MAX),
            )));
        }
        let messages = self
            .inner
            .store
            .conversation_after(
                &id,
                tidings_store::Page {
                    after: after_seq,
                    limit: limit as usize,
                },
            )
            .await
            .map_err(store_failed)?;
        Ok(messages
            .into_iter()
            .map(|m| crate::Delivered::for_viewer(user, std::sync::Arc::new(m), 0))
            .collect())
    }

    async fn post(&self, message: PendingPublish) -> Result<WriteResult, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commits
            .send(CommitRequest::Post { message, reply })
            .await
            .map_err(|_| ApiError::from(Code::ServerShutdown))?;
        match answer.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(store_failed(e)),
            Err(_) => Err(Code::ServerShutdown.into()),
        }
    }
}

/// The API's answer for an append's result.
fn posted(user: String, result: WriteResult) -> Result<Posted, ApiError> {
    match result {
        WriteResult::Appended {
            message, duplicate, ..
        } => Ok(Posted {
            user,
            uid: message.uid,
            seq: message.seq,
            sent_time: message.sent_time,
            duplicate,
        }),
        WriteResult::ClientMsgIdConflict => Err(Code::ClientMsgIdConflict.into()),
        WriteResult::Blocked => Err(Code::RejectedByBlacklist.into()),
        WriteResult::GroupRefused(r) => Err(crate::validate::group_refusal_code(r).into()),
        other => {
            tracing::error!(?other, "unexpected store result for an API send");
            Err(Code::ServerError.into())
        }
    }
}

/// A system message's client message id for one recipient: one call's messages have distinct
/// ids, and a retried call has the same ones.
fn recipient_msg_id(base: &str, user: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((base.len() as u64).to_le_bytes());
    h.update(base.as_bytes());
    h.update(user.as_bytes());
    format!("sys-{}", &hex::encode(h.finalize())[..40])
}

/// The app server cannot write to an end-to-end encrypted conversation: its messages come from
/// member devices.
fn refuse_mls(send: &SendRequest) -> Result<(), ApiError> {
    if send.msg_type == crate::e2ee::MLS_TYPE {
        return Err(ApiError(Refusal::new(
            Code::InvalidMessageType,
            "mls messages come from the devices of an encrypted conversation's members",
        )));
    }
    Ok(())
}
