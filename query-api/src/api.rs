//! The JSON API under `/api/v1`, and its OpenAPI document (generated from these handlers and
//! the reply types by utoipa).

use std::collections::HashMap;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::Json;
use pgmon_contract::api::CurrentBlocking;
use pgmon_contract::api::TargetSummary;
use pgmon_contract::query::{
    ActivitySeriesReply, DatabasePoint, DatabaseSeriesRequest, LockHistoryReply, LockHistoryRequest, ObjectGrowthReply,
    ObjectGrowthRequest, ObjectOrder, ObjectsReply, ObjectsRequest, SessionHistoryRequest, SessionSample, SessionSummary, SessionsRequest,
    StatementHistoryReply, StatementHistoryRequest, StatementOrder, StatementTotals, TopStatementsRequest,
};
use pgmon_contract::target::TargetName;
use utoipa::{IntoParams, OpenApi};

use crate::error::{AppError, ErrorBody};
use crate::pages::{check_kind, OBJECT_ORDER_CHOICES, STATEMENT_ORDER_CHOICES};
use crate::{connections, params, targets, AppState};

type Params = Query<HashMap<String, String>>;

/// A time window: `range` back from now, or `from` (and `to`); `step` is chosen when absent.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct WindowParams {
    /// How far back from now: `30s`, `15m`, `1h`, `7d` (default 1h). Not with `from`.
    range: Option<String>,
    /// Start: RFC 3339 (`2026-11-27T10:00:00Z`) or Unix seconds.
    from: Option<String>,
    /// End (default now): RFC 3339 or Unix seconds.
    to: Option<String>,
    /// Bucket width: `1s`, `1m`, `1h`; at most 5000 buckets per window.
    step: Option<String>,
}

/// `GET /api/v1/fleet`: every known target with status, lag, load and size.
#[utoipa::path(get, path = "/api/v1/fleet", tag = "fleet", responses((status = 200, body = Vec<TargetSummary>), (status = 401, body = ErrorBody)))]
pub async fn fleet(State(state): State<AppState>) -> Result<Json<Vec<TargetSummary>>, AppError> {
    Ok(Json(targets::target_summaries(&state).await?))
}

async fn ask<Query: pgmon_contract::query::NamedQuery>(state: &AppState, request: &Query) -> Result<Json<Query::Reply>, AppError> {
    Ok(Json(state.ask(request).await?))
}

fn target_and_window(target: &str, query: &HashMap<String, String>) -> Result<(TargetName, params::Window), AppError> {
    Ok((params::target_name(target)?, params::window(query, SystemTime::now())?))
}

/// `GET /api/v1/targets/{target}/activity`: average active sessions, stacked by a dimension.
#[utoipa::path(get, path = "/api/v1/targets/{target}/activity", tag = "activity",
    params(("target" = String, Path), WindowParams,
        ("by" = Option<String>, Query, description = "wait_event_type (default), wait_event, query_id, database, user, application, client_address, backend_type"),
        ("top" = Option<u32>, Query, description = "series to keep, biggest first, 1 to 100 (default 20); the others are summed in a last series named other")),
    responses((status = 200, body = ActivitySeriesReply), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn activity(
    State(state): State<AppState>,
    Path(target): Path<String>,
    Query(query): Params,
) -> Result<Json<ActivitySeriesReply>, AppError> {
    let target = params::target_name(&target)?;
    let request = params::activity_series_request(target, &query, SystemTime::now())?;
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/sessions`: the sessions of a window, busiest first.
#[utoipa::path(get, path = "/api/v1/targets/{target}/sessions", tag = "activity",
    params(("target" = String, Path), WindowParams, ("limit" = Option<u32>, Query, description = "1 to 10000, default 100")),
    responses((status = 200, body = Vec<SessionSummary>), (status = 400, body = ErrorBody)))]
pub async fn sessions(
    State(state): State<AppState>,
    Path(target): Path<String>,
    Query(query): Params,
) -> Result<Json<Vec<SessionSummary>>, AppError> {
    let (target, window) = target_and_window(&target, &query)?;
    let request = SessionsRequest {
        target,
        from_us: window.from_us,
        to_us: window.to_us,
        limit: params::limit(&query, "limit", 100)?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/sessions/{pid}`: one backend's samples.
#[utoipa::path(get, path = "/api/v1/targets/{target}/sessions/{pid}", tag = "activity",
    params(("target" = String, Path), ("pid" = i32, Path), WindowParams,
        ("backend_start" = Option<i64>, Query, description = "the backend's start, microseconds since the epoch, to tell a reused pid apart"),
        ("limit" = Option<u32>, Query, description = "1 to 10000, default 5000")),
    responses((status = 200, body = Vec<SessionSample>), (status = 400, body = ErrorBody)))]
