//! End-to-end encryption with MLS (RFC 9420; docs/e2ee.md). The server is the Delivery
//! Service: it keeps the key package directory and never holds a key. A device uploads key
//! packages whose credential names it (checked here, with `tidings-mls`); others claim one per
//! device to add it to a group. The directory's rules are `tidings_store::rules::keys`.

use tidings_proto::Code;
use tidings_store::{KeyPackageRecord, KeyPackageUpload, KeyPackagesFull, WriteOp, WriteResult};

use crate::validate::{self, Refusal};
use crate::{Engine, store_failed};

/// The most key packages one upload carries.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 100;
/// The most users one claim names.
pub const MAX_CLAIM_USERS: usize = 10;

/// A key package a claim handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyPackageOut {
    pub user: String,
    pub device: String,
    /// The TLS-serialized MLSMessage the device uploaded.
    pub key_package: Vec<u8>,
    pub last_resort: bool,
}

impl Engine {
    /// Uploads key packages of `user`'s `device` (see `PublishKeyPackages` in docs/protocol.md);
    /// answers how many one-time key packages the device has in the directory. Every key
    /// package is checked first, and one that fails refuses the whole upload.
    pub async fn publish_key_packages(
        &self,
        user: &str,
        device: &str,
        packages: Vec<Vec<u8>>,
        replace: bool,
    ) -> Result<u64, Refusal> {
        if device.is_empty() {
            return Err(Refusal::new(
                Code::InvalidKeyPackage,
                "key packages belong to a device: connect with a device id",
            ));
        }
        if packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
            return Err(Refusal::new(
                Code::InvalidKeyPackage,
                format!("at most {MAX_KEY_PACKAGES_PER_UPLOAD} key packages per upload"),
            ));
        }
        let now = tidings_mls::ds::now_secs();
        let mut records = Vec::with_capacity(packages.len());
        for (i, data) in packages.into_iter().enumerate() {
            let info =
                tidings_mls::ds::check_key_package(&data, user, device, now).map_err(|e| {
                    Refusal::new(Code::InvalidKeyPackage, format!("key package {i}: {e}"))
                })?;
            records.push(KeyPackageRecord {
                reference: info.reference,
                data,
                last_resort: info.last_resort,
                not_after: i64::try_from(info.not_after).unwrap_or(i64::MAX),
            });
        }
        let op = WriteOp::PublishKeyPackages(KeyPackageUpload {
            user: user.to_string(),
            device: device.to_string(),
            packages: records,
            replace,
            now: now as i64,
        });
        let results = self
            .inner
            .store
            .write(vec![op])
            .await
            .map_err(store_failed("a key package upload"))?;
        match results.into_iter().next() {
            Some(WriteResult::KeyPackagesPublished { stored }) => Ok(stored),
            Some(WriteResult::KeyPackagesRefused(KeyPackagesFull::Device)) => Err(Refusal::new(
                Code::KeyPackagesFull,
                format!(
                    "a device keeps at most {} one-time key packages",
                    tidings_store::MAX_KEY_PACKAGES_PER_DEVICE
                ),
            )),
            Some(WriteResult::KeyPackagesRefused(KeyPackagesFull::Devices)) => Err(Refusal::new(
                Code::KeyPackagesFull,
                format!(
                    "a user has key packages on at most {} devices: replace another device's \
                     with none first",
                    tidings_store::MAX_KEY_PACKAGE_DEVICES
                ),
            )),
            other => {
                tracing::error!(?other, "a key package upload answered out of turn");
                Err(Code::ServerError.into())
            }
        }
    }

    /// Hands `claimer` one key package of each device of each of `users` but those named in
    /// `except` (`user:device`), see `ClaimKeyPackages` in docs/protocol.md. A user who blocks
    /// the claimer shows no device.
    /// A claim counts as a send against the claimer's send rate, which bounds how fast anyone
    /// can use up another user's key packages.
    pub async fn claim_key_packages(
        &self,
        claimer: &str,
        users: Vec<String>,
        except: Vec<String>,
    ) -> Result<Vec<DeviceKeyPackageOut>, Refusal> {
        if users.is_empty() || users.len() > MAX_CLAIM_USERS {
            return Err(Refusal::new(
                Code::InvalidQuery,
                format!("name 1-{MAX_CLAIM_USERS} users"),
            ));
        }
        for user in &users {
            validate::check_user_id(user)?;
        }
        if !self.may_send(claimer) {
            return Err(Refusal::new(
                Code::SendTooFast,
                format!(
                    "at most {} messages (and claims) a second",
                    self.inner.config.send_rate
                ),
            ));
        }
        let now = tidings_mls::ds::now_secs() as i64;
        let mut out = Vec::new();
        let mut asked = std::collections::BTreeSet::new();
        for user in users {
            if !asked.insert(user.clone()) {
                continue;
            }
            if user != claimer
                && self
                    .inner
                    .store
                    .is_blocked(&user, claimer)
                    .await
                    .map_err(store_failed("a blocklist read"))?
            {
                continue;
            }
            let except = except
                .iter()
                .filter_map(|i| tidings_mls::split_identity(i))
                .filter(|(u, _)| *u == user)
                .map(|(_, d)| d.to_string())
                .collect();
            let op = WriteOp::ClaimKeyPackages {
                user: user.clone(),
                now,
                except,
            };
            let results = self
                .inner
                .store
                .write(vec![op])
                .await
                .map_err(store_failed("a key package claim"))?;
            let Some(WriteResult::KeyPackagesClaimed(claimed)) = results.into_iter().next() else {
                tracing::error!("a key package claim answered out of turn");
                return Err(Code::ServerError.into());
            };
            out.extend(claimed.into_iter().map(|c| DeviceKeyPackageOut {
                user: user.clone(),
                device: c.device,
                key_package: c.data,
                last_resort: c.last_resort,
            }));
        }
        Ok(out)
    }
}

