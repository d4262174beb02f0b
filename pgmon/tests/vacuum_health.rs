//! Vacuum and wraparound end to end: a table with autovacuum off and deleted rows shows the
//! server's dead tuples and frozen-ID ages on the Health API, past its vacuum threshold, and
//! its age falls after `VACUUM FREEZE`; database ages equal `age(datfrozenxid)`.

mod common;

use std::time::Duration;

use common::{spawn_pipeline, wait_until, ServedWeb};
use pgmon_test_support::{TestNats, TestPostgres};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What the server itself says of the test table and its database.
#[derive(Debug, PartialEq)]
struct Truth {
    dead_tuples: i64,
    frozen_xid_age: i64,
    frozen_multixact_age: i64,
    vacuum_threshold_tuples: i64,
    database_frozen_xid_age: i64,
}

async fn truth(client: &tokio_postgres::Client) -> Truth {
    let row = client
        .query_one(
            "SELECT s.n_dead_tup, age(c.relfrozenxid)::int8, mxid_age(c.relminmxid)::int8,
                    (current_setting('autovacuum_vacuum_threshold')::float8
                     + current_setting('autovacuum_vacuum_scale_factor')::float8 * greatest(c.reltuples, 0))::int8,
                    (SELECT age(datfrozenxid)::int8 FROM pg_database WHERE datname = current_database())
             FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = 'churn'::regclass",
            &[],
        )
        .await
        .unwrap();
    Truth {
        dead_tuples: row.get(0),
        frozen_xid_age: row.get(1),
        frozen_multixact_age: row.get(2),
        vacuum_threshold_tuples: row.get(3),
        database_frozen_xid_age: row.get(4),
    }
}

/// The same figures as the Health API gives them, with the churn table's place in the lists.
async fn reported(web: &ServedWeb) -> Option<(Truth, Value)> {
    let reply = web.json("/api/v1/targets/db/health/vacuum?limit=1000").await;
    let churn = reply["oldest_tables"]
        .as_array()?
        .iter()
        .find(|table| table["database"] == "postgres" && table["schema_name"] == "public" && table["name"] == "churn")?
        .clone();
    let database = reply["databases"]
        .as_array()?
        .iter()
        .find(|database| database["database"] == "postgres")?;
    let reported = Truth {
        dead_tuples: churn["dead_tuples"].as_i64()?,
        frozen_xid_age: churn["frozen_xid_age"].as_i64()?,
        frozen_multixact_age: churn["frozen_multixact_age"].as_i64()?,
        vacuum_threshold_tuples: churn["vacuum_threshold_tuples"].as_i64()?,
        database_frozen_xid_age: database["frozen_xid_age"].as_i64()?,
    };
    Some((reported, reply))
}

