//! The JSON API fuzzed from its own OpenAPI document by schemathesis (PyPI), a property-based
//! fuzzer that is not pgmon, against a server with real history: no input may cause a 5xx,
//! and every answer must match the document.

mod common;

use std::process::Command;

use common::{api_token, serve_config, spawn_pipeline, test_python, wait_until};
use pgmon_common::access::Role;
use pgmon_common::secret::SecretKey;
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let reports = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let mut config = serve_config(&nats.url());
    config.secret_key = Some(SecretKey::parse(&SecretKey::generate()).unwrap());
    let server = pgmon_query_api::bind(&config).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let web = tokio::spawn(server.serve(shutdown.clone()));
    let token = api_token(&nats.url(), Role::Admin).await;
    let http = common::http_client_builder().build().unwrap();
    wait_until(std::time::Duration::from_secs(30), "history of the target", || {
        let request = http.get(format!("{base}/api/v1/targets/db/activity?range=1m")).bearer_auth(&token);
        async move { request.send().await.is_ok_and(|response| response.status() == 200) }
    })
    .await;

    let schemathesis = test_python().with_file_name("schemathesis");
    let output = tokio::task::spawn_blocking({
        let (base, token, reports) = (base.clone(), token.clone(), reports.path().to_owned());
        move || {
            Command::new(&schemathesis)
                // Its example database goes to the working directory: keep it out of the clone.
                .current_dir(&reports)
                .arg("run")
                .arg(format!("{base}/api/v1/openapi.json"))
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                ])
                .args(["--max-examples", "30", "--seed", "20261128", "--workers", "2"])
                .args(["--request-timeout", "20", "--no-color", "--suppress-health-check", "all"])
                .arg("--report-dir")
                .arg(&reports)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e} (scripts/setup.sh installs it)", schemathesis.display()))
        }
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(output.status.success(), "schemathesis found failures:\n{report}");
    assert!(!report.contains("Server error"), "{report}");

    shutdown.cancel();
    web.await.unwrap().unwrap();
    pipeline.join().await;
}
