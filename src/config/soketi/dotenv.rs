//! A `.env` file read as soketi reads it (npm's `dotenv`): `KEY=value` lines, `#` comments,
//! an optional `export`, single, double or backtick quotes (double ones expand `\n`, and any
//! quotes may span lines); the process environment wins over the file. Only `SOKETI_*` and
//! `HERALD_*` names are kept: nothing else in the file means anything to Herald.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::config::ConfigError;

/// The largest `.env` file read; a larger one stops start-up (a `.env` is a few lines).
pub const DOTENV_MAX_BYTES: u64 = 1 << 20;

/// The `SOKETI_*` and `HERALD_*` variables of a `.env` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DotEnv {
    vars: HashMap<String, String>,
}

impl DotEnv {
    /// Reads `path`; a missing file is an empty one.
    pub fn read(path: &Path) -> Result<DotEnv, ConfigError> {
        let fail = |message: String| ConfigError {
            file: Some(path.display().to_string()),
            path: "(file)".into(),
            message,
        };
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DotEnv::default()),
            Err(e) => return Err(fail(format!("cannot read: {e}"))),
        };
        let mut bytes = Vec::new();
        file.take(DOTENV_MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > DOTENV_MAX_BYTES {
            return Err(fail(format!("larger than {DOTENV_MAX_BYTES} bytes")));
        }
        let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8".into()))?;
        DotEnv::parse(&text).map_err(|mut e| {
            e.file = Some(path.display().to_string());
            e
        })
    }

    /// Parses a `.env` file's text; an error's path is `line N`.
    pub fn parse(text: &str) -> Result<DotEnv, ConfigError> {
        let mut vars = HashMap::new();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let start = i;
            let line = lines[i].trim();
            i += 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed =
                |message: &str| ConfigError::invalid(&format!("line {}", start + 1), message);
            let line = line.strip_prefix("export ").map_or(line, str::trim_start);
            let Some((key, rest)) = line.split_once('=') else {
                return Err(malformed("expected KEY=value"));
            };
            let key = key.trim();
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
            if key.is_empty() || !key.chars().all(valid) {
                return Err(malformed("a name is letters, digits, '_', '.' or '-'"));
            }
            let value = value(rest.trim_start(), &lines, &mut i).map_err(malformed)?;
            if key.starts_with("SOKETI_") || key.starts_with("HERALD_") {
                vars.insert(key.to_owned(), value);
            }
        }
        Ok(DotEnv { vars })
    }

    /// `name` from the process environment, else from the file.
    pub fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().or_else(|| self.get(name))
    }

    /// `name` from the file only.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

/// The value after `=`; a quoted one may go on over the next lines (`next` is moved past them).
fn value(rest: &str, lines: &[&str], next: &mut usize) -> Result<String, &'static str> {
    let Some(quote) = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'))
    else {
        // Unquoted: up to an inline comment (a '#' after whitespace).
        let end = rest
            .find(" #")
            .or_else(|| rest.find("\t#"))
            .unwrap_or(rest.len());
        return Ok(rest[..end].trim().to_owned());
    };
    let mut text = rest[1..].to_owned();
    loop {
        if let Some(end) = text.find(quote) {
            let after = text[end + 1..].trim();
            if !(after.is_empty() || after.starts_with('#')) {
                return Err("text after the closing quote");
            }
            text.truncate(end);
            break;
        }
        let Some(line) = lines.get(*next) else {
            return Err("a quote is not closed");
        };
        text.push('\n');
        text.push_str(line);
        *next += 1;
    }
    if quote == '"' {
        text = text.replace("\\n", "\n").replace("\\r", "\r");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_as_dotenv_does() {
        let text = "# soketi\nSOKETI_PORT=6002\nexport SOKETI_HOST = 127.0.0.1 # inline\n\
                    SOKETI_DEFAULT_APP_KEY='k#1'\nSOKETI_DEFAULT_APP_SECRET=\"a\\nb\"\n\
                    HERALD_DEBUG=`true`\nOTHER=x\n\nSOKETI_SSL_PASS=\"multi\nline\"\nSOKETI_PORT=6003";
        let env = DotEnv::parse(text).unwrap();
        assert_eq!(
            env.get("SOKETI_PORT").as_deref(),
            Some("6003"),
            "the later line wins"
        );
        assert_eq!(env.get("SOKETI_HOST").as_deref(), Some("127.0.0.1"));
        assert_eq!(env.get("SOKETI_DEFAULT_APP_KEY").as_deref(), Some("k#1"));
        assert_eq!(
            env.get("SOKETI_DEFAULT_APP_SECRET").as_deref(),
            Some("a\nb")
        );
        assert_eq!(env.get("HERALD_DEBUG").as_deref(), Some("true"));
        assert_eq!(env.get("SOKETI_SSL_PASS").as_deref(), Some("multi\nline"));
        assert_eq!(
            env.get("OTHER"),
            None,
            "only SOKETI_* and HERALD_* are kept"
        );
        assert_eq!(DotEnv::parse("A=\nB= # c").unwrap(), DotEnv::default());
    }

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        for (text, line, message) in [
            ("A=1\nnot a pair\n", "line 2", "KEY=value"),
            ("A=1\n\nB C=2", "line 3", "a name is"),
            ("A=\"open\nB=2\n", "line 1", "not closed"),
            ("A='x' y", "line 1", "after the closing quote"),
        ] {
            let error = DotEnv::parse(text).unwrap_err();
            assert_eq!(error.path, line, "{text:?}");
            assert!(error.message.contains(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_file_is_bounded_and_named_and_a_missing_one_is_empty() {
        let dir = std::env::temp_dir().join(format!("herald-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        assert_eq!(DotEnv::read(&path).unwrap(), DotEnv::default());
        std::fs::write(&path, "SOKETI_PORT=1\nbroken\n").unwrap();
        let error = DotEnv::read(&path).unwrap_err().to_string();
        assert!(error.contains(".env: line 2"), "{error}");
        std::fs::write(&path, "#".repeat(DOTENV_MAX_BYTES as usize + 1)).unwrap();
        let error = DotEnv::read(&path).unwrap_err().to_string();
        assert!(error.contains("larger than"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
