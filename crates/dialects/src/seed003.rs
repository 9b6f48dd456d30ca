//! Seed 003: private messages as JSON text frames at `/imserver/{token}`.
//!
//! Every frame both ways is `{fromId, toId, type, content, timestamp, Describe}`. The client
//! sends type 0 (a message to `toId`) and type 1 (read confirmation: `content` is a JSON array
//! of message ids); the server answers a type 0 with a type 0 (stored) or type 1 (refused), and
//! delivers messages as type 2 with `Describe` a JSON string of `{userName, headURL,
//! messageId}`. The seed has no delivery acknowledgement and no sync: a message counts as
//! delivered once written to the socket, and a connection starts by receiving what its user's
//! inbox holds beyond the last one delivered to this dialect.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{Value, json};
use tidings_engine::{ConnectInfo, ConnectRequest, Outbound, Refusal, SendRequest};
use tidings_proto::{Code, conversation_type};

use crate::{Dialect, Profiles, Step, WireIn, WireOut, numeric_id, plain_text, text_content};

/// The device id of every seed-003 connection: the seed's server keeps one connection per user
/// (a new one replaces the old), and the engine keeps this device's cursor.
pub const DEVICE_ID: &str = "seed003";
/// Inbox entries asked for per sync page.
const PAGE: u32 = 100;
/// Sent inbox seqs remembered, to drop an entry that arrives by both sync and push.
const SENT_MEMORY: usize = 4096;

/// One seed-003 connection.
pub struct Seed003 {
    token: String,
    user: String,
    /// PUBLISH packet id -> the request's timestamp, echoed in the answer.
    pending: HashMap<u32, Value>,
    next_packet: u32,
    next_query: u32,
    /// Inbox seqs already written to the client.
    sent: BTreeSet<u64>,
}

#[derive(Deserialize)]
struct Request {
    #[serde(rename = "fromId", default)]
    from_id: Value,
    #[serde(rename = "toId", default)]
    to_id: Value,
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default)]
    content: String,
    #[serde(default)]
    timestamp: Value,
}

impl Seed003 {
    /// A connection whose URL carried `token`.
    pub fn new(token: String) -> Seed003 {
        Seed003 {
            token,
            user: String::new(),
            pending: HashMap::new(),
            next_packet: 1,
            next_query: 1,
            sent: BTreeSet::new(),
        }
    }

    /// A frame to this connection's user from the system (id 0).
    fn system(&self, kind: i64, content: &str, timestamp: Value, describe: &str) -> Step {
        Step::Send(frame(json!({
            "fromId": 0,
            "toId": id_value(&self.user),
            "type": kind,
            "content": content,
            "timestamp": timestamp,
            "Describe": describe,
        })))
    }

    /// The type-1 answer: a request failed with `code`.
    fn failed(&self, code: Code, text: &str, timestamp: Value) -> Step {
        let describe = json!({ "code": code.as_u32() }).to_string();
        self.system(1, text, timestamp, &describe)
    }

    fn sync(&mut self, after: u64) -> Step {
        let query_id = self.next_query;
        self.next_query = self.next_query.wrapping_add(1).max(1);
        Step::Sync {
            query_id,
            after,
            limit: PAGE,
        }
    }

    fn send(&mut self, req: Request) -> Vec<Step> {
        let to = id_text(&req.to_id);
        let timestamp = req.timestamp.clone();
        if !req.from_id.is_null() && id_text(&req.from_id) != self.user {
            return vec![self.failed(
                Code::Unauthorized,
                "fromId is not the user the token names",
                timestamp,
            )];
        }
        if to.is_empty() {
            return vec![self.failed(Code::MalformedFrame, "toId is missing", timestamp)];
        }
        let packet_id = self.next_packet;
        self.next_packet = self.next_packet.wrapping_add(1).max(1);
        let client_msg_id = format!(
            "s3-{:016x}",
            digest(&[&to, &id_text(&req.timestamp), &req.content])
        );
        self.pending.insert(packet_id, timestamp);
        vec![Step::Publish {
            packet_id,
            send: SendRequest {
                client_msg_id,
                conversation_type: conversation_type::PRIVATE,
                target_id: to,
                msg_type: "text".into(),
                content: text_content(&req.content),
                ..Default::default()
            },
        }]
    }

