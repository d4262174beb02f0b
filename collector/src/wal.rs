//! The `wal` and `io` snapshots: instance-wide counters of checkpoints, the background writer,
//! WAL and the archiver, and `pg_stat_io` (PostgreSQL 16+), taken with the database snapshot.
//! Columns are chosen by server version: PostgreSQL 17 moved the checkpoint counters to
//! `pg_stat_checkpointer` and dropped the backends' writes, 18 reports I/O in bytes.

use std::time::SystemTime;

use pgmon_contract::event::{IoRow, WalRow};
use tokio_postgres::{Client, Statement};

use crate::activity::unix_micros;

const CHECKPOINTER_SINCE_VERSION: i32 = 170000;
const STAT_WAL_SINCE_VERSION: i32 = 140000;
const STAT_IO_SINCE_VERSION: i32 = 160000;
const IO_BYTES_SINCE_VERSION: i32 = 180000;

fn wal_query(server_version_num: i32) -> String {
    let (checkpoints, buffers_backend) = if server_version_num >= CHECKPOINTER_SINCE_VERSION {
        (
            "SELECT num_timed AS timed, num_requested AS requested, write_time, sync_time, buffers_written AS buffers
             FROM pg_stat_checkpointer",
            "NULL::int8",
        )
    } else {
        (
            "SELECT checkpoints_timed AS timed, checkpoints_req AS requested, checkpoint_write_time AS write_time,
                    checkpoint_sync_time AS sync_time, buffers_checkpoint AS buffers
             FROM pg_stat_bgwriter",
            "b.buffers_backend",
        )
    };
    let (wal_columns, wal_source) = if server_version_num >= STAT_WAL_SINCE_VERSION {
        ("w.wal_records, w.wal_fpi, w.wal_bytes::int8, w.wal_buffers_full", ", pg_stat_wal w")
    } else {
        ("NULL::int8, NULL::int8, NULL::int8, NULL::int8", "")
    };
    format!(
        "SELECT c.timed, c.requested, c.write_time, c.sync_time, c.buffers, b.buffers_clean, {buffers_backend},
                b.maxwritten_clean, b.buffers_alloc,
                CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8 END,
                {wal_columns}, a.archived_count, a.failed_count, a.last_failed_wal, a.last_failed_time
         FROM ({checkpoints}) c, pg_stat_bgwriter b, pg_stat_archiver a{wal_source}"
    )
}

/// `None` before PostgreSQL 16, which has no `pg_stat_io`. Rows without any I/O are left out.
fn io_query(server_version_num: i32) -> Option<String> {
    if server_version_num < STAT_IO_SINCE_VERSION {
        return None;
    }
    let bytes = if server_version_num >= IO_BYTES_SINCE_VERSION {
        "read_bytes::int8, writes, write_bytes::int8"
    } else {
        "(reads * op_bytes)::int8, writes, (writes * op_bytes)::int8"
    };
    Some(format!(
        "SELECT backend_type, object, context, reads, {bytes}, extends, hits, evictions, fsyncs, read_time, write_time
         FROM pg_stat_io
         WHERE coalesce(reads, 0) + coalesce(writes, 0) + coalesce(extends, 0) + coalesce(hits, 0) + coalesce(fsyncs, 0) > 0
         ORDER BY backend_type, object, context"
    ))
}

/// The prepared queries of the wal and io snapshots.
pub(crate) struct WalStatements {
    wal: Statement,
    io: Option<Statement>,
}

pub(crate) async fn prepare(client: &Client, server_version_num: i32) -> Result<WalStatements, tokio_postgres::Error> {
    let io = match io_query(server_version_num) {
        Some(query) => Some(client.prepare(&query).await?),
        None => None,
    };
    Ok(WalStatements {
        wal: client.prepare(&wal_query(server_version_num)).await?,
        io,
    })
}

/// Takes one sample of each; no I/O rows before PostgreSQL 16 (`None`).
pub(crate) async fn sample(client: &Client, statements: &WalStatements) -> Result<(WalRow, Option<Vec<IoRow>>), tokio_postgres::Error> {
    let row = client.query_one(&statements.wal, &[]).await?;
    let wal = WalRow {
        checkpoints_timed: row.get(0),
        checkpoints_requested: row.get(1),
        checkpoint_write_time_ms: row.get(2),
        checkpoint_sync_time_ms: row.get(3),
        buffers_checkpoint: row.get(4),
        buffers_clean: row.get(5),
        buffers_backend: row.get(6),
        maxwritten_clean: row.get(7),
        buffers_alloc: row.get(8),
        wal_position_bytes: row.get(9),
        wal_records: row.get(10),
        wal_full_page_images: row.get(11),
        wal_bytes: row.get(12),
        wal_buffers_full: row.get(13),
        archived_count: row.get(14),
        archive_failed_count: row.get(15),
        last_failed_wal: row.get(16),
        last_archive_failure_us: row.get::<_, Option<SystemTime>>(17).map(unix_micros),
    };
    let Some(io) = &statements.io else {
        return Ok((wal, None));
    };
    let io = client
        .query(io, &[])
        .await?
        .iter()
        .map(|row| IoRow {
            backend_type: row.get(0),
            object: row.get(1),
            context: row.get(2),
            reads: row.get(3),
            read_bytes: row.get(4),
            writes: row.get(5),
            write_bytes: row.get(6),
            extends: row.get(7),
            hits: row.get(8),
            evictions: row.get(9),
            fsyncs: row.get(10),
            read_time_ms: row.get(11),
            write_time_ms: row.get(12),
        })
        .collect();
    Ok((wal, Some(io)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_where_each_version_keeps_them() {
        assert!(wal_query(130000).contains("checkpoints_req") && !wal_query(130000).contains("pg_stat_wal"));
        assert!(wal_query(140000).contains("pg_stat_wal w") && wal_query(160000).contains("b.buffers_backend"));
        assert!(wal_query(170000).contains("pg_stat_checkpointer") && !wal_query(170000).contains("buffers_backend"));
        assert!(io_query(150000).is_none());
        assert!(io_query(160000).unwrap().contains("op_bytes"));
        assert!(io_query(180000).unwrap().contains("read_bytes::int8"));
    }
}
