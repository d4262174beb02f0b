//! Top statements over a range and one statement's history.

use maud::{html, Markup};
use pgmon_contract::query::{StatementHistoryReply, StatementTotals};

use crate::components::{milliseconds, range_picker, target_header, TargetTab};

/// The orders offered, with their query-string value.
pub const STATEMENT_ORDERS: &[(&str, &str)] = &[
    ("total_time", "total time"),
    ("mean_time", "mean time"),
    ("calls", "calls"),
    ("rows", "rows"),
    ("shared_blocks_read", "shared blocks read"),
    ("temp_blocks", "temp blocks"),
];

/// A statement's text (shortened) linking to its page.
pub fn statement_link(target: &str, statement: &StatementTotals) -> Markup {
    let text = statement.query.as_deref().unwrap_or("(text not collected yet)");
    let short: String = text.chars().take(160).collect();
    html! {
        a href={ "/targets/" (target) "/statements/" (statement.query_id) } title=(text) { (short) @if short.len() < text.len() { "…" } }
    }
}

pub struct StatementsView<'a> {
    pub target: &'a str,
    pub range: &'a str,
    pub order_by: &'a str,
    /// Why statements cannot be sampled on this target, when they cannot.
    pub limitation: Option<&'a str>,
    pub statements: &'a [StatementTotals],
}

pub fn statements_page(view: &StatementsView<'_>) -> Markup {
    let target = view.target;
    html! {
        (target_header(target, TargetTab::Statements, "Statements"))
        div.controls {
            (range_picker(view.range, |range| format!("/targets/{target}/statements?range={range}&order_by={}", view.order_by)))
            div.picker role="group" aria-label="order by" {
                @for (value, label) in STATEMENT_ORDERS {
                    a.selected[*value == view.order_by] href={ "/targets/" (target) "/statements?range=" (view.range) "&order_by=" (value) } { (label) }
                }
            }
        }
        @if let Some(limitation) = view.limitation {
            div.notice {
                p { strong { "Statements are not sampled on this target: " } (limitation) }
            }
        }
        @if view.statements.is_empty() {
            @if view.limitation.is_none() {
                p.empty { "No statement ran in this range, or the collector has not sampled pg_stat_statements yet (every 10 seconds)." }
            }
        } @else {
            table.data.statements {
                thead { tr {
                    th { "Query" } th { "Database" } th { "User" } th { "Calls" } th { "Total time" } th { "Mean" }
                    th { "Rows" } th { "Shared read" } th { "Temp blocks" } th { "Total time over the range" }
                } }
                tbody {
                    @for statement in view.statements {
                        tr {
                            td.query { (statement_link(target, statement)) }
                            td { (statement.database) }
                            td { (statement.user_name) }
                            td.number { (statement.calls) }
                            td.number { (milliseconds(statement.total_exec_time_ms)) }
                            td.number { (statement.mean_exec_time_ms.map(milliseconds).unwrap_or_default()) }
                            td.number { (statement.rows) }
                            td.number { (statement.shared_blks_read) }
                            td.number { (statement.temp_blks_read + statement.temp_blks_written) }
                            td.sparkline
                                data-sparkline-url={ "/api/v1/targets/" (target) "/statements/" (statement.query_id) "?range=" (view.range) }
                                data-sparkline-field="total_exec_time_ms" {}
                        }
                    }
                }
            }
        }
    }
}

pub fn statement_page(target: &str, query_id: i64, range: &str, history: &StatementHistoryReply) -> Markup {
    let calls: i64 = history.points.iter().map(|point| point.calls).sum();
    let total_ms: f64 = history.points.iter().map(|point| point.total_exec_time_ms).sum();
    html! {
        (target_header(target, TargetTab::Statements, &format!("Statement {query_id}")))
        div.controls { (range_picker(range, |range| format!("/targets/{target}/statements/{query_id}?range={range}"))) }
        pre.statement-text { (history.query.as_deref().unwrap_or("The text of this statement has not been collected yet.")) }
        @if history.points.is_empty() {
            p.empty { "This statement did not run in this range." }
        } @else {
            p.lead {
                (calls) " calls, " (milliseconds(total_ms)) " in all"
                @if calls > 0 { ", " (milliseconds(total_ms / calls as f64)) " per call" }
                " over the range."
            }
            div.chart #statement-chart data-statement-url={ "/api/v1/targets/" (target) "/statements/" (query_id) "?range=" (range) } {
                p.loading { "Loading…" }
            }
        }
    }
}
