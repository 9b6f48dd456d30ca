//! The in-process bus: the nodes of a cluster that run in one process share a [`MemoryHub`],
//! and each joins it for a [`MemoryBus`] of its own and the receiver of its events. Events
//! are handed over as values, never encoded. Routing is [`crate::route`]'s, as on NATS:
//! interest is registered by partition and stays, control events go to every other node,
//! events for one node to that node alone, and no node receives its own.
//!
//! Publishing never waits: an event goes straight into each receiving node's bounded queue.
//! When a node's queue is full, the event is dropped for that node, counted, and that node
//! catches its sessions up from the store once its queue has room again. Every node receives
//! the events of all publishers in one order, the order they were published (more than
//! [`crate::Bus`] promises).
//!
//! Must not depend on any transport or encoding.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};

use crate::event::BusEvent;
use crate::route::{Route, partition, routes};
use crate::{Bus, BusError};

/// Events received and waiting for a node's engine (as many as the NATS bus holds).
const RECEIVE_QUEUE: usize = 65_536;

/// The meeting point of the nodes of one in-process cluster. Clones share it.
#[derive(Clone, Default)]
pub struct MemoryHub {
    nodes: Arc<Mutex<HashMap<String, Member>>>,
    /// Tells apart successive members of one name (a node that left and came back).
    next_member: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut nodes: Vec<String> = self.lock().keys().cloned().collect();
        nodes.sort();
        f.debug_struct("MemoryHub").field("nodes", &nodes).finish()
    }
}

/// A node on the hub.
struct Member {
    id: u64,
    queue: mpsc::Sender<BusEvent>,
    /// Partitions of the users and of the chatrooms the node is interested in.
    users: HashSet<u32>,
    rooms: HashSet<u32>,
    /// Wakes the node's resync task when an event for it was dropped.
    lost: Arc<Notify>,
}

impl Member {
    fn hears(&self, name: &str, route: &Route) -> bool {
        match route {
            Route::All => true,
            Route::Users(p) => self.users.contains(p),
            Route::Rooms(p) => self.rooms.contains(p),
            Route::Node(node) => node == name,
        }
    }

    fn give(&self, event: BusEvent) {
        match self.queue.try_send(event) {
            Ok(()) => crate::metrics::m().received.increment(1),
            Err(mpsc::error::TrySendError::Full(_)) => {
                crate::metrics::m().dropped.increment(1);
                self.lost.notify_one();
            }
            // The node's engine has stopped and the node is about to leave the hub: there is
            // no one left to give the event to.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl MemoryHub {
    pub fn new() -> MemoryHub {
        MemoryHub::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Member>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins node `node` to this hub; returns its bus and the events it receives (to give to
    /// `Engine::join_cluster`). Must be called within a Tokio runtime.
    pub fn join(&self, node: &str) -> Result<(Arc<MemoryBus>, mpsc::Receiver<BusEvent>), BusError> {
        let (queue, events) = mpsc::channel(RECEIVE_QUEUE);
        let lost = Arc::new(Notify::new());
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        {
            let mut nodes = self.lock();
            if nodes.contains_key(node) {
                return Err(BusError::NodeTaken(node.to_string()));
            }
            nodes.insert(
                node.to_string(),
                Member {
                    id,
                    queue: queue.clone(),
                    users: HashSet::new(),
                    rooms: HashSet::new(),
                    lost: lost.clone(),
                },
            );
        }
        // Events were dropped for this node: once its queue has room, it catches up. One
        // wake-up stands for any number of drops before it.
        let me = node.to_string();
        let resync = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = lost.notified() => {}
                    () = queue.closed() => return,
                }
                crate::metrics::m().resyncs.increment(1);
                let event = BusEvent::Resync { node: me.clone() };
                if queue.send(event).await.is_err() {
                    return;
                }
            }
        });
        let bus = Arc::new(MemoryBus {
            hub: self.clone(),
            node: node.to_string(),
            id,
            resync,
        });
        Ok((bus, events))
    }
}

/// One node's handle on a [`MemoryHub`].
pub struct MemoryBus {
    hub: MemoryHub,
    node: String,
    /// This node's member id on the hub: only it is removed when this node leaves.
    id: u64,
    resync: tokio::task::JoinHandle<()>,
}

impl MemoryBus {
    /// Runs `f` on this node's member, while it is on the hub.
    fn with_member(&self, f: impl FnOnce(&mut Member)) {
        if let Some(m) = self.hub.lock().get_mut(&self.node)
            && m.id == self.id
        {
            f(m);
        }
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    fn publish(&self, event: BusEvent) {
        let nodes = self.hub.lock();
        if nodes.get(&self.node).is_none_or(|m| m.id != self.id) {
            // This node has left: what it publishes goes nowhere, as on a closed connection.
            return;
        }
        for (route, part) in routes(event) {
            crate::metrics::m().sent.increment(1);
            let mut to: Vec<&Member> = nodes
                .iter()
                .filter(|(name, m)| **name != self.node && m.hears(name, &route))
                .map(|(_, m)| m)
                .collect();
            // Each receiver but the last gets a copy; the last gets the event itself.
            if let Some(last) = to.pop() {
                for m in to {
                    m.give(part.clone());
                }
                last.give(part);
            }
        }
    }

    async fn interest(&self, user: &str) {
        let p = partition(user);
        self.with_member(|m| {
            m.users.insert(p);
        });
    }

    fn drop_interest(&self, _user: &str) {
        // Partitions stay, as on NATS: another of their users is likely to come, and a node
        // that dropped one while a new session of the same user registered would miss its
        // events.
    }

    async fn room_interest(&self, room: &str) {
        let p = partition(room);
        self.with_member(|m| {
            m.rooms.insert(p);
        });
    }

    fn close(&self) {
        self.resync.abort();
        let mut nodes = self.hub.lock();
        if nodes.get(&self.node).is_some_and(|m| m.id == self.id) {
            nodes.remove(&self.node);
        }
    }
}

impl Drop for MemoryBus {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use tidings_store::StoredMessage;

