//! `setting_samples`: every settings snapshot whole (start time, version, settings that differ
//! from their defaults, extensions); a snapshot is published only when something changed, so
//! consecutive snapshots of a target give its change timeline.

use pgmon_contract::event::{SettingRow, SnapshotKind};

use super::{column, sample_rows_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const SETTING_SAMPLES: Table = Table {
    name: "setting_samples",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("category", "VARCHAR", Source::Field("category")),
        column("name", "VARCHAR", Source::Field("name")),
        column("value", "VARCHAR", Source::Field("value")),
        column("source", "VARCHAR", Source::Field("source")),
        column("pending_restart", "BOOLEAN", Source::Field("pending_restart")),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Settings],
        batch: |snapshots| sample_rows_batch::<SettingRow>(&SETTING_SAMPLES, &snapshots_of(snapshots)),
        sample_rows: true,
    },
};
