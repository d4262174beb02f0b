//! `/readyz` and `/metrics` of every role, each started as its own `pgmon` process: each says
//! it is ready, the exposition parses as OpenMetrics (what Prometheus scrapes) and the counters
//! move when the role works; the web's request series stay a fixed set whatever clients send,
//! and can be served on a listener of their own.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::wait_until;
use pgmon_common::nats_access::NatsRole;
use pgmon_test_support::{find_nats_server, free_local_port, TestNats, TestPostgres};

/// A role's process, killed when the test ends however it ends.
struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_role(arguments: &[String]) -> Role {
    let child = Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .args(arguments)
        .env("PGMON_NATS_SERVER", find_nats_server())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Role(child)
}

/// The scrape of `url`, checked to parse as OpenMetrics.
async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let response = match http.get(url).send().await {
        Ok(response) => response,
        Err(_) => return String::new(),
    };
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let text = response.text().await.unwrap();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    // Served before the role has registered its metrics (the parser refuses an empty set).
    if text.trim() == "# EOF" {
        return String::new();
    }
    if let Err(error) = openmetrics_parser::openmetrics::parse_openmetrics(&text) {
        panic!("{url} does not parse as OpenMetrics: {error:?}\n{text}");
    }
    text
}

/// The sum of the samples named `name` (over all label sets) in a scrape.
fn total(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_metrics_that_parse_and_move() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let [collector_port, ingester_port, web_port] = [free_local_port(), free_local_port(), free_local_port()];
    let nats_url = nats.url();
    let _collector = start_role(&[
        "collect".into(),
        format!("--nats-url={nats_url}"),
        format!("--nats-nkey-file={}", nats.key_file(NatsRole::Collector).display()),
        format!("--target=db={}", postgres.url()),
        "--activity-interval=250ms".into(),
        format!("--health-listen=127.0.0.1:{collector_port}"),
    ]);
    let _ingester = start_role(&[
        "ingest".into(),
        format!("--nats-url={nats_url}"),
        format!("--nats-nkey-file={}", nats.key_file(NatsRole::Ingester).display()),
        format!("--data-dir={}", data_dir.path().display()),
        format!("--health-listen=127.0.0.1:{ingester_port}"),
    ]);
    let _web = start_role(&[
        "serve".into(),
        format!("--nats-url={nats_url}"),
        format!("--nats-nkey-file={}", nats.key_file(NatsRole::Web).display()),
        format!("--listen=127.0.0.1:{web_port}"),
    ]);
    let http = common::http_client_builder().build().unwrap();
    for port in [collector_port, ingester_port, web_port] {
        let url = format!("http://127.0.0.1:{port}/readyz");
        wait_until(Duration::from_secs(30), "every role ready", || {
            let http = http.clone();
            let url = url.clone();
            async move { http.get(url).send().await.is_ok_and(|response| response.status() == 200) }
        })
        .await;
    }
    let collector_url = format!("http://127.0.0.1:{collector_port}/metrics");
    let ingester_url = format!("http://127.0.0.1:{ingester_port}/metrics");
    let web_url = format!("http://127.0.0.1:{web_port}/metrics");

    let moved = |url: String, name: &'static str, above: f64| {
        let http = http.clone();
        move || {
            let http = http.clone();
            let url = url.clone();
            async move { total(&scrape(&http, &url).await, name) > above }
        }
    };
    wait_until(
        Duration::from_secs(30),
        "activity snapshots counted by the collector",
        moved(collector_url.clone(), "pgmon_collector_snapshots_total", 3.0),
    )
    .await;
    let collector = scrape(&http, &collector_url).await;
    assert!(
        collector.contains(r#"pgmon_collector_snapshots_total{target="db",kind="activity",outcome="ok"}"#),
        "{collector}"
    );
    assert!(
        total(&collector, "pgmon_collector_snapshot_duration_seconds_count") > 3.0,
        "{collector}"
    );
    assert_eq!(total(&collector, "pgmon_collector_targets_sampled"), 1.0, "{collector}");
    assert!(collector.contains("pgmon_collector_publish_buffer_bytes"), "{collector}");

    wait_until(
        Duration::from_secs(30),
        "rows counted by the ingester",
        moved(ingester_url.clone(), "pgmon_ingester_rows_total", 0.0),
    )
    .await;
    let ingester = scrape(&http, &ingester_url).await;
    for name in [
        "pgmon_ingester_snapshots_total",
        "pgmon_ingester_batches_total",
        "pgmon_ingester_partition_bytes",
    ] {
        assert!(total(&ingester, name) > 0.0, "{name}: {ingester}");
    }
    assert!(ingester.contains("pgmon_ingester_dead_letters_total 0"), "{ingester}");
    assert!(ingester.contains("pgmon_ingester_consumer_pending_messages"), "{ingester}");

    // A page asks the ingester a named query: both the web role and the ingester count it.
    let before = total(&scrape(&http, &web_url).await, "pgmon_http_request_duration_seconds_count");
    let series = common::api_client(&nats_url, pgmon_common::access::Role::Viewer)
        .await
        .get(format!("http://127.0.0.1:{web_port}/api/v1/targets/db/activity?range=1m&step=1s"))
        .send()
        .await
        .unwrap();
    assert_eq!(series.status(), 200);
    let web = scrape(&http, &web_url).await;
    assert!(total(&web, "pgmon_http_request_duration_seconds_count") > before, "{web}");
    assert!(
        web.contains(r#"route="/api/v1/targets/{target}/activity",method="GET",status="200""#),
        "{web}"
    );
    let ingester = scrape(&http, &ingester_url).await;
    assert!(
        ingester.contains(r#"pgmon_ingester_query_duration_seconds_count{query="activity_series"}"#),
        "{ingester}"
    );
}

/// The label sets of the web's request-duration series in a scrape.
fn request_series(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix("pgmon_http_request_duration_seconds_count"))
        .filter_map(|rest| rest.rsplit_once(' ').map(|(labels, _)| labels.to_owned()))
        .collect()
}

/// Requests an attacker varies freely: made-up methods, paths, targets, query strings.
async fn vary_everything(http: &reqwest::Client, web_port: u16, wave: &str) {
    let base = format!("http://127.0.0.1:{web_port}");
    for index in 0..60 {
        let made_up = reqwest::Method::from_bytes(format!("BREW{wave}{index}").as_bytes()).unwrap();
        for path in [
            format!("/targets/t-{wave}-{index}/activity?range={index}m&by=x{index}"),
            format!("/no/such/{wave}/{index}"),
            format!("/api/v1/targets/t-{wave}-{index}/statements?limit={index}"),
            format!("/assets/{wave}-{index}.js"),
        ] {
            http.request(made_up.clone(), format!("{base}{path}")).send().await.unwrap();
            http.get(format!("{base}{path}")).send().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_request_series_stay_bounded_and_can_leave_the_public_port() {
    let nats = TestNats::start();
    let [web_port, metrics_port] = [free_local_port(), free_local_port()];
    let _web = start_role(&[
        "serve".into(),
        format!("--nats-url={}", nats.url()),
        format!("--nats-nkey-file={}", nats.key_file(NatsRole::Web).display()),
        format!("--listen=127.0.0.1:{web_port}"),
        format!("--metrics-listen=127.0.0.1:{metrics_port}"),
    ]);
    let http = common::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    wait_until(Duration::from_secs(30), "the web ready", || {
        let http = http.clone();
        let url = format!("http://127.0.0.1:{metrics_port}/readyz");
        async move { http.get(url).send().await.is_ok_and(|response| response.status() == 200) }
    })
    .await;
    let public = http.get(format!("http://127.0.0.1:{web_port}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "/metrics is not on the public port");

    vary_everything(&http, web_port, "first").await;
    let after_first_wave = request_series(&scrape(&http, &metrics_url).await);
    vary_everything(&http, web_port, "second").await;
    let after_second_wave = request_series(&scrape(&http, &metrics_url).await);
    assert_eq!(
        after_first_wave, after_second_wave,
        "other methods, paths and query strings added no series"
    );
    assert!(after_second_wave.len() <= 30, "{after_second_wave:#?}");
    assert!(
        after_second_wave.iter().any(|labels| labels.contains(r#"method="other""#)),
        "{after_second_wave:#?}"
    );
    assert!(
        after_second_wave
            .iter()
            .all(|labels| !labels.contains("first") && !labels.contains("second")),
        "{after_second_wave:#?}"
    );
}
