//! What each condition measures on a sample: a value, the threshold it is held against, whether
//! it breaches, and a sentence for people.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use pgmon_contract::event::{ActivityRow, AnySnapshot, TargetState};

use crate::rules::Condition;

/// One measurement of a condition on one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub value: f64,
    pub threshold: f64,
    pub breaching: bool,
    pub summary: String,
    /// The statement the measurement is about, for a link to its page.
    pub query_id: Option<i64>,
}

/// What the alerter remembers of a target between samples, for conditions that need more than
/// the sample in hand.
#[derive(Debug, Default)]
pub struct TargetFacts {
    /// From the newest database snapshot.
    max_connections: Option<i32>,
    /// Since when each session waits for its lock (`waitstart`), from the newest locks snapshot.
    lock_waits_since: BTreeMap<i32, i64>,
}

impl TargetFacts {
    /// Takes what later measurements need from a sample.
    pub fn remember(&mut self, snapshot: &AnySnapshot) {
        match snapshot {
            AnySnapshot::Database(database) => {
                if let Some(instance) = &database.instance {
                    self.max_connections = Some(instance.max_connections);
                }
            }
            AnySnapshot::Locks(locks) => {
                self.lock_waits_since = locks
                    .rows
                    .iter()
                    .filter(|row| !row.granted)
                    .filter_map(|row| Some((row.pid, row.waiting_since_us?)))
                    .collect();
            }
            _ => {}
        }
    }
}

/// The samples of an average over a window: (sample time, value).
pub type Window = VecDeque<(i64, f64)>;

/// How far back an AAS rule averages when it does not say.
const DEFAULT_AAS_WINDOW_US: i64 = 60_000_000;

