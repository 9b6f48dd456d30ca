//! Chatrooms across the nodes of a cluster: each room has a home node, which numbers its items
//! (see `cluster.rs` for how the home is picked). Here: what a room's fan-out task hands the
//! bus, numbering an item another node forwarded, taking in numbered items from the home, and
//! learning the seq a room continues from. The cluster module routes the bus; the rooms are
//! this feature's.

use std::sync::Arc;

use crate::Engine;
use crate::cluster::{BusEvent, RoomPost};
use crate::stream::{Priority, RoomItem};

use super::room::Room;

impl RoomItem {
    /// The item as it crosses the bus.
    pub(crate) fn to_post(&self, node: &str) -> crate::cluster::RoomPost {
        crate::cluster::RoomPost {
            message: (*self.message().message).clone(),
            priority: match self.priority() {
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
}

impl Engine {
    /// On the room's home: an item another node made, to number. Numbered at once when the
    /// room is in memory, so what one node forwards is numbered in the order it was sent;
    /// otherwise once the room is loaded.
    pub(crate) fn room_forwarded(&self, home: &str, known: u64, post: RoomPost) {
        if self.node_id() != Some(home) {
            return;
        }
        match self.rooms_get(&post.message.target) {
            Some(room) => self.number_in(&room, known, post),
            None => {
                let engine = self.clone();
                tokio::spawn(async move { engine.number_forwarded(known, post).await });
            }
        }
    }

    /// An item the room's home numbered: answers the send made here that waits for it, and
    /// queues it for the room's members on this node.
    pub(crate) fn room_item_arrived(&self, post: RoomPost) {
        let Some(me) = self.node_id() else { return };
        let item = RoomItem::from_post(post, me);
        let waiter = (item.source_node.is_empty() && item.token != 0)
            .then(|| self.take_room_waiter(item.token))
            .flatten();
        let room = self.rooms_get(item.room());
        if let Some(tx) = waiter {
            let copy = RoomItem::from_post(item.to_post(me), me);
            let _ = tx.send(copy);
        }
        let Some(room) = room else { return };
        let id = item.room().clone();
        let seq = item.seq();
        let taken = room.lock().accept(item);
        room.wake();
        if !taken {
            // Numbered again by a node that took itself for the home: it continues from what
            // this node knows.
            let known = room.lock().seq;
            tracing::info!(room = %id, seq, "a chatroom item was numbered twice; reported as a gap");
            if let Some(home) = self.chatroom_home(&id) {
                self.bus_publish(BusEvent::RoomSeq {
                    home,
                    room: id.to_string(),
                    seq: known,
                });
            }
        }
    }

    /// On the room's home: another node knows the room up to `seq`, which its numbering
    /// continues from.
    pub(crate) fn room_seq_learned(&self, home: &str, room: &str, seq: u64) {
        if self.node_id() != Some(home) {
            return;
        }
        if let Some(room) = self.rooms_get(room) {
            room.lock().learn(seq);
            room.wake();
        }
    }

    /// What a room's fan-out task hands the bus, in seq order: the items this node numbered
    /// (to every node with members), and the items made here for the home to number (to the
    /// home; numbered here if this node has become the home meanwhile).
    pub(crate) fn room_to_bus(
        &self,
        room: &Arc<str>,
        items: &[Arc<RoomItem>],
        forward: Vec<Arc<RoomItem>>,
        known: u64,
    ) {
        let Some(me) = self.node_id() else { return };
        for item in items.iter().filter(|i| i.numbered_here) {
            self.bus_publish(BusEvent::RoomItem {
                post: item.to_post(me),
            });
        }
        if forward.is_empty() {
            return;
        }
        let Some(home) = self.chatroom_home(room) else {
            return;
        };
        if home == me {
            if let Some(r) = self.rooms_get(room) {
                let mut numbered = Vec::new();
                {
                    let mut st = r.lock();
                    st.home = true;
                    for item in forward {
                        numbered.push(st.number(RoomItem::from_post(item.to_post(me), me), known));
                    }
                }
                r.wake();
                for item in numbered.iter().filter(|i| i.token != 0) {
                    if let Some(tx) = self.take_room_waiter(item.token) {
                        let _ = tx.send(RoomItem::from_post(item.to_post(me), me));
                    }
                }
            }
            return;
        }
        for item in forward {
            self.bus_publish(BusEvent::RoomForward {
                home: home.clone(),
                known,
                post: item.to_post(me),
            });
        }
    }

    /// On the room's home: numbers an item another node made (its fan-out task publishes it).
    async fn number_forwarded(&self, known: u64, post: RoomPost) {
        let Some(room) = self.room_for_bus(&post.message.target).await else {
            return;
        };
        self.number_in(&room, known, post);
    }

    fn number_in(&self, room: &Room, known: u64, post: RoomPost) {
        let Some(me) = self.node_id() else { return };
        {
            let mut st = room.lock();
            if st.destroyed {
                return;
            }
            st.home = true;
            st.number(RoomItem::from_post(post, me), known);
        }
        room.wake();
    }
}
