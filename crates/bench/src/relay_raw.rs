//! The raw chatroom relay: the floor under a room's fan-out on a machine. It speaks just enough
//! of the protocol for `tidings bench chatroom` (CONNECT with the user id as the token, joining
//! and quitting rooms, messages to a room, pings; every other query answers empty), reads
//! WebSocket frames itself and writes them itself: a room's messages since its last round are
//! framed once into one buffer, and the room's own thread writes that buffer to each member's
//! socket with one non-blocking `write`. What a socket does not take waits in the member's own
//! buffer for a task that writes it once the socket is writable. No WebSocket library, no task
//! or queue entry per member and message, no storage, no promise (a member that falls 64 MiB
//! behind is cut off).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Encoding, codec, conversation_type};
use tokio::net::{TcpListener, TcpStream};

use super::wsframe;

/// The largest client frame read.
const MAX_FRAME: usize = 1 << 20;
/// Bytes a member may have waiting before the relay gives up on it.
const MAX_PENDING: usize = 64 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection's way out.
struct Member {
    id: u64,
    stream: Arc<TcpStream>,
    /// Bytes the socket did not take yet: everything later is written after them.
    pending: Mutex<Vec<u8>>,
    /// Wakes the member's flusher when `pending` gains bytes.
    more: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Member {
    /// Writes `bytes` after whatever is pending, never waiting: what the socket does not take
    /// now is left for the flusher.
    fn send(&self, bytes: &[u8]) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut pending = lock(&self.pending);
        if !pending.is_empty() {
            if pending.len() + bytes.len() > MAX_PENDING {
                self.close();
            } else {
                pending.extend_from_slice(bytes);
            }
            return;
        }
        match self.stream.try_write(bytes) {
            Ok(n) if n == bytes.len() => return,
            Ok(n) => pending.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => pending.extend_from_slice(bytes),
            Err(_) => {
                self.close();
                return;
            }
        }
        self.more.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.more.notify_one();
    }

    /// Writes what is pending whenever the socket can take it, until the member is closed.
    async fn flush(self: Arc<Self>) {
        loop {
            self.more.notified().await;
            loop {
                if self.closed.load(Ordering::Relaxed) || self.stream.writable().await.is_err() {
                    return;
                }
                let mut pending = lock(&self.pending);
                if pending.is_empty() {
                    break;
                }
                match self.stream.try_write(&pending) {
                    Ok(n) => {
                        pending.drain(..n);
                        if pending.is_empty() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        self.closed.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
}

/// A room: its numbering, its members, and the items framed since its last round.
#[derive(Default)]
struct RoomState {
    seq: u64,
    /// Replaced, not changed, on a join or a leave: a round writes to the list it took.
    members: Arc<Vec<Arc<Member>>>,
    batch: Vec<u8>,
    /// Which member sent which bytes of `batch` (it is not sent its own).
    origins: Vec<(u64, Range<usize>)>,
}

impl RoomState {
    fn remove(&mut self, member: u64) {
        let members = self
            .members
            .iter()
            .filter(|m| m.id != member)
            .cloned()
            .collect();
        self.members = Arc::new(members);
    }
}

#[derive(Default)]
struct Room {
    state: Mutex<RoomState>,
    ready: Condvar,
}

impl Room {
    /// The room's thread: takes what was posted since the last round and writes it to every
    /// member, once each.
    fn fan_out(&self) {
        let mut own = Vec::new();
        loop {
            let (batch, origins, members) = {
                let mut state = lock(&self.state);
                while state.batch.is_empty() {
                    state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                (
                    std::mem::take(&mut state.batch),
                    std::mem::take(&mut state.origins),
                    state.members.clone(),
                )
            };
            for m in members.iter() {
                if origins.iter().any(|(o, _)| *o == m.id) {
                    own.clear();
                    let mut at = 0;
                    for (_, r) in origins.iter().filter(|(o, _)| *o == m.id) {
                        own.extend_from_slice(&batch[at..r.start]);
                        at = r.end;
                    }
                    own.extend_from_slice(&batch[at..]);
                    if !own.is_empty() {
                        m.send(&own);
                    }
                } else {
                    m.send(&batch);
                }
            }
        }
    }
}

#[derive(Clone, Default)]
struct Relay {
    rooms: Arc<Mutex<HashMap<String, Arc<Room>>>>,
    connections: Arc<AtomicU64>,
    uids: Arc<AtomicU64>,
}

impl Relay {
    fn room(&self, id: &str) -> std::io::Result<Arc<Room>> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(id) {
            return Ok(room.clone());
        }
        let room = Arc::new(Room::default());
        let fanning = room.clone();
        // The relay lives as long as the process; so do its rooms' threads.
        std::thread::Builder::new()
            .name("relay-room".into())
            .spawn(move || fanning.fan_out())?;
        rooms.insert(id.into(), room.clone());
        Ok(room)
    }
}

/// Serves the raw relay on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let relay = Relay::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, relay).await {
                tracing::debug!(error = %e, "raw relay connection ended");
            }
        });
    }
}

