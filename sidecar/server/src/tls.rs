//! TLS for the wire server (`serve --tls-cert-file --tls-key-file`):
//! rustls with the ring provider (the TLS stack the mongodb crate and kube
//! already link). The certificate and key are PEM files, as a mounted
//! `kubernetes.io/tls` Secret or cert-manager gives them; they are re-read
//! when they change ([`watch`]), so a renewed certificate is served from the
//! next handshake on without a restart. A pair that fails to load (a
//! half-written rotation, a key that does not match) is logged and the
//! previous one stays. No key material is ever logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The certificate served: swapped in place, read per handshake.
#[derive(Debug)]
pub struct ServingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of the files last loaded.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let invalid = |path: &Path, reason: String| TlsError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert_path, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(invalid(cert_path, "no PEM certificate in it".into()));
    }
    // The key's parse error says nothing of its content.
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
        .map_err(|_| invalid(key_path, "not a PEM private key".into()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| invalid(key_path, "an unsupported private key type".into()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| invalid(key_path, "the key does not match the certificate".into()))?;
    Ok(certified)
}

impl ServingCert {
    /// Loads the pair; an error here stops the server from starting.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<ServingCert>, TlsError> {
        let stamps = (modified(cert_path), modified(key_path));
        let certified = load_pair(cert_path, key_path)?;
        Ok(Arc::new(ServingCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(certified)),
            loaded: Mutex::new(stamps),
        }))
    }

    /// Re-reads the pair if either file changed; `Ok(true)` when a new pair
    /// is served from now on.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = (modified(&self.cert_path), modified(&self.key_path));
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == stamps {
            return Ok(false);
        }
        let certified = load_pair(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        *loaded = stamps;
        Ok(true)
    }

    /// The TLS configuration that serves through this certificate.
    pub fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid {
                path: self.cert_path.clone(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// Re-reads the pair every [`RELOAD_INTERVAL`] when it changed; runs until
/// the task is dropped.
pub async fn watch(cert: Arc<ServingCert>) {
    let mut tick = tokio::time::interval(RELOAD_INTERVAL);
    loop {
        tick.tick().await;
        match cert.reload_if_changed() {
            Ok(true) => {
                tracing::info!(cert = %cert.cert_path.display(), "serving a new TLS certificate")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the TLS certificate changed but cannot be loaded; serving the previous one")
            }
        }
    }
}
