//! Shared foundations of every pgmon role: the event contract, subjects, NATS setup, telemetry and health endpoints.

pub mod access;
pub mod event;
pub mod health;
pub mod metrics;
pub mod nats_access;
pub mod nats_setup;
pub mod query;
pub mod registry;
pub mod secret;
pub mod shutdown;
pub mod subjects;
pub mod target;
pub mod telemetry;
