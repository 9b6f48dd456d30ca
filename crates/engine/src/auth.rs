//! Identity: user tokens (HS256 JWTs with a fixed algorithm list) and the signatures that
//! authenticate an app server on the HTTP API.
//!
//! A token carries the app key, the user id and the user's token version at minting time; it is
//! valid while unexpired and while that version is still the user's current one, so bumping the
//! version revokes every earlier token at once. It also says where it came from: a
//! self-registered account's login, or the app server (its API, or `tidings token`); a token is
//! good only for a user of the same origin.
//!
//! An app server signs each HTTP API request over what it does: [`sign_request`] is
//! `hex(HMAC-SHA256(appSecret, Nonce + "\n" + Timestamp + "\n" + METHOD + "\n" +
//! path-and-query + "\n" + hex(SHA-256(body))))`, so a set of headers is good for one request
//! only (and once: the engine records each nonce). The older forms that sign only the nonce and
//! timestamp ([`SignatureForm::Legacy`], [`SignatureForm::Seed004`]) are accepted besides it
//! only when the `api_signature` setting names one. Callbacks to the app server are signed the
//! same way (`tidings-hooks`).

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tidings_proto::Code;

/// The app's secrets. `token_key` signs user tokens; `app_secret` signs API requests.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_key: String,
    pub app_secret: String,
    pub token_key: Vec<u8>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The app key.
    pub app: String,
    /// The user's token version when minted.
    pub ver: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
    /// Minted for a self-registered account (by registration, login or a password change), not
    /// for the app server. Absent (false) in the app server's tokens, and so in every token
    /// minted before accounts were told apart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acct: bool,
}

/// Who a token is minted for (its `acct` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A user of the app server's (the API, `tidings token`).
    AppServer,
    /// A self-registered account (registration, login, a password change).
    Account,
}

/// Mints an app server's token for `user` valid until `exp` (seconds since the epoch).
pub fn mint(
    creds: &AppCredentials,
    user: &str,
    version: u64,
    iat: i64,
    exp: i64,
) -> Result<String, Code> {
    mint_for(Origin::AppServer, creds, user, version, (iat, exp))
}

/// Mints a token of `origin` for `user`, valid from `iat` until `exp`.
pub fn mint_for(
    origin: Origin,
    creds: &AppCredentials,
    user: &str,
    version: u64,
    (iat, exp): (i64, i64),
) -> Result<String, Code> {
    let claims = Claims {
        sub: user.to_string(),
        app: creds.app_key.clone(),
        ver: version,
        iat,
        exp,
        acct: origin == Origin::Account,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&creds.token_key),
    )
    .map_err(|_| Code::ServerError)
}

/// Checks a token's signature, app and expiry against `now` (seconds). The token version is
/// checked by the caller against the store.
pub fn verify(creds: &AppCredentials, token: &str, now: i64) -> Result<Claims, Code> {
    if token.is_empty() || token.len() > 4096 {
        return Err(Code::TokenInvalid);
    }
    // Only HS256 is accepted: `alg: none` and algorithm confusion are refused by the library.
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is checked below against the injected clock, not the library's.
    validation.validate_exp = false;
    validation.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(&creds.token_key),
        &validation,
    )
    .map_err(|_| Code::TokenInvalid)?;
    let claims = data.claims;
    if claims.app != creds.app_key {
        return Err(Code::TokenWrongApp);
    }
    if !crate::validate::is_user_id(&claims.sub) {
        return Err(Code::TokenInvalid);
    }
    if claims.exp <= now {
        return Err(Code::TokenExpired);
    }
    Ok(claims)
}

/// A request to the HTTP API as its signature sees it: the four headers an app server sends,
/// and what the request does (method, request target, body).
#[derive(Debug, Clone, Default)]
pub struct ApiRequest<'a> {
    pub app_key: Option<&'a str>,
    pub nonce: Option<&'a str>,
    /// Milliseconds or seconds since the epoch, as decimal text.
    pub timestamp: Option<&'a str>,
    /// Lowercase or uppercase hex of the signature, in one of the [`SignatureForm`]s.
    pub signature: Option<&'a str>,
    /// The request method, as received.
    pub method: &'a str,
    /// The request target's path and query (`?` and the query included when present), exactly
    /// as received: percent-encoding is not undone.
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

