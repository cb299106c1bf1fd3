//! The few bytes of WebSocket the scale clients and the connect floor speak, written by hand
//! (RFC 6455): the upgrade request and its 101, frames in and out. No state, no allocation
//! beyond the caller's buffers, so a socket costs only what it holds between reads.

use std::ops::Range;

/// A WebSocket key (any 16 bytes, base64): the clients do not check the accept key, as their
/// one peer is the server under test.
const CLIENT_KEY: &str = "aGVyYWxkLXNjYWxlLWtleQ==";

/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;
/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;

/// The upgrade request of a Pusher client for the bench app.
pub fn upgrade_request(port: u16, key: &str) -> Vec<u8> {
    format!(
        "GET /app/{key}?protocol=7&client=herald-bench&version=1.0.0 HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {CLIENT_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// The length of the HTTP head at the start of `buf` (through the blank line), once complete.
pub fn head_length(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Whether an HTTP response head says 101 Switching Protocols.
pub fn is_switching(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.1 101")
}

/// The `Sec-WebSocket-Key` of a request head.
pub fn request_key(head: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim())
    })
}

/// The server's 101 answer to a request with `key`.
pub fn switching_response(key: &str) -> Vec<u8> {
    let accept =
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// Appends one frame (FIN set) to `out`; masked with `mask` when given (every client frame
/// must be, RFC 6455 5.3).
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            let masked = payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]);
            out.extend(masked);
        }
        None => out.extend_from_slice(payload),
    }
}

/// A frame at the start of a buffer: its opcode and where its payload lies.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Range<usize>,
    /// Bytes the whole frame takes.
    pub length: usize,
    /// The masking key, if the frame is masked (the payload is left masked).
    pub mask: Option<[u8; 4]>,
}

/// The frame at the start of `buf`, once it is complete there.
pub fn parse_frame(buf: &[u8]) -> Option<Frame> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    let (mut at, length) = match second & 0x7F {
        126 => (
            4,
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    let mask = match second & 0x80 {
        0 => None,
        _ => {
            let key: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(key)
        }
    };
    let end = at.checked_add(length)?;
    (buf.len() >= end).then_some(Frame {
        opcode: first & 0x0F,
        payload: at..end,
        length: end,
        mask,
    })
}

/// Whether `needle` occurs in `haystack` (the clients look for event names without parsing).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frames_parse_back() {
        for size in [5, 200, 70_000] {
            let payload = vec![b'a'; size];
            let mut out = Vec::new();
            write_frame(&mut out, OP_TEXT, &payload, Some([1, 2, 3, 4]));
            let frame = parse_frame(&out).expect("complete");
            assert_eq!(frame.opcode, OP_TEXT);
            assert_eq!(frame.length, out.len());
            let key = frame.mask.expect("masked");
            let plain: Vec<u8> = out[frame.payload]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(plain, payload);
            assert_eq!(parse_frame(&out[..out.len() - 1]), None);
        }
    }

    #[test]
    fn handshake_round_trip() {
        let request = upgrade_request(80, "k");
        let head = &request[..head_length(&request).unwrap()];
        let key = request_key(head).unwrap();
        let response = switching_response(key);
        assert!(is_switching(&response));
        // RFC 6455's example key and accept value.
        let known = switching_response("dGhlIHNhbXBsZSBub25jZQ==");
        assert!(contains(&known, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }
}
