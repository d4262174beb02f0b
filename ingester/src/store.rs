//! The DuckDB file the ingester owns: schema migrations, exactly-once batch application, readers.
//!
//! Exactly-once effect: the last applied stream sequence is stored in the same transaction as
//! the rows, and snapshots at or below it are skipped, so a batch redelivered after a crash
//! (it was committed but not yet acknowledged) is not stored twice.

use std::path::{Path, PathBuf};

use duckdb::Connection;
use pgmon_common::event::{ActivityRow, DatabaseRow, LockRow, ObjectRow, Snapshot, StatementRow, StatusRow};

use crate::arrow_rows::{activity_snapshots_batch, instance_rows_batch, sample_rows_batch, snapshot_parts_batch};

/// The file name of the database inside the data directory.
pub const DATABASE_FILE_NAME: &str = "pgmon.duckdb";

/// Ordered schema migrations; an entry is never edited once released, only new ones appended.
///
/// All TIMESTAMP columns hold UTC.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE activity_snapshots (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         stream_sequence UBIGINT NOT NULL,
         server_version_num INTEGER NOT NULL,
         system_identifier VARCHAR,
         row_count INTEGER NOT NULL
     );
     CREATE TABLE activity_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         pid INTEGER NOT NULL,
         database VARCHAR,
         user_name VARCHAR,
         application VARCHAR,
         client_addr VARCHAR,
         backend_type VARCHAR,
         state VARCHAR,
         wait_event_type VARCHAR,
         wait_event VARCHAR,
         query_id BIGINT,
         query VARCHAR,
         backend_start TIMESTAMP,
         xact_start TIMESTAMP,
         query_start TIMESTAMP,
         state_change TIMESTAMP,
         blocking_pids INTEGER[]
     );
     CREATE TABLE ingest_progress (
         stream VARCHAR PRIMARY KEY,
         last_sequence UBIGINT NOT NULL
     );",
    ),
    (
        2,
        "CREATE TABLE lock_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         pid INTEGER NOT NULL,
         lock_type VARCHAR NOT NULL,
         mode VARCHAR NOT NULL,
         granted BOOLEAN NOT NULL,
         database VARCHAR,
         relation VARCHAR,
         page INTEGER,
         tuple INTEGER,
         virtual_xid VARCHAR,
         transaction_id VARCHAR,
         waiting_since TIMESTAMP,
         blocked_by INTEGER[]
     );",
    ),
    (
        3,
        "CREATE TABLE database_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         database VARCHAR NOT NULL,
         backends INTEGER NOT NULL,
         xact_commit BIGINT NOT NULL,
         xact_rollback BIGINT NOT NULL,
         blks_read BIGINT NOT NULL,
         blks_hit BIGINT NOT NULL,
         tup_returned BIGINT NOT NULL,
         tup_fetched BIGINT NOT NULL,
         tup_inserted BIGINT NOT NULL,
         tup_updated BIGINT NOT NULL,
         tup_deleted BIGINT NOT NULL,
         conflicts BIGINT NOT NULL,
         temp_files BIGINT NOT NULL,
         temp_bytes BIGINT NOT NULL,
         deadlocks BIGINT NOT NULL,
         checksum_failures BIGINT,
         blk_read_time_ms DOUBLE NOT NULL,
         blk_write_time_ms DOUBLE NOT NULL,
         session_time_ms DOUBLE,
         active_time_ms DOUBLE,
         idle_in_transaction_time_ms DOUBLE,
         sessions BIGINT,
         sessions_abandoned BIGINT,
         sessions_fatal BIGINT,
         sessions_killed BIGINT,
         stats_reset TIMESTAMP
     );
     CREATE TABLE instance_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         server_version_num INTEGER NOT NULL,
         started_at TIMESTAMP NOT NULL,
         max_connections INTEGER NOT NULL,
         settings_json VARCHAR NOT NULL
     );",
    ),
    (
        4,
        "CREATE TABLE target_status (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         state VARCHAR NOT NULL,
         reason VARCHAR,
         message VARCHAR,
         since TIMESTAMP NOT NULL
     );",
    ),
    (
        5,
        "ALTER TABLE target_status ADD COLUMN limitations STRUCT(kind VARCHAR, reason VARCHAR, message VARCHAR)[];
     CREATE TABLE snapshot_parts (
         target VARCHAR NOT NULL,
         kind VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         stream_sequence UBIGINT NOT NULL,
         part_index INTEGER NOT NULL,
         part_count INTEGER NOT NULL,
         row_count INTEGER NOT NULL,
         statements_dealloc BIGINT,
         statements_stats_reset TIMESTAMP
     );
     CREATE TABLE statement_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         database VARCHAR NOT NULL,
         user_name VARCHAR NOT NULL,
         query_id BIGINT NOT NULL,
         toplevel BOOLEAN,
         query VARCHAR,
         calls BIGINT NOT NULL,
         total_exec_time_ms DOUBLE NOT NULL,
         min_exec_time_ms DOUBLE NOT NULL,
         max_exec_time_ms DOUBLE NOT NULL,
         mean_exec_time_ms DOUBLE NOT NULL,
         stddev_exec_time_ms DOUBLE NOT NULL,
         plans BIGINT NOT NULL,
         total_plan_time_ms DOUBLE NOT NULL,
         rows BIGINT NOT NULL,
         shared_blks_hit BIGINT NOT NULL,
         shared_blks_read BIGINT NOT NULL,
         shared_blks_dirtied BIGINT NOT NULL,
         shared_blks_written BIGINT NOT NULL,
         local_blks_hit BIGINT NOT NULL,
         local_blks_read BIGINT NOT NULL,
         local_blks_dirtied BIGINT NOT NULL,
         local_blks_written BIGINT NOT NULL,
         temp_blks_read BIGINT NOT NULL,
         temp_blks_written BIGINT NOT NULL,
         shared_blk_read_time_ms DOUBLE NOT NULL,
         shared_blk_write_time_ms DOUBLE NOT NULL,
         local_blk_read_time_ms DOUBLE,
         local_blk_write_time_ms DOUBLE,
         temp_blk_read_time_ms DOUBLE,
         temp_blk_write_time_ms DOUBLE,
         wal_records BIGINT NOT NULL,
         wal_fpi BIGINT NOT NULL,
         wal_bytes BIGINT NOT NULL,
         wal_buffers_full BIGINT,
         jit_functions BIGINT,
         jit_time_ms DOUBLE,
         parallel_workers_to_launch BIGINT,
         parallel_workers_launched BIGINT,
         stats_since TIMESTAMP
     );
     -- The text of each query id, sent once per collector run.
     CREATE VIEW statement_texts AS
         SELECT target, query_id, arg_max(query, collected_at) AS query, min(collected_at) AS first_seen
         FROM statement_samples WHERE query IS NOT NULL GROUP BY target, query_id;
     -- What each entry did between two samples. An entry counts from zero again after a reset of
     -- all statistics (stats_reset moved), after its own reset or eviction (stats_since moved, or
     -- a counter went down), so deltas are never negative. An entry first seen after the
     -- target's first sample counted from zero since then; in the first sample it has no delta.
     CREATE VIEW statement_deltas AS
         WITH info AS (
             SELECT target, collected_at, any_value(statements_stats_reset) AS stats_reset
             FROM snapshot_parts WHERE kind = 'statements' GROUP BY target, collected_at
         ),
         firsts AS (
             SELECT target, min(collected_at) AS first_collected_at FROM info GROUP BY target
         ),
         paired AS (
             SELECT s.*, i.stats_reset, f.first_collected_at,
                    lag(s.collected_at) OVER entry AS previous_collected_at,
                    lag(i.stats_reset) OVER entry AS previous_stats_reset,
                    lag(s.stats_since) OVER entry AS previous_stats_since,
                    lag(s.calls) OVER entry AS previous_calls,
                    lag(s.total_exec_time_ms) OVER entry AS previous_total_exec_time_ms,
                    lag(s.total_plan_time_ms) OVER entry AS previous_total_plan_time_ms,
                    lag(s.rows) OVER entry AS previous_rows,
                    lag(s.shared_blks_hit) OVER entry AS previous_shared_blks_hit,
                    lag(s.shared_blks_read) OVER entry AS previous_shared_blks_read,
                    lag(s.shared_blks_written) OVER entry AS previous_shared_blks_written,
                    lag(s.temp_blks_read) OVER entry AS previous_temp_blks_read,
                    lag(s.temp_blks_written) OVER entry AS previous_temp_blks_written,
                    lag(s.shared_blk_read_time_ms) OVER entry AS previous_shared_blk_read_time_ms,
                    lag(s.wal_bytes) OVER entry AS previous_wal_bytes
             FROM statement_samples s
             LEFT JOIN info i USING (target, collected_at)
             LEFT JOIN firsts f USING (target)
             WINDOW entry AS (PARTITION BY s.target, s.database, s.user_name, s.query_id, s.toplevel ORDER BY s.collected_at)
         ),
         classified AS (
             SELECT *,
                    CASE
                        WHEN previous_calls IS NULL THEN collected_at > first_collected_at
                        ELSE stats_reset IS DISTINCT FROM previous_stats_reset
                          OR stats_since IS DISTINCT FROM previous_stats_since
                          OR calls < previous_calls
                          OR total_exec_time_ms < previous_total_exec_time_ms
                    END AS counts_from_zero
             FROM paired
         )
         SELECT target, collected_at, previous_collected_at, database, user_name, query_id, toplevel, counts_from_zero,
                CASE WHEN counts_from_zero THEN calls WHEN previous_calls IS NOT NULL THEN calls - previous_calls END AS calls,
                CASE WHEN counts_from_zero THEN total_exec_time_ms WHEN previous_calls IS NOT NULL THEN total_exec_time_ms - previous_total_exec_time_ms END AS total_exec_time_ms,
                CASE WHEN counts_from_zero THEN total_plan_time_ms WHEN previous_calls IS NOT NULL THEN total_plan_time_ms - previous_total_plan_time_ms END AS total_plan_time_ms,
                CASE WHEN counts_from_zero THEN rows WHEN previous_calls IS NOT NULL THEN rows - previous_rows END AS rows,
                CASE WHEN counts_from_zero THEN shared_blks_hit WHEN previous_calls IS NOT NULL THEN shared_blks_hit - previous_shared_blks_hit END AS shared_blks_hit,
                CASE WHEN counts_from_zero THEN shared_blks_read WHEN previous_calls IS NOT NULL THEN shared_blks_read - previous_shared_blks_read END AS shared_blks_read,
                CASE WHEN counts_from_zero THEN shared_blks_written WHEN previous_calls IS NOT NULL THEN shared_blks_written - previous_shared_blks_written END AS shared_blks_written,
                CASE WHEN counts_from_zero THEN temp_blks_read WHEN previous_calls IS NOT NULL THEN temp_blks_read - previous_temp_blks_read END AS temp_blks_read,
                CASE WHEN counts_from_zero THEN temp_blks_written WHEN previous_calls IS NOT NULL THEN temp_blks_written - previous_temp_blks_written END AS temp_blks_written,
                CASE WHEN counts_from_zero THEN shared_blk_read_time_ms WHEN previous_calls IS NOT NULL THEN shared_blk_read_time_ms - previous_shared_blk_read_time_ms END AS shared_blk_read_time_ms,
                CASE WHEN counts_from_zero THEN wal_bytes WHEN previous_calls IS NOT NULL THEN wal_bytes - previous_wal_bytes END AS wal_bytes
         FROM classified;
     CREATE TABLE object_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         database VARCHAR NOT NULL,
         schema_name VARCHAR NOT NULL,
         name VARCHAR NOT NULL,
         kind VARCHAR NOT NULL,
         parent VARCHAR,
         total_bytes BIGINT NOT NULL,
         table_bytes BIGINT NOT NULL,
         index_bytes BIGINT NOT NULL,
         toast_bytes BIGINT NOT NULL,
         row_estimate BIGINT,
         last_vacuum TIMESTAMP,
         last_autovacuum TIMESTAMP,
         last_analyze TIMESTAMP,
         last_autoanalyze TIMESTAMP
     );",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDirectory { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: duckdb::Error },
    #[error("schema migration {version} failed: {source}")]
    Migrate { version: i32, source: duckdb::Error },
    #[error("{path} was written by a newer pgmon (schema version {found}, this one knows up to {known})")]
    NewerSchema { path: PathBuf, found: i32, known: i32 },
    #[error("cannot read the ingest progress: {0}")]
    ReadProgress(duckdb::Error),
    #[error("cannot store a batch: {0}")]
    Write(duckdb::Error),
    #[error("cannot open a reader connection: {0}")]
    Reader(duckdb::Error),
}

