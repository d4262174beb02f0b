//! Reads the snapshot stream in micro-batches: decode, dead-letter what is unusable, store in
//! one DuckDB transaction, and only then acknowledge.
//!
//! The stored sequence is the real cursor: at start the durable consumer is recreated to begin
//! right after it, so messages a crashed run received but never committed are read again
//! instead of being skipped by a later acknowledgement.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, Message};
use async_nats::HeaderMap;
use futures::StreamExt;
use pgmon_contract::event::{decode_snapshot_from_subject, AnySnapshot};
use pgmon_contract::subjects::{
    dead_letter_subject, target_snapshot_subjects, DEAD_LETTER_REASON_HEADER, DEAD_LETTER_SEQUENCE_HEADER, DEAD_LETTER_SUBJECT_HEADER,
    SNAPSHOT_STREAM, SNAPSHOT_SUBJECTS,
};
use tokio_util::sync::CancellationToken;

use crate::internal_events::{BatchCommitted, MessageDeadLettered};
use crate::metrics::metrics;
use crate::store::{BatchMessage, IngestBatch, Store};
use crate::{IngestStats, IngesterConfig, IngesterError};

const STORE_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Room for a message's subject and headers beside its payload in a pull request's byte limit.
const MESSAGE_OVERHEAD_BYTES: usize = 64 * 1024;

/// Creates the ingester's durable consumer so that it delivers from `next_sequence` on.
async fn consumer_from(jetstream: &jetstream::Context, config: &IngesterConfig, next_sequence: u64) -> Result<PullConsumer, IngesterError> {
    let name = &config.consumer_name;
    let stream = jetstream
        .get_stream(SNAPSHOT_STREAM)
        .await
        .map_err(|e| IngesterError::Consumer(e.to_string()))?;
    // A missing consumer is the normal first start; any real problem shows when creating it.
    let _ = stream.delete_consumer(name).await;
    stream
        .create_consumer(consumer_config(config, next_sequence))
        .await
        .map_err(|e| IngesterError::Consumer(e.to_string()))
}

/// The ingester's durable consumer, recreated at every start from the sequence after the last
/// one stored; `nats/consumer-pgmon-ingester.json` holds the same definition.
pub fn consumer_config(config: &IngesterConfig, next_sequence: u64) -> pull::Config {
    pull::Config {
        durable_name: Some(config.consumer_name.clone()),
        description: Some("pgmon ingester: snapshots into DuckDB".to_owned()),
        ack_policy: AckPolicy::All,
        ack_wait: Duration::from_secs(60),
        max_ack_pending: 100_000,
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: next_sequence,
        },
        filter_subjects: if config.only_targets.is_empty() {
            vec![SNAPSHOT_SUBJECTS.to_owned()]
        } else {
            config.only_targets.iter().map(target_snapshot_subjects).collect()
        },
        ..Default::default()
    }
}

/// What the reading side hands to the storing side.
enum Work {
    /// A decoded batch, and the message whose acknowledgement covers it.
    Batch(IngestBatch, Box<Message>),
    /// Nothing arrived within the batch wait.
    Idle,
}

/// Consumes until `shutdown` is cancelled, or until every message up to `config.stop_after`
/// is stored; the batch in hand is committed and acknowledged first. Fetching and decoding the
/// next batch overlaps with storing the one before (two cores: decode on one, DuckDB on the
/// other); acknowledgements still follow commits.
pub(crate) async fn consume(
    jetstream: jetstream::Context,
    store: Store,
    config: &IngesterConfig,
    shutdown: CancellationToken,
) -> Result<(), IngesterError> {
    let stats = &config.stats;
    let applied = store.last_applied_sequence();
    stats.last_applied_sequence.store(applied, Ordering::Relaxed);
    let consumer = consumer_from(&jetstream, config, applied + 1).await?;
    pgmon_common::health::ready(crate::ROLE);
    tracing::info!(consumer = %config.consumer_name, resume_after_sequence = applied, "consuming snapshots");
    let (fetched_sender, fetched_receiver) = tokio::sync::mpsc::channel::<Vec<Message>>(1);
    let (work_sender, mut work_receiver) = tokio::sync::mpsc::channel::<Work>(1);
    // A message larger than a pull request's byte limit is never delivered: the limit is
    // raised to the largest message the server takes.
    let server_max_payload = jetstream.client().server_info().max_payload;
    let batch_max_bytes = config.batch_max_bytes.max(server_max_payload + MESSAGE_OVERHEAD_BYTES);
    let fetching = fetch_batches(&consumer, config, batch_max_bytes, applied, &shutdown, fetched_sender);
    let decoding = decode_batches(&jetstream, config, fetched_receiver, work_sender);
    let storing_shutdown = shutdown.clone();
    let storing = async move {
        let mut store = store;
        while let Some(work) = work_receiver.recv().await {
            match work {
                Work::Idle => store = close_idle_partition(store).await?,
                Work::Batch(batch, last_message) => {
                    store = store_until_committed(store, batch, stats, &storing_shutdown).await?;
                    // AckPolicy::All: acknowledging the last message acknowledges the whole batch.
                    if let Err(error) = last_message.ack().await {
                        tracing::warn!(%error, "acknowledgement failed; the batch will be redelivered and skipped as already stored");
                    }
                }
            }
        }
        Ok::<(), IngesterError>(())
    };
    let ((), decoded, stored) = tokio::join!(fetching, decoding, storing);
    stored?;
    decoded
}

