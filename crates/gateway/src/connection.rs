//! One native-protocol WebSocket connection: the CONNECT handshake, then a reader loop (this
//! task) and a writer task that drains the engine session's outbox to the socket.
//!
//! Errors tied to a request are answered by that request's reply frame and the connection stays
//! usable: a refused PUBLISH gets a PUBACK with the code, a bad QUERY a QUERYACK, a second
//! CONNECT a CONNACK. Frame-level errors (malformed bytes, unknown kind, oversized frame, a frame
//! before CONNECT, a kind a client may not send) end the connection with a DISCONNECT carrying
//! the code.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tidings_engine::{
    AmendRequest, ChatroomQuery, ConnectInfo, ConnectRequest, ConversationQuery,
    ConversationUpdateRequest, GroupQuery, HistoryStart, Outbound, PushSubscription, RoomItem,
    SendRequest, Session,
};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Code, DecodeError, EncodeError, Encoding, PROTOCOL_VERSION, codec};
use tracing::Instrument;

use crate::AppState;
use crate::admission::Ticket;
use crate::liveness::Silence;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// WebSocket messages above this many times the frame limit are cut off by the WebSocket layer
/// itself (close code 1009); smaller oversized frames reach the codec and get DISCONNECT 40003.
const WS_MESSAGE_LIMIT_FACTOR: usize = 4;
const MAX_WRITE_BUFFER: usize = 64 << 20;
const WRITE_BUFFER: usize = 16 * 1024;

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let limit = state.config.max_frame_bytes * WS_MESSAGE_LIMIT_FACTOR;
    // The connection's place among the unauthenticated, which it leaves once CONNECT succeeds.
    let ticket = crate::listener::current_ticket();
    ws
        // The default 128 KiB read buffer would dominate an idle connection's memory.
        .read_buffer_size(1024)
        // Frames collect here until a flush (or this size) so a burst leaves in few writes.
        .write_buffer_size(WRITE_BUFFER)
        // A cap, not an allocation: it must exceed the largest frame the server writes (a sync
        // page is bounded by a quarter of the outbound queue, and JSON escaping can inflate it).
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            let tracker = state.connections.clone();
            let span = tracing::info_span!(
                "conn",
                conn = state.connection_id(),
                session = tracing::field::Empty,
                user = tracing::field::Empty
            );
            tracker.track_future(run(socket, state, ticket).instrument(span))
        })
}

/// A decoded inbound message: its frame, or why it is not one, and the encoding it came in.
// One per frame read and consumed at once; boxing the frame would add an allocation per frame.
#[allow(clippy::large_enum_variant)]
enum Inbound {
    Frame(v1::Frame, Encoding),
    Bad(DecodeError, Encoding),
    /// A WebSocket control frame: activity, but nothing to handle.
    Control,
    /// A WebSocket message too large for the WebSocket layer to read (its rest is unread).
    TooLarge,
    Closed,
}

async fn read(stream: &mut Stream, max: usize) -> Inbound {
    match stream.next().await {
        Some(Ok(Message::Binary(b))) => match codec::decode(&b, Encoding::Protobuf, max) {
            Ok(f) => Inbound::Frame(f, Encoding::Protobuf),
            Err(e) => Inbound::Bad(e, Encoding::Protobuf),
        },
        Some(Ok(Message::Text(t))) => match codec::decode(t.as_bytes(), Encoding::Json, max) {
            Ok(f) => Inbound::Frame(f, Encoding::Json),
            Err(e) => Inbound::Bad(e, Encoding::Json),
        },
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Control,
        Some(Ok(Message::Close(_))) | None => Inbound::Closed,
        Some(Err(e)) if too_large(&e) => Inbound::TooLarge,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "websocket read failed");
            Inbound::Closed
        }
    }
}

