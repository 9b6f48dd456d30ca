//! The task that owns the connection: connect, handshake, read, write, heartbeat, sync, and
//! reconnect with backoff. Everything the SDK promises about order and duplicates lives here.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Code, EncodeError, Encoding, codec};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{
    ChatroomEvent, ClientConfig, ClientError, Command, Event, Message, Outgoing, Sent, Stats,
    Status,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames the server may send; generous, since the server bounds its own.
const MAX_INBOUND_FRAME: usize = 16 << 20;
/// How many delivered uids are remembered for deduplication.
const DEDUPE_CAPACITY: usize = 16_384;

/// A send waiting for its PUBACK.
struct PendingSend {
    frame: v1::Send,
    reply: oneshot::Sender<Result<Sent, ClientError>>,
}

/// Everything that survives a reconnect.
struct State {
    config: ClientConfig,
    /// Which of the configured servers connections go to (see `ClientConfig::other_servers`).
    server: usize,
    events: mpsc::Sender<Event>,
    closing: watch::Receiver<bool>,
    /// The authenticated user, once connected.
    user_id: String,
    /// Every inbox entry up to here has been presented (or is this device's own send).
    cursor: Option<u64>,
    /// Entries that arrived ahead of a gap. `None` marks this device's own message.
    ahead: BTreeMap<u64, Option<Message>>,
    /// Uids presented lately (a fast hasher: every delivered message is looked up here).
    seen_uids: HashSet<String, foldhash::fast::RandomState>,
    seen_order: VecDeque<String>,
    pending: HashMap<u32, PendingSend>,
    next_packet_id: u32,
    /// Queries (other than sync) waiting for their QUERYACK.
    queries: HashMap<u32, oneshot::Sender<Result<v1::QueryAck, ClientError>>>,
    next_query_id: u32,
    /// The users whose presence this client watches, to watch again after a reconnect.
    watching: Vec<String>,
    /// The chatrooms this client is in, each with the newest seq presented of it: joined again
    /// after a reconnect, from there.
    rooms: HashMap<String, u64>,
    /// Chatroom queries waiting for their answer, whose answer changes `rooms`.
    room_queries: HashMap<u32, RoomQuery>,
    auto_ack: bool,
    /// When the presented entries not yet acknowledged must be (see [`CONFIRM_DELAY`]).
    confirm_due: Option<Instant>,
    /// Entries presented (or repeated) since the last acknowledgement.
    unconfirmed: usize,
    stats: Stats,
}

/// Delivered entries are acknowledged together, by one cumulative QUERYCON of the cursor, at
/// most this long after the first of them was presented, or once [`CONFIRM_BATCH`] of them
/// wait: one frame acknowledges many, which costs both ends far less than one PUBACK each. The
/// delay is far below the server's resend timeout (10 s by default).
const CONFIRM_DELAY: Duration = Duration::from_millis(50);
const CONFIRM_BATCH: usize = 64;

/// Query ids of application queries start here, apart from the sync's own ids, which count
/// up from 1.
const FIRST_QUERY_ID: u32 = 1 << 31;

/// A chatroom query whose answer the driver follows.
enum RoomQuery {
    Join(String),
    Quit(String),
    /// Joining again after a reconnect: the messages answered are presented as events.
    Rejoin(String),
}

/// Why a connection ended.
enum End {
    /// Reconnect after the backoff.
    Lost { code: u32, reason: String },
    /// Do not reconnect.
    Final { code: u32, reason: String },
    /// The application closed the client.
    Closed,
}

