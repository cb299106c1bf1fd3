//! `herald-bench connect-floor`: a hidden mode, the least a WebSocket server can do per
//! connection, as a process of its own so its CPU is read from /proc like the server's. One
//! epoll loop: accept, read the upgrade request, write the 101 with the accept key, read one
//! frame, write one frame (a `subscription_succeeded`), then hold the socket until the client
//! closes it. Driven by the same scale clients as Herald, it is the connect floor of the
//! scale scenario.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::kernel::raise_fd_limit;
use crate::ws_wire::{self, OP_TEXT};

const LISTENER: Token = Token(usize::MAX);

/// The one frame the floor writes per connection.
const ANSWER: &[u8] =
    br#"{"event":"pusher_internal:subscription_succeeded","channel":"floor","data":"{}"}"#;

/// A connection of the floor.
struct FloorConn {
    stream: TcpStream,
    upgraded: bool,
    inbox: Vec<u8>,
}

/// Serves on 127.0.0.1:`port` until killed; the exit code if it cannot.
pub fn run(port: u16) -> i32 {
    raise_fd_limit();
    match serve(SocketAddr::from(([127, 0, 0, 1], port))) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("connect-floor: {error}");
            1
        }
    }
}

fn serve(addr: SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<FloorConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 16 * 1024];
    loop {
        poll.poll(&mut events, Some(Duration::from_secs(1)))?;
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&poll, &mut listener, &mut conns, &mut free)?;
                continue;
            }
            let index = event.token().0;
            let Some(conn) = conns[index].as_mut() else {
                continue;
            };
            if !conn.on_readable(&mut scratch) {
                conns[index] = None;
                free.push(index);
            }
        }
    }
}

fn accept_all(
    poll: &Poll,
    listener: &mut TcpListener,
    conns: &mut Vec<Option<FloorConn>>,
    free: &mut Vec<usize>,
) -> io::Result<()> {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors or the like: say so, keep serving the rest.
                eprintln!("connect-floor: accept: {e}");
                return Ok(());
            }
        };
        stream.set_nodelay(true)?;
        let index = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        poll.registry()
            .register(&mut stream, Token(index), Interest::READABLE)?;
        conns[index] = Some(FloorConn {
            stream,
            upgraded: false,
            inbox: Vec::new(),
        });
    }
}

impl FloorConn {
    /// Reads what there is and answers; false once the connection is over.
    fn on_readable(&mut self, scratch: &mut [u8]) -> bool {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return false,
                Ok(n) => self.inbox.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if !self.upgraded {
            let Some(head) = ws_wire::head_length(&self.inbox) else {
                return true;
            };
            let Some(key) = ws_wire::request_key(&self.inbox[..head]) else {
                return false;
            };
            let response = ws_wire::switching_response(key);
            if self.stream.write_all(&response).is_err() {
                return false;
            }
            self.upgraded = true;
            self.inbox.drain(..head);
        }
        while let Some(frame) = ws_wire::parse_frame(&self.inbox) {
            self.inbox.drain(..frame.length);
            let mut out = Vec::with_capacity(ANSWER.len() + 4);
            ws_wire::write_frame(&mut out, OP_TEXT, ANSWER, None);
            // Small writes into an empty socket buffer: the kernel takes them whole.
            if self.stream.write_all(&out).is_err() {
                return false;
            }
        }
        if self.inbox.is_empty() {
            self.inbox = Vec::new();
        }
        true
    }
}
