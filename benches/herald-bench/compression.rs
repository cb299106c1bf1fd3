//! `--scenario compression`: what `permessage-deflate` costs and saves on a broadcast of a
//! typical 1-2 KiB JSON event. Raw clients (one epoll loop, hand-written frames) subscribe one
//! channel, offering the extension or not; REST publishes go to it at a fixed rate. Three runs,
//! each on a fresh server: compression off; `"shared"` with clients offering the extension;
//! `"shared"` with half of them offering it. Reported per delivery: bytes on the wire (what
//! the clients read) and server CPU; and the cost of one compression of the event (timed here
//! with the same deflate settings), which a per-connection compressor (Sockudo's `dedicated`)
//! pays per delivery and compress-once per broadcast.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use crate::clients::Publisher;
use crate::report::Report;
use crate::target::{self, free_port, Target};
use crate::ws_wire;

const CHANNEL: &str = "compressed";
const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The sizes of a run.
pub struct Sizes {
    pub subscribers: usize,
    pub rate: u64,
    pub secs: u64,
}

/// One subscriber: its socket, what it has read and not parsed, and its tallies.
struct Subscriber {
    stream: mio::net::TcpStream,
    pending: Vec<u8>,
    bytes: u64,
    events: u64,
    compressed: u64,
    /// The last event's payload as it came (to check it inflates back to the JSON sent).
    last: Option<(bool, Vec<u8>)>,
}

/// A JSON event of about 1.5 KiB: an order book snapshot, as a market-data app sends.
fn event_data(seq: u64) -> String {
    let levels = |side: u64| -> Vec<serde_json::Value> {
        (0..26)
            .map(|i| {
                json!([
                    format!(
                        "{}.{:02}",
                        43_000 + side * 40 + i * 3 + seq % 7,
                        (i * 17 + seq) % 100
                    ),
                    format!("{:.4}", 0.05 + ((i * 31 + seq) % 97) as f64 / 37.0)
                ])
            })
            .collect()
    };
    json!({"symbol": "BTC-USD", "seq": seq, "bids": levels(0), "asks": levels(1), "ts": 1_765_000_000_000u64 + seq})
        .to_string()
}

/// Runs the three configurations and reports them side by side.
pub async fn compression(server: &str, sizes: &Sizes) -> Result<Report, String> {
    let mut report = Report::new("compression");
    let sample = event_data(0);
    report.add("event data bytes", sample.len() as f64, "B");
    let runs = [
        ("off", "disabled", 0.0),
        ("shared, all offer", "shared", 1.0),
        ("shared, half offer", "shared", 0.5),
    ];
    for (name, mode, offering) in runs {
        let run = one_run(server, sizes, mode, offering).await?;
        report.add_from(&format!("{name}: "), &run, &ROWS);
    }
    let micros = compress_micros(sample.as_bytes());
    report.add("one compression of the event (level 6)", micros, "us");
    let plain = report.value("off: server CPU per delivery");
    let once = report.value("shared, all offer: server CPU per delivery");
    // Per connection, every delivery pays the compression the shared mode pays once.
    report.add(
        "per-connection compression, estimated CPU per delivery",
        plain + micros,
        "us",
    );
    report.add("compress-once / off, CPU per delivery", once / plain, "x");
    report.add(
        "per-connection (estimated) / compress-once",
        (plain + micros) / once,
        "x",
    );
    Ok(report)
}

const ROWS: [&str; 7] = [
    "server RSS per idle subscribed socket",
    "deliveries",
    "compressed deliveries",
    "wire bytes per delivery",
    "server CPU per delivery",
    "lost deliveries",
    "bad payloads",
];

async fn one_run(server: &str, sizes: &Sizes, mode: &str, offering: f64) -> Result<Report, String> {
    let port = free_port();
    let mut config = target::config(port, None);
    config["websocket"] = json!({"compression": mode});
    let target = Target::start(server, &config, port)?;
    let offers = (sizes.subscribers as f64 * offering).round() as usize;
    let rss_before = target.rss_bytes();
    let subscribers: Vec<Subscriber> = (0..sizes.subscribers)
        .map(|i| subscribe(port, i < offers))
        .collect::<Result<_, _>>()?;
    // Idle, subscribed: a socket that negotiated compression keeps no state between messages.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_per_socket = (target.rss_bytes() as f64 - rss_before as f64) / sizes.subscribers as f64;
    let events = sizes.rate * sizes.secs;
    let reader = std::thread::spawn(move || read_all(subscribers, events));
    let cpu_before = target.cpu_seconds();
    let publisher = Publisher::new(port);
    let period = Duration::from_secs_f64(1.0 / sizes.rate as f64);
    let start = tokio::time::Instant::now();
    for seq in 0..events {
        tokio::time::sleep_until(start + period.mul_f64(seq as f64)).await;
        publisher.trigger(CHANNEL, "book", &event_data(seq)).await?;
    }
    let subscribers = tokio::task::spawn_blocking(move || reader.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the reader panicked".to_string())??;
    let cpu = target.cpu_seconds() - cpu_before;
    drop(target);
    let mut report = tally(&subscribers, events, cpu);
    report.add(
        "server RSS per idle subscribed socket",
        rss_per_socket / 1024.0,
        "KiB",
    );
    Ok(report)
}

fn tally(subscribers: &[Subscriber], events: u64, cpu: f64) -> Report {
    let mut report = Report::new("compression run");
    let delivered: u64 = subscribers.iter().map(|s| s.events).sum();
    let bytes: u64 = subscribers.iter().map(|s| s.bytes).sum();
    let bad = subscribers
        .iter()
        .filter(|s| !last_is_whole(s, events))
        .count();
    report.add("deliveries", delivered as f64, "");
    report.add(
        "compressed deliveries",
        subscribers.iter().map(|s| s.compressed).sum::<u64>() as f64,
        "",
    );
    report.add(
        "wire bytes per delivery",
        bytes as f64 / delivered.max(1) as f64,
        "B",
    );
    report.add(
        "server CPU per delivery",
        cpu * 1e6 / delivered.max(1) as f64,
        "us",
    );
    report.add(
        "lost deliveries",
        (events * subscribers.len() as u64 - delivered) as f64,
        "",
    );
    report.add("bad payloads", bad as f64, "");
    if delivered < events * subscribers.len() as u64 || bad > 0 {
        report.failure = Some("deliveries lost or payloads that do not decode".into());
    }
    report
}

/// Whether a subscriber's last event decodes (inflated when compressed) to the one sent.
fn last_is_whole(subscriber: &Subscriber, events: u64) -> bool {
    let Some((compressed, payload)) = &subscriber.last else {
        return false;
    };
    let text = match compressed {
        true => inflate(payload),
        false => payload.clone(),
    };
    let Ok(frame) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return false;
    };
    frame["data"].as_str() == Some(event_data(events - 1).as_str())
}

