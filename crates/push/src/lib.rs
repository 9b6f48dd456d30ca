//! Web Push to offline devices, implementing the engine's [`Pusher`].
//!
//! - **Queue**: the committer hands a [`PushJob`] (a message and its recipients with no device
//!   online) to [`Pusher::notify`], which only tries to queue it (bounded, `queue`). A full
//!   queue drops the job, counts it ([`WebPush::dropped`]) and logs it: the message itself is in
//!   the recipients' inboxes, and a notification is a hint to come back and sync.
//! - **Worker**: one task takes jobs in order, reads the recipients' subscriptions (one read for
//!   all), and for each user who has one, their quiet hours and their settings of the
//!   conversation; it skips users in quiet hours and users who muted the conversation. Every
//!   other user's notification runs as a task of its own, so a push service that is slow, down
//!   or waiting out a retry never holds up later jobs. At most `max_pending` notifications are
//!   under way; past that the worker waits, the queue fills, and new jobs are dropped.
//! - **Delivery** (RFC 8030): a POST of the payload encrypted to the subscription's keys
//!   (RFC 8291 `aes128gcm`, by `web-push-native`), with `TTL`, `Urgency: normal` and
//!   `Authorization: vapid t=<JWT>, k=<public key>` (RFC 8292: ES256, `aud` the endpoint's
//!   origin, `exp` 12 hours ahead, `sub` the configured contact). At most `concurrency` requests
//!   are open at once. 201 or 202 (any 2xx) is delivered; 404 or 410 means the subscription
//!   expired, and it is removed from the store; a network error, 429 or 5xx is retried after
//!   `retry_base`, doubling (or after the `Retry-After` seconds, up to `retry_after_cap`),
//!   `attempts` in all; any other status gives up.
//! - **Outcomes**: every user's final outcome (delivered to at least one of their
//!   subscriptions, or not) goes on a broadcast channel ([`Pusher::outcomes`]).
//!
//! The payload is JSON: `{"uid","conversationType","targetId","senderId","text","sentTime"}`,
//! `targetId` from the recipient's side (see [`Notification`]).
//!
//! Architecture invariant: only this crate knows HTTP push, VAPID and payload encryption; the
//! engine sees the `Pusher` trait, and nothing in it waits on a push service.

pub mod apns;
pub mod fcm;
pub mod sent;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tidings_engine::Clock;
use tidings_engine::push::{Notification, PushJob, PushOutcome, Pusher, in_quiet_hours};
use tidings_store::{ConversationFilter, PushSubscriptionRecord, Store};
use tokio::sync::{Semaphore, broadcast, mpsc};
use web_push_native::jwt_simple::prelude::{
    Claims, ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair,
};

/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours).
pub const VAPID_VALIDITY: Duration = Duration::from_secs(12 * 3600);

/// Settings; defaults on [`PushConfig::new`].
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The VAPID `sub` claim: a `mailto:` or `https:` contact for the push services.
    pub subject: String,
    /// Attempts per subscription, the first included.
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
    /// How long the push service keeps a notification for a device that is not reachable.
    pub ttl: Duration,
}

