//! Locks and blocking: who blocks whom right now (root blockers first), and lock waits over a
//! range with the sessions others waited for most.

use maud::{html, Markup};
use pgmon_contract::api::{BlockingNode, CurrentBlocking};
use pgmon_contract::query::LockHistoryReply;

use crate::activity::session_link;
use crate::components::{or_dash, range_picker, seconds, target_header, time, TargetTab};

fn node(target: &str, node: &BlockingNode, window_us: (i64, i64)) -> Markup {
    html! {
        li {
            div.session {
                a href=(session_link(target, node.pid, node.backend_start_us, window_us.0, window_us.1)) { "PID " (node.pid) }
                " · " (or_dash(node.user.as_deref())) "@" (or_dash(node.database.as_deref()))
                " · " (or_dash(node.state.as_deref()))
                @if let Some(waited) = node.waiting_seconds { " · " strong { "waiting " (seconds(waited)) } }
                @if let Some(lock) = &node.waiting_for { " for " code { (lock) } }
                div.query { (or_dash(node.query.as_deref())) }
            }
            @if !node.waiters.is_empty() {
                ul { @for waiter in &node.waiters { (self::node(target, waiter, window_us)) } }
            }
        }
    }
}

/// The live blocking tree, swapped by htmx every 5 seconds.
pub fn current_blocking(target: &str, blocking: &CurrentBlocking) -> Markup {
    let at = blocking.collected_at_us.unwrap_or(0);
    let window_us = (at - 900_000_000, at + 1_000_000);
    html! {
        @match blocking.collected_at_us {
            None => p.empty { "No activity snapshot of this target yet." },
            Some(at) if blocking.roots.is_empty() => p.empty { "No session is blocked (as of " (time(at)) " UTC)." },
            Some(at) => {
                p.hint { "As of " (time(at)) " UTC; root blockers first." }
                ul.blocking-tree { @for root in &blocking.roots { (node(target, root, window_us)) } }
            }
        }
    }
}

/// The locks page; `range` is the named range shown (none for a window given by its ends, as
/// an alert's link gives it).
pub fn locks_page(
    target: &str,
    range: Option<&str>,
    blocking: &CurrentBlocking,
    history: &LockHistoryReply,
    window_us: (i64, i64),
) -> Markup {
    let chart_window = match range {
        Some(range) => format!("range={range}"),
        None => format!("from={}&to={}", window_us.0 / 1_000_000, (window_us.1 + 999_999) / 1_000_000),
    };
    html! {
        (target_header(target, TargetTab::Locks, "Locks and blocking"))
        h2 { "Blocking now" }
        div #current-blocking hx-get={ "/targets/" (target) "/locks/current" } hx-trigger="every 5s" hx-swap="innerHTML" {
            (current_blocking(target, blocking))
        }
        h2 { "Lock waits over time" }
        div.controls { (range_picker(range.unwrap_or_default(), |range| format!("/targets/{target}/locks?range={range}"))) }
        @if history.buckets.is_empty() {
            p.empty { "No session waited for a lock in this range." }
        } @else {
            div.chart #locks-chart data-locks-url={ "/api/v1/targets/" (target) "/locks/history?" (chart_window) } { p.loading { "Loading…" } }
            h3 { "Sessions others waited for" }
            table.data {
                thead { tr { th { "Blocker PID" } th { "Waiting sessions × samples" } th { "First seen (UTC)" } th { "Last seen (UTC)" } th { "Query" } } }
                tbody {
                    @for blocker in &history.blockers {
                        tr {
                            td { a href=(session_link(target, blocker.pid, None, window_us.0, window_us.1)) { (blocker.pid) } }
                            td.number { (blocker.waiting_samples) }
                            td { (time(blocker.first_seen_us)) }
                            td { (time(blocker.last_seen_us)) }
                            td.query { (or_dash(blocker.query.as_deref())) }
                        }
                    }
                }
            }
        }
    }
}
