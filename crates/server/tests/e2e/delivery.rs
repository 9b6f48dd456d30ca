//! The delivery contract for one-to-one messages, through the SDK.

use std::collections::HashSet;
use std::time::Duration;

use tidings_client::{Client, Encoding, Event, Outgoing, Status};
use tidings_proto::Code;
use tidings_proto::v1::{self, frame::Body};

use crate::util::*;

#[tokio::test]
async fn online_delivery_in_both_encodings() {
    let server = TestServer::start().await;
    // Users of their own per encoding, so the second pair starts with empty inboxes.
    for (encoding, a, b) in [
        (Encoding::Protobuf, "alice", "bob"),
        (Encoding::Json, "carol", "dave"),
    ] {
        let mut alice = server.config(a, "phone").await;
        alice.encoding = encoding;
        let (alice, _alice_events) = Client::connect(alice).await.unwrap();
        let mut bob = server.config(b, "phone").await;
        bob.encoding = encoding;
        let (_bob, mut bob_events) = Client::connect(bob).await.unwrap();
        let sent = alice.send(Outgoing::text(b, "hello")).await.unwrap();
        let got = next_message(&mut bob_events).await;
        assert_eq!(got.uid, sent.uid);
        assert_eq!(got.seq, sent.seq);
        assert_eq!((got.sender_id.as_str(), got.target_id.as_str()), (a, a));
        assert_eq!(got.content, r#"{"text":"hello"}"#);
        assert_eq!(got.msg_type, "text");
    }
}

#[tokio::test]
async fn offline_messages_arrive_by_sync_across_pages_in_order() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    let mut uids = Vec::new();
    for i in 0..30 {
        uids.push(
            alice
                .send(Outgoing::text("bob", &format!("m{i}")))
                .await
                .unwrap()
                .uid,
        );
    }
    let mut bob = server.config("bob", "phone").await;
    bob.sync_page = 7;
    let (_bob, mut events) = Client::connect(bob).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..30 {
        got.push(next_message(&mut events).await);
    }
    assert_eq!(got.iter().map(|m| m.uid.clone()).collect::<Vec<_>>(), uids);
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_returning_device_resumes_from_its_stored_cursor() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    let (bob, mut events) = server.client("bob", "phone").await;
    alice.send(Outgoing::text("bob", "one")).await.unwrap();
    assert_eq!(next_message(&mut events).await.seq, 1);
    bob.close().await;
    alice.send(Outgoing::text("bob", "two")).await.unwrap();
    // A new process for the same device starts from the cursor the server stored.
    let (_bob, mut events) = server.client("bob", "phone").await;
    let m = next_message(&mut events).await;
    assert_eq!(m.seq, 2, "the first message is not presented again");
}

#[tokio::test]
async fn the_senders_other_device_receives_its_own_message() {
    let server = TestServer::start().await;
    let (phone, mut phone_events) = server.client("alice", "phone").await;
    let (_laptop, mut laptop_events) = server.client("alice", "laptop").await;
    let sent = phone
        .send(Outgoing::text("bob", "from my phone"))
        .await
        .unwrap();
    let m = next_message(&mut laptop_events).await;
    assert_eq!(
        (m.uid.as_str(), m.target_id.as_str()),
        (sent.uid.as_str(), "bob")
    );
    // The sending device does not get its own message back as an event: the next message it
    // gets is one sent to alice after it.
    let (bob, _bob_events) = server.client("bob", "phone").await;
    let marker = bob.send(Outgoing::text("alice", "marker")).await.unwrap();
    assert_eq!(next_message(&mut phone_events).await.uid, marker.uid);
}

