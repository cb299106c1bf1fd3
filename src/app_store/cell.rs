//! One value of a row, decoded leniently whatever the column's type: booleans, integers of any
//! width and sign, floats, text and JSON (`json`, `jsonb`, or text holding JSON).

use serde_json::Value;
use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Row, TypeInfo, ValueRef};

/// A decoded value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Json(Value),
    /// A type Herald cannot read (its name).
    Unreadable(String),
}

/// Tries each Rust type in turn; the first whose decoder accepts the column's type wins.
macro_rules! first_of {
    ($row:expr, $i:expr, $($ty:ty => $make:expr),+ $(,)?) => {{
        $(
            if let Ok(value) = $row.try_get::<$ty, _>($i) {
                #[allow(clippy::redundant_closure_call)]
                return ($make)(value);
            }
        )+
    }};
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Column `i` of a PostgreSQL row.
pub(super) fn postgres(row: &PgRow, i: usize) -> Cell {
    match row.try_get_raw(i) {
        Ok(raw) if raw.is_null() => return Cell::Null,
        Ok(_) => {}
        Err(e) => return Cell::Unreadable(e.to_string()),
    }
    first_of!(row, i,
        bool => Cell::Bool,
        i16 => |v: i16| Cell::Int(v.into()),
        i32 => |v: i32| Cell::Int(v.into()),
        i64 => Cell::Int,
        f32 => |v: f32| Cell::Float(v.into()),
        f64 => Cell::Float,
        String => Cell::Text,
        Json<Value> => |v: Json<Value>| Cell::Json(v.0),
    );
    Cell::Unreadable(type_name(row, i))
}

/// Column `i` of a MySQL/MariaDB row (`tinyint(1)` reads as an integer; its kind decides).
pub(super) fn mysql(row: &MySqlRow, i: usize) -> Cell {
    match row.try_get_raw(i) {
        Ok(raw) if raw.is_null() => return Cell::Null,
        Ok(_) => {}
        Err(e) => return Cell::Unreadable(e.to_string()),
    }
    first_of!(row, i,
        i64 => Cell::Int,
        u64 => |v: u64| Cell::Int(clamp(v)),
        bool => Cell::Bool,
        f64 => Cell::Float,
        f32 => |v: f32| Cell::Float(v.into()),
        String => Cell::Text,
        Json<Value> => |v: Json<Value>| Cell::Json(v.0),
        Vec<u8> => |v: Vec<u8>| match String::from_utf8(v) {
            Ok(text) => Cell::Text(text),
            Err(_) => Cell::Unreadable("binary that is not UTF-8".into()),
        },
    );
    Cell::Unreadable(type_name(row, i))
}

fn type_name<R: Row>(row: &R, i: usize) -> String {
    use sqlx::Column;
    let name = row
        .columns()
        .get(i)
        .map(|c| c.type_info().name().to_owned());
    format!("unsupported type {}", name.unwrap_or_default())
}
