//! One chatroom in memory: its members (per connection), its stream of items (messages and
//! notices, numbered by the room's seq), its recent history, its entries and the standings of
//! its users; and the task that fans its items out.
//!
//! Items are numbered and queued under the room's lock, and one task per room takes the queue
//! and pushes each item to every member connection's outbox, outside the lock, in seq order. So
//! a publisher never waits for the fan-out, members see the stream in order, and a slow member
//! only fills its own outbox (which drops the room's LOW and NORMAL items before its inbox
//! deliveries suffer, and reports each drop with a gap marker).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tidings_proto::{CHATROOM_EVENT_TYPE, Code, conversation_type};
use tidings_store::StoredMessage;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::session::SessionShared;
use crate::stream::{Priority, RoomItem, RoundWire};
use crate::{Engine, Inner};

/// Rooms with fewer members than this get each join and leave notice at once; larger ones get
/// them gathered, at most one of each per [`NOTICE_INTERVAL`], so a join storm costs the room a
/// notice a second rather than one per join.
pub const NOTICE_BATCH_MEMBERS: usize = 100;
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(1);
/// A notice names at most this many users; its `count` says how many there were.
pub const NOTICE_MAX_USERS: usize = 100;
/// Counts of items waiting for a room's fan-out (not durations: those are the outbox's
/// `LOW_LAG` and `NORMAL_LAG`, how far behind one connection is). When the fan-out finds more
/// than [`BACKLOG_LOW`] items waiting, it drops the oldest LOW ones among them until no more
/// than that many wait; past [`BACKLOG_NORMAL`], the oldest NORMAL ones too. Members get gap
/// markers for them.
pub const BACKLOG_LOW: usize = 256;
pub const BACKLOG_NORMAL: usize = 1024;
/// Items a room may hold waiting for the fan-out; a send beyond it is refused (40028).
pub const QUEUE_MAX: usize = 4096;

/// A room's profile.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub name: String,
    pub extra: String,
    pub created: i64,
    pub max_members: u64,
    /// Until when (ms) only the app server may send; 0: not muted.
    pub muted_until: i64,
    /// Created by the app server and kept in the store until it destroys the room; otherwise
    /// made by a first join and gone once it has been empty for the idle time.
    pub kept: bool,
}

/// One key-value entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub user: String,
    pub updated: i64,
    pub auto_delete: bool,
}

/// A user's bans and mutes in the room (ms; 0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Standing {
    pub banned_until: i64,
    pub muted_until: i64,
}

/// A connection the fan-out pushes to: the items with seqs in `(from, until]`.
#[derive(Clone)]
struct Target {
    session: Arc<SessionShared>,
    from: u64,
    until: u64,
}

/// A member: a user with at least one connection in the room.
struct Member {
    /// The order of joining (for the member list).
    join: u64,
    joined: i64,
    /// The user's connections in the room, each with the room's seq when it joined.
    sessions: Vec<(Arc<SessionShared>, u64)>,
}

pub struct Room {
    pub id: Arc<str>,
    state: Mutex<RoomState>,
    /// Wakes the fan-out task.
    wake: Notify,
    /// In a cluster, on a node that is not the room's home: set once what the home held of the
    /// room when this node took it in (bans, mutes, entries) was asked for and taken in. Every
    /// lookup of the room waits for it, so no join or send is judged before.
    pub(crate) from_home: tokio::sync::OnceCell<()>,
}

