//! What the console's overview shows of each node: its figures per app, read from the node's
//! own series. In a cluster every node also writes them to Redis once per heartbeat
//! ([`super::redis::node_figures`]), so one node's overview can show every node without
//! asking the others anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::apps::AppRegistry;
use crate::metrics::{AppFigures, AppMetrics, Metrics, WebhookHealth};

/// Depth and age of a webhook queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFigures {
    /// Events queued, held or in flight.
    pub queued: u64,
    /// Age of the oldest event waiting for delivery (0: none).
    pub oldest_age_ms: u64,
}

impl From<WebhookHealth> for QueueFigures {
    fn from(health: WebhookHealth) -> QueueFigures {
        QueueFigures {
            queued: health.queue.events,
            oldest_age_ms: health
                .queue
                .oldest_age
                .map_or(0, |age| age.as_millis() as u64),
        }
    }
}

/// One app's figures on one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAppFigures {
    /// The app's counters on the node.
    #[serde(flatten)]
    pub figures: AppFigures,
    /// The node's webhook queue of the app; `None` in a cluster, whose queues are the shared
    /// streams (no node has a queue of its own to report).
    pub webhook_queue: Option<QueueFigures>,
}

/// One node's figures, as they were at `time_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFigures {
    /// The node's incarnation; `None` for a single node.
    pub node: Option<String>,
    /// When they were read (Unix ms, the node's clock): rates are per second of this clock.
    pub time_ms: u64,
    /// Per app id.
    pub apps: BTreeMap<String, NodeAppFigures>,
}

/// Reads this node's figures: every app's series, resolved once.
pub struct FigureSource {
    apps: Vec<(String, Arc<AppMetrics>)>,
}

impl FigureSource {
    /// The source of `apps`' figures in `metrics`.
    pub fn new(apps: &AppRegistry, metrics: &Metrics) -> FigureSource {
        FigureSource {
            apps: apps
                .iter()
                .map(|app| (app.id.to_string(), metrics.app(&app.id)))
                .collect(),
        }
    }

    /// Follows a reload: added apps' figures are read from now on, removed apps' no more.
    pub fn follow(&mut self, changes: &crate::apps::AppChanges, metrics: &Metrics) {
        let removed = |id: &String| changes.removed.iter().any(|app| app.id == *id);
        self.apps.retain(|(id, _)| !removed(id));
        for app in &changes.added {
            self.apps.push((app.id.clone(), metrics.app(&app.id)));
        }
    }

    /// The figures as they are now, with each app's webhook queue from `queue`.
    pub fn read(
        &self,
        node: Option<String>,
        queue: impl Fn(&str) -> Option<QueueFigures>,
    ) -> NodeFigures {
        let apps = self
            .apps
            .iter()
            .map(|(id, metrics)| {
                let figures = NodeAppFigures {
                    figures: metrics.figures(),
                    webhook_queue: queue(id),
                };
                (id.clone(), figures)
            })
            .collect();
        NodeFigures {
            node,
            time_ms: crate::journal::unix_millis(),
            apps,
        }
    }
}

/// The sum over `nodes` of one app's figures, and of the queues that report one (`None` when
/// none does): depths add up, the oldest age is the oldest of any.
pub fn app_total(nodes: &[NodeFigures], app_id: &str) -> NodeAppFigures {
    let mut total = NodeAppFigures::default();
    for app in nodes.iter().filter_map(|node| node.apps.get(app_id)) {
        total.figures += app.figures;
        if let Some(queue) = app.webhook_queue {
            let sum = total
                .webhook_queue
                .get_or_insert_with(QueueFigures::default);
            sum.queued += queue.queued;
            sum.oldest_age_ms = sum.oldest_age_ms.max(queue.oldest_age_ms);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, connections: i64, queue: Option<QueueFigures>) -> NodeFigures {
        let figures = AppFigures {
            connections,
            messages_in: 10,
            ..AppFigures::default()
        };
        let app = NodeAppFigures {
            figures,
            webhook_queue: queue,
        };
        NodeFigures {
            node: Some(name.into()),
            time_ms: 1,
            apps: BTreeMap::from([("a".to_owned(), app)]),
        }
    }

    #[test]
    fn totals_add_nodes_up_and_keep_the_oldest_queue_age() {
        let queue = |queued, oldest_age_ms| {
            Some(QueueFigures {
                queued,
                oldest_age_ms,
            })
        };
        let nodes = [
            node("x", 2, queue(3, 50)),
            node("y", 1, None),
            node("z", 4, queue(1, 70)),
        ];
        let total = app_total(&nodes, "a");
        assert_eq!(total.figures.connections, 7);
        assert_eq!(total.figures.messages_in, 30);
        assert_eq!(total.webhook_queue, queue(4, 70));
        assert_eq!(app_total(&nodes[1..2], "a").webhook_queue, None);
        assert_eq!(app_total(&nodes, "other"), NodeAppFigures::default());
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        let written = node("x", 2, None);
        let json = serde_json::to_string(&written).unwrap();
        assert!(json.contains(r#""connections":2"#), "flat: {json}");
        assert_eq!(serde_json::from_str::<NodeFigures>(&json).unwrap(), written);
    }
}
