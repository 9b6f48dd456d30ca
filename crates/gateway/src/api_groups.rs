//! The group routes of the HTTP API: the app server creates groups and manages their profiles,
//! members, owner, mutes and dismissal. Each change is made by an operator (`operatorId`, the
//! owner unless given), who is the sender of the notification that records it.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_engine::{ApiError, GroupAction, GroupInfo, GroupKind, Refusal};
use tidings_proto::Code;

use crate::AppState;
use crate::api::{error, parse_or_refuse, query, reply};

/// A group as the API shows it.
pub(crate) fn group_json(g: &GroupInfo) -> Value {
    json!({
        "groupId": g.id,
        "kind": g.kind.as_str(),
        "name": g.name,
        "portrait": g.portrait,
        "extra": if g.extra.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&g.extra).unwrap_or(Value::Null)
        },
        "ownerId": g.owner,
        "createdTime": g.created,
        "dismissedTime": g.dismissed,
        "mutedUntil": g.muted_until,
        "memberCount": g.member_count,
        "inviteOpen": g.invite_open,
    })
}

fn answer(result: Result<GroupInfo, ApiError>) -> Response {
    reply(result, |g| json!({ "group": group_json(&g) }))
}

/// The `extra` field as stored: a JSON object's text.
pub(crate) fn extra_text(extra: Option<Value>) -> Result<Option<String>, Refusal> {
    match extra {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(String::new())),
        Some(v @ Value::Object(_)) => Ok(Some(v.to_string())),
        Some(_) => Err(Refusal::new(Code::BadRequest, "extra is a JSON object")),
    }
}

/// The operator of a change: as given, or the group's owner.
async fn operator(
    state: &AppState,
    group: &str,
    given: Option<String>,
) -> Result<String, Response> {
    match given {
        Some(user) => Ok(user),
        None => state
            .engine
            .group(group)
            .await
            .map(|g| g.owner)
            .map_err(|ApiError(r)| error(r)),
    }
}

