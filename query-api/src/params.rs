//! The parameters of history requests, one struct per concern, shared by the pages and the
//! API: read from the query string by [`crate::extract::Params`], checked by their methods
//! (each error names its field), and documented in the OpenAPI from the same struct.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgmon_contract::query::{
    ActivityDimension, ActivitySeriesRequest, ObjectOrder, StatementOrder, DEFAULT_TOP_SERIES, MAX_ROWS, MAX_SERIES_BUCKETS, MAX_TOP_SERIES,
};
use pgmon_contract::target::TargetName;
use pgmon_ui::components::RANGES;
use pgmon_ui::objects::ObjectFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::AppError;

/// The range shown when a request gives neither `from` nor `range`.
pub const DEFAULT_RANGE: Duration = Duration::from_secs(3600);
/// The longest window a request may ask for.
const MAX_RANGE: Duration = Duration::from_secs(pgmon_contract::query::MAX_WINDOW_DAYS as u64 * 86400);
/// About how many buckets an automatic step aims for: one per couple of chart pixels.
const TARGET_BUCKETS: u64 = 300;
/// Steps an automatic choice picks from, in seconds: round numbers people read easily.
const NICE_STEPS_SECONDS: &[u64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

pub fn target_name(text: &str) -> Result<TargetName, AppError> {
    text.parse()
        .map_err(|e: pgmon_contract::target::TargetNameError| AppError::bad_request("target", e.to_string()))
}

/// A point in time: RFC 3339 (`2026-11-27T10:00:00Z`) or Unix seconds (`1764237600`).
fn instant(field: &'static str, text: &str) -> Result<i64, AppError> {
    if let Ok(seconds) = text.parse::<f64>() {
        if (0.0..1e11).contains(&seconds) {
            return Ok((seconds * 1e6) as i64);
        }
    }
    // A browser's datetime-local input sends `2026-11-27T10:00` (no seconds, no zone: UTC here).
    let with_seconds = if text.len() == 16 { format!("{text}:00") } else { text.to_owned() };
    let time = humantime::parse_rfc3339_weak(&with_seconds).map_err(|_| {
        AppError::bad_request(
            field,
            format!("{field} must be an RFC 3339 time (2026-11-27T10:00:00Z) or Unix seconds"),
        )
    })?;
    Ok(unix_micros(time))
}

fn duration(field: &'static str, text: &str) -> Result<Duration, AppError> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|_| AppError::bad_request(field, format!("{field} must be a duration such as 30s, 15m, 1h or 7d")))
}

fn unix_micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map(|since| since.as_micros() as i64).unwrap_or(0)
}

/// The smallest round step that keeps a range near [`TARGET_BUCKETS`] buckets.
pub fn automatic_step(range: Duration) -> Duration {
    let wanted = range.as_secs().div_ceil(TARGET_BUCKETS).max(1);
    let seconds = NICE_STEPS_SECONDS
        .iter()
        .copied()
        .find(|step| *step >= wanted)
        .unwrap_or_else(|| wanted.div_ceil(86400) * 86400);
    Duration::from_secs(seconds)
}

/// A time window of a history request, in microseconds since the epoch, with its step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
}

/// A parameter's text, when given and not blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

/// A whole number from 1 to [`MAX_ROWS`], or `default` when absent.
fn count(value: &Option<String>, field: &'static str, default: u32) -> Result<u32, AppError> {
    match given(value) {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|value| (1..=MAX_ROWS).contains(value))
            .ok_or_else(|| AppError::bad_request(field, format!("{field} must be a whole number from 1 to {MAX_ROWS}"))),
    }
}

/// An optional integer.
fn integer<T: std::str::FromStr>(value: &Option<String>, field: &'static str) -> Result<Option<T>, AppError> {
    given(value)
        .map(|text| {
            text.parse()
                .map_err(|_| AppError::bad_request(field, format!("{field} must be a whole number")))
        })
        .transpose()
}

/// A required non-empty text.
fn required(value: &Option<String>, field: &'static str) -> Result<String, AppError> {
    given(value)
        .map(str::to_owned)
        .ok_or_else(|| AppError::bad_request(field, format!("{field} is required")))
}

/// One of a fixed set of values, or `default` when absent; the error lists the allowed ones.
fn choice<T: Copy>(value: &Option<String>, field: &'static str, choices: &[(&str, T)], default: T) -> Result<T, AppError> {
    match given(value) {
        None => Ok(default),
        Some(given) => choices
            .iter()
            .find(|(name, _)| *name == given)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let allowed: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                AppError::bad_request(field, format!("{field} must be one of {}", allowed.join(", ")))
            }),
    }
}

