//! What the collector costs the server it watches, and itself, printing figures (each beside a
//! baseline measured in the same run):
//!
//! 1. `server_time`: the server time of each snapshot kind (from pg_stat_statements, as the
//!    collector's own role) with 1,000 connected sessions and 5,000 pg_stat_statements entries,
//!    at the default schedule, beside a naive `SELECT * FROM pg_stat_statements` run as often
//!    (texts of `PGMON_BENCH_TEXT_BYTES`, 2,000 by default: ORM-made statements run from hundreds of bytes to many kilobytes).
//!    Goals: statements at least 5× cheaper than the naive read; activity at 1 s under 0.5% of
//!    one core of server time.
//! 2. `pgbench`: pgbench TPS with and without the collector at the default schedule, runs
//!    interleaved on the same server. Goal: under 1% loss (the collector's own CPU counted apart).
//! 3. `targets`: one `pgmon collect` process polling 200 targets (databases of throw-away
//!    clusters, each target's role allowed to connect to its own only) at the default
//!    schedule, beside the same process polling one. Goals: under 25% of one core, under 200 MiB
//!    resident.
//! 4. `objects`: the objects round on a database of 50,000 relations, server time and wall
//!    time, beside one query measuring every relation at once.
//!
//! 5. `health`: the server time of each health kind (the tables round; progress, replication,
//!    slots and settings samples; the database sample with its frozen-ID ages) on a database of
//!    50,000 tables, beside the activity sample's on the same server.
//!
//! `cargo bench -p pgmon --bench collector`; `PGMON_BENCH_ONLY=server_time,objects` runs some
//! sections; `PGMON_BENCH_SECONDS` (60) is how long sections 1 and 3 measure.

#[path = "../tests/common/mod.rs"]
mod common;

/// The allocator the pgmon binary uses, so figures are those of the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use pgmon_collector::{CollectorArgs, CollectorConfig};
use pgmon_common::nats_setup::NatsArgs;
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

/// The collector's settings as `pgmon collect` parses them: the benchmark runs its defaults.
#[derive(Parser)]
struct DefaultSettings {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    collector: CollectorArgs,
}

/// A collector with the default schedule, sampling `dsn` as target `db`.
fn default_collector(nats_url: &str, dsn: &str) -> CollectorConfig {
    let key_file = pgmon_test_support::key_file_for(nats_url, pgmon_common::nats_access::NatsRole::Collector);
    let settings = DefaultSettings::parse_from([
        "bench",
        "--nats-url",
        nats_url,
        "--target",
        &format!("db={dsn}"),
        "--nats-nkey-file",
        &key_file.display().to_string(),
    ]);
    let mut config = CollectorConfig::from_args(settings.collector, settings.nats).unwrap();
    config.spool_dir = common::unique_temporary_path("pgmon-bench-spool");
    config
}

fn seconds_setting() -> u64 {
    std::env::var("PGMON_BENCH_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60)
}

fn section_wanted(name: &str) -> bool {
    std::env::var("PGMON_BENCH_ONLY").map_or(true, |only| only.split(',').any(|section| section.trim() == name))
}

/// What a kind of the collector's queries cost the server, summed over the run.
#[derive(Default, Debug, Clone, Copy)]
struct ServerTime {
    calls: i64,
    milliseconds: f64,
}

/// Which snapshot kind a query of the collector serves, from its text.
fn kind_of(query: &str) -> &'static str {
    // pg_stat_statements keeps the settings query as `... WHERE name LIKE $1`.
    if query.contains("relfrozenxid") || query.contains("FROM pg_settings WHERE name LIKE") {
        "tables"
    } else if ["AccessExclusiveLock", "WITH relations AS", "pg_total_relation_size", "datallowconn"]
        .iter()
        .any(|marker| query.contains(marker))
    {
        "objects"
    } else if query.contains("pg_stat_bgwriter") {
        "wal"
    } else if query.contains("pg_stat_io") {
        "io"
    } else if query.contains("pg_stat_progress") {
        "progress"
    } else if query.contains("pg_stat_replication") {
        "replication"
    } else if query.contains("pg_replication_slots") {
        "slots"
    } else if query.contains("pg_postmaster_start_time() AT TIME ZONE") {
        "settings"
    } else if query.contains("pg_locks") {
        "locks"
    } else if query.contains("pg_stat_statements") {
        "statements"
    } else if query.contains("pg_stat_activity") {
        "activity"
    } else if query.contains("pg_stat_database") || query.contains("pg_settings") {
        "database"
    } else {
        "session set-up"
    }
}

