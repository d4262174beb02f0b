//! The platform every pgmon role stands on: NATS set-up and access, users and secrets, the
//! target registry, telemetry and health endpoints. The event and query contract is
//! `pgmon-contract`.

pub mod access;
pub mod health;
pub mod metrics;
pub mod named_query;
pub mod nats_access;
pub mod nats_setup;
pub mod registry;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
