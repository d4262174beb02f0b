//! `replication_samples` (the standbys of a server and, on a standby, its own replay, with
//! their lag) and `slot_samples` (replication slots and the WAL they hold back).

use pgmon_contract::event::{ReplicationRow, SlotRow, SnapshotKind};

use super::{column, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const REPLICATION_SAMPLES: Table = Table {
    name: "replication_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("role", "VARCHAR", Source::Field("role")),
        column("name", "VARCHAR", Source::Field("name")),
        column("client_addr", "VARCHAR", Source::Field("client_addr")),
        column("state", "VARCHAR", Source::Field("state")),
        column("sync_state", "VARCHAR", Source::Field("sync_state")),
        column("replay_lag_bytes", "BIGINT", Source::Field("replay_lag_bytes")),
        column("write_lag_bytes", "BIGINT", Source::Field("write_lag_bytes")),
        column("flush_lag_bytes", "BIGINT", Source::Field("flush_lag_bytes")),
        column("write_lag_ms", "DOUBLE", Source::Field("write_lag_ms")),
        column("flush_lag_ms", "DOUBLE", Source::Field("flush_lag_ms")),
        column("replay_lag_ms", "DOUBLE", Source::Field("replay_lag_ms")),
        column("replay_paused", "BOOLEAN", Source::Field("replay_paused")),
        column("slot_name", "VARCHAR", Source::Field("slot_name")),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Replication],
        batch: |snapshots| sample_rows_batch::<ReplicationRow>(&REPLICATION_SAMPLES, &snapshots_of(snapshots)),
        sample_rows: true,
    },
};

pub(crate) const SLOT_SAMPLES: Table = Table {
    name: "slot_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("slot_name", "VARCHAR", Source::Field("slot_name")),
        column("slot_type", "VARCHAR", Source::Field("slot_type")),
        column("plugin", "VARCHAR", Source::Field("plugin")),
        column("database", "VARCHAR", Source::Field("database")),
        column("temporary", "BOOLEAN", Source::Field("temporary")),
        column("active", "BOOLEAN", Source::Field("active")),
        column("active_pid", "INTEGER", Source::Field("active_pid")),
        column("retained_bytes", "BIGINT", Source::Field("retained_bytes")),
        column("wal_status", "VARCHAR", Source::Field("wal_status")),
        column("safe_wal_size", "BIGINT", Source::Field("safe_wal_size")),
        column("inactive_since", "TIMESTAMP", Source::Field("inactive_since_us")),
        column("conflicting", "BOOLEAN", Source::Field("conflicting")),
        column("invalidation_reason", "VARCHAR", Source::Field("invalidation_reason")),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Slots],
        batch: |snapshots| sample_rows_batch::<SlotRow>(&SLOT_SAMPLES, &snapshots_of(snapshots)),
        sample_rows: true,
    },
};
