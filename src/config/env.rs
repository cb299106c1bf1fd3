//! Environment overrides, applied after the file (see the README for the list).

use super::cluster::check_node_id;
use super::{AppConfig, ClusterConfig, Config, ConfigError};

/// Built-in demo credentials used when no app is configured anywhere.
pub const DEMO_APP: (&str, &str, &str) = ("app-id", "app-key", "app-secret");

fn parsed<T: std::str::FromStr>(name: &str, value: Option<String>) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|e| ConfigError::invalid(&format!("${name}"), format!("{v:?}: {e}")))
        })
        .transpose()
}

fn boolean(name: &str, value: Option<String>) -> Result<Option<bool>, ConfigError> {
    match value.as_deref().map(str::trim) {
        None => Ok(None),
        Some("1" | "true" | "TRUE" | "True") => Ok(Some(true)),
        Some("0" | "false" | "FALSE" | "False") => Ok(Some(false)),
        Some(other) => Err(ConfigError::invalid(
            &format!("${name}"),
            format!("{other:?} is not true/false/1/0"),
        )),
    }
}

/// Applies `HERALD_*` variables read through `var`.
///
/// `HERALD_APP_ID` / `HERALD_APP_KEY` / `HERALD_APP_SECRET` define one app: they replace the
/// credentials of the app with that id, or add it. With no app anywhere, the demo app is added.
/// With a database driver neither happens: apps come from the database alone, and the
/// variables are refused (an app added from the environment would be one no other node has).
pub fn apply_env(
    mut config: Config,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    apply_server_env(&mut config, var)?;
    let credentials = (
        var("HERALD_APP_ID"),
        var("HERALD_APP_KEY"),
        var("HERALD_APP_SECRET"),
    );
    if config.app_store.is_some() {
        refuse_app_env(&config, &credentials)?;
        return Ok(config);
    }
    apply_app_env(&mut config, credentials)?;
    if config.apps.is_empty() {
        let (id, key, secret) = DEMO_APP;
        config
            .apps
            .push(AppConfig::with_credentials(id, key, secret));
    }
    config.check_unique_apps()?;
    Ok(config)
}

/// The server's own variables: host, port, debug, metrics, node id, console token.
fn apply_server_env(
    config: &mut Config,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if let Some(host) = var("HERALD_HOST") {
        config.host = host;
    }
    if let Some(port) = parsed("HERALD_PORT", var("HERALD_PORT"))? {
        config.port = port;
    }
    if let Some(debug) = boolean("HERALD_DEBUG", var("HERALD_DEBUG"))? {
        config.debug = debug;
    }
    if let Some(port) = parsed("HERALD_METRICS_PORT", var("HERALD_METRICS_PORT"))? {
        config.metrics.port = port;
    }
    if let Some(enabled) = boolean("HERALD_METRICS_ENABLED", var("HERALD_METRICS_ENABLED"))? {
        config.metrics.enabled = enabled;
    }
    if let Some(node_id) = var("HERALD_NODE_ID") {
        // Only a cluster node has an id; alone, the variable means nothing.
        if let ClusterConfig::Redis(redis) = &mut config.cluster {
            check_node_id("$HERALD_NODE_ID", &node_id)?;
            redis.node_id = Some(node_id);
        }
    }
    if let Some(token) = var("HERALD_CONSOLE_TOKEN") {
        config.console.token = Some(super::console_token("$HERALD_CONSOLE_TOKEN", token)?);
    }
    Ok(())
}

/// `HERALD_APP_ID` / `_KEY` / `_SECRET` as read.
type AppCredentials = (Option<String>, Option<String>, Option<String>);

/// With a database driver, an app from the environment is refused.
fn refuse_app_env(config: &Config, (id, key, secret): &AppCredentials) -> Result<(), ConfigError> {
    let set = [
        ("HERALD_APP_ID", id),
        ("HERALD_APP_KEY", key),
        ("HERALD_APP_SECRET", secret),
    ];
    let Some((name, _)) = set.iter().find(|(_, value)| value.is_some()) else {
        return Ok(());
    };
    let section = config.app_store.as_ref().map_or("", |s| s.driver.section());
    Err(ConfigError::invalid(
        &format!("${name}"),
        format!("apps come from the database ({section}): add the app to its table instead"),
    ))
}

/// The app the variables define: new credentials for the app with that id, or a new app.
fn apply_app_env(
    config: &mut Config,
    (id, key, secret): AppCredentials,
) -> Result<(), ConfigError> {
    if id.is_none() && key.is_none() && secret.is_none() {
        return Ok(());
    }
    let id = id.unwrap_or_else(|| DEMO_APP.0.to_owned());
    if let Some(app) = config.apps.iter_mut().find(|app| app.id == id) {
        if let Some(key) = key {
            app.key = key;
        }
        if let Some(secret) = secret {
            app.secret = secret;
        }
        return Ok(());
    }
    let key =
        key.ok_or_else(|| ConfigError::invalid("$HERALD_APP_KEY", "is required to add an app"))?;
    let secret = secret
        .ok_or_else(|| ConfigError::invalid("$HERALD_APP_SECRET", "is required to add an app"))?;
    config
        .apps
        .push(AppConfig::with_credentials(&id, &key, &secret));
    Ok(())
}
