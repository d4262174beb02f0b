//! Connecting to NATS and creating pgmon's JetStream streams and KV buckets.
//!
//! Every role runs [`connect_jetstream`] at start-up: what is missing is created, and where an
//! existing stream or bucket differs from the role's settings in what pgmon sets (max age,
//! replicas, and what pgmon relies on: direct get, compression, the duplicate window, history)
//! it is changed, or the start stops with a message saying what differs and how to change it.
//! Everything else (limits an operator added) is left as configured, so streams can also be
//! created beforehand from the JSON files in `nats/`. Command-line tools, which may run without
//! the deployment's settings, use [`connect_jetstream_as_tool`] and only create what is missing.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use clap::Args;

use crate::nats_access::NatsRole;
use pgmon_contract::subjects::{
    ALERT_RULES_BUCKET, ALERT_SILENCES_BUCKET, ALERT_STATE_BUCKET, ALERT_STREAM, ALERT_SUBJECTS, API_TOKENS_BUCKET, COLLECTORS_BUCKET,
    DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, SESSIONS_BUCKET, SNAPSHOT_STREAM, SNAPSHOT_SUBJECTS, TARGETS_BUCKET, USERS_BUCKET,
};

/// The oldest nats-server pgmon works with: 2.10 brought stream compression, which the
/// snapshot stream uses, and several filter subjects per consumer.
pub const MINIMUM_NATS_SERVER_VERSION: semver::Version = semver::Version::new(2, 10, 0);

/// How long the snapshot stream keeps events unless the operator says otherwise.
pub const DEFAULT_STREAM_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 3600);

/// How to reach NATS; shared by every role.
#[derive(Args, Clone, Debug)]
pub struct NatsArgs {
    /// NATS server URL (several may be given, comma separated).
    #[arg(long = "nats-url", env = "PGMON_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,

    /// How long the snapshot stream keeps events when pgmon creates it (e.g. "14d").
    #[arg(long, env = "PGMON_STREAM_MAX_AGE", default_value = "14d", value_parser = humantime::parse_duration)]
    pub stream_max_age: Duration,

    /// Copies JetStream keeps of pgmon's streams and buckets when pgmon creates them: 1 on a
    /// single server, 3 on a cluster of three or more.
    #[arg(long, env = "PGMON_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// This role's NATS identity: a file holding its NKey seed (`pgmon nats keys` writes one
    /// per role). Without it pgmon connects anonymously, which only a NATS server without
    /// authorization accepts.
    #[arg(long = "nats-nkey-file", env = "PGMON_NATS_NKEY_FILE", value_name = "FILE")]
    pub nkey_file: Option<std::path::PathBuf>,

    /// The CA certificate that signed the NATS server's certificate, for a `tls://` URL (the
    /// system's roots otherwise).
    #[arg(long = "nats-ca-file", env = "PGMON_NATS_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum NatsSetupError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("NATS at {url} requires credentials: give the {role} role's NKey seed file with --nats-nkey-file (PGMON_NATS_NKEY_FILE); `pgmon nats keys` makes one for every role (docs/security.md)")]
    CredentialsMissing { url: String, role: &'static str },
    #[error("NATS at {url} refused the {role} identity of {file}: is its public key in the server's authorization (docs/security.md)?")]
    CredentialsRefused {
        url: String,
        role: &'static str,
        file: std::path::PathBuf,
    },
    #[error("cannot read the NKey seed of the {role} role from {file}: {reason}")]
    Seed {
        role: &'static str,
        file: std::path::PathBuf,
        reason: String,
    },
    #[error("nats-server at {url} is version {found}; pgmon needs {MINIMUM_NATS_SERVER_VERSION} or newer (scripts/setup.sh installs a recent one)")]
    ServerTooOld { url: String, found: String },
    #[error("nats-server at {url} has JetStream disabled; start it with -js")]
    JetStreamDisabled { url: String },
    #[error("cannot create stream {stream}: {source}")]
    CreateStream {
        stream: &'static str,
        source: jetstream::context::CreateStreamError,
    },
    #[error("cannot create key-value bucket {bucket}: {source}")]
    CreateBucket {
        bucket: &'static str,
        source: jetstream::context::CreateKeyValueError,
    },
    #[error("cannot read stream {stream}: {message}")]
    ReadStream { stream: String, message: String },
    #[error("stream {stream} differs from this role's settings ({differences}) and NATS refused to change it: {message}; start pgmon with the stream's settings, or change the stream first (nats stream edit {stream})")]
    StreamSettings {
        stream: String,
        differences: String,
        message: String,
    },
}

/// What a start does to streams and buckets that exist already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExistingStreams {
    /// Change what differs from the settings (the roles).
    Reconcile,
    /// Leave them as they are (command-line tools).
    Leave,
}

