//! WebSocket connections that speak a seed dialect (`tidings-dialects`). One driver runs every
//! dialect: it reads frames until the dialect has opened an engine session (within the
//! handshake deadline), then a reader loop hands frames to the dialect and runs its steps
//! against the session, and a writer task turns the session's outbox into the dialect's frames.
//! The dialect's state is shared by both behind a mutex that is never held across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tidings_dialects::{Dialect, Receipt, Step, WireIn, WireOut};
use tidings_engine::{
    ConnectRequest, Outbound, PushOutcome, PushSubscription, ReceiptWatch, Refusal, SendRequest,
    Session, UserOut,
};
use tidings_proto::Code;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use crate::AppState;
use crate::admission::Ticket;
use crate::liveness::Silence;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// How long a profile the dialects show is kept before it is read again.
const PROFILE_TTL: Duration = Duration::from_secs(10);
/// The most profiles kept.
const PROFILE_CACHE_MAX: usize = 65_536;

/// The profiles (names, portraits) dialect frames show, shared by every connection and kept
/// for [`PROFILE_TTL`], so a busy room does not read the store once per message and member: a
/// changed profile shows within that time.
#[derive(Default)]
pub(crate) struct ProfileCache {
    entries: Mutex<HashMap<String, (Instant, UserOut)>>,
}

impl ProfileCache {
    /// The profiles of `users` that could be read (presence as of when each was read).
    pub(crate) async fn get(
        &self,
        engine: &tidings_engine::Engine,
        users: &[String],
    ) -> Vec<UserOut> {
        if users.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        let mut found = Vec::with_capacity(users.len());
        let mut missing = Vec::new();
        {
            let entries = lock(&self.entries);
            for user in users {
                match entries.get(user) {
                    Some((at, out)) if now.duration_since(*at) < PROFILE_TTL => {
                        found.push(out.clone());
                    }
                    _ => missing.push(user.clone()),
                }
            }
        }
        if missing.is_empty() {
            return found;
        }
        match engine.users(&missing).await {
            Ok(fetched) => {
                let mut entries = lock(&self.entries);
                if entries.len() + fetched.len() > PROFILE_CACHE_MAX {
                    entries.retain(|_, (at, _)| now.duration_since(*at) < PROFILE_TTL);
                    if entries.len() + fetched.len() > PROFILE_CACHE_MAX {
                        entries.clear();
                    }
                }
                for out in fetched {
                    entries.insert(out.user.clone(), (now, out.clone()));
                    found.push(out);
                }
            }
            Err(e) => tracing::debug!(error = %e, "profile lookup failed"),
        }
        found
    }
}

/// Path of the seed-000 dialect (protobuf, binary frames).
pub const SEED000_PATH: &str = "/ws";
/// Path of the seed-001 dialect (JSON packets).
pub const SEED001_PATH: &str = "/json/ws";
/// Where seed-001 messages are sent over HTTP.
pub const SEED001_HTTP_PATH: &str = "/json/message";
/// Path of the seed-002 dialect (rooms); the token is the query's `token`.
pub const SEED002_PATH: &str = "/ws/room";
/// Path of the seed-003 dialect (private messages); the last segment is the user's token.
pub const SEED003_PATH: &str = "/imserver/{token}";

/// Frames the reader may queue for the writer (answers to the client's own frames).
const DIRECT_QUEUE: usize = 256;
/// Messages of one connection whose receipts may be watched at once.
const MAX_WATCHES: usize = 1024;
/// The most group members a receipt report names.
const REPORT_MEMBERS: u32 = 500;

pub async fn seed000(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let dialect = tidings_dialects::seed000::Seed000::new();
    upgrade(ws, state, dialect, Label::Seed000)
}

pub async fn seed001(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let dialect = tidings_dialects::seed001::Seed001::new(state.engine.vapid_public_key());
    upgrade(ws, state, dialect, Label::Seed001)
}

