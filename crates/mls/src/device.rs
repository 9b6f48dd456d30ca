//! One device's MLS state: its signature key and credential, the private halves of the key
//! packages it published, and its groups. openmls keeps all of it in a key-value store; this
//! module saves that store to a file (mode 0600, replaced atomically) so that the state survives
//! a restart of the client.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use openmls::prelude::{
    BasicCredential, Capabilities, Credential, CredentialWithKey, ExtensionType, GroupId,
    KeyPackage, KeyPackageIn, LeafNodeIndex, MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY, MlsGroup,
    MlsGroupCreateConfig, MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut,
    ProcessedMessageContent, ProtocolMessage, ProtocolVersion, StagedWelcome, WelcomeError,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider as _;
use openmls_traits::types::SignatureScheme;
use tls_codec::{Deserialize as _, Serialize as _};

use crate::{CIPHERSUITE, identity, split_identity};

/// The state file's first bytes, with its format's version.
const MAGIC: &[u8] = b"TIDINGS-MLS-1\n";
/// Keys of Tidings' own entries in the store; openmls' keys never start with this.
const META_IDENTITY: &[u8] = b"tidings/identity";
const META_SIGNATURE_KEY: &[u8] = b"tidings/signature-key";
/// Keys of the SDK's own entries ([`Device::app_value`]).
const APP_PREFIX: &[u8] = b"tidings/app/";
/// How many epochs back a member can still read a message from: one sent just before a commit
/// it had not seen arrives after it.
pub const MAX_PAST_EPOCHS: usize = 8;

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

/// A commit this device made, not yet in effect: [`Device::confirm`] it once the server took
/// it, [`Device::discard`] it if the server refused it.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The `MLSMessage` holding the commit (a `PublicMessage`).
    pub message: Vec<u8>,
    /// The `MLSMessage` holding the Welcome of the devices it adds.
    pub welcome: Option<Vec<u8>>,
}

/// What a group message did, processed by this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// An application message and the identity (`user:device`) of the member who sent it.
    Application { sender: String, plaintext: Vec<u8> },
    /// A commit, now in effect: the group's new epoch, the identities it added and removed, and
    /// who made it.
    Commit {
        sender: String,
        epoch: u64,
        added: Vec<String>,
        removed: Vec<String>,
        /// This device was removed: the group is gone from its state.
        self_removed: bool,
    },
    /// A proposal, kept for the next commit.
    Proposal { sender: String },
    /// A message this device sent itself, back from the server: nothing to do.
    Own,
}

/// A member of a group: its identity and signature key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub identity: String,
    pub signature_key: Vec<u8>,
}

fn identity_of(credential: &Credential) -> String {
    BasicCredential::try_from(credential.clone())
        .ok()
        .and_then(|c| String::from_utf8(c.identity().to_vec()).ok())
        .unwrap_or_default()
}

fn group_id(id: &[u8]) -> GroupId {
    GroupId::from_slice(id)
}

impl Device {
    fn create_config() -> MlsGroupCreateConfig {
        MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .capabilities(Capabilities::new(
                None,
                Some(&[CIPHERSUITE]),
                Some(&[ExtensionType::LastResort]),
                None,
                None,
            ))
            .build()
    }

    fn join_config() -> MlsGroupJoinConfig {
        MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .build()
    }

    fn group(&self, id: &[u8]) -> Result<MlsGroup, DeviceError> {
        MlsGroup::load(self.provider.storage(), &group_id(id))
            .map_err(mls)?
            .ok_or_else(|| DeviceError::Mls("no such group in this device's state".into()))
    }

    /// Whether this device is a member of the group.
    pub fn has_group(&self, id: &[u8]) -> bool {
        matches!(
            MlsGroup::load(self.provider.storage(), &group_id(id)),
            Ok(Some(_))
        )
    }

    /// A new random group id (16 bytes).
    pub fn new_group_id(&self) -> Result<Vec<u8>, DeviceError> {
        use openmls_traits::random::OpenMlsRand as _;
        self.provider.rand().random_vec(16).map_err(mls)
    }

