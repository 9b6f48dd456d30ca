//! A fake Apple Push Notification service: a production and a sandbox listener sharing devices
//! and state, HTTP/2 only (h2c with prior knowledge: a request in HTTP/1.1 fails the
//! connection preface and the connection is closed, as APNs does).
//!
//! Each request is checked, in order, as Apple's "Sending notification requests to APNs",
//! "Establishing a token-based connection to APNs" and "Handling notification responses from
//! APNs" describe; the first failure is answered with its status and `{"reason"}`:
//! - `POST` (405 MethodNotAllowed) to `/3/device/{token}` (404 BadPath, 400 MissingDeviceToken);
//! - no header among `authorization` and `apns-*` repeated (400 DuplicateHeaders);
//! - `authorization: bearer <JWT>` (403 MissingProviderToken), the JWT ES256 with header `kid`
//!   the key's id, signed by the key, `iss` the team (403 InvalidProviderToken); `iat` not more
//!   than 60 s ahead (InvalidProviderToken) nor more than an hour old, nor expired by
//!   [`FakeApns::expire_provider_tokens`] (403 ExpiredProviderToken); a token newer than the
//!   last one taken by less than 20 minutes is 429 TooManyProviderTokenUpdates (Apple's rule
//!   against making a token per request). Answering 403 for a token allows the next update;
//! - `apns-topic` present (400 MissingTopic); `apns-push-type` present and a documented type
//!   (400 InvalidPushType; Apple requires it only for watchOS, the fake always, since the
//!   client always sends it); `apns-priority` 10, 5 or 1 (400 BadPriority), 5 for `background`
//!   (10 when absent, so absent is refused too); `apns-expiration` an integer (400
//!   BadExpirationDate); `apns-collapse-id` at most 64 bytes (400 BadCollapseId); `apns-id` a
//!   UUID (400 BadMessageId);
//! - the payload: at most 4096 bytes, 5120 for `voip` (413 PayloadTooLarge); not empty (400
//!   PayloadEmpty); a JSON object with an `aps` object (400 BadPayload: Apple's table names no
//!   reason for this, the name is the fake's); `alert` needs `aps.alert`, `aps.badge` or
//!   `aps.sound`, `background` needs `aps.content-available` 1 (400 InvalidPushType);
//! - the device: unregistered (410 Unregistered with `timestamp`), unknown or of the other
//!   environment (400 BadDeviceToken), of another app than the topic, which carries a suffix for
//!   some push types, e.g. `.voip` (400 DeviceTokenNotForTopic);
//! - then the answers scripted for the token, in order; then 200 with `apns-id`, recorded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Answer, Clock, Log, Server, Timeout, Versions, answer, bind, lock, read_body, serve};

/// The fake key's id, as in the developer account.
pub const KEY_ID: &str = "FAKEKEY001";
/// The fake team.
pub const TEAM_ID: &str = "FAKETEAM01";
/// A provider token older than this is expired (Apple: one hour).
const TOKEN_LIFE_S: i64 = 3600;
/// Tokens may not be replaced more often than this (Apple: 20 minutes).
const TOKEN_UPDATE_S: i64 = 20 * 60;
/// Clock skew allowed on a token's `iat`.
const SKEW_S: i64 = 60;
/// The largest body read; past it, and past the push type's limit, 413.
const MAX_BODY: usize = 64 * 1024;

/// The push types Apple documents for `apns-push-type`.
const PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "controls",
    "complication",
    "fileprovider",
    "liveactivity",
    "location",
    "mdm",
    "pushtotalk",
    "voip",
    "widgets",
];

/// A request the fake answered 200 to.
#[derive(Debug, Clone, PartialEq)]
pub struct ApnsAccepted {
    /// The device token of the path.
    pub token: String,
    /// Whether it came to the sandbox listener.
    pub sandbox: bool,
    /// Every `apns-*` header, by name.
    pub headers: BTreeMap<String, String>,
    /// The payload.
    pub payload: Value,
    /// The provider token (JWT) it carried.
    pub jwt: String,
    /// The `apns-id` answered.
    pub apns_id: String,
}

