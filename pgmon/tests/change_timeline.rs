//! The change timeline on a real server: `ALTER SYSTEM` + reload, a setting waiting for a
//! restart, and the restart itself appear with their values and times, on the API and the
//! Health tab.

mod common;

use std::time::Duration;

use common::{now_us, spawn_pipeline, wait_until, ServedWeb};
use pgmon_test_support::{TestNats, TestPostgres};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

async fn changes(web: &ServedWeb) -> Vec<Value> {
    let reply = web.json("/api/v1/targets/db/changes?range=15m").await;
    reply["changes"].as_array().cloned().unwrap_or_default()
}

/// The change of `name` seen after `since_us`, once the API shows it.
async fn change_of(web: &ServedWeb, name: &str, since_us: i64, what: &str) -> Value {
    let mut found = None;
    for _ in 0..60 {
        found = changes(web)
            .await
            .into_iter()
            .find(|change| change["name"] == name && change["at_us"].as_i64() > Some(since_us));
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    found.unwrap_or_else(|| panic!("{what} never appeared on the timeline"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_setting_a_pending_restart_and_the_restart_appear_on_the_timeline() {
    let mut postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let web = ServedWeb::start(&nats.url(), &shutdown).await;
    // A first settings snapshot stored: what later ones are compared with.
    wait_until(Duration::from_secs(20), "the first settings snapshot", || async {
        web.json("/api/v1/targets/db/changes?range=15m").await["changes"].is_array()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before_reload = now_us();
    let admin = postgres.connect().await;
    // Each its own statement: ALTER SYSTEM cannot run in the implicit transaction of a batch.
    admin.batch_execute("ALTER SYSTEM SET work_mem = '8MB'").await.unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let work_mem = change_of(&web, "work_mem", before_reload, "work_mem after a reload").await;
    assert_eq!(work_mem["category"], "setting");
    // Only settings that differ from their defaults are kept: before, work_mem had its default.
    assert_eq!(
        (work_mem["old_value"].as_str(), work_mem["new_value"].as_str()),
        (None, Some("8MB")),
        "{work_mem}"
    );
    assert!(work_mem["at_us"].as_i64().unwrap() < now_us());

    let before_pending = now_us();
    admin.batch_execute("ALTER SYSTEM SET shared_buffers = '64MB'").await.unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let pending = change_of(&web, "shared_buffers", before_pending, "shared_buffers pending a restart").await;
    assert_eq!(pending["pending_restart"], true, "{pending}");
    assert_eq!(pending["new_value"], "128MB", "the running value until the restart: {pending}");
    drop(admin);

    let before_restart = now_us();
    postgres.stop();
    postgres.start_again();
    let restart = change_of(&web, "start_time", before_restart, "the restart").await;
    assert_eq!(restart["category"], "server");
    let applied = change_of(
        &web,
        "shared_buffers",
        restart["at_us"].as_i64().unwrap() - 1,
        "shared_buffers applied",
    )
    .await;
    assert_eq!(
        (
            applied["old_value"].as_str(),
            applied["new_value"].as_str(),
            applied["pending_restart"].as_bool()
        ),
        (Some("128MB"), Some("64MB"), Some(false)),
        "{applied}"
    );

    let page = web.page("/targets/db/health").await;
    assert!(
        page.contains("Changes, last 7 days") && page.contains("restart") && page.contains("work_mem"),
        "{page}"
    );
    let activity = web.page("/targets/db").await;
    assert!(
        activity.contains("data-changes-url=\"/api/v1/targets/db/changes?range="),
        "the chart marks changes"
    );

    shutdown.cancel();
    web.join().await;
    pipeline.join().await;
}
