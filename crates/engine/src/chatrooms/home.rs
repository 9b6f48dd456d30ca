//! Chatrooms across the nodes of a cluster: each room has a home node, which numbers its items
//! (see `cluster.rs` for how the home is picked). Here: what a room's fan-out task hands the
//! bus, numbering an item another node forwarded, taking in numbered items from the home, and
//! learning the seq a room continues from, applying what notices made on another node change
//! (kicks, bans, mutes, destroying the room, entries), answering a forwarded resend with the
//! item numbered first, telling a node that takes a room in what the room holds, and the
//! member counts and member pages that span the nodes. The cluster module routes the bus; the
//! rooms are this feature's.

use std::sync::Arc;

use tidings_proto::{CHATROOM_EVENT_TYPE, Code};
use tidings_store::StoredMessage;

use crate::Engine;
use crate::cluster::{BusEvent, RoomEntry, RoomPost, RoomSnapshot, RoomStanding};
use crate::stream::{Priority, RoomItem};
use crate::validate::Refusal;

use super::room::{Entry, Room, RoomState, Standing};
use super::{end_room, take_out};

/// What a notice changes in a room: the app server's kicks, bans, mutes and destroying it
/// (sender empty), and anyone's entries. The node that handled the call changed its own room
/// at once; every other node with the room changes it when the notice reaches it (the home when
/// it numbers it, the others when the home publishes it), so the change holds on every node
/// within a round trip. An entry's notice is applied again by the node that made it when it
/// comes back numbered, so that concurrent changes of one key on two nodes end the same
/// everywhere: in the order the home numbered them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Effect {
    /// The users' connections are taken out; with `banned_until` (ms, not 0) they are banned.
    Kick {
        users: Vec<String>,
        banned_until: i64,
    },
    /// The users' bans are lifted.
    Unban {
        users: Vec<String>,
    },
    /// The users (`None`: the whole room) are muted until `until` (ms; 0 unmutes).
    Mute {
        users: Option<Vec<String>>,
        until: i64,
    },
    Destroy,
    /// `key` set (by `user`, at `updated` ms).
    Entry {
        key: String,
        entry: Entry,
    },
    /// `key` removed.
    EntryRemove {
        key: String,
    },
}

impl Effect {
    /// The effect of `item`, if it is a notice that has one. Users cannot send `tidings:`
    /// types, so every notice is the server's; those of the app server's calls have no sender
    /// (a user's entry names the user).
    pub(super) fn of(item: &RoomItem) -> Option<Effect> {
        let m = &item.message().message;
        if m.msg_type != CHATROOM_EVENT_TYPE {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&m.content).ok()?;
        let operation = v.get("operation")?.as_str()?;
        match operation {
            "entry" => {
                return Some(Effect::Entry {
                    key: v.get("key")?.as_str()?.to_string(),
                    entry: Entry {
                        value: v.get("value")?.as_str()?.to_string(),
                        user: v.get("userId")?.as_str()?.to_string(),
                        updated: m.sent_time,
                        auto_delete: v.get("autoDelete")?.as_bool()?,
                    },
                });
            }
            "entry-remove" => {
                return Some(Effect::EntryRemove {
                    key: v.get("key")?.as_str()?.to_string(),
                });
            }
            _ if !m.sender.is_empty() => return None,
            _ => {}
        }
        let users = || -> Option<Vec<String>> {
            v.get("userIds")?
                .as_array()?
                .iter()
                .map(|u| u.as_str().map(str::to_string))
                .collect()
        };
        match operation {
            "kick" => Some(Effect::Kick {
                users: users()?,
                banned_until: v.get("bannedUntil")?.as_i64()?,
            }),
            "unban" => Some(Effect::Unban { users: users()? }),
            "mute" | "unmute" => Some(Effect::Mute {
                users: if v.get("all").and_then(|a| a.as_bool()) == Some(true) {
                    None
                } else {
                    Some(users()?)
                },
                until: v.get("until")?.as_i64()?,
            }),
            "destroy" => Some(Effect::Destroy),
            _ => None,
        }
    }

