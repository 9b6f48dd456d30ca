//! The Tidings engine: the domain, independent of any wire format or socket.
//!
//! A gateway authenticates a connection with [`Engine::connect`] and gets a [`Session`]. It feeds
//! the session what the client sends (publish, ack, sync, confirm) and writes out whatever the
//! session's [`Outbox`] yields ([`Outbound`] items), encoding them in the client's format.
//!
//! The delivery path: [`Session::publish`] validates, then hands the message to the committer
//! task (`commit.rs`), which batches everything waiting into one store transaction (group
//! commit), and after the commit — in commit order — queues the sender's PUBACK and pushes the
//! message to every other device of the sender and the recipient. Pushed messages stay in the
//! session's in-flight set until the device acknowledges them and are resent with the dup flag
//! after the ack timeout ([`Session::resend_due`]). Anything a device misses is in its inbox and
//! comes back by sync ([`Session::sync`]).
//!
//! A kernel and features. The kernel delivers and knows no conversation type's rules:
//! - `stream.rs`: items of a live stream ([`RoomItem`], [`Priority`]), shed by priority;
//! - `outbox.rs`: a connection's bounded outbound queue;
//! - `session.rs`: a device's session, its delivery state (in-flight pushes, cursor), connect,
//!   sync, acknowledgements, resends, and its end hooks (`session::Attachment`);
//! - `cluster.rs`: routing across nodes over the bus (interest by user and room, presence of
//!   nodes, a room's home);
//! - `commit.rs`: the committer, the one writer, and the fan-out after each commit;
//! - this root: the [`Engine`] and its shared state, the registry of sessions (and what ends
//!   them: revocations, bans, kicks), the writes through the committer, and the routing of bus
//!   events to the part they are for.
//!
//! The features stand on it, calling down and attaching what they need: `publish.rs` (a
//! device's sends, dispatched by conversation type), `conversations.rs`, `groups.rs`,
//! `chatrooms/`, `presence.rs`, `receipts.rs`, `users.rs`, `accounts.rs`, `operators.rs`,
//! `push.rs`, `files.rs`, `words.rs`. Below both: `validate.rs`, `auth.rs`, `hooks.rs`,
//! `metrics.rs`, `readiness.rs`.
//!
//! Architecture invariant: no kernel module (`stream`, `outbox`, `session`, `cluster`,
//! `commit`) names a feature module in a `crate::` path, and the modules import each other in
//! no circle; the crate root alone names both sides. A feature's state per session is an
//! attachment the session lets go of at its end, never a field of the session. Where the kernel
//! tells a feature of something per message (the committer hands a commit to Web Push and the
//! `sent` hook, an acknowledgement reaches the receipt watches) or per user's first and last
//! session (presence), it calls the feature's `Engine` method directly: a callback registered
//! at run time would cost a dynamic call per message.
//!
//! Architecture invariant: this crate never imports a web framework, a WebSocket library or a SQL
//! driver. It sees storage only through `tidings_store::Store`, and uses `tidings_proto` only for
//! the closed set of client-visible codes. Web Push is behind [`push::Pusher`], so no HTTP
//! client is here either. The crypto it does hold is its own business: signing and checking
//! tokens (`jsonwebtoken`, HMAC-SHA-256), the app server's request signatures (HMAC, SHA-1 and
//! SHA-256, compared in constant time with `subtle`) and built-in accounts' passwords
//! (`argon2`); message content is never encrypted or decrypted here.

mod accounts;
pub mod auth;
mod chatrooms;
pub mod cluster;
mod commit;
mod conversations;
pub mod e2ee;
mod files;
mod groups;
pub mod hooks;
pub mod metrics;
pub mod operators;
pub mod outbox;
mod presence;
mod publish;
pub mod push;
mod readiness;
mod receipts;
mod session;
mod stream;
mod users;
pub mod validate;
mod words;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_proto::Code;
use tidings_store::{Store, StoredMessage, WriteOp, WriteResult};
use tokio::sync::{mpsc, oneshot};

pub use accounts::{AccountToken, address_key, hash_password};
pub use auth::AppCredentials;
pub use chatrooms::{
    BACKLOG_LOW, BACKLOG_NORMAL, ChatroomOut, ChatroomQuery, ChatroomSettings, EntryOut,
    MAX_ENTRIES, MAX_ROOMS_PER_CONNECTION, NOTICE_BATCH_MEMBERS, NOTICE_INTERVAL, QUEUE_MAX,
    RECENT_MAX,
};
pub use conversations::{AmendRequest, ConversationQuery, ConversationUpdateRequest, HistoryStart};
pub use files::MessageRef;
pub use groups::GroupQuery;
pub use outbox::{DirectWriter, Outbox};
pub use presence::PresenceOut;
pub use push::{PushOutcome, PushSubscription, PushTokenRequest};
pub use readiness::Readiness;
pub use receipts::ReceiptWatch;
pub use session::{ConnectInfo, ConnectRequest, SendRequest, Session};
pub use stream::{Priority, RoomItem, RoundWire};
pub use tidings_store::{
    AuditEntry, GroupAction, GroupInfo, GroupKind, GroupMember, GroupMembers, GroupReceipt,
};
pub use users::{Posted, ProfileOut, UserOut};
pub use validate::Refusal;