/// `POST /json/message`: a seed-001 `MESSAGE`'s data sent over HTTP, by the user a bearer
/// token names (`Authorization: Bearer`, the `auth` an AUTH answer gives), or by the user the
/// body's `from` names in a request signed like the HTTP API's.
pub async fn seed001_send(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return crate::api::unreadable_body(rejection),
    };
    let value: serde_json::Value = match crate::api::json_body(&body) {
        Ok(v) => v,
        Err(r) => return crate::api::error(r),
    };
    let sender = if headers.contains_key(AUTHORIZATION) {
        match crate::accounts::bearer(&state, &headers).await {
            Ok(user) => user,
            Err(response) => return response,
        }
    } else {
        if let Err(response) =
            crate::api::authenticate(&state, &method, &uri, &headers, &body).await
        {
            return response;
        }
        let from = &value["from"];
        match from.as_str().or_else(|| from["name"].as_str()) {
            Some(name) => name.to_string(),
            None => {
                return crate::api::error(Refusal::new(
                    Code::BadRequest,
                    "a signed request names its sender in \"from\"",
                ));
            }
        }
    };
    let send = match seed001_send_request(value, tidings_engine::new_uid()) {
        Ok(send) => send,
        Err(r) => return crate::api::error(r),
    };
    crate::api::reply(
        state.engine.send_as(&sender, send).await,
        |posted| serde_json::json!({ "mid": posted.uid }),
    )
}

/// The message a `POST /json/message` body asks to send.
pub(crate) fn seed001_send_request(
    body: serde_json::Value,
    client_msg_id: String,
) -> Result<SendRequest, Refusal> {
    let data = serde_json::from_value(body).map_err(|e| {
        Refusal::new(
            Code::BadRequest,
            format!("the body is not MESSAGE data: {e}"),
        )
    })?;
    tidings_dialects::seed001::send_request(data, client_msg_id, "", true)
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
    upgrade(ws, state, dialect, Label::Seed002)
}

pub async fn seed003(
    ws: WebSocketUpgrade,
    Path(token): Path<String>,
    State(state): State<AppState>,
) -> Response {
    let dialect = tidings_dialects::seed003::Seed003::new(token);
    upgrade(ws, state, dialect, Label::Seed003)
}

/// The dialect as the connection metrics name it.
use crate::metrics::Dialect as Label;

fn upgrade<D: Dialect>(
    ws: WebSocketUpgrade,
    state: AppState,
    dialect: D,
    label: Label,
) -> Response {
    let limit = state.config.max_frame_bytes;
    // The connection's place among the unauthenticated, which it leaves once a session opens.
    let ticket = crate::listener::current_ticket();
    ws.read_buffer_size(1024)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            let tracker = state.connections.clone();
            let span = tracing::info_span!(
                "dialect",
                conn = state.connection_id(),
                session = tracing::field::Empty,
                user = tracing::field::Empty
            );
            tracker.track_future(run(socket, state, dialect, ticket, label).instrument(span))
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
    /// A message above the frame limit, cut off by the WebSocket layer (its rest is unread).
    TooLarge,
    Closed,
}

