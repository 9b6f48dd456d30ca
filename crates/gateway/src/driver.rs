//! The one driver of every WebSocket connection, whatever its dialect (`tidings-dialects`: the
//! native protocol and the seeds). It reads frames until the dialect has opened an engine
//! session (within the handshake deadline), then a reader loop (this task) hands frames to the
//! dialect and runs its steps against the session, and a writer task drains the session's
//! outbox through the dialect to the socket, in batches with one flush each. Liveness
//! (`liveness.rs`), the connection's admission ticket and the close codes are handled here once.
//!
//! What is protocol-specific stays in the dialect: the entry points (`connection.rs` for the
//! native protocol, `dialect.rs` for the seeds) only configure the WebSocket and pick how the two
//! tasks share the dialect's state ([`Held`]): a dialect whose state changes after connecting
//! shares it behind a mutex never held across an await ([`Shared`]); the native protocol's state
//! is fixed once connected, so each task has a copy ([`Fixed`]) and no frame takes a lock.
//!
//! Must not depend on any one dialect, nor on the HTTP API's modules.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tidings_dialects::{Dialect, Receipt, Step, WireIn, WireOut};
use tidings_engine::{
    ConnectInfo, ConnectRequest, Engine, Outbound, Outbox, PushOutcome, PushSubscription,
    ReceiptWatch, Refusal, Session, UserOut,
};
use tidings_proto::Code;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use crate::AppState;
use crate::admission::Ticket;
use crate::direct::{ItemFrame, SocketWriter};
use crate::gate::Gate;
use crate::liveness::Silence;
use crate::metrics::Dialect as Label;
use crate::profiles::ProfileCache;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// Frames the reader may queue for the writer (a seed's answers to the client's own frames).
const DIRECT_QUEUE: usize = 256;
/// Messages of one connection whose receipts may be watched at once.
const MAX_WATCHES: usize = 1024;
/// The most group members a receipt report names.
const REPORT_MEMBERS: u32 = 500;
/// Outbound items written before one flush: what is queued goes out in as few writes as
/// possible.
const WRITE_BATCH: usize = 64;

/// How a connection's reader and writer reach its dialect.
pub(crate) trait Held: Clone + Send + Sync + 'static {
    type Dialect: Dialect;
    /// Whether a room's fan-out may frame the connection's room items itself (the dialect's
    /// frame of an item depends on nothing but the item and the fixed state).
    const DIRECT_ROOMS: bool;
    fn hold(dialect: Self::Dialect) -> Self;
    fn with<R>(&self, f: impl FnOnce(&mut Self::Dialect) -> R) -> R;
}

/// A dialect whose state both tasks change (a seed remembers a request when it reads it and
/// answers it when it writes), behind a mutex that is never held across an await.
pub(crate) type Shared<D> = Arc<Mutex<D>>;

impl<D: Dialect> Held for Arc<Mutex<D>> {
    type Dialect = D;
    const DIRECT_ROOMS: bool = false;
    fn hold(dialect: D) -> Self {
        Arc::new(Mutex::new(dialect))
    }
    fn with<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut self.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A dialect whose state no longer changes once the session is open (the native protocol's is
/// its encoding): each task works on a copy, so no frame waits for a lock.
#[derive(Clone)]
pub(crate) struct Fixed<D>(D);

impl<D: Dialect + Clone + Sync> Held for Fixed<D> {
    type Dialect = D;
    const DIRECT_ROOMS: bool = true;
    fn hold(dialect: D) -> Self {
        Fixed(dialect)
    }
    fn with<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut self.0.clone())
    }
}

/// Whether the dialect writes frames of its own from the reader (a seed's answers to a login
/// or a request), which then go to the writer through a queue of their own; the native
/// protocol's answers all come through the session's outbox, and it needs no such queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direct {
    Frames,
    None,
}

