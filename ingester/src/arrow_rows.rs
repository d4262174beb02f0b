//! Turns decoded snapshots into Arrow record batches shaped like the DuckDB tables.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use duckdb::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use pgmon_common::event::{ActivityRow, DatabaseRow, ObjectRow, Snapshot, SnapshotPart, StatementRow};
use serde::{Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};

/// Rows of `activity_snapshots`: one per message, with the part of its sample it carried (a
/// sample sent whole is part 0 of 1).
pub(crate) fn activity_snapshots_batch(snapshots: &[(u64, &Snapshot<ActivityRow>)]) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut stream_sequence = UInt64Builder::new();
    let mut server_version_num = Int32Builder::new();
    let mut system_identifier = StringBuilder::new();
    let mut row_count = Int32Builder::new();
    let mut part_index = Int32Builder::new();
    let mut part_count = Int32Builder::new();
    for (sequence, snapshot) in snapshots {
        let part = snapshot.part.unwrap_or(SnapshotPart { index: 0, count: 1 });
        target.append_value(snapshot.target.as_str());
        collected_at.append_value(snapshot.collected_at_us);
        stream_sequence.append_value(*sequence);
        server_version_num.append_value(snapshot.server.server_version_num);
        system_identifier.append_option(snapshot.server.system_identifier.as_deref());
        row_count.append_value(i32::try_from(snapshot.rows.len()).unwrap_or(i32::MAX));
        part_index.append_value(i32::try_from(part.index).unwrap_or(i32::MAX));
        part_count.append_value(i32::try_from(part.count).unwrap_or(i32::MAX));
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("stream_sequence", Arc::new(stream_sequence.finish())),
        ("server_version_num", Arc::new(server_version_num.finish())),
        ("system_identifier", Arc::new(system_identifier.finish())),
        ("row_count", Arc::new(row_count.finish())),
        ("part_index", Arc::new(part_index.finish())),
        ("part_count", Arc::new(part_count.finish())),
    ])
}

/// Rows of `snapshot_parts`: one per message of a kind whose snapshots may be split, so a
/// reader can tell a complete snapshot (all `part_count` parts stored) from a partial one.
pub(crate) fn snapshot_parts_batch<Row>(snapshots: &[(u64, &Snapshot<Row>)]) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut stream_sequence = UInt64Builder::new();
    let mut part_index = Int32Builder::new();
    let mut part_count = Int32Builder::new();
    let mut row_count = Int32Builder::new();
    let mut dealloc = Int64Builder::new();
    let mut stats_reset = TimestampMicrosecondBuilder::new();
    for (sequence, snapshot) in snapshots {
        let part = snapshot.part.unwrap_or(SnapshotPart { index: 0, count: 1 });
        target.append_value(snapshot.target.as_str());
        kind.append_value(snapshot.kind.as_str());
        collected_at.append_value(snapshot.collected_at_us);
        stream_sequence.append_value(*sequence);
        part_index.append_value(i32::try_from(part.index).unwrap_or(i32::MAX));
        part_count.append_value(i32::try_from(part.count).unwrap_or(i32::MAX));
        row_count.append_value(i32::try_from(snapshot.rows.len()).unwrap_or(i32::MAX));
        dealloc.append_option(snapshot.statements_info.map(|info| info.dealloc));
        stats_reset.append_option(snapshot.statements_info.map(|info| info.stats_reset_us));
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("kind", Arc::new(kind.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("stream_sequence", Arc::new(stream_sequence.finish())),
        ("part_index", Arc::new(part_index.finish())),
        ("part_count", Arc::new(part_count.finish())),
        ("row_count", Arc::new(row_count.finish())),
        ("statements_dealloc", Arc::new(dealloc.finish())),
        ("statements_stats_reset", Arc::new(stats_reset.finish())),
    ])
}

/// Rows of `statement_text_copies`: the texts statements snapshots carry (a text is sent with
/// the first sample of its query id, and again from time to time).
pub(crate) fn statement_texts_batch(snapshots: &[(u64, &Snapshot<StatementRow>)]) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut query_id = Int64Builder::new();
    let mut query = StringBuilder::new();
    let mut seen_at = TimestampMicrosecondBuilder::new();
    for (_, snapshot) in snapshots {
        for row in &snapshot.rows {
            let Some(text) = &row.query else { continue };
            target.append_value(snapshot.target.as_str());
            query_id.append_value(row.query_id);
            query.append_value(text);
            seen_at.append_value(snapshot.collected_at_us);
        }
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("query_id", Arc::new(query_id.finish())),
        ("query", Arc::new(query.finish())),
        ("seen_at", Arc::new(seen_at.finish())),
    ])
}

