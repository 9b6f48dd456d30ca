//! Seed 001: JSON packets `{cmd, data}` in text frames at `/json/ws`, and messages sent over
//! HTTP at `POST /json/message`.
//!
//! The client authenticates (`AUTH`), sends (`MESSAGE`), confirms what it received
//! (`MESSAGE_CALLBACK`), registers a browser push subscription (`REGISTER_FCM`) and pings
//! (`PING`). The server answers `AUTH`, delivers `MESSAGE`s (sent again until confirmed),
//! reports how a sent message reached each target (`MESSAGE_REPLY`), says things (`INFO`) and
//! answers pings (`PONG`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tidings_engine::{ConnectInfo, ConnectRequest, Delivered, Outbound, Refusal, SendRequest};
use tidings_proto::{Code, conversation_type};

use crate::{Dialect, Profiles, Receipt, Step, WireIn, WireOut, plain_text};

/// The device id of every seed-001 connection: the seed's server keeps one connection per
/// name (a new one takes over), and the engine keeps this device's cursor.
pub const DEVICE_ID: &str = "seed001";
/// Inbox entries asked for per sync page.
const PAGE: u32 = 100;
/// Delivered messages awaiting their MESSAGE_CALLBACK that are remembered (the oldest are
/// forgotten first; they come again on the next connection).
const MID_MEMORY: usize = 4096;

/// `MESSAGE_REPLY` statuses.
pub mod status {
    /// Stored, waiting for the target to connect.
    pub const READY: &str = "ready";
    /// The target's device confirmed it.
    pub const OK: &str = "ok";
    /// Sent to the target's connection, not confirmed yet.
    pub const WAIT: &str = "wait";
    /// Refused: the target never gets it.
    pub const NO: &str = "no";
    /// The target was offline with a push subscription: a notification is on its way.
    pub const FCM_WAIT: &str = "fcm-wait";
    /// The push service accepted the notification.
    pub const FCM_OK: &str = "fcm-ok";
    /// Notified, and then a device of the target confirmed the message (the seed's spelling).
    pub const FCM_OK_CONFIRM: &str = "fcm-ok-comfirm";
}

#[derive(Deserialize)]
struct Packet {
    cmd: String,
    #[serde(default)]
    data: Value,
}

/// A message the client sent: where to, and its id.
struct Sent {
    client_msg_id: String,
    conversation_type: u32,
    target: String,
}

/// One seed-001 connection.
pub struct Seed001 {
    fcm_server_key: Option<String>,
    token: String,
    name: String,
    group: String,
    user: String,
    session_id: String,
    /// The device's cursor at connecting: the first sync starts there.
    cursor: u64,
    authed: bool,
    next_packet: u32,
    next_query: u32,
    next_message: u64,
    /// PUBLISH packet id -> the message.
    pending: HashMap<u32, Sent>,
    /// Client message id -> (mid, report keys) of a stored message awaiting its report.
    reports: HashMap<String, (String, u32, String)>,
    /// mid -> inbox seq of a delivered message awaiting its MESSAGE_CALLBACK.
    mids: HashMap<String, u64>,
    /// The same, by inbox seq, to forget the oldest first.
    mid_order: BTreeMap<u64, String>,
    /// Inbox seqs written (a message can come by both the first sync and a push).
    sent: BTreeSet<u64>,
}

/// What `MESSAGE` and the HTTP route carry.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageData {
    #[serde(default)]
    pub send_type: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub message: Option<Body>,
}

/// A message's body.
#[derive(Deserialize, Default)]
pub struct Body {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub desp: String,
    #[serde(default)]
    pub extra: Option<Value>,
}

fn packet(cmd: &str, data: Value) -> Step {
    Step::Send(WireOut::Text(
        json!({ "cmd": cmd, "data": data }).to_string(),
    ))
}

fn info(code: Code, detail: &str) -> Step {
    let text = if detail.is_empty() || detail == code.text() {
        format!("{} {}", code.as_u32(), code.text())
    } else {
        format!("{} {}: {detail}", code.as_u32(), code.text())
    };
    packet("INFO", Value::from(text))
}