    /// Starts a group with this device as its only member, at epoch 0.
    pub fn create_group(&self, id: &[u8]) -> Result<(), DeviceError> {
        MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &Self::create_config(),
            group_id(id),
            self.credential(),
        )
        .map_err(mls)?;
        Ok(())
    }

    /// The group's epoch.
    pub fn epoch(&self, id: &[u8]) -> Result<u64, DeviceError> {
        Ok(self.group(id)?.epoch().as_u64())
    }

    /// The group's members, in leaf order.
    pub fn members(&self, id: &[u8]) -> Result<Vec<Member>, DeviceError> {
        Ok(self
            .group(id)?
            .members()
            .map(|m| Member {
                identity: identity_of(&m.credential),
                signature_key: m.signature_key,
            })
            .collect())
    }

    /// A commit adding the devices whose key packages these are (as a claim handed them out),
    /// each checked first: it must verify and its credential must name `user:device` as given.
    pub fn add(
        &self,
        id: &[u8],
        key_packages: &[(String, String, Vec<u8>)],
    ) -> Result<Commit, DeviceError> {
        let mut checked = Vec::with_capacity(key_packages.len());
        for (user, device, bytes) in key_packages {
            let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(mls)?;
            let MlsMessageBodyIn::KeyPackage(kp) = message.extract() else {
                return Err(DeviceError::Mls("a claimed key package is not one".into()));
            };
            let kp: KeyPackage =
                KeyPackageIn::validate(kp, self.provider.crypto(), ProtocolVersion::Mls10)
                    .map_err(mls)?;
            let named = identity_of(kp.leaf_node().credential());
            if named != identity(user, device) {
                return Err(DeviceError::Mls(format!(
                    "the key package handed out for {user}:{device} names {named}"
                )));
            }
            checked.push(kp);
        }
        let mut group = self.group(id)?;
        let (commit, welcome, _) = group
            .add_members(&self.provider, &self.signer, &checked)
            .map_err(mls)?;
        Ok(Commit {
            message: commit.tls_serialize_detached().map_err(mls)?,
            welcome: Some(welcome.tls_serialize_detached().map_err(mls)?),
        })
    }

    /// A commit removing every member whose identity is one of these.
    pub fn remove(&self, id: &[u8], identities: &[String]) -> Result<Commit, DeviceError> {
        let mut group = self.group(id)?;
        let leaves: Vec<LeafNodeIndex> = group
            .members()
            .filter(|m| identities.contains(&identity_of(&m.credential)))
            .map(|m| m.index)
            .collect();
        let (commit, welcome, _) = group
            .remove_members(&self.provider, &self.signer, &leaves)
            .map_err(mls)?;
        Ok(Commit {
            message: commit.tls_serialize_detached().map_err(mls)?,
            welcome: welcome
                .map(|w| w.tls_serialize_detached())
                .transpose()
                .map_err(mls)?,
        })
    }

    /// Puts this device's pending commit in effect (the server took it).
    pub fn confirm(&self, id: &[u8]) -> Result<(), DeviceError> {
        self.group(id)?
            .merge_pending_commit(&self.provider)
            .map_err(mls)
    }

    /// Drops this device's pending commit (the server refused it: another came first).
    pub fn discard(&self, id: &[u8]) -> Result<(), DeviceError> {
        self.group(id)?
            .clear_pending_commit(self.provider.storage())
            .map_err(mls)
    }

    /// Forgets a group (one this device started whose first commit lost to another device's).
    pub fn forget(&self, id: &[u8]) -> Result<(), DeviceError> {
        self.group(id)?.delete(self.provider.storage()).map_err(mls)
    }

    /// Encrypts an application message for the group's current epoch.
    pub fn encrypt(&self, id: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let mut group = self.group(id)?;
        let message = group
            .create_message(&self.provider, &self.signer, plaintext)
            .map_err(mls)?;
        message.tls_serialize_detached().map_err(mls)
    }

    /// Joins a group from a Welcome: its id, or `None` when the Welcome is for other devices.
    pub fn join(&self, welcome: &[u8]) -> Result<Option<Vec<u8>>, DeviceError> {
        let message = MlsMessageIn::tls_deserialize_exact(welcome).map_err(mls)?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(DeviceError::Mls("not a Welcome".into()));
        };
        let staged = match StagedWelcome::new_from_welcome(
            &self.provider,
            &Self::join_config(),
            welcome,
            None,
        ) {
            Ok(staged) => staged,
            Err(WelcomeError::NoMatchingKeyPackage) => return Ok(None),
            Err(e) => return Err(mls(e)),
        };
        let group = staged.into_group(&self.provider).map_err(mls)?;
        Ok(Some(group.group_id().as_slice().to_vec()))
    }

    /// Processes a group message (a `PublicMessage` or `PrivateMessage`) of a group this
    /// device is in: decrypts an application message, puts a commit in effect, keeps a
    /// proposal.
    pub fn process(&self, id: &[u8], message: &[u8]) -> Result<Processed, DeviceError> {
        let mut group = self.group(id)?;
        let parsed = MlsMessageIn::tls_deserialize_exact(message).map_err(mls)?;
        let protocol: ProtocolMessage = parsed.try_into_protocol_message().map_err(mls)?;
        let processed = group
            .process_message(&self.provider, protocol)
            .map_err(mls)?;
        let sender = identity_of(processed.credential());
        Ok(match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(m) => Processed::Application {
                sender,
                plaintext: m.into_bytes(),
            },
            ProcessedMessageContent::ProposalMessage(p) => {
                group
                    .store_pending_proposal(self.provider.storage(), *p)
                    .map_err(mls)?;
                Processed::Proposal { sender }
            }
            ProcessedMessageContent::OwnPrivateMessage
            | ProcessedMessageContent::OwnPendingCommit => Processed::Own,
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                return Err(DeviceError::Mls("external proposals are not taken".into()));
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let added = staged
                    .add_proposals()
                    .map(|p| identity_of(p.add_proposal().key_package().leaf_node().credential()))
                    .collect();
                let removed = staged
                    .remove_proposals()
                    .filter_map(|p| group.member(p.remove_proposal().removed()).map(identity_of))
                    .collect();
                let self_removed = staged.self_removed();
                group
                    .merge_staged_commit(&self.provider, *staged)
                    .map_err(mls)?;
                let epoch = group.epoch().as_u64();
                if self_removed {
                    group.delete(self.provider.storage()).map_err(mls)?;
                }
                Processed::Commit {
                    sender,
                    epoch,
                    added,
                    removed,
                    self_removed,
                }
            }
        })
    }

    /// A value the SDK keeps with the device's state (under its own key).
    pub fn app_value(&self, key: &str) -> Option<Vec<u8>> {
        let mut full = APP_PREFIX.to_vec();
        full.extend_from_slice(key.as_bytes());
        self.provider
            .storage()
            .values
            .read()
            .ok()?
            .get(&full)
            .cloned()
    }

    /// Sets (or, with `None`, removes) a value the SDK keeps with the device's state.
    pub fn set_app_value(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), DeviceError> {
        let mut full = APP_PREFIX.to_vec();
        full.extend_from_slice(key.as_bytes());
        let mut values = self.provider.storage().values.write().map_err(mls)?;
        match value {
            Some(v) => values.insert(full, v),
            None => values.remove(&full),
        };
        Ok(())
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

    fn claimed(device: &Device, user: &str, id: &str) -> (String, String, Vec<u8>) {
        (user.into(), id.into(), device.key_package(false).unwrap())
    }

    #[test]
    fn members_exchange_messages_order_commits_and_a_removed_member_reads_nothing_after() {
        let group = b"g1";
        let alice = Device::create("alice", "a1").unwrap();
        let bob = Device::create("bob", "b1").unwrap();
        let carol = Device::create("carol", "c1").unwrap();
        alice.create_group(group).unwrap();
        let commit = alice
            .add(
                group,
                &[claimed(&bob, "bob", "b1"), claimed(&carol, "carol", "c1")],
            )
            .unwrap();
        alice.confirm(group).unwrap();
        let welcome = commit.welcome.unwrap();
        assert_eq!(bob.join(&welcome).unwrap(), Some(group.to_vec()));
        assert_eq!(carol.join(&welcome).unwrap(), Some(group.to_vec()));
        // A Welcome for other devices is not this one's.
        let dave = Device::create("dave", "d1").unwrap();
        assert_eq!(dave.join(&welcome).unwrap(), None);
        assert_eq!(bob.epoch(group).unwrap(), 1);

        let hello = alice.encrypt(group, b"hello").unwrap();
        for reader in [&bob, &carol] {
            assert_eq!(
                reader.process(group, &hello).unwrap(),
                Processed::Application {
                    sender: "alice:a1".into(),
                    plaintext: b"hello".to_vec()
                }
            );
        }
        assert_eq!(alice.process(group, &hello).unwrap(), Processed::Own);

        // Bob and Carol both commit in epoch 1; the server takes Bob's.
        let by_bob = bob.remove(group, &["carol:c1".into()]).unwrap();
        let by_carol = carol.add(group, &[claimed(&dave, "dave", "d1")]).unwrap();
        bob.confirm(group).unwrap();
        carol.discard(group).unwrap();
        drop(by_carol);
        let Processed::Commit { removed, epoch, .. } =
            alice.process(group, &by_bob.message).unwrap()
        else {
            panic!("a commit");
        };
        assert_eq!((removed, epoch), (vec!["carol:c1".to_string()], 2));
        let secret = bob.encrypt(group, b"after carol left").unwrap();
        assert!(matches!(
            alice.process(group, &secret).unwrap(),
            Processed::Application { .. }
        ));
        // Carol's device still holds epoch 1's keys, and reads nothing of epoch 2.
        assert!(
            carol.process(group, &secret).is_err(),
            "a removed member cannot read on"
        );
        assert!(matches!(
            carol.process(group, &by_bob.message).unwrap(),
            Processed::Commit {
                self_removed: true,
                ..
            }
        ));
        assert!(!carol.has_group(group));
        assert_eq!(
            alice
                .members(group)
                .unwrap()
                .iter()
                .map(|m| m.identity.as_str())
                .collect::<Vec<_>>(),
            ["alice:a1", "bob:b1"]
        );
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
