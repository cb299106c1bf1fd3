//! `permessage-deflate` (RFC 7692) on the wire: what an offer is answered with, broadcasts
//! compressed once and the same bytes to every socket that negotiated it, plain frames to the
//! rest, compressed client messages read (in fragments too) and a decompression bomb closing
//! only its own socket. The client here is raw: it frames, masks and inflates by itself (with
//! flate2, not the server's code).

use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster_node::ClusterNode;
use crate::redis_server::RedisServer;
use crate::support::{hmac_hex, Client, Rest, TestServer, APP_ID, KEY, SECRET, WAIT};

/// What Chromium and Node's `ws` offer.
const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Compression on, for payloads of 256 bytes or more.
fn compressing(config: &mut Value) {
    config["websocket"] = json!({"compression": "shared", "compression_threshold_bytes": 256});
}

/// A server with compression on, then `edit`.
async fn compressing_server(edit: impl FnOnce(&mut Value)) -> TestServer {
    TestServer::start_with(|c| {
        compressing(c);
        edit(c);
    })
    .await
}

/// One frame as it came: its first byte (FIN, RSV1, opcode) and its payload.
struct Frame {
    first: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn compressed(&self) -> bool {
        self.first & 0x40 != 0
    }

    /// The message it carries, inflated when compressed.
    fn json(&self) -> Value {
        let text = match self.compressed() {
            true => inflate(&self.payload),
            false => self.payload.clone(),
        };
        serde_json::from_slice(&text).expect("a JSON message")
    }
}

/// A WebSocket client that frames, masks and inflates by itself.
struct RawSocket {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// The response's `Sec-WebSocket-Extensions`, if any.
    extensions: Option<String>,
    socket_id: String,
}

impl RawSocket {
    /// Connects offering `offer` (none: no extension header), with `early` bytes written right
    /// after the request, and reads `connection_established`.
    async fn connect(server: &TestServer, offer: Option<&str>, early: &[u8]) -> RawSocket {
        RawSocket::connect_to(server.running.addr.port(), offer, early).await
    }