/// Rows of `instance_samples`: one per database snapshot that carries instance facts.
pub(crate) fn instance_rows_batch(snapshots: &[(u64, &Snapshot<DatabaseRow>)]) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut server_version_num = Int32Builder::new();
    let mut started_at = TimestampMicrosecondBuilder::new();
    let mut max_connections = Int32Builder::new();
    let mut settings_json = StringBuilder::new();
    for (_, snapshot) in snapshots {
        let Some(instance) = &snapshot.instance else { continue };
        target.append_value(snapshot.target.as_str());
        collected_at.append_value(snapshot.collected_at_us);
        server_version_num.append_value(snapshot.server.server_version_num);
        started_at.append_value(instance.started_at_us);
        max_connections.append_value(instance.max_connections);
        settings_json.append_value(serde_json::to_string(&instance.settings).expect("a string map always serialises"));
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("server_version_num", Arc::new(server_version_num.finish())),
        ("started_at", Arc::new(started_at.finish())),
        ("max_connections", Arc::new(max_connections.finish())),
        ("settings_json", Arc::new(settings_json.finish())),
    ])
}

/// Rows of a samples table: `target` and `collected_at`, then one column per field of `Row`, in
/// declaration order (the Appender matches columns by position). Fields named `*_us` become
/// timestamps; fields left out of the payload (absent options, empty lists) become NULL.
pub(crate) fn sample_rows_batch<Row: Serialize + serde::de::DeserializeOwned>(snapshots: &[(u64, &Snapshot<Row>)]) -> RecordBatch {
    let row_count = snapshots.iter().map(|(_, snapshot)| snapshot.rows.len()).sum();
    let mut target = StringBuilder::with_capacity(row_count, row_count * 8);
    let mut collected_at = TimestampMicrosecondBuilder::with_capacity(row_count);
    let mut rows: Vec<&Row> = Vec::with_capacity(row_count);
    for (_, snapshot) in snapshots {
        for row in &snapshot.rows {
            target.append_value(snapshot.target.as_str());
            collected_at.append_value(snapshot.collected_at_us);
            rows.push(row);
        }
    }
    let fields = row_fields::<Row>();
    let row_columns = serde_arrow::to_record_batch(&fields, &rows).expect("row fields are traced from the row type");
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
    ];
    columns.extend(
        fields
            .iter()
            .map(|field| field.name().as_str())
            .zip(row_columns.columns().iter().cloned()),
    );
    record_batch(columns)
}

/// Rows of `object_samples`: the sample rows, and `size_measured_at`, which the store fills in
/// for objects whose sizes could not be measured (`stale_sizes`).
pub(crate) fn object_rows_batch(snapshots: &[(u64, &Snapshot<ObjectRow>)]) -> RecordBatch {
    let rows = sample_rows_batch(snapshots);
    let schema = rows.schema();
    let mut columns: Vec<(&str, ArrayRef)> = schema
        .fields()
        .iter()
        .map(|field| field.name().as_str())
        .zip(rows.columns().iter().cloned())
        .collect();
    let measured_at = duckdb::arrow::array::new_null_array(&DataType::Timestamp(TimeUnit::Microsecond, None), rows.num_rows());
    columns.push(("size_measured_at", measured_at));
    record_batch(columns)
}

