//! Web Push (RFC 8030) to one browser subscription: the payload encrypted to the subscription's
//! keys (RFC 8291 `aes128gcm`, by `web-push-native`), a VAPID JWT (RFC 8292: ES256, `aud` the
//! endpoint's origin, `exp` 12 hours ahead, `sub` the configured contact), `TTL` and
//! `Urgency: normal`. One request per call, classified as the mobile providers' answers are:
//! 2xx delivered, 404 or 410 a dead subscription, a network error, 429 or 5xx worth another try
//! (after its `Retry-After`), anything else refused.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tidings_store::PushTokenRecord;
use web_push_native::jwt_simple::prelude::{
    Claims, ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair,
};

use crate::PushError;
use crate::sent::{Sent, retry_after};

/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours).
pub const VAPID_VALIDITY: Duration = Duration::from_secs(12 * 3600);

/// The server's VAPID key pair (P-256).
pub struct VapidKey(ES256KeyPair);

impl VapidKey {
    pub fn generate() -> VapidKey {
        VapidKey(ES256KeyPair::generate())
    }

    /// From the 32 bytes of the secret scalar.
    pub fn from_bytes(secret: &[u8]) -> Result<VapidKey, PushError> {
        ES256KeyPair::from_bytes(secret)
            .map(VapidKey)
            .map_err(|e| PushError::Key(e.to_string()))
    }

    /// The 32 bytes of the secret scalar.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Unpadded base64url of the uncompressed public point.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.public_key().public_key().to_bytes_uncompressed())
    }

    /// The `Authorization` header for a request to `endpoint`.
    fn authorization(&self, endpoint: &url::Url, subject: &str) -> Result<String, PushError> {
        let claims = Claims::create(VAPID_VALIDITY.into())
            .with_audience(endpoint.origin().ascii_serialization())
            .with_subject(subject);
        let token = self
            .0
            .sign(claims)
            .map_err(|e| PushError::Sign(e.to_string()))?;
        Ok(format!("vapid t={token}, k={}", self.public_key()))
    }
}