/// Fetches batches until `shutdown`, until the storing side stops, or until every message up
/// to `config.stop_after` is handed over. An empty batch means nothing arrived in time.
async fn fetch_batches(
    consumer: &PullConsumer,
    config: &IngesterConfig,
    batch_max_bytes: usize,
    applied: u64,
    shutdown: &CancellationToken,
    fetched_sender: tokio::sync::mpsc::Sender<Vec<Message>>,
) {
    let mut last_read = applied;
    while !shutdown.is_cancelled() && config.stop_after.is_none_or(|last| last_read < last) {
        let messages = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            messages = fetch_batch(consumer, config, batch_max_bytes) => messages,
        };
        match messages.last().map(|message| message.info()) {
            Some(Ok(info)) => {
                last_read = info.stream_sequence;
                metrics().pending_messages.set(i64::try_from(info.pending).unwrap_or(i64::MAX));
            }
            Some(Err(_)) => {}
            // Nothing arrived within the wait: nothing is pending.
            None => {
                metrics().pending_messages.set(0);
            }
        }
        if fetched_sender.send(messages).await.is_err() {
            break;
        }
    }
}

/// Decodes what [`fetch_batches`] fetched and hands it to the storing side, while the next
/// batch is being fetched.
async fn decode_batches(
    jetstream: &jetstream::Context,
    config: &IngesterConfig,
    mut fetched_receiver: tokio::sync::mpsc::Receiver<Vec<Message>>,
    work_sender: tokio::sync::mpsc::Sender<Work>,
) -> Result<(), IngesterError> {
    while let Some(messages) = fetched_receiver.recv().await {
        let work = match messages.last().cloned() {
            None => Work::Idle,
            Some(last_message) => Work::Batch(decode_batch(jetstream, messages, config).await?, Box::new(last_message)),
        };
        if work_sender.send(work).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Runs blocking storage work on the blocking pool, handing the store there and back.
async fn with_store<T: Send + 'static>(
    mut store: Store,
    work: impl FnOnce(&mut Store) -> T + Send + 'static,
) -> Result<(Store, T), IngesterError> {
    tokio::task::spawn_blocking(move || {
        let result = work(&mut store);
        (store, result)
    })
    .await
    .map_err(|e| IngesterError::StoreTask(e.to_string()))
}

async fn close_idle_partition(store: Store) -> Result<Store, IngesterError> {
    let now_us = crate::storage::now_us();
    let (store, result) = with_store(store, move |store| store.close_idle_partition(now_us)).await?;
    if let Err(error) = result {
        tracing::error!(%error, "cannot close the partition of a past period");
    }
    Ok(store)
}

async fn fetch_batch(consumer: &PullConsumer, config: &IngesterConfig, batch_max_bytes: usize) -> Vec<Message> {
    let mut batch = match consumer
        .batch()
        .max_messages(config.batch_max_messages)
        .max_bytes(batch_max_bytes)
        .expires(config.batch_wait)
        .messages()
        .await
    {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(%error, "cannot fetch from the snapshot stream");
            tokio::time::sleep(config.batch_wait).await;
            return Vec::new();
        }
    };
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        match message {
            Ok(message) => messages.push(message),
            Err(error) => {
                tracing::warn!(%error, "fetching a batch failed part-way");
                break;
            }
        }
    }
    messages
}

