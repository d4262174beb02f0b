//! Collector configuration: targets from flags, environment or a TOML file, and sampling settings.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use std::collections::BTreeMap;

use clap::Args;
use pgmon_common::nats_setup::NatsArgs;
use pgmon_common::registry::TargetRecord;
use pgmon_common::secret::{OpenError, PasswordBinding, SecretKey, SecretKeyArgs, SecretKeyError};
use pgmon_contract::target::{TargetName, TargetNameError};
use serde::Deserialize;

use crate::tls::{split_tls_options, TlsSettings};
use pgmon_contract::event::SnapshotKind;

/// Sampling faster than this would load the target more than it tells.
const MINIMUM_INTERVAL: Duration = Duration::from_millis(100);

/// Command-line and environment settings of the collector role.
#[derive(Args, Clone, Debug)]
pub struct CollectorArgs {
    /// A PostgreSQL server to monitor, as NAME=DSN (a postgresql:// URL or "host=... user=...");
    /// repeatable; in the environment, separate targets with ';'.
    #[arg(long = "target", env = "PGMON_TARGETS", value_name = "NAME=DSN", value_delimiter = ';')]
    pub targets: Vec<TargetSpec>,

    /// A TOML file listing targets ([[targets]] with name and dsn), read in addition to --target.
    #[arg(long, env = "PGMON_TARGETS_FILE", value_name = "FILE")]
    pub targets_file: Option<PathBuf>,

    /// How often pg_stat_activity is sampled.
    #[arg(long, env = "PGMON_ACTIVITY_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub activity_interval: Duration,

    /// How often pg_locks is sampled (only read while some session waits on a lock).
    #[arg(long, env = "PGMON_LOCKS_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub locks_interval: Duration,

    /// How often the progress of vacuums, analyzes, index builds and CLUSTER is sampled
    /// (published only while any runs).
    #[arg(long, env = "PGMON_PROGRESS_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,

    /// How often replication (standbys, replay on a standby) and replication slots are sampled
    /// (published only while there are any).
    #[arg(long, env = "PGMON_REPLICATION_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub replication_interval: Duration,

    /// How often the settings, start time, version and extensions are read (published only
    /// when they changed: the change timeline).
    #[arg(long, env = "PGMON_SETTINGS_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub settings_interval: Duration,

    /// How often pg_stat_database and the instance facts are sampled.
    #[arg(long, env = "PGMON_DATABASE_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub database_interval: Duration,

    /// How often pg_stat_statements is sampled.
    #[arg(long, env = "PGMON_STATEMENTS_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub statements_interval: Duration,

    /// How often each statement's text is sent again (it goes with the first sample of its query
    /// id): keep it below the stream's max age, so a rebuild from the stream finds every text.
    #[arg(long, env = "PGMON_STATEMENT_TEXTS_EVERY", default_value = "6h", value_parser = humantime::parse_duration)]
    pub statement_texts_every: Duration,

    /// How often every database's objects and their sizes are sampled.
    #[arg(long, env = "PGMON_OBJECTS_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub objects_interval: Duration,

    /// statement_timeout of the short sessions that read one database's objects.
    #[arg(long, env = "PGMON_OBJECTS_STATEMENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub objects_statement_timeout: Duration,

    /// Query texts of pg_stat_activity longer than this many characters are cut.
    #[arg(long, env = "PGMON_QUERY_TEXT_MAX_LENGTH", default_value_t = 1024)]
    pub query_text_max_length: u32,

    /// statement_timeout of the collector's sessions on the targets.
    #[arg(long, env = "PGMON_STATEMENT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub statement_timeout: Duration,

    /// This collector's name among collectors sharing the registry's targets (default: the host
    /// name and process id).
    #[arg(long, env = "PGMON_COLLECTOR_ID")]
    pub collector_id: Option<String>,

    /// Take only registry targets carrying all these labels (KEY=VALUE, comma-separated), to
    /// split targets between groups of collectors, for example by region.
    #[arg(long, env = "PGMON_ONLY_LABELS", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_label)]
    pub only_labels: Vec<(String, String)>,