async fn read(stream: &mut Stream) -> Read {
    match stream.next().await {
        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => Read::Frame(m),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Read::Control,
        Some(Ok(Message::Close(_))) | None => Read::Closed,
        Some(Err(e)) if crate::connection::too_large(&e) => Read::TooLarge,
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

/// Sends the close frame that goes with `code` (see [`crate::connection::close_code`]).
async fn close(sink: &mut Sink, timeout: Duration, code: Code) {
    let _ = tokio::time::timeout(
        timeout,
        sink.send(Message::Close(Some(CloseFrame {
            code: crate::connection::close_code(code),
            reason: "".into(),
        }))),
    )
    .await;
}

async fn run<D: Dialect>(
    socket: WebSocket,
    state: AppState,
    dialect: D,
    ticket: Option<Ticket>,
    label: Label,
) {
    let (sink, mut stream) = socket.split();
    let dialect = Arc::new(Mutex::new(dialect));
    let config = &state.config;
    let deadline = Instant::now() + config.handshake_timeout;
    let mut out = WriterOut {
        sink,
        timeout: config.write_timeout,
    };

    // Until a session opens, the dialect's steps run with the socket at hand.
    let mut steps: VecDeque<Step> = lock(&dialect).open().into();
    let session = loop {
        match before_session(&state, &dialect, &mut out, &mut steps).await {
            Handshake::Open(session) => break session,
            Handshake::Closed => return,
            Handshake::More => {}
        }
        let next = tokio::select! {
            r = tokio::time::timeout_at(deadline, read(&mut stream)) => r.map_err(|_| Code::HandshakeTimeout),
            _ = state.stop.cancelled() => Ok(Read::Closed),
            _ = crate::connection::evicted(ticket.as_ref()) => Err(Code::UnauthenticatedEvicted),
        };
        let next = match next {
            Ok(Read::TooLarge) => Err(Code::FrameTooLarge),
            other => other,
        };
        match next {
            Err(code) => {
                let goodbye = lock(&dialect).goodbye(code);
                if let Some(frame) = goodbye {
                    let _ = out.send(frame).await;
                    let _ = out.flush().await;
                }
                close(&mut out.sink, config.write_timeout, code).await;
                return;
            }
            Ok(Read::TooLarge) | Ok(Read::Closed) => return,
            Ok(Read::Control) => {}
            Ok(Read::Frame(m)) => steps.extend(inbound(&dialect, &m)),
        }
    };
    let _open = crate::metrics::Open::new(crate::metrics::Transport::Ws, label);
    if let Some(ticket) = &ticket {
        ticket.authenticated();
    }
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
        direct: direct.clone(),
        watches: Arc::new(Mutex::new(HashMap::new())),
    };
    // What the dialect does as the session opens (the login's answer, a first sync) is written
    // before the writer starts, so it precedes every push; a failed write ends the session,
    // whose DISCONNECT the writer then finds.
    let opening: Vec<Step> = std::mem::take(&mut steps).into();
    if Box::pin(ctx.run(opening, &mut out)).await.is_err() || out.flush().await.is_err() {
        session.end(Code::ClientDisconnect);
    }
    // The reader asks the writer for a WebSocket Ping when the client has been silent.
    let (probe, probes) = mpsc::channel(1);
    let mut writer = state.egress.spawn(
        write_loop(ctx.clone(), out, direct_rx, probes).instrument(tracing::Span::current()),
    );
    let mut reader_out = ReaderOut(direct);

    // A dialect with a heartbeat of its own (seed 002) drops a page after three of its
    // intervals of silence; the others after three of the server's.
    let interval = lock(&dialect)
        .silence_limit_ms()
        .map_or(state.engine.config().heartbeat, |ms| {
            Duration::from_millis(ms) / 3
        });
    let mut silence = Silence::new(interval);
    let mut ticker = tokio::time::interval(silence.period(state.engine.config().ack_timeout));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = read(&mut stream) => {
                silence.seen();
                match r {
                    Read::Frame(m) => {
                        let steps = inbound(&dialect, &m);
                        if Box::pin(ctx.run(steps, &mut reader_out)).await.is_err() {
                            break;
                        }
                    }
                    Read::Control => {}
                    Read::TooLarge => {
                        session.end(Code::FrameTooLarge);
                        break;
                    }
                    Read::Closed => {
                        session.end(Code::ClientDisconnect);
                        break;
                    }
                }
            }
            _ = ticker.tick() => {
                if !silence.on_tick(&session, &probe) {
                    break;
                }
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

/// Runs the steps before a session exists until one opens it (what follows stays in `steps`),
/// the connection must close, or another frame is needed.
async fn before_session<D: Dialect>(
    state: &AppState,
    dialect: &Mutex<D>,
    out: &mut WriterOut,
    steps: &mut VecDeque<Step>,
) -> Handshake {
    while let Some(step) = steps.pop_front() {
        match step {
            Step::Send(frame) => {
                let sent = out.send(frame).await.is_ok() && out.flush().await.is_ok();
                if !sent {
                    return Handshake::Closed;
                }
            }
            Step::Close(code) => {
                let _ = out.flush().await;
                close(&mut out.sink, state.config.write_timeout, code).await;
                return Handshake::Closed;
            }
            Step::Connect(request) => {
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

/// Where a step's frames go.
trait Out: Send {
    /// Queues a frame; `Err` when the connection is gone.
    fn send(&mut self, frame: WireOut) -> impl Future<Output = Result<(), ()>> + Send;
    /// Writes out what is queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), ()>> + Send;
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
    /// Frames to the writer from anything but the writer.
    direct: mpsc::Sender<WireOut>,
    /// Receipt watches of messages being published, by client message id.
    watches: Arc<Mutex<HashMap<String, Watch>>>,
}

/// What is heard of one message on its way to its recipients.
struct Watch {
    receipts: ReceiptWatch,
    pushes: broadcast::Receiver<PushOutcome>,
}

impl<D> Clone for Ctx<D> {
    fn clone(&self) -> Self {
        Ctx {
            state: self.state.clone(),
            session: self.session.clone(),
            dialect: self.dialect.clone(),
            closing: self.closing.clone(),
            direct: self.direct.clone(),
            watches: self.watches.clone(),
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
                    let found = self.state.profiles.get(&self.state.engine, &users).await;
                    let more = lock(&self.dialect).users(tag, &found);
                    for s in more.into_iter().rev() {
                        queue.push_front(s);
                    }
                }
                Step::JoinGroup(group) => {
                    let outcome = session.join_named_group(&group).await.map(|_| ());
                    let more = lock(&self.dialect).group_joined(&group, outcome.as_ref().copied());
                    for s in more.into_iter().rev() {
                        queue.push_front(s);
                    }
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
                        .state
                        .engine
                        .register_push(session.user_id(), sub)
                        .await;
                    let more = lock(&self.dialect)
                        .push_registered(outcome.as_ref().map(|_| ()).map_err(|e| &e.0));
                    for s in more.into_iter().rev() {
                        queue.push_front(s);
                    }
                }
                Step::Watch { client_msg_id } => {
                    // Push outcomes are heard from before the message exists, like receipts.
                    let engine = &self.state.engine;
                    let watch = Watch {
                        receipts: engine.watch_receipts(session.user_id(), &client_msg_id),
                        pushes: engine.push_outcomes(),
                    };
                    let mut watches = lock(&self.watches);
                    if watches.len() < MAX_WATCHES {
                        watches.insert(client_msg_id, watch);
                    }
                }
                Step::Track {
                    client_msg_id,
                    uid,
                    conversation_type,
                    target,
                } => {
                    let watch = lock(&self.watches).remove(&client_msg_id);
                    if let Some(watch) = watch.filter(|_| !uid.is_empty()) {
                        let ctx = self.clone();
                        tokio::spawn(async move {
                            ctx.track(client_msg_id, uid, conversation_type, target, watch)
                                .await;
                        });
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
        let engine = &self.state.engine;
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
        let deadline = Instant::now() + self.state.config.receipt_wait;
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
        let steps = lock(&self.dialect).receipts(&client_msg_id, &receipts);
        // A report only says something (running other steps from here would make this task's
        // future contain itself).
        for step in steps {
            if let Step::Send(frame) = step
                && self.direct.send(frame).await.is_err()
            {
                return;
            }
        }
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
async fn write_loop<D: Dialect>(
    ctx: Ctx<D>,
    mut out: WriterOut,
    mut direct: mpsc::Receiver<WireOut>,
    mut probes: mpsc::Receiver<()>,
) {
    let timeout = ctx.state.config.write_timeout;
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
            Some(()) = probes.recv() => {
                let ping = out.sink.send(Message::Ping(crate::liveness::PING));
                match tokio::time::timeout(timeout, ping).await {
                    Ok(Ok(())) => continue,
                    _ => return,
                }
            }
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
            close(&mut out.sink, timeout, code).await;
            return;
        }
        let wanted = lock(&ctx.dialect).profiles_for(&item);
        let profiles = ctx.state.profiles.get(&ctx.state.engine, &wanted).await;
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
