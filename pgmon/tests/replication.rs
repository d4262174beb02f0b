//! Replication end to end on a real primary and a streaming standby (`pg_basebackup`): the
//! primary's lag for its standby and the standby's own replay lag grow while replay is paused
//! and fall after it resumes; an unused slot's retained WAL grows with writes; both show on the
//! Health API, its history and the fleet.

mod common;

use std::time::Duration;

use common::{collector_config, ingester_config, wait_until, ServedWeb};
use pgmon_test_support::{TestNats, TestPostgres};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const MIB: i64 = 1 << 20;

/// The replication of `target` as the Health API gives it now.
async fn replication(web: &ServedWeb, target: &str) -> Value {
    web.json(&format!("/api/v1/targets/{target}/health/replication")).await
}

/// The replay lag in bytes of the first link of `role` in a reply.
fn lag_of(reply: &Value, role: &str) -> Option<i64> {
    reply["links"].as_array()?.iter().find(|link| link["role"] == role)?["replay_lag_bytes"].as_i64()
}

fn retained_of(reply: &Value, slot: &str) -> Option<i64> {
    reply["slots"].as_array()?.iter().find(|row| row["slot_name"] == slot)?["retained_bytes"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_grows_while_replay_is_paused_and_falls_after_and_an_idle_slot_holds_wal() {
    // Standbys report their positions every second rather than every ten.
    let primary = TestPostgres::start_with_settings(&[("wal_receiver_status_interval", "1s")]);
    let admin = primary.connect().await;
    admin
        .batch_execute("SELECT pg_create_physical_replication_slot('idle_slot', true)")
        .await
        .unwrap();
    let standby = primary.start_standby();
    let standby_admin = standby.connect().await;

    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let collector = collector_config(
        &nats.url(),
        &[
            ("primary", primary.connection_string("postgres")),
            ("standby", standby.connection_string("postgres")),
        ],
        Duration::from_millis(500),
    );
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
    let ingester = tokio::spawn(pgmon_ingester::run(ingester_config(&nats.url(), data_dir.path()), shutdown.clone()));
    let web = ServedWeb::start(&nats.url(), &shutdown).await;

    wait_until(Duration::from_secs(30), "the standby streaming, seen from both sides", || async {
        let on_primary = replication(&web, "primary").await;
        let on_standby = replication(&web, "standby").await;
        on_primary["links"]
            .as_array()
            .is_some_and(|links| links.iter().any(|link| link["role"] == "standby" && link["state"] == "streaming"))
            && on_standby["links"]
                .as_array()
                .is_some_and(|links| links.iter().any(|link| link["role"] == "receiver" && link["state"] == "streaming"))
    })
    .await;
    let idle_before = retained_of(&replication(&web, "primary").await, "idle_slot").expect("the idle slot reserves WAL");

    standby_admin.batch_execute("SELECT pg_wal_replay_pause()").await.unwrap();
    admin
        .batch_execute("CREATE TABLE filler AS SELECT i, md5(i::text) AS note FROM generate_series(1, 100000) i")
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), "lag while replay is paused", || async {
        let on_primary = replication(&web, "primary").await;
        let on_standby = replication(&web, "standby").await;
        on_standby["links"][0]["replay_paused"] == true
            && lag_of(&on_primary, "standby").is_some_and(|lag| lag > MIB)
            && lag_of(&on_standby, "receiver").is_some_and(|lag| lag > MIB)
    })
    .await;
    let first_lag = lag_of(&replication(&web, "primary").await, "standby").unwrap();
    admin
        .batch_execute("INSERT INTO filler SELECT i, md5(i::text) FROM generate_series(1, 100000) i")
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), "the lag to grow with more writes", || async {
        lag_of(&replication(&web, "primary").await, "standby").is_some_and(|lag| lag > first_lag + MIB)
    })
    .await;
    let on_primary = replication(&web, "primary").await;
    let idle_after = retained_of(&on_primary, "idle_slot").unwrap();
    assert!(
        idle_after > idle_before + MIB,
        "the idle slot holds the new WAL: {idle_before} then {idle_after}"
    );

    standby_admin.batch_execute("SELECT pg_wal_replay_resume()").await.unwrap();
    wait_until(Duration::from_secs(30), "the lag to fall once replay resumes", || async {
        let on_primary = replication(&web, "primary").await;
        let on_standby = replication(&web, "standby").await;
        lag_of(&on_primary, "standby").is_some_and(|lag| lag < MIB)
            && lag_of(&on_standby, "receiver").is_some_and(|lag| lag < MIB)
            && on_standby["links"][0]["replay_paused"] == false
    })
    .await;

    let history = web.json("/api/v1/targets/primary/health/replication/history?range=15m").await;
    let peak = history["links"][0]["replay_lag_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .max()
        .unwrap_or(0);
    assert!(peak > first_lag, "the stored lag reached its peak: {history}");
    assert!(
        history["slots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|slot| slot["slot_name"] == "idle_slot"),
        "{history}"
    );
    let fleet = web.json("/api/v1/fleet").await;
    let primary_summary = fleet.as_array().unwrap().iter().find(|target| target["name"] == "primary").unwrap();
    assert_eq!(primary_summary["inactive_slots"], 1, "{primary_summary}");
    assert!(primary_summary["replication_lag_bytes"].as_i64().is_some(), "{primary_summary}");
    let page = web.page("/targets/primary/health").await;
    assert!(page.contains("Replication slots") && page.contains("idle_slot"), "{page}");

    shutdown.cancel();
    web.join().await;
    collector.await.unwrap().unwrap();
    ingester.await.unwrap().unwrap();
}
