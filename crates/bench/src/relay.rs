//! The relay baseline: the least a server speaking this protocol over the same WebSocket library
//! must do. It accepts any CONNECT (the token is taken as the user id), forwards each PUBLISH to
//! the target's connections, answers the sender's PUBACK at once, answers sync with nothing and
//! pings with pongs. No authentication, no storage, no retransmission, no acknowledgements kept.
//! Chatrooms are one member list each: a join answers the room's seq, a message to the room is
//! numbered, encoded once and queued to every other member. `tidings bench pairs` and `tidings
//! bench chatroom` run against it to measure what the wire alone allows on a machine.
//!
//! A connection speaks the encoding of its CONNECT, as the server's do: protobuf in binary
//! messages or proto3 JSON in text ones. A token that is a signed user token (three dot-separated
//! parts) is taken for its subject claim, unchecked, so a client that logs in to the server with
//! minted tokens (the peer harness in `../shared/peers` does) can load the relay unchanged.
//!
//! With a journal (`tidings bench relay --journal FILE`) the relay appends each 1:1 message to
//! the file and syncs it (see `journal.rs`) before it forwards the message or answers its PUBACK:
//! the floor of a server that keeps the delivery contract, on the machine it runs on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Encoding, codec, conversation_type};
use tokio::sync::mpsc;

/// Frames queued per relay connection before further ones are dropped (a baseline, not a
/// server: it makes no delivery promise).
const QUEUE: usize = 4096;

/// Where a connection's frames go: its queue, and the encoding it speaks.
#[derive(Clone)]
struct Outlet {
    tx: mpsc::Sender<Message>,
    encoding: Encoding,
}

/// A 1:1 message waiting for its journal sync, and what then goes out.
struct Synced {
    sync: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>,
    deliver: v1::Frame,
    targets: Vec<Outlet>,
    puback: v1::Frame,
}

/// A relay chatroom: its newest seq and its members' connections.
#[derive(Default)]
struct Room {
    seq: u64,
    members: Vec<(u64, Outlet)>,
}

#[derive(Clone, Default)]
struct Relay {
    routes: Arc<Mutex<HashMap<String, Vec<Outlet>>>>,
    rooms: Arc<Mutex<HashMap<String, Room>>>,
    connections: Arc<AtomicU64>,
    /// Per-recipient inbox positions, so clients that order by them work unchanged.
    inbox: Arc<Mutex<HashMap<String, u64>>>,
    uids: Arc<AtomicU64>,
    /// Where 1:1 messages are made durable before they are forwarded and acknowledged.
    journal: Option<crate::journal::Journal>,
}

/// Serves the relay on `listener` until the process ends; with a journal, 1:1 messages are synced
/// to it before they are forwarded and acknowledged.
pub async fn serve(
    listener: tokio::net::TcpListener,
    journal: Option<crate::journal::Journal>,
) -> std::io::Result<()> {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new()
        .route(tidings_gateway::WS_PATH, get(upgrade))
        .with_state(Relay {
            journal,
            ..Relay::default()
        });
    axum::serve(listener, app).await
}

async fn upgrade(ws: WebSocketUpgrade, State(relay): State<Relay>) -> Response {
    ws.read_buffer_size(4096)
        .on_upgrade(move |socket| connection(socket, relay))
}

/// `frame` as a WebSocket message in `encoding`: binary protobuf or JSON text. JSON cannot
/// write an enum field holding a number the schema does not define.
fn encoded(frame: &v1::Frame, encoding: Encoding) -> Result<Message, codec::EncodeError> {
    Ok(match encoding {
        Encoding::Protobuf => Message::Binary(codec::encode_protobuf(frame).into()),
        Encoding::Json => Message::Text(codec::encode_json(frame)?.into()),
    })
}

/// A frame in a WebSocket message, with the encoding the message's type says.
fn decoded(msg: &Message) -> Option<(Result<v1::Frame, codec::DecodeError>, Encoding)> {
    let (bytes, encoding) = match msg {
        Message::Binary(b) => (&b[..], Encoding::Protobuf),
        Message::Text(t) => (t.as_bytes(), Encoding::Json),
        _ => return None,
    };
    Some((codec::decode(bytes, encoding, 1 << 20), encoding))
}

