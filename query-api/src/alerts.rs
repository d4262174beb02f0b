//! Alerts in the web: where rules stand now (the alert-state bucket), what fired when (the
//! alert stream), the rules and silences (their buckets, edited by admins), as the Alerts page
//! and the `/api/v1/alerts` endpoints.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{consumer, kv};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use futures::{StreamExt, TryStreamExt};
use maud::Markup;
use pgmon_alerter::rules::{rule_problems, Rule};
use pgmon_contract::alert::{AlertNotification, AlertPhase, AlertState, Silence};
use pgmon_contract::subjects::{
    ALERT_RULES_BUCKET, ALERT_SILENCES_BUCKET, ALERT_STATE_BUCKET, ALERT_STREAM, KNOWN_RECEIVERS_KEY, UNDELIVERABLE_REASON_HEADER,
};
use pgmon_contract::target::TargetName;
use pgmon_ui::alerts::{AlertsView, RuleDraft, RuleRow, UndeliveredRow};
use pgmon_ui::layout::page;
use serde::{Deserialize, Serialize};

use crate::auth::{Admin, Principal};
use crate::connections::ApiJson;
use crate::error::{AppError, ErrorBody, PageError};
use crate::extract::{Params, Target};
use crate::params::{self, WindowParams};
use crate::AppState;

/// The most records a read of alert state or rules takes: beyond, the answer says it is cut.
const MOST_RECORDS: usize = 10_000;
/// The most transitions one history answer holds (the newest of the window).
pub const MOST_HISTORY_EVENTS: usize = 2_000;
/// The window of the page's history.
const PAGE_HISTORY: Duration = Duration::from_secs(7 * 24 * 3600);

async fn bucket(state: &AppState, name: &'static str) -> Result<kv::Store, AppError> {
    state
        .jetstream
        .get_key_value(name)
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot read the {name} bucket: {e}")))
}

/// Every entry of a bucket that reads as `Entry`, by key order; keys with a dot are not
/// entries (the list of known receivers).
async fn entries<Entry: serde::de::DeserializeOwned>(store: &kv::Store, key_filter: impl Fn(&str) -> bool) -> Result<Vec<Entry>, AppError> {
    let unavailable = |e: String| AppError::Unavailable(format!("cannot read alerts: {e}"));
    let mut keys: Vec<String> = store
        .keys()
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .try_filter(|key| futures::future::ready(!key.contains('.') || key_filter(key)))
        .take(MOST_RECORDS)
        .try_collect()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    keys.retain(|key| key_filter(key));
    keys.sort();
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(value) = store.get(&key).await.map_err(|e| unavailable(e.to_string()))? {
            if let Ok(entry) = serde_json::from_slice(&value) {
                found.push(entry);
            }
        }
    }
    Ok(found)
}

/// Where every rule stands on every target (or on `target`), pending, firing or resolving.
pub async fn current_alerts(state: &AppState, target: Option<&TargetName>) -> Result<Vec<AlertState>, AppError> {
    let store = bucket(state, ALERT_STATE_BUCKET).await?;
    let suffix = target.map(|target| format!(".{target}"));
    let mut states: Vec<AlertState> = entries(&store, |key| suffix.as_deref().is_none_or(|suffix| key.ends_with(suffix))).await?;
    // The record of a rule deleted while it fired stays in the bucket: it fires no more.
    let rule_names: BTreeSet<String> = rules(state).await?.into_iter().map(|rule| rule.name).collect();
    states.retain(|alert| {
        alert.phase != AlertPhase::Inactive && rule_names.contains(&alert.rule) && target.is_none_or(|target| &alert.target == target)
    });
    Ok(states)
}

/// The transitions of the window, oldest first, at most [`MOST_HISTORY_EVENTS`] (the newest);
/// whether some were left out.
pub async fn alert_history(
    state: &AppState,
    target: Option<&TargetName>,
    from_us: i64,
    to_us: i64,
) -> Result<(Vec<AlertNotification>, bool), AppError> {
    let filter = match target {
        Some(target) => format!("pgmon.alert.event.{target}.*"),
        None => "pgmon.alert.event.>".to_owned(),
    };
    read_alert_stream(state, filter, from_us, to_us, |message| {
        serde_json::from_slice(&message.payload).ok()
    })
    .await
}

/// A notification a receiver never took, kept in the alert stream.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UndeliverableNotification {
    pub receiver: String,
    /// Why the last attempt failed.
    pub reason: String,
    pub notification: AlertNotification,
}

