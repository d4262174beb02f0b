//! The named queries other than the activity series: sessions, statements, objects, locks and
//! database statistics, each one DuckDB SQL statement over the views across partitions.
//!
//! Time parameters are microseconds since the epoch (UTC); `make_timestamp` turns them into
//! the stored TIMESTAMPs. Buckets start at `from_us` and are `step_us` long.

use std::collections::BTreeMap;

use duckdb::{params, Connection};
use pgmon_contract::event::{LockRow, SnapshotKind};
use pgmon_contract::query::{
    BlockingReply, BlockingRequest, Change, ChangesReply, ChangesRequest, DatabaseAge, DatabasePoint, DatabaseSeriesRequest, LagSeries,
    LockHistoryReply, LockHistoryRequest, ObjectGrowthReply, ObjectGrowthRequest, ObjectOrder, ObjectSize, ObjectsReply, ObjectsRequest,
    ReplicationSeriesReply, ReplicationSeriesRequest, RetainedWalSeries, SessionHistoryRequest, SessionSample, SessionSummary,
    SessionsRequest, SizeForecast, SizeForecastsRequest, StatementHistoryReply, StatementHistoryRequest, StatementOrder,
    StatementRegression, StatementRegressionsRequest, StatementTotals, TableHealth, TopStatementsRequest, VacuumHealthReply,
    VacuumHealthRequest, WalSeriesReply, WalSeriesRequest, MAX_CHANGES, MAX_REPLICATION_SERIES, WRAPAROUND_HORIZON,
};

use crate::storage::stale_sizes::SKIPPED_DATABASE_REASON;
use crate::tables::activity_minutes::active_session_predicate;
use crate::tables::locks::LOCK_SAMPLES;
use crate::tables::objects::OBJECT_SAMPLES;
use crate::tables::replication::{REPLICATION_SAMPLES, SLOT_SAMPLES};
use crate::tables::select_list_of;
use crate::tables::settings::SETTING_SAMPLES;
use crate::tables::wal::{IO_SAMPLES, WAL_SAMPLES};

/// `collected_at` within `[from, to)`, with the target as `$1`, from as `$2` and to as `$3`.
const IN_RANGE: &str = "target = $1 AND collected_at >= make_timestamp($2) AND collected_at < make_timestamp($3)";

/// The start of the bucket of `collected_at`, with from as `$2` and the step as `$4`.
const BUCKET_START: &str = "$2 + ((epoch_us(collected_at) - $2) // $4) * $4";

/// Runs `sql` and reads its rows into `Row` by column name (through Arrow, with `serde_arrow`):
/// each query names its columns after the fields of its reply type.
pub(crate) fn rows<Row: serde::de::DeserializeOwned>(
    connection: &Connection,
    sql: &str,
    parameters: &[&dyn duckdb::ToSql],
) -> duckdb::Result<Vec<Row>> {
    let mut statement = connection.prepare_cached(sql)?;
    let batches: Vec<duckdb::arrow::record_batch::RecordBatch> = statement.query_arrow(parameters)?.collect();
    let mut rows = Vec::new();
    for batch in &batches {
        let decoded: Vec<Row> = serde_arrow::from_record_batch(batch)
            .map_err(|error| duckdb::Error::FromSqlConversionFailure(0, duckdb::types::Type::Any, Box::new(error)))?;
        rows.extend(decoded);
    }
    Ok(rows)
}

pub fn sessions(connection: &Connection, request: &SessionsRequest) -> duckdb::Result<Vec<SessionSummary>> {
    let active = active_session_predicate();
    let sql = format!(
        "SELECT pid, epoch_us(backend_start) AS backend_start_us, any_value(database) AS database,
                any_value(user_name) AS user_name, any_value(application) AS application,
                any_value(client_addr) AS client_addr, any_value(backend_type) AS backend_type, count(*) AS samples,
                count(*) FILTER (WHERE {active}) AS active_samples,
                mode(coalesce(wait_event_type || ':' || wait_event, 'CPU')) FILTER (WHERE {active}) AS top_wait_event,
                arg_max(state, collected_at) AS last_state, arg_max(query_id, collected_at) AS last_query_id,
                arg_max(query, collected_at) AS last_query
         FROM activity_samples
         WHERE {IN_RANGE}
         GROUP BY pid, backend_start
         ORDER BY active_samples DESC, samples DESC, pid
         LIMIT $4"
    );
    rows(
        connection,
        &sql,
        params![request.target.as_str(), request.from_us, request.to_us, request.limit],
    )
}

