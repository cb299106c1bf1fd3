//! The `herald` binary: parse the command line, load the config, run until SIGTERM/SIGINT
//! (SIGHUP re-reads the config file: see `herald::server::reload`).

mod apps_command;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use herald::config::{Config, ConfigFormat, DotEnv};
use herald::server::reload::ConfigSource;
use herald::state::ConsoleToken;
use herald::Server;
use tracing_subscriber::EnvFilter;

/// A Pusher-compatible realtime WebSocket server.
///
/// Serves the Pusher Channels protocol (v7) at ws://HOST:PORT/app/{key}, the Pusher REST API at
/// http://HOST:PORT/apps/{id}/..., and Prometheus metrics at http://HOST:METRICS_PORT/metrics.
/// Environment overrides: HERALD_HOST, HERALD_PORT, HERALD_DEBUG, HERALD_METRICS_PORT,
/// HERALD_METRICS_ENABLED, HERALD_APP_ID, HERALD_APP_KEY, HERALD_APP_SECRET; soketi's SOKETI_*
/// variables too (HERALD_* wins), also from a .env file in the working directory. RUST_LOG sets
/// the log filter.
#[derive(Parser)]
#[command(name = "herald", version)]
struct Cli {
    /// Path of a Sockudo-compatible config.json. Without it, defaults and the environment are
    /// used (and a demo app app-id/app-key/app-secret when none is configured).
    #[arg(long, short, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Re-read the config file whenever its content changes (checked every 2 s), as SIGHUP
    /// does: apps added, removed and changed take effect without a restart. For a Kubernetes
    /// ConfigMap mounted as a file.
    #[arg(long, requires = "config")]
    watch_config: bool,

    /// The schema of the --config file: soketi's dotted camelCase options or Sockudo's
    /// snake_case keys. Without it, a file with a top-level key holding a dot or an upper-case
    /// letter is read as soketi's.
    #[arg(long, value_enum, value_name = "FORMAT", global = true)]
    config_format: Option<FormatArg>,

    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do instead of serving.
#[derive(clap::Subcommand)]
enum Command {
    /// The apps of the configured database (app_manager.driver "pgsql" or "mysql").
    #[command(subcommand)]
    Apps(apps_command::AppsCommand),
}

/// `--config-format`'s values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Soketi,
    Sockudo,
}

fn format(cli: &Cli) -> ConfigFormat {
    match cli.config_format {
        None => ConfigFormat::Auto,
        Some(FormatArg::Soketi) => ConfigFormat::Soketi,
        Some(FormatArg::Sockudo) => ConfigFormat::Sockudo,
    }
}

/// The configuration from the file, `.env` and the environment (the process's wins over `.env`).
fn load(cli: &Cli) -> anyhow::Result<Config> {
    let dotenv = DotEnv::read(std::path::Path::new(".env"))?;
    let var = |name: &str| dotenv.var(name);
    Ok(Config::load_with(cli.config.as_deref(), format(cli), &var)?)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: closing sockets with 4200");
}

/// Where the console is; with a token made at start-up, the whole URL, once (as Jupyter does).
fn log_console(server: &Server, addr: std::net::SocketAddr) {
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip => ip.to_string(),
    };
    let tls = server.state().config().tls.is_some();
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{host}:{}/console", addr.port());
    match server.state().console_token() {
        Some(ConsoleToken::Generated(token)) => {
            tracing::info!("console (a token made at start-up; set console.token to keep one): {url}?token={token}")
        }
        Some(ConsoleToken::Configured(_)) => {
            tracing::info!("console: {url}?token=<console.token>")
        }
        None => return,
    }
    if !addr.ip().is_loopback() && !tls {
        tracing::warn!(
            address = %addr.ip(),
            "the console listens on a non-loopback address without TLS: its token and session cookie cross the network in clear; bind host to 127.0.0.1, put a TLS proxy in front, or set console.enabled to false"
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    let config = load(&cli)?;
    if let Some(Command::Apps(command)) = cli.command.take() {
        return apps_command::run(command, &config).await;
    }
    let default_level = if config.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .init();
    let files = herald::server::open_files::raise();
    let shown = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    tracing::info!(
        limit = %shown(files.now),
        raised_from = %shown(files.found),
        sockets = %shown(files.sockets()),
        "open-file limit (each client socket takes one)"
    );
    for key in &config.translated_keys {
        tracing::debug!(from = %key.from, to = %key.to, "soketi option read as a Sockudo key");
    }
    for app in &config.apps {
        tracing::info!(id = %app.id, key = %app.key, enabled = app.enabled, "app configured");
    }
    let mut server = Server::bind(config)
        .await
        .context("cannot start the server")?;
    if let Some(path) = &cli.config {
        server = server.reloading(ConfigSource {
            path: path.clone(),
            watch: cli.watch_config,
            format: format(&cli),
        });
    }
    let addr = server.local_addr()?;
    tracing::info!(%addr, metrics = ?server.metrics_addr(), "Herald listening");
    log_console(&server, addr);
    server.run(shutdown_signal()).await?;
    Ok(())
}