/// One decoded batch of the stream, in stream order.
#[derive(Default)]
pub struct IngestBatch {
    /// Usable snapshots with their stream sequence, by kind.
    pub activity: Vec<(u64, Snapshot<ActivityRow>)>,
    pub locks: Vec<(u64, Snapshot<LockRow>)>,
    pub database: Vec<(u64, Snapshot<DatabaseRow>)>,
    pub status: Vec<(u64, Snapshot<StatusRow>)>,
    pub statements: Vec<(u64, Snapshot<StatementRow>)>,
    pub objects: Vec<(u64, Snapshot<ObjectRow>)>,
    /// The highest stream sequence in the batch, dead-lettered messages included.
    pub last_sequence: u64,
}

impl IngestBatch {
    /// How many usable snapshots the batch holds, of every kind.
    pub fn snapshot_count(&self) -> usize {
        self.activity.len() + self.locks.len() + self.database.len() + self.status.len() + self.statements.len() + self.objects.len()
    }
}

/// What applying a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AppliedBatch {
    pub snapshots: usize,
    pub rows: usize,
    /// Snapshots skipped because an earlier run had already stored them.
    pub already_stored: usize,
}

pub struct Store {
    connection: Connection,
    stream: String,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path, stream: &str) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDirectory {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE_NAME);
        let connection = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        migrate(&connection, &path)?;
        Ok(Store {
            connection,
            stream: stream.to_owned(),
        })
    }

    /// The highest stream sequence whose effect is stored (0 when nothing is).
    pub fn last_applied_sequence(&self) -> Result<u64, StoreError> {
        read_last_sequence(&self.connection, &self.stream).map_err(StoreError::ReadProgress)
    }

    /// Stores a batch in one transaction together with its last sequence.
    pub fn apply(&mut self, batch: &IngestBatch) -> Result<AppliedBatch, StoreError> {
        let transaction = self.connection.transaction().map_err(StoreError::Write)?;
        let already_applied = read_last_sequence(&transaction, &self.stream).map_err(StoreError::Write)?;
        let activity = fresh(&batch.activity, already_applied);
        let locks = fresh(&batch.locks, already_applied);
        let database = fresh(&batch.database, already_applied);
        let status = fresh(&batch.status, already_applied);
        let statements = fresh(&batch.statements, already_applied);
        let objects = fresh(&batch.objects, already_applied);
        let fresh_snapshots = activity.len() + locks.len() + database.len() + status.len() + statements.len() + objects.len();
        let mut applied = AppliedBatch {
            snapshots: fresh_snapshots,
            already_stored: batch.snapshot_count() - fresh_snapshots,
            ..AppliedBatch::default()
        };
        if !activity.is_empty() {
            append(&transaction, "activity_snapshots", activity_snapshots_batch(&activity))?;
            applied.rows += append(&transaction, "activity_samples", sample_rows_batch(&activity))?;
        }
        if !locks.is_empty() {
            applied.rows += append(&transaction, "lock_samples", sample_rows_batch(&locks))?;
        }
        if !database.is_empty() {
            append(&transaction, "instance_samples", instance_rows_batch(&database))?;
            applied.rows += append(&transaction, "database_samples", sample_rows_batch(&database))?;
        }
        if !status.is_empty() {
            applied.rows += append(&transaction, "target_status", sample_rows_batch(&status))?;
        }
        applied.rows += append_in_parts(&transaction, "statement_samples", &statements)?;
        applied.rows += append_in_parts(&transaction, "object_samples", &objects)?;
        if batch.last_sequence > already_applied {
            transaction
                .execute(
                    "INSERT INTO ingest_progress (stream, last_sequence) VALUES (?, ?)
                     ON CONFLICT (stream) DO UPDATE SET last_sequence = excluded.last_sequence",
                    duckdb::params![self.stream, batch.last_sequence],
                )
                .map_err(StoreError::Write)?;
        }
        transaction.commit().map_err(StoreError::Write)?;
        Ok(applied)
    }

    /// A second connection to the same database for queries; it sees committed batches.
    pub fn reader(&self) -> Result<Connection, StoreError> {
        self.connection.try_clone().map_err(StoreError::Reader)
    }
}

