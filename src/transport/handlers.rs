//! One handler per client event, dispatched from the parsed [`ClientMessage`].

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::decision::Wait;
use super::session::{Session, SignedInUser};
use crate::apps::App;
use crate::cluster::{ClientEvent, Pending, Subscription};
use crate::engine::PresenceMember;
use crate::protocol::channel::{server_to_user_id, validate_name};
use crate::protocol::codes::{SocketError, SubscriptionError};
use crate::protocol::incoming::{ClientMessage, SigninRequest, SubscribeRequest};
use crate::protocol::signing::{verify_channel_auth, verify_user_auth};
use crate::protocol::user_id::{user_id_text, watchlist};
use crate::protocol::{frames, ChannelKind, ChannelType};

#[derive(Deserialize)]
struct ChannelData {
    user_id: serde_json::Value,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct UserData {
    id: serde_json::Value,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
    #[serde(default)]
    watchlist: Option<serde_json::Value>,
}

/// A verified sign-in: the user, the `user_data` to echo, and the users it watches.
struct Signin {
    user: SignedInUser,
    echo: String,
    watchlist: Watchlist,
}

/// The users a sign-in watches (empty when the app has no watchlist events).
#[derive(Default)]
pub(super) struct Watchlist {
    pub ids: Vec<String>,
    /// The list was longer than 100: the client gets 4302.
    pub cut: bool,
}

impl Session {
    /// Handles one parsed client frame; returns what to wait for before the next frame is
    /// handled (a step in its channel's line, or the app's decision hook).
    pub fn handle(&mut self, message: ClientMessage) -> Option<Wait> {
        match message {
            ClientMessage::Ping => self.send(frames::pong()),
            ClientMessage::Pong => {}
            ClientMessage::Subscribe(request) => return self.subscribe(request),
            ClientMessage::Unsubscribe { channel } => self.leave(&channel),
            ClientMessage::Signin(request) => self.signin(request),
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => match self.client_event(&event, &channel, data) {
                Ok(wait) => return wait,
                Err(error) if error.close_code().is_some() => self.outbound.close(error),
                Err(error) => self.send(frames::error(&error)),
            },
        }
        None
    }

    fn subscribe(&mut self, request: SubscribeRequest) -> Option<Wait> {
        let channel = request.channel.as_str();
        let max_channels = self.shared.config().max_channels_per_connection;
        if self.channels.len() >= max_channels && !self.channels.contains_key(channel) {
            let error = SubscriptionError::TooManyChannels(max_channels);
            self.send(frames::subscription_error(channel, &error));
            return None;
        }
        let (kind, member) = match self.authorize(&request) {
            Ok(authorized) => authorized,
            Err(error) => {
                self.send(frames::subscription_error(channel, &error));
                return None;
            }
        };
        // `#server-to-user-` is guarded by sign-in already.
        if kind.kind == ChannelKind::ServerToUser {
            return self.join(channel, kind, member).map(Wait::Line);
        }
        let channel_data = request.channel_data.as_deref();
        match self.subscription_call(channel, kind, member, channel_data) {
            Ok(wait) => Some(wait),
            Err(member) => self.join(channel, kind, member).map(Wait::Line),
        }
    }

    /// Subscribes, once every check (and the hook) has let the subscription through.
    pub(super) fn join(
        &mut self,
        channel: &str,
        kind: ChannelType,
        member: Option<PresenceMember>,
    ) -> Option<Pending> {
        let request = Subscription {
            channel,
            socket: self.socket_id,
            outbound: &self.outbound,
            member: member.as_ref(),
            cached: kind.cached,
        };
        match self.shared.cluster().subscribe(&self.app, request) {
            Ok(subscribed) => {
                if subscribed.newly {
                    let user_id = member.as_ref().map(|m| &*m.user_id);
                    self.journal_subscribed(channel, user_id);
                    self.channels
                        .insert(Arc::from(channel), member.map(|m| m.user_id));
                }
                if kind.needs_auth() {
                    self.liveness.authorized();
                }
                subscribed.pending
            }
            Err(_full) => {
                let max = self.app.max_presence_members_per_channel;
                let error = SubscriptionError::MembersLimit(max);
                self.send(frames::subscription_error(channel, &error));
                None
            }
        }
    }

