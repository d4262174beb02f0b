//! Adoption of the single `pgmon.duckdb` of pgmon versions before time partitions: it becomes
//! the partition of its newest row.

use std::path::Path;

use duckdb::Connection;

use super::catalog::{attach, detach, Access};
use super::error::{files_error, StoreError};
use super::now_us;
use super::partitions::{Partition, PartitionPeriod};

/// The single file of pgmon versions before time partitions; adopted as a partition at start.
pub const LEGACY_DATABASE_FILE_NAME: &str = "pgmon.duckdb";

/// Moves the single file of an older pgmon into the partition of its newest row.
pub(crate) fn adopt_legacy_file(connection: &Connection, data_dir: &Path, period: PartitionPeriod) -> Result<(), StoreError> {
    let legacy = data_dir.join(LEGACY_DATABASE_FILE_NAME);
    if !legacy.exists() {
        return Ok(());
    }
    let legacy_partition = Partition {
        start: 0,
        path: legacy.clone(),
    };
    attach(connection, &legacy_partition, Access::ReadWrite)?;
    let alias = legacy_partition.alias();
    let newest_sql = crate::tables::TABLES
        .iter()
        .filter(|table| table.has_column("collected_at"))
        .map(|table| format!("SELECT max(collected_at) AS newest FROM {alias}.{}", table.read_as()))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let newest_us: Option<i64> = connection
        .query_row(&format!("SELECT epoch_us(max(newest)) FROM ({newest_sql})"), [], |row| row.get(0))
        .map_err(StoreError::ReadProgress)?;
    detach(connection, &legacy_partition)?;
    let partition = Partition::new(data_dir, period.start_of(newest_us.unwrap_or_else(now_us)));
    if partition.path.exists() {
        return Err(StoreError::LegacyConflict {
            legacy,
            partition: partition.path,
        });
    }
    for (from, to) in legacy_partition.files().iter().zip(partition.files()) {
        if from.exists() {
            std::fs::rename(from, &to).map_err(files_error("move", from))?;
        }
    }
    tracing::info!(from = %legacy.display(), to = %partition.path.display(), "adopted the single file of an older pgmon as a partition");
    Ok(())
}
