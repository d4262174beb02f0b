//! `nats/consumer-pgmon-ingester.json` and `nats/consumer-pgmon-notifier.json` (for `nats consumer
//! add --config`) are the consumers a starting ingester and alerter create on a real nats-server.

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use common::{ingester_config, wait_until};
use pgmon_contract::subjects::SNAPSHOT_STREAM;
use pgmon_test_support::TestNats;
use tokio_util::sync::CancellationToken;

/// The parts of a consumer definition that decide behaviour.
fn essentials(config: &pull::Config) -> serde_json::Value {
    serde_json::json!({
        "durable_name": config.durable_name,
        "description": config.description,
        "deliver_policy": serde_json::to_value(config.deliver_policy).unwrap(),
        "ack_policy": serde_json::to_value(config.ack_policy).unwrap(),
        "ack_wait": config.ack_wait.as_secs(),
        "max_ack_pending": config.max_ack_pending,
        "filter_subjects": config.filter_subjects,
    })
}

/// The consumer definition in `nats/<file>`.
fn consumer_file(file: &str) -> pull::Config {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The consumer `name` of `stream` once it exists on the server at `url`.
async fn server_consumer(url: &str, stream: &str, name: &str) -> pull::Config {
    let jetstream = async_nats::jetstream::new(pgmon_test_support::connect_as(url, pgmon_common::nats_access::NatsRole::Admin).await);
    wait_until(Duration::from_secs(20), "the consumer", || async {
        match jetstream.get_stream(stream).await {
            Ok(stream) => stream.consumer_info(name).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    let server = jetstream
        .get_stream(stream)
        .await
        .unwrap()
        .consumer_info(name)
        .await
        .unwrap()
        .config
        .clone();
    serde_json::from_value(serde_json::to_value(&server).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_directory_consumer_is_the_one_the_alerter_creates() {
    let nats = TestNats::start();
    let shutdown = CancellationToken::new();
    let config = pgmon_alerter::AlerterConfig {
        nats: common::nats_args_as(&nats.url(), pgmon_common::nats_access::NatsRole::Alerter),
        alerts_file: None,
        alerter_id: "definition".to_owned(),
        web_url: "http://127.0.0.1:8080".to_owned(),
        retry: pgmon_alerter::RetryPolicy {
            first_wait: Duration::from_secs(1),
            longest_wait: Duration::from_secs(1),
            give_up_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(1),
        },
    };
    let alerter = tokio::spawn(pgmon_alerter::run(config, shutdown.clone()));
    let server = server_consumer(
        &nats.url(),
        pgmon_contract::subjects::ALERT_STREAM,
        pgmon_contract::subjects::NOTIFIER_CONSUMER,
    )
    .await;
    let file = consumer_file("consumer-pgmon-notifier.json");
    assert_eq!(
        essentials(&file),
        essentials(&server),
        "nats/consumer-pgmon-notifier.json differs from the consumer the alerter created"
    );
    assert_eq!(essentials(&file), essentials(&pgmon_alerter::notify::notifier_consumer_config()));
    shutdown.cancel();
    alerter.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_directory_consumer_is_the_one_the_ingester_creates() {
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let config = ingester_config(&nats.url(), data_dir.path());
    let ingester = tokio::spawn(pgmon_ingester::run(config.clone(), shutdown.clone()));
    let server = server_consumer(&nats.url(), SNAPSHOT_STREAM, &config.consumer_name).await;
    let file = consumer_file("consumer-pgmon-ingester.json");
    assert_eq!(
        essentials(&file),
        essentials(&server),
        "nats/consumer-pgmon-ingester.json differs from the consumer the ingester created"
    );
    assert_eq!(essentials(&file), essentials(&pgmon_ingester::consumer_config(&config, 1)));
    shutdown.cancel();
    ingester.await.unwrap().unwrap();
}
