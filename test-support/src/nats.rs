//! A throw-away nats-server with JetStream on a random port, its store in a temp dir, and
//! pgmon's authorization on: every client connects with one of the roles' keys, as deployed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pgmon_common::nats_access::{self, NatsRole};
use pgmon_common::nats_setup::{self, NatsArgs};
use tempfile::TempDir;

use crate::postgres::TestCertificates;
use crate::process::{read_log, stop_child, wait_for_port};

pub struct TestNats {
    directory: TempDir,
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Whether clients must use TLS (with the certificates in `<directory>/tls`).
    tls: bool,
}

impl TestNats {
    /// Starts a JetStream-enabled nats-server; panics with the reason if it cannot.
    pub fn start() -> TestNats {
        TestNats::start_with(false).0
    }

    /// The same with TLS required of every client, its certificate signed by a test CA.
    pub fn start_with_tls() -> (TestNats, TestCertificates) {
        let (nats, certificates) = TestNats::start_with(true);
        (nats, certificates.expect("certificates were made"))
    }

    fn start_with(tls: bool) -> (TestNats, Option<TestCertificates>) {
        let binary = find_nats_server();
        let mut nats = TestNats {
            directory: tempfile::Builder::new().prefix("pgmon-test-nats-").tempdir().unwrap(),
            binary,
            port: 0,
            child: None,
            tls,
        };
        let certificates = tls.then(|| TestCertificates::make(&nats.directory.path().join("tls")));
        nats.start_again();
        (nats, certificates)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The file holding a role's NKey seed for this server.
    pub fn key_file(&self, role: NatsRole) -> PathBuf {
        nats_access::seed_file(&self.keys_dir(), role)
    }

    fn keys_dir(&self) -> PathBuf {
        self.directory.path().join("keys")
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
        let config = self.directory.path().join("nats-server.conf");
        if !config.exists() {
            let public_keys = nats_access::write_identities(&self.keys_dir()).expect("write the roles' NATS keys");
            let mut text = nats_access::server_configuration(&self.directory.path().join("store"), &public_keys);
            if self.tls {
                let tls = self.directory.path().join("tls");
                text.push_str(&format!(
                    "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
                    tls.join("server.crt").display().to_string(),
                    tls.join("server.key").display().to_string()
                ));
            }
            std::fs::write(&config, text).expect("write the nats-server configuration");
        }
        let port = if self.port == 0 { "-1".to_owned() } else { self.port.to_string() };
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config)
            .args(["-a", "127.0.0.1", "-p", &port])
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
        known_servers().lock().unwrap().insert(self.url(), self.directory.path().to_owned());
    }
}

/// The directories of the servers started in this process, by URL: lets helpers that are given
/// only a URL connect as a role.
fn known_servers() -> &'static Mutex<HashMap<String, PathBuf>> {
    static SERVERS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    SERVERS.get_or_init(Mutex::default)
}

fn directory_of(url: &str) -> PathBuf {
    known_servers()
        .lock()
        .unwrap()
        .get(url)
        .unwrap_or_else(|| panic!("{url} is not a nats-server this test started"))
        .clone()
}

/// The seed file of `role` for the test server at `url`; panics for a server not started here.
pub fn key_file_for(url: &str, role: NatsRole) -> PathBuf {
    nats_access::seed_file(&directory_of(url).join("keys"), role)
}

/// The CA certificate to trust for the test server at `url`, when it requires TLS.
pub fn ca_file_for(url: &str) -> Option<PathBuf> {
    Some(directory_of(url).join("tls").join("ca.crt")).filter(|path| path.exists())
}

/// The NATS settings of `role` for the test server at `url`: its own key, the server's CA.
pub fn nats_args_as(url: &str, role: NatsRole) -> NatsArgs {
    NatsArgs {
        url: url.to_owned(),
        stream_max_age: Duration::from_secs(3600),
        stream_replicas: 1,
        nkey_file: Some(key_file_for(url, role)),
        ca_file: ca_file_for(url),
    }
}

/// A plain client of the test server at `url` connected as `role`, the way pgmon's roles connect.
pub async fn connect_as(url: &str, role: NatsRole) -> async_nats::Client {
    nats_setup::connect(&nats_args_as(url, role), role)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url} as {role:?}: {e}"))
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
