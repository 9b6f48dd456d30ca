//! The HTTP API for app servers (`/api/v1`) and the health endpoints.
//!
//! Every API request but the OpenAPI document is signed over what it does: headers `App-Key`,
//! `Nonce`, `Timestamp` and `Signature = hex(HMAC-SHA256(appSecret, Nonce + "\n" + Timestamp +
//! "\n" + METHOD + "\n" + path-and-query + "\n" + hex(SHA-256(body))))`
//! (`tidings_engine::auth::sign_request`). [`require_signature`] checks it, once for every
//! signed route, before the handler runs; an older form is accepted besides it only when the
//! `api_signature` setting names one. Requests more than 5 minutes from the server clock, or
//! reusing a nonce, are refused. Errors are JSON `{"code": n, "message": text}` with the codes
//! of `tidings_proto::Code`.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_engine::auth::ApiRequest;
use tidings_engine::{ApiError, Refusal};
use tidings_proto::Code;

use crate::AppState;

/// The longest token lifetime an API caller may ask for: one year.
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

pub async fn healthz(State(state): State<AppState>) -> Response {
    Json(json!({
        "status": "ok",
        "sessions": state.engine.session_count(),
        "pollSessions": state.polls.len(),
    }))
    .into_response()
}

/// How long `/readyz` waits for the store to answer.
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 when the store answers a cheap query and, in a cluster, the bus is
/// connected; 503 otherwise, the body saying which part is not ready (why, in the log only:
/// a database error can name hosts and databases).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.engine.readiness(READY_DEADLINE).await;
    if let Err(e) = &r.store {
        tracing::warn!(error = %e, "not ready: the store does not answer");
    }
    let mut body = json!({
        "status": if r.ready() { "ready" } else { "not ready" },
        "store": if r.store.is_ok() { "ok" } else { "unavailable" },
    });
    if let Some(connected) = r.bus {
        body["bus"] = json!(if connected { "ok" } else { "disconnected" });
    }
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The base URLs (`scheme://host[:port]`) clients reach the service at: the configured public
/// URLs, or the one the request came to (its `Host`, with `https` when the listener speaks TLS
/// or `X-Forwarded-Proto: https` says a TLS proxy is in front).
pub(crate) fn base_urls(state: &AppState, headers: &HeaderMap) -> Result<Vec<String>, Refusal> {
    if !state.config.public_urls.is_empty() {
        return Ok(state.config.public_urls.clone());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = header("host") else {
        return Err(Refusal::new(
            Code::BadRequest,
            "the request has no Host header",
        ));
    };
    let scheme = match header("x-forwarded-proto") {
        _ if state.config.tls.is_some() => "https",
        Some("https") => "https",
        _ => "http",
    };
    Ok(vec![format!("{scheme}://{host}")])
}

/// Where the OpenAPI document is served: the one API route that is not signed.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json` (unsigned).
pub async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

pub async fn not_found() -> Response {
    error(Code::NotFound.into())
}

/// A path served with other methods than the one asked.
pub async fn method_not_allowed() -> Response {
    let mut response = error(Refusal::new(
        Code::BadRequest,
        "this path does not take this method",
    ));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

fn status_of(code: Code) -> StatusCode {
    match code {
        Code::SignatureMissing
        | Code::SignatureInvalid
        | Code::TimestampOutOfWindow
        | Code::NonceReused
        | Code::AppKeyUnknown
        | Code::TokenInvalid
        | Code::TokenWrongApp
        | Code::TokenExpired
        | Code::TokenRevoked
        | Code::BadCredentials
        | Code::OperatorSessionRequired => StatusCode::UNAUTHORIZED,
        Code::UserBanned | Code::FileLinkRefused | Code::CrossSiteRefused => StatusCode::FORBIDDEN,
        Code::NotFound
        | Code::GroupNotFound
        | Code::ChatroomNotFound
        | Code::PollSessionUnknown
        | Code::FileNotFound => StatusCode::NOT_FOUND,
        Code::GroupExists | Code::ChatroomExists | Code::AccountTaken | Code::UserIsAccount => {
            StatusCode::CONFLICT
        }
        Code::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
        Code::FileTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::FileTypeNotAllowed => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::ServerShutdown => StatusCode::SERVICE_UNAVAILABLE,
        Code::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// `{"code": 0, …}` with the fields `ok` makes of a call's result, or the call's error.
pub(crate) fn reply<T>(result: Result<T, ApiError>, ok: impl FnOnce(T) -> Value) -> Response {
    match result {
        Ok(v) => {
            let mut body = ok(v);
            body["code"] = 0.into();
            Json(body).into_response()
        }
        Err(ApiError(refusal)) => error(refusal),
    }
}

pub(crate) fn error(refusal: Refusal) -> Response {
    (
        status_of(refusal.code),
        Json(json!({ "code": refusal.code.as_u32(), "message": refusal.text() })),
    )
        .into_response()
}

/// The body as JSON of type `T`, or the error that says what is wrong with it.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            Code::BadRequest,
            format!("the body is not the JSON this route takes: {e}"),
        )
    })
}