pub async fn session(
    State(state): State<AppState>,
    Path((target, pid)): Path<(String, String)>,
    Query(query): Params,
) -> Result<Json<Vec<SessionSample>>, AppError> {
    let (target, window) = target_and_window(&target, &query)?;
    let request = SessionHistoryRequest {
        target,
        pid: pid
            .parse()
            .map_err(|_| AppError::bad_request("pid", "pid must be a whole number"))?,
        backend_start_us: params::optional_integer(&query, "backend_start")?,
        from_us: window.from_us,
        to_us: window.to_us,
        limit: params::limit(&query, "limit", 5_000)?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/statements`: top statements of a window.
#[utoipa::path(get, path = "/api/v1/targets/{target}/statements", tag = "statements",
    params(("target" = String, Path), WindowParams,
        ("order_by" = Option<String>, Query, description = "total_time (default), mean_time, calls, rows, shared_blocks_read, temp_blocks"),
        ("limit" = Option<u32>, Query, description = "1 to 10000, default 50")),
    responses((status = 200, body = Vec<StatementTotals>), (status = 400, body = ErrorBody)))]
pub async fn statements(
    State(state): State<AppState>,
    Path(target): Path<String>,
    Query(query): Params,
) -> Result<Json<Vec<StatementTotals>>, AppError> {
    let (target, window) = target_and_window(&target, &query)?;
    let request = TopStatementsRequest {
        target,
        from_us: window.from_us,
        to_us: window.to_us,
        order_by: params::choice(&query, "order_by", STATEMENT_ORDER_CHOICES, StatementOrder::TotalTime)?,
        limit: params::limit(&query, "limit", 50)?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/statements/{query_id}`: one statement per bucket.
#[utoipa::path(get, path = "/api/v1/targets/{target}/statements/{query_id}", tag = "statements",
    params(("target" = String, Path), ("query_id" = i64, Path), WindowParams),
    responses((status = 200, body = StatementHistoryReply), (status = 400, body = ErrorBody)))]
pub async fn statement(
    State(state): State<AppState>,
    Path((target, query_id)): Path<(String, String)>,
    Query(query): Params,
) -> Result<Json<StatementHistoryReply>, AppError> {
    let (target, window) = target_and_window(&target, &query)?;
    let request = StatementHistoryRequest {
        target,
        query_id: query_id
            .parse()
            .map_err(|_| AppError::bad_request("query_id", "query_id must be a whole number"))?,
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/objects`: the newest object sizes, filtered, ordered, paged.
#[utoipa::path(get, path = "/api/v1/targets/{target}/objects", tag = "objects",
    params(("target" = String, Path),
        ("database" = Option<String>, Query), ("schema" = Option<String>, Query),
        ("kind" = Option<String>, Query, description = "table, partitioned_table, index, partitioned_index, toast, materialized_view"),
        ("name" = Option<String>, Query, description = "part of the name, any case"),
        ("order_by" = Option<String>, Query, description = "total_bytes (default), table_bytes, index_bytes, name"),
        ("offset" = Option<u32>, Query), ("limit" = Option<u32>, Query, description = "1 to 10000, default 100")),
    responses((status = 200, body = ObjectsReply), (status = 400, body = ErrorBody)))]
pub async fn objects(
    State(state): State<AppState>,
    Path(target): Path<String>,
    Query(query): Params,
) -> Result<Json<ObjectsReply>, AppError> {
    let kind = params::text(&query, "kind");
    check_kind(kind.as_deref())?;
    let request = ObjectsRequest {
        target: params::target_name(&target)?,
        database: params::text(&query, "database"),
        schema_name: params::text(&query, "schema"),
        kind,
        name_contains: params::text(&query, "name"),
        order_by: params::choice(&query, "order_by", OBJECT_ORDER_CHOICES, ObjectOrder::TotalBytes)?,
        offset: params::optional_integer(&query, "offset")?.unwrap_or(0),
        limit: params::limit(&query, "limit", 100)?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/objects/growth`: one object's sizes and growth per day.
#[utoipa::path(get, path = "/api/v1/targets/{target}/objects/growth", tag = "objects",
    params(("target" = String, Path), ("database" = String, Query), ("schema" = String, Query), ("name" = String, Query), WindowParams),
    responses((status = 200, body = ObjectGrowthReply), (status = 400, body = ErrorBody)))]
