//! The collector works as a role with only pg_monitor (and CONNECT): it sees other sessions,
//! their states, wait events and query texts, and every table's vacuum figures and frozen-ID
//! ages, including tables it has no privilege on.

mod common;

use std::time::Duration;

use common::{collector_config, stream_activity, stream_of_kind, stream_snapshots, wait_until};
use pgmon_contract::event::{AnySnapshot, SnapshotKind};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_monitor_role_sees_other_sessions_and_their_queries() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let admin = postgres.connect().await;
    admin
        .batch_execute(
            "CREATE ROLE monitor LOGIN IN ROLE pg_monitor; CREATE ROLE app LOGIN;
             CREATE TABLE private_orders (id int); REVOKE ALL ON private_orders FROM PUBLIC;
             INSERT INTO private_orders SELECT generate_series(1, 100); DELETE FROM private_orders WHERE id <= 30",
        )
        .await
        .unwrap();
    let app_dsn = format!(
        "host=127.0.0.1 port={} user=app dbname=postgres application_name=shop",
        postgres.port()
    );
    let (app, connection) = tokio_postgres::connect(&app_dsn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let sleeper = tokio::spawn(async move { app.execute("SELECT pg_sleep(6) /* app work */", &[]).await.unwrap() });

    let shutdown = CancellationToken::new();
    let config = collector_config(
        &nats.url(),
        &[("db", postgres.connection_string("monitor"))],
        Duration::from_millis(250),
    );
    let collector = tokio::spawn(pgmon_collector::run(config, shutdown.clone()));
    let url = nats.url();
    wait_until(Duration::from_secs(20), "the app session in a snapshot", || async {
        stream_activity(&url).await.iter().any(|snapshot| {
            snapshot
                .rows
                .iter()
                .any(|row| row.application.as_deref() == Some("shop") && row.query.as_deref().is_some_and(|q| q.contains("/* app work */")))
        })
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "the private table's dead tuples in a tables snapshot",
        || async {
            stream_of_kind(&url, |snapshot| match snapshot {
                AnySnapshot::Tables(snapshot) => Some(snapshot),
                _ => None,
            })
            .await
            .iter()
            .flat_map(|snapshot| snapshot.rows.iter())
            .any(|row| row.name == "private_orders" && row.dead_tuples == 30 && row.frozen_xid_age > 0)
        },
    )
    .await;
    // Every health kind is read with pg_monitor alone (pg_stat_io needs PostgreSQL 16).
    let health_kinds = [
        SnapshotKind::Progress,
        SnapshotKind::Replication,
        SnapshotKind::Slots,
        SnapshotKind::Settings,
        SnapshotKind::Wal,
    ];
    wait_until(Duration::from_secs(30), "every health kind", || async {
        let kinds: Vec<SnapshotKind> = stream_snapshots(&url).await.iter().map(|(_, snapshot)| snapshot.kind()).collect();
        health_kinds.iter().all(|kind| kinds.contains(kind))
    })
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    sleeper.await.unwrap();

    let snapshots = stream_activity(&url).await;
    let snapshot = snapshots.last().unwrap();
    assert!(snapshot.server.server_version_num > 0);
    assert!(
        snapshot.server.system_identifier.is_some(),
        "pg_monitor may read pg_control_system()"
    );
    let app_row = snapshots
        .iter()
        .flat_map(|snapshot| snapshot.rows.iter())
        .find(|row| row.application.as_deref() == Some("shop"))
        .unwrap();
    assert_eq!(app_row.user.as_deref(), Some("app"));
    assert_eq!(app_row.wait_event.as_deref(), Some("PgSleep"));
    assert!(app_row.client_addr.is_some());
}
