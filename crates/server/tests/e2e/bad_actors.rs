//! What an attacker can do to the server, tried as one would. First the connection layer:
//! sockets held open without a request, requests dripped a line at a time, more connections
//! than the server has room for, a forged client address, frames larger than the limit, a
//! consumer that never reads, one user opening connection after connection; each test checks
//! the attacker is bounded and that everyone else keeps being served. Then one reproduction of
//! each other finding of the security review, as its client did it: registering a user the app
//! server manages, renewing another user's file link, spending signed headers on another
//! request, a frame the server could not encode, content nested past what reads back.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tidings_client::{Client, ConversationUpdate, Outgoing};
use tidings_proto::conversation_type::{CHATROOM, PRIVATE};
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Code, Encoding};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::accounts::not_registered;
use crate::api::assert_signature_refused;
use crate::bad_input::{assert_usable, nested_content, puback};
use crate::files::{Upload, call, expiry_of, link, naming, now_secs, sent_seq};
use crate::process::{ServerProcess, token};
use crate::util::*;

/// Reads until the server closes the socket (end of stream, or a reset); returns what came.
async fn read_to_close(socket: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the socket open: {got:?}"),
        }
    }
}

/// Whether the server has closed the socket, without waiting.
async fn closed_by_server(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(1), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Sends a message from `from` to `to` and waits for it on `to`'s side.
async fn exchange(url: &str, from: String, to: String) {
    let mut sender = tidings_client::ClientConfig::new(url, from);
    sender.device_id = "phone".into();
    let mut receiver = tidings_client::ClientConfig::new(url, to);
    receiver.device_id = "phone".into();
    let (alice, _alice_events) = Client::connect(sender).await.unwrap();
    let (_bob, mut bob_events) = Client::connect(receiver).await.unwrap();
    alice
        .send(Outgoing::text("bob", "still served"))
        .await
        .unwrap();
    let m = next_message(&mut bob_events).await;
    assert_eq!(m.content, r#"{"text":"still served"}"#);
}

// Finding 1: idle sockets lock everyone out (and what else bounds a client that has not
// authenticated).

#[tokio::test]
async fn idle_sockets_do_not_lock_out_a_real_client() {
    // The finding: with the open-file limit lowered, a few hundred sockets that never finish a
    // request made every real connection time out. Here the server may hold 256 files, and
    // the attacker opens 400 sockets from the client's own address: silent ones, ones that
    // stop inside the request line, and ones that send one header line now and then.
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_file_limit(cwd.path(), 256, &[]);
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut attackers = Vec::new();
    for i in 0..400 {
        // A server that stopped accepting (out of files) leaves connects hanging in the
        // backlog: that is the failure this test is about.
        let mut socket = tokio::time::timeout(WAIT, TcpStream::connect(&addr))
            .await
            .expect("the server keeps accepting connections")
            .unwrap();
        match i % 3 {
            0 => {}
            1 => {
                let _ = socket.write_all(b"GET /v1/ws HT").await;
            }
            _ => {
                let _ = socket
                    .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
                    .await;
            }
        }
        attackers.push(socket);
    }
    // Dripping header lines keeps them busy, not finished.
    for socket in attackers.iter_mut().skip(2).step_by(3) {
        let _ = socket.write_all(b"X-Slow: 2\r\n").await;
    }

    let data = cwd.path().join("data");
    let (alice, bob) = (token(&data, "alice"), token(&data, "bob"));
    // The acceptance bound: a real client connects and exchanges a message within 2 s.
    tokio::time::timeout(Duration::from_secs(2), exchange(&server.url, alice, bob))
        .await
        .expect("a real client got through within 2 s");

    // Most of the attacker's sockets were closed to make room: no more stay open than the
    // connections the file limit leaves room for (256 less a reserve of 128).
    let mut open = 0;
    for socket in &mut attackers {
        if !closed_by_server(socket).await {
            open += 1;
        }
    }
    assert!(open <= 128, "{open} idle sockets still open");
}

#[tokio::test]
async fn a_request_head_has_one_deadline_however_it_is_dripped() {
    let server = TestServer::start_with(|c| c.request_timeout = Duration::from_millis(300)).await;
    let addr = server.running().addr;

    // Nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // One header line every 100 ms: activity, but the head never ends.
    let mut dripping = TcpStream::connect(addr).await.unwrap();
    dripping
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let drip = async {
        for i in 0.. {
            // Not a wait for a condition: the pace of the drip is what the test is about.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if dripping
                .write_all(format!("X-Line-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
            if closed_by_server(&mut dripping).await {
                return i;
            }
        }
        unreachable!()
    };
    let lines = tokio::time::timeout(WAIT, drip)
        .await
        .expect("the dripping socket was closed");
    assert!(lines < 30, "closed after {lines} lines");
    read_to_close(&mut silent).await;

    // A kept-alive connection that goes quiet after a request is closed the same way.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_to_close(&mut idle).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_request_body_that_does_not_arrive_in_time_gets_408() {
    let server = TestServer::start_with(|c| c.request_timeout = Duration::from_millis(300)).await;
    let mut socket = TcpStream::connect(server.running().addr).await.unwrap();
    // A long-poll opening that promises 1,000 bytes and sends 10.
    socket
        .write_all(b"POST /v1/poll HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"connect\"")
        .await
        .unwrap();
    let answer = String::from_utf8(read_to_close(&mut socket).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], Code::RequestTimeout.as_u32());
}

#[tokio::test]
async fn a_full_server_refuses_cleanly_and_makes_room_from_the_unauthenticated() {
    let server = TestServer::start_with(|c| c.max_connections = Some(3)).await;
    let addr = server.running().addr;
    let _a = Raw::connected(&server, "alice", Encoding::Json).await;
    let _b = Raw::connected(&server, "bob", Encoding::Json).await;
    // The third place is taken by a socket that never authenticates...
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(idle.read(&mut buf).await.unwrap() > 0, "served");
    // ...which gives it up to a newcomer, who authenticates.
    let _c = Raw::connected(&server, "carol", Encoding::Json).await;
    read_to_close(&mut idle).await;

    // Now every place is an authenticated client's: the next socket is refused with a whole
    // HTTP answer, and a WebSocket client sees the status.
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let answer = String::from_utf8(read_to_close(&mut refused).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], Code::ServerFull.as_u32());
    match tokio_tungstenite::connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected a 503, got {other:?}"),
    }
}

#[tokio::test]
async fn unauthenticated_websockets_past_the_cap_are_closed_oldest_first() {
    let server = TestServer::start_with(|c| c.max_unauthenticated_per_address = 2).await;
    let mut first = Raw::open(&server, Encoding::Json).await;
    let mut second = Raw::open(&server, Encoding::Json).await;
    let _third = Raw::open(&server, Encoding::Json).await;
    first.expect_disconnect(Code::UnauthenticatedEvicted).await;
    // The second is still there, and can still log in.
    second.log_in(&server.token("alice").await).await;
    // Authenticated, it no longer counts: two more unauthenticated ones leave it alone.
    let _fourth = Raw::open(&server, Encoding::Json).await;
    let _fifth = Raw::open(&server, Encoding::Json).await;
    second
        .send(tidings_proto::codec::frame(Body::Pingreq(v1::PingReq {})))
        .await;
    assert!(matches!(
        second.recv().await,
        Got::Frame(v1::Frame {
            body: Some(Body::Pingresp(_)),
            ..
        })
    ));
}

/// Registers `account` with a client address header; returns the HTTP status.
async fn register_from(server: &TestServer, account: &str, forwarded: &str) -> u16 {
    let url = format!("{}/v1/accounts/register", server.url());
    let body = serde_json::json!({ "account": account, "password": "correct horse" }).to_string();
    let forwarded = forwarded.to_string();
    tokio::task::spawn_blocking(move || {
        agent()
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", &forwarded)
            .send(&body)
            .unwrap()
            .status()
            .as_u16()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_client_address_header_counts_only_from_a_trusted_proxy() {
    // Registrations are limited per client address: 10 at once. A client that is not a
    // trusted proxy cannot escape the limit by naming other addresses.
    let server = TestServer::start().await;
    for i in 0..10 {
        let status = register_from(&server, &format!("user{i}"), &format!("192.0.2.{i}")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(register_from(&server, "user10", "192.0.2.10").await, 429);

    // Behind a trusted proxy (this test is the proxy), each named client has its own limit.
    let server = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for i in 0..10 {
        let status = register_from(&server, &format!("user{i}"), "192.0.2.1").await;
        assert_eq!(status, 200);
    }
    assert_eq!(register_from(&server, "user10", "192.0.2.1").await, 429);
    assert_eq!(register_from(&server, "user11", "192.0.2.2").await, 200);
    // What the client wrote itself, left of the proxy's entry, is not believed.
    assert_eq!(
        register_from(&server, "user12", "192.0.2.99, 192.0.2.1").await,
        429
    );
}

/// Reads a WebSocket until its close frame; returns the close code (None: no close frame,
/// such as after a reset).
async fn close_code<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<CloseCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server answers")
        {
            Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

// Finding 5: an oversized frame was answered with a TCP reset.

#[tokio::test]
async fn an_oversized_websocket_message_is_closed_with_1009_not_reset() {
    let server = TestServer::start().await;
    // 1 MiB: far past the WebSocket layer's own limit (4 × 64 KiB), before and after CONNECT.
    let big = "x".repeat(1 << 20);
    for connected in [false, true] {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        if connected {
            let token = server.token("alice").await;
            let frame = tidings_proto::codec::encode_json(&connect(&token)).unwrap();
            ws.send(WsMessage::Text(frame.into())).await.unwrap();
        }
        ws.send(WsMessage::Text(big.clone().into())).await.unwrap();
        assert_eq!(
            close_code(&mut ws).await,
            Some(CloseCode::Size),
            "connected: {connected}"
        );
    }
    // The seed dialects alike (seed 003's path carries its token).
    let token = server.token("bob").await;
    let url = format!("ws://{}/imserver/{token}", server.running().addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(WsMessage::Text(big.into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn a_consumer_that_never_reads_is_cut_off_while_others_are_served() {
    let server = TestServer::start_with(|c| c.outbound_queue_bytes = 64 * 1024).await;
    // Bob connects and never reads again.
    let _bob = Raw::connected(&server, "bob", Encoding::Json).await;
    let (alice, _alice_events) = server.client("alice", "phone").await;
    let (carol, _carol_events) = server.client("carol", "phone").await;
    let (_dave, mut dave_events) = server.client("dave", "phone").await;
    let engine = server.running().engine.clone();
    let sessions = engine.session_count();
    let chunk = "y".repeat(15_000);
    let flood = async {
        for _ in 0..2000 {
            if engine.session_count() < sessions {
                return;
            }
            alice.send(Outgoing::text("bob", &chunk)).await.unwrap();
        }
        panic!("bob was never cut off");
    };
    // Carol and Dave talk all along.
    let chat = async {
        for i in 0..20 {
            carol
                .send(Outgoing::text("dave", &format!("hi {i}")))
                .await
                .unwrap();
            assert_eq!(
                next_message(&mut dave_events).await.content,
                format!(r#"{{"text":"hi {i}"}}"#)
            );
        }
    };
    tokio::join!(flood, chat);
    carol.send(Outgoing::text("dave", "after")).await.unwrap();
    assert_eq!(
        next_message(&mut dave_events).await.content,
        r#"{"text":"after"}"#
    );
}

/// A CONNECT for `user` from `device`; returns the CONNACK's code.
async fn connect_as(server: &TestServer, user: &str, device: &str) -> (Raw, u32) {
    let mut raw = Raw::open(server, Encoding::Json).await;
    let mut frame = connect(&server.token(user).await);
    if let Some(Body::Connect(c)) = frame.body.as_mut() {
        c.device_id = device.into();
    }
    raw.send(frame).await;
    match raw.recv().await {
        Got::Frame(v1::Frame {
            body: Some(Body::Connack(ack)),
            ..
        }) => (raw, ack.code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn one_users_token_opens_a_bounded_number_of_connections() {
    let server = TestServer::start_with(|c| c.max_sessions_per_user = 3).await;
    let mut held = Vec::new();
    for device in ["a", "b", "c"] {
        let (raw, code) = connect_as(&server, "mallory", device).await;
        assert_eq!(code, 0);
        held.push(raw);
    }
    let (_refused, code) = connect_as(&server, "mallory", "d").await;
    assert_eq!(code, Code::TooManySessions.as_u32());
    // A device connecting again replaces its own connection, as it always did.
    let (_again, code) = connect_as(&server, "mallory", "b").await;
    assert_eq!(code, 0);
    // Other users are not affected.
    let (_other, code) = connect_as(&server, "alice", "a").await;
    assert_eq!(code, 0);
}

// Finding 2: registering an account takes over an existing user.

#[tokio::test]
async fn an_id_with_only_messages_in_its_inbox_is_not_registered() {
    let server = TestServer::start().await;
    let (alice, _events) = server.client("alice", "phone").await;
    alice
        .send(Outgoing::text("inboxed", "for inboxed only"))
        .await
        .unwrap();
    not_registered(&server, "inboxed").await;
    // The messages wait for the app server's user.
    let (_inboxed, mut events) = server.client("inboxed", "phone").await;
    assert!(
        next_message(&mut events)
            .await
            .content
            .contains("for inboxed only")
    );
}

// Finding 3: expiring file links can be renewed by anyone logged in.

#[tokio::test]
async fn a_link_goes_to_the_uploader_and_to_those_who_see_a_message_carrying_the_file() {
    let server = TestServer::start().await;
    let file = Upload::new(&server).await;
    let (alice_token, bob_token, carol_token) = (
        server.token("alice").await,
        server.token("bob").await,
        server.token("carol").await,
    );
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    let to_bob = sent_seq(&alice, file.message(PRIVATE, "bob")).await;
    let hello = sent_seq(&alice, Outgoing::text("bob", "hello")).await;

    // The uploader needs no message; nobody else gets a link without one.
    file.granted(&alice_token, json!({})).await;
    file.refused(&carol_token, json!({})).await;
    file.refused(&bob_token, json!({ "ttlSecs": 60 })).await;
    // The recipient names the message.
    file.granted(&bob_token, naming(PRIVATE, "alice", to_bob))
        .await;
    // A message that does not carry the file, one of another conversation, one that is not.
    file.refused(&bob_token, naming(PRIVATE, "alice", hello))
        .await;
    file.refused(&carol_token, naming(PRIVATE, "alice", to_bob))
        .await;
    file.refused(&carol_token, naming(PRIVATE, "bob", to_bob))
        .await;
    let to_carol = sent_seq(&alice, Outgoing::text("carol", "hi carol")).await;
    file.refused(&carol_token, naming(PRIVATE, "alice", to_carol))
        .await;
    file.refused(&bob_token, naming(PRIVATE, "alice", 99)).await;

    // The id anywhere in the content counts, whatever the message type.
    let card = Outgoing {
        msg_type: "app:card".into(),
        content: json!({ "attachment": file.id }).to_string(),
        ..Outgoing::text("carol", "")
    };
    let card = sent_seq(&alice, card).await;
    file.granted(&carol_token, naming(PRIVATE, "alice", card))
        .await;

    // What the recipient no longer sees: deleted for him, recalled, cleared.
    bob.delete_messages(PRIVATE, "alice", &[to_bob])
        .await
        .unwrap();
    file.refused(&bob_token, naming(PRIVATE, "alice", to_bob))
        .await;
    let again = sent_seq(&alice, file.message(PRIVATE, "bob")).await;
    file.granted(&bob_token, naming(PRIVATE, "alice", again))
        .await;
    alice.recall(PRIVATE, "bob", again).await.unwrap();
    file.refused(&bob_token, naming(PRIVATE, "alice", again))
        .await;
    let third = alice.send(file.message(PRIVATE, "bob")).await.unwrap();
    let third_ref = naming(PRIVATE, "alice", third.seq);
    file.granted(&bob_token, third_ref.clone()).await;
    bob.update_conversation(ConversationUpdate {
        clear_before_time: third.sent_time + 1,
        ..ConversationUpdate::private("alice")
    })
    .await
    .unwrap();
    file.refused(&bob_token, third_ref).await;

    // A reference that cannot name a message is a bad request.
    for body in [
        naming(PRIVATE, "no such user!", 1),
        naming(PRIVATE, "alice", 0),
        naming(9, "alice", 1),
        naming(CHATROOM, "", 1),
    ] {
        file.refused_with(&bob_token, body, 400, 42007).await;
    }
}

#[tokio::test]
async fn links_live_at_most_the_maximum_and_links_that_never_expire_are_refused() {
    let server = TestServer::start_with(|c| c.max_file_link = Duration::from_secs(600)).await;
    let start = now_secs();
    let file = Upload::new(&server).await;
    let id = &file.id;
    // The upload's own link expires after the maximum, and says when.
    let url = file.answer["url"].as_str().unwrap();
    let exp = expiry_of(url);
    assert_eq!(file.answer["expiresAt"].as_u64(), Some(exp));
    assert!((start + 600..=now_secs() + 600).contains(&exp), "{url}");
    // Asked for longer, or for the default hour, a link gets the maximum.
    let alice = server.token("alice").await;
    for body in [json!({ "ttlSecs": 100_000 }), json!({})] {
        let before = now_secs();
        let (status, answer) = link(&server, &alice, id, body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        let exp = answer["expiresAt"].as_u64().unwrap();
        assert_eq!(expiry_of(answer["url"].as_str().unwrap()), exp);
        assert!(
            (before + 600..=now_secs() + 600).contains(&exp),
            "{body}: {answer}"
        );
    }

    // Links signed with the server's own key: within the maximum one works; one that never
    // expires (as uploads' links were) and one for a year are refused as unsigned ones are.
    let key = tidings_server::file_link_key(&server.running().credentials);
    let dir = tempfile::tempdir().unwrap();
    let signer = tidings_files::Files::local(dir.path(), key.as_bytes(), 1).unwrap();
    let signed = |exp: u64| format!("{}/v1/files/{id}?{}", server.url(), signer.grant(id, exp));
    let (status, _, _) = call("GET", &signed(now_secs() + 60), vec![], vec![]).await;
    assert_eq!(status, 200);
    for exp in [0, now_secs() + 365 * 24 * 3600] {
        let (status, _, bytes) = call("GET", &signed(exp), vec![], vec![]).await;
        // A download that should not have happened is not JSON.
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(
            (status, v["code"].as_u64()),
            (404, Some(42023)),
            "exp={exp}: {v}"
        );
    }
}

// Finding 4: the app-server API signature covers only nonce and timestamp.

#[tokio::test]
async fn headers_signed_for_one_request_are_refused_on_any_other() {
    let server = TestServer::start().await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "g", "ownerId": "alice", "memberIds": ["bob"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let now = now_ms();
    let body = |text: &str| Some(text.to_string());

    // Another route: a token asked for dave cannot be had for mallory.
    let ttl = r#"{"ttlSecs":60}"#;
    let for_dave = signed(
        &server,
        "route",
        now,
        "POST",
        "/api/v1/users/dave/token",
        ttl,
    );
    let spent = http(
        &server,
        "POST",
        "/api/v1/users/mallory/token",
        for_dave.clone(),
        body(ttl),
    );
    assert_signature_refused("another route", spent.await);
    // Another body: nor for longer than was signed.
    let year = r#"{"ttlSecs":31536000}"#;
    let spent = http(
        &server,
        "POST",
        "/api/v1/users/dave/token",
        for_dave.clone(),
        body(year),
    );
    assert_signature_refused("another body", spent.await);
    let spent = http(
        &server,
        "POST",
        "/api/v1/users/dave/token",
        for_dave.clone(),
        None,
    );
    assert_signature_refused("no body", spent.await);
    // The refusals did not use the nonce up: the request signed goes through, once.
    let (status, answer) = http(
        &server,
        "POST",
        "/api/v1/users/dave/token",
        for_dave,
        body(ttl),
    )
    .await;
    assert_eq!(
        (status, answer["userId"].as_str()),
        (200, Some("dave")),
        "{answer}"
    );

    // Another method: a read of the group cannot dismiss it.
    let read = signed(&server, "method", now, "GET", "/api/v1/groups/g", "");
    let spent = http(&server, "DELETE", "/api/v1/groups/g", read.clone(), None);
    assert_signature_refused("another method", spent.await);
    let (status, answer) = http(&server, "GET", "/api/v1/groups/g", read, None).await;
    // Still alive: dismissing it was refused.
    assert_eq!(
        (status, answer["group"]["dismissedTime"].as_i64()),
        (200, Some(0)),
        "{answer}"
    );

    // Another query, or none.
    let page = "/api/v1/groups/g/members?limit=1";
    let one = signed(&server, "query", now, "GET", page, "");
    for other in [
        "/api/v1/groups/g/members?limit=2",
        "/api/v1/groups/g/members",
    ] {
        let spent = http(&server, "GET", other, one.clone(), None);
        assert_signature_refused(other, spent.await);
    }
    let (status, answer) = http(&server, "GET", page, one, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["members"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
}

// Finding 6: an encoder swallowed a failure.

#[tokio::test]
async fn a_priority_number_the_schema_lacks_ends_the_connection_with_40001() {
    let server = TestServer::start().await;
    let mut frame = publish(1, "c1", "bob", r#"{"text":"x"}"#);
    if let Some(Body::Publish(v1::Publish {
        body: Some(v1::publish::Body::Send(s)),
        ..
    })) = frame.body.as_mut()
    {
        s.priority = 64;
    }
    // Protobuf carries the number; JSON has no way to write it, so the frame would not mean the
    // same in both encodings. Refused as malformed, with a frame that decodes (`recv` checks).
    let mut raw = Raw::connected(&server, "alice", Encoding::Protobuf).await;
    raw.send(frame).await;
    raw.expect_disconnect(Code::MalformedFrame).await;
    // The same frame in JSON, written by hand.
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    raw.send_raw(
        br#"{"qos":1,"publish":{"packetId":1,"send":{"clientMsgId":"c1","conversationType":1,"targetId":"bob","msgType":"text","content":"{\"text\":\"x\"}","priority":64}}}"#
            .to_vec(),
    )
    .await;
    raw.expect_disconnect(Code::MalformedFrame).await;
}

// Finding 7: deeply nested content came back as null.

#[tokio::test]
async fn content_nested_past_32_levels_is_refused_with_40032_everywhere_it_comes_in() {
    let server = TestServer::start().await;
    let over = nested_content(33).to_string();
    assert_eq!(over.matches('{').count(), 33);
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    raw.send(publish(1, "c1", "bob", &over)).await;
    let ack = puback(raw.recv().await);
    assert_eq!(ack.code, Code::ContentTooDeep.as_u32(), "{}", ack.message);
    assert!(ack.message.starts_with(Code::ContentTooDeep.text()));
    assert!(ack.uid.is_empty() && ack.seq == 0, "nothing was stored");
    // A status message (typing), answered only when refused.
    let mut status = publish(2, "c2", "bob", &over);
    if let Some(Body::Publish(v1::Publish {
        body: Some(v1::publish::Body::Send(s)),
        ..
    })) = status.body.as_mut()
    {
        s.transient = true;
    }
    raw.send(status).await;
    assert_eq!(puback(raw.recv().await).code, Code::ContentTooDeep.as_u32());
    assert_usable(&mut raw).await;

    // An edit of a stored message.
    let (alice, _events) = server.client("alice", "phone").await;
    let sent = alice
        .send(tidings_client::Outgoing::text("bob", "shallow"))
        .await
        .unwrap();
    match alice.edit(1, "bob", sent.seq, &over).await {
        Err(tidings_client::ClientError::Refused { code, .. }) => {
            assert_eq!(code, Code::ContentTooDeep.as_u32())
        }
        other => panic!("expected 40032, got {other:?}"),
    }

    // The HTTP API's sends: as a user, and from a system account.
    let sends = [
        (
            "/api/v1/messages",
            serde_json::json!({
                "fromUserId": "alice", "conversationType": 1, "targetId": "bob",
                "content": nested_content(33),
            }),
        ),
        (
            "/api/v1/messages/system",
            serde_json::json!({
                "fromUserId": "notices", "toUserIds": ["bob"], "content": nested_content(33),
            }),
        ),
    ];
    for (path, request) in sends {
        let (status, body) = api(&server, "POST", path, request).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(Code::ContentTooDeep.as_u32().into())),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn content_nested_32_levels_is_stored_and_returned_whole_by_history() {
    let server = TestServer::start().await;
    let deepest = nested_content(32);
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    raw.send(publish(1, "c1", "bob", &deepest.to_string()))
        .await;
    assert_eq!(puback(raw.recv().await).code, 0);
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/messages",
        serde_json::json!({
            "fromUserId": "alice", "conversationType": 1, "targetId": "bob",
            "content": deepest,
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, page) = api(
        &server,
        "GET",
        "/api/v1/history?conversationType=1&userId=alice&targetId=bob",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    for m in messages {
        assert_eq!(
            m["content"], deepest,
            "the content comes back as it was sent"
        );
    }
    // And through the native protocol's history.
    let (alice, _events) = server.client("alice", "phone").await;
    let history = alice
        .history(1, "bob", tidings_client::HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 2);
    for m in &history.messages {
        let content: serde_json::Value = serde_json::from_str(&m.content).unwrap();
        assert_eq!(content, deepest);
    }
}