/// The forms of the `Signature` header. The HTTP API always accepts [`SignatureForm::Request`];
/// the setting `api_signature` may name one older form to accept besides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureForm {
    /// `hex(HMAC-SHA256(appSecret, Nonce + "\n" + Timestamp + "\n" + METHOD + "\n" +
    /// path-and-query + "\n" + hex(SHA-256(body))))`: see [`sign_request`].
    #[default]
    Request,
    /// `hex(HMAC-SHA256(appSecret, Nonce + Timestamp))`. It covers nothing of what the request
    /// does, so a captured set of headers can be spent on any route with any body while its
    /// nonce is unused.
    Legacy,
    /// Seed 004's `hex(SHA1(appSecret + Nonce + Timestamp))`, as RongCloud-style app servers
    /// send it. It gives up what [`SignatureForm::Legacy`] does, and is a plain hash rather
    /// than an HMAC.
    Seed004,
}

impl SignatureForm {
    /// The setting's values: `request`, `legacy`, `seed004`.
    pub fn parse(name: &str) -> Option<SignatureForm> {
        match name {
            "request" => Some(SignatureForm::Request),
            "legacy" => Some(SignatureForm::Legacy),
            "seed004" => Some(SignatureForm::Seed004),
            _ => None,
        }
    }

    /// Whether a server whose setting is `self` accepts a signature made in `form`: the
    /// request form always, and the older form the setting names.
    pub fn accepts(self, form: SignatureForm) -> bool {
        form == SignatureForm::Request || form == self
    }

    /// The signature, as bytes, that `secret` makes in this form for `request`.
    fn sign(self, secret: &str, nonce: &str, timestamp: &str, request: &ApiRequest) -> Vec<u8> {
        match self {
            SignatureForm::Request => hmac(
                secret,
                string_to_sign(
                    nonce,
                    timestamp,
                    request.method,
                    request.path_and_query,
                    request.body,
                )
                .as_bytes(),
            ),
            SignatureForm::Legacy => hmac(secret, format!("{nonce}{timestamp}").as_bytes()),
            SignatureForm::Seed004 => {
                let mut sha = Sha1::new();
                sha.update(secret.as_bytes());
                sha.update(nonce.as_bytes());
                sha.update(timestamp.as_bytes());
                sha.finalize().to_vec()
            }
        }
    }
}

/// How far an API request's timestamp may be from the server clock.
pub const API_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Checks everything about an API request's signature except nonce reuse: the signature must
/// be in a form that `setting` accepts. Returns the nonce to record.
pub fn check_api_signature<'a>(
    creds: &AppCredentials,
    setting: SignatureForm,
    request: &ApiRequest<'a>,
    now_ms: i64,
) -> Result<&'a str, Code> {
    let (Some(app_key), Some(nonce), Some(timestamp), Some(signature)) = (
        request.app_key,
        request.nonce,
        request.timestamp,
        request.signature,
    ) else {
        return Err(Code::SignatureMissing);
    };
    if app_key != creds.app_key {
        return Err(Code::AppKeyUnknown);
    }
    if nonce.is_empty() || nonce.len() > 128 {
        return Err(Code::SignatureInvalid);
    }
    let ts: i64 = timestamp.parse().map_err(|_| Code::TimestampOutOfWindow)?;
    // Accept seconds or milliseconds: a value below 10^11 cannot be a plausible ms timestamp.
    let ts_ms = if ts < 100_000_000_000 {
        ts.saturating_mul(1000)
    } else {
        ts
    };
    // `abs_diff`, because a subtraction overflows for timestamps near i64's limits.
    if now_ms.abs_diff(ts_ms) > API_WINDOW_MS.unsigned_abs() {
        return Err(Code::TimestampOutOfWindow);
    }
    let given = hex::decode(signature).map_err(|_| Code::SignatureInvalid)?;
    let forms = [
        SignatureForm::Request,
        SignatureForm::Legacy,
        SignatureForm::Seed004,
    ];
    // Each comparison takes the same time whatever the bytes, so a forger learns nothing from
    // how long a refusal took. Which forms were tried is no secret: the setting decides it.
    let matches = forms.into_iter().filter(|f| setting.accepts(*f)).any(|f| {
        let expected = f.sign(&creds.app_secret, nonce, timestamp, request);
        bool::from(expected.ct_eq(&given))
    });
    if !matches {
        return Err(Code::SignatureInvalid);
    }
    Ok(nonce)
}

