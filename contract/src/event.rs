//! The snapshot event contract (schema version 1): what collectors publish and ingesters decode.
//!
//! Rules (see ARCHITECTURE.md, "Event contract"): additive changes keep the version and use
//! `#[serde(default)]`; any other change is a new version with its own golden fixtures under
//! `contract/fixtures/v<N>/`, which must keep decoding forever.

use serde::{Deserialize, Serialize};

use crate::target::TargetName;

/// The schema version this build publishes.
pub const CURRENT_SCHEMA_VERSION: u32 = 1;
/// Every schema version this build can decode.
pub const SUPPORTED_SCHEMA_VERSIONS: &[u32] = &[1];

/// Declares every snapshot kind once: its variant, row type and wire name (the `kind` of the
/// envelope and the last token of its subject), with its documentation. The kind enum, the
/// decoded-snapshot enum, decoding, joining parts, the JSON Schema and [`SnapshotRow`] are
/// generated from this list, so a new kind is one line here plus its row type.
macro_rules! snapshot_kinds {
    ($($(#[$documentation:meta])* $variant:ident($row:ident) = $name:literal;)*) => {
        /// What a snapshot describes; the last token of its subject.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum SnapshotKind {
            $($(#[$documentation])* #[serde(rename = $name)] $variant,)*
        }

        impl SnapshotKind {
            pub const ALL: &'static [SnapshotKind] = &[$(SnapshotKind::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(SnapshotKind::$variant => $name,)*
                }
            }

            /// Decodes a payload of this kind.
            fn decode(self, payload: &[u8]) -> Result<AnySnapshot, serde_json::Error> {
                match self {
                    $(SnapshotKind::$variant => serde_json::from_slice(payload).map(AnySnapshot::$variant),)*
                }
            }

            /// The JSON Schema of a snapshot of this kind, its definitions kept in `generator`.
            fn snapshot_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self {
                    $(SnapshotKind::$variant => generator.subschema_for::<Snapshot<$row>>(),)*
                }
            }
        }

        /// A decoded snapshot of any kind.
        #[derive(Clone, Debug, PartialEq)]
        pub enum AnySnapshot {
            $($variant(Snapshot<$row>),)*
        }

        /// Evaluates `$body` with `$snapshot` bound to the snapshot inside any variant.
        macro_rules! with_any_snapshot {
            ($any:expr, $snapshot:ident => $body:expr) => {
                match $any {
                    $(AnySnapshot::$variant($snapshot) => $body,)*
                }
            };
        }

        impl AnySnapshot {
            /// The kind the variant holds (authoritative: the rows were decoded as this kind).
            pub fn kind(&self) -> SnapshotKind {
                match self {
                    $(AnySnapshot::$variant(_) => SnapshotKind::$variant,)*
                }
            }

            /// This snapshot with the rows of `part` (a snapshot of the same kind) appended.
            fn with_rows_of(self, part: AnySnapshot) -> Result<AnySnapshot, JoinPartsError> {
                match (self, part) {
                    $((AnySnapshot::$variant(mut sample), AnySnapshot::$variant(part)) => {
                        sample.rows.extend(part.rows);
                        Ok(AnySnapshot::$variant(sample))
                    })*
                    _ => Err(JoinPartsError::DifferentSamples),
                }
            }
        }

        $(
            impl SnapshotRow for $row {
                const KIND: SnapshotKind = SnapshotKind::$variant;

                fn of(snapshot: &AnySnapshot) -> Option<&Snapshot<$row>> {
                    match snapshot {
                        AnySnapshot::$variant(snapshot) => Some(snapshot),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }

            impl From<Snapshot<$row>> for AnySnapshot {
                fn from(snapshot: Snapshot<$row>) -> AnySnapshot {
                    AnySnapshot::$variant(snapshot)
                }
            }
        )*
    };
}

snapshot_kinds! {
    /// One row per backend of `pg_stat_activity`.
    Activity(ActivityRow) = "activity";
    /// The `pg_locks` rows of sessions in a lock wait and of the sessions blocking them;
    /// published only when some session waits on a lock.
    Locks(LockRow) = "locks";
    /// One row per database of `pg_stat_database`, with the instance's facts in the envelope.
    Database(DatabaseRow) = "database";
    /// The collector's view of the target: up, or down with a reason. Published at every
    /// connection attempt that fails, when a connection succeeds, and every minute while up.
    Status(StatusRow) = "status";
    /// One row per entry of `pg_stat_statements`; cumulative counters, texts only for query ids
    /// the collector has not sent before.
    Statements(StatementRow) = "statements";
    /// One row per table, partition, index, TOAST table and materialized view of every
    /// database the collector may connect to, with sizes and maintenance times.
    Objects(ObjectRow) = "objects";
    /// One row per table, materialized view and TOAST table of every database the collector
    /// may connect to: tuples, scans, vacuum and analyze, transaction-ID ages and the autovacuum
    /// thresholds that apply. Taken in the objects round, with its time.
    Tables(TableRow) = "tables";
    /// One row per maintenance command running (vacuum, analyze, index build, CLUSTER or
    /// VACUUM FULL) with its phase and progress; published while any runs, and once empty
    /// when the last one ended.
    Progress(ProgressRow) = "progress";
    /// Streaming replication as this server sees it: one row per standby streaming from it,
    /// and, on a standby, one row for its own receiving and replaying. Published while there is
    /// any, and once empty when the last one went.
    Replication(ReplicationRow) = "replication";
    /// One row per replication slot, with the WAL it holds back. Published while there is any,
    /// and once empty when the last one was dropped.
    Slots(SlotRow) = "slots";
    /// The server's start time and version, its settings that differ from their defaults, and
    /// the extensions of the database the collector connects to: published at the first sample
    /// of every session and whenever any of it changed, so consecutive snapshots give the
    /// change timeline.
    Settings(SettingRow) = "settings";
    /// One row of instance-wide counters: checkpoints, the background writer, WAL and the
    /// archiver. Taken with the database snapshot.
    Wal(WalRow) = "wal";
    /// `pg_stat_io` (PostgreSQL 16+): one row per backend type, object and context with I/O.
    /// Taken with the database snapshot.
    Io(IoRow) = "io";
}

/// The row type of a snapshot kind: a snapshot of these rows is of this kind, always.
pub trait SnapshotRow: Serialize + serde::de::DeserializeOwned + Sized {
    const KIND: SnapshotKind;

    /// The snapshot inside `snapshot` when it is of this kind.
    fn of(snapshot: &AnySnapshot) -> Option<&Snapshot<Self>>;
}

impl SnapshotKind {
    pub fn from_name(name: &str) -> Option<SnapshotKind> {
        SnapshotKind::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }
}

/// Which PostgreSQL server a snapshot came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerIdentity {
    /// `pg_control_system().system_identifier` as a decimal string (it does not fit a JSON
    /// number safely); absent when the monitoring role may not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// `server_version_num`, e.g. 170002.
    pub server_version_num: i32,
    /// `server_version`, e.g. "17.2 (Debian 17.2-1)".
    pub server_version: String,
}

/// The envelope every snapshot event shares, generic over its row type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Snapshot<Row> {
    pub schema_version: u32,
    pub kind: SnapshotKind,
    pub target: TargetName,
    /// When the collector took the sample: microseconds since the Unix epoch, UTC.
    pub collected_at_us: i64,
    pub server: ServerIdentity,
    /// The id of the collector that took the sample (`--collector-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// Facts about the whole instance; sent with `database` snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceFacts>,
    /// `pg_stat_statements_info`; sent with `statements` snapshots when the extension has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements_info: Option<StatementsInfo>,
    /// What an `objects` round could not read; sent with `objects` snapshots when a database
    /// was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_info: Option<ObjectsInfo>,
    /// Which part of a snapshot this message holds, when the snapshot was too large for one
    /// NATS message; absent for a snapshot sent whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<SnapshotPart>,
    pub rows: Vec<Row>,
}