/// Server time of `role`'s statements, by snapshot kind, from pg_stat_statements.
async fn server_time_by_kind(admin: &tokio_postgres::Client, role: &str) -> BTreeMap<&'static str, ServerTime> {
    let rows = admin
        .query(
            "SELECT s.query, s.calls, s.total_exec_time + coalesce(s.total_plan_time, 0)
             FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    let mut kinds: BTreeMap<&'static str, ServerTime> = BTreeMap::new();
    for row in rows {
        let entry = kinds.entry(kind_of(row.get(0))).or_default();
        entry.calls += row.get::<_, i64>(1);
        entry.milliseconds += row.get::<_, f64>(2);
    }
    kinds
}

/// Server time of the calls of the one query of `role` whose text contains `marker`.
async fn server_time_of(admin: &tokio_postgres::Client, role: &str, marker: &str) -> ServerTime {
    let row = admin
        .query_one(
            "SELECT coalesce(sum(s.calls), 0)::int8, coalesce(sum(s.total_exec_time + coalesce(s.total_plan_time, 0)), 0)::float8
             FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = $1 AND strpos(s.query, $2) > 0",
            &[&role, &marker],
        )
        .await
        .unwrap();
    ServerTime {
        calls: row.get(0),
        milliseconds: row.get(1),
    }
}

