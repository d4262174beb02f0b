//! Turns decoded snapshots into Arrow record batches shaped like the DuckDB tables.

use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use duckdb::arrow::record_batch::RecordBatch;
use pgmon_common::event::{ActivityRow, DatabaseRow, DownReason, LockRow, Snapshot, StatusRow};

/// Rows of `activity_snapshots`: one per snapshot.
pub(crate) fn activity_snapshots_batch(snapshots: &[(u64, &Snapshot<ActivityRow>)]) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut stream_sequence = UInt64Builder::new();
    let mut server_version_num = Int32Builder::new();
    let mut system_identifier = StringBuilder::new();
    let mut row_count = Int32Builder::new();
    for (sequence, snapshot) in snapshots {
        target.append_value(snapshot.target.as_str());
        collected_at.append_value(snapshot.collected_at_us);
        stream_sequence.append_value(*sequence);
        server_version_num.append_value(snapshot.server.server_version_num);
        system_identifier.append_option(snapshot.server.system_identifier.as_deref());
        row_count.append_value(i32::try_from(snapshot.rows.len()).unwrap_or(i32::MAX));
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("stream_sequence", Arc::new(stream_sequence.finish())),
        ("server_version_num", Arc::new(server_version_num.finish())),
        ("system_identifier", Arc::new(system_identifier.finish())),
        ("row_count", Arc::new(row_count.finish())),
    ])
}

/// Rows of `activity_samples`: one per backend per snapshot.
pub(crate) fn activity_rows_batch<'a>(snapshots: impl Iterator<Item = &'a Snapshot<ActivityRow>>) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut pid = Int32Builder::new();
    let mut database = StringBuilder::new();
    let mut user_name = StringBuilder::new();
    let mut application = StringBuilder::new();
    let mut client_addr = StringBuilder::new();
    let mut backend_type = StringBuilder::new();
    let mut state = StringBuilder::new();
    let mut wait_event_type = StringBuilder::new();
    let mut wait_event = StringBuilder::new();
    let mut query_id = Int64Builder::new();
    let mut query = StringBuilder::new();
    let mut backend_start = TimestampMicrosecondBuilder::new();
    let mut xact_start = TimestampMicrosecondBuilder::new();
    let mut query_start = TimestampMicrosecondBuilder::new();
    let mut state_change = TimestampMicrosecondBuilder::new();
    let mut blocking_pids = ListBuilder::new(Int32Builder::new());
    for snapshot in snapshots {
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
            xact_start.append_option(row.xact_start_us);
            query_start.append_option(row.query_start_us);
            state_change.append_option(row.state_change_us);
            append_pids(&mut blocking_pids, &row.blocking_pids);
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
        ("xact_start", Arc::new(xact_start.finish())),
        ("query_start", Arc::new(query_start.finish())),
        ("state_change", Arc::new(state_change.finish())),
        ("blocking_pids", Arc::new(blocking_pids.finish())),
    ])
}

