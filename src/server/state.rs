//! The state every connection and request handler shares, behind one cheap-clone `Arc`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps::{App, AppRegistry};
use crate::cluster::ClusterAdapter;
use crate::config::Config;
use crate::engine::Transition;
use crate::http::BodyBudget;
use crate::metrics::Metrics;
use crate::transport::ConnectionLimit;
use crate::webhooks::{WebhookEvent, Webhooks};

/// Shared server state.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// The apps and their engine state.
    pub apps: AppRegistry,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The webhook pipelines.
    pub webhooks: Webhooks,
    /// The cluster adapter.
    pub cluster: ClusterAdapter,
    /// Cancelled when the server shuts down; every connection loop watches it.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub connections: TaskTracker,
    /// Bytes of REST request bodies being read at once.
    pub body_budget: BodyBudget,
    /// Open WebSocket connections of the process, and `max_connections`.
    pub connection_limit: ConnectionLimit,
}

/// The handle handlers receive.
pub type SharedState = Arc<Shared>;

impl Shared {
    /// Hands cluster-wide transitions on to the webhook pipeline.
    pub fn emit(&self, app: &App, transitions: &[Transition]) {
        for transition in transitions {
            self.webhooks
                .submit(&app.id, WebhookEvent::from(transition));
        }
    }
}
