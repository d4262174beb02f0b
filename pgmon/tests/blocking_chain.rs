//! A blocking chain (A holds a row lock, B waits on A, C waits on B): the `locks` snapshot
//! names A as the root blocker with the chain A→B→C, and the ingester stores it.

mod common;

use std::time::Duration;

use common::{spawn_pipeline, stream_snapshots, wait_until};
use pgmon_contract::event::{blocking_tree, AnySnapshot, BlockingTree};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

async fn newest_locks_tree(nats_url: &str) -> Option<BlockingTree> {
    stream_snapshots(nats_url)
        .await
        .into_iter()
        .rev()
        .find_map(|(_, snapshot)| match snapshot {
            AnySnapshot::Locks(snapshot) => Some(blocking_tree(&snapshot.rows)),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_blocker_of_a_chain_is_named() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let setup = postgres.connect().await;
    setup
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders VALUES (1, 'new')")
        .await
        .unwrap();

    let (a, b, c) = (postgres.connect().await, postgres.connect().await, postgres.connect().await);
    let (pid_a, pid_b, pid_c) = (backend_pid(&a).await, backend_pid(&b).await, backend_pid(&c).await);
    a.batch_execute("BEGIN; UPDATE orders SET status = 'paid' WHERE id = 1")
        .await
        .unwrap();
    let waiter_b = tokio::spawn(async move { b.execute("UPDATE orders SET status = 'shipped' WHERE id = 1", &[]).await });
    let waits_on_lock = |pid: i32| {
        let setup = &setup;
        async move {
            let row = setup
                .query_one("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", &[&pid])
                .await
                .unwrap();
            row.get::<_, Option<String>>(0).as_deref() == Some("Lock")
        }
    };
    wait_until(Duration::from_secs(10), "B to wait on A", || waits_on_lock(pid_b)).await;
    let waiter_c = tokio::spawn(async move { c.execute("UPDATE orders SET status = 'lost' WHERE id = 1", &[]).await });
    wait_until(Duration::from_secs(10), "C to wait on B", || waits_on_lock(pid_c)).await;

    let shutdown = CancellationToken::new();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let url = nats.url();
    wait_until(Duration::from_secs(20), "a locks snapshot of the chain", || async {
        newest_locks_tree(&url).await.is_some_and(|tree| tree.edges.len() >= 2)
    })
    .await;

    let tree = newest_locks_tree(&url).await.unwrap();
    assert_eq!(tree.root_blockers, vec![pid_a], "{tree:?}");
    assert!(tree.edges.contains(&(pid_a, pid_b)), "{tree:?}");
    assert!(tree.edges.contains(&(pid_b, pid_c)), "{tree:?}");
    assert!(
        !tree.edges.iter().any(|(_, waiter)| *waiter == pid_a),
        "A waits for no one: {tree:?}"
    );

    // Release the chain; afterwards no locks snapshot is published (nobody waits).
    a.batch_execute("ROLLBACK").await.unwrap();
    waiter_b.await.unwrap().unwrap();
    waiter_c.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    pipeline.join().await;

    let database = pgmon_ingester::open_read_only(data_dir.path()).unwrap();
    let stored_waits: i64 = database
        .query_row(
            "SELECT count(*) FROM lock_samples WHERE NOT granted AND pid = ? AND list_contains(blocked_by, ?)",
            duckdb::params![pid_b, pid_a],
            |row| row.get(0),
        )
        .unwrap();
    assert!(stored_waits > 0, "the ingester stored B waiting on A");
}
