//! The signed HTTP API and the health endpoint.

use serde_json::Value;
use tidings_client::{Client, ClientConfig, Event};
use tidings_engine::auth::{SignatureForm, legacy_signature, seed004_signature};
use tidings_proto::Code;

use crate::util::*;

#[tokio::test]
async fn a_signed_request_mints_a_token_that_connects() {
    let server = TestServer::start().await;
    let (status, body) = api_post(
        &server,
        "/api/v1/users/dave/token",
        signed(
            &server,
            "n-1",
            now_ms(),
            "POST",
            "/api/v1/users/dave/token",
            "",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0);
    assert_eq!(body["userId"], "dave");
    let token = body["token"].as_str().unwrap().to_string();
    let (client, _events) = Client::connect(ClientConfig::new(server.url(), token))
        .await
        .unwrap();
    assert_eq!(client.user_id(), "dave");
}

#[tokio::test]
async fn bad_signatures_are_refused_with_their_codes() {
    let server = TestServer::start().await;
    let path = "/api/v1/users/dave/token";
    let now = now_ms();
    let headers = |nonce: &str, ts: i64| signed(&server, nonce, ts, "POST", path, "");
    let mut missing = headers("m-1", now);
    missing.retain(|(k, _)| *k != "Signature");
    let mut wrong = headers("m-2", now);
    wrong[3].1 = "00".repeat(32);
    let mut wrong_app = headers("m-3", now);
    wrong_app[0].1 = "nope".into();
    let stale = headers("m-4", now - 6 * 60 * 1000);
    let cases = [
        (missing, Code::SignatureMissing),
        (wrong, Code::SignatureInvalid),
        (wrong_app, Code::AppKeyUnknown),
        (stale, Code::TimestampOutOfWindow),
    ];
    for (headers, code) in cases {
        let (status, body) = api_post(&server, path, headers).await;
        assert_eq!(status, 401);
        assert_eq!(body["code"], code.as_u32(), "{body}");
        assert_eq!(body["message"], code.text());
    }
    // A nonce works once.
    let once = headers("once", now);
    assert_eq!(api_post(&server, path, once.clone()).await.0, 200);
    let (status, body) = api_post(&server, path, once).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (401, Some(Code::NonceReused.as_u32().into()))
    );
    // A bad user id in the path.
    let bad_id = "/api/v1/users/a%20b/token";
    let (status, body) = api_post(
        &server,
        bad_id,
        signed(&server, "u-1", now, "POST", bad_id, ""),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::InvalidUserId.as_u32().into()))
    );
}

