//! The Tidings gateway: every listener a client or an app server talks to.
//!
//! - `GET /v1/ws`: the native protocol over WebSocket (`connection.rs`, its translation in
//!   `tidings_dialects::native`). Every WebSocket connection, native or seed, is run by one
//!   driver (`driver.rs`): one reader loop and one writer task per connection, a handshake
//!   deadline, heartbeat supervision, and the engine session's bounded outbox as the only
//!   outbound queue.
//! - `/v1/poll`: the same protocol's JSON frames over HTTP long-polling (`poll.rs`).
//! - `/api/v1/...`: the HTTP API for app servers, each request signed over what it does
//!   (`api.rs`).
//! - `GET /navi`: the endpoints a client may use, and the limits it should keep.
//! - `/v1/files`: uploads by users (their own token as `Authorization: Bearer`), and downloads
//!   by signed links (`files.rs`).
//! - `/v1/accounts/...`: built-in accounts for end users, unless turned off (`accounts.rs`).
//! - `GET /ws`, `GET /json/ws` (and `POST /json/message`), `GET /ws/room?token=…`,
//!   `GET /imserver/{token}`: the seed dialects (`dialect.rs`: their entry points).
//! - `GET /`, `/demo/…`, `/sdk/…`: the demo chat page and the browser SDK (`web.rs`).
//! - `/admin`, `/admin/api/...`: the admin console for operators (`admin.rs`).
//! - `GET /healthz` (alive) and `GET /readyz` (the store answers; in a cluster, the bus is
//!   connected), also on the optional plain health listener ([`serve_with_health`]).
//! - [`tls`]: HTTPS and WSS on the same listener, the certificate reloaded without a restart.
//! - [`inputs`]: the readers of untrusted bodies as pure functions, for the fuzz targets.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so tests bind port 0.
//!
//! Architecture invariant: the gateway holds no business rule. It decodes frames, hands them to
//! the engine, and encodes what the engine queues; all decisions are the engine's.

mod accounts;
mod admin;
mod admission;
mod api;
mod api_chatrooms;
mod api_groups;
mod api_users;
mod connection;
mod dialect;
mod direct;
mod driver;
mod files;
mod gate;
pub mod inputs;
mod listener;
mod liveness;
pub mod metrics;
mod navi;
mod overview;
mod poll;
mod profiles;
pub mod tls;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use tidings_engine::Engine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::{ADMIN_ROUTES, COOKIE as ADMIN_COOKIE, LOGIN_PATH as ADMIN_LOGIN_PATH};
pub use listener::MAX_REFUSING;
pub use overview::MetricsSource;
pub use tls::{Tls, TlsError};

/// Path of the native WebSocket endpoint.
pub const WS_PATH: &str = "/v1/ws";
/// Path of the navigation endpoint: where a client finds the endpoints it may use.
pub const NAVI_PATH: &str = "/navi";
/// Path of the file upload endpoint (and, under it, of the files).
pub const FILES_PATH: &str = "/v1/files";

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
    /// Base URLs (`https://host`) `GET /navi` lists; empty: the one each request came to.
    pub public_urls: Vec<String>,
    /// Where uploaded files go; `None`: the file routes answer 404.
    pub files: Option<tidings_files::Files>,
    /// Whether the built-in accounts (`/v1/accounts`) are served.
    pub accounts: bool,
    /// How long a dialect that reports delivery to the sender (seed 001's MESSAGE_REPLY) waits
    /// for every recipient to have a message before it reports.
    pub receipt_wait: Duration,
    /// The heartbeat interval seed-002 clients keep (3 silent intervals drop one).
    pub room_heartbeat: Duration,
    /// Time a client has to send a request's head (and, on a kept-alive connection, to start
    /// the next one), and then its body.
    pub request_timeout: Duration,
    /// Time a client has to send a file upload's body.
    pub upload_timeout: Duration,
    /// Connections open at once; past it, a connection that has not authenticated is closed
    /// to make room, and if none is left the new one is refused (HTTP 503, 41006).
    pub max_connections: usize,
    /// Connections that have not authenticated yet, in all; past it, the oldest is closed.
    pub max_unauthenticated: usize,
    /// Connections that have not authenticated yet, per client address (IPv6: per /64);
    /// past it, that address's oldest is closed.
    pub max_unauthenticated_per_address: usize,
    /// Peers (addresses or networks) whose `client_address_header` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header a trusted proxy names the client in (`X-Forwarded-For` style: a
    /// comma-separated list, each proxy appending the address it got the request from).
    pub client_address_header: axum::http::HeaderName,
    /// TLS on the listener (HTTPS, WSS); `None`: plain HTTP.
    pub tls: Option<Tls>,
    /// How often the certificate and key files are checked for changes (a change reloads them).
    pub tls_watch_interval: Duration,
    /// The process's Prometheus metrics, rendered: the admin console's overview reads its
    /// rates, latencies and drops from them. `None` (metrics off): those figures are `null`.
    pub metrics: Option<MetricsSource>,
    /// Threads of the connections' writers' own runtime; 0: the writers run on the runtime
    /// that serves, which is what one CPU wants (two runtimes there only add a thread switch to
    /// every message).
    pub writer_threads: usize,
}

