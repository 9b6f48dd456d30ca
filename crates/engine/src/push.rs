//! Notifications to devices that are not connected or whose app is in the background (Web Push,
//! FCM, APNs), behind a trait so the engine stays free of HTTP and cryptography. The store
//! writes a notification due in the commit that stores its message (`rules::push::push_due`);
//! the engine registers devices' tokens, and after each commit tells the pusher which of the
//! recipients' devices were awake (connected, app in the foreground) as it pushed the message.
//! An implementation (`tidings-push`) reads the tokens, settings and quiet hours, builds and
//! sends the notifications, and forgets what is due. It must never make delivery wait:
//! [`Pusher::notify`] only queues.

use std::sync::Arc;

use base64::Engine as _;
use tidings_proto::{Code, conversation_type};
use tidings_store::{PushProvider, PushTokenRecord, StoredMessage};
use tokio::sync::broadcast;

use crate::validate::Refusal;
use crate::{ApiError, Engine, validate};

/// The longest endpoint URL accepted, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 2048;
/// The longest FCM registration token accepted, in bytes (they are about 160 today).
pub const MAX_FCM_TOKEN_BYTES: usize = 4096;
/// The longest APNs device token accepted, in hex digits (32 bytes today; Apple says they may
/// grow, up to 100 bytes).
pub const MAX_APNS_TOKEN_HEX: usize = 200;
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

/// Which of a recipient's devices were awake (connected, app not in the background) when a
/// message was pushed to them: their tokens get no notification of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Awake {
    /// The device ids with an awake connection on this node.
    pub devices: Vec<String>,
    /// Some connection of the user is awake, an anonymous one (no device id) included: a token
    /// registered without a device id counts as awake then.
    pub any: bool,
    /// The user is connected to another node of the cluster, whose devices this node does not
    /// know: every token counts as awake (that node delivers the message).
    pub elsewhere: bool,
}

impl Awake {
    /// Whether a token registered for `device` ('' for none) belongs to an awake device.
    pub fn covers(&self, device: &str) -> bool {
        self.elsewhere
            || if device.is_empty() {
                self.any
            } else {
                self.devices.iter().any(|d| d == device)
            }
    }
}

/// One recipient a notification is due for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecipient {
    pub user: String,
    /// The message's entry in the user's inbox (the key of what is due).
    pub inbox_seq: u64,
    pub awake: Awake,
}

/// A committed message whose notifications are due (see `rules::push::push_due`), for each
/// recipient with which of their devices were awake. The implementation still drops devices
/// that are awake, users who muted the conversation or are in their quiet hours, and users
/// without a token; and forgets what was due either way.
#[derive(Debug, Clone)]
pub struct PushJob {
    pub message: Arc<StoredMessage>,
    pub recipients: Vec<PushRecipient>,
    /// Data for the app the sender gave the notifications (seed 004's `pushData`).
    pub push_data: String,
    /// Read back from the store at start: every recipient has a row due, even one whose
    /// tokens are gone since (which is then forgotten).
    pub recovered: bool,
}

