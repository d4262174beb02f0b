//! The `/healthz`, `/readyz` and `/metrics` endpoints every role serves, and a small server
//! for roles without a web UI.
//!
//! `/healthz` answers while the process serves (liveness); `/readyz` only once every role of
//! the process that said it is starting has said it is ready (connected to NATS, its stream,
//! consumer and files open), so an orchestrator sends no traffic and counts no pod ready before.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

/// Roles of this process that are starting and not yet ready.
static STARTING: std::sync::Mutex<std::collections::BTreeSet<&'static str>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Marks `role` as starting: `/readyz` answers 503 until [`ready`] is called for it.
pub fn starting(role: &'static str) {
    STARTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(role);
}

/// Marks `role` as ready.
pub fn ready(role: &'static str) {
    STARTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(role);
}

async fn readiness() -> (StatusCode, String) {
    let starting = STARTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    if starting.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        let roles: Vec<&str> = starting.into_iter().collect();
        (StatusCode::SERVICE_UNAVAILABLE, format!("starting: {}\n", roles.join(", ")))
    }
}

/// The probes every role answers: `/healthz` says the process is alive and serving, `/readyz`
/// that its roles are ready for work.
pub fn probe_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness))
}

/// The probes, and `/metrics` with the process's Prometheus metrics.
pub fn health_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    probe_routes().route(
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
    #[error("cannot listen on {address} for /healthz, /readyz and /metrics: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("health server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves [`health_routes`] on `address` until `shutdown` is cancelled.
pub async fn serve_health(address: SocketAddr, shutdown: CancellationToken) -> Result<(), HealthServerError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| HealthServerError::Bind { address, source })?;
    tracing::info!(%address, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, health_routes::<()>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(HealthServerError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_waits_for_every_starting_role() {
        starting("test-role-a");
        starting("test-role-b");
        ready("test-role-a");
        let (status, body) = readiness().await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "starting: test-role-b\n")
        );
        ready("test-role-b");
        assert_eq!(readiness().await.0, StatusCode::OK);
    }
}