/// Opens `count` sessions to `postgres` as `user`, a few at a time.
async fn open_sessions(postgres: &TestPostgres, user: &str, count: usize) -> Vec<tokio_postgres::Client> {
    let mut sessions = Vec::with_capacity(count);
    while sessions.len() < count {
        let batch = (count - sessions.len()).min(50);
        let opened = futures::future::join_all((0..batch).map(|_| async {
            let (client, connection) = tokio_postgres::connect(&postgres.connection_string(user), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        }))
        .await;
        sessions.extend(opened);
    }
    sessions
}

/// Runs `count` distinct statements (one table each), so pg_stat_statements holds as many
/// entries, each text padded to about `text_bytes` with a comment (as ORMs and query
/// annotations make them: real texts run from a few hundred bytes to many kilobytes).
/// A session of its own role for the naive baseline queries, so their server time is counted
/// apart from the collector's.
async fn connect_naive_baseline(admin: &tokio_postgres::Client, postgres: &TestPostgres) -> tokio_postgres::Client {
    admin
        .batch_execute("CREATE ROLE bench_naive LOGIN IN ROLE pg_monitor")
        .await
        .unwrap();
    let (naive, connection) = tokio_postgres::connect(&postgres.connection_string("bench_naive"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    naive
}

async fn make_statements(admin: &tokio_postgres::Client, count: usize, text_bytes: usize) {
    for first in (1..=count).step_by(500) {
        let last = (first + 499).min(count);
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN FOR i IN {first}..{last} LOOP EXECUTE format('CREATE TABLE statement_%s (id int)', i); END LOOP; END $$"
            ))
            .await
            .unwrap();
    }
    for first in (1..=count).step_by(100) {
        let queries: Vec<String> = (first..(first + 100).min(count + 1))
            .map(|i| {
                format!(
                    "SELECT count(*) FROM statement_{i} /* {} */",
                    "x".repeat(text_bytes.saturating_sub(40))
                )
            })
            .collect();
        futures::future::join_all(queries.iter().map(|query| admin.simple_query(query))).await;
    }
}

async fn bench_server_time(seconds: u64) {
    println!("\n== 1. server time per snapshot kind: 1,000 sessions, 5,000 statements, default schedule, {seconds} s ==");
    let postgres = TestPostgres::start_with_settings(&[("max_connections", "1100"), ("pg_stat_statements.max", "10000")]);
    let admin = postgres.connect().await;
    admin
        .batch_execute("CREATE EXTENSION pg_stat_statements; CREATE ROLE bench_collector LOGIN IN ROLE pg_monitor")
        .await
        .unwrap();
    let text_bytes: usize = std::env::var("PGMON_BENCH_TEXT_BYTES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2_000);
    make_statements(&admin, 5_000, text_bytes).await;
    let sessions = open_sessions(&postgres, "postgres", 1_000).await;
    // Fifty of them active (sleeping in a statement), so samples have active rows with texts.
    let stop = CancellationToken::new();
    let busy: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(index, client)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                if index < 50 {
                    tokio::select! {
                        _ = client.batch_execute("SELECT pg_sleep(3600)") => {}
                        _ = stop.cancelled() => {}
                    }
                } else {
                    stop.cancelled().await;
                }
                drop(client);
            })
        })
        .collect();
    // The collector's role is new: its entries count from zero, and the 5,000 stay.
    let entries: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_statements", &[])
        .await
        .unwrap()
        .get(0);

    // The baseline runs beside the collector, as often as its statements snapshots: the naive
    // read a DBA's script does, every column and every text.
    let naive = connect_naive_baseline(&admin, &postgres).await;
    let nats = TestNats::start();
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(pgmon_collector::run(
        default_collector(&nats.url(), &postgres.connection_string("bench_collector")),
        shutdown.clone(),
    ));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    while started.elapsed() < Duration::from_secs(seconds) {
        naive.simple_query("SELECT * FROM pg_stat_statements").await.unwrap();
        tokio::time::sleep(Duration::from_secs(10).min(Duration::from_secs(seconds).saturating_sub(started.elapsed()))).await;
    }
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    let naive_time = server_time_of(&admin, "bench_naive", "pg_stat_statements").await;
    let kinds = server_time_by_kind(&admin, "bench_collector").await;
    admin
        .batch_execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3600)'")
        .await
        .unwrap();
    stop.cancel();
    for task in busy {
        let _ = task.await;
    }

    println!("pg_stat_statements entries: {entries}, texts of about {text_bytes} bytes; connected sessions: 1,000 (50 active)");
    println!(
        "{:<16} {:>8} {:>14} {:>16} {:>12}",
        "kind", "calls", "ms per call", "ms per second", "% of a core"
    );
    for (kind, time) in &kinds {
        let per_second = time.milliseconds / seconds as f64;
        println!(
            "{kind:<16} {:>8} {:>14.3} {:>16.3} {:>11.3}%",
            time.calls,
            time.milliseconds / time.calls.max(1) as f64,
            per_second,
            per_second / 10.0
        );
    }
    println!("the statements queries:");
    for row in admin
        .query(
            "SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 90), s.calls, (s.total_exec_time + coalesce(s.total_plan_time, 0)) / s.calls
             FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
             WHERE r.rolname = 'bench_collector' AND s.query LIKE '%pg_stat_statements%' ORDER BY 3 DESC",
            &[],
        )
        .await
        .unwrap()
    {
        println!("  {:>5} calls, {:>8.2} ms each: {}", row.get::<_, i64>(1), row.get::<_, f64>(2), row.get::<_, String>(0));
    }
    // A snapshot in steady state reads the counters (texts are fetched for new query ids only)
    // and the extension's info.
    let counters = server_time_of(&admin, "bench_collector", "WHERE s.queryid IS NOT NULL").await;
    let info = server_time_of(&admin, "bench_collector", "pg_stat_statements_info").await;
    let per_snapshot = counters.milliseconds / counters.calls.max(1) as f64 + info.milliseconds / info.calls.max(1) as f64;
    let naive_per_call = naive_time.milliseconds / naive_time.calls.max(1) as f64;
    println!(
        "statements snapshot: {per_snapshot:.2} ms of server time (counters without texts, and the info); naive SELECT * FROM pg_stat_statements: {naive_per_call:.2} ms; {:.1}× cheaper (goal ≥ 5×)",
        naive_per_call / per_snapshot
    );
    let activity = kinds.get("activity").copied().unwrap_or_default();
    println!(
        "activity at 1 s: {:.3}% of one core of server time (goal < 0.5%)",
        activity.milliseconds / seconds as f64 / 10.0
    );
}

