//! The signed HTTP API and the health endpoint.

use tidings_client::{Client, ClientConfig, Event};
use tidings_proto::Code;

use crate::util::*;

#[tokio::test]
async fn a_signed_request_mints_a_token_that_connects() {
    let server = TestServer::start().await;
    let (status, body) = api_post(
        &server,
        "/api/v1/users/dave/token",
        signed(&server, "n-1", now_ms()),
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
    let mut missing = signed(&server, "m-1", now);
    missing.retain(|(k, _)| *k != "Signature");
    let mut wrong = signed(&server, "m-2", now);
    wrong[3].1 = "00".repeat(32);
    let mut wrong_app = signed(&server, "m-3", now);
    wrong_app[0].1 = "nope".into();
    let stale = signed(&server, "m-4", now - 6 * 60 * 1000);
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
    let headers = signed(&server, "once", now);
    assert_eq!(api_post(&server, path, headers.clone()).await.0, 200);
    let (status, body) = api_post(&server, path, headers).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (401, Some(Code::NonceReused.as_u32().into()))
    );
    // A bad user id in the path.
    let (status, body) = api_post(
        &server,
        "/api/v1/users/a%20b/token",
        signed(&server, "u-1", now),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(Code::InvalidUserId.as_u32().into()))
    );
}

#[tokio::test]
async fn revoking_disconnects_the_user_and_refuses_old_tokens() {
    let server = TestServer::start().await;
    let token = server.token("erin").await;
    let (_client, mut events) = Client::connect(ClientConfig::new(server.url(), token.clone()))
        .await
        .unwrap();
    let (status, body) = api_post(
        &server,
        "/api/v1/users/erin/revoke",
        signed(&server, "r-1", now_ms()),
    )
    .await;
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
    let (status, body) = api_post(
        &server,
        "/api/v1/users/erin/token",
        signed(&server, "r-2", now_ms()),
    )
    .await;
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
    let (status, body) = api_post_body(
        &server,
        path,
        signed(&server, "t-1", now_ms()),
        r#"{"ttlSecs": 60}"#,
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
        let (status, body) =
            api_post_body(&server, path, signed(&server, &nonce, now_ms()), bad).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(Code::BadRequest.as_u32().into())),
            "{bad}"
        );
    }
}
