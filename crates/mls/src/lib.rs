//! MLS (RFC 9420) for Tidings, on `openmls`.
//!
//! - [`ds`]: what the server, as the Delivery Service, checks: a key package's signature,
//!   ciphersuite, lifetime and credential, and (for ordering) a handshake message's epoch. It
//!   needs no key material and reads no plaintext.
//! - [`device`]: one device's MLS state for the Rust SDK: its signature key, its key packages and
//!   its groups, saved to a file so that it survives restarts.
//!
//! Every Tidings client uses one ciphersuite, [`CIPHERSUITE`], so a browser (ts-mls) and a native
//! client (openmls) are members of one group. A member's credential is a basic credential whose
//! identity is `user:device` ([`identity`]).

pub mod device;
pub mod ds;

use openmls::prelude::Ciphersuite;

/// `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519` (1): the only ciphersuite Tidings accepts.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The longest a key package may stay valid from now, in seconds (90 days). openmls' default
/// lifetime (84 days, from an hour ago) fits.
pub const MAX_KEY_PACKAGE_LIFETIME: u64 = 90 * 24 * 3600;

/// The identity in a device's credential: `user:device`. Neither user ids nor device ids hold a
/// colon, so it splits back unambiguously ([`split_identity`]).
pub fn identity(user: &str, device: &str) -> String {
    format!("{user}:{device}")
}

/// A device's safety number: what two people compare to know that a member's device is the
/// one they think (docs/e2ee.md, "Verification"). Six groups of five digits, from the SHA-256
/// of the device's Ed25519 signature key: group `i` is bytes `5i..5i+5` as a big-endian number,
/// modulo 100,000.
pub fn safety_number(signature_key: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(signature_key);
    digest[..30]
        .chunks(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The user and device an identity names, if it has the form `user:device`.
pub fn split_identity(identity: &str) -> Option<(&str, &str)> {
    let (user, device) = identity.split_once(':')?;
    (!user.is_empty() && !device.is_empty() && !device.contains(':')).then_some((user, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_split_back_into_user_and_device() {
        assert_eq!(
            split_identity(&identity("alice", "phone")),
            Some(("alice", "phone"))
        );
        assert_eq!(split_identity("alice"), None);
        assert_eq!(split_identity(":phone"), None);
        assert_eq!(split_identity("alice:"), None);
        assert_eq!(split_identity("alice:a:b"), None);
    }

    #[test]
    fn safety_numbers_are_six_groups_of_five_digits_of_the_keys_digest() {
        // SHA-256("") = e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 649b934c a495991b 7852b855;
        // 0xe3b0c44298 = 977923228312, mod 100000 = 28312.
        let n = safety_number(b"");
        assert_eq!(n.len(), 35);
        assert!(n.starts_with("28312 "), "{n}");
        assert_ne!(safety_number(b"a"), n);
    }
}
