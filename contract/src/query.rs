//! Named queries the ingesters answer over NATS request/reply: request and reply types.
//!
//! Only these named, parameterised queries cross the network; never raw SQL.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::target::TargetName;

/// Name of the query returning average active sessions over time.
pub const ACTIVITY_SERIES_QUERY: &str = "activity_series";

/// The most buckets one series may have: enough for a wide chart, small enough for one reply.
pub const MAX_SERIES_BUCKETS: i64 = 5_000;

/// The dimension by which average active sessions are stacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityDimension {
    WaitEventType,
    WaitEvent,
    QueryId,
    Database,
    User,
    Application,
    ClientAddress,
    BackendType,
}

impl ActivityDimension {
    pub const ALL: &'static [ActivityDimension] = &[
        ActivityDimension::WaitEventType,
        ActivityDimension::WaitEvent,
        ActivityDimension::QueryId,
        ActivityDimension::Database,
        ActivityDimension::User,
        ActivityDimension::Application,
        ActivityDimension::ClientAddress,
        ActivityDimension::BackendType,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityDimension::WaitEventType => "wait_event_type",
            ActivityDimension::WaitEvent => "wait_event",
            ActivityDimension::QueryId => "query_id",
            ActivityDimension::Database => "database",
            ActivityDimension::User => "user",
            ActivityDimension::Application => "application",
            ActivityDimension::ClientAddress => "client_address",
            ActivityDimension::BackendType => "backend_type",
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
            ActivityDimension::QueryId => "query",
            ActivityDimension::Database => "database",
            ActivityDimension::User => "user",
            ActivityDimension::Application => "application",
            ActivityDimension::ClientAddress => "client address",
            ActivityDimension::BackendType => "backend type",
        }
    }
}

/// How many series a chart stacks when the request does not say: the rest is summed in one
/// "other" series.
pub const DEFAULT_TOP_SERIES: u32 = 20;
/// The most series a chart may stack; beyond a few dozen, bands are too thin to read anyway.
pub const MAX_TOP_SERIES: u32 = 100;

fn default_top_series() -> u32 {
    DEFAULT_TOP_SERIES
}

/// Average active sessions of one target from `from_us` (inclusive) to `to_us` (exclusive) in
/// buckets of `step_us`, the first bucket starting at `from_us`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActivitySeriesRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
    pub by: ActivityDimension,
    /// How many series to keep, biggest first; the others are summed into one "other" series,
    /// so the stack still adds up to the average active sessions.
    #[serde(default = "default_top_series")]
    pub top: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesRequestError {
    #[error("from must be before to")]
    EmptyRange,
    #[error("from and to must be at most {MAX_WINDOW_DAYS} days apart")]
    WindowTooLong,
    #[error("step must be at least one second")]
    StepTooSmall,
    #[error("the range holds {buckets} steps; at most {MAX_SERIES_BUCKETS} are allowed, choose a larger step")]
    TooManyBuckets { buckets: i64 },
    #[error("limit must be between 1 and {MAX_ROWS}")]
    BadLimit,
    #[error("{0} must not be empty")]
    EmptyField(&'static str),
    #[error("top must be between 1 and {MAX_TOP_SERIES}")]
    BadTop,
}

impl ActivitySeriesRequest {
    /// Checks the request before any work is done; the query API maps each error to its field.
    pub fn validate(&self) -> Result<(), SeriesRequestError> {
        if !(1..=MAX_TOP_SERIES).contains(&self.top) {
            return Err(SeriesRequestError::BadTop);
        }
        validate_step(self.from_us, self.to_us, self.step_us)
    }

    /// How many buckets the range spans; the last one may be partial.
    pub fn bucket_count(&self) -> i64 {
        (self.to_us - self.from_us + self.step_us - 1) / self.step_us
    }
}

/// One stacked series: a dimension value (for example wait event type `Lock`) and its
/// average active sessions per bucket; `None` where the bucket has no sample at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActivitySeries {
    pub name: String,
    pub values: Vec<Option<f64>>,
    /// Set on the last series only when there were more series than the request's `top`: the
    /// sum of the others, and how many they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_series: Option<u32>,
    /// Stacked by query id: the start of the statement's text, when pgmon has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// The reply to [`ActivitySeriesRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Series ordered by their total, biggest first; an "other" series (see
    /// [`ActivitySeries::other_series`]) comes last.
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
    /// The answer is larger than a reply may carry ([`MAX_REPLY_BYTES`]); the text says how
    /// large and what to narrow, and is safe to show to the user.
    TooLarge(String),
}

