//! `herald apps list|add|remove|set`: the apps of the configured database, from the command
//! line. Secrets are printed once, when `add` makes one, and never by `list`.

use anyhow::{bail, Context};
use clap::Subcommand;
use herald::app_store::{AppDraft, AppStore};
use herald::config::Config;
use serde_json::Value;

/// What `herald apps` does.
#[derive(Subcommand)]
pub enum AppsCommand {
    /// Every app of the table: id, key, enabled (never the secret), and the rows refused.
    List,
    /// Adds an app; a key and a secret are made when not given (the secret is printed once).
    Add {
        /// The app id.
        id: String,
        /// The app key (default: 20 random hex digits).
        #[arg(long)]
        key: Option<String>,
        /// The app secret (default: 32 random hex digits, printed once).
        #[arg(long)]
        secret: Option<String>,
        /// More app keys, `name=value` (JSON values, else text): `max_connections=100`.
        #[arg(value_name = "NAME=VALUE")]
        settings: Vec<String>,
    },
    /// Deletes an app (its sockets close with 4003 within the cache TTL).
    Remove {
        /// The app id.
        id: String,
    },
    /// Changes keys of an app, `name=value` (JSON values, else text; `null` clears one).
    Set {
        /// The app id.
        id: String,
        /// The keys to change: `enabled=false`, `secret=...`, `webhooks=[...]`.
        #[arg(value_name = "NAME=VALUE", required = true)]
        settings: Vec<String>,
    },
}

/// Runs `command` against the database `config` names.
pub async fn run(command: AppsCommand, config: &Config) -> anyhow::Result<()> {
    let Some(store_config) = &config.app_store else {
        bail!("apps are in config.json (app_manager.driver \"memory\"): edit app_manager.array.apps and send SIGHUP to the server (or run it with --watch-config)");
    };
    let store = AppStore::connect(store_config, config.app_defaults.clone())
        .await
        .context(store_config.driver.section())?;
    match command {
        AppsCommand::List => list(&store).await,
        AppsCommand::Add {
            id,
            key,
            secret,
            settings,
        } => add(&store, &id, (key, secret), &settings).await,
        AppsCommand::Remove { id } => {
            if !store.remove(&id).await? {
                bail!("no app {id:?}");
            }
            println!("removed app {id}");
            Ok(())
        }
        AppsCommand::Set { id, settings } => {
            let changes = draft(AppDraft::changes(), &settings)?;
            if !store.update(&id, &changes).await? {
                bail!("no app {id:?}");
            }
            println!("changed app {id}");
            Ok(())
        }
    }
}

async fn list(store: &AppStore) -> anyhow::Result<()> {
    let listing = store.all().await?;
    println!("{:<24} {:<32} enabled", "id", "key");
    for app in &listing.apps {
        println!("{:<24} {:<32} {}", app.id, app.key, app.enabled);
    }
    for refused in &listing.refused {
        println!("refused: {refused}");
    }
    Ok(())
}

async fn add(
    store: &AppStore,
    id: &str,
    (key, secret): (Option<String>, Option<String>),
    settings: &[String],
) -> anyhow::Result<()> {
    let made_secret = secret.is_none();
    let key = key.unwrap_or_else(|| random_hex(10));
    let secret = secret.unwrap_or_else(|| random_hex(16));
    let app = draft(AppDraft::new(id, &key, &secret), settings)?;
    store.insert(&app).await?;
    println!("added app {id} with key {key}");
    if made_secret {
        println!("secret (shown once): {secret}");
    }
    Ok(())
}

/// `draft` with each `name=value` set (a JSON value, else the text itself).
fn draft(mut draft: AppDraft, settings: &[String]) -> anyhow::Result<AppDraft> {
    for setting in settings {
        let Some((name, value)) = setting.split_once('=') else {
            bail!("{setting:?}: write name=value");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        draft = draft.with(name.trim(), value);
    }
    Ok(draft)
}

/// `bytes` random bytes in hex.
fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}
