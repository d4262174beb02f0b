//! `target_status`: whether each target is up or down, since when and why, and what the
//! collector cannot sample on it.

use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, SnapshotKind, StatusRow};

use super::{column, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const TARGET_STATUS: Table = Table {
    name: "target_status",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("state", "VARCHAR", Source::Field("state")),
        column("reason", "VARCHAR", Source::Field("reason")),
        column("message", "VARCHAR", Source::Field("message")),
        column("since", "TIMESTAMP", Source::Field("since_us")),
        column(
            "limitations",
            "STRUCT(kind VARCHAR, reason VARCHAR, message VARCHAR)[]",
            Source::Field("limitations"),
        ),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Status],
        batch,
        sample_rows: true,
    },
};

fn batch(snapshots: &[(u64, &AnySnapshot)]) -> RecordBatch {
    sample_rows_batch::<StatusRow>(&TARGET_STATUS, &snapshots_of(snapshots))
}