pub struct RoomState {
    pub profile: Profile,
    /// The newest item's seq.
    pub seq: u64,
    next_join: u64,
    members: HashMap<String, Member>,
    /// Members by order of joining.
    order: BTreeMap<u64, String>,
    /// Connections taken out of the room that still get its items up to a seq (the notice that
    /// told them why).
    departing: Vec<Target>,
    /// The fan-out's targets; rebuilt after a membership change.
    targets: Option<Arc<[Target]>>,
    /// The newest messages of users (notices are not kept).
    history: VecDeque<Arc<RoomItem>>,
    history_cap: usize,
    pub entries: BTreeMap<String, Entry>,
    pub standings: HashMap<String, Standing>,
    /// Items waiting for the fan-out.
    queue: VecDeque<Arc<RoomItem>>,
    /// Join and leave notices not yet made.
    joins: BTreeSet<String>,
    leaves: BTreeSet<String>,
    notice_due: Option<Instant>,
    last_notice: Option<Instant>,
    /// Since when the room has had no member.
    empty_since: Option<Instant>,
    pub destroyed: bool,
    /// In a cluster: whether this node numbers the room's items (it is the room's home). Set
    /// by the engine before every use; always true on a single node.
    pub home: bool,
    /// In a cluster: whether `seq` is the room's (this node numbered an item, or received one
    /// from the home); a room made here on a node that is not its home knows it only then.
    synced: bool,
    /// Items made here on a node that is not the room's home, for the fan-out task to forward
    /// to the home (which numbers them).
    forward: Vec<Arc<RoomItem>>,
    /// Seq ranges this node will never get (lost on the bus or numbered twice across a home
    /// change): members in whose window they fall get a gap marker.
    missing: Vec<(u64, u64)>,
    /// In a cluster: the room's member count on each other live node, as that node last said.
    pub remote_counts: HashMap<String, u64>,
    /// In a cluster: the member count this node last told the others.
    told_count: Option<u64>,
}

