//! The UI in a real browser (Debian's chromium, headless, driven through chromedriver): sign
//! in, add a target pointing at a test PostgreSQL, see its activity chart draw real data, see a
//! blocking chain on the locks page and the alert it raises, find a new table in the object
//! tree, and read the pages a notification links to at a phone's width (390 px). Each page's
//! screenshot is saved under `target/browser-screenshots/`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{collector_config, ingester_config, serve_config, start_lock_wait};
use fantoccini::{Client, ClientBuilder, Locator};
use pgmon_common::access::{AccessStore, Role};
use pgmon_common::nats_setup::connect_jetstream;
use pgmon_common::secret::SecretKey;
use pgmon_test_support::{free_local_port, TestNats, TestPostgres};
use tokio_util::sync::CancellationToken;

const ADMIN_PASSWORD: &str = "browser test password";

/// chromedriver, stopped when the test ends however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromedriver(port: u16) -> Driver {
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is missing: scripts/setup.sh installs Debian's chromium-driver");
    Driver(child)
}

async fn open_browser(driver_port: u16, profile: &std::path::Path) -> Client {
    let arguments = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = serde_json::json!({
        "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": arguments },
        "goog:loggingPrefs": { "browser": "ALL" }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let attempt = ClientBuilder::new(connector)
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await;
        match attempt {
            Ok(client) => return client,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("cannot start chromium through chromedriver: {error}"),
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// chromedriver's console log of the page (`POST /session/{id}/se/log`): what the browser's
/// developer tools would show, Content-Security-Policy refusals included.
#[derive(Debug)]
struct ConsoleLog;

impl fantoccini::wd::WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// Fails on any error the page logged to the console since the last look.
async fn assert_no_console_errors(browser: &Client, page: &str) {
    let entries = browser.issue_cmd(ConsoleLog).await.unwrap();
    let errors: Vec<&serde_json::Value> = entries
        .as_array()
        .map(|entries| entries.iter().filter(|entry| entry["level"] == "SEVERE").collect())
        .unwrap_or_default();
    assert!(errors.is_empty(), "the {page} page logged errors to the console: {errors:#?}");
}

/// Saves a screenshot of the page, after checking it logged no error.
async fn screenshot(browser: &Client, name: &str) {
    assert_no_console_errors(browser, name).await;
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

async fn click(browser: &Client, locator: Locator<'_>) {
    browser.find(locator).await.unwrap().click().await.unwrap();
}

async fn type_into(browser: &Client, locator: Locator<'_>, text: &str) {
    browser.find(locator).await.unwrap().send_keys(text).await.unwrap();
}

/// Waits until the page's text (of `selector`) contains `text`, reloading it with `reload`.
async fn wait_for_text(browser: &Client, selector: &str, text: &str, limit: Duration, reload: bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(element) = browser.find(Locator::Css(selector)).await {
            if let Ok(found) = element.text().await {
                if found.contains(text) {
                    return found;
                }
                if Instant::now() > deadline {
                    panic!("{selector} never showed {text:?}; it shows: {found}");
                }
            }
        } else if Instant::now() > deadline {
            panic!("{selector} never appeared on {}", browser.current_url().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if reload {
            browser.refresh().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dba_signs_in_adds_a_target_and_sees_activity_locks_objects_and_health() {
    let postgres = TestPostgres::start();
    let nats = TestNats::start();
    let data_dir = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let key = SecretKey::generate();
    postgres
        .connect()
        .await
        .batch_execute("CREATE ROLE shop_monitor LOGIN PASSWORD 'shop-monitor-pw' IN ROLE pg_monitor")
        .await
        .unwrap();
    postgres.require_passwords();

    // A collector that follows the registry, an ingester and the web server on a real port.
    let mut collector = collector_config(&nats.url(), &[], Duration::from_millis(500));
    collector.secret_key = Some(SecretKey::parse(&key).unwrap());
    let collector = tokio::spawn(pgmon_collector::run(collector, shutdown.clone()));
    let ingester = tokio::spawn(pgmon_ingester::run(ingester_config(&nats.url(), data_dir.path()), shutdown.clone()));
    // An alerter with one rule: a session waiting for a lock for 2 s (its receiver is nowhere,
    // the page shows the alert all the same).
    let alerts_file = data_dir.path().join("alerts.toml");
    std::fs::write(
        &alerts_file,
        "[[receiver]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\n\
         [[rule]]\nname = \"lock-wait\"\nwhen.lock_waits = { sessions = 1 }\nfor = \"2s\"\nresolve_for = \"2s\"\nreceivers = [\"ops\"]\n",
    )
    .unwrap();
    let alerter = tokio::spawn(pgmon_alerter::run(
        pgmon_alerter::AlerterConfig {
            nats: common::nats_args_as(&nats.url(), pgmon_common::nats_access::NatsRole::Alerter),
            alerts_file: Some(alerts_file),
            alerter_id: "browser".to_owned(),
            web_url: "http://127.0.0.1".to_owned(),
            retry: pgmon_alerter::RetryPolicy {
                first_wait: Duration::from_secs(1),
                longest_wait: Duration::from_secs(5),
                give_up_after: Duration::from_secs(3600),
                request_timeout: Duration::from_secs(2),
            },
        },
        shutdown.clone(),
    ));
    let mut web_config = serve_config(&nats.url());
    web_config.secret_key = Some(SecretKey::parse(&key).unwrap());
    let server = pgmon_query_api::bind(&web_config).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let web = tokio::spawn(server.serve(shutdown.clone()));
    let jetstream = connect_jetstream(&common::nats_args(&nats.url()), pgmon_common::nats_access::NatsRole::Admin)
        .await
        .unwrap();
    AccessStore::open(&jetstream)
        .await
        .unwrap()
        .add_user(&"dba".parse().unwrap(), Role::Admin, ADMIN_PASSWORD)
        .await
        .unwrap();

    let driver_port = free_local_port();
    let _driver = start_chromedriver(driver_port);
    let browser = open_browser(driver_port, profile.path()).await;

    // Sign in: the fleet sends the browser to the sign-in page first.
    browser.goto(&format!("{base}/")).await.unwrap();
    assert!(browser.current_url().await.unwrap().path().starts_with("/sign-in"));
    screenshot(&browser, "sign-in").await;
    type_into(&browser, Locator::Id("user"), "dba").await;
    type_into(&browser, Locator::Id("password"), ADMIN_PASSWORD).await;
    click(&browser, Locator::Css("form button[type=submit]")).await;
    wait_for_text(&browser, "main h1", "Fleet", Duration::from_secs(10), false).await;

    // Add a connection, testing it first.
    browser.goto(&format!("{base}/connections/new")).await.unwrap();
    type_into(&browser, Locator::Id("name"), "shop").await;
    let dsn = format!("host=127.0.0.1 port={} user=shop_monitor dbname=postgres", postgres.port());
    type_into(&browser, Locator::Id("dsn"), &dsn).await;
    type_into(&browser, Locator::Id("password"), "wrong").await;
    click(&browser, Locator::XPath("//button[normalize-space()='Test connection']")).await;
    wait_for_text(&browser, "#test-result", "authentication failed", Duration::from_secs(15), false).await;
    let password = browser.find(Locator::Id("password")).await.unwrap();
    password.clear().await.unwrap();
    password.send_keys("shop-monitor-pw").await.unwrap();
    click(&browser, Locator::XPath("//button[normalize-space()='Test connection']")).await;
    wait_for_text(&browser, "#test-result", "Connected.", Duration::from_secs(15), false).await;
    screenshot(&browser, "connection-test").await;
    click(&browser, Locator::Css("form.connection button[type=submit]")).await;
    let list = wait_for_text(&browser, "table.connections", "shop", Duration::from_secs(10), false).await;
    assert!(list.contains("stored (encrypted)") && !list.contains("shop-monitor-pw"), "{list}");
    screenshot(&browser, "connections").await;

    // Real load: sessions sleeping, so the chart has bands.
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let client = postgres.connect().await;
        sleepers.push(tokio::spawn(async move { client.batch_execute("SELECT pg_sleep(20)").await }));
    }
    browser.goto(&format!("{base}/")).await.unwrap();
    wait_for_text(&browser, "#fleet-table", "up", Duration::from_secs(30), true).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    screenshot(&browser, "fleet").await;

    // The activity chart draws the sleepers (wait event type Timeout) from the stored samples.
    browser.goto(&format!("{base}/targets/shop?range=15m")).await.unwrap();
    let legend = wait_for_text(&browser, "#activity-chart .u-legend", "Timeout", Duration::from_secs(30), true).await;
    assert!(legend.contains("Timeout"), "{legend}");
    browser.find(Locator::Css("#activity-chart canvas")).await.unwrap();
    // Clicking the chart lists that moment's sessions.
    let over = browser.find(Locator::Css("#activity-chart .u-over")).await.unwrap();
    over.click().await.unwrap();
    wait_for_text(&browser, "#slice", "Sessions, busiest first", Duration::from_secs(15), false).await;
    screenshot(&browser, "activity").await;

    // A blocking chain shows on the locks page, refreshed live.
    let lock_wait = start_lock_wait(&postgres).await;
    browser.goto(&format!("{base}/targets/shop/locks")).await.unwrap();
    let tree = wait_for_text(&browser, "#current-blocking", "waiting", Duration::from_secs(30), false).await;
    assert!(
        tree.contains("LOCK TABLE contended") || tree.contains("AccessExclusiveLock"),
        "{tree}"
    );
    screenshot(&browser, "locks").await;
    // The wait raises the alert: the Alerts page shows it firing, the activity chart marks it.
    browser.goto(&format!("{base}/alerts")).await.unwrap();
    let alerts = wait_for_text(&browser, "table.alerts-now", "firing", Duration::from_secs(30), true).await;
    assert!(alerts.contains("lock-wait") && alerts.contains("shop"), "{alerts}");
    screenshot(&browser, "alerts").await;
    lock_wait.holder.batch_execute("COMMIT").await.unwrap();
    browser.goto(&format!("{base}/targets/shop?range=15m")).await.unwrap();
    wait_for_text(&browser, "ul.changes", "alert lock-wait firing", Duration::from_secs(30), true).await;

    // A table created by the test is found by searching the object tree.
    postgres
        .connect()
        .await
        .batch_execute("CREATE TABLE browser_orders (id bigint PRIMARY KEY, note text); INSERT INTO browser_orders SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g; ANALYZE browser_orders;")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        browser.goto(&format!("{base}/targets/shop/objects")).await.unwrap();
        if let Ok(search) = browser.find(Locator::Css("form.filters input[name=name]")).await {
            search.send_keys("browser_orders").await.unwrap();
            click(&browser, Locator::Css("form.filters button[type=submit]")).await;
            // The results page replaces the form's page; read it once it is there.
            let results = browser
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("main"))
                .await
                .unwrap();
            if results.text().await.unwrap_or_default().contains("browser_orders_pkey") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "browser_orders never appeared in the object tree");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    screenshot(&browser, "objects").await;
    browser.goto(&format!("{base}/targets/shop/objects")).await.unwrap();
    screenshot(&browser, "objects-overview").await;
    // Stacked by query, the legend names each statement by its text, linking to its page.
    browser.goto(&format!("{base}/targets/shop?range=15m&by=query_id")).await.unwrap();
    wait_for_text(
        &browser,
        "#activity-chart ol.series-legend",
        "pg_sleep",
        Duration::from_secs(60),
        true,
    )
    .await;
    let link = browser
        .find(Locator::XPath("//ol[@class='series-legend']//a[contains(., 'pg_sleep')]"))
        .await
        .unwrap();
    let href = link.attr("href").await.unwrap().unwrap();
    assert!(href.starts_with("/targets/shop/statements/"), "{href}");
    screenshot(&browser, "activity-by-query").await;
    browser.goto(&format!("{base}/targets/shop/statements?range=15m")).await.unwrap();
    wait_for_text(&browser, "main", "Statements", Duration::from_secs(5), false).await;
    screenshot(&browser, "statements").await;

    // The Health tab, with a standby streaming from the target so the lag chart draws.
    let standby = postgres.start_standby();
    browser.goto(&format!("{base}/targets/shop/health")).await.unwrap();
    let health = wait_for_text(&browser, "main", "streaming", Duration::from_secs(30), true).await;
    assert!(
        health.contains("Transaction-ID wraparound") && health.contains("Maintenance running now"),
        "{health}"
    );
    // The chart reads the stored history, which may lag the stream by a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser.find(Locator::Css("div[data-lag-url] canvas")).await.is_err() {
        assert!(Instant::now() < deadline, "the replication lag chart never drew");
        tokio::time::sleep(Duration::from_secs(1)).await;
        browser.refresh().await.unwrap();
    }
    screenshot(&browser, "health").await;
    drop(standby);

    // At a phone's width the pages a notification links to read line by line: a statement's
    // text keeps a readable width (the table scrolls sideways), and no page is wider than the
    // screen.
    browser.set_window_size(390, 844).await.unwrap();
    for (name, path, wait_for) in [
        ("alerts-phone", "/alerts".to_owned(), "main"),
        ("activity-phone", "/targets/shop?range=15m".to_owned(), "#activity-chart canvas"),
        ("locks-phone", "/targets/shop/locks".to_owned(), "main"),
        ("statements-phone", "/targets/shop/statements?range=15m".to_owned(), "td.query"),
    ] {
        browser.goto(&format!("{base}{path}")).await.unwrap();
        browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(wait_for))
            .await
            .unwrap();
        screenshot(&browser, name).await;
        let overflow = browser
            .execute("return document.documentElement.scrollWidth - window.innerWidth", vec![])
            .await
            .unwrap();
        assert!(
            overflow.as_f64().unwrap_or(f64::MAX) <= 1.0,
            "{path} is {overflow} px wider than a 390 px screen"
        );
    }
    let query_width = browser
        .execute(
            "return Math.min(...[...document.querySelectorAll('td.query')].map((cell) => cell.getBoundingClientRect().width))",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        query_width.as_f64().unwrap_or(0.0) >= 200.0,
        "a statement's text is squeezed to {query_width} px at 390 px"
    );

    browser.close().await.unwrap();
    for sleeper in sleepers {
        let _ = sleeper.await;
    }
    shutdown.cancel();
    collector.await.unwrap().unwrap();
    ingester.await.unwrap().unwrap();
    alerter.await.unwrap().unwrap();
    web.await.unwrap().unwrap();
}
