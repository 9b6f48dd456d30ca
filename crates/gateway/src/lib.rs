//! The Tidings gateway: every listener a client or an app server talks to.
//!
//! - `GET /v1/ws`: the native protocol over WebSocket (`connection.rs`), one reader loop and one
//!   writer task per connection, a handshake deadline, heartbeat supervision, and the engine
//!   session's bounded outbox as the only outbound queue.
//! - `/api/v1/...`: the signed HTTP API for app servers (`api.rs`).
//! - `GET /healthz`.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so tests bind port 0.
//!
//! Architecture invariant: the gateway holds no business rule. It decodes frames, hands them to
//! the engine, and encodes what the engine queues; all decisions are the engine's.

mod api;
mod api_groups;
mod connection;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tidings_engine::Engine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Path of the native WebSocket endpoint.
pub const WS_PATH: &str = "/v1/ws";

/// Listener settings. Defaults are documented on [`GatewayConfig::default`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest frame the codec accepts; a larger one ends the connection with 40003.
    pub max_frame_bytes: usize,
    /// Time allowed between the WebSocket upgrade and the CONNECT frame.
    pub handshake_timeout: Duration,
    /// Time allowed for one write to the socket before the connection is dropped.
    pub write_timeout: Duration,
    /// How long shutdown waits for connections to drain before it gives up on them.
    pub shutdown_grace: Duration,
}

impl Default for GatewayConfig {
    /// 64 KiB frames, 10 s handshake, 10 s writes, 10 s shutdown grace.
    fn default() -> GatewayConfig {
        GatewayConfig {
            max_frame_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
struct AppState {
    engine: Engine,
    config: GatewayConfig,
    /// Cancelled at shutdown: connections stop reading client frames.
    stop: CancellationToken,
    connections: TaskTracker,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route(WS_PATH, get(connection::upgrade))
        .route("/healthz", get(api::healthz))
        .route("/api/v1/users/{user_id}/token", post(api::mint_token))
        .route("/api/v1/users/{user_id}/revoke", post(api::revoke))
        .route(
            "/api/v1/users/{user_id}/groups",
            get(api_groups::user_groups),
        )
        .route("/api/v1/groups", post(api_groups::create))
        .route(
            "/api/v1/groups/{group_id}",
            get(api_groups::get)
                .patch(api_groups::update)
                .delete(api_groups::dismiss),
        )
        .route(
            "/api/v1/groups/{group_id}/members",
            get(api_groups::members).post(api_groups::add_members),
        )
        .route(
            "/api/v1/groups/{group_id}/members/remove",
            post(api_groups::remove_members),
        )
        .route(
            "/api/v1/groups/{group_id}/owner",
            post(api_groups::transfer),
        )
        .route("/api/v1/groups/{group_id}/mute", post(api_groups::mute))
        .fallback(api::not_found)
        .with_state(state)
}

/// Serves until `shutdown` completes, then shuts down in order: stop accepting and stop reading
/// client frames; let the engine commit and answer what is queued and send DISCONNECT to every
/// connection; wait (up to the grace period) for connections to flush and close.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let state = AppState {
        engine: engine.clone(),
        config: config.clone(),
        stop: stop.clone(),
        connections: connections.clone(),
    };
    // Small frames must not wait for Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let server =
        axum::serve(listener, router(state)).with_graceful_shutdown(stop.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });
    shutdown.await;
    tracing::info!("shutting down: no new connections, committing what is queued");
    stop.cancel();
    engine.shutdown().await;
    connections.close();
    if tokio::time::timeout(config.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "connections did not close within the grace period"
        );
    }
    match tokio::time::timeout(config.shutdown_grace, server).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(std::io::Error::other(join)),
        Err(_) => {
            tracing::warn!("HTTP server did not stop within the grace period");
            Ok(())
        }
    }
}
