//! End-to-end encryption (docs/e2ee.md), with MLS (`tidings-mls`, on openmls).
//!
//! The key package directory: a device uploads key packages naming it; others claim one per
//! device of a user to add the devices to a group. [`E2ee`] is one device's side of encrypted
//! conversations: its state in a file, the groups' commits (the server takes the first of each
//! epoch; a refused one is dropped and made again on the winner), Welcomes, and messages
//! encrypted and decrypted.

use serde::{Deserialize, Serialize};
use tidings_proto::v1::{self, query::Body};

use crate::{Client, ClientError};

/// One device's key package, as a claim handed it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyPackage {
    pub user_id: String,
    pub device_id: String,
    /// The TLS-serialized MLSMessage the device uploaded.
    pub key_package: Vec<u8>,
    /// The device's last-resort key package, which others may have been handed too.
    pub last_resort: bool,
}

impl Client {
    /// Uploads this device's key packages (TLS-serialized MLSMessages whose credential names
    /// this user and device; at most 100). With `replace`, the device's earlier ones are removed
    /// first. Returns how many one-time key packages the device has in the directory; upload
    /// none to just ask.
    pub async fn publish_key_packages(
        &self,
        key_packages: Vec<Vec<u8>>,
        replace: bool,
    ) -> Result<u64, ClientError> {
        let ack = self
            .query(Body::PublishKeyPackages(v1::PublishKeyPackages {
                key_packages,
                replace,
            }))
            .await?;
        Ok(ack.key_package_count)
    }

    /// Claims one key package of each device of each user named (1-10): by user in the order
    /// asked, then by device id.
    pub async fn claim_key_packages(
        &self,
        user_ids: &[&str],
    ) -> Result<Vec<DeviceKeyPackage>, ClientError> {
        self.claim_key_packages_except(user_ids, &[]).await
    }

    /// As [`Client::claim_key_packages`], leaving out the devices named (`user:device`), as
    /// those already in a group.
    pub async fn claim_key_packages_except(
        &self,
        user_ids: &[&str],
        except: &[String],
    ) -> Result<Vec<DeviceKeyPackage>, ClientError> {
        let ack = self
            .query(Body::ClaimKeyPackages(v1::ClaimKeyPackages {
                user_ids: user_ids.iter().map(|u| u.to_string()).collect(),
                except: except.to_vec(),
            }))
            .await?;
        Ok(ack
            .key_packages
            .into_iter()
            .map(|k| DeviceKeyPackage {
                user_id: k.user_id,
                device_id: k.device_id,
                key_package: k.key_package,
                last_resort: k.last_resort,
            })
            .collect())
    }
}

/// The type, inside the encryption, of a message that recalls an earlier one: its content is
/// `{"uid"}`.
pub const RECALL_TYPE: &str = "tidings:recall";
/// The type, inside the encryption, of an edit: `{"uid", "content"}` (the new content).
pub const EDIT_TYPE: &str = "tidings:edit";
/// The type, inside the encryption, of a reaction: `{"uid", "emoji", "remove"}`.
pub const REACTION_TYPE: &str = "tidings:reaction";

/// How many one-time key packages [`E2ee::publish`] keeps in the directory.
pub const KEY_PACKAGE_SUPPLY: u64 = 30;
/// Below this many, [`E2ee::publish`] uploads more.
pub const KEY_PACKAGE_LOW: u64 = 10;
/// How many of its own recent client message ids a device remembers, to know its own messages
/// when the server delivers them back.
const SENT_KEPT: usize = 1024;
/// How many decrypted messages' plaintext a device keeps in its state (see [`E2ee::receive`]).
pub const PLAINTEXT_KEPT: usize = 1000;
/// How often, at most, a send looks for devices of the conversation's users that are not in
/// its group yet.
const DEVICE_CHECK: std::time::Duration = std::time::Duration::from_secs(60);
/// How many times a send tries again after another member's commit came first.
const COMMIT_TRIES: usize = 5;

/// Why an end-to-end encrypted operation failed.
#[derive(Debug, thiserror::Error)]
pub enum E2eeError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Mls(#[from] tidings_mls::device::DeviceError),
    /// A user has no device with key packages: nobody can add them to an encrypted
    /// conversation until one of their devices publishes some.
    #[error("{0} has no device that takes encrypted messages")]
    NoDevices(String),
    /// Other members kept committing first; try again.
    #[error("the conversation's group kept changing: try again")]
    Busy,
    /// The conversation has a group this device is not in: a member's device adds it at its
    /// next send (or sooner after `refresh_devices`), once this device has published key
    /// packages.
    #[error("this device is not in the conversation's encrypted group yet: a member adds it")]
    NotAdded,
    #[error("{0}")]
    Invalid(String),
}

