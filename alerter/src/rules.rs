//! The alerts file (`--alerts-file`, TOML): receivers and rules, read and checked so that every
//! mistake is reported with the field it is in.
//!
//! Rules go to the rules bucket, where admins edit them; receivers stay in the file, since they
//! name where secrets are (a webhook's signing key, an SMTP password) and those belong to the
//! operator's deployment, not to a web form.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgmon_contract::alert::Severity;
use serde::{Deserialize, Serialize};

/// A duration written as people write it: "30s", "5m", "1h 30m".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct RuleDuration(pub Duration);

impl Serialize for RuleDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for RuleDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(RuleDuration)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration such as \"30s\" or \"5m\": {e}")))
    }
}

impl RuleDuration {
    pub fn as_us(self) -> i64 {
        i64::try_from(self.0.as_micros()).unwrap_or(i64::MAX)
    }
}

/// What a rule watches. Each condition is measured on every sample of the kinds it reads; the
/// value it measures is compared with its threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The collector cannot sample the target (any reason: unreachable, authentication, …), or
    /// no sample of the target arrived for `silent_for` (default 2 minutes: the collector is
    /// gone or cannot publish).
    TargetDown {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        silent_for: Option<RuleDuration>,
    },
    /// Active sessions above `above` on average over `window` (default 1 minute); only those
    /// waiting on `wait_event_type` (and `wait_event`) when given ("CPU" for those not waiting).
    Aas {
        above: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_event_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_event: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<RuleDuration>,
    },
    /// At least `sessions` sessions wait for a lock, or one has waited longer than `longest`.
    LockWaits {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sessions: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        longest: Option<RuleDuration>,
    },
    /// At least `sessions` (default 1) sessions idle in a transaction longer than `longer_than`.
    IdleInTransaction {
        longer_than: RuleDuration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sessions: Option<u32>,
    },
    /// Connections as a percentage of max_connections above `above`.
    ConnectionsPercent { above: f64 },
    /// A standby's replay lag above `bytes_above` bytes or `seconds_above` seconds, seen from the
    /// primary or on the standby itself.
    ReplicationLag {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes_above: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds_above: Option<f64>,
    },
    /// A replication slot holding back more than `bytes_above` bytes of WAL.
    SlotRetainedWal { bytes_above: u64 },
    /// The oldest transaction or multixact ID of a database past `above` percent of the way to
    /// wraparound (2^31).
    WraparoundPercent { above: f64 },
    /// A table with more than `above` dead tuples; with `overdue` (the default), only one past
    /// the threshold at which autovacuum should have vacuumed it. Read in the objects round.
    DeadTuples {
        above: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overdue: Option<bool>,
    },
    /// A table (or, with `databases = true`, a whole database) that reaches `reaches_bytes`
    /// within `within`, at the rate it grew over the last `over` (default 7 days, least
    /// squares), or has reached it. Asked of the ingester's history in the objects round.
    SizeForecast {
        reaches_bytes: u64,
        within: RuleDuration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        over: Option<RuleDuration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        databases: Option<bool>,
    },
    /// A statement whose mean time over the last `window` (default 15 minutes) is at least
    /// `factor` times its own mean over the `baseline` before it (default 7 days), with at least
    /// `min_calls` calls (default 20) in each. Asked of the ingester's history at most once a
    /// minute of samples.
    StatementRegression {
        factor: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<RuleDuration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline: Option<RuleDuration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_calls: Option<u32>,
    },
}

impl Condition {
    /// The condition as the alerts file writes it after `when.`: `lock_waits = { sessions = 3 }`.
    pub fn as_toml(&self) -> String {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => table
                .iter()
                .map(|(name, settings)| format!("{name} = {settings}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => self.name().to_owned(),
        }
    }

    /// The condition's name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            Condition::TargetDown { .. } => "target_down",
            Condition::Aas { .. } => "aas",
            Condition::LockWaits { .. } => "lock_waits",
            Condition::IdleInTransaction { .. } => "idle_in_transaction",
            Condition::ConnectionsPercent { .. } => "connections_percent",
            Condition::ReplicationLag { .. } => "replication_lag",
            Condition::SlotRetainedWal { .. } => "slot_retained_wal",
            Condition::WraparoundPercent { .. } => "wraparound_percent",
            Condition::StatementRegression { .. } => "statement_regression",
            Condition::DeadTuples { .. } => "dead_tuples",
            Condition::SizeForecast { .. } => "size_forecast",
        }
    }
}