    /// Changes the room as the notice at `seq` says (an expelled connection gets the items up
    /// to the notice). Returns whether the room is destroyed (the caller forgets it).
    fn apply(self, room: &Room, st: &mut RoomState, seq: u64) -> bool {
        match self {
            Effect::Kick {
                users,
                banned_until,
            } => {
                for u in &users {
                    if banned_until != 0 {
                        st.standings.entry(u.clone()).or_default().banned_until = banned_until;
                    }
                    // Their entries that go with them are removed by the node that handled
                    // the call, whose notices of it reach this one.
                    take_out(room, st, u, seq);
                }
            }
            Effect::Unban { users } => {
                for u in users {
                    st.standings.entry(u).or_default().banned_until = 0;
                }
            }
            Effect::Mute { users, until } => match users {
                Some(users) => {
                    for u in users {
                        st.standings.entry(u).or_default().muted_until = until;
                    }
                }
                None => st.profile.muted_until = until,
            },
            Effect::Destroy => end_room(room, st, seq),
            Effect::Entry { key, entry } => {
                st.entries.insert(key, entry);
            }
            Effect::EntryRemove { key } => {
                st.entries.remove(&key);
            }
        }
        st.destroyed
    }

    /// Whether the node that made the notice applies it again when it comes back numbered.
    fn again_by_its_maker(&self) -> bool {
        matches!(self, Effect::Entry { .. } | Effect::EntryRemove { .. })
    }
}

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
            // Forwarded by a node that knew the room (`known` > 0) before the destroy reached
            // it: numbering it would make the room again, with none of its members. The send
            // is answered 23410 on its node. A room made again by joins starts from 0.
            None if known > 0 && self.destroyed_lately(&post.message.target) => {
                tracing::debug!(
                    room = %post.message.target,
                    node = %post.node,
                    "an item forwarded to a chatroom destroyed meanwhile was dropped"
                );
            }
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
        // A notice made here changed the room already (an entry's is applied again, in the
        // home's order).
        let effect =
            Effect::of(&item).filter(|e| !item.source_node.is_empty() || e.again_by_its_maker());
        let (taken, destroyed) = {
            let mut st = room.lock();
            let taken = st.accept(item);
            // Applied even to an item numbered twice: the call that made it was answered.
            let destroyed = effect.is_some_and(|e| e.apply(&room, &mut st, seq));
            (taken, destroyed)
        };
        if destroyed {
            self.forget_destroyed_room(&room);
        }
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

    /// A resend this node forwarded, which the home had numbered already: the first item,
    /// for the send that waits.
    pub(crate) fn room_repeat_arrived(&self, node: &str, post: RoomPost) {
        let Some(me) = self.node_id() else { return };
        if node != me {
            return;
        }
        if let Some(tx) = self.take_room_waiter(post.token) {
            let _ = tx.send(RoomItem::from_post(post, me));
        }
    }

    /// Waits for a send made on a node that is not the room's home (`posted`, which `waiter`
    /// waits for) to come back from the home: its own item numbered (`false`), or, for a resend
    /// the home had numbered already, the item numbered first (`true`). 40010 if that first item
    /// was another message with the same client message id; 23410 if the room was destroyed
    /// meanwhile; 31011 if the home did not answer in time.
    pub(super) async fn numbered_at_home(
        &self,
        waiter: Option<(u64, tokio::sync::oneshot::Receiver<RoomItem>)>,
        posted: &RoomItem,
    ) -> Result<(Arc<RoomItem>, bool), Refusal> {
        let Some(numbered) = self.room_numbered(waiter).await else {
            // The home drops what reaches it after the room was destroyed; the destroy has
            // reached this node meanwhile.
            let gone = self
                .rooms_get(posted.room())
                .is_none_or(|r| r.lock().destroyed);
            return Err(if gone {
                Code::ChatroomNotFound.into()
            } else {
                Refusal::new(
                    Code::ServerError,
                    "the chatroom's home node did not number the message in time",
                )
            });
        };
        let repeat = numbered.message().uid() != posted.message().uid();
        if repeat && numbered.digest != posted.digest {
            return Err(Code::ClientMsgIdConflict.into());
        }
        Ok((numbered, repeat))
    }

    /// Tells the other nodes with the room, and its home, this node's member count of it
    /// (after the round's items and forwards, which the home may need to have the room).
    pub(crate) fn tell_room_count(&self, room: &Arc<str>, count: u64) {
        let (Some(me), Some(home)) = (self.node_id(), self.chatroom_home(room)) else {
            return;
        };
        self.bus_publish(BusEvent::RoomCount {
            home,
            room: room.to_string(),
            node: me.to_string(),
            count,
        });
    }

    /// The members of `room` on the other live nodes that have members of it, whose member key
    /// is past `after`, at most `limit` from each: asked over the bus, waiting at most
    /// [`crate::cluster::ROOM_STATE_WAIT`] for the answers (a node that does not answer in time
    /// is left out, and logged).
    pub(crate) async fn room_members_elsewhere(
        &self,
        room: &Room,
        after: u64,
        limit: usize,
    ) -> Vec<(String, i64)> {
        let Some(me) = self.node_id() else {
            return Vec::new();
        };
        let mut expected: std::collections::HashSet<String> = room
            .lock()
            .remote_counts
            .keys()
            .filter(|n| self.node_is_live(n))
            .cloned()
            .collect();
        if expected.is_empty() {
            return Vec::new();
        }
        let Some((token, mut answers)) = self.member_waiter() else {
            return Vec::new();
        };
        self.bus_publish(BusEvent::RoomMembersAsk {
            room: room.id.to_string(),
            node: me.to_string(),
            token,
            after,
            limit: limit as u32,
        });
        let deadline = tokio::time::Instant::now() + crate::cluster::ROOM_STATE_WAIT;
        let mut members = Vec::new();
        while !expected.is_empty() {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((from, theirs))) => {
                    expected.remove(&from);
                    members.extend(theirs);
                }
                _ => {
                    tracing::warn!(room = %room.id, missing = ?expected, "nodes did not list their chatroom members in time");
                    break;
                }
            }
        }
        self.drop_member_waiter(token);
        members
    }

    /// Another node asks for the members of `room` here past member key `after`.
    pub(crate) fn room_members_asked(
        &self,
        room: &str,
        node: &str,
        token: u64,
        after: u64,
        limit: u32,
    ) {
        let Some(me) = self.node_id() else { return };
        if node == me {
            return;
        }
        let Some(r) = self.rooms_get(room) else {
            return;
        };
        let limit = (limit as usize).min(crate::groups::MEMBERS_PAGE_MAX as usize + 1);
        let members = r
            .lock()
            .members_after_key(after, limit)
            .into_iter()
            .map(|(_, user, joined)| (user, joined))
            .collect();
        self.bus_publish(BusEvent::RoomMembersAre {
            node: node.to_string(),
            token,
            from: me.to_string(),
            members,
        });
    }

    /// Another node's member count of a room this node has.
    pub(crate) fn room_count_arrived(&self, room: &str, node: &str, count: u64) {
        if self.node_id() == Some(node) {
            return;
        }
        if let Some(r) = self.rooms_get(room) {
            let mut st = r.lock();
            if count == 0 {
                st.remote_counts.remove(node);
            } else {
                st.remote_counts.insert(node.to_string(), count);
            }
        }
    }

    /// On the room's home: node `node` took the room in and asks what it holds.
    pub(crate) fn room_state_asked(&self, home: &str, room: &str, node: &str, token: u64) {
        if self.node_id() != Some(home) {
            return;
        }
        let state = self.rooms_get(room).and_then(|r| {
            let st = r.lock();
            (!st.destroyed).then(|| snapshot(&st, home, self.now_ms()))
        });
        self.bus_publish(BusEvent::RoomStateIs {
            node: node.to_string(),
            token,
            state,
        });
    }

    /// In a cluster, on a node that is not `room`'s home, the first time the room is looked up
    /// after this node took it in: asks the home what it holds and takes in what this node
    /// does not know yet (a notice that arrived meanwhile, or the store's standings of a kept
    /// room, are newer). Later lookups wait until this is done.
    pub(crate) async fn room_from_home(&self, room: &Arc<Room>) {
        if self.cluster().is_none() {
            return;
        }
        room.from_home
            .get_or_init(|| async {
                if let Some(state) = self.room_state_from_home(&room.id).await
                    && let Some(me) = self.node_id()
                {
                    take_in(&mut room.lock(), state, me);
                }
            })
            .await;
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
                        // A resend whose first attempt was numbered meanwhile is answered
                        // with the first.
                        let first = numbered_already(&st, &item.message().message);
                        numbered.push(match first {
                            Some(first) => {
                                let back =
                                    repeat_of(&first, me, me, item.source_session, item.token);
                                Arc::new(RoomItem::from_post(back, me))
                            }
                            None => st.number(RoomItem::from_post(item.to_post(me), me), known),
                        });
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

    fn number_in(&self, room: &Arc<Room>, known: u64, post: RoomPost) {
        let Some(me) = self.node_id() else { return };
        let destroyed = {
            let mut st = room.lock();
            if st.destroyed {
                return;
            }
            st.home = true;
            if let Some(first) = numbered_already(&st, &post.message) {
                drop(st);
                let back = repeat_of(&first, me, &post.node, post.session, post.token);
                self.bus_publish(BusEvent::RoomRepeat {
                    node: post.node,
                    post: back,
                });
                return;
            }
            let item = RoomItem::from_post(post, me);
            let effect = Effect::of(&item);
            let seq = st.number(item, known).seq();
            effect.is_some_and(|e| e.apply(room, &mut st, seq))
        };
        if destroyed {
            self.forget_destroyed_room(room);
        }
        room.wake();
    }
}

