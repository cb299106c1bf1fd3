//! TLS on the server port: the certificate chain and key of `ssl.*` read into a rustls
//! certificate (the `ring` provider, no OpenSSL), a resolver that serves the newest good one,
//! and its reload on SIGHUP or when the files' content changes (checked every
//! `ssl.reload_interval_s`, by hash, so certbot's and Kubernetes' symlink swaps count). A bad
//! new pair is logged and refused; the old one keeps serving, and open sockets are untouched.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// Why a certificate or key could not be used, naming the key and the file.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {file}: {why}")]
pub struct TlsError {
    key: &'static str,
    file: String,
    why: String,
}

fn error(key: &'static str, file: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError {
        key,
        file: file.display().to_string(),
        why: why.to_string(),
    }
}

/// The certificate the server presents, replaced whole on a good reload.
#[derive(Debug)]
pub struct ServerCertificate {
    config: TlsConfig,
    current: RwLock<Arc<CertifiedKey>>,
    /// The hash of the files `current` was read from.
    digest: Mutex<[u8; 32]>,
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl ServerCertificate {
    /// Reads the files of `config`; an error names the key and the file.
    pub fn load(config: &TlsConfig) -> Result<Arc<ServerCertificate>, TlsError> {
        let (key, digest) = read(config)?;
        Ok(Arc::new(ServerCertificate {
            config: config.clone(),
            current: RwLock::new(Arc::new(key)),
            digest: Mutex::new(digest),
        }))
    }

    /// Reads the files again if their content changed; a bad pair keeps the old one.
    pub fn reload(&self, why: &str) {
        let digest = match files_digest(&self.config) {
            Ok(digest) => digest,
            Err(e) => {
                return tracing::error!(error = %e, "TLS certificate not reloaded ({why}); the old one keeps serving")
            }
        };
        if *self.digest.lock().unwrap_or_else(|e| e.into_inner()) == digest {
            return;
        }
        match read(&self.config) {
            Ok((key, digest)) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                *self.digest.lock().unwrap_or_else(|e| e.into_inner()) = digest;
                tracing::info!("TLS certificate reloaded ({why}); new handshakes use it");
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded ({why}); the old one keeps serving")
            }
        }
    }

    /// A rustls server configuration presenting this certificate (HTTP/1.1 only).
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Reloads on SIGHUP and every `ssl.reload_interval_s` until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.reload_interval);
        interval.tick().await;
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hungup = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hungup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = interval.tick() => self.reload("the files changed"),
                _ = hungup => self.reload("SIGHUP"),
            }
        }
    }
}

/// The hash of the certificate, key and CA files' content.
fn files_digest(config: &TlsConfig) -> Result<[u8; 32], TlsError> {
    let mut hash = Sha256::new();
    let files = [
        ("ssl.cert_path", Some(&config.cert_path)),
        ("ssl.key_path", Some(&config.key_path)),
        ("ssl.ca_path", config.ca_path.as_ref()),
    ];
    for (key, path) in files {
        if let Some(path) = path {
            let bytes = std::fs::read(path).map_err(|e| error(key, path, e))?;
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(&bytes);
        }
    }
    Ok(hash.finalize().into())
}

/// The certificate of `config`, checked against its key, and the hash of its files.
fn read(config: &TlsConfig) -> Result<(CertifiedKey, [u8; 32]), TlsError> {
    let digest = files_digest(config)?;
    let mut chain = certificates("ssl.cert_path", &config.cert_path)?;
    if let Some(ca) = &config.ca_path {
        chain.extend(certificates("ssl.ca_path", ca)?);
    }
    let key = private_key(&config.key_path, config.passphrase.as_deref())?;
    let provider: CryptoProvider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        error(
            "ssl.key_path",
            &config.key_path,
            format!("does not match ssl.cert_path: {e}"),
        )
    })?;
    Ok((certified, digest))
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| error(key, path, e))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(key, path, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(error(key, path, "holds no PEM certificate"));
    }
    Ok(chain)
}

/// The key: PKCS#8, RSA (PKCS#1) or EC (SEC1) PEM, or an encrypted PKCS#8 PEM with a
/// passphrase. A legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED`) is refused with the command
/// that converts it.
fn private_key(path: &Path, passphrase: Option<&str>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key = "ssl.key_path";
    let pem = std::fs::read_to_string(path).map_err(|e| error(key, path, e))?;
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(error(
            key,
            path,
            "a legacy encrypted PEM key cannot be read; convert it with `openssl pkcs8 -topk8 -in OLD.key -out NEW.key` (and keep ssl.passphrase) or drop the passphrase",
        ));
    }
    if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        let Some(passphrase) = passphrase else {
            return Err(error(key, path, "is encrypted: set ssl.passphrase"));
        };
        return decrypt_pkcs8(path, &pem, passphrase);
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        error(
            key,
            path,
            format!("not a PEM private key (PKCS#8, RSA or EC): {e}"),
        )
    })
}

fn decrypt_pkcs8(
    path: &Path,
    pem: &str,
    passphrase: &str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key = "ssl.key_path";
    let (_, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| error(key, path, format!("not a PEM key: {e}")))?;
    let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
        .map_err(|e| error(key, path, format!("not an encrypted PKCS#8 key: {e}")))?;
    let document = encrypted
        .decrypt(passphrase)
        .map_err(|_| error(key, path, "cannot be decrypted with ssl.passphrase"))?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        document.as_bytes().to_vec(),
    )))
}
