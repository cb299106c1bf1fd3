//! Review (deflate-review): the compressed twin of random joined frames, local and from
//! another node, reads back as the same messages, in order, and never compresses a Pusher
//! protocol event.

use super::*;

fn inflate_raw(data: &[u8]) -> Vec<u8> {
    deflate::inflate(data, 1 << 24).expect("valid deflate data")
}

/// The messages in `bytes` (server frames), inflated, and whether each was compressed.
fn messages(bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let first = rest[0];
        assert_eq!(first & 0xbf, FIN | OPCODE_TEXT, "a whole text frame");
        assert_eq!(rest[1] & 0x80, 0, "unmasked");
        let (len, at) = match rest[1] {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let payload = &rest[at..at + len];
        let rsv1 = first & RSV1 != 0;
        out.push((
            rsv1,
            if rsv1 {
                inflate_raw(payload)
            } else {
                payload.to_vec()
            },
        ));
        rest = &rest[at + len..];
    }
    out
}

#[test]
fn random_joined_frames_compress_to_the_same_messages_and_never_a_protocol_event() {
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let count = 1 + next() % 6;
        let mut frames = Vec::new();
        let mut payloads = Vec::new();
        for _ in 0..count {
            let name = match next() % 4 {
                0 => "pusher:cache_miss",
                1 => "pusher_internal:member_added",
                _ => "news",
            };
            let len = match next() % 4 {
                0 => (next() % 200) as usize,
                1 => 70_000,
                _ => (next() % 3000) as usize,
            };
            let data = "ab c".repeat(len / 4);
            let text = format!(r#"{{"event":"{name}","channel":"c","data":"{data}"}}"#);
            payloads.push(text.clone());
            frames.push(WireFrame::event(&text, Some(256)));
        }
        let joined = WireFrame::joined(&frames);
        // Through another node as well: plain frames, made compressible on arrival.
        let remote = WireFrame::from_wire(joined.bytes())
            .unwrap()
            .compressible(Some(256));
        for frame in [&joined, &remote] {
            let got = messages(frame.bytes_for(true));
            assert_eq!(got.len(), payloads.len());
            for ((compressed, bytes), text) in got.iter().zip(&payloads) {
                assert_eq!(bytes, text.as_bytes());
                if text.starts_with(r#"{"event":"pusher"#) || text.len() < 256 {
                    assert!(!compressed, "{}", &text[..40.min(text.len())]);
                }
            }
            assert!(messages(frame.bytes_for(false)).iter().all(|(c, _)| !c));
            assert_eq!(frame.bytes_for(false), frame.bytes());
        }
    }
}

/// An encrypted channel's event (base64 ciphertext) of 31 KB reaches a compressing socket
/// whole: for some lengths the end of the message was lost (see
/// `protocol::deflate::review_tests::compress_never_drops_the_end_of_a_payload`).
#[test]
fn encrypted_channel_events_reach_compressing_sockets_whole() {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut seed: u64 = 99;
    let ciphertext: String = (0..31_626)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            alphabet[(seed % 64) as usize] as char
        })
        .collect();
    let data = format!(
        r#"{{\"nonce\":\"q83vEjRWeJCrze8SNFZ4kKvN7xI=\",\"ciphertext\":\"{ciphertext}\"}}"#
    );
    let text = format!(r#"{{"event":"secret","channel":"encrypted-news","data":"{data}"}}"#);
    let frame = WireFrame::event(&text, Some(1024));
    let got = messages(frame.bytes_for(true));
    assert!(got[0].0, "sent compressed");
    assert!(
        got[0].1 == text.as_bytes(),
        "a client inflates the event it was sent"
    );
}