/// One part of a snapshot split across messages: every part carries the same envelope and a
/// disjoint share of the rows; together the `count` parts hold every row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SnapshotPart {
    /// From 0 to `count - 1`.
    pub index: u32,
    pub count: u32,
}

/// `pg_stat_statements_info` (extension 1.9+, PostgreSQL 14+): how often entries were evicted
/// and when all statistics were last reset, so deltas across both stay correct.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatementsInfo {
    pub dealloc: i64,
    /// Microseconds since the Unix epoch.
    pub stats_reset_us: i64,
}

/// What an `objects` round could not read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObjectsInfo {
    /// Databases whose objects could not be listed at all (cannot connect, no privilege, the
    /// round timed out): their objects are the last ones listed, marked stale.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_databases: Vec<SkippedDatabase>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SkippedDatabase {
    pub database: String,
    /// What failed, as the server or the network said it.
    pub reason: String,
}

/// What a DBA wants to know about an instance beside its counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceFacts {
    /// `pg_postmaster_start_time()`, microseconds since the Unix epoch.
    pub started_at_us: i64,
    pub max_connections: i32,
    /// A short list of settings that explain load (shared_buffers, work_mem, …), with units.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
}

/// One database of `pg_stat_database`: cumulative counters since `stats_reset`. Times of
/// `*_time_ms` are milliseconds; session counters exist from PostgreSQL 14.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DatabaseRow {
    pub database: String,
    pub backends: i32,
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub blks_read: i64,
    pub blks_hit: i64,
    pub tup_returned: i64,
    pub tup_fetched: i64,
    pub tup_inserted: i64,
    pub tup_updated: i64,
    pub tup_deleted: i64,
    pub conflicts: i64,
    pub temp_files: i64,
    pub temp_bytes: i64,
    pub deadlocks: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_failures: Option<i64>,
    pub blk_read_time_ms: f64,
    pub blk_write_time_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_in_transaction_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_abandoned: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_fatal: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_killed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_reset_us: Option<i64>,
    /// `age(datfrozenxid)`: transactions since the database's oldest unfrozen transaction ID;
    /// at 2^31 the server stops assigning new ones. Absent from collectors older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_xid_age: Option<i64>,
    /// `mxid_age(datminmxid)`: the same for multixact IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_multixact_age: Option<i64>,
}

/// One entry of `pg_stat_statements` (a query id per database, user and nesting level), with
/// its cumulative counters. Times are milliseconds; counters a server's extension version lacks
/// are absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatementRow {
    pub database: String,
    pub user: String,
    pub query_id: i64,
    /// Whether the statement ran at top level, not inside a function (extension 1.9+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toplevel: Option<bool>,
    /// The normalised text; sent only the first time the collector sees the query id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub calls: i64,
    pub total_exec_time_ms: f64,
    pub min_exec_time_ms: f64,
    pub max_exec_time_ms: f64,
    pub mean_exec_time_ms: f64,
    pub stddev_exec_time_ms: f64,
    pub plans: i64,
    pub total_plan_time_ms: f64,
    pub rows: i64,
    pub shared_blks_hit: i64,
    pub shared_blks_read: i64,
    pub shared_blks_dirtied: i64,
    pub shared_blks_written: i64,
    pub local_blks_hit: i64,
    pub local_blks_read: i64,
    pub local_blks_dirtied: i64,
    pub local_blks_written: i64,
    pub temp_blks_read: i64,
    pub temp_blks_written: i64,
    /// `shared_blk_read_time` (PostgreSQL 17+), `blk_read_time` before.
    pub shared_blk_read_time_ms: f64,
    pub shared_blk_write_time_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_blk_read_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_blk_write_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_blk_read_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_blk_write_time_ms: Option<f64>,
    pub wal_records: i64,
    pub wal_fpi: i64,
    pub wal_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_buffers_full: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jit_functions: Option<i64>,
    /// Generation, inlining, optimisation, emission (and deform) time together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jit_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_workers_to_launch: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_workers_launched: Option<i64>,
    /// Since when this entry has counted (PostgreSQL 17+): a newer value means it was evicted
    /// or reset and counts from zero again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_since_us: Option<i64>,
}

