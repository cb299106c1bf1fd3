//! A row as an app: its cells made into a JSON object of `config.json`'s app shape (from the
//! `policy` column alone when it is set, as Sockudo 5.2 does, else from the flat columns), then
//! validated with the file's global defaults; a bad value refuses the whole row.

use serde_json::{Map, Value};

use super::cell::Cell;
use super::columns::{Column, Kind, Table};
use super::RowRefusal;
use crate::config::{AppConfig, AppDefaults};

/// The path apps from rows are validated under; stripped from the errors.
const ROW: &str = "row";

/// Keys read beside a `policy`: the app's identity, and Herald's own decision hooks.
const BESIDE_POLICY: [&str; 5] = ["id", "key", "secret", "enabled", "decision_hooks"];

/// The row whose `key` column is exactly `value` (a `_ci` collation matches more).
pub(super) fn exact(
    table: &Table,
    rows: Vec<Vec<Cell>>,
    key: &str,
    value: &str,
) -> Option<Vec<Cell>> {
    let at = table.position(key)?;
    rows.into_iter().find(|cells| match &cells[at] {
        Cell::Text(text) => text == value,
        Cell::Int(n) => n.to_string() == value,
        _ => false,
    })
}

/// The row as a validated app, or why it is not one.
pub(super) fn app(
    table: &Table,
    cells: Vec<Cell>,
    defaults: &AppDefaults,
) -> Result<AppConfig, RowRefusal> {
    let value = value(table, cells)?;
    let app_id = value["id"].as_str().unwrap_or_default().to_owned();
    defaults.app_from_json(ROW, value).map_err(|e| {
        let inner = e.path.strip_prefix(ROW).unwrap_or(&e.path);
        let inner = inner.trim_start_matches('.');
        let key = inner.split(['.', '[']).next().unwrap_or_default();
        let column = table.column(key).map_or(key, |c| c.name.as_str());
        RowRefusal {
            app_id: app_id.clone(),
            column: column.to_owned(),
            message: match inner {
                "" => e.message,
                path => format!("{path}: {}", e.message),
            },
        }
    })
}

/// The row as a JSON object of `config.json`'s app shape (not yet validated).
pub(super) fn value(table: &Table, cells: Vec<Cell>) -> Result<Value, RowRefusal> {
    let id = match table.position("id").map(|at| &cells[at]) {
        Some(Cell::Text(id)) => id.clone(),
        Some(Cell::Int(id)) => id.to_string(),
        _ => String::new(),
    };
    let mut app = Map::new();
    for (column, cell) in table.columns.iter().zip(cells) {
        let value = decode(column, cell).map_err(|message| RowRefusal {
            app_id: id.clone(),
            column: column.name.clone(),
            message,
        })?;
        if !value.is_null() {
            app.insert(column.key.to_owned(), value);
        }
    }
    if app.contains_key("policy") {
        app.retain(|key, _| key == "policy" || BESIDE_POLICY.contains(&key.as_str()));
        if let Some(policy) = app.get_mut("policy").and_then(Value::as_object_mut) {
            if let Some(webhooks) = policy.get_mut("webhooks") {
                soketi_webhooks(webhooks).map_err(|message| RowRefusal {
                    app_id: id.clone(),
                    column: table
                        .column("policy")
                        .map_or("policy".into(), |c| c.name.clone()),
                    message: format!("webhooks{message}"),
                })?;
            }
        }
    }
    if let Some(webhooks) = app.get_mut("webhooks") {
        soketi_webhooks(webhooks).map_err(|message| RowRefusal {
            app_id: id.clone(),
            column: table
                .column("webhooks")
                .map_or("webhooks".into(), |c| c.name.clone()),
            message: format!("webhooks{message}"),
        })?;
    }
    Ok(Value::Object(app))
}

/// soketi's webhook filter: `channel_name_starts_with` is Herald's `channel_prefix`;
/// `channel_name_ends_with` would narrow what is sent and is refused (as unknown filter keys
/// are in `config.json`). The error is the key's path below `webhooks`.
fn soketi_webhooks(webhooks: &mut Value) -> Result<(), String> {
    let Some(webhooks) = webhooks.as_array_mut() else {
        return Ok(());
    };
    for (i, webhook) in webhooks.iter_mut().enumerate() {
        let filter = webhook.get_mut("filter").and_then(Value::as_object_mut);
        let Some(filter) = filter else { continue };
        if filter.contains_key("channel_name_ends_with") {
            return Err(format!(
                "[{i}].filter.channel_name_ends_with: is not supported (only a prefix filter is)"
            ));
        }
        if let Some(prefix) = filter.remove("channel_name_starts_with") {
            filter.entry("channel_prefix").or_insert(prefix);
        }
    }
    Ok(())
}