/// The fake APNs; stops when dropped.
pub struct FakeApns {
    production: Server,
    sandbox: Server,
    state: Arc<State>,
}

struct State {
    key_pem: String,
    key: DecodingKey,
    clock: Clock,
    inner: Mutex<Inner>,
    accepted: Log<ApnsAccepted>,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<String, Device>,
    /// Tokens answered 410 from now on, with when (ms).
    unregistered: HashMap<String, i64>,
    scripted: HashMap<String, VecDeque<Scripted>>,
    /// Tokens with an `iat` up to this are expired.
    expired_through: Option<i64>,
    /// The newest `iat` taken.
    newest_iat: i64,
    /// The provider token last taken and its `iat`: the next one must be 20 minutes newer.
    last_token: Option<(String, i64)>,
    requests: usize,
}

struct Device {
    topic: String,
    sandbox: bool,
}

#[derive(Clone)]
struct Scripted {
    status: u16,
    reason: String,
    retry_after: Option<u64>,
}

/// A fresh P-256 key as a `.p8` file (PKCS#8 PEM), and the public point to verify with.
fn new_key() -> io::Result<(String, DecodingKey)> {
    // A random 32-byte string is a valid scalar but with odds of about 2^-32 against.
    let secret = loop {
        if let Ok(secret) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
            break secret;
        }
    };
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| io::Error::other(format!("encoding the key: {e}")))?;
    let point = secret.public_key().to_encoded_point(false);
    Ok((pem.to_string(), DecodingKey::from_ec_der(point.as_bytes())))
}

/// A fresh P-256 `.p8` key that no fake knows: a provider token signed with it is refused.
pub fn other_key_pem() -> io::Result<String> {
    new_key().map(|(pem, _)| pem)
}

impl FakeApns {
    /// Starts both listeners on 127.0.0.1, on the system clock.
    pub async fn start() -> io::Result<FakeApns> {
        FakeApns::start_with_clock(crate::system_clock()).await
    }

    /// Starts both listeners on 127.0.0.1, on `clock` (share it with the client to move time).
    pub async fn start_with_clock(clock: Clock) -> io::Result<FakeApns> {
        let (key_pem, key) = new_key()?;
        let state = Arc::new(State {
            key_pem,
            key,
            clock,
            inner: Mutex::new(Inner::default()),
            accepted: Log::new(),
        });
        let listener = |sandbox: bool| {
            let state = state.clone();
            move |request| handle(state.clone(), sandbox, request)
        };
        let production = serve(bind().await?, Versions::Http2, listener(false))?;
        let sandbox = serve(bind().await?, Versions::Http2, listener(true))?;
        Ok(FakeApns {
            production,
            sandbox,
            state,
        })
    }

    /// The production listener's base URL.
    pub fn production_url(&self) -> String {
        self.production.url()
    }

    /// The sandbox listener's base URL.
    pub fn sandbox_url(&self) -> String {
        self.sandbox.url()
    }

    /// The team's signing key, a `.p8` file (PKCS#8 PEM, P-256).
    pub fn key_pem(&self) -> String {
        self.state.key_pem.clone()
    }

