//! A soketi user moving in unchanged: the real binary started with only `SOKETI_*` variables, with
//! a `.env` beside it, and with soketi's `config.json`; a refused variable stops start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::receiver::Receiver;
use crate::support::{Client, Rest, Served};

/// The binary in a directory of its own, with nothing of the test's environment but `vars`.
struct Soketi {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Soketi {
    /// A fresh working directory holding `files` (name, content).
    fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("herald-soketi-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, content) in files {
            std::fs::write(dir.join(file), content).unwrap();
        }
        dir
    }

    fn command(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command.args(args).current_dir(dir).env_clear();
        command.envs(vars.iter().copied()).env("NO_COLOR", "1");
        command
    }

    /// Starts it and waits until it listens.
    fn start(dir: PathBuf, args: &[&str], vars: &[(&str, &str)]) -> Soketi {
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Soketi::command(&dir, args, vars)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("herald runs");
        let mut herald = Soketi {
            child,
            dir,
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while herald.port == 0 {
            let log = std::fs::read_to_string(herald.dir.join("log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "not listening: {log}");
            assert!(herald.child.try_wait().unwrap().is_none(), "exited: {log}");
            herald.port = listening_port(&log).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(20));
        }
        herald
    }

    fn ws_url(&self, key: &str) -> String {
        format!("ws://127.0.0.1:{}/app/{key}?protocol=7", self.port)
    }
}

fn listening_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("Herald listening"))?;
    let after = &line[line.find("addr=")? + "addr=".len()..];
    let addr: SocketAddr = after.split_whitespace().next()?.parse().ok()?;
    Some(addr.port())
}

