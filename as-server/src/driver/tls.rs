//! TLS for SIP (RFC 3261 section 26.2, sips: on port 5061) with rustls and the ring provider.
//!
//! [`server_config`] loads a PEM certificate chain and key, or makes a self-signed development
//! certificate for `localhost` / `127.0.0.1` / `::1` with rcgen when none is configured.
//! [`client_config`] trusts the given roots (the configured CA file and our own certificate,
//! so two development endpoints can talk to each other).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds no private key.
    #[error("no private key in {0}")]
    NoKey(String),
    /// The certificate file holds no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(String),
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// rcgen could not make the development certificate.
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Io {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsError::Io {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(path.display().to_string()))
}

/// A self-signed development certificate for the loopback names.
pub fn dev_certificate() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    Ok((ck.cert.der().clone(), key))
}

/// The server configuration and the leaf certificate it presents. With no `cert`/`key`,
/// a development certificate is made (and a warning logged).
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<(Arc<ServerConfig>, CertificateDer<'static>), TlsError> {
    let (chain, key) = match (cert, key) {
        (Some(c), Some(k)) => (load_certs(c)?, load_key(k)?),
        (Some(c), None) => return Err(TlsError::NoKey(c.display().to_string())),
        _ => {
            tracing::warn!("no TLS certificate configured: using a self-signed development one");
            let (c, k) = dev_certificate()?;
            (vec![c], k)
        }
    };
    let leaf = chain[0].clone();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok((Arc::new(config), leaf))
}

/// A client configuration trusting exactly `roots`.
pub fn client_config(
    roots: impl IntoIterator<Item = CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r)?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
