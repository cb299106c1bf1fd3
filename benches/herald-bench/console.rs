//! The debug console's cost, for any scenario: `--console off` turns it off in the server's
//! config, `closed` (the default) leaves it on with nobody watching, `open` keeps one viewer
//! reading the bench app's live stream for the whole run (its count of entries, and of those it
//! lost by falling behind, is printed when the server stops).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use clap::ValueEnum;
use serde_json::{json, Value};

use crate::target::APP_ID;

/// The console's token in every bench config.
const TOKEN: &str = "bench-console-token-0123456789";

/// How the console is set up during a run.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsoleMode {
    /// `console.enabled: false`.
    Off,
    /// On, nobody watching.
    Closed,
    /// On, one viewer streaming the bench app's journal.
    Open,
}

static MODE: OnceLock<ConsoleMode> = OnceLock::new();

/// Sets the mode for the whole run (once, from the command line).
pub fn set_mode(mode: ConsoleMode) {
    let _ = MODE.set(mode);
}

fn mode() -> ConsoleMode {
    *MODE.get().unwrap_or(&ConsoleMode::Closed)
}

/// The `console` section of a bench config.
pub fn section() -> Value {
    json!({"enabled": mode() != ConsoleMode::Off, "token": TOKEN})
}

/// A viewer of the server on `port`, when the mode asks for one; it stops when dropped.
pub struct Viewer {
    task: tokio::task::JoinHandle<()>,
    entries: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl Viewer {
    /// Starts watching, in `open` mode only.
    pub fn start(port: u16) -> Option<Viewer> {
        if mode() != ConsoleMode::Open {
            return None;
        }
        let entries = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (seen, lost) = (entries.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = watch(port, &seen, &lost).await {
                eprintln!("console viewer: {error}");
            }
        });
        Some(Viewer {
            task,
            entries,
            dropped,
        })
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
        let (entries, dropped) = (
            self.entries.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        );
        eprintln!("console viewer: {entries} entries received, {dropped} lost by falling behind");
    }
}

/// Opens the console (token for cookie) and reads the bench app's stream until aborted.
async fn watch(port: u16, entries: &AtomicU64, dropped: &AtomicU64) -> Result<(), String> {
    let client = crate::tls::trust(reqwest::Client::builder())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let base = format!("{}://127.0.0.1:{port}/console", crate::tls::http_scheme());
    let opened = client
        .get(format!("{base}?token={TOKEN}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let cookie = opened
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .ok_or("the console set no cookie (is it off, or not Herald?)")?
        .to_owned();
    let url = format!("{base}/api/apps/{APP_ID}/stream");
    let mut stream = client
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    while let Some(chunk) = stream.chunk().await.map_err(|e| e.to_string())? {
        let text = String::from_utf8_lossy(&chunk);
        entries.fetch_add(text.matches("data: ").count() as u64, Ordering::Relaxed);
        for notice in text.match_indices("\"kind\":\"dropped\"") {
            let rest = &text[notice.0..];
            let count = rest
                .split("\"count\":")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next());
            dropped.fetch_add(
                count.and_then(|c| c.parse().ok()).unwrap_or(0),
                Ordering::Relaxed,
            );
        }
    }
    Ok(())
}
