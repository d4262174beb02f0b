//! The event contract seen from outside pgmon: a client that is not pgmon (nats-py) reads every
//! event of the stream and validates it against the published JSON Schema, and `pgmon replay`
//! prints a window of events as JSON lines.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{collector_config, start_lock_wait, subject_counts, test_python, wait_until};
use pgmon_contract::event::{decode_snapshot, SnapshotKind};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

fn replay(nats_url: &str, arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .args(["replay", "--nats-url", nats_url])
        .env(
            "PGMON_NATS_NKEY_FILE",
            pgmon_test_support::key_file_for(nats_url, pgmon_common::nats_access::NatsRole::Reader),
        )
        .args(arguments)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_every_kind_match_the_published_schema_and_replay_as_json_lines() {
    // The newest version, which has every kind (pg_stat_io exists from 16).
    let postgres = TestPostgres::start_version(18);
    let nats = TestNats::start();
    let shutdown = CancellationToken::new();
    // A lock wait, so lock snapshots are published too.
    let lock_wait = start_lock_wait(&postgres).await;
    let collector = collector_config(
        &nats.url(),
        &[("db", postgres.connection_string("postgres"))],
        Duration::from_millis(200),
    );
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
    wait_until(Duration::from_secs(30), "snapshots of every kind", || async {
        let kinds: Vec<String> = subject_counts(&nats.url(), "pgmon.snap.>").await.into_keys().collect();
        SnapshotKind::ALL
            .iter()
            .all(|kind| kinds.contains(&format!("pgmon.snap.db.{}", kind.as_str())))
    })
    .await;
    lock_wait.holder.batch_execute("COMMIT").await.unwrap();
    lock_wait.waiting.await.unwrap().unwrap();
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contract/schema/snapshot-v1.schema.json");
    let validated = Command::new(test_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/validate_stream.py"))
        .arg(nats.url())
        .arg(&schema)
        .arg(pgmon_test_support::key_file_for(
            &nats.url(),
            pgmon_common::nats_access::NatsRole::Reader,
        ))
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&validated.stdout);
    assert!(
        validated.status.success(),
        "events do not match the schema: {summary}\n{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    for kind in SnapshotKind::ALL {
        assert!(
            summary["kinds"][kind.as_str()].as_u64() > Some(0),
            "no {} event validated: {summary}",
            kind.as_str()
        );
    }

    let counts = subject_counts(&nats.url(), "pgmon.snap.db.activity").await;
    let activity = replay(&nats.url(), &["--target", "db", "--kind", "activity", "--since", "10m"]);
    assert!(activity.status.success(), "{}", String::from_utf8_lossy(&activity.stderr));
    let lines: Vec<&[u8]> = activity
        .stdout
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        counts["pgmon.snap.db.activity"],
        "every activity event of the window, once"
    );
    for line in &lines {
        let snapshot = decode_snapshot(line).unwrap();
        assert_eq!((snapshot.target().as_str(), snapshot.kind()), ("db", SnapshotKind::Activity));
    }

    let everything = replay(&nats.url(), &[]);
    let all_lines = everything.stdout.iter().filter(|byte| **byte == b'\n').count();
    assert_eq!(
        all_lines,
        summary["events"].as_u64().unwrap() as usize,
        "the whole stream without filters"
    );

    let before_any = replay(&nats.url(), &["--since", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z"]);
    assert!(before_any.status.success());
    assert!(before_any.stdout.is_empty(), "a window before the first event is empty");

    let bad_kind = replay(&nats.url(), &["--kind", "sessions"]);
    assert!(!bad_kind.status.success());
    let message = String::from_utf8_lossy(&bad_kind.stderr);
    assert!(
        message.contains("unknown kind \"sessions\"; kinds are activity, locks"),
        "{message}"
    );
}