impl Default for GatewayConfig {
    /// 64 KiB frames, 10 s handshake, 10 s writes, 10 s shutdown grace, `/navi` from the
    /// request, no file store, accounts on, receipt reports after at most 10 s, 2 min seed-002
    /// heartbeat, 10 s for a request's head and body, 5 min for an upload's body, 10,000
    /// connections, of which at most 2,048 unauthenticated and 256 per address, no trusted
    /// proxies (their header: `X-Forwarded-For`), no TLS (its files checked every 5 s when on).
    fn default() -> GatewayConfig {
        GatewayConfig {
            max_frame_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            public_urls: Vec::new(),
            files: None,
            accounts: true,
            receipt_wait: Duration::from_secs(10),
            room_heartbeat: Duration::from_secs(120),
            request_timeout: Duration::from_secs(10),
            upload_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            max_unauthenticated: 2048,
            max_unauthenticated_per_address: 256,
            trusted_proxies: Vec::new(),
            client_address_header: axum::http::HeaderName::from_static("x-forwarded-for"),
            tls: None,
            tls_watch_interval: Duration::from_secs(5),
            metrics: None,
            writer_threads: writer_threads_for(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
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
    /// The runtime connections' writer tasks run on (see [`serve`]).
    egress: tokio::runtime::Handle,
    /// Long-poll sessions (`poll.rs`).
    polls: std::sync::Arc<poll::Polls>,
    /// Profiles the dialects show, kept briefly (`profiles.rs`).
    profiles: std::sync::Arc<profiles::ProfileCache>,
    /// The id the next WebSocket connection's log span gets (`conn`).
    connection_ids: Arc<std::sync::atomic::AtomicU64>,
    /// The admin overview's readings of the metrics, when they are on (`overview.rs`).
    overview: Option<Arc<overview::Sampler>>,
}

impl AppState {
    /// A new connection's id, for its log span.
    fn connection_id(&self) -> u64 {
        self.connection_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// The HTTP API's routes, `(method, path)`. The router is built from this list, and the OpenAPI
/// document served at `/api/v1/openapi.json` (`openapi.json`) lists exactly these: a test keeps
/// the two equal.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/users/{user_id}/token"),
    ("POST", "/api/v1/users/{user_id}/revoke"),
    ("GET", "/api/v1/users/{user_id}/groups"),
    ("POST", "/api/v1/users/query"),
    ("GET", "/api/v1/users/{user_id}"),
    ("PUT", "/api/v1/users/{user_id}"),
    ("POST", "/api/v1/users/{user_id}/ban"),
    ("POST", "/api/v1/users/{user_id}/unban"),
    ("GET", "/api/v1/users/{user_id}/blocklist"),
    ("POST", "/api/v1/users/{user_id}/blocklist"),
    ("GET", "/api/v1/users/{user_id}/push-tokens"),
    ("POST", "/api/v1/users/{user_id}/push-tokens"),
    ("POST", "/api/v1/users/{user_id}/push-tokens/remove"),
    ("POST", "/api/v1/messages/broadcast"),
    ("POST", "/api/v1/messages/recall"),
    ("GET", "/api/v1/history"),
    ("GET", "/api/v1/sensitive-words"),
    ("POST", "/api/v1/sensitive-words"),
    ("POST", "/api/v1/sensitive-words/remove"),
    ("POST", "/api/v1/messages"),
    ("POST", "/api/v1/messages/system"),
    ("POST", "/api/v1/groups"),
    ("GET", "/api/v1/groups/{group_id}"),
    ("PATCH", "/api/v1/groups/{group_id}"),
    ("DELETE", "/api/v1/groups/{group_id}"),
    ("GET", "/api/v1/groups/{group_id}/members"),
    ("POST", "/api/v1/groups/{group_id}/members"),
    ("POST", "/api/v1/groups/{group_id}/members/remove"),
    ("POST", "/api/v1/groups/{group_id}/owner"),
    ("POST", "/api/v1/groups/{group_id}/mute"),
    ("POST", "/api/v1/chatrooms"),
    ("GET", "/api/v1/chatrooms/{chatroom_id}"),
    ("DELETE", "/api/v1/chatrooms/{chatroom_id}"),
    ("GET", "/api/v1/chatrooms/{chatroom_id}/members"),
    ("POST", "/api/v1/chatrooms/{chatroom_id}/kick"),
    ("POST", "/api/v1/chatrooms/{chatroom_id}/ban"),
    ("POST", "/api/v1/chatrooms/{chatroom_id}/mute"),
    ("GET", "/api/v1/chatrooms/{chatroom_id}/entries"),
    ("POST", "/api/v1/chatrooms/{chatroom_id}/entries"),
    ("POST", "/api/v1/chatrooms/{chatroom_id}/entries/remove"),
    ("GET", "/api/v1/openapi.json"),
];

/// The handler of one of [`API_ROUTES`].
fn api_route(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("POST", "/api/v1/users/{user_id}/token") => post(api::mint_token),
        ("POST", "/api/v1/users/{user_id}/revoke") => post(api::revoke),
        ("GET", "/api/v1/users/{user_id}/groups") => get(api_groups::user_groups),
        ("POST", "/api/v1/users/query") => post(api_users::query),
        ("GET", "/api/v1/users/{user_id}") => get(api_users::get),
        ("PUT", "/api/v1/users/{user_id}") => put(api_users::put),
        ("POST", "/api/v1/users/{user_id}/ban") => post(api_users::ban),
        ("POST", "/api/v1/users/{user_id}/unban") => post(api_users::unban),
        ("GET", "/api/v1/users/{user_id}/blocklist") => get(api_users::blocklist),
        ("POST", "/api/v1/users/{user_id}/blocklist") => post(api_users::set_blocklist),
        ("GET", "/api/v1/users/{user_id}/push-tokens") => get(api_users::push_tokens),
        ("POST", "/api/v1/users/{user_id}/push-tokens") => post(api_users::register_push_token),
        ("POST", "/api/v1/users/{user_id}/push-tokens/remove") => {
            post(api_users::remove_push_token)
        }
        ("POST", "/api/v1/messages/broadcast") => post(api_users::broadcast),
        ("POST", "/api/v1/messages/recall") => post(api_users::recall),
        ("GET", "/api/v1/history") => get(api_users::history),
        ("GET", "/api/v1/sensitive-words") => get(api_users::words),
        ("POST", "/api/v1/sensitive-words") => post(api_users::add_words),
        ("POST", "/api/v1/sensitive-words/remove") => post(api_users::remove_words),
        ("POST", "/api/v1/messages") => post(api_users::send),
        ("POST", "/api/v1/messages/system") => post(api_users::send_system),
        ("POST", "/api/v1/groups") => post(api_groups::create),
        ("GET", "/api/v1/groups/{group_id}") => get(api_groups::get),
        ("PATCH", "/api/v1/groups/{group_id}") => patch(api_groups::update),
        ("DELETE", "/api/v1/groups/{group_id}") => delete(api_groups::dismiss),
        ("GET", "/api/v1/groups/{group_id}/members") => get(api_groups::members),
        ("POST", "/api/v1/groups/{group_id}/members") => post(api_groups::add_members),
        ("POST", "/api/v1/groups/{group_id}/members/remove") => post(api_groups::remove_members),
        ("POST", "/api/v1/groups/{group_id}/owner") => post(api_groups::transfer),
        ("POST", "/api/v1/groups/{group_id}/mute") => post(api_groups::mute),
        ("POST", "/api/v1/chatrooms") => post(api_chatrooms::create),
        ("GET", "/api/v1/chatrooms/{chatroom_id}") => get(api_chatrooms::get),
        ("DELETE", "/api/v1/chatrooms/{chatroom_id}") => delete(api_chatrooms::destroy),
        ("GET", "/api/v1/chatrooms/{chatroom_id}/members") => get(api_chatrooms::members),
        ("POST", "/api/v1/chatrooms/{chatroom_id}/kick") => post(api_chatrooms::kick),
        ("POST", "/api/v1/chatrooms/{chatroom_id}/ban") => post(api_chatrooms::ban),
        ("POST", "/api/v1/chatrooms/{chatroom_id}/mute") => post(api_chatrooms::mute),
        ("GET", "/api/v1/chatrooms/{chatroom_id}/entries") => get(api_chatrooms::entries),
        ("POST", "/api/v1/chatrooms/{chatroom_id}/entries") => post(api_chatrooms::set_entry),
        ("POST", "/api/v1/chatrooms/{chatroom_id}/entries/remove") => {
            post(api_chatrooms::remove_entry)
        }
        ("GET", "/api/v1/openapi.json") => get(api::openapi),
        // Only reachable by editing API_ROUTES without this table; every test would fail.
        _ => panic!("no handler for {method} {path}"),
    }
}

fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route(WS_PATH, get(connection::upgrade))
        .route(dialect::SEED000_PATH, get(dialect::seed000))
        .route(dialect::SEED001_PATH, get(dialect::seed001))
        .route(dialect::SEED001_HTTP_PATH, post(dialect::seed001_send))
        .route(dialect::SEED002_PATH, get(dialect::seed002))
        .route(dialect::SEED003_PATH, get(dialect::seed003))
        .route(poll::POLL_PATH, post(poll::open))
        .route("/v1/poll/{session}", get(poll::poll).post(poll::send))
        .route("/", get(web::index))
        .route("/demo/{*path}", get(web::demo))
        .route("/sdk/{*path}", get(web::sdk))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route(NAVI_PATH, get(navi::navi))
        .route(
            FILES_PATH,
            post(files::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{id}", get(files::download))
        .route("/v1/files/{id}/thumbnail", get(files::thumbnail))
        .route("/v1/files/{id}/url", post(files::link));
    // Routes of one path with different methods are merged by axum. Every API route but the
    // OpenAPI document is signed, checked by one layer before its handler runs.
    for (method, path) in API_ROUTES {
        let mut route = api_route(method, path);
        if *path != api::OPENAPI_PATH {
            route = route.route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                api::require_signature,
            ));
        }
        router = router.route(path, route);
    }
    if state.config.accounts {
        router = accounts::routes(router);
    }
    router = admin::routes(router, &state);
    router
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
}

/// The routes of the plain health listener: nothing but health, so it can be reached without
/// TLS (by a load balancer or an orchestrator's probe) without exposing anything else.
fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
}

/// Connections the health listener holds at once; none ever authenticates, so past it the
/// oldest is closed.
const HEALTH_CONNECTIONS: usize = 64;

/// Serves until `shutdown` completes, then shuts down in order: stop accepting and stop reading
/// client frames; let the engine commit and answer what is queued and send DISCONNECT to every
/// connection; wait (up to the grace period) for connections to flush and close.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_health(listener, None, engine, config, shutdown).await
}

