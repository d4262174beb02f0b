//! One target's sampling loop: connect, sample each kind on its own schedule, hand snapshots to
//! the publisher, and reconnect with backoff when the target goes away.

use std::time::{Duration, SystemTime};

use pgmon_common::event::{
    encode_snapshot, InstanceFacts, ServerIdentity, Snapshot, SnapshotKind, StatusRow, TargetState, CURRENT_SCHEMA_VERSION,
};
use pgmon_common::subjects::{snapshot_message_id, snapshot_subject};
use pgmon_common::target::TargetName;
use pgmon_common::telemetry::error_chain;
use tokio::sync::mpsc::{error::TrySendError, Sender};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::activity;
use crate::config::{SamplingSettings, TargetSpec};
use crate::connection;
use crate::database;
use crate::locks;
use crate::publisher::OutgoingSnapshot;

const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const LONGEST_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter, so many collectors do not reconnect in lockstep.
struct Backoff {
    next_delay: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next_delay: FIRST_RETRY_DELAY,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next_delay.mul_f64(rand::random_range(0.8..1.2));
        self.next_delay = (self.next_delay * 2).min(LONGEST_RETRY_DELAY);
        delay
    }
}

enum SessionEnd {
    Shutdown,
    Disconnected(tokio_postgres::Error),
}

/// How often a target that is up says so (down targets report at every failed attempt).
const STATUS_HEARTBEAT: Duration = Duration::from_secs(60);

/// Samples `target` until `shutdown` is cancelled; never returns early on target errors.
pub(crate) async fn sample_target(
    target: TargetSpec,
    settings: SamplingSettings,
    queue: Sender<OutgoingSnapshot>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    let mut last_identity = ServerIdentity {
        system_identifier: None,
        server_version_num: 0,
        server_version: String::new(),
    };
    let mut down_since_us: Option<i64> = None;
    let mut dropped_snapshots: u64 = 0;
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connection::connect(&target, settings) => connected,
        };
        let (reason, failure) = match connected {
            Ok((client, identity)) => {
                tracing::info!(target = %target.name, server_version = %identity.server_version, "connected to target");
                last_identity = identity.clone();
                match Statements::prepare(&client, identity.server_version_num).await {
                    Ok(statements) => {
                        backoff = Backoff::new();
                        down_since_us = None;
                        let connected_at_us = activity::unix_micros(SystemTime::now());
                        let session = Session {
                            target: &target,
                            settings,
                            client: &client,
                            identity,
                            statements,
                            queue: &queue,
                            connected_at_us,
                        };
                        match session.sample_until_disconnected(&shutdown, &mut dropped_snapshots).await {
                            SessionEnd::Shutdown => return,
                            SessionEnd::Disconnected(error) => {
                                (connection::down_reason(&error), format!("connection lost: {}", error_chain(&error)))
                            }
                        }
                    }
                    Err(error) => (
                        connection::down_reason(&error),
                        format!("cannot prepare the sample queries: {}", error_chain(&error)),
                    ),
                }
            }
            Err(error) => (error.down_reason(), error.to_string()),
        };
        let now_us = activity::unix_micros(SystemTime::now());
        let status = StatusRow {
            state: TargetState::Down,
            reason: Some(reason),
            message: Some(failure.clone()),
            since_us: *down_since_us.get_or_insert(now_us),
        };
        let snapshot = status_snapshot(&target, &last_identity, now_us, status);
        if !enqueue(&queue, snapshot, &target, SnapshotKind::Status, &mut dropped_snapshots) {
            return;
        }
        let delay = backoff.next();
        tracing::warn!(target = %target.name, error = %failure, reason = ?reason, retry_in = ?delay, "target unavailable");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn status_snapshot(target: &TargetSpec, identity: &ServerIdentity, collected_at_us: i64, status: StatusRow) -> OutgoingSnapshot {
    let snapshot = build_snapshot(&target.name, identity, SnapshotKind::Status, collected_at_us, None, vec![status]);
    outgoing(&target.name, SnapshotKind::Status, collected_at_us, encode_snapshot(&snapshot))
}

fn build_snapshot<Row>(
    target: &TargetName,
    server: &ServerIdentity,
    kind: SnapshotKind,
    collected_at_us: i64,
    instance: Option<InstanceFacts>,
    rows: Vec<Row>,
) -> Snapshot<Row> {
    Snapshot {
        schema_version: CURRENT_SCHEMA_VERSION,
        kind,
        target: target.clone(),
        collected_at_us,
        server: server.clone(),
        instance,
        rows,
    }
}

fn outgoing(target: &TargetName, kind: SnapshotKind, collected_at_us: i64, payload: Vec<u8>) -> OutgoingSnapshot {
    OutgoingSnapshot {
        subject: snapshot_subject(target, kind),
        message_id: snapshot_message_id(target, kind, collected_at_us),
        payload: payload.into(),
    }
}

