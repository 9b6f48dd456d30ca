//! Web Push to offline devices. A small HTTP server in the test plays the push service: it
//! checks each request's VAPID JWT (ES256 signature with the `k` key, `aud`, `exp`, and `k`
//! against `/navi`'s key) and decrypts its aes128gcm body with the subscription's private key
//! and auth secret, as a browser would.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use serde_json::Value;
use tidings_client::{ConversationUpdate, Outgoing, PushSubscription, QuietHours};
use tidings_engine::PushOutcome;
use tidings_proto::Code;
use tokio::sync::{broadcast, mpsc, watch};

use crate::util::*;

/// What the push service answers a request to one path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    Status(u16),
    /// Hold the request until the test releases it, then answer 201.
    Hang,
}

/// A request the push service got.
pub(crate) struct Seen {
    pub(crate) path: String,
    headers: HeaderMap,
    body: Bytes,
}

struct Service {
    /// Per path, the answers to give in turn; 201 once they run out.
    script: Mutex<HashMap<String, VecDeque<Answer>>>,
    seen: mpsc::UnboundedSender<Seen>,
    release: watch::Receiver<bool>,
}

async fn receive(
    State(service): State<Arc<Service>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_string();
    let answer = service
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Answer::Status(201));
    service
        .seen
        .send(Seen {
            path,
            headers,
            body,
        })
        .unwrap();
    match answer {
        Answer::Status(s) => StatusCode::from_u16(s).unwrap(),
        Answer::Hang => {
            let mut release = service.release.clone();
            let _ = release.wait_for(|r| *r).await;
            StatusCode::CREATED
        }
    }
}

/// The push service in the test.
pub(crate) struct PushService {
    pub(crate) origin: String,
    service: Arc<Service>,
    seen: mpsc::UnboundedReceiver<Seen>,
    release: watch::Sender<bool>,
}

impl PushService {
    pub(crate) async fn start() -> PushService {
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (release, release_rx) = watch::channel(false);
        let service = Arc::new(Service {
            script: Mutex::new(HashMap::new()),
            seen: seen_tx,
            release: release_rx,
        });
        let router = Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(service.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        PushService {
            origin,
            service,
            seen,
            release,
        }
    }

    pub(crate) fn script(&self, path: &str, answers: &[Answer]) {
        self.service
            .script
            .lock()
            .unwrap()
            .insert(path.to_string(), answers.iter().copied().collect());
    }

    pub(crate) async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("no push request in time")
            .unwrap()
    }

    /// Requests already received, without waiting.
    fn already(&mut self) -> Vec<String> {
        let mut paths = Vec::new();
        while let Ok(s) = self.seen.try_recv() {
            paths.push(s.path);
        }
        paths
    }
}

/// A browser's subscription: its P-256 key pair and auth secret, at an endpoint of the service.
pub(crate) struct Device {
    secret: p256::SecretKey,
    auth: [u8; 16],
    path: String,
    endpoint: String,
}

