//! The `tables` snapshot: what autovacuum sees of every table, materialized view and TOAST
//! table of a database (tuples, scans, vacuum and analyze, frozen-ID ages), with the
//! autovacuum settings that apply to each. Read in the objects round, with one query on the
//! catalog and the statistics (no relation is locked); the table's storage parameters are
//! applied over the server's settings here rather than on the server.

use std::collections::HashMap;
use std::time::SystemTime;

use pgmon_contract::event::{ObjectKind, TableRow};
use tokio_postgres::Client;

use crate::activity::unix_micros;

/// One row per table, materialized view and TOAST table of the current database, system
/// catalogs included (their frozen-ID ages hold back the database's like any other table's);
/// other sessions' temporary tables are left out.
const TABLES_QUERY: &str = "SELECT current_database()::text, n.nspname::text, c.relname::text, c.relkind,
            coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0), coalesce(s.n_mod_since_analyze, 0),
            coalesce(s.n_ins_since_vacuum, 0),
            CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 END,
            coalesce(s.seq_scan, 0), s.idx_scan,
            coalesce(s.vacuum_count, 0), coalesce(s.autovacuum_count, 0),
            coalesce(s.analyze_count, 0), coalesce(s.autoanalyze_count, 0),
            s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
            age(c.relfrozenxid)::int8, mxid_age(c.relminmxid)::int8,
            coalesce(c.reloptions, '{}')
     FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
     WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence <> 't'
     ORDER BY n.nspname, c.relname";

/// The server's autovacuum settings; `autovacuum_vacuum_max_threshold` exists from
/// PostgreSQL 18 and is absent before.
const SETTINGS_QUERY: &str = "SELECT name, setting FROM pg_settings WHERE name LIKE 'autovacuum%'";

/// The autovacuum settings of the server, which a table's storage parameters override.
#[derive(Debug, Clone, PartialEq)]
struct AutovacuumSettings {
    enabled: bool,
    vacuum_threshold: i64,
    vacuum_scale_factor: f64,
    vacuum_max_threshold: Option<i64>,
    insert_vacuum_threshold: i64,
    insert_vacuum_scale_factor: f64,
    analyze_threshold: i64,
    analyze_scale_factor: f64,
    freeze_max_age: i64,
    multixact_freeze_max_age: i64,
}

impl AutovacuumSettings {
    /// The settings from `name → setting` pairs of `pg_settings` (PostgreSQL's defaults for
    /// any it lacks).
    fn from_server(settings: &HashMap<String, String>) -> AutovacuumSettings {
        let number = |name: &str, default: f64| settings.get(name).and_then(|value| value.parse().ok()).unwrap_or(default);
        let integer = |name: &str, default: i64| settings.get(name).and_then(|value| value.parse().ok()).unwrap_or(default);
        AutovacuumSettings {
            enabled: settings.get("autovacuum").is_none_or(|value| value == "on"),
            vacuum_threshold: integer("autovacuum_vacuum_threshold", 50),
            vacuum_scale_factor: number("autovacuum_vacuum_scale_factor", 0.2),
            vacuum_max_threshold: settings.get("autovacuum_vacuum_max_threshold").and_then(|value| value.parse().ok()),
            insert_vacuum_threshold: integer("autovacuum_vacuum_insert_threshold", 1000),
            insert_vacuum_scale_factor: number("autovacuum_vacuum_insert_scale_factor", 0.2),
            analyze_threshold: integer("autovacuum_analyze_threshold", 50),
            analyze_scale_factor: number("autovacuum_analyze_scale_factor", 0.1),
            freeze_max_age: integer("autovacuum_freeze_max_age", 200_000_000),
            multixact_freeze_max_age: integer("autovacuum_multixact_freeze_max_age", 400_000_000),
        }
    }

