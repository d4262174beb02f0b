//! NATS stopped for 30 s during collection and restarted: the collector keeps sampling into its
//! bounded queue and publishes the backlog in order, so no snapshot of the outage is missing.

mod common;

use std::time::Duration;

use common::{collector_config, stream_activity, wait_until, CapturedLogs};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(200);
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn snapshots_taken_while_nats_is_down_arrive_once_and_in_order() {
    let logs = CapturedLogs::default();
    let _logging = logs.install();
    let postgres = TestPostgres::start();
    let mut nats = TestNats::start();
    let url = nats.url();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(pgmon_collector::run(
        collector_config(&url, &[("db", postgres.connection_string("postgres"))], INTERVAL),
        shutdown.clone(),
    ));

    wait_until(Duration::from_secs(20), "snapshots before the outage", || async {
        stream_activity(&url).await.len() >= 5
    })
    .await;
    nats.stop();
    tokio::time::sleep(OUTAGE).await;
    nats.start_again();
    let expected_at_least = (OUTAGE.as_millis() / INTERVAL.as_millis()) as usize;
    wait_until(Duration::from_secs(60), "the backlog to be published", || async {
        stream_activity(&url).await.len() >= expected_at_least + 10
    })
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    let times: Vec<i64> = stream_activity(&url)
        .await
        .iter()
        .map(|snapshot| snapshot.collected_at_us)
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] < pair[1]),
        "snapshots are stored once and in the order taken"
    );
    let longest_gap_us = times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap();
    assert!(
        longest_gap_us < 3 * INTERVAL.as_micros() as i64,
        "a gap of {longest_gap_us} µs in the snapshots: the outage lost samples"
    );
    let text = logs.text();
    assert!(text.contains("publish failed, retrying"), "{text}");
    assert!(text.contains("publishing resumed"), "{text}");
}