/// The most bytes a named-query reply may carry, all its messages together: it bounds the
/// memory of both sides and the time a reply holds the connection.
pub const MAX_REPLY_BYTES: usize = 32 * 1024 * 1024;

/// Header of a named-query request: how many milliseconds the asker will wait for the answer.
/// The ingester stops the query (DuckDB's interrupt) when that time is up, so work nobody
/// waits for does not hold a reader.
pub const QUERY_BUDGET_HEADER: &str = "Pgmon-Query-Budget-Ms";

/// The longest a named query may run, whatever its asker says.
pub const MAX_QUERY_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// Header of each message of a reply larger than one NATS message: `<index>/<count>`, the
/// index from 0. A reply that fits one message has no such header.
pub const REPLY_PART_HEADER: &str = "Pgmon-Reply-Part";

/// The messages carrying an encoded reply, each at most `message_bytes` long, with the value
/// of its [`REPLY_PART_HEADER`] when there is more than one.
pub fn reply_messages(payload: Vec<u8>, message_bytes: usize) -> Vec<(Option<String>, Vec<u8>)> {
    if payload.len() <= message_bytes {
        return vec![(None, payload)];
    }
    let chunks: Vec<&[u8]> = payload.chunks(message_bytes.max(SMALLEST_REPLY_PART_BYTES)).collect();
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| (Some(format!("{index}/{count}")), chunk.to_vec()))
        .collect()
}

/// Why the messages of a reply cannot be put together.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyPartError {
    #[error("reply part header {0:?} is not INDEX/COUNT")]
    BadHeader(String),
    #[error("reply part {index} of {count} does not fit the reply's other parts")]
    Inconsistent { index: usize, count: usize },
    #[error("a reply of {count} parts is larger than {MAX_REPLY_BYTES} bytes")]
    TooManyParts { count: usize },
    #[error("the reply's parts carry more than {MAX_REPLY_BYTES} bytes")]
    TooLarge,
}

/// The fewest bytes a part of a reply carries (all but the last): bounds how many parts a
/// reply may claim to have.
const SMALLEST_REPLY_PART_BYTES: usize = 1024;

/// The most parts a reply may have.
pub const MAX_REPLY_PARTS: usize = MAX_REPLY_BYTES / SMALLEST_REPLY_PART_BYTES + 1;

/// Collects the messages of one reply until all have arrived.
#[derive(Debug, Default)]
pub struct ReplyAssembly {
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
}

impl ReplyAssembly {
    /// Takes one message (its [`REPLY_PART_HEADER`] value, if any, and payload); returns the
    /// whole reply once every part has arrived.
    pub fn accept(&mut self, part_header: Option<&str>, payload: &[u8]) -> Result<Option<Vec<u8>>, ReplyPartError> {
        let Some(header) = part_header else {
            return Ok(Some(payload.to_vec()));
        };
        let bad_header = || ReplyPartError::BadHeader(header.to_owned());
        let (index, count) = header.split_once('/').ok_or_else(bad_header)?;
        let index: usize = index.parse().map_err(|_| bad_header())?;
        let count: usize = count.parse().map_err(|_| bad_header())?;
        if count > MAX_REPLY_PARTS {
            return Err(ReplyPartError::TooManyParts { count });
        }
        self.bytes += payload.len();
        if self.bytes > MAX_REPLY_BYTES + SMALLEST_REPLY_PART_BYTES {
            return Err(ReplyPartError::TooLarge);
        }
        if self.parts.is_empty() {
            self.parts = vec![None; count];
        }
        let expected_count = self.parts.len();
        let slot = self
            .parts
            .get_mut(index)
            .filter(|slot| slot.is_none() && count == expected_count)
            .ok_or(ReplyPartError::Inconsistent { index, count })?;
        *slot = Some(payload.to_vec());
        self.received += 1;
        if self.received < self.parts.len() {
            return Ok(None);
        }
        Ok(Some(self.parts.drain(..).flatten().flatten().collect()))
    }