impl PushConfig {
    /// Defaults: 4 attempts, retried after 1, 2 and 4 s (`Retry-After` up to 5 minutes), 10,000
    /// jobs queued and 10,000 notifications under way at most, 32 requests at once, 10 s per
    /// request, a TTL of one day, `mailto:admin@localhost` as the contact.
    pub fn new() -> PushConfig {
        PushConfig {
            subject: "mailto:admin@localhost".into(),
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

/// The server's VAPID key pair (P-256).
pub struct VapidKey(ES256KeyPair);

impl VapidKey {
    pub fn generate() -> VapidKey {
        VapidKey(ES256KeyPair::generate())
    }

    /// From the 32 bytes of the secret scalar.
    pub fn from_bytes(secret: &[u8]) -> Result<VapidKey, PushError> {
        ES256KeyPair::from_bytes(secret)
            .map(VapidKey)
            .map_err(|e| PushError::Key(e.to_string()))
    }

    /// The 32 bytes of the secret scalar.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Unpadded base64url of the uncompressed public point.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.public_key().public_key().to_bytes_uncompressed())
    }

    /// The `Authorization` header for a request to `endpoint`.
    fn authorization(&self, endpoint: &url::Url, subject: &str) -> Result<String, PushError> {
        let claims = Claims::create(VAPID_VALIDITY.into())
            .with_audience(endpoint.origin().ascii_serialization())
            .with_subject(subject);
        let token = self
            .0
            .sign(claims)
            .map_err(|e| PushError::Sign(e.to_string()))?;
        Ok(format!("vapid t={token}, k={}", self.public_key()))
    }
}

/// Web Push delivery. Dropping the last reference (the engine's) ends the worker once the jobs
/// queued are taken.
pub struct WebPush {
    queue: mpsc::Sender<PushJob>,
    outcomes: broadcast::Sender<PushOutcome>,
    public_key: String,
    dropped: Arc<AtomicU64>,
}

impl WebPush {
    /// Starts the worker on the current runtime.
    pub fn start(
        config: PushConfig,
        key: VapidKey,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<Arc<WebPush>, PushError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(PushError::Client)?;
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let (outcomes, _) = broadcast::channel(1024);
        let public_key = key.public_key();
        let shared = Arc::new(Shared {
            sending: Semaphore::new(config.concurrency.max(1)),
            config,
            key,
            client,
            store,
            outcomes: outcomes.clone(),
        });
        tokio::spawn(work(shared, clock, rx));
        Ok(Arc::new(WebPush {
            queue,
            outcomes,
            public_key,
            dropped: Arc::new(AtomicU64::new(0)),
        }))
    }

    /// Jobs dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Pusher for WebPush {
    fn public_key(&self) -> String {
        self.public_key.clone()
    }

    fn valid_key(&self, p256dh: &[u8]) -> bool {
        web_push_native::p256::PublicKey::from_sec1_bytes(p256dh).is_ok()
    }

    fn notify(&self, job: PushJob) {
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                metrics::m().dropped.increment(1);
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Logged at the 1st, 2nd, 4th, 8th, … drop: under overload a line per message
                // would add to the load (the metric counts every one).
                if dropped.is_power_of_two() {
                    tracing::error!(
                        uid = %job.message.uid,
                        users = job.users.len(),
                        dropped,
                        "the push queue is full: this message's notifications are dropped"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::m().dropped.increment(1);
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::error!(
                        dropped,
                        "the push worker has stopped: notifications are dropped"
                    );
                }
            }
        }
    }

    fn outcomes(&self) -> broadcast::Receiver<PushOutcome> {
        self.outcomes.subscribe()
    }
}

/// What the worker and the notification tasks share.
struct Shared {
    config: PushConfig,
    key: VapidKey,
    client: reqwest::Client,
    store: Arc<dyn Store>,
    outcomes: broadcast::Sender<PushOutcome>,
    /// One permit per open request.
    sending: Semaphore,
}

/// The worker: takes jobs in order, decides who gets a notification, and starts them.
async fn work(shared: Arc<Shared>, clock: Clock, mut rx: mpsc::Receiver<PushJob>) {
    let pending = Arc::new(Semaphore::new(shared.config.max_pending.max(1)));
    while let Some(job) = rx.recv().await {
        let subs = match shared.store.push_subscriptions(&job.users).await {
            Ok(s) => s,
            // The server is stopping: what is queued cannot be read any more.
            Err(tidings_store::StoreError::Closed) => {
                tracing::debug!("the store closed: the push worker stops");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, uid = %job.message.uid, "reading push subscriptions failed: notifications dropped");
                continue;
            }
        };
        let mut by_user: BTreeMap<String, Vec<PushSubscriptionRecord>> = BTreeMap::new();
        for sub in subs {
            by_user.entry(sub.user.clone()).or_default().push(sub);
        }
        for (user, subs) in by_user {
            let notification = Notification::of(&job.message, &user);
            match wanted(&shared, &user, &notification, clock()).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e, %user, "reading push settings failed: notification dropped");
                    continue;
                }
            }
            let Ok(permit) = pending.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let delivered = notify_user(&shared, &notification, subs).await;
                drop(permit);
                // No receiver is not an error: nobody asked for outcomes.
                let _ = shared.outcomes.send(PushOutcome {
                    uid: notification.uid,
                    user,
                    delivered,
                });
            });
        }
    }
}

