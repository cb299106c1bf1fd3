//! One socket of a scale client: opened from its own loopback source address, upgraded,
//! subscribed, then answering pings and noting marked broadcasts. It holds a descriptor, two
//! buffers that stay empty between reads (no capacity kept) and a few counters: well under
//! 100 bytes plus the kernel's share.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mio::net::TcpStream;

use crate::ws_wire::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// The event name of a marked broadcast; its data is `m=<marker>`.
pub const MARK_EVENT: &str = "scale-mark";

/// Where a socket stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Upgrading,
    Subscribing,
    Ready,
}

/// What a socket's bytes meant, for the client's counters.
pub enum Note {
    /// Every subscription succeeded.
    Ready,
    /// A marked broadcast arrived.
    Marked(u32),
    /// A WebSocket Ping or a `pusher:ping` was answered.
    Pinged,
    /// The socket is of no more use (closed, refused, an error): why.
    Failed(String),
}

/// The subscribe texts of a socket, made only when they are sent.
pub type Subscribe<'a> = &'a dyn Fn() -> Vec<Vec<u8>>;

/// One client socket.
pub struct Conn {
    stream: TcpStream,
    stage: Stage,
    /// Subscriptions not yet confirmed.
    pending: u8,
    /// Bytes of an incomplete head or frame, kept between reads.
    inbox: Vec<u8>,
    /// Bytes the kernel did not take yet.
    outbox: Vec<u8>,
    mask: [u8; 4],
}

/// Opens a non-blocking socket bound to `source` (port chosen at connect, so every source
/// address has its own ephemeral range per server port) and starts connecting to `server`.
/// Linger 0: closing sends a reset, so a run leaves no TIME_WAIT behind for the next one.
pub fn open(source: Ipv4Addr, server: SocketAddrV4, index: u64) -> io::Result<Conn> {
    // SAFETY: socket() returns a new descriptor or -1; it is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_option(&fd, libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
    set_option(&fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    raw_option(&fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger)?;
    let from = sockaddr(SocketAddrV4::new(source, 0));
    let to = sockaddr(server);
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: both addresses are valid sockaddr_in of `size` bytes.
    unsafe {
        if libc::bind(fd.as_raw_fd(), &from as *const _ as *const _, size) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::connect(fd.as_raw_fd(), &to as *const _ as *const _, size) < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(error);
            }
        }
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(fd));
    let i = index as u32;
    Ok(Conn {
        stream,
        stage: Stage::Connecting,
        pending: 0,
        inbox: Vec::new(),
        outbox: Vec::new(),
        mask: [0x5A ^ i as u8, (i >> 8) as u8, (i >> 16) as u8, 0xA5],
    })
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn set_option(fd: &OwnedFd, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    raw_option(fd, level, name, &value)
}