/// Rows of `activity_sample_rows`: the sample rows with `xact_start` and `state_change` as
/// microseconds from the query's start (or, without one, from the sample), as migration 8
/// stores them. Built column by column rather than through serde like the other kinds: activity
/// is most of what the ingester stores, and this is on its one storing thread (the serde path
/// took about a third of the time of storing a batch).
pub(crate) fn activity_rows_batch(snapshots: &[(u64, &Snapshot<ActivityRow>)]) -> RecordBatch {
    let row_count = snapshots.iter().map(|(_, snapshot)| snapshot.rows.len()).sum();
    let text_column = |bytes_per_row: usize| StringBuilder::with_capacity(row_count, row_count * bytes_per_row);
    let timestamp_column = || TimestampMicrosecondBuilder::with_capacity(row_count);
    let microseconds_column = || Int64Builder::with_capacity(row_count);
    let mut target = text_column(8);
    let mut collected_at = timestamp_column();
    let mut pid = Int32Builder::with_capacity(row_count);
    let [mut database, mut user_name, mut application, mut client_addr, mut backend_type, mut state, mut wait_event_type, mut wait_event] =
        [(); 8].map(|()| text_column(12));
    let mut query_id = Int64Builder::with_capacity(row_count);
    let mut query = text_column(128);
    let mut backend_start = timestamp_column();
    let mut xact_start_before_query = microseconds_column();
    let mut query_start = timestamp_column();
    let mut state_change_after_query = microseconds_column();
    let mut blocking_pids = ListBuilder::with_capacity(Int32Builder::new(), row_count);
    for (_, snapshot) in snapshots {
        for row in &snapshot.rows {
            target.append_value(snapshot.target.as_str());
            collected_at.append_value(snapshot.collected_at_us);
            pid.append_value(row.pid);
            database.append_option(row.database.as_deref());
            user_name.append_option(row.user.as_deref());
            application.append_option(row.application.as_deref());
            client_addr.append_option(row.client_addr.as_deref());
            backend_type.append_option(row.backend_type.as_deref());
            state.append_option(row.state.as_deref());
            wait_event_type.append_option(row.wait_event_type.as_deref());
            wait_event.append_option(row.wait_event.as_deref());
            query_id.append_option(row.query_id);
            query.append_option(row.query.as_deref());
            backend_start.append_option(row.backend_start_us);
            let reference = row.query_start_us.unwrap_or(snapshot.collected_at_us);
            xact_start_before_query.append_option(row.xact_start_us.map(|at| reference - at));
            query_start.append_option(row.query_start_us);
            state_change_after_query.append_option(row.state_change_us.map(|at| at - reference));
            // An empty list is stored as NULL, as the serde path stores what the payload leaves out.
            if row.blocking_pids.is_empty() {
                blocking_pids.append_null();
            } else {
                blocking_pids.values().append_slice(&row.blocking_pids);
                blocking_pids.append(true);
            }
        }
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("pid", Arc::new(pid.finish())),
        ("database", Arc::new(database.finish())),
        ("user_name", Arc::new(user_name.finish())),
        ("application", Arc::new(application.finish())),
        ("client_addr", Arc::new(client_addr.finish())),
        ("backend_type", Arc::new(backend_type.finish())),
        ("state", Arc::new(state.finish())),
        ("wait_event_type", Arc::new(wait_event_type.finish())),
        ("wait_event", Arc::new(wait_event.finish())),
        ("query_id", Arc::new(query_id.finish())),
        ("query", Arc::new(query.finish())),
        ("backend_start", Arc::new(backend_start.finish())),
        ("xact_start_before_query_us", Arc::new(xact_start_before_query.finish())),
        ("query_start", Arc::new(query_start.finish())),
        ("state_change_after_query_us", Arc::new(state_change_after_query.finish())),
        ("blocking_pids", Arc::new(blocking_pids.finish())),
    ])
}

/// One row of `activity_minutes`: how many active sessions of one combination of the chart's
/// dimensions were sampled in one minute. Fields in column order.
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
pub(crate) fn activity_minutes_batch(snapshots: &[(u64, &Snapshot<ActivityRow>)]) -> RecordBatch {
    // Keyed by borrowed values with a fast hash (the keys come from our own collector, and a
    // batch's map lives for one call): most rows fall into a combination seen before, and
    // copying their strings into keys or hashing them with SipHash was the larger part of
    // storing a batch.
    type MinuteKey<'a> = (&'a str, i64, [Option<&'a str>; 7], Option<i64>);
    let mut counts: std::collections::HashMap<MinuteKey, i32, foldhash::fast::RandomState> = std::collections::HashMap::default();
    for (_, snapshot) in snapshots {
        let minute_us = snapshot.collected_at_us.div_euclid(60_000_000) * 60_000_000;
        for row in snapshot.rows.iter().filter(|row| crate::series::is_active_session(row)) {
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
    let fields = row_fields::<ActivityMinuteRow>();
    serde_arrow::to_record_batch(&fields, &rows).expect("rollup fields are traced from the row type")
}

/// The Arrow fields of a row type, typed as its DuckDB columns.
fn row_fields<'a, Row: Deserialize<'a>>() -> Vec<FieldRef> {
    let options = TracingOptions::default()
        .enums_without_data_as_strings(true)
        .strings_as_large_utf8(false)
        .sequence_as_large_list(false);
    let traced = Vec::<FieldRef>::from_type::<Row>(options).expect("event row types are plain structs");
    traced
        .into_iter()
        .map(|field| {
            let data_type = match field.data_type() {
                DataType::Int64 if field.name().ends_with("_us") => DataType::Timestamp(TimeUnit::Microsecond, None),
                other => without_dictionaries(other),
            };
            Arc::new(Field::new(field.name(), data_type, true))
        })
        .collect()
}

/// Enums are traced as dictionaries, which the Appender does not take: they are stored as text.
fn without_dictionaries(data_type: &DataType) -> DataType {
    let plain_field = |field: &FieldRef| Arc::new(Field::new(field.name(), without_dictionaries(field.data_type()), true));
    match data_type {
        DataType::Dictionary(_, _) => DataType::Utf8,
        DataType::List(item) => DataType::List(plain_field(item)),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(plain_field).collect()),
        other => other.clone(),
    }
}

fn record_batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("builders of one batch always have equal lengths")
}
