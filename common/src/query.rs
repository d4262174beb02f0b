//! Named queries the ingesters answer over NATS request/reply: request and reply types.
//!
//! Only these named, parameterised queries cross the network; never raw SQL.

use serde::{Deserialize, Serialize};

use crate::target::TargetName;

/// Name of the query returning average active sessions over time.
pub const ACTIVITY_SERIES_QUERY: &str = "activity_series";

/// The most buckets one series may have: enough for a wide chart, small enough for one reply.
pub const MAX_SERIES_BUCKETS: i64 = 5_000;

/// The dimension by which average active sessions are stacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityDimension {
    WaitEventType,
    WaitEvent,
}

impl ActivityDimension {
    pub const ALL: &'static [ActivityDimension] = &[ActivityDimension::WaitEventType, ActivityDimension::WaitEvent];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityDimension::WaitEventType => "wait_event_type",
            ActivityDimension::WaitEvent => "wait_event",
        }
    }

    pub fn from_name(name: &str) -> Option<ActivityDimension> {
        ActivityDimension::ALL.iter().copied().find(|dimension| dimension.as_str() == name)
    }

    /// What a person reads in a legend.
    pub fn label(self) -> &'static str {
        match self {
            ActivityDimension::WaitEventType => "wait event type",
            ActivityDimension::WaitEvent => "wait event",
        }
    }
}

/// Average active sessions of one target from `from_us` (inclusive) to `to_us` (exclusive) in
/// buckets of `step_us`, the first bucket starting at `from_us`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivitySeriesRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
    pub by: ActivityDimension,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesRequestError {
    #[error("from must be before to")]
    EmptyRange,
    #[error("step must be at least one second")]
    StepTooSmall,
    #[error("the range holds {buckets} steps; at most {MAX_SERIES_BUCKETS} are allowed, choose a larger step")]
    TooManyBuckets { buckets: i64 },
}

impl ActivitySeriesRequest {
    /// Checks the request before any work is done; the query API maps each error to its field.
    pub fn validate(&self) -> Result<(), SeriesRequestError> {
        if self.from_us >= self.to_us {
            return Err(SeriesRequestError::EmptyRange);
        }
        if self.step_us < 1_000_000 {
            return Err(SeriesRequestError::StepTooSmall);
        }
        let buckets = self.bucket_count();
        if buckets > MAX_SERIES_BUCKETS {
            return Err(SeriesRequestError::TooManyBuckets { buckets });
        }
        Ok(())
    }

    /// How many buckets the range spans; the last one may be partial.
    pub fn bucket_count(&self) -> i64 {
        (self.to_us - self.from_us + self.step_us - 1) / self.step_us
    }
}

/// One stacked series: a dimension value (for example wait event type `Lock`) and its
/// average active sessions per bucket; `None` where the bucket has no sample at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivitySeries {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// The reply to [`ActivitySeriesRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivitySeriesReply {
    pub target: TargetName,
    pub by: ActivityDimension,
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
    /// Start of each bucket, microseconds since the Unix epoch, UTC.
    pub bucket_starts_us: Vec<i64>,
    /// How many samples the collector took in each bucket (0: no data, for example an outage).
    pub samples: Vec<u32>,
    /// Series ordered by their total, biggest first.
    pub series: Vec<ActivitySeries>,
}

/// What an ingester sends back for any named query: the answer or why there is none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryReply<T> {
    Ok(T),
    /// The request was wrong; the text is safe to show to the user.
    Invalid(String),
    /// The ingester failed; details are in its log.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(from_us: i64, to_us: i64, step_us: i64) -> ActivitySeriesRequest {
        ActivitySeriesRequest {
            target: "t".parse().unwrap(),
            from_us,
            to_us,
            step_us,
            by: ActivityDimension::WaitEvent,
        }
    }

    #[test]
    fn bucket_count_rounds_up_a_partial_last_bucket() {
        assert_eq!(request(0, 10_000_000, 1_000_000).bucket_count(), 10);
        assert_eq!(request(0, 10_500_000, 1_000_000).bucket_count(), 11);
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(request(5, 5, 1_000_000).validate(), Err(SeriesRequestError::EmptyRange));
        assert_eq!(request(0, 10, 999_999).validate(), Err(SeriesRequestError::StepTooSmall));
        assert!(matches!(
            request(0, 86_400_000_000, 1_000_000).validate(),
            Err(SeriesRequestError::TooManyBuckets { buckets: 86_400 })
        ));
        assert_eq!(request(0, 3_600_000_000, 12_000_000).validate(), Ok(()));
    }

    #[test]
    fn dimension_names_round_trip() {
        for dimension in ActivityDimension::ALL {
            assert_eq!(ActivityDimension::from_name(dimension.as_str()), Some(*dimension));
        }
        assert_eq!(ActivityDimension::from_name("query"), None);
    }
}