/// The snapshots an earlier run has not stored yet.
fn fresh<Row>(snapshots: &[(u64, Snapshot<Row>)], already_applied: u64) -> Vec<(u64, &Snapshot<Row>)> {
    snapshots
        .iter()
        .filter(|(sequence, _)| *sequence > already_applied)
        .map(|(sequence, snapshot)| (*sequence, snapshot))
        .collect()
}

/// Appends the rows of a kind whose snapshots may come in parts, and which parts arrived.
fn append_in_parts<Row: serde::Serialize + for<'a> serde::Deserialize<'a>>(
    connection: &Connection,
    table: &str,
    snapshots: &[(u64, &Snapshot<Row>)],
) -> Result<usize, StoreError> {
    if snapshots.is_empty() {
        return Ok(0);
    }
    append(connection, "snapshot_parts", snapshot_parts_batch(snapshots))?;
    append(connection, table, sample_rows_batch(snapshots))
}

/// Appends a record batch to `table`; returns how many rows it held.
fn append(connection: &Connection, table: &str, rows: duckdb::arrow::record_batch::RecordBatch) -> Result<usize, StoreError> {
    let row_count = rows.num_rows();
    let mut appender = connection.appender(table).map_err(StoreError::Write)?;
    appender.append_record_batch(rows).map_err(StoreError::Write)?;
    appender.flush().map_err(StoreError::Write)?;
    Ok(row_count)
}

