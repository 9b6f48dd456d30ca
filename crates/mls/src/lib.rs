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
}
