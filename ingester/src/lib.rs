//! The ingester role: the only writer of pgmon's DuckDB files, and the answerer of named queries on them.

mod consume;
mod history;
mod internal_events;
mod metrics;
mod query_service;
pub mod series;
mod storage;
mod tables;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{connect_jetstream, connect_jetstream_as_tool, NatsArgs, NatsSetupError};
use pgmon_contract::subjects::{INGESTER_CONSUMER, SNAPSHOT_STREAM};
use pgmon_contract::target::TargetName;
use tokio_util::sync::CancellationToken;

pub use consume::consumer_config;
pub use storage::partitions::{self, PartitionPeriod, VIEWS_SCRIPT_NAME};
pub use storage::store::{self, StorageOptions, Store};
pub use storage::{open_read_only, StoreError};

/// Command-line and environment settings of the ingester role.
#[derive(Args, Clone, Debug)]
pub struct IngesterArgs {
    /// Directory of the DuckDB files; only this ingester may open them while it runs.
    #[arg(long, env = "PGMON_DATA_DIR", default_value = "pgmon-data")]
    pub data_dir: PathBuf,

    /// Most messages stored in one transaction.
    #[arg(long, env = "PGMON_BATCH_MAX_MESSAGES", default_value_t = DEFAULT_BATCH_MAX_MESSAGES)]
    pub batch_max_messages: usize,

    /// Most bytes of messages stored in one transaction (raised to the server's largest message
    /// when below it, so every message fits in a batch). A batch carrying 122,880 or more rows
    /// of a table lets DuckDB write them compressed straight to the file instead of through its
    /// log: the default holds that many activity rows and drains a backlog about 1.4 times as
    /// fast as batches of 50,000 rows, for some 400 MiB more memory while it does.
    #[arg(long, env = "PGMON_BATCH_MAX_BYTES", default_value_t = DEFAULT_BATCH_MAX_BYTES)]
    pub batch_max_bytes: usize,

    /// Longest wait for a batch to fill before storing what arrived.
    #[arg(long, env = "PGMON_BATCH_WAIT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub batch_wait: Duration,

    /// Name of this ingester's durable consumer; each ingester needs its own.
    #[arg(long, env = "PGMON_CONSUMER_NAME", default_value = INGESTER_CONSUMER)]
    pub consumer_name: String,

    /// Larger messages are dead-lettered unread: a guard against a misconfigured publisher
    /// (pgmon's collector splits snapshots to the server's max_payload, 1 MiB by default).
    #[arg(long, env = "PGMON_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Store (and answer queries about) only these targets, comma-separated: several ingesters
    /// then share the targets, each with its own consumer name and data directory. Empty: all.
    #[arg(long, env = "PGMON_ONLY_TARGETS", value_delimiter = ',')]
    pub only_targets: Vec<TargetName>,

    #[command(flatten)]
    pub storage: StorageArgs,
}

/// The default of `--max-message-bytes`: NATS allows at most 64 MiB per message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The default of `--batch-max-messages`: enough that the byte limit usually ends a batch.
pub const DEFAULT_BATCH_MAX_MESSAGES: usize = 10_000;

/// The default of `--batch-max-bytes`: about 150,000 activity rows as the collector encodes
/// them (some 450 bytes each), above DuckDB's row group of 122,880 rows.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Settings of `pgmon rebuild`: a fresh directory, and a consumer of its own so the live
/// ingester's is left alone.
#[derive(Args, Clone, Debug)]
pub struct RebuildArgs {
    /// Directory to rebuild into; not the live ingester's (its newest partition is locked).
    #[arg(long, env = "PGMON_REBUILD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Name of the rebuild's durable consumer, deleted when the rebuild ends.
    #[arg(long, env = "PGMON_REBUILD_CONSUMER_NAME", default_value = "pgmon-rebuild")]
    pub consumer_name: String,

    #[command(flatten)]
    pub storage: StorageArgs,
}

/// How stored data is laid out in time; shared by `ingest` and `rebuild`.
#[derive(Args, Clone, Debug)]
pub struct StorageArgs {
    /// Length of one partition file's period (whole seconds; one UTC day by default).
    #[arg(long, env = "PGMON_PARTITION_PERIOD", default_value = "1d", value_parser = parse_partition_period)]
    pub partition_period: PartitionPeriod,

    /// Partitions whose period ended longer ago than this are deleted.
    #[arg(long, env = "PGMON_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub retention: Duration,
}

impl StorageArgs {
    pub fn options(&self) -> StorageOptions {
        StorageOptions {
            period: self.partition_period,
            retention: self.retention,
        }
    }
}

fn parse_partition_period(text: &str) -> Result<PartitionPeriod, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    PartitionPeriod::new(duration).map_err(|e| e.to_string())
}

/// Counters of what the ingester did, readable while it runs.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub snapshots_ingested: AtomicU64,
    pub rows_ingested: AtomicU64,
    pub batches_committed: AtomicU64,
    pub dead_letters: AtomicU64,
    pub last_applied_sequence: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct IngesterConfig {
    pub nats: NatsArgs,
    pub data_dir: PathBuf,
    pub batch_max_messages: usize,
    pub batch_max_bytes: usize,
    pub batch_wait: Duration,
    pub consumer_name: String,
    pub max_message_bytes: usize,
    /// The targets this ingester owns; empty for all.
    pub only_targets: Vec<TargetName>,
    pub storage: StorageOptions,
    /// Unusable messages are published to the dead-letter stream (the live ingester), or only
    /// logged (a rebuild, which reads what the live ingester dead-lettered already).
    pub publish_dead_letters: bool,
    /// Stop once every message up to this stream sequence is stored (a rebuild).
    pub stop_after: Option<u64>,
    pub stats: Arc<IngestStats>,
}

