//! pgmon on a big server. Hundreds of sessions with long query texts make every activity sample
//! larger than a NATS message, so it travels in parts: averages, sample counts, the sessions of
//! a slice, "now" and the blocking tree must count samples, not parts. Charts with hundreds of
//! series and lists of ten thousand sessions must answer, bounded, and an answer too large for
//! any reply must say so.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use common::{api_client, collector_config, ingester_config, now_us, serve_config, start_lock_wait, stream_activity, wait_until};
use pgmon_common::access::Role;
use pgmon_contract::event::{encode_snapshot_parts, ActivityRow, SnapshotKind};
use pgmon_contract::subjects::{snapshot_message_id, snapshot_subject};
use pgmon_test_support::{TestNats, TestPostgres};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SLEEPERS: usize = 300;

async fn get(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{url}: {}", &body[..body.len().min(500)]);
    serde_json::from_str(&body).unwrap()
}

/// Per bucket, the sum of every series of a series reply.
fn bucket_totals(reply: &Value) -> Vec<f64> {
    let buckets = reply["samples"].as_array().unwrap().len();
    (0..buckets)
        .map(|index| {
            reply["series"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|series| series["values"][index].as_f64())
                .sum()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_sent_in_parts_read_back_exactly() {
    let postgres = TestPostgres::start_with_settings(&[("max_connections", "400"), ("track_activity_query_size", "8192")]);
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();

    // Hundreds of sleepers, each with a 4 KB query text and an application of its own, and a
    // blocking chain.
    let lock_wait = start_lock_wait(&postgres).await;
    let mut sleepers = Vec::new();
    for index in 0..SLEEPERS {
        let dsn = format!("{} application_name=app-{index:03}", postgres.connection_string("postgres"));
        let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let text = format!("SELECT pg_sleep(600) /* sleeper {index} {} */", "x".repeat(4000));
        sleepers.push(tokio::spawn(async move {
            let _ = client.batch_execute(&text).await;
            client
        }));
    }
    let mut collector = collector_config(
        &nats.url(),
        &[("db", postgres.connection_string("postgres"))],
        Duration::from_millis(500),
    );
    collector.query_text_max_length = 8192;
    collector.statements_interval = Duration::from_secs(3600);
    collector.objects_interval = Duration::from_secs(3600);
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
    let ingester = tokio::spawn(pgmon_ingester::run(ingester_config(&nats.url(), data_dir.path()), shutdown.clone()));
    let server = pgmon_query_api::bind(&serve_config(&nats.url())).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let web = tokio::spawn(server.serve(shutdown.clone()));
    let http = api_client(&nats.url(), Role::Viewer).await;

    // Samples of every sleeper, each sent in several parts.
    let all_sleeping_since = tokio::sync::OnceCell::new();
    wait_until(Duration::from_secs(60), "samples of every sleeper sent in parts", || async {
        let mut rows_by_sample: BTreeMap<i64, (usize, u32)> = BTreeMap::new();
        for snapshot in stream_activity(&nats.url()).await {
            let sleeping = snapshot
                .rows
                .iter()
                .filter(|row| row.wait_event.as_deref() == Some("PgSleep"))
                .count();
            let entry = rows_by_sample.entry(snapshot.collected_at_us).or_default();
            entry.0 += sleeping;
            entry.1 = snapshot.part.map_or(1, |part| part.count);
        }
        let full: Vec<i64> = rows_by_sample
            .iter()
            .filter(|(_, (sleeping, parts))| *sleeping == SLEEPERS && *parts > 1)
            .map(|(at, _)| *at)
            .collect();
        if let Some(first) = full.first() {
            let _ = all_sleeping_since.set(*first);
        }
        full.len() >= 12
    })
    .await;
    let from_us = *all_sleeping_since.get().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to_us = now_us() - 1_000_000;
    let samples: BTreeSet<i64> = stream_activity(&nats.url())
        .await
        .iter()
        .map(|snapshot| snapshot.collected_at_us)
        .filter(|at| (from_us..to_us).contains(at))
        .collect();
    let parts_per_sample = stream_activity(&nats.url()).await.last().unwrap().part.unwrap().count;
    eprintln!("{} samples of {SLEEPERS} sleepers, each in {parts_per_sample} parts", samples.len());
    let window = format!("from={}&to={}", from_us as f64 / 1e6, to_us as f64 / 1e6);

    wait_until(Duration::from_secs(20), "the window to be stored", || async {
        let reply = get(
            &http,
            &format!("{base}/api/v1/targets/db/activity?{window}&step=3600&by=wait_event"),
        )
        .await;
        reply["samples"][0].as_u64() == Some(samples.len() as u64)
    })
    .await;
    // One bucket over the window: every sample once, exactly SLEEPERS sessions on PgSleep.
    let reply = get(
        &http,
        &format!("{base}/api/v1/targets/db/activity?{window}&step=3600&by=wait_event"),
    )
    .await;
    let pg_sleep = reply["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|series| series["name"] == "PgSleep")
        .unwrap();
    assert_eq!(pg_sleep["values"][0].as_f64(), Some(SLEEPERS as f64), "{reply}");

    // The sessions of the slice: every sleeper, in every sample.
    let sessions = get(&http, &format!("{base}/api/v1/targets/db/sessions?{window}&limit=1000")).await;
    let sleeping: Vec<&Value> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|session| session["application"].as_str().is_some_and(|name| name.starts_with("app-")))
        .collect();
    assert_eq!(sleeping.len(), SLEEPERS);
    assert!(
        sleeping
            .iter()
            .all(|session| session["samples"].as_u64() == Some(samples.len() as u64)),
        "every sleeper is in every sample"
    );

    // "Now" joins the newest sample's parts: every active session, and the blocking chain.
    let fleet = get(&http, &format!("{base}/api/v1/fleet")).await;
    assert_eq!(fleet[0]["active_sessions_now"].as_u64(), Some(SLEEPERS as u64 + 1), "{fleet}");
    let holder_pid: i32 = lock_wait.holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let blocking = get(&http, &format!("{base}/api/v1/targets/db/locks/current")).await;
    assert_eq!(blocking["roots"].as_array().unwrap().len(), 1, "{blocking}");
    assert_eq!(blocking["roots"][0]["pid"].as_i64(), Some(i64::from(holder_pid)));
    assert_eq!(blocking["roots"][0]["waiters"].as_array().unwrap().len(), 1);

    // Hundreds of applications: the top 20 and one "other" series, summing to the true load.
    let by_wait = get(
        &http,
        &format!("{base}/api/v1/targets/db/activity?{window}&step=1&by=wait_event_type"),
    )
    .await;
    let by_application = get(&http, &format!("{base}/api/v1/targets/db/activity?{window}&step=1&by=application")).await;
    let series = by_application["series"].as_array().unwrap();
    assert_eq!(series.len(), 21);
    let other = series.last().unwrap();
    assert_eq!(other["name"], "other");
    assert!(other["other_series"].as_u64().unwrap() >= (SLEEPERS - 20) as u64, "{other}");
    for (total, expected) in bucket_totals(&by_application).iter().zip(bucket_totals(&by_wait)) {
        assert!(
            (total - expected).abs() < 1e-9,
            "stacked applications sum to {total}, the load is {expected}"
        );
    }
    let top_100 = get(
        &http,
        &format!("{base}/api/v1/targets/db/activity?{window}&step=1&by=application&top=100"),
    )
    .await;
    assert_eq!(top_100["series"].as_array().unwrap().len(), 101);
    let refused = http
        .get(format!("{base}/api/v1/targets/db/activity?{window}&by=application&top=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.json::<Value>().await.unwrap()["field"], "top");

    lock_wait.holder.batch_execute("COMMIT").await.unwrap();
    let admin = postgres.connect().await;
    admin
        .batch_execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'app-%'")
        .await
        .unwrap();
    for sleeper in sleepers {
        let _ = sleeper.await;
    }
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    ingester.await.unwrap().unwrap();
    web.await.unwrap().unwrap();
}

/// Publishes one activity sample of `target` with `sessions` backends, each with a query text
/// of `text_bytes`, in as many parts as the server's message size needs.
async fn publish_wide_sample(jetstream: &jetstream::Context, target: &str, collected_at_us: i64, sessions: usize, text_bytes: usize) {
    let rows = (0..sessions)
        .map(|index| ActivityRow {
            pid: 100_000 + index as i32,
            backend_type: Some("client backend".into()),
            state: Some("active".into()),
            client_addr: Some(format!("10.{}.{}.{}", index / 65_536, (index / 256) % 256, index % 256)),
            backend_start_us: Some(collected_at_us - 60_000_000),
            query: Some(format!("SELECT {index} /* {} */", "q".repeat(text_bytes))),
            ..ActivityRow::default()
        })
        .collect();
    let snapshot = common::activity_sample(target, collected_at_us, rows);
    let max_payload = jetstream.client().server_info().max_payload - 4096;
    for (part, payload) in encode_snapshot_parts(&snapshot, max_payload).unwrap() {
        let mut headers = async_nats::HeaderMap::new();
        let id = snapshot_message_id(&snapshot.target, SnapshotKind::Activity, collected_at_us, part);
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        jetstream
            .publish_with_headers(snapshot_subject(&snapshot.target, SnapshotKind::Activity), headers, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_answer_and_a_reply_too_large_says_so() {
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let ingester = tokio::spawn(pgmon_ingester::run(ingester_config(&nats.url(), data_dir.path()), shutdown.clone()));
    let server = pgmon_query_api::bind(&serve_config(&nats.url())).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let web = tokio::spawn(server.serve(shutdown.clone()));
    let http = api_client(&nats.url(), Role::Viewer).await;
    let jetstream = jetstream::new(pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await);

    let collected_at_us = now_us() - 30_000_000;
    publish_wide_sample(&jetstream, "wide", collected_at_us, 10_000, 2_000).await;
    publish_wide_sample(&jetstream, "huge", collected_at_us, 10_000, 5_000).await;
    let window = format!(
        "from={}&to={}",
        (collected_at_us - 1_000_000) / 1_000_000,
        collected_at_us / 1_000_000 + 2
    );
    wait_until(Duration::from_secs(30), "both samples stored", || async {
        for target in ["wide", "huge"] {
            let url = format!("{base}/api/v1/targets/{target}/activity?{window}&step=10");
            let reply: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            if !reply["samples"]
                .as_array()
                .is_some_and(|samples| samples.iter().any(|n| n.as_u64() == Some(1)))
            {
                return false;
            }
        }
        true
    })
    .await;

    // Some 23 MB of sessions: larger than a NATS message, sent in parts, whole here.
    let sessions = get(&http, &format!("{base}/api/v1/targets/wide/sessions?{window}&limit=10000")).await;
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 10_000);
    let addresses: BTreeSet<&str> = sessions.iter().map(|session| session["client_addr"].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), 10_000);
    // Ten thousand client addresses stack as 20 series and "other", summing to the load.
    let by_address = get(
        &http,
        &format!("{base}/api/v1/targets/wide/activity?{window}&step=10&by=client_address"),
    )
    .await;
    assert_eq!(by_address["series"].as_array().unwrap().len(), 21);
    let total: f64 = bucket_totals(&by_address).iter().sum();
    assert!((total - 10_000.0).abs() < 1e-9, "{total}");

    // Some 53 MB: more than any reply may carry, refused with what to change.
    let refused = http
        .get(format!("{base}/api/v1/targets/huge/sessions?{window}&limit=10000"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let error = refused.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("the answer is ") && error.contains("a lower limit"), "{error}");
    let fewer = get(&http, &format!("{base}/api/v1/targets/huge/sessions?{window}&limit=3000")).await;
    assert_eq!(fewer.as_array().unwrap().len(), 3_000);

    shutdown.cancel();
    ingester.await.unwrap().unwrap();
    web.await.unwrap().unwrap();
}