    /// How many parts have arrived, and how many the reply has (0 before the first).
    pub fn progress(&self) -> (usize, usize) {
        (self.received, self.parts.len())
    }
}

/// A named query: its name on the wire (`pgmon.query.<name>.<target>`), its reply, and the
/// checks both sides run before any work is done.
pub trait NamedQuery: Serialize + DeserializeOwned + Send + 'static {
    const NAME: &'static str;
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    fn target(&self) -> &TargetName;
    fn validate(&self) -> Result<(), SeriesRequestError>;
}

/// The most rows a list reply may hold.
pub const MAX_ROWS: u32 = 10_000;

/// The longest window a request may ask about: every request's work is bounded, whether it
/// gives a range or two instants.
pub const MAX_WINDOW_DAYS: i64 = 400;

fn validate_range(from_us: i64, to_us: i64) -> Result<(), SeriesRequestError> {
    if from_us >= to_us {
        return Err(SeriesRequestError::EmptyRange);
    }
    if to_us.saturating_sub(from_us) > MAX_WINDOW_DAYS * 86_400_000_000 {
        return Err(SeriesRequestError::WindowTooLong);
    }
    Ok(())
}

fn validate_limit(limit: u32) -> Result<(), SeriesRequestError> {
    if limit == 0 || limit > MAX_ROWS {
        return Err(SeriesRequestError::BadLimit);
    }
    Ok(())
}

fn validate_step(from_us: i64, to_us: i64, step_us: i64) -> Result<(), SeriesRequestError> {
    validate_range(from_us, to_us)?;
    if step_us < 1_000_000 {
        return Err(SeriesRequestError::StepTooSmall);
    }
    let buckets = (to_us - from_us + step_us - 1) / step_us;
    if buckets > MAX_SERIES_BUCKETS {
        return Err(SeriesRequestError::TooManyBuckets { buckets });
    }
    Ok(())
}

impl NamedQuery for ActivitySeriesRequest {
    const NAME: &'static str = ACTIVITY_SERIES_QUERY;
    type Reply = ActivitySeriesReply;
    fn target(&self) -> &TargetName {
        &self.target
    }
    fn validate(&self) -> Result<(), SeriesRequestError> {
        ActivitySeriesRequest::validate(self)
    }
}

/// Implements [`NamedQuery`] for a request with `target`, `from_us`, `to_us` and the given checks.
macro_rules! named_query {
    ($request:ty, $name:literal, $reply:ty, |$this:ident| $checks:expr) => {
        impl NamedQuery for $request {
            const NAME: &'static str = $name;
            type Reply = $reply;
            fn target(&self) -> &TargetName {
                &self.target
            }
            fn validate(&self) -> Result<(), SeriesRequestError> {
                let $this = self;
                $checks
            }
        }
    };
}

/// The sessions sampled in a time slice, busiest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionsRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
    pub limit: u32,
}

/// One backend (pid and backend start) over a slice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionSummary {
    pub pid: i32,
    pub backend_start_us: Option<i64>,
    pub database: Option<String>,
    pub user_name: Option<String>,
    pub application: Option<String>,
    pub client_addr: Option<String>,
    pub backend_type: Option<String>,
    pub samples: i64,
    /// Samples in which it was active: its share of the slice's load.
    pub active_samples: i64,
    /// The wait event it was seen in most while active (`CPU` for none).
    pub top_wait_event: Option<String>,
    pub last_state: Option<String>,
    pub last_query_id: Option<i64>,
    pub last_query: Option<String>,
}

