//! The nats-server child process `pgmon up` starts when no usable NATS answers: JetStream on,
//! every client authenticated with one of pgmon's role keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use pgmon_common::nats_access::{server_configuration, NatsRole};
use pgmon_common::nats_setup::MINIMUM_NATS_SERVER_VERSION;

/// A running nats-server with its store under pgmon's data directory.
pub struct EmbeddedNats {
    child: tokio::process::Child,
    pub url: String,
}

/// The nats-server to start: `PGMON_NATS_SERVER` or `nats-server` on PATH.
fn nats_server_binary() -> PathBuf {
    std::env::var_os("PGMON_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

async fn check_version(binary: &Path) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(binary)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("cannot run {} to start a local NATS: install nats-server {MINIMUM_NATS_SERVER_VERSION}+ (scripts/setup.sh does) or give --nats-url", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.trim().rsplit('v').next().unwrap_or_default();
    match semver::Version::parse(version) {
        Ok(found) if found >= MINIMUM_NATS_SERVER_VERSION => Ok(()),
        _ => bail!("{} reports {:?}; pgmon needs nats-server {MINIMUM_NATS_SERVER_VERSION} or newer (scripts/setup.sh installs one; PGMON_NATS_SERVER picks another binary)", binary.display(), text.trim()),
    }
}

impl EmbeddedNats {
    /// Starts nats-server on 127.0.0.1:`port` with JetStream storage in `store_dir`, accepting
    /// only the roles whose public keys are given.
    pub async fn start(store_dir: &Path, port: u16, public_keys: &BTreeMap<NatsRole, String>) -> anyhow::Result<EmbeddedNats> {
        let binary = nats_server_binary();
        check_version(&binary).await?;
        std::fs::create_dir_all(store_dir).with_context(|| format!("cannot create {}", store_dir.display()))?;
        let log = store_dir.join("nats-server.log");
        let config_file = store_dir.join("nats-server.conf");
        std::fs::write(&config_file, server_config(store_dir, port, public_keys))
            .with_context(|| format!("cannot write {}", config_file.display()))?;
        let child = tokio::process::Command::new(&binary)
            .arg("-c")
            .arg(&config_file)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut nats = EmbeddedNats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(nats);
            }
            if let Some(status) = nats.child.try_wait()? {
                bail!("nats-server exited with {status} at start; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("nats-server did not listen on port {port} within 10s; see {}", log.display())
    }

    /// Stops the server gracefully (SIGTERM), killing it if it lingers.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// The server's configuration: listening on loopback only, no client without a role key.
fn server_config(store_dir: &Path, port: u16, public_keys: &BTreeMap<NatsRole, String>) -> String {
    format!(
        "# Written by pgmon up at each start.\nlisten: 127.0.0.1:{port}\n{}",
        server_configuration(store_dir, public_keys)
    )
}
