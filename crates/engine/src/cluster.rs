//! Several nodes as one service: the bus between them (`tidings-bus`: NATS, or in-process for
//! nodes in one process) carries what one node's engine does for users whose devices are
//! connected to another — pushes of committed messages and user events, status messages, a new
//! connection's kick of the same device, bans and revocations, presence — and each node's
//! liveness. Durable state stays in the shared
//! store: a push that is lost on the bus is recovered by sync, never guessed at.
//!
//! Routing: a node registers its interest in a user (awaited, before the store read that fills
//! the CONNACK, as local registration is) while it has sessions of that user, and events for a
//! user reach the nodes that registered an interest in them. A node that was cut off from the
//! bus asks every node, itself included, to catch its sessions up from the store.
//!
//! Chatrooms: each room has a home, the live node that rendezvous hashing of the room id over
//! the live nodes picks. The home numbers the room's items: one made on another node is
//! forwarded to it (`RoomForward`, to the home alone) and comes back numbered with everything
//! else (`RoomItem`, to the nodes that have members of rooms in the room's partition); every
//! node fans the items out to its own members in seq order. A node that becomes home continues
//! from the highest seq it knows of (a forward carries the forwarder's), and a seq numbered
//! twice while nodes disagree about the home is reported to members as missed. This module picks
//! the home and carries the items; what a room does with them (numbering, forwarding, taking
//! in) is the chatrooms' (`chatrooms/home.rs`), which the crate root hands a room's bus events.
//!
//! Architecture invariant: this module imports no feature module (chatrooms, groups,
//! conversations, ...): it sees sessions and stream items, both below it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use tidings_bus::{Bus, BusEvent, RoomEntry, RoomPost, RoomSnapshot, RoomStanding};
use tidings_proto::Code;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::session::SessionShared;
use crate::stream::RoomItem;
use crate::{DevicePolicy, Engine};

/// Pushes one session is caught up with after a bus outage; a session further behind is asked
/// to reconnect, which makes it sync.
const CATCH_UP_MAX: usize = 64;

/// The most events from the bus handled in one go (see `outbox::gathered`).
const BUS_EVENTS_GATHERED: usize = 256;

/// How long a chatroom send made on a node that is not the room's home waits for the home to
/// number it before the sender is told it failed.
pub const ROOM_FORWARD_WAIT: Duration = Duration::from_secs(3);

/// How long a node that takes a chatroom in waits for its home to say what the room holds
/// before it goes on without (see `chatrooms/home.rs`).
pub const ROOM_STATE_WAIT: Duration = Duration::from_secs(1);