#[tokio::test]
async fn withheld_acks_cause_dup_resends_and_the_sdk_presents_once() {
    let server = TestServer::start_with(|c| c.ack_timeout = Duration::from_millis(150)).await;
    let (alice, _e) = server.client("alice", "phone").await;
    let mut config = server.config("bob", "phone").await;
    config.auto_ack = false;
    let (bob, mut events) = Client::connect(config).await.unwrap();
    alice.send(Outgoing::text("bob", "ack me")).await.unwrap();
    let m = next_message(&mut events).await;
    eventually("the server resends with dup", || async {
        bob.stats().await.dup_flagged >= 2
    })
    .await;
    let stats = bob.stats().await;
    assert!(stats.duplicates_dropped >= 2, "{stats:?}");
    bob.ack(m.inbox_seq).await;
    // After the ACK the resends stop; count what arrives over several more timeouts. A query
    // answered after the ACK shows the server handled it (one connection's frames are handled
    // in order, resends among them), and that a resend it made before has arrived.
    bob.unread(&[]).await.unwrap();
    let before = bob.stats().await.dup_flagged;
    // Not a wait for a condition: resends come when a timeout passes, not after anything a
    // marker could follow, so the timeouts must pass.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        bob.stats().await.dup_flagged,
        before,
        "no resend after the ACK"
    );
    assert!(
        drain_messages(&mut events).is_empty(),
        "no duplicate surfaced"
    );
}

#[tokio::test]
async fn the_sdk_acknowledges_cumulatively_and_nothing_is_resent() {
    let server = TestServer::start_with(|c| c.ack_timeout = Duration::from_millis(300)).await;
    let (alice, _e) = server.client("alice", "phone").await;
    let (bob, mut events) = server.client("bob", "phone").await;
    // More than one acknowledgement batch (64), then a few that wait for the delay.
    for i in 0..70 {
        alice
            .send(Outgoing::text("bob", &format!("m{i}")))
            .await
            .unwrap();
    }
    for _ in 0..70 {
        next_message(&mut events).await;
    }
    // Several resend timeouts: an entry left unacknowledged would come again flagged dup. Not a
    // wait for a condition: resends come when a timeout passes, so the timeouts must pass.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stats = bob.stats().await;
    assert_eq!(stats.dup_flagged, 0, "{stats:?}");
    assert!(drain_messages(&mut events).is_empty());
}

#[tokio::test]
async fn a_resent_client_msg_id_gets_the_same_uid_and_seq_and_no_second_message() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    let (_bob, mut events) = server.client("bob", "phone").await;
    let mut out = Outgoing::text("bob", "once");
    out.client_msg_id = Some("fixed-id-1".into());
    let first = alice.send(out.clone()).await.unwrap();
    let second = alice.send(out).await.unwrap();
    assert_eq!(
        (first.uid.as_str(), first.seq),
        (second.uid.as_str(), second.seq)
    );
    assert_eq!(next_message(&mut events).await.uid, first.uid);
    let after = alice.send(Outgoing::text("bob", "next")).await.unwrap();
    assert_eq!(after.seq, first.seq + 1, "the resend took no seq");
    assert_eq!(next_message(&mut events).await.uid, after.uid);
}

#[tokio::test]
async fn sends_made_around_a_dropped_connection_are_committed_once_each() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    let (_bob, mut events) = server.client("bob", "phone").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        if i == 10 {
            // Cut the connection: the next sends queue while the SDK reconnects, and any send
            // still waiting for its PUBACK is resent with its client message id.
            alice.drop_connection().await;
        }
        let sender = alice.clone();
        tasks.push(tokio::spawn(async move {
            sender
                .send(Outgoing::text("bob", &format!("m{i}")))
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "each send committed exactly once"
    );
    assert!(alice.stats().await.reconnects >= 1);
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(next_message(&mut events).await.seq);
    }
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn two_senders_times_200_concurrent_sends_give_gapless_seqs_seen_in_order() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, _b) = server.client("bob", "phone").await;
    // A third device of bob's watches the conversation.
    let (_watch, mut watch_events) = server.client("bob", "tablet").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        for (client, to) in [(alice.clone(), "bob"), (bob.clone(), "alice")] {
            tasks.push(tokio::spawn(async move {
                client
                    .send(Outgoing::text(to, &format!("m{i}")))
                    .await
                    .unwrap()
            }));
        }
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>(), "gapless, no seq twice");
    let mut seen = Vec::new();
    for _ in 0..400 {
        seen.push(next_message(&mut watch_events).await.seq);
    }
    assert_eq!(seen, (1..=400).collect::<Vec<_>>(), "seen in seq order");
}

