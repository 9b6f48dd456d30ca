//! Chatrooms (conversation type 4): online-only rooms. A connection joins a room (getting some of
//! its recent messages) and, while it stays, gets every item of the room's stream: the members'
//! messages and the room's notices, each numbered by the room's `seq`. Nothing is inboxed;
//! the room keeps a bounded recent history in memory, queryable by its members. A user is a
//! member while at least one of their connections is in the room.
//!
//! The app server creates rooms (kept in the store with their bans and mutes until it destroys
//! them), or a first join makes one (when `auto_create` is on; such a room ends once it has
//! been empty for the idle time). Members, messages, history and entries live in memory only.
//!
//! Under load, messages carry a [`Priority`]: when a room's fan-out, or one member's connection,
//! falls behind, LOW messages are dropped first, then NORMAL ones, never HIGH ones; every drop
//! is reported to the member by a gap marker (`tidings:gap`), never silent. Join and leave
//! notices of large rooms are gathered into one a second.
//!
//! The module's parts: `room` (one room in memory and its fan-out task), `registry` (the rooms
//! in memory, by id), `api` (what the app server does to rooms), `members` and `entries` (the
//! queries on a room's members and key-value entries), and `connection` (what a connection
//! asks of rooms: join, quit, queries, history, sends).

mod api;
mod connection;
mod entries;
mod members;
mod registry;
mod room;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tidings_proto::Code;
use tidings_store::{ChatroomRecord, StoredMessage};

use crate::Delivered;
use crate::commit::PendingPublish;
use crate::validate::{self, Refusal};
pub(crate) use room::Room;
use room::{Entry, NewItem, Profile, RoomState};

pub use room::{BACKLOG_LOW, BACKLOG_NORMAL, NOTICE_BATCH_MEMBERS, NOTICE_INTERVAL, QUEUE_MAX};

/// At most this many recent messages are answered on join; a rejoin after a seq at most
/// [`REJOIN_MAX`].
pub const RECENT_MAX: u32 = 50;
pub const REJOIN_MAX: usize = 100;
/// The most chatrooms one connection is in at once.
pub const MAX_ROOMS_PER_CONNECTION: usize = 20;
/// The most key-value entries a room holds, and their limits in bytes.
pub const MAX_ENTRIES: usize = 100;
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_VALUE_BYTES: usize = 4096;
/// The most users one kick, ban or mute names.
pub const MAX_USERS_PER_CHANGE: usize = 100;

/// How a chatroom message fares when the room's fan-out, or a member's connection, falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Normal,
    /// Dropped first (likes, gifts, animations).
    Low,
    /// Never dropped: the app server's messages and the server's notices that change state.
    High,
}

impl Priority {
    /// The priority numbered as on the wire (0 NORMAL, 1 LOW, 2 HIGH).
    pub fn from_wire(n: u32) -> Option<Priority> {
        match n {
            0 => Some(Priority::Normal),
            1 => Some(Priority::Low),
            2 => Some(Priority::High),
            _ => None,
        }
    }
}

/// Chatroom settings; defaults on [`ChatroomSettings::default`].
#[derive(Debug, Clone)]
pub struct ChatroomSettings {
    /// The most members a room may have (a room created by the app server may ask for fewer).
    pub max_members: u64,
    /// Messages kept per room for joins and history queries.
    pub history: usize,
    /// Whether a join of a room that does not exist makes it (otherwise 23410).
    pub auto_create: bool,
    /// How long a room made by a join stays once its last member left.
    pub idle: Duration,
}

impl Default for ChatroomSettings {
    /// 100,000 members, 100 messages of history, rooms made by joins, 10 minutes of idle life.
    fn default() -> ChatroomSettings {
        ChatroomSettings {
            max_members: 100_000,
            history: 100,
            auto_create: true,
            idle: Duration::from_secs(600),
        }
    }
}

