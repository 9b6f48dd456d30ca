//! Golden frames: one of every kind, in both encodings, byte for byte. A change to the schema or
//! the codecs that alters the wire shows up here. `UPDATE_GOLDEN=1 cargo test -p tidings-proto`
//! rewrites the files after a deliberate change.

use std::path::PathBuf;

use tidings_proto::v1::{self, frame::Body};
use tidings_proto::{Encoding, codec};

fn message() -> v1::Message {
    v1::Message {
        uid: "01JD3Z8Q4K2M6N8P0R2T4V6X8Z".into(),
        conversation_type: 1,
        target_id: "alice".into(),
        sender_id: "alice".into(),
        seq: 42,
        sent_time: 1_732_240_000_123,
        msg_type: "text".into(),
        content: r#"{"text":"hi 👋"}"#.into(),
        push_text: "alice: hi".into(),
        client_msg_id: "c-7".into(),
        inbox_seq: 9_007_199_254_740_993,
        ..Default::default()
    }
}

fn frames() -> Vec<(&'static str, v1::Frame)> {
    let f = codec::frame;
    vec![
        (
            "connect",
            f(Body::Connect(v1::Connect {
                protocol_version: 1,
                token: "eyJ0.eyJ1.sig".into(),
                device_id: "phone-1".into(),
                platform: "ios".into(),
            })),
        ),
        (
            "connack",
            f(Body::Connack(v1::ConnAck {
                code: 0,
                message: String::new(),
                user_id: "bob".into(),
                session_id: "17".into(),
                heartbeat_ms: 30_000,
                server_time: 1_732_240_000_000,
                cursor: 8,
                inbox_seq: 12,
            })),
        ),
        (
            "connack_refused",
            f(Body::Connack(v1::ConnAck {
                code: 31004,
                message: "token is missing, malformed or forged".into(),
                ..Default::default()
            })),
        ),
        (
            "publish_send",
            v1::Frame {
                body: Some(Body::Publish(v1::Publish {
                    packet_id: 3,
                    body: Some(v1::publish::Body::Send(v1::Send {
                        client_msg_id: "c-7".into(),
                        conversation_type: 1,
                        target_id: "bob".into(),
                        msg_type: "text".into(),
                        content: r#"{"text":"hi 👋"}"#.into(),
                        push_text: "alice: hi".into(),
                        ..Default::default()
                    })),
                })),
                qos: 1,
                dup: false,
            },
        ),
        (
            "publish_group_send",
            v1::Frame {
                body: Some(Body::Publish(v1::Publish {
                    packet_id: 4,
                    body: Some(v1::publish::Body::Send(v1::Send {
                        client_msg_id: "c-8".into(),
                        conversation_type: 3,
                        target_id: "team".into(),
                        msg_type: "text".into(),
                        content: r#"{"text":"@carol look"}"#.into(),
                        mentioned_user_ids: vec!["carol".into()],
                        directed_user_ids: vec!["carol".into(), "dave".into()],
                        ..Default::default()
                    })),
                })),
                qos: 1,
                dup: false,
            },
        ),
        (
            "publish_message_dup",
            v1::Frame {
                body: Some(Body::Publish(v1::Publish {
                    packet_id: 0,
                    body: Some(v1::publish::Body::Message(message())),
                })),
                qos: 1,
                dup: true,
            },
        ),
        (
            "puback_server",
            f(Body::Puback(v1::PubAck {
                packet_id: 3,
                code: 0,
                message: String::new(),
                uid: "01JD3Z8Q4K2M6N8P0R2T4V6X8Z".into(),
                seq: 42,
                sent_time: 1_732_240_000_123,
                inbox_seq: 10,
                ..Default::default()
            })),
        ),
        (
            "puback_server_words_replaced",
            f(Body::Puback(v1::PubAck {
                packet_id: 4,
                uid: "01JD3Z8Q4K2M6N8P0R2T4V6X90".into(),
                seq: 43,
                sent_time: 1_732_240_000_456,
                inbox_seq: 11,
                notice: 21502,
                content: r#"{"text":"d**n"}"#.into(),
                ..Default::default()
            })),
        ),
        (
            "puback_device",
            f(Body::Puback(v1::PubAck {
                inbox_seq: 9,
                ..Default::default()
            })),
        ),
        (
            "query_sync",
            f(Body::Query(v1::Query {
                query_id: 1,
                body: Some(v1::query::Body::Sync(v1::SyncInbox {
                    after: 8,
                    limit: 100,
                })),
            })),
        ),
        (
            "queryack",
            f(Body::Queryack(v1::QueryAck {
                query_id: 1,
                code: 0,
                message: String::new(),
                messages: vec![message()],
                has_more: true,
                ..Default::default()
            })),
        ),
        (
            "query_list_conversations",
            f(Body::Query(v1::Query {
                query_id: 2,
                body: Some(v1::query::Body::ListConversations(v1::ListConversations {
                    types: vec![1],
                    limit: 20,
                    page_token: "0:1732240000123:01JD3Z8Q4K2M6N8P0R2T4V6X8Z:1:carol".into(),
                    changed_since: 0,
                })),
            })),
        ),
        (
            "query_update_conversation",
            f(Body::Query(v1::Query {
                query_id: 3,
                body: Some(v1::query::Body::UpdateConversation(
                    v1::UpdateConversation {
                        conversation_type: 1,
                        target_id: "bob".into(),
                        read_seq: 42,
                        pinned: Some(true),
                        muted: Some(false),
                        ..Default::default()
                    },
                )),
            })),
        ),
        (
            "query_update_discussion",
            f(Body::Query(v1::Query {
                query_id: 4,
                body: Some(v1::query::Body::UpdateDiscussion(v1::UpdateDiscussion {
                    group_id: "d-01JD3Z8Q4K2M6N8P0R2T4V6X8Z".into(),
                    name: None,
                    invite_open: Some(false),
                })),
            })),
        ),
        (
            "publish_message_edited_with_reactions",
            v1::Frame {
                body: Some(Body::Publish(v1::Publish {
                    packet_id: 0,
                    body: Some(v1::publish::Body::Message(v1::Message {
                        edited: true,
                        reactions: vec![v1::Reaction {
                            emoji: "👍".into(),
                            user_ids: vec!["alice".into(), "bob".into()],
                        }],
                        ..message()
                    })),
                })),
                qos: 1,
                dup: false,
            },
        ),
        (
            "query_react",
            f(Body::Query(v1::Query {
                query_id: 5,
                body: Some(v1::query::Body::ReactToMessage(v1::ReactToMessage {
                    conversation_type: 1,
                    target_id: "alice".into(),
                    seq: 42,
                    emoji: "👍".into(),
                    remove: false,
                })),
            })),
        ),
        (
            "query_get_history",
            f(Body::Query(v1::Query {
                query_id: 4,
                body: Some(v1::query::Body::GetHistory(v1::GetHistory {
                    conversation_type: 1,
                    target_id: "bob".into(),
                    before_seq: 40,
                    count: 20,
                    ..Default::default()
                })),
            })),
        ),
        (
            "query_register_push",
            f(Body::Query(v1::Query {
                query_id: 6,
                body: Some(v1::query::Body::RegisterPush(v1::RegisterPush {
                    endpoint: "https://push.example/send/abc".into(),
                    p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4".into(),
                    auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
                    ..Default::default()
                })),
            })),
        ),
        (
            "query_register_push_token",
            f(Body::Query(v1::Query {
                query_id: 7,
                body: Some(v1::query::Body::RegisterPush(v1::RegisterPush {
                    provider: "apns".into(),
                    token: "5f6aa01d8e3358949b7c25d461bb78ad740f4707462c7eafbebcf74fa5ddb387".into(),
                    app_id: "com.example.chat".into(),
                    sandbox: true,
                    locale: "en-GB".into(),
                    ..Default::default()
                })),
            })),
        ),
        (
            "query_set_app_state",
            f(Body::Query(v1::Query {
                query_id: 8,
                body: Some(v1::query::Body::SetAppState(v1::SetAppState {
                    background: true,
                })),
            })),
        ),
        (
            "query_publish_key_packages",
            f(Body::Query(v1::Query {
                query_id: 9,
                body: Some(v1::query::Body::PublishKeyPackages(v1::PublishKeyPackages {
                    key_packages: vec![vec![0, 1, 0, 5, 0, 1], vec![0, 1, 0, 5, 0, 1, 0xff]],
                    replace: true,
                })),
            })),
        ),
        (
            "query_claim_key_packages",
            f(Body::Query(v1::Query {
                query_id: 10,
                body: Some(v1::query::Body::ClaimKeyPackages(v1::ClaimKeyPackages {
                    user_ids: vec!["alice".into(), "bob".into()],
                    except: vec!["alice:phone".into()],
                })),
            })),
        ),
        (
            "queryack_claim_key_packages",
            f(Body::Queryack(v1::QueryAck {
                query_id: 10,
                key_packages: vec![v1::DeviceKeyPackage {
                    user_id: "alice".into(),
                    device_id: "phone".into(),
                    key_package: vec![0, 1, 0, 5, 0, 1],
                    last_resort: true,
                }],
                key_package_count: 0,
                ..Default::default()
            })),
        ),
        (
            "queryack_register_push",
            f(Body::Queryack(v1::QueryAck {
                query_id: 6,
                vapid_public_key: "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U".into(),
                ..Default::default()
            })),
        ),
        (
            "queryack_conversations",
            f(Body::Queryack(v1::QueryAck {
                query_id: 2,
                conversations: vec![v1::Conversation {
                    conversation_type: 1,
                    target_id: "alice".into(),
                    latest: Some(v1::Message {
                        inbox_seq: 0,
                        ..message()
                    }),
                    unread: 3,
                    read_seq: 39,
                    pinned: true,
                    muted: false,
                    removed: false,
                    cleared_seq: 0,
                    mentioned: 0,
                    peer_read_seq: 0,
                }],
                version: 57,
                next_page_token: "1:1732240000123:01JD3Z8Q4K2M6N8P0R2T4V6X8Z:1:alice".into(),
                ..Default::default()
            })),
        ),
        (
            "queryack_group_members",
            f(Body::Queryack(v1::QueryAck {
                query_id: 5,
                groups: vec![v1::Group {
                    group_id: "team".into(),
                    name: "Team".into(),
                    owner_id: "alice".into(),
                    created_time: 1_732_240_000_000,
                    member_count: 2,
                    ..Default::default()
                }],
                members: vec![
                    v1::GroupMember {
                        user_id: "alice".into(),
                        joined_time: 1_732_240_000_000,
                        muted_until: 0,
                    },
                    v1::GroupMember {
                        user_id: "bob".into(),
                        joined_time: 1_732_240_000_500,
                        muted_until: i64::MAX,
                    },
                ],
                next_page_token: "2".into(),
                ..Default::default()
            })),
        ),
        (
            "querycon",
            f(Body::Querycon(v1::QueryCon {
                query_id: 1,
                inbox_seq: 9,
            })),
        ),
        ("pingreq", f(Body::Pingreq(v1::PingReq {}))),
        ("pingresp", f(Body::Pingresp(v1::PingResp {}))),
        (
            "disconnect",
            f(Body::Disconnect(v1::Disconnect {
                code: 31010,
                message: "logged in on another device".into(),
                reconnect: false,
            })),
        ),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn golden_frames_in_both_encodings() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, frame) in frames() {
        let json = codec::encode_json(&frame).unwrap();
        let pb = hex(&codec::encode_protobuf(&frame));
        let json_path = dir().join(format!("{name}.json"));
        let pb_path = dir().join(format!("{name}.pb.hex"));
        if update {
            // Pretty JSON in the file for readers; the compact form is compared below.
            let pretty: serde_json::Value = serde_json::from_str(&json).unwrap();
            std::fs::write(
                &json_path,
                serde_json::to_string_pretty(&pretty).unwrap() + "\n",
            )
            .unwrap();
            std::fs::write(&pb_path, pb.clone() + "\n").unwrap();
        }
        let golden_json = std::fs::read_to_string(&json_path).unwrap();
        let golden_pb = std::fs::read_to_string(&pb_path).unwrap();
        // The golden JSON decodes to the frame and the frame encodes to the same JSON value.
        let decoded = codec::decode(golden_json.as_bytes(), Encoding::Json, 1 << 16).unwrap();
        assert_eq!(decoded, frame, "{name}.json decodes to the frame");
        let ours: serde_json::Value = serde_json::from_str(&json).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(&golden_json).unwrap();
        assert_eq!(ours, theirs, "{name}: JSON encoding changed");
        assert_eq!(pb, golden_pb.trim(), "{name}: protobuf encoding changed");
        let bytes = unhex(golden_pb.trim());
        assert_eq!(
            codec::decode(&bytes, Encoding::Protobuf, 1 << 16).unwrap(),
            frame,
            "{name}.pb.hex decodes to the frame"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
