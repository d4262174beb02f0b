//! The `statements` snapshot: pg_stat_statements read without texts, texts fetched only for
//! query ids not sent before (or not for `--statement-texts-every`), and pg_stat_statements_info
//! for resets and evictions.
//!
//! Columns are chosen by what the installed extension's view has, not by the server version:
//! an extension left at an older version after a server upgrade has the older columns.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use pgmon_contract::event::{Limitation, LimitationReason, SnapshotKind, StatementRow, StatementsInfo};
use tokio_postgres::{Client, Row, Statement};

use crate::activity::unix_micros;
use crate::redact::redact_passwords;

/// Statement texts longer than this many characters are cut (generated SQL can be megabytes).
const STATEMENT_TEXT_MAX_LENGTH: i32 = 16_384;

/// When the set of query ids whose text was sent grows past this, it is cleared: texts are
/// sent again rather than the collector's memory growing with a server's statement churn.
const SENT_TEXTS_MAX: usize = 50_000;

/// How the statements of one target are read, prepared once per connection.
pub(crate) struct StatementsReader {
    counters: Statement,
    texts: Statement,
    info: Option<Statement>,
    /// Names of databases and roles by OID, read again when an entry has one not seen yet:
    /// joining them in the counters query cost a third of its server time.
    names: HashMap<(char, u32), String>,
}

/// Every database and role, by kind (`d`, `r`) and OID.
const NAMES_QUERY: &str = "SELECT 'd'::\"char\", oid, datname::text FROM pg_database
     UNION ALL SELECT 'r'::\"char\", oid, rolname::text FROM pg_roles";

/// The view's columns this build reads, each with the columns that hold it, newest name first.
/// A value no candidate column holds is NULL (for optional fields) or 0.
const COUNTER_COLUMNS: &[(&[&str], &str)] = &[
    (&["toplevel"], "NULL::bool"),
    (&["calls"], "0::int8"),
    (&["total_exec_time"], "0::float8"),
    (&["min_exec_time"], "0::float8"),
    (&["max_exec_time"], "0::float8"),
    (&["mean_exec_time"], "0::float8"),
    (&["stddev_exec_time"], "0::float8"),
    (&["plans"], "0::int8"),
    (&["total_plan_time"], "0::float8"),
    (&["rows"], "0::int8"),
    (&["shared_blks_hit"], "0::int8"),
    (&["shared_blks_read"], "0::int8"),
    (&["shared_blks_dirtied"], "0::int8"),
    (&["shared_blks_written"], "0::int8"),
    (&["local_blks_hit"], "0::int8"),
    (&["local_blks_read"], "0::int8"),
    (&["local_blks_dirtied"], "0::int8"),
    (&["local_blks_written"], "0::int8"),
    (&["temp_blks_read"], "0::int8"),
    (&["temp_blks_written"], "0::int8"),
    (&["shared_blk_read_time", "blk_read_time"], "0::float8"),
    (&["shared_blk_write_time", "blk_write_time"], "0::float8"),
    (&["local_blk_read_time"], "NULL::float8"),
    (&["local_blk_write_time"], "NULL::float8"),
    (&["temp_blk_read_time"], "NULL::float8"),
    (&["temp_blk_write_time"], "NULL::float8"),
    (&["wal_records"], "0::int8"),
    (&["wal_fpi"], "0::int8"),
    (&["wal_bytes"], "0::int8"),
    (&["wal_buffers_full"], "NULL::int8"),
    (&["jit_functions"], "NULL::int8"),
    (&["parallel_workers_to_launch"], "NULL::int8"),
    (&["parallel_workers_launched"], "NULL::int8"),
    (&["stats_since"], "NULL::timestamptz"),
];

/// JIT time is reported in parts; pgmon keeps their sum.
const JIT_TIME_COLUMNS: &[&str] = &[
    "jit_generation_time",
    "jit_inlining_time",
    "jit_optimization_time",
    "jit_emission_time",
    "jit_deform_time",
];

fn counters_query(schema: &str, columns: &BTreeSet<String>) -> String {
    let mut select: Vec<String> = COUNTER_COLUMNS
        .iter()
        .map(
            |(candidates, absent)| match candidates.iter().find(|column| columns.contains(**column)) {
                // wal_bytes is numeric; int8 holds any real amount of WAL.
                Some(column) if *column == "wal_bytes" => "s.wal_bytes::int8".to_owned(),
                Some(column) => format!("s.{column}"),
                None => (*absent).to_owned(),
            },
        )
        .collect();
    let jit_parts: Vec<String> = JIT_TIME_COLUMNS
        .iter()
        .filter(|column| columns.contains(**column))
        .map(|column| format!("s.{column}"))
        .collect();
    select.push(if jit_parts.is_empty() {
        "NULL::float8".to_owned()
    } else {
        jit_parts.join(" + ")
    });
    format!(
        "SELECT s.dbid, s.userid, s.queryid, {}
         FROM {schema}.pg_stat_statements(false) s
         WHERE s.queryid IS NOT NULL",
        select.join(", ")
    )
}

