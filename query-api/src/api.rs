//! The JSON API under `/api/v1`, and its OpenAPI document (generated from these handlers and
//! the reply types by utoipa).

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::Json;
use pgmon_contract::api::CurrentBlocking;
use pgmon_contract::api::{CurrentReplication, RunningMaintenance, TargetSummary};
use pgmon_contract::query::{
    ActivitySeriesReply, ChangesReply, ChangesRequest, DatabasePoint, DatabaseSeriesRequest, LockHistoryReply, LockHistoryRequest,
    ObjectGrowthReply, ObjectGrowthRequest, ObjectsReply, ObjectsRequest, ReplicationSeriesReply, ReplicationSeriesRequest,
    SessionHistoryRequest, SessionSample, SessionSummary, SessionsRequest, StatementHistoryReply, StatementHistoryRequest, StatementTotals,
    TopStatementsRequest, VacuumHealthReply, VacuumHealthRequest, WalSeriesReply, WalSeriesRequest,
};
use utoipa::OpenApi;

use crate::alerts;
use crate::error::{AppError, ErrorBody};
use crate::extract::{Params, Target};
use crate::params::{
    ActivityParams, DatabaseParams, HealthParams, ObjectListParams, ObjectParams, SessionListParams, SessionParams, StatementListParams,
    WindowParams,
};
use crate::{connections, targets, AppState};

/// `GET /api/v1/fleet`: every known target with status, lag, load and size.
#[utoipa::path(get, path = "/api/v1/fleet", tag = "fleet", responses((status = 200, body = Vec<TargetSummary>), (status = 401, body = ErrorBody)))]
pub async fn fleet(State(state): State<AppState>) -> Result<Json<Vec<TargetSummary>>, AppError> {
    Ok(Json(targets::target_summaries(&state).await?))
}

async fn ask<Query: pgmon_contract::query::NamedQuery>(state: &AppState, request: &Query) -> Result<Json<Query::Reply>, AppError> {
    Ok(Json(state.ask(request).await?))
}

/// A whole number from the path.
fn path_integer<T: std::str::FromStr>(text: &str, field: &'static str) -> Result<T, AppError> {
    text.parse()
        .map_err(|_| AppError::bad_request(field, format!("{field} must be a whole number")))
}

/// `GET /api/v1/targets/{target}/activity`: average active sessions, stacked by a dimension.
#[utoipa::path(get, path = "/api/v1/targets/{target}/activity", tag = "activity",
    params(Target, WindowParams, ActivityParams),
    responses((status = 200, body = ActivitySeriesReply), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn activity(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
    Params(activity): Params<ActivityParams>,
) -> Result<Json<ActivitySeriesReply>, AppError> {
    let request = activity.request(target, window.window(SystemTime::now())?)?;
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/sessions`: the sessions of a window, busiest first.
#[utoipa::path(get, path = "/api/v1/targets/{target}/sessions", tag = "activity",
    params(Target, WindowParams, SessionListParams),
    responses((status = 200, body = Vec<SessionSummary>), (status = 400, body = ErrorBody)))]
pub async fn sessions(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
    Params(list): Params<SessionListParams>,
) -> Result<Json<Vec<SessionSummary>>, AppError> {
    let window = window.window(SystemTime::now())?;
    let request = SessionsRequest {
        target,
        from_us: window.from_us,
        to_us: window.to_us,
        limit: list.limit()?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/sessions/{pid}`: one backend's samples.
#[utoipa::path(get, path = "/api/v1/targets/{target}/sessions/{pid}", tag = "activity",
    params(Target, ("pid" = i32, Path), WindowParams, SessionParams),
    responses((status = 200, body = Vec<SessionSample>), (status = 400, body = ErrorBody)))]
