//! The MLS key package directory: what a device's upload keeps and removes, and which key
//! package of each device a claim hands out. Each one-time key package is handed out once; a
//! device's last-resort key package is handed out, and kept, when it has no other.
//!
//! Pure functions of their arguments: no SQL, no I/O (see the module above).

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    KeyPackageRecord, KeyPackagesFull, MAX_KEY_PACKAGE_DEVICES, MAX_KEY_PACKAGES_PER_DEVICE,
};

/// A key package in the directory, as the rules see it (its bytes are not needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeyPackage {
    pub device: String,
    pub reference: Vec<u8>,
    pub last_resort: bool,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// Upload order: older key packages are handed out first.
    pub order: i64,
}

/// What an upload writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishEffects {
    /// References to delete: expired key packages of the user, the device's earlier ones when
    /// the upload replaces them, and its earlier last-resort one when a new one comes.
    pub remove: Vec<Vec<u8>>,
    /// Key packages to insert, in upload order (one already stored is not inserted again).
    pub insert: Vec<KeyPackageRecord>,
    /// One-time key packages the device has after the upload.
    pub stored: u64,
}

/// What uploading `new` for `device` does, given `stored`, every key package of the device's
/// user, at `now` (seconds). With `replace`, the device's earlier key packages go first; a new
/// last-resort key package replaces the earlier one (of several in one upload, the last counts).
/// Refused past [`MAX_KEY_PACKAGES_PER_DEVICE`] one-time key packages on the device, or when a
/// device with none would be one more than [`MAX_KEY_PACKAGE_DEVICES`].
pub fn publish(
    stored: &[StoredKeyPackage],
    device: &str,
    new: Vec<KeyPackageRecord>,
    replace: bool,
    now: i64,
) -> Result<PublishEffects, KeyPackagesFull> {
    let new_last_resort = new.iter().rposition(|k| k.last_resort);
    let gone = |k: &StoredKeyPackage| {
        k.not_after <= now
            || (k.device == device && (replace || (k.last_resort && new_last_resort.is_some())))
    };
    let mut effects = PublishEffects::default();
    let mut kept: BTreeSet<&[u8]> = BTreeSet::new();
    let mut devices: BTreeSet<&str> = BTreeSet::new();
    let mut one_time = 0u64;
    for k in stored {
        if gone(k) {
            effects.remove.push(k.reference.clone());
            continue;
        }
        kept.insert(&k.reference);
        devices.insert(&k.device);
        if k.device == device && !k.last_resort {
            one_time += 1;
        }
    }
    let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
    for (i, k) in new.into_iter().enumerate() {
        let superseded = k.last_resort && Some(i) != new_last_resort;
        if superseded || kept.contains(k.reference.as_slice()) || !seen.insert(k.reference.clone())
        {
            continue;
        }
        if !k.last_resort {
            one_time += 1;
        }
        effects.insert.push(k);
    }
    if one_time > MAX_KEY_PACKAGES_PER_DEVICE {
        return Err(KeyPackagesFull::Device);
    }
    if !effects.insert.is_empty()
        && super::lists::full(
            devices.len() as u64,
            devices.contains(device),
            MAX_KEY_PACKAGE_DEVICES,
        )
    {
        return Err(KeyPackagesFull::Devices);
    }
    effects.stored = one_time;
    Ok(effects)
}

/// What a claim of a user's key packages does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimEffects {
    /// One key package per device that has one, in device order: `(device, reference,
    /// last_resort)`.
    pub hand_out: Vec<(String, Vec<u8>, bool)>,
    /// References to delete: the one-time key packages handed out, and expired ones.
    pub remove: Vec<Vec<u8>>,
}

