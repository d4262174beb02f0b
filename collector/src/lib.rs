//! The collector role: samples each monitored PostgreSQL on its own schedule and publishes snapshot events.
//!
//! Each target gets two tasks: a sampler owning one long-lived connection, and a publisher that
//! sends the sampler's snapshots to JetStream in order. A bounded queue between them keeps a
//! slow or absent NATS from delaying sampling, and a down target from touching other targets.

mod activity;
mod config;
mod connection;
mod database;
mod locks;
mod objects;
mod publisher;
mod sampler;
mod statements;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{CollectorArgs, CollectorConfig, ConfigError, TargetSpec};

use pgmon_common::nats_setup::{connect_jetstream, NatsSetupError};

/// Room left in a NATS message for headers beside the snapshot payload.
const MESSAGE_OVERHEAD_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("no targets to monitor: give --target NAME=DSN or --targets-file")]
    NoTargets,
    #[error(transparent)]
    Nats(#[from] NatsSetupError),
}

/// Runs the collector until `shutdown` is cancelled, then drains what is queued for NATS.
pub async fn run(config: CollectorConfig, shutdown: CancellationToken) -> Result<(), CollectorError> {
    if config.targets.is_empty() {
        return Err(CollectorError::NoTargets);
    }
    let jetstream = connect_jetstream(&config.nats, "pgmon-collector").await?;
    // Headers and the publish protocol share the server's limit with the payload.
    let max_message_bytes = jetstream.client().server_info().max_payload.saturating_sub(MESSAGE_OVERHEAD_BYTES);
    let settings = config.sampling(max_message_bytes);
    tracing::info!(targets = config.targets.len(), interval = ?config.activity_interval, max_message_bytes, "collector started");
    let mut tasks = JoinSet::new();
    for target in &config.targets {
        let (queue, outgoing) = publisher::publish_buffer(target.name.clone(), config.publish_buffer_mib);
        tasks.spawn(publisher::publish_in_order(
            jetstream.clone(),
            target.name.clone(),
            outgoing,
            shutdown.clone(),
        ));
        tasks.spawn(sampler::sample_objects(target.clone(), settings, queue.clone(), shutdown.clone()));
        tasks.spawn(sampler::sample_target(target.clone(), settings, queue, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!("collector stopped");
    Ok(())
}
