//! `--tls`, for any scenario (meaningful for fanout, channels, client-events and idle; the
//! hardening probes' raw TCP sockets stay plain and fail against a TLS port): at start
//! a private CA and a certificate for 127.0.0.1 are made with the `openssl` command in a temp
//! directory (removed at the end), every server config gets the `ssl` block, the WebSocket
//! clients connect over wss trusting only that CA (rustls with the ring provider) and the REST
//! publisher uses https with it. The clients' TLS work is the bench's own CPU, never counted as
//! the server's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use tokio_tungstenite::Connector;

/// The run's CA and server certificate, and the client side's rustls config.
struct Tls {
    dir: PathBuf,
    ca_pem: Vec<u8>,
    client: Arc<rustls::ClientConfig>,
}

static TLS: OnceLock<Tls> = OnceLock::new();
/// The cipher suite the first handshake negotiated.
static SUITE: OnceLock<String> = OnceLock::new();

/// Runs `openssl` in `dir` with the whitespace-separated `args`.
fn openssl(dir: &Path, args: &str) -> Result<(), String> {
    let output = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl (needed by --tls): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Makes the CA (P-256, `ca.pem`) and the server's certificate for IP 127.0.0.1 signed by it
/// (`server.pem`, its PKCS#8 key `server.key`) in `dir`.
fn make_certificates(dir: &Path) -> Result<(), String> {
    const P256: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc";
    openssl(
        dir,
        &format!(
            "req -x509 {P256} -keyout ca.key -out ca.pem -days 2 -subj /CN=herald-bench-CA \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    )?;
    openssl(
        dir,
        &format!("req -new {P256} -keyout server.key -out server.csr -subj /CN=127.0.0.1"),
    )?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(
        dir,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 2 -extfile server.ext",
    )
}

/// The client config: TLS 1.2 and 1.3 with the ring provider, trusting only `ca_pem`.
fn client_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| format!("ca.pem: {e}"))?)
            .map_err(|e| format!("ca.pem: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Turns TLS on for the whole run (once, from the command line).
pub fn enable() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("herald-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let made = make_certificates(&dir).and_then(|()| {
        let ca_pem = std::fs::read(dir.join("ca.pem")).map_err(|e| e.to_string())?;
        let client = Arc::new(client_config(&ca_pem)?);
        Ok((ca_pem, client))
    });
    match made {
        Ok((ca_pem, client)) => {
            let _ = TLS.set(Tls {
                dir,
                ca_pem,
                client,
            });
            Ok(())
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(error)
        }
    }
}

/// Removes the certificates' directory (at the end of the run).
pub fn cleanup() {
    if let Some(tls) = TLS.get() {
        let _ = std::fs::remove_dir_all(&tls.dir);
    }
}

pub fn enabled() -> bool {
    TLS.get().is_some()
}

/// `ws` or `wss`.
pub fn ws_scheme() -> &'static str {
    if enabled() {
        "wss"
    } else {
        "ws"
    }
}

/// `http` or `https`.
pub fn http_scheme() -> &'static str {
    if enabled() {
        "https"
    } else {
        "http"
    }
}

/// The `ssl` section of a server config, with `--tls` only.
pub fn section() -> Option<Value> {
    TLS.get().map(|tls| {
        json!({
            "enabled": true,
            "cert_path": tls.dir.join("server.pem"),
            "key_path": tls.dir.join("server.key"),
        })
    })
}

/// The WebSocket clients' connector, with `--tls` only.
pub fn connector() -> Option<Connector> {
    TLS.get().map(|tls| Connector::Rustls(tls.client.clone()))
}

/// Trusts the run's CA in a REST client, with `--tls` only.
pub fn trust(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    match TLS.get() {
        Some(tls) => builder.add_root_certificate(
            reqwest::Certificate::from_pem(&tls.ca_pem).expect("the run's CA certificate"),
        ),
        None => builder,
    }
}

/// Notes the cipher suite of a finished handshake (the first one only).
pub fn note_suite(suite: Option<rustls::SupportedCipherSuite>) {
    if let Some(suite) = suite {
        let _ = SUITE.get_or_init(|| format!("{:?}", suite.suite()));
    }
}

/// What the run used, for the printed header.
pub fn describe() -> String {
    match TLS.get() {
        None => "off".to_owned(),
        Some(tls) => format!(
            "on ({}; CA and certificate for 127.0.0.1 in {}, removed at the end)",
            SUITE.get().map_or("no handshake yet", String::as_str),
            tls.dir.display()
        ),
    }
}