fn auth(code: u32, msg: &str) -> Step {
    packet("AUTH", json!({ "code": code, "msg": msg }))
}

/// A send as the engine takes it, from `MESSAGE` data (`default_group` when a group send has
/// no target); `via_http` marks messages sent over HTTP, which receivers see as
/// `from.method = "http"`.
pub fn send_request(
    data: MessageData,
    client_msg_id: String,
    default_group: &str,
    via_http: bool,
) -> Result<SendRequest, Refusal> {
    let conversation = match data.send_type.as_str() {
        "personal" => conversation_type::PRIVATE,
        "group" => conversation_type::GROUP,
        _ => {
            return Err(Refusal::new(
                Code::UnknownConversationType,
                "sendType is \"personal\" or \"group\"",
            ));
        }
    };
    let target = if data.target.is_empty() && conversation == conversation_type::GROUP {
        default_group.to_string()
    } else {
        data.target
    };
    if target.is_empty() {
        return Err(Refusal::new(Code::InvalidTarget, "target is missing"));
    }
    let body = data.message.unwrap_or_default();
    let mut content = Map::new();
    content.insert("text".into(), Value::from(body.text));
    if !body.desp.is_empty() {
        content.insert("desp".into(), Value::from(body.desp));
    }
    match body.extra {
        None | Some(Value::Null) => {}
        Some(extra @ Value::Object(_)) => {
            content.insert("extra".into(), extra);
        }
        Some(_) => {
            return Err(Refusal::new(
                Code::ContentInvalid,
                "message.extra must be an object",
            ));
        }
    }
    if via_http {
        content.insert("method".into(), Value::from("http"));
    }
    Ok(SendRequest {
        client_msg_id,
        conversation_type: conversation,
        target_id: target,
        msg_type: "text".into(),
        content: Value::Object(content).to_string(),
        ..Default::default()
    })
}

