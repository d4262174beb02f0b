//! Appending a batch's snapshots to the tables of the open partition, through the DuckDB
//! Appender, building the Arrow batches of the largest tables on a second thread.

use duckdb::Connection;
use pgmon_contract::event::{AnySnapshot, Snapshot};

use super::error::StoreError;
use crate::tables::{activity, activity_minutes, database, locks, objects, parts, statements, status, Table};

/// Appends the rows of `kinds` to their tables in the partition `alias` (in the caller's
/// transaction); objects that could not be measured get their last sizes from `sources`, the
/// partitions newest first. Returns how many sample rows it appended.
pub(crate) fn append_snapshots(connection: &Connection, alias: &str, kinds: &KindBatches, sources: &[String]) -> Result<usize, StoreError> {
    let mut rows = 0;
    let table = |table: &'static Table| TableRef { catalog: alias, table };
    if !kinds.activity.is_empty() {
        append(
            connection,
            table(&activity::ACTIVITY_SNAPSHOTS),
            activity::snapshots_batch(&kinds.activity),
        )?;
        rows += append_built_alongside(
            connection,
            table(&activity::ACTIVITY_SAMPLE_ROWS),
            &kinds.activity,
            activity::sample_rows_batch,
        )?;
        append(
            connection,
            table(&activity_minutes::ACTIVITY_MINUTES),
            activity_minutes::batch(&kinds.activity),
        )?;
    }
    rows += append_built_alongside(connection, table(&locks::LOCK_SAMPLES), &kinds.locks, locks::batch)?;
    if !kinds.database.is_empty() {
        append(
            connection,
            table(&database::INSTANCE_SAMPLES),
            database::instance_batch(&kinds.database),
        )?;
    }
    rows += append_built_alongside(connection, table(&database::DATABASE_SAMPLES), &kinds.database, database::batch)?;
    rows += append_built_alongside(connection, table(&status::TARGET_STATUS), &kinds.status, status::batch)?;
    rows += append_in_parts(
        connection,
        table(&statements::STATEMENT_SAMPLES),
        &kinds.statements,
        statements::batch,
    )?;
    if !kinds.statements.is_empty() {
        append(
            connection,
            table(&statements::STATEMENT_TEXT_COPIES),
            statements::texts_batch(&kinds.statements),
        )?;
    }
    rows += append_in_parts(connection, table(&objects::OBJECT_SAMPLES), &kinds.objects, objects::batch)?;
    if !kinds.objects.is_empty() {
        for (_, snapshot) in &kinds.objects {
            super::stale_sizes::fill_in(connection, alias, sources, snapshot)?;
        }
    }
    Ok(rows)
}

/// The snapshots of one run of a batch, by kind, with their stream sequences.
#[derive(Default)]
pub(crate) struct KindBatches<'a> {
    pub activity: Vec<(u64, &'a Snapshot<pgmon_contract::event::ActivityRow>)>,
    pub locks: Vec<(u64, &'a Snapshot<pgmon_contract::event::LockRow>)>,
    pub database: Vec<(u64, &'a Snapshot<pgmon_contract::event::DatabaseRow>)>,
    pub status: Vec<(u64, &'a Snapshot<pgmon_contract::event::StatusRow>)>,
    pub statements: Vec<(u64, &'a Snapshot<pgmon_contract::event::StatementRow>)>,
    pub objects: Vec<(u64, &'a Snapshot<pgmon_contract::event::ObjectRow>)>,
}

impl<'a> KindBatches<'a> {
    pub(crate) fn push(&mut self, sequence: u64, snapshot: &'a AnySnapshot) {
        match snapshot {
            AnySnapshot::Activity(snapshot) => self.activity.push((sequence, snapshot)),
            AnySnapshot::Locks(snapshot) => self.locks.push((sequence, snapshot)),
            AnySnapshot::Database(snapshot) => self.database.push((sequence, snapshot)),
            AnySnapshot::Status(snapshot) => self.status.push((sequence, snapshot)),
            AnySnapshot::Statements(snapshot) => self.statements.push((sequence, snapshot)),
            AnySnapshot::Objects(snapshot) => self.objects.push((sequence, snapshot)),
        }
    }
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

/// Appends the rows of a kind whose snapshots may come in parts, and which parts arrived.
fn append_in_parts<Row: Sync>(
    connection: &Connection,
    table: TableRef,
    snapshots: &[(u64, &Snapshot<Row>)],
    build: RowsBuilder<Row>,
) -> Result<usize, StoreError> {
    if snapshots.is_empty() {
        return Ok(0);
    }
    let parts_table = TableRef {
        table: &parts::SNAPSHOT_PARTS,
        ..table
    };
    append(connection, parts_table, parts::batch(snapshots))?;
    append_built_alongside(connection, table, snapshots, build)
}

/// Builds the record batch of some snapshots' rows (the `batch` functions of `tables`).
type RowsBuilder<Row> = fn(&[(u64, &Snapshot<Row>)]) -> duckdb::arrow::record_batch::RecordBatch;

/// Rows per record batch when a batch's rows are built on a second thread.
const ROWS_PER_CHUNK: usize = 10_000;

/// Appends the rows of `snapshots` to `table`, built by `build` in chunks of about
/// [`ROWS_PER_CHUNK`] rows on a second thread while this one appends the chunk before: storing
/// is the ingester's one serial step, and the core that decodes is otherwise idle while it
/// runs (measured by `cargo bench -p pgmon --bench storage`). Returns how many rows it appended.
fn append_built_alongside<Row: Sync>(
    connection: &Connection,
    table: TableRef,
    snapshots: &[(u64, &Snapshot<Row>)],
    build: RowsBuilder<Row>,
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
fn chunks_of_rows<'s, 'a, Row>(snapshots: &'s [(u64, &'a Snapshot<Row>)], rows: usize) -> Vec<&'s [(u64, &'a Snapshot<Row>)]> {
    let mut chunks = Vec::new();
    let mut chunk_start = 0;
    let mut chunk_rows = 0;
    for (index, (_, snapshot)) in snapshots.iter().enumerate() {
        chunk_rows += snapshot.rows.len();
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
fn append(connection: &Connection, table: TableRef, rows: duckdb::arrow::record_batch::RecordBatch) -> Result<usize, StoreError> {
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
