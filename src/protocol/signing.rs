//! HMAC-SHA256 signatures: channel auth, user sign-in, the REST API and webhooks.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use super::SocketId;

type HmacSha256 = Hmac<Sha256>;

/// Lower-hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a hex signature in constant time; a non-hex signature is simply wrong.
pub fn verify_hex(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac.verify_slice(&signature).is_ok()
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
    secret: &str,
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
    if verify_hex(secret, string_to_sign.as_bytes(), signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(string_to_sign))
    }
}

/// Verifies a private or presence channel subscription (`socket_id:channel[:channel_data]`).
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    socket_id: SocketId,
    channel: &str,
    channel_data: Option<&str>,
    auth: Option<&str>,
) -> Result<(), AuthError> {
    let string_to_sign = match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    };
    verify_auth(key, secret, string_to_sign, auth)
}

/// Verifies a `pusher:signin` (`socket_id::user::user_data`).
pub fn verify_user_auth(
    key: &str,
    secret: &str,
    socket_id: SocketId,
    user_data: &str,
    auth: &str,
) -> Result<(), AuthError> {
    verify_auth(
        key,
        secret,
        format!("{socket_id}::user::{user_data}"),
        Some(auth),
    )
}

/// The REST API string to sign: method, path and the sorted, unescaped query without the signature.
pub fn rest_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query)
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
            verify_channel_auth(KEY, SECRET, sid, "presence-foobar", Some(data), Some(&auth)),
            Ok(())
        );
        let auth =
            format!("{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba");
        assert_eq!(
            verify_user_auth(KEY, SECRET, sid, r#"{"id":"12345"}"#, &auth),
            Ok(())
        );
    }

    #[test]
    fn rest_signature_vector() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(md5_hex(body.as_bytes()), "ec365a775a4cd0599faeb73354201b6f");
        let params = vec![
            ("auth_version".to_owned(), "1.0".to_owned()),
            ("auth_key".to_owned(), KEY.to_owned()),
            (
                "body_md5".to_owned(),
                "ec365a775a4cd0599faeb73354201b6f".to_owned(),
            ),
            ("auth_timestamp".to_owned(), "1353088179".to_owned()),
            ("auth_signature".to_owned(), "ignored".to_owned()),
        ];
        let to_sign = rest_string_to_sign("post", "/apps/3/events", &params);
        assert_eq!(
            sign_hex(SECRET, to_sign.as_bytes()),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
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
            verify_channel_auth(KEY, SECRET, sid, "private-a", None, None),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            verify_channel_auth(KEY, SECRET, sid, "private-a", None, Some("other:00")),
            Err(AuthError::WrongKey(_))
        ));
        assert!(matches!(
            verify_channel_auth(
                KEY,
                SECRET,
                sid,
                "private-a",
                None,
                Some(&format!("{KEY}:zz"))
            ),
            Err(AuthError::BadSignature(_))
        ));
    }
}
