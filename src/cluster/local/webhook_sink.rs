//! Where one app's webhook events go on a single node: admitted under the app's queue budget
//! when they happen, held for the grace period by the app's grace task, then dispatched to the
//! endpoints.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::grace::GraceStage;
use crate::cluster::recipient::WebhookOut;
use crate::config::EventKind;
use crate::webhooks::{Admitted, WebhookEvent, Webhooks};

/// The webhook side of one app with endpoints.
pub struct WebhookSink {
    app_id: String,
    webhooks: Arc<Webhooks>,
    grace: mpsc::UnboundedSender<Admitted>,
}

impl WebhookSink {
    /// Starts the app's grace task on `tasks`; it releases everything once `close` is cancelled.
    pub fn start(
        app_id: &str,
        webhooks: Arc<Webhooks>,
        period: Duration,
        close: CancellationToken,
        tasks: &TaskTracker,
    ) -> WebhookSink {
        let (tx, rx) = mpsc::unbounded_channel();
        let stage = GraceStage::new(period);
        tasks.spawn(run_grace(
            rx,
            stage,
            webhooks.clone(),
            app_id.to_owned(),
            close,
        ));
        WebhookSink {
            app_id: app_id.to_owned(),
            webhooks,
            grace: tx,
        }
    }
}

impl WebhookOut for WebhookSink {
    fn wants(&self, kind: EventKind) -> bool {
        self.webhooks.wants(&self.app_id, kind)
    }

    /// Admits the event under the budget (or drops it, logged and counted) and passes it on to
    /// the grace task, in the order of submission.
    fn submit(&self, event: WebhookEvent) {
        let Some(admitted) = self.webhooks.admit(&self.app_id, event) else {
            return;
        };
        if let Err(unsent) = self.grace.send(admitted) {
            // The grace task has flushed (shutdown): nothing is held any more.
            self.webhooks.dispatch(&self.app_id, unsent.0);
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One app's grace task: holds vacate/remove events for the period, then dispatches each
/// released event, in release order; cancelled pairs give their budget back.
async fn run_grace(
    mut events: mpsc::UnboundedReceiver<Admitted>,
    mut stage: GraceStage<Admitted>,
    webhooks: Arc<Webhooks>,
    app_id: String,
    close: CancellationToken,
) {
    let (mut released, mut cancelled) = (Vec::new(), Vec::new());
    let pass_on = |released: &mut Vec<Admitted>, cancelled: &mut Vec<Admitted>| {
        released
            .drain(..)
            .for_each(|event| webhooks.dispatch(&app_id, event));
        cancelled.drain(..).for_each(|event| webhooks.cancel(event));
    };
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(event) => stage.accept(event, Instant::now(), &mut released, &mut cancelled),
                None => break,
            },
            _ = sleep_until_some(stage.next_deadline()) => stage.release_due(Instant::now(), &mut released),
            _ = close.cancelled() => break,
        }
        pass_on(&mut released, &mut cancelled);
    }
    // Shutdown: take what is still queued, then release every hold at once.
    events.close();
    while let Ok(event) = events.try_recv() {
        stage.accept(event, Instant::now(), &mut released, &mut cancelled);
    }
    stage.release_all(&mut released);
    pass_on(&mut released, &mut cancelled);
}