/// Asserts that `answer` is a refusal of the signature (42002).
pub(crate) fn assert_signature_refused(what: &str, (status, body): (u16, Value)) {
    assert_eq!(
        (status, body["code"].as_u64()),
        (401, Some(Code::SignatureInvalid.as_u32().into())),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn every_api_route_but_the_openapi_document_wants_a_signature() {
    let server = TestServer::start().await;
    for (method, route) in tidings_gateway::API_ROUTES {
        // Any value for the path's parameters: the signature is checked before they are read.
        let path: String = route
            .split('/')
            .map(|part| if part.starts_with('{') { "x" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        let (status, body) = http(&server, method, &path, Vec::new(), None).await;
        if path == "/api/v1/openapi.json" {
            assert_eq!(status, 200, "{method} {path}");
        } else {
            assert_eq!(
                (status, body["code"].as_u64()),
                (401, Some(Code::SignatureMissing.as_u32().into())),
                "{method} {path}"
            );
        }
    }
}

/// Makes an older form's signature from the app secret, nonce and timestamp.
type OlderForm = fn(&str, &str, &str) -> String;

#[tokio::test]
async fn older_signature_forms_are_accepted_only_when_the_setting_names_them() {
    let forms: [(SignatureForm, OlderForm); 2] = [
        (SignatureForm::Legacy, legacy_signature),
        (SignatureForm::Seed004, seed004_signature),
    ];
    for (i, (form, sign)) in forms.into_iter().enumerate() {
        let default = TestServer::start().await;
        let named = TestServer::start_with(|c| c.api_signature = form).await;
        let path = "/api/v1/users/dave/token";
        let older = |server: &TestServer, sign: OlderForm, nonce: &str| {
            let mut headers = signed(server, nonce, now_ms(), "POST", path, "");
            let (nonce, ts) = (headers[1].1.clone(), headers[2].1.clone());
            headers[3].1 = sign(&server.running().credentials.app_secret, &nonce, &ts);
            headers
        };
        let refused = api_post(&default, path, older(&default, sign, "o-1")).await;
        assert_signature_refused(&format!("{form:?} by default"), refused);
        let (status, answer) = api_post(&named, path, older(&named, sign, "o-2")).await;
        assert_eq!(status, 200, "{form:?} where named: {answer}");
        // The request form is accepted there too, and the other older form is not.
        let current = signed(&named, "o-3", now_ms(), "POST", path, "");
        assert_eq!(api_post(&named, path, current).await.0, 200, "{form:?}");
        let (_, other) = forms[1 - i];
        let refused = api_post(&named, path, older(&named, other, "o-4")).await;
        assert_signature_refused(&format!("the other form where {form:?} is named"), refused);
    }
}

#[tokio::test]
async fn revoking_disconnects_the_user_and_refuses_old_tokens() {
    let server = TestServer::start().await;
    let token = server.token("erin").await;
    let (_client, mut events) = Client::connect(ClientConfig::new(server.url(), token.clone()))
        .await
        .unwrap();
    let (status, body) = api(&server, "POST", "/api/v1/users/erin/revoke", Value::Null).await;
    assert_eq!((status, body["tokenVersion"].as_u64()), (200, Some(1)));
    match next_terminal(&mut events).await {
        Event::Kicked { code, .. } => assert_eq!(code, Code::TokenRevoked.as_u32()),
        other => panic!("{other:?}"),
    }
    let err = Client::connect(ClientConfig::new(server.url(), token))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err,
        tidings_client::ClientError::Refused {
            code: Code::TokenRevoked.as_u32(),
            message: Code::TokenRevoked.text().into()
        }
    );
    // A token minted after the revocation works.
    let (status, body) = api(&server, "POST", "/api/v1/users/erin/token", Value::Null).await;
    assert_eq!(status, 200);
    Client::connect(ClientConfig::new(
        server.url(),
        body["token"].as_str().unwrap(),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn healthz_and_unknown_paths() {
    let server = TestServer::start().await;
    let url = server.url();
    let (health, missing) = tokio::task::spawn_blocking(move || {
        let agent = agent();
        let mut h = agent.get(&format!("{url}/healthz")).call().unwrap();
        let health: serde_json::Value = h.body_mut().read_json().unwrap();
        let mut m = agent.get(&format!("{url}/nope")).call().unwrap();
        assert_eq!(m.status().as_u16(), 404);
        let missing: serde_json::Value = m.body_mut().read_json().unwrap();
        (health, missing)
    })
    .await
    .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(missing["code"], Code::NotFound.as_u32());
}

#[tokio::test]
async fn a_requested_lifetime_sets_the_expiry_and_bad_bodies_are_refused() {
    let server = TestServer::start().await;
    let path = "/api/v1/users/fay/token";
    let now_s = now_ms() / 1000;
    let ttl = r#"{"ttlSecs": 60}"#;
    let (status, body) = api_post_body(
        &server,
        path,
        signed(&server, "t-1", now_ms(), "POST", path, ttl),
        ttl,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let expires = body["expiresAt"].as_i64().unwrap();
    assert!(
        (now_s + 59..=now_s + 62).contains(&expires),
        "{expires} vs {now_s}"
    );
    for bad in [r#"{"ttlSecs": 0}"#, r#"{"ttl": 5}"#, "not json"] {
        let nonce = format!("t-{bad}");
        let headers = signed(&server, &nonce, now_ms(), "POST", path, bad);
        let (status, body) = api_post_body(&server, path, headers, bad).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(Code::BadRequest.as_u32().into())),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_body_past_the_limit_is_refused_in_json_with_413_wherever_it_is_sent() {
    let server = TestServer::start().await;
    let big = serde_json::json!({ "groupId": "g", "ownerId": "a", "name": "x".repeat(3 << 20) });
    let (status, body) = api(&server, "POST", "/api/v1/groups", big.clone()).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (413, Some(42007)),
        "{body}"
    );
    // The unsigned routes that read a body: the long-poll transport and seed 001's HTTP send.
    for path in [
        "/v1/poll",
        "/v1/poll/0123456789abcdef0123456789abcdef",
        "/json/message",
    ] {
        let (status, body) = http(&server, "POST", path, vec![], Some(big.to_string())).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (413, Some(42007)),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn the_server_takes_its_time_from_the_clock_it_is_given() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    // A time far from the system's: 2030-03-17.
    let now = Arc::new(AtomicI64::new(1_900_000_000_000));
    let clock: tidings_engine::Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::Relaxed))
    };
    let server = TestServer::start_with_clock(|_| {}, clock).await;
    let (_, navi) = http(&server, "GET", "/navi", vec![], None).await;
    assert_eq!(navi["serverTime"], 1_900_000_000_000_i64);
    now.store(1_900_000_000_500, Ordering::Relaxed);
    let (alice, _events) = server.client("alice", "phone").await;
    let sent = alice
        .send(tidings_client::Outgoing::text("bob", "then"))
        .await
        .unwrap();
    assert_eq!(sent.sent_time, 1_900_000_000_500);
}