/// Whether `user` wants this notification now: not in quiet hours, conversation not muted.
async fn wanted(
    shared: &Shared,
    user: &str,
    n: &Notification,
    now_ms: i64,
) -> Result<bool, tidings_store::StoreError> {
    if in_quiet_hours(shared.store.quiet_hours(user).await?, now_ms) {
        return Ok(false);
    }
    let found = shared
        .store
        .conversations(
            user,
            ConversationFilter {
                one: Some((n.conversation_type, n.target_id.clone())),
                ..Default::default()
            },
        )
        .await?;
    Ok(!found.conversations.iter().any(|c| c.settings.muted))
}

/// The payload of a notification.
fn payload(n: &Notification) -> Vec<u8> {
    json!({
        "uid": n.uid,
        "conversationType": n.conversation_type,
        "targetId": n.target_id,
        "senderId": n.sender_id,
        "text": n.text,
        "sentTime": n.sent_time,
    })
    .to_string()
    .into_bytes()
}

/// Sends one user's notification to each of their subscriptions at once; true if any took it.
async fn notify_user(
    shared: &Arc<Shared>,
    n: &Notification,
    subs: Vec<PushSubscriptionRecord>,
) -> bool {
    let body = payload(n);
    let mut tasks = tokio::task::JoinSet::new();
    for sub in subs {
        let shared = shared.clone();
        let body = body.clone();
        let uid = n.uid.clone();
        tasks.spawn(async move { deliver(&shared, &uid, &sub, body).await });
    }
    let mut delivered = false;
    while let Some(done) = tasks.join_next().await {
        delivered |= done.unwrap_or(false);
    }
    delivered
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// The subscription is gone (404, 410).
    Expired,
    /// Worth another attempt, after at least this long (a `Retry-After`), if given.
    Retry(Option<Duration>),
    GiveUp,
}

/// Sends to one subscription, retrying with backoff; true if the push service took it.
async fn deliver(shared: &Shared, uid: &str, sub: &PushSubscriptionRecord, body: Vec<u8>) -> bool {
    let config = &shared.config;
    let request = match encrypt(sub, body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, %uid, user = %sub.user, "cannot encrypt to a push subscription: given up");
            metrics::m().failed.increment(1);
            return false;
        }
    };
    let mut attempt = 1;
    loop {
        let outcome = send(shared, &request).await;
        let wait = match outcome {
            Attempt::Delivered => {
                metrics::m().delivered.increment(1);
                return true;
            }
            Attempt::Expired => {
                metrics::m().expired.increment(1);
                tracing::info!(%uid, user = %sub.user, "a push subscription expired: removed");
                if let Err(e) = shared
                    .store
                    .remove_push_subscription(&sub.endpoint, None)
                    .await
                {
                    tracing::error!(error = %e, "removing an expired push subscription failed");
                }
                return false;
            }
            Attempt::GiveUp => {
                metrics::m().failed.increment(1);
                return false;
            }
            Attempt::Retry(after) => after,
        };
        if attempt >= config.attempts {
            metrics::m().failed.increment(1);
            tracing::warn!(%uid, user = %sub.user, attempts = attempt, "a push notification failed every attempt: given up");
            return false;
        }
        let backoff = config.retry_base * 2u32.saturating_pow(attempt - 1);
        let delay = wait.map_or(backoff, |w| w.min(config.retry_after_cap).max(backoff));
        metrics::m().retry.increment(1);
        tracing::debug!(%uid, attempt, retry_in = ?delay, "a push notification failed");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// A request, encrypted once and sent as often as it takes.
struct Prepared {
    endpoint: url::Url,
    body: Vec<u8>,
}

/// Encrypts `body` to the subscription's keys, once: every attempt sends the same bytes (and
/// signs a fresh JWT).
fn encrypt(sub: &PushSubscriptionRecord, body: Vec<u8>) -> Result<Prepared, PushError> {
    let bad = |e: &dyn std::fmt::Display| PushError::Subscription(e.to_string());
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| bad(&e))
    };
    let endpoint = url::Url::parse(&sub.endpoint).map_err(|e| bad(&e))?;
    let key = web_push_native::p256::PublicKey::from_sec1_bytes(&decode(&sub.p256dh)?)
        .map_err(|e| bad(&e))?;
    let auth: [u8; 16] = decode(&sub.auth)?
        .try_into()
        .map_err(|_| bad(&"the auth secret is not 16 bytes"))?;
    let auth = web_push_native::Auth::from(auth);
    let body = web_push_native::encrypt(body, &key, &auth).map_err(|e| bad(&e))?;
    Ok(Prepared { endpoint, body })
}

