//! What a connection asks of chatrooms: joining (with recent messages, or those after a seq),
//! quitting, the queries of a member, a room's history, and sending to a room.

use std::sync::Arc;

use tidings_proto::{Code, conversation_type};
use tidings_store::HistoryFrom;

use super::entries::{entries_of, remove_entry, set_entry};
use super::room::Room;
use super::{
    ChatroomQuery, MAX_ENTRIES, MAX_ROOMS_PER_CONNECTION, RECENT_MAX, REJOIN_MAX, check_id, left,
    new_item, out,
};
use crate::commit::PendingPublish;
use crate::session::{Attachment, SessionShared};
use crate::stream::{Priority, RoomItem};
use crate::validate::Refusal;
use crate::{Delivered, Engine, Outbound, PubAckOut, QueryAckOut, Session};

impl Session {
    /// Answers a chatroom query; the QUERYACK arrives through the outbox.
    pub async fn chatroom_query(&self, query_id: u32, query: ChatroomQuery) {
        let answer = match query {
            // A join answers itself, in order with the room's pushes.
            ChatroomQuery::Join {
                room,
                recent,
                after_seq,
            } => match self.join(query_id, &room, recent, after_seq, false).await {
                Ok(()) => return,
                Err(r) => Err(r),
            },
            ChatroomQuery::JoinAlone { room, recent } => {
                match self.join(query_id, &room, recent, 0, true).await {
                    Ok(()) => return,
                    Err(r) => Err(r),
                }
            }
            other => self.answer_chatroom(other).await,
        };
        let out = match answer {
            Ok(mut out) => {
                out.query_id = query_id;
                out
            }
            Err(r) => QueryAckOut::refused(query_id, r),
        };
        self.shared
            .reply(&self.engine, Outbound::QueryAck(Box::new(out)));
    }

    async fn join(
        &self,
        query_id: u32,
        id: &str,
        recent: u32,
        after_seq: u64,
        alone: bool,
    ) -> Result<(), Refusal> {
        check_id(id)?;
        if recent > RECENT_MAX || (recent > 0 && after_seq > 0) {
            return Err(Refusal::new(
                Code::ChatroomInvalid,
                format!("ask for at most {RECENT_MAX} recent messages, or those after a seq"),
            ));
        }
        let user = &self.shared.user;
        // A room destroyed between finding it and locking it is looked up again (once). A
        // rejoin (after a seq) continues a room: one that is gone is not made again.
        for _ in 0..2 {
            let room = self
                .engine
                .room(id, (after_seq == 0).then_some(user.as_str()))
                .await?;
            // In a cluster, the room's items reach this node before the join is answered.
            self.engine.room_interest(id).await;
            let now = self.engine.now_ms();
            let mut st = room.lock();
            if st.destroyed {
                continue;
            }
            if st.standing(user).banned_until > now {
                return Err(Code::KickedFromChatroom.into());
            }
            if !st.has_session(user, self.shared.id) {
                if alone && st.is_member(user) {
                    return Err(Code::ChatroomJoinedElsewhere.into());
                }
                if !st.is_member(user) && st.member_count() >= st.profile.max_members {
                    return Err(Code::ChatroomFull.into());
                }
                // Checked and recorded under the session's attachments, which an ending session
                // drains after it is marked ended: so a session that ends meanwhile either is
                // refused here or is taken out of the room by its end.
                let mut joined = self.shared.attached();
                if self.shared.is_ended() {
                    return Err(Code::ServerShutdown.into());
                }
                if joined.iter().filter(|a| as_room(a).is_some()).count()
                    >= MAX_ROOMS_PER_CONNECTION
                {
                    return Err(Refusal::new(
                        Code::ChatroomInvalid,
                        format!("a connection is in at most {MAX_ROOMS_PER_CONNECTION} chatrooms"),
                    ));
                }
                if st.add(&self.shared, now) {
                    st.schedule_notices();
                }
                joined.push(room.clone());
            }
            let (messages, has_more): (Vec<Delivered>, bool) = if after_seq > 0 {
                let after: Vec<&Arc<RoomItem>> =
                    st.history().filter(|i| i.seq() > after_seq).collect();
                let more = after.len() > REJOIN_MAX;
                (
                    after
                        .into_iter()
                        .take(REJOIN_MAX)
                        .map(|i| i.message().clone())
                        .collect(),
                    more,
                )
            } else {
                let recent = st.recent(recent as usize);
                (recent.iter().map(|i| i.message().clone()).collect(), false)
            };
            // Queued under the room's lock: every push of a later item comes after it. A full
            // queue ends the session, but only once the lock is released (ending takes the
            // session out of its rooms, this one included).
            let queued = self
                .shared
                .outbox
                .push(Outbound::QueryAck(Box::new(QueryAckOut {
                    query_id,
                    chatrooms: vec![out(&room, &st)],
                    messages,
                    has_more,
                    ..Default::default()
                })));
            drop(st);
            room.wake();
            if queued.is_err() {
                self.shared.end(&self.engine, Code::SlowConsumer);
            }
            return Ok(());
        }
        Err(Code::ChatroomNotFound.into())
    }

