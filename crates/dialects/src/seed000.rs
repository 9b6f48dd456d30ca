//! Seed 000: protobuf frames in binary WebSocket messages at `/ws`, with the schema in
//! `docs/dialects/seed000.proto`.
//!
//! Every frame is an outer `Input` (client) or `Output` (server) whose `type` says what its
//! `data` holds: 1 login, 2 heartbeat, 3 message, 4 ACK, 5 offline sync. A message's `seq` is
//! its position in the receiving user's inbox: the client acknowledges it (ACK type 2) and
//! syncs from it (type 5). Errors are `Output.code` (a Tidings code; 200 is success) with its
//! text in `code_msg`.

use std::collections::HashMap;

use prost::Message as _;
use tidings_engine::{ConnectInfo, ConnectRequest, Delivered, Outbound, Refusal, SendRequest};
use tidings_proto::{Code, conversation_type};

use crate::{Dialect, Profiles, Step, WireIn, WireOut, numeric_id, plain_text, text_content};

/// The schema, generated from `docs/dialects/seed000.proto`.
#[allow(clippy::all, missing_docs)]
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/seed000.rs"));
}

use wire::{Ack, Input, Login, MessageMsg, Msg, Output, SyncInput, SyncOutput};

/// The outer frame types.
pub mod kind {
    pub const ERROR: i32 = 0;
    pub const LOGIN: i32 = 1;
    pub const HEARTBEAT: i32 = 2;
    pub const MESSAGE: i32 = 3;
    pub const ACK: i32 = 4;
    pub const SYNC: i32 = 5;
}

/// `Ack.type` values.
pub mod ack {
    /// Server to client: a message was stored.
    pub const STORED: i32 = 1;
    /// Client to server: a message arrived.
    pub const RECEIVED: i32 = 2;
    /// Server to client: the answer to a login.
    pub const LOGIN: i32 = 3;
}

/// `Output.code` for success.
pub const OK: i32 = 200;
/// Messages per sync page.
const PAGE: u32 = 100;

/// One seed-000 connection.
#[derive(Default)]
pub struct Seed000 {
    user: String,
    logged_in: bool,
    /// The token of the login that opened the session: the seed's client resends its Login
    /// when the answer is slow, and that resend is answered as the first was.
    login_token: String,
    /// PUBLISH packet id -> the client's `client_id`.
    pending: HashMap<u32, i64>,
    next_packet: u32,
    next_query: u32,
}

fn output(kind: i32, code: i32, code_msg: &str, data: Vec<u8>) -> Step {
    Step::Send(WireOut::Binary(
        Output {
            r#type: kind,
            code,
            code_msg: code_msg.into(),
            data,
        }
        .encode_to_vec(),
    ))
}

/// The answer to an accepted login.
fn login_answer() -> Step {
    output(kind::ACK, OK, "", ack_data(ack::LOGIN, 0, 0))
}

fn refusal_output(kind: i32, refusal: &Refusal, data: Vec<u8>) -> Step {
    output(kind, refusal.code.as_u32() as i32, &refusal.text(), data)
}

fn ack_data(kind: i32, client_id: i64, seq: u64) -> Vec<u8> {
    Ack {
        r#type: kind,
        client_id,
        seq: seq as i64,
    }
    .encode_to_vec()
}

impl Seed000 {
    pub fn new() -> Seed000 {
        Seed000 {
            next_packet: 1,
            next_query: 1,
            ..Default::default()
        }
    }

    /// A frame-level error: said, then the connection ends.
    fn fatal(code: Code, detail: &str) -> Vec<Step> {
        let refusal = Refusal::new(code, detail);
        vec![
            refusal_output(kind::ERROR, &refusal, Vec::new()),
            Step::Close(code),
        ]
    }