/// The message type of an end-to-end encrypted conversation's messages: an MLS message the
/// server orders and delivers but cannot read.
pub const MLS_TYPE: &str = tidings_store::MLS_TYPE;

/// The largest content of an [`MLS_TYPE`] message, in bytes (or `max_content_bytes`, if that
/// is larger): a commit that adds many devices carries their Welcome and the group's tree.
pub const MAX_MLS_CONTENT_BYTES: usize = 48 * 1024;

fn not_mls(detail: impl Into<String>) -> Refusal {
    Refusal::new(Code::ContentInvalid, detail)
}

fn mls_field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<Vec<u8>>, Refusal> {
    use base64::Engine as _;
    let Some(value) = obj.get(name) else {
        return Ok(None);
    };
    let text = value
        .as_str()
        .ok_or_else(|| not_mls(format!("{name} is a base64 string")))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Some)
        .map_err(|_| not_mls(format!("{name} is not base64 (RFC 4648, padded)")))
}

/// What an [`MLS_TYPE`] message's content says of its group: its content is a JSON object with
/// `mls`, a TLS-serialized `MLSMessage` holding a `PublicMessage` or `PrivateMessage` (base64),
/// and, on a commit only, `welcome`, the `MLSMessage` holding the Welcome of the devices it
/// adds. Nothing else: no field of it may carry plaintext.
pub(crate) fn mls_ordering(
    conversation_type: u32,
    content: &str,
) -> Result<tidings_store::MlsOrdering, Refusal> {
    use tidings_mls::ds::{self, Kind};
    use tidings_proto::conversation_type as ct;
    if !matches!(conversation_type, ct::PRIVATE | ct::GROUP) {
        return Err(Refusal::new(
            Code::InvalidMessageType,
            "mls messages are for private and group conversations",
        ));
    }
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(content) else {
        return Err(not_mls("mls content is a JSON object"));
    };
    if let Some(other) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "mls" | "welcome"))
    {
        return Err(not_mls(format!(
            "mls content has only mls and welcome, not {other}"
        )));
    }
    let message = mls_field(&obj, "mls")?.ok_or_else(|| not_mls("mls content needs mls"))?;
    let header = ds::message_header(&message).map_err(|e| not_mls(format!("mls: {e}")))?;
    if let Some(welcome) = mls_field(&obj, "welcome")? {
        if header.kind != Kind::Commit {
            return Err(not_mls(
                "a welcome comes with the commit that adds its devices",
            ));
        }
        ds::check_welcome(&welcome).map_err(|e| not_mls(format!("welcome: {e}")))?;
    }
    Ok(tidings_store::MlsOrdering {
        group_id: header.group_id,
        epoch: header.epoch,
        kind: match header.kind {
            Kind::Application => tidings_store::MlsKind::Application,
            Kind::Proposal => tidings_store::MlsKind::Proposal,
            Kind::Commit => tidings_store::MlsKind::Commit,
        },
    })
}

/// The PUBACK refusal of an MLS message the store took out of turn.
pub(crate) fn epoch_refusal(r: tidings_store::EpochRefusal) -> Refusal {
    use tidings_store::EpochRefusal as R;
    match r {
        R::Stale { current } => Refusal::new(
            Code::EpochConflict,
            format!("epoch {current} is current: process the commits before it, then send again"),
        ),
        R::NoGroup => Refusal::new(
            Code::NotThisGroup,
            "the conversation has no MLS group yet: only the commit that starts one at epoch 0 \
             is taken",
        ),
        R::OtherGroup => Refusal::new(
            Code::NotThisGroup,
            "the conversation's MLS group is another one: join it from its Welcome",
        ),
    }
}
