//! The alerter role: evaluates alerting rules on the snapshot stream, keeps where each rule
//! stands on each target in NATS, and delivers one notification per transition.
//!
//! - `rules`: the alerts file (receivers and rules) and its checks;
//! - `conditions`: what each condition measures on a sample;
//! - `state`: the steps pending → firing → resolving → inactive, in sample time;
//! - `engine`: the stream consumer, the compare-and-set records and the transitions' outbox;
//! - `notify`: delivery to webhooks, Slack, email and Alertmanager with retries, and undeliverable
//!   notifications kept;
//! - `check`: the rules replayed over the stream's samples (`pgmon alert check --since`).

pub mod check;
pub mod conditions;
pub mod engine;
mod metrics;
pub mod notify;
pub mod rules;
pub mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use clap::Args;
use futures::StreamExt;
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{self, NatsArgs, NatsSetupError};
use pgmon_common::registry::{Registry, RegistryChange};
use pgmon_contract::subjects::{ALERT_RULES_BUCKET, ALERT_SILENCES_BUCKET, ALERT_STATE_BUCKET, KNOWN_RECEIVERS_KEY};
use tokio_util::sync::CancellationToken;

pub use notify::RetryPolicy;
pub use rules::{read_alerts_file, AlertsFile, Rule, RulesError};

use crate::engine::{Evaluator, RuleSet, Silences, TargetLabels};
use crate::notify::Destinations;

pub const ROLE: &str = "alerter";

/// Where notifications link to when `--web-url` is not given: the web's default address.
pub const DEFAULT_WEB_URL: &str = "http://127.0.0.1:8080";

/// The alerter's flags.
#[derive(Args, Clone, Debug)]
pub struct AlerterArgs {
    /// The alerts file (TOML): receivers, and the rules that seed the rules bucket (rules
    /// already in the bucket, perhaps edited in the UI, are kept). See docs/alerting.md.
    #[arg(long, env = "PGMON_ALERTS_FILE", value_name = "FILE")]
    pub alerts_file: Option<PathBuf>,

    /// Names this alerter's place in the snapshot stream (its durable consumer); replicas need
    /// different ids. Default: the host name.
    #[arg(long, env = "PGMON_ALERTER_ID")]
    pub alerter_id: Option<String>,

    /// The address people open pgmon's web at, for the links in notifications (default
    /// http://127.0.0.1:8080; in `pgmon up`, the address the web listens on).
    #[arg(long, env = "PGMON_WEB_URL")]
    pub web_url: Option<String>,

    /// The wait before retrying a notification that could not be delivered; each later wait
    /// is three times longer, up to --notify-retry-longest.
    #[arg(long, env = "PGMON_NOTIFY_RETRY_FIRST", default_value = "5s", value_parser = humantime::parse_duration)]
    pub notify_retry_first: Duration,

    /// The longest wait between two delivery attempts.
    #[arg(long, env = "PGMON_NOTIFY_RETRY_LONGEST", default_value = "10m", value_parser = humantime::parse_duration)]
    pub notify_retry_longest: Duration,

    /// How long a notification is retried before it is kept as undeliverable.
    #[arg(long, env = "PGMON_NOTIFY_GIVE_UP_AFTER", default_value = "24h", value_parser = humantime::parse_duration)]
    pub notify_give_up_after: Duration,

    /// How long one delivery attempt may take.
    #[arg(long, env = "PGMON_NOTIFY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub notify_timeout: Duration,
}

/// What the alerter runs with.
#[derive(Clone, Debug)]
pub struct AlerterConfig {
    pub nats: NatsArgs,
    pub alerts_file: Option<PathBuf>,
    pub alerter_id: String,
    pub web_url: String,
    pub retry: RetryPolicy,
}