    pub fn key_id(&self) -> &'static str {
        KEY_ID
    }

    pub fn team_id(&self) -> &'static str {
        TEAM_ID
    }

    /// Registers a device: `token` (hex) of the app `topic` (its bundle id), in the sandbox
    /// (development) environment or production.
    pub fn device(&self, token: &str, topic: &str, sandbox: bool) {
        lock(&self.state.inner).devices.insert(
            token.into(),
            Device {
                topic: topic.into(),
                sandbox,
            },
        );
    }

    /// The next `times` valid requests to `token` are answered `status` with `reason` (e.g. 503
    /// ServiceUnavailable, 429 TooManyRequests, 403 ExpiredProviderToken), and `Retry-After`
    /// when given; queued after earlier ones.
    pub fn fail(
        &self,
        token: &str,
        status: u16,
        reason: &str,
        retry_after: Option<u64>,
        times: usize,
    ) {
        let failure = Scripted {
            status,
            reason: reason.into(),
            retry_after,
        };
        lock(&self.state.inner)
            .scripted
            .entry(token.into())
            .or_default()
            .extend(std::iter::repeat_n(failure, times));
    }

    /// `token` is answered 410 Unregistered (with the time it stopped) from now on.
    pub fn unregister(&self, token: &str) {
        let now = (self.state.clock)();
        lock(&self.state.inner)
            .unregistered
            .insert(token.into(), now);
    }

    /// Every provider token taken so far is expired from now on (403 ExpiredProviderToken), as
    /// if an hour had passed for it.
    pub fn expire_provider_tokens(&self) {
        let mut inner = lock(&self.state.inner);
        inner.expired_through = Some(inner.newest_iat);
        inner.last_token = None;
    }

    /// Requests received so far on both listeners, whatever their answer.
    pub fn requests(&self) -> usize {
        lock(&self.state.inner).requests
    }

    /// The requests answered 200, in order.
    pub fn accepted(&self) -> Vec<ApnsAccepted> {
        self.state.accepted.all()
    }

    /// The requests answered 200, once there are at least `n`; an error after `timeout`.
    pub async fn wait_accepted(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ApnsAccepted>, Timeout> {
        self.state.accepted.wait(n, timeout).await
    }
}

/// An APNs error answer.
fn refuse(status: u16, reason: &str, apns_id: &str) -> Answer {
    answer(
        status,
        &[("apns-id", apns_id.into())],
        Some(&json!({ "reason": reason })),
    )
}

