//! What the app server does to chatrooms (HTTP API, CLI): create, read and destroy rooms, list
//! their members, kick, ban and mute users, set entries and post messages as a user.

use std::sync::Arc;

use tidings_proto::{Code, conversation_type};
use tidings_store::{ChatroomUser, GroupMembers, WriteOp};

use super::entries::{entries_of, remove_entry, set_entry};
use super::room::{Profile, Room, Standing};
use super::{
    ChatroomOut, EntryOut, MAX_USERS_PER_CHANGE, check_id, end_room, left, new_item, out, record,
    take_out,
};
use crate::commit::PendingPublish;
use crate::stream::Priority;
use crate::validate::{self, Refusal};
use crate::{ApiError, Engine, Posted};

impl Engine {
    /// Creates a room the app server keeps until it destroys it. A room a join made is kept
    /// from now on, with this profile. 40027 if the room is kept already.
    pub async fn create_chatroom(
        &self,
        id: &str,
        name: String,
        extra: String,
        max_members: Option<u64>,
    ) -> Result<ChatroomOut, ApiError> {
        check_id(id).map_err(ApiError)?;
        crate::groups::check_profile(Some(&name), None, Some(&extra))?;
        let cap = self.inner.config.chatrooms.max_members;
        let max_members = match max_members {
            None => cap,
            Some(n) if n >= 1 && n <= cap => n,
            Some(_) => {
                return Err(ApiError(Refusal::new(
                    Code::ChatroomInvalid,
                    format!("maxMembers is 1-{cap}"),
                )));
            }
        };
        let live = self.rooms().get(id).cloned();
        let mut profile = Profile {
            name,
            extra,
            created: self.now_ms(),
            max_members,
            muted_until: 0,
            kept: true,
        };
        // A room a join made keeps its age, its mute and its users' standings, now stored.
        let mut standings = Vec::new();
        if let Some(room) = &live {
            let st = room.lock();
            profile.created = st.profile.created;
            profile.muted_until = st.profile.muted_until;
            standings.extend(
                st.standings
                    .iter()
                    .map(|(user, s)| WriteOp::SetChatroomUser {
                        room: id.to_string(),
                        standing: ChatroomUser {
                            user: user.clone(),
                            banned_until: s.banned_until,
                            muted_until: s.muted_until,
                        },
                    }),
            );
        }
        let mut ops = vec![WriteOp::CreateChatroom(record(id, &profile))];
        ops.extend(standings);
        let results = self.write(ops).await?;
        if !matches!(
            results.first(),
            Some(tidings_store::WriteResult::ChatroomCreated { fresh: true })
        ) {
            return Err(Code::ChatroomExists.into());
        }
        let room = match live {
            Some(room) => room,
            None => self.adopt_room(Arc::new(Room::new(
                id,
                profile.clone(),
                self.inner.config.chatrooms.history,
            ))),
        };
        let mut st = room.lock();
        st.profile = Profile {
            muted_until: st.profile.muted_until,
            ..profile
        };
        Ok(out(&room, &st))
    }

    /// A room's profile and member count (a kept room is loaded if it is not in memory).
    pub async fn chatroom(&self, id: &str) -> Result<ChatroomOut, ApiError> {
        let room = self.room(id, None).await.map_err(ApiError)?;
        let st = room.lock();
        Ok(out(&room, &st))
    }

    /// Destroys a room: its members get a `destroy` notice and are out; a kept room is
    /// forgotten by the store.
    pub async fn destroy_chatroom(&self, id: &str) -> Result<ChatroomOut, ApiError> {
        let room = self.room(id, None).await.map_err(ApiError)?;
        if room.lock().profile.kept {
            self.write(vec![WriteOp::DeleteChatroom { id: id.to_string() }])
                .await?;
        }
        let now = self.now_ms();
        let answer = {
            let mut st = room.lock();
            if st.destroyed {
                return Err(Code::ChatroomNotFound.into());
            }
            let notice = st.notice(
                &room.id,
                "",
                serde_json::json!({"operation": "destroy"}),
                Priority::High,
                now,
            );
            end_room(&room, &mut st, notice.seq());
            out(&room, &st)
        };
        self.forget_destroyed_room(&room);
        room.wake();
        Ok(answer)
    }

