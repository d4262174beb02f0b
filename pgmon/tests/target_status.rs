//! Each way a target can fail yields a status event with its specific reason, while a healthy
//! target beside them reports up and is sampled as usual; the ingester stores the statuses.

mod common;

use std::time::Duration;

use common::{collector_config, ingester_config, newest_status, stream_activity, wait_until};
use pgmon_contract::event::{DownReason, LimitationReason, SnapshotKind, TargetState};
use pgmon_test_support::{free_local_port, TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_has_its_reason_and_healthy_targets_go_on() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let admin = postgres.connect().await;
    for statement in [
        "CREATE DATABASE locked",
        "REVOKE CONNECT ON DATABASE locked FROM PUBLIC",
        "CREATE ROLE outsider LOGIN",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    let port = postgres.port();
    let targets = [
        ("healthy", postgres.connection_string("postgres")),
        (
            "nothing-there",
            format!("host=127.0.0.1 port={} user=postgres dbname=postgres", free_local_port()),
        ),
        (
            "unknown-role",
            format!("host=127.0.0.1 port={port} user=nobody_here dbname=postgres"),
        ),
        ("missing-db", format!("host=127.0.0.1 port={port} user=postgres dbname=no_such_db")),
        ("no-connect", format!("host=127.0.0.1 port={port} user=outsider dbname=locked")),
    ];
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(pgmon_collector::run(
        collector_config(&nats.url(), &targets, Duration::from_millis(250)),
        shutdown.clone(),
    ));
    let ingester = tokio::spawn(pgmon_ingester::run(ingester_config(&nats.url(), data_dir.path()), shutdown.clone()));

    let expected = [
        ("nothing-there", DownReason::Unreachable),
        ("unknown-role", DownReason::AuthenticationFailed),
        ("missing-db", DownReason::DatabaseMissing),
        ("no-connect", DownReason::InsufficientPrivilege),
    ];
    let url = nats.url();
    for (target, reason) in expected {
        wait_until(Duration::from_secs(20), &format!("a status of {target}"), || async {
            newest_status(&url, target).await.is_some()
        })
        .await;
        let status = newest_status(&url, target).await.unwrap();
        assert_eq!(status.state, TargetState::Down, "{target}: {status:?}");
        assert_eq!(status.reason, Some(reason), "{target}: {status:?}");
        assert!(
            status.message.as_deref().is_some_and(|message| !message.is_empty()),
            "{target}: {status:?}"
        );
    }
    // Down statuses can arrive before the healthy target's first one.
    wait_until(Duration::from_secs(20), "a status of the healthy target", || async {
        newest_status(&url, "healthy").await.is_some()
    })
    .await;
    let healthy = newest_status(&url, "healthy").await.expect("a status of the healthy target");
    assert_eq!(healthy.state, TargetState::Up);
    // Up, but without pg_stat_statements (never created here): that kind says why it is missing.
    let [limitation] = healthy.limitations.as_slice() else {
        panic!("one limitation expected: {healthy:?}")
    };
    assert_eq!(
        (limitation.kind, limitation.reason),
        (SnapshotKind::Statements, LimitationReason::ExtensionMissing)
    );
    assert!(limitation.message.contains("CREATE EXTENSION pg_stat_statements"), "{limitation:?}");
    wait_until(Duration::from_secs(20), "activity of the healthy target", || async {
        stream_activity(&url)
            .await
            .iter()
            .filter(|snapshot| snapshot.target.as_str() == "healthy")
            .count()
            >= 5
    })
    .await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    ingester.await.unwrap().unwrap();
    let database = pgmon_ingester::open_read_only(data_dir.path()).unwrap();
    let stored: String = database
        .query_row(
            "SELECT reason FROM target_status WHERE target = 'missing-db' ORDER BY collected_at DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, "database_missing");
    let stored: String = database
        .query_row(
            "SELECT limitations[1].reason FROM target_status WHERE target = 'healthy' ORDER BY collected_at DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, "extension_missing");
}
