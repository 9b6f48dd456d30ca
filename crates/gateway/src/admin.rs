//! The admin console: a page for the people who run the service (`/admin`, `web/admin`), and
//! the JSON API it calls (`/admin/api/...`).
//!
//! Operators sign in with a name and password (`tidings admin add`) at [`LOGIN_PATH`] and get
//! a session cookie ([`COOKIE`]: `Secure`, `HttpOnly`, `SameSite=Strict`, `Path=/admin`). Every
//! other admin API route is one of [`ADMIN_ROUTES`], and one layer in front of them all
//! ([`require_operator`]) refuses a request without a current session (401, 42030) or one that
//! may come from another site (403, 42031: no `X-Tidings-Admin: 1` header, which a cross-site
//! form cannot send, or an `Origin` that is not this server's), so no route can forget either.
//! The same layer writes every action to the audit log with its outcome.
//!
//! What operators do to users, groups, chatrooms, messages and sensitive words is served by
//! the HTTP API's own handlers (an admin route `/admin/api/X` is the API's `/api/v1/X`), so it
//! makes the same engine calls with the same rules and answers; the server acts for the
//! operator, who never sees the app secret. The console's own routes are the sign-in and out,
//! the overview, finding users, a user's devices and kicking one, and the audit log.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request, State};
use axum::http::header::{CACHE_CONTROL, COOKIE as COOKIE_HEADER, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_engine::AuditEntry;
use tidings_engine::{ApiError, Refusal};
use tidings_proto::Code;

use crate::AppState;
use crate::api::{error, json_body, reply};
use crate::listener::ClientAddr;

/// Where the console's page is.
pub const ADMIN_PATH: &str = "/admin";
/// The sign-in route: the one admin API route without a session (it still needs the header).
pub const LOGIN_PATH: &str = "/admin/api/login";
/// The session cookie.
pub const COOKIE: &str = "tidings_admin";
/// The header every admin API request carries: a cross-site form cannot send it.
pub const HEADER: &str = "x-tidings-admin";

/// Every admin API route but the sign-in, `(method, path, action)`: each needs an operator's
/// session. A route whose path is an HTTP API route's with `/admin/api` for `/api/v1` is served
/// by that route's handler; the others are the console's own. A request to a route with an
/// action is written to the audit log under that action (every route that changes anything
/// has one, and so does reading a conversation's history).
pub const ADMIN_ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/admin/api/me", ""),
    ("POST", "/admin/api/logout", "logout"),
    ("GET", "/admin/api/overview", ""),
    ("GET", "/admin/api/audit", ""),
    ("GET", "/admin/api/users", ""),
    ("GET", "/admin/api/users/{user_id}", ""),
    ("GET", "/admin/api/users/{user_id}/devices", ""),
    ("GET", "/admin/api/users/{user_id}/groups", ""),
    ("POST", "/admin/api/users/{user_id}/kick", "user.kick"),
    ("POST", "/admin/api/users/{user_id}/ban", "user.ban"),
    ("POST", "/admin/api/users/{user_id}/unban", "user.unban"),
    ("POST", "/admin/api/users/{user_id}/revoke", "user.revoke"),
    ("POST", "/admin/api/users/{user_id}/token", "user.token"),
    ("GET", "/admin/api/groups/{group_id}", ""),
    ("GET", "/admin/api/groups/{group_id}/members", ""),
    ("POST", "/admin/api/groups/{group_id}/members", "group.add"),
    (
        "POST",
        "/admin/api/groups/{group_id}/members/remove",
        "group.remove",
    ),
    ("POST", "/admin/api/groups/{group_id}/mute", "group.mute"),
    ("DELETE", "/admin/api/groups/{group_id}", "group.dismiss"),
    ("GET", "/admin/api/chatrooms/{chatroom_id}", ""),
    ("GET", "/admin/api/chatrooms/{chatroom_id}/members", ""),
    ("GET", "/admin/api/chatrooms/{chatroom_id}/entries", ""),
    (
        "POST",
        "/admin/api/chatrooms/{chatroom_id}/kick",
        "chatroom.kick",
    ),
    (
        "POST",
        "/admin/api/chatrooms/{chatroom_id}/mute",
        "chatroom.mute",
    ),
    (
        "POST",
        "/admin/api/chatrooms/{chatroom_id}/ban",
        "chatroom.ban",
    ),
    (
        "DELETE",
        "/admin/api/chatrooms/{chatroom_id}",
        "chatroom.destroy",
    ),
    ("POST", "/admin/api/messages/system", "message.system"),
    ("POST", "/admin/api/messages/broadcast", "message.broadcast"),
    ("POST", "/admin/api/messages/recall", "message.recall"),
    ("GET", "/admin/api/history", "message.history"),
    ("GET", "/admin/api/sensitive-words", ""),
    ("POST", "/admin/api/sensitive-words", "words.add"),
    ("POST", "/admin/api/sensitive-words/remove", "words.remove"),
];

