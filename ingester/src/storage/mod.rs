//! Where snapshots are kept: DuckDB files, one partition per period, attached to one in-memory
//! instance.
//!
//! Dependencies run one way: `error` ← `migrations` ← `partitions` ← `views` ← `catalog` ←
//! `compaction`, `legacy`, `append`, `stale_sizes` ← `store`, which is the only part the rest
//! of the ingester uses (with `partitions` for tools). Each table's shape comes from
//! `crate::tables`.

mod append;
mod catalog;
mod compaction;
mod error;
mod legacy;
pub(crate) mod migrations;
pub mod partitions;
mod retention;
pub(crate) mod stale_sizes;
pub mod store;
mod views;

pub use catalog::open_read_only;
pub use error::StoreError;

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64)
}
