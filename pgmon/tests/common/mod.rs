//! Helpers shared by pgmon's end-to-end tests: role configurations against test servers,
//! waiting for conditions, and reading back what the stream holds.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use pgmon_collector::{CollectorConfig, TargetSpec};
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::NatsArgs;
use pgmon_contract::event::{decode_snapshot, ActivityRow, AnySnapshot, Snapshot, StatusRow};
use pgmon_contract::subjects::SNAPSHOT_STREAM;
use pgmon_ingester::IngesterConfig;

/// The NATS settings of a tool with every right on the test server at `url`.
pub fn nats_args(url: &str) -> NatsArgs {
    nats_args_as(url, NatsRole::Admin)
}

pub use pgmon_test_support::nats_args_as;

pub fn collector_config(nats_url: &str, targets: &[(&str, String)], interval: Duration) -> CollectorConfig {
    CollectorConfig {
        nats: nats_args_as(nats_url, NatsRole::Collector),
        targets: targets.iter().map(|(name, dsn)| TargetSpec::new(name, dsn).unwrap()).collect(),
        activity_interval: interval,
        locks_interval: interval,
        progress_interval: Duration::from_secs(1),
        replication_interval: Duration::from_secs(1),
        settings_interval: Duration::from_secs(1),
        database_interval: Duration::from_secs(1),
        statements_interval: Duration::from_secs(1),
        statement_texts_every: Duration::from_secs(6 * 3600),
        objects_interval: Duration::from_secs(2),
        objects_statement_timeout: Duration::from_secs(10),
        query_text_max_length: 200,
        statement_timeout: Duration::from_secs(2),
        publish_buffer_mib: 64,
        spool_dir: unique_temporary_path("pgmon-test-spool"),
        shutdown_timeout: Duration::from_secs(10),
        collector_id: "test-collector".to_owned(),
        only_labels: Default::default(),
        secret_key: None,
    }
}

pub fn ingester_config(nats_url: &str, data_dir: &Path) -> IngesterConfig {
    IngesterConfig {
        nats: nats_args_as(nats_url, NatsRole::Ingester),
        data_dir: data_dir.to_owned(),
        batch_max_messages: 500,
        batch_max_bytes: pgmon_ingester::DEFAULT_BATCH_MAX_BYTES,
        batch_wait: Duration::from_millis(100),
        consumer_name: "pgmon-ingester".to_owned(),
        max_message_bytes: pgmon_ingester::DEFAULT_MAX_MESSAGE_BYTES,
        only_targets: Vec::new(),
        storage: pgmon_ingester::StorageOptions::default(),
        publish_dead_letters: true,
        stop_after: None,
        stats: Arc::default(),
    }
}

/// The running collector and ingester of [`spawn_pipeline`].
pub struct Pipeline {
    pub collector: tokio::task::JoinHandle<Result<(), pgmon_collector::CollectorError>>,
    pub ingester: tokio::task::JoinHandle<Result<(), pgmon_ingester::IngesterError>>,
}

impl Pipeline {
    /// Waits for both roles to stop (cancel their token first) and checks they ended cleanly.
    pub async fn join(self) {
        self.collector.await.unwrap().unwrap();
        self.ingester.await.unwrap().unwrap();
    }
}

/// Starts a collector sampling `dsn` as target `db` every 250 ms, and an ingester into `data_dir`.
pub fn spawn_pipeline(nats_url: &str, dsn: String, data_dir: &Path, shutdown: &tokio_util::sync::CancellationToken) -> Pipeline {
    let collector = collector_config(nats_url, &[("db", dsn)], Duration::from_millis(250));
    Pipeline {
        collector: tokio::spawn(pgmon_collector::run(collector, shutdown.clone())),
        ingester: tokio::spawn(pgmon_ingester::run(ingester_config(nats_url, data_dir), shutdown.clone())),
    }
}

/// An activity sample of `target` holding `rows`, as a collector of PostgreSQL 17 sends it.
pub fn activity_sample(target: &str, collected_at_us: i64, rows: Vec<ActivityRow>) -> Snapshot<ActivityRow> {
    Snapshot {
        schema_version: pgmon_contract::event::CURRENT_SCHEMA_VERSION,
        kind: pgmon_contract::event::SnapshotKind::Activity,
        target: target.parse().unwrap(),
        collected_at_us,
        server: pgmon_contract::event::ServerIdentity {
            system_identifier: None,
            server_version_num: 170000,
            server_version: "17.0".into(),
        },
        collector: None,
        instance: None,
        statements_info: None,
        objects_info: None,
        part: None,
        rows,
    }
}

/// A path under the system's temporary directory that no other test uses; nothing is created.
pub fn unique_temporary_path(prefix: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("{prefix}-{}-{number}", std::process::id()))
}

