//! Inbound `permessage-deflate`, between the socket and tungstenite's frame reader (which
//! refuses a frame with RSV1 set and inflates nothing).
//!
//! Each compressed message is taken out of the byte stream, inflated within the inbound limit
//! and handed on as one plain masked frame; every other frame passes through untouched, so
//! tungstenite still checks it (masking, control frames, fragmentation, UTF-8, limits). Only a
//! socket that negotiated the extension reads through this, and only while a frame is under
//! way does it hold any state.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::protocol::deflate::{self, InflateError};

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;

/// Inflated bytes a socket may produce per second, at least: a few bytes on the wire can
/// inflate to the whole message limit, so without a budget one client's trickle could keep a
/// core busy. Pusher clients send small messages; this is far above what they send.
const INFLATE_BUDGET_MIN: usize = 256 * 1024;
/// The budget's window.
const BUDGET_WINDOW: Duration = Duration::from_secs(1);

/// A frame header as the client sent it.
struct Header {
    fin: bool,
    rsv1: bool,
    /// RSV2 or RSV3: no extension Herald speaks sets them.
    rsv23: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    length: u64,
    /// Bytes of the header itself.
    size: usize,
}

/// The header at the start of `bytes`, or `None` while it is cut short.
fn parse_header(bytes: &[u8]) -> Option<Header> {
    let (first, second) = (*bytes.first()?, *bytes.get(1)?);
    let masked = second & 0x80 != 0;
    let (length, mut size) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = match masked {
        true => {
            let key = bytes.get(size..size + 4)?.try_into().ok()?;
            size += 4;
            Some(key)
        }
        false => None,
    };
    Some(Header {
        fin: first & 0x80 != 0,
        rsv1: first & 0x40 != 0,
        rsv23: first & 0x30 != 0,
        opcode: first & 0x0f,
        mask,
        length,
        size,
    })
}

/// Where the scan of the byte stream stands.
#[derive(Clone, Copy)]
enum Scan {
    /// At a frame's first byte.
    Header,
    /// Inside a frame passed through: this many payload bytes still to pass.
    Plain(u64),
    /// Inside a frame of a compressed message: payload bytes left, the mask, bytes taken so
    /// far (the mask's phase), and whether the frame ends the message.
    Compressed {
        left: u64,
        mask: [u8; 4],
        taken: u64,
        fin: bool,
    },
}

/// A compressed message being read: its opcode and its data, unmasked.
struct Message {
    opcode: u8,
    data: Vec<u8>,
}

/// The reading state of one socket that negotiated `permessage-deflate`.
pub struct InflatingReader {
    scan: Scan,
    message: Option<Message>,
    /// A plain message's fragments are passing: a compressed frame may not start now.
    plain_fragments: bool,
    /// Bytes read but not scanned yet (a header cut short, or what followed a message).
    carry: Vec<u8>,
    /// An inflated message as a plain frame, waiting to be read from `ready_at`.
    ready: Vec<u8>,
    ready_at: usize,
    /// The largest message, compressed or inflated.
    limit: usize,
    /// When the current budget window began, and what was inflated in it.
    window: (Instant, usize),
}

impl InflatingReader {
    /// A reader for messages of at most `limit` bytes; `read_ahead` arrived with the upgrade
    /// and is scanned first.
    pub fn new(limit: usize, read_ahead: &[u8]) -> InflatingReader {
        InflatingReader {
            scan: Scan::Header,
            message: None,
            plain_fragments: false,
            carry: read_ahead.to_vec(),
            ready: Vec::new(),
            ready_at: 0,
            limit,
            window: (Instant::now(), 0),
        }
    }

    /// Nothing under way: no frame begun, nothing held.
    pub fn is_idle(&self) -> bool {
        matches!(self.scan, Scan::Header)
            && self.message.is_none()
            && !self.plain_fragments
            && self.carry.is_empty()
            && self.ready.is_empty()
    }

    /// Idle, with no budget spent in the current window: the reader may be dropped and made
    /// again for the next frame (dropping a spent budget would reset it).
    pub fn may_drop(&self) -> bool {
        self.is_idle() && (self.window.1 == 0 || self.window.0.elapsed() >= BUDGET_WINDOW)
    }

    /// Reads from `source` into `buf`, plain frames as they came and compressed messages
    /// inflated. A refused message is an `io::Error` carrying an [`InflateError`].
    pub fn read(&mut self, source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.ready.is_empty() {
                return Ok(self.take_ready(buf));
            }
            let mut have = self.carry.len().min(buf.len());
            buf[..have].copy_from_slice(&self.carry[..have]);
            self.carry.drain(..have);
            // More carried than fits: scan on before reading the socket.
            let carried_more = !self.carry.is_empty();
            let (mut fresh, mut ended) = (0, false);
            if have < buf.len() {
                match source.read(&mut buf[have..]) {
                    Ok(0) => ended = true,
                    Ok(n) => fresh = n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            have += fresh;
            let (kept, scanned) = self.scan(&mut buf[..have])?;
            if kept > 0 {
                return Ok(kept);
            }
            // Nothing taken in, nothing new: looping would spin (a buffer shorter than a
            // header; tungstenite's never is at a frame's start).
            let stuck = scanned == 0 || !carried_more;
            if self.ready.is_empty() && fresh == 0 && stuck {
                // Nothing more can be scanned until more arrives.
                return match ended {
                    true => Ok(0),
                    false => Err(io::ErrorKind::WouldBlock.into()),
                };
            }
        }
    }

    fn take_ready(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.ready.len() - self.ready_at);
        buf[..n].copy_from_slice(&self.ready[self.ready_at..self.ready_at + n]);
        self.ready_at += n;
        if self.ready_at == self.ready.len() {
            self.ready = Vec::new();
            self.ready_at = 0;
        }
        n
    }

