//! The `replication` and `slots` snapshots: the standbys streaming from a server, its own
//! receiving and replaying when it is a standby, and its replication slots with the WAL they
//! hold back. Read from statistics views and WAL-position functions only.

use std::time::SystemTime;

use pgmon_contract::event::{ReplicationRole, ReplicationRow, SlotRow};
use tokio_postgres::{Client, Statement};

use crate::activity::unix_micros;

/// The server's own WAL position: what it wrote as a primary, what it received as a standby
/// (`pg_current_wal_lsn()` fails during recovery).
const WAL_POSITION: &str = "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END";

/// The standbys streaming from this server, and, on a standby, its receiving and replaying.
fn replication_query() -> String {
    format!(
        "SELECT 'standby', coalesce(application_name, ''), host(client_addr), state, sync_state,
                pg_wal_lsn_diff({WAL_POSITION}, replay_lsn)::int8,
                pg_wal_lsn_diff({WAL_POSITION}, write_lsn)::int8,
                pg_wal_lsn_diff({WAL_POSITION}, flush_lsn)::int8,
                extract(epoch FROM write_lag)::float8 * 1000, extract(epoch FROM flush_lag)::float8 * 1000,
                extract(epoch FROM replay_lag)::float8 * 1000,
                NULL::bool, NULL::text
         FROM pg_stat_replication
         UNION ALL
         SELECT 'receiver', coalesce(r.sender_host || ':' || r.sender_port, 'upstream'), NULL, r.status, NULL,
                pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::int8, NULL, NULL, NULL, NULL,
                CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
                     ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 * 1000 END,
                pg_is_wal_replay_paused(), r.slot_name
         FROM (SELECT) AS one LEFT JOIN pg_stat_wal_receiver r ON true
         WHERE pg_is_in_recovery()"
    )
}

/// PostgreSQL 16 added `conflicting`, 17 `inactive_since` and `invalidation_reason`.
fn slots_query(server_version_num: i32) -> String {
    let conflicting = if server_version_num >= 160000 {
        "conflicting"
    } else {
        "NULL::bool"
    };
    let (inactive_since, invalidation_reason) = if server_version_num >= 170000 {
        ("inactive_since", "invalidation_reason")
    } else {
        ("NULL::timestamptz", "NULL::text")
    };
    format!(
        "SELECT slot_name::text, slot_type, plugin::text, database::text, temporary, active, active_pid,
                pg_wal_lsn_diff({WAL_POSITION}, restart_lsn)::int8, wal_status, safe_wal_size,
                {inactive_since}, {conflicting}, {invalidation_reason}
         FROM pg_replication_slots
         ORDER BY slot_name"
    )
}

/// The prepared queries of the replication snapshots.
pub(crate) struct ReplicationStatements {
    replication: Statement,
    slots: Statement,
}

pub(crate) async fn prepare(client: &Client, server_version_num: i32) -> Result<ReplicationStatements, tokio_postgres::Error> {
    Ok(ReplicationStatements {
        replication: client.prepare(&replication_query()).await?,
        slots: client.prepare(&slots_query(server_version_num)).await?,
    })
}

/// Takes one sample of each: the replication links and the slots.
pub(crate) async fn sample(
    client: &Client,
    statements: &ReplicationStatements,
) -> Result<(Vec<ReplicationRow>, Vec<SlotRow>), tokio_postgres::Error> {
    let links = client
        .query(&statements.replication, &[])
        .await?
        .iter()
        .map(|row| ReplicationRow {
            role: if row.get::<_, &str>(0) == "receiver" {
                ReplicationRole::Receiver
            } else {
                ReplicationRole::Standby
            },
            name: row.get(1),
            client_addr: row.get(2),
            state: row.get(3),
            sync_state: row.get(4),
            replay_lag_bytes: row.get(5),
            write_lag_bytes: row.get(6),
            flush_lag_bytes: row.get(7),
            write_lag_ms: row.get(8),
            flush_lag_ms: row.get(9),
            replay_lag_ms: row.get(10),
            replay_paused: row.get(11),
            slot_name: row.get(12),
        })
        .collect();
    let slots = client
        .query(&statements.slots, &[])
        .await?
        .iter()
        .map(|row| SlotRow {
            slot_name: row.get(0),
            slot_type: row.get(1),
            plugin: row.get(2),
            database: row.get(3),
            temporary: row.get(4),
            active: row.get(5),
            active_pid: row.get(6),
            retained_bytes: row.get(7),
            wal_status: row.get(8),
            safe_wal_size: row.get(9),
            inactive_since_us: row.get::<_, Option<SystemTime>>(10).map(unix_micros),
            conflicting: row.get(11),
            invalidation_reason: row.get(12),
        })
        .collect();
    Ok((links, slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_columns_only_where_the_server_has_them() {
        assert!(slots_query(150000).contains("NULL::bool") && slots_query(150000).contains("NULL::timestamptz"));
        assert!(slots_query(160000).contains("conflicting") && slots_query(160000).contains("NULL::timestamptz"));
        assert!(slots_query(170000).contains("inactive_since, conflicting, invalidation_reason"));
    }
}