    /// The room, if this user is a member of it.
    async fn member_room(&self, id: &str) -> Result<Arc<Room>, Refusal> {
        self.engine.member_room(id, &self.shared.user).await
    }

    async fn answer_chatroom(&self, query: ChatroomQuery) -> Result<QueryAckOut, Refusal> {
        let user = self.shared.user.clone();
        let now = self.engine.now_ms();
        match query {
            ChatroomQuery::Join { .. } | ChatroomQuery::JoinAlone { .. } => {
                Err(Code::InvalidQuery.into())
            }
            ChatroomQuery::Quit { room: id } => {
                check_id(&id)?;
                let attachment = {
                    let mut joined = self.shared.attached();
                    let i = joined
                        .iter()
                        .position(|a| as_room(a).is_some_and(|r| *r.id == *id))
                        .ok_or(Refusal::from(Code::NotInChatroom))?;
                    joined.remove(i)
                };
                let room = as_room(&attachment).ok_or(Refusal::from(Code::NotInChatroom))?;
                let mut st = room.lock();
                if st.remove(&self.shared) == Some(true) {
                    left(room, &mut st, &user, now);
                }
                let answer = out(room, &st);
                drop(st);
                room.wake();
                Ok(QueryAckOut {
                    chatrooms: vec![answer],
                    ..Default::default()
                })
            }
            ChatroomQuery::Get { room } => {
                let room = self.member_room(&room).await?;
                let st = room.lock();
                Ok(QueryAckOut {
                    chatrooms: vec![out(&room, &st)],
                    ..Default::default()
                })
            }
            ChatroomQuery::Members {
                room,
                limit,
                page_token,
            } => {
                let room = self.member_room(&room).await?;
                let page = self.engine.members_page(&room, &page_token, limit).await?;
                Ok(QueryAckOut {
                    members: page.members,
                    next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
                    ..Default::default()
                })
            }
            ChatroomQuery::SetEntry {
                room,
                key,
                value,
                force,
                auto_delete,
            } => {
                let room = self.member_room(&room).await?;
                let entry = set_entry(&room, &user, &key, value, force, auto_delete, now)?;
                Ok(QueryAckOut {
                    entries: vec![entry],
                    ..Default::default()
                })
            }
            ChatroomQuery::RemoveEntry { room, key, force } => {
                let room = self.member_room(&room).await?;
                remove_entry(&room, &user, &key, force, now)?;
                Ok(QueryAckOut::default())
            }
            ChatroomQuery::Entries { room, keys } => {
                if keys.len() > MAX_ENTRIES {
                    return Err(Refusal::new(
                        Code::ChatroomInvalid,
                        format!("ask for at most {MAX_ENTRIES} keys"),
                    ));
                }
                let room = self.member_room(&room).await?;
                let st = room.lock();
                Ok(QueryAckOut {
                    entries: entries_of(&st, &keys),
                    ..Default::default()
                })
            }
        }
    }

    /// A page of a room's recent history (members only): as `history` pages a conversation,
    /// within what the room keeps.
    pub(crate) async fn chatroom_history(
        &self,
        id: &str,
        from: HistoryFrom,
        count: usize,
    ) -> Result<(Vec<Delivered>, bool), Refusal> {
        let room = self.member_room(id).await?;
        let st = room.lock();
        let matches = |i: &&Arc<RoomItem>| match from {
            HistoryFrom::BeforeSeq(s) => i.seq() < s,
            HistoryFrom::AfterSeq(s) => i.seq() > s,
            HistoryFrom::BeforeTime(t) => i.message().sent_time() < t,
            HistoryFrom::AfterTime(t) => i.message().sent_time() > t,
        };
        let backwards = matches!(from, HistoryFrom::BeforeSeq(_) | HistoryFrom::BeforeTime(_));
        let mut page: Vec<Delivered> = if backwards {
            st.history()
                .rev()
                .filter(matches)
                .take(count + 1)
                .map(|i| i.message().clone())
                .collect()
        } else {
            st.history()
                .filter(matches)
                .take(count + 1)
                .map(|i| i.message().clone())
                .collect()
        };
        let mut has_more = page.len() > count;
        page.truncate(count);
        // Within the answer's byte budget, keeping the messages nearest the starting point.
        let budget = self.page_budget();
        let mut bytes = 0;
        if let Some(fit) = page.iter().position(|m| {
            bytes += m.approx_bytes();
            bytes > budget
        }) {
            page.truncate(fit.max(1));
            has_more = true;
        }
        if backwards {
            page.reverse();
        }
        Ok((page, has_more))
    }