    use super::*;

    fn deliver(users: &[&str], seq: u64) -> BusEvent {
        BusEvent::Deliver {
            message: StoredMessage {
                seq,
                ..StoredMessage::default()
            },
            inbox: users.iter().map(|u| (u.to_string(), seq)).collect(),
            except_device: None,
        }
    }

    /// What `events` holds now, without waiting.
    fn drain(events: &mut mpsc::Receiver<BusEvent>) -> Vec<BusEvent> {
        let mut got = Vec::new();
        while let Ok(e) = events.try_recv() {
            got.push(e);
        }
        got
    }

    #[tokio::test]
    async fn events_for_a_user_reach_the_nodes_interested_in_them_only() {
        let hub = MemoryHub::new();
        let (a, mut a_events) = hub.join("a").unwrap();
        let (b, mut b_events) = hub.join("b").unwrap();
        let (_c, mut c_events) = hub.join("c").unwrap();
        b.interest("bob").await;
        a.interest("bob").await;
        a.publish(deliver(&["bob"], 1));
        assert_eq!(drain(&mut b_events), [deliver(&["bob"], 1)]);
        assert!(drain(&mut a_events).is_empty(), "a node hears itself");
        assert!(drain(&mut c_events).is_empty(), "c has no interest in bob");
    }

    #[tokio::test]
    async fn control_events_reach_every_other_node_and_one_nodes_events_that_node() {
        let hub = MemoryHub::new();
        let (a, mut a_events) = hub.join("a").unwrap();
        let (_b, mut b_events) = hub.join("b").unwrap();
        let (_c, mut c_events) = hub.join("c").unwrap();
        a.publish(BusEvent::Hello { node: "a".into() });
        let seq = BusEvent::RoomSeq {
            home: "c".into(),
            room: "plaza".into(),
            seq: 3,
        };
        a.publish(seq.clone());
        assert_eq!(drain(&mut b_events), [BusEvent::Hello { node: "a".into() }]);
        assert_eq!(
            drain(&mut c_events),
            [BusEvent::Hello { node: "a".into() }, seq]
        );
        assert!(drain(&mut a_events).is_empty());
    }

    #[tokio::test]
    async fn chatroom_items_reach_the_nodes_with_the_rooms_partition() {
        let hub = MemoryHub::new();
        let (a, _a_events) = hub.join("a").unwrap();
        let (b, mut b_events) = hub.join("b").unwrap();
        let (_c, mut c_events) = hub.join("c").unwrap();
        b.room_interest("plaza").await;
        let item = BusEvent::RoomItem {
            post: crate::RoomPost {
                message: StoredMessage {
                    target: "plaza".into(),
                    seq: 1,
                    ..StoredMessage::default()
                },
                priority: 0,
                digest: String::new(),
                node: "a".into(),
                session: 1,
                token: 0,
            },
        };
        a.publish(item.clone());
        assert_eq!(drain(&mut b_events), [item]);
        assert!(drain(&mut c_events).is_empty());
    }

    #[tokio::test]
    async fn one_publishers_events_arrive_in_order() {
        let hub = MemoryHub::new();
        let (a, _a_events) = hub.join("a").unwrap();
        let (b, mut b_events) = hub.join("b").unwrap();
        b.interest("bob").await;
        for seq in 1..=100 {
            a.publish(deliver(&["bob"], seq));
        }
        let seqs: Vec<u64> = drain(&mut b_events)
            .into_iter()
            .map(|e| match e {
                BusEvent::Deliver { message, .. } => message.seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn a_node_whose_queue_overflowed_is_told_to_resync() {
        let hub = MemoryHub::new();
        let (a, _a_events) = hub.join("a").unwrap();
        let (b, mut b_events) = hub.join("b").unwrap();
        b.interest("bob").await;
        // One more than b's queue holds: the last is dropped for b.
        for seq in 0..=RECEIVE_QUEUE as u64 {
            a.publish(deliver(&["bob"], seq));
        }
        let mut resynced = false;
        let mut delivered = 0;
        while !resynced {
            match b_events.recv().await.expect("b's queue is open") {
                BusEvent::Deliver { .. } => delivered += 1,
                BusEvent::Resync { node } => {
                    assert_eq!(node, "b");
                    resynced = true;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delivered, RECEIVE_QUEUE);
    }

    #[tokio::test]
    async fn a_node_that_left_neither_sends_nor_receives_and_its_name_is_free_again() {
        let hub = MemoryHub::new();
        let (a, mut a_events) = hub.join("a").unwrap();
        let (b, mut b_events) = hub.join("b").unwrap();
        assert!(matches!(hub.join("b"), Err(BusError::NodeTaken(_))));
        b.close();
        a.publish(BusEvent::Hello { node: "a".into() });
        b.publish(BusEvent::Hello { node: "b".into() });
        assert!(drain(&mut b_events).is_empty());
        assert!(drain(&mut a_events).is_empty());
        let (_b_again, mut again) = hub.join("b").unwrap();
        // The first handle's leaving again does not remove the new member.
        drop(b);
        a.publish(BusEvent::Hello { node: "a".into() });
        assert_eq!(drain(&mut again), [BusEvent::Hello { node: "a".into() }]);
    }
}
