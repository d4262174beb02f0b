//! Every table a partition stores, one file each: its columns in order (name, DuckDB type and
//! where the value comes from), how a closed partition orders its rows, and the Arrow batch it
//! is appended from. Storage, compaction and the views across partitions derive from these
//! declarations; the DDL is in `migrations/`, and `every_table_matches_its_row_type` checks that
//! both agree with each other and with the row types of the event contract.

pub(crate) mod activity;
pub(crate) mod activity_minutes;
pub(crate) mod database;
pub(crate) mod locks;
pub(crate) mod maintenance;
pub(crate) mod objects;
pub(crate) mod parts;
pub(crate) mod progress;
pub(crate) mod replication;
pub(crate) mod settings;
pub(crate) mod statements;
pub(crate) mod status;
pub(crate) mod wal;

use std::sync::Arc;

use duckdb::arrow::array::{new_null_array, ArrayRef, StringBuilder, TimestampMicrosecondBuilder};
use duckdb::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, Snapshot, SnapshotKind, SnapshotRow};
use serde::{Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};

/// One stored table.
pub(crate) struct Table {
    /// The table the Appender writes.
    pub name: &'static str,
    /// The view readers use instead of the table, where the table stores its rows in another
    /// shape (`activity_samples` over `activity_sample_rows`).
    pub read_through: Option<&'static str>,
    pub columns: &'static [Column],
    pub compaction: Compaction,
    pub stores: Stores,
}

/// Which snapshots a table stores rows of, and how its batch is built.
pub(crate) struct Stores {
    /// The kinds whose snapshots give it rows.
    pub kinds: &'static [SnapshotKind],
    /// Its rows for some snapshots of those kinds (others are ignored).
    pub batch: fn(&[(u64, &AnySnapshot)]) -> RecordBatch,
    /// One row per sampled row: counted as the batch's rows, and built in chunks on a second
    /// thread while the chunk before is appended (these are the large tables).
    pub sample_rows: bool,
}

/// The snapshots of `Row`'s kind among `snapshots`, with their sequences.
pub(crate) fn snapshots_of<'a, Row: SnapshotRow>(snapshots: &[(u64, &'a AnySnapshot)]) -> Vec<(u64, &'a Snapshot<Row>)> {
    snapshots
        .iter()
        .filter_map(|(sequence, snapshot)| Row::of(snapshot).map(|snapshot| (*sequence, snapshot)))
        .collect()
}

impl Table {
    /// The name readers use, in a partition and across partitions.
    pub(crate) const fn read_as(&self) -> &'static str {
        match self.read_through {
            Some(view) => view,
            None => self.name,
        }
    }

    /// Whether the table has a column named `name`.
    pub(crate) fn has_column(&self, name: &str) -> bool {
        self.columns.iter().any(|column| column.name == name)
    }
}

/// The SELECT list that reads the table's rows back as `Reply`, derived from the declaration:
/// each field of the reply type from the column stored from that field (or named like it),
/// timestamps as microseconds since the epoch (`<column>_us`), lists as empty rather than NULL.
/// Renaming a column, or a field of the row type, then changes the reads with it.
pub(crate) fn select_list_of<'a, Reply: Deserialize<'a>>(table: &Table) -> String {
    let columns: Vec<String> = row_fields::<Reply>()
        .iter()
        .map(|field| {
            let field = field.name().as_str();
            let column = table
                .columns
                .iter()
                .find(|column| matches!(column.source, Source::Field(source) if source == field) || column.name == field)
                .or_else(|| {
                    let column_name = field.strip_suffix("_us")?;
                    table
                        .columns
                        .iter()
                        .find(|column| column.name == column_name && column.sql_type == "TIMESTAMP")
                })
                .unwrap_or_else(|| panic!("{}: no column gives the field {field}", table.name));
            let value = if column.sql_type == "TIMESTAMP" {
                format!("epoch_us({})", column.name)
            } else if column.sql_type.ends_with("[]") {
                format!("coalesce({}, [])", column.name)
            } else {
                column.name.to_owned()
            };
            if value == field {
                value
            } else {
                format!("{value} AS {field}")
            }
        })
        .collect();
    columns.join(", ")
}

/// A column of a table, in the table's order.
pub(crate) struct Column {
    pub name: &'static str,
    /// The type as DuckDB names it (`duckdb_columns().data_type`).
    pub sql_type: &'static str,
    pub source: Source,
}

