//! NATS names: stream, subjects, message ids, KV bucket and the named-query subjects.

use crate::event::{SnapshotKind, SnapshotPart};
use crate::target::TargetName;

/// The JetStream stream holding every snapshot event.
pub const SNAPSHOT_STREAM: &str = "PGMON";
/// Subjects captured by [`SNAPSHOT_STREAM`].
pub const SNAPSHOT_SUBJECTS: &str = "pgmon.snap.>";
/// The stream holding events the ingester could not use, with the reason in a header.
pub const DEAD_LETTER_STREAM: &str = "PGMON_DEADLETTER";
/// Subjects captured by [`DEAD_LETTER_STREAM`].
pub const DEAD_LETTER_SUBJECTS: &str = "pgmon.deadletter.>";
/// The JetStream KV bucket holding the monitored targets.
pub const TARGETS_BUCKET: &str = "pgmon_targets";
/// The JetStream KV bucket where collectors announce themselves (`member.<id>`) and hold the
/// targets they sample (`lease.<target>`); entries expire unless renewed.
pub const COLLECTORS_BUCKET: &str = "pgmon_collectors";
/// The JetStream KV bucket of web users (argon2 password hashes and roles).
pub const USERS_BUCKET: &str = "pgmon_users";
/// The JetStream KV bucket of API tokens, keyed by the SHA-256 of the token.
pub const API_TOKENS_BUCKET: &str = "pgmon_api_tokens";
/// The JetStream KV bucket of signed-in web sessions, keyed by the SHA-256 of the session id;
/// entries expire after [`crate::nats_setup::SESSION_LIFETIME`].
pub const SESSIONS_BUCKET: &str = "pgmon_sessions";
/// The durable consumer through which ingesters read [`SNAPSHOT_STREAM`].
pub const INGESTER_CONSUMER: &str = "pgmon-ingester";
/// Queue group of the ingesters answering named queries, so each request gets one answer.
pub const QUERY_QUEUE_GROUP: &str = "pgmon-ingesters";
/// Header carrying why a message was dead-lettered.
pub const DEAD_LETTER_REASON_HEADER: &str = "Pgmon-Dead-Letter-Reason";
/// Header carrying the subject a dead-lettered message was published on.
pub const DEAD_LETTER_SUBJECT_HEADER: &str = "Pgmon-Original-Subject";
/// Header carrying the stream sequence a dead-lettered message had.
pub const DEAD_LETTER_SEQUENCE_HEADER: &str = "Pgmon-Original-Sequence";

/// `pgmon.snap.<target>.<kind>`: where one target's snapshots of one kind are published.
pub fn snapshot_subject(target: &TargetName, kind: SnapshotKind) -> String {
    format!("pgmon.snap.{target}.{}", kind.as_str())
}

/// Splits a snapshot subject into its target and kind tokens, without validating them.
pub fn parse_snapshot_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("pgmon.snap.")?;
    let (target, kind) = rest.split_once('.')?;
    (!kind.contains('.')).then_some((target, kind))
}

/// The `Nats-Msg-Id` of a snapshot (or of one part of a split snapshot): a retried publish of
/// the same snapshot carries the same id, so JetStream stores it once within the stream's
/// duplicate window.
pub fn snapshot_message_id(target: &TargetName, kind: SnapshotKind, collected_at_us: i64, part: Option<SnapshotPart>) -> String {
    match part {
        None => format!("{target}.{}.{collected_at_us}", kind.as_str()),
        Some(part) => format!("{target}.{}.{collected_at_us}.{}of{}", kind.as_str(), part.index + 1, part.count),
    }
}

/// Where the ingester republishes a snapshot it could not use.
pub fn dead_letter_subject(original_subject: &str) -> String {
    match parse_snapshot_subject(original_subject) {
        Some((target, kind)) if is_subject_token(target) && is_subject_token(kind) => {
            format!("pgmon.deadletter.{target}.{kind}")
        }
        _ => "pgmon.deadletter.unknown".to_owned(),
    }
}

fn is_subject_token(token: &str) -> bool {
    !token.is_empty() && !token.contains(['*', '>', ' '])
}

/// All snapshot subjects of one target: what an ingester that owns the target consumes.
pub fn target_snapshot_subjects(target: &TargetName) -> String {
    format!("pgmon.snap.{target}.*")
}

/// Subject of a named query about one target: only the ingesters that store that target
/// listen on it, so a request reaches the owner. `query_subject("*", ">")` matches them all.
pub fn query_subject(query_name: &str, target: &str) -> String {
    format!("pgmon.query.{query_name}.{target}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_message_id_name_target_kind_and_time() {
        let target: TargetName = "prod-db1".parse().unwrap();
        assert_eq!(snapshot_subject(&target, SnapshotKind::Activity), "pgmon.snap.prod-db1.activity");
        assert_eq!(
            snapshot_message_id(&target, SnapshotKind::Activity, 1_700_000_000_000_001, None),
            "prod-db1.activity.1700000000000001"
        );
    }

    #[test]
    fn parses_snapshot_subjects() {
        assert_eq!(parse_snapshot_subject("pgmon.snap.a.activity"), Some(("a", "activity")));
        assert_eq!(parse_snapshot_subject("pgmon.snap.a"), None);
        assert_eq!(parse_snapshot_subject("pgmon.snap.a.b.c"), None);
        assert_eq!(parse_snapshot_subject("other.a.b"), None);
    }

    #[test]
    fn dead_letter_subject_keeps_target_and_kind_when_it_can() {
        assert_eq!(dead_letter_subject("pgmon.snap.a.activity"), "pgmon.deadletter.a.activity");
        assert_eq!(dead_letter_subject("pgmon.snap.a.b.c"), "pgmon.deadletter.unknown");
    }
}
