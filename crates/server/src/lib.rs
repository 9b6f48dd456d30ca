//! The `tidings` binary's library half: configuration, credentials, and [`start`], which wires a
//! store, the engine and the gateway into a running server. The binary (`main.rs`) adds argument
//! parsing, signals and the client subcommands. Nothing depends on this crate.

pub mod backup;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod metrics;
pub mod operators;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tidings_bus::{Bus, BusEvent};
use tidings_engine::{Engine, EngineConfig};
use tidings_gateway::GatewayConfig;
use tidings_store_postgres::{PostgresConfig, PostgresStore};
use tidings_store_sqlite::{SqliteConfig, SqliteStore};
use tokio::sync::oneshot;

pub use config::{Config, RawConfig, StoreSetting};

/// The database file inside the data directory.
pub const DB_FILE: &str = "tidings.db";

/// Raises this process's open-file soft limit to its hard limit; returns the new soft limit.
/// `serve` (one descriptor per connection) and `tidings bench` (its load's connections) call it.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(0)
        }
    }
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// The app credentials, and whether this start created them.
    pub credentials: tidings_engine::AppCredentials,
    pub created_credentials: bool,
    pub engine: Engine,
    /// The store, which other nodes in this process may share.
    pub store: Arc<dyn tidings_store::Store>,
    /// The bus to the other nodes of a cluster.
    bus: Option<Arc<dyn Bus>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The listener's TLS, when on: [`tidings_gateway::Tls::reload`] reads the files again.
    pub tls: Option<tidings_gateway::Tls>,
    /// The plain health listener's address, when one is configured.
    pub health_addr: Option<SocketAddr>,
}

impl Running {
    /// The base URL the listener serves: `https://` with TLS on, else `http://`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

impl Running {
    /// Shuts down in order (see `tidings_gateway::serve`) and waits for it to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.context("server task")??;
        if let Some(bus) = self.bus.take() {
            bus.close();
        }
        Ok(())
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("server task")??;
        Ok(())
    }

    /// Starts the orderly shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Opens the data directory (creating it, its database and its credentials as needed), binds
/// the listener, and serves.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    start_with_clock(config, tidings_engine::system_clock()).await
}

/// [`start`] with the time taken from `clock` (ms since the Unix epoch) instead of the system's:
/// every time the server stores, sends or checks (tokens' expiry included) comes from it.
pub async fn start_with_clock(
    config: &Config,
    clock: tidings_engine::Clock,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let sqlite = |path: &std::path::Path| -> anyhow::Result<Arc<dyn tidings_store::Store>> {
        let mut store_config = SqliteConfig::new(path);
        store_config.durability = config.durability;
        Ok(Arc::new(
            SqliteStore::open(&store_config).context("opening the database")?,
        ))
    };
    let store: Arc<dyn tidings_store::Store> = match &config.store {
        StoreSetting::DataDir => sqlite(&config.data_dir.join(DB_FILE))?,
        StoreSetting::Sqlite(path) => sqlite(path)?,
        // Commits are always flushed there (`synchronous_commit = on`): `durability` is the
        // SQLite store's setting.
        StoreSetting::Postgres(url) => Arc::new(
            PostgresStore::connect(&PostgresConfig {
                // The notifications due that a node's commits write are its own to send.
                node: if config.nats.is_some() || config.in_process_bus.is_some() {
                    config.node_id.clone()
                } else {
                    String::new()
                },
                ..PostgresConfig::new(url.as_str())
            })
            .await
            .context("connecting to PostgreSQL")?,
        ),
    };
    start_node(config, store, true, clock).await
}

/// The key download links are signed with: one of their own, derived from the app secret, so
/// that every node of a cluster (sharing the credentials) honours the others' links.
pub fn file_link_key(credentials: &tidings_engine::AppCredentials) -> String {
    // The same key as before API signatures covered requests (HMAC over "files" + "links"),
    // so links already handed out stay valid.
    tidings_engine::auth::hmac_hex(&credentials.app_secret, b"fileslinks")
}

/// [`start`] on a store already open that other nodes in this process share (as tests run a
/// cluster's nodes); stopping this node leaves the store open.
pub async fn start_with_store(
    config: &Config,
    store: Arc<dyn tidings_store::Store>,
) -> anyhow::Result<Running> {
    start_node(config, store, false, tidings_engine::system_clock()).await
}

