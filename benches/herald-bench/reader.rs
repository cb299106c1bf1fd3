//! A lean reader for the measuring side of the benchmark: after the handshake it reads raw
//! WebSocket frames from the TCP stream (server frames are never masked) and only scans each
//! text frame for its `t=<micros>` stamp, so the load generator spends little CPU per message
//! and the latency it reports is the server's, not its own. With `--tls` it reads through the
//! socket's rustls session (the decryption is the bench's CPU, not the server's). A server's
//! Ping is answered with a Pong, as any client must, so a socket that only listens outlives
//! `activity_timeout` (the soak scenario runs far past it).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

use crate::clients::Socket;
use crate::ws_wire::{write_frame, OP_PING, OP_PONG};

/// Reads the frames of one socket.
pub struct FrameReader {
    stream: MaybeTlsStream<TcpStream>,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

/// What one frame carried.
pub enum Frame {
    /// A text frame with a `t=` stamp.
    Stamped(u64),
    /// A close frame with its code.
    Close(Option<u16>),
    /// Any other frame.
    Other,
}

/// What [`parse`] found: a frame for the caller, or a Ping (with its payload) to answer.
enum Parsed {
    Frame(Frame),
    Ping(Vec<u8>),
}

impl FrameReader {
    /// Takes over a socket whose handshake and subscription are done and that has nothing
    /// buffered (no event was published yet).
    pub fn new(socket: Socket) -> FrameReader {
        FrameReader {
            stream: socket.into_inner(),
            buffer: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// The next frame, or `None` when the connection closed.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some((parsed, used)) = parse(&self.buffer[self.start..self.end]) {
                self.start += used;
                match parsed {
                    Parsed::Frame(frame) => return Some(frame),
                    Parsed::Ping(payload) => self.pong(&payload).await?,
                }
                continue;
            }
            // Make room: move the partial frame to the front, grow for a large one.
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buffer.len() {
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buffer[self.end..]).await.ok()?;
            if n == 0 {
                return None;
            }
            self.end += n;
        }
    }
}

impl FrameReader {
    /// Answers a Ping with a Pong carrying its payload (masked, as every client frame is).
    async fn pong(&mut self, payload: &[u8]) -> Option<()> {
        let mut frame = Vec::with_capacity(payload.len() + 6);
        write_frame(&mut frame, OP_PONG, payload, Some([0x5a, 0x17, 0xc3, 0x08]));
        self.stream.write_all(&frame).await.ok()
    }
}

/// One complete frame at the start of `bytes`, with the bytes it used.
fn parse(bytes: &[u8]) -> Option<(Parsed, usize)> {
    if bytes.len() < 2 {
        return None;
    }
    let opcode = bytes[0] & 0x0f;
    let (length, header) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 if bytes.len() >= 10 => (
            u64::from_be_bytes(bytes[2..10].try_into().ok()?) as usize,
            10,
        ),
        126 | 127 => return None,
        short => (short as usize, 2),
    };
    if bytes.len() < header + length {
        return None;
    }
    let payload = &bytes[header..header + length];
    let frame = match opcode {
        1 => stamp(payload).map_or(Frame::Other, Frame::Stamped),
        8 => {
            Frame::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])))
        }
        OP_PING => return Some((Parsed::Ping(payload.to_vec()), header + length)),
        _ => Frame::Other,
    };
    Some((Parsed::Frame(frame), header + length))
}

fn stamp(payload: &[u8]) -> Option<u64> {
    let at = payload.windows(2).position(|w| w == b"t=")? + 2;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value = 0u64;
    let mut any = false;
    for digit in digits {
        value = value * 10 + u64::from(digit - b'0');
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_parsed_for_an_answer() {
        let Some((Parsed::Ping(payload), used)) = parse(&[0x89, 2, b'h', b'i', 0x81]) else {
            panic!("not a ping");
        };
        assert_eq!((payload.as_slice(), used), (&b"hi"[..], 4));
        let Some((Parsed::Frame(Frame::Stamped(42)), _)) = parse(b"\x81\x04t=42") else {
            panic!("not a stamped frame");
        };
    }
}