named_query!(SessionsRequest, "sessions", Vec<SessionSummary>, |request| {
    validate_range(request.from_us, request.to_us)?;
    validate_limit(request.limit)
});

/// One backend's samples over a range; `backend_start_us` tells apart a reused pid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionHistoryRequest {
    pub target: TargetName,
    pub pid: i32,
    pub backend_start_us: Option<i64>,
    pub from_us: i64,
    pub to_us: i64,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionSample {
    pub collected_at_us: i64,
    pub state: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub query_id: Option<i64>,
    pub query: Option<String>,
    pub xact_start_us: Option<i64>,
    pub query_start_us: Option<i64>,
    pub blocking_pids: Vec<i32>,
}

named_query!(SessionHistoryRequest, "session_history", Vec<SessionSample>, |request| {
    validate_range(request.from_us, request.to_us)?;
    validate_limit(request.limit)
});

/// What top statements are ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatementOrder {
    TotalTime,
    MeanTime,
    Calls,
    Rows,
    SharedBlocksRead,
    TempBlocks,
}

/// The statements that did most over a range, from deltas that stay correct across resets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopStatementsRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
    pub order_by: StatementOrder,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementTotals {
    pub query_id: i64,
    pub database: String,
    pub user_name: String,
    pub query: Option<String>,
    pub calls: i64,
    pub total_exec_time_ms: f64,
    pub mean_exec_time_ms: Option<f64>,
    pub rows: i64,
    pub shared_blks_hit: i64,
    pub shared_blks_read: i64,
    pub temp_blks_read: i64,
    pub temp_blks_written: i64,
}

named_query!(TopStatementsRequest, "top_statements", Vec<StatementTotals>, |request| {
    validate_range(request.from_us, request.to_us)?;
    validate_limit(request.limit)
});

/// Statements whose mean time over the recent window (`recent_from_us` to `to_us`) is at least
/// `factor` times their own mean over the baseline before it (`baseline_from_us` to
/// `recent_from_us`), with at least `min_calls` calls in each: what a regression alert watches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementRegressionsRequest {
    pub target: TargetName,
    pub baseline_from_us: i64,
    pub recent_from_us: i64,
    pub to_us: i64,
    pub min_calls: i64,
    pub factor: f64,
    pub limit: u32,
}

/// One statement (query id, database and user) slower than its baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementRegression {
    pub query_id: i64,
    pub database: String,
    pub user_name: String,
    pub query: Option<String>,
    pub baseline_calls: i64,
    pub baseline_mean_ms: f64,
    pub recent_calls: i64,
    pub recent_mean_ms: f64,
    /// `recent_mean_ms / baseline_mean_ms`.
    pub ratio: f64,
}

named_query!(
    StatementRegressionsRequest,
    "statement_regressions",
    Vec<StatementRegression>,
    |request| {
        validate_range(request.baseline_from_us, request.to_us)?;
        if !(request.baseline_from_us < request.recent_from_us && request.recent_from_us < request.to_us) {
            return Err(SeriesRequestError::EmptyRange);
        }
        if !(request.factor.is_finite() && request.factor > 0.0) || request.min_calls < 1 {
            return Err(SeriesRequestError::BadLimit);
        }
        validate_limit(request.limit)
    }
);

/// One statement (query id) over a range, in buckets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementHistoryRequest {
    pub target: TargetName,
    pub query_id: i64,
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementHistoryReply {
    pub query: Option<String>,
    pub points: Vec<StatementPoint>,
}

/// What the statement did in one bucket (all databases and users together).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementPoint {
    pub bucket_start_us: i64,
    pub calls: i64,
    pub total_exec_time_ms: f64,
    pub mean_exec_time_ms: Option<f64>,
    pub rows: i64,
    pub shared_blks_read: i64,
}

