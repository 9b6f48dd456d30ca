//! The chatrooms in memory, by id: finding a room (loading a kept one from the store, or making
//! one for a first join), adopting a fresh one and starting its fan-out, forgetting one that
//! ended, and ending every room's fan-out at shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings_proto::Code;

use super::room::{self, Profile, Room, Standing};
use super::{check_id, store_failed};
use crate::Engine;
use crate::validate::Refusal;

/// How long a node remembers a chatroom destroyed in a cluster: far longer than an event
/// another node published before the destroy reached it can take to cross the bus.
pub(crate) const DESTROYED_KEPT: Duration = Duration::from_secs(60);

impl Engine {
    /// The room `id`: in memory, or loaded from the store if kept there, or (with auto-creation
    /// on) made now by the join of `creator`. Making rooms counts against the creator's limit
    /// of status messages, so joins cannot fill the server with empty rooms.
    pub(super) async fn room(&self, id: &str, creator: Option<&str>) -> Result<Arc<Room>, Refusal> {
        check_id(id)?;
        let listed = {
            let mut rooms = self.rooms();
            match rooms.get(id) {
                // One that ended but is still listed (its task has not yet dropped it) gives way.
                Some(r) if r.lock().destroyed => {
                    rooms.remove(id);
                    None
                }
                found => found.cloned(),
            }
        };
        if let Some(r) = listed {
            if self.cluster().is_some() {
                r.set_home(self.is_room_home(id));
                r.keep_counts_of(|n| self.node_is_live(n));
                self.room_from_home(&r).await;
            }
            return Ok(r);
        }
        let settings = &self.inner.config.chatrooms;
        let stored = self.inner.store.chatroom(id).await.map_err(store_failed)?;
        let (profile, standings) = match stored {
            Some((r, users)) => (
                Profile {
                    name: r.name,
                    extra: r.extra,
                    created: r.created,
                    max_members: r.max_members,
                    muted_until: r.muted_until,
                    kept: true,
                },
                users,
            ),
            None if creator.is_some() && settings.auto_create => {
                if creator.is_some_and(|user| !self.may_send_status(user)) {
                    return Err(Refusal::new(
                        Code::SendTooFast,
                        format!(
                            "at most {} chatrooms made a second",
                            crate::session::STATUS_RATE
                        ),
                    ));
                }
                (
                    Profile {
                        created: self.now_ms(),
                        max_members: settings.max_members,
                        ..Default::default()
                    },
                    Vec::new(),
                )
            }
            None => return self.room_held_elsewhere(id).await,
        };
        let fresh = Arc::new(Room::new(id, profile, settings.history));
        {
            let mut st = fresh.lock();
            for u in standings {
                st.standings.insert(
                    u.user,
                    Standing {
                        banned_until: u.banned_until,
                        muted_until: u.muted_until,
                    },
                );
            }
        }
        let room = self.adopt_room(fresh);
        if self.cluster().is_some() {
            room.set_home(self.is_room_home(id));
            self.room_from_home(&room).await;
        }
        Ok(room)
    }

    /// In a cluster, the room `id` made by joins on other nodes, which this node does not have:
    /// taken in from the room's home if the home has it (so that the app server's calls and
    /// the lookups of users reach it on any node), else 23410.
    async fn room_held_elsewhere(&self, id: &str) -> Result<Arc<Room>, Refusal> {
        if self.cluster().is_none() || self.is_room_home(id) {
            return Err(Code::ChatroomNotFound.into());
        }
        let (Some(state), Some(me)) = (self.room_state_from_home(id).await, self.node_id()) else {
            return Err(Code::ChatroomNotFound.into());
        };
        let settings = &self.inner.config.chatrooms;
        let profile = Profile {
            created: self.now_ms(),
            max_members: settings.max_members,
            ..Default::default()
        };
        let fresh = Arc::new(Room::new(id, profile, settings.history));
        super::home::take_in(&mut fresh.lock(), state, me);
        let _ = fresh.from_home.set(());
        // Its later notices reach this node from now on.
        self.room_interest(id).await;
        let room = self.adopt_room(fresh);
        room.set_home(false);
        self.room_from_home(&room).await;
        Ok(room)
    }