pub async fn run(
    config: ClientConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    closing: watch::Receiver<bool>,
    ready: oneshot::Sender<Result<String, ClientError>>,
) {
    let mut state = State {
        server: 0,
        cursor: config.initial_cursor,
        auto_ack: config.auto_ack,
        config,
        events,
        closing,
        user_id: String::new(),
        ahead: BTreeMap::new(),
        seen_uids: HashSet::default(),
        seen_order: VecDeque::new(),
        pending: HashMap::new(),
        next_packet_id: 0,
        queries: HashMap::new(),
        next_query_id: FIRST_QUERY_ID,
        watching: Vec::new(),
        rooms: HashMap::new(),
        room_queries: HashMap::new(),
        confirm_due: None,
        unconfirmed: 0,
        stats: Stats::default(),
    };
    let mut ready = Some(ready);
    let mut attempt = 0usize;
    loop {
        state.emit(Event::Status(Status::Connecting)).await;
        let end = match handshake(&mut state).await {
            Ok((ws, ack)) => {
                attempt = 0;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(ack.user_id.clone()));
                } else {
                    state.stats.reconnects += 1;
                }
                state
                    .emit(Event::Status(Status::Connected {
                        user_id: ack.user_id.clone(),
                        session_id: ack.session_id.clone(),
                    }))
                    .await;
                let end = session(&mut state, ws, &ack, &mut commands).await;
                // Their answers cannot come on another connection.
                for (_, reply) in state.queries.drain() {
                    let _ = reply.send(Err(ClientError::NotConnected));
                }
                state.room_queries.clear();
                end
            }
            Err(End::Final { code, reason }) if ready.is_some() => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(ClientError::Refused {
                        code,
                        message: reason,
                    }));
                }
                return;
            }
            Err(End::Lost { reason, .. }) if ready.is_some() => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(ClientError::Connect(reason)));
                }
                return;
            }
            Err(end) => end,
        };
        match end {
            End::Closed => return,
            End::Final { code, reason } => {
                state.fail_pending(code, &reason);
                state.emit(Event::Kicked { code, reason }).await;
                return;
            }
            End::Lost { code, reason } => {
                state
                    .emit(Event::Status(Status::Disconnected { code, reason }))
                    .await;
            }
        }
        let delays = &state.config.reconnect_delays;
        let delay = delays
            .get(attempt)
            .or(delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(1));
        attempt += 1;
        // Keep serving commands while waiting, so sends queue and close works.
        let wake = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => break,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Close(reply)) => {
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => state.offline_command(cmd),
                }
            }
        }
    }
}

fn ws_message(frame: &v1::Frame, encoding: Encoding) -> Result<WsMessage, EncodeError> {
    Ok(match encoding {
        Encoding::Protobuf => WsMessage::Binary(codec::encode_protobuf(frame).into()),
        Encoding::Json => WsMessage::Text(codec::encode_json(frame)?.into()),
    })
}

/// Why a frame could not be written.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("a frame could not be encoded: {0}")]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Encodes and writes one frame.
async fn send_frame(ws: &mut Ws, frame: &v1::Frame, encoding: Encoding) -> Result<(), WriteError> {
    ws.send(ws_message(frame, encoding)?).await?;
    Ok(())
}

fn decode(msg: WsMessage) -> Option<Result<v1::Frame, tidings_proto::DecodeError>> {
    match msg {
        WsMessage::Binary(b) => Some(codec::decode(&b, Encoding::Protobuf, MAX_INBOUND_FRAME)),
        WsMessage::Text(t) => Some(codec::decode(
            t.as_bytes(),
            Encoding::Json,
            MAX_INBOUND_FRAME,
        )),
        _ => None,
    }
}

fn lost(reason: impl std::fmt::Display) -> End {
    End::Lost {
        code: 0,
        reason: reason.to_string(),
    }
}