named_query!(StatementHistoryRequest, "statement_history", StatementHistoryReply, |request| {
    validate_step(request.from_us, request.to_us, request.step_us)
});

/// What an object list is ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectOrder {
    TotalBytes,
    TableBytes,
    IndexBytes,
    Name,
}

/// The latest complete objects snapshot of a target, filtered, ordered and paged: the object
/// browser, and "top N" (ordered by total bytes with limit N).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectsRequest {
    pub target: TargetName,
    pub database: Option<String>,
    pub schema_name: Option<String>,
    /// `table`, `index`, `toast`, `materialized view`, `partitioned table`, ...
    pub kind: Option<String>,
    /// Case-insensitive part of the name.
    pub name_contains: Option<String>,
    pub order_by: ObjectOrder,
    pub offset: u32,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectsReply {
    /// When the snapshot listed was taken; `None` when the target has none yet.
    pub collected_at_us: Option<i64>,
    /// Objects matching the filters, before paging.
    pub total: i64,
    /// Total bytes of the matching tables and materialized views, their indexes and TOAST
    /// included: with no filter, the size of the target's data.
    #[serde(default)]
    pub bytes_of_tables: i64,
    /// How many of the matching objects could not be measured in that round (locked, or their
    /// database not read): their sizes are the last measured ones.
    #[serde(default)]
    pub stale_objects: i64,
    /// Databases whose objects could not be read in that round, and why.
    #[serde(default)]
    pub skipped_databases: Vec<SkippedDatabaseReply>,
    pub objects: Vec<ObjectSize>,
}

/// A database whose objects could not be read in an objects round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkippedDatabaseReply {
    pub database: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectSize {
    pub database: String,
    pub schema_name: String,
    pub name: String,
    pub kind: String,
    pub parent: Option<String>,
    pub total_bytes: i64,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub toast_bytes: i64,
    pub row_estimate: Option<i64>,
    /// Why the sizes are not from this round (the relation was locked, its database could not
    /// be read); they are then the last measured ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_stale_reason: Option<String>,
    /// When stale sizes were measured; absent for sizes of this round, and for an object never
    /// measured yet (sizes 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_measured_at_us: Option<i64>,
}

named_query!(ObjectsRequest, "objects", ObjectsReply, |request| validate_limit(request.limit));

/// Tables (or whole databases) that will reach `reaches_bytes` within `within_us` at the rate
/// they grew over the range (least squares), or have reached it: what a growth alert watches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SizeForecastsRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
    pub reaches_bytes: i64,
    pub within_us: i64,
    /// Whole databases (the sum of their tables and materialized views) instead of tables.
    pub databases: bool,
    pub limit: u32,
}

/// A table (schema and name given) or a database heading for a size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SizeForecast {
    pub database: String,
    pub schema_name: Option<String>,
    pub name: Option<String>,
    pub latest_bytes: i64,
    pub growth_bytes_per_day: f64,
    /// 0 when the size is reached already.
    pub days_to_reach: f64,
}

named_query!(SizeForecastsRequest, "size_forecasts", Vec<SizeForecast>, |request| {
    validate_range(request.from_us, request.to_us)?;
    if request.reaches_bytes < 1 || request.within_us < 1 {
        return Err(SeriesRequestError::BadLimit);
    }
    validate_limit(request.limit)
});