/// The query-string name of a choice.
pub fn choice_name<T: Copy + PartialEq>(choices: &[(&'static str, T)], chosen: T) -> &'static str {
    choices.iter().find(|(_, value)| *value == chosen).map_or("", |(name, _)| name)
}

/// The orders of top statements by their query-string name.
pub const STATEMENT_ORDER_CHOICES: &[(&str, StatementOrder)] = &[
    ("total_time", StatementOrder::TotalTime),
    ("mean_time", StatementOrder::MeanTime),
    ("calls", StatementOrder::Calls),
    ("rows", StatementOrder::Rows),
    ("shared_blocks_read", StatementOrder::SharedBlocksRead),
    ("temp_blocks", StatementOrder::TempBlocks),
];

/// The orders of the object list by their query-string name.
pub const OBJECT_ORDER_CHOICES: &[(&str, ObjectOrder)] = &[
    ("total_bytes", ObjectOrder::TotalBytes),
    ("table_bytes", ObjectOrder::TableBytes),
    ("index_bytes", ObjectOrder::IndexBytes),
    ("name", ObjectOrder::Name),
];

/// A time window: `range` back from now, or `from` (and `to`); `step` is chosen when absent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// How far back from now: `30s`, `15m`, `1h`, `7d` (default 1h). Not with `from`.
    pub range: Option<String>,
    /// Start: RFC 3339 (`2026-11-27T10:00:00Z`) or Unix seconds.
    pub from: Option<String>,
    /// End (default now): RFC 3339 or Unix seconds.
    pub to: Option<String>,
    /// Bucket width: `1s`, `1m`, `1h`; at most 5000 buckets per window.
    pub step: Option<String>,
}

impl WindowParams {
    /// The window of a named page range (`15m` … `30d`), ending now.
    pub fn of_range(range: &str) -> WindowParams {
        WindowParams {
            range: Some(range.to_owned()),
            ..WindowParams::default()
        }
    }

    /// Whether `from` or `to` is given (an explicit window rather than a range back from now).
    pub fn is_explicit(&self) -> bool {
        given(&self.from).is_some() || given(&self.to).is_some()
    }

    /// The named range of the pages (`15m` … `30d`); `default` when absent.
    pub fn page_range(&self, default: &'static str) -> Result<&'static str, AppError> {
        match given(&self.range) {
            None => Ok(default),
            Some(range) => RANGES.iter().map(|(value, _)| *value).find(|value| *value == range).ok_or_else(|| {
                let allowed: Vec<&str> = RANGES.iter().map(|(value, _)| *value).collect();
                AppError::bad_request("range", format!("range must be one of {}", allowed.join(", ")))
            }),
        }
    }

    /// The window asked for. Without `to`, it ends now, rounded up to a whole step so that
    /// live refreshes keep bucket boundaries still.
    pub fn window(&self, now: SystemTime) -> Result<Window, AppError> {
        if given(&self.from).is_some() && given(&self.range).is_some() {
            return Err(AppError::bad_request("range", "give either from or range, not both"));
        }
        let range = given(&self.range)
            .map(|text| duration("range", text))
            .transpose()?
            .unwrap_or(DEFAULT_RANGE);
        if range.is_zero() {
            return Err(AppError::bad_request("range", "range must be longer than zero"));
        }
        if range > MAX_RANGE {
            return Err(AppError::bad_request("range", "range must be at most 400 days"));
        }
        let explicit_to = given(&self.to).map(|text| instant("to", text)).transpose()?;
        let explicit_from = given(&self.from).map(|text| instant("from", text)).transpose()?;
        let span = match (explicit_from, explicit_to) {
            (Some(from), Some(to)) if from >= to => return Err(AppError::bad_request("from", "from must be before to")),
            (Some(from), Some(to)) => Duration::from_micros((to - from) as u64),
            (Some(from), None) => Duration::from_micros(unix_micros(now).saturating_sub(from).max(1) as u64),
            _ => range,
        };
        // `from=0&to=2100-01-01` is as much work as `range=100y`: the same limit.
        if span > MAX_RANGE {
            return Err(AppError::bad_request("from", "from and to must be at most 400 days apart"));
        }
        let step = match given(&self.step) {
            Some(text) => duration("step", text)?,
            None => automatic_step(span),
        };
        if step < Duration::from_secs(1) {
            return Err(AppError::bad_request("step", "step must be at least one second"));
        }
        if step > MAX_RANGE {
            return Err(AppError::bad_request("step", "step must be at most 400 days"));
        }
        let step_us = step.as_micros() as i64;
        let to_us = explicit_to.unwrap_or_else(|| {
            let now_us = unix_micros(now);
            now_us.div_euclid(step_us) * step_us + if now_us % step_us == 0 { 0 } else { step_us }
        });
        let from_us = explicit_from.unwrap_or(to_us - span.as_micros() as i64);
        if from_us >= to_us {
            return Err(AppError::bad_request("from", "from must be before to"));
        }
        let buckets = (to_us - from_us + step_us - 1) / step_us;
        if buckets > MAX_SERIES_BUCKETS {
            return Err(AppError::bad_request(
                "step",
                format!("the range holds {buckets} steps; at most {MAX_SERIES_BUCKETS} are allowed, choose a larger step"),
            ));
        }
        Ok(Window { from_us, to_us, step_us })
    }
}

/// How the activity chart stacks its series.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityParams {
    /// wait_event_type (default), wait_event, query_id, database, user, application, client_address, backend_type
    pub by: Option<String>,
    /// Series to keep, biggest first, 1 to 100 (default 20); the others are summed in a last series named other.
    #[param(value_type = Option<u32>)]
    pub top: Option<String>,
}

impl ActivityParams {
    pub fn dimension(&self) -> Result<ActivityDimension, AppError> {
        match given(&self.by) {
            None => Ok(ActivityDimension::WaitEventType),
            Some(name) => ActivityDimension::from_name(name).ok_or_else(|| {
                let allowed: Vec<&str> = ActivityDimension::ALL.iter().map(|dimension| dimension.as_str()).collect();
                AppError::bad_request("by", format!("by must be one of {}", allowed.join(", ")))
            }),
        }
    }

    /// The activity-series request of `target` over `window`.
    pub fn request(&self, target: TargetName, window: Window) -> Result<ActivitySeriesRequest, AppError> {
        let top = match given(&self.top) {
            None => DEFAULT_TOP_SERIES,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|top| (1..=MAX_TOP_SERIES).contains(top))
                .ok_or_else(|| AppError::bad_request("top", format!("top must be a whole number from 1 to {MAX_TOP_SERIES}")))?,
        };
        let request = ActivitySeriesRequest {
            target,
            from_us: window.from_us,
            to_us: window.to_us,
            step_us: window.step_us,
            by: self.dimension()?,
            top,
        };
        request.validate().map_err(|e| AppError::bad_request("step", e.to_string()))?;
        Ok(request)
    }
}

/// How many sessions a list holds.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListParams {
    /// 1 to 10000, default 100.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

impl SessionListParams {
    pub fn limit(&self) -> Result<u32, AppError> {
        count(&self.limit, "limit", 100)
    }
}

/// How many tables each health list holds.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HealthParams {
    /// 1 to 10000, default 20.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

impl HealthParams {
    pub fn limit(&self) -> Result<u32, AppError> {
        count(&self.limit, "limit", 20)
    }
}

/// Which backend a pid is (pids are reused), and how many of its samples.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionParams {
    /// The backend's start, microseconds since the epoch, to tell a reused pid apart.
    #[param(value_type = Option<i64>)]
    pub backend_start: Option<String>,
    /// 1 to 10000, default 5000.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

impl SessionParams {
    pub fn backend_start_us(&self) -> Result<Option<i64>, AppError> {
        integer(&self.backend_start, "backend_start")
    }

    pub fn limit(&self) -> Result<u32, AppError> {
        count(&self.limit, "limit", 5_000)
    }
}

/// The order and length of a statement list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementListParams {
    /// total_time (default), mean_time, calls, rows, shared_blocks_read, temp_blocks.
    pub order_by: Option<String>,
    /// 1 to 10000, default 50.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

impl StatementListParams {
    pub fn order_by(&self) -> Result<StatementOrder, AppError> {
        choice(&self.order_by, "order_by", STATEMENT_ORDER_CHOICES, StatementOrder::TotalTime)
    }

    pub fn limit(&self) -> Result<u32, AppError> {
        count(&self.limit, "limit", 50)
    }
}

/// Which objects to list, in which order, which page of them.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObjectListParams {
    pub database: Option<String>,
    pub schema: Option<String>,
    /// table, partitioned_table, index, partitioned_index, toast, materialized_view.
    pub kind: Option<String>,
    /// Part of the name, any case.
    pub name: Option<String>,
    /// total_bytes (default), table_bytes, index_bytes, name.
    pub order_by: Option<String>,
    #[param(value_type = Option<u32>)]
    pub offset: Option<String>,
    /// 1 to 10000, default 100.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// The page of the objects page (100 objects each), from 1.
    #[param(value_type = Option<u32>)]
    pub page: Option<String>,
}