use commit::CommitRequest;
use session::SessionShared;

/// Milliseconds since the Unix epoch. Injected so tests can control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A fresh ULID, for ids the app server did not choose.
pub fn new_uid() -> String {
    ulid::Ulid::new().to_string()
}

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// What happens when a user connects while already connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// Several devices at once; a second connection with the same device id replaces the first.
    #[default]
    Multi,
    /// One connection per user: a new login kicks the old one (DISCONNECT 31010).
    Single,
}

/// Engine settings. Defaults are documented on [`EngineConfig::new`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub credentials: AppCredentials,
    /// The older HTTP API signature form accepted besides the request form, or
    /// [`auth::SignatureForm::Request`] for none.
    pub api_signature: auth::SignatureForm,
    pub heartbeat: Duration,
    pub ack_timeout: Duration,
    pub max_inflight: usize,
    /// Messages per second per user over all of their devices (0: no limit), and the burst.
    pub send_rate: u32,
    pub send_burst: u32,
    /// The most users one user may block.
    pub max_blocklist: u64,
    /// How long after sending a sender may recall a message; zero: any time.
    pub recall_window: Duration,
    /// Whether messages are indexed for search (which costs the writer CPU per message).
    pub search: bool,
    /// Whether shutting down closes the store (not when other engines in the process share
    /// it).
    pub owns_store: bool,
    /// The most members a group may have.
    pub max_group_members: u64,
    pub chatrooms: ChatroomSettings,
    pub outbound_queue_bytes: usize,
    pub max_content_bytes: usize,
    pub device_policy: DevicePolicy,
    pub token_ttl: Duration,
    /// Sessions one user may have open at once on this node (connections of every kind); a
    /// CONNECT past it is refused (40034), unless it replaces one of the user's sessions.
    pub max_sessions_per_user: usize,
}

impl EngineConfig {
    /// Defaults: heartbeat 30 s (a connection silent for 3 intervals is dropped), ack timeout
    /// 10 s, 1024 unacknowledged pushes per connection, 1 MiB outbound queue per connection,
    /// 16 KiB message content, `multi` device policy, tokens valid for 30 days, 64 sessions
    /// per user, API requests signed in the request form only.
    pub fn new(credentials: AppCredentials) -> EngineConfig {
        EngineConfig {
            credentials,
            api_signature: auth::SignatureForm::Request,
            heartbeat: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(10),
            max_inflight: 1024,
            send_rate: 5,
            send_burst: 10,
            max_blocklist: 1000,
            recall_window: Duration::from_secs(120),
            search: true,
            owns_store: true,
            max_group_members: 3000,
            chatrooms: ChatroomSettings::default(),
            outbound_queue_bytes: 1 << 20,
            max_content_bytes: 16 * 1024,
            device_policy: DevicePolicy::Multi,
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            max_sessions_per_user: 64,
        }
    }
}

/// Sync pages: the default and the largest a client may ask for.
pub const SYNC_PAGE_DEFAULT: u32 = 100;
pub const SYNC_PAGE_MAX: u32 = 500;

/// A message as one user sees it: the stored message, shared by every viewer, plus the viewer's
/// side of the conversation and the viewer's inbox position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    message: Arc<StoredMessage>,
    /// For PRIVATE messages to the viewer, the conversation's other side is the sender.
    target_is_sender: bool,
    inbox_seq: u64,
}

impl Delivered {
    /// A stored message as the user `viewer` sees it, at `inbox_seq` of their inbox.
    pub fn for_viewer(viewer: &str, m: Arc<StoredMessage>, inbox_seq: u64) -> Delivered {
        // A private or system message to the viewer: the conversation's other side is the
        // sender.
        let target_is_sender = matches!(
            m.conversation_type,
            tidings_proto::conversation_type::PRIVATE | tidings_proto::conversation_type::SYSTEM
        ) && m.target == viewer;
        Delivered {
            message: m,
            target_is_sender,
            inbox_seq,
        }
    }

