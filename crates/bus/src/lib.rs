//! The bus between the nodes of a cluster, on NATS (core NATS: at most once; durable state is
//! the database's, and what the bus loses is recovered by sync).
//!
//! Subjects, under `tidings.<cluster>`:
//! - `.ctl`: what every node hears (connections, presence, liveness, bans, resyncs).
//! - `.p.<n>`: events for the users of partition `n` (of [`PARTITIONS`], by a hash of the user
//!   id). A node subscribes to a partition once it has a session of one of its users, and the
//!   subscription is confirmed by the server (a request answered after it) before the
//!   session's CONNACK is filled, so nothing committed after that read misses the node. A
//!   delivery for users of several partitions is split, each part carrying its own users'
//!   inbox entries.
//! - `.r.<n>`: the numbered items of the chatrooms of partition `n` (the same hash of the room
//!   id). A node subscribes once one of its connections joins such a room (or the app server
//!   posts to one through it), confirmed before the join is answered.
//! - `.n.<node>`: what is for one node alone (chatroom items forwarded to their home, and a
//!   room's seq as another node knows it).
//!
//! Publishing never waits: events go through a bounded queue to one publishing task; when that
//! queue is full, the event is dropped, counted, and every node is told to catch its sessions up
//! from the store. When the connection to NATS comes back after a loss, the same happens.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::Event;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tidings_engine::cluster::{Bus, BusEvent};
use tokio::sync::mpsc;

/// Partitions of the user space.
pub const PARTITIONS: u32 = 256;
/// Events waiting to be published.
const PUBLISH_QUEUE: usize = 65_536;
/// Events received and waiting for the engine.
const RECEIVE_QUEUE: usize = 65_536;

/// The bus's metrics (docs/operations.md), made once: publishing only adds to an atomic.
pub mod metrics {
    use std::sync::LazyLock;

    use ::metrics::{Counter, counter, describe_counter};

    pub const PUBLISHES: &str = "tidings_bus_publishes_total";
    pub const RECEIVED: &str = "tidings_bus_received_total";
    pub const RESYNCS: &str = "tidings_bus_resyncs_total";

    pub(crate) struct BusMetrics {
        pub sent: Counter,
        pub dropped: Counter,
        pub failed: Counter,
        pub received: Counter,
        pub resyncs: Counter,
    }

    static METRICS: LazyLock<BusMetrics> = LazyLock::new(|| {
        describe_counter!(
            PUBLISHES,
            "Events this node published on the bus, by outcome: sent, dropped (the publishing queue was full), failed (NATS refused)."
        );
        describe_counter!(RECEIVED, "Events received from other nodes on the bus.");
        describe_counter!(
            RESYNCS,
            "Times this node asked every node to catch its sessions up from the store (events lost, NATS back after a loss)."
        );
        BusMetrics {
            sent: counter!(PUBLISHES, "outcome" => "sent"),
            dropped: counter!(PUBLISHES, "outcome" => "dropped"),
            failed: counter!(PUBLISHES, "outcome" => "failed"),
            received: counter!(RECEIVED),
            resyncs: counter!(RESYNCS),
        }
    });

    /// Makes the handles with the recorder installed now. Call it once, after installing it.
    pub fn register() {
        LazyLock::force(&METRICS);
    }

    pub(crate) fn m() -> &'static BusMetrics {
        &METRICS
    }
}

/// An event as it travels: who sent it.
#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    event: BusEvent,
}

