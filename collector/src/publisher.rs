//! Publishes one target's snapshots to JetStream in order, retrying each until it is acknowledged.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use pgmon_common::target::TargetName;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

/// A snapshot ready to publish; its message id makes retries idempotent.
pub(crate) struct OutgoingSnapshot {
    pub subject: String,
    pub message_id: String,
    pub payload: bytes::Bytes,
}

const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Publishes until the sampler closes the queue. Each snapshot is retried until acknowledged,
/// so order is kept; after shutdown each remaining snapshot gets one last attempt.
pub(crate) async fn publish_in_order(
    jetstream: jetstream::Context,
    target: TargetName,
    mut outgoing: Receiver<OutgoingSnapshot>,
    shutdown: CancellationToken,
) {
    let mut consecutive_failures: u64 = 0;
    while let Some(snapshot) = outgoing.recv().await {
        let max_payload = jetstream.client().server_info().max_payload;
        if snapshot.payload.len() > max_payload {
            // Retrying cannot help; it would only hold up every later snapshot of this target.
            tracing::error!(%target, subject = %snapshot.subject, bytes = snapshot.payload.len(), max_payload, "snapshot dropped: larger than the NATS server's max_payload");
            continue;
        }
        loop {
            match publish(&jetstream, &snapshot).await {
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
