//! Publishes one target's snapshots to JetStream in order, retrying each until it is acknowledged,
//! behind a buffer bounded in bytes that keeps sampling going while NATS is away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use pgmon_common::event::SnapshotKind;
use pgmon_common::target::TargetName;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::{metrics, TargetLabels};

/// A snapshot (or one part of one) ready to publish; its message id makes retries idempotent.
pub(crate) struct OutgoingSnapshot {
    pub subject: String,
    pub message_id: String,
    pub payload: bytes::Bytes,
}

/// A queued snapshot holds its share of the buffer until it is published.
pub(crate) struct QueuedSnapshot {
    snapshot: OutgoingSnapshot,
    _buffer_share: OwnedSemaphorePermit,
    buffered_bytes: Gauge,
}

impl Drop for QueuedSnapshot {
    fn drop(&mut self) {
        self.buffered_bytes.dec_by(self.snapshot.payload.len() as i64);
    }
}

/// The sampling side of one target's publish buffer.
#[derive(Clone)]
pub(crate) struct PublishQueue {
    target: TargetName,
    sender: UnboundedSender<QueuedSnapshot>,
    /// Free buffer space in KiB.
    free_kib: Arc<Semaphore>,
    dropped_snapshots: Arc<AtomicU64>,
}

/// Creates a target's buffer of `capacity_mib`: the queue the samplers fill and the receiver
/// [`publish_in_order`] drains.
pub(crate) fn publish_buffer(target: TargetName, capacity_mib: u32) -> (PublishQueue, UnboundedReceiver<QueuedSnapshot>) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let queue = PublishQueue {
        target,
        sender,
        free_kib: Arc::new(Semaphore::new(capacity_mib as usize * 1024)),
        dropped_snapshots: Arc::new(AtomicU64::new(0)),
    };
    (queue, receiver)
}

/// What became of a snapshot handed to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    /// The buffer was full: the snapshot is lost (counted and logged at ERROR).
    Dropped,
    /// The publisher is gone: the collector is shutting down.
    Closed,
}

impl PublishQueue {
    fn target_labels(&self) -> TargetLabels {
        TargetLabels {
            target: self.target.as_str().to_owned(),
        }
    }

    /// Queues a snapshot unless the buffer is full.
    pub(crate) fn enqueue(&self, snapshot: OutgoingSnapshot, kind: SnapshotKind) -> Enqueued {
        let kib = u32::try_from(snapshot.payload.len().div_ceil(1024)).unwrap_or(u32::MAX);
        let Ok(buffer_share) = self.free_kib.clone().try_acquire_many_owned(kib) else {
            let dropped_snapshots = self.dropped_snapshots.fetch_add(1, Ordering::Relaxed) + 1;
            metrics().snapshots_dropped.get_or_create(&self.target_labels()).inc();
            tracing::error!(target = %self.target, kind = kind.as_str(), dropped_snapshots, "publish buffer full: NATS is not keeping up, snapshot dropped");
            return Enqueued::Dropped;
        };
        let buffered_bytes = metrics().publish_buffer_bytes.get_or_create(&self.target_labels()).clone();
        buffered_bytes.inc_by(snapshot.payload.len() as i64);
        let queued = QueuedSnapshot {
            snapshot,
            _buffer_share: buffer_share,
            buffered_bytes,
        };
        match self.sender.send(queued) {
            Ok(()) => Enqueued::Queued,
            Err(_) => Enqueued::Closed,
        }
    }
}

const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Publishes until the sampler closes the queue. Each snapshot is retried until acknowledged,
/// so order is kept; after shutdown each remaining snapshot gets one last attempt.
pub(crate) async fn publish_in_order(
    jetstream: jetstream::Context,
    target: TargetName,
    mut outgoing: UnboundedReceiver<QueuedSnapshot>,
    shutdown: CancellationToken,
) {
    let mut consecutive_failures: u64 = 0;
    while let Some(queued) = outgoing.recv().await {
        let snapshot = &queued.snapshot;
        let max_payload = jetstream.client().server_info().max_payload;
        if snapshot.payload.len() > max_payload {
            // Retrying cannot help; it would only hold up every later snapshot of this target.
            tracing::error!(%target, subject = %snapshot.subject, bytes = snapshot.payload.len(), max_payload, "snapshot dropped: larger than the NATS server's max_payload");
            continue;
        }
        loop {
            match publish(&jetstream, snapshot).await {
                Ok(()) => {
                    if consecutive_failures > 0 {
                        tracing::info!(%target, failed_attempts = consecutive_failures, "publishing resumed");
                        consecutive_failures = 0;
                    }
                    break;
                }
                Err(error) if shutdown.is_cancelled() => {
                    tracing::error!(%target, subject = %snapshot.subject, %error, "snapshot dropped at shutdown: NATS did not acknowledge it");
                    break;
                }
                Err(error) => {
                    consecutive_failures += 1;
                    if consecutive_failures == 1 || consecutive_failures.is_power_of_two() {
                        tracing::warn!(%target, %error, queued = outgoing.len(), failed_attempts = consecutive_failures, "publish failed, retrying");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(RETRY_DELAY) => {}
                    }
                }
            }
        }
    }
}

async fn publish(jetstream: &jetstream::Context, snapshot: &OutgoingSnapshot) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, snapshot.message_id.as_str());
    let acknowledgement = jetstream
        .publish_with_headers(snapshot.subject.clone(), headers, snapshot.payload.clone())
        .await
        .map_err(|e| e.to_string())?;
    acknowledgement.await.map(|_| ()).map_err(|e| e.to_string())
}