/// Which targets a rule applies to: all of them, unless names or labels are given (then a
/// target must be named, and carry every label given).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl TargetSelector {
    pub fn matches(&self, target: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.names.is_empty() || self.names.iter().any(|name| name == target))
            && self.labels.iter().all(|(key, value)| labels.get(key) == Some(value))
    }
}

/// One alerting rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Lowercase letters, digits, `_` and `-`: it is part of NATS subjects and keys.
    pub name: String,
    pub when: Condition,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for", default)]
    pub for_duration: RuleDuration,
    /// How long the condition must not hold before a firing alert resolves; the same as `for`
    /// when not given, so an alert does not flap around its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_for: Option<RuleDuration>,
    /// How often a notification repeats while the alert fires (default 4 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_every: Option<RuleDuration>,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub targets: TargetSelector,
    /// The receivers (by name) notified of this rule's alerts.
    pub receivers: Vec<String>,
    /// Shown with the alert: what to check first, a runbook's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// How often a firing alert is repeated when its rule does not say.
pub const DEFAULT_REPEAT_EVERY: Duration = Duration::from_secs(4 * 3600);

impl Rule {
    pub fn resolve_for(&self) -> RuleDuration {
        self.resolve_for.unwrap_or(self.for_duration)
    }

    pub fn repeat_every(&self) -> RuleDuration {
        self.repeat_every.unwrap_or(RuleDuration(DEFAULT_REPEAT_EVERY))
    }
}

/// Where notifications go, each kind with its settings. Secrets are read from files (`*_file`),
/// so the alerts file itself holds none.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Receiver {
    /// A POST of the notification as JSON (`contract/schema/alert-notification-v1.schema.json`),
    /// signed with HMAC-SHA256 of the body under the key in `secret_file`
    /// (`Pgmon-Signature: sha256=<hex>`).
    Webhook {
        name: String,
        url: String,
        #[serde(default)]
        secret_file: Option<PathBuf>,
    },
    /// A Slack-compatible incoming webhook; its address is a secret, read from `url_file`.
    Slack { name: String, url_file: PathBuf },
    /// Email over SMTP: STARTTLS on port 587 unless `tls` says otherwise, signed in with
    /// `username` and the password in `password_file` when given.
    Email {
        name: String,
        smtp_host: String,
        #[serde(default)]
        smtp_port: Option<u16>,
        #[serde(default)]
        tls: SmtpTls,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password_file: Option<PathBuf>,
        /// A CA certificate (PEM) to trust for the SMTP server, beside the system's.
        #[serde(default)]
        ca_file: Option<PathBuf>,
        from: String,
        to: Vec<String>,
    },
    /// A Prometheus Alertmanager (its v2 API, `<url>/api/v2/alerts`), so alerts follow the
    /// routes, silences and inhibitions a team already has there.
    Alertmanager { name: String, url: String },
}

/// How an email receiver secures its SMTP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on the same host; a password is never sent this way.
    None,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

impl Receiver {
    /// Lowercase letters, digits, `_` and `-`: it is part of NATS subjects.
    pub fn name(&self) -> &str {
        match self {
            Receiver::Webhook { name, .. }
            | Receiver::Slack { name, .. }
            | Receiver::Email { name, .. }
            | Receiver::Alertmanager { name, .. } => name,
        }
    }
}

/// The alerts file as read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    #[serde(default)]
    pub receiver: Vec<Receiver>,
    #[serde(default)]
    pub rule: Vec<Rule>,
}

/// What is wrong with an alerts file or a rule: the field, and what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read the alerts file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {problems}")]
    Invalid { path: PathBuf, problems: Problems },
}

