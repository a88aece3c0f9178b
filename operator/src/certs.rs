//! The operator as its installation's CA: the webhook's TLS certificate,
//! and the serving certificates of branch endpoints.
//!
//! Every replica reads one `kubernetes.io/tls` Secret through the API
//! (`tls.crt`, `tls.key`, `ca.crt`) and hands its certificate to the
//! webhook's TLS server through [`ServingCert`], a rustls
//! `ResolvesServerCert` holding an `Arc` that is swapped when the Secret
//! changes: a renewed certificate is served without a restart. No volume
//! mount, so a default install never waits for a Secret that nothing made.
//!
//! With [`ManagedCerts`] (the chart's default), the leader also writes that
//! Secret: a self-signed CA (its key in `ca.key`, so any replica that later
//! leads signs with the same CA) and a serving certificate for the webhook
//! Service's DNS names, re-issued when less than a third of its lifetime is
//! left, when its names change, or when the CA changes. The CA is replaced
//! the same way; the old CA stays in `ca.crt` beside the new one until it
//! expires, and the leader publishes `ca.crt` as the `caBundle` of every
//! webhook in the MutatingWebhookConfiguration (server-side apply, field
//! manager [`FIELD_MANAGER`]) *before* it writes a certificate signed by a
//! new CA, so the apiserver trusts each certificate before it is served.
//! Without `manage` (cert-manager), the operator only reads the Secret.
//!
//! Branch endpoints are signed by the same CA ([`ensure_ca`], which makes it
//! when the webhook does not, and [`serving_pair`], the same renewal rule):
//! the branch controller keeps each endpoint's pair in a Secret of its own.
//!
//! Nothing here logs key material: errors name the Secret and what is wrong.

use crate::config::{CertSecretConfig, ManagedCerts};
use crate::error::{Error, Result};
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

/// The field manager of the `caBundle`s the operator publishes.
pub const FIELD_MANAGER: &str = "argon-operator-webhook-certs";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
const CA_COMMON_NAME: &str = "argon-operator CA";
/// While no certificate is loaded, the Secret is re-read this often.
const RETRY_UNLOADED: Duration = Duration::from_secs(2);

/// The certificate the webhook serves: swapped in place, read per handshake.
#[derive(Debug, Default)]
pub struct ServingCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ServingCert {
    pub fn new() -> Arc<ServingCert> {
        Arc::new(ServingCert::default())
    }

    /// A store serving `cert_pem` / `key_pem` from the start.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<ServingCert>> {
        let store = ServingCert::new();
        store.set_pem(cert_pem, key_pem)?;
        Ok(store)
    }

    /// Serves this chain and key from the next handshake on; false when it is
    /// the one already served.
    pub fn set_pem(&self, cert_pem: &str, key_pem: &str) -> Result<bool> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Tls(format!("webhook certificate: {e}")))?;
        if chain.is_empty() {
            return Err(Error::Tls("webhook certificate: no PEM certificate".into()));
        }
        if self.current_der().as_ref() == chain.first() {
            return Ok(false);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| Error::Tls(format!("webhook key: {e}")))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| Error::Tls(format!("webhook key: {e}")))?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|e| Error::Tls(format!("webhook key does not match its certificate: {e}")))?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = Some(Arc::new(certified));
        Ok(true)
    }

    /// The leaf certificate served now, if any.
    pub fn current_der(&self) -> Option<CertificateDer<'static>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().and_then(|c| c.cert.first().cloned())
    }

    pub fn is_loaded(&self) -> bool {
        self.current_der().is_some()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Serves the PEM pair in `cert` and `key`; true when it changed.
pub fn load_files(serving: &ServingCert, cert: &Path, key: &Path) -> Result<bool> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))
    };
    serving.set_pem(&read(cert)?, &read(key)?)
}