/// How long JetStream remembers a message id to drop a repeated publish of it.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(20 * 60);

/// The snapshot stream as pgmon creates it; `nats/stream-PGMON.json` holds the same definition
/// (`common/tests/nats_definitions.rs` checks it against a real server).
pub fn snapshot_stream_config(max_age: Duration, replicas: u8) -> stream::Config {
    stream::Config {
        name: SNAPSHOT_STREAM.to_owned(),
        description: Some("pgmon snapshot events: pgmon.snap.<target>.<kind>".to_owned()),
        subjects: vec![SNAPSHOT_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age,
        // A retried publish (same Nats-Msg-Id) within this window is stored once; it covers the
        // collector's publish retries, and its outage buffer replays with the same ids.
        // JetStream refuses a window longer than the stream keeps messages.
        duplicate_window: DUPLICATE_WINDOW.min(max_age),
        compression: Some(stream::Compression::S2),
        // "Now" views read the newest event per subject with direct get.
        allow_direct: true,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// The dead-letter stream; `nats/stream-PGMON_DEADLETTER.json` holds the same definition.
pub fn dead_letter_stream_config(replicas: u8) -> stream::Config {
    stream::Config {
        name: DEAD_LETTER_STREAM.to_owned(),
        description: Some("pgmon events the ingester could not use, with the reason in a header".to_owned()),
        subjects: vec![DEAD_LETTER_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: Duration::from_secs(30 * 24 * 3600),
        // A message dead-lettered again after an ingester crash (same Nats-Msg-Id) is stored once.
        duplicate_window: DUPLICATE_WINDOW,
        compression: Some(stream::Compression::S2),
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// The alert stream: transitions, deliveries and undeliverable notifications;
/// `nats/stream-PGMON_ALERTS.json` holds the same definition.
pub fn alert_stream_config(replicas: u8) -> stream::Config {
    stream::Config {
        name: ALERT_STREAM.to_owned(),
        description: Some("pgmon alerts: transitions, deliveries and undeliverable notifications".to_owned()),
        subjects: vec![ALERT_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        // The alert history of the Alerts page.
        max_age: Duration::from_secs(90 * 24 * 3600),
        // A transition published again after an alerter crash (same Nats-Msg-Id) is stored once.
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// The alert rules bucket; `nats/stream-KV_pgmon_alert_rules.json` is its backing stream.
pub fn alert_rules_bucket_config(replicas: u8) -> kv::Config {
    kv::Config {
        bucket: ALERT_RULES_BUCKET.to_owned(),
        description: "pgmon alert rules (seeded from the alerts file, edited by admins)".to_owned(),
        history: 10,
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// The alert state bucket; `nats/stream-KV_pgmon_alert_state.json` is its backing stream.
pub fn alert_state_bucket_config(replicas: u8) -> kv::Config {
    kv::Config {
        bucket: ALERT_STATE_BUCKET.to_owned(),
        description: "pgmon alert state of each rule on each target".to_owned(),
        history: 1,
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// The alert silences bucket; `nats/stream-KV_pgmon_alert_silences.json` is its backing stream.
pub fn alert_silences_bucket_config(replicas: u8) -> kv::Config {
    kv::Config {
        bucket: ALERT_SILENCES_BUCKET.to_owned(),
        description: "pgmon alert silences (who, why, until when)".to_owned(),
        history: 1,
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// The monitored-targets bucket; `nats/stream-KV_pgmon_targets.json` is its backing stream.
pub fn targets_bucket_config(replicas: u8) -> kv::Config {
    kv::Config {
        bucket: TARGETS_BUCKET.to_owned(),
        description: "pgmon monitored targets (connection list)".to_owned(),
        history: 10,
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// How long a collector's announcement and leases live without renewal: a collector that dies
/// hands its targets over after at most this long.
pub const COLLECTOR_LEASE_TIME: Duration = Duration::from_secs(15);

/// The collectors' membership and lease bucket; `nats/stream-KV_pgmon_collectors.json` is its
/// backing stream.
pub fn collectors_bucket_config(replicas: u8) -> kv::Config {
    kv::Config {
        bucket: COLLECTORS_BUCKET.to_owned(),
        description: "pgmon collectors alive and the targets each holds (entries expire unless renewed)".to_owned(),
        history: 1,
        max_age: COLLECTOR_LEASE_TIME,
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// The users bucket; `nats/stream-KV_pgmon_users.json` is its backing stream.
pub fn users_bucket_config(replicas: u8) -> kv::Config {
    kv::Config {
        bucket: USERS_BUCKET.to_owned(),
        description: "pgmon web users (argon2 password hashes and roles)".to_owned(),
        history: 5,
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// The API tokens bucket; `nats/stream-KV_pgmon_api_tokens.json` is its backing stream.
pub fn api_tokens_bucket_config(replicas: u8) -> kv::Config {
    kv::Config {
        bucket: API_TOKENS_BUCKET.to_owned(),
        description: "pgmon API tokens (by SHA-256 of the token)".to_owned(),
        history: 1,
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// How long a web session lasts after signing in; its bucket entry expires then.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The web sessions bucket; `nats/stream-KV_pgmon_sessions.json` is its backing stream.
pub fn sessions_bucket_config(replicas: u8) -> kv::Config {
    kv::Config {
        bucket: SESSIONS_BUCKET.to_owned(),
        description: "pgmon web sessions (by SHA-256 of the session id; entries expire)".to_owned(),
        history: 1,
        max_age: SESSION_LIFETIME,
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        ..Default::default()
    }
}

/// Connects to NATS as `role`, checks the server version and JetStream, creates the streams and
/// buckets the role needs where missing, and brings those it owns to these settings.
pub async fn connect_jetstream(nats: &NatsArgs, role: NatsRole) -> Result<jetstream::Context, NatsSetupError> {
    connect_with(nats, role, ExistingStreams::Reconcile).await
}

/// The same for a command-line tool: creates what is missing, changes nothing that exists (a
/// tool run from a shell without the deployment's settings must not shorten the stream).
pub async fn connect_jetstream_as_tool(nats: &NatsArgs, role: NatsRole) -> Result<jetstream::Context, NatsSetupError> {
    connect_with(nats, role, ExistingStreams::Leave).await
}

async fn connect_with(nats: &NatsArgs, role: NatsRole, existing: ExistingStreams) -> Result<jetstream::Context, NatsSetupError> {
    let client = connect(nats, role).await?;
    let context = jetstream::new(client);
    ensure_streams_and_buckets(&context, nats, role, existing).await?;
    Ok(context)
}

/// Connects as `role` (with its NKey seed when one is given, replies under the role's own inbox
/// prefix) and checks the server version; does not touch JetStream.
pub async fn connect(nats: &NatsArgs, role: NatsRole) -> Result<async_nats::Client, NatsSetupError> {
    let url = &nats.url;
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("pgmon-{}", role.as_str()))
        .custom_inbox_prefix(role.inbox_prefix())
        .connection_timeout(Duration::from_secs(3));
    if let Some(file) = &nats.nkey_file {
        let seed_error = |reason: String| NatsSetupError::Seed {
            role: role.as_str(),
            file: file.clone(),
            reason,
        };
        let seed = std::fs::read_to_string(file).map_err(|e| seed_error(e.to_string()))?;
        crate::nats_access::public_key_of_seed(&seed).map_err(seed_error)?;
        options = options.nkey(seed.trim().to_owned());
    }
    if let Some(ca_file) = &nats.ca_file {
        options = options.add_root_certificates(ca_file.clone()).require_tls(true);
    }
    let client = options.connect(url).await.map_err(|source| {
        if matches!(
            source.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation | async_nats::ConnectErrorKind::Authentication
        ) {
            return match &nats.nkey_file {
                None => NatsSetupError::CredentialsMissing {
                    url: url.clone(),
                    role: role.as_str(),
                },
                Some(file) => NatsSetupError::CredentialsRefused {
                    url: url.clone(),
                    role: role.as_str(),
                    file: file.clone(),
                },
            };
        }
        NatsSetupError::Connect { url: url.clone(), source }
    })?;
    check_server_version(url, &client.server_info().version)?;
    if !client.server_info().auth_required {
        tracing::warn!(nats = %url, role = role.as_str(), "NATS accepts anonymous clients: anyone who can reach it can read every query text and make themselves a pgmon admin; see docs/security.md");
    }
    Ok(client)
}

fn check_server_version(url: &str, version: &str) -> Result<(), NatsSetupError> {
    let too_old = || NatsSetupError::ServerTooOld {
        url: url.to_owned(),
        found: version.to_owned(),
    };
    let parsed = semver::Version::parse(version.trim_start_matches('v')).map_err(|_| too_old())?;
    let release = semver::Version::new(parsed.major, parsed.minor, parsed.patch);
    if release < MINIMUM_NATS_SERVER_VERSION {
        return Err(too_old());
    }
    Ok(())
}

async fn ensure_streams_and_buckets(
    context: &jetstream::Context,
    nats: &NatsArgs,
    role: NatsRole,
    existing: ExistingStreams,
) -> Result<(), NatsSetupError> {
    let (url, replicas) = (&nats.url, nats.stream_replicas);
    let owned = role.owned_streams();
    let wanted = |name: &str| owned.contains(&name) || role.creates_when_missing().contains(&name);
    for (stream_name, config) in [
        (SNAPSHOT_STREAM, snapshot_stream_config(nats.stream_max_age, replicas)),
        (DEAD_LETTER_STREAM, dead_letter_stream_config(replicas)),
        (ALERT_STREAM, alert_stream_config(replicas)),
    ] {
        if !wanted(stream_name) {
            continue;
        }
        if context.get_stream(stream_name).await.is_ok() {
            if existing == ExistingStreams::Reconcile && owned.contains(&stream_name) {
                reconcile_stream(context, stream_name, &config, nats).await?;
            }
            continue;
        }
        if let Err(source) = context.get_or_create_stream(config).await {
            if source.to_string().to_lowercase().contains("jetstream not enabled") {
                return Err(NatsSetupError::JetStreamDisabled { url: url.clone() });
            }
            // Another pgmon process created it between our look and our create (roles starting
            // together), with flags of its own: the first one's stream is the one to use.
            if context.get_stream(stream_name).await.is_ok() {
                continue;
            }
            return Err(NatsSetupError::CreateStream {
                stream: stream_name,
                source,
            });
        }
    }
    for (bucket, config) in [
        (TARGETS_BUCKET, targets_bucket_config(replicas)),
        (COLLECTORS_BUCKET, collectors_bucket_config(replicas)),
        (USERS_BUCKET, users_bucket_config(replicas)),
        (API_TOKENS_BUCKET, api_tokens_bucket_config(replicas)),
        (SESSIONS_BUCKET, sessions_bucket_config(replicas)),
        (ALERT_RULES_BUCKET, alert_rules_bucket_config(replicas)),
        (ALERT_STATE_BUCKET, alert_state_bucket_config(replicas)),
        (ALERT_SILENCES_BUCKET, alert_silences_bucket_config(replicas)),
    ] {
        if !wanted(bucket) {
            continue;
        }
        if context.get_key_value(bucket).await.is_err() {
            if let Err(source) = context.create_key_value(config).await {
                // Created meanwhile by another process, as with streams.
                if context.get_key_value(bucket).await.is_ok() {
                    continue;
                }
                return Err(NatsSetupError::CreateBucket { bucket, source });
            }
        } else if existing == ExistingStreams::Reconcile && owned.contains(&bucket) {
            let backing = format!("KV_{bucket}");
            let wanted = stream::Config {
                num_replicas: config.num_replicas,
                max_age: config.max_age,
                max_messages_per_subject: config.history,
                ..Default::default()
            };
            reconcile_stream(context, &backing, &wanted, nats).await?;
        }
    }
    Ok(())
}

/// One setting of a stream that differs from what this role wants, said for an operator.
fn differences(found: &stream::Config, wanted: &stream::Config) -> Vec<String> {
    let mut differences = Vec::new();
    let seconds =
        |duration: std::time::Duration| humantime::format_duration(std::time::Duration::from_secs(duration.as_secs())).to_string();
    if found.max_age != wanted.max_age {
        differences.push(format!(
            "max age {} where the settings say {} (--stream-max-age, PGMON_STREAM_MAX_AGE)",
            seconds(found.max_age),
            seconds(wanted.max_age)
        ));
    }
    if found.num_replicas != wanted.num_replicas {
        differences.push(format!(
            "{} replicas where the settings say {} (--stream-replicas, PGMON_STREAM_REPLICAS)",
            found.num_replicas, wanted.num_replicas
        ));
    }
    if wanted.max_messages_per_subject != 0 && found.max_messages_per_subject != wanted.max_messages_per_subject {
        differences.push(format!(
            "history {} where pgmon keeps {}",
            found.max_messages_per_subject, wanted.max_messages_per_subject
        ));
    }
    if wanted.allow_direct && !found.allow_direct {
        differences.push("direct get off, which pgmon's \"now\" views need".to_owned());
    }
    if wanted.compression.is_some() && found.compression != wanted.compression {
        differences.push("no S2 compression".to_owned());
    }
    if !wanted.duplicate_window.is_zero() && found.duplicate_window != wanted.duplicate_window {
        differences.push(format!(
            "a duplicate window of {} where pgmon needs {}",
            seconds(found.duplicate_window),
            seconds(wanted.duplicate_window)
        ));
    }
    differences
}

/// Brings the settings pgmon owns of an existing stream to `wanted`, leaving the rest as the
/// operator configured it.
async fn reconcile_stream(
    context: &jetstream::Context,
    name: &str,
    wanted: &stream::Config,
    nats: &NatsArgs,
) -> Result<(), NatsSetupError> {
    let read_error = |message: String| NatsSetupError::ReadStream {
        stream: name.to_owned(),
        message,
    };
    let mut stream = context.get_stream(name).await.map_err(|e| read_error(e.to_string()))?;
    let found = stream.info().await.map_err(|e| read_error(e.to_string()))?.config.clone();
    let differences = differences(&found, wanted);
    if differences.is_empty() {
        return Ok(());
    }
    let mut changed = found.clone();
    changed.max_age = wanted.max_age;
    changed.num_replicas = wanted.num_replicas;
    if wanted.max_messages_per_subject != 0 {
        changed.max_messages_per_subject = wanted.max_messages_per_subject;
    }
    changed.allow_direct |= wanted.allow_direct;
    if wanted.compression.is_some() {
        changed.compression = wanted.compression.clone();
    }
    if !wanted.duplicate_window.is_zero() {
        changed.duplicate_window = wanted.duplicate_window;
    }
    match context.update_stream(&changed).await {
        Ok(_) => {
            tracing::info!(stream = name, nats = %nats.url, changes = %differences.join("; "), "changed the stream to this role's settings");
            Ok(())
        }
        Err(error) => Err(NatsSetupError::StreamSettings {
            stream: name.to_owned(),
            differences: differences.join("; "),
            message: error.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_check_accepts_2_10_and_newer_only() {
        assert!(check_server_version("u", "2.10.0").is_ok());
        assert!(check_server_version("u", "2.15.1").is_ok());
        assert!(check_server_version("u", "2.11.0-RC.1").is_ok());
        let error = check_server_version("nats://h:4222", "2.9.10").unwrap_err();
        assert_eq!(
            error.to_string(),
            "nats-server at nats://h:4222 is version 2.9.10; pgmon needs 2.10.0 or newer (scripts/setup.sh installs a recent one)"
        );
        assert!(check_server_version("u", "garbage").is_err());
    }
}
