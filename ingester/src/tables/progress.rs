//! `progress_samples`: the maintenance commands running at each progress sample (vacuum,
//! analyze, index build, CLUSTER), with their phase and blocks done.

use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, ProgressRow, SnapshotKind};

use super::{column, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const PROGRESS_SAMPLES: Table = Table {
    name: "progress_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("pid", "INTEGER", Source::Field("pid")),
        column("command", "VARCHAR", Source::Field("command")),
        column("database", "VARCHAR", Source::Field("database")),
        column("relation", "VARCHAR", Source::Field("relation")),
        column("phase", "VARCHAR", Source::Field("phase")),
        column("autovacuum", "BOOLEAN", Source::Field("autovacuum")),
        column("started_at", "TIMESTAMP", Source::Field("started_at_us")),
        column("blocks_total", "BIGINT", Source::Field("blocks_total")),
        column("blocks_done", "BIGINT", Source::Field("blocks_done")),
        column("index_vacuum_count", "BIGINT", Source::Field("index_vacuum_count")),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Progress],
        batch,
        sample_rows: true,
    },
};

fn batch(snapshots: &[(u64, &AnySnapshot)]) -> RecordBatch {
    sample_rows_batch::<ProgressRow>(&PROGRESS_SAMPLES, &snapshots_of(snapshots))
}
