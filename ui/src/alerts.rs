//! The Alerts page: what fires now, what fired when and for how long, who silenced what, and
//! the rules (with an editor and a silence form for admins).

use maud::{html, Markup};
use pgmon_contract::alert::{AlertNotification, AlertPhase, AlertState, NotificationKind, Silence};

use crate::components::time;
use crate::layout::{csrf_field, Viewer};

/// A rule as the page lists it, written out by the web (the rule type lives in the alerter).
pub struct RuleRow {
    pub name: String,
    /// The condition as written in the alerts file (`lock_waits = { sessions = 3 }`).
    pub when: String,
    pub for_duration: String,
    pub severity: String,
    pub receivers: String,
    pub targets: String,
}

/// A notification no receiver took.
pub struct UndeliveredRow<'a> {
    pub receiver: &'a str,
    pub reason: &'a str,
    pub notification: &'a AlertNotification,
}

/// A rule editor shown again with what was typed and what is wrong with it.
pub struct RuleDraft<'a> {
    pub toml: &'a str,
    pub problems: &'a [String],
}

pub struct AlertsView<'a> {
    /// Only this target's alerts, when given.
    pub target: Option<&'a str>,
    pub states: &'a [AlertState],
    pub history: &'a [AlertNotification],
    /// Whether the history was cut at its bound.
    pub history_truncated: bool,
    pub silences: &'a [Silence],
    pub undelivered: &'a [UndeliveredRow<'a>],
    pub rules: &'a [RuleRow],
    /// Every rule as the alerts file writes them, to copy into one.
    pub rules_toml: &'a str,
    pub now_us: i64,
    pub draft: Option<RuleDraft<'a>>,
    /// A silence form's problem, shown beside it.
    pub silence_problem: Option<&'a str>,
}

/// An example rule for a new rule's editor.
const NEW_RULE: &str =
    "name = \"lock-pileup\"\nwhen.lock_waits = { sessions = 3 }\nfor = \"30s\"\nseverity = \"critical\"\nreceivers = [\"ops\"]\n";

fn phase_class(phase: AlertPhase) -> &'static str {
    match phase {
        AlertPhase::Firing => "alert-firing",
        AlertPhase::Resolving => "alert-resolving",
        AlertPhase::Pending => "alert-pending",
        AlertPhase::Inactive => "alert-inactive",
    }
}

fn duration_between(from_us: i64, to_us: i64) -> String {
    let seconds = u64::try_from((to_us - from_us) / 1_000_000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
}

/// The activity page of a target around a moment.
fn activity_link(target: &str, from_us: i64, to_us: i64) -> String {
    format!(
        "/targets/{target}?from={}&to={}",
        from_us / 1_000_000 - 900,
        to_us / 1_000_000 + 300
    )
}

/// A button posting to `action`, with the CSRF token.
fn post_button(viewer: &Viewer, action: &str, label: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            (csrf_field(viewer)) button.link type="submit" { (label) }
        }
    }
}