fn raw_option<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    let size = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points to `size` readable bytes.
    let done =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value as *const T as _, size) };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Conn {
    /// The stream, to register with the poll.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Whether every subscription was confirmed.
    pub fn is_ready(&self) -> bool {
        self.stage == Stage::Ready
    }

    /// The socket became writable: the connect finished (send the upgrade request), or the
    /// kernel has room for what was left over.
    pub fn on_writable(&mut self, port: u16, app_key: &str, notes: &mut Vec<Note>) {
        if self.stage == Stage::Connecting {
            if let Ok(Some(error)) | Err(error) = self.stream.take_error() {
                return notes.push(Note::Failed(format!("connect: {error}")));
            }
            self.stage = Stage::Upgrading;
            let request = ws_wire::upgrade_request(port, app_key);
            return self.send(&request, notes);
        }
        self.flush(notes);
    }

    /// Reads everything there is; `scratch` is shared by every socket of the client, so a
    /// socket keeps bytes only when a frame is cut between reads.
    /// `subscribe` gives the socket's subscribe texts, asked for once the upgrade succeeded.
    pub fn on_readable(&mut self, scratch: &mut [u8], subscribe: Subscribe, notes: &mut Vec<Note>) {
        loop {
            let read = match self.stream.read(scratch) {
                Ok(0) => return notes.push(Note::Failed("closed by the server".into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return notes.push(Note::Failed(format!("read: {e}"))),
            };
            if self.inbox.is_empty() {
                let used = self.consume(&scratch[..read], subscribe, notes);
                self.inbox.extend_from_slice(&scratch[used..read]);
            } else {
                let mut bytes = std::mem::take(&mut self.inbox);
                bytes.extend_from_slice(&scratch[..read]);
                let used = self.consume(&bytes, subscribe, notes);
                // A fresh Vec: the leftover is rare and small, the capacity is not kept.
                self.inbox = bytes[used..].to_vec();
            }
        }
    }

    /// Handles the complete head and frames at the start of `bytes`; returns the bytes used.
    fn consume(&mut self, bytes: &[u8], subscribe: Subscribe, notes: &mut Vec<Note>) -> usize {
        let mut used = 0;
        if self.stage == Stage::Upgrading {
            let Some(head) = ws_wire::head_length(bytes) else {
                return 0;
            };
            if !ws_wire::is_switching(&bytes[..head]) {
                let line = bytes[..head].split(|b| *b == b'\r').next().unwrap_or(&[]);
                notes.push(Note::Failed(String::from_utf8_lossy(line).into_owned()));
                return bytes.len();
            }
            used = head;
            self.stage = Stage::Subscribing;
            let frames = subscribe();
            self.pending = frames.len() as u8;
            for frame in &frames {
                let mut out = Vec::with_capacity(frame.len() + 8);
                ws_wire::write_frame(&mut out, OP_TEXT, frame, Some(self.mask));
                self.send(&out, notes);
            }
        }
        while let Some(frame) = ws_wire::parse_frame(&bytes[used..]) {
            let payload = &bytes[used..][frame.payload.clone()];
            self.on_frame(frame.opcode, payload, notes);
            used += frame.length;
        }
        used
    }

    fn on_frame(&mut self, opcode: u8, payload: &[u8], notes: &mut Vec<Note>) {
        match opcode {
            OP_TEXT => self.on_text(payload, notes),
            OP_PING => {
                let mut out = Vec::with_capacity(payload.len() + 8);
                ws_wire::write_frame(&mut out, OP_PONG, payload, Some(self.mask));
                self.send(&out, notes);
                notes.push(Note::Pinged);
            }
            OP_CLOSE => {
                let code = payload
                    .get(..2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                notes.push(Note::Failed(format!("closed by the server ({code})")));
            }
            _ => {}
        }
    }

    fn on_text(&mut self, text: &[u8], notes: &mut Vec<Note>) {
        if ws_wire::contains(text, MARK_EVENT.as_bytes()) {
            if let Some(marker) = marker_of(text) {
                notes.push(Note::Marked(marker));
            }
        } else if ws_wire::contains(text, b"pusher_internal:subscription_succeeded") {
            self.pending = self.pending.saturating_sub(1);
            if self.pending == 0 && self.stage == Stage::Subscribing {
                self.stage = Stage::Ready;
                notes.push(Note::Ready);
            }
        } else if ws_wire::contains(text, b"\"pusher:ping\"") {
            let mut out = Vec::with_capacity(48);
            let pong = br#"{"event":"pusher:pong","data":{}}"#;
            ws_wire::write_frame(&mut out, OP_TEXT, pong, Some(self.mask));
            self.send(&out, notes);
            notes.push(Note::Pinged);
        } else if ws_wire::contains(text, b"error\"") {
            notes.push(Note::Failed(String::from_utf8_lossy(text).into_owned()));
        }
    }

    /// Writes `bytes` now, or keeps what the kernel does not take for the next writable edge.
    fn send(&mut self, bytes: &[u8], notes: &mut Vec<Note>) {
        self.outbox.extend_from_slice(bytes);
        self.flush(notes);
    }

    fn flush(&mut self, notes: &mut Vec<Note>) {
        while !self.outbox.is_empty() {
            match self.stream.write(&self.outbox) {
                Ok(n) => drop(self.outbox.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return notes.push(Note::Failed(format!("write: {e}"))),
            }
        }
        self.outbox = Vec::new();
    }
}

/// The marker of a marked broadcast's frame (`... "data":"m=17" ...`).
fn marker_of(text: &[u8]) -> Option<u32> {
    let at = text.windows(2).position(|w| w == b"m=")? + 2;
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_read_from_the_frame() {
        let frame = br#"{"event":"scale-mark","channel":"scale-all","data":"m=17"}"#;
        assert_eq!(marker_of(frame), Some(17));
        assert_eq!(marker_of(b"{}"), None);
    }
}