/// One relation of one database: a table, partition, index, TOAST table or materialized view.
/// Sizes are bytes; times are microseconds since the Unix epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObjectRow {
    pub database: String,
    pub schema: String,
    pub name: String,
    pub kind: ObjectKind,
    /// The table of an index or TOAST table, the parent of a partition, as `schema.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// `pg_total_relation_size`: the relation with its indexes and TOAST.
    pub total_bytes: i64,
    /// `pg_relation_size`: the main fork alone (for an index, the index itself).
    pub table_bytes: i64,
    /// `pg_indexes_size` of a table or materialized view; 0 for indexes and TOAST tables.
    pub index_bytes: i64,
    /// The TOAST table and its index of a table or materialized view.
    pub toast_bytes: i64,
    /// `reltuples`; absent when the relation was never vacuumed or analysed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_estimate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_vacuum_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_autovacuum_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analyze_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_autoanalyze_us: Option<i64>,
    /// Why the sizes could not be measured in this round (the relation, one of its indexes or
    /// its TOAST table was locked exclusively, by a migration, `VACUUM FULL`, `REINDEX`…). The
    /// collector then sends sizes of 0; the ingester stores the last sizes it measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_stale_reason: Option<String>,
}

/// One table, materialized view or TOAST table (`pg_class` with `pg_stat_all_tables`): what
/// autovacuum decides by, and the autovacuum settings that apply to it (its storage parameters
/// where set, else the server's). Counters are cumulative since the statistics were reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TableRow {
    pub database: String,
    pub schema: String,
    pub name: String,
    pub kind: ObjectKind,
    /// `n_live_tup`, `n_dead_tup`: estimates kept by the statistics system.
    pub live_tuples: i64,
    pub dead_tuples: i64,
    /// `n_mod_since_analyze`.
    pub modified_since_analyze: i64,
    /// `n_ins_since_vacuum`.
    pub inserted_since_vacuum: i64,
    /// `reltuples`, which the thresholds scale with; absent when never vacuumed or analysed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_estimate: Option<i64>,
    pub seq_scans: i64,
    /// Absent for a table without indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_scans: Option<i64>,
    pub vacuum_count: i64,
    pub autovacuum_count: i64,
    pub analyze_count: i64,
    pub autoanalyze_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_vacuum_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_autovacuum_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analyze_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_autoanalyze_us: Option<i64>,
    /// `age(relfrozenxid)`: transactions since the table's oldest unfrozen transaction ID.
    pub frozen_xid_age: i64,
    /// `mxid_age(relminmxid)`.
    pub frozen_multixact_age: i64,
    /// Autovacuum runs on it: the server's `autovacuum` and the table's `autovacuum_enabled`.
    pub autovacuum_enabled: bool,
    /// Autovacuum vacuums once dead tuples exceed `vacuum_threshold + vacuum_scale_factor ×
    /// row_estimate` (at most `vacuum_max_threshold`, PostgreSQL 18+), or inserts exceed the
    /// insert threshold likewise (a negative insert threshold turns that off).
    pub vacuum_threshold: i64,
    pub vacuum_scale_factor: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vacuum_max_threshold: Option<i64>,
    pub insert_vacuum_threshold: i64,
    pub insert_vacuum_scale_factor: f64,
    /// Autovacuum analyzes once modifications exceed `analyze_threshold + analyze_scale_factor ×
    /// row_estimate`.
    pub analyze_threshold: i64,
    pub analyze_scale_factor: f64,
    /// The frozen-ID age at which autovacuum vacuums the table to freeze it, even if disabled.
    pub freeze_max_age: i64,
    pub multixact_freeze_max_age: i64,
}

impl TableRow {
    /// The dead tuples past which autovacuum vacuums this table, as PostgreSQL computes it:
    /// `vacuum_threshold + vacuum_scale_factor × row_estimate`, at most `vacuum_max_threshold`.
    pub fn autovacuum_dead_tuples_threshold(&self) -> f64 {
        let scaled = self.vacuum_threshold as f64 + self.vacuum_scale_factor * self.row_estimate.unwrap_or(0).max(0) as f64;
        match self.vacuum_max_threshold {
            Some(most) if most >= 0 => scaled.min(most as f64),
            _ => scaled,
        }
    }
}

/// A maintenance command in progress, from `pg_stat_progress_vacuum`, `_analyze`,
/// `_create_index` and `_cluster`, with its session from `pg_stat_activity`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct ProgressRow {
    pub pid: i32,
    pub command: MaintenanceCommand,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The table's name when it lives in the database the collector is connected to,
    /// otherwise its OID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// The command's phase as PostgreSQL names it (`scanning heap`, `vacuuming indexes`, …).
    pub phase: String,
    /// Run by an autovacuum worker rather than by a session.
    pub autovacuum: bool,
    /// When the command started (`query_start` of its backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_us: Option<i64>,
    /// Blocks to process and processed: heap blocks of a vacuum, CLUSTER or VACUUM FULL, sample
    /// blocks of an analyze, the current phase's blocks of an index build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_done: Option<i64>,
    /// Passes over the indexes so far (vacuum only): more than one means the dead tuples did
    /// not fit in `maintenance_work_mem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_vacuum_count: Option<i64>,
}