/// A message of an encrypted conversation, decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decrypted {
    pub uid: String,
    pub conversation_type: u32,
    pub target_id: String,
    pub sender_id: String,
    /// The device that sent it, as its MLS credential says.
    pub sender_device: String,
    pub seq: u64,
    pub sent_time: i64,
    /// The type and content inside the encryption (see docs/e2ee.md, "Messages").
    pub msg_type: String,
    pub content: String,
}

/// What a message of an encrypted conversation was to this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Not an `mls` message: not encrypted.
    Plain,
    Message(Decrypted),
    /// This device joined the conversation's group from a Welcome; `keys_changed` are member
    /// devices whose signature key differs from the one this device saw before.
    Joined {
        epoch: u64,
        keys_changed: Vec<String>,
    },
    /// The group changed: devices added and removed (`user:device`), and devices whose
    /// signature key differs from the one this device saw before (their safety numbers
    /// changed).
    Changed {
        epoch: u64,
        added: Vec<String>,
        removed: Vec<String>,
        keys_changed: Vec<String>,
    },
    /// This device was removed from the group.
    Removed,
    /// A handshake of no concern to this device, or its own message back.
    Nothing,
    /// A message this device cannot read: sent before it joined, after it was removed, or not
    /// what the server claims.
    Unreadable {
        uid: String,
        reason: String,
    },
}

/// A member device of an encrypted conversation, with its safety number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDevice {
    pub user_id: String,
    pub device_id: String,
    pub safety_number: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ConversationState {
    /// The MLS group's id, hex; empty: not in one.
    group: String,
    /// The highest seq of the conversation this device has processed.
    seq: u64,
}

struct State {
    device: tidings_mls::device::Device,
    path: std::path::PathBuf,
    /// Held locked while the state is open, so that two processes never write it at once.
    _lock: std::fs::File,
    checked: std::collections::HashMap<(u32, String), std::time::Instant>,
}

/// End-to-end encryption for one device (docs/e2ee.md): its MLS state, kept in a file, and
/// the encrypted conversations' groups. Give it every message of type `mls` that arrives
/// ([`E2ee::receive`]), in the order the events come; send with [`E2ee::send`].
pub struct E2ee {
    client: Client,
    user: String,
    device: String,
    state: tokio::sync::Mutex<State>,
    /// How many of this device's commits and messages another member's commit came before.
    conflicts: std::sync::atomic::AtomicU64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn conversation_key(conversation_type: u32, target: &str) -> String {
    format!("conv/{conversation_type}:{target}")
}

impl State {
    fn conversation(&self, conversation_type: u32, target: &str) -> ConversationState {
        self.device
            .app_value(&conversation_key(conversation_type, target))
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default()
    }

    fn set_conversation(
        &self,
        conversation_type: u32,
        target: &str,
        c: &ConversationState,
    ) -> Result<(), E2eeError> {
        let value = serde_json::to_vec(c).map_err(|e| E2eeError::Invalid(e.to_string()))?;
        self.device
            .set_app_value(&conversation_key(conversation_type, target), Some(value))?;
        Ok(())
    }

    fn sent(&self) -> Vec<String> {
        self.device
            .app_value("sent")
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default()
    }

    fn remember_sent(&self, client_msg_id: &str) -> Result<(), E2eeError> {
        let mut sent = self.sent();
        sent.push(client_msg_id.to_string());
        if sent.len() > SENT_KEPT {
            sent.drain(..sent.len() - SENT_KEPT);
        }
        let value = serde_json::to_vec(&sent).map_err(|e| E2eeError::Invalid(e.to_string()))?;
        self.device.set_app_value("sent", Some(value))?;
        Ok(())
    }

    fn cached(&self, uid: &str) -> Option<Decrypted> {
        self.device
            .app_value(&format!("plain/{uid}"))
            .and_then(|v| serde_json::from_slice(&v).ok())
    }

    /// Keeps a decrypted message's plaintext (MLS keys are used once: it cannot be decrypted
    /// again), the newest [`PLAINTEXT_KEPT`] of them: the state file is written whole, so it
    /// must not grow with every message.
    fn cache(&self, d: &Decrypted) -> Result<(), E2eeError> {
        let value = serde_json::to_vec(d).map_err(|e| E2eeError::Invalid(e.to_string()))?;
        self.device
            .set_app_value(&format!("plain/{}", d.uid), Some(value))?;
        let mut order: std::collections::VecDeque<String> = self
            .device
            .app_value("plain-order")
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        order.push_back(d.uid.clone());
        while order.len() > PLAINTEXT_KEPT {
            if let Some(old) = order.pop_front() {
                self.device.set_app_value(&format!("plain/{old}"), None)?;
            }
        }
        let order = serde_json::to_vec(&order).map_err(|e| E2eeError::Invalid(e.to_string()))?;
        self.device.set_app_value("plain-order", Some(order))?;
        Ok(())
    }

