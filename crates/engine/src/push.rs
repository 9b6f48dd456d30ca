//! Notifications to devices that are offline (Web Push), behind a trait so the engine stays free
//! of HTTP and cryptography. The engine decides *who* gets a notification and *what* it says;
//! an implementation (`tidings-push`) reads the subscriptions, settings and quiet hours, encrypts
//! and delivers. An implementation must never make delivery wait: [`Pusher::notify`] only
//! queues, and the committer calls it after a commit's messages are pushed to online devices.

use std::sync::Arc;

use base64::Engine as _;
use tidings_proto::{Code, conversation_type};
use tidings_store::{PushSubscriptionRecord, StoredMessage};
use tokio::sync::broadcast;

use crate::validate::Refusal;
use crate::{ApiError, Engine, validate};

/// The longest endpoint URL accepted, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 2048;
/// The most characters of a message's text a notification carries.
pub const MAX_TEXT_CHARS: usize = 200;

/// A browser's push subscription (`PushSubscription.toJSON()`: the endpoint and its two keys,
/// base64url, padded or not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSubscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

/// The final outcome of one notification to one user (over all of their subscriptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The message's uid.
    pub uid: String,
    pub user: String,
    /// The push service accepted it (201 or 202) for at least one subscription; false when every
    /// subscription was given up on or had expired.
    pub delivered: bool,
}

/// A committed message to notify users of: the recipients who had no session online when it
/// was pushed. The implementation still drops users who muted the conversation, who are in
/// their quiet hours, or who have no subscription.
#[derive(Debug, Clone)]
pub struct PushJob {
    pub message: Arc<StoredMessage>,
    pub users: Vec<String>,
}

/// What a notification says to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub uid: String,
    pub conversation_type: u32,
    /// The conversation from the recipient's side: for a private or system message, the sender.
    pub target_id: String,
    pub sender_id: String,
    pub text: String,
    pub sent_time: i64,
}

impl Notification {
    /// The notification of `message` for `user`: its push text, or a short text by type.
    pub fn of(message: &StoredMessage, user: &str) -> Notification {
        let target_is_sender = matches!(
            message.conversation_type,
            conversation_type::PRIVATE | conversation_type::SYSTEM
        ) && message.target == user;
        let text = if message.push_text.trim().is_empty() {
            default_text(&message.msg_type, &message.content)
        } else {
            message.push_text.clone()
        };
        Notification {
            uid: message.uid.clone(),
            conversation_type: message.conversation_type,
            target_id: if target_is_sender {
                message.sender.clone()
            } else {
                message.target.clone()
            },
            sender_id: message.sender.clone(),
            text: truncate(&text, MAX_TEXT_CHARS),
            sent_time: message.sent_time,
        }
    }
}

/// The text of a message without push text: a text message's own text, a word for the others.
fn default_text(msg_type: &str, content: &str) -> String {
    let field = |name: &str| {
        serde_json::from_str::<serde_json::Value>(content)
            .ok()
            .and_then(|v| v.get(name).and_then(|t| t.as_str()).map(str::to_string))
    };
    match msg_type {
        "text" => field("text").unwrap_or_default(),
        "image" => "[Image]".into(),
        "file" => "[File]".into(),
        "voice" => "[Voice]".into(),
        "location" => "[Location]".into(),
        "rich" => field("title").unwrap_or_else(|| "[Link]".into()),
        _ => "[Message]".into(),
    }
}

