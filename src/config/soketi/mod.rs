//! soketi's configuration read as Sockudo's: its `SOKETI_*` variables and its dotted camelCase
//! `config.json`, each option read as a Sockudo key, warned or refused by the table in
//! `table.rs`, as an overlay on the raw document before validation (so validation and its
//! messages are the usual ones, naming the variable or the soketi key as written).

mod apps;
mod database;
mod dotenv;
mod table;

use serde_json::{Map, Value};

use super::{ConfigError, IgnoredKey};
pub use dotenv::{DotEnv, DOTENV_MAX_BYTES};
use table::{Action, Kind, Row, ROWS};

/// Which schema a config file is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConfigFormat {
    /// soketi's when a top-level key has a dot or an upper-case letter, else Sockudo's.
    #[default]
    Auto,
    /// Sockudo's snake_case schema (Herald's own).
    Sockudo,
    /// soketi's dotted camelCase options.
    Soketi,
}

/// A soketi option read as a Sockudo key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslatedKey {
    /// The variable (`$SOKETI_PORT`) or soketi key (`appManager.array.apps[0].maxConnections`).
    pub from: String,
    /// The Sockudo key path it was written to.
    pub to: String,
}

/// Whether a document is soketi's: a top-level key with a dot or an upper-case letter (every
/// Sockudo key is snake_case).
pub fn is_soketi(document: &Value) -> bool {
    document.as_object().is_some_and(|map| {
        map.keys()
            .any(|key| key.contains('.') || key.chars().any(|c| c.is_ascii_uppercase()))
    })
}

/// What the soketi options did to a document, and what is settled once all of them are in.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// Options read as Sockudo keys.
    pub translated: Vec<TranslatedKey>,
    /// Options accepted and ignored, with why.
    pub ignored: Vec<IgnoredKey>,
    /// `adapter.redis.clusterMode`: where it was set, and whether it was on.
    cluster_mode: Option<(String, bool)>,
    /// `rateLimiter.driver` set to `redis`: where, and why it needs a Redis adapter.
    shared_quotas: Option<(String, &'static str)>,
}

/// The Sockudo document from a config file's text (none: `{}`) in `format`, with the
/// `SOKETI_*` variables of `var` written over it; errors name the variable or soketi key.
pub(crate) fn prepare(
    text: Option<&str>,
    format: ConfigFormat,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<(Value, Overlay), ConfigError> {
    let mut overlay = Overlay::default();
    let mut document = match text {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| ConfigError::invalid("(root)", e.to_string()))?
        }
        None => Value::Object(Map::new()),
    };
    let soketi = match format {
        ConfigFormat::Auto => is_soketi(&document),
        ConfigFormat::Sockudo => false,
        ConfigFormat::Soketi => true,
    };
    if soketi {
        document = overlay.translate_file(&document)?;
    }
    overlay.overlay_env(&mut document, var)?;
    overlay.settle(&mut document)?;
    Ok((document, overlay))
}

impl Overlay {
    /// Translates a soketi `config.json` (dotted or nested keys) into a Sockudo document.
    pub fn translate_file(&mut self, soketi: &Value) -> Result<Value, ConfigError> {
        if !soketi.is_object() {
            return Err(ConfigError::invalid(
                "(root)",
                "a soketi config is a JSON object",
            ));
        }
        let mut document = Value::Object(Map::new());
        self.walk("", soketi, &mut document)?;
        Ok(document)
    }

    /// Writes every set `SOKETI_*` variable over `document` (an empty value is unset, as in
    /// soketi).
    pub fn overlay_env(
        &mut self,
        document: &mut Value,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for row in ROWS {
            let Some(name) = row.var else { continue };
            let Some(raw) = var(name).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = match row.action {
                Action::Map(_, Kind::Text | Kind::TlsFile) => Value::String(raw),
                // As soketi reads a variable: JSON when it parses, else the string.
                _ => serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
            };
            self.apply(row, &format!("${name}"), value, document)?;
        }
        Ok(())
    }