pub async fn session(
    State(state): State<AppState>,
    Target(target): Target,
    Path(segments): Path<(String, String)>,
    Params(window): Params<WindowParams>,
    Params(session): Params<SessionParams>,
) -> Result<Json<Vec<SessionSample>>, AppError> {
    let window = window.window(SystemTime::now())?;
    let request = SessionHistoryRequest {
        target,
        pid: path_integer(&segments.1, "pid")?,
        backend_start_us: session.backend_start_us()?,
        from_us: window.from_us,
        to_us: window.to_us,
        limit: session.limit()?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/statements`: top statements of a window.
#[utoipa::path(get, path = "/api/v1/targets/{target}/statements", tag = "statements",
    params(Target, WindowParams, StatementListParams),
    responses((status = 200, body = Vec<StatementTotals>), (status = 400, body = ErrorBody)))]
pub async fn statements(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
    Params(list): Params<StatementListParams>,
) -> Result<Json<Vec<StatementTotals>>, AppError> {
    let window = window.window(SystemTime::now())?;
    let request = TopStatementsRequest {
        target,
        from_us: window.from_us,
        to_us: window.to_us,
        order_by: list.order_by()?,
        limit: list.limit()?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/statements/{query_id}`: one statement per bucket.
#[utoipa::path(get, path = "/api/v1/targets/{target}/statements/{query_id}", tag = "statements",
    params(Target, ("query_id" = i64, Path), WindowParams),
    responses((status = 200, body = StatementHistoryReply), (status = 400, body = ErrorBody)))]
pub async fn statement(
    State(state): State<AppState>,
    Target(target): Target,
    Path(segments): Path<(String, String)>,
    Params(window): Params<WindowParams>,
) -> Result<Json<StatementHistoryReply>, AppError> {
    let window = window.window(SystemTime::now())?;
    let request = StatementHistoryRequest {
        target,
        query_id: path_integer(&segments.1, "query_id")?,
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/objects`: the newest object sizes, filtered, ordered, paged.
#[utoipa::path(get, path = "/api/v1/targets/{target}/objects", tag = "objects",
    params(Target, ObjectListParams),
    responses((status = 200, body = ObjectsReply), (status = 400, body = ErrorBody)))]
pub async fn objects(
    State(state): State<AppState>,
    Target(target): Target,
    Params(list): Params<ObjectListParams>,
) -> Result<Json<ObjectsReply>, AppError> {
    let filter = list.filter()?;
    let request = ObjectsRequest {
        target,
        database: filter.database,
        schema_name: list.schema_name(),
        kind: filter.kind,
        name_contains: filter.name,
        order_by: list.order_by()?,
        offset: list.offset()?,
        limit: list.limit()?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/objects/growth`: one object's sizes and growth per day.
#[utoipa::path(get, path = "/api/v1/targets/{target}/objects/growth", tag = "objects",
    params(Target, ObjectParams, WindowParams),
    responses((status = 200, body = ObjectGrowthReply), (status = 400, body = ErrorBody)))]
pub async fn object_growth(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
    Params(object): Params<ObjectParams>,
) -> Result<Json<ObjectGrowthReply>, AppError> {
    let window = window.window(SystemTime::now())?;
    let (database, schema_name, name) = object.object()?;
    let request = ObjectGrowthRequest {
        target,
        database,
        schema_name,
        name,
        from_us: window.from_us,
        to_us: window.to_us,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/locks/current`: who blocks whom now.
#[utoipa::path(get, path = "/api/v1/targets/{target}/locks/current", tag = "locks",
    params(Target), responses((status = 200, body = CurrentBlocking), (status = 400, body = ErrorBody)))]
pub async fn current_locks(State(state): State<AppState>, Target(target): Target) -> Result<Json<CurrentBlocking>, AppError> {
    Ok(Json(targets::current_blocking(&state, &target).await?))
}

/// `GET /api/v1/targets/{target}/locks/history`: lock waits per bucket and the top blockers.
#[utoipa::path(get, path = "/api/v1/targets/{target}/locks/history", tag = "locks",
    params(Target, WindowParams), responses((status = 200, body = LockHistoryReply), (status = 400, body = ErrorBody)))]
pub async fn lock_history(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
) -> Result<Json<LockHistoryReply>, AppError> {
    let window = window.window(SystemTime::now())?;
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
    params(Target, WindowParams, DatabaseParams),
    responses((status = 200, body = Vec<DatabasePoint>), (status = 400, body = ErrorBody)))]
pub async fn database_stats(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
    Params(database): Params<DatabaseParams>,
) -> Result<Json<Vec<DatabasePoint>>, AppError> {
    let window = window.window(SystemTime::now())?;
    let request = DatabaseSeriesRequest {
        target,
        database: database.database(),
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/health/vacuum`: frozen-ID ages of every database, and the
/// tables oldest, with most dead tuples and past their vacuum threshold.
#[utoipa::path(get, path = "/api/v1/targets/{target}/health/vacuum", tag = "health",
    params(Target, HealthParams),
    responses((status = 200, body = VacuumHealthReply), (status = 400, body = ErrorBody)))]
