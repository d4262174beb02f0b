//! The "activity series" named query: average active sessions per time bucket, by one dimension.
//!
//! DuckDB does the aggregation and ranks the series; Rust only lays the result onto the bucket axis.

use std::collections::{BTreeMap, HashMap};

use duckdb::Connection;
use pgmon_contract::query::{ActivityDimension, ActivitySeries, ActivitySeriesReply, ActivitySeriesRequest};
use pgmon_contract::target::TargetName;

use crate::tables::activity_minutes::active_session_predicate;

/// The label of samples without a wait event: the backend was running on CPU (or waiting for
/// it), as Performance Insights and ASH call it.
pub const ON_CPU_LABEL: &str = "CPU";

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

/// One aggregated row: bucket index, samples in it, and the active sessions of one series.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub(crate) struct BucketLoad {
    pub bucket: i64,
    pub samples: i64,
    /// The dimension value of one of the top series; `None` for the "other" series and for a
    /// bucket without any load.
    pub dimension_value: Option<String>,
    /// 1 for the biggest series; `None` for "other" and for a bucket without load.
    pub series_rank: Option<i64>,
    pub is_other: Option<bool>,
    pub active_rows: i64,
    /// How many series were summed into "other" (the same in every row).
    pub other_series: i64,
}

/// Which samples are complete in the range: a sample counts once every part that carried it is
/// stored; one still arriving, or whose part was lost, counts nowhere (not in the samples, not
/// in the load). Rows written before parts were recorded count once per collection time.
const COMPLETE_SAMPLES: &str = "sample_parts AS (
         SELECT collected_at, count(DISTINCT coalesce(part_index, 0)) >= coalesce(max(part_count), 1) AS complete
         FROM activity_snapshots
         WHERE target = $1 AND collected_at >= make_timestamp($2) AND collected_at < make_timestamp($3)
         GROUP BY collected_at
     ),
     incomplete AS (SELECT collected_at FROM sample_parts WHERE NOT complete)";

/// Runs the query against the store. A range whose start and step are whole minutes is charted
/// from the per-minute rollup (`activity_minutes`, less the rows of incomplete samples), which
/// gives the same averages from far fewer rows; any other from every sampled row. DuckDB ranks
/// the series by their load and sums those beyond `top` into one "other" series.
pub fn activity_series(connection: &Connection, request: &ActivitySeriesRequest) -> duckdb::Result<ActivitySeriesReply> {
    let from_rollup = request.from_us % MINUTE_US == 0 && request.step_us % MINUTE_US == 0;
    let active = active_session_predicate();
    let dimension = dimension_expression(request.by);
    let load = if from_rollup {
        format!(
            "SELECT bucket, dimension_value, sum(active_rows) AS active_rows FROM (
                 SELECT (epoch_us(minute) - $2) // $4 AS bucket, {dimension} AS dimension_value, active_rows
                 FROM activity_minutes
                 WHERE target = $1 AND minute >= make_timestamp($2) AND minute < make_timestamp($3)
                 UNION ALL
                 SELECT (epoch_us(collected_at) - $2) // $4, {dimension}, -1
                 FROM activity_samples
                 WHERE target = $1 AND collected_at IN (SELECT collected_at FROM incomplete) AND {active}
             ) GROUP BY ALL"
        )
    } else {
        format!(
            "SELECT (epoch_us(collected_at) - $2) // $4 AS bucket, {dimension} AS dimension_value, count(*) AS active_rows
             FROM activity_samples
             WHERE target = $1 AND collected_at >= make_timestamp($2) AND collected_at < make_timestamp($3)
               AND {active} AND collected_at NOT IN (SELECT collected_at FROM incomplete)
             GROUP BY ALL"
        )
    };
    let sql = format!(
        "WITH {COMPLETE_SAMPLES},
         snapshots AS (
             SELECT (epoch_us(collected_at) - $2) // $4 AS bucket, count(*) FILTER (WHERE complete) AS samples
             FROM sample_parts GROUP BY bucket
         ),
         load AS ({load}),
         ranked AS (
             SELECT dimension_value, row_number() OVER (ORDER BY sum(active_rows) DESC, dimension_value) AS series_rank
             FROM load GROUP BY dimension_value HAVING sum(active_rows) > 0
         ),
         folded AS (
             SELECT l.bucket, r.series_rank > $5 AS is_other,
                    CASE WHEN r.series_rank <= $5 THEN l.dimension_value END AS dimension_value,
                    CASE WHEN r.series_rank <= $5 THEN r.series_rank END AS series_rank,
                    sum(l.active_rows) AS active_rows
             FROM load l JOIN ranked r USING (dimension_value)
             GROUP BY ALL
         )
         SELECT s.bucket, s.samples, f.dimension_value, f.series_rank, f.is_other,
                coalesce(f.active_rows, 0)::BIGINT AS active_rows,
                (SELECT count(*) FROM ranked WHERE series_rank > $5) AS other_series
         FROM snapshots s LEFT JOIN folded f USING (bucket)
         ORDER BY s.bucket"
    );
    let loads: Vec<BucketLoad> = crate::history::rows(
        connection,
        &sql,
        duckdb::params![
            request.target.as_str(),
            request.from_us,
            request.to_us,
            request.step_us,
            i64::from(request.top)
        ],
    )?;
    let mut reply = lay_out_series(request, &loads);
    if request.by == ActivityDimension::QueryId {
        add_statement_texts(connection, &request.target, &mut reply.series)?;
    }
    Ok(reply)
}

