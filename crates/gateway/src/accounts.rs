//! Built-in accounts (`/v1/accounts`), for teams without an app server: registration, login,
//! and what a logged-in user does with their own account. End users' browsers call these, so
//! they are not signed; requests about "me" carry `Authorization: Bearer <token>`, which is
//! checked as CONNECT checks a token (`Engine::authenticate`). The routes exist only while
//! accounts are on ([`crate::GatewayConfig::accounts`]); otherwise their paths are unknown
//! (404, 42008). The rules (passwords, rate limits, who may register) are the engine's.

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tidings_engine::{AccountToken, ApiError, Refusal};
use tidings_proto::Code;

use crate::AppState;
use crate::api::{error, json_body, reply};
use crate::api_users::{Profile, set_profile, user_answer};
use crate::listener::ClientAddr;

/// The largest body an account request may have: a profile's fields at their largest fit.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Adds the account routes to `router`.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let accounts = Router::new()
        .route("/v1/accounts/register", post(register))
        .route("/v1/accounts/login", post(login))
        .route("/v1/accounts/logout", post(logout))
        .route(
            "/v1/accounts/me",
            get(me).patch(update_me).delete(delete_me),
        )
        .route("/v1/accounts/me/password", post(change_password))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    router.merge(accounts)
}

/// Reads the body as JSON of type `T`, or returns (from the calling handler) the error response.
macro_rules! body {
    ($body:expr) => {
        match $body {
            Ok(bytes) => match json_body(&bytes) {
                Ok(b) => b,
                Err(r) => return error(r),
            },
            Err(rejection) => return body_refused(rejection),
        }
    };
}

/// A body that could not be read: larger than [`MAX_BODY_BYTES`], or cut off.
fn body_refused(rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let mut response = error(Refusal::new(
        Code::BadRequest,
        format!(
            "the body could not be read (at most {MAX_BODY_BYTES} bytes): {}",
            rejection.body_text()
        ),
    ));
    *response.status_mut() = status;
    response
}

/// The user a request's bearer token is for, or returns (from the calling handler) the refusal.
macro_rules! bearer {
    ($state:expr, $headers:expr) => {
        match bearer(&$state, &$headers).await {
            Ok(user) => user,
            Err(r) => return r,
        }
    };
}

/// The user a request's `Authorization: Bearer` token is for, or the answer refusing it.
pub(crate) async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = token else {
        return Err(challenge(Refusal::new(
            Code::TokenInvalid,
            "send the header Authorization: Bearer <token>",
        )));
    };
    let user = state.engine.authenticate(token).await.map_err(challenge)?;
    crate::listener::authenticated();
    Ok(user)
}

/// A refusal of a bearer token, with the challenge a 401 carries (RFC 6750).
fn challenge(refusal: Refusal) -> Response {
    let mut response = error(refusal);
    if response.status() == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn token_reply(result: Result<AccountToken, ApiError>) -> Response {
    reply(
        result,
        |t| json!({ "userId": t.user, "token": t.token, "expiresAt": t.expires_at }),
    )
}

/// 204 with no body, or the error.
fn no_content<T>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(ApiError(r)) => error(r),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Register {
    account: String,
    password: String,
    name: Option<String>,
}

/// `POST /v1/accounts/register` `{"account", "password", "name"?}`.
async fn register(
    State(state): State<AppState>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: Register = body!(body);
    token_reply(
        state
            .engine
            .register_account(&req.account, &req.password, req.name, client)
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Login {
    account: String,
    password: String,
}

/// `POST /v1/accounts/login` `{"account", "password"}`.
async fn login(
    State(state): State<AppState>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: Login = body!(body);
    token_reply(
        state
            .engine
            .login(&req.account, &req.password, client)
            .await,
    )
}

/// `GET /v1/accounts/me`.
async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let user = bearer!(state, headers);
    user_answer(&state, user).await
}

/// `PATCH /v1/accounts/me` `{"name"?, "portrait"?, "extra"?}`.
async fn update_me(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let user = bearer!(state, headers);
    let req: Profile = body!(body);
    set_profile(&state, &user, req).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// `POST /v1/accounts/me/password` `{"oldPassword", "newPassword"}`.
async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let user = bearer!(state, headers);
    let req: PasswordChange = body!(body);
    token_reply(
        state
            .engine
            .change_password(&user, &req.old_password, &req.new_password)
            .await,
    )
}

/// `POST /v1/accounts/logout`: revokes every token of the user.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let user = bearer!(state, headers);
    no_content(state.engine.revoke_tokens(&user).await)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Deletion {
    password: String,
}

/// `DELETE /v1/accounts/me` `{"password"}`.
async fn delete_me(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let user = bearer!(state, headers);
    let req: Deletion = body!(body);
    no_content(state.engine.delete_account(&user, &req.password).await)
}