impl Served for Soketi {
    fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Soketi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client subscribed to `channel` receives an event triggered over REST signed with `secret`.
async fn round_trip(herald: &Soketi, (id, key, secret): (&str, &str, &str), channel: &str) {
    let mut client = Client::connect(&herald.ws_url(key)).await;
    client.subscribe(channel).await;
    let rest = Rest {
        key,
        secret,
        ..Rest::new(herald)
    };
    let body = json!({"name": "greeting", "channels": [channel], "data": "{\"hello\":1}"});
    let (status, answer) = rest.post(&format!("/apps/{id}/events"), body).await;
    assert_eq!(status, 200, "{answer}");
    let event = client.recv_event("greeting").await;
    assert_eq!(
        (event["channel"].as_str(), event["data"].as_str()),
        (Some(channel), Some("{\"hello\":1}"))
    );
}

/// Variables every test sets: a free port, no metrics listener (its fixed port is shared).
const QUIET: [(&str, &str); 2] = [("SOKETI_PORT", "0"), ("SOKETI_METRICS_ENABLED", "false")];

#[tokio::test]
async fn soketi_variables_alone_start_a_working_server() {
    let dir = Soketi::dir("env", &[]);
    let app = [
        ("SOKETI_DEFAULT_APP_ID", "soketi-app"),
        ("SOKETI_DEFAULT_APP_KEY", "soketi-key"),
        ("SOKETI_DEFAULT_APP_SECRET", "soketi-secret"),
        ("SOKETI_HOST", "127.0.0.1"),
        ("SOKETI_DEBUG", "1"),
    ];
    let vars: Vec<_> = QUIET.iter().chain(&app).copied().collect();
    let herald = Soketi::start(dir, &[], &vars);
    round_trip(
        &herald,
        ("soketi-app", "soketi-key", "soketi-secret"),
        "orders",
    )
    .await;
}

#[tokio::test]
async fn a_dotenv_in_the_working_directory_is_read_behind_the_environment() {
    let dotenv = "# soketi's .env\nSOKETI_DEFAULT_APP_ID=dot-app\nexport SOKETI_DEFAULT_APP_KEY=\"dot-key\"\n\
                  SOKETI_DEFAULT_APP_SECRET=from-the-file\nSOKETI_PORT=0\nSOKETI_METRICS_ENABLED=false\n";
    let dir = Soketi::dir("dotenv", &[(".env", dotenv)]);
    let herald = Soketi::start(
        dir,
        &[],
        &[("SOKETI_DEFAULT_APP_SECRET", "from-the-environment")],
    );
    round_trip(
        &herald,
        ("dot-app", "dot-key", "from-the-environment"),
        "news",
    )
    .await;
}

/// A soketi `config.json` with an app whose webhooks filter by channel prefix.
fn soketi_config(hooks: &Receiver) -> Value {
    json!({
        "debug": true,
        "host": "127.0.0.1",
        "port": 0,
        "metrics.enabled": false,
        "appManager.array.apps": [{
            "id": "file-app", "key": "file-key", "secret": "file-secret",
            "maxConnections": -1, "enableClientMessages": true,
            "maxBackendEventsPerSecond": 100, "maxClientEventsPerSecond": 10,
            "webhooks": [
                {"url": hooks.url("/rooms"), "event_types": ["channel_occupied"],
                 "filter": {"channel_name_starts_with": "room-"}},
                {"url": hooks.url("/other"), "event_types": ["channel_occupied"],
                 "filter": {"channel_name_starts_with": "other-"}}
            ]
        }],
        "webhooks": {"batching": {"enabled": false}},
        "rateLimiter.driver": "local",
        "queue.driver": "sync"
    })
}

#[tokio::test]
async fn a_soketi_config_file_loads_with_its_apps_and_webhooks() {
    let hooks = Receiver::start().await;
    let config = soketi_config(&hooks).to_string();
    let dir = Soketi::dir("file", &[("config.json", &config)]);
    let herald = Soketi::start(dir, &["--config", "config.json"], &[]);
    round_trip(&herald, ("file-app", "file-key", "file-secret"), "room-1").await;
    let received = hooks.wait_until(|r| !r.is_empty()).await;
    let events = received[0].events();
    assert_eq!(events[0]["name"], "channel_occupied");
    assert_eq!(events[0]["channel"], "room-1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        hooks.at("/other").is_empty(),
        "the other prefix's endpoint hears nothing"
    );
    let log = std::fs::read_to_string(herald.dir.join("log")).unwrap();
    assert!(
        log.contains("queue.driver"),
        "an ignored option is warned: {log}"
    );
}

fn failed_start(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> String {
    let Output { status, stderr, .. } = Soketi::command(dir, args, vars).output().unwrap();
    assert!(!status.success());
    String::from_utf8_lossy(&stderr).into_owned()
}

#[test]
fn a_refused_option_stops_startup_naming_it() {
    let dir = Soketi::dir("refused", &[]);
    let stderr = failed_start(&dir, &[], &[("SOKETI_SSL_CA", "/etc/ssl/ca.pem")]);
    assert!(stderr.contains("$SOKETI_SSL_CA"), "{stderr}");
    let stderr = failed_start(&dir, &[], &[("SOKETI_PORT", "six")]);
    assert!(stderr.contains("$SOKETI_PORT"), "{stderr}");
    let file = json!({"appManager.array.apps": [{"id": "a", "key": "k", "secret": "s",
        "webhooks": [{"url": "http://127.0.0.1:9/", "event_types": ["channel_vacated"],
                      "filter": {"channel_name_ends_with": "-x"}}]}]});
    std::fs::write(dir.join("config.json"), file.to_string()).unwrap();
    let stderr = failed_start(&dir, &["--config", "config.json"], &[]);
    assert!(
        stderr.contains(
            "config.json: appManager.array.apps[0].webhooks[0].filter.channel_name_ends_with"
        ),
        "{stderr}"
    );
    // Its top-level key is snake_case: only the flag makes it soketi's.
    std::fs::write(
        dir.join("nested.json"),
        r#"{"ssl": {"caPath": "/etc/ssl/ca.pem"}}"#,
    )
    .unwrap();
    let stderr = failed_start(
        &dir,
        &["--config", "nested.json", "--config-format", "soketi"],
        &[],
    );
    assert!(stderr.contains("nested.json: ssl.caPath"), "{stderr}");
    std::fs::write(dir.join(".env"), "SOKETI_PORT=1\nnot a line\n").unwrap();
    let stderr = failed_start(&dir, &[], &[]);
    assert!(stderr.contains(".env: line 2"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