    /// Checks name, signature and presence data; returns the channel type and presence member.
    fn authorize(
        &self,
        request: &SubscribeRequest,
    ) -> Result<(ChannelType, Option<PresenceMember>), SubscriptionError> {
        let channel = request.channel.as_str();
        let kind = validate_name(channel, self.app.max_channel_name_length)
            .map_err(|e| SubscriptionError::InvalidChannel(e.to_string()))?;
        let namespaces = &self.app.channel_namespaces;
        if let Some(why) = namespaces.refuse_subscription(channel, kind.is_presence()) {
            return Err(SubscriptionError::InvalidChannel(why));
        }
        if kind.kind == ChannelKind::ServerToUser {
            let signed_in = self.user.as_ref().map(|u| &*u.id);
            if signed_in != server_to_user_id(channel) {
                return Err(SubscriptionError::Auth(
                    "only the user signed in as this id may subscribe".into(),
                ));
            }
            return Ok((kind, None));
        }
        if !kind.needs_auth() {
            return Ok((kind, None));
        }
        let app = &self.app;
        let channel_data = request.channel_data.as_deref();
        verify_channel_auth(
            &app.key,
            &app.signer,
            self.socket_id,
            channel,
            channel_data,
            request.auth.as_deref(),
        )
        .map_err(|e| SubscriptionError::Auth(e.to_string()))?;
        if !kind.is_presence() {
            return Ok((kind, None));
        }
        let member = match (channel_data, &self.user) {
            (Some(data), _) => self.presence_member(data)?,
            (None, Some(user)) => PresenceMember {
                user_id: user.id.clone(),
                user_info: user.user_info.clone(),
            },
            (None, None) => {
                return Err(SubscriptionError::InvalidChannelData(
                    "presence channels need channel_data".into(),
                ))
            }
        };
        Ok((kind, Some(member)))
    }

    fn presence_member(&self, channel_data: &str) -> Result<PresenceMember, SubscriptionError> {
        let data: ChannelData = serde_json::from_str(channel_data).map_err(|e| {
            SubscriptionError::InvalidChannelData(format!(
                "expected {{\"user_id\":..,\"user_info\":..}}: {e}"
            ))
        })?;
        let user_id = user_id_text(&data.user_id)
            .map_err(|why| SubscriptionError::InvalidChannelData(format!("user_id {why}")))?;
        let size = data.user_info.as_ref().map_or(0, |info| info.get().len());
        let max = self.app.max_presence_member_size;
        if size > max {
            return Err(SubscriptionError::MemberTooLarge { size, max });
        }
        Ok(PresenceMember {
            user_id: Arc::from(user_id),
            user_info: data.user_info.map(Arc::from),
        })
    }

    fn signin(&mut self, request: SigninRequest) {
        match self.verify_signin(&request) {
            Ok(signin) => {
                self.sign_in(signin.user);
                self.send(frames::signin_success(&signin.echo));
                self.watch(signin.watchlist);
            }
            Err(why) => self.outbound.close(SocketError::Unauthorized(why)),
        }
    }

    /// Watches the sign-in's users (once per connection): the initial status and every change
    /// follow as `pusher_internal:watchlist_events`.
    pub(super) fn watch(&mut self, watchlist: Watchlist) {
        if watchlist.cut {
            self.send(frames::error(&SocketError::WatchlistLimit));
        }
        if watchlist.ids.is_empty() || self.watching.is_some() {
            return;
        }
        let cluster = self.shared.cluster();
        let outbound = self.outbound.clone();
        let watching = cluster.watch(&self.app, self.socket_id, outbound, &watchlist.ids);
        self.watching = Some(watching);
    }

    /// Signs the connection in as `user` (a second sign-in as the same id changes nothing).
    pub(super) fn sign_in(&mut self, user: SignedInUser) {
        if self.user.is_none() {
            let outbound = self.outbound.clone();
            self.shared
                .cluster()
                .sign_in(&self.app, &user.id, self.socket_id, outbound);
            self.user = Some(user);
        }
        self.liveness.authorized();
    }

