//! Page bodies and htmx fragments: fleet overview, a target's activity panel, errors.

use maud::{html, Markup};

/// The time ranges offered on the activity page, with their query-string value.
pub const ACTIVITY_RANGES: &[(&str, &str)] = &[("15m", "15 min"), ("1h", "1 hour"), ("6h", "6 hours"), ("24h", "24 hours")];

/// One row of the fleet overview (also an entry of `GET /api/v1/targets`).
#[derive(Debug, serde::Serialize)]
pub struct TargetSummary {
    pub name: String,
    /// Snapshots in the stream for this target.
    pub snapshots: usize,
    /// When the newest snapshot was taken, RFC 3339.
    pub last_sample: Option<String>,
    /// Active sessions in the newest snapshot.
    pub active_sessions_now: Option<usize>,
}

pub fn fleet(targets: &[TargetSummary]) -> Markup {
    html! {
        h1 { "Fleet" }
        @if targets.is_empty() {
            p.empty {
                "No target has sent a snapshot yet. Start a collector with "
                code { "pgmon collect --target NAME=postgresql://..." }
                " or run everything with " code { "pgmon up" } "."
            }
        } @else {
            table.data {
                thead { tr { th { "Target" } th { "Active sessions now" } th { "Last sample (UTC)" } th { "Snapshots kept" } } }
                tbody {
                    @for target in targets {
                        tr {
                            td { a href={ "/targets/" (target.name) } { (target.name) } }
                            td.number { @if let Some(active) = target.active_sessions_now { (active) } @else { "–" } }
                            td { (target.last_sample.as_deref().unwrap_or("–")) }
                            td.number { (target.snapshots) }
                        }
                    }
                }
            }
        }
    }
}

/// The activity page of one target: range and dimension pickers around the live chart panel.
pub fn activity_page(target: &str, range: &str, by: &str, dimensions: &[(&str, &str)]) -> Markup {
    html! {
        h1 { "Activity of " span.target { (target) } }
        p.lead { "Average active sessions, stacked by " (by.replace('_', " ")) "; refreshed every 5 seconds." }
        div #activity-panel { (activity_panel(target, range, by, dimensions)) }
    }
}

/// The part of the activity page that htmx swaps when the range or dimension changes.
pub fn activity_panel(target: &str, range: &str, by: &str, dimensions: &[(&str, &str)]) -> Markup {
    let panel_link = |range: &str, by: &str| format!("/targets/{target}/activity-panel?range={range}&by={by}");
    let page_link = |range: &str, by: &str| format!("/targets/{target}?range={range}&by={by}");
    html! {
        div.controls {
            div.picker role="group" aria-label="time range" {
                @for (value, label) in ACTIVITY_RANGES {
                    a.selected[*value == range] href=(page_link(value, by)) hx-get=(panel_link(value, by)) hx-target="#activity-panel" hx-push-url=(page_link(value, by)) { (label) }
                }
            }
            div.picker role="group" aria-label="stack by" {
                @for (value, label) in dimensions {
                    a.selected[*value == by] href=(page_link(range, value)) hx-get=(panel_link(range, value)) hx-target="#activity-panel" hx-push-url=(page_link(range, value)) { (label) }
                }
            }
        }
        div.chart #activity-chart
            data-series-url={ "/api/v1/targets/" (target) "/activity?range=" (range) "&by=" (by) }
            data-refresh-seconds="5" {
            p.loading { "Loading…" }
        }
        p.hint { "Series data: " a href={ "/api/v1/targets/" (target) "/activity?range=" (range) "&by=" (by) } { "JSON" } }
    }
}

/// An error page body with a message safe to show.
pub fn error_message(title: &str, message: &str) -> Markup {
    html! {
        h1 { (title) }
        p.error { (message) }
        p { a href="/" { "Back to the fleet" } }
    }
}
