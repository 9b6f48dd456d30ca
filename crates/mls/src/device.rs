//! One device's MLS state: its signature key and credential, the private halves of the key
//! packages it published, and its groups. openmls keeps all of it in a key-value store; this
//! module saves that store to a file (mode 0600, replaced atomically) so that the state survives
//! a restart of the client.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use openmls::prelude::{
    BasicCredential, Capabilities, CredentialWithKey, ExtensionType, KeyPackage, MlsMessageOut,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider as _;
use openmls_traits::types::SignatureScheme;
use tls_codec::Serialize as _;

use crate::{CIPHERSUITE, identity, split_identity};

/// The state file's first bytes, with its format's version.
const MAGIC: &[u8] = b"TIDINGS-MLS-1\n";
/// Keys of Tidings' own entries in the store; openmls' keys never start with this.
const META_IDENTITY: &[u8] = b"tidings/identity";
const META_SIGNATURE_KEY: &[u8] = b"tidings/signature-key";

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("the MLS state file {0}: {1}")]
    File(String, std::io::Error),
    #[error("the MLS state file {0} is damaged: {1}")]
    Damaged(String, &'static str),
    #[error("the MLS state file {path} belongs to {found}, not {expected}")]
    OtherDevice {
        path: String,
        found: String,
        expected: String,
    },
    #[error("MLS: {0}")]
    Mls(String),
}

fn mls(e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Mls(e.to_string())
}

/// A device's MLS state.
pub struct Device {
    identity: String,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A new device with a fresh Ed25519 signature key, held in memory until [`Device::save`].
    pub fn create(user: &str, device: &str) -> Result<Device, DeviceError> {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).map_err(mls)?;
        signer.store(provider.storage()).map_err(mls)?;
        let identity = identity(user, device);
        {
            let mut values = provider.storage().values.write().map_err(mls)?;
            values.insert(META_IDENTITY.to_vec(), identity.as_bytes().to_vec());
            values.insert(META_SIGNATURE_KEY.to_vec(), signer.public().to_vec());
        }
        Ok(Device {
            identity,
            provider,
            signer,
        })
    }

    /// The state saved at `path` for `user`'s `device`, or a new state (saved there at once)
    /// when the file does not exist. A file of another user or device is refused.
    pub fn open(path: &Path, user: &str, device: &str) -> Result<Device, DeviceError> {
        let shown = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let created = Device::create(user, device)?;
                created.save(path)?;
                return Ok(created);
            }
            Err(e) => return Err(DeviceError::File(shown, e)),
        };
        let values = decode(&bytes).map_err(|why| DeviceError::Damaged(shown.clone(), why))?;
        let found = values
            .get(META_IDENTITY)
            .and_then(|v| String::from_utf8(v.clone()).ok())
            .filter(|i| split_identity(i).is_some())
            .ok_or(DeviceError::Damaged(shown.clone(), "no identity"))?;
        let expected = identity(user, device);
        if found != expected {
            return Err(DeviceError::OtherDevice {
                path: shown,
                found,
                expected,
            });
        }
        let public = values
            .get(META_SIGNATURE_KEY)
            .cloned()
            .ok_or(DeviceError::Damaged(shown.clone(), "no signature key"))?;
        let provider = OpenMlsRustCrypto::default();
        *provider.storage().values.write().map_err(mls)? = values;
        let signer =
            SignatureKeyPair::read(provider.storage(), &public, SignatureScheme::ED25519).ok_or(
                DeviceError::Damaged(shown, "the signature key pair is missing"),
            )?;
        Ok(Device {
            identity: expected,
            provider,
            signer,
        })
    }

    /// Writes the whole state to `path`: a file beside it first (mode 0600, synced), then
    /// renamed over it, so a crash leaves the old state or the new one.
    pub fn save(&self, path: &Path) -> Result<(), DeviceError> {
        let shown = || path.display().to_string();
        let bytes = {
            let values = self.provider.storage().values.read().map_err(mls)?;
            encode(&values)
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| DeviceError::File(shown(), e))
    }

    /// `user:device`.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The device's signature public key: what safety numbers are made of.
    pub fn signature_key(&self) -> &[u8] {
        self.signer.public()
    }

    fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.identity.as_bytes().to_vec()).into(),
            signature_key: self.signer.public().into(),
        }
    }

    /// A new key package, TLS-serialized as an `MLSMessage`, ready to upload. Its private keys
    /// stay in this device's state (save it before uploading). A last-resort one (RFC 9420
    /// §17.3) may be used by several joiners.
    pub fn key_package(&self, last_resort: bool) -> Result<Vec<u8>, DeviceError> {
        let mut builder = KeyPackage::builder().leaf_node_capabilities(Capabilities::new(
            None,
            Some(&[CIPHERSUITE]),
            Some(&[ExtensionType::LastResort]),
            None,
            None,
        ));
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(CIPHERSUITE, &self.provider, &self.signer, self.credential())
            .map_err(mls)?;
        MlsMessageOut::from(bundle.key_package().clone())
            .tls_serialize_detached()
            .map_err(mls)
    }
}