    fn read_confirm(&mut self, req: &Request) -> Vec<Step> {
        let ids: Result<Vec<Value>, _> = serde_json::from_str(&req.content);
        let seqs: Option<Vec<u64>> = ids.ok().and_then(|ids| {
            ids.iter()
                .map(|v| id_text(v).parse::<u64>().ok().filter(|n| *n > 0))
                .collect()
        });
        match seqs {
            Some(seqs) if !seqs.is_empty() => vec![Step::ReadInbox(seqs)],
            Some(_) => Vec::new(),
            None => vec![self.failed(
                Code::MalformedFrame,
                "content must be a JSON array of message ids",
                req.timestamp.clone(),
            )],
        }
    }

    /// A delivered message as a type-2 frame (or nothing, for what the seed cannot show), and
    /// its acknowledgement: the seed has none of its own.
    fn deliver(
        &mut self,
        message: &tidings_engine::Delivered,
        profiles: Profiles<'_>,
    ) -> Vec<Step> {
        let seq = message.inbox_seq();
        if !self.sent.insert(seq) {
            return Vec::new();
        }
        if self.sent.len() > SENT_MEMORY {
            self.sent.pop_first();
        }
        let mut steps = Vec::new();
        if shown(message, &self.user) {
            let sender = message.sender_id();
            let profile = profiles.iter().find(|u| u.user == sender);
            let name = profile
                .map(|u| u.profile.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| sender.to_string());
            let portrait = profile
                .map(|u| u.profile.portrait.clone())
                .unwrap_or_default();
            let describe = json!({
                "userName": name,
                "headURL": portrait,
                "messageId": seq.to_string(),
            })
            .to_string();
            let from = if message.conversation_type() == conversation_type::SYSTEM {
                json!(0)
            } else {
                id_value(sender)
            };
            steps.push(Step::Send(frame(json!({
                "fromId": from,
                "toId": id_value(&self.user),
                "type": 2,
                "content": plain_text(message),
                "timestamp": (message.sent_time() / 1000).to_string(),
                "Describe": describe,
            }))));
        }
        steps.push(Step::Ack(seq));
        steps
    }
}

/// The seed shows one-to-one messages others send the user, and the system's.
fn shown(message: &tidings_engine::Delivered, me: &str) -> bool {
    !crate::is_event(message)
        && message.sender_id() != me
        && matches!(
            message.conversation_type(),
            conversation_type::PRIVATE | conversation_type::SYSTEM
        )
}

impl Dialect for Seed003 {
    type Steps = Vec<Step>;

    fn open(&mut self) -> Vec<Step> {
        vec![Step::Connect(ConnectRequest {
            token: std::mem::take(&mut self.token),
            device_id: DEVICE_ID.into(),
            platform: "seed003".into(),
        })]
    }

    fn connected(&mut self, outcome: Result<&ConnectInfo, &Refusal>) -> Vec<Step> {
        match outcome {
            Ok(info) => {
                self.user = info.user_id.clone();
                vec![self.sync(info.cursor)]
            }
            Err(refusal) => vec![
                self.failed(refusal.code, &refusal.text(), Value::from("")),
                Step::Close(refusal.code),
            ],
        }
    }

    fn inbound(&mut self, frame: WireIn<'_>) -> Vec<Step> {
        let WireIn::Text(text) = frame else {
            return vec![self.failed(
                Code::MalformedFrame,
                "frames are JSON text",
                Value::from(""),
            )];
        };
        let req: Request = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                return vec![self.failed(
                    Code::MalformedFrame,
                    &format!("not a request: {e}"),
                    Value::from(""),
                )];
            }
        };
        match req.kind {
            0 => self.send(req),
            1 => self.read_confirm(&req),
            _ => vec![self.failed(
                Code::UnknownFrameKind,
                "type is 0 (send) or 1 (read confirmation)",
                req.timestamp,
            )],
        }
    }

    fn profiles_for(&self, item: &Outbound) -> Vec<String> {
        let mut users = Vec::new();
        match item {
            Outbound::Deliver { message, .. } if shown(message, &self.user) => {
                users.push(message.sender_id().to_string());
            }
            Outbound::QueryAck(q) => {
                for m in q.messages.iter().filter(|m| shown(m, &self.user)) {
                    if !users.iter().any(|u| u == m.sender_id()) {
                        users.push(m.sender_id().to_string());
                    }
                }
            }
            _ => {}
        }
        users
    }

    fn outbound(&mut self, item: Outbound, profiles: Profiles<'_>) -> Vec<Step> {
        match item {
            Outbound::PubAck(ack) => {
                let timestamp = self.pending.remove(&ack.packet_id).unwrap_or_default();
                if ack.code == 0 {
                    vec![self.system(0, "", timestamp, "")]
                } else {
                    let code = Code::from_u32(ack.code).unwrap_or(Code::ServerError);
                    vec![self.failed(code, &ack.text, timestamp)]
                }
            }
            Outbound::Deliver { message, .. } => self.deliver(&message, profiles),
            Outbound::QueryAck(q) => {
                if q.code != 0 {
                    // Only the dialect's own syncs are asked; a failed one is retried by the
                    // next connection.
                    let code = Code::from_u32(q.code).unwrap_or(Code::ServerError);
                    return vec![self.failed(code, &q.text, Value::from(""))];
                }
                let mut steps = Vec::new();
                let mut last = 0;
                for m in &q.messages {
                    last = last.max(m.inbox_seq());
                    steps.extend(self.deliver(m, profiles));
                }
                if q.has_more && last > 0 {
                    steps.push(self.sync(last));
                }
                steps
            }
            // Typing, rooms and the rest have no place in the seed.
            _ => Vec::new(),
        }
    }

    fn goodbye(&mut self, code: Code) -> Option<WireOut> {
        match self.failed(code, code.text(), Value::from("")) {
            Step::Send(frame) => Some(frame),
            _ => None,
        }
    }
}

