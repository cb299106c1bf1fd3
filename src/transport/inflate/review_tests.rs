//! Review of the inflating reader (deflate-review): a fuzz-style round trip through the
//! reader and tungstenite, and the defects found, each as a test.

use std::io::{self, Read, Write};

use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use super::*;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One client frame with any first byte and mask.
fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let masked = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n <= 0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

fn random_mask(rng: &mut Rng) -> Option<[u8; 4]> {
    Some((rng.next() as u32).to_be_bytes())
}

/// `data` cut at random points into `parts` pieces (some may be empty).
fn cut(rng: &mut Rng, data: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = (1..parts)
        .map(|_| rng.below(data.len() as u64 + 1) as usize)
        .collect();
    points.sort();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        out.push(data[at..p].to_vec());
        at = p;
    }
    out.push(data[at..].to_vec());
    out
}

fn random_text(rng: &mut Rng) -> String {
    let len = match rng.below(20) {
        0 => 0,
        1 => 70_000 + rng.below(3000) as usize,
        2..=5 => 126 + rng.below(2000) as usize,
        _ => rng.below(126) as usize,
    };
    let alphabet = b"abcdefgh {}\":,0123";
    (0..len)
        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize] as char)
        .collect()
}

/// One message's data as RFC 7692 sends it, made independently of the server's code.
fn reference_deflate(data: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() * 2 + 1024);
    compress
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .unwrap();
    assert_eq!(compress.total_in() as usize, data.len());
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A random client stream: its bytes and the messages tungstenite must read from it.
fn random_stream(rng: &mut Rng, messages: usize) -> (Vec<u8>, Vec<Message>) {
    let (wire, expected, _) = random_stream_described(rng, messages);
    (wire, expected)
}

/// The same, with how each message was sent.
fn random_stream_described(rng: &mut Rng, messages: usize) -> (Vec<u8>, Vec<Message>, Vec<String>) {
    let (mut wire, mut expected, mut described) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..messages {
        if rng.chance(15) {
            let ping: Vec<u8> = (0..rng.below(126)).map(|_| rng.next() as u8).collect();
            wire.extend(frame(0x89, &ping, random_mask(rng)));
            expected.push(Message::Ping(ping.into()));
            described.push("ping".to_owned());
            continue;
        }
        let text = random_text(rng);
        let compressed = rng.chance(60);
        let data = match compressed {
            // Not `deflate::compress`, which can drop a message's end (see
            // `protocol::deflate::review_tests`): flate2 with room for it all.
            true => reference_deflate(text.as_bytes()),
            false => text.as_bytes().to_vec(),
        };
        let parts = match rng.below(4) {
            0 | 1 => 1,
            2 => 2 + rng.below(3) as usize,
            _ => 2 + rng.below(40) as usize,
        };
        let pieces = cut(rng, &data, parts);
        let last = pieces.len() - 1;
        for (i, piece) in pieces.iter().enumerate() {
            let mut first = if i == 0 {
                OPCODE_TEXT
            } else {
                OPCODE_CONTINUATION
            };
            if i == 0 && compressed {
                first |= 0x40;
            }
            if i == last {
                first |= 0x80;
            }
            wire.extend(frame(first, piece, random_mask(rng)));
            // Control frames between the fragments of a message.
            if i != last && rng.chance(20) {
                let ping: Vec<u8> = (0..rng.below(126)).map(|_| rng.next() as u8).collect();
                wire.extend(frame(0x89, &ping, random_mask(rng)));
                expected.push(Message::Ping(ping.into()));
                described.push("ping inside".to_owned());
            }
        }
        described.push(format!(
            "{} text of {} bytes ({} on the wire) in fragments of {:?}",
            if compressed { "compressed" } else { "plain" },
            text.len(),
            data.len(),
            pieces.iter().map(Vec::len).collect::<Vec<_>>()
        ));
        expected.push(Message::text(text));
    }
    (wire, expected, described)
}

/// A socket handing out random amounts, with `WouldBlock` at random.
struct RandomSocket<'a> {
    bytes: &'a [u8],
    at: usize,
    rng: Rng,
    max_step: u64,
}