async fn handshake(state: &mut State) -> Result<(Ws, v1::ConnAck), End> {
    let timeout = state.config.connect_timeout;
    let url = state.config.ws_url_at(state.server);
    // Used for `wss://` only.
    let tls = tokio_tungstenite::Connector::Rustls(
        state
            .config
            .tls
            .clone()
            .unwrap_or_else(crate::tls::public_roots),
    );
    let opened = match state.config.local_addr {
        None => {
            tokio::time::timeout(
                timeout,
                tokio_tungstenite::connect_async_tls_with_config(
                    url,
                    Some(ws_config()),
                    true,
                    Some(tls),
                ),
            )
            .await
        }
        Some(local) => tokio::time::timeout(timeout, connect_from(local, url, tls)).await,
    };
    let opened = opened
        .map_err(|_| lost("connect timed out"))
        .and_then(|r| r.map_err(lost));
    let (mut ws, _) = match opened {
        Ok(ws) => ws,
        Err(e) => {
            // This node cannot be reached: the next attempt goes to the next one.
            state.server = state.server.wrapping_add(1);
            return Err(e);
        }
    };
    let connect = codec::frame(Body::Connect(v1::Connect {
        protocol_version: tidings_proto::PROTOCOL_VERSION,
        token: state.config.token.clone(),
        device_id: state.config.device_id.clone(),
        platform: state.config.platform.clone(),
    }));
    send_frame(&mut ws, &connect, state.config.encoding)
        .await
        .map_err(lost)?;
    let deadline = Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| lost("no CONNACK in time"))?;
        let Some(msg) = msg else {
            return Err(lost("connection closed during the handshake"));
        };
        let frame = match decode(msg.map_err(lost)?) {
            None => continue,
            Some(f) => f.map_err(lost)?,
        };
        return match frame.body {
            Some(Body::Connack(ack)) if ack.code == 0 => Ok((ws, ack)),
            Some(Body::Connack(ack)) => {
                // A refused CONNECT is final unless trying again can succeed: the server was
                // shutting down, or failed.
                let code = Code::from_u32(ack.code);
                if code == Some(Code::StoreUnreachable) {
                    // This node cannot reach its database: the next attempt goes to the next.
                    state.server = state.server.wrapping_add(1);
                }
                let end = if matches!(
                    code,
                    Some(Code::ServerShutdown | Code::ServerError | Code::StoreUnreachable)
                ) {
                    End::Lost {
                        code: ack.code,
                        reason: ack.message,
                    }
                } else {
                    End::Final {
                        code: ack.code,
                        reason: ack.message,
                    }
                };
                Err(end)
            }
            Some(Body::Disconnect(d)) => Err(disconnect_end(state, d)),
            _ => Err(lost("unexpected frame during the handshake")),
        };
    }
}

/// WebSocket settings. The library's default 128 KiB read buffer is zero-filled before every
/// read, which costs more than the read itself for small frames; 8 KiB holds many frames.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

/// Opens the WebSocket from a chosen local address (a load generator spreads its connections
/// over many source addresses so it is not limited by one address's ephemeral ports).
async fn connect_from(
    local: std::net::IpAddr,
    url: String,
    tls: tokio_tungstenite::Connector,
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::Error;
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .unwrap_or_default()
        .to_string();
    let remote = tokio::net::lookup_host(&authority)
        .await
        .map_err(Error::Io)?
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .ok_or_else(|| Error::Io(std::io::Error::other("no address of the matching family")))?;
    let socket = if local.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(Error::Io)?;
    socket
        .bind(std::net::SocketAddr::new(local, 0))
        .map_err(Error::Io)?;
    let stream = socket.connect(remote).await.map_err(Error::Io)?;
    stream.set_nodelay(true).map_err(Error::Io)?;
    tokio_tungstenite::client_async_tls_with_config(url, stream, Some(ws_config()), Some(tls)).await
}

fn disconnect_end(state: &mut State, d: v1::Disconnect) -> End {
    if d.code == Code::StoreUnreachable.as_u32() {
        // This node cannot reach its database: the next attempt goes to the next node.
        state.server = state.server.wrapping_add(1);
    }
    if d.reconnect {
        End::Lost {
            code: d.code,
            reason: d.message,
        }
    } else {
        End::Final {
            code: d.code,
            reason: d.message,
        }
    }
}

