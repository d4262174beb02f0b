//! Object sizes end to end: a table of known size, with its index and TOAST table, appears in
//! the right database, including a database created while the collector runs.

mod common;

use std::time::Duration;

use common::{spawn_pipeline, stream_of_kind, wait_until};
use pgmon_contract::event::{AnySnapshot, ObjectKind, ObjectRow, Snapshot};
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

/// Objects of the latest round, as the API lists them; `None` while no ingester answers yet
/// (503 before the ingester has subscribed to queries).
async fn try_api_objects(http: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    let response = http
        .get(format!("{base}/api/v1/targets/db/objects?limit=1000"))
        .send()
        .await
        .unwrap();
    if response.status() == 503 {
        return None;
    }
    assert_eq!(response.status(), 200);
    Some(response.json().await.unwrap())
}

async fn api_objects(http: &reqwest::Client, base: &str) -> serde_json::Value {
    try_api_objects(http, base).await.expect("an ingester answers")
}

fn object<'a>(reply: &'a serde_json::Value, database: &str, name: &str) -> Option<&'a serde_json::Value> {
    reply["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|object| object["database"] == database && object["name"] == name)
}

/// A table held under ACCESS EXCLUSIVE through several objects rounds, as a migration holds it:
/// every other object keeps being measured, the locked one keeps its last size, marked stale
/// with who holds the lock. A database the collector cannot connect to keeps its last objects,
/// marked with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_keeps_its_last_size_and_every_other_object_is_measured() {
    let nats = TestNats::start();
    let postgres = TestPostgres::start();
    let admin = postgres.connect().await;
    admin
        .batch_execute(
            "CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
             CREATE TABLE migrated (id int PRIMARY KEY, note text);
             INSERT INTO migrated SELECT g, repeat('m', 300) FROM generate_series(1, 3000) g;
             CREATE TABLE growing (id int, note text);",
        )
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE unreachable_later").await.unwrap();
    let (other, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=postgres dbname=unreachable_later", postgres.port()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    other
        .batch_execute("CREATE TABLE kept (id int); INSERT INTO kept SELECT generate_series(1, 5000);")
        .await
        .unwrap();
    drop(other);
    let size_of = |name: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one("SELECT pg_total_relation_size($1::text::regclass)", &[&name])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let migrated_size = size_of("migrated").await;

    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("monitor"), data_dir.path(), &shutdown);
    let server = pgmon_query_api::bind(&common::serve_config(&nats.url())).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let web = tokio::spawn(server.serve(shutdown.clone()));
    let http = common::api_client(&nats.url(), pgmon_common::access::Role::Viewer).await;
    wait_until(Duration::from_secs(30), "both databases measured", || async {
        let Some(reply) = try_api_objects(&http, &base).await else {
            return false;
        };
        object(&reply, "postgres", "migrated").is_some_and(|object| object["total_bytes"] == migrated_size)
            && object(&reply, "unreachable_later", "kept").is_some()
    })
    .await;
    let kept_size = object(&api_objects(&http, &base).await, "unreachable_later", "kept").unwrap()["total_bytes"].clone();

    // A migration locks the table; the other database stops taking connections from pgmon.
    let holder = postgres.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE migrated IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let holder_pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    admin
        .batch_execute("ALTER DATABASE unreachable_later CONNECTION LIMIT 0")
        .await
        .unwrap();
    let locked_at_us = common::now_us();
    admin
        .batch_execute("INSERT INTO growing SELECT g, repeat('g', 500) FROM generate_series(1, 20000) g")
        .await
        .unwrap();
    let growing_size = size_of("growing").await;
    let url = nats.url();
    wait_until(Duration::from_secs(60), "three objects rounds under the lock", || async {
        let rounds: std::collections::BTreeSet<i64> = stream_objects(&url)
            .await
            .iter()
            .map(|snapshot| snapshot.collected_at_us)
            .filter(|at| *at > locked_at_us)
            .collect();
        rounds.len() >= 3
    })
    .await;
    wait_until(Duration::from_secs(10), "the latest round stored", || async {
        let reply = api_objects(&http, &base).await;
        reply["collected_at_us"].as_i64() > Some(locked_at_us + 4_000_000)
    })
    .await;

    let reply = api_objects(&http, &base).await;
    let migrated = object(&reply, "postgres", "migrated").expect("the locked table is still listed");
    assert_eq!(migrated["total_bytes"], migrated_size, "the locked table keeps its last size");
    let reason = migrated["size_stale_reason"].as_str().unwrap();
    assert_eq!(reason, format!("locked: AccessExclusiveLock held by pid {holder_pid}"));
    assert!(migrated["size_measured_at_us"].as_i64().unwrap() < locked_at_us, "{migrated}");
    let growing = object(&reply, "postgres", "growing").unwrap();
    assert_eq!(growing["total_bytes"], growing_size, "every other object is measured: {growing}");
    assert!(growing.get("size_stale_reason").is_none());
    let index = object(&reply, "postgres", "migrated_pkey").unwrap();
    assert!(
        index.get("size_stale_reason").is_none(),
        "the locked table's index is measured: {index}"
    );

    let kept = object(&reply, "unreachable_later", "kept").expect("the unreadable database's objects are kept");
    assert_eq!(kept["total_bytes"], kept_size);
    assert!(
        kept["size_stale_reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("database not read: ") && reason.contains("too many connections")),
        "{kept}"
    );
    let skipped = reply["skipped_databases"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["database"], "unreachable_later");
    assert!(reply["stale_objects"].as_i64().unwrap() >= 2, "{}", reply["stale_objects"]);

    // The page says so.
    let page = http
        .get(format!("{base}/targets/db/objects/all"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("stale: locked: AccessExclusiveLock held by pid"), "{page}");
    assert!(page.contains("could not be read in this round"), "{page}");

    // The lock gone, the next round measures the table again.
    holder.batch_execute("COMMIT").await.unwrap();
    wait_until(Duration::from_secs(30), "the table measured again", || async {
        let reply = api_objects(&http, &base).await;
        object(&reply, "postgres", "migrated").is_some_and(|object| object.get("size_stale_reason").is_none())
    })
    .await;

    shutdown.cancel();
    pipeline.join().await;
    web.await.unwrap().unwrap();
}
