//! Freshness benchmark, printing figures: the time from the collector taking an activity sample
//! of a real PostgreSQL to the row being answerable by the ingester's query service, with the
//! default one-second schedule. The baseline is the time the same snapshot takes to reach a
//! plain NATS subscriber (publishing alone).
//!
//! `cargo bench -p pgmon --bench freshness` (PGMON_BENCH_SAMPLES snapshots, 60 by default).

#[path = "../tests/common/mod.rs"]
mod common;

/// The allocator the pgmon binary uses, so figures are those of the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use futures::StreamExt;
use pgmon_contract::event::{decode_snapshot, SnapshotKind};
use pgmon_contract::query::{ActivityDimension, ActivitySeriesRequest, NamedQuery, QueryReply};
use pgmon_contract::subjects::{query_subject, snapshot_subject};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

async fn answerable(client: &async_nats::Client, collected_at_us: i64) -> bool {
    let request = ActivitySeriesRequest {
        target: "db".parse().unwrap(),
        from_us: collected_at_us,
        to_us: collected_at_us + 1_000_000,
        step_us: 1_000_000,
        by: ActivityDimension::WaitEventType,
        top: pgmon_contract::query::DEFAULT_TOP_SERIES,
    };
    let subject = query_subject(ActivitySeriesRequest::NAME, "db");
    let Ok(reply) = client.request(subject, serde_json::to_vec(&request).unwrap().into()).await else {
        return false;
    };
    matches!(
        serde_json::from_slice::<QueryReply<<ActivitySeriesRequest as NamedQuery>::Reply>>(&reply.payload),
        Ok(QueryReply::Ok(series)) if series.samples.first().is_some_and(|samples| *samples > 0)
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1)]
}

fn main() {
    let samples: usize = std::env::var("PGMON_BENCH_SAMPLES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let postgres = TestPostgres::start();
        let nats = TestNats::start();
        let data_dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let collector = common::collector_config(
            &nats.url(),
            &[("db", postgres.connection_string("postgres"))],
            Duration::from_secs(1),
        );
        let mut ingester = common::ingester_config(&nats.url(), data_dir.path());
        ingester.batch_wait = Duration::from_millis(250);
        let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
        let ingester = tokio::spawn(pgmon_ingester::run(ingester, shutdown.clone()));
        let client = pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await;
        let mut published = client
            .subscribe(snapshot_subject(&"db".parse().unwrap(), SnapshotKind::Activity))
            .await
            .unwrap();
        let mut to_subscriber = Vec::new();
        let mut to_answer = Vec::new();
        while to_answer.len() < samples {
            let message = published.next().await.unwrap();
            let received_us = common::now_us();
            let collected_at_us = decode_snapshot(&message.payload).unwrap().collected_at_us();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !answerable(&client, collected_at_us).await {
                assert!(Instant::now() < deadline, "a snapshot never became answerable");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            to_answer.push((common::now_us() - collected_at_us) as f64 / 1000.0);
            to_subscriber.push((received_us - collected_at_us) as f64 / 1000.0);
            // Skip snapshots that arrived while polling, so each measurement starts fresh.
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), published.next()).await {}
        }
        shutdown.cancel();
        collector.await.unwrap().unwrap();
        ingester.await.unwrap().unwrap();
        to_answer.sort_by(f64::total_cmp);
        to_subscriber.sort_by(f64::total_cmp);
        println!(
            "freshness: collection to answerable by the query service, {} snapshots: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            to_answer.len(),
            percentile(&to_answer, 0.50),
            percentile(&to_answer, 0.99),
            to_answer.last().unwrap()
        );
        println!(
            "freshness: baseline, collection to a plain NATS subscriber: p50 {:.0} ms, p99 {:.0} ms",
            percentile(&to_subscriber, 0.50),
            percentile(&to_subscriber, 0.99)
        );
    });
}