/// One object's sizes over a range, and its growth per day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectGrowthRequest {
    pub target: TargetName,
    pub database: String,
    pub schema_name: String,
    pub name: String,
    pub from_us: i64,
    pub to_us: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectGrowthReply {
    pub points: Vec<ObjectSizePoint>,
    /// Least-squares slope of total bytes over the range, in bytes per day; `None` with fewer
    /// than two samples.
    pub growth_bytes_per_day: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectSizePoint {
    pub collected_at_us: i64,
    pub total_bytes: i64,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub toast_bytes: i64,
}

named_query!(ObjectGrowthRequest, "object_growth", ObjectGrowthReply, |request| {
    validate_range(request.from_us, request.to_us)?;
    if request.name.is_empty() {
        return Err(SeriesRequestError::EmptyField("name"));
    }
    Ok(())
});

/// Lock waits over a range: how many sessions waited per bucket, and who they waited for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LockHistoryRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LockHistoryReply {
    /// Per bucket with lock samples: the most sessions waiting at once.
    pub buckets: Vec<LockBucket>,
    /// Sessions others waited for, most waited-for first.
    pub blockers: Vec<BlockerSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LockBucket {
    pub bucket_start_us: i64,
    pub max_waiting_sessions: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockerSummary {
    pub pid: i32,
    /// Sessions waiting for it, summed over samples.
    pub waiting_samples: i64,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
    pub query: Option<String>,
}

named_query!(LockHistoryRequest, "lock_history", LockHistoryReply, |request| {
    validate_step(request.from_us, request.to_us, request.step_us)
});

/// The lock rows of the newest lock sample at or before `at_us` (within a minute): the input of
/// [`crate::event::blocking_tree`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockingRequest {
    pub target: TargetName,
    pub at_us: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockingReply {
    pub collected_at_us: Option<i64>,
    pub locks: Vec<crate::event::LockRow>,
}

named_query!(BlockingRequest, "blocking", BlockingReply, |_request| Ok(()));

/// Transaction and multixact IDs wrap around after 2^31: a server whose oldest unfrozen ID is
/// that old stops assigning new ones. Ages are shown as a share of it.
pub const WRAPAROUND_HORIZON: i64 = 1 << 31;

/// `age` as a percentage of the wraparound horizon.
pub fn wraparound_percent(age: i64) -> f64 {
    age as f64 * 100.0 / WRAPAROUND_HORIZON as f64
}

/// The newest vacuum and wraparound picture of a target: the frozen-ID ages of its databases
/// and, from its newest complete tables round, the tables that need attention most.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VacuumHealthRequest {
    pub target: TargetName,
    /// Tables per list.
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VacuumHealthReply {
    /// When the database ages were collected; absent before the first database snapshot that
    /// has them.
    pub databases_collected_at_us: Option<i64>,
    /// When the tables were collected; absent before the first complete tables round.
    pub tables_collected_at_us: Option<i64>,
    /// The server's `autovacuum_freeze_max_age`, when reported: autovacuum freezes a table
    /// whose frozen-ID age passes it, even where autovacuum is off.
    pub freeze_max_age: Option<i64>,
    /// The server's `autovacuum_multixact_freeze_max_age`, when reported.
    pub multixact_freeze_max_age: Option<i64>,
    /// Every database, oldest frozen ID first.
    pub databases: Vec<DatabaseAge>,
    /// The tables with the oldest frozen IDs, oldest first.
    pub oldest_tables: Vec<TableHealth>,
    /// The tables with the most dead tuples, most first.
    pub most_dead_tuples: Vec<TableHealth>,
    /// Tables whose dead tuples passed the threshold at which autovacuum vacuums them, furthest
    /// past it first: autovacuum is behind, off for them, or blocked.
    pub vacuum_overdue: Vec<TableHealth>,
    /// How many tables are past their vacuum threshold in all (the list is limited).
    pub vacuum_overdue_count: i64,
}

/// The frozen-ID ages of one database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabaseAge {
    pub database: String,
    /// `age(datfrozenxid)`.
    pub frozen_xid_age: i64,
    /// `mxid_age(datminmxid)`.
    pub frozen_multixact_age: i64,
    /// The older of the two ages as a percentage of the wraparound horizon (2^31).
    pub wraparound_percent: f64,
}

/// One table in a health list: its tuples, frozen-ID ages and when autovacuum would vacuum it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableHealth {
    pub database: String,
    pub schema_name: String,
    pub name: String,
    pub kind: String,
    pub live_tuples: i64,
    pub dead_tuples: i64,
    pub frozen_xid_age: i64,
    pub frozen_multixact_age: i64,
    /// The older of the two ages as a percentage of the wraparound horizon (2^31).
    pub wraparound_percent: f64,
    /// The frozen-ID age at which autovacuum freezes it (its own setting or the server's).
    pub freeze_max_age: i64,
    pub autovacuum_enabled: bool,
    /// The dead tuples past which autovacuum vacuums it: threshold + scale factor × rows,
    /// capped by `autovacuum_vacuum_max_threshold` (PostgreSQL 18+).
    pub vacuum_threshold_tuples: i64,
    pub last_vacuum_us: Option<i64>,
    pub last_autovacuum_us: Option<i64>,
    pub autovacuum_count: i64,
}