/// [`serve`], with a plain-HTTP listener serving only `GET /healthz` (everything else 404, no
/// redirect) when `health` is given.
pub async fn serve_with_health(
    listener: TcpListener,
    health: Option<TcpListener>,
    engine: Engine,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    // Connections' writers run on a runtime of their own ([`writer_threads_for`]), with as many
    // threads as the one that reads, unless that is one thread. A chatroom item wakes the writer of every member at once; on one runtime, a frame
    // a client sends meanwhile waits behind all of those wake-ups before it is read (measured:
    // a sender's PUBACK p50 191 ms in a 10,000-member room at 1,000 messages a second, 91–108 ms
    // with the writers apart; see docs/performance.md). The operating system shares the cores
    // between the two runtimes' threads in slices of milliseconds instead.
    let (writers, egress) = match config.writer_threads {
        0 => (tokio::runtime::Handle::current(), Egress(None)),
        threads => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("tidings-egress")
                .enable_all()
                .build()?;
            (runtime.handle().clone(), Egress(Some(runtime)))
        }
    };
    let state = AppState {
        engine: engine.clone(),
        config: config.clone(),
        stop: stop.clone(),
        connections: connections.clone(),
        egress: writers,
        polls: Default::default(),
        profiles: Default::default(),
        connection_ids: Arc::new(1.into()),
        overview: config.metrics.clone().map(overview::Sampler::new),
    };
    if let Some(sampler) = &state.overview {
        tokio::spawn(sampler.clone().run(stop.child_token()));
    }
    let health = health.map(|listener| {
        let listening = listener::Listening::new(
            health_router(state.clone()),
            admission::Limits {
                connections: HEALTH_CONNECTIONS,
                unauthenticated: HEALTH_CONNECTIONS,
                unauthenticated_per_address: HEALTH_CONNECTIONS,
            },
            listener::Proxies::new(Vec::new(), config.client_address_header.clone()),
            config.request_timeout,
            config.request_timeout,
        );
        (listener, Arc::new(listening))
    });
    if let Some(tls) = &config.tls {
        tokio::spawn(
            tls.clone()
                .watch(config.tls_watch_interval, stop.child_token()),
        );
    }
    let listening = Arc::new(
        listener::Listening::new(
            router(state),
            admission::Limits {
                connections: config.max_connections.max(1),
                unauthenticated: config.max_unauthenticated.max(1),
                unauthenticated_per_address: config.max_unauthenticated_per_address.max(1),
            },
            listener::Proxies::new(
                config.trusted_proxies.clone(),
                config.client_address_header.clone(),
            ),
            config.request_timeout,
            config.upload_timeout,
        )
        .with_tls(config.tls.clone()),
    );
    let http = TaskTracker::new();
    let accepting = tokio::spawn(listener::accept_loop(
        listener,
        listening,
        stop.clone(),
        http.clone(),
    ));
    if let Some((listener, listening)) = health {
        http.spawn(listener::accept_loop(
            listener,
            listening,
            stop.clone(),
            http.clone(),
        ));
    }
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
    let accepted = accepting.await;
    http.close();
    if tokio::time::timeout(config.shutdown_grace, http.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = http.len(),
            "HTTP connections did not close within the grace period"
        );
    }
    // Writers still running past the grace period are dropped with it.
    drop(egress);
    accepted.map_err(std::io::Error::other)
}

/// Threads of the connections' writers' runtime for a server whose runtime has
/// `worker_threads`: as many, or none (the writers share it) when that is one. On one CPU a
/// second runtime only adds a thread switch to every message: measured with one pinned core at
/// 1,000 messages a second, 9% less CPU with the writers on the same thread (see
/// docs/performance.md).
pub fn writer_threads_for(worker_threads: usize) -> usize {
    if worker_threads > 1 {
        worker_threads
    } else {
        0
    }
}

/// The writers' runtime. Dropped (shut down without waiting for its tasks) wherever [`serve`]
/// ends, even if its future is dropped on a runtime thread, where dropping a runtime itself
/// would panic.
struct Egress(Option<tokio::runtime::Runtime>);

impl Drop for Egress {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let doc: serde_json::Value = serde_json::from_str(api::OPENAPI).unwrap();
        let mut documented = BTreeSet::new();
        for (path, methods) in doc["paths"].as_object().unwrap() {
            for method in methods.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> = API_ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, served);
        // Every route has its handler.
        for (method, path) in API_ROUTES {
            let _ = api_route(method, path);
        }
    }
}