/// The body as JSON, or returns (from the calling handler) the error response. The request's
/// signature was checked before the handler ran ([`require_signature`]).
macro_rules! parse_or_refuse {
    ($body:expr) => {{
        match $crate::api::json_body(&$body) {
            Ok(b) => b,
            Err(r) => return $crate::api::error(r),
        }
    }};
}
pub(crate) use parse_or_refuse;

/// The query string as `T`, or the error that says what is wrong with it.
pub(crate) fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Refusal> {
    q.map(|q| q.0).map_err(|e| {
        Refusal::new(
            Code::BadRequest,
            format!("bad query string: {}", e.body_text()),
        )
    })
}

/// Checks a request's signature against what it does (its method, path and query as received,
/// and its body) and records its nonce; the error response if it does not hold.
pub(crate) async fn authenticate(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request = ApiRequest {
        app_key: header("app-key"),
        nonce: header("nonce"),
        timestamp: header("timestamp"),
        signature: header("signature"),
        method: method.as_str(),
        // The request target as received: hyper keeps it as sent, percent-encoding included.
        path_and_query: uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()),
        body,
    };
    state
        .engine
        .check_api_request(&request)
        .await
        .map_err(|e| error(e.0))?;
    crate::listener::authenticated();
    Ok(())
}

/// The answer to a body that could not be read (too large, or cut off): 42007 in JSON, with
/// the status the failure calls for (413 for too large).
pub(crate) fn unreadable_body(rejection: axum::extract::rejection::BytesRejection) -> Response {
    let mut response = error(Refusal::new(
        Code::BadRequest,
        format!("the body could not be read: {}", rejection.body_text()),
    ));
    *response.status_mut() = rejection.status();
    response
}

/// The layer in front of every signed API route: reads the body (within the route's body
/// limit), checks the signature over the whole request, and hands the request on with its body
/// only if it holds. Being one layer on the routes rather than a call in each handler, no
/// signed route can forget it.
pub(crate) async fn require_signature(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match Bytes::from_request(Request::from_parts(parts.clone(), body), &state).await {
        Ok(body) => body,
        Err(rejection) => return unreadable_body(rejection),
    };
    if let Err(response) =
        authenticate(&state, &parts.method, &parts.uri, &parts.headers, &body).await
    {
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TokenRequest {
    ttl_secs: Option<u64>,
}

/// `POST /api/v1/users/{userId}/token`, optional body `{"ttlSecs": n}`.
pub async fn mint_token(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Response {
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => {
                return error(Refusal::new(
                    Code::BadRequest,
                    r#"the body must be empty or {"ttlSecs": n}"#,
                ));
            }
        }
    };
    let ttl = match request.ttl_secs {
        Some(0) => return error(Refusal::new(Code::BadRequest, "ttlSecs must be positive")),
        Some(n) if n > MAX_TTL_SECS => {
            return error(Refusal::new(
                Code::BadRequest,
                format!("ttlSecs is at most {MAX_TTL_SECS}"),
            ));
        }
        other => other.map(Duration::from_secs),
    };
    match state.engine.mint_token(&user_id, ttl).await {
        Ok((token, expires_at)) => Json(json!({
            "code": 0,
            "userId": user_id,
            "token": token,
            "expiresAt": expires_at,
        }))
        .into_response(),
        Err(ApiError(refusal)) => error(refusal),
    }
}

/// `POST /api/v1/users/{userId}/revoke`: bumps the user's token version.
pub async fn revoke(State(state): State<AppState>, Path(user_id): Path<String>) -> Response {
    reply(
        state.engine.revoke_tokens(&user_id).await,
        |version| json!({ "userId": user_id, "tokenVersion": version }),
    )
}
