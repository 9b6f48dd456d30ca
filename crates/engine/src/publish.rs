//! Sending: a client's PUBLISH and its status messages (typing), checked, put to the app
//! server's moderation and handed on where the conversation type says: to the committer for
//! private and group messages, to the room for a chatroom's. Each conversation type's rules of
//! addressing are its feature's; this module names them all, so it stands above the features
//! it dispatches to.
//!
//! Architecture invariant: no kernel module (`session`, `commit`, `outbox`, `cluster`,
//! `stream`) and no feature module that this one imports, imports it.

use std::sync::Arc;

use tidings_proto::{Code, conversation_type};
use tidings_store::Participant;

use crate::commit::{CommitRequest, PendingPublish, digest};
use crate::conversations::private_conversation_id;
use crate::session::{STATUS_RATE, SendRequest};
use crate::stream::Priority;
use crate::validate::{self, Refusal};
use crate::{Delivered, Outbound, PubAckOut, Session};

impl Session {
    /// Sends a message. The PUBACK (success or a refusal code) arrives through the outbox.
    pub async fn publish(&self, packet_id: u32, send: SendRequest) {
        let received = std::time::Instant::now();
        let limited = !self.engine.may_send(&self.shared.user);
        let priority = Priority::from_wire(send.priority).unwrap_or_default();
        // Over the limit, a send still goes to the store, but only to find an earlier commit of
        // the same message (a resend after a lost PUBACK must get its first answer); the store
        // refuses it if it is new.
        let checked = self.check(&send).and_then(|()| {
            if priority == Priority::High {
                return Err(Refusal::new(
                    Code::Unauthorized,
                    "HIGH priority is for the app server",
                ));
            }
            let search = self.engine.inner.config.search;
            let mls = if send.msg_type == crate::e2ee::MLS_TYPE {
                Some(crate::e2ee::mls_ordering(
                    send.conversation_type,
                    &send.content,
                )?)
            } else {
                None
            };
            let mut p = match send.conversation_type {
                conversation_type::GROUP => PendingPublish::group(&self.shared.user, send, search),
                conversation_type::CHATROOM => PendingPublish::chatroom(&self.shared.user, send),
                _ => PendingPublish::private(&self.shared.user, send, search),
            };
            p.only_if_stored = limited;
            if let Some(mls) = mls {
                // Ciphertext: never searched, filtered or moderated (the server cannot read
                // it), and only application messages count as unread.
                p.counted = mls.kind == tidings_store::MlsKind::Application;
                p.search_text.clear();
                p.mls = Some(mls);
                return Ok((p, false));
            }
            // After the digest is taken: a resend is recognised by what the client sent.
            let replaced = self.engine.filter_words(&mut p)?;
            Ok((p, replaced))
        });
        let checked = match checked {
            Ok((p, replaced)) if !limited && p.mls.is_none() => self.moderate(p, replaced).await,
            other => other.map(|(p, replaced)| {
                let notice = if replaced {
                    Code::SensitiveWordReplaced.as_u32()
                } else {
                    0
                };
                (p, notice)
            }),
        };
        let (pending, notice) = match checked {
            Ok(p) => p,
            Err(refusal) => {
                self.shared.reply(
                    &self.engine,
                    Outbound::PubAck(PubAckOut::refused(packet_id, refusal)),
                );
                return;
            }
        };
        if pending.conversation_type == conversation_type::CHATROOM {
            return self
                .publish_to_chatroom(packet_id, pending, notice, priority, limited)
                .await;
        }
        let request = CommitRequest::Publish {
            session: self.shared.clone(),
            packet_id,
            message: pending,
            notice,
            received,
        };
        if self.engine.inner.commits.send(request).await.is_err() {
            self.shared.reply(
                &self.engine,
                Outbound::PubAck(PubAckOut::refused(packet_id, Code::ServerShutdown)),
            );
        }
    }