/// Which maintenance command a progress row reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceCommand {
    Vacuum,
    Analyze,
    CreateIndex,
    /// CLUSTER or VACUUM FULL.
    Cluster,
}

impl MaintenanceCommand {
    /// The command named as the collector's query names it.
    pub fn from_name(name: &str) -> Option<MaintenanceCommand> {
        match name {
            "vacuum" => Some(MaintenanceCommand::Vacuum),
            "analyze" => Some(MaintenanceCommand::Analyze),
            "create_index" => Some(MaintenanceCommand::CreateIndex),
            "cluster" => Some(MaintenanceCommand::Cluster),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceCommand::Vacuum => "vacuum",
            MaintenanceCommand::Analyze => "analyze",
            MaintenanceCommand::CreateIndex => "create_index",
            MaintenanceCommand::Cluster => "cluster",
        }
    }
}

/// One replication link of the server sampled. LSN distances are bytes of WAL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct ReplicationRow {
    pub role: ReplicationRole,
    /// The standby's `application_name`; for the receiver row, the upstream as `host:port`.
    pub name: String,
    /// The standby's address (standby rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// `state` of a standby (`streaming`, `catchup`, …); the receiver's `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `sync_state` of a standby (`async`, `sync`, `quorum`, `potential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<String>,
    /// WAL not yet replayed: the primary's position minus the standby's replay position, or,
    /// on a standby, what it received minus what it replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag_bytes: Option<i64>,
    /// WAL not yet written or flushed by the standby (standby rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_lag_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_lag_bytes: Option<i64>,
    /// `write_lag`, `flush_lag`, `replay_lag` of a standby in milliseconds (absent while idle).
    /// For the receiver row, `replay_lag_ms` is how old the last replayed transaction is while
    /// WAL waits to be replayed, and 0 when all is replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_lag_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_lag_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag_ms: Option<f64>,
    /// Replay paused by `pg_wal_replay_pause()` (receiver row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_paused: Option<bool>,
    /// The slot the receiver streams through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_name: Option<String>,
}

/// Which side of a replication link a row describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationRole {
    /// A standby streaming from the server sampled (`pg_stat_replication`).
    Standby,
    /// The server sampled, receiving and replaying as a standby (`pg_stat_wal_receiver`).
    Receiver,
}

/// One replication slot (`pg_replication_slots`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct SlotRow {
    pub slot_name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub temporary: bool,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_pid: Option<i32>,
    /// WAL the slot keeps from removal: the server's WAL position minus the slot's
    /// `restart_lsn`; absent for a slot that reserves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
    /// WAL that can still be written before the slot is lost (with `max_slot_wal_keep_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_wal_size: Option<i64>,
    /// Since when the slot is unused (PostgreSQL 17+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_since_us: Option<i64>,
    /// A logical slot invalidated by a conflict with recovery (PostgreSQL 16+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicting: Option<bool>,
    /// Why the slot was invalidated (PostgreSQL 17+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidation_reason: Option<String>,
}

/// One entry of a settings snapshot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct SettingRow {
    pub category: SettingCategory,
    /// The setting's or extension's name; for the server, `start_time` or `version`.
    pub name: String,
    /// The value as `current_setting` shows it (`128MB`, `on`), the extension's version, the
    /// start time (RFC 3339) or the version string.
    pub value: String,
    /// Where a setting's value comes from: `configuration file`, `command line`, `database`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The setting was changed in the configuration and waits for a restart to apply.
    #[serde(default)]
    pub pending_restart: bool,
}

/// What a settings row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettingCategory {
    /// The server itself: its start time and version.
    Server,
    /// A setting that differs from its built-in default.
    Setting,
    /// An extension installed in the database the collector connects to.
    Extension,
}

impl SettingCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            SettingCategory::Server => "server",
            SettingCategory::Setting => "setting",
            SettingCategory::Extension => "extension",
        }
    }
}

/// Cumulative counters of checkpoints, the background writer, WAL and archiving, as the
/// server reports them (since their last reset). Counters a version lacks are absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WalRow {
    /// Checkpoints started by `checkpoint_timeout` and requested (by `max_wal_size`, a
    /// `CHECKPOINT`, a shutdown…): many requested ones mean `max_wal_size` is too small.
    pub checkpoints_timed: i64,
    pub checkpoints_requested: i64,
    pub checkpoint_write_time_ms: f64,
    pub checkpoint_sync_time_ms: f64,
    /// Buffers written by checkpoints, by the background writer, and (before PostgreSQL 17) by
    /// backends themselves, which should rarely have to.
    pub buffers_checkpoint: i64,
    pub buffers_clean: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffers_backend: Option<i64>,
    /// Background-writer rounds stopped at `bgwriter_lru_maxpages`.
    pub maxwritten_clean: i64,
    pub buffers_alloc: i64,
    /// The WAL position in bytes (`pg_current_wal_lsn()`); absent on a standby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_position_bytes: Option<i64>,
    /// `pg_stat_wal` (PostgreSQL 14+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_records: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_full_page_images: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_bytes: Option<i64>,
    /// WAL written because the WAL buffers were full: `wal_buffers` may be too small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_buffers_full: Option<i64>,
    pub archived_count: i64,
    pub archive_failed_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_wal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archive_failure_us: Option<i64>,
}

/// One row of `pg_stat_io`: I/O of a backend type on an object in a context, cumulative.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IoRow {
    pub backend_type: String,
    /// `relation`, `temp relation` (and `wal` from PostgreSQL 18).
    pub object: String,
    /// `normal`, `vacuum`, `bulkread`, `bulkwrite` (and `init` from 18).
    pub context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hits: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evictions: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsyncs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_time_ms: Option<f64>,
}

