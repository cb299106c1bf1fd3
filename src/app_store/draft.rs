//! An app to write ([`AppDraft`], `config.json`'s flat app shape) and the column values it
//! becomes: each key to its column, each value as text the database casts to the column type.

use serde_json::{Map, Value};

use super::cell::Cell;
use super::columns::{Column, Kind, Table};
use super::{row, StoreError};
use crate::config::ConfigError;

/// An app (or the changes to one) in `config.json`'s flat app shape: `id`, `key`, `secret`,
/// `max_connections`, `webhooks`, ... Only keys the table has a column for can be written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppDraft {
    fields: Map<String, Value>,
}

impl AppDraft {
    /// A new app with its credentials.
    pub fn new(id: &str, key: &str, secret: &str) -> AppDraft {
        AppDraft::default()
            .with("id", id)
            .with("key", key)
            .with("secret", secret)
    }

    /// No keys yet: changes for [`super::AppStore::update`].
    pub fn changes() -> AppDraft {
        AppDraft::default()
    }

    /// Sets `key` (`null` clears it: the global default applies).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> AppDraft {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// A draft from a JSON object of `config.json`'s flat app shape.
    pub fn from_object(fields: Map<String, Value>) -> AppDraft {
        AppDraft { fields }
    }

    /// The draft as a JSON object.
    pub fn to_value(&self) -> Value {
        Value::Object(self.fields.clone())
    }
}

/// A column and the text to write to it (`None`: NULL).
pub(super) type Values<'t> = Vec<(&'t Column, Option<String>)>;

/// Every column an insert writes: the draft's keys, and a neutral value for the other columns
/// the table requires (NOT NULL without a default, as in soketi's and Sockudo's DDL).
pub(super) fn insert_values<'t>(
    table: &'t Table,
    draft: &AppDraft,
) -> Result<Values<'t>, StoreError> {
    let mut values = update_values(table, draft)?;
    for column in table.columns.iter().filter(|c| c.required) {
        if values.iter().any(|(c, _)| c.name == column.name) {
            continue;
        }
        let neutral = match (column.kind, column.key) {
            (Kind::Flag, "enabled") => "1",
            (Kind::Json, _) => "[]",
            _ => "0",
        };
        values.push((column, Some(neutral.to_owned())));
    }
    Ok(values)
}

/// The columns of the keys `draft` sets.
pub(super) fn update_values<'t>(
    table: &'t Table,
    draft: &AppDraft,
) -> Result<Values<'t>, StoreError> {
    let mut values = Vec::new();
    for (key, value) in &draft.fields {
        let path = format!("app.{key}");
        let column = table.column(key).ok_or_else(|| {
            let message = format!("the table {:?} has no column for it", table.name);
            StoreError::Invalid(ConfigError::invalid(&path, message))
        })?;
        let text = text(column, value)
            .map_err(|message| StoreError::Invalid(ConfigError::invalid(&path, message)))?;
        values.push((column, text));
    }
    Ok(values)
}

/// The app of `current` (a row) with `changes` applied, to be validated before it is written.
pub(super) fn merged(
    table: &Table,
    current: Vec<Cell>,
    changes: &AppDraft,
) -> Result<Value, StoreError> {
    let mut app = row::value(table, current).map_err(StoreError::Refused)?;
    let app = app.as_object_mut().expect("a row is an object");
    let by_policy = app.contains_key("policy");
    for (key, value) in &changes.fields {
        let identity = ["key", "secret", "enabled", "decision_hooks"].contains(&key.as_str());
        if key == "id" && value.as_str() != app.get("id").and_then(Value::as_str) {
            let message = "an app's id cannot change (remove it and add it again)";
            return Err(StoreError::Invalid(ConfigError::invalid("app.id", message)));
        }
        if by_policy && !identity && key != "id" {
            let message = "the app is defined by its policy column; change the policy instead";
            return Err(StoreError::Invalid(ConfigError::invalid(
                &format!("app.{key}"),
                message,
            )));
        }
        match value {
            Value::Null => app.remove(key),
            value => app.insert(key.clone(), value.clone()),
        };
    }
    Ok(Value::Object(app.clone()))
}

/// `value` as text the database casts to `column`'s type.
fn text(column: &Column, value: &Value) -> Result<Option<String>, String> {
    Ok(Some(match (column.kind, value) {
        (_, Value::Null) => return Ok(None),
        (Kind::Json, value) => value.to_string(),
        (_, Value::String(text)) if column.kind != Kind::Flag => text.clone(),
        (Kind::Text | Kind::Limit | Kind::Size, Value::Number(n)) => n.to_string(),
        (Kind::Flag, Value::Bool(on)) => u8::from(*on).to_string(),
        (Kind::Flag, Value::String(text)) => match text.trim() {
            "true" | "1" => "1".into(),
            "false" | "0" => "0".into(),
            _ => return Err(format!("{text:?} is not a boolean")),
        },
        (Kind::Flag, Value::Number(n)) => u8::from(n.as_f64() != Some(0.0)).to_string(),
        (_, value) => return Err(format!("{value} cannot be written to this column")),
    }))
}
