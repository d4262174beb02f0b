//! The store: the partitions attached to one instance, exactly-once batch application, the
//! life of a partition (open, close, compact, retry, expire), readers.
//!
//! All partitions are attached to one in-memory DuckDB instance: the newest read-write, the
//! closed ones read-only (a shared lock, so the `duckdb` CLI can open them at the same time).
//! Views in its `memory.main` schema put the partitions together for the named queries.
//!
//! Exactly-once effect: the last applied stream sequence is stored in the same transaction as
//! the rows, in the partition they go to, and snapshots at or below it are skipped, so a batch
//! redelivered after a crash (it was committed but not yet acknowledged) is not stored twice.
//! A new partition starts with the sequence of the one before it, so the progress survives
//! retention removing old partitions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duckdb::Connection;
use pgmon_contract::event::AnySnapshot;

use super::append::{append_snapshots, record_progress};
use super::catalog::{attach, catalog_connection, catalog_views_sql, detach, remove_files, Access};
use super::compaction::{compact, is_compacted, remove_staging};
use super::error::{files_error, StoreError};
use super::legacy::adopt_legacy_file;
use super::migrations::{latest_version, schema_version};
use super::now_us;
use super::partitions::{list_partitions, partition_start_for, Partition, PartitionPeriod, PARTITIONS_DIRECTORY};
use super::retention::expired_partitions;
use super::views::{derived_views_sql, write_views_script};

pub use super::legacy::LEGACY_DATABASE_FILE_NAME;

/// How data is laid out in time.
#[derive(Clone, Copy, Debug)]
pub struct StorageOptions {
    pub period: PartitionPeriod,
    /// Closed partitions whose period ended longer ago than this are deleted.
    pub retention: Duration,
}

