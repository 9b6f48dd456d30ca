//! The chatroom routes of the HTTP API: the app server creates the rooms it keeps, reads and
//! destroys them, pages through their members, kicks, bans and mutes users, and manages their
//! key-value entries. Members join and leave over their connections, never through the API.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_engine::{ApiError, ChatroomOut, EntryOut, MAX_ENTRIES, Refusal};
use tidings_proto::Code;

use crate::AppState;
use crate::api::{error, parse_or_refuse, query, reply};
use crate::api_groups::extra_text;

/// The longest timed ban or mute, in minutes: a year (longer ones are "until lifted").
const MAX_MINUTES: u64 = 366 * 24 * 60;

/// A chatroom as the API shows it.
fn chatroom_json(c: &ChatroomOut) -> Value {
    json!({
        "chatroomId": c.id,
        "name": c.name,
        "extra": if c.extra.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&c.extra).unwrap_or(Value::Null)
        },
        "createdTime": c.created,
        "memberCount": c.member_count,
        "maxMembers": c.max_members,
        "mutedUntil": c.muted_until,
        "seq": c.seq,
        "kept": c.kept,
    })
}

fn entry_json(e: &EntryOut) -> Value {
    json!({
        "key": e.key,
        "value": e.value,
        "userId": e.user,
        "updatedTime": e.updated,
        "autoDelete": e.auto_delete,
    })
}

fn answer(result: Result<ChatroomOut, ApiError>) -> Response {
    reply(result, |c| json!({ "chatroom": chatroom_json(&c) }))
}

/// Until when (ms) a ban or mute of `minutes` lasts: absent, until lifted; 0, lifted now.
fn until(state: &AppState, minutes: Option<u64>) -> Result<i64, Refusal> {
    match minutes {
        None => Ok(i64::MAX),
        Some(0) => Ok(0),
        Some(m) if m > MAX_MINUTES => Err(Refusal::new(
            Code::BadRequest,
            "minutes is at most a year; omit it for until lifted",
        )),
        Some(m) => Ok(state.engine.now_ms() + m as i64 * 60_000),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateChatroom {
    chatroom_id: String,
    #[serde(default)]
    name: String,
    extra: Option<Value>,
    max_members: Option<u64>,
}

/// `POST /api/v1/chatrooms`: a room kept until the app server destroys it.
pub async fn create(State(state): State<AppState>, body: Bytes) -> Response {
    let req: CreateChatroom = parse_or_refuse!(body);
    let extra = match extra_text(req.extra) {
        Ok(e) => e.unwrap_or_default(),
        Err(r) => return error(r),
    };
    answer(
        state
            .engine
            .create_chatroom(&req.chatroom_id, req.name, extra, req.max_members)
            .await,
    )
}

/// `GET /api/v1/chatrooms/{chatroomId}`.
pub async fn get(State(state): State<AppState>, Path(room): Path<String>) -> Response {
    answer(state.engine.chatroom(&room).await)
}

/// `DELETE /api/v1/chatrooms/{chatroomId}`: its members get a `destroy` notice and are out.
pub async fn destroy(State(state): State<AppState>, Path(room): Path<String>) -> Response {
    answer(state.engine.destroy_chatroom(&room).await)
}

/// `GET /api/v1/chatrooms/{chatroomId}/members?limit=&pageToken=`.
pub async fn members(
    State(state): State<AppState>,
    Path(room): Path<String>,
    q: Result<Query<crate::api_groups::MembersPage>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return error(r),
    };
    reply(
        state
            .engine
            .chatroom_members(&room, &q.page_token, q.limit)
            .await,
        crate::api_groups::members_json,
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Kick {
    user_ids: Vec<String>,
}

/// `POST /api/v1/chatrooms/{chatroomId}/kick`: takes users out; they may join again.
pub async fn kick(
    State(state): State<AppState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    let req: Kick = parse_or_refuse!(body);
    answer(state.engine.chatroom_kick(&room, &req.user_ids, None).await)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ban {
    user_ids: Vec<String>,
    /// For how long; 0 lifts the ban; absent: until lifted.
    minutes: Option<u64>,
}

/// `POST /api/v1/chatrooms/{chatroomId}/ban`: takes users out and refuses their joins.
pub async fn ban(State(state): State<AppState>, Path(room): Path<String>, body: Bytes) -> Response {
    let req: Ban = parse_or_refuse!(body);
    let until = match until(&state, req.minutes) {
        Ok(u) => u,
        Err(r) => return error(r),
    };
    answer(
        state
            .engine
            .chatroom_kick(&room, &req.user_ids, Some(until))
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mute {
    /// These users; absent: the whole room (only the app server may send then).
    user_ids: Option<Vec<String>>,
    /// For how long; 0 unmutes; absent: until unmuted.
    minutes: Option<u64>,
}

/// `POST /api/v1/chatrooms/{chatroomId}/mute`.
pub async fn mute(
    State(state): State<AppState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    let req: Mute = parse_or_refuse!(body);
    let until = match until(&state, req.minutes) {
        Ok(u) => u,
        Err(r) => return error(r),
    };
    answer(
        state
            .engine
            .chatroom_mute(&room, req.user_ids.as_deref(), until)
            .await,
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryKeys {
    /// Comma-separated; absent or empty: every entry.
    #[serde(default)]
    keys: String,
}

/// `GET /api/v1/chatrooms/{chatroomId}/entries?keys=a,b`.
pub async fn entries(
    State(state): State<AppState>,
    Path(room): Path<String>,
    q: Result<Query<EntryKeys>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return error(r),
    };
    let keys: Vec<String> = q
        .keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    // As many as a room holds, the limit a member's query has too.
    if keys.len() > MAX_ENTRIES {
        return error(Refusal::new(
            Code::BadRequest,
            format!("ask for at most {MAX_ENTRIES} keys"),
        ));
    }
    reply(
        state.engine.chatroom_entries(&room, &keys).await,
        |entries| json!({ "entries": entries.iter().map(entry_json).collect::<Vec<_>>() }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetEntry {
    key: String,
    value: String,
    /// Who the entry is set as (and the notice is from); need not be a member.
    user_id: String,
    #[serde(default)]
    auto_delete: bool,
}

/// `POST /api/v1/chatrooms/{chatroomId}/entries`: sets an entry, whoever set it before.
pub async fn set_entry(
    State(state): State<AppState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    let req: SetEntry = parse_or_refuse!(body);
    reply(
        state
            .engine
            .set_chatroom_entry_as(&room, &req.user_id, &req.key, req.value, req.auto_delete)
            .await,
        |e| json!({ "entry": entry_json(&e) }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoveEntry {
    key: String,
    /// Who the notice of the removal is from.
    user_id: String,
}

/// `POST /api/v1/chatrooms/{chatroomId}/entries/remove`: removes an entry, whoever set it.
pub async fn remove_entry(
    State(state): State<AppState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    let req: RemoveEntry = parse_or_refuse!(body);
    reply(
        state
            .engine
            .remove_chatroom_entry_as(&room, &req.user_id, &req.key)
            .await,
        |()| json!({}),
    )
}
