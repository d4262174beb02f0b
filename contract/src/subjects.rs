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
/// The JetStream stream of alerts: transitions (`pgmon.alert.event.<target>.<rule>`), one
/// delivery per receiver (`pgmon.alert.deliver.<receiver>`) and the deliveries given up on
/// (`pgmon.alert.undeliverable.<receiver>`).
pub const ALERT_STREAM: &str = "PGMON_ALERTS";
/// Subjects captured by [`ALERT_STREAM`].
pub const ALERT_SUBJECTS: &str = "pgmon.alert.>";
/// The JetStream KV bucket of alert rules (`<rule>`), seeded from the alerts file.
pub const ALERT_RULES_BUCKET: &str = "pgmon_alert_rules";
/// The key of [`ALERT_RULES_BUCKET`] where alerters list the receivers of their alerts files,
/// so the web can check a rule's receivers; no rule name holds a dot.
pub const KNOWN_RECEIVERS_KEY: &str = "receivers.known";
/// The JetStream KV bucket of silences (`<id>`).
pub const ALERT_SILENCES_BUCKET: &str = "pgmon_alert_silences";
/// The JetStream KV bucket of where each rule stands on each target (`<rule>.<target>`).
pub const ALERT_STATE_BUCKET: &str = "pgmon_alert_state";
/// The durable consumer through which alerters deliver notifications, shared by every alerter
/// so that each delivery is attempted by one of them.
pub const NOTIFIER_CONSUMER: &str = "pgmon-notifier";
/// Header carrying why a delivery was given up.
pub const UNDELIVERABLE_REASON_HEADER: &str = "Pgmon-Undeliverable-Reason";

/// `pgmon.alert.event.<target>.<rule>`: the transitions of one rule on one target.
pub fn alert_event_subject(target: &TargetName, rule: &str) -> String {
    format!("pgmon.alert.event.{target}.{rule}")
}

/// `pgmon.alert.deliver.<receiver>`: notifications waiting for delivery to one receiver.
pub fn alert_delivery_subject(receiver: &str) -> String {
    format!("pgmon.alert.deliver.{receiver}")
}

/// `pgmon.alert.undeliverable.<receiver>`: notifications one receiver never took.
pub fn alert_undeliverable_subject(receiver: &str) -> String {
    format!("pgmon.alert.undeliverable.{receiver}")
}

/// The key of one rule on one target in [`ALERT_STATE_BUCKET`].
pub fn alert_state_key(rule: &str, target: &TargetName) -> String {
    format!("{rule}.{target}")
}

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
