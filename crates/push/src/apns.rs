//! Apple Push Notification service over HTTP/2, with token-based authentication: one request
//! per call.
//!
//! - **Transport**: `POST {base}/3/device/{token}` over HTTP/2 only (APNs speaks nothing else;
//!   the client is built with prior knowledge, so a plain `http://` base speaks h2c, as the
//!   tests' fake does). Production and sandbox are two base URLs; each request says which.
//! - **Provider token**: a JWT signed ES256 with the team's `.p8` key, header
//!   `{"alg":"ES256","kid":key_id}`, claims `{"iss":team_id,"iat":now}`. Apple refuses a token
//!   older than an hour (ExpiredProviderToken) and a provider that changes its token more often
//!   than every 20 minutes (TooManyProviderTokenUpdates), so one token is made under a lock and
//!   used for [`PROVIDER_TOKEN_REUSE`]. A 403 ExpiredProviderToken or InvalidProviderToken
//!   makes a fresh one, once; each token made differs from the one before (its `iat` is later).
//! - **Answers**: see [`answer`].
//!
//! What the payload says, the topic, the push type and when to retry are the caller's business.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use tidings_engine::{Clock, system_clock};

use crate::PushError;
use crate::sent::{Sent, read_body, retry_after, short, unanswered};

/// APNs' production base URL.
pub const APNS_PRODUCTION: &str = "https://api.push.apple.com";
/// APNs' development (sandbox) base URL.
pub const APNS_SANDBOX: &str = "https://api.sandbox.push.apple.com";
/// How long a provider token is used: under Apple's hour, over its 20 minutes.
pub const PROVIDER_TOKEN_REUSE: Duration = Duration::from_secs(50 * 60);
/// The longest `apns-collapse-id` Apple takes, in bytes.
pub const MAX_COLLAPSE_ID: usize = 64;

/// Settings; defaults on [`ApnsConfig::new`].
#[derive(Clone)]
pub struct ApnsConfig {
    /// The `.p8` file: PKCS#8 EC P-256, PEM.
    pub key_pem: String,
    /// The key's id (10 characters, from the developer account).
    pub key_id: String,
    /// The team id (10 characters), the token's issuer.
    pub team_id: String,
    /// The production base URL, default [`APNS_PRODUCTION`].
    pub production: String,
    /// The sandbox base URL, default [`APNS_SANDBOX`].
    pub sandbox: String,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// The time, for the token's `iat` and its reuse; injected so tests can move it.
    pub clock: Clock,
}

