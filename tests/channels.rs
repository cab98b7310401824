//! Issue 5: alert delivery through the durable outbox, against real peers
//! on 127.0.0.1 started by each test: an axum webhook receiver, a plain TCP
//! listener that never answers, and a small SMTP server speaking the real
//! protocol. No mocks: alerts come from a loaded rule run over events.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use tocsin::alert::Alert;
use tocsin::channel::{AlertRecord, Channel, DeliveryError};
use tocsin::config::ChannelConfig;
use tocsin::decode::{Decoded, Decoder};
use tocsin::metrics::{ChannelLabel, DeliveryLabels, Metrics};
use tocsin::outbox::Outbox;
use tocsin::pipeline::Pipeline;

// ---------------------------------------------------------------- alerts

/// Runs `rules` over `events` (NDJSON lines) and returns the alerts.
fn run_rules(rules: &str, events: &[String]) -> Vec<Alert> {
    let loaded =
        tocsin::lang::load_texts(vec![("t.rules".into(), rules.into())], &Default::default());
    assert!(!loaded.has_errors(), "{}", loaded.render());
    let mut pipeline = Pipeline::new(&loaded.program, 0);
    let decoder = Decoder::default();
    let mut alerts = Vec::new();
    for e in events {
        match decoder.decode(e.as_bytes(), None) {
            Decoded::Event(ev) => pipeline.push(ev, &mut alerts).expect("not late"),
            other => panic!("event {e} not decoded: {other:?}"),
        }
    }
    pipeline.finish(&mut alerts);
    alerts
}

/// `n` firing alerts of a filter rule, one per user `u0`, `u1`, ...
fn user_alerts(n: usize) -> Vec<Alert> {
    let events: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"type":"auth","ts":{},"user":"u{i}"}}"#, 1000 + i))
        .collect();
    let alerts = run_rules("rule r { key user from auth }", &events);
    assert_eq!(alerts.len(), n);
    alerts
}

fn ids(alerts: &[Alert]) -> Vec<String> {
    alerts.iter().map(|a| a.id.clone()).collect()
}

// ---------------------------------------------------------------- outbox helpers

fn channels(yaml: &str) -> BTreeMap<String, ChannelConfig> {
    serde_yaml_ng::from_str(yaml).expect("channel config parses")
}

fn open(dir: &Path, yaml: &str, max_pending: u64, metrics: &Arc<Metrics>) -> Outbox {
    Outbox::open(dir, &channels(yaml), max_pending, metrics.clone()).expect("outbox opens")
}

fn submit_all(outbox: &Outbox, alerts: &[Alert], to: &[&str]) {
    let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    for a in alerts {
        outbox.submit(a, &to).expect("submit");
    }
}

fn count(metrics: &Metrics, channel: &str, outcome: &str) -> u64 {
    metrics
        .deliveries
        .get_or_create(&DeliveryLabels {
            channel: channel.into(),
            outcome: outcome.into(),
        })
        .get()
}

fn pending_gauge(metrics: &Metrics, channel: &str) -> i64 {
    metrics
        .outbox_pending
        .get_or_create(&ChannelLabel {
            channel: channel.into(),
        })
        .get()
}

fn pending(outbox: &Outbox, channel: &str) -> u64 {
    outbox
        .pending()
        .into_iter()
        .find(|(c, _)| c == channel)
        .map(|(_, n)| n)
        .expect("channel listed")
}

/// Cancels the delivery tasks and checks that they all end promptly.
async fn stop(token: CancellationToken, handles: Vec<tokio::task::JoinHandle<()>>) {
    token.cancel();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .expect("delivery task stops within 2s of shutdown")
            .expect("delivery task did not panic");
    }
}

/// Polls `cond` until it holds or 10 s pass.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- webhook receiver

#[derive(Debug, Clone)]
struct Request {
    headers: HeaderMap,
    body: String,
    status: u16,
}

#[derive(Default)]
struct HookState {
    /// Statuses to answer, first request first; 200 once empty.
    script: VecDeque<u16>,
    requests: Vec<Request>,
}

#[derive(Clone, Default)]
struct Hook(Arc<Mutex<HookState>>);

