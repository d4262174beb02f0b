//! Alerts: the state the alerter keeps of each rule on each target, and the notification every
//! receiver gets (the body of the generic webhook, documented by `schema/alert-notification-v1.schema.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::target::TargetName;

/// The version of [`AlertNotification`]; a receiver can refuse what it does not know.
pub const NOTIFICATION_SCHEMA_VERSION: u32 = 1;

/// How bad an alert is, as the rule says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Where a rule stands on one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertPhase {
    /// The condition does not hold.
    Inactive,
    /// The condition holds, for less than the rule's `for`.
    Pending,
    /// The condition has held for the rule's `for`; a firing notification went out.
    Firing,
    /// Firing, and the condition has not held for less than the rule's `resolve_for`.
    Resolving,
}

impl AlertPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertPhase::Inactive => "inactive",
            AlertPhase::Pending => "pending",
            AlertPhase::Firing => "firing",
            AlertPhase::Resolving => "resolving",
        }
    }
}

/// What a notification says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The alert started firing.
    Firing,
    /// The alert still fires; sent every `repeat_every` of the rule.
    Repeat,
    /// The alert stopped firing.
    Resolved,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Repeat => "repeat",
            NotificationKind::Resolved => "resolved",
        }
    }
}

/// A page of pgmon about the alert, at its moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct AlertLink {
    pub title: String,
    pub url: String,
}

/// One notification of one alert transition: the generic webhook's JSON body, and what the
/// other receivers are told in their own formats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct AlertNotification {
    pub schema_version: u32,
    /// Unique per transition (`<rule>.<target>.<episode>.<kind>`, a repeat adds its time): a
    /// receiver that gets the same id twice (a delivery retried after its answer was lost) can
    /// drop the second.
    pub id: String,
    pub kind: NotificationKind,
    pub rule: String,
    pub severity: Severity,
    pub target: TargetName,
    /// The target's labels in the registry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What holds, for people: "4 sessions wait for locks (rule: at least 3)".
    pub summary: String,
    /// The value the condition measured at this transition, in the unit of its threshold.
    pub value: f64,
    /// The rule's threshold the value is compared with.
    pub threshold: f64,
    /// The statement the alert is about (`pg_stat_statements.queryid`), for statement regressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<i64>,
    /// Since when the alert has been firing (microseconds since the Unix epoch, UTC).
    pub firing_since_us: i64,
    /// When this transition happened, in the time of the samples (microseconds since the Unix epoch, UTC).
    pub at_us: i64,
    /// For a firing or repeat notification: when to take the alert as over if no repeat came
    /// (twice the rule's repeat interval after this one), as Alertmanager's `endsAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_us: Option<i64>,
    /// Pages of pgmon at the alert's moment: activity, blocking, the statement.
    #[serde(default)]
    pub links: Vec<AlertLink>,
    /// The silence that kept this transition from the receivers (it is recorded, not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<Silence>,
}

/// A silence: transitions of a rule (or all rules) on a target (or all targets) are recorded
/// but not sent until `until_us`. Kept in the silences bucket under its `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct Silence {
    pub id: String,
    /// The rule silenced; every rule when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The target silenced; every target when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetName>,
    /// Until when (microseconds since the Unix epoch, UTC).
    pub until_us: i64,
    pub reason: String,
    /// The user who set it.
    pub created_by: String,
    pub created_at_us: i64,
}

impl Silence {
    /// Whether this silence keeps a transition of `rule` on `target` at `at_us` from receivers.
    pub fn covers(&self, rule: &str, target: &TargetName, at_us: i64) -> bool {
        at_us >= self.created_at_us
            && at_us < self.until_us
            && self.rule.as_deref().is_none_or(|silenced| silenced == rule)
            && self.target.as_ref().is_none_or(|silenced| silenced == target)
    }
}

/// The alerter's record of one rule on one target, kept in the alert-state bucket under
/// `<rule>.<target>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct AlertState {
    pub rule: String,
    pub target: TargetName,
    pub phase: AlertPhase,
    /// Since when the phase has held (microseconds since the Unix epoch, in sample time).
    pub since_us: i64,
    /// When the alert last started firing; kept through resolving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_since_us: Option<i64>,
    /// When the last firing or repeat notification went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at_us: Option<i64>,
    /// Counts the times the alert fired: it makes each transition's notification id unique.
    pub episode: u64,
    /// The sample time of the last evaluation that changed this record: an alerter holding an
    /// older sample (a replica behind, a restart replaying) leaves the record alone.
    pub evaluated_at_us: i64,
    pub value: f64,
    pub summary: String,
    /// The statement the alert is about (statement regressions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<i64>,
    /// A transition recorded but not yet published: whoever reads the record next publishes
    /// it (the stream drops a repeat by its id) and clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<PendingTransition>,
}

/// A transition waiting in [`AlertState::outbox`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct PendingTransition {
    pub kind: NotificationKind,
    pub at_us: i64,
}

/// The JSON Schema of [`AlertNotification`], the generic webhook's body
/// (`schema/alert-notification-v1.schema.json`).
pub fn notification_json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(AlertNotification)).expect("schemas always serialise")
}