/// Runs one established connection until it ends.
async fn session(
    state: &mut State,
    mut ws: Ws,
    ack: &v1::ConnAck,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> End {
    let encoding = state.config.encoding;
    state.user_id = ack.user_id.clone();
    if state.cursor.is_none() {
        state.cursor = Some(ack.cursor);
    }
    // Whatever the last connection left unacknowledged is confirmed below if the server is
    // behind.
    state.confirm_due = None;
    state.unconfirmed = 0;
    // Entries held ahead of a gap from the last connection stay: sync fills the gap.
    // Chatrooms are joined again first (the server handles a connection's frames in order),
    // so resent chatroom messages find their sender a member.
    let mut rooms: Vec<(String, u64)> = state.rooms.iter().map(|(r, s)| (r.clone(), *s)).collect();
    rooms.sort();
    for (room, after_seq) in rooms {
        state.next_query_id = state.next_query_id.wrapping_add(1).max(FIRST_QUERY_ID);
        let id = state.next_query_id;
        let frame = codec::frame(Body::Query(v1::Query {
            query_id: id,
            body: Some(v1::query::Body::JoinChatroom(v1::JoinChatroom {
                chatroom_id: room.clone(),
                recent: 0,
                after_seq,
            })),
        }));
        state.room_queries.insert(id, RoomQuery::Rejoin(room));
        if let Err(e) = send_frame(&mut ws, &frame, encoding).await {
            return lost(e);
        }
    }
    // Sends still waiting for a PUBACK go again, flagged dup, with their client message ids.
    let mut ids: Vec<u32> = state.pending.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        if let Err(e) = state.write_publish(&mut ws, id, true).await {
            return lost(e);
        }
    }
    let mut syncing = false;
    let mut query_id = 0u32;
    // The CONNACK's inbox seq was read after the server registered this connection: anything
    // newer is pushed. So a device already that far along has nothing to sync.
    let cursor = state.cursor.unwrap_or(0);
    let behind = cursor < ack.inbox_seq;
    // If the server's record of this device is behind (an acknowledgement was lost with the last
    // connection), bring it up to date.
    if state.auto_ack && cursor > ack.cursor {
        let con = codec::frame(Body::Querycon(v1::QueryCon {
            query_id: 0,
            inbox_seq: cursor,
        }));
        if let Err(e) = send_frame(&mut ws, &con, encoding).await {
            return lost(e);
        }
    }
    if (behind || !state.ahead.is_empty())
        && let Err(e) = start_sync(state, &mut ws, &mut syncing, &mut query_id).await
    {
        return lost(e);
    }

    // Watch again what the last connection watched; the answer is not awaited.
    if !state.watching.is_empty() {
        state.next_query_id = state.next_query_id.wrapping_add(1).max(FIRST_QUERY_ID);
        let frame = codec::frame(Body::Query(v1::Query {
            query_id: state.next_query_id,
            body: Some(v1::query::Body::SubscribePresence(v1::SubscribePresence {
                user_ids: state.watching.clone(),
            })),
        }));
        if let Err(e) = send_frame(&mut ws, &frame, encoding).await {
            return lost(e);
        }
    }
    let heartbeat = Duration::from_millis(u64::from(ack.heartbeat_ms.max(100)));
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut last_inbound = Instant::now();
    loop {
        tokio::select! {
            msg = ws.next() => {
                last_inbound = Instant::now();
                let frame = match msg {
                    None => return lost("connection closed"),
                    Some(Err(e)) => return lost(e),
                    Some(Ok(m)) => match decode(m) {
                        None => continue,
                        Some(Ok(f)) => f,
                        Some(Err(e)) => return lost(format!("undecodable frame from server: {e}")),
                    },
                };
                match handle(state, &mut ws, frame, &mut syncing, &mut query_id).await {
                    Ok(None) => {}
                    Ok(Some(end)) => return end,
                    Err(e) => return lost(e),
                }
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else {
                    let _ = ws.close(None).await;
                    return End::Closed;
                };
                match cmd {
                    Command::Send(out, reply) => {
                        let id = state.enqueue(out, reply);
                        if let Err(e) = state.write_publish(&mut ws, id, false).await {
                            return lost(e);
                        }
                    }
                    Command::Close(reply) => {
                        if state.confirm_due.is_some() {
                            let _ = confirm(state, &mut ws).await;
                        }
                        let bye = codec::frame(Body::Disconnect(v1::Disconnect {
                            code: Code::ClientDisconnect.as_u32(),
                            message: String::new(),
                            reconnect: false,
                        }));
                        let _ = send_frame(&mut ws, &bye, encoding).await;
                        let _ = ws.close(None).await;
                        state.fail_pending(Code::ClientDisconnect.as_u32(), "client closed");
                        let _ = reply.send(());
                        return End::Closed;
                    }
                    Command::Query(body, reply) => {
                        state.next_query_id = state.next_query_id.wrapping_add(1).max(FIRST_QUERY_ID);
                        let id = state.next_query_id;
                        match &body {
                            v1::query::Body::JoinChatroom(j) => {
                                state.room_queries.insert(id, RoomQuery::Join(j.chatroom_id.clone()));
                            }
                            v1::query::Body::QuitChatroom(q) => {
                                state.room_queries.insert(id, RoomQuery::Quit(q.chatroom_id.clone()));
                            }
                            _ => {}
                        }
                        let frame = codec::frame(Body::Query(v1::Query {
                            query_id: id,
                            body: Some(body),
                        }));
                        state.queries.insert(id, reply);
                        if let Err(e) = send_frame(&mut ws, &frame, encoding).await {
                            return lost(e);
                        }
                    }
                    Command::SendStatus(send) => {
                        let frame = v1::Frame {
                            body: Some(Body::Publish(v1::Publish {
                                packet_id: 0,
                                body: Some(v1::publish::Body::Send(send)),
                            })),
                            qos: 0,
                            dup: false,
                        };
                        if let Err(e) = send_frame(&mut ws, &frame, encoding).await {
                            return lost(e);
                        }
                    }
                    Command::Watch(users) => state.watching = users,
                    Command::Drop => return lost("connection dropped by the application"),
                    Command::Ack(seq) => {
                        let ack = codec::frame(Body::Puback(v1::PubAck {
                            inbox_seq: seq,
                            ..Default::default()
                        }));
                        if let Err(e) = send_frame(&mut ws, &ack, encoding).await {
                            return lost(e);
                        }
                    }
                    other => state.offline_command(other),
                }
            }
            _ = tokio::time::sleep_until(state.confirm_due.unwrap_or_else(Instant::now)),
                if state.confirm_due.is_some() =>
            {
                if let Err(e) = confirm(state, &mut ws).await {
                    return lost(e);
                }
            }
            _ = ping.tick() => {
                if last_inbound.elapsed() >= heartbeat * 3 {
                    return lost("no frame from the server for 3 heartbeat intervals");
                }
                let frame = codec::frame(Body::Pingreq(v1::PingReq {}));
                if let Err(e) = send_frame(&mut ws, &frame, encoding).await {
                    return lost(e);
                }
            }
        }
    }
}

