//! TLS on the peer link, for sidecars that serve their clients over TLS.
//!
//! Forwarded writes carry clients' documents, so a sidecar whose clients
//! speak TLS must not forward them in clear. The peer listener serves the
//! same certificate as the client listener; a forwarding sidecar verifies
//! it against `--peer-tls-ca-file` and the name `--peer-tls-name` (peers
//! dial each other's pod addresses, which a certificate issued for a
//! Service does not name, so the name checked is the Service's). Peer
//! authentication (`peer_auth`) runs inside the TLS session as before.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How a forwarding sidecar opens TLS to a writer.
#[derive(Clone)]
pub struct PeerTls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Trusts the CA certificates in the PEM file `ca_file` for `name`.
    pub fn load(ca_file: &Path, name: &str) -> Result<PeerTls, String> {
        let pem = std::fs::read(ca_file)
            .map_err(|e| format!("cannot read --peer-tls-ca-file {}: {e}", ca_file.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert
                .map_err(|e| format!("--peer-tls-ca-file {}: not PEM: {e}", ca_file.display()))?;
            roots.add(cert).map_err(|e| {
                format!(
                    "--peer-tls-ca-file {}: not a CA certificate: {e}",
                    ca_file.display()
                )
            })?;
        }
        if roots.is_empty() {
            return Err(format!(
                "--peer-tls-ca-file {} holds no certificate",
                ca_file.display()
            ));
        }
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("--peer-tls-name {name:?}: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("the peer link's TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(PeerTls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake on a fresh connection to a writer.
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), stream).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_or_name_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let absent = dir.path().join("absent.crt");
        let e = PeerTls::load(&absent, "svc").unwrap_err();
        assert!(e.contains("absent.crt"), "{e}");
        for (file, bytes) in [
            ("empty.crt", &b""[..]),
            ("text.crt", &b"not a certificate at all"[..]),
            ("binary.crt", &[0xff_u8; 4096][..]),
        ] {
            let e = PeerTls::load(&write(file, bytes), "svc").unwrap_err();
            assert!(e.contains(file) && e.contains("--peer-tls-ca-file"), "{e}");
        }
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = PeerTls::load(&write("broken.crt", broken.as_bytes()), "svc").unwrap_err();
        assert!(e.contains("broken.crt"), "{e}");
        let ca = argon_testkit::tls::TestCa::new("peer-ca").unwrap();
        let good = write("ca.crt", ca.cert_pem().as_bytes());
        assert!(PeerTls::load(&good, "abr-feature.shop.svc").is_ok());
        let e = PeerTls::load(&good, "not a name!").unwrap_err();
        assert!(e.contains("--peer-tls-name"), "{e}");
    }
}