    /// The room `id` as it is in memory here, if it is.
    pub(crate) fn rooms_get(&self, id: &str) -> Option<Arc<Room>> {
        self.rooms().get(id).cloned()
    }

    /// In a cluster, on a room's home: the room an item from another node is for, made here
    /// if it is in neither memory nor the store (a join on another node made it).
    pub(crate) async fn room_for_bus(&self, id: &str) -> Option<Arc<Room>> {
        match self.room(id, None).await {
            Ok(r) => Some(r),
            Err(r) if r.code == Code::ChatroomNotFound => {
                let settings = &self.inner.config.chatrooms;
                let profile = Profile {
                    created: self.now_ms(),
                    max_members: settings.max_members,
                    ..Default::default()
                };
                Some(self.adopt_room(Arc::new(Room::new(id, profile, settings.history))))
            }
            Err(_) => None,
        }
    }

    /// Puts `fresh` in the registry unless a room with its id got there first (which is
    /// answered instead), and starts its fan-out.
    pub(super) fn adopt_room(&self, fresh: Arc<Room>) -> Arc<Room> {
        let mut rooms = self.rooms();
        if let Some(r) = rooms.get(&*fresh.id) {
            return r.clone();
        }
        rooms.insert(fresh.id.to_string(), fresh.clone());
        drop(rooms);
        self.destroyed_rooms().remove(&*fresh.id);
        tokio::spawn(room::run(
            fresh.clone(),
            Arc::downgrade(&self.inner),
            self.inner.config.chatrooms.idle,
        ));
        fresh
    }

    /// The room, if `user` is a member of it (on this node) now.
    pub(crate) async fn member_room(&self, id: &str, user: &str) -> Result<Arc<Room>, Refusal> {
        let room = self.room(id, None).await?;
        let st = room.lock();
        if st.destroyed {
            return Err(Code::ChatroomNotFound.into());
        }
        if !st.is_member(user) {
            return Err(Code::NotInChatroom.into());
        }
        drop(st);
        Ok(room)
    }

    pub(super) fn rooms(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<Room>>> {
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a room that ended from the registry (unless another took its id meanwhile).
    pub(crate) fn forget_room(&self, room: &Arc<Room>) {
        let mut rooms = self.rooms();
        if rooms.get(&*room.id).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&*room.id);
        }
    }

    /// Drops a room that was destroyed from the registry and, in a cluster, remembers that it
    /// was (for [`DESTROYED_KEPT`]): an item another node forwarded to it before it learned of
    /// the destroy must not bring the room back on its home.
    pub(crate) fn forget_destroyed_room(&self, room: &Arc<Room>) {
        if self.cluster().is_some() {
            let now = Instant::now();
            let mut destroyed = self.destroyed_rooms();
            destroyed.retain(|_, at| now.duration_since(*at) < DESTROYED_KEPT);
            destroyed.insert(room.id.to_string(), now);
        }
        self.forget_room(room);
    }

    /// Whether room `id` was destroyed here within [`DESTROYED_KEPT`] and not made again since.
    pub(crate) fn destroyed_lately(&self, id: &str) -> bool {
        self.destroyed_rooms()
            .get(id)
            .is_some_and(|at| at.elapsed() < DESTROYED_KEPT)
    }

    fn destroyed_rooms(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Instant>> {
        self.inner
            .destroyed_rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Ends every room's fan-out (at shutdown, once every session has ended).
    pub(crate) fn stop_rooms(&self) {
        let all: Vec<Arc<Room>> = self.rooms().drain().map(|(_, r)| r).collect();
        for room in all {
            room.lock().destroyed = true;
            room.wake();
        }
    }
}