/// Which key package of each of the user's devices but those in `except` a claim at `now`
/// hands out: its oldest one-time key package that has not expired (removed, so never handed
/// out again), or else its last-resort one (kept).
pub fn claim(stored: &[StoredKeyPackage], now: i64, except: &[String]) -> ClaimEffects {
    let mut effects = ClaimEffects::default();
    let mut best: BTreeMap<&str, &StoredKeyPackage> = BTreeMap::new();
    for k in stored {
        if k.not_after <= now {
            effects.remove.push(k.reference.clone());
            continue;
        }
        if except.contains(&k.device) {
            continue;
        }
        let better = match best.get(k.device.as_str()) {
            None => true,
            // A one-time key package before a last-resort one, then the oldest one-time one,
            // or the newest last-resort one.
            Some(b) => match (b.last_resort, k.last_resort) {
                (true, false) => true,
                (false, true) => false,
                (false, false) => k.order < b.order,
                (true, true) => k.order > b.order,
            },
        };
        if better {
            best.insert(&k.device, k);
        }
    }
    for (device, k) in best {
        if !k.last_resort {
            effects.remove.push(k.reference.clone());
        }
        effects
            .hand_out
            .push((device.to_string(), k.reference.clone(), k.last_resort));
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(
        device: &str,
        r: u8,
        last_resort: bool,
        not_after: i64,
        order: i64,
    ) -> StoredKeyPackage {
        StoredKeyPackage {
            device: device.into(),
            reference: vec![r],
            last_resort,
            not_after,
            order,
        }
    }

    fn new(r: u8, last_resort: bool) -> KeyPackageRecord {
        KeyPackageRecord {
            reference: vec![r],
            data: vec![r, r],
            last_resort,
            not_after: 1_000,
        }
    }

    #[test]
    fn a_claim_hands_out_the_oldest_one_time_key_package_per_device_else_the_last_resort() {
        let all = vec![
            stored("phone", 1, false, 100, 2),
            stored("phone", 2, false, 100, 1),
            stored("phone", 3, true, 100, 0),
            stored("laptop", 4, true, 100, 3),
            stored("tablet", 5, false, 10, 4),
        ];
        let effects = claim(&all, 50, &[]);
        assert_eq!(
            effects.hand_out,
            vec![
                ("laptop".to_string(), vec![4], true),
                ("phone".to_string(), vec![2], false),
            ]
        );
        // The expired one and the one-time one handed out; never the last resort.
        assert_eq!(effects.remove, vec![vec![5], vec![2]]);
        // Devices already in the group are left out, and nothing of theirs is used.
        let except = claim(&all, 50, &["phone".to_string()]);
        assert_eq!(except.hand_out, vec![("laptop".to_string(), vec![4], true)]);
        assert_eq!(except.remove, vec![vec![5]]);
    }

    #[test]
    fn an_upload_replaces_the_last_resort_skips_known_ones_and_is_capped() {
        let all = vec![
            stored("phone", 1, false, 100, 0),
            stored("phone", 2, true, 100, 1),
            stored("laptop", 3, false, 10, 2),
        ];
        let effects = publish(
            &all,
            "phone",
            vec![new(1, false), new(4, false), new(5, true)],
            false,
            50,
        )
        .unwrap();
        assert_eq!(effects.remove, vec![vec![2], vec![3]]);
        assert_eq!(effects.insert, vec![new(4, false), new(5, true)]);
        assert_eq!(effects.stored, 2);

        let replaced = publish(&all, "phone", vec![new(6, false)], true, 50).unwrap();
        assert_eq!(replaced.remove, vec![vec![1], vec![2], vec![3]]);
        assert_eq!(replaced.stored, 1);

        let many: Vec<_> = (0..=MAX_KEY_PACKAGES_PER_DEVICE as u8)
            .map(|r| new(r + 10, false))
            .collect();
        assert_eq!(
            publish(&[], "phone", many.clone(), false, 50),
            Err(KeyPackagesFull::Device)
        );
        assert!(publish(&[], "phone", many[1..].to_vec(), false, 50).is_ok());

        let devices: Vec<_> = (0..MAX_KEY_PACKAGE_DEVICES)
            .map(|i| stored(&format!("d{i}"), i as u8, true, 100, i as i64))
            .collect();
        assert_eq!(
            publish(&devices, "new", vec![new(99, true)], false, 50),
            Err(KeyPackagesFull::Devices)
        );
        assert!(publish(&devices, "d0", vec![new(99, true)], false, 50).is_ok());
    }
}
