//! Items of a live stream: what a chatroom fans out to its member connections, QoS 0 and never
//! stored. They live here, below the outbox and the bus routing, because both handle them
//! without knowing rooms: the outbox sheds them by [`Priority`] when a connection falls behind,
//! and the cluster waits for the ones another node numbers. The chatrooms make them.
//!
//! Architecture invariant: this module imports no other module of the engine (only the crate
//! root's [`Delivered`]).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tidings_store::StoredMessage;

use crate::Delivered;

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
    pub(crate) digest: String,
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

/// A cache of one fan-out round's items as a transport writes them all at once (for the
/// gateway, their WebSocket frames end to end), one slot per wire encoding: the members that get
/// every item of the round share one buffer, made by the first of them. `None` in a slot means
/// the items cannot be written that way (an item failed to encode).
#[derive(Default)]
pub struct RoundWire {
    slots: [OnceLock<Option<Bytes>>; 2],
}

impl RoundWire {
    /// The slot of the encoding numbered `slot` (as for [`RoomItem::wire`]).
    pub fn slot(&self, slot: usize) -> Option<&OnceLock<Option<Bytes>>> {
        self.slots.get(slot)
    }
}
