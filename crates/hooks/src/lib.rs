//! Callbacks to the app server over HTTP, implementing the engine's [`Hooks`].
//!
//! - **After-send**: every stored message is POSTed to `webhook_url` as
//!   `{"type":"message.sent","message":{…}}`. Callbacks are queued (bounded) and sent by one
//!   task; a failed one (network error, timeout, any status but 2xx) is retried with backoff
//!   (`retry_base`, doubling, `attempts` in all) while later ones go on. Message delivery never
//!   waits on them. The queue is in memory: callbacks still queued when the server stops are
//!   lost, and a full queue drops new callbacks (each drop is logged).
//! - **Before-send moderation**: a client's message is POSTed to `moderation_url` as
//!   `{"type":"message.moderate","message":{…}}` and the answer, within `moderation_timeout`,
//!   decides: `{"action":"accept"}`, `{"action":"reject","reason":"…"}` or
//!   `{"action":"rewrite","content":{…}}`. No answer in time, an error status or an unreadable
//!   answer means "unavailable", and `fail_open` decides.
//!
//! Requests are signed as an app server signs its HTTP API requests: `App-Key`, `Nonce`,
//! `Timestamp`, and `Signature` in the request form (`tidings_engine::auth::sign_request`) over
//! `POST`, the callback URL's path and query, and the body; plus `Body-Signature =
//! hex(HMAC-SHA256(appSecret, body))`, which app servers written before `Signature` covered the
//! body may check.
//!
//! Architecture invariant: only this crate talks HTTP to the app server; the engine sees the
//! `Hooks` trait.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tidings_engine::AppCredentials;
use tidings_engine::hooks::{Hooks, Moderating, Moderation, Proposed};
use tidings_engine::validate::content_json;
use tidings_store::StoredMessage;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Settings; defaults on [`HookConfig::new`].
#[derive(Debug, Clone)]
pub struct HookConfig {
    pub webhook_url: Option<String>,
    pub moderation_url: Option<String>,
    pub moderation_timeout: Duration,
    /// Store a message when moderation is unavailable (true), or refuse it (false).
    pub fail_open: bool,
    /// The first retry's delay; each next one doubles it.
    pub retry_base: Duration,
    /// Attempts per callback, the first included.
    pub attempts: u32,
    /// Callbacks waiting to be sent, at most.
    pub queue: usize,
    /// How long one callback request may take.
    pub request_timeout: Duration,
}