pub(crate) const fn column(name: &'static str, sql_type: &'static str, source: Source) -> Column {
    Column { name, sql_type, source }
}

/// Where a column's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The snapshot's target.
    Target,
    /// When the snapshot was collected.
    CollectedAt,
    /// The field of the row type with this (serde) name; fields named `*_us` are timestamps.
    /// Matched by name, so the order of the fields in the row type does not matter.
    Field(&'static str),
    /// NULL when appended; the store fills it in afterwards.
    FilledInByStore,
    /// Computed by the table's own batch builder from the snapshot.
    Computed,
}

/// How a closed partition's copy of the table is ordered.
#[derive(Clone, Copy)]
pub(crate) enum Compaction {
    /// As written (by time).
    ArrivalOrder,
    /// By these columns. Each backend's (or entry's) rows span the whole period: runs shorter
    /// than DuckDB's compression groups (2,048 values) would break the delta encoding of
    /// `collected_at` at every run's end.
    SortedBy(&'static str),
    /// Rewritten by this statement (`source` catalog, `target` catalog).
    Rewritten(fn(&str, &str) -> String),
}

/// Every table of a partition that holds snapshot data.
pub(crate) const TABLES: &[&Table] = &[
    &activity::ACTIVITY_SNAPSHOTS,
    &activity::ACTIVITY_SAMPLE_ROWS,
    &activity_minutes::ACTIVITY_MINUTES,
    &locks::LOCK_SAMPLES,
    &database::INSTANCE_SAMPLES,
    &database::DATABASE_SAMPLES,
    &status::TARGET_STATUS,
    &parts::SNAPSHOT_PARTS,
    &statements::STATEMENT_SAMPLES,
    &statements::STATEMENT_TEXT_COPIES,
    &objects::OBJECT_SAMPLES,
    &maintenance::TABLE_SAMPLES,
    &progress::PROGRESS_SAMPLES,
    &replication::REPLICATION_SAMPLES,
    &replication::SLOT_SAMPLES,
    &settings::SETTING_SAMPLES,
    &wal::WAL_SAMPLES,
    &wal::IO_SAMPLES,
];

/// The table named `name`, if it is one of [`TABLES`].
pub(crate) fn table_named(name: &str) -> Option<&'static Table> {
    TABLES.iter().copied().find(|table| table.name == name)
}

/// The rows of a samples table, built through serde: each column from its declared source.
pub(crate) fn sample_rows_batch<Row: Serialize + serde::de::DeserializeOwned>(
    table: &Table,
    snapshots: &[(u64, &Snapshot<Row>)],
) -> RecordBatch {
    let row_count = snapshots.iter().map(|(_, snapshot)| snapshot.rows.len()).sum();
    let mut target = StringBuilder::with_capacity(row_count, row_count * 8);
    let mut collected_at = TimestampMicrosecondBuilder::with_capacity(row_count);
    let mut rows: Vec<&Row> = Vec::with_capacity(row_count);
    for (_, snapshot) in snapshots {
        for row in &snapshot.rows {
            target.append_value(snapshot.target.as_str());
            collected_at.append_value(snapshot.collected_at_us);
            rows.push(row);
        }
    }
    let fields = row_fields::<Row>();
    let row_columns = serde_arrow::to_record_batch(&fields, &rows).expect("row fields are traced from the row type");
    let snapshot_columns = SnapshotColumns {
        target: Arc::new(target.finish()),
        collected_at: Arc::new(collected_at.finish()),
    };
    columns_by_declaration(table, &row_columns, Some(&snapshot_columns))
}

/// The values of the snapshot a row came from, one per row.
pub(crate) struct SnapshotColumns {
    pub target: ArrayRef,
    pub collected_at: ArrayRef,
}