fn encode(values: &HashMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(values.len() as u64).to_be_bytes());
    let mut entries: Vec<_> = values.iter().collect();
    entries.sort();
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u64).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u64).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn decode(bytes: &[u8]) -> Result<HashMap<Vec<u8>, Vec<u8>>, &'static str> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
            if self.0.len() < n {
                return Err("cut short");
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Ok(head)
        }
        fn len(&mut self) -> Result<usize, &'static str> {
            let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| "cut short")?;
            usize::try_from(u64::from_be_bytes(b)).map_err(|_| "a length is too large")
        }
    }
    let mut r = Reader(bytes.strip_prefix(MAGIC).ok_or("not a Tidings MLS state")?);
    let count = r.len()?;
    let mut values = HashMap::new();
    for _ in 0..count {
        let k_len = r.len()?;
        let k = r.take(k_len)?.to_vec();
        let v_len = r.len()?;
        let v = r.take(v_len)?.to_vec();
        values.insert(k, v);
    }
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ds::{KeyPackageError, check_key_package, now_secs};

    #[test]
    fn key_packages_pass_the_servers_checks_for_their_own_device_only() {
        let device = Device::create("alice", "phone").unwrap();
        let one = device.key_package(false).unwrap();
        let info = check_key_package(&one, "alice", "phone", now_secs()).unwrap();
        assert!(!info.last_resort);
        assert_eq!(info.reference.len(), 32);
        let last = check_key_package(
            &device.key_package(true).unwrap(),
            "alice",
            "phone",
            now_secs(),
        )
        .unwrap();
        assert!(last.last_resort);
        assert_ne!(last.reference, info.reference);
        assert!(matches!(
            check_key_package(&one, "alice", "laptop", now_secs()),
            Err(KeyPackageError::OtherIdentity(_))
        ));
        assert!(matches!(
            check_key_package(&one, "bob", "phone", now_secs()),
            Err(KeyPackageError::OtherIdentity(_))
        ));
        // Expired by the time it is checked.
        assert_eq!(
            check_key_package(&one, "alice", "phone", now_secs() + 100 * 24 * 3600),
            Err(KeyPackageError::Lifetime)
        );
        let mut tampered = one.clone();
        let at = tampered.len() - 10;
        tampered[at] ^= 1;
        assert!(matches!(
            check_key_package(&tampered, "alice", "phone", now_secs()),
            Err(KeyPackageError::Invalid(_) | KeyPackageError::Malformed(_))
        ));
        assert!(matches!(
            check_key_package(b"\x00\x01\x00\x05", "alice", "phone", now_secs()),
            Err(KeyPackageError::Malformed(_))
        ));
    }

    #[test]
    fn the_state_survives_a_save_and_open_and_refuses_another_device() {
        let dir = std::env::temp_dir().join(format!("tidings-mls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alice-phone.mls");
        let created = Device::open(&path, "alice", "phone").unwrap();
        let key = created.signature_key().to_vec();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let opened = Device::open(&path, "alice", "phone").unwrap();
        assert_eq!(opened.signature_key(), key);
        assert!(matches!(
            Device::open(&path, "alice", "laptop"),
            Err(DeviceError::OtherDevice { .. })
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            Device::open(&path, "alice", "phone"),
            Err(DeviceError::Damaged(_, "cut short"))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
