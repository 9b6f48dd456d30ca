//! WebSocket connections that speak a seed dialect (`tidings-dialects`). One driver runs every
//! dialect: it reads frames until the dialect has opened an engine session (within the
//! handshake deadline), then a reader loop hands frames to the dialect and runs its steps
//! against the session, and a writer task turns the session's outbox into the dialect's frames.
//! The dialect's state is shared by both behind a mutex that is never held across an await.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tidings_dialects::{Dialect, Step, WireIn, WireOut};
use tidings_engine::{ConnectRequest, Outbound, Session, UserOut};
use tidings_proto::Code;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::AppState;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// Path of the seed-000 dialect (protobuf, binary frames).
pub const SEED000_PATH: &str = "/ws";
/// Path of the seed-002 dialect (rooms); the token is the query's `token`.
pub const SEED002_PATH: &str = "/ws/room";
/// Path of the seed-003 dialect (private messages); the last segment is the user's token.
pub const SEED003_PATH: &str = "/imserver/{token}";

/// Frames the reader may queue for the writer (answers to the client's own frames).
const DIRECT_QUEUE: usize = 256;

pub async fn seed000(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let dialect = tidings_dialects::seed000::Seed000::new();
    upgrade(ws, state, dialect)
}

#[derive(serde::Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn seed002(
    ws: WebSocketUpgrade,
    Query(q): Query<TokenQuery>,
    State(state): State<AppState>,
) -> Response {
    let heartbeat = state.config.room_heartbeat.as_millis() as u64;
    let dialect = tidings_dialects::seed002::Seed002::new(q.token, heartbeat);
    upgrade(ws, state, dialect)
}

pub async fn seed003(
    ws: WebSocketUpgrade,
    Path(token): Path<String>,
    State(state): State<AppState>,
) -> Response {
    let dialect = tidings_dialects::seed003::Seed003::new(token);
    upgrade(ws, state, dialect)
}

fn upgrade<D: Dialect>(ws: WebSocketUpgrade, state: AppState, dialect: D) -> Response {
    let limit = state.config.max_frame_bytes;
    ws.read_buffer_size(1024)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            let tracker = state.connections.clone();
            let span = tracing::info_span!(
                "dialect",
                session = tracing::field::Empty,
                user = tracing::field::Empty
            );
            tracker.track_future(run(socket, state, dialect).instrument(span))
        })
}

fn message(frame: WireOut) -> Message {
    match frame {
        WireOut::Text(t) => Message::Text(t.into()),
        WireOut::Binary(b) => Message::Binary(b.into()),
    }
}

/// What a read gave.
enum Read {
    Frame(Message),
    Control,
    Closed,
}

async fn read(stream: &mut Stream) -> Read {
    match stream.next().await {
        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => Read::Frame(m),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Read::Control,
        Some(Ok(Message::Close(_))) | None => Read::Closed,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "websocket read failed");
            Read::Closed
        }
    }
}

fn inbound<D: Dialect>(dialect: &Mutex<D>, m: &Message) -> Vec<Step> {
    let mut d = dialect.lock().unwrap_or_else(|e| e.into_inner());
    match m {
        Message::Text(t) => d.inbound(WireIn::Text(t.as_str())),
        Message::Binary(b) => d.inbound(WireIn::Binary(b)),
        _ => Vec::new(),
    }
}

fn lock<D>(dialect: &Mutex<D>) -> std::sync::MutexGuard<'_, D> {
    dialect.lock().unwrap_or_else(|e| e.into_inner())
}

async fn close(sink: &mut Sink, timeout: Duration) {
    let _ = tokio::time::timeout(
        timeout,
        sink.send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        }))),
    )
    .await;
}

