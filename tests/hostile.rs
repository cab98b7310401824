//! Hostile input at the edges: each case gets a clear rejection, never a
//! panic, and the daemon keeps serving afterwards (docs/robustness.md lists
//! them).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Daemon, get, http, post, wait_for};
use serde_json::Value;

const RULES: &str = "rule any { key user from auth }\n";

fn config(extra_sources: &str, http_extra: &str) -> String {
    format!(
        r#"
rules: {{dir}}/rules
state_dir: {{dir}}/state
events:
  max_delay: 0s
  max_future: 10m
sources:
  - kind: http
    listen: 127.0.0.1:{{port}}
    max_body: 1MiB
{http_extra}
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

fn start(
    extra_sources: &str,
    http_extra: &str,
    envs: &[(&str, &str)],
) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/a.rules"), RULES).unwrap();
    let d = Daemon::start(dir.path(), &config(extra_sources, http_extra), envs);
    (dir, d)
}

fn rejected(body: &str) -> Vec<(u64, String)> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["rejected"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["index"].as_u64().unwrap_or(99),
                        r["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn still_serving(d: &Daemon) {
    let r = post(
        d.port,
        "/v1/events",
        "{\"type\":\"auth\",\"ts\":1,\"user\":\"ok\"}",
    );
    assert_eq!(r.status, 202, "daemon still accepts events: {}", r.body);
    assert_eq!(get(d.port, "/healthz").status, 200);
}

#[test]
fn hostile_json_is_rejected_item_by_item() {
    let (_dir, d) = start("", "", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!("{{\"type\":\"auth\",\"ts\":1,\"x\":{deep}}}");
    let lines = [
        deep_obj.as_str(),                          // 0: nested 100,000 deep
        "{\"type\":\"auth\",\"ts\":1,\"v\":1e400}", // 1: number beyond f64
        "{\"type\":\"auth\",\"ts\":\"2000\"}",      // 2: bad time
        &format!("{{\"type\":\"auth\",\"ts\":{}}}", now + 3_600_000), // 3: an hour ahead
        "{\"type\":\"auth\",\"ts\":5,\"user\":\"a\",\"user\":\"b\"}", // 4: duplicate key (accepted, last wins)
    ];
    let mut body = lines.join("\n").into_bytes();
    body.extend_from_slice(b"\n{\"type\":\"auth\",\"ts\":1,\"user\":\"\xff\xfe\"}\n"); // 5: invalid UTF-8
    let r = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Content-Type", "application/x-ndjson")],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        rejected(&r.body),
        vec![
            (0, "invalid_json".to_string()),
            (1, "invalid_json".to_string()),
            (2, "bad_time".to_string()),
            (3, "future_time".to_string()),
            (5, "invalid_utf8".to_string()),
        ]
    );
    post(d.port, "/v1/events", "{\"type\":\"x\",\"ts\":100}");
    let alerts = wait_for(
        "the duplicate-key event's alert",
        Duration::from_secs(10),
        || {
            let a = d.file_alerts("alerts.ndjson");
            (!a.is_empty()).then_some(a)
        },
    );
    assert_eq!(
        alerts[0]["key"],
        serde_json::json!({"user": "b"}),
        "the last duplicate wins"
    );
    still_serving(&d);
}

#[test]
fn a_100_mb_line_on_tcp_is_rejected_and_the_connection_goes_on() {
    let tcp = common::free_port();
    let (_dir, d) = start(
        &format!("  - kind: tcp\n    listen: 127.0.0.1:{tcp}"),
        "",
        &[],
    );
    let mut s = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    s.write_all(b"{\"type\":\"auth\",\"ts\":1,\"pad\":\"")
        .unwrap();
    for _ in 0..100 {
        s.write_all(&chunk).unwrap();
    }
    s.write_all(
        b"\"}\n{\"type\":\"auth\",\"ts\":1000,\"user\":\"after\"}\n{\"type\":\"x\",\"ts\":2000}\n",
    )
    .unwrap();
    s.flush().unwrap();
    let alerts = wait_for(
        "the alert of the line after the huge one",
        Duration::from_secs(30),
        || {
            let a = d.file_alerts("alerts.ndjson");
            (!a.is_empty()).then_some(a)
        },
    );
    assert_eq!(alerts[0]["key"], serde_json::json!({"user": "after"}));
    let m = get(d.port, "/metrics").body;
    assert!(
        m.contains("tocsin_events_rejected_total{source=\"tcp\",reason=\"too_large\"} 1"),
        "{m}"
    );
    still_serving(&d);
}

#[test]
fn slow_clients_are_cut_off_by_header_and_body_timeouts() {
    let (_dir, d) = start(
        "",
        "    header_timeout: 500ms\n    body_timeout: 500ms",
        &[],
    );
    // Headers trickled, never finished: the server closes the connection.
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after the header timeout"
    );
    // A body announced but never sent: 408.
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"type\"")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    still_serving(&d);
}

#[test]
fn secrets_never_appear_in_logs_or_answers() {
    let secrets = [
        ("T_INGEST", "ingest-SECRET-1f9a"),
        ("T_ADMIN", "admin-SECRET-77c2"),
        ("T_HOOK", "hook-SECRET-aa01"),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/a.rules"), RULES).unwrap();
    let cfg = config("", "    token_env: T_INGEST")
        .replace("admin:\n  listen: 127.0.0.1:{port}", "admin:\n  listen: 127.0.0.1:{port}\n  token_env: T_ADMIN")
        .replace(
            "channels:\n",
            "channels:\n  hook:\n    kind: webhook\n    url: http://127.0.0.1:9/unreachable\n    secret_env: T_HOOK\n",
        );
    let mut d = Daemon::start(dir.path(), &cfg, &secrets);
    let auth = format!("Bearer {}", secrets[0].1);
    let admin = format!("Bearer {}", secrets[1].1);
    let r = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Authorization", &auth)],
        b"{\"type\":\"auth\",\"ts\":1,\"user\":\"u\"}",
    )
    .unwrap();
    assert_eq!(r.status, 202);
    let _ = http(
        d.port,
        "POST",
        "/v1/events",
        &[("Authorization", "Bearer wrong")],
        b"{}",
    );
    let mut seen = String::new();
    for path in ["/v1/rules", "/v1/alerts", "/metrics", "/healthz", "/readyz"] {
        seen.push_str(
            &http(d.port, "GET", path, &[("Authorization", &admin)], b"")
                .unwrap()
                .body,
        );
    }
    seen.push_str(
        &http(
            d.port,
            "POST",
            "/v1/reload",
            &[("Authorization", &admin)],
            b"",
        )
        .unwrap()
        .body,
    );
    assert!(d.terminate().success());
    seen.push_str(&d.stderr());
    for (_, secret) in secrets {
        assert!(!seen.contains(secret), "secret {secret} leaked");
    }
}

#[test]
fn a_huge_regex_is_a_load_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.rules");
    std::fs::write(
        &f,
        "rule r { from a where s matches \"(a{1000}){1000}\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("check")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("r.rules:1:33: error: invalid regex"),
        "{text}"
    );
    assert!(text.contains("size limit"), "{text}");
}

#[test]
fn ten_thousand_rules_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!(
            "rule r{i} {{ key user from s{} where v > {i} and user matches \"^u[0-9]+$\" }}\n",
            i % 50
        ));
    }
    std::fs::write(dir.path().join("many.rules"), text).unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("10000 rule(s) OK"));
    eprintln!("10,000 rules checked in {took:?}");
}
