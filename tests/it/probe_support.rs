//! What the attacker's-probe tests share: this process's RSS, a WebSocket client bound to a
//! chosen loopback source address, an HTTP endpoint that answers with redirects and records
//! what reaches it, and the real binary run with its log kept for reading.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use futures_util::StreamExt;

use crate::support::WAIT;

/// This process's resident set, in bytes (nextest runs each test in a process of its own).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// How a WebSocket from a given source address ended up.
#[derive(Debug)]
pub enum Outcome {
    /// `pusher:connection_established` arrived.
    Established,
    /// The server closed it, with the `pusher:error` frames it sent before.
    Closed {
        code: Option<u16>,
        reason: String,
        errors: Vec<Value>,
    },
}

/// Opens a WebSocket to `url` from `source` (any 127.0.0.0/8 address is this machine) and
/// reads until it is established or closed (bounded by `bound`).
pub async fn connect_from(source: IpAddr, url: &str, bound: Duration) -> Outcome {
    connect_with(source, url, &[], bound).await
}

/// [`connect_from`] with extra request headers (an `Origin`, say).
pub async fn connect_with(
    source: IpAddr,
    url: &str,
    headers: &[(&'static str, &str)],
    bound: Duration,
) -> Outcome {
    let host = url.trim_start_matches("ws://").split('/').next().unwrap();
    let server: SocketAddr = host.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(server).await.unwrap();
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let handshake = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream));
    let (ws, _) = tokio::time::timeout(WAIT, handshake)
        .await
        .expect("handshake in time")
        .expect("handshake");
    tokio::time::timeout(bound, outcome(ws))
        .await
        .expect("established or closed in time")
}

/// Reads until `connection_established` or a close.
async fn outcome(mut ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Outcome {
    let mut errors = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["event"] == "pusher:connection_established" {
                    return Outcome::Established;
                }
                errors.push(frame);
            }
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|CloseFrame { code, reason }| (Some(code.into()), reason.to_string()))
                    .unwrap_or((None, String::new()));
                return Outcome::Closed {
                    code,
                    reason,
                    errors,
                };
            }
            _ => {}
        }
    }
    Outcome::Closed {
        code: None,
        reason: String::new(),
        errors,
    }
}

/// One request a [`Redirector`] saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub body: String,
}

/// An HTTP endpoint on a loopback port: answers `status` with `Location: location` to every
/// request (2xx without a location), and records them.
#[derive(Clone)]
pub struct Redirector {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<(u16, String)>>,
    pub addr: SocketAddr,
}

async fn redirect(State(redirector): State<Redirector>, request: Request) -> Response {
    let method = request.method().to_string();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    redirector.seen.lock().unwrap().push(Seen {
        method,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, location) = redirector.answer.lock().unwrap().clone();
    let status = StatusCode::from_u16(status).unwrap();
    if location.is_empty() {
        return (status, r#"{"allow": true}"#).into_response();
    }
    (status, [(header::LOCATION, location)]).into_response()
}

impl Redirector {
    /// Answers `status` with `location` (empty: no `Location`, body `{"allow": true}`).
    pub async fn start(status: u16, location: &str) -> Redirector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let redirector = Redirector {
            seen: Arc::default(),
            answer: Arc::new(Mutex::new((status, location.to_owned()))),
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new()
            .fallback(redirect)
            .with_state(redirector.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        redirector
    }

    /// A URL of this endpoint.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// From now on, answers `status` with `location`.
    pub fn answer(&self, status: u16, location: &str) {
        *self.answer.lock().unwrap() = (status, location.to_owned());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (bounded) until `count` requests arrived.
    pub async fn wait_seen(&self, count: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = self.seen();
            if seen.len() >= count || tokio::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A TCP endpoint that accepts connections and closes each at once, as a backend that
/// crashes does.
pub async fn resetting_endpoint() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

/// The real binary on a config of its own, its log (stdout and stderr) kept in a file.
pub struct LoggedHerald {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl LoggedHerald {
    /// Starts the binary on `config` (port 0) and waits until it listens.
    pub fn start(name: &str, config: &Value) -> LoggedHerald {
        LoggedHerald::start_with_args(name, config, &[])
    }

    /// Starts the binary on `config` with extra command-line arguments.
    pub fn start_with_args(name: &str, config: &Value, args: &[&str]) -> LoggedHerald {
        LoggedHerald::start_with_env(name, config, args, &[])
    }

    /// Starts the binary on `config` with extra arguments and environment variables.
    pub fn start_with_env(
        name: &str,
        config: &Value,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> LoggedHerald {
        let dir = std::env::temp_dir().join(format!("herald-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(&path)
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("herald runs");
        let mut herald = LoggedHerald {
            child,
            dir,
            port: 0,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while herald.port == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "not listening: {}",
                herald.log()
            );
            herald.port = herald.listening_port().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(20));
        }
        herald
    }

    fn listening_port(&self) -> Option<u16> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("Herald listening"))?;
        let after = &line[line.find("addr=")? + "addr=".len()..];
        let addr: SocketAddr = after.split_whitespace().next()?.parse().ok()?;
        Some(addr.port())
    }

    /// Writes the config file again (as an operator editing it would).
    pub fn rewrite(&self, config: &str) {
        std::fs::write(self.dir.join("config.json"), config).unwrap();
    }

    /// Waits until the log holds `text` `count` times.
    pub async fn wait_for_log(&self, text: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.log().matches(text).count() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, key: &str) -> String {
        format!("ws://127.0.0.1:{}/app/{key}?protocol=7", self.port)
    }

    /// Sends `signal` (`TERM`, `INT`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded by `within`) for the process to exit; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl crate::support::Served for LoggedHerald {
    fn http_url(&self, path: &str) -> String {
        LoggedHerald::http_url(self, path)
    }
}

impl Drop for LoggedHerald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
