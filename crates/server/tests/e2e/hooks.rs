//! Callbacks to the app server: after-send notifications (signed, retried, never in delivery's
//! way) and before-send moderation (accept, reject, rewrite; failing open or closed). The app
//! server is a small HTTP server in the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use serde_json::{Value, json};
use tidings_client::{ClientError, Outgoing};
use tidings_proto::Code;

use crate::util::*;

/// What the app server in the test does and saw.
#[derive(Default)]
struct AppServer {
    /// Requests to fail with 500 before answering 200.
    fail_first: usize,
    /// Never answer (hold every request).
    hang: bool,
    /// Answer moderation with 500.
    moderation_down: bool,
    /// Every after-send callback request: (headers, request target, body).
    seen: Vec<(HeaderMap, String, String)>,
    /// Every moderation request, likewise.
    moderated: Vec<(HeaderMap, String, String)>,
}

type Shared = Arc<Mutex<AppServer>>;

/// A request as the app server saw it: (headers, request target, body).
fn request(headers: HeaderMap, uri: &Uri, body: &Bytes) -> (HeaderMap, String, String) {
    let target = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    (headers, target, String::from_utf8_lossy(body).into_owned())
}

/// Asserts that a callback request is signed as the app server's own API requests are, over
/// its method, target and body, and carries the body's own signature too.
fn assert_signed(
    creds: &tidings_engine::AppCredentials,
    (headers, target, body): &(HeaderMap, String, String),
) {
    let h = |k: &str| headers.get(k).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("app-key"), creds.app_key);
    assert_eq!(
        h("signature"),
        tidings_engine::auth::sign_request(
            &creds.app_secret,
            &h("nonce"),
            &h("timestamp"),
            "POST",
            target,
            body.as_bytes()
        ),
        "{target}"
    );
    assert_eq!(
        h("body-signature"),
        tidings_engine::auth::hmac_hex(&creds.app_secret, body.as_bytes())
    );
}