fn frame(v: Value) -> WireOut {
    WireOut::Text(v.to_string())
}

/// An id as the seed writes it: a number when the Tidings id is one, else the text.
fn id_value(id: &str) -> Value {
    match numeric_id(id) {
        0 => Value::from(id),
        n => Value::from(n),
    }
}

/// An id the client sent (number or text) as a Tidings id.
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// FNV-1a over the parts, each followed by a separator byte.
fn digest(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(steps: &[Step]) -> Vec<Value> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Send(WireOut::Text(t)) => serde_json::from_str(t).ok(),
                _ => None,
            })
            .collect()
    }

    fn connected() -> Seed003 {
        let mut d = Seed003::new("tok".into());
        let open = d.open();
        assert!(
            matches!(&open[..], [Step::Connect(c)] if c.token == "tok" && c.device_id == DEVICE_ID)
        );
        let info = ConnectInfo {
            user_id: "7".into(),
            session_id: "s".into(),
            heartbeat_ms: 30_000,
            server_time: 0,
            cursor: 4,
            inbox_seq: 9,
        };
        let steps = d.connected(Ok(&info));
        assert!(matches!(&steps[..], [Step::Sync { after: 4, .. }]));
        d
    }

    #[test]
    fn a_send_becomes_a_private_text_publish_and_a_resend_has_the_same_id() {
        let mut d = connected();
        let req = r#"{"fromId":7,"toId":8,"type":0,"content":"hi","timestamp":"1589790567","Describe":""}"#;
        let first = d.inbound(WireIn::Text(req));
        let second = d.inbound(WireIn::Text(req));
        let (Step::Publish { send: a, .. }, Step::Publish { send: b, .. }) =
            (&first[0], &second[0])
        else {
            panic!("not publishes: {first:?}");
        };
        assert_eq!(a.target_id, "8");
        assert_eq!(a.content, r#"{"text":"hi"}"#);
        assert_eq!(a.client_msg_id, b.client_msg_id);
    }

    #[test]
    fn another_users_from_id_is_refused() {
        let mut d = connected();
        let steps = d.inbound(WireIn::Text(
            r#"{"fromId":9,"toId":8,"type":0,"content":"x"}"#,
        ));
        let frames = text(&steps);
        assert_eq!(frames[0]["type"], 1);
        assert_eq!(frames[0]["toId"], 7);
    }

    #[test]
    fn read_confirmations_take_numbers_or_numeric_strings() {
        let mut d = connected();
        let steps = d.inbound(WireIn::Text(
            r#"{"fromId":7,"toId":0,"type":1,"content":"[12,\"13\"]"}"#,
        ));
        assert!(matches!(&steps[..], [Step::ReadInbox(s)] if s == &[12, 13]));
        let bad = d.inbound(WireIn::Text(r#"{"type":1,"content":"12,13"}"#));
        assert_eq!(text(&bad)[0]["type"], 1);
    }

    #[test]
    fn garbage_gets_a_type_1_answer() {
        let mut d = connected();
        for bad in ["{", r#"{"type":5}"#, "[]"] {
            let frames = text(&d.inbound(WireIn::Text(bad)));
            assert_eq!(frames[0]["type"], 1, "{bad}");
        }
    }
}