/// TPS of one pgbench run (TPC-B-like, four clients) against the server on `port`, as pgbench
/// reports it.
fn pgbench_tps(pgbench: &std::path::Path, port: u16, seconds: u64) -> f64 {
    let output = Command::new(pgbench)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-c", "4", "-j", "2", "-n", "-T", &seconds.to_string(), "postgres"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|tps| tps.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{text}"))
}

/// CPU time this process has used, in seconds.
fn own_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage(2) fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn bench_pgbench() {
    let pairs = 8;
    let run_seconds = 20;
    println!("\n== 2. pgbench TPS without and with the collector, {pairs} interleaved pairs of {run_seconds} s ==");
    let postgres = TestPostgres::start();
    let status = Command::new(postgres.binary("pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &postgres.port().to_string(),
            "-U",
            "postgres",
            "-i",
            "-s",
            "10",
            "-q",
            "postgres",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pgbench -i failed");
    let admin = postgres.connect().await;
    admin.batch_execute("CREATE EXTENSION pg_stat_statements").await.unwrap();
    let nats = TestNats::start();
    let (mut without, mut with, mut collector_cpu, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let pgbench = postgres.binary("pgbench");
    let port = postgres.port();
    let run = || {
        let pgbench = pgbench.clone();
        tokio::task::spawn_blocking(move || pgbench_tps(&pgbench, port, run_seconds))
    };
    for pair in 0..pairs {
        // Alternate which goes first, so a drift of the machine over time falls on both.
        for collecting in if pair % 2 == 0 { [false, true] } else { [true, false] } {
            if !collecting {
                without.push(run().await.unwrap());
                continue;
            }
            let shutdown = CancellationToken::new();
            let collector = tokio::spawn(pgmon_collector::run(
                default_collector(&nats.url(), &postgres.connection_string("postgres")),
                shutdown.clone(),
            ));
            tokio::time::sleep(Duration::from_secs(2)).await;
            let cpu_before = own_cpu_seconds();
            with.push(run().await.unwrap());
            collector_cpu.push((own_cpu_seconds() - cpu_before) / run_seconds as f64 * 100.0);
            shutdown.cancel();
            collector.await.unwrap().unwrap();
        }
        ratios.push(with[pair] / without[pair]);
    }
    println!("without the collector: {without:.0?} tps");
    println!("with the collector:    {with:.0?} tps");
    let (median_without, median_with) = (median(without), median(with));
    let spread: Vec<String> = ratios.iter().map(|ratio| format!("{:+.1}%", (ratio - 1.0) * 100.0)).collect();
    println!(
        "median {median_without:.0} → {median_with:.0} tps; with/without per pair: {}, median {:+.2}% (goal: a loss under 1%); the collector's own CPU meanwhile {:.2}% of one core (median)",
        spread.join(" "),
        (median(ratios) - 1.0) * 100.0,
        median(collector_cpu)
    );
}

/// CPU seconds (user and system) and resident and peak resident KiB of process `pid`.
fn process_usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // SAFETY: sysconf(3) has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|line| line.starts_with(key))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (cpu, kib("VmRSS:"), kib("VmHWM:"))
}

/// Runs `pgmon collect` over the targets of `file` and returns its CPU (% of one core) over
/// `seconds` after a warm-up, and its resident and peak resident MiB.
async fn measure_collect_process(nats_url: &str, file: &std::path::Path, seconds: u64) -> (f64, f64, f64) {
    let spool = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .args(["collect", "--nats-url", nats_url, "--health-listen", "127.0.0.1:0", "--log", "warn"])
        .env(
            "PGMON_NATS_NKEY_FILE",
            pgmon_test_support::key_file_for(nats_url, pgmon_common::nats_access::NatsRole::Collector),
        )
        .arg("--targets-file")
        .arg(file)
        .arg("--spool-dir")
        .arg(spool.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The first objects round of every target and the statements texts come first.
    let mut timeline = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        timeline.push(process_usage(child.id()).1 / 1024);
    }
    eprintln!("resident MiB over the first 20 s: {timeline:?}");
    let (cpu_before, _, _) = process_usage(child.id());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu_after, resident, peak) = process_usage(child.id());
    let cpu = (cpu_after - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
    (cpu, resident as f64 / 1024.0, peak as f64 / 1024.0)
}

async fn bench_targets(seconds: u64) {
    let clusters = 4;
    let per_cluster = 50;
    println!(
        "\n== 3. one collector process, 200 targets ({per_cluster} databases on each of {clusters} clusters), default schedule, {seconds} s =="
    );
    let servers: Vec<TestPostgres> = (0..clusters)
        .map(|_| TestPostgres::start_with_settings(&[("max_connections", "300")]))
        .collect();
    let mut targets = String::new();
    let mut first_target = String::new();
    for (cluster, server) in servers.iter().enumerate() {
        let admin = server.connect().await;
        admin
            .batch_execute("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
            .await
            .unwrap();
        for index in 0..per_cluster {
            let name = format!("t{cluster}_{index}");
            admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
            admin
                .batch_execute(&format!(
                    "CREATE ROLE {name} LOGIN IN ROLE pg_monitor; REVOKE CONNECT ON DATABASE {name} FROM PUBLIC;
                     GRANT CONNECT ON DATABASE {name} TO {name};"
                ))
                .await
                .unwrap();
            let (database, connection) = tokio_postgres::connect(
                &format!("host=127.0.0.1 port={} user=postgres dbname={name}", server.port()),
                tokio_postgres::NoTls,
            )
            .await
            .unwrap();
            tokio::spawn(connection);
            database.batch_execute("CREATE EXTENSION pg_stat_statements").await.unwrap();
            let entry = format!(
                "[[targets]]\nname = \"{}\"\ndsn = \"host=127.0.0.1 port={} user={name} dbname={name}\"\n",
                name.replace('_', "-"),
                server.port()
            );
            if first_target.is_empty() {
                first_target = entry.clone();
            }
            targets.push_str(&entry);
        }
    }
    let directory = tempfile::tempdir().unwrap();
    let one = directory.path().join("one.toml");
    let all = directory.path().join("all.toml");
    std::fs::write(&one, first_target).unwrap();
    std::fs::write(&all, targets).unwrap();
    let nats = TestNats::start();
    let (one_cpu, one_resident, one_peak) = measure_collect_process(&nats.url(), &one, seconds).await;
    println!("1 target:    {one_cpu:.2}% of one core, {one_resident:.0} MiB resident (peak {one_peak:.0} MiB)");
    let (all_cpu, all_resident, all_peak) = measure_collect_process(&nats.url(), &all, seconds).await;
    println!(
        "200 targets: {all_cpu:.2}% of one core (goal < 25%), {all_resident:.0} MiB resident (peak {all_peak:.0} MiB; goal < 200 MiB); {:.1}× the CPU of one target",
        all_cpu / one_cpu.max(0.01)
    );
}

async fn bench_objects() {
    println!("\n== 4. the objects round on a database of 50,000 relations ==");
    let postgres = TestPostgres::start();
    let admin = postgres.connect().await;
    admin
        .batch_execute("CREATE EXTENSION pg_stat_statements; CREATE ROLE bench_collector LOGIN IN ROLE pg_monitor")
        .await
        .unwrap();
    let building = Instant::now();
    // Each table with its primary key, TOAST table and TOAST index: four relations.
    for first in (1..=12_500).step_by(250) {
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN FOR i IN {first}..{} LOOP
                     EXECUTE format('CREATE TABLE object_%s (id int PRIMARY KEY, note text)', i);
                 END LOOP; END $$",
                first + 249
            ))
            .await
            .unwrap();
    }
    let relations: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE oid >= 16384 AND relkind IN ('r', 'p', 'i', 'I', 't', 'm')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!("{relations} relations made in {:.0} s", building.elapsed().as_secs_f64());

    let nats = TestNats::start();
    let shutdown = CancellationToken::new();
    let mut config = default_collector(&nats.url(), &postgres.connection_string("bench_collector"));
    config.objects_statement_timeout = Duration::from_secs(120);
    let collector = tokio::spawn(pgmon_collector::run(config, shutdown.clone()));
    let url = nats.url();
    common::wait_until(Duration::from_secs(300), "the objects snapshot", || async {
        !common::stream_of_kind(&url, |snapshot| match snapshot {
            pgmon_contract::event::AnySnapshot::Objects(snapshot) => Some(snapshot),
            _ => None,
        })
        .await
        .is_empty()
    })
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    let parts = common::stream_of_kind(&url, |snapshot| match snapshot {
        pgmon_contract::event::AnySnapshot::Objects(snapshot) => Some(snapshot),
        _ => None,
    })
    .await;
    let rows: usize = parts.iter().map(|part| part.rows.len()).sum();
    let jetstream = async_nats::jetstream::new(pgmon_test_support::connect_as(&url, pgmon_common::nats_access::NatsRole::Admin).await);
    let stream = jetstream.get_stream(pgmon_contract::subjects::SNAPSHOT_STREAM).await.unwrap();
    let last = stream
        .direct_get_last_for_subject(pgmon_contract::subjects::snapshot_subject(
            &"db".parse().unwrap(),
            pgmon_contract::event::SnapshotKind::Objects,
        ))
        .await
        .unwrap();
    let published_us = last.time.unix_timestamp_nanos() / 1000;
    let wall = (published_us as i64 - parts[0].collected_at_us) as f64 / 1e6;
    let objects = server_time_by_kind(&admin, "bench_collector")
        .await
        .get("objects")
        .copied()
        .unwrap_or_default();

    // The baseline: every relation measured in one query.
    let naive = connect_naive_baseline(&admin, &postgres).await;
    let naive_started = Instant::now();
    naive
        .simple_query(
            "SELECT c.oid, pg_total_relation_size(c.oid), pg_relation_size(c.oid) FROM pg_class c
             WHERE c.oid >= 16384 AND c.relkind IN ('r', 'p', 'i', 'I', 't', 'm')",
        )
        .await
        .unwrap();
    let naive_wall = naive_started.elapsed().as_secs_f64();
    let naive_time = server_time_of(&admin, "bench_naive", "pg_total_relation_size").await;
    println!(
        "objects round: {rows} rows in {} messages; {:.2} s of server time in {} queries, {wall:.2} s wall from the round's start to its last part stored",
        parts.len(),
        objects.milliseconds / 1000.0,
        objects.calls
    );
    println!(
        "one query measuring every relation: {:.2} s of server time, {naive_wall:.2} s wall; the round takes {:.2}× its server time",
        naive_time.milliseconds / 1000.0,
        objects.milliseconds / naive_time.milliseconds.max(0.001)
    );
}

/// Makes `count` plain tables (no index, no TOAST table) in the database of `admin`.
async fn make_tables(admin: &tokio_postgres::Client, count: usize) {
    for first in (1..=count).step_by(500) {
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN FOR i IN {first}..{} LOOP
                     EXECUTE format('CREATE TABLE health_%s (id int)', i);
                 END LOOP; END $$",
                (first + 499).min(count)
            ))
            .await
            .unwrap();
    }
}

