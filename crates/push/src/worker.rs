//! The push worker: takes jobs in order, decides who gets a notification, builds it, sends it
//! through its provider with retries, removes dead tokens, and forgets what was due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tidings_engine::Clock;
use tidings_engine::push::{
    Awake, Notification, PushJob, PushOutcome, PushRecipient, in_quiet_hours,
};
use tidings_proto::conversation_type;
use tidings_store::rules::push::RECALL_EVENT;
use tidings_store::{
    ConversationFilter, HistoryFrom, HistoryQuery, PushDue, PushProvider, PushTokenRecord, Store,
    StoreError, StoredMessage, WriteOp,
};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::PushConfig;
use crate::payload::{Content, Kind, apns_request, fcm_message, webpush_body};
use crate::sent::Sent;
use crate::webpush::WebPushClient;

/// The clients of the providers configured.
pub(crate) struct Providers {
    pub web: WebPushClient,
    pub fcm: Option<crate::fcm::Fcm>,
    pub apns: Option<crate::apns::Apns>,
}

/// What the worker and the notification tasks share.
struct Shared {
    config: PushConfig,
    providers: Providers,
    store: Arc<dyn Store>,
    clock: Clock,
    outcomes: broadcast::Sender<PushOutcome>,
    /// One permit per open request.
    sending: Semaphore,
    /// What was due and is decided: forgotten in batches.
    done: mpsc::UnboundedSender<(String, u64)>,
}

/// At most this many entries are forgotten in one write.
const DONE_BATCH: usize = 512;

pub(crate) fn start(
    providers: Providers,
    config: PushConfig,
    store: Arc<dyn Store>,
    clock: Clock,
    outcomes: broadcast::Sender<PushOutcome>,
    rx: mpsc::Receiver<PushJob>,
) {
    let (done, done_rx) = mpsc::unbounded_channel();
    tokio::spawn(forget(store.clone(), done_rx));
    let shared = Arc::new(Shared {
        sending: Semaphore::new(config.concurrency.max(1)),
        config,
        providers,
        store,
        clock,
        outcomes,
        done,
    });
    tokio::spawn(work(shared, rx));
}

/// Jobs for what the store holds as due, one per message, with nobody awake.
pub(crate) fn jobs_of(due: Vec<PushDue>) -> Vec<PushJob> {
    let mut jobs: Vec<PushJob> = Vec::new();
    for d in due {
        let recipient = PushRecipient {
            user: d.user,
            inbox_seq: d.inbox_seq,
            awake: Awake::default(),
        };
        match jobs.last_mut() {
            Some(job) if job.message.uid == d.message.uid => job.recipients.push(recipient),
            _ => jobs.push(PushJob {
                message: Arc::new(d.message),
                recipients: vec![recipient],
                push_data: d.push_data,
                recovered: true,
            }),
        }
    }
    jobs
}

/// Forgets what was due, many entries per write. An entry whose write fails stays due: it is
/// sent again at the next start (and replaces the notification shown, by its collapse id).
async fn forget(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<(String, u64)>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, DONE_BATCH).await > 0 {
        let due = std::mem::take(&mut batch);
        if let Err(e) = store.write(vec![WriteOp::PushDone { due }]).await {
            if matches!(e, StoreError::Closed) {
                return;
            }
            tracing::error!(error = %e, "forgetting notifications sent failed: they are sent again at the next start");
        }
    }
}