impl ObjectListParams {
    /// The database, kind and name filters; the kind must be one pgmon reports.
    pub fn filter(&self) -> Result<ObjectFilter, AppError> {
        let kind = given(&self.kind).map(str::to_owned);
        if let Some(kind) = &kind {
            if !pgmon_ui::objects::OBJECT_KINDS.iter().any(|(value, _)| value == kind) {
                let allowed: Vec<&str> = pgmon_ui::objects::OBJECT_KINDS.iter().map(|(value, _)| *value).collect();
                return Err(AppError::bad_request("kind", format!("kind must be one of {}", allowed.join(", "))));
            }
        }
        Ok(ObjectFilter {
            database: given(&self.database).map(str::to_owned),
            kind,
            name: given(&self.name).map(str::to_owned),
        })
    }

    pub fn schema_name(&self) -> Option<String> {
        given(&self.schema).map(str::to_owned)
    }

    pub fn order_by(&self) -> Result<ObjectOrder, AppError> {
        choice(&self.order_by, "order_by", OBJECT_ORDER_CHOICES, ObjectOrder::TotalBytes)
    }

    pub fn offset(&self) -> Result<u32, AppError> {
        Ok(integer(&self.offset, "offset")?.unwrap_or(0))
    }

    pub fn limit(&self) -> Result<u32, AppError> {
        count(&self.limit, "limit", 100)
    }