async fn send(shared: &Shared, request: &Prepared) -> Attempt {
    let authorization = match shared
        .key
        .authorization(&request.endpoint, &shared.config.subject)
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a VAPID JWT");
            return Attempt::GiveUp;
        }
    };
    let Ok(_permit) = shared.sending.acquire().await else {
        return Attempt::GiveUp;
    };
    let response = shared
        .client
        .post(request.endpoint.clone())
        .header("TTL", shared.config.ttl.as_secs().to_string())
        .header("Urgency", "normal")
        .header("Content-Encoding", "aes128gcm")
        .header("Content-Type", "application/octet-stream")
        .header("Authorization", authorization)
        .body(request.body.clone())
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "a push request failed");
            return Attempt::Retry(None);
        }
    };
    let status = response.status().as_u16();
    match status {
        200..=299 => Attempt::Delivered,
        404 | 410 => Attempt::Expired,
        429 | 500..=599 => Attempt::Retry(
            response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        ),
        _ => {
            tracing::warn!(status, endpoint = %request.endpoint.origin().ascii_serialization(), "a push service refused a notification: given up");
            Attempt::GiveUp
        }
    }
}

/// The push worker's metrics (docs/operations.md), made once.
pub mod metrics {
    use std::sync::LazyLock;

    use ::metrics::{Counter, counter, describe_counter};

    pub const SENDS: &str = "tidings_push_sends_total";

    pub(crate) struct PushMetrics {
        pub delivered: Counter,
        pub expired: Counter,
        pub retry: Counter,
        pub failed: Counter,
        pub dropped: Counter,
    }

    static METRICS: LazyLock<PushMetrics> = LazyLock::new(|| {
        describe_counter!(
            SENDS,
            "Web Push requests by outcome: delivered (2xx), expired (404/410: subscription removed), retry (an attempt failed and is retried), failed (given up), dropped (the push queue was full, nothing sent)."
        );
        let by = |outcome: &'static str| counter!(SENDS, "outcome" => outcome);
        PushMetrics {
            delivered: by("delivered"),
            expired: by("expired"),
            retry: by("retry"),
            failed: by("failed"),
            dropped: by("dropped"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vapid_key_survives_its_bytes() {
        let key = VapidKey::generate();
        let again = VapidKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let raw = URL_SAFE_NO_PAD.decode(key.public_key()).unwrap();
        assert_eq!((raw.len(), raw[0]), (65, 4));
    }

    #[test]
    fn the_audience_is_the_endpoints_origin() {
        let key = VapidKey::generate();
        let header = key
            .authorization(
                &url::Url::parse("http://127.0.0.1:8080/push/1?x=y").unwrap(),
                "mailto:a@b",
            )
            .unwrap();
        let token = header
            .strip_prefix("vapid t=")
            .and_then(|r| r.split(", k=").next())
            .unwrap();
        let claims = key
            .0
            .public_key()
            .verify_token::<serde_json::Value>(token, None)
            .unwrap();
        assert!(
            claims
                .audiences
                .unwrap()
                .contains(&std::collections::HashSet::from([
                    "http://127.0.0.1:8080".to_string()
                ]))
        );
        assert_eq!(claims.subject.as_deref(), Some("mailto:a@b"));
    }
}
