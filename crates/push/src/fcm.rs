//! Firebase Cloud Messaging, HTTP v1 API: one `messages:send` request per call.
//!
//! - **Authorization**: an OAuth 2.0 access token from the service account's token endpoint, by
//!   the JWT bearer grant (RFC 7523; Google's "Using OAuth 2.0 for Server to Server
//!   Applications"): an assertion signed RS256 with the account's key (`iss` the account's
//!   email, `scope` FCM's, `aud` the token endpoint, one hour long). The token is kept and reused
//!   until shortly before it expires ([`refresh_margin`]); fetching one happens under a lock,
//!   so sends that find no live token wait for one fetch instead of each making their own.
//! - **A 401** from `messages:send` means the token was revoked or expired early: it is dropped,
//!   a new one fetched, and the message sent once more.
//! - **Answers**: see [`answer`]. A failing token fetch is a [`Sent::Retry`] when the endpoint is
//!   down (network, 429, 5xx) and a [`Sent::Failed`] when it refuses the key (4xx).
//!
//! What the message holds (token or topic, notification, data, platform overrides) and when to
//! retry are the caller's business.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tidings_engine::{Clock, system_clock};
use tokio::sync::Mutex;

use crate::PushError;
use crate::sent::{Sent, read_body, retry_after, short, unanswered};

/// FCM's base URL.
pub const FCM_ENDPOINT: &str = "https://fcm.googleapis.com";
/// Google's token endpoint, for a key file that names none.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The OAuth scope that allows `messages:send`.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The grant type of RFC 7523's JWT bearer grant.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an assertion is valid: Google takes at most one hour.
const ASSERTION_LIFETIME_S: i64 = 3600;
/// An access token's life when the endpoint does not say (Google always does: one hour).
const DEFAULT_TOKEN_LIFETIME_S: i64 = 3600;

/// A Google service-account key file (the JSON the Firebase console downloads): only these
/// fields are used.
#[derive(Clone)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    /// PEM, PKCS#8 RSA.
    pub private_key: String,
    pub token_uri: String,
}

impl fmt::Debug for ServiceAccount {
    /// The key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key", &"<secret>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Reads a key file. Its `type`, when present, must be `service_account`; a missing
    /// `token_uri` is Google's.
    pub fn from_json(text: &str) -> Result<ServiceAccount, PushError> {
        #[derive(Deserialize)]
        struct KeyFile {
            #[serde(rename = "type")]
            kind: Option<String>,
            project_id: String,
            client_email: String,
            private_key: String,
            token_uri: Option<String>,
        }
        // serde_json's message names the field and position, never the text read.
        let file: KeyFile = serde_json::from_str(text)
            .map_err(|e| PushError::Config(format!("not a service-account key file: {e}")))?;
        if let Some(kind) = file.kind.filter(|k| k != "service_account") {
            return Err(PushError::Config(format!(
                "the key file is of type {kind:?}, not \"service_account\""
            )));
        }
        Ok(ServiceAccount {
            project_id: file.project_id,
            client_email: file.client_email,
            private_key: file.private_key,
            token_uri: file.token_uri.unwrap_or_else(|| GOOGLE_TOKEN_URI.into()),
        })
    }
}

/// Settings; defaults on [`FcmConfig::new`].
#[derive(Clone)]
pub struct FcmConfig {
    pub account: ServiceAccount,
    /// The base URL, default [`FCM_ENDPOINT`].
    pub endpoint: String,
    /// How long one request (token fetch or send) may take.
    pub request_timeout: Duration,
    /// The time, for the assertion's `iat` and the token's expiry; injected so tests can move it.
    pub clock: Clock,
}