    #[command(flatten)]
    pub secret_key: SecretKeyArgs,

    /// How many MiB of snapshots may wait for NATS (while it is unreachable or slow), all
    /// targets together; when full, the oldest waiting snapshot makes room and is counted in
    /// pgmon_collector_snapshots_dropped_total. 256 MiB hold some three hours of one busy
    /// target's activity (50 sessions), a minute of 200 such targets.
    #[arg(long, env = "PGMON_PUBLISH_BUFFER_MIB", default_value_t = 256)]
    pub publish_buffer_mib: u32,

    /// Where the snapshots NATS has not acknowledged when shutdown ends are written, to be
    /// published first at the next start (default: pgmon-spool for collect, DATA_DIR/spool for up).
    #[arg(long, env = "PGMON_SPOOL_DIR", value_name = "DIRECTORY")]
    pub spool_dir: Option<PathBuf>,

    /// How long a shutdown may take: publishing what is buffered stops then and the rest is
    /// spooled (keep it below the orchestrator's grace period, 30 s in Kubernetes).
    #[arg(long, env = "PGMON_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// The spool directory of `pgmon collect` when none is given.
pub const DEFAULT_SPOOL_DIR: &str = "pgmon-spool";

/// A monitored server: its name and how to connect. Debug output never shows the password.
#[derive(Clone)]
pub struct TargetSpec {
    pub name: TargetName,
    pub connection: tokio_postgres::Config,
    /// `sslmode` and `sslrootcert`, which pgmon handles itself.
    pub tls: TlsSettings,
    /// Sampling intervals that differ from the collector's defaults.
    pub intervals: BTreeMap<SnapshotKind, Duration>,
    /// Where the password goes, as the connection string says it (defaults not filled in, so
    /// every process computes the same text): what a stored password is bound to.
    password_destination: String,
}

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TargetSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("target {0:?} is not NAME=DSN")]
    MissingName(String),
    #[error("target name: {0}")]
    BadName(#[from] TargetNameError),
    // The DSN itself is never echoed: it may hold a password.
    #[error("target {name}: the connection string is not valid: {reason}")]
    BadConnectionString { name: String, reason: String },
    #[error("cannot read targets file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("targets file {path} is not valid: {source}")]
    ParseFile { path: PathBuf, source: toml::de::Error },
    #[error("target {0} is given more than once")]
    Duplicate(TargetName),
    #[error("sampling intervals must be at least 100ms")]
    IntervalTooShort,
    #[error("--publish-buffer-mib must be at least 1")]
    EmptyBuffer,
    #[error(transparent)]
    SecretKey(#[from] SecretKeyError),
    #[error("target {0} has a stored password but no secret key is configured: set PGMON_SECRET_KEY or --secret-key-file")]
    MissingSecretKey(TargetName),
    #[error("target {name}: {source} (is PGMON_SECRET_KEY the key the password was stored with?)")]
    PasswordNotOpened { name: TargetName, source: OpenError },
    #[error("the connection string of {0} contains a password: give the password separately so it is stored encrypted")]
    PasswordInConnectionString(TargetName),
    #[error("collector id {0:?} may only contain letters, digits, '_' and '-'")]
    BadCollectorId(String),
    #[error("target {name}: interval {entry:?} is not KIND=DURATION with KIND one of activity, locks, database, statements, objects and DURATION at least 100ms")]
    BadInterval { name: String, entry: String },
}

impl FromStr for TargetSpec {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, dsn) = text
            .split_once('=')
            .ok_or_else(|| ConfigError::MissingName(redacted_prefix(text)))?;
        TargetSpec::new(name.trim(), dsn.trim())
    }
}

/// Enough of an unparseable target to recognise it, never enough to leak a password.
fn redacted_prefix(text: &str) -> String {
    text.split(['@', ' ', ':']).next().unwrap_or_default().to_owned()
}