async fn start_node(
    config: &Config,
    store: Arc<dyn tidings_store::Store>,
    owns_store: bool,
    clock: tidings_engine::Clock,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let (credentials, created_credentials) = credentials::load_or_create(&config.data_dir)?;
    let tls = match &config.tls {
        Some(files) => Some(
            tidings_gateway::Tls::load(&files.cert, &files.key)
                .context("loading the TLS certificate and key")?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let health = match config.health_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding the health listener {at}"))?,
        ),
        None => None,
    };
    let health_addr = health.as_ref().map(|l| l.local_addr()).transpose()?;

    let mut engine_config = EngineConfig::new(credentials.clone());
    engine_config.heartbeat = config.heartbeat;
    engine_config.ack_timeout = config.ack_timeout;
    engine_config.device_policy = config.device_policy;
    engine_config.token_ttl = config.token_ttl;
    engine_config.max_content_bytes = config.max_content_bytes;
    engine_config.outbound_queue_bytes = config.outbound_queue_bytes;
    engine_config.max_inflight = config.max_inflight;
    engine_config.max_sessions_per_user = config.max_sessions_per_user;
    engine_config.send_rate = config.send_rate;
    engine_config.send_burst = config.send_burst;
    engine_config.recall_window = config.recall_window;
    engine_config.search = config.search;
    engine_config.owns_store = owns_store;
    engine_config.max_group_members = config.max_group_members;
    engine_config.chatrooms = config.chatrooms.clone();
    engine_config.api_signature = config.api_signature;
    let hooks: Option<Arc<dyn tidings_engine::hooks::Hooks>> =
        if config.webhook_url.is_some() || config.moderation_url.is_some() {
            let mut hook_config = tidings_hooks::HookConfig::new(
                config.webhook_url.clone(),
                config.moderation_url.clone(),
            );
            hook_config.retry_base = config.webhook_retry;
            hook_config.moderation_timeout = config.moderation_timeout;
            hook_config.fail_open = config.moderation_fail_open;
            Some(tidings_hooks::HttpHooks::start(
                hook_config,
                &engine_config.credentials,
            )?)
        } else {
            None
        };
    let pusher: Option<Arc<dyn tidings_engine::push::Pusher>> = if config.push {
        let key = credentials::load_or_create_vapid(&config.data_dir)?;
        let mut push_config = tidings_push::PushConfig::new();
        push_config.subject = config.vapid_subject.clone();
        push_config.attempts = config.push_attempts;
        push_config.retry_base = config.push_retry;
        mobile_push(&config.mobile_push, &mut push_config)?;
        let push = tidings_push::Push::start(push_config, key, store.clone(), clock.clone())?;
        // What a stop left due is sent now, before any device connects.
        match push.recover().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                notifications = n,
                "sending notifications due before the start"
            ),
            Err(e) => {
                tracing::error!(error = %e, "reading the notifications due failed: they wait for the next start")
            }
        }
        Some(push)
    } else {
        None
    };
    let engine = Engine::start_with_pusher(engine_config, store.clone(), clock, hooks, pusher);
    engine
        .load_sensitive_words()
        .await
        .map_err(|e| anyhow::anyhow!("reading the sensitive words: {e}"))?;
    let file_key = file_link_key(&credentials);
    let files = match &config.files_store {
        config::FilesStore::DataDir => tidings_files::Files::local(
            &config.data_dir.join("files"),
            file_key.as_bytes(),
            config.max_upload_bytes,
        ),
        config::FilesStore::S3(bucket) => {
            tidings_files::Files::s3(bucket, file_key.as_bytes(), config.max_upload_bytes)
        }
    }
    .map_err(|e| anyhow::anyhow!("opening the file store: {e}"))?
    .with_max_link_secs(config.max_file_link.as_secs());
    // Never more connections than there are file descriptors for: past that, accepting fails
    // and nobody gets in, while at the cap the oldest unauthenticated ones make room.
    let budget = config::connection_budget();
    let connections = match config.max_connections {
        Some(n) if n > budget => {
            tracing::warn!(
                max_connections = n,
                budget,
                "max_connections is above what the open-file limit allows: using the limit"
            );
            budget
        }
        Some(n) => n,
        None => budget,
    };
    let gateway_config = GatewayConfig {
        max_frame_bytes: config.max_frame_bytes,
        handshake_timeout: config.handshake_timeout,
        public_urls: config.public_urls.clone(),
        files: Some(files),
        accounts: config.accounts,
        receipt_wait: config.receipt_wait,
        room_heartbeat: config.room_heartbeat,
        request_timeout: config.request_timeout,
        upload_timeout: config.upload_timeout,
        max_connections: connections,
        max_unauthenticated: config.max_unauthenticated,
        max_unauthenticated_per_address: config.max_unauthenticated_per_address,
        trusted_proxies: config.trusted_proxies.clone(),
        client_address_header: config.client_address_header.clone(),
        tls: tls.clone(),
        tls_watch_interval: config
            .tls
            .as_ref()
            .map_or(GatewayConfig::default().tls_watch_interval, |t| t.watch),
        metrics: metrics::source(),
        writer_threads: tidings_gateway::writer_threads_for(config.worker_threads),
        ..GatewayConfig::default()
    };
    let joined: Option<(Arc<dyn Bus>, tokio::sync::mpsc::Receiver<BusEvent>)> =
        match (&config.in_process_bus, &config.nats) {
            (Some(_), Some(_)) => {
                anyhow::bail!("a node is on NATS or on an in-process bus, not on both")
            }
            (Some(hub), None) => {
                let (bus, events) = hub.join(&config.node_id)?;
                Some((bus, events))
            }
            (None, Some(url)) => {
                // NATS is pinged as often as nodes say they are alive (no more than 4 times a
                // second), so a connection that died without a word is found about as soon
                // as a silent node is.
                let ping = config
                    .alive_interval
                    .max(std::time::Duration::from_millis(250));
                let (bus, events) =
                    tidings_bus::NatsBus::connect(url, &config.cluster, &config.node_id, ping)
                        .await?;
                Some((bus, events))
            }
            (None, None) => None,
        };
    let bus = match joined {
        Some((bus, events)) => {
            let urls = if config.public_urls.is_empty() {
                let scheme = if tls.is_some() { "https" } else { "http" };
                vec![format!("{scheme}://{addr}")]
            } else {
                config.public_urls.clone()
            };
            engine.join_cluster(
                bus.clone(),
                tidings_engine::cluster::ClusterConfig {
                    node: config.node_id.clone(),
                    urls,
                    alive_interval: config.alive_interval,
                },
                events,
            );
            tracing::info!(node = %config.node_id, cluster = %config.cluster, "joined the cluster");
            Some(bus)
        }
        None => None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(tidings_gateway::serve_with_health(
        listener,
        health,
        engine.clone(),
        gateway_config,
        async move {
            // A dropped sender means the owner is gone: shut down too.
            let _ = stopped.await;
        },
    ));
    Ok(Running {
        addr,
        credentials,
        created_credentials,
        engine,
        store,
        bus,
        stop: Some(stop),
        task,
        tls,
        health_addr,
    })
}