async fn run<D: Dialect>(socket: WebSocket, state: AppState, dialect: D) {
    let (mut sink, mut stream) = socket.split();
    let dialect = Arc::new(Mutex::new(dialect));
    let config = &state.config;
    let deadline = Instant::now() + config.handshake_timeout;

    // The handshake: steps run with the socket at hand until one opens a session.
    let mut steps: VecDeque<Step> = lock(&dialect).open().into();
    let session = loop {
        match handshake(&state, &dialect, &mut sink, &mut steps).await {
            Handshake::Open(session) => break session,
            Handshake::Closed => return,
            Handshake::More => {}
        }
        let next = tokio::select! {
            r = tokio::time::timeout_at(deadline, read(&mut stream)) => r,
            _ = state.stop.cancelled() => Ok(Read::Closed),
        };
        match next {
            Err(_) => {
                let goodbye = lock(&dialect).goodbye(Code::HandshakeTimeout);
                if let Some(frame) = goodbye {
                    let _ =
                        tokio::time::timeout(config.write_timeout, sink.send(message(frame))).await;
                }
                close(&mut sink, config.write_timeout).await;
                return;
            }
            Ok(Read::Closed) => return,
            Ok(Read::Control) => {}
            Ok(Read::Frame(m)) => steps.extend(inbound(&dialect, &m)),
        }
    };
    let span = tracing::Span::current();
    span.record("session", session.id());
    span.record("user", session.user_id());

    let session = Arc::new(session);
    let (direct, direct_rx) = mpsc::channel(DIRECT_QUEUE);
    let ctx = Ctx {
        state: state.clone(),
        session: session.clone(),
        dialect: dialect.clone(),
        closing: Arc::new(AtomicBool::new(false)),
    };
    // Steps the handshake left (after the CONNECT's answer) run as the reader's.
    let mut reader_out = ReaderOut(direct);
    let leftover: Vec<Step> = steps.into();
    let mut writer = state
        .egress
        .spawn(write_loop(ctx.clone(), sink, direct_rx).instrument(tracing::Span::current()));
    if ctx.run(leftover, &mut reader_out).await.is_err() {
        session.end(Code::ClientDisconnect);
    }

    let heartbeat = state.engine.config().heartbeat;
    let silence = lock(&dialect)
        .silence_limit_ms()
        .map_or(heartbeat * 3, Duration::from_millis);
    let ack_timeout = state.engine.config().ack_timeout;
    let tick = (silence.min(ack_timeout) / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            r = read(&mut stream) => {
                last_seen = Instant::now();
                match r {
                    Read::Frame(m) => {
                        let steps = inbound(&dialect, &m);
                        if Box::pin(ctx.run(steps, &mut reader_out)).await.is_err() {
                            break;
                        }
                    }
                    Read::Control => {}
                    Read::Closed => {
                        session.end(Code::ClientDisconnect);
                        break;
                    }
                }
            }
            _ = ticker.tick() => {
                if last_seen.elapsed() >= silence {
                    tracing::debug!("heartbeat timeout");
                    session.end(Code::HeartbeatTimeout);
                    break;
                }
                session.resend_due();
            }
            _ = state.stop.cancelled() => break,
            _ = &mut writer => {
                session.end(Code::ClientDisconnect);
                return;
            }
        }
    }
    if let Err(e) = writer.await {
        tracing::warn!(error = %e, "writer task failed");
    }
}

enum Handshake {
    Open(Session),
    More,
    Closed,
}

/// Runs handshake steps until a session opens (the steps after it stay in `steps`), the
/// connection must close, or more frames are needed.
async fn handshake<D: Dialect>(
    state: &AppState,
    dialect: &Mutex<D>,
    sink: &mut Sink,
    steps: &mut VecDeque<Step>,
) -> Handshake {
    let timeout = state.config.write_timeout;
    let mut opened = None;
    while let Some(step) = steps.pop_front() {
        match step {
            Step::Send(frame) => {
                let sent = tokio::time::timeout(timeout, sink.send(message(frame))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return Handshake::Closed;
                }
            }
            Step::Close(_) => {
                close(sink, timeout).await;
                return Handshake::Closed;
            }
            Step::Connect(request) if opened.is_none() => {
                let request = ConnectRequest {
                    platform: request.platform.chars().take(32).collect(),
                    ..request
                };
                let outcome = state.engine.connect(request).await;
                let more = match &outcome {
                    Ok((_, info)) => lock(dialect).connected(Ok(info)),
                    Err(refusal) => lock(dialect).connected(Err(refusal)),
                };
                // The connect's answer goes first, then whatever was queued after the CONNECT.
                for s in more.into_iter().rev() {
                    steps.push_front(s);
                }
                if let Ok((session, _)) = outcome {
                    opened = Some(session);
                    // Answers to the CONNECT are written here, before the writer starts, so
                    // they precede every push; everything else waits for the session's tasks.
                    while let Some(Step::Send(_)) = steps.front() {
                        let Some(Step::Send(frame)) = steps.pop_front() else {
                            break;
                        };
                        let sent = tokio::time::timeout(timeout, sink.send(message(frame))).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            if let Some(s) = opened.take() {
                                s.end(Code::ClientDisconnect);
                            }
                            return Handshake::Closed;
                        }
                    }
                    break;
                }
            }
            // Nothing else can be done before a session exists; the dialect answers such
            // frames itself.
            _ => {}
        }
    }
    match opened {
        Some(session) => Handshake::Open(session),
        None => Handshake::More,
    }
}

/// Where a step's frames go.
trait Out {
    /// Queues a frame; `Err` when the connection is gone.
    async fn send(&mut self, frame: WireOut) -> Result<(), ()>;
    /// Writes out what is queued.
    async fn flush(&mut self) -> Result<(), ()>;
}