/// The notifications given up in the window, oldest first, bounded as the history.
pub async fn undeliverable(state: &AppState, from_us: i64, to_us: i64) -> Result<(Vec<UndeliverableNotification>, bool), AppError> {
    read_alert_stream(state, "pgmon.alert.undeliverable.>".to_owned(), from_us, to_us, |message| {
        Some(UndeliverableNotification {
            receiver: message.subject.as_str().rsplit('.').next()?.to_owned(),
            reason: message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(UNDELIVERABLE_REASON_HEADER))
                .map_or_else(String::new, |reason| reason.as_str().to_owned()),
            notification: serde_json::from_slice(&message.payload).ok()?,
        })
    })
    .await
}

/// Something recorded in the alert stream at a moment of sample time.
trait AtMoment {
    fn at_us(&self) -> i64;
}

impl AtMoment for AlertNotification {
    fn at_us(&self) -> i64 {
        self.at_us
    }
}

impl AtMoment for UndeliverableNotification {
    fn at_us(&self) -> i64 {
        self.notification.at_us
    }
}

/// The entries of the alert stream on `filter` stored since `from_us` whose moment is in the
/// window, oldest first, at most [`MOST_HISTORY_EVENTS`] (the newest); whether some were left out.
async fn read_alert_stream<Entry: AtMoment>(
    state: &AppState,
    filter: String,
    from_us: i64,
    to_us: i64,
    decode: impl Fn(&async_nats::jetstream::Message) -> Option<Entry>,
) -> Result<(Vec<Entry>, bool), AppError> {
    let unavailable = |e: String| AppError::Unavailable(format!("cannot read the alert history: {e}"));
    let stream = state
        .jetstream
        .get_stream(ALERT_STREAM)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let start = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(from_us) * 1000)
        .map_err(|e| AppError::bad_request("from", e.to_string()))?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: start },
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut entries = std::collections::VecDeque::new();
    let mut truncated = false;
    let mut messages = consumer.messages().await.map_err(|e| unavailable(e.to_string()))?;
    loop {
        // Nothing more within a moment: the end of the stream.
        let next = tokio::time::timeout(Duration::from_millis(200), messages.next()).await;
        let Ok(Some(Ok(message))) = next else { break };
        if let Some(entry) = decode(&message) {
            if entry.at_us() > to_us {
                break;
            }
            if entry.at_us() >= from_us {
                entries.push_back(entry);
                if entries.len() > MOST_HISTORY_EVENTS {
                    entries.pop_front();
                    truncated = true;
                }
            }
        }
        if message.info().is_ok_and(|info| info.pending == 0) {
            break;
        }
    }
    Ok((entries.into(), truncated))
}

pub async fn rules(state: &AppState) -> Result<Vec<Rule>, AppError> {
    entries(&bucket(state, ALERT_RULES_BUCKET).await?, |key| !key.contains('.')).await
}

/// The receivers the alerters deliver to, as they listed them.
async fn known_receivers(store: &kv::Store) -> BTreeSet<String> {
    let listed = store.get(KNOWN_RECEIVERS_KEY).await.ok().flatten();
    listed
        .and_then(|value| serde_json::from_slice::<BTreeSet<String>>(&value).ok())
        .unwrap_or_default()
}

/// Checks a rule and stores it (replacing one of its name); the problems name their fields.
async fn save_rule(state: &AppState, rule: &Rule) -> Result<(), Vec<String>> {
    let store = bucket(state, ALERT_RULES_BUCKET).await.map_err(|e| vec![e.to_string()])?;
    let receivers = known_receivers(&store).await;
    let receivers: BTreeSet<&str> = receivers.iter().map(String::as_str).collect();
    let problems = rule_problems(rule, &receivers);
    if !problems.is_empty() {
        return Err(problems);
    }
    let value = serde_json::to_vec(rule).expect("rules always serialise");
    store
        .put(&rule.name, value.into())
        .await
        .map(|_| ())
        .map_err(|e| vec![format!("cannot store the rule: {e}")])
}

async fn delete_rule(state: &AppState, name: &str) -> Result<(), AppError> {
    if name.contains('.') || name.is_empty() {
        return Err(AppError::NotFound(format!("there is no rule named {name:?}")));
    }
    let store = bucket(state, ALERT_RULES_BUCKET).await?;
    if store.get(name).await.ok().flatten().is_none() {
        return Err(AppError::NotFound(format!("there is no rule named {name:?}")));
    }
    store
        .delete(name)
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot delete the rule: {e}")))
}