/// Serves an upgraded WebSocket (its limits already set by the entry point) with `dialect`.
/// With the socket's `gate` (a plain socket's), a chatroom's fan-out writes the connection's
/// room items to it directly while the writer is idle.
pub(crate) fn upgrade<H: Held>(
    ws: WebSocketUpgrade,
    state: AppState,
    dialect: H::Dialect,
    label: Label,
    direct: Direct,
    gate: Option<Arc<Gate>>,
) -> Response {
    let gate = gate.filter(|_| H::DIRECT_ROOMS);
    // The connection's place among the unauthenticated, which it leaves once a session opens.
    let ticket = crate::listener::current_ticket();
    ws.on_upgrade(move |socket| {
        let tracker = state.connections.clone();
        let span = tracing::info_span!(
            "conn",
            conn = state.connection_id(),
            dialect = label.name(),
            session = tracing::field::Empty,
            user = tracing::field::Empty
        );
        let run = run::<H>(socket, state, dialect, ticket, label, direct, gate);
        tracker.track_future(run.instrument(span))
    })
}

/// What a read gave.
enum Read {
    Text(Utf8Bytes),
    Binary(Bytes),
    /// A WebSocket control frame: activity, but nothing to handle.
    Control,
    /// A message above the WebSocket layer's limit, cut off by it (its rest is unread).
    TooLarge,
    Closed,
}

async fn read(stream: &mut Stream) -> Read {
    match stream.next().await {
        Some(Ok(Message::Text(t))) => Read::Text(t),
        Some(Ok(Message::Binary(b))) => Read::Binary(b),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Read::Control,
        Some(Ok(Message::Close(_))) | None => Read::Closed,
        Some(Err(e)) if too_large(&e) => Read::TooLarge,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "websocket read failed");
            Read::Closed
        }
    }
}

/// A frame the client sent, as the dialect reads it.
fn wire_in(read: &Read) -> Option<WireIn<'_>> {
    match read {
        Read::Text(t) => Some(WireIn::Text(t.as_str())),
        Read::Binary(b) => Some(WireIn::Binary(b)),
        _ => None,
    }
}

/// Whether a WebSocket read failed because the message was above the WebSocket layer's limit.
fn too_large(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(ws) = err.downcast_ref::<WsError>() {
            return matches!(ws, WsError::Capacity(_));
        }
        source = err.source();
    }
    false
}

/// The WebSocket close code that goes with ending a connection with `code`: 1009 (message too
/// big) for a frame too large, 1000 (normal) otherwise.
fn close_code(code: Code) -> u16 {
    if code == Code::FrameTooLarge {
        1009
    } else {
        1000
    }
}

/// Completes when the connection was closed to make room for others (never without a ticket).
async fn evicted(ticket: Option<&Ticket>) {
    match ticket {
        Some(t) => t.evicted().await,
        None => std::future::pending().await,
    }
}

/// Opens an engine session; every transport's CONNECT comes through here.
pub(crate) async fn connect(
    engine: &Engine,
    request: ConnectRequest,
) -> Result<(Session, ConnectInfo), Refusal> {
    let request = ConnectRequest {
        platform: request.platform.chars().take(32).collect(),
        ..request
    };
    engine.connect(request).await.inspect_err(|refusal| {
        tracing::debug!(code = refusal.code.as_u32(), "connect refused");
    })
}

/// Why running steps stopped.
enum Stop {
    /// The dialect closed the connection itself (and said why): no goodbye follows.
    Closing,
    /// The session ends with this code; the client is told with the dialect's goodbye.
    End(Code),
    /// The socket failed or the writer is gone.
    Gone,
}

/// Where a step's frames go.
trait Out: Send {
    /// Queues a frame.
    fn send(&mut self, frame: WireOut) -> impl Future<Output = Result<(), Stop>> + Send;
    /// Writes out what is queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), Stop>> + Send;
}

/// The reader's frames go to the writer.
struct ReaderOut(Option<mpsc::Sender<WireOut>>);

impl Out for ReaderOut {
    async fn send(&mut self, frame: WireOut) -> Result<(), Stop> {
        match &self.0 {
            Some(direct) => direct.send(frame).await.map_err(|_| Stop::Gone),
            None => {
                tracing::error!("a dialect without frames of its own wrote one from the reader");
                Err(Stop::End(Code::ServerError))
            }
        }
    }
    async fn flush(&mut self) -> Result<(), Stop> {
        Ok(())
    }
}

/// The writer's frames go to the socket. The caller bounds the writes with the write timeout:
/// the writer once per batch, since a timer per frame would cost more than the frame.
struct WriterOut {
    sink: Sink,
}

