//! The web console over plain HTTP (issue 9): status codes, the admin
//! token and the login cookie, escaping of everything user-controlled, the
//! alert filter, delivery states and the Status page's content. The same
//! pages in a real browser: `tests/console_browser.rs`.

mod common;
mod console_common;

use common::{get, http};
use console_common::{Fixture, TOKEN, get_auth};

/// Rows of the alert tables in a page.
fn alert_rows(page: &str) -> Vec<&str> {
    page.split("<tr class=\"alert\"").skip(1).collect()
}

fn no_markup_injected(path: &str, page: &str) {
    let lower = page.to_ascii_lowercase();
    assert!(
        !lower.contains("<script"),
        "{path} holds a <script>:\n{page}"
    );
    assert!(
        !lower.contains("<i>identity"),
        "{path} holds a raw label:\n{page}"
    );
    assert!(
        !lower.contains("<b>as written"),
        "{path} holds a raw description:\n{page}"
    );
}

#[test]
fn console_pages_status_codes_escaping_filter_and_login() {
    let Fixture {
        daemon: d,
        hostile_id,
        disk_id,
        dir: _dir,
    } = console_common::start();
    let port = d.port;
    let pages = [
        "/rules".to_string(),
        "/rules/disk_full".to_string(),
        "/alerts".to_string(),
        "/alerts?rule=&status=&severity=".to_string(),
        format!("/alerts/{hostile_id}"),
        "/status".to_string(),
    ];

    // Without the token: 401 and a login form, for every page.
    for p in &pages {
        let r = get(port, p);
        assert_eq!(r.status, 401, "{p}: {}", r.body);
        assert!(
            r.body
                .contains("<form class=\"login\" method=\"post\" action=\"/login\">"),
            "{p}: {}",
            r.body
        );
        assert!(!r.body.contains("<table"), "{p} leaks content: {}", r.body);
    }
    let wrong = http(
        port,
        "GET",
        "/status",
        &[("Authorization", "Bearer nope")],
        b"",
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    // `/` sends to the Alerts page; the stylesheet is public.
    let root = get(port, "/");
    assert_eq!(root.status, 303);
    assert!(
        root.headers
            .to_ascii_lowercase()
            .contains("location: /alerts"),
        "{}",
        root.headers
    );
    let css = get(port, "/console.css");
    assert_eq!(css.status, 200);
    assert!(css.headers.contains("text/css"), "{}", css.headers);

    // With the bearer token: 200, HTML, a CSP without script, nothing injected.
    for p in &pages {
        let r = get_auth(port, p);
        assert_eq!(r.status, 200, "{p}: {}", r.body);
        assert!(
            r.headers.contains("text/html; charset=utf-8"),
            "{p}: {}",
            r.headers
        );
        assert!(
            r.headers.contains("default-src 'none'"),
            "{p}: {}",
            r.headers
        );
        no_markup_injected(p, &r.body);
    }
    assert_eq!(get_auth(port, "/rules/no_such_rule").status, 404);
    assert_eq!(
        get_auth(port, "/alerts/0123456789abcdef0123456789abcdef").status,
        404
    );
    assert_eq!(get_auth(port, "/alerts/%3Cscript%3E").status, 404);

    // Escaping: the hostile event field, in the key, the message, the JSON
    // and the matched event.
    let alerts = get_auth(port, "/alerts").body;
    assert!(
        alerts.contains(
            "<code>{&quot;user&quot;:&quot;&lt;script&gt;alert(1)&lt;&#x2f;script&gt;&quot;}</code>"
        ),
        "{alerts}"
    );
    assert!(
        alerts.contains("<td class=\"message\">&lt;script&gt;alert(1)&lt;&#x2f;script&gt; logged in from 203.0.113.7</td>"),
        "{alerts}"
    );
    let alert = get_auth(port, &format!("/alerts/{hostile_id}")).body;
    assert!(
        alert.contains("<p class=\"message\" id=\"alert-message\">&lt;script&gt;alert(1)&lt;&#x2f;script&gt; logged in from 203.0.113.7</p>"),
        "{alert}"
    );
    assert!(
        alert.contains("&quot;user&quot;: &quot;&lt;script&gt;alert(1)&lt;&#x2f;script&gt;&quot;,"),
        "{alert}"
    );
    assert!(
        alert.contains("<pre class=\"event\">{\n  &quot;ts&quot;: "),
        "{alert}"
    );
    assert!(
        alert.contains("&lt;i&gt;identity&lt;&#x2f;i&gt;"),
        "{alert}"
    );
    // Delivery state per channel: the file took it, the webhook retries.
    let row = |channel: &str| {
        alert
            .split(&format!("data-channel=\"{channel}\""))
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_else(|| panic!("no delivery row for {channel}: {alert}"))
            .to_string()
    };
    let archive = row("archive");
    assert!(
        archive.contains("<span class=\"badge delivered\">delivered</span>"),
        "{archive}"
    );
    let hook = row("hook");
    assert!(
        hook.contains("<span class=\"badge retrying\">retrying</span>"),
        "{hook}"
    );
    assert!(hook.contains("failed attempt"), "{hook}");
    assert!(hook.contains("last error: "), "{hook}");
    // Rule text and descriptions.
    let rule = get_auth(port, "/rules/disk_full").body;
    assert!(
        rule.contains("# &lt;script&gt;alert(&quot;rule text&quot;)&lt;&#x2f;script&gt;"),
        "{rule}"
    );
    assert!(rule.contains(&format!("/alerts/{disk_id}")), "{rule}");
    assert_eq!(alert_rows(&rule).len(), 1, "{rule}");
    let hostile_rule = get_auth(port, "/rules/hostile_login").body;
    assert!(
        hostile_rule.contains("&lt;b&gt;as written&lt;&#x2f;b&gt;"),
        "{hostile_rule}"
    );

    // The filter narrows the list; every row it keeps matches.
    let all = alert_rows(&alerts);
    assert_eq!(all.len(), 5, "{alerts}");
    for (query, n, must) in [
        ("rule=disk_full", 1, "<a href=\"/rules/disk_full\">"),
        ("severity=critical", 2, "sev-critical"),
        ("status=resolved", 1, "badge resolved"),
        (
            "rule=error_burst&status=firing&severity=",
            1,
            "badge firing",
        ),
        ("rule=error_burst&severity=info", 0, ""),
    ] {
        let page = get_auth(port, &format!("/alerts?{query}")).body;
        let rows = alert_rows(&page);
        assert_eq!(rows.len(), n, "{query}: {page}");
        assert!(rows.iter().all(|r| r.contains(must)), "{query}: {page}");
        // The form shows the filter it applied.
        if let Some(rule) = query
            .strip_prefix("rule=")
            .map(|r| r.split('&').next().unwrap_or(""))
        {
            assert!(
                page.contains(&format!("<option value=\"{rule}\" selected>")),
                "{query}: {page}"
            );
        }
    }
    // Unknown parameters are no filter, not an error.
    assert_eq!(alert_rows(&get_auth(port, "/alerts?foo=bar").body).len(), 5);

    // Rules: every rule with kind, severity, place and counters.
    let rules = get_auth(port, "/rules").body;
    for (name, kind, severity, line, fired) in [
        ("hostile_login", "filter", "critical", 3, 2),
        ("disk_full", "filter", "warning", 12, 1),
        ("error_burst", "threshold", "error", 20, 2),
    ] {
        let row = rules
            .split(&format!("<tr class=\"rule\" id=\"rule-{name}\">"))
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_else(|| panic!("no row for {name}: {rules}"));
        assert!(
            row.contains(&format!("<td class=\"kind\">{kind}</td>")),
            "{row}"
        );
        assert!(row.contains(&format!("sev-{severity}")), "{row}");
        assert!(
            row.contains(&format!(
                "rules&#x2f;console.rules\">console.rules:{line}</code>"
            )),
            "{row}"
        );
        assert!(
            row.contains(&format!("<td class=\"num matches\">{fired}</td>")),
            "{row}"
        );
        assert!(
            row.contains(&format!("<a href=\"/alerts?rule={name}\">{fired}</a>")),
            "{row}"
        );
        assert!(!row.contains("<td class=\"last-alert\">—</td>"), "{row}");
    }
    assert!(
        rules.contains("<span class=\"badge failed\">failed</span>"),
        "{rules}"
    );

    // Status: sources, rejections with their samples, outbox, reload errors.
    let status = get_auth(port, "/status").body;
    let http_row = status
        .split("<tr class=\"source\" id=\"source-http\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(
        http_row.contains("<td class=\"num received\">6</td>"),
        "{status}"
    );
    assert!(
        http_row.contains("<td class=\"num rejected\">2</td>"),
        "{status}"
    );
    assert!(status.contains("id=\"source-tcp\""), "{status}");
    assert!(
        status.contains("<code>invalid_json</code></td><td class=\"num\">1</td>"),
        "{status}"
    );
    assert!(
        status.contains("<code>missing_type</code></td><td class=\"num\">1</td>"),
        "{status}"
    );
    assert!(
        status.contains("<code class=\"input\">&lt;script&gt;alert(2)&lt;&#x2f;script&gt;</code>"),
        "{status}"
    );
    assert!(
        status.contains("<code class=\"input\">{&quot;ts&quot;:5}</code>"),
        "{status}"
    );
    assert!(status.contains("id=\"channel-hook\""), "{status}");
    assert!(
        status.contains("<span class=\"badge failed\">failed</span>"),
        "{status}"
    );
    assert!(
        status.contains("zz-broken.rules:2:29: error: syntax error: expected an expression, found `&lt;script&gt;`"),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "<dd id=\"version\">{}</dd>",
            env!("CARGO_PKG_VERSION")
        )),
        "{status}"
    );
    assert!(status.contains("(lag 1m"), "{status}");

    // Login: a wrong token is refused; the right one sets a cookie that
    // opens the console, but not /v1/*.
    let form = |token: &str| format!("token={token}&next=%2Fstatus");
    let ct = [("Content-Type", "application/x-www-form-urlencoded")];
    let bad = http(port, "POST", "/login", &ct, form("nope").as_bytes()).unwrap();
    assert_eq!(bad.status, 401);
    assert!(
        bad.body.contains("That is not the admin token."),
        "{}",
        bad.body
    );
    assert!(
        !bad.headers.to_ascii_lowercase().contains("set-cookie"),
        "{}",
        bad.headers
    );
    let ok = http(port, "POST", "/login", &ct, form(TOKEN).as_bytes()).unwrap();
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(
        ok.headers
            .to_ascii_lowercase()
            .contains("location: /status"),
        "{}",
        ok.headers
    );
    let cookie = ok
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {}", ok.headers));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap_or_default();
    let with_cookie = |p: &str| http(port, "GET", p, &[("Cookie", session)], b"").unwrap();
    assert_eq!(with_cookie("/status").status, 200);
    assert_eq!(with_cookie("/alerts?severity=critical").status, 200);
    assert_eq!(with_cookie("/v1/rules").status, 401);
    let forged = http(
        port,
        "GET",
        "/status",
        &[("Cookie", "tocsin_console=00")],
        b"",
    )
    .unwrap();
    assert_eq!(forged.status, 401);
    // Off-site `next` is ignored.
    let away = http(
        port,
        "POST",
        "/login",
        &ct,
        format!("token={TOKEN}&next=%2F%2Fevil.example").as_bytes(),
    )
    .unwrap();
    assert!(
        away.headers
            .to_ascii_lowercase()
            .contains("location: /alerts"),
        "{}",
        away.headers
    );
    let out = http(port, "POST", "/logout", &[], b"").unwrap();
    assert_eq!(out.status, 303);
    assert!(out.headers.contains("Max-Age=0"), "{}", out.headers);
}

#[test]
fn without_an_admin_token_the_console_is_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
    std::fs::write(dir.path().join("rules/a.rules"), console_common::RULES).expect("rules");
    let config = r#"
rules: {dir}/rules
state_dir: {dir}/state
sources:
  - kind: http
    listen: 127.0.0.1:{port}
admin:
  listen: 127.0.0.1:{port}
channels: {}
"#;
    let d = common::Daemon::start(dir.path(), config, &[]);
    for p in ["/rules", "/rules/disk_full", "/alerts", "/status"] {
        let r = get(d.port, p);
        assert_eq!(r.status, 200, "{p}: {}", r.body);
        assert!(!r.body.contains("Log out"), "{p}: {}", r.body);
    }
    let status = get(d.port, "/status").body;
    assert!(status.contains("no event yet"), "{status}");
    assert!(status.contains("No channels configured."), "{status}");
    let alerts = get(d.port, "/alerts").body;
    assert!(alerts.contains("No alerts."), "{alerts}");
    // Login is not needed: the form sends straight on.
    assert_eq!(get(d.port, "/login").status, 303);
}
