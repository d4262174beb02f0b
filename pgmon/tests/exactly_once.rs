//! Exactly-once effect: while the collector publishes every kind of snapshot, the ingester
//! process is killed with SIGKILL again and again and restarted, with partitions of two seconds
//! so kills also land around partition switches; in the end every published row of every kind
//! is stored once.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use common::{collector_config, start_lock_wait, stream_snapshots, wait_until};
use pgmon_contract::event::SnapshotKind;
use pgmon_contract::subjects::{INGESTER_CONSUMER, SNAPSHOT_STREAM};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

const KILLS: usize = 6;

/// Each kind and the table its rows are stored in.
const KIND_TABLES: &[(SnapshotKind, &str)] = &[
    (SnapshotKind::Activity, "activity_samples"),
    (SnapshotKind::Locks, "lock_samples"),
    (SnapshotKind::Database, "database_samples"),
    (SnapshotKind::Status, "target_status"),
    (SnapshotKind::Statements, "statement_samples"),
    (SnapshotKind::Objects, "object_samples"),
    (SnapshotKind::Tables, "table_samples"),
    (SnapshotKind::Settings, "setting_samples"),
    (SnapshotKind::Wal, "wal_samples"),
];

fn start_ingester(nats_url: &str, data_dir: &Path, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .env(
            "PGMON_NATS_NKEY_FILE",
            pgmon_test_support::key_file_for(nats_url, pgmon_common::nats_access::NatsRole::Ingester),
        )
        .args([
            "ingest",
            "--nats-url",
            nats_url,
            "--health-listen",
            "127.0.0.1:0",
            "--batch-max-messages",
            "20",
            "--batch-wait",
            "50ms",
            "--partition-period",
            "2s",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap()
}

fn kill_9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

fn stop_gracefully(child: &mut Child) {
    // SAFETY: kill(2) on our own, not yet reaped child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "ingester exited with {status}");
}

async fn consumer_caught_up(nats_url: &str) -> bool {
    let client = pgmon_test_support::connect_as(nats_url, pgmon_common::nats_access::NatsRole::Admin).await;
    let jetstream = jetstream::new(client);
    let mut stream = jetstream.get_stream(SNAPSHOT_STREAM).await.unwrap();
    let last_sequence = stream.info().await.unwrap().state.last_sequence;
    let Ok(mut consumer) = stream.get_consumer::<jetstream::consumer::pull::Config>(INGESTER_CONSUMER).await else {
        return false;
    };
    let info = consumer.info().await.unwrap();
    info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence == last_sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_ingester_neither_loses_nor_duplicates_rows() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let log = data_dir.path().join("ingester.log");
    let shutdown = CancellationToken::new();

    // A few idle sessions so every snapshot has several rows, and a lock wait for a while so
    // lock snapshots are published too.
    let mut sessions = Vec::new();
    for _ in 0..2 {
        sessions.push(postgres.connect().await);
    }
    let lock_wait = start_lock_wait(&postgres).await;
    let collector = collector_config(
        &nats.url(),
        &[("db", postgres.connection_string("postgres"))],
        Duration::from_millis(100),
    );
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));

    let mut ingester = start_ingester(&nats.url(), data_dir.path(), &log);
    for round in 0..KILLS {
        // Vary the moment of the kill so it lands in different phases of a batch.
        tokio::time::sleep(Duration::from_millis(700 + 173 * round as u64)).await;
        kill_9(&mut ingester);
        ingester = start_ingester(&nats.url(), data_dir.path(), &log);
        if round == 2 {
            lock_wait.holder.batch_execute("COMMIT").await.unwrap();
        }
    }
    lock_wait.waiting.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    let nats_url = nats.url();
    wait_until(Duration::from_secs(60), "the ingester to consume the whole stream", || {
        consumer_caught_up(&nats_url)
    })
    .await;
    stop_gracefully(&mut ingester);

    let published = stream_snapshots(&nats.url()).await;
    let database = pgmon_ingester::open_read_only(data_dir.path()).unwrap();
    let count = |sql: &str| -> i64 { database.query_row(sql, [], |row| row.get(0)).unwrap() };
    for (kind, table) in KIND_TABLES {
        let of_kind: Vec<_> = published.iter().filter(|(_, snapshot)| snapshot.kind() == *kind).collect();
        let published_rows: usize = of_kind.iter().map(|(_, snapshot)| snapshot.row_count()).sum();
        assert!(published_rows > 0, "no {kind:?} rows were published");
        assert_eq!(
            count(&format!("SELECT count(*) FROM {table}")),
            published_rows as i64,
            "{table} holds every published {kind:?} row once"
        );
        // Rows are unique within a snapshot, so a redelivered snapshot stored twice would show here.
        assert_eq!(
            count(&format!("SELECT count(*) FROM (SELECT DISTINCT * FROM {table})")),
            published_rows as i64,
            "{table} has no duplicate rows"
        );
    }
    let published_activity = published
        .iter()
        .filter(|(_, snapshot)| snapshot.kind() == SnapshotKind::Activity)
        .count();
    assert!(
        published_activity > 50,
        "too few snapshots published to prove anything: {published_activity}"
    );
    assert_eq!(
        count("SELECT count(DISTINCT stream_sequence) FROM activity_snapshots"),
        published_activity as i64
    );
    assert_eq!(count("SELECT count(*) FROM activity_snapshots"), published_activity as i64);
    let split_kinds = published
        .iter()
        .filter(|(_, snapshot)| {
            matches!(
                snapshot.kind(),
                SnapshotKind::Statements | SnapshotKind::Objects | SnapshotKind::Tables
            )
        })
        .count();
    assert_eq!(
        count("SELECT count(DISTINCT stream_sequence) FROM snapshot_parts"),
        split_kinds as i64
    );
    assert_eq!(count("SELECT count(*) FROM snapshot_parts"), split_kinds as i64);
    let partitions = pgmon_ingester::partitions::list_partitions(data_dir.path()).unwrap();
    assert!(partitions.len() >= 3, "kills landed around partition switches: {partitions:?}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log_text.matches("consuming snapshots").count(),
        KILLS + 1,
        "every restart resumed consuming:\n{log_text}"
    );
}