/// Reads the mobile push providers' credentials into the push settings.
fn mobile_push(
    settings: &config::MobilePush,
    push: &mut tidings_push::PushConfig,
) -> anyhow::Result<()> {
    if let Some(fcm) = &settings.fcm {
        let text = std::fs::read_to_string(&fcm.credentials).with_context(|| {
            format!(
                "reading the FCM service account {}",
                fcm.credentials.display()
            )
        })?;
        let account = tidings_push::fcm::ServiceAccount::from_json(&text)
            .with_context(|| format!("reading {}", fcm.credentials.display()))?;
        let mut fcm_config = tidings_push::fcm::FcmConfig::new(account);
        fcm_config.endpoint = fcm.endpoint.clone();
        push.fcm = Some(fcm_config);
    }
    if let Some(apns) = &settings.apns {
        let key = std::fs::read_to_string(&apns.key)
            .with_context(|| format!("reading the APNs key {}", apns.key.display()))?;
        let mut apns_config =
            tidings_push::apns::ApnsConfig::new(key, apns.key_id.clone(), apns.team_id.clone());
        apns_config.production = apns.endpoint.clone();
        apns_config.sandbox = apns.sandbox_endpoint.clone();
        push.apns = Some(apns_config);
    }
    push.apns_topic = settings.apns_topic.clone();
    push.data_only = settings.data_only;
    push.localized = settings.localized;
    push.mentions_pass_mute = settings.mentions_pass_mute;
    push.allow_private_endpoints = settings.allow_private_endpoints;
    Ok(())
}
