//! TLS to targets with libpq's sslmode meanings: require encrypts, verify-ca checks the chain,
//! verify-full the host name too, and an untrusted certificate is a specific down reason; a
//! password asked for in clear text is sent only over verified TLS.

mod common;

use std::time::Duration;

use common::{collector_config, newest_status, wait_until};
use pgmon_contract::event::{DownReason, TargetState};
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_encrypt_and_verify_as_libpq_does() {
    let nats = TestNats::start();
    let postgres = TestPostgres::start();
    let certificates = postgres.enable_tls();
    let port = postgres.port();
    let base = |host: &str| format!("host={host} port={port} user=postgres dbname=postgres");
    let targets = [
        ("tls-require", format!("{} sslmode=require", base("127.0.0.1"))),
        (
            "tls-verify-ca",
            format!("{} sslmode=verify-ca sslrootcert={}", base("127.0.0.1"), certificates.ca.display()),
        ),
        (
            "tls-verify-full",
            format!(
                "postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
                certificates.ca.display()
            ),
        ),
        (
            "tls-untrusted",
            format!(
                "{} sslmode=verify-full sslrootcert={}",
                base("localhost"),
                certificates.other_ca.display()
            ),
        ),
    ];
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(pgmon_collector::run(
        collector_config(&nats.url(), &targets, Duration::from_millis(500)),
        shutdown.clone(),
    ));
    let url = nats.url();
    for (target, expected) in [
        ("tls-require", TargetState::Up),
        ("tls-verify-ca", TargetState::Up),
        ("tls-verify-full", TargetState::Up),
        ("tls-untrusted", TargetState::Down),
    ] {
        wait_until(Duration::from_secs(20), &format!("a status of {target}"), || async {
            newest_status(&url, target).await.is_some()
        })
        .await;
        let status = newest_status(&url, target).await.unwrap();
        assert_eq!(status.state, expected, "{target}: {status:?}");
        if expected == TargetState::Down {
            assert_eq!(status.reason, Some(DownReason::TlsFailed), "{target}: {status:?}");
            assert!(
                status.message.as_deref().is_some_and(|message| message.contains("certificate")),
                "{status:?}"
            );
        }
    }
    let admin = postgres.connect().await;
    let encrypted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'pgmon' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 3, "{encrypted} encrypted pgmon sessions");
    shutdown.cancel();
    collector.await.unwrap().unwrap();
}

/// A server asking for the password in clear text receives it only over TLS whose certificate
/// pgmon verified: in the clear, or over TLS that anyone in the middle could terminate, the
/// collector breaks the connection instead of answering, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_text_passwords_go_only_over_verified_tls() {
    let nats = TestNats::start();
    let postgres = TestPostgres::start();
    let certificates = postgres.enable_tls();
    let admin = postgres.connect().await;
    admin
        .batch_execute("CREATE ROLE monitor LOGIN PASSWORD 'clear-text-secret' IN ROLE pg_monitor")
        .await
        .unwrap();
    postgres.set_host_based_authentication(
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all monitor 127.0.0.1/32 password\n",
    );
    let port = postgres.port();
    let dsn = |tls: String| {
        format!("host=localhost hostaddr=127.0.0.1 port={port} user=monitor password=clear-text-secret dbname=postgres {tls}")
    };
    let targets = [
        ("clear-text-in-the-clear", dsn("sslmode=disable".to_owned())),
        ("clear-text-unverified-tls", dsn("sslmode=require".to_owned())),
        (
            "clear-text-verified-tls",
            dsn(format!("sslmode=verify-full sslrootcert={}", certificates.ca.display())),
        ),
    ];
    let shutdown = CancellationToken::new();
    let collector = tokio::spawn(pgmon_collector::run(
        collector_config(&nats.url(), &targets, Duration::from_millis(500)),
        shutdown.clone(),
    ));
    let url = nats.url();
    for target in ["clear-text-in-the-clear", "clear-text-unverified-tls"] {
        wait_until(
            Duration::from_secs(20),
            &format!("{target} down for asking in clear text"),
            || async {
                newest_status(&url, target).await.is_some_and(|status| {
                    status.state == TargetState::Down
                        && status.reason == Some(DownReason::AuthenticationFailed)
                        && status.message.as_deref().is_some_and(|message| {
                            message.contains("asked for the password in clear text") && message.contains("verify-full")
                        })
                })
            },
        )
        .await;
    }
    wait_until(Duration::from_secs(20), "the verified target up", || async {
        newest_status(&url, "clear-text-verified-tls")
            .await
            .is_some_and(|status| status.state == TargetState::Up)
    })
    .await;
    let monitor_sessions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'monitor' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(monitor_sessions >= 1, "the verified target's sessions are encrypted");
    shutdown.cancel();
    collector.await.unwrap().unwrap();
}