fn truncate(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Whether `now_ms` falls in quiet hours `(start_minute, minutes)` (after midnight UTC; they
/// may run past midnight).
pub fn in_quiet_hours((start, minutes): (u32, u32), now_ms: i64) -> bool {
    if minutes == 0 {
        return false;
    }
    let minute_of_day = (now_ms.div_euclid(60_000)).rem_euclid(1440) as u32;
    (minute_of_day + 1440 - start % 1440) % 1440 < minutes
}

/// Web Push delivery, as the engine sees it.
pub trait Pusher: Send + Sync + 'static {
    /// The VAPID public key: unpadded base64url of the uncompressed P-256 point (what a browser
    /// passes as `applicationServerKey`).
    fn public_key(&self) -> String;
    /// Whether `p256dh` (65 bytes, an uncompressed point) is a point of P-256. The engine checks
    /// the form; an implementation with the curve at hand checks the rest.
    fn valid_key(&self, _p256dh: &[u8]) -> bool {
        true
    }
    /// Queues a job. Must return at once: when the queue is full, drop it (and count it).
    fn notify(&self, job: PushJob);
    /// The final outcome of every notification from now on.
    fn outcomes(&self) -> broadcast::Receiver<PushOutcome>;
}

/// Decodes base64url, padded or not.
fn base64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// Whether `endpoint` is an absolute http(s) URL with a host, of at most 2,048 bytes.
fn valid_endpoint(endpoint: &str) -> bool {
    endpoint.len() <= MAX_ENDPOINT_BYTES
        && url::Url::parse(endpoint).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        })
}

fn invalid(why: &str) -> ApiError {
    ApiError(Refusal::new(Code::InvalidPushSubscription, why))
}