impl Seed001 {
    /// A connection; `fcm_server_key` is the server's VAPID public key, when push is on.
    pub fn new(fcm_server_key: Option<String>) -> Seed001 {
        Seed001 {
            fcm_server_key,
            token: String::new(),
            name: String::new(),
            group: String::new(),
            user: String::new(),
            session_id: String::new(),
            cursor: 0,
            authed: false,
            next_packet: 1,
            next_query: 1,
            next_message: 1,
            pending: HashMap::new(),
            reports: HashMap::new(),
            mids: HashMap::new(),
            mid_order: BTreeMap::new(),
            sent: BTreeSet::new(),
        }
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

    /// The successful AUTH, then what the user was sent since this device's last connection.
    fn authenticated(&mut self, cursor: u64) -> Vec<Step> {
        self.authed = true;
        let mut data = json!({
            "code": 200,
            "auth": self.token,
            "msg": "Successful authentication",
        });
        if let Some(key) = &self.fcm_server_key {
            data["fcmServerKey"] = Value::from(key.clone());
        }
        vec![packet("AUTH", data), self.sync(cursor)]
    }

    fn message(&mut self, data: Value) -> Vec<Step> {
        let client_msg_id = format!("s1-{}-{}", self.session_id, self.next_message);
        self.next_message += 1;
        let parsed: Result<MessageData, _> = serde_json::from_value(data);
        let request = parsed
            .map_err(|e| Refusal::new(Code::MalformedFrame, format!("not MESSAGE data: {e}")))
            .and_then(|d| send_request(d, client_msg_id.clone(), &self.group, false));
        match request {
            Ok(send) => {
                let packet_id = self.next_packet;
                self.next_packet = self.next_packet.wrapping_add(1).max(1);
                self.pending.insert(
                    packet_id,
                    Sent {
                        client_msg_id: client_msg_id.clone(),
                        conversation_type: send.conversation_type,
                        target: send.target_id.clone(),
                    },
                );
                vec![
                    Step::Watch { client_msg_id },
                    Step::Publish { packet_id, send },
                ]
            }
            Err(refusal) => vec![info(refusal.code, &refusal.detail)],
        }
    }

    /// A browser's push subscription, as `PushSubscription.toJSON()` gives it.
    fn register_fcm(&mut self, data: &Value) -> Vec<Step> {
        if self.fcm_server_key.is_none() {
            return vec![packet(
                "INFO",
                Value::from("this server does not send push notifications"),
            )];
        }
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let keys = data.get("keys").unwrap_or(&Value::Null);
        match (
            field(data, "endpoint"),
            field(keys, "p256dh"),
            field(keys, "auth"),
        ) {
            (Some(endpoint), Some(p256dh), Some(auth)) => vec![Step::RegisterPush {
                endpoint,
                p256dh,
                auth,
            }],
            _ => vec![info(
                Code::InvalidPushSubscription,
                "REGISTER_FCM needs data.endpoint, data.keys.p256dh and data.keys.auth",
            )],
        }
    }

    fn callback(&mut self, data: &Value) -> Vec<Step> {
        let Some(mid) = data.get("mid").and_then(Value::as_str) else {
            return vec![info(
                Code::MalformedFrame,
                "MESSAGE_CALLBACK needs data.mid",
            )];
        };
        match self.mids.remove(mid) {
            Some(seq) => {
                self.mid_order.remove(&seq);
                vec![Step::Ack(seq)]
            }
            None => vec![info(
                Code::MessageNotFound,
                &format!("no message {mid} awaits a callback here"),
            )],
        }
    }

    /// A delivered message as a MESSAGE packet, or its acknowledgement when the seed does not
    /// show it.
    fn deliver(&mut self, m: &Delivered, dup: bool) -> Vec<Step> {
        let seq = m.inbox_seq();
        if !self.sent.insert(seq) && !dup {
            return Vec::new();
        }
        if self.sent.len() > MID_MEMORY {
            self.sent.pop_first();
        }
        let send_type = match m.conversation_type() {
            conversation_type::PRIVATE | conversation_type::SYSTEM => "personal",
            conversation_type::GROUP => "group",
            _ => return vec![Step::Ack(seq)],
        };
        if crate::is_event(m) || m.sender_id() == self.user {
            return vec![Step::Ack(seq)];
        }
        let content: Value = serde_json::from_str(m.content()).unwrap_or(Value::Null);
        let field = |k: &str| content.get(k).and_then(Value::as_str).unwrap_or_default();
        let (text, desp, extra) = if m.msg_type() == "text" {
            let extra = content.get("extra").cloned().unwrap_or_else(|| json!({}));
            (field("text").to_string(), field("desp").to_string(), extra)
        } else {
            let extra = json!({ "type": m.msg_type(), "content": content });
            (plain_text(m), String::new(), extra)
        };
        let method = if field("method") == "http" {
            "http"
        } else {
            "websocket"
        };
        let target = if send_type == "group" {
            m.target_id()
        } else {
            self.user.as_str()
        };
        let mid = m.uid().to_string();
        if self.mids.insert(mid.clone(), seq).is_none() {
            self.mid_order.insert(seq, mid.clone());
        }
        if self.mid_order.len() > MID_MEMORY
            && let Some((_, oldest)) = self.mid_order.pop_first()
        {
            self.mids.remove(&oldest);
        }
        vec![packet(
            "MESSAGE",
            json!({
                "sendType": send_type,
                "target": target,
                "from": { "method": method, "name": m.sender_id() },
                "mid": mid,
                "message": { "text": text, "desp": desp, "extra": extra },
            }),
        )]
    }
}

impl Dialect for Seed001 {
    type Steps = Vec<Step>;

    fn open(&mut self) -> Vec<Step> {
        Vec::new()
    }