    pub fn uid(&self) -> &str {
        &self.message.uid
    }
    pub fn conversation_type(&self) -> u32 {
        self.message.conversation_type
    }
    /// The conversation from the viewer's side: for PRIVATE, the other participant.
    pub fn target_id(&self) -> &str {
        if self.target_is_sender {
            &self.message.sender
        } else {
            &self.message.target
        }
    }
    pub fn sender_id(&self) -> &str {
        &self.message.sender
    }
    pub fn seq(&self) -> u64 {
        self.message.seq
    }
    pub fn sent_time(&self) -> i64 {
        self.message.sent_time
    }
    pub fn msg_type(&self) -> &str {
        &self.message.msg_type
    }
    pub fn content(&self) -> &str {
        &self.message.content
    }
    pub fn push_text(&self) -> &str {
        &self.message.push_text
    }
    pub fn recalled(&self) -> bool {
        self.message.recalled
    }
    pub fn edited(&self) -> bool {
        self.message.edited
    }
    pub fn reactions(&self) -> &[tidings_store::Reaction] {
        &self.message.reactions
    }
    pub fn client_msg_id(&self) -> &str {
        &self.message.client_msg_id
    }
    pub fn mentions(&self) -> &[String] {
        &self.message.mentions
    }
    pub fn mention_all(&self) -> bool {
        self.message.mention_all
    }
    /// For a directed group message, the members it was addressed to.
    pub fn audience(&self) -> &[String] {
        &self.message.audience
    }
    pub fn inbox_seq(&self) -> u64 {
        self.inbox_seq
    }

    fn approx_bytes(&self) -> usize {
        let m = &self.message;
        96 + m.uid.len()
            + m.target.len()
            + m.sender.len()
            + m.msg_type.len()
            + m.content.len()
            + m.push_text.len()
            + m.client_msg_id.len()
            + m.mentions
                .iter()
                .chain(&m.audience)
                .map(|u| u.len() + 2)
                .sum::<usize>()
    }
}

/// The answer to a client's PUBLISH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubAckOut {
    pub packet_id: u32,
    pub code: u32,
    pub text: String,
    pub uid: String,
    pub seq: u64,
    pub sent_time: i64,
    pub inbox_seq: u64,
    /// 21502 when the server replaced sensitive words, 40025 when the app server rewrote the
    /// message (`content` is then the content stored).
    pub notice: u32,
    pub content: String,
}

impl PubAckOut {
    /// A PUBACK refusing the PUBLISH `packet_id`.
    pub fn refused(packet_id: u32, refusal: impl Into<Refusal>) -> PubAckOut {
        let refusal = refusal.into();
        PubAckOut {
            packet_id,
            code: refusal.code.as_u32(),
            text: refusal.text(),
            ..Default::default()
        }
    }
}

/// The answer to a client's QUERY.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryAckOut {
    pub query_id: u32,
    pub code: u32,
    pub text: String,
    pub messages: Vec<Delivered>,
    pub has_more: bool,
    pub conversations: Vec<ConversationOut>,
    /// The user's inbox seq at the read: later changes come after it.
    pub version: u64,
    pub next_page_token: String,
    pub unread: u64,
    pub user_ids: Vec<String>,
    pub presence: Vec<PresenceOut>,
    /// GetUsers: in the order asked.
    pub users: Vec<ProfileOut>,
    /// `(start_minute, minutes)`.
    pub quiet_hours: Option<(u32, u32)>,
    pub groups: Vec<tidings_store::GroupInfo>,
    pub members: Vec<tidings_store::GroupMember>,
    pub receipt: Option<tidings_store::GroupReceipt>,
    pub chatrooms: Vec<ChatroomOut>,
    pub entries: Vec<EntryOut>,
    /// RegisterPush: the server's VAPID public key.
    pub vapid_public_key: String,
    /// PublishKeyPackages: the device's one-time key packages in the directory.
    pub key_package_count: u64,
    /// ClaimKeyPackages: what was handed out.
    pub key_packages: Vec<e2ee::DeviceKeyPackageOut>,
}

/// One conversation as its user sees it, for a QUERYACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationOut {
    pub settings: tidings_store::ConversationSettings,
    pub latest: Option<Delivered>,
    pub unread: u64,
    /// Unread messages that mention the user.
    pub mentioned: u64,
    pub removed: bool,
    /// In a private conversation, how far the other participant has read, as their read
    /// receipts told (see `tidings_store::ConversationRecord::peer_read_seq`).
    pub peer_read_seq: u64,
}

impl QueryAckOut {
    /// A QUERYACK refusing the QUERY `query_id`.
    pub fn refused(query_id: u32, refusal: impl Into<Refusal>) -> QueryAckOut {
        let refusal = refusal.into();
        QueryAckOut {
            query_id,
            code: refusal.code.as_u32(),
            text: refusal.text(),
            ..Default::default()
        }
    }
}

