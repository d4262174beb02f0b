//! The `/healthz` and `/metrics` endpoints every role serves, and a small server for roles
//! without a web UI.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

/// Routes every role answers: `/healthz` says the process is alive and serving, `/metrics`
/// gives the process's Prometheus metrics.
pub fn health_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route(
        "/metrics",
        get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                crate::metrics::encode_text(),
            )
        }),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum HealthServerError {
    #[error("cannot listen on {address} for /healthz: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("health server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves [`health_routes`] on `address` until `shutdown` is cancelled.
pub async fn serve_health(address: SocketAddr, shutdown: CancellationToken) -> Result<(), HealthServerError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| HealthServerError::Bind { address, source })?;
    tracing::info!(%address, "serving /healthz and /metrics");
    axum::serve(listener, health_routes::<()>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(HealthServerError::Serve)
}