/// Measures `condition` on `snapshot`, or `None` when the snapshot is not of a kind the
/// condition reads. `window` is this rule's own history on this target.
pub fn measure(condition: &Condition, snapshot: &AnySnapshot, facts: &TargetFacts, window: &mut Window) -> Option<Measurement> {
    let at_us = snapshot.collected_at_us();
    match (condition, snapshot) {
        (Condition::TargetDown { .. }, AnySnapshot::Status(status)) => {
            let row = status.rows.first()?;
            let down = row.state == TargetState::Down;
            let summary = if down {
                let reason = row.reason.map_or("unknown", |reason| reason.as_str());
                format!("target is down ({reason}): {}", row.message.as_deref().unwrap_or("no message"))
            } else {
                "target is up".to_owned()
            };
            Some(Measurement {
                query_id: None,
                value: f64::from(u8::from(down)),
                threshold: 1.0,
                breaching: down,
                summary,
            })
        }
        (
            Condition::Aas {
                above,
                wait_event_type,
                wait_event,
                window: length,
            },
            AnySnapshot::Activity(activity),
        ) => {
            let active = activity
                .rows
                .iter()
                .filter(|row| row.state.as_deref() == Some("active") && waits_on(row, wait_event_type.as_deref(), wait_event.as_deref()))
                .count();
            let length_us = length.map_or(DEFAULT_AAS_WINDOW_US, |length| length.as_us());
            window.push_back((at_us, active as f64));
            while window.front().is_some_and(|(time, _)| *time <= at_us - length_us) {
                window.pop_front();
            }
            let average = window.iter().map(|(_, value)| value).sum::<f64>() / window.len() as f64;
            let what = match (wait_event_type, wait_event) {
                (Some(kind), Some(event)) => format!(" waiting on {kind}:{event}"),
                (Some(kind), None) => format!(" on {kind}"),
                _ => String::new(),
            };
            Some(Measurement {
                query_id: None,
                value: average,
                threshold: *above,
                breaching: average > *above,
                summary: format!(
                    "{average:.1} average active sessions{what} over {} (rule: above {above})",
                    humantime::format_duration(std::time::Duration::from_micros(length_us.unsigned_abs()))
                ),
            })
        }
        (Condition::LockWaits { sessions, longest }, AnySnapshot::Activity(activity)) => {
            let waiting: Vec<&ActivityRow> = activity
                .rows
                .iter()
                .filter(|row| row.wait_event_type.as_deref() == Some("Lock"))
                .collect();
            let longest_us = waiting
                .iter()
                .filter_map(|row| facts.lock_waits_since.get(&row.pid).copied().or(row.query_start_us))
                .map(|since| at_us - since)
                .max()
                .unwrap_or(0);
            let count = waiting.len();
            let too_many = sessions.is_some_and(|sessions| count >= sessions as usize);
            let too_long = longest.is_some_and(|longest| count > 0 && longest_us >= longest.as_us());
            let seconds = longest_us as f64 / 1e6;
            let (value, threshold) = match (sessions, longest) {
                (Some(sessions), _) => (count as f64, f64::from(*sessions)),
                (None, Some(longest)) => (seconds, longest.0.as_secs_f64()),
                (None, None) => (count as f64, f64::INFINITY),
            };
            let rule = match (sessions, longest) {
                (Some(sessions), Some(longest)) => {
                    format!("at least {sessions}, or one longer than {}", humantime::format_duration(longest.0))
                }
                (Some(sessions), None) => format!("at least {sessions}"),
                (None, Some(longest)) => format!("one longer than {}", humantime::format_duration(longest.0)),
                (None, None) => String::new(),
            };
            Some(Measurement {
                query_id: None,
                value,
                threshold,
                breaching: too_many || too_long,
                summary: format!("{count} sessions wait for locks, the longest for {seconds:.0} s (rule: {rule})"),
            })
        }
        (Condition::IdleInTransaction { longer_than, sessions }, AnySnapshot::Activity(activity)) => {
            let idle_us: Vec<i64> = activity
                .rows
                .iter()
                .filter(|row| row.state.as_deref().is_some_and(|state| state.starts_with("idle in transaction")))
                .filter_map(|row| row.state_change_us.map(|since| at_us - since))
                .filter(|idle| *idle >= longer_than.as_us())
                .collect();
            let wanted = sessions.unwrap_or(1);
            let longest = idle_us.iter().max().copied().unwrap_or(0) as f64 / 1e6;
            Some(Measurement {
                query_id: None,
                value: idle_us.len() as f64,
                threshold: f64::from(wanted),
                breaching: idle_us.len() >= wanted as usize,
                summary: format!(
                    "{} sessions idle in transaction longer than {}, the longest {longest:.0} s (rule: at least {wanted})",
                    idle_us.len(),
                    humantime::format_duration(longer_than.0)
                ),
            })
        }
        (Condition::ConnectionsPercent { above }, AnySnapshot::Activity(activity)) => {
            let max_connections = facts.max_connections.filter(|max| *max > 0)?;
            let connections = activity
                .rows
                .iter()
                .filter(|row| row.backend_type.as_deref() == Some("client backend"))
                .count();
            let percent = connections as f64 * 100.0 / f64::from(max_connections);
            Some(Measurement {
                query_id: None,
                value: percent,
                threshold: *above,
                breaching: percent > *above,
                summary: format!("{connections} of max_connections {max_connections} in use ({percent:.0}%, rule: above {above}%)"),
            })
        }
        (
            Condition::ReplicationLag {
                bytes_above,
                seconds_above,
            },
            AnySnapshot::Replication(replication),
        ) => {
            let worst_bytes = replication.rows.iter().filter_map(|row| row.replay_lag_bytes).max().unwrap_or(0);
            let worst_seconds = replication.rows.iter().filter_map(|row| row.replay_lag_ms).fold(0.0_f64, f64::max) / 1000.0;
            let too_many_bytes = bytes_above.is_some_and(|limit| worst_bytes > i64::try_from(limit).unwrap_or(i64::MAX));
            let too_late = seconds_above.is_some_and(|limit| worst_seconds > limit);
            let (value, threshold) = match (bytes_above, seconds_above) {
                (Some(bytes), _) => (worst_bytes as f64, *bytes as f64),
                (None, Some(seconds)) => (worst_seconds, *seconds),
                (None, None) => (worst_bytes as f64, f64::INFINITY),
            };
            Some(Measurement {
                query_id: None,
                value,
                threshold,
                breaching: too_many_bytes || too_late,
                summary: format!("replay lag up to {worst_bytes} bytes and {worst_seconds:.1} s"),
            })
        }
        (Condition::SlotRetainedWal { bytes_above }, AnySnapshot::Slots(slots)) => {
            let worst = slots
                .rows
                .iter()
                .filter_map(|row| Some((row.retained_bytes?, row.slot_name.as_str())))
                .max();
            let (bytes, slot) = worst.unwrap_or((0, ""));
            Some(Measurement {
                query_id: None,
                value: bytes as f64,
                threshold: *bytes_above as f64,
                breaching: bytes > i64::try_from(*bytes_above).unwrap_or(i64::MAX),
                summary: if slot.is_empty() {
                    "no slot holds WAL back".to_owned()
                } else {
                    format!("slot {slot} holds back {bytes} bytes of WAL (rule: above {bytes_above})")
                },
            })
        }
        (Condition::WraparoundPercent { above }, AnySnapshot::Database(database)) => {
            let worst = database
                .rows
                .iter()
                .filter_map(|row| {
                    let age = row.frozen_xid_age.into_iter().chain(row.frozen_multixact_age).max()?;
                    Some((age, row.database.as_str()))
                })
                .max();
            let (age, name) = worst?;
            let percent = age as f64 * 100.0 / 2_147_483_648.0;
            Some(Measurement {
                query_id: None,
                value: percent,
                threshold: *above,
                breaching: percent > *above,
                summary: format!("database {name} is {percent:.1}% of the way to transaction ID wraparound (rule: above {above}%)"),
            })
        }
        (Condition::DeadTuples { above, overdue }, AnySnapshot::Tables(tables)) => {
            let overdue = overdue.unwrap_or(true);
            let worst = tables
                .rows
                .iter()
                .filter(|row| !overdue || row.dead_tuples as f64 > row.autovacuum_dead_tuples_threshold())
                .max_by_key(|row| row.dead_tuples);
            let dead = worst.map_or(0, |row| row.dead_tuples);
            let what = if overdue { " past its autovacuum threshold" } else { "" };
            Some(Measurement {
                query_id: None,
                value: dead as f64,
                threshold: *above as f64,
                breaching: dead > i64::try_from(*above).unwrap_or(i64::MAX),
                summary: match worst {
                    Some(row) => format!(
                        "table {}.{} in {} has {dead} dead tuples{what}, last vacuumed {} (rule: above {above})",
                        row.schema,
                        row.name,
                        row.database,
                        row.last_autovacuum_us
                            .max(row.last_vacuum_us)
                            .map_or("never".to_owned(), |at| humantime::format_rfc3339_seconds(
                                std::time::UNIX_EPOCH + std::time::Duration::from_micros(at.unsigned_abs())
                            )
                            .to_string())
                    ),
                    None => format!("no table has dead tuples{what}"),
                },
            })
        }
        _ => None,
    }
}

