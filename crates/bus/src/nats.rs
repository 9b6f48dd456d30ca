//! The bus on core NATS (at most once; durable state is the database's, and what the bus
//! loses is recovered by sync). Events travel in [`crate::envelope`]'s protobuf envelope.
//!
//! Subjects, under `tidings.<cluster>`, one for each [`Route`]:
//! - `.ctl`: what every node hears (connections, presence, liveness, bans, resyncs).
//! - `.p.<n>`: events for the users of partition `n` (of [`crate::PARTITIONS`], by a hash of
//!   the user id). A node subscribes to a partition once it has a session of one of its users,
//!   and the subscription is confirmed by the server (a request answered after it) before the
//!   session's CONNACK is filled, so nothing committed after that read misses the node. A
//!   delivery for users of several partitions is split, each part carrying its own users'
//!   inbox entries.
//! - `.r.<n>`: the numbered items of the chatrooms of partition `n` (the same hash of the room
//!   id). A node subscribes once one of its connections joins such a room (or the app server
//!   posts to one through it), confirmed before the join is answered.
//! - `.n.<node>`: what is for one node alone (chatroom items forwarded to their home, and a
//!   room's seq as another node knows it).
//!
//! NATS keeps one connection's messages on one subject in order for each subscriber, and a node
//! publishes from one task in the order events were published: so [`crate::Bus`]'s order per
//! publisher and route holds.
//!
//! Publishing never waits: events go through a bounded queue to one publishing task; when that
//! queue is full, the event is dropped, counted, and every node is told to catch its sessions up
//! from the store. When the connection to NATS comes back after a loss, the same happens. An
//! envelope this node cannot read (another version, or garbage) is refused: counted, logged,
//! never applied.
//!
//! The publishing task sends what queued while it was busy in batches, one NATS message each
//! (`envelope::batch`): under load a node publishes about one message per user partition per
//! commit instead of one per event. The batches keep the publishing order NATS keeps for one
//! publisher, except among events for users on different partitions (see [`Batches`]).
//!
//! Losses NATS does not report are found by numbering: the publishing task stamps each batch
//! with a header [`SEQ_HEADER`], `<run>.<n>`, where `run` is drawn when the bus starts and `n`
//! counts the batches this run published on that subject. A receiver that sees `n` jump on a
//! subject (a route between NATS servers went down and came back, a server restarted) catches
//! its own sessions up from the store. A new `run` (the publisher restarted) starts the count
//! afresh. The connection's pings (every `ping` given to [`NatsBus::connect`]; three unanswered
//! end it) find a connection that died without a word, so a node cut off says so within a few
//! pings instead of NATS's default of minutes.
//!
//! Only this module knows NATS.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::Event;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::envelope::{self, EnvelopeError};
use crate::event::BusEvent;
use crate::metrics;
use crate::route::{Route, partition, routes};
use crate::{Bus, BusError};

/// Events waiting to be published.
const PUBLISH_QUEUE: usize = 65_536;
/// Events received and waiting for the engine.
const RECEIVE_QUEUE: usize = 65_536;
/// The header that numbers a publisher's events on each subject.
pub const SEQ_HEADER: &str = "Tidings-Seq";