/// The most of a request's body the audit log keeps.
const MAX_AUDIT_BODY: usize = 4096;
/// The largest answer whose code the audit log reads: far above any the routes make (each is
/// one JSON body already in memory; the largest, a full sensitive-word list, is a few MiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The HTTP API route serving admin route `path`, if there is one.
fn api_path(method: &str, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/admin/api")?;
    crate::API_ROUTES
        .iter()
        .find(|(m, p)| *m == method && p.strip_prefix("/api/v1") == Some(rest))
        .map(|(_, p)| *p)
}

/// The handler of one of [`ADMIN_ROUTES`].
fn admin_route(method: &str, path: &str) -> MethodRouter<AppState> {
    if let Some(api) = api_path(method, path) {
        return crate::api_route(method, api);
    }
    match (method, path) {
        ("GET", "/admin/api/me") => get(me),
        ("POST", "/admin/api/logout") => post(logout),
        ("GET", "/admin/api/overview") => get(overview_route),
        ("GET", "/admin/api/audit") => get(audit_log),
        ("GET", "/admin/api/users") => get(find_users),
        ("GET", "/admin/api/users/{user_id}/devices") => get(devices),
        ("POST", "/admin/api/users/{user_id}/kick") => post(kick),
        // Only reachable by editing ADMIN_ROUTES without this table; every test would fail.
        _ => panic!("no handler for {method} {path}"),
    }
}

/// Adds the console's page and API to `router`.
pub(crate) fn routes(
    mut router: axum::Router<AppState>,
    state: &AppState,
) -> axum::Router<AppState> {
    router = router
        .route(ADMIN_PATH, get(crate::web::admin_index))
        .route("/admin/static/{*path}", get(crate::web::admin_asset))
        .route(LOGIN_PATH, post(login));
    for (method, path, action) in ADMIN_ROUTES {
        let guard = Guard {
            state: state.clone(),
            action,
        };
        let route = admin_route(method, path).route_layer(axum::middleware::from_fn_with_state(
            guard,
            require_operator,
        ));
        router = router.route(path, route);
    }
    router
}

/// The operator a request is made by (an extension of every request past [`require_operator`]).
#[derive(Debug, Clone)]
struct Operator(String);

/// Refuses a request that may come from another site: one without the console's header, one
/// whose `Origin` is not this server (its `Host`, or one of the configured public URLs, for a
/// proxy that does not pass the `Host` on), and one a browser says is cross-site.
fn same_site(headers: &HeaderMap, public_urls: &[String]) -> Result<(), Refusal> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let refuse = |why: &str| Err(Refusal::new(Code::CrossSiteRefused, why));
    if header(HEADER) != Some("1") {
        return refuse("send the header X-Tidings-Admin: 1");
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let is_host = match (authority, header(HOST.as_str())) {
            (Some(a), Some(host)) => a.eq_ignore_ascii_case(host),
            _ => false,
        };
        let is_public = authority.is_some()
            && public_urls
                .iter()
                .any(|u| u.trim_end_matches('/').eq_ignore_ascii_case(origin));
        if !is_host && !is_public {
            return refuse("the Origin is not this server");
        }
    }
    if matches!(header("sec-fetch-site"), Some("cross-site" | "same-site")) {
        return refuse("the browser says the request is from another site");
    }
    Ok(())
}

