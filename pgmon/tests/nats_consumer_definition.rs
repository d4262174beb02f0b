//! `nats/consumer-pgmon-ingester.json` (for `nats consumer add PGMON --config`) is the consumer
//! a starting ingester creates on a real nats-server.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_directory_consumer_is_the_one_the_ingester_creates() {
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let config = ingester_config(&nats.url(), data_dir.path());
    let ingester = tokio::spawn(pgmon_ingester::run(config.clone(), shutdown.clone()));
    let jetstream =
        async_nats::jetstream::new(pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await);
    wait_until(Duration::from_secs(20), "the ingester's consumer", || async {
        match jetstream.get_stream(SNAPSHOT_STREAM).await {
            Ok(stream) => stream.consumer_info(&config.consumer_name).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    let stream = jetstream.get_stream(SNAPSHOT_STREAM).await.unwrap();
    let server = stream.consumer_info(&config.consumer_name).await.unwrap().config.clone();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats/consumer-pgmon-ingester.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: pull::Config = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let server: pull::Config = serde_json::from_value(serde_json::to_value(&server).unwrap()).unwrap();
    assert_eq!(
        essentials(&file),
        essentials(&server),
        "{} differs from the consumer the ingester created",
        path.display()
    );
    assert_eq!(essentials(&file), essentials(&pgmon_ingester::consumer_config(&config, 1)));
    shutdown.cancel();
    ingester.await.unwrap().unwrap();
}