/// The user a CONNECT's token names: the subject of a signed user token (`header.claims.
/// signature`, claims in unpadded base64url JSON; the signature is not checked), else the token
/// itself.
fn user_of(token: &str) -> String {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let subject = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(claims), Some(_), None) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .ok()
            .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
            .and_then(|claims| claims.get("sub")?.as_str().map(String::from)),
        _ => None,
    };
    subject.unwrap_or_else(|| token.to_string())
}

async fn connection(socket: WebSocket, relay: Relay) {
    let (mut sink, mut stream) = socket.split();
    let (user, encoding) = loop {
        let Some(Ok(msg)) = stream.next().await else {
            return;
        };
        match decoded(&msg) {
            Some((
                Ok(v1::Frame {
                    body: Some(Body::Connect(c)),
                    ..
                }),
                encoding,
            )) => break (user_of(&c.token), encoding),
            Some(_) => return,
            None => continue,
        }
    };
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    let me = Outlet {
        tx: tx.clone(),
        encoding,
    };
    relay
        .routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(user.clone())
        .or_default()
        .push(me.clone());
    // The connection's own answers; false once it is gone (or an answer cannot be written).
    let answer = |body: Body| match encoded(&codec::frame(body), encoding) {
        Ok(m) => tx.try_send(m).is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "relay: an answer cannot be encoded; closing");
            false
        }
    };
    // The user's inbox position so far, as the server's CONNACK gives it: a client connecting
    // again expects the next message after it.
    let inbox_seq = relay
        .inbox
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&user)
        .copied()
        .unwrap_or(0);
    let ack = codec::frame(Body::Connack(v1::ConnAck {
        user_id: user.clone(),
        heartbeat_ms: 30_000,
        inbox_seq,
        ..Default::default()
    }));
    let Ok(ack) = encoded(&ack, encoding) else {
        return;
    };
    if sink.send(ack).await.is_err() {
        return;
    }
    // What is queued goes out in one write, as the server's writer does.
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let mut next = Some(m);
            while let Some(m) = next.take() {
                if sink.feed(m).await.is_err() {
                    return;
                }
                next = rx.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    // With a journal, messages wait for their sync here, without holding up the next ones.
    let (synced, waiter) = match &relay.journal {
        Some(journal) => {
            let (queue, mut waiting) = mpsc::unbounded_channel::<Synced>();
            let me = me.clone();
            let waiter = tokio::spawn(async move {
                while let Some(m) = waiting.recv().await {
                    if let Err(e) = m.sync.await {
                        tracing::warn!(error = %e, "relay: the journal failed; closing");
                        return;
                    }
                    send_all(&m.deliver, m.targets.iter());
                    if send_all(&m.puback, std::iter::once(&me)) == 0 {
                        return;
                    }
                }
            });
            (Some((journal.clone(), queue)), Some(waiter))
        }
        None => (None, None),
    };
    let connection = relay.connections.fetch_add(1, Ordering::Relaxed);
    // Conversation seqs, per target, for this sender.
    let mut seqs: HashMap<String, u64> = HashMap::new();
    while let Some(Ok(msg)) = stream.next().await {
        let Some((decoded, _)) = decoded(&msg) else {
            continue;
        };
        let Ok(frame) = decoded else {
            break;
        };
        // False once the connection is to close.
        let open = match frame.body {
            Some(Body::Publish(v1::Publish {
                packet_id,
                body: Some(v1::publish::Body::Send(send)),
            })) if send.conversation_type == conversation_type::CHATROOM => {
                let seq = relay.post(connection, &user, send);
                answer(Body::Puback(v1::PubAck {
                    packet_id,
                    seq,
                    ..Default::default()
                }))
            }
            Some(Body::Publish(v1::Publish {
                packet_id,
                body: Some(v1::publish::Body::Send(send)),
            })) => {
                let seq = seqs.entry(send.target_id.clone()).or_default();
                *seq += 1;
                let uid = relay.uids.fetch_add(1, Ordering::Relaxed).to_string();
                let inbox_seq = {
                    let mut inbox = relay.inbox.lock().unwrap_or_else(|p| p.into_inner());
                    let n = inbox.entry(send.target_id.clone()).or_default();
                    *n += 1;
                    *n
                };
                let deliver = v1::Frame {
                    body: Some(Body::Publish(v1::Publish {
                        packet_id: 0,
                        body: Some(v1::publish::Body::Message(v1::Message {
                            uid: uid.clone(),
                            conversation_type: send.conversation_type,
                            target_id: user.clone(),
                            sender_id: user.clone(),
                            seq: *seq,
                            sent_time: 0,
                            msg_type: send.msg_type,
                            content: send.content,
                            push_text: send.push_text,
                            client_msg_id: send.client_msg_id,
                            inbox_seq,
                            ..Default::default()
                        })),
                    })),
                    qos: 1,
                    dup: false,
                };
                let targets = relay
                    .routes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&send.target_id)
                    .cloned()
                    .unwrap_or_default();
                let puback = codec::frame(Body::Puback(v1::PubAck {
                    packet_id,
                    uid,
                    seq: *seq,
                    ..Default::default()
                }));
                match &synced {
                    // Forwarded and answered once synced, in the order received.
                    Some((journal, queue)) => queue
                        .send(Synced {
                            sync: Box::pin(journal.append(codec::encode_protobuf(&deliver))),
                            deliver,
                            targets,
                            puback,
                        })
                        .is_ok(),
                    None => {
                        send_all(&deliver, targets.iter());
                        send_all(&puback, std::iter::once(&me)) > 0
                    }
                }
            }
            Some(Body::Query(v1::Query {
                query_id,
                body: Some(v1::query::Body::JoinChatroom(j)),
            })) => relay.join(connection, &me, query_id, j.chatroom_id),
            Some(Body::Query(v1::Query {
                query_id,
                body: Some(v1::query::Body::QuitChatroom(q)),
            })) => {
                let left = relay.quit(connection, &q.chatroom_id);
                answer(Body::Queryack(v1::QueryAck {
                    query_id,
                    chatrooms: vec![left],
                    ..Default::default()
                }))
            }
            Some(Body::Query(q)) => answer(Body::Queryack(v1::QueryAck {
                query_id: q.query_id,
                ..Default::default()
            })),
            Some(Body::Pingreq(_)) => answer(Body::Pingresp(v1::PingResp {})),
            Some(Body::Disconnect(_)) => false,
            _ => true,
        };
        if !open {
            break;
        }
    }
    relay
        .routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(user)
        .or_default()
        .retain(|t| !t.tx.same_channel(&tx));
    relay
        .rooms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values_mut()
        .for_each(|room| room.members.retain(|(c, _)| *c != connection));
    drop(tx);
    writer.abort();
    if let Some(waiter) = waiter {
        waiter.abort();
    }
}