/// Whether a WebSocket read failed because the message was above the WebSocket layer's limit.
pub(crate) fn too_large(e: &axum::Error) -> bool {
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

/// The WebSocket close code that goes with a DISCONNECT: 1009 (message too big) for a frame
/// too large, 1000 (normal) otherwise.
pub(crate) fn close_code(code: Code) -> u16 {
    if code == Code::FrameTooLarge {
        1009
    } else {
        1000
    }
}

/// A frame as a WebSocket message of the connection's encoding.
fn to_message(frame: &v1::Frame, encoding: Encoding) -> Result<Message, EncodeError> {
    Ok(match encoding {
        Encoding::Protobuf => Message::Binary(codec::encode_protobuf(frame).into()),
        Encoding::Json => Message::Text(codec::encode_json(frame)?.into()),
    })
}

/// A frame of the server's own as a WebSocket message, or the code that ends the connection in
/// its place: a frame the server cannot encode is the server's failure (logged), and is never
/// sent empty or skipped.
fn outbound(frame: &v1::Frame, encoding: Encoding) -> Result<Message, Code> {
    to_message(frame, encoding).map_err(encode_failed)
}

/// Logs why a server frame could not be encoded; the code that ends the connection instead.
fn encode_failed(e: EncodeError) -> Code {
    tracing::error!(error = %e, "a server frame could not be encoded: ending the connection");
    Code::ServerError
}

pub(crate) fn disconnect_frame(code: Code) -> v1::Frame {
    codec::frame(Body::Disconnect(v1::Disconnect {
        code: code.as_u32(),
        message: code.text().into(),
        reconnect: code.reconnect(),
    }))
}

pub(crate) fn decode_error_code(e: &DecodeError) -> Code {
    match e {
        DecodeError::TooLarge { .. } => Code::FrameTooLarge,
        DecodeError::Malformed(_) => Code::MalformedFrame,
        DecodeError::UnknownKind => Code::UnknownFrameKind,
    }
}

/// Sends a final DISCONNECT and a close frame, within the write timeout. Should the DISCONNECT
/// not encode, the close says 1011 (internal error) instead of [`close_code`]'s.
async fn refuse(sink: &mut Sink, code: Code, encoding: Encoding, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        let close = match outbound(&disconnect_frame(code), encoding) {
            Ok(bye) => {
                sink.send(bye).await?;
                close_code(code)
            }
            Err(_) => 1011,
        };
        sink.send(Message::Close(Some(CloseFrame {
            code: close,
            reason: "".into(),
        })))
        .await
    })
    .await;
}

/// A CONNACK frame: a refusal's code and text, or success with the session's details.
pub(crate) fn connack_frame(code: Code, message: String, info: Option<&ConnectInfo>) -> v1::Frame {
    let mut ack = v1::ConnAck {
        code: code.as_u32(),
        message,
        ..Default::default()
    };
    if let Some(info) = info {
        ack.user_id = info.user_id.clone();
        ack.session_id = info.session_id.clone();
        ack.heartbeat_ms = info.heartbeat_ms;
        ack.server_time = info.server_time;
        ack.cursor = info.cursor;
        ack.inbox_seq = info.inbox_seq;
    }
    codec::frame(Body::Connack(ack))
}

/// Opens an engine session for a CONNECT, or returns the refusing CONNACK.
pub(crate) async fn connect_session(
    engine: &tidings_engine::Engine,
    connect: v1::Connect,
) -> Result<(Session, ConnectInfo), v1::Frame> {
    if connect.protocol_version > PROTOCOL_VERSION {
        let code = Code::UnsupportedProtocolVersion;
        return Err(connack_frame(code, code.text().into(), None));
    }
    let request = ConnectRequest {
        token: connect.token,
        device_id: connect.device_id,
        platform: connect.platform.chars().take(32).collect(),
    };
    engine.connect(request).await.map_err(|refusal| {
        tracing::debug!(code = refusal.code.as_u32(), "connect refused");
        connack_frame(refusal.code, refusal.text(), None)
    })
}

/// An authenticated connection, ready to serve.
struct Opened {
    sink: Sink,
    stream: Stream,
    session: Session,
    info: ConnectInfo,
    encoding: Encoding,
}

async fn run(socket: WebSocket, state: AppState, ticket: Option<Ticket>) {
    // The handshake's future is large and lives only briefly: boxing it keeps the long-lived
    // connection task small (its size is paid for every idle connection).
    let Some(opened) = Box::pin(open(socket, &state, ticket.as_ref())).await else {
        return;
    };
    // Held while the socket lives: its permit counts the connection.
    let _ticket = ticket;
    serve(opened, &state).await;
}