/// The worker: takes jobs in order, decides who gets a notification, and starts them.
async fn work(shared: Arc<Shared>, mut rx: mpsc::Receiver<PushJob>) {
    let pending = Arc::new(Semaphore::new(shared.config.max_pending.max(1)));
    while let Some(job) = rx.recv().await {
        let users: Vec<String> = job.recipients.iter().map(|r| r.user.clone()).collect();
        let tokens = match shared.store.push_tokens(&users).await {
            Ok(t) => t,
            // The server is stopping: what is queued stays due for the next start.
            Err(StoreError::Closed) => {
                tracing::debug!("the store closed: the push worker stops");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, uid = %job.message.uid, "reading push tokens failed: notifications wait for the next start");
                continue;
            }
        };
        let mut by_user: BTreeMap<String, Vec<PushTokenRecord>> = BTreeMap::new();
        for t in tokens {
            by_user.entry(t.user.clone()).or_default().push(t);
        }
        for recipient in job.recipients {
            let key = (recipient.user.clone(), recipient.inbox_seq);
            // Nothing was due for a user without a token, unless their last token went since.
            let Some(tokens) = by_user.remove(&recipient.user) else {
                if job.recovered {
                    let _ = shared.done.send(key);
                }
                continue;
            };
            let tokens: Vec<PushTokenRecord> = tokens
                .into_iter()
                .filter(|t| !recipient.awake.covers(&t.device) && shared.serves(t.provider))
                .collect();
            let content = if tokens.is_empty() {
                Ok(None)
            } else {
                decide(&shared, &recipient.user, &job.message, &job.push_data).await
            };
            let content = match content {
                Ok(Some(c)) => c,
                Ok(None) => {
                    let _ = shared.done.send(key);
                    continue;
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::error!(error = %e, user = %recipient.user, "reading what a notification needs failed: it waits for the next start");
                    continue;
                }
            };
            let Ok(permit) = pending.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let delivered = notify_user(&shared, &content, tokens).await;
                let _ = shared.done.send(key.clone());
                drop(permit);
                // No receiver is not an error: nobody asked for outcomes.
                let _ = shared.outcomes.send(PushOutcome {
                    uid: content.notification.uid.clone(),
                    user: key.0,
                    delivered,
                });
            });
        }
    }
}

impl Shared {
    /// Whether a token's provider is configured now (a token saved while it was may outlive
    /// the configuration).
    fn serves(&self, provider: PushProvider) -> bool {
        crate::serves(
            provider,
            self.providers.fcm.is_some(),
            self.providers.apns.is_some(),
        )
    }
}

/// The notification `user` gets of `message`, or `None` when they get none: in their quiet
/// hours, or the conversation is muted (unless the message mentions them or everyone, and
/// mentions pass a mute), or a recall of a message that is gone.
async fn decide(
    shared: &Shared,
    user: &str,
    message: &StoredMessage,
    push_data: &str,
) -> Result<Option<Content>, StoreError> {
    let store = &shared.store;
    let recall = message.msg_type == RECALL_EVENT;
    let notification = Notification::of(message, user);
    // What the decision and the text need, read at once: the worker decides one notification
    // at a time (so that they go out in commit order), and these reads are most of its time.
    let sender = std::slice::from_ref(&message.sender);
    let (quiet, all, profiles, group) = tokio::try_join!(
        store.quiet_hours(user),
        store.conversations(user, ConversationFilter::default()),
        store.profiles(sender),
        async {
            if message.conversation_type == conversation_type::GROUP {
                store.group(&message.target).await
            } else {
                Ok(None)
            }
        },
    )?;
    if in_quiet_hours(quiet, (shared.clock)()) {
        return Ok(None);
    }
    let muted = all.conversations.iter().any(|c| {
        c.settings.muted
            && c.settings.conversation_type == notification.conversation_type
            && c.settings.target_id == notification.target_id
    });
    let mentioned = message.mention_all || message.mentions.iter().any(|m| m == user);
    if muted && !(mentioned && shared.config.mentions_pass_mute) && !recall {
        return Ok(None);
    }
    let badge = all.conversations.iter().map(|c| c.unread).sum();
    let (kind, collapse, msg_type) = if recall {
        let Some(seq) = serde_json::from_str::<serde_json::Value>(&message.content)
            .ok()
            .and_then(|v| v.get("seq").and_then(|s| s.as_u64()))
        else {
            return Ok(None);
        };
        let page = store
            .history(
                user,
                HistoryQuery::new(
                    &message.conversation_id,
                    HistoryFrom::AfterSeq(seq.saturating_sub(1)),
                    1,
                ),
            )
            .await?;
        let Some(recalled) = page.messages.into_iter().find(|m| m.seq == seq) else {
            return Ok(None);
        };
        (Kind::Recall, recalled.uid, recalled.msg_type)
    } else {
        (Kind::Message, message.uid.clone(), message.msg_type.clone())
    };
    let sender_name = profiles
        .into_iter()
        .next()
        .map(|p| p.name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| message.sender.clone());
    let group_name = if message.conversation_type == conversation_type::GROUP {
        group
            .map(|g| g.name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| message.target.clone())
    } else {
        String::new()
    };
    // An end-to-end encrypted conversation's notifications carry no text: the app syncs and
    // decrypts the message itself.
    let data_only = shared.config.data_only || msg_type == tidings_engine::e2ee::MLS_TYPE;
    Ok(Some(Content {
        seq: message.seq,
        notification,
        kind,
        msg_type,
        collapse,
        sender_name,
        group_name,
        badge,
        push_data: push_data.to_string(),
        data_only,
        localized: shared.config.localized,
    }))
}