pub fn alerts_page(viewer: &Viewer, view: &AlertsView) -> Markup {
    let active: Vec<&AlertState> = view.states.iter().filter(|state| state.phase != AlertPhase::Inactive).collect();
    html! {
        h1 { "Alerts" @if let Some(target) = view.target { " of " a href={ "/targets/" (target) } { (target) } } }
        @if view.target.is_some() { p { a href="/alerts" { "All targets" } } }
        section {
            h2 { "Now" }
            @if active.is_empty() {
                p.empty { "Nothing fires or is pending." }
            } @else {
                div.table-scroll { table.data.alerts-now {
                    thead { tr { th { "Rule" } th { "Target" } th { "State" } th { "Since" } th { "Summary" } } }
                    tbody {
                        @for state in &active {
                            tr class=(phase_class(state.phase)) {
                                td { (state.rule) }
                                td { a href=(activity_link(state.target.as_str(), state.firing_since_us.unwrap_or(state.since_us), view.now_us)) { (state.target) } }
                                td { (state.phase.as_str()) }
                                td { (time(state.firing_since_us.unwrap_or(state.since_us))) " (" (duration_between(state.firing_since_us.unwrap_or(state.since_us), view.now_us)) ")" }
                                td.summary { (state.summary) }
                            }
                        }
                    }
                } }
            }
        }
        section {
            h2 { "History" }
            @if view.history.is_empty() {
                p.empty { "No alert fired or resolved in the last week." }
            } @else {
                div.table-scroll { table.data.alerts-history {
                    thead { tr { th { "When" } th { "Rule" } th { "Target" } th { "What" } th { "For" } th { "Summary" } th { "Silenced" } } }
                    tbody {
                        @for event in view.history.iter().rev() {
                            tr {
                                td { a href=(activity_link(event.target.as_str(), event.firing_since_us, event.at_us)) { (time(event.at_us)) } }
                                td { (event.rule) }
                                td { (event.target) }
                                td { (event.kind.as_str()) }
                                td { @if event.kind == NotificationKind::Resolved { (duration_between(event.firing_since_us, event.at_us)) } @else { "–" } }
                                td.summary { (event.summary) }
                                td { @if let Some(silence) = &event.silenced_by { "by " (silence.created_by) ": " (silence.reason) } @else { "–" } }
                            }
                        }
                    }
                } }
                @if view.history_truncated { p.note { "Only the newest transitions are shown; narrow the time or the target for the rest." } }
            }
        }
        @if !view.undelivered.is_empty() {
            section {
                h2 { "Not delivered" }
                p.note { "Notifications a receiver did not take after every retry; they are kept in the alert stream." }
                div.table-scroll { table.data.undelivered {
                    thead { tr { th { "When" } th { "Receiver" } th { "Rule" } th { "Target" } th { "What" } th { "Why" } } }
                    tbody {
                        @for row in view.undelivered.iter().rev() {
                            tr {
                                td { (time(row.notification.at_us)) }
                                td { (row.receiver) }
                                td { (row.notification.rule) }
                                td { (row.notification.target) }
                                td { (row.notification.kind.as_str()) }
                                td.summary { (row.reason) }
                            }
                        }
                    }
                } }
            }
        }
        section {
            h2 { "Silences" }
            @let current: Vec<&Silence> = view.silences.iter().filter(|silence| silence.until_us > view.now_us).collect();
            @if current.is_empty() {
                p.empty { "No silence in force." }
            } @else {
                div.table-scroll { table.data.silences {
                    thead { tr { th { "Rule" } th { "Target" } th { "Until" } th { "Why" } th { "Who" } @if viewer.is_admin { th {} } } }
                    tbody {
                        @for silence in &current {
                            tr {
                                td { (silence.rule.as_deref().unwrap_or("every rule")) }
                                td { (silence.target.as_ref().map_or("every target", |target| target.as_str())) }
                                td { (time(silence.until_us)) }
                                td { (silence.reason) }
                                td { (silence.created_by) }
                                @if viewer.is_admin { td { (post_button(viewer, &format!("/alerts/silences/{}/delete", silence.id), "End")) } }
                            }
                        }
                    }
                } }
            }
            @if viewer.is_admin {
                form.silence method="post" action="/alerts/silences" {
                    (csrf_field(viewer))
                    label { "Rule " input type="text" name="rule" placeholder="every rule"; }
                    label { "Target " input type="text" name="target" value=[view.target] placeholder="every target"; }
                    label { "For " input type="text" name="duration" value="2h" required; }
                    label { "Why " input type="text" name="reason" required placeholder="maintenance window"; }
                    button type="submit" { "Silence" }
                    @if let Some(problem) = view.silence_problem { p.error { (problem) } }
                }
            }
        }
        section {
            h2 { "Rules" }
            @if view.rules.is_empty() {
                p.empty { "No rule yet: give the alerter an alerts file (docs/alerting.md), or add one here." }
            } @else {
                div.table-scroll { table.data.rules {
                    thead { tr { th { "Rule" } th { "When" } th { "For" } th { "Severity" } th { "Targets" } th { "Receivers" } @if viewer.is_admin { th {} } } }
                    tbody {
                        @for rule in view.rules {
                            tr {
                                td { (rule.name) }
                                td { code { (rule.when) } }
                                td { (rule.for_duration) }
                                td { (rule.severity) }
                                td { (rule.targets) }
                                td { (rule.receivers) }
                                @if viewer.is_admin { td { (post_button(viewer, &format!("/alerts/rules/{}/delete", rule.name), "Delete")) } }
                            }
                        }
                    }
                } }
            }
            @if viewer.is_admin {
                h3 { "Add or change a rule" }
                p.note { "One rule in the alerts file's TOML; a rule of the same name is replaced." }
                form.rule-editor method="post" action="/alerts/rules" {
                    (csrf_field(viewer))
                    textarea name="toml" rows="10" spellcheck="false" {
                        (view.draft.as_ref().map_or(NEW_RULE, |draft| draft.toml))
                    }
                    @if let Some(draft) = &view.draft {
                        ul.error { @for problem in draft.problems { li { (problem) } } }
                    }
                    button type="submit" { "Save rule" }
                }
                @if !view.rules.is_empty() {
                    details { summary { "Rules as TOML" } pre { (view.rules_toml) } }
                }
            }
        }
    }
}
