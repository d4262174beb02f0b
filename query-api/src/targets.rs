//! What the stream knows about targets right now: which have snapshots, and their newest one.

use std::time::{Duration, UNIX_EPOCH};

use async_nats::jetstream;
use futures::TryStreamExt;
use pgmon_common::event::{decode_snapshot, AnySnapshot, SnapshotKind};
use pgmon_common::subjects::{parse_snapshot_subject, snapshot_subject, SNAPSHOT_STREAM};
use pgmon_common::target::TargetName;
use pgmon_ui::components::TargetSummary;

use crate::error::AppError;

/// Every target with activity snapshots in the stream, with its newest snapshot read by direct get.
pub async fn target_summaries(jetstream: &jetstream::Context) -> Result<Vec<TargetSummary>, AppError> {
    let stream = jetstream
        .get_stream(SNAPSHOT_STREAM)
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot read the snapshot stream: {e}")))?;
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("pgmon.snap.*.{}", SnapshotKind::Activity.as_str()))
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot list targets: {e}")))?
        .try_collect()
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot list targets: {e}")))?;
    let mut summaries = Vec::with_capacity(subjects.len());
    for (subject, snapshots) in subjects {
        let Some(name) = parse_snapshot_subject(&subject).and_then(|(target, _)| target.parse::<TargetName>().ok()) else {
            continue;
        };
        let newest = newest_activity(&stream, &name).await;
        summaries.push(TargetSummary {
            name: name.to_string(),
            snapshots,
            last_sample: newest.as_ref().map(|(collected_at_us, _)| format_time(*collected_at_us)),
            active_sessions_now: newest.map(|(_, active)| active),
        });
    }
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(summaries)
}

/// The newest activity snapshot's time and count of active client sessions, if readable.
async fn newest_activity(stream: &jetstream::stream::Stream, target: &TargetName) -> Option<(i64, usize)> {
    let message = stream
        .direct_get_last_for_subject(snapshot_subject(target, SnapshotKind::Activity))
        .await
        .ok()?;
    let Ok(AnySnapshot::Activity(snapshot)) = decode_snapshot(&message.payload) else {
        return None;
    };
    let active = snapshot
        .rows
        .iter()
        .filter(|row| row.state.as_deref() == Some("active") && row.backend_type.as_deref() == Some("client backend"))
        .count();
    Some((snapshot.collected_at_us, active))
}

/// Formats microseconds since the epoch as RFC 3339 (UTC, seconds).
pub fn format_time(unix_us: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_micros(u64::try_from(unix_us).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}
