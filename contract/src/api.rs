//! Answers of the JSON API that the web composes itself (from several named queries) rather
//! than passing through from the ingester; the pages render the same values.

use serde::{Deserialize, Serialize};

/// One target of the fleet (also an entry of `GET /api/v1/fleet`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetSummary {
    pub name: String,
    /// `up`, `down`, or `unknown` before the first status snapshot.
    pub status: String,
    /// Why a down target is down, as the collector said.
    pub status_message: Option<String>,
    /// What the collector cannot sample on a target that is up.
    pub limitations: Vec<String>,
    /// Seconds since the newest activity snapshot: how far behind the collector is.
    pub lag_seconds: Option<i64>,
    /// When the newest activity snapshot was taken, microseconds since the epoch.
    pub last_sample_us: Option<i64>,
    /// Active client sessions in the newest activity snapshot.
    pub active_sessions_now: Option<usize>,
    /// `max_connections` of the server, from its newest database snapshot.
    pub max_connections: Option<i32>,
    /// Size of the target's tables with their indexes and TOAST, from the newest objects snapshot.
    pub data_bytes: Option<i64>,
    /// The oldest frozen transaction or multixact ID of its databases as a percentage of the
    /// wraparound horizon (2^31), from the newest database snapshot.
    pub oldest_xid_percent: Option<f64>,
    /// The largest replay lag of its standbys (or of itself, as a standby) in bytes of WAL,
    /// from the newest replication snapshot.
    pub replication_lag_bytes: Option<i64>,
    /// Replication slots not in use, from the newest slots snapshot: they hold WAL back.
    pub inactive_slots: Option<usize>,
    pub server_version: Option<String>,
}

/// A session in the blocking tree, with the sessions waiting for it below.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockingNode {
    pub pid: i32,
    pub backend_start_us: Option<i64>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub state: Option<String>,
    pub query: Option<String>,
    /// How long it has waited for a lock (absent for a root blocker that waits for none).
    pub waiting_seconds: Option<i64>,
    /// The lock it waits for: mode and object, e.g. `AccessExclusiveLock on relation public.orders`.
    pub waiting_for: Option<String>,
    #[schema(no_recursion)]
    pub waiters: Vec<BlockingNode>,
}

/// The blocking tree of the newest activity snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrentBlocking {
    /// When the snapshot was taken; `None` when there is none.
    pub collected_at_us: Option<i64>,
    /// Sessions that block others and wait for no one, each with who waits for it.
    pub roots: Vec<BlockingNode>,
}

/// The maintenance commands running on a target, from its newest progress snapshot (`GET
/// /api/v1/targets/{target}/health/maintenance`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunningMaintenance {
    /// When the progress snapshot was taken; absent when the target never sent one.
    pub collected_at_us: Option<i64>,
    pub commands: Vec<crate::event::ProgressRow>,
    /// Commands run by autovacuum workers, of `autovacuum_max_workers`: all busy means tables
    /// wait their turn.
    pub autovacuum_workers_busy: usize,
    pub autovacuum_max_workers: Option<i64>,
}

/// A target's replication now, from its newest replication and slots snapshots (`GET
/// /api/v1/targets/{target}/health/replication`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrentReplication {
    /// When the links were sampled; absent when the target never had any.
    pub collected_at_us: Option<i64>,
    /// Its standbys, and its own replay when it is a standby.
    pub links: Vec<crate::event::ReplicationRow>,
    /// When the slots were sampled; absent when the target never had any.
    pub slots_collected_at_us: Option<i64>,
    pub slots: Vec<crate::event::SlotRow>,
}