    /// A page of a room's members in the order they joined, after `page_token`.
    pub async fn chatroom_members(
        &self,
        id: &str,
        page_token: &str,
        limit: u32,
    ) -> Result<GroupMembers, ApiError> {
        let room = self.room(id, None).await.map_err(ApiError)?;
        self.members_page(&room, page_token, limit)
            .await
            .map_err(ApiError)
    }

    /// Takes `users` out of a room, with a `kick` notice; with `ban_until` (ms) they may not
    /// join again until then (0 lifts a ban and kicks no one, with an `unban` notice).
    pub async fn chatroom_kick(
        &self,
        id: &str,
        users: &[String],
        ban_until: Option<i64>,
    ) -> Result<ChatroomOut, ApiError> {
        check_change_users(users)?;
        let room = self.room(id, None).await.map_err(ApiError)?;
        if let Some(until) = ban_until {
            self.persist_standings(&room, users, |s| s.banned_until = until)
                .await?;
        }
        let now = self.now_ms();
        let mut st = room.lock();
        if st.destroyed {
            return Err(Code::ChatroomNotFound.into());
        }
        if let Some(until) = ban_until {
            for u in users {
                let s = st.standings.entry(u.clone()).or_default();
                s.banned_until = until;
            }
        }
        if ban_until != Some(0) {
            // In a cluster the others may be members on other nodes, which the notice reaches.
            let clustered = self.cluster().is_some();
            let present: Vec<&String> = users
                .iter()
                .filter(|u| clustered || st.is_member(u))
                .collect();
            if !present.is_empty() {
                let content = serde_json::json!({
                    "operation": "kick",
                    "userIds": present,
                    "bannedUntil": ban_until.unwrap_or(0),
                });
                let notice = st.notice(&room.id, "", content, Priority::High, now);
                for u in users {
                    take_out(&room, &mut st, u, notice.seq());
                    left(&room, &mut st, u, now);
                }
            }
        } else {
            // Lifting a ban kicks no one, but is noticed: that is how the other nodes of a
            // cluster learn of it.
            let content = serde_json::json!({"operation": "unban", "userIds": users});
            st.notice(&room.id, "", content, Priority::High, now);
        }
        let answer = out(&room, &st);
        drop(st);
        room.wake();
        Ok(answer)
    }

    /// Mutes `users` in a room until `until` (ms; 0 unmutes), or with `users` `None` the whole
    /// room (only the app server may send then), with a notice.
    pub async fn chatroom_mute(
        &self,
        id: &str,
        users: Option<&[String]>,
        until: i64,
    ) -> Result<ChatroomOut, ApiError> {
        if let Some(users) = users {
            check_change_users(users)?;
        }
        let room = self.room(id, None).await.map_err(ApiError)?;
        match users {
            Some(users) => {
                self.persist_standings(&room, users, |s| s.muted_until = until)
                    .await?
            }
            None => {
                let kept = {
                    let st = room.lock();
                    st.profile.kept.then(|| {
                        record(
                            &room.id,
                            &Profile {
                                muted_until: until,
                                ..st.profile.clone()
                            },
                        )
                    })
                };
                if let Some(r) = kept {
                    self.write(vec![WriteOp::SetChatroom(r)]).await?;
                }
            }
        }
        let now = self.now_ms();
        let mut st = room.lock();
        if st.destroyed {
            return Err(Code::ChatroomNotFound.into());
        }
        let operation = if until == 0 { "unmute" } else { "mute" };
        let content = match users {
            Some(users) => {
                for u in users {
                    st.standings.entry(u.clone()).or_default().muted_until = until;
                }
                serde_json::json!({"operation": operation, "userIds": users, "until": until})
            }
            None => {
                st.profile.muted_until = until;
                serde_json::json!({"operation": operation, "all": true, "until": until})
            }
        };
        st.notice(&room.id, "", content, Priority::High, now);
        let answer = out(&room, &st);
        drop(st);
        room.wake();
        Ok(answer)
    }

    /// Stores the standings of `users` in a kept room as `change` makes them.
    async fn persist_standings(
        &self,
        room: &Room,
        users: &[String],
        change: impl Fn(&mut Standing),
    ) -> Result<(), ApiError> {
        let ops: Vec<WriteOp> = {
            let st = room.lock();
            if !st.profile.kept {
                return Ok(());
            }
            users
                .iter()
                .map(|u| {
                    let mut s = st.standing(u);
                    change(&mut s);
                    WriteOp::SetChatroomUser {
                        room: room.id.to_string(),
                        standing: ChatroomUser {
                            user: u.clone(),
                            banned_until: s.banned_until,
                            muted_until: s.muted_until,
                        },
                    }
                })
                .collect()
        };
        self.write(ops).await?;
        Ok(())
    }