async fn events(
    State(app): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (hang, fail) = {
        let mut app = app.lock().unwrap();
        app.seen.push(request(headers, &uri, &body));
        let fail = app.fail_first > 0;
        if fail {
            app.fail_first -= 1;
        }
        (app.hang, fail)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn moderate(
    State(app): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    {
        let mut app = app.lock().unwrap();
        app.moderated.push(request(headers, &uri, &body));
        if app.moderation_down {
            return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
        }
    }
    let request: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(request["type"], "message.moderate");
    let text = request["message"]["content"]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let answer = if text.contains("spam") {
        json!({ "action": "reject", "reason": "looks like spam" })
    } else if text.to_lowercase().contains("shout") {
        json!({ "action": "rewrite", "content": { "text": text.to_lowercase() } })
    } else {
        json!({ "action": "accept" })
    };
    (StatusCode::OK, answer.to_string())
}

/// Starts the app server; returns its state and base URL.
async fn app_server(app: AppServer) -> (Shared, String) {
    let app = Arc::new(Mutex::new(app));
    let router = Router::new()
        .route("/events", post(events))
        .route("/moderate", post(moderate))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (app, url)
}

#[tokio::test]
async fn after_send_callbacks_are_signed_and_retried_until_delivered() {
    let (app, url) = app_server(AppServer {
        fail_first: 2,
        ..Default::default()
    })
    .await;
    // A query in the URL is part of what is signed.
    let server = TestServer::start_with(|c| {
        c.webhook_url = Some(format!("{url}/events?app=tidings&tag=a%20b"));
        c.webhook_retry = Duration::from_millis(50);
    })
    .await;
    let (alice, _a) = server.client("alice", "phone").await;
    let sent = alice.send(Outgoing::text("bob", "hello")).await.unwrap();
    eventually("the callback got through on its third attempt", || async {
        app.lock().unwrap().seen.len() >= 3
    })
    .await;
    let seen = std::mem::take(&mut app.lock().unwrap().seen);
    assert_eq!(seen.len(), 3, "one callback, two failures then a success");
    let creds = &server.running().credentials;
    for seen in &seen {
        assert_eq!(seen.1, "/events?app=tidings&tag=a%20b");
        assert_signed(creds, seen);
        let body = &seen.2;
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["type"], "message.sent");
        assert_eq!(event["message"]["uid"], sent.uid.as_str());
        assert_eq!(
            (
                event["message"]["senderId"].as_str(),
                event["message"]["targetId"].as_str()
            ),
            (Some("alice"), Some("bob"))
        );
        assert_eq!(event["message"]["content"]["text"], "hello");
    }
}

#[tokio::test]
async fn an_app_server_that_never_answers_does_not_hold_up_delivery() {
    let (app, url) = app_server(AppServer {
        hang: true,
        ..Default::default()
    })
    .await;
    let server = TestServer::start_with(|c| c.webhook_url = Some(format!("{url}/events"))).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (_bob, mut bob_events) = server.client("bob", "phone").await;
    for text in ["one", "two", "three"] {
        alice.send(Outgoing::text("bob", text)).await.unwrap();
    }
    // Each callback waits for an answer that never comes (10 s each, one at a time); the
    // messages arrive meanwhile.
    for text in ["one", "two", "three"] {
        let m = next_message(&mut bob_events).await;
        assert_eq!(m.content, json!({ "text": text }).to_string());
    }
    assert_eq!(
        app.lock().unwrap().seen.len(),
        1,
        "the first callback is still waiting"
    );
}

fn refused(r: Result<tidings_client::Sent, ClientError>) -> (u32, String) {
    match r {
        Err(ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn moderation_accepts_rejects_or_rewrites_before_storage() {
    let (app, url) = app_server(AppServer::default()).await;
    let server =
        TestServer::start_with(|c| c.moderation_url = Some(format!("{url}/moderate"))).await;
    let (alice, _a) = server.client("alice", "phone").await;
    let (bob, mut bob_events) = server.client("bob", "phone").await;

    let (code, text) = refused(alice.send(Outgoing::text("bob", "cheap spam")).await);
    assert_eq!(code, Code::MessageRejected.as_u32());
    assert!(text.contains("looks like spam"), "{text}");

    let rewritten = alice.send(Outgoing::text("bob", "I SHOUT")).await.unwrap();
    assert_eq!(rewritten.notice, Code::MessageRewritten.as_u32());
    assert_eq!(
        rewritten.replaced_content.as_deref(),
        Some(r#"{"text":"i shout"}"#)
    );
    assert_eq!(
        next_message(&mut bob_events).await.content,
        r#"{"text":"i shout"}"#
    );

    let plain = alice.send(Outgoing::text("bob", "hello")).await.unwrap();
    assert_eq!((plain.notice, plain.replaced_content), (0, None));
    assert_eq!(
        next_message(&mut bob_events).await.content,
        r#"{"text":"hello"}"#
    );
    // The rejected message was never stored.
    let history = bob
        .history(1, "alice", tidings_client::HistoryStart::Newest, 10)
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 2);
    // Each moderation request was signed.
    let moderated = std::mem::take(&mut app.lock().unwrap().moderated);
    assert_eq!(moderated.len(), 3);
    for request in &moderated {
        assert_eq!(request.1, "/moderate");
        assert_signed(&server.running().credentials, request);
    }
}

#[tokio::test]
async fn moderation_that_fails_lets_messages_through_or_refuses_them_as_configured() {
    let (_app, url) = app_server(AppServer {
        moderation_down: true,
        ..Default::default()
    })
    .await;
    let open = TestServer::start_with(|c| c.moderation_url = Some(format!("{url}/moderate"))).await;
    let (alice, _a) = open.client("alice", "phone").await;
    alice
        .send(Outgoing::text("bob", "hello"))
        .await
        .expect("fails open by default");
    let closed = TestServer::start_with(|c| {
        c.moderation_url = Some(format!("{url}/moderate"));
        c.moderation_fail_open = false;
    })
    .await;
    let (alice, _a) = closed.client("alice", "phone").await;
    let (code, _) = refused(alice.send(Outgoing::text("bob", "hello")).await);
    assert_eq!(code, Code::ModerationUnavailable.as_u32());
}