/// Acknowledges every entry up to the cursor with one QUERYCON.
async fn confirm(state: &mut State, ws: &mut Ws) -> Result<(), WriteError> {
    state.confirm_due = None;
    state.unconfirmed = 0;
    let Some(cursor) = state.cursor else {
        return Ok(());
    };
    let con = codec::frame(Body::Querycon(v1::QueryCon {
        query_id: 0,
        inbox_seq: cursor,
    }));
    send_frame(ws, &con, state.config.encoding).await
}

async fn start_sync(
    state: &mut State,
    ws: &mut Ws,
    syncing: &mut bool,
    query_id: &mut u32,
) -> Result<(), WriteError> {
    *syncing = true;
    *query_id = query_id.wrapping_add(1);
    let frame = codec::frame(Body::Query(v1::Query {
        query_id: *query_id,
        body: Some(v1::query::Body::Sync(v1::SyncInbox {
            after: state.cursor.unwrap_or(0),
            limit: state.config.sync_page,
        })),
    }));
    send_frame(ws, &frame, state.config.encoding).await
}

/// Handles one frame from the server. `Ok(Some(end))` ends the connection.
async fn handle(
    state: &mut State,
    ws: &mut Ws,
    frame: v1::Frame,
    syncing: &mut bool,
    query_id: &mut u32,
) -> Result<Option<End>, WriteError> {
    let encoding = state.config.encoding;
    match frame.body {
        Some(Body::Publish(p)) => {
            let Some(v1::publish::Body::Message(m)) = p.body else {
                return Ok(None);
            };
            if frame.qos == 0 && m.conversation_type == tidings_proto::conversation_type::CHATROOM {
                state.room_item(Message::from(m)).await;
                return Ok(None);
            }
            if frame.qos == 0 {
                // A status message (typing, presence): not an inbox entry, nothing to
                // acknowledge.
                let m = Message::from(m);
                let event = match crate::conversations::presence_of(&m) {
                    Some(p) => Event::Presence(p),
                    None => Event::Transient(m),
                };
                state.emit(event).await;
                return Ok(None);
            }
            if frame.dup {
                state.stats.dup_flagged += 1;
            }
            let seq = m.inbox_seq;
            let repeat = state.cursor.is_some_and(|c| seq <= c);
            state.offer_message(m);
            let presented = state.flush().await;
            if state.auto_ack {
                // Acknowledge what was presented, and again a repeat of something presented
                // earlier (its first acknowledgement may have been lost): the cursor covers
                // both.
                let n = presented.len() + usize::from(repeat);
                if n > 0 {
                    state.unconfirmed += n;
                    if state.unconfirmed >= CONFIRM_BATCH {
                        confirm(state, ws).await?;
                    } else if state.confirm_due.is_none() {
                        state.confirm_due = Some(Instant::now() + CONFIRM_DELAY);
                    }
                }
            }
            if !state.ahead.is_empty() && !*syncing {
                // A gap below what arrived: fetch it.
                start_sync(state, ws, syncing, query_id).await?;
            }
        }
        // This node cannot store anything now: the message stays pending, and is sent again
        // (with its client message id) over a connection to the next node.
        Some(Body::Puback(ack))
            if ack.code == Code::StoreUnreachable.as_u32()
                && state.pending.contains_key(&ack.packet_id) =>
        {
            state.server = state.server.wrapping_add(1);
            return Ok(Some(End::Lost {
                code: ack.code,
                reason: ack.message,
            }));
        }
        Some(Body::Puback(ack)) => {
            if let Some(p) = state.pending.remove(&ack.packet_id) {
                if ack.code == 0 {
                    state.remember(&ack.uid);
                    if ack.inbox_seq > 0 {
                        state.offer(ack.inbox_seq, None);
                        state.flush().await;
                    }
                    let _ = p.reply.send(Ok(Sent {
                        uid: ack.uid,
                        seq: ack.seq,
                        sent_time: ack.sent_time,
                        inbox_seq: ack.inbox_seq,
                        client_msg_id: p.frame.client_msg_id,
                        replaced_content: (ack.notice != 0).then_some(ack.content),
                        notice: ack.notice,
                    }));
                } else {
                    let _ = p.reply.send(Err(ClientError::Refused {
                        code: ack.code,
                        message: ack.message,
                    }));
                }
            }
        }
        Some(Body::Queryack(q)) => {
            let q = match state.room_queries.remove(&q.query_id) {
                Some(RoomQuery::Rejoin(room)) => {
                    state.rejoined(room, q).await;
                    return Ok(None);
                }
                Some(RoomQuery::Join(room)) if q.code == 0 => {
                    let seq = q.chatrooms.first().map_or(0, |c| c.seq);
                    state.rooms.insert(room, seq);
                    q
                }
                Some(RoomQuery::Quit(room)) if q.code == 0 => {
                    state.rooms.remove(&room);
                    q
                }
                _ => q,
            };
            if let Some(reply) = state.queries.remove(&q.query_id) {
                let _ = reply.send(if q.code == 0 {
                    Ok(q)
                } else {
                    Err(ClientError::Refused {
                        code: q.code,
                        message: q.message,
                    })
                });
                return Ok(None);
            }
            if q.query_id != *query_id {
                return Ok(None);
            }
            if q.code != 0 {
                // Reconnecting retries the sync after the backoff.
                return Ok(Some(End::Lost {
                    code: q.code,
                    reason: format!("sync failed: {}", q.message),
                }));
            }
            for m in q.messages {
                state.offer_message(m);
            }
            state.flush().await;
            // Confirm after every page, even an empty one: it also tells a new connection how far
            // this device got, if an acknowledgement was lost with the previous connection.
            if state.auto_ack
                && let Some(cursor) = state.cursor
            {
                let con = codec::frame(Body::Querycon(v1::QueryCon {
                    query_id: q.query_id,
                    inbox_seq: cursor,
                }));
                send_frame(ws, &con, encoding).await?;
                state.confirm_due = None;
                state.unconfirmed = 0;
            }
            if q.has_more {
                start_sync(state, ws, syncing, query_id).await?;
            } else {
                *syncing = false;
                // Whatever is still held ahead is above the newest entry the server had when it
                // answered; pushes will fill it, or the next push triggers another sync.
            }
        }
        Some(Body::Disconnect(d)) => return Ok(Some(disconnect_end(state, d))),
        Some(Body::Connack(ack)) => {
            tracing::warn!(code = ack.code, message = %ack.message, "unexpected CONNACK");
        }
        Some(Body::Pingresp(_)) => {}
        _ => {}
    }
    Ok(None)
}