    fn send(&mut self, m: MessageMsg) -> Vec<Step> {
        let client_id = m.client_id;
        let refuse = |code: Code, detail: &str| {
            vec![refusal_output(
                kind::ACK,
                &Refusal::new(code, detail),
                ack_data(ack::STORED, client_id, 0),
            )]
        };
        let Some(msg) = m.msg else {
            return refuse(Code::MalformedFrame, "the message has no msg");
        };
        let conversation = match msg.session_type {
            1 => conversation_type::PRIVATE,
            2 => conversation_type::GROUP,
            _ => {
                return refuse(
                    Code::UnknownConversationType,
                    "session_type is 1 (one-to-one) or 2 (group)",
                );
            }
        };
        let target = if !msg.receiver.is_empty() {
            msg.receiver.clone()
        } else if msg.receiver_id > 0 {
            msg.receiver_id.to_string()
        } else {
            return refuse(Code::InvalidTarget, "receiver_id is missing");
        };
        if msg.sender_id != 0 && msg.sender_id.to_string() != self.user {
            return refuse(Code::Unauthorized, "sender_id is not the logged-in user");
        }
        let (msg_type, content) = match msg.message_type {
            1 => ("text", text_content(&msg.content)),
            2 => (
                "image",
                serde_json::json!({ "url": msg.content }).to_string(),
            ),
            3 => (
                "voice",
                serde_json::json!({ "url": msg.content, "duration": 0 }).to_string(),
            ),
            _ => {
                return refuse(
                    Code::InvalidMessageType,
                    "message_type is 1 (text), 2 (image) or 3 (voice)",
                );
            }
        };
        let packet_id = self.next_packet;
        self.next_packet = self.next_packet.wrapping_add(1).max(1);
        self.pending.insert(packet_id, client_id);
        vec![Step::Publish {
            packet_id,
            send: SendRequest {
                // A resend repeats client_id and send_time; a restarted client counts from 1
                // again, but at another time.
                client_msg_id: format!("s0-{client_id}-{}", msg.send_time),
                conversation_type: conversation,
                target_id: target,
                msg_type: msg_type.into(),
                content,
                ..Default::default()
            },
        }]
    }

    fn sync_step(&mut self, after: u64) -> Step {
        let query_id = self.next_query;
        self.next_query = self.next_query.wrapping_add(1).max(1);
        Step::Sync {
            query_id,
            after,
            limit: PAGE,
        }
    }

    /// A delivered message in the seed's shape, or `None` for what the seed cannot show.
    fn msg(&self, m: &Delivered) -> Option<Msg> {
        if crate::is_event(m) {
            return None;
        }
        let (session_type, receiver) = match m.conversation_type() {
            conversation_type::GROUP => (2, m.target_id()),
            conversation_type::PRIVATE if m.sender_id() == self.user => (1, m.target_id()),
            conversation_type::PRIVATE | conversation_type::SYSTEM => (1, self.user.as_str()),
            _ => return None,
        };
        let (message_type, content) = match m.msg_type() {
            "image" | "voice" => {
                let url = serde_json::from_str::<serde_json::Value>(m.content())
                    .ok()
                    .and_then(|v| v.get("url").and_then(|u| u.as_str()).map(str::to_string))
                    .unwrap_or_default();
                (if m.msg_type() == "image" { 2 } else { 3 }, url)
            }
            _ => (1, plain_text(m)),
        };
        Some(Msg {
            session_type,
            receiver_id: numeric_id(receiver),
            sender_id: numeric_id(m.sender_id()),
            message_type,
            content,
            seq: m.inbox_seq() as i64,
            send_time: m.sent_time(),
            uid: m.uid().into(),
            sender: m.sender_id().into(),
            receiver: receiver.into(),
        })
    }
}

impl Dialect for Seed000 {
    type Steps = Vec<Step>;

    fn open(&mut self) -> Vec<Step> {
        Vec::new()
    }

    fn connected(&mut self, outcome: Result<&ConnectInfo, &Refusal>) -> Vec<Step> {
        match outcome {
            Ok(info) => {
                self.user = info.user_id.clone();
                self.logged_in = true;
                vec![login_answer()]
            }
            Err(refusal) => vec![
                refusal_output(kind::ACK, refusal, ack_data(ack::LOGIN, 0, 0)),
                Step::Close(refusal.code),
            ],
        }
    }