/// The most bytes of messages a room's home sends with what the room holds (the newest of its
/// history that fit): well under what the bus carries in one event (NATS: 1 MiB by default).
const SNAPSHOT_HISTORY_BYTES: usize = 256 * 1024;

/// What a room holds beyond its stream, as its home (node `me`) tells another node at `now`
/// (ms; bans and mutes that have run out are left out).
fn snapshot(st: &RoomState, me: &str, now: i64) -> RoomSnapshot {
    let mut bytes = 0;
    let mut history: Vec<RoomPost> = st
        .history()
        .rev()
        .take_while(|i| {
            let m = &i.message().message;
            bytes += m.content.len() + m.push_text.len() + 256;
            bytes <= SNAPSHOT_HISTORY_BYTES
        })
        .map(|i| i.to_post(me))
        .collect();
    history.reverse();
    let member_counts = std::iter::once((me.to_string(), st.local_member_count()))
        .chain(st.remote_counts.iter().map(|(n, c)| (n.clone(), *c)))
        .collect();
    RoomSnapshot {
        member_counts,
        history,
        muted_until: st.profile.muted_until,
        standings: st
            .standings
            .iter()
            .filter(|(_, s)| s.banned_until > now || s.muted_until > now)
            .map(|(user, s)| RoomStanding {
                user: user.clone(),
                banned_until: s.banned_until,
                muted_until: s.muted_until,
            })
            .collect(),
        entries: st
            .entries
            .iter()
            .map(|(key, e)| RoomEntry {
                key: key.clone(),
                value: e.value.clone(),
                user: e.user.clone(),
                updated: e.updated,
                auto_delete: e.auto_delete,
            })
            .collect(),
    }
}