/// Finds the extension and prepares its queries; a target without a usable pg_stat_statements
/// gets a limitation, not an error: every other kind is still sampled.
pub(crate) async fn prepare(client: &Client) -> Result<Result<StatementsReader, Limitation>, tokio_postgres::Error> {
    let found = client
        .query_opt(
            "SELECT quote_ident(n.nspname), n.nspname::text, current_database()::text
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE e.extname = 'pg_stat_statements'",
            &[],
        )
        .await?;
    let Some(found) = found else {
        let database: String = client.query_one("SELECT current_database()::text", &[]).await?.get(0);
        return Ok(Err(Limitation {
            kind: SnapshotKind::Statements,
            reason: LimitationReason::ExtensionMissing,
            message: format!(
                "pg_stat_statements is not installed in database {database}: add it to shared_preload_libraries, restart, and run CREATE EXTENSION pg_stat_statements there"
            ),
        }));
    };
    let (quoted_schema, schema): (String, String) = (found.get(0), found.get(1));
    let columns: BTreeSet<String> = client
        .query(
            "SELECT a.attname::text FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = 'pg_stat_statements' AND a.attnum > 0 AND NOT a.attisdropped",
            &[&schema],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let has_info = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = 'pg_stat_statements_info'",
            &[&schema],
        )
        .await?
        .is_some();
    let counters = client.prepare(&counters_query(&quoted_schema, &columns)).await?;
    // The function refuses to run when the library is not preloaded; find out now, once.
    if let Err(error) = client
        .query(&format!("SELECT 1 FROM {quoted_schema}.pg_stat_statements(false) LIMIT 1"), &[])
        .await
    {
        let reason = match error.code().map(|code| code.code()) {
            Some("55000") => LimitationReason::ExtensionNotLoaded,
            Some("42501") => LimitationReason::InsufficientPrivilege,
            _ => return Err(error),
        };
        let message = match reason {
            LimitationReason::ExtensionNotLoaded => {
                "pg_stat_statements is installed but not loaded: add it to shared_preload_libraries and restart the server".to_owned()
            }
            _ => "the monitoring role may not read pg_stat_statements: GRANT pg_monitor TO it".to_owned(),
        };
        return Ok(Err(Limitation {
            kind: SnapshotKind::Statements,
            reason,
            message,
        }));
    }
    let texts = client
        .prepare(&format!(
            "SELECT DISTINCT ON (queryid) queryid, left(query, $2::int4)
             FROM {quoted_schema}.pg_stat_statements(true) WHERE queryid = ANY($1)"
        ))
        .await?;
    let info = if has_info {
        Some(
            client
                .prepare(&format!("SELECT dealloc, stats_reset FROM {quoted_schema}.pg_stat_statements_info"))
                .await?,
        )
    } else {
        None
    };
    Ok(Ok(StatementsReader {
        counters,
        texts,
        info,
        names: HashMap::new(),
    }))
}

/// Query ids whose text this collector has published for a target, and when. A text is sent
/// again once `resend_after` has passed, so that the stream always holds a recent copy: a
/// rebuild from a stream whose oldest messages have expired still finds every text.
pub(crate) struct SentTexts {
    sent_at: HashMap<i64, Instant>,
    resend_after: Duration,
}

impl SentTexts {
    pub(crate) fn new(resend_after: Duration) -> SentTexts {
        SentTexts {
            sent_at: HashMap::new(),
            resend_after,
        }
    }

    /// Forgets every text, so the next snapshot carries all of them again (after a snapshot
    /// that carried texts could not be queued, or a different server answers).
    pub(crate) fn forget(&mut self) {
        self.sent_at.clear();
    }

    fn is_due(&self, query_id: i64, now: Instant) -> bool {
        self.sent_at
            .get(&query_id)
            .is_none_or(|sent| now.duration_since(*sent) >= self.resend_after)
    }
}

