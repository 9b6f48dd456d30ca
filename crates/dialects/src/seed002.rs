//! Seed 002: rooms as JSON text frames at `/ws/room?token=TOKEN`; a seed room is a Tidings
//! chatroom.
//!
//! The client sends `{msgType, textData: {dataType, data}, extendFields}`: msgType 1 is a
//! heartbeat (activity, never answered), msgType 2 joins (dataType 1) or leaves (dataType 2) the
//! room `data.roomNumber`, msgType 3 (dataType 3, this server's reading: the seed shows no chat)
//! sends `data.content` to the room. The server answers `{status, msg, resultBody}`: status 1
//! with `resultBody` `{msgType: 3, textData: {dataType, data}}`, or status 0 with `resultBody`
//! `""` and the Tidings code in `extendFields.code`. A join answers the joiner with the room and
//! every member online, and tells the others only of the new member (`members` null); a leave,
//! or a connection that ends, tells the others (and the leaver) of the member who left.
//! `docs/dialects.md` lists the readings chosen where the seed is silent.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use tidings_engine::{
    ChatroomOut, ChatroomQuery, ConnectInfo, ConnectRequest, Delivered, Outbound, QueryAckOut,
    Refusal, SendRequest, UserOut,
};
use tidings_proto::{CHATROOM_EVENT_TYPE, Code, conversation_type};

use crate::{Dialect, Profiles, Step, WireIn, WireOut, plain_text, text_content};

/// The seed's answer to a join of a room the user is in from another page or client.
pub const JOINED_ELSEWHERE: &str = "连接被拒,您已在其他页面或客户端加入该房间,请先将其退出!";
/// The seed's heartbeat interval: 2 minutes.
pub const HEARTBEAT_MS: u64 = 120_000;
/// A client silent for this many heartbeat intervals is dropped (as on the native protocol).
pub const SILENT_INTERVALS: u64 = 3;
/// Members asked for per page of a room's member list.
const MEMBERS_PAGE: u32 = 500;
/// Profiles asked for per lookup.
const LOOKUP_MAX: usize = 100;

/// Message types (the seed's MsgTypeEnum).
mod msg_type {
    pub const HEARTBEAT: i64 = 1;
    pub const INIT: i64 = 2;
    pub const CHAT: i64 = 3;
    pub const SIGN_OFF: i64 = 4;
    pub const FRIENDS: i64 = 5;
}

/// Data types (the seed's DataTypeEnum, and 3 for chat).
mod data_type {
    pub const JOIN: i64 = 1;
    pub const LEAVE: i64 = 2;
    pub const CHAT: i64 = 3;
}

/// One seed-002 connection.
pub struct Seed002 {
    token: String,
    heartbeat_ms: u64,
    user: String,
    session: String,
    next_query: u32,
    next_packet: u32,
    next_tag: u64,
    /// The chatroom queries asked and not yet answered.
    queries: HashMap<u32, Query>,
    /// Chat messages sent and not yet answered, by packet id.
    chats: HashMap<u32, Chat>,
    /// Profile lookups of a member list being gathered: tag -> (room, gathering).
    lookups: HashMap<u64, (String, u64)>,
    /// The rooms this connection is in.
    rooms: HashMap<String, RoomView>,
    next_gathering: u64,
}

enum Query {
    Join(String),
    Members { room: String, gathering: u64 },
    Quit(String),
}

struct Chat {
    room: String,
    content: String,
}

/// A room as this connection shows it.
struct RoomView {
    name: String,
    desc: String,
    created: i64,
    owner_id: String,
    /// The owner as a Member, or null.
    owner: Value,
    /// The member list being gathered for the join's answer.
    gathering: Option<Gathering>,
    /// Members the join's answer listed whose own join notice has not come yet: it is not
    /// shown again when it comes.
    listed: HashSet<String>,
}

struct Gathering {
    id: u64,
    /// Members in the order they joined.
    ids: Vec<String>,
    profiles: HashMap<String, UserOut>,
    /// Profile lookups not yet answered.
    waiting: usize,
    /// Join and leave notices that came meanwhile: `(joined, users)`.
    held: Vec<(bool, Vec<Value>)>,
}

/// A join or leave the room's stream reported.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Join(Vec<String>),
    Leave(Vec<String>),
    Destroyed,
    Other,
}

impl Seed002 {
    /// A connection whose URL carried `token`, with the heartbeat interval clients keep.
    pub fn new(token: String, heartbeat_ms: u64) -> Seed002 {
        Seed002 {
            token,
            heartbeat_ms,
            user: String::new(),
            session: String::new(),
            next_query: 1,
            next_packet: 1,
            next_tag: 1,
            queries: HashMap::new(),
            chats: HashMap::new(),
            lookups: HashMap::new(),
            rooms: HashMap::new(),
            next_gathering: 1,
        }
    }

