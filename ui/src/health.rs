//! The Health tab of a target: how close its databases and tables are to transaction-ID
//! wraparound, and the tables whose dead tuples autovacuum has not caught up with.

use maud::{html, Markup};
use pgmon_contract::api::{CurrentReplication, RunningMaintenance};
use pgmon_contract::event::{ProgressRow, ReplicationRole};
use pgmon_contract::query::{Change, ChangesReply, IoTotals, TableHealth, VacuumHealthReply};

use crate::components::{bytes, milliseconds, or_dash, target_header, time, TargetTab};
use crate::objects::relation_link;

/// Ages past this share of the wraparound horizon are flagged: autovacuum's default freeze age
/// (200 million) is about 9 %, so a relation far past it is not being frozen.
pub const WRAPAROUND_WARNING_PERCENT: f64 = 25.0;

/// A large count with thousands separated, as DBAs read transaction ages.
fn count(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            grouped.push(' ');
        }
        grouped.push(digit);
    }
    if value < 0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

/// A percentage of the wraparound horizon, with a bar, flagged when high.
fn wraparound(percent: f64) -> Markup {
    html! {
        span.wraparound.warning[percent >= WRAPAROUND_WARNING_PERCENT] {
            meter.bar min="0" max="100" value=(format!("{percent:.2}")) {}
            " " (format!("{percent:.1} %"))
        }
    }
}

/// The age as a share of the freeze age at which autovacuum freezes it.
fn of_freeze_age(age: i64, freeze_max_age: Option<i64>) -> String {
    match freeze_max_age {
        Some(limit) if limit > 0 => format!("{:.0} %", age as f64 * 100.0 / limit as f64),
        _ => "–".to_owned(),
    }
}

fn table_list(target: &str, tables: &[TableHealth], empty: &str) -> Markup {
    html! {
        @if tables.is_empty() {
            p.empty { (empty) }
        } @else {
            table.data.health-tables {
                thead { tr {
                    th { "Table" } th.number { "Dead tuples" } th.number { "Live tuples" } th.number { "Vacuum at" }
                    th.number { "XID age" } th { "Of wraparound" } th.number { "Of freeze age" } th { "Last vacuum" } th { "Autovacuum" }
                } }
                tbody {
                    @for table in tables {
                        tr {
                            td { a href=(relation_link(target, &table.database, &table.schema_name, &table.name)) {
                                (table.database) "." (table.schema_name) "." (table.name) } }
                            td.number { (count(table.dead_tuples)) }
                            td.number { (count(table.live_tuples)) }
                            td.number { (count(table.vacuum_threshold_tuples)) }
                            td.number { (count(table.frozen_xid_age)) }
                            td { (wraparound(table.wraparound_percent)) }
                            td.number { (of_freeze_age(table.frozen_xid_age.max(table.frozen_multixact_age), Some(table.freeze_max_age))) }
                            td { (last_vacuum(table)) }
                            td { @if table.autovacuum_enabled { (table.autovacuum_count) " runs" } @else { span.warning { "off" } } }
                        }
                    }
                }
            }
        }
    }
}

/// The later of the table's manual and automatic vacuums.
fn last_vacuum(table: &TableHealth) -> Markup {
    match table.last_vacuum_us.max(table.last_autovacuum_us) {
        Some(at) => html! { (time(at)) },
        None => html! { span.warning { "never" } },
    }
}

/// How far a command is through its blocks.
fn progress(command: &ProgressRow) -> Markup {
    match (command.blocks_done, command.blocks_total) {
        (Some(done), Some(total)) if total > 0 => html! {
            meter.bar min="0" max=(total) value=(done) {}
            " " (format!("{:.0} %", done as f64 * 100.0 / total as f64)) " of " (count(total)) " blocks"
        },
        _ => html! { "–" },
    }
}

