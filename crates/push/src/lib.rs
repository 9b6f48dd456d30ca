//! Notifications to devices that are not connected, or whose app is in the background:
//! Web Push to browsers, Firebase Cloud Messaging and Apple Push Notification service to phones.
//! This crate implements the engine's [`Pusher`].
//!
//! - **Due**: the store writes a notification due in the commit that stores its message, for
//!   each recipient with a push token (`tidings_store::rules::push`), so a server killed right
//!   after a commit still notifies: at start, [`Push::recover`] queues what is due.
//! - **Queue**: after a commit the engine hands a [`PushJob`] (the message, its recipients and
//!   which of their devices were awake) to [`Pusher::notify`], which only tries to queue it
//!   (bounded, `queue`). A full queue drops the job, counts it ([`Push::dropped`]) and logs it;
//!   what was due stays in the store until the next start.
//! - **Worker** (`worker.rs`): takes jobs in order, reads the recipients' tokens (one read for
//!   all), drops the tokens of awake devices, and for each user who still has one reads their
//!   quiet hours and conversations (mute, badge) and decides; every notification that goes out
//!   runs as a task of its own, so a slow, failing or rate-limiting provider never holds up
//!   later jobs, and nothing in the engine waits on one. At most `max_pending` notifications
//!   are under way; past that the worker waits, the queue fills, and new jobs are dropped.
//! - **Delivery**: Web Push (`webpush.rs`), FCM HTTP v1 (`fcm.rs`), APNs over HTTP/2
//!   (`apns.rs`), each one request classified as a [`sent::Sent`]: delivered; a dead token,
//!   removed from the store; worth a retry (a network error, 429, 5xx), after `retry_base`
//!   doubling or the provider's `Retry-After` (up to `retry_after_cap`), `attempts` in all;
//!   refused. At most `concurrency` requests are open at once.
//! - **Done**: once every token of a user was tried, what was due is forgotten (batched writes),
//!   so each device gets a message's notification at most once, also across a restart — but
//!   for a crash between a provider's acceptance and that write, where the notification is sent
//!   again with the same collapse id (the message's uid) and replaces the one shown.
//! - **Outcomes**: every user's final outcome (delivered to at least one of their devices, or
//!   not) goes on a broadcast channel ([`Pusher::outcomes`]), and each request's on the
//!   `tidings_push_sends_total` counter, by provider.
//!
//! What a notification says and its shape for each provider: `payload.rs`.
//!
//! Architecture invariant: only this crate knows the push providers, VAPID and payload
//! encryption; the engine sees the `Pusher` trait, and nothing in it waits on a push service.

pub mod apns;
pub mod fcm;
mod payload;
pub mod sent;
mod webpush;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tidings_engine::Clock;
use tidings_engine::push::{PushJob, PushOutcome, Pusher};
use tidings_store::{PushProvider, Store};
use tokio::sync::{broadcast, mpsc};

pub use payload::RECALLED_TEXT;
pub use webpush::{VAPID_VALIDITY, VapidKey};

/// Settings; defaults on [`PushConfig::new`].
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The VAPID `sub` claim: a `mailto:` or `https:` contact for the push services.
    pub subject: String,
    /// FCM: the service account and endpoint; `None` turns FCM off.
    pub fcm: Option<fcm::FcmConfig>,
    /// APNs: the key, ids and endpoints; `None` turns APNs off.
    pub apns: Option<apns::ApnsConfig>,
    /// The APNs topic (the app's bundle id) for tokens registered without an app id.
    pub apns_topic: String,
    /// Notifications carry no text, only data (an APNs background push, an FCM data message):
    /// for apps that fetch or decrypt messages themselves, and to keep message text on the
    /// server.
    pub data_only: bool,
    /// Notifications carry localisation keys and arguments instead of text.
    pub localized: bool,
    /// An @mention of the user, or of everyone, is notified in a muted conversation.
    pub mentions_pass_mute: bool,
    /// Web Push endpoints may be plain http or on private networks (loopback, RFC 1918, link
    /// local, …): for tests and closed networks. Off, a client cannot steer the server's
    /// requests at its own network.
    pub allow_private_endpoints: bool,
    /// Attempts per token, the first included.
    pub attempts: u32,
    /// The first retry's delay; each next one doubles it.
    pub retry_base: Duration,
    /// The longest `Retry-After` honoured; a longer one waits this long.
    pub retry_after_cap: Duration,
    /// Jobs waiting for the worker, at most.
    pub queue: usize,
    /// Users' notifications under way (sending or waiting to retry), at most.
    pub max_pending: usize,
    /// Requests open at once, at most.
    pub concurrency: usize,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long a push service keeps a notification for a device that is not reachable.
    pub ttl: Duration,
}

