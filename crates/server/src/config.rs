//! Server configuration in two phases: [`RawConfig`] mirrors what flags, environment variables
//! (`TIDINGS_*`) and the TOML file can say, every field optional; [`RawConfig::resolve`] merges
//! them (flags, then environment, then file, then defaults) and validates the result into
//! [`Config`]. Every default is written next to its field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use tidings_engine::DevicePolicy;
use tidings_engine::auth::SignatureForm;
use tidings_store_sqlite::Durability;

/// `tidings serve` options. Each may also come from the environment or the config file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// TOML config file; its keys are these options' long names with `_` for `-`.
    #[arg(long, env = "TIDINGS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:9091.
    #[arg(long, env = "TIDINGS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Base URLs clients reach the service at, comma-separated (`https://chat.example.com`),
    /// listed by `GET /navi`. Default: the scheme and host each navigation request came to.
    #[arg(long, env = "TIDINGS_PUBLIC_URLS", value_delimiter = ',')]
    pub public_urls: Option<Vec<String>>,
    /// Where uploaded files are kept: `data` (the `files` directory of the data directory) or
    /// `s3://BUCKET` (S3-compatible storage, configured by the standard `AWS_*` environment
    /// variables). Default data.
    #[arg(long, env = "TIDINGS_FILES_STORE")]
    pub files_store: Option<String>,
    /// The largest file a user may upload, in bytes. Default 20971520 (20 MiB).
    #[arg(long, env = "TIDINGS_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// The longest a file link lives, in seconds: an upload's own links expire after it, and
    /// a fresh link asked for longer gets this. Default 604800 (7 days).
    #[arg(long, env = "TIDINGS_MAX_FILE_LINK_SECS")]
    pub max_file_link_secs: Option<u64>,
    /// Data directory (database, credentials). Default ./data.
    #[arg(long, env = "TIDINGS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where messages and state are stored: a `postgres://` (or `postgresql://`) URL names a
    /// PostgreSQL database, which several nodes may share; anything else is the path of a
    /// SQLite database file. Default: `tidings.db` in the data directory.
    #[arg(long, env = "TIDINGS_STORE")]
    pub store: Option<String>,
    /// Heartbeat interval clients must keep, in ms; 3 silent intervals drop a connection.
    /// Default 30000.
    #[arg(long, env = "TIDINGS_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Heartbeat interval seed-002 clients (`/ws/room`) keep, in ms; 3 silent intervals drop
    /// one. Default 120000 (the seed's 2 minutes).
    #[arg(long, env = "TIDINGS_ROOM_HEARTBEAT_MS")]
    pub room_heartbeat_ms: Option<u64>,
    /// Time before an unacknowledged push is resent with the dup flag, in ms. Default 10000.
    #[arg(long, env = "TIDINGS_ACK_TIMEOUT_MS")]
    pub ack_timeout_ms: Option<u64>,
    /// How long the seed-001 dialect waits for a message's targets to confirm it before it
    /// reports (MESSAGE_REPLY), in ms. Default 10000.
    #[arg(long, env = "TIDINGS_RECEIPT_WAIT_MS")]
    pub receipt_wait_ms: Option<u64>,
    /// `multi` (several devices per user) or `single` (a new login kicks the old one).
    /// Default multi.
    #[arg(long, env = "TIDINGS_DEVICE_POLICY")]
    pub device_policy: Option<String>,
    /// Lifetime of minted tokens, in seconds. Default 2592000 (30 days).
    #[arg(long, env = "TIDINGS_TOKEN_TTL_SECS")]
    pub token_ttl_secs: Option<u64>,
    /// Largest frame accepted from a client, in bytes. Default 65536.
    #[arg(long, env = "TIDINGS_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Largest message content, in bytes. Default 16384.
    #[arg(long, env = "TIDINGS_MAX_CONTENT_BYTES")]
    pub max_content_bytes: Option<usize>,
    /// Outbound queue per connection, in bytes; overflow disconnects the client as a slow
    /// consumer. Default 1048576.
    #[arg(long, env = "TIDINGS_OUTBOUND_QUEUE_BYTES")]
    pub outbound_queue_bytes: Option<usize>,
    /// Unacknowledged pushes allowed per connection before it is disconnected. Default 1024.
    #[arg(long, env = "TIDINGS_MAX_INFLIGHT")]
    pub max_inflight: Option<usize>,
    /// Connections one user may have open at once on this node; past it, CONNECT is refused
    /// with 40034 (a device id connecting again replaces its old connection). Default 64.
    #[arg(long, env = "TIDINGS_MAX_SESSIONS_PER_USER")]
    pub max_sessions_per_user: Option<usize>,
    /// Messages a user may send per second, over all of their devices; 0 turns the limit off.
    /// Default 5.
    #[arg(long, env = "TIDINGS_SEND_RATE")]
    pub send_rate: Option<u32>,
    /// Messages a user may send at once before the rate applies. Default 10.
    #[arg(long, env = "TIDINGS_SEND_BURST")]
    pub send_burst: Option<u32>,
    /// How long after sending a user may recall a message, in seconds; 0: any time.
    /// Default 120.
    #[arg(long, env = "TIDINGS_RECALL_WINDOW_SECS")]
    pub recall_window_secs: Option<u64>,
    /// `on` (index every message's text for search) or `off` (no search; the writer does less
    /// per message). Default on.
    #[arg(long, env = "TIDINGS_SEARCH")]
    pub search: Option<String>,
    /// The most members a group may have. Default 3000.
    #[arg(long, env = "TIDINGS_MAX_GROUP_MEMBERS")]
    pub max_group_members: Option<u64>,
    /// The most members a chatroom may have. Default 100000.
    #[arg(long, env = "TIDINGS_MAX_CHATROOM_MEMBERS")]
    pub max_chatroom_members: Option<u64>,
    /// Messages each chatroom keeps in memory for joins and history queries. Default 100.
    #[arg(long, env = "TIDINGS_CHATROOM_HISTORY")]
    pub chatroom_history: Option<usize>,
    /// `on` (joining a chatroom that does not exist makes it) or `off` (only the app server
    /// makes chatrooms; such a join gets 23410). Default on.
    #[arg(long, env = "TIDINGS_CHATROOM_AUTO_CREATE")]
    pub chatroom_auto_create: Option<String>,
    /// How long a chatroom made by a join lives once its last member left, in seconds.
    /// Default 600.
    #[arg(long, env = "TIDINGS_CHATROOM_IDLE_SECS")]
    pub chatroom_idle_secs: Option<u64>,
    /// The app server's URL for after-send callbacks (none by default).
    #[arg(long, env = "TIDINGS_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The first retry of a failed callback after this many ms, doubling. Default 1000.
    #[arg(long, env = "TIDINGS_WEBHOOK_RETRY_MS")]
    pub webhook_retry_ms: Option<u64>,
    /// The app server's URL for before-send moderation (none by default).
    #[arg(long, env = "TIDINGS_MODERATION_URL")]
    pub moderation_url: Option<String>,
    /// How long moderation may take, in ms. Default 2000.
    #[arg(long, env = "TIDINGS_MODERATION_TIMEOUT_MS")]
    pub moderation_timeout_ms: Option<u64>,
    /// `open` (store a message when moderation does not answer) or `closed` (refuse it with
    /// 40026). Default open.
    #[arg(long, env = "TIDINGS_MODERATION_FAIL")]
    pub moderation_fail: Option<String>,
    /// The `Signature` forms the HTTP API accepts from the app server: `request` (only the
    /// form that covers the method, path and query, and body), `legacy` (also the older HMAC
    /// over nonce and timestamp alone) or `seed004` (also seed 004's SHA1 of secret, nonce and
    /// timestamp). The older forms let a captured set of headers be replayed on any route with
    /// any body while its nonce is unused; see docs/protocol.md. Default request.
    #[arg(long, env = "TIDINGS_API_SIGNATURE")]
    pub api_signature: Option<String>,
    /// Time allowed for CONNECT after the WebSocket opens, in ms. Default 10000.
    #[arg(long, env = "TIDINGS_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// Time a client has to send a request's head (request line and headers; on a kept-alive
    /// connection, counted from the end of the last answer), and then its body, in ms.
    /// Default 10000.
    #[arg(long, env = "TIDINGS_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Time a client has to send a file upload's body, in ms. Default 300000.
    #[arg(long, env = "TIDINGS_UPLOAD_TIMEOUT_MS")]
    pub upload_timeout_ms: Option<u64>,
    /// Connections open at once. Past it, the oldest connection that has not authenticated is
    /// closed to make room; with none, the new one is refused (HTTP 503, 41006). Default: the
    /// open-file limit less a reserve for the server's own files (at most 256).
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections that have not authenticated yet (no valid token, session or signature),
    /// in all; past it, the oldest is closed. Default 2048.
    #[arg(long, env = "TIDINGS_MAX_UNAUTHENTICATED")]
    pub max_unauthenticated: Option<usize>,
    /// Connections that have not authenticated yet, per client address (IPv6: per /64);
    /// past it, that address's oldest is closed. Default 256.
    #[arg(long, env = "TIDINGS_MAX_UNAUTHENTICATED_PER_ADDRESS")]
    pub max_unauthenticated_per_address: Option<usize>,
    /// Reverse proxies (addresses or CIDR networks, comma-separated) whose
    /// `client_address_header` names the client; everyone else's is ignored. Default none.
    #[arg(long, env = "TIDINGS_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// The header trusted proxies name the client in, `X-Forwarded-For` style (each proxy
    /// appends the address it got the request from). Default X-Forwarded-For.
    #[arg(long, env = "TIDINGS_CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<String>,
    /// `full` (fsync every commit: survives power loss) or `process` (survives a process crash
    /// only), for the SQLite store; PostgreSQL always flushes a commit before it is
    /// acknowledged (`synchronous_commit = on`). Default full.
    #[arg(long, env = "TIDINGS_DURABILITY")]
    pub durability: Option<String>,
    /// Threads that serve connections. With one, the connections' writers share it; with
    /// more, they run on as many threads of their own, so a frame a client sends is not read
    /// behind a large room's writes. Default: the CPUs this process may run on.
    #[arg(long, env = "TIDINGS_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// `on` (users may register accounts and log in with a password at `/v1/accounts`, for
    /// teams without an app server) or `off` (tokens come only from an app server or
    /// `tidings token`). Default on.
    #[arg(long, env = "TIDINGS_ACCOUNTS")]
    pub accounts: Option<String>,
    /// `on` (Web Push notifications to users with no device online, signed with a VAPID key
    /// kept in `vapid.key` in the data directory) or `off`. Default on.
    #[arg(long, env = "TIDINGS_PUSH")]
    pub push: Option<String>,
    /// The contact push services see in the VAPID JWT (`sub`): a `mailto:` or `https:` URL.
    /// Default mailto:admin@localhost.
    #[arg(long, env = "TIDINGS_VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,
    /// The NATS server (`nats://host:4222`) of a cluster: with it, this node is one of several
    /// serving the same users from a shared PostgreSQL store. Default: none (one node).
    #[arg(long, env = "TIDINGS_NATS")]
    pub nats: Option<String>,
    /// The cluster's name: nodes of one cluster share it (it prefixes their NATS subjects).
    /// Default `default`.
    #[arg(long, env = "TIDINGS_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's id in the cluster, unique among its nodes. Default: made up at start.
    #[arg(long, env = "TIDINGS_NODE_ID")]
    pub node_id: Option<String>,
    /// How often a node tells the others it is alive, in ms; one silent for 3 intervals is
    /// taken as gone. Default 2000.
    #[arg(long, env = "TIDINGS_ALIVE_MS")]
    pub alive_ms: Option<u64>,
    /// Attempts per push notification (network errors, 429 and 5xx are retried). Default 4.
    #[arg(long, env = "TIDINGS_PUSH_ATTEMPTS")]
    pub push_attempts: Option<u32>,
    /// The first retry of a failed push notification after this many ms, doubling.
    /// Default 1000.
    #[arg(long, env = "TIDINGS_PUSH_RETRY_MS")]
    pub push_retry_ms: Option<u64>,
    /// Firebase Cloud Messaging: the service account's key file (JSON, from the Firebase
    /// console). Default: none (FCM off).
    #[arg(long, env = "TIDINGS_PUSH_FCM_CREDENTIALS")]
    pub push_fcm_credentials: Option<PathBuf>,
    /// The FCM endpoint's base URL. Default https://fcm.googleapis.com.
    #[arg(long, env = "TIDINGS_PUSH_FCM_ENDPOINT")]
    pub push_fcm_endpoint: Option<String>,
    /// Apple Push Notification service: the token signing key (`.p8` file). With
    /// `push_apns_key_id` and `push_apns_team_id`. Default: none (APNs off).
    #[arg(long, env = "TIDINGS_PUSH_APNS_KEY")]
    pub push_apns_key: Option<PathBuf>,
    /// The APNs key's id (10 characters, from the Apple developer account).
    #[arg(long, env = "TIDINGS_PUSH_APNS_KEY_ID")]
    pub push_apns_key_id: Option<String>,
    /// The Apple developer team id (10 characters).
    #[arg(long, env = "TIDINGS_PUSH_APNS_TEAM_ID")]
    pub push_apns_team_id: Option<String>,
    /// The APNs topic (the app's bundle id) for tokens registered without an app id.
    #[arg(long, env = "TIDINGS_PUSH_APNS_TOPIC")]
    pub push_apns_topic: Option<String>,
    /// APNs production base URL. Default https://api.push.apple.com.
    #[arg(long, env = "TIDINGS_PUSH_APNS_ENDPOINT")]
    pub push_apns_endpoint: Option<String>,
    /// APNs sandbox (development builds) base URL. Default https://api.sandbox.push.apple.com.
    #[arg(long, env = "TIDINGS_PUSH_APNS_SANDBOX_ENDPOINT")]
    pub push_apns_sandbox_endpoint: Option<String>,
    /// `on`: notifications carry no message text, only data for the app (an APNs background
    /// push, an FCM data message, a Web Push payload without text). Default off.
    #[arg(long, env = "TIDINGS_PUSH_DATA_ONLY")]
    pub push_data_only: Option<String>,
    /// `on`: notifications carry localisation keys and arguments instead of text, for the app
    /// to translate (docs/operations.md lists the keys). Default off.
    #[arg(long, env = "TIDINGS_PUSH_LOCALIZED")]
    pub push_localized: Option<String>,
    /// `on`: an @mention of the user, or of everyone, is notified in a conversation the user
    /// muted. Default on.
    #[arg(long, env = "TIDINGS_PUSH_MENTIONS_PASS_MUTE")]
    pub push_mentions_pass_mute: Option<String>,
    /// `on`: Web Push endpoints may be plain http or on private networks (loopback, RFC 1918,
    /// link local), for tests and closed networks. Off, only https endpoints of public hosts
    /// are registered and sent to, so a client cannot steer the server's requests at its own
    /// network. Default off.
    #[arg(long, env = "TIDINGS_PUSH_ALLOW_PRIVATE_ENDPOINTS")]
    pub push_allow_private_endpoints: Option<String>,
    /// Log lines on stderr: `text` (for people; coloured only when stderr is a terminal) or
    /// `json` (one object per line, with the fields of the spans it happened in: a
    /// connection's `conn`, `session` and `user`). `TIDINGS_LOG` picks what is logged.
    /// Default text.
    #[arg(long, env = "TIDINGS_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Address of the Prometheus metrics listener (`GET /metrics`), apart from the public
    /// one; `off` serves and records no metrics. Default 127.0.0.1:9092.
    #[arg(long, env = "TIDINGS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The listener's TLS certificate chain (PEM, the server's certificate first): with
    /// `tls_key`, the listener serves HTTPS and WSS only. Reloaded on SIGHUP and when the file
    /// changes. Default: none (plain HTTP).
    #[arg(long, env = "TIDINGS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC). Default: none.
    #[arg(long, env = "TIDINGS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How often the certificate and key files are checked for changes, in ms; a change
    /// reloads them. Default 5000.
    #[arg(long, env = "TIDINGS_TLS_WATCH_MS")]
    pub tls_watch_ms: Option<u64>,
    /// An address for a plain-HTTP listener serving only the health checks (`GET /healthz`,
    /// `GET /readyz`; anything else 404), for probes that cannot speak TLS. Default: none.
    #[arg(long, env = "TIDINGS_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where uploaded files are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesStore {
    /// `files/` in the data directory.
    DataDir,
    /// An S3-compatible bucket.
    S3(String),
}

