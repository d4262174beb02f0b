//! The target registry in NATS KV: targets added, edited, disabled and removed with
//! `pgmon targets` while a collector runs; passwords stored sealed and never shown; a missing or
//! wrong secret key stops the collector at start with a clear error; several collectors split
//! the registry's targets without overlap and hand them over when one leaves.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{collector_config, newest_status_since, now_us, stream_activity, wait_until};
use pgmon_collector::TargetSpec;
use pgmon_common::nats_setup::connect_jetstream;
use pgmon_common::registry::{Registry, TargetRecord};
use pgmon_common::secret::SecretKey;
use pgmon_contract::event::{DownReason, TargetState};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "right-horse-battery-staple";

/// Runs `pgmon targets <arguments>` with `environment` added, feeding `stdin`; checks that no
/// output shows the password.
fn run_pgmon_targets(nats_url: &str, environment: &[(&str, &str)], arguments: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .arg("targets")
        .args(arguments)
        .env("PGMON_NATS_URL", nats_url)
        .env(
            "PGMON_NATS_NKEY_FILE",
            pgmon_test_support::key_file_for(nats_url, pgmon_common::nats_access::NatsRole::Admin),
        )
        .envs(environment.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!shown.contains(PASSWORD), "password shown: {shown}");
    output
}

