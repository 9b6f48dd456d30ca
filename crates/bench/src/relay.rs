//! The relay baseline: the least a server speaking this protocol over the same WebSocket library
//! must do. It accepts any CONNECT (the token is taken as the user id), forwards each PUBLISH to
//! the target's connections, answers the sender's PUBACK at once, answers sync with nothing and
//! pings with pongs. No authentication, no storage, no retransmission, no acknowledgements kept.
//! Chatrooms are one member list each: a join answers the room's seq, a message to the room is
//! numbered, encoded once and queued to every other member. `tidings bench pairs` and `tidings
//! bench chatroom` run against it to measure what the wire alone allows on a machine.

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

/// A relay chatroom: its newest seq and its members' connections.
#[derive(Default)]
struct Room {
    seq: u64,
    members: Vec<(u64, mpsc::Sender<Message>)>,
}

#[derive(Clone, Default)]
struct Relay {
    routes: Arc<Mutex<HashMap<String, Vec<mpsc::Sender<Message>>>>>,
    rooms: Arc<Mutex<HashMap<String, Room>>>,
    connections: Arc<AtomicU64>,
    /// Per-recipient inbox positions, so clients that order by them work unchanged.
    inbox: Arc<Mutex<HashMap<String, u64>>>,
    uids: Arc<AtomicU64>,
}

/// Serves the relay on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new()
        .route(tidings_gateway::WS_PATH, get(upgrade))
        .with_state(Relay::default());
    axum::serve(listener, app).await
}

async fn upgrade(ws: WebSocketUpgrade, State(relay): State<Relay>) -> Response {
    ws.read_buffer_size(4096)
        .on_upgrade(move |socket| connection(socket, relay))
}

fn binary(frame: &v1::Frame) -> Message {
    Message::Binary(codec::encode_protobuf(frame).into())
}

async fn connection(socket: WebSocket, relay: Relay) {
    let (mut sink, mut stream) = socket.split();
    let user = loop {
        match stream.next().await {
            Some(Ok(Message::Binary(b))) => match codec::decode(&b, Encoding::Protobuf, 1 << 20) {
                Ok(v1::Frame {
                    body: Some(Body::Connect(c)),
                    ..
                }) => break c.token,
                _ => return,
            },
            Some(Ok(_)) => continue,
            _ => return,
        }
    };
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    relay
        .routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(user.clone())
        .or_default()
        .push(tx.clone());
    let ack = codec::frame(Body::Connack(v1::ConnAck {
        user_id: user.clone(),
        heartbeat_ms: 30_000,
        ..Default::default()
    }));
    if sink.send(binary(&ack)).await.is_err() {
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
    let connection = relay.connections.fetch_add(1, Ordering::Relaxed);
    // Conversation seqs, per target, for this sender.
    let mut seqs: HashMap<String, u64> = HashMap::new();
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Binary(b) = msg else { continue };
        let Ok(frame) = codec::decode(&b, Encoding::Protobuf, 1 << 20) else {
            break;
        };
        match frame.body {
            Some(Body::Publish(v1::Publish {
                packet_id,
                body: Some(v1::publish::Body::Send(send)),
            })) if send.conversation_type == conversation_type::CHATROOM => {
                let seq = relay.post(connection, &user, send);
                let puback = binary(&codec::frame(Body::Puback(v1::PubAck {
                    packet_id,
                    seq,
                    ..Default::default()
                })));
                if tx.try_send(puback).is_err() {
                    break;
                }
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
                let deliver = binary(&v1::Frame {
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
                });
                let targets = relay
                    .routes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&send.target_id)
                    .cloned()
                    .unwrap_or_default();
                for t in targets {
                    let _ = t.try_send(deliver.clone());
                }
                let puback = binary(&codec::frame(Body::Puback(v1::PubAck {
                    packet_id,
                    uid,
                    seq: *seq,
                    ..Default::default()
                })));
                if tx.try_send(puback).is_err() {
                    break;
                }
            }
            Some(Body::Query(v1::Query {
                query_id,
                body: Some(v1::query::Body::JoinChatroom(j)),
            })) => relay.join(connection, &tx, query_id, j.chatroom_id),
            Some(Body::Query(v1::Query {
                query_id,
                body: Some(v1::query::Body::QuitChatroom(q)),
            })) => {
                let left = relay.quit(connection, &q.chatroom_id);
                let ack = binary(&codec::frame(Body::Queryack(v1::QueryAck {
                    query_id,
                    chatrooms: vec![left],
                    ..Default::default()
                })));
                let _ = tx.try_send(ack);
            }
            Some(Body::Query(q)) => {
                let empty = binary(&codec::frame(Body::Queryack(v1::QueryAck {
                    query_id: q.query_id,
                    ..Default::default()
                })));
                let _ = tx.try_send(empty);
            }
            Some(Body::Pingreq(_)) => {
                let _ = tx.try_send(binary(&codec::frame(Body::Pingresp(v1::PingResp {}))));
            }
            Some(Body::Disconnect(_)) => break,
            _ => {}
        }
    }
    relay
        .routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(user)
        .or_default()
        .retain(|t| !t.same_channel(&tx));
    relay
        .rooms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values_mut()
        .for_each(|room| room.members.retain(|(c, _)| *c != connection));
    drop(tx);
    writer.abort();
}

impl Relay {
    /// Adds `connection` to the room (made on first join) and answers the join with the room's
    /// seq; the answer is queued under the room's lock, so it comes before the room's next item.
    fn join(&self, connection: u64, tx: &mpsc::Sender<Message>, query_id: u32, room_id: String) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms.entry(room_id.clone()).or_default();
        if !room.members.iter().any(|(c, _)| *c == connection) {
            room.members.push((connection, tx.clone()));
        }
        let ack = binary(&codec::frame(Body::Queryack(v1::QueryAck {
            query_id,
            chatrooms: vec![v1::Chatroom {
                chatroom_id: room_id,
                member_count: room.members.len() as u64,
                seq: room.seq,
                ..Default::default()
            }],
            ..Default::default()
        })));
        let _ = tx.try_send(ack);
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
        let frame = binary(&room_item(uid, sender, room.seq, send));
        for (c, member) in &room.members {
            if *c != connection {
                let _ = member.try_send(frame.clone());
            }
        }
        room.seq
    }
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