    fn query(&mut self, pending: Query, query: ChatroomQuery) -> Step {
        let query_id = self.next_query;
        self.next_query = self.next_query.wrapping_add(1).max(1);
        self.queries.insert(query_id, pending);
        Step::Chatroom { query_id, query }
    }

    fn init(&mut self, text_data: &Value) -> Vec<Step> {
        let kind = text_data.get("dataType").and_then(Value::as_i64);
        if !matches!(kind, Some(data_type::JOIN | data_type::LEAVE)) {
            return vec![refused(
                Code::UnknownFrameKind,
                "the dataType of msgType 2 is 1 (join a room) or 2 (leave it)",
            )];
        }
        let data = &text_data["data"];
        if self.foreign(data) {
            return vec![refused(
                Code::Unauthorized,
                "from.id is not the user the token names",
            )];
        }
        let Some(room) = room_number(data) else {
            return vec![refused(Code::MalformedFrame, "data.roomNumber is missing")];
        };
        if kind == Some(data_type::JOIN) {
            let query = ChatroomQuery::JoinAlone {
                room: room.clone(),
                recent: 0,
            };
            vec![self.query(Query::Join(room), query)]
        } else {
            let query = ChatroomQuery::Quit { room: room.clone() };
            vec![self.query(Query::Quit(room), query)]
        }
    }

    /// Whether `data.from.id` names another user than the token's (it may be left out).
    fn foreign(&self, data: &Value) -> bool {
        let id = id_text(&data["from"]["id"]);
        !id.is_empty() && id != self.user
    }

    fn chat(&mut self, text_data: &Value) -> Vec<Step> {
        match text_data.get("dataType").and_then(Value::as_i64) {
            None | Some(data_type::CHAT) => {}
            Some(_) => {
                return vec![refused(
                    Code::UnknownFrameKind,
                    "the dataType of msgType 3 is 3 (a chat message)",
                )];
            }
        }
        let data = &text_data["data"];
        if self.foreign(data) {
            return vec![refused(
                Code::Unauthorized,
                "from.id is not the user the token names",
            )];
        }
        let Some(room) = room_number(data) else {
            return vec![refused(Code::MalformedFrame, "data.roomNumber is missing")];
        };
        let Some(content) = data.get("content").and_then(Value::as_str) else {
            return vec![refused(Code::MalformedFrame, "data.content is not text")];
        };
        let packet_id = self.next_packet;
        self.next_packet = self.next_packet.wrapping_add(1).max(1);
        self.chats.insert(
            packet_id,
            Chat {
                room: room.clone(),
                content: content.to_string(),
            },
        );
        vec![Step::Publish {
            packet_id,
            send: SendRequest {
                // The seed has no message id of its own: each chat frame is a new message.
                client_msg_id: format!("s2-{}-{packet_id}", self.session),
                conversation_type: conversation_type::CHATROOM,
                target_id: room,
                msg_type: "text".into(),
                content: text_content(content),
                ..Default::default()
            },
        }]
    }

    fn answered(&mut self, q: QueryAckOut, profiles: Profiles<'_>) -> Vec<Step> {
        let Some(pending) = self.queries.remove(&q.query_id) else {
            return Vec::new();
        };
        if q.code != 0 {
            if let Query::Members { room, gathering } = &pending {
                self.drop_gathering(room, *gathering);
            }
            if q.code == Code::ChatroomJoinedElsewhere.as_u32() {
                return vec![send(json!({
                    "status": 0,
                    "msg": JOINED_ELSEWHERE,
                    "resultBody": "",
                }))];
            }
            let code = Code::from_u32(q.code).unwrap_or(Code::ServerError);
            return vec![refused(code, &q.text)];
        }
        match pending {
            Query::Join(room) => match q.chatrooms.first() {
                Some(out) => self.joined(room, out),
                None => vec![refused(Code::ServerError, Code::ServerError.text())],
            },
            Query::Members { room, gathering } => {
                let Some(g) = self.gathering(&room, gathering) else {
                    return Vec::new();
                };
                g.ids.extend(q.members.into_iter().map(|m| m.user));
                if q.next_page_token.is_empty() {
                    self.look_up(&room, gathering)
                } else {
                    vec![self.members_page(room, gathering, q.next_page_token)]
                }
            }
            Query::Quit(room) => {
                let view = match self.rooms.remove(&room) {
                    Some(v) => v,
                    None => match q.chatrooms.first() {
                        Some(out) => view_of(&room, out),
                        None => return Vec::new(),
                    },
                };
                let me = member(&self.user, profile(profiles, &self.user));
                vec![left_frame(&room, &view, me)]
            }
        }
    }