    /// The settings that apply to a table with these storage parameters (`name=value`). A
    /// table's freeze ages only lower the server's: PostgreSQL ignores larger ones.
    fn for_table(&self, reloptions: &[String]) -> AutovacuumSettings {
        let mut applied = self.clone();
        for option in reloptions {
            let Some((name, value)) = option.split_once('=') else { continue };
            let integer = value.parse::<i64>().ok();
            let number = value.parse::<f64>().ok();
            match name {
                "autovacuum_enabled" => applied.enabled = self.enabled && !matches!(value, "false" | "off" | "no" | "0"),
                "autovacuum_vacuum_threshold" => applied.vacuum_threshold = integer.unwrap_or(self.vacuum_threshold),
                "autovacuum_vacuum_scale_factor" => applied.vacuum_scale_factor = number.unwrap_or(self.vacuum_scale_factor),
                "autovacuum_vacuum_max_threshold" => applied.vacuum_max_threshold = integer.or(self.vacuum_max_threshold),
                "autovacuum_vacuum_insert_threshold" => applied.insert_vacuum_threshold = integer.unwrap_or(self.insert_vacuum_threshold),
                "autovacuum_vacuum_insert_scale_factor" => {
                    applied.insert_vacuum_scale_factor = number.unwrap_or(self.insert_vacuum_scale_factor)
                }
                "autovacuum_analyze_threshold" => applied.analyze_threshold = integer.unwrap_or(self.analyze_threshold),
                "autovacuum_analyze_scale_factor" => applied.analyze_scale_factor = number.unwrap_or(self.analyze_scale_factor),
                "autovacuum_freeze_max_age" => {
                    applied.freeze_max_age = integer.map_or(self.freeze_max_age, |age| age.min(self.freeze_max_age))
                }
                "autovacuum_multixact_freeze_max_age" => {
                    applied.multixact_freeze_max_age =
                        integer.map_or(self.multixact_freeze_max_age, |age| age.min(self.multixact_freeze_max_age))
                }
                _ => {}
            }
        }
        applied
    }
}

/// Reads the tables of the database `client` is connected to.
pub(crate) async fn sample_database(client: &Client) -> Result<Vec<TableRow>, tokio_postgres::Error> {
    let server: HashMap<String, String> = client
        .query(SETTINGS_QUERY, &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let server = AutovacuumSettings::from_server(&server);
    let timestamp = |row: &tokio_postgres::Row, index: usize| row.get::<_, Option<SystemTime>>(index).map(unix_micros);
    let rows = client.query(TABLES_QUERY, &[]).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let kind = ObjectKind::from_relkind(row.get(3))?;
            let applied = server.for_table(&row.get::<_, Vec<String>>(21));
            Some(TableRow {
                database: row.get(0),
                schema: row.get(1),
                name: row.get(2),
                kind,
                live_tuples: row.get(4),
                dead_tuples: row.get(5),
                modified_since_analyze: row.get(6),
                inserted_since_vacuum: row.get(7),
                row_estimate: row.get(8),
                seq_scans: row.get(9),
                index_scans: row.get(10),
                vacuum_count: row.get(11),
                autovacuum_count: row.get(12),
                analyze_count: row.get(13),
                autoanalyze_count: row.get(14),
                last_vacuum_us: timestamp(row, 15),
                last_autovacuum_us: timestamp(row, 16),
                last_analyze_us: timestamp(row, 17),
                last_autoanalyze_us: timestamp(row, 18),
                frozen_xid_age: row.get(19),
                frozen_multixact_age: row.get(20),
                autovacuum_enabled: applied.enabled,
                vacuum_threshold: applied.vacuum_threshold,
                vacuum_scale_factor: applied.vacuum_scale_factor,
                vacuum_max_threshold: applied.vacuum_max_threshold,
                insert_vacuum_threshold: applied.insert_vacuum_threshold,
                insert_vacuum_scale_factor: applied.insert_vacuum_scale_factor,
                analyze_threshold: applied.analyze_threshold,
                analyze_scale_factor: applied.analyze_scale_factor,
                freeze_max_age: applied.freeze_max_age,
                multixact_freeze_max_age: applied.multixact_freeze_max_age,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(pairs: &[(&str, &str)]) -> AutovacuumSettings {
        AutovacuumSettings::from_server(
            &pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn storage_parameters_override_the_server_settings() {
        let server = server(&[
            ("autovacuum", "on"),
            ("autovacuum_vacuum_scale_factor", "0.2"),
            ("autovacuum_freeze_max_age", "200000000"),
        ]);
        let table = server.for_table(&[
            "autovacuum_enabled=false".to_owned(),
            "autovacuum_vacuum_scale_factor=0.01".to_owned(),
            "autovacuum_freeze_max_age=100000000".to_owned(),
            "fillfactor=90".to_owned(),
        ]);
        assert!(!table.enabled);
        assert_eq!(table.vacuum_scale_factor, 0.01);
        assert_eq!(table.freeze_max_age, 100_000_000);
        assert_eq!(table.vacuum_threshold, 50, "the server's where the table sets none");
        assert_eq!(table.vacuum_max_threshold, None, "before PostgreSQL 18");
    }

    #[test]
    fn a_table_cannot_raise_the_freeze_age_nor_enable_what_the_server_disables() {
        let server = server(&[("autovacuum", "off"), ("autovacuum_freeze_max_age", "150000000")]);
        let table = server.for_table(&[
            "autovacuum_enabled=true".to_owned(),
            "autovacuum_freeze_max_age=1000000000".to_owned(),
        ]);
        assert!(!table.enabled);
        assert_eq!(table.freeze_max_age, 150_000_000);
    }
}
