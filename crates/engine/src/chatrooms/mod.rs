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

mod room;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tidings_proto::{Code, conversation_type};
use tidings_store::{
    ChatroomRecord, ChatroomUser, GroupMember, GroupMembers, HistoryFrom, StoredMessage, WriteOp,
};

use crate::commit::PendingPublish;
use crate::validate::{self, Refusal};
use crate::{ApiError, Delivered, Engine, Outbound, Posted, PubAckOut, QueryAckOut, Session};
pub(crate) use room::Room;
use room::{Entry, NewItem, Profile, RoomState, Standing};

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
    /// An item of the room `room`, not yet numbered.
    pub fn new(
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

impl Engine {
    /// The room `id`: in memory, or loaded from the store if kept there, or (with auto-creation
    /// on) made now by the join of `creator`. Making rooms counts against the creator's limit
    /// of status messages, so joins cannot fill the server with empty rooms.
    async fn room(&self, id: &str, creator: Option<&str>) -> Result<Arc<Room>, Refusal> {
        check_id(id)?;
        {
            let mut rooms = self.rooms();
            if let Some(r) = rooms.get(id) {
                // One that ended but is still listed (its task has not yet dropped it) gives way.
                if !r.lock().destroyed {
                    let r = r.clone();
                    drop(rooms);
                    if self.cluster().is_some() {
                        r.set_home(self.is_room_home(id));
                    }
                    return Ok(r);
                }
                rooms.remove(id);
            }
        }
        let settings = &self.inner.config.chatrooms;
        let stored = self.inner.store.chatroom(id).await.map_err(store_failed)?;
        let (profile, standings) = match stored {
            Some((r, users)) => (
                Profile {
                    name: r.name,
                    extra: r.extra,
                    created: r.created,
                    max_members: r.max_members,
                    muted_until: r.muted_until,
                    kept: true,
                },
                users,
            ),
            None if creator.is_some() && settings.auto_create => {
                if creator.is_some_and(|user| !self.may_send_status(user)) {
                    return Err(Refusal::new(
                        Code::SendTooFast,
                        format!(
                            "at most {} chatrooms made a second",
                            crate::session::STATUS_RATE
                        ),
                    ));
                }
                (
                    Profile {
                        created: self.now_ms(),
                        max_members: settings.max_members,
                        ..Default::default()
                    },
                    Vec::new(),
                )
            }
            None => return Err(Code::ChatroomNotFound.into()),
        };
        let fresh = Arc::new(Room::new(id, profile, settings.history));
        {
            let mut st = fresh.lock();
            for u in standings {
                st.standings.insert(
                    u.user,
                    Standing {
                        banned_until: u.banned_until,
                        muted_until: u.muted_until,
                    },
                );
            }
        }
        let room = self.adopt_room(fresh);
        if self.cluster().is_some() {
            room.set_home(self.is_room_home(id));
        }
        Ok(room)
    }

    /// The room `id` as it is in memory here, if it is.
    pub(crate) fn rooms_get(&self, id: &str) -> Option<Arc<Room>> {
        self.rooms().get(id).cloned()
    }

    /// In a cluster, on a room's home: the room an item from another node is for, made here
    /// if it is in neither memory nor the store (a join on another node made it).
    pub(crate) async fn room_for_bus(&self, id: &str) -> Option<Arc<Room>> {
        match self.room(id, None).await {
            Ok(r) => Some(r),
            Err(r) if r.code == Code::ChatroomNotFound => {
                let settings = &self.inner.config.chatrooms;
                let profile = Profile {
                    created: self.now_ms(),
                    max_members: settings.max_members,
                    ..Default::default()
                };
                Some(self.adopt_room(Arc::new(Room::new(id, profile, settings.history))))
            }
            Err(_) => None,
        }
    }

    /// Puts `fresh` in the registry unless a room with its id got there first (which is
    /// answered instead), and starts its fan-out.
    fn adopt_room(&self, fresh: Arc<Room>) -> Arc<Room> {
        let mut rooms = self.rooms();
        if let Some(r) = rooms.get(&*fresh.id) {
            return r.clone();
        }
        rooms.insert(fresh.id.to_string(), fresh.clone());
        drop(rooms);
        tokio::spawn(room::run(
            fresh.clone(),
            Arc::downgrade(&self.inner),
            self.inner.config.chatrooms.idle,
        ));
        fresh
    }

    /// The room, if `user` is a member of it (on this node) now.
    pub(crate) async fn member_room(&self, id: &str, user: &str) -> Result<Arc<Room>, Refusal> {
        let room = self.room(id, None).await?;
        let st = room.lock();
        if st.destroyed {
            return Err(Code::ChatroomNotFound.into());
        }
        if !st.is_member(user) {
            return Err(Code::NotInChatroom.into());
        }
        drop(st);
        Ok(room)
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<Room>>> {
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a room that ended from the registry (unless another took its id meanwhile).
    pub(crate) fn forget_room(&self, room: &Arc<Room>) {
        let mut rooms = self.rooms();
        if rooms.get(&*room.id).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&*room.id);
        }
    }

    /// Takes an ending session out of every room it is in.
    pub(crate) fn leave_rooms(&self, session: &crate::session::SessionShared) {
        let joined: Vec<Arc<Room>> = session.rooms().drain(..).collect();
        let now = self.now_ms();
        for room in joined {
            let mut st = room.lock();
            if st.remove(session) == Some(true) {
                left(&room, &mut st, &session.user, now);
            }
            drop(st);
            room.wake();
        }
    }

    /// Ends every room's fan-out (at shutdown, once every session has ended).
    pub(crate) fn stop_rooms(&self) {
        let all: Vec<Arc<Room>> = self.rooms().drain().map(|(_, r)| r).collect();
        for room in all {
            room.lock().destroyed = true;
            room.wake();
        }
    }

    /// Creates a room the app server keeps until it destroys it. A room a join made is kept
    /// from now on, with this profile. 40027 if the room is kept already.
    pub async fn create_chatroom(
        &self,
        id: &str,
        name: String,
        extra: String,
        max_members: Option<u64>,
    ) -> Result<ChatroomOut, ApiError> {
        check_id(id).map_err(ApiError)?;
        crate::groups::check_profile(Some(&name), None, Some(&extra))?;
        let cap = self.inner.config.chatrooms.max_members;
        let max_members = match max_members {
            None => cap,
            Some(n) if n >= 1 && n <= cap => n,
            Some(_) => {
                return Err(ApiError(Refusal::new(
                    Code::ChatroomInvalid,
                    format!("maxMembers is 1-{cap}"),
                )));
            }
        };
        let live = self.rooms().get(id).cloned();
        let mut profile = Profile {
            name,
            extra,
            created: self.now_ms(),
            max_members,
            muted_until: 0,
            kept: true,
        };
        // A room a join made keeps its age, its mute and its users' standings, now stored.
        let mut standings = Vec::new();
        if let Some(room) = &live {
            let st = room.lock();
            profile.created = st.profile.created;
            profile.muted_until = st.profile.muted_until;
            standings.extend(
                st.standings
                    .iter()
                    .map(|(user, s)| WriteOp::SetChatroomUser {
                        room: id.to_string(),
                        standing: ChatroomUser {
                            user: user.clone(),
                            banned_until: s.banned_until,
                            muted_until: s.muted_until,
                        },
                    }),
            );
        }
        let mut ops = vec![WriteOp::CreateChatroom(record(id, &profile))];
        ops.extend(standings);
        let results = self.write(ops).await?;
        if !matches!(
            results.first(),
            Some(tidings_store::WriteResult::ChatroomCreated { fresh: true })
        ) {
            return Err(Code::ChatroomExists.into());
        }
        let room = match live {
            Some(room) => room,
            None => self.adopt_room(Arc::new(Room::new(
                id,
                profile.clone(),
                self.inner.config.chatrooms.history,
            ))),
        };
        let mut st = room.lock();
        st.profile = Profile {
            muted_until: st.profile.muted_until,
            ..profile
        };
        Ok(out(&room, &st))
    }

    /// A room's profile and member count (a kept room is loaded if it is not in memory).
    pub async fn chatroom(&self, id: &str) -> Result<ChatroomOut, ApiError> {
        let room = self.room(id, None).await.map_err(ApiError)?;
        let st = room.lock();
        Ok(out(&room, &st))
    }

    /// Destroys a room: its members get a `destroy` notice and are out; a kept room is
    /// forgotten by the store.
    pub async fn destroy_chatroom(&self, id: &str) -> Result<ChatroomOut, ApiError> {
        let room = self.room(id, None).await.map_err(ApiError)?;
        if room.lock().profile.kept {
            self.write(vec![WriteOp::DeleteChatroom { id: id.to_string() }])
                .await?;
        }
        let now = self.now_ms();
        let answer = {
            let mut st = room.lock();
            if st.destroyed {
                return Err(Code::ChatroomNotFound.into());
            }
            let notice = st.notice(
                &room.id,
                "",
                serde_json::json!({"operation": "destroy"}),
                Priority::High,
                now,
            );
            for user in st.member_ids() {
                for s in st.expel(&user, notice.seq()) {
                    s.rooms().retain(|r| !Arc::ptr_eq(r, &room));
                }
            }
            st.destroyed = true;
            out(&room, &st)
        };
        self.forget_room(&room);
        room.wake();
        Ok(answer)
    }

    /// A page of a room's members in the order they joined, after `page_token`.
    pub async fn chatroom_members(
        &self,
        id: &str,
        page_token: &str,
        limit: u32,
    ) -> Result<GroupMembers, ApiError> {
        let room = self.room(id, None).await.map_err(ApiError)?;
        members_page(&room, page_token, limit).map_err(ApiError)
    }

    /// Takes `users` out of a room, with a `kick` notice; with `ban_until` (ms) they may not
    /// join again until then (0 lifts a ban and kicks no one).
    pub async fn chatroom_kick(
        &self,
        id: &str,
        users: &[String],
        ban_until: Option<i64>,
    ) -> Result<ChatroomOut, ApiError> {
        check_change_users(users)?;
        let room = self.room(id, None).await.map_err(ApiError)?;
        if let Some(until) = ban_until {
            self.persist_standings(&room, users, |s| s.banned_until = until)
                .await?;
        }
        let now = self.now_ms();
        let mut st = room.lock();
        if st.destroyed {
            return Err(Code::ChatroomNotFound.into());
        }
        if let Some(until) = ban_until {
            for u in users {
                let s = st.standings.entry(u.clone()).or_default();
                s.banned_until = until;
            }
        }
        if ban_until != Some(0) {
            let present: Vec<&String> = users.iter().filter(|u| st.is_member(u)).collect();
            if !present.is_empty() {
                let content = serde_json::json!({
                    "operation": "kick",
                    "userIds": present,
                    "bannedUntil": ban_until.unwrap_or(0),
                });
                let notice = st.notice(&room.id, "", content, Priority::High, now);
                for u in users {
                    for s in st.expel(u, notice.seq()) {
                        s.rooms().retain(|r| !Arc::ptr_eq(r, &room));
                    }
                    left(&room, &mut st, u, now);
                }
            }
        }
        let answer = out(&room, &st);
        drop(st);
        room.wake();
        Ok(answer)
    }

    /// Mutes `users` in a room until `until` (ms; 0 unmutes), or with `users` `None` the whole
    /// room (only the app server may send then), with a notice.
    pub async fn chatroom_mute(
        &self,
        id: &str,
        users: Option<&[String]>,
        until: i64,
    ) -> Result<ChatroomOut, ApiError> {
        if let Some(users) = users {
            check_change_users(users)?;
        }
        let room = self.room(id, None).await.map_err(ApiError)?;
        match users {
            Some(users) => {
                self.persist_standings(&room, users, |s| s.muted_until = until)
                    .await?
            }
            None => {
                let kept = {
                    let st = room.lock();
                    st.profile.kept.then(|| {
                        record(
                            &room.id,
                            &Profile {
                                muted_until: until,
                                ..st.profile.clone()
                            },
                        )
                    })
                };
                if let Some(r) = kept {
                    self.write(vec![WriteOp::SetChatroom(r)]).await?;
                }
            }
        }
        let now = self.now_ms();
        let mut st = room.lock();
        if st.destroyed {
            return Err(Code::ChatroomNotFound.into());
        }
        let operation = if until == 0 { "unmute" } else { "mute" };
        let content = match users {
            Some(users) => {
                for u in users {
                    st.standings.entry(u.clone()).or_default().muted_until = until;
                }
                serde_json::json!({"operation": operation, "userIds": users, "until": until})
            }
            None => {
                st.profile.muted_until = until;
                serde_json::json!({"operation": operation, "all": true, "until": until})
            }
        };
        st.notice(&room.id, "", content, Priority::High, now);
        let answer = out(&room, &st);
        drop(st);
        room.wake();
        Ok(answer)
    }

    /// Stores the standings of `users` in a kept room as `change` makes them.
    async fn persist_standings(
        &self,
        room: &Room,
        users: &[String],
        change: impl Fn(&mut Standing),
    ) -> Result<(), ApiError> {
        let ops: Vec<WriteOp> = {
            let st = room.lock();
            if !st.profile.kept {
                return Ok(());
            }
            users
                .iter()
                .map(|u| {
                    let mut s = st.standing(u);
                    change(&mut s);
                    WriteOp::SetChatroomUser {
                        room: room.id.to_string(),
                        standing: ChatroomUser {
                            user: u.clone(),
                            banned_until: s.banned_until,
                            muted_until: s.muted_until,
                        },
                    }
                })
                .collect()
        };
        self.write(ops).await?;
        Ok(())
    }

    /// A room's entries (`keys` only, if any).
    pub async fn chatroom_entries(
        &self,
        id: &str,
        keys: &[String],
    ) -> Result<Vec<EntryOut>, ApiError> {
        let room = self.room(id, None).await.map_err(ApiError)?;
        let st = room.lock();
        Ok(entries_of(&st, keys))
    }

    /// Sets an entry for the app server, as `user` (overwriting whoever set it).
    pub async fn set_chatroom_entry_as(
        &self,
        id: &str,
        user: &str,
        key: &str,
        value: String,
        auto_delete: bool,
    ) -> Result<EntryOut, ApiError> {
        check_api_user(user)?;
        let room = self.room(id, None).await.map_err(ApiError)?;
        let now = self.now_ms();
        set_entry(&room, user, key, value, true, auto_delete, now).map_err(ApiError)
    }

    /// Removes an entry for the app server, whoever set it; the notice is from `user`.
    pub async fn remove_chatroom_entry_as(
        &self,
        id: &str,
        user: &str,
        key: &str,
    ) -> Result<(), ApiError> {
        check_api_user(user)?;
        let room = self.room(id, None).await.map_err(ApiError)?;
        let now = self.now_ms();
        remove_entry(&room, user, key, true, now).map_err(ApiError)
    }

    /// Posts a message to a room for the app server, as `sender` (who need not be a member;
    /// mutes do not apply). A repeat of a client message id the history still holds answers the
    /// first post.
    pub(crate) async fn post_to_chatroom(
        &self,
        p: PendingPublish,
        priority: Priority,
    ) -> Result<Posted, ApiError> {
        let room = self.room(&p.target, None).await.map_err(ApiError)?;
        // In a cluster, the numbered item comes back to this node.
        self.room_interest(&p.target).await;
        let now = self.now_ms();
        let waiter = self.room_waiter();
        let token = waiter.as_ref().map_or(0, |w| w.0);
        let posted = {
            let mut st = room.lock();
            if st.destroyed {
                Err(Code::ChatroomNotFound.into())
            } else {
                match st.earlier(&p.sender, &p.client_msg_id) {
                    Some(e) if e.digest == p.digest => Ok((e, true)),
                    Some(_) => Err(Code::ClientMsgIdConflict.into()),
                    None if st.is_overloaded() => Err(Code::ChatroomOverloaded.into()),
                    None => Ok((
                        st.post(&room.id, new_item(&p, priority, 0, now, token)),
                        false,
                    )),
                }
            }
        };
        let (item, duplicate) = match posted {
            Ok(p) => p,
            Err(e) => {
                self.drop_room_waiter(waiter);
                return Err(e);
            }
        };
        if !duplicate {
            crate::metrics::m().accepted(conversation_type::CHATROOM);
        }
        room.wake();
        let item = if !duplicate && item.seq() == 0 {
            self.room_numbered(waiter).await.ok_or_else(|| {
                ApiError(Refusal::new(
                    Code::ServerError,
                    "the chatroom's home node did not number the message in time",
                ))
            })?
        } else {
            self.drop_room_waiter(waiter);
            item
        };
        if !duplicate && let Some(hooks) = &self.inner.hooks {
            hooks.sent(&item.message().message);
        }
        let m = item.message();
        Ok(Posted {
            user: String::new(),
            uid: m.uid().to_string(),
            seq: m.seq(),
            sent_time: m.sent_time(),
            duplicate,
        })
    }
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

fn check_api_user(user: &str) -> Result<(), ApiError> {
    if validate::is_user_id(user) {
        Ok(())
    } else {
        Err(Code::InvalidUserId.into())
    }
}

fn check_change_users(users: &[String]) -> Result<(), ApiError> {
    if users.is_empty() || users.len() > MAX_USERS_PER_CHANGE {
        return Err(ApiError(Refusal::new(
            Code::BadRequest,
            format!("give 1-{MAX_USERS_PER_CHANGE} user ids"),
        )));
    }
    users.iter().try_for_each(|u| check_api_user(u))
}

fn members_page(room: &Room, page_token: &str, limit: u32) -> Result<GroupMembers, Refusal> {
    let max = crate::groups::MEMBERS_PAGE_MAX;
    if limit > max {
        return Err(Refusal::new(
            Code::ChatroomInvalid,
            format!("limit is at most {max}"),
        ));
    }
    let after = match page_token {
        "" => 0,
        t => t.parse().map_err(|_| {
            Refusal::new(
                Code::ChatroomInvalid,
                "page token is not one this server issued",
            )
        })?,
    };
    let limit = if limit == 0 {
        crate::groups::MEMBERS_PAGE_DEFAULT
    } else {
        limit
    } as usize;
    let st = room.lock();
    let page = st.members_page(after, limit + 1);
    let next = (page.len() > limit).then(|| page[limit - 1].2);
    Ok(GroupMembers {
        members: page
            .into_iter()
            .take(limit)
            .map(|(user, joined, _)| GroupMember {
                muted_until: st.standing(&user).muted_until,
                user,
                joined,
            })
            .collect(),
        next,
    })
}

fn entries_of(st: &RoomState, keys: &[String]) -> Vec<EntryOut> {
    if keys.is_empty() {
        st.entries.iter().map(|(k, e)| entry_out(k, e)).collect()
    } else {
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| st.entries.get(k).map(|e| entry_out(k, e)))
            .collect()
    }
}

fn set_entry(
    room: &Room,
    user: &str,
    key: &str,
    value: String,
    force: bool,
    auto_delete: bool,
    now: i64,
) -> Result<EntryOut, Refusal> {
    check_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(Refusal::new(
            Code::ChatroomInvalid,
            format!("a value is at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    let mut st = room.lock();
    if st.destroyed {
        return Err(Code::ChatroomNotFound.into());
    }
    match st.entries.get(key) {
        Some(e) if e.user != user && !force => return Err(Code::ChatroomEntryTaken.into()),
        None if st.entries.len() >= MAX_ENTRIES => {
            return Err(Refusal::new(
                Code::ChatroomEntriesFull,
                format!("a chatroom holds at most {MAX_ENTRIES} entries"),
            ));
        }
        _ => {}
    }
    let entry = Entry {
        value,
        user: user.to_string(),
        updated: now,
        auto_delete,
    };
    let answer = entry_out(key, &entry);
    st.entries.insert(key.to_string(), entry);
    let content = serde_json::json!({
        "operation": "entry",
        "key": key,
        "value": answer.value,
        "userId": user,
        "autoDelete": auto_delete,
    });
    st.notice(&room.id, user, content, Priority::High, now);
    drop(st);
    room.wake();
    Ok(answer)
}

fn remove_entry(room: &Room, user: &str, key: &str, force: bool, now: i64) -> Result<(), Refusal> {
    check_key(key)?;
    let mut st = room.lock();
    if st.destroyed {
        return Err(Code::ChatroomNotFound.into());
    }
    match st.entries.get(key) {
        None => return Err(Code::ChatroomEntryNotFound.into()),
        Some(e) if e.user != user && !force => return Err(Code::ChatroomEntryTaken.into()),
        Some(_) => {}
    }
    st.entries.remove(key);
    let content = serde_json::json!({"operation": "entry-remove", "key": key, "userId": user});
    st.notice(&room.id, user, content, Priority::High, now);
    drop(st);
    room.wake();
    Ok(())
}

impl Session {
    /// Answers a chatroom query; the QUERYACK arrives through the outbox.
    pub async fn chatroom_query(&self, query_id: u32, query: ChatroomQuery) {
        let answer = match query {
            // A join answers itself, in order with the room's pushes.
            ChatroomQuery::Join {
                room,
                recent,
                after_seq,
            } => match self.join(query_id, &room, recent, after_seq, false).await {
                Ok(()) => return,
                Err(r) => Err(r),
            },
            ChatroomQuery::JoinAlone { room, recent } => {
                match self.join(query_id, &room, recent, 0, true).await {
                    Ok(()) => return,
                    Err(r) => Err(r),
                }
            }
            other => self.answer_chatroom(other).await,
        };
        let out = match answer {
            Ok(mut out) => {
                out.query_id = query_id;
                out
            }
            Err(r) => QueryAckOut::refused(query_id, r),
        };
        self.shared
            .reply(&self.engine, Outbound::QueryAck(Box::new(out)));
    }

    async fn join(
        &self,
        query_id: u32,
        id: &str,
        recent: u32,
        after_seq: u64,
        alone: bool,
    ) -> Result<(), Refusal> {
        check_id(id)?;
        if recent > RECENT_MAX || (recent > 0 && after_seq > 0) {
            return Err(Refusal::new(
                Code::ChatroomInvalid,
                format!("ask for at most {RECENT_MAX} recent messages, or those after a seq"),
            ));
        }
        let user = &self.shared.user;
        // A room destroyed between finding it and locking it is looked up again (once). A
        // rejoin (after a seq) continues a room: one that is gone is not made again.
        for _ in 0..2 {
            let room = self
                .engine
                .room(id, (after_seq == 0).then_some(user.as_str()))
                .await?;
            // In a cluster, the room's items reach this node before the join is answered.
            self.engine.room_interest(id).await;
            let now = self.engine.now_ms();
            let mut st = room.lock();
            if st.destroyed {
                continue;
            }
            if st.standing(user).banned_until > now {
                return Err(Code::KickedFromChatroom.into());
            }
            if !st.has_session(user, self.shared.id) {
                if alone && st.is_member(user) {
                    return Err(Code::ChatroomJoinedElsewhere.into());
                }
                if !st.is_member(user) && st.member_count() >= st.profile.max_members {
                    return Err(Code::ChatroomFull.into());
                }
                // Checked and recorded under the session's room list, which an ending session
                // drains after it is marked ended: so a session that ends meanwhile either is
                // refused here or is taken out of the room by its end.
                let mut joined = self.shared.rooms();
                if self.shared.is_ended() {
                    return Err(Code::ServerShutdown.into());
                }
                if joined.len() >= MAX_ROOMS_PER_CONNECTION {
                    return Err(Refusal::new(
                        Code::ChatroomInvalid,
                        format!("a connection is in at most {MAX_ROOMS_PER_CONNECTION} chatrooms"),
                    ));
                }
                if st.add(&self.shared, now) {
                    st.schedule_notices();
                }
                joined.push(room.clone());
            }
            let (messages, has_more): (Vec<Delivered>, bool) = if after_seq > 0 {
                let after: Vec<&Arc<RoomItem>> =
                    st.history().filter(|i| i.seq() > after_seq).collect();
                let more = after.len() > REJOIN_MAX;
                (
                    after
                        .into_iter()
                        .take(REJOIN_MAX)
                        .map(|i| i.message().clone())
                        .collect(),
                    more,
                )
            } else {
                let recent = st.recent(recent as usize);
                (recent.iter().map(|i| i.message().clone()).collect(), false)
            };
            // Queued under the room's lock: every push of a later item comes after it. A full
            // queue ends the session, but only once the lock is released (ending takes the
            // session out of its rooms, this one included).
            let queued = self
                .shared
                .outbox
                .push(Outbound::QueryAck(Box::new(QueryAckOut {
                    query_id,
                    chatrooms: vec![out(&room, &st)],
                    messages,
                    has_more,
                    ..Default::default()
                })));
            drop(st);
            room.wake();
            if queued.is_err() {
                self.shared.end(&self.engine, Code::SlowConsumer);
            }
            return Ok(());
        }
        Err(Code::ChatroomNotFound.into())
    }

    /// The room, if this user is a member of it.
    async fn member_room(&self, id: &str) -> Result<Arc<Room>, Refusal> {
        self.engine.member_room(id, &self.shared.user).await
    }

    async fn answer_chatroom(&self, query: ChatroomQuery) -> Result<QueryAckOut, Refusal> {
        let user = self.shared.user.clone();
        let now = self.engine.now_ms();
        match query {
            ChatroomQuery::Join { .. } | ChatroomQuery::JoinAlone { .. } => {
                Err(Code::InvalidQuery.into())
            }
            ChatroomQuery::Quit { room: id } => {
                check_id(&id)?;
                let room = {
                    let mut joined = self.shared.rooms();
                    let i = joined
                        .iter()
                        .position(|r| &*r.id == id.as_str())
                        .ok_or(Refusal::from(Code::NotInChatroom))?;
                    joined.remove(i)
                };
                let mut st = room.lock();
                if st.remove(&self.shared) == Some(true) {
                    left(&room, &mut st, &user, now);
                }
                let answer = out(&room, &st);
                drop(st);
                room.wake();
                Ok(QueryAckOut {
                    chatrooms: vec![answer],
                    ..Default::default()
                })
            }
            ChatroomQuery::Get { room } => {
                let room = self.member_room(&room).await?;
                let st = room.lock();
                Ok(QueryAckOut {
                    chatrooms: vec![out(&room, &st)],
                    ..Default::default()
                })
            }
            ChatroomQuery::Members {
                room,
                limit,
                page_token,
            } => {
                let room = self.member_room(&room).await?;
                let page = members_page(&room, &page_token, limit)?;
                Ok(QueryAckOut {
                    members: page.members,
                    next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
                    ..Default::default()
                })
            }
            ChatroomQuery::SetEntry {
                room,
                key,
                value,
                force,
                auto_delete,
            } => {
                let room = self.member_room(&room).await?;
                let entry = set_entry(&room, &user, &key, value, force, auto_delete, now)?;
                Ok(QueryAckOut {
                    entries: vec![entry],
                    ..Default::default()
                })
            }
            ChatroomQuery::RemoveEntry { room, key, force } => {
                let room = self.member_room(&room).await?;
                remove_entry(&room, &user, &key, force, now)?;
                Ok(QueryAckOut::default())
            }
            ChatroomQuery::Entries { room, keys } => {
                if keys.len() > MAX_ENTRIES {
                    return Err(Refusal::new(
                        Code::ChatroomInvalid,
                        format!("ask for at most {MAX_ENTRIES} keys"),
                    ));
                }
                let room = self.member_room(&room).await?;
                let st = room.lock();
                Ok(QueryAckOut {
                    entries: entries_of(&st, &keys),
                    ..Default::default()
                })
            }
        }
    }

    /// A page of a room's recent history (members only): as `history` pages a conversation,
    /// within what the room keeps.
    pub(crate) async fn chatroom_history(
        &self,
        id: &str,
        from: HistoryFrom,
        count: usize,
    ) -> Result<(Vec<Delivered>, bool), Refusal> {
        let room = self.member_room(id).await?;
        let st = room.lock();
        let matches = |i: &&Arc<RoomItem>| match from {
            HistoryFrom::BeforeSeq(s) => i.seq() < s,
            HistoryFrom::AfterSeq(s) => i.seq() > s,
            HistoryFrom::BeforeTime(t) => i.message().sent_time() < t,
            HistoryFrom::AfterTime(t) => i.message().sent_time() > t,
        };
        let backwards = matches!(from, HistoryFrom::BeforeSeq(_) | HistoryFrom::BeforeTime(_));
        let mut page: Vec<Delivered> = if backwards {
            st.history()
                .rev()
                .filter(matches)
                .take(count + 1)
                .map(|i| i.message().clone())
                .collect()
        } else {
            st.history()
                .filter(matches)
                .take(count + 1)
                .map(|i| i.message().clone())
                .collect()
        };
        let mut has_more = page.len() > count;
        page.truncate(count);
        // Within the answer's byte budget, keeping the messages nearest the starting point.
        let budget = self.page_budget();
        let mut bytes = 0;
        if let Some(fit) = page.iter().position(|m| {
            bytes += m.approx_bytes();
            bytes > budget
        }) {
            page.truncate(fit.max(1));
            has_more = true;
        }
        if backwards {
            page.reverse();
        }
        Ok((page, has_more))
    }

    /// Posts a checked message to a room this user is a member of, and answers the PUBACK: code
    /// 0 once the room has numbered it. `limited`: over the send limit, only a resend of a
    /// message the history holds is answered (with its first answer).
    pub(crate) async fn publish_to_chatroom(
        &self,
        packet_id: u32,
        p: PendingPublish,
        notice: u32,
        priority: Priority,
        limited: bool,
    ) {
        let refuse = |r: Refusal| {
            self.shared.reply(
                &self.engine,
                Outbound::PubAck(PubAckOut::refused(packet_id, r)),
            )
        };
        let room = match self.engine.room(&p.target, None).await {
            Ok(r) => r,
            Err(r) => return refuse(r),
        };
        let user = &self.shared.user;
        let now = self.engine.now_ms();
        let waiter = self.engine.room_waiter();
        let token = waiter.as_ref().map_or(0, |w| w.0);
        let posted = {
            let mut st = room.lock();
            match st.earlier(user, &p.client_msg_id) {
                Some(e) if e.digest == p.digest => Ok((e, false)),
                Some(_) => Err(Code::ClientMsgIdConflict.into()),
                None if limited => Err(Refusal::new(
                    Code::SendTooFast,
                    format!(
                        "at most {} messages a second",
                        self.engine.inner.config.send_rate
                    ),
                )),
                None if st.destroyed => Err(Code::ChatroomNotFound.into()),
                None if !st.is_member(user) => Err(Code::NotInChatroom.into()),
                None if st.standing(user).muted_until > now || st.profile.muted_until > now => {
                    Err(Code::MutedInChatroom.into())
                }
                None if st.is_overloaded() => Err(Code::ChatroomOverloaded.into()),
                None => Ok((
                    st.post(&room.id, new_item(&p, priority, self.shared.id, now, token)),
                    true,
                )),
            }
        };
        let (item, fresh) = match posted {
            Ok(p) => p,
            Err(r) => {
                self.engine.drop_room_waiter(waiter);
                return refuse(r);
            }
        };
        if fresh {
            crate::metrics::m().accepted(conversation_type::CHATROOM);
            room.wake();
        }
        // In a cluster, a send made on a node that is not the room's home is numbered there;
        // the answer waits for that in a task of its own, so the connection's next frames do
        // not.
        if fresh && item.seq() == 0 {
            let (engine, shared) = (self.engine.clone(), self.shared.clone());
            tokio::spawn(async move {
                match engine.room_numbered(waiter).await {
                    Some(item) => {
                        if let Some(hooks) = &engine.inner.hooks {
                            hooks.sent(&item.message().message);
                        }
                        answer_room_publish(&engine, &shared, packet_id, &item, notice);
                    }
                    None => shared.reply(
                        &engine,
                        Outbound::PubAck(PubAckOut::refused(
                            packet_id,
                            Refusal::new(
                                Code::ServerError,
                                "the chatroom's home node did not number the message in time",
                            ),
                        )),
                    ),
                }
            });
            return;
        }
        self.engine.drop_room_waiter(waiter);
        if fresh && let Some(hooks) = &self.engine.inner.hooks {
            hooks.sent(&item.message().message);
        }
        answer_room_publish(&self.engine, &self.shared, packet_id, &item, notice);
    }
}

/// The PUBACK of a chatroom message the room numbered.
fn answer_room_publish(
    engine: &Engine,
    shared: &crate::session::SessionShared,
    packet_id: u32,
    item: &RoomItem,
    notice: u32,
) {
    let m = item.message();
    shared.reply(
        engine,
        Outbound::PubAck(PubAckOut {
            packet_id,
            code: 0,
            text: String::new(),
            uid: m.uid().to_string(),
            seq: m.seq(),
            sent_time: m.sent_time(),
            inbox_seq: 0,
            notice,
            content: if notice != 0 {
                m.content().to_string()
            } else {
                String::new()
            },
        }),
    );
}

impl PendingPublish {
    /// A chatroom message: never stored, so only what the room's stream needs.
    pub(crate) fn chatroom(sender: &str, send: crate::SendRequest) -> PendingPublish {
        let digest = crate::session::digest(&send);
        PendingPublish {
            conversation_type: conversation_type::CHATROOM,
            conversation_id: format!("{}:{}", conversation_type::CHATROOM, send.target_id),
            sender: sender.to_string(),
            target: send.target_id,
            msg_type: send.msg_type,
            content: send.content,
            push_text: send.push_text,
            client_msg_id: send.client_msg_id,
            digest,
            ..Default::default()
        }
    }
}