/// Rows of `lock_samples`: one per lock row per snapshot.
pub(crate) fn lock_rows_batch<'a>(snapshots: impl Iterator<Item = &'a Snapshot<LockRow>>) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut pid = Int32Builder::new();
    let mut lock_type = StringBuilder::new();
    let mut mode = StringBuilder::new();
    let mut granted = BooleanBuilder::new();
    let mut database = StringBuilder::new();
    let mut relation = StringBuilder::new();
    let mut page = Int32Builder::new();
    let mut tuple = Int32Builder::new();
    let mut virtual_xid = StringBuilder::new();
    let mut transaction_id = StringBuilder::new();
    let mut waiting_since = TimestampMicrosecondBuilder::new();
    let mut blocked_by = ListBuilder::new(Int32Builder::new());
    for snapshot in snapshots {
        for row in &snapshot.rows {
            target.append_value(snapshot.target.as_str());
            collected_at.append_value(snapshot.collected_at_us);
            pid.append_value(row.pid);
            lock_type.append_value(&row.lock_type);
            mode.append_value(&row.mode);
            granted.append_value(row.granted);
            database.append_option(row.database.as_deref());
            relation.append_option(row.relation.as_deref());
            page.append_option(row.page);
            tuple.append_option(row.tuple);
            virtual_xid.append_option(row.virtual_xid.as_deref());
            transaction_id.append_option(row.transaction_id.as_deref());
            waiting_since.append_option(row.waiting_since_us);
            append_pids(&mut blocked_by, &row.blocked_by);
        }
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("pid", Arc::new(pid.finish())),
        ("lock_type", Arc::new(lock_type.finish())),
        ("mode", Arc::new(mode.finish())),
        ("granted", Arc::new(granted.finish())),
        ("database", Arc::new(database.finish())),
        ("relation", Arc::new(relation.finish())),
        ("page", Arc::new(page.finish())),
        ("tuple", Arc::new(tuple.finish())),
        ("virtual_xid", Arc::new(virtual_xid.finish())),
        ("transaction_id", Arc::new(transaction_id.finish())),
        ("waiting_since", Arc::new(waiting_since.finish())),
        ("blocked_by", Arc::new(blocked_by.finish())),
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

/// Rows of `database_samples`: one per database per snapshot.
pub(crate) fn database_rows_batch<'a>(snapshots: impl Iterator<Item = &'a Snapshot<DatabaseRow>>) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut database = StringBuilder::new();
    let mut backends = Int32Builder::new();
    // The cumulative counters, in table order.
    let mut counters: Vec<Int64Builder> = (0..13).map(|_| Int64Builder::new()).collect();
    let mut checksum_failures = Int64Builder::new();
    let mut blk_read_time_ms = Float64Builder::new();
    let mut blk_write_time_ms = Float64Builder::new();
    let mut session_times: Vec<Float64Builder> = (0..3).map(|_| Float64Builder::new()).collect();
    let mut session_counts: Vec<Int64Builder> = (0..4).map(|_| Int64Builder::new()).collect();
    let mut stats_reset = TimestampMicrosecondBuilder::new();
    for snapshot in snapshots {
        for row in &snapshot.rows {
            target.append_value(snapshot.target.as_str());
            collected_at.append_value(snapshot.collected_at_us);
            database.append_value(&row.database);
            backends.append_value(row.backends);
            let values = [
                row.xact_commit,
                row.xact_rollback,
                row.blks_read,
                row.blks_hit,
                row.tup_returned,
                row.tup_fetched,
                row.tup_inserted,
                row.tup_updated,
                row.tup_deleted,
                row.conflicts,
                row.temp_files,
                row.temp_bytes,
                row.deadlocks,
            ];
            for (builder, value) in counters.iter_mut().zip(values) {
                builder.append_value(value);
            }
            checksum_failures.append_option(row.checksum_failures);
            blk_read_time_ms.append_value(row.blk_read_time_ms);
            blk_write_time_ms.append_value(row.blk_write_time_ms);
            for (builder, value) in session_times
                .iter_mut()
                .zip([row.session_time_ms, row.active_time_ms, row.idle_in_transaction_time_ms])
            {
                builder.append_option(value);
            }
            for (builder, value) in
                session_counts
                    .iter_mut()
                    .zip([row.sessions, row.sessions_abandoned, row.sessions_fatal, row.sessions_killed])
            {
                builder.append_option(value);
            }
            stats_reset.append_option(row.stats_reset_us);
        }
    }
    let counter_names = [
        "xact_commit",
        "xact_rollback",
        "blks_read",
        "blks_hit",
        "tup_returned",
        "tup_fetched",
        "tup_inserted",
        "tup_updated",
        "tup_deleted",
        "conflicts",
        "temp_files",
        "temp_bytes",
        "deadlocks",
    ];
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("database", Arc::new(database.finish())),
        ("backends", Arc::new(backends.finish())),
    ];
    columns.extend(
        counter_names
            .into_iter()
            .zip(counters.iter_mut())
            .map(|(name, builder)| (name, Arc::new(builder.finish()) as ArrayRef)),
    );
    columns.push(("checksum_failures", Arc::new(checksum_failures.finish())));
    columns.push(("blk_read_time_ms", Arc::new(blk_read_time_ms.finish())));
    columns.push(("blk_write_time_ms", Arc::new(blk_write_time_ms.finish())));
    let session_time_names = ["session_time_ms", "active_time_ms", "idle_in_transaction_time_ms"];
    columns.extend(
        session_time_names
            .into_iter()
            .zip(session_times.iter_mut())
            .map(|(name, builder)| (name, Arc::new(builder.finish()) as ArrayRef)),
    );
    let session_count_names = ["sessions", "sessions_abandoned", "sessions_fatal", "sessions_killed"];
    columns.extend(
        session_count_names
            .into_iter()
            .zip(session_counts.iter_mut())
            .map(|(name, builder)| (name, Arc::new(builder.finish()) as ArrayRef)),
    );
    columns.push(("stats_reset", Arc::new(stats_reset.finish())));
    record_batch(columns)
}

/// Rows of `target_status`: the collector's view of each target over time.
pub(crate) fn status_rows_batch<'a>(snapshots: impl Iterator<Item = &'a Snapshot<StatusRow>>) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut state = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut message = StringBuilder::new();
    let mut since = TimestampMicrosecondBuilder::new();
    for snapshot in snapshots {
        for row in &snapshot.rows {
            target.append_value(snapshot.target.as_str());
            collected_at.append_value(snapshot.collected_at_us);
            state.append_value(row.state.as_str());
            reason.append_option(row.reason.map(DownReason::as_str));
            message.append_option(row.message.as_deref());
            since.append_value(row.since_us);
        }
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("state", Arc::new(state.finish())),
        ("reason", Arc::new(reason.finish())),
        ("message", Arc::new(message.finish())),
        ("since", Arc::new(since.finish())),
    ])
}

/// A list of pids, NULL when empty (most rows block no one and wait for no one).
fn append_pids(list: &mut ListBuilder<Int32Builder>, pids: &[i32]) {
    if pids.is_empty() {
        list.append_null();
    } else {
        list.values().append_slice(pids);
        list.append(true);
    }
}

fn record_batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("builders of one batch always have equal lengths")
}
