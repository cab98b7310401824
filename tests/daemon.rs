//! `tocsin run` as a process: real sockets, real signals, alerts observed on
//! an NDJSON file channel.

mod common;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Daemon, get, http, post, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A config with an HTTP source (admin on the same port), a TCP source,
/// an `alerts.ndjson` file channel, and `max_delay: 0s`.
fn config(extra_sources: &str, events_extra: &str) -> String {
    format!(
        r#"
rules: {{dir}}/rules
state_dir: {{dir}}/state
events:
  max_delay: 0s
{events_extra}
sources:
  - kind: http
    listen: 127.0.0.1:{{port}}
    max_body: 4KiB
{extra_sources}
admin:
  listen: 127.0.0.1:{{port}}
default_notify: [out]
channels:
  out:
    kind: file
    path: {{dir}}/alerts.ndjson
"#
    )
}

fn setup(rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
    std::fs::write(dir.path().join("rules/a.rules"), rules).expect("rules");
    dir
}

const FILTER: &str = "rule root { key user from auth where user == \"root\" }\n";

fn alerts_of(d: &Daemon, n: usize) -> Vec<Value> {
    wait_for(&format!("{n} alert(s)"), WAIT, || {
        let a = d.file_alerts("alerts.ndjson");
        (a.len() >= n).then_some(a)
    })
}

#[test]
fn http_events_produce_alerts_and_per_item_rejections() {
    let dir = setup(FILTER);
    let d = Daemon::start(dir.path(), &config("", ""), &[]);
    // Two events at 1000 and 2000; the second releases the first (max_delay 0s).
    let body = "{\"type\":\"auth\",\"ts\":1000,\"user\":\"root\"}\n\nnot json\n{\"ts\":5}\n{\"type\":\"auth\",\"ts\":2000,\"user\":\"bob\"}\n";
    let r = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["accepted"], 2);
    assert_eq!(
        v["rejected"],
        serde_json::json!([{"index":2,"reason":"invalid_json"},{"index":3,"reason":"missing_type"}])
    );
    let alerts = alerts_of(&d, 1);
    assert_eq!(alerts[0]["rule"], "root");
    assert_eq!(alerts[0]["key"], serde_json::json!({"user":"root"}));
    assert_eq!(alerts[0]["time"], "1970-01-01T00:00:01.000Z");
    // The admin API shows the same alert, and the metrics count.
    let recent: Value = serde_json::from_str(&get(d.port, "/v1/alerts?limit=5").body).unwrap();
    assert_eq!(recent[0]["id"], alerts[0]["id"]);
    let m = get(d.port, "/metrics").body;
    assert!(
        m.contains("tocsin_events_received_total{source=\"http\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("tocsin_events_rejected_total{source=\"http\",reason=\"invalid_json\"} 1"),
        "{m}"
    );
    assert!(m.contains("# TYPE tocsin_outbox_pending gauge"), "{m}");
    // An array body; all rejected gives 400 with the same shape.
    let r = post(d.port, "/v1/events", "[1, {\"type\":\"x\"}]");
    assert_eq!(r.status, 400, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["accepted"], 0);
    assert_eq!(
        v["rejected"][0],
        serde_json::json!({"index":0,"reason":"not_object"})
    );
    assert_eq!(
        v["rejected"][1],
        serde_json::json!({"index":1,"reason":"missing_time"})
    );
}

#[test]
fn health_readiness_and_rules_view() {
    let dir = setup(FILTER);
    let d = Daemon::start(dir.path(), &config("", ""), &[]);
    assert_eq!(get(d.port, "/healthz").status, 200);
    assert_eq!(get(d.port, "/readyz").status, 200);
    let v: Value = serde_json::from_str(&get(d.port, "/v1/rules").body).unwrap();
    assert_eq!(v["rules"][0]["name"], "root");
    assert_eq!(v["rules"][0]["kind"], "filter");
    assert_eq!(v["rules"][0]["line"], 1);
    assert_eq!(v["last_reload"]["ok"], true);
}

