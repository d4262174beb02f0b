//! Schema migrations of a partition file, applied when pgmon opens it, so files written by an
//! older pgmon open in a newer one.

use std::path::Path;

use duckdb::Connection;

use super::error::StoreError;

/// Ordered schema migrations, each a file of `migrations/` executed as it is: a file is never
/// edited once released (`released_migrations_are_unchanged` pins each by its hash), only new
/// ones appended.
///
/// All TIMESTAMP columns hold UTC.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/001_activity.sql")),
    (2, include_str!("../../migrations/002_locks.sql")),
    (3, include_str!("../../migrations/003_database_and_instance.sql")),
    (4, include_str!("../../migrations/004_target_status.sql")),
    // Statement samples and their views, object sizes, and `snapshot_parts` (which part of
    // which snapshot each message carried, with the statements' dealloc and reset).
    (5, include_str!("../../migrations/005_statements_and_objects.sql")),
    // Active sessions per minute and combination of the chart's dimensions: long ranges are
    // charted from here instead of from every sampled row.
    (6, include_str!("../../migrations/006_activity_minutes.sql")),
    // An entry missing from the snapshot before counts from zero again.
    (7, include_str!("../../migrations/007_statement_views.sql")),
    // Activity rows keep `xact_start` and `state_change` as microseconds from the query's
    // start (or, without one, from the sample): usually 0 or a few milliseconds, where the
    // timestamps themselves took about 3 bytes each per row. `activity_samples` becomes the
    // view that gives the timestamps back. `compactions` gets a row once a closing partition
    // is compacted (`compaction.rs`).
    (8, include_str!("../../migrations/008_activity_sample_rows.sql")),
    // Which part of its sample each activity message carried: a sample counts once all its
    // parts are stored, however many messages carried it. Rows before this have NULLs and
    // count once per collection time.
    (9, include_str!("../../migrations/009_activity_parts.sql")),
    // Statement texts in a table of their own, so that they outlive the partition they
    // arrived in: each text as it arrives, and, when a partition opens, a copy of the texts of
    // every statement the partition before it holds samples of
    // (`Store::carry_statement_texts`). Existing texts move there from the samples.
    (10, include_str!("../../migrations/010_statement_text_copies.sql")),
    // Objects whose sizes could not be measured (locked, or their database not read): why,
    // and when the sizes stored with them (the last measured ones) were measured.
    (11, include_str!("../../migrations/011_object_size_staleness.sql")),
    // What autovacuum sees of every table, and the frozen-ID ages of every database.
    (12, include_str!("../../migrations/012_table_samples.sql")),
    // The maintenance commands running at each progress sample.
    (13, include_str!("../../migrations/013_progress_samples.sql")),
    // Replication links with their lag, and replication slots with the WAL they hold back.
    (14, include_str!("../../migrations/014_replication_and_slots.sql")),
    // Settings snapshots (published when something changed): the change timeline.
    (15, include_str!("../../migrations/015_setting_samples.sql")),
    // Checkpoint, background writer, WAL and archiver counters, and pg_stat_io.
    (16, include_str!("../../migrations/016_wal_and_io.sql")),
];

/// The statement views across all partitions, as the newest migrations define them: a file of
/// its own, never shared with a released migration, so editing it edits no released one.
pub(crate) const LIVE_STATEMENT_VIEWS: &str = include_str!("../../migrations/live_statement_views.sql");

/// The schema version this pgmon writes.
pub(crate) fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// The schema version of `catalog`; one newer than this pgmon knows is an error.
pub(crate) fn schema_version(connection: &Connection, catalog: &str, path: &Path) -> Result<i32, StoreError> {
    let found: i32 = connection
        .query_row(
            &format!("SELECT coalesce(max(version), 0) FROM {catalog}.schema_migrations"),
            [],
            |row| row.get(0),
        )
        .map_err(|source| StoreError::Migrate { version: 0, source })?;
    let known = latest_version();
    if found > known {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            known,
        });
    }
    Ok(found)
}

