//! A fake Firebase Cloud Messaging (HTTP v1) with its own OAuth token endpoint.
//!
//! `POST /token` is Google's token endpoint for the JWT bearer grant (RFC 7523, "Using OAuth 2.0
//! for Server to Server Applications"). It checks:
//! - `grant_type` is `urn:ietf:params:oauth:grant-type:jwt-bearer` (else 400
//!   `unsupported_grant_type`) and an `assertion` is there (else `invalid_request`);
//! - the assertion is RS256 (no other algorithm), signed by the service account's key;
//! - `iss` is the account's email, `aud` the token endpoint, `scope` includes FCM's (or
//!   cloud-platform), `exp - iat` at most 3600 s, `iat` not in the future (60 s of skew), `exp`
//!   not past (400 `invalid_grant` / `invalid_scope`);
//!
//! and answers `{"access_token","expires_in","token_type":"Bearer"}` with a fresh random token.
//!
//! `POST /v1/projects/{project}/messages:send` checks, in order:
//! - `Authorization: Bearer` a token it issued that has not expired or been revoked (401
//!   UNAUTHENTICATED);
//! - the project is the account's (403 PERMISSION_DENIED);
//! - the body is JSON `{"message":{…}}` (plus `validate_only`), the message has exactly one of
//!   `token`, `topic`, `condition`, only the fields of the v1 `Message` (snake_case or
//!   lowerCamelCase, as Google's JSON parser takes), string values in every `data` and
//!   `headers` map, a `notification` of title/body/image, known `android`, `apns` and `webpush`
//!   fields, `android.priority` NORMAL or HIGH and `android.ttl` a duration like `"3.5s"`, a
//!   topic of `[a-zA-Z0-9-_.~%]` (400 INVALID_ARGUMENT);
//! - then the answers scripted for the token, in order; then 200 `{"name":…}`, recorded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{Answer, Clock, Log, Server, Timeout, Versions, answer, bind, lock, read_body, serve};

/// The service account's private key: a test key, committed, with no use anywhere else (see
/// `keys/README.md`).
const ACCOUNT_KEY: &str = include_str!("../keys/fcm-test-account.key.pem");
/// Its public half, which the token endpoint verifies assertions with.
const ACCOUNT_PUBLIC_KEY: &str = include_str!("../keys/fcm-test-account.pub.pem");
/// Another RSA test key, which this fake does not know: an assertion signed with it is refused.
pub const OTHER_RSA_KEY: &str = include_str!("../keys/other-test.key.pem");

/// The project of the fake's service account.
pub const PROJECT_ID: &str = "tidings-fake";
/// The fake service account's email.
pub const CLIENT_EMAIL: &str = "push@tidings-fake.iam.gserviceaccount.com";
/// The scope `messages:send` needs.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The broader scope FCM also takes.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Clock skew allowed on an assertion's `iat`.
const SKEW_S: i64 = 60;
/// The largest request body read.
const MAX_BODY: usize = 1024 * 1024;

/// A message the fake answered 200 to.
#[derive(Debug, Clone, PartialEq)]
pub struct FcmAccepted {
    /// The message's `token` (none for a topic or condition message).
    pub token: Option<String>,
    /// The whole `message` object, as sent.
    pub message: Value,
    /// The name answered: `projects/{project}/messages/{id}`.
    pub name: String,
    /// The access token the request carried.
    pub access_token: String,
}

/// The fake FCM; stops when dropped.
pub struct FakeFcm {
    server: Server,
    state: Arc<State>,
}

struct State {
    token_uri: String,
    key: DecodingKey,
    clock: Clock,
    inner: Mutex<Inner>,
    accepted: Log<FcmAccepted>,
}

struct Inner {
    /// `expires_in` of the tokens issued next, seconds.
    token_lifetime: i64,
    /// Live access tokens and when each expires (ms).
    tokens: HashMap<String, i64>,
    grants: usize,
    /// Requests to the token endpoint, whatever their answer.
    grant_requests: usize,
    send_requests: usize,
    /// Answers of the token endpoint to its next requests, before any check.
    grant_failures: VecDeque<Scripted>,
    /// Answers to the next messages to a token, once the message is valid.
    scripted: HashMap<String, VecDeque<Scripted>>,
    /// Tokens answered 404 UNREGISTERED from now on.
    unregistered: HashSet<String>,
}