/// Decodes every message (on the blocking pool, a share per core); those that are not usable
/// snapshots go to the dead-letter stream.
async fn decode_batch(
    jetstream: &jetstream::Context,
    mut messages: Vec<Message>,
    config: &IngesterConfig,
) -> Result<IngestBatch, IngesterError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let share = messages.len().div_ceil(cores).max(1);
    let mut shares = Vec::new();
    while !messages.is_empty() {
        let rest = messages.split_off(share.min(messages.len()));
        let max_message_bytes = config.max_message_bytes;
        let decoding = std::mem::replace(&mut messages, rest);
        shares.push(tokio::task::spawn_blocking(move || decode_messages(decoding, max_message_bytes)));
    }
    let mut decoded = Vec::new();
    for share in shares {
        decoded.extend(share.await.map_err(|e| IngesterError::StoreTask(e.to_string()))?);
    }
    let mut batch = IngestBatch {
        messages: Vec::with_capacity(decoded.len()),
    };
    for (message, decoded) in decoded {
        let info = message
            .info()
            .map_err(|e| IngesterError::Consumer(format!("message without stream metadata: {e}")))?;
        let sequence = info.stream_sequence;
        let stored_at_us = i64::try_from(info.published.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
        let snapshot = match decoded {
            Ok(snapshot) => Some(snapshot),
            Err(reason) => {
                dead_letter(jetstream, &message, sequence, &reason, config).await?;
                None
            }
        };
        batch.messages.push(BatchMessage {
            sequence,
            stored_at_us,
            snapshot,
        });
    }
    Ok(batch)
}

fn decode_messages(messages: Vec<Message>, max_message_bytes: usize) -> Vec<(Message, Result<AnySnapshot, String>)> {
    messages
        .into_iter()
        .map(|message| {
            let decoded = if message.payload.len() > max_message_bytes {
                Err(format!(
                    "message of {} bytes exceeds the ingester's limit of {max_message_bytes} bytes",
                    message.payload.len()
                ))
            } else {
                decode_snapshot_from_subject(message.subject.as_str(), &message.payload).map_err(|reason| reason.to_string())
            };
            (message, decoded)
        })
        .collect()
}

async fn dead_letter(
    jetstream: &jetstream::Context,
    message: &Message,
    sequence: u64,
    reason: &str,
    config: &IngesterConfig,
) -> Result<(), IngesterError> {
    let subject = message.subject.as_str();
    if !config.publish_dead_letters {
        // A rebuild reads messages the live ingester dead-lettered already.
        tracing::info!(%subject, sequence, %reason, "skipping an unusable message");
        return Ok(());
    }
    let mut headers = HeaderMap::new();
    // The same message dead-lettered again after a crash is stored once.
    headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("deadletter.{sequence}").as_str());
    headers.insert(DEAD_LETTER_REASON_HEADER, reason);
    headers.insert(DEAD_LETTER_SUBJECT_HEADER, subject);
    headers.insert(DEAD_LETTER_SEQUENCE_HEADER, sequence.to_string().as_str());
    let published = jetstream
        .publish_with_headers(dead_letter_subject(subject), headers, message.payload.clone())
        .await;
    let acknowledged = match published {
        Ok(acknowledgement) => acknowledgement.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    acknowledged.map_err(|error| IngesterError::DeadLetter { sequence, error })?;
    MessageDeadLettered {
        subject,
        sequence,
        reason,
        stats: &config.stats,
    }
    .emit();
    Ok(())
}

/// Applies the batch, retrying while storage fails: the batch is never acknowledged unstored.
async fn store_until_committed(
    store: Store,
    batch: IngestBatch,
    stats: &IngestStats,
    shutdown: &CancellationToken,
) -> Result<Store, IngesterError> {
    let mut store = store;
    let batch = std::sync::Arc::new(batch);
    loop {
        let job_batch = std::sync::Arc::clone(&batch);
        let (returned_store, result) = with_store(store, move |store| store.apply(&job_batch)).await?;
        store = returned_store;
        match result {
            Ok(applied) => {
                BatchCommitted {
                    applied: &applied,
                    store: &store,
                    stats,
                }
                .emit();
                return Ok(store);
            }
            Err(error) if shutdown.is_cancelled() => return Err(IngesterError::Store(error)),
            Err(error) => {
                tracing::error!(%error, retry_in = ?STORE_RETRY_DELAY, "cannot store a batch; ingestion is stalled until this is fixed");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(STORE_RETRY_DELAY) => {}
                }
            }
        }
    }
}