impl Out for WriterOut {
    async fn send(&mut self, frame: WireOut) -> Result<(), Stop> {
        let message = message(frame)?;
        self.sink.feed(message).await.map_err(|e| {
            tracing::debug!(error = %e, "websocket write failed");
            Stop::Gone
        })
    }
    async fn flush(&mut self) -> Result<(), Stop> {
        self.sink.flush().await.map_err(|e| {
            tracing::debug!(error = %e, "websocket write failed");
            Stop::Gone
        })
    }
}

/// A frame as a WebSocket message: what a dialect encoded is moved, not copied, and a shared
/// frame (a chatroom item) is the same bytes for every connection.
fn message(frame: WireOut) -> Result<Message, Stop> {
    Ok(match frame {
        WireOut::Text(t) => Message::Text(t.into()),
        WireOut::Binary(b) => Message::Binary(b.into()),
        WireOut::SharedBinary(b) => Message::Binary(b),
        WireOut::SharedText(b) => Message::Text(b.try_into().map_err(|e| {
            tracing::error!(error = %e, "a shared text frame is not UTF-8");
            Stop::End(Code::ServerError)
        })?),
    })
}

/// Writes the goodbye (if any) and the close frame that goes with `code`, within `timeout`.
async fn hang_up(out: &mut WriterOut, goodbye: Option<WireOut>, code: Code, timeout: Duration) {
    let closed = tokio::time::timeout(timeout, async {
        if let Some(frame) = goodbye {
            out.send(frame).await?;
        }
        let close = Message::Close(Some(CloseFrame {
            code: close_code(code),
            reason: "".into(),
        }));
        out.sink.send(close).await.map_err(|_| Stop::Gone)
    })
    .await;
    if !matches!(closed, Ok(Ok(()))) {
        tracing::debug!("the connection's last frames could not be written");
    }
}

/// Writes one frame and flushes it, within the write timeout; false if that failed.
async fn write_now(out: &mut WriterOut, frame: WireOut, timeout: Duration) -> bool {
    let sent = tokio::time::timeout(timeout, async {
        out.send(frame).await?;
        out.flush().await
    })
    .await;
    matches!(sent, Ok(Ok(())))
}

/// A connection whose session is open.
struct Opened<D> {
    out: WriterOut,
    stream: Stream,
    session: Session,
    dialect: D,
    /// Steps the dialect asked for after the one that opened the session (the login's answer).
    steps: VecDeque<Step>,
}

/// Serves one upgraded connection: the handshake, then the session.
///
/// The connection task's future is paid for by every idle connection, so it is kept small: an
/// `async` block rather than an `async fn` (whose future keeps each argument twice, as the
/// argument and as its binding in the body, for the whole connection), and the socket boxed
/// (a future keeps room for what it captured until it ends, even once that has moved out), the
/// box freed once the handshake is over.
fn run<H: Held>(
    socket: WebSocket,
    state: AppState,
    dialect: H::Dialect,
    ticket: Option<Ticket>,
    label: Label,
    direct: Direct,
    gate: Option<Arc<Gate>>,
) -> impl Future<Output = ()> {
    let socket = Box::new(socket);
    async move {
        let opened = {
            // Moved into this scope, so that its box is freed when the handshake ends.
            let socket = socket;
            // The handshake's future is large and lives only briefly: boxed, so that it too
            // does not make the long-lived task larger.
            Box::pin(handshake(*socket, &state, dialect, ticket.as_ref())).await
        };
        let Some(opened) = opened else {
            return;
        };
        if let Some(ticket) = &ticket {
            ticket.authenticated();
        }
        // The ticket stays held while the socket lives: its permit counts the connection.
        serve::<H>(opened, &state, label, direct, gate).await;
    }
}

