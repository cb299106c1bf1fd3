//! `herald-bench scale-client`: a hidden mode, a child process of the scale scenario holding
//! up to its own descriptor limit of sockets on one epoll loop (one thread). It speaks to its
//! parent in lines: commands on stdin (`connect`, `stats`, `report M`, `quit`), JSON on stdout
//! (`hello`, `ready`, `stats`, `mark`). Stdin closing means quit, so a parent that dies takes
//! its clients with it.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use clap::Parser;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use crate::kernel::{monotonic_nanos, raise_fd_limit};
use crate::scale_conn::{self, Conn, Note};
use crate::scale_marks::Marks;

/// Descriptors kept for what is not a client socket (epoll, stdio, the runtime's few).
pub const RESERVED_FDS: u64 = 100;
/// Sockets per loopback source address: far below the ~28,000 ephemeral ports each has.
pub const PER_ADDRESS: u64 = 1000;

const STDIN: Token = Token(usize::MAX);

/// How a client process is asked to connect.
#[derive(Parser, Clone)]
pub struct ClientArgs {
    /// The server's port on 127.0.0.1.
    #[arg(long)]
    pub port: u16,
    /// Sockets to open.
    #[arg(long)]
    pub count: u64,
    /// The scenario-wide index of the first socket (channel names, source addresses).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Handshakes in flight at most.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// A channel every socket also subscribes to.
    #[arg(long)]
    pub shared: Option<String>,
    /// Every so many sockets (by index) one goes to a large shared channel instead of its own
    /// (0: none).
    #[arg(long, default_value_t = 0)]
    pub big_every: u64,
    /// Large shared channels.
    #[arg(long, default_value_t = 4)]
    pub big_channels: u64,
    /// The app key of the upgrade path.
    #[arg(long, default_value = crate::target::KEY)]
    pub app_key: String,
    /// Spreads the sockets over this many app keys: socket `i` (scenario-wide) uses
    /// `{app_key}{i % app_keys}` (0: `app_key` itself for every socket).
    #[arg(long, default_value_t = 0)]
    pub app_keys: u64,
}

impl ClientArgs {
    /// The app key of socket `index`'s upgrade path.
    pub fn key(&self, index: u64) -> std::borrow::Cow<'_, str> {
        match self.app_keys {
            0 => self.app_key.as_str().into(),
            keys => format!("{}{}", self.app_key, index % keys).into(),
        }
    }

    /// The channels socket `index` subscribes to.
    pub fn channels(&self, index: u64) -> Vec<String> {
        let own = match self.big_every {
            every if every > 0 && index.is_multiple_of(every) => {
                format!("scale-big-{}", (index / every) % self.big_channels.max(1))
            }
            _ => format!("scale-own-{index}"),
        };
        std::iter::once(own).chain(self.shared.clone()).collect()
    }
}

/// The loopback source address of socket `index`: 127.a.b.c, never .0 or .255 last, never
/// 127.0.0.x (the servers' own).
pub fn source_address(index: u64) -> Ipv4Addr {
    let slot = index / PER_ADDRESS;
    let c = 1 + (slot % 254) as u8;
    let b = ((slot / 254) % 256) as u8;
    let a = 1 + ((slot / 254 / 256) % 254) as u8;
    Ipv4Addr::new(127, a, b, c)
}

/// The state of a client process.
struct Client {
    args: ClientArgs,
    server: SocketAddrV4,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    opened: u64,
    in_flight: usize,
    ready: u64,
    failed: u64,
    errors: Vec<String>,
    pings: u64,
    started_ns: u64,
    last_ready_ns: u64,
    reported_ready: bool,
    marks: Marks,
}

/// Runs a client process to its end; the exit code.
pub fn run(args: ClientArgs) -> i32 {
    let limit = raise_fd_limit();
    let room = limit.saturating_sub(RESERVED_FDS);
    println!(
        "{}",
        json!({"hello": {"fd_limit": limit, "room": room, "count": args.count}})
    );
    if args.count > room {
        eprintln!(
            "scale-client: {} sockets asked, room for {room}",
            args.count
        );
        return 2;
    }
    match Client::new(args).and_then(|mut client| client.serve()) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("scale-client: {error}");
            1
        }
    }
}