    /// Scans `buf`, moving what passes through to its front; returns how much passes and how
    /// much was taken in. Stops after a compressed message ends (it waits in `ready`; the rest
    /// goes to `carry`).
    fn scan(&mut self, buf: &mut [u8]) -> io::Result<(usize, usize)> {
        let (mut read, mut kept) = (0, 0);
        loop {
            match self.scan {
                Scan::Header => {
                    if read == buf.len() {
                        return Ok((kept, read));
                    }
                    let Some(header) = parse_header(&buf[read..]) else {
                        self.carry_back(&buf[read..]);
                        return Ok((kept, read));
                    };
                    if !self.enter_frame(&header)? {
                        buf.copy_within(read..read + header.size, kept);
                        kept += header.size;
                    }
                    read += header.size;
                }
                Scan::Plain(0) => self.scan = Scan::Header,
                Scan::Plain(left) => {
                    if read == buf.len() {
                        return Ok((kept, read));
                    }
                    let n = left.min((buf.len() - read) as u64) as usize;
                    buf.copy_within(read..read + n, kept);
                    (read, kept) = (read + n, kept + n);
                    self.scan = Scan::Plain(left - n as u64);
                }
                Scan::Compressed { left: 0, fin, .. } => {
                    self.scan = Scan::Header;
                    if fin {
                        self.finish_message()?;
                        self.carry_back(&buf[read..]);
                        return Ok((kept, read));
                    }
                }
                Scan::Compressed {
                    left,
                    mask,
                    taken,
                    fin,
                } => {
                    if read == buf.len() {
                        return Ok((kept, read));
                    }
                    let n = left.min((buf.len() - read) as u64) as usize;
                    self.take_compressed(&buf[read..read + n], mask, taken);
                    read += n;
                    self.scan = Scan::Compressed {
                        left: left - n as u64,
                        mask,
                        taken: taken + n as u64,
                        fin,
                    };
                }
            }
        }
    }

    /// Starts scanning the frame of `header`'s payload; true when this reader keeps the frame
    /// (part of a compressed message), false when it passes through, header and all.
    fn enter_frame(&mut self, header: &Header) -> io::Result<bool> {
        let kept = self.starts_compressed(header)?;
        self.scan = match kept {
            true => Scan::Compressed {
                left: header.length,
                mask: header.mask.unwrap_or_default(),
                taken: 0,
                fin: header.fin,
            },
            false => Scan::Plain(header.length),
        };
        Ok(kept)
    }

    /// Whether the frame of `header` belongs to a compressed message (RFC 7692 section 6.1:
    /// RSV1 on its first frame only); misplaced RSV1 bits are refused here, since tungstenite
    /// never sees the frames of a compressed message.
    fn starts_compressed(&mut self, header: &Header) -> io::Result<bool> {
        let misplaced = || io::Error::other(InflateError::Misplaced);
        let data = matches!(header.opcode, OPCODE_TEXT | OPCODE_BINARY);
        // What this reader keeps for itself tungstenite never checks: a client frame must be
        // masked (RFC 6455 section 5.1) and set no reserved bit the extension does not define.
        let checked = header.mask.is_some() && !header.rsv23;
        if self.message.is_some() {
            return match header.opcode {
                OPCODE_CONTINUATION if !header.rsv1 && checked => {
                    self.frame_fits(header).map(|()| true)
                }
                opcode if opcode >= 0x8 => Ok(false),
                _ => Err(misplaced()),
            };
        }
        if !header.rsv1 || !data {
            // Passed on as it is (tungstenite refuses RSV1 on any other frame).
            if data || header.opcode == OPCODE_CONTINUATION {
                self.plain_fragments = !header.fin;
            }
            return Ok(false);
        }
        if self.plain_fragments || !checked {
            return Err(misplaced());
        }
        self.frame_fits(header)?;
        self.message = Some(Message {
            opcode: header.opcode,
            data: Vec::new(),
        });
        Ok(true)
    }

    /// A compressed message's frames may not carry more than the limit in all.
    fn frame_fits(&self, header: &Header) -> io::Result<()> {
        let held = self.message.as_ref().map_or(0, |m| m.data.len()) as u64;
        match held.saturating_add(header.length) > self.limit as u64 {
            true => Err(io::Error::other(InflateError::TooBig)),
            false => Ok(()),
        }
    }

