//! The collector against every supported PostgreSQL major version (13 to 18): snapshots of every
//! kind decode into the v1 types, with what each version has (query_id from 14 on, …).

mod common;

use std::time::Duration;

use common::{collector_config, stream_activity, stream_snapshots, wait_until};
use pgmon_contract::event::{AnySnapshot, ObjectKind, SnapshotKind};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

const MAJORS: &[u32] = &[13, 14, 15, 16, 17, 18];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_snapshots_from_postgresql_13_to_18() {
    let nats = TestNats::start();
    let servers: Vec<(u32, TestPostgres)> = MAJORS.iter().map(|major| (*major, TestPostgres::start_version(*major))).collect();
    let targets: Vec<(String, String)> = servers
        .iter()
        .map(|(major, server)| (format!("pg{major}"), server.connection_string("postgres")))
        .collect();
    let target_refs: Vec<(&str, String)> = targets.iter().map(|(name, dsn)| (name.as_str(), dsn.clone())).collect();

    // A session per server with a recognisable statement in flight.
    let mut sleepers = Vec::new();
    for (_, server) in &servers {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE EXTENSION pg_stat_statements; CREATE TABLE matrix_probe (id int PRIMARY KEY);
                 SELECT pg_create_physical_replication_slot('matrix_slot', true)",
            )
            .await
            .unwrap();
        sleepers.push(tokio::spawn(async move {
            client.execute("SELECT pg_sleep(8) /* matrix */", &[]).await.unwrap()
        }));
    }

    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(pgmon_collector::run(
        collector_config(&nats.url(), &target_refs, Duration::from_millis(250)),
        shutdown.clone(),
    ));
    let url = nats.url();
    wait_until(
        Duration::from_secs(30),
        "a snapshot showing the sleeper, statements and objects from every server",
        || async {
            let snapshots = stream_snapshots(&url).await;
            MAJORS.iter().all(|major| {
                let of_server = |kind: SnapshotKind| {
                    snapshots
                        .iter()
                        .any(|(_, snapshot)| snapshot.target().as_str() == format!("pg{major}") && snapshot.kind() == kind)
                };
                let sleeper_seen = snapshots.iter().any(|(_, snapshot)| match snapshot {
                    AnySnapshot::Activity(snapshot) => {
                        snapshot.target.as_str() == format!("pg{major}")
                            && snapshot.rows.iter().any(|row| row.wait_event.as_deref() == Some("PgSleep"))
                    }
                    _ => false,
                });
                let health_kinds = [
                    SnapshotKind::Tables,
                    SnapshotKind::Progress,
                    SnapshotKind::Replication,
                    SnapshotKind::Slots,
                    SnapshotKind::Settings,
                    SnapshotKind::Wal,
                ];
                sleeper_seen
                    && of_server(SnapshotKind::Statements)
                    && of_server(SnapshotKind::Objects)
                    && health_kinds.into_iter().all(of_server)
            })
        },
    )
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    for snapshot in stream_activity(&url).await {
        let major: u32 = snapshot.target.as_str().trim_start_matches("pg").parse().unwrap();
        assert_eq!(snapshot.server.server_version_num / 10_000, major as i32, "{:?}", snapshot.server);
        assert!(
            snapshot.server.system_identifier.is_some(),
            "the superuser may read pg_control_system()"
        );
        // Its short object-size sessions are load like any other and stay visible.
        assert!(
            snapshot
                .rows
                .iter()
                .all(|row| !row.query.as_deref().is_some_and(|query| query.contains("FROM pg_stat_activity a"))),
            "the activity session sampled itself"
        );
        let Some(sleeper) = snapshot.rows.iter().find(|row| row.wait_event.as_deref() == Some("PgSleep")) else {
            continue;
        };
        assert_eq!(sleeper.wait_event_type.as_deref(), Some("Timeout"));
        assert_eq!(sleeper.state.as_deref(), Some("active"));
        assert_eq!(sleeper.backend_type.as_deref(), Some("client backend"));
        assert!(sleeper.query.as_deref().is_some_and(|text| text.contains("/* matrix */")));
        assert!(sleeper.backend_start_us.is_some() && sleeper.query_start_us.is_some());
        // pg_stat_statements turns query ids on from PostgreSQL 14 (compute_query_id = auto).
        assert_eq!(
            sleeper.query_id.is_some(),
            major >= 14,
            "PostgreSQL {major}: query_id {:?}",
            sleeper.query_id
        );
    }
    // Database snapshots (taken at connect, then every interval) from every version.
    let snapshots = stream_snapshots(&url).await;
    for major in MAJORS {
        let snapshot = snapshots
            .iter()
            .find_map(|(_, snapshot)| match snapshot {
                AnySnapshot::Database(snapshot) if snapshot.target.as_str() == format!("pg{major}") => Some(snapshot),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no database snapshot from PostgreSQL {major}"));
        let instance = snapshot.instance.as_ref().expect("instance facts");
        assert_eq!(instance.max_connections, 100, "PostgreSQL {major}");
        assert!(
            instance.started_at_us > 0 && instance.settings.contains_key("shared_buffers"),
            "PostgreSQL {major}: {instance:?}"
        );
        let postgres = snapshot
            .rows
            .iter()
            .find(|row| row.database == "postgres")
            .expect("the postgres database");
        assert!(
            postgres.xact_commit > 0 && postgres.backends >= 1,
            "PostgreSQL {major}: {postgres:?}"
        );
        assert_eq!(postgres.sessions.is_some(), *major >= 14, "PostgreSQL {major}: session counters");
    }
    for major in MAJORS {
        let target = format!("pg{major}");
        let statements = snapshots
            .iter()
            .find_map(|(_, snapshot)| match snapshot {
                AnySnapshot::Statements(snapshot) if snapshot.target.as_str() == target => Some(snapshot),
                _ => None,
            })
            .unwrap();
        // pg_stat_statements_info exists from extension 1.9 (PostgreSQL 14).
        assert_eq!(statements.statements_info.is_some(), *major >= 14, "PostgreSQL {major}");
        let create = statements
            .rows
            .iter()
            .find(|row| row.query.as_deref().is_some_and(|text| text.contains("CREATE TABLE matrix_probe")))
            .unwrap_or_else(|| panic!("PostgreSQL {major}: the probe's statement and text"));
        assert!(create.calls >= 1 && create.database == "postgres" && create.user == "postgres");
        assert_eq!(create.toplevel.is_some(), *major >= 14, "PostgreSQL {major}: toplevel");
        assert_eq!(
            create.temp_blk_read_time_ms.is_some(),
            *major >= 15,
            "PostgreSQL {major}: temp block times"
        );
        assert_eq!(create.jit_functions.is_some(), *major >= 15, "PostgreSQL {major}: JIT counters");
        assert_eq!(create.stats_since_us.is_some(), *major >= 17, "PostgreSQL {major}: stats_since");
        assert_eq!(
            create.local_blk_read_time_ms.is_some(),
            *major >= 17,
            "PostgreSQL {major}: local block times"
        );
        assert_eq!(
            create.parallel_workers_launched.is_some(),
            *major >= 18,
            "PostgreSQL {major}: parallel workers"
        );

        let objects = snapshots
            .iter()
            .find_map(|(_, snapshot)| match snapshot {
                AnySnapshot::Objects(snapshot) if snapshot.target.as_str() == target => Some(snapshot),
                _ => None,
            })
            .unwrap();
        let probe = objects
            .rows
            .iter()
            .find(|row| row.database == "postgres" && row.name == "matrix_probe")
            .unwrap_or_else(|| panic!("PostgreSQL {major}: the probe table among the objects"));
        assert_eq!(probe.kind, ObjectKind::Table);
        assert!(
            objects
                .rows
                .iter()
                .any(|row| row.name == "matrix_probe_pkey" && row.parent.as_deref() == Some("public.matrix_probe")),
            "PostgreSQL {major}: the probe's index"
        );

        // What autovacuum sees, from every version: the thresholds that apply, the frozen-ID
        // ages, and the cap of the vacuum threshold only where the server has it (18+).
        let tables = snapshots
            .iter()
            .find_map(|(_, snapshot)| match snapshot {
                AnySnapshot::Tables(snapshot) if snapshot.target.as_str() == target => Some(snapshot),
                _ => None,
            })
            .unwrap_or_else(|| panic!("PostgreSQL {major}: a tables snapshot"));
        let probe = tables
            .rows
            .iter()
            .find(|row| row.database == "postgres" && row.schema == "public" && row.name == "matrix_probe")
            .unwrap_or_else(|| panic!("PostgreSQL {major}: the probe table among the tables"));
        assert!(
            probe.autovacuum_enabled && probe.vacuum_threshold == 50,
            "PostgreSQL {major}: {probe:?}"
        );
        assert!(
            probe.freeze_max_age == 200_000_000 && probe.frozen_xid_age > 0,
            "PostgreSQL {major}: {probe:?}"
        );
        assert_eq!(probe.vacuum_max_threshold.is_some(), *major >= 18, "PostgreSQL {major}: {probe:?}");
        assert!(
            tables.rows.iter().any(|row| row.schema == "pg_catalog" && row.name == "pg_class"),
            "PostgreSQL {major}: system catalogs count towards wraparound"
        );
    }
    for major in MAJORS {
        let of_server = |kind: SnapshotKind| {
            snapshots
                .iter()
                .filter(|(_, snapshot)| snapshot.target().as_str() == format!("pg{major}") && snapshot.kind() == kind)
                .map(|(_, snapshot)| snapshot)
                .collect::<Vec<_>>()
        };
        let wal = of_server(SnapshotKind::Wal)
            .into_iter()
            .find_map(|snapshot| match snapshot {
                AnySnapshot::Wal(snapshot) => snapshot.rows.first().cloned(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("PostgreSQL {major}: wal counters"));
        assert_eq!(wal.wal_bytes.is_some(), *major >= 14, "PostgreSQL {major}: pg_stat_wal {wal:?}");
        assert_eq!(wal.buffers_backend.is_some(), *major < 17, "PostgreSQL {major}: {wal:?}");
        assert!(
            wal.wal_position_bytes > Some(0) && wal.buffers_alloc > 0,
            "PostgreSQL {major}: {wal:?}"
        );
        assert_eq!(
            !of_server(SnapshotKind::Io).is_empty(),
            *major >= 16,
            "PostgreSQL {major}: pg_stat_io from 16"
        );
    }
    for major in MAJORS {
        let slot = snapshots
            .iter()
            .find_map(|(_, snapshot)| match snapshot {
                AnySnapshot::Slots(snapshot) if snapshot.target.as_str() == format!("pg{major}") => {
                    snapshot.rows.iter().find(|row| row.slot_name == "matrix_slot")
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("PostgreSQL {major}: the slot"));
        assert_eq!(
            (slot.slot_type.as_str(), slot.active, slot.wal_status.as_deref()),
            ("physical", false, Some("reserved")),
            "PostgreSQL {major}: {slot:?}"
        );
        assert!(slot.retained_bytes.is_some(), "PostgreSQL {major}: {slot:?}");
    }
    for major in MAJORS {
        let database = snapshots
            .iter()
            .find_map(|(_, snapshot)| match snapshot {
                AnySnapshot::Database(snapshot) if snapshot.target.as_str() == format!("pg{major}") => Some(snapshot),
                _ => None,
            })
            .unwrap();
        assert!(
            database
                .rows
                .iter()
                .all(|row| row.frozen_xid_age > Some(0) && row.frozen_multixact_age.is_some()),
            "PostgreSQL {major}: database ages {:?}",
            database.rows
        );
    }
    for sleeper in sleepers {
        sleeper.await.unwrap();
    }
}
