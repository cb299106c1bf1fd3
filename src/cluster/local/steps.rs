//! Carrying out a channel's steps, in line order and with no lock held: the joiner's
//! `subscription_succeeded` and cache replay, member notices to the others, subscription
//! counts, broadcasts, and the webhook events of every transition.

use std::sync::Arc;

use super::app::AppChannels;
use super::counts::Announce;
use crate::cluster::delivery;
use crate::cluster::recipient::Recipient;
use crate::engine::{Subscribers, Transition};
use crate::journal::{shown_text, MemberDetail, NoDetail};
use crate::outbound::WireFrame;
use crate::protocol::channel::user_of_channel;
use crate::protocol::{frames, ChannelType, SocketId};
use crate::webhooks::WebhookEvent;

/// One thing that happened on a channel, in the order the channel's lock gave it.
pub enum Step<R: Recipient> {
    /// A socket subscribed (boxed: the largest step by far).
    Joined(Box<Join<R>>),
    /// A socket left.
    Left {
        channel: Arc<str>,
        change: Change<R>,
    },
    /// A server event; `cache` is `(channel, frame)` to keep as the channel's last event.
    Published {
        frame: WireFrame,
        except: Option<SocketId>,
        cache: Option<(Arc<str>, Arc<str>)>,
        recipients: Option<Subscribers<R>>,
    },
    /// A client event, never echoed to its sender.
    ClientEvent {
        frame: WireFrame,
        except: SocketId,
        webhook: Option<WebhookEvent>,
        recipients: Subscribers<R>,
    },
    /// A throttled subscription count fell due; `count` was read in line.
    CountDue {
        channel: Arc<str>,
        count: usize,
        recipients: Option<Subscribers<R>>,
    },
}

/// A subscription, as its joiner and the others are to hear of it.
pub struct Join<R: Recipient> {
    pub channel: Arc<str>,
    pub joiner: R,
    /// The presence member list for `subscription_succeeded`, as of the join.
    pub snapshot: Option<String>,
    /// A cache channel: replay its last event (or `pusher:cache_miss`).
    pub cached: bool,
    /// `None` when the socket was subscribed already: it only hears `subscription_succeeded`.
    pub change: Option<Change<R>>,
}

/// What a subscription change means for the channel's other sockets and for webhooks.
pub struct Change<R: Recipient> {
    transitions: Vec<Transition>,
    count: usize,
    /// The socket the change is about, which gets no notice of it.
    except: Option<SocketId>,
    /// When the new subscription count goes out, on channels that announce counts; decided
    /// under the lock, so the recipient list is only taken when it goes out now.
    announce: Option<Announce>,
    /// Everyone subscribed once the change was made; only taken when someone must hear of it.
    recipients: Option<Subscribers<R>>,
}

impl<R: Recipient> Change<R> {
    /// Fixes what a change means while the channel is locked (`view` shows it after the change).
    pub fn new(
        transitions: Vec<Transition>,
        count: usize,
        except: Option<SocketId>,
        announce: Option<Announce>,
        view: &crate::engine::ChannelView<'_, R>,
    ) -> Change<R> {
        let notices = transitions.iter().any(|t| match t {
            Transition::MemberAdded { .. } | Transition::MemberRemoved { .. } => true,
            Transition::Occupied { .. } | Transition::Vacated { .. } => false,
        });
        Change {
            recipients: (notices || announce == Some(Announce::Now)).then(|| view.recipients()),
            transitions,
            count,
            except,
            announce,
        }
    }
}

/// The webhook event of a transition.
fn webhook_event(transition: &Transition) -> WebhookEvent {
    match transition {
        Transition::Occupied { channel } => WebhookEvent::occupied(channel.clone()),
        Transition::Vacated { channel } => WebhookEvent::vacated(channel.clone()),
        Transition::MemberAdded {
            channel, user_id, ..
        } => WebhookEvent::MemberAdded {
            channel: channel.clone(),
            user_id: user_id.clone(),
        },
        Transition::MemberRemoved { channel, user_id } => WebhookEvent::MemberRemoved {
            channel: channel.clone(),
            user_id: user_id.clone(),
        },
    }
}

/// The `pusher_internal:` notice other members get of a transition, if any.
fn member_notice(transition: &Transition) -> Option<String> {
    match transition {
        Transition::MemberAdded {
            channel,
            user_id,
            user_info,
        } => Some(frames::member_added(channel, user_id, user_info.as_deref())),
        Transition::MemberRemoved { channel, user_id } => {
            Some(frames::member_removed(channel, user_id))
        }
        Transition::Occupied { .. } | Transition::Vacated { .. } => None,
    }
}

