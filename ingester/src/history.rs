//! The named queries other than the activity series: sessions, statements, objects, locks and
//! database statistics, each one DuckDB SQL statement over the views across partitions.
//!
//! Time parameters are microseconds since the epoch (UTC); `make_timestamp` turns them into
//! the stored TIMESTAMPs. Buckets start at `from_us` and are `step_us` long.

use duckdb::{params, Connection, Row};
use pgmon_common::event::LockRow;
use pgmon_common::query::{
    BlockerSummary, BlockingReply, BlockingRequest, DatabasePoint, DatabaseSeriesRequest, LockBucket, LockHistoryReply, LockHistoryRequest,
    ObjectGrowthReply, ObjectGrowthRequest, ObjectOrder, ObjectSize, ObjectSizePoint, ObjectsReply, ObjectsRequest, SessionHistoryRequest,
    SessionSample, SessionSummary, SessionsRequest, StatementHistoryReply, StatementHistoryRequest, StatementOrder, StatementPoint,
    StatementTotals, TopStatementsRequest,
};

use crate::series::ACTIVE_SESSION_PREDICATE;

/// `collected_at` within `[from, to)`, with the target as `$1`, from as `$2` and to as `$3`.
const IN_RANGE: &str = "target = $1 AND collected_at >= make_timestamp($2) AND collected_at < make_timestamp($3)";

/// The start of the bucket of `collected_at`, with from as `$2` and the step as `$4`.
const BUCKET_START: &str = "$2 + ((epoch_us(collected_at) - $2) // $4) * $4";

/// Integer lists are read as text: duckdb-rs has no list accessor for plain vectors.
fn pid_list(text: Option<String>) -> Vec<i32> {
    text.unwrap_or_default()
        .split(',')
        .filter_map(|pid| pid.trim().parse().ok())
        .collect()
}

fn collect<T>(
    connection: &Connection,
    sql: &str,
    parameters: &[&dyn duckdb::ToSql],
    map: impl FnMut(&Row) -> duckdb::Result<T>,
) -> duckdb::Result<Vec<T>> {
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map(parameters, map)?;
    rows.collect()
}

pub fn sessions(connection: &Connection, request: &SessionsRequest) -> duckdb::Result<Vec<SessionSummary>> {
    let sql = format!(
        "SELECT pid, epoch_us(backend_start), any_value(database), any_value(user_name), any_value(application),
                any_value(client_addr), any_value(backend_type), count(*),
                count(*) FILTER (WHERE {ACTIVE_SESSION_PREDICATE}),
                mode(coalesce(wait_event_type || ':' || wait_event, 'CPU')) FILTER (WHERE {ACTIVE_SESSION_PREDICATE}),
                arg_max(state, collected_at), arg_max(query_id, collected_at), arg_max(query, collected_at)
         FROM activity_samples
         WHERE {IN_RANGE}
         GROUP BY pid, backend_start
         ORDER BY 9 DESC, 8 DESC, pid
         LIMIT $4"
    );
    collect(
        connection,
        &sql,
        params![request.target.as_str(), request.from_us, request.to_us, request.limit],
        |row| {
            Ok(SessionSummary {
                pid: row.get(0)?,
                backend_start_us: row.get(1)?,
                database: row.get(2)?,
                user_name: row.get(3)?,
                application: row.get(4)?,
                client_addr: row.get(5)?,
                backend_type: row.get(6)?,
                samples: row.get(7)?,
                active_samples: row.get(8)?,
                top_wait_event: row.get(9)?,
                last_state: row.get(10)?,
                last_query_id: row.get(11)?,
                last_query: row.get(12)?,
            })
        },
    )
}