    /// The join was answered: the member list is gathered next.
    fn joined(&mut self, room: String, out: &ChatroomOut) -> Vec<Step> {
        let gathering = self.next_gathering;
        self.next_gathering += 1;
        let mut view = view_of(&room, out);
        view.gathering = Some(Gathering {
            id: gathering,
            ids: Vec::new(),
            profiles: HashMap::new(),
            waiting: 0,
            held: Vec::new(),
        });
        self.rooms.insert(room.clone(), view);
        vec![self.members_page(room, gathering, String::new())]
    }

    fn members_page(&mut self, room: String, gathering: u64, page_token: String) -> Step {
        let query = ChatroomQuery::Members {
            room: room.clone(),
            limit: MEMBERS_PAGE,
            page_token,
        };
        self.query(Query::Members { room, gathering }, query)
    }

    fn gathering(&mut self, room: &str, id: u64) -> Option<&mut Gathering> {
        self.rooms
            .get_mut(room)
            .and_then(|v| v.gathering.as_mut())
            .filter(|g| g.id == id)
    }

    /// A member list that cannot be had: the room is shown without it.
    fn drop_gathering(&mut self, room: &str, id: u64) {
        if self.gathering(room, id).is_some()
            && let Some(v) = self.rooms.get_mut(room)
        {
            v.gathering = None;
        }
    }

    /// The member list is complete: their profiles (and the owner's) are looked up.
    fn look_up(&mut self, room: &str, gathering: u64) -> Vec<Step> {
        let Some(view) = self.rooms.get(room) else {
            return Vec::new();
        };
        let Some(g) = &view.gathering else {
            return Vec::new();
        };
        let mut wanted: Vec<String> = g.ids.iter().filter(|u| !u.is_empty()).cloned().collect();
        if !view.owner_id.is_empty() && !wanted.contains(&view.owner_id) {
            wanted.push(view.owner_id.clone());
        }
        let chunks: Vec<Vec<String>> = wanted.chunks(LOOKUP_MAX).map(<[_]>::to_vec).collect();
        if chunks.is_empty() {
            return self.gathered(room);
        }
        let mut steps = Vec::new();
        for users in chunks {
            let tag = self.next_tag;
            self.next_tag += 1;
            self.lookups.insert(tag, (room.to_string(), gathering));
            steps.push(Step::Users { tag, users });
        }
        if let Some(g) = self.gathering(room, gathering) {
            g.waiting = steps.len();
        }
        steps
    }

    /// The join's answer, once every profile is in; then the changes that came meanwhile.
    fn gathered(&mut self, room: &str) -> Vec<Step> {
        let Some(view) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let Some(g) = view.gathering.take() else {
            return Vec::new();
        };
        if !view.owner_id.is_empty() {
            view.owner = member(&view.owner_id, g.profiles.get(&view.owner_id));
        }
        let members: Vec<Value> = g
            .ids
            .iter()
            .map(|id| member(id, g.profiles.get(id)))
            .collect();
        let me = member(&self.user, g.profiles.get(&self.user));
        let mut data = room_data(room, view);
        data.insert("members".into(), Value::Array(members));
        data.insert("newJoinMember".into(), me);
        let mut steps = vec![ok_frame(data_type::JOIN, "Join successfully", data)];
        view.listed = g.ids.into_iter().filter(|u| *u != self.user).collect();
        for (joined, users) in g.held {
            for m in users {
                let id = id_text(&m["id"]);
                let listed = view.listed.remove(&id);
                if joined && !listed {
                    steps.push(joined_frame(room, view, m));
                } else if !joined && listed {
                    steps.push(left_frame(room, view, m));
                }
            }
        }
        steps
    }

    /// An item of a room's stream.
    fn room_item(&mut self, room: &str, m: &Delivered, profiles: Profiles<'_>) -> Vec<Step> {
        if !self.rooms.contains_key(room) {
            return Vec::new();
        }
        if m.msg_type() == CHATROOM_EVENT_TYPE {
            return self.changed(room, change(m.content()), profiles);
        }
        if crate::is_event(m) {
            return Vec::new();
        }
        let from = member(m.sender_id(), profile(profiles, m.sender_id()));
        vec![chat_frame(
            from,
            room,
            &plain_text(m),
            m.sent_time(),
            m.uid(),
        )]
    }

