//! Evaluating rules on the snapshot stream: each alerter follows the stream with a durable
//! consumer of its own, measures every rule on every sample it reads, and records changes in
//! the alert-state bucket with compare-and-set.
//!
//! Exactly one notification per transition, with any number of alerters and across restarts:
//! every alerter takes the same steps from the same samples (sample time, not wall time), and
//! only the one whose compare-and-set lands records a step; the others see the newer record and
//! leave it. A recorded transition waits in the record's outbox until it is published to the
//! alert stream under an id made of rule, target, episode and kind, so a publish repeated after
//! a crash (by anyone who reads the outbox) is dropped by JetStream's duplicate window.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, kv};
use futures::StreamExt;
use pgmon_common::named_query;
use pgmon_contract::alert::{AlertLink, AlertNotification, AlertState, NotificationKind, Silence, NOTIFICATION_SCHEMA_VERSION};
use pgmon_contract::event::{decode_snapshot_from_subject, join_parts, AnySnapshot, SnapshotKind};
use pgmon_contract::query::{SizeForecastsRequest, StatementRegressionsRequest};
use pgmon_contract::subjects::{alert_delivery_subject, alert_event_subject, alert_state_key, SNAPSHOT_STREAM};
use pgmon_contract::target::TargetName;
use tokio_util::sync::CancellationToken;

use crate::conditions::{measure, measure_silence, Measurement, TargetFacts, Window};
use crate::metrics::metrics;
use crate::rules::{regression_windows, Condition, Rule, DEFAULT_SILENT_FOR};
use crate::state::{initial_state, step, Timing};
use crate::AlerterError;

/// The kinds rules read; the alerter's consumer asks for these only.
pub const KINDS_READ: &[SnapshotKind] = &[
    SnapshotKind::Activity,
    SnapshotKind::Statements,
    SnapshotKind::Tables,
    SnapshotKind::Objects,
    SnapshotKind::Locks,
    SnapshotKind::Database,
    SnapshotKind::Status,
    SnapshotKind::Replication,
    SnapshotKind::Slots,
];

/// The subjects of [`KINDS_READ`] of every target: what the alerter's consumers ask for.
pub fn subjects_read() -> Vec<String> {
    KINDS_READ.iter().map(|kind| format!("pgmon.snap.*.{}", kind.as_str())).collect()
}

/// How often a regression rule asks the ingester at most, in sample time: the history it
/// compares changes slowly, and each question reads days of statement deltas. A rule with a
/// short window asks every half window.
const REGRESSION_CHECK_EVERY_US: i64 = 60_000_000;

/// How often targets that sent nothing are looked for.
const SILENCE_CHECK_EVERY: Duration = Duration::from_secs(15);
/// At most this many samples not yet read: the alerter is caught up with the stream.
const CAUGHT_UP_PENDING: u64 = 1000;

/// The rules in force, by name, as the rules bucket holds them.
pub type RuleSet = Arc<RwLock<BTreeMap<String, Rule>>>;

/// The silences in force and expired, by id, as the silences bucket holds them.
pub type Silences = Arc<RwLock<BTreeMap<String, Silence>>>;

/// Target labels from the registry, by target name.
pub type TargetLabels = Arc<RwLock<HashMap<String, BTreeMap<String, String>>>>;

/// A durable consumer of the snapshot kinds rules read, named after the alerter; it starts at
/// new samples the first time, and where the alerter stopped after a restart.
pub fn evaluator_consumer_config(alerter_id: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(format!("pgmon-alerter-{alerter_id}")),
        description: Some(format!("pgmon alerter {alerter_id} evaluating rules")),
        filter_subjects: subjects_read(),
        deliver_policy: jetstream::consumer::DeliverPolicy::New,
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        // A replica that is gone for a day is forgotten with its place in the stream.
        inactive_threshold: Duration::from_secs(24 * 3600),
        ..Default::default()
    }
}

