//! TLS for `wss://` servers: rustls with the `ring` provider, trusting the public CAs of
//! `webpki-roots` (Mozilla's list) and, when given, a private CA of the application's.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::ClientError;

/// The TLS settings a client uses when [`crate::ClientConfig::tls`] is `None`: the public CAs.
pub fn public_roots() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| config(Vec::new()).expect("the built-in roots are valid"))
        .clone()
}

/// TLS settings trusting the public CAs and also the CA certificates in `ca_pem` (PEM, one
/// or more `CERTIFICATE` blocks), for a server whose certificate a private CA signed.
pub fn with_extra_ca(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let extra: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientError::Tls(format!("reading the CA certificates: {e}")))?;
    if extra.is_empty() {
        return Err(ClientError::Tls(
            "no PEM certificate (`-----BEGIN CERTIFICATE-----`) in the CA file".into(),
        ));
    }
    config(extra)
}

fn config(extra: Vec<CertificateDer<'static>>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("a CA certificate is unusable: {e}")))?;
    }
    build(roots)
}

fn build(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    // The provider is named: an application may link rustls with another one as well, and
    // then rustls cannot choose by itself.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
