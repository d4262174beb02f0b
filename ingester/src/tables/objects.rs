//! `object_samples`: the size of every table and index, with its last vacuum and analyze;
//! objects that could not be measured carry the last measured sizes, filled in by the store
//! (`stale_sizes`), with when they were measured and why not now.

use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, ObjectRow, SnapshotKind};

use super::{column, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const OBJECT_SAMPLES: Table = Table {
    name: "object_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("database", "VARCHAR", Source::Field("database")),
        column("schema_name", "VARCHAR", Source::Field("schema")),
        column("name", "VARCHAR", Source::Field("name")),
        column("kind", "VARCHAR", Source::Field("kind")),
        column("parent", "VARCHAR", Source::Field("parent")),
        column("total_bytes", "BIGINT", Source::Field("total_bytes")),
        column("table_bytes", "BIGINT", Source::Field("table_bytes")),
        column("index_bytes", "BIGINT", Source::Field("index_bytes")),
        column("toast_bytes", "BIGINT", Source::Field("toast_bytes")),
        column("row_estimate", "BIGINT", Source::Field("row_estimate")),
        column("last_vacuum", "TIMESTAMP", Source::Field("last_vacuum_us")),
        column("last_autovacuum", "TIMESTAMP", Source::Field("last_autovacuum_us")),
        column("last_analyze", "TIMESTAMP", Source::Field("last_analyze_us")),
        column("last_autoanalyze", "TIMESTAMP", Source::Field("last_autoanalyze_us")),
        column("size_stale_reason", "VARCHAR", Source::Field("size_stale_reason")),
        column("size_measured_at", "TIMESTAMP", Source::FilledInByStore),
    ],
    compaction: Compaction::SortedBy("target, database, schema_name, name, collected_at"),
    stores: Stores {
        kinds: &[SnapshotKind::Objects],
        batch,
        sample_rows: true,
    },
};

fn batch(snapshots: &[(u64, &AnySnapshot)]) -> RecordBatch {
    sample_rows_batch::<ObjectRow>(&OBJECT_SAMPLES, &snapshots_of(snapshots))
}