impl Device {
    pub(crate) fn new(service: &PushService, path: &str) -> Device {
        let secret = loop {
            if let Ok(k) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        Device {
            secret,
            auth: rand::random(),
            path: path.to_string(),
            endpoint: format!("{}{path}", service.origin),
        }
    }

    pub(crate) fn subscription(&self) -> PushSubscription {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        PushSubscription {
            endpoint: self.endpoint.clone(),
            p256dh: URL_SAFE_NO_PAD.encode(self.secret.public_key().to_encoded_point(false)),
            // Padded, as some browsers give it.
            auth: base64::engine::general_purpose::URL_SAFE.encode(self.auth),
        }
    }

    fn engine_subscription(&self) -> tidings_engine::PushSubscription {
        let s = self.subscription();
        tidings_engine::PushSubscription {
            endpoint: s.endpoint,
            p256dh: s.p256dh,
            auth: s.auth,
        }
    }

    /// Checks a request to this device as the push service and the browser would, and returns
    /// the notification it carries.
    pub(crate) fn open(&self, seen: &Seen, vapid_key: &str, service_origin: &str) -> Value {
        assert_eq!(
            seen.path, self.path,
            "the request went to this subscription"
        );
        let header = |k: &str| {
            seen.headers
                .get(k)
                .unwrap_or_else(|| panic!("no {k} header"))
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(header("content-encoding"), "aes128gcm");
        assert_eq!(header("urgency"), "normal");
        assert!(header("ttl").parse::<u64>().unwrap() > 0);

        // Authorization: vapid t=<jwt>, k=<key>
        let authorization = header("authorization");
        let params = authorization
            .strip_prefix("vapid ")
            .expect("the vapid scheme");
        let mut t = None;
        let mut k = None;
        for part in params.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v.to_string()),
                Some(("k", v)) => k = Some(v.to_string()),
                _ => panic!("unexpected authorization parameter {part:?}"),
            }
        }
        let (t, k) = (t.expect("t="), k.expect("k="));
        assert_eq!(k, vapid_key, "k is the key /navi gives");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3, "a JWS in compact form");
        let jwt_header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(jwt_header["alg"], "ES256");
        let verifying =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(&k).unwrap())
                .expect("k is a P-256 point");
        let signature =
            p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
                .expect("an ES256 signature is r || s");
        verifying
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the JWT is signed by k");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims["aud"], service_origin,
            "aud is the endpoint's origin"
        );
        let now = now_ms() / 1000;
        let exp = claims["exp"].as_i64().expect("exp");
        assert!(
            exp > now && exp <= now + 24 * 3600,
            "exp {exp} within a day of {now}"
        );
        let sub = claims["sub"].as_str().expect("sub");
        assert!(
            sub.starts_with("mailto:") || sub.starts_with("https:"),
            "{sub}"
        );

        let auth = web_push_native::Auth::from(self.auth);
        let plain = web_push_native::decrypt(seen.body.to_vec(), &self.secret, &auth)
            .expect("the body decrypts with the subscription's keys");
        serde_json::from_slice(&plain).unwrap()
    }
}

/// A server with push on (retries 10 ms apart) and the push service.
async fn start() -> (TestServer, PushService, String) {
    let service = PushService::start().await;
    let server = TestServer::start_with(|c| {
        c.push_retry = std::time::Duration::from_millis(10);
    })
    .await;
    let (status, navi) = http(&server, "GET", "/navi", Vec::new(), None).await;
    assert_eq!(status, 200);
    let key = navi["vapidPublicKey"]
        .as_str()
        .expect("vapidPublicKey")
        .to_string();
    (server, service, key)
}

async fn register(server: &TestServer, user: &str, device: &Device) {
    server
        .running()
        .engine
        .register_push(user, "", device.engine_subscription())
        .await
        .unwrap();
}

/// The next outcome of a notification of `uid`.
async fn outcome(outcomes: &mut broadcast::Receiver<PushOutcome>, uid: &str) -> PushOutcome {
    loop {
        let o = tokio::time::timeout(WAIT, outcomes.recv())
            .await
            .unwrap_or_else(|_| panic!("no push outcome of {uid} in time"))
            .unwrap();
        if o.uid == uid {
            return o;
        }
    }
}

/// Waits until none of `user`'s devices is connected.
pub(crate) async fn offline(server: &TestServer, user: &str) {
    let engine = server.running().engine.clone();
    let user = user.to_string();
    eventually(&format!("{user} is offline"), move || {
        let (engine, user) = (engine.clone(), user.clone());
        async move { !engine.users(&[user]).await.unwrap()[0].online }
    })
    .await;
}

