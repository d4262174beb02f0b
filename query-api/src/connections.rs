//! Managing monitored connections, for admins: the pages (list, add, edit, delete,
//! enable/disable, test) and the `/api/v1/targets` CRUD, both over the registry in NATS KV.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use maud::Markup;
use pgmon_collector::{parse_label, test_connection, TargetSpec};
use pgmon_common::registry::{ConnectionTestReport, TargetRecord};
use pgmon_contract::target::TargetName;
use pgmon_ui::connections::{ConnectionFormValues, ConnectionRow};
use pgmon_ui::layout::page;
use serde::{Deserialize, Serialize};

use crate::auth::{Admin, Principal};
use crate::error::{AppError, PageError};
use crate::AppState;

/// A target as the API shows it: never its password.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TargetView {
    pub name: String,
    /// Connection string without the password.
    pub dsn: String,
    pub enabled: bool,
    /// Whether a password is stored (encrypted).
    pub has_password: bool,
    pub labels: BTreeMap<String, String>,
    /// Sampling intervals that differ from the collector's defaults, by kind.
    pub intervals: BTreeMap<String, String>,
}

impl From<&TargetRecord> for TargetView {
    fn from(record: &TargetRecord) -> TargetView {
        TargetView {
            name: record.name.to_string(),
            dsn: record.dsn.clone(),
            enabled: record.enabled,
            has_password: record.sealed_password.is_some(),
            labels: record.labels.clone(),
            intervals: record.intervals.clone(),
        }
    }
}

/// A target to add or change. On change, an absent or empty password keeps the stored one.
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct TargetInput {
    /// Lowercase letters, digits, `_` and `-` (ignored on change: the path names the target).
    #[serde(default)]
    pub name: String,
    /// libpq key=value or a `postgresql://` URL, without the password.
    pub dsn: String,
    /// Stored encrypted; never returned.
    #[serde(default)]
    pub password: Option<String>,
    /// Remove the stored password.
    #[serde(default)]
    pub clear_password: bool,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn enabled_by_default() -> bool {
    true
}

type FieldErrors = Vec<(&'static str, String)>;

/// A JSON body whose rejections (not JSON, wrong types, no `Content-Type`) are the API's JSON
/// 400 naming the body, like every other bad input.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<ApiJson<T>, AppError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::bad_request("body", "send the body as application/json")),
            Err(rejection) => Err(AppError::bad_request("body", rejection.body_text())),
        }
    }
}

/// Checks an input and builds the record to store; every problem names its field.
fn record_of(state: &AppState, name: &str, input: &TargetInput, existing: Option<&TargetRecord>) -> Result<TargetRecord, FieldErrors> {
    let mut errors = FieldErrors::new();
    let name = match name.parse::<TargetName>() {
        Ok(name) => Some(name),
        Err(error) => {
            errors.push(("name", error.to_string()));
            None
        }
    };
    let dsn = input.dsn.trim();
    let mut spec = None;
    if dsn.is_empty() {
        errors.push(("dsn", "the connection string is required".to_owned()));
    } else if let Some(name) = &name {
        match TargetSpec::check_registry_dsn(name, dsn) {
            Ok(checked) => spec = Some(checked),
            Err(error) => errors.push(("dsn", error.to_string())),
        }
    }
    for (key, value) in &input.labels {
        if let Err(error) = parse_label(&format!("{key}={value}")) {
            errors.push(("labels", error));
        }
    }
    let password = input.password.as_deref().filter(|password| !password.is_empty());
    if password.is_some() && state.secret_key.is_none() {
        errors.push((
            "password",
            "this web server has no secret key (PGMON_SECRET_KEY), so it cannot store passwords encrypted".to_owned(),
        ));
    }
    let Some((name, spec)) = name.zip(spec).filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let sealed_password = match (password, &state.secret_key) {
        (Some(password), Some(key)) => Some(spec.seal_password(key, password)),
        _ if input.clear_password => None,
        _ => match existing.and_then(|record| record.sealed_password.clone()) {
            Some(_) if !existing.is_some_and(|record| same_password_destination(record, &spec)) => {
                return Err(vec![(
                    "password",
                    "the user, host, port or TLS settings changed: enter the password again or remove it (a stored password is only sent where it was given for)".to_owned(),
                )]);
            }
            kept => kept,
        },
    };
    Ok(TargetRecord {
        name,
        dsn: dsn.to_owned(),
        sealed_password,
        enabled: input.enabled,
        labels: input.labels.clone(),
        intervals: existing.map(|record| record.intervals.clone()).unwrap_or_default(),
    })
}

