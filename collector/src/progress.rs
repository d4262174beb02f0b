//! The `progress` snapshot: every vacuum, analyze, index build, CLUSTER and VACUUM FULL
//! running, with its phase and blocks done, from the `pg_stat_progress_*` views (all present
//! from PostgreSQL 13). Reading them touches no lock and no table, only backend memory.

use std::time::SystemTime;

use pgmon_contract::event::{MaintenanceCommand, ProgressRow};
use tokio_postgres::{Client, Statement};

use crate::activity::unix_micros;

/// Relation OIDs are named only for the database the collector is connected to, where
/// `regclass` resolves them correctly; elsewhere the OID is kept (as for locks).
const PROGRESS_QUERY: &str = "WITH running AS (
         SELECT pid, 'vacuum' AS command, datname, relid, phase, heap_blks_total AS blocks_total,
                heap_blks_scanned AS blocks_done, index_vacuum_count
         FROM pg_stat_progress_vacuum
         UNION ALL
         SELECT pid, 'analyze', datname, relid, phase, sample_blks_total, sample_blks_scanned, NULL
         FROM pg_stat_progress_analyze
         UNION ALL
         SELECT pid, 'create_index', datname, relid, phase, blocks_total, blocks_done, NULL
         FROM pg_stat_progress_create_index
         UNION ALL
         SELECT pid, 'cluster', datname, relid, phase, heap_blks_total, heap_blks_scanned, NULL
         FROM pg_stat_progress_cluster
     )
     SELECT r.pid, r.command, r.datname::text,
            CASE WHEN r.relid = 0 THEN NULL
                 WHEN r.datname = current_database() THEN r.relid::regclass::text
                 ELSE r.relid::text END,
            r.phase, coalesce(a.backend_type = 'autovacuum worker', false), a.query_start,
            r.blocks_total, r.blocks_done, r.index_vacuum_count
     FROM running r LEFT JOIN pg_stat_activity a ON a.pid = r.pid
     ORDER BY r.pid";

pub(crate) async fn prepare(client: &Client) -> Result<Statement, tokio_postgres::Error> {
    client.prepare(PROGRESS_QUERY).await
}

/// Takes one sample; empty when nothing runs.
pub(crate) async fn sample(client: &Client, statement: &Statement) -> Result<Vec<ProgressRow>, tokio_postgres::Error> {
    let rows = client.query(statement, &[]).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some(ProgressRow {
                pid: row.get(0),
                command: MaintenanceCommand::from_name(row.get(1))?,
                database: row.get(2),
                relation: row.get(3),
                phase: row.get(4),
                autovacuum: row.get(5),
                started_at_us: row.get::<_, Option<SystemTime>>(6).map(unix_micros),
                blocks_total: row.get(7),
                blocks_done: row.get(8),
                index_vacuum_count: row.get(9),
            })
        })
        .collect())
}
