//! Found by an attacker's review: negotiation answers a client can accept, compression that
//! never loses the end of a message, and inflate's bounds.

use super::*;

/// RFC 7692 section 7.1.2.1: a server accepts `server_max_window_bits` by naming it in its
/// answer; Python `websockets` fails a handshake that leaves it out.
#[test]
fn an_accepted_server_max_window_bits_is_echoed() {
    let header =
        negotiate(["permessage-deflate; server_max_window_bits=15; client_max_window_bits"])
            .expect("accepted")
            .header();
    assert!(
        header.contains("server_max_window_bits=15"),
        "answer without server_max_window_bits: {header}"
    );
}

/// Random offers never panic and any answer is a valid header value of known parameters.
#[test]
fn random_offers_never_panic_and_answers_are_well_formed() {
    let atoms = [
        "permessage-deflate",
        "PERMESSAGE-DEFLATE",
        ";",
        ",",
        " ",
        "\t",
        "=",
        "\"",
        "15",
        "8",
        "0",
        "16",
        "client_max_window_bits",
        "server_max_window_bits",
        "server_no_context_takeover",
        "client_no_context_takeover",
        "x",
        "é",
        "999999999999",
    ];
    let mut seed: u64 = 0xdead_beef_cafe_f00d;
    for _ in 0..20_000 {
        let mut offer = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut s = seed;
        for _ in 0..(s % 12) {
            s = s.rotate_left(7) ^ 0x9e37_79b9;
            offer.push_str(atoms[(s % atoms.len() as u64) as usize]);
        }
        if let Some(agreement) = negotiate([offer.as_str()]) {
            let header = agreement.header();
            assert!(
                axum::http::HeaderValue::from_str(&header).is_ok(),
                "{header}"
            );
        }
    }
}

/// Sound: a bomb, stored blocks, and data after a final block stay within the limit.
#[test]
fn inflate_is_bounded_whatever_the_data() {
    // A stored block (BFINAL=0, BTYPE=00) of 65535 bytes, many times: output grows linearly
    // with input, refused at the limit.
    let mut stored = Vec::new();
    for _ in 0..4 {
        stored.extend_from_slice(&[0x00, 0xff, 0xff, 0x00, 0x00]);
        stored.extend(std::iter::repeat_n(b'a', 65535));
    }
    assert_eq!(inflate(&stored, 100_000), Err(InflateError::TooBig));
    assert_eq!(inflate(&stored, 4 * 65535).map(|v| v.len()), Ok(4 * 65535));
    // A final block, then garbage: the garbage is ignored (accepted as the first block).
    let mut final_then_more = vec![0x01, 0x03, 0x00, 0xfc, 0xff, b'a', b'b', b'c'];
    final_then_more.extend_from_slice(&[0xff; 64]);
    assert_eq!(inflate(&final_then_more, 1024), Ok(b"abc".to_vec()));
    // Random bytes: never a panic, never past the limit.
    let mut seed: u64 = 42;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 64) as usize;
        let data: Vec<u8> = (0..len)
            .map(|i| (seed >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect();
        if let Ok(out) = inflate(&data, 300) {
            assert!(out.len() <= 300);
        }
    }
}

/// Round trip of random texts through `compress` and `inflate` (the limit far above).
#[test]
fn compress_then_inflate_round_trips() {
    let alphabet = b"abcdefgh {}\":,0123";
    let mut seed: u64 = 7;
    let mut failures = Vec::new();
    for round in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = match round % 3 {
            0 => (seed % 3000) as usize,
            1 => 60_000 + (seed % 20_000) as usize,
            _ => (seed % 200_000) as usize,
        };
        let mut s = seed;
        let text: Vec<u8> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                alphabet[(s % alphabet.len() as u64) as usize]
            })
            .collect();
        let compressed = compress(&text);
        let back = inflate(&compressed, 1 << 24).expect("valid");
        // And with an independent inflater (flate2 directly).
        let mut input = compressed.clone();
        input.extend_from_slice(&TAIL);
        let mut reference = Vec::with_capacity(len + 1024);
        Decompress::new(false)
            .decompress_vec(&input, &mut reference, FlushDecompress::Sync)
            .unwrap();
        if back != text || reference != text {
            failures.push((len, compressed.len(), back.len(), reference.len()));
        }
    }
    assert!(
        failures.is_empty(),
        "(length, compressed, inflate(), flate2) {failures:?}"
    );
}

/// Text that compresses poorly (base64, as the ciphertext of an encrypted channel's event).
pub(super) fn base64ish(len: usize, mut seed: u64) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            alphabet[(seed % 64) as usize]
        })
        .collect()
}

/// A payload that compresses worse than half, large enough that miniz_oxide flushes a block
/// mid-stream: with too little room the compressor kept input it had taken, and room to spare
/// alone ended the loop before the end of the message (a 31,907-byte base64 payload was cut).
#[test]
fn compress_never_drops_the_end_of_a_payload() {
    let payload = survey_payload(31_907);
    let compressed = compress(&payload);
    let back = inflate(&compressed, 1 << 20).expect("valid deflate data");
    assert_eq!(back.len(), payload.len(), "inflated length");
    assert!(back == payload);
}

/// A base64 payload of `len` bytes.
fn survey_payload(len: usize) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut seed = len as u64 * 31 + 7;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            alphabet[(seed % alphabet.len() as u64) as usize]
        })
        .collect()
}

/// Poorly compressing payloads of every size a 100 KB event allows come back whole.
#[test]
fn payloads_that_compress_poorly_come_back_whole_at_every_size() {
    let mut len = 25_000;
    while len < 110_000 {
        let payload = base64ish(len, len as u64);
        assert_eq!(
            inflate(&compress(&payload), 1 << 20).unwrap(),
            payload,
            "{len}"
        );
        len += 997;
    }
}
