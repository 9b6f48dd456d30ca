//! The FCM and APNs clients against the local fakes of `tidings-push-fakes`, which check what
//! the real services check (signatures, claims, headers, message shape) and answer as they do.
//! Time is a shared clock the tests move, never a sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tidings_push::apns::{Apns, ApnsConfig, ApnsRequest};
use tidings_push::fcm::{Fcm, FcmConfig, ServiceAccount};
use tidings_push::sent::Sent;
use tidings_push_fakes::{Clock, FakeApns, FakeFcm};

/// The system clock plus an offset (ms) a test moves forward.
fn test_clock() -> (Clock, Arc<AtomicI64>) {
    let offset = Arc::new(AtomicI64::new(0));
    let system = tidings_push_fakes::system_clock();
    let moved = offset.clone();
    (
        Arc::new(move || system() + moved.load(Ordering::SeqCst)),
        offset,
    )
}

fn advance(offset: &AtomicI64, by: Duration) {
    offset.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
}

// ---- FCM ----

/// A fake FCM and a client of it on one movable clock.
async fn fcm() -> (FakeFcm, Fcm, Arc<AtomicI64>) {
    let (clock, offset) = test_clock();
    let fake = FakeFcm::start_with_clock(clock.clone()).await.unwrap();
    let client = fcm_client(&fake, &fake.service_account_json(), clock);
    (fake, client, offset)
}

fn fcm_client(fake: &FakeFcm, key_file: &str, clock: Clock) -> Fcm {
    let mut config = FcmConfig::new(ServiceAccount::from_json(key_file).unwrap());
    config.endpoint = fake.url();
    config.clock = clock;
    Fcm::new(config).unwrap()
}

fn message(token: &str) -> Value {
    json!({
        "token": token,
        "notification": {"title": "Ada", "body": "hello"},
        "data": {"uid": "01HZX", "conversationType": "1"},
        "android": {"priority": "HIGH", "ttl": "86400s", "collapse_key": "conv-1"},
        "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default"}}}
    })
}

#[tokio::test]
async fn fcm_delivers_with_a_verified_assertion_and_one_grant_serves_several_sends() {
    let (fake, client, _) = fcm().await;
    for token in ["device-a", "device-b", "device-c"] {
        assert_eq!(client.send(&message(token)).await, Sent::Delivered);
    }
    // The fake granted a token only for an assertion it verified (RS256 with the account's
    // key, iss, scope, aud, times); one grant served the three sends.
    assert_eq!(fake.token_grants(), 1);
    let accepted = fake.wait_accepted(3, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        accepted
            .iter()
            .map(|a| a.token.as_deref())
            .collect::<Vec<_>>(),
        [Some("device-a"), Some("device-b"), Some("device-c")]
    );
    assert_eq!(accepted[0].message, message("device-a"));
    assert!(
        accepted
            .iter()
            .all(|a| a.access_token == accepted[0].access_token)
    );
    assert!(
        accepted[0]
            .name
            .starts_with("projects/tidings-fake/messages/")
    );
}

#[tokio::test]
async fn fcm_concurrent_sends_wait_for_one_token_fetch() {
    let (fake, client, _) = fcm().await;
    let client = Arc::new(client);
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..8 {
        let client = client.clone();
        sends.spawn(async move { client.send(&message(&format!("device-{i}"))).await });
    }
    while let Some(sent) = sends.join_next().await {
        assert_eq!(sent.unwrap(), Sent::Delivered);
    }
    assert_eq!(fake.token_grants(), 1);
    assert_eq!(fake.accepted().len(), 8);
}