impl PushConfig {
    /// Defaults: Web Push only, with text; mentions pass a mute; 4 attempts, retried after 1, 2
    /// and 4 s (`Retry-After` up to 5 minutes), 10,000 jobs queued and 10,000 notifications
    /// under way at most, 32 requests at once, 10 s per request, a TTL of one day,
    /// `mailto:admin@localhost` as the contact.
    pub fn new() -> PushConfig {
        PushConfig {
            subject: "mailto:admin@localhost".into(),
            fcm: None,
            apns: None,
            apns_topic: String::new(),
            data_only: false,
            localized: false,
            mentions_pass_mute: true,
            allow_private_endpoints: false,
            attempts: 4,
            retry_base: Duration::from_secs(1),
            retry_after_cap: Duration::from_secs(300),
            queue: 10_000,
            max_pending: 10_000,
            concurrency: 32,
            request_timeout: Duration::from_secs(10),
            ttl: Duration::from_secs(86_400),
        }
    }
}

impl Default for PushConfig {
    fn default() -> PushConfig {
        PushConfig::new()
    }
}

/// What stops a notification or a key from being made.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("not a P-256 secret key: {0}")]
    Key(String),
    #[error("signing the VAPID JWT: {0}")]
    Sign(String),
    #[error("a subscription that cannot be encrypted to: {0}")]
    Subscription(String),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A push provider's settings that cannot work: a key that is not one, a URL that is not.
    #[error("push provider settings: {0}")]
    Config(String),
}

/// Push delivery. Dropping the last reference (the engine's) ends the worker once the jobs
/// queued are taken.
pub struct Push {
    queue: mpsc::Sender<PushJob>,
    outcomes: broadcast::Sender<PushOutcome>,
    public_key: String,
    dropped: Arc<AtomicU64>,
    fcm: bool,
    apns: bool,
    allow_private_endpoints: bool,
    store: Arc<dyn Store>,
}

impl Push {
    /// Starts the worker on the current runtime.
    pub fn start(
        config: PushConfig,
        key: VapidKey,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<Arc<Push>, PushError> {
        let mut client = reqwest::Client::builder().timeout(config.request_timeout);
        if !config.allow_private_endpoints {
            client = client.dns_resolver(Arc::new(webpush::PublicOnly));
        }
        let client = client.build().map_err(PushError::Client)?;
        let fcm = config.fcm.clone().map(fcm::Fcm::new).transpose()?;
        let apns = config.apns.clone().map(apns::Apns::new).transpose()?;
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let (outcomes, _) = broadcast::channel(1024);
        let public_key = key.public_key();
        let push = Arc::new(Push {
            queue,
            outcomes: outcomes.clone(),
            public_key,
            dropped: Arc::new(AtomicU64::new(0)),
            fcm: fcm.is_some(),
            apns: apns.is_some(),
            allow_private_endpoints: config.allow_private_endpoints,
            store: store.clone(),
        });
        let web = webpush::WebPushClient {
            key,
            subject: config.subject.clone(),
            ttl: config.ttl,
            client,
            allow_private: config.allow_private_endpoints,
        };
        worker::start(
            worker::Providers { web, fcm, apns },
            config,
            store,
            clock,
            outcomes,
            rx,
        );
        Ok(push)
    }

    /// Jobs dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues every notification the store holds as due: what a server that stopped (or was
    /// killed) after committing its messages had not sent. Call it once, as the server starts,
    /// before it takes connections (none of its recipients' devices is connected yet). Returns
    /// how many were due.
    pub async fn recover(&self) -> Result<usize, tidings_store::StoreError> {
        let due = self.store.push_due(MAX_RECOVERED).await?;
        let count = due.len();
        if count == MAX_RECOVERED {
            tracing::warn!(
                count,
                "more notifications are due than are sent at start: the rest wait for the next one"
            );
        }
        for job in worker::jobs_of(due) {
            if self.queue.send(job).await.is_err() {
                break;
            }
        }
        Ok(count)
    }
}

/// Whether notifications through `provider` can be sent: Web Push always, FCM and APNs when
/// their credentials are configured.
pub(crate) fn serves(provider: PushProvider, fcm: bool, apns: bool) -> bool {
    match provider {
        PushProvider::WebPush => true,
        PushProvider::Fcm => fcm,
        PushProvider::Apns => apns,
    }
}

/// The most notifications due that [`Push::recover`] reads at start.
pub const MAX_RECOVERED: usize = 100_000;

impl Pusher for Push {
    fn public_key(&self) -> String {
        self.public_key.clone()
    }

