//! HMAC-SHA256 signatures: channel auth, user sign-in, the REST API and webhooks.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use super::SocketId;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 keyed once with an app secret: cloning it per use skips the key schedule.
#[derive(Clone)]
pub struct Signer(HmacSha256);

impl Signer {
    /// A signer for `secret`.
    pub fn new(secret: &str) -> Signer {
        Signer(HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length"))
    }

    /// Lower-hex HMAC-SHA256 of `message`.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.sign(message))
    }

    /// The raw 32-byte HMAC-SHA256 of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Checks a hex signature over the concatenated `parts` in constant time; a signature that
    /// is not 64 hex digits is simply wrong.
    pub fn verify_hex(&self, parts: &[&[u8]], signature_hex: &str) -> bool {
        let mut signature = [0u8; 32];
        if hex::decode_to_slice(signature_hex, &mut signature).is_err() {
            return false;
        }
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(&signature).is_ok()
    }

    /// Checks a REST API `auth_signature` over method, path and the sorted, unescaped query
    /// (every parameter but `auth_signature`, keys lower-cased), without building the string.
    pub fn verify_rest(
        &self,
        method: &str,
        path: &str,
        params: &[(Cow<'_, str>, Cow<'_, str>)],
        signature_hex: &str,
    ) -> bool {
        let mut pairs: Vec<(Cow<'_, str>, &str)> = params
            .iter()
            .filter(|(k, _)| k != "auth_signature")
            .map(|(k, v)| (lower(k), v.as_ref()))
            .collect();
        pairs.sort_unstable();
        let method = method.to_ascii_uppercase();
        let mut parts: Vec<&[u8]> = vec![method.as_bytes(), b"\n", path.as_bytes(), b"\n"];
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                parts.push(b"&");
            }
            parts.extend([k.as_bytes(), b"=", v.as_bytes()]);
        }
        self.verify_hex(&parts, signature_hex)
    }
}

/// Lower-cases a query key, borrowing when it already is (as every SDK sends it).
fn lower<'a>(key: &'a Cow<'a, str>) -> Cow<'a, str> {
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(key.to_ascii_lowercase())
    } else {
        Cow::Borrowed(key.as_ref())
    }
}

/// Lower-hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign_hex(secret: &str, message: &[u8]) -> String {
    Signer::new(secret).sign_hex(message)
}

/// The Standard Webhooks `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn standard_webhooks_signature(secret: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    use base64::Engine;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Lower-hex MD5 of a request body (`body_md5`).
pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Why an `auth` field was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `auth` where one is required.
    #[error("no auth signature was given")]
    Missing,
    /// Not of the form `key:signature`, or another app's key.
    #[error("invalid key in auth {0:?}")]
    WrongKey(String),
    /// The signature does not match.
    #[error("invalid signature: expected HMAC SHA256 hex digest of {0}")]
    BadSignature(String),
}

/// Verifies an `auth` of the form `app_key:hex_signature` over `string_to_sign`.
fn verify_auth(
    key: &str,
    signer: &Signer,
    string_to_sign: String,
    auth: Option<&str>,
) -> Result<(), AuthError> {
    let auth = auth.filter(|a| !a.is_empty()).ok_or(AuthError::Missing)?;
    let (auth_key, signature) = auth
        .split_once(':')
        .ok_or_else(|| AuthError::WrongKey(auth.to_owned()))?;
    if auth_key != key {
        return Err(AuthError::WrongKey(auth_key.to_owned()));
    }
    if signer.verify_hex(&[string_to_sign.as_bytes()], signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(string_to_sign))
    }
}

/// Verifies a private or presence channel subscription (`socket_id:channel[:channel_data]`).
pub fn verify_channel_auth(
    key: &str,
    signer: &Signer,
    socket_id: SocketId,
    channel: &str,
    channel_data: Option<&str>,
    auth: Option<&str>,
) -> Result<(), AuthError> {
    let string_to_sign = match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    };
    verify_auth(key, signer, string_to_sign, auth)
}

/// Verifies a `pusher:signin` (`socket_id::user::user_data`).
pub fn verify_user_auth(
    key: &str,
    signer: &Signer,
    socket_id: SocketId,
    user_data: &str,
    auth: &str,
) -> Result<(), AuthError> {
    verify_auth(
        key,
        signer,
        format!("{socket_id}::user::{user_data}"),
        Some(auth),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn pusher_doc_vectors() {
        assert_eq!(
            sign_hex(SECRET, b"1234.1234:private-foobar"),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let sid: SocketId = "1234.1234".parse().unwrap();
        let auth =
            format!("{KEY}:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80");
        assert_eq!(
            verify_channel_auth(
                KEY,
                &Signer::new(SECRET),
                sid,
                "presence-foobar",
                Some(data),
                Some(&auth)
            ),
            Ok(())
        );
        let auth =
            format!("{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba");
        assert_eq!(
            verify_user_auth(KEY, &Signer::new(SECRET), sid, r#"{"id":"12345"}"#, &auth),
            Ok(())
        );
    }

    #[test]
    fn rest_signature_vector() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(md5_hex(body.as_bytes()), "ec365a775a4cd0599faeb73354201b6f");
        let params: Vec<(Cow<str>, Cow<str>)> = [
            ("auth_version", "1.0"),
            ("Auth_Key", KEY),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            ("auth_timestamp", "1353088179"),
            ("auth_signature", "ignored"),
        ]
        .into_iter()
        .map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
        .collect();
        let signer = Signer::new(SECRET);
        let expected = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        assert!(signer.verify_rest("post", "/apps/3/events", &params, expected));
        assert!(!signer.verify_rest("POST", "/apps/4/events", &params, expected));
        assert!(!signer.verify_rest("POST", "/apps/3/events", &params, "zz"));
    }

    #[test]
    fn standard_webhooks_vector() {
        // The example of the Standard Webhooks specification.
        use base64::Engine;
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            standard_webhooks_signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_wrong_key_and_garbage() {
        let sid: SocketId = "1.1".parse().unwrap();
        assert_eq!(
            verify_channel_auth(KEY, &Signer::new(SECRET), sid, "private-a", None, None),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            verify_channel_auth(
                KEY,
                &Signer::new(SECRET),
                sid,
                "private-a",
                None,
                Some("other:00")
            ),
            Err(AuthError::WrongKey(_))
        ));
        assert!(matches!(
            verify_channel_auth(
                KEY,
                &Signer::new(SECRET),
                sid,
                "private-a",
                None,
                Some(&format!("{KEY}:zz"))
            ),
            Err(AuthError::BadSignature(_))
        ));
    }
}
