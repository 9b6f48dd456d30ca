//! Where an event goes, the same for every implementation of the bus: to every node, to the
//! nodes interested in a partition of the users or of the chatrooms, or to one node. A
//! delivery for users of several partitions is split, each part carrying its own users' inbox
//! entries. Must not depend on any transport.

use std::collections::HashMap;

use crate::event::BusEvent;

/// Partitions of the user space (and, by the same hash, of the chatrooms).
pub const PARTITIONS: u32 = 256;

/// The partition of a user or a chatroom.
pub fn partition(id: &str) -> u32 {
    // FNV-1a: stable across processes and versions, unlike the standard library's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % PARTITIONS
}

/// Who an event (or a part of one) is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Every node: connections, presence, liveness, bans, resyncs.
    All,
    /// The nodes interested in a user of this partition.
    Users(u32),
    /// The nodes interested in a chatroom of this partition.
    Rooms(u32),
    /// One node alone.
    Node(String),
}

/// `event` in the parts it travels in, each with where it goes.
pub fn routes(event: BusEvent) -> Vec<(Route, BusEvent)> {
    match event {
        BusEvent::Deliver {
            message,
            inbox,
            except_device,
        } => by_partition(inbox, |(u, _)| u)
            .into_iter()
            .map(|(p, inbox)| {
                let part = BusEvent::Deliver {
                    message: message.clone(),
                    inbox,
                    except_device: except_device.clone(),
                };
                (Route::Users(p), part)
            })
            .collect(),
        BusEvent::Status {
            message,
            users,
            except_device,
        } => by_partition(users, |u| u)
            .into_iter()
            .map(|(p, users)| {
                let part = BusEvent::Status {
                    message: message.clone(),
                    users,
                    except_device: except_device.clone(),
                };
                (Route::Users(p), part)
            })
            .collect(),
        BusEvent::RoomForward { ref home, .. } | BusEvent::RoomSeq { ref home, .. } => {
            vec![(Route::Node(home.clone()), event)]
        }
        BusEvent::RoomStateAsk { ref home, .. } => vec![(Route::Node(home.clone()), event)],
        BusEvent::RoomRepeat { ref node, .. } | BusEvent::RoomStateIs { ref node, .. } => {
            vec![(Route::Node(node.clone()), event)]
        }
        BusEvent::RoomItem { ref post } => {
            vec![(Route::Rooms(partition(&post.message.target)), event)]
        }
        BusEvent::RoomMembersAsk { ref room, .. } => {
            vec![(Route::Rooms(partition(room)), event)]
        }
        BusEvent::RoomMembersAre { ref node, .. } => vec![(Route::Node(node.clone()), event)],
        BusEvent::RoomCount {
            ref home, ref room, ..
        } => vec![
            (Route::Rooms(partition(room)), event.clone()),
            (Route::Node(home.clone()), event),
        ],
        other => vec![(Route::All, other)],
    }
}

/// `items` grouped by the partition of the user each is for.
fn by_partition<T>(items: Vec<T>, user: impl Fn(&T) -> &str) -> HashMap<u32, Vec<T>> {
    let mut parts: HashMap<u32, Vec<T>> = HashMap::new();
    for item in items {
        parts.entry(partition(user(&item))).or_default().push(item);
    }
    parts
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use tidings_store::StoredMessage;

    use super::*;
    use crate::event::RoomPost;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition("alice"), partition("alice"));
        let used: HashSet<u32> = (0..10_000).map(|i| partition(&i.to_string())).collect();
        assert!(used.len() > 250, "{} partitions used", used.len());
        assert!(used.iter().all(|p| *p < PARTITIONS));
    }

    #[test]
    fn a_delivery_is_split_by_the_partitions_of_its_users() {
        // Two users of different partitions, and a third sharing the first one's.
        let first = "u0".to_string();
        let other = (1..)
            .map(|i| format!("u{i}"))
            .find(|u| partition(u) != partition(&first))
            .unwrap();
        let same = (1..)
            .map(|i| format!("v{i}"))
            .find(|u| partition(u) == partition(&first))
            .unwrap();
        let parts = routes(BusEvent::Deliver {
            message: StoredMessage::default(),
            inbox: vec![(first.clone(), 1), (other.clone(), 2), (same.clone(), 3)],
            except_device: Some("phone".into()),
        });
        assert_eq!(parts.len(), 2);
        for (route, part) in parts {
            let BusEvent::Deliver {
                inbox,
                except_device,
                ..
            } = part
            else {
                panic!("a delivery's part is a delivery");
            };
            assert_eq!(except_device.as_deref(), Some("phone"));
            let expected = if route == Route::Users(partition(&first)) {
                vec![(first.clone(), 1), (same.clone(), 3)]
            } else {
                assert_eq!(route, Route::Users(partition(&other)));
                vec![(other.clone(), 2)]
            };
            assert_eq!(inbox, expected);
        }
    }

    #[test]
    fn control_events_go_to_every_node_and_forwards_to_the_home() {
        let all = routes(BusEvent::Hello { node: "a".into() });
        assert_eq!(all[0].0, Route::All);
        let home = routes(BusEvent::RoomSeq {
            home: "c".into(),
            room: "plaza".into(),
            seq: 4,
        });
        assert_eq!(home[0].0, Route::Node("c".into()));
        let post = RoomPost {
            message: StoredMessage::default(),
            priority: 0,
            digest: String::new(),
            node: "b".into(),
            session: 1,
            token: 2,
        };
        let back = routes(BusEvent::RoomRepeat {
            node: "b".into(),
            post,
        });
        assert_eq!(back[0].0, Route::Node("b".into()));
        let ask = routes(BusEvent::RoomStateAsk {
            home: "c".into(),
            room: "plaza".into(),
            node: "b".into(),
            token: 3,
        });
        assert_eq!(ask[0].0, Route::Node("c".into()));
        let answer = routes(BusEvent::RoomStateIs {
            node: "b".into(),
            token: 3,
            state: None,
        });
        assert_eq!(answer[0].0, Route::Node("b".into()));
        let count = routes(BusEvent::RoomCount {
            home: "c".into(),
            room: "plaza".into(),
            node: "b".into(),
            count: 2,
        });
        let to: Vec<&Route> = count.iter().map(|(r, _)| r).collect();
        assert_eq!(
            to,
            [&Route::Rooms(partition("plaza")), &Route::Node("c".into())]
        );
    }
}
