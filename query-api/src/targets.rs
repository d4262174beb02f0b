//! What the stream knows about targets right now: which exist, their status, and their newest
//! samples (read by direct get, never from DuckDB; a sample sent in parts is joined first).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_nats::jetstream;
use futures::TryStreamExt;
use pgmon_contract::api::{BlockingNode, CurrentBlocking};
use pgmon_contract::api::{CurrentReplication, RunningMaintenance, TargetSummary};
use pgmon_contract::event::{
    decode_snapshot, join_parts, sample_head, AnySnapshot, ProgressRow, ReplicationRow, SampleHead, SlotRow, SnapshotKind, SnapshotRow,
    TargetState,
};
use pgmon_contract::query::{wraparound_percent, ObjectOrder, ObjectsRequest};
use pgmon_contract::subjects::{parse_snapshot_subject, snapshot_subject, SNAPSHOT_STREAM};
use pgmon_contract::target::TargetName;

use crate::error::AppError;
use crate::{params, AppState};

async fn snapshot_stream(jetstream: &jetstream::Context) -> Result<jetstream::stream::Stream, AppError> {
    jetstream
        .get_stream(SNAPSHOT_STREAM)
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot read the snapshot stream: {e}")))
}

/// The newest complete sample of one kind of a target, when the stream has one that decodes.
/// A sample too large for one message arrives in parts: "now" is the newest sample of which
/// every part is stored, joined, never the last part alone.
pub async fn newest_sample(
    jetstream: &jetstream::Context,
    target: &TargetName,
    kind: SnapshotKind,
) -> Result<Option<AnySnapshot>, AppError> {
    let stream = snapshot_stream(jetstream).await?;
    let subject = snapshot_subject(target, kind);
    let Ok(last) = stream.direct_get_last_for_subject(subject.as_str()).await else {
        return Ok(None);
    };
    let Ok(head) = sample_head(&last.payload) else {
        return Ok(None);
    };
    if head.part.is_none() {
        return Ok(decode_snapshot(&last.payload).ok());
    }
    let Some(payloads) = parts_of_newest_complete_sample(&stream, &subject, last.sequence, (head, last.payload)).await? else {
        return Ok(None);
    };
    let parts: Result<Vec<AnySnapshot>, _> = payloads.iter().map(|payload| decode_snapshot(payload)).collect();
    Ok(parts.ok().and_then(|parts| join_parts(parts).ok()))
}

/// The most a "now" view reads of one subject to find a complete split sample: the parts of
/// the newest samples (a sample of ten thousand sessions is some fifteen parts), never a scan
/// of history.
const MOST_BYTES_READ_FOR_NOW: usize = 64 * 1024 * 1024;

/// The payloads of the newest sample on `subject` whose parts are all stored, in stream order,
/// reading back from the newest message (`last_sequence`, already read). Parts of one sample
/// are published in order, after every part of the samples before it, so messages of an older
/// sample below a sample's first part show that nothing of it lies further back. The window of
/// stream sequences read back grows until it holds such a sample (other targets' messages
/// interleave with this subject's).
async fn parts_of_newest_complete_sample(
    stream: &jetstream::stream::Stream,
    subject: &str,
    last_sequence: u64,
    last: (SampleHead, bytes::Bytes),
) -> Result<Option<Vec<bytes::Bytes>>, AppError> {
    let mut read: ReadMessages = BTreeMap::from([(last_sequence, last)]);
    let mut bytes_read = read[&last_sequence].1.len();
    let mut read_from = last_sequence;
    let mut window = 2 * u64::from(read[&last_sequence].0.part.map_or(1, |part| part.count));
    loop {
        let start = last_sequence.saturating_sub(window).max(1);
        let mut sequence = start;
        while sequence < read_from {
            let Ok(message) = stream.direct_get_next_for_subject(subject, Some(sequence)).await else {
                break;
            };
            if message.sequence >= read_from {
                break;
            }
            sequence = message.sequence + 1;
            bytes_read += message.payload.len();
            if bytes_read > MOST_BYTES_READ_FOR_NOW {
                return Err(AppError::Unavailable(format!(
                    "the newest samples on {subject} are incomplete: no sample with all its parts within the last {} MiB",
                    MOST_BYTES_READ_FOR_NOW >> 20
                )));
            }
            if let Ok(head) = sample_head(&message.payload) {
                read.insert(message.sequence, (head, message.payload));
            }
        }
        read_from = start;
        match newest_complete_sample(&read, start == 1) {
            SampleSearch::Found(payloads) => return Ok(Some(payloads)),
            SampleSearch::NoneInStream => return Ok(None),
            SampleSearch::ReadFurtherBack => window = window.saturating_mul(4),
        }
    }
}

