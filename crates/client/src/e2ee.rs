//! End-to-end encryption (docs/e2ee.md): the MLS key package directory. A device uploads key
//! packages naming it; others claim one per device of a user to add the devices to a group.

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
        let ack = self
            .query(Body::ClaimKeyPackages(v1::ClaimKeyPackages {
                user_ids: user_ids.iter().map(|u| u.to_string()).collect(),
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