/// The table's columns in its order, each from its declared source: the fields of
/// `row_columns` by name, the snapshot's values from `snapshot`.
pub(crate) fn columns_by_declaration(table: &Table, row_columns: &RecordBatch, snapshot: Option<&SnapshotColumns>) -> RecordBatch {
    let row_count = row_columns.num_rows();
    let snapshot_column = |column: &Column, pick: fn(&SnapshotColumns) -> &ArrayRef| {
        let snapshot = snapshot.unwrap_or_else(|| panic!("{}.{}: no snapshot values given", table.name, column.name));
        Arc::clone(pick(snapshot))
    };
    let columns = table.columns.iter().map(|column| {
        let values = match column.source {
            Source::Target => snapshot_column(column, |snapshot| &snapshot.target),
            Source::CollectedAt => snapshot_column(column, |snapshot| &snapshot.collected_at),
            Source::Field(field) => Arc::clone(
                row_columns
                    .column_by_name(field)
                    .unwrap_or_else(|| panic!("{}.{}: the row type has no field {field}", table.name, column.name)),
            ),
            Source::FilledInByStore => new_null_array(&arrow_type(column.sql_type), row_count),
            Source::Computed => panic!("{}.{} is computed: the table builds its own batch", table.name, column.name),
        };
        (column.name, values)
    });
    record_batch(columns.collect())
}

/// The Arrow type of a column the store fills in (only timestamps are, so far).
fn arrow_type(sql_type: &str) -> DataType {
    match sql_type {
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
        other => panic!("no column filled in by the store has type {other}"),
    }
}

/// The Arrow fields of a row type, typed as its DuckDB columns.
pub(crate) fn row_fields<'a, Row: Deserialize<'a>>() -> Vec<FieldRef> {
    let options = TracingOptions::default()
        .enums_without_data_as_strings(true)
        .strings_as_large_utf8(false)
        .sequence_as_large_list(false);
    let traced = Vec::<FieldRef>::from_type::<Row>(options).expect("event row types are plain structs");
    traced
        .into_iter()
        .map(|field| {
            let data_type = match field.data_type() {
                DataType::Int64 if field.name().ends_with("_us") => DataType::Timestamp(TimeUnit::Microsecond, None),
                other => without_dictionaries(other),
            };
            Arc::new(Field::new(field.name(), data_type, true))
        })
        .collect()
}

/// Enums are traced as dictionaries, which the Appender does not take: they are stored as text.
fn without_dictionaries(data_type: &DataType) -> DataType {
    let plain_field = |field: &FieldRef| Arc::new(Field::new(field.name(), without_dictionaries(field.data_type()), true));
    match data_type {
        DataType::Dictionary(_, _) => DataType::Utf8,
        DataType::List(item) => DataType::List(plain_field(item)),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(plain_field).collect()),
        other => other.clone(),
    }
}

