//! TLS for the tests: a private CA and server certificates made with the `openssl` command
//! (every kind of key Herald reads), and clients that trust that CA: a WebSocket over
//! tokio-rustls and a reqwest client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;

use crate::support::WAIT;

/// A directory of certificates, removed when dropped.
pub struct Certs {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Certs {
    /// A CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost signed by it
    /// (`server.pem`, key `server.key` in PKCS#8).
    pub fn make(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("herald-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Certs { dir };
        openssl(
            &certs.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Herald test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        );
        certs.server("server", "ec");
        certs
    }

    /// A server certificate `{name}.pem` with its key `{name}.key` (`kind`: `rsa` or `ec`,
    /// PKCS#8), signed by the CA.
    pub fn server(&self, name: &str, kind: &str) {
        let key = format!("{name}.key");
        match kind {
            "rsa" => openssl(
                &self.dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &key,
                ],
            ),
            _ => openssl(
                &self.dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &key,
                ],
            ),
        }
        let csr = format!("{name}.csr");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }

    /// `from` (a PKCS#8 key) encrypted with `passphrase` into `to`, as `openssl pkcs8 -topk8`
    /// writes it.
    pub fn encrypt_key(&self, from: &str, to: &str, passphrase: &str) {
        let pass = format!("pass:{passphrase}");
        let args = [
            "pkcs8",
            "-topk8",
            "-in",
            from,
            "-v2",
            "aes-256-cbc",
            "-passout",
            &pass,
            "-out",
            to,
        ];
        openssl(&self.dir, &args);
    }

    /// Runs `openssl` with `args` in the directory (to make other kinds of keys).
    pub fn openssl(&self, args: &[&str]) {
        openssl(&self.dir, args);
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// An `ssl` block serving `{name}.pem` with `{name}.key`, plus `extra` keys.
    pub fn ssl(&self, name: &str, extra: Value) -> Value {
        let mut ssl = json!({
            "enabled": true,
            "cert_path": self.path(&format!("{name}.pem")),
            "key_path": self.path(&format!("{name}.key")),
        });
        for (key, value) in extra.as_object().into_iter().flatten() {
            ssl[key] = value.clone();
        }
        ssl
    }

    /// A TLS client configuration that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let ca = std::fs::read(self.dir.join("ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(&ca) {
            roots.add(cert).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A reqwest client that trusts this CA (and follows no redirect).
    pub fn https_client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.dir.join("ca.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WAIT)
            .build()
            .unwrap()
    }

    /// A TLS connection to `port` on 127.0.0.1, and the certificate the server presented.
    pub async fn connect(&self, port: u16) -> (TlsStream<TcpStream>, CertificateDer<'static>) {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let connector = TlsConnector::from(self.client_config());
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("TLS handshake");
        let presented = tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned();
        (tls, presented)
    }

    /// A WebSocket over TLS to `/app/{key}` on `port`.
    pub async fn websocket(&self, port: u16, key: &str) -> WebSocketStream<TlsStream<TcpStream>> {
        let (tls, _) = self.connect(port).await;
        let url = format!("wss://127.0.0.1:{port}/app/{key}?protocol=7&client=js&version=8.4.0");
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tls))
            .await
            .expect("upgrade in time")
            .expect("WebSocket upgrade over TLS");
        ws
    }
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
