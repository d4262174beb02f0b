//! Every event payload pgmon has ever published (golden fixtures per schema version) still decodes.

use std::fs;
use std::path::Path;

use pgmon_contract::event::{blocking_tree, decode_snapshot, AnySnapshot, SUPPORTED_SCHEMA_VERSIONS};

#[test]
fn every_fixture_of_every_supported_version_decodes() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    for version in SUPPORTED_SCHEMA_VERSIONS {
        let directory = fixtures.join(format!("v{version}"));
        let mut decoded = 0;
        for entry in fs::read_dir(&directory).unwrap_or_else(|e| panic!("{}: {e}", directory.display())) {
            let path = entry.unwrap().path();
            let payload = fs::read(&path).unwrap();
            let snapshot = decode_snapshot(&payload).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(snapshot.row_count() > 0, "{} has no rows", path.display());
            decoded += 1;
        }
        assert!(decoded > 0, "no fixtures for schema version {version}");
    }
}

#[test]
fn version_1_activity_fixture_keeps_its_meaning() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/activity.json");
    let Ok(AnySnapshot::Activity(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not an activity snapshot")
    };
    assert_eq!(snapshot.target.as_str(), "prod-db1");
    assert_eq!(snapshot.collected_at_us, 1_764_000_000_000_000);
    assert_eq!(snapshot.server.server_version_num, 170002);
    let sleeper = snapshot.rows.iter().find(|row| row.pid == 4242).unwrap();
    assert_eq!(sleeper.wait_event_type.as_deref(), Some("Timeout"));
    assert_eq!(sleeper.wait_event.as_deref(), Some("PgSleep"));
    assert_eq!(sleeper.query_id, Some(-3_172_049_182_744_215_713));
    let waiter = snapshot.rows.iter().find(|row| row.pid == 4243).unwrap();
    assert_eq!(waiter.blocking_pids, vec![4242]);
    let background = snapshot.rows.iter().find(|row| row.pid == 61).unwrap();
    assert_eq!(background.database, None);
}

#[test]
fn version_1_locks_fixture_keeps_its_meaning() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/locks.json");
    let Ok(AnySnapshot::Locks(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a locks snapshot")
    };
    let waiting = snapshot.rows.iter().find(|row| row.pid == 4243 && !row.granted).unwrap();
    assert_eq!(waiting.mode, "ShareLock");
    assert_eq!(waiting.transaction_id.as_deref(), Some("7781"));
    assert_eq!(waiting.waiting_since_us, Some(1_763_999_995_000_000));
    let tree = blocking_tree(&snapshot.rows);
    assert_eq!(tree.root_blockers, vec![4242]);
    assert_eq!(tree.edges, vec![(4242, 4243), (4243, 4244)]);
}

#[test]
fn version_1_database_fixture_keeps_its_meaning() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/database.json");
    let Ok(AnySnapshot::Database(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a database snapshot")
    };
    let instance = snapshot.instance.as_ref().unwrap();
    assert_eq!(instance.max_connections, 200);
    assert_eq!(instance.settings["work_mem"], "4096kB");
    let shop = snapshot.rows.iter().find(|row| row.database == "shop").unwrap();
    assert_eq!(shop.xact_commit, 9_812_345);
    assert_eq!(shop.temp_bytes, 734_003_200);
    assert_eq!(shop.sessions_killed, Some(1));
    let postgres = snapshot.rows.iter().find(|row| row.database == "postgres").unwrap();
    assert_eq!(postgres.checksum_failures, None);
    assert_eq!(postgres.stats_reset_us, None);
}

#[test]
fn version_1_database_with_ages_keeps_its_meaning() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/database-with-ages.json");
    let Ok(AnySnapshot::Database(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a database snapshot")
    };
    let shop = snapshot.rows.iter().find(|row| row.database == "shop").unwrap();
    assert_eq!((shop.frozen_xid_age, shop.frozen_multixact_age), (Some(180_000_512), Some(1200)));
    assert_eq!(snapshot.instance.unwrap().settings["autovacuum_freeze_max_age"], "200000000");
}