impl HookConfig {
    /// Defaults: moderation within 2 s, failing open; callbacks retried after 1, 2, 4, 8 and
    /// 16 s (6 attempts), 10,000 queued at most, 10 s per request.
    pub fn new(webhook_url: Option<String>, moderation_url: Option<String>) -> HookConfig {
        HookConfig {
            webhook_url,
            moderation_url,
            moderation_timeout: Duration::from_secs(2),
            fail_open: true,
            retry_base: Duration::from_secs(1),
            attempts: 6,
            queue: 10_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The HTTP callbacks.
pub struct HttpHooks {
    config: HookConfig,
    /// `config.moderation_url`, parsed.
    moderation_url: Option<reqwest::Url>,
    client: reqwest::Client,
    signer: Signer,
    queue: Option<mpsc::Sender<String>>,
}

#[derive(Clone)]
struct Signer {
    app_key: String,
    app_secret: String,
}

impl Signer {
    /// A POST of `body` to `url`, signed as an app server signs an HTTP API request: over the
    /// method, the URL's path and query (as the request line carries them) and the body.
    fn post(
        &self,
        client: &reqwest::Client,
        url: &reqwest::Url,
        body: String,
    ) -> reqwest::RequestBuilder {
        let nonce = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string();
        let signature = tidings_engine::auth::sign_request(
            &self.app_secret,
            &nonce,
            &timestamp,
            "POST",
            &path_and_query(url),
            body.as_bytes(),
        );
        // Kept for app servers that check it since before `Signature` covered the body.
        let body_signature = tidings_engine::auth::hmac_hex(&self.app_secret, body.as_bytes());
        client
            .post(url.clone())
            .header("App-Key", &self.app_key)
            .header("Nonce", nonce)
            .header("Timestamp", timestamp)
            .header("Signature", signature)
            .header("Body-Signature", body_signature)
            .header("Content-Type", "application/json")
            .body(body)
    }
}

/// The request target a request to `url` carries: its path, and `?` and the query if it has
/// one (a parsed URL keeps them percent-encoded as they are sent).
fn path_and_query(url: &reqwest::Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// Why [`HttpHooks::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{setting} {url:?} is not a URL: {source}")]
    BadUrl {
        setting: &'static str,
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Parses a configured callback URL.
fn parse_url(
    setting: &'static str,
    url: &Option<String>,
) -> Result<Option<reqwest::Url>, HookError> {
    url.as_deref()
        .map(|u| {
            reqwest::Url::parse(u).map_err(|source| HookError::BadUrl {
                setting,
                url: u.to_string(),
                source,
            })
        })
        .transpose()
}

impl HttpHooks {
    /// Starts the callback task (if there is a webhook URL) on the current runtime.
    pub fn start(
        config: HookConfig,
        credentials: &AppCredentials,
    ) -> Result<Arc<HttpHooks>, HookError> {
        let webhook_url = parse_url("webhook_url", &config.webhook_url)?;
        let moderation_url = parse_url("moderation_url", &config.moderation_url)?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(HookError::Client)?;
        let signer = Signer {
            app_key: credentials.app_key.clone(),
            app_secret: credentials.app_secret.clone(),
        };
        let queue = match webhook_url {
            Some(url) => {
                let (tx, rx) = mpsc::channel(config.queue.max(1));
                tokio::spawn(deliver(
                    client.clone(),
                    signer.clone(),
                    url,
                    config.clone(),
                    rx,
                ));
                Some(tx)
            }
            None => None,
        };
        Ok(Arc::new(HttpHooks {
            config,
            moderation_url,
            client,
            signer,
            queue,
        }))
    }
}

/// A callback's body: `{"type", "message"}`. Written from these types rather than from a JSON
/// tree so that the message's content goes out as stored: reading it into a tree would be
/// bounded by the tree's nesting limit.
#[derive(Serialize)]
struct Callback<'a> {
    r#type: &'static str,
    message: CallbackMessage<'a>,
}

/// A message as callbacks show it: a proposed one's fields, and for a stored one (`targetId` as
/// the sender sees the conversation) its uid, seq and time.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallbackMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_time: Option<i64>,
    conversation_type: u32,
    target_id: &'a str,
    sender_id: &'a str,
    msg_type: &'a str,
    content: Option<&'a RawValue>,
    push_text: &'a str,
    client_msg_id: &'a str,
    mentioned_user_ids: &'a [String],
    mention_all: bool,
    directed_user_ids: &'a [String],
}

impl<'a> CallbackMessage<'a> {
    fn proposed(m: &'a Proposed) -> CallbackMessage<'a> {
        CallbackMessage {
            uid: None,
            seq: None,
            sent_time: None,
            conversation_type: m.conversation_type,
            target_id: &m.target_id,
            sender_id: &m.sender_id,
            msg_type: &m.msg_type,
            content: content_json(&m.content),
            push_text: &m.push_text,
            client_msg_id: &m.client_msg_id,
            mentioned_user_ids: &m.mentions,
            mention_all: m.mention_all,
            directed_user_ids: &m.audience,
        }
    }

    fn stored(m: &'a StoredMessage) -> CallbackMessage<'a> {
        CallbackMessage {
            uid: Some(&m.uid),
            seq: Some(m.seq),
            sent_time: Some(m.sent_time),
            conversation_type: m.conversation_type,
            target_id: &m.target,
            sender_id: &m.sender,
            msg_type: &m.msg_type,
            content: content_json(&m.content),
            push_text: &m.push_text,
            client_msg_id: &m.client_msg_id,
            mentioned_user_ids: &m.mentions,
            mention_all: m.mention_all,
            directed_user_ids: &m.audience,
        }
    }
}

/// The text of a callback's body.
fn body(r#type: &'static str, message: CallbackMessage<'_>) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Callback { r#type, message })
}

/// The verdict an answer's body holds.
fn verdict(body: &Value) -> Moderation {
    match body.get("action").and_then(Value::as_str) {
        Some("accept") => Moderation::Accept,
        Some("reject") => Moderation::Reject {
            reason: body
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        },
        Some("rewrite") => match body.get("content") {
            Some(c @ Value::Object(_)) => Moderation::Rewrite {
                content: c.to_string(),
            },
            _ => Moderation::Unavailable,
        },
        _ => Moderation::Unavailable,
    }
}

impl Hooks for HttpHooks {
    fn moderates(&self) -> bool {
        self.moderation_url.is_some()
    }

    fn moderate<'a>(&'a self, message: &'a Proposed) -> Moderating<'a> {
        Box::pin(async move {
            let Some(url) = &self.moderation_url else {
                return Moderation::Accept;
            };
            let body = match body("message.moderate", CallbackMessage::proposed(message)) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!(error = %e, "a moderation request could not be written");
                    return Moderation::Unavailable;
                }
            };
            let request = self
                .signer
                .post(&self.client, url, body)
                .timeout(self.config.moderation_timeout);
            let answer = async {
                let response = request.send().await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                response.json::<Value>().await.ok()
            };
            match answer.await {
                Some(body) => {
                    let v = verdict(&body);
                    if v == Moderation::Unavailable {
                        metrics::m().moderation_unavailable.increment(1);
                        tracing::warn!(%body, "the moderation hook answered what it may not");
                    } else {
                        metrics::m().moderation_ok.increment(1);
                    }
                    v
                }
                None => {
                    metrics::m().moderation_unavailable.increment(1);
                    tracing::warn!("the moderation hook did not answer");
                    Moderation::Unavailable
                }
            }
        })
    }

    fn sent(&self, message: &StoredMessage) {
        let Some(queue) = &self.queue else { return };
        let body = match body("message.sent", CallbackMessage::stored(message)) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(uid = %message.uid, error = %e, "this message's after-send callback could not be written and is dropped");
                return;
            }
        };
        if queue.try_send(body).is_err() {
            metrics::m().sent_dropped.increment(1);
            tracing::error!(uid = %message.uid, "the callback queue is full: this message's after-send callback is dropped");
        }
    }

    fn fail_open(&self) -> bool {
        self.config.fail_open
    }
}

/// Sends queued callbacks, retrying failed ones with backoff while the next ones go on.
async fn deliver(
    client: reqwest::Client,
    signer: Signer,
    url: reqwest::Url,
    config: HookConfig,
    mut rx: mpsc::Receiver<String>,
) {
    // (due, attempts made, body)
    let mut retries: Vec<(Instant, u32, String)> = Vec::new();
    let mut open = true;
    loop {
        let due = retries.iter().map(|(t, _, _)| *t).min();
        let (attempt, body) = tokio::select! {
            next = rx.recv(), if open => match next {
                Some(body) => (1, body),
                None => {
                    open = false;
                    continue;
                }
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let i = retries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (t, _, _))| *t)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                let (_, made, body) = retries.swap_remove(i);
                (made + 1, body)
            }
            else => return,
        };
        let request = signer
            .post(&client, &url, body.clone())
            .timeout(config.request_timeout);
        let ok = match request.send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        };
        if ok {
            metrics::m().sent_ok.increment(1);
            continue;
        }
        if attempt >= config.attempts {
            metrics::m().sent_failed.increment(1);
            tracing::error!(
                attempts = attempt,
                "an after-send callback failed every attempt and is dropped"
            );
            continue;
        }
        let delay = config.retry_base * 2u32.saturating_pow(attempt - 1);
        metrics::m().sent_retry.increment(1);
        tracing::warn!(attempt, retry_in = ?delay, "an after-send callback failed");
        retries.push((Instant::now() + delay, attempt, body));
    }
}