pub fn session_history(connection: &Connection, request: &SessionHistoryRequest) -> duckdb::Result<Vec<SessionSample>> {
    let sql = format!(
        "SELECT epoch_us(collected_at), state, wait_event_type, wait_event, query_id, query, epoch_us(xact_start),
                epoch_us(query_start), array_to_string(blocking_pids, ',')
         FROM activity_samples
         WHERE {IN_RANGE} AND pid = $4
           AND ($5::BIGINT IS NULL OR backend_start = make_timestamp($5::BIGINT))
         ORDER BY collected_at
         LIMIT $6"
    );
    collect(
        connection,
        &sql,
        params![
            request.target.as_str(),
            request.from_us,
            request.to_us,
            request.pid,
            request.backend_start_us,
            request.limit
        ],
        |row| {
            Ok(SessionSample {
                collected_at_us: row.get(0)?,
                state: row.get(1)?,
                wait_event_type: row.get(2)?,
                wait_event: row.get(3)?,
                query_id: row.get(4)?,
                query: row.get(5)?,
                xact_start_us: row.get(6)?,
                query_start_us: row.get(7)?,
                blocking_pids: pid_list(row.get(8)?),
            })
        },
    )
}

fn statement_order_column(order: StatementOrder) -> &'static str {
    match order {
        StatementOrder::TotalTime => "total_exec_time_ms",
        StatementOrder::MeanTime => "mean_exec_time_ms",
        StatementOrder::Calls => "calls",
        StatementOrder::Rows => "rows",
        StatementOrder::SharedBlocksRead => "shared_blks_read",
        StatementOrder::TempBlocks => "temp_blks_read + temp_blks_written",
    }
}

/// Deltas whose interval ends in `(from, to]`: what the entries did within the range.
pub fn top_statements(connection: &Connection, request: &TopStatementsRequest) -> duckdb::Result<Vec<StatementTotals>> {
    let sql = format!(
        "WITH totals AS (
             SELECT query_id, database, user_name,
                    coalesce(sum(calls), 0)::BIGINT AS calls, coalesce(sum(total_exec_time_ms), 0)::BIGINT AS total_exec_time_ms,
                    sum(total_exec_time_ms) / nullif(sum(calls), 0) AS mean_exec_time_ms,
                    coalesce(sum(rows), 0)::BIGINT AS rows, coalesce(sum(shared_blks_hit), 0)::BIGINT AS shared_blks_hit,
                    coalesce(sum(shared_blks_read), 0)::BIGINT AS shared_blks_read, coalesce(sum(temp_blks_read), 0)::BIGINT AS temp_blks_read,
                    coalesce(sum(temp_blks_written), 0)::BIGINT AS temp_blks_written
             FROM statement_deltas
             WHERE target = $1 AND collected_at > make_timestamp($2) AND collected_at <= make_timestamp($3)
             GROUP BY ALL
             HAVING sum(calls) > 0
         )
         SELECT t.query_id, t.database, t.user_name, x.query, t.calls, t.total_exec_time_ms, t.mean_exec_time_ms, t.rows,
                t.shared_blks_hit, t.shared_blks_read, t.temp_blks_read, t.temp_blks_written
         FROM totals t LEFT JOIN statement_texts x ON x.target = $1 AND x.query_id = t.query_id
         ORDER BY {order} DESC NULLS LAST, t.query_id
         LIMIT $4",
        order = statement_order_column(request.order_by)
    );
    collect(
        connection,
        &sql,
        params![request.target.as_str(), request.from_us, request.to_us, request.limit],
        |row| {
            Ok(StatementTotals {
                query_id: row.get(0)?,
                database: row.get(1)?,
                user_name: row.get(2)?,
                query: row.get(3)?,
                calls: row.get(4)?,
                total_exec_time_ms: row.get(5)?,
                mean_exec_time_ms: row.get(6)?,
                rows: row.get(7)?,
                shared_blks_hit: row.get(8)?,
                shared_blks_read: row.get(9)?,
                temp_blks_read: row.get(10)?,
                temp_blks_written: row.get(11)?,
            })
        },
    )
}

