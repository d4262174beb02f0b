//! Sign-in and access control: sessions (cookie + KV), API bearer tokens, roles, CSRF checks on
//! every mutation, and a rate limit on sign-in attempts.
//!
//! Sessions live in the `pgmon_sessions` KV bucket under the SHA-256 of their id, so every web
//! server behind a load balancer knows them and a stolen bucket holds no usable cookie. Each
//! request looks its user up again, so a removed user or a changed role takes effect at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use base64::Engine;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use maud::Markup;
use pgmon_common::access::{token_key, AccessStore, Role, UserName, UserRecord};
use pgmon_common::nats_setup::SESSION_LIFETIME;
use pgmon_contract::subjects::SESSIONS_BUCKET;
use pgmon_ui::layout::Viewer;
use serde::{Deserialize, Serialize};

use crate::error::{AppError, PageError};
use crate::AppState;

/// The cookie holding the session id.
pub const SESSION_COOKIE: &str = "pgmon_session";

/// The session cookie's name over HTTPS: the `__Host-` prefix makes browsers refuse it unless it
/// is Secure, for this host only and for every path, so a sibling subdomain cannot plant one.
pub const SECURE_SESSION_COOKIE: &str = "__Host-pgmon_session";

fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}
/// The header htmx (and scripts) send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field plain HTML forms send the CSRF token in.
pub const CSRF_FIELD: &str = "csrf_token";
/// The biggest form body read to find the CSRF token.
const MAX_FORM_BYTES: usize = 1 << 20;

/// Who is making a request, as the authentication middleware found.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: UserName,
    pub role: Role,
    /// The session's CSRF token; `None` for API tokens, which browsers never send by themselves.
    pub csrf_token: Option<String>,
}

impl Principal {
    /// What the page frame shows of the signed-in user.
    pub fn viewer(&self) -> Viewer {
        Viewer {
            user_name: self.user.to_string(),
            is_admin: self.role == Role::Admin,
            csrf_token: self.csrf_token.clone(),
        }
    }
}

/// The request was made by an admin; any other principal gets 403.
pub struct Admin(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Admin, AppError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| AppError::Unauthorized("sign in first".to_owned()))?;
        if principal.role != Role::Admin {
            return Err(AppError::Forbidden("only admins may do this".to_owned()));
        }
        Ok(Admin(principal))
    }
}

#[derive(Serialize, Deserialize)]
struct SessionRecord {
    user: UserName,
    csrf_token: String,
    created_at_us: i64,
    /// The user's credentials generation at sign-in: a password or role change since, or the
    /// user removed and added again, ends the session.
    #[serde(default)]
    credentials_generation: String,
}

/// Sign-in attempts allowed per minute for one user name from one client (address or IPv6
/// /64), and from one client for all names. Keyed by both, not by the name alone: nobody can
/// lock the admin out by failing as "admin" from elsewhere.
const ATTEMPTS_PER_MINUTE_PER_USER_AND_CLIENT: u32 = 10;
const ATTEMPTS_PER_MINUTE_PER_CLIENT: u32 = 30;
/// How many (user, client) and client keys the limiters hold before forgetting the idle ones;
/// when that is not enough (a flood of new clients), a new key is refused until some expire.
const MAX_LIMITER_KEYS: usize = 100_000;
/// The largest sign-in form read: user name, password, destination.
pub(crate) const MAX_SIGN_IN_FORM_BYTES: usize = 8 * 1024;

/// Everything authentication needs, shared by the handlers.
pub struct Authenticator {
    pub access: AccessStore,
    sessions: kv::Store,
    attempts_per_user_and_client: DefaultKeyedRateLimiter<(UserName, IpAddr)>,
    attempts_per_client: DefaultKeyedRateLimiter<IpAddr>,
    /// Password checks running at once: Argon2 takes tens of milliseconds and megabytes of
    /// memory each, so a burst of sign-ins waits here instead of exhausting the machine.
    password_checks: tokio::sync::Semaphore,
    /// Mark cookies `Secure` even when no proxy says the request came over TLS.
    always_secure_cookies: bool,
    /// Requests each user has in progress, so one user (or one script with their token)
    /// cannot take every ingester reader and web worker from everybody else.
    requests_in_progress: RequestsInProgress,
    /// Proxies whose X-Forwarded-For is believed.
    trusted_proxies: Vec<ipnet::IpNet>,
}

