//! Reading a hook's 2xx answer: only a JSON object with `"allow": true` allows.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::config::HookKind;
use crate::protocol::user_id::user_id_text;

/// The user a `connection_starting` answer signs the connection in as.
#[derive(Debug, Clone)]
pub struct HookUser {
    /// The user id (`#server-to-user-{id}`, terminate, presence without `channel_data`).
    pub id: Arc<str>,
    /// Its `user_info`, used as presence `user_info` when a subscription brings none.
    pub user_info: Option<Arc<RawValue>>,
    /// `user.watchlist` as the backend sent it: read by the connection, only for an app with
    /// watchlist events (others ignore it, whatever it holds).
    pub watchlist: Option<serde_json::Value>,
}

/// What a 2xx answer says.
#[derive(Debug)]
pub(super) enum Answer {
    Allow(Option<HookUser>),
    Refuse(Option<String>),
}

/// The decision in a 2xx body. Anything but an object with `"allow": true` refuses (with its
/// `reason` when it is a string); `Err` only for an allow whose `user` cannot be used, which is
/// the backend's mistake and is treated as a failed call rather than guessed at.
pub(super) fn parse(body: &[u8], kind: HookKind) -> Result<Answer, String> {
    let Ok(serde_json::Value::Object(mut answer)) = serde_json::from_slice(body) else {
        return Ok(Answer::Refuse(None));
    };
    if answer.get("allow") != Some(&serde_json::Value::Bool(true)) {
        let reason = match answer.remove("reason") {
            Some(serde_json::Value::String(reason)) if !reason.is_empty() => Some(reason),
            _ => None,
        };
        return Ok(Answer::Refuse(reason));
    }
    match (answer.remove("user"), kind) {
        (None, _) => Ok(Answer::Allow(None)),
        (Some(user), HookKind::ConnectionStarting) => user_of(user).map(|u| Answer::Allow(Some(u))),
        // Only a connection can be signed in by its hook; elsewhere `user` means nothing.
        (Some(_), _) => Ok(Answer::Allow(None)),
    }
}

fn user_of(user: serde_json::Value) -> Result<HookUser, String> {
    let serde_json::Value::Object(mut user) = user else {
        return Err("user must be an object with an id".into());
    };
    let id = user.remove("id").unwrap_or_default();
    let id = user_id_text(&id).map_err(|why| format!("user.id {why}"))?;
    let watchlist = user.remove("watchlist").filter(|list| !list.is_null());
    let user_info = match user.remove("user_info") {
        None | Some(serde_json::Value::Null) => None,
        Some(info) => {
            let raw = RawValue::from_string(info.to_string()).expect("a Value is valid JSON");
            Some(Arc::from(raw))
        }
    };
    Ok(HookUser {
        id: Arc::from(id),
        user_info,
        watchlist,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(body: &str) -> Result<Answer, String> {
        parse(body.as_bytes(), HookKind::ConnectionStarting)
    }

    fn refusal(answer: Result<Answer, String>) -> Option<Option<String>> {
        match answer {
            Ok(Answer::Refuse(reason)) => Some(reason),
            _ => None,
        }
    }

    fn user(answer: Result<Answer, String>) -> Option<Option<(String, Option<String>)>> {
        match answer {
            Ok(Answer::Allow(user)) => {
                Some(user.map(|u| (u.id.to_string(), u.user_info.map(|i| i.get().to_owned()))))
            }
            _ => None,
        }
    }

    #[test]
    fn only_an_object_with_allow_true_allows() {
        assert_eq!(user(connection(r#"{"allow":true}"#)), Some(None));
        let refusals = [
            "null",
            "{}",
            "[]",
            "[true]",
            "true",
            "not json",
            "",
            r#"{"allow":"true"}"#,
            r#"{"allow":1}"#,
        ];
        for body in refusals {
            assert_eq!(refusal(connection(body)), Some(None), "{body}");
        }
    }

    #[test]
    fn a_refusal_carries_its_string_reason() {
        let refused = connection(r#"{"allow":false,"reason":"banned"}"#);
        assert_eq!(refusal(refused), Some(Some("banned".into())));
        assert_eq!(
            refusal(connection(r#"{"allow":false,"reason":7}"#)),
            Some(None)
        );
    }

    #[test]
    fn a_connection_may_be_signed_in() {
        let allowed = connection(r#"{"allow":true,"user":{"id":"u1","user_info":{"n":1}}}"#);
        let expected = ("u1".to_owned(), Some(r#"{"n":1}"#.to_owned()));
        assert_eq!(user(allowed), Some(Some(expected)));
        assert!(connection(r#"{"allow":true,"user":{"id":""}}"#).is_err());
        let numeric = connection(r#"{"allow":true,"user":{"id":5}}"#);
        assert_eq!(user(numeric), Some(Some(("5".into(), None))));
        let Ok(Answer::Allow(Some(watching))) =
            connection(r#"{"allow":true,"user":{"id":"u","watchlist":["a",2]}}"#)
        else {
            panic!("a watchlist is part of the user");
        };
        assert_eq!(watching.watchlist, Some(serde_json::json!(["a", 2])));
        assert!(connection(r#"{"allow":true,"user":"u1"}"#).is_err());
        let other = parse(
            br#"{"allow":true,"user":{"id":"u1"}}"#,
            HookKind::SubscriptionStarting,
        );
        assert_eq!(user(other), Some(None));
    }
}