/// Sends one user's notification to each of their tokens at once; true if any took it.
async fn notify_user(
    shared: &Arc<Shared>,
    content: &Content,
    tokens: Vec<PushTokenRecord>,
) -> bool {
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let shared = shared.clone();
        let content = content.clone();
        tasks.spawn(async move { deliver(&shared, &content, &token).await });
    }
    let mut delivered = false;
    while let Some(done) = tasks.join_next().await {
        delivered |= done.unwrap_or(false);
    }
    delivered
}

/// One provider request, built once and sent as often as it takes.
enum Request {
    Web(crate::webpush::Prepared),
    Fcm(serde_json::Value),
    Apns(crate::apns::ApnsRequest),
}

/// Builds the request for `token`; `Err` says why none can be.
fn request(shared: &Shared, content: &Content, token: &PushTokenRecord) -> Result<Request, String> {
    let ttl = shared.config.ttl.as_secs();
    match token.provider {
        PushProvider::WebPush => shared
            .providers
            .web
            .prepare(token, webpush_body(content))
            .map(Request::Web)
            .map_err(|e| e.to_string()),
        PushProvider::Fcm => Ok(Request::Fcm(fcm_message(content, &token.token, ttl))),
        PushProvider::Apns => {
            let topic = if token.app_id.is_empty() {
                shared.config.apns_topic.as_str()
            } else {
                token.app_id.as_str()
            };
            if topic.is_empty() {
                return Err(
                    "no APNs topic: the token names no app id and apns_topic is not set".into(),
                );
            }
            let expiration = (shared.clock)() / 1000 + ttl as i64;
            Ok(Request::Apns(apns_request(
                content,
                &token.token,
                token.sandbox,
                topic,
                expiration,
            )))
        }
    }
}

async fn send(shared: &Shared, request: &Request) -> Sent {
    let Ok(_permit) = shared.sending.acquire().await else {
        return Sent::Failed("the push worker is stopping".into());
    };
    match request {
        Request::Web(r) => shared.providers.web.send(r).await,
        Request::Fcm(m) => match &shared.providers.fcm {
            Some(fcm) => fcm.send(m).await,
            None => Sent::Failed("FCM is not configured".into()),
        },
        Request::Apns(r) => match &shared.providers.apns {
            Some(apns) => apns.send(r).await,
            None => Sent::Failed("APNs is not configured".into()),
        },
    }
}

/// Sends to one token, retrying with backoff; true if the provider took it. A dead token is
/// removed from the store.
async fn deliver(shared: &Shared, content: &Content, token: &PushTokenRecord) -> bool {
    let config = &shared.config;
    let counters = crate::metrics::m().of(token.provider);
    let uid = &content.notification.uid;
    let provider = token.provider.as_str();
    let request = match request(shared, content, token) {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(%uid, user = %token.user, provider, why, "a notification cannot be made for a token: given up");
            counters.failed.increment(1);
            return false;
        }
    };
    let mut attempt = 1;
    loop {
        let wait = match send(shared, &request).await {
            Sent::Delivered => {
                counters.delivered.increment(1);
                return true;
            }
            Sent::Unregistered => {
                counters.expired.increment(1);
                tracing::info!(%uid, user = %token.user, provider, "a push token is dead: removed");
                if let Err(e) = shared
                    .store
                    .remove_push_token(token.provider, &token.token, None)
                    .await
                {
                    tracing::error!(error = %e, "removing a dead push token failed");
                }
                return false;
            }
            Sent::Failed(why) => {
                counters.failed.increment(1);
                tracing::warn!(%uid, user = %token.user, provider, why, "a push provider refused a notification: given up");
                return false;
            }
            Sent::Retry(after) => after,
        };
        if attempt >= config.attempts {
            counters.failed.increment(1);
            tracing::warn!(%uid, user = %token.user, provider, attempts = attempt, "a notification failed every attempt: given up");
            return false;
        }
        let backoff = config.retry_base * 2u32.saturating_pow(attempt - 1);
        let delay: Duration = wait.map_or(backoff, |w| w.min(config.retry_after_cap).max(backoff));
        counters.retry.increment(1);
        tracing::debug!(%uid, provider, attempt, retry_in = ?delay, "a notification failed");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}