pub async fn object_growth(
    State(state): State<AppState>,
    Path(target): Path<String>,
    Query(query): Params,
) -> Result<Json<ObjectGrowthReply>, AppError> {
    let (target, window) = target_and_window(&target, &query)?;
    let request = ObjectGrowthRequest {
        target,
        database: params::required_text(&query, "database")?,
        schema_name: params::required_text(&query, "schema")?,
        name: params::required_text(&query, "name")?,
        from_us: window.from_us,
        to_us: window.to_us,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/locks/current`: who blocks whom now.
#[utoipa::path(get, path = "/api/v1/targets/{target}/locks/current", tag = "locks",
    params(("target" = String, Path)), responses((status = 200, body = CurrentBlocking), (status = 400, body = ErrorBody)))]
pub async fn current_locks(State(state): State<AppState>, Path(target): Path<String>) -> Result<Json<CurrentBlocking>, AppError> {
    let target = params::target_name(&target)?;
    Ok(Json(targets::current_blocking(&state, &target).await?))
}

/// `GET /api/v1/targets/{target}/locks/history`: lock waits per bucket and the top blockers.
#[utoipa::path(get, path = "/api/v1/targets/{target}/locks/history", tag = "locks",
    params(("target" = String, Path), WindowParams), responses((status = 200, body = LockHistoryReply), (status = 400, body = ErrorBody)))]
pub async fn lock_history(
    State(state): State<AppState>,
    Path(target): Path<String>,
    Query(query): Params,
) -> Result<Json<LockHistoryReply>, AppError> {
    let (target, window) = target_and_window(&target, &query)?;
    let request = LockHistoryRequest {
        target,
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/database-stats`: TPS, cache hits, temp bytes, deadlocks.
#[utoipa::path(get, path = "/api/v1/targets/{target}/database-stats", tag = "activity",
    params(("target" = String, Path), WindowParams, ("database" = Option<String>, Query, description = "one database; all together when absent")),
    responses((status = 200, body = Vec<DatabasePoint>), (status = 400, body = ErrorBody)))]
pub async fn database_stats(
    State(state): State<AppState>,
    Path(target): Path<String>,
    Query(query): Params,
) -> Result<Json<Vec<DatabasePoint>>, AppError> {
    let (target, window) = target_and_window(&target, &query)?;
    let request = DatabaseSeriesRequest {
        target,
        database: params::text(&query, "database"),
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    ask(&state, &request).await
}

#[derive(OpenApi)]
#[openapi(
    info(title = "pgmon API", description = "PostgreSQL activity, statements, objects and locks over time. Authenticate with a session cookie (sign in at /sign-in) or `Authorization: Bearer <token>` (`pgmon users token`)."),
    paths(
        fleet, activity, sessions, session, statements, statement, objects, object_growth, current_locks, lock_history, database_stats,
        connections::list_targets, connections::get_target, connections::create_target, connections::update_target,
        connections::delete_target, connections::test_target,
    ),
    modifiers(&BearerSecurity),
    security(("bearer" = [])),
)]
pub struct ApiDocument;

/// Declares the bearer scheme, and the error answers every operation can give (each with an
/// [`ErrorBody`]), so no handler lists them again.
struct BearerSecurity;

/// Statuses any endpoint may answer with, and when.
const COMMON_ERRORS: &[(&str, &str)] = &[
    ("400", "a parameter or the body is wrong; `field` names it"),
    ("401", "no valid session or API token"),
    ("403", "the user's role does not allow this"),
    ("404", "no such target or object"),
    ("503", "no ingester answered, or NATS is unreachable"),
];

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .schemas
            .entry("ErrorBody".to_owned())
            .or_insert_with(<ErrorBody as utoipa::PartialSchema>::schema);
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                for (status, description) in COMMON_ERRORS {
                    operation.responses.responses.entry((*status).to_owned()).or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                            )
                            .build()
                            .into()
                    });
                }
            }
        }
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDocument::openapi())
}
