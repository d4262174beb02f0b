//! The recipes of `docs/analytics.md` run through the real `duckdb` CLI on closed partitions
//! while the ingester keeps writing the newest one.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{collector_config, ingester_config, wait_until};
use pgmon_ingester::partitions::list_partitions;
use pgmon_ingester::{PartitionPeriod, StorageOptions, VIEWS_SCRIPT_NAME};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

/// The SQL blocks of the document that start with `-- recipe:`, with their names.
fn recipes() -> Vec<(String, String)> {
    let document = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/analytics.md")).unwrap();
    document
        .split("```sql\n")
        .skip(1)
        .filter_map(|block| {
            let sql = block.split("```").next().unwrap();
            let name = sql.lines().next()?.strip_prefix("-- recipe: ")?;
            Some((name.to_owned(), sql.to_owned()))
        })
        .collect()
}

fn duckdb_cli(arguments: &[&str]) -> (bool, String) {
    let output = Command::new("duckdb")
        .args(arguments)
        .output()
        .expect("the duckdb CLI (scripts/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn closed_partition_count(data_dir: &Path) -> usize {
    std::fs::read_to_string(data_dir.join(VIEWS_SCRIPT_NAME))
        .map(|script| script.matches("ATTACH").count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_recipes_run_in_the_duckdb_cli_beside_the_running_ingester() {
    let recipes = recipes();
    assert!(recipes.len() >= 5, "the document lost its recipes: {recipes:?}");
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let setup = postgres.connect().await;
    setup
        .batch_execute("CREATE EXTENSION pg_stat_statements; CREATE TABLE growing AS SELECT generate_series(1, 10000) AS id")
        .await
        .unwrap();
    // Two sessions busy in pg_sleep: the worst minute has load to show.
    let mut sleepers = Vec::new();
    for _ in 0..2 {
        let session = postgres.connect().await;
        sleepers.push(tokio::spawn(async move { session.batch_execute("SELECT pg_sleep(30)").await }));
    }

    let collector = collector_config(
        &nats.url(),
        &[("db", postgres.connection_string("postgres"))],
        Duration::from_millis(250),
    );
    let mut ingester = ingester_config(&nats.url(), data_dir.path());
    ingester.storage = StorageOptions {
        period: PartitionPeriod::new(Duration::from_secs(2)).unwrap(),
        ..StorageOptions::default()
    };
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
    let ingester = tokio::spawn(pgmon_ingester::run(ingester, shutdown.clone()));
    wait_until(Duration::from_secs(30), "two closed partitions", || {
        let closed = closed_partition_count(data_dir.path());
        async move { closed >= 2 }
    })
    .await;

    let views = data_dir.path().join(VIEWS_SCRIPT_NAME);
    let read_views = format!(".read {}", views.display());
    for (name, sql) in &recipes {
        let (succeeded, output) = duckdb_cli(&["-csv", "-cmd", &read_views, "-c", sql]);
        assert!(succeeded, "recipe {name:?} failed in the duckdb CLI:\n{output}");
        if name == "worst minutes of the last week" {
            assert!(
                output.lines().any(|line| line.starts_with("db,")),
                "no minute of target db:\n{output}"
            );
        }
    }
    let oldest = &list_partitions(data_dir.path()).unwrap()[0];
    let (succeeded, output) = duckdb_cli(&[
        "-readonly",
        "-csv",
        &oldest.path.display().to_string(),
        "-c",
        "SELECT count(*) > 0 AS has_rows FROM activity_snapshots",
    ]);
    assert!(succeeded && output.contains("true"), "{output}");

    shutdown.cancel();
    collector.await.unwrap().unwrap();
    ingester.await.unwrap().unwrap();
    for sleeper in sleepers {
        sleeper.abort();
    }
}