/// Waits until the API reports what the server says at the same moment, and returns both.
async fn agreed(web: &ServedWeb, client: &tokio_postgres::Client, what: &str) -> (Truth, Value) {
    let mut last = None;
    for _ in 0..60 {
        let server = truth(client).await;
        if let Some((reported, reply)) = reported(web).await {
            if reported == server {
                return (server, reply);
            }
            last = Some((server, reported));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{what}: the Health API never agreed with the server (server, reported): {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tuples_and_frozen_ages_equal_the_servers_and_move_after_vacuum_freeze() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let client = postgres.connect().await;
    client
        .batch_execute(
            "CREATE TABLE churn (id int, pad text) WITH (autovacuum_enabled = false);
             INSERT INTO churn SELECT i, repeat('x', 100) FROM generate_series(1, 10000) i;
             DELETE FROM churn WHERE id <= 4000;",
        )
        .await
        .unwrap();
    // Transactions after the table's creation, so its frozen-ID age is well above 0.
    for _ in 0..300 {
        client.batch_execute("SELECT txid_current()").await.unwrap();
    }
    wait_until(Duration::from_secs(30), "the server to count the dead tuples", || async {
        truth(&client).await.dead_tuples == 4000
    })
    .await;

    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let web = ServedWeb::start(&nats.url(), &shutdown).await;

    let (before, reply) = agreed(&web, &client, "before the freeze").await;
    assert_eq!(before.dead_tuples, 4000);
    assert!(before.frozen_xid_age >= 300, "{before:?}");
    let overdue = reply["vacuum_overdue"].as_array().unwrap();
    let churn = overdue
        .iter()
        .find(|table| table["name"] == "churn")
        .unwrap_or_else(|| panic!("4000 dead tuples are past the threshold: {reply}"));
    assert_eq!(churn["autovacuum_enabled"], false, "its storage parameter turns autovacuum off");
    assert!(reply["vacuum_overdue_count"].as_i64() >= Some(1));
    let percent = churn["wraparound_percent"].as_f64().unwrap();
    let expected = before.frozen_xid_age.max(before.frozen_multixact_age) as f64 * 100.0 / 2_147_483_648.0;
    assert!((percent - expected).abs() < 1e-9, "{percent} against {expected}");
    assert_eq!(reply["freeze_max_age"], 200_000_000, "the server's autovacuum_freeze_max_age");

    let page = web.page("/targets/db/health").await;
    assert!(
        page.contains("Transaction-ID wraparound") && page.contains("postgres.public.churn"),
        "the overdue table is listed: {page}"
    );

    client.batch_execute("VACUUM (FREEZE) churn").await.unwrap();
    let (after, reply) = agreed(&web, &client, "after the freeze").await;
    assert!(after.frozen_xid_age < before.frozen_xid_age, "{before:?} then {after:?}");
    assert_eq!(after.dead_tuples, 0, "VACUUM removed them");
    assert!(
        reply["vacuum_overdue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|table| table["name"] != "churn"),
        "no longer overdue: {reply}"
    );
    let churn = reply["oldest_tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["name"] == "churn")
        .unwrap();
    assert!(churn["last_vacuum_us"].as_i64().is_some(), "{churn}");

    let fleet = web.json("/api/v1/fleet").await;
    let oldest = fleet[0]["oldest_xid_percent"].as_f64().expect("the fleet shows the oldest XID");
    assert!(oldest > 0.0 && oldest < 1.0, "{fleet}");

    shutdown.cancel();
    web.join().await;
    pipeline.join().await;
}

/// An index build held at "waiting for writers" by an open writing transaction shows as
/// running now with its phase; once it ends, nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_build_shows_as_running_with_its_phase_until_it_ends() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let writer = postgres.connect().await;
    writer.batch_execute("CREATE TABLE ledger (id int)").await.unwrap();
    writer.batch_execute("BEGIN; INSERT INTO ledger VALUES (1)").await.unwrap();
    let builder = postgres.connect().await;
    let build = tokio::spawn(async move { builder.batch_execute("CREATE INDEX CONCURRENTLY ledger_id ON ledger (id)").await });

    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let web = ServedWeb::start(&nats.url(), &shutdown).await;
    let running = || web.json("/api/v1/targets/db/health/maintenance");

    let is_building = |reply: &Value| {
        reply["commands"]
            .as_array()
            .is_some_and(|commands| commands.iter().any(|command| command["command"] == "create_index"))
    };
    wait_until(Duration::from_secs(20), "the index build running", || async {
        is_building(&running().await)
    })
    .await;
    let seen = running().await;
    let command = seen["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|command| command["command"] == "create_index")
        .unwrap();
    assert_eq!(command["relation"], "ledger", "named in the collector's database: {command}");
    assert_eq!(command["database"], "postgres");
    assert_eq!(command["autovacuum"], false);
    assert!(
        command["phase"].as_str().unwrap().contains("waiting for writers"),
        "held by the open insert: {command}"
    );
    // The running commands come from the stream, the rest of the tab from the ingester, which
    // may not answer its first queries yet.
    wait_until(Duration::from_secs(20), "the ingester to answer the Health tab", || async {
        web.status("/targets/db/health").await == 200
    })
    .await;
    let page = web.page("/targets/db/health").await;
    assert!(
        page.contains("Maintenance running now") && page.contains("waiting for writers"),
        "{page}"
    );

    writer.batch_execute("COMMIT").await.unwrap();
    build.await.unwrap().unwrap();
    wait_until(Duration::from_secs(20), "nothing running any more", || async {
        running().await["commands"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    shutdown.cancel();
    web.join().await;
    pipeline.join().await;
}