/// How much of a statement's text a chart legend shows.
const LEGEND_TEXT_CHARACTERS: i64 = 120;

/// Gives each series of a chart stacked by query id the start of its statement's text.
fn add_statement_texts(connection: &Connection, target: &TargetName, series: &mut [ActivitySeries]) -> duckdb::Result<()> {
    // Names are query ids the store formatted itself; parsing them back keeps the SQL literal-safe.
    let query_ids: Vec<String> = series
        .iter()
        .filter_map(|series| series.name.parse::<i64>().ok())
        .map(|query_id| query_id.to_string())
        .collect();
    if query_ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT query_id::VARCHAR, left(query, {LEGEND_TEXT_CHARACTERS}) FROM statement_texts
         WHERE target = $1 AND query_id IN ({})",
        query_ids.join(", ")
    );
    let mut statement = connection.prepare(&sql)?;
    let texts: HashMap<String, String> = statement
        .query_map([target.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<duckdb::Result<_>>()?;
    for series in series.iter_mut().filter(|series| series.other_series.is_none()) {
        series.query = texts.get(&series.name).cloned();
    }
    Ok(())
}

/// The name of the series summing everything beyond the top ones.
pub const OTHER_SERIES_NAME: &str = "other";

/// Lays aggregated rows onto the full bucket axis: buckets without samples are `None` (a gap,
/// not zero load); series keep the rank DuckDB gave them, "other" last.
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
    let mut by_rank: BTreeMap<i64, ActivitySeries> = BTreeMap::new();
    for load in loads {
        let rank = match (load.series_rank, load.is_other) {
            (Some(rank), _) => rank,
            (None, Some(true)) => i64::MAX,
            _ => continue,
        };
        let Ok(index) = usize::try_from(load.bucket) else { continue };
        if index >= bucket_count || load.samples == 0 {
            continue;
        }
        let series = by_rank.entry(rank).or_insert_with(|| ActivitySeries {
            name: load.dimension_value.clone().unwrap_or_else(|| OTHER_SERIES_NAME.to_owned()),
            values: empty_series.clone(),
            other_series: (rank == i64::MAX).then(|| u32::try_from(load.other_series).unwrap_or(u32::MAX)),
            query: None,
        });
        series.values[index] = Some(load.active_rows as f64 / load.samples as f64);
    }
    ActivitySeriesReply {
        target: request.target.clone(),
        by: request.by,
        from_us: request.from_us,
        to_us: request.to_us,
        step_us: request.step_us,
        bucket_starts_us,
        samples,
        series: by_rank.into_values().collect(),
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
            top: 20,
        }
    }

    fn load(bucket: i64, samples: i64, series: Option<(&str, i64)>, active_rows: i64) -> BucketLoad {
        BucketLoad {
            bucket,
            samples,
            dimension_value: series.map(|(name, _)| name.to_owned()),
            series_rank: series.map(|(_, rank)| rank),
            is_other: series.map(|_| false),
            active_rows,
            other_series: 0,
        }
    }

    #[test]
    fn buckets_without_samples_are_gaps_and_with_samples_but_no_load_are_zero() {
        let reply = lay_out_series(
            &request(),
            &[
                load(0, 2, Some(("PgSleep", 1)), 6),
                load(1, 1, None, 0),
                load(3, 1, Some(("PgSleep", 1)), 1),
            ],
        );
        assert_eq!(reply.bucket_starts_us, vec![1_000_000, 2_000_000, 3_000_000, 4_000_000]);
        assert_eq!(reply.samples, vec![2, 1, 0, 1]);
        assert_eq!(reply.series.len(), 1);
        assert_eq!(reply.series[0].name, "PgSleep");
        assert_eq!(reply.series[0].values, vec![Some(3.0), Some(0.0), None, Some(1.0)]);
    }

    #[test]
    fn series_keep_their_rank_and_other_comes_last() {
        let other = BucketLoad {
            bucket: 0,
            samples: 1,
            dimension_value: None,
            series_rank: None,
            is_other: Some(true),
            active_rows: 7,
            other_series: 12,
        };
        let reply = lay_out_series(
            &request(),
            &[
                other,
                load(0, 1, Some(("small", 2)), 1),
                load(0, 1, Some(("big", 1)), 5),
                load(1, 1, Some(("small", 2)), 1),
            ],
        );
        let names: Vec<&str> = reply.series.iter().map(|series| series.name.as_str()).collect();
        assert_eq!(names, vec!["big", "small", OTHER_SERIES_NAME]);
        assert_eq!(reply.series[2].other_series, Some(12));
        assert_eq!(reply.series[2].values[0], Some(7.0));
    }

    #[test]
    fn rows_outside_the_axis_are_ignored() {
        let reply = lay_out_series(&request(), &[load(9, 1, Some(("late", 1)), 1), load(-1, 1, Some(("early", 2)), 1)]);
        assert!(reply.series.is_empty());
        assert_eq!(reply.samples, vec![0, 0, 0, 0]);
    }
}