/// Brings the schema of `catalog` (an attached partition, or a schema such as `memory.empty`)
/// up to date. `path` names the file in errors.
pub(crate) fn migrate(connection: &Connection, catalog: &str, path: &Path) -> Result<(), StoreError> {
    let in_catalog = |sql: &str| format!("USE {catalog}; {sql}; USE memory.main;");
    let migrate_error = |version| move |source| StoreError::Migrate { version, source };
    connection
        .execute_batch(&in_catalog(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)",
        ))
        .map_err(migrate_error(0))?;
    let current = schema_version(connection, catalog, path)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        connection
            .execute_batch(&in_catalog(&format!(
                "BEGIN TRANSACTION; {sql}; INSERT INTO schema_migrations VALUES ({version}, now()::TIMESTAMP); COMMIT"
            )))
            .map_err(migrate_error(*version))?;
        tracing::debug!(version, path = %path.display(), "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A released migration is never edited: a file whose bytes changed fails here. Pin a new
    /// migration's hash when it is released; the live views may change (their pin moves too).
    #[test]
    fn released_migrations_are_unchanged() {
        use sha2::{Digest, Sha256};
        let pinned: &[(&str, &str)] = &[
            (
                "001_activity.sql",
                "167f52568b808f3e662352216ec3ccbafc2f951e06ef0ef5f3c26f88e6519931",
            ),
            ("002_locks.sql", "1006677d4755420920cd57f3429500c8b2e6ef69def26e3d3ee378e35b6b7e86"),
            (
                "003_database_and_instance.sql",
                "e6112e65c4a3325c9be33847ea92034822133cdc016006a54b061393e24e087e",
            ),
            (
                "004_target_status.sql",
                "fef5fc2da8b6d622c9bbb0d78b66513c81f50166277d71eb107e18dccdbbc49c",
            ),
            (
                "005_statements_and_objects.sql",
                "314f5f3376513bc4b7545097d6d7a34c41dcc509f44ccf457177e76569d240ec",
            ),
            (
                "006_activity_minutes.sql",
                "60a81f60fe9aaf00d0d343c6ef729b00f9c58f32d24061a4ac196c0b5823c49e",
            ),
            (
                "007_statement_views.sql",
                "db12329c8361fe5ec2775ee5ede4bf045cb3ead0d403d4373a2e0975cfeb85d3",
            ),
            (
                "008_activity_sample_rows.sql",
                "c37e05f584f9ad42d30b06f9cc2120a62a6deebc56ccf8bfb4fb2a83beb39912",
            ),
            (
                "009_activity_parts.sql",
                "bf3c27173cfff3834ea995d020278d354e57abeb61a51d21e4bec83d5265e774",
            ),
            (
                "010_statement_text_copies.sql",
                "4e75f45a1accad7f5d02531caeba2f5055208e45719a90b7de3504c7f0ede996",
            ),
            (
                "011_object_size_staleness.sql",
                "99d13ec36cf8c5e8702db91bc9bd16e879c8124f1ee375024e41d1de125be877",
            ),
            (
                "012_table_samples.sql",
                "2e292219c792ab6425fd5eb2a32d6b9497d2b465a0c842f82a73d96af28cdb6f",
            ),
            (
                "013_progress_samples.sql",
                "51e469022d1abd9e67042cf564a0c49ffef01442bda1df98cf14bb27b54b9b36",
            ),
            (
                "014_replication_and_slots.sql",
                "8190ff4f91ff1a56bbfdaee99829ef4ba807334c82df87860b69fb7a4c399237",
            ),
            (
                "015_setting_samples.sql",
                "6658672078aaa0f0bc174e9a7c975063f80c58cdba548ed381963c719b827571",
            ),
            (
                "016_wal_and_io.sql",
                "0b2bffacd7a9dc7e7b34f4e98bcf0c41b9ac6b1c2c67438593f65760fa55e09c",
            ),
            (
                "live_statement_views.sql",
                "3d062646e16794a61e6e2f1f98f918f8a9a2d99c6e621c8965ac83604d862616",
            ),
        ];
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let pinned_names: Vec<&str> = pinned.iter().map(|(name, _)| *name).collect();
        assert_eq!(files, pinned_names, "every file of migrations/ is pinned");
        for (name, hash) in pinned {
            let bytes = std::fs::read(directory.join(name)).unwrap();
            let found: String = Sha256::digest(&bytes).iter().map(|byte| format!("{byte:02x}")).collect();
            assert_eq!(&found, hash, "{name} changed");
        }
        let included: Vec<usize> = MIGRATIONS.iter().map(|(_, sql)| sql.len()).collect();
        assert_eq!(included.len(), pinned.len() - 1, "every migration file is applied, in order");
        for ((version, sql), (name, _)) in MIGRATIONS.iter().zip(pinned) {
            assert!(name.starts_with(&format!("{version:03}_")), "{name} is migration {version}");
            assert_eq!(sql.as_bytes(), std::fs::read(directory.join(name)).unwrap(), "{name}");
        }
    }

    /// A partition written before migration 8 keeps its activity rows, timestamps exact, once
    /// they move to `activity_sample_rows` behind the `activity_samples` view.
    #[test]
    fn activity_rows_of_schema_7_survive_migration_8() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("p.duckdb");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
            .unwrap();
        for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version <= 7) {
            connection
                .execute_batch(&format!(
                    "{sql}; INSERT INTO schema_migrations VALUES ({version}, now()::TIMESTAMP)"
                ))
                .unwrap();
        }
        let rows = "('db1', TIMESTAMP '2026-11-27 10:00:01', 7, 'active', TIMESTAMP '2026-11-27 09:59:00.000001', TIMESTAMP '2026-11-27 10:00:00.5', TIMESTAMP '2026-11-27 10:00:00.5'),
                    ('db1', TIMESTAMP '2026-11-27 10:00:01', 8, 'idle', NULL, TIMESTAMP '2026-11-27 09:00:00', TIMESTAMP '2026-11-27 09:00:00.003'),
                    ('db1', TIMESTAMP '2026-11-27 10:00:01', 9, NULL, TIMESTAMP '2026-11-27 10:00:00.9', NULL, NULL)";
        connection
            .execute_batch(&format!(
                "INSERT INTO activity_samples (target, collected_at, pid, state, xact_start, query_start, state_change) VALUES {rows}"
            ))
            .unwrap();
        let read = |connection: &Connection| -> Vec<String> {
            connection
                .prepare("SELECT concat_ws('|', pid, state, xact_start, query_start, state_change) FROM activity_samples ORDER BY pid")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = read(&connection);
        drop(connection);

        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(&format!("ATTACH '{}' AS p", path.display())).unwrap();
        migrate(&connection, "p", &path).unwrap();
        connection.execute_batch("USE p").unwrap();
        assert_eq!(read(&connection), before);
        assert_eq!(schema_version(&connection, "p", &path).unwrap(), latest_version());
    }
}
