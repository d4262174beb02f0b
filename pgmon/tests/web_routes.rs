//! Every page and API endpoint through the real router (`Router` + `oneshot`) against a real
//! NATS server, a real ingester and a real PostgreSQL: who may see what (401, 403, sign-in,
//! CSRF), that each renders the recorded data, and that bad input gets a 4xx naming the field.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{serve_config, spawn_pipeline, wait_until};
use pgmon_common::access::{AccessStore, Role, UserName};
use pgmon_common::nats_setup::connect_jetstream;
use pgmon_common::secret::SecretKey;
use pgmon_test_support::{TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

struct Web {
    router: Router,
    access: AccessStore,
}

/// A response's status, headers and body text.
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Web {
    async fn start(nats_url: &str) -> Web {
        let mut config = serve_config(nats_url);
        config.secret_key = Some(SecretKey::parse(&SecretKey::generate()).unwrap());
        let state = pgmon_query_api::app_state(&config).await.unwrap();
        let jetstream = connect_jetstream(&common::nats_args(nats_url), pgmon_common::nats_access::NatsRole::Admin)
            .await
            .unwrap();
        let access = AccessStore::open(&jetstream).await.unwrap();
        Web {
            router: pgmon_query_api::router(state),
            access,
        }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, auth: &Auth) -> Answer {
        self.send(auth.apply(Request::get(path)).body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, path: &str, auth: &Auth, fields: &[(&str, &str)]) -> Answer {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let request = auth
            .apply(Request::post(path))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    async fn send_json(&self, method: &str, path: &str, auth: &Auth, body: serde_json::Value) -> Answer {
        let request = auth
            .apply(Request::builder().method(method).uri(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    async fn user(&self, name: &str, role: Role) -> UserName {
        let name: UserName = name.parse().unwrap();
        self.access.add_user(&name, role, PASSWORD).await.unwrap();
        name
    }

    async fn token(&self, name: &str, role: Role) -> Auth {
        let user = self.user(name, role).await;
        Auth::Token(self.access.create_api_token(&user, "test", None).await.unwrap())
    }

    /// Signs in through the form; the session cookie and the page's CSRF token.
    async fn session(&self, name: &str, role: Role) -> Auth {
        self.user(name, role).await;
        let answer = self
            .post_form("/sign-in", &Auth::None, &[("user", name), ("password", PASSWORD), ("next", "/")])
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        let session = cookie.split(';').next().unwrap().to_owned();
        let page = self.get("/", &Auth::Cookie(session.clone(), None)).await;
        let csrf = page
            .body
            .split("name=\"csrf_token\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a page carries the CSRF token")
            .to_owned();
        Auth::Cookie(session, Some(csrf))
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Token(String),
    /// The session cookie, and the CSRF token sent as a header when given.
    Cookie(String, Option<String>),
}

impl Auth {
    fn apply(&self, builder: axum::http::request::Builder) -> axum::http::request::Builder {
        match self {
            Auth::None => builder,
            Auth::Token(token) => builder.header(header::AUTHORIZATION, format!("Bearer {token}")),
            Auth::Cookie(cookie, None) => builder.header(header::COOKIE, cookie),
            Auth::Cookie(cookie, Some(csrf)) => builder.header(header::COOKIE, cookie).header("x-csrf-token", csrf),
        }
    }

    fn without_csrf(&self) -> Auth {
        match self {
            Auth::Cookie(cookie, _) => Auth::Cookie(cookie.clone(), None),
            other => other.clone(),
        }
    }
}

/// Every page and API path of a target named `db`, with parameters that make sense.
const PAGES: &[&str] = &[
    "/",
    "/fleet-table",
    "/targets/db",
    "/targets/db?range=24h&by=wait_event",
    "/targets/db/slice?range=1m",
    "/targets/db/statements",
    "/targets/db/statements?range=15m&order_by=calls",
    "/targets/db/objects",
    "/targets/db/objects?name=pgbench&kind=table",
    "/targets/db/objects/all?order_by=name&page=1",
    "/targets/db/objects/postgres/public/route_probe",
    "/targets/db/locks",
    "/targets/db/locks/current",
];

const API: &[&str] = &[
    "/api/v1/openapi.json",
    "/api/v1/fleet",
    "/api/v1/targets",
    "/api/v1/targets/db/activity?range=1m",
    "/api/v1/targets/db/sessions?range=1m",
    "/api/v1/targets/db/statements?range=1h",
    "/api/v1/targets/db/objects",
    "/api/v1/targets/db/objects/growth?database=postgres&schema=public&name=route_probe",
    "/api/v1/targets/db/locks/current",
    "/api/v1/targets/db/locks/history?range=1h",
    "/api/v1/targets/db/database-stats?range=1h",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_probes_and_sign_in_is_served_without_a_session_or_token() {
    let nats = TestNats::start();
    let web = Web::start(&nats.url()).await;
    for path in PAGES {
        let answer = web.get(path, &Auth::None).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        let location = answer.headers[header::LOCATION].to_str().unwrap();
        assert!(location.starts_with("/sign-in?next=%2F"), "{path}: {location}");
    }
    for path in API {
        let answer = web.get(path, &Auth::None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer realm=\"pgmon\"");
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("sign in"), "{path}: {}", answer.body);
    }
    let htmx = web
        .send(
            Request::get("/fleet-table")
                .header("hx-request", "true")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(htmx.status, StatusCode::UNAUTHORIZED);
    assert_eq!(htmx.headers["hx-redirect"], "/sign-in?next=%2Ffleet%2Dtable");
    let forged = web.get("/api/v1/fleet", &Auth::Token("pgmon_forged".to_owned())).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let forged_cookie = web.get("/", &Auth::Cookie("pgmon_session=forged".to_owned(), None)).await;
    assert_eq!(forged_cookie.status, StatusCode::SEE_OTHER);
    for path in ["/healthz", "/readyz", "/metrics", "/sign-in", "/assets/pgmon.js"] {
        let answer = web.get(path, &Auth::None).await;
        assert_ne!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert_ne!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Every answer carries the security headers, the sign-in page included.
    let sign_in = web.get("/sign-in", &Auth::None).await;
    let policy = sign_in.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(sign_in.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sets_a_safe_session_cookie_and_mutations_need_the_csrf_token() {
    let nats = TestNats::start();
    let web = Web::start(&nats.url()).await;
    web.user("alice", Role::Admin).await;

    let wrong = web
        .post_form("/sign-in", &Auth::None, &[("user", "alice"), ("password", "not her password")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("wrong user name or password"), "{}", wrong.body);
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));
    let unknown = web
        .post_form("/sign-in", &Auth::None, &[("user", "nobody"), ("password", PASSWORD)])
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("wrong user name or password"));

    let signed_in = web
        .send(
            Request::post("/sign-in")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("x-forwarded-proto", "https")
                .body(Body::from(format!(
                    "user=alice&password={}&next=%2F%2Fevil.example%2F",
                    PASSWORD.replace(' ', "+")
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers[header::LOCATION], "/", "never sent to another site after sign-in");
    let cookie = signed_in.headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(
        cookie.starts_with("__Host-pgmon_session="),
        "over HTTPS the cookie is host-bound: {cookie}"
    );
    assert_eq!(signed_in.headers[header::STRICT_TRANSPORT_SECURITY], "max-age=31536000");
    // Browsers drop a tab from a Location: `/\t/evil.example` would be `//evil.example`.
    for sneaky in ["/\t/evil.example", "/\n/evil.example", "/\\evil.example"] {
        let redirected = web
            .post_form(
                "/sign-in",
                &Auth::None,
                &[("user", "alice"), ("password", PASSWORD), ("next", sneaky)],
            )
            .await;
        assert_eq!(redirected.headers[header::LOCATION], "/", "next={sneaky:?}");
    }
    let page = web.get("/", &web.session("cora", Role::Viewer).await).await;
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store", "signed-in pages are not cached");
    // Names that cannot be a user's are refused before anything keys on them, and a form
    // larger than a sign-in needs is not read at all.
    let odd_name = web
        .post_form("/sign-in", &Auth::None, &[("user", &"x".repeat(4000)), ("password", PASSWORD)])
        .await;
    assert_eq!(odd_name.status, StatusCode::UNAUTHORIZED);
    assert!(!odd_name.body.contains(&"x".repeat(100)), "the odd name is not shown back");
    let huge = web
        .post_form("/sign-in", &Auth::None, &[("user", &"x".repeat(1_500_000)), ("password", PASSWORD)])
        .await;
    // Refused as a bad form: the body limit stops reading it after 8 KiB.
    assert_eq!(huge.status, StatusCode::BAD_REQUEST);

    let session = web.session("bob", Role::Admin).await;
    let Auth::Cookie(_, Some(csrf)) = &session else { unreachable!() };
    // A mutation with the cookie alone (what a forged cross-site form sends) is refused.
    let forged = web
        .post_form("/connections/db/enabled", &session.without_csrf(), &[("enabled", "false")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let wrong_token = web
        .post_form(
            "/connections/db/enabled",
            &session.without_csrf(),
            &[("enabled", "false"), ("csrf_token", "not the token")],
        )
        .await;
    assert_eq!(wrong_token.status, StatusCode::FORBIDDEN);
    // With the form field (plain forms) or the header (htmx), it reaches the handler: no such target.
    let with_field = web
        .post_form(
            "/connections/db/enabled",
            &session.without_csrf(),
            &[("enabled", "false"), ("csrf_token", csrf)],
        )
        .await;
    assert_eq!(with_field.status, StatusCode::NOT_FOUND, "{}", with_field.body);
    let with_header = web
        .send(
            session
                .apply(Request::post("/connections/test"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("name=x&dsn="))
                .unwrap(),
        )
        .await;
    assert_eq!(with_header.status, StatusCode::OK, "{}", with_header.body);
    assert!(
        with_header.body.contains("the connection string is required"),
        "{}",
        with_header.body
    );
    let cross_site = web
        .send(
            session
                .apply(Request::post("/connections/test"))
                .header(header::HOST, "pgmon.example")
                .header(header::ORIGIN, "https://evil.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);

    // Signing out ends the session on the server, not only in the browser.
    let signed_out = web.post_form("/sign-out", &session, &[("csrf_token", csrf)]).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(web.get("/", &session).await.status, StatusCode::SEE_OTHER);

    // A removed user's token stops working at once.
    let token = web.token("carol", Role::Viewer).await;
    assert_eq!(web.get("/api/v1/targets", &token).await.status, StatusCode::OK);
    web.access.remove_user(&"carol".parse().unwrap()).await.unwrap();
    assert_eq!(web.get("/api/v1/targets", &token).await.status, StatusCode::UNAUTHORIZED);
}

/// Sessions and tokens end with the credentials they were issued under: a password or role
/// change, or the user removed and added again under the same name. Tokens expire, are listed
/// with when they were last used, and are revoked one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_tokens_end_with_their_credentials() {
    let nats = TestNats::start();
    let web = Web::start(&nats.url()).await;
    let signed_in = |auth: Auth| {
        let web = &web;
        async move { web.get("/api/v1/targets", &auth).await.status == StatusCode::OK }
    };

    let session = web.session("erin", Role::Viewer).await;
    let erin: UserName = "erin".parse().unwrap();
    let token = Auth::Token(web.access.create_api_token(&erin, "grafana", None).await.unwrap());
    assert!(signed_in(session.clone()).await && signed_in(token.clone()).await);
    web.access.update_user(&erin, None, Some("a brand new passphrase")).await.unwrap();
    assert!(!signed_in(session).await, "a session outlived a password change");
    assert!(!signed_in(token).await, "a token outlived a password change");

    let token = Auth::Token(web.access.create_api_token(&erin, "grafana", None).await.unwrap());
    assert!(signed_in(token.clone()).await);
    web.access.update_user(&erin, Some(Role::Admin), None).await.unwrap();
    assert!(!signed_in(token).await, "a token outlived a role change");

    // Removed and added again under the same name: nothing of the old user works.
    let session = {
        web.access.remove_user(&erin).await.unwrap();
        web.session("erin", Role::Viewer).await
    };
    let token = Auth::Token(web.access.create_api_token(&erin, "ci", None).await.unwrap());
    web.access.remove_user(&erin).await.unwrap();
    web.user("erin", Role::Admin).await;
    assert!(!signed_in(session).await, "a session came back with the name");
    assert!(!signed_in(token).await, "a token came back with the name");
    assert!(
        web.access.api_tokens(Some(&erin)).await.unwrap().is_empty(),
        "a removed user's tokens are deleted"
    );

    // Expiry, the list, and revoking one token while another keeps working.
    let expiring = Auth::Token(
        web.access
            .create_api_token(&erin, "short", Some(Duration::from_millis(1)))
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!signed_in(expiring).await, "an expired token still works");
    let kept = Auth::Token(web.access.create_api_token(&erin, "kept", None).await.unwrap());
    let revoked = Auth::Token(web.access.create_api_token(&erin, "revoked", None).await.unwrap());
    assert!(signed_in(kept.clone()).await && signed_in(revoked.clone()).await);
    let listed = web.access.api_tokens(Some(&erin)).await.unwrap();
    let labels: Vec<&str> = listed.iter().map(|token| token.record.label.as_str()).collect();
    assert_eq!(labels, ["short", "kept", "revoked"]);
    assert!(listed[1].record.last_used_at_us.is_some() && listed[0].record.last_used_at_us.is_none());
    assert!(listed.iter().all(|token| token.id.len() == 16));
    let too_short = web.access.revoke_api_token(&listed[2].id[..4]).await.unwrap_err();
    assert!(
        too_short.to_string().starts_with("a token id needs at least 8 characters"),
        "{too_short}"
    );
    let gone = web.access.revoke_api_token(&listed[2].id[..10]).await.unwrap();
    assert_eq!(gone.label, "revoked");
    assert!(!signed_in(revoked).await, "a revoked token still works");
    assert!(signed_in(kept).await, "revoking one token ended another");
    let again = web.access.revoke_api_token(&listed[2].id).await.unwrap_err();
    assert!(again.to_string().starts_with("no API token has an id starting with"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_rate_limited_per_user_and_client() {
    let nats = TestNats::start();
    let web = Web::start(&nats.url()).await;
    web.user("dave", Role::Viewer).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = web
            .post_form("/sign-in", &Auth::None, &[("user", "dave"), ("password", "guess guess guess")])
            .await;
        statuses.push(answer.status);
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(*statuses.last().unwrap(), StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // Even the right password waits out the limit.
    let right = web
        .post_form("/sign-in", &Auth::None, &[("user", "dave"), ("password", PASSWORD)])
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(right.body.contains("too many sign-in attempts"));
    assert_eq!(right.headers[header::RETRY_AFTER], "60");

    // The limit is per user and client: failing as dave from elsewhere does not lock dave out.
    // An IPv6 client counts as its /64.
    let sign_in_from = |address: &str, password: &str| {
        let address: std::net::SocketAddr = address.parse().unwrap();
        let body = serde_urlencoded::to_string([("user", "dave"), ("password", password)]).unwrap();
        Request::post("/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .extension(axum::extract::ConnectInfo(address))
            .body(Body::from(body))
            .unwrap()
    };
    for _ in 0..12 {
        web.send(sign_in_from("[2001:db8::1]:5000", "guess guess guess")).await;
    }
    let same_network = web.send(sign_in_from("[2001:db8::2]:5000", PASSWORD)).await;
    assert_eq!(
        same_network.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the same /64 is the same client"
    );
    let elsewhere = web.send(sign_in_from("192.0.2.7:5000", PASSWORD)).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::SEE_OTHER,
        "dave signs in from his own machine: {}",
        elsewhere.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_read_everything_and_change_nothing() {
    let nats = TestNats::start();
    let web = Web::start(&nats.url()).await;
    let viewer = web.token("erin", Role::Viewer).await;
    for path in ["/connections", "/connections/new", "/connections/db/edit"] {
        assert_eq!(web.get(path, &viewer).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let create = web
        .send_json(
            "POST",
            "/api/v1/targets",
            &viewer,
            serde_json::json!({ "name": "x", "dsn": "host=localhost" }),
        )
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    assert!(create.body.contains("only admins"), "{}", create.body);
    assert_eq!(
        web.send_json("DELETE", "/api/v1/targets/x", &viewer, serde_json::json!({}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let fleet = web.get("/", &viewer).await;
    assert_eq!(fleet.status, StatusCode::OK);
    assert!(!fleet.body.contains("href=\"/connections\""), "viewers are not offered connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_connections_with_encrypted_passwords_and_exact_test_results() {
    let logs = common::CapturedLogs::default();
    let _logging = logs.install();
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let web = Web::start(&nats.url()).await;
    let admin = web.session("frank", Role::Admin).await;
    let Auth::Cookie(_, Some(csrf)) = &admin else { unreachable!() };
    let client = postgres.connect().await;
    client
        .batch_execute("CREATE ROLE monitor LOGIN PASSWORD 'monitor-secret-1'")
        .await
        .unwrap();
    postgres.require_passwords();
    let dsn = format!("host=127.0.0.1 port={} user=monitor dbname=postgres", postgres.port());

    // Bad fields: each message beside its field, nothing stored.
    let bad = web
        .post_form(
            "/connections",
            &admin,
            &[
                ("csrf_token", csrf),
                ("name", "Bad Name"),
                ("dsn", "host=x password=inline"),
                ("labels", "no-equals-sign"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("labels must be") || bad.body.contains("KEY=VALUE"),
        "{}",
        bad.body
    );
    let bad_dsn = web
        .post_form(
            "/connections",
            &admin,
            &[("csrf_token", csrf), ("name", "good"), ("dsn", "host=x password=inline")],
        )
        .await;
    assert_eq!(bad_dsn.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_dsn.body.contains("contains a password"), "{}", bad_dsn.body);
    assert!(!bad_dsn.body.contains("inline"), "a password typed into the DSN is not echoed");
    let bad_name = web
        .post_form("/connections", &admin, &[("csrf_token", csrf), ("name", "Bad Name"), ("dsn", &dsn)])
        .await;
    assert_eq!(bad_name.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_name.body.contains("field-error"), "{}", bad_name.body);

    // Test before saving: the exact failure, then success with the checks.
    let test = |password: &'static str, dsn: String| {
        let web = &web;
        let admin = admin.clone();
        async move {
            web.send(
                admin
                    .apply(Request::post("/connections/test"))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(
                        serde_urlencoded::to_string([("name", "db"), ("dsn", dsn.as_str()), ("password", password)]).unwrap(),
                    ))
                    .unwrap(),
            )
            .await
            .body
        }
    };
    let wrong_password = test("wrong", dsn.clone()).await;
    assert!(wrong_password.contains("authentication failed"), "{wrong_password}");
    let refused = test("x", "host=127.0.0.1 port=1 user=monitor dbname=postgres".to_owned()).await;
    assert!(refused.contains("refused"), "{refused}");
    let no_dns = test("x", "host=no-such-host.invalid user=monitor dbname=postgres".to_owned()).await;
    assert!(no_dns.contains("does not resolve"), "{no_dns}");
    let no_database = test("monitor-secret-1", dsn.replace("dbname=postgres", "dbname=nope")).await;
    assert!(no_database.contains("database does not exist"), "{no_database}");
    let connected = test("monitor-secret-1", dsn.clone()).await;
    assert!(connected.contains("Connected."), "{connected}");
    assert!(
        connected.contains("GRANT pg_monitor"),
        "an unprivileged role is told what to grant: {connected}"
    );
    assert!(connected.contains("pg_stat_statements"), "{connected}");
    assert!(!connected.contains("monitor-secret-1"));

    // Add, with the password stored encrypted and never shown.
    let added = web
        .post_form(
            "/connections",
            &admin,
            &[
                ("csrf_token", csrf),
                ("name", "db"),
                ("dsn", &dsn),
                ("password", "monitor-secret-1"),
                ("labels", "region=eu"),
                ("enabled", "true"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let list = web.get("/connections", &admin).await;
    assert!(
        list.body.contains("stored (encrypted)") && list.body.contains("region=eu"),
        "{}",
        list.body
    );
    let edit = web.get("/connections/db/edit", &admin).await;
    assert!(
        !edit.body.contains("monitor-secret-1") && edit.body.contains("leave empty to keep"),
        "{}",
        edit.body
    );
    let api = web.get("/api/v1/targets/db", &admin).await;
    let record: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(record["has_password"], true);
    assert!(
        !api.body.contains("monitor-secret") && !api.body.contains("aes256gcm"),
        "{}",
        api.body
    );

    // Editing with an empty password keeps it: testing the stored settings still connects.
    let edited = web
        .post_form(
            "/connections/db",
            &admin,
            &[
                ("csrf_token", csrf),
                ("name", "db"),
                ("dsn", &dsn),
                ("password", ""),
                ("enabled", "true"),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    let stored_test = web
        .send_json("POST", "/api/v1/targets/db/test", &admin, serde_json::json!({}))
        .await;
    let report: serde_json::Value = serde_json::from_str(&stored_test.body).unwrap();
    assert_eq!(report["ok"], true, "{}", stored_test.body);

    // The stored password goes only where it was given for. Pointed at another host, one that
    // asks for the password in clear, testing or saving without typing the password again is
    // refused on the password field, and that host never receives the stored password.
    let trap = common::CleartextPasswordTrap::start();
    let elsewhere = format!("host=127.0.0.1 port={} user=monitor dbname=postgres", trap.port);
    let ask_again = "the user, host, port or TLS settings changed: enter the password again";
    let test_edit = |dsn: String| {
        let web = &web;
        let admin = admin.clone();
        async move {
            web.post_form(
                "/connections/test",
                &admin,
                &[("editing", "db"), ("name", "db"), ("dsn", dsn.as_str()), ("password", "")],
            )
            .await
            .body
        }
    };
    assert!(
        test_edit(dsn.clone()).await.contains("Connected."),
        "the stored password is used where it belongs"
    );
    let tested_elsewhere = test_edit(elsewhere.clone()).await;
    assert!(tested_elsewhere.contains(ask_again), "{tested_elsewhere}");
    let other_user = test_edit(dsn.replace("user=monitor", "user=postgres")).await;
    assert!(other_user.contains(ask_again), "{other_user}");
    let saved_elsewhere = web
        .post_form(
            "/connections/db",
            &admin,
            &[
                ("csrf_token", csrf),
                ("name", "db"),
                ("dsn", &elsewhere),
                ("password", ""),
                ("enabled", "true"),
            ],
        )
        .await;
    assert_eq!(saved_elsewhere.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", saved_elsewhere.body);
    assert!(saved_elsewhere.body.contains(ask_again), "{}", saved_elsewhere.body);
    let put_elsewhere = web
        .send_json(
            "PUT",
            "/api/v1/targets/db",
            &admin,
            serde_json::json!({"name": "db", "dsn": elsewhere, "enabled": true}),
        )
        .await;
    assert_eq!(put_elsewhere.status, StatusCode::BAD_REQUEST, "{}", put_elsewhere.body);
    assert!(put_elsewhere.body.contains("\"password\""), "{}", put_elsewhere.body);
    assert_eq!(trap.connections(), 0, "nothing connected to the other host");
    // Even a password typed for that host does not go there in clear text without verified
    // TLS: the trap sees the connection (so it works) and never a password.
    let typed = test("typed-for-that-host", elsewhere.clone()).await;
    assert!(typed.contains("asked for the password in clear text"), "{typed}");
    assert_eq!(trap.connections(), 1, "the typed password's test reached that host");
    assert_eq!(trap.received_passwords(), Vec::<String>::new());
    let stored_test = web
        .send_json("POST", "/api/v1/targets/db/test", &admin, serde_json::json!({}))
        .await;
    assert!(
        stored_test.body.contains("\"ok\":true"),
        "the stored target is unchanged: {}",
        stored_test.body
    );

    // The audit trail names who tested and changed which target, and how it went.
    let audit = logs.text();
    let audit_lines: Vec<&str> = audit.lines().filter(|line| line.contains("pgmon::audit")).collect();
    for expected in [
        "action=\"connection tested\" monitored_target=\"db\" outcome=\"failed: AuthenticationFailed\"",
        "action=\"connection tested\" monitored_target=\"db\" outcome=\"connected\"",
        "action=\"target added\" monitored_target=\"db\"",
        "action=\"target changed\" monitored_target=\"db\"",
    ] {
        assert!(
            audit_lines
                .iter()
                .any(|line| line.contains("user=frank role=admin") && line.contains(expected)),
            "no audit event {expected}: {audit_lines:#?}"
        );
    }
    assert!(!audit.contains("monitor-secret-1") && !audit.contains("typed-for-that-host"));

    // Disable, then delete.
    let disabled = web
        .post_form("/connections/db/enabled", &admin, &[("csrf_token", csrf), ("enabled", "false")])
        .await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER);
    let record: serde_json::Value = serde_json::from_str(&web.get("/api/v1/targets/db", &admin).await.body).unwrap();
    assert_eq!(record["enabled"], false);
    let deleted = web.post_form("/connections/db/delete", &admin, &[("csrf_token", csrf)]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(web.get("/api/v1/targets/db", &admin).await.status, StatusCode::NOT_FOUND);

    // The same through the JSON API with a token.
    let token = web.token("grace", Role::Admin).await;
    let body = serde_json::json!({ "name": "api", "dsn": dsn, "password": "monitor-secret-1" });
    let created = web.send_json("POST", "/api/v1/targets", &token, body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        web.send_json("POST", "/api/v1/targets", &token, body).await.status,
        StatusCode::CONFLICT
    );
    let bad = web
        .send_json(
            "PUT",
            "/api/v1/targets/api",
            &token,
            serde_json::json!({ "dsn": "port=notanumber" }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&bad.body).unwrap()["field"], "dsn");
    let malformed = web
        .send(
            token
                .apply(Request::post("/api/v1/targets"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert!(malformed.status.is_client_error(), "{}", malformed.status);
    assert_eq!(
        web.send_json("DELETE", "/api/v1/targets/api", &token, serde_json::json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        web.send_json("DELETE", "/api/v1/targets/api", &token, serde_json::json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_endpoint_shows_recorded_data_and_bad_input_names_its_field() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    postgres
        .connect()
        .await
        .batch_execute("CREATE TABLE route_probe (id int PRIMARY KEY, note text); INSERT INTO route_probe SELECT g, 'n' FROM generate_series(1, 1000) g; ANALYZE route_probe;")
        .await
        .unwrap();
    let pipeline = spawn_pipeline(&nats.url(), postgres.connection_string("postgres"), data_dir.path(), &shutdown);
    let web = Web::start(&nats.url()).await;
    let viewer = web.token("heidi", Role::Viewer).await;

    wait_until(Duration::from_secs(60), "the table in the object browser", || {
        let web = &web;
        let viewer = viewer.clone();
        async move {
            web.get("/api/v1/targets/db/objects?name=route_probe", &viewer)
                .await
                .body
                .contains("\"name\":\"route_probe\"")
        }
    })
    .await;

    for path in PAGES {
        let answer = web.get(path, &viewer).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        assert!(
            answer.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"),
            "{path}"
        );
    }
    for path in API {
        let answer = web.get(path, &viewer).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        serde_json::from_str::<serde_json::Value>(&answer.body).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let fleet = web.get("/", &viewer).await.body;
    assert!(fleet.contains("href=\"/targets/db\"") && fleet.contains("status up"), "{fleet}");
    let objects = web.get("/targets/db/objects?name=route_probe", &viewer).await.body;
    assert!(objects.contains("route_probe_pkey"), "the index sits under its table: {objects}");
    let object = web.get("/targets/db/objects/postgres/public/route_probe", &viewer).await.body;
    assert!(object.contains("data-growth-url"), "{object}");

    // Bad input: 400 (400-class for pages) naming the field, never a 500.
    let bad = [
        ("/api/v1/targets/db/activity?range=forever", "range"),
        ("/api/v1/targets/db/activity?by=colour", "by"),
        ("/api/v1/targets/db/activity?from=200&to=100", "from"),
        ("/api/v1/targets/db/activity?range=30d&step=1s", "step"),
        ("/api/v1/targets/db/sessions?limit=0", "limit"),
        ("/api/v1/targets/db/sessions/abc", "pid"),
        ("/api/v1/targets/db/statements?order_by=luck", "order_by"),
        ("/api/v1/targets/db/statements/abc", "query_id"),
        ("/api/v1/targets/db/objects?kind=view", "kind"),
        ("/api/v1/targets/db/objects?offset=-1", "offset"),
        ("/api/v1/targets/db/objects/growth?database=postgres", "schema"),
        ("/api/v1/targets/Bad.Name/activity", "target"),
    ];
    for (path, field) in bad {
        let answer = web.get(path, &viewer).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}: {}", answer.body);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["field"], field, "{path}: {}", answer.body);
    }
    for path in [
        "/targets/db?range=forever",
        "/targets/db/statements?order_by=luck",
        "/targets/db/sessions/abc",
    ] {
        let answer = web.get(path, &viewer).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(answer.body.contains("<html"), "{path}: pages answer with a page");
    }
    assert_eq!(web.get("/api/v1/nothing", &viewer).await.status, StatusCode::NOT_FOUND);
    assert_eq!(web.get("/nothing", &viewer).await.status, StatusCode::NOT_FOUND);

    shutdown.cancel();
    pipeline.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_api_route() {
    let nats = TestNats::start();
    let web = Web::start(&nats.url()).await;
    let token = web.token("ivan", Role::Viewer).await;
    let answer = web.get("/api/v1/openapi.json", &token).await;
    let document: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
    for route in [
        "/api/v1/fleet",
        "/api/v1/targets",
        "/api/v1/targets/{target}",
        "/api/v1/targets/{target}/test",
        "/api/v1/targets/{target}/activity",
        "/api/v1/targets/{target}/sessions",
        "/api/v1/targets/{target}/sessions/{pid}",
        "/api/v1/targets/{target}/statements",
        "/api/v1/targets/{target}/statements/{query_id}",
        "/api/v1/targets/{target}/objects",
        "/api/v1/targets/{target}/objects/growth",
        "/api/v1/targets/{target}/locks/current",
        "/api/v1/targets/{target}/locks/history",
        "/api/v1/targets/{target}/database-stats",
    ] {
        assert!(paths.iter().any(|path| *path == route), "{route} is not documented: {paths:?}");
    }
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}
