//! Appending a batch's snapshots to the tables of the open partition, through the DuckDB
//! Appender, building the Arrow batches of the largest tables on a second thread.

use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use pgmon_contract::event::AnySnapshot;

use super::error::StoreError;
use crate::tables::{Table, TABLES};

/// Appends the rows of `snapshots` to every table that stores their kinds, in the partition
/// `alias` (in the caller's transaction); objects that could not be measured then get their
/// last sizes from `sources`, the partitions newest first. Returns how many sample rows it
/// appended.
pub(crate) fn append_snapshots(
    connection: &Connection,
    alias: &str,
    snapshots: &[(u64, &AnySnapshot)],
    sources: &[String],
) -> Result<usize, StoreError> {
    let mut rows = 0;
    for table in TABLES {
        let stored: Vec<(u64, &AnySnapshot)> = snapshots
            .iter()
            .filter(|(_, snapshot)| table.stores.kinds.contains(&snapshot.kind()))
            .copied()
            .collect();
        if stored.is_empty() {
            continue;
        }
        let table_ref = TableRef { catalog: alias, table };
        if table.stores.sample_rows {
            rows += append_built_alongside(connection, table_ref, &stored, table.stores.batch)?;
        } else {
            append(connection, table_ref, (table.stores.batch)(&stored))?;
        }
    }
    for (_, snapshot) in snapshots {
        if let AnySnapshot::Objects(objects) = snapshot {
            super::stale_sizes::fill_in(connection, alias, sources, objects)?;
        }
    }
    Ok(rows)
}

/// A table in one attached partition.
#[derive(Clone, Copy)]
struct TableRef<'a> {
    catalog: &'a str,
    table: &'static Table,
}

impl TableRef<'_> {
    fn appender<'c>(&self, connection: &'c Connection) -> Result<duckdb::Appender<'c>, StoreError> {
        connection
            .appender_to_catalog_and_db(self.table.name, self.catalog, "main")
            .map_err(StoreError::Write)
    }
}

/// Builds the record batch of some snapshots' rows (a table's `stores.batch`).
type RowsBuilder = fn(&[(u64, &AnySnapshot)]) -> RecordBatch;

/// Rows per record batch when a batch's rows are built on a second thread.
const ROWS_PER_CHUNK: usize = 10_000;

/// Appends the rows of `snapshots` to `table`, built by `build` in chunks of about
/// [`ROWS_PER_CHUNK`] rows on a second thread while this one appends the chunk before: storing
/// is the ingester's one serial step, and the core that decodes is otherwise idle while it
/// runs (measured by `cargo bench -p pgmon --bench storage`). Returns how many rows it appended.
fn append_built_alongside(
    connection: &Connection,
    table: TableRef,
    snapshots: &[(u64, &AnySnapshot)],
    build: RowsBuilder,
) -> Result<usize, StoreError> {
    let chunks = chunks_of_rows(snapshots, ROWS_PER_CHUNK);
    match chunks.as_slice() {
        [] => Ok(0),
        [only] => append(connection, table, build(only)),
        _ => std::thread::scope(|scope| {
            let (built_sender, built_receiver) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || {
                for chunk in chunks {
                    // A closed channel: appending failed and the batch is abandoned.
                    if built_sender.send(build(chunk)).is_err() {
                        break;
                    }
                }
            });
            let mut appender = table.appender(connection)?;
            let mut row_count = 0;
            for rows in built_receiver {
                row_count += rows.num_rows();
                appender.append_record_batch(rows).map_err(StoreError::Write)?;
            }
            appender.flush().map_err(StoreError::Write)?;
            Ok(row_count)
        }),
    }
}

/// `snapshots` cut into runs of at least `rows` rows each (the last one may hold fewer).
fn chunks_of_rows<'s, 'a>(snapshots: &'s [(u64, &'a AnySnapshot)], rows: usize) -> Vec<&'s [(u64, &'a AnySnapshot)]> {
    let mut chunks = Vec::new();
    let mut chunk_start = 0;
    let mut chunk_rows = 0;
    for (index, (_, snapshot)) in snapshots.iter().enumerate() {
        chunk_rows += snapshot.row_count();
        if chunk_rows >= rows {
            chunks.push(&snapshots[chunk_start..=index]);
            chunk_start = index + 1;
            chunk_rows = 0;
        }
    }
    if chunk_start < snapshots.len() {
        chunks.push(&snapshots[chunk_start..]);
    }
    chunks
}

/// Appends a record batch to `table`; returns how many rows it held.
fn append(connection: &Connection, table: TableRef, rows: RecordBatch) -> Result<usize, StoreError> {
    let row_count = rows.num_rows();
    let mut appender = table.appender(connection)?;
    appender.append_record_batch(rows).map_err(StoreError::Write)?;
    appender.flush().map_err(StoreError::Write)?;
    Ok(row_count)
}

pub(crate) fn record_progress(connection: &Connection, catalog: &str, stream: &str, sequence: u64) -> duckdb::Result<usize> {
    connection.execute(
        &format!(
            "INSERT INTO {catalog}.ingest_progress (stream, last_sequence) VALUES (?, ?)
             ON CONFLICT (stream) DO UPDATE SET last_sequence = excluded.last_sequence"
        ),
        duckdb::params![stream, sequence],
    )
}
