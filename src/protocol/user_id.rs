//! The one rule for a user id, wherever one arrives: sign-in `user_data`, presence
//! `channel_data`, a decision hook's `user`, a watchlist.

/// Pusher's documented limit on user ids.
pub const MAX_USER_ID_LENGTH: usize = 128;

/// Pusher's limit on a watchlist: past it the list is cut and the client gets 4302.
pub const MAX_WATCHLIST: usize = 100;

/// A user id in its string form: a non-empty string, or a number as written (Laravel's
/// `authenticateUser` sends the model's integer id; `1` and `"1"` are the same user).
pub fn user_id_text(value: &serde_json::Value) -> Result<String, String> {
    let id = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("must be a non-empty string or a number".into()),
    };
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_USER_ID_LENGTH {
        return Err(format!("is longer than {MAX_USER_ID_LENGTH} characters"));
    }
    // The cluster's state separates its fields with newlines; no real id holds a control
    // character.
    if id.chars().any(char::is_control) {
        return Err("must not hold control characters".into());
    }
    Ok(id)
}

/// A watchlist: its ids in their string form, first 100 kept (a repeated id once); `true` when
/// it was longer. `Err` names the first entry that is not a user id.
pub fn watchlist(value: &serde_json::Value) -> Result<(Vec<String>, bool), String> {
    let serde_json::Value::Array(entries) = value else {
        return Err("watchlist must be an array of user ids".into());
    };
    let mut ids: Vec<String> = Vec::with_capacity(entries.len().min(MAX_WATCHLIST));
    let mut cut = false;
    for (i, entry) in entries.iter().enumerate() {
        let id = user_id_text(entry).map_err(|why| format!("watchlist[{i}] {why}"))?;
        if ids.contains(&id) {
            continue;
        }
        if ids.len() == MAX_WATCHLIST {
            cut = true;
            break;
        }
        ids.push(id);
    }
    Ok((ids, cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_ids_in_their_string_form() {
        assert_eq!(user_id_text(&json!(1)).unwrap(), "1");
        assert_eq!(user_id_text(&json!("u-1")).unwrap(), "u-1");
        assert!(user_id_text(&json!("")).is_err());
        assert!(user_id_text(&json!(null)).is_err());
        assert!(user_id_text(&json!("a\nb")).is_err());
        assert!(user_id_text(&json!("x".repeat(129))).is_err());
    }

    #[test]
    fn a_watchlist_keeps_its_first_hundred_distinct_ids() {
        let (ids, cut) = watchlist(&json!([1, "1", "2"])).unwrap();
        assert_eq!((ids, cut), (vec!["1".to_owned(), "2".to_owned()], false));
        let long: Vec<u32> = (0..150).collect();
        let (ids, cut) = watchlist(&json!(long)).unwrap();
        assert_eq!((ids.len(), cut, ids[99].as_str()), (100, true, "99"));
        let (ids, cut) = watchlist(&json!((0..100).collect::<Vec<u32>>())).unwrap();
        assert_eq!((ids.len(), cut), (100, false));
        assert!(watchlist(&json!("1")).is_err());
        assert!(watchlist(&json!([1, {}]))
            .unwrap_err()
            .contains("watchlist[1]"));
    }
}
