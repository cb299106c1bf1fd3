//! `permessage-deflate` (RFC 7692): what a client's offer is answered with, one message
//! compressed, one message inflated within a bound.
//!
//! Herald keeps no compression state between messages on either side: its answer always
//! carries `server_no_context_takeover` and `client_no_context_takeover`, so a socket that
//! negotiated the extension costs no memory while idle, and a broadcast is compressed once for
//! every subscriber that negotiated it.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's token in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// What every message compressed with `BFINAL` unset and a sync flush ends with; the sender
/// strips it and the receiver adds it back (RFC 7692 section 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The LZ77 window Herald compresses with; a client asking for a smaller one is declined.
const WINDOW_BITS: u8 = 15;

/// The answer to a `Sec-WebSocket-Extensions` offer Herald accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The window size the client asked to be told (`client_max_window_bits`), if it asked.
    client_window: Option<u8>,
    /// The client offered `server_max_window_bits=15`: accepting it means echoing it.
    server_window: bool,
}

impl Agreement {
    /// The response's `Sec-WebSocket-Extensions` value.
    pub fn header(&self) -> String {
        let mut header = format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
        if self.server_window {
            // RFC 7692 section 7.1.2.1: an accepted parameter is named in the answer.
            header.push_str(&format!("; server_max_window_bits={WINDOW_BITS}"));
        }
        if let Some(bits) = self.client_window {
            // With a value: Chromium fails the handshake on a bare `client_max_window_bits`.
            header.push_str(&format!("; client_max_window_bits={bits}"));
        }
        header
    }
}

/// The first `permessage-deflate` offer among the request's `Sec-WebSocket-Extensions` values
/// that Herald can accept, or `None` (then the connection goes on without the extension).
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    headers
        .into_iter()
        .flat_map(|value| value.split(','))
        .find_map(accept_offer)
}

/// One offer (`name; param; param=value`) as Herald would answer it.
fn accept_offer(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut client_window = None;
    let mut server_window = false;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        // RFC 7692 section 7.1: a repeated parameter declines the offer.
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(value)) => {
                // Herald's compressor always uses the full window.
                if window_bits(value)? != WINDOW_BITS {
                    return None;
                }
                server_window = true;
            }
            ("client_max_window_bits", None) => client_window = Some(WINDOW_BITS),
            ("client_max_window_bits", Some(value)) => client_window = Some(window_bits(value)?),
            _ => return None,
        }
    }
    Some(Agreement {
        client_window,
        server_window,
    })
}

/// A window size in bits, 8 to 15 written without a sign or leading zero.
fn window_bits(value: &str) -> Option<u8> {
    let valid =
        !value.is_empty() && !value.starts_with('0') && value.bytes().all(|b| b.is_ascii_digit());
    let bits: u8 = value.parse().ok().filter(|_| valid)?;
    (8..=15).contains(&bits).then_some(bits)
}

