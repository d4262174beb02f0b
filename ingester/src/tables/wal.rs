//! `wal_samples` (instance-wide counters of checkpoints, the background writer, WAL and the
//! archiver) and `io_samples` (`pg_stat_io`), both cumulative as the server reports them.

use pgmon_contract::event::{IoRow, SnapshotKind, WalRow};

use super::{column, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const WAL_SAMPLES: Table = Table {
    name: "wal_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("checkpoints_timed", "BIGINT", Source::Field("checkpoints_timed")),
        column("checkpoints_requested", "BIGINT", Source::Field("checkpoints_requested")),
        column("checkpoint_write_time_ms", "DOUBLE", Source::Field("checkpoint_write_time_ms")),
        column("checkpoint_sync_time_ms", "DOUBLE", Source::Field("checkpoint_sync_time_ms")),
        column("buffers_checkpoint", "BIGINT", Source::Field("buffers_checkpoint")),
        column("buffers_clean", "BIGINT", Source::Field("buffers_clean")),
        column("buffers_backend", "BIGINT", Source::Field("buffers_backend")),
        column("maxwritten_clean", "BIGINT", Source::Field("maxwritten_clean")),
        column("buffers_alloc", "BIGINT", Source::Field("buffers_alloc")),
        column("wal_position_bytes", "BIGINT", Source::Field("wal_position_bytes")),
        column("wal_records", "BIGINT", Source::Field("wal_records")),
        column("wal_full_page_images", "BIGINT", Source::Field("wal_full_page_images")),
        column("wal_bytes", "BIGINT", Source::Field("wal_bytes")),
        column("wal_buffers_full", "BIGINT", Source::Field("wal_buffers_full")),
        column("archived_count", "BIGINT", Source::Field("archived_count")),
        column("archive_failed_count", "BIGINT", Source::Field("archive_failed_count")),
        column("last_failed_wal", "VARCHAR", Source::Field("last_failed_wal")),
        column("last_archive_failure", "TIMESTAMP", Source::Field("last_archive_failure_us")),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Wal],
        batch: |snapshots| sample_rows_batch::<WalRow>(&WAL_SAMPLES, &snapshots_of(snapshots)),
        sample_rows: true,
    },
};

pub(crate) const IO_SAMPLES: Table = Table {
    name: "io_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("backend_type", "VARCHAR", Source::Field("backend_type")),
        column("object", "VARCHAR", Source::Field("object")),
        column("context", "VARCHAR", Source::Field("context")),
        column("reads", "BIGINT", Source::Field("reads")),
        column("read_bytes", "BIGINT", Source::Field("read_bytes")),
        column("writes", "BIGINT", Source::Field("writes")),
        column("write_bytes", "BIGINT", Source::Field("write_bytes")),
        column("extends", "BIGINT", Source::Field("extends")),
        column("hits", "BIGINT", Source::Field("hits")),
        column("evictions", "BIGINT", Source::Field("evictions")),
        column("fsyncs", "BIGINT", Source::Field("fsyncs")),
        column("read_time_ms", "DOUBLE", Source::Field("read_time_ms")),
        column("write_time_ms", "DOUBLE", Source::Field("write_time_ms")),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Io],
        batch: |snapshots| sample_rows_batch::<IoRow>(&IO_SAMPLES, &snapshots_of(snapshots)),
        sample_rows: true,
    },
};
