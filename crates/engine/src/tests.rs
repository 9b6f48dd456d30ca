//! Engine tests without sockets: sessions are driven directly and their outboxes read.

use std::sync::Arc;
use std::time::Duration;

use tidings_proto::Code;
use tidings_store_sqlite::{SqliteConfig, SqliteStore};

use crate::*;

struct Fixture {
    engine: Engine,
    _dir: tempfile::TempDir,
}

fn creds() -> AppCredentials {
    AppCredentials {
        app_key: "app".into(),
        app_secret: "secret".into(),
        token_key: vec![7; 32],
    }
}

fn fixture(tune: impl FnOnce(&mut EngineConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("t.db"))).unwrap();
    let mut config = EngineConfig::new(creds());
    // Tests send faster than a person; the limit has its own test.
    config.send_rate = 0;
    tune(&mut config);
    Fixture {
        engine: Engine::start(config, Arc::new(store), system_clock()),
        _dir: dir,
    }
}

async fn connect_info(engine: &Engine, user: &str, device: &str) -> (Session, ConnectInfo) {
    let (token, _) = engine.mint_token(user, None).await.unwrap();
    let (session, info) = engine
        .connect(ConnectRequest {
            token,
            device_id: device.into(),
            platform: "test".into(),
        })
        .await
        .unwrap();
    assert_eq!(info.user_id, user);
    (session, info)
}

async fn connect(engine: &Engine, user: &str, device: &str) -> Session {
    connect_info(engine, user, device).await.0
}