#[test]
fn bad_token_gets_401_and_oversized_body_413() {
    let dir = setup(FILTER);
    let cfg = config("", "").replace(
        "    max_body: 4KiB",
        "    max_body: 4KiB\n    token_env: TEST_INGEST_TOKEN",
    );
    let cfg = cfg.replace(
        "admin:\n  listen: 127.0.0.1:{port}",
        "admin:\n  listen: 127.0.0.1:{port}\n  token_env: TEST_ADMIN_TOKEN",
    );
    let d = Daemon::start(
        dir.path(),
        &cfg,
        &[
            ("TEST_INGEST_TOKEN", "s3cret"),
            ("TEST_ADMIN_TOKEN", "adm1n"),
        ],
    );
    let ev = b"{\"type\":\"auth\",\"ts\":1,\"user\":\"root\"}";
    let r = http(d.port, "POST", "/v1/events", &[], ev).unwrap();
    assert_eq!(r.status, 401);
    assert!(r.body.contains("\"error\""), "{}", r.body);
    let r = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Authorization", "Bearer wrong")],
        ev,
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let r = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Authorization", "Bearer s3cret")],
        ev,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    // The ingest token is not the admin token.
    assert_eq!(
        http(
            d.port,
            "GET",
            "/v1/rules",
            &[("Authorization", "Bearer s3cret")],
            b""
        )
        .unwrap()
        .status,
        401
    );
    assert_eq!(
        http(
            d.port,
            "GET",
            "/v1/rules",
            &[("Authorization", "Bearer adm1n")],
            b""
        )
        .unwrap()
        .status,
        200
    );
    // Health and metrics need no token.
    assert_eq!(get(d.port, "/healthz").status, 200);
    let big = vec![b' '; 8 * 1024];
    let r = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Authorization", "Bearer s3cret")],
        &big,
    )
    .unwrap();
    assert_eq!(r.status, 413);
}

#[test]
fn idempotency_key_replays_the_first_answer_without_ingesting_again() {
    let dir = setup(FILTER);
    let d = Daemon::start(dir.path(), &config("", ""), &[]);
    let ev = b"{\"type\":\"auth\",\"ts\":1000,\"user\":\"root\"}";
    let first = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Idempotency-Key", "k1")],
        ev,
    )
    .unwrap();
    assert_eq!(first.status, 202);
    // Same key, other body: the first answer, nothing ingested.
    let again = http(d.port, "POST", "/v1/events", &[("Idempotency-Key", "k1")], b"[{\"type\":\"auth\",\"ts\":1500,\"user\":\"root\"},{\"type\":\"auth\",\"ts\":1600,\"user\":\"root\"}]").unwrap();
    assert_eq!(again.status, 202);
    assert_eq!(again.body, first.body);
    post(d.port, "/v1/events", "{\"type\":\"tick\",\"ts\":9000}");
    let alerts = alerts_of(&d, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.file_alerts("alerts.ndjson").len(), 1, "{alerts:?}");
}