/// The session id in the request's cookie, if there is one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// What the layer in front of a route knows: the server, and the route's audit action.
#[derive(Clone)]
struct Guard {
    state: AppState,
    action: &'static str,
}

/// The layer in front of every one of [`ADMIN_ROUTES`]: checks the request comes from this
/// site and carries a current operator session, runs the route, and writes the audit entry.
/// Its answers are never cached (a minted token is one of them).
async fn require_operator(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let mut response = guarded(guard, request, next).await;
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn guarded(Guard { state, action }: Guard, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Err(refused) = same_site(&parts.headers, &state.config.public_urls) {
        return error(refused);
    }
    let Some(id) = session_cookie(&parts.headers) else {
        return error(Code::OperatorSessionRequired.into());
    };
    let operator = match state.engine.operator_session(id).await {
        Ok(o) => o,
        Err(ApiError(r)) => return error(r),
    };
    crate::listener::authenticated();
    parts.extensions.insert(Operator(operator.clone()));
    if action.is_empty() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let target = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => params.iter().next().map(|(_, v)| v.to_string()),
        Err(_) => None,
    }
    .unwrap_or_default();
    // Within axum's default limit, 2 MiB, as the HTTP API's bodies.
    let bytes = match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(b) => b,
        Err(rejection) => return crate::api::unreadable_body(rejection),
    };
    let response = next
        .run(Request::from_parts(
            parts.clone(),
            Body::from(bytes.clone()),
        ))
        .await;
    let (response, code) = answer_code(&parts.method, response).await;
    let mut details = json!({
        "status": response.status().as_u16(),
        "code": code,
    });
    if let Some(query) = parts.uri.query() {
        details["query"] = query.into();
    }
    if !bytes.is_empty() {
        details["request"] = audit_body(&bytes);
    }
    audit(&state, &operator, action, &target, details).await;
    response
}

/// The `code` of a JSON answer (of a request that is not a read), and the answer rebuilt.
async fn answer_code(method: &Method, response: Response) -> (Response, Value) {
    if *method == Method::GET {
        return (response, Value::Null);
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(bytes) => {
            let code = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("code").cloned())
                .unwrap_or(Value::Null);
            (Response::from_parts(parts, Body::from(bytes)), code)
        }
        Err(e) => {
            tracing::error!(error = %e, "an admin answer could not be read for the audit log");
            (error(Code::ServerError.into()), Value::Null)
        }
    }
}

/// A request's body as the audit log keeps it: its JSON, or (not JSON, or too long) its start
/// as text.
fn audit_body(bytes: &[u8]) -> Value {
    if bytes.len() <= MAX_AUDIT_BODY
        && let Ok(v) = serde_json::from_slice::<Value>(bytes)
    {
        return v;
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_AUDIT_BODY)]);
    Value::String(format!("{text}…"))
}