/// The hooks' metrics (docs/operations.md), made once.
pub mod metrics {
    use std::sync::LazyLock;

    use ::metrics::{Counter, counter, describe_counter};

    pub const CALLS: &str = "tidings_webhook_calls_total";

    pub(crate) struct HookMetrics {
        pub sent_ok: Counter,
        pub sent_retry: Counter,
        pub sent_failed: Counter,
        pub sent_dropped: Counter,
        pub moderation_ok: Counter,
        pub moderation_unavailable: Counter,
    }

    static METRICS: LazyLock<HookMetrics> = LazyLock::new(|| {
        describe_counter!(
            CALLS,
            "Calls to the app server's hooks, by hook (sent: after-send callbacks; moderation) and outcome (ok, retry: failed and retried, failed: every attempt failed, dropped: the queue was full, unavailable: moderation gave no usable answer)."
        );
        let by = |hook: &'static str, outcome: &'static str| counter!(CALLS, "hook" => hook, "outcome" => outcome);
        HookMetrics {
            sent_ok: by("sent", "ok"),
            sent_retry: by("sent", "retry"),
            sent_failed: by("sent", "failed"),
            sent_dropped: by("sent", "dropped"),
            moderation_ok: by("moderation", "ok"),
            moderation_unavailable: by("moderation", "unavailable"),
        }
    });