impl fmt::Debug for FcmConfig {
    /// The clock is left out (a closure); the account hides its key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmConfig")
            .field("account", &self.account)
            .field("endpoint", &self.endpoint)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl FcmConfig {
    /// Defaults: [`FCM_ENDPOINT`], 10 s per request, the system clock.
    pub fn new(account: ServiceAccount) -> FcmConfig {
        FcmConfig {
            account,
            endpoint: FCM_ENDPOINT.into(),
            request_timeout: Duration::from_secs(10),
            clock: system_clock(),
        }
    }
}

/// An FCM client for one project.
pub struct Fcm {
    client: reqwest::Client,
    /// `{endpoint}/v1/projects/{project_id}/messages:send`.
    send_url: String,
    client_email: String,
    token_uri: String,
    key: EncodingKey,
    clock: Clock,
    /// The access token in use. A tokio mutex: it is held across the fetch of a new one.
    token: Mutex<Option<AccessToken>>,
}

/// An access token and when to stop using it.
struct AccessToken {
    value: String,
    /// Milliseconds since the epoch: past this a new token is fetched.
    refresh_at: i64,
}

/// The claims of the OAuth assertion.
#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl Fcm {
    /// Checks the settings (URLs, the key: one assertion is signed) and builds the HTTP client.
    pub fn new(config: FcmConfig) -> Result<Fcm, PushError> {
        let account = config.account;
        let endpoint = config.endpoint.trim_end_matches('/');
        url::Url::parse(endpoint)
            .map_err(|e| PushError::Config(format!("the FCM endpoint {endpoint:?}: {e}")))?;
        url::Url::parse(&account.token_uri).map_err(|e| {
            PushError::Config(format!("the token_uri {:?}: {e}", account.token_uri))
        })?;
        // The project id is a path segment: it must not be able to change the path.
        if account.project_id.is_empty()
            || account
                .project_id
                .contains(|c: char| matches!(c, '/' | '?' | '#' | '%') || c.is_whitespace())
        {
            return Err(PushError::Config(format!(
                "not a project id: {:?}",
                account.project_id
            )));
        }
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| PushError::Config(format!("the service account's private_key: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(PushError::Client)?;
        let fcm = Fcm {
            client,
            send_url: format!(
                "{endpoint}/v1/projects/{}/messages:send",
                account.project_id
            ),
            client_email: account.client_email,
            token_uri: account.token_uri,
            key,
            clock: config.clock,
            token: Mutex::new(None),
        };
        // A key that parses may still not sign (too short, say): better known at start.
        fcm.assertion()
            .map_err(|e| PushError::Config(format!("the service account's private_key: {e}")))?;
        Ok(fcm)
    }

    /// POSTs `{"message": message}` to `{endpoint}/v1/projects/{project_id}/messages:send` with
    /// `Authorization: Bearer <access token>`, and classifies the answer.
    pub async fn send(&self, message: &serde_json::Value) -> Sent {
        let body = json!({ "message": message });
        let mut refreshed = false;
        loop {
            let token = match self.access_token().await {
                Ok(t) => t,
                Err(sent) => return sent,
            };
            let response = match self
                .client
                .post(&self.send_url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return unanswered("FCM", &e),
            };
            let status = response.status().as_u16();
            if status == 401 && !refreshed {
                tracing::debug!("FCM refused the access token: fetching a new one");
                self.forget(&token).await;
                refreshed = true;
                continue;
            }
            let retry = retry_after(response.headers());
            return answer(status, retry, &read_body(response).await);
        }
    }

    /// The access token to use: the one kept, or a new one.
    async fn access_token(&self) -> Result<String, Sent> {
        let mut kept = self.token.lock().await;
        if let Some(token) = kept.as_ref()
            && (self.clock)() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *kept = Some(fresh);
        Ok(value)
    }

    /// Drops the kept token if it is still `value` (another send may have replaced it already).
    async fn forget(&self, value: &str) {
        let mut kept = self.token.lock().await;
        if kept.as_ref().is_some_and(|t| t.value == value) {
            *kept = None;
        }
    }

    /// A signed assertion for the token endpoint.
    fn assertion(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = (self.clock)().div_euclid(1000);
        let claims = Assertion {
            iss: &self.client_email,
            scope: FCM_SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_S,
        };
        // `{"alg":"RS256","typ":"JWT"}`, as Google documents it.
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
    }

    /// Exchanges a fresh assertion for an access token.
    async fn fetch_token(&self) -> Result<AccessToken, Sent> {
        #[derive(Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: Option<i64>,
            token_type: String,
        }
        #[derive(Deserialize, Default)]
        struct Refused {
            #[serde(default)]
            error: String,
            #[serde(default)]
            error_description: String,
        }
        let asked_at = (self.clock)();
        let assertion = self
            .assertion()
            .map_err(|e| Sent::Failed(format!("signing the OAuth assertion: {e}")))?;
        let response = self
            .client
            .post(&self.token_uri)
            .form(&[("grant_type", JWT_BEARER), ("assertion", &assertion)])
            .send()
            .await
            .map_err(|e| unanswered("the OAuth token endpoint", &e))?;
        let status = response.status().as_u16();
        let retry = retry_after(response.headers());
        let body = read_body(response).await;
        match status {
            200..=299 => {
                let granted: Granted = serde_json::from_slice(&body)
                    .map_err(|e| Sent::Failed(format!("the OAuth token endpoint's answer: {e}")))?;
                if !granted.token_type.eq_ignore_ascii_case("bearer") {
                    return Err(Sent::Failed(format!(
                        "the OAuth token endpoint gave a token of type {:?}, not Bearer",
                        short(&granted.token_type)
                    )));
                }
                let lifetime_ms = granted
                    .expires_in
                    .unwrap_or(DEFAULT_TOKEN_LIFETIME_S)
                    .max(0)
                    .saturating_mul(1000);
                Ok(AccessToken {
                    value: granted.access_token,
                    refresh_at: asked_at + lifetime_ms - refresh_margin(lifetime_ms),
                })
            }
            429 | 500..=599 => {
                tracing::debug!(status, "the OAuth token endpoint is not answering");
                Err(Sent::Retry(retry))
            }
            _ => {
                let refused: Refused = serde_json::from_slice(&body).unwrap_or_default();
                Err(Sent::Failed(format!(
                    "the OAuth token endpoint answered {status}: {} {}",
                    short(&refused.error),
                    short(&refused.error_description)
                )))
            }
        }
    }
}

/// How long before its expiry a token of `lifetime_ms` is replaced: 60 s, or a tenth of its
/// life when that is shorter, so a request never leaves with a token about to die.
fn refresh_margin(lifetime_ms: i64) -> i64 {
    (lifetime_ms / 10).min(60_000)
}

/// What an answer of `messages:send` comes to: 2xx delivered; 404 or errorCode `UNREGISTERED`
/// the token is dead; 429 (QUOTA_EXCEEDED) and 5xx (INTERNAL, UNAVAILABLE) are retried, after
/// `Retry-After` when given; anything else (INVALID_ARGUMENT, SENDER_ID_MISMATCH,
/// THIRD_PARTY_AUTH_ERROR, a second 401) fails.
///
/// Error bodies: `{"error":{"code","message","status","details":[{"@type":
/// "type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode"}]}}`.
fn answer(status: u16, retry: Option<Duration>, body: &[u8]) -> Sent {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        error: Error,
    }
    #[derive(Deserialize, Default)]
    struct Error {
        #[serde(default)]
        message: String,
        #[serde(default)]
        status: String,
        #[serde(default)]
        details: Vec<Detail>,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(rename = "errorCode")]
        error_code: Option<String>,
    }
    if (200..300).contains(&status) {
        return Sent::Delivered;
    }
    let error = serde_json::from_slice::<Body>(body)
        .unwrap_or_default()
        .error;
    let code = error
        .details
        .iter()
        .find_map(|d| d.error_code.as_deref())
        .unwrap_or("");
    if status == 404 || code == "UNREGISTERED" {
        return Sent::Unregistered;
    }
    if status == 429 || (500..600).contains(&status) {
        return Sent::Retry(retry);
    }
    let code = if code.is_empty() {
        String::new()
    } else {
        format!(" ({})", short(code))
    };
    Sent::Failed(format!(
        "FCM answered {status} {}{code}: {}",
        short(&error.status),
        short(&error.message)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: u16, status: &str, error_code: &str) -> Vec<u8> {
        json!({"error": {"code": code, "message": "m", "status": status, "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
        ]}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn answers_are_classified_as_documented() {
        let seven = Some(Duration::from_secs(7));
        assert_eq!(answer(200, None, b"{\"name\":\"n\"}"), Sent::Delivered);
        assert_eq!(
            answer(404, None, &error(404, "NOT_FOUND", "UNREGISTERED")),
            Sent::Unregistered
        );
        assert_eq!(
            answer(400, None, &error(400, "INVALID_ARGUMENT", "UNREGISTERED")),
            Sent::Unregistered
        );
        assert_eq!(answer(404, None, b"<html>"), Sent::Unregistered);
        assert_eq!(
            answer(
                429,
                seven,
                &error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
            ),
            Sent::Retry(seven)
        );
        assert_eq!(answer(502, None, b""), Sent::Retry(None));
        let Sent::Failed(why) = answer(
            403,
            None,
            &error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
        ) else {
            panic!("a 403 is not retried");
        };
        assert!(
            why.contains("403") && why.contains("SENDER_ID_MISMATCH"),
            "{why}"
        );
    }

    #[test]
    fn a_token_is_replaced_a_minute_or_a_tenth_of_its_life_early() {
        assert_eq!(refresh_margin(3_600_000), 60_000);
        assert_eq!(refresh_margin(100_000), 10_000);
        assert_eq!(refresh_margin(0), 0);
    }

    #[test]
    fn a_key_file_is_read_and_its_type_checked() {
        let file = json!({"type": "service_account", "project_id": "p", "client_email": "e",
            "private_key": "k", "token_uri": "http://t"});
        let account = ServiceAccount::from_json(&file.to_string()).unwrap();
        assert_eq!(
            (account.project_id.as_str(), account.token_uri.as_str()),
            ("p", "http://t")
        );
        assert!(!format!("{account:?}").contains("\"k\""));
        let other = json!({"type": "authorized_user", "project_id": "p", "client_email": "e",
            "private_key": "k"});
        assert!(ServiceAccount::from_json(&other.to_string()).is_err());
        let missing = json!({"project_id": "p", "client_email": "e"});
        assert!(ServiceAccount::from_json(&missing.to_string()).is_err());
    }
}