/// The kinds whose interval can be set; status has its own heartbeat.
const SCHEDULED_KINDS: &[SnapshotKind] = &[
    SnapshotKind::Activity,
    SnapshotKind::Locks,
    SnapshotKind::Progress,
    SnapshotKind::Replication,
    SnapshotKind::Settings,
    SnapshotKind::Database,
    SnapshotKind::Statements,
    SnapshotKind::Objects,
];

/// Validates per-target intervals given as kind name → duration text.
pub fn parse_intervals(target: &str, intervals: &BTreeMap<String, String>) -> Result<BTreeMap<SnapshotKind, Duration>, ConfigError> {
    intervals
        .iter()
        .map(|(kind, duration)| {
            let bad = || ConfigError::BadInterval {
                name: target.to_owned(),
                entry: format!("{kind}={duration}"),
            };
            let kind = SnapshotKind::from_name(kind)
                .filter(|kind| SCHEDULED_KINDS.contains(kind))
                .ok_or_else(bad)?;
            let duration = humantime::parse_duration(duration).map_err(|_| bad())?;
            if duration < MINIMUM_INTERVAL {
                return Err(bad());
            }
            Ok((kind, duration))
        })
        .collect()
}

/// Parses a `KEY=VALUE` label.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => Err(format!("label {text:?} is not KEY=VALUE")),
    }
}

impl TargetSpec {
    /// This target's own interval for `kind`, else the collector's `default`.
    pub(crate) fn interval(&self, kind: SnapshotKind, default: Duration) -> Duration {
        self.intervals.get(&kind).copied().unwrap_or(default)
    }

    /// A registry target, its password opened with `key`.
    pub fn from_record(record: &TargetRecord, key: Option<&SecretKey>) -> Result<TargetSpec, ConfigError> {
        let mut spec = TargetSpec::new(record.name.as_str(), &record.dsn)?;
        spec.intervals = parse_intervals(record.name.as_str(), &record.intervals)?;
        if let Some(sealed) = &record.sealed_password {
            let key = key.ok_or_else(|| ConfigError::MissingSecretKey(record.name.clone()))?;
            let password = key
                .open(sealed, &spec.password_binding())
                .map_err(|source| ConfigError::PasswordNotOpened {
                    name: record.name.clone(),
                    source,
                })?;
            spec.connection.password(password);
        }
        Ok(spec)
    }

    /// What this target's stored password is bound to.
    pub fn password_binding(&self) -> PasswordBinding {
        PasswordBinding {
            target: self.name.to_string(),
            destination: self.password_destination.clone(),
        }
    }

    /// Seals `password` for this target: it opens only while the user, hosts, ports and TLS
    /// settings stay as they are.
    pub fn seal_password(&self, key: &SecretKey, password: &str) -> String {
        key.seal(password, &self.password_binding())
    }

    /// Whether a password stored for `self` may be sent to `other`: same target, user, hosts,
    /// ports and TLS settings.
    pub fn same_password_destination(&self, other: &TargetSpec) -> bool {
        self.password_binding() == other.password_binding()
    }

    /// A registry target's connection string must parse and must not carry a password; the
    /// target it describes.
    pub fn check_registry_dsn(name: &TargetName, dsn: &str) -> Result<TargetSpec, ConfigError> {
        let spec = TargetSpec::new(name.as_str(), dsn)?;
        if spec.connection.get_password().is_some() {
            return Err(ConfigError::PasswordInConnectionString(name.clone()));
        }
        Ok(spec)
    }

    pub fn new(name: &str, dsn: &str) -> Result<TargetSpec, ConfigError> {
        let name: TargetName = name.parse()?;
        let bad = |reason: String| ConfigError::BadConnectionString {
            name: name.to_string(),
            reason,
        };
        let (dsn, ssl_mode, tls) = split_tls_options(dsn).map_err(|e| bad(e.to_string()))?;
        let mut connection = tokio_postgres::Config::from_str(&dsn).map_err(|e| bad(e.to_string()))?;
        if let Some(ssl_mode) = ssl_mode {
            connection.ssl_mode(ssl_mode);
        }
        let password_destination = password_destination(&connection, &tls);
        if connection.get_user().is_none() {
            // libpq's default: the operating-system user name.
            if let Some(user) = std::env::var_os("USER").or_else(|| std::env::var_os("LOGNAME")) {
                connection.user(user.to_string_lossy().as_ref());
            }
        }
        if connection.get_hosts().is_empty() {
            connection.host("/var/run/postgresql");
        }
        Ok(TargetSpec {
            name,
            connection,
            tls,
            intervals: BTreeMap::new(),
            password_destination,
        })
    }
}

