//! `lock_samples`: the pg_locks rows of sessions that wait on a lock or block one, with who
//! blocks each waiter.

use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, LockRow, SnapshotKind};

use super::{column, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const LOCK_SAMPLES: Table = Table {
    name: "lock_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("pid", "INTEGER", Source::Field("pid")),
        column("lock_type", "VARCHAR", Source::Field("lock_type")),
        column("mode", "VARCHAR", Source::Field("mode")),
        column("granted", "BOOLEAN", Source::Field("granted")),
        column("database", "VARCHAR", Source::Field("database")),
        column("relation", "VARCHAR", Source::Field("relation")),
        column("page", "INTEGER", Source::Field("page")),
        column("tuple", "INTEGER", Source::Field("tuple")),
        column("virtual_xid", "VARCHAR", Source::Field("virtual_xid")),
        column("transaction_id", "VARCHAR", Source::Field("transaction_id")),
        column("waiting_since", "TIMESTAMP", Source::Field("waiting_since_us")),
        column("blocked_by", "INTEGER[]", Source::Field("blocked_by")),
    ],
    compaction: Compaction::SortedBy("target, collected_at, pid"),
    stores: Stores {
        kinds: &[SnapshotKind::Locks],
        batch,
        sample_rows: true,
    },
};

fn batch(snapshots: &[(u64, &AnySnapshot)]) -> RecordBatch {
    sample_rows_batch::<LockRow>(&LOCK_SAMPLES, &snapshots_of(snapshots))
}
