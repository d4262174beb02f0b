//! The `locks` snapshot: pg_locks rows of sessions waiting on a lock and of those blocking them.

use std::time::SystemTime;

use pgmon_contract::event::LockRow;
use tokio_postgres::{Client, Statement};

use crate::activity::unix_micros;

/// PostgreSQL 14 added `pg_locks.waitstart`.
const WAITSTART_SINCE_VERSION: i32 = 140000;

/// The locks query for a server version.
///
/// Reading pg_locks takes every lock-manager partition lock, so it is read only when some
/// session waits on a lock: the one-time filter on `waiting` skips the scan otherwise.
/// Relation OIDs are named only for the database the collector is connected to, where
/// `regclass` resolves them correctly; elsewhere the OID is kept.
fn locks_query(server_version_num: i32) -> String {
    let waitstart = if server_version_num >= WAITSTART_SINCE_VERSION {
        "l.waitstart"
    } else {
        "NULL::timestamptz"
    };
    format!(
        "WITH waiting AS (
             SELECT pid, pg_blocking_pids(pid) AS blocked_by
             FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()
         ), involved AS (
             SELECT pid FROM waiting UNION SELECT unnest(blocked_by) FROM waiting
         )
         SELECT l.pid, l.locktype, l.mode, l.granted, d.datname::text,
                CASE WHEN l.relation IS NULL THEN NULL
                     WHEN d.datname = current_database() THEN l.relation::regclass::text
                     ELSE l.relation::text END,
                l.page, l.tuple::int4, l.virtualxid, l.transactionid::text, {waitstart},
                CASE WHEN l.granted THEN NULL ELSE w.blocked_by END
         FROM pg_locks l
         JOIN involved i ON i.pid = l.pid
         LEFT JOIN waiting w ON w.pid = l.pid
         LEFT JOIN pg_database d ON d.oid = l.database
         WHERE EXISTS (SELECT FROM waiting)
         ORDER BY l.pid, l.granted DESC, l.locktype"
    )
}

pub(crate) async fn prepare(client: &Client, server_version_num: i32) -> Result<Statement, tokio_postgres::Error> {
    client.prepare(&locks_query(server_version_num)).await
}

/// Takes one sample; empty when no session waits on a lock.
pub(crate) async fn sample(client: &Client, statement: &Statement) -> Result<Vec<LockRow>, tokio_postgres::Error> {
    let rows = client.query(statement, &[]).await?;
    Ok(rows
        .iter()
        .map(|row| LockRow {
            pid: row.get(0),
            lock_type: row.get(1),
            mode: row.get(2),
            granted: row.get(3),
            database: row.get(4),
            relation: row.get(5),
            page: row.get(6),
            tuple: row.get(7),
            virtual_xid: row.get(8),
            transaction_id: row.get(9),
            waiting_since_us: row.get::<_, Option<SystemTime>>(10).map(unix_micros),
            blocked_by: row.get::<_, Option<Vec<i32>>>(11).unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waitstart_only_where_the_server_has_it() {
        assert!(locks_query(130000).contains("NULL::timestamptz"));
        assert!(locks_query(180000).contains("l.waitstart"));
    }
}