impl Relay {
    /// Adds `connection` to the room (made on first join) and answers the join with the room's
    /// seq; the answer is queued under the room's lock, so it comes before the room's next item.
    /// False if the answer could not be queued.
    fn join(&self, connection: u64, me: &Outlet, query_id: u32, room_id: String) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms.entry(room_id.clone()).or_default();
        if !room.members.iter().any(|(c, _)| *c == connection) {
            room.members.push((connection, me.clone()));
        }
        let ack = codec::frame(Body::Queryack(v1::QueryAck {
            query_id,
            chatrooms: vec![v1::Chatroom {
                chatroom_id: room_id,
                member_count: room.members.len() as u64,
                seq: room.seq,
                ..Default::default()
            }],
            ..Default::default()
        }));
        send_all(&ack, std::iter::once(me)) == 1
    }

    fn quit(&self, connection: u64, room_id: &str) -> v1::Chatroom {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms.entry(room_id.into()).or_default();
        room.members.retain(|(c, _)| *c != connection);
        v1::Chatroom {
            chatroom_id: room_id.into(),
            member_count: room.members.len() as u64,
            seq: room.seq,
            ..Default::default()
        }
    }

    /// Numbers a message to a room and queues it, encoded once, to every member connection but
    /// the sender's (a full queue drops it: the relay makes no promise). Answers its seq.
    fn post(&self, connection: u64, sender: &str, send: v1::Send) -> u64 {
        let uid = self.uids.fetch_add(1, Ordering::Relaxed).to_string();
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms.entry(send.target_id.clone()).or_default();
        room.seq += 1;
        let item = room_item(uid, sender, room.seq, send);
        let members = room.members.iter().filter(|(c, _)| *c != connection);
        send_all(&item, members.map(|(_, m)| m));
        room.seq
    }
}