impl Client {
    fn new(args: ClientArgs) -> io::Result<Client> {
        let poll = Poll::new()?;
        let stdin = io::stdin().as_raw_fd();
        // SAFETY: fcntl on our own stdin; non-blocking so the loop never waits on it.
        unsafe { libc::fcntl(stdin, libc::F_SETFL, libc::O_NONBLOCK) };
        poll.registry()
            .register(&mut SourceFd(&stdin), STDIN, Interest::READABLE)?;
        let count = args.count as usize;
        Ok(Client {
            server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, args.port),
            conns: (0..count).map(|_| None).collect(),
            marks: Marks::default(),
            args,
            poll,
            opened: 0,
            in_flight: 0,
            ready: 0,
            failed: 0,
            errors: Vec::new(),
            pings: 0,
            started_ns: 0,
            last_ready_ns: 0,
            reported_ready: false,
        })
    }

    /// The loop: commands, then socket events, until `quit` or stdin closes.
    fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024];
        let mut commands = Vec::new();
        let mut connecting = false;
        loop {
            self.poll
                .poll(&mut events, Some(Duration::from_millis(200)))?;
            for event in events.iter() {
                if event.token() == STDIN {
                    if !read_commands(&mut commands) {
                        return Ok(());
                    }
                    continue;
                }
                self.on_event(event, &mut scratch);
            }
            for command in commands.drain(..) {
                match command.as_str() {
                    "connect" => {
                        connecting = true;
                        self.started_ns = monotonic_nanos();
                    }
                    "stats" => self.print_stats(),
                    "quit" => return Ok(()),
                    other => match other.strip_prefix("report ").map(str::parse) {
                        Some(Ok(marker)) => self.marks.print(marker, self.args.count),
                        _ => eprintln!("scale-client: unknown command {other:?}"),
                    },
                }
            }
            if connecting {
                self.open_more();
            }
        }
    }

    fn on_event(&mut self, event: &mio::event::Event, scratch: &mut [u8]) {
        let index = event.token().0;
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        let mut notes = Vec::new();
        if event.is_writable() {
            let key = self.args.key(self.args.first + index as u64);
            conn.on_writable(self.args.port, &key, &mut notes);
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            let args = &self.args;
            let frames = || subscribe_texts(&args.channels(args.first + index as u64));
            conn.on_readable(scratch, &frames, &mut notes);
        }
        let now = monotonic_nanos();
        for note in notes {
            self.on_note(index, note, now);
        }
    }

    fn on_note(&mut self, index: usize, note: Note, now: u64) {
        match note {
            Note::Ready => {
                self.ready += 1;
                self.in_flight -= 1;
                self.last_ready_ns = now;
                self.check_all_ready();
            }
            Note::Marked(marker) => {
                // Every socket asked for: one that closed since misses the broadcast.
                let slots = self.conns.len();
                self.marks
                    .arrived(marker, index, slots, now, self.args.count);
            }
            Note::Pinged => self.pings += 1,
            Note::Failed(why) => {
                let Some(conn) = self.conns[index].take() else {
                    return;
                };
                if conn.is_ready() {
                    self.ready -= 1;
                } else {
                    self.in_flight -= 1;
                }
                self.failed += 1;
                if self.errors.len() < 5 {
                    self.errors.push(why);
                }
                self.check_all_ready();
            }
        }
    }

    /// Opens sockets until `concurrency` handshakes are in flight or all are open.
    fn open_more(&mut self) {
        while self.in_flight < self.args.concurrency && self.opened < self.args.count {
            let index = self.opened;
            self.opened += 1;
            let global = self.args.first + index;
            let source = source_address(global);
            let opened = scale_conn::open(source, self.server, global).and_then(|mut conn| {
                let interest = Interest::READABLE | Interest::WRITABLE;
                let token = Token(index as usize);
                self.poll
                    .registry()
                    .register(conn.stream(), token, interest)?;
                Ok(conn)
            });
            match opened {
                Ok(conn) => {
                    self.conns[index as usize] = Some(conn);
                    self.in_flight += 1;
                }
                Err(error) => {
                    self.failed += 1;
                    if self.errors.len() < 5 {
                        self.errors.push(format!("open from {source}: {error}"));
                    }
                }
            }
        }
        self.check_all_ready();
    }

    /// Says `ready` once, when every socket is subscribed or failed.
    fn check_all_ready(&mut self) {
        if self.reported_ready || self.ready + self.failed < self.args.count {
            return;
        }
        self.reported_ready = true;
        let line = json!({"ready": {
            "ready": self.ready, "failed": self.failed, "errors": self.errors,
            "started_ns": self.started_ns, "last_ready_ns": self.last_ready_ns,
        }});
        println!("{line}");
    }

    fn print_stats(&self) {
        let line = json!({"stats": {
            "ready": self.ready, "failed": self.failed, "pings": self.pings,
            "errors": self.errors,
        }});
        println!("{line}");
    }
}

/// The `pusher:subscribe` texts of a socket's channels.
fn subscribe_texts(channels: &[String]) -> Vec<Vec<u8>> {
    channels
        .iter()
        .map(|c| json!({"event": "pusher:subscribe", "data": {"channel": c}}).to_string())
        .map(String::into_bytes)
        .collect()
}

/// Reads stdin's complete lines into `commands`; false once stdin is closed.
fn read_commands(commands: &mut Vec<String>) -> bool {
    let mut buffer = [0u8; 4096];
    let mut text = String::new();
    loop {
        match io::stdin().lock().read(&mut buffer) {
            Ok(0) => return false,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    commands.extend(text.lines().map(|l| l.trim().to_owned()));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_rotate_and_skip_the_servers() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source_address(999), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source_address(1000), Ipv4Addr::new(127, 1, 0, 2));
        assert_eq!(source_address(254_000), Ipv4Addr::new(127, 1, 1, 1));
        // A million sockets take a thousand addresses.
        assert_eq!(source_address(999_999), Ipv4Addr::new(127, 1, 3, 238));
    }

    #[test]
    fn channels_of_a_socket() {
        let args = ClientArgs::parse_from([
            "c",
            "--port",
            "1",
            "--count",
            "1",
            "--shared",
            "all",
            "--big-every",
            "10",
        ]);
        assert_eq!(args.channels(3), ["scale-own-3", "all"]);
        assert_eq!(args.channels(20), ["scale-big-2", "all"]);
    }
}
