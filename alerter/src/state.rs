//! The life of one rule on one target: inactive → pending → firing → resolving → inactive, in
//! the time of the samples, so that every alerter given the same samples takes the same steps.

use pgmon_contract::alert::{AlertPhase, AlertState, NotificationKind, PendingTransition};
use pgmon_contract::target::TargetName;

use crate::conditions::Measurement;
use crate::rules::Rule;

/// A rule's timing in microseconds of sample time.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub for_us: i64,
    pub resolve_for_us: i64,
    pub repeat_every_us: i64,
}

impl Timing {
    pub fn of(rule: &Rule) -> Timing {
        Timing {
            for_us: rule.for_duration.as_us(),
            resolve_for_us: rule.resolve_for().as_us(),
            repeat_every_us: rule.repeat_every().as_us(),
        }
    }
}

/// The record of a rule on a target that has never been evaluated.
pub fn initial_state(rule: &str, target: &TargetName) -> AlertState {
    AlertState {
        rule: rule.to_owned(),
        target: target.clone(),
        phase: AlertPhase::Inactive,
        since_us: 0,
        firing_since_us: None,
        notified_at_us: None,
        episode: 0,
        evaluated_at_us: 0,
        value: 0.0,
        summary: String::new(),
        query_id: None,
        outbox: None,
    }
}

/// The record after a measurement at `at_us`, or `None` when nothing changes (most samples):
/// only changes are written, so a quiet rule costs no writes.
pub fn step(state: &AlertState, measured: &Measurement, at_us: i64, timing: Timing) -> Option<AlertState> {
    if at_us <= state.evaluated_at_us {
        return None;
    }
    let mut next = AlertState {
        evaluated_at_us: at_us,
        // JSON has no infinity or NaN: a record holding one could not be read back.
        value: if measured.value.is_finite() { measured.value } else { 0.0 },
        summary: measured.summary.clone(),
        query_id: measured.query_id,
        ..state.clone()
    };
    let enter = |next: &mut AlertState, phase: AlertPhase| {
        next.phase = phase;
        next.since_us = at_us;
    };
    let fire = |next: &mut AlertState| {
        enter(next, AlertPhase::Firing);
        next.episode += 1;
        next.firing_since_us = Some(at_us);
        next.notified_at_us = Some(at_us);
        next.outbox = Some(PendingTransition {
            kind: NotificationKind::Firing,
            at_us,
        });
    };
    let resolve = |next: &mut AlertState| {
        enter(next, AlertPhase::Inactive);
        next.outbox = Some(PendingTransition {
            kind: NotificationKind::Resolved,
            at_us,
        });
    };
    match (state.phase, measured.breaching) {
        (AlertPhase::Inactive, true) if timing.for_us == 0 => fire(&mut next),
        (AlertPhase::Inactive, true) => enter(&mut next, AlertPhase::Pending),
        (AlertPhase::Pending, true) if at_us - state.since_us >= timing.for_us => fire(&mut next),
        (AlertPhase::Pending, true) => return None,
        (AlertPhase::Pending, false) => enter(&mut next, AlertPhase::Inactive),
        (AlertPhase::Firing, true) => {
            let last = state.notified_at_us.unwrap_or(state.since_us);
            if at_us - last < timing.repeat_every_us {
                return None;
            }
            next.notified_at_us = Some(at_us);
            next.outbox = Some(PendingTransition {
                kind: NotificationKind::Repeat,
                at_us,
            });
        }
        (AlertPhase::Firing, false) if timing.resolve_for_us == 0 => resolve(&mut next),
        (AlertPhase::Firing, false) => enter(&mut next, AlertPhase::Resolving),
        (AlertPhase::Resolving, true) => {
            next.phase = AlertPhase::Firing;
            next.since_us = state.firing_since_us.unwrap_or(state.since_us);
        }
        (AlertPhase::Resolving, false) if at_us - state.since_us >= timing.resolve_for_us => resolve(&mut next),
        (AlertPhase::Resolving, false) | (AlertPhase::Inactive, false) => return None,
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    fn timing() -> Timing {
        Timing {
            for_us: 30 * SECOND,
            resolve_for_us: 10 * SECOND,
            repeat_every_us: 3600 * SECOND,
        }
    }

    fn measured(breaching: bool) -> Measurement {
        Measurement {
            value: f64::from(u8::from(breaching)),
            threshold: 1.0,
            breaching,
            summary: String::new(),
            query_id: None,
        }
    }

    /// Runs samples one second apart and returns the notifications they cause, by second.
    fn run(breaching_by_second: &[bool], timing: Timing) -> Vec<(i64, NotificationKind)> {
        let mut state = initial_state("r", &"db".parse().unwrap());
        let mut sent = Vec::new();
        for (second, breaching) in (1..).zip(breaching_by_second) {
            if let Some(mut next) = step(&state, &measured(*breaching), second * SECOND, timing) {
                if let Some(transition) = next.outbox.take() {
                    sent.push((second, transition.kind));
                }
                state = next;
            }
        }
        sent
    }

    #[test]
    fn fires_after_its_for_and_resolves_after_resolve_for_once_each() {
        let mut samples = vec![true; 40];
        samples.extend([false; 20]);
        assert_eq!(
            run(&samples, timing()),
            vec![(31, NotificationKind::Firing), (51, NotificationKind::Resolved)]
        );
    }

    #[test]
    fn a_short_breach_never_fires_and_a_short_recovery_never_resolves() {
        let mut samples = vec![true; 20];
        samples.extend([false; 2]);
        samples.extend([true; 40]);
        samples.extend([false; 5]);
        samples.extend([true; 5]);
        assert_eq!(
            run(&samples, timing()),
            vec![(53, NotificationKind::Firing)],
            "the pending restarted at 23; no flapping"
        );
    }

    #[test]
    fn repeats_while_firing() {
        let timing = Timing {
            repeat_every_us: 20 * SECOND,
            ..timing()
        };
        let kinds: Vec<NotificationKind> = run(&[true; 75], timing).into_iter().map(|(_, kind)| kind).collect();
        assert_eq!(
            kinds,
            vec![NotificationKind::Firing, NotificationKind::Repeat, NotificationKind::Repeat]
        );
    }

    #[test]
    fn an_older_sample_leaves_the_record_alone() {
        let state = AlertState {
            evaluated_at_us: 10 * SECOND,
            ..initial_state("r", &"db".parse().unwrap())
        };
        assert!(step(&state, &measured(true), 9 * SECOND, timing()).is_none());
        assert!(step(&state, &measured(true), 11 * SECOND, timing()).is_some());
    }
}