/// A retry sent while the first request with its key is still uploading
/// its body gets the first answer, and the event is taken in once.
#[test]
fn a_retry_during_the_first_request_is_not_taken_in_twice() {
    use std::io::Read;
    let dir = setup(FILTER);
    let d = Daemon::start(dir.path(), &config("", ""), &[]);
    let body: &'static [u8] = b"{\"type\":\"auth\",\"ts\":1000,\"user\":\"root\"}";
    let mut first = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    write!(
        first,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k2\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    first.write_all(&body[..10]).unwrap();
    first.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let port = d.port;
    let retry = std::thread::spawn(move || {
        http(
            port,
            "POST",
            "/v1/events",
            &[("Idempotency-Key", "k2")],
            body,
        )
        .unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    first.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    first.read_to_string(&mut answer).unwrap();
    let retry = retry.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(retry.status, 202);
    assert!(answer.ends_with(&retry.body), "{answer} / {}", retry.body);
    let m = get(d.port, "/metrics").body;
    assert!(
        m.contains("tocsin_events_received_total{source=\"http\"} 1\n"),
        "{m}"
    );
    post(d.port, "/v1/events", "{\"type\":\"tick\",\"ts\":9000}");
    alerts_of(&d, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.file_alerts("alerts.ndjson").len(), 1);
}

/// Without `admin.listen` the admin API is on 127.0.0.1:9464, not on the
/// ingest port (which may face the network); unknown paths and wrong
/// methods get JSON errors.
#[test]
fn the_admin_api_is_not_on_the_ingest_port_by_default() {
    let dir = setup(FILTER);
    let cfg = config("", "").replace("admin:\n  listen: 127.0.0.1:{port}\n", "");
    let d = Daemon::start_on_ready(dir.path(), &cfg, &[], common::free_port(), |_| {
        http(9464, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    for path in ["/metrics", "/v1/rules", "/v1/alerts", "/readyz"] {
        let r = get(d.port, path);
        assert_eq!(r.status, 404, "{path} on the ingest port: {}", r.body);
        assert!(r.body.contains("\"error\""), "{}", r.body);
    }
    assert_eq!(get(9464, "/metrics").status, 200);
    assert_eq!(get(9464, "/v1/events").status, 404);
    let r = get(d.port, "/v1/events");
    assert_eq!(r.status, 405);
    assert!(r.body.contains("\"error\""), "{}", r.body);
    assert!(
        d.stderr().contains("listen=127.0.0.1:9464"),
        "{}",
        d.stderr()
    );
}

/// While recovery runs, `/healthz` answers 200, `/readyz` 503, and events
/// 503 with `Retry-After` on the port shared with the admin API. (The log
/// segment is replaced by a FIFO, so reading it blocks recovery; the test
/// then kills the daemon.)
#[test]
fn health_answers_while_recovery_runs() {
    let dir = setup(FILTER);
    let port = common::free_port();
    let mut d = Daemon::start_on(dir.path(), &config("", ""), &[], port);
    assert_eq!(
        post(
            port,
            "/v1/events",
            "{\"type\":\"auth\",\"ts\":1000,\"user\":\"root\"}"
        )
        .status,
        202
    );
    d.terminate();
    let wal = dir.path().join("state/wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let segment = segments.pop().expect("a log segment");
    std::fs::remove_file(&segment).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&segment)
        .status()
        .unwrap();
    assert!(made.success());
    let mut d = Daemon::start_on_ready(dir.path(), &config("", ""), &[], port, |port| {
        http(port, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    let ready = get(port, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    let r = http(
        port,
        "POST",
        "/v1/events",
        &[],
        b"{\"type\":\"auth\",\"ts\":2000}",
    )
    .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        r.headers
    );
    // Recovery is still blocked on the FIFO: a signal cannot stop it
    // cleanly, so the test kills it.
    let _ = d.child.kill();
    let _ = d.child.wait();
}

/// A restart restores every rule from the shutdown checkpoint — state held
/// inside rules included (a sequence's buffered event, a window's count) —
/// rather than falling back to the log because the checkpoint cannot be
/// read; and the restored state goes on to fire.
#[test]
fn a_restart_restores_every_rule_from_the_checkpoint() {
    let rules = r#"
rule seq { key user sequence within 1h { a: auth where outcome == "fail" b: auth where outcome == "ok" } }
rule many { key user from auth window sliding 1h when count() >= 3 }
"#;
    let dir = setup(rules);
    let port = common::free_port();
    let mut d = Daemon::start_on(dir.path(), &config("", ""), &[], port);
    for (ts, outcome) in [(1000, "fail"), (2000, "fail")] {
        let ev = format!(
            "{{\"type\":\"auth\",\"ts\":{ts},\"user\":\"u \\\"q\\\"\",\"outcome\":\"{outcome}\"}}"
        );
        assert_eq!(post(port, "/v1/events", &ev).status, 202);
    }
    assert!(d.terminate().success());
    let mut d = Daemon::start_on(dir.path(), &config("", ""), &[], port);
    let log = d.stderr();
    assert!(log.contains("Restoring checkpoint"), "{log}");
    assert!(log.contains("rules_restored=2"), "{log}");
    let ev = "{\"type\":\"auth\",\"ts\":3000,\"user\":\"u \\\"q\\\"\",\"outcome\":\"ok\"}";
    assert_eq!(post(port, "/v1/events", ev).status, 202);
    post(port, "/v1/events", "{\"type\":\"tick\",\"ts\":9000}");
    let alerts = alerts_of(&d, 2);
    let rules: Vec<&str> = alerts.iter().filter_map(|a| a["rule"].as_str()).collect();
    assert!(
        rules.contains(&"seq") && rules.contains(&"many"),
        "{alerts:?}"
    );
    assert!(d.terminate().success());
}

/// A reload that changes a rule, then `kill -9`: recovery evaluates the
/// events logged before the reload with the rule as it was then, and the
/// later ones with the new text — the alerts are those of a run without
/// the crash (daemon.md 4). Before, the whole log went through the rules
/// on disk, and the changed rule fired on events it never saw.
#[test]
fn recovery_replays_each_event_with_the_rules_running_when_it_came() {
    let dir = setup("rule a { key u from x window sliding 1h when count() >= 3 }\n");
    let port = common::free_port();
    let mut d = Daemon::start_on(dir.path(), &config("", ""), &[], port);
    let send = |ts: i64, ty: &str| {
        let ev = format!("{{\"type\":\"{ty}\",\"ts\":{ts},\"u\":\"k\"}}");
        assert_eq!(post(port, "/v1/events", &ev).status, 202);
    };
    send(1000, "x");
    send(2000, "x");
    // Releases `x@2000` (max_delay 0s) before the reload, so the old rule
    // evaluates both.
    send(2500, "z");
    std::fs::write(
        dir.path().join("rules/a.rules"),
        "rule a { key u from x window sliding 1h when count() > 2 }\n",
    )
    .unwrap();
    let r = http(port, "POST", "/v1/reload", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The changed rule starts empty: one `x` since the reload.
    send(3000, "x");
    send(3500, "z");
    let _ = d.child.kill();
    let _ = d.child.wait();
    let d = Daemon::start_on(dir.path(), &config("", ""), &[], port);
    send(4000, "z");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.file_alerts("alerts.ndjson"), Vec::<Value>::new());
    // And the state after recovery is the uninterrupted run's: two more
    // `x` make three since the reload.
    send(5000, "x");
    send(6000, "x");
    send(7000, "z");
    let alerts = alerts_of(&d, 1);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["rule"], "a");
    assert_eq!(alerts[0]["time"], "1970-01-01T00:00:06.000Z");
}

/// A client trickling a body cannot hold a shutdown for its whole
/// `body_timeout` (60 s here): the daemon stops within its shutdown grace
/// (5 s) and exits 0.
#[test]
fn sigterm_does_not_wait_for_a_stalled_upload() {
    let dir = setup(FILTER);
    let cfg = config("", "").replace(
        "    max_body: 4KiB\n",
        "    max_body: 4KiB\n    body_timeout: 60s\n",
    );
    let mut d = Daemon::start(dir.path(), &cfg, &[]);
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    write!(
        stalled,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: 60\r\n\r\n{{\"type\":"
    )
    .unwrap();
    stalled.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let status = d.terminate();
    assert!(status.success(), "{}", d.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the shutdown waited {:?} for a stalled upload",
        started.elapsed()
    );
}

/// Counts are not lost when a reload changes a rule right after it fired
/// (they used to be published only every 200 ms, and the reload dropped
/// what was not yet); a removed rule's key gauge goes; a message template
/// that fails to render is counted in `tocsin_template_errors_total` and
/// logged.
#[test]
fn a_reload_keeps_every_count_and_drops_removed_rules() {
    let rules =
        "rule a { key u from x }\nrule gone { key u from y message \"{{ event.geo.city }}\" }\n";
    let dir = setup(rules);
    let d = Daemon::start(dir.path(), &config("", ""), &[]);
    let body = (0..3)
        .map(|i| format!("{{\"type\":\"x\",\"ts\":{},\"u\":\"k{i}\"}}\n", 1000 + i))
        .chain(["{\"type\":\"y\",\"ts\":1500,\"u\":\"k\"}\n".to_string()])
        .chain(["{\"type\":\"z\",\"ts\":2000}\n".to_string()])
        .collect::<String>();
    let r = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    std::fs::write(
        dir.path().join("rules/a.rules"),
        "rule a { key u from x where u != null }\n",
    )
    .unwrap();
    let r = http(d.port, "POST", "/v1/reload", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    alerts_of(&d, 4);
    let m = wait_for("the counts", WAIT, || {
        let m = get(d.port, "/metrics").body;
        m.contains("tocsin_template_errors_total 1\n").then_some(m)
    });
    assert!(
        m.contains("tocsin_alerts_total{rule=\"a\",status=\"firing\"} 3\n"),
        "{m}"
    );
    assert!(
        m.contains("tocsin_rule_matches_total{rule=\"a\"} 3\n"),
        "{m}"
    );
    assert!(!m.contains("tocsin_rule_keys{rule=\"gone\"}"), "{m}");
    assert!(
        d.stderr().contains("A message template failed to render"),
        "{}",
        d.stderr()
    );
}

#[test]
fn tcp_lines_produce_alerts_and_a_bad_line_keeps_the_connection() {
    let dir = setup(FILTER);
    let tcp_port = common::free_port();
    let src = format!("  - kind: tcp\n    listen: 127.0.0.1:{tcp_port}\n    max_line: 200");
    let d = Daemon::start(dir.path(), &config(&src, ""), &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    let long = format!(
        "{{\"type\":\"auth\",\"ts\":1,\"pad\":\"{}\"}}\n",
        "x".repeat(500)
    );
    s.write_all(b"garbage\n").unwrap();
    s.write_all(long.as_bytes()).unwrap();
    s.write_all(b"{\"type\":\"auth\",\"ts\":1000,\"user\":\"root\"}\n{\"type\":\"auth\",\"ts\":2000,\"user\":\"x\"}\n").unwrap();
    s.flush().unwrap();
    let alerts = alerts_of(&d, 1);
    assert_eq!(alerts[0]["time"], "1970-01-01T00:00:01.000Z");
    let m = get(d.port, "/metrics").body;
    assert!(
        m.contains("tocsin_events_rejected_total{source=\"tcp\",reason=\"invalid_json\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tocsin_events_rejected_total{source=\"tcp\",reason=\"too_large\"} 1"),
        "{m}"
    );
}

#[test]
fn broken_rules_on_reload_keep_the_old_rules_running() {
    let dir = setup("rule burst { from m window sliding 10s when count() >= 2 }\n");
    let d = Daemon::start(dir.path(), &config("", ""), &[]);
    post(d.port, "/v1/events", "{\"type\":\"m\",\"ts\":1000}");
    // A broken file next to the good one.
    std::fs::write(
        dir.path().join("rules/b.rules"),
        "rule oops { from m where x == }\n",
    )
    .unwrap();
    let r = post(d.port, "/v1/reload", "");
    assert_eq!(r.status, 422, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["ok"], false);
    let err = v["errors"][0].as_str().unwrap_or_default();
    assert!(err.contains("b.rules:1:"), "{err}");
    let rules: Value = serde_json::from_str(&get(d.port, "/v1/rules").body).unwrap();
    assert_eq!(rules["last_reload"]["ok"], false);
    assert_eq!(rules["rules"].as_array().map(Vec::len), Some(1));
    // The old rule still runs, with its state: the second event fires it.
    post(d.port, "/v1/events", "{\"type\":\"m\",\"ts\":2000}");
    post(d.port, "/v1/events", "{\"type\":\"m\",\"ts\":3000}");
    let alerts = alerts_of(&d, 1);
    assert_eq!(alerts[0]["rule"], "burst");
    assert_eq!(alerts[0]["time"], "1970-01-01T00:00:02.000Z");
    // Fixing the file reloads fine; the unchanged rule keeps its window.
    std::fs::write(dir.path().join("rules/b.rules"), "rule other { from n }\n").unwrap();
    let r = post(d.port, "/v1/reload", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let m = get(d.port, "/metrics").body;
    assert!(
        m.contains("tocsin_rules_reload_total{outcome=\"error\"}"),
        "{m}"
    );
    assert!(
        m.contains("tocsin_rules_reload_total{outcome=\"success\"}"),
        "{m}"
    );
}

#[test]
fn sighup_reloads_rules() {
    let dir = setup(FILTER);
    let d = Daemon::start(dir.path(), &config("", ""), &[]);
    std::fs::write(
        dir.path().join("rules/b.rules"),
        "rule everything { from auth }\n",
    )
    .unwrap();
    d.signal("HUP");
    wait_for("the new rule", WAIT, || {
        let v: Value = serde_json::from_str(&get(d.port, "/v1/rules").body).ok()?;
        (v["rules"].as_array()?.len() == 2).then_some(())
    });
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = setup(FILTER);
    let mut d = Daemon::start(dir.path(), &config("", ""), &[]);
    let r = post(
        d.port,
        "/v1/events",
        "{\"type\":\"auth\",\"ts\":1000,\"user\":\"root\"}",
    );
    assert_eq!(r.status, 202);
    let status = d.terminate();
    assert!(status.success(), "exit {status:?}: {}", d.stderr());
}

#[test]
fn idle_advance_fires_absence_when_every_sender_is_quiet() {
    let dir = setup("rule gone { key host from hb absent 1s }\n");
    let d = Daemon::start(dir.path(), &config("", "  idle_timeout: 1s"), &[]);
    let ts = now_ms();
    let r = post(
        d.port,
        "/v1/events",
        &format!("{{\"type\":\"hb\",\"ts\":{ts},\"host\":\"h1\"}}"),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let alerts = alerts_of(&d, 1);
    assert_eq!(alerts[0]["rule"], "gone");
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["key"], serde_json::json!({"host":"h1"}));
}

#[test]
fn missing_config_is_fatal_and_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["run", "-c", "/nonexistent/tocsin.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tocsin.yaml"));
}

#[test]
fn unknown_config_key_is_fatal_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, "rules: r\nevents:\n  max_dealy: 2s\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["run", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.yaml:3:") && err.contains("unknown key `max_dealy`"),
        "{err}"
    );
}

#[test]
fn a_tailed_file_is_followed_across_rotation() {
    let dir = setup(FILTER);
    let log = dir.path().join("app.ndjson");
    std::fs::write(&log, "{\"type\":\"auth\",\"ts\":1000,\"user\":\"root\"}\n").unwrap();
    let src = format!(
        "  - kind: file\n    path: {}/app*.ndjson\n    start_at: beginning",
        dir.path().display()
    );
    let d = Daemon::start(dir.path(), &config(&src, ""), &[]);
    // The tailer has the file open before it is rotated.
    wait_for("the first line read", WAIT, || {
        get(d.port, "/metrics")
            .body
            .contains("tocsin_events_received_total{source=\"file\"} 1")
            .then_some(())
    });
    // Rotation: rename, then a new file at the same path.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"{\"type\":\"auth\",\"ts\":2000,\"user\":\"root\"}\n")
        .unwrap();
    drop(f);
    std::fs::rename(&log, dir.path().join("app.ndjson.1")).unwrap();
    std::fs::write(&log, "{\"type\":\"auth\",\"ts\":3000,\"user\":\"root\"}\n{\"type\":\"auth\",\"ts\":4000,\"user\":\"x\"}\n").unwrap();
    let alerts = alerts_of(&d, 3);
    let times: Vec<&str> = alerts.iter().filter_map(|a| a["time"].as_str()).collect();
    assert_eq!(
        times,
        [
            "1970-01-01T00:00:01.000Z",
            "1970-01-01T00:00:02.000Z",
            "1970-01-01T00:00:03.000Z"
        ]
    );
    let m = get(d.port, "/metrics").body;
    assert!(
        m.contains("tocsin_events_received_total{source=\"file\"} 4"),
        "{m}"
    );
}

/// The runtime's threads (sources, channels, admin API) run at a lower
/// priority than the engine and the log writer, so that evaluation is not
/// preempted by decoding when the cores are short (docs/performance.md,
/// "Stop 16"). Linux: the niceness is field 19 of each thread's `stat`.
#[cfg(target_os = "linux")]
#[test]
fn source_threads_yield_to_the_engine() {
    let dir = setup(FILTER);
    let d = Daemon::start(dir.path(), &config("", ""), &[]);
    let mut nice: Vec<(String, i64)> = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{}/task", d.child.id())).unwrap() {
        let t = t.unwrap().path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(t.join("stat")).unwrap_or_default();
        // Fields after the command name, which is in parentheses.
        let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or_default();
        let n = rest.split_whitespace().nth(16).and_then(|f| f.parse().ok());
        if let Some(n) = n {
            nice.push((comm.trim().to_string(), n));
        }
    }
    let of = |name: &str| -> Vec<i64> {
        nice.iter()
            .filter(|(c, _)| c == name)
            .map(|(_, n)| *n)
            .collect()
    };
    let (workers, engine, log) = (of("tokio-rt-worker"), of("tocsin-engine"), of("tocsin-log"));
    assert!(
        !workers.is_empty() && !engine.is_empty() && !log.is_empty(),
        "{nice:?}"
    );
    let lowest_source = workers.iter().min().copied().unwrap_or_default();
    assert!(
        engine.iter().chain(&log).all(|&e| e < lowest_source),
        "the engine and the log writer must have a lower niceness than the sources: {nice:?}"
    );
    // Checkpoints are encoded and written beside the engine, not by it
    // (a big state took seconds in which nothing was evaluated).
    let writer = of("tocsin-ckpt");
    assert!(
        writer.len() == 1 && writer[0] < lowest_source,
        "one checkpoint writer at the engine's priority: {nice:?}"
    );
    // With `fsync: batch` (the default) the log is synced beside the log
    // writer, so that neither its next write nor the engine waits for it.
    let syncer = of("tocsin-sync");
    assert!(
        syncer.len() == 1 && syncer[0] < lowest_source,
        "one log syncer at the engine's priority: {nice:?}"
    );
}
