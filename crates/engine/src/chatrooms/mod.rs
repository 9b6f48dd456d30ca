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
mod home;
mod members;
mod registry;
mod room;

use std::sync::Arc;
use std::time::Duration;

use tidings_proto::Code;
use tidings_store::ChatroomRecord;

use crate::commit::PendingPublish;
use crate::session::SessionShared;
use crate::stream::Priority;
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
    crate::store_code(&e).into()
}

/// Takes `room` off the attachments of a session the room expelled (the room's state has let
/// the session go already).
fn forget_membership(session: &SessionShared, room: &Room) {
    session
        .attached()
        .retain(|a| !std::ptr::addr_eq(Arc::as_ptr(a), room as *const Room));
}

/// Takes every connection of `user` out of `room`, leaving them the items up to `until` (the
/// notice that tells them why).
fn take_out(room: &Room, st: &mut RoomState, user: &str, until: u64) {
    for s in st.expel(user, until) {
        forget_membership(&s, room);
    }
}

/// Ends `room`: every member is taken out after the items up to `until` (its destroy notice).
fn end_room(room: &Room, st: &mut RoomState, until: u64) {
    for user in st.member_ids() {
        take_out(room, st, &user, until);
    }
    st.destroyed = true;
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