impl State {
    /// Hands an event to the application, waiting while the stream is full, unless the
    /// application is closing the client.
    async fn emit(&self, event: Event) {
        // Once the application is closing, nothing more is handed over: an event dropped for
        // closing is never followed by a later one.
        if *self.closing.borrow() {
            return;
        }
        let mut closing = self.closing.clone();
        tokio::select! {
            // An error means the application dropped the stream: nothing more to tell it.
            _ = self.events.send(event) => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    }

    /// Presents an item of a chatroom's stream once, in seq order; items of rooms this client is
    /// not in (any more) are dropped.
    async fn room_item(&mut self, m: Message) {
        let (room, event) = crate::chatrooms::event_of(m);
        let Some(last) = self.rooms.get_mut(&room) else {
            return;
        };
        // A gap marker's range may hold items that were kept and come after it: it does not
        // move the position.
        let seq = match &event {
            ChatroomEvent::Message(m) => m.seq,
            ChatroomEvent::Notice(n) => n.seq,
            ChatroomEvent::Gap(_) | ChatroomEvent::Left { .. } => 0,
        };
        if seq != 0 {
            if seq <= *last {
                self.stats.chatroom_repeats += 1;
                return;
            }
            *last = seq;
        }
        // Kicked, or the room is gone: this connection is out of it.
        let out = match &event {
            ChatroomEvent::Notice(n)
                if n.operation == "kick" && n.user_ids.contains(&self.user_id) =>
            {
                Some(Code::KickedFromChatroom)
            }
            ChatroomEvent::Notice(n) if n.operation == "destroy" => Some(Code::ChatroomNotFound),
            _ => None,
        };
        self.emit(Event::Chatroom(event)).await;
        if let Some(code) = out {
            self.rooms.remove(&room);
            self.emit(Event::Chatroom(ChatroomEvent::Left {
                chatroom_id: room,
                code: code.as_u32(),
            }))
            .await;
        }
    }

    /// Takes the answer to joining a room again after a reconnect: the messages after the last
    /// seq presented come as events; a refusal takes the room out.
    async fn rejoined(&mut self, room: String, q: v1::QueryAck) {
        if q.code != 0 {
            if self.rooms.remove(&room).is_some() {
                self.emit(Event::Chatroom(ChatroomEvent::Left {
                    chatroom_id: room,
                    code: q.code,
                }))
                .await;
            }
            return;
        }
        // A room made anew (the server restarted, or the room ended and a join made it again)
        // numbers its items from 1 again: follow it from where it is.
        if let (Some(last), Some(c)) = (self.rooms.get_mut(&room), q.chatrooms.first())
            && c.seq < *last
        {
            *last = c.seq;
        }
        for m in q.messages {
            self.room_item(Message::from(m)).await;
        }
        if let (Some(last), Some(c)) = (self.rooms.get_mut(&room), q.chatrooms.first()) {
            *last = (*last).max(c.seq);
        }
    }

    fn remember(&mut self, uid: &str) -> bool {
        if !self.seen_uids.insert(uid.to_string()) {
            return false;
        }
        self.seen_order.push_back(uid.to_string());
        if self.seen_order.len() > DEDUPE_CAPACITY
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen_uids.remove(&old);
        }
        true
    }