impl IngesterConfig {
    pub fn from_args(args: IngesterArgs, nats: NatsArgs) -> IngesterConfig {
        IngesterConfig {
            nats,
            data_dir: args.data_dir,
            batch_max_messages: args.batch_max_messages.max(1),
            batch_max_bytes: args.batch_max_bytes,
            batch_wait: args.batch_wait.max(Duration::from_millis(10)),
            consumer_name: args.consumer_name,
            max_message_bytes: args.max_message_bytes,
            only_targets: args.only_targets,
            storage: args.storage.options(),
            publish_dead_letters: true,
            stop_after: None,
            stats: Arc::default(),
        }
    }

    pub fn for_rebuild(args: RebuildArgs, nats: NatsArgs) -> IngesterConfig {
        IngesterConfig {
            nats,
            data_dir: args.data_dir,
            batch_max_messages: DEFAULT_BATCH_MAX_MESSAGES,
            batch_max_bytes: DEFAULT_BATCH_MAX_BYTES,
            batch_wait: Duration::from_millis(250),
            consumer_name: args.consumer_name,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            only_targets: Vec::new(),
            storage: args.storage.options(),
            publish_dead_letters: false,
            stop_after: None,
            stats: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error(transparent)]
    Nats(#[from] NatsSetupError),
    #[error(transparent)]
    Store(StoreError),
    #[error("the storage task stopped unexpectedly: {0}")]
    StoreTask(String),
    #[error("cannot set up the ingester's consumer: {0}")]
    Consumer(String),
    #[error("cannot dead-letter message {sequence}: {error}")]
    DeadLetter { sequence: u64, error: String },
    #[error("cannot subscribe to named queries: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// The role's name in `/readyz`.
pub const ROLE: &str = "ingester";

/// Runs the ingester until `shutdown` is cancelled.
pub async fn run(config: IngesterConfig, shutdown: CancellationToken) -> Result<(), IngesterError> {
    let jetstream = connect_jetstream(&config.nats, NatsRole::Ingester).await?;
    let store = open_store(&config).await?;
    metrics::metrics().partition_bytes.set(store.partition_bytes() as i64);
    tracing::info!(data_dir = %config.data_dir.display(), partitions = store.partitions().len(), "ingester started");
    let reader = store.reader().map_err(IngesterError::Store)?;
    let queries_shutdown = shutdown.child_token();
    let queries = tokio::spawn(query_service::serve_queries(
        jetstream.client(),
        reader,
        config.only_targets.clone(),
        queries_shutdown.clone(),
    ));
    let consumed = consume::consume(jetstream, store, &config, shutdown).await;
    queries_shutdown.cancel();
    let served = queries.await.map_err(|e| IngesterError::StoreTask(e.to_string()))?;
    consumed?;
    served?;
    tracing::info!("ingester stopped");
    Ok(())
}

/// What a rebuild stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildSummary {
    pub last_sequence: u64,
    pub snapshots: u64,
    pub rows: u64,
}

/// Re-ingests the whole snapshot stream into the partitions of `config.data_dir`, as the live
/// ingester would have stored it, and returns once the messages present at its start are
/// stored. It resumes where it stopped if run again on the same directory.
pub async fn rebuild(mut config: IngesterConfig, shutdown: CancellationToken) -> Result<RebuildSummary, IngesterError> {
    let jetstream = connect_jetstream_as_tool(&config.nats, NatsRole::Reader).await?;
    let mut stream = jetstream
        .get_stream(SNAPSHOT_STREAM)
        .await
        .map_err(|e| IngesterError::Consumer(e.to_string()))?;
    let last_sequence = stream
        .info()
        .await
        .map_err(|e| IngesterError::Consumer(e.to_string()))?
        .state
        .last_sequence;
    config.stop_after = Some(last_sequence);
    let store = open_store(&config).await?;
    tracing::info!(data_dir = %config.data_dir.display(), up_to_sequence = last_sequence, "rebuilding from the stream");
    let consumed = consume::consume(jetstream, store, &config, shutdown).await;
    // The rebuild's consumer is of no use afterwards; a failure to delete it only leaves it idle.
    let _ = stream.delete_consumer(&config.consumer_name).await;
    consumed?;
    Ok(RebuildSummary {
        last_sequence: config.stats.last_applied_sequence.load(std::sync::atomic::Ordering::Relaxed),
        snapshots: config.stats.snapshots_ingested.load(std::sync::atomic::Ordering::Relaxed),
        rows: config.stats.rows_ingested.load(std::sync::atomic::Ordering::Relaxed),
    })
}

async fn open_store(config: &IngesterConfig) -> Result<Store, IngesterError> {
    let data_dir = config.data_dir.clone();
    let options = config.storage;
    tokio::task::spawn_blocking(move || Store::open(&data_dir, SNAPSHOT_STREAM, options))
        .await
        .map_err(|e| IngesterError::StoreTask(e.to_string()))?
        .map_err(IngesterError::Store)
}
