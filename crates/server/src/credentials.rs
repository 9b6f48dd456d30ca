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
