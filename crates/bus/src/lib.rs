//! The bus between the nodes of a cluster: the [`Bus`] trait the engine publishes and
//! registers interest through, the [`BusEvent`]s that cross it, and two implementations —
//! [`MemoryBus`], for nodes that run in one process, and [`NatsBus`], over core NATS. Between
//! processes an event travels in a versioned protobuf envelope ([`envelope`],
//! `proto/bus.proto`).
//!
//! Layout:
//! - `lib.rs`: the trait and its delivery and ordering guarantee.
//! - [`event`]: the events, internal types with no wire form of their own.
//! - [`route`]: where each event goes (every node, a partition of the users or of the
//!   chatrooms, one node); both implementations route by it.
//! - [`envelope`]: the envelope's encoding, a pure codec.
//! - [`memory`]: the in-process bus; [`nats`]: the NATS bus.
//! - [`metrics`]: what both count.
//!
//! This crate depends on the store's records (a delivery carries a stored message) and on no
//! other Tidings crate: the engine depends on it, not the other way round.

pub mod envelope;
pub mod event;
pub mod memory;
pub mod metrics;
pub mod nats;
pub mod route;

pub use envelope::EnvelopeError;
pub use event::{BusEvent, RoomEntry, RoomPost, RoomSnapshot, RoomStanding};
pub use memory::{MemoryBus, MemoryHub};
pub use nats::NatsBus;
pub use route::{PARTITIONS, partition};

/// The bus between the nodes of a cluster, as the engine sees it.
///
/// **Delivery: at most once.** An event can be lost: a full queue, a node cut off from the
/// bus, a receiving node too slow to keep up. An implementation that knows it lost events
/// makes the nodes that may have missed them catch their sessions up from the store (it hands
/// them a [`BusEvent::Resync`], its own node included when it is one of them). Durable state
/// lives in the store, never only on the bus, so what the bus loses is recovered by sync or
/// resync, never guessed at.
///
/// **Order: per publisher and route.** The events one node publishes that take the same route
/// ([`route::Route`]: to every node, to the nodes interested in one partition of the users or
/// of the chatrooms, or to one node) reach each receiving node in the order they were
/// published. Nothing is promised between events of different routes (a user's delivery and a
/// presence change, two users of different partitions) or of different publishers.
///
/// **Routing.** An event routed by users or by a chatroom reaches the nodes that registered an
/// interest in its partition before it was published; a control event reaches every node; an
/// event for one node reaches that node alone. A node never receives its own events.
///
/// Publishing never waits.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends an event to the nodes it is routed to; queues, never waits.
    fn publish(&self, event: BusEvent);
    /// From when this returns, events routed by `user` reach this node.
    async fn interest(&self, user: &str);
    /// This node no longer needs events routed by `user`.
    fn drop_interest(&self, user: &str);
    /// From when this returns, the items of chatroom `room` reach this node.
    async fn room_interest(&self, room: &str);
    /// Whether the bus is connected now (for readiness checks); what is published while it is
    /// not is caught up by sync once it is back.
    fn connected(&self) -> bool {
        true
    }
    /// Ends this node's part in the bus: from now on it sends and receives nothing. Called
    /// once its engine has stopped.
    fn close(&self);
}

/// Why a node could not join the bus.
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
    #[error("a node named {0:?} is already on this in-process bus")]
    NodeTaken(String),
}