/// The most requests one user may have in progress at once; more are answered 429. A page
/// loads its charts and tables with a handful of requests at a time.
pub const MAX_REQUESTS_IN_PROGRESS_PER_USER: usize = 16;

/// How many requests each user has in progress; only users with some are kept.
#[derive(Clone, Default)]
struct RequestsInProgress(Arc<std::sync::Mutex<HashMap<UserName, usize>>>);

impl RequestsInProgress {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<UserName, usize>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a request of `user`, or `None` when they have the most in progress already.
    fn begin(&self, user: &UserName) -> Option<RequestInProgress> {
        let mut counts = self.counts();
        let count = counts.entry(user.clone()).or_default();
        if *count >= MAX_REQUESTS_IN_PROGRESS_PER_USER {
            return None;
        }
        *count += 1;
        Some(RequestInProgress {
            requests: self.clone(),
            user: user.clone(),
        })
    }
}

/// One request of a user in progress; dropping it ends it.
struct RequestInProgress {
    requests: RequestsInProgress,
    user: UserName,
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        let mut counts = self.requests.counts();
        if let Some(count) = counts.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

fn per_minute(attempts: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(attempts).expect("a positive number of attempts"))
}

fn random_token() -> String {
    BASE64_URL.encode(rand::random::<[u8; 32]>())
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_micros() as i64)
        .unwrap_or(0)
}

impl Authenticator {
    pub async fn open(
        jetstream: &jetstream::Context,
        always_secure_cookies: bool,
        trusted_proxies: Vec<ipnet::IpNet>,
    ) -> Result<Authenticator, String> {
        let access = AccessStore::open(jetstream).await.map_err(|e| e.to_string())?;
        let sessions = jetstream
            .get_key_value(SESSIONS_BUCKET)
            .await
            .map_err(|e| format!("cannot open the KV bucket {SESSIONS_BUCKET}: {e}"))?;
        Ok(Authenticator {
            access,
            sessions,
            attempts_per_user_and_client: RateLimiter::keyed(per_minute(ATTEMPTS_PER_MINUTE_PER_USER_AND_CLIENT)),
            attempts_per_client: RateLimiter::keyed(per_minute(ATTEMPTS_PER_MINUTE_PER_CLIENT)),
            password_checks: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |cores| cores.get())),
            always_secure_cookies,
            requests_in_progress: RequestsInProgress::default(),
            trusted_proxies,
        })
    }

    /// Whether this attempt is over a limit. Idle keys are forgotten when the limiters grow
    /// large, so their memory stays bounded whatever names and addresses are sent.
    fn attempt_limited(&self, user: Option<&UserName>, client: IpAddr) -> bool {
        let full = || self.attempts_per_client.len() >= MAX_LIMITER_KEYS || self.attempts_per_user_and_client.len() >= MAX_LIMITER_KEYS;
        if full() {
            self.attempts_per_client.retain_recent();
            self.attempts_per_user_and_client.retain_recent();
            self.attempts_per_client.shrink_to_fit();
            self.attempts_per_user_and_client.shrink_to_fit();
            if full() {
                return true;
            }
        }
        self.attempts_per_client.check_key(&client).is_err()
            || user.is_some_and(|user| self.attempts_per_user_and_client.check_key(&(user.clone(), client)).is_err())
    }

    async fn start_session(&self, user: &UserRecord) -> Result<String, AppError> {
        let session_id = random_token();
        let record = SessionRecord {
            user: user.name.clone(),
            csrf_token: random_token(),
            created_at_us: now_us(),
            credentials_generation: user.credentials_generation.clone(),
        };
        let bytes = serde_json::to_vec(&record).expect("a session record serialises");
        self.sessions
            .put(token_key(&session_id), bytes.into())
            .await
            .map_err(|e| AppError::Unavailable(format!("cannot store the session: {e}")))?;
        Ok(session_id)
    }

    async fn end_session(&self, session_id: &str) {
        if let Err(error) = self.sessions.delete(token_key(session_id)).await {
            tracing::warn!(%error, "session not deleted at sign-out; it expires by itself");
        }
    }

    async fn session_principal(&self, session_id: &str) -> Result<Option<Principal>, AppError> {
        let unavailable = |e: &dyn std::fmt::Display| AppError::Unavailable(format!("cannot read sessions: {e}"));
        let Some(bytes) = self.sessions.get(token_key(session_id)).await.map_err(|e| unavailable(&e))? else {
            return Ok(None);
        };
        let Ok(session) = serde_json::from_slice::<SessionRecord>(&bytes) else {
            return Ok(None);
        };
        let user = self.access.user(&session.user).await.map_err(|e| unavailable(&e))?;
        let user = user.filter(|user| user.credentials_generation == session.credentials_generation);
        Ok(user.map(|user| Principal {
            user: user.name,
            role: user.role,
            csrf_token: Some(session.csrf_token),
        }))
    }

    async fn token_principal(&self, token: &str) -> Result<Option<Principal>, AppError> {
        let user = self
            .access
            .user_of_api_token(token)
            .await
            .map_err(|e| AppError::Unavailable(format!("cannot read API tokens: {e}")))?;
        Ok(user.map(|user| Principal {
            user: user.name,
            role: user.role,
            csrf_token: None,
        }))
    }

    /// Whether a cookie set for this request should be `Secure`: always when configured, and
    /// whenever a TLS-terminating proxy says the browser came over HTTPS.
    pub(crate) fn secure_cookie(&self, headers: &HeaderMap) -> bool {
        self.always_secure_cookies
            || headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
    }
}