/// Re-reads the webhook's certificate files every `every` until the task
/// is dropped: a renewed pair (cert-manager's, a rotated mount) is served
/// without a restart; one that does not load is logged (never its
/// content) and the previous pair stays.
pub async fn reload_files(serving: Arc<ServingCert>, cert: PathBuf, key: PathBuf, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match load_files(&serving, &cert, &key) {
            Ok(true) => tracing::info!(cert = %cert.display(), "webhook certificate reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate files; keeping the one served")
            }
        }
    }
}

/// The TLS server configuration of the webhook, resolving through `cert`.
pub fn server_config(cert: Arc<ServingCert>) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert))
}

/// Reads (and, leading and managing, writes) the webhook's certificate Secret.
pub struct CertManager {
    secrets: Api<Secret>,
    configs: Api<MutatingWebhookConfiguration>,
    config: CertSecretConfig,
    serving: Arc<ServingCert>,
}

/// The four PEM values of the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Material {
    ca_bundle: String,
    ca_key: String,
    cert: String,
    key: String,
}

/// Why the leader writes the Secret (logged; never its content).
#[derive(Debug, PartialEq, Eq)]
enum Renewal {
    Keep,
    NewCa(&'static str),
    NewCert(&'static str),
}

impl CertManager {
    pub fn new(client: Client, config: CertSecretConfig, serving: Arc<ServingCert>) -> CertManager {
        CertManager {
            secrets: Api::namespaced(client.clone(), &config.namespace),
            configs: Api::all(client),
            config,
            serving,
        }
    }

    /// Checks every `check_every` (sooner while nothing is loaded, and at
    /// once when this replica becomes the leader) until the task is dropped.
    pub async fn run(self, mut leading: watch::Receiver<bool>) {
        loop {
            let lead = *leading.borrow_and_update();
            if let Err(e) = self.tick(lead).await {
                tracing::warn!(secret = %self.config.name, namespace = %self.config.namespace, error = %e, "webhook certificate");
            }
            let wait = if self.serving.is_loaded() {
                self.config.check_every
            } else {
                self.config.check_every.min(RETRY_UNLOADED)
            };
            tokio::select! {
                changed = leading.changed() => {
                    if changed.is_err() {
                        // The operator is gone; keep serving what we have.
                        tokio::time::sleep(wait).await;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass: the leader of a managed setup ensures the Secret and the
    /// caBundle; every replica then serves what the Secret holds.
    pub async fn tick(&self, leading: bool) -> Result<()> {
        let secret = self.secrets.get_opt(&self.config.name).await?;
        let secret = match (&self.config.manage, leading) {
            (Some(manage), true) => Some(self.ensure(manage, secret).await?),
            _ => secret,
        };
        let Some(secret) = secret else {
            return Err(self.secret_error("not found (yet)"));
        };
        let data = secret.data.unwrap_or_default();
        let (Some(cert), Some(key)) = (text(&data, TLS_CRT), text(&data, TLS_KEY)) else {
            return Err(self.secret_error("has no tls.crt / tls.key (yet)"));
        };
        if self.serving.set_pem(&cert, &key)? {
            tracing::info!(secret = %self.config.name, "serving the webhook certificate from the Secret");
        }
        Ok(())
    }

    fn secret_error(&self, reason: &str) -> Error {
        Error::Secret {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            reason: reason.into(),
        }
    }

    /// Creates or renews the Secret as needed and publishes its CA bundle;
    /// returns the Secret as it is now.
    async fn ensure(&self, manage: &ManagedCerts, existing: Option<Secret>) -> Result<Secret> {
        let now = OffsetDateTime::now_utc();
        let names = dns_names(manage, &self.config.namespace);
        let current = existing.as_ref().map(|s| {
            let data = s.data.clone().unwrap_or_default();
            Material {
                ca_bundle: text(&data, CA_CRT).unwrap_or_default(),
                ca_key: text(&data, CA_KEY).unwrap_or_default(),
                cert: text(&data, TLS_CRT).unwrap_or_default(),
                key: text(&data, TLS_KEY).unwrap_or_default(),
            }
        });
        let (material, renewal) = match &current {
            None => (
                issue(manage, &names, None, "", now)?,
                Renewal::NewCa("no Secret"),
            ),
            Some(m) => match plan(m, &names, now) {
                Renewal::Keep => (m.clone(), Renewal::Keep),
                Renewal::NewCert(why) => (
                    issue(manage, &names, Some(m), &m.ca_bundle, now)?,
                    Renewal::NewCert(why),
                ),
                Renewal::NewCa(why) => (
                    issue(manage, &names, None, &m.ca_bundle, now)?,
                    Renewal::NewCa(why),
                ),
            },
        };
        // The apiserver must trust a certificate before any replica serves it.
        self.publish_ca_bundle(&manage.webhook_configuration, &material.ca_bundle)
            .await?;
        let Some(mut secret) = existing else {
            let secret = secret_object(&self.config.name, &material);
            tracing::info!(secret = %self.config.name, "created the webhook CA and serving certificate");
            return match self.secrets.create(&PostParams::default(), &secret).await {
                Ok(s) => Ok(s),
                // Another writer (a previous leader) was first: use its Secret.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    Ok(self.secrets.get(&self.config.name).await?)
                }
                Err(e) => Err(e.into()),
            };
        };
        if renewal == Renewal::Keep {
            return Ok(secret);
        }
        tracing::info!(secret = %self.config.name, reason = ?renewal, "renewing the webhook certificate");
        // Keeps the read resourceVersion: a concurrent writer makes this a 409, retried next tick.
        secret.data = secret_object(&self.config.name, &material).data;
        secret.type_ = Some("kubernetes.io/tls".into());
        Ok(self
            .secrets
            .replace(&self.config.name, &PostParams::default(), &secret)
            .await?)
    }

    /// Sets `caBundle` on every webhook of the configuration (server-side
    /// apply); nothing when it is already there or the configuration is
    /// not installed yet.
    async fn publish_ca_bundle(&self, name: &str, bundle: &str) -> Result<()> {
        let Some(config) = self.configs.get_opt(name).await? else {
            tracing::warn!(configuration = %name, "MutatingWebhookConfiguration not found; caBundle not published yet");
            return Ok(());
        };
        let webhooks = config.webhooks.unwrap_or_default();
        let current = webhooks.iter().all(|w| {
            w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(bundle.as_bytes())
        });
        if current {
            return Ok(());
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle.as_bytes());
        let patch = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": webhooks.iter().map(|w| json!({
                "name": w.name,
                "clientConfig": {"caBundle": encoded},
            })).collect::<Vec<_>>(),
        });
        self.configs
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        tracing::info!(configuration = %name, "published the webhook caBundle");
        Ok(())
    }
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|s| !s.trim().is_empty())
}