    /// Takes a message from a push or a sync. This device's own message, still waiting for its
    /// PUBACK, completes that send instead of being presented.
    fn offer_message(&mut self, m: v1::Message) {
        if m.sender_id == self.user_id
            && let Some(id) = self
                .pending
                .iter()
                .find(|(_, p)| p.frame.client_msg_id == m.client_msg_id)
                .map(|(id, _)| *id)
            && let Some(p) = self.pending.remove(&id)
        {
            self.remember(&m.uid);
            let _ = p.reply.send(Ok(Sent {
                uid: m.uid,
                seq: m.seq,
                sent_time: m.sent_time,
                inbox_seq: m.inbox_seq,
                client_msg_id: m.client_msg_id,
                // The stored message itself: what it holds is what was stored.
                replaced_content: None,
                notice: 0,
            }));
            self.offer(m.inbox_seq, None);
            return;
        }
        self.offer(m.inbox_seq, Some(m.into()));
    }

    /// Takes an entry at inbox position `seq`; entries at or below the cursor are duplicates.
    fn offer(&mut self, seq: u64, message: Option<Message>) {
        let cursor = self.cursor.unwrap_or(0);
        if seq <= cursor || self.ahead.contains_key(&seq) {
            if message.is_some() {
                self.stats.duplicates_dropped += 1;
            }
            return;
        }
        self.ahead.insert(seq, message);
    }