/// A device's push token as a client or the app server registers it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushTokenRequest {
    /// `webpush` (also when empty), `fcm` or `apns`.
    pub provider: String,
    /// FCM: the registration token; APNs: the device token (hex); Web Push: the endpoint.
    pub token: String,
    /// Web Push: the subscription's keys.
    pub p256dh: String,
    pub auth: String,
    pub app_id: String,
    pub sandbox: bool,
    pub locale: String,
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
    /// Whether the server sends to this Web Push endpoint (one the engine found well formed): an
    /// implementation refuses endpoints on private networks unless told otherwise.
    fn endpoint_allowed(&self, _endpoint: &str) -> bool {
        true
    }
    /// Whether notifications through `provider` can be sent (its credentials are configured).
    fn serves(&self, provider: PushProvider) -> bool {
        provider == PushProvider::WebPush
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
    /// Saves `user`'s Web Push subscription (one per endpoint: registering an endpoint again
    /// replaces it, even another user's), for `device` ('' for none).
    pub async fn register_push(
        &self,
        user: &str,
        device: &str,
        sub: PushSubscription,
    ) -> Result<(), ApiError> {
        self.register_push_token(
            user,
            device,
            PushTokenRequest {
                token: sub.endpoint,
                p256dh: sub.p256dh,
                auth: sub.auth,
                ..Default::default()
            },
        )
        .await
    }

    /// Saves a push token of `user`'s `device` ('' for none): one row per provider and token,
    /// so registering a token again moves it to this user and device; and one token per
    /// device, provider and app, so a device's new token replaces its earlier one.
    pub async fn register_push_token(
        &self,
        user: &str,
        device: &str,
        request: PushTokenRequest,
    ) -> Result<(), ApiError> {
        if !validate::is_user_id(user) {
            return Err(Code::InvalidUserId.into());
        }
        let provider = push_provider(&request.provider)?;
        let Some(pusher) = &self.inner.pusher else {
            return Err(Code::PushDisabled.into());
        };
        if !pusher.serves(provider) {
            return Err(ApiError(Refusal::new(
                Code::PushDisabled,
                format!("{} is not configured on this server", provider.as_str()),
            )));
        }
        if !device.is_empty() && !validate::is_user_id(device) {
            return Err(invalid("a device id is 1-64 of A-Z a-z 0-9 _ - . @"));
        }
        let mut record = PushTokenRecord {
            user: user.to_string(),
            device: device.to_string(),
            provider,
            app_id: request.app_id,
            sandbox: request.sandbox,
            locale: request.locale,
            ..Default::default()
        };
        if !is_app_id(&record.app_id) {
            return Err(invalid("appId is at most 255 of A-Z a-z 0-9 . _ -"));
        }
        if !is_locale(&record.locale) {
            return Err(invalid(
                "locale is a BCP 47 tag: at most 35 of A-Z a-z 0-9 -",
            ));
        }
        match provider {
            PushProvider::WebPush => {
                check_subscription(
                    pusher.as_ref(),
                    &request.token,
                    &request.p256dh,
                    &request.auth,
                )?;
                record.token = request.token;
                record.p256dh = request.p256dh;
                record.auth = request.auth;
                record.sandbox = false;
            }
            PushProvider::Fcm => {
                if !valid_fcm_token(&request.token) {
                    return Err(invalid("an FCM token is 1-4096 of A-Z a-z 0-9 : _ -"));
                }
                record.token = request.token;
                record.sandbox = false;
            }
            PushProvider::Apns => {
                if !valid_apns_token(&request.token) {
                    return Err(invalid(
                        "an APNs device token is an even number (16-200) of hex digits",
                    ));
                }
                record.token = request.token.to_ascii_lowercase();
            }
        }
        let saved = self
            .inner
            .store
            .save_push_token(record)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "saving a push token failed");
                ApiError::from(Code::ServerError)
            })?;
        if !saved {
            return Err(invalid(&format!(
                "a user has at most {} push tokens: remove one first",
                tidings_store::MAX_PUSH_TOKENS_PER_USER
            )));
        }
        Ok(())
    }

    /// Removes `user`'s Web Push subscription with `endpoint` (nothing if there is none, or it
    /// is another user's).
    pub async fn unregister_push(&self, user: &str, endpoint: &str) -> Result<(), ApiError> {
        if !valid_endpoint(endpoint) {
            return Err(invalid(
                "endpoint is an absolute http(s) URL of at most 2048 bytes",
            ));
        }
        self.unregister_push_token(user, "webpush", endpoint).await
    }

    /// Removes `user`'s push token (nothing if there is none, or it is another user's).
    pub async fn unregister_push_token(
        &self,
        user: &str,
        provider: &str,
        token: &str,
    ) -> Result<(), ApiError> {
        if !validate::is_user_id(user) {
            return Err(Code::InvalidUserId.into());
        }
        let provider = push_provider(provider)?;
        let token = match provider {
            PushProvider::Apns => token.to_ascii_lowercase(),
            _ => token.to_string(),
        };
        if token.is_empty() || token.len() > MAX_ENDPOINT_BYTES.max(MAX_FCM_TOKEN_BYTES) {
            return Err(invalid("a token is 1-4096 bytes"));
        }
        self.inner
            .store
            .remove_push_token(provider, &token, Some(user))
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(error = %e, "removing a push token failed");
                ApiError::from(Code::ServerError)
            })
    }

    /// `user`'s push tokens (none while push is off).
    pub async fn push_tokens_of(&self, user: &str) -> Result<Vec<PushTokenRecord>, ApiError> {
        if !validate::is_user_id(user) {
            return Err(Code::InvalidUserId.into());
        }
        if self.inner.pusher.is_none() {
            return Err(Code::PushDisabled.into());
        }
        self.inner
            .store
            .push_tokens(&[user.to_string()])
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading push tokens failed");
                ApiError::from(Code::ServerError)
            })
    }

    /// The server's VAPID public key (unpadded base64url of the uncompressed point); `None`
    /// when push is off.
    pub fn vapid_public_key(&self) -> Option<String> {
        self.inner.pusher.as_ref().map(|p| p.public_key())
    }

    /// Which of `users` have a push token (none while push is off, or when the store cannot be
    /// read).
    pub async fn push_subscribed(&self, users: &[String]) -> Vec<String> {
        if self.inner.pusher.is_none() || users.is_empty() {
            return Vec::new();
        }
        match self.inner.store.push_tokens(users).await {
            Ok(subs) => {
                let mut found: Vec<String> = subs.into_iter().map(|s| s.user).collect();
                found.sort();
                found.dedup();
                found
            }
            Err(e) => {
                tracing::warn!(error = %e, "push tokens read failed");
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
    /// it made a notification due for (`rules::push::push_due`), each with which of their
    /// devices were awake, to the pusher (which queues; nothing here waits). The store wrote
    /// what is due in the commit; the pusher forgets it once decided, sent or not.
    pub(crate) fn push_offline(
        &self,
        message: &Arc<StoredMessage>,
        inbox: &[(String, u64)],
        sent: &crate::commit::PendingPublish,
    ) {
        let Some(pusher) = &self.inner.pusher else {
            return;
        };
        let due = |user: &str| {
            tidings_store::rules::push::due(
                message.conversation_type,
                &message.msg_type,
                sent.counted,
                &message.sender,
                user,
            )
        };
        let recipients: Vec<PushRecipient> = {
            let registry = self.registry();
            inbox
                .iter()
                .filter(|(u, _)| due(u))
                .map(|(user, inbox_seq)| {
                    let mut awake = Awake {
                        elsewhere: self.online_elsewhere(user),
                        ..Default::default()
                    };
                    for s in registry.by_user.get(user.as_str()).into_iter().flatten() {
                        if s.in_background() {
                            continue;
                        }
                        awake.any = true;
                        if !s.anonymous {
                            awake.devices.push(s.device.clone());
                        }
                    }
                    PushRecipient {
                        user: user.clone(),
                        inbox_seq: *inbox_seq,
                        awake,
                    }
                })
                .collect()
        };
        if recipients.is_empty() {
            return;
        }
        pusher.notify(PushJob {
            message: message.clone(),
            recipients,
            push_data: sent.push_data.clone(),
            recovered: false,
        });
    }
}

/// The provider a client names: `webpush` (also when empty), `fcm` or `apns`.
pub fn push_provider(name: &str) -> Result<PushProvider, ApiError> {
    if name.is_empty() {
        return Ok(PushProvider::WebPush);
    }
    PushProvider::parse(name).ok_or_else(|| invalid("provider is webpush, fcm or apns"))
}

/// Checks a Web Push subscription's fields.
fn check_subscription(
    pusher: &dyn Pusher,
    endpoint: &str,
    p256dh: &str,
    auth: &str,
) -> Result<(), ApiError> {
    if !valid_endpoint(endpoint) {
        return Err(invalid(
            "endpoint is an absolute http(s) URL of at most 2048 bytes",
        ));
    }
    if !pusher.endpoint_allowed(endpoint) {
        return Err(invalid(
            "endpoint is an https URL of a public host (push_allow_private_endpoints is off)",
        ));
    }
    let key = base64url(p256dh);
    if !key
        .as_deref()
        .is_some_and(|k| k.len() == 65 && k[0] == 4 && pusher.valid_key(k))
    {
        return Err(invalid(
            "p256dh is base64url of an uncompressed P-256 point (65 bytes)",
        ));
    }
    if base64url(auth).is_none_or(|a| a.len() != 16) {
        return Err(invalid("auth is base64url of 16 bytes"));
    }
    Ok(())
}

/// An FCM registration token: 1-4096 of `A-Z a-z 0-9 : _ -`.
fn valid_fcm_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_FCM_TOKEN_BYTES
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b))
}

