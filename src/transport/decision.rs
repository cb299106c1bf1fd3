//! A connection's side of decision hooks: what each call carries, and what happens once the
//! app's backend has answered.
//!
//! While a call is in flight the socket's later frames queue behind it (see `connection`), so
//! a client event sent after a subscribe is judged after the subscribe.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use super::handlers::Watchlist;
use super::session::{Session, SignedInUser};
use crate::cluster::{ClientEvent, Pending};
use crate::config::HookKind;
use crate::engine::PresenceMember;
use crate::hooks::{HookCall, HookUser, Verdict};
use crate::protocol::channel::{validate_name, SERVER_TO_USER_PREFIX};
use crate::protocol::codes::{SocketError, SubscriptionError, HOOK_UNAVAILABLE};
use crate::protocol::user_id::watchlist;
use crate::protocol::{frames, ChannelType};

/// The reason a refusal carries when the hook gave none.
const REFUSED: &str = "refused by the app's decision hook";

/// What the upgrade request told about a connection, kept for its `connection_starting` call.
#[derive(Debug, Default)]
pub struct ConnectionInfo {
    /// The client's address: the peer, or behind trusted proxies the `X-Forwarded-For`
    /// entry they wrote (the upgrade works it out).
    pub address: Option<IpAddr>,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `client` query parameter (`js`, `java-client`, ...).
    pub client: Option<String>,
    /// The `version` query parameter.
    pub version: Option<String>,
    /// The `protocol` query parameter.
    pub protocol: Option<String>,
}

/// What a socket waits for before it handles its next frame.
pub(super) enum Wait {
    /// A step in its channel's line (see [`Pending`]).
    Line(Pending),
    /// The app's backend, about `then`.
    Decision(HookCall, Deferred),
}

/// What happens once the hook allows.
pub(super) enum Deferred {
    /// `pusher:connection_established` (and a sign-in the hook asked for).
    Connection,
    /// The subscription, as Herald's own checks accepted it.
    Subscribe {
        channel: String,
        kind: ChannelType,
        member: Option<PresenceMember>,
    },
    /// The client event, as Herald's own checks accepted it.
    ClientEvent {
        channel: String,
        event: String,
        data: Box<RawValue>,
    },
}

#[derive(Serialize)]
struct ConnectionStarting<'a> {
    app_id: &'a str,
    socket_id: String,
    ip: Option<String>,
    origin: Option<&'a str>,
    user_agent: Option<&'a str>,
    client: Option<&'a str>,
    version: Option<&'a str>,
    protocol: Option<&'a str>,
}

#[derive(Serialize)]
struct SubscriptionStarting<'a> {
    app_id: &'a str,
    socket_id: String,
    channel: &'a str,
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_data: Option<&'a str>,
}

#[derive(Serialize)]
struct ClientEventSending<'a> {
    app_id: &'a str,
    socket_id: String,
    channel: &'a str,
    event: &'a str,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

impl Session {
    /// The `connection_starting` call for this socket, if its app asks.
    pub(super) fn connection_call(&self, info: &ConnectionInfo) -> Option<Wait> {
        let data = ConnectionStarting {
            app_id: &self.app.id,
            socket_id: self.socket_id.to_string(),
            ip: info.address.map(|ip| ip.to_string()),
            origin: info.origin.as_deref(),
            user_agent: info.user_agent.as_deref(),
            client: info.client.as_deref(),
            version: info.version.as_deref(),
            protocol: info.protocol.as_deref(),
        };
        let call = self.ask(HookKind::ConnectionStarting, &data)?;
        Some(Wait::Decision(call, Deferred::Connection))
    }

    /// The `subscription_starting` call, if the app asks; `Err` hands the member back.
    pub(super) fn subscription_call(
        &self,
        channel: &str,
        kind: ChannelType,
        member: Option<PresenceMember>,
        channel_data: Option<&str>,
    ) -> Result<Wait, Option<PresenceMember>> {
        let user_id = member.as_ref().map(|m| &*m.user_id);
        let data = SubscriptionStarting {
            app_id: &self.app.id,
            socket_id: self.socket_id.to_string(),
            channel,
            user_id: user_id.or(self.user.as_ref().map(|u| &*u.id)),
            channel_data: channel_data.filter(|_| kind.is_presence()),
        };
        match self.ask(HookKind::SubscriptionStarting, &data) {
            Some(call) => {
                let channel = channel.to_owned();
                let then = Deferred::Subscribe {
                    channel,
                    kind,
                    member,
                };
                Ok(Wait::Decision(call, then))
            }
            None => Err(member),
        }
    }