impl fmt::Debug for ApnsConfig {
    /// The key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("key_pem", &"<secret>")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("production", &self.production)
            .field("sandbox", &self.sandbox)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl ApnsConfig {
    /// Defaults: Apple's two base URLs, 10 s per request, the system clock.
    pub fn new(key_pem: String, key_id: String, team_id: String) -> ApnsConfig {
        ApnsConfig {
            key_pem,
            key_id,
            team_id,
            production: APNS_PRODUCTION.into(),
            sandbox: APNS_SANDBOX.into(),
            request_timeout: Duration::from_secs(10),
            clock: system_clock(),
        }
    }
}

/// One notification to one device.
#[derive(Debug, Clone, PartialEq)]
pub struct ApnsRequest {
    /// The device token, hex.
    pub token: String,
    /// Whether the token is the development environment's (an app built for debugging).
    pub sandbox: bool,
    /// `apns-topic`: the app's bundle id (with a suffix for some push types, e.g. `.voip`).
    pub topic: String,
    /// `apns-push-type`: `alert` or `background` (or another type Apple documents).
    pub push_type: String,
    /// `apns-priority`: 10 (at once) or 5 (when power allows; required for `background`).
    pub priority: u8,
    /// `apns-collapse-id`: at most [`MAX_COLLAPSE_ID`] bytes.
    pub collapse_id: Option<String>,
    /// `apns-expiration`: Unix seconds until which APNs keeps trying; 0 = none (sent once).
    pub expiration: i64,
    /// The JSON payload, with its `aps` dictionary.
    pub payload: serde_json::Value,
}

/// An APNs client for one key (one team).
pub struct Apns {
    client: reqwest::Client,
    production: String,
    sandbox: String,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    clock: Clock,
    /// A std mutex: signing is quick and never waits.
    tokens: Mutex<Tokens>,
}

/// The provider token in use.
#[derive(Default)]
struct Tokens {
    current: Option<ProviderToken>,
    /// The `iat` of the last token made: the next one's is later, so a fresh token never equals
    /// the one APNs just refused (ES256 signatures here are deterministic).
    last_iat: i64,
}

struct ProviderToken {
    jwt: String,
    iat: i64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

impl Apns {
    /// Checks the settings (URLs, the key: one token is signed) and builds the HTTP/2 client.
    pub fn new(config: ApnsConfig) -> Result<Apns, PushError> {
        let base = |url: &str| -> Result<String, PushError> {
            let url = url.trim_end_matches('/');
            url::Url::parse(url)
                .map_err(|e| PushError::Config(format!("the APNs URL {url:?}: {e}")))?;
            Ok(url.to_string())
        };
        let key = EncodingKey::from_ec_pem(config.key_pem.as_bytes())
            .map_err(|e| PushError::Config(format!("the APNs key (.p8): {e}")))?;
        if config.key_id.is_empty() || config.team_id.is_empty() {
            return Err(PushError::Config(
                "the APNs key id and team id are required".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(config.request_timeout)
            .build()
            .map_err(PushError::Client)?;
        let apns = Apns {
            client,
            production: base(&config.production)?,
            sandbox: base(&config.sandbox)?,
            key,
            key_id: config.key_id,
            team_id: config.team_id,
            clock: config.clock,
            tokens: Mutex::new(Tokens::default()),
        };
        // A P-384 key parses as EC too, but cannot sign ES256: better known at start.
        apns.sign(0)
            .map_err(|e| PushError::Config(format!("the APNs key (.p8): {e}")))?;
        Ok(apns)
    }

    /// Sends `request` and classifies the answer. A token that is not hex is refused here as
    /// APNs would refuse it (BadDeviceToken: [`Sent::Unregistered`]), so it cannot change the
    /// path; a collapse id over [`MAX_COLLAPSE_ID`] bytes fails here.
    pub async fn send(&self, request: &ApnsRequest) -> Sent {
        if request.token.is_empty() || !request.token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Sent::Unregistered;
        }
        if let Some(id) = &request.collapse_id
            && id.len() > MAX_COLLAPSE_ID
        {
            return Sent::Failed(format!(
                "the apns-collapse-id is {} bytes, over APNs' {MAX_COLLAPSE_ID}",
                id.len()
            ));
        }
        let body = request.payload.to_string();
        let base = if request.sandbox {
            &self.sandbox
        } else {
            &self.production
        };
        let url = format!("{base}/3/device/{}", request.token);
        let mut fresh = false;
        loop {
            let jwt = match self.provider_token() {
                Ok(jwt) => jwt,
                Err(e) => return Sent::Failed(format!("signing the APNs provider token: {e}")),
            };
            let mut post = self
                .client
                .post(&url)
                .header(AUTHORIZATION, format!("bearer {jwt}"))
                .header("apns-topic", &request.topic)
                .header("apns-push-type", &request.push_type)
                .header("apns-priority", request.priority.to_string())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if request.expiration != 0 {
                post = post.header("apns-expiration", request.expiration.to_string());
            }
            if let Some(id) = &request.collapse_id {
                post = post.header("apns-collapse-id", id);
            }
            let response = match post.send().await {
                Ok(r) => r,
                Err(e) => return unanswered("APNs", &e),
            };
            let status = response.status().as_u16();
            let retry = retry_after(response.headers());
            let reason = reason(&read_body(response).await);
            if status == 403
                && matches!(
                    reason.as_str(),
                    "ExpiredProviderToken" | "InvalidProviderToken"
                )
                && !fresh
            {
                tracing::debug!(%reason, "APNs refused the provider token: making a fresh one");
                self.forget(&jwt);
                fresh = true;
                continue;
            }
            return answer(status, &reason, retry);
        }
    }

    /// The provider token to use: the one kept while younger than [`PROVIDER_TOKEN_REUSE`], or
    /// a new one.
    fn provider_token(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let now = (self.clock)().div_euclid(1000);
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        // A clock that went back keeps the token (its age is negative): a new one would carry
        // an `iat` no later than the refused one's.
        if let Some(token) = &tokens.current
            && now - token.iat < PROVIDER_TOKEN_REUSE.as_secs() as i64
        {
            return Ok(token.jwt.clone());
        }
        let iat = now.max(tokens.last_iat + 1);
        let jwt = self.sign(iat)?;
        tokens.last_iat = iat;
        tokens.current = Some(ProviderToken {
            jwt: jwt.clone(),
            iat,
        });
        Ok(jwt)
    }

    /// Drops the kept token if it is still `jwt` (another send may have replaced it already).
    fn forget(&self, jwt: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.current.as_ref().is_some_and(|t| t.jwt == jwt) {
            tokens.current = None;
        }
    }

    /// A provider token issued at `iat`.
    fn sign(&self, iat: i64) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        // Apple documents `{"alg":"ES256","kid":…}` and no `typ`.
        header.typ = None;
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

/// The `reason` of an APNs error body (`{"reason":"…"}`, 410 adds `"timestamp"`), or "".
fn reason(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        reason: String,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| b.reason)
        .unwrap_or_default()
}

/// What an APNs answer comes to: 2xx delivered; 410 (Unregistered, ExpiredToken) and 400
/// BadDeviceToken the token is dead; 429 (TooManyRequests, TooManyProviderTokenUpdates) and
/// 5xx (InternalServerError, ServiceUnavailable, Shutdown) are retried, after `Retry-After` when
/// given; anything else fails, with Apple's reason.
fn answer(status: u16, reason: &str, retry: Option<Duration>) -> Sent {
    match status {
        200..=299 => Sent::Delivered,
        410 => Sent::Unregistered,
        400 if reason == "BadDeviceToken" => Sent::Unregistered,
        429 | 500..=599 => Sent::Retry(retry),
        _ => Sent::Failed(format!("APNs answered {status} {}", short(reason))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_documented() {
        let seven = Some(Duration::from_secs(7));
        assert_eq!(answer(200, "", None), Sent::Delivered);
        assert_eq!(answer(410, "ExpiredToken", None), Sent::Unregistered);
        assert_eq!(answer(400, "BadDeviceToken", None), Sent::Unregistered);
        assert_eq!(answer(429, "TooManyRequests", seven), Sent::Retry(seven));
        assert_eq!(answer(503, "ServiceUnavailable", None), Sent::Retry(None));
        assert_eq!(
            answer(400, "BadTopic", None),
            Sent::Failed("APNs answered 400 BadTopic".into())
        );
        assert_eq!(
            reason(br#"{"reason":"Unregistered","timestamp":1}"#),
            "Unregistered"
        );
        assert_eq!(reason(b"not json"), "");
    }
}