/// A UUID in Apple's form (upper-case hex, 8-4-4-4-12).
fn new_apns_id() -> String {
    let n = rand::random::<u128>();
    let hex = format!("{n:032X}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn handle(state: Arc<State>, sandbox: bool, request: Request<Incoming>) -> Answer {
    lock(&state.inner).requests += 1;
    let headers = request.headers().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let apns_id = match header("apns-id") {
        Some(id) => id.to_string(),
        None => new_apns_id(),
    };
    if request.method() != Method::POST {
        return refuse(405, "MethodNotAllowed", &apns_id);
    }
    let Some(token) = request
        .uri()
        .path()
        .strip_prefix("/3/device/")
        .map(str::to_string)
    else {
        return refuse(404, "BadPath", &apns_id);
    };
    if token.is_empty() {
        return refuse(400, "MissingDeviceToken", &apns_id);
    }
    if token.contains('/') {
        return refuse(404, "BadPath", &apns_id);
    }
    let repeated = headers.keys().any(|name| {
        (name == hyper::header::AUTHORIZATION || name.as_str().starts_with("apns-"))
            && headers.get_all(name).iter().count() > 1
    });
    if repeated {
        return refuse(400, "DuplicateHeaders", &apns_id);
    }

    // The provider token.
    let Some(jwt) = header("authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, jwt)| jwt.trim().to_string())
    else {
        return refuse(403, "MissingProviderToken", &apns_id);
    };
    if let Err((status, reason)) = check_provider_token(&state, &jwt) {
        return refuse(status, reason, &apns_id);
    }

    // The headers.
    let Some(topic) = header("apns-topic").filter(|t| !t.is_empty()) else {
        return refuse(400, "MissingTopic", &apns_id);
    };
    let Some(push_type) = header("apns-push-type").filter(|t| PUSH_TYPES.contains(t)) else {
        return refuse(400, "InvalidPushType", &apns_id);
    };
    let priority = match header("apns-priority") {
        None => 10,
        Some(p) => match p.parse::<u8>() {
            Ok(p @ (1 | 5 | 10)) => p,
            _ => return refuse(400, "BadPriority", &apns_id),
        },
    };
    if push_type == "background" && priority != 5 {
        return refuse(400, "BadPriority", &apns_id);
    }
    if let Some(e) = header("apns-expiration")
        && e.parse::<i64>().is_err()
    {
        return refuse(400, "BadExpirationDate", &apns_id);
    }
    if let Some(c) = headers.get("apns-collapse-id")
        && c.len() > 64
    {
        return refuse(400, "BadCollapseId", &apns_id);
    }
    if headers.contains_key("apns-id") && !is_uuid(&apns_id) {
        return refuse(400, "BadMessageId", &apns_id);
    }

    // The payload.
    let limit = if push_type == "voip" { 5120 } else { 4096 };
    let body = match read_body(request.into_body(), MAX_BODY).await {
        Some(body) if body.len() <= limit => body,
        _ => return refuse(413, "PayloadTooLarge", &apns_id),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return refuse(400, "PayloadEmpty", &apns_id);
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return refuse(400, "BadPayload", &apns_id);
    };
    let Some(aps) = payload.get("aps").and_then(Value::as_object) else {
        return refuse(400, "BadPayload", &apns_id);
    };
    let fits = match push_type {
        "alert" => ["alert", "badge", "sound"]
            .iter()
            .any(|k| aps.contains_key(*k)),
        "background" => aps.get("content-available").and_then(Value::as_i64) == Some(1),
        _ => true,
    };
    if !fits {
        return refuse(400, "InvalidPushType", &apns_id);
    }

    // The device, then what was scripted for it.
    let scripted = {
        let mut inner = lock(&state.inner);
        if let Some(when) = inner.unregistered.get(&token) {
            let body = json!({"reason": "Unregistered", "timestamp": when});
            return answer(410, &[("apns-id", apns_id)], Some(&body));
        }
        let Some(device) = inner.devices.get(&token).filter(|d| d.sandbox == sandbox) else {
            return refuse(400, "BadDeviceToken", &apns_id);
        };
        if topic != format!("{}{}", device.topic, topic_suffix(push_type)) {
            return refuse(400, "DeviceTokenNotForTopic", &apns_id);
        }
        let scripted = inner.scripted.get_mut(&token).and_then(VecDeque::pop_front);
        if scripted.as_ref().is_some_and(|s| s.status == 403) {
            // Told to make a new token, the provider may.
            inner.last_token = None;
        }
        scripted
    };
    if let Some(s) = scripted {
        let mut headers = vec![("apns-id", apns_id)];
        if let Some(r) = s.retry_after {
            headers.push(("retry-after", r.to_string()));
        }
        return answer(s.status, &headers, Some(&json!({ "reason": s.reason })));
    }

    let apns_headers = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("apns-"))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    state.accepted.push(ApnsAccepted {
        token,
        sandbox,
        headers: apns_headers,
        payload,
        jwt,
        apns_id: apns_id.clone(),
    });
    answer(200, &[("apns-id", apns_id)], None)
}

/// The suffix a push type adds to the app's bundle id in `apns-topic`.
fn topic_suffix(push_type: &str) -> &'static str {
    match push_type {
        "voip" => ".voip",
        "complication" => ".complication",
        "fileprovider" => ".pushkit.fileprovider",
        "liveactivity" => ".push-type.liveactivity",
        "location" => ".location-query",
        "pushtotalk" => ".voip-ptt",
        _ => "",
    }
}

#[derive(Deserialize)]
struct ProviderClaims {
    iss: String,
    iat: i64,
}