async fn bench_health(seconds: u64) {
    const TABLES: usize = 50_000;
    println!("\n== 5. server time of the health kinds on a database of {TABLES} tables, beside activity ==");
    // The newest version, which has every kind (pg_stat_io exists from 16).
    let postgres = TestPostgres::start_version(18);
    let admin = postgres.connect().await;
    admin
        .batch_execute("CREATE EXTENSION pg_stat_statements; CREATE ROLE bench_collector LOGIN IN ROLE pg_monitor")
        .await
        .unwrap();
    let building = Instant::now();
    make_tables(&admin, TABLES).await;
    println!("{TABLES} tables made in {:.0} s", building.elapsed().as_secs_f64());

    let nats = TestNats::start();
    let shutdown = CancellationToken::new();
    let mut config = default_collector(&nats.url(), &postgres.connection_string("bench_collector"));
    config.objects_statement_timeout = Duration::from_secs(120);
    let objects_interval_seconds = config.objects_interval.as_secs_f64();
    let collector = tokio::spawn(pgmon_collector::run(config, shutdown.clone()));
    let url = nats.url();
    let tables_rows = || async {
        common::stream_of_kind(&url, |snapshot| match snapshot {
            pgmon_contract::event::AnySnapshot::Tables(snapshot) => Some(snapshot),
            _ => None,
        })
        .await
        .iter()
        .map(|part| part.rows.len())
        .sum::<usize>()
    };
    common::wait_until(Duration::from_secs(600), "a whole tables snapshot", || async {
        tables_rows().await >= TABLES
    })
    .await;
    // Activity goes on sampling every second for the rest of the measured time.
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    let rows = tables_rows().await;
    let kinds = server_time_by_kind(&admin, "bench_collector").await;
    let per_call = |kind: &str| {
        let time = kinds.get(kind).copied().unwrap_or_default();
        (time.milliseconds / time.calls.max(1) as f64, time.calls)
    };
    let (activity_ms, activity_calls) = per_call("activity");
    let tables = kinds.get("tables").copied().unwrap_or_default();
    // The tables kind runs two queries per database and round, and the server has one database.
    let rounds = (tables.calls / 2).max(1);
    let tables_round_ms = tables.milliseconds / rounds as f64;
    let tables_calls = tables.calls;
    println!("activity sample: {activity_ms:.3} ms of server time per sample ({activity_calls} samples)");
    println!(
        "tables round: {:.1} ms of server time for {rows} rows ({tables_calls} queries), {:.0}× one activity sample",
        tables_round_ms,
        tables_round_ms / activity_ms.max(0.001)
    );
    for kind in ["database", "wal", "io", "progress", "replication", "slots", "settings"] {
        let (milliseconds, calls) = per_call(kind);
        println!(
            "{kind} sample: {milliseconds:.3} ms of server time per sample ({calls} samples), {:.1}× one activity sample",
            milliseconds / activity_ms.max(0.001)
        );
    }
    println!(
        "per hour at the default schedule: activity {:.1} s, tables {:.1} s of server time ({:.2}× activity)",
        activity_ms * 3600.0 / 1000.0,
        tables_round_ms * 3600.0 / objects_interval_seconds / 1000.0,
        (tables_round_ms / objects_interval_seconds) / activity_ms.max(0.001)
    );
}

fn main() {
    let seconds = seconds_setting();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        if section_wanted("server_time") {
            bench_server_time(seconds).await;
        }
        if section_wanted("pgbench") {
            bench_pgbench().await;
        }
        if section_wanted("targets") {
            bench_targets(seconds).await;
        }
        if section_wanted("objects") {
            bench_objects().await;
        }
        if section_wanted("health") {
            bench_health(seconds).await;
        }
    });
}
