//! URLs as logs, the console and errors show them: the password, a bare user (often a token)
//! and the query and fragment (where people put tokens) replaced by `***`.

/// `url` without its secrets: `https://user:***@host/path?***`. Works with a scheme or
/// without, and with an `@` inside the password.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, after) = tail.split_at(path_end);
    let after = match after.chars().next() {
        Some(mark) => format!("{mark}***"),
        None => String::new(),
    };
    format!("{scheme}{authority}{path}{after}")
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn credentials_and_queries_never_show() {
        let cases = [
            (
                "https://hooks.example/pusher",
                "https://hooks.example/pusher",
            ),
            (
                "https://bob:s3cret@hooks.example:8443/in?token=abc&x=1",
                "https://bob:***@hooks.example:8443/in?***",
            ),
            ("https://tok3n@hooks.example/", "https://***@hooks.example/"),
            ("http://h.example/p#frag", "http://h.example/p#***"),
            (
                "rediss://u:p@ss@r.example:6390/1",
                "rediss://u:***@r.example:6390/1",
            ),
            ("u:secret@host", "u:***@host"),
            ("http://h.example/a?next=x@y", "http://h.example/a?***"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }
}
