//! Origin allowlists with Sockudo's pattern rules (`allowed_origins` of an app, `cors.origin`):
//! an exact origin (`https://app.example`), `*` (or `any`) for every origin, a wildcard with
//! one `*` (`https://*.example.com`, `*.example.com` for the domain and every subdomain under
//! any scheme), and an entry without a scheme (`app.example:8080`) that matches the origin
//! without its scheme. Matching ignores case (RFC 6454).

use super::ConfigError;

/// One validated pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*` or `any`.
    Any,
    /// Scheme and host (and port) exactly.
    Exact(String),
    /// No scheme: matches the origin without its scheme.
    AnyScheme(String),
    /// `*.domain` without a scheme: the domain itself or any subdomain, any scheme.
    Subdomains(String),
    /// One `*` between a prefix and a suffix.
    Wildcard(String, String),
}

/// An allowlist of origins; empty allows every origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginAllowlist {
    patterns: Vec<Pattern>,
}

impl OriginAllowlist {
    /// Validates `patterns` (at `path`); `None` or an empty list allows every origin.
    pub(super) fn parse(path: &str, patterns: Option<&[String]>) -> Result<Self, ConfigError> {
        let patterns = patterns.unwrap_or_default();
        let patterns = patterns.iter().enumerate().map(|(i, pattern)| {
            parse_pattern(pattern).map_err(|why| {
                ConfigError::invalid(&format!("{path}[{i}]"), format!("{pattern:?}: {why}"))
            })
        });
        Ok(OriginAllowlist {
            patterns: patterns.collect::<Result<_, _>>()?,
        })
    }

    /// Whether the list has no entry at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the list restricts anything (it is not empty and has no `*`).
    pub fn restricts(&self) -> bool {
        !self.patterns.is_empty() && !self.patterns.contains(&Pattern::Any)
    }

    /// Whether a request with this `Origin` (none: no header) may go on. A restricting list
    /// refuses a request without an `Origin`, as Sockudo does.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        if !self.restricts() {
            return true;
        }
        let Some(origin) = origin else {
            return false;
        };
        let origin = origin.trim().to_ascii_lowercase();
        let bare = origin.split_once("://").map(|(_, rest)| rest);
        self.patterns.iter().any(|pattern| match pattern {
            Pattern::Any => true,
            Pattern::Exact(exact) => *exact == origin,
            Pattern::AnyScheme(host) => bare == Some(host.as_str()) || *host == origin,
            Pattern::Subdomains(domain) => {
                let host = bare.unwrap_or(&origin);
                host == domain
                    || host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|sub| sub.ends_with('.'))
            }
            Pattern::Wildcard(prefix, suffix) => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
            }
        })
    }
}

fn parse_pattern(pattern: &str) -> Result<Pattern, &'static str> {
    let lower = pattern.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return Err("an origin pattern must not be empty");
    }
    if lower == "*" || lower == "any" {
        return Ok(Pattern::Any);
    }
    if let Some((scheme, host)) = lower.split_once("://") {
        if scheme.is_empty() || host.is_empty() {
            return Err("a scheme and a host are both needed");
        }
    }
    match lower.matches('*').count() {
        0 if lower.contains("://") => Ok(Pattern::Exact(lower)),
        0 => Ok(Pattern::AnyScheme(lower)),
        1 => {
            let (prefix, suffix) = lower.split_once('*').expect("one '*'");
            // As Sockudo: `*.domain` is the domain and its subdomains; any other wildcard is a
            // prefix and a suffix of the whole origin.
            if let Some(domain) = suffix
                .strip_prefix('.')
                .filter(|_| prefix.is_empty() && !lower.contains("://"))
            {
                if domain.is_empty()
                    || domain.starts_with('.')
                    || domain.ends_with('.')
                    || domain.contains("..")
                {
                    return Err("not a valid domain after '*.'");
                }
                return Ok(Pattern::Subdomains(domain.to_owned()));
            }
            Ok(Pattern::Wildcard(prefix.to_owned(), suffix.to_owned()))
        }
        _ => Err("only one '*' is supported"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> OriginAllowlist {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        OriginAllowlist::parse("allowed_origins", Some(&patterns)).unwrap()
    }

    #[test]
    fn sockudos_pattern_rules() {
        let exact = list(&["https://App.example"]);
        assert!(exact.allows(Some("https://app.example")));
        assert!(!exact.allows(Some("http://app.example")));
        assert!(!exact.allows(Some("https://app.example.evil")));
        assert!(
            !exact.allows(None),
            "no Origin is refused by a restricting list"
        );

        let subdomains = list(&["*.example.com"]);
        for origin in [
            "https://example.com",
            "http://a.example.com",
            "https://a.b.example.com",
        ] {
            assert!(subdomains.allows(Some(origin)), "{origin}");
        }
        assert!(!subdomains.allows(Some("https://badexample.com")));

        let scheme_wildcard = list(&["https://*.example.com"]);
        assert!(scheme_wildcard.allows(Some("https://a.example.com")));
        assert!(!scheme_wildcard.allows(Some("http://a.example.com")));

        let bare = list(&["app.example:8080"]);
        assert!(bare.allows(Some("http://app.example:8080")));
        assert!(bare.allows(Some("https://app.example:8080")));
        assert!(!bare.allows(Some("https://app.example")));

        for open in [list(&[]), list(&["*"]), list(&["https://a.example", "any"])] {
            assert!(open.allows(Some("https://anything.example")) && open.allows(None));
        }
    }

    #[test]
    fn bad_patterns_name_their_index() {
        for bad in ["", "*.*.example.com", "https://", "*.", "*..example.com"] {
            let patterns = vec!["https://ok.example".to_owned(), bad.to_owned()];
            let error =
                OriginAllowlist::parse("apps[0].allowed_origins", Some(&patterns)).unwrap_err();
            assert_eq!(error.path, "apps[0].allowed_origins[1]", "{bad}");
        }
    }
}