/// What a relation is (`pg_class.relkind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    #[default]
    Table,
    PartitionedTable,
    Index,
    PartitionedIndex,
    Toast,
    MaterializedView,
}

impl ObjectKind {
    /// The kind of a `pg_class.relkind` code pgmon reports.
    pub fn from_relkind(relkind: i8) -> Option<ObjectKind> {
        match relkind as u8 {
            b'r' => Some(ObjectKind::Table),
            b'p' => Some(ObjectKind::PartitionedTable),
            b'i' => Some(ObjectKind::Index),
            b'I' => Some(ObjectKind::PartitionedIndex),
            b't' => Some(ObjectKind::Toast),
            b'm' => Some(ObjectKind::MaterializedView),
            _ => None,
        }
    }
}

/// One backend in one `pg_stat_activity` sample. Times are microseconds since the Unix epoch, UTC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActivityRow {
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_event: Option<String>,
    /// `pg_stat_activity.query_id` (PostgreSQL 14+ with `compute_query_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<i64>,
    /// The query text, truncated by the collector to its configured length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_start_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xact_start_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_start_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_change_us: Option<i64>,
    /// `pg_blocking_pids(pid)`; filled only for backends waiting on a lock, empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocking_pids: Vec<i32>,
}

/// One `pg_locks` row of a session that waits on a lock or blocks one. Times are microseconds
/// since the Unix epoch, UTC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
pub struct LockRow {
    pub pid: i32,
    /// `locktype`: relation, tuple, transactionid, virtualxid, advisory, …
    pub lock_type: String,
    /// e.g. `RowExclusiveLock`, `ShareLock`.
    pub mode: String,
    pub granted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The relation's name when it lives in the database the collector is connected to,
    /// otherwise its OID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuple: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_xid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// `waitstart` (PostgreSQL 14+): since when an ungranted lock is awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since_us: Option<i64>,
    /// `pg_blocking_pids(pid)` on the ungranted row of a waiting session; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<i32>,
}

/// Who blocks whom in one locks snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockingTree {
    /// Sessions that block others and wait for no one: where a DBA starts.
    pub root_blockers: Vec<i32>,
    /// (blocker, waiter) pairs, sorted.
    pub edges: Vec<(i32, i32)>,
}

/// Derives the blocking tree from the `blocked_by` lists of a snapshot's rows.
pub fn blocking_tree(rows: &[LockRow]) -> BlockingTree {
    tree_of_edges(
        rows.iter()
            .flat_map(|row| row.blocked_by.iter().map(move |blocker| (*blocker, row.pid))),
    )
}

/// Derives the blocking tree from the `blocking_pids` of an activity snapshot's rows.
pub fn blocking_tree_of_activity(rows: &[ActivityRow]) -> BlockingTree {
    tree_of_edges(
        rows.iter()
            .flat_map(|row| row.blocking_pids.iter().map(move |blocker| (*blocker, row.pid))),
    )
}

fn tree_of_edges(edges: impl Iterator<Item = (i32, i32)>) -> BlockingTree {
    let mut edges: Vec<(i32, i32)> = edges.collect();
    edges.sort_unstable();
    edges.dedup();
    let waiters: std::collections::BTreeSet<i32> = edges.iter().map(|(_, waiter)| *waiter).collect();
    let mut root_blockers: Vec<i32> = edges
        .iter()
        .map(|(blocker, _)| *blocker)
        .filter(|blocker| !waiters.contains(blocker))
        .collect();
    root_blockers.dedup();
    BlockingTree { root_blockers, edges }
}

/// Whether the collector can sample a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Up,
    Down,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Up => "up",
            TargetState::Down => "down",
        }
    }
}

/// Why a target is down, for people and for alerting rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DownReason {
    /// No answer: DNS, refused, timed out, or the connection broke.
    Unreachable,
    /// The TLS handshake failed: the certificate is not trusted or does not name the host, or
    /// the server does not offer TLS where it is required.
    TlsFailed,
    /// Wrong password, unknown role, or pg_hba.conf refuses the connection.
    AuthenticationFailed,
    /// The database in the connection string does not exist.
    DatabaseMissing,
    /// The role may not connect to the database or read what pgmon samples.
    InsufficientPrivilege,
    /// The server is starting up, shutting down or in recovery without hot standby.
    ServerNotReady,
    TooManyConnections,
    /// Connected, but a sample query fails.
    QueryFailed,
}

impl DownReason {
    /// The wire name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            DownReason::Unreachable => "unreachable",
            DownReason::TlsFailed => "tls_failed",
            DownReason::AuthenticationFailed => "authentication_failed",
            DownReason::DatabaseMissing => "database_missing",
            DownReason::InsufficientPrivilege => "insufficient_privilege",
            DownReason::ServerNotReady => "server_not_ready",
            DownReason::TooManyConnections => "too_many_connections",
            DownReason::QueryFailed => "query_failed",
        }
    }
}

/// The one row of a status snapshot. While down, the envelope's `server` is the last one
/// seen, or `server_version_num` 0 when the target was never reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusRow {
    pub state: TargetState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DownReason>,
    /// What failed, as the server or the network said it; never contains a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Since when the target has been in this state, microseconds since the Unix epoch.
    pub since_us: i64,
    /// What the collector cannot sample on a target that is up, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limitations: Vec<Limitation>,
}

/// A kind the collector cannot sample on a target that is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Limitation {
    pub kind: SnapshotKind,
    pub reason: LimitationReason,
    /// What to do about it, for the DBA.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitationReason {
    /// `CREATE EXTENSION pg_stat_statements` was not run in the database pgmon connects to.
    ExtensionMissing,
    /// The extension exists but is not in `shared_preload_libraries`.
    ExtensionNotLoaded,
    /// The monitoring role lacks a privilege (pg_monitor, or CONNECT on a database).
    InsufficientPrivilege,
}

