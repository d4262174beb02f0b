//! The JSON API under `/api/v1`.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::Json;
use pgmon_common::query::ActivitySeriesReply;
use pgmon_ui::components::TargetSummary;

use crate::error::AppError;
use crate::{history, params, targets, AppState};

/// `GET /api/v1/targets`: targets with snapshots in the stream.
pub async fn targets(State(state): State<AppState>) -> Result<Json<Vec<TargetSummary>>, AppError> {
    Ok(Json(targets::target_summaries(&state.jetstream).await?))
}

/// `GET /api/v1/targets/{target}/activity?from=&to=&range=&step=&by=`: average active sessions.
pub async fn activity(
    State(state): State<AppState>,
    Path(target): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ActivitySeriesReply>, AppError> {
    let target = params::target_name(&target)?;
    let request = params::activity_series_request(target, &query, SystemTime::now())?;
    let series = history::named_query(&state.jetstream.client(), state.query_timeout, &request).await?;
    Ok(Json(series))
}
