//! The collector's outgoing samples: one memory budget shared by every target, each target's
//! samples published to JetStream in order and retried until acknowledged, the parts of a
//! sample kept together, and what NATS has not acknowledged when shutdown ends spooled to disk
//! and published first at the next start.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use pgmon_contract::event::SnapshotKind;
use pgmon_contract::subjects::snapshot_subject;
use pgmon_contract::target::TargetName;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::internal_events::{DropReason, MessageOverServerLimit, SampleDropped};
use crate::metrics::{metrics, TargetLabels};

/// One message of a sample ready to publish; its message id makes retries idempotent.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingSnapshot {
    pub subject: String,
    pub message_id: String,
    pub payload: bytes::Bytes,
}

/// One sample: every message that carries it (one, or its parts in order). It enters the
/// buffer whole and leaves it whole, so a full buffer never leaves half a sample behind.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingSample {
    pub kind: SnapshotKind,
    pub messages: Vec<OutgoingSnapshot>,
}

impl OutgoingSample {
    fn bytes(&self) -> usize {
        self.messages.iter().map(|message| message.payload.len()).sum()
    }
}

/// What became of a sample handed to the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    /// The sample is lost (counted, and logged at ERROR).
    Dropped,
    /// The collector is shutting down.
    Closed,
}

/// One target's samples in the buffer.
struct TargetQueue {
    /// Samples not yet being published, oldest first, each with its order of arrival.
    waiting: VecDeque<(u64, OutgoingSample)>,
    /// Bytes of this target's samples in the buffer, waiting or being published.
    bytes: usize,
    wake: Arc<Notify>,
    /// Set when a statements sample of this target was dropped: the texts it carried must be
    /// sent again.
    statements_lost: Arc<AtomicBool>,
}

struct BufferState {
    used_bytes: usize,
    next_order: u64,
    /// Set once shutdown has begun: nothing new is taken.
    closed: bool,
    queues: HashMap<TargetName, TargetQueue>,
}

/// The samples of every target, within one budget of bytes.
struct Buffer {
    capacity_bytes: usize,
    state: Mutex<BufferState>,
    /// Signalled whenever a sample leaves the buffer.
    emptied: Notify,
}

