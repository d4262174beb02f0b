//! `database_samples` (pg_stat_database per database, counters since their reset) and
//! `instance_samples` (the instance's start time, connection limit and settings, carried by
//! the database snapshots that have them).

use std::sync::Arc;

use duckdb::arrow::array::{Int32Builder, StringBuilder, TimestampMicrosecondBuilder};
use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, DatabaseRow, Snapshot, SnapshotKind};

use super::{column, record_batch, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const DATABASE_SAMPLES: Table = Table {
    name: "database_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("database", "VARCHAR", Source::Field("database")),
        column("backends", "INTEGER", Source::Field("backends")),
        column("xact_commit", "BIGINT", Source::Field("xact_commit")),
        column("xact_rollback", "BIGINT", Source::Field("xact_rollback")),
        column("blks_read", "BIGINT", Source::Field("blks_read")),
        column("blks_hit", "BIGINT", Source::Field("blks_hit")),
        column("tup_returned", "BIGINT", Source::Field("tup_returned")),
        column("tup_fetched", "BIGINT", Source::Field("tup_fetched")),
        column("tup_inserted", "BIGINT", Source::Field("tup_inserted")),
        column("tup_updated", "BIGINT", Source::Field("tup_updated")),
        column("tup_deleted", "BIGINT", Source::Field("tup_deleted")),
        column("conflicts", "BIGINT", Source::Field("conflicts")),
        column("temp_files", "BIGINT", Source::Field("temp_files")),
        column("temp_bytes", "BIGINT", Source::Field("temp_bytes")),
        column("deadlocks", "BIGINT", Source::Field("deadlocks")),
        column("checksum_failures", "BIGINT", Source::Field("checksum_failures")),
        column("blk_read_time_ms", "DOUBLE", Source::Field("blk_read_time_ms")),
        column("blk_write_time_ms", "DOUBLE", Source::Field("blk_write_time_ms")),
        column("session_time_ms", "DOUBLE", Source::Field("session_time_ms")),
        column("active_time_ms", "DOUBLE", Source::Field("active_time_ms")),
        column(
            "idle_in_transaction_time_ms",
            "DOUBLE",
            Source::Field("idle_in_transaction_time_ms"),
        ),
        column("sessions", "BIGINT", Source::Field("sessions")),
        column("sessions_abandoned", "BIGINT", Source::Field("sessions_abandoned")),
        column("sessions_fatal", "BIGINT", Source::Field("sessions_fatal")),
        column("sessions_killed", "BIGINT", Source::Field("sessions_killed")),
        column("stats_reset", "TIMESTAMP", Source::Field("stats_reset_us")),
        column("frozen_xid_age", "BIGINT", Source::Field("frozen_xid_age")),
        column("frozen_multixact_age", "BIGINT", Source::Field("frozen_multixact_age")),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Database],
        batch,
        sample_rows: true,
    },
};

pub(crate) const INSTANCE_SAMPLES: Table = Table {
    name: "instance_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("server_version_num", "INTEGER", Source::Computed),
        column("started_at", "TIMESTAMP", Source::Computed),
        column("max_connections", "INTEGER", Source::Computed),
        column("settings_json", "VARCHAR", Source::Computed),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Database],
        batch: |snapshots| instance_batch(&snapshots_of(snapshots)),
        sample_rows: false,
    },
};

fn batch(snapshots: &[(u64, &AnySnapshot)]) -> RecordBatch {
    sample_rows_batch::<DatabaseRow>(&DATABASE_SAMPLES, &snapshots_of(snapshots))
}

/// Rows of `instance_samples`: one per database snapshot that carries instance facts.
fn instance_batch(snapshots: &[(u64, &Snapshot<DatabaseRow>)]) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut server_version_num = Int32Builder::new();
    let mut started_at = TimestampMicrosecondBuilder::new();
    let mut max_connections = Int32Builder::new();
    let mut settings_json = StringBuilder::new();
    for (_, snapshot) in snapshots {
        let Some(instance) = &snapshot.instance else { continue };
        target.append_value(snapshot.target.as_str());
        collected_at.append_value(snapshot.collected_at_us);
        server_version_num.append_value(snapshot.server.server_version_num);
        started_at.append_value(instance.started_at_us);
        max_connections.append_value(instance.max_connections);
        settings_json.append_value(serde_json::to_string(&instance.settings).expect("a string map always serialises"));
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("server_version_num", Arc::new(server_version_num.finish())),
        ("started_at", Arc::new(started_at.finish())),
        ("max_connections", Arc::new(max_connections.finish())),
        ("settings_json", Arc::new(settings_json.finish())),
    ])
}