/// Paths anyone may reach: probes, metrics, the sign-in page and its static assets.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/sign-in") || path.starts_with("/assets/")
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The answer to a request without a valid session or token: 401 for the API and htmx,
/// a redirect to the sign-in page for a browser.
fn sign_in_required(request: &Request, message: &str) -> Response {
    let path_and_query = request.uri().path_and_query().map_or("/", |value| value.as_str());
    let sign_in = format!(
        "/sign-in?next={}",
        percent_encoding::utf8_percent_encode(path_and_query, percent_encoding::NON_ALPHANUMERIC)
    );
    if request.uri().path().starts_with("/api/") {
        let mut response = AppError::Unauthorized(message.to_owned()).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"pgmon\""));
        return response;
    }
    if request.headers().contains_key("hx-request") {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(location) = HeaderValue::from_str(&sign_in) {
            response.headers_mut().insert("hx-redirect", location);
        }
        return response;
    }
    Redirect::to(&sign_in).into_response()
}

/// A cross-site request: its `Origin` names another host than the one it was sent to.
fn is_cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !origin_host.eq_ignore_ascii_case(host)
}

fn same_secret(given: &str, expected: &str) -> bool {
    // Comparing digests keeps the comparison's time independent of where the inputs differ.
    token_key(given) == token_key(expected)
}