impl AnySnapshot {
    pub fn target(&self) -> &TargetName {
        with_any_snapshot!(self, snapshot => &snapshot.target)
    }

    pub fn row_count(&self) -> usize {
        with_any_snapshot!(self, snapshot => snapshot.rows.len())
    }

    pub fn collected_at_us(&self) -> i64 {
        with_any_snapshot!(self, snapshot => snapshot.collected_at_us)
    }

    /// Which part of its sample this message carried; `None` for a sample sent whole.
    pub fn part(&self) -> Option<SnapshotPart> {
        with_any_snapshot!(self, snapshot => snapshot.part)
    }

    /// `pg_stat_statements_info`, which statements snapshots carry when the extension has it.
    pub fn statements_info(&self) -> Option<StatementsInfo> {
        with_any_snapshot!(self, snapshot => snapshot.statements_info)
    }
}

/// Which sample a message belongs to and which part of it it carries, read without its rows:
/// what a reader needs to put a split sample together before decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct SampleHead {
    pub collected_at_us: i64,
    #[serde(default)]
    pub part: Option<SnapshotPart>,
}

/// Reads the [`SampleHead`] of a snapshot payload.
pub fn sample_head(payload: &[u8]) -> Result<SampleHead, DecodeError> {
    serde_json::from_slice(payload).map_err(DecodeError::NotAnEnvelope)
}

/// Why parts cannot be joined into one sample.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinPartsError {
    #[error("no part to join")]
    NoParts,
    #[error("the parts belong to different samples (target, kind or collection time differ)")]
    DifferentSamples,
    #[error("part {index} of {count} is missing or given twice")]
    MissingPart { index: u32, count: u32 },
}

/// Puts the parts of one sample back together: the envelope of its parts (without `part`) and
/// the rows of every part, in the order of the parts. A sample sent whole is returned as it is.
/// Parts are transport: every count and "now" view works on the joined sample.
pub fn join_parts(mut parts: Vec<AnySnapshot>) -> Result<AnySnapshot, JoinPartsError> {
    parts.sort_by_key(|part| part.part().map_or(0, |part| part.index));
    let count = parts.first().ok_or(JoinPartsError::NoParts)?.part().map_or(1, |part| part.count);
    for (expected, part) in (0..).zip(&parts) {
        let found = part.part().unwrap_or(SnapshotPart { index: 0, count: 1 });
        if found.index != expected || found.count != count {
            return Err(JoinPartsError::MissingPart { index: expected, count });
        }
    }
    if parts.len() != count as usize {
        return Err(JoinPartsError::MissingPart {
            index: u32::try_from(parts.len()).unwrap_or(u32::MAX),
            count,
        });
    }
    let mut parts = parts.into_iter();
    let mut joined = parts.next().ok_or(JoinPartsError::NoParts)?;
    for part in parts {
        if (part.kind(), part.target(), part.collected_at_us()) != (joined.kind(), joined.target(), joined.collected_at_us()) {
            return Err(JoinPartsError::DifferentSamples);
        }
        joined = joined.with_rows_of(part)?;
    }
    with_any_snapshot!(&mut joined, snapshot => snapshot.part = None);
    Ok(joined)
}

/// Why a message is not a usable snapshot; the text becomes the dead-letter reason.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not a snapshot envelope: {0}")]
    NotAnEnvelope(serde_json::Error),
    #[error("schema version {found} is not supported (supported: {supported:?})")]
    UnsupportedVersion { found: u32, supported: &'static [u32] },
    #[error("unknown snapshot kind {0:?}")]
    UnknownKind(String),
    #[error("{kind} rows do not match schema version {version}: {source}")]
    InvalidRows {
        kind: &'static str,
        version: u32,
        source: serde_json::Error,
    },
    #[error("subject {subject:?} does not match the envelope's target {target:?} and kind {kind:?}")]
    SubjectMismatch {
        subject: String,
        target: String,
        kind: &'static str,
    },
}

/// The fields read first, to pick the row type before decoding the rows.
#[derive(Deserialize)]
struct EnvelopeHead {
    schema_version: u32,
    kind: String,
}

/// Decodes a snapshot event payload of any supported version and kind.
pub fn decode_snapshot(payload: &[u8]) -> Result<AnySnapshot, DecodeError> {
    let head: EnvelopeHead = serde_json::from_slice(payload).map_err(DecodeError::NotAnEnvelope)?;
    if !SUPPORTED_SCHEMA_VERSIONS.contains(&head.schema_version) {
        return Err(DecodeError::UnsupportedVersion {
            found: head.schema_version,
            supported: SUPPORTED_SCHEMA_VERSIONS,
        });
    }
    let kind = SnapshotKind::from_name(&head.kind).ok_or_else(|| DecodeError::UnknownKind(head.kind.clone()))?;
    let invalid_rows = |source| DecodeError::InvalidRows {
        kind: kind.as_str(),
        version: head.schema_version,
        source,
    };
    kind.decode(payload).map_err(invalid_rows)
}

/// Decodes a snapshot received on `subject` and checks that the subject names its target and kind,
/// so a snapshot can never be filed under another target.
pub fn decode_snapshot_from_subject(subject: &str, payload: &[u8]) -> Result<AnySnapshot, DecodeError> {
    let snapshot = decode_snapshot(payload)?;
    let expected = crate::subjects::snapshot_subject(snapshot.target(), snapshot.kind());
    if expected != subject {
        return Err(DecodeError::SubjectMismatch {
            subject: subject.to_owned(),
            target: snapshot.target().to_string(),
            kind: snapshot.kind().as_str(),
        });
    }
    Ok(snapshot)
}

