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
use pgmon_common::event::{decode_snapshot_from_subject, AnySnapshot};
use pgmon_common::subjects::{
    dead_letter_subject, DEAD_LETTER_REASON_HEADER, DEAD_LETTER_SEQUENCE_HEADER, DEAD_LETTER_SUBJECT_HEADER, SNAPSHOT_STREAM,
    SNAPSHOT_SUBJECTS,
};
use tokio_util::sync::CancellationToken;

use crate::store::{IngestBatch, Store};
use crate::{IngestStats, IngesterConfig, IngesterError};

const STORE_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Creates the ingester's durable consumer so that it delivers from `next_sequence` on.
async fn consumer_from(jetstream: &jetstream::Context, name: &str, next_sequence: u64) -> Result<PullConsumer, IngesterError> {
    let stream = jetstream
        .get_stream(SNAPSHOT_STREAM)
        .await
        .map_err(|e| IngesterError::Consumer(e.to_string()))?;
    // A missing consumer is the normal first start; any real problem shows when creating it.
    let _ = stream.delete_consumer(name).await;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(name.to_owned()),
            description: Some("pgmon ingester: snapshots into DuckDB".to_owned()),
            ack_policy: AckPolicy::All,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 100_000,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: next_sequence,
            },
            filter_subject: SNAPSHOT_SUBJECTS.to_owned(),
            ..Default::default()
        })
        .await
        .map_err(|e| IngesterError::Consumer(e.to_string()))
}

/// Consumes until `shutdown` is cancelled; the batch in hand is committed and acknowledged first.
pub(crate) async fn consume(
    jetstream: jetstream::Context,
    mut store: Store,
    config: &IngesterConfig,
    shutdown: CancellationToken,
) -> Result<(), IngesterError> {
    let stats = &config.stats;
    let applied = store.last_applied_sequence().map_err(IngesterError::Store)?;
    stats.last_applied_sequence.store(applied, Ordering::Relaxed);
    let consumer = consumer_from(&jetstream, &config.consumer_name, applied + 1).await?;
    tracing::info!(consumer = %config.consumer_name, resume_after_sequence = applied, "consuming snapshots");
    while !shutdown.is_cancelled() {
        let messages = tokio::select! {
            _ = shutdown.cancelled() => break,
            messages = fetch_batch(&consumer, config) => messages,
        };
        let Some(last_message) = messages.last() else { continue };
        let batch = decode_batch(&jetstream, &messages, stats).await?;
        store = store_until_committed(store, batch, stats, &shutdown).await?;
        // AckPolicy::All: acknowledging the last message acknowledges the whole batch.
        if let Err(error) = last_message.ack().await {
            tracing::warn!(%error, "acknowledgement failed; the batch will be redelivered and skipped as already stored");
        }
    }
    Ok(())
}

async fn fetch_batch(consumer: &PullConsumer, config: &IngesterConfig) -> Vec<Message> {
    let mut batch = match consumer
        .batch()
        .max_messages(config.batch_max_messages)
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

/// Decodes every message; those that are not usable snapshots go to the dead-letter stream.
async fn decode_batch(jetstream: &jetstream::Context, messages: &[Message], stats: &IngestStats) -> Result<IngestBatch, IngesterError> {
    let mut batch = IngestBatch {
        activity: Vec::with_capacity(messages.len()),
        ..IngestBatch::default()
    };
    for message in messages {
        let sequence = message
            .info()
            .map_err(|e| IngesterError::Consumer(format!("message without stream metadata: {e}")))?
            .stream_sequence;
        batch.last_sequence = batch.last_sequence.max(sequence);
        match decode_snapshot_from_subject(message.subject.as_str(), &message.payload) {
            Ok(AnySnapshot::Activity(snapshot)) => batch.activity.push((sequence, snapshot)),
            Ok(AnySnapshot::Locks(snapshot)) => batch.locks.push((sequence, snapshot)),
            Ok(AnySnapshot::Database(snapshot)) => batch.database.push((sequence, snapshot)),
            Ok(AnySnapshot::Status(snapshot)) => batch.status.push((sequence, snapshot)),
            Ok(AnySnapshot::Statements(snapshot)) => batch.statements.push((sequence, snapshot)),
            Ok(AnySnapshot::Objects(snapshot)) => batch.objects.push((sequence, snapshot)),
            Err(reason) => dead_letter(jetstream, message, sequence, &reason.to_string(), stats).await?,
        }
    }
    Ok(batch)
}

async fn dead_letter(
    jetstream: &jetstream::Context,
    message: &Message,
    sequence: u64,
    reason: &str,
    stats: &IngestStats,
) -> Result<(), IngesterError> {
    let subject = message.subject.as_str();
    tracing::warn!(%subject, sequence, %reason, "dead-lettering an unusable message");
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
    stats.dead_letters.fetch_add(1, Ordering::Relaxed);
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
        let (returned_store, result) = tokio::task::spawn_blocking(move || {
            let result = store.apply(&job_batch);
            (store, result)
        })
        .await
        .map_err(|e| IngesterError::StoreTask(e.to_string()))?;
        store = returned_store;
        match result {
            Ok(applied) => {
                stats.rows_ingested.fetch_add(applied.rows as u64, Ordering::Relaxed);
                stats.snapshots_ingested.fetch_add(applied.snapshots as u64, Ordering::Relaxed);
                stats.batches_committed.fetch_add(1, Ordering::Relaxed);
                stats.last_applied_sequence.store(batch.last_sequence, Ordering::Relaxed);
                if applied.already_stored > 0 {
                    tracing::info!(already_stored = applied.already_stored, "skipped snapshots stored before a restart");
                }
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
