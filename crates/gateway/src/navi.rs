//! `GET /navi`: where a client connects. Apart from the API (whose helpers it uses) and the
//! long-poll transport (whose paths and waits it names), so that neither of those needs the
//! other.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{base_urls, error};

/// `GET /navi`: every node's WebSocket and long-poll endpoints, and what a client should keep
/// to. Without configured public URLs, the node is named as the request reached it (its `Host`
/// header; `https`/`wss` with TLS on, or `X-Forwarded-Proto` for the scheme behind a TLS proxy).
pub async fn navi(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut bases = match base_urls(&state, &headers) {
        Ok(b) => b,
        Err(r) => return error(r),
    };
    // The other live nodes of a cluster, after this one.
    for (_, urls) in state.engine.cluster_nodes() {
        for url in urls {
            if !bases.contains(&url) {
                bases.push(url);
            }
        }
    }
    let nodes: Vec<Value> = bases
        .iter()
        .map(|base| {
            let ws = match base.strip_prefix("https://") {
                Some(rest) => format!("wss://{rest}"),
                None => format!("ws://{}", base.trim_start_matches("http://")),
            };
            json!({
                "ws": format!("{ws}{}", crate::WS_PATH),
                "poll": format!("{base}{}", crate::poll::POLL_PATH),
                "http": base,
            })
        })
        .collect();
    let engine = state.engine.config();
    Json(json!({
        "code": 0,
        "protocolVersion": tidings_proto::PROTOCOL_VERSION,
        "nodes": nodes,
        "heartbeatMs": engine.heartbeat.as_millis() as u64,
        "pollWaitMs": crate::poll::DEFAULT_WAIT.as_millis() as u64,
        "pollMaxWaitMs": crate::poll::MAX_WAIT.as_millis() as u64,
        "maxFrameBytes": state.config.max_frame_bytes,
        "maxContentBytes": engine.max_content_bytes,
        // The `applicationServerKey` for Web Push; null while push is off.
        "vapidPublicKey": state.engine.vapid_public_key(),
        "serverTime": state.engine.now_ms(),
    }))
    .into_response()
}
