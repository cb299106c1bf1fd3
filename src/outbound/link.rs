//! How bytes reach the peer and come back: straight through the socket, or through a sans-IO
//! TLS session (`rustls::ServerConnection`) kept beside the socket under the outbound queue's
//! lock. A shared frame is encrypted into that socket's session and written with the same
//! non-blocking write as a plain one ("one encryption and one non-blocking send" per socket),
//! so TLS needs no task per socket and no `TlsStream`.
//!
//! The session holds at most [`TLS_SEND_BUFFER`] bytes of ciphertext not yet written: past it,
//! frames wait in the queue as plaintext, where its bounds apply as they do without TLS.

use std::io::{self, IoSlice, Read, Write};

use rustls::ServerConnection;
use tokio::net::TcpStream;

/// Ciphertext a TLS session may hold unwritten before it takes no more plaintext.
const TLS_SEND_BUFFER: usize = 16 * 1024;

/// The socket's way to the peer.
pub enum Link {
    /// Bytes go to the socket as they are.
    Plain,
    /// Bytes are encrypted by this session (the handshake is done).
    Tls(Box<ServerConnection>),
}

/// `try_write` as `Write`: a full socket is `WouldBlock`.
struct SocketWriter<'a>(&'a TcpStream);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `try_read` as `Read`: nothing to read is `WouldBlock`.
struct SocketReader<'a>(&'a TcpStream);

impl Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Link {
    /// A TLS link for a session whose handshake is done.
    pub fn tls(mut session: ServerConnection) -> Link {
        session.set_buffer_limit(Some(TLS_SEND_BUFFER));
        Link::Tls(Box::new(session))
    }

    /// Whether ciphertext waits in the session: nothing new may go to the socket before it.
    pub fn pending(&self) -> bool {
        match self {
            Link::Plain => false,
            Link::Tls(session) => session.wants_write(),
        }
    }

    /// Writes the ciphertext waiting in the session; `Ok(false)` when the socket is full.
    pub fn drain(&mut self, socket: &TcpStream) -> io::Result<bool> {
        let Link::Tls(session) = self else {
            return Ok(true);
        };
        while session.wants_write() {
            match session.write_tls(&mut SocketWriter(socket)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Sends the start of `slices`; how many of their bytes were taken (`WouldBlock` when
    /// none could be).
    pub fn write(&mut self, socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let Link::Tls(_) = self else {
            // One frame (every fan-out write): `write`, which costs less than `writev`.
            return match slices {
                [one] => socket.try_write(one),
                _ => socket.try_write_vectored(slices),
            };
        };
        if !self.drain(socket)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let Link::Tls(session) = self else {
            unreachable!("checked above")
        };
        let taken = session.writer().write_vectored(slices)?;
        if taken == 0 && slices.iter().any(|s| !s.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // What the socket does not take now stays in the session, bounded by its buffer limit.
        self.drain(socket)?;
        Ok(taken)
    }

    /// Reads plaintext the peer sent: what the session has decrypted, else what the socket
    /// brings; `Ok(0)` at the end of the stream.
    pub fn read(&mut self, socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let Link::Tls(session) = self else {
            return socket.try_read(buf);
        };
        loop {
            match session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if session.read_tls(&mut SocketReader(socket))? == 0 {
                return Ok(0);
            }
            let state = session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                return Ok(0);
            }
        }
    }

    /// Queues the TLS `close_notify` alert (written with what is left).
    pub fn close_notify(&mut self) {
        if let Link::Tls(session) = self {
            session.send_close_notify();
        }
    }
}
