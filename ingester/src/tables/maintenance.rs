//! `table_samples`: what autovacuum sees of every table, materialized view and TOAST table
//! (tuples, scans, vacuum and analyze, frozen-ID ages) and the autovacuum settings that apply
//! to it, one row per table and objects round.

use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, SnapshotKind, TableRow};

use super::{column, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const TABLE_SAMPLES: Table = Table {
    name: "table_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("database", "VARCHAR", Source::Field("database")),
        column("schema_name", "VARCHAR", Source::Field("schema")),
        column("name", "VARCHAR", Source::Field("name")),
        column("kind", "VARCHAR", Source::Field("kind")),
        column("live_tuples", "BIGINT", Source::Field("live_tuples")),
        column("dead_tuples", "BIGINT", Source::Field("dead_tuples")),
        column("modified_since_analyze", "BIGINT", Source::Field("modified_since_analyze")),
        column("inserted_since_vacuum", "BIGINT", Source::Field("inserted_since_vacuum")),
        column("row_estimate", "BIGINT", Source::Field("row_estimate")),
        column("seq_scans", "BIGINT", Source::Field("seq_scans")),
        column("index_scans", "BIGINT", Source::Field("index_scans")),
        column("vacuum_count", "BIGINT", Source::Field("vacuum_count")),
        column("autovacuum_count", "BIGINT", Source::Field("autovacuum_count")),
        column("analyze_count", "BIGINT", Source::Field("analyze_count")),
        column("autoanalyze_count", "BIGINT", Source::Field("autoanalyze_count")),
        column("last_vacuum", "TIMESTAMP", Source::Field("last_vacuum_us")),
        column("last_autovacuum", "TIMESTAMP", Source::Field("last_autovacuum_us")),
        column("last_analyze", "TIMESTAMP", Source::Field("last_analyze_us")),
        column("last_autoanalyze", "TIMESTAMP", Source::Field("last_autoanalyze_us")),
        column("frozen_xid_age", "BIGINT", Source::Field("frozen_xid_age")),
        column("frozen_multixact_age", "BIGINT", Source::Field("frozen_multixact_age")),
        column("autovacuum_enabled", "BOOLEAN", Source::Field("autovacuum_enabled")),
        column("vacuum_threshold", "BIGINT", Source::Field("vacuum_threshold")),
        column("vacuum_scale_factor", "DOUBLE", Source::Field("vacuum_scale_factor")),
        column("vacuum_max_threshold", "BIGINT", Source::Field("vacuum_max_threshold")),
        column("insert_vacuum_threshold", "BIGINT", Source::Field("insert_vacuum_threshold")),
        column("insert_vacuum_scale_factor", "DOUBLE", Source::Field("insert_vacuum_scale_factor")),
        column("analyze_threshold", "BIGINT", Source::Field("analyze_threshold")),
        column("analyze_scale_factor", "DOUBLE", Source::Field("analyze_scale_factor")),
        column("freeze_max_age", "BIGINT", Source::Field("freeze_max_age")),
        column("multixact_freeze_max_age", "BIGINT", Source::Field("multixact_freeze_max_age")),
    ],
    compaction: Compaction::SortedBy("target, database, schema_name, name, collected_at"),
    stores: Stores {
        kinds: &[SnapshotKind::Tables],
        batch,
        sample_rows: true,
    },
};

fn batch(snapshots: &[(u64, &AnySnapshot)]) -> RecordBatch {
    sample_rows_batch::<TableRow>(&TABLE_SAMPLES, &snapshots_of(snapshots))
}