impl Engine {
    /// Saves `user`'s push subscription (one per endpoint: registering an endpoint again
    /// replaces it, even another user's).
    pub async fn register_push(&self, user: &str, sub: PushSubscription) -> Result<(), ApiError> {
        if !validate::is_user_id(user) {
            return Err(Code::InvalidUserId.into());
        }
        let Some(pusher) = &self.inner.pusher else {
            return Err(Code::PushDisabled.into());
        };
        if !valid_endpoint(&sub.endpoint) {
            return Err(invalid(
                "endpoint is an absolute http(s) URL of at most 2048 bytes",
            ));
        }
        let key = base64url(&sub.p256dh);
        if !key
            .as_deref()
            .is_some_and(|k| k.len() == 65 && k[0] == 4 && pusher.valid_key(k))
        {
            return Err(invalid(
                "p256dh is base64url of an uncompressed P-256 point (65 bytes)",
            ));
        }
        if base64url(&sub.auth).is_none_or(|a| a.len() != 16) {
            return Err(invalid("auth is base64url of 16 bytes"));
        }
        self.inner
            .store
            .save_push_subscription(PushSubscriptionRecord {
                user: user.to_string(),
                endpoint: sub.endpoint,
                p256dh: sub.p256dh,
                auth: sub.auth,
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "saving a push subscription failed");
                ApiError::from(Code::ServerError)
            })
    }

    /// Removes `user`'s subscription with `endpoint` (nothing if there is none, or it is
    /// another user's).
    pub async fn unregister_push(&self, user: &str, endpoint: &str) -> Result<(), ApiError> {
        if !validate::is_user_id(user) {
            return Err(Code::InvalidUserId.into());
        }
        if !valid_endpoint(endpoint) {
            return Err(invalid(
                "endpoint is an absolute http(s) URL of at most 2048 bytes",
            ));
        }
        self.inner
            .store
            .remove_push_subscription(endpoint, Some(user))
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(error = %e, "removing a push subscription failed");
                ApiError::from(Code::ServerError)
            })
    }

    /// The server's VAPID public key (unpadded base64url of the uncompressed point); `None`
    /// when push is off.
    pub fn vapid_public_key(&self) -> Option<String> {
        self.inner.pusher.as_ref().map(|p| p.public_key())
    }

    /// Which of `users` have a push subscription (none while push is off, or when the store
    /// cannot be read).
    pub async fn push_subscribed(&self, users: &[String]) -> Vec<String> {
        if self.inner.pusher.is_none() || users.is_empty() {
            return Vec::new();
        }
        match self.inner.store.push_subscriptions(users).await {
            Ok(subs) => {
                let mut found: Vec<String> = subs.into_iter().map(|s| s.user).collect();
                found.sort();
                found.dedup();
                found
            }
            Err(e) => {
                tracing::warn!(error = %e, "push subscriptions read failed");
                Vec::new()
            }
        }
    }

    /// The final outcome of every notification from now on (none while push is off).
    pub fn push_outcomes(&self) -> broadcast::Receiver<PushOutcome> {
        match &self.inner.pusher {
            Some(p) => p.outcomes(),
            None => self.inner.no_outcomes.subscribe(),
        }
    }

    /// After `message` was committed and pushed to the devices online: hands the recipients
    /// with no session online, on this node or another, to the pusher (which queues; nothing
    /// here waits). A recipient connected to another node gets the message from there.
    pub(crate) fn push_offline(&self, message: &Arc<StoredMessage>, inbox: &[(String, u64)]) {
        let Some(pusher) = &self.inner.pusher else {
            return;
        };
        if !matches!(
            message.conversation_type,
            conversation_type::PRIVATE | conversation_type::GROUP | conversation_type::SYSTEM
        ) || message.msg_type.starts_with("tidings:")
        {
            return;
        }
        let users: Vec<String> = {
            let registry = self.registry();
            inbox
                .iter()
                .map(|(u, _)| u)
                .filter(|u| {
                    **u != message.sender
                        && !registry.by_user.contains_key(u.as_str())
                        && !self.online_elsewhere(u)
                })
                .cloned()
                .collect()
        };
        if users.is_empty() {
            return;
        }
        pusher.notify(PushJob {
            message: message.clone(),
            users,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_wrap_past_midnight() {
        let at = |h: i64, m: i64| (h * 60 + m) * 60_000 + 5 * 86_400_000;
        assert!(!in_quiet_hours((0, 0), at(0, 0)));
        assert!(in_quiet_hours((0, 1440), at(13, 7)));
        assert!(in_quiet_hours((22 * 60, 8 * 60), at(23, 0)));
        assert!(in_quiet_hours((22 * 60, 8 * 60), at(5, 59)));
        assert!(!in_quiet_hours((22 * 60, 8 * 60), at(6, 0)));
        assert!(!in_quiet_hours((22 * 60, 8 * 60), at(21, 59)));
    }

    #[test]
    fn notifications_read_from_the_recipients_side() {
        let m = StoredMessage {
            uid: "u1".into(),
            conversation_type: conversation_type::PRIVATE,
            sender: "alice".into(),
            target: "bob".into(),
            msg_type: "text".into(),
            content: format!(r#"{{"text":"{}"}}"#, "é".repeat(300)),
            sent_time: 7,
            ..Default::default()
        };
        let n = Notification::of(&m, "bob");
        assert_eq!(n.target_id, "alice");
        assert_eq!(n.text.chars().count(), MAX_TEXT_CHARS);
        let image = StoredMessage {
            msg_type: "image".into(),
            push_text: "a photo".into(),
            ..m.clone()
        };
        assert_eq!(Notification::of(&image, "bob").text, "a photo");
        let image = StoredMessage {
            push_text: String::new(),
            ..image
        };
        assert_eq!(Notification::of(&image, "bob").text, "[Image]");
    }

    #[test]
    fn endpoints_are_absolute_http_urls() {
        assert!(valid_endpoint("https://push.example/abc"));
        assert!(valid_endpoint("http://127.0.0.1:8080/p"));
        assert!(!valid_endpoint("/relative"));
        assert!(!valid_endpoint("ftp://push.example/abc"));
        assert!(!valid_endpoint(&format!(
            "https://e.example/{}",
            "a".repeat(2048)
        )));
        assert_eq!(base64url("AAE="), Some(vec![0, 1]));
        assert_eq!(base64url("AAE"), Some(vec![0, 1]));
        assert_eq!(base64url("AA+E"), None);
    }
}
