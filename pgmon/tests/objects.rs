//! Object sizes end to end: a table of known size, with its index and TOAST table, appears in
//! the right database, including a database created while the collector runs.

mod common;

use std::time::Duration;

use common::{spawn_pipeline, stream_of_kind, wait_until};
use pgmon_common::event::{AnySnapshot, ObjectKind, ObjectRow, Snapshot};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

async fn stream_objects(nats_url: &str) -> Vec<Snapshot<ObjectRow>> {
    stream_of_kind(nats_url, |snapshot| match snapshot {
        AnySnapshot::Objects(snapshot) => Some(snapshot),
        _ => None,
    })
    .await
}

/// The rows of the latest objects snapshot (all its parts).
async fn latest_objects(nats_url: &str) -> Vec<ObjectRow> {
    let snapshots = stream_objects(nats_url).await;
    let Some(latest) = snapshots.last().map(|snapshot| snapshot.collected_at_us) else {
        return Vec::new();
    };
    snapshots
        .into_iter()
        .filter(|snapshot| snapshot.collected_at_us == latest)
        .flat_map(|snapshot| snapshot.rows)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_known_size_appears_in_a_database_created_while_running() {
    let nats = TestNats::start();
    let postgres = TestPostgres::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let url = nats.url();
    wait_until(Duration::from_secs(20), "a first objects snapshot", || async {
        !stream_objects(&url).await.is_empty()
    })
    .await;
    assert!(
        latest_objects(&url).await.iter().all(|row| row.database != "shop"),
        "shop does not exist yet"
    );

    let admin = postgres.connect().await;
    admin.batch_execute("CREATE DATABASE shop").await.unwrap();
    let (shop, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=postgres dbname=shop", postgres.port()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    // Wide random text goes to TOAST; VACUUM ANALYZE sets the row estimate and creates the
    // free-space and visibility maps now, so the sizes stay put while the test reads them.
    shop.batch_execute(
        "CREATE SCHEMA sales;
         CREATE TABLE sales.orders (id int PRIMARY KEY, note text);
         INSERT INTO sales.orders
             SELECT i, (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 200) j)
             FROM generate_series(1, 2000) i;",
    )
    .await
    .unwrap();
    shop.batch_execute("VACUUM ANALYZE sales.orders").await.unwrap();
    let sizes = shop
        .query_one(
            "SELECT pg_total_relation_size('sales.orders'), pg_relation_size('sales.orders'),
                    pg_indexes_size('sales.orders'), pg_total_relation_size(reltoastrelid), pg_relation_size('sales.orders_pkey'),
                    reltoastrelid::regclass::text
             FROM pg_class WHERE oid = 'sales.orders'::regclass",
            &[],
        )
        .await
        .unwrap();
    let (total, table, indexes, toast, primary_key): (i64, i64, i64, i64, i64) =
        (sizes.get(0), sizes.get(1), sizes.get(2), sizes.get(3), sizes.get(4));
    let toast_name: String = sizes.get(5);
    assert!(toast > 0, "the test table must have TOAST data");

    let started_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    wait_until(Duration::from_secs(30), "the orders table in an objects snapshot", || async {
        let snapshots = stream_objects(&url).await;
        snapshots
            .iter()
            .any(|snapshot| snapshot.collected_at_us > started_us && snapshot.rows.iter().any(|row| row.name == "orders"))
    })
    .await;
    let objects = latest_objects(&url).await;
    let orders = objects
        .iter()
        .find(|row| row.database == "shop" && row.schema == "sales" && row.name == "orders")
        .expect("sales.orders in database shop");
    assert_eq!(orders.kind, ObjectKind::Table);
    assert_eq!(
        (orders.total_bytes, orders.table_bytes, orders.index_bytes, orders.toast_bytes),
        (total, table, indexes, toast)
    );
    assert_eq!(orders.row_estimate, Some(2000));
    assert!(orders.last_vacuum_us.is_some() && orders.last_analyze_us.is_some(), "{orders:?}");
    let primary_key_row = objects.iter().find(|row| row.name == "orders_pkey").expect("the primary key");
    assert_eq!(primary_key_row.kind, ObjectKind::Index);
    assert_eq!(primary_key_row.parent.as_deref(), Some("sales.orders"));
    assert_eq!(primary_key_row.total_bytes, primary_key);
    let toast_row = objects
        .iter()
        .find(|row| row.database == "shop" && row.kind == ObjectKind::Toast && toast_name.ends_with(&row.name))
        .expect("the TOAST table");
    assert_eq!(toast_row.parent.as_deref(), Some("sales.orders"));
    assert!(
        objects
            .iter()
            .all(|row| row.schema != "pg_catalog" && row.schema != "information_schema"),
        "system catalogs are left out"
    );

    // The ingester stores what it has received within a batch wait.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    pipeline.join().await;
    let database = pgmon_ingester::open_read_only(data_dir.path()).unwrap();
    let stored: i64 = database
        .query_row(
            "SELECT total_bytes FROM object_samples WHERE database = 'shop' AND schema_name = 'sales' AND name = 'orders'
             ORDER BY collected_at DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, total);
}