/// Encodes a snapshot as the JSON payload of its event.
pub fn encode_snapshot<Row: Serialize>(snapshot: &Snapshot<Row>) -> Vec<u8> {
    serde_json::to_vec(snapshot).expect("snapshot types always serialise to JSON")
}

/// A snapshot too large for one message even when each part holds a single row.
#[derive(Debug, thiserror::Error)]
#[error("{kind} snapshot cannot be split below {max_bytes} bytes: one row alone is {row_bytes} bytes")]
pub struct RowTooLarge {
    pub kind: &'static str,
    pub max_bytes: usize,
    pub row_bytes: usize,
}

/// One message's payload of a snapshot, with which part it is (`None`: the whole snapshot).
pub type EncodedPart = (Option<SnapshotPart>, Vec<u8>);

/// Encodes a snapshot as one payload when it fits in `max_bytes`, otherwise as the fewest
/// parts that each fit, every part with the whole envelope and its share of the rows in order.
pub fn encode_snapshot_parts<Row: Serialize>(snapshot: &Snapshot<Row>, max_bytes: usize) -> Result<Vec<EncodedPart>, RowTooLarge> {
    let whole = encode_snapshot(snapshot);
    if whole.len() <= max_bytes {
        return Ok(vec![(None, whole)]);
    }
    let row_count = snapshot.rows.len();
    // Aim a little below the limit so that uneven rows rarely need a second round.
    let mut part_count = whole.len().div_ceil(max_bytes * 9 / 10).clamp(2, row_count.max(2));
    loop {
        let rows_per_part = row_count.div_ceil(part_count);
        let chunks: Vec<&[Row]> = snapshot.rows.chunks(rows_per_part.max(1)).collect();
        let count = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let parts: Vec<EncodedPart> = chunks
            .iter()
            .zip(0..)
            .map(|(chunk, index)| {
                let part = SnapshotPart { index, count };
                let envelope = Snapshot {
                    schema_version: snapshot.schema_version,
                    kind: snapshot.kind,
                    target: snapshot.target.clone(),
                    collected_at_us: snapshot.collected_at_us,
                    server: snapshot.server.clone(),
                    collector: snapshot.collector.clone(),
                    instance: snapshot.instance.clone(),
                    statements_info: snapshot.statements_info,
                    objects_info: snapshot.objects_info.clone(),
                    part: Some(part),
                    rows: chunk.iter().collect::<Vec<&Row>>(),
                };
                (
                    Some(part),
                    serde_json::to_vec(&envelope).expect("snapshot types always serialise to JSON"),
                )
            })
            .collect();
        let largest = parts.iter().map(|(_, payload)| payload.len()).max().unwrap_or(0);
        if largest <= max_bytes {
            return Ok(parts);
        }
        if rows_per_part <= 1 {
            return Err(RowTooLarge {
                kind: snapshot.kind.as_str(),
                max_bytes,
                row_bytes: largest,
            });
        }
        part_count = (part_count * 2).min(row_count);
    }
}

