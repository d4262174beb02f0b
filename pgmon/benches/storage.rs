//! Storage benchmarks, printing figures: ingest rate from JetStream into DuckDB beside a raw
//! DuckDB Appender loop over the same rows, bytes on disk per activity row, and a 7-day AAS
//! chart over 100+ million synthetic session rows.
//!
//! `cargo bench -p pgmon --bench storage` (sizes: PGMON_BENCH_SNAPSHOTS, PGMON_BENCH_SESSIONS,
//! PGMON_BENCH_STORAGE_SNAPSHOTS, PGMON_BENCH_QUERY_TARGETS; 0 skips a part;
//! PGMON_BENCH_BATCH_BYTES: the ingester's `--batch-max-bytes`).

mod synthetic;

/// The allocator the pgmon binary uses, so figures are those of the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::{Duration, Instant};

use duckdb::types::{TimeUnit, Value};
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{connect_jetstream, NatsArgs};
use pgmon_contract::event::{encode_snapshot, ActivityRow, Snapshot, SnapshotKind};
use pgmon_contract::query::{ActivityDimension, ActivitySeriesRequest};
use pgmon_contract::subjects::snapshot_subject;
use pgmon_ingester::{IngesterConfig, PartitionPeriod, StorageOptions};
use pgmon_test_support::TestNats;

const DAY_US: i64 = 86_400_000_000;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn directory_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

/// The baseline: the same rows through DuckDB's Appender one row at a time, one transaction.
fn raw_appender(snapshots: &[Snapshot<ActivityRow>], template_dir: &Path, directory: &Path) -> Duration {
    let connection = duckdb::Connection::open(directory.join("raw.duckdb")).unwrap();
    let template = pgmon_ingester::open_read_only(template_dir).unwrap();
    let columns: Vec<String> = template
        .prepare("SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_name = 'activity_samples' AND table_schema = 'main' AND table_catalog = 'memory' ORDER BY ordinal_position")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    connection
        .execute_batch(&format!("CREATE TABLE activity_samples ({})", columns.join(", ")))
        .unwrap();
    let timestamp = |us: Option<i64>| us.map_or(Value::Null, |us| Value::Timestamp(TimeUnit::Microsecond, us));
    let text = |value: &Option<String>| value.clone().map_or(Value::Null, Value::Text);
    let started = Instant::now();
    connection.execute_batch("BEGIN").unwrap();
    {
        let mut appender = connection.appender("activity_samples").unwrap();
        for snapshot in snapshots {
            for row in &snapshot.rows {
                appender
                    .append_row(duckdb::params![
                        snapshot.target.as_str(),
                        Value::Timestamp(TimeUnit::Microsecond, snapshot.collected_at_us),
                        row.pid,
                        text(&row.database),
                        text(&row.user),
                        text(&row.application),
                        text(&row.client_addr),
                        text(&row.backend_type),
                        text(&row.state),
                        text(&row.wait_event_type),
                        text(&row.wait_event),
                        row.query_id,
                        text(&row.query),
                        timestamp(row.backend_start_us),
                        timestamp(row.xact_start_us),
                        timestamp(row.query_start_us),
                        timestamp(row.state_change_us),
                        Value::Null,
                    ])
                    .unwrap();
            }
        }
        appender.flush().unwrap();
    }
    connection.execute_batch("COMMIT").unwrap();
    started.elapsed()
}

fn nats_args(url: String, role: NatsRole) -> NatsArgs {
    NatsArgs {
        stream_max_age: Duration::from_secs(7 * 86_400),
        ..pgmon_test_support::nats_args_as(&url, role)
    }
}