#[tokio::test]
async fn fcm_an_access_token_is_replaced_before_it_expires() {
    let (fake, client, offset) = fcm().await;
    // 100 s of life: kept until a tenth of it (10 s) is left.
    fake.set_token_lifetime(100);
    assert_eq!(client.send(&message("device-a")).await, Sent::Delivered);
    advance(&offset, Duration::from_secs(89));
    assert_eq!(client.send(&message("device-a")).await, Sent::Delivered);
    assert_eq!(fake.token_grants(), 1, "a token with 11 s left is kept");
    advance(&offset, Duration::from_secs(2));
    assert_eq!(client.send(&message("device-a")).await, Sent::Delivered);
    assert_eq!(fake.token_grants(), 2, "a token with 9 s left is replaced");
    // Replaced ahead of time: the fake never had to answer 401.
    assert_eq!(fake.send_requests(), 3);
    let accepted = fake.accepted();
    assert_ne!(accepted[1].access_token, accepted[2].access_token);
}

#[tokio::test]
async fn fcm_a_revoked_token_is_refreshed_once_after_a_401() {
    let (fake, client, _) = fcm().await;
    assert_eq!(client.send(&message("device-a")).await, Sent::Delivered);
    fake.revoke_tokens();
    assert_eq!(client.send(&message("device-a")).await, Sent::Delivered);
    assert_eq!(fake.token_grants(), 2);
    // One 401, then the same message again with the new token.
    assert_eq!(fake.send_requests(), 3);
    assert_eq!(fake.accepted().len(), 2);
}

#[tokio::test]
async fn fcm_unregistered_tokens_are_reported_dead() {
    let (fake, client, _) = fcm().await;
    fake.unregister("gone");
    assert_eq!(client.send(&message("gone")).await, Sent::Unregistered);
    assert_eq!(client.send(&message("gone")).await, Sent::Unregistered);
    assert_eq!(client.send(&message("other")).await, Sent::Delivered);
}

#[tokio::test]
async fn fcm_unavailable_and_quota_are_retried_with_their_retry_after() {
    let (fake, client, _) = fcm().await;
    fake.fail("device-a", 503, "UNAVAILABLE", Some(7), 1);
    fake.fail("device-a", 429, "QUOTA_EXCEEDED", None, 1);
    assert_eq!(
        client.send(&message("device-a")).await,
        Sent::Retry(Some(Duration::from_secs(7)))
    );
    assert_eq!(client.send(&message("device-a")).await, Sent::Retry(None));
    assert_eq!(client.send(&message("device-a")).await, Sent::Delivered);
}

#[tokio::test]
async fn fcm_invalid_argument_fails_with_the_reason() {
    let (fake, client, _) = fcm().await;
    fake.fail("device-a", 400, "INVALID_ARGUMENT", None, 1);
    let Sent::Failed(why) = client.send(&message("device-a")).await else {
        panic!("a 400 is not retried");
    };
    assert!(
        why.contains("400") && why.contains("INVALID_ARGUMENT"),
        "{why}"
    );
}

#[tokio::test]
async fn the_fcm_fake_refuses_a_message_of_the_wrong_shape() {
    let (fake, client, _) = fcm().await;
    let refused = [
        json!({"token": "a", "topic": "news"}),
        json!({"notification": {"title": "no target"}}),
        json!({"token": "a", "data": {"count": 1}}),
        json!({"token": "a", "android": {"priority": "urgent"}}),
        json!({"token": "a", "sound": "default"}),
    ];
    for m in refused {
        let Sent::Failed(why) = client.send(&m).await else {
            panic!("{m} was not refused");
        };
        assert!(why.contains("400 INVALID_ARGUMENT"), "{why}");
    }
    assert!(fake.accepted().is_empty());
    assert_eq!(
        client
            .send(&json!({"topic": "news", "data": {"k": "v"}}))
            .await,
        Sent::Delivered
    );
}