    /// Presents every entry that continues the cursor without a gap; returns their positions.
    async fn flush(&mut self) -> Vec<u64> {
        let mut presented = Vec::new();
        loop {
            let next = self.cursor.unwrap_or(0) + 1;
            let Some(entry) = self.ahead.remove(&next) else {
                break;
            };
            self.cursor = Some(next);
            if let Some(m) = entry {
                if self.remember(&m.uid) {
                    let event = crate::conversations::event_of(&m).unwrap_or(Event::Message(m));
                    self.emit(event).await;
                } else {
                    self.stats.duplicates_dropped += 1;
                }
                presented.push(next);
            }
        }
        presented
    }

    fn enqueue(&mut self, out: Outgoing, reply: oneshot::Sender<Result<Sent, ClientError>>) -> u32 {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            if self.next_packet_id != 0 && !self.pending.contains_key(&self.next_packet_id) {
                break;
            }
        }
        let frame = v1::Send {
            client_msg_id: out.client_msg_id.unwrap_or_else(crate::new_client_msg_id),
            conversation_type: out.conversation_type,
            target_id: out.target_id,
            msg_type: out.msg_type,
            content: out.content,
            push_text: out.push_text,
            push_data: out.push_data,
            uncounted: out.uncounted,
            transient: false,
            mentioned_user_ids: out.mentions,
            mention_all: out.mention_all,
            directed_user_ids: out.directed_to,
            priority: out.priority.wire(),
        };
        self.pending
            .insert(self.next_packet_id, PendingSend { frame, reply });
        self.next_packet_id
    }

    async fn write_publish(
        &mut self,
        ws: &mut Ws,
        id: u32,
        resend: bool,
    ) -> Result<(), WriteError> {
        let Some(p) = self.pending.get_mut(&id) else {
            return Ok(());
        };
        if p.reply.is_closed() {
            // Nobody waits for it any more; a resend would still be deduplicated by the server,
            // but there is no one to tell.
            self.pending.remove(&id);
            return Ok(());
        }
        if resend {
            self.stats.resent_publishes += 1;
        }
        let frame = v1::Frame {
            body: Some(Body::Publish(v1::Publish {
                packet_id: id,
                body: Some(v1::publish::Body::Send(p.frame.clone())),
            })),
            qos: 1,
            dup: resend,
        };
        match ws_message(&frame, self.config.encoding) {
            Ok(message) => Ok(ws.send(message).await?),
            // Resending it would fail again: the send is refused, and the connection goes on.
            Err(e) => {
                if let Some(p) = self.pending.remove(&id) {
                    let _ = p.reply.send(Err(ClientError::Unencodable(e.to_string())));
                }
                Ok(())
            }
        }
    }

    /// Handles a command while no connection is up (or one that needs no connection).
    fn offline_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send(out, reply) => {
                self.enqueue(out, reply);
            }
            Command::SetAutoAck(on) => self.auto_ack = on,
            Command::Stats(reply) => {
                let _ = reply.send(self.stats);
            }
            Command::Query(_, reply) => {
                let _ = reply.send(Err(ClientError::NotConnected));
            }
            // At most once: a status message made while offline is dropped.
            Command::SendStatus(_) => {}
            Command::Watch(users) => self.watching = users,
            // An acknowledgement made while offline is lost; the entry is already presented, so
            // the server re-sending it later only costs a dropped duplicate.
            Command::Drop | Command::Ack(_) => {}
            Command::Close(reply) => {
                let _ = reply.send(());
            }
        }
    }

    fn fail_pending(&mut self, code: u32, reason: &str) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(ClientError::Refused {
                code,
                message: reason.to_string(),
            }));
        }
    }
}
