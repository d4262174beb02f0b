//! Web benchmark, printing figures: server time (request in, whole body out, through the real
//! router with sign-in checks) of the activity page and its series endpoint over 24 h of
//! 1-second samples of 50 sessions, and of the objects pages over 50,000 objects sampled every
//! 5 minutes for 24 h. Each beside its baseline measured in the same run: the named query the
//! page needs, asked straight from the ingester over NATS (no web layer).
//!
//! `cargo bench -p pgmon --bench web` (sizes: PGMON_BENCH_SESSIONS, PGMON_BENCH_OBJECTS,
//! PGMON_BENCH_OBJECT_SAMPLES; PGMON_BENCH_REQUESTS timed requests per case, 100 by default).

#[path = "../tests/common/mod.rs"]
mod common;
mod synthetic;

/// The allocator the pgmon binary uses, so figures are those of the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use pgmon_common::access::Role;
use pgmon_common::nats_setup::connect_jetstream;
use pgmon_contract::event::{encode_snapshot, AnySnapshot, DatabaseRow, InstanceFacts, SnapshotKind, StatusRow, TargetState};
use pgmon_contract::query::{ActivityDimension, ActivitySeriesRequest, ObjectOrder, ObjectsRequest};
use pgmon_contract::subjects::snapshot_subject;
use pgmon_ingester::store::{BatchMessage, IngestBatch};
use pgmon_ingester::{StorageOptions, Store};
use pgmon_test_support::TestNats;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TARGET: &str = "bench";
const DAY_SECONDS: i64 = 86_400;
/// The collector's default objects interval.
const OBJECTS_INTERVAL_SECONDS: i64 = 300;
/// The step the web layer picks for a 24-hour chart (about 300 buckets).
const DAY_CHART_STEP_US: i64 = 300_000_000;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Stores the day before `end_us` as the ingester would have (batches of 1,000 messages):
/// a second-sample of `sessions` sessions every second and `objects` objects every 5 minutes
/// (`object_samples` of them, the newest last). Returns the activity and object rows stored.
fn store_day(data_dir: &Path, end_us: i64, sessions: usize, objects: usize, object_samples: usize) -> (usize, usize) {
    let start_us = end_us - DAY_SECONDS * 1_000_000;
    let first_object_second = DAY_SECONDS - object_samples as i64 * OBJECTS_INTERVAL_SECONDS;
    let mut store = Store::open(data_dir, "synthetic", StorageOptions::default()).unwrap();
    let mut sequence = 0;
    let mut messages = Vec::new();
    let mut object_rows = 0;
    for second in 0..DAY_SECONDS {
        let collected_at_us = start_us + second * 1_000_000;
        let mut snapshots = vec![AnySnapshot::Activity(synthetic::busy_activity_snapshot(
            TARGET, second, sessions, start_us,
        ))];
        let since_first_objects = second - first_object_second;
        if since_first_objects >= 0 && since_first_objects % OBJECTS_INTERVAL_SECONDS == 0 {
            let sample = synthetic::objects_snapshot(TARGET, collected_at_us, objects, since_first_objects / OBJECTS_INTERVAL_SECONDS);
            object_rows += sample.rows.len();
            snapshots.push(AnySnapshot::Objects(sample));
        }
        for snapshot in snapshots {
            sequence += 1;
            messages.push(BatchMessage {
                sequence,
                stored_at_us: collected_at_us,
                snapshot: Some(snapshot),
            });
        }
        if messages.len() >= 1000 || second == DAY_SECONDS - 1 {
            store
                .apply(&IngestBatch {
                    messages: std::mem::take(&mut messages),
                })
                .unwrap();
        }
    }
    (DAY_SECONDS as usize * sessions, object_rows)
}

