//! What a connection writes into its app's console journal: opened and closed, subscribed and
//! unsubscribed, client events and decision hook verdicts. Nothing is built while the console
//! is off.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::json;

use super::decision::{ConnectionInfo, Deferred};
use super::session::Session;
use crate::hooks::Verdict;
use crate::journal::{shown_data, shown_text, MemberDetail, NoDetail};

#[derive(Serialize)]
struct Opened<'a> {
    client: Option<Cow<'a, str>>,
    version: Option<Cow<'a, str>>,
    protocol: Option<Cow<'a, str>>,
    ip: Option<IpAddr>,
    origin: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Closed<'a> {
    code: Option<u16>,
    closed_by: &'a str,
}

#[derive(Serialize)]
struct ClientEventDetail<'a> {
    event: Cow<'a, str>,
    data: Cow<'a, str>,
}

impl Session {
    fn journal<D: Serialize>(&self, kind: &str, channel: Option<&str>, detail: impl FnOnce() -> D) {
        let journal = self.slot.metrics().journal();
        if journal.enabled() {
            let socket = self.socket_id.to_string();
            journal.record(kind, channel, Some(&socket), detail);
        }
    }

    /// The connection was accepted (before any hook's verdict). Every string came from the
    /// client: each is cut.
    pub(super) fn journal_opened(&self, info: &ConnectionInfo) {
        fn cut(value: &Option<String>) -> Option<Cow<'_, str>> {
            value.as_deref().map(shown_text)
        }
        self.journal("connection_opened", None, || Opened {
            client: cut(&info.client),
            version: cut(&info.version),
            protocol: cut(&info.protocol),
            ip: info.address,
            origin: cut(&info.origin),
            user_agent: cut(&info.user_agent),
        });
    }

    /// The connection ended, with its close code and who closed it.
    pub(super) fn journal_closed(&self, (code, by): (Option<u16>, &str)) {
        self.journal("connection_closed", None, || Closed {
            code,
            closed_by: by,
        });
    }

    /// A subscription took effect.
    pub(super) fn journal_subscribed(&self, channel: &str, user_id: Option<&str>) {
        self.journal("subscribed", Some(channel), || MemberDetail {
            user_id: user_id.map(shown_text),
        });
    }

    /// The socket left a channel.
    pub(super) fn journal_unsubscribed(&self, channel: &str) {
        self.journal("unsubscribed", Some(channel), || NoDetail {});
    }

    /// A client event went out to the channel.
    pub(super) fn journal_client_event(&self, channel: &str, event: &str, data: &str) {
        self.journal("client_event", Some(channel), || ClientEventDetail {
            event: shown_text(event),
            data: shown_data(data),
        });
    }

    /// A decision hook's verdict on what `then` is.
    pub(super) fn journal_decision(&self, verdict: &Verdict, then: &Deferred) {
        let (hook, channel, event) = match then {
            Deferred::Connection => ("connection_starting", None, None),
            Deferred::Subscribe { channel, .. } => {
                ("subscription_starting", Some(channel.as_str()), None)
            }
            Deferred::ClientEvent { channel, event, .. } => (
                "client_event_sending",
                Some(channel.as_str()),
                Some(event.as_str()),
            ),
        };
        self.journal("decision_hook", channel, || {
            let (outcome, reason) = match verdict {
                Verdict::Allowed(user) => (
                    "allowed",
                    user.as_ref()
                        .map(|u| format!("signed in as {}", shown_text(&u.id))),
                ),
                Verdict::Refused(reason) => ("refused", reason.clone()),
                Verdict::Failed(why) => ("failed", Some(why.clone())),
            };
            let reason = reason.as_deref().map(shown_text);
            let event = event.map(shown_text);
            json!({"hook": hook, "event": event, "outcome": outcome, "reason": reason})
        });
    }
}