    async fn connect_to(port: u16, offer: Option<&str>, early: &[u8]) -> RawSocket {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut request = format!(
            "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        if let Some(offer) = offer {
            request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(early);
        stream.write_all(&bytes).await.unwrap();
        let mut socket = RawSocket {
            stream,
            buffer: Vec::new(),
            extensions: None,
            socket_id: String::new(),
        };
        let head = socket.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        socket.extensions = head
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-extensions: "))
            .map(str::to_owned);
        let established = socket.next().await;
        assert_eq!(established.first, 0x81, "connection_established goes plain");
        let data = crate::support::data_of(&established.json());
        socket.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        socket
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("bytes in time")
            .unwrap();
        assert!(n > 0, "closed by the server");
        self.buffer.extend_from_slice(&chunk[..n]);
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buffer[..end].to_vec()).unwrap();
                self.buffer.drain(..end + 4);
                return head
                    .to_ascii_lowercase()
                    .replacen("http/1.1", "HTTP/1.1", 1);
            }
            self.fill().await;
        }
    }

    /// The next frame from the server (unmasked, one of any length).
    async fn next(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = parse(&self.buffer) {
                self.buffer.drain(..used);
                return frame;
            }
            self.fill().await;
        }
    }

    /// The next frame that is not a ping.
    async fn next_message(&mut self) -> Frame {
        loop {
            let frame = self.next().await;
            if frame.first & 0x0f != 0x9 {
                return frame;
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, message: &Value, compress: bool) {
        let bytes = match compress {
            true => frame(0xc1, &deflate(message.to_string().as_bytes())),
            false => frame(0x81, message.to_string().as_bytes()),
        };
        self.write(&bytes).await;
    }

    async fn subscribe(&mut self, channel: &str) {
        let mut data = json!({"channel": channel});
        if channel.starts_with("private-") {
            let signature = hmac_hex(SECRET, &format!("{}:{channel}", self.socket_id));
            data["auth"] = json!(format!("{KEY}:{signature}"));
        }
        self.send(&json!({"event": "pusher:subscribe", "data": data}), false)
            .await;
        let reply = self.next_message().await;
        assert_eq!(reply.first, 0x81, "protocol events go plain");
        let reply = reply.json();
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
    }

    /// The close code the server sent, skipping whatever came before it.
    async fn close_code(&mut self) -> u16 {
        loop {
            let frame = self.next().await;
            if frame.first & 0x0f == 0x8 {
                return u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            }
        }
    }
}

/// A whole server frame at the start of `bytes`, and its length.
fn parse(bytes: &[u8]) -> Option<(Frame, usize)> {
    let (first, second) = (*bytes.first()?, *bytes.get(1)?);
    assert_eq!(second & 0x80, 0, "server frames are not masked");
    let (length, at) = match second {
        126 => (
            u16::from_be_bytes(bytes.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = bytes.get(at..at + length)?.to_vec();
    Some((Frame { first, payload }, at + length))
}

/// A masked client frame with this first byte.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One message's data as RFC 7692 sends it: raw deflate, sync-flushed, tail stripped.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    compress
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .unwrap();
    assert_eq!(
        compress.total_in() as usize,
        data.len(),
        "one call was enough"
    );
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("valid deflate data");
    out
}

#[tokio::test]
async fn an_offer_is_answered_as_rfc_7692_allows_and_never_with_compression_disabled() {
    let server = compressing_server(|_| {}).await;
    let browser = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    assert_eq!(
        browser.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15")
    );
    let firefox = RawSocket::connect(&server, Some("permessage-deflate"), &[]).await;
    assert_eq!(
        firefox.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    // A smaller server window than Herald compresses with: connected without the extension.
    let small = "permessage-deflate; server_max_window_bits=10";
    let mut declined = RawSocket::connect(&server, Some(small), &[]).await;
    assert_eq!(declined.extensions, None);
    declined.subscribe("plain").await;
    let off = TestServer::start_with(|c| c["websocket"] = json!({"compression": "disabled"})).await;
    let plain = RawSocket::connect(&off, Some(BROWSER_OFFER), &[]).await;
    assert_eq!(
        plain.extensions, None,
        "Sockudo's \"disabled\" turns it off"
    );
    let default = TestServer::start().await;
    let compressed = RawSocket::connect(&default, Some(BROWSER_OFFER), &[]).await;
    assert!(compressed.extensions.is_some(), "on by default");
}

#[tokio::test]
async fn a_broadcast_is_compressed_once_and_plain_for_sockets_without_the_extension() {
    let server = compressing_server(|_| {}).await;
    let mut first = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    let mut second = RawSocket::connect(&server, Some("permessage-deflate"), &[]).await;
    let mut plain = Client::connect(&server.ws_url(KEY)).await;
    for socket in [&mut first, &mut second] {
        socket.subscribe("prices").await;
    }
    plain.subscribe("prices").await;
    let rest = Rest::new(&server);
    let large: Vec<Value> = (0..30)
        .map(|i| json!({"symbol": format!("SYM{i}"), "bid": 100 + i, "ask": 101 + i}))
        .collect();
    let large = json!(large).to_string();
    let (status, _) = rest
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "quotes", "channel": "prices", "data": large}),
        )
        .await;
    assert_eq!(status, 200);
    let (a, b) = (first.next_message().await, second.next_message().await);
    assert_eq!(a.first, 0xc1, "FIN, RSV1, text");
    assert_eq!(
        a.payload, b.payload,
        "the same compressed bytes on both sockets"
    );
    assert!(a.payload.len() < large.len() / 2);
    let expected = plain.recv_event("quotes").await;
    assert_eq!(a.json(), expected);
    assert_eq!(expected["data"], large);

    // Under the threshold: plain for everyone.
    let (status, _) = rest
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "tick", "channel": "prices", "data": "small"}),
        )
        .await;
    assert_eq!(status, 200);
    for socket in [&mut first, &mut second] {
        let small = socket.next_message().await;
        assert_eq!(small.first, 0x81);
        assert_eq!(small.json()["event"], "tick");
    }
    assert_eq!(plain.recv().await["event"], "tick");

    // A batch's events for one channel are joined into one write and still compressed each.
    let batch: Vec<Value> = (0..3)
        .map(|i| json!({"name": format!("b{i}"), "channel": "prices", "data": large}))
        .collect();
    let (status, _) = rest
        .post(
            &format!("/apps/{APP_ID}/batch_events"),
            json!({"batch": batch}),
        )
        .await;
    assert_eq!(status, 200);
    for i in 0..3 {
        let frame = second.next_message().await;
        assert!(frame.compressed());
        assert_eq!(frame.json()["event"], format!("b{i}"));
        assert_eq!(plain.recv().await["event"], format!("b{i}"));
    }
}