/// The user, hosts, host addresses, ports and TLS settings of a parsed connection string, in
/// one canonical text.
fn password_destination(connection: &tokio_postgres::Config, tls: &TlsSettings) -> String {
    let hosts: Vec<String> = connection
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => format!("tcp:{name}"),
            tokio_postgres::config::Host::Unix(path) => format!("unix:{}", path.display()),
        })
        .collect();
    let addresses: Vec<String> = connection.get_hostaddrs().iter().map(ToString::to_string).collect();
    let ports: Vec<String> = connection.get_ports().iter().map(ToString::to_string).collect();
    serde_json::json!({
        "user": connection.get_user(),
        "hosts": hosts,
        "hostaddrs": addresses,
        "ports": ports,
        "sslmode": format!("{:?}", connection.get_ssl_mode()),
        "verification": format!("{:?}", tls.verification),
        "sslrootcert": tls.root_certificates,
    })
    .to_string()
}

/// The targets file (`--targets-file`, TOML).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    /// The PostgreSQL servers to monitor, one `[[targets]]` table each.
    #[serde(default)]
    targets: Vec<TargetsFileEntry>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TargetsFileEntry {
    /// The target's name: a slug (`a-z`, `0-9`, `_`, `-`) that names it in pages, subjects and files.
    name: String,
    /// How to connect: a `postgresql://` URL or `host=... user=...` key/value pairs, with
    /// `sslmode` and `sslrootcert` as in libpq. For passwords prefer a `.pgpass` file or the
    /// registry (`pgmon targets add`), which stores them encrypted.
    dsn: String,
    /// This target's own schedule for any kind, overriding the collector's flags:
    /// `{ objects = "1h", activity = "2s" }` (kinds: activity, locks, database, statements, objects).
    #[serde(default)]
    intervals: BTreeMap<String, String>,
}

/// The JSON Schema of the targets file, for the configuration reference.
pub fn targets_file_schema() -> serde_json::Value {
    schemars::schema_for!(TargetsFile).to_value()
}

fn read_targets_file(path: &Path) -> Result<Vec<TargetSpec>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let file: TargetsFile = toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source,
    })?;
    file.targets
        .iter()
        .map(|entry| {
            let mut spec = TargetSpec::new(&entry.name, &entry.dsn)?;
            spec.intervals = parse_intervals(&entry.name, &entry.intervals)?;
            Ok(spec)
        })
        .collect()
}

/// The collector's validated configuration.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    pub nats: NatsArgs,
    pub targets: Vec<TargetSpec>,
    pub activity_interval: Duration,
    pub locks_interval: Duration,
    pub progress_interval: Duration,
    pub replication_interval: Duration,
    pub settings_interval: Duration,
    pub database_interval: Duration,
    pub statements_interval: Duration,
    pub statement_texts_every: Duration,
    pub objects_interval: Duration,
    pub objects_statement_timeout: Duration,
    pub query_text_max_length: u32,
    pub statement_timeout: Duration,
    pub publish_buffer_mib: u32,
    pub spool_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub collector_id: String,
    pub only_labels: BTreeMap<String, String>,
    pub secret_key: Option<SecretKey>,
}

/// The host name (a pod's name in Kubernetes) and process id, made a KV-key-safe token.
fn default_collector_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_else(|| "collector".to_owned());
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    format!("{host}-{}", std::process::id())
}

