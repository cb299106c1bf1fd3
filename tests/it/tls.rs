//! TLS on the server port (`ssl`): `wss://` and `https://` on one port through the socket's own
//! TLS session, every kind of key, start-up errors that name the key and the file, no HTTP
//! answer in plain text, certificate rotation without touching open sockets, and the redirect
//! port.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::*;
use crate::tls_support::Certs;

/// The next text frame as JSON.
pub async fn recv<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
        assert!(!message.is_close(), "closed: {message:?}");
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// Subscribes to public `channel` and waits for the confirmation.
pub async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    channel: &str,
) {
    assert_eq!(recv(ws).await["event"], "pusher:connection_established");
    send(
        ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
    )
    .await;
    assert_eq!(
        recv(ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
}

async fn tls_server(certs: &Certs, name: &str, extra: Value) -> TestServer {
    let ssl = certs.ssl(name, extra);
    TestServer::start_with(move |c| {
        c["ssl"] = ssl;
        c["event_limits"] = json!({"max_payload_in_kb": 256});
    })
    .await
}

/// Triggers `news` on `channel` through `server`'s signed REST API over HTTPS.
async fn trigger_https(certs: &Certs, server: &TestServer, channel: &str, data: &str) {
    let base = format!("https://127.0.0.1:{}", server.running.addr.port());
    trigger_at(certs, &base, channel, data).await;
}

#[tokio::test]
async fn wss_and_https_share_the_port_and_large_frames_arrive_whole() {
    let certs = Certs::make("wss");
    let server = tls_server(&certs, "server", json!({})).await;
    let port = server.running.addr.port();
    let mut a = certs.websocket(port, KEY).await;
    let mut b = certs.websocket(port, KEY).await;
    subscribe(&mut a, "news").await;
    subscribe(&mut b, "news").await;
    // Larger than a TLS record and the session's send buffer: encrypted in several writes.
    let big = "x".repeat(200 * 1024);
    for data in ["hello", big.as_str(), "after"] {
        trigger_https(&certs, &server, "news", data).await;
        for ws in [&mut a, &mut b] {
            let event = recv(ws).await;
            assert_eq!(event["event"], "news");
            assert_eq!(event["data"].as_str().unwrap().len(), data.len());
        }
    }
    send(&mut a, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(recv(&mut a).await["event"], "pusher:pong");
    let up = certs
        .https_client()
        .get(format!("https://127.0.0.1:{port}/up"))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
}

#[tokio::test]
async fn every_kind_of_key_is_read() {
    let certs = Certs::make("keys");
    certs.server("rsa", "rsa");
    // RSA (PKCS#1) and EC (SEC1) in their traditional PEM forms, and an encrypted PKCS#8.
    certs.openssl(&["rsa", "-in", "rsa.key", "-traditional", "-out", "rsa1.key"]);
    certs.openssl(&["ec", "-in", "server.key", "-out", "ec1.key"]);
    certs.encrypt_key("server.key", "enc.key", "s3cret");
    let cases = [
        ("rsa.pem", "rsa1.key", json!({})),
        ("server.pem", "ec1.key", json!({})),
        ("server.pem", "enc.key", json!({"passphrase": "s3cret"})),
    ];
    for (cert, key, extra) in cases {
        let mut ssl = certs.ssl("server", extra);
        ssl["cert_path"] = json!(certs.path(cert));
        ssl["key_path"] = json!(certs.path(key));
        let server = TestServer::start_with(|c| c["ssl"] = ssl).await;
        let mut ws = certs.websocket(server.running.addr.port(), KEY).await;
        assert_eq!(
            recv(&mut ws).await["event"],
            "pusher:connection_established",
            "{key}"
        );
    }
}

/// The error `Server::bind` stops with for `ssl`.
async fn bind_error(ssl: Value) -> String {
    let mut config = base_config();
    config["ssl"] = ssl;
    let config = herald::config::Config::from_json(&config.to_string()).unwrap();
    match herald::Server::bind(config).await {
        Ok(_) => panic!("started with a bad ssl block"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn start_up_stops_naming_the_key_and_the_file() {
    let certs = Certs::make("errors");
    certs.server("other", "ec");
    certs.openssl(&[
        "rsa",
        "-in",
        "ca.key",
        "-aes256",
        "-traditional",
        "-passout",
        "pass:x",
        "-out",
        "legacy.key",
    ]);
    certs.encrypt_key("server.key", "enc.key", "right");
    let missing = certs.path("missing.pem");
    let cases = [
        (
            json!({"cert_path": missing}),
            vec!["ssl.cert_path", "missing.pem"],
        ),
        (
            json!({"key_path": certs.path("other.key")}),
            vec!["ssl.key_path", "does not match"],
        ),
        (
            json!({"key_path": certs.path("legacy.key")}),
            vec!["ssl.key_path", "openssl pkcs8 -topk8"],
        ),
        (
            json!({"key_path": certs.path("enc.key"), "passphrase": "wrong"}),
            vec!["ssl.key_path", "passphrase"],
        ),
        (
            json!({"key_path": certs.path("enc.key")}),
            vec!["ssl.key_path", "ssl.passphrase"],
        ),
        (
            json!({"ca_path": certs.path("nope.pem")}),
            vec!["ssl.ca_path", "nope.pem"],
        ),
    ];
    for (extra, expected) in cases {
        let error = bind_error(certs.ssl("server", extra.clone())).await;
        for part in expected {
            assert!(error.contains(part), "{extra}: {error}");
        }
        assert!(
            !error.contains("right") && !error.contains("wrong"),
            "no passphrase: {error}"
        );
    }
}

#[tokio::test]
async fn the_tls_port_gives_plain_http_no_http_answer() {
    let certs = Certs::make("plain");
    let server = tls_server(&certs, "server", json!({})).await;
    let mut stream = tokio::net::TcpStream::connect(server.running.addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let failures = server.metrics_text().await;
    assert!(
        failures.contains("herald_tls_handshake_failures_total 1"),
        "{failures}"
    );
}

#[tokio::test]
async fn a_changed_certificate_serves_new_handshakes_and_open_sockets_go_on() {
    let certs = Certs::make("rotate");
    certs.server("next", "ec");
    let server = tls_server(&certs, "server", json!({"reload_interval_s": 1})).await;
    let port = server.running.addr.port();
    let (_, first) = certs.connect(port).await;
    let mut open = certs.websocket(port, KEY).await;
    subscribe(&mut open, "news").await;
    // A bad pair first: refused, the old certificate keeps serving.
    std::fs::copy(certs.dir.join("next.pem"), certs.dir.join("server.pem")).unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_, kept) = certs.connect(port).await;
    assert_eq!(kept, first, "a certificate without its key is refused");
    // The matching key arrives: new handshakes get the new certificate.
    std::fs::copy(certs.dir.join("next.key"), certs.dir.join("server.key")).unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_, rotated) = certs.connect(port).await;
    assert_ne!(rotated, first, "the new pair is served");
    trigger_https(&certs, &server, "news", "still here").await;
    assert_eq!(recv(&mut open).await["data"], "still here");
}

#[tokio::test]
async fn the_redirect_port_sends_http_and_websockets_to_tls() {
    let certs = Certs::make("redirect");
    let server = tls_server(
        &certs,
        "server",
        json!({"redirect_http": true, "http_port": 0}),
    )
    .await;
    let redirect = server.running.redirect_addr.expect("a redirect port");
    let tls_port = server.running.addr.port();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{redirect}/apps/{APP_ID}/channels?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!("https://127.0.0.1:{tls_port}/apps/{APP_ID}/channels?x=1")
    );
    let closed = Client::unestablished(&format!("ws://{redirect}/app/{KEY}?protocol=7"))
        .await
        .closed()
        .await;
    assert_eq!(closed.code, Some(4000), "{closed:?}");
    assert_eq!(closed.errors[0]["data"]["code"], 4000);
}

/// Sends a signed `POST /apps/{id}/events` to `https_base` (`https://127.0.0.1:PORT`).
pub async fn trigger_at(certs: &Certs, https_base: &str, channel: &str, data: &str) {
    struct At<'a>(&'a str);
    impl Served for At<'_> {
        fn http_url(&self, path: &str) -> String {
            format!("{}{path}", self.0)
        }
    }
    let at = At(https_base);
    let rest = Rest::new(&at);
    let body = json!({"name": "news", "channel": channel, "data": data}).to_string();
    let url = rest.signed_url("POST", &format!("/apps/{APP_ID}/events"), &body, &[]);
    let response = certs
        .https_client()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    assert_eq!(response.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_running_binary() {
    let certs = Certs::make("sighup");
    certs.server("next", "ec");
    let mut config = base_config();
    config["ssl"] = certs.ssl("server", json!({"reload_interval_s": 3600}));
    let herald = crate::probe_support::LoggedHerald::start("sighup", &config);
    let (_, first) = certs.connect(herald.port).await;
    let mut open = certs.websocket(herald.port, KEY).await;
    subscribe(&mut open, "news").await;
    for file in ["pem", "key"] {
        std::fs::copy(
            certs.dir.join(format!("next.{file}")),
            certs.dir.join(format!("server.{file}")),
        )
        .unwrap();
    }
    herald.signal("HUP");
    let deadline = std::time::Instant::now() + WAIT;
    while !herald.log().contains("reloaded (SIGHUP)") {
        assert!(std::time::Instant::now() < deadline, "{}", herald.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, rotated) = certs.connect(herald.port).await;
    assert_ne!(rotated, first);
    trigger_at(
        &certs,
        &format!("https://127.0.0.1:{}", herald.port),
        "news",
        "after HUP",
    )
    .await;
    assert_eq!(recv(&mut open).await["data"], "after HUP");
}

#[tokio::test]
async fn a_closing_tls_socket_ends_with_close_notify() {
    let certs = Certs::make("notify");
    let server = tls_server(&certs, "server", json!({})).await;
    let (mut tls, _) = certs.connect(server.running.addr.port()).await;
    let upgrade = "GET /app/no-such-key HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tls.write_all(upgrade.as_bytes()).await.unwrap();
    // Without close_notify, rustls reports the end of the stream as an unexpected EOF.
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, tls.read_to_end(&mut received)).await;
    read.expect("closed in time")
        .expect("a clean TLS close (close_notify)");
    assert!(
        String::from_utf8_lossy(&received).contains("4001"),
        "the 4001 error came first"
    );
}
