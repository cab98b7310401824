//! The web console in a real browser (issue 9): headless Chromium driven
//! through WebDriver (`chromedriver`, fantoccini). Logs in with the admin
//! token, checks that the alerts appear, that the filter form narrows the
//! list, that a hostile event field is shown as text (no `<script>`
//! element, no dialog), and that the Rules and Status pages show what the
//! daemon knows. Saves a screenshot of each page in the test's directory,
//! and in `$TOCSIN_SCREENSHOTS` (relative to the crate) when set:
//! `TOCSIN_SCREENSHOTS=docs/img cargo test --test console_browser`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them). Without them the test fails: it is part of the required suite.

mod common;
mod console_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use console_common::{HOSTILE_INPUT, HOSTILE_MESSAGE, HOSTILE_USER, TOKEN};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(20);

/// A `chromedriver` process on a free port; killed when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ChromeDriver {
    fn start(dir: &Path) -> ChromeDriver {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Chromium and its WebDriver \
                 (`apt-get install -y chromium chromium-driver`, as .ci/run does)"
            );
        }
        let port = common::free_port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let mut d = ChromeDriver { child, port, log };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("chromedriver exited ({status}): {}", d.log());
            }
            // Listening is ready enough: the session request waits for the
            // browser. (Its HTTP answers keep the connection open, so the
            // tests' one-shot HTTP client would wait for the close.)
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return d;
            }
            assert!(
                started.elapsed() < WAIT,
                "chromedriver not ready: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: the test's directory, and `$TOCSIN_SCREENSHOTS`.
struct Shots(Vec<PathBuf>);

impl Shots {
    fn new(dir: &Path) -> Shots {
        let mut dirs = vec![dir.join("screenshots")];
        if let Some(extra) = std::env::var_os("TOCSIN_SCREENSHOTS").filter(|v| !v.is_empty()) {
            dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(extra));
        }
        for d in &dirs {
            std::fs::create_dir_all(d).expect("screenshot directory");
        }
        Shots(dirs)
    }

    /// Sizes the window to the page (up to a limit) and saves a PNG.
    async fn take(&self, c: &Client, name: &str) -> PathBuf {
        // Measured in a small window: the document is at least as tall as
        // the viewport, which is the window less the browser's own frame.
        c.set_window_size(1280, 700).await.expect("window size");
        let size = c
            .execute(
                "return [document.documentElement.scrollHeight, window.innerHeight]",
                vec![],
            )
            .await
            .expect("page height");
        let px = |i: usize| size[i].as_u64().unwrap_or(700);
        let frame = 700u64.saturating_sub(px(1));
        let height = (px(0) + frame).clamp(700, 2400);
        c.set_window_size(1280, u32::try_from(height).unwrap_or(900))
            .await
            .expect("window size");
        let png = c.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
        for d in &self.0 {
            std::fs::write(d.join(format!("{name}.png")), &png).expect("write screenshot");
        }
        self.0[0].join(format!("{name}.png"))
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.expect("find_all") {
        out.push(e.text().await.expect("text"));
    }
    out
}

async fn child_text(e: &Element, css: &str) -> String {
    e.find(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("no {css} in the row: {err}"))
        .text()
        .await
        .expect("text")
}

/// Waits until the page's `<h1>` starts with `heading`.
async fn wait_page(c: &Client, heading: &str) {
    let started = Instant::now();
    loop {
        if let Ok(h1) = c.find(Locator::Css("h1")).await
            && h1.text().await.is_ok_and(|t| t.starts_with(heading))
        {
            return;
        }
        if started.elapsed() > WAIT {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let src = c.source().await.unwrap_or_default();
            panic!("page “{heading}” did not show; at {url}:\n{src}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nothing the daemon was fed became markup or ran: no `<script>` element
/// and no dialog open.
async fn nothing_injected(c: &Client, page: &str) {
    let scripts = c.find_all(Locator::Css("script")).await.expect("find_all");
    assert!(
        scripts.is_empty(),
        "{page}: a <script> element is in the page"
    );
    let dialog = c.get_alert_text().await;
    assert!(dialog.is_err(), "{page}: a dialog is open: {dialog:?}");
    for css in ["i", "b"] {
        assert!(
            c.find_all(Locator::Css(css))
                .await
                .expect("find_all")
                .is_empty(),
            "{page}: a <{css}> element from a label or description is in the page"
        );
    }
}

async fn submit_filter(c: &Client, rule: &str, status: &str, severity: &str) -> Vec<Element> {
    for (id, value) in [
        ("#filter-rule", rule),
        ("#filter-status", status),
        ("#filter-severity", severity),
    ] {
        c.find(Locator::Css(id))
            .await
            .expect("filter menu")
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("{id} = {value:?}: {e}"));
    }
    c.find(Locator::Css("#filter-submit"))
        .await
        .expect("filter button")
        .click()
        .await
        .expect("submit the filter");
    let want = format!("rule={rule}&status={status}&severity={severity}");
    let started = Instant::now();
    while !c
        .current_url()
        .await
        .is_ok_and(|u| u.query() == Some(want.as_str()))
    {
        assert!(
            started.elapsed() < WAIT,
            "the filter form did not submit {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_page(c, "Alerts").await;
    c.find_all(Locator::Css("tr.alert")).await.expect("rows")
}

async fn browse(c: Client, base: String, hostile_id: String, shots: Shots) {
    let t0 = Instant::now();
    eprintln!("{:6.2}s login", t0.elapsed().as_secs_f64());
    // Without the cookie the console asks for the token.
    c.goto(&format!("{base}/alerts")).await.expect("goto");
    wait_page(&c, "Log in").await;
    c.find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(TOKEN)
        .await
        .expect("type the token");
    c.find(Locator::Css("form.login button"))
        .await
        .expect("login button")
        .click()
        .await
        .expect("log in");

    eprintln!("{:6.2}s alerts", t0.elapsed().as_secs_f64());
    // Alerts: all five, the hostile one shown as text.
    wait_page(&c, "Alerts").await;
    nothing_injected(&c, "/alerts").await;
    let rows = c.find_all(Locator::Css("tr.alert")).await.expect("rows");
    assert_eq!(rows.len(), 5, "{}", c.source().await.unwrap_or_default());
    let mut hostile = None;
    for row in &rows {
        if child_text(row, "td.key code").await == format!("{{\"user\":\"{HOSTILE_USER}\"}}") {
            hostile = Some(row.clone());
        }
    }
    let hostile = hostile.expect("a row keyed by the hostile user, shown as text");
    assert_eq!(child_text(&hostile, "td.message").await, HOSTILE_MESSAGE);
    assert_eq!(child_text(&hostile, "td.rule").await, "hostile_login");
    assert_eq!(
        hostile.attr("data-id").await.expect("attr").as_deref(),
        Some(hostile_id.as_str())
    );
    shots.take(&c, "console-alerts").await;

    eprintln!("{:6.2}s filter", t0.elapsed().as_secs_f64());
    // The filter form narrows the list, and each kept row matches it.
    let rows = submit_filter(&c, "", "", "critical").await;
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(child_text(r, "td.severity").await, "critical");
    }
    let rows = submit_filter(&c, "error_burst", "resolved", "").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(child_text(&rows[0], "td.status").await, "resolved");
    let rows = submit_filter(&c, "disk_full", "", "").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(child_text(&rows[0], "td.message").await, "db1 disk at 95%");
    assert!(
        submit_filter(&c, "disk_full", "resolved", "")
            .await
            .is_empty()
    );
    assert_eq!(
        text(&c, ".empty").await,
        "No alerts match this filter.",
        "the empty filtered list says so"
    );
    let rows = submit_filter(&c, "", "", "").await;
    assert_eq!(rows.len(), 5);

    eprintln!("{:6.2}s alert page", t0.elapsed().as_secs_f64());
    // The hostile alert's page: message, key, JSON and event as text;
    // delivery per channel.
    let mut link = None;
    for row in &rows {
        if row.attr("data-id").await.expect("attr").as_deref() == Some(hostile_id.as_str()) {
            link = Some(row.find(Locator::Css("td.time a")).await.expect("link"));
        }
    }
    link.expect("the hostile alert's row")
        .click()
        .await
        .expect("open the alert");
    wait_page(&c, "Alert").await;
    nothing_injected(&c, "alert page").await;
    assert_eq!(text(&c, "#alert-message").await, HOSTILE_MESSAGE);
    assert_eq!(
        text(&c, "#alert-key").await,
        format!("{{\"user\":\"{HOSTILE_USER}\"}}")
    );
    let json = text(&c, "#alert-json").await;
    assert!(
        json.contains(&format!("\"message\": \"{HOSTILE_MESSAGE}\"")),
        "{json}"
    );
    let event = text(&c, "pre.event").await;
    assert!(
        event.contains(&format!("\"user\": \"{HOSTILE_USER}\"")),
        "{event}"
    );
    let states = texts(&c, "tr.delivery td.state").await;
    let channels = texts(&c, "tr.delivery td.channel").await;
    assert_eq!(channels, ["archive", "hook"]);
    assert_eq!(states, ["delivered", "retrying"]);
    let detail = texts(&c, "tr.delivery td.detail").await;
    assert!(detail[1].contains("last error: "), "{detail:?}");
    shots.take(&c, "console-alert").await;

    eprintln!("{:6.2}s rules", t0.elapsed().as_secs_f64());
    // Rules: every rule; a rule's page shows its source as text.
    c.find(Locator::Css("nav a[href=\"/rules\"]"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("go to Rules");
    wait_page(&c, "Rules").await;
    nothing_injected(&c, "/rules").await;
    assert_eq!(
        texts(&c, "tr.rule td.name a").await,
        ["hostile_login", "disk_full", "error_burst"]
    );
    assert_eq!(
        texts(&c, "tr.rule td.kind").await,
        ["filter", "filter", "threshold"]
    );
    assert_eq!(texts(&c, "tr.rule td.fired").await, ["2", "1", "2"]);
    assert_eq!(
        texts(&c, "tr.rule td.location").await,
        ["console.rules:3", "console.rules:12", "console.rules:20"]
    );
    assert_eq!(
        text(&c, "tr.rule .description").await,
        "Logins, with the user name in the message <b>as written</b>"
    );
    shots.take(&c, "console-rules").await;
    c.find(Locator::Css("tr.rule td.name a[href=\"/rules/disk_full\"]"))
        .await
        .expect("rule link")
        .click()
        .await
        .expect("open the rule");
    wait_page(&c, "Rule disk_full").await;
    nothing_injected(&c, "/rules/disk_full").await;
    let source = text(&c, "#rule-source").await;
    assert!(source.starts_with("rule disk_full {"), "{source}");
    assert!(
        source.contains("# <script>alert(\"rule text\")</script>"),
        "{source}"
    );
    assert_eq!(
        c.find_all(Locator::Css("tr.alert"))
            .await
            .expect("rows")
            .len(),
        1
    );

    eprintln!("{:6.2}s status", t0.elapsed().as_secs_f64());
    // Status: sources, rejections with the hostile sample as text, outbox,
    // the failed reload's errors, version.
    c.find(Locator::Css("nav a[href=\"/status\"]"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("go to Status");
    wait_page(&c, "Status").await;
    nothing_injected(&c, "/status").await;
    assert_eq!(text(&c, "#source-http td.received").await, "6");
    assert_eq!(text(&c, "#source-http td.rejected").await, "2");
    assert_eq!(text(&c, "#source-tcp td.received").await, "0");
    let samples = texts(&c, "tr.sample code.input").await;
    assert_eq!(samples, ["{\"ts\":5}", HOSTILE_INPUT]);
    assert_eq!(text(&c, "#channel-archive td.pending").await, "0");
    let errors = text(&c, "#reload-errors").await;
    assert!(
        errors.contains(
            "zz-broken.rules:2:29: error: syntax error: expected an expression, found `<script>`"
        ),
        "{errors}"
    );
    assert_eq!(text(&c, "#version").await, env!("CARGO_PKG_VERSION"));
    assert!(text(&c, "#watermark").await.contains("(lag "));
    shots.take(&c, "console-status").await;

    eprintln!("{:6.2}s logout", t0.elapsed().as_secs_f64());
    // Log out: the console asks for the token again.
    c.find(Locator::Css("form.logout button"))
        .await
        .expect("logout button")
        .click()
        .await
        .expect("log out");
    wait_page(&c, "Log in").await;
    c.goto(&format!("{base}/status")).await.expect("goto");
    wait_page(&c, "Log in").await;
}

#[test]
fn console_in_headless_chromium() {
    let started = Instant::now();
    let fixture = console_common::start();
    let base = format!("http://127.0.0.1:{}", fixture.daemon.port);
    eprintln!("daemon fed: {:.2}s", started.elapsed().as_secs_f64());
    let driver = ChromeDriver::start(fixture.dir.path());
    let profile = tempfile::tempdir().expect("profile dir");
    let shots = Shots::new(fixture.dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        // Report a dialog instead of dismissing it, so one would be seen.
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", driver.log()));
        eprintln!("browser session: {:.2}s", started.elapsed().as_secs_f64());
        // Checks run in a task so that a failed one still ends the browser.
        let checks = tokio::spawn(browse(
            client.clone(),
            base,
            fixture.hostile_id.clone(),
            shots,
        ))
        .await;
        let _ = client.close().await;
        if let Err(e) = checks {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("browser checks did not finish: {e}"),
            }
        }
    });
    eprintln!(
        "console_in_headless_chromium: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
