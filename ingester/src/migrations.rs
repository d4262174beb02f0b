//! Schema migrations of a partition file, applied when pgmon opens it, so files written by an
//! older pgmon open in a newer one.

use std::path::Path;

use duckdb::Connection;

use crate::store::StoreError;

/// Ordered schema migrations; an entry is never edited once released, only new ones appended.
///
/// All TIMESTAMP columns hold UTC.
pub(crate) const MIGRATIONS: &[(i32, &[&str])] = &[
    (
        1,
        &["CREATE TABLE activity_snapshots (
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
     );"],
    ),
    (
        2,
        &["CREATE TABLE lock_samples (
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
     );"],
    ),
    (
        3,
        &["CREATE TABLE database_samples (
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
     );"],
    ),
    (
        4,
        &["CREATE TABLE target_status (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         state VARCHAR NOT NULL,
         reason VARCHAR,
         message VARCHAR,
         since TIMESTAMP NOT NULL
     );"],
    ),
    (5, &[MIGRATION_5_STATEMENT_TABLES, STATEMENT_VIEWS_5, MIGRATION_5_OBJECT_TABLES]),
    (
        6,
        // Active sessions per minute and combination of the chart's dimensions: long ranges
        // are charted from here instead of from every sampled row.
        &["CREATE TABLE activity_minutes (
         target VARCHAR NOT NULL,
         minute TIMESTAMP NOT NULL,
         wait_event_type VARCHAR,
         wait_event VARCHAR,
         query_id BIGINT,
         database VARCHAR,
         user_name VARCHAR,
         application VARCHAR,
         client_addr VARCHAR,
         backend_type VARCHAR,
         active_rows INTEGER NOT NULL
     );"],
    ),
    (
        7,
        &[
            "DROP VIEW statement_deltas; DROP VIEW statement_texts;",
            STATEMENT_TEXTS_VIEW_7,
            STATEMENT_DELTAS_VIEW_7,
        ],
    ),
    (
        8,
        &[
            MIGRATION_8_ACTIVITY_ROWS,
            ACTIVITY_SAMPLES_VIEW_8,
            "CREATE TABLE compactions (compacted_at TIMESTAMP NOT NULL);",
        ],
    ),
    (
        9,
        // Which part of its sample each activity message carried: a sample counts once all its
        // parts are stored, however many messages carried it. Rows before this have NULLs and
        // count once per collection time.
        &["ALTER TABLE activity_snapshots ADD COLUMN part_index INTEGER;
     ALTER TABLE activity_snapshots ADD COLUMN part_count INTEGER;"],
    ),
    (
        10,
        &[
            MIGRATION_10_STATEMENT_TEXT_COPIES,
            "DROP VIEW statement_texts;",
            STATEMENT_TEXTS_VIEW_10,
        ],
    ),
    (
        11,
        // Objects whose sizes could not be measured (locked, or their database not read): why,
        // and when the sizes stored with them (the last measured ones) were measured.
        &["ALTER TABLE object_samples ADD COLUMN size_stale_reason VARCHAR;
     ALTER TABLE object_samples ADD COLUMN size_measured_at TIMESTAMP;"],
    ),
];

/// Statement texts in a table of their own, so that they outlive the partition they arrived
/// in: each text as it arrives, and, when a partition opens, a copy of the texts of every
/// statement the partition before it holds samples of (`Store::carry_statement_texts`).
/// Existing texts move there from the samples.
const MIGRATION_10_STATEMENT_TEXT_COPIES: &str = "CREATE TABLE statement_text_copies (
         target VARCHAR NOT NULL,
         query_id BIGINT NOT NULL,
         query VARCHAR NOT NULL,
         seen_at TIMESTAMP NOT NULL
     );
     INSERT INTO statement_text_copies
     SELECT target, query_id, arg_max(query, collected_at), max(collected_at)
     FROM statement_samples WHERE query IS NOT NULL GROUP BY target, query_id;";

/// The text view as migration 10 created it; the live one.
const STATEMENT_TEXTS_VIEW_10: &str = "-- The newest text of each query id, from the copies every partition keeps.
     CREATE VIEW statement_texts AS
         SELECT target, query_id, arg_max(query, seen_at) AS query, min(seen_at) AS first_seen
         FROM statement_text_copies GROUP BY target, query_id;";

/// The statement views as the newest migrations define them, for the views across all
/// partitions (each view's text is that of the migration that created it, never shared with a
/// later one).
pub(crate) const LIVE_STATEMENT_VIEWS: &[&str] = &[STATEMENT_TEXTS_VIEW_10, STATEMENT_DELTAS_VIEW_7];

/// Activity rows keep `xact_start` and `state_change` as microseconds from the query's start
/// (or, without one, from the sample): usually 0 or a few milliseconds, where the timestamps
/// themselves took about 3 bytes each per row. `activity_samples` becomes the view that gives
/// the timestamps back. `compactions` gets a row once a closing partition is compacted
/// (`compaction.rs`).
const MIGRATION_8_ACTIVITY_ROWS: &str = "CREATE TABLE activity_sample_rows (
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
         xact_start_before_query_us BIGINT,
         query_start TIMESTAMP,
         state_change_after_query_us BIGINT,
         blocking_pids INTEGER[]
     );
     INSERT INTO activity_sample_rows
     SELECT target, collected_at, pid, database, user_name, application, client_addr, backend_type, state,
            wait_event_type, wait_event, query_id, query, backend_start,
            epoch_us(coalesce(query_start, collected_at)) - epoch_us(xact_start),
            query_start,
            epoch_us(state_change) - epoch_us(coalesce(query_start, collected_at)),
            blocking_pids
     FROM activity_samples
     ORDER BY target, pid, backend_start, collected_at;
     DROP TABLE activity_samples;";

