//! The query-api role: a stateless axum server rendering maud + htmx pages and the JSON API.
//!
//! "Now" views read the newest event per subject straight from JetStream; history comes from
//! the ingesters' named queries over NATS request/reply. It never opens DuckDB files.

mod api;
mod error;
mod history;
mod metrics;
mod pages;
mod params;
mod targets;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use clap::Args;
use pgmon_common::health::health_routes;
use pgmon_common::nats_setup::{connect_jetstream, NatsArgs, NatsSetupError};
use tokio_util::sync::CancellationToken;

pub use error::AppError;

/// Command-line and environment settings of the web role.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address of the web UI and API; 127.0.0.1 keeps it local until sign-in exists.
    #[arg(long, env = "PGMON_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// How long to wait for an ingester to answer a history query.
    #[arg(long, env = "PGMON_QUERY_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub nats: NatsArgs,
    pub listen: SocketAddr,
    pub query_timeout: Duration,
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs, nats: NatsArgs) -> ServeConfig {
        ServeConfig {
            nats,
            listen: args.listen,
            query_timeout: args.query_timeout,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub jetstream: jetstream::Context,
    pub query_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Nats(#[from] NatsSetupError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("web server failed: {0}")]
    Serve(std::io::Error),
}

/// All routes of the web role.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::fleet))
        .route("/targets/{target}", get(pages::activity))
        .route("/targets/{target}/activity-panel", get(pages::activity_panel))
        .route("/assets/{name}", get(pages::asset))
        .route("/api/v1/targets", get(api::targets))
        .route("/api/v1/targets/{target}/activity", get(api::activity))
        .merge(health_routes())
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(metrics::time_requests))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers that keep pages from being framed or sniffed, and allow scripts from pgmon only.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// A web server bound to its address, not yet serving.
pub struct BoundServer {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl BoundServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        tracing::info!(address = %self.local_addr(), "web UI and API serving");
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(ServeError::Serve)
    }
}

/// Connects to NATS and binds the listen address.
pub async fn bind(config: &ServeConfig) -> Result<BoundServer, ServeError> {
    metrics::register_metrics();
    let jetstream = connect_jetstream(&config.nats, "pgmon-query-api").await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen,
            source,
        })?;
    Ok(BoundServer {
        listener,
        state: AppState {
            jetstream,
            query_timeout: config.query_timeout,
        },
    })
}

/// Runs the web role until `shutdown` is cancelled.
pub async fn run(config: ServeConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    bind(&config).await?.serve(shutdown).await
}