/// Completes when the connection was closed to make room for others (never without a ticket).
pub(crate) async fn evicted(ticket: Option<&Ticket>) {
    match ticket {
        Some(t) => t.evicted().await,
        None => std::future::pending().await,
    }
}

/// The handshake: reads the CONNECT (within the deadline), authenticates, sends the CONNACK.
async fn open(socket: WebSocket, state: &AppState, ticket: Option<&Ticket>) -> Option<Opened> {
    let (mut sink, mut stream) = socket.split();
    let config = &state.config;

    // The handshake: the first frame must be a CONNECT, within the deadline.
    let first = tokio::select! {
        r = tokio::time::timeout(config.handshake_timeout, read(&mut stream, config.max_frame_bytes)) => r,
        _ = state.stop.cancelled() => {
            refuse(&mut sink, Code::ServerShutdown, Encoding::Json, config.write_timeout).await;
            return None;
        }
        _ = evicted(ticket) => {
            refuse(&mut sink, Code::UnauthenticatedEvicted, Encoding::Json, config.write_timeout).await;
            return None;
        }
    };
    let (connect, encoding) = match first {
        Err(_) => {
            refuse(
                &mut sink,
                Code::HandshakeTimeout,
                Encoding::Json,
                config.write_timeout,
            )
            .await;
            return None;
        }
        Ok(Inbound::Closed) => return None,
        Ok(Inbound::TooLarge) => {
            refuse(
                &mut sink,
                Code::FrameTooLarge,
                Encoding::Json,
                config.write_timeout,
            )
            .await;
            return None;
        }
        Ok(Inbound::Control) => {
            refuse(
                &mut sink,
                Code::NotConnected,
                Encoding::Json,
                config.write_timeout,
            )
            .await;
            return None;
        }
        Ok(Inbound::Bad(e, enc)) => {
            tracing::debug!(error = %e, "bad first frame");
            refuse(&mut sink, decode_error_code(&e), enc, config.write_timeout).await;
            return None;
        }
        Ok(Inbound::Frame(f, enc)) => match f.body {
            Some(Body::Connect(c)) => (c, enc),
            _ => {
                refuse(&mut sink, Code::NotConnected, enc, config.write_timeout).await;
                return None;
            }
        },
    };
    let (session, info) = match connect_session(&state.engine, connect).await {
        Ok(ok) => ok,
        Err(frame) => {
            match outbound(&frame, encoding) {
                Ok(refusal) => {
                    let _ = tokio::time::timeout(config.write_timeout, sink.send(refusal)).await;
                    let _ = sink.close().await;
                }
                Err(code) => refuse(&mut sink, code, encoding, config.write_timeout).await,
            }
            return None;
        }
    };
    if let Some(ticket) = ticket {
        ticket.authenticated();
    }
    let span = tracing::Span::current();
    span.record("session", session.id());
    span.record("user", session.user_id());
    let connack = match outbound(
        &connack_frame(Code::Ok, String::new(), Some(&info)),
        encoding,
    ) {
        Ok(connack) => connack,
        Err(code) => {
            session.end(code);
            refuse(&mut sink, code, encoding, config.write_timeout).await;
            return None;
        }
    };
    // The CONNACK goes out before the writer starts, so it precedes every push.
    if tokio::time::timeout(config.write_timeout, sink.send(connack))
        .await
        .map_or(true, |r| r.is_err())
    {
        session.end(Code::ClientDisconnect);
        return None;
    }
    Some(Opened {
        sink,
        stream,
        session,
        info,
        encoding,
    })
}