/// Whether the stored record's password may go where `spec` connects.
fn same_password_destination(record: &TargetRecord, spec: &TargetSpec) -> bool {
    TargetSpec::new(record.name.as_str(), &record.dsn).is_ok_and(|stored| stored.same_password_destination(spec))
}

async fn existing(state: &AppState, name: &str) -> Result<Option<TargetRecord>, AppError> {
    let Ok(name) = name.parse::<TargetName>() else {
        return Ok(None);
    };
    state.registry.get(&name).await.map_err(|e| AppError::Unavailable(e.to_string()))
}

/// The registered target of that name, or 404.
async fn registered(state: &AppState, name: &str) -> Result<TargetRecord, AppError> {
    existing(state, name)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no registered target is named {name}")))
}

/// Removes a registered target, or 404.
async fn remove_registered(state: &AppState, target: &str) -> Result<TargetName, AppError> {
    let name = crate::params::target_name(target)?;
    let removed = state
        .registry
        .remove(&name)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    if !removed {
        return Err(AppError::NotFound(format!("no registered target is named {target}")));
    }
    Ok(name)
}

async fn store(state: &AppState, record: &TargetRecord) -> Result<(), AppError> {
    state.registry.put(record).await.map_err(|e| AppError::Unavailable(e.to_string()))
}

fn first_error(errors: FieldErrors) -> AppError {
    let (field, message) = errors.into_iter().next().expect("at least one error");
    AppError::bad_request(field, message)
}

/// Runs "test connection" on what would be stored, the password opened from the record or given.
async fn run_test(state: &AppState, principal: &Principal, record: &TargetRecord) -> Result<ConnectionTestReport, AppError> {
    let spec =
        TargetSpec::from_record(record, state.secret_key.as_deref()).map_err(|e| AppError::bad_request("password", e.to_string()))?;
    let report = test_connection(&spec).await;
    let outcome = match report.failure {
        None => "connected".to_owned(),
        Some(reason) => format!("failed: {reason:?}"),
    };
    audit(principal, "connection tested", record.name.as_str(), &outcome);
    Ok(report)
}

/// One event of the audit trail: who changed or tested which target, and the outcome. They go
/// to the log under their own log target, `pgmon::audit`, so they can be kept apart
/// (`RUST_LOG=info` includes them; `--log-format json` makes them machine-readable).
fn audit(principal: &Principal, action: &'static str, target: &str, outcome: &str) {
    tracing::info!(target: "pgmon::audit", user = %principal.user, role = %principal.role.as_str(), action, monitored_target = target, outcome, "audit");
}

// ---- JSON API ----

