//! The AWS credential sources Herald reads, and only these: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile
//! `AWS_PROFILE` or `default`). Nothing here ever contacts the network (no instance metadata).
//!
//! What was read is cached and read again once it is [`REREAD_AFTER`] old, on a blocking
//! thread, so an expiring session token written by an outside refresher is picked up and no
//! file is read on the async path.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long credentials that were read are used before they are read again.
pub const REREAD_AFTER: Duration = Duration::from_secs(60);

/// AWS credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

impl From<Credentials> for aws_credential_types::Credentials {
    fn from(c: Credentials) -> Self {
        aws_credential_types::Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            c.session_token,
            None,
            "herald",
        )
    }
}

/// The last credentials read, and when (a failed read is not kept: the next attempt reads again).
static CACHED: Mutex<Option<(Instant, Credentials)>> = Mutex::new(None);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The credentials to sign with now: the cached ones, or freshly read off the async path.
pub async fn current() -> Result<Credentials, String> {
    {
        let cached = CACHED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((read_at, credentials)) = cached.as_ref() {
            if read_at.elapsed() < REREAD_AFTER {
                return Ok(credentials.clone());
            }
        }
    }
    let read = tokio::task::spawn_blocking(|| resolve_credentials(&env))
        .await
        .map_err(|e| format!("reading AWS credentials failed: {e}"))?;
    if let Ok(credentials) = &read {
        *CACHED.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), credentials.clone()));
    }
    read
}

/// Reads credentials from the environment, then the shared credentials file.
pub fn resolve_credentials(var: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, String> {
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: var("AWS_SESSION_TOKEN").filter(|t| !t.is_empty()),
        });
    }
    let path = var("AWS_SHARED_CREDENTIALS_FILE")
        .or_else(|| var("HOME").map(|home| format!("{home}/.aws/credentials")))
        .ok_or(
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a credentials file",
        )?;
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("no AWS credentials in the environment, and {path}: {e}"))?;
    profile_credentials(&text, &profile)
        .ok_or_else(|| format!("{path} has no credentials for profile {profile:?}"))
}

/// The credentials of `[profile]` in an INI-style credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
        } else if in_profile {
            if let Some((key, value)) = line.split_once('=') {
                let value = Some(value.trim().to_owned());
                match key.trim() {
                    "aws_access_key_id" => id = value,
                    "aws_secret_access_key" => secret = value,
                    "aws_session_token" => token = value,
                    _ => {}
                }
            }
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_profiles_from_the_credentials_file() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[other]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        assert_eq!(
            profile_credentials(text, "default").unwrap().access_key_id,
            "A"
        );
        let other = profile_credentials(text, "other").unwrap();
        assert_eq!(
            (
                other.secret_access_key.as_str(),
                other.session_token.as_deref()
            ),
            ("D", Some("T"))
        );
        assert!(profile_credentials(text, "missing").is_none());
    }

    #[test]
    fn environment_credentials_come_first() {
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("id".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            _ => None,
        };
        assert_eq!(resolve_credentials(&env).unwrap().access_key_id, "id");
        assert!(resolve_credentials(&|_| None).is_err());
    }
}