/// Writes an entry to the audit log; a failure is logged (the action was taken).
async fn audit(state: &AppState, operator: &str, action: &str, target: &str, details: Value) {
    let entry = AuditEntry {
        operator: operator.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        details: details.to_string(),
        ..Default::default()
    };
    if let Err(ApiError(r)) = state.engine.audit(entry).await {
        tracing::error!(%operator, %action, %target, code = r.code.as_u32(), "an admin action could not be written to the audit log");
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Login {
    name: String,
    password: String,
}

/// The cookie that holds session `id`, or (`None`) the one that clears it. A session cookie
/// (no expiry): the browser forgets it when it closes; the server ends it after its idle time.
fn cookie(id: Option<&str>) -> HeaderValue {
    let value = match id {
        Some(id) => format!("{COOKIE}={id}; Path={ADMIN_PATH}; Secure; HttpOnly; SameSite=Strict"),
        None => {
            format!("{COOKIE}=; Path={ADMIN_PATH}; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
        }
    };
    HeaderValue::from_str(&value).expect("a session id is base64url")
}

/// `POST /admin/api/login` `{"name", "password"}`: sets the session cookie.
async fn login(
    State(state): State<AppState>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = same_site(&headers, &state.config.public_urls) {
        return error(refused);
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return crate::api::unreadable_body(rejection),
    };
    let req: Login = match json_body(&body) {
        Ok(r) => r,
        Err(r) => return error(r),
    };
    match state
        .engine
        .operator_login(&req.name, &req.password, client)
        .await
    {
        Ok(session) => {
            crate::listener::authenticated();
            audit(
                &state,
                &session.operator,
                "login",
                "",
                json!({ "address": client.to_string() }),
            )
            .await;
            let mut response = Json(json!({
                "code": 0,
                "operator": session.operator,
                "expiresAt": session.expires,
            }))
            .into_response();
            response
                .headers_mut()
                .insert(SET_COOKIE, cookie(Some(&session.id)));
            no_store(&mut response);
            response
        }
        Err(ApiError(r)) => error(r),
    }
}

/// `POST /admin/api/logout`: ends the session and clears the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let id = session_cookie(&headers).unwrap_or_default();
    let mut response = reply(state.engine.operator_logout(id).await, |()| json!({}));
    response.headers_mut().insert(SET_COOKIE, cookie(None));
    response
}

/// `GET /admin/api/me`: who is signed in.
async fn me(Extension(Operator(name)): Extension<Operator>) -> Response {
    Json(json!({ "code": 0, "operator": name })).into_response()
}

/// What the overview shows: what the engine keeps (live sessions and users on this node,
/// long-poll sessions, the nodes of a cluster), and, from the Prometheus metrics over the last
/// few seconds, messages per second, latency percentiles and drops (`overview.rs`; `null`
/// with the metrics off, and `metrics` says why).
pub(crate) fn overview(state: &AppState) -> Value {
    let engine = &state.engine;
    let mut nodes = vec![json!({
        "node": engine.node_id(),
        "self": true,
        "urls": state.config.public_urls,
    })];
    nodes.extend(
        engine
            .cluster_nodes()
            .into_iter()
            .map(|(node, urls)| json!({ "node": node, "self": false, "urls": urls })),
    );
    let mut body = match &state.overview {
        Some(sampler) => sampler.figures(),
        None => crate::overview::figures_off("off"),
    };
    body["connections"] = engine.session_count().into();
    body["usersOnline"] = engine.online_user_count().into();
    body["pollSessions"] = state.polls.len().into();
    body["nodes"] = nodes.into();
    body["serverTime"] = engine.now_ms().into();
    body
}

/// `GET /admin/api/overview`.
async fn overview_route(State(state): State<AppState>) -> Response {
    let mut body = overview(&state);
    body["code"] = 0.into();
    Json(body).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Page {
    /// Below this id (0 or absent: from the newest).
    #[serde(default)]
    before: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /admin/api/audit?before=&limit=`: the audit log, newest first, 50 a page (at most 200).
async fn audit_log(
    State(state): State<AppState>,
    q: Result<Query<Page>, QueryRejection>,
) -> Response {
    let q = match crate::api::query(q) {
        Ok(q) => q,
        Err(r) => return error(r),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    reply(state.engine.audit_log(q.before, limit).await, |entries| {
        let next = if entries.len() == limit {
            entries.last().map_or(0, |e| e.id)
        } else {
            0
        };
        let entries: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "time": e.time,
                    "operator": e.operator,
                    "action": e.action,
                    "target": e.target,
                    "details": serde_json::from_str::<Value>(&e.details).unwrap_or(Value::Null),
                })
            })
            .collect();
        json!({ "entries": entries, "nextBefore": next })
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Find {
    /// Ids that start with this (empty: every user).
    #[serde(default)]
    prefix: String,
    /// After this id, for the next page.
    #[serde(default)]
    after: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /admin/api/users?prefix=&after=&limit=`: the ids of users the server knows that start
/// with `prefix`, in id order, 50 a page (at most 200), with their profiles and status.
async fn find_users(
    State(state): State<AppState>,
    q: Result<Query<Find>, QueryRejection>,
) -> Response {
    let q = match crate::api::query(q) {
        Ok(q) => q,
        Err(r) => return error(r),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    reply(
        state.engine.find_users(&q.prefix, &q.after, limit).await,
        |(users, more)| {
            let next = if more {
                users.last().map(|u| u.user.clone()).unwrap_or_default()
            } else {
                String::new()
            };
            json!({
                "users": users.iter().map(crate::api_users::user_json).collect::<Vec<_>>(),
                "nextAfter": next,
            })
        },
    )
}

/// `GET /admin/api/users/{userId}/devices`: the user's live devices on this node, and whether
/// the user is online on another node of a cluster.
async fn devices(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    let devices: Vec<Value> = state
        .engine
        .devices(&user)
        .iter()
        .map(|d| {
            json!({
                "sessionId": d.session.to_string(),
                "deviceId": d.device,
                "platform": d.platform,
                "connectedAt": d.connected_at,
            })
        })
        .collect();
    Json(json!({
        "code": 0,
        "devices": devices,
        "onlineElsewhere": state.engine.online_on_other_nodes(&user),
    }))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Kick {
    /// This device (every device of the user if absent and no `sessionId` is given).
    device_id: Option<String>,
    /// This session on this node: for an anonymous device.
    session_id: Option<String>,
}

/// `POST /admin/api/users/{userId}/kick` `{"deviceId"?, "sessionId"?}`: disconnects the device
/// (41008, which the SDKs do not reconnect after), on every node.
async fn kick(State(state): State<AppState>, Path(user): Path<String>, body: Bytes) -> Response {
    let req: Kick = if body.iter().all(u8::is_ascii_whitespace) {
        Kick::default()
    } else {
        match json_body(&body) {
            Ok(r) => r,
            Err(r) => return error(r),
        }
    };
    let session = match req.session_id.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return error(Refusal::new(Code::BadRequest, "sessionId is a number"));
        }
    };
    reply(
        state
            .engine
            .kick_device(&user, req.device_id.as_deref(), session),
        |n| json!({ "kicked": n }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_route_has_a_handler_and_delegates_where_the_api_has_it() {
        for (method, path, _) in ADMIN_ROUTES {
            assert!(path.starts_with("/admin/api/"), "{path}");
            let _ = admin_route(method, path);
        }
        assert_eq!(
            api_path("POST", "/admin/api/users/{user_id}/ban"),
            Some("/api/v1/users/{user_id}/ban")
        );
        assert_eq!(api_path("POST", "/admin/api/users/{user_id}/kick"), None);
        // Every route that changes something is audited.
        for (method, path, action) in ADMIN_ROUTES {
            if *method != "GET" {
                assert!(!action.is_empty(), "{method} {path}");
            }
        }
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let public = ["https://chat.example.com/".to_string()];
        let ok = |pairs| same_site(&headers(pairs), &public).is_ok();
        assert!(ok(&[("x-tidings-admin", "1"), ("host", "a.example:9091")]));
        assert!(ok(&[
            ("x-tidings-admin", "1"),
            ("host", "a.example:9091"),
            ("origin", "https://a.example:9091"),
            ("sec-fetch-site", "same-origin"),
        ]));
        assert!(
            ok(&[
                ("x-tidings-admin", "1"),
                ("host", "127.0.0.1:9091"),
                ("origin", "https://chat.example.com"),
            ]),
            "a public URL, behind a proxy that sets its own Host"
        );
        assert!(!ok(&[("host", "a.example")]), "no header");
        assert!(!ok(&[("x-tidings-admin", "yes"), ("host", "a.example")]));
        assert!(!ok(&[
            ("x-tidings-admin", "1"),
            ("host", "a.example"),
            ("origin", "https://evil.example"),
        ]));
        assert!(!ok(&[
            ("x-tidings-admin", "1"),
            ("host", "a.example"),
            ("origin", "null"),
        ]));
        assert!(!ok(&[
            ("x-tidings-admin", "1"),
            ("host", "a.example"),
            ("sec-fetch-site", "cross-site"),
        ]));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE_HEADER,
            HeaderValue::from_static("a=1; tidings_admin=abc; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        let set = cookie(Some("abc"));
        let set = set.to_str().unwrap();
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/admin"] {
            assert!(set.contains(part), "{set}");
        }
    }
}
