//! The `objects` snapshot: every table, partition, index, TOAST table and materialized view of
//! every database the collector may connect to, with sizes and maintenance times.
//!
//! Sizes are per database, so each round visits the databases one at a time with a short-lived
//! session of its own, apart from the long-lived session that samples activity every second.
//!
//! Listing relations reads the catalog only; measuring one takes a lock on it (and on its
//! indexes and TOAST table), which waits behind an exclusive lock held by a migration, `VACUUM
//! FULL` or `REINDEX`. Relations locked exclusively are therefore not measured (they are sent
//! with the reason; the ingester keeps their last sizes), and should a lock be taken while the
//! others are measured, the relations are measured in halves until the locked one is found:
//! one locked table never costs the sizes of its whole database.

use std::collections::HashMap;
use std::time::SystemTime;

use pgmon_contract::event::{ObjectKind, ObjectRow};
use tokio_postgres::Client;

use crate::activity::unix_micros;

/// The databases worth visiting: those that accept connections and that the role may connect to.
pub(crate) const DATABASES_QUERY: &str = "SELECT datname::text FROM pg_database
     WHERE datallowconn AND NOT datistemplate AND has_database_privilege(datname, 'CONNECT')
     ORDER BY datname";

/// One row per relation of the current database, from the catalog alone (no lock taken).
/// Objects created by initdb (OIDs below FirstNormalObjectId, 16384) and other sessions'
/// temporary tables are left out. Each relation comes with what measuring it locks besides
/// itself: its indexes and its TOAST table. Parents are found by joins, not by a subquery per
/// relation: `pg_class` has no index on `reltoastrelid`, and a database of 50,000 relations
/// made a per-TOAST-table lookup take a minute of server time.
const RELATIONS_QUERY: &str = "WITH relations AS (
         SELECT c.oid, c.relnamespace, c.relname, c.relkind, c.reltuples, c.reltoastrelid, c.relispartition
         FROM pg_class c
         WHERE c.relkind IN ('r', 'p', 'i', 'I', 't', 'm') AND c.relpersistence <> 't' AND c.oid >= 16384
     ),
     toast_owners AS (
         SELECT reltoastrelid AS toast_oid, min(oid) AS owner_oid FROM pg_class WHERE reltoastrelid <> 0 GROUP BY reltoastrelid
     ),
     partition_parents AS (
         SELECT inhrelid, min(inhparent) AS parent_oid FROM pg_inherits GROUP BY inhrelid
     ),
     indexes AS (
         SELECT indrelid, array_agg(indexrelid) AS index_oids FROM pg_index GROUP BY indrelid
     )
     SELECT r.oid, current_database()::text, n.nspname::text, r.relname::text, r.relkind,
            pn.nspname || '.' || p.relname,
            CASE WHEN r.reltuples >= 0 AND r.relkind IN ('r', 'm', 't', 'i') THEN r.reltuples::int8 END,
            s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
            coalesce(ix.index_oids, '{}') || r.reltoastrelid
     FROM relations r
     JOIN pg_namespace n ON n.oid = r.relnamespace
     LEFT JOIN pg_index own_index ON r.relkind IN ('i', 'I') AND own_index.indexrelid = r.oid
     LEFT JOIN toast_owners t ON r.relkind = 't' AND t.toast_oid = r.oid
     LEFT JOIN partition_parents pp ON r.relispartition AND pp.inhrelid = r.oid
     LEFT JOIN pg_class p ON p.oid = coalesce(own_index.indrelid, t.owner_oid, pp.parent_oid)
     LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
     LEFT JOIN indexes ix ON ix.indrelid = r.oid
     LEFT JOIN pg_stat_all_tables s ON s.relid = r.oid
     ORDER BY n.nspname, r.relname";

/// Relations of the current database locked exclusively, or waited for exclusively (a lock
/// asked for queues behind such a waiter too), with who holds or waits.
const EXCLUSIVELY_LOCKED_QUERY: &str = "SELECT relation,
            string_agg(DISTINCT 'AccessExclusiveLock ' || CASE WHEN granted THEN 'held' ELSE 'awaited' END || ' by pid ' || pid, ', ')
     FROM pg_locks
     WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock'
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
     GROUP BY relation";