    /// Makes the handles with the recorder installed now. Call it once, after installing it.
    pub fn register() {
        LazyLock::force(&METRICS);
    }

    pub(crate) fn m() -> &'static HookMetrics {
        &METRICS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_callback_carries_content_as_stored_however_deep() {
        // Deeper than serde_json's tree limit (128): read into a tree, it would become null.
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(300), "]".repeat(300));
        let message = StoredMessage {
            uid: "u1".into(),
            conversation_type: 1,
            target: "bob".into(),
            sender: "alice".into(),
            seq: 3,
            sent_time: 7,
            msg_type: "app:deep".into(),
            content: deep.clone(),
            ..Default::default()
        };
        let text = body("message.sent", CallbackMessage::stored(&message)).unwrap();
        assert!(text.contains(&format!(r#""content":{deep}"#)), "{text}");
        assert!(
            text.starts_with(
                r#"{"type":"message.sent","message":{"uid":"u1","seq":3,"sentTime":7,"#
            )
        );
        let shallow = Proposed {
            conversation_type: 1,
            target_id: "bob".into(),
            sender_id: "alice".into(),
            msg_type: "text".into(),
            content: r#"{"text":"hi"}"#.into(),
            push_text: String::new(),
            client_msg_id: "c1".into(),
            mentions: Vec::new(),
            mention_all: false,
            audience: Vec::new(),
        };
        let v: Value = serde_json::from_str(
            &body("message.moderate", CallbackMessage::proposed(&shallow)).unwrap(),
        )
        .unwrap();
        assert_eq!(v["message"]["content"], json!({ "text": "hi" }));
        assert!(
            v["message"].get("uid").is_none(),
            "a proposed message has no uid"
        );
    }

    #[test]
    fn callbacks_sign_the_target_their_request_line_carries() {
        let target = |u: &str| path_and_query(&reqwest::Url::parse(u).unwrap());
        assert_eq!(target("http://app.example:8080"), "/");
        assert_eq!(target("https://app.example/hooks/events"), "/hooks/events");
        assert_eq!(
            target("https://app.example/events?app=1&tag=a%20b"),
            "/events?app=1&tag=a%20b"
        );
        // A URL is sent as it parses: a space is percent-encoded, and that is what is signed.
        assert_eq!(target("https://app.example/a b?q=c d"), "/a%20b?q=c%20d");
    }

    #[test]
    fn a_callback_url_that_does_not_parse_stops_the_start() {
        let credentials = AppCredentials {
            app_key: "k".into(),
            app_secret: "s".into(),
            token_key: vec![0; 32],
        };
        for (webhook, moderation, name) in [
            (Some("http://"), None, "webhook_url"),
            (None, Some("https://exa mple.com/m"), "moderation_url"),
        ] {
            let config = HookConfig::new(webhook.map(Into::into), moderation.map(Into::into));
            let err = HttpHooks::start(config, &credentials).err();
            assert!(
                matches!(&err, Some(HookError::BadUrl { setting, .. }) if *setting == name),
                "{err:?}"
            );
            assert!(err.unwrap().to_string().starts_with(name));
        }
    }

    #[test]
    fn answers_become_verdicts() {
        assert_eq!(verdict(&json!({ "action": "accept" })), Moderation::Accept);
        assert_eq!(
            verdict(&json!({ "action": "reject", "reason": "spam" })),
            Moderation::Reject {
                reason: "spam".into()
            }
        );
        assert_eq!(
            verdict(&json!({ "action": "rewrite", "content": { "text": "ok" } })),
            Moderation::Rewrite {
                content: r#"{"text":"ok"}"#.into()
            }
        );
        for bad in [
            json!({}),
            json!({ "action": "maybe" }),
            json!({ "action": "rewrite", "content": "text" }),
        ] {
            assert_eq!(verdict(&bad), Moderation::Unavailable, "{bad}");
        }
    }
}
