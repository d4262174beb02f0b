//! Ground truth for the activity chart: N sessions sleeping in pg_sleep for a known window show
//! as about N average active sessions on PgSleep (type Timeout) in that window, about 0 outside.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{api_client, serve_config, spawn_pipeline, wait_until};
use pgmon_common::access::Role;
use pgmon_test_support::{TestNats, TestPostgres};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SLEEPERS: usize = 4;
const SLEEP_SECONDS: u64 = 6;

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

async fn series(http: &reqwest::Client, base: &str, from: f64, to: f64, by: &str) -> Value {
    let url = format!("{base}/api/v1/targets/db/activity?from={from}&to={to}&step=1&by={by}");
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}: {}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Values of series `name` by bucket start (seconds), `None` for gaps.
fn values_of(reply: &Value, name: &str) -> Vec<(f64, Option<f64>)> {
    let starts = reply["bucket_starts_us"]
        .as_array()
        .unwrap()
        .iter()
        .map(|us| us.as_f64().unwrap() / 1e6);
    let series = reply["series"].as_array().unwrap().iter().find(|series| series["name"] == name);
    let samples: Vec<u64> = reply["samples"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    starts
        .enumerate()
        .map(|(index, start)| {
            let value = match series {
                Some(series) => series["values"][index].as_f64(),
                None => (samples[index] > 0).then_some(0.0),
            };
            (start, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_sessions_show_as_average_active_sessions_on_pg_sleep() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();

    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let server = pgmon_query_api::bind(&serve_config(&nats.url())).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let web = tokio::spawn(server.serve(shutdown.clone()));
    let http = api_client(&nats.url(), Role::Viewer).await;

    // Some quiet seconds before the window, stored.
    let quiet_from = unix_seconds(SystemTime::now());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let window_start = unix_seconds(SystemTime::now());
    let mut sleepers = Vec::new();
    for _ in 0..SLEEPERS {
        let client = postgres.connect().await;
        sleepers.push(tokio::spawn(async move {
            client.execute(&format!("SELECT pg_sleep({SLEEP_SECONDS})"), &[]).await.unwrap();
        }));
    }
    for sleeper in sleepers {
        sleeper.await.unwrap();
    }
    let window_end = unix_seconds(SystemTime::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet_to = unix_seconds(SystemTime::now());

    // Wait until the ingester has stored samples up to the end of the quiet tail.
    wait_until(Duration::from_secs(20), "samples of the whole range to be stored", || {
        let http = http.clone();
        let base = base.clone();
        async move {
            let reply = series(&http, &base, quiet_from, quiet_to, "wait_event").await;
            reply["samples"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .nth(1)
                .is_some_and(|n| n.as_u64().unwrap() > 0)
        }
    })
    .await;

    for (by, name) in [("wait_event", "PgSleep"), ("wait_event_type", "Timeout")] {
        let reply = series(&http, &base, quiet_from.floor(), quiet_to.ceil(), by).await;
        let values = values_of(&reply, name);
        let inside: Vec<f64> = values
            .iter()
            .filter(|(start, _)| *start >= window_start + 1.0 && start + 1.0 <= window_end - 0.5)
            .map(|(_, value)| value.expect("every second of the window has samples"))
            .collect();
        let outside: Vec<f64> = values
            .iter()
            .filter(|(start, _)| start + 1.0 <= window_start - 0.5 || *start >= window_end + 0.5)
            .filter_map(|(_, value)| *value)
            .collect();
        assert!(inside.len() >= 3, "too few buckets inside the window: {values:?}");
        assert!(outside.len() >= 3, "too few buckets outside the window: {values:?}");
        let mean_inside = inside.iter().sum::<f64>() / inside.len() as f64;
        assert!(
            (mean_inside - SLEEPERS as f64).abs() <= 0.5,
            "{name}: mean {mean_inside} inside, expected about {SLEEPERS}: {values:?}"
        );
        assert!(
            inside.iter().all(|value| (value - SLEEPERS as f64).abs() <= 1.0),
            "{name} inside: {inside:?}"
        );
        assert!(outside.iter().all(|value| *value <= 0.5), "{name} outside the window: {outside:?}");
    }

    shutdown.cancel();
    pipeline.join().await;
    web.await.unwrap().unwrap();
}
