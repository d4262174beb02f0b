//! `activity_snapshots` (one row per activity message, with the part of its sample it
//! carried) and `activity_sample_rows` (one row per session per sample), read through the
//! `activity_samples` view, which gives the session timestamps back.

use std::sync::Arc;

use duckdb::arrow::array::{Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{ActivityRow, Snapshot, SnapshotKind, SnapshotPart};

use super::{column, record_batch, snapshots_of, Compaction, Source, Stores, Table};

pub(crate) const ACTIVITY_SNAPSHOTS: Table = Table {
    name: "activity_snapshots",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("stream_sequence", "UBIGINT", Source::Computed),
        column("server_version_num", "INTEGER", Source::Computed),
        column("system_identifier", "VARCHAR", Source::Computed),
        column("row_count", "INTEGER", Source::Computed),
        column("part_index", "INTEGER", Source::Computed),
        column("part_count", "INTEGER", Source::Computed),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        kinds: &[SnapshotKind::Activity],
        batch: |snapshots| snapshots_batch(&snapshots_of(snapshots)),
        sample_rows: false,
    },
};

/// `xact_start` and `state_change` are kept as microseconds from the query's start (or,
/// without one, from the sample): usually 0 or a few milliseconds, where the timestamps
/// themselves took about 3 bytes each per row (migration 8).
pub(crate) const ACTIVITY_SAMPLE_ROWS: Table = Table {
    name: "activity_sample_rows",
    read_through: Some("activity_samples"),
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("pid", "INTEGER", Source::Field("pid")),
        column("database", "VARCHAR", Source::Field("database")),
        column("user_name", "VARCHAR", Source::Field("user")),
        column("application", "VARCHAR", Source::Field("application")),
        column("client_addr", "VARCHAR", Source::Field("client_addr")),
        column("backend_type", "VARCHAR", Source::Field("backend_type")),
        column("state", "VARCHAR", Source::Field("state")),
        column("wait_event_type", "VARCHAR", Source::Field("wait_event_type")),
        column("wait_event", "VARCHAR", Source::Field("wait_event")),
        column("query_id", "BIGINT", Source::Field("query_id")),
        column("query", "VARCHAR", Source::Field("query")),
        column("backend_start", "TIMESTAMP", Source::Field("backend_start_us")),
        column("xact_start_before_query_us", "BIGINT", Source::Computed),
        column("query_start", "TIMESTAMP", Source::Field("query_start_us")),
        column("state_change_after_query_us", "BIGINT", Source::Computed),
        column("blocking_pids", "INTEGER[]", Source::Field("blocking_pids")),
    ],
    compaction: Compaction::SortedBy("target, pid, backend_start, collected_at"),
    stores: Stores {
        kinds: &[SnapshotKind::Activity],
        batch: |snapshots| sample_rows_batch(&snapshots_of(snapshots)),
        sample_rows: true,
    },
};

/// Rows of `activity_snapshots`: one per message, with the part of its sample it carried (a
/// sample sent whole is part 0 of 1).
fn snapshots_batch(snapshots: &[(u64, &Snapshot<ActivityRow>)]) -> RecordBatch {
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

/// Rows of `activity_sample_rows`: the sample rows with `xact_start` and `state_change` as
/// microseconds from the query's start (or, without one, from the sample), as migration 8
/// stores them. Built column by column rather than through serde like the other kinds: activity
/// is most of what the ingester stores, and this is on its one storing thread (the serde path
/// took about a third of the time of storing a batch).
fn sample_rows_batch(snapshots: &[(u64, &Snapshot<ActivityRow>)]) -> RecordBatch {
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