    fn inbound(&mut self, frame: WireIn<'_>) -> Vec<Step> {
        let WireIn::Binary(bytes) = frame else {
            return Self::fatal(Code::MalformedFrame, "frames are binary protobuf (Input)");
        };
        let Ok(input) = Input::decode(bytes) else {
            return Self::fatal(Code::MalformedFrame, "not an Input frame");
        };
        let data = input.data.as_slice();
        if !self.logged_in && input.r#type != kind::LOGIN {
            return Self::fatal(Code::NotConnected, "log in (type 1) first");
        }
        match input.r#type {
            kind::LOGIN => match Login::decode(data) {
                // A resend of the login that opened the session: the same answer again.
                Ok(login) if self.logged_in && login.token == self.login_token => {
                    vec![login_answer()]
                }
                Ok(_) if self.logged_in => {
                    let r = Refusal::new(
                        Code::AlreadyConnected,
                        "this connection is logged in with another token",
                    );
                    vec![refusal_output(kind::ACK, &r, ack_data(ack::LOGIN, 0, 0))]
                }
                Ok(login) => {
                    self.login_token.clone_from(&login.token);
                    vec![Step::Connect(ConnectRequest {
                        token: login.token,
                        device_id: String::new(),
                        platform: "seed000".into(),
                    })]
                }
                Err(_) => Self::fatal(Code::MalformedFrame, "not a Login"),
            },
            kind::HEARTBEAT => vec![output(kind::HEARTBEAT, OK, "", Vec::new())],
            kind::MESSAGE => match MessageMsg::decode(data) {
                Ok(m) => self.send(m),
                Err(_) => Self::fatal(Code::MalformedFrame, "not a MessageMsg"),
            },
            kind::ACK => match Ack::decode(data) {
                Ok(a) if a.r#type == ack::RECEIVED && a.seq > 0 => vec![Step::Ack(a.seq as u64)],
                Ok(_) => Vec::new(),
                Err(_) => Self::fatal(Code::MalformedFrame, "not an Ack"),
            },
            kind::SYNC => match SyncInput::decode(data) {
                Ok(s) => vec![self.sync_step(s.seq.max(0) as u64)],
                Err(_) => Self::fatal(Code::MalformedFrame, "not a SyncInput"),
            },
            other => {
                let r = Refusal::new(Code::UnknownFrameKind, "type is 1 to 5");
                vec![refusal_output(other, &r, Vec::new())]
            }
        }
    }

    fn outbound(&mut self, item: Outbound, _profiles: Profiles<'_>) -> Vec<Step> {
        match item {
            Outbound::PubAck(a) => {
                let client_id = self.pending.remove(&a.packet_id).unwrap_or_default();
                if a.code == 0 {
                    vec![output(
                        kind::ACK,
                        OK,
                        "",
                        ack_data(ack::STORED, client_id, a.inbox_seq),
                    )]
                } else {
                    vec![output(
                        kind::ACK,
                        a.code as i32,
                        &a.text,
                        ack_data(ack::STORED, client_id, 0),
                    )]
                }
            }
            Outbound::Deliver { message, .. } => match self.msg(&message) {
                Some(msg) => {
                    let data = MessageMsg {
                        client_id: 0,
                        msg: Some(msg),
                    }
                    .encode_to_vec();
                    vec![output(kind::MESSAGE, OK, "", data)]
                }
                None => vec![Step::Ack(message.inbox_seq())],
            },
            Outbound::QueryAck(q) => {
                if q.code != 0 {
                    return vec![output(kind::SYNC, q.code as i32, &q.text, Vec::new())];
                }
                let last = q.messages.last().map(|m| m.inbox_seq());
                let messages: Vec<Msg> = q.messages.iter().filter_map(|m| self.msg(m)).collect();
                // A page of nothing the seed shows is skipped over, so the client's seq (which
                // only moves with what it is shown) still reaches the end.
                if messages.is_empty()
                    && q.has_more
                    && let Some(last) = last
                {
                    return vec![self.sync_step(last)];
                }
                let data = SyncOutput {
                    messages,
                    has_more: q.has_more,
                }
                .encode_to_vec();
                vec![output(kind::SYNC, OK, "", data)]
            }
            Outbound::ConnAck { code, text } => vec![output(
                kind::ACK,
                code as i32,
                &text,
                ack_data(ack::LOGIN, 0, 0),
            )],
            _ => Vec::new(),
        }
    }

    fn goodbye(&mut self, code: Code) -> Option<WireOut> {
        match output(kind::ERROR, code.as_u32() as i32, code.text(), Vec::new()) {
            Step::Send(frame) => Some(frame),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(steps: &[Step]) -> Vec<Output> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Send(WireOut::Binary(b)) => Output::decode(b.as_slice()).ok(),
                _ => None,
            })
            .collect()
    }

    fn input(kind: i32, data: impl prost::Message) -> Vec<u8> {
        Input {
            r#type: kind,
            data: data.encode_to_vec(),
        }
        .encode_to_vec()
    }

    fn logged_in() -> Seed000 {
        let mut d = Seed000::new();
        let login = input(kind::LOGIN, Login { token: "t".into() });
        assert!(
            matches!(&d.inbound(WireIn::Binary(&login))[..], [Step::Connect(c)] if c.token == "t")
        );
        let info = ConnectInfo {
            user_id: "5".into(),
            session_id: "s".into(),
            heartbeat_ms: 30_000,
            server_time: 0,
            cursor: 0,
            inbox_seq: 0,
        };
        let out = outputs(&d.connected(Ok(&info)));
        assert_eq!((out[0].r#type, out[0].code), (kind::ACK, OK));
        assert_eq!(
            Ack::decode(out[0].data.as_slice()).unwrap().r#type,
            ack::LOGIN
        );
        d
    }

    #[test]
    fn a_repeated_login_is_answered_as_the_first_and_another_token_is_refused() {
        let mut d = logged_in();
        let again = input(kind::LOGIN, Login { token: "t".into() });
        let out = outputs(&d.inbound(WireIn::Binary(&again)));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].r#type, out[0].code), (kind::ACK, OK));
        assert_eq!(
            Ack::decode(out[0].data.as_slice()).unwrap().r#type,
            ack::LOGIN
        );
        let other = input(kind::LOGIN, Login { token: "u".into() });
        let out = outputs(&d.inbound(WireIn::Binary(&other)));
        assert_eq!(out[0].code, Code::AlreadyConnected.as_u32() as i32);
    }

    #[test]
    fn frames_before_login_end_the_connection() {
        let mut d = Seed000::new();
        let steps = d.inbound(WireIn::Binary(&input(kind::HEARTBEAT, wire::HeartBeat {})));
        assert_eq!(outputs(&steps)[0].code, Code::NotConnected.as_u32() as i32);
        assert!(matches!(
            steps.last(),
            Some(Step::Close(Code::NotConnected))
        ));
    }

    #[test]
    fn a_message_keeps_its_id_across_resends_and_maps_its_types() {
        let mut d = logged_in();
        let frame = input(
            kind::MESSAGE,
            MessageMsg {
                client_id: 3,
                msg: Some(Msg {
                    session_type: 2,
                    receiver_id: 77,
                    sender_id: 5,
                    message_type: 2,
                    content: "https://x/y.png".into(),
                    send_time: 1000,
                    ..Default::default()
                }),
            },
        );
        let a = d.inbound(WireIn::Binary(&frame));
        let b = d.inbound(WireIn::Binary(&frame));
        let (Step::Publish { send: a, .. }, Step::Publish { send: b, .. }) = (&a[0], &b[0]) else {
            panic!("not publishes");
        };
        assert_eq!(a.client_msg_id, b.client_msg_id);
        assert_eq!(a.conversation_type, conversation_type::GROUP);
        assert_eq!(a.target_id, "77");
        assert_eq!(a.msg_type, "image");
        assert_eq!(a.content, r#"{"url":"https://x/y.png"}"#);
    }

    #[test]
    fn bad_messages_get_an_ack_with_the_code() {
        let mut d = logged_in();
        for (msg, code) in [
            (
                Msg {
                    session_type: 9,
                    receiver_id: 1,
                    message_type: 1,
                    ..Default::default()
                },
                Code::UnknownConversationType,
            ),
            (
                Msg {
                    session_type: 1,
                    message_type: 1,
                    ..Default::default()
                },
                Code::InvalidTarget,
            ),
            (
                Msg {
                    session_type: 1,
                    receiver_id: 1,
                    message_type: 7,
                    ..Default::default()
                },
                Code::InvalidMessageType,
            ),
            (
                Msg {
                    session_type: 1,
                    receiver_id: 1,
                    sender_id: 6,
                    message_type: 1,
                    ..Default::default()
                },
                Code::Unauthorized,
            ),
        ] {
            let frame = input(
                kind::MESSAGE,
                MessageMsg {
                    client_id: 9,
                    msg: Some(msg),
                },
            );
            let out = outputs(&d.inbound(WireIn::Binary(&frame)));
            assert_eq!(out[0].code, code.as_u32() as i32);
            let ack = Ack::decode(out[0].data.as_slice()).unwrap();
            assert_eq!((ack.r#type, ack.client_id), (ack::STORED, 9));
        }
    }

    #[test]
    fn garbage_ends_the_connection_and_unknown_types_do_not() {
        let mut d = logged_in();
        let steps = d.inbound(WireIn::Binary(&[0xff, 0xff, 0xff]));
        assert!(matches!(
            steps.last(),
            Some(Step::Close(Code::MalformedFrame))
        ));
        let steps = d.inbound(WireIn::Binary(&input(9, wire::HeartBeat {})));
        assert_eq!(
            outputs(&steps)[0].code,
            Code::UnknownFrameKind.as_u32() as i32
        );
        assert_eq!(steps.len(), 1);
    }
}