impl Buffer {
    fn new(capacity_bytes: usize) -> Buffer {
        Buffer {
            capacity_bytes,
            state: Mutex::new(BufferState {
                used_bytes: 0,
                next_order: 1,
                closed: false,
                queues: HashMap::new(),
            }),
            emptied: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BufferState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `sample` at the end of `target`'s queue, dropping the oldest waiting samples of any
    /// target while the budget is exceeded. A sample being published is never dropped.
    fn enqueue(&self, target: &TargetName, sample: OutgoingSample) -> Enqueued {
        let bytes = sample.bytes();
        let mut lost: Vec<(TargetName, SnapshotKind)> = Vec::new();
        let outcome = {
            let mut state = self.lock();
            if state.closed {
                return Enqueued::Closed;
            }
            if bytes > self.capacity_bytes {
                lost.push((target.clone(), sample.kind));
                Err(DropReason::TooLarge)
            } else {
                while state.used_bytes + bytes > self.capacity_bytes {
                    let Some((name, evicted)) = evict_oldest(&mut state) else { break };
                    if evicted.kind == SnapshotKind::Statements {
                        state.queues[&name].statements_lost.store(true, Ordering::Relaxed);
                    }
                    lost.push((name, evicted.kind));
                }
                if state.used_bytes + bytes > self.capacity_bytes {
                    lost.push((target.clone(), sample.kind));
                    Err(DropReason::BufferFull)
                } else {
                    let order = state.next_order;
                    state.next_order += 1;
                    state.used_bytes += bytes;
                    let queue = state
                        .queues
                        .get_mut(target)
                        .expect("a queue exists for every target handed a PublishQueue");
                    queue.bytes += bytes;
                    queue.waiting.push_back((order, sample));
                    queue.wake.notify_one();
                    set_buffer_gauge(target, queue.bytes);
                    Ok(())
                }
            }
        };
        let new_one_lost = outcome.is_err();
        for (index, (name, kind)) in lost.iter().enumerate() {
            let reason = match outcome {
                Err(reason) if index + 1 == lost.len() => reason,
                _ => DropReason::BufferFull,
            };
            SampleDropped {
                target: name,
                kind: *kind,
                reason,
            }
            .emit();
        }
        if lost.len() > usize::from(new_one_lost) {
            self.emptied.notify_waiters();
        }
        if new_one_lost {
            Enqueued::Dropped
        } else {
            Enqueued::Queued
        }
    }

    /// Takes the next sample of `target` to publish; its bytes stay counted until [`Buffer::published`].
    fn next(&self, target: &TargetName) -> Option<OutgoingSample> {
        self.lock()
            .queues
            .get_mut(target)
            .and_then(|queue| queue.waiting.pop_front())
            .map(|(_, sample)| sample)
    }

    fn published(&self, target: &TargetName, sample: &OutgoingSample) {
        self.release(target, sample.bytes());
        self.emptied.notify_waiters();
    }

    /// Puts back a sample whose publishing was cut short, at the head of its queue.
    fn put_back(&self, target: &TargetName, sample: OutgoingSample) {
        let mut state = self.lock();
        if let Some(queue) = state.queues.get_mut(target) {
            queue.waiting.push_front((0, sample));
        }
    }

    fn release(&self, target: &TargetName, bytes: usize) {
        let mut state = self.lock();
        state.used_bytes = state.used_bytes.saturating_sub(bytes);
        if let Some(queue) = state.queues.get_mut(target) {
            queue.bytes = queue.bytes.saturating_sub(bytes);
            set_buffer_gauge(target, queue.bytes);
        }
    }
}

/// Removes the oldest waiting sample of any target.
fn evict_oldest(state: &mut BufferState) -> Option<(TargetName, OutgoingSample)> {
    let name = state
        .queues
        .iter()
        .filter_map(|(name, queue)| queue.waiting.front().map(|(order, _)| (*order, name)))
        .min()
        .map(|(_, name)| name.clone())?;
    let queue = state.queues.get_mut(&name)?;
    let (_, sample) = queue.waiting.pop_front()?;
    let bytes = sample.bytes();
    queue.bytes -= bytes;
    set_buffer_gauge(&name, queue.bytes);
    state.used_bytes -= bytes;
    Some((name, sample))
}

fn set_buffer_gauge(target: &TargetName, bytes: usize) {
    metrics()
        .publish_buffer_bytes
        .get_or_create(&TargetLabels {
            target: target.as_str().to_owned(),
        })
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// The samplers' side of one target's queue.
#[derive(Clone)]
pub(crate) struct PublishQueue {
    target: TargetName,
    buffer: Arc<Buffer>,
    statements_lost: Arc<AtomicBool>,
}

impl PublishQueue {
    pub(crate) fn enqueue(&self, sample: OutgoingSample) -> Enqueued {
        self.buffer.enqueue(&self.target, sample)
    }

    /// Whether a statements sample of this target was dropped since the last call: the texts
    /// it carried must be sent again.
    pub(crate) fn take_statements_lost(&self) -> bool {
        self.statements_lost.swap(false, Ordering::Relaxed)
    }
}

const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Every target's queue, and the task per target that publishes it.
pub(crate) struct Outbox {
    buffer: Arc<Buffer>,
    jetstream: jetstream::Context,
    /// Cancelled when the shutdown's time is up: publishers put back what they hold and stop.
    abort: CancellationToken,
    publishers: Mutex<Vec<JoinHandle<()>>>,
}

impl Outbox {
    pub(crate) fn new(jetstream: jetstream::Context, capacity_mib: u32) -> Arc<Outbox> {
        Arc::new(Outbox {
            buffer: Arc::new(Buffer::new(capacity_mib as usize * 1024 * 1024)),
            jetstream,
            abort: CancellationToken::new(),
            publishers: Mutex::new(Vec::new()),
        })
    }

    /// The queue of `target`; its publisher starts with it and publishes for as long as the
    /// collector runs, so samples of a target stopped or edited meanwhile still go out in order.
    pub(crate) fn queue(&self, target: &TargetName) -> PublishQueue {
        let mut state = self.buffer.lock();
        let queue = state.queues.entry(target.clone()).or_insert_with(|| {
            let wake = Arc::new(Notify::new());
            let publisher = tokio::spawn(publish_in_order(
                self.jetstream.clone(),
                Arc::clone(&self.buffer),
                target.clone(),
                Arc::clone(&wake),
                self.abort.clone(),
            ));
            self.publishers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(publisher);
            TargetQueue {
                waiting: VecDeque::new(),
                bytes: 0,
                wake,
                statements_lost: Arc::new(AtomicBool::new(false)),
            }
        });
        PublishQueue {
            target: target.clone(),
            buffer: Arc::clone(&self.buffer),
            statements_lost: Arc::clone(&queue.statements_lost),
        }
    }

    /// At shutdown, once the samplers have stopped: publishes until the buffer is empty or
    /// `deadline` passes, then stops the publishers; what they did not publish stays in the
    /// buffer for [`Outbox::spool`].
    pub(crate) async fn drain_until(&self, deadline: tokio::time::Instant) {
        self.buffer.lock().closed = true;
        loop {
            let emptied = self.buffer.emptied.notified();
            if self.buffer.lock().used_bytes == 0 {
                break;
            }
            tokio::select! {
                _ = emptied => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.abort.cancel();
        let publishers = std::mem::take(&mut *self.publishers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for publisher in publishers {
            let _ = publisher.await;
        }
    }

    /// Queues the samples spooled by earlier runs in `directory`, ahead of anything sampled
    /// now, and deletes the spool files. Returns how many samples it queued.
    pub(crate) fn load_spool(&self, directory: &Path) -> usize {
        let mut queued = 0;
        for path in spool_files(directory) {
            // Claimed by a rename first, so two collectors sharing the directory never both
            // publish one file.
            let claimed = path.with_extension("loading");
            if std::fs::rename(&path, &claimed).is_err() {
                continue;
            }
            match read_spool_file(&claimed) {
                Ok((samples, skipped)) => {
                    if skipped > 0 {
                        tracing::warn!(file = %path.display(), skipped, "spooled lines that are not samples were skipped");
                    }
                    for (target, sample) in samples {
                        if self.queue(&target).enqueue(sample) == Enqueued::Queued {
                            queued += 1;
                        }
                    }
                    if let Err(error) = std::fs::remove_file(&claimed) {
                        tracing::warn!(file = %claimed.display(), %error, "cannot delete a spool file that was read; its samples may be published twice (JetStream drops duplicates within its window)");
                    }
                }
                Err(error) => {
                    tracing::error!(file = %claimed.display(), %error, "cannot read a spool file; it is left in place");
                }
            }
        }
        if queued > 0 {
            tracing::info!(samples = queued, directory = %directory.display(), "publishing samples spooled at the last shutdown first");
        }
        queued
    }

    /// Writes every sample still in the buffer to a new file in `directory` (in order, per
    /// target), to be published first at the next start. Returns how many it wrote.
    pub(crate) fn spool(&self, directory: &Path, collector_id: &str) -> Result<usize, SpoolError> {
        let state = self.buffer.lock();
        let mut lines = String::new();
        let mut samples = 0;
        let mut names: Vec<&TargetName> = state.queues.keys().collect();
        names.sort();
        for name in names {
            for (_, sample) in &state.queues[name].waiting {
                let spooled = SpooledSample {
                    target: name.clone(),
                    kind: sample.kind,
                    messages: sample
                        .messages
                        .iter()
                        .map(|message| SpooledMessage {
                            subject: message.subject.clone(),
                            message_id: message.message_id.clone(),
                            payload: String::from_utf8_lossy(&message.payload).into_owned(),
                        })
                        .collect(),
                };
                lines.push_str(&serde_json::to_string(&spooled).expect("spooled samples always serialise"));
                lines.push('\n');
                samples += 1;
            }
        }
        if samples == 0 {
            return Ok(0);
        }
        let io_error = |source| SpoolError::Write {
            directory: directory.to_owned(),
            source,
        };
        std::fs::create_dir_all(directory).map_err(io_error)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_micros());
        let path = directory.join(format!("spool-{stamp}-{collector_id}.jsonl"));
        let partial = path.with_extension("partial");
        std::fs::write(&partial, lines).map_err(io_error)?;
        std::fs::rename(&partial, &path).map_err(io_error)?;
        Ok(samples)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot write the spool in {directory}: {source}")]
    Write { directory: PathBuf, source: std::io::Error },
}

/// A sample as the spool file keeps it: one JSON line.
#[derive(Serialize, Deserialize)]
struct SpooledSample {
    target: TargetName,
    kind: SnapshotKind,
    messages: Vec<SpooledMessage>,
}

#[derive(Serialize, Deserialize)]
struct SpooledMessage {
    subject: String,
    message_id: String,
    /// The event's JSON, as text.
    payload: String,
}

/// Spool files of `directory`, oldest first.
fn spool_files(directory: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "jsonl"))
        .collect();
    files.sort();
    files
}

/// The samples of a spool file, and how many of its lines were not samples of a snapshot
/// subject (a damaged or hand-edited file must not stop a start).
fn read_spool_file(path: &Path) -> std::io::Result<(Vec<(TargetName, OutgoingSample)>, usize)> {
    let text = std::fs::read_to_string(path)?;
    let mut samples = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let Ok(spooled) = serde_json::from_str::<SpooledSample>(line) else {
            skipped += 1;
            continue;
        };
        let subject = snapshot_subject(&spooled.target, spooled.kind);
        if spooled.messages.is_empty() || spooled.messages.iter().any(|message| message.subject != subject) {
            skipped += 1;
            continue;
        }
        let messages = spooled
            .messages
            .into_iter()
            .map(|message| OutgoingSnapshot {
                subject: message.subject,
                message_id: message.message_id,
                payload: message.payload.into(),
            })
            .collect();
        samples.push((
            spooled.target,
            OutgoingSample {
                kind: spooled.kind,
                messages,
            },
        ));
    }
    Ok((samples, skipped))
}

/// Publishes `target`'s samples in order until the outbox aborts, each message retried until
/// acknowledged.
async fn publish_in_order(
    jetstream: jetstream::Context,
    buffer: Arc<Buffer>,
    target: TargetName,
    wake: Arc<Notify>,
    abort: CancellationToken,
) {
    let mut consecutive_failures: u64 = 0;
    loop {
        let sample = loop {
            if let Some(sample) = buffer.next(&target) {
                break sample;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = abort.cancelled() => return,
            }
        };
        match publish_sample(&jetstream, &target, &sample, &abort, &mut consecutive_failures).await {
            Published::Yes | Published::Dropped => buffer.published(&target, &sample),
            Published::Aborted => {
                buffer.put_back(&target, sample);
                return;
            }
        }
    }
}

enum Published {
    Yes,
    /// Larger than the server takes now: retrying cannot help, and would hold up every later
    /// sample of the target.
    Dropped,
    /// The shutdown's time ran out first.
    Aborted,
}

async fn publish_sample(
    jetstream: &jetstream::Context,
    target: &TargetName,
    sample: &OutgoingSample,
    abort: &CancellationToken,
    consecutive_failures: &mut u64,
) -> Published {
    let max_payload = jetstream.client().server_info().max_payload;
    if let Some(message) = sample.messages.iter().find(|message| message.payload.len() > max_payload) {
        MessageOverServerLimit {
            target,
            kind: sample.kind,
            subject: message.subject.as_str(),
            bytes: message.payload.len(),
            max_payload,
        }
        .emit();
        return Published::Dropped;
    }
    // Every message is sent again after an interruption: those stored already are dropped by
    // JetStream as duplicates of their message id.
    for message in &sample.messages {
        loop {
            let attempt = tokio::select! {
                attempt = publish(jetstream, message) => attempt,
                _ = abort.cancelled() => return Published::Aborted,
            };
            match attempt {
                Ok(()) => {
                    if *consecutive_failures > 0 {
                        tracing::info!(%target, failed_attempts = *consecutive_failures, "publishing resumed");
                        *consecutive_failures = 0;
                    }
                    break;
                }
                Err(error) => {
                    *consecutive_failures += 1;
                    if *consecutive_failures == 1 || consecutive_failures.is_power_of_two() {
                        tracing::warn!(%target, %error, failed_attempts = *consecutive_failures, "publish failed, retrying");
                    }
                    tokio::select! {
                        _ = abort.cancelled() => return Published::Aborted,
                        _ = tokio::time::sleep(RETRY_DELAY) => {}
                    }
                }
            }
        }
    }
    Published::Yes
}

async fn publish(jetstream: &jetstream::Context, message: &OutgoingSnapshot) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, message.message_id.as_str());
    let acknowledgement = jetstream
        .publish_with_headers(message.subject.clone(), headers, message.payload.clone())
        .await
        .map_err(|e| e.to_string())?;
    acknowledgement.await.map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(buffer: &Buffer, target: &TargetName) {
        buffer.lock().queues.insert(
            target.clone(),
            TargetQueue {
                waiting: VecDeque::new(),
                bytes: 0,
                wake: Arc::new(Notify::new()),
                statements_lost: Arc::new(AtomicBool::new(false)),
            },
        );
    }

    fn sample(target: &TargetName, kind: SnapshotKind, parts: &[usize]) -> OutgoingSample {
        OutgoingSample {
            kind,
            messages: parts
                .iter()
                .enumerate()
                .map(|(index, bytes)| OutgoingSnapshot {
                    subject: snapshot_subject(target, kind),
                    message_id: format!("{target}.{index}"),
                    payload: vec![b'x'; *bytes].into(),
                })
                .collect(),
        }
    }

    fn waiting(buffer: &Buffer, target: &TargetName) -> Vec<usize> {
        buffer.lock().queues[target]
            .waiting
            .iter()
            .map(|(_, sample)| sample.bytes())
            .collect()
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_whole_samples_of_any_target() {
        let buffer = Buffer::new(1000);
        let (a, b): (TargetName, TargetName) = ("a".parse().unwrap(), "b".parse().unwrap());
        register(&buffer, &a);
        register(&buffer, &b);
        assert_eq!(
            buffer.enqueue(&a, sample(&a, SnapshotKind::Statements, &[200, 200])),
            Enqueued::Queued
        );
        assert_eq!(buffer.enqueue(&b, sample(&b, SnapshotKind::Activity, &[300])), Enqueued::Queued);
        assert_eq!(buffer.enqueue(&a, sample(&a, SnapshotKind::Activity, &[200])), Enqueued::Queued);
        // 900 used: 300 more drop the oldest sample (a's two parts together), nothing else.
        assert_eq!(buffer.enqueue(&b, sample(&b, SnapshotKind::Activity, &[300])), Enqueued::Queued);
        assert_eq!(waiting(&buffer, &a), vec![200]);
        assert_eq!(waiting(&buffer, &b), vec![300, 300]);
        assert_eq!(buffer.lock().used_bytes, 800);
        assert!(buffer.lock().queues[&a].statements_lost.load(Ordering::Relaxed));
        // Larger than the whole budget: refused, nothing else dropped.
        assert_eq!(
            buffer.enqueue(&a, sample(&a, SnapshotKind::Activity, &[600, 600])),
            Enqueued::Dropped
        );
        assert_eq!(buffer.lock().used_bytes, 800);
    }

    #[test]
    fn a_sample_being_published_is_never_dropped() {
        let buffer = Buffer::new(1000);
        let a: TargetName = "a".parse().unwrap();
        register(&buffer, &a);
        buffer.enqueue(&a, sample(&a, SnapshotKind::Activity, &[600]));
        let in_flight = buffer.next(&a).unwrap();
        assert_eq!(buffer.enqueue(&a, sample(&a, SnapshotKind::Activity, &[600])), Enqueued::Dropped);
        buffer.put_back(&a, in_flight);
        assert_eq!(waiting(&buffer, &a), vec![600]);
        let published = buffer.next(&a).unwrap();
        buffer.published(&a, &published);
        assert_eq!(buffer.lock().used_bytes, 0);
    }

    #[test]
    fn spooled_samples_come_back_in_order_and_bad_lines_are_skipped() {
        let directory = tempfile::tempdir().unwrap();
        let a: TargetName = "a".parse().unwrap();
        let samples: Vec<OutgoingSample> = [10, 20, 30]
            .iter()
            .map(|bytes| sample(&a, SnapshotKind::Activity, &[*bytes, 5]))
            .collect();
        let lines: Vec<String> = samples
            .iter()
            .map(|sample| {
                serde_json::to_string(&SpooledSample {
                    target: a.clone(),
                    kind: sample.kind,
                    messages: sample
                        .messages
                        .iter()
                        .map(|message| SpooledMessage {
                            subject: message.subject.clone(),
                            message_id: message.message_id.clone(),
                            payload: String::from_utf8(message.payload.to_vec()).unwrap(),
                        })
                        .collect(),
                })
                .unwrap()
            })
            .collect();
        let foreign = r#"{"target":"a","kind":"activity","messages":[{"subject":"elsewhere","message_id":"x","payload":"{}"}]}"#;
        let path = directory.path().join("spool-1-c.jsonl");
        std::fs::write(&path, format!("{}\nnot json\n{foreign}\n{}\n{}\n", lines[0], lines[1], lines[2])).unwrap();
        let (read, skipped) = read_spool_file(&path).unwrap();
        assert_eq!(skipped, 2);
        let sizes: Vec<usize> = read.iter().map(|(_, sample)| sample.bytes()).collect();
        assert_eq!(sizes, vec![15, 25, 35]);
        assert_eq!(spool_files(directory.path()), vec![path]);
    }
}
