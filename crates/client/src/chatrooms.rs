//! Chatrooms as a connection sees them: joining (with some of the room's recent messages),
//! leaving, the room's profile and members, its key-value entries, and its stream of items —
//! messages, notices and gap markers — presented as [`crate::Event::Chatroom`].
//!
//! Chatroom messages are online-only: the server pushes them while this connection is in the
//! room, at most once, in the room's seq order, and never keeps them in the inbox. The SDK
//! drops repeats by seq, and after a reconnect joins its rooms again, asking for the messages
//! after the last seq it presented (those the room's recent history still holds come as
//! events). Where the room or this connection fell behind, the server drops LOW, then NORMAL
//! messages and says so with a gap marker ([`ChatroomEvent::Gap`]).

use serde::{Deserialize, Serialize};
use tidings_proto::v1::{self, query::Body};
use tidings_proto::{CHATROOM_EVENT_TYPE, GAP_EVENT_TYPE};

use crate::{Client, ClientError, GroupMembersPage, Message, Outgoing, Priority};

/// A chatroom's profile and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chatroom {
    pub chatroom_id: String,
    pub name: String,
    /// App-defined JSON object as text, or empty.
    pub extra: String,
    pub created_time: i64,
    pub member_count: u64,
    pub max_members: u64,
    /// Until when (ms) only the app server may send; 0: not muted.
    pub muted_until: i64,
    /// The room's newest seq when this was read.
    pub seq: u64,
    /// Created by the app server (kept until it destroys it), not by a first join.
    pub kept: bool,
}

impl From<v1::Chatroom> for Chatroom {
    fn from(c: v1::Chatroom) -> Chatroom {
        Chatroom {
            chatroom_id: c.chatroom_id,
            name: c.name,
            extra: c.extra,
            created_time: c.created_time,
            member_count: c.member_count,
            max_members: c.max_members,
            muted_until: c.muted_until,
            seq: c.seq,
            kept: c.kept,
        }
    }
}

/// What joining answers: the room, and the recent messages asked for (oldest first). Every
/// item after `chatroom.seq` comes as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatroomJoined {
    pub chatroom: Chatroom,
    pub recent: Vec<Message>,
}

/// One key-value entry of a chatroom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatroomEntry {
    pub key: String,
    pub value: String,
    /// Who set it last.
    pub user_id: String,
    pub updated_time: i64,
    /// Removed when that user leaves the room.
    pub auto_delete: bool,
}

impl From<v1::ChatroomEntry> for ChatroomEntry {
    fn from(e: v1::ChatroomEntry) -> ChatroomEntry {
        ChatroomEntry {
            key: e.key,
            value: e.value,
            user_id: e.user_id,
            updated_time: e.updated_time,
            auto_delete: e.auto_delete,
        }
    }
}

/// An item of a chatroom's stream, or news of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChatroomEvent {
    /// A member's (or the app server's) message; `target_id` is the room.
    Message(Message),
    /// A change the room reports (members joined or left, someone kicked, an entry set, …).
    Notice(ChatroomNotice),
    /// The room's items in a seq range that were dropped for this connection.
    Gap(ChatroomGap),
    /// This connection is out of the room: it was kicked, the room was destroyed, or joining
    /// again after a reconnect was refused (`code`: 23409 banned, 23410 gone, …).
    #[serde(rename_all = "camelCase")]
    Left { chatroom_id: String, code: u32 },
}

/// A notice of a chatroom: the room's own item, with a seq.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatroomNotice {
    pub chatroom_id: String,
    pub seq: u64,
    /// `join`, `leave`, `kick`, `unban`, `mute`, `unmute`, `entry`, `entry-remove` or
    /// `destroy`.
    pub operation: String,
    /// Who made the change (empty: the server or the app server).
    pub operator_id: String,
    /// The users it is about (for joins and leaves, at most 100 of `count`).
    pub user_ids: Vec<String>,
    /// How many users joined or left.
    pub count: u64,
    /// For entries: the key, and the value set.
    pub key: Option<String>,
    pub value: Option<String>,
    /// For mutes and bans: until when (ms).
    pub until: i64,
    /// For mutes: the whole room.
    pub all: bool,
}