/// Queues a snapshot for the publisher; a full queue drops it (counted, at ERROR: data loss).
/// Returns false once the publisher is gone (shutdown).
fn enqueue(
    queue: &Sender<OutgoingSnapshot>,
    snapshot: OutgoingSnapshot,
    target: &TargetSpec,
    kind: SnapshotKind,
    dropped_snapshots: &mut u64,
) -> bool {
    match queue.try_send(snapshot) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            *dropped_snapshots += 1;
            tracing::error!(target = %target.name, kind = kind.as_str(), dropped_snapshots = *dropped_snapshots, "publish queue full: NATS is not keeping up, snapshot dropped");
            true
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

/// The sample queries, prepared once per connection for the server's version.
struct Statements {
    activity: tokio_postgres::Statement,
    locks: tokio_postgres::Statement,
    database: database::DatabaseStatements,
}

impl Statements {
    async fn prepare(client: &Client, server_version_num: i32) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            activity: activity::prepare(client, server_version_num).await?,
            locks: locks::prepare(client, server_version_num).await?,
            database: database::prepare(client, server_version_num).await?,
        })
    }
}

/// When a kind is next due.
struct Schedule {
    kind: SnapshotKind,
    interval: Duration,
    next_due: Instant,
}

struct Session<'a> {
    target: &'a TargetSpec,
    settings: SamplingSettings,
    client: &'a Client,
    identity: ServerIdentity,
    statements: Statements,
    queue: &'a Sender<OutgoingSnapshot>,
    connected_at_us: i64,
}

impl Session<'_> {
    async fn sample_until_disconnected(&self, shutdown: &CancellationToken, dropped_snapshots: &mut u64) -> SessionEnd {
        let start = Instant::now();
        let mut schedules = [
            Schedule {
                kind: SnapshotKind::Activity,
                interval: self.settings.activity_interval,
                next_due: start,
            },
            Schedule {
                kind: SnapshotKind::Locks,
                interval: self.settings.locks_interval,
                next_due: start,
            },
            Schedule {
                kind: SnapshotKind::Database,
                interval: self.settings.database_interval,
                next_due: start,
            },
            Schedule {
                kind: SnapshotKind::Status,
                interval: STATUS_HEARTBEAT,
                next_due: start,
            },
        ];
        loop {
            let next_due = schedules
                .iter()
                .map(|schedule| schedule.next_due)
                .min()
                .expect("there are schedules");
            tokio::select! {
                _ = shutdown.cancelled() => return SessionEnd::Shutdown,
                _ = tokio::time::sleep_until(next_due) => {}
            }
            let now = Instant::now();
            for schedule in schedules.iter_mut().filter(|schedule| schedule.next_due <= now) {
                // A late sample is taken once, not in a burst: samples stay about one interval apart.
                while schedule.next_due <= now {
                    schedule.next_due += schedule.interval;
                }
                let outgoing = match self.take(schedule.kind).await {
                    Ok(Some(outgoing)) => outgoing,
                    Ok(None) => continue,
                    Err(error) if self.client.is_closed() => return SessionEnd::Disconnected(error),
                    Err(error) => {
                        tracing::warn!(target = %self.target.name, kind = schedule.kind.as_str(), error = %error_chain(&error), "snapshot failed");
                        continue;
                    }
                };
                if !enqueue(self.queue, outgoing, self.target, schedule.kind, dropped_snapshots) {
                    return SessionEnd::Shutdown;
                }
            }
        }
    }

    /// Takes a snapshot of `kind`; `None` when there is nothing to publish (no lock waits).
    async fn take(&self, kind: SnapshotKind) -> Result<Option<OutgoingSnapshot>, tokio_postgres::Error> {
        let collected_at_us = activity::unix_micros(SystemTime::now());
        let payload = match kind {
            SnapshotKind::Activity => {
                let rows = activity::sample(self.client, &self.statements.activity, self.settings.query_text_max_length).await?;
                encode_snapshot(&self.snapshot(kind, collected_at_us, None, rows))
            }
            SnapshotKind::Database => {
                let (instance, rows) = database::sample(self.client, &self.statements.database).await?;
                encode_snapshot(&self.snapshot(kind, collected_at_us, Some(instance), rows))
            }
            SnapshotKind::Status => {
                let status = StatusRow {
                    state: TargetState::Up,
                    reason: None,
                    message: None,
                    since_us: self.connected_at_us,
                };
                encode_snapshot(&self.snapshot(kind, collected_at_us, None, vec![status]))
            }
            SnapshotKind::Locks => {
                let rows = locks::sample(self.client, &self.statements.locks).await?;
                if rows.is_empty() {
                    return Ok(None);
                }
                encode_snapshot(&self.snapshot(kind, collected_at_us, None, rows))
            }
        };
        Ok(Some(outgoing(&self.target.name, kind, collected_at_us, payload)))
    }

    fn snapshot<Row>(&self, kind: SnapshotKind, collected_at_us: i64, instance: Option<InstanceFacts>, rows: Vec<Row>) -> Snapshot<Row> {
        build_snapshot(&self.target.name, &self.identity, kind, collected_at_us, instance, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_ceiling_with_jitter() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next()).collect();
        assert!(delays[0] >= Duration::from_millis(800) && delays[0] <= Duration::from_millis(1200));
        assert!(delays[1] >= Duration::from_millis(1600));
        assert!(delays.iter().all(|delay| *delay <= LONGEST_RETRY_DELAY.mul_f64(1.2)));
        assert!(delays[7] >= LONGEST_RETRY_DELAY.mul_f64(0.8));
    }
}