/// Messages of one subject read so far, by stream sequence: the head of each and its payload.
type ReadMessages = BTreeMap<u64, (SampleHead, bytes::Bytes)>;

/// What the messages read so far tell about the newest complete sample.
#[derive(Debug, PartialEq)]
enum SampleSearch {
    Found(Vec<bytes::Bytes>),
    /// Every message of the subject was read and no sample is complete.
    NoneInStream,
    ReadFurtherBack,
}

/// Looks for the newest complete sample among `read` (messages of one subject by stream
/// sequence); `read_all` says the subject's first message is among them.
fn newest_complete_sample(read: &ReadMessages, read_all: bool) -> SampleSearch {
    let mut samples: Vec<(i64, Vec<(SampleHead, &bytes::Bytes)>)> = Vec::new();
    for (head, payload) in read.values() {
        match samples.last_mut() {
            Some((collected_at_us, parts)) if *collected_at_us == head.collected_at_us => parts.push((*head, payload)),
            _ => samples.push((head.collected_at_us, vec![(*head, payload)])),
        }
    }
    for (position, (_, parts)) in samples.iter().enumerate().rev() {
        let count = parts[0].0.part.map_or(1, |part| part.count);
        let indexes: BTreeSet<u32> = parts.iter().map(|(head, _)| head.part.map_or(0, |part| part.index)).collect();
        if parts.len() == count as usize && indexes.len() == parts.len() && indexes.iter().copied().eq(0..count) {
            return SampleSearch::Found(parts.iter().map(|(_, payload)| (*payload).clone()).collect());
        }
        // The oldest sample read may have parts further back.
        if position == 0 && !read_all {
            return SampleSearch::ReadFurtherBack;
        }
    }
    if read_all {
        SampleSearch::NoneInStream
    } else {
        SampleSearch::ReadFurtherBack
    }
}

/// Every target that is registered or has sent a status or activity snapshot.
async fn known_targets(state: &AppState) -> Result<BTreeSet<TargetName>, AppError> {
    let stream = snapshot_stream(&state.jetstream).await?;
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects("pgmon.snap.*.*")
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot list targets: {e}")))?
        .try_collect()
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot list targets: {e}")))?;
    let mut names: BTreeSet<TargetName> = subjects
        .iter()
        .filter_map(|(subject, _)| parse_snapshot_subject(subject).and_then(|(target, _)| target.parse().ok()))
        .collect();
    let (records, _) = state.registry.list().await.map_err(|e| AppError::Unavailable(e.to_string()))?;
    names.extend(records.into_iter().map(|record| record.name));
    Ok(names)
}

/// The fleet: every known target with its status, lag, load and size.
pub async fn target_summaries(state: &AppState) -> Result<Vec<TargetSummary>, AppError> {
    let names = known_targets(state).await?;
    let summaries = futures::future::join_all(names.iter().map(|name| target_summary(state, name))).await;
    summaries.into_iter().collect()
}

