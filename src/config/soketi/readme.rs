//! The README's table of soketi's options is generated from the Rust table, and checked here so
//! the two cannot drift (`HERALD_WRITE_README=1 cargo test the_readme_table` rewrites it).

use super::table::{Action, Kind, ROWS};

/// The README's table of soketi's variables, generated from [`ROWS`].
fn readme_table() -> String {
    let mut table = String::from("| variable | soketi key | in Herald |\n| --- | --- | --- |\n");
    for row in ROWS {
        let var = row
            .var
            .map_or("(file only)".to_owned(), |v| format!("`{v}`"));
        let fate = match row.action {
            Action::Map(_, Kind::RedisClusterMode) => {
                "`adapter.driver` `redis-cluster` (with the redis adapter)".to_owned()
            }
            Action::Map(target, Kind::MsToSeconds) => {
                format!("`{target}` (milliseconds to seconds, rounded up)")
            }
            Action::Map(target, Kind::TlsFile) => format!("`{target}` (and `ssl.enabled`)"),
            Action::Map(target, Kind::AppDriver) => format!("`{target}` (`array` is `memory`)"),
            Action::Map(target, Kind::AdapterDriver) => {
                format!("`{target}` (`cluster` is `local`: one Herald process uses every core)")
            }
            Action::Map(target, Kind::ClusterNodes) => format!("`{target}` (as `\"host:port\"`)"),
            Action::Map(target, Kind::Apps) => {
                format!("`{target}` (each app's and webhook's keys translated)")
            }
            Action::Map(target, _) => format!("`{target}`"),
            Action::Warn(reason) => format!("warned: {reason}"),
            Action::Refuse(reason) => format!("**refused**: {reason}"),
            Action::SharedQuotas(reason) => {
                format!("warned; **refused** as `redis` without the redis adapter: {reason}")
            }
        };
        table.push_str(&format!("| {var} | `{}` | {fate} |\n", row.option));
    }
    table
}

#[test]
fn the_readme_table_is_the_rust_table() {
    let readme = include_str!("../../../README.md");
    let start = "<!-- soketi-table:start -->\n";
    let end = "<!-- soketi-table:end -->";
    let from = readme.find(start).expect("README has the soketi table") + start.len();
    let to = readme[from..].find(end).expect("the table ends") + from;
    let expected = readme_table();
    if readme[from..to] != expected {
        // `HERALD_WRITE_README=1 cargo test the_readme_table` rewrites it.
        if std::env::var_os("HERALD_WRITE_README").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
            std::fs::write(
                path,
                format!("{}{expected}{}", &readme[..from], &readme[to..]),
            )
            .unwrap();
        }
        panic!("README's soketi table differs from src/config/soketi/table.rs:\n{expected}");
    }
}