/// The reader's frames go to the writer.
struct ReaderOut(mpsc::Sender<WireOut>);

impl Out for ReaderOut {
    async fn send(&mut self, frame: WireOut) -> Result<(), ()> {
        self.0.send(frame).await.map_err(|_| ())
    }
    async fn flush(&mut self) -> Result<(), ()> {
        Ok(())
    }
}

/// The writer's frames go to the socket.
struct WriterOut {
    sink: Sink,
    timeout: Duration,
}

impl Out for WriterOut {
    async fn send(&mut self, frame: WireOut) -> Result<(), ()> {
        match tokio::time::timeout(self.timeout, self.sink.feed(message(frame))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
    async fn flush(&mut self) -> Result<(), ()> {
        match tokio::time::timeout(self.timeout, self.sink.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

/// What both tasks of a connection share.
struct Ctx<D> {
    state: AppState,
    session: Arc<Session>,
    dialect: Arc<Mutex<D>>,
    /// The dialect ended the connection itself (and said why): no goodbye follows.
    closing: Arc<AtomicBool>,
}

impl<D> Clone for Ctx<D> {
    fn clone(&self) -> Self {
        Ctx {
            state: self.state.clone(),
            session: self.session.clone(),
            dialect: self.dialect.clone(),
            closing: self.closing.clone(),
        }
    }
}

impl<D: Dialect> Ctx<D> {
    /// Runs steps in order. `Err` when the connection is ending.
    async fn run(&self, steps: Vec<Step>, out: &mut impl Out) -> Result<(), ()> {
        let mut queue: VecDeque<Step> = steps.into();
        let session = &self.session;
        while let Some(step) = queue.pop_front() {
            match step {
                Step::Send(frame) => out.send(frame).await?,
                Step::Connect(_) => session.already_connected(),
                Step::Publish { packet_id, send } => session.publish(packet_id, send).await,
                Step::Ack(seq) => {
                    // The seed may have no acknowledgement of its own: what it was sent must
                    // have left before it counts as delivered.
                    out.flush().await?;
                    session.ack(seq);
                }
                Step::Sync {
                    query_id,
                    after,
                    limit,
                } => session.sync(query_id, after, limit).await,
                Step::Chatroom { query_id, query } => session.chatroom_query(query_id, query).await,
                Step::ReadInbox(seqs) => {
                    if let Err(r) = session.read_inbox(&seqs).await {
                        tracing::debug!(code = r.code.as_u32(), "read confirmation failed");
                    }
                }
                Step::Users { tag, users } => {
                    let found = self.users(&users).await;
                    let more = lock(&self.dialect).users(tag, &found);
                    for s in more.into_iter().rev() {
                        queue.push_front(s);
                    }
                }
                Step::Close(code) => {
                    self.closing.store(true, Ordering::Relaxed);
                    out.flush().await?;
                    session.end(code);
                    return Err(());
                }
            }
        }
        Ok(())
    }

    async fn users(&self, users: &[String]) -> Vec<UserOut> {
        if users.is_empty() {
            return Vec::new();
        }
        match self.state.engine.users(users).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "user lookup failed");
                Vec::new()
            }
        }
    }
}

/// Drains the session's outbox (and the reader's answers) through the dialect to the socket.
async fn write_loop<D: Dialect>(ctx: Ctx<D>, sink: Sink, mut direct: mpsc::Receiver<WireOut>) {
    let timeout = ctx.state.config.write_timeout;
    let mut out = WriterOut { sink, timeout };
    let outbox = ctx.session.outbox();
    loop {
        let item = tokio::select! {
            biased;
            Some(frame) = direct.recv() => {
                if out.send(frame).await.is_err() || out.flush().await.is_err() {
                    return;
                }
                continue;
            }
            item = outbox.pop() => item,
        };
        let Some(item) = item else { return };
        if let Outbound::Disconnect(code) = item {
            let goodbye = lock(&ctx.dialect).goodbye(code);
            if code != Code::ClientDisconnect
                && !ctx.closing.load(Ordering::Relaxed)
                && let Some(frame) = goodbye
            {
                let _ = out.send(frame).await;
            }
            let _ = out.flush().await;
            close(&mut out.sink, timeout).await;
            return;
        }
        let wanted = lock(&ctx.dialect).profiles_for(&item);
        let profiles = ctx.users(&wanted).await;
        let steps = lock(&ctx.dialect).outbound(item, &profiles);
        if ctx.run(steps, &mut out).await.is_err() {
            // The socket failed or the dialect closed: the session's DISCONNECT follows.
            if out.flush().await.is_err() {
                return;
            }
            continue;
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}