/// A `/proc/self/status` figure in KiB (`VmRSS`: resident now, `VmHWM`: peak resident).
fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Rows per second stored between a rebuild's first commit and its last, watched through its
/// counters until the rebuild drops them.
async fn watch_commits(stats: std::sync::Arc<pgmon_ingester::IngestStats>) -> f64 {
    let rows_stored = |stats: &pgmon_ingester::IngestStats| stats.rows_ingested.load(std::sync::atomic::Ordering::Relaxed);
    let mut first: Option<(Instant, u64)> = None;
    let mut last = (Instant::now(), 0);
    while std::sync::Arc::strong_count(&stats) > 1 {
        let rows = rows_stored(&stats);
        if rows != last.1 {
            last = (Instant::now(), rows);
            first.get_or_insert(last);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (first_at, first_rows) = first.expect("a rebuild commits");
    (last.1 - first_rows) as f64 / last.0.duration_since(first_at).as_secs_f64()
}

async fn ingest_benchmark() {
    let snapshot_count = setting("PGMON_BENCH_SNAPSHOTS", 40_000);
    let sessions = setting("PGMON_BENCH_SESSIONS", 50);
    if snapshot_count == 0 {
        return;
    }
    let nats = TestNats::start();
    let jetstream = connect_jetstream(&nats_args(nats.url(), NatsRole::Admin), NatsRole::Admin)
        .await
        .unwrap();
    let start_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
        - snapshot_count as i64 * 1_000_000;
    let snapshots: Vec<_> = (0..snapshot_count as i64)
        .map(|second| synthetic::busy_activity_snapshot("bench", second, sessions, start_us))
        .collect();
    let subject = snapshot_subject(&"bench".parse().unwrap(), SnapshotKind::Activity);
    let mut pending = Vec::new();
    let mut payload_bytes = 0;
    for snapshot in &snapshots {
        let payload = encode_snapshot(snapshot);
        payload_bytes += payload.len();
        pending.push(jetstream.publish(subject.clone(), payload.into()).await.unwrap());
        if pending.len() >= 500 {
            for acknowledgement in pending.drain(..) {
                acknowledgement.await.unwrap();
            }
        }
    }
    for acknowledgement in pending {
        acknowledgement.await.unwrap();
    }
    let rows = snapshot_count * sessions;
    println!(
        "ingest: {snapshot_count} activity snapshots of {sessions} sessions = {rows} rows, {:.1} MiB of JSON in the stream",
        payload_bytes as f64 / 1_048_576.0
    );

    // End to end, three times (each a rebuild into a directory of its own): the figure is the
    // median, the spread is printed, as runs on a shared 2-core machine vary. Each run is timed
    // whole (start-up included: opening the store, creating the consumer, filling the pipeline)
    // and from its first commit to its last, the rate a backlog drains at once under way.
    let mut rebuild_runs = Vec::new();
    let mut steady_rates = Vec::new();
    let mut data_dirs = Vec::new();
    let batch_max_bytes = setting("PGMON_BENCH_BATCH_BYTES", pgmon_ingester::DEFAULT_BATCH_MAX_BYTES);
    // Resets the peak resident size, so the peak after the runs is theirs (above what the
    // benchmark itself holds).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let resident_before = memory_kib("VmRSS");
    for run in 0..3 {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = IngesterConfig::for_rebuild(
            pgmon_ingester::RebuildArgs {
                data_dir: data_dir.path().to_owned(),
                consumer_name: format!("bench-{run}"),
                storage: pgmon_ingester::StorageArgs {
                    partition_period: PartitionPeriod::DAY,
                    retention: Duration::from_secs(30 * 86_400),
                },
            },
            nats_args(nats.url(), NatsRole::Reader),
        );
        config.batch_max_bytes = batch_max_bytes;
        let commits = tokio::spawn(watch_commits(std::sync::Arc::clone(&config.stats)));
        let started = Instant::now();
        let summary = pgmon_ingester::rebuild(config, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        rebuild_runs.push(started.elapsed());
        steady_rates.push(commits.await.unwrap());
        assert_eq!(summary.rows as usize, rows, "every row stored");
        data_dirs.push(data_dir);
    }
    let rebuild_peak_kib = memory_kib("VmHWM").saturating_sub(resident_before);
    let data_dir = data_dirs.pop().unwrap();
    rebuild_runs.sort();
    steady_rates.sort_by(f64::total_cmp);
    let pgmon_elapsed = rebuild_runs[1];
    let pgmon_rate = rows as f64 / pgmon_elapsed.as_secs_f64();

    // Where the time goes: decoding alone, and storing alone (decoded batches of as many
    // messages as the ingester fetches at once).
    let payloads: Vec<Vec<u8>> = snapshots.iter().map(encode_snapshot).collect();
    let messages_per_batch = batch_max_bytes / (payload_bytes / snapshot_count);
    let started = Instant::now();
    let decoded: Vec<_> = payloads
        .iter()
        .map(|payload| pgmon_contract::event::decode_snapshot(payload).unwrap())
        .collect();
    let decode_elapsed = started.elapsed();
    let store_dir = tempfile::tempdir().unwrap();
    let mut store = pgmon_ingester::Store::open(store_dir.path(), "PGMON", StorageOptions::default()).unwrap();
    let mut messages: Vec<_> = decoded
        .into_iter()
        .enumerate()
        .map(|(index, snapshot)| pgmon_ingester::store::BatchMessage {
            sequence: index as u64 + 1,
            stored_at_us: start_us + snapshot_count as i64 * 1_000_000,
            snapshot: Some(snapshot),
        })
        .collect();
    let started = Instant::now();
    while !messages.is_empty() {
        let rest = messages.split_off(messages.len().min(messages_per_batch));
        store.apply(&pgmon_ingester::store::IngestBatch { messages }).unwrap();
        messages = rest;
    }
    let store_elapsed = started.elapsed();
    println!(
        "ingest: of which JSON decoding alone {:.0} rows/s, storing alone (Arrow, append, commit) {:.0} rows/s",
        rows as f64 / decode_elapsed.as_secs_f64(),
        rows as f64 / store_elapsed.as_secs_f64()
    );
    drop(store);
    let raw_dir = tempfile::tempdir().unwrap();
    let raw_elapsed = raw_appender(&snapshots, data_dir.path(), raw_dir.path());
    let raw_rate = rows as f64 / raw_elapsed.as_secs_f64();
    println!(
        "ingest: pgmon end to end (fetch, decode, Arrow, append, commit, ack) {:.0} rows/s in {:.2} s (median of 3 runs; {:.0} to {:.0} rows/s)",
        pgmon_rate,
        pgmon_elapsed.as_secs_f64(),
        rows as f64 / rebuild_runs[2].as_secs_f64(),
        rows as f64 / rebuild_runs[0].as_secs_f64()
    );
    println!(
        "ingest: pgmon under way, from the first commit to the last {:.0} rows/s (median of 3 runs; {:.0} to {:.0} rows/s)",
        steady_rates[1], steady_rates[0], steady_rates[2]
    );
    println!(
        "ingest: memory: the rebuilds' peak resident size was {:.0} MiB above the benchmark's own",
        rebuild_peak_kib as f64 / 1024.0
    );
    println!(
        "ingest: raw DuckDB Appender, row by row, same rows, one transaction {:.0} rows/s in {:.2} s",
        raw_rate,
        raw_elapsed.as_secs_f64()
    );
    println!(
        "ingest: pgmon / raw Appender = {:.2} end to end, {:.2} under way",
        pgmon_rate / raw_rate,
        steady_rates[1] / raw_rate
    );

    println!(
        "storage: the rebuild's open partition after checkpoint {:.1} bytes per row (raw Appender file {:.1})",
        directory_bytes(&data_dir.path().join(pgmon_ingester::partitions::PARTITIONS_DIRECTORY)) as f64 / rows as f64,
        directory_bytes(raw_dir.path()) as f64 / rows as f64
    );
}

/// A full day of activity stored as the ingester stores it (batches of 1,000 snapshots), then
/// closed: bytes of the compacted partition per activity row. A day, because that is what a
/// closed partition holds, and a file's fixed size (catalog, headers, one block per column at
/// least) is not spread over fewer rows than that.
fn storage_benchmark() {
    let snapshot_count = setting("PGMON_BENCH_STORAGE_SNAPSHOTS", 86_400);
    let sessions = setting("PGMON_BENCH_SESSIONS", 50);
    if snapshot_count == 0 {
        return;
    }
    let today_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let yesterday_us = (today_us / DAY_US - 1) * DAY_US;
    let data_dir = tempfile::tempdir().unwrap();
    let mut store = pgmon_ingester::Store::open(data_dir.path(), "PGMON", StorageOptions::default()).unwrap();
    let message = |second: usize, stored_at_us: i64| pgmon_ingester::store::BatchMessage {
        sequence: second as u64 + 1,
        stored_at_us,
        snapshot: Some(pgmon_contract::event::AnySnapshot::Activity(synthetic::busy_activity_snapshot(
            "bench",
            second as i64,
            sessions,
            yesterday_us,
        ))),
    };
    for first in (0..snapshot_count).step_by(1000) {
        let messages = (first..(first + 1000).min(snapshot_count))
            .map(|second| message(second, yesterday_us + second as i64 * 1_000_000))
            .collect();
        store.apply(&pgmon_ingester::store::IngestBatch { messages }).unwrap();
    }
    let open_partition = store.partitions().remove(0);
    let open_bytes: u64 = open_partition
        .files()
        .iter()
        .map(|file| std::fs::metadata(file).map_or(0, |metadata| metadata.len()))
        .sum();
    let started = Instant::now();
    // One snapshot stored today closes yesterday's partition.
    store
        .apply(&pgmon_ingester::store::IngestBatch {
            messages: vec![message(snapshot_count, today_us)],
        })
        .unwrap();
    let close_elapsed = started.elapsed();
    drop(store);
    let rows = snapshot_count * sessions;
    let closed_bytes = std::fs::metadata(&open_partition.path).unwrap().len();
    println!(
        "storage: {rows} activity rows ({snapshot_count} samples of {sessions} sessions): open partition {:.1} bytes per row (file and log); closed and compacted {:.1} MiB = {:.2} bytes per activity row; closing it took {:.1} s",
        open_bytes as f64 / rows as f64,
        closed_bytes as f64 / 1_048_576.0,
        closed_bytes as f64 / rows as f64,
        close_elapsed.as_secs_f64()
    );
}

/// Seven daily partitions of synthetic activity, written with DuckDB SQL straight into the
/// partition files (the ingest path is measured above), then the 7-day chart as the ingester
/// answers it.
fn query_benchmark() {
    let targets = setting("PGMON_BENCH_QUERY_TARGETS", 4);
    if targets == 0 {
        return;
    }
    let sessions = 50;
    let data_dir = tempfile::tempdir().unwrap();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let first_day_us = (now_us / DAY_US - 6) * DAY_US;
    {
        // Creates the seven partitions with pgmon's schema, one tiny snapshot each.
        let mut store = pgmon_ingester::Store::open(data_dir.path(), "PGMON", StorageOptions::default()).unwrap();
        let messages = (0..7)
            .map(|day| pgmon_ingester::store::BatchMessage {
                sequence: day as u64 + 1,
                stored_at_us: first_day_us + day * DAY_US,
                snapshot: Some(pgmon_contract::event::AnySnapshot::Activity(synthetic::busy_activity_snapshot(
                    "bench",
                    0,
                    1,
                    first_day_us + day * DAY_US,
                ))),
            })
            .collect();
        store.apply(&pgmon_ingester::store::IngestBatch { messages }).unwrap();
    }
    let generating = Instant::now();
    let mut total_rows: i64 = 0;
    for partition in pgmon_ingester::partitions::list_partitions(data_dir.path()).unwrap() {
        let connection = duckdb::Connection::open(&partition.path).unwrap();
        let day_start = partition.start * 1_000_000;
        connection
            .execute_batch(&format!(
                "INSERT INTO activity_snapshots
                 SELECT 'target-' || t, make_timestamp({day_start} + s * 1000000), 0, 170002, NULL, {sessions}, 0, 1
                 FROM range(86400) r(s), range({targets}) u(t);
                 INSERT INTO activity_sample_rows (target, collected_at, pid, database, user_name, application, backend_type, state, wait_event_type, wait_event, query_id)
                 SELECT 'target-' || t, make_timestamp({day_start} + s * 1000000), 10000 + p, 'shop', 'app', 'web', 'client backend',
                        CASE WHEN (s + p * 7) % 3 = 0 THEN 'idle' ELSE 'active' END,
                        (['IO', 'Lock', 'LWLock', NULL, NULL])[1 + (s + p * 7) % 5],
                        (['DataFileRead', 'transactionid', 'WALWrite', NULL, NULL])[1 + (s + p * 7) % 5],
                        (s // 30 + p) % 20
                 FROM range(86400) r(s), range({sessions}) q(p), range({targets}) u(t);
                 INSERT INTO activity_minutes
                 SELECT target, time_bucket(INTERVAL 1 minute, collected_at), wait_event_type, wait_event, query_id, database,
                        user_name, application, client_addr, backend_type, count(*)
                 FROM activity_samples WHERE state = 'active' GROUP BY ALL;
                 CHECKPOINT;"
            ))
            .unwrap();
        total_rows += connection
            .query_row("SELECT count(*) FROM activity_samples", [], |row| row.get::<_, i64>(0))
            .unwrap();
    }
    println!(
        "query: generated {total_rows} session rows ({targets} targets x {sessions} sessions x 7 days of 1 s samples) in {:.0} s",
        generating.elapsed().as_secs_f64()
    );
    let store = pgmon_ingester::Store::open(data_dir.path(), "PGMON", StorageOptions::default()).unwrap();
    let reader = store.reader().unwrap();
    let from_us = first_day_us;
    let to_us = first_day_us + 7 * DAY_US;
    // 300 buckets of 33.6 minutes, rounded to whole minutes as charts of long ranges ask: 297.
    let step_us = ((to_us - from_us) / 300 + 59_999_999) / 60_000_000 * 60_000_000;
    let request = |from_us: i64| ActivitySeriesRequest {
        target: "target-0".parse().unwrap(),
        from_us,
        to_us,
        step_us,
        by: ActivityDimension::WaitEvent,
        top: pgmon_contract::query::DEFAULT_TOP_SERIES,
    };
    let time = |request: &ActivitySeriesRequest, runs: usize| {
        let mut timings = Vec::new();
        for run in 0..runs + 3 {
            let started = Instant::now();
            let series = pgmon_ingester::series::activity_series(&reader, request).unwrap();
            let elapsed = started.elapsed();
            assert!(series.bucket_starts_us.len() >= 297);
            if run >= 3 {
                timings.push(elapsed);
            }
        }
        timings.sort();
        let percentile = |p: f64| timings[((timings.len() as f64 * p).ceil() as usize).saturating_sub(1)].as_secs_f64() * 1000.0;
        (percentile(0.50), percentile(0.95))
    };
    let (rollup_p50, rollup_p95) = time(&request(from_us), 40);
    // The baseline: the same chart from every sampled row (a start one microsecond off the minute).
    let (rows_p50, rows_p95) = time(&request(from_us + 1), 5);
    println!(
        "query: 7-day AAS by wait event, 297 buckets of 34 min, one target of {} session rows ({total_rows} in the files), warm: p50 {rollup_p50:.0} ms, p95 {rollup_p95:.0} ms from the minute rollup; baseline from every row p50 {rows_p50:.0} ms, p95 {rows_p95:.0} ms ({:.0}x)",
        total_rows / targets as i64,
        rows_p95 / rollup_p95
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(ingest_benchmark());
    storage_benchmark();
    query_benchmark();
}