pub(crate) fn record_batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("builders of one batch always have equal lengths")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use duckdb::Connection;
    use pgmon_contract::event::decode_snapshot;

    use super::*;

    /// The DuckDB name of an Arrow type, as `duckdb_columns()` reports it.
    fn duckdb_type(data_type: &DataType) -> String {
        match data_type {
            DataType::Utf8 => "VARCHAR".to_owned(),
            DataType::Int32 => "INTEGER".to_owned(),
            DataType::Int64 => "BIGINT".to_owned(),
            DataType::UInt64 => "UBIGINT".to_owned(),
            DataType::Float64 => "DOUBLE".to_owned(),
            DataType::Boolean => "BOOLEAN".to_owned(),
            DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP".to_owned(),
            DataType::List(item) => format!("{}[]", duckdb_type(item.data_type())),
            DataType::Struct(fields) => {
                let members: Vec<String> = fields
                    .iter()
                    .map(|field| format!("{} {}", field.name(), duckdb_type(field.data_type())))
                    .collect();
                format!("STRUCT({})", members.join(", "))
            }
            other => panic!("no table stores {other:?}"),
        }
    }

    /// Every table's batch built from the version-1 fixtures (each kind has one).
    fn batches_from_fixtures() -> Vec<(&'static str, RecordBatch)> {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contract/fixtures/v1");
        let snapshots: Vec<AnySnapshot> = std::fs::read_dir(fixtures)
            .unwrap()
            .map(|entry| decode_snapshot(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap())
            .collect();
        TABLES
            .iter()
            .map(|table| {
                let stored: Vec<(u64, &AnySnapshot)> = snapshots
                    .iter()
                    .filter(|snapshot| table.stores.kinds.contains(&snapshot.kind()))
                    .map(|snapshot| (1, snapshot))
                    .collect();
                (table.name, (table.stores.batch)(&stored))
            })
            .collect()
    }

    /// Each declaration equals the table the migrations create (names and types, in order),
    /// the batch appended to it has exactly those columns, and a table filled through serde
    /// uses every field of its row type once, whatever the fields' order.
    #[test]
    fn every_table_matches_its_row_type() {
        let connection = Connection::open_in_memory().unwrap();
        crate::storage::migrations::migrate(&connection, "memory", std::path::Path::new(":memory:")).unwrap();
        let created = |table: &str| -> Vec<(String, String)> {
            connection
                .prepare(
                    "SELECT column_name, data_type FROM duckdb_columns()
                     WHERE database_name = 'memory' AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
                )
                .unwrap()
                .query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let declared = |table: &Table| -> Vec<(String, String)> {
            table
                .columns
                .iter()
                .map(|column| (column.name.to_owned(), column.sql_type.to_owned()))
                .collect()
        };
        for table in TABLES {
            assert_eq!(declared(table), created(table.name), "{} as the migrations create it", table.name);
        }
        let batches = batches_from_fixtures();
        assert_eq!(batches.len(), TABLES.len(), "a batch of every table");
        for (name, batch) in &batches {
            let table = table_named(name).unwrap();
            assert!(batch.num_rows() > 0, "{name}: the fixtures give rows");
            let built: Vec<(String, String)> = batch
                .schema()
                .fields()
                .iter()
                .map(|field| (field.name().clone(), duckdb_type(field.data_type())))
                .collect();
            assert_eq!(built, declared(table), "{name}: the appended batch");
        }
        let uses_every_field = |table: &Table, fields: Vec<FieldRef>| {
            let used: Vec<&str> = table
                .columns
                .iter()
                .filter_map(|column| match column.source {
                    Source::Field(field) => Some(field),
                    _ => None,
                })
                .collect();
            let unique: BTreeSet<&str> = used.iter().copied().collect();
            assert_eq!(unique.len(), used.len(), "{}: a field stored twice", table.name);
            let of_row: BTreeSet<&str> = fields.iter().map(|field| field.name().as_str()).collect();
            assert_eq!(unique, of_row, "{}: every field of the row type is stored", table.name);
        };
        uses_every_field(&locks::LOCK_SAMPLES, row_fields::<pgmon_contract::event::LockRow>());
        uses_every_field(&database::DATABASE_SAMPLES, row_fields::<pgmon_contract::event::DatabaseRow>());
        uses_every_field(&status::TARGET_STATUS, row_fields::<pgmon_contract::event::StatusRow>());
        uses_every_field(&statements::STATEMENT_SAMPLES, row_fields::<pgmon_contract::event::StatementRow>());
        uses_every_field(&objects::OBJECT_SAMPLES, row_fields::<pgmon_contract::event::ObjectRow>());
        uses_every_field(&maintenance::TABLE_SAMPLES, row_fields::<pgmon_contract::event::TableRow>());
        uses_every_field(&progress::PROGRESS_SAMPLES, row_fields::<pgmon_contract::event::ProgressRow>());
        uses_every_field(
            &replication::REPLICATION_SAMPLES,
            row_fields::<pgmon_contract::event::ReplicationRow>(),
        );
        uses_every_field(&replication::SLOT_SAMPLES, row_fields::<pgmon_contract::event::SlotRow>());
        uses_every_field(&settings::SETTING_SAMPLES, row_fields::<pgmon_contract::event::SettingRow>());
        uses_every_field(&wal::WAL_SAMPLES, row_fields::<pgmon_contract::event::WalRow>());
        uses_every_field(&wal::IO_SAMPLES, row_fields::<pgmon_contract::event::IoRow>());
        uses_every_field(
            &activity_minutes::ACTIVITY_MINUTES,
            row_fields::<activity_minutes::ActivityMinuteRow>(),
        );
    }

    /// Reads take each field from the column stored from it, whatever the column is called.
    #[test]
    fn reads_derive_their_columns_from_the_declaration() {
        assert_eq!(
            select_list_of::<pgmon_contract::event::LockRow>(&locks::LOCK_SAMPLES),
            "pid, lock_type, mode, granted, database, relation, page, tuple, virtual_xid, transaction_id, \
             epoch_us(waiting_since) AS waiting_since_us, coalesce(blocked_by, []) AS blocked_by"
        );
        assert_eq!(
            select_list_of::<pgmon_contract::query::ObjectSize>(&objects::OBJECT_SAMPLES),
            "database, schema_name, name, kind, parent, total_bytes, table_bytes, index_bytes, toast_bytes, row_estimate, \
             size_stale_reason, epoch_us(size_measured_at) AS size_measured_at_us"
        );
    }
}