/// Takes one sample: every entry's counters, the texts of query ids not sent before, and the
/// extension's reset and eviction counters.
pub(crate) async fn sample(
    client: &Client,
    reader: &mut StatementsReader,
    sent_texts: &mut SentTexts,
) -> Result<(Option<StatementsInfo>, Vec<StatementRow>), tokio_postgres::Error> {
    let info = match &reader.info {
        Some(statement) => {
            let row = client.query_one(statement, &[]).await?;
            Some(StatementsInfo {
                dealloc: row.get(0),
                stats_reset_us: unix_micros(row.get::<_, SystemTime>(1)),
            })
        }
        None => None,
    };
    let counters = client.query(&reader.counters, &[]).await?;
    let known =
        |names: &HashMap<(char, u32), String>, row: &Row| names.contains_key(&('d', row.get(0))) && names.contains_key(&('r', row.get(1)));
    if !counters.iter().all(|row| known(&reader.names, row)) {
        reader.names = client
            .query(NAMES_QUERY, &[])
            .await?
            .iter()
            .map(|row| ((row.get::<_, i8>(0) as u8 as char, row.get(1)), row.get(2)))
            .collect();
    }
    let mut rows: Vec<StatementRow> = counters.iter().map(|row| statement_row(row, &reader.names)).collect();
    if sent_texts.sent_at.len() > SENT_TEXTS_MAX {
        sent_texts.forget();
    }
    let now = Instant::now();
    let unsent: Vec<i64> = rows
        .iter()
        .map(|row| row.query_id)
        .filter(|query_id| sent_texts.is_due(*query_id, now))
        .collect::<BTreeSet<i64>>()
        .into_iter()
        .collect();
    if !unsent.is_empty() {
        let texts: std::collections::HashMap<i64, String> = client
            .query(&reader.texts, &[&unsent, &STATEMENT_TEXT_MAX_LENGTH])
            .await?
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    redact_passwords(row.get::<_, Option<&str>>(1).unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        // One row per query id carries the text; the same id under other users shares it.
        for row in &mut rows {
            if let Some(text) = texts.get(&row.query_id) {
                if sent_texts.is_due(row.query_id, now) {
                    sent_texts.sent_at.insert(row.query_id, now);
                    row.query = Some(text.clone());
                }
            }
        }
    }
    Ok((info, rows))
}

/// An entry of the counters query, its database and role named (by OID when gone since).
fn statement_row(row: &Row, names: &HashMap<(char, u32), String>) -> StatementRow {
    let name = |kind: char, oid: u32| names.get(&(kind, oid)).cloned().unwrap_or_else(|| oid.to_string());
    StatementRow {
        database: name('d', row.get(0)),
        user: name('r', row.get(1)),
        query_id: row.get(2),
        toplevel: row.get(3),
        query: None,
        calls: row.get(4),
        total_exec_time_ms: row.get(5),
        min_exec_time_ms: row.get(6),
        max_exec_time_ms: row.get(7),
        mean_exec_time_ms: row.get(8),
        stddev_exec_time_ms: row.get(9),
        plans: row.get(10),
        total_plan_time_ms: row.get(11),
        rows: row.get(12),
        shared_blks_hit: row.get(13),
        shared_blks_read: row.get(14),
        shared_blks_dirtied: row.get(15),
        shared_blks_written: row.get(16),
        local_blks_hit: row.get(17),
        local_blks_read: row.get(18),
        local_blks_dirtied: row.get(19),
        local_blks_written: row.get(20),
        temp_blks_read: row.get(21),
        temp_blks_written: row.get(22),
        shared_blk_read_time_ms: row.get(23),
        shared_blk_write_time_ms: row.get(24),
        local_blk_read_time_ms: row.get(25),
        local_blk_write_time_ms: row.get(26),
        temp_blk_read_time_ms: row.get(27),
        temp_blk_write_time_ms: row.get(28),
        wal_records: row.get(29),
        wal_fpi: row.get(30),
        wal_bytes: row.get(31),
        wal_buffers_full: row.get(32),
        jit_functions: row.get(33),
        parallel_workers_to_launch: row.get(34),
        parallel_workers_launched: row.get(35),
        stats_since_us: row.get::<_, Option<SystemTime>>(36).map(unix_micros),
        jit_time_ms: row.get(37),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn renamed_columns_are_read_under_either_name() {
        let old = counters_query("public", &columns(&["calls", "blk_read_time", "jit_generation_time"]));
        assert!(old.contains("s.blk_read_time"), "{old}");
        assert!(old.contains("NULL::bool"), "{old}");
        let new = counters_query(
            "public",
            &columns(&["calls", "shared_blk_read_time", "blk_read_time", "toplevel", "wal_bytes"]),
        );
        assert!(new.contains("s.shared_blk_read_time") && !new.contains("s.blk_read_time"), "{new}");
        assert!(new.contains("s.toplevel") && new.contains("s.wal_bytes::int8"), "{new}");
        assert!(new.ends_with("WHERE s.queryid IS NOT NULL"));
    }
}
