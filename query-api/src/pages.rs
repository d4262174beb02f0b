//! HTML pages (maud + htmx) and the embedded static assets.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::Markup;
use pgmon_contract::event::SnapshotKind;
use pgmon_contract::query::{
    ActivityDimension, ChangesRequest, LockHistoryRequest, ObjectGrowthRequest, ObjectOrder, ObjectsRequest, SessionHistoryRequest,
    SessionsRequest, StatementHistoryRequest, StatementOrder, TopStatementsRequest, VacuumHealthRequest, WalSeriesRequest,
};
use pgmon_contract::target::TargetName;
use pgmon_ui::activity::ActivityView;
use pgmon_ui::health::HealthView;
use pgmon_ui::layout::page;
use pgmon_ui::objects::{AllObjectsView, ObjectFilter, ObjectView, ObjectsView};
use pgmon_ui::statements::StatementsView;

use crate::auth::Principal;
use crate::error::{AppError, PageError};
use crate::extract::{Params, Target};
use crate::params::{
    choice_name, ActivityParams, ObjectListParams, SessionParams, StatementListParams, Window, WindowParams, OBJECT_ORDER_CHOICES,
    STATEMENT_ORDER_CHOICES,
};
use crate::{targets, AppState};

/// `GET /`: the fleet overview.
pub async fn fleet(State(state): State<AppState>, Extension(principal): Extension<Principal>) -> Result<Markup, PageError> {
    let summaries = targets::target_summaries(&state).await?;
    let is_admin = principal.viewer().is_admin;
    Ok(page(
        &principal.viewer(),
        "Fleet",
        pgmon_ui::fleet::fleet_page(&summaries, is_admin),
    ))
}

/// `GET /fleet-table`: the fleet table htmx refreshes.
pub async fn fleet_table(State(state): State<AppState>, Extension(principal): Extension<Principal>) -> Result<Markup, PageError> {
    let summaries = targets::target_summaries(&state).await?;
    Ok(pgmon_ui::fleet::fleet_table(&summaries, principal.viewer().is_admin))
}

fn dimension_choices() -> Vec<(&'static str, &'static str)> {
    ActivityDimension::ALL
        .iter()
        .map(|dimension| (dimension.as_str(), dimension.label()))
        .collect()
}

/// `GET /targets/{target}`: the activity page, over a named range or an explicit window.
pub async fn activity(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
    Params(activity): Params<ActivityParams>,
) -> Result<Markup, PageError> {
    let range = if window.is_explicit() {
        None
    } else {
        Some(window.page_range("1h")?)
    };
    let window = window.window(SystemTime::now())?;
    let by = activity.dimension()?.as_str();
    let dimensions = dimension_choices();
    let max_connections = targets::max_connections(&state, &target).await?;
    let view = ActivityView {
        target: target.as_str(),
        range,
        window_us: (window.from_us, window.to_us),
        by,
        dimensions: &dimensions,
        max_connections,
    };
    Ok(page(
        &principal.viewer(),
        &format!("Activity of {target}"),
        pgmon_ui::activity::activity_page(&view),
    ))
}

/// `GET /targets/{target}/slice?from=&to=`: the sessions and top statements of a time slice.
pub async fn slice(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
) -> Result<Markup, PageError> {
    let window = window.window(SystemTime::now())?;
    let sessions = SessionsRequest {
        target: target.clone(),
        from_us: window.from_us,
        to_us: window.to_us,
        limit: 50,
    };
    // Statements are sampled every 10 s: widen a short slice so it holds at least one interval.
    let statements_window = (
        window.from_us.min(window.to_us - 20_000_000),
        window.to_us.max(window.from_us + 20_000_000),
    );
    let statements = TopStatementsRequest {
        target: target.clone(),
        from_us: statements_window.0,
        to_us: statements_window.1,
        order_by: StatementOrder::TotalTime,
        limit: 10,
    };
    let (sessions, statements, limitation) = tokio::try_join!(
        state.ask(&sessions),
        state.ask(&statements),
        targets::limitation(&state, &target, SnapshotKind::Statements),
    )?;
    // A limitation reported earlier may be gone (the extension created since): trust the data.
    let statements = (limitation.is_none() || !statements.is_empty()).then_some(statements.as_slice());
    Ok(pgmon_ui::activity::slice(
        target.as_str(),
        window.from_us,
        window.to_us,
        &sessions,
        statements,
    ))
}