/// The rendezvous weight of `node` for `room`: the room's home is the live node with the
/// highest. FNV-1a then a finalizer, stable across processes and versions.
fn weight(node: &str, room: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0u8]).chain(room.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A node's part in a cluster.
pub struct ClusterConfig {
    /// This node's id, unique in the cluster.
    pub node: String,
    /// Where clients reach this node (what a navigation lists).
    pub urls: Vec<String>,
    /// How often this node says it is alive; a node silent for three intervals is gone.
    pub alive_interval: Duration,
}

pub(crate) struct Cluster {
    bus: Arc<dyn Bus>,
    config: ClusterConfig,
    state: Mutex<Remote>,
    /// Chatroom sends forwarded to their room's home, waiting for their item to come back
    /// numbered, by token.
    waiters: Mutex<HashMap<u64, oneshot::Sender<RoomItem>>>,
    /// Questions to chatrooms' homes about what a room holds, waiting for the answer, by token.
    state_waiters: Mutex<HashMap<u64, oneshot::Sender<Option<RoomSnapshot>>>>,
    /// Questions to other nodes about a chatroom's members, waiting for their answers (one per
    /// node), by token.
    member_waiters: Mutex<HashMap<u64, MemberAnswers>>,
    next_token: AtomicU64,
}

/// One node's answer to a question about a room's members: the node, and its members with when
/// they joined (ms).
pub(crate) type MemberAnswer = (String, Vec<(String, i64)>);

/// Where other nodes' answers to a question about a room's members arrive.
type MemberAnswers = mpsc::UnboundedSender<MemberAnswer>;

#[derive(Default)]
struct Remote {
    /// Other nodes: their URLs and when they were last heard of.
    nodes: HashMap<String, (Vec<String>, Instant)>,
    /// Users online on other nodes, and on which.
    online: HashMap<String, HashSet<String>>,
}

impl Cluster {
    fn remote(&self) -> std::sync::MutexGuard<'_, Remote> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<RoomItem>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state_waiters(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Option<RoomSnapshot>>>> {
        self.state_waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn member_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, MemberAnswers>> {
        self.member_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The home of `room`: the live node (this one or another) with the highest weight.
    fn home_of(&self, room: &str) -> String {
        let me = self.config.node.as_str();
        let remote = self.remote();
        let mut best = (weight(me, room), me);
        for node in remote.nodes.keys() {
            let w = (weight(node, room), node.as_str());
            if w > best {
                best = w;
            }
        }
        best.1.to_string()
    }
}

impl Engine {
    /// Joins this engine to a cluster: `events` are what the bus receives for this node.
    /// Call once, before serving.
    pub fn join_cluster(
        &self,
        bus: Arc<dyn Bus>,
        config: ClusterConfig,
        mut events: mpsc::Receiver<BusEvent>,
    ) {
        let cluster = Cluster {
            bus,
            config,
            state: Mutex::default(),
            waiters: Mutex::default(),
            state_waiters: Mutex::new(HashMap::new()),
            member_waiters: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
        };
        if self.inner.cluster.set(cluster).is_err() {
            tracing::error!("join_cluster called twice; the second is ignored");
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            while let Some(first) = events.recv().await {
                // What arrived together is handled together, as the committer handles a
                // batch: a connection's pushes of it go out in one write.
                crate::outbox::gathered(|| {
                    engine.on_bus(first);
                    for _ in 1..BUS_EVENTS_GATHERED {
                        match events.try_recv() {
                            Ok(event) => engine.on_bus(event),
                            Err(_) => break,
                        }
                    }
                });
            }
        });
        let engine = self.clone();
        tokio::spawn(async move { engine.stay_alive().await });
        if let Some(c) = self.cluster() {
            c.bus.publish(BusEvent::Hello {
                node: c.config.node.clone(),
            });
        }
    }

    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.get()
    }

    /// Whether the cluster's bus is connected; `None` outside a cluster.
    pub(crate) fn bus_connected(&self) -> Option<bool> {
        self.cluster().map(|c| c.bus.connected())
    }

    /// This node's id, when it is part of a cluster.
    pub fn node_id(&self) -> Option<&str> {
        self.cluster().map(|c| c.config.node.as_str())
    }

    /// The other live nodes of the cluster and where clients reach them.
    pub fn cluster_nodes(&self) -> Vec<(String, Vec<String>)> {
        let Some(c) = self.cluster() else {
            return Vec::new();
        };
        let mut nodes: Vec<(String, Vec<String>)> = c
            .remote()
            .nodes
            .iter()
            .map(|(n, (urls, _))| (n.clone(), urls.clone()))
            .collect();
        nodes.sort();
        nodes
    }

    /// Whether `node` is another node of this cluster that is alive (see `cluster_nodes`).
    pub(crate) fn node_is_live(&self, node: &str) -> bool {
        self.cluster()
            .is_some_and(|c| c.remote().nodes.contains_key(node))
    }

    /// Whether `user` has sessions on another node.
    pub(crate) fn online_elsewhere(&self, user: &str) -> bool {
        self.cluster()
            .is_some_and(|c| c.remote().online.get(user).is_some_and(|n| !n.is_empty()))
    }

    pub(crate) fn bus_publish(&self, event: BusEvent) {
        if let Some(c) = self.cluster() {
            c.bus.publish(event);
        }
    }

    /// Before a new session's store read: events for its user reach this node from now on, and
    /// the other nodes replace the same device.
    pub(crate) async fn cluster_connected(&self, shared: &SessionShared) {
        let Some(c) = self.cluster() else { return };
        c.bus.interest(&shared.user).await;
        c.bus.publish(BusEvent::Connected {
            node: c.config.node.clone(),
            user: shared.user.clone(),
            device: shared.device.clone(),
            anonymous: shared.anonymous,
        });
    }

    /// The first (`online`) or last session of `user` on this node came or went.
    pub(crate) fn cluster_presence(&self, user: &str, online: bool) {
        let Some(c) = self.cluster() else { return };
        if !online {
            c.bus.drop_interest(user);
        }
        c.bus.publish(BusEvent::Presence {
            node: c.config.node.clone(),
            user: user.to_string(),
            online,
        });
    }

    /// Says this node is alive until the engine stops, and forgets nodes that went silent.
    async fn stay_alive(&self) {
        let Some(c) = self.cluster() else { return };
        let interval = c.config.alive_interval;
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            if !self.registry().accepting {
                c.bus.publish(BusEvent::Leaving {
                    node: c.config.node.clone(),
                });
                return;
            }
            c.bus.publish(BusEvent::Alive {
                node: c.config.node.clone(),
                urls: c.config.urls.clone(),
            });
            let gone: Vec<String> = c
                .remote()
                .nodes
                .iter()
                .filter(|(_, (_, seen))| seen.elapsed() > interval * 3)
                .map(|(n, _)| n.clone())
                .collect();
            for node in gone {
                tracing::info!(%node, "node went silent; its users count as offline here");
                self.node_gone(&node);
            }
        }
    }

    fn node_gone(&self, node: &str) {
        let Some(c) = self.cluster() else { return };
        let offline: Vec<String> = {
            let mut remote = c.remote();
            remote.nodes.remove(node);
            let mut offline = Vec::new();
            remote.online.retain(|user, nodes| {
                nodes.remove(node);
                if nodes.is_empty() {
                    offline.push(user.clone());
                }
                !nodes.is_empty()
            });
            offline
        };
        for user in offline {
            self.remote_presence_changed(&user, false);
        }
    }

    fn seen_node(&self, node: &str, urls: Option<Vec<String>>) {
        let Some(c) = self.cluster() else { return };
        if node == c.config.node {
            return;
        }
        let mut remote = c.remote();
        let entry = remote
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| (Vec::new(), Instant::now()));
        entry.1 = Instant::now();
        if let Some(urls) = urls {
            entry.0 = urls;
        }
    }

    /// A user came online or went offline on another node: local watchers hear of it when the
    /// user's presence as a whole changed.
    fn remote_presence_changed(&self, user: &str, online: bool) {
        let registry = self.registry();
        let local = registry.by_user.contains_key(user);
        if local {
            return;
        }
        let elsewhere = online || self.online_elsewhere(user);
        if online == elsewhere {
            let watchers = crate::watchers_of(&registry, user).to_vec();
            self.presence_changed(user, online, &watchers);
        }
    }

    /// What the bus received for this node, but a chatroom's items: the delivery, presence,
    /// node and account events the cluster handles itself.
    pub(crate) fn on_cluster_event(&self, event: BusEvent) {
        let Some(c) = self.cluster() else { return };
        let me = c.config.node.as_str();
        match event {
            BusEvent::Deliver {
                message,
                inbox,
                except_device,
            } => {
                let message = Arc::new(message);
                for (i, session) in self.sessions_of_each(inbox.iter().map(|(u, _)| u.as_str())) {
                    if except_device.as_deref().is_some_and(|d| {
                        !session.anonymous && session.user == message.sender && session.device == d
                    }) {
                        continue;
                    }
                    let (user, inbox_seq) = &inbox[i];
                    let view = Arc::new(crate::Delivered::for_viewer(
                        user,
                        message.clone(),
                        *inbox_seq,
                    ));
                    session.deliver(self, view);
                }
            }
            BusEvent::Status {
                message,
                users,
                except_device,
            } => {
                let message = Arc::new(message);
                for (i, session) in self.sessions_of_each(users.iter().map(String::as_str)) {
                    if except_device.as_deref().is_some_and(|d| {
                        !session.anonymous && session.user == message.sender && session.device == d
                    }) {
                        continue;
                    }
                    let view =
                        Arc::new(crate::Delivered::for_viewer(&users[i], message.clone(), 0));
                    session.outbox.push_droppable(crate::Outbound::Status(view));
                }
            }
            BusEvent::Connected {
                node,
                user,
                device,
                anonymous,
            } => {
                if node == me {
                    return;
                }
                let single = self.inner.config.device_policy == DevicePolicy::Single;
                let replaced: Vec<Arc<SessionShared>> = self
                    .sessions_of(&user)
                    .into_iter()
                    .filter(|s| single || (!anonymous && !s.anonymous && s.device == device))
                    .collect();
                for s in replaced {
                    s.end(self, Code::Kicked);
                }
            }
            BusEvent::Presence { node, user, online } => {
                if node == me {
                    return;
                }
                self.seen_node(&node, None);
                let changed = {
                    let mut remote = c.remote();
                    let was = remote.online.get(&user).is_some_and(|n| !n.is_empty());
                    let nodes = remote.online.entry(user.clone()).or_default();
                    if online {
                        nodes.insert(node);
                    } else {
                        nodes.remove(&node);
                    }
                    let now = !nodes.is_empty();
                    if !now {
                        remote.online.remove(&user);
                    }
                    was != now
                };
                if changed {
                    self.remote_presence_changed(&user, online);
                }
            }
            BusEvent::Snapshot { node, users } => {
                if node == me {
                    return;
                }
                self.seen_node(&node, None);
                let mut came = Vec::new();
                {
                    let mut remote = c.remote();
                    for user in users {
                        let nodes = remote.online.entry(user.clone()).or_default();
                        if nodes.is_empty() {
                            came.push(user.clone());
                        }
                        nodes.insert(node.clone());
                    }
                }
                for user in came {
                    self.remote_presence_changed(&user, true);
                }
            }
            BusEvent::Hello { node } => {
                if node == me {
                    return;
                }
                self.seen_node(&node, None);
                let users: Vec<String> = self.registry().by_user.keys().cloned().collect();
                c.bus.publish(BusEvent::Snapshot {
                    node: me.to_string(),
                    users,
                });
                c.bus.publish(BusEvent::Alive {
                    node: me.to_string(),
                    urls: c.config.urls.clone(),
                });
            }
            BusEvent::Alive { node, urls } => self.seen_node(&node, Some(urls)),
            BusEvent::Leaving { node } => {
                if node != me {
                    self.node_gone(&node);
                }
            }
            BusEvent::Revoked { user, version } => self.tokens_revoked_here(&user, version),
            BusEvent::Banned { user, banned } => self.banned_here(&user, banned),
            BusEvent::Kick { user, device } => {
                self.kick_here(&user, device.as_deref(), None);
            }
            BusEvent::Resync { .. } => {
                let engine = self.clone();
                tokio::spawn(async move { engine.catch_up_all().await });
            }
            // A chatroom's items: the crate root hands them to the chatrooms (`Engine::on_bus`).
            BusEvent::RoomForward { .. }
            | BusEvent::RoomItem { .. }
            | BusEvent::RoomSeq { .. }
            | BusEvent::RoomRepeat { .. }
            | BusEvent::RoomStateAsk { .. }
            | BusEvent::RoomCount { .. }
            | BusEvent::RoomMembersAsk { .. } => {}
            BusEvent::RoomMembersAre {
                node,
                token,
                from,
                members,
            } => self.room_members_answered(&node, token, from, members),
            BusEvent::RoomStateIs { node, token, state } => {
                self.room_state_arrived(&node, token, state)
            }
        }
    }

    /// Whether this node is the home of chatroom `room` (always, on a single node).
    pub(crate) fn is_room_home(&self, room: &str) -> bool {
        match self.cluster() {
            None => true,
            Some(c) => c.home_of(room) == c.config.node,
        }
    }

    /// The node that numbers chatroom `room`'s items, when this node is part of a cluster.
    pub fn chatroom_home(&self, room: &str) -> Option<String> {
        self.cluster().map(|c| c.home_of(room))
    }

    /// From when this returns, the items of chatroom `room` reach this node.
    pub(crate) async fn room_interest(&self, room: &str) {
        if let Some(c) = self.cluster() {
            c.bus.room_interest(room).await;
        }
    }

    /// A token for a chatroom send that another node may number, and where its numbered item
    /// arrives. `None` on a single node.
    pub(crate) fn room_waiter(&self) -> Option<(u64, oneshot::Receiver<RoomItem>)> {
        let c = self.cluster()?;
        let token = c.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        c.waiters().insert(token, tx);
        Some((token, rx))
    }

    /// Waits (at most [`ROOM_FORWARD_WAIT`]) for the send with `token` to come back numbered.
    pub(crate) async fn room_numbered(
        &self,
        waiter: Option<(u64, oneshot::Receiver<RoomItem>)>,
    ) -> Option<Arc<RoomItem>> {
        let (token, rx) = waiter?;
        let got = tokio::time::timeout(ROOM_FORWARD_WAIT, rx).await;
        if let Some(c) = self.cluster() {
            c.waiters().remove(&token);
        }
        got.ok()?.ok().map(Arc::new)
    }

    /// The send waiting for the item numbered with `token`, if it still waits.
    pub(crate) fn take_room_waiter(&self, token: u64) -> Option<oneshot::Sender<RoomItem>> {
        self.cluster()?.waiters().remove(&token)
    }

    /// What the home of chatroom `room` holds of it (asked over the bus); `None` on a single
    /// node, on the home, if the home does not have the room, or if it did not answer within
    /// [`ROOM_STATE_WAIT`].
    pub(crate) async fn room_state_from_home(&self, room: &str) -> Option<RoomSnapshot> {
        let c = self.cluster()?;
        let home = c.home_of(room);
        if home == c.config.node {
            return None;
        }
        let token = c.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        c.state_waiters().insert(token, tx);
        self.bus_publish(BusEvent::RoomStateAsk {
            home: home.clone(),
            room: room.to_string(),
            node: c.config.node.clone(),
            token,
        });
        let got = tokio::time::timeout(ROOM_STATE_WAIT, rx).await;
        c.state_waiters().remove(&token);
        match got {
            Ok(Ok(state)) => state,
            _ => {
                tracing::warn!(
                    room,
                    home,
                    "the chatroom's home did not say what the room holds in time; going on without"
                );
                None
            }
        }
    }

    /// A token for a question to other nodes about a chatroom's members, and where their
    /// answers arrive. `None` on a single node.
    pub(crate) fn member_waiter(&self) -> Option<(u64, mpsc::UnboundedReceiver<MemberAnswer>)> {
        let c = self.cluster()?;
        let token = c.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        c.member_waiters().insert(token, tx);
        Some((token, rx))
    }

    /// Forgets a question about a chatroom's members (answered, or given up on).
    pub(crate) fn drop_member_waiter(&self, token: u64) {
        if let Some(c) = self.cluster() {
            c.member_waiters().remove(&token);
        }
    }

    /// Node `from`'s answer to this node's question `token` about a chatroom's members.
    fn room_members_answered(
        &self,
        node: &str,
        token: u64,
        from: String,
        members: Vec<(String, i64)>,
    ) {
        let Some(c) = self.cluster() else { return };
        if node != c.config.node {
            return;
        }
        if let Some(tx) = c.member_waiters().get(&token) {
            let _ = tx.send((from, members));
        }
    }

    /// The answer of a chatroom's home to this node's question `token`.
    pub(crate) fn room_state_arrived(&self, node: &str, token: u64, state: Option<RoomSnapshot>) {
        let Some(c) = self.cluster() else { return };
        if node != c.config.node {
            return;
        }
        if let Some(tx) = c.state_waiters().remove(&token) {
            let _ = tx.send(state);
        }
    }

    /// Forgets a waiter that is not needed (the send was numbered here, or refused).
    pub(crate) fn drop_room_waiter(&self, waiter: Option<(u64, oneshot::Receiver<RoomItem>)>) {
        if let (Some(c), Some((token, _))) = (self.cluster(), waiter) {
            c.waiters().remove(&token);
        }
    }

    /// Pushes to every session on this node what its user's inbox holds beyond what the
    /// session knows of; a session too far behind is asked to reconnect (and so to sync).
    pub async fn catch_up_all(&self) {
        crate::metrics::m().cluster_catchups.increment(1);
        for s in self.all_sessions() {
            let known = s.max_known();
            match self
                .inner
                .store
                .inbox_after(&s.user, known, CATCH_UP_MAX + 1)
                .await
            {
                Ok(entries) if entries.len() > CATCH_UP_MAX => s.end(self, Code::ServerShutdown),
                Ok(entries) => {
                    for e in entries {
                        let view = Arc::new(crate::Delivered::for_viewer(
                            &s.user,
                            Arc::new(e.message),
                            e.inbox_seq,
                        ));
                        s.deliver(self, view);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "catch-up read failed; the session reconnects");
                    s.end(self, crate::store_code(&e));
                }
            }
        }
    }
}