    /// A room's entries (`keys` only, if any).
    pub async fn chatroom_entries(
        &self,
        id: &str,
        keys: &[String],
    ) -> Result<Vec<EntryOut>, ApiError> {
        let room = self.room(id, None).await.map_err(ApiError)?;
        let st = room.lock();
        Ok(entries_of(&st, keys))
    }

    /// Sets an entry for the app server, as `user` (overwriting whoever set it).
    pub async fn set_chatroom_entry_as(
        &self,
        id: &str,
        user: &str,
        key: &str,
        value: String,
        auto_delete: bool,
    ) -> Result<EntryOut, ApiError> {
        check_api_user(user)?;
        let room = self.room(id, None).await.map_err(ApiError)?;
        let now = self.now_ms();
        set_entry(&room, user, key, value, true, auto_delete, now).map_err(ApiError)
    }

    /// Removes an entry for the app server, whoever set it; the notice is from `user`.
    pub async fn remove_chatroom_entry_as(
        &self,
        id: &str,
        user: &str,
        key: &str,
    ) -> Result<(), ApiError> {
        check_api_user(user)?;
        let room = self.room(id, None).await.map_err(ApiError)?;
        let now = self.now_ms();
        remove_entry(&room, user, key, true, now).map_err(ApiError)
    }

    /// Posts a message to a room for the app server, as `sender` (who need not be a member;
    /// mutes do not apply). A repeat of a client message id the history still holds answers the
    /// first post.
    pub(crate) async fn post_to_chatroom(
        &self,
        p: PendingPublish,
        priority: Priority,
    ) -> Result<Posted, ApiError> {
        let room = self.room(&p.target, None).await.map_err(ApiError)?;
        // In a cluster, the numbered item comes back to this node.
        self.room_interest(&p.target).await;
        let now = self.now_ms();
        let waiter = self.room_waiter();
        let token = waiter.as_ref().map_or(0, |w| w.0);
        let posted = {
            let mut st = room.lock();
            if st.destroyed {
                Err(Code::ChatroomNotFound.into())
            } else {
                match st.earlier(&p.sender, &p.client_msg_id) {
                    Some(e) if e.digest == p.digest => Ok((e, true)),
                    Some(_) => Err(Code::ClientMsgIdConflict.into()),
                    None if st.is_overloaded() => Err(Code::ChatroomOverloaded.into()),
                    None => Ok((
                        st.post(&room.id, new_item(&p, priority, 0, now, token)),
                        false,
                    )),
                }
            }
        };
        let (item, duplicate) = match posted {
            Ok(p) => p,
            Err(e) => {
                self.drop_room_waiter(waiter);
                return Err(e);
            }
        };
        if !duplicate {
            crate::metrics::m().accepted(conversation_type::CHATROOM);
        }
        room.wake();
        let (item, duplicate) = if !duplicate && item.seq() == 0 {
            self.numbered_at_home(waiter, &item)
                .await
                .map_err(ApiError)?
        } else {
            self.drop_room_waiter(waiter);
            (item, duplicate)
        };
        if !duplicate && let Some(hooks) = &self.inner.hooks {
            hooks.sent(&item.message().message);
        }
        let m = item.message();
        Ok(Posted {
            user: String::new(),
            uid: m.uid().to_string(),
            seq: m.seq(),
            sent_time: m.sent_time(),
            duplicate,
        })
    }
}

fn check_api_user(user: &str) -> Result<(), ApiError> {
    if validate::is_user_id(user) {
        Ok(())
    } else {
        Err(Code::InvalidUserId.into())
    }
}

fn check_change_users(users: &[String]) -> Result<(), ApiError> {
    if users.is_empty() || users.len() > MAX_USERS_PER_CHANGE {
        return Err(ApiError(Refusal::new(
            Code::BadRequest,
            format!("give 1-{MAX_USERS_PER_CHANGE} user ids"),
        )));
    }
    users.iter().try_for_each(|u| check_api_user(u))
}