    /// The signed-in user, the `user_data` to echo in `pusher:signin_success`, and its
    /// watchlist.
    fn verify_signin(&self, request: &SigninRequest) -> Result<Signin, String> {
        let app = &self.app;
        verify_user_auth(
            &app.key,
            &app.signer,
            self.socket_id,
            &request.user_data,
            &request.auth,
        )
        .map_err(|e| format!("sign-in refused: {e}"))?;
        let data: UserData = serde_json::from_str(&request.user_data)
            .map_err(|e| format!("user_data must be a JSON object with an id: {e}"))?;
        // A number (Laravel's `authenticateUser` sends the model's integer id) is the id in
        // its string form, as a presence `user_id` is.
        let id = user_id_text(&data.id).map_err(|why| format!("user_data.id {why}"))?;
        if let Some(current) = &self.user {
            if *current.id != *id {
                return Err(format!("already signed in as {:?}", current.id));
            }
        }
        let echo = match data.id {
            serde_json::Value::String(_) => request.user_data.clone(),
            _ => with_string_id(&request.user_data, &id)?,
        };
        // An app without watchlist events ignores a watchlist, whatever it holds.
        let watchlist = match &data.watchlist {
            Some(list) if app.enable_watchlist_events => {
                let (ids, cut) = watchlist(list).map_err(|why| format!("user_data.{why}"))?;
                Watchlist { ids, cut }
            }
            _ => Watchlist::default(),
        };
        let user = SignedInUser {
            id: Arc::from(id),
            user_info: data.user_info.map(Arc::from),
        };
        Ok(Signin {
            user,
            echo,
            watchlist,
        })
    }

    fn client_event(
        &mut self,
        event: &str,
        channel: &str,
        data: Box<RawValue>,
    ) -> Result<Option<Wait>, SocketError> {
        let app = self.app.clone();
        let presence_user = self.check_client_event(&app, event, channel, &data)?;
        let event = ClientEvent {
            channel,
            name: event,
            data: &data,
            socket: self.socket_id,
            user_id: presence_user.as_deref(),
        };
        if let Some(wait) = self.client_event_call(&event) {
            return Ok(Some(wait));
        }
        self.journal_client_event(channel, event.name, event.data.get());
        Ok(self
            .shared
            .cluster()
            .client_event(&app, event)
            .map(Wait::Line))
    }

    /// Herald's own checks of a client event (enabled, channel, namespace, size, rate); the
    /// presence user it goes out as.
    fn check_client_event(
        &mut self,
        app: &App,
        event: &str,
        channel: &str,
        data: &RawValue,
    ) -> Result<Option<Arc<str>>, SocketError> {
        let reject = |why: String| Err(SocketError::ClientEventRejected(why));
        if !app.enable_client_messages {
            return reject("client events are not enabled for this app".into());
        }
        if !ChannelType::of(channel).allows_client_events() {
            return reject(format!(
                "client events are only allowed on private and presence channels, not {channel}"
            ));
        }
        let Some(presence_user) = self.channels.get(channel).cloned() else {
            return reject(format!("not subscribed to {channel}"));
        };
        if let Some(why) = app.channel_namespaces.refuse_client_event(channel) {
            return reject(why);
        }
        if event.len() > app.max_event_name_length {
            return reject(format!(
                "event name is longer than {} characters",
                app.max_event_name_length
            ));
        }
        if data.get().len() > app.max_event_payload {
            return reject(format!(
                "data is over the limit of {} bytes",
                app.max_event_payload
            ));
        }
        if let Some(max) = app.max_client_events_per_second {
            if !self
                .client_events
                .allow(Instant::now(), max, app.client_event_window)
            {
                return Err(if app.terminate_on_limit {
                    SocketError::RateLimitClosed
                } else {
                    SocketError::ClientEventRateLimited
                });
            }
        }
        Ok(presence_user)
    }

    /// Sends a client event the hook allowed; nothing when the socket left the channel since.
    pub(super) fn send_client_event(
        &mut self,
        channel: &str,
        event: &str,
        data: &RawValue,
    ) -> Option<Pending> {
        let presence_user = self.channels.get(channel)?.clone();
        let event = ClientEvent {
            channel,
            name: event,
            data,
            socket: self.socket_id,
            user_id: presence_user.as_deref(),
        };
        self.journal_client_event(channel, event.name, event.data.get());
        self.shared.cluster().client_event(&self.app, event)
    }
}

/// `user_data` with its `id` as the string `id`, every other field as sent: pusher-js drops a
/// `pusher:signin_success` whose echoed id is not a non-empty string, and then never subscribes
/// to its `#server-to-user-` channel.
fn with_string_id(user_data: &str, id: &str) -> Result<String, String> {
    let mut fields: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(user_data).map_err(|e| format!("user_data: {e}"))?;
    let id = serde_json::value::to_raw_value(id).map_err(|e| e.to_string())?;
    fields.insert("id".into(), id);
    serde_json::to_string(&fields).map_err(|e| e.to_string())
}