impl Room {
    pub fn new(id: &str, profile: Profile, history_cap: usize) -> Room {
        Room {
            id: Arc::from(id),
            state: Mutex::new(RoomState {
                profile,
                seq: 0,
                next_join: 1,
                members: HashMap::new(),
                order: BTreeMap::new(),
                departing: Vec::new(),
                targets: None,
                history: VecDeque::new(),
                history_cap,
                entries: BTreeMap::new(),
                standings: HashMap::new(),
                queue: VecDeque::new(),
                joins: BTreeSet::new(),
                leaves: BTreeSet::new(),
                notice_due: None,
                last_notice: None,
                empty_since: Some(Instant::now()),
                destroyed: false,
                home: true,
                synced: false,
                forward: Vec::new(),
                missing: Vec::new(),
                remote_counts: HashMap::new(),
                told_count: None,
            }),
            wake: Notify::new(),
            from_home: tokio::sync::OnceCell::new(),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, RoomState> {
        // Every change below leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the fan-out task there is work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// In a cluster: whether this node is the room's home now.
    pub fn set_home(&self, home: bool) {
        self.lock().home = home;
    }

    /// In a cluster: forgets the member counts of nodes that are gone (`live` says which
    /// others are not; asked outside the room's lock).
    pub fn keep_counts_of(&self, live: impl Fn(&str) -> bool) {
        let nodes: Vec<String> = self.lock().remote_counts.keys().cloned().collect();
        let gone: Vec<String> = nodes.into_iter().filter(|n| !live(n)).collect();
        if !gone.is_empty() {
            let mut st = self.lock();
            for node in gone {
                st.remote_counts.remove(&node);
            }
        }
    }
}

/// A fresh item of the room's stream.
pub struct NewItem<'a> {
    pub sender: &'a str,
    pub msg_type: &'a str,
    pub content: String,
    pub push_text: String,
    pub client_msg_id: String,
    pub digest: String,
    pub priority: Priority,
    /// The sending connection, which does not get the item back (0: none).
    pub origin: u64,
    /// In a cluster, what the sender's answer waits on when another node numbers the item
    /// (0: nothing).
    pub token: u64,
    pub now: i64,
}

impl RoomState {
    /// The room's members: here, and in a cluster on the other live nodes (a user in the room
    /// on two nodes counts twice).
    pub fn member_count(&self) -> u64 {
        self.members.len() as u64 + self.remote_counts.values().sum::<u64>()
    }

    /// The members on this node.
    pub fn local_member_count(&self) -> u64 {
        self.members.len() as u64
    }

    /// In a cluster: this node's member count, if it changed since this node last told it.
    pub fn count_to_tell(&mut self) -> Option<u64> {
        let now = self.local_member_count();
        (self.told_count != Some(now)).then(|| {
            self.told_count = Some(now);
            now
        })
    }

    pub fn is_member(&self, user: &str) -> bool {
        self.members.contains_key(user)
    }

    /// Whether connection `session` is in the room.
    pub fn has_session(&self, user: &str, session: u64) -> bool {
        self.members
            .get(user)
            .is_some_and(|m| m.sessions.iter().any(|(s, _)| s.id == session))
    }

    pub fn standing(&self, user: &str) -> Standing {
        self.standings.get(user).copied().unwrap_or_default()
    }

    /// Numbers a new item and queues it for the fan-out (a user's message also goes into the
    /// history). The caller wakes the room. In a cluster, on a node that is not the room's
    /// home, the item is not numbered here (its seq is 0): the fan-out task forwards it to the
    /// home, and it comes back numbered.
    pub fn post(&mut self, room: &Arc<str>, new: NewItem<'_>) -> Arc<RoomItem> {
        let seq = if self.home { self.seq + 1 } else { 0 };
        let message = StoredMessage {
            uid: ulid::Ulid::new().to_string(),
            conversation_type: conversation_type::CHATROOM,
            conversation_id: format!("{}:{room}", conversation_type::CHATROOM),
            sender: new.sender.to_string(),
            target: room.to_string(),
            seq,
            sent_time: new.now,
            msg_type: new.msg_type.to_string(),
            content: new.content,
            push_text: new.push_text,
            client_msg_id: new.client_msg_id,
            ..Default::default()
        };
        let mut item = RoomItem::new(room.clone(), message, new.priority, new.origin, new.digest);
        item.token = new.token;
        if !self.home {
            let item = Arc::new(item);
            self.forward.push(item.clone());
            return item;
        }
        self.seq = seq;
        self.synced = true;
        item.numbered_here = true;
        let item = Arc::new(item);
        self.keep(&item);
        item
    }

    /// Puts earlier messages of the room (oldest first) into an empty history, not into the
    /// fan-out's queue: what a node that takes the room in learns from the home.
    pub fn take_history(&mut self, items: impl Iterator<Item = RoomItem>) {
        if !self.history.is_empty() {
            return;
        }
        for item in items {
            if self.history.len() == self.history_cap {
                self.history.pop_front();
            }
            if self.history_cap > 0 {
                self.history.push_back(Arc::new(item));
            }
        }
    }

    /// Puts a numbered item into the history (a user's message) and the fan-out's queue.
    fn keep(&mut self, item: &Arc<RoomItem>) {
        if item.message().msg_type() != CHATROOM_EVENT_TYPE && self.history_cap > 0 {
            if self.history.len() == self.history_cap {
                self.history.pop_front();
            }
            self.history.push_back(item.clone());
        }
        self.queue.push_back(item.clone());
    }

    /// In a cluster, on the room's home: the item another node made, numbered here.
    pub fn number(&mut self, mut item: RoomItem, known: u64) -> Arc<RoomItem> {
        self.learn(known);
        self.seq += 1;
        self.synced = true;
        item.set_seq(self.seq);
        item.numbered_here = true;
        if self.members.is_empty() {
            // Busy elsewhere: the home keeps the room (and its seq) while items pass.
            self.empty_since = Some(Instant::now());
        }
        let item = Arc::new(item);
        self.keep(&item);
        item
    }

    /// In a cluster: the room is at least at `seq` (as another node knows it). Members here
    /// get a gap marker for the items this node did not get.
    pub fn learn(&mut self, seq: u64) {
        if seq > self.seq {
            if self.synced {
                self.missing.push((self.seq + 1, seq));
            }
            self.seq = seq;
            self.synced = true;
        }
    }

    /// In a cluster: an item another node numbered. One numbered past the next seq leaves a
    /// gap; one at or below the room's seq was numbered twice (by two nodes that each took
    /// themselves for the home while the cluster changed) and is reported as missed, never
    /// shown after a later item. Returns whether the item was taken.
    pub fn accept(&mut self, item: RoomItem) -> bool {
        let seq = item.seq();
        if self.synced && seq <= self.seq {
            self.missing.push((seq, seq));
            return false;
        }
        if self.synced && seq > self.seq + 1 {
            self.missing.push((self.seq + 1, seq - 1));
        }
        self.seq = seq;
        self.synced = true;
        let item = Arc::new(item);
        self.keep(&item);
        true
    }

    /// Queues a notice (a `tidings:chatroom` item) with `content` from `sender` (empty: the
    /// server).
    pub fn notice(
        &mut self,
        room: &Arc<str>,
        sender: &str,
        content: serde_json::Value,
        priority: Priority,
        now: i64,
    ) -> Arc<RoomItem> {
        self.post(
            room,
            NewItem {
                sender,
                msg_type: CHATROOM_EVENT_TYPE,
                content: content.to_string(),
                push_text: String::new(),
                client_msg_id: String::new(),
                digest: String::new(),
                priority,
                origin: 0,
                token: 0,
                now,
            },
        )
    }

    /// Whether the fan-out is so far behind that no more may be queued.
    pub fn is_overloaded(&self) -> bool {
        self.queue.len() >= QUEUE_MAX
    }

    /// An earlier message with the same sender and client message id, if the history holds it.
    pub fn earlier(&self, sender: &str, client_msg_id: &str) -> Option<Arc<RoomItem>> {
        self.history
            .iter()
            .rev()
            .find(|i| {
                i.message().sender_id() == sender && i.message().client_msg_id() == client_msg_id
            })
            .cloned()
    }

    /// The newest `n` messages of the history, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Arc<RoomItem>> {
        let skip = self.history.len().saturating_sub(n);
        self.history.iter().skip(skip).cloned().collect()
    }

    /// The history's messages in seq order.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Arc<RoomItem>> {
        self.history.iter()
    }