/// Publishes what the pages read from the stream: the target's status and its newest
/// database snapshot (databases, max_connections).
async fn publish_target_facts(jetstream: &async_nats::jetstream::Context, now_us: i64, sessions: usize) {
    let target = TARGET.parse().unwrap();
    let mut database = synthetic::envelope(TARGET, SnapshotKind::Database, now_us);
    database.instance = Some(InstanceFacts {
        started_at_us: now_us - 30 * DAY_SECONDS * 1_000_000,
        max_connections: 100,
        settings: Default::default(),
    });
    database.rows = ["shop", "billing", "analytics"]
        .into_iter()
        .map(|name| DatabaseRow {
            database: name.into(),
            backends: sessions as i32 / 3,
            ..DatabaseRow::default()
        })
        .collect();
    let mut status = synthetic::envelope(TARGET, SnapshotKind::Status, now_us);
    status.rows = vec![StatusRow {
        state: TargetState::Up,
        reason: None,
        message: None,
        since_us: now_us - DAY_SECONDS * 1_000_000,
        limitations: Vec::new(),
    }];
    for (kind, payload) in [
        (SnapshotKind::Database, encode_snapshot(&database)),
        (SnapshotKind::Status, encode_snapshot(&status)),
    ] {
        jetstream
            .publish(snapshot_subject(&target, kind), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// Milliseconds at the 50th and 95th percentiles of `runs` timed calls of `call` (after three
/// untimed ones, so caches are warm as they are for people who look at a page twice).
async fn percentiles<F, Fut>(runs: usize, mut call: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut timings = Vec::with_capacity(runs);
    for run in 0..runs + 3 {
        let started = Instant::now();
        call().await;
        if run >= 3 {
            timings.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    timings.sort_by(f64::total_cmp);
    let at = |p: f64| timings[((timings.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    (at(0.50), at(0.95))
}

/// Sends `path` with the bearer `token` and reads the whole body; panics unless it is a 200
/// holding `expected`.
async fn get(router: &axum::Router, token: &str, path: &str, expected: &str) -> usize {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    assert!(text.contains(expected), "{path} lacks {expected:?}");
    body.len()
}

fn main() {
    let sessions = setting("PGMON_BENCH_SESSIONS", 50);
    let objects = setting("PGMON_BENCH_OBJECTS", 50_000);
    let object_samples = setting("PGMON_BENCH_OBJECT_SAMPLES", (DAY_SECONDS / OBJECTS_INTERVAL_SECONDS) as usize).max(1);
    let runs = setting("PGMON_BENCH_REQUESTS", 100).max(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let nats = TestNats::start();
        let data_dir = tempfile::tempdir().unwrap();
        let now_us = common::now_us() / 1_000_000 * 1_000_000;
        let filling = Instant::now();
        let (activity_rows, object_rows) = store_day(data_dir.path(), now_us, sessions, objects, object_samples);
        println!(
            "web: stored 24 h of 1 s samples of {sessions} sessions ({activity_rows} activity rows) and {object_samples} samples of {objects} objects ({object_rows} object rows) in {:.0} s",
            filling.elapsed().as_secs_f64()
        );

        let jetstream = connect_jetstream(&common::nats_args(&nats.url()), pgmon_common::nats_access::NatsRole::Admin).await.unwrap();
        publish_target_facts(&jetstream, now_us, sessions).await;
        let shutdown = CancellationToken::new();
        let ingester = tokio::spawn(pgmon_ingester::run(
            common::ingester_config(&nats.url(), data_dir.path()),
            shutdown.clone(),
        ));
        let state = pgmon_query_api::app_state(&common::serve_config(&nats.url())).await.unwrap();
        let router = pgmon_query_api::router(state.clone());
        let token = common::api_token(&nats.url(), Role::Viewer).await;

        // The window and requests the web layer makes of a 24-hour range, for the baselines.
        let to_us = (common::now_us() / DAY_CHART_STEP_US + 1) * DAY_CHART_STEP_US;
        let series_request = ActivitySeriesRequest {
            target: TARGET.parse().unwrap(),
            from_us: to_us - DAY_SECONDS * 1_000_000,
            to_us,
            step_us: DAY_CHART_STEP_US,
            by: ActivityDimension::WaitEventType,
            top: pgmon_contract::query::DEFAULT_TOP_SERIES,
        };
        let tree_request = ObjectsRequest {
            target: TARGET.parse().unwrap(),
            database: None,
            schema_name: None,
            kind: None,
            name_contains: None,
            order_by: ObjectOrder::Name,
            offset: 0,
            limit: 2_000,
        };
        let biggest_request = ObjectsRequest {
            order_by: ObjectOrder::TotalBytes,
            limit: 100,
            ..tree_request.clone()
        };
        common::wait_until(Duration::from_secs(60), "the ingester's query service", || {
            let state = state.clone();
            let request = series_request.clone();
            async move { state.ask(&request).await.is_ok() }
        })
        .await;

        let series = state.ask(&series_request).await.unwrap();
        let day_samples: u64 = series.samples.iter().map(|samples| u64::from(*samples)).sum();
        let (series_p50, series_p95) = percentiles(runs, || async { drop(state.ask(&series_request).await.unwrap()) }).await;
        let (tree_p50, tree_p95) = percentiles(runs, || async { drop(state.ask(&tree_request).await.unwrap()) }).await;
        let (biggest_p50, biggest_p95) = percentiles(runs, || async { drop(state.ask(&biggest_request).await.unwrap()) }).await;
        println!(
            "web: baseline, the named queries over NATS without the web layer: 24 h AAS series ({} buckets) p50 {series_p50:.1} ms, p95 {series_p95:.1} ms; object tree (2,000 of {objects} by name) p50 {tree_p50:.1} ms, p95 {tree_p95:.1} ms; first 100 objects by size p50 {biggest_p50:.1} ms, p95 {biggest_p95:.1} ms",
            series.bucket_starts_us.len()
        );
        assert!(day_samples > 80_000, "the series holds the stored day: {day_samples} samples");

        let cases: [(&str, &str, &str, f64); 5] = [
            ("activity page", "/targets/bench?range=24h", "data-series-url", series_p95),
            ("activity series endpoint", "/api/v1/targets/bench/activity?range=24h", "bucket_starts_us", series_p95),
            ("objects page (tree of 2,000 + biggest 10)", "/targets/bench/objects", "events_00000", tree_p95),
            ("all objects page (first 100 by size)", "/targets/bench/objects/all", "events_00000", biggest_p95),
            ("objects endpoint (first 100 by size)", "/api/v1/targets/bench/objects", "events_00000", biggest_p95),
        ];
        for (name, path, expected, baseline_p95) in cases {
            let bytes = get(&router, &token, path, expected).await;
            let (p50, p95) = percentiles(runs, || async {
                get(&router, &token, path, expected).await;
            })
            .await;
            println!(
                "web: {name} {path}: {runs} requests, {:.0} KiB each: server time p50 {p50:.1} ms, p95 {p95:.1} ms (goal p95 < 100 ms); {:.2}x the p95 of its named query",
                bytes as f64 / 1024.0,
                p95 / baseline_p95
            );
        }
        shutdown.cancel();
        ingester.await.unwrap().unwrap();
    });
}
