//! Two ingesters share the targets (`--only-targets`): each stores only its own targets' rows,
//! in its own directory, and answers the queries about them, so a query reaches the owner.

mod common;

use std::time::Duration;

use common::{collector_config, ingester_config, now_us, wait_until};
use pgmon_contract::query::{ActivityDimension, ActivitySeriesRequest, NamedQuery, QueryReply};
use pgmon_contract::subjects::query_subject;
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

/// Samples in the series of `target` over the last minute, as its owner answers (0 while no
/// ingester listens yet).
async fn samples_of(client: &async_nats::Client, target: &str) -> u32 {
    let request = ActivitySeriesRequest {
        target: target.parse().unwrap(),
        from_us: now_us() - 60_000_000,
        to_us: now_us() + 1_000_000,
        step_us: 61_000_000,
        by: ActivityDimension::WaitEventType,
        top: pgmon_contract::query::DEFAULT_TOP_SERIES,
    };
    let asked = client
        .request(
            query_subject(ActivitySeriesRequest::NAME, target),
            serde_json::to_vec(&request).unwrap().into(),
        )
        .await;
    // No responder yet while the ingesters start.
    let Ok(reply) = asked else { return 0 };
    match serde_json::from_slice::<QueryReply<<ActivitySeriesRequest as NamedQuery>::Reply>>(&reply.payload).unwrap() {
        QueryReply::Ok(series) => series.samples.iter().sum(),
        other => panic!("query about {target} failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ingester_stores_and_answers_for_its_own_targets() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let shutdown = CancellationToken::new();
    let dsn = postgres.connection_string("postgres");
    let collector = collector_config(&nats.url(), &[("east", dsn.clone()), ("west", dsn)], Duration::from_millis(250));
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
    let directories = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut ingesters = Vec::new();
    for (directory, target) in directories.iter().zip(["east", "west"]) {
        let mut config = ingester_config(&nats.url(), directory.path());
        config.consumer_name = format!("pgmon-ingester-{target}");
        config.only_targets = vec![target.parse().unwrap()];
        ingesters.push(tokio::spawn(pgmon_ingester::run(config, shutdown.clone())));
    }

    let client = pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await;
    wait_until(Duration::from_secs(30), "both targets answered by their owners", || {
        let client = client.clone();
        async move { samples_of(&client, "east").await > 0 && samples_of(&client, "west").await > 0 }
    })
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    for ingester in ingesters {
        ingester.await.unwrap().unwrap();
    }

    for (directory, own) in directories.iter().zip(["east", "west"]) {
        let database = pgmon_ingester::open_read_only(directory.path()).unwrap();
        let targets: Vec<String> = database
            .prepare("SELECT DISTINCT target FROM activity_snapshots UNION SELECT DISTINCT target FROM target_status")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(targets, vec![own.to_owned()], "the {own} ingester stores only its target");
    }
}