#[tokio::test]
async fn a_compressed_client_event_in_fragments_is_read_and_relayed() {
    let server = compressing_server(|_| {}).await;
    let channel = "private-chat";
    let mut sender = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    let mut receiver = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    let mut plain = Client::connect(&server.ws_url(KEY)).await;
    sender.subscribe(channel).await;
    receiver.subscribe(channel).await;
    plain.subscribe_private(channel).await;
    let text = "hello ".repeat(200);
    let event = json!({"event": "client-said", "channel": channel, "data": {"text": text}});
    let compressed = deflate(event.to_string().as_bytes());
    let (head, tail) = compressed.split_at(compressed.len() / 2);
    // First frame: RSV1, text, not FIN; then a continuation with FIN and no RSV1; a ping from
    // the client between them, as control frames may be.
    let mut bytes = frame(0x41, head);
    bytes.extend(frame(0x89, b""));
    bytes.extend(frame(0x80, tail));
    sender.write(&bytes).await;
    let relayed = plain.recv_event("client-said").await;
    assert_eq!(relayed["data"]["text"], text);
    let frame = receiver.next_message().await;
    assert!(
        frame.compressed(),
        "relayed compressed to a socket that negotiated it"
    );
    assert_eq!(frame.json()["data"]["text"], text);
}

#[tokio::test]
async fn a_compressed_frame_sent_with_the_upgrade_request_is_read() {
    let server = compressing_server(|_| {}).await;
    let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
    let early = frame(0xc1, &deflate(ping.as_bytes()));
    let mut socket = RawSocket::connect(&server, Some(BROWSER_OFFER), &early).await;
    let pong = socket.next_message().await;
    assert_eq!(pong.json()["event"], "pusher:pong");
}

#[tokio::test]
async fn a_decompression_bomb_closes_only_its_socket_with_1009() {
    let server = compressing_server(|c| c["websocket_max_payload_kb"] = json!(64)).await;
    let mut bystander = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    bystander.subscribe("news").await;
    let mut bomber = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    // 16 MiB of spaces inside a JSON string compress to about 16 KiB.
    let mut bomb = br#"{"event":"pusher:ping","data":""#.to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 16 << 20));
    bomb.extend_from_slice(br#""}"#);
    let bomb = deflate(&bomb);
    assert!(bomb.len() < 64 << 10, "the bomb itself is under the limit");
    bomber.write(&frame(0xc1, &bomb)).await;
    assert_eq!(bomber.close_code().await, 1009);

    let mut garbage = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    garbage.write(&frame(0xc1, &[0xff; 32])).await;
    assert_eq!(garbage.close_code().await, 1007);

    // RSV1 on a socket that did not negotiate the extension is a protocol error.
    let mut unasked = RawSocket::connect(&server, None, &[]).await;
    unasked.write(&frame(0xc1, &deflate(b"{}"))).await;
    assert_eq!(unasked.close_code().await, 1002);

    let rest = Rest::new(&server);
    let (status, _) = rest
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "after", "channel": "news", "data": "still here"}),
        )
        .await;
    assert_eq!(status, 200);
    let after = tokio::time::timeout(Duration::from_secs(5), bystander.next_message())
        .await
        .expect("the bystander still gets events");
    assert_eq!(after.json()["event"], "after");
}

