//! The `database` snapshot: pg_stat_database per database, and the instance's facts.

use std::collections::BTreeMap;
use std::time::SystemTime;

use pgmon_contract::event::{DatabaseRow, InstanceFacts};
use tokio_postgres::{Client, Statement};

use crate::activity::unix_micros;

/// PostgreSQL 14 added the session counters of pg_stat_database.
const SESSION_STATS_SINCE_VERSION: i32 = 140000;

/// Settings that explain load and capacity, reported with every database snapshot.
const REPORTED_SETTINGS: &[&str] = &[
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "max_wal_size",
    "checkpoint_timeout",
    "max_worker_processes",
    "max_parallel_workers",
    "autovacuum",
    "track_io_timing",
    "compute_query_id",
    // What the Health tab measures transaction-ID ages against, and autovacuum's capacity.
    "autovacuum_freeze_max_age",
    "autovacuum_multixact_freeze_max_age",
    "autovacuum_max_workers",
];

fn databases_query(server_version_num: i32) -> String {
    let session_columns = if server_version_num >= SESSION_STATS_SINCE_VERSION {
        "session_time, active_time, idle_in_transaction_time, sessions, sessions_abandoned, sessions_fatal, sessions_killed"
    } else {
        "NULL::float8, NULL::float8, NULL::float8, NULL::int8, NULL::int8, NULL::int8, NULL::int8"
    };
    // The row with a NULL datname holds shared objects' counters, not a database.
    format!(
        "SELECT s.datname::text, numbackends, xact_commit, xact_rollback, blks_read, blks_hit,
                tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts,
                temp_files, temp_bytes, deadlocks, checksum_failures, blk_read_time, blk_write_time,
                {session_columns}, stats_reset,
                age(d.datfrozenxid)::int8, mxid_age(d.datminmxid)::int8
         FROM pg_stat_database s JOIN pg_database d ON d.oid = s.datid
         WHERE s.datname IS NOT NULL
         ORDER BY s.datname"
    )
}

const INSTANCE_QUERY: &str = "SELECT pg_postmaster_start_time(), current_setting('max_connections')::int4,
        coalesce((SELECT jsonb_object_agg(name, setting || coalesce(unit, '')) FROM pg_settings WHERE name = ANY($1))::text, '{}')";

/// The prepared queries of the database snapshot.
pub(crate) struct DatabaseStatements {
    databases: Statement,
    instance: Statement,
}

pub(crate) async fn prepare(client: &Client, server_version_num: i32) -> Result<DatabaseStatements, tokio_postgres::Error> {
    Ok(DatabaseStatements {
        databases: client.prepare(&databases_query(server_version_num)).await?,
        instance: client.prepare(INSTANCE_QUERY).await?,
    })
}

/// Takes one sample: the per-database counters and the instance facts.
pub(crate) async fn sample(
    client: &Client,
    statements: &DatabaseStatements,
) -> Result<(InstanceFacts, Vec<DatabaseRow>), tokio_postgres::Error> {
    let settings: Vec<&str> = REPORTED_SETTINGS.to_vec();
    let instance = client.query_one(&statements.instance, &[&settings]).await?;
    let settings_json: String = instance.get(2);
    let facts = InstanceFacts {
        started_at_us: unix_micros(instance.get::<_, SystemTime>(0)),
        max_connections: instance.get(1),
        settings: serde_json::from_str::<BTreeMap<String, String>>(&settings_json).unwrap_or_default(),
    };
    let rows = client.query(&statements.databases, &[]).await?;
    let databases = rows
        .iter()
        .map(|row| DatabaseRow {
            database: row.get(0),
            backends: row.get(1),
            xact_commit: row.get(2),
            xact_rollback: row.get(3),
            blks_read: row.get(4),
            blks_hit: row.get(5),
            tup_returned: row.get(6),
            tup_fetched: row.get(7),
            tup_inserted: row.get(8),
            tup_updated: row.get(9),
            tup_deleted: row.get(10),
            conflicts: row.get(11),
            temp_files: row.get(12),
            temp_bytes: row.get(13),
            deadlocks: row.get(14),
            checksum_failures: row.get(15),
            blk_read_time_ms: row.get(16),
            blk_write_time_ms: row.get(17),
            session_time_ms: row.get(18),
            active_time_ms: row.get(19),
            idle_in_transaction_time_ms: row.get(20),
            sessions: row.get(21),
            sessions_abandoned: row.get(22),
            sessions_fatal: row.get(23),
            sessions_killed: row.get(24),
            stats_reset_us: row.get::<_, Option<SystemTime>>(25).map(unix_micros),
            frozen_xid_age: row.get(26),
            frozen_multixact_age: row.get(27),
        })
        .collect();
    Ok((facts, databases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_counters_only_where_the_server_has_them() {
        assert!(databases_query(130000).contains("NULL::float8"));
        assert!(databases_query(140000).contains("sessions_killed"));
    }
}