/// Takes in what the home said a room holds, where this node knows nothing newer: users with
/// no standing here, keys with no entry here, the room's mute if it is not muted here, the
/// history if it has none here (node `me`).
pub(super) fn take_in(st: &mut RoomState, state: RoomSnapshot, me: &str) {
    for (node, count) in state.member_counts {
        if node != me && count > 0 {
            st.remote_counts.entry(node).or_insert(count);
        }
    }
    st.take_history(
        state
            .history
            .into_iter()
            .map(|post| RoomItem::from_post(post, me)),
    );
    if st.profile.muted_until == 0 {
        st.profile.muted_until = state.muted_until;
    }
    for s in state.standings {
        st.standings.entry(s.user).or_insert(Standing {
            banned_until: s.banned_until,
            muted_until: s.muted_until,
        });
    }
    for e in state.entries {
        st.entries.entry(e.key).or_insert(Entry {
            value: e.value,
            user: e.user,
            updated: e.updated,
            auto_delete: e.auto_delete,
        });
    }
}

/// On the room's home: the item it numbered already for the sender and client message id of
/// `message` (a resend of a send forwarded before the first attempt came back), if its history
/// still holds it.
fn numbered_already(st: &RoomState, message: &StoredMessage) -> Option<Arc<RoomItem>> {
    if message.sender.is_empty() || message.client_msg_id.is_empty() {
        return None;
    }
    st.earlier(&message.sender, &message.client_msg_id)
}