async fn target_summary(state: &AppState, name: &TargetName) -> Result<TargetSummary, AppError> {
    let (status, activity, database, replication) = tokio::try_join!(
        newest_sample(&state.jetstream, name, SnapshotKind::Status),
        newest_sample(&state.jetstream, name, SnapshotKind::Activity),
        newest_sample(&state.jetstream, name, SnapshotKind::Database),
        current_replication(state, name),
    )?;
    let mut summary = TargetSummary {
        name: name.to_string(),
        status: "unknown".to_owned(),
        status_message: None,
        limitations: Vec::new(),
        lag_seconds: None,
        last_sample_us: None,
        active_sessions_now: None,
        max_connections: None,
        data_bytes: None,
        oldest_xid_percent: None,
        replication_lag_bytes: None,
        inactive_slots: None,
        server_version: None,
    };
    if let Some(AnySnapshot::Status(status)) = status {
        if let Some(row) = status.rows.first() {
            summary.status = row.state.as_str().to_owned();
            if row.state == TargetState::Down {
                summary.status_message = Some(match (&row.reason, &row.message) {
                    (Some(reason), Some(message)) => format!("{}: {message}", reason.as_str()),
                    (Some(reason), None) => reason.as_str().to_owned(),
                    (None, message) => message.clone().unwrap_or_default(),
                });
            }
            summary.limitations = row.limitations.iter().map(|limitation| limitation.message.clone()).collect();
        }
        if status.server.server_version_num > 0 {
            summary.server_version = Some(status.server.server_version.clone());
        }
    }
    if let Some(AnySnapshot::Activity(activity)) = activity {
        summary.last_sample_us = Some(activity.collected_at_us);
        summary.lag_seconds = Some((params::now_us() - activity.collected_at_us).max(0) / 1_000_000);
        summary.active_sessions_now = Some(
            activity
                .rows
                .iter()
                .filter(|row| row.state.as_deref() == Some("active") && row.backend_type.as_deref() == Some("client backend"))
                .count(),
        );
    }
    if let Some(AnySnapshot::Database(database)) = database {
        summary.max_connections = database.instance.as_ref().map(|instance| instance.max_connections);
        summary.oldest_xid_percent = database
            .rows
            .iter()
            .filter_map(|row| row.frozen_xid_age.max(row.frozen_multixact_age))
            .max()
            .map(wraparound_percent);
    }
    summary.replication_lag_bytes = replication.links.iter().filter_map(|link| link.replay_lag_bytes).max();
    summary.inactive_slots = replication
        .slots_collected_at_us
        .map(|_| replication.slots.iter().filter(|slot| !slot.active).count());
    // The size needs the ingester; the fleet shows without it.
    let sizes = ObjectsRequest {
        target: name.clone(),
        database: None,
        schema_name: None,
        kind: None,
        name_contains: None,
        order_by: ObjectOrder::TotalBytes,
        offset: 0,
        limit: 1,
    };
    if let Ok(reply) = state.ask(&sizes).await {
        summary.data_bytes = reply.collected_at_us.map(|_| reply.bytes_of_tables);
    }
    Ok(summary)
}

/// Why a kind is not sampled on a target that is up, from its newest status snapshot.
pub async fn limitation(state: &AppState, target: &TargetName, kind: SnapshotKind) -> Result<Option<String>, AppError> {
    let Some(AnySnapshot::Status(status)) = newest_sample(&state.jetstream, target, SnapshotKind::Status).await? else {
        return Ok(None);
    };
    Ok(status
        .rows
        .first()
        .and_then(|row| row.limitations.iter().find(|limitation| limitation.kind == kind))
        .map(|limitation| limitation.message.clone()))
}

/// `max_connections` of a target, from its newest database snapshot.
pub async fn max_connections(state: &AppState, target: &TargetName) -> Result<Option<i32>, AppError> {
    Ok(match newest_sample(&state.jetstream, target, SnapshotKind::Database).await? {
        Some(AnySnapshot::Database(snapshot)) => snapshot.instance.map(|instance| instance.max_connections),
        _ => None,
    })
}

/// The databases of a target, from its newest database snapshot.
pub async fn databases(state: &AppState, target: &TargetName) -> Result<Vec<String>, AppError> {
    Ok(match newest_sample(&state.jetstream, target, SnapshotKind::Database).await? {
        Some(AnySnapshot::Database(snapshot)) => snapshot.rows.into_iter().map(|row| row.database).collect(),
        _ => Vec::new(),
    })
}