/// Something to send to one connection, in order.
#[derive(Debug, Clone)]
pub enum Outbound {
    PubAck(PubAckOut),
    /// A pushed message (qos 1, the device must acknowledge it); `dup` on a resend.
    Deliver {
        message: Arc<Delivered>,
        dup: bool,
    },
    QueryAck(Box<QueryAckOut>),
    /// A QoS 0 status message (typing): never stored, never acknowledged, never resent.
    Status(Arc<Delivered>),
    /// An item of a chatroom's stream (QoS 0), shared by every member it goes to.
    Room(Arc<RoomItem>),
    /// A CONNACK refusing a CONNECT on an already connected session.
    ConnAck {
        code: u32,
        text: String,
    },
    Pong,
    /// The last item: the gateway sends it and closes the connection.
    Disconnect(Code),
}

impl Outbound {
    /// A small item a transport may frame on the spot and write around the queue (a query's
    /// answer may be large, and goes through the connection's writer).
    pub fn is_small(&self) -> bool {
        matches!(
            self,
            Outbound::PubAck(_) | Outbound::Deliver { .. } | Outbound::Status(_) | Outbound::Pong
        )
    }

    /// Roughly what the item costs in the queue, for the byte bound.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Outbound::PubAck(p) => 64 + p.text.len() + p.uid.len(),
            Outbound::Deliver { message, .. } | Outbound::Status(message) => message.approx_bytes(),
            Outbound::Room(item) => item.approx_bytes(),
            Outbound::QueryAck(q) => {
                64 + q.text.len()
                    + q.messages
                        .iter()
                        .map(Delivered::approx_bytes)
                        .sum::<usize>()
                    + q.conversations
                        .iter()
                        .map(|c| {
                            64 + c.settings.target_id.len()
                                + c.latest.as_ref().map_or(0, Delivered::approx_bytes)
                        })
                        .sum::<usize>()
                    + q.groups
                        .iter()
                        .map(|g| 96 + g.id.len() + g.name.len() + g.portrait.len() + g.extra.len())
                        .sum::<usize>()
                    + q.members.iter().map(|m| 32 + m.user.len()).sum::<usize>()
                    + q.receipt.as_ref().map_or(0, |r| {
                        r.read.iter().chain(&r.unread).map(|u| u.len() + 2).sum()
                    })
                    + q.chatrooms
                        .iter()
                        .map(|c| 96 + c.id.len() + c.name.len() + c.extra.len())
                        .sum::<usize>()
                    + q.entries
                        .iter()
                        .map(|e| 48 + e.key.len() + e.value.len() + e.user.len())
                        .sum::<usize>()
            }
            Outbound::ConnAck { text, .. } => 16 + text.len(),
            Outbound::Pong | Outbound::Disconnect(_) => 16,
        }
    }
}

/// Errors of engine calls made by app servers (HTTP API, CLI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.text())]
pub struct ApiError(pub Refusal);

impl From<Code> for ApiError {
    fn from(c: Code) -> ApiError {
        ApiError(c.into())
    }
}

/// The engine. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    store: Arc<dyn Store>,
    clock: Clock,
    registry: Mutex<Registry>,
    commits: mpsc::Sender<CommitRequest>,
    committer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    next_session: AtomicU64,
    /// Per-user limits on messages (`None`: unlimited) and on status messages. Kept by user id,
    /// not by session, so reconnecting does not reset them; idle entries are dropped by a sweep.
    send_limiter: Option<governor::DefaultKeyedRateLimiter<String>>,
    status_limiter: governor::DefaultKeyedRateLimiter<String>,
    /// The sensitive words, compiled; replaced whole when the list changes.
    words: std::sync::RwLock<Arc<words::WordFilter>>,
    /// The app server's callbacks, if configured.
    hooks: Option<Arc<dyn hooks::Hooks>>,
    /// Web Push to offline devices, if on.
    pusher: Option<Arc<dyn push::Pusher>>,
    /// Never sends: [`Engine::push_outcomes`]'s channel while push is off.
    no_outcomes: tokio::sync::broadcast::Sender<PushOutcome>,
    /// The chatrooms in memory, by id.
    rooms: Mutex<HashMap<String, Arc<chatrooms::Room>>>,
    /// In a cluster: the chatrooms destroyed lately, with when (kept 60 s: `DESTROYED_KEPT`).
    destroyed_rooms: Mutex<HashMap<String, std::time::Instant>>,
    /// The built-in accounts' rate limiters and password hashing slots.
    accounts: accounts::Accounts,
    /// Watches on messages reaching their recipients' devices.
    receipts: receipts::Watches,
    /// The cluster this node is part of, if any.
    cluster: std::sync::OnceLock<cluster::Cluster>,
}