/// The text the default signature form signs: `Nonce`, `Timestamp`, the method in upper case,
/// the path and query as sent, and the lowercase hex SHA-256 of the body (of the empty string
/// for an empty body), joined by newlines (`\n`), with no newline at the end.
pub fn string_to_sign(
    nonce: &str,
    timestamp: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    let method = method.to_ascii_uppercase();
    format!("{nonce}\n{timestamp}\n{method}\n{path_and_query}\n{body_hash}")
}

/// The `Signature` an app server sends (lowercase hex), in the default form: HMAC-SHA256 keyed
/// with the app secret over [`string_to_sign`]. `path_and_query` is the request target exactly
/// as it goes on the wire (`/api/v1/history?conversationType=1&targetId=bob`), and `body` the
/// bytes sent (empty for none).
pub fn sign_request(
    secret: &str,
    nonce: &str,
    timestamp: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    let request = ApiRequest {
        method,
        path_and_query,
        body,
        ..ApiRequest::default()
    };
    hex::encode(SignatureForm::Request.sign(secret, nonce, timestamp, &request))
}

/// The older `Signature` form [`SignatureForm::Legacy`]: hex HMAC-SHA256(secret, nonce +
/// timestamp). Accepted only when the setting `api_signature` is `legacy`.
pub fn legacy_signature(secret: &str, nonce: &str, timestamp: &str) -> String {
    hex::encode(SignatureForm::Legacy.sign(secret, nonce, timestamp, &ApiRequest::default()))
}

/// Seed 004's `Signature` form [`SignatureForm::Seed004`]: hex SHA1(secret + nonce +
/// timestamp). Accepted only when the setting `api_signature` is `seed004`.
pub fn seed004_signature(secret: &str, nonce: &str, timestamp: &str) -> String {
    hex::encode(SignatureForm::Seed004.sign(secret, nonce, timestamp, &ApiRequest::default()))
}

/// Lowercase hex HMAC-SHA256(secret, data): callbacks' `Body-Signature`, and keys derived from
/// the app secret.
pub fn hmac_hex(secret: &str, data: &[u8]) -> String {
    hex::encode(hmac(secret, data))
}