/// Who blocks whom in the newest activity snapshot, with lock modes and objects from the
/// newest locks snapshot when it was taken at the same moment.
pub async fn current_blocking(state: &AppState, target: &TargetName) -> Result<CurrentBlocking, AppError> {
    let (activity, locks) = tokio::try_join!(
        newest_sample(&state.jetstream, target, SnapshotKind::Activity),
        newest_sample(&state.jetstream, target, SnapshotKind::Locks),
    )?;
    let Some(AnySnapshot::Activity(activity)) = activity else {
        return Ok(CurrentBlocking {
            collected_at_us: None,
            roots: Vec::new(),
        });
    };
    let awaited: HashMap<i32, (String, Option<i64>)> = match locks {
        Some(AnySnapshot::Locks(locks)) if (locks.collected_at_us - activity.collected_at_us).abs() <= 2_000_000 => locks
            .rows
            .iter()
            .filter(|row| !row.granted)
            .map(|row| {
                let object = row
                    .relation
                    .as_deref()
                    .map(|relation| format!("relation {relation}"))
                    .or_else(|| row.transaction_id.as_deref().map(|xid| format!("transaction {xid}")))
                    .or_else(|| row.virtual_xid.as_deref().map(|vxid| format!("virtual transaction {vxid}")))
                    .unwrap_or_else(|| row.lock_type.clone());
                (row.pid, (format!("{} on {object}", row.mode), row.waiting_since_us))
            })
            .collect(),
        _ => HashMap::new(),
    };
    let tree = pgmon_contract::event::blocking_tree_of_activity(&activity.rows);
    let rows: HashMap<i32, &pgmon_contract::event::ActivityRow> = activity.rows.iter().map(|row| (row.pid, row)).collect();
    let now_us = activity.collected_at_us;
    fn build(
        pid: i32,
        tree: &pgmon_contract::event::BlockingTree,
        rows: &HashMap<i32, &pgmon_contract::event::ActivityRow>,
        awaited: &HashMap<i32, (String, Option<i64>)>,
        now_us: i64,
        depth: usize,
    ) -> BlockingNode {
        let row = rows.get(&pid);
        let lock = awaited.get(&pid);
        let waits = tree.edges.iter().any(|(_, waiter)| *waiter == pid);
        let waiting_since = lock
            .and_then(|(_, since)| *since)
            .or_else(|| waits.then(|| row.and_then(|row| row.state_change_us)).flatten());
        BlockingNode {
            pid,
            backend_start_us: row.and_then(|row| row.backend_start_us),
            user: row.and_then(|row| row.user.clone()),
            database: row.and_then(|row| row.database.clone()),
            state: row.and_then(|row| row.state.clone()),
            query: row.and_then(|row| row.query.clone()),
            waiting_seconds: waiting_since.map(|since| (now_us - since).max(0) / 1_000_000),
            waiting_for: lock.map(|(description, _)| description.clone()),
            // A cycle (a deadlock about to be broken) must not recurse for ever.
            waiters: if depth > 32 {
                Vec::new()
            } else {
                tree.edges
                    .iter()
                    .filter(|(blocker, _)| *blocker == pid)
                    .map(|(_, waiter)| build(*waiter, tree, rows, awaited, now_us, depth + 1))
                    .collect()
            },
        }
    }
    let roots = tree
        .root_blockers
        .iter()
        .map(|pid| build(*pid, &tree, &rows, &awaited, now_us, 0))
        .collect();
    Ok(CurrentBlocking {
        collected_at_us: Some(activity.collected_at_us),
        roots,
    })
}

/// When the newest snapshot of `Row`'s kind of `target` was taken, and its rows (every part);
/// `None` and no rows when the target never sent one.
async fn newest_rows<Row: SnapshotRow + Clone>(state: &AppState, target: &TargetName) -> Result<(Option<i64>, Vec<Row>), AppError> {
    let newest = newest_sample(&state.jetstream, target, Row::KIND).await?;
    Ok(newest.as_ref().and_then(Row::of).map_or((None, Vec::new()), |snapshot| {
        (Some(snapshot.collected_at_us), snapshot.rows.clone())
    }))
}