/// `GET /api/v1/targets`: registered targets.
#[utoipa::path(get, path = "/api/v1/targets", tag = "targets",
    responses((status = 200, body = Vec<TargetView>), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_targets(State(state): State<AppState>) -> Result<Json<Vec<TargetView>>, AppError> {
    let (records, _) = state.registry.list().await.map_err(|e| AppError::Unavailable(e.to_string()))?;
    Ok(Json(records.iter().map(TargetView::from).collect()))
}

/// `GET /api/v1/targets/{target}`.
#[utoipa::path(get, path = "/api/v1/targets/{target}", tag = "targets", params(("target" = String, Path)),
    responses((status = 200, body = TargetView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_target(State(state): State<AppState>, Path(target): Path<String>) -> Result<Json<TargetView>, AppError> {
    let record = registered(&state, &target).await?;
    Ok(Json(TargetView::from(&record)))
}

/// `POST /api/v1/targets` (admin).
#[utoipa::path(post, path = "/api/v1/targets", tag = "targets", request_body = TargetInput,
    responses((status = 201, body = TargetView), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_target(
    State(state): State<AppState>,
    Admin(principal): Admin,
    ApiJson(input): ApiJson<TargetInput>,
) -> Result<Response, AppError> {
    if existing(&state, &input.name).await?.is_some() {
        return Err(AppError::Conflict(format!("a target named {} exists already", input.name)));
    }
    let record = record_of(&state, &input.name, &input, None).map_err(first_error)?;
    store(&state, &record).await?;
    audit(&principal, "target added", record.name.as_str(), "stored");
    Ok((StatusCode::CREATED, Json(TargetView::from(&record))).into_response())
}

/// `PUT /api/v1/targets/{target}` (admin): replaces the settings; an empty password keeps it.
#[utoipa::path(put, path = "/api/v1/targets/{target}", tag = "targets", params(("target" = String, Path)), request_body = TargetInput,
    responses((status = 200, body = TargetView), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn update_target(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(target): Path<String>,
    ApiJson(input): ApiJson<TargetInput>,
) -> Result<Json<TargetView>, AppError> {
    let current = registered(&state, &target).await?;
    let record = record_of(&state, &target, &input, Some(&current)).map_err(first_error)?;
    store(&state, &record).await?;
    audit(&principal, "target changed", record.name.as_str(), "stored");
    Ok(Json(TargetView::from(&record)))
}

/// `DELETE /api/v1/targets/{target}` (admin): stops sampling it; its history stays.
#[utoipa::path(delete, path = "/api/v1/targets/{target}", tag = "targets", params(("target" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_target(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(target): Path<String>,
) -> Result<StatusCode, AppError> {
    let name = remove_registered(&state, &target).await?;
    audit(&principal, "target removed", name.as_str(), "removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/targets/{target}/test` (admin): tests the stored settings.
#[utoipa::path(post, path = "/api/v1/targets/{target}/test", tag = "targets", params(("target" = String, Path)),
    responses((status = 200, body = ConnectionTestReport), (status = 404, body = crate::error::ErrorBody)))]
pub async fn test_target(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(target): Path<String>,
) -> Result<Json<ConnectionTestReport>, AppError> {
    let record = registered(&state, &target).await?;
    Ok(Json(run_test(&state, &principal, &record).await?))
}

// ---- pages ----

/// The form's fields as the browser sends them.
#[derive(Deserialize, Default)]
pub struct ConnectionForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    dsn: String,
    #[serde(default)]
    password: String,
    clear_password: Option<String>,
    #[serde(default)]
    labels: String,
    enabled: Option<String>,
    /// The target being edited; empty when adding.
    #[serde(default)]
    editing: String,
}

impl ConnectionForm {
    /// The input, or the labels field's error.
    fn input(&self) -> Result<TargetInput, FieldErrors> {
        let mut labels = BTreeMap::new();
        for pair in self.labels.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
            match parse_label(pair) {
                Ok((key, value)) => {
                    labels.insert(key, value);
                }
                Err(error) => return Err(vec![("labels", error)]),
            }
        }
        Ok(TargetInput {
            name: self.name.trim().to_owned(),
            dsn: self.dsn.clone(),
            password: Some(self.password.clone()),
            clear_password: self.clear_password.is_some(),
            enabled: self.enabled.is_some(),
            labels,
        })
    }

    fn values(&self, has_stored_password: bool) -> ConnectionFormValues {
        ConnectionFormValues {
            name: self.name.clone(),
            dsn: self.dsn.clone(),
            enabled: self.enabled.is_some(),
            labels: self.labels.clone(),
            has_stored_password,
        }
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /connections` (admin).
pub async fn connections_page(State(state): State<AppState>, Admin(principal): Admin) -> Result<Markup, PageError> {
    let (records, invalid) = state.registry.list().await.map_err(|e| AppError::Unavailable(e.to_string()))?;
    let rows: Vec<ConnectionRow> = records
        .iter()
        .map(|record| ConnectionRow {
            name: record.name.to_string(),
            dsn: record.dsn.clone(),
            enabled: record.enabled,
            has_password: record.sealed_password.is_some(),
            labels: labels_text(&record.labels),
        })
        .collect();
    let notice = (!invalid.is_empty()).then(|| format!("{} registry entries cannot be read; see the server log", invalid.len()));
    for error in invalid {
        tracing::warn!(%error, "registry entry not shown");
    }
    let viewer = principal.viewer();
    Ok(page(
        &viewer,
        "Connections",
        pgmon_ui::connections::connections_page(&viewer, &rows, notice.as_deref()),
    ))
}

/// `GET /connections/new` (admin).
pub async fn new_connection(Admin(principal): Admin) -> Markup {
    let viewer = principal.viewer();
    let values = ConnectionFormValues {
        enabled: true,
        ..Default::default()
    };
    page(
        &viewer,
        "Add a connection",
        pgmon_ui::connections::connection_form(&viewer, None, &values, &[]),
    )
}

/// `GET /connections/{target}/edit` (admin).
pub async fn edit_connection(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(target): Path<String>,
) -> Result<Markup, PageError> {
    let record = registered(&state, &target).await?;
    let viewer = principal.viewer();
    let values = ConnectionFormValues {
        name: record.name.to_string(),
        dsn: record.dsn.clone(),
        enabled: record.enabled,
        labels: labels_text(&record.labels),
        has_stored_password: record.sealed_password.is_some(),
    };
    Ok(page(
        &viewer,
        &format!("Edit {target}"),
        pgmon_ui::connections::connection_form(&viewer, Some(&target), &values, &[]),
    ))
}

fn form_with_errors(
    principal: &crate::auth::Principal,
    editing: Option<&str>,
    form: &ConnectionForm,
    has_stored_password: bool,
    errors: &FieldErrors,
) -> Response {
    let viewer = principal.viewer();
    let mut values = form.values(has_stored_password);
    // A connection string refused for carrying a password is not sent back to the browser.
    if errors
        .iter()
        .any(|(field, message)| *field == "dsn" && message.contains("password"))
    {
        values.dsn.clear();
    }
    let body = pgmon_ui::connections::connection_form(&viewer, editing, &values, errors);
    (StatusCode::UNPROCESSABLE_ENTITY, page(&viewer, "Check the connection", body)).into_response()
}

/// `POST /connections` (admin): adds a target, or shows the form again with the errors.
pub async fn create_connection(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Form(form): Form<ConnectionForm>,
) -> Result<Response, PageError> {
    let input = match form.input() {
        Ok(input) => input,
        Err(errors) => return Ok(form_with_errors(&principal, None, &form, false, &errors)),
    };
    if existing(&state, &input.name).await?.is_some() {
        let errors = vec![("name", format!("a target named {} exists already", input.name))];
        return Ok(form_with_errors(&principal, None, &form, false, &errors));
    }
    match record_of(&state, &input.name, &input, None) {
        Ok(record) => {
            store(&state, &record).await?;
            audit(&principal, "target added", record.name.as_str(), "stored");
            Ok(Redirect::to("/connections").into_response())
        }
        Err(errors) => Ok(form_with_errors(&principal, None, &form, false, &errors)),
    }
}

/// `POST /connections/{target}` (admin): saves an edited target.
pub async fn update_connection(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(target): Path<String>,
    Form(form): Form<ConnectionForm>,
) -> Result<Response, PageError> {
    let current = registered(&state, &target).await?;
    let has_password = current.sealed_password.is_some();
    let result = form.input().and_then(|input| record_of(&state, &target, &input, Some(&current)));
    match result {
        Ok(record) => {
            store(&state, &record).await?;
            audit(&principal, "target changed", record.name.as_str(), "stored");
            Ok(Redirect::to("/connections").into_response())
        }
        Err(errors) => Ok(form_with_errors(&principal, Some(&target), &form, has_password, &errors)),
    }
}

#[derive(Deserialize)]
pub struct EnabledForm {
    enabled: String,
}

/// `POST /connections/{target}/enabled` (admin): starts or stops sampling.
pub async fn set_enabled(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(target): Path<String>,
    Form(form): Form<EnabledForm>,
) -> Result<Response, PageError> {
    let mut record = registered(&state, &target).await?;
    record.enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(AppError::bad_request("enabled", "enabled must be true or false").into()),
    };
    store(&state, &record).await?;
    audit(
        &principal,
        "target sampling switched",
        record.name.as_str(),
        if record.enabled { "enabled" } else { "disabled" },
    );
    Ok(Redirect::to("/connections").into_response())
}

/// `POST /connections/{target}/delete` (admin).
pub async fn delete_connection(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(target): Path<String>,
) -> Result<Response, PageError> {
    let name = remove_registered(&state, &target).await?;
    audit(&principal, "target removed", name.as_str(), "removed");
    Ok(Redirect::to("/connections").into_response())
}

/// `POST /connections/test` (admin, htmx): tests the form's settings without saving them; an
/// empty password while editing uses the stored one.
pub async fn test_form(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Form(form): Form<ConnectionForm>,
) -> Result<Markup, PageError> {
    let editing = (!form.editing.is_empty()).then_some(form.editing.as_str());
    let current = match editing {
        Some(name) => existing(&state, name).await?,
        None => None,
    };
    let name = editing.unwrap_or(form.name.trim());
    let record = form.input().and_then(|input| record_of(&state, name, &input, current.as_ref()));
    let record = match record {
        Ok(record) => record,
        Err(errors) => {
            let messages: Vec<String> = errors.into_iter().map(|(field, message)| format!("{field}: {message}")).collect();
            return Ok(pgmon_ui::connections::test_problem(&messages.join("; ")));
        }
    };
    match run_test(&state, &principal, &record).await {
        Ok(report) => Ok(pgmon_ui::connections::test_result(&report)),
        Err(error) => Ok(pgmon_ui::connections::test_problem(&error.to_string())),
    }
}