    /// Posts a checked message to a room this user is a member of, and answers the PUBACK: code
    /// 0 once the room has numbered it. `limited`: over the send limit, only a resend of a
    /// message the history holds is answered (with its first answer).
    pub(crate) async fn publish_to_chatroom(
        &self,
        packet_id: u32,
        p: PendingPublish,
        notice: u32,
        priority: Priority,
        limited: bool,
    ) {
        let refuse = |r: Refusal| {
            self.shared.reply(
                &self.engine,
                Outbound::PubAck(PubAckOut::refused(packet_id, r)),
            )
        };
        let room = match self.engine.room(&p.target, None).await {
            Ok(r) => r,
            Err(r) => return refuse(r),
        };
        let user = &self.shared.user;
        let now = self.engine.now_ms();
        let waiter = self.engine.room_waiter();
        let token = waiter.as_ref().map_or(0, |w| w.0);
        let posted = {
            let mut st = room.lock();
            match st.earlier(user, &p.client_msg_id) {
                Some(e) if e.digest == p.digest => Ok((e, false)),
                Some(_) => Err(Code::ClientMsgIdConflict.into()),
                None if limited => Err(Refusal::new(
                    Code::SendTooFast,
                    format!(
                        "at most {} messages a second",
                        self.engine.inner.config.send_rate
                    ),
                )),
                None if st.destroyed => Err(Code::ChatroomNotFound.into()),
                None if !st.is_member(user) => Err(Code::NotInChatroom.into()),
                None if st.standing(user).muted_until > now || st.profile.muted_until > now => {
                    Err(Code::MutedInChatroom.into())
                }
                None if st.is_overloaded() => Err(Code::ChatroomOverloaded.into()),
                None => Ok((
                    st.post(&room.id, new_item(&p, priority, self.shared.id, now, token)),
                    true,
                )),
            }
        };
        let (item, fresh) = match posted {
            Ok(p) => p,
            Err(r) => {
                self.engine.drop_room_waiter(waiter);
                return refuse(r);
            }
        };
        if fresh {
            crate::metrics::m().accepted(conversation_type::CHATROOM);
            room.wake();
        }
        // In a cluster, a send made on a node that is not the room's home is numbered there;
        // the answer waits for that in a task of its own, so the connection's next frames do
        // not.
        if fresh && item.seq() == 0 {
            let (engine, shared) = (self.engine.clone(), self.shared.clone());
            tokio::spawn(async move {
                match engine.numbered_at_home(waiter, &item).await {
                    Ok((item, repeat)) => {
                        if !repeat && let Some(hooks) = &engine.inner.hooks {
                            hooks.sent(&item.message().message);
                        }
                        answer_room_publish(&engine, &shared, packet_id, &item, notice);
                    }
                    Err(r) => {
                        shared.reply(&engine, Outbound::PubAck(PubAckOut::refused(packet_id, r)))
                    }
                }
            });
            return;
        }
        self.engine.drop_room_waiter(waiter);
        if fresh && let Some(hooks) = &self.engine.inner.hooks {
            hooks.sent(&item.message().message);
        }
        answer_room_publish(&self.engine, &self.shared, packet_id, &item, notice);
    }
}

/// The PUBACK of a chatroom message the room numbered.
fn answer_room_publish(
    engine: &Engine,
    shared: &SessionShared,
    packet_id: u32,
    item: &RoomItem,
    notice: u32,
) {
    let m = item.message();
    shared.reply(
        engine,
        Outbound::PubAck(PubAckOut {
            packet_id,
            code: 0,
            text: String::new(),
            uid: m.uid().to_string(),
            seq: m.seq(),
            sent_time: m.sent_time(),
            inbox_seq: 0,
            notice,
            content: if notice != 0 {
                m.content().to_string()
            } else {
                String::new()
            },
        }),
    );
}

/// A room among a session's attachments.
fn as_room(a: &Arc<dyn Attachment>) -> Option<&Room> {
    a.as_any().downcast_ref::<Room>()
}

/// A connection in a room is attached to its session, so the session's end takes it out.
impl Attachment for Room {
    fn detach(&self, engine: &Engine, session: &SessionShared) {
        let now = engine.now_ms();
        let mut st = self.lock();
        if st.remove(session) == Some(true) {
            left(self, &mut st, &session.user, now);
        }
        drop(st);
        self.wake();
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl PendingPublish {
    /// A chatroom message: never stored, so only what the room's stream needs.
    pub(crate) fn chatroom(sender: &str, send: crate::SendRequest) -> PendingPublish {
        let digest = crate::commit::digest(&send);
        PendingPublish {
            conversation_type: conversation_type::CHATROOM,
            conversation_id: format!("{}:{}", conversation_type::CHATROOM, send.target_id),
            sender: sender.to_string(),
            target: send.target_id,
            msg_type: send.msg_type,
            content: send.content,
            push_text: send.push_text,
            client_msg_id: send.client_msg_id,
            digest,
            ..Default::default()
        }
    }
}