impl Inner {
    /// A fake that issued nothing yet, with tokens that live an hour.
    fn new() -> Inner {
        Inner {
            token_lifetime: 3600,
            tokens: HashMap::new(),
            grants: 0,
            grant_requests: 0,
            send_requests: 0,
            grant_failures: VecDeque::new(),
            scripted: HashMap::new(),
            unregistered: HashSet::new(),
        }
    }
}

#[derive(Clone)]
struct Scripted {
    status: u16,
    error_code: String,
    retry_after: Option<u64>,
}

impl FakeFcm {
    /// Starts on 127.0.0.1, on the system clock.
    pub async fn start() -> io::Result<FakeFcm> {
        FakeFcm::start_with_clock(crate::system_clock()).await
    }

    /// Starts on 127.0.0.1, on `clock` (share it with the client to move time in a test).
    pub async fn start_with_clock(clock: Clock) -> io::Result<FakeFcm> {
        let key = DecodingKey::from_rsa_pem(ACCOUNT_PUBLIC_KEY.as_bytes())
            .map_err(|e| io::Error::other(format!("the fake's public key: {e}")))?;
        let listener = bind().await?;
        let token_uri = format!("http://{}/token", listener.local_addr()?);
        let state = Arc::new(State {
            token_uri,
            key,
            clock,
            inner: Mutex::new(Inner::new()),
            accepted: Log::new(),
        });
        let server = serve(listener, Versions::Both, {
            let state = state.clone();
            move |request| handle(state.clone(), request)
        })?;
        Ok(FakeFcm { server, state })
    }

    /// The base URL, for the client's endpoint.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The token endpoint's URL (the key file's `token_uri`).
    pub fn token_uri(&self) -> String {
        self.state.token_uri.clone()
    }

    /// The project of the service account.
    pub fn project_id(&self) -> &'static str {
        PROJECT_ID
    }

    /// A service-account key file, as the Firebase console downloads it, whose `token_uri` is
    /// this fake's and whose key this fake knows.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": ACCOUNT_KEY,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.state.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/push%40tidings-fake.iam.gserviceaccount.com",
            "universe_domain": "googleapis.com"
        })
        .to_string()
    }

    /// The `expires_in` of the access tokens issued from now on (default 3600 s).
    pub fn set_token_lifetime(&self, seconds: i64) {
        lock(&self.state.inner).token_lifetime = seconds;
    }

    /// Makes every access token issued so far invalid: the next send with one gets 401.
    pub fn revoke_tokens(&self) {
        lock(&self.state.inner).tokens.clear();
    }

    /// The token endpoint answers the next `times` requests with `status` (e.g. 503), and
    /// `Retry-After` when given.
    pub fn fail_token_grants(&self, status: u16, retry_after: Option<u64>, times: usize) {
        let failure = Scripted {
            status,
            error_code: String::new(),
            retry_after,
        };
        lock(&self.state.inner)
            .grant_failures
            .extend(std::iter::repeat_n(failure, times));
    }

    /// The next `times` valid messages to `token` are answered `status` with an FcmError of
    /// `error_code` (e.g. 503 UNAVAILABLE, 429 QUOTA_EXCEEDED, 400 INVALID_ARGUMENT), and
    /// `Retry-After` when given; queued after earlier ones.
    pub fn fail(
        &self,
        token: &str,
        status: u16,
        error_code: &str,
        retry_after: Option<u64>,
        times: usize,
    ) {
        let failure = Scripted {
            status,
            error_code: error_code.into(),
            retry_after,
        };
        lock(&self.state.inner)
            .scripted
            .entry(token.into())
            .or_default()
            .extend(std::iter::repeat_n(failure, times));
    }

    /// Messages to `token` are answered 404 UNREGISTERED from now on (the app was uninstalled).
    pub fn unregister(&self, token: &str) {
        lock(&self.state.inner).unregistered.insert(token.into());
    }

    /// Access tokens granted so far.
    pub fn token_grants(&self) -> usize {
        lock(&self.state.inner).grants
    }

    /// Requests to the token endpoint so far, whatever their answer.
    pub fn grant_requests(&self) -> usize {
        lock(&self.state.inner).grant_requests
    }

    /// `messages:send` requests received so far, whatever their answer.
    pub fn send_requests(&self) -> usize {
        lock(&self.state.inner).send_requests
    }

    /// The messages answered 200, in order.
    pub fn accepted(&self) -> Vec<FcmAccepted> {
        self.state.accepted.all()
    }

    /// The messages answered 200, once there are at least `n`; an error after `timeout`.
    pub async fn wait_accepted(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<FcmAccepted>, Timeout> {
        self.state.accepted.wait(n, timeout).await
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    if request.method() != Method::POST {
        return google_error(405, "Method not allowed.", None, &[]);
    }
    if path == "/token" {
        return grant(&state, request).await;
    }
    let Some(project) = path
        .strip_prefix("/v1/projects/")
        .and_then(|rest| rest.strip_suffix("/messages:send"))
        .map(str::to_string)
    else {
        return google_error(404, "Not found.", None, &[]);
    };
    send(&state, &project, request).await
}

/// The token endpoint.
async fn grant(state: &State, request: Request<Incoming>) -> Answer {
    let failure = {
        let mut inner = lock(&state.inner);
        inner.grant_requests += 1;
        inner.grant_failures.pop_front()
    };
    if let Some(f) = failure {
        return oauth_error(
            f.status,
            "internal_failure",
            "scripted failure",
            f.retry_after,
        );
    }
    let form = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let Some(body) = read_body(request.into_body(), MAX_BODY).await else {
        return oauth_error(400, "invalid_request", "unreadable body", None);
    };
    if !form {
        return oauth_error(400, "invalid_request", "the body must be a form", None);
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let grant_type = params.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return oauth_error(
            400,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {grant_type}"),
            None,
        );
    }
    let Some(assertion) = params.get("assertion") else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: assertion",
            None,
        );
    };
    if let Err((error, description)) = check_assertion(state, assertion) {
        return oauth_error(400, error, &description, None);
    }
    let token = format!("ya29.fake-{:032x}", rand::random::<u128>());
    let now = (state.clock)();
    let lifetime = {
        let mut inner = lock(&state.inner);
        let lifetime = inner.token_lifetime;
        inner.tokens.insert(token.clone(), now + lifetime * 1000);
        inner.grants += 1;
        lifetime
    };
    answer(
        200,
        &[("cache-control", "no-cache, no-store, max-age=0".into())],
        Some(&json!({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})),
    )
}

