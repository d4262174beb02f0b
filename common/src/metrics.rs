//! Prometheus metrics: the process's registry, which each role fills with its own metrics at
//! start, and its text exposition, served on `/metrics` beside `/healthz`.
//!
//! One registry per process, as Prometheus clients do by default: `pgmon up` runs every role in
//! one process and serves all their metrics on one port.

use std::sync::{LazyLock, Mutex};

use prometheus_client::registry::Registry;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// The media type of [`encode_text`]: OpenMetrics text, which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::with_prefix("pgmon")));

/// Registers metrics in the process's registry; names get the `pgmon_` prefix.
pub fn register(add: impl FnOnce(&mut Registry)) {
    add(&mut REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
}

/// Every registered metric in the OpenMetrics text format.
pub fn encode_text() -> String {
    let mut text = String::new();
    let registry = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// A family of duration histograms, one per label set.
pub type DurationHistograms<Labels> = Family<Labels, Histogram, fn() -> Histogram>;

/// A histogram family of durations in seconds, from 1 ms to about 30 s.
pub fn duration_histograms<Labels: Clone + std::hash::Hash + Eq>() -> DurationHistograms<Labels> {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)))
}