/// An APNs device token: an even number, 16 to 200, of hex digits.
fn valid_apns_token(token: &str) -> bool {
    (16..=MAX_APNS_TOKEN_HEX).contains(&token.len())
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A bundle id or package name: at most 255 of `A-Z a-z 0-9 . _ -` (empty: the server's).
fn is_app_id(id: &str) -> bool {
    id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A BCP 47 language tag's characters: at most 35 of `A-Z a-z 0-9 -` (empty: none given).
fn is_locale(tag: &str) -> bool {
    tag.len() <= 35 && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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

    #[test]
    fn tokens_are_checked_by_provider() {
        assert!(valid_fcm_token("dGVzdA:APA91b-x_y"));
        assert!(!valid_fcm_token(""));
        assert!(!valid_fcm_token("has space"));
        assert!(!valid_fcm_token(&"a".repeat(MAX_FCM_TOKEN_BYTES + 1)));
        assert!(valid_apns_token(&"ab".repeat(32)));
        assert!(!valid_apns_token(&"ab".repeat(7)), "too short");
        assert!(!valid_apns_token(&format!("{}a", "ab".repeat(32))), "odd");
        assert!(!valid_apns_token(&"zz".repeat(32)), "not hex");
        assert!(is_app_id("com.example.chat") && is_app_id(""));
        assert!(!is_app_id("com example"));
        assert!(is_locale("zh-Hans-CN") && !is_locale("en_GB"));
    }

    #[test]
    fn awake_devices_cover_their_tokens() {
        let awake = Awake {
            devices: vec!["phone".into()],
            any: true,
            elsewhere: false,
        };
        assert!(awake.covers("phone"));
        assert!(!awake.covers("tablet"));
        assert!(
            awake.covers(""),
            "a token without a device: any awake connection"
        );
        let anonymous_only = Awake {
            any: true,
            ..Default::default()
        };
        assert!(!anonymous_only.covers("phone") && anonymous_only.covers(""));
        let elsewhere = Awake {
            elsewhere: true,
            ..Default::default()
        };
        assert!(elsewhere.covers("tablet"));
        assert!(!Awake::default().covers(""));
    }
}
