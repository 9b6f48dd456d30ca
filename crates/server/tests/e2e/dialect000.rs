//! The seed-000 dialect (protobuf at `/ws`), driven by a client written from the seed document
//! and the schema shipped for client authors (`docs/dialects/seed000.proto`): the types below
//! are that file's, declared here by hand as a client author would generate them.

use std::time::Duration;

use prost::Message as _;
use serde_json::json;
use tidings_engine::SendRequest;
use tidings_proto::{Code, conversation_type};

use crate::util::{SeedWs, TestServer, api};

#[derive(Clone, PartialEq, prost::Message)]
struct Input {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(bytes = "vec", tag = "2")]
    data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Output {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(int32, tag = "2")]
    code: i32,
    #[prost(string, tag = "3")]
    code_msg: String,
    #[prost(bytes = "vec", tag = "4")]
    data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Login {
    #[prost(string, tag = "1")]
    token: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Msg {
    #[prost(int32, tag = "1")]
    pub(crate) session_type: i32,
    #[prost(int64, tag = "2")]
    pub(crate) receiver_id: i64,
    #[prost(int64, tag = "3")]
    pub(crate) sender_id: i64,
    #[prost(int32, tag = "4")]
    pub(crate) message_type: i32,
    #[prost(string, tag = "5")]
    pub(crate) content: String,
    #[prost(int64, tag = "6")]
    pub(crate) seq: i64,
    #[prost(int64, tag = "7")]
    pub(crate) send_time: i64,
    #[prost(string, tag = "17")]
    pub(crate) sender: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MessageMsg {
    #[prost(int64, tag = "1")]
    client_id: i64,
    #[prost(message, optional, tag = "2")]
    msg: Option<Msg>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Ack {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(int64, tag = "2")]
    client_id: i64,
    #[prost(int64, tag = "3")]
    seq: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SyncInput {
    #[prost(int64, tag = "1")]
    seq: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SyncOutput {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<Msg>,
    #[prost(bool, tag = "2")]
    has_more: bool,
}

/// A seed-000 client.
pub(crate) struct Client {
    ws: SeedWs,
    client_id: i64,
}

impl Client {
    async fn open(server: &TestServer) -> Client {
        Client {
            ws: SeedWs::open(server, "/ws").await,
            client_id: 0,
        }
    }

    /// Opens and logs in as `user`.
    pub(crate) async fn login(server: &TestServer, user: &str) -> Client {
        let mut c = Client::open(server).await;
        let token = server.token(user).await;
        c.send(1, Login { token }).await;
        let out = c.out().await;
        assert_eq!((out.r#type, out.code), (4, 200), "{}", out.code_msg);
        assert_eq!(Ack::decode(out.data.as_slice()).unwrap().r#type, 3);
        c
    }

    pub(crate) async fn send(&mut self, kind: i32, data: impl prost::Message) {
        let input = Input {
            r#type: kind,
            data: data.encode_to_vec(),
        };
        self.ws.send_binary(input.encode_to_vec()).await;
    }

    async fn out(&mut self) -> Output {
        Output::decode(self.ws.binary().await.as_slice()).expect("an Output")
    }

    /// Sends a text message and returns its client id.
    pub(crate) async fn text(&mut self, session_type: i32, to: i64, content: &str) -> i64 {
        self.client_id += 1;
        let m = MessageMsg {
            client_id: self.client_id,
            msg: Some(Msg {
                session_type,
                receiver_id: to,
                message_type: 1,
                content: content.into(),
                send_time: 1_600_000_000_000 + self.client_id,
                ..Default::default()
            }),
        };
        self.send(3, m).await;
        self.client_id
    }

    /// The next frame, which must be an ACK of type 1 for `client_id`; returns its seq.
    pub(crate) async fn stored(&mut self, client_id: i64) -> i64 {
        let out = self.out().await;
        assert_eq!((out.r#type, out.code), (4, 200), "{}", out.code_msg);
        let ack = Ack::decode(out.data.as_slice()).unwrap();
        assert_eq!((ack.r#type, ack.client_id), (1, client_id));
        assert!(ack.seq > 0);
        ack.seq
    }

    /// The next frame, which must be a message.
    pub(crate) async fn message(&mut self) -> Msg {
        let out = self.out().await;
        assert_eq!((out.r#type, out.code), (3, 200), "{}", out.code_msg);
        MessageMsg::decode(out.data.as_slice())
            .unwrap()
            .msg
            .unwrap()
    }

    pub(crate) async fn ack(&mut self, seq: i64) {
        self.send(
            4,
            Ack {
                r#type: 2,
                client_id: 0,
                seq,
            },
        )
        .await;
    }

    async fn sync(&mut self, seq: i64) -> SyncOutput {
        self.send(5, SyncInput { seq }).await;
        let out = self.out().await;
        assert_eq!((out.r#type, out.code), (5, 200), "{}", out.code_msg);
        SyncOutput::decode(out.data.as_slice()).unwrap()
    }
}

#[tokio::test]
async fn a_private_message_is_acked_delivered_and_resent_until_the_receiver_acks() {
    let server = TestServer::start_with(|c| c.ack_timeout = Duration::from_millis(200)).await;
    let mut a = Client::login(&server, "1001").await;
    let mut b = Client::login(&server, "1002").await;

    let id = a.text(1, 1002, "hello").await;
    a.stored(id).await;
    let first = b.message().await;
    assert_eq!(
        (
            first.session_type,
            first.sender_id,
            first.receiver_id,
            first.message_type
        ),
        (1, 1001, 1002, 1)
    );
    assert_eq!(first.content, "hello");
    assert!(first.send_time > 1_600_000_000_000);
    // Not acknowledged: it comes again.
    let again = b.message().await;
    assert_eq!((again.seq, again.content.as_str()), (first.seq, "hello"));
    b.ack(first.seq).await;

    // Once acknowledged it is not sent again: the next message comes, and while it waits for
    // its own resend, the first never reappears (it was due before it).
    let id = a.text(1, 1002, "second").await;
    a.stored(id).await;
    let mut seen = Vec::new();
    loop {
        let m = b.message().await;
        assert_ne!(m.seq, first.seq, "resent after its ACK");
        seen.push(m.content.clone());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, ["second", "second"]);
}

#[tokio::test]
async fn a_resend_with_the_same_client_id_is_stored_once() {
    let server = TestServer::start().await;
    let mut a = Client::login(&server, "1101").await;
    let m = MessageMsg {
        client_id: 1,
        msg: Some(Msg {
            session_type: 1,
            receiver_id: 1102,
            message_type: 1,
            content: "once".into(),
            send_time: 1234,
            ..Default::default()
        }),
    };
    a.send(3, m.clone()).await;
    let seq = a.stored(1).await;
    a.send(3, m).await;
    assert_eq!(a.stored(1).await, seq);
    let mut b = Client::login(&server, "1102").await;
    let page = b.sync(0).await;
    assert_eq!(page.messages.len(), 1);
}

#[tokio::test]
async fn group_messages_and_images_reach_every_member() {
    let server = TestServer::start().await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "500", "ownerId": "1201", "name": "G", "memberIds": ["1202"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut a = Client::login(&server, "1201").await;
    let mut b = Client::login(&server, "1202").await;
    a.client_id += 1;
    let id = a.client_id;
    a.send(
        3,
        MessageMsg {
            client_id: id,
            msg: Some(Msg {
                session_type: 2,
                receiver_id: 500,
                message_type: 2,
                content: "https://img/x.png".into(),
                ..Default::default()
            }),
        },
    )
    .await;
    a.stored(id).await;
    let got = b.message().await;
    assert_eq!(
        (
            got.session_type,
            got.receiver_id,
            got.sender_id,
            got.message_type
        ),
        (2, 500, 1201, 2)
    );
    assert_eq!(got.content, "https://img/x.png");
    // A voice message carries its URL too.
    a.send(
        3,
        MessageMsg {
            client_id: id + 1,
            msg: Some(Msg {
                session_type: 2,
                receiver_id: 500,
                message_type: 3,
                content: "https://audio/x.ogg".into(),
                ..Default::default()
            }),
        },
    )
    .await;
    a.stored(id + 1).await;
    let got = b.message().await;
    assert_eq!(
        (got.message_type, got.content.as_str()),
        (3, "https://audio/x.ogg")
    );

    // Not a member: refused with the group's code in the ACK.
    let mut c = Client::login(&server, "1203").await;
    let id = c.text(2, 500, "let me in").await;
    let out = c.out().await;
    assert_eq!(
        out.code as u32,
        Code::NotInGroup.as_u32(),
        "{}",
        out.code_msg
    );
    assert_eq!(Ack::decode(out.data.as_slice()).unwrap().client_id, id);
}

#[tokio::test]
async fn offline_messages_sync_in_pages_by_seq() {
    let server = TestServer::start().await;
    let engine = &server.running().engine;
    for i in 0..130 {
        engine
            .send_as(
                "1301",
                SendRequest {
                    client_msg_id: format!("m{i}"),
                    conversation_type: conversation_type::PRIVATE,
                    target_id: "1302".into(),
                    msg_type: "text".into(),
                    content: json!({ "text": format!("n{i}") }).to_string(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    // A user whose id is not a number still reaches a seed-000 client, named by `sender`.
    engine
        .send_as(
            "carol",
            SendRequest {
                client_msg_id: "c".into(),
                conversation_type: conversation_type::PRIVATE,
                target_id: "1302".into(),
                msg_type: "text".into(),
                content: json!({ "text": "from carol" }).to_string(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut b = Client::login(&server, "1302").await;
    let mut texts = Vec::new();
    let mut seq = 0;
    let mut pages = 0;
    loop {
        let page = b.sync(seq).await;
        pages += 1;
        for m in &page.messages {
            assert!(m.seq > seq, "pages move forward");
            seq = m.seq;
            texts.push(m.content.clone());
        }
        if !page.has_more {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(texts.len(), 131);
    assert_eq!(texts[0], "n0");
    assert_eq!(texts[129], "n129");
    assert_eq!(texts[130], "from carol");
    let last = b.sync(seq - 1).await;
    assert_eq!(last.messages[0].sender_id, 0);
    assert_eq!(last.messages[0].sender, "carol");
    // From the end: nothing more.
    let end = b.sync(seq).await;
    assert!(end.messages.is_empty() && !end.has_more);
}

#[tokio::test]
async fn a_resent_login_is_answered_as_the_first() {
    let server = TestServer::start().await;
    let mut c = Client::open(&server).await;
    let token = server.token("1411").await;
    // The seed's client resends its Login when the answer is slow: here before the first answer.
    c.send(
        1,
        Login {
            token: token.clone(),
        },
    )
    .await;
    c.send(
        1,
        Login {
            token: token.clone(),
        },
    )
    .await;
    for _ in 0..2 {
        let out = c.out().await;
        assert_eq!((out.r#type, out.code), (4, 200), "{}", out.code_msg);
        assert_eq!(Ack::decode(out.data.as_slice()).unwrap().r#type, 3);
    }
    // And again later, on the open session.
    c.send(1, Login { token }).await;
    let out = c.out().await;
    assert_eq!((out.r#type, out.code), (4, 200), "{}", out.code_msg);
    // Another user's token on the same connection is refused; the session goes on.
    let other = server.token("1412").await;
    c.send(1, Login { token: other }).await;
    let out = c.out().await;
    assert_eq!(
        (out.r#type, out.code as u32),
        (4, Code::AlreadyConnected.as_u32())
    );
    let id = c.text(1, 1412, "still 1411").await;
    c.stored(id).await;
}

#[tokio::test]
async fn heartbeats_are_answered() {
    let server = TestServer::start().await;
    let mut a = Client::login(&server, "1401").await;
    a.send(2, Login::default()).await;
    let out = a.out().await;
    assert_eq!((out.r#type, out.code), (2, 200));
}

#[tokio::test]
async fn bad_frames_are_refused_with_codes() {
    let server = TestServer::start().await;

    // A bad token: the login ACK carries the code, then the connection closes.
    let mut c = Client::open(&server).await;
    c.send(
        1,
        Login {
            token: "forged".into(),
        },
    )
    .await;
    let out = c.out().await;
    assert_eq!(
        (out.r#type, out.code as u32),
        (4, Code::TokenInvalid.as_u32())
    );
    c.ws.expect_closed().await;

    // Anything before the login.
    let mut c = Client::open(&server).await;
    c.send(5, SyncInput { seq: 0 }).await;
    assert_eq!(c.out().await.code as u32, Code::NotConnected.as_u32());
    c.ws.expect_closed().await;

    // Bytes that are not an Input, and text frames.
    let mut c = Client::login(&server, "1501").await;
    c.ws.send_binary(vec![0xff, 0xff, 0xff]).await;
    assert_eq!(c.out().await.code as u32, Code::MalformedFrame.as_u32());
    c.ws.expect_closed().await;
    let mut c = Client::login(&server, "1501").await;
    c.ws.send_text("{\"type\":2}").await;
    assert_eq!(c.out().await.code as u32, Code::MalformedFrame.as_u32());
    c.ws.expect_closed().await;

    // An unknown type and a message of an unknown kind are answered; the connection stays.
    let mut c = Client::login(&server, "1501").await;
    c.send(9, Login::default()).await;
    let out = c.out().await;
    assert_eq!(
        (out.r#type, out.code as u32),
        (9, Code::UnknownFrameKind.as_u32())
    );
    c.send(
        3,
        MessageMsg {
            client_id: 7,
            msg: Some(Msg {
                session_type: 1,
                receiver_id: 1502,
                message_type: 9,
                content: "?".into(),
                ..Default::default()
            }),
        },
    )
    .await;
    let out = c.out().await;
    assert_eq!(
        (out.r#type, out.code as u32),
        (4, Code::InvalidMessageType.as_u32())
    );
    assert_eq!(Ack::decode(out.data.as_slice()).unwrap().client_id, 7);
    let id = c.text(1, 1502, "still here").await;
    c.stored(id).await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_and_one_that_beats_is_not() {
    let server = TestServer::start_with(|c| c.heartbeat = Duration::from_millis(200)).await;
    let mut quiet = Client::login(&server, "1601").await;
    // Nor does it answer the server's WebSocket Pings.
    quiet.ws.mute();
    let mut beating = Client::login(&server, "1602").await;
    // The quiet one is told why, then closed; meanwhile the other beats and is answered.
    let dropped = tokio::spawn(async move {
        let out = quiet.out().await;
        quiet.ws.expect_closed().await;
        out
    });
    while !dropped.is_finished() {
        beating.send(2, Login::default()).await;
        assert_eq!(beating.out().await.r#type, 2);
        // Not a wait for a condition: the client beats at this pace, inside the heartbeat.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = dropped.await.unwrap();
    assert_eq!(
        (out.r#type, out.code as u32),
        (0, Code::HeartbeatTimeout.as_u32())
    );
    // Still connected: it can send.
    let id = beating.text(1, 1601, "still here").await;
    beating.stored(id).await;
}
