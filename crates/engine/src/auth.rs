//! Identity: user tokens (HS256 JWTs with a fixed algorithm list) and the signatures that
//! authenticate an app server on the HTTP API.
//!
//! A token carries the app key, the user id and the user's token version at minting time; it is
//! valid while unexpired and while that version is still the user's current one, so bumping the
//! version revokes every earlier token at once. It also says where it came from: a
//! self-registered account's login, or the app server (its API, or `tidings token`); a token is
//! good only for a user of the same origin.

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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

/// The headers an app server sends to the HTTP API.
#[derive(Debug, Clone, Default)]
pub struct ApiSignature<'a> {
    pub app_key: Option<&'a str>,
    pub nonce: Option<&'a str>,
    /// Milliseconds or seconds since the epoch, as decimal text.
    pub timestamp: Option<&'a str>,
    /// Lowercase or uppercase hex of HMAC-SHA256(app_secret, nonce + timestamp).
    pub signature: Option<&'a str>,
}

/// How far an API request's timestamp may be from the server clock.
pub const API_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Checks everything about an API signature except nonce reuse. Returns the nonce to record.
pub fn check_api_signature<'a>(
    creds: &AppCredentials,
    sig: &ApiSignature<'a>,
    now_ms: i64,
) -> Result<&'a str, Code> {
    let (Some(app_key), Some(nonce), Some(timestamp), Some(signature)) =
        (sig.app_key, sig.nonce, sig.timestamp, sig.signature)
    else {
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
    if (now_ms - ts_ms).abs() > API_WINDOW_MS {
        return Err(Code::TimestampOutOfWindow);
    }
    let given = hex::decode(signature).map_err(|_| Code::SignatureInvalid)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(creds.app_secret.as_bytes())
        .map_err(|_| Code::ServerError)?;
    mac.update(nonce.as_bytes());
    mac.update(timestamp.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&given)
        .map_err(|_| Code::SignatureInvalid)?;
    Ok(nonce)
}

/// Hex HMAC-SHA256(secret, nonce + timestamp): what an app server puts in `Signature`.
pub fn api_signature(secret: &str, nonce: &str, timestamp: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(nonce.as_bytes());
    mac.update(timestamp.as_bytes());
    hex::encode(mac.finalize().into_bytes())
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

    #[test]
    fn api_signatures() {
        let c = creds();
        let now = 1_700_000_000_000;
        let ts = now.to_string();
        let sig = api_signature("s", "n1", &ts);
        let ok = ApiSignature {
            app_key: Some("k"),
            nonce: Some("n1"),
            timestamp: Some(&ts),
            signature: Some(&sig),
        };
        assert_eq!(check_api_signature(&c, &ok, now), Ok("n1"));
        assert_eq!(
            check_api_signature(&c, &ok, now + API_WINDOW_MS + 1),
            Err(Code::TimestampOutOfWindow)
        );
        let bad = ApiSignature {
            signature: Some("00"),
            ..ok.clone()
        };
        assert_eq!(
            check_api_signature(&c, &bad, now),
            Err(Code::SignatureInvalid)
        );
        let missing = ApiSignature {
            nonce: None,
            ..ok.clone()
        };
        assert_eq!(
            check_api_signature(&c, &missing, now),
            Err(Code::SignatureMissing)
        );
        let wrong_app = ApiSignature {
            app_key: Some("x"),
            ..ok
        };
        assert_eq!(
            check_api_signature(&c, &wrong_app, now),
            Err(Code::AppKeyUnknown)
        );
    }
}
