//! The columns of an app table Herald reads: Sockudo's (`applications`) and soketi's (`apps`)
//! names, the app key each one fills and how its value is decoded; and the table as found.

use super::StoreError;

/// How a column's value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A string (an integer is written as one).
    Text,
    /// A boolean: `bool`, or any integer (0 is false), or `"true"`/`"false"`.
    Flag,
    /// A rate or quota: zero or negative is unlimited (soketi writes -1, Sockudo 0).
    Limit,
    /// A size limit: zero or negative is "not set", so the global default applies.
    Size,
    /// JSON, from a `json`/`jsonb` column or text holding JSON.
    Json,
}

/// A column Herald knows: its name, the key of `config.json`'s app shape it fills, its kind.
struct Known(&'static str, &'static str, Kind);

/// Sockudo 5.2's columns, soketi's names for the same keys, and Herald's `decision_hooks`.
/// Any other column (`created_at`, `channel_delta_compression`, ...) is not read.
const KNOWN: &[Known] = &[
    Known("id", "id", Kind::Text),
    Known("key", "key", Kind::Text),
    Known("secret", "secret", Kind::Text),
    Known("enabled", "enabled", Kind::Flag),
    Known("max_connections", "max_connections", Kind::Limit),
    Known(
        "enable_client_messages",
        "enable_client_messages",
        Kind::Flag,
    ),
    Known(
        "max_backend_events_per_second",
        "max_backend_events_per_second",
        Kind::Limit,
    ),
    Known(
        "max_backend_events_per_sec",
        "max_backend_events_per_second",
        Kind::Limit,
    ),
    Known(
        "max_client_events_per_second",
        "max_client_events_per_second",
        Kind::Limit,
    ),
    Known(
        "max_client_events_per_sec",
        "max_client_events_per_second",
        Kind::Limit,
    ),
    Known(
        "max_read_requests_per_second",
        "max_read_requests_per_second",
        Kind::Limit,
    ),
    Known(
        "max_read_req_per_sec",
        "max_read_requests_per_second",
        Kind::Limit,
    ),
    Known(
        "max_presence_members_per_channel",
        "max_presence_members_per_channel",
        Kind::Size,
    ),
    Known(
        "max_presence_member_size_in_kb",
        "max_presence_member_size_in_kb",
        Kind::Size,
    ),
    Known(
        "max_channel_name_length",
        "max_channel_name_length",
        Kind::Size,
    ),
    Known(
        "max_event_channels_at_once",
        "max_event_channels_at_once",
        Kind::Size,
    ),
    Known("max_event_name_length", "max_event_name_length", Kind::Size),
    Known(
        "max_event_payload_in_kb",
        "max_event_payload_in_kb",
        Kind::Size,
    ),
    Known("max_event_batch_size", "max_event_batch_size", Kind::Size),
    Known(
        "enable_user_authentication",
        "enable_user_authentication",
        Kind::Flag,
    ),
    Known(
        "enable_watchlist_events",
        "enable_watchlist_events",
        Kind::Flag,
    ),
    Known("webhooks", "webhooks", Kind::Json),
    Known("allowed_origins", "allowed_origins", Kind::Json),
    Known("policy", "policy", Kind::Json),
    Known("decision_hooks", "decision_hooks", Kind::Json),
];

/// Whose schema the table follows, told from its column names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Sockudo's `applications` (with or without `policy`).
    Sockudo,
    /// soketi's `apps` (`max_backend_events_per_sec`, `max_read_req_per_sec`, ...).
    Soketi,
}

/// A column as the database describes it (`information_schema.columns`).
pub(super) struct ColumnInfo {
    pub name: String,
    /// The type, as the database names it (`jsonb`, `int4`, `tinyint`, ...).
    pub data_type: String,
    /// NOT NULL without a default: an insert must give it a value.
    pub required: bool,
}

/// A column of the table that Herald reads.
#[derive(Debug)]
pub(super) struct Column {
    /// The name as in the table.
    pub name: String,
    /// The app key it fills.
    pub key: &'static str,
    pub kind: Kind,
    /// The type, as the database names it.
    pub data_type: String,
    /// NOT NULL without a default.
    pub required: bool,
}

/// The app table as found at connect: the known columns it has, in select order.
#[derive(Debug)]
pub(super) struct Table {
    pub name: String,
    pub layout: Layout,
    pub columns: Vec<Column>,
}

impl Table {
    /// The table from its columns; refused without `id`, `key` and `secret`.
    pub fn new(name: &str, found: Vec<ColumnInfo>) -> Result<Table, StoreError> {
        let columns: Vec<Column> = found
            .into_iter()
            .filter_map(|info| {
                let known = KNOWN
                    .iter()
                    .find(|k| k.0.eq_ignore_ascii_case(&info.name))?;
                Some(Column {
                    name: info.name,
                    key: known.1,
                    kind: known.2,
                    data_type: info.data_type.to_ascii_lowercase(),
                    required: info.required,
                })
            })
            .collect();
        for key in ["id", "key", "secret"] {
            if !columns.iter().any(|c| c.key == key) {
                return Err(StoreError::NotAnAppTable {
                    table: name.to_owned(),
                    message: format!("it has no {key:?} column"),
                });
            }
        }
        let soketi = ["max_backend_events_per_sec", "max_read_req_per_sec"];
        let layout = match columns.iter().any(|c| soketi.contains(&c.name.as_str())) {
            true => Layout::Soketi,
            false => Layout::Sockudo,
        };
        Ok(Table {
            name: name.to_owned(),
            layout,
            columns,
        })
    }

    /// The column that fills `key`.
    pub fn column(&self, key: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.key == key)
    }

    /// The position of the column that fills `key` in a selected row.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.key == key)
    }
}
