//! Objects the collector could not measure: a relation locked exclusively arrives with its
//! reason and sizes of 0, and a database the collector could not read arrives as a name and a
//! reason. Both are stored with the last sizes measured and when, so that every sample holds
//! every object: a migration holding a lock never empties a database from the objects page,
//! nor its size from the totals.
//!
//! The last measurement is looked for in the newest partitions first; it is usually in the
//! open one (the round before).

use duckdb::{params, Connection};
use pgmon_contract::event::{ObjectRow, Snapshot};

use super::error::StoreError;

/// How the stale reason of an object of a database that could not be read begins.
pub const SKIPPED_DATABASE_REASON: &str = "database not read: ";

/// Fills in the stale objects of `snapshot`, just appended to `catalog`, from the newest of
/// `sources` (partition aliases, newest first) that measured them.
pub(crate) fn fill_in(
    connection: &Connection,
    catalog: &str,
    sources: &[String],
    snapshot: &Snapshot<ObjectRow>,
) -> Result<(), StoreError> {
    let target = snapshot.target.as_str();
    let collected_at_us = snapshot.collected_at_us;
    if snapshot.rows.iter().any(|row| row.size_stale_reason.is_some()) {
        for source in sources {
            connection
                .execute(&last_sizes_sql(catalog, source), params![target, collected_at_us])
                .map_err(StoreError::Write)?;
            let unfilled: i64 = connection
                .query_row(
                    &format!(
                        "SELECT count(*) FROM {catalog}.object_samples
                         WHERE target = $1 AND collected_at = make_timestamp($2) AND size_stale_reason IS NOT NULL AND size_measured_at IS NULL"
                    ),
                    params![target, collected_at_us],
                    |row| row.get(0),
                )
                .map_err(StoreError::Write)?;
            if unfilled == 0 {
                break;
            }
        }
    }
    // Every part of a sample carries the envelope: its first part brings the skipped databases.
    let first_part = snapshot.part.is_none_or(|part| part.index == 0);
    let skipped = snapshot.objects_info.iter().flat_map(|info| &info.skipped_databases);
    for skipped in skipped.filter(|_| first_part) {
        let reason = format!("{SKIPPED_DATABASE_REASON}{}", skipped.reason);
        for source in sources {
            let copied = connection
                .execute(
                    &last_objects_of_database_sql(catalog, source),
                    params![target, collected_at_us, reason, skipped.database],
                )
                .map_err(StoreError::Write)?;
            if copied > 0 {
                break;
            }
        }
    }
    Ok(())
}

/// Gives the stale objects of one sample (`$1` target, `$2` collection time) in `catalog` the
/// newest sizes `source` holds of them, measured or filled in before.
fn last_sizes_sql(catalog: &str, source: &str) -> String {
    format!(
        "UPDATE {catalog}.object_samples AS o
         SET total_bytes = l.total_bytes, table_bytes = l.table_bytes, index_bytes = l.index_bytes,
             toast_bytes = l.toast_bytes, size_measured_at = l.measured_at
         FROM (
             WITH stale AS (
                 SELECT DISTINCT database, schema_name, name FROM {catalog}.object_samples
                 WHERE target = $1 AND collected_at = make_timestamp($2) AND size_stale_reason IS NOT NULL AND size_measured_at IS NULL
             )
             SELECT s.database, s.schema_name, s.name,
                    arg_max(s.total_bytes, s.collected_at) AS total_bytes, arg_max(s.table_bytes, s.collected_at) AS table_bytes,
                    arg_max(s.index_bytes, s.collected_at) AS index_bytes, arg_max(s.toast_bytes, s.collected_at) AS toast_bytes,
                    arg_max(coalesce(s.size_measured_at, s.collected_at), s.collected_at) AS measured_at
             FROM {source}.object_samples s JOIN stale USING (database, schema_name, name)
             WHERE s.target = $1 AND s.collected_at < make_timestamp($2)
               AND (s.size_stale_reason IS NULL OR s.size_measured_at IS NOT NULL)
             GROUP BY ALL
         ) AS l
         WHERE o.target = $1 AND o.collected_at = make_timestamp($2) AND o.size_stale_reason IS NOT NULL
           AND o.size_measured_at IS NULL
           AND o.database = l.database AND o.schema_name = l.schema_name AND o.name = l.name"
    )
}

/// Copies the objects of database `$4` from the newest sample of `source` that has them into
/// the sample `$2` of `catalog`, stale for reason `$3`.
fn last_objects_of_database_sql(catalog: &str, source: &str) -> String {
    format!(
        "INSERT INTO {catalog}.object_samples BY NAME
         SELECT * REPLACE (make_timestamp($2) AS collected_at, $3::VARCHAR AS size_stale_reason,
                           coalesce(size_measured_at, collected_at) AS size_measured_at)
         FROM {source}.object_samples
         WHERE target = $1 AND database = $4 AND collected_at = (
             SELECT max(collected_at) FROM {source}.object_samples
             WHERE target = $1 AND database = $4 AND collected_at < make_timestamp($2)
         )"
    )
}
