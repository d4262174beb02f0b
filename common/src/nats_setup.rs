//! Connecting to NATS and creating pgmon's JetStream stream, dead-letter stream and KV bucket.
//!
//! Every role runs [`connect_jetstream`] at start-up; creation is idempotent and an existing
//! stream is left exactly as the operator configured it (replicas, limits), so a cluster's
//! streams can be created beforehand from the JSON files in `nats/`.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use clap::Args;

use crate::subjects::{
    API_TOKENS_BUCKET, COLLECTORS_BUCKET, DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, SESSIONS_BUCKET, SNAPSHOT_STREAM, SNAPSHOT_SUBJECTS,
    TARGETS_BUCKET, USERS_BUCKET,
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
}

#[derive(Debug, thiserror::Error)]
pub enum NatsSetupError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
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

/// Connects to NATS as `client_name`, checks the server version and JetStream, and makes sure
/// pgmon's streams and bucket exist.
pub async fn connect_jetstream(nats: &NatsArgs, client_name: &str) -> Result<jetstream::Context, NatsSetupError> {
    let client = connect(&nats.url, client_name).await?;
    let context = jetstream::new(client);
    ensure_streams_and_bucket(&context, nats).await?;
    Ok(context)
}

/// Connects and checks the server version; does not touch JetStream.
pub async fn connect(url: &str, client_name: &str) -> Result<async_nats::Client, NatsSetupError> {
    let client = async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .map_err(|source| NatsSetupError::Connect {
            url: url.to_owned(),
            source,
        })?;
    check_server_version(url, &client.server_info().version)?;
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

async fn ensure_streams_and_bucket(context: &jetstream::Context, nats: &NatsArgs) -> Result<(), NatsSetupError> {
    let (url, replicas) = (&nats.url, nats.stream_replicas);
    for (stream_name, config) in [
        (SNAPSHOT_STREAM, snapshot_stream_config(nats.stream_max_age, replicas)),
        (DEAD_LETTER_STREAM, dead_letter_stream_config(replicas)),
    ] {
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
    ] {
        if context.get_key_value(bucket).await.is_err() {
            context
                .create_key_value(config)
                .await
                .map_err(|source| NatsSetupError::CreateBucket { bucket, source })?;
        }
    }
    Ok(())
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