#[tokio::test]
async fn fcm_a_key_google_does_not_know_fails() {
    let (clock, _) = test_clock();
    let fake = FakeFcm::start_with_clock(clock.clone()).await.unwrap();
    let mut key_file: Value = serde_json::from_str(&fake.service_account_json()).unwrap();
    key_file["private_key"] = tidings_push_fakes::fcm::OTHER_RSA_KEY.into();
    let client = fcm_client(&fake, &key_file.to_string(), clock);
    let Sent::Failed(why) = client.send(&message("device-a")).await else {
        panic!("a refused key is not retried");
    };
    assert!(
        why.contains("400") && why.contains("invalid_grant"),
        "{why}"
    );
    assert_eq!((fake.token_grants(), fake.send_requests()), (0, 0));
}

#[tokio::test]
async fn fcm_a_token_endpoint_that_is_down_is_retried() {
    let (fake, client, _) = fcm().await;
    fake.fail_token_grants(503, Some(3), 1);
    assert_eq!(
        client.send(&message("device-a")).await,
        Sent::Retry(Some(Duration::from_secs(3)))
    );
    assert_eq!(client.send(&message("device-a")).await, Sent::Delivered);
}

#[tokio::test]
async fn an_unreachable_provider_is_retried() {
    let (clock, _) = test_clock();
    let fake = FakeFcm::start_with_clock(clock.clone()).await.unwrap();
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config =
        FcmConfig::new(ServiceAccount::from_json(&fake.service_account_json()).unwrap());
    config.endpoint = format!("http://127.0.0.1:{port}");
    config.clock = clock;
    let client = Fcm::new(config).unwrap();
    assert_eq!(client.send(&message("device-a")).await, Sent::Retry(None));
    assert_eq!(
        fake.token_grants(),
        1,
        "the token was fetched, the send found no server"
    );
}

#[test]
fn fcm_refuses_a_key_that_is_not_one() {
    let key_file = json!({"type": "service_account", "project_id": "p", "client_email": "e",
        "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "token_uri": "http://127.0.0.1:1/token"});
    let config = FcmConfig::new(ServiceAccount::from_json(&key_file.to_string()).unwrap());
    assert!(matches!(
        Fcm::new(config),
        Err(tidings_push::PushError::Config(_))
    ));
}

// ---- APNs ----

const TOPIC: &str = "chat.tidings.app";

/// A fake APNs and a client of it on one movable clock.
async fn apns() -> (FakeApns, Apns, Arc<AtomicI64>) {
    let (clock, offset) = test_clock();
    let fake = FakeApns::start_with_clock(clock.clone()).await.unwrap();
    let client = apns_client(&fake, fake.key_pem(), clock);
    (fake, client, offset)
}

fn apns_client(fake: &FakeApns, key_pem: String, clock: Clock) -> Apns {
    let mut config = ApnsConfig::new(key_pem, fake.key_id().into(), fake.team_id().into());
    config.production = fake.production_url();
    config.sandbox = fake.sandbox_url();
    config.clock = clock;
    Apns::new(config).unwrap()
}

fn alert(token: &str) -> ApnsRequest {
    ApnsRequest {
        token: token.into(),
        sandbox: false,
        topic: TOPIC.into(),
        push_type: "alert".into(),
        priority: 10,
        collapse_id: Some("conv-1".into()),
        expiration: 1_900_000_000,
        payload: json!({
            "aps": {"alert": {"title": "Ada", "body": "hello"}, "sound": "default"},
            "uid": "01HZX"
        }),
    }
}

const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const OTHER_DEVICE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

#[tokio::test]
async fn apns_delivers_an_alert_with_every_header() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
    let accepted = fake.wait_accepted(1, Duration::from_secs(5)).await.unwrap();
    let got = &accepted[0];
    assert_eq!((got.token.as_str(), got.sandbox), (DEVICE, false));
    let header = |name: &str| got.headers.get(name).map(String::as_str);
    assert_eq!(header("apns-topic"), Some(TOPIC));
    assert_eq!(header("apns-push-type"), Some("alert"));
    assert_eq!(header("apns-priority"), Some("10"));
    assert_eq!(header("apns-expiration"), Some("1900000000"));
    assert_eq!(header("apns-collapse-id"), Some("conv-1"));
    assert_eq!(got.payload, alert(DEVICE).payload);
    // The fake verified the token; its header is Apple's form.
    let jwt_header = jsonwebtoken::decode_header(&got.jwt).unwrap();
    assert_eq!(jwt_header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(jwt_header.kid.as_deref(), Some(fake.key_id()));
}

#[tokio::test]
async fn apns_leaves_out_headers_that_are_not_set() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    let request = ApnsRequest {
        collapse_id: None,
        expiration: 0,
        ..alert(DEVICE)
    };
    assert_eq!(client.send(&request).await, Sent::Delivered);
    let headers = &fake.accepted()[0].headers;
    assert!(!headers.contains_key("apns-expiration") && !headers.contains_key("apns-collapse-id"));
}

#[tokio::test]
async fn apns_background_pushes_need_priority_5_and_content_available() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    let background = ApnsRequest {
        push_type: "background".into(),
        priority: 5,
        collapse_id: None,
        payload: json!({"aps": {"content-available": 1}, "sync": true}),
        ..alert(DEVICE)
    };
    assert_eq!(client.send(&background).await, Sent::Delivered);
    let urgent = ApnsRequest {
        priority: 10,
        ..background.clone()
    };
    assert_eq!(
        client.send(&urgent).await,
        Sent::Failed("APNs answered 400 BadPriority".into())
    );
    let empty = ApnsRequest {
        payload: json!({"aps": {}}),
        ..background
    };
    assert_eq!(
        client.send(&empty).await,
        Sent::Failed("APNs answered 400 InvalidPushType".into())
    );
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn apns_reuses_its_provider_token_and_replaces_it_after_50_minutes() {
    let (fake, client, offset) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    for _ in 0..3 {
        assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
    }
    advance(&offset, Duration::from_secs(49 * 60));
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
    let accepted = fake.accepted();
    assert!(accepted.iter().all(|a| a.jwt == accepted[0].jwt));
    advance(&offset, Duration::from_secs(2 * 60));
    // 51 minutes on: a new token, which the fake takes (over 20 minutes after the last).
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), 5);
    assert_ne!(accepted[4].jwt, accepted[0].jwt);
    assert_eq!(fake.requests(), 5);
}