    /// Records the members' signature keys; returns the identities whose key changed.
    fn note_keys(&self, group: &[u8]) -> Result<Vec<String>, E2eeError> {
        let mut changed = Vec::new();
        for m in self.device.members(group)? {
            let key = format!("key/{}", m.identity);
            match self.device.app_value(&key) {
                Some(known) if known == m.signature_key => {}
                Some(_) => {
                    changed.push(m.identity.clone());
                    self.device.set_app_value(&key, Some(m.signature_key))?;
                }
                None => self.device.set_app_value(&key, Some(m.signature_key))?,
            }
        }
        Ok(changed)
    }

    fn save(&self) -> Result<(), E2eeError> {
        Ok(self.device.save(&self.path)?)
    }
}

#[derive(Deserialize)]
struct MlsContent {
    mls: String,
    #[serde(default)]
    welcome: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Inner {
    #[serde(rename = "type")]
    msg_type: String,
    content: Box<serde_json::value::RawValue>,
}

impl E2ee {
    /// Opens this device's MLS state in `state_dir` (made if missing, mode 0700), in the file
    /// `<user>.<device>.mls`; a new device's state is made there.
    pub fn open(
        client: &Client,
        device_id: &str,
        state_dir: &std::path::Path,
    ) -> Result<E2ee, E2eeError> {
        let user = client.user_id().to_string();
        if device_id.is_empty() {
            return Err(E2eeError::Invalid(
                "end-to-end encryption needs a device id".into(),
            ));
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(state_dir).map_err(|e| {
            E2eeError::Invalid(format!("the state directory {}: {e}", state_dir.display()))
        })?;
        let path = state_dir.join(format!("{user}.{device_id}.mls"));
        let lock_path = state_dir.join(format!("{user}.{device_id}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| E2eeError::Invalid(format!("{}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(E2eeError::Invalid(format!(
                "{} is in use by another process: give each device its own id",
                path.display()
            )));
        }
        let device = tidings_mls::device::Device::open(&path, &user, device_id)?;
        Ok(E2ee {
            client: client.clone(),
            user,
            device: device_id.to_string(),
            state: tokio::sync::Mutex::new(State {
                device,
                path,
                _lock: lock,
                checked: Default::default(),
            }),
            conflicts: Default::default(),
        })
    }

    /// How many times another member's commit came before one of this device's commits or
    /// messages, which was then made again on the new epoch.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This device's safety number.
    pub async fn safety_number(&self) -> String {
        tidings_mls::safety_number(self.state.lock().await.device.signature_key())
    }

    /// Tops up this device's key packages in the directory (to [`KEY_PACKAGE_SUPPLY`] when
    /// fewer than [`KEY_PACKAGE_LOW`] are left; the first time, with a last-resort one too).
    /// Returns how many one-time key packages the device has there.
    pub async fn publish(&self) -> Result<u64, E2eeError> {
        let state = self.state.lock().await;
        let first = state.device.app_value("published").is_none();
        let count = self.client.publish_key_packages(Vec::new(), false).await?;
        if count >= KEY_PACKAGE_LOW && !first {
            return Ok(count);
        }
        let mut packages = Vec::new();
        for _ in count..KEY_PACKAGE_SUPPLY {
            packages.push(state.device.key_package(false)?);
        }
        if first {
            packages.push(state.device.key_package(true)?);
        }
        state.device.set_app_value("published", Some(vec![1]))?;
        // The private halves are saved before the public ones are handed to anyone.
        state.save()?;
        // A new state replaces what the device id had in the directory: key packages of a
        // state that is gone (their private keys with it) must not be handed out.
        Ok(self.client.publish_key_packages(packages, first).await?)
    }

    /// The devices in the conversation's group, with their safety numbers.
    pub async fn members(
        &self,
        conversation_type: u32,
        target: &str,
    ) -> Result<Vec<MemberDevice>, E2eeError> {
        let state = self.state.lock().await;
        let c = state.conversation(conversation_type, target);
        let Some(group) = unhex(&c.group).filter(|g| !g.is_empty()) else {
            return Ok(Vec::new());
        };
        Ok(state
            .device
            .members(&group)?
            .into_iter()
            .filter_map(|m| {
                let (user, device) = tidings_mls::split_identity(&m.identity)?;
                Some(MemberDevice {
                    user_id: user.to_string(),
                    device_id: device.to_string(),
                    safety_number: tidings_mls::safety_number(&m.signature_key),
                })
            })
            .collect())
    }

    /// Makes the next send to the conversation look for devices of its users that are not in
    /// its group yet (sends do on their own at most once a minute, and after a change to a
    /// group's members): for an app that learns of a new device.
    pub async fn refresh_devices(&self, conversation_type: u32, target: &str) {
        self.state
            .lock()
            .await
            .checked
            .remove(&(conversation_type, target.to_string()));
    }

    /// The conversation's group epoch, if this device is in its group.
    pub async fn epoch(&self, conversation_type: u32, target: &str) -> Option<u64> {
        let state = self.state.lock().await;
        let group = unhex(&state.conversation(conversation_type, target).group)?;
        state.device.epoch(&group).ok()
    }

    /// Processes a message of an encrypted conversation (one from the event stream, or
    /// history), catching up first on the conversation's earlier messages this device has not
    /// processed. A message processed before answers what it answered then, for application
    /// messages among the newest [`PLAINTEXT_KEPT`] decrypted (MLS keys are used once, so the
    /// plaintext is kept in the state); older ones answer [`Received::Nothing`]: an app keeps
    /// what it showed in its own store.
    pub async fn receive(&self, message: &crate::Message) -> Result<Received, E2eeError> {
        if message.msg_type != "mls" {
            if message.msg_type == tidings_proto::GROUP_EVENT_TYPE {
                // The group's members changed: the next send looks for devices to add.
                self.state
                    .lock()
                    .await
                    .checked
                    .remove(&(message.conversation_type, message.target_id.clone()));
            }
            return Ok(Received::Plain);
        }
        let state = self.state.lock().await;
        let c = state.conversation(message.conversation_type, &message.target_id);
        if message.seq <= c.seq {
            return Ok(state
                .cached(&message.uid)
                .map(Received::Message)
                .unwrap_or(Received::Nothing));
        }
        self.catch_up(
            &state,
            message.conversation_type,
            &message.target_id,
            message.seq - 1,
        )
        .await?;
        let received = self.apply(&state, message)?;
        let mut c = state.conversation(message.conversation_type, &message.target_id);
        c.seq = c.seq.max(message.seq);
        state.set_conversation(message.conversation_type, &message.target_id, &c)?;
        state.save()?;
        Ok(received)
    }

    /// Processes the conversation's messages after the last one this device processed, up to
    /// `until` (inclusive), from its history.
    async fn catch_up(
        &self,
        state: &State,
        conversation_type: u32,
        target: &str,
        until: u64,
    ) -> Result<(), E2eeError> {
        loop {
            let mut c = state.conversation(conversation_type, target);
            if c.seq >= until {
                return Ok(());
            }
            // From the start: after seq 0 means "the newest" to the server, so the first page is
            // read by time.
            let start = match c.seq {
                0 => crate::HistoryStart::AfterTime(1),
                seq => crate::HistoryStart::AfterSeq(seq),
            };
            let page = match self
                .client
                .history(conversation_type, target, start, 100)
                .await
            {
                Ok(page) => page,
                // No longer a member of the group: there is nothing more to read.
                Err(ClientError::Refused { code, .. })
                    if code == tidings_proto::Code::NotInGroup.as_u32() =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let mut moved = false;
            let after = c.seq;
            for m in page
                .messages
                .iter()
                .filter(|m| m.seq <= until && m.seq > after)
            {
                if m.msg_type == "mls" {
                    self.apply(state, m)?;
                }
                // apply() may have joined the group: read the state again.
                c = state.conversation(conversation_type, target);
                c.seq = m.seq;
                state.set_conversation(conversation_type, target, &c)?;
                moved = true;
            }
            if !moved || !page.has_more {
                // Nothing more to read up to `until` (the rest is not visible to this user).
                if until != u64::MAX {
                    let mut c = state.conversation(conversation_type, target);
                    c.seq = c.seq.max(until);
                    state.set_conversation(conversation_type, target, &c)?;
                }
                state.save()?;
                return Ok(());
            }
        }
    }

    /// What one `mls` message does to this device's state.
    fn apply(&self, state: &State, m: &crate::Message) -> Result<Received, E2eeError> {
        let unreadable = |reason: &str| {
            Ok(Received::Unreadable {
                uid: m.uid.clone(),
                reason: reason.to_string(),
            })
        };
        if m.sender_id == self.user && state.sent().contains(&m.client_msg_id) {
            if let Some(merged) = self.own_commit_not_merged(state, m)? {
                return Ok(merged);
            }
            return Ok(state
                .cached(&m.uid)
                .map(Received::Message)
                .unwrap_or(Received::Nothing));
        }
        let Ok(content) = serde_json::from_str::<MlsContent>(&m.content) else {
            return unreadable("not an MLS message's content");
        };
        let Some(bytes) = unb64(&content.mls) else {
            return unreadable("not base64");
        };
        let Ok(header) = tidings_mls::ds::message_header(&bytes) else {
            return unreadable("not an MLS group message");
        };
        let mut c = state.conversation(m.conversation_type, &m.target_id);
        let group = unhex(&c.group).filter(|g| !g.is_empty() && state.device.has_group(g));
        let Some(group) = group.filter(|g| *g == header.group_id) else {
            // Not in this group: a Welcome may be for this device.
            let welcome = content.welcome.as_deref().and_then(unb64);
            if let Some(joined) = welcome
                .map(|w| state.device.join(&w))
                .transpose()?
                .flatten()
            {
                c.group = hex(&joined);
                state.set_conversation(m.conversation_type, &m.target_id, &c)?;
                let keys_changed = state.note_keys(&joined)?;
                return Ok(Received::Joined {
                    epoch: state.device.epoch(&joined)?,
                    keys_changed,
                });
            }
            return if header.kind == tidings_mls::ds::Kind::Application {
                unreadable("this device is not in the conversation's group")
            } else {
                Ok(Received::Nothing)
            };
        };
        if header.kind != tidings_mls::ds::Kind::Application
            && header.epoch < state.device.epoch(&group)?
        {
            // A change from before this device joined.
            return Ok(Received::Nothing);
        }
        match state.device.process(&group, &bytes) {
            Ok(tidings_mls::device::Processed::Application { sender, plaintext }) => {
                let Some((user, device)) = tidings_mls::split_identity(&sender) else {
                    return unreadable("the sender's credential names no user:device");
                };
                if user != m.sender_id {
                    return unreadable("the MLS sender is not the message's sender");
                }
                let Ok(inner) = serde_json::from_slice::<Inner>(&plaintext) else {
                    return unreadable("the plaintext is not a message");
                };
                // Only a message's sender recalls or edits it.
                if matches!(inner.msg_type.as_str(), RECALL_TYPE | EDIT_TYPE) {
                    let about = serde_json::from_str::<serde_json::Value>(inner.content.get())
                        .ok()
                        .and_then(|v| v["uid"].as_str().map(str::to_string))
                        .and_then(|uid| state.cached(&uid));
                    if about.is_none_or(|o| o.sender_id != m.sender_id) {
                        return unreadable("a recall or edit of a message its sender did not send");
                    }
                }
                let d = Decrypted {
                    uid: m.uid.clone(),
                    conversation_type: m.conversation_type,
                    target_id: m.target_id.clone(),
                    sender_id: m.sender_id.clone(),
                    sender_device: device.to_string(),
                    seq: m.seq,
                    sent_time: m.sent_time,
                    msg_type: inner.msg_type,
                    content: inner.content.get().to_string(),
                };
                state.cache(&d)?;
                Ok(Received::Message(d))
            }
            Ok(tidings_mls::device::Processed::Commit {
                epoch,
                added,
                removed,
                self_removed,
                ..
            }) => {
                if self_removed {
                    c.group.clear();
                    state.set_conversation(m.conversation_type, &m.target_id, &c)?;
                    return Ok(Received::Removed);
                }
                let keys_changed = state.note_keys(&group)?;
                Ok(Received::Changed {
                    epoch,
                    added,
                    removed,
                    keys_changed,
                })
            }
            Ok(_) => Ok(Received::Nothing),
            Err(e) => unreadable(&e.to_string()),
        }
    }

    /// This device's own commit, taken by the server but not merged here (the process ended in
    /// between): merged now.
    fn own_commit_not_merged(
        &self,
        state: &State,
        m: &crate::Message,
    ) -> Result<Option<Received>, E2eeError> {
        let Some(header) = serde_json::from_str::<MlsContent>(&m.content)
            .ok()
            .and_then(|c| unb64(&c.mls))
            .and_then(|b| tidings_mls::ds::message_header(&b).ok())
        else {
            return Ok(None);
        };
        let group = header.group_id;
        if header.kind != tidings_mls::ds::Kind::Commit
            || !state.device.has_group(&group)
            || state.device.epoch(&group)? != header.epoch
        {
            return Ok(None);
        }
        state.device.confirm(&group)?;
        let mut c = state.conversation(m.conversation_type, &m.target_id);
        c.group = hex(&group);
        state.set_conversation(m.conversation_type, &m.target_id, &c)?;
        let keys_changed = state.note_keys(&group)?;
        Ok(Some(Received::Changed {
            epoch: header.epoch + 1,
            added: Vec::new(),
            removed: Vec::new(),
            keys_changed,
        }))
    }

    /// Sends a text message to the encrypted conversation, encrypted for its group's devices.
    pub async fn send_text(
        &self,
        conversation_type: u32,
        target: &str,
        text: &str,
    ) -> Result<crate::Sent, E2eeError> {
        let content = serde_json::json!({ "text": text }).to_string();
        self.send(conversation_type, target, "text", &content).await
    }

    /// Sends a message of any type (its content a JSON object) inside the encryption: the
    /// server sees an `mls` message. The conversation's group is made on first use, with
    /// every device of its users that has key packages, and devices that are new since are
    /// added first (looked for at most once a minute).
    pub async fn send(
        &self,
        conversation_type: u32,
        target: &str,
        msg_type: &str,
        content: &str,
    ) -> Result<crate::Sent, E2eeError> {
        let inner = serde_json::json!({
            "type": msg_type,
            "content": serde_json::from_str::<serde_json::Value>(content)
                .map_err(|_| E2eeError::Invalid("content is a JSON object".into()))?,
        })
        .to_string();
        let mut state = self.state.lock().await;
        let group = self.prepare(&mut state, conversation_type, target).await?;
        for _ in 0..COMMIT_TRIES {
            let ciphertext = state.device.encrypt(&group, inner.as_bytes())?;
            let (result, _) = self
                .send_mls(&state, conversation_type, target, &ciphertext, None)
                .await?;
            match result {
                Ok(sent) => {
                    let d = Decrypted {
                        uid: sent.uid.clone(),
                        conversation_type,
                        target_id: target.to_string(),
                        sender_id: self.user.clone(),
                        sender_device: self.device.clone(),
                        seq: sent.seq,
                        sent_time: sent.sent_time,
                        msg_type: msg_type.to_string(),
                        content: content.to_string(),
                    };
                    state.cache(&d)?;
                    state.save()?;
                    return Ok(sent);
                }
                // A commit came first: take it in and encrypt again for the new epoch.
                Err(code) if code == tidings_proto::Code::EpochConflict.as_u32() => {
                    self.catch_up(&state, conversation_type, target, u64::MAX)
                        .await?;
                }
                Err(code) => {
                    return Err(ClientError::Refused {
                        code,
                        message: "the encrypted message was refused".into(),
                    }
                    .into());
                }
            }
        }
        Err(E2eeError::Busy)
    }

    /// Recalls one of this user's messages of the conversation, inside the encryption: members'
    /// SDKs report a [`RECALL_TYPE`] message, and the app hides the message.
    pub async fn recall(
        &self,
        conversation_type: u32,
        target: &str,
        uid: &str,
    ) -> Result<crate::Sent, E2eeError> {
        let content = serde_json::json!({ "uid": uid }).to_string();
        self.send(conversation_type, target, RECALL_TYPE, &content)
            .await
    }

    /// Edits one of this user's messages, inside the encryption ([`EDIT_TYPE`]): `content` is
    /// the new content (a JSON object).
    pub async fn edit(
        &self,
        conversation_type: u32,
        target: &str,
        uid: &str,
        content: &str,
    ) -> Result<crate::Sent, E2eeError> {
        let content: serde_json::Value = serde_json::from_str(content)
            .map_err(|_| E2eeError::Invalid("content is a JSON object".into()))?;
        let edit = serde_json::json!({ "uid": uid, "content": content }).to_string();
        self.send(conversation_type, target, EDIT_TYPE, &edit).await
    }

    /// Reacts to a message with an emoji (or takes the reaction back), inside the encryption
    /// ([`REACTION_TYPE`]).
    pub async fn react(
        &self,
        conversation_type: u32,
        target: &str,
        uid: &str,
        emoji: &str,
        remove: bool,
    ) -> Result<crate::Sent, E2eeError> {
        let content = serde_json::json!({ "uid": uid, "emoji": emoji, "remove": remove });
        self.send(
            conversation_type,
            target,
            REACTION_TYPE,
            &content.to_string(),
        )
        .await
    }

    /// Removes every device of these users from the conversation's group (mirroring their
    /// leaving a group), in one commit.
    pub async fn remove_users(
        &self,
        conversation_type: u32,
        target: &str,
        users: &[&str],
    ) -> Result<(), E2eeError> {
        let mut state = self.state.lock().await;
        let group = self.prepare(&mut state, conversation_type, target).await?;
        for _ in 0..COMMIT_TRIES {
            let leaving: Vec<String> = state
                .device
                .members(&group)?
                .into_iter()
                .map(|m| m.identity)
                .filter(|i| tidings_mls::split_identity(i).is_some_and(|(u, _)| users.contains(&u)))
                .collect();
            if leaving.is_empty() {
                return Ok(());
            }
            let commit = state.device.remove(&group, &leaving)?;
            if self
                .commit(&state, conversation_type, target, &group, commit)
                .await?
            {
                return Ok(());
            }
        }
        Err(E2eeError::Busy)
    }

    /// Catches up on the conversation, makes its group if it has none, removes the devices of
    /// users who are no longer in the conversation (a group's members who left), and adds the
    /// devices of its users that are not in it yet (looked for at most once a minute, and after
    /// each change to a group's members). Answers the group's id.
    async fn prepare(
        &self,
        state: &mut State,
        conversation_type: u32,
        target: &str,
    ) -> Result<Vec<u8>, E2eeError> {
        self.catch_up(state, conversation_type, target, u64::MAX)
            .await?;
        let users = self.users_of(conversation_type, target).await?;
        for _ in 0..COMMIT_TRIES {
            let c = state.conversation(conversation_type, target);
            let group = unhex(&c.group).filter(|g| !g.is_empty() && state.device.has_group(g));
            let Some(group) = group else {
                if !self.start(state, conversation_type, target, &users).await? {
                    // Another device started the group first: its Welcome, if it added this
                    // device, is in the history.
                    self.catch_up(state, conversation_type, target, u64::MAX)
                        .await?;
                    let c = state.conversation(conversation_type, target);
                    if !unhex(&c.group).is_some_and(|g| !g.is_empty() && state.device.has_group(&g))
                    {
                        return Err(E2eeError::NotAdded);
                    }
                }
                continue;
            };
            let members: Vec<String> = state
                .device
                .members(&group)?
                .into_iter()
                .map(|m| m.identity)
                .collect();
            let gone: Vec<String> = members
                .iter()
                .filter(|i| {
                    tidings_mls::split_identity(i)
                        .is_some_and(|(u, _)| !users.iter().any(|x| x == u))
                })
                .cloned()
                .collect();
            if !gone.is_empty() {
                let commit = state.device.remove(&group, &gone)?;
                self.commit(state, conversation_type, target, &group, commit)
                    .await?;
                continue;
            }
            let key = (conversation_type, target.to_string());
            if state
                .checked
                .get(&key)
                .is_some_and(|at| at.elapsed() < DEVICE_CHECK)
            {
                return Ok(group);
            }
            let claimed = self.claim(&users, &members).await?;
            if claimed.is_empty() {
                state.checked.insert(key, std::time::Instant::now());
                return Ok(group);
            }
            let commit = state.device.add(&group, &claimed)?;
            if self
                .commit(state, conversation_type, target, &group, commit)
                .await?
            {
                state.checked.insert(key, std::time::Instant::now());
                return Ok(group);
            }
        }
        Err(E2eeError::Busy)
    }

    /// Makes the conversation's group with every device of `users` (this one aside); false if
    /// another device's group came first.
    async fn start(
        &self,
        state: &State,
        conversation_type: u32,
        target: &str,
        users: &[String],
    ) -> Result<bool, E2eeError> {
        let me = tidings_mls::identity(&self.user, &self.device);
        let claimed = self.claim(users, std::slice::from_ref(&me)).await?;
        for user in users.iter().filter(|u| **u != self.user) {
            if !claimed.iter().any(|(u, _, _)| u == user) {
                return Err(E2eeError::NoDevices(user.clone()));
            }
        }
        let group = state.device.new_group_id()?;
        state.device.create_group(&group)?;
        let commit = state.device.add(&group, &claimed)?;
        self.commit(state, conversation_type, target, &group, commit)
            .await
    }

    /// Sends a commit; puts it in effect if the server took it (true), or drops it (false). A
    /// commit that starts the conversation's group makes it this device's group if taken, and
    /// forgets the group if refused (another device's came first: the caller joins that one);
    /// any other refused commit is dropped and the one that came first taken in.
    ///
    /// The state, with the pending commit, is saved before sending (`send_mls`): after a crash
    /// between the server taking it and this device merging it, the commit comes back as this
    /// device's own and is merged then ([`E2ee::apply`]).
    async fn commit(
        &self,
        state: &State,
        conversation_type: u32,
        target: &str,
        group: &[u8],
        commit: tidings_mls::device::Commit,
    ) -> Result<bool, E2eeError> {
        let mut c = state.conversation(conversation_type, target);
        let first = unhex(&c.group).is_none_or(|g| g != group);
        let (result, _) = self
            .send_mls(
                state,
                conversation_type,
                target,
                &commit.message,
                commit.welcome.as_deref(),
            )
            .await?;
        match result {
            Ok(_) => {
                state.device.confirm(group)?;
                if first {
                    c.group = hex(group);
                    state.set_conversation(conversation_type, target, &c)?;
                }
                state.note_keys(group)?;
                state.save()?;
                Ok(true)
            }
            Err(_) if first => {
                state.device.forget(group)?;
                state.save()?;
                Ok(false)
            }
            Err(code) if code == tidings_proto::Code::EpochConflict.as_u32() => {
                state.device.discard(group)?;
                self.catch_up(state, conversation_type, target, u64::MAX)
                    .await?;
                Ok(false)
            }
            Err(code) => Err(ClientError::Refused {
                code,
                message: "the commit was refused".into(),
            }
            .into()),
        }
    }

    /// Sends an `mls` message; the PUBACK's code when the server refused it.
    async fn send_mls(
        &self,
        state: &State,
        conversation_type: u32,
        target: &str,
        message: &[u8],
        welcome: Option<&[u8]>,
    ) -> Result<(Result<crate::Sent, u32>, String), E2eeError> {
        let mut content = serde_json::json!({ "mls": b64(message) });
        if let Some(w) = welcome {
            content["welcome"] = serde_json::Value::String(b64(w));
        }
        let client_msg_id = format!("mls-{}", crate::new_client_msg_id());
        state.remember_sent(&client_msg_id)?;
        state.save()?;
        let outgoing = crate::Outgoing {
            conversation_type,
            target_id: target.to_string(),
            msg_type: "mls".into(),
            content: content.to_string(),
            client_msg_id: Some(client_msg_id.clone()),
            ..Default::default()
        };
        match self.client.send(outgoing).await {
            Ok(sent) => Ok((Ok(sent), client_msg_id)),
            Err(ClientError::Refused { code, .. })
                if code == tidings_proto::Code::EpochConflict.as_u32()
                    || code == tidings_proto::Code::NotThisGroup.as_u32() =>
            {
                self.conflicts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok((Err(code), client_msg_id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The users whose devices belong in the conversation's group.
    async fn users_of(
        &self,
        conversation_type: u32,
        target: &str,
    ) -> Result<Vec<String>, E2eeError> {
        if conversation_type == tidings_proto::conversation_type::GROUP {
            let mut users = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .group_members(target, 500, token.as_deref())
                    .await?;
                users.extend(page.members.into_iter().map(|m| m.user_id));
                match page.next_page_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => return Ok(users),
                }
            }
        }
        let mut users = vec![target.to_string()];
        if target != self.user {
            users.push(self.user.clone());
        }
        Ok(users)
    }

    /// Claims key packages of the devices of `users` not in `except`, ten users a query.
    async fn claim(
        &self,
        users: &[String],
        except: &[String],
    ) -> Result<Vec<(String, String, Vec<u8>)>, E2eeError> {
        let mut out = Vec::new();
        for chunk in users.chunks(10) {
            let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
            for k in self
                .client
                .claim_key_packages_except(&names, except)
                .await?
            {
                out.push((k.user_id, k.device_id, k.key_package));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_keeps_the_plaintext_of_its_newest_messages_only() {
        let dir = std::env::temp_dir().join(format!("tidings-e2ee-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = State {
            device: tidings_mls::device::Device::create("alice", "phone").unwrap(),
            path: dir.join("state.mls"),
            _lock: std::fs::File::create(dir.join("lock")).unwrap(),
            checked: Default::default(),
        };
        let message = |i: usize| Decrypted {
            uid: format!("u{i}"),
            conversation_type: 1,
            target_id: "bob".into(),
            sender_id: "bob".into(),
            sender_device: "desk".into(),
            seq: i as u64,
            sent_time: 0,
            msg_type: "text".into(),
            content: "{}".into(),
        };
        for i in 0..=PLAINTEXT_KEPT {
            state.cache(&message(i)).unwrap();
        }
        assert_eq!(state.cached("u0"), None, "the oldest is dropped");
        assert_eq!(state.cached("u1"), Some(message(1)));
        assert_eq!(
            state.cached(&format!("u{PLAINTEXT_KEPT}")),
            Some(message(PLAINTEXT_KEPT))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
