//! Sockudo's Sentinel keys in `database.redis`: `sentinels`, `name`, `sentinel_username`,
//! `sentinel_password`, `sentinel_tls`, `master_tls` (with `username`, `password`, `db` for the
//! primary). A non-empty `sentinels` list means the cluster asks the sentinels which server is
//! the primary, and asks again after any failure.

use std::fmt;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::{lenient, ConfigError};

/// One sentinel of `database.redis.sentinels`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawSentinel {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub host: Option<String>,
    #[serde(deserialize_with = "lenient::opt")]
    pub port: Option<u16>,
}

/// `database.redis.sentinel_tls` / `master_tls`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawRedisTls {
    #[serde(deserialize_with = "lenient::opt")]
    pub enabled: Option<bool>,
    #[serde(alias = "acceptInvalidCerts", deserialize_with = "lenient::opt")]
    pub accept_invalid_certs: Option<bool>,
    pub ca_path: Option<String>,
    pub client_cert_path: Option<String>,
    pub client_key_path: Option<String>,
}

/// How to reach a Sentinel-managed primary.
#[derive(Clone, PartialEq)]
pub struct SentinelConfig {
    /// Each sentinel's URL, in the order given (credentials and TLS included).
    pub sentinels: Vec<String>,
    /// The primary's name as the sentinels monitor it (`database.redis.name`).
    pub master_name: String,
    /// The primary's URL up to its address: scheme and credentials.
    master_prefix: String,
    /// What follows the address: the database, and `#insecure` when certificates are not
    /// checked.
    master_suffix: String,
}

impl SentinelConfig {
    /// The URL of the primary the sentinels named.
    pub fn primary_url(&self, host: &str, port: u16) -> String {
        let host = match host.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => format!("[{ip}]"),
            Err(_) => host.to_owned(),
        };
        format!("{}{host}:{port}{}", self.master_prefix, self.master_suffix)
    }
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sentinels: Vec<String> = self.sentinels.iter().map(|u| super::redacted(u)).collect();
        f.debug_struct("SentinelConfig")
            .field("sentinels", &sentinels)
            .field("master_name", &self.master_name)
            .finish()
    }
}

/// What Sentinel mode is built from (the fields of `database.redis` it reads).
pub(super) struct SentinelKeys<'a> {
    pub sentinels: &'a [RawSentinel],
    pub name: Option<&'a str>,
    pub sentinel_username: Option<&'a str>,
    pub sentinel_password: Option<&'a str>,
    pub sentinel_tls: &'a RawRedisTls,
    pub master_tls: &'a RawRedisTls,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub db: u32,
}

/// Sentinel mode, or `None` when `sentinels` is empty.
pub(super) fn sentinel_config(
    keys: &SentinelKeys<'_>,
) -> Result<Option<SentinelConfig>, ConfigError> {
    if keys.sentinels.is_empty() {
        return Ok(None);
    }
    let sentinel_tls = tls("database.redis.sentinel_tls", keys.sentinel_tls)?;
    let master_tls = tls("database.redis.master_tls", keys.master_tls)?;
    let sentinels = keys
        .sentinels
        .iter()
        .enumerate()
        .map(|(i, sentinel)| {
            let path = format!("database.redis.sentinels[{i}].host");
            let host = host(&path, sentinel.host.as_deref().unwrap_or("localhost"))?;
            let credentials = credentials(keys.sentinel_username, keys.sentinel_password);
            let port = sentinel.port.unwrap_or(26379);
            Ok(format!(
                "{}://{credentials}{host}:{port}{}",
                sentinel_tls.scheme(),
                sentinel_tls.fragment()
            ))
        })
        .collect::<Result<_, ConfigError>>()?;
    let master_name = keys.name.unwrap_or("mymaster").to_owned();
    if master_name.is_empty() {
        return Err(ConfigError::invalid(
            "database.redis.name",
            "must name the primary the sentinels monitor",
        ));
    }
    let credentials = credentials(keys.username, keys.password);
    Ok(Some(SentinelConfig {
        sentinels,
        master_name,
        master_prefix: format!("{}://{credentials}", master_tls.scheme()),
        master_suffix: format!("/{}{}", keys.db, master_tls.fragment()),
    }))
}

/// TLS for one hop: on, and whether certificates are checked.
#[derive(Clone, Copy)]
pub(super) struct Tls {
    enabled: bool,
    insecure: bool,
}

impl Tls {
    pub fn scheme(self) -> &'static str {
        match self.enabled {
            true => "rediss",
            false => "redis",
        }
    }

    /// Whether TLS is on.
    pub fn enabled(self) -> bool {
        self.enabled
    }

    /// Whether certificates go unchecked.
    pub fn insecure(self) -> bool {
        self.insecure
    }

    /// redis-rs's way to skip certificate checks: a URL fragment.
    pub fn fragment(self) -> &'static str {
        match self.enabled && self.insecure {
            true => "#insecure",
            false => "",
        }
    }
}

/// A TLS block; a CA or client certificate file is refused, not ignored: a connection that
/// cannot check the server as asked must not start.
pub(super) fn tls(path: &str, raw: &RawRedisTls) -> Result<Tls, ConfigError> {
    let enabled = raw.enabled.unwrap_or(false);
    for (key, value) in [
        ("ca_path", &raw.ca_path),
        ("client_cert_path", &raw.client_cert_path),
        ("client_key_path", &raw.client_key_path),
    ] {
        if enabled && value.is_some() {
            return Err(ConfigError::invalid(
                &format!("{path}.{key}"),
                "is not supported: Herald checks Redis's certificate against the system's trust store (add a private CA there), without client certificates",
            ));
        }
    }
    Ok(Tls {
        enabled,
        insecure: raw.accept_invalid_certs.unwrap_or(false),
    })
}

/// `user:password@`, percent-encoded, or nothing.
pub(super) fn credentials(username: Option<&str>, password: Option<&str>) -> String {
    let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    match (username, password) {
        (Some(user), Some(password)) => format!("{}:{}@", encode(user), encode(password)),
        (None, Some(password)) => format!(":{}@", encode(password)),
        (Some(user), None) => format!("{}@", encode(user)),
        (None, None) => String::new(),
    }
}

/// A host name or address as a URL's host (an IPv6 literal in brackets).
pub(super) fn host(path: &str, host: &str) -> Result<String, ConfigError> {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => Ok(format!("[{ip}]")),
        Err(_) if host.is_empty() || host.contains([':', '/', '@', '%', '[', ']', ' ']) => {
            Err(ConfigError::invalid(
                path,
                format!("{host:?} is not a host name or address (the port is a key of its own)"),
            ))
        }
        Err(_) => Ok(host.to_owned()),
    }
}