pub fn session_history(connection: &Connection, request: &SessionHistoryRequest) -> duckdb::Result<Vec<SessionSample>> {
    let sql = format!(
        "SELECT epoch_us(collected_at) AS collected_at_us, state, wait_event_type, wait_event, query_id, query,
                epoch_us(xact_start) AS xact_start_us, epoch_us(query_start) AS query_start_us,
                coalesce(blocking_pids, []) AS blocking_pids
         FROM activity_samples
         WHERE {IN_RANGE} AND pid = $4
           AND ($5::BIGINT IS NULL OR backend_start = make_timestamp($5::BIGINT))
         ORDER BY collected_at
         LIMIT $6"
    );
    rows(
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
                    coalesce(sum(calls), 0)::BIGINT AS calls, coalesce(sum(total_exec_time_ms), 0) AS total_exec_time_ms,
                    sum(total_exec_time_ms) / nullif(sum(calls), 0) AS mean_exec_time_ms,
                    coalesce(sum(rows), 0)::BIGINT AS rows, coalesce(sum(shared_blks_hit), 0)::BIGINT AS shared_blks_hit,
                    coalesce(sum(shared_blks_read), 0)::BIGINT AS shared_blks_read,
                    coalesce(sum(temp_blks_read), 0)::BIGINT AS temp_blks_read,
                    coalesce(sum(temp_blks_written), 0)::BIGINT AS temp_blks_written
             FROM statement_deltas
             WHERE target = $1 AND collected_at > make_timestamp($2) AND collected_at <= make_timestamp($3)
             GROUP BY ALL
             HAVING sum(calls) > 0
         )
         SELECT t.*, x.query
         FROM totals t LEFT JOIN statement_texts x ON x.target = $1 AND x.query_id = t.query_id
         ORDER BY {order} DESC NULLS LAST, t.query_id
         LIMIT $4",
        order = statement_order_column(request.order_by)
    );
    rows(
        connection,
        &sql,
        params![request.target.as_str(), request.from_us, request.to_us, request.limit],
    )
}

/// Statements slower over the recent window than over their baseline, worst first.
pub fn statement_regressions(connection: &Connection, request: &StatementRegressionsRequest) -> duckdb::Result<Vec<StatementRegression>> {
    let sql = "WITH per AS (
             SELECT query_id, database, user_name,
                    coalesce(sum(calls) FILTER (WHERE collected_at <= make_timestamp($3)), 0) AS baseline_calls,
                    coalesce(sum(total_exec_time_ms) FILTER (WHERE collected_at <= make_timestamp($3)), 0) AS baseline_ms,
                    coalesce(sum(calls) FILTER (WHERE collected_at > make_timestamp($3)), 0) AS recent_calls,
                    coalesce(sum(total_exec_time_ms) FILTER (WHERE collected_at > make_timestamp($3)), 0) AS recent_ms
             FROM statement_deltas
             WHERE target = $1 AND collected_at > make_timestamp($2) AND collected_at <= make_timestamp($4)
             GROUP BY ALL
         )
         SELECT p.query_id, p.database, p.user_name, x.query,
                p.baseline_calls::BIGINT AS baseline_calls, p.baseline_ms / p.baseline_calls AS baseline_mean_ms,
                p.recent_calls::BIGINT AS recent_calls, p.recent_ms / p.recent_calls AS recent_mean_ms,
                (p.recent_ms / p.recent_calls) / (p.baseline_ms / p.baseline_calls) AS ratio
         FROM per p LEFT JOIN statement_texts x ON x.target = $1 AND x.query_id = p.query_id
         WHERE p.baseline_calls >= $5 AND p.recent_calls >= $5 AND p.baseline_ms > 0
           AND p.recent_ms / p.recent_calls >= $6 * (p.baseline_ms / p.baseline_calls)
         ORDER BY ratio DESC, p.query_id
         LIMIT $7";
    rows(
        connection,
        sql,
        params![
            request.target.as_str(),
            request.baseline_from_us,
            request.recent_from_us,
            request.to_us,
            request.min_calls,
            request.factor,
            request.limit
        ],
    )
}

pub fn statement_history(connection: &Connection, request: &StatementHistoryRequest) -> duckdb::Result<StatementHistoryReply> {
    let sql = format!(
        "SELECT {BUCKET_START} AS bucket_start_us, coalesce(sum(calls), 0)::BIGINT AS calls,
                coalesce(sum(total_exec_time_ms), 0) AS total_exec_time_ms,
                sum(total_exec_time_ms) / nullif(sum(calls), 0) AS mean_exec_time_ms,
                coalesce(sum(rows), 0)::BIGINT AS rows, coalesce(sum(shared_blks_read), 0)::BIGINT AS shared_blks_read
         FROM statement_deltas
         WHERE target = $1 AND collected_at > make_timestamp($2) AND collected_at <= make_timestamp($3) AND query_id = $5
         GROUP BY bucket_start_us
         ORDER BY bucket_start_us"
    );
    let points = rows(
        connection,
        &sql,
        params![
            request.target.as_str(),
            request.from_us,
            request.to_us,
            request.step_us,
            request.query_id
        ],
    )?;
    let mut statement = connection.prepare_cached("SELECT query FROM statement_texts WHERE target = $1 AND query_id = $2")?;
    let query = statement
        .query_map(params![request.target.as_str(), request.query_id], |row| {
            row.get::<_, Option<String>>(0)
        })?
        .next()
        .transpose()?
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

/// The newest snapshot of `kind` (one recorded in `snapshot_parts`) of which every part is stored.
fn latest_complete(connection: &Connection, target: &str, kind: SnapshotKind) -> duckdb::Result<Option<i64>> {
    connection.query_row(
        "SELECT epoch_us(max(collected_at)) FROM (
             SELECT collected_at FROM snapshot_parts
             WHERE target = $1 AND kind = $2
             GROUP BY collected_at
             HAVING count(DISTINCT part_index) = max(part_count)
         )",
        params![target, kind.as_str()],
        |row| row.get(0),
    )
}

