//! One target's sampling loop: connect, sample each kind on its own schedule, hand snapshots to
//! the publisher, and reconnect with backoff when the target goes away.

use std::time::{Duration, SystemTime};

use pgmon_common::telemetry::error_chain;
use pgmon_contract::event::{
    encode_snapshot_parts, InstanceFacts, Limitation, ObjectRow, ObjectsInfo, ServerIdentity, SettingRow, SkippedDatabase, Snapshot,
    SnapshotKind, SnapshotRow, StatementsInfo, StatusRow, TableRow, TargetState, CURRENT_SCHEMA_VERSION,
};
use pgmon_contract::subjects::{snapshot_message_id, snapshot_subject};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::activity;
use crate::config::{SamplingSettings, TargetSpec};
use crate::connection::{self, ConnectError};
use crate::database;
use crate::internal_events::{SnapshotFailed, SnapshotQueued, SnapshotTooLarge};
use crate::locks;
use crate::objects;
use crate::progress;
use crate::publisher::{Enqueued, OutgoingSample, OutgoingSnapshot, PublishQueue};
use crate::replication;
use crate::settings;
use crate::statements::{self, SentTexts, StatementsReader};
use crate::tables;
use crate::wal;

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
pub(crate) async fn sample_target(target: TargetSpec, settings: SamplingSettings, queue: PublishQueue, shutdown: CancellationToken) {
    let mut backoff = Backoff::new();
    let mut last_identity = ServerIdentity {
        system_identifier: None,
        server_version_num: 0,
        server_version: String::new(),
    };
    let mut down_since_us: Option<i64> = None;
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connection::connect(&target, settings.statement_timeout, None) => connected,
        };
        let (reason, failure) = match connected {
            Ok((client, identity)) => {
                tracing::info!(target = %target.name, server_version = %identity.server_version, "connected to target");
                last_identity = identity.clone();
                match Queries::prepare(&client, identity.server_version_num).await {
                    Ok(queries) => {
                        backoff = Backoff::new();
                        down_since_us = None;
                        if let Some(limitation) = &queries.statements_limitation {
                            tracing::warn!(target = %target.name, reason = ?limitation.reason, "{}", limitation.message);
                        }
                        let connected_at_us = activity::unix_micros(SystemTime::now());
                        let mut session = Session {
                            target: &target,
                            settings: &settings,
                            client: &client,
                            identity,
                            queries,
                            queue: &queue,
                            connected_at_us,
                            progress_published: WhileAny::new(),
                            replication_published: WhileAny::new(),
                            slots_published: WhileAny::new(),
                            settings_published: None,
                        };
                        match session.sample_until_disconnected(&shutdown).await {
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
            limitations: Vec::new(),
        };
        let snapshot = Encoded {
            target: &target,
            server: &last_identity,
            collected_at_us: now_us,
            settings: &settings,
        };
        if snapshot.enqueue(&queue, EnvelopeExtras::default(), vec![status]) == Enqueued::Closed {
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

/// The envelope of one snapshot about to be encoded and queued.
struct Encoded<'a> {
    target: &'a TargetSpec,
    server: &'a ServerIdentity,
    collected_at_us: i64,
    settings: &'a SamplingSettings,
}

/// What the envelope of some kinds carries beside the rows.
#[derive(Default)]
struct EnvelopeExtras {
    instance: Option<InstanceFacts>,
    statements_info: Option<StatementsInfo>,
    objects_info: Option<ObjectsInfo>,
}

impl Encoded<'_> {
    /// Encodes the snapshot (in parts when it is larger than a NATS message) and queues it as
    /// one sample: its parts are kept or dropped together.
    fn enqueue<Row: SnapshotRow>(&self, queue: &PublishQueue, extras: EnvelopeExtras, rows: Vec<Row>) -> Enqueued {
        // The kind is the rows' own: a snapshot can never be labelled with another kind.
        let kind = Row::KIND;
        let snapshot = Snapshot {
            schema_version: CURRENT_SCHEMA_VERSION,
            kind,
            target: self.target.name.clone(),
            collected_at_us: self.collected_at_us,
            server: self.server.clone(),
            collector: Some(self.settings.collector_id.to_string()),
            instance: extras.instance,
            statements_info: extras.statements_info,
            objects_info: extras.objects_info,
            part: None,
            rows,
        };
        let parts = match encode_snapshot_parts(&snapshot, self.settings.max_message_bytes) {
            Ok(parts) => parts,
            Err(error) => {
                SnapshotTooLarge {
                    target: &self.target.name,
                    kind,
                    error: &error,
                }
                .emit();
                return Enqueued::Dropped;
            }
        };
        let taken_us = activity::unix_micros(SystemTime::now()).saturating_sub(self.collected_at_us);
        SnapshotQueued {
            target: &self.target.name,
            kind,
            took: Duration::from_micros(u64::try_from(taken_us).unwrap_or(0)),
        }
        .emit();
        let messages = parts
            .into_iter()
            .map(|(part, payload)| OutgoingSnapshot {
                subject: snapshot_subject(&self.target.name, kind),
                message_id: snapshot_message_id(&self.target.name, kind, self.collected_at_us, part),
                payload: payload.into(),
            })
            .collect();
        queue.enqueue(OutgoingSample { kind, messages })
    }
}

/// The sample queries, prepared once per connection for the server's version.
struct Queries {
    activity: tokio_postgres::Statement,
    locks: tokio_postgres::Statement,
    progress: tokio_postgres::Statement,
    replication: replication::ReplicationStatements,
    settings: tokio_postgres::Statement,
    wal: wal::WalStatements,
    database: database::DatabaseStatements,
    /// Why statements cannot be sampled, when they cannot (their own session reads them).
    statements_limitation: Option<Limitation>,
}

impl Queries {
    async fn prepare(client: &Client, server_version_num: i32) -> Result<Queries, tokio_postgres::Error> {
        Ok(Queries {
            activity: activity::prepare(client, server_version_num).await?,
            locks: locks::prepare(client, server_version_num).await?,
            progress: progress::prepare(client).await?,
            replication: replication::prepare(client, server_version_num).await?,
            settings: settings::prepare(client).await?,
            wal: wal::prepare(client, server_version_num).await?,
            database: database::prepare(client, server_version_num).await?,
            statements_limitation: statements::prepare(client).await?.err(),
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
    settings: &'a SamplingSettings,
    client: &'a Client,
    identity: ServerIdentity,
    queries: Queries,
    queue: &'a PublishQueue,
    connected_at_us: i64,
    progress_published: WhileAny,
    replication_published: WhileAny,
    slots_published: WhileAny,
    /// The settings last published in this session: a sample equal to them is not published.
    settings_published: Option<Vec<SettingRow>>,
}

/// When to publish a kind that is published only while it has rows: every sample with rows,
/// the first empty one after them (so readers see that the last row went), and the first
/// sample of a session, empty or not (so readers see the state after a reconnect).
struct WhileAny {
    last_had_rows: bool,
}

impl WhileAny {
    fn new() -> WhileAny {
        WhileAny { last_had_rows: true }
    }

    /// Whether a sample with or without rows is published.
    fn publishes(&mut self, has_rows: bool) -> bool {
        let last_had_rows = std::mem::replace(&mut self.last_had_rows, has_rows);
        has_rows || last_had_rows
    }
}

impl Session<'_> {
    async fn sample_until_disconnected(&mut self, shutdown: &CancellationToken) -> SessionEnd {
        let start = Instant::now();
        let mut schedules = [
            Schedule {
                kind: SnapshotKind::Activity,
                interval: self.target.interval(SnapshotKind::Activity, self.settings.activity_interval),
                next_due: start,
            },
            Schedule {
                kind: SnapshotKind::Locks,
                interval: self.target.interval(SnapshotKind::Locks, self.settings.locks_interval),
                next_due: start,
            },
            Schedule {
                kind: SnapshotKind::Progress,
                interval: self.target.interval(SnapshotKind::Progress, self.settings.progress_interval),
                next_due: start,
            },
            Schedule {
                kind: SnapshotKind::Replication,
                interval: self.target.interval(SnapshotKind::Replication, self.settings.replication_interval),
                next_due: start,
            },
            Schedule {
                kind: SnapshotKind::Settings,
                interval: self.target.interval(SnapshotKind::Settings, self.settings.settings_interval),
                next_due: start,
            },
            Schedule {
                kind: SnapshotKind::Database,
                interval: self.target.interval(SnapshotKind::Database, self.settings.database_interval),
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
                advance_past(&mut schedule.next_due, schedule.interval, now);
                match self.take(schedule.kind).await {
                    Ok(Enqueued::Closed) => return SessionEnd::Shutdown,
                    Ok(_) => {}
                    Err(error) if self.client.is_closed() => return SessionEnd::Disconnected(error),
                    Err(error) => {
                        SnapshotFailed {
                            target: &self.target.name,
                            kind: schedule.kind,
                            error: &error_chain(&error),
                        }
                        .emit();
                    }
                }
            }
        }
    }

    /// Takes a snapshot of `kind` and queues it; nothing is queued for locks while no one
    /// waits, nor for statements where they cannot be read.
    async fn take(&mut self, kind: SnapshotKind) -> Result<Enqueued, tokio_postgres::Error> {
        let snapshot = Encoded {
            target: self.target,
            server: &self.identity,
            collected_at_us: activity::unix_micros(SystemTime::now()),
            settings: self.settings,
        };
        let queued = match kind {
            SnapshotKind::Activity => {
                let rows = activity::sample(self.client, &self.queries.activity, self.settings.query_text_max_length).await?;
                snapshot.enqueue(self.queue, EnvelopeExtras::default(), rows)
            }
            SnapshotKind::Database => {
                let (instance, rows) = database::sample(self.client, &self.queries.database).await?;
                let (wal, io) = wal::sample(self.client, &self.queries.wal).await?;
                let extras = EnvelopeExtras {
                    instance: Some(instance),
                    ..EnvelopeExtras::default()
                };
                if snapshot.enqueue(self.queue, extras, rows) == Enqueued::Closed
                    || snapshot.enqueue(self.queue, EnvelopeExtras::default(), vec![wal]) == Enqueued::Closed
                {
                    return Ok(Enqueued::Closed);
                }
                match io {
                    Some(io) => snapshot.enqueue(self.queue, EnvelopeExtras::default(), io),
                    None => Enqueued::Queued,
                }
            }
            SnapshotKind::Status => {
                let status = StatusRow {
                    state: TargetState::Up,
                    reason: None,
                    message: None,
                    since_us: self.connected_at_us,
                    limitations: self.queries.statements_limitation.iter().cloned().collect(),
                };
                snapshot.enqueue(self.queue, EnvelopeExtras::default(), vec![status])
            }
            SnapshotKind::Locks => {
                let rows = locks::sample(self.client, &self.queries.locks).await?;
                if rows.is_empty() {
                    return Ok(Enqueued::Queued);
                }
                snapshot.enqueue(self.queue, EnvelopeExtras::default(), rows)
            }
            SnapshotKind::Progress => {
                let rows = progress::sample(self.client, &self.queries.progress).await?;
                if !self.progress_published.publishes(!rows.is_empty()) {
                    return Ok(Enqueued::Queued);
                }
                snapshot.enqueue(self.queue, EnvelopeExtras::default(), rows)
            }
            SnapshotKind::Replication => {
                let (links, slots) = replication::sample(self.client, &self.queries.replication).await?;
                if self.replication_published.publishes(!links.is_empty())
                    && snapshot.enqueue(self.queue, EnvelopeExtras::default(), links) == Enqueued::Closed
                {
                    return Ok(Enqueued::Closed);
                }
                if !self.slots_published.publishes(!slots.is_empty()) {
                    return Ok(Enqueued::Queued);
                }
                snapshot.enqueue(self.queue, EnvelopeExtras::default(), slots)
            }
            SnapshotKind::Statements | SnapshotKind::Objects | SnapshotKind::Tables => {
                unreachable!("statements, objects and tables are sampled by their own tasks")
            }
            SnapshotKind::Settings => {
                let rows = settings::sample(self.client, &self.queries.settings).await?;
                if self.settings_published.as_ref() == Some(&rows) {
                    return Ok(Enqueued::Queued);
                }
                let queued = snapshot.enqueue(self.queue, EnvelopeExtras::default(), rows.clone());
                // A dropped sample is sent again at the next turn.
                if queued == Enqueued::Queued {
                    self.settings_published = Some(rows);
                }
                queued
            }
            SnapshotKind::Slots => unreachable!("slots are sampled with replication"),
            SnapshotKind::Wal | SnapshotKind::Io => unreachable!("wal and io are sampled with the database"),
        };
        Ok(queued)
    }
}

/// Moves `next_due` to the first slot after `now`: a late sample is taken once, not in a
/// burst, so samples stay about one interval apart.
fn advance_past(next_due: &mut Instant, interval: Duration, now: Instant) {
    while *next_due <= now {
        *next_due += interval;
    }
}

/// Waits for `next_due` and books the next slot; false when shut down first.
async fn wait_for_turn(next_due: &mut Instant, interval: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep_until(*next_due) => {}
    }
    advance_past(next_due, interval, Instant::now());
    true
}

#[derive(Debug, thiserror::Error)]
enum ObjectsError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot list the databases: {}", error_chain(.0))]
    ListDatabases(tokio_postgres::Error),
}

/// Samples pg_stat_statements of `target` in a session of its own, so that reading a large
/// statistics file never delays the activity samples of the main session. The main session
/// reports the target's state and why statements cannot be read; this task only retries.
pub(crate) async fn sample_statements(target: TargetSpec, settings: SamplingSettings, queue: PublishQueue, shutdown: CancellationToken) {
    let interval = target.interval(SnapshotKind::Statements, settings.statements_interval);
    let mut sent_texts = SentTexts::new(settings.statement_texts_every);
    let mut last_system_identifier: Option<Option<String>> = None;
    let mut retry = Backoff::new();
    loop {
        let prepared = tokio::select! {
            _ = shutdown.cancelled() => return,
            prepared = connect_for_statements(&target, &settings) => prepared,
        };
        let (client, identity, mut reader) = match prepared {
            Some(prepared) => prepared,
            None => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry.next().max(interval)) => continue,
                }
            }
        };
        retry = Backoff::new();
        if last_system_identifier.as_ref() != Some(&identity.system_identifier) {
            // Another server answers under this name: it has not seen our texts.
            sent_texts.forget();
            last_system_identifier = Some(identity.system_identifier.clone());
        }
        let mut next_due = Instant::now();
        loop {
            if !wait_for_turn(&mut next_due, interval, &shutdown).await {
                return;
            }
            if queue.take_statements_lost() {
                // A full buffer dropped a snapshot with texts: send them all again.
                sent_texts.forget();
            }
            let turn = tokio::select! {
                _ = shutdown.cancelled() => return,
                turn = settings.heavy_snapshots.acquire() => turn.expect("the semaphore is never closed"),
            };
            let snapshot = Encoded {
                target: &target,
                server: &identity,
                collected_at_us: activity::unix_micros(SystemTime::now()),
                settings: &settings,
            };
            let sampled = statements::sample(&client, &mut reader, &mut sent_texts).await;
            drop(turn);
            match sampled {
                Ok((info, rows)) => match snapshot.enqueue(
                    &queue,
                    EnvelopeExtras {
                        statements_info: info,
                        ..EnvelopeExtras::default()
                    },
                    rows,
                ) {
                    Enqueued::Queued => {}
                    // Texts it carried would be missing forever; send them all again instead.
                    Enqueued::Dropped => sent_texts.forget(),
                    Enqueued::Closed => return,
                },
                Err(_) if client.is_closed() => break,
                Err(error) => {
                    SnapshotFailed {
                        target: &target.name,
                        kind: SnapshotKind::Statements,
                        error: &error_chain(&error),
                    }
                    .emit();
                }
            }
        }
    }
}