fn framed(frame: &v1::Frame) -> Vec<u8> {
    let payload = codec::encode_protobuf(frame);
    let mut out = Vec::with_capacity(payload.len() + 10);
    wsframe::put(&mut out, wsframe::BINARY, &payload, None);
    out
}

async fn connection(mut stream: TcpStream, relay: Relay) -> anyhow::Result<()> {
    let mut buf = wsframe::accept(&mut stream).await?;
    let stream = Arc::new(stream);
    let member = Arc::new(Member {
        id: relay.connections.fetch_add(1, Ordering::Relaxed),
        stream: stream.clone(),
        pending: Mutex::new(Vec::new()),
        more: tokio::sync::Notify::new(),
        closed: AtomicBool::new(false),
    });
    tokio::spawn(member.clone().flush());
    let mut joined: Vec<Arc<Room>> = Vec::new();
    let ended = read_frames(&stream, &mut buf, &member, &relay, &mut joined).await;
    for room in joined {
        lock(&room.state).remove(member.id);
    }
    member.close();
    ended
}

async fn read_frames(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    member: &Arc<Member>,
    relay: &Relay,
    joined: &mut Vec<Arc<Room>>,
) -> anyhow::Result<()> {
    let mut user = String::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((opcode, payload, used)) = wsframe::take(buf, MAX_FRAME)? {
            match opcode {
                wsframe::BINARY => {
                    let frame = codec::decode(&buf[payload], Encoding::Protobuf, MAX_FRAME)?;
                    if !answer(frame, &mut user, member, relay, joined)? {
                        return Ok(());
                    }
                }
                wsframe::CLOSE => {
                    let mut close = Vec::new();
                    wsframe::put(&mut close, wsframe::CLOSE, &[], None);
                    member.send(&close);
                    return Ok(());
                }
                wsframe::PING => {
                    let mut pong = Vec::new();
                    wsframe::put(&mut pong, wsframe::PONG, &buf[payload], None);
                    member.send(&pong);
                }
                _ => {}
            }
            buf.drain(..used);
        }
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Acts on one client frame; `false` when the client said goodbye.
fn answer(
    frame: v1::Frame,
    user: &mut String,
    member: &Arc<Member>,
    relay: &Relay,
    joined: &mut Vec<Arc<Room>>,
) -> std::io::Result<bool> {
    let reply = |body: Body| member.send(&framed(&codec::frame(body)));
    let room_answer = |query_id: u32, id: String, state: &RoomState| {
        reply(Body::Queryack(v1::QueryAck {
            query_id,
            chatrooms: vec![v1::Chatroom {
                chatroom_id: id,
                member_count: state.members.len() as u64,
                seq: state.seq,
                ..Default::default()
            }],
            ..Default::default()
        }));
    };
    match frame.body {
        Some(Body::Connect(c)) => {
            *user = c.token;
            reply(Body::Connack(v1::ConnAck {
                user_id: user.clone(),
                heartbeat_ms: 30_000,
                ..Default::default()
            }));
        }
        Some(Body::Query(v1::Query {
            query_id,
            body: Some(v1::query::Body::JoinChatroom(j)),
        })) => {
            let room = relay.room(&j.chatroom_id)?;
            let mut state = lock(&room.state);
            if !state.members.iter().any(|m| m.id == member.id) {
                let mut members = state.members.as_ref().clone();
                members.push(member.clone());
                state.members = Arc::new(members);
                joined.push(room.clone());
            }
            // Answered under the room's lock: every later round includes this member and is
            // written after the answer.
            room_answer(query_id, j.chatroom_id, &state);
        }
        Some(Body::Query(v1::Query {
            query_id,
            body: Some(v1::query::Body::QuitChatroom(q)),
        })) => {
            let room = relay.room(&q.chatroom_id)?;
            let mut state = lock(&room.state);
            state.remove(member.id);
            joined.retain(|r| !Arc::ptr_eq(r, &room));
            room_answer(query_id, q.chatroom_id, &state);
        }
        Some(Body::Query(q)) => reply(Body::Queryack(v1::QueryAck {
            query_id: q.query_id,
            ..Default::default()
        })),
        Some(Body::Publish(v1::Publish {
            packet_id,
            body: Some(v1::publish::Body::Send(send)),
        })) if send.conversation_type == conversation_type::CHATROOM => {
            let uid = relay.uids.fetch_add(1, Ordering::Relaxed).to_string();
            let room = relay.room(&send.target_id)?;
            let seq = {
                let mut state = lock(&room.state);
                state.seq += 1;
                let item = super::relay::room_item(uid, user, state.seq, send);
                let start = state.batch.len();
                wsframe::put(
                    &mut state.batch,
                    wsframe::BINARY,
                    &codec::encode_protobuf(&item),
                    None,
                );
                let end = state.batch.len();
                state.origins.push((member.id, start..end));
                room.ready.notify_one();
                state.seq
            };
            reply(Body::Puback(v1::PubAck {
                packet_id,
                seq,
                ..Default::default()
            }));
        }
        Some(Body::Pingreq(_)) => reply(Body::Pingresp(v1::PingResp {})),
        Some(Body::Disconnect(_)) => return Ok(false),
        _ => {}
    }
    Ok(true)
}
