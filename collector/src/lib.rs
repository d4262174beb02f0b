//! The collector role: samples each monitored PostgreSQL on its own schedule and publishes snapshot events.
//!
//! Targets come from the command line or a file (always sampled by this collector) and from
//! the registry in NATS KV, watched live and split between the collectors alive (`sharding`).
//! Each target gets a sampler owning one long-lived connection, a statements sampler with a
//! session of its own, an objects sampler visiting its databases, and a publisher that sends
//! their samples to JetStream in order. One buffer, bounded in bytes for all targets together,
//! sits between them (`publisher`): a slow or absent NATS never delays sampling, and the oldest
//! samples make room when it is full. At shutdown, what NATS has not taken in time is spooled
//! to disk and published first at the next start.

mod activity;
mod clear_text_guard;
mod config;
mod connection;
mod connection_test;
mod database;
mod dial;
mod internal_events;
mod locks;
mod metrics;
mod objects;
mod progress;
mod publisher;
mod redact;
mod replication;
mod sampler;
mod settings;
mod sharding;
mod statements;
mod tables;
mod tls;
mod wal;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use pgmon_common::registry::{Registry, RegistryChange, RegistryError, TargetRecord};
use pgmon_contract::target::TargetName;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    parse_intervals, parse_label, targets_file_schema, CollectorArgs, CollectorConfig, ConfigError, TargetSpec, DEFAULT_SPOOL_DIR,
};
pub use connection_test::test_connection;
pub use publisher::SpoolError;
pub use sharding::ShardError;

use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{connect_jetstream, NatsSetupError};

use crate::config::SamplingSettings;
use crate::publisher::Outbox;
use crate::sharding::Shard;

/// Room left in a NATS message for headers beside the snapshot payload.
const MESSAGE_OVERHEAD_BYTES: usize = 4096;

/// How often membership and leases are refreshed (well within the lease lifetime).
const SHARD_REFRESH: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Nats(#[from] NatsSetupError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Target(#[from] ConfigError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// The role's name in `/readyz`.
pub const ROLE: &str = "collector";

/// Runs the collector until `shutdown` is cancelled, then publishes what is buffered for at
/// most `shutdown_timeout` and spools the rest to disk, to be published first at the next start.
pub async fn run(config: CollectorConfig, shutdown: CancellationToken) -> Result<(), CollectorError> {
    // Registered at start, so a scrape shows every metric before the first snapshot.
    metrics::metrics();
    let jetstream = connect_jetstream(&config.nats, NatsRole::Collector).await?;
    // Headers and the publish protocol share the server's limit with the payload.
    let max_message_bytes = jetstream.client().server_info().max_payload.saturating_sub(MESSAGE_OVERHEAD_BYTES);
    let registry = Registry::open(&jetstream).await?;
    check_stored_passwords(&registry, &config).await?;
    let mut shard = Shard::join(&jetstream, &config.collector_id, &config.only_labels).await?;
    let outbox = Outbox::new(jetstream.clone(), config.publish_buffer_mib);
    outbox.load_spool(&config.spool_dir);
    pgmon_common::health::ready(ROLE);
    let mut running = RunningTargets {
        outbox: std::sync::Arc::clone(&outbox),
        settings: config.sampling(max_message_bytes),
        shutdown: shutdown.clone(),
        targets: HashMap::new(),
    };
    for target in &config.targets {
        running.start(target.clone(), String::new());
    }
    tracing::info!(
        collector = %config.collector_id,
        static_targets = config.targets.len(),
        max_message_bytes,
        "collector started; registry targets follow the pgmon_targets bucket"
    );

    let mut registered: BTreeMap<TargetName, TargetRecord> = BTreeMap::new();
    let mut changes = Box::pin(registry.watch().await?);
    let mut refresh = tokio::time::interval(SHARD_REFRESH);
    // A refresh that outlasted its period (NATS away: each write waits for its ack timeout)
    // must not be followed by a burst of catch-up refreshes.
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut membership_due = false;
        // Biased: with NATS away the other branches are always ready, and an unbiased choice
        // could keep picking them long after SIGTERM.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            change = changes.next() => match change {
                Some(RegistryChange::Put(record)) => {
                    registered.insert(record.name.clone(), record);
                }
                Some(RegistryChange::Removed(name)) => {
                    registered.remove(&name);
                }
                Some(RegistryChange::Invalid(error)) => tracing::warn!(%error, "registry entry ignored"),
                None => {
                    tracing::warn!("registry watch ended; watching again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    changes = Box::pin(registry.watch().await?);
                }
            },
            _ = refresh.tick() => membership_due = true,
        }
        // Each NATS call here may wait for its timeout; shutdown does not wait for them.
        let membership_work = async {
            if membership_due {
                shard.refresh_members().await;
            }
            reconcile(&config, &registered, &mut shard, &mut running, membership_due).await;
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = membership_work => {}
        }
    }
    // One deadline for the whole shutdown: stop sampling, publish what NATS takes, spool the rest.
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    running.stop_all().await;
    outbox.drain_until(deadline).await;
    let spooled = outbox.spool(&config.spool_dir, &config.collector_id)?;
    if spooled > 0 {
        tracing::warn!(samples = spooled, directory = %config.spool_dir.display(), "NATS did not take every snapshot before the shutdown timeout; the rest is spooled and published first at the next start");
    }
    if tokio::time::timeout(deadline.saturating_duration_since(tokio::time::Instant::now()), shard.leave())
        .await
        .is_err()
    {
        tracing::info!("leaving the collectors' membership timed out; its entries expire by themselves");
    }
    tracing::info!("collector stopped");
    Ok(())
}

