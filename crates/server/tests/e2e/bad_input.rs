//! Every kind of bad input gets its documented code; nothing panics, hangs or is dropped
//! silently, and the connection stays usable where the protocol allows.

use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Code, Encoding, codec};

use crate::util::*;

fn connack_code(got: Got) -> (u32, String) {
    match got {
        Got::Frame(v1::Frame {
            body: Some(Body::Connack(a)),
            ..
        }) => (a.code, a.message),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

pub(crate) fn puback(got: Got) -> v1::PubAck {
    match got {
        Got::Frame(v1::Frame {
            body: Some(Body::Puback(a)),
            ..
        }) => a,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

pub(crate) async fn assert_usable(raw: &mut Raw) {
    raw.send(codec::frame(Body::Pingreq(v1::PingReq {}))).await;
    match raw.recv().await {
        Got::Frame(v1::Frame {
            body: Some(Body::Pingresp(_)),
            ..
        }) => {}
        other => panic!("connection should still answer PINGREQ, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_bytes_end_the_connection_with_40001() {
    let server = TestServer::start().await;
    let mut raw = Raw::open(&server, Encoding::Protobuf).await;
    raw.send_raw(vec![0x0a, 0xff, 0xff, 0xff]).await;
    raw.expect_disconnect(Code::MalformedFrame).await;
    let mut raw = Raw::open(&server, Encoding::Json).await;
    raw.send_raw(b"{\"connect\": {".to_vec()).await;
    raw.expect_disconnect(Code::MalformedFrame).await;
    // After CONNECT too.
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    raw.send_raw(b"not json".to_vec()).await;
    raw.expect_disconnect(Code::MalformedFrame).await;
}

#[tokio::test]
async fn an_unknown_frame_kind_ends_the_connection_with_40002() {
    let server = TestServer::start().await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    raw.send_raw(br#"{"subscribe":{"topic":"x"}}"#.to_vec())
        .await;
    raw.expect_disconnect(Code::UnknownFrameKind).await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Protobuf).await;
    // Field 9 (a kind this protocol does not have), empty.
    raw.send_raw(vec![0x4a, 0x00]).await;
    raw.expect_disconnect(Code::UnknownFrameKind).await;
}

#[tokio::test]
async fn an_oversized_frame_ends_the_connection_with_40003() {
    let server = TestServer::start_with(|c| {
        c.max_frame_bytes = 4096;
        c.max_content_bytes = 1024;
    })
    .await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    let big = format!(r#"{{"pingreq":{{}},"pad":"{}"}}"#, "x".repeat(5000));
    raw.send_raw(big.into_bytes()).await;
    raw.expect_disconnect(Code::FrameTooLarge).await;
}

#[tokio::test]
async fn frames_before_connect_are_refused_with_40004() {
    let server = TestServer::start().await;
    let mut raw = Raw::open(&server, Encoding::Protobuf).await;
    raw.send(publish(1, "c", "bob", r#"{"text":"x"}"#)).await;
    raw.expect_disconnect(Code::NotConnected).await;
}

#[tokio::test]
async fn a_second_connect_gets_40005_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    let token = server.token("alice").await;
    raw.send(connect(&token)).await;
    assert_eq!(
        connack_code(raw.recv().await).0,
        Code::AlreadyConnected.as_u32()
    );
    assert_usable(&mut raw).await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_codes() {
    let server = TestServer::start().await;
    let creds = server.running().credentials.clone();
    let now = now_ms() / 1000;
    let expired = tidings_engine::auth::mint(&creds, "alice", 0, now - 100, now - 10).unwrap();
    let mut forged_creds = creds.clone();
    forged_creds.token_key = vec![1; 32];
    let forged = tidings_engine::auth::mint(&forged_creds, "alice", 0, now, now + 100).unwrap();
    let old = server.token("carol").await;
    server
        .running()
        .engine
        .revoke_tokens("carol")
        .await
        .unwrap();
    let cases = [
        (String::new(), Code::TokenInvalid),
        ("not.a.token".to_string(), Code::TokenInvalid),
        (forged, Code::TokenInvalid),
        (expired, Code::TokenExpired),
        (old, Code::TokenRevoked),
    ];
    for (token, code) in cases {
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let mut raw = Raw::open(&server, encoding).await;
            raw.send(connect(&token)).await;
            let (got, message) = connack_code(raw.recv().await);
            assert_eq!(got, code.as_u32(), "{message}");
            assert!(message.starts_with(code.text()));
            assert!(matches!(raw.recv().await, Got::Closed));
        }
    }
}

#[tokio::test]
async fn an_unsupported_protocol_version_is_refused_with_31001() {
    let server = TestServer::start().await;
    let mut raw = Raw::open(&server, Encoding::Json).await;
    let mut frame = connect(&server.token("alice").await);
    if let Some(Body::Connect(c)) = frame.body.as_mut() {
        c.protocol_version = 2;
    }
    raw.send(frame).await;
    assert_eq!(
        connack_code(raw.recv().await).0,
        Code::UnsupportedProtocolVersion.as_u32()
    );
}

#[tokio::test]
async fn bad_publishes_get_puback_codes_and_the_connection_stays_usable() {
    let server = TestServer::start_with(|c| c.max_content_bytes = 100).await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    let mut unknown_type = publish(3, "c3", "bob", r#"{"text":"x"}"#);
    if let Some(Body::Publish(v1::Publish {
        body: Some(v1::publish::Body::Send(s)),
        ..
    })) = unknown_type.body.as_mut()
    {
        s.conversation_type = 2;
    }
    let cases = [
        (publish(1, "c1", "bob", ""), Code::ContentEmpty),
        (
            publish(
                2,
                "c2",
                "bob",
                &format!(r#"{{"text":"{}"}}"#, "x".repeat(200)),
            ),
            Code::ContentTooLarge,
        ),
        (unknown_type, Code::UnknownConversationType),
        (publish(4, "c4", "bob", "[1,2]"), Code::ContentInvalid),
        (
            publish(5, "c5", "b o b", r#"{"text":"x"}"#),
            Code::InvalidTarget,
        ),
        (
            publish(6, "", "bob", r#"{"text":"x"}"#),
            Code::InvalidClientMsgId,
        ),
    ];
    for (frame, code) in cases {
        raw.send(frame).await;
        let ack = puback(raw.recv().await);
        assert_eq!(ack.code, code.as_u32(), "{}", ack.message);
        assert!(ack.message.starts_with(code.text()));
        assert!(ack.uid.is_empty() && ack.seq == 0, "nothing was stored");
    }
    // A client message id reused with different content.
    raw.send(publish(7, "same", "bob", r#"{"text":"first"}"#))
        .await;
    assert_eq!(puback(raw.recv().await).code, 0);
    raw.send(publish(8, "same", "bob", r#"{"text":"second"}"#))
        .await;
    let ack = puback(raw.recv().await);
    assert_eq!(
        (ack.packet_id, ack.code),
        (8, Code::ClientMsgIdConflict.as_u32())
    );
    assert_usable(&mut raw).await;
}

#[tokio::test]
async fn a_server_frame_sent_by_a_client_ends_the_connection_with_40016() {
    let server = TestServer::start().await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Protobuf).await;
    raw.send(codec::frame(Body::Pingresp(v1::PingResp {})))
        .await;
    raw.expect_disconnect(Code::UnexpectedFrame).await;
}

#[tokio::test]
async fn a_query_without_a_body_or_with_a_huge_limit_gets_40015() {
    let server = TestServer::start().await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    for query in [
        v1::Query {
            query_id: 5,
            body: None,
        },
        v1::Query {
            query_id: 6,
            body: Some(v1::query::Body::Sync(v1::SyncInbox {
                after: 0,
                limit: 10_000,
            })),
        },
    ] {
        let id = query.query_id;
        raw.send(codec::frame(Body::Query(query))).await;
        match raw.recv().await {
            Got::Frame(v1::Frame {
                body: Some(Body::Queryack(q)),
                ..
            }) => {
                assert_eq!((q.query_id, q.code), (id, Code::InvalidQuery.as_u32()));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_usable(&mut raw).await;
}

#[tokio::test]
async fn a_socket_without_connect_is_closed_after_the_handshake_deadline() {
    let server =
        TestServer::start_with(|c| c.handshake_timeout = std::time::Duration::from_millis(100))
            .await;
    let mut raw = Raw::open(&server, Encoding::Json).await;
    raw.expect_disconnect(Code::HandshakeTimeout).await;
}

#[tokio::test]
async fn a_client_disconnect_is_answered_by_a_close_without_a_frame() {
    let server = TestServer::start().await;
    let mut raw = Raw::connected(&server, "alice", Encoding::Json).await;
    raw.send(codec::frame(Body::Disconnect(v1::Disconnect {
        code: 0,
        message: "bye".into(),
        reconnect: false,
    })))
    .await;
    assert!(matches!(raw.recv().await, Got::Closed));
}

#[tokio::test]
async fn the_sdk_reports_a_refused_connect_with_its_code() {
    let server = TestServer::start().await;
    let mut config = server.config("alice", "phone").await;
    config.device_id = "not a device id!".into();
    let err = tidings_client::Client::connect(config)
        .await
        .err()
        .expect("refused");
    match err {
        tidings_client::ClientError::Refused { code, .. } => {
            assert_eq!(code, Code::InvalidDeviceId.as_u32())
        }
        other => panic!("expected a refusal with its code, got {other:?}"),
    }
}

/// A content object whose field `a` holds objects nested `levels` deep in all, its own object
/// included: `{"text":"deep","a":{"a":{...{}...}}}`.
pub(crate) fn nested_content(levels: usize) -> serde_json::Value {
    let mut inner = serde_json::json!({});
    for _ in 2..levels {
        inner = serde_json::json!({ "a": inner });
    }
    serde_json::json!({ "text": "deep", "a": inner })
}