/// The JSON Schema (draft 2020-12) of a snapshot event of [`CURRENT_SCHEMA_VERSION`], generated
/// from the types above: one branch per kind, each with its kind's rows. Published as
/// `contract/schema/snapshot-v1.schema.json` for clients that are not pgmon.
pub fn snapshot_json_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let branch = |kind: SnapshotKind, envelope: schemars::Schema| {
        serde_json::json!({
            "allOf": [envelope.to_value(), { "properties": { "kind": { "const": kind.as_str() } } }]
        })
    };
    let branches: Vec<serde_json::Value> = SnapshotKind::ALL
        .iter()
        .map(|kind| branch(*kind, kind.snapshot_schema(&mut generator)))
        .collect();
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("pgmon snapshot event, schema version {CURRENT_SCHEMA_VERSION}"),
        "description": "One message of the PGMON stream (subject pgmon.snap.<target>.<kind>).",
        "oneOf": branches,
        "$defs": generator.take_definitions(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot<ActivityRow> {
        Snapshot {
            schema_version: CURRENT_SCHEMA_VERSION,
            kind: SnapshotKind::Activity,
            target: "db1".parse().unwrap(),
            collected_at_us: 1_764_000_000_123_456,
            server: ServerIdentity {
                system_identifier: Some("7312345678901234567".into()),
                server_version_num: 170002,
                server_version: "17.2".into(),
            },
            collector: None,
            instance: None,
            statements_info: None,
            objects_info: None,
            part: None,
            rows: vec![ActivityRow {
                pid: 42,
                state: Some("active".into()),
                wait_event_type: Some("Timeout".into()),
                wait_event: Some("PgSleep".into()),
                blocking_pids: vec![7],
                ..ActivityRow::default()
            }],
        }
    }

    #[test]
    fn encoding_round_trips() {
        let snapshot = sample();
        let decoded = decode_snapshot(&encode_snapshot(&snapshot)).unwrap();
        assert_eq!(decoded, AnySnapshot::Activity(snapshot));
    }

    #[test]
    fn absent_optional_fields_are_left_out_of_the_payload() {
        let text = String::from_utf8(encode_snapshot(&sample())).unwrap();
        assert!(!text.contains("null"), "{text}");
        assert!(!text.contains("query_id"), "{text}");
    }

    #[test]
    fn rejects_unsupported_version_and_kind_with_specific_reasons() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["schema_version"] = 99.into();
        let error = decode_snapshot(value.to_string().as_bytes()).unwrap_err();
        assert!(matches!(error, DecodeError::UnsupportedVersion { found: 99, .. }), "{error}");

        value["schema_version"] = 1.into();
        value["kind"] = "bogus".into();
        let error = decode_snapshot(value.to_string().as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), "unknown snapshot kind \"bogus\"");

        let error = decode_snapshot(b"{\"schema_version\":1").unwrap_err();
        assert!(matches!(error, DecodeError::NotAnEnvelope(_)), "{error}");
    }

    #[test]
    fn rejects_rows_of_the_wrong_shape() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["rows"][0]["pid"] = "not a number".into();
        let error = decode_snapshot(value.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(
                error,
                DecodeError::InvalidRows {
                    kind: "activity",
                    version: 1,
                    ..
                }
            ),
            "{error}"
        );
    }

    fn lock_row(pid: i32, granted: bool, blocked_by: Vec<i32>) -> LockRow {
        LockRow {
            pid,
            lock_type: "transactionid".into(),
            mode: "ShareLock".into(),
            granted,
            blocked_by,
            ..LockRow::default()
        }
    }

    #[test]
    fn blocking_tree_finds_the_root_of_a_chain() {
        // A (1) holds a row lock, B (2) waits on A, C (3) waits on B; D (4) waits on A too.
        let rows = vec![
            lock_row(1, true, vec![]),
            lock_row(2, true, vec![]),
            lock_row(2, false, vec![1]),
            lock_row(3, false, vec![2]),
            lock_row(4, false, vec![1]),
        ];
        let tree = blocking_tree(&rows);
        assert_eq!(tree.root_blockers, vec![1]);
        assert_eq!(tree.edges, vec![(1, 2), (1, 4), (2, 3)]);
    }

    #[test]
    fn a_deadlock_cycle_has_no_root_blocker() {
        let tree = blocking_tree(&[lock_row(1, false, vec![2]), lock_row(2, false, vec![1])]);
        assert!(tree.root_blockers.is_empty());
        assert_eq!(tree.edges, vec![(1, 2), (2, 1)]);
    }

    #[test]
    fn status_names_match_their_serialisation() {
        let reasons = [
            DownReason::Unreachable,
            DownReason::TlsFailed,
            DownReason::AuthenticationFailed,
            DownReason::DatabaseMissing,
            DownReason::InsufficientPrivilege,
            DownReason::ServerNotReady,
            DownReason::TooManyConnections,
            DownReason::QueryFailed,
        ];
        for reason in reasons {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        for state in [TargetState::Up, TargetState::Down] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn a_large_snapshot_is_split_into_parts_that_hold_every_row_once() {
        let mut snapshot = sample();
        snapshot.rows = (0..1000)
            .map(|pid| ActivityRow {
                pid,
                query: Some("x".repeat(200)),
                ..ActivityRow::default()
            })
            .collect();
        let parts = encode_snapshot_parts(&snapshot, 20_000).unwrap();
        assert!(parts.len() > 10, "{} parts", parts.len());
        let mut pids = Vec::new();
        for (index, (part, payload)) in parts.iter().enumerate() {
            assert!(payload.len() <= 20_000);
            let AnySnapshot::Activity(decoded) = decode_snapshot(payload).unwrap() else {
                panic!()
            };
            assert_eq!(decoded.part, *part);
            assert_eq!(decoded.part.unwrap().index as usize, index);
            assert_eq!(decoded.part.unwrap().count as usize, parts.len());
            pids.extend(decoded.rows.iter().map(|row| row.pid));
        }
        assert_eq!(pids, (0..1000).collect::<Vec<i32>>());
    }

    #[test]
    fn parts_join_into_their_sample_in_any_order_and_a_missing_one_is_named() {
        let mut snapshot = sample();
        snapshot.rows = (0..300)
            .map(|pid| ActivityRow {
                pid,
                query: Some("z".repeat(100)),
                ..ActivityRow::default()
            })
            .collect();
        let mut parts: Vec<AnySnapshot> = encode_snapshot_parts(&snapshot, 8_000)
            .unwrap()
            .iter()
            .map(|(_, payload)| decode_snapshot(payload).unwrap())
            .collect();
        let count = parts.len() as u32;
        assert!(count > 3);
        let head = sample_head(&encode_snapshot_parts(&snapshot, 8_000).unwrap()[1].1).unwrap();
        assert_eq!(head.collected_at_us, snapshot.collected_at_us);
        assert_eq!(head.part, Some(SnapshotPart { index: 1, count }));
        parts.reverse();
        assert_eq!(join_parts(parts.clone()).unwrap(), AnySnapshot::Activity(snapshot.clone()));

        let mut missing = parts.clone();
        missing.remove(1);
        assert_eq!(
            join_parts(missing).unwrap_err(),
            JoinPartsError::MissingPart { index: count - 2, count }
        );
        let mut other_sample = parts;
        if let AnySnapshot::Activity(part) = &mut other_sample[0] {
            part.collected_at_us += 1;
        }
        assert_eq!(join_parts(other_sample).unwrap_err(), JoinPartsError::DifferentSamples);
        let whole = AnySnapshot::Activity(sample());
        assert_eq!(join_parts(vec![whole.clone()]).unwrap(), whole);
    }

    #[test]
    fn a_snapshot_that_fits_is_sent_whole_and_a_giant_row_is_an_error() {
        let parts = encode_snapshot_parts(&sample(), 1 << 20).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, None);
        let mut snapshot = sample();
        snapshot.rows.push(ActivityRow {
            query: Some("y".repeat(5000)),
            ..ActivityRow::default()
        });
        let error = encode_snapshot_parts(&snapshot, 2000).unwrap_err();
        assert!(
            error.to_string().starts_with("activity snapshot cannot be split below 2000 bytes"),
            "{error}"
        );
    }

    #[test]
    fn subject_must_match_the_envelope() {
        let payload = encode_snapshot(&sample());
        assert!(decode_snapshot_from_subject("pgmon.snap.db1.activity", &payload).is_ok());
        let error = decode_snapshot_from_subject("pgmon.snap.db2.activity", &payload).unwrap_err();
        assert!(matches!(error, DecodeError::SubjectMismatch { .. }), "{error}");
    }
}
