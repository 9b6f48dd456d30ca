//! TLS on the listener (rustls, the `ring` provider): the certificate chain and private key
//! are read from PEM files, and read again on [`Tls::reload`] (the binary calls it on SIGHUP)
//! and whenever either file changes ([`Tls::watch`] compares their modification times, sizes
//! and inodes every few seconds, so a renewal that replaces the files or repoints a symlink is
//! seen too).
//!
//! A reload swaps the certificate the next handshake is answered with; connections already
//! open keep the session they negotiated, so nothing is dropped. Files that cannot be read or
//! do not hold a certificate with its matching key leave the old certificate in service, and
//! the error is logged (or returned, to the caller of `reload`).
//!
//! Only HTTP/1.1 is offered (ALPN `http/1.1`): WebSocket upgrades and the API need nothing else.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// Why a certificate and key could not be put in service.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`): {reason}")]
    NoCertificate { path: PathBuf, reason: String },
    #[error(
        "{path} holds no PEM private key (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or \
         `EC PRIVATE KEY`): {reason}"
    )]
    NoKey { path: PathBuf, reason: String },
    #[error("the key in {key} cannot be used: {reason}")]
    BadKey { key: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("setting up TLS: {0}")]
    Config(String),
}

/// The listener's TLS: the acceptor every handshake goes through, and the files it reloads.
/// Cheap to clone; every clone reloads the same certificate.
#[derive(Clone)]
pub struct Tls(Arc<Inner>);

struct Inner {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
    /// The files as they were when last read (whether or not they were valid then).
    seen: Mutex<Option<[Stamp; 2]>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.0.cert)
            .field("key", &self.0.key)
            .finish()
    }
}

/// The certificate handshakes are answered with, swapped whole by a reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// What tells a file changed: its modification time, size and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // Follows symlinks: a renewal that repoints one is a change of the file.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

impl Tls {
    /// Reads the certificate chain (`cert`, PEM, the server's certificate first) and its
    /// private key (`key`, PEM) and makes the acceptor.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = stamps(cert, key);
        let certified = read(&provider, cert, key)?;
        let resolver = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(Arc::new(Inner {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            resolver,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            seen: Mutex::new(stamps),
        })))
    }

    /// Reads the files again and, if they hold a certificate and its key, answers new
    /// handshakes with it. On an error the certificate in service stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let inner = &self.0;
        *inner.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamps(&inner.cert, &inner.key);
        let certified = read(&inner.provider, &inner.cert, &inner.key)?;
        *inner.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        Ok(())
    }

    /// [`Tls::reload`], logging the outcome; what the binary's SIGHUP handler calls.
    pub fn reload_and_log(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.0.cert.display(),
                why,
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(
                error = %e,
                why,
                "TLS certificate not reloaded: still serving the previous one"
            ),
        }
    }

    /// Reloads whenever either file changes, checking every `interval`, until `stop`.
    pub async fn watch(self, interval: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.cancelled() => return,
            }
            let now = stamps(&self.0.cert, &self.0.key);
            let changed = *self.0.seen.lock().unwrap_or_else(|e| e.into_inner()) != now;
            // A file that is missing (in the middle of being replaced) is looked at again at
            // the next tick rather than reported.
            if changed && now.is_some() {
                self.reload_and_log("the files changed");
            }
        }
    }

    /// The certificate in service (its chain's first, DER), for tests and logs.
    pub fn certificate(&self) -> Vec<u8> {
        let current = self.0.resolver.0.read().unwrap_or_else(|e| e.into_inner());
        current.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }

    pub(crate) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.0.acceptor
    }
}

fn stamps(cert: &Path, key: &Path) -> Option<[Stamp; 2]> {
    Some([stamp(cert)?, stamp(key)?])
}

/// The certificate chain and key in the files, checked to belong together.
fn read(provider: &CryptoProvider, cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        path: cert.to_path_buf(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read {
        path: key.to_path_buf(),
        source,
    })?;
    let no_cert = |reason: String| TlsError::NoCertificate {
        path: cert.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(no_cert("none found".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::BadKey {
            key: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // A key whose public half the provider cannot tell is taken as it is, as rustls does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        Err(e) => Err(no_cert(e.to_string())),
    }
}