pub fn statement_history(connection: &Connection, request: &StatementHistoryRequest) -> duckdb::Result<StatementHistoryReply> {
    let sql = format!(
        "SELECT {BUCKET_START} AS bucket, coalesce(sum(calls), 0)::BIGINT, coalesce(sum(total_exec_time_ms), 0)::BIGINT,
                sum(total_exec_time_ms) / nullif(sum(calls), 0), coalesce(sum(rows), 0)::BIGINT, coalesce(sum(shared_blks_read), 0)::BIGINT
         FROM statement_deltas
         WHERE target = $1 AND collected_at > make_timestamp($2) AND collected_at <= make_timestamp($3) AND query_id = $5
         GROUP BY bucket
         ORDER BY bucket"
    );
    let points = collect(
        connection,
        &sql,
        params![
            request.target.as_str(),
            request.from_us,
            request.to_us,
            request.step_us,
            request.query_id
        ],
        |row| {
            Ok(StatementPoint {
                bucket_start_us: row.get(0)?,
                calls: row.get(1)?,
                total_exec_time_ms: row.get(2)?,
                mean_exec_time_ms: row.get(3)?,
                rows: row.get(4)?,
                shared_blks_read: row.get(5)?,
            })
        },
    )?;
    let query = collect(
        connection,
        "SELECT query FROM statement_texts WHERE target = $1 AND query_id = $2",
        params![request.target.as_str(), request.query_id],
        |row| row.get::<_, Option<String>>(0),
    )?
    .into_iter()
    .next()
    .flatten();
    Ok(StatementHistoryReply { query, points })
}

fn object_order(order: ObjectOrder) -> &'static str {
    match order {
        ObjectOrder::TotalBytes => "total_bytes DESC, database, schema_name, name",
        ObjectOrder::TableBytes => "table_bytes DESC, database, schema_name, name",
        ObjectOrder::IndexBytes => "index_bytes DESC, database, schema_name, name",
        ObjectOrder::Name => "database, schema_name, name",
    }
}

/// The newest objects snapshot of which every part is stored.
fn latest_complete_objects(connection: &Connection, target: &str) -> duckdb::Result<Option<i64>> {
    connection.query_row(
        "SELECT epoch_us(max(collected_at)) FROM (
             SELECT collected_at FROM snapshot_parts
             WHERE target = $1 AND kind = 'objects'
             GROUP BY collected_at
             HAVING count(DISTINCT part_index) = max(part_count)
         )",
        [target],
        |row| row.get(0),
    )
}

pub fn objects(connection: &Connection, request: &ObjectsRequest) -> duckdb::Result<ObjectsReply> {
    let Some(collected_at_us) = latest_complete_objects(connection, request.target.as_str())? else {
        return Ok(ObjectsReply {
            collected_at_us: None,
            total: 0,
            objects: Vec::new(),
        });
    };
    let sql = format!(
        "SELECT count(*) OVER (), database, schema_name, name, kind, parent, total_bytes, table_bytes, index_bytes,
                toast_bytes, row_estimate
         FROM object_samples
         WHERE target = $1 AND collected_at = make_timestamp($2)
           AND ($3::VARCHAR IS NULL OR database = $3::VARCHAR)
           AND ($4::VARCHAR IS NULL OR schema_name = $4::VARCHAR)
           AND ($5::VARCHAR IS NULL OR kind = $5::VARCHAR)
           AND ($6::VARCHAR IS NULL OR contains(lower(name), lower($6::VARCHAR)))
         ORDER BY {order}
         LIMIT $7 OFFSET $8",
        order = object_order(request.order_by)
    );
    let mut total = 0;
    let objects = collect(
        connection,
        &sql,
        params![
            request.target.as_str(),
            collected_at_us,
            request.database,
            request.schema_name,
            request.kind,
            request.name_contains,
            request.limit,
            request.offset
        ],
        |row| {
            total = row.get(0)?;
            Ok(ObjectSize {
                database: row.get(1)?,
                schema_name: row.get(2)?,
                name: row.get(3)?,
                kind: row.get(4)?,
                parent: row.get(5)?,
                total_bytes: row.get(6)?,
                table_bytes: row.get(7)?,
                index_bytes: row.get(8)?,
                toast_bytes: row.get(9)?,
                row_estimate: row.get(10)?,
            })
        },
    )?;
    Ok(ObjectsReply {
        collected_at_us: Some(collected_at_us),
        total,
        objects,
    })
}