#[tokio::test]
async fn a_silent_connection_is_dropped_after_three_heartbeats() {
    let server = TestServer::start_with(|c| c.heartbeat = Duration::from_millis(100)).await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    // Send nothing, and answer none of the server's Pings: it must give up on us.
    raw.mute();
    raw.expect_disconnect(Code::HeartbeatTimeout).await;
}

#[tokio::test]
async fn a_silent_connection_that_answers_pings_stays_up() {
    let server = TestServer::start_with(|c| c.heartbeat = Duration::from_millis(100)).await;
    // Bob connects first: the raw client answers Pings only while it is read, so nothing slow
    // may happen between its reads.
    let (bob, _bob_events) = server.client("bob", "b").await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    // Nothing but the WebSocket layer's Pongs for four intervals: more than the three after
    // which a connection that answered nothing is dropped.
    for _ in 0..4 {
        raw.expect_ping().await;
    }
    let sent = tokio::spawn(async move {
        bob.send(Outgoing::text("alice", "still there?"))
            .await
            .unwrap();
        bob
    });
    loop {
        match raw.recv().await {
            Got::Frame(v1::Frame {
                body: Some(Body::Publish(p)),
                ..
            }) => {
                let Some(v1::publish::Body::Message(m)) = p.body else {
                    panic!("a message")
                };
                assert_eq!(m.sender_id, "bob");
                break;
            }
            Got::Frame(_) => {}
            Got::Closed => panic!("dropped"),
        }
    }
    sent.await.unwrap();
}

