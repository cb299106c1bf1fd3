//! Entry points for the fuzzer (`fuzz/`) and its corpus replay in the tests: each takes
//! arbitrary bytes and drives one parser exactly as the server does. Not a server API.

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use tungstenite::protocol::{Role, WebSocketContext};
use tungstenite::Message;

use crate::apps::{App, AppRegistry};
use crate::config::Config;
use crate::protocol::incoming::ClientMessage;

/// A fuzz target: arbitrary bytes in, a panic is a bug.
pub type Target = fn(&[u8]);

/// The fuzz targets by name.
pub const TARGETS: [(&str, Target); 4] = [
    ("client-message", client_message),
    ("ws-frames", ws_frames),
    ("rest-query", rest_query),
    ("config", config),
];

/// A text WebSocket message, as the connection loop hands it to the parser.
pub fn client_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientMessage::parse(text);
    }
}

/// Bytes from a client socket: frames read with the server's limits, text messages parsed.
pub fn ws_frames(data: &[u8]) {
    let config = crate::transport::websocket_config(64 * 1024);
    let mut context = WebSocketContext::new(Role::Server, Some(config));
    let mut io = Replay { data, written: 0 };
    for _ in 0..64 {
        match context.read(&mut io) {
            Ok(Message::Text(text)) => {
                let _ = ClientMessage::parse(text.as_str());
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// The input as a socket that has nothing more once it is read; writes (pongs, close
/// replies) are counted and dropped.
struct Replay<'a> {
    data: &'a [u8],
    written: usize,
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.data.read(buf)?;
        Ok(n)
    }
}

impl Write for Replay<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The app REST requests are checked against (key `key`, secret `secret`).
fn fuzz_app() -> &'static App {
    static APPS: OnceLock<AppRegistry> = OnceLock::new();
    let apps = APPS.get_or_init(|| {
        let json =
            r#"{"app_manager":{"array":{"apps":[{"id":"1","key":"key","secret":"secret"}]}}}"#;
        let config = Config::from_json(json).expect("the fuzz app config is valid");
        AppRegistry::new(&config.apps, None)
    });
    apps.by_id("1").expect("the fuzz app")
}

/// A REST request line: `METHOD\nPATH\nQUERY`. When the first byte is odd the query is
/// re-signed with the app's secret first, so the checks past the signature run too.
pub fn rest_query(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\n');
    let (method, path, query) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let app = fuzz_app();
    let now = 1_700_000_000;
    let query = if first % 2 == 1 {
        resigned(app, method, path, query)
    } else {
        query.to_owned()
    };
    let _ = crate::http::verify_query(app, method, path, &query, now);
}

fn resigned(app: &App, method: &str, path: &str, query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    pairs.sort();
    let canonical: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let signed = format!(
        "{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        canonical.join("&")
    );
    let signature = app.signer.sign_hex(signed.as_bytes());
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.extend_pairs(&pairs);
    out.append_pair("auth_signature", &signature);
    out.finish()
}

/// A config file's text.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = Config::from_json(text) {
            let _ = crate::config::apply_env(config, &|_| None);
        }
    }
}