/// The store the server runs on.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSetting {
    /// The embedded SQLite database `tidings.db` in the data directory.
    DataDir,
    /// An embedded SQLite database file elsewhere.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its URL.
    Postgres(String),
}

impl std::fmt::Debug for StoreSetting {
    // The URL may hold a password: only its scheme is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSetting::DataDir => f.write_str("DataDir"),
            StoreSetting::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreSetting::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_urls: Vec<String>,
    pub files_store: FilesStore,
    pub max_upload_bytes: usize,
    /// The longest a file link lives.
    pub max_file_link: Duration,
    pub data_dir: PathBuf,
    pub store: StoreSetting,
    pub heartbeat: Duration,
    pub room_heartbeat: Duration,
    pub ack_timeout: Duration,
    pub receipt_wait: Duration,
    pub device_policy: DevicePolicy,
    pub token_ttl: Duration,
    pub max_frame_bytes: usize,
    pub max_content_bytes: usize,
    pub outbound_queue_bytes: usize,
    pub max_inflight: usize,
    pub max_sessions_per_user: usize,
    /// Messages per second per user (0: no limit), and the burst above it.
    pub send_rate: u32,
    pub send_burst: u32,
    /// Zero: recall at any time.
    pub recall_window: Duration,
    pub search: bool,
    pub max_group_members: u64,
    pub chatrooms: tidings_engine::ChatroomSettings,
    pub webhook_url: Option<String>,
    pub webhook_retry: Duration,
    pub moderation_url: Option<String>,
    pub moderation_timeout: Duration,
    pub moderation_fail_open: bool,
    /// The older API signature form accepted besides the request form (`Request`: none).
    pub api_signature: SignatureForm,
    pub handshake_timeout: Duration,
    pub request_timeout: Duration,
    pub upload_timeout: Duration,
    /// `None`: from the open-file limit at start ([`connection_budget`]).
    pub max_connections: Option<usize>,
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_address: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub client_address_header: axum::http::HeaderName,
    pub durability: Durability,
    /// Threads of the runtime that serves connections (its writers get as many more, or
    /// share it when this is 1).
    pub worker_threads: usize,
    /// Whether the built-in accounts are served.
    pub accounts: bool,
    /// Whether Web Push notifications are sent.
    pub push: bool,
    pub vapid_subject: String,
    /// The NATS server of a cluster, if this node is part of one.
    pub nats: Option<String>,
    /// The in-process bus of a cluster whose nodes all run in this process, instead of NATS.
    /// No file, flag or environment variable sets it: a program that starts several nodes
    /// hands each a clone of one hub.
    pub in_process_bus: Option<tidings_bus::MemoryHub>,
    pub cluster: String,
    pub node_id: String,
    pub alive_interval: Duration,
    pub push_attempts: u32,
    pub push_retry: Duration,
    /// The mobile push providers and what notifications carry.
    pub mobile_push: MobilePush,
    pub log_format: LogFormat,
    /// Where `GET /metrics` is served; `None`: metrics are off.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS on the listener, if on.
    pub tls: Option<TlsFiles>,
    pub health_listen: Option<SocketAddr>,
}

