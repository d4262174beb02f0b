//! The fleet overview: every target's status, load and size at a glance.

use maud::{html, Markup};
use serde::Serialize;

use crate::components::{bytes, or_dash, seconds, time};

/// One target of the fleet (also an entry of `GET /api/v1/fleet`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TargetSummary {
    pub name: String,
    /// `up`, `down`, or `unknown` before the first status snapshot.
    pub status: String,
    /// Why a down target is down, as the collector said.
    pub status_message: Option<String>,
    /// What the collector cannot sample on a target that is up.
    pub limitations: Vec<String>,
    /// Seconds since the newest activity snapshot: how far behind the collector is.
    pub lag_seconds: Option<i64>,
    /// When the newest activity snapshot was taken, microseconds since the epoch.
    pub last_sample_us: Option<i64>,
    /// Active client sessions in the newest activity snapshot.
    pub active_sessions_now: Option<usize>,
    /// `max_connections` of the server, from its newest database snapshot.
    pub max_connections: Option<i32>,
    /// Size of the target's tables with their indexes and TOAST, from the newest objects snapshot.
    pub data_bytes: Option<i64>,
    pub server_version: Option<String>,
}

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
                    th { "Data size" } th { "Version" } th { "Last sample (UTC)" }
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
                            td { (or_dash(target.server_version.as_deref())) }
                            td { @if let Some(at) = target.last_sample_us { (time(at)) } @else { "–" } }
                        }
                    }
                }
            }
        }
    }
}
