//! `pgmon replay`: prints the snapshot events of a time window as JSON lines, exactly as they
//! sit in the stream, for `jq`, scripts and other tools.

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use async_nats::jetstream::consumer::{self, DeliverPolicy};
use clap::Args;
use futures::StreamExt;
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{connect_jetstream_as_tool, NatsArgs};
use pgmon_contract::event::SnapshotKind;
use pgmon_contract::subjects::{snapshot_subject, SNAPSHOT_STREAM, SNAPSHOT_SUBJECTS};
use pgmon_contract::target::TargetName;

/// After this long without a message the window is taken as read to the stream's end.
const QUIET_END: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Only this target's snapshots (default: every target)
    #[arg(long, env = "PGMON_REPLAY_TARGET")]
    target: Option<TargetName>,
    /// Only this kind: activity, locks, database, status, statements or objects (default: all)
    #[arg(long, env = "PGMON_REPLAY_KIND", value_parser = parse_kind)]
    kind: Option<SnapshotKind>,
    /// Start of the window: a UTC time (2026-11-27T10:00:00Z) or an age (15m, 2h); default:
    /// the stream's first event. Times are when NATS stored the event: the collection time,
    /// except for snapshots held back while NATS was unreachable
    #[arg(long, env = "PGMON_REPLAY_SINCE", value_parser = parse_moment)]
    since: Option<SystemTime>,
    /// End of the window (same forms); default: the stream's last event when replay starts
    #[arg(long, env = "PGMON_REPLAY_UNTIL", value_parser = parse_moment)]
    until: Option<SystemTime>,
}

fn parse_kind(name: &str) -> Result<SnapshotKind, String> {
    SnapshotKind::from_name(name).ok_or_else(|| {
        let kinds: Vec<&str> = SnapshotKind::ALL.iter().map(|kind| kind.as_str()).collect();
        format!("unknown kind {name:?}; kinds are {}", kinds.join(", "))
    })
}

/// A UTC time in RFC 3339, or an age before now.
fn parse_moment(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        let micros = u64::try_from(at.timestamp_micros()).map_err(|_| format!("{text} is before 1970"))?;
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_micros(micros));
    }
    let age = humantime::parse_duration(text)
        .map_err(|_| format!("{text:?} is neither a UTC time like 2026-11-27T10:00:00Z nor an age like 15m"))?;
    SystemTime::now()
        .checked_sub(age)
        .ok_or_else(|| format!("{text} reaches before 1970"))
}

/// Writes the window's events to `out`, one JSON document per line; returns how many.
pub async fn run(nats: NatsArgs, args: ReplayArgs, out: &mut impl Write) -> anyhow::Result<u64> {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        anyhow::ensure!(since <= until, "--since is after --until");
    }
    let jetstream = connect_jetstream_as_tool(&nats, NatsRole::Reader).await?;
    let stream = jetstream
        .get_stream(SNAPSHOT_STREAM)
        .await
        .context("cannot open the snapshot stream")?;
    let filter_subject = match (&args.target, args.kind) {
        (Some(target), Some(kind)) => snapshot_subject(target, kind),
        (Some(target), None) => format!("pgmon.snap.{target}.*"),
        (None, Some(kind)) => format!("pgmon.snap.*.{}", kind.as_str()),
        (None, None) => SNAPSHOT_SUBJECTS.to_owned(),
    };
    let deliver_policy = match args.since {
        Some(since) => DeliverPolicy::ByStartTime {
            start_time: offset_date_time(since)?,
        },
        None => DeliverPolicy::All,
    };
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject,
            deliver_policy,
            ..Default::default()
        })
        .await
        .context("cannot read the snapshot stream")?;
    let until = args.until.map(offset_date_time).transpose()?;
    let mut messages = reader.messages().await.context("cannot read the snapshot stream")?;
    let mut printed = 0;
    while let Ok(Some(message)) = tokio::time::timeout(QUIET_END, messages.next()).await {
        let message = message.context("reading the snapshot stream failed")?;
        let info = message
            .info()
            .map_err(|error| anyhow::anyhow!("message without stream metadata: {error}"))?;
        if until.is_some_and(|until| info.published > until) {
            break;
        }
        out.write_all(&message.payload).context("cannot write the events")?;
        out.write_all(b"\n").context("cannot write the events")?;
        printed += 1;
        if info.pending == 0 {
            break;
        }
    }
    out.flush().context("cannot write the events")?;
    Ok(printed)
}

fn offset_date_time(at: SystemTime) -> anyhow::Result<time::OffsetDateTime> {
    let nanos = at.duration_since(SystemTime::UNIX_EPOCH).context("a time before 1970")?.as_nanos();
    Ok(time::OffsetDateTime::from_unix_timestamp_nanos(i128::try_from(nanos)?)?)
}