#[test]
fn version_1_tables_fixture_keeps_its_meaning() {
    use pgmon_contract::event::ObjectKind;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/tables.json");
    let Ok(AnySnapshot::Tables(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a tables snapshot")
    };
    let orders = &snapshot.rows[0];
    assert_eq!((orders.dead_tuples, orders.row_estimate), (2_600_000, Some(12_000_000)));
    assert_eq!((orders.frozen_xid_age, orders.freeze_max_age), (180_000_000, 200_000_000));
    assert_eq!(orders.vacuum_max_threshold, Some(100_000_000));
    assert_eq!(orders.last_vacuum_us, None);
    let toast = &snapshot.rows[1];
    assert_eq!(toast.kind, ObjectKind::Toast);
    assert!(!toast.autovacuum_enabled);
    assert_eq!((toast.row_estimate, toast.insert_vacuum_threshold), (None, -1));
}

#[test]
fn version_1_progress_fixture_keeps_its_meaning() {
    use pgmon_contract::event::MaintenanceCommand;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/progress.json");
    let Ok(AnySnapshot::Progress(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a progress snapshot")
    };
    let vacuum = &snapshot.rows[0];
    assert_eq!((vacuum.command, vacuum.autovacuum), (MaintenanceCommand::Vacuum, true));
    assert_eq!((vacuum.blocks_done, vacuum.index_vacuum_count), (Some(98_304), Some(2)));
    let index = &snapshot.rows[1];
    assert_eq!(index.command, MaintenanceCommand::CreateIndex);
    assert_eq!((index.relation.as_deref(), index.index_vacuum_count), (Some("16523"), None));
}

#[test]
fn version_1_replication_fixtures_keep_their_meaning() {
    use pgmon_contract::event::ReplicationRole;
    let read = |name: &str| decode_snapshot(&fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1").join(name)).unwrap());
    let Ok(AnySnapshot::Replication(primary)) = read("replication.json") else {
        panic!("not a replication snapshot")
    };
    let lagging = &primary.rows[1];
    assert_eq!((lagging.role, lagging.name.as_str()), (ReplicationRole::Standby, "replica-b"));
    assert_eq!((lagging.replay_lag_bytes, lagging.replay_lag_ms), (Some(1_073_741_824), None));
    let Ok(AnySnapshot::Replication(standby)) = read("replication-standby.json") else {
        panic!("not a replication snapshot")
    };
    let receiver = &standby.rows[0];
    assert_eq!((receiver.role, receiver.replay_paused), (ReplicationRole::Receiver, Some(false)));
    let Ok(AnySnapshot::Slots(slots)) = read("slots.json") else {
        panic!("not a slots snapshot")
    };
    let idle = &slots.rows[1];
    assert_eq!((idle.active, idle.retained_bytes), (false, Some(42_949_672_960)));
    assert_eq!(idle.inactive_since_us, Some(1_763_990_000_000_000));
}

#[test]
fn version_1_settings_fixture_keeps_its_meaning() {
    use pgmon_contract::event::SettingCategory;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/settings.json");
    let Ok(AnySnapshot::Settings(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a settings snapshot")
    };
    let start = &snapshot.rows[0];
    assert_eq!((start.category, start.name.as_str()), (SettingCategory::Server, "start_time"));
    let shared_buffers = snapshot.rows.iter().find(|row| row.name == "shared_buffers").unwrap();
    assert!(shared_buffers.pending_restart);
    assert_eq!(shared_buffers.source.as_deref(), Some("configuration file"));
    let work_mem = snapshot.rows.iter().find(|row| row.name == "work_mem").unwrap();
    assert!(!work_mem.pending_restart, "absent means no restart pending");
    let extension = snapshot.rows.last().unwrap();
    assert_eq!((extension.category, extension.value.as_str()), (SettingCategory::Extension, "1.11"));
}

#[test]
fn version_1_wal_and_io_fixtures_keep_their_meaning() {
    let read = |name: &str| decode_snapshot(&fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1").join(name)).unwrap());
    let Ok(AnySnapshot::Wal(wal)) = read("wal.json") else {
        panic!("not a wal snapshot")
    };
    let counters = &wal.rows[0];
    assert_eq!((counters.checkpoints_timed, counters.checkpoints_requested), (1210, 37));
    assert_eq!((counters.buffers_backend, counters.wal_bytes), (None, Some(987_654_321_012)));
    assert_eq!(counters.last_failed_wal.as_deref(), Some("000000010000010000000042"));
    let Ok(AnySnapshot::Io(io)) = read("io.json") else {
        panic!("not an io snapshot")
    };
    let checkpointer = &io.rows[1];
    assert_eq!((checkpointer.backend_type.as_str(), checkpointer.reads), ("checkpointer", None));
    assert_eq!(checkpointer.fsyncs, Some(120_034));
}

#[test]
fn version_1_status_fixture_keeps_its_meaning() {
    use pgmon_contract::event::{DownReason, TargetState};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/status.json");
    let Ok(AnySnapshot::Status(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a status snapshot")
    };
    let status = &snapshot.rows[0];
    assert_eq!(status.state, TargetState::Down);
    assert_eq!(status.reason, Some(DownReason::AuthenticationFailed));
    assert_eq!(status.since_us, 1_764_000_001_000_000);
}

#[test]
fn version_1_statements_fixture_keeps_its_meaning() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/statements.json");
    let Ok(AnySnapshot::Statements(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a statements snapshot")
    };
    let info = snapshot.statements_info.unwrap();
    assert_eq!((info.dealloc, info.stats_reset_us), (3, 1_763_900_000_000_000));
    let part = snapshot.part.unwrap();
    assert_eq!((part.index, part.count), (0, 2));
    let first = &snapshot.rows[0];
    assert_eq!(first.query.as_deref(), Some("SELECT * FROM orders WHERE customer_id = $1"));
    assert_eq!(first.calls, 120_345);
    assert_eq!(first.stats_since_us, Some(1_763_900_000_000_000));
    let second = &snapshot.rows[1];
    assert_eq!(second.query, None);
    assert_eq!(second.local_blk_read_time_ms, None);
    assert_eq!(second.wal_bytes, 91_234_567);
}

#[test]
fn version_1_objects_fixture_keeps_its_meaning() {
    use pgmon_contract::event::ObjectKind;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/objects.json");
    let Ok(AnySnapshot::Objects(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not an objects snapshot")
    };
    let kinds: Vec<ObjectKind> = snapshot.rows.iter().map(|row| row.kind).collect();
    assert_eq!(
        kinds,
        [
            ObjectKind::PartitionedTable,
            ObjectKind::Table,
            ObjectKind::Index,
            ObjectKind::Toast,
            ObjectKind::MaterializedView
        ]
    );
    let partition = &snapshot.rows[1];
    assert_eq!(partition.parent.as_deref(), Some("public.orders"));
    assert_eq!(partition.total_bytes, 1_207_959_552);
    assert_eq!(partition.last_vacuum_us, None);
    assert_eq!(partition.last_autovacuum_us, Some(1_763_990_000_000_000));
}

#[test]
fn version_1_objects_with_stale_sizes_keeps_its_meaning() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/objects-stale.json");
    let Ok(AnySnapshot::Objects(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not an objects snapshot")
    };
    let locked = &snapshot.rows[1];
    assert_eq!(
        locked.size_stale_reason.as_deref(),
        Some("locked: AccessExclusiveLock held by pid 4242")
    );
    assert_eq!(locked.total_bytes, 0, "the collector sends no size for what it could not measure");
    assert_eq!(snapshot.rows[0].size_stale_reason, None);
    let skipped = &snapshot.objects_info.as_ref().unwrap().skipped_databases[0];
    assert_eq!(skipped.database, "archive");
    assert!(skipped.reason.contains("too many connections"));
}

#[test]
fn version_1_status_with_limitations_keeps_its_meaning() {
    use pgmon_contract::event::{LimitationReason, SnapshotKind};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/status-with-limitations.json");
    let Ok(AnySnapshot::Status(snapshot)) = decode_snapshot(&fs::read(path).unwrap()) else {
        panic!("not a status snapshot")
    };
    let limitation = &snapshot.rows[0].limitations[0];
    assert_eq!(limitation.kind, SnapshotKind::Statements);
    assert_eq!(limitation.reason, LimitationReason::ExtensionMissing);
}

/// The published JSON Schema is the one the code generates (regenerate with
/// `PGMON_WRITE_SCHEMA=1 cargo test -p pgmon-common --test golden_fixtures`).
#[test]
fn the_published_json_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/snapshot-v1.schema.json");
    let generated = serde_json::to_string_pretty(&pgmon_contract::event::snapshot_json_schema()).unwrap() + "\n";
    if std::env::var_os("PGMON_WRITE_SCHEMA").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &generated).unwrap();
    }
    let published = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == published,
        "{} is out of date: regenerate it with PGMON_WRITE_SCHEMA=1 cargo test -p pgmon-common --test golden_fixtures",
        path.display()
    );
}