    /// A notice of the room's stream: members who joined or left are shown; while the join's
    /// member list is gathered, they wait for it.
    fn changed(&mut self, room: &str, change: Change, profiles: Profiles<'_>) -> Vec<Step> {
        let me = self.user.clone();
        let Some(view) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let (joined, users) = match change {
            Change::Join(users) => (true, users),
            Change::Leave(users) => (false, users),
            Change::Destroyed => {
                self.rooms.remove(room);
                return vec![refused(
                    Code::ChatroomNotFound,
                    &format!("the room {room} was closed"),
                )];
            }
            Change::Other => return Vec::new(),
        };
        let mut steps = Vec::new();
        let mut held = Vec::new();
        let mut out = false;
        for id in users {
            if id == me {
                // The user's own join was answered; their own leave here is a kick, which
                // takes this connection out of the room.
                if !joined {
                    out = true;
                }
                continue;
            }
            let m = member(&id, profile(profiles, &id));
            if view.gathering.is_some() {
                held.push(m);
                continue;
            }
            let listed = view.listed.remove(&id);
            if joined && !listed {
                steps.push(joined_frame(room, view, m));
            } else if !joined {
                steps.push(left_frame(room, view, m));
            }
        }
        if let Some(g) = &mut view.gathering
            && !held.is_empty()
        {
            g.held.push((joined, held));
        }
        if out {
            let m = member(&me, profile(profiles, &me));
            steps.push(left_frame(room, view, m));
            self.rooms.remove(room);
        }
        steps
    }

    fn chat_answered(
        &mut self,
        ack: tidings_engine::PubAckOut,
        profiles: Profiles<'_>,
    ) -> Vec<Step> {
        let Some(chat) = self.chats.remove(&ack.packet_id) else {
            return Vec::new();
        };
        if ack.code != 0 {
            let code = Code::from_u32(ack.code).unwrap_or(Code::ServerError);
            return vec![refused(code, &ack.text)];
        }
        // A rewritten message is shown as the room got it.
        let content = if ack.content.is_empty() {
            chat.content
        } else {
            serde_json::from_str::<Value>(&ack.content)
                .ok()
                .and_then(|v| v["text"].as_str().map(str::to_string))
                .unwrap_or(chat.content)
        };
        let me = member(&self.user, profile(profiles, &self.user));
        vec![chat_frame(
            me,
            &chat.room,
            &content,
            ack.sent_time,
            &ack.uid,
        )]
    }
}

impl Dialect for Seed002 {
    type Steps = Vec<Step>;

    fn open(&mut self) -> Vec<Step> {
        vec![Step::Connect(ConnectRequest {
            token: std::mem::take(&mut self.token),
            // Anonymous: a user may have several pages open at once.
            device_id: String::new(),
            platform: "seed002".into(),
        })]
    }

    fn connected(&mut self, outcome: Result<&ConnectInfo, &Refusal>) -> Vec<Step> {
        match outcome {
            Ok(info) => {
                self.user = info.user_id.clone();
                self.session = info.session_id.clone();
                Vec::new()
            }
            Err(refusal) => vec![
                refused(refusal.code, &refusal.text()),
                Step::Close(refusal.code),
            ],
        }
    }