/// The item the home numbered first, as the answer to a resend that `node`'s session `session`
/// forwarded and waits for with `token` (node `me` being the home).
fn repeat_of(first: &RoomItem, me: &str, node: &str, session: u64, token: u64) -> RoomPost {
    RoomPost {
        node: node.to_string(),
        session,
        token,
        ..first.to_post(me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(sender: &str, msg_type: &str, content: serde_json::Value) -> RoomItem {
        let message = StoredMessage {
            sender: sender.into(),
            target: "r".into(),
            msg_type: msg_type.into(),
            content: content.to_string(),
            ..Default::default()
        };
        RoomItem::new(Arc::from("r"), message, Priority::High, 0, String::new())
    }

    #[test]
    fn only_the_servers_notices_change_a_room_on_other_nodes() {
        let kick = serde_json::json!({"operation": "kick", "userIds": ["bob"], "bannedUntil": 9});
        assert_eq!(
            Effect::of(&notice("", CHATROOM_EVENT_TYPE, kick.clone())),
            Some(Effect::Kick {
                users: vec!["bob".into()],
                banned_until: 9
            })
        );
        // The app server's operations with a user as sender, or anything but a notice,
        // change nothing.
        assert_eq!(
            Effect::of(&notice("alice", CHATROOM_EVENT_TYPE, kick.clone())),
            None
        );
        assert_eq!(Effect::of(&notice("", "text", kick)), None);
        let all = serde_json::json!({"operation": "mute", "all": true, "until": 5});
        assert_eq!(
            Effect::of(&notice("", CHATROOM_EVENT_TYPE, all)),
            Some(Effect::Mute {
                users: None,
                until: 5
            })
        );
        // A user's entry does.
        let entry = serde_json::json!({"operation": "entry", "key": "k", "value": "v",
            "userId": "alice", "autoDelete": true});
        assert_eq!(
            Effect::of(&notice("alice", CHATROOM_EVENT_TYPE, entry)),
            Some(Effect::Entry {
                key: "k".into(),
                entry: Entry {
                    value: "v".into(),
                    user: "alice".into(),
                    updated: 0,
                    auto_delete: true
                }
            })
        );
        let join = serde_json::json!({"operation": "join", "userIds": ["bob"], "count": 1});
        assert_eq!(Effect::of(&notice("", CHATROOM_EVENT_TYPE, join)), None);
    }
}