/// What a sampler needs to know, beside its target.
#[derive(Clone, Debug)]
pub(crate) struct SamplingSettings {
    pub activity_interval: Duration,
    pub locks_interval: Duration,
    pub progress_interval: Duration,
    pub replication_interval: Duration,
    pub settings_interval: Duration,
    pub database_interval: Duration,
    pub statements_interval: Duration,
    pub statement_texts_every: Duration,
    pub objects_interval: Duration,
    pub objects_statement_timeout: Duration,
    pub query_text_max_length: u32,
    pub statement_timeout: Duration,
    /// The largest payload NATS accepts; larger snapshots are split into parts.
    pub max_message_bytes: usize,
    pub collector_id: std::sync::Arc<str>,
    /// Turns to take a statements or objects snapshot, shared by every target (see
    /// [`HEAVY_SNAPSHOTS_AT_ONCE`]).
    pub heavy_snapshots: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How many statements or objects snapshots are taken at once, all targets together. They can
/// be large (thousands of statements with their texts, tens of thousands of relations), and
/// every target takes its first as the collector starts: 200 targets at once peaked at some
/// 400 MiB resident, four at a time at 155 MiB (`cargo bench -p pgmon --bench collector`).
/// Each takes milliseconds to a few seconds, so turns cost little time.
pub const HEAVY_SNAPSHOTS_AT_ONCE: usize = 4;

impl CollectorConfig {
    /// Merges flags and the targets file, and checks the settings.
    pub fn from_args(args: CollectorArgs, nats: NatsArgs) -> Result<CollectorConfig, ConfigError> {
        let mut targets = args.targets;
        if let Some(path) = &args.targets_file {
            targets.extend(read_targets_file(path)?);
        }
        let mut names: Vec<&TargetName> = targets.iter().map(|target| &target.name).collect();
        names.sort();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::Duplicate(pair[0].clone()));
        }
        let shortest_interval = [
            args.activity_interval,
            args.locks_interval,
            args.progress_interval,
            args.replication_interval,
            args.settings_interval,
            args.database_interval,
            args.statements_interval,
            args.objects_interval,
        ]
        .into_iter()
        .min()
        .expect("there are intervals");
        if shortest_interval < MINIMUM_INTERVAL {
            return Err(ConfigError::IntervalTooShort);
        }
        if args.publish_buffer_mib == 0 {
            return Err(ConfigError::EmptyBuffer);
        }
        let collector_id = args.collector_id.unwrap_or_else(default_collector_id);
        if collector_id.is_empty() || !collector_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(ConfigError::BadCollectorId(collector_id));
        }
        Ok(CollectorConfig {
            nats,
            targets,
            activity_interval: args.activity_interval,
            locks_interval: args.locks_interval,
            progress_interval: args.progress_interval,
            replication_interval: args.replication_interval,
            settings_interval: args.settings_interval,
            database_interval: args.database_interval,
            statements_interval: args.statements_interval,
            statement_texts_every: args.statement_texts_every,
            objects_interval: args.objects_interval,
            objects_statement_timeout: args.objects_statement_timeout,
            query_text_max_length: args.query_text_max_length,
            statement_timeout: args.statement_timeout,
            publish_buffer_mib: args.publish_buffer_mib,
            spool_dir: args.spool_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR)),
            shutdown_timeout: args.shutdown_timeout,
            collector_id,
            only_labels: args.only_labels.into_iter().collect(),
            secret_key: args.secret_key.load()?,
        })
    }

    pub(crate) fn sampling(&self, max_message_bytes: usize) -> SamplingSettings {
        SamplingSettings {
            activity_interval: self.activity_interval,
            locks_interval: self.locks_interval,
            progress_interval: self.progress_interval,
            replication_interval: self.replication_interval,
            settings_interval: self.settings_interval,
            database_interval: self.database_interval,
            statements_interval: self.statements_interval,
            statement_texts_every: self.statement_texts_every,
            objects_interval: self.objects_interval,
            objects_statement_timeout: self.objects_statement_timeout,
            query_text_max_length: self.query_text_max_length,
            statement_timeout: self.statement_timeout,
            max_message_bytes,
            collector_id: self.collector_id.as_str().into(),
            heavy_snapshots: std::sync::Arc::new(tokio::sync::Semaphore::new(HEAVY_SNAPSHOTS_AT_ONCE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_and_key_value_targets() {
        let url: TargetSpec = "db1=postgresql://monitor:s3cret@db.example:5433/app".parse().unwrap();
        assert_eq!(url.name.as_str(), "db1");
        assert_eq!(url.connection.get_user(), Some("monitor"));
        assert_eq!(url.connection.get_ports(), &[5433]);
        let key_value: TargetSpec = "db2=host=localhost user=postgres dbname=postgres".parse().unwrap();
        assert_eq!(key_value.connection.get_dbname(), Some("postgres"));
    }

    #[test]
    fn errors_never_echo_the_password() {
        let error = "db1=postgresql://monitor:s3cret@db.example:notaport/app"
            .parse::<TargetSpec>()
            .unwrap_err();
        assert!(matches!(error, ConfigError::BadConnectionString { .. }), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = "postgresql://monitor:s3cret@db.example/app".parse::<TargetSpec>().unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let debug = format!("{:?}", "db1=postgresql://monitor:s3cret@h/app".parse::<TargetSpec>().unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!("Prod.DB=host=x".parse::<TargetSpec>(), Err(ConfigError::BadName(_))));
    }

    #[test]
    fn reads_a_targets_file_and_rejects_duplicates() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("targets.toml");
        std::fs::write(
            &path,
            "[[targets]]\nname = \"a\"\ndsn = \"host=h1 user=u\"\nintervals = { objects = \"1h\" }\n[[targets]]\nname = \"b\"\ndsn = \"host=h2 user=u\"\n",
        )
        .unwrap();
        let args = |targets: Vec<TargetSpec>| CollectorArgs {
            targets,
            targets_file: Some(path.clone()),
            activity_interval: Duration::from_secs(1),
            locks_interval: Duration::from_secs(1),
            progress_interval: Duration::from_secs(10),
            replication_interval: Duration::from_secs(10),
            settings_interval: Duration::from_secs(60),
            database_interval: Duration::from_secs(10),
            statements_interval: Duration::from_secs(10),
            statement_texts_every: Duration::from_secs(6 * 3600),
            objects_interval: Duration::from_secs(300),
            objects_statement_timeout: Duration::from_secs(30),
            query_text_max_length: 100,
            statement_timeout: Duration::from_secs(1),
            publish_buffer_mib: 10,
            spool_dir: None,
            shutdown_timeout: Duration::from_secs(10),
            collector_id: None,
            only_labels: Vec::new(),
            secret_key: SecretKeyArgs::default(),
        };
        let nats = NatsArgs {
            url: "nats://x".into(),
            stream_max_age: Duration::from_secs(60),
            stream_replicas: 1,
            nkey_file: None,
            ca_file: None,
        };
        let config = CollectorConfig::from_args(args(vec![]), nats.clone()).unwrap();
        assert_eq!(config.targets.len(), 2);
        assert_eq!(config.targets[0].intervals[&SnapshotKind::Objects], Duration::from_secs(3600));
        let duplicate = "a=host=h3 user=u".parse().unwrap();
        let error = CollectorConfig::from_args(args(vec![duplicate]), nats).unwrap_err();
        assert_eq!(error.to_string(), "target a is given more than once");
    }

    #[test]
    fn per_target_intervals_are_checked() {
        let intervals = |entries: &[(&str, &str)]| -> BTreeMap<String, String> {
            entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let parsed = parse_intervals("db1", &intervals(&[("activity", "5s"), ("objects", "1h")])).unwrap();
        assert_eq!(parsed[&SnapshotKind::Activity], Duration::from_secs(5));
        for bad in [("activity", "10ms"), ("status", "1s"), ("bogus", "1s"), ("locks", "soon")] {
            let error = parse_intervals("db1", &intervals(&[bad])).unwrap_err();
            assert!(error.to_string().starts_with("target db1: interval"), "{error}");
        }
    }

    #[test]
    fn reports_a_broken_targets_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("targets.toml");
        std::fs::write(&path, "[[targets]]\nname = \"a\"\n").unwrap();
        let error = read_targets_file(&path).err().unwrap();
        assert!(error.to_string().contains("is not valid"), "{error}");
    }
}