/// Reads frames until the dialect has opened a session (within the handshake deadline), or
/// the connection ends.
async fn handshake<D: Dialect>(
    socket: WebSocket,
    state: &AppState,
    mut dialect: D,
    ticket: Option<&Ticket>,
) -> Option<Opened<D>> {
    let (sink, mut stream) = socket.split();
    let config = &state.config;
    let deadline = Instant::now() + config.handshake_timeout;
    let mut out = WriterOut { sink };
    // Until a session opens, the dialect's steps run with the socket at hand.
    let mut steps: VecDeque<Step> = dialect.open().into();
    loop {
        match before_session(state, &mut dialect, &mut out, &mut steps).await {
            Handshake::Open(session) => {
                return Some(Opened {
                    out,
                    stream,
                    session,
                    dialect,
                    steps,
                });
            }
            Handshake::Closed => return None,
            Handshake::More => {}
        }
        let next = tokio::select! {
            r = tokio::time::timeout_at(deadline, read(&mut stream)) => r.map_err(|_| Code::HandshakeTimeout),
            _ = state.stop.cancelled() => Err(Code::ServerShutdown),
            _ = evicted(ticket) => Err(Code::UnauthenticatedEvicted),
        };
        let next = match next {
            Ok(Read::TooLarge) => Err(Code::FrameTooLarge),
            other => other,
        };
        match next {
            Err(code) => {
                let goodbye = dialect.goodbye(code);
                hang_up(&mut out, goodbye, code, config.write_timeout).await;
                return None;
            }
            Ok(Read::Closed) => return None,
            Ok(Read::Control) => steps.extend(dialect.control()),
            Ok(read) => {
                if let Some(frame) = wire_in(&read) {
                    steps.extend(dialect.inbound(frame));
                }
            }
        }
    }
}

enum Handshake {
    Open(Session),
    More,
    Closed,
}

/// Runs the steps before a session exists until one opens it (what follows stays in `steps`),
/// the connection must close, or another frame is needed.
async fn before_session<D: Dialect>(
    state: &AppState,
    dialect: &mut D,
    out: &mut WriterOut,
    steps: &mut VecDeque<Step>,
) -> Handshake {
    let timeout = state.config.write_timeout;
    while let Some(step) = steps.pop_front() {
        match step {
            Step::Send(frame) => {
                let sent = write_now(out, frame, timeout).await;
                if !sent {
                    return Handshake::Closed;
                }
            }
            Step::Close(code) => {
                hang_up(out, None, code, timeout).await;
                return Handshake::Closed;
            }
            Step::End(code) => {
                tracing::debug!(
                    code = code.as_u32(),
                    "connection refused before its session"
                );
                let goodbye = dialect.goodbye(code);
                hang_up(out, goodbye, code, timeout).await;
                return Handshake::Closed;
            }
            Step::Connect(request) => {
                let outcome = connect(&state.engine, request).await;
                let more = match &outcome {
                    Ok((_, info)) => dialect.connected(Ok(info)),
                    Err(refusal) => dialect.connected(Err(refusal)),
                };
                // The connect's answer goes first, then whatever was queued after the CONNECT.
                for s in more.into_iter().rev() {
                    steps.push_front(s);
                }
                if let Ok((session, _)) = outcome {
                    return Handshake::Open(session);
                }
            }
            // Nothing else can be done before a session exists; a dialect answers such frames
            // itself.
            _ => {}
        }
    }
    Handshake::More
}