#[tokio::test]
async fn apns_410_is_unregistered() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    fake.unregister(DEVICE);
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Unregistered);
}

#[tokio::test]
async fn apns_bad_device_tokens_are_unregistered() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, true);
    // Unknown to APNs.
    assert_eq!(client.send(&alert(OTHER_DEVICE)).await, Sent::Unregistered);
    // A development token sent to production.
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Unregistered);
    assert_eq!(fake.requests(), 2);
    // Not hex: refused without asking.
    assert_eq!(client.send(&alert("../../x")).await, Sent::Unregistered);
    assert_eq!(fake.requests(), 2);
}

#[tokio::test]
async fn apns_too_many_requests_and_unavailable_are_retried() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    fake.fail(DEVICE, 503, "ServiceUnavailable", Some(7), 1);
    fake.fail(DEVICE, 429, "TooManyRequests", Some(30), 1);
    fake.fail(DEVICE, 500, "InternalServerError", None, 1);
    assert_eq!(
        client.send(&alert(DEVICE)).await,
        Sent::Retry(Some(Duration::from_secs(7)))
    );
    assert_eq!(
        client.send(&alert(DEVICE)).await,
        Sent::Retry(Some(Duration::from_secs(30)))
    );
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Retry(None));
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
}

#[tokio::test]
async fn apns_an_expired_provider_token_is_replaced_once() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
    // Every token so far is now stale: the next send gets 403, makes a fresh one, and goes.
    fake.expire_provider_tokens();
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
    // And a 403 ExpiredProviderToken as APNs may answer it at any time.
    fake.fail(DEVICE, 403, "ExpiredProviderToken", None, 1);
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
    let jwts: Vec<String> = fake.accepted().into_iter().map(|a| a.jwt).collect();
    assert_eq!(jwts.len(), 3);
    assert!(
        jwts[0] != jwts[1] && jwts[1] != jwts[2],
        "each refusal brought a fresh token"
    );
    assert_eq!(fake.requests(), 5);
}