impl<R: Recipient> AppChannels<R> {
    /// Carries out one step.
    pub(super) fn carry_out(self: &Arc<Self>, step: Step<R>) {
        match step {
            Step::Joined(join) => self.joined(*join),
            Step::Left { channel, change } => self.changed(&channel, change),
            Step::Published {
                frame,
                except,
                cache,
                recipients,
            } => {
                if let Some((channel, text)) = cache {
                    self.cache.store(channel, text);
                }
                if let Some(recipients) = recipients {
                    self.deliver(&recipients, &frame, except);
                }
            }
            Step::ClientEvent {
                frame,
                except,
                webhook,
                recipients,
            } => {
                self.deliver(&recipients, &frame, Some(except));
                if let Some(webhook) = webhook {
                    self.submit(webhook);
                }
            }
            Step::CountDue {
                channel,
                count,
                recipients,
            } => self.count_due(channel, count, recipients),
        }
    }

    fn joined(self: &Arc<Self>, join: Join<R>) {
        let Join {
            channel,
            joiner,
            snapshot,
            cached,
            change,
        } = join;
        // A user's own channel is the server's: its client hears nothing of it.
        if !ChannelType::of(&channel).is_user() {
            let data = snapshot.as_deref().unwrap_or("{}");
            joiner.push(&WireFrame::text(&frames::subscription_succeeded(
                &channel, data,
            )));
        }
        if cached {
            joiner.push(&self.replay_cache(&channel));
        }
        if let Some(change) = change {
            self.changed(&channel, change);
        }
    }

    /// The channel's cached event, or `pusher:cache_miss` (and its webhook).
    fn replay_cache(&self, channel: &Arc<str>) -> WireFrame {
        match self.cache.get(channel) {
            Some(cached) => WireFrame::text(&cached.frame),
            None => {
                self.submit(WebhookEvent::CacheMiss {
                    channel: channel.clone(),
                });
                WireFrame::text(&frames::cache_miss(channel))
            }
        }
    }

    /// Member notices, webhook events and the subscription count of one change.
    fn changed(self: &Arc<Self>, channel: &Arc<str>, change: Change<R>) {
        if let Some(recipients) = &change.recipients {
            for notice in change.transitions.iter().filter_map(member_notice) {
                self.deliver(recipients, &WireFrame::text(&notice), change.except);
            }
        }
        for transition in &change.transitions {
            let event = webhook_event(transition);
            self.journal_transition(channel, transition, &event);
            if let Some(user) = user_of_channel(channel) {
                let online = matches!(transition, Transition::Occupied { .. });
                self.watchlists.changed(user, online);
            }
            self.submit(event);
        }
        let Some(announce) = change.announce else {
            return;
        };
        match announce {
            Announce::Now => {
                if let (Some(recipients), true) = (&change.recipients, change.count > 0) {
                    let frame = frames::subscription_count(channel, change.count);
                    self.deliver(recipients, &WireFrame::text(&frame), None);
                }
                self.submit(WebhookEvent::SubscriptionCount {
                    channel: channel.clone(),
                    subscription_count: change.count,
                });
            }
            Announce::Later(at) => {
                let announce = self.clone().announce_count_at(channel.clone(), at);
                tokio::spawn(self.tasks.track_future(announce));
            }
            Announce::Pending => {}
        }
    }

    /// The console's entry of a transition: a user's status names the user, not its channel.
    fn journal_transition(
        &self,
        channel: &Arc<str>,
        transition: &Transition,
        event: &WebhookEvent,
    ) {
        let (journal, kind) = (self.metrics.journal(), event.kind().name());
        match (transition, user_of_channel(channel)) {
            (_, Some(user)) => journal.record(kind, None, None, || MemberDetail {
                user_id: Some(shown_text(user)),
            }),
            (
                Transition::MemberAdded { user_id, .. } | Transition::MemberRemoved { user_id, .. },
                None,
            ) => journal.record(kind, Some(channel), None, || MemberDetail {
                user_id: Some(shown_text(user_id)),
            }),
            (Transition::Occupied { .. } | Transition::Vacated { .. }, None) => {
                journal.record(kind, Some(channel), None, || NoDetail {})
            }
        }
    }

    fn count_due(&self, channel: Arc<str>, count: usize, recipients: Option<Subscribers<R>>) {
        match recipients {
            Some(recipients) if count > 0 => {
                let frame = frames::subscription_count(&channel, count);
                self.deliver(&recipients, &WireFrame::text(&frame), None);
            }
            Some(_) | None => self.counts.forget_if_idle(&channel),
        }
        self.submit(WebhookEvent::SubscriptionCount {
            channel,
            subscription_count: count,
        });
    }

    /// Writes the shared frame to every recipient but `except` (a large channel's on every
    /// core); one counter update per call.
    fn deliver(&self, recipients: &Subscribers<R>, frame: &WireFrame, except: Option<SocketId>) {
        let delivered = delivery::deliver(recipients, frame, except);
        self.metrics.messages_out(delivered * frame.messages());
    }
}
