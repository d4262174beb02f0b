//! Synthetic snapshots of a busy target shared by the benchmarks: second-samples of an
//! application's sessions and the objects of a large schema, as the collector would publish them.

#![allow(dead_code)] // Each benchmark uses its own subset.

use pgmon_contract::event::{ActivityRow, ObjectKind, ObjectRow, ServerIdentity, Snapshot, SnapshotKind, CURRENT_SCHEMA_VERSION};

/// The envelope of a snapshot of target `target` taken at `collected_at_us`, without rows.
pub fn envelope<Row>(target: &str, kind: SnapshotKind, collected_at_us: i64) -> Snapshot<Row> {
    Snapshot {
        schema_version: CURRENT_SCHEMA_VERSION,
        kind,
        target: target.parse().unwrap(),
        collected_at_us,
        server: ServerIdentity {
            system_identifier: Some("7321456789012345678".into()),
            server_version_num: 170_002,
            server_version: "17.2".into(),
        },
        collector: None,
        instance: None,
        statements_info: None,
        objects_info: None,
        part: None,
        rows: Vec::new(),
    }
}

const WAITS: &[(Option<&str>, Option<&str>)] = &[
    (None, None),
    (None, None),
    (Some("IO"), Some("DataFileRead")),
    (Some("Lock"), Some("transactionid")),
    (Some("LWLock"), Some("WALWrite")),
    (Some("Client"), Some("ClientRead")),
];

/// Second `second` after `start_us` of `sessions` backends of a busy application of target
/// `target`: a few statements, most sessions idle or waiting on the client, some active on CPU
/// or I/O.
pub fn busy_activity_snapshot(target: &str, second: i64, sessions: usize, start_us: i64) -> Snapshot<ActivityRow> {
    let collected_at_us = start_us + second * 1_000_000;
    let rows = (0..sessions)
        .map(|session| {
            let turn = (second as usize + session * 7) % 23;
            let (wait_event_type, wait_event) = WAITS[turn % WAITS.len()];
            let active = !turn.is_multiple_of(3);
            let statement = (session + second as usize / 30) % 20;
            let query_start_us = collected_at_us - 20_000 * (turn as i64 + 1);
            ActivityRow {
                pid: 10_000 + session as i32,
                database: Some("shop".into()),
                user: Some(if session.is_multiple_of(5) { "batch" } else { "app" }.into()),
                application: Some(if session.is_multiple_of(5) { "reports" } else { "web" }.into()),
                client_addr: Some(format!("10.0.0.{}", session % 8 + 1)),
                backend_type: Some("client backend".into()),
                state: Some(if active { "active" } else { "idle" }.into()),
                wait_event_type: if active { wait_event_type.map(Into::into) } else { Some("Client".into()) },
                wait_event: if active { wait_event.map(Into::into) } else { Some("ClientRead".into()) },
                query_id: Some(-4_000_000_000_000 + statement as i64 * 7_919),
                query: Some(format!(
                    "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = $1 AND o.region = {statement}"
                )),
                // Pools connect at different times: a start of its own per backend.
                backend_start_us: Some(start_us - 3_600_000_000 - session as i64 * 97_654_321),
                // As PostgreSQL reports them: a transaction starts with or before its query (the
                // batch jobs run several per transaction), an active session's state changed
                // when its query started, an idle one's when its query ended.
                xact_start_us: active.then_some(query_start_us - if session.is_multiple_of(5) { 5_000_000 } else { 0 }),
                query_start_us: Some(query_start_us),
                state_change_us: Some(if active { query_start_us } else { query_start_us + 3_000 }),
                blocking_pids: Vec::new(),
            }
        })
        .collect();
    Snapshot {
        rows,
        ..envelope(target, SnapshotKind::Activity, collected_at_us)
    }
}

/// Objects per table in [`objects_snapshot`]: the table, its primary key, one more index and
/// its TOAST table.
const OBJECTS_PER_TABLE: usize = 4;

/// A sample of about `objects` relations of target `target` at `collected_at_us`, spread over
/// three databases of ten schemas each, every table with two indexes and a TOAST table; sizes
/// grow by `sample` (the how-many-th sample this is) so growth charts have a slope.
pub fn objects_snapshot(target: &str, collected_at_us: i64, objects: usize, sample: i64) -> Snapshot<ObjectRow> {
    let tables = objects.div_ceil(OBJECTS_PER_TABLE);
    let mut rows = Vec::with_capacity(tables * OBJECTS_PER_TABLE);
    for table in 0..tables {
        let database = ["shop", "billing", "analytics"][table % 3];
        let schema = format!("tenant_{:02}", table / 3 % 10);
        let name = format!("events_{table:05}");
        let parent = format!("{schema}.{name}");
        // A long tail: a few big tables, most small, as real schemas have.
        let table_bytes = 8_192 * (1 + 1_000_000 / (table as i64 + 1)) + sample * 8_192 * (table as i64 % 7);
        let primary_key_bytes = table_bytes / 5;
        let index_bytes = table_bytes / 3;
        let toast_bytes = table_bytes / 11;
        let object = |schema: &str, name: String, kind: ObjectKind, parent: Option<String>, bytes: (i64, i64, i64, i64)| ObjectRow {
            database: database.into(),
            schema: schema.into(),
            name,
            kind,
            parent,
            total_bytes: bytes.0,
            table_bytes: bytes.1,
            index_bytes: bytes.2,
            toast_bytes: bytes.3,
            row_estimate: Some(table_bytes / 120),
            ..ObjectRow::default()
        };
        rows.push(object(
            &schema,
            name.clone(),
            ObjectKind::Table,
            None,
            (
                table_bytes + primary_key_bytes + index_bytes + toast_bytes,
                table_bytes,
                primary_key_bytes + index_bytes,
                toast_bytes,
            ),
        ));
        for (suffix, bytes) in [("pkey", primary_key_bytes), ("created_at_idx", index_bytes)] {
            rows.push(object(
                &schema,
                format!("{name}_{suffix}"),
                ObjectKind::Index,
                Some(parent.clone()),
                (bytes, bytes, 0, 0),
            ));
        }
        rows.push(object(
            "pg_toast",
            format!("pg_toast_{}", 16_384 + table),
            ObjectKind::Toast,
            Some(parent),
            (toast_bytes, toast_bytes, 0, 0),
        ));
    }
    rows.truncate(objects);
    Snapshot {
        rows,
        ..envelope(target, SnapshotKind::Objects, collected_at_us)
    }
}