/// What one alerter holds while it evaluates.
pub struct Evaluator {
    jetstream: jetstream::Context,
    states: kv::Store,
    rules: RuleSet,
    silences: Silences,
    labels: TargetLabels,
    web_url: String,
    /// The records this alerter last read or wrote, with their revisions.
    cache: HashMap<String, (AlertState, u64)>,
    facts: HashMap<TargetName, TargetFacts>,
    windows: HashMap<(String, TargetName), Window>,
    /// The time of each target's newest sample read.
    newest_sample_us: HashMap<TargetName, i64>,
    /// When each regression rule last asked about each target, in sample time.
    regression_checks: HashMap<(String, TargetName), i64>,
    parts: SampleAssembler,
}

/// Puts split samples back together as their parts arrive in stream order.
#[derive(Default)]
pub struct SampleAssembler {
    /// Parts waiting for the rest, by subject and sample time.
    waiting: HashMap<(String, i64), Vec<AnySnapshot>>,
}

impl SampleAssembler {
    /// The sample a message completes: itself when sent whole, all its parts joined when this
    /// was the last part missing, `None` while parts are missing.
    pub fn whole_sample(&mut self, subject: &str, snapshot: AnySnapshot) -> Option<AnySnapshot> {
        let Some(part) = snapshot.part() else {
            return Some(snapshot);
        };
        let key = (subject.to_owned(), snapshot.collected_at_us());
        // Parts of older samples of this subject never completed: they never will.
        self.waiting.retain(|(other, at), _| other != subject || *at >= key.1);
        let parts = self.waiting.entry(key.clone()).or_default();
        parts.push(snapshot);
        if parts.len() < part.count as usize {
            return None;
        }
        let parts = self.waiting.remove(&key).unwrap_or_default();
        join_parts(parts).ok()
    }
}

impl Evaluator {
    pub fn new(
        jetstream: jetstream::Context,
        states: kv::Store,
        rules: RuleSet,
        silences: Silences,
        labels: TargetLabels,
        web_url: String,
    ) -> Evaluator {
        Evaluator {
            jetstream,
            states,
            rules,
            silences,
            labels,
            web_url: web_url.trim_end_matches('/').to_owned(),
            cache: HashMap::new(),
            facts: HashMap::new(),
            windows: HashMap::new(),
            regression_checks: HashMap::new(),
            newest_sample_us: HashMap::new(),
            parts: SampleAssembler::default(),
        }
    }

