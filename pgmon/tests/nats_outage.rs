//! NATS stopped for 30 s during collection and restarted: the collector keeps sampling into its
//! bounded queue and publishes the backlog in order, so no snapshot of the outage is missing.

mod common;

use std::time::Duration;

use common::{collector_config, stream_activity, wait_until, CapturedLogs};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(200);
const OUTAGE: Duration = Duration::from_secs(30);

/// When the activity samples in the stream were taken, checked to be stored once each and in
/// the order taken.
async fn collection_times_stored_once_in_order(url: &str) -> Vec<i64> {
    let times: Vec<i64> = stream_activity(url).await.iter().map(|snapshot| snapshot.collected_at_us).collect();
    assert!(
        times.windows(2).all(|pair| pair[0] < pair[1]),
        "snapshots are stored once and in the order taken"
    );
    times
}

/// No two consecutive samples further apart than a few intervals: none was lost.
fn assert_no_sample_missing(times: &[i64]) {
    let longest_gap_us = times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap();
    assert!(
        longest_gap_us < 3 * INTERVAL.as_micros() as i64,
        "a gap of {longest_gap_us} µs in the snapshots: samples of the outage were lost"
    );
}

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

    let times = collection_times_stored_once_in_order(&url).await;
    assert_no_sample_missing(&times);
    let text = logs.text();
    assert!(text.contains("publish failed, retrying"), "{text}");
    assert!(text.contains("publishing resumed"), "{text}");
}

/// SIGTERM to `pgmon collect` while NATS is away: it stops within its shutdown timeout and
/// spools what NATS never acknowledged; started again with NATS back, it publishes the spool
/// first, and every snapshot taken before the stop is in the stream exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_nats_is_away_spools_and_loses_nothing() {
    let postgres = TestPostgres::start();
    let mut nats = TestNats::start();
    let url = nats.url();
    let spool = tempfile::tempdir().unwrap();
    let shutdown_timeout = Duration::from_secs(3);
    let collect = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgmon"))
            .args([
                "collect",
                "--nats-url",
                &url,
                "--health-listen",
                "127.0.0.1:0",
                "--activity-interval",
                "200ms",
            ])
            .args(["--shutdown-timeout", "3s", "--collector-id", "spooling"])
            .env(
                "PGMON_NATS_NKEY_FILE",
                pgmon_test_support::key_file_for(&url, pgmon_common::nats_access::NatsRole::Collector),
            )
            .arg("--target")
            .arg(format!("db={}", postgres.connection_string("postgres")))
            .arg("--spool-dir")
            .arg(spool.path())
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let stop = |child: &mut std::process::Child| -> (Duration, std::process::ExitStatus) {
        let stopping = std::time::Instant::now();
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (stopping.elapsed(), status);
            }
            if stopping.elapsed() > shutdown_timeout + Duration::from_secs(20) {
                let _ = child.kill();
                panic!("pgmon collect still ran {:?} after SIGTERM", stopping.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let mut first = collect();
    wait_until(Duration::from_secs(20), "snapshots before the outage", || async {
        stream_activity(&url).await.len() >= 5
    })
    .await;
    nats.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped_at_us = common::now_us();
    let (took, status) = stop(&mut first);
    eprintln!("pgmon collect stopped {took:?} after SIGTERM with NATS away (shutdown timeout {shutdown_timeout:?})");
    assert!(status.success(), "pgmon collect exited with {status}");
    let spooled = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(spool.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    };
    assert_eq!(spooled().len(), 1, "one spool file: {:?}", spooled());

    nats.start_again();
    let mut second = collect();
    wait_until(Duration::from_secs(60), "the spool to be published and deleted", || async {
        spooled().is_empty()
            && stream_activity(&url)
                .await
                .iter()
                .any(|snapshot| snapshot.collected_at_us > stopped_at_us)
    })
    .await;
    let (_, status) = stop(&mut second);
    assert!(status.success(), "pgmon collect exited with {status}");

    let times = collection_times_stored_once_in_order(&url).await;
    let before_stop: Vec<i64> = times.iter().copied().filter(|at| *at < stopped_at_us).collect();
    assert_no_sample_missing(&before_stop);
    let last_before_stop = *before_stop.last().unwrap();
    assert!(
        stopped_at_us - last_before_stop < 1_000_000,
        "the last snapshot in the stream was taken {} µs before SIGTERM: the spool lost the end",
        stopped_at_us - last_before_stop
    );
}