    /// Puts a message to the app server's moderation hook, if there is one; answers it as it is
    /// to be stored with its PUBACK notice, or the refusal.
    async fn moderate(
        &self,
        mut p: PendingPublish,
        replaced: bool,
    ) -> Result<(PendingPublish, u32), Refusal> {
        let words_notice = if replaced {
            Code::SensitiveWordReplaced.as_u32()
        } else {
            0
        };
        let Some(hooks) = self.engine.inner.hooks.clone().filter(|h| h.moderates()) else {
            return Ok((p, words_notice));
        };
        let proposed = crate::hooks::Proposed {
            conversation_type: p.conversation_type,
            target_id: p.target.clone(),
            sender_id: p.sender.clone(),
            msg_type: p.msg_type.clone(),
            content: p.content.clone(),
            push_text: p.push_text.clone(),
            client_msg_id: p.client_msg_id.clone(),
            mentions: p.mentions.clone(),
            mention_all: p.mention_all,
            audience: p.audience.clone(),
        };
        let config = &self.engine.inner.config;
        match hooks.moderate(&proposed).await {
            crate::hooks::Moderation::Accept => Ok((p, words_notice)),
            crate::hooks::Moderation::Reject { reason } => {
                Err(Refusal::new(Code::MessageRejected, reason))
            }
            crate::hooks::Moderation::Rewrite { content } => {
                if let Err(e) =
                    validate::check_content(&p.msg_type, &content, config.max_content_bytes)
                {
                    tracing::warn!(
                        code = e.code.as_u32(),
                        "the moderation hook rewrote a message into invalid content"
                    );
                    return self.moderation_unavailable(hooks.as_ref(), p, words_notice);
                }
                if !p.search_text.is_empty() || config.search {
                    p.search_text = if config.search {
                        validate::search_text(&p.msg_type, &content)
                    } else {
                        String::new()
                    };
                }
                p.content = content;
                Ok((p, Code::MessageRewritten.as_u32()))
            }
            crate::hooks::Moderation::Unavailable => {
                self.moderation_unavailable(hooks.as_ref(), p, words_notice)
            }
        }
    }

    fn moderation_unavailable(
        &self,
        hooks: &dyn crate::hooks::Hooks,
        p: PendingPublish,
        notice: u32,
    ) -> Result<(PendingPublish, u32), Refusal> {
        if hooks.fail_open() {
            Ok((p, notice))
        } else {
            Err(Code::ModerationUnavailable.into())
        }
    }

    /// Sends a QoS 0 status message (typing): checked like a message, then pushed to the
    /// target's connected devices only, never stored. Answered only when refused (with a
    /// PUBACK, if `packet_id` is not 0).
    pub async fn publish_status(&self, packet_id: u32, send: SendRequest) {
        if let Err(refusal) = self.check_status(&send).await {
            if packet_id != 0 {
                self.shared.reply(
                    &self.engine,
                    Outbound::PubAck(PubAckOut::refused(packet_id, refusal)),
                );
            }
            return;
        }
        let sender = &self.shared.user;
        let message = Arc::new(tidings_store::StoredMessage {
            uid: ulid::Ulid::new().to_string(),
            conversation_type: conversation_type::PRIVATE,
            conversation_id: private_conversation_id(sender, &send.target_id),
            sender: sender.clone(),
            target: send.target_id.clone(),
            seq: 0,
            sent_time: self.engine.now_ms(),
            msg_type: send.msg_type,
            content: send.content,
            push_text: String::new(),
            client_msg_id: send.client_msg_id,
            ..Default::default()
        });
        let view = Arc::new(Delivered::for_viewer(&send.target_id, message.clone(), 0));
        for session in self.engine.sessions_of(&send.target_id) {
            // At most once: a busy connection goes without it.
            session
                .outbox
                .push_droppable(Outbound::Status(view.clone()));
        }
        self.engine.bus_publish(crate::cluster::BusEvent::Status {
            message: (*message).clone(),
            users: vec![send.target_id.clone()],
            except_device: None,
        });
    }

