//! The query-api role: a stateless axum server rendering maud + htmx pages and the JSON API.
//!
//! "Now" views read the newest event per subject straight from JetStream; history comes from
//! the ingesters' named queries over NATS request/reply. It never opens DuckDB files.

mod alerts;
mod api;
mod auth;
mod connections;
mod error;
mod extract;
mod history;
mod metrics;
mod pages;
mod params;
mod targets;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use pgmon_common::access::{AccessError, Role, UserName};
use pgmon_common::health::{health_routes, probe_routes, serve_health, HealthServerError};
use pgmon_common::nats_access::NatsRole;
use pgmon_common::nats_setup::{connect_jetstream, NatsArgs, NatsSetupError};
use pgmon_common::registry::Registry;
use pgmon_common::secret::SecretKey;
use tokio_util::sync::CancellationToken;

pub use api::ApiDocument;
pub use error::AppError;

/// Command-line and environment settings of the web role.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address of the web UI and API.
    #[arg(long, env = "PGMON_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// How long to wait for an ingester to answer a history query.
    #[arg(long, env = "PGMON_QUERY_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,

    /// Mark session cookies Secure even without `X-Forwarded-Proto: https` (set it when TLS
    /// ends in front of pgmon and the proxy does not send that header).
    #[arg(long, env = "PGMON_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Proxies in front of pgmon (addresses or CIDR networks, comma-separated) whose
    /// X-Forwarded-For is believed: the client is then the last address before them, for
    /// sign-in limits and logs. Requests from anyone else are taken at their own address.
    #[arg(long = "trusted-proxy", env = "PGMON_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR")]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Serve /metrics (with /healthz and /readyz) on this address only, for example one only
    /// the Prometheus network reaches, instead of on --listen beside the UI.
    #[arg(long, env = "PGMON_METRICS_LISTEN", value_name = "ADDRESS")]
    pub metrics_listen: Option<SocketAddr>,

    /// The first admin, created at start when no user exists yet (with PGMON_ADMIN_PASSWORD).
    #[arg(long, env = "PGMON_ADMIN_USER", value_name = "NAME")]
    pub admin_user: Option<UserName>,

    /// The first admin's password (at least 12 characters); used only while no user exists.
    #[arg(long, env = "PGMON_ADMIN_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub admin_password: Option<String>,
}

