//! The daemon the console tests look at: an admin token, an HTTP and a TCP
//! source, a file channel that accepts every alert and a webhook channel
//! whose receiver is down (so alerts stay "retrying"), rules whose text,
//! labels and messages hold markup, and events that fire five alerts, one
//! of them keyed by a user named `<script>alert(1)</script>`.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::{Daemon, Response, free_port, http, wait_for};

pub const TOKEN: &str = "console-test-token";
pub const HOSTILE_USER: &str = "<script>alert(1)</script>";
pub const HOSTILE_MESSAGE: &str = "<script>alert(1)</script> logged in from 203.0.113.7";
pub const HOSTILE_INPUT: &str = "<script>alert(2)</script>";
pub const WAIT: Duration = Duration::from_secs(20);

pub const RULES: &str = r#"# Rules of the console tests. A comment inside a rule is part of its
# source text, which the console shows escaped.
rule hostile_login {
    description "Logins, with the user name in the message <b>as written</b>"
    severity    critical
    key         user
    from        auth where outcome == "success"
    labels      { team: "<i>identity</i>" }
    message     "{{ event.user }} logged in from {{ event.ip }}"
}

rule disk_full {
    severity warning
    key      host
    # <script>alert("rule text")</script>
    from     disk where used > 90
    message  "{{ event.host }} disk at {{ event.used }}%"
}

rule error_burst {
    severity error
    key      service
    from     http where status >= 500
    window   sliding 10s
    when     count() >= 2
    message  "{{ key.service }}: {{ values['count()'] }} errors in 10s"
}
"#;

/// A rule file that does not load: the reload fails and the old rules stay.
pub const BROKEN: &str = "rule broken {\n    from auth where user == <script>\n}\n";

pub struct Fixture {
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
    /// Ids of the alerts, by rule and status: hostile (the `<script>` user),
    /// alice, disk, burst firing, burst resolved.
    pub hostile_id: String,
    pub disk_id: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn get_auth(port: u16, path: &str) -> Response {
    let bearer = format!("Bearer {TOKEN}");
    http(port, "GET", path, &[("Authorization", &bearer)], b"").expect("GET answered")
}

/// Starts the daemon and feeds it; returns once the five alerts are in
/// `/v1/alerts`, the hostile one's webhook delivery is retrying, and a
/// failed reload is recorded.
pub fn start() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
    std::fs::write(dir.path().join("rules/console.rules"), RULES).expect("rules");
    let hook = free_port(); // nothing listens there: deliveries retry
    let tcp = free_port();
    let config = format!(
        r#"
rules: {{dir}}/rules
state_dir: {{dir}}/state
events:
  max_delay: 0s
sources:
  - kind: http
    listen: 127.0.0.1:{{port}}
  - kind: tcp
    listen: 127.0.0.1:{tcp}
admin:
  listen: 127.0.0.1:{{port}}
  token_env: TOCSIN_CONSOLE_TEST_TOKEN
default_notify: [archive, hook]
channels:
  archive:
    kind: file
    path: {{dir}}/alerts.ndjson
  hook:
    kind: webhook
    url: http://127.0.0.1:{hook}/hook
    timeout: 1s
    retry: {{ initial: 100ms, max: 500ms }}
"#
    );
    let daemon = Daemon::start(dir.path(), &config, &[("TOCSIN_CONSOLE_TEST_TOKEN", TOKEN)]);
    let base = now_ms() - 120_000;
    let ev = |dt: i64, rest: &str| format!("{{\"ts\":{},{rest}}}", base + dt);
    let body = [
        ev(1000, r#""type":"auth","user":"<script>alert(1)</script>","ip":"203.0.113.7","outcome":"success""#),
        ev(2000, r#""type":"auth","user":"alice","ip":"198.51.100.4","outcome":"success""#),
        HOSTILE_INPUT.to_string(),
        ev(3000, r#""type":"disk","host":"db1","used":95"#),
        r#"{"ts":5}"#.to_string(),
        ev(4000, r#""type":"http","service":"api","status":500"#),
        ev(5000, r#""type":"http","service":"api","status":503"#),
        ev(60_000, r#""type":"tick""#),
    ]
    .join("\n");
    let r = http(
        daemon.port,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .expect("POST answered");
    assert_eq!(r.status, 202, "{}", r.body);
    let alerts: Vec<Value> = wait_for("five alerts", WAIT, || {
        let r = get_auth(daemon.port, "/v1/alerts");
        let v: Vec<Value> = serde_json::from_str(&r.body).ok()?;
        (v.len() >= 5).then_some(v)
    });
    // The rules view (counters) is published within a second or so.
    wait_for("the rules view to count five alerts", WAIT, || {
        let v: Value = serde_json::from_str(&get_auth(daemon.port, "/v1/rules").body).ok()?;
        let fired: u64 = v["rules"]
            .as_array()?
            .iter()
            .filter_map(|r| r["alerts"].as_u64())
            .sum();
        (fired == 5).then_some(())
    });
    let id_of = |rule: &str, key: &str| {
        alerts
            .iter()
            .find(|a| a["rule"] == rule && a["key"].to_string().contains(key))
            .and_then(|a| a["id"].as_str())
            .unwrap_or_else(|| panic!("no {rule} alert for {key}: {alerts:?}"))
            .to_string()
    };
    let hostile_id = id_of("hostile_login", "<script>");
    let disk_id = id_of("disk_full", "db1");
    // The file channel takes the alert; the webhook's receiver is down.
    let mut last = String::new();
    let started = std::time::Instant::now();
    while !(last.contains("data-channel=\"archive\"")
        && last.contains("<span class=\"badge delivered\">")
        && last.contains("<span class=\"badge retrying\">"))
    {
        assert!(
            started.elapsed() < WAIT,
            "timed out waiting for the delivery states:\n{last}\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
        last = get_auth(daemon.port, &format!("/alerts/{hostile_id}")).body;
    }
    // A reload that fails, for the Status page's error list.
    std::fs::write(dir.path().join("rules/zz-broken.rules"), BROKEN).expect("broken rules");
    let bearer = format!("Bearer {TOKEN}");
    let r = http(
        daemon.port,
        "POST",
        "/v1/reload",
        &[("Authorization", &bearer)],
        b"",
    )
    .expect("reload answered");
    assert_eq!(r.status, 422, "{}", r.body);
    Fixture {
        daemon,
        dir,
        hostile_id,
        disk_id,
    }
}
