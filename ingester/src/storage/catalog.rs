//! The DuckDB instance the partitions are attached to: attaching and detaching them (read-write,
//! read-only, or as a compacted file, in pgmon's storage format), its empty typed tables, the
//! views across partitions, and reading everything while no ingester runs.

use std::path::Path;

use duckdb::Connection;

use super::error::{files_error, StoreError};
use super::migrations::migrate;
use super::partitions::{list_partitions, Partition};
use super::views::{derived_views_sql, union_views_sql};

/// Opens every partition of `data_dir` read-only, with the views across them, for tools and
/// tests that read while no ingester runs (the newest partition is locked while one does).
pub fn open_read_only(data_dir: &Path) -> Result<Connection, StoreError> {
    let connection = catalog_connection(data_dir)?;
    let partitions = list_partitions(data_dir).map_err(files_error("list", data_dir))?;
    for partition in &partitions {
        attach(&connection, partition, Access::ReadOnly)?;
    }
    connection
        .execute_batch(&format!(
            "{}{}",
            catalog_views_sql(&partitions, "CREATE VIEW"),
            derived_views_sql("CREATE VIEW")
        ))
        .map_err(StoreError::Reader)?;
    Ok(connection)
}

/// The views over `partitions` of an instance from [`catalog_connection`], on top of its empty
/// typed tables.
pub(crate) fn catalog_views_sql(partitions: &[Partition], create: &str) -> String {
    let sources: Vec<String> = std::iter::once("memory.empty".to_owned())
        .chain(partitions.iter().map(Partition::alias))
        .collect();
    union_views_sql(&sources, create)
}

/// An in-memory instance whose `memory.empty` schema holds empty tables of the latest schema:
/// the typed base of the views, so they exist before any partition does.
pub(crate) fn catalog_connection(data_dir: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_in_memory().map_err(|source| StoreError::Open {
        path: data_dir.to_owned(),
        source,
    })?;
    // Checkpoints compress what was appended since the last one; fewer, larger checkpoints
    // (DuckDB's default is every 16 MB of log) store activity in about a quarter less space and
    // store about 1.5 times as many rows per second, at the cost of a longer log replay after a
    // crash (measured by `cargo bench -p pgmon --bench storage`).
    connection
        .execute_batch("SET checkpoint_threshold = '256MB'; CREATE SCHEMA memory.empty")
        .map_err(|source| StoreError::Migrate { version: 0, source })?;
    migrate(&connection, "memory.empty", data_dir)?;
    Ok(connection)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    ReadWrite,
    ReadOnly,
    /// A new file that compaction fills once and closes: written with [`COMPACTED_BLOCK_SIZE`].
    Compacted,
}

/// The storage format of the files pgmon writes: DuckDB 1.5's, whose compression stores
/// activity in about 5% less space than the default (the oldest format DuckDB 1.x still reads);
/// the files then open in DuckDB 1.5 or newer, the version pgmon ships with.
const STORAGE_VERSION: &str = "v1.5.0";

/// The block size of compacted partitions. DuckDB stores a column's segment of a row group in
/// blocks shared with other segments; with its default 256 KiB blocks, segments of 128 to
/// 256 KiB (a bit-packed column of 9 to 16 bits per value, 122,880 values) each take a block of
/// their own, half empty. 64 KiB blocks leave little of that slack: 8% fewer bytes per activity
/// row in the storage benchmark. Smaller blocks (16 and 32 KiB) multiply the segments and take
/// three times the space. Files keep their block size; DuckDB reads it from their header.
const COMPACTED_BLOCK_SIZE: u32 = 65_536;

/// The statement attaching the DuckDB file `path` as `alias`.
pub(crate) fn attach_statement(path: &Path, alias: &str, access: Access) -> String {
    let options = match access {
        Access::ReadOnly => "READ_ONLY".to_owned(),
        Access::ReadWrite => format!("STORAGE_VERSION '{STORAGE_VERSION}'"),
        Access::Compacted => format!("STORAGE_VERSION '{STORAGE_VERSION}', BLOCK_SIZE {COMPACTED_BLOCK_SIZE}"),
    };
    let path = path.display().to_string().replace('\'', "''");
    format!("ATTACH '{path}' AS {alias} ({options})")
}

/// Attaches a partition (creating the file when writable); a writable one is migrated.
pub(crate) fn attach(connection: &Connection, partition: &Partition, access: Access) -> Result<(), StoreError> {
    connection
        .execute_batch(&attach_statement(&partition.path, &partition.alias(), access))
        .map_err(|source| StoreError::Open {
            path: partition.path.clone(),
            source,
        })?;
    if access == Access::ReadWrite {
        migrate(connection, &partition.alias(), &partition.path)?;
    }
    Ok(())
}

pub(crate) fn detach(connection: &Connection, partition: &Partition) -> Result<(), StoreError> {
    connection
        .execute_batch(&format!("DETACH {}", partition.alias()))
        .map_err(|source| StoreError::Close {
            path: partition.path.clone(),
            source,
        })
}

/// Deletes a partition's files; those already gone are fine.
pub(crate) fn remove_files(partition: &Partition) -> Result<(), StoreError> {
    for file in partition.files() {
        match std::fs::remove_file(&file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(files_error("delete", &file)(error)),
            _ => {}
        }
    }
    Ok(())
}