impl Hook {
    fn requests(&self) -> Vec<Request> {
        self.0.lock().unwrap().requests.clone()
    }

    fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }

    fn accepted_ids(&self) -> Vec<String> {
        self.accepted().iter().map(|r| body_id(&r.body)).collect()
    }
}

fn body_id(body: &str) -> String {
    let v: Value = serde_json::from_str(body).expect("body is JSON");
    match v.get("version") {
        // Alertmanager: the id is in the annotations.
        Some(_) => v["alerts"][0]["annotations"]["tocsin_alert_id"]
            .as_str()
            .expect("alert id annotation")
            .to_string(),
        None => v["id"].as_str().expect("id").to_string(),
    }
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: String) -> StatusCode {
    let mut s = hook.0.lock().unwrap();
    let status = s.script.pop_front().unwrap_or(200);
    s.requests.push(Request {
        headers,
        body,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

/// A webhook receiver on `listener` answering `script` then 200.
fn serve_hook(listener: TcpListener, script: &[u16]) -> Hook {
    let hook = Hook::default();
    hook.0.lock().unwrap().script = script.iter().copied().collect();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(hook.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    hook
}

async fn start_hook(script: &[u16]) -> (SocketAddr, Hook) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_hook(listener, script))
}

/// A loopback address where nothing listens (connections are refused).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Accepts connections and never answers, keeping them open.
async fn start_black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

fn webhook_yaml(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "{name}:\n  kind: webhook\n  url: http://{addr}/hook\n  retry: {{initial: 20ms, max: 100ms}}\n{extra}"
    )
}

// ---------------------------------------------------------------- webhook tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_that_fails_with_500_then_recovers_gets_each_alert_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, hook) = start_hook(&[500, 500, 500, 503]).await;
    let metrics = Arc::new(Metrics::new());
    let outbox = open(dir.path(), &webhook_yaml("ops", addr, ""), 1000, &metrics);
    let alerts = user_alerts(6);
    submit_all(&outbox, &alerts, &["ops"]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());

    wait_until("6 accepted alerts", || hook.accepted().len() >= 6).await;
    // Let any wrongly repeated request arrive before judging.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        hook.accepted_ids(),
        ids(&alerts),
        "each alert once, in order"
    );
    let all: Vec<String> = hook.requests().iter().map(|r| body_id(&r.body)).collect();
    assert_eq!(all.len(), 10, "4 failed attempts + 6 deliveries: {all:?}");
    // The failing head was retried, never skipped: the first 5 requests all
    // carried the first alert.
    assert!(all[..5].iter().all(|id| *id == alerts[0].id), "{all:?}");
    assert_eq!(count(&metrics, "ops", "retry"), 4);
    assert_eq!(count(&metrics, "ops", "delivered"), 6);
    assert_eq!(count(&metrics, "ops", "failed"), 0);
    wait_until("pending 0", || pending(&outbox, "ops") == 0).await;
    assert_eq!(pending_gauge(&metrics, "ops"), 0);
    stop(token, handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_request_carries_body_signature_idempotency_key_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, "s3cret\n").unwrap();
    let (addr, hook) = start_hook(&[]).await;
    let metrics = Arc::new(Metrics::new());
    let extra = format!(
        "  secret_file: {}\n  headers: {{X-Team: sre}}\n",
        secret_file.display()
    );
    let outbox = open(
        dir.path(),
        &webhook_yaml("ops", addr, &extra),
        1000,
        &metrics,
    );
    let alerts = user_alerts(2);
    submit_all(&outbox, &alerts, &["ops"]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    wait_until("2 requests", || hook.accepted().len() == 2).await;

    for (req, alert) in hook.accepted().iter().zip(&alerts) {
        assert_eq!(
            req.body,
            alert.to_json(),
            "the body is the alert JSON, verbatim"
        );
        assert_eq!(req.headers["idempotency-key"], alert.id.as_str());
        assert_eq!(req.headers["x-team"], "sre");
        assert_eq!(req.headers["content-type"], "application/json");
        // The receiver's check: HMAC-SHA256 of the exact body, with the
        // secret file's content minus its line break.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(req.body.as_bytes());
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            req.headers["x-tocsin-signature"],
            format!("sha256={expected}").as_str()
        );
    }
    stop(token, handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_alertmanager_format_has_the_v4_shape_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, hook) = start_hook(&[]).await;
    let metrics = Arc::new(Metrics::new());
    let yaml = webhook_yaml("am", addr, "  format: alertmanager\n");
    let outbox = open(dir.path(), &yaml, 1000, &metrics);
    let rules = r#"
        rule brute_force {
            description "Too many failures"
            severity critical
            key user
            from auth
            labels { team: "identity" }
            message "{{ key.user }} failed"
        }"#;
    let alerts = run_rules(
        rules,
        &[r#"{"type":"auth","ts":60000,"user":"alice"}"#.to_string()],
    );
    submit_all(&outbox, &alerts, &["am"]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    wait_until("1 request", || hook.accepted().len() == 1).await;

    let req = &hook.accepted()[0];
    assert_eq!(req.headers["idempotency-key"], alerts[0].id.as_str());
    let v: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["receiver"], "am");
    assert_eq!(
        v["groupLabels"],
        serde_json::json!({"alertname": "brute_force"})
    );
    assert!(v["groupKey"].is_string() && v["externalURL"].is_string());
    let a = &v["alerts"][0];
    assert_eq!(v["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(a["status"], "firing");
    assert_eq!(
        a["labels"],
        serde_json::json!({
            "alertname": "brute_force",
            "severity": "critical",
            "team": "identity",
            "user": "alice",
        })
    );
    assert_eq!(v["commonLabels"], a["labels"]);
    assert_eq!(a["annotations"]["summary"], "alice failed");
    assert_eq!(a["annotations"]["description"], "Too many failures");
    assert_eq!(a["startsAt"], "1970-01-01T00:01:00.000Z");
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert!(a["generatorURL"].is_string());
    let fp = a["fingerprint"].as_str().unwrap();
    assert!(
        fp.len() == 16 && fp.chars().all(|c| c.is_ascii_hexdigit()),
        "{fp}"
    );
    stop(token, handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_receiver_is_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = closed_port();
    let yaml = webhook_yaml("ops", addr, "");
    let alerts = user_alerts(5);

    // First run: the receiver is down; three alerts are retried, then the
    // daemon stops.
    {
        let metrics = Arc::new(Metrics::new());
        let outbox = open(dir.path(), &yaml, 1000, &metrics);
        submit_all(&outbox, &alerts[..3], &["ops"]);
        let token = CancellationToken::new();
        let handles = outbox.start(token.clone());
        wait_until("a few retries", || count(&metrics, "ops", "retry") >= 3).await;
        stop(token, handles).await;
        assert_eq!(count(&metrics, "ops", "delivered"), 0);
        assert_eq!(pending(&outbox, "ops"), 3);
    }

    // Second run: the outbox comes back with the three, two more are
    // submitted, and the receiver is back.
    let metrics = Arc::new(Metrics::new());
    let outbox = open(dir.path(), &yaml, 1000, &metrics);
    assert_eq!(pending(&outbox, "ops"), 3);
    assert_eq!(pending_gauge(&metrics, "ops"), 3);
    submit_all(&outbox, &alerts[3..], &["ops"]);
    let hook = serve_hook(TcpListener::bind(addr).await.unwrap(), &[]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    wait_until("5 accepted alerts", || hook.accepted().len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hook.accepted_ids(), ids(&alerts));
    assert_eq!(hook.requests().len(), 5);
    wait_until("pending 0", || pending(&outbox, "ops") == 0).await;
    stop(token, handles).await;
    drop(outbox);

    // Third run: nothing is delivered twice.
    let outbox = open(dir.path(), &yaml, 1000, &Arc::new(Metrics::new()));
    assert_eq!(pending(&outbox, "ops"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_400_is_dropped_and_counted_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, hook) = start_hook(&[400, 500]).await;
    let metrics = Arc::new(Metrics::new());
    let outbox = open(dir.path(), &webhook_yaml("ops", addr, ""), 1000, &metrics);
    let alerts = user_alerts(2);
    submit_all(&outbox, &alerts, &["ops"]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    wait_until("the second alert", || hook.accepted().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    let seen: Vec<(String, u16)> = hook
        .requests()
        .iter()
        .map(|r| (body_id(&r.body), r.status))
        .collect();
    assert_eq!(
        seen,
        vec![
            (alerts[0].id.clone(), 400),
            (alerts[1].id.clone(), 500),
            (alerts[1].id.clone(), 200),
        ]
    );
    assert_eq!(count(&metrics, "ops", "failed"), 1);
    assert_eq!(count(&metrics, "ops", "retry"), 1);
    assert_eq!(count(&metrics, "ops", "delivered"), 1);
    assert_eq!(pending(&outbox, "ops"), 0);
    stop(token, handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_receiver_does_not_stall_the_other_channel_or_submit() {
    let dir = tempfile::tempdir().unwrap();
    let hole = start_black_hole().await;
    let (addr, hook) = start_hook(&[]).await;
    let metrics = Arc::new(Metrics::new());
    let yaml = format!(
        "{}{}",
        webhook_yaml("slow", hole, "  timeout: 60s\n"),
        webhook_yaml("fast", addr, "")
    );
    let outbox = open(dir.path(), &yaml, 1000, &metrics);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    let alerts = user_alerts(20);

    let t0 = Instant::now();
    submit_all(&outbox, &alerts, &["slow", "fast"]);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "submit does not wait on receivers: {:?}",
        t0.elapsed()
    );
    wait_until("20 alerts on the fast channel", || {
        hook.accepted().len() == 20
    })
    .await;
    assert_eq!(hook.accepted_ids(), ids(&alerts));
    assert_eq!(pending(&outbox, "slow"), 20);
    assert_eq!(count(&metrics, "slow", "delivered"), 0);
    // Shutdown does not wait for the hanging request.
    stop(token, handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_cap_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let addr = closed_port();
    let yaml = webhook_yaml("ops", addr, "");
    let metrics = Arc::new(Metrics::new());
    let outbox = open(dir.path(), &yaml, 3, &metrics);
    let alerts = user_alerts(5);
    submit_all(&outbox, &alerts, &["ops"]);
    assert_eq!(pending(&outbox, "ops"), 3);
    assert_eq!(pending_gauge(&metrics, "ops"), 3);
    assert_eq!(count(&metrics, "ops", "dropped"), 2);
    drop(outbox);

    // What is kept is on disk: the three newest, delivered in order.
    let outbox = open(dir.path(), &yaml, 3, &metrics);
    let hook = serve_hook(TcpListener::bind(addr).await.unwrap(), &[]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    wait_until("3 accepted", || hook.accepted().len() == 3).await;
    assert_eq!(hook.accepted_ids(), ids(&alerts[2..]));
    assert_eq!(count(&metrics, "ops", "dropped"), 2);
    stop(token, handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_resolved_false_skips_resolved_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, hook) = start_hook(&[]).await;
    let metrics = Arc::new(Metrics::new());
    let yaml = format!(
        "{}{}",
        webhook_yaml("firing_only", addr, "  send_resolved: false\n"),
        webhook_yaml("all", addr, "")
    );
    let outbox = open(dir.path(), &yaml, 1000, &metrics);
    let events: Vec<String> = [0, 200_000]
        .iter()
        .map(|ts| format!(r#"{{"type":"heartbeat","ts":{ts},"host":"db"}}"#))
        .collect();
    let alerts = run_rules("rule hb { key host from heartbeat absent 1m }", &events);
    let statuses: Vec<&str> = alerts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(statuses[..2], ["firing", "resolved"]);
    submit_all(&outbox, &alerts[..2], &["firing_only", "all"]);
    assert_eq!(pending(&outbox, "firing_only"), 1);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    wait_until("3 requests", || hook.accepted().len() == 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut got = hook.accepted_ids();
    got.sort();
    let mut want = vec![
        alerts[0].id.clone(),
        alerts[0].id.clone(),
        alerts[1].id.clone(),
    ];
    want.sort();
    assert_eq!(got, want);
    stop(token, handles).await;
}

// ---------------------------------------------------------------- file and stdout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_channel_appends_one_alert_json_per_line_and_stdout_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive/alerts.ndjson");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
    let metrics = Arc::new(Metrics::new());
    let yaml = format!(
        "archive:\n  kind: file\n  path: {}\ndebug:\n  kind: stdout\n",
        path.display()
    );
    let outbox = open(dir.path(), &yaml, 1000, &metrics);
    let alerts = user_alerts(3);
    submit_all(&outbox, &alerts, &["archive"]);
    submit_all(&outbox, &alerts[..1], &["debug"]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    wait_until("file and stdout delivered", || {
        count(&metrics, "archive", "delivered") == 3 && count(&metrics, "debug", "delivered") == 1
    })
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    let mut want = String::from("{\"earlier\":true}\n");
    for a in &alerts {
        want.push_str(&a.to_json());
        want.push('\n');
    }
    assert_eq!(text, want);
    stop(token, handles).await;
}

// ---------------------------------------------------------------- email

#[derive(Debug, Default, Clone)]
struct Mail {
    ehlo: bool,
    from: String,
    to: Vec<String>,
    data: String,
}

/// How the test SMTP server misbehaves; shared, so a test can "fix" the
/// server while the outbox retries.
#[derive(Debug, Default, Clone)]
struct SmtpScript {
    /// Stop answering (but keep the connection open and keep reading)
    /// from this command on: "EHLO", "MAIL", "DATA_END" (after the body).
    silent_at: Option<&'static str>,
    /// `RCPT TO` addresses answered with `550 5.1.1`.
    refuse_rcpt: Vec<&'static str>,
    /// `RCPT TO` addresses answered with `451 4.2.0` the first time only.
    defer_rcpt_once: Vec<&'static str>,
    /// Offer AUTH and answer it with this line (e.g. 535).
    auth_reply: Option<&'static str>,
    /// Answer DATA with this line instead of 354 (e.g. 554).
    data_reply: Option<&'static str>,
}

/// What the test SMTP server saw: accepted messages and every command.
#[derive(Debug, Default)]
struct SmtpSeen {
    mails: Vec<Mail>,
    commands: Vec<String>,
}

/// A minimal SMTP server (RFC 5321: greeting, EHLO, AUTH, MAIL, RCPT,
/// DATA with dot-unstuffing, RSET, NOOP, QUIT), misbehaving as `script`
/// says (changeable while it runs). Each message accepted is pushed to
/// `SmtpSeen::mails`.
async fn start_smtp_with(
    script: SmtpScript,
) -> (SocketAddr, Arc<Mutex<SmtpSeen>>, Arc<Mutex<SmtpScript>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(SmtpSeen::default()));
    let script = Arc::new(Mutex::new(script));
    let deferred = Arc::new(Mutex::new(Vec::<String>::new()));
    let (out, sc) = (seen.clone(), script.clone());
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (out, sc, deferred) = (out.clone(), sc.clone(), deferred.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r);
                w.write_all(b"220 localhost ESMTP test\r\n").await.unwrap();
                let mut mail = Mail::default();
                let mut line = String::new();
                let mut silent = false;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    out.lock().unwrap().commands.push(cmd.clone());
                    let upper = cmd.to_ascii_uppercase();
                    let s = sc.lock().unwrap().clone();
                    if silent || s.silent_at.is_some_and(|at| upper.starts_with(at)) {
                        silent = true; // reads on, answers nothing
                        continue;
                    }
                    let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        mail.ehlo = true;
                        if s.auth_reply.is_some() {
                            "250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
                        } else {
                            "250-localhost\r\n250 8BITMIME\r\n".into()
                        }
                    } else if upper.starts_with("AUTH") {
                        format!("{}\r\n", s.auth_reply.unwrap_or("503 5.5.1 no AUTH"))
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = cmd[10..].trim().to_string();
                        mail.to.clear();
                        "250 2.1.0 Ok\r\n".into()
                    } else if upper.starts_with("RCPT TO:") {
                        let to = cmd[8..].trim().to_string();
                        let first = !deferred.lock().unwrap().contains(&to);
                        if s.refuse_rcpt.iter().any(|a| to.contains(a)) {
                            "550 5.1.1 no such user\r\n".into()
                        } else if first && s.defer_rcpt_once.iter().any(|a| to.contains(a)) {
                            deferred.lock().unwrap().push(to);
                            "451 4.2.0 try again later\r\n".into()
                        } else {
                            mail.to.push(to);
                            "250 2.1.5 Ok\r\n".into()
                        }
                    } else if upper == "DATA" {
                        if let Some(r) = s.data_reply {
                            format!("{r}\r\n")
                        } else {
                            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                                .await
                                .unwrap();
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                let l = line.strip_prefix('.').unwrap_or(&line);
                                data.push_str(l);
                            }
                            if sc.lock().unwrap().silent_at == Some("DATA_END") {
                                silent = true;
                                continue;
                            }
                            mail.data = data;
                            out.lock().unwrap().mails.push(std::mem::take(&mut mail));
                            "250 2.0.0 Ok: queued\r\n".into()
                        }
                    } else if upper == "RSET" || upper == "NOOP" {
                        mail.to.clear();
                        "250 2.0.0 Ok\r\n".into()
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 2.0.0 Bye\r\n").await;
                        return;
                    } else {
                        "502 5.5.2 Command not recognized\r\n".into()
                    };
                    if w.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen, script)
}

/// An email channel to the test server at `addr`, with `extra` config lines.
fn email_yaml(addr: SocketAddr, to: &str, extra: &str) -> String {
    format!(
        "security:\n  kind: email\n  smtp: {addr}\n  tls: none\n  from: tocsin@example.com\n  to: [{to}]\n  retry: {{initial: 20ms, max: 100ms}}\n{extra}"
    )
}

fn one_alert() -> Vec<Alert> {
    run_rules(
        "rule brute_force { severity critical key user from auth }",
        &[r#"{"type":"auth","ts":1000,"user":"alice"}"#.to_string()],
    )
}

/// The messages the server accepted, as (recipients, Message-ID line).
fn mails_by_recipient(seen: &Mutex<SmtpSeen>) -> Vec<(Vec<String>, String)> {
    let mut out: Vec<(Vec<String>, String)> = seen
        .lock()
        .unwrap()
        .mails
        .iter()
        .map(|m| {
            let id = m
                .data
                .lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap_or("")
                .to_string();
            (m.to.clone(), id)
        })
        .collect();
    out.sort();
    out
}

/// An email channel `security` to `to` (config lines `extra`) in a fresh
/// outbox, its scripted SMTP server, and one alert submitted and being
/// delivered.
struct EmailRun {
    _dir: tempfile::TempDir,
    seen: Arc<Mutex<SmtpSeen>>,
    script: Arc<Mutex<SmtpScript>>,
    metrics: Arc<Metrics>,
    outbox: Outbox,
    alerts: Vec<Alert>,
    token: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

async fn email_run(script: SmtpScript, to: &str, extra: &str) -> EmailRun {
    let dir = tempfile::tempdir().unwrap();
    let (addr, seen, script) = start_smtp_with(script).await;
    let metrics = Arc::new(Metrics::new());
    let outbox = open(dir.path(), &email_yaml(addr, to, extra), 1000, &metrics);
    let alerts = one_alert();
    submit_all(&outbox, &alerts, &["security"]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    EmailRun {
        _dir: dir,
        seen,
        script,
        metrics,
        outbox,
        alerts,
        token,
        handles,
    }
}

impl EmailRun {
    fn count(&self, outcome: &str) -> u64 {
        count(&self.metrics, "security", outcome)
    }

    async fn stop(self) {
        stop(self.token, self.handles).await;
    }
}

/// Finding: the `timeout` was never enforced; a server that accepts the
/// connection and then says nothing held the channel for ever. Each stage
/// (after the greeting, after MAIL FROM, after the message body) must fail
/// as a retry within about the timeout, naming the server and the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_server_that_goes_silent_is_a_retry_after_the_timeout() {
    for at in ["EHLO", "MAIL", "DATA_END"] {
        let (addr, seen, _) = start_smtp_with(SmtpScript {
            silent_at: Some(at),
            ..Default::default()
        })
        .await;
        let yaml = email_yaml(addr, "sec@example.com", "  timeout: 700ms\n");
        let config = &channels(&yaml)["security"];
        let channel = Channel::build("security", config).expect("builds");
        let alert = AlertRecord::from_alert(&one_alert()[0]);
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(5), channel.deliver(&alert))
            .await
            .unwrap_or_else(|_| panic!("silent at {at}: delivery still hangs after 5s"));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_millis(2500),
            "silent at {at}: gave up after {took:?}"
        );
        match result {
            Err(DeliveryError::Retry { reason, .. }) => {
                assert!(reason.contains(&addr.to_string()), "{reason}");
                assert!(reason.contains("700ms"), "{reason}");
            }
            other => panic!("silent at {at}: want a retry, got {other:?}"),
        }
        assert!(seen.lock().unwrap().mails.is_empty());
    }
}

/// The same through the outbox: retried (not dropped, not stuck), and
/// delivered once the server answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_silent_server_is_retried_by_the_outbox_then_delivered() {
    let script = SmtpScript {
        silent_at: Some("EHLO"),
        ..Default::default()
    };
    let run = email_run(script, "sec@example.com", "  timeout: 300ms\n").await;
    wait_until("two retries", || run.count("retry") >= 2).await;
    assert_eq!(run.count("failed"), 0);
    assert_eq!(pending(&run.outbox, "security"), 1);
    run.script.lock().unwrap().silent_at = None;
    wait_until("delivered", || run.count("delivered") == 1).await;
    assert_eq!(run.seen.lock().unwrap().mails.len(), 1);
    run.stop().await;
}

/// Finding: one refused recipient (550) dropped the alert for all. Now
/// each recipient has its own transaction: the others get the alert (same
/// Message-ID), and the alert counts as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_recipient_refused_with_550_does_not_cost_the_others_the_alert() {
    let script = SmtpScript {
        refuse_rcpt: vec!["bad@example.com"],
        ..Default::default()
    };
    let to = "sec@example.com, bad@example.com, oncall@example.com";
    let run = email_run(script, to, "").await;
    wait_until("delivered", || run.count("delivered") == 1).await;
    assert_eq!(mails_by_recipient(&run.seen), both_got(&run.alerts[0]));
    assert_eq!(run.count("failed"), 0);
    assert_eq!(run.count("retry"), 0);
    assert_eq!(pending(&run.outbox, "security"), 0);
    run.stop().await;
}

/// A recipient deferred (451) is retried alone: the one that already
/// accepted the alert does not get it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_retry_sends_only_to_the_recipients_still_missing() {
    let script = SmtpScript {
        defer_rcpt_once: vec!["oncall@example.com"],
        ..Default::default()
    };
    let run = email_run(script, "sec@example.com, oncall@example.com", "").await;
    wait_until("delivered", || run.count("delivered") == 1).await;
    assert_eq!(run.count("retry"), 1);
    assert_eq!(mails_by_recipient(&run.seen), both_got(&run.alerts[0]));
    run.stop().await;
}

/// One mail each to oncall@ and sec@, with the alert's Message-ID.
fn both_got(alert: &Alert) -> Vec<(Vec<String>, String)> {
    let id = format!("Message-ID: <{}@tocsin>", alert.id);
    vec![
        (vec!["<oncall@example.com>".to_string()], id.clone()),
        (vec!["<sec@example.com>".to_string()], id),
    ]
}

/// Finding: any 5xx dropped the alert, so a wrong SMTP password (535) or a
/// server refusing the transaction (554 to DATA) lost every alert. They
/// are retried, and the alert goes out once the server is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_535_to_auth_or_554_to_data_is_retried_not_dropped() {
    let secrets = tempfile::tempdir().unwrap();
    let user = secrets.path().join("user");
    let password = secrets.path().join("password");
    std::fs::write(&user, "tocsin\n").unwrap();
    std::fs::write(&password, "wrong\n").unwrap();
    let auth = format!(
        "  username_file: {}\n  password_file: {}\n",
        user.display(),
        password.display()
    );
    let cases = [
        (
            SmtpScript {
                auth_reply: Some("535 5.7.8 bad credentials"),
                ..Default::default()
            },
            auth.as_str(),
            "AUTH",
        ),
        (
            SmtpScript {
                data_reply: Some("554 5.3.0 transaction failed"),
                ..Default::default()
            },
            "",
            "DATA",
        ),
    ];
    for (script, extra, what) in cases {
        let run = email_run(script, "sec@example.com, oncall@example.com", extra).await;
        wait_until("three retries", || run.count("retry") >= 3).await;
        assert_eq!(run.count("failed"), 0, "{what}");
        assert_eq!(pending(&run.outbox, "security"), 1, "{what}");
        assert!(run.seen.lock().unwrap().mails.is_empty(), "{what}");
        // The operator fixes the server (or the password): delivered.
        {
            let mut c = run.script.lock().unwrap();
            if c.auth_reply.is_some() {
                c.auth_reply = Some("235 2.7.0 ok");
            }
            c.data_reply = None;
        }
        wait_until("delivered", || run.count("delivered") == 1).await;
        assert_eq!(run.seen.lock().unwrap().mails.len(), 2, "{what}");
        run.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reaches_a_loopback_smtp_server_with_rendered_subject_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, seen, _) = start_smtp_with(SmtpScript::default()).await;
    let metrics = Arc::new(Metrics::new());
    let yaml = format!(
        "security:\n  kind: email\n  smtp: {addr}\n  tls: none\n  from: tocsin@example.com\n  to: [sec@example.com, oncall@example.com]\n  retry: {{initial: 20ms, max: 100ms}}\n"
    );
    let outbox = open(dir.path(), &yaml, 1000, &metrics);
    let rules = r#"
        rule brute_force {
            description "Too many failures"
            severity critical
            key user
            from auth
            message "{{ key.user }} <b>failed</b> & more"
        }"#;
    let alerts = run_rules(
        rules,
        &[r#"{"type":"auth","ts":1000,"user":"alice"}"#.to_string()],
    );
    submit_all(&outbox, &alerts, &["security"]);
    let token = CancellationToken::new();
    let handles = outbox.start(token.clone());
    wait_until("delivered", || {
        count(&metrics, "security", "delivered") == 1
    })
    .await;

    // One transaction per recipient, the same message in each.
    let mails = seen.lock().unwrap().mails.clone();
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[0].to, ["<sec@example.com>"]);
    assert_eq!(mails[1].to, ["<oncall@example.com>"]);
    assert_eq!(mails[0].data, mails[1].data);
    let mail = mails[0].clone();
    assert!(mail.ehlo);
    assert_eq!(mail.from, "<tocsin@example.com>");
    let data = mail.data.replace("\r\n", "\n");
    assert!(
        data.contains("\nSubject: [tocsin] FIRING critical brute_force user=alice\n"),
        "{data}"
    );
    assert!(
        data.contains(&format!("Message-ID: <{}@tocsin>", alerts[0].id)),
        "{data}"
    );
    assert!(
        data.contains("\nTo: sec@example.com, oncall@example.com\n"),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: multipart/alternative"),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: text/plain; charset=utf-8"),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: text/html; charset=utf-8"),
        "{data}"
    );
    // Plain text: the message as rendered, and the facts.
    assert!(data.contains("alice <b>failed</b> & more"), "{data}");
    assert!(data.contains("Key:         user=alice"), "{data}");
    assert!(
        data.contains(&format!("Alert id:    {}", alerts[0].id)),
        "{data}"
    );
    // HTML: the same, escaped.
    assert!(
        data.contains("<p>alice &lt;b&gt;failed&lt;/b&gt; &amp; more</p>"),
        "{data}"
    );
    assert!(data.contains("<td>Too many failures</td>"), "{data}");
    assert_eq!(pending(&outbox, "security"), 0);
    stop(token, handles).await;
}

#[test]
fn email_without_tls_to_a_remote_host_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "m:\n  kind: email\n  smtp: smtp.example.com:25\n  tls: none\n  from: a@example.com\n  to: [b@example.com]\n";
    let err = Outbox::open(dir.path(), &channels(yaml), 10, Arc::new(Metrics::new()))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "channel `m`: tls: none is allowed only for a loopback SMTP host, not `smtp.example.com`: use `tls` or `starttls`"
    );
}

#[test]
fn outbox_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Outbox>();
}