/// The sizes of the given relations. The size functions lock each relation, its indexes and
/// its TOAST table; the session's short lock_timeout turns a lock taken meanwhile into an error
/// rather than a wait.
/// The relations are joined from an unnested array rather than matched with `= ANY`, which
/// PostgreSQL 13 checks element by element for every row of `pg_class`.
const SIZES_QUERY: &str = "SELECT c.oid, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
            CASE WHEN c.relkind IN ('r', 'p', 'm') THEN pg_indexes_size(c.oid) ELSE 0 END,
            CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) ELSE 0 END
     FROM unnest($1::oid[]) AS measured(oid) JOIN pg_class c ON c.oid = measured.oid";

/// `lock_not_available`: lock_timeout expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// A relation's sizes: total, main fork, indexes, TOAST.
type Sizes = [i64; 4];

/// Reads the objects of the database `client` is connected to.
pub(crate) async fn sample_database(client: &Client) -> Result<Vec<ObjectRow>, tokio_postgres::Error> {
    let relations = client.query(RELATIONS_QUERY, &[]).await?;
    let locked: HashMap<u32, String> = client
        .query(EXCLUSIVELY_LOCKED_QUERY, &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut stale: HashMap<u32, String> = HashMap::new();
    let mut measurable = Vec::with_capacity(relations.len());
    for relation in &relations {
        let oid: u32 = relation.get(0);
        let locks: Vec<&String> = std::iter::once(oid)
            .chain(relation.get::<_, Vec<u32>>(11))
            .filter_map(|locked_oid| locked.get(&locked_oid))
            .collect();
        match locks.first() {
            Some(holders) => {
                stale.insert(oid, format!("locked: {holders}"));
            }
            None => measurable.push(oid),
        }
    }
    let sizes = measure_around_locks(client, measurable, &mut stale).await?;
    let timestamp = |row: &tokio_postgres::Row, index: usize| row.get::<_, Option<SystemTime>>(index).map(unix_micros);
    Ok(relations
        .iter()
        .filter_map(|row| {
            let oid: u32 = row.get(0);
            let kind = ObjectKind::from_relkind(row.get(4))?;
            // A relation dropped between listing and measuring has no sizes and no reason.
            let ([total_bytes, table_bytes, index_bytes, toast_bytes], size_stale_reason) = match (sizes.get(&oid), stale.remove(&oid)) {
                (Some(sizes), _) => (*sizes, None),
                (None, Some(reason)) => ([0; 4], Some(reason)),
                (None, None) => return None,
            };
            Some(ObjectRow {
                database: row.get(1),
                schema: row.get(2),
                name: row.get(3),
                kind,
                parent: row.get(5),
                total_bytes,
                table_bytes,
                index_bytes,
                toast_bytes,
                row_estimate: row.get(6),
                last_vacuum_us: timestamp(row, 7),
                last_autovacuum_us: timestamp(row, 8),
                last_analyze_us: timestamp(row, 9),
                last_autoanalyze_us: timestamp(row, 10),
                size_stale_reason,
            })
        })
        .collect())
}

/// Measures `oids` in one query; when a lock taken meanwhile makes it time out, measures each
/// half apart, down to the relation that cannot be measured, which goes to `stale`.
async fn measure_around_locks(
    client: &Client,
    oids: Vec<u32>,
    stale: &mut HashMap<u32, String>,
) -> Result<HashMap<u32, Sizes>, tokio_postgres::Error> {
    let mut sizes = HashMap::with_capacity(oids.len());
    let mut pending = vec![oids];
    while let Some(chunk) = pending.pop() {
        if chunk.is_empty() {
            continue;
        }
        match client.query(SIZES_QUERY, &[&chunk]).await {
            Ok(rows) => {
                for row in rows {
                    // NULL for a relation dropped since it was listed.
                    let measured: [Option<i64>; 4] = [row.get(1), row.get(2), row.get(3), row.get(4)];
                    if let [Some(total), Some(table), Some(indexes), Some(toast)] = measured {
                        sizes.insert(row.get(0), [total, table, indexes, toast]);
                    }
                }
            }
            Err(error) if error.code().is_some_and(|code| code.code() == LOCK_NOT_AVAILABLE) => {
                if let [oid] = chunk[..] {
                    stale.insert(oid, "locked: its lock was not granted within the lock timeout".to_owned());
                } else {
                    let (first, second) = chunk.split_at(chunk.len() / 2);
                    pending.push(first.to_vec());
                    pending.push(second.to_vec());
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(sizes)
}
