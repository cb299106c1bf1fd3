//! This machine's fan-out floor, measured beside the fan-out scenario.
//!
//! - `sendfloor.c` (the project's reference): one write per socket, back to back, with a reader
//!   process that is always busy.
//! - The paced floor: the same writes, one round per event at the scenario's rate. Each round
//!   now finds the reader idle and every socket's kernel state cold, which costs more per write
//!   than the back-to-back loop; no server can deliver the scenario for less.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use serde_json::Value;

/// Frame size of both floors (sendfloor's own figure of a small event).
const FRAME_BYTES: usize = 150;

/// Compiles and runs sendfloor with the fan-out sizes; its JSON line, if it could run.
pub fn sendfloor(source: &Path, conns: usize) -> Option<Value> {
    sendfloor_rounds(source, conns, 500)
}

/// Compiles and runs sendfloor: `rounds` writes to each of `conns` sockets.
pub fn sendfloor_rounds(source: &Path, conns: usize, rounds: usize) -> Option<Value> {
    let binary = std::env::temp_dir().join(format!("sendfloor-{}", std::process::id()));
    let built = Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&binary)
        .arg(source)
        .status()
        .ok()?;
    if !built.success() {
        return None;
    }
    let output = Command::new(&binary)
        .args([
            conns.to_string(),
            rounds.to_string(),
            FRAME_BYTES.to_string(),
        ])
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&binary);
    serde_json::from_slice(&output.stdout).ok()
}

/// CPU microseconds per write of `rate` rounds per second over `conns` sockets for `secs`.
pub fn paced(conns: usize, rate: u64, secs: u64) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let rounds = rate * secs;
    let total = conns as u64 * rounds * FRAME_BYTES as u64;
    let reader = std::thread::spawn(move || read_everything(addr, conns, total));
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (socket, _) = listener.accept()?;
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    let frame = [b'x'; FRAME_BYTES];
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let cpu_before = thread_cpu_seconds();
    let start = Instant::now();
    for round in 0..rounds {
        let due = start + period.mul_f64(round as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        for socket in &mut sockets {
            socket.write_all(&frame)?;
        }
    }
    let cpu = thread_cpu_seconds() - cpu_before;
    let read = reader
        .join()
        .map_err(|_| io::Error::other("reader panicked"))??;
    if read != total {
        return Err(io::Error::other(format!("read {read} of {total} bytes")));
    }
    Ok(cpu * 1e6 / (conns as u64 * rounds) as f64)
}

/// Connects `conns` sockets and reads them with one epoll loop until `total` bytes arrived.
fn read_everything(addr: SocketAddr, conns: usize, total: u64) -> io::Result<u64> {
    let mut poll = Poll::new()?;
    let mut streams = Vec::with_capacity(conns);
    for index in 0..conns {
        let stream = TcpStream::connect(addr)?;
        stream.set_nonblocking(true)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(index), Interest::READABLE)?;
        streams.push(stream);
    }
    let mut events = Events::with_capacity(512);
    let mut buffer = vec![0; 64 * 1024];
    let mut read = 0;
    while read < total {
        poll.poll(&mut events, Some(Duration::from_secs(5)))?;
        if events.is_empty() {
            break;
        }
        for event in events.iter() {
            let stream = &mut streams[event.token().0];
            // Edge-triggered: read until the socket is empty.
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => read += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(read)
}

/// CPU seconds (user and system) of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