/// Checks a provider token; the status and reason if refused. A refusal with 403 lets the
/// provider make its next token at once.
fn check_provider_token(state: &State, jwt: &str) -> Result<(), (u16, &'static str)> {
    let refused = |status, reason| {
        if status == 403 {
            lock(&state.inner).last_token = None;
        }
        Err((status, reason))
    };
    let Ok(header) = jsonwebtoken::decode_header(jwt) else {
        return refused(403, "InvalidProviderToken");
    };
    if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(KEY_ID) {
        return refused(403, "InvalidProviderToken");
    }
    let mut validation = Validation::new(Algorithm::ES256);
    // Apple's token has no `exp`: its age is checked below, on the fake's clock.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let Ok(data) = jsonwebtoken::decode::<ProviderClaims>(jwt, &state.key, &validation) else {
        return refused(403, "InvalidProviderToken");
    };
    let ProviderClaims { iss, iat } = data.claims;
    if iss != TEAM_ID {
        return refused(403, "InvalidProviderToken");
    }
    let now = (state.clock)().div_euclid(1000);
    if iat > now + SKEW_S {
        return refused(403, "InvalidProviderToken");
    }
    let mut inner = lock(&state.inner);
    if now - iat > TOKEN_LIFE_S || inner.expired_through.is_some_and(|t| iat <= t) {
        inner.last_token = None;
        return Err((403, "ExpiredProviderToken"));
    }
    match &inner.last_token {
        Some((last, last_iat)) if last != jwt && iat >= *last_iat => {
            if iat - last_iat < TOKEN_UPDATE_S {
                return Err((429, "TooManyProviderTokenUpdates"));
            }
            inner.last_token = Some((jwt.to_string(), iat));
        }
        Some(_) => {}
        None => inner.last_token = Some((jwt.to_string(), iat)),
    }
    inner.newest_iat = inner.newest_iat.max(iat);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_ids_are_uuids() {
        let id = new_apns_id();
        assert!(is_uuid(&id), "{id}");
        assert!(!is_uuid("not-a-uuid"));
        assert!(!is_uuid("0000000G-0000-0000-0000-000000000000"));
    }

    #[test]
    fn provider_tokens_are_checked_as_apple_does() {
        let now = 1_700_000_000;
        let (pem, key) = new_key().unwrap();
        let state = State {
            key_pem: pem.clone(),
            key,
            clock: Arc::new(move || now * 1000),
            inner: Mutex::new(Inner::default()),
            accepted: Log::new(),
        };
        let sign = |pem: &str, kid: &str, iss: &str, iat: i64| {
            let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
            header.kid = Some(kid.into());
            let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
            jsonwebtoken::encode(&header, &json!({"iss": iss, "iat": iat}), &key).unwrap()
        };
        let check = |jwt: String| check_provider_token(&state, &jwt);
        let invalid = Err((403, "InvalidProviderToken"));
        assert_eq!(check(sign(&pem, KEY_ID, TEAM_ID, now - 10)), Ok(()));
        assert_eq!(check(sign(&pem, "OTHERKEY01", TEAM_ID, now)), invalid);
        assert_eq!(check(sign(&pem, KEY_ID, "OTHERTEAM1", now)), invalid);
        assert_eq!(check(sign(&pem, KEY_ID, TEAM_ID, now + 120)), invalid);
        assert_eq!(
            check(sign(&other_key_pem().unwrap(), KEY_ID, TEAM_ID, now)),
            invalid
        );
        assert_eq!(check("not.a.jwt".into()), invalid);
        assert_eq!(
            check(sign(&pem, KEY_ID, TEAM_ID, now - 3601)),
            Err((403, "ExpiredProviderToken"))
        );
        // Told 403, the provider may make a new token at once; the one after must be 20
        // minutes newer.
        assert_eq!(check(sign(&pem, KEY_ID, TEAM_ID, now - 1300)), Ok(()));
        assert_eq!(
            check(sign(&pem, KEY_ID, TEAM_ID, now - 700)),
            Err((429, "TooManyProviderTokenUpdates"))
        );
        assert_eq!(check(sign(&pem, KEY_ID, TEAM_ID, now - 100)), Ok(()));
    }

    #[test]
    fn a_fresh_key_signs_tokens_its_public_half_verifies() {
        let (pem, key) = new_key().unwrap();
        let signing = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &json!({"iss": TEAM_ID, "iat": 1}),
            &signing,
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        assert!(jsonwebtoken::decode::<ProviderClaims>(&jwt, &key, &validation).is_ok());
    }
}
