//! Sockudo's `ssl` block: TLS on the server port (`wss://` and `https://`), and optionally a
//! second, plain port that sends everyone to it. The files are read when the server starts
//! (and again on reload), where an unreadable or mismatched one stops start-up naming its key.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{lenient, ConfigError};

/// The `ssl` block as written.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawSsl {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    pub cert_path: Option<String>,
    pub key_path: Option<String>,
    pub passphrase: Option<String>,
    pub ca_path: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub redirect_http: Option<bool>,
    #[serde(deserialize_with = "lenient::opt")]
    pub http_port: Option<u16>,
    #[serde(deserialize_with = "lenient::opt")]
    pub reload_interval_s: Option<u64>,
}

/// TLS on the server port.
#[derive(Clone)]
pub struct TlsConfig {
    /// `ssl.cert_path`: the PEM chain, leaf first.
    pub cert_path: PathBuf,
    /// `ssl.key_path`: the PEM private key (PKCS#8, RSA or EC; encrypted PKCS#8 with a
    /// passphrase).
    pub key_path: PathBuf,
    /// `ssl.passphrase`, for an encrypted PKCS#8 key.
    pub passphrase: Option<String>,
    /// `ssl.ca_path`: intermediates appended to the served chain.
    pub ca_path: Option<PathBuf>,
    /// `ssl.http_port` when `ssl.redirect_http` is on: a plain port that sends clients to TLS.
    pub redirect_port: Option<u16>,
    /// How often the files are checked for new content (Herald's `ssl.reload_interval_s`).
    pub reload_interval: Duration,
}

impl std::fmt::Debug for TlsConfig {
    /// Never shows the passphrase.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .field("ca_path", &self.ca_path)
            .field("redirect_port", &self.redirect_port)
            .field("reload_interval", &self.reload_interval)
            .finish()
    }
}

/// The `ssl` block; `None` when it is absent or not enabled.
pub(super) fn tls(raw: Option<&RawSsl>) -> Result<Option<TlsConfig>, ConfigError> {
    let Some(raw) = raw.filter(|raw| raw.enabled == Some(true)) else {
        return Ok(None);
    };
    let path = |key: &str, value: &Option<String>| match value.as_deref().map(str::trim) {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(ConfigError::invalid(
            &format!("ssl.{key}"),
            "is required when ssl.enabled is true",
        )),
    };
    let redirect_port = match (raw.redirect_http.unwrap_or(false), raw.http_port) {
        (true, Some(port)) => Some(port),
        (true, None) => {
            return Err(ConfigError::invalid(
                "ssl.http_port",
                "is required when ssl.redirect_http is true",
            ))
        }
        (false, _) => None,
    };
    let reload_interval = match raw.reload_interval_s {
        Some(0) => {
            return Err(ConfigError::invalid(
                "ssl.reload_interval_s",
                "must be at least 1",
            ))
        }
        other => Duration::from_secs(other.unwrap_or(60)),
    };
    Ok(Some(TlsConfig {
        cert_path: path("cert_path", &raw.cert_path)?,
        key_path: path("key_path", &raw.key_path)?,
        passphrase: raw.passphrase.clone().filter(|p| !p.is_empty()),
        ca_path: raw
            .ca_path
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from),
        redirect_port,
        reload_interval,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enabled_block_needs_its_files_and_a_disabled_one_asks_nothing() {
        assert!(tls(None).unwrap().is_none());
        let off = RawSsl {
            enabled: Some(false),
            ..RawSsl::default()
        };
        assert!(tls(Some(&off)).unwrap().is_none());
        let on = RawSsl {
            enabled: Some(true),
            cert_path: Some("/c.pem".into()),
            ..RawSsl::default()
        };
        assert_eq!(tls(Some(&on)).unwrap_err().path, "ssl.key_path");
        let redirect = RawSsl {
            enabled: Some(true),
            cert_path: Some("/c.pem".into()),
            key_path: Some("/k.pem".into()),
            redirect_http: Some(true),
            passphrase: Some("secret".into()),
            ..RawSsl::default()
        };
        assert_eq!(tls(Some(&redirect)).unwrap_err().path, "ssl.http_port");
        let config = tls(Some(&RawSsl {
            http_port: Some(8080),
            ..redirect
        }))
        .unwrap()
        .unwrap();
        assert_eq!(config.redirect_port, Some(8080));
        assert!(!format!("{config:?}").contains("secret"));
    }
}