/// `GET /targets/{target}/sessions/{pid}?from=&to=&backend_start=`: one session's samples.
pub async fn session(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
    Path((_, pid)): Path<(String, String)>,
    Params(window): Params<WindowParams>,
    Params(session): Params<SessionParams>,
) -> Result<Markup, PageError> {
    let pid: i32 = pid
        .parse()
        .map_err(|_| AppError::bad_request("pid", "pid must be a whole number"))?;
    let window = window.window(SystemTime::now())?;
    let request = SessionHistoryRequest {
        target: target.clone(),
        pid,
        backend_start_us: session.backend_start_us()?,
        from_us: window.from_us,
        to_us: window.to_us,
        limit: 5_000,
    };
    let samples = state.ask(&request).await?;
    Ok(page(
        &principal.viewer(),
        &format!("Session {pid} of {target}"),
        pgmon_ui::activity::session_page(target.as_str(), pid, window.from_us, window.to_us, &samples),
    ))
}

/// `GET /targets/{target}/statements?range=&order_by=`.
pub async fn statements(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
    Params(list): Params<StatementListParams>,
) -> Result<Markup, PageError> {
    let range = window.page_range("1h")?;
    let order = list.order_by()?;
    let order_name = choice_name(STATEMENT_ORDER_CHOICES, order);
    let window = range_window(range)?;
    let request = TopStatementsRequest {
        target: target.clone(),
        from_us: window.from_us,
        to_us: window.to_us,
        order_by: order,
        limit: 50,
    };
    let (statements, limitation) = tokio::try_join!(state.ask(&request), targets::limitation(&state, &target, SnapshotKind::Statements),)?;
    let view = StatementsView {
        target: target.as_str(),
        range,
        order_by: order_name,
        // A limitation reported earlier may be gone (the extension created since): trust the data.
        limitation: limitation.as_deref().filter(|_| statements.is_empty()),
        statements: &statements,
    };
    Ok(page(
        &principal.viewer(),
        &format!("Statements of {target}"),
        pgmon_ui::statements::statements_page(&view),
    ))
}

/// `GET /targets/{target}/statements/{query_id}?range=`.
pub async fn statement(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
    Path((_, query_id)): Path<(String, String)>,
    Params(window): Params<WindowParams>,
) -> Result<Markup, PageError> {
    let query_id: i64 = query_id
        .parse()
        .map_err(|_| AppError::bad_request("query_id", "query_id must be a whole number"))?;
    let range = window.page_range("24h")?;
    let window = range_window(range)?;
    let request = StatementHistoryRequest {
        target: target.clone(),
        query_id,
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    let history = state.ask(&request).await?;
    Ok(page(
        &principal.viewer(),
        &format!("Statement {query_id} of {target}"),
        pgmon_ui::statements::statement_page(target.as_str(), query_id, range, &history),
    ))
}

/// The window of a named page range, ending now.
fn range_window(range: &str) -> Result<Window, AppError> {
    WindowParams::of_range(range).window(SystemTime::now())
}

fn objects_request(target: &TargetName, filter: &ObjectFilter, order_by: ObjectOrder, offset: u32, limit: u32) -> ObjectsRequest {
    ObjectsRequest {
        target: target.clone(),
        database: filter.database.clone(),
        schema_name: None,
        kind: filter.kind.clone(),
        name_contains: filter.name.clone(),
        order_by,
        offset,
        limit,
    }
}

/// How many objects the tree lists at most; more asks for a narrower filter.
const TREE_LIMIT: u32 = 2_000;

/// `GET /targets/{target}/objects?name=&kind=&database=`: the tree and the biggest objects.
pub async fn objects(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
    Params(list): Params<ObjectListParams>,
) -> Result<Markup, PageError> {
    let filter = list.filter()?;
    let matching = objects_request(&target, &filter, ObjectOrder::Name, 0, TREE_LIMIT);
    let biggest = objects_request(&target, &ObjectFilter::default(), ObjectOrder::TotalBytes, 0, 10);
    let (matching, biggest, databases) = tokio::try_join!(state.ask(&matching), state.ask(&biggest), targets::databases(&state, &target),)?;
    let view = ObjectsView {
        target: target.as_str(),
        filter: &filter,
        databases: &databases,
        matching: &matching,
        biggest: &biggest.objects,
    };
    Ok(page(
        &principal.viewer(),
        &format!("Objects of {target}"),
        pgmon_ui::objects::objects_page(&view),
    ))
}

const OBJECTS_PAGE_SIZE: u32 = 100;

/// `GET /targets/{target}/objects/all?order_by=&page=&name=&kind=&database=`.
pub async fn all_objects(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
    Params(list): Params<ObjectListParams>,
) -> Result<Markup, PageError> {
    let filter = list.filter()?;
    let order = list.order_by()?;
    let order_name = choice_name(OBJECT_ORDER_CHOICES, order);
    let page_number = list.page()?;
    let request = objects_request(&target, &filter, order, (page_number - 1) * OBJECTS_PAGE_SIZE, OBJECTS_PAGE_SIZE);
    let (reply, databases) = tokio::try_join!(state.ask(&request), targets::databases(&state, &target),)?;
    let view = AllObjectsView {
        target: target.as_str(),
        filter: &filter,
        databases: &databases,
        order_by: order_name,
        page: page_number,
        page_size: OBJECTS_PAGE_SIZE,
        reply: &reply,
    };
    Ok(page(
        &principal.viewer(),
        &format!("All objects of {target}"),
        pgmon_ui::objects::all_objects_page(&view),
    ))
}

/// `GET /targets/{target}/objects/{database}/{schema}/{name}?range=`: one object's growth.
pub async fn object(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
    Path((_, database, schema_name, name)): Path<(String, String, String, String)>,
    Params(window): Params<WindowParams>,
) -> Result<Markup, PageError> {
    let range = window.page_range("7d")?;
    let window = range_window(range)?;
    let request = ObjectGrowthRequest {
        target: target.clone(),
        database: database.clone(),
        schema_name: schema_name.clone(),
        name: name.clone(),
        from_us: window.from_us,
        to_us: window.to_us,
    };
    let growth = state.ask(&request).await?;
    let view = ObjectView {
        target: target.as_str(),
        database: &database,
        schema_name: &schema_name,
        name: &name,
        range,
        growth: &growth,
    };
    Ok(page(
        &principal.viewer(),
        &format!("{schema_name}.{name} of {target}"),
        pgmon_ui::objects::object_page(&view),
    ))
}

/// `GET /targets/{target}/locks?range=`: blocking now and lock waits over the range.
pub async fn locks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
) -> Result<Markup, PageError> {
    // An alert links to its moment with `from` and `to`; the tabs give a named range.
    let range = if window.is_explicit() {
        None
    } else {
        Some(window.page_range("1h")?)
    };
    let window = match range {
        Some(range) => range_window(range)?,
        None => window.window(SystemTime::now())?,
    };
    let request = LockHistoryRequest {
        target: target.clone(),
        from_us: window.from_us,
        to_us: window.to_us,
        step_us: window.step_us,
    };
    let (blocking, history) = tokio::try_join!(targets::current_blocking(&state, &target), state.ask(&request),)?;
    Ok(page(
        &principal.viewer(),
        &format!("Locks of {target}"),
        pgmon_ui::locks::locks_page(target.as_str(), range, &blocking, &history, (window.from_us, window.to_us)),
    ))
}

