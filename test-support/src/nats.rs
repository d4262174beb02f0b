//! A throw-away `nats-server -js` on a random port with its store in a temp dir.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{free_local_port, stop_child, wait_for_port};

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
            port: free_local_port(),
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

    /// Starts the server again on the same port and store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let log = self.directory.path().join("nats-server.log");
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.directory.path().join("store"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        let child = self.child.insert(child);
        wait_for_port(self.port, child, Duration::from_secs(20), "nats-server", &log);
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