/// Checks a mutation's CSRF token (header, or form field of a form body); gives the request
/// back with its body intact when it passes.
async fn check_csrf(request: Request, expected: &str) -> Result<Request, AppError> {
    let forbidden = || AppError::Forbidden("the form is stale or was sent from another site: reload the page and try again".to_owned());
    if is_cross_origin(request.headers()) {
        return Err(forbidden());
    }
    if let Some(given) = request.headers().get(CSRF_HEADER).and_then(|value| value.to_str().ok()) {
        return if same_secret(given, expected) {
            Ok(request)
        } else {
            Err(forbidden())
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(forbidden());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| AppError::bad_request("body", "the form is larger than 1 MiB"))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|_| forbidden())?;
    let given = fields
        .iter()
        .find(|(name, _)| name == CSRF_FIELD)
        .map(|(_, value)| value.as_str())
        .ok_or_else(forbidden)?;
    if !same_secret(given, expected) {
        return Err(forbidden());
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Middleware: finds the principal of every non-public request (bearer token or session
/// cookie), checks CSRF on mutations made with a session, and refuses anyone else.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let authenticator = &state.authenticator;
    let found = if let Some(token) = bearer_token(request.headers()) {
        match authenticator.token_principal(token).await {
            Ok(None) => return sign_in_required(&request, "the API token is not valid (revoked, or its user was removed)"),
            other => other,
        }
    } else {
        let cookie_name = session_cookie_name(authenticator.secure_cookie(request.headers()));
        match CookieJar::from_headers(request.headers()).get(cookie_name) {
            Some(cookie) => authenticator.session_principal(cookie.value()).await,
            None => Ok(None),
        }
    };
    let principal = match found {
        Ok(Some(principal)) => principal,
        Ok(None) => return sign_in_required(&request, "sign in, or send an API token as Authorization: Bearer <token>"),
        Err(error) => return error.into_response(),
    };
    let mut request = request;
    let is_mutation = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if is_mutation {
        if let Some(expected) = &principal.csrf_token {
            request = match check_csrf(request, expected).await {
                Ok(request) => request,
                Err(error) => return error.into_response(),
            };
        }
    }
    let Some(_in_progress) = authenticator.requests_in_progress.begin(&principal.user) else {
        tracing::info!(user = %principal.user, "request refused: too many of this user's requests in progress");
        let mut response = AppError::TooManyRequests(format!(
            "you have {MAX_REQUESTS_IN_PROGRESS_PER_USER} requests in progress already: wait for them to finish"
        ))
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// Where to go after signing in: a path on this server only, never another site. Browsers
/// drop tabs and line breaks from a Location and read `\\` as `/`, so `/\t/evil.example` or
/// `/\\evil.example` would leave the site: any control character or backslash sends home.
fn local_destination(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.chars().any(|character| character == '\\' || character.is_control()) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn sign_in_page(status: StatusCode, next: &str, user: &str, error: Option<&str>) -> Response {
    let body: Markup = pgmon_ui::sign_in::sign_in_form(next, user, error);
    (status, pgmon_ui::layout::bare_page("Sign in", body)).into_response()
}

/// `GET /sign-in`.
pub async fn sign_in_form(axum::extract::Query(query): axum::extract::Query<SignInQuery>) -> Response {
    sign_in_page(StatusCode::OK, &local_destination(query.next.as_deref()), "", None)
}

fn client_address(request: &Request, trusted_proxies: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())?;
    Some(forwarded_client(peer, request.headers(), trusted_proxies))
}

/// The client behind trusted proxies: X-Forwarded-For read from the right (each proxy appends
/// the address it saw), skipping trusted proxies; the first other address is the client. What
/// a client writes there itself is to the left of that and never believed.
fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[ipnet::IpNet]) -> IpAddr {
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|network| network.contains(address));
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(address) if trusted(&address) => nearest = address,
            Ok(address) => return address,
            // A proxy appends only addresses: garbage means the header cannot be followed.
            Err(_) => return nearest,
        }
    }
    nearest
}