pub fn object_growth(connection: &Connection, request: &ObjectGrowthRequest) -> duckdb::Result<ObjectGrowthReply> {
    let object = "database = $4 AND schema_name = $5 AND name = $6";
    let parameters = params![
        request.target.as_str(),
        request.from_us,
        request.to_us,
        request.database,
        request.schema_name,
        request.name
    ];
    let points = collect(
        connection,
        &format!(
            "SELECT epoch_us(collected_at), total_bytes, table_bytes, index_bytes, toast_bytes
             FROM object_samples WHERE {IN_RANGE} AND {object} ORDER BY collected_at"
        ),
        parameters,
        |row| {
            Ok(ObjectSizePoint {
                collected_at_us: row.get(0)?,
                total_bytes: row.get(1)?,
                table_bytes: row.get(2)?,
                index_bytes: row.get(3)?,
                toast_bytes: row.get(4)?,
            })
        },
    )?;
    let growth_bytes_per_day = connection.query_row(
        &format!("SELECT regr_slope(total_bytes, epoch(collected_at)) * 86400 FROM object_samples WHERE {IN_RANGE} AND {object}"),
        parameters,
        |row| row.get(0),
    )?;
    Ok(ObjectGrowthReply {
        points,
        growth_bytes_per_day,
    })
}

pub fn lock_history(connection: &Connection, request: &LockHistoryRequest) -> duckdb::Result<LockHistoryReply> {
    let parameters = params![request.target.as_str(), request.from_us, request.to_us, request.step_us];
    let buckets = collect(
        connection,
        &format!(
            "WITH per_sample AS (
                 SELECT collected_at, count(DISTINCT pid) FILTER (WHERE NOT granted) AS waiting
                 FROM lock_samples WHERE {IN_RANGE} GROUP BY collected_at
             )
             SELECT {BUCKET_START} AS bucket, max(waiting) FROM per_sample GROUP BY bucket ORDER BY bucket"
        ),
        parameters,
        |row| {
            Ok(LockBucket {
                bucket_start_us: row.get(0)?,
                max_waiting_sessions: row.get(1)?,
            })
        },
    )?;
    // What a blocker ran: its activity sample at or just before the lock sample.
    let blockers = collect(
        connection,
        &format!(
            "WITH waits AS (
                 SELECT collected_at, unnest(blocked_by) AS blocker_pid
                 FROM lock_samples WHERE {IN_RANGE} AND NOT granted
             ),
             described AS (
                 SELECT w.collected_at, w.blocker_pid, a.query
                 FROM waits w ASOF LEFT JOIN (SELECT collected_at, pid, query FROM activity_samples WHERE {IN_RANGE}) a
                   ON a.pid = w.blocker_pid AND a.collected_at <= w.collected_at
             )
             SELECT blocker_pid, count(*), epoch_us(min(collected_at)), epoch_us(max(collected_at)), arg_max(query, collected_at)
             FROM described GROUP BY blocker_pid ORDER BY 2 DESC, blocker_pid LIMIT 50"
        ),
        params![request.target.as_str(), request.from_us, request.to_us],
        |row| {
            Ok(BlockerSummary {
                pid: row.get(0)?,
                waiting_samples: row.get(1)?,
                first_seen_us: row.get(2)?,
                last_seen_us: row.get(3)?,
                query: row.get(4)?,
            })
        },
    )?;
    Ok(LockHistoryReply { buckets, blockers })
}

/// How far back the newest lock sample may be to count as "at" a moment.
const BLOCKING_LOOKBACK_US: i64 = 60_000_000;