/// What registering a session did.
pub(crate) struct Registered {
    /// Sessions of the same device (or user, with the single-device policy) to kick.
    pub replaced: Vec<Arc<SessionShared>>,
}

/// The connections watching `user`'s presence.
/// Logs a failed store call (`what` names it) and refuses with [`store_code`].
pub(crate) fn store_failed(
    what: &'static str,
) -> impl FnOnce(tidings_store::StoreError) -> validate::Refusal {
    move |e| {
        tracing::error!(error = %e, "{what} failed");
        validate::Refusal::from(store_code(&e))
    }
}

/// The code a client is refused with when the store failed: [`Code::StoreUnreachable`] when
/// the database could not be reached (another node may serve the client), else
/// [`Code::ServerError`].
pub(crate) fn store_code(e: &tidings_store::StoreError) -> Code {
    match e {
        tidings_store::StoreError::Unreachable(_) => Code::StoreUnreachable,
        _ => Code::ServerError,
    }
}

fn watchers_of<'r>(registry: &'r Registry, user: &str) -> &'r [Arc<SessionShared>] {
    registry.watchers.get(user).map_or(&[], Vec::as_slice)
}

/// Removes session `id` from the watchers of `user`.
fn unwatch(registry: &mut Registry, user: &str, id: u64) {
    if let Some(list) = registry.watchers.get_mut(user) {
        list.retain(|s| s.id != id);
        if list.is_empty() {
            registry.watchers.remove(user);
        }
    }
}

/// Live sessions, and the facts a registration must be checked against under the same lock, so
/// that a connect racing a shutdown or a revocation cannot slip past it.
struct Registry {
    by_user: HashMap<String, Vec<Arc<SessionShared>>>,
    /// Connections watching each user's presence.
    watchers: HashMap<String, Vec<Arc<SessionShared>>>,
    accepting: bool,
    /// The lowest token version still valid, for users whose tokens were revoked while running.
    min_token_version: HashMap<String, u64>,
    /// Users banned while running (the store keeps every ban; this closes the race with a
    /// connect that read the store before the ban).
    banned: std::collections::HashSet<String>,
}

impl Registry {
    /// Refuses a token of `user` with `token_version` if it was revoked, or the user banned,
    /// while the server runs (the store is checked too; see `Engine::authenticate`).
    fn token_refusal(&self, user: &str, token_version: u64) -> Result<(), Code> {
        if self
            .min_token_version
            .get(user)
            .is_some_and(|min| token_version < *min)
        {
            return Err(Code::TokenRevoked);
        }
        if self.banned.contains(user) {
            return Err(Code::UserBanned);
        }
        Ok(())
    }
}

impl Engine {
    /// Starts the engine (its committer task) on the current Tokio runtime.
    pub fn start(config: EngineConfig, store: Arc<dyn Store>, clock: Clock) -> Engine {
        Engine::start_with_hooks(config, store, clock, None)
    }

    /// Starts the engine with the app server's callbacks.
    pub fn start_with_hooks(
        config: EngineConfig,
        store: Arc<dyn Store>,
        clock: Clock,
        hooks: Option<Arc<dyn hooks::Hooks>>,
    ) -> Engine {
        Engine::start_with_pusher(config, store, clock, hooks, None)
    }