named_query!(VacuumHealthRequest, "vacuum_health", VacuumHealthReply, |request| validate_limit(
    request.limit
));

/// Replication lag per standby (and, on a standby, its own replay) and WAL retained per slot,
/// per bucket (the largest value sampled in it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicationSeriesRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicationSeriesReply {
    pub bucket_starts_us: Vec<i64>,
    /// At most [`MAX_REPLICATION_SERIES`] links, then as many slots.
    pub links: Vec<LagSeries>,
    pub slots: Vec<RetainedWalSeries>,
}

/// How many links and how many slots a replication series reply holds at most.
pub const MAX_REPLICATION_SERIES: usize = 100;

/// One replication link's lag per bucket; absent where it was not sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LagSeries {
    /// `standby` or `receiver`.
    pub role: String,
    pub name: String,
    pub replay_lag_bytes: Vec<Option<i64>>,
    pub replay_lag_ms: Vec<Option<f64>>,
}

/// One slot's retained WAL per bucket; absent where it was not sampled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetainedWalSeries {
    pub slot_name: String,
    pub retained_bytes: Vec<Option<i64>>,
}

named_query!(ReplicationSeriesRequest, "replication_series", ReplicationSeriesReply, |request| {
    validate_step(request.from_us, request.to_us, request.step_us)
});

/// What changed on a target over a range: restarts, version, settings and extensions, from
/// consecutive settings snapshots (the first one in the range is compared with the one before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangesRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangesReply {
    /// Oldest first; at most [`MAX_CHANGES`].
    pub changes: Vec<Change>,
    /// More changes happened in the range than the reply holds.
    pub truncated: bool,
}

/// How many changes a reply holds at most.
pub const MAX_CHANGES: usize = 1_000;

/// One change, seen when the first snapshot after it was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    pub at_us: i64,
    /// `server` (start_time: a restart; version: an upgrade), `setting` or `extension`.
    pub category: String,
    pub name: String,
    /// Absent for something new: a setting that had its default, an extension created.
    pub old_value: Option<String>,
    /// Absent for something gone: a setting back to its default, an extension dropped.
    pub new_value: Option<String>,
    /// The setting now waits for a restart (its new value is in the configuration only).
    pub pending_restart: bool,
}

named_query!(ChangesRequest, "changes", ChangesReply, |request| validate_range(
    request.from_us,
    request.to_us
));

/// Checkpoints, WAL and buffer writes per bucket (from counter deltas; a counter that went
/// down after a reset starts over), and I/O by backend type over the whole range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalSeriesRequest {
    pub target: TargetName,
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalSeriesReply {
    /// Buckets with samples, oldest first.
    pub points: Vec<WalPoint>,
    /// `pg_stat_io` (PostgreSQL 16+) summed over the range per backend type, most I/O first.
    pub io: Vec<IoTotals>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalPoint {
    pub bucket_start_us: i64,
    /// Checkpoints started in the bucket by `checkpoint_timeout`, and requested.
    pub checkpoints_timed: i64,
    pub checkpoints_requested: i64,
    /// WAL written (from `pg_stat_wal`, else from the WAL position).
    pub wal_bytes_per_second: Option<f64>,
    /// Buffers written by checkpoints, the background writer and backends (before 17).
    pub checkpoint_buffers_per_second: Option<f64>,
    pub bgwriter_buffers_per_second: Option<f64>,
    pub backend_buffers_per_second: Option<f64>,
    pub archive_failures: i64,
}

/// I/O of one backend type over a range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IoTotals {
    pub backend_type: String,
    pub reads: i64,
    pub read_bytes: i64,
    pub writes: i64,
    pub write_bytes: i64,
    pub extends: i64,
    pub hits: i64,
    pub fsyncs: i64,
}