#[tokio::test]
async fn apns_a_token_signed_with_another_key_fails_after_one_fresh_try() {
    let (clock, _) = test_clock();
    let fake = FakeApns::start_with_clock(clock.clone()).await.unwrap();
    fake.device(DEVICE, TOPIC, false);
    let other = tidings_push_fakes::apns::other_key_pem().unwrap();
    let client = apns_client(&fake, other, clock);
    assert_eq!(
        client.send(&alert(DEVICE)).await,
        Sent::Failed("APNs answered 403 InvalidProviderToken".into())
    );
    assert_eq!(fake.requests(), 2);
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn the_apns_fake_refuses_a_second_provider_token_within_20_minutes() {
    let (clock, _) = test_clock();
    let fake = FakeApns::start_with_clock(clock.clone()).await.unwrap();
    fake.device(DEVICE, TOPIC, false);
    let first = apns_client(&fake, fake.key_pem(), clock.clone());
    assert_eq!(first.send(&alert(DEVICE)).await, Sent::Delivered);
    // A second client of the same key makes its own token a second later: a token per
    // connection or per request is what Apple's rule is against.
    let (later, offset) = test_clock();
    advance(&offset, Duration::from_secs(1));
    let second = apns_client(&fake, fake.key_pem(), later);
    assert_eq!(second.send(&alert(DEVICE)).await, Sent::Retry(None));
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn the_apns_fake_refuses_an_hour_old_provider_token() {
    let (fake, _, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    let now = tidings_push_fakes::system_clock()() / 1000;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(fake.key_id().into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(fake.key_pem().as_bytes()).unwrap();
    let old = jsonwebtoken::encode(
        &header,
        &json!({"iss": fake.team_id(), "iat": now - 3700}),
        &key,
    )
    .unwrap();
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = http2
        .post(format!("{}/3/device/{DEVICE}", fake.production_url()))
        .header("authorization", format!("bearer {old}"))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert")
        .body(alert(DEVICE).payload.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"reason": "ExpiredProviderToken"})
    );
}

#[tokio::test]
async fn apns_sandbox_requests_go_to_the_sandbox() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, true);
    let request = ApnsRequest {
        sandbox: true,
        ..alert(DEVICE)
    };
    assert_eq!(client.send(&request).await, Sent::Delivered);
    assert!(fake.accepted()[0].sandbox);
}

#[tokio::test]
async fn apns_refuses_a_long_collapse_id_itself() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    let request = ApnsRequest {
        collapse_id: Some("x".repeat(65)),
        ..alert(DEVICE)
    };
    let Sent::Failed(why) = client.send(&request).await else {
        panic!("a 65-byte collapse id was sent");
    };
    assert!(why.contains("65 bytes"), "{why}");
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn the_apns_fake_refuses_http_1_1() {
    let (fake, client, _) = apns().await;
    fake.device(DEVICE, TOPIC, false);
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let refused = http1
        .post(format!("{}/3/device/{DEVICE}", fake.production_url()))
        .body(alert(DEVICE).payload.to_string())
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(fake.requests(), 0);
    // The client, on HTTP/2, is served.
    assert_eq!(client.send(&alert(DEVICE)).await, Sent::Delivered);
}

#[test]
fn apns_refuses_a_key_that_is_not_p256() {
    let rsa = tidings_push_fakes::fcm::OTHER_RSA_KEY.to_string();
    let config = ApnsConfig::new(rsa, "KEY".into(), "TEAM".into());
    assert!(matches!(
        Apns::new(config),
        Err(tidings_push::PushError::Config(_))
    ));
}