pub async fn vacuum_health(
    State(state): State<AppState>,
    Target(target): Target,
    Params(list): Params<HealthParams>,
) -> Result<Json<VacuumHealthReply>, AppError> {
    let request = VacuumHealthRequest {
        target,
        limit: list.limit()?,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/health/maintenance`: vacuums, analyzes, index builds and
/// CLUSTERs running now, with their progress.
#[utoipa::path(get, path = "/api/v1/targets/{target}/health/maintenance", tag = "health",
    params(Target), responses((status = 200, body = RunningMaintenance), (status = 400, body = ErrorBody)))]
pub async fn running_maintenance(State(state): State<AppState>, Target(target): Target) -> Result<Json<RunningMaintenance>, AppError> {
    Ok(Json(targets::running_maintenance(&state, &target).await?))
}

/// `GET /api/v1/targets/{target}/health/replication`: standbys and their lag, replay on a
/// standby, and replication slots with the WAL they hold back, now.
#[utoipa::path(get, path = "/api/v1/targets/{target}/health/replication", tag = "health",
    params(Target), responses((status = 200, body = CurrentReplication), (status = 400, body = ErrorBody)))]
pub async fn current_replication(State(state): State<AppState>, Target(target): Target) -> Result<Json<CurrentReplication>, AppError> {
    Ok(Json(targets::current_replication(&state, &target).await?))
}

/// `GET /api/v1/targets/{target}/health/replication/history`: replay lag per standby and
/// retained WAL per slot, per bucket.
#[utoipa::path(get, path = "/api/v1/targets/{target}/health/replication/history", tag = "health",
    params(Target, WindowParams),
    responses((status = 200, body = ReplicationSeriesReply), (status = 400, body = ErrorBody)))]
pub async fn replication_history(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
) -> Result<Json<ReplicationSeriesReply>, AppError> {
    let window = window.window(SystemTime::now())?;
    let request = ReplicationSeriesRequest {
        target,
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/changes`: restarts, upgrades, settings and extensions that
/// changed in the window, oldest first.
#[utoipa::path(get, path = "/api/v1/targets/{target}/changes", tag = "health",
    params(Target, WindowParams),
    responses((status = 200, body = ChangesReply), (status = 400, body = ErrorBody)))]
pub async fn changes(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
) -> Result<Json<ChangesReply>, AppError> {
    let window = window.window(SystemTime::now())?;
    let request = ChangesRequest {
        target,
        from_us: window.from_us,
        to_us: window.to_us,
    };
    ask(&state, &request).await
}

/// `GET /api/v1/targets/{target}/health/wal`: checkpoints, WAL and buffer writes per bucket,
/// and `pg_stat_io` per backend type over the window.
#[utoipa::path(get, path = "/api/v1/targets/{target}/health/wal", tag = "health",
    params(Target, WindowParams),
    responses((status = 200, body = WalSeriesReply), (status = 400, body = ErrorBody)))]
pub async fn wal_history(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
) -> Result<Json<WalSeriesReply>, AppError> {
    let window = window.window(SystemTime::now())?;
    let request = WalSeriesRequest {
        target,
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    ask(&state, &request).await
}

#[derive(OpenApi)]
#[openapi(
    info(title = "pgmon API", description = "PostgreSQL activity, statements, objects, locks and health over time, and alerts. Authenticate with a session cookie (sign in at /sign-in) or `Authorization: Bearer <token>` (`pgmon users token`)."),
    paths(
        fleet, activity, sessions, session, statements, statement, objects, object_growth, current_locks, lock_history, database_stats,
        vacuum_health, running_maintenance, current_replication, replication_history, changes, wal_history,
        connections::list_targets, connections::get_target, connections::create_target, connections::update_target,
        connections::delete_target, connections::test_target,
        alerts::api_current, alerts::api_history, alerts::api_undeliverable, alerts::api_target_history, alerts::api_rules, alerts::api_put_rule,
        alerts::api_delete_rule, alerts::api_silences, alerts::api_add_silence, alerts::api_end_silence,
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