    async fn check_status(&self, send: &SendRequest) -> Result<(), Refusal> {
        let limited = !self.engine.may_send_status(&self.shared.user);
        if limited {
            return Err(Refusal::new(
                Code::SendTooFast,
                format!("at most {STATUS_RATE} status messages a second"),
            ));
        }
        if send.conversation_type != conversation_type::PRIVATE {
            return Err(Refusal::new(
                Code::UnknownConversationType,
                "status messages go to one user (conversation type 1)",
            ));
        }
        if send.msg_type == crate::e2ee::MLS_TYPE {
            return Err(Refusal::new(
                Code::InvalidMessageType,
                "mls messages are stored: send them as messages, not status messages",
            ));
        }
        self.check_addressing(send)?;
        if send.target_id == self.shared.user {
            return Err(Refusal::new(
                Code::InvalidTarget,
                "a status goes to another user",
            ));
        }
        match self
            .engine
            .inner
            .store
            .is_blocked(&send.target_id, &self.shared.user)
            .await
        {
            Ok(false) => Ok(()),
            Ok(true) => Err(Code::RejectedByBlacklist.into()),
            Err(e) => {
                tracing::error!(error = %e, "blocklist read failed");
                Err(Code::ServerError.into())
            }
        }
    }

    fn check(&self, send: &SendRequest) -> Result<(), Refusal> {
        check_send(&self.engine.inner.config, send)
    }

    fn check_addressing(&self, send: &SendRequest) -> Result<(), Refusal> {
        check_addressing(&self.engine.inner.config, send)
    }
}

impl PendingPublish {
    pub(crate) fn private(sender: &str, send: SendRequest, search: bool) -> PendingPublish {
        let digest = digest(&send);
        let target = send.target_id;
        let conversation_id = private_conversation_id(sender, &target);
        let mut recipients = vec![sender.to_string()];
        if target != sender {
            recipients.push(target.clone());
        }
        let counted = !send.uncounted || validate::BUILTIN_TYPES.contains(&send.msg_type.as_str());
        let mut participants = vec![Participant {
            user: sender.to_string(),
            target: target.clone(),
        }];
        if target != sender {
            participants.push(Participant {
                user: target.clone(),
                target: sender.to_string(),
            });
        }
        PendingPublish {
            only_if_stored: false,
            to_group: false,
            mentions: Vec::new(),
            mention_all: false,
            audience: Vec::new(),
            search_text: if search {
                validate::search_text(&send.msg_type, &send.content)
            } else {
                String::new()
            },
            blocking_recipient: (target != sender).then(|| target.clone()),
            counted,
            participants,
            conversation_type: conversation_type::PRIVATE,
            conversation_id,
            sender: sender.to_string(),
            target,
            msg_type: send.msg_type,
            content: send.content,
            push_text: send.push_text,
            push_data: send.push_data,
            client_msg_id: send.client_msg_id,
            digest,
            recipients,
            mls: None,
        }
    }
}

impl PendingPublish {
    /// A group message: the store checks that the sender may send and adds the members as
    /// recipients; the conversation rows exist from the members' joins.
    pub(crate) fn group(sender: &str, send: SendRequest, search: bool) -> PendingPublish {
        let digest = digest(&send);
        PendingPublish {
            conversation_type: conversation_type::GROUP,
            conversation_id: tidings_store::group_conversation_id(&send.target_id),
            sender: sender.to_string(),
            target: send.target_id,
            search_text: if search {
                validate::search_text(&send.msg_type, &send.content)
            } else {
                String::new()
            },
            counted: !send.uncounted || validate::BUILTIN_TYPES.contains(&send.msg_type.as_str()),
            msg_type: send.msg_type,
            content: send.content,
            push_text: send.push_text,
            push_data: send.push_data,
            client_msg_id: send.client_msg_id,
            digest,
            recipients: vec![sender.to_string()],
            mls: None,
            participants: Vec::new(),
            blocking_recipient: None,
            only_if_stored: false,
            to_group: true,
            mentions: send.mentions,
            mention_all: send.mention_all,
            audience: send.audience,
        }
    }
}

