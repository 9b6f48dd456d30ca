//! Notifications to phones through FCM and APNs, end to end: a real server (in-process, or the
//! `tidings` binary for the crash) sends to local fakes of the two providers
//! (`tidings-push-fakes`), which check what the real services check (the OAuth assertion and
//! access token, the APNs provider token and headers, the message shapes) and record what they
//! accepted. Nothing arriving is shown by a later message's notification arriving alone.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tidings_client::{ConversationUpdate, Outgoing, PushToken};
use tidings_push_fakes::{ApnsAccepted, FakeApns, FakeFcm, FcmAccepted};
use tidings_server::config::{ApnsSettings, FcmSettings};

use crate::push::offline;
use crate::util::*;

const TOPIC: &str = "com.example.chat";
const WAIT_PUSH: Duration = Duration::from_secs(10);

/// A server with FCM and APNs pointed at the fakes.
async fn start(fcm: &FakeFcm, apns: &FakeApns) -> TestServer {
    start_with(fcm, apns, |_| {}).await
}

/// [`start`], with more settings.
async fn start_with(
    fcm: &FakeFcm,
    apns: &FakeApns,
    tune: impl FnOnce(&mut tidings_server::Config),
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let (account, key) = provider_files(dir.path(), fcm, apns);
    let server = TestServer::start_with(|c| {
        c.push_retry = Duration::from_millis(10);
        c.mobile_push.fcm = Some(FcmSettings {
            credentials: account,
            endpoint: fcm.url(),
        });
        c.mobile_push.apns = Some(ApnsSettings {
            key,
            key_id: apns.key_id().into(),
            team_id: apns.team_id().into(),
            endpoint: apns.production_url(),
            sandbox_endpoint: apns.sandbox_url(),
        });
        c.mobile_push.apns_topic = TOPIC.into();
        c.mobile_push.mentions_pass_mute = true;
        tune(c);
    })
    .await;
    // The key files are read at start.
    drop(dir);
    server
}

/// The service account and the `.p8` key as files, in `dir`.
fn provider_files(
    dir: &Path,
    fcm: &FakeFcm,
    apns: &FakeApns,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let account = dir.join("service-account.json");
    std::fs::write(&account, fcm.service_account_json()).unwrap();
    let key = dir.join("AuthKey.p8");
    std::fs::write(&key, apns.key_pem()).unwrap();
    (account, key)
}

fn fcm_token(user: &str) -> PushToken {
    PushToken {
        provider: "fcm".into(),
        token: format!("fcm-{user}:APA91b"),
        ..Default::default()
    }
}

/// A production APNs token registration.
fn apns_token(hex: &str) -> PushToken {
    PushToken {
        provider: "apns".into(),
        token: hex.into(),
        ..Default::default()
    }
}

/// A 32-byte APNs device token, hex, different per name.
fn apns_hex(name: &str) -> String {
    let mut hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    while hex.len() < 64 {
        hex.push('0');
    }
    hex.truncate(64);
    hex
}

/// Connects `user`'s `device`, registers `token` for it, and leaves.
async fn register_and_leave(server: &TestServer, user: &str, device: &str, token: &PushToken) {
    let (client, _events) = server.client(user, device).await;
    client.register_push_token(token).await.unwrap();
    client.close().await;
    offline(server, user).await;
}

async fn fcm_wait(fcm: &FakeFcm, n: usize) -> Vec<FcmAccepted> {
    fcm.wait_accepted(n, WAIT_PUSH).await.unwrap()
}

async fn apns_wait(apns: &FakeApns, n: usize) -> Vec<ApnsAccepted> {
    apns.wait_accepted(n, WAIT_PUSH).await.unwrap()
}