fn read_last_sequence(connection: &Connection, stream: &str) -> duckdb::Result<u64> {
    let mut statement = connection.prepare_cached("SELECT last_sequence FROM ingest_progress WHERE stream = ?")?;
    let mut rows = statement.query([stream])?;
    match rows.next()? {
        Some(row) => row.get(0),
        None => Ok(0),
    }
}

fn migrate(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    connection
        .execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
        .map_err(|source| StoreError::Migrate { version: 0, source })?;
    let current: i32 = connection
        .query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |row| row.get(0))
        .map_err(|source| StoreError::Migrate { version: 0, source })?;
    let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if current > known {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: current,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        let migrate_error = |source| StoreError::Migrate { version: *version, source };
        connection
            .execute_batch(&format!(
                "BEGIN TRANSACTION; {sql}; INSERT INTO schema_migrations VALUES ({version}, now()::TIMESTAMP); COMMIT;"
            ))
            .map_err(migrate_error)?;
        tracing::info!(version, path = %path.display(), "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgmon_common::event::{AnySnapshot, ServerIdentity, SnapshotKind, CURRENT_SCHEMA_VERSION};

    fn snapshot(collected_at_us: i64, rows: usize) -> Snapshot<ActivityRow> {
        Snapshot {
            schema_version: CURRENT_SCHEMA_VERSION,
            kind: SnapshotKind::Activity,
            target: "db1".parse().unwrap(),
            collected_at_us,
            server: ServerIdentity {
                system_identifier: None,
                server_version_num: 170000,
                server_version: "17.0".into(),
            },
            collector: None,
            instance: None,
            statements_info: None,
            part: None,
            rows: (0..rows)
                .map(|pid| ActivityRow {
                    pid: pid as i32,
                    state: Some("active".into()),
                    blocking_pids: vec![1, 2],
                    ..ActivityRow::default()
                })
                .collect(),
        }
    }

    fn count(store: &Store, table: &str) -> i64 {
        store
            .connection
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_redelivered_batch_is_stored_once() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON").unwrap();
        let batch = IngestBatch {
            activity: vec![(1, snapshot(1_000_000, 3)), (2, snapshot(2_000_000, 2))],
            last_sequence: 3,
            ..IngestBatch::default()
        };
        assert_eq!(
            store.apply(&batch).unwrap(),
            AppliedBatch {
                snapshots: 2,
                rows: 5,
                already_stored: 0
            }
        );
        assert_eq!(
            store.apply(&batch).unwrap(),
            AppliedBatch {
                snapshots: 0,
                rows: 0,
                already_stored: 2
            }
        );
        assert_eq!(count(&store, "activity_samples"), 5);
        assert_eq!(store.last_applied_sequence().unwrap(), 3);
    }

    #[test]
    fn progress_survives_reopening_and_migrations_run_once() {
        let directory = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(directory.path(), "PGMON").unwrap();
            store
                .apply(&IngestBatch {
                    activity: vec![(7, snapshot(1_000_000, 1))],
                    last_sequence: 9,
                    ..IngestBatch::default()
                })
                .unwrap();
        }
        let store = Store::open(directory.path(), "PGMON").unwrap();
        assert_eq!(store.last_applied_sequence().unwrap(), 9);
        assert_eq!(count(&store, "schema_migrations"), MIGRATIONS.len() as i64);
    }

    #[test]
    fn lock_snapshots_are_stored_with_their_blocking_pids() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON").unwrap();
        let locks = Snapshot {
            schema_version: CURRENT_SCHEMA_VERSION,
            kind: SnapshotKind::Locks,
            target: "db1".parse().unwrap(),
            collected_at_us: 5_000_000,
            server: ServerIdentity {
                system_identifier: None,
                server_version_num: 170000,
                server_version: "17.0".into(),
            },
            collector: None,
            instance: None,
            statements_info: None,
            part: None,
            rows: vec![
                LockRow {
                    pid: 1,
                    lock_type: "transactionid".into(),
                    mode: "ExclusiveLock".into(),
                    granted: true,
                    ..LockRow::default()
                },
                LockRow {
                    pid: 2,
                    lock_type: "transactionid".into(),
                    mode: "ShareLock".into(),
                    granted: false,
                    blocked_by: vec![1],
                    ..LockRow::default()
                },
            ],
        };
        let applied = store
            .apply(&IngestBatch {
                locks: vec![(4, locks)],
                last_sequence: 4,
                ..IngestBatch::default()
            })
            .unwrap();
        assert_eq!(
            applied,
            AppliedBatch {
                snapshots: 1,
                rows: 2,
                already_stored: 0
            }
        );
        let blocked: (i32, String) = store
            .connection
            .query_row(
                "SELECT pid, array_to_string(blocked_by, ',') FROM lock_samples WHERE NOT granted",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(blocked, (2, "1".to_owned()));
    }

    #[test]
    fn database_fixture_is_stored_with_its_instance_facts() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON").unwrap();
        let fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../common/fixtures/v1/database.json")).unwrap();
        let Ok(pgmon_common::event::AnySnapshot::Database(snapshot)) = pgmon_common::event::decode_snapshot(&fixture) else {
            panic!("not a database fixture")
        };
        let applied = store
            .apply(&IngestBatch {
                database: vec![(1, snapshot)],
                last_sequence: 1,
                ..IngestBatch::default()
            })
            .unwrap();
        assert_eq!(applied.rows, 2);
        let (commits, killed): (i64, Option<i64>) = store
            .connection
            .query_row(
                "SELECT xact_commit, sessions_killed FROM database_samples WHERE database = 'shop'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((commits, killed), (9_812_345, Some(1)));
        let (max_connections, settings): (i32, String) = store
            .connection
            .query_row("SELECT max_connections, settings_json FROM instance_samples", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!(max_connections, 200);
        assert!(settings.contains("\"work_mem\":\"4096kB\""), "{settings}");
    }

    /// Every fixture of every kind stores, with each row in its table and its columns in place.
    #[test]
    fn every_version_1_fixture_is_stored() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON").unwrap();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/fixtures/v1");
        let mut batch = IngestBatch::default();
        let mut expected_rows = 0;
        for (sequence, entry) in std::fs::read_dir(fixtures).unwrap().enumerate() {
            let sequence = sequence as u64 + 1;
            let snapshot = pgmon_common::event::decode_snapshot(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            expected_rows += snapshot.row_count();
            match snapshot {
                AnySnapshot::Activity(snapshot) => batch.activity.push((sequence, snapshot)),
                AnySnapshot::Locks(snapshot) => batch.locks.push((sequence, snapshot)),
                AnySnapshot::Database(snapshot) => batch.database.push((sequence, snapshot)),
                AnySnapshot::Status(snapshot) => batch.status.push((sequence, snapshot)),
                AnySnapshot::Statements(snapshot) => batch.statements.push((sequence, snapshot)),
                AnySnapshot::Objects(snapshot) => batch.objects.push((sequence, snapshot)),
            }
            batch.last_sequence = sequence;
        }
        assert_eq!(store.apply(&batch).unwrap().rows, expected_rows);
        let query = |sql: &str| -> String { store.connection.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(
            query("SELECT query FROM statement_texts WHERE query_id = -3172049182744215713"),
            "SELECT * FROM orders WHERE customer_id = $1"
        );
        assert_eq!(
            query("SELECT format('{}/{}/{}', calls, wal_bytes, local_blk_read_time_ms IS NULL) FROM statement_samples WHERE user_name = 'batch'"),
            "14/91234567/true"
        );
        assert_eq!(
            query("SELECT format('{}/{}/{}', kind, parent, last_autovacuum) FROM object_samples WHERE name = 'orders_2025'"),
            "table/public.orders/2025-11-24 13:13:20"
        );
        assert_eq!(
            query("SELECT format('{}/{}', part_count, statements_dealloc) FROM snapshot_parts WHERE kind = 'statements'"),
            "2/3"
        );
        assert_eq!(
            query("SELECT limitations[1].reason FROM target_status WHERE target = 'prod-db3'"),
            "extension_missing"
        );
        assert_eq!(query("SELECT state FROM target_status WHERE target = 'prod-db2'"), "down");
    }

    /// Older duckdb-rs versions panicked above 2048 rows per appended record batch.
    #[test]
    fn large_batches_append_whole() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON").unwrap();
        let activity = (0..100).map(|i| (i + 1, snapshot(i as i64 * 1_000_000, 500))).collect();
        let applied = store
            .apply(&IngestBatch {
                activity,
                last_sequence: 100,
                ..IngestBatch::default()
            })
            .unwrap();
        assert_eq!(applied.rows, 50_000);
        assert_eq!(count(&store, "activity_samples"), 50_000);
        let pids: i64 = store
            .connection
            .query_row("SELECT sum(len(blocking_pids)) FROM activity_samples", [], |row| row.get(0))
            .unwrap();
        assert_eq!(pids, 100_000);
    }

    #[test]
    fn a_file_from_a_newer_pgmon_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = Store::open(directory.path(), "PGMON").unwrap();
            store
                .connection
                .execute_batch("INSERT INTO schema_migrations VALUES (999, now()::TIMESTAMP)")
                .unwrap();
        }
        let error = Store::open(directory.path(), "PGMON").err().unwrap();
        assert!(matches!(error, StoreError::NewerSchema { found: 999, .. }), "{error}");
    }
}