    /// Follows the stream until shut down.
    pub async fn run(mut self, alerter_id: &str, shutdown: CancellationToken) -> Result<(), AlerterError> {
        let stream = self
            .jetstream
            .get_stream(SNAPSHOT_STREAM)
            .await
            .map_err(|e| AlerterError::Consumer(e.to_string()))?;
        let config = evaluator_consumer_config(alerter_id);
        let name = config.durable_name.clone().unwrap_or_default();
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| AlerterError::Consumer(e.to_string()))?;
        let mut messages = consumer.messages().await.map_err(|e| AlerterError::Consumer(e.to_string()))?;
        pgmon_common::health::ready(crate::ROLE);
        tracing::info!(consumer = %name, "evaluating rules on the snapshot stream");
        let mut silence_checks = tokio::time::interval(SILENCE_CHECK_EVERY);
        silence_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                _ = silence_checks.tick() => {
                    // Only an alerter that has read the stream up to now can tell silence from
                    // its own delay.
                    let caught_up = consumer.info().await.is_ok_and(|info| info.num_pending < CAUGHT_UP_PENDING);
                    if caught_up {
                        self.check_silent_targets().await;
                    }
                    continue;
                }
                message = messages.next() => message,
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "reading the snapshot stream failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return Err(AlerterError::Consumer("the snapshot consumer ended".to_owned())),
            };
            match decode_snapshot_from_subject(message.subject.as_str(), &message.payload) {
                Ok(snapshot) => {
                    if let Some(sample) = self.parts.whole_sample(message.subject.as_str(), snapshot) {
                        self.evaluate(&sample).await;
                    }
                }
                // The ingester dead-letters it; rules just do not see it.
                Err(error) => tracing::debug!(subject = %message.subject, error = %error, "snapshot not evaluated"),
            }
            // Acknowledged once evaluated: a crash before this evaluates the sample again, which
            // the records' sample times make harmless.
            if let Err(error) = message.ack().await {
                tracing::warn!(error = %error, "cannot acknowledge a snapshot; it will be evaluated again");
            }
        }
    }

    /// Takes a target that sent nothing for a `target_down` rule's `silent_for` as down, at the
    /// wall clock's time.
    async fn check_silent_targets(&mut self) {
        let now = now_us();
        let rules: Vec<(Rule, Duration)> = self
            .rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .filter_map(|rule| match &rule.when {
                Condition::TargetDown { silent_for } => Some((rule.clone(), silent_for.map_or(DEFAULT_SILENT_FOR, |silent| silent.0))),
                _ => None,
            })
            .collect();
        let newest: Vec<(TargetName, i64)> = self.newest_sample_us.iter().map(|(target, at)| (target.clone(), *at)).collect();
        for (rule, silent_for) in rules {
            for (target, newest_us) in &newest {
                let labels = self.labels_of(target);
                if !rule.targets.matches(target.as_str(), &labels) {
                    continue;
                }
                if let Some(measured) = measure_silence(silent_for, *newest_us, now) {
                    if let Err(error) = self.apply(&rule, target, &labels, &measured, now).await {
                        tracing::warn!(rule = %rule.name, target = %target, error = %error, "cannot record an alert state; the next check tries again");
                    }
                }
            }
        }
    }

    fn labels_of(&self, target: &TargetName) -> BTreeMap<String, String> {
        self.labels
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(target.as_str())
            .cloned()
            .unwrap_or_default()
    }

    async fn evaluate(&mut self, sample: &AnySnapshot) {
        let target = sample.target().clone();
        let at_us = sample.collected_at_us();
        let newest = self.newest_sample_us.entry(target.clone()).or_insert(at_us);
        *newest = (*newest).max(at_us);
        self.facts.entry(target.clone()).or_default().remember(sample);
        let labels = self.labels_of(&target);
        let rules: Vec<Rule> = self
            .rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .filter(|rule| rule.targets.matches(target.as_str(), &labels))
            .cloned()
            .collect();
        for rule in rules {
            let measured = match (&rule.when, sample) {
                (Condition::StatementRegression { .. }, AnySnapshot::Statements(_)) => self.regressions(&rule, &target, at_us).await,
                (Condition::SizeForecast { .. }, AnySnapshot::Objects(_)) => self.size_forecasts(&rule, &target, at_us).await,
                _ => {
                    let facts = self.facts.entry(target.clone()).or_default();
                    let window = self.windows.entry((rule.name.clone(), target.clone())).or_default();
                    measure(&rule.when, sample, facts, window)
                }
            };
            let Some(measured) = measured else {
                continue;
            };
            metrics().evaluations.inc();
            if let Err(error) = self.apply(&rule, &target, &labels, &measured, at_us).await {
                tracing::warn!(rule = %rule.name, target = %target, error = %error, "cannot record an alert state; the next sample tries again");
            }
        }
        let lag = (now_us() - at_us) as f64 / 1e6;
        metrics().evaluation_lag_seconds.set(lag.max(0.0));
    }

    /// Asks the ingester which tables or databases of the target head for the rule's size; the
    /// soonest is the measurement. Objects rounds come minutes apart, so each one asks.
    async fn size_forecasts(&mut self, rule: &Rule, target: &TargetName, at_us: i64) -> Option<Measurement> {
        let Condition::SizeForecast {
            reaches_bytes,
            within,
            over,
            databases,
        } = &rule.when
        else {
            return None;
        };
        let over = over.map_or(Duration::from_secs(7 * 24 * 3600), |over| over.0);
        let databases = databases.unwrap_or(false);
        let request = SizeForecastsRequest {
            target: target.clone(),
            from_us: at_us - i64::try_from(over.as_micros()).unwrap_or(i64::MAX),
            // The round just taken is stored a moment after it is published.
            to_us: at_us + 1,
            reaches_bytes: i64::try_from(*reaches_bytes).unwrap_or(i64::MAX),
            within_us: within.as_us(),
            databases,
            limit: 5,
        };
        let forecasts = self.ask_history(rule, target, &request).await?;
        let within_days = within.0.as_secs_f64() / 86_400.0;
        let what = if databases { "database" } else { "table" };
        Some(match forecasts.first() {
            None => Measurement {
                value: 0.0,
                threshold: within_days,
                breaching: false,
                summary: format!(
                    "no {what} reaches {reaches_bytes} bytes within {}",
                    humantime::format_duration(within.0)
                ),
                query_id: None,
            },
            Some(soonest) => {
                let name = match (&soonest.schema_name, &soonest.name) {
                    (Some(schema), Some(name)) => format!("table {schema}.{name} in {}", soonest.database),
                    _ => format!("database {}", soonest.database),
                };
                Measurement {
                    value: soonest.days_to_reach,
                    threshold: within_days,
                    breaching: true,
                    summary: format!(
                        "{name} is {} bytes, grows {:.0} bytes a day and reaches {reaches_bytes} bytes in {:.1} days (rule: within {})",
                        soonest.latest_bytes,
                        soonest.growth_bytes_per_day,
                        soonest.days_to_reach,
                        humantime::format_duration(within.0)
                    ),
                    query_id: None,
                }
            }
        })
    }

    /// A named query of the ingester's history for a rule; a failure is logged and the next
    /// samples ask again.
    async fn ask_history<Query: pgmon_contract::query::NamedQuery>(
        &self,
        rule: &Rule,
        target: &TargetName,
        request: &Query,
    ) -> Option<Query::Reply> {
        match named_query::ask(&self.jetstream.client(), Duration::from_secs(10), request).await {
            Ok(reply) => Some(reply),
            Err(error) => {
                tracing::warn!(rule = %rule.name, target = %target, query = Query::NAME, error = %error, "cannot ask the ingester's history; the next samples try again");
                None
            }
        }
    }

    /// Asks the ingester which statements of the target regressed, at most once a minute of
    /// samples per rule and target; the worst one is the measurement.
    async fn regressions(&mut self, rule: &Rule, target: &TargetName, at_us: i64) -> Option<Measurement> {
        let Condition::StatementRegression {
            factor,
            window,
            baseline,
            min_calls,
        } = &rule.when
        else {
            return None;
        };
        let (window, baseline) = regression_windows(window, baseline);
        let as_us = |duration: Duration| i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        let checked = self
            .regression_checks
            .entry((rule.name.clone(), target.clone()))
            .or_insert(i64::MIN);
        if at_us.saturating_sub(*checked) < REGRESSION_CHECK_EVERY_US.min(as_us(window) / 2) {
            return None;
        }
        *checked = at_us;
        let min_calls = i64::from(min_calls.unwrap_or(20));
        let request = StatementRegressionsRequest {
            target: target.clone(),
            baseline_from_us: at_us - as_us(baseline),
            recent_from_us: at_us - as_us(window),
            to_us: at_us,
            min_calls,
            factor: *factor,
            limit: 5,
        };
        let regressed = self.ask_history(rule, target, &request).await?;
        let shown = |duration: Duration| humantime::format_duration(duration).to_string();
        Some(match regressed.first() {
            None => Measurement {
                value: 0.0,
                threshold: *factor,
                breaching: false,
                summary: format!(
                    "no statement is {factor}× slower over the last {} than over the {} before",
                    shown(window),
                    shown(baseline)
                ),
                query_id: None,
            },
            Some(worst) => {
                let text: String = worst.query.as_deref().unwrap_or("(text not recorded)").chars().take(160).collect();
                Measurement {
                    value: worst.ratio,
                    threshold: *factor,
                    breaching: true,
                    summary: format!(
                        "statement {} ({} as {}) takes {:.2} ms on average over the last {} ({} calls), {:.1}× its {:.2} ms over the {} before (rule: {factor}×): {text}",
                        worst.query_id,
                        worst.database,
                        worst.user_name,
                        worst.recent_mean_ms,
                        shown(window),
                        worst.recent_calls,
                        worst.ratio,
                        worst.baseline_mean_ms,
                        shown(baseline)
                    ),
                    query_id: Some(worst.query_id),
                }
            }
        })
    }

    /// Steps the rule's record on the target and publishes what the step notifies, retrying
    /// on a conflict with another alerter.
    async fn apply(
        &mut self,
        rule: &Rule,
        target: &TargetName,
        labels: &BTreeMap<String, String>,
        measured: &Measurement,
        at_us: i64,
    ) -> Result<(), String> {
        let key = alert_state_key(&rule.name, target);
        for _ in 0..5 {
            let (state, revision) = match self.cache.get(&key) {
                Some(cached) => cached.clone(),
                None => self.read(&key, &rule.name, target).await?,
            };
            if state.outbox.is_some() {
                self.publish_outbox(rule, labels, &key, state, revision, measured.threshold).await?;
                continue;
            }
            let Some(next) = step(&state, measured, at_us, Timing::of(rule)) else {
                return Ok(());
            };
            match self.write(&key, &next, revision).await {
                Ok(new_revision) => {
                    metrics().transitions.inc();
                    tracing::info!(rule = %rule.name, target = %target, phase = next.phase.as_str(), value = measured.value, "alert state changed");
                    if next.outbox.is_some() {
                        self.publish_outbox(rule, labels, &key, next, new_revision, measured.threshold)
                            .await?;
                    }
                    return Ok(());
                }
                Err(WriteError::Conflict) => {
                    // Another alerter recorded a step first: read it and look again.
                    self.cache.remove(&key);
                }
                Err(WriteError::Failed(reason)) => {
                    self.cache.remove(&key);
                    return Err(reason);
                }
            }
        }
        Err("the record kept changing under this alerter".to_owned())
    }

    async fn read(&mut self, key: &str, rule: &str, target: &TargetName) -> Result<(AlertState, u64), String> {
        let entry = self.states.entry(key).await.map_err(|e| e.to_string())?;
        let found = match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let state = serde_json::from_slice(&entry.value).unwrap_or_else(|error| {
                    tracing::warn!(key, error = %error, "unreadable alert state replaced");
                    initial_state(rule, target)
                });
                (state, entry.revision)
            }
            Some(entry) => (initial_state(rule, target), entry.revision),
            None => (initial_state(rule, target), 0),
        };
        self.cache.insert(key.to_owned(), found.clone());
        Ok(found)
    }

    async fn write(&mut self, key: &str, state: &AlertState, revision: u64) -> Result<u64, WriteError> {
        let value: bytes::Bytes = serde_json::to_vec(state).expect("alert states always serialise").into();
        let written = if revision == 0 {
            self.states.create(key, value).await.map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => WriteError::Conflict,
                _ => WriteError::Failed(e.to_string()),
            })
        } else {
            self.states.update(key, value, revision).await.map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => WriteError::Conflict,
                _ => WriteError::Failed(e.to_string()),
            })
        };
        let new_revision = written?;
        self.cache.insert(key.to_owned(), (state.clone(), new_revision));
        Ok(new_revision)
    }

    /// Publishes the transition in the record's outbox (its event, and one delivery per
    /// receiver of the rule), then clears the outbox.
    async fn publish_outbox(
        &mut self,
        rule: &Rule,
        labels: &BTreeMap<String, String>,
        key: &str,
        state: AlertState,
        revision: u64,
        threshold: f64,
    ) -> Result<(), String> {
        let Some(transition) = state.outbox.clone() else {
            return Ok(());
        };
        let notification = self.notification(rule, labels, &state, transition.kind, transition.at_us, threshold);
        let body: bytes::Bytes = serde_json::to_vec(&notification).expect("notifications always serialise").into();
        let mut subjects = vec![(alert_event_subject(&state.target, &rule.name), notification.id.clone())];
        // A silenced transition is recorded (the Alerts page shows it, and who silenced it) but
        // goes to no receiver.
        if notification.silenced_by.is_none() {
            for receiver in &rule.receivers {
                subjects.push((alert_delivery_subject(receiver), format!("{}.{receiver}", notification.id)));
            }
        }
        for (subject, message_id) in subjects {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", message_id.as_str());
            let ack = self
                .jetstream
                .publish_with_headers(subject, headers, body.clone())
                .await
                .map_err(|e| format!("cannot publish the {} notification: {e}", transition.kind.as_str()))?;
            ack.await
                .map_err(|e| format!("the {} notification was not stored: {e}", transition.kind.as_str()))?;
        }
        tracing::info!(rule = %rule.name, target = %state.target, kind = transition.kind.as_str(), id = %notification.id, silenced = notification.silenced_by.is_some(), "notification published");
        let cleared = AlertState { outbox: None, ..state };
        match self.write(key, &cleared, revision).await {
            // Someone else cleared it, or stepped on: either way it is published.
            Ok(_) | Err(WriteError::Conflict) => {
                if self.cache.get(key).is_some_and(|(_, cached)| *cached == revision) {
                    self.cache.remove(key);
                }
                Ok(())
            }
            Err(WriteError::Failed(reason)) => Err(reason),
        }
    }

    fn notification(
        &self,
        rule: &Rule,
        labels: &BTreeMap<String, String>,
        state: &AlertState,
        kind: NotificationKind,
        at_us: i64,
        threshold: f64,
    ) -> AlertNotification {
        let firing_since_us = state.firing_since_us.unwrap_or(at_us);
        let mut id = format!("{}.{}.{}.{}", rule.name, state.target, state.episode, kind.as_str());
        if kind == NotificationKind::Repeat {
            id.push_str(&format!(".{at_us}"));
        }
        AlertNotification {
            schema_version: NOTIFICATION_SCHEMA_VERSION,
            id,
            kind,
            rule: rule.name.clone(),
            severity: rule.severity,
            target: state.target.clone(),
            labels: labels.clone(),
            summary: state.summary.clone(),
            value: state.value,
            threshold,
            query_id: state.query_id,
            firing_since_us,
            at_us,
            expires_at_us: (kind != NotificationKind::Resolved)
                .then(|| at_us.saturating_add(rule.repeat_every().as_us().saturating_mul(2))),
            links: links(&self.web_url, rule, &state.target, state.query_id, firing_since_us, at_us),
            silenced_by: self
                .silences
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .values()
                .find(|silence| silence.covers(&rule.name, &state.target, at_us))
                .cloned(),
        }
    }
}