    /// Adds connection `session` of `user` (it gets the items after the room's current seq).
    /// Returns whether the user became a member by it. The caller checks capacity and bans.
    pub fn add(&mut self, session: &Arc<SessionShared>, now: i64) -> bool {
        let from = self.seq;
        self.targets = None;
        self.empty_since = None;
        if let Some(m) = self.members.get_mut(&session.user) {
            m.sessions.push((session.clone(), from));
            return false;
        }
        let join = self.next_join;
        self.next_join += 1;
        self.order.insert(join, session.user.clone());
        self.members.insert(
            session.user.clone(),
            Member {
                join,
                joined: now,
                sessions: vec![(session.clone(), from)],
            },
        );
        if !self.leaves.remove(&session.user) {
            self.joins.insert(session.user.clone());
        }
        true
    }

    /// Takes connection `session` out. Returns whether its user stopped being a member by it,
    /// and `None` if the connection was not in the room.
    pub fn remove(&mut self, session: &SessionShared) -> Option<bool> {
        let member = self.members.get_mut(&session.user)?;
        let before = member.sessions.len();
        member.sessions.retain(|(s, _)| s.id != session.id);
        if member.sessions.len() == before {
            return None;
        }
        self.targets = None;
        if !member.sessions.is_empty() {
            return Some(false);
        }
        self.forget_member(&session.user, true);
        Some(true)
    }

    /// Takes every connection of `user` out, leaving them the items up to `until` (the notice
    /// that tells them why). Returns those connections.
    pub fn expel(&mut self, user: &str, until: u64) -> Vec<Arc<SessionShared>> {
        let Some(member) = self.members.get(user) else {
            return Vec::new();
        };
        let sessions: Vec<_> = member.sessions.clone();
        // The notice that expels them says so; no leave notice besides.
        self.forget_member(user, false);
        self.targets = None;
        for (session, from) in &sessions {
            self.departing.push(Target {
                session: session.clone(),
                from: *from,
                until,
            });
        }
        sessions.into_iter().map(|(s, _)| s).collect()
    }

