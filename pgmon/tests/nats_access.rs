//! NATS access control as an attacker meets it: a client without a key is refused, a key the
//! server does not know is refused with a message saying so, and a role's key reaches only what
//! the role needs — a collector's key cannot forge a session, change a target's DSN, read the
//! users or listen to other roles' answers and other targets' query texts.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use pgmon_common::nats_access::{self, NatsRole};
use pgmon_common::nats_setup::{self, NatsArgs};
use pgmon_contract::subjects::{API_TOKENS_BUCKET, SESSIONS_BUCKET, TARGETS_BUCKET, USERS_BUCKET};
use pgmon_test_support::{connect_as, TestNats};

/// Whether a core subscription of `listener` to `subject` receives any of the messages that
/// `traffic` causes.
async fn overhears(listener: &async_nats::Client, subject: &str, traffic: impl std::future::Future<Output = ()>) -> bool {
    let Ok(mut subscription) = listener.subscribe(subject.to_owned()).await else {
        return false;
    };
    listener.flush().await.unwrap();
    // The server answers a subscription it refuses asynchronously: give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    traffic.await;
    tokio::time::timeout(Duration::from_millis(700), subscription.next())
        .await
        .is_ok_and(|message| message.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_known_key_are_refused_with_a_clear_message() {
    let nats = TestNats::start();
    let url = nats.url();

    let anonymous = async_nats::ConnectOptions::new().max_reconnects(Some(0)).connect(&url).await;
    assert!(anonymous.is_err(), "an anonymous client was let in");

    let without_key = NatsArgs {
        nkey_file: None,
        ..common::nats_args(&url)
    };
    let error = nats_setup::connect(&without_key, NatsRole::Collector)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "NATS at {url} requires credentials: give the collector role's NKey seed file with --nats-nkey-file"
        )),
        "{error}"
    );

    let strangers = tempfile::tempdir().unwrap();
    nats_access::write_identities(strangers.path()).unwrap();
    let unknown_key = NatsArgs {
        nkey_file: Some(nats_access::seed_file(strangers.path(), NatsRole::Admin)),
        ..common::nats_args(&url)
    };
    let error = nats_setup::connect(&unknown_key, NatsRole::Admin).await.unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("NATS at {url} refused the admin identity of ")),
        "{error}"
    );

    let not_a_seed = strangers.path().join("garbage.nk");
    std::fs::write(&not_a_seed, "SUAM-not-a-seed\n").unwrap();
    let error = nats_setup::connect(
        &NatsArgs {
            nkey_file: Some(not_a_seed),
            ..common::nats_args(&url)
        },
        NatsRole::Web,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.starts_with("cannot read the NKey seed of the web role from "), "{error}");
    assert!(!error.contains("SUAM"), "the seed's text is not repeated: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_only_what_it_needs() {
    let nats = TestNats::start();
    let url = nats.url();
    // Every stream and bucket exists, with a session and a target an attacker would like to change.
    let admin_jetstream = nats_setup::connect_jetstream(&common::nats_args(&url), NatsRole::Admin)
        .await
        .unwrap();
    let sessions = admin_jetstream.get_key_value(SESSIONS_BUCKET).await.unwrap();
    let targets = admin_jetstream.get_key_value(TARGETS_BUCKET).await.unwrap();
    targets.put("prod", "{\"dsn\":\"host=db\"}".into()).await.unwrap();

    let collector = connect_as(&url, NatsRole::Collector).await;
    let mut collector_jetstream = jetstream::new(collector.clone());
    collector_jetstream.set_timeout(Duration::from_secs(1));
    for bucket in [USERS_BUCKET, SESSIONS_BUCKET, API_TOKENS_BUCKET] {
        assert!(
            collector_jetstream.get_key_value(bucket).await.is_err(),
            "a collector's key opened {bucket}"
        );
    }
    // Raw writes where the key-value API was refused: a forged session, a DSN pointing elsewhere.
    collector
        .publish(format!("$KV.{SESSIONS_BUCKET}.forged"), "{\"user\":\"admin\"}".into())
        .await
        .unwrap();
    collector
        .publish(format!("$KV.{TARGETS_BUCKET}.prod"), "{\"dsn\":\"host=evil.example\"}".into())
        .await
        .unwrap();
    collector.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sessions.get("forged").await.unwrap().is_none(), "a collector forged a session");
    assert_eq!(
        targets.get("prod").await.unwrap().unwrap().as_ref(),
        b"{\"dsn\":\"host=db\"}",
        "a collector changed a target"
    );
    // What a collector needs: reading the targets, publishing snapshots.
    let readable_targets = collector_jetstream.get_key_value(TARGETS_BUCKET).await.unwrap();
    assert!(readable_targets.get("prod").await.unwrap().is_some());
    collector_jetstream
        .publish("pgmon.snap.prod.activity", "{}".into())
        .await
        .unwrap()
        .await
        .expect("the stream took a collector's snapshot");

    // Nobody but the web hears the web's answers (users, sessions); only the ingester hears
    // named queries; nobody hears the snapshots outside a consumer of the stream.
    let web = connect_as(&url, NatsRole::Web).await;
    let web_reads_the_users = || async {
        let users = jetstream::new(web.clone()).get_key_value(USERS_BUCKET).await.unwrap();
        users.get("admin").await.unwrap();
    };
    let web_asks_a_query = || async {
        web.publish("pgmon.query.activity_series.prod", "{}".into()).await.unwrap();
        web.flush().await.unwrap();
    };
    let ingester = connect_as(&url, NatsRole::Ingester).await;
    let ingester_reads_the_stream = || async {
        jetstream::new(ingester.clone()).get_stream("PGMON").await.unwrap();
    };
    let collector_publishes = || async {
        collector.publish("pgmon.snap.prod.activity", "{}".into()).await.unwrap();
        collector.flush().await.unwrap();
    };
    for role in [NatsRole::Collector, NatsRole::Reader, NatsRole::Ingester] {
        let eavesdropper = connect_as(&url, role).await;
        assert!(
            !overhears(&eavesdropper, "_INBOX_web.>", web_reads_the_users()).await,
            "{role:?} overhears the users the web reads"
        );
    }
    for role in [NatsRole::Collector, NatsRole::Reader, NatsRole::Web] {
        let eavesdropper = connect_as(&url, role).await;
        assert!(
            !overhears(&eavesdropper, "pgmon.snap.>", collector_publishes()).await,
            "{role:?} overhears snapshots"
        );
        assert!(
            !overhears(&eavesdropper, "_INBOX_ingester.>", ingester_reads_the_stream()).await,
            "{role:?} overhears the ingester's answers"
        );
    }
    for role in [NatsRole::Collector, NatsRole::Reader] {
        let eavesdropper = connect_as(&url, role).await;
        assert!(
            !overhears(&eavesdropper, "pgmon.query.>", web_asks_a_query()).await,
            "{role:?} overhears named queries"
        );
    }
    // The same subscriptions do receive where the role is allowed: the checks above can fail.
    let other_web = connect_as(&url, NatsRole::Web).await;
    assert!(overhears(&other_web, "_INBOX_web.>", web_reads_the_users()).await);
    let other_ingester = connect_as(&url, NatsRole::Ingester).await;
    assert!(overhears(&other_ingester, "pgmon.query.>", web_asks_a_query()).await);

    // Readers and the web cannot write snapshots.
    for role in [NatsRole::Reader, NatsRole::Web, NatsRole::Ingester] {
        let mut context = jetstream::new(connect_as(&url, role).await);
        context.set_timeout(Duration::from_secs(1));
        let published = match context.publish("pgmon.snap.prod.activity", "{}".into()).await {
            Ok(acknowledgement) => acknowledgement.await.is_ok(),
            Err(_) => false,
        };
        assert!(!published, "{role:?} wrote a snapshot");
    }
}

/// Where roles reach NATS across a network it requires TLS: the roles trust its CA
/// (--nats-ca-file) and work as usual; a client trusting another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_work_over_tls_with_the_servers_ca_and_refuse_any_other() {
    let (nats, certificates) = TestNats::start_with_tls();
    let url = nats.url();
    assert!(url.starts_with("tls://"), "{url}");
    let postgres = pgmon_test_support::TestPostgres::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pipeline = common::spawn_pipeline(&url, postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    common::wait_until(Duration::from_secs(20), "an activity sample over TLS", || async {
        !common::stream_activity(&url).await.is_empty()
    })
    .await;
    shutdown.cancel();
    pipeline.join().await;

    let untrusting = NatsArgs {
        ca_file: Some(certificates.other_ca.clone()),
        ..common::nats_args_as(&url, NatsRole::Collector)
    };
    let error = nats_setup::connect(&untrusting, NatsRole::Collector).await.unwrap_err().to_string();
    assert!(error.starts_with(&format!("cannot connect to NATS at {url}: ")), "{error}");
}
