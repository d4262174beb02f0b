//! The fleet overview: every target's status, load and size at a glance.

use maud::{html, Markup};
use pgmon_contract::api::TargetSummary;

use crate::components::{bytes, or_dash, seconds, time};
use crate::health::WRAPAROUND_WARNING_PERCENT;

/// The fleet page body; the table refreshes itself.
pub fn fleet_page(targets: &[TargetSummary], is_admin: bool) -> Markup {
    html! {
        h1 { "Fleet" }
        div #fleet-table hx-get="/fleet-table" hx-trigger="every 10s" hx-swap="innerHTML" {
            (fleet_table(targets, is_admin))
        }
    }
}

/// The fleet table, swapped by htmx every 10 seconds.
pub fn fleet_table(targets: &[TargetSummary], is_admin: bool) -> Markup {
    html! {
        @if targets.is_empty() {
            p.empty {
                "No target is monitored yet. "
                @if is_admin { a href="/connections/new" { "Add a connection" } " or start a collector with " }
                @else { "Ask an admin to add a connection, or start a collector with " }
                code { "pgmon collect --target NAME=postgresql://..." } "."
            }
        } @else {
            table.data.fleet {
                thead { tr {
                    th { "Target" } th { "Status" } th { "Lag" } th { "Active now" } th { "Load, last hour" }
                    th { "Data size" } th { "Oldest XID" } th { "Replication lag" } th { "Inactive slots" } th { "Version" } th { "Last sample (UTC)" }
                } }
                tbody {
                    @for target in targets {
                        tr {
                            td { a href={ "/targets/" (target.name) } { (target.name) } }
                            td {
                                span class={ "status " (target.status) } { (target.status) }
                                @if let Some(message) = &target.status_message { div.reason { (message) } }
                                @for limitation in &target.limitations { div.limitation { (limitation) } }
                            }
                            td.number { @if let Some(lag) = target.lag_seconds { (seconds(lag)) } @else { "–" } }
                            td.number { @if let Some(active) = target.active_sessions_now { (active) } @else { "–" } }
                            td.sparkline data-sparkline-url={ "/api/v1/targets/" (target.name) "/activity?range=1h&step=1m" } {}
                            td.number { @if let Some(size) = target.data_bytes { (bytes(size)) } @else { "–" } }
                            td.number { @match target.oldest_xid_percent {
                                Some(percent) => a.warning[percent >= WRAPAROUND_WARNING_PERCENT] href={ "/targets/" (target.name) "/health" }
                                    title="the oldest frozen transaction or multixact ID of its databases, as a share of the wraparound horizon" {
                                    (format!("{percent:.1} %")) },
                                None => "–",
                            } }
                            td.number { @if let Some(lag) = target.replication_lag_bytes { (bytes(lag)) } @else { "–" } }
                            td.number { @match target.inactive_slots {
                                Some(0) => "0",
                                Some(count) => a.warning href={ "/targets/" (target.name) "/health" } { (count) },
                                None => "–",
                            } }
                            td { (or_dash(target.server_version.as_deref())) }
                            td { @if let Some(at) = target.last_sample_us { (time(at)) } @else { "–" } }
                        }
                    }
                }
            }
        }
    }
}
