//! The ingester role: the only writer of pgmon's DuckDB files, and the answerer of named queries on them.

mod arrow_rows;
mod consume;
mod query_service;
pub mod series;
pub mod store;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pgmon_common::nats_setup::{connect_jetstream, NatsArgs, NatsSetupError};
use pgmon_common::subjects::{INGESTER_CONSUMER, SNAPSHOT_STREAM};
use tokio_util::sync::CancellationToken;

pub use store::{Store, StoreError, DATABASE_FILE_NAME};

/// Command-line and environment settings of the ingester role.
#[derive(Args, Clone, Debug)]
pub struct IngesterArgs {
    /// Directory of the DuckDB files; only this ingester may open them while it runs.
    #[arg(long, env = "PGMON_DATA_DIR", default_value = "pgmon-data")]
    pub data_dir: PathBuf,

    /// Most messages stored in one transaction.
    #[arg(long, env = "PGMON_BATCH_MAX_MESSAGES", default_value_t = 1000)]
    pub batch_max_messages: usize,

    /// Longest wait for a batch to fill before storing what arrived.
    #[arg(long, env = "PGMON_BATCH_WAIT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub batch_wait: Duration,

    /// Name of this ingester's durable consumer; each ingester needs its own.
    #[arg(long, env = "PGMON_CONSUMER_NAME", default_value = INGESTER_CONSUMER)]
    pub consumer_name: String,
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
    pub batch_wait: Duration,
    pub consumer_name: String,
    pub stats: Arc<IngestStats>,
}

impl IngesterConfig {
    pub fn from_args(args: IngesterArgs, nats: NatsArgs) -> IngesterConfig {
        IngesterConfig {
            nats,
            data_dir: args.data_dir,
            batch_max_messages: args.batch_max_messages.max(1),
            batch_wait: args.batch_wait.max(Duration::from_millis(10)),
            consumer_name: args.consumer_name,
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

/// Runs the ingester until `shutdown` is cancelled.
pub async fn run(config: IngesterConfig, shutdown: CancellationToken) -> Result<(), IngesterError> {
    let jetstream = connect_jetstream(&config.nats, "pgmon-ingester").await?;
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir, SNAPSHOT_STREAM))
        .await
        .map_err(|e| IngesterError::StoreTask(e.to_string()))?
        .map_err(IngesterError::Store)?;
    tracing::info!(data_dir = %config.data_dir.display(), "ingester started");
    let reader = store.reader().map_err(IngesterError::Store)?;
    let queries_shutdown = shutdown.child_token();
    let queries = tokio::spawn(query_service::serve_queries(jetstream.client(), reader, queries_shutdown.clone()));
    let consumed = consume::consume(jetstream, store, &config, shutdown).await;
    queries_shutdown.cancel();
    let served = queries.await.map_err(|e| IngesterError::StoreTask(e.to_string()))?;
    consumed?;
    served?;
    tracing::info!("ingester stopped");
    Ok(())
}
