//! The collector's internal events, one type each: emitting one writes its log line and moves
//! its counters, so what the logs say and what `/metrics` counts never drift apart.

use std::fmt::Display;
use std::time::Duration;

use pgmon_contract::event::SnapshotKind;
use pgmon_contract::target::TargetName;

use crate::metrics::{metrics, DropLabels, KindLabels, SnapshotLabels};

/// Why a sample was lost: the `reason` label of `pgmon_collector_snapshots_dropped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The buffer was full: NATS is away or slower than sampling.
    BufferFull,
    /// Larger than what can be sent: a single row above the server's message size, or a sample
    /// above the whole buffer.
    TooLarge,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::TooLarge => "too_large",
        }
    }
}

fn count_snapshot(target: &TargetName, kind: SnapshotKind, outcome: &'static str) {
    metrics()
        .snapshots
        .get_or_create(&SnapshotLabels {
            target: target.as_str().to_owned(),
            kind: kind.as_str().to_owned(),
            outcome,
        })
        .inc();
}

fn count_dropped(target: &TargetName, reason: DropReason) {
    metrics()
        .snapshots_dropped
        .get_or_create(&DropLabels {
            target: target.as_str().to_owned(),
            reason: reason.as_str(),
        })
        .inc();
}

/// A snapshot was read, encoded and queued for publishing.
pub(crate) struct SnapshotQueued<'a> {
    pub target: &'a TargetName,
    pub kind: SnapshotKind,
    /// From the moment it was taken until it was queued.
    pub took: Duration,
}

impl SnapshotQueued<'_> {
    pub(crate) fn emit(self) {
        count_snapshot(self.target, self.kind, "ok");
        metrics()
            .snapshot_duration
            .get_or_create(&KindLabels {
                kind: self.kind.as_str().to_owned(),
            })
            .observe(self.took.as_secs_f64());
    }
}

/// The target answered a sample query with an error; the next round tries again.
pub(crate) struct SnapshotFailed<'a> {
    pub target: &'a TargetName,
    pub kind: SnapshotKind,
    pub error: &'a dyn Display,
}

impl SnapshotFailed<'_> {
    pub(crate) fn emit(self) {
        tracing::warn!(target = %self.target, kind = self.kind.as_str(), error = %self.error, "snapshot failed");
        count_snapshot(self.target, self.kind, "failed");
    }
}

/// A snapshot could not be split into messages the server takes (one row alone is too large):
/// it failed and is lost.
pub(crate) struct SnapshotTooLarge<'a> {
    pub target: &'a TargetName,
    pub kind: SnapshotKind,
    pub error: &'a dyn Display,
}

impl SnapshotTooLarge<'_> {
    pub(crate) fn emit(self) {
        tracing::error!(target = %self.target, kind = self.kind.as_str(), error = %self.error, "snapshot dropped: it cannot be sent");
        count_snapshot(self.target, self.kind, "failed");
        count_dropped(self.target, DropReason::TooLarge);
    }
}

/// A queued sample was lost before NATS acknowledged it.
pub(crate) struct SampleDropped<'a> {
    pub target: &'a TargetName,
    pub kind: SnapshotKind,
    pub reason: DropReason,
}

impl SampleDropped<'_> {
    pub(crate) fn emit(self) {
        match self.reason {
            DropReason::BufferFull => tracing::error!(
                target = %self.target,
                kind = self.kind.as_str(),
                "publish buffer full: NATS is not keeping up, the oldest waiting snapshot was dropped"
            ),
            DropReason::TooLarge => {
                tracing::error!(target = %self.target, kind = self.kind.as_str(), "snapshot dropped: too large to send")
            }
        }
        count_dropped(self.target, self.reason);
    }
}

/// A message of a sample is larger than the NATS server takes (`max_payload`, smaller than
/// the collector was told): the sample is lost.
pub(crate) struct MessageOverServerLimit<'a> {
    pub target: &'a TargetName,
    pub kind: SnapshotKind,
    pub subject: &'a str,
    pub bytes: usize,
    pub max_payload: usize,
}

impl MessageOverServerLimit<'_> {
    pub(crate) fn emit(self) {
        tracing::error!(
            target = %self.target,
            kind = self.kind.as_str(),
            subject = self.subject,
            bytes = self.bytes,
            max_payload = self.max_payload,
            "snapshot dropped: a message is larger than the NATS server's max_payload"
        );
        count_dropped(self.target, DropReason::TooLarge);
    }
}