pub async fn silences(state: &AppState) -> Result<Vec<Silence>, AppError> {
    entries(&bucket(state, ALERT_SILENCES_BUCKET).await?, |_| true).await
}

/// A new silence as an admin asks for it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SilenceInput {
    /// The rule to silence; every rule when empty.
    #[serde(default)]
    pub rule: Option<String>,
    /// The target to silence; every target when empty.
    #[serde(default)]
    pub target: Option<String>,
    /// How long from now: `30m`, `2h`, `1d` (at most 30 days).
    pub duration: String,
    /// Why, for whoever wonders later.
    pub reason: String,
}

/// The longest a silence may last: a forgotten one must not mute a rule for ever.
const LONGEST_SILENCE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Checks a silence and stores it.
async fn add_silence(state: &AppState, principal: &Principal, input: &SilenceInput) -> Result<Silence, AppError> {
    let given = |value: &Option<String>| value.as_deref().map(str::trim).filter(|value| !value.is_empty()).map(str::to_owned);
    let rule = given(&input.rule);
    if rule.as_deref().is_some_and(|rule| rule.contains('.') || rule.len() > 64) {
        return Err(AppError::bad_request("rule", "rule must be a rule's name"));
    }
    let target = given(&input.target).map(|target| params::target_name(&target)).transpose()?;
    let duration = humantime::parse_duration(input.duration.trim())
        .map_err(|_| AppError::bad_request("duration", "duration must be such as 30m, 2h or 1d"))?;
    if duration.is_zero() || duration > LONGEST_SILENCE {
        return Err(AppError::bad_request("duration", "duration must be above 0 and at most 30 days"));
    }
    let reason = input.reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(AppError::bad_request("reason", "say why in 1 to 500 characters"));
    }
    let created_at_us = params::now_us();
    let silence = Silence {
        id: format!("{created_at_us:x}{:04x}", rand::random::<u16>()),
        rule,
        target,
        until_us: created_at_us + i64::try_from(duration.as_micros()).unwrap_or(i64::MAX),
        reason: reason.to_owned(),
        created_by: principal.user.to_string(),
        created_at_us,
    };
    bucket(state, ALERT_SILENCES_BUCKET)
        .await?
        .put(&silence.id, serde_json::to_vec(&silence).expect("silences always serialise").into())
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot store the silence: {e}")))?;
    tracing::info!(target: "pgmon::audit", user = %principal.user, role = principal.role.as_str(), action = "silence added", silence = %silence.id, rule = ?silence.rule, alert_target = ?silence.target, until_us = silence.until_us, "audit");
    Ok(silence)
}

async fn end_silence(state: &AppState, principal: &Principal, id: &str) -> Result<(), AppError> {
    let store = bucket(state, ALERT_SILENCES_BUCKET).await?;
    let valid = !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_hexdigit());
    if !valid || store.get(id).await.ok().flatten().is_none() {
        return Err(AppError::NotFound(format!("there is no silence {id:?}")));
    }
    store
        .delete(id)
        .await
        .map_err(|e| AppError::Unavailable(format!("cannot end the silence: {e}")))?;
    tracing::info!(target: "pgmon::audit", user = %principal.user, role = principal.role.as_str(), action = "silence ended", silence = %id, "audit");
    Ok(())
}

// ---- API ----

/// Alerts pending, firing or resolving now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CurrentAlerts {
    pub alerts: Vec<AlertState>,
}

/// The transitions of a window, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertHistory {
    pub events: Vec<AlertNotification>,
    /// Whether older transitions of the window were left out (at most 2,000 are given).
    pub truncated: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertFilter {
    /// Only this target's alerts.
    pub target: Option<String>,
}

fn target_of(filter: &AlertFilter) -> Result<Option<TargetName>, AppError> {
    filter
        .target
        .as_deref()
        .filter(|target| !target.is_empty())
        .map(params::target_name)
        .transpose()
}

/// `GET /api/v1/alerts`: alerts pending, firing or resolving now.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertFilter),
    responses((status = 200, body = CurrentAlerts), (status = 400, body = ErrorBody)))]
pub async fn api_current(State(state): State<AppState>, Query(filter): Query<AlertFilter>) -> Result<Json<CurrentAlerts>, AppError> {
    let target = target_of(&filter)?;
    Ok(Json(CurrentAlerts {
        alerts: current_alerts(&state, target.as_ref()).await?,
    }))
}