    pub fn page(&self) -> Result<u32, AppError> {
        count(&self.page, "page", 1)
    }
}

/// One object, by database, schema and name.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObjectParams {
    #[param(required, value_type = String)]
    pub database: Option<String>,
    #[param(required, value_type = String)]
    pub schema: Option<String>,
    #[param(required, value_type = String)]
    pub name: Option<String>,
}

impl ObjectParams {
    /// Database, schema and name, each required.
    pub fn object(&self) -> Result<(String, String, String), AppError> {
        Ok((
            required(&self.database, "database")?,
            required(&self.schema, "schema")?,
            required(&self.name, "name")?,
        ))
    }
}

/// One database of a target, or all of them.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DatabaseParams {
    /// One database; all together when absent.
    pub database: Option<String>,
}

impl DatabaseParams {
    pub fn database(&self) -> Option<String> {
        given(&self.database).map(str::to_owned)
    }
}

/// The current time in microseconds since the epoch.
pub fn now_us() -> i64 {
    unix_micros(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The activity request a query string of `pairs` asks for.
    fn activity_series_request(pairs: &[(&str, &str)]) -> Result<ActivitySeriesRequest, AppError> {
        let query = serde_urlencoded::to_string(pairs).unwrap();
        let window: WindowParams = serde_urlencoded::from_str(&query).unwrap();
        let activity: ActivityParams = serde_urlencoded::from_str(&query).unwrap();
        activity.request("t".parse().unwrap(), window.window(now())?)
    }

    fn field_of(error: AppError) -> &'static str {
        match error {
            AppError::BadRequest { field, .. } => field,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_764_237_601)
    }

    #[test]
    fn defaults_to_the_last_hour_ending_on_a_step_boundary() {
        let request = activity_series_request(&[]).unwrap();
        assert_eq!(request.step_us, 15_000_000);
        assert_eq!(request.to_us % request.step_us, 0);
        assert!(request.to_us >= 1_764_237_601_000_000);
        assert_eq!(request.to_us - request.from_us, 3_600_000_000);
        assert_eq!(request.by, ActivityDimension::WaitEventType);
    }

    #[test]
    fn accepts_rfc3339_and_unix_seconds() {
        let request = activity_series_request(&[
            ("from", "2025-11-27T10:00:00Z"),
            ("to", "1764241200"),
            ("step", "1s"),
            ("by", "wait_event"),
        ])
        .unwrap();
        assert_eq!(request.from_us, 1_764_237_600_000_000);
        assert_eq!(request.to_us, 1_764_241_200_000_000);
        assert_eq!(request.step_us, 1_000_000);
        assert_eq!(request.by, ActivityDimension::WaitEvent);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let error = |pairs: &[(&str, &str)]| field_of(activity_series_request(pairs).unwrap_err());
        assert_eq!(error(&[("from", "yesterday")]), "from");
        assert_eq!(error(&[("to", "soon")]), "to");
        assert_eq!(error(&[("from", "200"), ("to", "100")]), "from");
        assert_eq!(error(&[("step", "0")]), "step");
        assert_eq!(error(&[("step", "fast")]), "step");
        assert_eq!(error(&[("range", "7d"), ("step", "1s")]), "step");
        assert_eq!(error(&[("range", "forever")]), "range");
        assert_eq!(error(&[("by", "colour")]), "by");
        assert_eq!(error(&[("from", "100"), ("range", "1h")]), "range");
        assert_eq!(error(&[("from", "0"), ("to", "2100-01-01T00:00:00Z"), ("step", "1d")]), "from");
        assert_eq!(error(&[("from", "0"), ("step", "1d")]), "from");
        assert_eq!(field_of(target_name("Bad.Name").unwrap_err()), "target");
    }

    #[test]
    fn automatic_steps_are_round() {
        assert_eq!(automatic_step(Duration::from_secs(900)), Duration::from_secs(5));
        assert_eq!(automatic_step(Duration::from_secs(86400)), Duration::from_secs(300));
        assert_eq!(automatic_step(Duration::from_secs(60)), Duration::from_secs(1));
    }
}
