//! HTML pages (maud + htmx) and the embedded static assets.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::Markup;
use pgmon_common::query::ActivityDimension;
use pgmon_ui::components::{self, ACTIVITY_RANGES};
use pgmon_ui::layout::page;

use crate::error::{AppError, PageError};
use crate::{params, targets, AppState};

/// `GET /`: the fleet overview.
pub async fn fleet(State(state): State<AppState>) -> Result<Markup, PageError> {
    let summaries = targets::target_summaries(&state.jetstream).await?;
    Ok(page("Fleet", components::fleet(&summaries)))
}

struct ActivityView {
    target: String,
    range: &'static str,
    by: &'static str,
}

fn activity_view(target: &str, query: &HashMap<String, String>) -> Result<ActivityView, AppError> {
    let target = params::target_name(target)?;
    let range = match query.get("range").map(String::as_str) {
        None | Some("") => "1h",
        Some(range) => ACTIVITY_RANGES
            .iter()
            .map(|(value, _)| *value)
            .find(|value| *value == range)
            .ok_or_else(|| {
                let allowed: Vec<&str> = ACTIVITY_RANGES.iter().map(|(value, _)| *value).collect();
                AppError::bad_request("range", format!("range must be one of {}", allowed.join(", ")))
            })?,
    };
    let by = params::dimension(query)?.as_str();
    Ok(ActivityView {
        target: target.to_string(),
        range,
        by,
    })
}

fn dimension_choices() -> Vec<(&'static str, &'static str)> {
    ActivityDimension::ALL
        .iter()
        .map(|dimension| (dimension.as_str(), dimension.label()))
        .collect()
}

/// `GET /targets/{target}`: the activity page.
pub async fn activity(Path(target): Path<String>, Query(query): Query<HashMap<String, String>>) -> Result<Markup, PageError> {
    let view = activity_view(&target, &query)?;
    let body = components::activity_page(&view.target, view.range, view.by, &dimension_choices());
    Ok(page(&format!("Activity of {}", view.target), body))
}

/// `GET /targets/{target}/activity-panel`: the fragment htmx swaps when the range changes.
pub async fn activity_panel(Path(target): Path<String>, Query(query): Query<HashMap<String, String>>) -> Result<Markup, PageError> {
    let view = activity_view(&target, &query)?;
    Ok(components::activity_panel(&view.target, view.range, view.by, &dimension_choices()))
}

/// `GET /assets/{name}`: an embedded static file.
pub async fn asset(Path(name): Path<String>) -> Response {
    match pgmon_ui::assets::find_asset(&name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

/// Any other path.
pub async fn not_found() -> PageError {
    PageError(AppError::NotFound("there is no page at this address".to_owned()))
}