/// The listener's certificate and key files, and how often they are checked for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub watch: Duration,
}

impl Config {
    /// The defaults, with another data directory: what tests and embedding start from.
    pub fn with_data_dir(data_dir: &Path) -> Config {
        RawConfig {
            data_dir: Some(data_dir.to_path_buf()),
            ..RawConfig::default()
        }
        .resolve_without_file()
        .expect("defaults are valid")
    }
}

/// The connections the open-file limit leaves room for: the limit less a reserve for the
/// database, the listener, files being served, clients of other services and the sockets of
/// refused connections (256, or half of a small limit). Every connection's socket holds one of
/// these until it is closed, lingering included.
pub fn connection_budget() -> usize {
    let files = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let files = usize::try_from(files).unwrap_or(usize::MAX);
    const _: () = assert!(tidings_gateway::MAX_REFUSING < 256 / 4);
    files - (files / 2).min(256)
}

/// The CPUs this process may run on (its affinity mask, as `taskset` sets it).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn positive(name: &str, v: u64) -> anyhow::Result<u64> {
    if v == 0 {
        bail!("{name} must be greater than 0");
    }
    Ok(v)
}

/// Firebase Cloud Messaging's settings.
#[derive(Debug, Clone)]
pub struct FcmSettings {
    /// The service account's key file.
    pub credentials: PathBuf,
    pub endpoint: String,
}