    /// Starts the engine with the app server's callbacks and Web Push to offline devices.
    pub fn start_with_pusher(
        config: EngineConfig,
        store: Arc<dyn Store>,
        clock: Clock,
        hooks: Option<Arc<dyn hooks::Hooks>>,
        pusher: Option<Arc<dyn push::Pusher>>,
    ) -> Engine {
        let (commits, rx) = mpsc::channel(commit::QUEUE_LEN);
        let send_limiter = std::num::NonZeroU32::new(config.send_rate).map(|rate| {
            let burst = std::num::NonZeroU32::new(config.send_burst).unwrap_or(rate);
            governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst))
        });
        let status_limiter = governor::RateLimiter::keyed(
            governor::Quota::per_second(session::STATUS_RATE).allow_burst(session::STATUS_BURST),
        );
        let inner = Arc::new(Inner {
            send_limiter,
            status_limiter,
            words: std::sync::RwLock::new(Arc::new(words::WordFilter::default())),
            hooks,
            pusher,
            no_outcomes: tokio::sync::broadcast::channel(1).0,
            config,
            store,
            clock,
            registry: Mutex::new(Registry {
                by_user: HashMap::new(),
                watchers: HashMap::new(),
                accepting: true,
                min_token_version: HashMap::new(),
                banned: std::collections::HashSet::new(),
            }),
            commits,
            committer: Mutex::new(None),
            next_session: AtomicU64::new(1),
            rooms: Mutex::new(HashMap::new()),
            destroyed_rooms: Mutex::new(HashMap::new()),
            accounts: accounts::Accounts::new(),
            receipts: receipts::Watches::default(),
            cluster: std::sync::OnceLock::new(),
        });
        let engine = Engine { inner };
        let task = tokio::spawn(commit::run(engine.clone(), rx));
        // Drop the limiters' idle entries now and then; ends with the engine.
        let weak = Arc::downgrade(&engine.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Some(l) = &inner.send_limiter {
                    l.retain_recent();
                    l.shrink_to_fit();
                }
                inner.status_limiter.retain_recent();
                inner.status_limiter.shrink_to_fit();
                inner.accounts.sweep();
            }
        });
        *engine
            .inner
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(task);
        engine
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn now_ms(&self) -> i64 {
        (self.inner.clock)()
    }

    /// Every session registered on this node, taken out of the registry's lock.
    pub(crate) fn all_sessions(&self) -> Vec<Arc<session::SessionShared>> {
        self.registry()
            .by_user
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Live sessions of a user.
    fn sessions_of(&self, user: &str) -> Vec<Arc<SessionShared>> {
        self.registry()
            .by_user
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// The live sessions of each of `users`, with the user's index, from one lock of the
    /// registry.
    fn sessions_of_each<'u>(
        &self,
        users: impl Iterator<Item = &'u str>,
    ) -> Vec<(usize, Arc<SessionShared>)> {
        let registry = self.registry();
        let mut out = Vec::new();
        for (i, user) in users.enumerate() {
            if let Some(list) = registry.by_user.get(user) {
                out.extend(list.iter().map(|s| (i, s.clone())));
            }
        }
        out
    }

    /// Registers a session whose token carried `token_version`. Returns the sessions it replaces
    /// (to be kicked), or the refusal if the engine is shutting down or the token was revoked
    /// since it was checked.
    fn register(&self, shared: Arc<SessionShared>, token_version: u64) -> Result<Registered, Code> {
        let mut registry = self.registry();
        if !registry.accepting {
            return Err(Code::ServerShutdown);
        }
        registry.token_refusal(&shared.user, token_version)?;
        let policy = self.inner.config.device_policy;
        let replaces = |s: &Arc<SessionShared>| {
            policy == DevicePolicy::Single || (!shared.anonymous && s.device == shared.device)
        };
        // One user's token opens a bounded number of connections: without the bound, one
        // logged-in user could take every connection the server has room for.
        if let Some(list) = registry.by_user.get(&shared.user) {
            let kept = list.iter().filter(|s| !replaces(s)).count();
            if kept >= self.inner.config.max_sessions_per_user {
                return Err(Code::TooManySessions);
            }
        }
        // Told while the registry is locked, so an online and an offline report of one user
        // reach each watcher in the order they happened.
        if !registry.by_user.contains_key(&shared.user) {
            if !self.online_elsewhere(&shared.user) {
                self.presence_changed(&shared.user, true, watchers_of(&registry, &shared.user));
            }
            self.cluster_presence(&shared.user, true);
        }
        let list = registry.by_user.entry(shared.user.clone()).or_default();
        let replaced = list.iter().filter(|s| replaces(s)).cloned().collect();
        list.push(shared);
        Ok(Registered { replaced })
    }

    /// Makes `shared` watch exactly `users`' presence.
    pub(crate) fn watch(&self, shared: &Arc<SessionShared>, users: &[String]) {
        let mut registry = self.registry();
        if shared.is_ended() {
            return;
        }
        let mut watching = shared.watching.lock().unwrap_or_else(|p| p.into_inner());
        for old in watching.drain(..) {
            unwatch(&mut registry, &old, shared.id);
        }
        for user in users {
            registry
                .watchers
                .entry(user.clone())
                .or_default()
                .push(shared.clone());
        }
        watching.extend(users.iter().cloned());
    }

    /// Whether `user` may send a message now (counting it if so).
    pub(crate) fn may_send(&self, user: &str) -> bool {
        self.inner
            .send_limiter
            .as_ref()
            .is_none_or(|l| l.check_key(&user.to_string()).is_ok())
    }

    /// Whether `user` may send a status message now (counting it if so).
    pub(crate) fn may_send_status(&self, user: &str) -> bool {
        self.inner
            .status_limiter
            .check_key(&user.to_string())
            .is_ok()
    }

    fn unregister(&self, shared: &SessionShared) {
        let mut registry = self.registry();
        let mut went_offline = false;
        if let Some(list) = registry.by_user.get_mut(&shared.user) {
            let before = list.len();
            list.retain(|s| s.id != shared.id);
            if list.is_empty() {
                registry.by_user.remove(&shared.user);
                went_offline = before > 0;
            }
        }
        let watching: Vec<String> = shared
            .watching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for user in &watching {
            unwatch(&mut registry, user, shared.id);
        }
        // Told under the lock, like coming online (see `register`).
        if went_offline {
            if !self.online_elsewhere(&shared.user) {
                self.presence_changed(&shared.user, false, watchers_of(&registry, &shared.user));
            }
            self.cluster_presence(&shared.user, false);
        }
        drop(registry);
    }

    /// Number of live sessions (for health and metrics).
    pub fn session_count(&self) -> usize {
        self.registry().by_user.values().map(Vec::len).sum()
    }

    /// Writes through the committer, so API writes share the group commit and its ordering.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commits
            .send(CommitRequest::Write { ops, reply })
            .await
            .map_err(|_| ApiError::from(Code::ServerShutdown))?;
        match rx.await {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store write failed");
                Err(Code::ServerError.into())
            }
            Err(_) => Err(Code::ServerShutdown.into()),
        }
    }

    /// Queues a write nobody waits for through the committer (a device's cursor as its session
    /// ends): a full queue delays it, never drops it (see `commit::commit_later`).
    pub(crate) fn write_later(&self, op: WriteOp) {
        commit::commit_later(&self.inner.commits, op);
    }

    /// Queues a write nobody waits for if the committer has room now; false if it has not
    /// (the caller tries again later).
    pub(crate) fn try_write_soon(&self, op: WriteOp) -> bool {
        self.inner
            .commits
            .try_send(CommitRequest::Cursor(op))
            .is_ok()
    }

    /// What the bus received for this node, routed by the crate root, which alone names both
    /// the kernel and the features: a chatroom's items to the chatrooms, the rest to the
    /// cluster's own handling.
    fn on_bus(&self, event: cluster::BusEvent) {
        use cluster::BusEvent;
        match event {
            BusEvent::RoomForward { home, known, post } => self.room_forwarded(&home, known, post),
            BusEvent::RoomItem { post } => self.room_item_arrived(post),
            BusEvent::RoomSeq { home, room, seq } => self.room_seq_learned(&home, &room, seq),
            BusEvent::RoomRepeat { node, post } => self.room_repeat_arrived(&node, post),
            BusEvent::RoomStateAsk {
                home,
                room,
                node,
                token,
            } => self.room_state_asked(&home, &room, &node, token),
            BusEvent::RoomCount {
                room, node, count, ..
            } => self.room_count_arrived(&room, &node, count),
            BusEvent::RoomMembersAsk {
                room,
                node,
                token,
                after,
                limit,
            } => self.room_members_asked(&room, &node, token, after, limit),
            other => self.on_cluster_event(other),
        }
    }

    /// Mints an app server's token for `user`, valid for `ttl` (the configured default if
    /// `None`). Returns the token and its expiry in seconds since the epoch. The id is recorded
    /// first, in the store, so it can never be registered as an account afterwards; an id that
    /// is a self-registered account's is refused (42014).
    pub async fn mint_token(
        &self,
        user: &str,
        ttl: Option<Duration>,
    ) -> Result<(String, i64), ApiError> {
        if !validate::is_user_id(user) {
            return Err(Code::InvalidUserId.into());
        }
        let results = self
            .write(vec![WriteOp::RecordUser {
                user: user.to_string(),
            }])
            .await?;
        let record = match results.first() {
            Some(WriteResult::UserRecorded(record)) => *record,
            other => {
                tracing::error!(?other, "unexpected store result for a user's record");
                return Err(Code::ServerError.into());
            }
        };
        if record.account {
            return Err(Code::UserIsAccount.into());
        }
        self.mint(user, record.token_version, auth::Origin::AppServer, ttl)
    }

    /// Mints a token of `origin` for `user` at `token_version`, valid for `ttl` (the
    /// configured default if `None`).
    fn mint(
        &self,
        user: &str,
        token_version: u64,
        origin: auth::Origin,
        ttl: Option<Duration>,
    ) -> Result<(String, i64), ApiError> {
        let now = self.now_ms() / 1000;
        let exp = now + ttl.unwrap_or(self.inner.config.token_ttl).as_secs() as i64;
        let token = auth::mint_for(
            origin,
            &self.inner.config.credentials,
            user,
            token_version,
            (now, exp),
        )?;
        Ok((token, exp))
    }

    /// Revokes every token of `user` and disconnects the user's live sessions. Returns the new
    /// token version.
    pub async fn revoke_tokens(&self, user: &str) -> Result<u64, ApiError> {
        if !validate::is_user_id(user) {
            return Err(Code::InvalidUserId.into());
        }
        let results = self
            .write(vec![WriteOp::BumpTokenVersion { user: user.into() }])
            .await?;
        let version = match results.first() {
            Some(WriteResult::TokenVersion(v)) => *v,
            _ => return Err(Code::ServerError.into()),
        };
        self.tokens_revoked(user, version);
        Ok(version)
    }

    /// After `user`'s token version became `version` in the store: refuses older tokens from
    /// now on, and disconnects the user's live sessions, on every node.
    fn tokens_revoked(&self, user: &str, version: u64) {
        self.tokens_revoked_here(user, version);
        self.bus_publish(cluster::BusEvent::Revoked {
            user: user.to_string(),
            version,
        });
    }

    /// [`Engine::tokens_revoked`] on this node.
    fn tokens_revoked_here(&self, user: &str, version: u64) {
        let sessions = {
            let mut registry = self.registry();
            let min = registry
                .min_token_version
                .entry(user.to_string())
                .or_default();
            *min = (*min).max(version);
            registry.by_user.get(user).cloned().unwrap_or_default()
        };
        for s in sessions {
            s.end(self, Code::TokenRevoked);
        }
    }

    /// Records a ban (or its end) on this node, ending the user's sessions here.
    pub(crate) fn banned_here(&self, user: &str, banned: bool) {
        let sessions = {
            let mut registry = self.registry();
            if banned {
                registry.banned.insert(user.to_string());
                registry.by_user.get(user).cloned().unwrap_or_default()
            } else {
                registry.banned.remove(user);
                Vec::new()
            }
        };
        for s in sessions {
            s.end(self, Code::UserBanned);
        }
    }

    /// [`Engine::kick_device`] on this node: ends the sessions of `user` it names (of one
    /// device, or one session, or all).
    pub(crate) fn kick_here(
        &self,
        user: &str,
        device: Option<&str>,
        session: Option<u64>,
    ) -> usize {
        let kicked: Vec<_> = self
            .sessions_of(user)
            .into_iter()
            .filter(|s| {
                session.is_none_or(|id| s.id == id)
                    && device.is_none_or(|d| !s.anonymous && s.device == d)
            })
            .collect();
        for s in &kicked {
            s.end(self, Code::KickedByOperator);
        }
        kicked.len()
    }

    /// Authenticates an HTTP API request: signature (in a form the `api_signature` setting
    /// accepts), time window, and single use of the nonce.
    pub async fn check_api_request(&self, request: &auth::ApiRequest<'_>) -> Result<(), ApiError> {
        let now = self.now_ms();
        let config = &self.inner.config;
        let nonce =
            auth::check_api_signature(&config.credentials, config.api_signature, request, now)?;
        let results = self
            .write(vec![WriteOp::UseNonce {
                nonce: nonce.to_string(),
                now,
                expires_at: now + 2 * auth::API_WINDOW_MS,
            }])
            .await?;
        match results.first() {
            Some(WriteResult::Nonce { fresh: true }) => Ok(()),
            Some(WriteResult::Nonce { fresh: false }) => Err(Code::NonceReused.into()),
            _ => Err(Code::ServerError.into()),
        }
    }

    /// Stops the engine: refuses new connections, commits and answers everything already queued,
    /// then ends every session with a DISCONNECT (server shutdown), stores their cursors, and
    /// closes the store. Call it after the gateway has stopped reading from clients.
    pub async fn shutdown(&self) {
        self.registry().accepting = false;
        if let Some(node) = self.node_id() {
            self.bus_publish(cluster::BusEvent::Leaving {
                node: node.to_string(),
            });
        }
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .commits
            .send(CommitRequest::Stop { reply })
            .await
            .is_ok()
        {
            // The committer answers after everything queued before the stop is committed.
            let _ = rx.await;
        }
        let task = self
            .inner
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "committer task failed");
        }
        let all = self.all_sessions();
        let mut ops = Vec::new();
        let now = self.now_ms();
        let mut users = std::collections::BTreeSet::new();
        for s in &all {
            if let Some(op) = s.cursor_op() {
                ops.push(op);
            }
            s.end(self, Code::ServerShutdown);
            users.insert(s.user.clone());
        }
        // The committer has stopped, so the users going offline now are recorded here.
        ops.extend(
            users
                .into_iter()
                .map(|user| WriteOp::SetLastSeen { user, time: now }),
        );
        self.stop_rooms();
        if !ops.is_empty()
            && let Err(e) = self.inner.store.write(ops).await
        {
            tracing::warn!(error = %e, "could not store device cursors and last-seen times at shutdown");
        }
        if self.inner.config.owns_store
            && let Err(e) = self.inner.store.close().await
        {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}

#[cfg(test)]
mod tests;
