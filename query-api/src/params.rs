//! Parsing and checking the query-string parameters of history requests; each error names its field.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgmon_contract::query::{ActivityDimension, ActivitySeriesRequest, DEFAULT_TOP_SERIES, MAX_ROWS, MAX_SERIES_BUCKETS, MAX_TOP_SERIES};
use pgmon_contract::target::TargetName;
use pgmon_ui::components::RANGES;

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

pub fn dimension(params: &HashMap<String, String>) -> Result<ActivityDimension, AppError> {
    match params.get("by").map(String::as_str) {
        None | Some("") => Ok(ActivityDimension::WaitEventType),
        Some(name) => ActivityDimension::from_name(name).ok_or_else(|| {
            let allowed: Vec<&str> = ActivityDimension::ALL.iter().map(|dimension| dimension.as_str()).collect();
            AppError::bad_request("by", format!("by must be one of {}", allowed.join(", ")))
        }),
    }
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

/// Reads `from`, `to`, `range` and `step`.
///
/// Without `to`, the window ends now, rounded up to a whole step so that live refreshes keep
/// bucket boundaries still.
pub fn window(params: &HashMap<String, String>, now: SystemTime) -> Result<Window, AppError> {
    let given = |name: &str| params.get(name).map(String::as_str).filter(|value| !value.is_empty());
    if given("from").is_some() && given("range").is_some() {
        return Err(AppError::bad_request("range", "give either from or range, not both"));
    }
    let range = given("range")
        .map(|text| duration("range", text))
        .transpose()?
        .unwrap_or(DEFAULT_RANGE);
    if range.is_zero() {
        return Err(AppError::bad_request("range", "range must be longer than zero"));
    }
    if range > MAX_RANGE {
        return Err(AppError::bad_request("range", "range must be at most 400 days"));
    }
    let explicit_to = given("to").map(|text| instant("to", text)).transpose()?;
    let explicit_from = given("from").map(|text| instant("from", text)).transpose()?;
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
    let step = match given("step") {
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

/// Builds an activity-series request from `from`, `to`, `range`, `step` and `by`.
pub fn activity_series_request(
    target: TargetName,
    params: &HashMap<String, String>,
    now: SystemTime,
) -> Result<ActivitySeriesRequest, AppError> {
    let Window { from_us, to_us, step_us } = window(params, now)?;
    let by = dimension(params)?;
    let top = match params.get("top").map(String::as_str) {
        None | Some("") => DEFAULT_TOP_SERIES,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|top| (1..=MAX_TOP_SERIES).contains(top))
            .ok_or_else(|| AppError::bad_request("top", format!("top must be a whole number from 1 to {MAX_TOP_SERIES}")))?,
    };
    let request = ActivitySeriesRequest {
        target,
        from_us,
        to_us,
        step_us,
        by,
        top,
    };
    request.validate().map_err(|e| AppError::bad_request("step", e.to_string()))?;
    Ok(request)
}

/// A named range of the pages (`15m` … `30d`); the default when absent.
pub fn page_range(params: &HashMap<String, String>, default: &'static str) -> Result<&'static str, AppError> {
    match params.get("range").map(String::as_str) {
        None | Some("") => Ok(default),
        Some(range) => RANGES.iter().map(|(value, _)| *value).find(|value| *value == range).ok_or_else(|| {
            let allowed: Vec<&str> = RANGES.iter().map(|(value, _)| *value).collect();
            AppError::bad_request("range", format!("range must be one of {}", allowed.join(", ")))
        }),
    }
}

/// A positive count up to [`MAX_ROWS`], or `default` when absent.
pub fn limit(params: &HashMap<String, String>, field: &'static str, default: u32) -> Result<u32, AppError> {
    match params.get(field).map(String::as_str) {
        None | Some("") => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|value| (1..=MAX_ROWS).contains(value))
            .ok_or_else(|| AppError::bad_request(field, format!("{field} must be a whole number from 1 to {MAX_ROWS}"))),
    }
}

/// A non-empty text parameter, or `None`.
pub fn text(params: &HashMap<String, String>, field: &str) -> Option<String> {
    params
        .get(field)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// A required non-empty text parameter.
pub fn required_text(params: &HashMap<String, String>, field: &'static str) -> Result<String, AppError> {
    text(params, field).ok_or_else(|| AppError::bad_request(field, format!("{field} is required")))
}

/// One of a fixed set of values, or `default` when absent; the error lists the allowed ones.
pub fn choice<T: Copy>(params: &HashMap<String, String>, field: &'static str, choices: &[(&str, T)], default: T) -> Result<T, AppError> {
    match params.get(field).map(String::as_str) {
        None | Some("") => Ok(default),
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

/// An optional integer parameter.
pub fn optional_integer<T: std::str::FromStr>(params: &HashMap<String, String>, field: &'static str) -> Result<Option<T>, AppError> {
    match params.get(field).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| AppError::bad_request(field, format!("{field} must be a whole number"))),
    }
}

/// The current time in microseconds since the epoch.
pub fn now_us() -> i64 {
    unix_micros(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
        let request = activity_series_request("t".parse().unwrap(), &params(&[]), now()).unwrap();
        assert_eq!(request.step_us, 15_000_000);
        assert_eq!(request.to_us % request.step_us, 0);
        assert!(request.to_us >= 1_764_237_601_000_000);
        assert_eq!(request.to_us - request.from_us, 3_600_000_000);
        assert_eq!(request.by, ActivityDimension::WaitEventType);
    }

    #[test]
    fn accepts_rfc3339_and_unix_seconds() {
        let request = activity_series_request(
            "t".parse().unwrap(),
            &params(&[
                ("from", "2025-11-27T10:00:00Z"),
                ("to", "1764241200"),
                ("step", "1s"),
                ("by", "wait_event"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(request.from_us, 1_764_237_600_000_000);
        assert_eq!(request.to_us, 1_764_241_200_000_000);
        assert_eq!(request.step_us, 1_000_000);
        assert_eq!(request.by, ActivityDimension::WaitEvent);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let target = || "t".parse::<TargetName>().unwrap();
        let error = |pairs: &[(&str, &str)]| field_of(activity_series_request(target(), &params(pairs), now()).unwrap_err());
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