/// `GET /api/v1/alerts/history`: what fired and resolved in the window (default the last hour).
#[utoipa::path(get, path = "/api/v1/alerts/history", tag = "alerts", params(AlertFilter, WindowParams),
    responses((status = 200, body = AlertHistory), (status = 400, body = ErrorBody)))]
pub async fn api_history(
    State(state): State<AppState>,
    Query(filter): Query<AlertFilter>,
    Params(window): Params<WindowParams>,
) -> Result<Json<AlertHistory>, AppError> {
    let target = target_of(&filter)?;
    history_reply(&state, target.as_ref(), &window).await
}

/// `GET /api/v1/targets/{target}/alerts`: one target's transitions in the window; the activity
/// chart marks them.
#[utoipa::path(get, path = "/api/v1/targets/{target}/alerts", tag = "alerts", params(Target, WindowParams),
    responses((status = 200, body = AlertHistory), (status = 400, body = ErrorBody)))]
pub async fn api_target_history(
    State(state): State<AppState>,
    Target(target): Target,
    Params(window): Params<WindowParams>,
) -> Result<Json<AlertHistory>, AppError> {
    history_reply(&state, Some(&target), &window).await
}

async fn history_reply(state: &AppState, target: Option<&TargetName>, window: &WindowParams) -> Result<Json<AlertHistory>, AppError> {
    let window = window.window(SystemTime::now())?;
    let (events, truncated) = alert_history(state, target, window.from_us, window.to_us).await?;
    Ok(Json(AlertHistory { events, truncated }))
}

/// Notifications given up, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UndeliverableList {
    pub notifications: Vec<UndeliverableNotification>,
    /// Whether older ones of the window were left out (at most 2,000 are given).
    pub truncated: bool,
}

/// `GET /api/v1/alerts/undeliverable`: notifications no receiver took, with why (default the
/// last hour).
#[utoipa::path(get, path = "/api/v1/alerts/undeliverable", tag = "alerts", params(WindowParams),
    responses((status = 200, body = UndeliverableList), (status = 400, body = ErrorBody)))]
pub async fn api_undeliverable(
    State(state): State<AppState>,
    Params(window): Params<WindowParams>,
) -> Result<Json<UndeliverableList>, AppError> {
    let window = window.window(SystemTime::now())?;
    let (notifications, truncated) = undeliverable(&state, window.from_us, window.to_us).await?;
    Ok(Json(UndeliverableList { notifications, truncated }))
}

/// `GET /api/v1/alerts/rules`: every rule, as the alerts file writes it (in JSON).
#[utoipa::path(get, path = "/api/v1/alerts/rules", tag = "alerts",
    responses((status = 200, description = "the rules", body = Vec<Object>)))]
pub async fn api_rules(State(state): State<AppState>) -> Result<Json<Vec<Rule>>, AppError> {
    Ok(Json(rules(&state).await?))
}

/// `PUT /api/v1/alerts/rules/{rule}` (admin): adds or replaces a rule; a 400 names each
/// problem's field.
#[utoipa::path(put, path = "/api/v1/alerts/rules/{rule}", tag = "alerts", params(("rule" = String, Path)),
    request_body(content = Object, description = "a rule as the alerts file writes it, in JSON"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)))]
pub async fn api_put_rule(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(name): Path<String>,
    ApiJson(rule): ApiJson<serde_json::Value>,
) -> Result<Json<Rule>, AppError> {
    let rule: Rule = serde_json::from_value(rule).map_err(|e| AppError::bad_request("body", format!("not a rule: {e}")))?;
    if rule.name != name {
        return Err(AppError::bad_request(
            "name",
            format!("the rule is named {:?}, the address {name:?}", rule.name),
        ));
    }
    save_rule(&state, &rule)
        .await
        .map_err(|problems| AppError::bad_request("rule", problems.join("; ")))?;
    tracing::info!(target: "pgmon::audit", user = %principal.user, role = principal.role.as_str(), action = "rule saved", rule = %rule.name, "audit");
    Ok(Json(rule))
}

