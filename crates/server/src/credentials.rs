//! The app's credentials, kept in `credentials.toml` in the data directory (mode 0600): the app
//! key and secret that sign API requests, and the key that signs user tokens. Created with random
//! values on first start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tidings_engine::AppCredentials;

const FILE: &str = "credentials.toml";

#[derive(Serialize, Deserialize)]
struct Stored {
    app_key: String,
    app_secret: String,
    /// Hex of 32 random bytes.
    token_key: String,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Reads the credentials of `data_dir`.
pub fn load(data_dir: &Path) -> anyhow::Result<AppCredentials> {
    let p = path(data_dir);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "reading {} (run `tidings serve` once to create it)",
            p.display()
        )
    })?;
    let stored: Stored =
        toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    let token_key = hex::decode(&stored.token_key)
        .with_context(|| format!("token_key in {} is not hex", p.display()))?;
    if token_key.len() < 32 || stored.app_secret.len() < 16 || stored.app_key.is_empty() {
        bail!("{} holds credentials that are too short", p.display());
    }
    Ok(AppCredentials {
        app_key: stored.app_key,
        app_secret: stored.app_secret,
        token_key,
    })
}

/// Loads the credentials, creating them first if the data directory has none. Returns them and
/// whether they were just created.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(AppCredentials, bool)> {
    let p = path(data_dir);
    if p.exists() {
        return Ok((load(data_dir)?, false));
    }
    let stored = Stored {
        app_key: random_hex(8),
        app_secret: random_hex(24),
        token_key: random_hex(32),
    };
    let text = toml::to_string(&stored)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&p)
        .with_context(|| format!("creating {}", p.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok((load(data_dir)?, true))
}

/// The VAPID key's file in the data directory: base64url of the P-256 secret scalar.
const VAPID_FILE: &str = "vapid.key";

pub fn vapid_path(data_dir: &Path) -> PathBuf {
    data_dir.join(VAPID_FILE)
}

/// Loads the server's VAPID key (which signs its Web Push requests), creating it (mode 0600)
/// if the data directory has none. A new key invalidates every browser subscription made with
/// the old one, so it is kept like the credentials.
pub fn load_or_create_vapid(data_dir: &Path) -> anyhow::Result<tidings_push::VapidKey> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let p = vapid_path(data_dir);
    if p.exists() {
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .with_context(|| format!("{} is not base64url", p.display()))?;
        return tidings_push::VapidKey::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
    }
    let key = tidings_push::VapidKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&p)
        .with_context(|| format!("creating {}", p.display()))?;
    file.write_all(format!("{}\n", URL_SAFE_NO_PAD.encode(key.to_bytes())).as_bytes())?;
    file.sync_all()?;
    Ok(key)
}