const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY: &str = "argon-operator";

fn managed_by_operator(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY)
}

fn secret_object(name: &str, m: &Material) -> Secret {
    let data = [
        (TLS_CRT, &m.cert),
        (TLS_KEY, &m.key),
        (CA_CRT, &m.ca_bundle),
        (CA_KEY, &m.ca_key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                LABEL_MANAGED_BY.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The names the serving certificate must hold.
pub fn dns_names(manage: &ManagedCerts, namespace: &str) -> Vec<String> {
    let mut names = vec![
        format!("{}.{namespace}.svc", manage.service),
        format!("{}.{namespace}.svc.cluster.local", manage.service),
    ];
    names.extend(manage.extra_names.iter().cloned());
    names
}

/// The DER blocks of a PEM text (unparseable blocks are dropped).
fn pem_ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(|c| c.ok())
        .collect()
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Validity of a DER certificate as unix seconds (not before, not after).
fn validity_of(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Less than a third of the lifetime left (or not yet valid, or expired).
fn due(der: &[u8], now: OffsetDateTime) -> bool {
    let Some((start, end)) = validity_of(der) else {
        return true;
    };
    let now = now.unix_timestamp();
    let lifetime = end.saturating_sub(start).max(1);
    now < start || end.saturating_sub(now).saturating_mul(3) < lifetime
}

/// Why the CA of `m` cannot sign (missing, broken, key mismatch, near expiry).
fn ca_problem(m: &Material, now: OffsetDateTime) -> Option<&'static str> {
    let Some(ca) = pem_ders(&m.ca_bundle).into_iter().next() else {
        return Some("no CA certificate");
    };
    let Ok(ca_key) = KeyPair::from_pem(&m.ca_key) else {
        return Some("no CA key");
    };
    let Ok((_, ca_cert)) = x509_parser::parse_x509_certificate(&ca) else {
        return Some("unparseable CA certificate");
    };
    if ca_cert.public_key().raw != ca_key.subject_public_key_info().as_slice() {
        return Some("CA key does not match the CA certificate");
    }
    if due(&ca, now) {
        return Some("CA near expiry");
    }
    None
}

/// What the Secret needs: nothing, a new serving certificate, or a new CA (and certificate).
fn plan(m: &Material, names: &[String], now: OffsetDateTime) -> Renewal {
    if let Some(why) = ca_problem(m, now) {
        return Renewal::NewCa(why);
    }
    let Some(ca) = pem_ders(&m.ca_bundle).into_iter().next() else {
        return Renewal::NewCa("no CA certificate");
    };
    let Ok((_, ca_cert)) = x509_parser::parse_x509_certificate(&ca) else {
        return Renewal::NewCa("unparseable CA certificate");
    };
    let Some(leaf) = pem_ders(&m.cert).into_iter().next() else {
        return Renewal::NewCert("no serving certificate");
    };
    let Ok((_, leaf_cert)) = x509_parser::parse_x509_certificate(&leaf) else {
        return Renewal::NewCert("unparseable serving certificate");
    };
    if leaf_cert
        .verify_signature(Some(ca_cert.public_key()))
        .is_err()
    {
        return Renewal::NewCert("serving certificate not signed by the CA");
    }
    match KeyPair::from_pem(&m.key) {
        Ok(key) if leaf_cert.public_key().raw == key.subject_public_key_info().as_slice() => {}
        _ => return Renewal::NewCert("serving key does not match its certificate"),
    }
    let mut held: Vec<String> = leaf_cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(*ip)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut wanted = names.to_vec();
    held.sort();
    wanted.sort();
    if held != wanted {
        return Renewal::NewCert("names changed");
    }
    if due(&leaf, now) {
        return Renewal::NewCert("a third of its lifetime left");
    }
    Renewal::Keep
}

fn not_before(now: OffsetDateTime, validity: Duration) -> OffsetDateTime {
    // A little backdating tolerates clocks behind ours, never a large share of the lifetime.
    now - (validity / 10).min(Duration::from_secs(60))
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::Tls(format!("issuing a certificate: {e}"))
}

/// A new self-signed CA (PEM bundle, PEM key); `old_bundle`'s unexpired
/// CAs stay in the bundle behind it, so what they signed stays trusted.
fn new_ca(old_bundle: &str, validity: Duration, now: OffsetDateTime) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before(now, validity);
    params.not_after = now + validity;
    let ca = params.self_signed(&key).map_err(rcgen_error)?;
    let mut bundle = ca.pem();
    for old in pem_ders(old_bundle) {
        if validity_of(&old).is_some_and(|(_, end)| end > now.unix_timestamp()) {
            bundle.push_str(&pem_encode(&old));
        }
    }
    Ok((bundle, key.serialize_pem()))
}

/// A serving certificate for `names` signed by the first CA of `ca_bundle`
/// (PEM certificate, PEM key).
fn issue_leaf(
    ca_bundle: &str,
    ca_key: &str,
    names: &[String],
    validity: Duration,
    now: OffsetDateTime,
) -> Result<(String, String)> {
    let signing_key = KeyPair::from_pem(ca_key).map_err(rcgen_error)?;
    let ca_pem = pem_ders(ca_bundle)
        .into_iter()
        .next()
        .map(|d| pem_encode(&d))
        .ok_or_else(|| Error::Tls("the CA bundle holds no certificate".into()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, signing_key).map_err(rcgen_error)?;
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(rcgen_error)?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before(now, validity);
    params.not_after = now + validity;
    let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a serving certificate, with the CA of `keep_ca` or a new CA
/// (then `old_bundle`'s unexpired CAs stay in the bundle behind it).
fn issue(
    manage: &ManagedCerts,
    names: &[String],
    keep_ca: Option<&Material>,
    old_bundle: &str,
    now: OffsetDateTime,
) -> Result<Material> {
    let (ca_bundle, ca_key) = match keep_ca {
        Some(m) => (m.ca_bundle.clone(), m.ca_key.clone()),
        None => new_ca(old_bundle, manage.ca_validity, now)?,
    };
    let (cert, key) = issue_leaf(&ca_bundle, &ca_key, names, manage.cert_validity, now)?;
    Ok(Material {
        ca_bundle,
        ca_key,
        cert,
        key,
    })
}

/// The installation's CA as its Secret holds it: `ca.crt` (the signing CA
/// first, older unexpired CAs after it) and `ca.key`.
#[derive(Clone)]
pub struct Ca {
    pub bundle: String,
    key: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A serving pair and the CA bundle that verifies it, as an endpoint's
/// `kubernetes.io/tls` Secret holds them (`tls.crt`, `tls.key`, `ca.crt`).
#[derive(Clone, PartialEq, Eq)]
pub struct ServingPair {
    pub cert: String,
    pub key: String,
    pub ca_bundle: String,
}

impl std::fmt::Debug for ServingPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingPair").finish_non_exhaustive()
    }
}

impl ServingPair {
    /// The pair a `kubernetes.io/tls` Secret holds (empty values when absent).
    pub fn from_secret(secret: &Secret) -> ServingPair {
        let data = secret.data.clone().unwrap_or_default();
        ServingPair {
            cert: text(&data, TLS_CRT).unwrap_or_default(),
            key: text(&data, TLS_KEY).unwrap_or_default(),
            ca_bundle: text(&data, CA_CRT).unwrap_or_default(),
        }
    }
}

/// The pair to serve for `names`: `current` when it is signed by `ca`, holds
/// exactly `names` and has more than a third of its lifetime left; a new
/// one otherwise, with the reason (for the log: never the material).
pub fn serving_pair(
    ca: &Ca,
    current: Option<&ServingPair>,
    names: &[String],
    validity: Duration,
    now: OffsetDateTime,
) -> Result<(ServingPair, Option<&'static str>)> {
    let material = Material {
        ca_bundle: ca.bundle.clone(),
        ca_key: ca.key.clone(),
        cert: current.map(|c| c.cert.clone()).unwrap_or_default(),
        key: current.map(|c| c.key.clone()).unwrap_or_default(),
    };
    let why = match plan(&material, names, now) {
        Renewal::Keep => match current {
            // The bundle may have gained or lost a CA since.
            Some(c) if c.ca_bundle == ca.bundle => return Ok((c.clone(), None)),
            Some(c) => {
                let pair = ServingPair {
                    ca_bundle: ca.bundle.clone(),
                    ..c.clone()
                };
                return Ok((pair, Some("the CA bundle changed")));
            }
            None => "no serving certificate",
        },
        Renewal::NewCert(why) => why,
        Renewal::NewCa(why) => return Err(Error::Tls(format!("the CA cannot sign: {why}"))),
    };
    let (cert, key) = issue_leaf(&ca.bundle, &ca.key, names, validity, now)?;
    Ok((
        ServingPair {
            cert,
            key,
            ca_bundle: ca.bundle.clone(),
        },
        Some(why),
    ))
}

/// The installation's CA from its Secret (`ca.crt`, `ca.key`) in the
/// operator's namespace, made when missing and replaced near its expiry
/// (the old CA stays in the bundle until it expires). The webhook's
/// [`CertManager`] keeps its serving certificate in the same Secret when it
/// manages it: whichever writer finds no usable CA makes one, and the other
/// signs with it (a lost race is a 409, retried by the caller's next pass).
pub async fn ensure_ca(secrets: &Api<Secret>, name: &str, validity: Duration) -> Result<Ca> {
    let now = OffsetDateTime::now_utc();
    let existing = secrets.get_opt(name).await?;
    let current = existing.as_ref().map(|s| {
        let data = s.data.clone().unwrap_or_default();
        Material {
            ca_bundle: text(&data, CA_CRT).unwrap_or_default(),
            ca_key: text(&data, CA_KEY).unwrap_or_default(),
            cert: text(&data, TLS_CRT).unwrap_or_default(),
            key: text(&data, TLS_KEY).unwrap_or_default(),
        }
    });
    let why = match &current {
        Some(m) => match ca_problem(m, now) {
            None => {
                return Ok(Ca {
                    bundle: m.ca_bundle.clone(),
                    key: m.ca_key.clone(),
                });
            }
            Some(why) => why,
        },
        None => "no Secret",
    };
    let old_bundle = current.as_ref().map(|m| m.ca_bundle.as_str()).unwrap_or("");
    let (bundle, key) = new_ca(old_bundle, validity, now)?;
    let material = Material {
        ca_bundle: bundle.clone(),
        ca_key: key.clone(),
        cert: current.as_ref().map(|m| m.cert.clone()).unwrap_or_default(),
        key: current.as_ref().map(|m| m.key.clone()).unwrap_or_default(),
    };
    tracing::info!(secret = %name, reason = why, "writing a new CA");
    match existing {
        None => match secrets
            .create(&PostParams::default(), &secret_object(name, &material))
            .await
        {
            Ok(_) => {}
            // Another writer was first: sign with its CA from the next pass on.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Err(Error::Tls(format!(
                    "the CA Secret {name} was created concurrently; retrying"
                )));
            }
            Err(e) => return Err(e.into()),
        },
        Some(secret) if !managed_by_operator(&secret) => {
            // Never overwrite a Secret someone else writes (cert-manager's).
            return Err(Error::Tls(format!(
                "the CA Secret {name} holds no usable CA ({why}) and is not the operator's to replace"
            )));
        }
        Some(mut secret) => {
            // Keeps the read resourceVersion: a concurrent writer makes this a 409.
            secret.data = secret_object(name, &material).data;
            secret.type_ = Some("kubernetes.io/tls".into());
            secrets
                .replace(name, &PostParams::default(), &secret)
                .await?;
        }
    }
    Ok(Ca { bundle, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manage(cert_validity: Duration) -> ManagedCerts {
        ManagedCerts {
            service: "argon-operator-webhook".into(),
            extra_names: vec!["127.0.0.1".into()],
            webhook_configuration: "argon-operator-inject".into(),
            ca_validity: Duration::from_secs(3600),
            cert_validity,
        }
    }

    #[test]
    fn a_fresh_issue_is_kept_until_a_third_of_its_lifetime_is_left() -> Result<()> {
        let m = manage(Duration::from_secs(300));
        let names = dns_names(&m, "argon-system");
        let now = OffsetDateTime::now_utc();
        let material = issue(&m, &names, None, "", now)?;
        assert_eq!(plan(&material, &names, now), Renewal::Keep);
        assert_eq!(
            plan(&material, &names, now + Duration::from_secs(250)),
            Renewal::NewCert("a third of its lifetime left")
        );
        let other = dns_names(&manage(Duration::from_secs(300)), "elsewhere");
        assert_eq!(
            plan(&material, &other, now),
            Renewal::NewCert("names changed")
        );
        // Renewal keeps the CA; the new certificate verifies against it.
        let renewed = issue(&m, &names, Some(&material), &material.ca_bundle, now)?;
        assert_eq!(renewed.ca_bundle, material.ca_bundle);
        assert_ne!(renewed.cert, material.cert);
        assert_eq!(plan(&renewed, &names, now), Renewal::Keep);
        // A CA near its end is replaced; the old one stays in the bundle.
        let later = now + Duration::from_secs(3000);
        assert_eq!(
            plan(&material, &names, later),
            Renewal::NewCa("CA near expiry")
        );
        let rotated = issue(&m, &names, None, &material.ca_bundle, later)?;
        assert_eq!(pem_ders(&rotated.ca_bundle).len(), 2);
        assert!(rotated.ca_bundle.ends_with(&material.ca_bundle));
        // Garbage in the Secret means a new CA, never a panic.
        let broken = Material {
            ca_bundle: "not pem".into(),
            ..material.clone()
        };
        assert_eq!(
            plan(&broken, &names, now),
            Renewal::NewCa("no CA certificate")
        );
        Ok(())
    }

    #[test]
    fn endpoint_pairs_follow_the_ca_and_a_broken_ca_is_an_error() -> Result<()> {
        let now = OffsetDateTime::now_utc();
        let (bundle, key) = new_ca("", Duration::from_secs(3600), now)?;
        let ca = Ca { bundle, key };
        let names = vec!["abr-x".to_string(), "abr-x.ns.svc".to_string()];
        let validity = Duration::from_secs(300);
        let (first, why) = serving_pair(&ca, None, &names, validity, now)?;
        assert_eq!(why, Some("no serving certificate"));
        let (same, why) = serving_pair(&ca, Some(&first), &names, validity, now)?;
        assert_eq!((same == first, why), (true, None));
        let later = now + Duration::from_secs(250);
        let (renewed, why) = serving_pair(&ca, Some(&first), &names, validity, later)?;
        assert_eq!(why, Some("a third of its lifetime left"));
        assert_ne!(renewed.cert, first.cert);
        // A rotated CA (old one kept behind it): re-issued by the new one.
        let (bundle, key) = new_ca(&ca.bundle, Duration::from_secs(3600), now)?;
        let rotated = Ca { bundle, key };
        let (next, why) = serving_pair(&rotated, Some(&first), &names, validity, now)?;
        assert_eq!(why, Some("serving certificate not signed by the CA"));
        assert_eq!(next.ca_bundle, rotated.bundle);
        assert_eq!(pem_ders(&next.ca_bundle).len(), 2);
        // Garbage for a CA is an error naming why, never a panic.
        let broken = Ca {
            bundle: "not pem".into(),
            key: ca.key.clone(),
        };
        let err = serving_pair(&broken, Some(&first), &names, validity, now)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no CA certificate"), "{err}");
        Ok(())
    }

    #[test]
    fn the_serving_cert_swaps_and_refuses_a_mismatched_key() -> Result<()> {
        let m = manage(Duration::from_secs(300));
        let names = dns_names(&m, "ns");
        let now = OffsetDateTime::now_utc();
        let a = issue(&m, &names, None, "", now)?;
        let b = issue(&m, &names, Some(&a), &a.ca_bundle, now)?;
        let store = ServingCert::from_pem(&a.cert, &a.key)?;
        assert!(!store.set_pem(&a.cert, &a.key)?);
        assert!(store.set_pem(&b.cert, &b.key)?);
        assert!(store.set_pem(&a.cert, &b.key).is_err());
        assert_eq!(store.current_der(), pem_ders(&b.cert).into_iter().next());
        Ok(())
    }
}