named_query!(WalSeriesRequest, "wal_series", WalSeriesReply, |request| {
    validate_step(request.from_us, request.to_us, request.step_us)
});

/// Database statistics per bucket, from counter deltas (a counter that went down, after a
/// statistics reset, starts a new run instead of counting negative).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabaseSeriesRequest {
    pub target: TargetName,
    /// One database, or all together.
    pub database: Option<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabasePoint {
    pub bucket_start_us: i64,
    pub transactions_per_second: Option<f64>,
    pub commits_per_second: Option<f64>,
    pub rollbacks_per_second: Option<f64>,
    /// Shared-buffer hits out of all block requests, 0..1.
    pub cache_hit_ratio: Option<f64>,
    pub temp_bytes_per_second: Option<f64>,
    pub deadlocks: i64,
}

named_query!(DatabaseSeriesRequest, "database_series", Vec<DatabasePoint>, |request| {
    validate_step(request.from_us, request.to_us, request.step_us)
});

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
            top: DEFAULT_TOP_SERIES,
        }
    }

    #[test]
    fn a_large_reply_is_sent_in_parts_and_put_back_together_in_any_order() {
        let payload: Vec<u8> = (0..10_000u32).flat_map(|n| n.to_le_bytes()).collect();
        let messages = reply_messages(payload.clone(), 3_000);
        assert_eq!(messages.len(), 14);
        assert_eq!(messages[0].0.as_deref(), Some("0/14"));
        assert!(messages.iter().all(|(_, chunk)| chunk.len() <= 3_000));
        let mut assembly = ReplyAssembly::default();
        let mut whole = None;
        for (header, chunk) in messages.iter().rev() {
            assert_eq!(whole, None);
            whole = assembly.accept(header.as_deref(), chunk).unwrap();
        }
        assert_eq!(whole, Some(payload));
        assert_eq!(reply_messages(vec![1, 2, 3], 3), vec![(None, vec![1, 2, 3])]);
        assert_eq!(ReplyAssembly::default().accept(None, b"x").unwrap(), Some(b"x".to_vec()));
    }

    #[test]
    fn reply_parts_that_do_not_fit_together_are_errors() {
        let mut assembly = ReplyAssembly::default();
        assert_eq!(assembly.accept(Some("0/3"), b"a").unwrap(), None);
        assert_eq!(
            assembly.accept(Some("0/3"), b"a"),
            Err(ReplyPartError::Inconsistent { index: 0, count: 3 })
        );
        assert_eq!(
            assembly.accept(Some("1/4"), b"b"),
            Err(ReplyPartError::Inconsistent { index: 1, count: 4 })
        );
        assert_eq!(
            assembly.accept(Some("7/3"), b"b"),
            Err(ReplyPartError::Inconsistent { index: 7, count: 3 })
        );
        assert_eq!(assembly.progress(), (1, 3));
        assert!(matches!(
            ReplyAssembly::default().accept(Some("x"), b""),
            Err(ReplyPartError::BadHeader(_))
        ));
        assert!(matches!(
            ReplyAssembly::default().accept(Some("0/99999999999"), b""),
            Err(ReplyPartError::TooManyParts { .. })
        ));
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
        assert_eq!(
            ActivityDimension::from_name("client_address"),
            Some(ActivityDimension::ClientAddress)
        );
    }
}