/// The assertion's claims; `iat` and `exp` are required.
#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    #[serde(default)]
    scope: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Checks a JWT bearer assertion as Google does; the error and its description if refused.
fn check_assertion(state: &State, assertion: &str) -> Result<(), (&'static str, String)> {
    let mut validation = Validation::new(Algorithm::RS256);
    // Times and audience are checked below, on the fake's clock.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &state.key, &validation)
        .map_err(|e| {
            let description = match e.kind() {
                ErrorKind::InvalidSignature => "Invalid JWT Signature.".to_string(),
                _ => format!("Invalid JWT: {e}"),
            };
            ("invalid_grant", description)
        })?
        .claims;
    if claims.iss != CLIENT_EMAIL {
        return Err(("invalid_grant", "Invalid grant: account not found".into()));
    }
    if claims.aud != state.token_uri {
        return Err((
            "invalid_grant",
            "Invalid JWT: Failed audience check.".into(),
        ));
    }
    let now = (state.clock)().div_euclid(1000);
    let life = claims.exp - claims.iat;
    if !(1..=3600).contains(&life) || claims.iat > now + SKEW_S || claims.exp <= now {
        return Err((
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim."
                .into(),
        ));
    }
    if !claims
        .scope
        .split(' ')
        .any(|s| s == FCM_SCOPE || s == CLOUD_PLATFORM_SCOPE)
    {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.".into(),
        ));
    }
    Ok(())
}