/// The statements session, or `None` when it cannot be had now (the target is down, which
/// the main session reports, or lacks pg_stat_statements, which its status says).
async fn connect_for_statements(target: &TargetSpec, settings: &SamplingSettings) -> Option<(Client, ServerIdentity, StatementsReader)> {
    let (client, identity) = connection::connect(target, settings.statement_timeout, None).await.ok()?;
    match statements::prepare(&client).await {
        Ok(Ok(reader)) => Some((client, identity, reader)),
        Ok(Err(_)) => None,
        Err(error) => {
            tracing::debug!(target = %target.name, error = %error_chain(&error), "statements session not ready");
            None
        }
    }
}

/// Samples the objects of every database of `target` on their own schedule, apart from the
/// main session, so a slow round over many databases never delays activity samples.
pub(crate) async fn sample_objects(target: TargetSpec, settings: SamplingSettings, queue: PublishQueue, shutdown: CancellationToken) {
    let interval = target.interval(SnapshotKind::Objects, settings.objects_interval);
    let mut next_due = Instant::now();
    loop {
        if !wait_for_turn(&mut next_due, interval, &shutdown).await {
            return;
        }
        let (collected_at_us, round) = tokio::select! {
            _ = shutdown.cancelled() => return,
            round = async {
                let _turn = settings.heavy_snapshots.acquire().await.expect("the semaphore is never closed");
                (activity::unix_micros(SystemTime::now()), objects_round(&target, &settings).await)
            } => round,
        };
        match round {
            Ok(round) => {
                let snapshot = Encoded {
                    target: &target,
                    server: &round.identity,
                    collected_at_us,
                    settings: &settings,
                };
                // Both kinds say which databases the round could not read.
                let extras = || EnvelopeExtras {
                    objects_info: (!round.skipped_databases.is_empty()).then(|| ObjectsInfo {
                        skipped_databases: round.skipped_databases.clone(),
                    }),
                    ..EnvelopeExtras::default()
                };
                if snapshot.enqueue(&queue, extras(), round.objects) == Enqueued::Closed
                    || snapshot.enqueue(&queue, extras(), round.tables) == Enqueued::Closed
                {
                    return;
                }
            }
            // The main session reports the target down; this only says what was not sampled.
            Err(error) => {
                SnapshotFailed {
                    target: &target.name,
                    kind: SnapshotKind::Objects,
                    error: &error,
                }
                .emit();
            }
        }
    }
}