/// A stored password that cannot be opened is an error at start, never a silent skip.
async fn check_stored_passwords(registry: &Registry, config: &CollectorConfig) -> Result<(), CollectorError> {
    let (records, invalid) = registry.list().await?;
    for error in invalid {
        tracing::warn!(%error, "registry entry ignored");
    }
    for record in records.iter().filter(|record| record.sealed_password.is_some()) {
        TargetSpec::from_record(record, config.secret_key.as_ref())?;
    }
    Ok(())
}

/// Starts what this collector should sample and stops what it should not: enabled registry
/// targets it owns and holds the lease of. Leases are renewed when `renew` is set.
async fn reconcile(
    config: &CollectorConfig,
    registered: &BTreeMap<TargetName, TargetRecord>,
    shard: &mut Shard,
    running: &mut RunningTargets,
    renew: bool,
) {
    let is_static = |name: &TargetName| config.targets.iter().any(|target| &target.name == name);
    let mut wanted: HashMap<TargetName, &TargetRecord> = HashMap::new();
    for record in registered.values() {
        if is_static(&record.name) {
            tracing::debug!(target = %record.name, "registry target ignored: given on the command line");
            continue;
        }
        if !record.enabled || !shard.owns(record) {
            continue;
        }
        // A lease already held is renewed on the refresh tick only; a new one is taken now.
        let held = if shard.holds(&record.name) && !renew {
            true
        } else {
            shard.hold(&record.name).await
        };
        if held {
            wanted.insert(record.name.clone(), record);
        }
    }
    let unwanted: Vec<TargetName> = running
        .targets
        .keys()
        .filter(|name| !is_static(name) && !wanted.contains_key(*name))
        .cloned()
        .collect();
    for name in unwanted {
        running.stop(&name).await;
        shard.release(&name).await;
        tracing::info!(target = %name, "target handed over or removed");
    }
    for (name, record) in wanted {
        let fingerprint = serde_json::to_string(record).expect("target records always serialise");
        if running.targets.get(&name).is_some_and(|target| target.fingerprint == fingerprint) {
            continue;
        }
        if running.targets.contains_key(&name) {
            running.stop(&name).await;
            tracing::info!(target = %name, "target edited; restarting its sampling");
        }
        match TargetSpec::from_record(record, config.secret_key.as_ref()) {
            Ok(spec) => running.start(spec, fingerprint),
            Err(error) => {
                // An operator must act: this target is not sampled.
                tracing::error!(target = %name, %error, "registry target cannot be sampled");
                shard.release(&name).await;
            }
        }
    }
}

/// One target being sampled.
struct RunningTarget {
    /// The registry record it was started from (empty for command-line targets).
    fingerprint: String,
    stop: CancellationToken,
    samplers: Vec<JoinHandle<()>>,
}

struct RunningTargets {
    outbox: std::sync::Arc<Outbox>,
    settings: SamplingSettings,
    shutdown: CancellationToken,
    targets: HashMap<TargetName, RunningTarget>,
}

impl RunningTargets {
    fn start(&mut self, target: TargetSpec, fingerprint: String) {
        tracing::info!(target = %target.name, "sampling target");
        let stop = self.shutdown.child_token();
        let queue = self.outbox.queue(&target.name);
        let samplers = vec![
            tokio::spawn(sampler::sample_statements(
                target.clone(),
                self.settings.clone(),
                queue.clone(),
                stop.clone(),
            )),
            tokio::spawn(sampler::sample_objects(
                target.clone(),
                self.settings.clone(),
                queue.clone(),
                stop.clone(),
            )),
            tokio::spawn(sampler::sample_target(target.clone(), self.settings.clone(), queue, stop.clone())),
        ];
        self.targets.insert(
            target.name,
            RunningTarget {
                fingerprint,
                stop,
                samplers,
            },
        );
        metrics::metrics().targets_sampled.set(self.targets.len() as i64);
    }

    /// Stops sampling `name`; what it already sampled is still published in the background.
    async fn stop(&mut self, name: &TargetName) {
        if let Some(target) = self.targets.remove(name) {
            metrics::metrics().targets_sampled.set(self.targets.len() as i64);
            target.stop.cancel();
            for sampler in target.samplers {
                let _ = sampler.await;
            }
        }
    }

    /// At shutdown: stops every sampler.
    async fn stop_all(&mut self) {
        for (_, target) in self.targets.drain() {
            target.stop.cancel();
            for sampler in target.samplers {
                let _ = sampler.await;
            }
        }
    }
}
