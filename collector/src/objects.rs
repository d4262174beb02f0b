//! The `objects` snapshot: every table, partition, index, TOAST table and materialized view of
//! every database the collector may connect to, with sizes and maintenance times.
//!
//! Sizes are per database, so each round visits the databases one at a time with a short-lived
//! session of its own, apart from the long-lived session that samples activity every second.

use std::time::SystemTime;

use pgmon_common::event::{ObjectKind, ObjectRow};
use tokio_postgres::Client;

use crate::activity::unix_micros;

/// The databases worth visiting: those that accept connections and that the role may connect to.
pub(crate) const DATABASES_QUERY: &str = "SELECT datname::text FROM pg_database
     WHERE datallowconn AND NOT datistemplate AND has_database_privilege(datname, 'CONNECT')
     ORDER BY datname";

/// One row per relation of the current database. Objects created by initdb (OIDs below
/// FirstNormalObjectId, 16384) and other sessions' temporary tables are left out.
///
/// The size functions take an AccessShareLock per relation; the session's short lock_timeout
/// makes a relation locked by DDL fail the round for this database rather than wait behind it.
const OBJECTS_QUERY: &str = "WITH relations AS (
         SELECT c.oid, c.relnamespace, c.relname, c.relkind, c.reltuples, c.reltoastrelid,
                CASE
                    WHEN c.relkind IN ('i', 'I') THEN (SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = c.oid)
                    WHEN c.relkind = 't' THEN (SELECT t.oid FROM pg_class t WHERE t.reltoastrelid = c.oid LIMIT 1)
                    WHEN c.relispartition THEN (SELECT h.inhparent FROM pg_inherits h WHERE h.inhrelid = c.oid LIMIT 1)
                END AS parent_oid
         FROM pg_class c
         WHERE c.relkind IN ('r', 'p', 'i', 'I', 't', 'm') AND c.relpersistence <> 't' AND c.oid >= 16384
     )
     SELECT current_database()::text, n.nspname::text, r.relname::text, r.relkind,
            pn.nspname || '.' || p.relname,
            pg_total_relation_size(r.oid), pg_relation_size(r.oid),
            CASE WHEN r.relkind IN ('r', 'p', 'm') THEN pg_indexes_size(r.oid) ELSE 0 END,
            CASE WHEN r.reltoastrelid <> 0 THEN pg_total_relation_size(r.reltoastrelid) ELSE 0 END,
            CASE WHEN r.reltuples >= 0 AND r.relkind IN ('r', 'm', 't', 'i') THEN r.reltuples::int8 END,
            s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze
     FROM relations r
     JOIN pg_namespace n ON n.oid = r.relnamespace
     LEFT JOIN pg_class p ON p.oid = r.parent_oid
     LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
     LEFT JOIN pg_stat_all_tables s ON s.relid = r.oid
     ORDER BY n.nspname, r.relname";

/// Reads the objects of the database `client` is connected to.
pub(crate) async fn sample_database(client: &Client) -> Result<Vec<ObjectRow>, tokio_postgres::Error> {
    let rows = client.query(OBJECTS_QUERY, &[]).await?;
    let timestamp = |row: &tokio_postgres::Row, index: usize| row.get::<_, Option<SystemTime>>(index).map(unix_micros);
    Ok(rows
        .iter()
        .filter_map(|row| {
            let kind = ObjectKind::from_relkind(row.get(3))?;
            Some(ObjectRow {
                database: row.get(0),
                schema: row.get(1),
                name: row.get(2),
                kind,
                parent: row.get(4),
                total_bytes: row.get(5),
                table_bytes: row.get(6),
                index_bytes: row.get(7),
                toast_bytes: row.get(8),
                row_estimate: row.get(9),
                last_vacuum_us: timestamp(row, 10),
                last_autovacuum_us: timestamp(row, 11),
                last_analyze_us: timestamp(row, 12),
                last_autoanalyze_us: timestamp(row, 13),
            })
        })
        .collect())
}
