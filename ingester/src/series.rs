//! The "activity series" named query: average active sessions per time bucket, by one dimension.
//!
//! DuckDB does the aggregation; Rust only lays the result onto the bucket axis.

use std::collections::HashMap;

use duckdb::Connection;
use pgmon_common::query::{ActivityDimension, ActivitySeries, ActivitySeriesReply, ActivitySeriesRequest};

/// The label of samples without a wait event: the backend was running on CPU (or waiting for
/// it), as Performance Insights and ASH call it.
pub const ON_CPU_LABEL: &str = "CPU";

/// Which backends count as active sessions: those working for a client or doing maintenance,
/// in state active. WAL senders and background processes would add a constant floor. One list
/// serves both the SQL over stored samples and the rollup built from rows in hand.
const ACTIVE_STATES: &[&str] = &["active", "fastpath function call"];
const ACTIVE_BACKEND_TYPES: &[&str] = &["client backend", "parallel worker", "autovacuum worker", "background worker"];

/// The SQL condition on `activity_samples` that selects active sessions.
pub(crate) fn active_session_predicate() -> String {
    let quoted = |values: &[&str]| values.iter().map(|value| format!("'{value}'")).collect::<Vec<_>>().join(", ");
    format!(
        "state IN ({}) AND backend_type IN ({})",
        quoted(ACTIVE_STATES),
        quoted(ACTIVE_BACKEND_TYPES)
    )
}

/// [`active_session_predicate`] for a row in hand, when the per-minute rollup is built.
pub(crate) fn is_active_session(row: &pgmon_common::event::ActivityRow) -> bool {
    let listed = |value: &Option<String>, values: &[&str]| value.as_deref().is_some_and(|value| values.contains(&value));
    listed(&row.state, ACTIVE_STATES) && listed(&row.backend_type, ACTIVE_BACKEND_TYPES)
}

const MINUTE_US: i64 = 60_000_000;

/// The label of samples without a value in the chosen column (no query id, no client address).
pub const NO_VALUE_LABEL: &str = "(none)";

/// The expression a dimension groups by; a session without a wait event is on CPU.
fn dimension_expression(dimension: ActivityDimension) -> String {
    let column = match dimension {
        ActivityDimension::WaitEventType => "wait_event_type",
        ActivityDimension::WaitEvent => "wait_event",
        ActivityDimension::QueryId => "query_id::VARCHAR",
        ActivityDimension::Database => "database",
        ActivityDimension::User => "user_name",
        ActivityDimension::Application => "application",
        ActivityDimension::ClientAddress => "client_addr",
        ActivityDimension::BackendType => "backend_type",
    };
    let missing = match dimension {
        ActivityDimension::WaitEventType | ActivityDimension::WaitEvent => ON_CPU_LABEL,
        _ => NO_VALUE_LABEL,
    };
    format!("coalesce({column}, '{missing}')")
}

/// One aggregated row: bucket index, samples in it, and the active sessions of one dimension value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketLoad {
    pub bucket: i64,
    pub samples: i64,
    pub dimension_value: Option<String>,
    pub active_rows: i64,
}

/// Runs the query against the store. A range whose start and step are whole minutes is charted
/// from the per-minute rollup (`activity_minutes`, with snapshots counted per minute too), which
/// gives the same averages from far fewer rows; any other from every sampled row.
pub fn activity_series(connection: &Connection, request: &ActivitySeriesRequest) -> duckdb::Result<ActivitySeriesReply> {
    let from_rollup = request.from_us % MINUTE_US == 0 && request.step_us % MINUTE_US == 0;
    let (load_time, load_table, load_filter, load_count) = if from_rollup {
        ("minute", "activity_minutes", "TRUE".to_owned(), "sum(active_rows)")
    } else {
        ("collected_at", "activity_samples", active_session_predicate(), "count(*)")
    };
    let sql = format!(
        "WITH snapshots AS (
             SELECT (epoch_us(collected_at) - $2) // $4 AS bucket, count(*) AS samples
             FROM activity_snapshots
             WHERE target = $1 AND collected_at >= make_timestamp($2) AND collected_at < make_timestamp($3)
             GROUP BY bucket
         ),
         load AS (
             SELECT (epoch_us({load_time}) - $2) // $4 AS bucket, {dimension} AS dimension_value, {load_count} AS active_rows
             FROM {load_table}
             WHERE target = $1 AND {load_time} >= make_timestamp($2) AND {load_time} < make_timestamp($3)
               AND {load_filter}
             GROUP BY ALL
         )
         SELECT s.bucket, s.samples, l.dimension_value, coalesce(l.active_rows, 0)::BIGINT
         FROM snapshots s LEFT JOIN load l USING (bucket)
         ORDER BY s.bucket",
        dimension = dimension_expression(request.by),
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let loads = statement
        .query_map(
            duckdb::params![request.target.as_str(), request.from_us, request.to_us, request.step_us],
            |row| {
                Ok(BucketLoad {
                    bucket: row.get(0)?,
                    samples: row.get(1)?,
                    dimension_value: row.get(2)?,
                    active_rows: row.get(3)?,
                })
            },
        )?
        .collect::<duckdb::Result<Vec<_>>>()?;
    Ok(lay_out_series(request, &loads))
}

