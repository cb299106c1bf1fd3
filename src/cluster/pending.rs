//! A step still to be carried out in a channel's line, which its caller waits for before it
//! goes on ([`Pending`]), and how a step that Redis had to decide ended.

use std::sync::Arc;

/// A step of the caller's still to be carried out in its channel's line (another thread is
/// carrying the line out, or Redis is still to confirm it): a joiner's reply, a published event,
/// a client event. The caller waits for it before it goes on, so what it does next cannot
/// overtake it.
#[must_use = "the caller must not go on before the step is carried out"]
pub struct Pending {
    waiting: Option<Waiting>,
    refusal: Option<Refusal>,
    /// An event handed to Redis: a REST answer waits for it too, so a trigger sent after the
    /// answer cannot reach Redis first.
    publish: bool,
}

enum Waiting {
    Line(tokio::sync::oneshot::Receiver<()>),
    Outcome(tokio::sync::oneshot::Receiver<Outcome>),
}

/// How a step that Redis had to decide ended.
pub enum Outcome {
    /// Carried out.
    Done,
    /// A subscription refused after the socket asked (the member limit counts the whole
    /// cluster, so only Redis knows): the socket forgets the channel and reports the error.
    Refused(Refusal),
}

/// A subscription the cluster refused.
#[derive(Debug)]
pub struct Refusal {
    /// The channel.
    pub channel: Arc<str>,
    /// Why, as the client is told.
    pub error: crate::protocol::codes::SubscriptionError,
}

impl Pending {
    pub(super) fn new(done: tokio::sync::oneshot::Receiver<()>) -> Pending {
        Pending {
            waiting: Some(Waiting::Line(done)),
            refusal: None,
            publish: false,
        }
    }

    /// A step decided elsewhere (on Redis); `publish` for an event handed to Redis.
    pub fn decided(done: tokio::sync::oneshot::Receiver<Outcome>, publish: bool) -> Pending {
        Pending {
            waiting: Some(Waiting::Outcome(done)),
            refusal: None,
            publish,
        }
    }

    /// Whether a REST answer must wait for it even after the request's last event.
    pub fn is_publish(&self) -> bool {
        self.publish
    }

    fn finish(&mut self, outcome: Option<Outcome>) {
        self.waiting = None;
        if let Some(Outcome::Refused(refusal)) = outcome {
            self.refusal = Some(refusal);
        }
    }

    /// Whether the step has been carried out by now.
    pub fn is_done(&mut self) -> bool {
        use tokio::sync::oneshot::error::TryRecvError;
        let outcome = match &mut self.waiting {
            None => return true,
            Some(Waiting::Line(done)) => match done.try_recv() {
                Err(TryRecvError::Empty) => return false,
                Ok(()) | Err(TryRecvError::Closed) => None,
            },
            Some(Waiting::Outcome(done)) => match done.try_recv() {
                Err(TryRecvError::Empty) => return false,
                Ok(outcome) => Some(outcome),
                Err(TryRecvError::Closed) => None,
            },
        };
        self.finish(outcome);
        true
    }

    /// Resolves once the step has been carried out, with the refusal of a subscription Redis
    /// refused (cancel-safe: wait again after a drop).
    pub async fn done(&mut self) -> Option<Refusal> {
        let outcome = match &mut self.waiting {
            None => None,
            Some(Waiting::Line(done)) => {
                let _ = done.await;
                None
            }
            Some(Waiting::Outcome(done)) => done.await.ok(),
        };
        self.finish(outcome);
        self.refusal.take()
    }

    /// Waits for `pending`, if there is one.
    pub async fn wait(pending: Option<Pending>) {
        if let Some(mut pending) = pending {
            pending.done().await;
        }
    }
}