pub fn objects(connection: &Connection, request: &ObjectsRequest) -> duckdb::Result<ObjectsReply> {
    let Some(collected_at_us) = latest_complete(connection, request.target.as_str(), SnapshotKind::Objects)? else {
        return Ok(ObjectsReply {
            collected_at_us: None,
            total: 0,
            bytes_of_tables: 0,
            stale_objects: 0,
            skipped_databases: Vec::new(),
            objects: Vec::new(),
        });
    };
    let matching = format!(
        "FROM {objects}
         WHERE target = $1 AND collected_at = make_timestamp($2)
           AND ($3::VARCHAR IS NULL OR database = $3::VARCHAR)
           AND ($4::VARCHAR IS NULL OR schema_name = $4::VARCHAR)
           AND ($5::VARCHAR IS NULL OR kind = $5::VARCHAR)
           AND ($6::VARCHAR IS NULL OR contains(lower(name), lower($6::VARCHAR)))",
        objects = OBJECT_SAMPLES.read_as()
    );
    let filters = params![
        request.target.as_str(),
        collected_at_us,
        request.database,
        request.schema_name,
        request.kind,
        request.name_contains
    ];
    let (total, bytes_of_tables, stale_objects) = connection.query_row(
        &format!(
            "SELECT count(*), coalesce(sum(total_bytes) FILTER (WHERE kind IN ('table', 'materialized_view')), 0)::BIGINT,
                    count(*) FILTER (WHERE size_stale_reason IS NOT NULL)
             {matching}"
        ),
        filters,
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let skipped_databases = rows(
        connection,
        &format!(
            "SELECT database, any_value(substr(size_stale_reason, {start})) AS reason
             FROM object_samples
             WHERE target = $1 AND collected_at = make_timestamp($2) AND starts_with(size_stale_reason, $3)
             GROUP BY database ORDER BY database",
            start = SKIPPED_DATABASE_REASON.len() + 1
        ),
        params![request.target.as_str(), collected_at_us, SKIPPED_DATABASE_REASON],
    )?;
    let sql = format!(
        "SELECT {columns} {matching} ORDER BY {order} LIMIT $7 OFFSET $8",
        columns = select_list_of::<ObjectSize>(&OBJECT_SAMPLES),
        order = object_order(request.order_by)
    );
    let objects = rows(
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
    )?;
    Ok(ObjectsReply {
        collected_at_us: Some(collected_at_us),
        total,
        bytes_of_tables,
        stale_objects,
        skipped_databases,
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
    let points = rows(
        connection,
        &format!(
            "SELECT epoch_us(collected_at) AS collected_at_us, total_bytes, table_bytes, index_bytes, toast_bytes
             FROM object_samples WHERE {IN_RANGE} AND {object} AND size_stale_reason IS NULL ORDER BY collected_at"
        ),
        parameters,
    )?;
    let growth_bytes_per_day = connection.query_row(
        &format!(
            "SELECT regr_slope(total_bytes, epoch(collected_at)) * 86400 FROM object_samples
             WHERE {IN_RANGE} AND {object} AND size_stale_reason IS NULL"
        ),
        parameters,
        |row| row.get(0),
    )?;
    Ok(ObjectGrowthReply {
        points,
        growth_bytes_per_day,
    })
}

/// Tables or databases heading for a size within the forecast's horizon, soonest first.
pub fn size_forecasts(connection: &Connection, request: &SizeForecastsRequest) -> duckdb::Result<Vec<SizeForecast>> {
    // A table's total bytes hold its indexes and TOAST; a database's size is the sum of its
    // tables and materialized views at each round.
    let sizes = if request.databases {
        format!(
            "SELECT database, NULL::VARCHAR AS schema_name, NULL::VARCHAR AS name, collected_at, sum(total_bytes) AS total_bytes
             FROM object_samples
             WHERE {IN_RANGE} AND size_stale_reason IS NULL AND kind IN ('table', 'materialized_view')
             GROUP BY database, collected_at"
        )
    } else {
        format!(
            "SELECT database, schema_name, name, collected_at, total_bytes
             FROM object_samples
             WHERE {IN_RANGE} AND size_stale_reason IS NULL AND kind IN ('table', 'materialized_view')"
        )
    };
    let sql = format!(
        "WITH sizes AS ({sizes}),
         per AS (
             SELECT database, schema_name, name,
                    regr_slope(total_bytes, epoch(collected_at)) * 86400 AS growth_bytes_per_day,
                    arg_max(total_bytes, collected_at)::BIGINT AS latest_bytes, count(*) AS samples
             FROM sizes GROUP BY database, schema_name, name
         ),
         forecast AS (
             SELECT *, CASE WHEN latest_bytes >= $4 THEN 0.0 ELSE ($4 - latest_bytes) / growth_bytes_per_day END AS days_to_reach
             FROM per
             WHERE samples >= 2 AND (latest_bytes >= $4 OR growth_bytes_per_day > 0)
         )
         SELECT database, schema_name, name, latest_bytes, growth_bytes_per_day, days_to_reach
         FROM forecast
         WHERE days_to_reach * 86400000000 <= $5
         ORDER BY days_to_reach, latest_bytes DESC, database, schema_name, name
         LIMIT $6"
    );
    rows(
        connection,
        &sql,
        params![
            request.target.as_str(),
            request.from_us,
            request.to_us,
            request.reaches_bytes,
            request.within_us,
            request.limit
        ],
    )
}

pub fn lock_history(connection: &Connection, request: &LockHistoryRequest) -> duckdb::Result<LockHistoryReply> {
    let buckets = rows(
        connection,
        &format!(
            "WITH per_sample AS (
                 SELECT collected_at, count(DISTINCT pid) FILTER (WHERE NOT granted) AS waiting
                 FROM lock_samples WHERE {IN_RANGE} GROUP BY collected_at
             )
             SELECT {BUCKET_START} AS bucket_start_us, max(waiting) AS max_waiting_sessions
             FROM per_sample GROUP BY bucket_start_us ORDER BY bucket_start_us"
        ),
        params![request.target.as_str(), request.from_us, request.to_us, request.step_us],
    )?;
    // What a blocker ran: its activity sample at or just before the lock sample.
    let blockers = rows(
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
             SELECT blocker_pid AS pid, count(*) AS waiting_samples, epoch_us(min(collected_at)) AS first_seen_us,
                    epoch_us(max(collected_at)) AS last_seen_us, arg_max(query, collected_at) AS query
             FROM described GROUP BY blocker_pid ORDER BY waiting_samples DESC, blocker_pid LIMIT 50"
        ),
        params![request.target.as_str(), request.from_us, request.to_us],
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
    let sql = format!(
        "SELECT {columns} FROM {locks} WHERE target = $1 AND collected_at = make_timestamp($2) ORDER BY pid, lock_type, mode",
        columns = select_list_of::<LockRow>(&LOCK_SAMPLES),
        locks = LOCK_SAMPLES.read_as()
    );
    let locks: Vec<LockRow> = rows(connection, &sql, params![request.target.as_str(), collected_at_us])?;
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
         SELECT {BUCKET_START} AS bucket_start_us,
                sum(commits + rollbacks) / sum(seconds) AS transactions_per_second,
                sum(commits) / sum(seconds) AS commits_per_second, sum(rollbacks) / sum(seconds) AS rollbacks_per_second,
                sum(hits) / nullif(sum(hits + reads), 0) AS cache_hit_ratio,
                sum(temp_bytes) / sum(seconds) AS temp_bytes_per_second, coalesce(sum(deadlocks), 0)::BIGINT AS deadlocks
         FROM deltas
         WHERE collected_at >= make_timestamp($2) AND seconds > 0
           AND commits >= 0 AND rollbacks >= 0 AND hits >= 0 AND reads >= 0 AND temp_bytes >= 0 AND deadlocks >= 0
         GROUP BY bucket_start_us
         ORDER BY bucket_start_us"
    );
    rows(
        connection,
        &sql,
        params![
            request.target.as_str(),
            request.from_us,
            request.to_us,
            request.step_us,
            request.database
        ],
    )
}

/// The older of a relation's two frozen-ID ages as a percentage of the wraparound horizon.
fn wraparound_percent_sql() -> String {
    format!("greatest(frozen_xid_age, frozen_multixact_age) * 100.0 / {WRAPAROUND_HORIZON}")
}

/// The frozen-ID ages of the target's databases from its newest database snapshot that has
/// them, the server's freeze ages, and the tables of its newest complete tables round that
/// need attention most.
pub fn vacuum_health(connection: &Connection, request: &VacuumHealthRequest) -> duckdb::Result<VacuumHealthReply> {
    let target = request.target.as_str();
    let wraparound_percent = wraparound_percent_sql();
    let databases_collected_at_us: Option<i64> = connection.query_row(
        "SELECT epoch_us(max(collected_at)) FROM database_samples WHERE target = $1 AND frozen_xid_age IS NOT NULL",
        [target],
        |row| row.get(0),
    )?;
    let databases: Vec<DatabaseAge> = match databases_collected_at_us {
        None => Vec::new(),
        Some(collected_at_us) => rows(
            connection,
            &format!(
                "SELECT database, frozen_xid_age, frozen_multixact_age, {wraparound_percent} AS wraparound_percent
                 FROM database_samples WHERE target = $1 AND collected_at = make_timestamp($2)
                 ORDER BY wraparound_percent DESC, database"
            ),
            params![target, collected_at_us],
        )?,
    };
    // Both freeze ages from the newest settings reported, in one pass over the instance samples.
    let (freeze_max_age, multixact_freeze_max_age): (Option<i64>, Option<i64>) = connection.query_row(
        "WITH newest AS (SELECT arg_max(settings_json, collected_at) AS settings FROM instance_samples WHERE target = $1)
         SELECT TRY_CAST(json_extract_string(settings, '$.autovacuum_freeze_max_age') AS BIGINT),
                TRY_CAST(json_extract_string(settings, '$.autovacuum_multixact_freeze_max_age') AS BIGINT)
         FROM newest",
        [target],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let mut reply = VacuumHealthReply {
        databases_collected_at_us,
        tables_collected_at_us: latest_complete(connection, target, SnapshotKind::Tables)?,
        freeze_max_age,
        multixact_freeze_max_age,
        databases,
        oldest_tables: Vec::new(),
        most_dead_tuples: Vec::new(),
        vacuum_overdue: Vec::new(),
        vacuum_overdue_count: 0,
    };
    let Some(collected_at_us) = reply.tables_collected_at_us else {
        return Ok(reply);
    };
    // PostgreSQL's own rule (autovacuum.c): threshold + scale factor × reltuples, a reltuples
    // of -1 (never analysed) counting as 0, capped from PostgreSQL 18 on.
    let tables = format!(
        "SELECT *,
                least(vacuum_threshold + vacuum_scale_factor * greatest(coalesce(row_estimate, 0), 0),
                      coalesce(vacuum_max_threshold, 9223372036854775807))::BIGINT AS vacuum_threshold_tuples,
                {wraparound_percent} AS wraparound_percent
         FROM {table_samples} WHERE target = $1 AND collected_at = make_timestamp($2)",
        table_samples = crate::tables::maintenance::TABLE_SAMPLES.read_as()
    );
    let listed = |filter: &str, order: &str| -> duckdb::Result<Vec<TableHealth>> {
        rows(
            connection,
            &format!(
                "SELECT database, schema_name, name, kind, live_tuples, dead_tuples, frozen_xid_age, frozen_multixact_age,
                        wraparound_percent, freeze_max_age, autovacuum_enabled, vacuum_threshold_tuples,
                        epoch_us(last_vacuum) AS last_vacuum_us, epoch_us(last_autovacuum) AS last_autovacuum_us, autovacuum_count
                 FROM ({tables}) WHERE {filter} ORDER BY {order}, database, schema_name, name LIMIT $3"
            ),
            params![target, collected_at_us, request.limit],
        )
    };
    const OVERDUE: &str = "dead_tuples > vacuum_threshold_tuples";
    reply.oldest_tables = listed("true", "wraparound_percent DESC")?;
    reply.most_dead_tuples = listed("dead_tuples > 0", "dead_tuples DESC")?;
    reply.vacuum_overdue = listed(OVERDUE, "dead_tuples / greatest(vacuum_threshold_tuples, 1) DESC")?;
    reply.vacuum_overdue_count = connection.query_row(
        &format!("SELECT count(*) FROM ({tables}) WHERE {OVERDUE}"),
        params![target, collected_at_us],
        |row| row.get(0),
    )?;
    Ok(reply)
}

/// A series point of one link or slot: its bucket and values.
#[derive(serde::Deserialize)]
struct SeriesPoint<Value> {
    bucket_start_us: i64,
    name: String,
    #[serde(flatten)]
    value: Value,
}

#[derive(serde::Deserialize)]
struct LagPoint {
    role: String,
    replay_lag_bytes: Option<i64>,
    replay_lag_ms: Option<f64>,
}

#[derive(serde::Deserialize)]
struct RetainedPoint {
    retained_bytes: Option<i64>,
}

/// Groups points (ordered by name, then bucket) into one series per name laid on the buckets
/// of the request; `start` makes a series from its first point, `set` puts a point in it.
fn series_by_name<Point, Series>(
    buckets: &[i64],
    step_us: i64,
    points: Vec<SeriesPoint<Point>>,
    start: impl Fn(&str, &Point, usize) -> Series,
    set: impl Fn(&mut Series, usize, Point),
) -> Vec<Series> {
    let mut series: Vec<(String, Series)> = Vec::new();
    for point in points {
        let index = usize::try_from((point.bucket_start_us - buckets[0]) / step_us).unwrap_or(usize::MAX);
        if index >= buckets.len() {
            continue;
        }
        if series.last().is_none_or(|(name, _)| *name != point.name) {
            if series.len() == MAX_REPLICATION_SERIES {
                break;
            }
            series.push((point.name.clone(), start(&point.name, &point.value, buckets.len())));
        }
        let (_, current) = series.last_mut().expect("just pushed");
        set(current, index, point.value);
    }
    series.into_iter().map(|(_, series)| series).collect()
}

/// Replication lag per link and retained WAL per slot, the largest sampled in each bucket.
pub fn replication_series(connection: &Connection, request: &ReplicationSeriesRequest) -> duckdb::Result<ReplicationSeriesReply> {
    let bucket_starts_us: Vec<i64> = (request.from_us..request.to_us).step_by(request.step_us as usize).collect();
    let parameters = params![request.target.as_str(), request.from_us, request.to_us, request.step_us];
    let links: Vec<SeriesPoint<LagPoint>> = rows(
        connection,
        &format!(
            "SELECT {BUCKET_START} AS bucket_start_us, role || ' ' || name AS name, role,
                    max(replay_lag_bytes) AS replay_lag_bytes, max(replay_lag_ms) AS replay_lag_ms
             FROM {replication} WHERE {IN_RANGE}
             GROUP BY ALL ORDER BY name, bucket_start_us",
            replication = REPLICATION_SAMPLES.read_as()
        ),
        parameters,
    )?;
    let slots: Vec<SeriesPoint<RetainedPoint>> = rows(
        connection,
        &format!(
            "SELECT {BUCKET_START} AS bucket_start_us, slot_name AS name, max(retained_bytes) AS retained_bytes
             FROM {slots} WHERE {IN_RANGE}
             GROUP BY ALL ORDER BY name, bucket_start_us",
            slots = SLOT_SAMPLES.read_as()
        ),
        parameters,
    )?;
    let links = series_by_name(
        &bucket_starts_us,
        request.step_us,
        links,
        |name, point, length| LagSeries {
            role: point.role.clone(),
            name: name.strip_prefix(&format!("{} ", point.role)).unwrap_or(name).to_owned(),
            replay_lag_bytes: vec![None; length],
            replay_lag_ms: vec![None; length],
        },
        |series, index, point| {
            series.replay_lag_bytes[index] = point.replay_lag_bytes;
            series.replay_lag_ms[index] = point.replay_lag_ms;
        },
    );
    let slots = series_by_name(
        &bucket_starts_us,
        request.step_us,
        slots,
        |name, _, length| RetainedWalSeries {
            slot_name: name.to_owned(),
            retained_bytes: vec![None; length],
        },
        |series, index, point| series.retained_bytes[index] = point.retained_bytes,
    );
    Ok(ReplicationSeriesReply {
        bucket_starts_us,
        links,
        slots,
    })
}

/// One stored settings row, as the changes query reads it.
#[derive(serde::Deserialize)]
struct StoredSetting {
    collected_at_us: i64,
    category: String,
    name: String,
    value: String,
    pending_restart: bool,
}

/// A settings snapshot: (category, name) → (value, pending restart).
type SettingsSnapshot = BTreeMap<(String, String), (String, bool)>;

/// The settings snapshots that change the range can show are read at most: they are published
/// only on a change, so this is many days of a busy target.
const MAX_SETTINGS_SNAPSHOTS: i64 = 2_000;

/// Restarts, upgrades, settings and extensions that changed in the range: each settings
/// snapshot compared with the one before it (the first with the newest one before the range).
pub fn changes(connection: &Connection, request: &ChangesRequest) -> duckdb::Result<ChangesReply> {
    let stored: Vec<StoredSetting> = rows(
        connection,
        &format!(
            "WITH snapshots AS (
                 SELECT DISTINCT collected_at FROM {settings}
                 WHERE target = $1 AND collected_at < make_timestamp($3)
                   AND collected_at >= coalesce(
                       (SELECT max(collected_at) FROM {settings} WHERE target = $1 AND collected_at < make_timestamp($2)),
                       make_timestamp($2))
                 ORDER BY collected_at LIMIT $4
             )
             SELECT epoch_us(s.collected_at) AS collected_at_us, s.category, s.name, s.value, s.pending_restart
             FROM {settings} s JOIN snapshots USING (collected_at)
             WHERE s.target = $1
             ORDER BY s.collected_at, s.category, s.name",
            settings = SETTING_SAMPLES.read_as()
        ),
        params![request.target.as_str(), request.from_us, request.to_us, MAX_SETTINGS_SNAPSHOTS],
    )?;
    let mut snapshots: Vec<(i64, SettingsSnapshot)> = Vec::new();
    for row in stored {
        if snapshots.last().is_none_or(|(at, _)| *at != row.collected_at_us) {
            snapshots.push((row.collected_at_us, BTreeMap::new()));
        }
        let (_, entries) = snapshots.last_mut().expect("just pushed");
        entries.insert((row.category, row.name), (row.value, row.pending_restart));
    }
    let mut changes = Vec::new();
    for pair in snapshots.windows(2) {
        let ((_, before), (at_us, after)) = (&pair[0], &pair[1]);
        let keys: std::collections::BTreeSet<&(String, String)> = before.keys().chain(after.keys()).collect();
        for key in keys {
            let (old, new) = (before.get(key), after.get(key));
            if old == new {
                continue;
            }
            changes.push(Change {
                at_us: *at_us,
                category: key.0.clone(),
                name: key.1.clone(),
                old_value: old.map(|(value, _)| value.clone()),
                new_value: new.map(|(value, _)| value.clone()),
                pending_restart: new.is_some_and(|(_, pending)| *pending),
            });
        }
    }
    let truncated = changes.len() > MAX_CHANGES;
    changes.truncate(MAX_CHANGES);
    Ok(ChangesReply { changes, truncated })
}

/// `value`'s increase since the sample before, NULL where it went down (a statistics reset).
fn increase(value: &str) -> String {
    format!("CASE WHEN {value} >= lag({value}) OVER w THEN {value} - lag({value}) OVER w END")
}

/// Checkpoints, WAL and buffer writes per bucket, and `pg_stat_io` per backend type over the
/// range, from counter increases between consecutive samples (samples up to 15 minutes
/// before the range give its first bucket a previous value).
pub fn wal_series(connection: &Connection, request: &WalSeriesRequest) -> duckdb::Result<WalSeriesReply> {
    let wal_written = "coalesce(wal_bytes, wal_position_bytes)";
    let points_sql = format!(
        "WITH deltas AS (
             SELECT collected_at,
                    {timed} AS timed, {requested} AS requested, {wal} AS wal,
                    {checkpoint} AS checkpoint_buffers, {clean} AS clean_buffers, {backend} AS backend_buffers,
                    {failed} AS failed,
                    epoch(collected_at) - epoch(lag(collected_at) OVER w) AS seconds
             FROM {wal_samples}
             WHERE target = $1 AND collected_at >= make_timestamp($2) - INTERVAL 15 minute AND collected_at < make_timestamp($3)
             WINDOW w AS (ORDER BY collected_at)
         )
         SELECT {BUCKET_START} AS bucket_start_us,
                coalesce(sum(timed), 0)::BIGINT AS checkpoints_timed, coalesce(sum(requested), 0)::BIGINT AS checkpoints_requested,
                sum(wal) / sum(seconds) FILTER (WHERE wal IS NOT NULL) AS wal_bytes_per_second,
                sum(checkpoint_buffers) / sum(seconds) FILTER (WHERE checkpoint_buffers IS NOT NULL) AS checkpoint_buffers_per_second,
                sum(clean_buffers) / sum(seconds) FILTER (WHERE clean_buffers IS NOT NULL) AS bgwriter_buffers_per_second,
                sum(backend_buffers) / sum(seconds) FILTER (WHERE backend_buffers IS NOT NULL) AS backend_buffers_per_second,
                coalesce(sum(failed), 0)::BIGINT AS archive_failures
         FROM deltas
         WHERE collected_at >= make_timestamp($2) AND seconds > 0
         GROUP BY bucket_start_us
         ORDER BY bucket_start_us",
        timed = increase("checkpoints_timed"),
        requested = increase("checkpoints_requested"),
        wal = increase(wal_written),
        checkpoint = increase("buffers_checkpoint"),
        clean = increase("buffers_clean"),
        backend = increase("buffers_backend"),
        failed = increase("archive_failed_count"),
        wal_samples = WAL_SAMPLES.read_as()
    );
    let points = rows(
        connection,
        &points_sql,
        params![request.target.as_str(), request.from_us, request.to_us, request.step_us],
    )?;
    let counters = ["reads", "read_bytes", "writes", "write_bytes", "extends", "hits", "fsyncs"];
    let increases: Vec<String> = counters
        .iter()
        .map(|counter| format!("{} AS {counter}", increase(counter)))
        .collect();
    let sums: Vec<String> = counters
        .iter()
        .map(|counter| format!("coalesce(sum({counter}), 0)::BIGINT AS {counter}"))
        .collect();
    let io_sql = format!(
        "WITH deltas AS (
             SELECT collected_at, backend_type, {increases}
             FROM {io_samples}
             WHERE target = $1 AND collected_at >= make_timestamp($2) - INTERVAL 15 minute AND collected_at < make_timestamp($3)
             WINDOW w AS (PARTITION BY backend_type, object, context ORDER BY collected_at)
         )
         SELECT backend_type, {sums}
         FROM deltas WHERE collected_at >= make_timestamp($2)
         GROUP BY backend_type
         ORDER BY coalesce(sum(reads), 0) + coalesce(sum(writes), 0) + coalesce(sum(extends), 0) + coalesce(sum(fsyncs), 0) DESC,
                  backend_type",
        increases = increases.join(", "),
        sums = sums.join(", "),
        io_samples = IO_SAMPLES.read_as()
    );
    let io = rows(
        connection,
        &io_sql,
        params![request.target.as_str(), request.from_us, request.to_us],
    )?;
    Ok(WalSeriesReply { points, io })
}