    /// What depends on several options: `clusterMode` on the final driver, and quotas shared
    /// in Redis on a Redis adapter.
    pub fn settle(&mut self, document: &mut Value) -> Result<(), ConfigError> {
        let driver = || document.pointer("/adapter/driver").and_then(Value::as_str);
        let redis = matches!(driver(), Some("redis" | "redis-cluster"));
        if let Some((source, reason)) = self.shared_quotas.take() {
            if !redis {
                return Err(ConfigError::invalid(&source, reason));
            }
        }
        if let Some((source, on)) = self.cluster_mode.take() {
            if on && driver() == Some("redis") {
                set_path(document, "adapter.driver", "redis-cluster".into());
                self.mapped(&source, "adapter.driver");
            } else if on {
                self.warned(&source, "applies to the redis adapter only; ignored");
            }
        }
        self.soketi_database_defaults(document);
        Ok(())
    }

    /// A Sockudo key path as the user wrote it: the variable or soketi key it came from (the
    /// latest one when several wrote it), followed by the rest of the path.
    pub fn source_of(&self, path: &str) -> Option<String> {
        let mut best: Option<&TranslatedKey> = None;
        for key in &self.translated {
            let inside = path.strip_prefix(key.to.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            });
            if inside && best.is_none_or(|b| key.to.len() >= b.to.len()) {
                best = Some(key);
            }
        }
        best.map(|key| format!("{}{}", key.from, &path[key.to.len()..]))
    }

    /// An error's path as the user wrote it.
    pub fn rename(&self, mut error: ConfigError) -> ConfigError {
        if let Some(source) = self.source_of(&error.path) {
            error.path = source;
        }
        error
    }

    pub(super) fn mapped(&mut self, from: &str, to: &str) {
        self.translated.push(TranslatedKey {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }

    pub(super) fn warned(&mut self, from: &str, reason: &str) {
        self.ignored.push(IgnoredKey {
            path: from.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// Each key of a soketi document by its dotted name: a row's option takes the value whole,
    /// an object is entered, anything else is no soketi option.
    fn walk(&mut self, prefix: &str, value: &Value, out: &mut Value) -> Result<(), ConfigError> {
        if let Some(row) = ROWS.iter().find(|row| row.option == prefix) {
            return self.apply(row, prefix, value.clone(), out);
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let path = match prefix {
                        "" => key.clone(),
                        _ => format!("{prefix}.{key}"),
                    };
                    self.walk(&path, child, out)?;
                }
                Ok(())
            }
            _ => {
                self.warned(prefix, "not a soketi option; ignored");
                Ok(())
            }
        }
    }

    /// One option's value, from `source`, as its row says.
    fn apply(
        &mut self,
        row: &Row,
        source: &str,
        value: Value,
        document: &mut Value,
    ) -> Result<(), ConfigError> {
        match row.action {
            Action::Warn(reason) => self.warned(source, reason),
            Action::Refuse(reason) if asks_for_something(&value) => {
                return Err(ConfigError::invalid(source, reason))
            }
            Action::Refuse(reason) => self.warned(source, reason),
            Action::SharedQuotas(reason) => {
                if value.as_str() == Some("redis") {
                    self.shared_quotas = Some((source.to_owned(), reason));
                }
                self.warned(source, reason);
            }
            // soketi reads null and "" as unset.
            Action::Map(..) if value.is_null() || value == "" => {}
            Action::Map(target, kind) => self.map(source, target, kind, value, document)?,
        }
        Ok(())
    }

    fn map(
        &mut self,
        source: &str,
        target: &str,
        kind: Kind,
        value: Value,
        document: &mut Value,
    ) -> Result<(), ConfigError> {
        let value = match kind {
            Kind::Text | Kind::Json => value,
            Kind::Flag => flag(value),
            Kind::MsToSeconds => ms_to_seconds(source, &value)?,
            Kind::AppDriver => renamed(value, "array", "memory"),
            Kind::AdapterDriver => renamed(value, "cluster", "local"),
            Kind::ClusterNodes => cluster_nodes(source, &value)?,
            Kind::Webhooks => apps::webhooks(self, &value, source, target)?,
            Kind::Apps => apps::apps(self, &value, source, target)?,
            Kind::TlsFile => {
                // soketi serves TLS as soon as a certificate or key is set.
                if document.pointer("/ssl/enabled").is_none() {
                    set_path(document, "ssl.enabled", Value::Bool(true));
                }
                value
            }
            Kind::RedisClusterMode => {
                self.cluster_mode = Some((source.to_owned(), is_on(&value)));
                return Ok(());
            }
        };
        if target.starts_with("app_manager.array.apps[0]") {
            ensure_default_app(document);
        }
        set_path(document, target, value);
        self.mapped(source, target);
        Ok(())
    }
}

/// Whether a value asks for its feature: anything but null, `""`, `false`, `0`, `{}` or `[]`.
fn asks_for_something(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(on) => *on,
        Value::String(text) => !text.trim().is_empty() && text.trim() != "false",
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

fn is_on(value: &Value) -> bool {
    matches!(value, Value::Bool(true)) || matches!(value.as_str(), Some("true" | "1"))
}

/// `1` / `0` (numbers or text) and `"true"` / `"false"` as booleans; anything else as it is,
/// for validation to name.
fn flag(value: Value) -> Value {
    match &value {
        Value::Number(n) if n.as_f64() == Some(1.0) => Value::Bool(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Value::Bool(false),
        Value::String(text) => match text.trim() {
            "1" | "true" => Value::Bool(true),
            "0" | "false" => Value::Bool(false),
            _ => value,
        },
        _ => value,
    }
}

fn renamed(value: Value, from: &str, to: &str) -> Value {
    match value.as_str() {
        Some(name) if name == from => Value::String(to.to_owned()),
        _ => value,
    }
}

/// soketi's milliseconds as Sockudo's whole seconds, rounded up so a bound never shrinks.
fn ms_to_seconds(source: &str, value: &Value) -> Result<Value, ConfigError> {
    let ms = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    match ms {
        Some(ms) if ms.is_finite() && ms >= 0.0 => Ok(Value::from((ms / 1000.0).ceil() as u64)),
        _ => Err(ConfigError::invalid(
            source,
            format!("{value} is not a number of milliseconds"),
        )),
    }
}

/// ioredis's cluster nodes (`{host, port}`, `"host:port"` or a port) as `"host:port"`.
fn cluster_nodes(source: &str, value: &Value) -> Result<Value, ConfigError> {
    let Value::Array(nodes) = value else {
        return Err(ConfigError::invalid(source, "is not a list of nodes"));
    };
    let node = |(i, node): (usize, &Value)| match node {
        Value::String(text) => Ok(Value::String(text.clone())),
        Value::Number(port) => Ok(Value::String(format!("127.0.0.1:{port}"))),
        Value::Object(map) => {
            let host = map
                .get("host")
                .and_then(Value::as_str)
                .unwrap_or("127.0.0.1");
            let port = map.get("port").map_or("6379".to_owned(), |p| match p {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            });
            Ok(Value::String(format!("{host}:{port}")))
        }
        _ => Err(ConfigError::invalid(
            &format!("{source}[{i}]"),
            "is not {host, port}, \"host:port\" or a port",
        )),
    };
    nodes.iter().enumerate().map(node).collect()
}

/// soketi's built-in app, which `SOKETI_DEFAULT_APP_*` change, when no app is configured.
fn ensure_default_app(document: &mut Value) {
    let apps = document.pointer("/app_manager/array/apps");
    if apps
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return;
    }
    let (id, key, secret) = super::env::DEMO_APP;
    let app = serde_json::json!({"id": id, "key": key, "secret": secret});
    set_path(document, "app_manager.array.apps", Value::Array(vec![app]));
}

/// Writes `value` at a dotted path with `[i]` indexes, making objects (and array slots) on
/// the way and replacing anything that is not one.
pub(super) fn set_path(document: &mut Value, path: &str, value: Value) {
    let mut slot = document;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        slot = slot
            .as_object_mut()
            .expect("made an object")
            .entry(key)
            .or_insert(Value::Null);
        if let Some(index) = index {
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            let items = slot.as_array_mut().expect("made an array");
            while items.len() <= index {
                items.push(Value::Object(Map::new()));
            }
            slot = &mut items[index];
        }
    }
    *slot = value;
}

#[cfg(test)]
mod readme;
#[cfg(test)]
mod tests;