    /// Removes a user who has no connection left in the room from the member list, and (with
    /// `notice`) has the leave reported.
    fn forget_member(&mut self, user: &str, notice: bool) {
        if let Some(m) = self.members.remove(user) {
            self.order.remove(&m.join);
        }
        if !self.joins.remove(user) && notice {
            self.leaves.insert(user.to_string());
        }
        if self.members.is_empty() {
            self.empty_since = Some(Instant::now());
        }
    }

    /// Every user who is a member.
    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// In a cluster: members whose [`member_key`] is past `after`, in key order, at most
    /// `limit`: `(key, user, joined ms)`.
    pub fn members_after_key(&self, after: u64, limit: usize) -> Vec<(u64, String, i64)> {
        let mut page: Vec<(u64, String, i64)> = self
            .members
            .iter()
            .map(|(user, m)| (member_key(m.joined, user), user.clone(), m.joined))
            .filter(|(key, _, _)| *key > after)
            .collect();
        page.sort_unstable();
        page.truncate(limit);
        page
    }

    /// Members after join number `after`, at most `limit`: `(user, joined ms, join number)`.
    pub fn members_page(&self, after: u64, limit: usize) -> Vec<(String, i64, u64)> {
        self.order
            .range(after + 1..)
            .take(limit)
            .filter_map(|(join, user)| {
                self.members
                    .get(user)
                    .map(|m| (user.clone(), m.joined, *join))
            })
            .collect()
    }

    /// Whether join and leave notices wait to be made; makes them due (at once in a small
    /// room, else after the interval since the last ones).
    pub fn schedule_notices(&mut self) -> bool {
        if self.joins.is_empty() && self.leaves.is_empty() {
            return false;
        }
        if self.notice_due.is_none() {
            let now = Instant::now();
            let due = match self.last_notice {
                Some(last) if self.members.len() >= NOTICE_BATCH_MEMBERS => {
                    (last + NOTICE_INTERVAL).max(now)
                }
                _ => now,
            };
            self.notice_due = Some(due);
        }
        true
    }

    /// Makes the join and leave notices that are due.
    fn make_notices(&mut self, room: &Arc<str>, now: Instant, now_ms: i64) {
        if self.notice_due.is_none_or(|due| due > now) {
            return;
        }
        self.notice_due = None;
        self.last_notice = Some(now);
        for (operation, users) in [
            ("join", std::mem::take(&mut self.joins)),
            ("leave", std::mem::take(&mut self.leaves)),
        ] {
            if users.is_empty() {
                continue;
            }
            let named: Vec<&String> = users.iter().take(NOTICE_MAX_USERS).collect();
            let content = serde_json::json!({
                "operation": operation,
                "userIds": named,
                "count": users.len(),
            });
            self.notice(room, "", content, Priority::Low, now_ms);
        }
    }

    /// The connections the fan-out pushes to.
    fn targets(&mut self) -> Arc<[Target]> {
        if let Some(t) = &self.targets {
            return t.clone();
        }
        let mut all: Vec<Target> = self
            .members
            .values()
            .flat_map(|m| {
                m.sessions.iter().map(|(s, from)| Target {
                    session: s.clone(),
                    from: *from,
                    until: u64::MAX,
                })
            })
            .collect();
        all.extend(self.departing.iter().cloned());
        let t: Arc<[Target]> = all.into();
        self.targets = Some(t.clone());
        t
    }
}

/// One round of the fan-out: what to push, to whom, and what was dropped.
struct Round {
    items: Vec<Arc<RoomItem>>,
    /// `(seq, origin)` of the items dropped.
    dropped: Vec<(u64, u64)>,
    /// Seq ranges this node will never get (in a cluster).
    missing: Vec<(u64, u64)>,
    targets: Arc<[Target]>,
    /// In a cluster: items made here for the home to number, and the room's seq as known here.
    forward: Vec<Arc<RoomItem>>,
    known: u64,
}

enum Next {
    Round(Round),
    /// Nothing to do; wake at this time if given.
    Idle(Option<Instant>),
    /// The room is destroyed and its last items are out.
    Finished,
}