/// One item of a room's stream (a message or a notice), shared by every member it goes to.
pub struct RoomItem {
    room: Arc<str>,
    /// When the room numbered it: how far behind a connection is, is the age of the oldest item
    /// it has waiting.
    posted: tokio::time::Instant,
    priority: Priority,
    /// The session that sent it (0: none, or on another node), which does not get it back.
    origin: u64,
    /// In a cluster: the node that made it (empty: this one), and there, the sending session
    /// and what the sender's answer waits on (0: nothing).
    pub(crate) source_node: String,
    pub(crate) source_session: u64,
    pub(crate) token: u64,
    /// In a cluster: this node numbered it (as the room's home), so it goes on the bus.
    pub(crate) numbered_here: bool,
    /// What the sender chose, to tell a resend from a reuse of its client message id.
    digest: String,
    message: Delivered,
    /// The encoded frame, one slot per wire encoding, filled by the first connection that
    /// writes it: an item fanned out to thousands of members is encoded once per encoding.
    wire: [OnceLock<Bytes>; 2],
}

impl std::fmt::Debug for RoomItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomItem")
            .field("room", &self.room)
            .field("seq", &self.seq())
            .field("priority", &self.priority)
            .finish()
    }
}

impl RoomItem {
    pub(crate) fn new(
        room: Arc<str>,
        message: StoredMessage,
        priority: Priority,
        origin: u64,
        digest: String,
    ) -> RoomItem {
        RoomItem {
            room,
            posted: tokio::time::Instant::now(),
            priority,
            origin,
            source_node: String::new(),
            source_session: origin,
            token: 0,
            numbered_here: false,
            digest,
            message: Delivered::for_viewer("", Arc::new(message), 0),
            wire: Default::default(),
        }
    }

    /// Numbers an item made elsewhere (before it is shared).
    pub(crate) fn set_seq(&mut self, seq: u64) {
        Arc::make_mut(&mut self.message.message).seq = seq;
    }

    /// The item as it crosses the bus.
    pub(crate) fn to_post(&self, node: &str) -> crate::cluster::RoomPost {
        crate::cluster::RoomPost {
            message: (*self.message.message).clone(),
            priority: match self.priority {
                Priority::Normal => 0,
                Priority::Low => 1,
                Priority::High => 2,
            },
            digest: self.digest.clone(),
            node: if self.source_node.is_empty() {
                node.to_string()
            } else {
                self.source_node.clone()
            },
            session: self.source_session,
            token: self.token,
        }
    }

    /// An item that crossed the bus, as node `me` holds it.
    pub(crate) fn from_post(post: crate::cluster::RoomPost, me: &str) -> RoomItem {
        let mine = post.node == me;
        let room: Arc<str> = Arc::from(post.message.target.as_str());
        let mut item = RoomItem::new(
            room,
            post.message,
            Priority::from_wire(post.priority).unwrap_or_default(),
            if mine { post.session } else { 0 },
            post.digest,
        );
        item.source_node = if mine { String::new() } else { post.node };
        item.source_session = post.session;
        item.token = post.token;
        item
    }

    /// The message as every member sees it (`inbox_seq` 0, `seq` the room's).
    pub fn message(&self) -> &Delivered {
        &self.message
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    pub fn room(&self) -> &Arc<str> {
        &self.room
    }

    pub fn seq(&self) -> u64 {
        self.message.seq()
    }

    pub(crate) fn origin(&self) -> u64 {
        self.origin
    }

    pub(crate) fn posted(&self) -> tokio::time::Instant {
        self.posted
    }

    /// The cache of this item's encoded frame in the encoding numbered `slot` (0 or 1; the
    /// gateway decides which is which). `None` for other slots.
    pub fn wire(&self, slot: usize) -> Option<&OnceLock<Bytes>> {
        self.wire.get(slot)
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.message.approx_bytes()
    }
}

/// A chatroom, for answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatroomOut {
    pub id: String,
    pub name: String,
    pub extra: String,
    pub created: i64,
    pub member_count: u64,
    pub max_members: u64,
    pub muted_until: i64,
    /// The room's newest seq when this was read.
    pub seq: u64,
    pub kept: bool,
}