/// `messages:send`.
async fn send(state: &State, project: &str, request: Request<Incoming>) -> Answer {
    let now = (state.clock)();
    let bearer = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let live = {
        let mut inner = lock(&state.inner);
        inner.send_requests += 1;
        bearer
            .as_ref()
            .and_then(|t| inner.tokens.get(t))
            .is_some_and(|expires| now < *expires)
    };
    let Some(access_token) = bearer.filter(|_| live) else {
        return google_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
            None,
            &[(
                "www-authenticate",
                "Bearer realm=\"https://accounts.google.com/\"".into(),
            )],
        );
    };
    if project != PROJECT_ID {
        return google_error(
            403,
            &format!(
                "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            ),
            None,
            &[],
        );
    }
    let json = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Some(body) = read_body(request.into_body(), MAX_BODY).await else {
        return google_error(413, "Request payload too large.", None, &[]);
    };
    if !json {
        return invalid(
            "Invalid JSON payload received. The content type must be application/json.",
        );
    }
    let (message, validate_only) = match check_request(&body) {
        Ok(m) => m,
        Err(why) => return invalid(&why),
    };
    if validate_only {
        // As documented: validated, not delivered, a fixed name.
        return answer(
            200,
            &[],
            Some(&json!({"name": format!("projects/{PROJECT_ID}/messages/fake_message_id")})),
        );
    }
    let token = message
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(token) = &token {
        let scripted = {
            let mut inner = lock(&state.inner);
            if inner.unregistered.contains(token) {
                Some(Scripted {
                    status: 404,
                    error_code: "UNREGISTERED".into(),
                    retry_after: None,
                })
            } else {
                inner.scripted.get_mut(token).and_then(VecDeque::pop_front)
            }
        };
        if let Some(s) = scripted {
            let retry: Vec<(&str, String)> = s
                .retry_after
                .map(|r| vec![("retry-after", r.to_string())])
                .unwrap_or_default();
            let text = match s.status {
                404 => "Requested entity was not found.",
                429 => "Quota exceeded for the device or the project.",
                503 => "The service is currently unavailable.",
                _ => "Scripted failure.",
            };
            return google_error(s.status, text, Some(&s.error_code), &retry);
        }
    }
    let name = format!(
        "projects/{PROJECT_ID}/messages/0:{}%{:016x}",
        now,
        rand::random::<u64>()
    );
    state.accepted.push(FcmAccepted {
        token,
        message: message.clone(),
        name: name.clone(),
        access_token,
    });
    answer(200, &[], Some(&json!({ "name": name })))
}

/// The message of a valid `messages:send` body and its `validate_only`, or why it is invalid.
fn check_request(body: &[u8]) -> Result<(Value, bool), String> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let request = request
        .as_object()
        .ok_or("Invalid JSON payload received. Expected an object.")?;
    known(request, "", &["message", "validate_only", "validateOnly"])?;
    let validate_only = match request
        .get("validate_only")
        .or_else(|| request.get("validateOnly"))
    {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("Invalid value at 'validate_only' (TYPE_BOOL)".into()),
    };
    let message = request
        .get("message")
        .and_then(Value::as_object)
        .ok_or("Request contains an invalid argument: 'message' is required.")?;
    check_message(message)?;
    Ok((Value::Object(message.clone()), validate_only))
}

/// Checks a v1 `Message`.
fn check_message(m: &Map<String, Value>) -> Result<(), String> {
    known(
        m,
        "message",
        &[
            "name",
            "data",
            "notification",
            "android",
            "webpush",
            "apns",
            "fcm_options",
            "fcmOptions",
            "token",
            "topic",
            "condition",
        ],
    )?;
    let targets: Vec<&str> = ["token", "topic", "condition"]
        .into_iter()
        .filter(|t| m.contains_key(*t))
        .collect();
    if targets.len() != 1 {
        return Err(format!(
            "Request contains an invalid argument: exactly one of token, topic or condition must be set, not {targets:?}."
        ));
    }
    let target = targets[0];
    let Some(value) = m[target].as_str().filter(|v| !v.is_empty()) else {
        return Err(format!("Invalid value at 'message.{target}' (TYPE_STRING)"));
    };
    if target == "topic"
        && !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~%".contains(c))
    {
        return Err(format!("Invalid topic name: {value:?}."));
    }
    if let Some(name) = m.get("name")
        && !name.is_string()
    {
        return Err("Invalid value at 'message.name' (TYPE_STRING)".into());
    }
    strings(m.get("data"), "message.data")?;
    if let Some(n) = m.get("notification") {
        let n = object(n, "message.notification")?;
        known(n, "message.notification", &["title", "body", "image"])?;
        for (k, v) in n {
            if !v.is_string() {
                return Err(format!(
                    "Invalid value at 'message.notification.{k}' (TYPE_STRING)"
                ));
            }
        }
    }
    if let Some(a) = m.get("android") {
        check_android(object(a, "message.android")?)?;
    }
    if let Some(a) = m.get("apns") {
        let a = object(a, "message.apns")?;
        known(
            a,
            "message.apns",
            &[
                "headers",
                "payload",
                "fcm_options",
                "fcmOptions",
                "live_activity_token",
                "liveActivityToken",
            ],
        )?;
        strings(a.get("headers"), "message.apns.headers")?;
        if let Some(p) = a.get("payload") {
            object(p, "message.apns.payload")?;
        }
    }
    if let Some(w) = m.get("webpush") {
        let w = object(w, "message.webpush")?;
        known(
            w,
            "message.webpush",
            &[
                "headers",
                "data",
                "notification",
                "fcm_options",
                "fcmOptions",
            ],
        )?;
        strings(w.get("headers"), "message.webpush.headers")?;
        strings(w.get("data"), "message.webpush.data")?;
    }
    for key in ["fcm_options", "fcmOptions"] {
        if let Some(o) = m.get(key) {
            known(
                object(o, "message.fcm_options")?,
                "message.fcm_options",
                &["analytics_label", "analyticsLabel"],
            )?;
        }
    }
    Ok(())
}

