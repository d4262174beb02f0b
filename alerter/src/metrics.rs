//! The alerter's Prometheus metrics: evaluations, notifications sent and failed, and how far
//! behind the samples its evaluations run.

use std::sync::LazyLock;

use pgmon_common::metrics::register;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::AtomicU64;

/// Receivers are named in the alerts file, so this label is bounded by the operator.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeliveryLabels {
    pub receiver: String,
    /// `sent`, `failed` (to be retried) or `undeliverable` (given up, kept in the stream).
    pub outcome: &'static str,
}

pub(crate) struct AlerterMetrics {
    pub evaluations: Counter,
    pub transitions: Counter,
    pub notifications: Family<DeliveryLabels, Counter>,
    /// Seconds between a sample's collection and its evaluation, for the newest sample.
    pub evaluation_lag_seconds: Gauge<f64, AtomicU64>,
}

static METRICS: LazyLock<AlerterMetrics> = LazyLock::new(|| {
    let metrics = AlerterMetrics {
        evaluations: Counter::default(),
        transitions: Counter::default(),
        notifications: Family::default(),
        evaluation_lag_seconds: Gauge::default(),
    };
    register(|registry| {
        registry.register("alerter_evaluations", "Rule evaluations on samples", metrics.evaluations.clone());
        registry.register(
            "alerter_transitions",
            "Alert state changes this alerter recorded (pending, firing, resolving, resolved)",
            metrics.transitions.clone(),
        );
        registry.register(
            "alerter_notifications",
            "Notification deliveries per receiver and outcome",
            metrics.notifications.clone(),
        );
        registry.register(
            "alerter_evaluation_lag_seconds",
            "Seconds between the collection of the newest sample evaluated and its evaluation",
            metrics.evaluation_lag_seconds.clone(),
        );
    });
    metrics
});

pub(crate) fn metrics() -> &'static AlerterMetrics {
    &METRICS
}