#[tokio::test]
async fn an_offline_user_gets_one_notification_with_the_message() {
    let (server, mut service, key) = start().await;
    let device = Device::new(&service, "/bob/1");
    // Bob's browser registers over the native protocol, then goes away.
    let (bob, _b) = server.client("bob", "browser").await;
    assert_eq!(
        bob.register_push(&device.subscription()).await.unwrap(),
        key,
        "the QUERYACK carries the VAPID key /navi gives"
    );
    bob.close().await;
    offline(&server, "bob").await;

    let mut outcomes = server.running().engine.push_outcomes();
    let (alice, _a) = server.client("alice", "phone").await;
    let sent = alice
        .send(Outgoing::text("bob", "are you there?"))
        .await
        .unwrap();
    let seen = service.next().await;
    let n = device.open(&seen, &key, &service.origin);
    assert_eq!(n["uid"], sent.uid.as_str());
    assert_eq!(n["conversationType"], 1);
    assert_eq!(n["targetId"], "alice", "the conversation from bob's side");
    assert_eq!(n["senderId"], "alice");
    assert_eq!(n["text"], "are you there?");
    assert_eq!(n["sentTime"], sent.sent_time);
    let o = outcome(&mut outcomes, &sent.uid).await;
    assert_eq!((o.user.as_str(), o.delivered), ("bob", true));
    assert!(
        service.already().is_empty(),
        "exactly one request for one subscription"
    );

    // Unregistered: the next message is not notified (the probe to carol comes after it).
    let probe = Device::new(&service, "/carol/1");
    register(&server, "carol", &probe).await;
    let (bob, _b) = server.client("bob", "browser").await;
    bob.unregister_push(&device.endpoint).await.unwrap();
    bob.close().await;
    offline(&server, "bob").await;
    alice.send(Outgoing::text("bob", "still?")).await.unwrap();
    let sent = alice.send(Outgoing::text("carol", "probe")).await.unwrap();
    let seen = service.next().await;
    assert_eq!(
        probe.open(&seen, &key, &service.origin)["uid"],
        sent.uid.as_str()
    );
}

#[tokio::test]
async fn online_muted_and_quiet_users_get_no_notification() {
    let (server, mut service, key) = start().await;
    let (alice, _a) = server.client("alice", "phone").await;
    let devices: Vec<(&str, Device)> = ["carol", "dave", "erin", "frank"]
        .into_iter()
        .map(|u| (u, Device::new(&service, &format!("/{u}/1"))))
        .collect();
    for (user, device) in &devices {
        register(&server, user, device).await;
    }
    // Carol stays online; dave mutes his chat with alice; erin is in quiet hours all day.
    let (_carol, mut carol_events) = server.client("carol", "phone").await;
    let (dave, _d) = server.client("dave", "phone").await;
    dave.update_conversation(ConversationUpdate::private("alice").muted(true))
        .await
        .unwrap();
    dave.close().await;
    let (erin, _e) = server.client("erin", "phone").await;
    erin.set_quiet_hours(QuietHours {
        start_minute: 0,
        minutes: 1440,
    })
    .await
    .unwrap();
    erin.close().await;
    offline(&server, "dave").await;
    offline(&server, "erin").await;

    for user in ["carol", "dave", "erin"] {
        alice
            .send(Outgoing::text(user, &format!("hi {user}")))
            .await
            .unwrap();
    }
    assert_eq!(next_message(&mut carol_events).await.sender_id, "alice");
    // Jobs are taken in order: once frank's notification arrives, the others were decided.
    let sent = alice.send(Outgoing::text("frank", "probe")).await.unwrap();
    let seen = service.next().await;
    let n = devices[3].1.open(&seen, &key, &service.origin);
    assert_eq!(n["uid"], sent.uid.as_str(), "only frank was notified");
    assert!(service.already().is_empty());
}