/// Every problem found, one per line, each starting with the field it is in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl std::fmt::Display for Problems {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.len() == 1 {
            return formatter.write_str(&self.0[0]);
        }
        write!(formatter, "{} problems:", self.0.len())?;
        for problem in &self.0 {
            write!(formatter, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Reads and checks an alerts file.
pub fn read_alerts_file(path: &Path) -> Result<AlertsFile, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_alerts_file(&text).map_err(|error| match error {
        ParseError::Syntax(message) => RulesError::Syntax {
            path: path.to_owned(),
            message,
        },
        ParseError::Invalid(problems) => RulesError::Invalid {
            path: path.to_owned(),
            problems,
        },
    })
}

/// Why a text is not a usable alerts file.
#[derive(Debug)]
pub enum ParseError {
    /// Not TOML, an unknown field, a wrong type: toml's message, with line, column and field.
    Syntax(String),
    Invalid(Problems),
}

/// Parses and checks the text of an alerts file.
pub fn parse_alerts_file(text: &str) -> Result<AlertsFile, ParseError> {
    let file: AlertsFile = toml::from_str(text).map_err(|e| ParseError::Syntax(e.to_string().trim_end().to_owned()))?;
    let mut problems = Problems::default();
    let mut receiver_names = BTreeSet::new();
    for (index, receiver) in file.receiver.iter().enumerate() {
        let field = format!("receiver[{index}]");
        if let Some(problem) = name_problem(receiver.name()) {
            problems.0.push(format!("{field}.name: {problem}"));
        }
        if !receiver_names.insert(receiver.name()) {
            problems
                .0
                .push(format!("{field}.name: {:?} is the name of an earlier receiver", receiver.name()));
        }
        problems
            .0
            .extend(receiver_problems(receiver).into_iter().map(|problem| format!("{field}.{problem}")));
    }
    let mut rule_names = BTreeSet::new();
    for (index, rule) in file.rule.iter().enumerate() {
        let field = format!("rule[{index}]");
        for problem in rule_problems(rule, &receiver_names) {
            problems.0.push(format!("{field}.{problem}"));
        }
        if !rule_names.insert(rule.name.as_str()) {
            problems
                .0
                .push(format!("{field}.name: {:?} is the name of an earlier rule", rule.name));
        }
    }
    if problems.0.is_empty() {
        Ok(file)
    } else {
        Err(ParseError::Invalid(problems))
    }
}

/// What is wrong with one rule, each problem starting with its field; `receivers` are the
/// names a rule may send to.
pub fn rule_problems(rule: &Rule, receivers: &BTreeSet<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(problem) = name_problem(&rule.name) {
        problems.push(format!("name: {problem}"));
    }
    let condition = format!("when.{}", rule.when.name());
    let positive = |field: &str, value: f64| {
        (!(value.is_finite() && value > 0.0)).then(|| format!("{condition}.{field}: must be a number above 0, not {value}"))
    };
    match &rule.when {
        Condition::TargetDown { silent_for } => {
            if silent_for.is_some_and(|silent| silent.0 < Duration::from_secs(10)) {
                problems.push(format!("{condition}.silent_for: must be at least 10s"));
            }
        }
        Condition::Aas {
            above,
            wait_event,
            wait_event_type,
            window,
        } => {
            problems.extend(positive("above", *above));
            if wait_event.is_some() && wait_event_type.is_none() {
                problems.push(format!(
                    "{condition}.wait_event: give wait_event_type too (the same event name exists in several types)"
                ));
            }
            if window.is_some_and(|window| window.0 < Duration::from_secs(1)) {
                problems.push(format!("{condition}.window: must be at least 1s"));
            }
        }
        Condition::LockWaits { sessions, longest } => {
            if sessions.is_none() && longest.is_none() {
                problems.push(format!(
                    "{condition}: give sessions (how many waiting) or longest (how long one waits)"
                ));
            }
            if *sessions == Some(0) {
                problems.push(format!("{condition}.sessions: must be at least 1"));
            }
        }
        Condition::IdleInTransaction { sessions, .. } => {
            if *sessions == Some(0) {
                problems.push(format!("{condition}.sessions: must be at least 1"));
            }
        }
        Condition::ConnectionsPercent { above } | Condition::WraparoundPercent { above } => {
            if !(above.is_finite() && *above > 0.0 && *above < 100.0) {
                problems.push(format!("{condition}.above: must be a percentage between 0 and 100, not {above}"));
            }
        }
        Condition::ReplicationLag {
            bytes_above,
            seconds_above,
        } => {
            if bytes_above.is_none() && seconds_above.is_none() {
                problems.push(format!("{condition}: give bytes_above or seconds_above"));
            }
            if let Some(seconds) = seconds_above {
                problems.extend(positive("seconds_above", *seconds));
            }
        }
        Condition::SlotRetainedWal { .. } | Condition::DeadTuples { .. } => {}
        Condition::SizeForecast {
            reaches_bytes,
            within,
            over,
            ..
        } => {
            if *reaches_bytes == 0 {
                problems.push(format!("{condition}.reaches_bytes: must be above 0"));
            }
            if within.0 < Duration::from_secs(3600) {
                problems.push(format!("{condition}.within: must be at least 1h"));
            }
            if over.is_some_and(|over| over.0 < Duration::from_secs(60) || over.0 > Duration::from_secs(30 * 24 * 3600)) {
                problems.push(format!("{condition}.over: must be from 1m to 30 days"));
            }
        }
        Condition::StatementRegression {
            factor,
            window,
            baseline,
            min_calls,
        } => {
            if !(factor.is_finite() && *factor > 1.0) {
                problems.push(format!(
                    "{condition}.factor: must be a number above 1 (how many times slower), not {factor}"
                ));
            }
            let (window, baseline) = regression_windows(window, baseline);
            if window < Duration::from_secs(10) {
                problems.push(format!("{condition}.window: must be at least 10s"));
            }
            if baseline <= window {
                problems.push(format!("{condition}.baseline: must be longer than the window"));
            }
            if baseline > Duration::from_secs(30 * 24 * 3600) {
                problems.push(format!("{condition}.baseline: must be at most 30 days"));
            }
            if *min_calls == Some(0) {
                problems.push(format!("{condition}.min_calls: must be at least 1"));
            }
        }
    }
    if rule.receivers.is_empty() {
        problems.push("receivers: name at least one receiver".to_owned());
    }
    for (index, receiver) in rule.receivers.iter().enumerate() {
        if !receivers.contains(receiver.as_str()) {
            let known: Vec<&str> = receivers.iter().copied().collect();
            problems.push(format!(
                "receivers[{index}]: no receiver is named {receiver:?} (receivers: {})",
                known.join(", ")
            ));
        }
    }
    if rule.repeat_every.is_some_and(|every| every.0 < Duration::from_secs(60)) {
        problems.push("repeat_every: must be at least 1m".to_owned());
    }
    for (index, name) in rule.targets.names.iter().enumerate() {
        if name.parse::<pgmon_contract::target::TargetName>().is_err() {
            problems.push(format!("targets.names[{index}]: {name:?} is not a target name"));
        }
    }
    problems
}

/// What is wrong with a receiver's settings, each problem starting with its field.
fn receiver_problems(receiver: &Receiver) -> Vec<String> {
    let mut problems = Vec::new();
    match receiver {
        Receiver::Webhook { url, .. } | Receiver::Alertmanager { url, .. } => {
            problems.extend(url_problem(url).map(|problem| format!("url: {problem}")));
        }
        Receiver::Slack { .. } => {}
        Receiver::Email {
            smtp_host,
            tls,
            username,
            password_file,
            from,
            to,
            ..
        } => {
            if smtp_host.is_empty() {
                problems.push("smtp_host: give the SMTP server's host name".to_owned());
            }
            if username.is_some() != password_file.is_some() {
                problems.push("password_file: give both username and password_file, or neither".to_owned());
            }
            if *tls == SmtpTls::None && password_file.is_some() {
                problems.push("tls: a password is never sent without TLS; use starttls or tls".to_owned());
            }
            if *tls == SmtpTls::None && !matches!(smtp_host.as_str(), "localhost" | "127.0.0.1" | "::1") {
                problems.push(format!("tls: \"none\" is only for a relay on this host, not {smtp_host:?}"));
            }
            if let Err(e) = from.parse::<lettre::message::Mailbox>() {
                problems.push(format!("from: {from:?} is not an email address: {e}"));
            }
            if to.is_empty() {
                problems.push("to: give at least one address".to_owned());
            }
            for (index, address) in to.iter().enumerate() {
                if let Err(e) = address.parse::<lettre::message::Mailbox>() {
                    problems.push(format!("to[{index}]: {address:?} is not an email address: {e}"));
                }
            }
        }
    }
    problems
}

/// How long a target may send nothing before `target_down` takes it as down, by default.
pub const DEFAULT_SILENT_FOR: Duration = Duration::from_secs(120);

/// The recent window and the baseline of a regression condition, with their defaults.
pub fn regression_windows(window: &Option<RuleDuration>, baseline: &Option<RuleDuration>) -> (Duration, Duration) {
    (
        window.map_or(Duration::from_secs(15 * 60), |window| window.0),
        baseline.map_or(Duration::from_secs(7 * 24 * 3600), |baseline| baseline.0),
    )
}

fn name_problem(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Some(format!(
            "{name:?} must be 1 to 64 lowercase letters, digits, '_' or '-' (it becomes part of NATS subjects)"
        ));
    }
    None
}

