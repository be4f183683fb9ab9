//! The certificate `/metrics` is served with. As controller-runtime: a
//! certificate and key from files when given (e.g. a cert-manager Secret
//! mounted in the pod, re-read when it changes), otherwise a self-signed one
//! made at start-up, so a scraper's bearer token never crosses the network in clear.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// How often mounted certificate files are checked for a renewal (a Secret
/// volume update takes about a minute to reach the pod anyway).
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// Names in the self-signed certificate; scrapers skip verification of it
/// (`insecureSkipVerify`) or are given a real certificate instead.
const SELF_SIGNED_NAMES: [&str; 2] = ["localhost", "keyrotor-metrics"];

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// Made at start-up, kept in memory only.
    SelfSigned,
    /// PEM files: the certificate chain and its private key.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

/// Why no TLS configuration could be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read or holds no PEM certificate/key.
    #[error("cannot read {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    /// rustls refused the key or the key does not match the certificate.
    #[error("the metrics certificate or key is not usable: {0}")]
    Rustls(#[from] rustls::Error),
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
}

/// The server configuration; with files, a task re-reads them every
/// [`RELOAD_EVERY`] and serves the new pair from the next handshake on.
pub fn server_config(source: &CertificateSource) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = match source {
        CertificateSource::SelfSigned => self_signed(&provider)?,
        CertificateSource::Files { cert, key } => from_files(cert, key, &provider)?,
    };
    let resolver = Arc::new(CurrentCertificate(RwLock::new(Arc::new(key))));
    if let CertificateSource::Files { cert, key } = source {
        tokio::spawn(reload_loop(
            resolver.clone(),
            cert.clone(),
            key.clone(),
            provider.clone(),
        ));
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn self_signed(provider: &CryptoProvider) -> Result<CertifiedKey, TlsSetupError> {
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|&n| n.to_owned()).collect();
    let made = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    Ok(CertifiedKey::from_der(
        vec![made.cert.der().clone()],
        key,
        provider,
    )?)
}

fn from_files(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let pem_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsSetupError::Pem { path, source }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(cert))?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate(cert.to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
    Ok(CertifiedKey::from_der(chain, private, provider)?)
}

/// Re-reads the files when their contents change; a broken pair (e.g. the
/// certificate written but not yet the key) is logged and the old one kept.
async fn reload_loop(
    current: Arc<CurrentCertificate>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
) {
    let read = |cert: &Path, key: &Path| (std::fs::read(cert).ok(), std::fs::read(key).ok());
    let mut seen = read(&cert, &key);
    let mut ticks = tokio::time::interval(RELOAD_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let now = read(&cert, &key);
        if now == seen {
            continue;
        }
        match from_files(&cert, &key, &provider) {
            Ok(fresh) => {
                *current.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
                seen = now;
                tracing::info!(cert = %cert.display(), "reloaded the metrics certificate");
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics certificate files changed but cannot be used yet; keeping the previous one");
            }
        }
    }
}

/// The certificate served now.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_without_any_file() {
        let provider = rustls::crypto::ring::default_provider();
        let key = self_signed(&provider).expect("self-signed");
        assert_eq!(key.cert.len(), 1);
        key.keys_match().expect("the key matches the certificate");
    }

    #[test]
    fn a_certificate_file_without_a_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("keyrotor-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let (cert, key, empty) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("empty"));
        std::fs::write(&cert, made.cert.pem()).expect("write");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("write");
        std::fs::write(&empty, "").expect("write");
        let provider = rustls::crypto::ring::default_provider();
        assert!(from_files(&cert, &key, &provider).is_ok());
        assert!(matches!(
            from_files(&empty, &key, &provider),
            Err(TlsSetupError::NoCertificate(_))
        ));
        assert!(from_files(&cert, &empty, &provider).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