/// Checks an `AndroidConfig`.
fn check_android(a: &Map<String, Value>) -> Result<(), String> {
    known(
        a,
        "message.android",
        &[
            "collapse_key",
            "collapseKey",
            "priority",
            "ttl",
            "restricted_package_name",
            "restrictedPackageName",
            "data",
            "notification",
            "fcm_options",
            "fcmOptions",
            "direct_boot_ok",
            "directBootOk",
            "bandwidth_constrained_ok",
            "bandwidthConstrainedOk",
            "restricted_satellite_ok",
            "restrictedSatelliteOk",
        ],
    )?;
    if let Some(p) = a.get("priority")
        && !matches!(p.as_str(), Some("NORMAL" | "HIGH"))
    {
        return Err(format!(
            "Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {p}"
        ));
    }
    if let Some(ttl) = a.get("ttl")
        && !ttl.as_str().is_some_and(is_duration)
    {
        return Err(format!(
            "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {ttl}"
        ));
    }
    strings(a.get("data"), "message.android.data")?;
    if let Some(n) = a.get("notification") {
        object(n, "message.android.notification")?;
    }
    Ok(())
}

/// A protobuf `Duration` in JSON: seconds with up to nine decimals and an `s`.
fn is_duration(text: &str) -> bool {
    let Some(number) = text.strip_suffix('s') else {
        return false;
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty())
}

/// Refuses fields not in `names`, as Google's JSON parser does.
fn known(object: &Map<String, Value>, at: &str, names: &[&str]) -> Result<(), String> {
    match object.keys().find(|k| !names.contains(&k.as_str())) {
        Some(k) if at.is_empty() => Err(format!(
            "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
        )),
        Some(k) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
        )),
        None => Ok(()),
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("Invalid value at '{at}': expected an object."))
}

/// A map whose values must all be strings (`data`, `headers`), if present.
fn strings(value: Option<&Value>, at: &str) -> Result<(), String> {
    let Some(value) = value else {
        return Ok(());
    };
    for (i, (k, v)) in object(value, at)?.iter().enumerate() {
        if !v.is_string() {
            return Err(format!(
                "Invalid value at '{at}[{i}].value' (TYPE_STRING), {v} (key {k:?})"
            ));
        }
    }
    Ok(())
}

/// A 400 INVALID_ARGUMENT.
fn invalid(message: &str) -> Answer {
    google_error(400, message, Some("INVALID_ARGUMENT"), &[])
}

/// A Google API error body, with an FcmError detail when `error_code` is given.
fn google_error(
    code: u16,
    message: &str,
    error_code: Option<&str>,
    headers: &[(&str, String)],
) -> Answer {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        413 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    let mut error = json!({"code": code, "message": message, "status": status});
    if let Some(error_code) = error_code.filter(|c| !c.is_empty()) {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": error_code,
        }]);
    }
    answer(code, headers, Some(&json!({ "error": error })))
}

