//! The ingester's internal events, one type each: emitting one writes its log line and moves
//! its counters (the run's `IngestStats` and the process's Prometheus metrics) together.

use crate::storage::store::AppliedBatch;
use crate::{metrics, IngestStats, Store};

/// A batch and its stream sequence were committed to the open partition.
pub(crate) struct BatchCommitted<'a> {
    pub applied: &'a AppliedBatch,
    pub store: &'a Store,
    pub stats: &'a IngestStats,
}

impl BatchCommitted<'_> {
    pub(crate) fn emit(self) {
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let stats = self.stats;
        stats.rows_ingested.fetch_add(self.applied.rows as u64, relaxed);
        stats.snapshots_ingested.fetch_add(self.applied.snapshots as u64, relaxed);
        stats.batches_committed.fetch_add(1, relaxed);
        stats.last_applied_sequence.store(self.store.last_applied_sequence(), relaxed);
        let metrics = metrics::metrics();
        metrics.rows.inc_by(self.applied.rows as u64);
        metrics.snapshots.inc_by(self.applied.snapshots as u64);
        metrics.batches.inc();
        metrics.partition_bytes.set(self.store.partition_bytes() as i64);
        if self.applied.already_stored > 0 {
            tracing::info!(
                already_stored = self.applied.already_stored,
                "skipped snapshots stored before a restart"
            );
        }
    }
}

/// An unusable message (undecodable, unsupported, too large, or on the wrong subject) was
/// stored in the dead-letter stream, where an operator can read why.
pub(crate) struct MessageDeadLettered<'a> {
    pub subject: &'a str,
    pub sequence: u64,
    pub reason: &'a str,
    pub stats: &'a IngestStats,
}

impl MessageDeadLettered<'_> {
    pub(crate) fn emit(self) {
        tracing::warn!(
            subject = self.subject,
            sequence = self.sequence,
            reason = self.reason,
            "dead-lettered an unusable message"
        );
        self.stats.dead_letters.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::metrics().dead_letters.inc();
    }
}
