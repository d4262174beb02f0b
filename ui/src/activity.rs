//! A target's activity page (average active sessions over time, drag to zoom, click for the
//! sessions and statements of a slice) and one session's history.

use maud::{html, Markup};
use pgmon_contract::query::{SessionSample, SessionSummary, StatementTotals};

use crate::components::{milliseconds, or_dash, range_picker, target_header, time, TargetTab};
use crate::statements::statement_link;

/// What the activity page shows: a named range (`1h`) or an explicit window.
pub struct ActivityView<'a> {
    pub target: &'a str,
    /// The named range, or `None` for an explicit `from`/`to` window.
    pub range: Option<&'a str>,
    /// The explicit window, microseconds since the epoch.
    pub window_us: (i64, i64),
    pub by: &'a str,
    pub dimensions: &'a [(&'static str, &'static str)],
    pub max_connections: Option<i32>,
}

impl ActivityView<'_> {
    /// The query string selecting this view's time, with `by` replaced.
    fn query(&self, by: &str) -> String {
        format!("{}&by={by}", self.time_query())
    }

    /// The query string selecting this view's time.
    fn time_query(&self) -> String {
        match self.range {
            Some(range) => format!("range={range}"),
            None => format!("from={}&to={}", self.window_us.0 / 1_000_000, self.window_us.1 / 1_000_000),
        }
    }
}

pub fn activity_page(view: &ActivityView<'_>) -> Markup {
    let target = view.target;
    let series_url = format!("/api/v1/targets/{target}/activity?{}", view.query(view.by));
    html! {
        (target_header(target, TargetTab::Activity, "Activity"))
        div.controls {
            (range_picker(view.range.unwrap_or(""), |range| format!("/targets/{target}?range={range}&by={}", view.by)))
            form.custom-range method="get" action={ "/targets/" (target) } {
                input type="hidden" name="by" value=(view.by);
                label { "From " input type="datetime-local" name="from" step="1" required; }
                label { " to " input type="datetime-local" name="to" step="1" required; }
                button type="submit" { "Show" }
            }
        }
        div.controls {
            div.picker role="group" aria-label="stack by" {
                @for (value, label) in view.dimensions {
                    a.selected[*value == view.by] href={ "/targets/" (target) "?" (view.query(value)) } { (label) }
                }
            }
        }
        p.lead {
            "Average active sessions (UTC), stacked by " (view.by.replace('_', " "))
            @if view.range.is_some() { "; refreshed every 5 seconds" }
            ". Drag across the chart to zoom in; click it to see that moment's sessions and statements."
        }
        div.chart #activity-chart
            data-series-url=(series_url)
            data-refresh-seconds=[view.range.map(|_| "5")]
            data-zoom-url={ "/targets/" (target) "?by=" (view.by) }
            data-slice-url={ "/targets/" (target) "/slice" }
            data-statement-url={ "/targets/" (target) "/statements/" }
            data-max-connections=[view.max_connections]
            data-changes-url={ "/api/v1/targets/" (target) "/changes?" (view.time_query()) }
            data-alerts-url={ "/api/v1/targets/" (target) "/alerts?" (view.time_query()) } {
            p.loading { "Loading…" }
        }
        p.hint { "Series data: " a href=(series_url) { "JSON" } }
        section #slice {
            p.empty { "Click or drag on the chart to list the sessions and the top statements of that time." }
        }
    }
}

/// The sessions and statements of a time slice: the fragment the chart's click loads.
pub fn slice(target: &str, from_us: i64, to_us: i64, sessions: &[SessionSummary], statements: Option<&[StatementTotals]>) -> Markup {
    html! {
        h2 { "From " (time(from_us)) " to " (time(to_us)) " UTC" }
        h3 { "Sessions, busiest first" }
        @if sessions.is_empty() {
            p.empty { "No session was sampled in this slice." }
        } @else {
            table.data {
                thead { tr { th { "PID" } th { "Active samples" } th { "Top wait" } th { "State" } th { "Database" } th { "User" } th { "Application" } th { "Query" } } }
                tbody {
                    @for session in sessions {
                        tr {
                            td { a href=(session_link(target, session.pid, session.backend_start_us, from_us, to_us)) { (session.pid) } }
                            td.number { (session.active_samples) " / " (session.samples) }
                            td { (or_dash(session.top_wait_event.as_deref())) }
                            td { (or_dash(session.last_state.as_deref())) }
                            td { (or_dash(session.database.as_deref())) }
                            td { (or_dash(session.user_name.as_deref())) }
                            td { (or_dash(session.application.as_deref())) }
                            td.query { (or_dash(session.last_query.as_deref())) }
                        }
                    }
                }
            }
        }
        h3 { "Top statements by time in this slice" }
        @match statements {
            None => p.empty { "Statement statistics are not available for this target (see the fleet page for why)." },
            Some([]) => p.empty { "No statement ran in this slice (statements are sampled every 10 seconds; widen the slice)." },
            Some(statements) => table.data {
                thead { tr { th { "Query" } th { "Calls" } th { "Total time" } th { "Mean" } } }
                tbody {
                    @for statement in statements {
                        tr {
                            td.query { (statement_link(target, statement)) }
                            td.number { (statement.calls) }
                            td.number { (milliseconds(statement.total_exec_time_ms)) }
                            td.number { (statement.mean_exec_time_ms.map(milliseconds).unwrap_or_default()) }
                        }
                    }
                }
            },
        }
    }
}

/// The address of one session's page around a window.
pub fn session_link(target: &str, pid: i32, backend_start_us: Option<i64>, from_us: i64, to_us: i64) -> String {
    let started = backend_start_us.map(|us| format!("&backend_start={us}")).unwrap_or_default();
    format!(
        "/targets/{target}/sessions/{pid}?from={}&to={}{started}",
        from_us / 1_000_000,
        (to_us + 999_999) / 1_000_000
    )
}

/// One backend's samples over time.
pub fn session_page(target: &str, pid: i32, from_us: i64, to_us: i64, samples: &[SessionSample]) -> Markup {
    html! {
        (target_header(target, TargetTab::Activity, &format!("Session {pid}")))
        p.lead { "Samples from " (time(from_us)) " to " (time(to_us)) " UTC, newest first." }
        @if samples.is_empty() {
            p.empty { "This session was not sampled in this window." }
        } @else {
            table.data {
                thead { tr { th { "Time (UTC)" } th { "State" } th { "Wait" } th { "Blocked by" } th { "Query started" } th { "Query" } } }
                tbody {
                    @for sample in samples.iter().rev() {
                        tr {
                            td { (time(sample.collected_at_us)) }
                            td { (or_dash(sample.state.as_deref())) }
                            td { (or_dash(sample.wait_event_type.as_deref())) @if let Some(event) = &sample.wait_event { ": " (event) } }
                            td {
                                @for blocker in &sample.blocking_pids {
                                    a href=(session_link(target, *blocker, None, from_us, to_us)) { (blocker) } " "
                                }
                            }
                            td { @if let Some(at) = sample.query_start_us { (time(at)) } @else { "–" } }
                            td.query { (or_dash(sample.query.as_deref())) }
                        }
                    }
                }
            }
        }
    }
}
