//! Compaction of a partition as it closes: its rows are rewritten into a fresh file, sorted so
//! that the values of one backend (or statement entry, or object) sit next to each other, which
//! is what DuckDB's column compression (run-length, delta and bit packing) feeds on.
//!
//! Rows arrive one snapshot at a time, so in the open partition consecutive rows belong to
//! different backends and a backend's unchanged start time or user name is stored again in
//! every row. Sorted by backend, they become runs. A time range then reads the target's whole
//! partition instead of the row groups of that range: a few million rows a day per target,
//! scanned in milliseconds.

use std::path::{Path, PathBuf};

use duckdb::Connection;

use super::catalog::{attach_statement, remove_files, Access};
use super::error::StoreError;
use super::migrations::migrate;
use super::partitions::Partition;
use crate::tables::Compaction;

/// Whether `alias` (an attached partition of the latest schema) was compacted already.
pub(crate) fn is_compacted(connection: &Connection, alias: &str, path: &Path) -> Result<bool, StoreError> {
    connection
        .query_row(&format!("SELECT count(*) > 0 FROM {alias}.compactions"), [], |row| row.get(0))
        .map_err(|source| compaction_error(path, source))
}

/// Rewrites the attached partition into a compacted file that replaces it, and detaches it.
/// A crash leaves either the partition as it was (and a staging file that [`remove_staging`]
/// deletes) or the compacted one: the rename is the only step that changes the partition.
pub(crate) fn compact(connection: &Connection, partition: &Partition) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let source = partition.alias();
    let staged = staged(partition);
    remove_staging(partition)?;
    let target = format!("compacting_{source}");
    let error = |error| compaction_error(&partition.path, error);
    connection
        .execute_batch(&attach_statement(&staged.path, &target, Access::Compacted))
        .map_err(error)?;
    migrate(connection, &target, &staged.path)?;
    let tables: Vec<String> = connection
        .prepare("SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' AND table_name NOT IN ('schema_migrations', 'compactions')")
        .and_then(|mut statement| statement.query_map([&source], |row| row.get(0))?.collect())
        .map_err(error)?;
    let mut copy = String::from("BEGIN TRANSACTION;\n");
    copy.push_str(&format!(
        "DELETE FROM {target}.schema_migrations;\nINSERT INTO {target}.schema_migrations SELECT * FROM {source}.schema_migrations;\n"
    ));
    for table in &tables {
        copy.push_str(&copy_sql(table, &source, &target));
    }
    copy.push_str(&format!(
        "INSERT INTO {target}.compactions VALUES (now()::TIMESTAMP);\nCOMMIT;\nCHECKPOINT {target};"
    ));
    if let Err(failure) = connection.execute_batch(&copy) {
        // The partition stays as it was, attached; the next start tries again.
        let _ = connection.execute_batch("ROLLBACK");
        let _ = connection.execute_batch(&format!("DETACH IF EXISTS {target}"));
        remove_staging(partition)?;
        return Err(error(failure));
    }
    connection
        .execute_batch(&format!("DETACH {target}; DETACH {source};"))
        .map_err(error)?;
    let before = file_bytes(&partition.path);
    // The partition was checkpointed before compaction, so a log should not exist; were one
    // left, DuckDB would replay it onto the compacted file, whose rows already include it.
    let [_, write_ahead_log] = partition.files();
    if write_ahead_log.exists() {
        std::fs::remove_file(&write_ahead_log).map_err(|source| StoreError::Files {
            action: "delete",
            path: write_ahead_log.clone(),
            source,
        })?;
    }
    std::fs::rename(&staged.path, &partition.path).map_err(|source| StoreError::Files {
        action: "replace with its compacted file",
        path: partition.path.clone(),
        source,
    })?;
    tracing::info!(
        partition = %partition.path.display(),
        bytes_before = before,
        bytes_after = file_bytes(&partition.path),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compacted partition"
    );
    Ok(())
}

/// Deletes what an interrupted compaction of `partition` left behind.
pub(crate) fn remove_staging(partition: &Partition) -> Result<(), StoreError> {
    remove_files(&staged(partition))
}

/// The file a partition is compacted into before it replaces the partition in one rename.
fn staged(partition: &Partition) -> Partition {
    let mut path = partition.path.clone().into_os_string();
    path.push(".compacting");
    Partition {
        start: partition.start,
        path: PathBuf::from(path),
    }
}

/// Copies `table` into the compacted file in the order its declaration asks for (tables
/// without one, such as `ingest_progress`, as they are).
fn copy_sql(table: &str, source: &str, target: &str) -> String {
    let plain_copy = |order: &str| format!("INSERT INTO {target}.{table} BY NAME SELECT * FROM {source}.{table}{order};\n");
    match crate::tables::table_named(table).map(|declared| declared.compaction) {
        Some(Compaction::Rewritten(statement)) => statement(source, target),
        Some(Compaction::SortedBy(keys)) => plain_copy(&format!(" ORDER BY {keys}")),
        Some(Compaction::ArrivalOrder) | None => plain_copy(""),
    }
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

fn compaction_error(path: &Path, source: duckdb::Error) -> StoreError {
    StoreError::Compact {
        path: path.to_owned(),
        source,
    }
}
