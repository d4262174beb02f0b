//! pg_stat_statements end to end: calls deltas between snapshots, resets and evictions that never make a delta
//! negative, texts sent once and kept as long as their statement's samples (across retention and
//! rebuilds), and snapshots larger than a NATS message arriving whole in parts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{spawn_pipeline, stream_of_kind, wait_until};
use pgmon_contract::event::{AnySnapshot, Snapshot, StatementRow};
use pgmon_contract::query::{NamedQuery, QueryReply, StatementHistoryReply, StatementHistoryRequest};
use pgmon_contract::subjects::query_subject;
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

async fn stream_statements(nats_url: &str) -> Vec<Snapshot<StatementRow>> {
    stream_of_kind(nats_url, |snapshot| match snapshot {
        AnySnapshot::Statements(snapshot) => Some(snapshot),
        _ => None,
    })
    .await
}

/// The calls of the probe statement in the latest statements snapshot, if it is there.
async fn latest_probe_calls(nats_url: &str, query_id: i64) -> Option<(i64, i64)> {
    stream_statements(nats_url).await.iter().rev().find_map(|snapshot| {
        snapshot
            .rows
            .iter()
            .find(|row| row.query_id == query_id)
            .map(|row| (snapshot.collected_at_us, row.calls))
    })
}

const PROBE: &str = "SELECT $1::int4 + 4242 AS delta_probe";

/// A pipeline sampling a fresh PostgreSQL with pg_stat_statements, and the probe statement run
/// once and seen in a statements snapshot.
struct ProbeRun {
    nats: TestNats,
    // Kept alive for the run.
    _postgres: TestPostgres,
    client: tokio_postgres::Client,
    data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    pipeline: common::Pipeline,
    query_id: i64,
    /// When the snapshot that first showed the probe (one call) was taken.
    first_seen_us: i64,
}