/// A cell as the JSON value of its app key; null is "not set".
fn decode(column: &Column, cell: Cell) -> Result<Value, String> {
    let unexpected = |what: &str, cell: &Cell| format!("expected {what}, found {cell:?}");
    Ok(match (column.kind, cell) {
        (_, Cell::Null) => Value::Null,
        (_, Cell::Unreadable(why)) => return Err(why),
        (Kind::Text, Cell::Text(text)) => Value::String(text),
        (Kind::Text, Cell::Int(n)) => Value::String(n.to_string()),
        (Kind::Text, cell) => return Err(unexpected("text", &cell)),
        (Kind::Flag, Cell::Bool(on)) => Value::Bool(on),
        (Kind::Flag, Cell::Int(n)) => Value::Bool(n != 0),
        (Kind::Flag, Cell::Text(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Value::Bool(true),
            "false" | "f" | "0" | "no" => Value::Bool(false),
            _ => return Err(unexpected("a boolean", &Cell::Text(text))),
        },
        (Kind::Flag, cell) => return Err(unexpected("a boolean", &cell)),
        (Kind::Limit | Kind::Size, Cell::Text(text)) => {
            let number = text.trim().parse::<f64>();
            let number = number.map_err(|_| unexpected("a number", &Cell::Text(text.clone())))?;
            return decode(column, Cell::Float(number));
        }
        (Kind::Limit, Cell::Int(n)) => Value::from(n.max(0)),
        (Kind::Limit, Cell::Float(n)) if n.is_finite() => Value::from((n as i64).max(0)),
        (Kind::Size, Cell::Int(n)) if n > 0 => Value::from(n),
        (Kind::Size, Cell::Int(_)) => Value::Null,
        (Kind::Size, Cell::Float(n)) if n.is_finite() && n > 0.0 => {
            match column.key.ends_with("_in_kb") {
                true => Value::from(n),
                false => Value::from(n as i64),
            }
        }
        (Kind::Size, Cell::Float(n)) if n.is_finite() => Value::Null,
        (Kind::Limit | Kind::Size, cell) => return Err(unexpected("a number", &cell)),
        (Kind::Json, Cell::Json(value)) => value,
        (Kind::Json, Cell::Text(text)) => {
            serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?
        }
        (Kind::Json, cell) => return Err(unexpected("JSON", &cell)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_store::columns::ColumnInfo;
    use crate::config::Config;
    use serde_json::json;

    fn table(columns: &[&str]) -> Table {
        let info = columns.iter().map(|name| ColumnInfo {
            name: name.to_string(),
            data_type: "text".into(),
            required: false,
        });
        Table::new("apps", info.collect()).unwrap()
    }

    fn text(value: &str) -> Cell {
        Cell::Text(value.into())
    }

    #[test]
    fn cells_decode_leniently_by_the_kind_of_their_column() {
        let table = table(&[
            "id",
            "key",
            "secret",
            "enabled",
            "enable_client_messages",
            "max_read_req_per_sec",
            "max_event_batch_size",
            "max_event_payload_in_kb",
            "created_at",
        ]);
        assert_eq!(table.layout, crate::app_store::Layout::Soketi);
        assert_eq!(table.columns.len(), 8, "unknown columns are not read");
        let cells = vec![
            Cell::Int(7),
            text("k"),
            text("s"),
            Cell::Int(0),
            text("TRUE"),
            Cell::Int(-1),
            Cell::Int(0),
            Cell::Float(0.5),
        ];
        let value = value(&table, cells).unwrap();
        assert_eq!(
            value,
            json!({"id": "7", "key": "k", "secret": "s", "enabled": false,
                   "enable_client_messages": true, "max_read_requests_per_second": 0,
                   "max_event_payload_in_kb": 0.5})
        );
        let app = app(
            &table,
            vec![
                Cell::Int(7),
                text("k"),
                text("s"),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ],
            &Config::defaults().app_defaults,
        )
        .unwrap();
        assert!(app.enabled, "NULL is the default");
    }

    #[test]
    fn a_bad_cell_refuses_the_row_naming_its_column() {
        let table = table(&[
            "id",
            "key",
            "secret",
            "enabled",
            "allowed_origins",
            "webhooks",
        ]);
        let defaults = Config::defaults().app_defaults;
        let row = |enabled: Cell, origins: Cell, webhooks: Cell| {
            vec![text("a"), text("k"), text("s"), enabled, origins, webhooks]
        };
        let refused = app(
            &table,
            row(text("maybe"), Cell::Null, Cell::Null),
            &defaults,
        );
        assert_eq!(refused.unwrap_err().column, "enabled");
        let refused = app(
            &table,
            row(Cell::Null, text("[not json"), Cell::Null),
            &defaults,
        );
        let refused = refused.unwrap_err();
        assert_eq!(
            (refused.app_id.as_str(), refused.column.as_str()),
            ("a", "allowed_origins")
        );
        assert!(refused.message.contains("invalid JSON"), "{refused}");
        let hooks = json!([{"url": "https://h.example", "event_types": ["channel_occupied"],
                            "filter": {"channel_type": "privat"}}]);
        let refused = app(
            &table,
            row(Cell::Null, Cell::Null, Cell::Json(hooks)),
            &defaults,
        );
        let refused = refused.unwrap_err();
        assert_eq!(refused.column, "webhooks");
        assert!(
            refused
                .message
                .starts_with("webhooks[0].filter.channel_type"),
            "{refused}"
        );
    }
}
