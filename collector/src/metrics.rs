//! The collector's Prometheus metrics: snapshots taken and failed per target and kind, how
//! long taking one takes, how full the publish buffers are, and how many targets it samples.

use std::sync::LazyLock;

use pgmon_common::metrics::{duration_histograms, register, DurationHistograms};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SnapshotLabels {
    pub target: String,
    pub kind: String,
    /// `ok` (queued for publishing) or `failed` (the target answered with an error).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabels {
    pub target: String,
    /// `buffer_full` (the oldest waiting snapshot made room) or `too_large` (cannot be sent).
    pub reason: &'static str,
}

pub(crate) struct CollectorMetrics {
    pub snapshots: Family<SnapshotLabels, Counter>,
    pub snapshot_duration: DurationHistograms<KindLabels>,
    pub publish_buffer_bytes: Family<TargetLabels, Gauge>,
    pub snapshots_dropped: Family<DropLabels, Counter>,
    pub targets_sampled: Gauge,
}

static METRICS: LazyLock<CollectorMetrics> = LazyLock::new(|| {
    let metrics = CollectorMetrics {
        snapshots: Family::default(),
        snapshot_duration: duration_histograms(),
        publish_buffer_bytes: Family::default(),
        snapshots_dropped: Family::default(),
        targets_sampled: Gauge::default(),
    };
    register(|registry| {
        registry.register(
            "collector_snapshots",
            "Snapshots taken (outcome ok: queued for publishing) or failed, per target and kind",
            metrics.snapshots.clone(),
        );
        registry.register(
            "collector_snapshot_duration_seconds",
            "Time to read and encode a snapshot, per kind",
            metrics.snapshot_duration.clone(),
        );
        registry.register(
            "collector_publish_buffer_bytes",
            "Bytes of snapshots waiting to be acknowledged by NATS, per target (all targets share one budget)",
            metrics.publish_buffer_bytes.clone(),
        );
        registry.register(
            "collector_snapshots_dropped",
            "Snapshots lost, per target and reason: buffer_full (NATS away or slow; the oldest waiting one made room) or too_large",
            metrics.snapshots_dropped.clone(),
        );
        registry.register(
            "collector_targets_sampled",
            "Targets this collector samples now (owned, enabled)",
            metrics.targets_sampled.clone(),
        );
    });
    metrics
});

pub(crate) fn metrics() -> &'static CollectorMetrics {
    &METRICS
}