    fn connected(&mut self, outcome: Result<&ConnectInfo, &Refusal>) -> Vec<Step> {
        match outcome {
            Ok(info) => {
                self.user = info.user_id.clone();
                self.session_id = info.session_id.clone();
                self.cursor = info.cursor;
                if !self.name.is_empty() && self.name != self.user {
                    return vec![
                        auth(403, "name is not the user the token names"),
                        Step::Close(Code::Unauthorized),
                    ];
                }
                if !self.group.is_empty() {
                    return vec![Step::JoinGroup(self.group.clone())];
                }
                self.authenticated(info.cursor)
            }
            Err(refusal) => vec![
                auth(
                    403,
                    &format!("{} {}", refusal.code.as_u32(), refusal.text()),
                ),
                Step::Close(refusal.code),
            ],
        }
    }

    fn group_joined(&mut self, _group: &str, outcome: Result<(), &Refusal>) -> Vec<Step> {
        match outcome {
            Ok(()) => self.authenticated(self.cursor),
            Err(refusal) => vec![
                auth(
                    403,
                    &format!("{} {}", refusal.code.as_u32(), refusal.text()),
                ),
                Step::Close(refusal.code),
            ],
        }
    }

    fn inbound(&mut self, frame: WireIn<'_>) -> Vec<Step> {
        let WireIn::Text(text) = frame else {
            return vec![info(Code::MalformedFrame, "packets are JSON text")];
        };
        let p: Packet = match serde_json::from_str(text) {
            Ok(p) => p,
            Err(e) => return vec![info(Code::MalformedFrame, &format!("not a packet: {e}"))],
        };
        match p.cmd.as_str() {
            "PING" => vec![packet_bare("PONG")],
            "AUTH" if self.authed || !self.user.is_empty() => {
                vec![info(Code::AlreadyConnected, "")]
            }
            "AUTH" => {
                let field = |k: &str| {
                    p.data
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                self.token = field("token");
                self.name = field("name");
                self.group = field("group");
                if self.token.is_empty() {
                    return vec![auth(403, "data.token is missing")];
                }
                vec![Step::Connect(ConnectRequest {
                    token: self.token.clone(),
                    device_id: DEVICE_ID.into(),
                    platform: "seed001".into(),
                })]
            }
            _ if !self.authed => vec![auth(401, "not authenticated: send AUTH first")],
            "MESSAGE" => self.message(p.data),
            "MESSAGE_CALLBACK" => self.callback(&p.data),
            "REGISTER_FCM" => self.register_fcm(&p.data),
            other => vec![info(
                Code::UnknownFrameKind,
                &format!("unknown cmd {other:?}"),
            )],
        }
    }

    fn outbound(&mut self, item: Outbound, _profiles: Profiles<'_>) -> Vec<Step> {
        match item {
            Outbound::PubAck(ack) => {
                let Some(sent) = self.pending.remove(&ack.packet_id) else {
                    return Vec::new();
                };
                if ack.code == 0 {
                    self.reports.insert(
                        sent.client_msg_id.clone(),
                        (ack.uid.clone(), sent.conversation_type, sent.target.clone()),
                    );
                    vec![Step::Track {
                        client_msg_id: sent.client_msg_id,
                        uid: ack.uid,
                        conversation_type: sent.conversation_type,
                        target: sent.target,
                    }]
                } else {
                    let code = Code::from_u32(ack.code).unwrap_or(Code::ServerError);
                    vec![
                        Step::Track {
                            client_msg_id: sent.client_msg_id,
                            uid: String::new(),
                            conversation_type: sent.conversation_type,
                            target: sent.target.clone(),
                        },
                        packet("INFO", Value::from(format!("{} {}", ack.code, ack.text))),
                        packet(
                            "MESSAGE_REPLY",
                            json!({ "mid": "", "status": { sent.target: status::NO }, "code": code.as_u32() }),
                        ),
                    ]
                }
            }
            Outbound::Deliver { message, dup } => self.deliver(&message, dup),
            Outbound::QueryAck(q) => {
                if q.code != 0 {
                    return vec![info(
                        Code::from_u32(q.code).unwrap_or(Code::ServerError),
                        &q.text,
                    )];
                }
                let mut steps = Vec::new();
                let mut last = 0;
                for m in &q.messages {
                    last = last.max(m.inbox_seq());
                    steps.extend(self.deliver(m, false));
                }
                if q.has_more && last > 0 {
                    steps.push(self.sync(last));
                }
                steps
            }
            _ => Vec::new(),
        }
    }

    fn push_registered(&mut self, outcome: Result<(), &Refusal>) -> Vec<Step> {
        match outcome {
            Ok(()) => Vec::new(),
            Err(refusal) => vec![info(refusal.code, &refusal.detail)],
        }
    }

    fn receipts(&mut self, client_msg_id: &str, receipts: &[Receipt]) -> Vec<Step> {
        let Some((mid, _, _)) = self.reports.remove(client_msg_id) else {
            return Vec::new();
        };
        let statuses: Map<String, Value> = receipts
            .iter()
            .map(|r| {
                let s = match (r.received, r.pushed) {
                    (true, Some(true)) => status::FCM_OK_CONFIRM,
                    (true, _) => status::OK,
                    (false, Some(true)) => status::FCM_OK,
                    (false, _) if r.online => status::WAIT,
                    (false, _) if r.subscribed => status::FCM_WAIT,
                    (false, _) => status::READY,
                };
                (r.user.clone(), Value::from(s))
            })
            .collect();
        vec![packet(
            "MESSAGE_REPLY",
            json!({ "mid": mid, "status": statuses }),
        )]
    }

    fn goodbye(&mut self, code: Code) -> Option<WireOut> {
        match info(code, "") {
            Step::Send(frame) => Some(frame),
            _ => None,
        }
    }
}

fn packet_bare(cmd: &str) -> Step {
    Step::Send(WireOut::Text(json!({ "cmd": cmd }).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(steps: &[Step]) -> Vec<Value> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Send(WireOut::Text(t)) => serde_json::from_str(t).ok(),
                _ => None,
            })
            .collect()
    }