/// Vacuums, analyzes, index builds and CLUSTERs running now.
fn running_now(running: &RunningMaintenance) -> Markup {
    html! {
        h2 { "Maintenance running now" }
        @match running.collected_at_us {
            None => p.empty { "No progress has been reported for this target yet." },
            Some(at) => {
                p.lead {
                    "As of " (time(at)) " UTC: autovacuum workers busy " (running.autovacuum_workers_busy)
                    @if let Some(workers) = running.autovacuum_max_workers { " of " (workers) }
                    @if running.autovacuum_max_workers.is_some_and(|workers| running.autovacuum_workers_busy as i64 >= workers) {
                        " " span.warning { "(all busy: other tables wait their turn)" }
                    }
                    "."
                }
                @if running.commands.is_empty() {
                    p.empty { "Nothing runs." }
                } @else {
                    table.data.maintenance {
                        thead { tr { th { "Pid" } th { "Command" } th { "Table" } th { "Phase" } th { "Progress" } th.number { "Index passes" } th { "Started" } } }
                        tbody {
                            @for command in &running.commands {
                                tr {
                                    td.number { (command.pid) }
                                    td { @if command.autovacuum { "auto" } (command.command.as_str().replace('_', " ")) }
                                    td { (or_dash(command.database.as_deref())) "." (or_dash(command.relation.as_deref())) }
                                    td { (command.phase) }
                                    td { (progress(command)) }
                                    td.number { @match command.index_vacuum_count {
                                        Some(passes) => span.warning[passes > 1] { (passes) },
                                        None => "–",
                                    } }
                                    td { @if let Some(at) = command.started_at_us { (time(at)) } @else { "–" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the Health tab shows.
pub struct HealthView<'a> {
    pub target: &'a str,
    pub vacuum: &'a VacuumHealthReply,
    pub running: &'a RunningMaintenance,
    pub replication: &'a CurrentReplication,
    /// The changes of the last week.
    pub changes: &'a ChangesReply,
    /// I/O per backend type over the last hour (PostgreSQL 16+).
    pub io: &'a [IoTotals],
}

/// Checkpoints and WAL over the last hour (a chart), and I/O by backend type.
fn wal_section(target: &str, io: &[IoTotals]) -> Markup {
    html! {
        h2 { "Checkpoints, WAL and I/O, last hour" }
        p.hint { "Requested checkpoints (rather than timed ones) mean max_wal_size is too small for the write load; "
            "buffers written by backends mean the background writer and checkpoints do not keep up." }
        div.chart data-wal-url={ "/api/v1/targets/" (target) "/health/wal?range=1h" } data-refresh-seconds="60" {}
        div.chart data-buffers-url={ "/api/v1/targets/" (target) "/health/wal?range=1h" } data-refresh-seconds="60" {}
        @if io.is_empty() {
            p.empty { "No I/O statistics by backend type (pg_stat_io exists from PostgreSQL 16)." }
        } @else {
            table.data.io {
                thead { tr {
                    th { "Backend type" } th.number { "Reads" } th.number { "Read" } th.number { "Writes" } th.number { "Written" }
                    th.number { "Extends" } th.number { "Hits" } th.number { "Fsyncs" }
                } }
                tbody {
                    @for totals in io {
                        tr {
                            td { (totals.backend_type) }
                            td.number { (count(totals.reads)) } td.number { (bytes(totals.read_bytes)) }
                            td.number { (count(totals.writes)) } td.number { (bytes(totals.write_bytes)) }
                            td.number { (count(totals.extends)) } td.number { (count(totals.hits)) } td.number { (count(totals.fsyncs)) }
                        }
                    }
                }
            }
        }
    }
}

/// A change as one line: a restart, or what changed from what to what.
fn change_description(change: &Change) -> Markup {
    let absent = match change.category.as_str() {
        "setting" => "default",
        "extension" => "not installed",
        _ => "–",
    };
    let value = |value: &Option<String>| value.clone().unwrap_or_else(|| absent.to_owned());
    html! {
        @if change.category == "server" && change.name == "start_time" {
            span.warning { "restart" } " (started " (value(&change.new_value)) ")"
        } @else {
            (change.category) " " code { (change.name) } ": " (value(&change.old_value)) " → " (value(&change.new_value))
            @if change.pending_restart { " " span.warning { "pending restart" } }
        }
    }
}

/// Restarts, upgrades, settings and extensions changed in the last week, newest first.
fn changes_section(changes: &ChangesReply) -> Markup {
    html! {
        h2 { "Changes, last 7 days" }
        @if changes.changes.is_empty() {
            p.empty { "No restart, setting or extension change was seen in the last 7 days." }
        } @else {
            @if changes.truncated { p.hint { "Only the first " (changes.changes.len()) " changes are listed." } }
            ul.change-timeline {
                @for change in changes.changes.iter().rev() {
                    li { (time(change.at_us)) " UTC · " (change_description(change)) }
                }
            }
        }
    }
}

/// Standbys and their lag, replay on a standby, slots and the WAL they hold back.
fn replication_section(target: &str, replication: &CurrentReplication) -> Markup {
    let optional_bytes = |value: Option<i64>| value.map_or_else(|| "–".to_owned(), bytes);
    let optional_milliseconds = |value: Option<f64>| value.map_or_else(|| "–".to_owned(), milliseconds);
    html! {
        h2 { "Replication" }
        @match replication.collected_at_us {
            None => p.empty { "No replication has been seen on this target: no standby streams from it and it is not a standby." },
            Some(at) => {
                p.lead { "As of " (time(at)) " UTC." }
                @if replication.links.is_empty() {
                    p.empty { "No standby streams from it any more." }
                } @else {
                    table.data.replication {
                        thead { tr {
                            th { "Standby" } th { "State" } th.number { "Replay lag" } th.number { "Replay lag (time)" }
                            th.number { "Write lag" } th.number { "Flush lag" } th { "Sync" }
                        } }
                        tbody {
                            @for link in &replication.links {
                                tr {
                                    td { @if link.role == ReplicationRole::Receiver { "this server, from " } (link.name)
                                        @if let Some(address) = &link.client_addr { " (" (address) ")" } }
                                    td { (or_dash(link.state.as_deref()))
                                        @if link.replay_paused == Some(true) { " " span.warning { "replay paused" } } }
                                    td.number { (optional_bytes(link.replay_lag_bytes)) }
                                    td.number { (optional_milliseconds(link.replay_lag_ms)) }
                                    td.number { (optional_bytes(link.write_lag_bytes)) }
                                    td.number { (optional_bytes(link.flush_lag_bytes)) }
                                    td { (or_dash(link.sync_state.as_deref())) }
                                }
                            }
                        }
                    }
                }
                div.chart data-lag-url={ "/api/v1/targets/" (target) "/health/replication/history?range=1h" } data-refresh-seconds="30" {}
            }
        }
        @if replication.slots_collected_at_us.is_some() && !replication.slots.is_empty() {
            h2 { "Replication slots" }
            table.data.slots {
                thead { tr {
                    th { "Slot" } th { "Type" } th { "Active" } th.number { "WAL retained" } th { "WAL status" } th { "Inactive since" }
                } }
                tbody {
                    @for slot in &replication.slots {
                        tr {
                            td { (slot.slot_name) @if let Some(database) = &slot.database { " (" (database) ")" } }
                            td { (slot.slot_type) @if let Some(plugin) = &slot.plugin { ", " (plugin) } }
                            td { @if slot.active { "yes" } @else { span.warning { "no" } } }
                            td.number { (optional_bytes(slot.retained_bytes)) }
                            td { span.warning[matches!(slot.wal_status.as_deref(), Some("unreserved" | "lost"))] { (or_dash(slot.wal_status.as_deref())) }
                                @if let Some(reason) = &slot.invalidation_reason { " (" (reason) ")" } }
                            td { @if let Some(at) = slot.inactive_since_us { (time(at)) } @else { "–" } }
                        }
                    }
                }
            }
        }
    }
}

pub fn health_page(view: &HealthView<'_>) -> Markup {
    let (target, reply) = (view.target, view.vacuum);
    html! {
        (target_header(target, TargetTab::Health, "Health"))
        (running_now(view.running))
        (changes_section(view.changes))
        (replication_section(target, view.replication))
        (wal_section(target, view.io))
        h2 { "Transaction-ID wraparound" }
        @match reply.databases_collected_at_us {
            None => p.empty { "No database ages have been collected for this target yet." },
            Some(at) => {
                p.lead {
                    "Ages from " (time(at)) " UTC. A server stops assigning transaction IDs when a database's age reaches 2³¹ (100 %); "
                    "autovacuum freezes tables past autovacuum_freeze_max_age"
                    @if let Some(limit) = reply.freeze_max_age { " (" (count(limit)) ")" }
                    "."
                }
                table.data.health-databases {
                    thead { tr { th { "Database" } th.number { "XID age" } th.number { "Multixact age" } th { "Of wraparound" } th.number { "Of freeze age" } } }
                    tbody {
                        @for database in &reply.databases {
                            tr {
                                td { (database.database) }
                                td.number { (count(database.frozen_xid_age)) }
                                td.number { (count(database.frozen_multixact_age)) }
                                td { (wraparound(database.wraparound_percent)) }
                                td.number { (of_freeze_age(database.frozen_xid_age, reply.freeze_max_age)) }
                            }
                        }
                    }
                }
            }
        }
        @match reply.tables_collected_at_us {
            None => p.empty { "No table statistics have been collected for this target yet (with the objects, every 5 minutes by default)." },
            Some(at) => {
                p.lead { "Tables from " (time(at)) " UTC." }
                h2 { "Vacuum overdue" }
                p.hint { (reply.vacuum_overdue_count) " tables have more dead tuples than the threshold at which autovacuum vacuums them: "
                    "autovacuum is behind, off for them, or held back by a long transaction." }
                (table_list(target, &reply.vacuum_overdue, "No table is past its vacuum threshold."))
                h2 { "Oldest frozen transaction IDs" }
                (table_list(target, &reply.oldest_tables, "No table."))
                h2 { "Most dead tuples" }
                (table_list(target, &reply.most_dead_tuples, "No table has dead tuples."))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1 000");
        assert_eq!(count(2_147_483_648), "2 147 483 648");
        assert_eq!(count(-1_234_567), "-1 234 567");
    }
}
