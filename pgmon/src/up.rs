//! `pgmon up`: every role in one process for a single machine, with a local nats-server when needed.

use std::net::TcpListener;

use anyhow::Context;
use pgmon_collector::{CollectorArgs, CollectorConfig};
use pgmon_common::nats_setup::{self, NatsArgs, NatsSetupError};
use pgmon_ingester::{IngesterArgs, IngesterConfig};
use pgmon_query_api::{ServeArgs, ServeConfig};
use tokio_util::sync::CancellationToken;

use crate::embedded_nats::EmbeddedNats;

/// The port a local nats-server gets when the default one is free.
const DEFAULT_NATS_PORT: u16 = 4222;

pub struct UpArgs {
    pub nats: NatsArgs,
    /// Whether --nats-url was given: then that server must be used, never replaced.
    pub nats_url_given: bool,
    pub collector: CollectorArgs,
    pub ingester: IngesterArgs,
    pub serve: ServeArgs,
}

pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut nats = args.nats.clone();
    let collector = CollectorConfig::from_args(args.collector, nats.clone())?;
    let embedded = match nats_setup::connect(&nats.url, "pgmon-up").await {
        Ok(_) => {
            tracing::info!(url = %nats.url, "using the running NATS server");
            None
        }
        Err(error) if args.nats_url_given => {
            return Err(error).context("--nats-url was given, so pgmon up will not start its own nats-server")
        }
        Err(error) => {
            let port = if matches!(error, NatsSetupError::ServerTooOld { .. }) || !port_is_free(DEFAULT_NATS_PORT) {
                free_port()?
            } else {
                DEFAULT_NATS_PORT
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
    let server = pgmon_query_api::bind(&ServeConfig::from_args(args.serve, nats.clone())).await?;
    println!("pgmon is up: open http://{}/ (NATS at {})", server.local_addr(), nats.url);

    let roles = shutdown.child_token();
    let stop_all = |roles: &CancellationToken| {
        let roles = roles.clone();
        move |result: anyhow::Result<()>| {
            roles.cancel();
            result
        }
    };
    let results = tokio::join!(
        async { stop_all(&roles)(pgmon_ingester::run(ingester, roles.clone()).await.context("ingester")) },
        async { stop_all(&roles)(pgmon_collector::run(collector, roles.clone()).await.context("collector")) },
        async { stop_all(&roles)(server.serve(roles.clone()).await.context("web server")) },
    );
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    results.0.and(results.1).and(results.2)
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port for nats-server")?
        .local_addr()?
        .port())
}
