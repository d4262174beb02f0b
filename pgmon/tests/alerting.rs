//! Alerting end to end: a real PostgreSQL with sessions waiting for a lock, a collector, real
//! NATS, alerters (in this process and as `pgmon alert` processes, one killed with SIGKILL) and
//! a real HTTP receiver: exactly one firing and one resolved notification per episode, signed,
//! delivered after the receiver comes back; bad alerts files named field by field.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use common::{collector_config, now_us, stream_activity, wait_until};
use pgmon_alerter::{AlerterConfig, RetryPolicy};
use pgmon_common::nats_access::NatsRole;
use pgmon_contract::alert::{AlertNotification, NotificationKind};
use pgmon_test_support::{nats_args_as, TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

const SIGNING_KEY: &str = "test-signing-key";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    signature: Option<String>,
    body: Vec<u8>,
}

impl Received {
    fn notification(&self) -> AlertNotification {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not a notification ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A webhook receiver on a local port that records every request and answers 200; it also
/// takes Alertmanager's `POST /api/v2/alerts`.
struct WebhookReceiver {
    received: Arc<Mutex<Vec<Received>>>,
    shutdown: CancellationToken,
}

impl WebhookReceiver {
    async fn start_on(address: SocketAddr) -> WebhookReceiver {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let recorded = received.clone();
        let app = axum::Router::new().fallback(axum::routing::post(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let recorded = recorded.clone();
                async move {
                    recorded.lock().unwrap().push(Received {
                        path: uri.path().to_owned(),
                        signature: headers.get("pgmon-signature").map(|value| value.to_str().unwrap().to_owned()),
                        body: body.to_vec(),
                    });
                    "ok"
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let shutdown = CancellationToken::new();
        let stopped = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
                .unwrap()
        });
        WebhookReceiver { received, shutdown }
    }

    /// What came to the webhook's path.
    fn notifications(&self) -> Vec<Received> {
        self.received_at("/hook")
    }

    fn received_at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|received| received.path == path)
            .cloned()
            .collect()
    }

    fn kinds(&self) -> Vec<NotificationKind> {
        self.notifications().iter().map(|received| received.notification().kind).collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An alerts file with a signed webhook to `port`, the receivers of `more_receivers` (TOML)
/// and one lock-wait rule sending to all of them.
fn alerts_file_with(directory: &Path, port: u16, sessions: u32, for_duration: &str, more_receivers: &[(&str, String)]) -> PathBuf {
    let secret = directory.join("webhook-secret");
    std::fs::write(&secret, format!("{SIGNING_KEY}\n")).unwrap();
    let path = directory.join("alerts.toml");
    let mut receivers = vec!["\"ops\"".to_owned()];
    let mut more = String::new();
    for (name, settings) in more_receivers {
        receivers.push(format!("{name:?}"));
        more.push_str(&format!("[[receiver]]\nname = {name:?}\n{settings}\n"));
    }
    std::fs::write(
        &path,
        format!(
            r#"
{more}
[[receiver]]
name = "ops"
type = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_file = "{}"

[[rule]]
name = "lock-pileup"
when.lock_waits = {{ sessions = {sessions} }}
for = "{for_duration}"
resolve_for = "3s"
severity = "critical"
receivers = [{}]
"#,
            secret.display(),
            receivers.join(", ")
        ),
    )
    .unwrap();
    path
}

/// The same with the webhook alone.
fn alerts_file(directory: &Path, port: u16, sessions: u32, for_duration: &str) -> PathBuf {
    alerts_file_with(directory, port, sessions, for_duration, &[])
}

/// A real SMTP server (aiosmtpd): STARTTLS with a certificate of the test CA, sign-in as
/// `pgmon` with `password` required, every message saved in `messages`.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    messages: tempfile::TempDir,
    certificates: pgmon_test_support::TestCertificates,
}

impl SmtpServer {
    fn start(directory: &Path, password: &str) -> SmtpServer {
        let certificates = pgmon_test_support::TestCertificates::make(&directory.join("smtp-tls"));
        let messages = tempfile::tempdir().unwrap();
        let port = pgmon_test_support::free_local_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/smtp_server.py");
        let mut child = std::process::Command::new(common::test_python())
            .arg(script)
            .arg(&certificates.server_certificate)
            .arg(&certificates.server_key)
            .args(["pgmon", password])
            .arg(messages.path())
            .arg(port.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the SMTP server did not start");
        SmtpServer {
            child,
            port,
            messages,
            certificates,
        }
    }

    /// The settings of an email receiver sending through this server.
    fn receiver_settings(&self, password_file: &Path) -> String {
        format!(
            "type = \"email\"\nsmtp_host = \"localhost\"\nsmtp_port = {}\nusername = \"pgmon\"\npassword_file = {:?}\nca_file = {:?}\nfrom = \"pgmon <pgmon@example.com>\"\nto = [\"dba@example.com\"]\n",
            self.port,
            password_file.display().to_string(),
            self.certificates.ca.display().to_string()
        )
    }

    /// The messages received, in order, as text.
    fn messages(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.messages.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        paths.sort();
        paths.iter().map(|path| std::fs::read_to_string(path).unwrap()).collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alerter_config(nats_url: &str, alerts_file: &Path, alerter_id: &str) -> AlerterConfig {
    AlerterConfig {
        nats: nats_args_as(nats_url, NatsRole::Alerter),
        alerts_file: Some(alerts_file.to_owned()),
        alerter_id: alerter_id.to_owned(),
        web_url: "http://pgmon.example".to_owned(),
        retry: RetryPolicy {
            first_wait: Duration::from_secs(1),
            longest_wait: Duration::from_secs(2),
            give_up_after: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(5),
        },
    }
}

/// Waits until the alerter's consumer exists: it reads samples from its creation on.
async fn wait_for_alerter(nats_url: &str, alerter_id: &str) {
    let jetstream = jetstream::new(pgmon_test_support::connect_as(nats_url, NatsRole::Admin).await);
    let name = format!("pgmon-alerter-{alerter_id}");
    wait_until(Duration::from_secs(30), "the alerter's consumer", || {
        let jetstream = jetstream.clone();
        let name = name.clone();
        async move {
            match jetstream.get_stream(pgmon_contract::subjects::SNAPSHOT_STREAM).await {
                Ok(stream) => stream.consumer_info(&name).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
}

/// What every test here starts with: a test PostgreSQL and NATS, a scratch directory, and a
/// free port for a receiver.
struct TestBed {
    postgres: TestPostgres,
    nats: TestNats,
    url: String,
    directory: tempfile::TempDir,
    port: u16,
}

impl TestBed {
    fn start() -> TestBed {
        let nats = TestNats::start();
        TestBed {
            postgres: TestPostgres::start(),
            url: nats.url(),
            nats,
            directory: tempfile::tempdir().unwrap(),
            port: pgmon_test_support::free_local_port(),
        }
    }
}

/// A collector sampling `postgres` as target `db` every `interval`, and an alerter run with
/// `config`, until `shutdown`.
struct Watching {
    collector: tokio::task::JoinHandle<Result<(), pgmon_collector::CollectorError>>,
    alerter: tokio::task::JoinHandle<Result<(), pgmon_alerter::AlerterError>>,
}

impl Watching {
    /// Starts both and returns once the alerter follows the stream.
    async fn start(postgres: &TestPostgres, config: AlerterConfig, interval: Duration, shutdown: &CancellationToken) -> Watching {
        let url = config.nats.url.clone();
        let alerter_id = config.alerter_id.clone();
        let collector = tokio::spawn(pgmon_collector::run(
            collector_config(&url, &[("db", postgres.connection_string("postgres"))], interval),
            shutdown.clone(),
        ));
        let alerter = tokio::spawn(pgmon_alerter::run(config, shutdown.clone()));
        wait_for_alerter(&url, &alerter_id).await;
        Watching { collector, alerter }
    }

    /// Waits for both to stop (cancel their token first) and checks they ended cleanly.
    async fn join(self) {
        self.collector.await.unwrap().unwrap();
        self.alerter.await.unwrap().unwrap();
    }
}

/// `count` sessions waiting for a lock on table `contended` that `holder` holds until COMMIT.
struct LockPileUp {
    holder: tokio_postgres::Client,
    waiters: Vec<tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>>,
}

async fn pile_up(postgres: &TestPostgres, count: usize) -> LockPileUp {
    let holder = postgres.connect().await;
    holder.batch_execute("CREATE TABLE IF NOT EXISTS contended (id int)").await.unwrap();
    holder.batch_execute("BEGIN; LOCK TABLE contended").await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..count {
        let waiter = postgres.connect().await;
        waiters.push(tokio::spawn(async move {
            waiter.batch_execute("BEGIN; LOCK TABLE contended; COMMIT").await
        }));
    }
    LockPileUp { holder, waiters }
}

impl LockPileUp {
    async fn release(self) {
        self.holder.batch_execute("COMMIT").await.unwrap();
        for waiter in self.waiters {
            waiter.await.unwrap().unwrap();
        }
    }
}

/// The first sample in the stream, at or after `since_us`, with at least `sessions` lock waits.
async fn first_sample_with_lock_waits(nats_url: &str, since_us: i64, sessions: usize) -> i64 {
    stream_activity(nats_url)
        .await
        .iter()
        .filter(|sample| sample.collected_at_us >= since_us)
        .find(|sample| {
            sample
                .rows
                .iter()
                .filter(|row| row.wait_event_type.as_deref() == Some("Lock"))
                .count()
                >= sessions
        })
        .map(|sample| sample.collected_at_us)
        .expect("a sample shows the lock waits")
}

fn check_signature(received: &Received) {
    assert_eq!(
        received.signature.as_deref(),
        Some(pgmon_alerter::notify::signature(SIGNING_KEY.as_bytes(), &received.body).as_str()),
        "the body is signed with the receiver's key"
    );
}

/// "At least 2 sessions wait for locks for 30 s": one firing notification, sent for the
/// sample 30 s (plus at most one sample) after the waits began, and one resolved notification
/// after the blocker commits; both signed, both linking to the moment; the same two emailed
/// through a real SMTP server over STARTTLS with a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_rule_fires_once_and_resolves_once() {
    let TestBed {
        postgres,
        nats: _nats,
        url,
        directory,
        port,
    } = TestBed::start();
    let receiver = WebhookReceiver::start_on(([127, 0, 0, 1], port).into()).await;
    let smtp_password = "smtp-secret-2f9c";
    let smtp = SmtpServer::start(directory.path(), smtp_password);
    let password_file = directory.path().join("smtp-password");
    std::fs::write(&password_file, smtp_password).unwrap();
    let file = alerts_file_with(
        directory.path(),
        port,
        2,
        "30s",
        &[
            ("mail", smtp.receiver_settings(&password_file)),
            ("am", format!("type = \"alertmanager\"\nurl = \"http://127.0.0.1:{port}\"\n")),
        ],
    );
    let shutdown = CancellationToken::new();
    let interval = Duration::from_secs(1);
    let watching = Watching::start(&postgres, alerter_config(&url, &file, "one"), interval, &shutdown).await;

    let began_us = now_us();
    let pile = pile_up(&postgres, 2).await;
    wait_until(Duration::from_secs(90), "the firing notification", || async {
        !receiver.notifications().is_empty()
    })
    .await;
    let first_breach_us = first_sample_with_lock_waits(&url, began_us, 2).await;
    let firing = receiver.notifications()[0].clone();
    check_signature(&firing);
    let firing = firing.notification();
    assert_eq!(
        (firing.kind, firing.rule.as_str(), firing.target.as_str()),
        (NotificationKind::Firing, "lock-pileup", "db")
    );
    let after_breach = firing.at_us - first_breach_us;
    assert!(
        after_breach >= 30_000_000 && after_breach <= 30_000_000 + 2 * interval.as_micros() as i64,
        "fired {after_breach} µs (sample time) after the first sample with two lock waits"
    );
    assert_eq!(firing.value, 2.0);
    assert!(firing.summary.starts_with("2 sessions wait for locks"), "{}", firing.summary);
    assert!(
        firing
            .links
            .iter()
            .any(|link| link.url.starts_with("http://pgmon.example/targets/db/locks?from=")),
        "{:?}",
        firing.links
    );

    pile.release().await;
    wait_until(Duration::from_secs(60), "the resolved notification", || async {
        receiver.notifications().len() >= 2
    })
    .await;
    // Time for a duplicate to show, were there one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(receiver.kinds(), vec![NotificationKind::Firing, NotificationKind::Resolved]);
    let resolved = receiver.notifications()[1].clone();
    check_signature(&resolved);
    let resolved = resolved.notification();
    assert_eq!(resolved.firing_since_us, firing.at_us);
    assert_ne!(resolved.id, firing.id);

    wait_until(Duration::from_secs(30), "both emails", || async { smtp.messages().len() >= 2 }).await;
    let emails = smtp.messages();
    assert_eq!(emails.len(), 2, "{emails:?}");
    assert!(
        emails[0].contains("Subject: [FIRING] lock-pileup on db (critical)"),
        "{}",
        emails[0]
    );
    assert!(emails[0].contains(&firing.id), "{}", emails[0]);
    assert!(
        emails[1].contains("Subject: [RESOLVED] lock-pileup on db (critical)"),
        "{}",
        emails[1]
    );
    assert!(emails.iter().all(|email| !email.contains(smtp_password)));

    let alertmanager: Vec<serde_json::Value> = receiver
        .received_at("/api/v2/alerts")
        .iter()
        .map(|received| serde_json::from_slice(&received.body).unwrap())
        .collect();
    assert_eq!(alertmanager.len(), 2, "{alertmanager:?}");
    let (fired, ended) = (&alertmanager[0][0], &alertmanager[1][0]);
    assert_eq!(
        (fired["labels"]["alertname"].as_str(), fired["labels"]["target"].as_str()),
        (Some("lock-pileup"), Some("db"))
    );
    assert_eq!(fired["labels"], ended["labels"], "the same alert, by its labels");
    assert_eq!(fired["startsAt"], ended["startsAt"]);
    assert!(
        fired["endsAt"].as_str() > ended["endsAt"].as_str(),
        "a firing alert expires later than it resolved"
    );

    // The same rule replayed over the stream would have fired and resolved once too.
    let replayed = std::process::Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .args(["alert", "check"])
        .arg(&file)
        .args(["--since", "15m", "--nats-url", &url])
        .env("PGMON_NATS_NKEY_FILE", pgmon_test_support::key_file_for(&url, NatsRole::Reader))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&replayed.stdout);
    assert!(replayed.status.success(), "{printed}{}", String::from_utf8_lossy(&replayed.stderr));
    assert_eq!(printed.matches("lock-pileup on db would have fired at").count(), 1, "{printed}");
    assert_eq!(printed.matches("lock-pileup on db would have resolved at").count(), 1, "{printed}");

    shutdown.cancel();
    watching.join().await;
}

fn spawn_alerter_process(nats_url: &str, file: &Path, alerter_id: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .args([
            "alert",
            "--nats-url",
            nats_url,
            "--health-listen",
            "127.0.0.1:0",
            "--alerter-id",
            alerter_id,
        ])
        .args(["--notify-retry-first", "1s", "--notify-retry-longest", "2s"])
        .arg("--alerts-file")
        .arg(file)
        .env(
            "PGMON_NATS_NKEY_FILE",
            pgmon_test_support::key_file_for(nats_url, NatsRole::Alerter),
        )
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Two `pgmon alert` processes evaluate the same rule; one is killed with SIGKILL while the
/// alert fires: still one firing and one resolved notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_alerters_and_a_kill_still_notify_once_per_transition() {
    let TestBed {
        postgres,
        nats: _nats,
        url,
        directory,
        port,
    } = TestBed::start();
    let receiver = WebhookReceiver::start_on(([127, 0, 0, 1], port).into()).await;
    let file = alerts_file(directory.path(), port, 1, "5s");
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(pgmon_collector::run(
        collector_config(&url, &[("db", postgres.connection_string("postgres"))], Duration::from_millis(500)),
        shutdown.clone(),
    ));
    let mut first = spawn_alerter_process(&url, &file, "first");
    let mut second = spawn_alerter_process(&url, &file, "second");
    wait_for_alerter(&url, "first").await;
    wait_for_alerter(&url, "second").await;

    let pile = pile_up(&postgres, 1).await;
    wait_until(Duration::from_secs(60), "the firing notification", || async {
        !receiver.notifications().is_empty()
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    pile.release().await;
    wait_until(Duration::from_secs(60), "the resolved notification", || async {
        receiver.notifications().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(receiver.kinds(), vec![NotificationKind::Firing, NotificationKind::Resolved]);

    second.kill().unwrap();
    second.wait().unwrap();
    shutdown.cancel();
    collector.await.unwrap().unwrap();
}

/// The receiver is down when the alert fires: the delivery is retried, and arrives once when
/// the receiver is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_reaches_a_receiver_that_was_down_once_it_is_back() {
    let TestBed {
        postgres,
        nats: _nats,
        url,
        directory,
        port,
    } = TestBed::start();
    let file = alerts_file(directory.path(), port, 1, "2s");
    let shutdown = CancellationToken::new();
    let watching = Watching::start(
        &postgres,
        alerter_config(&url, &file, "lonely"),
        Duration::from_millis(500),
        &shutdown,
    )
    .await;

    let pile = pile_up(&postgres, 1).await;
    let jetstream = jetstream::new(pgmon_test_support::connect_as(&url, NatsRole::Admin).await);
    wait_until(Duration::from_secs(60), "a delivery attempted and retried", || {
        let jetstream = jetstream.clone();
        async move {
            let Ok(stream) = jetstream.get_stream(pgmon_contract::subjects::ALERT_STREAM).await else {
                return false;
            };
            let Ok(info) = stream.consumer_info(pgmon_contract::subjects::NOTIFIER_CONSUMER).await else {
                return false;
            };
            info.num_redelivered > 0 || info.num_ack_pending > 0 && info.delivered.stream_sequence > 0
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let receiver = WebhookReceiver::start_on(([127, 0, 0, 1], port).into()).await;
    wait_until(Duration::from_secs(30), "the notification after the retry", || async {
        !receiver.notifications().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.kinds(), vec![NotificationKind::Firing], "delivered once");
    // The alerter's /metrics count the failed attempt and the delivery.
    let metrics = pgmon_common::metrics::encode_text();
    for series in [
        "pgmon_alerter_notifications_total{receiver=\"ops\",outcome=\"failed\"}",
        "pgmon_alerter_notifications_total{receiver=\"ops\",outcome=\"sent\"}",
        "pgmon_alerter_evaluations_total",
        "pgmon_alerter_transitions_total",
        "pgmon_alerter_evaluation_lag_seconds",
    ] {
        assert!(metrics.contains(series), "{series} missing from:\n{metrics}");
    }

    pile.release().await;
    shutdown.cancel();
    watching.join().await;
}

/// `pgmon alert check` names the field of every problem and exits 1; a good file passes.
#[test]
fn bad_alerts_files_are_refused_field_by_field() {
    let directory = tempfile::tempdir().unwrap();
    let good = alerts_file(directory.path(), 9, 2, "30s");
    let check = |path: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgmon"))
            .args(["alert", "check"])
            .arg(path)
            .output()
            .unwrap()
    };
    let output = check(&good);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 receivers, 1 rules, no problem found"));

    let text = std::fs::read_to_string(&good).unwrap();
    for (broken, expected) in [
        (
            text.replace("sessions = 2", "sessions = 0"),
            "rule[0].when.lock_waits.sessions: must be at least 1",
        ),
        (
            text.replace("receivers = [\"ops\"]", "receivers = [\"pager\"]"),
            "rule[0].receivers[0]: no receiver is named \"pager\"",
        ),
        (
            text.replace("for = \"30s\"", "for = \"half a minute\""),
            "\"half a minute\" is not a duration",
        ),
        (text.replace("severity = \"critical\"", "severity = \"dire\""), "dire"),
        (text.replace("when.lock_waits", "when.lock_wait"), "lock_wait"),
    ] {
        let path = directory.path().join("broken.toml");
        std::fs::write(&path, &broken).unwrap();
        let output = check(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
        assert!(stderr.contains(&path.display().to_string()), "names the file: {stderr}");
    }
}

/// The Alerts page and API: a firing alert shows now and in the history (and on the target's
/// chart markers), an admin's silence keeps the resolution from the receiver but records it
/// with who silenced, rules are edited with field-named problems, viewers change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_page_and_api_show_alerts_silences_and_rules() {
    let TestBed {
        postgres,
        nats: _nats,
        url,
        directory,
        port,
    } = TestBed::start();
    let receiver = WebhookReceiver::start_on(([127, 0, 0, 1], port).into()).await;
    let file = alerts_file(directory.path(), port, 1, "2s");
    let shutdown = CancellationToken::new();
    let watching = Watching::start(&postgres, alerter_config(&url, &file, "web"), Duration::from_millis(500), &shutdown).await;
    let web = common::ServedWeb::start(&url, &shutdown).await;
    let admin = common::api_client(&url, pgmon_common::access::Role::Admin).await;
    // An entry of the rules bucket that is no rule (written past the web's checks) is left
    // out; every other rule goes on.
    let jetstream = jetstream::new(pgmon_test_support::connect_as(&url, NatsRole::Admin).await);
    let rules_bucket = jetstream.get_key_value(pgmon_contract::subjects::ALERT_RULES_BUCKET).await.unwrap();
    rules_bucket
        .put("broken", "{\"name\": \"broken\", \"when\": {\"sessions\": 1}}".into())
        .await
        .unwrap();

    let pile = pile_up(&postgres, 1).await;
    wait_until(Duration::from_secs(60), "the alert firing in the API", || async {
        let now = web.json("/api/v1/alerts").await;
        now["alerts"]
            .as_array()
            .is_some_and(|alerts| alerts.iter().any(|alert| alert["phase"] == "firing"))
    })
    .await;
    let now = web.json("/api/v1/alerts?target=db").await;
    assert_eq!(now["alerts"][0]["rule"], "lock-pileup");
    assert!(web.json("/api/v1/alerts?target=other").await["alerts"]
        .as_array()
        .unwrap()
        .is_empty());
    let page = web.page("/alerts").await;
    assert!(page.contains("lock-pileup") && page.contains("firing"), "{page}");
    let markers = web.json("/api/v1/targets/db/alerts?range=15m").await;
    assert_eq!(markers["events"][0]["kind"], "firing", "{markers}");

    // A viewer may not silence; a bad duration is named; an admin's silence is recorded.
    let silence = serde_json::json!({ "rule": "lock-pileup", "target": "db", "duration": "1h", "reason": "failover drill" });
    let refused = web
        .http
        .post(format!("{}/api/v1/alerts/silences", web.base))
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let bad = serde_json::json!({ "duration": "forever", "reason": "x" });
    let answer = admin
        .post(format!("{}/api/v1/alerts/silences", web.base))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(answer.json::<serde_json::Value>().await.unwrap()["field"], "duration");
    let answer = admin
        .post(format!("{}/api/v1/alerts/silences", web.base))
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let silence: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(silence["created_by"], "test-admin");
    tokio::time::sleep(Duration::from_secs(2)).await;

    pile.release().await;
    wait_until(Duration::from_secs(60), "the silenced resolution in the history", || async {
        let history = web.json("/api/v1/alerts/history?range=15m&target=db").await;
        history["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|event| event["kind"] == "resolved"))
    })
    .await;
    let history = web.json("/api/v1/alerts/history?range=15m").await;
    let resolved = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["kind"] == "resolved")
        .unwrap()
        .clone();
    assert_eq!(resolved["silenced_by"]["created_by"], "test-admin");
    assert_eq!(resolved["silenced_by"]["reason"], "failover drill");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.kinds(),
        vec![NotificationKind::Firing],
        "the silenced resolution went to no receiver"
    );
    let page = web.page("/alerts").await;
    assert!(page.contains("failover drill") && page.contains("test-admin"), "{page}");
    let ended = admin
        .delete(format!("{}/api/v1/alerts/silences/{}", web.base, silence["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);

    // Rules: a bad one is refused naming its field, a good one stored, listed and deleted.
    let rule = |sessions: u32, receiver: &str| {
        serde_json::json!({ "name": "idle-tx", "when": { "idle_in_transaction": { "longer_than": "5m", "sessions": sessions } },
            "for": "1m", "receivers": [receiver] })
    };
    let put = |body: serde_json::Value| admin.put(format!("{}/api/v1/alerts/rules/idle-tx", web.base)).json(&body).send();
    let answer = put(rule(0, "ops")).await.unwrap();
    assert_eq!(answer.status(), 400);
    let message = answer.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("when.idle_in_transaction.sessions: must be at least 1"),
        "{message}"
    );
    let answer = put(rule(1, "pager")).await.unwrap();
    assert_eq!(answer.status(), 400);
    let message = answer.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("receivers[0]: no receiver is named \"pager\""), "{message}");
    assert_eq!(put(rule(1, "ops")).await.unwrap().status(), 200);
    let viewer_put = web
        .http
        .put(format!("{}/api/v1/alerts/rules/idle-tx", web.base))
        .json(&rule(1, "ops"))
        .send()
        .await
        .unwrap();
    assert_eq!(viewer_put.status(), 403);
    let rules = web.json("/api/v1/alerts/rules").await;
    let names: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["idle-tx", "lock-pileup"]);
    assert_eq!(
        admin
            .delete(format!("{}/api/v1/alerts/rules/idle-tx", web.base))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        admin
            .delete(format!("{}/api/v1/alerts/rules/idle-tx", web.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // The page's editor: a rule with a mistake comes back with it named, a good one is saved.
    let editor = |text: &str| admin.post(format!("{}/alerts/rules", web.base)).form(&[("toml", text)]).send();
    let answer = editor("name = \"idle\"\nwhen.idle_in_transaction = { longer_than = \"5m\", sessions = 0 }\nreceivers = [\"ops\"]")
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let page = answer.text().await.unwrap();
    assert!(page.contains("when.idle_in_transaction.sessions: must be at least 1"), "{page}");
    let answer = editor("name = \"idle\"\nwhen.idle_in_transaction = { longer_than = \"5m\" }\nreceivers = [\"ops\"]")
        .await
        .unwrap();
    // Saved, the browser is sent back to the page (reqwest follows the redirect).
    assert_eq!((answer.status().as_u16(), answer.url().path()), (200, "/alerts"));
    let page = web.page("/alerts").await;
    assert!(page.contains("idle_in_transaction = { longer_than = &quot;5m&quot; }"), "{page}");
    assert_eq!(
        admin
            .delete(format!("{}/api/v1/alerts/rules/idle", web.base))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    let openapi = web.json("/api/v1/openapi.json").await;
    for path in [
        "/api/v1/alerts",
        "/api/v1/alerts/history",
        "/api/v1/alerts/rules/{rule}",
        "/api/v1/alerts/silences",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} is not in the OpenAPI document");
    }

    shutdown.cancel();
    watching.join().await;
    web.join().await;
}

/// pgbench against `postgres`'s database `postgres` with `arguments`, ready to run.
fn pgbench(postgres: &TestPostgres, arguments: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(postgres.binary("pgbench"));
    command
        .args(["-h", "127.0.0.1", "-p", &postgres.port().to_string(), "-U", "postgres"])
        .args(arguments)
        .arg("postgres");
    command
}

/// Runs a pgbench command on a blocking thread, checking it succeeds.
async fn run_pgbench(mut command: std::process::Command) {
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(output.status.success(), "pgbench: {}", String::from_utf8_lossy(&output.stderr));
}

/// A steady pgbench run of two minutes raises no regression alert; the same statement made
/// slower (its index dropped: a range of 1,000 rows read by scanning the 100,000, some 10-30
/// times the time) raises one, naming its query id and linking to its page. The statement
/// reads a range rather than one row so that a scheduling hiccup of a busy test machine cannot
/// make a steady mean look several times slower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_made_slower_raises_the_regression_alert_and_a_steady_load_nothing() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let url = nats.url();
    let setup = postgres.connect().await;
    setup.batch_execute("CREATE EXTENSION pg_stat_statements").await.unwrap();
    run_pgbench(pgbench(&postgres, &["-i", "-s", "1", "-q"])).await;
    let directory = tempfile::tempdir().unwrap();
    let script = directory.path().join("range.sql");
    std::fs::write(
        &script,
        "\\set a random(1, 99000)\nSELECT count(*) FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + 999;\n",
    )
    .unwrap();
    let script = script.display().to_string();
    let port = pgmon_test_support::free_local_port();
    let receiver = WebhookReceiver::start_on(([127, 0, 0, 1], port).into()).await;
    let secret = directory.path().join("webhook-secret");
    std::fs::write(&secret, SIGNING_KEY).unwrap();
    let file = directory.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[[receiver]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\n\
             [[rule]]\nname = \"slower-statement\"\n\
             when.statement_regression = {{ factor = 5, window = \"20s\", baseline = \"5m\", min_calls = 50 }}\n\
             resolve_for = \"1m\"\nreceivers = [\"ops\"]\n"
        ),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = common::spawn_pipeline(
        &url,
        postgres.connection_string("postgres"),
        &directory.path().join("data"),
        &shutdown,
    );
    let alerter = tokio::spawn(pgmon_alerter::run(alerter_config(&url, &file, "regressions"), shutdown.clone()));
    wait_for_alerter(&url, "regressions").await;

    run_pgbench(pgbench(&postgres, &["-f", &script, "-n", "-c", "2", "-T", "120", "-R", "50"])).await;
    assert!(receiver.notifications().is_empty(), "a steady load raised {:?}", receiver.kinds());

    setup
        .batch_execute("ALTER TABLE pgbench_accounts DROP CONSTRAINT pgbench_accounts_pkey")
        .await
        .unwrap();
    let slow = tokio::spawn(run_pgbench(pgbench(
        &postgres,
        &["-f", &script, "-n", "-c", "1", "-T", "60", "-R", "10"],
    )));
    wait_until(Duration::from_secs(90), "the regression alert", || async {
        !receiver.notifications().is_empty()
    })
    .await;
    let alert = receiver.notifications()[0].notification();
    let query_id: i64 = setup
        .query_one(
            "SELECT queryid FROM pg_stat_statements WHERE query LIKE 'SELECT count(*) FROM pgbench_accounts WHERE aid BETWEEN %'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (alert.kind, alert.query_id),
        (NotificationKind::Firing, Some(query_id)),
        "{}",
        alert.summary
    );
    assert!(alert.summary.contains(&query_id.to_string()), "{}", alert.summary);
    assert!(alert.value >= 5.0, "{}", alert.summary);
    assert!(
        alert
            .links
            .iter()
            .any(|link| link.url.contains(&format!("/targets/db/statements/{query_id}?"))),
        "{:?}",
        alert.links
    );
    eprintln!("regression alert: {}", alert.summary);
    slow.await.unwrap();

    shutdown.cancel();
    pipeline.join().await;
    alerter.await.unwrap().unwrap();
}

/// A receiver that never answers: after the retries the notification is kept as undeliverable,
/// with why, and the Alerts page and API show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_never_delivered_is_kept_and_shown() {
    let TestBed {
        postgres,
        nats: _nats,
        url,
        directory,
        port: closed_port,
    } = TestBed::start();
    let file = alerts_file(directory.path(), closed_port, 1, "1s");
    let shutdown = CancellationToken::new();
    let mut config = alerter_config(&url, &file, "giving-up");
    config.retry.give_up_after = Duration::from_secs(3);
    let watching = Watching::start(&postgres, config, Duration::from_millis(500), &shutdown).await;
    let web = common::ServedWeb::start(&url, &shutdown).await;

    let pile = pile_up(&postgres, 1).await;
    wait_until(Duration::from_secs(60), "the notification kept as undeliverable", || async {
        let kept = web.json("/api/v1/alerts/undeliverable?range=15m").await;
        kept["notifications"].as_array().is_some_and(|kept| !kept.is_empty())
    })
    .await;
    let kept = web.json("/api/v1/alerts/undeliverable?range=15m").await;
    let first = &kept["notifications"][0];
    assert_eq!(
        (first["receiver"].as_str(), first["notification"]["kind"].as_str()),
        (Some("ops"), Some("firing"))
    );
    assert_eq!(first["reason"], "cannot connect to the receiver");
    let page = web.page("/alerts").await;
    assert!(
        page.contains("Not delivered") && page.contains("cannot connect to the receiver"),
        "{page}"
    );

    pile.release().await;
    shutdown.cancel();
    watching.join().await;
    web.join().await;
}

/// A table growing fast enough to reach a size within the rule's horizon raises the growth
/// alert; the same table's rows deleted with autovacuum off raise the dead-tuples alert; both
/// name the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_growing_table_and_its_dead_tuples_raise_their_alerts() {
    let postgres = TestPostgres::start_with_settings(&[("autovacuum", "off")]);
    let nats = TestNats::start();
    let url = nats.url();
    let setup = postgres.connect().await;
    setup.batch_execute("CREATE TABLE grow (id int, pad text)").await.unwrap();
    let directory = tempfile::tempdir().unwrap();
    let port = pgmon_test_support::free_local_port();
    let receiver = WebhookReceiver::start_on(([127, 0, 0, 1], port).into()).await;
    let file = directory.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[[receiver]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\n\
             [[rule]]\nname = \"table-growth\"\nwhen.size_forecast = {{ reaches_bytes = 1000000000, within = \"30d\", over = \"1h\" }}\nreceivers = [\"ops\"]\n\n\
             [[rule]]\nname = \"dead-rows\"\nwhen.dead_tuples = {{ above = 5000 }}\nreceivers = [\"ops\"]\n"
        ),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = common::spawn_pipeline(
        &url,
        postgres.connection_string("postgres"),
        &directory.path().join("data"),
        &shutdown,
    );
    let alerter = tokio::spawn(pgmon_alerter::run(alerter_config(&url, &file, "sizes"), shutdown.clone()));
    wait_for_alerter(&url, "sizes").await;

    let fired = |rule: &'static str| {
        let received = receiver.notifications();
        received
            .into_iter()
            .map(|received| received.notification())
            .find(|notification| notification.rule == rule)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while fired("table-growth").is_none() {
        assert!(std::time::Instant::now() < deadline, "no growth alert; got {:?}", receiver.kinds());
        setup
            .batch_execute("INSERT INTO grow SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let growth = fired("table-growth").unwrap();
    assert!(
        growth.summary.starts_with("table public.grow in postgres is "),
        "{}",
        growth.summary
    );
    assert!(growth.value < 30.0, "{}", growth.summary);

    setup.batch_execute("DELETE FROM grow").await.unwrap();
    wait_until(Duration::from_secs(60), "the dead-tuples alert", || async {
        fired("dead-rows").is_some()
    })
    .await;
    let dead = fired("dead-rows").unwrap();
    assert!(dead.summary.starts_with("table public.grow in postgres has "), "{}", dead.summary);
    assert!(dead.value > 5000.0, "{}", dead.summary);

    shutdown.cancel();
    pipeline.join().await;
    alerter.await.unwrap().unwrap();
}

/// `target_down` fires when the collector reports the server unreachable, and when no sample
/// comes at all (the collector stopped); each resolves when samples say the target is up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_or_silent_raises_target_down() {
    let TestBed {
        mut postgres,
        nats: _nats,
        url,
        directory,
        port,
    } = TestBed::start();
    let receiver = WebhookReceiver::start_on(([127, 0, 0, 1], port).into()).await;
    let file = directory.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[[receiver]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\n\
             [[rule]]\nname = \"down\"\nwhen.target_down = {{ silent_for = \"10s\" }}\nresolve_for = \"0s\"\nreceivers = [\"ops\"]\n"
        ),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let alerter = tokio::spawn(pgmon_alerter::run(alerter_config(&url, &file, "down"), shutdown.clone()));
    wait_for_alerter(&url, "down").await;
    let dsn = postgres.connection_string("postgres");
    let start_collector = |token: CancellationToken| {
        tokio::spawn(pgmon_collector::run(
            collector_config(&url, &[("db", dsn.clone())], Duration::from_millis(500)),
            token,
        ))
    };
    let collecting = shutdown.child_token();
    let collector = start_collector(collecting.clone());
    let notified = |count: usize| {
        let receiver = &receiver;
        move || async move { receiver.notifications().len() >= count }
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.stop();
    wait_until(Duration::from_secs(60), "the down alert", notified(1)).await;
    let down = receiver.notifications()[0].notification();
    assert!(down.summary.starts_with("target is down (unreachable)"), "{}", down.summary);
    postgres.start_again();
    wait_until(Duration::from_secs(60), "the down alert resolved", notified(2)).await;

    collecting.cancel();
    collector.await.unwrap().unwrap();
    wait_until(Duration::from_secs(60), "the silence alert", notified(3)).await;
    let silent = receiver.notifications()[2].notification();
    assert!(silent.summary.starts_with("no sample from the collector for"), "{}", silent.summary);
    let collector = start_collector(shutdown.clone());
    wait_until(Duration::from_secs(60), "the silence alert resolved", notified(4)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    use NotificationKind::{Firing, Resolved};
    assert_eq!(receiver.kinds(), vec![Firing, Resolved, Firing, Resolved]);

    shutdown.cancel();
    collector.await.unwrap().unwrap();
    alerter.await.unwrap().unwrap();
}
