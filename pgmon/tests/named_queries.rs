//! Every named query over NATS request/reply against what a real collector recorded of a real
//! PostgreSQL: sessions, statements, objects, locks and database statistics.

mod common;

use std::time::Duration;

use common::{now_us, spawn_pipeline, wait_until};
use pgmon_contract::event::blocking_tree;
use pgmon_contract::query::{
    ActivityDimension, ActivitySeriesRequest, BlockingRequest, DatabaseSeriesRequest, LockHistoryRequest, NamedQuery, ObjectGrowthRequest,
    ObjectOrder, ObjectsRequest, QueryReply, SessionHistoryRequest, SessionsRequest, StatementHistoryRequest, StatementOrder,
    TopStatementsRequest, VacuumHealthRequest,
};
use pgmon_contract::subjects::query_subject;
use pgmon_contract::target::TargetName;
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

async fn ask<Query: NamedQuery>(client: &async_nats::Client, request: &Query) -> QueryReply<Query::Reply> {
    let subject = query_subject(Query::NAME, request.target().as_str());
    let reply = client.request(subject, serde_json::to_vec(request).unwrap().into()).await.unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

async fn answer<Query: NamedQuery>(client: &async_nats::Client, request: &Query) -> Query::Reply {
    match ask(client, request).await {
        QueryReply::Ok(reply) => reply,
        other => panic!("{} failed: {:?}", Query::NAME, serde_json::to_string(&other).unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_named_query_answers_from_recorded_history() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let setup = postgres.connect().await;
    setup
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements;
             CREATE TABLE orders AS SELECT g AS id, repeat('x', 100) AS note FROM generate_series(1, 20000) g;
             CREATE INDEX orders_id ON orders (id);",
        )
        .await
        .unwrap();
    let started_us = now_us();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);

    // Load: a statement run many times, a sleeper, and a lock wait.
    for _ in 0..50 {
        setup.batch_execute("SELECT count(*) FROM orders WHERE id < 100").await.unwrap();
    }
    let sleeper = postgres.connect().await;
    let sleeping = tokio::spawn(async move { sleeper.batch_execute("SELECT pg_sleep(4)").await });
    let holder = postgres.connect().await;
    holder.batch_execute("BEGIN; LOCK TABLE orders IN EXCLUSIVE MODE").await.unwrap();
    let waiter = postgres.connect().await;
    let waiting = tokio::spawn(async move { waiter.batch_execute("BEGIN; LOCK TABLE orders; COMMIT").await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    waiting.await.unwrap().unwrap();
    for _ in 0..50 {
        setup.batch_execute("SELECT count(*) FROM orders WHERE id < 100").await.unwrap();
    }
    sleeping.await.unwrap().unwrap();

    let client = pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await;
    let target: TargetName = "db".parse().unwrap();
    let (from_us, to_us) = (started_us - 60_000_000, now_us() + 60_000_000);
    // Objects come every 2 s (a round may be skipped while the table is locked) and statements
    // every second: wait for two of each to be stored.
    let objects_request = ObjectsRequest {
        target: target.clone(),
        database: Some("postgres".into()),
        schema_name: None,
        kind: None,
        name_contains: Some("ORDER".into()),
        order_by: ObjectOrder::TotalBytes,
        offset: 0,
        limit: 10,
    };
    wait_until(Duration::from_secs(30), "objects and statements to be stored", || {
        let client = client.clone();
        let objects_request = objects_request.clone();
        async move {
            let objects = answer(&client, &objects_request).await;
            let statements = answer(
                &client,
                &TopStatementsRequest {
                    target: "db".parse().unwrap(),
                    from_us,
                    to_us,
                    order_by: StatementOrder::Calls,
                    limit: 5,
                },
            )
            .await;
            let growth = answer(
                &client,
                &ObjectGrowthRequest {
                    target: "db".parse().unwrap(),
                    database: "postgres".into(),
                    schema_name: "public".into(),
                    name: "orders".into(),
                    from_us,
                    to_us,
                },
            )
            .await;
            objects.total >= 2 && growth.points.len() >= 2 && statements.iter().any(|statement| statement.calls >= 50)
        }
    })
    .await;

    let series = answer(
        &client,
        &ActivitySeriesRequest {
            target: target.clone(),
            from_us,
            to_us,
            step_us: 10_000_000,
            by: ActivityDimension::Application,
            top: pgmon_contract::query::DEFAULT_TOP_SERIES,
        },
    )
    .await;
    assert!(!series.series.is_empty());

    let sessions = answer(
        &client,
        &SessionsRequest {
            target: target.clone(),
            from_us,
            to_us,
            limit: 50,
        },
    )
    .await;
    let sleeper = sessions
        .iter()
        .find(|session| session.last_query.as_deref() == Some("SELECT pg_sleep(4)"))
        .expect("the sleeping session");
    assert!(
        sleeper.active_samples > 0 && sleeper.top_wait_event.as_deref() == Some("Timeout:PgSleep"),
        "{sleeper:?}"
    );
    let history = answer(
        &client,
        &SessionHistoryRequest {
            target: target.clone(),
            pid: sleeper.pid,
            backend_start_us: sleeper.backend_start_us,
            from_us,
            to_us,
            limit: 1000,
        },
    )
    .await;
    assert_eq!(history.len() as i64, sleeper.samples);

    let top = answer(
        &client,
        &TopStatementsRequest {
            target: target.clone(),
            from_us,
            to_us,
            order_by: StatementOrder::Calls,
            limit: 5,
        },
    )
    .await;
    let counted = top
        .iter()
        .find(|statement| {
            statement
                .query
                .as_deref()
                .is_some_and(|query| query.contains("FROM orders WHERE id <"))
        })
        .expect("the repeated statement");
    let statement = answer(
        &client,
        &StatementHistoryRequest {
            target: target.clone(),
            query_id: counted.query_id,
            from_us,
            to_us,
            step_us: 1_000_000,
        },
    )
    .await;
    let calls_in_history: i64 = statement.points.iter().map(|point| point.calls).sum();
    assert!(calls_in_history >= 50 && statement.query.is_some(), "{statement:?}");

    let objects = answer(&client, &objects_request).await;
    assert_eq!(objects.objects[0].name, "orders", "{objects:?}");
    assert!(objects
        .objects
        .iter()
        .any(|object| object.name == "orders_id" && object.kind == "index"));
    let growth = answer(
        &client,
        &ObjectGrowthRequest {
            target: target.clone(),
            database: "postgres".into(),
            schema_name: "public".into(),
            name: "orders".into(),
            from_us,
            to_us,
        },
    )
    .await;
    assert!(growth.points.len() >= 2 && growth.points[0].total_bytes > 2_000_000, "{growth:?}");

    let locks = answer(
        &client,
        &LockHistoryRequest {
            target: target.clone(),
            from_us,
            to_us,
            step_us: 1_000_000,
        },
    )
    .await;
    // The waiter, and maybe pgmon's own objects session queued behind it.
    assert!(locks.buckets.iter().any(|bucket| bucket.max_waiting_sessions >= 1), "{locks:?}");
    let blocker = &locks.blockers[0];
    assert!(
        blocker
            .query
            .as_deref()
            .is_some_and(|query| query.contains("LOCK TABLE orders IN EXCLUSIVE MODE")),
        "{blocker:?}"
    );
    let blocking = answer(
        &client,
        &BlockingRequest {
            target: target.clone(),
            at_us: blocker.last_seen_us,
        },
    )
    .await;
    let tree = blocking_tree(&blocking.locks);
    assert_eq!(tree.root_blockers, vec![blocker.pid], "{blocking:?}");

    let database = answer(
        &client,
        &DatabaseSeriesRequest {
            target: target.clone(),
            database: Some("postgres".into()),
            from_us,
            to_us,
            step_us: 5_000_000,
        },
    )
    .await;
    assert!(
        database
            .iter()
            .any(|point| point.transactions_per_second.is_some_and(|tps| tps > 0.0)),
        "{database:?}"
    );

    let health = answer(
        &client,
        &VacuumHealthRequest {
            target: target.clone(),
            limit: 500,
        },
    )
    .await;
    assert!(
        health.databases.iter().any(|database| database.database == "postgres")
            && health.oldest_tables.iter().any(|table| table.name == "orders"),
        "{health:?}"
    );
    let refused = ask(
        &client,
        &VacuumHealthRequest {
            target: target.clone(),
            limit: 0,
        },
    )
    .await;
    assert!(matches!(refused, QueryReply::Invalid(_)), "{refused:?}");

    // Bad requests are refused with the reason, not run.
    let refused = ask(
        &client,
        &SessionsRequest {
            target: target.clone(),
            from_us: to_us,
            to_us: from_us,
            limit: 10,
        },
    )
    .await;
    assert_eq!(refused, QueryReply::Invalid("from must be before to".into()));

    shutdown.cancel();
    pipeline.join().await;
}