    fn inbound(&mut self, frame: WireIn<'_>) -> Vec<Step> {
        let WireIn::Text(text) = frame else {
            return vec![refused(Code::MalformedFrame, "frames are JSON text")];
        };
        let msg: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return vec![refused(Code::MalformedFrame, "a frame is a JSON object")],
            Err(e) => {
                return vec![refused(Code::MalformedFrame, &format!("not JSON: {e}"))];
            }
        };
        let Some(kind) = msg.get("msgType").and_then(Value::as_i64) else {
            return vec![refused(Code::MalformedFrame, "msgType is missing")];
        };
        let text_data = &msg["textData"];
        match kind {
            // Only activity: the seed's server neither does nor answers anything.
            msg_type::HEARTBEAT => Vec::new(),
            msg_type::INIT => self.init(text_data),
            msg_type::CHAT => self.chat(text_data),
            msg_type::SIGN_OFF => vec![refused(
                Code::UnknownFrameKind,
                "msgType 4 (message sign-off) is not used yet",
            )],
            msg_type::FRIENDS => vec![refused(
                Code::UnknownFrameKind,
                "msgType 5 (friends) is not used yet",
            )],
            _ => vec![refused(
                Code::UnknownFrameKind,
                "msgType is 1 (heartbeat), 2 (join or leave a room) or 3 (chat)",
            )],
        }
    }

    fn profiles_for(&self, item: &Outbound) -> Vec<String> {
        let mut users = Vec::new();
        match item {
            Outbound::PubAck(ack) if ack.code == 0 && self.chats.contains_key(&ack.packet_id) => {
                users.push(self.user.clone());
            }
            Outbound::QueryAck(q)
                if matches!(self.queries.get(&q.query_id), Some(Query::Quit(_))) =>
            {
                users.push(self.user.clone());
            }
            Outbound::Room(item) if self.rooms.contains_key(&**item.room()) => {
                let m = item.message();
                if m.msg_type() != CHATROOM_EVENT_TYPE {
                    users.push(m.sender_id().to_string());
                } else {
                    match change(m.content()) {
                        Change::Join(ids) | Change::Leave(ids) => users.extend(ids),
                        Change::Destroyed | Change::Other => {}
                    }
                }
            }
            _ => {}
        }
        users.retain(|u| !u.is_empty());
        users.truncate(LOOKUP_MAX);
        users
    }

    fn outbound(&mut self, item: Outbound, profiles: Profiles<'_>) -> Vec<Step> {
        match item {
            Outbound::PubAck(ack) => self.chat_answered(ack, profiles),
            Outbound::QueryAck(q) => self.answered(*q, profiles),
            Outbound::Room(item) => self.room_item(item.room(), item.message(), profiles),
            // The seed has no inbox: what reaches the user's inbox is left to their other
            // clients, and acknowledged so it is not resent here.
            Outbound::Deliver { message, .. } => vec![Step::Ack(message.inbox_seq())],
            // Typing, presence, gap markers and the rest have no place in the seed.
            _ => Vec::new(),
        }
    }

    fn users(&mut self, tag: u64, users: &[UserOut]) -> Vec<Step> {
        let Some((room, gathering)) = self.lookups.remove(&tag) else {
            return Vec::new();
        };
        let Some(g) = self.gathering(&room, gathering) else {
            return Vec::new();
        };
        for u in users {
            g.profiles.insert(u.user.clone(), u.clone());
        }
        g.waiting = g.waiting.saturating_sub(1);
        if g.waiting == 0 {
            self.gathered(&room)
        } else {
            Vec::new()
        }
    }

    fn goodbye(&mut self, code: Code) -> Option<WireOut> {
        Some(refusal_frame(code, code.text()))
    }

    fn silence_limit_ms(&self) -> Option<u64> {
        Some(self.heartbeat_ms.saturating_mul(SILENT_INTERVALS))
    }
}

/// What a notice of the room's stream says about its members.
fn change(content: &str) -> Change {
    let Ok(v) = serde_json::from_str::<Value>(content) else {
        return Change::Other;
    };
    let users = || -> Vec<String> {
        v["userIds"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    match v["operation"].as_str() {
        Some("join") => Change::Join(users()),
        // A kick takes the users out of the room: to the others, they left.
        Some("leave" | "kick") => Change::Leave(users()),
        Some("destroy") => Change::Destroyed,
        _ => Change::Other,
    }
}

fn view_of(room: &str, out: &ChatroomOut) -> RoomView {
    let extra: Value = serde_json::from_str(&out.extra).unwrap_or(Value::Null);
    RoomView {
        name: if out.name.is_empty() {
            room.to_string()
        } else {
            out.name.clone()
        },
        desc: extra["desc"].as_str().unwrap_or_default().to_string(),
        created: out.created,
        owner_id: id_text(&extra["owner"]),
        owner: Value::Null,
        gathering: None,
        listed: HashSet::new(),
    }
}

fn room_data(room: &str, view: &RoomView) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("number".into(), room.into());
    data.insert("name".into(), view.name.clone().into());
    data.insert("desc".into(), view.desc.clone().into());
    data.insert("owner".into(), view.owner.clone());
    data.insert("createTime".into(), view.created.into());
    data
}

fn joined_frame(room: &str, view: &RoomView, m: Value) -> Step {
    let mut data = room_data(room, view);
    data.insert("members".into(), Value::Null);
    data.insert("newJoinMember".into(), m);
    ok_frame(data_type::JOIN, "Join successfully", data)
}

fn left_frame(room: &str, view: &RoomView, m: Value) -> Step {
    let mut data = room_data(room, view);
    data.insert("newLeaveMember".into(), m);
    ok_frame(data_type::LEAVE, "Leave successfully", data)
}

fn chat_frame(from: Value, room: &str, content: &str, sent_time: i64, uid: &str) -> Step {
    let mut data = Map::new();
    data.insert("from".into(), from);
    data.insert("roomNumber".into(), room.into());
    data.insert("content".into(), content.into());
    data.insert("sendTime".into(), sent_time.into());
    data.insert("msgId".into(), uid.into());
    ok_frame(data_type::CHAT, "", data)
}

/// A status-1 answer.
fn ok_frame(kind: i64, msg: &str, data: Map<String, Value>) -> Step {
    send(json!({
        "status": 1,
        "msg": msg,
        "resultBody": {
            "msgType": msg_type::CHAT,
            "textData": { "dataType": kind, "data": data },
        },
    }))
}

/// A status-0 answer, with the Tidings code in `extendFields`.
fn refused(code: Code, text: &str) -> Step {
    Step::Send(refusal_frame(code, text))
}

fn refusal_frame(code: Code, text: &str) -> WireOut {
    WireOut::Text(
        json!({
            "status": 0,
            "msg": text,
            "resultBody": "",
            "extendFields": { "code": code.as_u32() },
        })
        .to_string(),
    )
}

fn send(v: Value) -> Step {
    Step::Send(WireOut::Text(v.to_string()))
}

fn profile<'a>(profiles: Profiles<'a>, id: &str) -> Option<&'a UserOut> {
    profiles.iter().find(|u| u.user == id)
}