    fn info(user: &str) -> ConnectInfo {
        ConnectInfo {
            user_id: user.into(),
            session_id: "9".into(),
            heartbeat_ms: 30_000,
            server_time: 0,
            cursor: 3,
            inbox_seq: 5,
        }
    }

    fn authed() -> Seed001 {
        let mut d = Seed001::new(Some("KEY".into()));
        let steps = d.inbound(WireIn::Text(
            r#"{"cmd":"AUTH","data":{"token":"t","name":"u1","group":""}}"#,
        ));
        assert!(
            matches!(&steps[..], [Step::Connect(c)] if c.token == "t" && c.device_id == DEVICE_ID)
        );
        let steps = d.connected(Ok(&info("u1")));
        let auth = &packets(&steps)[0];
        assert_eq!(auth["data"]["code"], 200);
        assert_eq!(auth["data"]["fcmServerKey"], "KEY");
        assert!(matches!(steps.last(), Some(Step::Sync { after: 3, .. })));
        d
    }

    #[test]
    fn only_ping_and_auth_come_before_auth() {
        let mut d = Seed001::new(None);
        let pong = packets(&d.inbound(WireIn::Text(r#"{"cmd":"PING"}"#)));
        assert_eq!(pong[0], json!({ "cmd": "PONG" }));
        let early = packets(&d.inbound(WireIn::Text(r#"{"cmd":"MESSAGE","data":{}}"#)));
        assert_eq!(early[0]["data"]["code"], 401);
    }

    #[test]
    fn a_name_that_is_not_the_tokens_user_is_refused() {
        let mut d = Seed001::new(None);
        d.inbound(WireIn::Text(
            r#"{"cmd":"AUTH","data":{"token":"t","name":"someone","group":""}}"#,
        ));
        let steps = d.connected(Ok(&info("u1")));
        assert_eq!(packets(&steps)[0]["data"]["code"], 403);
        assert!(matches!(steps.last(), Some(Step::Close(_))));
    }

    #[test]
    fn a_group_named_at_auth_is_joined_before_the_answer() {
        let mut d = Seed001::new(None);
        d.inbound(WireIn::Text(
            r#"{"cmd":"AUTH","data":{"token":"t","name":"u1","group":"team"}}"#,
        ));
        let steps = d.connected(Ok(&info("u1")));
        assert!(matches!(&steps[..], [Step::JoinGroup(g)] if g == "team"));
        let steps = d.group_joined("team", Ok(()));
        assert_eq!(packets(&steps)[0]["data"]["code"], 200);

        let mut d = Seed001::new(None);
        d.inbound(WireIn::Text(
            r#"{"cmd":"AUTH","data":{"token":"t","name":"u1","group":"staff"}}"#,
        ));
        d.connected(Ok(&info("u1")));
        let steps = d.group_joined("staff", Err(&Refusal::from(Code::NotInGroup)));
        let answer = &packets(&steps)[0]["data"];
        assert_eq!(answer["code"], 403);
        assert!(answer["msg"].as_str().unwrap().starts_with("22406 "));
        assert!(matches!(steps.last(), Some(Step::Close(Code::NotInGroup))));
        // Nothing but AUTH and PING is taken after a refused AUTH.
        let early = packets(&d.inbound(WireIn::Text(r#"{"cmd":"MESSAGE","data":{}}"#)));
        assert_eq!(early[0]["data"]["code"], 401);
    }

    #[test]
    fn a_message_is_watched_before_it_is_published() {
        let mut d = authed();
        let steps = d.inbound(WireIn::Text(
            r#"{"cmd":"MESSAGE","data":{"sendType":"personal","target":"u2","message":{"text":"hi","desp":"d","extra":{"k":1}}}}"#,
        ));
        let (Step::Watch { client_msg_id: w }, Step::Publish { send, .. }) = (&steps[0], &steps[1])
        else {
            panic!("watch, then publish: {steps:?}");
        };
        assert_eq!(w, &send.client_msg_id);
        let content: Value = serde_json::from_str(&send.content).unwrap();
        assert_eq!(
            content,
            json!({ "text": "hi", "desp": "d", "extra": { "k": 1 } })
        );
    }

    #[test]
    fn statuses_follow_what_happened_to_each_target() {
        let mut d = authed();
        d.reports.insert("c".into(), ("mid".into(), 1, "g".into()));
        let r = |user: &str, online, received, subscribed, pushed| Receipt {
            user: user.into(),
            online,
            received,
            subscribed,
            pushed,
        };
        let steps = d.receipts(
            "c",
            &[
                r("a", true, true, false, None),
                r("b", true, false, false, None),
                r("c", false, false, false, None),
                r("d", false, false, true, None),
                r("e", false, false, true, Some(true)),
                r("f", false, true, true, Some(true)),
            ],
        );
        let reply = &packets(&steps)[0];
        assert_eq!(reply["cmd"], "MESSAGE_REPLY");
        assert_eq!(
            reply["data"]["status"],
            json!({ "a": "ok", "b": "wait", "c": "ready", "d": "fcm-wait", "e": "fcm-ok", "f": "fcm-ok-comfirm" })
        );
        // One report per message.
        assert!(d.receipts("c", &[]).is_empty());
    }

    #[test]
    fn http_sends_are_marked_and_checked() {
        let data = |v: Value| serde_json::from_value::<MessageData>(v).unwrap();
        let send = send_request(
            data(json!({ "sendType": "group", "message": { "text": "x" } })),
            "id".into(),
            "g1",
            true,
        )
        .unwrap();
        assert_eq!(send.target_id, "g1");
        assert!(send.content.contains(r#""method":"http""#));
        let bad = send_request(
            data(
                json!({ "sendType": "personal", "target": "u", "message": { "text": "x", "extra": 3 } }),
            ),
            "id".into(),
            "",
            false,
        );
        assert_eq!(bad.unwrap_err().code, Code::ContentInvalid);
        let bad = send_request(
            data(json!({ "sendType": "all", "target": "u" })),
            "id".into(),
            "",
            false,
        );
        assert_eq!(bad.unwrap_err().code, Code::UnknownConversationType);
    }
}