    fn valid_key(&self, p256dh: &[u8]) -> bool {
        web_push_native::p256::PublicKey::from_sec1_bytes(p256dh).is_ok()
    }

    fn endpoint_allowed(&self, endpoint: &str) -> bool {
        url::Url::parse(endpoint)
            .is_ok_and(|u| webpush::endpoint_allowed(&u, self.allow_private_endpoints))
    }

    fn serves(&self, provider: PushProvider) -> bool {
        serves(provider, self.fcm, self.apns)
    }

    fn notify(&self, job: PushJob) {
        let closed = match self.queue.try_send(job) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        };
        metrics::m().dropped.increment(1);
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Logged at the 1st, 2nd, 4th, 8th, … drop: under overload a line per message would
        // add to the load (the metric counts every one).
        if dropped.is_power_of_two() {
            if closed {
                tracing::error!(
                    dropped,
                    "the push worker has stopped: notifications are dropped"
                );
            } else {
                tracing::error!(
                    dropped,
                    "the push queue is full: notifications are dropped (sent at the next start)"
                );
            }
        }
    }

    fn outcomes(&self) -> broadcast::Receiver<PushOutcome> {
        self.outcomes.subscribe()
    }
}

/// The push worker's metrics (docs/operations.md), made once.
pub mod metrics {
    use std::sync::LazyLock;

    use ::metrics::{Counter, counter, describe_counter};
    use tidings_store::PushProvider;

    pub const SENDS: &str = "tidings_push_sends_total";

    /// One provider's counters, by outcome.
    pub(crate) struct Outcomes {
        pub delivered: Counter,
        pub expired: Counter,
        pub retry: Counter,
        pub failed: Counter,
    }

    pub(crate) struct PushMetrics {
        pub web: Outcomes,
        pub fcm: Outcomes,
        pub apns: Outcomes,
        pub dropped: Counter,
    }

    impl PushMetrics {
        pub fn of(&self, provider: PushProvider) -> &Outcomes {
            match provider {
                PushProvider::WebPush => &self.web,
                PushProvider::Fcm => &self.fcm,
                PushProvider::Apns => &self.apns,
            }
        }
    }

    static METRICS: LazyLock<PushMetrics> = LazyLock::new(|| {
        describe_counter!(
            SENDS,
            "Push requests by provider (webpush, fcm, apns) and outcome: delivered (accepted), expired (the token is dead: removed), retry (an attempt failed and is retried), failed (given up); and dropped (provider \"none\": the push queue was full, nothing sent)."
        );
        let of = |provider: PushProvider| {
            let by = |outcome: &'static str| counter!(SENDS, "provider" => provider.as_str(), "outcome" => outcome);
            Outcomes {
                delivered: by("delivered"),
                expired: by("expired"),
                retry: by("retry"),
                failed: by("failed"),
            }
        };
        PushMetrics {
            web: of(PushProvider::WebPush),
            fcm: of(PushProvider::Fcm),
            apns: of(PushProvider::Apns),
            dropped: counter!(SENDS, "provider" => "none", "outcome" => "dropped"),
        }
    });

    /// Makes the handles with the recorder installed now. Call it once, after installing it.
    pub fn register() {
        LazyLock::force(&METRICS);
    }

    pub(crate) fn m() -> &'static PushMetrics {
        &METRICS
    }
}
