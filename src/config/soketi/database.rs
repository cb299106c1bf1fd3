//! soketi's own defaults for its app database, applied when soketi's configuration chose a
//! MySQL or PostgreSQL app manager: a soketi user who relied on them (table `apps`, database
//! `main`, ...) moves in without writing them down. Sockudo's defaults differ.

use serde_json::Value;

use super::{set_path, Overlay};

/// soketi's defaults (`src/server.ts` at its last commit) for the keys left unset, by driver.
const MYSQL: [(&str, &str); 6] = [
    ("database.mysql.host", "127.0.0.1"),
    ("database.mysql.port", "3306"),
    ("database.mysql.username", "root"),
    ("database.mysql.password", "password"),
    ("database.mysql.database", "main"),
    ("database.mysql.table_name", "apps"),
];

const POSTGRES: [(&str, &str); 6] = [
    ("database.postgres.host", "127.0.0.1"),
    ("database.postgres.port", "5432"),
    ("database.postgres.username", "postgres"),
    ("database.postgres.password", "password"),
    ("database.postgres.database", "main"),
    ("database.postgres.table_name", "apps"),
];

impl Overlay {
    /// When soketi's options set the app manager's driver to `mysql` or `postgres`, fills in
    /// soketi's defaults for the database keys nobody set, and soketi's uncached lookups
    /// (`appManager.cache.enabled` defaults to false there).
    pub(super) fn soketi_database_defaults(&mut self, document: &mut Value) {
        let chosen_by_soketi = self.translated.iter().any(|k| k.to == "app_manager.driver");
        if !chosen_by_soketi {
            return;
        }
        let defaults: &[(&str, &str)] = match document.pointer("/app_manager/driver") {
            Some(Value::String(driver)) if driver == "mysql" => &MYSQL,
            Some(Value::String(driver)) if driver == "postgres" => &POSTGRES,
            _ => return,
        };
        let cache = [("app_manager.cache.enabled", "false")];
        for (path, value) in defaults.iter().chain(cache.iter()) {
            let pointer = format!("/{}", path.replace('.', "/"));
            if document.pointer(&pointer).is_none() {
                let value = serde_json::from_str(value).unwrap_or(Value::from(*value));
                set_path(document, path, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::prepare;
    use crate::config::ConfigFormat;

    #[test]
    fn a_soketi_mysql_app_manager_gets_soketis_database_defaults_unless_set() {
        let vars = |name: &str| match name {
            "SOKETI_APP_MANAGER_DRIVER" => Some("mysql".to_owned()),
            "SOKETI_DB_MYSQL_HOST" => Some("db.internal".to_owned()),
            _ => None,
        };
        let (document, _) = prepare(None, ConfigFormat::Auto, &vars).unwrap();
        let mysql = &document["database"]["mysql"];
        assert_eq!(mysql["host"], "db.internal");
        assert_eq!(mysql["table_name"], "apps");
        assert_eq!(mysql["database"], "main");
        assert_eq!(mysql["port"], 3306);
        assert_eq!(document["app_manager"]["cache"]["enabled"], false);
        let sockudo = |_: &str| None;
        let text = r#"{"app_manager": {"driver": "mysql"}}"#;
        let (document, _) = prepare(Some(text), ConfigFormat::Sockudo, &sockudo).unwrap();
        assert!(document.pointer("/database/mysql/table_name").is_none());
    }
}