    fn take_compressed(&mut self, bytes: &[u8], mask: [u8; 4], taken: u64) {
        let message = self.message.as_mut().expect("inside a compressed message");
        let phase = (taken % 4) as usize;
        message
            .data
            .extend((bytes.iter().enumerate()).map(|(i, byte)| byte ^ mask[(phase + i) % 4]));
    }

    /// Inflates the message just read into `ready`, as one final frame, masked with a zero
    /// key (tungstenite, reading as a server, wants client frames masked).
    fn finish_message(&mut self) -> io::Result<()> {
        let message = self.message.take().expect("inside a compressed message");
        let payload = deflate::inflate(&message.data, self.limit).map_err(io::Error::other)?;
        self.spend(payload.len())?;
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | message.opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&payload);
        self.ready = frame;
        Ok(())
    }

    /// Counts inflated bytes against the socket's budget for the current second.
    fn spend(&mut self, inflated: usize) -> io::Result<()> {
        let now = Instant::now();
        if now.duration_since(self.window.0) >= BUDGET_WINDOW {
            self.window = (now, 0);
        }
        self.window.1 += inflated;
        match self.window.1 > INFLATE_BUDGET_MIN.max(4 * self.limit) {
            true => Err(io::Error::other(InflateError::TooFast)),
            false => Ok(()),
        }
    }

    /// Puts unscanned bytes in front of what is carried already.
    fn carry_back(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut carry = Vec::with_capacity(bytes.len() + self.carry.len());
        carry.extend_from_slice(bytes);
        carry.extend_from_slice(&self.carry);
        self.carry = carry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::{Role, WebSocketContext};
    use tungstenite::Message;

    /// A socket that hands out at most `step` bytes per read, and `WouldBlock` between reads.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
        blocked: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.blocked = !self.blocked;
            if self.blocked {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.step.min(buf.len()).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// The inflater in front of tungstenite, as the connection reads.
    struct Reading<'a>(&'a mut InflatingReader, &'a mut Trickle);

    impl Read for Reading<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(self.1, buf)
        }
    }

    impl io::Write for Reading<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Every message tungstenite reads from `wire`, fed `step` bytes at a time into buffers of
    /// `chunk` bytes.
    fn read_all(wire: Vec<u8>, early: &[u8], step: usize, chunk: usize) -> Vec<Message> {
        let mut inflating = InflatingReader::new(1 << 16, early);
        let mut socket = Trickle {
            bytes: wire,
            at: 0,
            step,
            blocked: false,
        };
        let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(chunk);
        let mut context = WebSocketContext::new(Role::Server, Some(config));
        let mut messages = Vec::new();
        for _ in 0..100_000 {
            match context.read(&mut Reading(&mut inflating, &mut socket)) {
                Ok(message) => messages.push(message),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.at == socket.bytes.len() && inflating.is_idle() {
                        return messages;
                    }
                }
                Err(error) => panic!("{error}"),
            }
        }
        panic!("never finished");
    }

    #[test]
    fn plain_and_compressed_frames_come_out_whole_however_the_bytes_arrive() {
        let long = "x".repeat(300);
        let compressed = deflate::compress(long.as_bytes());
        let (head, tail) = compressed.split_at(3);
        let mut wire = client_frame(0x81, b"plain one");
        wire.extend(client_frame(0xc1, &deflate::compress(b"short")));
        wire.extend(client_frame(0x41, head));
        wire.extend(client_frame(0x89, b"p"));
        wire.extend(client_frame(0x80, tail));
        wire.extend(client_frame(0x01, b"frag"));
        wire.extend(client_frame(0x80, b"mented"));
        wire.extend(client_frame(0xc1, &deflate::compress(b"")));
        let expected = vec![
            Message::text("plain one"),
            Message::text("short"),
            Message::Ping(b"p".to_vec().into()),
            Message::text(long.clone()),
            Message::text("fragmented"),
            Message::text(""),
        ];
        for (step, chunk) in [(1, 2048), (3, 7), (5000, 2048), (5000, 16)] {
            assert_eq!(
                read_all(wire.clone(), &[], step, chunk),
                expected,
                "{step} {chunk}"
            );
        }
        // What came with the upgrade request, larger than a read buffer.
        let split = wire.len() - 20;
        let early = &wire[..split];
        assert_eq!(read_all(wire[split..].to_vec(), early, 4, 16), expected);
    }

    #[test]
    fn misplaced_compressed_frames_are_refused() {
        let inside_plain = [client_frame(0x01, b"a"), client_frame(0xc1, b"b")].concat();
        let continuation = [client_frame(0x41, b"a"), client_frame(0xc0, b"b")].concat();
        for wire in [inside_plain, continuation] {
            let mut inflating = InflatingReader::new(1024, &wire);
            let mut buf = [0u8; 64];
            let error = loop {
                match inflating.read(&mut io::empty(), &mut buf) {
                    Ok(0) => panic!("accepted"),
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            };
            let kind = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<InflateError>());
            assert_eq!(kind, Some(&InflateError::Misplaced));
        }
    }
}

#[cfg(test)]
mod review_tests;