const ACTIVITY_SAMPLES_VIEW_8: &str = "CREATE VIEW activity_samples AS
     SELECT target, collected_at, pid, database, user_name, application, client_addr, backend_type, state,
            wait_event_type, wait_event, query_id, query, backend_start,
            make_timestamp(epoch_us(coalesce(query_start, collected_at)) - xact_start_before_query_us) AS xact_start,
            query_start,
            make_timestamp(epoch_us(coalesce(query_start, collected_at)) + state_change_after_query_us) AS state_change,
            blocking_pids
     FROM activity_sample_rows;";

const MIGRATION_5_STATEMENT_TABLES: &str =
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
     );";

/// The statement views as migration 5 created them (replaced by migration 7).
const STATEMENT_VIEWS_5: &str = "-- The text of each query id, sent once per collector run.
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
         FROM classified;";

/// The text view as migration 7 created it (replaced by migration 10).
const STATEMENT_TEXTS_VIEW_7: &str = "-- The text of each query id, sent once per collector run.
     CREATE VIEW statement_texts AS
         SELECT target, query_id, arg_max(query, collected_at) AS query, min(collected_at) AS first_seen
         FROM statement_samples WHERE query IS NOT NULL GROUP BY target, query_id;";

/// The deltas view as migration 7 created it; still the live one.
const STATEMENT_DELTAS_VIEW_7: &str = "-- What each entry did between two samples. An entry counts from zero again after a reset of
     -- all statistics (stats_reset moved), after its own reset or eviction (stats_since moved, a
     -- counter went down, or it was missing from the target's snapshot before: every snapshot
     -- lists every entry), so deltas are never negative. An entry first seen after the target's
     -- first sample counted from zero since then; in the first sample it has no delta.
     CREATE VIEW statement_deltas AS
         WITH info AS (
             SELECT target, collected_at, any_value(statements_stats_reset) AS stats_reset,
                    lag(collected_at) OVER (PARTITION BY target ORDER BY collected_at) AS previous_snapshot_at
             FROM snapshot_parts WHERE kind = 'statements' GROUP BY target, collected_at
         ),
         firsts AS (
             SELECT target, min(collected_at) AS first_collected_at FROM info GROUP BY target
         ),
         paired AS (
             SELECT s.*, i.stats_reset, i.previous_snapshot_at, f.first_collected_at,
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
                          OR previous_collected_at < previous_snapshot_at
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
         FROM classified;";

const MIGRATION_5_OBJECT_TABLES: &str = "CREATE TABLE object_samples (
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
     );";

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
    for (version, statements) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        let sql = statements.join("\n");
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
        for (version, statements) in MIGRATIONS.iter().filter(|(version, _)| *version <= 7) {
            connection
                .execute_batch(&format!(
                    "{}; INSERT INTO schema_migrations VALUES ({version}, now()::TIMESTAMP)",
                    statements.join("\n")
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