impl AlerterConfig {
    pub fn from_args(args: AlerterArgs, nats: NatsArgs) -> Result<AlerterConfig, AlerterError> {
        let alerter_id = match args.alerter_id {
            Some(id) => id,
            None => hostname(),
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if alerter_id.is_empty() || !alerter_id.chars().all(valid) {
            return Err(AlerterError::AlerterId(alerter_id));
        }
        Ok(AlerterConfig {
            nats,
            alerts_file: args.alerts_file,
            alerter_id,
            web_url: args.web_url.unwrap_or_else(|| DEFAULT_WEB_URL.to_owned()),
            retry: RetryPolicy {
                first_wait: args.notify_retry_first,
                longest_wait: args.notify_retry_longest,
                give_up_after: args.notify_give_up_after,
                request_timeout: args.notify_timeout,
            },
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().replace('.', "-"))
        .unwrap_or_else(|_| "alerter".to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum AlerterError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("receiver {receiver}: {reason}")]
    ReceiverSettings { receiver: String, reason: String },
    #[error("receiver {receiver}: cannot read its secret from {file}: {reason}")]
    ReceiverSecret { receiver: String, file: PathBuf, reason: String },
    #[error("--alerter-id {0:?} must be letters, digits, '_' or '-' (it names a NATS consumer)")]
    AlerterId(String),
    #[error(transparent)]
    Nats(#[from] NatsSetupError),
    #[error("cannot open bucket {bucket}: {reason}")]
    Bucket { bucket: &'static str, reason: String },
    #[error("cannot read or follow a stream: {0}")]
    Consumer(String),
    #[error("cannot make the HTTP client for notifications: {0}")]
    HttpClient(String),
    #[error("cannot read the target registry: {0}")]
    Registry(String),
}

/// Runs the alerter until `shutdown`.
pub async fn run(config: AlerterConfig, shutdown: CancellationToken) -> Result<(), AlerterError> {
    let file = match &config.alerts_file {
        Some(path) => read_alerts_file(path)?,
        None => AlertsFile::default(),
    };
    let destinations = Arc::new(Destinations::load(&file.receiver, config.retry.request_timeout)?);
    let jetstream = nats_setup::connect_jetstream(&config.nats, NatsRole::Alerter).await?;
    let open = |bucket: &'static str| {
        let jetstream = jetstream.clone();
        async move {
            jetstream.get_key_value(bucket).await.map_err(|e| AlerterError::Bucket {
                bucket,
                reason: e.to_string(),
            })
        }
    };
    let rules_bucket = open(ALERT_RULES_BUCKET).await?;
    let states = open(ALERT_STATE_BUCKET).await?;
    let silences_bucket = open(ALERT_SILENCES_BUCKET).await?;
    seed_rules(&rules_bucket, &file.rule).await?;
    publish_receiver_names(&rules_bucket, &destinations).await?;
    let rules = RuleSet::default();
    let silences = Silences::default();
    let labels = TargetLabels::default();
    let tasks = shutdown.child_token();
    let watching_rules = tokio::spawn(follow_bucket(rules_bucket, ALERT_RULES_BUCKET, rules.clone(), tasks.clone()));
    let watching_silences = tokio::spawn(follow_bucket(
        silences_bucket,
        ALERT_SILENCES_BUCKET,
        silences.clone(),
        tasks.clone(),
    ));
    let watching_labels = tokio::spawn(follow_labels(jetstream.clone(), labels.clone(), tasks.clone()));
    let delivering = tokio::spawn(notify::deliver(jetstream.clone(), destinations, config.retry, tasks.clone()));
    let evaluator = Evaluator::new(jetstream, states, rules, silences, labels, config.web_url.clone());
    let evaluated = evaluator.run(&config.alerter_id, tasks.clone()).await;
    tasks.cancel();
    let delivered = delivering.await.unwrap_or(Ok(()));
    let followed = watching_rules
        .await
        .unwrap_or(Ok(()))
        .and(watching_silences.await.unwrap_or(Ok(())))
        .and(watching_labels.await.unwrap_or(Ok(())));
    evaluated.and(delivered).and(followed)
}

/// Lists the receivers this alerter delivers to in the rules bucket, for the web's checks of
/// rules edited there.
async fn publish_receiver_names(bucket: &kv::Store, destinations: &Destinations) -> Result<(), AlerterError> {
    let names: Vec<&str> = destinations.names().collect();
    bucket
        .put(
            KNOWN_RECEIVERS_KEY,
            serde_json::to_vec(&names).expect("names always serialise").into(),
        )
        .await
        .map(|_| ())
        .map_err(|e| AlerterError::Bucket {
            bucket: ALERT_RULES_BUCKET,
            reason: e.to_string(),
        })
}

/// Adds the file's rules the bucket does not hold; rules it holds stay as they are there.
async fn seed_rules(bucket: &kv::Store, rules: &[Rule]) -> Result<(), AlerterError> {
    for rule in rules {
        let value: bytes::Bytes = serde_json::to_vec(rule).expect("rules always serialise").into();
        match bucket.create(&rule.name, value).await {
            Ok(_) => tracing::info!(rule = %rule.name, "rule added to the rules bucket from the alerts file"),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                let stored = bucket.get(&rule.name).await.ok().flatten();
                if stored.and_then(|value| serde_json::from_slice::<Rule>(&value).ok()).as_ref() != Some(rule) {
                    tracing::warn!(rule = %rule.name, "the rules bucket holds another version of this rule (edited in the UI?); the bucket's is in force");
                }
            }
            Err(error) => {
                return Err(AlerterError::Bucket {
                    bucket: ALERT_RULES_BUCKET,
                    reason: error.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Keeps `entries` equal to a bucket's entries that read as `Entry` (rules, silences): an
/// entry that does not is left out and logged. Keys with a dot are not entries (no rule name or
/// silence id has one).
async fn follow_bucket<Entry: serde::de::DeserializeOwned>(
    bucket: kv::Store,
    bucket_name: &'static str,
    entries: Arc<RwLock<BTreeMap<String, Entry>>>,
    shutdown: CancellationToken,
) -> Result<(), AlerterError> {
    let mut watched = bucket.watch_with_history(">").await.map_err(|e| AlerterError::Bucket {
        bucket: bucket_name,
        reason: e.to_string(),
    })?;
    loop {
        let entry = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            entry = watched.next() => entry,
        };
        let Some(entry) = entry else {
            return Err(AlerterError::Bucket {
                bucket: bucket_name,
                reason: "the watch ended".to_owned(),
            });
        };
        let Ok(entry) = entry else { continue };
        if entry.key.contains('.') {
            continue;
        }
        let mut entries = entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Entry>(&entry.value) {
                Ok(value) => {
                    entries.insert(entry.key, value);
                }
                Err(error) => {
                    tracing::warn!(bucket = bucket_name, key = %entry.key, error = %error, "an entry is not valid; it is left out");
                    entries.remove(&entry.key);
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                entries.remove(&entry.key);
            }
        }
    }
}

/// Keeps `labels` equal to the registry's target labels.
async fn follow_labels(jetstream: jetstream::Context, labels: TargetLabels, shutdown: CancellationToken) -> Result<(), AlerterError> {
    let registry = Registry::open(&jetstream)
        .await
        .map_err(|e| AlerterError::Registry(e.to_string()))?;
    let mut changes = Box::pin(registry.watch().await.map_err(|e| AlerterError::Registry(e.to_string()))?);
    loop {
        let change = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            change = changes.next() => change,
        };
        let mut labels = labels.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        match change {
            None => return Err(AlerterError::Registry("the watch ended".to_owned())),
            Some(RegistryChange::Put(record)) => {
                labels.insert(record.name.to_string(), record.labels.clone());
            }
            Some(RegistryChange::Removed(name)) => {
                labels.remove(name.as_str());
            }
            Some(RegistryChange::Invalid(_)) => {}
        }
    }
}