enum WriteError {
    Conflict,
    Failed(String),
}

/// Pages of the web at the alert's moment: activity from a little before it fired to a
/// little after this transition, and the page of what the rule watches.
fn links(web_url: &str, rule: &Rule, target: &TargetName, query_id: Option<i64>, firing_since_us: i64, at_us: i64) -> Vec<AlertLink> {
    let from = firing_since_us / 1_000_000 - 15 * 60;
    let to = at_us / 1_000_000 + 5 * 60;
    let window = format!("from={from}&to={to}");
    let mut links = vec![AlertLink {
        title: "Activity".to_owned(),
        url: format!("{web_url}/targets/{target}?{window}"),
    }];
    if let Some(query_id) = query_id {
        links.push(AlertLink {
            title: "Statement".to_owned(),
            url: format!("{web_url}/targets/{target}/statements/{query_id}?{window}"),
        });
    }
    let (title, page) = match rule.when {
        Condition::LockWaits { .. } => ("Locks and blocking", "locks"),
        Condition::ReplicationLag { .. }
        | Condition::SlotRetainedWal { .. }
        | Condition::WraparoundPercent { .. }
        | Condition::DeadTuples { .. } => ("Health", "health"),
        Condition::SizeForecast { .. } => ("Objects", "objects"),
        _ => return links,
    };
    links.push(AlertLink {
        title: title.to_owned(),
        url: format!("{web_url}/targets/{target}/{page}?{window}"),
    });
    links
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
}
