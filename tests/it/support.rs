//! Test harness: a real Herald on ephemeral ports, a small typed WebSocket client and a signed
//! REST client. Signatures are computed here independently of the server's code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use herald::config::Config;
use herald::{RunningServer, Server};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP_ID: &str = "app-1";
pub const KEY: &str = "key-1";
pub const SECRET: &str = "secret-1";
/// Every wait in a test is bounded by this.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The base config of every test: loopback, ephemeral ports, one app with client events on.
pub fn base_config() -> Value {
    json!({
        "host": "127.0.0.1",
        "port": 0,
        "metrics": {"enabled": true, "host": "127.0.0.1", "port": 0},
        "shutdown_grace_period": 3,
        "app_manager": {"driver": "memory", "array": {"apps": [{
            "id": APP_ID, "key": KEY, "secret": SECRET,
            "enable_client_messages": true,
            "max_client_events_per_second": 100
        }]}}
    })
}

/// A running server, shut down when dropped.
pub struct TestServer {
    pub running: RunningServer,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server on the base config after `edit` changes it.
    pub async fn start_with(edit: impl FnOnce(&mut Value)) -> TestServer {
        let mut config = base_config();
        edit(&mut config);
        let config = Config::from_json(&config.to_string()).expect("test config is valid");
        let server = Server::bind(config).await.expect("server binds");
        TestServer {
            running: server.spawn().expect("server spawns"),
        }
    }

    /// The app entry of the base config, for `start_with` edits.
    pub fn app(config: &mut Value) -> &mut Value {
        &mut config["app_manager"]["array"]["apps"][0]
    }

    pub fn ws_url(&self, key: &str) -> String {
        format!(
            "ws://{}/app/{key}?protocol=7&client=js&version=8.4.0&flash=false",
            self.running.addr
        )
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.addr)
    }

    /// The metrics page as text.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.running.metrics_addr.unwrap());
        tokio::time::timeout(WAIT, async {
            reqwest::get(url).await.unwrap().text().await.unwrap()
        })
        .await
        .expect("metrics in time")
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url(KEY)).await
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking the Pusher protocol.
pub struct Client {
    ws: Socket,
    pub socket_id: String,
}

/// How a connection ended.
#[derive(Debug)]
pub struct Closed {
    /// The `pusher:error` frames received before the close.
    pub errors: Vec<Value>,
    /// The close code, if a close frame came.
    pub code: Option<u16>,
}

impl Client {
    /// Opens a socket without reading anything.
    pub async fn open(url: &str) -> Socket {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("WebSocket handshake");
        ws
    }

    /// Connects with a 4 KiB receive buffer, so the server must queue what this client has not
    /// read yet instead of handing it all to the kernel.
    pub async fn connect_narrow(url: &str) -> Client {
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("connect in time")
        .expect("WebSocket handshake");
        Client::from_socket(ws).await
    }

    /// Opens a socket whose first frame is still unread.
    pub async fn unestablished(url: &str) -> Client {
        Client {
            ws: Client::open(url).await,
            socket_id: String::new(),
        }
    }

    /// A client on an open socket, once `pusher:connection_established` arrived.
    pub async fn from_socket(ws: Socket) -> Client {
        let mut client = Client {
            ws,
            socket_id: String::new(),
        };
        let established = client.recv().await;
        assert_eq!(established["event"], "pusher:connection_established");
        let data: Value =
            serde_json::from_str(established["data"].as_str().expect("data is a string")).unwrap();
        client.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        client
    }