#[tokio::test]
async fn expired_subscriptions_are_removed() {
    let (server, mut service, key) = start().await;
    let mut outcomes = server.running().engine.push_outcomes();
    let gone = Device::new(&service, "/bob/gone");
    let missing = Device::new(&service, "/carol/missing");
    let probe = Device::new(&service, "/frank/1");
    service.script(&gone.path, &[Answer::Status(410)]);
    service.script(&missing.path, &[Answer::Status(404)]);
    register(&server, "bob", &gone).await;
    register(&server, "carol", &missing).await;
    register(&server, "frank", &probe).await;
    let (alice, _a) = server.client("alice", "phone").await;

    for (user, device) in [("bob", &gone), ("carol", &missing)] {
        let sent = alice.send(Outgoing::text(user, "hello")).await.unwrap();
        let seen = service.next().await;
        assert_eq!(device.open(&seen, &key, &service.origin)["text"], "hello");
        let o = outcome(&mut outcomes, &sent.uid).await;
        assert!(!o.delivered, "{user}'s subscription expired");
    }
    // Removed before the outcome was told: the next messages find no subscription.
    alice.send(Outgoing::text("bob", "again")).await.unwrap();
    alice.send(Outgoing::text("carol", "again")).await.unwrap();
    let sent = alice.send(Outgoing::text("frank", "probe")).await.unwrap();
    let seen = service.next().await;
    assert_eq!(
        probe.open(&seen, &key, &service.origin)["uid"],
        sent.uid.as_str(),
        "no request to the removed subscriptions"
    );
    assert!(service.already().is_empty());
}

#[tokio::test]
async fn a_failed_notification_is_retried_until_delivered() {
    let (server, mut service, key) = start().await;
    let mut outcomes = server.running().engine.push_outcomes();
    let device = Device::new(&service, "/bob/1");
    service.script(&device.path, &[Answer::Status(500), Answer::Status(201)]);
    register(&server, "bob", &device).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let sent = alice.send(Outgoing::text("bob", "knock")).await.unwrap();
    for _ in 0..2 {
        let seen = service.next().await;
        let n = device.open(&seen, &key, &service.origin);
        assert_eq!(
            (n["uid"].as_str(), n["text"].as_str()),
            (Some(sent.uid.as_str()), Some("knock"))
        );
    }
    let o = outcome(&mut outcomes, &sent.uid).await;
    assert!(o.delivered, "delivered on the second attempt");
    assert!(service.already().is_empty(), "no attempt after the success");
}

#[tokio::test]
async fn a_hanging_push_service_never_holds_up_messages() {
    let (server, mut service, key) = start().await;
    let mut outcomes = server.running().engine.push_outcomes();
    let stuck = Device::new(&service, "/bob/stuck");
    let other = Device::new(&service, "/frank/1");
    service.script(&stuck.path, &[Answer::Hang, Answer::Hang]);
    register(&server, "bob", &stuck).await;
    register(&server, "frank", &other).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (_carol, mut carol_events) = server.client("carol", "phone").await;

    let first = alice.send(Outgoing::text("bob", "one")).await.unwrap();
    let seen = service.next().await;
    assert_eq!(
        stuck.open(&seen, &key, &service.origin)["uid"],
        first.uid.as_str()
    );
    // Bob's push service holds that request. Messages are still acknowledged and delivered,
    // and other users' notifications still go out.
    let second = alice.send(Outgoing::text("bob", "two")).await.unwrap();
    assert!(second.seq > first.seq);
    alice
        .send(Outgoing::text("carol", "meanwhile"))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut carol_events).await.content,
        r#"{"text":"meanwhile"}"#
    );
    let probe = alice.send(Outgoing::text("frank", "probe")).await.unwrap();
    let mut paths = Vec::new();
    loop {
        let seen = service.next().await;
        if seen.path == other.path {
            assert_eq!(
                other.open(&seen, &key, &service.origin)["uid"],
                probe.uid.as_str()
            );
            break;
        }
        paths.push(seen.path);
    }
    assert!(paths.iter().all(|p| *p == stuck.path), "{paths:?}");
    assert!(outcome(&mut outcomes, &probe.uid).await.delivered);
    assert!(
        !*service.release.borrow(),
        "all of the above while bob's request hung"
    );

    // Once the push service answers, bob's notifications are delivered too.
    service.release.send_replace(true);
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let o = tokio::time::timeout(WAIT, outcomes.recv())
            .await
            .expect("no push outcome in time")
            .unwrap();
        assert!(o.delivered, "{o:?}");
        delivered.push(o.uid);
    }
    delivered.sort();
    assert_eq!(delivered, [first.uid, second.uid]);
}