#[cfg(test)]
mod tests {
    use pgmon_contract::event::{decode_snapshot, AnySnapshot};

    use super::*;
    use crate::storage::store::{BatchMessage, IngestBatch, Store};
    use crate::StorageOptions;

    /// A version-1 golden fixture.
    fn fixture(name: &str) -> AnySnapshot {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contract/fixtures/v1")
            .join(name);
        decode_snapshot(&std::fs::read(path).unwrap()).unwrap()
    }

    /// A store in a temporary directory holding `snapshots`, in this order.
    fn store_of(snapshots: Vec<AnySnapshot>) -> (tempfile::TempDir, Store) {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Store::open(directory.path(), "PGMON", StorageOptions::default()).unwrap();
        let messages = snapshots
            .into_iter()
            .enumerate()
            .map(|(index, snapshot)| BatchMessage {
                sequence: index as u64 + 1,
                stored_at_us: snapshot.collected_at_us(),
                snapshot: Some(snapshot),
            })
            .collect();
        store.apply(&IngestBatch { messages }).unwrap();
        (directory, store)
    }

    /// Two wal samples 10 s apart (and two io samples): one increase per counter.
    #[test]
    fn wal_series_counts_increases_between_samples() {
        let later = |snapshot: AnySnapshot| match snapshot {
            AnySnapshot::Wal(mut wal) => {
                wal.collected_at_us += 10_000_000;
                wal.rows[0].checkpoints_requested += 2;
                wal.rows[0].wal_bytes = wal.rows[0].wal_bytes.map(|bytes| bytes + 10_485_760);
                AnySnapshot::Wal(wal)
            }
            AnySnapshot::Io(mut io) => {
                io.collected_at_us += 10_000_000;
                io.rows[0].extends = io.rows[0].extends.map(|extends| extends + 100);
                AnySnapshot::Io(io)
            }
            other => other,
        };
        let (_directory, store) = store_of(vec![
            fixture("wal.json"),
            fixture("io.json"),
            later(fixture("wal.json")),
            later(fixture("io.json")),
        ]);
        let from_us = 1_764_000_300_000_000;
        let request = WalSeriesRequest {
            target: "prod-db1".parse().unwrap(),
            from_us,
            to_us: from_us + 120_000_000,
            step_us: 60_000_000,
        };
        let reply = wal_series(&store.reader().unwrap(), &request).unwrap();
        assert_eq!(reply.points.len(), 1, "{reply:?}");
        let point = &reply.points[0];
        assert_eq!((point.checkpoints_requested, point.checkpoints_timed), (2, 0));
        assert_eq!(point.wal_bytes_per_second, Some(1_048_576.0));
        let client = reply.io.iter().find(|totals| totals.backend_type == "client backend").unwrap();
        assert_eq!((client.extends, client.reads), (100, 0));
    }