/// Microseconds since the Unix epoch, as events carry time.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Polls `condition` every 100 ms until it holds, panicking with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every snapshot in the stream, decoded, with its stream sequence (none before it exists).
pub async fn stream_snapshots(nats_url: &str) -> Vec<(u64, AnySnapshot)> {
    let client = pgmon_test_support::connect_as(nats_url, pgmon_common::nats_access::NatsRole::Admin).await;
    let jetstream = jetstream::new(client);
    let Ok(mut stream) = jetstream.get_stream(SNAPSHOT_STREAM).await else {
        return Vec::new();
    };
    let last_sequence = stream.info().await.unwrap().state.last_sequence;
    if last_sequence == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut snapshots = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let sequence = message.info().unwrap().stream_sequence;
        if let Ok(snapshot) = decode_snapshot(&message.payload) {
            snapshots.push((sequence, snapshot));
        }
        if sequence >= last_sequence {
            break;
        }
    }
    snapshots
}

/// The row of the newest status snapshot of `target` taken after `since_us`.
pub async fn newest_status_since(nats_url: &str, target: &str, since_us: i64) -> Option<StatusRow> {
    stream_snapshots(nats_url)
        .await
        .into_iter()
        .rev()
        .find_map(|(_, snapshot)| match snapshot {
            AnySnapshot::Status(snapshot) if snapshot.target.as_str() == target && snapshot.collected_at_us > since_us => {
                snapshot.rows.into_iter().next()
            }
            _ => None,
        })
}

/// The row of the newest status snapshot of `target`.
pub async fn newest_status(nats_url: &str, target: &str) -> Option<StatusRow> {
    newest_status_since(nats_url, target, 0).await
}

/// The activity snapshots in the stream, in stream order.
pub async fn stream_activity(nats_url: &str) -> Vec<Snapshot<ActivityRow>> {
    stream_of_kind(nats_url, |snapshot| match snapshot {
        AnySnapshot::Activity(snapshot) => Some(snapshot),
        _ => None,
    })
    .await
}

/// The snapshots (or parts) of one kind in the stream, in stream order.
pub async fn stream_of_kind<Row>(nats_url: &str, of_kind: impl Fn(AnySnapshot) -> Option<Snapshot<Row>>) -> Vec<Snapshot<Row>> {
    stream_snapshots(nats_url)
        .await
        .into_iter()
        .filter_map(|(_, snapshot)| of_kind(snapshot))
        .collect()
}

/// How many messages the stream holds for each subject matching `filter` (none before it exists).
pub async fn subject_counts(nats_url: &str, filter: &str) -> std::collections::HashMap<String, usize> {
    let client = pgmon_test_support::connect_as(nats_url, pgmon_common::nats_access::NatsRole::Admin).await;
    let Ok(stream) = jetstream::new(client).get_stream(SNAPSHOT_STREAM).await else {
        return Default::default();
    };
    let subjects = stream.info_with_subjects(filter).await.unwrap();
    subjects.map(|entry| entry.unwrap()).collect().await
}

/// A tracing writer that keeps what was logged, so tests can check what operators would read.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Installs a subscriber writing here for the current thread (tests use the current-thread runtime).
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info,async_nats=warn")
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        std::io::stderr().write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The Python of the tests' virtual environment (`scripts/setup.sh` makes it), which runs the
/// checks written with clients that are not pgmon (`tests/python/`).
pub fn test_python() -> std::path::PathBuf {
    let python = std::env::var_os("PGMON_TEST_PYTHON").map_or_else(|| "/opt/pgmon/venv/bin/python3".into(), std::path::PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs the tests' Python packages there)",
        python.display()
    );
    python
}