/// Makes a change as `operator_id` (the owner if absent) and answers the group after it.
async fn change(
    state: &AppState,
    group: &str,
    operator_id: Option<String>,
    action: GroupAction,
) -> Response {
    match operator(state, group, operator_id).await {
        Ok(by) => answer(state.engine.change_group(group, &by, action).await),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGroup {
    group_id: String,
    /// `managed` (the default), `open` or `discussion`.
    #[serde(default)]
    kind: Option<String>,
    owner_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    portrait: String,
    extra: Option<Value>,
    #[serde(default)]
    member_ids: Vec<String>,
}

/// `POST /api/v1/groups`.
pub async fn create(State(state): State<AppState>, body: Bytes) -> Response {
    let req: CreateGroup = parse_or_refuse!(body);
    let extra = match extra_text(req.extra) {
        Ok(e) => e.unwrap_or_default(),
        Err(r) => return error(r),
    };
    let kind = match req.kind.as_deref().map(GroupKind::parse) {
        None => GroupKind::Managed,
        Some(Some(kind)) => kind,
        Some(None) => {
            return error(Refusal::new(
                Code::BadRequest,
                "kind is managed, open or discussion",
            ));
        }
    };
    let owner = req.owner_id.clone();
    answer(
        state
            .engine
            .change_group(
                &req.group_id,
                &owner,
                GroupAction::Create {
                    kind,
                    owner: req.owner_id,
                    name: req.name,
                    portrait: req.portrait,
                    extra,
                    members: req.member_ids,
                },
            )
            .await,
    )
}

/// `GET /api/v1/groups/{groupId}`.
pub async fn get(State(state): State<AppState>, Path(group): Path<String>) -> Response {
    answer(state.engine.group(&group).await)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateGroup {
    name: Option<String>,
    portrait: Option<String>,
    extra: Option<Value>,
    invite_open: Option<bool>,
    operator_id: Option<String>,
}

/// `PATCH /api/v1/groups/{groupId}`: the profile fields given.
pub async fn update(
    State(state): State<AppState>,
    Path(group): Path<String>,
    body: Bytes,
) -> Response {
    let req: UpdateGroup = parse_or_refuse!(body);
    let extra = match extra_text(req.extra) {
        Ok(e) => e,
        Err(r) => return error(r),
    };
    if req.name.is_none() && req.portrait.is_none() && extra.is_none() && req.invite_open.is_none()
    {
        return error(Refusal::new(
            Code::BadRequest,
            "give name, portrait, extra or inviteOpen",
        ));
    }
    let action = GroupAction::Update {
        name: req.name,
        portrait: req.portrait,
        extra,
        invite_open: req.invite_open,
    };
    change(&state, &group, req.operator_id, action).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operator {
    operator_id: Option<String>,
}

/// `DELETE /api/v1/groups/{groupId}`: dismisses the group.
pub async fn dismiss(
    State(state): State<AppState>,
    Path(group): Path<String>,
    q: Result<Query<Operator>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return error(r),
    };
    change(&state, &group, q.operator_id, GroupAction::Dismiss).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Members {
    user_ids: Vec<String>,
    operator_id: Option<String>,
}

/// `POST /api/v1/groups/{groupId}/members`: adds members.
pub async fn add_members(
    State(state): State<AppState>,
    Path(group): Path<String>,
    body: Bytes,
) -> Response {
    let req: Members = parse_or_refuse!(body);
    change(
        &state,
        &group,
        req.operator_id,
        GroupAction::AddMembers(req.user_ids),
    )
    .await
}

/// `POST /api/v1/groups/{groupId}/members/remove`: removes members.
pub async fn remove_members(
    State(state): State<AppState>,
    Path(group): Path<String>,
    body: Bytes,
) -> Response {
    let req: Members = parse_or_refuse!(body);
    change(
        &state,
        &group,
        req.operator_id,
        GroupAction::RemoveMembers(req.user_ids),
    )
    .await
}

/// The query string of a group's or a chatroom's members page.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MembersPage {
    #[serde(default)]
    pub(crate) limit: u32,
    #[serde(default)]
    pub(crate) page_token: String,
}

/// `GET /api/v1/groups/{groupId}/members?limit=&pageToken=`.
pub async fn members(
    State(state): State<AppState>,
    Path(group): Path<String>,
    q: Result<Query<MembersPage>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return error(r),
    };
    if let Err(ApiError(r)) = state.engine.group(&group).await {
        return error(r);
    }
    reply(
        state
            .engine
            .group_members(&group, &q.page_token, q.limit)
            .await,
        members_json,
    )
}

/// A page of a group's or a chatroom's members as the API shows it.
pub(crate) fn members_json(page: tidings_engine::GroupMembers) -> Value {
    let members: Vec<Value> = page
        .members
        .iter()
        .map(|m| {
            json!({
                "userId": m.user,
                "joinedTime": m.joined,
                "mutedUntil": m.muted_until,
            })
        })
        .collect();
    json!({
        "members": members,
        "nextPageToken": page.next.map(|n| n.to_string()).unwrap_or_default(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Owner {
    user_id: String,
    operator_id: Option<String>,
}

/// `POST /api/v1/groups/{groupId}/owner`: hands the group to another member.
pub async fn transfer(
    State(state): State<AppState>,
    Path(group): Path<String>,
    body: Bytes,
) -> Response {
    let req: Owner = parse_or_refuse!(body);
    change(
        &state,
        &group,
        req.operator_id,
        GroupAction::TransferOwner(req.user_id),
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mute {
    /// One member; absent: everyone but the owner.
    user_id: Option<String>,
    /// For how long; 0 unmutes; absent: until unmuted.
    minutes: Option<u64>,
    operator_id: Option<String>,
}

/// `POST /api/v1/groups/{groupId}/mute`.
pub async fn mute(
    State(state): State<AppState>,
    Path(group): Path<String>,
    body: Bytes,
) -> Response {
    let req: Mute = parse_or_refuse!(body);
    let until = match req.minutes {
        None => i64::MAX,
        Some(0) => 0,
        Some(m) if m > 366 * 24 * 60 => {
            return error(Refusal::new(
                Code::BadRequest,
                "minutes is at most a year; omit it to mute until unmuted",
            ));
        }
        Some(m) => state.engine.now_ms() + m as i64 * 60_000,
    };
    let by = match operator(&state, &group, req.operator_id).await {
        Ok(by) => by,
        Err(r) => return r,
    };
    answer(
        state
            .engine
            .change_group(
                &group,
                &by,
                GroupAction::Mute {
                    user: req.user_id,
                    until,
                },
            )
            .await,
    )
}

/// `GET /api/v1/users/{userId}/groups`: the groups a user is a member of.
pub async fn user_groups(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    reply(
        state.engine.user_groups(&user).await,
        |groups| json!({ "groups": groups.iter().map(group_json).collect::<Vec<_>>() }),
    )
}