#[tokio::test]
async fn an_offline_device_is_notified_once_with_its_badge_on_each_provider() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let tablet = apns_hex("bob-tablet");
    apns.device(&tablet, TOPIC, true);
    let server = start(&fcm, &apns).await;
    api(
        &server,
        "PUT",
        "/api/v1/users/alice",
        json!({ "name": "Alice" }),
    )
    .await;
    register_and_leave(&server, "bob", "phone", &fcm_token("bob")).await;
    let apns_token = PushToken {
        provider: "apns".into(),
        token: tablet.to_uppercase(),
        sandbox: true,
        locale: "en-GB".into(),
        ..Default::default()
    };
    register_and_leave(&server, "bob", "tablet", &apns_token).await;
    // Alice's own devices are never notified of her messages.
    register_and_leave(&server, "alice", "laptop", &fcm_token("alice")).await;

    let (alice, _a) = server.client("alice", "phone").await;
    let first = alice
        .send(Outgoing {
            push_data: r#"{"screen":"chat"}"#.into(),
            ..Outgoing::text("bob", "are you there?")
        })
        .await
        .unwrap();
    // The badge is the unread count when the notification is made: the second message is sent
    // once the first's notifications are out.
    fcm_wait(&fcm, 1).await;
    apns_wait(&apns, 1).await;
    let second = alice.send(Outgoing::text("bob", "hello?")).await.unwrap();

    let got = fcm_wait(&fcm, 2).await;
    let m = &got[0].message;
    assert_eq!(got[0].token.as_deref(), Some("fcm-bob:APA91b"));
    assert_eq!(
        m["notification"],
        json!({"title": "Alice", "body": "are you there?"})
    );
    assert_eq!(m["data"]["uid"], first.uid.as_str());
    assert_eq!(m["data"]["targetId"], "alice");
    assert_eq!(m["data"]["badge"], "1");
    assert_eq!(
        m["data"]["pushData"], r#"{"screen":"chat"}"#,
        "seed 004's pushData"
    );
    assert_eq!(m["android"]["priority"], "HIGH");
    assert_eq!(m["android"]["notification"]["tag"], first.uid.as_str());
    assert_eq!(got[1].message["data"]["uid"], second.uid.as_str());
    assert_eq!(
        got[1].message["data"]["badge"], "2",
        "the badge is the user's unread count"
    );

    let got = apns_wait(&apns, 2).await;
    let a = &got[0];
    assert_eq!(a.token, tablet, "the token is kept in lower case");
    assert!(a.sandbox, "a sandbox token goes to the sandbox");
    assert_eq!(a.headers["apns-topic"], TOPIC);
    assert_eq!(a.headers["apns-push-type"], "alert");
    assert_eq!(a.headers["apns-priority"], "10");
    assert_eq!(a.headers["apns-collapse-id"], first.uid);
    let aps = &a.payload["aps"];
    assert_eq!(
        aps["alert"],
        json!({"title": "Alice", "body": "are you there?"})
    );
    assert_eq!(aps["badge"], 1);
    assert_eq!(aps["mutable-content"], 1);
    assert_eq!(aps["thread-id"], "1:alice");
    assert_eq!(a.payload["tidings"]["pushData"], r#"{"screen":"chat"}"#);
    assert_eq!(got[1].payload["aps"]["badge"], 2);
    assert!(got[1].payload["tidings"].get("pushData").is_none());

    // Once each: a third message's notifications arrive after nothing else.
    let third = alice.send(Outgoing::text("bob", "third")).await.unwrap();
    let got = fcm_wait(&fcm, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2].message["data"]["uid"], third.uid.as_str());
    assert!(
        got.iter()
            .all(|a| a.token.as_deref() == Some("fcm-bob:APA91b")),
        "the sender's device got nothing"
    );
    let got = apns_wait(&apns, 3).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].headers["apns-collapse-id"], third.uid);
}

#[tokio::test]
async fn a_connected_device_is_not_notified_until_its_app_is_in_the_background() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let server = start(&fcm, &apns).await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;
    bob.register_push_token(&fcm_token("bob")).await.unwrap();
    let (alice, _a) = server.client("alice", "phone").await;

    let seen = alice
        .send(Outgoing::text("bob", "seen live"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut bob_events).await.uid, seen.uid);
    bob.set_app_state(true).await.unwrap();
    let backgrounded = alice
        .send(Outgoing::text("bob", "in the background"))
        .await
        .unwrap();
    let got = fcm_wait(&fcm, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].message["data"]["uid"],
        backgrounded.uid.as_str(),
        "only the message sent while the app was in the background"
    );

    // In the foreground again: nothing; the next notification is of a message sent after the
    // device left.
    bob.set_app_state(false).await.unwrap();
    let live = alice
        .send(Outgoing::text("bob", "live again"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut bob_events).await.uid, backgrounded.uid);
    assert_eq!(next_message(&mut bob_events).await.uid, live.uid);
    bob.close().await;
    offline(&server, "bob").await;
    let after = alice.send(Outgoing::text("bob", "gone")).await.unwrap();
    let got = fcm_wait(&fcm, 2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].message["data"]["uid"], after.uid.as_str());
}