#[derive(Clone)]
pub struct ServeConfig {
    pub nats: NatsArgs,
    pub listen: SocketAddr,
    /// Where /metrics is served when not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    pub query_timeout: Duration,
    pub secure_cookies: bool,
    /// Proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub first_admin: Option<(UserName, String)>,
    /// Where to write a generated first-admin password when no user and no first admin is
    /// configured (`pgmon up`); `None` leaves the server without users until one is added.
    pub generated_admin_password_file: Option<PathBuf>,
    /// Seals the passwords of targets added in the UI; without it they cannot have one.
    pub secret_key: Option<SecretKey>,
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs, nats: NatsArgs, secret_key: Option<SecretKey>) -> ServeConfig {
        ServeConfig {
            nats,
            listen: args.listen,
            metrics_listen: args.metrics_listen,
            query_timeout: args.query_timeout,
            secure_cookies: args.secure_cookies,
            trusted_proxies: args.trusted_proxies,
            first_admin: args.admin_user.zip(args.admin_password),
            generated_admin_password_file: None,
            secret_key,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub jetstream: jetstream::Context,
    pub query_timeout: Duration,
    pub authenticator: auth::SharedAuthenticator,
    pub registry: Registry,
    pub secret_key: Option<Arc<SecretKey>>,
    /// Whether `/metrics` is served beside the UI (no separate metrics listener).
    pub metrics_beside_ui: bool,
}

impl AppState {
    /// Asks the ingester that stores the request's target a named query.
    pub async fn ask<Query: pgmon_contract::query::NamedQuery>(&self, request: &Query) -> Result<Query::Reply, AppError> {
        history::named_query(&self.jetstream.client(), self.query_timeout, request).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Nats(#[from] NatsSetupError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("web server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Metrics(HealthServerError),
    #[error("cannot open users and sessions: {0}")]
    Access(String),
    #[error("cannot create the first admin: {0}")]
    FirstAdmin(#[from] AccessError),
    #[error("cannot write the first admin's password to {path}: {source}")]
    WritePasswordFile { path: PathBuf, source: std::io::Error },
}

/// All routes of the web role; everything but probes, metrics, assets and sign-in requires a
/// session or an API token.
pub fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(pages::fleet))
        .route("/fleet-table", get(pages::fleet_table))
        .route("/targets/{target}", get(pages::activity))
        .route("/targets/{target}/slice", get(pages::slice))
        .route("/targets/{target}/sessions/{pid}", get(pages::session))
        .route("/targets/{target}/statements", get(pages::statements))
        .route("/targets/{target}/statements/{query_id}", get(pages::statement))
        .route("/targets/{target}/objects", get(pages::objects))
        .route("/targets/{target}/objects/all", get(pages::all_objects))
        .route("/targets/{target}/objects/{database}/{schema}/{name}", get(pages::object))
        .route("/targets/{target}/locks", get(pages::locks))
        .route("/targets/{target}/locks/current", get(pages::current_locks))
        .route("/targets/{target}/health", get(pages::health))
        .route("/alerts", get(alerts::alerts_page))
        .route("/alerts/rules", post(alerts::save_rule_form))
        .route("/alerts/rules/{rule}/delete", post(alerts::delete_rule_form))
        .route("/alerts/silences", post(alerts::add_silence_form))
        .route("/alerts/silences/{id}/delete", post(alerts::end_silence_form))
        .route(
            "/connections",
            get(connections::connections_page).post(connections::create_connection),
        )
        .route("/connections/new", get(connections::new_connection))
        .route("/connections/test", post(connections::test_form))
        .route("/connections/{target}", post(connections::update_connection))
        .route("/connections/{target}/edit", get(connections::edit_connection))
        .route("/connections/{target}/enabled", post(connections::set_enabled))
        .route("/connections/{target}/delete", post(connections::delete_connection))
        .route(
            "/sign-in",
            get(auth::sign_in_form)
                .post(auth::sign_in)
                .layer(axum::extract::DefaultBodyLimit::max(auth::MAX_SIGN_IN_FORM_BYTES)),
        )
        .route("/sign-out", post(auth::sign_out))
        .route("/assets/{name}", get(pages::asset));
    let api = Router::new()
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/fleet", get(api::fleet))
        .route("/api/v1/targets", get(connections::list_targets).post(connections::create_target))
        .route(
            "/api/v1/targets/{target}",
            get(connections::get_target)
                .put(connections::update_target)
                .delete(connections::delete_target),
        )
        .route("/api/v1/targets/{target}/test", post(connections::test_target))
        .route("/api/v1/targets/{target}/activity", get(api::activity))
        .route("/api/v1/targets/{target}/sessions", get(api::sessions))
        .route("/api/v1/targets/{target}/sessions/{pid}", get(api::session))
        .route("/api/v1/targets/{target}/statements", get(api::statements))
        .route("/api/v1/targets/{target}/statements/{query_id}", get(api::statement))
        .route("/api/v1/targets/{target}/objects", get(api::objects))
        .route("/api/v1/targets/{target}/objects/growth", get(api::object_growth))
        .route("/api/v1/targets/{target}/locks/current", get(api::current_locks))
        .route("/api/v1/targets/{target}/locks/history", get(api::lock_history))
        .route("/api/v1/targets/{target}/database-stats", get(api::database_stats))
        .route("/api/v1/targets/{target}/health/vacuum", get(api::vacuum_health))
        .route("/api/v1/targets/{target}/health/maintenance", get(api::running_maintenance))
        .route("/api/v1/targets/{target}/health/replication", get(api::current_replication))
        .route("/api/v1/targets/{target}/health/replication/history", get(api::replication_history))
        .route("/api/v1/targets/{target}/changes", get(api::changes))
        .route("/api/v1/targets/{target}/health/wal", get(api::wal_history))
        .route("/api/v1/targets/{target}/alerts", get(alerts::api_target_history))
        .route("/api/v1/alerts", get(alerts::api_current))
        .route("/api/v1/alerts/history", get(alerts::api_history))
        .route("/api/v1/alerts/undeliverable", get(alerts::api_undeliverable))
        .route("/api/v1/alerts/rules", get(alerts::api_rules))
        .route(
            "/api/v1/alerts/rules/{rule}",
            axum::routing::put(alerts::api_put_rule).delete(alerts::api_delete_rule),
        )
        .route("/api/v1/alerts/silences", get(alerts::api_silences).post(alerts::api_add_silence))
        .route("/api/v1/alerts/silences/{id}", axum::routing::delete(alerts::api_end_silence))
        .fallback(api_not_found);
    pages
        .merge(api)
        .merge(if state.metrics_beside_ui { health_routes() } else { probe_routes() })
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn(metrics::time_requests))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security_headers))
        .with_state(state)
}

