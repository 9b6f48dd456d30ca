//! The long-poll transport (`/v1/poll`) and the navigation endpoint (`/navi`).

use std::time::Duration;

use serde_json::{Value, json};
use tidings_client::Outgoing;
use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Code, Encoding, codec};

use crate::util::*;

/// An unsigned HTTP request; returns (status, JSON body, or null for an empty one).
async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let url = format!("{}{path}", server.url());
    let method = method.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = agent();
        let req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("Content-Type", "application/json")
            .body(body.unwrap_or_default())
            .unwrap();
        let mut resp = agent.run(req).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    })
    .await
    .unwrap()
}

fn json_frame(frame: &v1::Frame) -> Vec<u8> {
    codec::encode(frame, Encoding::Json).expect("a test frame encodes")
}

fn frames_of(answer: &Value) -> Vec<v1::Frame> {
    answer["frames"]
        .as_array()
        .expect("a frames array")
        .iter()
        .map(|f| codec::decode(f.to_string().as_bytes(), Encoding::Json, 1 << 20).expect("a frame"))
        .collect()
}

/// A long-poll session, as a client keeps it.
struct Poller {
    id: String,
    /// The last batch received.
    batch: u64,
}

impl Poller {
    /// Opens a session for `user`; returns it and the CONNACK.
    async fn open(server: &TestServer, user: &str, device: &str) -> (Poller, v1::ConnAck) {
        let mut connect = connect(&server.token(user).await);
        if let Some(Body::Connect(c)) = &mut connect.body {
            c.device_id = device.into();
        }
        let (status, answer) = http(server, "POST", "/v1/poll", Some(json_frame(&connect))).await;
        assert_eq!(status, 200, "{answer}");
        let ack = match frames_of(&answer).remove(0).body {
            Some(Body::Connack(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        assert_eq!(ack.code, 0, "{}", ack.message);
        let id = answer["session"]
            .as_str()
            .expect("a session id")
            .to_string();
        assert_eq!(id.len(), 32, "128 random bits");
        (Poller { id, batch: 0 }, ack)
    }

    /// One poll acknowledging the last batch; returns the answer.
    async fn poll_after(&self, server: &TestServer, after: u64, wait_ms: u64) -> (u16, Value) {
        http(
            server,
            "GET",
            &format!("/v1/poll/{}?after={after}&wait={wait_ms}", self.id),
            None,
        )
        .await
    }

    /// Polls until at least one frame comes; returns the frames.
    async fn next(&mut self, server: &TestServer) -> Vec<v1::Frame> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, answer) = self.poll_after(server, self.batch, 1000).await;
            assert_eq!(status, 200, "{answer}");
            self.batch = answer["batch"].as_u64().expect("a batch number");
            let frames = frames_of(&answer);
            if !frames.is_empty() {
                return frames;
            }
            assert!(tokio::time::Instant::now() < deadline, "no frames in time");
        }
    }

    async fn send(&self, server: &TestServer, frames: &[v1::Frame]) -> (u16, Value) {
        let body: Vec<Value> = frames
            .iter()
            .map(|f| serde_json::from_slice(&json_frame(f)).unwrap())
            .collect();
        let body = serde_json::to_vec(&body).unwrap();
        http(server, "POST", &format!("/v1/poll/{}", self.id), Some(body)).await
    }
}