#[tokio::test]
async fn a_broadcast_from_another_node_is_compressed_on_arrival() {
    let redis = RedisServer::start();
    let a = ClusterNode::start(&redis, compressing);
    let b = ClusterNode::start(&redis, compressing);
    let mut socket = RawSocket::connect_to(b.port, Some(BROWSER_OFFER), &[]).await;
    socket.subscribe("news").await;
    let data = "breaking ".repeat(100);
    let (status, _) = Rest::new(&a)
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "story", "channel": "news", "data": data}),
        )
        .await;
    assert_eq!(status, 200);
    let frame = socket.next_message().await;
    assert!(frame.compressed(), "compressed by node B");
    assert_eq!(frame.json()["data"], data);
}

// Found by an attacker's review, end to end.

/// RFC 7692 section 7.1.2.1: a server accepts `server_max_window_bits` by including it;
/// Python's `websockets` client fails the handshake without it.
#[tokio::test]
async fn an_accepted_server_max_window_bits_is_echoed() {
    let server = compressing_server(|_| {}).await;
    let offer = "permessage-deflate; server_max_window_bits=15; client_max_window_bits";
    let socket = RawSocket::connect(&server, Some(offer), &[]).await;
    let answer = socket.extensions.expect("the extension was accepted");
    assert!(
        answer.contains("server_max_window_bits=15"),
        "answered without it: {answer}"
    );
}

/// A 31.7 KB broadcast (base64 ciphertext, as on an encrypted channel) reaches a socket that
/// negotiated compression whole (`deflate::compress` once stopped before the end of it).
#[tokio::test]
async fn a_31_kb_broadcast_reaches_a_compressing_socket_intact() {
    let server = compressing_server(|_| {}).await;
    let mut socket = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    socket.subscribe("encrypted-news").await;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut seed: u64 = 99;
    let ciphertext: String = (0..31_626)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            alphabet[(seed % 64) as usize] as char
        })
        .collect();
    let data =
        json!({"nonce": "q83vEjRWeJCrze8SNFZ4kKvN7xI=", "ciphertext": ciphertext}).to_string();
    let (status, _) = Rest::new(&server)
        .post(
            &format!("/apps/{APP_ID}/events"),
            json!({"name": "secret", "channel": "encrypted-news", "data": data}),
        )
        .await;
    assert_eq!(status, 200);
    let frame = socket.next_message().await;
    assert!(frame.compressed());
    let mut input = frame.payload.clone();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut text = Vec::with_capacity(1 << 20);
    let inflated = Decompress::new(false).decompress_vec(&input, &mut text, FlushDecompress::Sync);
    assert!(
        inflated.is_ok(),
        "the client cannot inflate it: {inflated:?}"
    );
    let parsed = serde_json::from_slice::<Value>(&text);
    assert!(
        parsed.is_ok(),
        "the client inflates {} bytes that are not the JSON sent; they end with {:?}",
        text.len(),
        String::from_utf8_lossy(&text[text.len().saturating_sub(12)..])
    );
    assert_eq!(parsed.unwrap()["data"], data);
}

/// A few bytes on the wire may inflate to the whole message limit: a socket inflating more
/// than its budget in a second (four limits, at least 256 KiB) is closed with 1008, so one
/// client's trickle cannot keep a core busy.
#[tokio::test]
async fn a_socket_inflating_past_its_budget_is_closed_with_1008() {
    let server = compressing_server(|c| c["websocket_max_payload_kb"] = json!(64)).await;
    let mut socket = RawSocket::connect(&server, Some(BROWSER_OFFER), &[]).await;
    let mut ping = br#"{"event":"pusher:ping","data":""#.to_vec();
    ping.extend(std::iter::repeat_n(b' ', 60 << 10));
    ping.extend_from_slice(br#""}"#);
    let ping = frame(0xc1, &deflate(&ping));
    assert!(ping.len() < 1024, "tiny on the wire");
    for _ in 0..5 {
        socket.write(&ping).await;
    }
    assert_eq!(socket.close_code().await, 1008);
}