/// A key-value entry of a room, for answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOut {
    pub key: String,
    pub value: String,
    pub user: String,
    pub updated: i64,
    pub auto_delete: bool,
}

/// A chatroom request from a connection.
#[derive(Debug, Clone)]
pub enum ChatroomQuery {
    Join {
        room: String,
        recent: u32,
        after_seq: u64,
    },
    /// A join that is refused (40031) while another connection of the user is in the room,
    /// which stays in it: one place per user and room (seed 002's pages). Otherwise as `Join`
    /// without a rejoin seq; joining again on the same connection answers again.
    JoinAlone {
        room: String,
        recent: u32,
    },
    Quit {
        room: String,
    },
    Get {
        room: String,
    },
    Members {
        room: String,
        limit: u32,
        page_token: String,
    },
    SetEntry {
        room: String,
        key: String,
        value: String,
        force: bool,
        auto_delete: bool,
    },
    RemoveEntry {
        room: String,
        key: String,
        force: bool,
    },
    Entries {
        room: String,
        keys: Vec<String>,
    },
}

/// A chatroom id: 1-64 of `A-Za-z0-9_-.@`, like user and group ids.
pub(crate) fn check_id(id: &str) -> Result<(), Refusal> {
    if validate::is_user_id(id) {
        Ok(())
    } else {
        Err(Refusal::new(
            Code::ChatroomInvalid,
            "a chatroom id is 1-64 of A-Z a-z 0-9 _ - . @",
        ))
    }
}

fn check_key(key: &str) -> Result<(), Refusal> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            Code::ChatroomInvalid,
            format!("a key is 1-{MAX_KEY_BYTES} of A-Z a-z 0-9 _ + = - ."),
        ))
    }
}

fn out(room: &Room, st: &RoomState) -> ChatroomOut {
    ChatroomOut {
        id: room.id.to_string(),
        name: st.profile.name.clone(),
        extra: st.profile.extra.clone(),
        created: st.profile.created,
        member_count: st.member_count(),
        max_members: st.profile.max_members,
        muted_until: st.profile.muted_until,
        seq: st.seq,
        kept: st.profile.kept,
    }
}

fn entry_out(key: &str, e: &Entry) -> EntryOut {
    EntryOut {
        key: key.to_string(),
        value: e.value.clone(),
        user: e.user.clone(),
        updated: e.updated,
        auto_delete: e.auto_delete,
    }
}

fn record(id: &str, p: &Profile) -> ChatroomRecord {
    ChatroomRecord {
        id: id.to_string(),
        name: p.name.clone(),
        extra: p.extra.clone(),
        created: p.created,
        max_members: p.max_members,
        muted_until: p.muted_until,
    }
}

fn store_failed(e: tidings_store::StoreError) -> Refusal {
    tracing::error!(error = %e, "chatroom store call failed");
    Code::ServerError.into()
}

/// After `user` left `room` (no connection of theirs is in it any more): removes the entries
/// they set to go with them, each with a notice, and has the leave reported.
fn left(room: &Room, st: &mut RoomState, user: &str, now: i64) {
    let gone: Vec<String> = st
        .entries
        .iter()
        .filter(|(_, e)| e.auto_delete && e.user == user)
        .map(|(k, _)| k.clone())
        .collect();
    for key in gone {
        st.entries.remove(&key);
        let content = serde_json::json!({"operation": "entry-remove", "key": key, "userId": user});
        st.notice(&room.id, user, content, Priority::High, now);
    }
    st.schedule_notices();
}

fn new_item(
    p: &PendingPublish,
    priority: Priority,
    origin: u64,
    now: i64,
    token: u64,
) -> NewItem<'_> {
    NewItem {
        sender: &p.sender,
        msg_type: &p.msg_type,
        content: p.content.clone(),
        push_text: p.push_text.clone(),
        client_msg_id: p.client_msg_id.clone(),
        digest: p.digest.clone(),
        priority,
        origin,
        token,
        now,
    }
}
