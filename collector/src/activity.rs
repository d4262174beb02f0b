//! The `activity` snapshot: one row per backend of pg_stat_activity, the collector's own excluded.

use std::time::{SystemTime, UNIX_EPOCH};

use pgmon_contract::event::ActivityRow;

use crate::redact::redact_passwords;
use tokio_postgres::{Client, Statement};

/// PostgreSQL 14 added `pg_stat_activity.query_id`.
const QUERY_ID_SINCE_VERSION: i32 = 140000;

/// The sample query for a server version; `$1` is the longest query text kept.
///
/// `pg_blocking_pids` takes the lock manager's partition locks, so it is called only for
/// backends that wait on a lock, not for every backend every second.
fn activity_query(server_version_num: i32) -> String {
    let query_id = if server_version_num >= QUERY_ID_SINCE_VERSION {
        "a.query_id"
    } else {
        "NULL::int8"
    };
    format!(
        "SELECT a.pid, a.datname::text, a.usename::text, a.application_name, host(a.client_addr), \
                a.backend_type, a.state, a.wait_event_type, a.wait_event, {query_id}, left(a.query, $1::int4), \
                a.backend_start, a.xact_start, a.query_start, a.state_change, \
                CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END \
         FROM pg_stat_activity a \
         WHERE a.pid <> pg_backend_pid()"
    )
}

/// Prepares the sample query once per connection.
pub(crate) async fn prepare(client: &Client, server_version_num: i32) -> Result<Statement, tokio_postgres::Error> {
    client.prepare(&activity_query(server_version_num)).await
}

/// Takes one sample.
pub(crate) async fn sample(
    client: &Client,
    statement: &Statement,
    query_text_max_length: u32,
) -> Result<Vec<ActivityRow>, tokio_postgres::Error> {
    let max_length = i32::try_from(query_text_max_length).unwrap_or(i32::MAX);
    let rows = client.query(statement, &[&max_length]).await?;
    Ok(rows
        .iter()
        .map(|row| ActivityRow {
            pid: row.get(0),
            database: row.get(1),
            user: row.get(2),
            application: row.get::<_, Option<String>>(3).filter(|name| !name.is_empty()),
            client_addr: row.get(4),
            backend_type: row.get(5),
            state: row.get(6),
            wait_event_type: row.get(7),
            wait_event: row.get(8),
            query_id: row.get::<_, Option<i64>>(9).filter(|id| *id != 0),
            query: row
                .get::<_, Option<&str>>(10)
                .filter(|text| !text.is_empty())
                .map(|text| redact_passwords(text).into_owned()),
            backend_start_us: row.get::<_, Option<SystemTime>>(11).map(unix_micros),
            xact_start_us: row.get::<_, Option<SystemTime>>(12).map(unix_micros),
            query_start_us: row.get::<_, Option<SystemTime>>(13).map(unix_micros),
            state_change_us: row.get::<_, Option<SystemTime>>(14).map(unix_micros),
            blocking_pids: row.get::<_, Option<Vec<i32>>>(15).unwrap_or_default(),
        })
        .collect())
}

/// Microseconds since the Unix epoch (negative before it).
pub(crate) fn unix_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_id_only_where_the_server_has_it() {
        assert!(activity_query(130012).contains("NULL::int8"));
        assert!(activity_query(140000).contains("a.query_id"));
    }

    #[test]
    fn micros_on_both_sides_of_the_epoch() {
        let second = std::time::Duration::from_secs(1);
        assert_eq!(unix_micros(UNIX_EPOCH + second), 1_000_000);
        assert_eq!(unix_micros(UNIX_EPOCH - second), -1_000_000);
    }
}