/// Lays aggregated rows onto the full bucket axis: buckets without samples are `None` (a gap,
/// not zero load), series are ordered by total load, biggest first.
pub(crate) fn lay_out_series(request: &ActivitySeriesRequest, loads: &[BucketLoad]) -> ActivitySeriesReply {
    let bucket_count = usize::try_from(request.bucket_count()).unwrap_or(0);
    let bucket_starts_us = (0..bucket_count as i64)
        .map(|index| request.from_us + index * request.step_us)
        .collect();
    let mut samples = vec![0u32; bucket_count];
    for load in loads {
        if let Some(slot) = usize::try_from(load.bucket).ok().and_then(|index| samples.get_mut(index)) {
            *slot = u32::try_from(load.samples).unwrap_or(u32::MAX);
        }
    }
    let empty_series: Vec<Option<f64>> = samples.iter().map(|count| (*count > 0).then_some(0.0)).collect();
    let mut by_value: HashMap<&str, Vec<Option<f64>>> = HashMap::new();
    for load in loads {
        let (Some(value), Ok(index)) = (load.dimension_value.as_deref(), usize::try_from(load.bucket)) else {
            continue;
        };
        if index >= bucket_count || load.samples == 0 {
            continue;
        }
        let values = by_value.entry(value).or_insert_with(|| empty_series.clone());
        values[index] = Some(load.active_rows as f64 / load.samples as f64);
    }
    let mut series: Vec<ActivitySeries> = by_value
        .into_iter()
        .map(|(name, values)| ActivitySeries {
            name: name.to_owned(),
            values,
        })
        .collect();
    let total = |series: &ActivitySeries| series.values.iter().flatten().sum::<f64>();
    series.sort_by(|a, b| total(b).total_cmp(&total(a)).then_with(|| a.name.cmp(&b.name)));
    ActivitySeriesReply {
        target: request.target.clone(),
        by: request.by,
        from_us: request.from_us,
        to_us: request.to_us,
        step_us: request.step_us,
        bucket_starts_us,
        samples,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ActivitySeriesRequest {
        ActivitySeriesRequest {
            target: "db".parse().unwrap(),
            from_us: 1_000_000,
            to_us: 5_000_000,
            step_us: 1_000_000,
            by: ActivityDimension::WaitEvent,
        }
    }

    fn load(bucket: i64, samples: i64, value: Option<&str>, active_rows: i64) -> BucketLoad {
        BucketLoad {
            bucket,
            samples,
            dimension_value: value.map(str::to_owned),
            active_rows,
        }
    }

    #[test]
    fn buckets_without_samples_are_gaps_and_with_samples_but_no_load_are_zero() {
        let reply = lay_out_series(
            &request(),
            &[load(0, 2, Some("PgSleep"), 6), load(1, 1, None, 0), load(3, 1, Some("PgSleep"), 1)],
        );
        assert_eq!(reply.bucket_starts_us, vec![1_000_000, 2_000_000, 3_000_000, 4_000_000]);
        assert_eq!(reply.samples, vec![2, 1, 0, 1]);
        assert_eq!(reply.series.len(), 1);
        assert_eq!(reply.series[0].name, "PgSleep");
        assert_eq!(reply.series[0].values, vec![Some(3.0), Some(0.0), None, Some(1.0)]);
    }

    #[test]
    fn series_are_ordered_by_total_load() {
        let reply = lay_out_series(
            &request(),
            &[
                load(0, 1, Some("small"), 1),
                load(0, 1, Some("big"), 5),
                load(1, 1, Some("small"), 1),
            ],
        );
        let names: Vec<&str> = reply.series.iter().map(|series| series.name.as_str()).collect();
        assert_eq!(names, vec!["big", "small"]);
    }

    #[test]
    fn rows_outside_the_axis_are_ignored() {
        let reply = lay_out_series(&request(), &[load(9, 1, Some("late"), 1), load(-1, 1, Some("early"), 1)]);
        assert!(reply.series.is_empty());
        assert_eq!(reply.samples, vec![0, 0, 0, 0]);
    }
}