    /// A client on an open socket if `pusher:connection_established` arrives; `None` when the
    /// server refuses it (an error frame and a close).
    pub async fn from_socket_or_close(ws: Socket) -> Option<Client> {
        let mut client = Client {
            ws,
            socket_id: String::new(),
        };
        loop {
            let next = tokio::time::timeout(WAIT, client.ws.next()).await.ok()??;
            match next.ok()? {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).ok()?;
                    if frame["event"] != "pusher:connection_established" {
                        return None;
                    }
                    let data: Value = serde_json::from_str(frame["data"].as_str()?).ok()?;
                    client.socket_id = data["socket_id"].as_str()?.to_owned();
                    return Some(client);
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Connects and reads `pusher:connection_established`.
    pub async fn connect(url: &str) -> Client {
        Client::from_socket(Client::open(url).await).await
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame as JSON; panics on close or after [`WAIT`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Close(frame) => panic!("unexpected close: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Reads frames until one has `event`; frames before it are returned too, in order.
    pub async fn recv_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Asserts that no text frame arrives within `window`.
    pub async fn expect_silence(&mut self, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) => panic!("expected silence, got {text}"),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    panic!("expected silence, got close {frame:?}")
                }
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Reads until the server closes; collects `pusher:error` frames and the close code.
    pub async fn closed(mut self) -> Closed {
        let mut errors = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    if frame["event"] == "pusher:error" {
                        errors.push(frame);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Closed {
                        errors,
                        code: frame.map(|f| u16::from(f.code)),
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Closed { errors, code: None },
            }
        }
    }

    /// Closes from the client side and waits until the server has seen it.
    pub async fn disconnect(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    pub async fn subscribe_with(&mut self, data: Value) -> Value {
        self.send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
        self.recv().await
    }

    /// Subscribes to a public channel and expects success.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        let reply = self
            .subscribe_with(json!({"auth": "", "channel": channel}))
            .await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
        reply
    }

    /// Subscribes to a private (or encrypted) channel with a correct signature.
    pub async fn subscribe_private(&mut self, channel: &str) -> Value {
        let auth = format!(
            "{KEY}:{}",
            hmac_hex(SECRET, &format!("{}:{channel}", self.socket_id))
        );
        let reply = self
            .subscribe_with(json!({"auth": auth, "channel": channel}))
            .await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
        reply
    }

    /// The subscribe data for a presence channel, correctly signed.
    pub fn presence_data(&self, channel: &str, channel_data: &Value) -> Value {
        let channel_data = channel_data.to_string();
        let signed = format!("{}:{channel}:{channel_data}", self.socket_id);
        let auth = format!("{KEY}:{}", hmac_hex(SECRET, &signed));
        json!({"auth": auth, "channel": channel, "channel_data": channel_data})
    }

    /// Joins a presence channel as `user_id` and returns the decoded presence data.
    pub async fn join_presence(&mut self, channel: &str, user_id: &str) -> Value {
        let data = self.presence_data(
            channel,
            &json!({"user_id": user_id, "user_info": {"name": user_id}}),
        );
        let reply = self.subscribe_with(data).await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
        serde_json::from_str(reply["data"].as_str().unwrap()).unwrap()
    }

    /// Signs in as `user_id` and expects success.
    pub async fn sign_in(&mut self, user_id: &str) -> Value {
        self.send_signin(json!({"id": user_id, "user_info": {"name": user_id}}))
            .await;
        self.recv().await
    }

    /// Sends `pusher:signin` for `user_data`, signed correctly.
    pub async fn send_signin(&mut self, user_data: Value) {
        let user_data = user_data.to_string();
        let auth = format!(
            "{KEY}:{}",
            hmac_hex(SECRET, &format!("{}::user::{user_data}", self.socket_id))
        );
        self.send(
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        )
        .await;
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Something serving the REST API: an in-process server or a node in a child process.
pub trait Served {
    fn http_url(&self, path: &str) -> String;
}

impl Served for TestServer {
    fn http_url(&self, path: &str) -> String {
        TestServer::http_url(self, path)
    }
}

/// A signed REST request, as the official server SDKs build it.
pub struct Rest<'a> {
    pub server: &'a dyn Served,
    pub key: &'a str,
    pub secret: &'a str,
    pub timestamp: u64,
}

impl<'a> Rest<'a> {
    pub fn new(server: &'a dyn Served) -> Rest<'a> {
        Rest {
            server,
            key: KEY,
            secret: SECRET,
            timestamp: now_secs(),
        }
    }

    /// The full signed URL for `method path` with `body` and extra query parameters.
    pub fn signed_url(
        &self,
        method: &str,
        path: &str,
        body: &str,
        query: &[(&str, &str)],
    ) -> String {
        let timestamp = self.timestamp.to_string();
        let mut params: Vec<(String, String)> = vec![
            ("auth_key".into(), self.key.into()),
            ("auth_timestamp".into(), timestamp),
            ("auth_version".into(), "1.0".into()),
        ];
        if !body.is_empty() {
            params.push(("body_md5".into(), hex::encode(Md5::digest(body.as_bytes()))));
        }
        params.extend(query.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        params.sort();
        let canonical = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let signature = hmac_hex(self.secret, &format!("{method}\n{path}\n{canonical}"));
        let query: String = params
            .iter()
            .chain(std::iter::once(&("auth_signature".to_string(), signature)))
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.server.http_url(&format!("{path}?{query}"))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let body = body.to_string();
        let url = self.signed_url("POST", path, &body, &[]);
        send(
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let url = self.signed_url("GET", path, "", query);
        send(reqwest::Client::new().get(url)).await
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Triggers `news` with data `hello` on `channel` of app `id`, signed with `key`/`secret`; the
/// status.
pub async fn trigger_as(
    server: &dyn Served,
    id: &str,
    (key, secret): (&str, &str),
    channel: &str,
) -> u16 {
    let mut rest = Rest::new(server);
    (rest.key, rest.secret) = (key, secret);
    let body = json!({"name": "news", "channels": [channel], "data": "hello"});
    rest.post(&format!("/apps/{id}/events"), body).await.0
}

/// Sends a request and returns the status and the JSON body (`Null` when not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("response in time")
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Parses an event's string `data`.
pub fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("data is JSON")
}