impl Room {
    /// Takes what the fan-out must do now.
    fn next(&self, idle: Duration, now_ms: i64) -> Next {
        let now = Instant::now();
        let mut st = self.lock();
        st.make_notices(&self.id, now, now_ms);
        if st.queue.is_empty() && st.forward.is_empty() && st.missing.is_empty() {
            if st.destroyed {
                return Next::Finished;
            }
            let expiry = if st.profile.kept {
                None
            } else {
                st.empty_since.map(|since| since + idle)
            };
            if expiry.is_some_and(|at| at <= now) {
                st.destroyed = true;
                return Next::Finished;
            }
            let wake = match (st.notice_due, expiry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            return Next::Idle(wake);
        }
        let waiting = st.queue.len();
        // The oldest LOW items go until at most BACKLOG_LOW wait; then, if still more than
        // BACKLOG_NORMAL wait, the oldest NORMAL ones.
        let count = |p: Priority| st.queue.iter().filter(|i| i.priority() == p).count();
        let drop_low = waiting
            .saturating_sub(BACKLOG_LOW)
            .min(count(Priority::Low));
        let drop_normal = (waiting - drop_low)
            .saturating_sub(BACKLOG_NORMAL)
            .min(count(Priority::Normal));
        let (mut low, mut normal) = (drop_low, drop_normal);
        let mut items = Vec::with_capacity(waiting);
        let mut dropped = Vec::new();
        for item in st.queue.drain(..) {
            let quota = match item.priority() {
                Priority::Low => &mut low,
                Priority::Normal => &mut normal,
                Priority::High => {
                    items.push(item);
                    continue;
                }
            };
            if *quota > 0 {
                *quota -= 1;
                dropped.push((item.seq(), item.origin()));
            } else {
                items.push(item);
            }
        }
        if !dropped.is_empty() {
            tracing::info!(room = %self.id, waiting, dropped = dropped.len(), "chatroom fan-out fell behind; dropped low-priority items");
        }
        let targets = st.targets();
        let forward = std::mem::take(&mut st.forward);
        let missing = std::mem::take(&mut st.missing);
        // Connections taken out get nothing past their last item: after this round they are
        // done with.
        let last = st.seq;
        let before = st.departing.len();
        st.departing.retain(|t| t.until > last);
        if st.departing.len() != before {
            st.targets = None;
        }
        Next::Round(Round {
            items,
            dropped,
            missing,
            targets,
            forward,
            known: last,
        })
    }
}

/// The room's fan-out task: pushes each round's items to every target, makes the notices when
/// due, and ends the room once it is destroyed (or, if not kept, empty for `idle`).
pub async fn run(room: Arc<Room>, engine: Weak<Inner>, idle: Duration) {
    loop {
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let engine = Engine { inner };
        if engine.cluster().is_some() {
            room.set_home(engine.is_room_home(&room.id));
        }
        let next = room.next(idle, engine.now_ms());
        match next {
            Next::Round(mut round) => {
                if engine.cluster().is_some() {
                    let forward = std::mem::take(&mut round.forward);
                    engine.room_to_bus(&room.id, &round.items, forward, round.known);
                    if let Some(count) = room.lock().count_to_tell() {
                        engine.tell_room_count(&room.id, count);
                    }
                }
                // A round over thousands of members writes to their sockets for tens of
                // milliseconds: the worker's other tasks move to another thread meanwhile,
                // so that no client's frame waits for the round to end before it is read.
                if round.targets.len() >= LARGE_ROUND && multi_threaded() {
                    tokio::task::block_in_place(|| deliver(&engine, &room.id, round));
                } else {
                    deliver(&engine, &room.id, round);
                }
            }
            Next::Finished => {
                engine.forget_room(&room);
                return;
            }
            Next::Idle(wake) => {
                drop(engine);
                match wake {
                    Some(at) => {
                        tokio::select! {
                            _ = room.wake.notified() => {}
                            _ = tokio::time::sleep_until(at) => {}
                        }
                    }
                    None => room.wake.notified().await,
                }
            }
        }
    }
}

/// In a cluster, where each node numbers its own joins, a member's place in the room's member
/// list: when they joined (ms), then a hash of their id, in one number that every node computes
/// alike (the page token). Two users who joined in the same millisecond with the same 20 bits
/// of hash share a key; a page that ends between them leaves the second out.
pub fn member_key(joined: i64, user: &str) -> u64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in user.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    ((joined.max(0) as u64) << 20) | u64::from(h & 0xF_FFFF)
}