fn text(cmid: &str, to: &str, body: &str) -> SendRequest {
    SendRequest {
        client_msg_id: cmid.into(),
        conversation_type: 1,
        target_id: to.into(),
        msg_type: "text".into(),
        content: format!(r#"{{"text":{body:?}}}"#),
        ..Default::default()
    }
}

async fn next(session: &Session) -> Outbound {
    tokio::time::timeout(Duration::from_secs(5), session.outbox().pop())
        .await
        .expect("an outbound item within 5 s")
        .expect("outbox open")
}

async fn puback(session: &Session) -> PubAckOut {
    match next(session).await {
        Outbound::PubAck(p) => p,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

async fn delivered(session: &Session) -> (Arc<Delivered>, bool) {
    match next(session).await {
        Outbound::Deliver { message, dup } => (message, dup),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_commits_then_acks_and_pushes_to_recipient_and_senders_other_devices() {
    let f = fixture(|_| {});
    let alice = connect(&f.engine, "alice", "phone").await;
    let alice2 = connect(&f.engine, "alice", "laptop").await;
    let bob = connect(&f.engine, "bob", "phone").await;
    alice.publish(9, text("c1", "bob", "hi")).await;
    let ack = puback(&alice).await;
    assert_eq!(
        (ack.packet_id, ack.code, ack.seq, ack.inbox_seq),
        (9, 0, 1, 1)
    );
    let (m, dup) = delivered(&bob).await;
    assert!(!dup);
    assert_eq!(
        (m.uid(), m.target_id(), m.sender_id()),
        (ack.uid.as_str(), "alice", "alice")
    );
    let (m2, _) = delivered(&alice2).await;
    assert_eq!(
        m2.target_id(),
        "bob",
        "the sender's devices see the conversation with bob"
    );
    assert_eq!(m2.inbox_seq(), 1);
}

#[tokio::test]
async fn resending_a_client_msg_id_returns_the_first_result_and_pushes_nothing_new() {
    let f = fixture(|_| {});
    let alice = connect(&f.engine, "alice", "phone").await;
    let bob = connect(&f.engine, "bob", "phone").await;
    alice.publish(1, text("same", "bob", "hi")).await;
    let first = puback(&alice).await;
    alice.publish(2, text("same", "bob", "hi")).await;
    let second = puback(&alice).await;
    assert_eq!(
        (second.uid.as_str(), second.seq, second.packet_id),
        (first.uid.as_str(), first.seq, 2)
    );
    alice.publish(3, text("same", "bob", "changed")).await;
    assert_eq!(
        puback(&alice).await.code,
        Code::ClientMsgIdConflict.as_u32()
    );
    let (m, _) = delivered(&bob).await;
    bob.ack(m.inbox_seq());
    assert!(!bob.outbox().is_closed());
    assert_eq!(bob.inflight(), 0);
}

#[tokio::test]
async fn unacknowledged_pushes_are_resent_with_dup_after_the_ack_timeout() {
    let f = fixture(|c| c.ack_timeout = Duration::from_secs(10));
    let alice = connect(&f.engine, "alice", "phone").await;
    let bob = connect(&f.engine, "bob", "phone").await;
    alice.publish(1, text("c", "bob", "hi")).await;
    puback(&alice).await;
    let (m, _) = delivered(&bob).await;
    // From here on nothing waits on the store, so the clock can be driven by hand.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(5)).await;
    bob.resend_due();
    assert!(!bob.outbox().is_closed());
    assert!(
        tokio::time::timeout(Duration::ZERO, bob.outbox().pop())
            .await
            .is_err(),
        "nothing is resent before the timeout"
    );
    bob.resend_due();
    tokio::time::advance(Duration::from_secs(6)).await;
    bob.resend_due();
    let (again, dup) = delivered(&bob).await;
    assert!(dup);
    assert_eq!(again.uid(), m.uid());
    bob.ack(m.inbox_seq());
    tokio::time::advance(Duration::from_secs(20)).await;
    bob.resend_due();
    assert_eq!(bob.inflight(), 0);
}

#[tokio::test]
async fn single_device_policy_kicks_the_older_session() {
    let f = fixture(|c| c.device_policy = DevicePolicy::Single);
    let old = connect(&f.engine, "alice", "phone").await;
    let _new = connect(&f.engine, "alice", "laptop").await;
    assert!(matches!(
        next(&old).await,
        Outbound::Disconnect(Code::Kicked)
    ));
    assert_eq!(f.engine.session_count(), 1);
}

#[tokio::test]
async fn a_device_that_does_not_acknowledge_is_disconnected_as_a_slow_consumer() {
    let f = fixture(|c| c.max_inflight = 3);
    let alice = connect(&f.engine, "alice", "phone").await;
    let bob = connect(&f.engine, "bob", "phone").await;
    for i in 0..4 {
        alice.publish(i, text(&i.to_string(), "bob", "x")).await;
        puback(&alice).await;
    }
    for _ in 0..3 {
        delivered(&bob).await;
    }
    assert!(matches!(
        next(&bob).await,
        Outbound::Disconnect(Code::SlowConsumer)
    ));
    // The fourth message is still in bob's inbox.
    let again = connect(&f.engine, "bob", "phone").await;
    again.sync(1, 0, 0).await;
    match next(&again).await {
        Outbound::QueryAck(q) => assert_eq!(q.messages.len(), 4),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sync_pages_and_confirms_move_the_stored_cursor() {
    let f = fixture(|_| {});
    let alice = connect(&f.engine, "alice", "phone").await;
    for i in 0..5 {
        alice.publish(i, text(&i.to_string(), "bob", "x")).await;
        puback(&alice).await;
    }
    let bob = connect(&f.engine, "bob", "phone").await;
    bob.sync(1, 0, 3).await;
    let Outbound::QueryAck(page) = next(&bob).await else {
        panic!()
    };
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.inbox_seq())
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(page.has_more);
    bob.confirm(3);
    bob.sync(2, 3, 3).await;
    let Outbound::QueryAck(page) = next(&bob).await else {
        panic!()
    };
    assert_eq!(page.messages.len(), 2);
    assert!(!page.has_more);
    bob.confirm(5);
    bob.sync(3, 0, 501).await;
    let Outbound::QueryAck(bad) = next(&bob).await else {
        panic!()
    };
    assert_eq!(bad.code, Code::InvalidQuery.as_u32());
    drop(bob);
    // The cursor is written by the committer; a reconnect sees it.
    let mut cursor = 0;
    for _ in 0..50 {
        let (s, info) = connect_info(&f.engine, "bob", "phone").await;
        cursor = info.cursor;
        drop(s);
        if cursor == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cursor, 5);
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused() {
    let f = fixture(|_| {});
    let (token, _) = f.engine.mint_token("alice", None).await.unwrap();
    let s = connect(&f.engine, "alice", "phone").await;
    f.engine.revoke_tokens("alice").await.unwrap();
    assert!(matches!(
        next(&s).await,
        Outbound::Disconnect(Code::TokenRevoked)
    ));
    let refused = f
        .engine
        .connect(ConnectRequest {
            token,
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code, Code::TokenRevoked);
    let expired = auth::mint(&creds(), "alice", 1, 0, 1).unwrap();
    let refused = f
        .engine
        .connect(ConnectRequest {
            token: expired,
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code, Code::TokenExpired);
}

#[tokio::test]
async fn bad_publishes_get_their_codes() {
    let f = fixture(|c| c.max_content_bytes = 64);
    let alice = connect(&f.engine, "alice", "phone").await;
    let cases = [
        (
            SendRequest {
                conversation_type: 9,
                ..text("a", "bob", "x")
            },
            Code::UnknownConversationType,
        ),
        (
            SendRequest {
                content: String::new(),
                ..text("a", "bob", "x")
            },
            Code::ContentEmpty,
        ),
        (text("a", "bob", &"x".repeat(100)), Code::ContentTooLarge),
        (text("", "bob", "x"), Code::InvalidClientMsgId),
        (text("a", "not a user", "x"), Code::InvalidTarget),
        (
            SendRequest {
                msg_type: "bad type".into(),
                ..text("a", "bob", "x")
            },
            Code::InvalidMessageType,
        ),
    ];
    for (i, (send, code)) in cases.into_iter().enumerate() {
        alice.publish(i as u32, send).await;
        let ack = puback(&alice).await;
        assert_eq!(ack.code, code.as_u32(), "case {i}: {}", ack.text);
        assert!(ack.text.starts_with(code.text()));
    }
}

#[tokio::test]
async fn shutdown_commits_queued_publishes_then_disconnects_everyone() {
    let f = fixture(|_| {});
    let alice = connect(&f.engine, "alice", "phone").await;
    for i in 0..20 {
        alice.publish(i, text(&i.to_string(), "bob", "x")).await;
    }
    f.engine.shutdown().await;
    for i in 0..20 {
        let ack = puback(&alice).await;
        assert_eq!((ack.packet_id, ack.code), (i, 0));
    }
    assert!(matches!(
        next(&alice).await,
        Outbound::Disconnect(Code::ServerShutdown)
    ));
}

#[tokio::test]
async fn sync_pages_stay_within_a_quarter_of_the_outbound_queue() {
    let f = fixture(|c| {
        c.outbound_queue_bytes = 64 * 1024;
        c.max_content_bytes = 16 * 1024;
    });
    let alice = connect(&f.engine, "alice", "phone").await;
    let body = "x".repeat(10_000);
    for i in 0..20 {
        alice.publish(i, text(&i.to_string(), "bob", &body)).await;
        assert_eq!(puback(&alice).await.code, 0);
    }
    let bob = connect(&f.engine, "bob", "phone").await;
    let mut after = 0;
    let mut pages = 0;
    loop {
        bob.sync(pages, after, 100).await;
        let Outbound::QueryAck(page) = next(&bob).await else {
            panic!()
        };
        pages += 1;
        let bytes: usize = page.messages.iter().map(|m| m.content().len()).sum();
        assert!(bytes <= 16 * 1024 + 10_100, "page of {bytes} bytes");
        assert!(!page.messages.is_empty());
        after = page.messages.last().unwrap().inbox_seq();
        if !page.has_more {
            break;
        }
    }
    assert_eq!(after, 20);
    assert!(pages >= 10, "{pages} pages");
    assert!(!bob.outbox().is_closed(), "never a slow consumer");
}

#[tokio::test]
async fn acknowledgements_beyond_what_a_session_was_given_are_ignored() {
    let f = fixture(|_| {});
    let alice = connect(&f.engine, "alice", "phone").await;
    alice.publish(1, text("1", "bob", "x")).await;
    puback(&alice).await;
    let bob = connect(&f.engine, "bob", "phone").await;
    bob.confirm(u64::MAX);
    bob.ack(u64::MAX);
    bob.ack(u64::MAX - 1);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_bob, info) = connect_info(&f.engine, "bob", "phone").await;
    assert!(
        info.cursor <= 1,
        "cursor {} is within the inbox",
        info.cursor
    );
    alice.publish(2, text("2", "bob", "y")).await;
    puback(&alice).await;
    let (bob, _) = connect_info(&f.engine, "bob", "phone").await;
    alice.publish(3, text("3", "bob", "z")).await;
    puback(&alice).await;
    let (m, _) = delivered(&bob).await;
    assert_eq!(m.inbox_seq(), 3, "pushes still reach the device");
}

#[tokio::test]
async fn a_connect_after_shutdown_began_is_refused() {
    let f = fixture(|_| {});
    let (token, _) = f.engine.mint_token("alice", None).await.unwrap();
    f.engine.shutdown().await;
    let refused = f
        .engine
        .connect(ConnectRequest {
            token,
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code, Code::ServerShutdown);
    assert_eq!(f.engine.session_count(), 0);
}

#[tokio::test]
async fn sync_reads_the_store_only_below_what_the_session_knows() {
    let f = fixture(|_| {});
    let alice = connect(&f.engine, "alice", "phone").await;
    alice.publish(1, text("1", "bob", "before")).await;
    puback(&alice).await;
    let (bob, info) = connect_info(&f.engine, "bob", "phone").await;
    assert_eq!(
        info.inbox_seq, 1,
        "entries before the connect are in the CONNACK's inbox seq"
    );
    alice.publish(2, text("2", "bob", "after")).await;
    puback(&alice).await;
    let (pushed, _) = delivered(&bob).await;
    assert_eq!(
        pushed.inbox_seq(),
        2,
        "entries after the connect are pushed"
    );
    // Below what the session knows, the store answers; at it, nothing is read and nothing is due.
    bob.sync(1, 0, 0).await;
    let Outbound::QueryAck(page) = next(&bob).await else {
        panic!()
    };
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.inbox_seq())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    bob.sync(2, 2, 0).await;
    let Outbound::QueryAck(page) = next(&bob).await else {
        panic!()
    };
    assert!(page.messages.is_empty() && !page.has_more && page.code == 0);
}

/// A pusher that records the jobs it is handed.
struct Recorder {
    jobs: tokio::sync::mpsc::UnboundedSender<push::PushJob>,
    outcomes: tokio::sync::broadcast::Sender<PushOutcome>,
}

impl push::Pusher for Recorder {
    fn public_key(&self) -> String {
        "KEY".into()
    }
    fn notify(&self, job: push::PushJob) {
        self.jobs.send(job).unwrap();
    }
    fn outcomes(&self) -> tokio::sync::broadcast::Receiver<PushOutcome> {
        self.outcomes.subscribe()
    }
}

#[tokio::test]
async fn committed_messages_go_to_the_pusher_with_which_devices_are_awake() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("t.db"))).unwrap();
    // Notifications are due only for users with a token.
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        store
            .save_push_token(tidings_store::PushTokenRecord {
                user: user.into(),
                device: "phone".into(),
                provider: tidings_store::PushProvider::Fcm,
                token: format!("t-{user}"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut config = EngineConfig::new(creds());
    config.send_rate = 0;
    let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Recorder {
        jobs,
        outcomes: tokio::sync::broadcast::channel(1).0,
    };
    let engine = Engine::start_with_pusher(
        config,
        Arc::new(store),
        system_clock(),
        None,
        Some(Arc::new(recorder)),
    );
    assert_eq!(engine.vapid_public_key().as_deref(), Some("KEY"));
    let alice = connect(&engine, "alice", "phone").await;
    let _bob = connect(&engine, "bob", "phone").await;
    // Each recipient (never the sender), and whether their device "phone" was awake.
    let recipients = |job: push::PushJob| {
        let mut users: Vec<(String, bool)> = job
            .recipients
            .into_iter()
            .map(|r| (r.user, r.awake.covers("phone")))
            .collect();
        users.sort();
        (job.message.uid.clone(), users)
    };
    let next_job = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<push::PushJob>| {
        recipients(rx.try_recv().expect("a job, handed over before the PUBACK"))
    };

    // To bob (online: awake); to carol (offline); never the sender.
    alice.publish(1, text("c1", "bob", "hi")).await;
    let ack = puback(&alice).await;
    assert_eq!(
        next_job(&mut rx),
        (ack.uid, vec![("bob".to_string(), true)])
    );
    alice.publish(2, text("c2", "carol", "hi")).await;
    let ack = puback(&alice).await;
    assert_eq!(
        next_job(&mut rx),
        (ack.uid, vec![("carol".to_string(), false)])
    );
    // An uncounted message makes nothing due.
    alice
        .publish(
            4,
            SendRequest {
                uncounted: true,
                msg_type: "app:sync".into(),
                ..text("c4", "carol", "quiet")
            },
        )
        .await;
    puback(&alice).await;
    assert!(rx.try_recv().is_err(), "nothing for an uncounted message");
    // Nor for a user without a token: the store made nothing due.
    alice.publish(5, text("c5", "frank", "hi")).await;
    puback(&alice).await;
    assert!(rx.try_recv().is_err(), "nothing for a user without a token");

    // A group message: its offline members.
    engine
        .change_group(
            "g1",
            "alice",
            GroupAction::Create {
                kind: GroupKind::Managed,
                owner: "alice".into(),
                name: "g".into(),
                portrait: String::new(),
                extra: String::new(),
                members: vec!["alice".into(), "bob".into(), "carol".into(), "dave".into()],
            },
        )
        .await
        .unwrap();
    assert!(
        rx.try_recv().is_err(),
        "group notifications are not notified"
    );
    alice
        .publish(
            3,
            SendRequest {
                conversation_type: 3,
                target_id: "g1".into(),
                ..text("c3", "g1", "all")
            },
        )
        .await;
    // The creation's notification comes first.
    let ack = loop {
        if let Outbound::PubAck(p) = next(&alice).await {
            break p;
        }
    };
    assert_eq!(
        next_job(&mut rx),
        (
            ack.uid,
            vec![
                ("bob".into(), true),
                ("carol".into(), false),
                ("dave".into(), false)
            ]
        )
    );

    // A system message: its offline recipients.
    let posted = engine
        .send_system(
            "system",
            &["alice".into(), "erin".into()],
            text("s1", "", "notice"),
        )
        .await
        .unwrap();
    let mut got: Vec<(String, Vec<(String, bool)>)> = vec![next_job(&mut rx)];
    got.extend(rx.try_recv().ok().map(recipients));
    got.sort();
    assert_eq!(got.len(), 2, "{got:?}");
    let users: Vec<_> = got.iter().flat_map(|(_, u)| u.clone()).collect();
    assert!(users.contains(&("alice".into(), true)) && users.contains(&("erin".into(), false)));
    assert!(
        got.iter()
            .all(|(uid, _)| posted.iter().any(|p| p.uid == *uid))
    );
}

#[tokio::test]
async fn a_file_is_seen_by_those_who_see_a_message_whose_content_names_it() {
    let f = fixture(|_| {});
    let alice = connect(&f.engine, "alice", "phone").await;
    let file = "0123456789abcdef0123456789abcdef";
    alice
        .publish(
            1,
            text("c1", "bob", &format!("/v1/files/{file}?exp=1&sig=2")),
        )
        .await;
    let with_file = puback(&alice).await.seq;
    alice.publish(2, text("c2", "bob", "no file")).await;
    let without = puback(&alice).await.seq;
    let at = |target: &str, seq: u64| MessageRef {
        conversation_type: 1,
        target_id: target.into(),
        seq,
    };
    let code = |r: Result<(), Refusal>| r.err().map(|r| r.code);
    let sees = |user: &'static str, file: &'static str, m: MessageRef| {
        let engine = f.engine.clone();
        async move { code(engine.can_see_file(user, file, &m).await) }
    };
    assert_eq!(sees("bob", file, at("alice", with_file)).await, None);
    assert_eq!(sees("alice", file, at("bob", with_file)).await, None);
    let refused = Some(Code::FileLinkRefused);
    assert_eq!(sees("bob", file, at("alice", without)).await, refused);
    assert_eq!(sees("carol", file, at("alice", with_file)).await, refused);
    assert_eq!(sees("bob", file, at("alice", 9)).await, refused);
    // An empty id is in every content, and names no file.
    assert_eq!(sees("bob", "", at("alice", with_file)).await, refused);
    let bad = Some(Code::BadRequest);
    assert_eq!(sees("bob", file, at("alice", 0)).await, bad);
    assert_eq!(sees("bob", file, at("no one!", 1)).await, bad);
}
