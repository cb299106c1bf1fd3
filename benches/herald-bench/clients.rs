//! WebSocket clients and the signed REST publisher of the benchmark.

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::target::{APP_ID, KEY, SECRET};
use crate::tls;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn hmac_hex(message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Connects and returns the socket with its socket id.
pub async fn connect(port: u16) -> Result<(Socket, String), String> {
    connect_with(port, None).await
}

/// Connects with a small read buffer. tungstenite zeroes its whole read buffer (128 KiB by
/// default) before every read from the socket: with thousands of sockets each reading small
/// frames, that memset was a large part of the load generator's CPU (the online scenario).
pub async fn connect_lean(port: u16) -> Result<(Socket, String), String> {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    connect_with(port, Some(config)).await
}

async fn connect_with(
    port: u16,
    config: Option<WebSocketConfig>,
) -> Result<(Socket, String), String> {
    let url = format!(
        "{}://127.0.0.1:{port}/app/{KEY}?protocol=7&client=bench&version=1.0.0",
        tls::ws_scheme()
    );
    let connector = tls::connector();
    let (mut ws, _) = match connector {
        None => tokio_tungstenite::connect_async_with_config(url, config, false).await,
        Some(_) => {
            tokio_tungstenite::connect_async_tls_with_config(url, config, false, connector).await
        }
    }
    .map_err(|e| e.to_string())?;
    if let MaybeTlsStream::Rustls(stream) = ws.get_ref() {
        tls::note_suite(stream.get_ref().1.negotiated_cipher_suite());
    }
    let first = next_json(&mut ws)
        .await
        .ok_or("closed before connection_established")?;
    let data: Value =
        serde_json::from_str(first["data"].as_str().unwrap_or("{}")).map_err(|e| e.to_string())?;
    let socket_id = data["socket_id"].as_str().ok_or("no socket_id")?.to_owned();
    Ok((ws, socket_id))
}

/// The next text frame as JSON, `None` when the socket closed.
pub async fn next_json(ws: &mut Socket) -> Option<Value> {
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).ok();
        }
    }
    None
}

pub async fn send(ws: &mut Socket, frame: Value) -> Result<(), String> {
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| e.to_string())
}

/// Subscribes and waits for `pusher_internal:subscription_succeeded`.
pub async fn subscribe(ws: &mut Socket, data: Value) -> Result<(), String> {
    send(ws, json!({"event": "pusher:subscribe", "data": data})).await?;
    loop {
        let frame = next_json(ws).await.ok_or("closed while subscribing")?;
        match frame["event"].as_str() {
            Some("pusher_internal:subscription_succeeded") => return Ok(()),
            Some("pusher:subscription_error") | Some("pusher:error") => {
                return Err(frame.to_string())
            }
            _ => {}
        }
    }
}

/// The subscribe data of a presence channel, signed.
pub fn presence_data(socket_id: &str, channel: &str, user_id: &str) -> Value {
    let channel_data = json!({"user_id": user_id}).to_string();
    let auth = format!(
        "{KEY}:{}",
        hmac_hex(&format!("{socket_id}:{channel}:{channel_data}"))
    );
    json!({"auth": auth, "channel": channel, "channel_data": channel_data})
}

/// Requests a `--tls` publisher keeps in flight at most.
const TLS_IN_FLIGHT: usize = 16;

/// Publishes through the signed REST API over keep-alive connections.
///
/// With `--tls` it keeps at most [`TLS_IN_FLIGHT`] requests in flight and never closes an idle
/// connection, so the server does at most that many handshakes per publisher. Without the cap,
/// a load generator that falls behind (it shares the cores, and decrypts every delivery) opens
/// a connection per waiting request, and the server's CPU would count thousands of handshakes
/// the load caused, not the broadcasts. A request that waits for a slot counts as latency.
pub struct Publisher {
    client: reqwest::Client,
    port: u16,
    in_flight: Option<Semaphore>,
}

impl Publisher {
    pub fn new(port: u16) -> Publisher {
        let (idle, in_flight) = match tls::enabled() {
            false => (4, None),
            true => (usize::MAX, Some(Semaphore::new(TLS_IN_FLIGHT))),
        };
        Publisher {
            client: tls::trust(reqwest::Client::builder().pool_max_idle_per_host(idle))
                .build()
                .unwrap(),
            port,
            in_flight,
        }
    }

    /// A slot for one request, with `--tls` only.
    async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        match &self.in_flight {
            Some(gate) => gate.acquire().await.ok(),
            None => None,
        }
    }

    /// The signed URL of a request: `params` plus the auth keys, sorted as Pusher signs them.
    fn signed_url(&self, method: &str, path: &str, params: &[(&str, String)]) -> String {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut query: Vec<(&str, String)> = vec![
            ("auth_key", KEY.to_owned()),
            ("auth_timestamp", timestamp.to_string()),
            ("auth_version", "1.0".to_owned()),
        ];
        query.extend(params.iter().cloned());
        query.sort();
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let query = query.join("&");
        let signature = hmac_hex(&format!("{method}\n{path}\n{query}"));
        format!(
            "{}://127.0.0.1:{}{path}?{query}&auth_signature={signature}",
            tls::http_scheme(),
            self.port
        )
    }

    pub async fn trigger(&self, channel: &str, event: &str, data: &str) -> Result<(), String> {
        let body = json!({"name": event, "channel": channel, "data": data}).to_string();
        let md5 = hex::encode(Md5::digest(body.as_bytes()));
        let path = format!("/apps/{APP_ID}/events");
        let url = self.signed_url("POST", &path, &[("body_md5", md5)]);
        let _slot = self.slot().await;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| with_sources(&e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("trigger failed: {}", response.status()))
        }
    }

    /// A signed GET of the app's `path` (after `/apps/{id}`), with `params` (URL-safe values).
    pub async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let path = format!("/apps/{APP_ID}{path}");
        let url = self.signed_url("GET", &path, params);
        let _slot = self.slot().await;
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("GET {path} failed: {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
}

/// An error with its causes (reqwest's own message names only the request).
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
