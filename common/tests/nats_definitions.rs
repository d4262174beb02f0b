//! The stream definitions in `nats/` (for `nats stream add --config`) match what pgmon creates
//! on a real nats-server, the KV bucket's backing stream included.

use async_nats::jetstream::stream;
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{connect_jetstream, connect_jetstream_as_tool, NatsArgs, DEFAULT_STREAM_MAX_AGE};
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
            stream_max_age: DEFAULT_STREAM_MAX_AGE,
            ..pgmon_test_support::nats_args_as(&nats.url(), NatsRole::Admin)
        },
        NatsRole::Admin,
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
        "PGMON_ALERTS",
        "KV_pgmon_alert_rules",
        "KV_pgmon_alert_state",
        "KV_pgmon_alert_silences",
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
fn nats_directory_authorization_is_the_roles_permissions() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats");
    let shipped = std::fs::read_to_string(directory.join("authorization.conf")).unwrap();
    assert!(
        shipped == pgmon_common::nats_access::shipped_authorization_config(),
        "nats/authorization.conf differs from the roles' permissions: run `pgmon nats authorization > nats/authorization.conf`"
    );
}

/// Both server configurations load with the roles' public keys in the environment; the
/// cluster's TLS files are stood in for by a test CA's.
#[test]
fn nats_directory_server_configs_are_valid() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats");
    let keys = tempfile::tempdir().unwrap();
    let public_keys = pgmon_common::nats_access::write_identities(keys.path()).unwrap();
    let certificates = pgmon_test_support::TestCertificates::make(&keys.path().join("tls"));
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&directory).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "conf") {
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("/etc/nats-tls/tls.crt", &certificates.server_certificate.display().to_string())
                .replace("/etc/nats-tls/tls.key", &certificates.server_key.display().to_string());
            std::fs::write(copy.path().join(path.file_name().unwrap()), text).unwrap();
        }
    }
    for name in ["single.conf", "cluster.conf"] {
        let output = std::process::Command::new(pgmon_test_support::find_nats_server())
            .args(["-t", "-c"])
            .arg(copy.path().join(name))
            .env("NATS_SERVER_NAME", "pgmon-test")
            .envs(public_keys.iter().map(|(role, key)| (role.public_key_variable(), key.clone())))
            .output()
            .unwrap();
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

/// A role started with other stream settings than the running stream has changes the stream;
/// a change the server refuses stops the start with a message saying what differs and how to
/// change it; a command-line tool changes nothing.
#[tokio::test]
async fn roles_apply_their_stream_settings_and_tools_leave_them() {
    let nats = TestNats::start();
    let settings = |max_age_seconds: u64, replicas: u8| NatsArgs {
        stream_max_age: std::time::Duration::from_secs(max_age_seconds),
        stream_replicas: replicas,
        ..pgmon_test_support::nats_args_as(&nats.url(), NatsRole::Ingester)
    };
    let jetstream = connect_jetstream(&settings(3600, 1), NatsRole::Ingester).await.unwrap();
    let max_age = || async {
        let mut stream = jetstream.get_stream("PGMON").await.unwrap();
        stream.info().await.unwrap().config.max_age.as_secs()
    };
    assert_eq!(max_age().await, 3600);

    connect_jetstream(&settings(7200, 1), NatsRole::Ingester).await.unwrap();
    assert_eq!(max_age().await, 7200, "a role's --stream-max-age changes the stream");

    connect_jetstream_as_tool(&settings(60, 1), NatsRole::Ingester).await.unwrap();
    assert_eq!(max_age().await, 7200, "a tool leaves the stream as it is");

    let error = connect_jetstream(&settings(7200, 3), NatsRole::Ingester)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "stream PGMON differs from this role's settings (1 replicas where the settings say 3 (--stream-replicas, PGMON_STREAM_REPLICAS)) and NATS refused to change it: "
        ),
        "{error}"
    );
    assert!(
        error.ends_with("start pgmon with the stream's settings, or change the stream first (nats stream edit PGMON)"),
        "{error}"
    );
    assert_eq!(max_age().await, 7200);
}