impl Read for RandomSocket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.bytes.len() || self.rng.chance(30) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = (1 + self.rng.below(self.max_step) as usize)
            .min(buf.len())
            .min(self.bytes.len() - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What `FrameReader` does: the inflater in front of tungstenite, dropped whenever idle and
/// made again (empty) for the next read.
struct Stack<'a> {
    inflating: Option<InflatingReader>,
    socket: RandomSocket<'a>,
    limit: usize,
}

struct Io<'a, 'b>(&'a mut InflatingReader, &'a mut RandomSocket<'b>);

impl Read for Io<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(self.1, buf)
    }
}

impl Write for Io<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads every message of `wire` the way the connection does (`early` came with the
/// upgrade); `Err` with a description when it errs or gets stuck.
fn read_like_the_connection(
    wire: &[u8],
    early: &[u8],
    seed: u64,
    max_step: u64,
    chunk: usize,
    limit: usize,
) -> Result<Vec<Message>, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(chunk)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let mut context = WebSocketContext::new(Role::Server, Some(config));
    let mut stack = Stack {
        inflating: (!early.is_empty()).then(|| InflatingReader::new(limit, early)),
        socket: RandomSocket {
            bytes: wire,
            at: 0,
            rng: Rng(seed | 1),
            max_step,
        },
        limit,
    };
    let mut messages = Vec::new();
    let mut idle_blocks = 0;
    for _ in 0..2_000_000 {
        let limit = stack.limit;
        let inflating = stack
            .inflating
            .get_or_insert_with(|| InflatingReader::new(limit, &[]));
        let read = context.read(&mut Io(inflating, &mut stack.socket));
        if stack.inflating.as_ref().is_some_and(|r| r.is_idle()) {
            stack.inflating = None;
        }
        match read {
            Ok(message) => {
                idle_blocks = 0;
                messages.push(message)
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if stack.socket.at == wire.len() {
                    idle_blocks += 1;
                    // The connection would now wait for the socket: nothing may be left.
                    if idle_blocks > 3 {
                        return match stack.inflating.is_none() {
                            true => Ok(messages),
                            false => Err(format!(
                                "socket drained, WouldBlock, but the reader still holds state after {} messages",
                                messages.len()
                            )),
                        };
                    }
                }
            }
            Err(error) => return Err(format!("after {} messages: {error}", messages.len())),
        }
    }
    Err("never finished".into())
}

#[test]
fn fuzz_random_frames_and_read_splits_round_trip() {
    let limit = 1 << 17;
    let rounds: u64 = std::env::var("HERALD_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for seed in 1..=rounds {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let count = 1 + rng.below(30) as usize;
        let (wire, expected, described) = random_stream_described(&mut rng, count);
        let max_step = match rng.below(4) {
            0 => 1,
            1 => 1 + rng.below(16),
            2 => 1 + rng.below(3000),
            _ => 100_000,
        };
        // tungstenite never reads less than a frame header's 14 bytes.
        let chunk = match rng.below(3) {
            0 => 14 + rng.below(40) as usize,
            1 => 2048,
            _ => 14 + rng.below(5000) as usize,
        };
        let early_len = match rng.chance(20) {
            true => rng.below(wire.len() as u64 + 1) as usize,
            false => 0,
        };
        let (early, rest) = wire.split_at(early_len);
        let got = read_like_the_connection(rest, early, seed, max_step, chunk, limit)
            .unwrap_or_else(|e| panic!("seed {seed} (step {max_step}, chunk {chunk}): {e}"));
        if got != expected {
            let at = got.iter().zip(&expected).position(|(a, b)| a != b);
            let show = |m: Option<&Message>| match m {
                Some(Message::Text(t)) => {
                    format!("text({}) {:?}", t.len(), &t.as_str()[..t.len().min(30)])
                }
                Some(other) => format!("{:?}", other).chars().take(60).collect(),
                None => "none".into(),
            };
            let at = at.unwrap_or(got.len().min(expected.len()));
            panic!(
                "seed {seed} (step {max_step}, chunk {chunk}, early {early_len}): {} read, {} sent; first difference at {at}: read {}, sent {} ({})",
                got.len(),
                expected.len(),
                show(got.get(at)),
                show(expected.get(at)),
                described.get(at).map_or("", String::as_str),
            );
        }
    }
}

