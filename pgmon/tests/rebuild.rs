//! `pgmon rebuild` re-ingests the snapshot stream into fresh partitions: the same partitions,
//! and in every table the same rows (count and an order-independent checksum) as the live
//! ingester stored, unusable messages included in the stream.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{collector_config, ingester_config, wait_until};
use pgmon_contract::event::SnapshotKind;
use pgmon_contract::subjects::snapshot_subject;
use pgmon_ingester::partitions::{list_partitions, DATA_TABLES};
use pgmon_ingester::{PartitionPeriod, StorageOptions};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

/// The rollup has a row per minute and batch, and batches differ between a live ingester and a
/// rebuild: its sums per minute are what must be equal. Text copies follow the partitions that
/// opened (a live ingester opens one when idle, a rebuild does not): the texts they hold are
/// what must be equal.
fn comparable(table: &str) -> String {
    match table {
        "activity_minutes" => {
            "(SELECT * EXCLUDE (active_rows), sum(active_rows) AS active_rows FROM activity_minutes GROUP BY ALL)".to_owned()
        }
        "statement_text_copies" => "(SELECT DISTINCT target, query_id, query FROM statement_text_copies)".to_owned(),
        _ => table.to_owned(),
    }
}

/// Row count and checksum of every data table, in table order.
fn table_checksums(data_dir: &Path) -> Vec<(String, i64, String)> {
    let database = pgmon_ingester::open_read_only(data_dir).unwrap();
    DATA_TABLES
        .iter()
        .map(|table| {
            database
                .query_row(
                    &format!(
                        "SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR FROM {} t",
                        comparable(table)
                    ),
                    [],
                    |row| Ok((table.to_string(), row.get(0)?, row.get(1)?)),
                )
                .unwrap()
        })
        .collect()
}

/// The partitions that hold rows. (A live ingester that sits idle past the end of a period
/// opens the next one empty, which a rebuild has no reason to do.)
fn partitions_with_rows(data_dir: &Path) -> Vec<String> {
    list_partitions(data_dir)
        .unwrap()
        .into_iter()
        .filter(|partition| {
            let read_only = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap();
            let database = duckdb::Connection::open_with_flags(&partition.path, read_only).unwrap();
            let rows: i64 = database
                .query_row(
                    "SELECT (SELECT count(*) FROM target_status) + (SELECT count(*) FROM activity_snapshots)",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            rows > 0
        })
        .map(|partition| partition.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_stream_equals_the_live_tables() {
    let postgres = TestPostgres::start();
    postgres
        .connect()
        .await
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    let nats = TestNats::start();
    let live_dir = tempfile::tempdir().unwrap();
    let rebuilt_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let period = PartitionPeriod::new(Duration::from_secs(2)).unwrap();

    let collector = collector_config(
        &nats.url(),
        &[("db", postgres.connection_string("postgres"))],
        Duration::from_millis(200),
    );
    let mut ingester = ingester_config(&nats.url(), live_dir.path());
    ingester.storage = StorageOptions {
        period,
        ..StorageOptions::default()
    };
    let stats = ingester.stats.clone();
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
    let ingester = tokio::spawn(pgmon_ingester::run(ingester, shutdown.clone()));
    let client = pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await;
    let jetstream = async_nats::jetstream::new(client);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // An unusable message among the snapshots: dead-lettered live, skipped by the rebuild.
    jetstream
        .publish(snapshot_subject(&"db".parse().unwrap(), SnapshotKind::Activity), "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    ingester.await.unwrap().unwrap();

    // The live ingester stops with what it had; run it again until the stream is stored whole.
    let last_sequence = jetstream
        .get_stream(pgmon_contract::subjects::SNAPSHOT_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .last_sequence;
    if stats.last_applied_sequence.load(std::sync::atomic::Ordering::Relaxed) < last_sequence {
        let mut catch_up = ingester_config(&nats.url(), live_dir.path());
        catch_up.storage.period = period;
        catch_up.stop_after = Some(last_sequence);
        let catch_up_stats = catch_up.stats.clone();
        let stop = CancellationToken::new();
        let running = tokio::spawn(pgmon_ingester::run(catch_up, stop.clone()));
        wait_until(Duration::from_secs(30), "the live ingester to store the whole stream", || {
            let applied = catch_up_stats.last_applied_sequence.load(std::sync::atomic::Ordering::Relaxed);
            async move { applied >= last_sequence }
        })
        .await;
        stop.cancel();
        running.await.unwrap().unwrap();
    }

    let output = Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .args(["rebuild", "--nats-url", &nats.url(), "--partition-period", "2s"])
        .env(
            "PGMON_NATS_NKEY_FILE",
            pgmon_test_support::key_file_for(&nats.url(), pgmon_common::nats_access::NatsRole::Reader),
        )
        .arg("--data-dir")
        .arg(rebuilt_dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "rebuild failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("up to stream sequence {last_sequence}")), "{stdout}");

    let live_partitions = partitions_with_rows(live_dir.path());
    assert!(live_partitions.len() >= 2, "{live_partitions:?}");
    assert_eq!(partitions_with_rows(rebuilt_dir.path()), live_partitions);
    let live = table_checksums(live_dir.path());
    for table in ["activity_samples", "statement_samples", "statement_text_copies"] {
        assert!(live.iter().any(|(name, rows, _)| name == table && *rows > 0), "{table}: {live:?}");
    }
    assert_eq!(table_checksums(rebuilt_dir.path()), live);
}
