//! The web role's Prometheus metrics: request durations by route, method and status class.

use std::sync::LazyLock;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use pgmon_common::metrics::{duration_histograms, register, DurationHistograms};
use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The route's pattern (`/targets/{target}`), never the path itself: one series per route,
    /// however many targets there are.
    pub route: String,
    /// One of the methods HTTP defines, or `other`: a client making up methods adds no series.
    pub method: &'static str,
    pub status: u16,
}

static REQUEST_DURATION: LazyLock<DurationHistograms<RequestLabels>> = LazyLock::new(|| {
    let family = duration_histograms();
    register(|registry| {
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request of the web UI or API, by route, method and status",
            family.clone(),
        );
    });
    family
});

/// Registers the metrics, so a scrape shows them before the first request.
pub(crate) fn register_metrics() {
    LazyLock::force(&REQUEST_DURATION);
}

fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// Middleware timing every request.
pub(crate) async fn time_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    REQUEST_DURATION
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        for made_up in ["BREW", "PROPFIND", "X1234567890"] {
            assert_eq!(method_label(&axum::http::Method::from_bytes(made_up.as_bytes()).unwrap()), "other");
        }
    }
}