fn url_problem(url: &str) -> Option<String> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => None,
        Ok(parsed) => Some(format!("{url:?} is a {} address; give an http or https one", parsed.scheme())),
        Err(e) => Some(format!("{url:?} is not an address: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[receiver]]
name = "ops"
type = "webhook"
url = "http://127.0.0.1:9/hook"

[[rule]]
name = "lock-pileup"
when.lock_waits = { sessions = 3 }
for = "30s"
receivers = ["ops"]
targets.labels = { env = "prod" }
"#;

    fn problems_of(text: &str) -> String {
        match parse_alerts_file(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(ParseError::Syntax(message)) => message,
            Err(ParseError::Invalid(problems)) => problems.to_string(),
        }
    }

    #[test]
    fn a_good_file_reads_with_its_defaults() {
        let file = parse_alerts_file(GOOD).unwrap();
        let rule = &file.rule[0];
        assert_eq!(
            rule.when,
            Condition::LockWaits {
                sessions: Some(3),
                longest: None
            }
        );
        assert_eq!(rule.for_duration.0, Duration::from_secs(30));
        assert_eq!(rule.resolve_for().0, Duration::from_secs(30), "resolve_for defaults to for");
        assert_eq!(rule.repeat_every().0, DEFAULT_REPEAT_EVERY);
        assert_eq!(rule.severity, Severity::Warning);
        assert!(rule.targets.matches("db", &BTreeMap::from([("env".to_owned(), "prod".to_owned())])));
        assert!(!rule.targets.matches("db", &BTreeMap::new()));
    }

    #[test]
    fn rules_write_back_as_the_file_writes_them() {
        let file = parse_alerts_file(GOOD).unwrap();
        let rule = &file.rule[0];
        assert_eq!(rule.when.as_toml(), "lock_waits = { sessions = 3 }");
        let written = toml::to_string(rule).unwrap();
        assert_eq!(toml::from_str::<Rule>(&written).unwrap(), *rule, "{written}");
    }

    #[test]
    fn every_mistake_names_its_field() {
        let cases = [
            (GOOD.replace("sessions = 3", "sesions = 3"), "sesions"),
            (GOOD.replace("for = \"30s\"", "for = \"30 parsecs\""), "for"),
            (GOOD.replace("lock_waits", "lock_wait"), "lock_wait"),
            (GOOD.replace("receivers = [\"ops\"]", "receivers = [\"pager\"]"), "rule[0].receivers[0]: no receiver is named \"pager\""),
            (GOOD.replace("sessions = 3", "sessions = 0"), "rule[0].when.lock_waits.sessions: must be at least 1"),
            (GOOD.replace("{ sessions = 3 }", "{}"), "rule[0].when.lock_waits: give sessions"),
            (GOOD.replace("name = \"lock-pileup\"", "name = \"Lock Pileup\""), "rule[0].name:"),
            (GOOD.replace("http://127.0.0.1:9/hook", "ftp://host/x"), "receiver[0].url: \"ftp://host/x\" is a ftp address"),
            (GOOD.replace("type = \"webhook\"", "type = \"pager\""), "pager"),
            (
                format!("{GOOD}\n[[receiver]]\nname = \"mail\"\ntype = \"email\"\nsmtp_host = \"smtp.example.com\"\nfrom = \"pgmon\"\nto = []\n"),
                "receiver[1].from: \"pgmon\" is not an email address",
            ),
            (
                format!("{GOOD}\n[[receiver]]\nname = \"mail\"\ntype = \"email\"\nsmtp_host = \"smtp.example.com\"\ntls = \"none\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n"),
                "receiver[1].tls: \"none\" is only for a relay on this host",
            ),
            (format!("{GOOD}\nseverity = \"dire\""), "dire"),
            (
                GOOD.replace("when.lock_waits = { sessions = 3 }", "when.connections_percent = { above = 140 }"),
                "rule[0].when.connections_percent.above: must be a percentage",
            ),
        ];
        for (text, expected) in cases {
            let message = problems_of(&text);
            assert!(message.contains(expected), "expected {expected:?} in:\n{message}");
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let message = problems_of(&GOOD.replace("sessions = 3", "sesions = 3"));
        assert!(message.contains("line 9, column 21"), "{message}");
        assert!(
            message.contains("unexpected keys in table: sesions, available keys: sessions, longest"),
            "{message}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = GOOD
            .replace("sessions = 3", "sessions = 0")
            .replace("receivers = [\"ops\"]", "receivers = []");
        let message = problems_of(&text);
        assert!(message.starts_with("2 problems:"), "{message}");
    }
}