#[tokio::test]
async fn a_muted_conversation_is_silent_but_a_mention_passes() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let server = start(&fcm, &apns).await;
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/groups",
        json!({ "groupId": "climbers", "name": "Climbers", "ownerId": "alice",
                "memberIds": ["alice", "bob"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (bob, _b) = server.client("bob", "phone").await;
    bob.register_push_token(&fcm_token("bob")).await.unwrap();
    bob.update_conversation(ConversationUpdate {
        conversation_type: 3,
        target_id: "climbers".into(),
        muted: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    bob.close().await;
    offline(&server, "bob").await;

    let (alice, _a) = server.client("alice", "phone").await;
    alice
        .send(Outgoing::group_text("climbers", "muted chatter"))
        .await
        .unwrap();
    let mention = alice
        .send(Outgoing::group_text("climbers", "@bob look").mentioning(&["bob"]))
        .await
        .unwrap();
    let got = fcm_wait(&fcm, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0].message;
    assert_eq!(m["data"]["uid"], mention.uid.as_str());
    assert_eq!(
        m["notification"],
        json!({"title": "Climbers", "body": "alice: @bob look"}),
        "a group's notification names the group, then the sender"
    );
    assert_eq!(
        m["data"]["badge"], "2",
        "the muted message still counts as unread"
    );
}

#[tokio::test]
async fn dead_tokens_are_pruned() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let gone = apns_hex("bob-old-phone");
    apns.device(&gone, TOPIC, false);
    apns.unregister(&gone);
    fcm.unregister("fcm-bob:APA91b");
    let server = start(&fcm, &apns).await;
    register_and_leave(&server, "bob", "phone", &fcm_token("bob")).await;
    register_and_leave(&server, "bob", "old-phone", &apns_token(&gone)).await;
    let listed = api(&server, "GET", "/api/v1/users/bob/push-tokens", Value::Null).await;
    assert_eq!(
        listed.1["tokens"].as_array().unwrap().len(),
        2,
        "{listed:?}"
    );

    let (alice, _a) = server.client("alice", "phone").await;
    alice.send(Outgoing::text("bob", "anyone?")).await.unwrap();
    let engine = server.running().engine.clone();
    eventually("both dead tokens are removed", || {
        let engine = engine.clone();
        async move { engine.push_tokens_of("bob").await.unwrap().is_empty() }
    })
    .await;
    assert!(fcm.accepted().is_empty() && apns.accepted().is_empty());
}

#[tokio::test]
async fn a_provider_answering_503_then_200_delivers_once() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let tablet = apns_hex("bob-tablet");
    apns.device(&tablet, TOPIC, false);
    fcm.fail("fcm-bob:APA91b", 503, "UNAVAILABLE", Some(0), 1);
    apns.fail(&tablet, 503, "ServiceUnavailable", None, 2);
    let server = start(&fcm, &apns).await;
    register_and_leave(&server, "bob", "phone", &fcm_token("bob")).await;
    register_and_leave(&server, "bob", "tablet", &apns_token(&tablet)).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let first = alice.send(Outgoing::text("bob", "retry me")).await.unwrap();
    let marker = alice.send(Outgoing::text("bob", "marker")).await.unwrap();
    let got = fcm_wait(&fcm, 2).await;
    let uids: Vec<&str> = got
        .iter()
        .map(|a| a.message["data"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids.len(), 2);
    assert!(uids.contains(&first.uid.as_str()) && uids.contains(&marker.uid.as_str()));
    assert!(fcm.send_requests() >= 3, "the 503 was answered and retried");
    let got = apns_wait(&apns, 2).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|a| a.headers["apns-collapse-id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&first.uid.as_str()) && ids.contains(&marker.uid.as_str()));
    assert!(apns.requests() >= 4, "two 503s, then the two deliveries");
}

#[tokio::test]
async fn tokens_are_registered_checked_and_moved_through_the_api() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let server = start(&fcm, &apns).await;
    let register = |user: &str, body: Value| {
        let path = format!("/api/v1/users/{user}/push-tokens");
        let server = &server;
        async move { api(server, "POST", &path, body).await }
    };
    let (status, body) = register(
        "carol",
        json!({"provider": "fcm", "token": "shared:tok", "deviceId": "phone", "appId": "com.example.chat", "locale": "de-DE"}),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (200, Some(0)), "{body}");
    // The same token registered for another user moves to them.
    let (status, _) = register(
        "dave",
        json!({"provider": "fcm", "token": "shared:tok", "deviceId": "phone"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, carol) = api(
        &server,
        "GET",
        "/api/v1/users/carol/push-tokens",
        Value::Null,
    )
    .await;
    assert_eq!(carol["tokens"], json!([]));
    let (_, dave) = api(
        &server,
        "GET",
        "/api/v1/users/dave/push-tokens",
        Value::Null,
    )
    .await;
    assert_eq!(dave["tokens"][0]["deviceId"], "phone");

    for (body, why) in [
        (
            json!({"provider": "gcm", "token": "x"}),
            "an unknown provider",
        ),
        (
            json!({"provider": "fcm", "token": "has space"}),
            "a bad FCM token",
        ),
        (
            json!({"provider": "apns", "token": "xyz"}),
            "a bad APNs token",
        ),
        (
            json!({"provider": "fcm", "token": "ok", "locale": "en_GB"}),
            "a bad locale",
        ),
    ] {
        let (status, body) = register("dave", body).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(40029)),
            "{why}: {body}"
        );
    }
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/users/dave/push-tokens/remove",
        json!({"provider": "fcm", "token": "shared:tok"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, dave) = api(
        &server,
        "GET",
        "/api/v1/users/dave/push-tokens",
        Value::Null,
    )
    .await;
    assert_eq!(dave["tokens"], json!([]));
}

#[tokio::test]
async fn push_data_is_limited() {
    let server = TestServer::start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let refused = alice
        .send(Outgoing {
            push_data: "x".repeat(1025),
            ..Outgoing::text("bob", "hi")
        })
        .await
        .unwrap_err();
    assert!(format!("{refused:?}").contains("40007"), "{refused:?}");
    alice
        .send(Outgoing {
            push_data: "x".repeat(1024),
            ..Outgoing::text("bob", "hi")
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_provider_that_is_not_configured_is_refused() {
    let server = TestServer::start().await;
    let (bob, _b) = server.client("bob", "phone").await;
    let refused = bob
        .register_push_token(&fcm_token("bob"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("40030") || format!("{refused:?}").contains("PushDisabled"),
        "{refused:?}"
    );
}

/// SIGKILL the server after it committed a message but before the provider took its
/// notification (the token endpoint fails, and the retry waits a minute); on restart the
/// notification is sent, once.
#[tokio::test]
async fn a_server_killed_between_commit_and_push_notifies_once_after_restart() {
    use crate::process::{BIN, ServerProcess, token};

    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("data");
    let (account, _key) = provider_files(cwd.path(), &fcm, &apns);
    let endpoint = fcm.url();
    let args = [
        "--push-fcm-credentials",
        account.to_str().unwrap(),
        "--push-fcm-endpoint",
        endpoint.as_str(),
        "--push-retry-ms",
        "60000",
    ];
    let mut server = ServerProcess::start(cwd.path(), &args);
    // The CLI registers bob's phone.
    let out = std::process::Command::new(BIN)
        .args(["push-token", "--provider", "fcm", "--device", "phone"])
        .args(["--server", &server.url, "--token", &token(&data, "bob")])
        .arg("fcm-bob:APA91b")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"code":0}"#);

    fcm.fail_token_grants(503, None, 1);
    let alice_at = |url: &str| {
        let mut config = tidings_client::ClientConfig::new(url, token(&data, "alice"));
        config.device_id = "phone".into();
        tidings_client::Client::connect(config)
    };
    let (alice, _a) = alice_at(&server.url).await.unwrap();
    let sent = alice
        .send(Outgoing {
            push_data: "kept through the crash".into(),
            ..Outgoing::text("bob", "after the crash")
        })
        .await
        .unwrap();
    // The worker tried: its access token was refused, and it waits to retry.
    eventually("the provider was tried", || {
        let tried = fcm.grant_requests() == 1;
        async move { tried }
    })
    .await;
    assert_eq!((fcm.token_grants(), fcm.send_requests()), (0, 0));
    server.signal(9);
    server.wait();
    alice.close().await;
    assert!(fcm.accepted().is_empty());

    let server = ServerProcess::start(cwd.path(), &args);
    let got = fcm_wait(&fcm, 1).await;
    assert_eq!(got[0].message["data"]["uid"], sent.uid.as_str());
    assert_eq!(got[0].message["data"]["pushData"], "kept through the crash");
    // Once: a later message's notification follows it alone.
    let (alice, _a) = alice_at(&server.url).await.unwrap();
    let marker = alice.send(Outgoing::text("bob", "marker")).await.unwrap();
    let got = fcm_wait(&fcm, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].message["data"]["uid"], marker.uid.as_str());
    alice.close().await;
}

#[tokio::test]
async fn a_recall_replaces_the_notification_it_withdraws() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let server = start(&fcm, &apns).await;
    register_and_leave(&server, "bob", "phone", &fcm_token("bob")).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let sent = alice.send(Outgoing::text("bob", "oops")).await.unwrap();
    fcm_wait(&fcm, 1).await;
    alice.recall(1, "bob", sent.seq).await.unwrap();
    let got = fcm_wait(&fcm, 2).await;
    let m = &got[1].message;
    assert_eq!(m["data"]["kind"], "recall");
    assert_eq!(m["data"]["tag"], sent.uid.as_str());
    assert_eq!(
        m["android"]["notification"]["tag"],
        sent.uid.as_str(),
        "it replaces the recalled message's notification"
    );
    assert_eq!(m["notification"]["body"], tidings_push::RECALLED_TEXT);
    assert!(!m.to_string().contains("oops"), "{m}");
}

#[tokio::test]
async fn data_only_notifications_carry_no_text_off_the_server() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    let tablet = apns_hex("bob-tablet");
    apns.device(&tablet, TOPIC, false);
    let server = start_with(&fcm, &apns, |c| c.mobile_push.data_only = true).await;
    register_and_leave(&server, "bob", "phone", &fcm_token("bob")).await;
    register_and_leave(&server, "bob", "tablet", &apns_token(&tablet)).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let sent = alice
        .send(Outgoing::text("bob", "a secret plan"))
        .await
        .unwrap();
    let m = &fcm_wait(&fcm, 1).await[0].message;
    assert_eq!(m["data"]["uid"], sent.uid.as_str());
    assert!(m.get("notification").is_none(), "{m}");
    assert!(!m.to_string().contains("secret"), "{m}");
    let a = &apns_wait(&apns, 1).await[0];
    assert_eq!(a.headers["apns-push-type"], "background");
    assert_eq!(a.headers["apns-priority"], "5");
    assert_eq!(a.payload["aps"], json!({"content-available": 1}));
    assert!(!a.payload.to_string().contains("secret"));
}

#[tokio::test]
async fn an_encrypted_conversations_notifications_are_data_only() {
    let fcm = FakeFcm::start().await.unwrap();
    let apns = FakeApns::start().await.unwrap();
    // Data-only is off for the server: encryption makes it so for the conversation.
    let server = start(&fcm, &apns).await;
    let state = tempfile::tempdir().unwrap();
    {
        let (bob, _events) = server.client("bob", "phone").await;
        bob.register_push_token(&fcm_token("bob")).await.unwrap();
        let e2ee = tidings_client::E2ee::open(&bob, "phone", state.path()).unwrap();
        e2ee.publish().await.unwrap();
        bob.close().await;
    }
    offline(&server, "bob").await;
    let (alice, _a) = server.client("alice", "phone").await;
    let alice_state = tempfile::tempdir().unwrap();
    let e2ee = tidings_client::E2ee::open(&alice, "phone", alice_state.path()).unwrap();
    e2ee.publish().await.unwrap();
    let sent = e2ee
        .send_text(1, "bob", "the vault code is 7731")
        .await
        .unwrap();
    // The commit that made the group is not counted, so it notifies nobody: the one
    // notification is the message's.
    let m = &fcm_wait(&fcm, 1).await[0].message;
    assert_eq!(m["data"]["uid"], sent.uid.as_str());
    assert!(m.get("notification").is_none(), "{m}");
    assert!(m["data"].get("text").is_none(), "{m}");
    assert!(!m.to_string().contains("vault"), "{m}");
    // A plain message in the same server still has its text.
    alice
        .send(Outgoing::text("bob", "plain words"))
        .await
        .unwrap();
    let plain = &fcm_wait(&fcm, 2).await[1].message;
    assert_eq!(plain["notification"]["body"], "plain words", "{plain}");
}