/// A user as the seed's Member: the profile's name (or the id) as both names, the portrait,
/// and `personNum` from the profile's extra (or the id).
fn member(id: &str, profile: Option<&UserOut>) -> Value {
    let name = profile
        .map(|u| u.profile.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.to_string());
    let portrait = profile
        .map(|u| u.profile.portrait.clone())
        .unwrap_or_default();
    let number = profile
        .and_then(|u| serde_json::from_str::<Value>(&u.profile.extra).ok())
        .map(|extra| id_text(&extra["personNum"]))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.to_string());
    json!({
        "id": id,
        "personName": name,
        "personNum": number,
        "nickName": name,
        "headImgUrl": portrait,
    })
}

fn room_number(data: &Value) -> Option<String> {
    Some(id_text(&data["roomNumber"])).filter(|r| !r.is_empty())
}

/// An id the client sent (text or number).
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_engine::GroupMember;

    fn frames(steps: &[Step]) -> Vec<Value> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Send(WireOut::Text(t)) => serde_json::from_str(t).ok(),
                _ => None,
            })
            .collect()
    }

    fn user(id: &str, name: &str, extra: &str) -> UserOut {
        let mut u = UserOut {
            user: id.into(),
            profile: Default::default(),
            online: true,
        };
        u.profile.name = name.into();
        u.profile.portrait = format!("/img/{id}.jpg");
        u.profile.extra = extra.into();
        u
    }

    fn connected() -> Seed002 {
        let mut d = Seed002::new("tok".into(), 1000);
        let open = d.open();
        assert!(
            matches!(&open[..], [Step::Connect(c)] if c.token == "tok" && c.device_id.is_empty())
        );
        let info = ConnectInfo {
            user_id: "alice".into(),
            session_id: "17".into(),
            heartbeat_ms: 30_000,
            server_time: 0,
            cursor: 0,
            inbox_seq: 0,
        };
        assert!(d.connected(Ok(&info)).is_empty());
        d
    }

    fn join_frame(room: &str) -> String {
        json!({"msgType": 2, "textData": {"dataType": 1,
               "data": {"from": {"id": "alice"}, "roomNumber": room}}})
        .to_string()
    }

    fn query_id(step: &Step) -> (u32, ChatroomQuery) {
        match step {
            Step::Chatroom { query_id, query } => (*query_id, query.clone()),
            other => panic!("not a chatroom query: {other:?}"),
        }
    }

    fn ack(query_id: u32) -> QueryAckOut {
        QueryAckOut {
            query_id,
            ..Default::default()
        }
    }

    fn members(ids: &[&str]) -> Vec<GroupMember> {
        ids.iter()
            .map(|u| GroupMember {
                user: u.to_string(),
                ..Default::default()
            })
            .collect()
    }

    /// Joins `room` (a room the app server made, owned by `carol`) up to the profile lookup,
    /// with `bob` and `alice` in it; returns the lookup's tag and users.
    fn join_until_lookup(d: &mut Seed002, room: &str) -> (u64, Vec<String>) {
        let steps = d.inbound(WireIn::Text(&join_frame(room)));
        let (id, query) = query_id(&steps[0]);
        assert!(matches!(query, ChatroomQuery::JoinAlone { recent: 0, .. }));
        let mut answer = ack(id);
        answer.chatrooms.push(ChatroomOut {
            id: room.into(),
            name: "房间名称".into(),
            extra: json!({"desc": "房间描述", "owner": "carol"}).to_string(),
            created: 1_597_368_648_105,
            member_count: 2,
            max_members: 100,
            muted_until: 0,
            seq: 0,
            kept: true,
        });
        let steps = d.outbound(Outbound::QueryAck(Box::new(answer)), &[]);
        // The member list, page by page.
        let (id, query) = query_id(&steps[0]);
        assert!(
            matches!(&query, ChatroomQuery::Members { page_token, .. } if page_token.is_empty())
        );
        let mut page = ack(id);
        page.members = members(&["bob"]);
        page.next_page_token = "1".into();
        let steps = d.outbound(Outbound::QueryAck(Box::new(page)), &[]);
        let (id, query) = query_id(&steps[0]);
        assert!(matches!(&query, ChatroomQuery::Members { page_token, .. } if page_token == "1"));
        let mut page = ack(id);
        page.members = members(&["alice"]);
        let steps = d.outbound(Outbound::QueryAck(Box::new(page)), &[]);
        match &steps[..] {
            [Step::Users { tag, users }] => (*tag, users.clone()),
            other => panic!("not one lookup: {other:?}"),
        }
    }

    #[test]
    fn a_join_answers_the_room_with_every_member_in_joining_order() {
        let mut d = connected();
        let (tag, users) = join_until_lookup(&mut d, "E00001");
        assert_eq!(users, ["bob", "alice", "carol"]);
        let found = [
            user("alice", "张三", r#"{"personNum":"XS00001"}"#),
            user("bob", "", ""),
            user("carol", "房主", ""),
        ];
        let answer = frames(&d.users(tag, &found));
        assert_eq!(answer.len(), 1);
        assert_eq!(answer[0]["status"], 1);
        assert_eq!(answer[0]["msg"], "Join successfully");
        let body = &answer[0]["resultBody"];
        assert_eq!(
            (
                body["msgType"].as_i64(),
                body["textData"]["dataType"].as_i64()
            ),
            (Some(3), Some(1))
        );
        let room = &body["textData"]["data"];
        assert_eq!(room["number"], "E00001");
        assert_eq!(room["name"], "房间名称");
        assert_eq!(room["desc"], "房间描述");
        assert_eq!(room["createTime"], 1_597_368_648_105_i64);
        assert_eq!(room["owner"]["personName"], "房主");
        let alice = json!({"id": "alice", "personName": "张三", "personNum": "XS00001",
                           "nickName": "张三", "headImgUrl": "/img/alice.jpg"});
        let bob = json!({"id": "bob", "personName": "bob", "personNum": "bob",
                         "nickName": "bob", "headImgUrl": "/img/bob.jpg"});
        assert_eq!(room["members"], json!([bob, alice]));
        assert_eq!(room["newJoinMember"], alice);
    }

    #[test]
    fn changes_during_the_gathering_are_shown_once_after_the_list() {
        let mut d = connected();
        let (tag, _) = join_until_lookup(&mut d, "E1");
        // dave joined after the list was read; alice is this user; bob is in the list, and
        // his notice comes later.
        let noticed = d.changed("E1", Change::Join(vec!["alice".into(), "dave".into()]), &[]);
        assert!(noticed.is_empty(), "held until the list is out");
        let out = frames(&d.users(tag, &[]));
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0]["resultBody"]["textData"]["data"]["members"].is_array());
        let delta = &out[1]["resultBody"]["textData"]["data"];
        assert!(delta["members"].is_null());
        assert_eq!(delta["newJoinMember"]["id"], "dave");
        // The join notice of a listed member is not shown again; a leave is.
        assert!(
            d.changed("E1", Change::Join(vec!["bob".into()]), &[])
                .is_empty()
        );
        let left = frames(&d.changed("E1", Change::Leave(vec!["bob".into()]), &[]));
        assert_eq!(left[0]["msg"], "Leave successfully");
        let data = &left[0]["resultBody"]["textData"]["data"];
        assert_eq!(data["newLeaveMember"]["id"], "bob");
        assert!(data.get("members").is_none());
        // A rejoin after the leave is shown.
        let again = frames(&d.changed("E1", Change::Join(vec!["bob".into()]), &[]));
        assert_eq!(
            again[0]["resultBody"]["textData"]["data"]["newJoinMember"]["id"],
            "bob"
        );
    }

    #[test]
    fn a_join_from_another_page_gets_the_seeds_exact_refusal() {
        let mut d = connected();
        let steps = d.inbound(WireIn::Text(&join_frame("E1")));
        let (id, _) = query_id(&steps[0]);
        let refused = QueryAckOut::refused(id, Code::ChatroomJoinedElsewhere);
        let out = frames(&d.outbound(Outbound::QueryAck(Box::new(refused)), &[]));
        assert_eq!(
            out,
            [json!({"status": 0, "msg": JOINED_ELSEWHERE, "resultBody": ""})]
        );
    }

    #[test]
    fn a_chat_is_a_chatroom_text_and_its_answer_is_the_message_as_the_room_shows_it() {
        let mut d = connected();
        let steps = d.inbound(WireIn::Text(
            &json!({"msgType": 3, "textData": {"dataType": 3,
                    "data": {"roomNumber": "E1", "content": "你好"}}})
            .to_string(),
        ));
        let Step::Publish { packet_id, send } = &steps[0] else {
            panic!("not a publish: {steps:?}");
        };
        assert_eq!(send.conversation_type, conversation_type::CHATROOM);
        assert_eq!(
            (send.target_id.as_str(), send.content.as_str()),
            ("E1", r#"{"text":"你好"}"#)
        );
        assert_eq!(send.client_msg_id, format!("s2-17-{packet_id}"));
        let ack = tidings_engine::PubAckOut {
            packet_id: *packet_id,
            code: 0,
            text: String::new(),
            uid: "u1".into(),
            seq: 3,
            sent_time: 1_600_000_000_123,
            inbox_seq: 0,
            notice: 0,
            content: String::new(),
        };
        let wanted = d.profiles_for(&Outbound::PubAck(ack.clone()));
        assert_eq!(wanted, ["alice"]);
        let out = frames(&d.outbound(Outbound::PubAck(ack), &[user("alice", "张三", "")]));
        let data = &out[0]["resultBody"]["textData"]["data"];
        assert_eq!(out[0]["resultBody"]["textData"]["dataType"], 3);
        assert_eq!(data["from"]["personName"], "张三");
        assert_eq!(
            (data["content"].as_str(), data["roomNumber"].as_str()),
            (Some("你好"), Some("E1"))
        );
        assert_eq!(data["sendTime"], 1_600_000_000_123_i64);
    }

    #[test]
    fn heartbeats_are_not_answered_and_set_the_silence_limit() {
        let mut d = connected();
        assert!(d.inbound(WireIn::Text(r#"{"msgType":1}"#)).is_empty());
        assert_eq!(d.silence_limit_ms(), Some(3000));
    }

    #[test]
    fn bad_frames_get_a_status_0_answer_with_the_code() {
        let mut d = connected();
        let cases = [
            ("{", Code::MalformedFrame),
            ("7", Code::MalformedFrame),
            (r#"{"msgType":"2"}"#, Code::MalformedFrame),
            (r#"{"msgType":4}"#, Code::UnknownFrameKind),
            (r#"{"msgType":5}"#, Code::UnknownFrameKind),
            (r#"{"msgType":0}"#, Code::UnknownFrameKind),
            (
                r#"{"msgType":2,"textData":{"dataType":3,"data":{"roomNumber":"E1"}}}"#,
                Code::UnknownFrameKind,
            ),
            (
                r#"{"msgType":2,"textData":{"dataType":1,"data":{"roomNumber":""}}}"#,
                Code::MalformedFrame,
            ),
            (
                r#"{"msgType":2,"textData":{"dataType":2,"data":{"from":{"id":"bob"},"roomNumber":"E1"}}}"#,
                Code::Unauthorized,
            ),
            (
                r#"{"msgType":3,"textData":{"dataType":3,"data":{"roomNumber":"E1","content":5}}}"#,
                Code::MalformedFrame,
            ),
        ];
        for (frame, code) in cases {
            let out = frames(&d.inbound(WireIn::Text(frame)));
            assert_eq!(out.len(), 1, "{frame}");
            assert_eq!(out[0]["status"], 0, "{frame}");
            assert_eq!(out[0]["resultBody"], "", "{frame}");
            assert_eq!(out[0]["extendFields"]["code"], code.as_u32(), "{frame}");
        }
        let out = frames(&d.inbound(WireIn::Binary(&[1])));
        assert_eq!(
            out[0]["extendFields"]["code"],
            Code::MalformedFrame.as_u32()
        );
    }

    #[test]
    fn notices_say_who_joined_or_left() {
        assert_eq!(
            change(r#"{"operation":"join","userIds":["a","b"],"count":2}"#),
            Change::Join(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            change(r#"{"operation":"kick","userIds":["a"],"bannedUntil":0}"#),
            Change::Leave(vec!["a".into()])
        );
        assert_eq!(change(r#"{"operation":"destroy"}"#), Change::Destroyed);
        assert_eq!(change(r#"{"operation":"entry","key":"k"}"#), Change::Other);
        assert_eq!(change("not json"), Change::Other);
    }

    #[test]
    fn a_member_falls_back_to_the_id() {
        let m = member("u1", None);
        assert_eq!(
            m,
            json!({"id": "u1", "personName": "u1", "personNum": "u1", "nickName": "u1", "headImgUrl": ""})
        );
        let m = member("u2", Some(&user("u2", "", r#"{"personNum":7}"#)));
        assert_eq!(
            (m["personNum"].as_str(), m["personName"].as_str()),
            (Some("7"), Some("u2"))
        );
    }
}