/// An OAuth 2.0 error answer (RFC 6749 §5.2).
fn oauth_error(status: u16, error: &str, description: &str, retry_after: Option<u64>) -> Answer {
    let headers: Vec<(&str, String)> = retry_after
        .map(|r| vec![("retry-after", r.to_string())])
        .unwrap_or_default();
    answer(
        status,
        &headers,
        Some(&json!({"error": error, "error_description": description})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake's state at `now_s`, without a listener.
    fn state(now_s: i64) -> State {
        State {
            token_uri: "http://127.0.0.1:1/token".into(),
            key: DecodingKey::from_rsa_pem(ACCOUNT_PUBLIC_KEY.as_bytes()).unwrap(),
            clock: Arc::new(move || now_s * 1000),
            inner: Mutex::new(Inner::new()),
            accepted: Log::new(),
        }
    }

    fn assertion(key: &str, alg: Algorithm, claims: Value) -> String {
        let key = match alg {
            Algorithm::HS256 => jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
            _ => jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).unwrap(),
        };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).unwrap()
    }

    #[test]
    fn assertions_are_checked_as_google_does() {
        let now = 1_700_000_000;
        let state = state(now);
        let claims = |change: &dyn Fn(&mut Value)| {
            let mut c = json!({"iss": CLIENT_EMAIL, "scope": FCM_SCOPE,
                "aud": "http://127.0.0.1:1/token", "iat": now, "exp": now + 3600});
            change(&mut c);
            c
        };
        let check = |key: &str, alg, c: Value| {
            check_assertion(&state, &assertion(key, alg, c)).map_err(|(error, _)| error)
        };
        let rs256 = Algorithm::RS256;
        assert_eq!(check(ACCOUNT_KEY, rs256, claims(&|_| {})), Ok(()));
        let both = format!("{CLOUD_PLATFORM_SCOPE} email");
        assert_eq!(
            check(
                ACCOUNT_KEY,
                rs256,
                claims(&|c| c["scope"] = both.clone().into())
            ),
            Ok(())
        );
        assert_eq!(
            check(OTHER_RSA_KEY, rs256, claims(&|_| {})),
            Err("invalid_grant")
        );
        assert_eq!(
            check("secret", Algorithm::HS256, claims(&|_| {})),
            Err("invalid_grant")
        );
        assert_eq!(
            check(ACCOUNT_KEY, rs256, claims(&|c| c["iss"] = "x@y".into())),
            Err("invalid_grant")
        );
        assert_eq!(
            check(
                ACCOUNT_KEY,
                rs256,
                claims(&|c| c["aud"] = "https://oauth2.googleapis.com/token".into())
            ),
            Err("invalid_grant")
        );
        assert_eq!(
            check(
                ACCOUNT_KEY,
                rs256,
                claims(&|c| c["exp"] = (now + 3601).into())
            ),
            Err("invalid_grant")
        );
        assert_eq!(
            check(
                ACCOUNT_KEY,
                rs256,
                claims(&|c| {
                    c["iat"] = (now - 3600).into();
                    c["exp"] = now.into();
                })
            ),
            Err("invalid_grant")
        );
        assert_eq!(
            check(
                ACCOUNT_KEY,
                rs256,
                claims(&|c| {
                    c["iat"] = (now + 120).into();
                    c["exp"] = (now + 1000).into();
                })
            ),
            Err("invalid_grant")
        );
        assert_eq!(
            check(
                ACCOUNT_KEY,
                rs256,
                claims(&|c| {
                    c.as_object_mut().unwrap().remove("iat");
                })
            ),
            Err("invalid_grant")
        );
        assert_eq!(
            check(
                ACCOUNT_KEY,
                rs256,
                claims(&|c| c["scope"] = "https://www.googleapis.com/auth/userinfo.email".into())
            ),
            Err("invalid_scope")
        );
    }

    #[test]
    fn durations_are_protobuf_durations() {
        for good in ["0s", "3.5s", "2419200s", "1.000000001s"] {
            assert!(is_duration(good), "{good}");
        }
        for bad in ["", "s", "3", "3.s", "-1s", "1.0000000001s", "1m"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn messages_are_checked_as_the_v1_api_does() {
        let ok = |v: Value| check_request(v.to_string().as_bytes());
        assert!(ok(json!({"message": {"token": "t", "data": {"a": "1"}}})).is_ok());
        assert!(
            ok(
                json!({"message": {"topic": "news", "android": {"priority": "HIGH", "ttl": "60s"}}})
            )
            .is_ok()
        );
        assert!(ok(json!({"message": {"token": "t", "topic": "x"}})).is_err());
        assert!(ok(json!({"message": {"data": {}}})).is_err());
        assert!(ok(json!({"message": {"token": "t", "data": {"a": 1}}})).is_err());
        assert!(ok(json!({"message": {"token": "t", "sound": "x"}})).is_err());
        assert!(ok(json!({"message": {"token": "t", "android": {"priority": "high"}}})).is_err());
        assert!(ok(json!({"message": {"topic": "/topics/news"}})).is_err());
        assert!(ok(json!({"token": "t"})).is_err());
        assert!(
            ok(json!({"message": {"token": "t"}, "validate_only": true}))
                .unwrap()
                .1
        );
    }
}
