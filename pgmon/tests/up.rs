//! `pgmon up` as a user runs it: all roles in one process, its own nats-server started when
//! none answers at the NATS URL (accepting pgmon's role keys only) and stopped on exit, a live
//! chart served at the printed URL.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::wait_until;
use pgmon_test_support::{find_nats_server, free_local_port, TestPostgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_its_own_nats_serves_a_live_chart_and_cleans_up() {
    let postgres = TestPostgres::start();
    let data_dir = tempfile::tempdir().unwrap();
    let nats_port = free_local_port();
    let mut pgmon = Command::new(env!("CARGO_BIN_EXE_pgmon"))
        .args(["up", "--listen", "127.0.0.1:0", "--activity-interval", "250ms"])
        .args(["--nats-url", &format!("nats://127.0.0.1:{nats_port}")])
        .arg("--target")
        .arg(format!("db={}", postgres.url()))
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("PGMON_NATS_SERVER", find_nats_server())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let mut stdout = BufReader::new(pgmon.stdout.take().unwrap());
    let mut first_line = String::new();
    stdout.read_line(&mut first_line).unwrap();
    assert!(first_line.starts_with("pgmon is up: open http://127.0.0.1:"), "{first_line}");
    let mut second_line = String::new();
    stdout.read_line(&mut second_line).unwrap();
    let password_file = data_dir.path().join("initial-admin-password");
    assert_eq!(
        second_line.trim(),
        format!("sign in as admin with the password in {}", password_file.display())
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&password_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the first admin's password file is readable by its owner only");
    let password = std::fs::read_to_string(&password_file).unwrap().trim().to_owned();
    let base = first_line.split_whitespace().nth(4).unwrap().trim_end_matches('/').to_owned();
    assert!(
        TcpStream::connect(("127.0.0.1", nats_port)).is_ok(),
        "pgmon up started no nats-server on the URL's port"
    );
    assert!(data_dir.path().join("nats").is_dir(), "the nats-server store is under the data dir");
    // The embedded server lets in pgmon's roles only, each with its key, kept for the owner's eyes.
    let anonymous = async_nats::ConnectOptions::new()
        .max_reconnects(Some(0))
        .connect(format!("nats://127.0.0.1:{nats_port}"))
        .await;
    assert!(anonymous.is_err(), "the embedded nats-server let an anonymous client in");
    for role in pgmon_common::nats_access::NatsRole::ALL {
        let seed = pgmon_common::nats_access::seed_file(&data_dir.path().join("nats-keys"), *role);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&seed).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", seed.display());
    }

    let http = common::http_client_builder().cookie_store(true).build().unwrap();
    assert_eq!(
        http.get(format!("{base}/healthz")).send().await.unwrap().text().await.unwrap(),
        "ok\n"
    );
    // Signed out, a page sends the browser to sign in; signing in brings it back.
    let signed_out = http.get(format!("{base}/targets/db")).send().await.unwrap();
    assert!(signed_out.url().path().starts_with("/sign-in"), "{}", signed_out.url());
    let signed_in = http
        .post(format!("{base}/sign-in"))
        .form(&[("user", "admin"), ("password", password.as_str()), ("next", "/targets/db")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    assert_eq!(signed_in.url().path(), "/targets/db");
    let page = http.get(format!("{base}/targets/db")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/assets/uPlot.iife.min.js") && html.contains("data-series-url"),
        "{html}"
    );
    for asset in ["htmx.min.js", "uPlot.iife.min.js", "pgmon.js"] {
        assert_eq!(
            http.get(format!("{base}/assets/{asset}")).send().await.unwrap().status(),
            200,
            "{asset}"
        );
    }

    wait_until(Duration::from_secs(30), "samples of the target in the series", || {
        let http = http.clone();
        let url = format!("{base}/api/v1/targets/db/activity?range=1m&step=1s");
        async move {
            let reply: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
            reply["samples"]
                .as_array()
                .is_some_and(|samples| samples.iter().any(|n| n.as_u64() > Some(0)))
        }
    })
    .await;
    let targets: serde_json::Value = http.get(format!("{base}/api/v1/fleet")).send().await.unwrap().json().await.unwrap();
    assert_eq!(targets[0]["name"], "db");

    // SAFETY: kill(2) on our own, not yet reaped child.
    unsafe {
        libc::kill(pgmon.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = pgmon.wait().unwrap();
    assert!(status.success(), "pgmon up exited with {status}");
    assert!(
        TcpStream::connect(("127.0.0.1", nats_port)).is_err(),
        "the nats-server child outlived pgmon up"
    );
}