/// `DELETE /api/v1/alerts/rules/{rule}` (admin).
#[utoipa::path(delete, path = "/api/v1/alerts/rules/{rule}", tag = "alerts", params(("rule" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn api_delete_rule(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    delete_rule(&state, &name).await?;
    tracing::info!(target: "pgmon::audit", user = %principal.user, role = principal.role.as_str(), action = "rule deleted", rule = %name, "audit");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/alerts/silences`: every silence, ended ones too until they are removed.
#[utoipa::path(get, path = "/api/v1/alerts/silences", tag = "alerts", responses((status = 200, body = Vec<Silence>)))]
pub async fn api_silences(State(state): State<AppState>) -> Result<Json<Vec<Silence>>, AppError> {
    Ok(Json(silences(&state).await?))
}

/// `POST /api/v1/alerts/silences` (admin): silences a rule, a target, or one rule on one target.
#[utoipa::path(post, path = "/api/v1/alerts/silences", tag = "alerts", request_body = SilenceInput,
    responses((status = 201, body = Silence), (status = 400, body = ErrorBody)))]
pub async fn api_add_silence(
    State(state): State<AppState>,
    Admin(principal): Admin,
    ApiJson(input): ApiJson<SilenceInput>,
) -> Result<Response, AppError> {
    let silence = add_silence(&state, &principal, &input).await?;
    Ok((StatusCode::CREATED, Json(silence)).into_response())
}

/// `DELETE /api/v1/alerts/silences/{id}` (admin): ends a silence.
#[utoipa::path(delete, path = "/api/v1/alerts/silences/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn api_end_silence(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    end_silence(&state, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- pages ----

/// A rule written out for the page.
fn rule_row(rule: &Rule) -> RuleRow {
    let mut targets: Vec<String> = rule.targets.names.clone();
    targets.extend(rule.targets.labels.iter().map(|(key, value)| format!("{key}={value}")));
    RuleRow {
        name: rule.name.clone(),
        when: rule.when.as_toml(),
        for_duration: humantime::format_duration(rule.for_duration.0).to_string(),
        severity: rule.severity.as_str().to_owned(),
        receivers: rule.receivers.join(", "),
        targets: if targets.is_empty() {
            "every target".to_owned()
        } else {
            targets.join(", ")
        },
    }
}

/// What the page shows besides its lists: a rule typed with its problems, a silence's problem.
#[derive(Default)]
struct PageExtras<'a> {
    draft: Option<RuleDraft<'a>>,
    silence_problem: Option<&'a str>,
}

async fn alerts_markup(
    state: &AppState,
    principal: &Principal,
    target: Option<&TargetName>,
    extras: PageExtras<'_>,
) -> Result<Markup, AppError> {
    let now = params::now_us();
    let week_ago = now - i64::try_from(PAGE_HISTORY.as_micros()).unwrap_or(i64::MAX);
    let (states, (history, truncated), silences, rules, (undelivered, _)) = tokio::try_join!(
        current_alerts(state, target),
        alert_history(state, target, week_ago, now),
        silences(state),
        rules(state),
        undeliverable(state, week_ago, now),
    )?;
    let undelivered: Vec<UndeliveredRow> = undelivered
        .iter()
        .filter(|entry| target.is_none_or(|target| &entry.notification.target == target))
        .map(|entry| UndeliveredRow {
            receiver: &entry.receiver,
            reason: &entry.reason,
            notification: &entry.notification,
        })
        .collect();
    let rows: Vec<RuleRow> = rules.iter().map(rule_row).collect();
    /// The rules as the alerts file's `[[rule]]` tables.
    #[derive(Serialize)]
    struct RulesFile<'a> {
        rule: &'a [Rule],
    }
    let rules_toml = toml::to_string(&RulesFile { rule: &rules }).unwrap_or_default();
    let view = AlertsView {
        target: target.map(TargetName::as_str),
        states: &states,
        history: &history,
        history_truncated: truncated,
        silences: &silences,
        undelivered: &undelivered,
        rules: &rows,
        rules_toml: &rules_toml,
        now_us: now,
        draft: extras.draft,
        silence_problem: extras.silence_problem,
    };
    Ok(page(
        &principal.viewer(),
        "Alerts",
        pgmon_ui::alerts::alerts_page(&principal.viewer(), &view),
    ))
}

/// `GET /alerts`: the Alerts page, of every target or of `?target=`.
pub async fn alerts_page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(filter): Query<AlertFilter>,
) -> Result<Markup, PageError> {
    let target = target_of(&filter)?;
    Ok(alerts_markup(&state, &principal, target.as_ref(), PageExtras::default()).await?)
}

#[derive(Deserialize, Default)]
pub struct RuleForm {
    #[serde(default)]
    toml: String,
}

/// The one rule of the editor's text: the rule's own keys, or one `[[rule]]` table as the
/// alerts file (and "Rules as TOML") writes it.
fn rule_of_text(text: &str) -> Result<Rule, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RuleTables {
        rule: Vec<Rule>,
    }
    let syntax = |error: toml::de::Error| error.to_string().trim_end().to_owned();
    if !text.contains("[[rule]]") {
        return toml::from_str::<Rule>(text).map_err(syntax);
    }
    let mut tables = toml::from_str::<RuleTables>(text).map_err(syntax)?;
    match tables.rule.len() {
        1 => Ok(tables.rule.remove(0)),
        count => Err(format!("give one rule at a time, not {count}")),
    }
}

/// The most a rule typed in the editor may weigh.
const MOST_RULE_BYTES: usize = 16 * 1024;

/// `POST /alerts/rules` (admin): saves the rule typed in the editor, or shows it again with
/// its problems.
pub async fn save_rule_form(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Form(form): Form<RuleForm>,
) -> Result<Response, PageError> {
    let problems = if form.toml.len() > MOST_RULE_BYTES {
        vec![format!("the rule is over {MOST_RULE_BYTES} bytes")]
    } else {
        match rule_of_text(&form.toml) {
            Err(problem) => vec![problem],
            Ok(rule) => match save_rule(&state, &rule).await {
                Ok(()) => {
                    tracing::info!(target: "pgmon::audit", user = %principal.user, role = principal.role.as_str(), action = "rule saved", rule = %rule.name, "audit");
                    return Ok(Redirect::to("/alerts").into_response());
                }
                Err(problems) => problems,
            },
        }
    };
    let extras = PageExtras {
        draft: Some(RuleDraft {
            toml: &form.toml,
            problems: &problems,
        }),
        silence_problem: None,
    };
    let markup = alerts_markup(&state, &principal, None, extras).await?;
    Ok((StatusCode::BAD_REQUEST, markup).into_response())
}

/// `POST /alerts/rules/{rule}/delete` (admin).
pub async fn delete_rule_form(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(name): Path<String>,
) -> Result<Redirect, PageError> {
    delete_rule(&state, &name).await?;
    tracing::info!(target: "pgmon::audit", user = %principal.user, role = principal.role.as_str(), action = "rule deleted", rule = %name, "audit");
    Ok(Redirect::to("/alerts"))
}

#[derive(Deserialize, Default)]
pub struct SilenceForm {
    #[serde(default)]
    rule: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    reason: String,
}

/// `POST /alerts/silences` (admin): sets a silence, or shows the page with its problem.
pub async fn add_silence_form(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Form(form): Form<SilenceForm>,
) -> Result<Response, PageError> {
    let input = SilenceInput {
        rule: Some(form.rule),
        target: Some(form.target),
        duration: form.duration,
        reason: form.reason,
    };
    match add_silence(&state, &principal, &input).await {
        Ok(_) => Ok(Redirect::to("/alerts").into_response()),
        Err(AppError::BadRequest { field, message }) => {
            let problem = format!("{field}: {message}");
            let extras = PageExtras {
                draft: None,
                silence_problem: Some(&problem),
            };
            let markup = alerts_markup(&state, &principal, None, extras).await?;
            Ok((StatusCode::BAD_REQUEST, markup).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /alerts/silences/{id}/delete` (admin): ends a silence.
pub async fn end_silence_form(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(id): Path<String>,
) -> Result<Redirect, PageError> {
    end_silence(&state, &principal, &id).await?;
    Ok(Redirect::to("/alerts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editor_takes_a_rule_alone_or_as_one_rule_table() {
        let alone = "name = \"slow\"\nwhen.aas = { above = 4 }\nreceivers = [\"ops\"]\n";
        assert_eq!(rule_of_text(alone).unwrap().name, "slow");
        let written = toml::to_string(&serde_json::json!({ "rule": [rule_of_text(alone).unwrap()] })).unwrap();
        assert_eq!(rule_of_text(&written).unwrap(), rule_of_text(alone).unwrap(), "{written}");
        let two = format!("[[rule]]\n{alone}\n[[rule]]\n{}", alone.replace("slow", "slower"));
        assert_eq!(rule_of_text(&two).unwrap_err(), "give one rule at a time, not 2");
        assert!(rule_of_text("name = \"x\"\nwhen.aas = { abov = 4 }\nreceivers = []")
            .unwrap_err()
            .contains("abov"));
    }
}
