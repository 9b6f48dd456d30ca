//! The user and message routes of the HTTP API: profiles, bans, online status, and messages the
//! app server sends on a user's behalf or from a system account.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tidings_engine::validate::content_json;
use tidings_engine::{ApiError, Delivered, Posted, Refusal, SendRequest, UserOut};
use tidings_proto::{Code, conversation_type};

use crate::AppState;
use crate::api::{self, error, parse_or_refuse, reply};
use crate::api_groups::extra_text;

/// A user as the API shows it.
pub(crate) fn user_json(u: &UserOut) -> Value {
    json!({
        "userId": u.user,
        "name": u.profile.name,
        "portrait": u.profile.portrait,
        "extra": if u.profile.extra.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&u.profile.extra).unwrap_or(Value::Null)
        },
        "banned": u.profile.banned,
        "online": u.online,
        "lastSeen": u.profile.last_seen,
    })
}

fn posted_json(p: &Posted) -> Value {
    let mut v = json!({
        "uid": p.uid,
        "seq": p.seq,
        "sentTime": p.sent_time,
        "duplicate": p.duplicate,
    });
    if !p.user.is_empty() {
        v["userId"] = p.user.clone().into();
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    name: Option<String>,
    portrait: Option<String>,
    extra: Option<Value>,
}

/// `PUT /api/v1/users/{userId}`: registers a user's profile or changes the fields given.
pub async fn put(State(state): State<AppState>, Path(user): Path<String>, body: Bytes) -> Response {
    let req: Profile = parse_or_refuse!(body);
    set_profile(&state, &user, req).await
}

/// Sets the profile fields given and answers `{"code": 0, "user"}`.
pub(crate) async fn set_profile(state: &AppState, user: &str, req: Profile) -> Response {
    let extra = match extra_text(req.extra) {
        Ok(e) => e,
        Err(r) => return error(r),
    };
    reply(
        state
            .engine
            .set_profile(user, req.name, req.portrait, extra)
            .await,
        |u| json!({ "user": user_json(&u) }),
    )
}

/// `GET /api/v1/users/{userId}`.
pub async fn get(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    user_answer(&state, user).await
}

/// Answers `{"code": 0, "user"}` with the user's profile.
pub(crate) async fn user_answer(state: &AppState, user: String) -> Response {
    reply(
        state.engine.users(&[user]).await,
        |users| json!({ "user": user_json(&users[0]) }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserIds {
    user_ids: Vec<String>,
}

/// `POST /api/v1/users/query`: profiles and online status of up to 100 users.
pub async fn query(State(state): State<AppState>, body: Bytes) -> Response {
    let req: UserIds = parse_or_refuse!(body);
    reply(
        state.engine.users(&req.user_ids).await,
        |users| json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() }),
    )
}

async fn set_banned(state: AppState, user: String, banned: bool) -> Response {
    reply(
        state.engine.set_banned(&user, banned).await,
        |()| json!({ "userId": user, "banned": banned }),
    )
}

/// `POST /api/v1/users/{userId}/ban`.
pub async fn ban(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    set_banned(state, user, true).await
}

/// `POST /api/v1/users/{userId}/unban`.
pub async fn unban(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    set_banned(state, user, false).await
}

/// The content of an API message: a JSON object.
fn content_text(content: Value) -> Result<String, Refusal> {
    match content {
        v @ Value::Object(_) => Ok(v.to_string()),
        _ => Err(Refusal::new(Code::BadRequest, "content is a JSON object")),
    }
}

fn msg_type_or_text(t: Option<String>) -> String {
    t.unwrap_or_else(|| "text".into())
}

/// The message of a system or broadcast call.
fn system_send(
    msg_type: Option<String>,
    content: Value,
    push_text: String,
    client_msg_id: Option<String>,
) -> Result<SendRequest, Refusal> {
    Ok(SendRequest {
        client_msg_id: client_msg_id.unwrap_or_default(),
        conversation_type: conversation_type::SYSTEM,
        msg_type: msg_type_or_text(msg_type),
        content: content_text(content)?,
        push_text,
        ..Default::default()
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Message {
    from_user_id: String,
    conversation_type: u32,
    target_id: String,
    msg_type: Option<String>,
    content: Value,
    #[serde(default)]
    push_text: String,
    #[serde(default)]
    push_data: String,
    client_msg_id: Option<String>,
    #[serde(default)]
    uncounted: bool,
    #[serde(default)]
    mentioned_user_ids: Vec<String>,
    #[serde(default)]
    mention_all: bool,
    #[serde(default)]
    directed_user_ids: Vec<String>,
    /// Chatroom messages: `low`, `normal` (the default) or `high`.
    priority: Option<String>,
}

/// `POST /api/v1/messages`: sends a private, group or chatroom message as `fromUserId`.
pub async fn send(State(state): State<AppState>, body: Bytes) -> Response {
    let req: Message = parse_or_refuse!(body);
    let content = match content_text(req.content) {
        Ok(c) => c,
        Err(r) => return error(r),
    };
    let priority = match req.priority.as_deref() {
        None | Some("normal") => 0,
        Some("low") => 1,
        Some("high") => 2,
        Some(_) => {
            return error(Refusal::new(
                Code::BadRequest,
                "priority is low, normal or high",
            ));
        }
    };
    let send = SendRequest {
        client_msg_id: req
            .client_msg_id
            .unwrap_or_else(|| format!("api-{}", tidings_engine::new_uid())),
        conversation_type: req.conversation_type,
        target_id: req.target_id,
        msg_type: msg_type_or_text(req.msg_type),
        content,
        push_text: req.push_text,
        push_data: req.push_data,
        uncounted: req.uncounted,
        mentions: req.mentioned_user_ids,
        mention_all: req.mention_all,
        audience: req.directed_user_ids,
        priority,
    };
    match state.engine.send_as(&req.from_user_id, send).await {
        Ok(p) => {
            let mut v = posted_json(&p);
            v["code"] = 0.into();
            Json(v).into_response()
        }
        Err(ApiError(r)) => error(r),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemMessage {
    from_user_id: String,
    to_user_ids: Vec<String>,
    msg_type: Option<String>,
    content: Value,
    #[serde(default)]
    push_text: String,
    client_msg_id: Option<String>,
}

/// `POST /api/v1/messages/system`: one message from a system account to each user.
pub async fn send_system(State(state): State<AppState>, body: Bytes) -> Response {
    let req: SystemMessage = parse_or_refuse!(body);
    let send = match system_send(req.msg_type, req.content, req.push_text, req.client_msg_id) {
        Ok(s) => s,
        Err(r) => return error(r),
    };
    reply(
        state
            .engine
            .send_system(&req.from_user_id, &req.to_user_ids, send)
            .await,
        |all| json!({ "messages": all.iter().map(posted_json).collect::<Vec<_>>() }),
    )
}

/// `GET /api/v1/users/{userId}/blocklist`.
pub async fn blocklist(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    reply(
        state.engine.blocklist_of(&user).await,
        |list| json!({ "userIds": list }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blocklist {
    user_ids: Vec<String>,
    blocked: bool,
}

/// `POST /api/v1/users/{userId}/blocklist`: blocks (or unblocks) users for `userId`.
pub async fn set_blocklist(
    State(state): State<AppState>,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let req: Blocklist = parse_or_refuse!(body);
    reply(
        state
            .engine
            .set_blocklist(&user, &req.user_ids, req.blocked)
            .await,
        |list| json!({ "userIds": list }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushTokenBody {
    provider: String,
    token: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    sandbox: bool,
    #[serde(default)]
    locale: String,
    #[serde(default)]
    p256dh: String,
    #[serde(default)]
    auth: String,
}

/// `GET /api/v1/users/{userId}/push-tokens`: the user's push tokens.
pub async fn push_tokens(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    reply(state.engine.push_tokens_of(&user).await, |tokens| {
        json!({
            "tokens": tokens.iter().map(|t| json!({
                "provider": t.provider.as_str(),
                "token": t.token,
                "deviceId": t.device,
                "appId": t.app_id,
                "sandbox": t.sandbox,
                "locale": t.locale,
            })).collect::<Vec<_>>()
        })
    })
}

/// `POST /api/v1/users/{userId}/push-tokens`: registers a device's push token for the user, as
/// a client's `registerPush` does (for Web Push, `token` is the endpoint).
pub async fn register_push_token(
    State(state): State<AppState>,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let req: PushTokenBody = parse_or_refuse!(body);
    let request = tidings_engine::PushTokenRequest {
        provider: req.provider,
        token: req.token,
        p256dh: req.p256dh,
        auth: req.auth,
        app_id: req.app_id,
        sandbox: req.sandbox,
        locale: req.locale,
    };
    reply(
        state
            .engine
            .register_push_token(&user, &req.device_id, request)
            .await,
        |()| json!({}),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemovePushToken {
    provider: String,
    token: String,
}

/// `POST /api/v1/users/{userId}/push-tokens/remove`: removes one of the user's push tokens.
pub async fn remove_push_token(
    State(state): State<AppState>,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    let req: RemovePushToken = parse_or_refuse!(body);
    reply(
        state
            .engine
            .unregister_push_token(&user, &req.provider, &req.token)
            .await,
        |()| json!({}),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Broadcast {
    from_user_id: String,
    msg_type: Option<String>,
    content: Value,
    #[serde(default)]
    push_text: String,
    client_msg_id: Option<String>,
}

/// `POST /api/v1/messages/broadcast`: a system message to every user the server knows.
pub async fn broadcast(State(state): State<AppState>, body: Bytes) -> Response {
    let req: Broadcast = parse_or_refuse!(body);
    let send = match system_send(req.msg_type, req.content, req.push_text, req.client_msg_id) {
        Ok(s) => s,
        Err(r) => return error(r),
    };
    reply(
        state.engine.broadcast(&req.from_user_id, send).await,
        |n| json!({ "recipients": n }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Export {
    conversation_type: u32,
    #[serde(default)]
    user_id: String,
    target_id: String,
    #[serde(default)]
    after_seq: u64,
    #[serde(default = "export_page")]
    limit: u32,
}

fn export_page() -> u32 {
    100
}

/// `GET /api/v1/history?conversationType=&userId=&targetId=&afterSeq=&limit=`: a page of a
/// conversation's messages, oldest first.
pub async fn history(
    State(state): State<AppState>,
    q: Result<Query<Export>, QueryRejection>,
) -> Response {
    let q = match api::query(q) {
        Ok(q) => q,
        Err(r) => return error(r),
    };
    match state
        .engine
        .export(
            q.conversation_type,
            &q.user_id,
            &q.target_id,
            q.after_seq,
            q.limit,
        )
        .await
    {
        Ok(messages) => {
            let next = if messages.len() as u32 == q.limit {
                messages.last().map_or(0, |m| m.seq())
            } else {
                0
            };
            Json(HistoryPage {
                code: 0,
                messages: messages.iter().map(MessageOut::of).collect(),
                next_after_seq: next,
            })
            .into_response()
        }
        Err(ApiError(r)) => error(r),
    }
}

/// A page of history as the API shows it. Written from these types rather than from a JSON
/// tree so that each message's content goes out as stored: reading it into a tree would be
/// bounded by the tree's nesting limit.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryPage<'a> {
    code: u32,
    messages: Vec<MessageOut<'a>>,
    next_after_seq: u64,
}

/// A stored message as the API shows it (`targetId` as the conversation's first user sees it).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageOut<'a> {
    uid: &'a str,
    conversation_type: u32,
    target_id: &'a str,
    sender_id: &'a str,
    seq: u64,
    sent_time: i64,
    msg_type: &'a str,
    content: Option<&'a RawValue>,
    push_text: &'a str,
    client_msg_id: &'a str,
    recalled: bool,
    edited: bool,
    mentioned_user_ids: &'a [String],
    mention_all: bool,
    directed_user_ids: &'a [String],
}

impl<'a> MessageOut<'a> {
    fn of(m: &'a Delivered) -> MessageOut<'a> {
        MessageOut {
            uid: m.uid(),
            conversation_type: m.conversation_type(),
            target_id: m.target_id(),
            sender_id: m.sender_id(),
            seq: m.seq(),
            sent_time: m.sent_time(),
            msg_type: m.msg_type(),
            content: content_json(m.content()),
            push_text: m.push_text(),
            client_msg_id: m.client_msg_id(),
            recalled: m.recalled(),
            edited: m.edited(),
            mentioned_user_ids: m.mentions(),
            mention_all: m.mention_all(),
            directed_user_ids: m.audience(),
        }
    }
}

/// The sensitive word list, as the API shows it.
async fn words_answer(state: &AppState) -> Response {
    reply(state.engine.sensitive_words().await, |words| {
        let words: Vec<Value> = words
            .iter()
            .map(|(word, replacement)| json!({ "word": word, "replacement": replacement }))
            .collect();
        json!({ "words": words })
    })
}

/// `GET /api/v1/sensitive-words`.
pub async fn words(State(state): State<AppState>) -> Response {
    words_answer(&state).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Word {
    word: String,
    replacement: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Words {
    words: Vec<Word>,
}

/// `POST /api/v1/sensitive-words`: adds words (or changes their replacements).
pub async fn add_words(State(state): State<AppState>, body: Bytes) -> Response {
    let req: Words = parse_or_refuse!(body);
    let words = req
        .words
        .into_iter()
        .map(|w| (w.word, w.replacement))
        .collect();
    if let Err(ApiError(r)) = state.engine.change_sensitive_words(words, false).await {
        return error(r);
    }
    words_answer(&state).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WordList {
    words: Vec<String>,
}

/// `POST /api/v1/sensitive-words/remove`.
pub async fn remove_words(State(state): State<AppState>, body: Bytes) -> Response {
    let req: WordList = parse_or_refuse!(body);
    let words = req.words.into_iter().map(|w| (w, None)).collect();
    if let Err(ApiError(r)) = state.engine.change_sensitive_words(words, true).await {
        return error(r);
    }
    words_answer(&state).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recall {
    from_user_id: String,
    conversation_type: u32,
    target_id: String,
    seq: u64,
}

/// `POST /api/v1/messages/recall`: recalls a user's message, at any time.
pub async fn recall(State(state): State<AppState>, body: Bytes) -> Response {
    let req: Recall = parse_or_refuse!(body);
    match state
        .engine
        .recall_as(
            &req.from_user_id,
            req.conversation_type,
            &req.target_id,
            req.seq,
        )
        .await
    {
        Ok(p) => {
            Json(json!({ "code": 0, "uid": p.uid, "seq": p.seq, "recalled": true })).into_response()
        }
        Err(ApiError(r)) => error(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_writes_content_as_stored_however_deep() {
        // Deeper than serde_json's tree limit (128): read into a tree, it would become null.
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(300), "]".repeat(300));
        let page = HistoryPage {
            code: 0,
            messages: vec![MessageOut {
                uid: "u1",
                conversation_type: 1,
                target_id: "bob",
                sender_id: "alice",
                seq: 1,
                sent_time: 2,
                msg_type: "app:deep",
                content: content_json(&deep),
                push_text: "",
                client_msg_id: "c1",
                recalled: false,
                edited: false,
                mentioned_user_ids: &[],
                mention_all: false,
                directed_user_ids: &[],
            }],
            next_after_seq: 0,
        };
        let text = serde_json::to_string(&page).unwrap();
        assert!(text.contains(&format!(r#""content":{deep},"#)), "{text}");
        assert!(text.starts_with(r#"{"code":0,"messages":[{"uid":"u1","conversationType":1,"#));
    }
}