/// `GET /targets/{target}/locks/current`: the blocking tree htmx refreshes.
pub async fn current_locks(State(state): State<AppState>, Target(target): Target) -> Result<Markup, PageError> {
    let blocking = targets::current_blocking(&state, &target).await?;
    Ok(pgmon_ui::locks::current_blocking(target.as_str(), &blocking))
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

/// How far back the Health tab charts checkpoints and WAL and sums I/O.
const WAL_RANGE: &str = "1h";

/// How far back the Health tab lists changes.
const CHANGES_RANGE: &str = "7d";

/// How many tables each list of the Health tab shows.
const HEALTH_LIST_LENGTH: u32 = 20;

/// `GET /targets/{target}/health`: wraparound and vacuum.
pub async fn health(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Target(target): Target,
) -> Result<Markup, PageError> {
    let request = VacuumHealthRequest {
        target: target.clone(),
        limit: HEALTH_LIST_LENGTH,
    };
    let week = range_window(CHANGES_RANGE)?;
    let changes = ChangesRequest {
        target: target.clone(),
        from_us: week.from_us,
        to_us: week.to_us,
    };
    let hour = range_window(WAL_RANGE)?;
    let wal = WalSeriesRequest {
        target: target.clone(),
        from_us: hour.from_us,
        to_us: hour.to_us,
        step_us: hour.step_us,
    };
    let (vacuum, running, replication, changes, wal) = tokio::try_join!(
        state.ask(&request),
        targets::running_maintenance(&state, &target),
        targets::current_replication(&state, &target),
        state.ask(&changes),
        state.ask(&wal),
    )?;
    let view = HealthView {
        target: target.as_str(),
        vacuum: &vacuum,
        running: &running,
        replication: &replication,
        changes: &changes,
        io: &wal.io,
    };
    Ok(page(
        &principal.viewer(),
        &format!("Health of {target}"),
        pgmon_ui::health::health_page(&view),
    ))
}