/// A subscribed socket (blocking through the handshake, then non-blocking for the reader).
fn subscribe(port: u16, offer: bool) -> Result<Subscriber, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut request = ws_wire::upgrade_request(port, target::KEY);
    if offer {
        let at = request.len() - 2;
        request.splice(
            at..at,
            format!("Sec-WebSocket-Extensions: {OFFER}\r\n").into_bytes(),
        );
    }
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut buffer = Vec::new();
    let head = read_until(&mut stream, &mut buffer, ws_wire::head_length)?;
    let agreed = String::from_utf8_lossy(&buffer[..head])
        .to_ascii_lowercase()
        .contains("permessage-deflate");
    buffer.drain(..head);
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": CHANNEL}}).to_string();
    let mut frame = Vec::new();
    ws_wire::write_frame(
        &mut frame,
        ws_wire::OP_TEXT,
        subscribe.as_bytes(),
        Some([7, 1, 3, 5]),
    );
    stream.write_all(&frame).map_err(|e| e.to_string())?;
    let needle = b"pusher_internal:subscription_succeeded";
    let end = read_until(&mut stream, &mut buffer, |b| {
        ws_wire::contains(b, needle).then_some(b.len())
    })?;
    if agreed != offer {
        return Err(format!("offered {offer}, the server agreed {agreed}"));
    }
    buffer.drain(..end);
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(Subscriber {
        stream: mio::net::TcpStream::from_std(stream),
        pending: buffer,
        bytes: 0,
        events: 0,
        compressed: 0,
        last: None,
    })
}

fn read_until(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Result<usize, String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = done(buffer) {
            return Ok(at);
        }
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Reads every subscriber until each has `events` events, or nothing arrived for 10 s.
fn read_all(mut subscribers: Vec<Subscriber>, events: u64) -> Result<Vec<Subscriber>, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    for (i, s) in subscribers.iter_mut().enumerate() {
        poll.registry()
            .register(&mut s.stream, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
    }
    let mut events_buf = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut complete = subscribers.iter().filter(|s| s.events >= events).count();
    let mut quiet_since = Instant::now();
    while complete < subscribers.len() && quiet_since.elapsed() < Duration::from_secs(10) {
        poll.poll(&mut events_buf, Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        for event in events_buf.iter() {
            let s = &mut subscribers[event.token().0];
            let before = s.events;
            drain(s, &mut chunk);
            if before < events && s.events >= events {
                complete += 1;
            }
            quiet_since = Instant::now();
        }
    }
    Ok(subscribers)
}

/// Reads what a socket has and counts the data frames in it.
fn drain(s: &mut Subscriber, chunk: &mut [u8]) {
    loop {
        match s.stream.read(chunk) {
            Ok(0) => return,
            Ok(n) => {
                s.bytes += n as u64;
                s.pending.extend_from_slice(&chunk[..n]);
            }
            Err(_) => break,
        }
    }
    let mut at = 0;
    while let Some(frame) = ws_wire::parse_frame(&s.pending[at..]) {
        let first = s.pending[at];
        if frame.opcode == ws_wire::OP_TEXT {
            let compressed = first & 0x40 != 0;
            s.events += 1;
            s.compressed += u64::from(compressed);
            let range = at + frame.payload.start..at + frame.payload.end;
            s.last = Some((compressed, s.pending[range].to_vec()));
        }
        at += frame.length;
    }
    s.pending.drain(..at);
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 8 + 1024);
    let _ = Decompress::new(false).decompress_vec(&input, &mut out, FlushDecompress::Sync);
    out
}

/// Microseconds of one raw-deflate compression of `payload` (level 6, a compressor reset per
/// message, as Herald's), the median of 1,000.
fn compress_micros(payload: &[u8]) -> f64 {
    let mut compressor = Compress::new(Compression::default(), false);
    let mut times: Vec<f64> = (0..1000)
        .map(|_| {
            let mut out = Vec::with_capacity(payload.len() + 128);
            let start = Instant::now();
            compressor.reset();
            let _ = compressor.compress_vec(payload, &mut out, FlushCompress::Sync);
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
