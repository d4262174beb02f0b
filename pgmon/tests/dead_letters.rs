//! Malformed, truncated, wrong-version and oversized messages on `pgmon.snap.*` subjects: the
//! ingester counts them, moves them to the dead-letter stream with the reason, and goes on
//! storing good snapshots.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use common::{ingester_config, wait_until};
use futures::StreamExt;
use pgmon_contract::event::{encode_snapshot, ActivityRow};
use pgmon_contract::query::{ActivityDimension, ActivitySeriesReply, ActivitySeriesRequest, QueryReply, ACTIVITY_SERIES_QUERY};
use pgmon_contract::subjects::{query_subject, DEAD_LETTER_REASON_HEADER, DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECT_HEADER};
use pgmon_test_support::TestNats;
use tokio_util::sync::CancellationToken;

fn good_snapshot(collected_at_us: i64) -> Vec<u8> {
    encode_snapshot(&common::activity_sample(
        "db",
        collected_at_us,
        vec![ActivityRow {
            pid: 7,
            backend_type: Some("client backend".into()),
            state: Some("active".into()),
            wait_event_type: Some("Lock".into()),
            wait_event: Some("relation".into()),
            ..ActivityRow::default()
        }],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_messages_are_dead_lettered_with_a_reason_and_ingestion_goes_on() {
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut config = ingester_config(&nats.url(), data_dir.path());
    config.max_message_bytes = 64 * 1024;
    // Below every message's size: raised to the server's largest message, so nothing stalls.
    config.batch_max_bytes = 1;
    let stats = config.stats.clone();
    let ingester = tokio::spawn(pgmon_ingester::run(config, shutdown.clone()));

    let client = pgmon_test_support::connect_as(&nats.url(), pgmon_common::nats_access::NatsRole::Admin).await;
    let jetstream = jetstream::new(client.clone());
    wait_until(Duration::from_secs(10), "the ingester to create the streams", || async {
        jetstream.get_stream(DEAD_LETTER_STREAM).await.is_ok()
    })
    .await;

    let good = String::from_utf8(good_snapshot(1_700_000_000_000_000)).unwrap();
    let bad_messages: Vec<(&str, Vec<u8>, &str)> = vec![
        ("pgmon.snap.db.activity", b"\x00\x01 not json".to_vec(), "not a snapshot envelope"),
        (
            "pgmon.snap.db.activity",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "not a snapshot envelope",
        ),
        (
            "pgmon.snap.db.activity",
            good.replace("\"schema_version\":1", "\"schema_version\":99").into_bytes(),
            "schema version 99 is not supported",
        ),
        (
            "pgmon.snap.db.activity",
            good.replace("\"kind\":\"activity\"", "\"kind\":\"telemetry\"").into_bytes(),
            "unknown snapshot kind",
        ),
        (
            "pgmon.snap.db.activity",
            good.replace("\"pid\":7", "\"pid\":\"seven\"").into_bytes(),
            "activity rows do not match",
        ),
        (
            "pgmon.snap.other.activity",
            good.clone().into_bytes(),
            "does not match the envelope",
        ),
        (
            "pgmon.snap.db.activity",
            good.replace("\"rows\":[", &format!("\"rows\":[{}", "{\"pid\":1},".repeat(10_000)))
                .into_bytes(),
            "exceeds the ingester's limit of 65536 bytes",
        ),
    ];
    for (subject, payload, _) in &bad_messages {
        jetstream.publish(*subject, payload.clone().into()).await.unwrap().await.unwrap();
    }
    jetstream
        .publish("pgmon.snap.db.activity", good_snapshot(1_700_000_001_000_000).into())
        .await
        .unwrap()
        .await
        .unwrap();

    wait_until(Duration::from_secs(20), "the good snapshot to be stored", || async {
        stats.snapshots_ingested.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(stats.dead_letters.load(Ordering::Relaxed), bad_messages.len() as u64);

    // Each dead letter carries its reason and original subject.
    let mut dead_letter_stream = jetstream.get_stream(DEAD_LETTER_STREAM).await.unwrap();
    assert_eq!(dead_letter_stream.info().await.unwrap().state.messages, bad_messages.len() as u64);
    let consumer = dead_letter_stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    for (subject, payload, reason) in &bad_messages {
        let message = messages.next().await.unwrap().unwrap();
        let headers = message.headers.clone().unwrap();
        let stored_reason = headers.get(DEAD_LETTER_REASON_HEADER).unwrap().as_str().to_owned();
        assert!(stored_reason.contains(reason), "expected {reason:?} in {stored_reason:?}");
        assert_eq!(headers.get(DEAD_LETTER_SUBJECT_HEADER).unwrap().as_str(), *subject);
        assert_eq!(message.payload.as_ref(), payload.as_slice(), "the original payload is kept");
    }

    // The good snapshot is answerable through the named query.
    let request = ActivitySeriesRequest {
        target: "db".parse().unwrap(),
        from_us: 1_699_999_990_000_000,
        to_us: 1_700_000_010_000_000,
        step_us: 10_000_000,
        by: ActivityDimension::WaitEventType,
        top: pgmon_contract::query::DEFAULT_TOP_SERIES,
    };
    let reply = client
        .request(
            query_subject(ACTIVITY_SERIES_QUERY, "db"),
            serde_json::to_vec(&request).unwrap().into(),
        )
        .await
        .unwrap();
    let QueryReply::Ok(series) = serde_json::from_slice::<QueryReply<ActivitySeriesReply>>(&reply.payload).unwrap() else {
        panic!("query failed")
    };
    assert_eq!(series.samples, vec![0, 1]);
    assert_eq!(series.series.len(), 1);
    assert_eq!(series.series[0].name, "Lock");
    assert_eq!(series.series[0].values, vec![None, Some(1.0)]);

    shutdown.cancel();
    ingester.await.unwrap().unwrap();
}
