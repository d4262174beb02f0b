//! `activity_minutes`: active sessions per minute and combination of the chart's dimensions,
//! so long ranges are charted from here instead of from every sampled row.

use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{ActivityRow, Snapshot, SnapshotKind};
use serde::{Deserialize, Serialize};

use super::{column, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const ACTIVITY_MINUTES: Table = Table {
    name: "activity_minutes",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Field("target")),
        column("minute", "TIMESTAMP", Source::Field("minute_us")),
        column("wait_event_type", "VARCHAR", Source::Field("wait_event_type")),
        column("wait_event", "VARCHAR", Source::Field("wait_event")),
        column("query_id", "BIGINT", Source::Field("query_id")),
        column("database", "VARCHAR", Source::Field("database")),
        column("user_name", "VARCHAR", Source::Field("user_name")),
        column("application", "VARCHAR", Source::Field("application")),
        column("client_addr", "VARCHAR", Source::Field("client_addr")),
        column("backend_type", "VARCHAR", Source::Field("backend_type")),
        column("active_rows", "INTEGER", Source::Field("active_rows")),
    ],
    compaction: Compaction::Rewritten(compacted_minutes),
    stores: Stores {
        kinds: &[SnapshotKind::Activity],
        batch: |snapshots| batch(&snapshots_of(snapshots)),
        sample_rows: false,
    },
};

/// Each batch wrote its own rows for a minute; one row per minute and combination is what
/// readers sum anyway. The rollup stays in time order (charts read it by time range), a
/// minute's rows grouped by statement and wait, which its other columns mostly follow: a third
/// fewer bytes than in arrival order.
fn compacted_minutes(source: &str, target: &str) -> String {
    format!(
        "INSERT INTO {target}.activity_minutes BY NAME
         SELECT target, minute, wait_event_type, wait_event, query_id, database, user_name, application,
                client_addr, backend_type, sum(active_rows)::INTEGER AS active_rows
         FROM {source}.activity_minutes GROUP BY ALL ORDER BY target, minute, query_id, wait_event_type, wait_event;\n"
    )
}

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
fn is_active_session(row: &pgmon_contract::event::ActivityRow) -> bool {
    let listed = |value: &Option<String>, values: &[&str]| value.as_deref().is_some_and(|value| values.contains(&value));
    listed(&row.state, ACTIVE_STATES) && listed(&row.backend_type, ACTIVE_BACKEND_TYPES)
}

/// One row of `activity_minutes`: how many active sessions of one combination of the chart's
/// dimensions were sampled in one minute.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ActivityMinuteRow {
    pub target: String,
    pub minute_us: i64,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub query_id: Option<i64>,
    pub database: Option<String>,
    pub user_name: Option<String>,
    pub application: Option<String>,
    pub client_addr: Option<String>,
    pub backend_type: Option<String>,
    pub active_rows: i32,
}

/// Rows of `activity_minutes` for a batch of activity snapshots. A minute spread over several
/// batches gets a row from each; readers sum them.
fn batch(snapshots: &[(u64, &Snapshot<ActivityRow>)]) -> RecordBatch {
    // Keyed by borrowed values with a fast hash (the keys come from our own collector, and a
    // batch's map lives for one call): most rows fall into a combination seen before, and
    // copying their strings into keys or hashing them with SipHash was the larger part of
    // storing a batch.
    type MinuteKey<'a> = (&'a str, i64, [Option<&'a str>; 7], Option<i64>);
    let mut counts: std::collections::HashMap<MinuteKey, i32, foldhash::fast::RandomState> = std::collections::HashMap::default();
    for (_, snapshot) in snapshots {
        let minute_us = snapshot.collected_at_us.div_euclid(60_000_000) * 60_000_000;
        for row in snapshot.rows.iter().filter(|row| is_active_session(row)) {
            let dimensions = [
                &row.wait_event_type,
                &row.wait_event,
                &row.database,
                &row.user,
                &row.application,
                &row.client_addr,
                &row.backend_type,
            ]
            .map(|value| value.as_deref());
            *counts
                .entry((snapshot.target.as_str(), minute_us, dimensions, row.query_id))
                .or_default() += 1;
        }
    }
    let owned = |value: Option<&str>| value.map(str::to_owned);
    let rows: Vec<ActivityMinuteRow> = counts
        .into_iter()
        .map(|((target, minute_us, dimensions, query_id), active_rows)| {
            let [wait_event_type, wait_event, database, user_name, application, client_addr, backend_type] = dimensions.map(owned);
            ActivityMinuteRow {
                target: target.to_owned(),
                minute_us,
                wait_event_type,
                wait_event,
                query_id,
                database,
                user_name,
                application,
                client_addr,
                backend_type,
                active_rows,
            }
        })
        .collect();
    let fields = super::row_fields::<ActivityMinuteRow>();
    let row_columns = serde_arrow::to_record_batch(&fields, &rows).expect("rollup fields are traced from the row type");
    super::columns_by_declaration(&ACTIVITY_MINUTES, &row_columns, None)
}