/// Serves an authenticated connection until it ends.
async fn serve(opened: Opened, state: &AppState) {
    let Opened {
        sink,
        mut stream,
        session,
        info,
        encoding,
    } = opened;
    let config = &state.config;
    let _open = crate::metrics::Open::new(
        crate::metrics::Transport::Ws,
        crate::metrics::Dialect::Native,
    );

    let session = std::sync::Arc::new(session);
    // On the writers' own runtime: a large room wakes thousands of writers at once, and a client
    // frame read on this runtime must not queue behind them.
    // The reader asks the writer for a WebSocket Ping when the client has been silent.
    let (probe, probes) = tokio::sync::mpsc::channel(1);
    let mut writer = state.egress.spawn(
        write_loop(
            sink,
            session.clone(),
            encoding,
            config.write_timeout,
            probes,
        )
        .instrument(tracing::Span::current()),
    );
    let heartbeat = Duration::from_millis(u64::from(info.heartbeat_ms));
    let mut silence = Silence::new(heartbeat);
    let mut ticker = tokio::time::interval(silence.period(state.engine.config().ack_timeout));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            inbound = read(&mut stream, config.max_frame_bytes) => {
                silence.seen();
                match inbound {
                    Inbound::Frame(frame, _) => {
                        // Boxed for the same reason as the handshake: handling is short-lived.
                        if let Err(code) = Box::pin(handle(&session, frame)).await {
                            session.end(code);
                            break;
                        }
                    }
                    Inbound::Bad(e, _) => {
                        tracing::debug!(error = %e, "bad frame");
                        session.end(decode_error_code(&e));
                        break;
                    }
                    Inbound::Control => {}
                    Inbound::TooLarge => {
                        session.end(Code::FrameTooLarge);
                        break;
                    }
                    Inbound::Closed => {
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
    drop(session);
}

/// Handles one frame from a connected client. `Err` ends the connection with that code.
pub(crate) async fn handle(session: &Session, frame: v1::Frame) -> Result<(), Code> {
    match frame.body {
        Some(Body::Publish(p)) => match p.body {
            Some(v1::publish::Body::Send(s)) => {
                let request = SendRequest {
                    client_msg_id: s.client_msg_id,
                    conversation_type: s.conversation_type,
                    target_id: s.target_id,
                    msg_type: s.msg_type,
                    content: s.content,
                    push_text: s.push_text,
                    uncounted: s.uncounted,
                    mentions: s.mentioned_user_ids,
                    mention_all: s.mention_all,
                    audience: s.directed_user_ids,
                    // The codec refused numbers the enum does not define; the engine checks which
                    // priorities a client may use where.
                    priority: u32::try_from(s.priority).unwrap_or(u32::MAX),
                };
                // A status message (typing), never stored.
                if s.transient {
                    session.publish_status(p.packet_id, request).await;
                } else {
                    session.publish(p.packet_id, request).await;
                }
                Ok(())
            }
            // A PUBLISH without a message to send cannot be answered meaningfully.
            _ => Err(Code::UnexpectedFrame),
        },
        Some(Body::Puback(ack)) => {
            if ack.inbox_seq > 0 {
                session.ack(ack.inbox_seq);
            }
            Ok(())
        }
        Some(Body::Query(q)) => {
            match q.body {
                Some(v1::query::Body::Sync(s)) => session.sync(q.query_id, s.after, s.limit).await,
                Some(v1::query::Body::SubscribePresence(p)) => {
                    session.subscribe_presence(q.query_id, p.user_ids).await
                }
                Some(v1::query::Body::GetPresence(p)) => {
                    session.get_presence(q.query_id, p.user_ids).await
                }
                Some(v1::query::Body::GetUsers(u)) => {
                    session.get_users(q.query_id, u.user_ids).await
                }
                Some(body) => match group_query(body) {
                    Ok(gq) => session.group_query(q.query_id, gq).await,
                    Err(body) => match chatroom_query(body) {
                        Ok(cq) => session.chatroom_query(q.query_id, cq).await,
                        Err(body) => match conversation_query(body) {
                            Some(cq) => session.conversation_query(q.query_id, cq).await,
                            None => session.reject_query(q.query_id, "unsupported query"),
                        },
                    },
                },
                None => session.reject_query(q.query_id, "the query has no body"),
            }
            Ok(())
        }
        Some(Body::Querycon(c)) => {
            session.confirm(c.inbox_seq);
            Ok(())
        }
        Some(Body::Pingreq(_)) => {
            session.pong();
            Ok(())
        }
        Some(Body::Connect(_)) => {
            session.already_connected();
            Ok(())
        }
        Some(Body::Disconnect(_)) => Err(Code::ClientDisconnect),
        Some(Body::Connack(_) | Body::Queryack(_) | Body::Pingresp(_)) => {
            Err(Code::UnexpectedFrame)
        }
        None => Err(Code::UnknownFrameKind),
    }
}

/// Frames written before one flush: what is queued goes out in as few writes as possible.
const WRITE_BATCH: usize = 64;

/// How a batch of writes ended.
enum Written {
    /// Everything was fed and flushed; more may come.
    Flushed,
    /// The session's last item: the DISCONNECT with this code (fed frames not yet flushed).
    Last(Code),
}

/// Drains the session's outbox to the socket until the session's DISCONNECT has been sent.
async fn write_loop(
    mut sink: Sink,
    session: std::sync::Arc<Session>,
    encoding: Encoding,
    timeout: Duration,
    mut probes: tokio::sync::mpsc::Receiver<()>,
) {
    let outbox = session.outbox();
    loop {
        let first = tokio::select! {
            biased;
            first = outbox.pop() => match first {
                Some(first) => first,
                None => return,
            },
            Some(()) = probes.recv() => {
                let ping = sink.send(Message::Ping(crate::liveness::PING));
                match tokio::time::timeout(timeout, ping).await {
                    Ok(Ok(())) => continue,
                    _ => return,
                }
            }
        };
        // One deadline for the whole batch: feeding frames into the buffer rarely waits, and a
        // timer per frame would cost more than the frame.
        let batch = tokio::time::timeout(timeout, async {
            let mut next = Some(first);
            let mut fed = 0;
            while let Some(item) = next.take() {
                let frame = match item {
                    Outbound::Disconnect(code) => return Ok(Written::Last(code)),
                    Outbound::Room(item) => room_message(&item, encoding),
                    other => outbound(&wire_frame(other), encoding),
                };
                let frame = match frame {
                    Ok(frame) => frame,
                    // What was fed goes out first; what is still queued stays in the inbox
                    // (deliveries) or is asked again by the client after it reconnects.
                    Err(code) => {
                        session.end(code);
                        return Ok(Written::Last(code));
                    }
                };
                sink.feed(frame).await?;
                fed += 1;
                if fed < WRITE_BATCH {
                    next = outbox.try_pop();
                }
            }
            sink.flush().await?;
            Ok::<_, axum::Error>(Written::Flushed)
        })
        .await;
        match batch {
            Ok(Ok(Written::Flushed)) => {}
            // The client left (or said goodbye): close without telling it.
            Ok(Ok(Written::Last(Code::ClientDisconnect))) => {
                let _ = tokio::time::timeout(timeout, sink.close()).await;
                return;
            }
            Ok(Ok(Written::Last(code))) => {
                refuse(&mut sink, code, encoding, timeout).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "websocket write failed");
                return;
            }
            Err(_) => {
                tracing::info!("websocket write timed out");
                return;
            }
        }
    }
}

/// A chatroom item as a WebSocket message, encoded once per encoding for all its members (or,
/// as [`outbound`], the code that ends the connection in its place).
fn room_message(item: &RoomItem, encoding: Encoding) -> Result<Message, Code> {
    let slot = match encoding {
        Encoding::Protobuf => 0,
        Encoding::Json => 1,
    };
    let cache = item.wire(slot);
    let bytes = match cache.and_then(|c| c.get()) {
        Some(bytes) => bytes.clone(),
        None => {
            let bytes = bytes::Bytes::from(
                codec::encode(&room_frame(item), encoding).map_err(encode_failed)?,
            );
            if let Some(cache) = cache {
                // Another member's writer may have filled it meanwhile, with the same bytes.
                let _ = cache.set(bytes.clone());
            }
            bytes
        }
    };
    Ok(match encoding {
        Encoding::Protobuf => Message::Binary(bytes),
        Encoding::Json => Message::Text(bytes.try_into().map_err(|e| {
            tracing::error!(error = %e, "a cached JSON room frame is not UTF-8");
            Code::ServerError
        })?),
    })
}

/// The frame of a chatroom item: a QoS 0 PUBLISH.
fn room_frame(item: &RoomItem) -> v1::Frame {
    v1::Frame {
        body: Some(Body::Publish(v1::Publish {
            packet_id: 0,
            body: Some(v1::publish::Body::Message(wire_message(item.message()))),
        })),
        qos: 0,
        dup: false,
    }
}

/// The wire frame of an outbound item (anything but a DISCONNECT).
pub(crate) fn wire_frame(item: Outbound) -> v1::Frame {
    match item {
        Outbound::Room(item) => room_frame(&item),
        Outbound::PubAck(p) => codec::frame(Body::Puback(v1::PubAck {
            packet_id: p.packet_id,
            code: p.code,
            message: p.text,
            uid: p.uid,
            seq: p.seq,
            sent_time: p.sent_time,
            inbox_seq: p.inbox_seq,
            notice: p.notice,
            content: p.content,
        })),
        Outbound::Status(message) => v1::Frame {
            body: Some(Body::Publish(v1::Publish {
                packet_id: 0,
                body: Some(v1::publish::Body::Message(wire_message(&message))),
            })),
            qos: 0,
            dup: false,
        },
        Outbound::Deliver { message, dup } => v1::Frame {
            body: Some(Body::Publish(v1::Publish {
                packet_id: 0,
                body: Some(v1::publish::Body::Message(wire_message(&message))),
            })),
            qos: 1,
            dup,
        },
        Outbound::QueryAck(q) => {
            let q = *q;
            codec::frame(Body::Queryack(v1::QueryAck {
                query_id: q.query_id,
                code: q.code,
                message: q.text,
                messages: q.messages.iter().map(wire_message).collect(),
                has_more: q.has_more,
                conversations: q.conversations.iter().map(wire_conversation).collect(),
                version: q.version,
                next_page_token: q.next_page_token,
                unread: q.unread,
                user_ids: q.user_ids,
                presence: q
                    .presence
                    .into_iter()
                    .map(|p| v1::Presence {
                        user_id: p.user,
                        online: p.online,
                        last_seen: p.last_seen,
                    })
                    .collect(),
                users: q
                    .users
                    .into_iter()
                    .map(|u| v1::User {
                        user_id: u.user,
                        name: u.name,
                        portrait: u.portrait,
                    })
                    .collect(),
                quiet_hours: q.quiet_hours.map(|(start_minute, minutes)| v1::QuietHours {
                    start_minute,
                    minutes,
                }),
                groups: q.groups.into_iter().map(wire_group).collect(),
                members: q
                    .members
                    .into_iter()
                    .map(|m| v1::GroupMember {
                        user_id: m.user,
                        joined_time: m.joined,
                        muted_until: m.muted_until,
                    })
                    .collect(),
                receipt: q.receipt.map(|r| v1::GroupReceipt {
                    read_user_ids: r.read,
                    unread_user_ids: r.unread,
                }),
                chatrooms: q.chatrooms.into_iter().map(wire_chatroom).collect(),
                entries: q
                    .entries
                    .into_iter()
                    .map(|e| v1::ChatroomEntry {
                        key: e.key,
                        value: e.value,
                        user_id: e.user,
                        updated_time: e.updated,
                        auto_delete: e.auto_delete,
                    })
                    .collect(),
                vapid_public_key: q.vapid_public_key,
            }))
        }
        Outbound::ConnAck { code, text } => codec::frame(Body::Connack(v1::ConnAck {
            code,
            message: text,
            ..Default::default()
        })),
        Outbound::Pong => codec::frame(Body::Pingresp(v1::PingResp {})),
        Outbound::Disconnect(code) => disconnect_frame(code),
    }
}

/// The engine's form of a group QUERY; the body back for the other kinds.
fn group_query(body: v1::query::Body) -> Result<GroupQuery, v1::query::Body> {
    use v1::query::Body as Q;
    Ok(match body {
        Q::GetGroup(g) => GroupQuery::Get { group: g.group_id },
        Q::GetGroupMembers(g) => GroupQuery::Members {
            group: g.group_id,
            limit: g.limit,
            page_token: g.page_token,
        },
        Q::QuitGroup(g) => GroupQuery::Quit { group: g.group_id },
        Q::ListGroups(_) => GroupQuery::List,
        Q::GetGroupReceipt(g) => GroupQuery::Receipt {
            group: g.group_id,
            seq: g.seq,
        },
        Q::CreateDiscussion(c) => GroupQuery::CreateDiscussion {
            name: c.name,
            users: c.user_ids,
        },
        Q::AddDiscussionMembers(a) => GroupQuery::AddDiscussionMembers {
            group: a.group_id,
            users: a.user_ids,
        },
        Q::RemoveDiscussionMember(r) => GroupQuery::RemoveDiscussionMember {
            group: r.group_id,
            user: r.user_id,
        },
        Q::UpdateDiscussion(u) => GroupQuery::UpdateDiscussion {
            group: u.group_id,
            name: u.name,
            invite_open: u.invite_open,
        },
        other => return Err(other),
    })
}

/// The engine's form of a chatroom QUERY; the body back for the other kinds.
fn chatroom_query(body: v1::query::Body) -> Result<ChatroomQuery, v1::query::Body> {
    use v1::query::Body as Q;
    Ok(match body {
        Q::JoinChatroom(j) => ChatroomQuery::Join {
            room: j.chatroom_id,
            recent: j.recent,
            after_seq: j.after_seq,
        },
        Q::QuitChatroom(q) => ChatroomQuery::Quit {
            room: q.chatroom_id,
        },
        Q::GetChatroom(g) => ChatroomQuery::Get {
            room: g.chatroom_id,
        },
        Q::GetChatroomMembers(m) => ChatroomQuery::Members {
            room: m.chatroom_id,
            limit: m.limit,
            page_token: m.page_token,
        },
        Q::SetChatroomEntry(e) => ChatroomQuery::SetEntry {
            room: e.chatroom_id,
            key: e.key,
            value: e.value,
            force: e.force,
            auto_delete: e.auto_delete,
        },
        Q::RemoveChatroomEntry(e) => ChatroomQuery::RemoveEntry {
            room: e.chatroom_id,
            key: e.key,
            force: e.force,
        },
        Q::GetChatroomEntries(e) => ChatroomQuery::Entries {
            room: e.chatroom_id,
            keys: e.keys,
        },
        other => return Err(other),
    })
}

/// The wire form of a chatroom.
pub(crate) fn wire_chatroom(c: tidings_engine::ChatroomOut) -> v1::Chatroom {
    v1::Chatroom {
        chatroom_id: c.id,
        name: c.name,
        extra: c.extra,
        created_time: c.created,
        member_count: c.member_count,
        max_members: c.max_members,
        muted_until: c.muted_until,
        seq: c.seq,
        kept: c.kept,
    }
}

/// The wire form of a group.
pub(crate) fn wire_group(g: tidings_engine::GroupInfo) -> v1::Group {
    v1::Group {
        group_id: g.id,
        name: g.name,
        portrait: g.portrait,
        extra: g.extra,
        owner_id: g.owner,
        created_time: g.created,
        dismissed_time: g.dismissed,
        muted_until: g.muted_until,
        member_count: g.member_count,
        kind: g.kind.as_str().into(),
        invite_open: g.invite_open,
    }
}

/// The engine's form of a conversation QUERY; `None` for the other kinds.
fn conversation_query(body: v1::query::Body) -> Option<ConversationQuery> {
    use v1::query::Body as Q;
    Some(match body {
        Q::ListConversations(l) => ConversationQuery::List {
            types: l.types,
            limit: l.limit,
            page_token: l.page_token,
            changed_since: l.changed_since,
        },
        Q::GetConversation(g) => ConversationQuery::Get {
            conversation_type: g.conversation_type,
            target: g.target_id,
        },
        Q::UpdateConversation(u) => ConversationQuery::Update(ConversationUpdateRequest {
            conversation_type: u.conversation_type,
            target: u.target_id,
            read_seq: u.read_seq,
            read_time: u.read_time,
            pinned: u.pinned,
            muted: u.muted,
            remove: u.remove,
            clear_before_time: u.clear_before_time,
            silent: u.silent,
        }),
        Q::RemoveConversations(r) => ConversationQuery::RemoveAll { types: r.types },
        Q::GetUnread(g) => ConversationQuery::Unread { types: g.types },
        Q::GetHistory(h) => ConversationQuery::History {
            conversation_type: h.conversation_type,
            target: h.target_id,
            from: HistoryStart {
                before_seq: h.before_seq,
                after_seq: h.after_seq,
                before_time: h.before_time,
                after_time: h.after_time,
            },
            count: h.count,
        },
        Q::SetBlocked(b) => ConversationQuery::SetBlocked {
            user: b.user_id,
            blocked: b.blocked,
        },
        Q::GetBlocklist(_) => ConversationQuery::Blocklist,
        Q::GetBlockStatus(b) => ConversationQuery::BlockStatus { user: b.user_id },
        Q::SetQuietHours(q) => ConversationQuery::SetQuietHours {
            start_minute: q.start_minute,
            minutes: q.minutes,
        },
        Q::GetQuietHours(_) => ConversationQuery::QuietHours,
        Q::RegisterPush(r) => ConversationQuery::RegisterPush(PushSubscription {
            endpoint: r.endpoint,
            p256dh: r.p256dh,
            auth: r.auth,
        }),
        Q::UnregisterPush(u) => ConversationQuery::UnregisterPush {
            endpoint: u.endpoint,
        },
        Q::SearchMessages(q) => ConversationQuery::Search {
            query: q.query,
            conversation: (!q.target_id.is_empty()).then_some((q.conversation_type, q.target_id)),
            limit: q.limit,
            page_token: q.page_token,
        },
        Q::RecallMessage(r) => ConversationQuery::Amend {
            conversation_type: r.conversation_type,
            target: r.target_id,
            seq: r.seq,
            action: AmendRequest::Recall,
        },
        Q::EditMessage(e) => ConversationQuery::Amend {
            conversation_type: e.conversation_type,
            target: e.target_id,
            seq: e.seq,
            action: AmendRequest::Edit { content: e.content },
        },
        Q::ReactToMessage(r) => ConversationQuery::Amend {
            conversation_type: r.conversation_type,
            target: r.target_id,
            seq: r.seq,
            action: AmendRequest::React {
                emoji: r.emoji,
                remove: r.remove,
            },
        },
        Q::DeleteMessages(d) => ConversationQuery::Delete {
            conversation_type: d.conversation_type,
            target: d.target_id,
            seqs: d.seqs,
        },
        Q::Sync(_)
        | Q::SubscribePresence(_)
        | Q::GetPresence(_)
        | Q::GetUsers(_)
        | Q::GetGroup(_)
        | Q::GetGroupMembers(_)
        | Q::QuitGroup(_)
        | Q::ListGroups(_)
        | Q::GetGroupReceipt(_)
        | Q::CreateDiscussion(_)
        | Q::AddDiscussionMembers(_)
        | Q::RemoveDiscussionMember(_)
        | Q::UpdateDiscussion(_)
        | Q::JoinChatroom(_)
        | Q::QuitChatroom(_)
        | Q::GetChatroom(_)
        | Q::GetChatroomMembers(_)
        | Q::SetChatroomEntry(_)
        | Q::RemoveChatroomEntry(_)
        | Q::GetChatroomEntries(_) => return None,
    })
}

fn wire_conversation(c: &tidings_engine::ConversationOut) -> v1::Conversation {
    v1::Conversation {
        conversation_type: c.settings.conversation_type,
        target_id: c.settings.target_id.clone(),
        latest: c.latest.as_ref().map(wire_message),
        unread: c.unread,
        read_seq: c.settings.read_seq,
        pinned: c.settings.pinned,
        muted: c.settings.muted,
        removed: c.removed,
        cleared_seq: c.settings.cleared_seq,
        mentioned: c.mentioned,
        peer_read_seq: c.peer_read_seq,
    }
}

fn wire_message(m: &tidings_engine::Delivered) -> v1::Message {
    v1::Message {
        uid: m.uid().into(),
        conversation_type: m.conversation_type(),
        target_id: m.target_id().into(),
        sender_id: m.sender_id().into(),
        seq: m.seq(),
        sent_time: m.sent_time(),
        msg_type: m.msg_type().into(),
        content: m.content().into(),
        push_text: m.push_text().into(),
        client_msg_id: m.client_msg_id().into(),
        inbox_seq: m.inbox_seq(),
        recalled: m.recalled(),
        edited: m.edited(),
        reactions: m
            .reactions()
            .iter()
            .map(|r| v1::Reaction {
                emoji: r.emoji.clone(),
                user_ids: r.users.clone(),
            })
            .collect(),
        mentioned_user_ids: m.mentions().to_vec(),
        mention_all: m.mention_all(),
        directed_user_ids: m.audience().to_vec(),
    }
}