/// Items of a chatroom dropped for this connection: `count` of them with seqs from `from_seq`
/// to `to_seq` (others in that range may have arrived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatroomGap {
    pub chatroom_id: String,
    pub count: u64,
    pub from_seq: u64,
    pub to_seq: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GapContent {
    count: u64,
    from_seq: u64,
    to_seq: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NoticeContent {
    operation: String,
    user_ids: Vec<String>,
    count: u64,
    key: Option<String>,
    value: Option<String>,
    until: i64,
    banned_until: i64,
    all: bool,
}

/// What a chatroom item pushed to this connection stands for.
pub(crate) fn event_of(m: Message) -> (String, ChatroomEvent) {
    let room = m.target_id.clone();
    let event = match m.msg_type.as_str() {
        GAP_EVENT_TYPE => match serde_json::from_str::<GapContent>(&m.content) {
            Ok(g) => ChatroomEvent::Gap(ChatroomGap {
                chatroom_id: room.clone(),
                count: g.count,
                from_seq: g.from_seq,
                to_seq: g.to_seq,
            }),
            Err(_) => ChatroomEvent::Message(m),
        },
        CHATROOM_EVENT_TYPE => {
            let c: NoticeContent = serde_json::from_str(&m.content).unwrap_or_default();
            ChatroomEvent::Notice(ChatroomNotice {
                chatroom_id: room.clone(),
                seq: m.seq,
                operation: c.operation,
                operator_id: m.sender_id,
                count: if c.count == 0 {
                    c.user_ids.len() as u64
                } else {
                    c.count
                },
                user_ids: c.user_ids,
                key: c.key,
                value: c.value,
                until: c.until.max(c.banned_until),
                all: c.all,
            })
        }
        _ => ChatroomEvent::Message(m),
    };
    (room, event)
}

impl Outgoing {
    /// A text message to a chatroom.
    pub fn chatroom_text(chatroom: &str, text: &str) -> Outgoing {
        Outgoing {
            conversation_type: tidings_proto::conversation_type::CHATROOM,
            target_id: chatroom.into(),
            msg_type: "text".into(),
            content: crate::serde_text(text),
            ..Default::default()
        }
    }

    /// Sends a chatroom message with this priority (clients may use LOW or NORMAL).
    pub fn with_priority(mut self, priority: Priority) -> Outgoing {
        self.priority = priority;
        self
    }
}

fn first_chatroom(ack: &mut v1::QueryAck) -> Result<Chatroom, ClientError> {
    if ack.chatrooms.is_empty() {
        return Err(ClientError::Protocol("the answer holds no chatroom".into()));
    }
    Ok(ack.chatrooms.remove(0).into())
}

impl Client {
    /// Joins a chatroom (made by this join if it does not exist and the server allows it),
    /// with up to `recent` (0-50) of its newest messages. The room's later items come as
    /// [`crate::Event::Chatroom`] while this connection is in it; after a reconnect the SDK
    /// joins again by itself.
    pub async fn join_chatroom(
        &self,
        chatroom_id: &str,
        recent: u32,
    ) -> Result<ChatroomJoined, ClientError> {
        let mut ack = self
            .query(Body::JoinChatroom(v1::JoinChatroom {
                chatroom_id: chatroom_id.into(),
                recent,
                after_seq: 0,
            }))
            .await?;
        let chatroom = first_chatroom(&mut ack)?;
        Ok(ChatroomJoined {
            chatroom,
            recent: ack.messages.into_iter().map(Message::from).collect(),
        })
    }

    /// Leaves a chatroom. Answers the room as left behind.
    pub async fn quit_chatroom(&self, chatroom_id: &str) -> Result<Chatroom, ClientError> {
        let mut ack = self
            .query(Body::QuitChatroom(v1::QuitChatroom {
                chatroom_id: chatroom_id.into(),
            }))
            .await?;
        first_chatroom(&mut ack)
    }

    /// A chatroom's profile and member count (members only: 23406 otherwise).
    pub async fn chatroom(&self, chatroom_id: &str) -> Result<Chatroom, ClientError> {
        let mut ack = self
            .query(Body::GetChatroom(v1::GetChatroom {
                chatroom_id: chatroom_id.into(),
            }))
            .await?;
        first_chatroom(&mut ack)
    }

    /// A page of a chatroom's members in the order they joined, at most `limit` (0: 100; at
    /// most 500). Members only.
    pub async fn chatroom_members(
        &self,
        chatroom_id: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<GroupMembersPage, ClientError> {
        let ack = self
            .query(Body::GetChatroomMembers(v1::GetChatroomMembers {
                chatroom_id: chatroom_id.into(),
                limit,
                page_token: page_token.unwrap_or_default().into(),
            }))
            .await?;
        Ok(GroupMembersPage::from(ack))
    }

    /// Sets a key-value entry of a chatroom (seed 004's `setChatroomEntry`; with `force`, its
    /// `forceSetChatroomEntry`, which overwrites another user's entry). With `auto_delete` the
    /// entry goes when this user leaves the room. Every member gets an `entry` notice.
    pub async fn set_chatroom_entry(
        &self,
        chatroom_id: &str,
        key: &str,
        value: &str,
        force: bool,
        auto_delete: bool,
    ) -> Result<ChatroomEntry, ClientError> {
        let ack = self
            .query(Body::SetChatroomEntry(v1::SetChatroomEntry {
                chatroom_id: chatroom_id.into(),
                key: key.into(),
                value: value.into(),
                force,
                auto_delete,
            }))
            .await?;
        ack.entries
            .into_iter()
            .next()
            .map(ChatroomEntry::from)
            .ok_or_else(|| ClientError::Protocol("the answer holds no entry".into()))
    }

    /// Removes a key-value entry (with `force`, one another user set).
    pub async fn remove_chatroom_entry(
        &self,
        chatroom_id: &str,
        key: &str,
        force: bool,
    ) -> Result<(), ClientError> {
        self.query(Body::RemoveChatroomEntry(v1::RemoveChatroomEntry {
            chatroom_id: chatroom_id.into(),
            key: key.into(),
            force,
        }))
        .await?;
        Ok(())
    }

    /// A chatroom's entries by key: those of `keys`, or all with `keys` empty.
    pub async fn chatroom_entries(
        &self,
        chatroom_id: &str,
        keys: &[&str],
    ) -> Result<Vec<ChatroomEntry>, ClientError> {
        let ack = self
            .query(Body::GetChatroomEntries(v1::GetChatroomEntries {
                chatroom_id: chatroom_id.into(),
                keys: keys.iter().map(|k| k.to_string()).collect(),
            }))
            .await?;
        Ok(ack.entries.into_iter().map(ChatroomEntry::from).collect())
    }
}