/// Push text longer than this is refused.
const MAX_PUSH_TEXT_BYTES: usize = 512;
/// The most bytes of data for the app a message's notifications carry.
const MAX_PUSH_DATA_BYTES: usize = 1024;

/// The checks of a message to send: its client message id, and those of [`check_addressing`].
pub(crate) fn check_send(config: &crate::EngineConfig, send: &SendRequest) -> Result<(), Refusal> {
    if !validate::is_client_msg_id(&send.client_msg_id) {
        return Err(Refusal::new(
            Code::InvalidClientMsgId,
            "a client message id is 1-64 printable ASCII characters",
        ));
    }
    check_addressing(config, send)
}

/// The checks messages and status messages share: conversation type, target, type, content.
pub(crate) fn check_addressing(
    config: &crate::EngineConfig,
    send: &SendRequest,
) -> Result<(), Refusal> {
    if send.conversation_type == conversation_type::SYSTEM {
        return Err(Refusal::new(
            Code::UnknownConversationType,
            "system messages are sent by the app server",
        ));
    }
    let chatroom = send.conversation_type == conversation_type::CHATROOM;
    if chatroom {
        crate::chatrooms::check_id(&send.target_id)?;
    } else {
        crate::conversations::conversation_id(send.conversation_type, "", &send.target_id)?;
    }
    match Priority::from_wire(send.priority) {
        None => {
            return Err(Refusal::new(
                Code::ChatroomInvalid,
                "priority is 0 (NORMAL), 1 (LOW) or 2 (HIGH)",
            ));
        }
        Some(p) if p != Priority::Normal && !chatroom => {
            return Err(Refusal::new(
                Code::ChatroomInvalid,
                "a priority is for chatroom messages",
            ));
        }
        Some(_) => {}
    }
    let group = send.conversation_type == conversation_type::GROUP;
    let addressed = !send.mentions.is_empty() || send.mention_all || !send.audience.is_empty();
    if addressed && !group {
        return Err(Refusal::new(
            Code::InvalidMentions,
            "mentions and directed messages are for groups",
        ));
    }
    if send.mentions.len() > crate::groups::MAX_MENTIONS
        || send.audience.len() > crate::groups::MAX_DIRECTED
        || !send
            .mentions
            .iter()
            .chain(&send.audience)
            .all(|u| validate::is_user_id(u))
    {
        return Err(Refusal::new(
            Code::InvalidMentions,
            format!(
                "at most {} mentioned and {} directed user ids, each 1-64 of A-Z a-z 0-9 _ - . @",
                crate::groups::MAX_MENTIONS,
                crate::groups::MAX_DIRECTED
            ),
        ));
    }
    validate::check_msg_type(&send.msg_type)?;
    if send.msg_type == crate::e2ee::MLS_TYPE {
        // Its MLS header is read (and checked) once, where a publish is made of it; the app
        // server's sends and status messages refuse the type.
        let max = config
            .max_content_bytes
            .max(crate::e2ee::MAX_MLS_CONTENT_BYTES);
        validate::check_content(&send.msg_type, &send.content, max)?;
    } else {
        validate::check_content(&send.msg_type, &send.content, config.max_content_bytes)?;
    }
    if send.push_text.len() > MAX_PUSH_TEXT_BYTES {
        return Err(Refusal::new(
            Code::ContentTooLarge,
            format!("push text is limited to {MAX_PUSH_TEXT_BYTES} bytes"),
        ));
    }
    if send.push_data.len() > MAX_PUSH_DATA_BYTES {
        return Err(Refusal::new(
            Code::ContentTooLarge,
            format!("push data is limited to {MAX_PUSH_DATA_BYTES} bytes"),
        ));
    }
    Ok(())
}