    /// The tables and database fixtures stored, then read back as the Health tab reads them.
    #[test]
    fn vacuum_health_applies_postgresql_thresholds_to_the_newest_round() {
        let (_directory, store) = store_of(vec![
            fixture("database.json"),
            fixture("database-with-ages.json"),
            fixture("tables.json"),
        ]);
        let request = VacuumHealthRequest {
            target: "prod-db1".parse().unwrap(),
            limit: 10,
        };
        let reply = vacuum_health(&store.reader().unwrap(), &request).unwrap();
        assert_eq!(
            reply.databases_collected_at_us,
            Some(1_764_000_020_000_000),
            "the newest sample with ages"
        );
        assert_eq!(reply.freeze_max_age, Some(200_000_000));
        let names: Vec<&str> = reply.databases.iter().map(|database| database.database.as_str()).collect();
        assert_eq!(names, ["shop", "postgres"], "oldest first");
        assert!((reply.databases[0].wraparound_percent - 180_000_512.0 * 100.0 / 2_147_483_648.0).abs() < 1e-9);
        assert_eq!(reply.tables_collected_at_us, Some(1_764_000_300_000_000));
        let orders = &reply.oldest_tables[0];
        assert_eq!(orders.name, "orders");
        // 50 + 0.2 × 12,000,000, below the cap of 100 million.
        assert_eq!(orders.vacuum_threshold_tuples, 2_400_050);
        assert_eq!(reply.vacuum_overdue_count, 1, "2.6 million dead tuples are past it");
        assert_eq!(reply.vacuum_overdue[0].name, "orders");
        let most_dead: Vec<&str> = reply.most_dead_tuples.iter().map(|table| table.name.as_str()).collect();
        assert_eq!(most_dead, ["orders"], "the TOAST table has none");
        let toast = &reply.oldest_tables[1];
        assert_eq!(
            (toast.kind.as_str(), toast.autovacuum_enabled, toast.vacuum_threshold_tuples),
            ("toast", false, 50)
        );
    }
}
