//! Webhook tokens as LiveKit signs its webhooks: an HS256 JWT, keyed with the app secret, whose
//! `sha256` claim binds it to one exact body.
//!
//! Written here rather than taken from a JWT crate: one fixed header, five claims and one HMAC
//! are all it takes, and the HMAC is the app's [`Signer`], already keyed.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::signing::Signer;

/// Seconds a token stays valid after it was signed: room for a receiver whose clock is a little
/// off, too short for a captured request to be replayed for long.
pub const VALIDITY_SECS: u64 = 300;

/// `{"alg":"HS256","typ":"JWT"}` in base64url, the same for every token.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// The claims, in this order on the wire (the known-answer test depends on it).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sha256: String,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// The `Authorization` value for one webhook request: a JWT issued by `key` at `issued_at`
/// (Unix seconds) over the SHA-256 of `body`, signed with the app secret held by `signer`.
pub fn webhook_token(key: &str, signer: &Signer, body: &[u8], issued_at: u64) -> String {
    let claims = Claims {
        iss: key,
        // Standard base64 with padding: what LiveKit's receivers compare against.
        sha256: STANDARD.encode(Sha256::digest(body)),
        iat: issued_at,
        nbf: issued_at,
        exp: issued_at + VALIDITY_SECS,
    };
    let payload = serde_json::to_vec(&claims).expect("claims serialize");
    let mut token = format!("{HEADER}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = signer.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Computed independently with Python's `hmac`, `hashlib` and `base64` (not with this
    /// module) for key `app-key`, secret `app-secret`, [`BODY`] and `iat` 1700000000.
    const EXPECTED: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
        eyJpc3MiOiJhcHAta2V5Iiwic2hhMjU2IjoibmpLRi96WW43YUM5SnhYMmJWdENSMGJONnlvQnFtSGRnT2JuZGloZEh4TT0iLCJpYXQiOjE3MDAwMDAwMDAsIm5iZiI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAwMzAwfQ.\
        gncHiIjSV9cgtYNMDnCRDmL51aySfn1KKAyl2bP4RH4";

    /// Non-ASCII on purpose: the digest covers the UTF-8 bytes.
    const BODY: &str =
        r#"{"time_ms":1700000000123,"events":[{"name":"channel_occupied","channel":"héllo"}]}"#;

    fn part(token: &str, index: usize) -> Value {
        let text = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
    }

    #[test]
    fn known_answer() {
        let token = webhook_token(
            "app-key",
            &Signer::new("app-secret"),
            BODY.as_bytes(),
            1700000000,
        );
        assert_eq!(token, EXPECTED);
    }

    #[test]
    fn claims_header_and_signature() {
        let signer = Signer::new("s3cret");
        // A key that needs escaping still comes back as itself.
        let token = webhook_token("k\"ey", &signer, b"{}", 1000);
        assert_eq!(part(&token, 0), json!({"alg": "HS256", "typ": "JWT"}));
        assert_eq!(
            part(&token, 1),
            json!({"iss": "k\"ey", "sha256": "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=",
                   "iat": 1000, "nbf": 1000, "exp": 1300})
        );
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert_eq!(signature, signer.sign(signed.as_bytes()));
    }

    #[test]
    fn another_body_time_or_secret_gives_another_token() {
        let signer = Signer::new("app-secret");
        let token = |body: &[u8], at| webhook_token("app-key", &signer, body, at);
        assert_ne!(token(b"{}", 1), token(b"{} ", 1));
        assert_ne!(token(b"{}", 1), token(b"{}", 2));
        let other = webhook_token("app-key", &Signer::new("other"), b"{}", 1);
        assert_ne!(token(b"{}", 1), other);
    }
}
