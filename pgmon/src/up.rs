//! `pgmon up`: every role in one process for a single machine, with a local nats-server when needed.

use std::future::Future;
use std::net::TcpListener;

use anyhow::Context;
use pgmon_collector::{CollectorArgs, CollectorConfig};
use pgmon_common::nats_setup::{self, NatsArgs, NatsSetupError};
use pgmon_ingester::{IngesterArgs, IngesterConfig};
use pgmon_query_api::{ServeArgs, ServeConfig};
use tokio_util::sync::CancellationToken;

use crate::embedded_nats::EmbeddedNats;

pub struct UpArgs {
    pub nats: NatsArgs,
    /// Whether --nats-url was given: an unusable server there is then an error, not replaced.
    pub nats_url_given: bool,
    pub collector: CollectorArgs,
    pub ingester: IngesterArgs,
    pub serve: ServeArgs,
}

pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut nats = args.nats.clone();
    let spool_given = args.collector.spool_dir.is_some();
    let mut collector = CollectorConfig::from_args(args.collector, nats.clone())?;
    if !spool_given {
        collector.spool_dir = args.ingester.data_dir.join("spool");
    }
    let embedded = match nats_setup::connect(&nats.url, "pgmon-up").await {
        Ok(_) => {
            tracing::info!(url = %nats.url, "using the running NATS server");
            None
        }
        Err(error @ NatsSetupError::ServerTooOld { .. }) if args.nats_url_given => {
            return Err(error).context("--nats-url names a server pgmon cannot use");
        }
        Err(error) => {
            let port = match error {
                // Something old answers there: leave it alone and run our own elsewhere.
                NatsSetupError::ServerTooOld { .. } => free_port()?,
                _ => local_port_of(&nats.url)?,
            };
            tracing::info!(reason = %error, port, "starting a local nats-server");
            let embedded = EmbeddedNats::start(&args.ingester.data_dir.join("nats"), port).await?;
            nats.url = embedded.url.clone();
            Some(embedded)
        }
    };
    let collector = CollectorConfig {
        nats: nats.clone(),
        ..collector
    };
    let ingester = IngesterConfig::from_args(args.ingester, nats.clone());
    let mut serve_config = ServeConfig::from_args(args.serve, nats.clone(), collector.secret_key.clone());
    let password_file = ingester.data_dir.join("initial-admin-password");
    serve_config.generated_admin_password_file = Some(password_file.clone());
    let server = pgmon_query_api::bind(&serve_config).await?;
    println!("pgmon is up: open http://{}/ (NATS at {})", server.local_addr(), nats.url);
    if password_file.exists() {
        println!("sign in as admin with the password in {}", password_file.display());
    }

    // One role failing stops the others.
    let roles = shutdown.child_token();
    pgmon_common::health::starting(pgmon_ingester::ROLE);
    pgmon_common::health::starting(pgmon_collector::ROLE);
    let (ingested, collected, served) = tokio::join!(
        stop_others_on_exit(&roles, async {
            pgmon_ingester::run(ingester, roles.clone()).await.context("ingester")
        }),
        stop_others_on_exit(&roles, async {
            pgmon_collector::run(collector, roles.clone()).await.context("collector")
        }),
        stop_others_on_exit(&roles, async { server.serve(roles.clone()).await.context("web server") }),
    );
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    ingested.and(collected).and(served)
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
