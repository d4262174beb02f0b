//! The stream definitions in `nats/` (for `nats stream add --config`) match what pgmon creates
//! on a real nats-server, the KV bucket's backing stream included.

use async_nats::jetstream::stream;
use pgmon_common::nats_setup::{connect_jetstream, NatsArgs, DEFAULT_STREAM_MAX_AGE};
use pgmon_test_support::TestNats;

/// The parts of a stream definition that decide behaviour. The server writes "unlimited" as -1
/// where a client may send 0, so limits are compared as "unlimited" or their value.
fn essentials(config: &stream::Config) -> serde_json::Value {
    let limit = |value: i64| if value <= 0 { -1 } else { value };
    serde_json::json!({
        "description": config.description,
        "duplicate_window": config.duplicate_window.as_secs(),
        "name": config.name,
        "subjects": config.subjects,
        "storage": config.storage,
        "retention": config.retention,
        "discard": config.discard,
        "max_age": config.max_age.as_secs(),
        "max_msgs_per_subject": limit(config.max_messages_per_subject),
        "max_bytes": limit(config.max_bytes),
        "max_msgs": limit(config.max_messages),
        "compression": config.compression,
        "allow_direct": config.allow_direct,
        "allow_rollup_hdrs": config.allow_rollup,
        "deny_delete": config.deny_delete,
        "num_replicas": config.num_replicas,
    })
}

#[tokio::test]
async fn nats_directory_streams_match_the_server_after_start_up() {
    let nats = TestNats::start();
    let jetstream = connect_jetstream(
        &NatsArgs {
            url: nats.url(),
            stream_max_age: DEFAULT_STREAM_MAX_AGE,
            stream_replicas: 1,
        },
        "test",
    )
    .await
    .unwrap();
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats");
    for name in [
        "PGMON",
        "PGMON_DEADLETTER",
        "KV_pgmon_targets",
        "KV_pgmon_collectors",
        "KV_pgmon_users",
        "KV_pgmon_api_tokens",
        "KV_pgmon_sessions",
    ] {
        let path = directory.join(format!("stream-{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file: stream::Config = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut stream = jetstream.get_stream(name).await.unwrap();
        let server = stream.info().await.unwrap().config.clone();
        assert_eq!(
            essentials(&file),
            essentials(&server),
            "{} differs from the server's {name}:\n{}",
            path.display(),
            serde_json::to_string_pretty(&server).unwrap()
        );
    }
}

#[test]
fn nats_directory_server_configs_are_valid() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats");
    for name in ["single.conf", "cluster.conf"] {
        let output = std::process::Command::new(pgmon_test_support::find_nats_server())
            .args(["-t", "-c"])
            .arg(directory.join(name))
            .env("NATS_SERVER_NAME", "pgmon-test")
            .output()
            .unwrap();
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
