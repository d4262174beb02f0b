//! The ingester's Prometheus metrics: what it stored, what it dead-lettered, how far behind
//! the stream it is, how large its partitions are, and how long named queries take.

use std::sync::LazyLock;

use pgmon_common::metrics::{duration_histograms, register, DurationHistograms};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueryLabels {
    pub query: String,
}

pub(crate) struct IngesterMetrics {
    pub rows: Counter,
    pub snapshots: Counter,
    pub batches: Counter,
    pub dead_letters: Counter,
    pub pending_messages: Gauge,
    pub partition_bytes: Gauge,
    pub query_duration: DurationHistograms<QueryLabels>,
}

static METRICS: LazyLock<IngesterMetrics> = LazyLock::new(|| {
    let metrics = IngesterMetrics {
        rows: Counter::default(),
        snapshots: Counter::default(),
        batches: Counter::default(),
        dead_letters: Counter::default(),
        pending_messages: Gauge::default(),
        partition_bytes: Gauge::default(),
        query_duration: duration_histograms(),
    };
    register(|registry| {
        registry.register("ingester_rows", "Sample rows stored", metrics.rows.clone());
        registry.register("ingester_snapshots", "Snapshots stored", metrics.snapshots.clone());
        registry.register("ingester_batches", "Batches committed", metrics.batches.clone());
        registry.register(
            "ingester_dead_letters",
            "Messages that could not be stored, sent to the dead-letter stream",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "ingester_consumer_pending_messages",
            "Messages of the snapshot stream not yet delivered to this ingester (its lag)",
            metrics.pending_messages.clone(),
        );
        registry.register(
            "ingester_partition_bytes",
            "Bytes of the partition files on disk",
            metrics.partition_bytes.clone(),
        );
        registry.register(
            "ingester_query_duration_seconds",
            "Time to answer a named query, per query",
            metrics.query_duration.clone(),
        );
    });
    metrics
});

pub(crate) fn metrics() -> &'static IngesterMetrics {
    &METRICS
}