/// Reads `wire` (all there, then EOF) to the first error.
fn first_error(wire: &[u8]) -> Option<io::Error> {
    let mut inflating = InflatingReader::new(1024, wire);
    let mut buf = [0u8; 2048];
    loop {
        match inflating.read(&mut io::empty(), &mut buf) {
            Ok(0) => return None,
            Ok(_) => continue,
            Err(e) => return Some(e),
        }
    }
}

/// RFC 6455 section 5.1: an unmasked client frame fails the connection; tungstenite checks
/// every frame it sees, but never sees a compressed message's continuations.
#[test]
fn an_unmasked_continuation_of_a_compressed_message_is_refused() {
    let data = deflate::compress(b"{\"event\":\"pusher:ping\",\"data\":{}}");
    let (head, tail) = data.split_at(data.len() / 2);
    let wire = [
        frame(0x41, head, Some([9, 8, 7, 6])),
        frame(0x80, tail, None), // no mask
    ]
    .concat();
    let error = first_error(&wire);
    assert!(
        error.is_some(),
        "an unmasked client frame was read without an error"
    );
}

/// RFC 6455 section 5.2: RSV2 or RSV3 without a negotiated meaning fails the connection, on
/// the frames of a compressed message too.
#[test]
fn rsv2_and_rsv3_on_compressed_frames_are_refused() {
    let data = deflate::compress(b"{\"event\":\"pusher:ping\",\"data\":{}}");
    for wire in [
        frame(0x80 | 0x40 | 0x20 | OPCODE_TEXT, &data, Some([1, 2, 3, 4])),
        frame(0x80 | 0x40 | 0x10 | OPCODE_TEXT, &data, Some([1, 2, 3, 4])),
        {
            let (head, tail) = data.split_at(3);
            [
                frame(0x40 | OPCODE_TEXT, head, Some([1, 2, 3, 4])),
                frame(0x80 | 0x20, tail, Some([1, 2, 3, 4])),
            ]
            .concat()
        },
    ] {
        assert!(
            first_error(&wire).is_some(),
            "a frame with RSV2/RSV3 was accepted"
        );
    }
}

/// A read into a buffer shorter than the next header, with more carried than fits, returns
/// instead of looping (tungstenite 0.29 never passes one at a frame's start; any reader may).
#[test]
fn a_buffer_shorter_than_a_header_never_spins() {
    // A masked 8-byte header (a 200-byte payload) and its payload, all carried.
    let wire = frame(0x81, &[b'x'; 200], Some([1, 2, 3, 4]));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut inflating = InflatingReader::new(1024, &wire);
        let mut buf = [0u8; 4];
        let result = inflating
            .read(&mut io::empty(), &mut buf)
            .map_err(|e| e.kind());
        let _ = done.send(result);
    });
    let result = finished.recv_timeout(std::time::Duration::from_secs(3));
    assert!(
        result.is_ok(),
        "read() into a 4-byte buffer did not return within 3 s (it spins; the thread is leaked)"
    );
}

/// Corrupted streams (bytes flipped, RSV bits set, lengths changed): never a panic, never a
/// loop; an error, or messages, or a wait for more bytes.
#[test]
fn fuzz_corrupted_streams_end_without_a_panic_or_a_loop() {
    let rounds: u64 = std::env::var("HERALD_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for seed in 1..=rounds {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let count = 1 + rng.below(8) as usize;
        let (mut wire, _) = random_stream(&mut rng, count);
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(wire.len() as u64) as usize;
            match rng.below(3) {
                0 => wire[at] ^= 1 << rng.below(8),
                1 => wire[at] |= 0x70,
                _ => wire[at] = rng.next() as u8,
            }
        }
        let chunk = 14 + rng.below(3000) as usize;
        let result = std::panic::catch_unwind(|| {
            read_like_the_connection(&wire, &[], seed, 1 + rng.clone_below(5000), chunk, 1 << 17)
        });
        match result {
            Err(_) => panic!("seed {seed}: panicked"),
            Ok(Err(e)) if e == "never finished" => panic!("seed {seed}: looped"),
            Ok(_) => {}
        }
    }
}

impl Rng {
    fn clone_below(&self, n: u64) -> u64 {
        Rng(self.0).below(n)
    }
}