/// Targets from which a round is run as blocking work (see `run`).
const LARGE_ROUND: usize = 1024;

/// Whether the task runs on a runtime with several worker threads (where a blocking section
/// can hand the others over).
fn multi_threaded() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Pushes a round's items to each target (those in its window, not its own), and reports the
/// dropped ones in its window as a gap.
fn deliver(engine: &Engine, room: &Arc<str>, round: Round) {
    // The members that get every item of the round share their frames written end to end.
    let wire = RoundWire::default();
    let mut origins: Vec<u64> = round.items.iter().map(|i| i.origin()).collect();
    origins.sort_unstable();
    origins.dedup();
    let span = round
        .items
        .first()
        .map(|i| i.seq())
        .zip(round.items.last().map(|i| i.seq()));
    for t in round.targets.iter() {
        let window = |seq: u64| seq > t.from && seq <= t.until;
        let mut gap: Option<(u64, u64, u64)> = None;
        for &(from, to) in &round.missing {
            let (from, to) = (from.max(t.from + 1), to.min(t.until));
            if from <= to {
                gap = Some(match gap {
                    None => (to - from + 1, from, to),
                    Some((n, f, l)) => (n + to - from + 1, f.min(from), l.max(to)),
                });
            }
        }
        let missed = round
            .dropped
            .iter()
            .filter(|(seq, origin)| window(*seq) && *origin != t.session.id);
        for &(seq, _) in missed {
            gap = Some(match gap {
                None => (1, seq, seq),
                Some((n, from, to)) => (n + 1, from.min(seq), to.max(seq)),
            });
        }
        if let Some((count, from, to)) = gap {
            t.session.outbox.note_gap(room, count, from, to);
        }
        let mine = round
            .items
            .iter()
            .filter(|i| window(i.seq()) && i.origin() != t.session.id);
        let whole = span.is_some_and(|(first, last)| {
            first > t.from && last <= t.until && origins.binary_search(&t.session.id).is_err()
        });
        if t.session
            .outbox
            .push_room(mine, whole.then_some(&wire))
            .is_err()
        {
            t.session.end(engine, Code::SlowConsumer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room_with(items: &[Priority]) -> Room {
        let room = Room::new("r", Profile::default(), 10);
        let id = room.id.clone();
        {
            let mut st = room.lock();
            for (i, p) in items.iter().enumerate() {
                st.post(
                    &id,
                    NewItem {
                        sender: "alice",
                        msg_type: "text",
                        content: format!(r#"{{"text":"{i}"}}"#),
                        push_text: String::new(),
                        client_msg_id: format!("c{i}"),
                        digest: String::new(),
                        priority: *p,
                        origin: 0,
                        token: 0,
                        now: 0,
                    },
                );
            }
        }
        room
    }

    fn round(room: &Room) -> (Vec<u64>, Vec<u64>) {
        match room.next(Duration::from_secs(60), 0) {
            Next::Round(r) => (
                r.items.iter().map(|i| i.seq()).collect(),
                r.dropped.iter().map(|(seq, _)| *seq).collect(),
            ),
            _ => panic!("a round was due"),
        }
    }

    #[test]
    fn a_fan_out_that_keeps_up_drops_nothing() {
        let room = room_with(&[Priority::Low; BACKLOG_LOW]);
        let (items, dropped) = round(&room);
        assert_eq!(items.len(), BACKLOG_LOW);
        assert!(dropped.is_empty());
    }

    #[test]
    fn a_fan_out_that_falls_behind_drops_low_items_first_then_normal_ones_never_high_ones() {
        let cycle = [Priority::Low, Priority::Normal, Priority::High];
        let count = |mix: &[Priority], p: Priority| mix.iter().filter(|q| **q == p).count();
        // 10 past BACKLOG_LOW waiting: the 10 oldest LOW items go (seqs 1, 4, ..., 28).
        let mix: Vec<_> = cycle.into_iter().cycle().take(BACKLOG_LOW + 10).collect();
        let (items, dropped) = round(&room_with(&mix));
        assert_eq!(dropped, (0..10).map(|i| 1 + 3 * i).collect::<Vec<u64>>());
        assert_eq!(items.len(), BACKLOG_LOW);
        // Far past BACKLOG_NORMAL: every LOW item, then the oldest NORMAL ones until BACKLOG_NORMAL
        // wait; HIGH ones stay.
        let mix: Vec<_> = cycle.into_iter().cycle().take(2 * BACKLOG_NORMAL).collect();
        let (items, dropped) = round(&room_with(&mix));
        assert_eq!(items.len(), BACKLOG_NORMAL);
        let high = count(&mix, Priority::High);
        let kept_normal = BACKLOG_NORMAL - high;
        let normal_seqs: Vec<u64> = (1..=mix.len() as u64).filter(|s| s % 3 == 2).collect();
        let first_kept = normal_seqs[normal_seqs.len() - kept_normal];
        assert!(
            dropped
                .iter()
                .all(|s| s % 3 == 1 || (s % 3 == 2 && *s < first_kept)),
            "every LOW item and the oldest NORMAL ones"
        );
        assert!(
            items
                .iter()
                .all(|s| s % 3 == 0 || (s % 3 == 2 && *s >= first_kept))
        );
    }

    fn numbered(seq: u64) -> RoomItem {
        let message = StoredMessage {
            target: "r".into(),
            seq,
            msg_type: "text".into(),
            ..Default::default()
        };
        RoomItem::new(Arc::from("r"), message, Priority::Normal, 0, String::new())
    }

    #[test]
    fn items_from_the_home_keep_one_order_and_what_is_missed_is_named() {
        let room = Room::new("r", Profile::default(), 10);
        {
            let mut st = room.lock();
            st.home = false;
            // A node new to the room starts from the first item it gets: no gap before it.
            assert!(st.accept(numbered(57)));
            assert!(st.accept(numbered(58)));
            // A hole: 59 and 60 never came.
            assert!(st.accept(numbered(61)));
            // Numbered twice across a home change: taken as missed, never shown after 61.
            assert!(!st.accept(numbered(60)));
            // The home is further than this node knew.
            st.learn(65);
            // Not the home: a post here waits for the home's seq.
            let item = st.post(
                &room.id,
                NewItem {
                    sender: "alice",
                    msg_type: "text",
                    content: "{}".into(),
                    push_text: String::new(),
                    client_msg_id: "c".into(),
                    digest: String::new(),
                    priority: Priority::Normal,
                    origin: 0,
                    token: 7,
                    now: 0,
                },
            );
            assert_eq!((item.seq(), st.seq), (0, 65));
        }
        match room.next(Duration::from_secs(60), 0) {
            Next::Round(r) => {
                let seqs: Vec<u64> = r.items.iter().map(|i| i.seq()).collect();
                assert_eq!(seqs, [57, 58, 61]);
                assert_eq!(r.missing, [(59, 60), (60, 60), (62, 65)]);
                assert_eq!(r.forward.len(), 1, "the post goes to the home");
            }
            _ => panic!("a round was due"),
        }
    }

    #[test]
    fn the_history_keeps_the_newest_messages_and_no_notices() {
        let room = room_with(&[Priority::Normal; 12]);
        let id = room.id.clone();
        let mut st = room.lock();
        st.notice(
            &id,
            "",
            serde_json::json!({"operation": "join"}),
            Priority::Low,
            0,
        );
        let kept: Vec<u64> = st.history().map(|i| i.seq()).collect();
        assert_eq!(kept, (3..=12).collect::<Vec<_>>());
        assert_eq!(
            st.recent(2).iter().map(|i| i.seq()).collect::<Vec<_>>(),
            [11, 12]
        );
        assert_eq!(st.seq, 13, "the notice has a seq of its own");
    }
}