/// The maintenance commands running on `target`, from its newest progress snapshot, and its
/// autovacuum workers from its newest database snapshot.
pub async fn running_maintenance(state: &AppState, target: &TargetName) -> Result<RunningMaintenance, AppError> {
    let ((collected_at_us, commands), database) = tokio::try_join!(
        newest_rows::<ProgressRow>(state, target),
        newest_sample(&state.jetstream, target, SnapshotKind::Database),
    )?;
    let autovacuum_max_workers = match database {
        Some(AnySnapshot::Database(snapshot)) => snapshot
            .instance
            .and_then(|instance| instance.settings.get("autovacuum_max_workers")?.parse().ok()),
        _ => None,
    };
    Ok(RunningMaintenance {
        collected_at_us,
        autovacuum_workers_busy: commands.iter().filter(|command| command.autovacuum).count(),
        autovacuum_max_workers,
        commands,
    })
}

/// The replication of `target` now, from its newest replication and slots snapshots.
pub async fn current_replication(state: &AppState, target: &TargetName) -> Result<CurrentReplication, AppError> {
    let ((collected_at_us, links), (slots_collected_at_us, slots)) =
        tokio::try_join!(newest_rows::<ReplicationRow>(state, target), newest_rows::<SlotRow>(state, target),)?;
    Ok(CurrentReplication {
        collected_at_us,
        links,
        slots_collected_at_us,
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgmon_contract::event::SnapshotPart;

    fn message(collected_at_us: i64, part: Option<(u32, u32)>) -> (SampleHead, bytes::Bytes) {
        let head = SampleHead {
            collected_at_us,
            part: part.map(|(index, count)| SnapshotPart { index, count }),
        };
        (head, bytes::Bytes::from(format!("{collected_at_us}/{part:?}")))
    }

    /// A message: its stream sequence, the collection time of its sample and which part it is.
    type Message = (u64, i64, Option<(u32, u32)>);

    fn read(messages: &[Message]) -> ReadMessages {
        messages
            .iter()
            .map(|(sequence, collected_at_us, part)| (*sequence, message(*collected_at_us, *part)))
            .collect()
    }

    #[test]
    fn the_newest_sample_with_every_part_is_found() {
        let messages = read(&[
            (10, 1, Some((0, 2))),
            (14, 1, Some((1, 2))),
            (20, 2, Some((0, 2))),
            (23, 2, Some((1, 2))),
        ]);
        let SampleSearch::Found(parts) = newest_complete_sample(&messages, false) else {
            panic!("not found")
        };
        assert_eq!(parts, vec![messages[&20].1.clone(), messages[&23].1.clone()]);
    }

    #[test]
    fn a_sample_still_arriving_gives_way_to_the_one_before() {
        let messages = read(&[
            (10, 1, Some((0, 2))),
            (14, 1, Some((1, 2))),
            (20, 2, Some((0, 3))),
            (23, 2, Some((1, 3))),
        ]);
        let SampleSearch::Found(parts) = newest_complete_sample(&messages, false) else {
            panic!("not found")
        };
        assert_eq!(parts, vec![messages[&10].1.clone(), messages[&14].1.clone()]);
    }

    #[test]
    fn the_oldest_sample_read_may_continue_further_back() {
        let messages = read(&[(20, 2, Some((1, 3))), (23, 2, Some((2, 3)))]);
        assert_eq!(newest_complete_sample(&messages, false), SampleSearch::ReadFurtherBack);
        assert_eq!(newest_complete_sample(&messages, true), SampleSearch::NoneInStream);
        let whole = read(&[(3, 1, None), (20, 2, Some((1, 3)))]);
        assert_eq!(
            newest_complete_sample(&whole, false),
            SampleSearch::Found(vec![whole[&3].1.clone()])
        );
    }
}