async fn start_probe_run() -> ProbeRun {
    let nats = TestNats::start();
    let postgres = TestPostgres::start();
    let client = postgres.connect().await;
    client.batch_execute("CREATE EXTENSION pg_stat_statements").await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    client.query(PROBE, &[&1]).await.unwrap();
    let query_id: i64 = client
        .query_one(
            "SELECT queryid FROM pg_stat_statements WHERE query LIKE '%delta_probe%' AND toplevel",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let url = nats.url();
    wait_until(Duration::from_secs(20), "the probe in a statements snapshot", || async {
        latest_probe_calls(&url, query_id).await.is_some_and(|(_, calls)| calls == 1)
    })
    .await;
    let (first_seen_us, _) = latest_probe_calls(&url, query_id).await.unwrap();
    ProbeRun {
        nats,
        _postgres: postgres,
        client,
        data_dir,
        shutdown,
        pipeline,
        query_id,
        first_seen_us,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_deltas_match_the_work_done_and_never_go_negative_after_a_reset() {
    let ProbeRun {
        nats,
        _postgres,
        client,
        data_dir,
        shutdown,
        pipeline,
        query_id,
        first_seen_us: before_us,
    } = start_probe_run().await;
    let url = nats.url();

    const K: i64 = 37;
    for i in 0..K {
        client.query(PROBE, &[&(i as i32)]).await.unwrap();
    }
    wait_until(Duration::from_secs(20), "the K calls in a statements snapshot", || async {
        latest_probe_calls(&url, query_id).await.is_some_and(|(_, calls)| calls == K + 1)
    })
    .await;
    let (after_us, _) = latest_probe_calls(&url, query_id).await.unwrap();

    client.query_one("SELECT pg_stat_statements_reset()", &[]).await.unwrap();
    const AFTER_RESET: i64 = 5;
    for i in 0..AFTER_RESET {
        client.query(PROBE, &[&(i as i32)]).await.unwrap();
    }
    wait_until(Duration::from_secs(20), "the calls after the reset in a snapshot", || async {
        latest_probe_calls(&url, query_id)
            .await
            .is_some_and(|(at, calls)| at > after_us && calls == AFTER_RESET)
    })
    .await;
    let (reset_seen_us, _) = latest_probe_calls(&url, query_id).await.unwrap();
    // One more snapshot, so the view has a sample after the one that saw the reset.
    wait_until(Duration::from_secs(20), "a later statements snapshot", || async {
        stream_statements(&url)
            .await
            .last()
            .is_some_and(|snapshot| snapshot.collected_at_us > reset_seen_us)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    pipeline.join().await;

    // Texts went out once for the probe, in the first snapshot that held it.
    let texts: Vec<String> = stream_statements(&url)
        .await
        .iter()
        .flat_map(|snapshot| snapshot.rows.iter())
        .filter(|row| row.query_id == query_id)
        .filter_map(|row| row.query.clone())
        .collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("delta_probe"), "{texts:?}");

    let database = pgmon_ingester::open_read_only(data_dir.path()).unwrap();
    let delta_sum = |from_us: i64, to_us: i64| -> i64 {
        database
            .query_row(
                "SELECT coalesce(sum(calls), 0)::BIGINT FROM statement_deltas
                 WHERE query_id = ? AND toplevel AND collected_at > make_timestamp(?) AND collected_at <= make_timestamp(?)",
                duckdb::params![query_id, from_us, to_us],
                |row| row.get(0),
            )
            .unwrap()
    };
    assert_eq!(delta_sum(before_us, after_us), K, "calls delta between the two snapshots");
    assert_eq!(
        delta_sum(after_us, reset_seen_us),
        AFTER_RESET,
        "calls counted from zero after the reset"
    );
    let negative: i64 = database
        .query_row(
            "SELECT count(*) FROM statement_deltas
             WHERE calls < 0 OR total_exec_time_ms < 0 OR rows < 0 OR shared_blks_hit < 0 OR shared_blks_read < 0
                OR temp_blks_written < 0 OR shared_blk_read_time_ms < 0 OR wal_bytes < 0",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(negative, 0, "negative deltas after pg_stat_statements_reset()");
    let resets_seen: i64 = database
        .query_row(
            "SELECT count(DISTINCT statements_stats_reset) FROM snapshot_parts WHERE kind = 'statements'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(resets_seen, 2, "pg_stat_statements_info.stats_reset before and after the reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_statements_arrive_whole_in_parts() {
    let nats = TestNats::start();
    let postgres = TestPostgres::start();
    let client = postgres.connect().await;
    client.batch_execute("CREATE EXTENSION pg_stat_statements").await.unwrap();
    // 300 tables × 10 statement shapes: 3,000 distinct query ids, about 3 MB of JSON.
    let mut setup = String::new();
    for table in 0..300 {
        setup.push_str(&format!("CREATE TABLE t{table} (id int PRIMARY KEY, note text);"));
    }
    client.batch_execute(&setup).await.unwrap();
    let shapes = [
        "SELECT count(*) FROM t{}",
        "SELECT * FROM t{} WHERE id = 1",
        "SELECT note FROM t{} ORDER BY id LIMIT 1",
        "SELECT max(id) FROM t{}",
        "SELECT min(id), max(id) FROM t{} WHERE note IS NOT NULL",
        "INSERT INTO t{} VALUES (1, 'x') ON CONFLICT DO NOTHING",
        "UPDATE t{} SET note = 'y' WHERE id = 2",
        "DELETE FROM t{} WHERE id = 3",
        "SELECT id FROM t{} WHERE note LIKE 'a%'",
        "SELECT count(DISTINCT note) FROM t{}",
    ];
    let mut workload = String::new();
    for table in 0..300 {
        for shape in shapes {
            workload.push_str(&shape.replace("{}", &table.to_string()));
            workload.push(';');
        }
    }
    // Each statement of a simple-query batch is tracked on its own.
    client.simple_query(&workload).await.unwrap();
    let entries: i64 = client
        .query_one("SELECT count(*) FROM pg_stat_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(entries > 3000, "{entries} entries");

    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let url = nats.url();
    wait_until(Duration::from_secs(30), "two complete split statements snapshots", || async {
        let parts = stream_statements(&url).await;
        let mut complete = 0;
        let mut by_time: BTreeMap<i64, BTreeSet<u32>> = BTreeMap::new();
        for snapshot in &parts {
            if let Some(part) = snapshot.part {
                let seen = by_time.entry(snapshot.collected_at_us).or_default();
                seen.insert(part.index);
                if seen.len() == part.count as usize {
                    complete += 1;
                }
            }
        }
        complete >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    pipeline.join().await;

    let snapshots = stream_statements(&url).await;
    let first_time = snapshots[0].collected_at_us;
    let first: Vec<&Snapshot<StatementRow>> = snapshots.iter().filter(|snapshot| snapshot.collected_at_us == first_time).collect();
    let count = first[0].part.expect("a snapshot of 3,000 statements is split").count;
    assert!(count >= 2);
    assert_eq!(first.len(), count as usize, "every part of the first snapshot arrived");
    let query_ids: BTreeSet<(String, i64, Option<bool>)> = first
        .iter()
        .flat_map(|snapshot| snapshot.rows.iter())
        .map(|row| (row.user.clone(), row.query_id, row.toplevel))
        .collect();
    let rows: usize = first.iter().map(|snapshot| snapshot.rows.len()).sum();
    assert_eq!(query_ids.len(), rows, "no entry is in two parts");
    assert!(rows as i64 >= entries, "{rows} rows for {entries} entries");
    let texts = first
        .iter()
        .flat_map(|snapshot| snapshot.rows.iter())
        .filter(|row| row.query.is_some())
        .count();
    assert_eq!(texts, rows, "the first snapshot carries every text");

    let database = pgmon_ingester::open_read_only(data_dir.path()).unwrap();
    let (stored_parts, stored_rows): (i64, i64) = database
        .query_row(
            "SELECT count(*), sum(row_count)::BIGINT FROM snapshot_parts WHERE kind = 'statements' AND collected_at = make_timestamp(?)",
            [first_time],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((stored_parts, stored_rows), (count as i64, rows as i64));
    let sampled: i64 = database
        .query_row(
            "SELECT count(*) FROM statement_samples WHERE collected_at = make_timestamp(?)",
            [first_time],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(sampled, rows as i64);
}

/// An entry that left pg_stat_statements (evicted when it holds `pg_stat_statements.max`
/// entries, or reset on its own) and came back counts from zero, even when its new counters are
/// above the old ones, which PostgreSQL before 17 gives no other sign of: it was missing from
/// the snapshot in between. The test removes the entry with a reset of that query id alone,
/// which looks the same as an eviction: no global reset, the entry just gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_left_and_returned_counts_from_zero() {
    let ProbeRun {
        nats,
        _postgres,
        client,
        data_dir,
        shutdown,
        pipeline,
        query_id,
        first_seen_us: before_us,
    } = start_probe_run().await;
    let url = nats.url();

    client
        .execute("SELECT pg_stat_statements_reset(0, 0, $1)", &[&query_id])
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), "a snapshot without the evicted probe", || async {
        stream_statements(&url)
            .await
            .last()
            .is_some_and(|snapshot| snapshot.collected_at_us > before_us && !snapshot.rows.iter().any(|row| row.query_id == query_id))
    })
    .await;
    const RETURNED_CALLS: i64 = 3;
    for i in 0..RETURNED_CALLS {
        client.query(PROBE, &[&(i as i32)]).await.unwrap();
    }
    wait_until(Duration::from_secs(20), "the returned probe in a snapshot", || async {
        latest_probe_calls(&url, query_id)
            .await
            .is_some_and(|(at, calls)| at > before_us && calls == RETURNED_CALLS)
    })
    .await;
    let (returned_us, _) = latest_probe_calls(&url, query_id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    pipeline.join().await;

    let database = pgmon_ingester::open_read_only(data_dir.path()).unwrap();
    let (calls, negative): (i64, i64) = database
        .query_row(
            "SELECT coalesce(sum(calls) FILTER (WHERE query_id = ? AND collected_at > make_timestamp(?) AND collected_at <= make_timestamp(?)), 0)::BIGINT,
                    count(*) FILTER (WHERE calls < 0 OR total_exec_time_ms < 0 OR rows < 0)
             FROM statement_deltas",
            duckdb::params![query_id, before_us, returned_us],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(calls, RETURNED_CALLS, "the returned entry's calls, counted from zero");
    assert_eq!(negative, 0);
}

/// A fresh PostgreSQL with pg_stat_statements that ran the probe once, and the probe's query id.
async fn run_probe_once() -> (TestPostgres, i64) {
    let postgres = TestPostgres::start();
    let client = postgres.connect().await;
    client.batch_execute("CREATE EXTENSION pg_stat_statements").await.unwrap();
    client.query(PROBE, &[&1]).await.unwrap();
    let query_id: i64 = client
        .query_one("SELECT queryid FROM pg_stat_statements WHERE query LIKE '%delta_probe%'", &[])
        .await
        .unwrap()
        .get(0);
    (postgres, query_id)
}

/// The probe's text as the ingester answers it (statement history over the last hour).
async fn stored_probe_text(client: &async_nats::Client, query_id: i64) -> Option<String> {
    let request = StatementHistoryRequest {
        target: "db".parse().unwrap(),
        query_id,
        from_us: common::now_us() - 3_600_000_000,
        to_us: common::now_us(),
        step_us: 60_000_000,
    };
    let subject = query_subject(StatementHistoryRequest::NAME, "db");
    // No responder yet: the ingester is still starting.
    let reply = client.request(subject, serde_json::to_vec(&request).unwrap().into()).await.ok()?;
    match serde_json::from_slice(&reply.payload).unwrap() {
        QueryReply::<StatementHistoryReply>::Ok(history) => history.query,
        other => panic!("statement history failed: {other:?}"),
    }
}

/// How many statements snapshots in the stream carry the probe's text.
async fn texts_sent(nats_url: &str, query_id: i64) -> usize {
    stream_statements(nats_url)
        .await
        .iter()
        .flat_map(|snapshot| snapshot.rows.iter())
        .filter(|row| row.query_id == query_id && row.query.is_some())
        .count()
}

/// A text sent once outlives the partition it arrived in: retention deletes that partition
/// while the statement is still sampled, and the text is still there (each partition that
/// opens keeps a copy of the texts of the statements sampled in the one before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_text_outlives_the_partition_it_arrived_in() {
    let nats = TestNats::start();
    let (postgres, query_id) = run_probe_once().await;
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let collector = common::collector_config(
        &nats.url(),
        &[("db", postgres.connection_string("postgres"))],
        Duration::from_secs(1),
    );
    let mut ingester = common::ingester_config(&nats.url(), data_dir.path());
    ingester.storage = pgmon_ingester::StorageOptions {
        period: pgmon_ingester::PartitionPeriod::new(Duration::from_secs(2)).unwrap(),
        retention: Duration::from_secs(4),
    };
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
    let ingester = tokio::spawn(pgmon_ingester::run(ingester, shutdown.clone()));
    let asker = pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await;

    wait_until(Duration::from_secs(30), "the probe's text stored", || async {
        stored_probe_text(&asker, query_id).await.is_some()
    })
    .await;
    let first_partitions = pgmon_ingester::partitions::list_partitions(data_dir.path()).unwrap();
    wait_until(
        Duration::from_secs(60),
        "retention to delete the partitions the text arrived in",
        || async {
            let now = pgmon_ingester::partitions::list_partitions(data_dir.path()).unwrap();
            first_partitions.iter().all(|partition| !now.contains(partition))
        },
    )
    .await;
    let text = stored_probe_text(&asker, query_id).await;
    assert!(text.as_deref().is_some_and(|text| text.contains("delta_probe")), "{text:?}");
    assert_eq!(texts_sent(&nats.url(), query_id).await, 1, "the text was sent once");

    shutdown.cancel();
    collector.await.unwrap().unwrap();
    ingester.await.unwrap().unwrap();
}

/// A rebuild from a stream whose first messages have expired, the one that carried a text
/// among them, still finds the text: the collector sends every text again from time to time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_finds_texts_whose_first_message_expired() {
    let nats = TestNats::start();
    let (postgres, query_id) = run_probe_once().await;
    let shutdown = CancellationToken::new();
    let mut collector = common::collector_config(
        &nats.url(),
        &[("db", postgres.connection_string("postgres"))],
        Duration::from_secs(1),
    );
    collector.nats.stream_max_age = Duration::from_secs(6);
    collector.statement_texts_every = Duration::from_secs(2);
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));

    let url = nats.url();
    let first_text_sequence = || async {
        common::stream_snapshots(&url)
            .await
            .into_iter()
            .find_map(|(sequence, snapshot)| match snapshot {
                AnySnapshot::Statements(snapshot) => snapshot
                    .rows
                    .iter()
                    .any(|row| row.query_id == query_id && row.query.is_some())
                    .then_some(sequence),
                _ => None,
            })
    };
    wait_until(Duration::from_secs(30), "the probe's text in the stream", || async {
        first_text_sequence().await.is_some()
    })
    .await;
    let original = first_text_sequence().await.unwrap();
    let jetstream =
        async_nats::jetstream::new(pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await);
    wait_until(Duration::from_secs(30), "the text's first message to expire", || async {
        let mut stream = jetstream.get_stream(pgmon_contract::subjects::SNAPSHOT_STREAM).await.unwrap();
        stream.info().await.unwrap().state.first_sequence > original
    })
    .await;
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    let rebuilt = tempfile::tempdir().unwrap();
    let args = pgmon_ingester::RebuildArgs {
        data_dir: rebuilt.path().to_owned(),
        consumer_name: "rebuild".to_owned(),
        storage: pgmon_ingester::StorageArgs {
            partition_period: pgmon_ingester::PartitionPeriod::DAY,
            retention: Duration::from_secs(30 * 86_400),
        },
    };
    pgmon_ingester::rebuild(
        pgmon_ingester::IngesterConfig::for_rebuild(args, common::nats_args_as(&nats.url(), pgmon_common::nats_access::NatsRole::Reader)),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let database = pgmon_ingester::open_read_only(rebuilt.path()).unwrap();
    let text: String = database
        .query_row("SELECT query FROM statement_texts WHERE query_id = ?", [query_id], |row| row.get(0))
        .unwrap();
    assert!(text.contains("delta_probe"), "{text}");
}
