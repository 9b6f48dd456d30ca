//! The Delivery Service's checks. The server stores key packages and orders handshake messages
//! without any key: everything here reads public parts of MLS messages (RFC 9420 §6, §10).

use std::time::{Duration, UNIX_EPOCH};

use openmls::prelude::{
    BasicCredential, ContentType, KeyPackageIn, MlsMessageBodyIn, MlsMessageIn, ProtocolMessage,
    ProtocolVersion,
};
use openmls_rust_crypto::RustCrypto;
use tls_codec::Deserialize as _;

use crate::{CIPHERSUITE, MAX_KEY_PACKAGE_LIFETIME, split_identity};

/// The largest key package the server takes, in bytes. One of ciphersuite 1 with a basic
/// credential is about 300 bytes; the room left is for extensions and GREASE values.
pub const MAX_KEY_PACKAGE_BYTES: usize = 4096;

/// A key package the server accepted: what it stores besides the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageInfo {
    /// The key package's reference (RFC 9420 §5.2, `KeyPackageRef`): unique per key package.
    pub reference: Vec<u8>,
    pub user: String,
    pub device: String,
    /// A last-resort key package (RFC 9420 §17.3), which may be handed out more than once.
    pub last_resort: bool,
    /// When it stops being valid, in seconds since the Unix epoch.
    pub not_after: u64,
}

/// Why a key package was refused; the text says it to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPackageError {
    #[error("a key package is at most {MAX_KEY_PACKAGE_BYTES} bytes")]
    TooLarge,
    #[error("not an MLSMessage holding a KeyPackage: {0}")]
    Malformed(String),
    #[error("the key package does not verify: {0}")]
    Invalid(String),
    #[error("the ciphersuite must be 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)")]
    Ciphersuite,
    #[error("the credential must be a basic credential naming user:device")]
    Credential,
    #[error("the credential names {0}, not this user and device")]
    OtherIdentity(String),
    #[error("a key package may be valid for at most 90 days from now")]
    Lifetime,
}

/// Checks a key package (a TLS-serialized `MLSMessage` whose body is a `KeyPackage`) that
/// `user`'s device `device` uploads, at `now` (seconds since the Unix epoch): that it verifies
/// (leaf node and key package signatures, protocol version, distinct keys, a lifetime that holds
/// now), uses [`CIPHERSUITE`], is valid for at most [`MAX_KEY_PACKAGE_LIFETIME`] from now, and
/// that its credential is a basic one naming `user:device`.
pub fn check_key_package(
    bytes: &[u8],
    user: &str,
    device: &str,
    now: u64,
) -> Result<KeyPackageInfo, KeyPackageError> {
    if bytes.len() > MAX_KEY_PACKAGE_BYTES {
        return Err(KeyPackageError::TooLarge);
    }
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| KeyPackageError::Malformed(e.to_string()))?;
    let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else {
        return Err(KeyPackageError::Malformed("another kind of message".into()));
    };
    let key_package: KeyPackageIn = key_package;
    let crypto = RustCrypto::default();
    let key_package = key_package
        .validate(&crypto, ProtocolVersion::Mls10)
        .map_err(|e| KeyPackageError::Invalid(e.to_string()))?;
    if key_package.ciphersuite() != CIPHERSUITE {
        return Err(KeyPackageError::Ciphersuite);
    }
    let lifetime = key_package.life_time();
    // validate() checked it against the system clock; `now` is the caller's.
    if lifetime.not_after() <= now
        || lifetime.not_before() > now + 3600
        || lifetime.not_after() > now + MAX_KEY_PACKAGE_LIFETIME + 3600
    {
        return Err(KeyPackageError::Lifetime);
    }
    let credential = BasicCredential::try_from(key_package.leaf_node().credential().clone())
        .map_err(|_| KeyPackageError::Credential)?;
    let named =
        std::str::from_utf8(credential.identity()).map_err(|_| KeyPackageError::Credential)?;
    let Some((named_user, named_device)) = split_identity(named) else {
        return Err(KeyPackageError::Credential);
    };
    if named_user != user || named_device != device {
        return Err(KeyPackageError::OtherIdentity(named.to_string()));
    }
    let reference = key_package
        .hash_ref(&crypto)
        .map_err(|e| KeyPackageError::Invalid(e.to_string()))?;
    Ok(KeyPackageInfo {
        reference: reference.as_slice().to_vec(),
        user: user.to_string(),
        device: device.to_string(),
        last_resort: key_package.last_resort(),
        not_after: lifetime.not_after(),
    })
}

/// Seconds since the Unix epoch, for [`check_key_package`].
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// What a group message is, for ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Application,
    Proposal,
    Commit,
}

/// The public header of an MLS group message (a `PublicMessage` or `PrivateMessage`, RFC 9420
/// §6): all the Delivery Service reads of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub kind: Kind,
}

/// Why bytes are not the MLS message they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("not an MLSMessage: {0}")]
    Malformed(String),
    #[error("an MLSMessage of the wrong kind: {0}")]
    WrongKind(&'static str),
}

fn wire_kind(body: &MlsMessageBodyIn) -> &'static str {
    match body {
        MlsMessageBodyIn::PublicMessage(_) => "PublicMessage",
        MlsMessageBodyIn::PrivateMessage(_) => "PrivateMessage",
        MlsMessageBodyIn::Welcome(_) => "Welcome",
        MlsMessageBodyIn::GroupInfo(_) => "GroupInfo",
        MlsMessageBodyIn::KeyPackage(_) => "KeyPackage",
    }
}

/// The header of a TLS-serialized `MLSMessage` holding a `PublicMessage` or `PrivateMessage`.
pub fn message_header(bytes: &[u8]) -> Result<Header, MessageError> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| MessageError::Malformed(e.to_string()))?;
    let body = message.extract();
    let kind = wire_kind(&body);
    let message: ProtocolMessage = match body {
        MlsMessageBodyIn::PublicMessage(m) => m.into(),
        MlsMessageBodyIn::PrivateMessage(m) => m.into(),
        _ => return Err(MessageError::WrongKind(kind)),
    };
    Ok(Header {
        group_id: message.group_id().as_slice().to_vec(),
        epoch: message.epoch().as_u64(),
        kind: match message.content_type() {
            ContentType::Application => Kind::Application,
            ContentType::Proposal => Kind::Proposal,
            ContentType::Commit => Kind::Commit,
        },
    })
}

/// Checks that bytes are a TLS-serialized `MLSMessage` holding a `Welcome` of [`CIPHERSUITE`].
pub fn check_welcome(bytes: &[u8]) -> Result<(), MessageError> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| MessageError::Malformed(e.to_string()))?;
    match message.extract() {
        MlsMessageBodyIn::Welcome(w) if w.ciphersuite() == CIPHERSUITE => Ok(()),
        MlsMessageBodyIn::Welcome(_) => {
            Err(MessageError::WrongKind("Welcome of another ciphersuite"))
        }
        other => Err(MessageError::WrongKind(wire_kind(&other))),
    }
}