/// `target_down` of a target that sent nothing since `newest_us`, measured at `now_us` of the
/// wall clock (no sample carries this time); `None` while it is not silent for long enough.
pub fn measure_silence(silent_for: Duration, newest_us: i64, now_us: i64) -> Option<Measurement> {
    let silent_us = now_us - newest_us;
    let limit_us = i64::try_from(silent_for.as_micros()).unwrap_or(i64::MAX);
    (silent_us > limit_us).then(|| Measurement {
        query_id: None,
        value: 1.0,
        threshold: 1.0,
        breaching: true,
        summary: format!(
            "no sample from the collector for {} (rule: silent for {}): the collector is gone or cannot publish",
            humantime::format_duration(Duration::from_secs(silent_us.unsigned_abs() / 1_000_000)),
            humantime::format_duration(silent_for)
        ),
    })
}

/// Whether an active session counts for an AAS rule: every one without a wait filter; "CPU"
/// stands for not waiting.
fn waits_on(row: &ActivityRow, wait_event_type: Option<&str>, wait_event: Option<&str>) -> bool {
    match wait_event_type {
        None => true,
        Some("CPU") => row.wait_event_type.is_none(),
        Some(kind) => {
            row.wait_event_type.as_deref() == Some(kind) && wait_event.is_none_or(|event| row.wait_event.as_deref() == Some(event))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgmon_contract::event::{Snapshot, SnapshotKind};

    fn sample<Row>(kind: SnapshotKind, at_us: i64, rows: Vec<Row>) -> Snapshot<Row> {
        Snapshot {
            schema_version: 1,
            kind,
            target: "db".parse().unwrap(),
            collected_at_us: at_us,
            server: pgmon_contract::event::ServerIdentity {
                system_identifier: None,
                server_version_num: 170000,
                server_version: "17".into(),
            },
            collector: None,
            instance: None,
            statements_info: None,
            objects_info: None,
            part: None,
            rows,
        }
    }

    fn activity(at_us: i64, rows: Vec<ActivityRow>) -> AnySnapshot {
        AnySnapshot::Activity(sample(SnapshotKind::Activity, at_us, rows))
    }

    fn session(pid: i32, state: &str, wait: Option<&str>) -> ActivityRow {
        ActivityRow {
            pid,
            state: Some(state.to_owned()),
            wait_event_type: wait.map(str::to_owned),
            backend_type: Some("client backend".to_owned()),
            query_start_us: Some(0),
            state_change_us: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn lock_waits_count_sessions_and_the_longest_wait() {
        let condition = Condition::LockWaits {
            sessions: Some(2),
            longest: None,
        };
        let facts = TargetFacts::default();
        let one = activity(10_000_000, vec![session(1, "active", Some("Lock")), session(2, "active", None)]);
        let measured = measure(&condition, &one, &facts, &mut Window::new()).unwrap();
        assert_eq!((measured.value, measured.breaching), (1.0, false));
        let two = activity(
            10_000_000,
            vec![session(1, "active", Some("Lock")), session(3, "active", Some("Lock"))],
        );
        let measured = measure(&condition, &two, &facts, &mut Window::new()).unwrap();
        assert_eq!((measured.value, measured.breaching), (2.0, true));
        assert!(
            measured.summary.starts_with("2 sessions wait for locks, the longest for 10 s"),
            "{}",
            measured.summary
        );
    }

    #[test]
    fn aas_averages_over_its_window_and_filters_by_wait() {
        let condition = Condition::Aas {
            above: 1.5,
            wait_event_type: Some("CPU".to_owned()),
            wait_event: None,
            window: Some(crate::rules::RuleDuration(std::time::Duration::from_secs(2))),
        };
        let facts = TargetFacts::default();
        let mut window = Window::new();
        let busy = || {
            vec![
                session(1, "active", None),
                session(2, "active", None),
                session(3, "active", Some("IO")),
            ]
        };
        let first = measure(&condition, &activity(1_000_000, busy()), &facts, &mut window).unwrap();
        assert_eq!((first.value, first.breaching), (2.0, true));
        let second = measure(&condition, &activity(2_000_000, vec![]), &facts, &mut window).unwrap();
        assert_eq!(second.value, 1.0, "the average of 2 and 0");
        let third = measure(&condition, &activity(3_000_000, vec![]), &facts, &mut window).unwrap();
        assert_eq!(third.value, 0.0, "the first sample left the 2 s window");
    }

    #[test]
    fn dead_tuples_count_only_tables_past_their_autovacuum_threshold() {
        use pgmon_contract::event::TableRow;
        let table = |name: &str, dead: i64, rows: i64| TableRow {
            database: "app".into(),
            schema: "public".into(),
            name: name.into(),
            dead_tuples: dead,
            row_estimate: Some(rows),
            vacuum_threshold: 50,
            vacuum_scale_factor: 0.2,
            ..Default::default()
        };
        // orders: 300,000 dead of 1,000,000 rows is past 200,050; events: 500,000 of 10,000,000 is not.
        let snapshot = AnySnapshot::Tables(sample(
            SnapshotKind::Tables,
            1,
            vec![table("orders", 300_000, 1_000_000), table("events", 500_000, 10_000_000)],
        ));
        let overdue = Condition::DeadTuples {
            above: 100_000,
            overdue: None,
        };
        let measured = measure(&overdue, &snapshot, &TargetFacts::default(), &mut Window::new()).unwrap();
        assert_eq!((measured.value, measured.breaching), (300_000.0, true));
        assert!(
            measured
                .summary
                .starts_with("table public.orders in app has 300000 dead tuples past its autovacuum threshold"),
            "{}",
            measured.summary
        );
        let any = Condition::DeadTuples {
            above: 100_000,
            overdue: Some(false),
        };
        assert_eq!(
            measure(&any, &snapshot, &TargetFacts::default(), &mut Window::new()).unwrap().value,
            500_000.0
        );
    }

    #[test]
    fn a_condition_ignores_kinds_it_does_not_read() {
        let condition = Condition::WraparoundPercent { above: 50.0 };
        assert!(measure(&condition, &activity(1, vec![]), &TargetFacts::default(), &mut Window::new()).is_none());
    }
}