pub fn blocking(connection: &Connection, request: &BlockingRequest) -> duckdb::Result<BlockingReply> {
    let collected_at_us: Option<i64> = connection.query_row(
        "SELECT epoch_us(max(collected_at)) FROM lock_samples
         WHERE target = $1 AND collected_at <= make_timestamp($2) AND collected_at > make_timestamp($3)",
        params![request.target.as_str(), request.at_us, request.at_us - BLOCKING_LOOKBACK_US],
        |row| row.get(0),
    )?;
    let Some(collected_at_us) = collected_at_us else {
        return Ok(BlockingReply {
            collected_at_us: None,
            locks: Vec::new(),
        });
    };
    let locks = collect(
        connection,
        "SELECT pid, lock_type, mode, granted, database, relation, page, tuple, virtual_xid, transaction_id,
                epoch_us(waiting_since), array_to_string(blocked_by, ',')
         FROM lock_samples WHERE target = $1 AND collected_at = make_timestamp($2)
         ORDER BY pid, lock_type, mode",
        params![request.target.as_str(), collected_at_us],
        |row| {
            Ok(LockRow {
                pid: row.get(0)?,
                lock_type: row.get(1)?,
                mode: row.get(2)?,
                granted: row.get(3)?,
                database: row.get(4)?,
                relation: row.get(5)?,
                page: row.get(6)?,
                tuple: row.get(7)?,
                virtual_xid: row.get(8)?,
                transaction_id: row.get(9)?,
                waiting_since_us: row.get(10)?,
                blocked_by: pid_list(row.get(11)?),
            })
        },
    )?;
    Ok(BlockingReply {
        collected_at_us: Some(collected_at_us),
        locks,
    })
}

/// Counters are summed over the databases per sample first, then differenced between
/// consecutive samples; a delta that went negative (a statistics reset) is left out. Samples
/// from up to 15 minutes before the range give its first bucket a previous value.
pub fn database_series(connection: &Connection, request: &DatabaseSeriesRequest) -> duckdb::Result<Vec<DatabasePoint>> {
    let sql = format!(
        "WITH totals AS (
             SELECT collected_at, sum(xact_commit) AS commits, sum(xact_rollback) AS rollbacks, sum(blks_hit) AS hits,
                    sum(blks_read) AS reads, sum(temp_bytes) AS temp_bytes, sum(deadlocks) AS deadlocks
             FROM database_samples
             WHERE target = $1 AND collected_at >= make_timestamp($2) - INTERVAL 15 minute AND collected_at < make_timestamp($3)
               AND ($5::VARCHAR IS NULL OR database = $5::VARCHAR)
             GROUP BY collected_at
         ),
         deltas AS (
             SELECT collected_at,
                    commits - lag(commits) OVER w AS commits, rollbacks - lag(rollbacks) OVER w AS rollbacks,
                    hits - lag(hits) OVER w AS hits, reads - lag(reads) OVER w AS reads,
                    temp_bytes - lag(temp_bytes) OVER w AS temp_bytes, deadlocks - lag(deadlocks) OVER w AS deadlocks,
                    epoch(collected_at) - epoch(lag(collected_at) OVER w) AS seconds
             FROM totals WINDOW w AS (ORDER BY collected_at)
         )
         SELECT {BUCKET_START} AS bucket,
                sum(commits + rollbacks) / sum(seconds), sum(commits) / sum(seconds), sum(rollbacks) / sum(seconds),
                sum(hits) / nullif(sum(hits + reads), 0), sum(temp_bytes) / sum(seconds), sum(deadlocks)::BIGINT
         FROM deltas
         WHERE collected_at >= make_timestamp($2) AND seconds > 0
           AND commits >= 0 AND rollbacks >= 0 AND hits >= 0 AND reads >= 0 AND temp_bytes >= 0 AND deadlocks >= 0
         GROUP BY bucket
         ORDER BY bucket"
    );
    collect(
        connection,
        &sql,
        params![
            request.target.as_str(),
            request.from_us,
            request.to_us,
            request.step_us,
            request.database
        ],
        |row| {
            Ok(DatabasePoint {
                bucket_start_us: row.get(0)?,
                transactions_per_second: row.get(1)?,
                commits_per_second: row.get(2)?,
                rollbacks_per_second: row.get(3)?,
                cache_hit_ratio: row.get(4)?,
                temp_bytes_per_second: row.get(5)?,
                deadlocks: row.get::<_, Option<i64>>(6)?.unwrap_or(0),
            })
        },
    )
}