async fn api_not_found() -> AppError {
    AppError::NotFound("there is no API endpoint at this address; see /api/v1/openapi.json".to_owned())
}

/// Headers that keep pages from being framed, sniffed or cached, allow scripts from pgmon only,
/// and keep browsers on HTTPS once they came over it.
async fn security_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let over_https = state.authenticator.secure_cookie(request.headers());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // Pages and answers show what a signed-in user may see: no shared or browser cache keeps
    // them. Static assets say otherwise themselves.
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    if over_https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    response
}

/// A web server bound to its address, not yet serving.
pub struct BoundServer {
    listener: tokio::net::TcpListener,
    /// Where `/metrics` is served when not beside the UI.
    metrics_listen: Option<SocketAddr>,
    state: AppState,
}

impl BoundServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        tracing::info!(address = %self.local_addr(), "web UI and API serving");
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let ui = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        let Some(metrics_listen) = self.metrics_listen else {
            return ui.await.map_err(ServeError::Serve);
        };
        let metrics = serve_health(metrics_listen, shutdown.clone());
        tokio::select! {
            served = ui => served.map_err(ServeError::Serve),
            served = metrics => {
                // The UI stops with the metrics listener rather than run unobserved.
                shutdown.cancel();
                served.map_err(ServeError::Metrics)
            }
        }
    }
}

/// Connects to NATS and makes sure a first admin exists when one is configured: what every
/// handler needs, for [`router`].
pub async fn app_state(config: &ServeConfig) -> Result<AppState, ServeError> {
    metrics::register_metrics();
    let jetstream = connect_jetstream(&config.nats, NatsRole::Web).await?;
    let authenticator = auth::Authenticator::open(&jetstream, config.secure_cookies, config.trusted_proxies.clone())
        .await
        .map_err(ServeError::Access)?;
    ensure_first_admin(&authenticator.access, config).await?;
    let registry = Registry::open(&jetstream).await.map_err(|e| ServeError::Access(e.to_string()))?;
    Ok(AppState {
        jetstream,
        query_timeout: config.query_timeout,
        authenticator: Arc::new(authenticator),
        registry,
        secret_key: config.secret_key.clone().map(Arc::new),
        metrics_beside_ui: config.metrics_listen.is_none(),
    })
}

/// Prepares the state and binds the listen address.
pub async fn bind(config: &ServeConfig) -> Result<BoundServer, ServeError> {
    let state = app_state(config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen,
            source,
        })?;
    Ok(BoundServer {
        listener,
        metrics_listen: config.metrics_listen,
        state,
    })
}

/// With no user at all, creates the configured first admin, or (for `pgmon up`) an `admin`
/// with a generated password written to a file only its owner can read.
async fn ensure_first_admin(access: &pgmon_common::access::AccessStore, config: &ServeConfig) -> Result<(), ServeError> {
    if !access.users().await?.is_empty() {
        return Ok(());
    }
    let (name, password) = match (&config.first_admin, &config.generated_admin_password_file) {
        (Some((name, password)), _) => (name.clone(), password.clone()),
        (None, Some(path)) => {
            let password = pgmon_common::access::generate_api_token()[pgmon_common::access::API_TOKEN_PREFIX.len()..].to_owned();
            write_private_file(path, &format!("{password}\n")).map_err(|source| ServeError::WritePasswordFile {
                path: path.clone(),
                source,
            })?;
            let name: UserName = "admin".parse().expect("admin is a valid user name");
            tracing::warn!(user = %name, password_file = %path.display(), "no user existed: created admin with the password in the file; change it with pgmon users passwd admin");
            (name, password)
        }
        (None, None) => {
            tracing::warn!("no user exists, so nobody can sign in: create one with `pgmon users add NAME --role admin`, or set PGMON_ADMIN_USER and PGMON_ADMIN_PASSWORD");
            return Ok(());
        }
    };
    let hashing = {
        let access = access.clone();
        let name = name.clone();
        tokio::spawn(async move { access.add_user(&name, Role::Admin, &password).await })
    };
    match hashing.await.expect("the first-admin task does not panic") {
        Ok(_) => tracing::info!(user = %name, "first admin created"),
        // Another web server started at the same moment and created it.
        Err(AccessError::UserExists(_)) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Writes a file readable by its owner only (0600), replacing any earlier one.
fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// Runs the web role until `shutdown` is cancelled.
pub async fn run(config: ServeConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    bind(&config).await?.serve(shutdown).await
}
