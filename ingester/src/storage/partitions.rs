//! Time partitions: one DuckDB file per period (a UTC day by default) under `DATA_DIR/partitions`,
//! their names, and the views that put all of them together.
//!
//! A message goes to the partition of the period in which JetStream stored it, never to one
//! older than the newest partition: so every partition but the newest is closed for good
//! (immutable, readable by any DuckDB client while pgmon runs), a snapshot that arrives late
//! after an outage is stored in the open partition, and a rebuild from the stream lays the
//! rows out the same way as the live ingester did.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::tables::TABLES;

/// The directory of the partition files inside the data directory.
pub const PARTITIONS_DIRECTORY: &str = "partitions";

/// The generated SQL script that attaches every closed partition and defines the views over all
/// of them, for the `duckdb` CLI (`duckdb -cmd ".read DATA_DIR/views.sql"`).
pub const VIEWS_SCRIPT_NAME: &str = "views.sql";

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Tables that hold data (not bookkeeping) and get a view across partitions, by the names
/// readers use: every declared table of `tables`.
pub const DATA_TABLES: [&str; TABLES.len()] = {
    let mut names = [""; TABLES.len()];
    let mut index = 0;
    while index < TABLES.len() {
        names[index] = TABLES[index].read_as();
        index += 1;
    }
    names
};

/// The length of a partition's period, in whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionPeriod {
    seconds: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    #[error("the partition period must be whole seconds, at least 1s")]
    NotWholeSeconds,
}

impl PartitionPeriod {
    pub const DAY: PartitionPeriod = PartitionPeriod { seconds: SECONDS_PER_DAY };

    pub fn new(duration: Duration) -> Result<PartitionPeriod, PeriodError> {
        if duration.subsec_nanos() != 0 || duration.as_secs() == 0 {
            return Err(PeriodError::NotWholeSeconds);
        }
        let seconds = i64::try_from(duration.as_secs()).map_err(|_| PeriodError::NotWholeSeconds)?;
        Ok(PartitionPeriod { seconds })
    }

    /// The start (seconds since the epoch) of the period holding `at_us`. Periods are counted
    /// from the epoch, so daily periods start at midnight UTC.
    pub fn start_of(self, at_us: i64) -> i64 {
        at_us.div_euclid(MICROS_PER_SECOND).div_euclid(self.seconds) * self.seconds
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.seconds.unsigned_abs())
    }
}

/// One partition file, named by the UTC start of its period: `2026-11-27.duckdb` for a period
/// starting at midnight, `2026-11-27T101500.duckdb` otherwise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    /// Start of the period, seconds since the epoch.
    pub start: i64,
    pub path: PathBuf,
}

impl Partition {
    pub fn new(data_dir: &Path, start: i64) -> Partition {
        Partition {
            start,
            path: data_dir.join(PARTITIONS_DIRECTORY).join(format!("{}.duckdb", file_stem(start))),
        }
    }

    /// The name the partition is attached under, e.g. `p_2026_11_27`.
    pub fn alias(&self) -> String {
        format!("p_{}", file_stem(self.start).replace(['-', 'T'], "_"))
    }

    /// The partition's files: the database and its write-ahead log.
    pub fn files(&self) -> [PathBuf; 2] {
        let mut wal = self.path.clone().into_os_string();
        wal.push(".wal");
        [self.path.clone(), PathBuf::from(wal)]
    }
}

fn file_stem(start: i64) -> String {
    let at = DateTime::<Utc>::from_timestamp(start, 0).unwrap_or_default();
    if start.rem_euclid(SECONDS_PER_DAY) == 0 {
        at.format("%Y-%m-%d").to_string()
    } else {
        at.format("%Y-%m-%dT%H%M%S").to_string()
    }
}

fn parse_file_stem(stem: &str) -> Option<i64> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(stem, "%Y-%m-%d") {
        return Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp());
    }
    let at = chrono::NaiveDateTime::parse_from_str(stem, "%Y-%m-%dT%H%M%S").ok()?;
    Some(at.and_utc().timestamp())
}

/// The partitions present in `data_dir`, oldest first. Files that are not partitions are left alone.
pub fn list_partitions(data_dir: &Path) -> std::io::Result<Vec<Partition>> {
    let directory = data_dir.join(PARTITIONS_DIRECTORY);
    let mut partitions = Vec::new();
    let entries = match std::fs::read_dir(&directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(partitions),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "duckdb") {
            if let Some(start) = path.file_stem().and_then(|stem| stem.to_str()).and_then(parse_file_stem) {
                partitions.push(Partition { start, path });
            }
        }
    }
    partitions.sort();
    Ok(partitions)
}

/// Which partition a message stored by JetStream at `stored_at_us` goes to, given the start of
/// the newest partition: never an older one, so closed partitions stay closed.
pub(crate) fn partition_start_for(period: PartitionPeriod, stored_at_us: i64, newest_start: Option<i64>) -> i64 {
    let own = period.start_of(stored_at_us);
    newest_start.map_or(own, |newest| own.max(newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_partitions_are_named_by_their_utc_day() {
        let data_dir = Path::new("/data");
        let start = PartitionPeriod::DAY.start_of(1_764_247_000_000_000);
        let partition = Partition::new(data_dir, start);
        assert_eq!(partition.path, Path::new("/data/partitions/2025-11-27.duckdb"));
        assert_eq!(partition.alias(), "p_2025_11_27");
        assert_eq!(parse_file_stem("2025-11-27"), Some(start));
    }

    #[test]
    fn shorter_periods_carry_the_time_of_day() {
        let period = PartitionPeriod::new(Duration::from_secs(900)).unwrap();
        let start = period.start_of(1_764_247_000_000_000);
        let partition = Partition::new(Path::new("/d"), start);
        assert_eq!(partition.path, Path::new("/d/partitions/2025-11-27T123000.duckdb"));
        assert_eq!(parse_file_stem("2025-11-27T123000"), Some(start));
        assert_eq!(partition.alias(), "p_2025_11_27_123000");
    }

    #[test]
    fn a_message_never_goes_to_a_partition_older_than_the_newest() {
        let day = PartitionPeriod::DAY;
        let monday = 1_764_000_000_000_000;
        let tuesday_start = day.start_of(monday) + SECONDS_PER_DAY;
        assert_eq!(partition_start_for(day, monday, None), day.start_of(monday));
        assert_eq!(partition_start_for(day, monday, Some(tuesday_start)), tuesday_start);
        let wednesday = monday + 2 * SECONDS_PER_DAY * MICROS_PER_SECOND;
        assert_eq!(partition_start_for(day, wednesday, Some(tuesday_start)), day.start_of(wednesday));
    }

    #[test]
    fn periods_must_be_whole_seconds() {
        assert_eq!(PartitionPeriod::new(Duration::from_millis(1500)), Err(PeriodError::NotWholeSeconds));
        assert_eq!(PartitionPeriod::new(Duration::ZERO), Err(PeriodError::NotWholeSeconds));
        assert_eq!(PartitionPeriod::new(Duration::from_secs(86_400)), Ok(PartitionPeriod::DAY));
    }
}