/// The NATS bus of one node.
pub struct NatsBus {
    client: async_nats::Client,
    node: String,
    prefix: String,
    queue: mpsc::Sender<Outgoing>,
    received: mpsc::Sender<BusEvent>,
    /// Partitions subscribed to.
    partitions: tokio::sync::Mutex<HashSet<u32>>,
    /// Chatroom partitions subscribed to.
    room_partitions: tokio::sync::Mutex<HashSet<u32>>,
    dropped: AtomicU64,
    /// Set when an event was dropped: a resync is asked for once the queue has room.
    lost: std::sync::atomic::AtomicBool,
    /// Envelopes refused (another version, or garbage); each power of two of them is logged.
    refused: Arc<AtomicU64>,
    catchup: Arc<Catchup>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl NatsBus {
    /// Connects node `node` of cluster `cluster` to the NATS server at `url`, pinging it every
    /// `ping`; returns the bus and the events it receives for this node (to give to
    /// `Engine::join_cluster`).
    pub async fn connect(
        url: &str,
        cluster: &str,
        node: &str,
        ping: std::time::Duration,
    ) -> Result<(Arc<NatsBus>, mpsc::Receiver<BusEvent>), BusError> {
        let (received, events) = mpsc::channel(RECEIVE_QUEUE);
        let (conn_tx, mut conn_events) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name(format!("tidings {node}"))
            .ping_interval(ping)
            // Back soon after an outage (the default backoff grows to several seconds).
            .reconnect_delay_callback(|attempts| {
                std::time::Duration::from_millis((attempts as u64 * 100).min(2000))
            })
            .event_callback(move |e| {
                let tx = conn_tx.clone();
                async move {
                    let _ = tx.send(e);
                }
            })
            .connect(url)
            .await
            .map_err(|source| BusError::Connect {
                url: url.to_string(),
                source,
            })?;
        let (queue, mut outgoing) = mpsc::channel::<Outgoing>(PUBLISH_QUEUE);
        let bus = Arc::new(NatsBus {
            client: client.clone(),
            node: node.to_string(),
            prefix: format!("tidings.{cluster}"),
            queue,
            received: received.clone(),
            partitions: tokio::sync::Mutex::new(HashSet::new()),
            room_partitions: tokio::sync::Mutex::new(HashSet::new()),
            dropped: AtomicU64::new(0),
            lost: std::sync::atomic::AtomicBool::new(false),
            refused: Arc::new(AtomicU64::new(0)),
            catchup: Arc::new(Catchup {
                node: node.to_string(),
                received: received.clone(),
                waiting: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            }),
            tasks: Mutex::new(Vec::new()),
        });

        // Control events.
        let ctl = client
            .subscribe(bus.subject(Route::All))
            .await
            .map_err(BusError::Subscribe)?;
        bus.forward(ctl);
        // What is for this node alone.
        let own = client
            .subscribe(bus.subject(Route::Node(node.to_string())))
            .await
            .map_err(BusError::Subscribe)?;
        bus.forward(own);
        client.flush().await.map_err(BusError::Flush)?;

        // The publisher, which batches what is queued by subject and numbers each subject's
        // batches.
        let publisher = client.clone();
        let weak = Arc::downgrade(&bus);
        let from = node.to_string();
        bus.spawn(async move {
            let run = rand::random::<u32>();
            let mut counts: HashMap<String, u64> = HashMap::new();
            while let Some(first) = outgoing.recv().await {
                for (subject, events) in Batches::take(first, &mut outgoing) {
                    let n = match counts.get_mut(&subject) {
                        Some(n) => n,
                        None => counts.entry(subject.clone()).or_default(),
                    };
                    *n += 1;
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(SEQ_HEADER, format!("{run:08x}.{n}").as_str());
                    let payload = envelope::batch(&from, events.iter().map(|e| &e[..]));
                    if let Err(e) = publisher
                        .publish_with_headers(subject, headers, payload.into())
                        .await
                    {
                        metrics::m().failed.increment(events.len() as u64);
                        tracing::warn!(error = %e, "publishing on NATS failed");
                        if let Some(bus) = weak.upgrade() {
                            bus.lost.store(true, Ordering::Relaxed);
                        }
                    } else {
                        metrics::m().sent.increment(events.len() as u64);
                    }
                }
                if let Some(bus) = weak.upgrade()
                    && bus.lost.swap(false, Ordering::Relaxed)
                {
                    bus.resync();
                }
            }
        });

        // Connection events: after a loss, every node catches up.
        let weak = Arc::downgrade(&bus);
        bus.spawn(async move {
            let mut cut_off = false;
            while let Some(e) = conn_events.recv().await {
                match e {
                    Event::Disconnected => {
                        tracing::warn!("lost the connection to NATS; local users are still served");
                        cut_off = true;
                    }
                    Event::Connected if cut_off => {
                        cut_off = false;
                        tracing::info!("connected to NATS again; catching up from the store");
                        if let Some(bus) = weak.upgrade() {
                            bus.resync();
                        }
                    }
                    Event::SlowConsumer(_) => {
                        tracing::warn!("NATS dropped events for this node; catching up");
                        if let Some(bus) = weak.upgrade() {
                            bus.resync();
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok((bus, events))
    }

    /// Events dropped because the publishing queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Hands what a subscription receives to the engine, except this node's own events (told
    /// apart by the envelope's header, before the event is decoded). An event numbered past
    /// the one its publisher's last on this subject was followed by a catch-up of this node's
    /// sessions: what came between was lost.
    fn forward(&self, mut sub: async_nats::Subscriber) {
        let received = self.received.clone();
        let node = self.node.clone();
        let refused = self.refused.clone();
        let catchup = self.catchup.clone();
        self.spawn(async move {
            let mut numbering = Numbering::default();
            while let Some(msg) = sub.next().await {
                let batch = match envelope::sender(&msg.payload) {
                    Ok(from) if from == node => continue,
                    Ok(from) => {
                        let gap = numbering.gap(&from, msg.headers.as_ref());
                        envelope::decode(&msg.payload).map(|(_, events)| (events, gap))
                    }
                    Err(e) => Err(e),
                };
                match batch {
                    Ok((events, gap)) => {
                        for event in events {
                            match event {
                                Ok(event) => {
                                    metrics::m().received.increment(1);
                                    if received.send(event).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => note_refused(&refused, &msg.subject, &e),
                            }
                        }
                        if let Some(missed) = gap {
                            metrics::m().gaps.increment(1);
                            tracing::warn!(
                                subject = %msg.subject,
                                missed,
                                "events from another node were lost on the way; catching up"
                            );
                            catchup.ask();
                        }
                    }
                    Err(e) => note_refused(&refused, &msg.subject, &e),
                }
            }
        });
    }

    /// The subject of a route.
    fn subject(&self, route: Route) -> String {
        match route {
            Route::All => format!("{}.ctl", self.prefix),
            Route::Users(p) => format!("{}.p.{p}", self.prefix),
            Route::Rooms(p) => format!("{}.r.{p}", self.prefix),
            Route::Node(node) => format!("{}.n.{node}", self.prefix),
        }
    }

    fn enqueue(&self, route: Route, event: BusEvent) {
        let payload = Bytes::from(envelope::encode_event(event));
        let users = matches!(route, Route::Users(_));
        let subject = self.subject(route);
        if self
            .queue
            .try_send(Outgoing {
                subject,
                payload,
                users,
            })
            .is_err()
        {
            metrics::m().dropped.increment(1);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    /// Returns once the server has every subscription this node made before the call. A flush
    /// only writes them to the socket; the server answers a request (here, that no one
    /// listens on a subject of this node's own) only after it has read everything before it
    /// on the connection.
    async fn confirm(&self) {
        let subject = format!("{}.confirm.{}", self.prefix, self.node);
        match self.client.request(subject, Bytes::new()).await {
            Ok(_) => {}
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
            Err(e) => tracing::warn!(error = %e, "confirming subscriptions with NATS failed"),
        }
    }

    /// Subscribes to the subject of `route`, partition `p` of those in `subscribed`, unless it
    /// already is, and returns once NATS has the subscription. A failure is logged and leaves
    /// the partition to be tried again by the next caller.
    async fn subscribe_once(
        &self,
        subscribed: &tokio::sync::Mutex<HashSet<u32>>,
        p: u32,
        route: Route,
    ) {
        let mut partitions = subscribed.lock().await;
        if partitions.contains(&p) {
            return;
        }
        match self.client.subscribe(self.subject(route)).await {
            Ok(sub) => {
                self.forward(sub);
                self.confirm().await;
                partitions.insert(p);
            }
            Err(e) => tracing::warn!(error = %e, "subscribing on NATS failed"),
        }
    }

    /// Asks every node, this one included, to catch its sessions up from the store.
    fn resync(&self) {
        metrics::m().resyncs.increment(1);
        self.resync_here();
        self.enqueue(
            Route::All,
            BusEvent::Resync {
                node: self.node.clone(),
            },
        );
    }

    /// Has this node catch its sessions up from the store.
    fn resync_here(&self) {
        self.catchup.ask();
    }
}

/// What asks this node's engine to catch its sessions up from the store.
struct Catchup {
    node: String,
    received: mpsc::Sender<BusEvent>,
    /// A resync waits for room in the engine's queue: one waiting covers every later one.
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

impl Catchup {
    fn ask(&self) {
        let local = BusEvent::Resync {
            node: self.node.clone(),
        };
        match self.received.try_send(local) {
            Ok(()) => {}
            // The engine is behind on what it received: it gets the resync once it has room,
            // after what is queued (which the resync's catch-up covers anyway). One resync
            // waiting is enough: its catch-up happens after every loss before it is taken.
            Err(mpsc::error::TrySendError::Full(local)) => {
                if !self.waiting.swap(true, Ordering::AcqRel) {
                    let (received, waiting) = (self.received.clone(), self.waiting.clone());
                    // Ends once the engine takes the resync or stops.
                    tokio::spawn(async move {
                        // Cleared first: a loss after the engine takes this resync asks again.
                        let sent = received.reserve().await;
                        waiting.store(false, Ordering::Release);
                        match sent {
                            Ok(permit) => permit.send(local),
                            Err(_) => tracing::debug!("the engine stopped before its resync"),
                        }
                    });
                }
            }
            // The engine has stopped: no session is left to catch up.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// An event waiting to be published: its subject and bytes, and whether it is for users (a
/// `Route::Users` partition).
struct Outgoing {
    subject: String,
    payload: Bytes,
    users: bool,
}

/// The events the publisher sends at once: the one it waited for and whatever was queued
/// behind it, up to [`Batches::MAX_EVENTS`] events or [`Batches::MAX_BYTES`], grouped by
/// subject. NATS keeps one publisher's messages in order, and so do the batches, with one
/// freedom: events for users on different partitions concern different users, so each goes
/// into the batch of its partition opened since the last event of another kind. Every other
/// event (to all nodes, to a node, to a room's partition) keeps its place: the batches before
/// it are sent first, and later events go into batches after it. Publishing never waits to
/// gather more: a batch is what queued while the last one went out. An event that would take a
/// batch past [`Batches::MAX_BYTES`] starts a batch of its own instead (after the one it would
/// have joined, so the order holds), so that no batch is larger than its largest event or that
/// bound.
struct Batches;

impl Batches {
    const MAX_EVENTS: usize = 1024;
    /// The most bytes taken at once, and in one batch of several events: well under NATS's
    /// default largest message (1 MiB).
    const MAX_BYTES: usize = 256 * 1024;

    fn take(first: Outgoing, queue: &mut mpsc::Receiver<Outgoing>) -> Vec<(String, Vec<Bytes>)> {
        let mut batches: Vec<(String, Vec<Bytes>)> = Vec::new();
        // The bytes of each batch.
        let mut sizes: Vec<usize> = Vec::new();
        // The users' batches open since the last event of another kind, by subject.
        let mut open: HashMap<String, usize> = HashMap::new();
        // The batch the last event went into, if that event was of another kind.
        let mut last_other: Option<usize> = None;
        let (mut events, mut bytes) = (0, 0);
        let mut next = Some(first);
        while let Some(Outgoing {
            subject,
            payload,
            users,
        }) = next.take()
        {
            events += 1;
            bytes += payload.len();
            let into = if users {
                open.get(&subject).copied()
            } else {
                open.clear();
                // Another event of the same kind right behind on the same subject joins it.
                last_other.filter(|&i| batches[i].0 == subject)
            };
            let into = into.filter(|&i| sizes[i] + payload.len() <= Self::MAX_BYTES);
            let i = match into {
                Some(i) => {
                    sizes[i] += payload.len();
                    batches[i].1.push(payload);
                    i
                }
                None => {
                    if users {
                        open.insert(subject.clone(), batches.len());
                    }
                    sizes.push(payload.len());
                    batches.push((subject, vec![payload]));
                    batches.len() - 1
                }
            };
            last_other = (!users).then_some(i);
            if events < Self::MAX_EVENTS && bytes < Self::MAX_BYTES {
                next = queue.try_recv().ok();
            }
        }
        batches
    }
}

/// The last number seen from each publisher on one subject ([`SEQ_HEADER`]).
#[derive(Default)]
struct Numbering {
    last: HashMap<String, (String, u64)>,
}

impl Numbering {
    /// Takes the number of an event from `from`; returns how many of its events were missed
    /// before it, if any. The first event of a publisher's run (or one without a number, from
    /// a node that does not number) sets where counting starts.
    fn gap(&mut self, from: &str, headers: Option<&async_nats::HeaderMap>) -> Option<u64> {
        let (run, n) = headers
            .and_then(|h| h.get(SEQ_HEADER))
            .and_then(|v| v.as_str().split_once('.'))
            .and_then(|(run, n)| Some((run, n.parse::<u64>().ok()?)))?;
        match self.last.get_mut(from) {
            Some((last_run, last)) if last_run == run => {
                let missed = n.saturating_sub(*last + 1);
                *last = n.max(*last);
                (missed > 0).then_some(missed)
            }
            _ => {
                self.last.insert(from.to_string(), (run.to_string(), n));
                None
            }
        }
    }
}

/// Counts an envelope this node refused, and logs the first and then each power of two of them
/// (a node of another version sends many; one line each would flood the log).
fn note_refused(refused: &AtomicU64, subject: &str, e: &EnvelopeError) {
    match e {
        EnvelopeError::Version { .. } => metrics::m().refused_version.increment(1),
        EnvelopeError::Decode(_) | EnvelopeError::Missing(_) => {
            metrics::m().refused_malformed.increment(1)
        }
    }
    let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(error = %e, subject, refused = n, "refused an event on the bus");
    }
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    fn publish(&self, event: BusEvent) {
        for (route, part) in routes(event) {
            self.enqueue(route, part);
        }
    }

    async fn room_interest(&self, room: &str) {
        // Cut off from NATS, the subscription is tried again with the next join; meanwhile
        // members here get what this node numbers, and gap markers name the rest.
        let p = partition(room);
        self.subscribe_once(&self.room_partitions, p, Route::Rooms(p))
            .await;
    }

    async fn interest(&self, user: &str) {
        // Cut off from NATS, the subscription is tried again with the next session, and pushes
        // from other nodes reach this user by sync meanwhile.
        let p = partition(user);
        self.subscribe_once(&self.partitions, p, Route::Users(p))
            .await;
    }

    fn drop_interest(&self, _user: &str) {
        // Partitions stay subscribed: another of their users is likely to connect, and a
        // subscription made again would have to be confirmed again.
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Stops the bus's tasks (the NATS connection closes when the last clone of its client
    /// goes).
    fn close(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(value: &str) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert(SEQ_HEADER, value);
        h
    }

    #[tokio::test]
    async fn what_is_queued_goes_out_in_batches_in_publishing_order() {
        let (tx, mut rx) = mpsc::channel(Batches::MAX_EVENTS + 8);
        let send = |subject: &str, payload: String| {
            let users = subject.starts_with('p');
            let payload = Bytes::from(payload);
            let subject = subject.to_string();
            tx.try_send(Outgoing {
                subject,
                payload,
                users,
            })
            .unwrap()
        };
        let shown = |batches: Vec<(String, Vec<Bytes>)>| -> Vec<String> {
            batches
                .into_iter()
                .map(|(s, events)| {
                    let events: Vec<String> = events
                        .iter()
                        .map(|e| String::from_utf8(e.to_vec()).unwrap())
                        .collect();
                    format!("{s}:{}", events.join(","))
                })
                .collect()
        };
        // Users' partitions p1, p2 gather their events; a room's or a node's event (r, n)
        // stays between what came before and after it.
        for (subject, payload) in [
            ("p1", "1"),
            ("p2", "2"),
            ("p1", "3"),
            ("r", "4"),
            ("r", "5"),
            ("p1", "6"),
            ("n", "7"),
            ("p2", "8"),
            ("p1", "9"),
            ("p2", "10"),
        ] {
            send(subject, payload.to_string());
        }
        let first = rx.recv().await.unwrap();
        assert_eq!(
            shown(Batches::take(first, &mut rx)),
            ["p1:1,3", "p2:2", "r:4,5", "p1:6", "n:7", "p2:8,10", "p1:9"]
        );
        // At most MAX_EVENTS at once; the rest wait for the next batch.
        for i in 0..Batches::MAX_EVENTS + 3 {
            send("p1", i.to_string());
        }
        let first = rx.recv().await.unwrap();
        let batch = Batches::take(first, &mut rx);
        assert_eq!(batch[0].1.len(), Batches::MAX_EVENTS);
        let first = rx.recv().await.unwrap();
        let expected: Vec<String> = (Batches::MAX_EVENTS..Batches::MAX_EVENTS + 3)
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            shown(Batches::take(first, &mut rx)),
            [format!("p1:{}", expected.join(","))]
        );
        // A batch of several events stays within MAX_BYTES: an event that would take it past
        // starts the next batch of its subject.
        let third = Batches::MAX_BYTES / 3 + 1;
        for _ in 0..3 {
            send("p1", "x".repeat(third));
        }
        let first = rx.recv().await.unwrap();
        let sizes: Vec<(String, Vec<usize>)> = Batches::take(first, &mut rx)
            .into_iter()
            .map(|(s, events)| (s, events.iter().map(Bytes::len).collect()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("p1".to_string(), vec![third, third]),
                ("p1".to_string(), vec![third]),
            ]
        );
    }

    #[test]
    fn a_jump_in_a_publishers_numbering_is_a_gap() {
        let mut n = Numbering::default();
        // The first event of a run sets where counting starts.
        assert_eq!(n.gap("a", Some(&numbered("0000000a.5"))), None);
        assert_eq!(n.gap("a", Some(&numbered("0000000a.6"))), None);
        assert_eq!(n.gap("a", Some(&numbered("0000000a.9"))), Some(2));
        // Each publisher is counted apart.
        assert_eq!(n.gap("b", Some(&numbered("0000000b.1"))), None);
        assert_eq!(n.gap("b", Some(&numbered("0000000b.2"))), None);
        // A restarted publisher (a new run) starts again, lower or higher.
        assert_eq!(n.gap("a", Some(&numbered("0000000c.1"))), None);
        assert_eq!(n.gap("a", Some(&numbered("0000000c.2"))), None);
        // An event without a number (or with one it cannot read) is no evidence either way.
        assert_eq!(n.gap("a", None), None);
        assert_eq!(n.gap("a", Some(&numbered("garbage"))), None);
        assert_eq!(n.gap("a", Some(&numbered("0000000c.4"))), Some(1));
    }
}