/// Whether an endpoint may be sent to: unless private endpoints are allowed, only an `https`
/// URL whose host is a name or a public address (a name is checked when it is resolved, by
/// [`PublicOnly`]). Push services are public HTTPS servers; anything else is a client steering
/// the server at its own network.
pub(crate) fn endpoint_allowed(endpoint: &url::Url, allow_private: bool) -> bool {
    if allow_private {
        return true;
    }
    endpoint.scheme() == "https"
        && match endpoint.host() {
            Some(url::Host::Domain(_)) => true,
            Some(url::Host::Ipv4(ip)) => is_public(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => is_public(IpAddr::V6(ip)),
            None => false,
        }
}

/// Whether `ip` is an address of the public internet: not loopback, private, shared (CGNAT),
/// link-local, unspecified, documentation, benchmarking, multicast, broadcast or reserved, nor
/// an IPv6 unique-local, link-local or IPv4-mapped form of one of those.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// A resolver that keeps only public addresses ([`is_public`]), so that a Web Push endpoint
/// naming a host reaches no private network, also when the name is made to resolve there
/// after it was registered.
pub(crate) struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends Web Push requests.
pub(crate) struct WebPushClient {
    pub key: VapidKey,
    /// The VAPID `sub` claim.
    pub subject: String,
    pub ttl: Duration,
    pub client: reqwest::Client,
    /// Whether endpoints on private networks (and plain http) are sent to.
    pub allow_private: bool,
}

/// A request, encrypted once and sent as often as it takes.
pub(crate) struct Prepared {
    endpoint: url::Url,
    body: Vec<u8>,
}

impl WebPushClient {
    /// Encrypts `body` to the subscription's keys, once: every attempt sends the same bytes
    /// (and signs a fresh JWT).
    pub fn prepare(&self, sub: &PushTokenRecord, body: Vec<u8>) -> Result<Prepared, PushError> {
        let bad = |e: &dyn std::fmt::Display| PushError::Subscription(e.to_string());
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|e| bad(&e))
        };
        let endpoint = url::Url::parse(&sub.token).map_err(|e| bad(&e))?;
        let key = web_push_native::p256::PublicKey::from_sec1_bytes(&decode(&sub.p256dh)?)
            .map_err(|e| bad(&e))?;
        let auth: [u8; 16] = decode(&sub.auth)?
            .try_into()
            .map_err(|_| bad(&"the auth secret is not 16 bytes"))?;
        let auth = web_push_native::Auth::from(auth);
        let body = web_push_native::encrypt(body, &key, &auth).map_err(|e| bad(&e))?;
        Ok(Prepared { endpoint, body })
    }

    pub async fn send(&self, request: &Prepared) -> Sent {
        if !endpoint_allowed(&request.endpoint, self.allow_private) {
            return Sent::Failed(format!(
                "{} is not an https URL of a public host",
                request.endpoint.origin().ascii_serialization()
            ));
        }
        let authorization = match self.key.authorization(&request.endpoint, &self.subject) {
            Ok(a) => a,
            Err(e) => return Sent::Failed(e.to_string()),
        };
        let response = self
            .client
            .post(request.endpoint.clone())
            .header("TTL", self.ttl.as_secs().to_string())
            .header("Urgency", "normal")
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", authorization)
            .body(request.body.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "a Web Push request failed");
                return Sent::Retry(None);
            }
        };
        match response.status().as_u16() {
            200..=299 => Sent::Delivered,
            404 | 410 => Sent::Unregistered,
            429 | 500..=599 => Sent::Retry(retry_after(response.headers())),
            status => Sent::Failed(format!(
                "{status} from {}",
                request.endpoint.origin().ascii_serialization()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vapid_key_survives_its_bytes() {
        let key = VapidKey::generate();
        let again = VapidKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let raw = URL_SAFE_NO_PAD.decode(key.public_key()).unwrap();
        assert_eq!((raw.len(), raw[0]), (65, 4));
    }

    #[test]
    fn the_audience_is_the_endpoints_origin() {
        let key = VapidKey::generate();
        let header = key
            .authorization(
                &url::Url::parse("http://127.0.0.1:8080/push/1?x=y").unwrap(),
                "mailto:a@b",
            )
            .unwrap();
        let token = header
            .strip_prefix("vapid t=")
            .and_then(|r| r.split(", k=").next())
            .unwrap();
        let claims = key
            .0
            .public_key()
            .verify_token::<serde_json::Value>(token, None)
            .unwrap();
        assert!(
            claims
                .audiences
                .unwrap()
                .contains(&std::collections::HashSet::from([
                    "http://127.0.0.1:8080".to_string()
                ]))
        );
        assert_eq!(claims.subject.as_deref(), Some("mailto:a@b"));
    }

    #[test]
    fn only_https_endpoints_of_public_hosts_are_allowed() {
        let allowed = |u: &str| endpoint_allowed(&url::Url::parse(u).unwrap(), false);
        assert!(allowed("https://fcm.googleapis.com/fcm/send/abc"));
        assert!(allowed("https://203.0.114.9/push"));
        for refused in [
            "http://push.example/1",
            "https://127.0.0.1/p",
            "https://10.1.2.3/p",
            "https://172.16.0.1/p",
            "https://192.168.1.1/p",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/p",
            "https://0.0.0.0/p",
            "https://[::1]/p",
            "https://[fd00::1]/p",
            "https://[fe80::1]/p",
            "https://[::ffff:127.0.0.1]/p",
        ] {
            assert!(!allowed(refused), "{refused}");
        }
        assert!(endpoint_allowed(
            &url::Url::parse("http://127.0.0.1:8080/p").unwrap(),
            true
        ));
    }

    #[tokio::test]
    async fn names_resolve_to_public_addresses_only() {
        use reqwest::dns::Resolve as _;
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        let refused = PublicOnly.resolve(name("localhost")).await;
        assert!(refused.is_err(), "localhost has no public address");
    }
}
