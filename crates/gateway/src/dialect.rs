//! The seed dialects' entry points (`tidings-dialects`): each WebSocket path with its dialect,
//! run by the connection driver (`driver.rs`), and seed 001's sending over HTTP.

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use tidings_dialects::Dialect;
use tidings_engine::{Refusal, SendRequest};
use tidings_proto::Code;

use crate::AppState;
use crate::driver::{Direct, Shared};

/// Path of the seed-000 dialect (protobuf, binary frames).
pub const SEED000_PATH: &str = "/ws";
/// Path of the seed-001 dialect (JSON packets).
pub const SEED001_PATH: &str = "/json/ws";
/// Where seed-001 messages are sent over HTTP.
pub const SEED001_HTTP_PATH: &str = "/json/message";
/// Path of the seed-002 dialect (rooms); the token is the query's `token`.
pub const SEED002_PATH: &str = "/ws/room";
/// Path of the seed-003 dialect (private messages); the last segment is the user's token.
pub const SEED003_PATH: &str = "/imserver/{token}";

pub async fn seed000(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let dialect = tidings_dialects::seed000::Seed000::new();
    upgrade(ws, state, dialect, Label::Seed000)
}

pub async fn seed001(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let dialect = tidings_dialects::seed001::Seed001::new(state.engine.vapid_public_key());
    upgrade(ws, state, dialect, Label::Seed001)
}

/// `POST /json/message`: a seed-001 `MESSAGE`'s data sent over HTTP, by the user a bearer
/// token names (`Authorization: Bearer`, the `auth` an AUTH answer gives), or by the user the
/// body's `from` names in a request signed like the HTTP API's.
pub async fn seed001_send(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return crate::api::unreadable_body(rejection),
    };
    let value: serde_json::Value = match crate::api::json_body(&body) {
        Ok(v) => v,
        Err(r) => return crate::api::error(r),
    };
    let sender = if headers.contains_key(AUTHORIZATION) {
        match crate::accounts::bearer(&state, &headers).await {
            Ok(user) => user,
            Err(response) => return response,
        }
    } else {
        if let Err(response) =
            crate::api::authenticate(&state, &method, &uri, &headers, &body).await
        {
            return response;
        }
        let from = &value["from"];
        match from.as_str().or_else(|| from["name"].as_str()) {
            Some(name) => name.to_string(),
            None => {
                return crate::api::error(Refusal::new(
                    Code::BadRequest,
                    "a signed request names its sender in \"from\"",
                ));
            }
        }
    };
    let send = match seed001_send_request(value, tidings_engine::new_uid()) {
        Ok(send) => send,
        Err(r) => return crate::api::error(r),
    };
    crate::api::reply(
        state.engine.send_as(&sender, send).await,
        |posted| serde_json::json!({ "mid": posted.uid }),
    )
}

/// The message a `POST /json/message` body asks to send.
pub(crate) fn seed001_send_request(
    body: serde_json::Value,
    client_msg_id: String,
) -> Result<SendRequest, Refusal> {
    let data = serde_json::from_value(body).map_err(|e| {
        Refusal::new(
            Code::BadRequest,
            format!("the body is not MESSAGE data: {e}"),
        )
    })?;
    tidings_dialects::seed001::send_request(data, client_msg_id, "", true)
}

#[derive(serde::Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn seed002(
    ws: WebSocketUpgrade,
    Query(q): Query<TokenQuery>,
    State(state): State<AppState>,
) -> Response {
    let heartbeat = state.config.room_heartbeat.as_millis() as u64;
    let dialect = tidings_dialects::seed002::Seed002::new(q.token, heartbeat);
    upgrade(ws, state, dialect, Label::Seed002)
}

pub async fn seed003(
    ws: WebSocketUpgrade,
    Path(token): Path<String>,
    State(state): State<AppState>,
) -> Response {
    let dialect = tidings_dialects::seed003::Seed003::new(token);
    upgrade(ws, state, dialect, Label::Seed003)
}

/// The dialect as the connection metrics name it.
use crate::metrics::Dialect as Label;

fn upgrade<D: Dialect>(
    ws: WebSocketUpgrade,
    state: AppState,
    dialect: D,
    label: Label,
) -> Response {
    let limit = state.config.max_frame_bytes;
    let ws = ws
        .read_buffer_size(1024)
        .max_message_size(limit)
        .max_frame_size(limit);
    crate::driver::upgrade::<Shared<D>>(ws, state, dialect, label, Direct::Frames, None)
}