/// Serves a connection whose session is open until it ends.
async fn serve<H: Held>(
    opened: Opened<H::Dialect>,
    state: &AppState,
    label: Label,
    direct: Direct,
    gate: Option<Arc<Gate>>,
) {
    let Opened {
        mut out,
        mut stream,
        session,
        dialect,
        steps,
    } = opened;
    let _open = crate::metrics::Open::new(crate::metrics::Transport::Ws, label);
    let span = tracing::Span::current();
    span.record("session", session.id());
    span.record("user", session.user_id());
    let engine_config = state.engine.config();
    // A dialect with a heartbeat of its own (seed 002) drops a page after three of its
    // intervals of silence; the others after three of the server's.
    let interval = dialect
        .silence_limit_ms()
        .map_or(engine_config.heartbeat, |ms| Duration::from_millis(ms) / 3);

    let session = Arc::new(session);
    let (direct, direct_rx) = match direct {
        Direct::Frames => {
            let (tx, rx) = mpsc::channel(DIRECT_QUEUE);
            (Some(tx), Some(rx))
        }
        Direct::None => (None, None),
    };
    let ctx = Ctx {
        engine: state.engine.clone(),
        profiles: state.profiles.clone(),
        write_timeout: state.config.write_timeout,
        receipt_wait: state.config.receipt_wait,
        session: session.clone(),
        dialect: H::hold(dialect),
        aside: Arc::default(),
        direct: direct.clone(),
    };
    // What the dialect does as the session opens (the CONNACK, a login's answer, a first sync)
    // is written before the writer starts, so it precedes every push; a failed write ends the
    // session, whose DISCONNECT the writer then finds.
    let opening: Vec<Step> = steps.into();
    let opened = tokio::time::timeout(
        ctx.write_timeout,
        Box::pin(async {
            ctx.run(opening, &mut out).await?;
            out.flush().await
        }),
    )
    .await;
    if !matches!(opened, Ok(Ok(()))) {
        session.end(Code::ClientDisconnect);
    }
    // Everything written so far is out: from here a room's items may go around the writer.
    if let Some(gate) = &gate {
        let dialect = ctx.dialect.clone();
        let frame: ItemFrame = Box::new(move |item: &Outbound| -> Option<WireOut> {
            let steps = dialect.with(|d| d.outbound(item.clone(), &[]));
            let mut steps = steps.into_iter();
            match (steps.next(), steps.next()) {
                (Some(Step::Send(frame)), None) => Some(frame),
                _ => None,
            }
        });
        session
            .outbox()
            .set_direct_writer(Box::new(SocketWriter::new(gate.clone(), frame)));
    }
    // On the writers' own runtime: a large room wakes thousands of writers at once, and a client
    // frame read on this runtime must not queue behind them.
    // The reader asks the writer for a WebSocket Ping when the client has been silent.
    let (probe, probes) = mpsc::channel(1);
    let mut writer = state.egress.spawn(
        write_loop(ctx.clone(), out, direct_rx, probes, gate).instrument(tracing::Span::current()),
    );
    let mut reader_out = ReaderOut(direct);

    let mut silence = Silence::new(interval);
    let mut ticker = tokio::time::interval(silence.period(engine_config.ack_timeout));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = read(&mut stream) => {
                silence.seen();
                match r {
                    Read::Control => {}
                    Read::TooLarge => {
                        session.end(Code::FrameTooLarge);
                        break;
                    }
                    Read::Closed => {
                        session.end(Code::ClientDisconnect);
                        break;
                    }
                    read => {
                        let Some(frame) = wire_in(&read) else { continue };
                        let steps = ctx.dialect.with(|d| d.inbound(frame));
                        // Boxed: handling a frame is short-lived and its future large, and the
                        // connection's task stays small.
                        if let Err(stop) = Box::pin(ctx.run(steps, &mut reader_out)).await {
                            if let Stop::End(code) = stop {
                                session.end(code);
                            }
                            break;
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                if !silence.on_tick(&session, &probe) {
                    break;
                }
            }
            // Shutdown: stop reading; the engine commits what is queued, then ends the session.
            _ = state.stop.cancelled() => break,
            // The writer stops when the session ended (kick, slow consumer) or the socket failed.
            _ = &mut writer => {
                session.end(Code::ClientDisconnect);
                return;
            }
        }
    }
    // Keep the session until the writer has flushed its final DISCONNECT.
    if let Err(e) = writer.await {
        tracing::warn!(error = %e, "writer task failed");
    }
}

/// What both tasks of a connection share.
#[derive(Clone)]
struct Ctx<H> {
    engine: Engine,
    profiles: Arc<ProfileCache>,
    write_timeout: Duration,
    receipt_wait: Duration,
    session: Arc<Session>,
    dialect: H,
    aside: Arc<Aside>,
    /// Frames to the writer from anything but the writer (none for [`Direct::None`]).
    direct: Option<mpsc::Sender<WireOut>>,
}

/// What a dialect's steps leave for the other task.
#[derive(Default)]
struct Aside {
    /// The dialect ended the connection itself (and said why): no goodbye follows.
    closing: AtomicBool,
    /// Receipt watches of messages being published, by client message id.
    watches: Mutex<HashMap<String, Watch>>,
}

/// What is heard of one message on its way to its recipients.
struct Watch {
    receipts: ReceiptWatch,
    pushes: broadcast::Receiver<PushOutcome>,
}

/// Runs a step that needs only the engine session: what the native protocol's frames ask for,
/// on any transport. Steps that need the socket or the dialect are not for here.
pub(crate) async fn on_session(session: &Session, step: Step) {
    match step {
        Step::Connect(_) => session.already_connected(),
        Step::Publish { packet_id, send } => session.publish(packet_id, send).await,
        Step::PublishStatus { packet_id, send } => session.publish_status(packet_id, send).await,
        Step::Ack(seq) => session.ack(seq),
        Step::Confirm(seq) => session.confirm(seq),
        Step::Pong => session.pong(),
        Step::Sync {
            query_id,
            after,
            limit,
        } => session.sync(query_id, after, limit).await,
        Step::Chatroom { query_id, query } => session.chatroom_query(query_id, query).await,
        Step::Group { query_id, query } => session.group_query(query_id, query).await,
        Step::Conversation { query_id, query } => {
            session.conversation_query(query_id, query).await;
        }
        Step::Presence {
            query_id,
            users,
            subscribe: true,
        } => session.subscribe_presence(query_id, users).await,
        Step::Presence {
            query_id,
            users,
            subscribe: false,
        } => session.get_presence(query_id, users).await,
        Step::UserQuery { query_id, users } => session.get_users(query_id, users).await,
        Step::RejectQuery { query_id, reason } => session.reject_query(query_id, reason),
        other => tracing::error!(step = ?other, "a step that needs more than the session"),
    }
}

/// How a batch of writes ended.
enum Written {
    /// Everything was fed and flushed; more may come.
    Flushed,
    /// The session's last item: the DISCONNECT with this code (fed frames not yet flushed).
    Last(Code),
}

impl<H: Held> Ctx<H> {
    /// Runs steps in order. `Err` when the connection is ending.
    async fn run(
        &self,
        steps: impl IntoIterator<Item = Step, IntoIter: Send>,
        out: &mut impl Out,
    ) -> Result<(), Stop> {
        let mut steps = steps.into_iter();
        // Steps a step's outcome asked for, run before the rest.
        let mut more: VecDeque<Step> = VecDeque::new();
        let session = &*self.session;
        while let Some(step) = more.pop_front().or_else(|| steps.next()) {
            let next = match step {
                Step::Send(frame) => {
                    out.send(frame).await?;
                    continue;
                }
                Step::Ack(seq) => {
                    ack(session, seq, out).await?;
                    continue;
                }
                Step::ReadInbox(seqs) => {
                    if let Err(r) = session.read_inbox(&seqs).await {
                        tracing::debug!(code = r.code.as_u32(), "read confirmation failed");
                    }
                    continue;
                }
                Step::Users { tag, users } => {
                    let found = self.profiles.get(&self.engine, &users).await;
                    self.dialect.with(|d| d.users(tag, &found))
                }
                Step::JoinGroup(group) => {
                    let outcome = session.join_named_group(&group).await.map(|_| ());
                    self.dialect
                        .with(|d| d.group_joined(&group, outcome.as_ref().copied()))
                }
                Step::RegisterPush {
                    endpoint,
                    p256dh,
                    auth,
                } => {
                    let sub = PushSubscription {
                        endpoint,
                        p256dh,
                        auth,
                    };
                    let outcome = self
                        .engine
                        .register_push(session.user_id(), session.device_id(), sub)
                        .await;
                    self.dialect
                        .with(|d| d.push_registered(outcome.as_ref().map(|_| ()).map_err(|e| &e.0)))
                }
                Step::Watch { client_msg_id } => {
                    // Push outcomes are heard from before the message exists, like receipts.
                    let watch = Watch {
                        receipts: self
                            .engine
                            .watch_receipts(session.user_id(), &client_msg_id),
                        pushes: self.engine.push_outcomes(),
                    };
                    let mut watches = lock(&self.aside.watches);
                    if watches.len() < MAX_WATCHES {
                        watches.insert(client_msg_id, watch);
                    }
                    continue;
                }
                Step::Track {
                    client_msg_id,
                    uid,
                    conversation_type,
                    target,
                } => {
                    let watch = lock(&self.aside.watches).remove(&client_msg_id);
                    if let Some(watch) = watch.filter(|_| !uid.is_empty()) {
                        let ctx = self.clone();
                        tokio::spawn(async move {
                            ctx.track(client_msg_id, uid, conversation_type, target, watch)
                                .await;
                        });
                    }
                    continue;
                }
                Step::Close(code) => {
                    self.aside.closing.store(true, Ordering::Relaxed);
                    out.flush().await?;
                    session.end(code);
                    return Err(Stop::Closing);
                }
                Step::End(code) => {
                    tracing::debug!(code = code.as_u32(), "the dialect ends the connection");
                    session.end(code);
                    return Err(Stop::End(code));
                }
                other => {
                    on_session(session, other).await;
                    continue;
                }
            };
            for s in next.into_iter().rev() {
                more.push_front(s);
            }
        }
        Ok(())
    }

    /// Feeds the frames of one batch of outbound items: up to [`WRITE_BATCH`] items, the
    /// first and whatever is queued behind it now, then one flush.
    ///
    /// This future is made once per batch and moved into its timeout, and a large room wakes
    /// thousands of writers per item: it is kept small. Each item's frames are fed here rather
    /// than through a nested future, and the rare steps other than a frame or a seed's
    /// acknowledgement of what it wrote run boxed.
    async fn write_batch(
        &self,
        first: Outbound,
        outbox: &Outbox,
        out: &mut WriterOut,
    ) -> Result<Written, ()> {
        let mut next = Some(first);
        let mut fed = 0;
        while let Some(item) = next.take() {
            if let Outbound::Disconnect(code) = item {
                return Ok(Written::Last(code));
            }
            let wanted = self.dialect.with(|d| d.profiles_for(&item));
            let steps = if wanted.is_empty() {
                self.dialect.with(|d| d.outbound(item, &[]))
            } else {
                let profiles = Box::pin(self.profiles.get(&self.engine, &wanted)).await;
                self.dialect.with(|d| d.outbound(item, &profiles))
            };
            let mut stopped = None;
            for step in steps {
                let written = match step {
                    Step::Send(frame) => out.send(frame).await,
                    Step::Ack(seq) => ack(&self.session, seq, out).await,
                    other => Box::pin(self.run(Some(other), out)).await,
                };
                if let Err(stop) = written {
                    stopped = Some(stop);
                    break;
                }
            }
            match stopped {
                None => {}
                // What was fed goes out first; what is still queued stays in the inbox
                // (deliveries) or is asked again by the client after it reconnects.
                Some(Stop::End(code)) => {
                    self.session.end(code);
                    return Ok(Written::Last(code));
                }
                // The dialect closed: the session's DISCONNECT follows what is queued.
                Some(Stop::Closing) => break,
                Some(Stop::Gone) => return Err(()),
            }
            fed += 1;
            if fed < WRITE_BATCH {
                next = outbox.try_pop();
            }
        }
        out.flush().await.map_err(|_| ())?;
        Ok(Written::Flushed)
    }

    /// Waits until every recipient of a watched message has it, or the report wait passes,
    /// and gives the dialect the report.
    async fn track(
        &self,
        client_msg_id: String,
        uid: String,
        conversation_type: u32,
        target: String,
        mut watch: Watch,
    ) {
        let engine = &self.engine;
        let me = self.session.user_id();
        let users: Vec<String> = if conversation_type == tidings_proto::conversation_type::GROUP {
            match engine.group_members(&target, "", REPORT_MEMBERS).await {
                Ok(m) => m
                    .members
                    .into_iter()
                    .map(|m| m.user)
                    .filter(|u| u != me)
                    .collect(),
                Err(_) => Vec::new(),
            }
        } else {
            vec![target]
        };
        let found = self.users(&users).await;
        let subscribed = engine.push_subscribed(&users).await;
        let mut receipts: Vec<Receipt> = users
            .into_iter()
            .map(|user| Receipt {
                online: found.iter().any(|u| u.user == user && u.online),
                subscribed: subscribed.contains(&user),
                user,
                received: false,
                pushed: None,
            })
            .collect();
        let deadline = Instant::now() + self.receipt_wait;
        while receipts.iter().any(|r| !r.received) {
            tokio::select! {
                got = watch.receipts.recv() => match got {
                    Some(user) => {
                        if let Some(r) = receipts.iter_mut().find(|r| r.user == user) {
                            r.received = true;
                        }
                    }
                    None => break,
                },
                pushed = watch.pushes.recv() => match pushed {
                    Ok(o) if o.uid == uid => {
                        if let Some(r) = receipts.iter_mut().find(|r| r.user == o.user) {
                            r.pushed = Some(o.delivered);
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        watch.pushes = broadcast::channel(1).1;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        drop(watch);
        let steps = self.dialect.with(|d| d.receipts(&client_msg_id, &receipts));
        let Some(direct) = &self.direct else {
            return;
        };
        // A report only says something (running other steps from here would make this task's
        // future contain itself).
        for step in steps {
            if let Step::Send(frame) = step
                && direct.send(frame).await.is_err()
            {
                return;
            }
        }
    }

    async fn users(&self, users: &[String]) -> Vec<UserOut> {
        if users.is_empty() {
            return Vec::new();
        }
        match self.engine.users(users).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "user lookup failed");
                Vec::new()
            }
        }
    }
}

/// The device has the inbox entry at `seq`. A dialect may have no acknowledgement of its own,
/// so what it was sent must have left before it counts as delivered.
async fn ack(session: &Session, seq: u64, out: &mut impl Out) -> Result<(), Stop> {
    out.flush().await?;
    session.ack(seq);
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The next frame the reader queued for the writer; never, for a dialect without any.
async fn next_direct(direct: &mut Option<mpsc::Receiver<WireOut>>) -> Option<WireOut> {
    match direct {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Completes when a room's direct write left bytes for the writer; never without a gate.
async fn holding(gate: &Option<Arc<Gate>>) {
    match gate {
        Some(gate) => gate.holding().await,
        None => std::future::pending().await,
    }
}

/// Drains the session's outbox (and the reader's frames) through the dialect to the socket
/// until the session's DISCONNECT has been written; writes out what a room's direct write
/// left held.
async fn write_loop<H: Held>(
    ctx: Ctx<H>,
    mut out: WriterOut,
    mut direct: Option<mpsc::Receiver<WireOut>>,
    mut probes: mpsc::Receiver<()>,
    gate: Option<Arc<Gate>>,
) {
    let timeout = ctx.write_timeout;
    let outbox = ctx.session.outbox();
    loop {
        let first = tokio::select! {
            biased;
            Some(frame) = next_direct(&mut direct) => {
                if !write_now(&mut out, frame, timeout).await {
                    return;
                }
                continue;
            }
            first = outbox.pop() => match first {
                Some(first) => first,
                None => return,
            },
            () = holding(&gate) => {
                match tokio::time::timeout(timeout, out.flush()).await {
                    Ok(Ok(())) => continue,
                    _ => return,
                }
            }
            Some(()) = probes.recv() => {
                let ping = out.sink.send(Message::Ping(crate::liveness::PING));
                match tokio::time::timeout(timeout, ping).await {
                    Ok(Ok(())) => continue,
                    _ => return,
                }
            }
        };
        // One deadline for the whole batch: feeding frames into the buffer rarely waits, and a
        // timer per frame would cost more than the frame. Boxed: the batch's future is the
        // largest thing this task awaits, and an idle connection would otherwise keep room for
        // it (more than half of the task) between batches.
        let batch = Box::pin(tokio::time::timeout(
            timeout,
            ctx.write_batch(first, outbox, &mut out),
        ));
        match batch.await {
            Ok(Ok(Written::Flushed)) => {}
            Ok(Ok(Written::Last(code))) => {
                // A client that left (or said goodbye), or one the dialect told already, is not
                // told again.
                let goodbye = if code == Code::ClientDisconnect
                    || ctx.aside.closing.load(Ordering::Relaxed)
                {
                    None
                } else {
                    ctx.dialect.with(|d| d.goodbye(code))
                };
                hang_up(&mut out, goodbye, code, timeout).await;
                return;
            }
            Ok(Err(())) => return,
            Err(_) => {
                tracing::info!("websocket write timed out");
                return;
            }
        }
    }
}
