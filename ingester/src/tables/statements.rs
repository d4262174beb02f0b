//! `statement_samples` (pg_stat_statements entries as sampled, counters since their reset) and
//! `statement_text_copies` (each text as it arrives, and the copies every partition keeps of
//! the texts its statements need, so texts outlive the partition they arrived in).

use std::sync::Arc;

use duckdb::arrow::array::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, Snapshot, SnapshotKind, StatementRow};

use super::{column, record_batch, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const STATEMENT_SAMPLES: Table = Table {
    name: "statement_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("database", "VARCHAR", Source::Field("database")),
        column("user_name", "VARCHAR", Source::Field("user")),
        column("query_id", "BIGINT", Source::Field("query_id")),
        column("toplevel", "BOOLEAN", Source::Field("toplevel")),
        column("query", "VARCHAR", Source::Field("query")),
        column("calls", "BIGINT", Source::Field("calls")),
        column("total_exec_time_ms", "DOUBLE", Source::Field("total_exec_time_ms")),
        column("min_exec_time_ms", "DOUBLE", Source::Field("min_exec_time_ms")),
        column("max_exec_time_ms", "DOUBLE", Source::Field("max_exec_time_ms")),
        column("mean_exec_time_ms", "DOUBLE", Source::Field("mean_exec_time_ms")),
        column("stddev_exec_time_ms", "DOUBLE", Source::Field("stddev_exec_time_ms")),
        column("plans", "BIGINT", Source::Field("plans")),
        column("total_plan_time_ms", "DOUBLE", Source::Field("total_plan_time_ms")),
        column("rows", "BIGINT", Source::Field("rows")),
        column("shared_blks_hit", "BIGINT", Source::Field("shared_blks_hit")),
        column("shared_blks_read", "BIGINT", Source::Field("shared_blks_read")),
        column("shared_blks_dirtied", "BIGINT", Source::Field("shared_blks_dirtied")),
        column("shared_blks_written", "BIGINT", Source::Field("shared_blks_written")),
        column("local_blks_hit", "BIGINT", Source::Field("local_blks_hit")),
        column("local_blks_read", "BIGINT", Source::Field("local_blks_read")),
        column("local_blks_dirtied", "BIGINT", Source::Field("local_blks_dirtied")),
        column("local_blks_written", "BIGINT", Source::Field("local_blks_written")),
        column("temp_blks_read", "BIGINT", Source::Field("temp_blks_read")),
        column("temp_blks_written", "BIGINT", Source::Field("temp_blks_written")),
        column("shared_blk_read_time_ms", "DOUBLE", Source::Field("shared_blk_read_time_ms")),
        column("shared_blk_write_time_ms", "DOUBLE", Source::Field("shared_blk_write_time_ms")),
        column("local_blk_read_time_ms", "DOUBLE", Source::Field("local_blk_read_time_ms")),
        column("local_blk_write_time_ms", "DOUBLE", Source::Field("local_blk_write_time_ms")),
        column("temp_blk_read_time_ms", "DOUBLE", Source::Field("temp_blk_read_time_ms")),
        column("temp_blk_write_time_ms", "DOUBLE", Source::Field("temp_blk_write_time_ms")),
        column("wal_records", "BIGINT", Source::Field("wal_records")),
        column("wal_fpi", "BIGINT", Source::Field("wal_fpi")),
        column("wal_bytes", "BIGINT", Source::Field("wal_bytes")),
        column("wal_buffers_full", "BIGINT", Source::Field("wal_buffers_full")),
        column("jit_functions", "BIGINT", Source::Field("jit_functions")),
        column("jit_time_ms", "DOUBLE", Source::Field("jit_time_ms")),
        column("parallel_workers_to_launch", "BIGINT", Source::Field("parallel_workers_to_launch")),
        column("parallel_workers_launched", "BIGINT", Source::Field("parallel_workers_launched")),
        column("stats_since", "TIMESTAMP", Source::Field("stats_since_us")),
    ],
    compaction: Compaction::SortedBy("target, database, user_name, query_id, toplevel, collected_at"),
    stores: Stores {
        kinds: &[SnapshotKind::Statements],
        batch,
        sample_rows: true,
    },
};

pub(crate) const STATEMENT_TEXT_COPIES: Table = Table {
    name: "statement_text_copies",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("query_id", "BIGINT", Source::Computed),
        column("query", "VARCHAR", Source::Computed),
        column("seen_at", "TIMESTAMP", Source::CollectedAt),
    ],
    compaction: Compaction::SortedBy("target, query_id, seen_at"),
    stores: Stores {
        kinds: &[SnapshotKind::Statements],
        batch: |snapshots| texts_batch(&snapshots_of(snapshots)),
        sample_rows: false,
    },
};

fn batch(snapshots: &[(u64, &AnySnapshot)]) -> RecordBatch {
    sample_rows_batch::<StatementRow>(&STATEMENT_SAMPLES, &snapshots_of(snapshots))
}

/// Rows of `statement_text_copies`: the texts statements snapshots carry (a text is sent with
/// the first sample of its query id, and again from time to time).
fn texts_batch(snapshots: &[(u64, &Snapshot<StatementRow>)]) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut query_id = Int64Builder::new();
    let mut query = StringBuilder::new();
    let mut seen_at = TimestampMicrosecondBuilder::new();
    for (_, snapshot) in snapshots {
        for row in &snapshot.rows {
            let Some(text) = &row.query else { continue };
            target.append_value(snapshot.target.as_str());
            query_id.append_value(row.query_id);
            query.append_value(text);
            seen_at.append_value(snapshot.collected_at_us);
        }
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("query_id", Arc::new(query_id.finish())),
        ("query", Arc::new(query.finish())),
        ("seen_at", Arc::new(seen_at.finish())),
    ])
}