/// What one objects round read.
struct ObjectsRound {
    identity: ServerIdentity,
    /// Every relation it could list, with its sizes.
    objects: Vec<ObjectRow>,
    /// Every table it could list, with what autovacuum sees of it.
    tables: Vec<TableRow>,
    /// The databases it could not read, and why.
    skipped_databases: Vec<SkippedDatabase>,
}

/// Visits each database in turn; a database that cannot be read is skipped, and said so.
async fn objects_round(target: &TargetSpec, settings: &SamplingSettings) -> Result<ObjectsRound, ObjectsError> {
    let (client, identity) = connection::connect(target, settings.objects_statement_timeout, None).await?;
    let databases: Vec<String> = client
        .query(objects::DATABASES_QUERY, &[])
        .await
        .map_err(ObjectsError::ListDatabases)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    drop(client);
    let mut round = ObjectsRound {
        identity,
        objects: Vec::new(),
        tables: Vec::new(),
        skipped_databases: Vec::new(),
    };
    for database in databases {
        let read = match connection::connect(target, settings.objects_statement_timeout, Some(&database)).await {
            Ok((client, _)) => read_database(&client).await.map_err(|error| error_chain(&error)),
            Err(error) => Err(error.to_string()),
        };
        match read {
            Ok((objects, tables)) => {
                round.objects.extend(objects);
                round.tables.extend(tables);
            }
            Err(reason) => {
                tracing::warn!(target = %target.name, %database, error = %reason, "objects of a database skipped");
                round.skipped_databases.push(SkippedDatabase { database, reason });
            }
        }
    }
    Ok(round)
}

/// The objects and the tables of the database `client` is connected to.
async fn read_database(client: &Client) -> Result<(Vec<ObjectRow>, Vec<TableRow>), tokio_postgres::Error> {
    Ok((objects::sample_database(client).await?, tables::sample_database(client).await?))
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
