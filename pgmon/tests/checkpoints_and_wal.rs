//! Checkpoints, WAL and I/O end to end: a requested checkpoint is counted once, a burst of
//! writes shows as WAL throughput, and (PostgreSQL 16+) the writing backend's I/O appears by
//! backend type, on the Health API and tab.

mod common;

use std::time::Duration;

use common::{spawn_pipeline, wait_until, ServedWeb};
use pgmon_test_support::{TestNats, TestPostgres};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Requested checkpoints so far, wherever the server's version keeps the counter.
async fn requested_checkpoints(client: &tokio_postgres::Client) -> i64 {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .unwrap()
        .get(0);
    let sql = if version >= 170000 {
        "SELECT num_requested FROM pg_stat_checkpointer"
    } else {
        "SELECT checkpoints_req FROM pg_stat_bgwriter"
    };
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_checkpoint_is_counted_once_and_writes_show_as_wal_and_io() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let admin = postgres.connect().await;
    let before = requested_checkpoints(&admin).await;
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .unwrap()
        .get(0);

    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let web = ServedWeb::start(&nats.url(), &shutdown).await;
    let history = || web.json("/api/v1/targets/db/health/wal?range=15m");
    wait_until(Duration::from_secs(20), "two stored samples (one increase)", || async {
        history().await["points"].as_array().is_some_and(|points| !points.is_empty())
    })
    .await;

    admin
        .batch_execute("CREATE TABLE burst AS SELECT i, md5(i::text) AS note FROM generate_series(1, 200000) i")
        .await
        .unwrap();
    admin.batch_execute("CHECKPOINT").await.unwrap();
    let after = requested_checkpoints(&admin).await;
    assert_eq!(after - before, 1, "only the test's CHECKPOINT was requested");

    let sum_of = |reply: &Value, field: &str| -> i64 { reply["points"].as_array().unwrap().iter().filter_map(|p| p[field].as_i64()).sum() };
    wait_until(Duration::from_secs(30), "the checkpoint counted", || async {
        sum_of(&history().await, "checkpoints_requested") >= 1
    })
    .await;
    let reply = history().await;
    assert_eq!(sum_of(&reply, "checkpoints_requested"), after - before, "counted once: {reply}");
    let fastest = reply["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|point| point["wal_bytes_per_second"].as_f64())
        .fold(0.0, f64::max);
    assert!(fastest > 100_000.0, "the burst's WAL: {reply}");
    let io = reply["io"].as_array().unwrap();
    if version >= 160000 {
        let client = io
            .iter()
            .find(|totals| totals["backend_type"] == "client backend")
            .unwrap_or_else(|| panic!("client backends' I/O: {reply}"));
        assert!(client["extends"].as_i64() > Some(0), "the new table was extended: {client}");
    } else {
        assert!(io.is_empty(), "no pg_stat_io before PostgreSQL 16");
    }

    let page = web.page("/targets/db/health").await;
    assert!(page.contains("Checkpoints, WAL and I/O") && page.contains("data-wal-url"), "{page}");

    shutdown.cancel();
    web.join().await;
    pipeline.join().await;
}
