//! `pgmon alert check --since`: the rules of an alerts file replayed over the samples the
//! stream holds, so a rule can be tried before it goes live ("would have fired at …"). The
//! replay takes the alerter's own steps (the same measurements, the same states) in memory,
//! writing nothing to NATS.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use pgmon_contract::alert::{AlertState, NotificationKind};
use pgmon_contract::event::decode_snapshot_from_subject;
use pgmon_contract::subjects::SNAPSHOT_STREAM;
use pgmon_contract::target::TargetName;

use crate::conditions::{measure, TargetFacts, Window};
use crate::engine::{subjects_read, SampleAssembler};
use crate::rules::{Condition, Rule};
use crate::state::{initial_state, step, Timing};
use crate::AlerterError;

/// One transition the replay found.
#[derive(Clone, Debug, PartialEq)]
pub struct WouldHave {
    pub rule: String,
    pub target: TargetName,
    pub kind: NotificationKind,
    pub at_us: i64,
    pub summary: String,
}

/// Replays the samples of the last `since` through `rules`, oldest first. Rules that select
/// targets by label see no target (the registry is not read); statement regressions and size
/// forecasts are left out (they ask the ingester about history as it is now).
pub async fn replay(jetstream: &jetstream::Context, rules: &[Rule], since: Duration) -> Result<Vec<WouldHave>, AlerterError> {
    let unavailable = |e: String| AlerterError::Consumer(e);
    let stream = jetstream
        .get_stream(SNAPSHOT_STREAM)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let start = time::OffsetDateTime::from(SystemTime::now() - since);
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subjects: subjects_read(),
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: start },
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut messages = consumer.messages().await.map_err(|e| unavailable(e.to_string()))?;
    let rules: Vec<&Rule> = rules
        .iter()
        .filter(|rule| !matches!(rule.when, Condition::StatementRegression { .. } | Condition::SizeForecast { .. }))
        .collect();
    let no_labels = BTreeMap::new();
    let mut assembler = SampleAssembler::default();
    let mut facts: HashMap<TargetName, TargetFacts> = HashMap::new();
    let mut windows: HashMap<(String, TargetName), Window> = HashMap::new();
    let mut states: HashMap<(String, TargetName), AlertState> = HashMap::new();
    let mut found = Vec::new();
    loop {
        // The stream's end: nothing more within a moment.
        let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await else {
            break;
        };
        let pending = message.info().map_or(0, |info| info.pending);
        if let Ok(snapshot) = decode_snapshot_from_subject(message.subject.as_str(), &message.payload) {
            if let Some(sample) = assembler.whole_sample(message.subject.as_str(), snapshot) {
                let target = sample.target().clone();
                let at_us = sample.collected_at_us();
                let target_facts = facts.entry(target.clone()).or_default();
                target_facts.remember(&sample);
                for rule in rules.iter().filter(|rule| rule.targets.matches(target.as_str(), &no_labels)) {
                    let key = (rule.name.clone(), target.clone());
                    let window = windows.entry(key.clone()).or_default();
                    let Some(measured) = measure(&rule.when, &sample, target_facts, window) else {
                        continue;
                    };
                    let state = states.entry(key).or_insert_with(|| initial_state(&rule.name, &target));
                    if let Some(mut next) = step(state, &measured, at_us, Timing::of(rule)) {
                        if let Some(transition) = next.outbox.take() {
                            found.push(WouldHave {
                                rule: rule.name.clone(),
                                target: target.clone(),
                                kind: transition.kind,
                                at_us,
                                summary: next.summary.clone(),
                            });
                        }
                        *state = next;
                    }
                }
            }
        }
        if pending == 0 {
            break;
        }
    }
    Ok(found)
}