fn delivered(frames: &[v1::Frame]) -> Vec<(String, u64, bool)> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            Some(Body::Publish(v1::Publish {
                body: Some(v1::publish::Body::Message(m)),
                ..
            })) => Some((m.content.clone(), m.inbox_seq, f.dup)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_long_poll_client_sends_and_receives_like_a_websocket_one() {
    let server = TestServer::start_with(|c| c.ack_timeout = Duration::from_millis(300)).await;
    let (mut bob, ack) = Poller::open(&server, "bob", "browser").await;
    assert_eq!(ack.user_id, "bob");
    let (alice, mut alice_events) = server.client("alice", "phone").await;

    // Bob sends over HTTP: the PUBACK comes by polling, the message reaches alice.
    let (status, _) = bob
        .send(
            &server,
            &[publish(1, "b-1", "alice", r#"{"text":"hi alice"}"#)],
        )
        .await;
    assert_eq!(status, 204);
    let frames = bob.next(&server).await;
    let puback = frames
        .iter()
        .find_map(|f| match &f.body {
            Some(Body::Puback(p)) => Some(p.clone()),
            _ => None,
        })
        .expect("a PUBACK");
    assert_eq!(
        (puback.packet_id, puback.code),
        (1, 0),
        "{}",
        puback.message
    );
    assert_eq!(
        next_message(&mut alice_events).await.content,
        r#"{"text":"hi alice"}"#
    );

    // Alice answers: the poll brings it; unacknowledged, it comes again (dup) after the ack
    // timeout, as on WebSocket; acknowledged, it stops.
    alice
        .send(Outgoing::text("bob", "hi bob"))
        .await
        .expect("alice's message is acknowledged");
    let mut got = Vec::new();
    while got.is_empty() {
        got = delivered(&bob.next(&server).await);
    }
    assert_eq!(got.len(), 1);
    let (content, inbox_seq, dup) = got[0].clone();
    assert!(content.contains("hi bob"), "{content}");
    assert!(!dup);
    let mut again = Vec::new();
    while again.is_empty() {
        again = delivered(&bob.next(&server).await);
    }
    assert_eq!(again, vec![(content, inbox_seq, true)]);
    let ack = codec::frame(Body::Puback(v1::PubAck {
        inbox_seq,
        ..Default::default()
    }));
    let ping = codec::frame(Body::Pingreq(v1::PingReq {}));
    assert_eq!(bob.send(&server, &[ack, ping]).await.0, 204);
    let frames = bob.next(&server).await;
    assert!(
        frames
            .iter()
            .any(|f| matches!(f.body, Some(Body::Pingresp(_)))),
        "{frames:?}"
    );
    // Three ack timeouts with nothing resent.
    let (status, answer) = bob.poll_after(&server, bob.batch, 900).await;
    assert_eq!(status, 200);
    assert!(delivered(&frames_of(&answer)).is_empty(), "{answer}");
}

#[tokio::test]
async fn a_poll_whose_answer_was_lost_gets_the_same_batch_again() {
    let server = TestServer::start().await;
    let (bob, _) = Poller::open(&server, "bob", "browser").await;
    let (alice, _alice_events) = server.client("alice", "phone").await;
    alice.send(Outgoing::text("bob", "one")).await.unwrap();
    alice.send(Outgoing::text("bob", "two")).await.unwrap();

    // Batch 1 is handed out; the client says it never got it (after=0 again) and gets it again,
    // frame for frame.
    let mut first = Value::Null;
    while first["frames"].as_array().is_none_or(|f| f.len() < 2) {
        let (status, answer) = bob.poll_after(&server, 0, 1000).await;
        assert_eq!(status, 200, "{answer}");
        if answer["batch"] == 1 {
            first = answer;
        }
    }
    let (status, again) = bob.poll_after(&server, 0, 1000).await;
    assert_eq!(status, 200);
    assert_eq!(again, first);
    let contents: Vec<String> = delivered(&frames_of(&first))
        .into_iter()
        .map(|(c, _, _)| c)
        .collect();
    assert_eq!(contents.len(), 2, "{contents:?}");
    assert!(contents[0].contains("one") && contents[1].contains("two"));

    // Acknowledged with after=1, it is gone: nothing new is waiting.
    let (status, empty) = bob.poll_after(&server, 1, 100).await;
    assert_eq!(status, 200);
    assert_eq!(
        (empty["batch"].as_u64(), frames_of(&empty).len()),
        (Some(1), 0)
    );
    // A number the server never gave out, or one already acknowledged, is refused.
    for after in [0, 5] {
        let (status, answer) = bob.poll_after(&server, after, 100).await;
        assert_eq!(
            (status, answer["code"].as_u64()),
            (400, Some(42007)),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_poll_dropped_by_the_client_loses_nothing() {
    let server = TestServer::start().await;
    let (mut bob, _) = Poller::open(&server, "bob", "browser").await;
    let (alice, _alice_events) = server.client("alice", "phone").await;

    // A poll the client gives up on after 200 ms, while the server would wait 10 s: a message
    // sent after that may go out on it, to nobody.
    let url = format!("{}/v1/poll/{}?after=0&wait=10000", server.url(), bob.id);
    let dropped = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(200)))
            .build()
            .into();
        agent.get(&url).call().is_err()
    });
    assert!(dropped.await.unwrap(), "the client gave up on its poll");
    alice
        .send(Outgoing::text("bob", "while the poll was dropping"))
        .await
        .unwrap();
    // Time for the dropped poll's handler to take the message. A wait for something the server
    // does not show (which poll took the message), so a sleep; without it the test still passes,
    // only the message may go out on the next poll instead.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The next poll (after=0: batch 1 never arrived) gets the message, once.
    let mut got = Vec::new();
    while got.is_empty() {
        got = delivered(&bob.next(&server).await);
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].0.contains("while the poll was dropping"));
    let (status, answer) = bob.poll_after(&server, bob.batch, 300).await;
    assert_eq!(status, 200);
    assert!(delivered(&frames_of(&answer)).is_empty(), "{answer}");
}

#[tokio::test]
async fn a_session_whose_polls_stop_expires() {
    let server = TestServer::start_with(|c| c.heartbeat = Duration::from_millis(300)).await;
    let (bob, _) = Poller::open(&server, "bob", "browser").await;
    let health = || async {
        let (_, h) = http(&server, "GET", "/healthz", None).await;
        (h["pollSessions"].as_u64(), h["sessions"].as_u64())
    };
    assert_eq!(health().await, (Some(1), Some(1)));
    // A waiting poll keeps it alive past the interval.
    let (status, answer) = bob.poll_after(&server, 0, 800).await;
    assert_eq!((status, frames_of(&answer).len()), (200, 0), "{answer}");
    assert_eq!(health().await.0, Some(1));
    // Without one it ends, and the engine's session with it.
    eventually("the session expires", || async {
        health().await == (Some(0), Some(0))
    })
    .await;
    let (status, answer) = bob.poll_after(&server, 0, 0).await;
    assert_eq!((status, answer["code"].as_u64()), (404, Some(42009)));
}

#[tokio::test]
async fn a_full_queue_ends_the_session_as_a_slow_consumer() {
    let server = TestServer::start_with(|c| c.outbound_queue_bytes = 16 * 1024).await;
    let (mut bob, _) = Poller::open(&server, "bob", "browser").await;
    let (alice, _alice_events) = server.client("alice", "phone").await;
    let text = "x".repeat(2000);
    for _ in 0..20 {
        alice.send(Outgoing::text("bob", &text)).await.unwrap();
    }
    // What fitted comes first, then the DISCONNECT; after it the session is gone.
    let mut last = None;
    while last.is_none() {
        for f in bob.next(&server).await {
            if let Some(Body::Disconnect(d)) = f.body {
                last = Some(d);
            }
        }
    }
    let d = last.unwrap();
    assert_eq!((d.code, d.reconnect), (Code::SlowConsumer.as_u32(), true));
    let (status, answer) = bob.poll_after(&server, bob.batch, 0).await;
    assert_eq!((status, answer["code"].as_u64()), (404, Some(42009)));
}

#[tokio::test]
async fn bad_long_poll_requests_get_codes_and_never_hang() {
    let server = TestServer::start().await;
    let code = |v: &Value| v["code"].as_u64();

    // Opening.
    let (status, answer) = http(&server, "POST", "/v1/poll", Some(b"{not json".to_vec())).await;
    assert_eq!((status, code(&answer)), (400, Some(40001)), "{answer}");
    let ping = json_frame(&codec::frame(Body::Pingreq(v1::PingReq {})));
    let (status, answer) = http(&server, "POST", "/v1/poll", Some(ping)).await;
    assert_eq!((status, code(&answer)), (400, Some(40004)), "{answer}");
    let (status, answer) = http(
        &server,
        "POST",
        "/v1/poll",
        Some(json_frame(&connect("forged"))),
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer.get("session").is_none(), "{answer}");
    match &frames_of(&answer)[0].body {
        Some(Body::Connack(ack)) => assert_eq!(ack.code, Code::TokenInvalid.as_u32()),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // Unknown sessions.
    let (status, answer) = http(&server, "GET", "/v1/poll/nosuch?after=0", None).await;
    assert_eq!((status, code(&answer)), (404, Some(42009)));
    let (status, answer) = http(&server, "POST", "/v1/poll/nosuch", Some(b"[]".to_vec())).await;
    assert_eq!((status, code(&answer)), (404, Some(42009)));

    // Bad polls leave the session as it was.
    let (bob, _) = Poller::open(&server, "bob", "browser").await;
    for query in ["", "?after=x", "?after=0&wait=30001", "?after=0&color=red"] {
        let (status, answer) =
            http(&server, "GET", &format!("/v1/poll/{}{query}", bob.id), None).await;
        assert_eq!(
            (status, code(&answer)),
            (400, Some(42007)),
            "{query}: {answer}"
        );
    }
    let too_many: Vec<Value> = (0..65).map(|_| json!({"pingreq": {}})).collect();
    let (status, answer) = http(
        &server,
        "POST",
        &format!("/v1/poll/{}", bob.id),
        Some(serde_json::to_vec(&too_many).unwrap()),
    )
    .await;
    assert_eq!((status, code(&answer)), (400, Some(42007)), "{answer}");

    // A malformed frame ends the session, as on WebSocket: the answer and the next poll say so.
    let (status, answer) = http(
        &server,
        "POST",
        &format!("/v1/poll/{}", bob.id),
        Some(br#"[{"pingreq": {}}, 7]"#.to_vec()),
    )
    .await;
    assert_eq!((status, code(&answer)), (400, Some(40001)), "{answer}");
    let (status, answer) = bob.poll_after(&server, 0, 1000).await;
    assert_eq!(status, 200);
    let frames = frames_of(&answer);
    assert!(
        frames
            .iter()
            .any(|f| matches!(f.body, Some(Body::Pingresp(_)))),
        "the frame before the bad one was handled: {frames:?}"
    );
    match &frames.last().unwrap().body {
        Some(Body::Disconnect(d)) => assert_eq!(d.code, 40001),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    let (status, answer) = bob.poll_after(&server, 1, 0).await;
    assert_eq!((status, code(&answer)), (404, Some(42009)));
}

#[tokio::test]
async fn a_clients_disconnect_ends_its_session_at_once() {
    let server = TestServer::start().await;
    let (bob, _) = Poller::open(&server, "bob", "browser").await;
    let bye = codec::frame(Body::Disconnect(v1::Disconnect::default()));
    assert_eq!(bob.send(&server, &[bye]).await.0, 204);
    let (status, answer) = bob.poll_after(&server, 0, 0).await;
    assert_eq!((status, answer["code"].as_u64()), (404, Some(42009)));
    assert_eq!(server.running().engine.session_count(), 0);
}

#[tokio::test]
async fn a_newer_poll_takes_over_from_a_waiting_one() {
    let server = TestServer::start().await;
    let (bob, _) = Poller::open(&server, "bob", "browser").await;
    let started = tokio::time::Instant::now();
    let old = {
        let url = format!("{}/v1/poll/{}?after=0&wait=20000", server.url(), bob.id);
        tokio::task::spawn_blocking(move || {
            let mut resp = ureq::get(&url).call().unwrap();
            resp.body_mut().read_json::<Value>().unwrap()
        })
    };
    // Newer polls until one has taken over from the first: one sent before the first reached the
    // server is itself taken over by it, or ends after its own 100 ms.
    while !old.is_finished() {
        let (status, _) = bob.poll_after(&server, 0, 100).await;
        assert_eq!(status, 200);
    }
    let old = old.await.unwrap();
    assert_eq!(frames_of(&old).len(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered when replaced"
    );
}

#[tokio::test]
async fn navigation_lists_the_endpoints_a_client_may_use() {
    let server = TestServer::start().await;
    let (status, navi) = http(&server, "GET", "/navi", None).await;
    assert_eq!(status, 200);
    let addr = server.running().addr;
    assert_eq!(
        navi["nodes"],
        json!([{
            "ws": format!("ws://{addr}/v1/ws"),
            "poll": format!("http://{addr}/v1/poll"),
            "http": format!("http://{addr}"),
        }])
    );
    assert_eq!(navi["heartbeatMs"], 30_000);
    assert_eq!(navi["protocolVersion"], 1);
    assert_eq!(navi["pollWaitMs"], 25_000);
    assert_eq!(navi["maxFrameBytes"], 65_536);
    assert!(navi["serverTime"].as_u64().unwrap() > 1_700_000_000_000);

    // The URLs a cluster is reached at, when configured.
    let server = TestServer::start_with(|c| {
        c.public_urls = vec![
            "https://a.example.com".into(),
            "http://b.example.com:9091".into(),
        ]
    })
    .await;
    let (_, navi) = http(&server, "GET", "/navi", None).await;
    assert_eq!(
        navi["nodes"],
        json!([
            {"ws": "wss://a.example.com/v1/ws", "poll": "https://a.example.com/v1/poll", "http": "https://a.example.com"},
            {"ws": "ws://b.example.com:9091/v1/ws", "poll": "http://b.example.com:9091/v1/poll", "http": "http://b.example.com:9091"},
        ])
    );
}