thread_local! {
    // A compressor's state is large (its hash tables): one per thread, reset per message.
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// `payload` compressed as one message's data (the trailing `00 00 ff ff` stripped).
pub fn compress(payload: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|compressor| {
        let mut compressor = compressor.borrow_mut();
        compressor.reset();
        // Room for the worst case (stored blocks): one call is then enough.
        let mut out = Vec::with_capacity(payload.len() + payload.len() / 1000 * 5 + 128);
        loop {
            let read = compressor.total_in() as usize;
            compressor
                .compress_vec(&payload[read..], &mut out, FlushCompress::Sync)
                .expect("compressing into a Vec cannot fail");
            // Done only once all input is in and the sync flush's marker is out: room to spare
            // alone is not enough (the compressor may still hold input it took).
            let done = compressor.total_in() as usize == payload.len()
                && out.len() < out.capacity()
                && out.ends_with(&TAIL);
            if done {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        out.truncate(out.len() - TAIL.len());
        out
    })
}

/// Why an inbound compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// It inflates past the inbound limit (a decompression bomb, or simply too big): 1009.
    #[error("the message inflates past the size limit")]
    TooBig,
    /// Not valid deflate data: 1007.
    #[error("the message is not valid deflate data")]
    Corrupt,
    /// RSV1 where RFC 7692 forbids it (a continuation, an unmasked frame, inside a message
    /// sent in plain fragments): 1002.
    #[error("a compressed frame where none may be")]
    Misplaced,
    /// More inflated in a second than a socket's budget (a cheap way to burn the server's
    /// CPU otherwise): 1008.
    #[error("compressed messages inflate too fast")]
    TooFast,
}

/// One message's data inflated, refused once the output would pass `limit` bytes: memory is
/// bounded by `limit` whatever the input claims.
pub fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with(|inflater| {
        let mut inflater = inflater.borrow_mut();
        inflater.reset(false);
        let mut out = Vec::with_capacity(limit.min(data.len().saturating_mul(4)).max(256));
        for input in [data, &TAIL[..]] {
            let mut read = 0;
            while read < input.len() {
                if out.len() == out.capacity() {
                    // Room for one byte past the limit at most, to see it passed.
                    let room = out.capacity().max(256).min(limit + 1 - out.len());
                    out.reserve_exact(room);
                }
                let (before, written) = (inflater.total_in(), out.len());
                let status = inflater
                    .decompress_vec(&input[read..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                let consumed = (inflater.total_in() - before) as usize;
                read += consumed;
                if out.len() > limit {
                    return Err(InflateError::TooBig);
                }
                let stuck = consumed == 0 && out.len() == written && out.len() < out.capacity();
                if status == Status::StreamEnd || stuck {
                    break;
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<String> {
        negotiate([value]).map(|a| a.header())
    }

    #[test]
    fn browsers_and_node_ws_offers_are_accepted_with_a_window_value() {
        // Chromium and Node's `ws`.
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15")
        );
        // Firefox and Safari.
        assert_eq!(
            offer("permessage-deflate").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits=10; server_no_context_takeover")
                .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10")
        );
        assert!(offer("permessage-deflate; server_max_window_bits=15").is_some());
        assert!(offer("PerMessage-Deflate; client_max_window_bits=\"12\"").is_some());
    }

    #[test]
    fn unsupported_or_invalid_offers_are_declined_and_the_next_one_tried() {
        for declined in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; mystery",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(offer(declined), None, "{declined}");
        }
        let second = "permessage-deflate; server_max_window_bits=9, permessage-deflate";
        assert!(offer(second).is_some());
        assert!(negotiate(["foo", "permessage-deflate"]).is_some());
    }

    #[test]
    fn a_compressed_message_inflates_back() {
        let payload =
            r#"{"event":"price","channel":"ticker","data":"{\"bid\":1.25,\"ask\":1.26}"}"#
                .repeat(20);
        let compressed = compress(payload.as_bytes());
        assert!(compressed.len() < payload.len() / 4);
        assert!(!compressed.ends_with(&TAIL));
        assert_eq!(
            inflate(&compressed, payload.len()).unwrap(),
            payload.as_bytes()
        );
        assert_eq!(
            inflate(&compressed, payload.len() - 1),
            Err(InflateError::TooBig)
        );
        // Reused per thread: a second message is independent of the first.
        assert_eq!(inflate(&compress(b"abc"), 10).unwrap(), b"abc");
        assert_eq!(inflate(&compress(b""), 10).unwrap(), b"");
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_refused() {
        let bomb = compress(&vec![b'a'; 50 << 20]);
        assert!(bomb.len() < 100 << 10);
        assert_eq!(inflate(&bomb, 64 << 10), Err(InflateError::TooBig));
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff, 0xff], 1024),
            Err(InflateError::Corrupt)
        );
    }
}

#[cfg(test)]
mod review_tests;