/// A session holding a lock on table `contended` while another waits for it, so the collector
/// publishes lock snapshots; `COMMIT` on `holder` ends the wait, `waiting` then finishes.
pub struct LockWait {
    pub holder: tokio_postgres::Client,
    pub waiting: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

/// Creates pg_stat_statements and table `contended` in `postgres`, then starts a [`LockWait`].
pub async fn start_lock_wait(postgres: &pgmon_test_support::TestPostgres) -> LockWait {
    let holder = postgres.connect().await;
    holder
        .batch_execute("CREATE EXTENSION pg_stat_statements; CREATE TABLE contended (id int)")
        .await
        .unwrap();
    holder.batch_execute("BEGIN; LOCK TABLE contended").await.unwrap();
    let waiter = postgres.connect().await;
    let waiting = tokio::spawn(async move { waiter.batch_execute("BEGIN; LOCK TABLE contended; COMMIT").await });
    LockWait { holder, waiting }
}

/// The web role's configuration against a test NATS server, on a free local port.
pub fn serve_config(nats_url: &str) -> pgmon_query_api::ServeConfig {
    pgmon_query_api::ServeConfig {
        nats: nats_args_as(nats_url, NatsRole::Web),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: None,
        query_timeout: Duration::from_secs(5),
        secure_cookies: false,
        trusted_proxies: Vec::new(),
        first_admin: None,
        generated_admin_password_file: None,
        secret_key: None,
    }
}

/// An API token of a new user of `role` (`test-admin`, `test-viewer`).
pub async fn api_token(nats_url: &str, role: pgmon_common::access::Role) -> String {
    let jetstream = pgmon_common::nats_setup::connect_jetstream(&nats_args(nats_url), pgmon_common::nats_access::NatsRole::Admin)
        .await
        .unwrap();
    let access = pgmon_common::access::AccessStore::open(&jetstream).await.unwrap();
    let name: pgmon_common::access::UserName = format!("test-{}", role.as_str()).parse().unwrap();
    if access.user(&name).await.unwrap().is_none() {
        access.add_user(&name, role, "a long test password").await.unwrap();
    }
    access.create_api_token(&name, "test", None).await.unwrap()
}

/// An HTTP client acting as a new user of `role`, with an API token of theirs.
pub async fn api_client(nats_url: &str, role: pgmon_common::access::Role) -> reqwest::Client {
    let token = api_token(nats_url, role).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    http_client_builder().default_headers(headers).build().unwrap()
}

/// A server that speaks just enough of the PostgreSQL protocol to ask every client for its
/// password in clear, as an attacker's host would, and keeps whatever password it receives.
pub struct CleartextPasswordTrap {
    pub port: u16,
    connections: Arc<Mutex<usize>>,
    /// Connections whose client sent its password or went away.
    finished: Arc<Mutex<usize>>,
    received: Arc<Mutex<Vec<String>>>,
}

impl CleartextPasswordTrap {
    pub fn start() -> CleartextPasswordTrap {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(0));
        let finished = Arc::new(Mutex::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (counted, counted_finished, kept) = (Arc::clone(&connections), Arc::clone(&finished), Arc::clone(&received));
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                *counted.lock().unwrap() += 1;
                if let Some(password) = Self::ask_for_password(&mut stream) {
                    kept.lock().unwrap().push(password);
                }
                *counted_finished.lock().unwrap() += 1;
                // Closed only once the password is kept: the client sees the end after that.
                drop(stream);
            }
        });
        CleartextPasswordTrap {
            port,
            connections,
            finished,
            received,
        }
    }

    /// Refuses TLS, answers the startup message with AuthenticationCleartextPassword and
    /// returns the password message's text, if the client sends one.
    fn ask_for_password(stream: &mut std::net::TcpStream) -> Option<String> {
        use std::io::{Read, Write};
        const SSL_REQUEST: u32 = 80877103;
        const GSS_REQUEST: u32 = 80877104;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        loop {
            let mut length = [0u8; 4];
            stream.read_exact(&mut length).ok()?;
            let mut body = vec![0u8; (u32::from_be_bytes(length) as usize).checked_sub(4)?];
            stream.read_exact(&mut body).ok()?;
            let code = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
            if code == SSL_REQUEST || code == GSS_REQUEST {
                stream.write_all(b"N").ok()?;
                continue;
            }
            break;
        }
        // 'R', length 8, code 3: AuthenticationCleartextPassword.
        stream.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).ok()?;
        let mut tag = [0u8; 1];
        stream.read_exact(&mut tag).ok()?;
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).ok()?;
        let mut body = vec![0u8; (u32::from_be_bytes(length) as usize).checked_sub(4)?];
        stream.read_exact(&mut body).ok()?;
        (tag[0] == b'p').then(|| String::from_utf8_lossy(&body).trim_end_matches('\0').to_owned())
    }

    /// How many clients connected.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    /// The passwords clients sent, once every client that connected has sent its password or
    /// gone away (so a password on its way is not missed).
    pub fn received_passwords(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while *self.finished.lock().unwrap() < self.connections() {
            assert!(Instant::now() < deadline, "a client neither sent a password nor went away");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.received.lock().unwrap().clone()
    }
}

/// The web role serving on a free local port, with a viewer's HTTP client (an API token).
pub struct ServedWeb {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<Result<(), pgmon_query_api::ServeError>>,
}

impl ServedWeb {
    /// Serves against the test NATS server at `nats_url` until `shutdown`.
    pub async fn start(nats_url: &str, shutdown: &tokio_util::sync::CancellationToken) -> ServedWeb {
        let server = pgmon_query_api::bind(&serve_config(nats_url)).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let task = tokio::spawn(server.serve(shutdown.clone()));
        let http = api_client(nats_url, pgmon_common::access::Role::Viewer).await;
        ServedWeb { base, http, task }
    }

    /// The JSON answer to `GET path` (any status).
    pub async fn json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The status `GET path` answers with.
    pub async fn status(&self, path: &str) -> u16 {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The page at `path`, which must answer 200.
    pub async fn page(&self, path: &str) -> String {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    }

    /// Waits for the server to stop (cancel its token first) and checks it ended cleanly.
    pub async fn join(self) {
        self.task.await.unwrap().unwrap();
    }
}

/// A builder of HTTP clients for tests. reqwest is built with TLS but without a crypto provider
/// of its own (pgmon uses ring everywhere, the alerter's client too), so the process's default
/// provider is installed first.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Another part of the test process may have installed it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}