/// Apple Push Notification service's settings.
#[derive(Debug, Clone)]
pub struct ApnsSettings {
    /// The `.p8` signing key.
    pub key: PathBuf,
    pub key_id: String,
    pub team_id: String,
    pub endpoint: String,
    pub sandbox_endpoint: String,
}

/// The mobile push providers (each off unless configured) and what notifications carry.
#[derive(Debug, Clone, Default)]
pub struct MobilePush {
    pub fcm: Option<FcmSettings>,
    pub apns: Option<ApnsSettings>,
    pub apns_topic: String,
    pub data_only: bool,
    pub localized: bool,
    pub mentions_pass_mute: bool,
    /// Web Push endpoints may be plain http or on private networks.
    pub allow_private_endpoints: bool,
}

/// An `on`/`off` setting.
fn on_off(name: &str, value: Option<&str>, default: bool) -> anyhow::Result<bool> {
    match value {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => bail!("{name} must be `on` or `off`, not {other:?}"),
    }
}

impl RawConfig {
    /// Merges in the config file (if any) under what flags and environment set, then validates.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let merged = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                let file: RawConfig = toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?;
                self.or(file)
            }
            None => self,
        };
        merged.resolve_without_file()
    }

    fn or(self, file: RawConfig) -> RawConfig {
        RawConfig {
            config: self.config,
            listen: self.listen.or(file.listen),
            public_urls: self.public_urls.or(file.public_urls),
            files_store: self.files_store.or(file.files_store),
            max_upload_bytes: self.max_upload_bytes.or(file.max_upload_bytes),
            max_file_link_secs: self.max_file_link_secs.or(file.max_file_link_secs),
            data_dir: self.data_dir.or(file.data_dir),
            store: self.store.or(file.store),
            heartbeat_ms: self.heartbeat_ms.or(file.heartbeat_ms),
            room_heartbeat_ms: self.room_heartbeat_ms.or(file.room_heartbeat_ms),
            ack_timeout_ms: self.ack_timeout_ms.or(file.ack_timeout_ms),
            receipt_wait_ms: self.receipt_wait_ms.or(file.receipt_wait_ms),
            device_policy: self.device_policy.or(file.device_policy),
            token_ttl_secs: self.token_ttl_secs.or(file.token_ttl_secs),
            max_frame_bytes: self.max_frame_bytes.or(file.max_frame_bytes),
            max_content_bytes: self.max_content_bytes.or(file.max_content_bytes),
            outbound_queue_bytes: self.outbound_queue_bytes.or(file.outbound_queue_bytes),
            max_inflight: self.max_inflight.or(file.max_inflight),
            max_sessions_per_user: self.max_sessions_per_user.or(file.max_sessions_per_user),
            send_rate: self.send_rate.or(file.send_rate),
            send_burst: self.send_burst.or(file.send_burst),
            recall_window_secs: self.recall_window_secs.or(file.recall_window_secs),
            search: self.search.or(file.search),
            max_group_members: self.max_group_members.or(file.max_group_members),
            max_chatroom_members: self.max_chatroom_members.or(file.max_chatroom_members),
            chatroom_history: self.chatroom_history.or(file.chatroom_history),
            chatroom_auto_create: self.chatroom_auto_create.or(file.chatroom_auto_create),
            chatroom_idle_secs: self.chatroom_idle_secs.or(file.chatroom_idle_secs),
            webhook_url: self.webhook_url.or(file.webhook_url),
            webhook_retry_ms: self.webhook_retry_ms.or(file.webhook_retry_ms),
            moderation_url: self.moderation_url.or(file.moderation_url),
            moderation_timeout_ms: self.moderation_timeout_ms.or(file.moderation_timeout_ms),
            moderation_fail: self.moderation_fail.or(file.moderation_fail),
            api_signature: self.api_signature.or(file.api_signature),
            handshake_timeout_ms: self.handshake_timeout_ms.or(file.handshake_timeout_ms),
            request_timeout_ms: self.request_timeout_ms.or(file.request_timeout_ms),
            upload_timeout_ms: self.upload_timeout_ms.or(file.upload_timeout_ms),
            max_connections: self.max_connections.or(file.max_connections),
            max_unauthenticated: self.max_unauthenticated.or(file.max_unauthenticated),
            max_unauthenticated_per_address: self
                .max_unauthenticated_per_address
                .or(file.max_unauthenticated_per_address),
            trusted_proxies: self.trusted_proxies.or(file.trusted_proxies),
            client_address_header: self.client_address_header.or(file.client_address_header),
            durability: self.durability.or(file.durability),
            worker_threads: self.worker_threads.or(file.worker_threads),
            accounts: self.accounts.or(file.accounts),
            push: self.push.or(file.push),
            vapid_subject: self.vapid_subject.or(file.vapid_subject),
            push_attempts: self.push_attempts.or(file.push_attempts),
            push_retry_ms: self.push_retry_ms.or(file.push_retry_ms),
            push_fcm_credentials: self.push_fcm_credentials.or(file.push_fcm_credentials),
            push_fcm_endpoint: self.push_fcm_endpoint.or(file.push_fcm_endpoint),
            push_apns_key: self.push_apns_key.or(file.push_apns_key),
            push_apns_key_id: self.push_apns_key_id.or(file.push_apns_key_id),
            push_apns_team_id: self.push_apns_team_id.or(file.push_apns_team_id),
            push_apns_topic: self.push_apns_topic.or(file.push_apns_topic),
            push_apns_endpoint: self.push_apns_endpoint.or(file.push_apns_endpoint),
            push_apns_sandbox_endpoint: self
                .push_apns_sandbox_endpoint
                .or(file.push_apns_sandbox_endpoint),
            push_data_only: self.push_data_only.or(file.push_data_only),
            push_localized: self.push_localized.or(file.push_localized),
            push_mentions_pass_mute: self
                .push_mentions_pass_mute
                .or(file.push_mentions_pass_mute),
            push_allow_private_endpoints: self
                .push_allow_private_endpoints
                .or(file.push_allow_private_endpoints),
            nats: self.nats.or(file.nats),
            cluster: self.cluster.or(file.cluster),
            node_id: self.node_id.or(file.node_id),
            alive_ms: self.alive_ms.or(file.alive_ms),
            log_format: self.log_format.or(file.log_format),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_watch_ms: self.tls_watch_ms.or(file.tls_watch_ms),
            health_listen: self.health_listen.or(file.health_listen),
        }
    }

    fn resolve_without_file(self) -> anyhow::Result<Config> {
        let device_policy = match self.device_policy.as_deref().unwrap_or("multi") {
            "multi" => DevicePolicy::Multi,
            "single" => DevicePolicy::Single,
            other => bail!("device_policy must be `multi` or `single`, not {other:?}"),
        };
        let moderation_fail_open = match self.moderation_fail.as_deref().unwrap_or("open") {
            "open" => true,
            "closed" => false,
            other => bail!("moderation_fail must be `open` or `closed`, not {other:?}"),
        };
        let api_signature = self.api_signature.as_deref().unwrap_or("request");
        let Some(api_signature) = SignatureForm::parse(api_signature) else {
            bail!("api_signature must be `request`, `legacy` or `seed004`, not {api_signature:?}");
        };
        for (key, url) in [
            ("webhook_url", &self.webhook_url),
            ("moderation_url", &self.moderation_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                bail!("{key} must be an http:// or https:// URL, not {url:?}");
            }
        }
        let mut public_urls = Vec::new();
        for url in self.public_urls.iter().flatten() {
            let url = url.trim().trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("public_urls must be http:// or https:// URLs, not {url:?}");
            }
            public_urls.push(url.to_string());
        }
        let tls_watch =
            Duration::from_millis(positive("tls_watch_ms", self.tls_watch_ms.unwrap_or(5000))?);
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                watch: tls_watch,
            }),
            (None, None) => None,
            (Some(_), None) => bail!("tls_cert is set without tls_key: give both or neither"),
            (None, Some(_)) => bail!("tls_key is set without tls_cert: give both or neither"),
        };
        let files_store = match self.files_store.as_deref().unwrap_or("data") {
            "data" => FilesStore::DataDir,
            s3 => match s3.strip_prefix("s3://") {
                Some(bucket) if !bucket.is_empty() && !bucket.contains('/') => {
                    FilesStore::S3(bucket.to_string())
                }
                _ => bail!("files_store must be `data` or `s3://BUCKET`, not {s3:?}"),
            },
        };
        let search = match self.search.as_deref().unwrap_or("on") {
            "on" => true,
            "off" => false,
            other => bail!("search must be `on` or `off`, not {other:?}"),
        };
        let auto_create = match self.chatroom_auto_create.as_deref().unwrap_or("on") {
            "on" => true,
            "off" => false,
            other => bail!("chatroom_auto_create must be `on` or `off`, not {other:?}"),
        };
        let chatrooms = tidings_engine::ChatroomSettings {
            max_members: positive(
                "max_chatroom_members",
                self.max_chatroom_members.unwrap_or(100_000),
            )?,
            history: self.chatroom_history.unwrap_or(100),
            auto_create,
            idle: Duration::from_secs(self.chatroom_idle_secs.unwrap_or(600)),
        };
        let accounts = match self.accounts.as_deref().unwrap_or("on") {
            "on" => true,
            "off" => false,
            other => bail!("accounts must be `on` or `off`, not {other:?}"),
        };
        let push = match self.push.as_deref().unwrap_or("on") {
            "on" => true,
            "off" => false,
            other => bail!("push must be `on` or `off`, not {other:?}"),
        };
        let vapid_subject = self
            .vapid_subject
            .unwrap_or_else(|| "mailto:admin@localhost".into());
        if !(vapid_subject.starts_with("mailto:") || vapid_subject.starts_with("https://")) {
            bail!("vapid_subject must be a mailto: or https:// URL, not {vapid_subject:?}");
        }
        let mut trusted_proxies = Vec::new();
        for proxy in self.trusted_proxies.iter().flatten() {
            let proxy = proxy.trim();
            // A bare address is a network of one.
            let net = proxy
                .parse::<ipnet::IpNet>()
                .or_else(|_| proxy.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => bail!(
                    "trusted_proxies are addresses or CIDR networks (10.0.0.0/8), not {proxy:?}"
                ),
            }
        }
        let header = self
            .client_address_header
            .unwrap_or_else(|| "x-forwarded-for".into());
        let client_address_header = axum::http::HeaderName::from_bytes(header.as_bytes())
            .with_context(|| format!("client_address_header is not a header name: {header:?}"))?;
        if self.max_connections == Some(0) {
            bail!("max_connections must be greater than 0");
        }
        let cluster = self.cluster.unwrap_or_else(|| "default".into());
        let node_id = self
            .node_id
            .unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
        for (name, v) in [("cluster", &cluster), ("node_id", &node_id)] {
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                bail!("{name} is 1-64 of A-Z a-z 0-9 - _, not {v:?}");
            }
        }
        let durability = match self.durability.as_deref().unwrap_or("full") {
            "full" => Durability::Full,
            "process" => Durability::Process,
            other => bail!("durability must be `full` or `process`, not {other:?}"),
        };
        let store = match self.store {
            None => StoreSetting::DataDir,
            Some(url) if tidings_store_postgres::is_postgres_url(&url) => {
                StoreSetting::Postgres(url)
            }
            Some(path) if path.trim().is_empty() => {
                bail!("store must be a postgres:// URL or a SQLite file path, not empty")
            }
            Some(path) => StoreSetting::Sqlite(PathBuf::from(path)),
        };
        let max_frame_bytes = positive(
            "max_frame_bytes",
            self.max_frame_bytes.unwrap_or(64 * 1024) as u64,
        )? as usize;
        let max_content_bytes = positive(
            "max_content_bytes",
            self.max_content_bytes.unwrap_or(16 * 1024) as u64,
        )? as usize;
        if max_content_bytes >= max_frame_bytes {
            bail!(
                "max_content_bytes ({max_content_bytes}) must be below max_frame_bytes ({max_frame_bytes})"
            );
        }
        let outbound_queue_bytes = positive(
            "outbound_queue_bytes",
            self.outbound_queue_bytes.unwrap_or(1 << 20) as u64,
        )? as usize;
        if outbound_queue_bytes < 2 * max_frame_bytes {
            bail!("outbound_queue_bytes must be at least twice max_frame_bytes");
        }
        Ok(Config {
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9091))),
            public_urls,
            files_store,
            max_upload_bytes: positive(
                "max_upload_bytes",
                self.max_upload_bytes
                    .unwrap_or(tidings_files::DEFAULT_MAX_BYTES) as u64,
            )? as usize,
            max_file_link: Duration::from_secs(positive(
                "max_file_link_secs",
                self.max_file_link_secs
                    .unwrap_or(tidings_files::DEFAULT_MAX_LINK_SECS),
            )?),
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            store,
            heartbeat: Duration::from_millis(positive(
                "heartbeat_ms",
                self.heartbeat_ms.unwrap_or(30_000),
            )?),
            room_heartbeat: Duration::from_millis(positive(
                "room_heartbeat_ms",
                self.room_heartbeat_ms.unwrap_or(120_000),
            )?),
            ack_timeout: Duration::from_millis(positive(
                "ack_timeout_ms",
                self.ack_timeout_ms.unwrap_or(10_000),
            )?),
            receipt_wait: Duration::from_millis(positive(
                "receipt_wait_ms",
                self.receipt_wait_ms.unwrap_or(10_000),
            )?),
            device_policy,
            token_ttl: Duration::from_secs(positive(
                "token_ttl_secs",
                self.token_ttl_secs.unwrap_or(30 * 24 * 3600),
            )?),
            max_frame_bytes,
            max_content_bytes,
            outbound_queue_bytes,
            max_sessions_per_user: positive(
                "max_sessions_per_user",
                self.max_sessions_per_user.unwrap_or(64) as u64,
            )? as usize,
            max_inflight: positive("max_inflight", self.max_inflight.unwrap_or(1024) as u64)?
                as usize,
            send_rate: self.send_rate.unwrap_or(5),
            send_burst: positive("send_burst", u64::from(self.send_burst.unwrap_or(10)))? as u32,
            recall_window: Duration::from_secs(self.recall_window_secs.unwrap_or(120)),
            search,
            max_group_members: positive(
                "max_group_members",
                self.max_group_members.unwrap_or(3000),
            )?,
            chatrooms,
            webhook_url: self.webhook_url,
            webhook_retry: Duration::from_millis(positive(
                "webhook_retry_ms",
                self.webhook_retry_ms.unwrap_or(1000),
            )?),
            moderation_url: self.moderation_url,
            moderation_timeout: Duration::from_millis(positive(
                "moderation_timeout_ms",
                self.moderation_timeout_ms.unwrap_or(2000),
            )?),
            moderation_fail_open,
            api_signature,
            handshake_timeout: Duration::from_millis(positive(
                "handshake_timeout_ms",
                self.handshake_timeout_ms.unwrap_or(10_000),
            )?),
            request_timeout: Duration::from_millis(positive(
                "request_timeout_ms",
                self.request_timeout_ms.unwrap_or(10_000),
            )?),
            upload_timeout: Duration::from_millis(positive(
                "upload_timeout_ms",
                self.upload_timeout_ms.unwrap_or(300_000),
            )?),
            max_connections: self.max_connections,
            max_unauthenticated: positive(
                "max_unauthenticated",
                self.max_unauthenticated.unwrap_or(2048) as u64,
            )? as usize,
            max_unauthenticated_per_address: positive(
                "max_unauthenticated_per_address",
                self.max_unauthenticated_per_address.unwrap_or(256) as u64,
            )? as usize,
            trusted_proxies,
            client_address_header,
            durability,
            worker_threads: match self.worker_threads {
                Some(n) => positive("worker_threads", n as u64)? as usize,
                None => available_cpus(),
            },
            accounts,
            push,
            vapid_subject,
            nats: self.nats,
            in_process_bus: None,
            cluster,
            node_id,
            alive_interval: Duration::from_millis(positive(
                "alive_ms",
                self.alive_ms.unwrap_or(2000),
            )?),
            push_attempts: positive("push_attempts", u64::from(self.push_attempts.unwrap_or(4)))?
                as u32,
            push_retry: Duration::from_millis(positive(
                "push_retry_ms",
                self.push_retry_ms.unwrap_or(1000),
            )?),
            mobile_push: MobilePush {
                fcm: self.push_fcm_credentials.map(|credentials| FcmSettings {
                    credentials,
                    endpoint: self
                        .push_fcm_endpoint
                        .unwrap_or_else(|| "https://fcm.googleapis.com".into()),
                }),
                apns: match (
                    self.push_apns_key,
                    self.push_apns_key_id,
                    self.push_apns_team_id,
                ) {
                    (None, None, None) => None,
                    (Some(key), Some(key_id), Some(team_id)) => Some(ApnsSettings {
                        key,
                        key_id,
                        team_id,
                        endpoint: self
                            .push_apns_endpoint
                            .unwrap_or_else(|| "https://api.push.apple.com".into()),
                        sandbox_endpoint: self
                            .push_apns_sandbox_endpoint
                            .unwrap_or_else(|| "https://api.sandbox.push.apple.com".into()),
                    }),
                    _ => bail!(
                        "APNs needs all of push_apns_key, push_apns_key_id and push_apns_team_id"
                    ),
                },
                apns_topic: self.push_apns_topic.unwrap_or_default(),
                data_only: on_off("push_data_only", self.push_data_only.as_deref(), false)?,
                localized: on_off("push_localized", self.push_localized.as_deref(), false)?,
                mentions_pass_mute: on_off(
                    "push_mentions_pass_mute",
                    self.push_mentions_pass_mute.as_deref(),
                    true,
                )?,
                allow_private_endpoints: on_off(
                    "push_allow_private_endpoints",
                    self.push_allow_private_endpoints.as_deref(),
                    false,
                )?,
            },
            log_format: match self.log_format.as_deref().unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => bail!("log_format must be `text` or `json`, not {other:?}"),
            },
            metrics_listen: match self.metrics_listen.as_deref().map(str::trim) {
                None => Some(SocketAddr::from(([127, 0, 0, 1], 9092))),
                Some("off") => None,
                Some(addr) => Some(addr.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "metrics_listen must be an address (127.0.0.1:9092) or `off`, not {addr:?}"
                    )
                })?),
            },
            tls,
            health_listen: self.health_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_takes_both_files_or_neither() {
        let c = RawConfig::default().resolve().unwrap();
        assert_eq!((c.tls, c.health_listen), (None, None));
        let both = RawConfig {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..RawConfig::default()
        };
        let tls = both.resolve().unwrap().tls.unwrap();
        assert_eq!((tls.cert, tls.key), ("c.pem".into(), "k.pem".into()));
        assert_eq!(tls.watch, Duration::from_secs(5));
        for (cert, key, missing) in [
            (Some("c.pem"), None, "tls_key"),
            (None, Some("k.pem"), "tls_cert"),
        ] {
            let one = RawConfig {
                tls_cert: cert.map(Into::into),
                tls_key: key.map(Into::into),
                ..RawConfig::default()
            };
            let e = one.resolve().unwrap_err().to_string();
            assert!(e.contains(missing) && e.contains("both or neither"), "{e}");
        }
    }

    #[test]
    fn defaults() {
        let c = RawConfig::default().resolve().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9091");
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.heartbeat, Duration::from_secs(30));
        assert_eq!(c.room_heartbeat, Duration::from_secs(120));
        assert_eq!(c.device_policy, DevicePolicy::Multi);
        assert!(c.accounts);
        assert_eq!(c.store, StoreSetting::DataDir);
        assert_eq!(c.max_file_link, Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn file_links_live_at_most_the_setting_which_is_not_zero() {
        let c = RawConfig {
            max_file_link_secs: Some(600),
            ..Default::default()
        };
        assert_eq!(c.resolve().unwrap().max_file_link, Duration::from_secs(600));
        let zero = RawConfig {
            max_file_link_secs: Some(0),
            ..Default::default()
        };
        assert!(
            zero.resolve()
                .unwrap_err()
                .to_string()
                .contains("max_file_link_secs")
        );
    }

    #[test]
    fn a_postgres_url_selects_postgres_and_anything_else_is_a_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "store = \"postgresql://db.example.com/tidings\"\n").unwrap();
        let from_file = RawConfig {
            config: Some(file),
            ..Default::default()
        };
        assert_eq!(
            from_file.clone().resolve().unwrap().store,
            StoreSetting::Postgres("postgresql://db.example.com/tidings".into())
        );
        let flag = RawConfig {
            store: Some("postgres://u:secret@127.0.0.1/t".into()),
            ..from_file
        };
        let c = flag.resolve().unwrap();
        assert_eq!(
            c.store,
            StoreSetting::Postgres("postgres://u:secret@127.0.0.1/t".into())
        );
        assert!(
            !format!("{c:?}").contains("secret"),
            "the URL's password is not shown"
        );
        let sqlite = RawConfig {
            store: Some("/var/lib/tidings/other.db".into()),
            ..Default::default()
        };
        assert_eq!(
            sqlite.resolve().unwrap().store,
            StoreSetting::Sqlite(PathBuf::from("/var/lib/tidings/other.db"))
        );
        let empty = RawConfig {
            store: Some(" ".into()),
            ..Default::default()
        };
        assert!(empty.resolve().unwrap_err().to_string().contains("store"));
    }

    #[test]
    fn push_is_on_with_a_default_contact_unless_turned_off() {
        let c = RawConfig::default().resolve().unwrap();
        assert!(c.push);
        assert!(
            !c.mobile_push.allow_private_endpoints,
            "Web Push endpoints on private networks are refused by default"
        );
        assert!(c.mobile_push.fcm.is_none() && c.mobile_push.apns.is_none());
        assert_eq!(c.vapid_subject, "mailto:admin@localhost");
        assert_eq!((c.push_attempts, c.push_retry), (4, Duration::from_secs(1)));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "push = \"off\"\nvapid_subject = \"https://chat.example.com\"\n",
        )
        .unwrap();
        let from_file = RawConfig {
            config: Some(file),
            ..Default::default()
        };
        let c = from_file.clone().resolve().unwrap();
        assert!(!c.push);
        assert_eq!(c.vapid_subject, "https://chat.example.com");
        let flag = RawConfig {
            push: Some("on".into()),
            ..from_file
        };
        assert!(flag.resolve().unwrap().push);
        let bad = RawConfig {
            vapid_subject: Some("admin@example.com".into()),
            ..Default::default()
        };
        assert!(
            bad.resolve()
                .unwrap_err()
                .to_string()
                .contains("vapid_subject")
        );
    }

    #[test]
    fn accounts_are_on_unless_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "accounts = \"off\"\n").unwrap();
        let from_file = RawConfig {
            config: Some(file),
            ..Default::default()
        };
        assert!(!from_file.clone().resolve().unwrap().accounts);
        let flag = RawConfig {
            accounts: Some("on".into()),
            ..from_file
        };
        assert!(flag.resolve().unwrap().accounts);
        let bad = RawConfig {
            accounts: Some("yes".into()),
            ..Default::default()
        };
        assert!(bad.resolve().unwrap_err().to_string().contains("accounts"));
    }

    #[test]
    fn flags_win_over_the_file_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "heartbeat_ms = 5000\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let c = RawConfig {
            config: Some(file.clone()),
            listen: Some("127.0.0.1:2".parse().unwrap()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.heartbeat, Duration::from_millis(5000));
        let bad = RawConfig {
            heartbeat_ms: Some(0),
            ..Default::default()
        };
        assert!(
            bad.resolve()
                .unwrap_err()
                .to_string()
                .contains("heartbeat_ms")
        );
        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        let err = RawConfig {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("no_such_key"));
    }
}