    /// The `client_event_sending` call, if the app asks.
    pub(super) fn client_event_call(&self, event: &ClientEvent<'_>) -> Option<Wait> {
        let data = ClientEventSending {
            app_id: &self.app.id,
            socket_id: self.socket_id.to_string(),
            channel: event.channel,
            event: event.name,
            data: event.data,
            user_id: event.user_id,
        };
        let call = self.ask(HookKind::ClientEventSending, &data)?;
        let then = Deferred::ClientEvent {
            channel: event.channel.to_owned(),
            event: event.name.to_owned(),
            data: event.data.to_owned(),
        };
        Some(Wait::Decision(call, then))
    }

    fn ask(&self, kind: HookKind, data: &impl Serialize) -> Option<HookCall> {
        self.shared.hooks().ask(&self.app, kind, data, self.address)
    }

    /// Carries out (or refuses) what waited for the hook; `Err` closes the connection.
    pub(super) fn decided(
        &mut self,
        verdict: Verdict,
        then: Deferred,
    ) -> Result<Option<Wait>, SocketError> {
        self.journal_decision(&verdict, &then);
        match then {
            Deferred::Connection => self.connection_decided(verdict),
            Deferred::Subscribe {
                channel,
                kind,
                member,
            } => Ok(match verdict {
                Verdict::Allowed(_) => self.join(&channel, kind, member).map(Wait::Line),
                Verdict::Refused(reason) => {
                    let error =
                        SubscriptionError::Refused(reason.unwrap_or_else(|| REFUSED.into()));
                    self.send(frames::subscription_error(&channel, &error));
                    None
                }
                // Why it failed stays in the log and the console: it may name the backend.
                Verdict::Failed(_) => {
                    let error = SubscriptionError::Unavailable(HOOK_UNAVAILABLE.into());
                    self.send(frames::subscription_error(&channel, &error));
                    None
                }
            }),
            Deferred::ClientEvent {
                channel,
                event,
                data,
            } => Ok(match verdict {
                Verdict::Allowed(_) => self
                    .send_client_event(&channel, &event, &data)
                    .map(Wait::Line),
                Verdict::Refused(reason) => {
                    let reason = reason.unwrap_or_else(|| REFUSED.into());
                    self.send(frames::error(&SocketError::ClientEventRefused(reason)));
                    None
                }
                Verdict::Failed(_) => {
                    let why = HOOK_UNAVAILABLE.into();
                    self.send(frames::error(&SocketError::ClientEventRefused(why)));
                    None
                }
            }),
        }
    }

    fn connection_decided(&mut self, verdict: Verdict) -> Result<Option<Wait>, SocketError> {
        match verdict {
            Verdict::Allowed(user) => {
                let activity = self.shared.config().activity_timeout.as_secs();
                self.send(frames::connection_established(self.socket_id, activity));
                Ok(user
                    .and_then(|user| self.signed_in_by_hook(user))
                    .map(Wait::Line))
            }
            Verdict::Refused(reason) => Err(SocketError::RefusedByHook(
                reason.unwrap_or_else(|| REFUSED.into()),
            )),
            Verdict::Failed(_) => Err(SocketError::HookUnavailable),
        }
    }

    /// Signs the connection in as the hook's user, and subscribes it to the user's
    /// `#server-to-user-` channel itself: pusher-js takes no unsolicited `signin_success`, so
    /// server-to-user events reach its global bindings instead.
    fn signed_in_by_hook(&mut self, user: HookUser) -> Option<Pending> {
        // A watchlist the app would watch must be one, as in a `pusher:signin`.
        let watchlist = match (&user.watchlist, self.app.enable_watchlist_events) {
            (Some(list), true) => match watchlist(list) {
                Ok((ids, cut)) => Watchlist { ids, cut },
                Err(why) => {
                    let why = format!("the decision hook's user.{why}");
                    self.outbound.close(SocketError::Unauthorized(why));
                    return None;
                }
            },
            _ => Watchlist::default(),
        };
        self.sign_in(SignedInUser {
            id: user.id.clone(),
            user_info: user.user_info,
        });
        self.watch(watchlist);
        let channel = format!("{SERVER_TO_USER_PREFIX}{}", user.id);
        match validate_name(&channel, self.app.max_channel_name_length) {
            Ok(kind) => self.join(&channel, kind, None),
            Err(error) => {
                let id: Arc<str> = user.id;
                tracing::warn!(user = %id, %error, "no #server-to-user- channel for a user signed in by its hook");
                None
            }
        }
    }
}