fn hmac(secret: &str, data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> AppCredentials {
        AppCredentials {
            app_key: "k".into(),
            app_secret: "s".into(),
            token_key: b"0123456789abcdef0123456789abcdef".to_vec(),
        }
    }

    #[test]
    fn tokens_verify_and_expire() {
        let c = creds();
        let t = mint(&c, "alice", 3, 100, 200).unwrap();
        let claims = verify(&c, &t, 150).unwrap();
        assert_eq!((claims.sub.as_str(), claims.ver), ("alice", 3));
        assert_eq!(verify(&c, &t, 200), Err(Code::TokenExpired));
    }

    #[test]
    fn tokens_say_whether_they_are_an_accounts() {
        let c = creds();
        let app = verify(&c, &mint(&c, "alice", 0, 100, 200).unwrap(), 150).unwrap();
        let account = mint_for(Origin::Account, &c, "alice", 0, (100, 200)).unwrap();
        let account = verify(&c, &account, 150).unwrap();
        assert!(!app.acct && account.acct);
        // An app token carries no such claim, so tokens minted before it existed read as the
        // app server's.
        let payload = |t: &str| {
            use base64::Engine as _;
            let part = t.split('.').nth(1).unwrap().to_string();
            let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&json).unwrap()
        };
        let app_payload = payload(&mint(&c, "alice", 0, 100, 200).unwrap());
        assert!(app_payload.get("acct").is_none(), "{app_payload}");
        let account_payload =
            payload(&mint_for(Origin::Account, &c, "alice", 0, (100, 200)).unwrap());
        assert_eq!(account_payload["acct"], true);
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let c = creds();
        let t = mint(&c, "alice", 0, 100, 200).unwrap();
        let mut other = creds();
        other.token_key = b"another key, another key, anothe".to_vec();
        assert_eq!(verify(&other, &t, 150), Err(Code::TokenInvalid));
        let mut tampered = t.clone();
        tampered.pop();
        assert_eq!(verify(&c, &tampered, 150), Err(Code::TokenInvalid));
        // alg: none, with a valid-looking payload.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            t.split('.').nth(1).unwrap()
        );
        assert_eq!(verify(&c, &none, 150), Err(Code::TokenInvalid));
        let mut other_app = creds();
        other_app.app_key = "k2".into();
        let t2 = mint(&other_app, "alice", 0, 100, 200).unwrap();
        assert_eq!(verify(&c, &t2, 150), Err(Code::TokenWrongApp));
        assert_eq!(verify(&c, "", 150), Err(Code::TokenInvalid));
    }

    const SECRET: &str = "s3cret";
    const NOW: i64 = 1_700_000_000_000;
    const TS: &str = "1700000000000";

    fn creds_with_secret() -> AppCredentials {
        AppCredentials {
            app_secret: SECRET.into(),
            ..creds()
        }
    }

    /// A request as the gateway hands it over, signed with `signature`.
    fn request<'a>(
        signature: &'a str,
        method: &'a str,
        target: &'a str,
        body: &'a [u8],
    ) -> ApiRequest<'a> {
        ApiRequest {
            app_key: Some("k"),
            nonce: Some("n-1"),
            timestamp: Some(TS),
            signature: Some(signature),
            method,
            path_and_query: target,
            body,
        }
    }

    #[test]
    fn the_request_form_signs_nonce_timestamp_method_target_and_body_hash() {
        let body = br#"{"ttlSecs":60}"#;
        assert_eq!(
            string_to_sign("n-1", TS, "post", "/api/v1/users/alice/token?x=1", body),
            "n-1\n1700000000000\nPOST\n/api/v1/users/alice/token?x=1\n\
             7a834ca72b9c09866fd014e4e991e392f7179cbdc545e517f5c120944552a070"
        );
        // The expected values were computed apart from this code, with coreutils and OpenSSL:
        //   B=$(printf '%s' '{"ttlSecs":60}' | sha256sum | cut -d' ' -f1)
        //   printf 'n-1\n1700000000000\nPOST\n/api/v1/users/alice/token?x=1\n%s' "$B" \
        //     | openssl dgst -sha256 -hmac s3cret -hex
        assert_eq!(
            sign_request(
                SECRET,
                "n-1",
                TS,
                "POST",
                "/api/v1/users/alice/token?x=1",
                body
            ),
            "9da07aee8796aea94b134595a248dcc6a2667082849a8465dd93e54bbbb31e93"
        );
        // An empty body hashes the empty string:
        //   E=$(printf '' | sha256sum | cut -d' ' -f1)
        //   printf 'n-1\n1700000000000\nGET\n/api/v1/users/alice\n%s' "$E" \
        //     | openssl dgst -sha256 -hmac s3cret -hex
        assert_eq!(
            sign_request(SECRET, "n-1", TS, "GET", "/api/v1/users/alice", b""),
            "d53473d8ae027e7af9181b10787c0e85e9689db288962dd060b40014dcc14599"
        );
        // The older forms, likewise:
        //   printf 'n-11700000000000' | openssl dgst -sha256 -hmac s3cret -hex
        //   printf 's3cretn-11700000000000' | openssl dgst -sha1 -hex
        assert_eq!(
            legacy_signature(SECRET, "n-1", TS),
            "3864db96cba7efc7ead54cc658a293d4cb7509e45defca6862665ed89a0b48ba"
        );
        assert_eq!(
            seed004_signature(SECRET, "n-1", TS),
            "0051497f514c0175b2a197742ed9ad3e8b0b0de0"
        );
    }

    #[test]
    fn a_request_signature_holds_only_for_the_request_it_was_made_for() {
        let c = creds_with_secret();
        let target = "/api/v1/history?targetId=bob";
        let body = br#"{"a":1}"#;
        let sig = sign_request(SECRET, "n-1", TS, "POST", target, body);
        let check = |r: &ApiRequest| {
            check_api_signature(&c, SignatureForm::Request, r, NOW).map(str::to_owned)
        };
        assert_eq!(
            check(&request(&sig, "POST", target, body)),
            Ok("n-1".into())
        );
        // Either case of hex.
        let upper = sig.to_uppercase();
        assert_eq!(
            check(&request(&upper, "POST", target, body)),
            Ok("n-1".into())
        );
        let tampered = [
            request(&sig, "PUT", target, body),
            request(&sig, "POST", "/api/v1/messages?targetId=bob", body),
            request(&sig, "POST", "/api/v1/history?targetId=eve", body),
            request(&sig, "POST", "/api/v1/history", body),
            // Percent-encoding is signed as sent, not decoded.
            request(&sig, "POST", "/api/v1/history?targetId=%62ob", body),
            request(&sig, "POST", target, br#"{"a":2}"#),
            request(&sig, "POST", target, b""),
        ];
        for r in &tampered {
            assert_eq!(check(r), Err(Code::SignatureInvalid), "{r:?}");
        }
        let other_nonce = ApiRequest {
            nonce: Some("n-2"),
            ..request(&sig, "POST", target, body)
        };
        assert_eq!(check(&other_nonce), Err(Code::SignatureInvalid));
        let other_time = ApiRequest {
            timestamp: Some("1700000000001"),
            ..request(&sig, "POST", target, body)
        };
        assert_eq!(check(&other_time), Err(Code::SignatureInvalid));
    }

    #[test]
    fn the_older_forms_are_accepted_only_where_the_setting_names_them() {
        let c = creds_with_secret();
        let target = "/api/v1/users/alice/token";
        let current = sign_request(SECRET, "n-1", TS, "POST", target, b"");
        let legacy = legacy_signature(SECRET, "n-1", TS);
        let seed004 = seed004_signature(SECRET, "n-1", TS);
        let accepted = |setting: SignatureForm, sig: &str| {
            check_api_signature(&c, setting, &request(sig, "POST", target, b""), NOW).is_ok()
        };
        use SignatureForm::*;
        assert_eq!(
            [Request, Legacy, Seed004].map(|s| (
                accepted(s, &current),
                accepted(s, &legacy),
                accepted(s, &seed004)
            )),
            [
                (true, false, false),
                (true, true, false),
                (true, false, true),
            ]
        );
        assert_eq!(SignatureForm::parse("request"), Some(Request));
        assert_eq!(SignatureForm::parse("legacy"), Some(Legacy));
        assert_eq!(SignatureForm::parse("seed004"), Some(Seed004));
        assert_eq!(SignatureForm::parse("SHA1"), None);
    }

    #[test]
    fn headers_are_checked_before_the_signature() {
        let c = creds();
        let now = 1_700_000_000_000;
        let ts = now.to_string();
        let sig = sign_request("s", "n1", &ts, "POST", "/p", b"");
        let ok = ApiRequest {
            app_key: Some("k"),
            nonce: Some("n1"),
            timestamp: Some(&ts),
            signature: Some(&sig),
            method: "POST",
            path_and_query: "/p",
            body: b"",
        };
        let check = |r: &ApiRequest, now| {
            check_api_signature(&c, SignatureForm::Request, r, now).map(str::to_owned)
        };
        assert_eq!(check(&ok, now), Ok("n1".into()));
        assert_eq!(
            check(&ok, now + API_WINDOW_MS + 1),
            Err(Code::TimestampOutOfWindow)
        );
        let bad = ApiRequest {
            signature: Some("00"),
            ..ok.clone()
        };
        assert_eq!(check(&bad, now), Err(Code::SignatureInvalid));
        let not_hex = ApiRequest {
            signature: Some("zz"),
            ..ok.clone()
        };
        assert_eq!(check(&not_hex, now), Err(Code::SignatureInvalid));
        let missing = ApiRequest {
            nonce: None,
            ..ok.clone()
        };
        assert_eq!(check(&missing, now), Err(Code::SignatureMissing));
        let wrong_app = ApiRequest {
            app_key: Some("x"),
            ..ok.clone()
        };
        assert_eq!(check(&wrong_app, now), Err(Code::AppKeyUnknown));
        // Timestamps at i64's limits are refused, not overflowed.
        for extreme in [i64::MIN.to_string(), i64::MAX.to_string()] {
            let r = ApiRequest {
                timestamp: Some(&extreme),
                ..ok.clone()
            };
            assert_eq!(check(&r, now), Err(Code::TimestampOutOfWindow), "{extreme}");
        }
    }
}
