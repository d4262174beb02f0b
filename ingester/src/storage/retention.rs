//! Which partitions retention deletes: the closed ones whose period ended before the retention
//! window, oldest first (the newest partition is always kept).

use std::time::Duration;

use super::partitions::{Partition, PartitionPeriod};

/// The starts of the partitions (oldest first) whose period ended more than `retention` before
/// `now_us`.
pub(crate) fn expired_partitions(partitions: &[Partition], period: PartitionPeriod, retention: Duration, now_us: i64) -> Vec<i64> {
    let cutoff = now_us / 1_000_000 - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    // A partition holds what JetStream stored during its period: it ends with its period,
    // or earlier where the next partition starts (after a change of period).
    let period = period.as_duration().as_secs() as i64;
    let ends: Vec<i64> = partitions
        .windows(2)
        .map(|pair| (pair[0].start + period).min(pair[1].start))
        .collect();
    partitions
        .iter()
        .zip(&ends)
        .take_while(|(_, end)| **end <= cutoff)
        .map(|(partition, _)| partition.start)
        .collect()
}