#[tokio::test]
async fn subscriptions_are_checked_and_the_vapid_key_is_kept() {
    let (server, service, key) = start().await;
    let (bob, _b) = server.client("bob", "browser").await;
    let good = Device::new(&service, "/bob/1").subscription();
    let refused = |r: Result<String, tidings_client::ClientError>| match r {
        Err(tidings_client::ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    for bad in [
        PushSubscription {
            endpoint: "/relative".into(),
            ..good.clone()
        },
        PushSubscription {
            endpoint: format!("https://push.example/{}", "a".repeat(2048)),
            ..good.clone()
        },
        PushSubscription {
            p256dh: URL_SAFE_NO_PAD.encode([4u8; 65]),
            ..good.clone()
        },
        PushSubscription {
            p256dh: "not base64!".into(),
            ..good.clone()
        },
        PushSubscription {
            auth: URL_SAFE_NO_PAD.encode([1u8; 15]),
            ..good.clone()
        },
    ] {
        assert_eq!(
            refused(bob.register_push(&bad).await),
            Code::InvalidPushSubscription.as_u32(),
            "{bad:?}"
        );
    }
    assert_eq!(bob.register_push(&good).await.unwrap(), key);
    bob.close().await;

    // The key is kept in the data directory (owner-only) and survives a restart.
    let path = server.dir.path().join("vapid.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let server = server.restart().await;
    let (_, navi) = http(&server, "GET", "/navi", Vec::new(), None).await;
    assert_eq!(navi["vapidPublicKey"], key.as_str());
}

#[tokio::test]
async fn with_push_off_there_is_no_key_and_no_registration() {
    let server = TestServer::start_with(|c| c.push = false).await;
    let (_, navi) = http(&server, "GET", "/navi", Vec::new(), None).await;
    assert!(navi["vapidPublicKey"].is_null());
    assert_eq!(server.running().engine.vapid_public_key(), None);
    let service = PushService::start().await;
    let (bob, _b) = server.client("bob", "browser").await;
    match bob
        .register_push(&Device::new(&service, "/bob/1").subscription())
        .await
    {
        Err(tidings_client::ClientError::Refused { code, .. }) => {
            assert_eq!(code, Code::PushDisabled.as_u32())
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// By default a client cannot steer the server's Web Push requests at a private network: an
/// endpoint must be an https URL of a public host (a name is checked again when it is
/// resolved, at each send).
#[tokio::test]
async fn endpoints_on_private_networks_are_refused_by_default() {
    let server = TestServer::start_with(|c| c.mobile_push.allow_private_endpoints = false).await;
    let service = PushService::start().await;
    let good = Device::new(&service, "/bob/1").subscription();
    let (bob, _b) = server.client("bob", "browser").await;
    for endpoint in [
        service.origin.clone() + "/bob/1",
        "https://127.0.0.1/push".into(),
        "https://10.0.0.8/push".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "https://[::1]/push".into(),
        "http://push.example/plain-http".into(),
    ] {
        let refused = bob
            .register_push(&PushSubscription {
                endpoint: endpoint.clone(),
                ..good.clone()
            })
            .await;
        assert!(
            matches!(
                refused,
                Err(tidings_client::ClientError::Refused { code, .. })
                    if code == Code::InvalidPushSubscription.as_u32()
            ),
            "{endpoint}: {refused:?}"
        );
    }
    bob.register_push(&PushSubscription {
        endpoint: "https://push.example/send/1".into(),
        ..good
    })
    .await
    .unwrap();
}