/// Queues `frame` to each outlet, encoded once per encoding among them. A full queue drops it
/// (the relay makes no promise); a frame JSON cannot write is logged and not sent to JSON
/// connections. Returns how many took it.
fn send_all<'a>(frame: &v1::Frame, outlets: impl Iterator<Item = &'a Outlet>) -> usize {
    let (mut protobuf, mut json) = (None, None);
    let mut sent = 0;
    for outlet in outlets {
        let slot = match outlet.encoding {
            Encoding::Protobuf => &mut protobuf,
            Encoding::Json => &mut json,
        };
        let message = slot.get_or_insert_with(|| {
            encoded(frame, outlet.encoding)
                .inspect_err(|e| tracing::warn!(error = %e, "relay: a frame cannot be encoded"))
                .ok()
        });
        if let Some(m) = message
            && outlet.tx.try_send(m.clone()).is_ok()
        {
            sent += 1;
        }
    }
    sent
}

/// A room's message as a QoS 0 PUBLISH, the form both relays send.
pub(super) fn room_item(uid: String, sender: &str, seq: u64, send: v1::Send) -> v1::Frame {
    v1::Frame {
        body: Some(Body::Publish(v1::Publish {
            packet_id: 0,
            body: Some(v1::publish::Body::Message(v1::Message {
                uid,
                conversation_type: send.conversation_type,
                target_id: send.target_id,
                sender_id: sender.into(),
                seq,
                msg_type: send.msg_type,
                content: send.content,
                push_text: send.push_text,
                client_msg_id: send.client_msg_id,
                ..Default::default()
            })),
        })),
        qos: 0,
        dup: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn relay() -> String {
        relay_with(None).await
    }

    async fn relay_with(journal: Option<crate::journal::Journal>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "ws://{}{}",
            listener.local_addr().unwrap(),
            tidings_gateway::WS_PATH
        );
        tokio::spawn(serve(listener, journal));
        url
    }

    /// A signed user token's shape, with `user` as its subject (the relay checks no signature).
    fn token_of(user: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = serde_json::json!({ "sub": user, "app": "x", "ver": 0 }).to_string();
        format!(
            "{}.{}.{}",
            b64.encode(r#"{"typ":"JWT","alg":"HS256"}"#),
            b64.encode(claims),
            b64.encode("signature")
        )
    }

    fn out(frame: &v1::Frame, encoding: Encoding) -> WsMessage {
        match encoding {
            Encoding::Protobuf => WsMessage::Binary(codec::encode_protobuf(frame).into()),
            Encoding::Json => WsMessage::Text(codec::encode_json(frame).unwrap().into()),
        }
    }

    /// The next frame, which must come in `encoding`.
    async fn next(ws: &mut Ws, encoding: Encoding) -> v1::Frame {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection open")
            .expect("a message");
        match (msg, encoding) {
            (WsMessage::Binary(b), Encoding::Protobuf) => {
                codec::decode(&b, Encoding::Protobuf, 1 << 20).unwrap()
            }
            (WsMessage::Text(t), Encoding::Json) => {
                codec::decode(t.as_bytes(), Encoding::Json, 1 << 20).unwrap()
            }
            (other, _) => panic!("expected a {encoding:?} frame, got {other:?}"),
        }
    }

    /// Connects as `token` and returns the socket and the CONNACK.
    async fn connect(url: &str, token: String, encoding: Encoding) -> (Ws, v1::ConnAck) {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let connect = codec::frame(Body::Connect(v1::Connect {
            protocol_version: 1,
            token,
            ..Default::default()
        }));
        ws.send(out(&connect, encoding)).await.unwrap();
        match next(&mut ws, encoding).await.body {
            Some(Body::Connack(ack)) => (ws, ack),
            other => panic!("expected a CONNACK, got {other:?}"),
        }
    }

    fn send_to(target: &str, packet_id: u32, text: &str) -> v1::Frame {
        codec::frame(Body::Publish(v1::Publish {
            packet_id,
            body: Some(v1::publish::Body::Send(v1::Send {
                conversation_type: conversation_type::PRIVATE,
                target_id: target.into(),
                msg_type: "text".into(),
                content: text.into(),
                client_msg_id: format!("c{packet_id}"),
                ..Default::default()
            })),
        }))
    }

    #[tokio::test]
    async fn a_json_client_with_a_signed_token_talks_to_a_protobuf_one() {
        let url = relay().await;
        let (mut alice, ack) = connect(&url, token_of("alice"), Encoding::Json).await;
        assert_eq!(ack.user_id, "alice", "the token's subject is the user");
        let (mut bob, _) = connect(&url, "bob".into(), Encoding::Protobuf).await;

        alice
            .send(out(&send_to("bob", 7, "hi"), Encoding::Json))
            .await
            .unwrap();
        match next(&mut alice, Encoding::Json).await.body {
            Some(Body::Puback(p)) => assert_eq!((p.packet_id, p.seq), (7, 1)),
            other => panic!("expected a PUBACK, got {other:?}"),
        }
        match next(&mut bob, Encoding::Protobuf).await.body {
            Some(Body::Publish(v1::Publish {
                body: Some(v1::publish::Body::Message(m)),
                ..
            })) => {
                assert_eq!((m.sender_id.as_str(), m.content.as_str()), ("alice", "hi"));
                assert_eq!((m.seq, m.inbox_seq), (1, 1));
            }
            other => panic!("expected a delivery, got {other:?}"),
        }

        // And back, to the JSON side.
        bob.send(out(&send_to("alice", 1, "hello"), Encoding::Protobuf))
            .await
            .unwrap();
        match next(&mut alice, Encoding::Json).await.body {
            Some(Body::Publish(v1::Publish {
                body: Some(v1::publish::Body::Message(m)),
                ..
            })) => assert_eq!((m.sender_id.as_str(), m.content.as_str()), ("bob", "hello")),
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    /// With a journal, a message is in the file by the time its PUBACK comes, as the delivery
    /// that follows it.
    #[tokio::test]
    async fn a_journaling_relay_has_a_message_in_its_file_before_its_puback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let url = relay_with(Some(crate::journal::Journal::open(&path, 1 << 20).unwrap())).await;
        let (mut alice, _) = connect(&url, "alice".into(), Encoding::Protobuf).await;
        let (mut bob, _) = connect(&url, "bob".into(), Encoding::Protobuf).await;
        alice
            .send(out(&send_to("bob", 3, "kept"), Encoding::Protobuf))
            .await
            .unwrap();
        match next(&mut alice, Encoding::Protobuf).await.body {
            Some(Body::Puback(p)) => assert_eq!(p.packet_id, 3),
            other => panic!("expected a PUBACK, got {other:?}"),
        }
        let bytes = std::fs::read(&path).unwrap();
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert!(bytes[4 + len..].iter().all(|b| *b == 0), "one record");
        let kept = codec::decode(&bytes[4..4 + len], Encoding::Protobuf, 1 << 20).unwrap();
        let delivered = next(&mut bob, Encoding::Protobuf).await;
        assert_eq!(kept, delivered, "the journal holds what was delivered");
    }

    #[tokio::test]
    async fn a_connack_gives_the_users_inbox_position_so_far() {
        let url = relay().await;
        let (mut alice, _) = connect(&url, "alice".into(), Encoding::Protobuf).await;
        let (mut bob, ack) = connect(&url, token_of("bob"), Encoding::Json).await;
        assert_eq!(ack.inbox_seq, 0);
        for k in 1..=3 {
            alice
                .send(out(&send_to("bob", k, "x"), Encoding::Protobuf))
                .await
                .unwrap();
        }
        for k in 1..=3 {
            match next(&mut bob, Encoding::Json).await.body {
                Some(Body::Publish(v1::Publish {
                    body: Some(v1::publish::Body::Message(m)),
                    ..
                })) => assert_eq!(m.inbox_seq, k),
                other => panic!("expected a delivery, got {other:?}"),
            }
        }
        drop(bob);
        let (_bob, ack) = connect(&url, token_of("bob"), Encoding::Json).await;
        assert_eq!(
            ack.inbox_seq, 3,
            "a connection again starts after what was delivered"
        );
    }

    #[test]
    fn a_token_that_is_not_signed_is_the_user_itself() {
        assert_eq!(user_of("u42"), "u42");
        assert_eq!(user_of(&token_of("u42")), "u42");
        // Three parts whose middle is not base64url JSON with a subject: taken as it is.
        assert_eq!(user_of("a.b.c"), "a.b.c");
        assert_eq!(user_of("a.b.c.d"), "a.b.c.d");
    }
}