/// The NATS bus of one node.
pub struct NatsBus {
    client: async_nats::Client,
    node: String,
    prefix: String,
    queue: mpsc::Sender<(String, Bytes)>,
    received: mpsc::Sender<BusEvent>,
    /// Partitions subscribed to.
    partitions: tokio::sync::Mutex<HashSet<u32>>,
    /// Chatroom partitions subscribed to.
    room_partitions: tokio::sync::Mutex<HashSet<u32>>,
    dropped: AtomicU64,
    /// Set when an event was dropped: a resync is asked for once the queue has room.
    lost: std::sync::atomic::AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// `items` grouped by the partition of the user each is for.
fn by_partition<T>(items: Vec<T>, user: impl Fn(&T) -> &str) -> HashMap<u32, Vec<T>> {
    let mut parts: HashMap<u32, Vec<T>> = HashMap::new();
    for item in items {
        parts.entry(partition(user(&item))).or_default().push(item);
    }
    parts
}

/// The partition of a user.
pub fn partition(user: &str) -> u32 {
    // FNV-1a: stable across processes and versions, unlike the standard library's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in user.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % PARTITIONS
}

/// Why [`NatsBus::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("subscribing on NATS: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("flushing to NATS: {0}")]
    Flush(#[source] async_nats::client::FlushError),
}

impl NatsBus {
    /// Connects node `node` of cluster `cluster` to the NATS server at `url`; returns the bus
    /// and the events it receives for this node (to give to `Engine::join_cluster`).
    pub async fn connect(
        url: &str,
        cluster: &str,
        node: &str,
    ) -> Result<(Arc<NatsBus>, mpsc::Receiver<BusEvent>), BusError> {
        let (received, events) = mpsc::channel(RECEIVE_QUEUE);
        let (conn_tx, mut conn_events) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name(format!("tidings {node}"))
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
        let (queue, mut outgoing) = mpsc::channel::<(String, Bytes)>(PUBLISH_QUEUE);
        let bus = Arc::new(NatsBus {
            client: client.clone(),
            node: node.to_string(),
            prefix: format!("tidings.{cluster}"),
            queue,
            received,
            partitions: tokio::sync::Mutex::new(HashSet::new()),
            room_partitions: tokio::sync::Mutex::new(HashSet::new()),
            dropped: AtomicU64::new(0),
            lost: std::sync::atomic::AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });

        // Control events.
        let ctl = client
            .subscribe(format!("{}.ctl", bus.prefix))
            .await
            .map_err(BusError::Subscribe)?;
        bus.forward(ctl);
        // What is for this node alone.
        let own = client
            .subscribe(format!("{}.n.{node}", bus.prefix))
            .await
            .map_err(BusError::Subscribe)?;
        bus.forward(own);
        client.flush().await.map_err(BusError::Flush)?;

        // The publisher.
        let publisher = client.clone();
        let weak = Arc::downgrade(&bus);
        bus.spawn(async move {
            while let Some((subject, payload)) = outgoing.recv().await {
                if let Err(e) = publisher.publish(subject, payload).await {
                    metrics::m().failed.increment(1);
                    tracing::warn!(error = %e, "publishing on NATS failed");
                    if let Some(bus) = weak.upgrade() {
                        bus.lost.store(true, Ordering::Relaxed);
                    }
                } else {
                    metrics::m().sent.increment(1);
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

    /// Hands what a subscription receives to the engine, except this node's own events.
    fn forward(&self, mut sub: async_nats::Subscriber) {
        let received = self.received.clone();
        let node = self.node.clone();
        self.spawn(async move {
            while let Some(msg) = sub.next().await {
                match serde_json::from_slice::<Envelope>(&msg.payload) {
                    Ok(env) if env.from == node => {}
                    Ok(env) => {
                        metrics::m().received.increment(1);
                        if received.send(env.event).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "an event on the bus did not decode"),
                }
            }
        });
    }

    fn enqueue(&self, subject: String, event: BusEvent) {
        let env = Envelope {
            from: self.node.clone(),
            event,
        };
        let payload = match serde_json::to_vec(&env) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::error!(error = %e, "an event did not encode");
                return;
            }
        };
        if self.queue.try_send((subject, payload)).is_err() {
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

    /// Asks every node, this one included, to catch its sessions up from the store.
    fn resync(&self) {
        metrics::m().resyncs.increment(1);
        let event = BusEvent::Resync {
            node: self.node.clone(),
        };
        let _ = self.received.try_send(event.clone());
        self.enqueue(format!("{}.ctl", self.prefix), event);
    }

    /// Stops the bus's tasks (the NATS connection closes when the last clone of its client
    /// goes).
    pub fn close(&self) {
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

#[async_trait::async_trait]
impl Bus for NatsBus {
    fn publish(&self, event: BusEvent) {
        match event {
            BusEvent::Deliver {
                message,
                inbox,
                except_device,
            } => {
                for (p, inbox) in by_partition(inbox, |(u, _)| u) {
                    self.enqueue(
                        format!("{}.p.{p}", self.prefix),
                        BusEvent::Deliver {
                            message: message.clone(),
                            inbox,
                            except_device: except_device.clone(),
                        },
                    );
                }
            }
            BusEvent::Status {
                message,
                users,
                except_device,
            } => {
                for (p, users) in by_partition(users, |u| u) {
                    self.enqueue(
                        format!("{}.p.{p}", self.prefix),
                        BusEvent::Status {
                            message: message.clone(),
                            users,
                            except_device: except_device.clone(),
                        },
                    );
                }
            }
            BusEvent::RoomForward { ref home, .. } | BusEvent::RoomSeq { ref home, .. } => {
                let subject = format!("{}.n.{home}", self.prefix);
                self.enqueue(subject, event)
            }
            BusEvent::RoomItem { ref post } => {
                let subject = format!("{}.r.{}", self.prefix, partition(&post.message.target));
                self.enqueue(subject, event)
            }
            other => self.enqueue(format!("{}.ctl", self.prefix), other),
        }
    }

    async fn room_interest(&self, room: &str) {
        let p = partition(room);
        let mut partitions = self.room_partitions.lock().await;
        if partitions.contains(&p) {
            return;
        }
        match self
            .client
            .subscribe(format!("{}.r.{p}", self.prefix))
            .await
        {
            Ok(sub) => {
                self.forward(sub);
                self.confirm().await;
                partitions.insert(p);
            }
            Err(e) => {
                // Cut off from NATS: tried again with the next join; meanwhile members here get
                // what this node numbers, and gap markers name the rest.
                tracing::warn!(error = %e, "subscribing on NATS failed");
            }
        }
    }

    async fn interest(&self, user: &str) {
        let p = partition(user);
        let mut partitions = self.partitions.lock().await;
        if partitions.contains(&p) {
            return;
        }
        match self
            .client
            .subscribe(format!("{}.p.{p}", self.prefix))
            .await
        {
            Ok(sub) => {
                self.forward(sub);
                self.confirm().await;
                partitions.insert(p);
            }
            Err(e) => {
                // Cut off from NATS: the subscription is tried again with the next session,
                // and pushes from other nodes reach this user by sync meanwhile.
                tracing::warn!(error = %e, "subscribing on NATS failed");
            }
        }
    }

    fn drop_interest(&self, _user: &str) {
        // Partitions stay subscribed: another of their users is likely to connect, and a
        // subscription made again would have to be confirmed again.
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition("alice"), partition("alice"));
        let used: HashSet<u32> = (0..10_000).map(|i| partition(&i.to_string())).collect();
        assert!(used.len() > 250, "{} partitions used", used.len());
        assert!(used.iter().all(|p| *p < PARTITIONS));
    }
}
