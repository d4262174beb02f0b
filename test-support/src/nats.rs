//! A throw-away `nats-server -js` on a random port with its store in a temp dir.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{read_log, stop_child, wait_for_port};

pub struct TestNats {
    directory: TempDir,
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl TestNats {
    /// Starts a JetStream-enabled nats-server; panics with the reason if it cannot.
    pub fn start() -> TestNats {
        let binary = find_nats_server();
        let mut nats = TestNats {
            directory: tempfile::Builder::new().prefix("pgmon-test-nats-").tempdir().unwrap(),
            binary,
            port: 0,
            child: None,
        };
        nats.start_again();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server, keeping its store, as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGTERM);
        }
    }

    /// Starts the server again on the same port and store. The first start lets the server
    /// pick a free port itself (and write it to a ports file): a port chosen here could be
    /// taken by another test's server before this one binds it.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let log = self.directory.path().join("nats-server.log");
        let port = if self.port == 0 { "-1".to_owned() } else { self.port.to_string() };
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
            .arg(self.directory.path().join("store"))
            .arg("-l")
            .arg(&log)
            .arg("--ports_file_dir")
            .arg(self.directory.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        let child = self.child.insert(child);
        if self.port == 0 {
            self.port = wait_for_ports_file(
                &self.directory.path().join(format!("nats-server_{}.ports", child.id())),
                child,
                &log,
            );
        }
        wait_for_port(self.port, child, Duration::from_secs(20), "nats-server", &log);
    }
}

/// The client port a nats-server started with `-p -1` wrote to its ports file.
fn wait_for_ports_file(path: &std::path::Path, child: &mut Child, log: &std::path::Path) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let port = std::fs::read_to_string(path).ok().and_then(|text| {
            let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
            let url = ports["nats"][0].as_str()?;
            url.rsplit(':').next()?.parse::<u16>().ok()
        });
        if let Some(port) = port {
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nats-server exited with {status} before listening; log:\n{}", read_log(log));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server wrote no ports file in 20 s; log:\n{}",
            read_log(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The nats-server binary the tests use, checked to be 2.10 or newer.
pub fn find_nats_server() -> PathBuf {
    let binary = std::env::var_os("PGMON_TEST_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let output = Command::new(&binary).arg("--version").output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}): run scripts/setup.sh or set PGMON_TEST_NATS_SERVER",
            binary.display()
        )
    });
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.trim().rsplit('v').next().unwrap_or_default().to_owned();
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!(
        (major, minor) >= (2, 10),
        "{} is {:?}; pgmon's tests need nats-server 2.10 or newer: run scripts/setup.sh or set PGMON_TEST_NATS_SERVER",
        binary.display(),
        text.trim()
    );
    binary
}