impl Default for StorageOptions {
    fn default() -> StorageOptions {
        StorageOptions {
            period: PartitionPeriod::DAY,
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// One message of the stream as the store sees it.
pub struct BatchMessage {
    pub sequence: u64,
    /// When JetStream stored the message: it chooses the partition.
    pub stored_at_us: i64,
    /// `None` for a message that was dead-lettered: only its sequence counts as applied.
    pub snapshot: Option<AnySnapshot>,
}

/// One decoded batch of the stream, in stream order.
#[derive(Default)]
pub struct IngestBatch {
    pub messages: Vec<BatchMessage>,
}

/// What applying a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AppliedBatch {
    pub snapshots: usize,
    pub rows: usize,
    /// Snapshots skipped because an earlier run had already stored them.
    pub already_stored: usize,
}

impl std::ops::AddAssign for AppliedBatch {
    fn add_assign(&mut self, other: AppliedBatch) {
        self.snapshots += other.snapshots;
        self.rows += other.rows;
        self.already_stored += other.already_stored;
    }
}

pub struct Store {
    connection: Connection,
    data_dir: PathBuf,
    stream: String,
    options: StorageOptions,
    /// Read-only partitions, oldest first.
    closed: Vec<Partition>,
    /// Partitions whose period is over but which could not be closed (a full or read-only
    /// disk): still attached read-write and read by the views; closing them is retried.
    closing: Vec<Partition>,
    /// When closing is tried again, and the wait after that one fails too.
    close_retry: Option<(std::time::Instant, Duration)>,
    /// The newest partition, attached read-write.
    open: Option<Partition>,
    last_applied: u64,
}

/// The first wait before closing a partition again, doubled after each failure.
const FIRST_CLOSE_RETRY: Duration = Duration::from_secs(1);
const LONGEST_CLOSE_RETRY: Duration = Duration::from_secs(300);

impl Store {
    /// Opens (creating if needed) the partitions in `data_dir`, brings their schema up to date
    /// and removes those past retention.
    pub fn open(data_dir: &Path, stream: &str, options: StorageOptions) -> Result<Store, StoreError> {
        let partitions_directory = data_dir.join(PARTITIONS_DIRECTORY);
        std::fs::create_dir_all(&partitions_directory).map_err(|source| StoreError::CreateDirectory {
            path: partitions_directory,
            source,
        })?;
        let connection = catalog_connection(data_dir)?;
        adopt_legacy_file(&connection, data_dir, options.period)?;
        let mut partitions = list_partitions(data_dir).map_err(files_error("list", data_dir))?;
        for partition in &partitions {
            remove_staging(partition)?;
        }
        let newest = partitions.pop();
        let mut store = Store {
            connection,
            data_dir: data_dir.to_owned(),
            stream: stream.to_owned(),
            options,
            closed: Vec::new(),
            closing: Vec::new(),
            close_retry: None,
            open: None,
            last_applied: 0,
        };
        for partition in partitions {
            store.attach_closed(partition)?;
        }
        if let Some(newest) = newest {
            attach(&store.connection, &newest, Access::ReadWrite)?;
            store.open = Some(newest);
        }
        store.last_applied = store.read_last_applied().map_err(StoreError::ReadProgress)?;
        store.refresh_views()?;
        store
            .connection
            .execute_batch(&derived_views_sql("CREATE OR REPLACE VIEW"))
            .map_err(StoreError::Reader)?;
        store.remove_expired_partitions(now_us())?;
        Ok(store)
    }

    /// The highest stream sequence whose effect is stored (0 when nothing is).
    pub fn last_applied_sequence(&self) -> u64 {
        self.last_applied
    }

    /// The partitions, oldest first; the last one is the open one.
    pub fn partitions(&self) -> Vec<Partition> {
        let mut partitions: Vec<Partition> = self.closed.iter().chain(&self.closing).chain(&self.open).cloned().collect();
        partitions.sort();
        partitions
    }

    /// Partitions whose closing failed and is being retried.
    pub fn partitions_closing(&self) -> &[Partition] {
        &self.closing
    }

    /// Bytes of the partition files (and write-ahead logs) on disk.
    pub fn partition_bytes(&self) -> u64 {
        self.partitions()
            .iter()
            .flat_map(Partition::files)
            .filter_map(|file| std::fs::metadata(file).ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    /// Stores a batch: the messages of each partition in one transaction with their last sequence.
    pub fn apply(&mut self, batch: &IngestBatch) -> Result<AppliedBatch, StoreError> {
        self.retry_closing()?;
        let mut runs: Vec<(i64, std::ops::Range<usize>)> = Vec::new();
        // Never into a partition older than the newest, open or not (one failing to open).
        let mut newest = self.partitions().last().map(|partition| partition.start);
        for (index, message) in batch.messages.iter().enumerate() {
            let start = partition_start_for(self.options.period, message.stored_at_us, newest);
            newest = Some(start);
            match runs.last_mut() {
                Some((run_start, range)) if *run_start == start => range.end = index + 1,
                _ => runs.push((start, index..index + 1)),
            }
        }
        let mut applied = AppliedBatch::default();
        for (start, range) in runs {
            self.open_partition(start)?;
            applied += self.apply_to_open_partition(&batch.messages[range])?;
        }
        Ok(applied)
    }

    /// Closes the open partition once its period has ended (plus a grace for messages in
    /// flight) while nothing arrives, so a quiet system's partitions close too.
    pub fn close_idle_partition(&mut self, now_us: i64) -> Result<(), StoreError> {
        self.retry_closing()?;
        let Some(open) = &self.open else { return Ok(()) };
        let grace_us = (self.options.period.as_duration() / 2).min(Duration::from_secs(10)).as_micros() as i64;
        let current = self.options.period.start_of(now_us - grace_us);
        if current > open.start {
            self.open_partition(current)?;
        }
        Ok(())
    }

    /// A second connection to the same instance for queries; it sees committed batches and the
    /// views across partitions.
    pub fn reader(&self) -> Result<Connection, StoreError> {
        self.connection.try_clone().map_err(StoreError::Reader)
    }

    fn apply_to_open_partition(&mut self, messages: &[BatchMessage]) -> Result<AppliedBatch, StoreError> {
        let alias = self.open.as_ref().expect("a partition is open before applying").alias();
        let already_applied = self.last_applied;
        let mut snapshots: Vec<(u64, &AnySnapshot)> = Vec::with_capacity(messages.len());
        let mut applied = AppliedBatch::default();
        for message in messages {
            let Some(snapshot) = &message.snapshot else { continue };
            if message.sequence <= already_applied {
                applied.already_stored += 1;
                continue;
            }
            applied.snapshots += 1;
            snapshots.push((message.sequence, snapshot));
        }
        let last_sequence = messages.iter().map(|message| message.sequence).max().unwrap_or(0);
        // Where the last sizes of objects that could not be measured are looked for, newest first.
        let sources: Vec<String> = self.partitions().iter().rev().map(Partition::alias).collect();
        let transaction = self.connection.transaction().map_err(StoreError::Write)?;
        applied.rows += append_snapshots(&transaction, &alias, &snapshots, &sources)?;
        if last_sequence > already_applied {
            record_progress(&transaction, &alias, &self.stream, last_sequence).map_err(StoreError::Write)?;
        }
        transaction.commit().map_err(StoreError::Write)?;
        self.last_applied = self.last_applied.max(last_sequence);
        Ok(applied)
    }

    /// Makes the partition starting at `start` the open one, closing the one before it. A
    /// partition that cannot be closed stays readable (see [`Store::close_or_keep`]).
    fn open_partition(&mut self, start: i64) -> Result<(), StoreError> {
        if self.open.as_ref().is_some_and(|open| open.start == start) {
            return Ok(());
        }
        if let Some(previous) = self.open.take() {
            self.close_or_keep(previous);
        }
        if let Some(index) = self.closing.iter().position(|closing| closing.start == start) {
            // The newest partition failed to close and its successor to open: it takes the
            // rows of its period again, once it can be written.
            let partition = self.closing.remove(index);
            if let Err(error) = self.reattach(&partition, Access::ReadWrite) {
                self.keep_readable(&partition);
                self.closing.insert(index, partition);
                self.refresh_views()?;
                return Err(error);
            }
            self.open = Some(partition);
            return self.refresh_views();
        }
        let partition = Partition::new(&self.data_dir, start);
        if let Err(error) = attach(&self.connection, &partition, Access::ReadWrite) {
            // What is stored stays readable while the new partition cannot be made.
            self.refresh_views()?;
            return Err(error);
        }
        if self.last_applied > 0 {
            record_progress(&self.connection, &partition.alias(), &self.stream, self.last_applied).map_err(StoreError::Write)?;
        }
        if let Some(previous) = self.partitions().into_iter().rfind(|before| before.start < start) {
            carry_statement_texts(&self.connection, &previous, &partition)?;
        }
        tracing::info!(partition = %partition.path.display(), "opened partition");
        self.open = Some(partition);
        self.refresh_views()?;
        self.remove_expired_partitions(now_us())
    }

    /// Closes `partition`, or, when that fails, keeps it attached (and read by the views) among
    /// the partitions being closed, and schedules another try.
    fn close_or_keep(&mut self, partition: Partition) {
        if let Err(error) = self.close(partition.clone()) {
            tracing::error!(partition = %partition.path.display(), %error, "cannot close a partition; it stays readable and closing is retried");
            self.keep_readable(&partition);
            self.closing.push(partition);
            if self.close_retry.is_none() {
                self.close_retry = Some((std::time::Instant::now() + FIRST_CLOSE_RETRY, FIRST_CLOSE_RETRY));
            }
        }
    }

    /// Tries again to close the partitions whose closing failed, once their wait is over; the
    /// wait doubles while it keeps failing.
    fn retry_closing(&mut self) -> Result<(), StoreError> {
        let Some((due, wait)) = self.close_retry else { return Ok(()) };
        if self.closing.is_empty() || std::time::Instant::now() < due {
            return Ok(());
        }
        for partition in std::mem::take(&mut self.closing) {
            // One kept read-only must be writable again to be checkpointed and compacted.
            match self.reattach(&partition, Access::ReadWrite) {
                Ok(()) => self.close_or_keep(partition),
                Err(error) => {
                    tracing::warn!(partition = %partition.path.display(), %error, "a partition still cannot be closed");
                    self.keep_readable(&partition);
                    self.closing.push(partition);
                }
            }
        }
        if self.closing.is_empty() {
            self.close_retry = None;
            tracing::info!("closing partitions succeeded after failing before");
        } else {
            let wait = (wait * 2).min(LONGEST_CLOSE_RETRY);
            self.close_retry = Some((std::time::Instant::now() + wait, wait));
        }
        self.closed.sort();
        self.refresh_views()?;
        self.remove_expired_partitions(now_us())
    }

    /// After a failed close: DuckDB invalidates a database whose checkpoint failed until it is
    /// detached and attached again, and a failed compaction may have detached it. Attached
    /// read-write where the disk allows it (attaching replays the write-ahead log where the
    /// checkpoint did not complete, then deletes it), read-only otherwise: its rows stay
    /// readable either way.
    fn keep_readable(&self, partition: &Partition) {
        let attached = self
            .reattach(partition, Access::ReadWrite)
            .or_else(|_| self.reattach(partition, Access::ReadOnly));
        if let Err(error) = attached {
            tracing::error!(partition = %partition.path.display(), %error, "cannot attach a partition that failed to close; its rows are unreadable until closing succeeds");
        }
    }

    fn reattach(&self, partition: &Partition, access: Access) -> Result<(), StoreError> {
        self.connection
            .execute_batch(&format!("DETACH DATABASE IF EXISTS {}", partition.alias()))
            .map_err(|source| StoreError::Close {
                path: partition.path.clone(),
                source,
            })?;
        attach(&self.connection, partition, access)
    }

    /// Attaches a closed partition read-only. Only one left with a write-ahead log (a crash
    /// while closing it), of an older schema or not yet compacted is attached writable first,
    /// to finish closing it: a closed partition that someone reads in the `duckdb` CLI does not
    /// stop a start.
    fn attach_closed(&mut self, partition: Partition) -> Result<(), StoreError> {
        let [_, write_ahead_log] = partition.files();
        if !write_ahead_log.exists() {
            attach(&self.connection, &partition, Access::ReadOnly)?;
            let alias = partition.alias();
            if schema_version(&self.connection, &alias, &partition.path)? == latest_version()
                && is_compacted(&self.connection, &alias, &partition.path)?
            {
                self.closed.push(partition);
                return Ok(());
            }
            detach(&self.connection, &partition)?;
        }
        match attach(&self.connection, &partition, Access::ReadWrite) {
            Ok(()) => self.close_or_keep(partition),
            // Cannot be written now (a read-only disk): readable meanwhile, closed later.
            Err(error @ StoreError::Open { .. }) => {
                tracing::error!(partition = %partition.path.display(), %error, "cannot finish closing a partition; it stays readable and closing is retried");
                self.keep_readable(&partition);
                self.closing.push(partition);
                self.close_retry = Some((std::time::Instant::now() + FIRST_CLOSE_RETRY, FIRST_CLOSE_RETRY));
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Checkpoints and compacts a partition, then attaches it again read-only: from now on it
    /// never changes.
    fn close(&mut self, partition: Partition) -> Result<(), StoreError> {
        self.connection
            .execute_batch(&format!("CHECKPOINT {}", partition.alias()))
            .map_err(|source| StoreError::Close {
                path: partition.path.clone(),
                source,
            })?;
        if is_compacted(&self.connection, &partition.alias(), &partition.path)? {
            detach(&self.connection, &partition)?;
        } else {
            compact(&self.connection, &partition)?;
        }
        attach(&self.connection, &partition, Access::ReadOnly)?;
        self.closed.push(partition);
        Ok(())
    }

    /// Deletes closed partitions whose period ended before the retention window (the newest
    /// partition is always kept), then writes the views script for the closed ones: every
    /// change of the partitions ends here.
    fn remove_expired_partitions(&mut self, now_us: i64) -> Result<(), StoreError> {
        let expired = expired_partitions(&self.partitions(), self.options.period, self.options.retention, now_us);
        // A partition still being closed is kept until it is closed.
        let (removed, kept): (Vec<Partition>, Vec<Partition>) = std::mem::take(&mut self.closed)
            .into_iter()
            .partition(|partition| expired.contains(&partition.start));
        self.closed = kept;
        for partition in &removed {
            detach(&self.connection, partition)?;
            remove_files(partition)?;
            tracing::info!(partition = %partition.path.display(), "removed a partition past retention");
        }
        if !removed.is_empty() {
            self.refresh_views()?;
        }
        write_views_script(&self.data_dir, &self.closed).map_err(files_error("write the views script in", &self.data_dir))
    }

    /// Points the views in `memory.main` at the current partitions.
    fn refresh_views(&self) -> Result<(), StoreError> {
        self.connection
            .execute_batch(&catalog_views_sql(&self.partitions(), "CREATE OR REPLACE VIEW"))
            .map_err(StoreError::Reader)
    }

    fn read_last_applied(&self) -> duckdb::Result<u64> {
        let mut last = 0;
        for partition in self.partitions() {
            let sql = format!(
                "SELECT max(last_sequence) FROM {}.ingest_progress WHERE stream = ?",
                partition.alias()
            );
            let sequence: Option<u64> = self.connection.query_row(&sql, [&self.stream], |row| row.get(0))?;
            last = last.max(sequence.unwrap_or(0));
        }
        Ok(last)
    }
}

/// Copies into a partition that opens the texts of every statement the partition before it
/// holds samples of: a statement's text then lives as long as its samples do, whenever it was
/// sent, even once retention has deleted the partition it arrived in. A new partition already
/// holding texts (a restart that opened it before) gets none twice.
fn carry_statement_texts(connection: &Connection, previous: &Partition, next: &Partition) -> Result<(), StoreError> {
    let (previous, next) = (previous.alias(), next.alias());
    connection
        .execute_batch(&format!(
            "INSERT INTO {next}.statement_text_copies
             SELECT target, query_id, arg_max(query, seen_at), max(seen_at)
             FROM {previous}.statement_text_copies t
             WHERE NOT EXISTS (SELECT 1 FROM {next}.statement_text_copies)
               AND EXISTS (SELECT 1 FROM {previous}.statement_samples s WHERE s.target = t.target AND s.query_id = t.query_id)
             GROUP BY target, query_id"
        ))
        .map_err(StoreError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::open_read_only;
    use pgmon_contract::event::{ActivityRow, LockRow, ServerIdentity, Snapshot, SnapshotKind, CURRENT_SCHEMA_VERSION};

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
            objects_info: None,
            part: None,
            rows: (0..rows)
                .map(|pid| ActivityRow {
                    pid: pid as i32,
                    state: Some("active".into()),
                    backend_type: Some("client backend".into()),
                    blocking_pids: vec![1, 2],
                    ..ActivityRow::default()
                })
                .collect(),
        }
    }

    /// A message stored by JetStream the moment its snapshot was collected.
    fn message(sequence: u64, snapshot: AnySnapshot) -> BatchMessage {
        BatchMessage {
            sequence,
            stored_at_us: snapshot.collected_at_us(),
            snapshot: Some(snapshot),
        }
    }

    fn dead_lettered(sequence: u64, stored_at_us: i64) -> BatchMessage {
        BatchMessage {
            sequence,
            stored_at_us,
            snapshot: None,
        }
    }

    fn batch_of(snapshots: Vec<(u64, AnySnapshot)>) -> IngestBatch {
        IngestBatch {
            messages: snapshots
                .into_iter()
                .map(|(sequence, snapshot)| message(sequence, snapshot))
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
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let mut batch = batch_of(vec![
            (1, AnySnapshot::Activity(snapshot(1_000_000, 3))),
            (2, AnySnapshot::Activity(snapshot(2_000_000, 2))),
        ]);
        batch.messages.push(dead_lettered(3, 2_000_000));
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
        assert_eq!(store.last_applied_sequence(), 3);
    }

    #[test]
    fn progress_survives_reopening_and_migrations_run_once() {
        let directory = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
            store
                .apply(&IngestBatch {
                    messages: vec![
                        message(7, AnySnapshot::Activity(snapshot(1_000_000, 1))),
                        dead_lettered(9, 1_000_000),
                    ],
                })
                .unwrap();
        }
        let store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        assert_eq!(store.last_applied_sequence(), 9);
        let alias = store.partitions()[0].alias();
        assert_eq!(
            count(&store, &format!("{alias}.schema_migrations")),
            crate::storage::migrations::MIGRATIONS.len() as i64
        );
    }

    #[test]
    fn lock_snapshots_are_stored_with_their_blocking_pids() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
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
            objects_info: None,
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
        let applied = store.apply(&batch_of(vec![(4, AnySnapshot::Locks(locks))])).unwrap();
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
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../contract/fixtures/v1/database.json")).unwrap();
        let Ok(pgmon_contract::event::AnySnapshot::Database(snapshot)) = pgmon_contract::event::decode_snapshot(&fixture) else {
            panic!("not a database fixture")
        };
        let applied = store.apply(&batch_of(vec![(1, AnySnapshot::Database(snapshot))])).unwrap();
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
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contract/fixtures/v1");
        let mut batch = IngestBatch::default();
        let mut expected_rows = 0;
        for (sequence, entry) in std::fs::read_dir(fixtures).unwrap().enumerate() {
            let sequence = sequence as u64 + 1;
            let snapshot = pgmon_contract::event::decode_snapshot(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            expected_rows += snapshot.row_count();
            batch.messages.push(message(sequence, snapshot));
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
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let activity = (0..100)
            .map(|i| (i + 1, AnySnapshot::Activity(snapshot(i as i64 * 1_000_000, 500))))
            .collect();
        let applied = store.apply(&batch_of(activity)).unwrap();
        assert_eq!(applied.rows, 50_000);
        assert_eq!(count(&store, "activity_samples"), 50_000);
        let pids: i64 = store
            .connection
            .query_row("SELECT sum(len(blocking_pids)) FROM activity_samples", [], |row| row.get(0))
            .unwrap();
        assert_eq!(pids, 100_000);
        // Built in chunks on a second thread: every sample's rows once, none mixed up.
        let distinct_samples: i64 = store
            .connection
            .query_row("SELECT count(DISTINCT (collected_at, pid)) FROM activity_samples", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(distinct_samples, 50_000);
    }

    #[test]
    fn a_file_from_a_newer_pgmon_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
            store
                .apply(&batch_of(vec![(1, AnySnapshot::Activity(snapshot(now_us(), 1)))]))
                .unwrap();
            let alias = store.partitions()[0].alias();
            store
                .connection
                .execute_batch(&format!("INSERT INTO {alias}.schema_migrations VALUES (999, now()::TIMESTAMP)"))
                .unwrap();
        }
        let error = Store::open(directory.path(), "PGMON", StorageOptions::default()).err().unwrap();
        assert!(matches!(error, StoreError::NewerSchema { found: 999, .. }), "{error}");
    }

    /// The per-minute rollup, which whole-minute ranges are charted from, gives the averages
    /// of the sampled rows themselves, also when one minute arrives in several batches.
    #[test]
    fn charts_from_the_minute_rollup_equal_charts_from_every_row() {
        use pgmon_contract::query::{ActivityDimension, ActivitySeriesRequest};
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let minute_start = (now_us() / 60_000_000 - 5) * 60_000_000;
        let waits = [None, Some("DataFileRead"), Some("WALWrite")];
        let mut sequence = 0;
        for batch_start in (0..180).step_by(45) {
            let messages = (batch_start..batch_start + 45)
                .map(|second: i64| {
                    sequence += 1;
                    let mut snapshot = snapshot(minute_start + second * 1_000_000 + 500_000, 4);
                    for (index, row) in snapshot.rows.iter_mut().enumerate() {
                        row.backend_type = Some("client backend".into());
                        row.wait_event = waits[(second as usize + index) % 3].map(Into::into);
                        row.state = Some(
                            if (second as usize + index).is_multiple_of(4) {
                                "idle"
                            } else {
                                "active"
                            }
                            .into(),
                        );
                    }
                    message(sequence, AnySnapshot::Activity(snapshot))
                })
                .collect();
            store.apply(&IngestBatch { messages }).unwrap();
        }
        let reader = store.reader().unwrap();
        let request = |from_us| ActivitySeriesRequest {
            target: "db1".parse().unwrap(),
            from_us,
            to_us: from_us + 180_000_000,
            step_us: 60_000_000,
            by: ActivityDimension::WaitEvent,
            top: 20,
        };
        let from_rollup = crate::series::activity_series(&reader, &request(minute_start)).unwrap();
        let from_rows = crate::series::activity_series(&reader, &request(minute_start + 1)).unwrap();
        assert_eq!(from_rollup.samples, vec![60, 60, 60]);
        assert_eq!(from_rollup.series, from_rows.series);
        assert!(count(&store, "activity_minutes") > 0);
    }

    /// Part `index` of `count` of a sample, holding `rows` active sessions.
    fn part_of(collected_at_us: i64, index: u32, count: u32, rows: usize) -> AnySnapshot {
        let mut part = snapshot(collected_at_us, rows);
        part.part = Some(pgmon_contract::event::SnapshotPart { index, count });
        AnySnapshot::Activity(part)
    }

    /// A sample split into parts counts once, whether its parts arrive in one batch or in
    /// several; one whose part never arrives counts nowhere, from the rollup and the rows alike.
    #[test]
    fn a_sample_in_parts_counts_once_and_an_incomplete_one_not_at_all() {
        use pgmon_contract::query::{ActivityDimension, ActivitySeriesRequest};
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let minute_start = (now_us() / 60_000_000 - 5) * 60_000_000;
        let (split, incomplete, whole) = (minute_start + 1_000_000, minute_start + 2_000_000, minute_start + 3_000_000);
        store
            .apply(&batch_of(vec![
                (1, part_of(split, 0, 3, 2)),
                (2, part_of(split, 1, 3, 2)),
                (3, part_of(incomplete, 0, 2, 2)),
            ]))
            .unwrap();
        store
            .apply(&batch_of(vec![
                (4, part_of(split, 2, 3, 2)),
                (5, AnySnapshot::Activity(snapshot(whole, 3))),
            ]))
            .unwrap();
        let reader = store.reader().unwrap();
        let request = |from_us: i64, step_us: i64| ActivitySeriesRequest {
            target: "db1".parse().unwrap(),
            from_us,
            to_us: minute_start + 60_000_000,
            step_us,
            by: ActivityDimension::WaitEvent,
            top: 20,
        };
        for (path, request) in [
            ("rollup", request(minute_start, 60_000_000)),
            ("rows", request(minute_start - 1_000_000, 61_000_000)),
        ] {
            let reply = crate::series::activity_series(&reader, &request).unwrap();
            assert_eq!(reply.samples, vec![2], "{path}");
            assert_eq!(reply.series.len(), 1, "{path}");
            assert_eq!(reply.series[0].values, vec![Some((6.0 + 3.0) / 2.0)], "{path}");
        }
    }

    const DAY_US: i64 = 86_400_000_000;

    fn activity_at(sequence: u64, collected_at_us: i64, stored_at_us: i64) -> BatchMessage {
        BatchMessage {
            sequence,
            stored_at_us,
            snapshot: Some(AnySnapshot::Activity(snapshot(collected_at_us, 2))),
        }
    }

    /// Rows go to the partition of the day JetStream stored them, a late one to the open
    /// partition, and the views see all of them.
    #[test]
    fn partitions_follow_the_stream_time_and_late_rows_go_to_the_open_one() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let today = now_us();
        let yesterday = today - DAY_US;
        store
            .apply(&IngestBatch {
                messages: vec![
                    activity_at(1, yesterday, yesterday),
                    activity_at(2, today, today),
                    // Collected two days ago, held back by an outage, stored after today's rows.
                    activity_at(3, today - 2 * DAY_US, yesterday + 1),
                ],
            })
            .unwrap();
        let partitions = store.partitions();
        assert_eq!(partitions.len(), 2, "{partitions:?}");
        let rows_in = |partition: &Partition| -> i64 {
            store
                .connection
                .query_row(&format!("SELECT count(*) FROM {}.activity_samples", partition.alias()), [], |row| {
                    row.get(0)
                })
                .unwrap()
        };
        assert_eq!((rows_in(&partitions[0]), rows_in(&partitions[1])), (2, 4));
        assert_eq!(count(&store, "activity_samples"), 6);
        let views = std::fs::read_to_string(directory.path().join(crate::VIEWS_SCRIPT_NAME)).unwrap();
        assert!(
            views.contains(&partitions[0].alias()) && !views.contains(&partitions[1].alias()),
            "{views}"
        );
        drop(store);
        let reader = open_read_only(directory.path()).unwrap();
        let stored: i64 = reader
            .query_row("SELECT count(*) FROM activity_snapshots", [], |row| row.get(0))
            .unwrap();
        assert_eq!(stored, 3);
    }

    #[test]
    fn retention_removes_whole_old_partitions_and_keeps_the_progress() {
        let directory = tempfile::tempdir().unwrap();
        let options = StorageOptions {
            retention: Duration::from_secs(3 * 86_400),
            ..StorageOptions::default()
        };
        let mut store = Store::open(directory.path(), "PGMON", options).unwrap();
        let now = now_us();
        let messages = [10, 6, 2, 0]
            .iter()
            .enumerate()
            .map(|(index, days_ago)| activity_at(index as u64 + 1, now - days_ago * DAY_US, now - days_ago * DAY_US))
            .collect();
        store.apply(&IngestBatch { messages }).unwrap();
        let kept: Vec<i64> = store.partitions().iter().map(|partition| partition.start).collect();
        let day = PartitionPeriod::DAY;
        assert_eq!(kept, vec![day.start_of(now - 2 * DAY_US), day.start_of(now)]);
        assert_eq!(list_partitions(directory.path()).unwrap().len(), 2);
        assert_eq!(count(&store, "activity_snapshots"), 2);
        drop(store);
        let store = Store::open(directory.path(), "PGMON", options).unwrap();
        assert_eq!(store.last_applied_sequence(), 4);
    }

    #[test]
    fn the_single_file_of_an_older_pgmon_becomes_a_partition() {
        let directory = tempfile::tempdir().unwrap();
        let collected_at = now_us() - 3 * DAY_US;
        {
            let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
            store
                .apply(&batch_of(vec![(5, AnySnapshot::Activity(snapshot(collected_at, 3)))]))
                .unwrap();
        }
        let partition = list_partitions(directory.path()).unwrap().remove(0);
        std::fs::rename(&partition.path, directory.path().join(LEGACY_DATABASE_FILE_NAME)).unwrap();
        let store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        assert_eq!(store.partitions(), vec![partition]);
        assert_eq!(store.last_applied_sequence(), 5);
        assert_eq!(count(&store, "activity_samples"), 3);
        assert!(!directory.path().join(LEGACY_DATABASE_FILE_NAME).exists());
    }

    /// Closing a partition rewrites it sorted by backend: the same rows and rollup sums, one
    /// rollup row per minute and combination, and an interrupted compaction's leftovers go away.
    #[test]
    fn a_closing_partition_is_compacted_with_the_same_rows() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let yesterday = PartitionPeriod::DAY.start_of(now_us() - DAY_US) * 1_000_000 + 3_600_000_000;
        let messages: Vec<BatchMessage> = (0..120)
            .map(|second| {
                activity_at(
                    second + 1,
                    yesterday + second as i64 * 1_000_000,
                    yesterday + second as i64 * 1_000_000,
                )
            })
            .collect();
        for message in messages {
            store.apply(&IngestBatch { messages: vec![message] }).unwrap();
        }
        let fingerprint = |store: &Store, alias: &str| -> (i64, i64, i64) {
            store
                .connection
                .query_row(
                    &format!(
                        "SELECT (SELECT count(*) FROM {alias}.activity_samples),
                                (SELECT sum(hash(target, collected_at, pid, state, blocking_pids) % 1000003) FROM {alias}.activity_samples)::BIGINT,
                                (SELECT sum(active_rows) FROM {alias}.activity_minutes)"
                    ),
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .unwrap()
        };
        let alias = store.partitions()[0].alias();
        let before = fingerprint(&store, &alias);
        assert_eq!(count(&store, "activity_minutes"), 120, "a rollup row per batch");
        store
            .apply(&IngestBatch {
                messages: vec![activity_at(200, now_us(), now_us())],
            })
            .unwrap();
        let closed = store.partitions().remove(0);
        assert_eq!(closed.alias(), alias);
        assert_eq!(fingerprint(&store, &alias), before);
        let in_closed = |sql: &str| -> i64 {
            store
                .connection
                .query_row(&sql.replace("{p}", &alias), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(in_closed("SELECT count(*) FROM {p}.compactions"), 1);
        assert_eq!(in_closed("SELECT count(*) FROM {p}.activity_minutes"), 2, "a rollup row per minute");
        assert_eq!(in_closed("SELECT max(last_sequence) FROM {p}.ingest_progress"), 120);
        assert_eq!(
            in_closed("SELECT max(version) FROM {p}.schema_migrations"),
            i64::from(latest_version())
        );
        let first_pids: Vec<i32> = store
            .connection
            .prepare(&format!("SELECT pid FROM {alias}.activity_samples LIMIT 3"))
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(first_pids, vec![0, 0, 0], "rows of one backend sit together");
        drop(store);

        std::fs::write(closed.path.with_extension("duckdb.compacting"), b"left by a crash").unwrap();
        let store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        assert!(!closed.path.with_extension("duckdb.compacting").exists());
        assert_eq!(store.last_applied_sequence(), 200);
    }

    /// A directory in which no file can be created or deleted, as a full or read-only disk
    /// would have it: immutable (`chattr +i`, which binds root too) when the tests run as root,
    /// without write permission otherwise. Writable again when dropped.
    struct UnwritableDirectory(PathBuf);

    impl UnwritableDirectory {
        fn new(path: PathBuf) -> UnwritableDirectory {
            // SAFETY: geteuid(2) has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                let status = std::process::Command::new("chattr").arg("+i").arg(&path).status().unwrap();
                assert!(status.success(), "chattr +i {}", path.display());
            } else {
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
            }
            UnwritableDirectory(path)
        }
    }

    impl Drop for UnwritableDirectory {
        fn drop(&mut self) {
            // SAFETY: geteuid(2) has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
            } else {
                let _ = std::fs::set_permissions(&self.0, std::os::unix::fs::PermissionsExt::from_mode(0o755));
            }
        }
    }

    /// A partition whose closing fails (its directory takes no new file: neither the compacted
    /// copy nor the next partition can be made) stays readable, nothing is lost, and closing
    /// succeeds once the directory is writable again.
    #[test]
    fn a_partition_that_cannot_be_closed_stays_readable_and_closes_later() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let yesterday = PartitionPeriod::DAY.start_of(now_us() - DAY_US) * 1_000_000 + 3_600_000_000;
        store
            .apply(&IngestBatch {
                messages: vec![activity_at(1, yesterday, yesterday)],
            })
            .unwrap();
        let today = now_us();
        let today_batch = || IngestBatch {
            messages: vec![activity_at(2, today, today)],
        };
        {
            let _unwritable = UnwritableDirectory::new(directory.path().join(PARTITIONS_DIRECTORY));
            let error = store.apply(&today_batch()).unwrap_err();
            assert!(matches!(error, StoreError::Open { .. }), "{error}");
            assert_eq!(count(&store, "activity_samples"), 2, "yesterday's rows stay readable");
            assert_eq!(store.partitions_closing().len(), 1);
            // Retried later, still failing: still readable.
            std::thread::sleep(FIRST_CLOSE_RETRY);
            assert!(store.apply(&today_batch()).is_err());
            assert_eq!(count(&store, "activity_samples"), 2);
        }
        std::thread::sleep(FIRST_CLOSE_RETRY * 2);
        store.apply(&today_batch()).unwrap();
        assert!(store.partitions_closing().is_empty());
        assert_eq!(count(&store, "activity_samples"), 4);
        let closed = store.partitions().remove(0);
        let compactions: i64 = store
            .connection
            .query_row(&format!("SELECT count(*) FROM {}.compactions", closed.alias()), [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(compactions, 1, "the partition was closed (compacted) in the end");
        drop(store);
        let store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        assert_eq!(count(&store, "activity_samples"), 4);
        assert_eq!(store.last_applied_sequence(), 2);
    }

    /// `xact_start` and `state_change` are stored relative to the query's start (or the
    /// sample's time without one) and come back from the view as they were collected.
    #[test]
    fn session_timestamps_come_back_exactly() {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let collected_at = now_us();
        let mut activity = snapshot(collected_at, 3);
        let timestamps = [
            (
                Some(collected_at - 5_000_123),
                Some(collected_at - 1_234),
                Some(collected_at - 1_234),
            ),
            (None, Some(collected_at - 86_400_000_001), Some(collected_at - 86_399_000_000)),
            (Some(collected_at - 7), None, Some(collected_at - 3)),
        ];
        for (row, (xact_start_us, query_start_us, state_change_us)) in activity.rows.iter_mut().zip(timestamps) {
            row.xact_start_us = xact_start_us;
            row.query_start_us = query_start_us;
            row.state_change_us = state_change_us;
        }
        store.apply(&batch_of(vec![(1, AnySnapshot::Activity(activity))])).unwrap();
        let stored: Vec<(Option<i64>, Option<i64>, Option<i64>)> = store
            .connection
            .prepare("SELECT epoch_us(xact_start), epoch_us(query_start), epoch_us(state_change) FROM activity_samples ORDER BY pid")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored, timestamps.to_vec());
    }
}