#[tokio::test]
async fn a_connection_that_pings_stays_up() {
    let server = TestServer::start_with(|c| c.heartbeat = Duration::from_millis(100)).await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Protobuf).await;
    for _ in 0..8 {
        // Not a wait for a condition: the client pings at this pace, inside the heartbeat.
        tokio::time::sleep(Duration::from_millis(80)).await;
        raw.send(tidings_proto::codec::frame(Body::Pingreq(v1::PingReq {})))
            .await;
        match raw.recv().await {
            Got::Frame(v1::Frame {
                body: Some(Body::Pingresp(_)),
                ..
            }) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn single_device_policy_kicks_the_old_connection() {
    let server =
        TestServer::start_with(|c| c.device_policy = tidings_engine::DevicePolicy::Single).await;
    let (_old, mut old_events) = server.client("alice", "phone").await;
    let (_new, _new_events) = server.client("alice", "laptop").await;
    match next_terminal(&mut old_events).await {
        Event::Kicked { code, .. } => assert_eq!(code, Code::Kicked.as_u32()),
        other => panic!("{other:?}"),
    }
    // The kicked client does not come back.
    assert!(
        tokio::time::timeout(WAIT, old_events.recv())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_server_push_with_a_full_outbox_disconnects_the_slow_consumer() {
    let server = TestServer::start_with(|c| c.max_inflight = 5).await;
    let (alice, _e) = server.client("alice", "phone").await;
    // bob never acknowledges and reads nothing.
    let mut raw = Raw::connected(&server, "bob", Encoding::Protobuf).await;
    for i in 0..6 {
        alice
            .send(Outgoing::text("bob", &format!("m{i}")))
            .await
            .unwrap();
    }
    let mut pushes = HashSet::new();
    loop {
        match raw.recv().await {
            Got::Frame(v1::Frame {
                body: Some(Body::Publish(p)),
                ..
            }) => {
                if let Some(v1::publish::Body::Message(m)) = p.body {
                    pushes.insert(m.inbox_seq);
                }
            }
            Got::Frame(v1::Frame {
                body: Some(Body::Disconnect(d)),
                ..
            }) => {
                assert_eq!(d.code, Code::SlowConsumer.as_u32());
                assert!(d.reconnect);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pushes.len(), 5);
    // Nothing is lost: a reconnect syncs all six.
    let (_bob, mut events) = server.client("bob", "").await;
    for seq in 1..=6 {
        assert_eq!(next_message(&mut events).await.inbox_seq, seq);
    }
}

#[tokio::test]
async fn shutdown_answers_queued_sends_and_tells_clients_to_reconnect() {
    let mut server = TestServer::start().await;
    let (alice, mut events) = server.client("alice", "phone").await;
    let mut tasks = Vec::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..50 {
        let alice = alice.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let r = alice.send(Outgoing::text("bob", &format!("m{i}"))).await;
            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            r
        }));
    }
    // Once some sends reached the server, shut it down under them.
    eventually("a send is answered", || async {
        answered.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    server.shutdown().await;
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Event::Status(Status::Disconnected { code, .. })))
                if code == Code::ServerShutdown.as_u32() =>
            {
                break;
            }
            Ok(Some(_)) => continue,
            other => panic!("clients are told the server is shutting down; got {other:?}"),
        }
    }
    alice.close().await;
    let acked: Vec<_> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap().ok())
        .collect();
    // Whatever was acknowledged is in the store after a restart on the same data dir.
    let mut config = tidings_server::Config::with_data_dir(server.dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let running = tidings_server::start(&config).await.unwrap();
    let restarted = TestServer {
        running: Some(running),
        dir: tempfile::tempdir().unwrap(),
    };
    let mut c = tidings_client::ClientConfig::new(restarted.url(), restarted.token("bob").await);
    c.reconnect_delays = vec![Duration::from_millis(50)];
    let (_bob, mut bob_events) = Client::connect(c).await.unwrap();
    let mut stored = HashSet::new();
    for _ in 0..acked.len() {
        stored.insert(next_message(&mut bob_events).await.uid);
    }
    for a in &acked {
        assert!(stored.contains(&a.uid));
    }
}

#[tokio::test]
async fn a_slow_application_with_manual_acks_and_a_tiny_event_stream_gets_everything() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    for i in 0..300 {
        alice
            .send(Outgoing::text("bob", &format!("m{i}")))
            .await
            .unwrap();
    }
    let mut config = server.config("bob", "phone").await;
    config.auto_ack = false;
    config.event_capacity = 2;
    let (bob, mut events) = Client::connect(config).await.unwrap();
    for seq in 1..=300 {
        let m = next_message(&mut events).await;
        assert_eq!(m.inbox_seq, seq);
        bob.ack(m.inbox_seq).await;
    }
    // Closing works while the driver may be waiting on a full stream.
    for i in 0..10 {
        alice
            .send(Outgoing::text("bob", &format!("late{i}")))
            .await
            .unwrap();
    }
    tokio::time::timeout(WAIT, bob.close())
        .await
        .expect("close returns");
}

#[tokio::test]
async fn a_huge_backlog_of_large_messages_syncs_without_slow_consumer_loops() {
    let server = TestServer::start_with(|c| c.outbound_queue_bytes = 256 * 1024).await;
    let (alice, _e) = server.client("alice", "phone").await;
    let big = "y".repeat(15_000);
    for _ in 0..60 {
        alice.send(Outgoing::text("bob", &big)).await.unwrap();
    }
    let mut config = server.config("bob", "phone").await;
    config.sync_page = 500;
    let (bob, mut events) = Client::connect(config).await.unwrap();
    for seq in 1..=60 {
        assert_eq!(next_message(&mut events).await.inbox_seq, seq);
    }
    assert_eq!(bob.stats().await.reconnects, 0, "never disconnected");
}
