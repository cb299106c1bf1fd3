//! Decision hook calls, labelled `app_id` and `hook` (the hook's event type).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabel {
    app_id: String,
    hook: &'static str,
}

/// 1 ms to about 16 s: a hook answers in milliseconds or runs into its timeout.
fn call_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

type Counters = Family<HookLabel, Counter>;

/// The decision hook families, registered once.
pub(super) struct HookFamilies {
    calls: Counters,
    allowed: Counters,
    refused: Counters,
    failures: Counters,
    latency: Family<HookLabel, Histogram, fn() -> Histogram>,
}

impl HookFamilies {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut Registry) -> HookFamilies {
        let families = HookFamilies {
            calls: Counters::default(),
            allowed: Counters::default(),
            refused: Counters::default(),
            failures: Counters::default(),
            latency: Family::new_with_constructor(call_latency),
        };
        let counters: [(&str, &str, &Counters); 4] = [
            ("app_decision_hook_calls", "Decision hook calls, per app and hook.", &families.calls),
            ("app_decision_hook_allowed", "Decision hook calls that allowed, per app and hook.", &families.allowed),
            ("app_decision_hook_refused", "Decision hook calls that refused, per app and hook.", &families.refused),
            ("app_decision_hook_failures", "Decision hook calls that failed (timeout, error, non-2xx, over max_concurrent), per app and hook.", &families.failures),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "app_decision_hook_latency_seconds",
            "Time from a decision hook call to its answer (or failure), per app and hook.",
            families.latency.clone(),
        );
        families
    }

    /// Drops every hook series of an app that is gone.
    pub fn forget(&self, app_id: &str) {
        for hook in crate::config::HookKind::ALL {
            let label = HookLabel {
                app_id: app_id.to_owned(),
                hook: hook.as_str(),
            };
            for family in [&self.calls, &self.allowed, &self.refused, &self.failures] {
                family.remove(&label);
            }
            self.latency.remove(&label);
        }
    }

    /// The series of one app's hook.
    pub fn of(&self, app_id: &str, hook: &'static str) -> HookMetrics {
        let label = HookLabel {
            app_id: app_id.to_owned(),
            hook,
        };
        HookMetrics {
            calls: self.calls.get_or_create_owned(&label),
            allowed: self.allowed.get_or_create_owned(&label),
            refused: self.refused.get_or_create_owned(&label),
            failures: self.failures.get_or_create_owned(&label),
            latency: self.latency.get_or_create_owned(&label),
        }
    }
}

/// How one call of a hook ended, for [`HookMetrics::called`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOutcome {
    /// The hook allowed.
    Allowed,
    /// The hook refused.
    Refused,
    /// The hook did not decide (its `on_failure` applied).
    Failed,
}

/// The series of one app's hook of one type.
#[derive(Clone)]
pub struct HookMetrics {
    calls: Counter,
    allowed: Counter,
    refused: Counter,
    failures: Counter,
    latency: Histogram,
}

impl HookMetrics {
    /// One call that ended as `outcome` after `took`.
    pub fn called(&self, outcome: HookOutcome, took: Duration) {
        self.calls.inc();
        self.latency.observe(took.as_secs_f64());
        match outcome {
            HookOutcome::Allowed => self.allowed.inc(),
            HookOutcome::Refused => self.refused.inc(),
            HookOutcome::Failed => self.failures.inc(),
        };
    }
}