/// Runs `pgmon targets <arguments>` with the secret key `key`; returns stdout, panicking on failure.
fn pgmon_targets(nats_url: &str, key: &str, arguments: &[&str], stdin: &str) -> String {
    let output = run_pgmon_targets(nats_url, &[("PGMON_SECRET_KEY", key)], arguments, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "pgmon targets {arguments:?} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn latest_activity_us(nats_url: &str, target: &str) -> Option<i64> {
    stream_activity(nats_url)
        .await
        .iter()
        .filter(|snapshot| snapshot.target.as_str() == target)
        .map(|snapshot| snapshot.collected_at_us)
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_added_edited_disabled_and_removed_while_the_collector_runs() {
    let nats = TestNats::start();
    let postgres = TestPostgres::start();
    postgres.require_passwords();
    let admin = postgres.connect().await;
    admin
        .batch_execute(&format!("CREATE ROLE monitor LOGIN PASSWORD '{PASSWORD}' IN ROLE pg_monitor"))
        .await
        .unwrap();
    let key = SecretKey::generate();
    let url = nats.url();
    let mut config = collector_config(&url, &[], Duration::from_millis(250));
    config.secret_key = Some(SecretKey::parse(&key).unwrap());
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(pgmon_collector::run(config, shutdown.clone()));

    let dsn = format!("host=127.0.0.1 port={} user=monitor dbname=postgres", postgres.port());
    let added = pgmon_targets(
        &url,
        &key,
        &["add", "watched", "--dsn", &dsn, "--password-stdin", "--interval", "objects=1h"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(added.trim(), "added target watched");
    wait_until(Duration::from_secs(20), "the new target up", || async {
        newest_status_since(&url, "watched", 0)
            .await
            .is_some_and(|status| status.state == TargetState::Up)
    })
    .await;
    let listed = pgmon_targets(&url, &key, &["list"], "");
    let line = listed.lines().find(|line| line.starts_with("watched")).expect(&listed);
    assert!(line.contains("stored") && line.contains("user=monitor"), "{listed}");

    // Stored sealed: the bucket never holds the password in clear.
    let jetstream = connect_jetstream(&common::nats_args(&url), pgmon_common::nats_access::NatsRole::Admin)
        .await
        .unwrap();
    let registry = Registry::open(&jetstream).await.unwrap();
    let stored = registry.get(&"watched".parse().unwrap()).await.unwrap().unwrap();
    let raw = serde_json::to_string(&stored).unwrap();
    assert!(!raw.contains(PASSWORD) && stored.sealed_password.is_some(), "{raw}");
    assert_eq!(stored.intervals.get("objects").map(String::as_str), Some("1h"));

    // The stored password is bound to where it goes: another host without the password again
    // is refused, and the stored record stays as it was.
    let moved = run_pgmon_targets(
        &url,
        &[("PGMON_SECRET_KEY", &key)],
        &["edit", "watched", "--dsn", &dsn.replace("127.0.0.1", "localhost")],
        "",
    );
    let refusal = String::from_utf8_lossy(&moved.stderr);
    assert!(!moved.status.success() && refusal.contains("give the password again"), "{refusal}");
    assert!(registry.get(&"watched".parse().unwrap()).await.unwrap().unwrap() == stored);

    // A wrong password: the collector reconnects with it and says why it fails.
    let edited_at = now_us();
    pgmon_targets(&url, &key, &["edit", "watched", "--password-stdin"], "not-the-password\n");
    wait_until(Duration::from_secs(20), "the target down with the wrong password", || async {
        newest_status_since(&url, "watched", edited_at)
            .await
            .is_some_and(|status| status.reason == Some(DownReason::AuthenticationFailed))
    })
    .await;

    // Right password again, but disabled: sampling stops.
    pgmon_targets(
        &url,
        &key,
        &["edit", "watched", "--password-stdin", "--disable"],
        &format!("{PASSWORD}\n"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let disabled_at = now_us();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        latest_activity_us(&url, "watched").await.is_none_or(|latest| latest < disabled_at),
        "a disabled target is still sampled"
    );

    let enabled_at = now_us();
    pgmon_targets(&url, &key, &["edit", "watched", "--enable"], "");
    wait_until(Duration::from_secs(20), "sampling again after enabling", || async {
        latest_activity_us(&url, "watched").await.is_some_and(|latest| latest > enabled_at)
    })
    .await;

    pgmon_targets(&url, &key, &["rm", "watched"], "");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let removed_at = now_us();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        latest_activity_us(&url, "watched").await.is_some_and(|latest| latest < removed_at),
        "a removed target is still sampled"
    );
    shutdown.cancel();
    collector.await.unwrap().unwrap();

    // No snapshot anywhere carries the password.
    let client = pgmon_test_support::connect_as(&url, pgmon_common::nats_access::NatsRole::Admin).await;
    let stream = async_nats::jetstream::new(client);
    let mut stream = stream.get_stream(pgmon_contract::subjects::SNAPSHOT_STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            assert!(!String::from_utf8_lossy(&message.payload).contains(PASSWORD), "message {sequence}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_secret_key_is_a_clear_error_at_start() {
    let nats = TestNats::start();
    let url = nats.url();
    let jetstream = connect_jetstream(&common::nats_args(&url), pgmon_common::nats_access::NatsRole::Admin)
        .await
        .unwrap();
    let registry = Registry::open(&jetstream).await.unwrap();
    let old_key = SecretKey::generate();
    let key = SecretKey::parse(&old_key).unwrap();
    let dsn = "host=127.0.0.1 user=monitor";
    let spec = TargetSpec::new("sealed", dsn).unwrap();
    registry
        .put(&TargetRecord {
            name: "sealed".parse().unwrap(),
            dsn: dsn.into(),
            sealed_password: Some(spec.seal_password(&key, PASSWORD)),
            enabled: true,
            labels: BTreeMap::new(),
            intervals: BTreeMap::new(),
        })
        .await
        .unwrap();

    let config = collector_config(&url, &[], Duration::from_secs(1));
    let error = pgmon_collector::run(config.clone(), CancellationToken::new()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "target sealed has a stored password but no secret key is configured: set PGMON_SECRET_KEY or --secret-key-file"
    );
    let mut wrong = config;
    wrong.secret_key = Some(SecretKey::parse(&SecretKey::generate()).unwrap());
    let error = pgmon_collector::run(wrong, CancellationToken::new()).await.unwrap_err().to_string();
    assert!(
        error.starts_with("target sealed: the secret key does not open the stored password"),
        "{error}"
    );
    assert!(!error.contains(PASSWORD));

    // Rotating the key: with the new key current and the old one previous, `reseal` seals the
    // password again; afterwards the new key alone opens it and the old one no longer does.
    let new_key = SecretKey::generate();
    let rotating = [
        ("PGMON_SECRET_KEY", new_key.as_str()),
        ("PGMON_PREVIOUS_SECRET_KEY", old_key.as_str()),
    ];
    let resealed = run_pgmon_targets(&url, &rotating, &["reseal"], "");
    assert!(resealed.status.success(), "{}", String::from_utf8_lossy(&resealed.stderr));
    assert_eq!(
        String::from_utf8_lossy(&resealed.stdout).trim(),
        "resealed 1 passwords; 0 were sealed with the current key already"
    );
    let again = run_pgmon_targets(&url, &rotating, &["reseal"], "");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "resealed 0 passwords; 1 were sealed with the current key already"
    );
    let record = registry.get(&"sealed".parse().unwrap()).await.unwrap().unwrap();
    let new_only = SecretKey::parse(&new_key).unwrap();
    let opened = TargetSpec::from_record(&record, Some(&new_only)).unwrap();
    assert_eq!(opened.connection.get_password(), Some(PASSWORD.as_bytes()));
    assert!(TargetSpec::from_record(&record, Some(&key)).is_err());
    let unknown_key = run_pgmon_targets(&url, &[("PGMON_SECRET_KEY", &SecretKey::generate())], &["reseal"], "");
    let stderr = String::from_utf8_lossy(&unknown_key.stderr);
    assert!(!unknown_key.status.success(), "{stderr}");
    assert!(
        stderr.contains("target sealed: the secret key does not open the stored password"),
        "{stderr}"
    );
}

/// Which collector sampled each target, per target, in time order.
async fn samplers_by_target(nats_url: &str, since_us: i64) -> BTreeMap<String, Vec<String>> {
    let mut by_target: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for snapshot in stream_activity(nats_url).await {
        if snapshot.collected_at_us > since_us {
            by_target
                .entry(snapshot.target.to_string())
                .or_default()
                .push((snapshot.collected_at_us, snapshot.collector.clone().unwrap_or_default()));
        }
    }
    by_target
        .into_iter()
        .map(|(target, mut samples)| {
            samples.sort();
            (target, samples.into_iter().map(|(_, collector)| collector).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_split_twenty_targets_and_one_leaving_hands_its_targets_over() {
    let nats = TestNats::start();
    let postgres = TestPostgres::start();
    let url = nats.url();
    let jetstream = connect_jetstream(&common::nats_args(&url), pgmon_common::nats_access::NatsRole::Admin)
        .await
        .unwrap();
    let registry = Registry::open(&jetstream).await.unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("db{i:02}")).collect();
    for name in &names {
        registry
            .put(&TargetRecord {
                name: name.parse().unwrap(),
                dsn: postgres.connection_string("postgres"),
                sealed_password: None,
                enabled: true,
                labels: BTreeMap::new(),
                intervals: BTreeMap::new(),
            })
            .await
            .unwrap();
    }
    let collector = |id: &str, shutdown: &CancellationToken| {
        let mut config = collector_config(&url, &[], Duration::from_millis(500));
        config.collector_id = id.to_owned();
        config.objects_interval = Duration::from_secs(600);
        config.statements_interval = Duration::from_secs(600);
        tokio::spawn(pgmon_collector::run(config, shutdown.clone()))
    };
    let alpha_shutdown = CancellationToken::new();
    let beta_shutdown = CancellationToken::new();
    let alpha = collector("alpha", &alpha_shutdown);
    let beta = collector("beta", &beta_shutdown);

    // Settled: in the last two seconds every target was sampled, each by one collector only,
    // and both collectors have a share.
    let all: BTreeSet<String> = names.iter().cloned().collect();
    wait_until(Duration::from_secs(40), "the targets split between both collectors", || async {
        let recent = samplers_by_target(&url, now_us() - 2_000_000).await;
        let collectors: BTreeSet<&String> = recent.values().flatten().collect();
        recent.keys().cloned().collect::<BTreeSet<_>>() == all
            && recent.values().all(|samplers| samplers.iter().all(|id| id == &samplers[0]))
            && collectors.len() == 2
    })
    .await;
    let settled_at = now_us();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = samplers_by_target(&url, settled_at).await;
    assert_eq!(window.keys().cloned().collect::<BTreeSet<_>>(), all, "a target was missed");
    for (target, samplers) in &window {
        assert!(samplers.iter().all(|id| id == &samplers[0]), "{target} sampled by {samplers:?}");
    }
    let shares: BTreeMap<&String, usize> = window.values().fold(BTreeMap::new(), |mut shares, samplers| {
        *shares.entry(&samplers[0]).or_default() += 1;
        shares
    });
    println!("targets per collector: {shares:?}");

    beta_shutdown.cancel();
    beta.await.unwrap().unwrap();
    let beta_left_at = now_us();
    wait_until(Duration::from_secs(20), "alpha sampling every target", || async {
        let recent = samplers_by_target(&url, beta_left_at + 1_000_000).await;
        recent.keys().cloned().collect::<BTreeSet<_>>() == all && recent.values().flatten().all(|id| id == "alpha")
    })
    .await;
    alpha_shutdown.cancel();
    alpha.await.unwrap().unwrap();

    // Never two collectors at once: each target's samplers form at most three runs
    // (alpha before beta joined, beta, alpha again after beta left), never interleaved.
    for (target, samplers) in samplers_by_target(&url, 0).await {
        let runs = samplers.windows(2).filter(|pair| pair[0] != pair[1]).count() + 1;
        assert!(runs <= 3, "{target} alternated between collectors: {samplers:?}");
    }
}