/// The client a limit applies to: an IPv4 address, or the /64 network of an IPv6 address (one
/// host commonly holds a whole /64 and could change addresses at will within it).
fn client_group(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// `POST /sign-in`: checks the password (rate-limited) and starts a session.
pub async fn sign_in(State(state): State<AppState>, request: Request) -> Result<Response, PageError> {
    let address = client_address(&request, &state.authenticator.trusted_proxies);
    let headers = request.headers().clone();
    if is_cross_origin(&headers) {
        return Err(AppError::Forbidden("sign-in from another site is refused".to_owned()).into());
    }
    let Form(form) = Form::<SignInForm>::from_request(request, &())
        .await
        .map_err(|_| AppError::bad_request("body", "send the form fields user and password"))?;
    let next = local_destination(form.next.as_deref());
    let authenticator = &state.authenticator;
    // A name that cannot be a user's is refused before anything keys on it or logs it.
    let user_name = form.user.trim().to_lowercase().parse::<UserName>().ok();
    let shown_user = user_name.as_ref().map_or("", |name| name.as_str());
    let client = client_group(address.unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)));
    if authenticator.attempt_limited(user_name.as_ref(), client) {
        tracing::warn!(user = shown_user, address = ?address, "sign-in attempts rate-limited");
        let mut response = sign_in_page(
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            shown_user,
            Some("too many sign-in attempts: wait a minute and try again"),
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return Ok(response);
    }
    let verified = match &user_name {
        Some(name) => {
            let _turn = authenticator
                .password_checks
                .acquire()
                .await
                .expect("the semaphore is never closed");
            authenticator
                .access
                .verify(name.as_str(), &form.password)
                .await
                .map_err(|e| AppError::Unavailable(e.to_string()))?
        }
        None => None,
    };
    let Some(user) = verified else {
        tracing::info!(user = shown_user, address = ?address, "sign-in refused");
        return Ok(sign_in_page(
            StatusCode::UNAUTHORIZED,
            &next,
            shown_user,
            Some("wrong user name or password"),
        ));
    };
    let session_id = authenticator.start_session(&user).await?;
    tracing::info!(user = %user.name, address = ?address, "signed in");
    let secure = authenticator.secure_cookie(&headers);
    let cookie = Cookie::build((session_cookie_name(secure), session_id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(time::Duration::seconds(SESSION_LIFETIME.as_secs() as i64))
        .build();
    Ok((CookieJar::new().add(cookie), Redirect::to(&next)).into_response())
}

/// `POST /sign-out`: ends the session (CSRF-checked like every mutation).
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Extension(principal): Extension<Principal>,
) -> Response {
    let secure = state.authenticator.secure_cookie(&headers);
    let cookie_name = session_cookie_name(secure);
    if let Some(cookie) = jar.get(cookie_name) {
        state.authenticator.end_session(cookie.value()).await;
    }
    tracing::info!(user = %principal.user, "signed out");
    let expired = Cookie::build((cookie_name, ""))
        .path("/")
        .secure(secure)
        .max_age(time::Duration::ZERO)
        .build();
    (jar.add(expired), Redirect::to("/sign-in")).into_response()
}

/// The shared authenticator, as handlers hold it.
pub type SharedAuthenticator = Arc<Authenticator>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_forwarded_for_is_believed_from_trusted_proxies_only() {
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::1/128".parse().unwrap()];
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            headers
        };
        let address = |text: &str| text.parse::<IpAddr>().unwrap();
        // A client not behind a trusted proxy is taken at its own address, whatever it writes.
        let direct = address("198.51.100.7");
        assert_eq!(forwarded_client(direct, &headers("203.0.113.9"), &proxies), direct);
        // Behind two trusted proxies: the address before them, not what the client forged.
        let forged_then_real = headers("1.2.3.4, 203.0.113.9, 10.1.1.1");
        assert_eq!(
            forwarded_client(address("10.2.2.2"), &forged_then_real, &proxies),
            address("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(address("2001:db8::1"), &headers("2001:db8:5::9"), &proxies),
            address("2001:db8:5::9")
        );
        // No header, or garbage where a proxy would have written: the nearest known address.
        assert_eq!(
            forwarded_client(address("10.2.2.2"), &HeaderMap::new(), &proxies),
            address("10.2.2.2")
        );
        assert_eq!(
            forwarded_client(address("10.2.2.2"), &headers("203.0.113.9, not-an-address"), &proxies),
            address("10.2.2.2")
        );
        assert_eq!(
            forwarded_client(address("10.2.2.2"), &headers("203.0.113.9"), &[]),
            address("10.2.2.2")
        );
    }

    #[test]
    fn each_user_has_a_bounded_number_of_requests_in_progress() {
        let requests = RequestsInProgress::default();
        let (alice, bob): (UserName, UserName) = ("alice".parse().unwrap(), "bob".parse().unwrap());
        let mut held: Vec<RequestInProgress> = (0..MAX_REQUESTS_IN_PROGRESS_PER_USER)
            .map(|_| requests.begin(&alice).expect("under the bound"))
            .collect();
        assert!(requests.begin(&alice).is_none(), "one more than the bound");
        let of_bob = requests.begin(&bob).expect("another user is not held up");
        held.pop();
        assert!(requests.begin(&alice).is_some(), "a finished request makes room");
        drop(held);
        drop(of_bob);
        assert!(requests.counts().is_empty(), "users without requests are forgotten");
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_destination(Some("/targets/db?range=1h")), "/targets/db?range=1h");
        assert_eq!(local_destination(Some("//evil.example/")), "/");
        assert_eq!(local_destination(Some("https://evil.example/")), "/");
        assert_eq!(local_destination(Some("/\\evil.example")), "/");
        for sneaky in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\u{0}/evil.example",
            "/\u{7f}/evil.example",
        ] {
            assert_eq!(local_destination(Some(sneaky)), "/", "{sneaky:?}");
        }
        assert_eq!(local_destination(None), "/");
    }

    #[test]
    fn cross_origin_requests_are_recognised() {
        let headers = |origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("pgmon.example:8080"));
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
            }
            headers
        };
        assert!(!is_cross_origin(&headers(None)));
        assert!(!is_cross_origin(&headers(Some("http://pgmon.example:8080"))));
        assert!(is_cross_origin(&headers(Some("https://evil.example"))));
        assert!(is_cross_origin(&headers(Some("null"))));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer pgmon_abc"));
        assert_eq!(bearer_token(&headers), Some("pgmon_abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }
}
