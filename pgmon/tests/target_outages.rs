//! A target that is down at start, or restarts mid-run: the collector logs it, keeps retrying,
//! resumes, and the other targets are unaffected.

mod common;

use std::time::Duration;

use common::{collector_config, subject_counts, wait_until, CapturedLogs};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

async fn snapshots_of(nats_url: &str, target: &str) -> usize {
    subject_counts(nats_url, &format!("pgmon.snap.{target}.activity"))
        .await
        .values()
        .sum()
}

#[tokio::test]
async fn a_down_target_is_retried_and_never_holds_up_the_others() {
    let logs = CapturedLogs::default();
    let _logging = logs.install();
    let mut flaky = TestPostgres::start();
    let steady = TestPostgres::start();
    let nats = TestNats::start();
    let url = nats.url();
    flaky.stop();

    let shutdown = CancellationToken::new();
    let password_dsn = format!(
        "host=127.0.0.1 port={} user=postgres password=hunter2-secret dbname=postgres",
        flaky.port()
    );
    let config = collector_config(
        &url,
        &[("flaky", password_dsn), ("steady", steady.connection_string("postgres"))],
        Duration::from_millis(200),
    );
    let collector = tokio::spawn(pgmon_collector::run(config, shutdown.clone()));

    // Down at start: the steady target is sampled all the same, the flaky one not at all.
    wait_until(Duration::from_secs(20), "steady snapshots while flaky is down", || async {
        snapshots_of(&url, "steady").await >= 10
    })
    .await;
    assert_eq!(snapshots_of(&url, "flaky").await, 0);
    assert!(logs.text().contains("target unavailable"), "{}", logs.text());

    // It comes up: sampling starts within the retry delay.
    flaky.start_again();
    wait_until(Duration::from_secs(40), "flaky snapshots once it is up", || async {
        snapshots_of(&url, "flaky").await >= 5
    })
    .await;

    // It restarts mid-run: the steady target goes on meanwhile, and the flaky one resumes.
    flaky.stop();
    let steady_before = snapshots_of(&url, "steady").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flaky_during_outage = snapshots_of(&url, "flaky").await;
    assert!(
        snapshots_of(&url, "steady").await >= steady_before + 5,
        "steady target stalled while the other was down"
    );
    flaky.start_again();
    wait_until(Duration::from_secs(40), "flaky snapshots after its restart", || async {
        snapshots_of(&url, "flaky").await >= flaky_during_outage + 5
    })
    .await;
    assert!(logs.text().contains("connection lost"), "{}", logs.text());

    shutdown.cancel();
    collector.await.unwrap().unwrap();
    assert!(!logs.text().contains("hunter2-secret"), "a password reached the log");
}