#[cfg(test)]
mod api_signature {
    use super::*;

    #[test]
    fn the_request_form_alone_unless_an_older_one_is_named() {
        let c = RawConfig::default().resolve().unwrap();
        assert_eq!(c.api_signature, SignatureForm::Request);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "api_signature = \"seed004\"\n").unwrap();
        let from_file = RawConfig {
            config: Some(file),
            ..Default::default()
        };
        assert_eq!(
            from_file.clone().resolve().unwrap().api_signature,
            SignatureForm::Seed004
        );
        let flag = RawConfig {
            api_signature: Some("legacy".into()),
            ..from_file
        };
        assert_eq!(flag.resolve().unwrap().api_signature, SignatureForm::Legacy);
        let bad = RawConfig {
            api_signature: Some("none".into()),
            ..Default::default()
        };
        assert!(
            bad.resolve()
                .unwrap_err()
                .to_string()
                .contains("api_signature")
        );
    }
}

#[cfg(test)]
mod metrics_listen {
    use super::*;

    fn resolve(value: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
        let raw = RawConfig {
            metrics_listen: value.map(str::to_string),
            ..Default::default()
        };
        Ok(raw.resolve_without_file()?.metrics_listen)
    }

    #[test]
    fn metrics_listen_defaults_to_loopback_and_takes_an_address_or_off() {
        assert_eq!(
            resolve(None).unwrap(),
            Some("127.0.0.1:9092".parse().unwrap())
        );
        assert_eq!(
            resolve(Some("10.0.0.5:9100")).unwrap(),
            Some("10.0.0.5:9100".parse().unwrap())
        );
        assert_eq!(resolve(Some("off")).unwrap(), None);
        let bad = resolve(Some("9092")).unwrap_err().to_string();
        assert!(bad.contains("metrics_listen must be an address"), "{bad}");
        let file: RawConfig = toml::from_str("metrics_listen = \"off\"").unwrap();
        assert_eq!(file.resolve_without_file().unwrap().metrics_listen, None);
    }
}

#[cfg(test)]
mod operations_doc {
    use super::*;

    /// The cluster node's settings `docs/operations.md` shows are ones a node takes.
    #[test]
    fn the_documented_cluster_config_resolves() {
        let doc = include_str!("../../../docs/operations.md");
        let start = doc.find("```toml\n").expect("a toml example") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("its end");
        let raw: RawConfig = toml::from_str(&doc[start..end]).expect("the example parses");
        let c = raw.resolve_without_file().expect("the example resolves");
        assert_eq!(c.nats.as_deref(), Some("nats://nats.internal:4222"));
        assert_eq!((c.cluster.as_str(), c.node_id.as_str()), ("prod", "a"));
        assert!(matches!(c.store, StoreSetting::Postgres(_)));
        assert_eq!(c.public_urls, ["https://a.chat.example.com"]);
    }
}
