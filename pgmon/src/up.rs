//! `pgmon up`: every role in one process for a single machine, with a local nats-server when needed.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pgmon_alerter::{AlerterArgs, AlerterConfig};
use pgmon_collector::{CollectorArgs, CollectorConfig};
use pgmon_common::nats_access::{self, NatsRole};
use pgmon_common::nats_setup::{self, NatsArgs, NatsSetupError};
use pgmon_ingester::{IngesterArgs, IngesterConfig};
use pgmon_query_api::{ServeArgs, ServeConfig};
use tokio_util::sync::CancellationToken;

use crate::embedded_nats::EmbeddedNats;

pub struct UpArgs {
    pub nats: NatsArgs,
    /// Whether --nats-url was given: an unusable server there is then an error, not replaced.
    pub nats_url_given: bool,
    /// Where the roles' NATS keys are (made there when missing); `<data dir>/nats-keys` when
    /// not given.
    pub nats_keys_dir: Option<PathBuf>,
    pub collector: CollectorArgs,
    pub ingester: IngesterArgs,
    pub serve: ServeArgs,
    pub alerter: AlerterArgs,
}

pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.nats.nkey_file.is_some() {
        anyhow::bail!("pgmon up connects each role with its own key from --nats-keys-dir; --nats-nkey-file is for the separate roles");
    }
    let keys_dir = args
        .nats_keys_dir
        .clone()
        .unwrap_or_else(|| args.ingester.data_dir.join("nats-keys"));
    let public_keys = load_or_make_keys(&keys_dir)?;
    let mut nats = args.nats.clone();
    let spool_given = args.collector.spool_dir.is_some();
    let mut collector = CollectorConfig::from_args(args.collector, nats.clone())?;
    if !spool_given {
        collector.spool_dir = args.ingester.data_dir.join("spool");
    }
    let probe = nats_setup::connect(&as_role(&nats, &keys_dir, NatsRole::Reader), NatsRole::Reader).await;
    let embedded = match probe {
        Ok(client) if client.server_info().auth_required || args.nats_url_given => {
            tracing::info!(url = %nats.url, "using the running NATS server");
            None
        }
        Err(error @ (NatsSetupError::ServerTooOld { .. } | NatsSetupError::CredentialsRefused { .. })) if args.nats_url_given => {
            return Err(error).context("--nats-url names a server pgmon cannot use");
        }
        found => {
            let port = match &found {
                // Something answers there that pgmon will not use (too old, open to anyone,
                // other keys): leave it alone and run our own elsewhere.
                Ok(_) | Err(NatsSetupError::ServerTooOld { .. } | NatsSetupError::CredentialsRefused { .. }) => free_port()?,
                Err(_) => local_port_of(&nats.url)?,
            };
            let reason = match found {
                Ok(_) => "the NATS server at the default URL accepts anonymous clients".to_owned(),
                Err(error) => error.to_string(),
            };
            tracing::info!(reason = %reason, port, "starting a local nats-server");
            let embedded = EmbeddedNats::start(&args.ingester.data_dir.join("nats"), port, &public_keys).await?;
            nats.url = embedded.url.clone();
            Some(embedded)
        }
    };
    let collector = CollectorConfig {
        nats: as_role(&nats, &keys_dir, NatsRole::Collector),
        ..collector
    };
    let ingester = IngesterConfig::from_args(args.ingester, as_role(&nats, &keys_dir, NatsRole::Ingester));
    let web_url_given = args.alerter.web_url.is_some();
    let mut alerter = AlerterConfig::from_args(args.alerter, as_role(&nats, &keys_dir, NatsRole::Alerter))?;
    // A broken alerts file stops the start before any role runs, with every problem named.
    if let Some(file) = &alerter.alerts_file {
        pgmon_alerter::read_alerts_file(file)?;
    }
    let mut serve_config = ServeConfig::from_args(args.serve, as_role(&nats, &keys_dir, NatsRole::Web), collector.secret_key.clone());
    let password_file = ingester.data_dir.join("initial-admin-password");
    serve_config.generated_admin_password_file = Some(password_file.clone());
    let server = pgmon_query_api::bind(&serve_config).await?;
    if !web_url_given {
        alerter.web_url = format!("http://{}", server.local_addr());
    }
    println!("pgmon is up: open http://{}/ (NATS at {})", server.local_addr(), nats.url);
    if password_file.exists() {
        println!("sign in as admin with the password in {}", password_file.display());
    }

    // One role failing stops the others.
    let roles = shutdown.child_token();
    pgmon_common::health::starting(pgmon_ingester::ROLE);
    pgmon_common::health::starting(pgmon_collector::ROLE);
    pgmon_common::health::starting(pgmon_alerter::ROLE);
    let (ingested, collected, served, alerted) = tokio::join!(
        stop_others_on_exit(&roles, async {
            pgmon_ingester::run(ingester, roles.clone()).await.context("ingester")
        }),
        stop_others_on_exit(&roles, async {
            pgmon_collector::run(collector, roles.clone()).await.context("collector")
        }),
        stop_others_on_exit(&roles, async { server.serve(roles.clone()).await.context("web server") }),
        stop_others_on_exit(&roles, async {
            pgmon_alerter::run(alerter, roles.clone()).await.context("alerter")
        }),
    );
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    ingested.and(collected).and(served).and(alerted)
}

/// The public keys of the roles' keys in `directory`, made first when there are none.
fn load_or_make_keys(directory: &Path) -> anyhow::Result<std::collections::BTreeMap<NatsRole, String>> {
    if nats_access::missing_identities(directory) {
        tracing::info!(directory = %directory.display(), "making a NATS key for each role without one");
        return nats_access::write_identities(directory).with_context(|| format!("cannot write NATS keys into {}", directory.display()));
    }
    nats_access::read_public_keys(directory)
        .map_err(|reason| anyhow::anyhow!("the NATS keys in {} are not usable: {reason}", directory.display()))
}

/// The NATS settings of one role: the shared ones with the role's own key.
fn as_role(nats: &NatsArgs, keys_dir: &Path, role: NatsRole) -> NatsArgs {
    NatsArgs {
        nkey_file: Some(nats_access::seed_file(keys_dir, role)),
        ..nats.clone()
    }
}

async fn stop_others_on_exit(roles: &CancellationToken, role: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let result = role.await;
    roles.cancel();
    result
}

/// The port of a NATS URL on this machine, where a local nats-server may be started.
fn local_port_of(url: &str) -> anyhow::Result<u16> {
    let address: async_nats::ServerAddr = url.parse().with_context(|| format!("{url} is not a NATS URL"))?;
    if !matches!(address.host(), "127.0.0.1" | "localhost" | "::1" | "[::1]") {
        anyhow::bail!("no NATS answers at {url}, and pgmon up starts a local nats-server only for a 127.0.0.1 or localhost URL");
    }
    Ok(address.port())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port for nats-server")?
        .local_addr()?
        .port())
}
