//! Crash safety, at process level: `kill -9` at random moments while events
//! stream in, restarts on the same state directory, and in the end the
//! alerts delivered (de-duplicated by id) are exactly those of an
//! uninterrupted `tocsin replay` of the same events. Also: a torn log tail
//! and a corrupt checkpoint are recovered from.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, Response, WebhookReceiver, http, wait_for};
use serde_json::Value;

/// POSTs an NDJSON body under an idempotency key (a retry after a crash
/// sends the same key, so the daemon can tell it was already taken).
fn post_keyed(port: u16, key: &str, body: &[u8]) -> std::io::Result<Response> {
    http(
        port,
        "POST",
        "/v1/events",
        &[
            ("Content-Type", "application/x-ndjson"),
            ("Idempotency-Key", key),
        ],
        body,
    )
}

const RULES: &str = r#"
rule burst {
    key user
    from auth where outcome == "failure"
    window sliding 5s
    when count() >= 3
}
rule quiet {
    key user
    from hb
    absent 4s
}
rule brute {
    key user
    sequence within 10s {
        fail: auth where outcome == "failure" {2,}
        ok: auth where outcome == "success"
    }
}
rule buckets {
    key user
    from auth
    window tumbling 10s
    when count() > 4
}
rule root { from auth where user == "u0" and outcome == "success" }
"#;

/// A fixed pseudo-random stream: a few users, auth and heartbeats, times
/// mostly increasing with some disorder within `max_delay`, and a final
/// event far ahead that makes every pending timer due.
fn events(n: usize) -> Vec<String> {
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as i64
    };
    let mut t: i64 = 1_000_000;
    let mut out = Vec::with_capacity(n + 1);
    for i in 0..n {
        t += next() % 700;
        let jitter = next() % 800; // within max_delay (1s): never late
        let user = format!("u{}", next() % 6);
        let line = if next() % 4 == 0 {
            format!(
                "{{\"type\":\"hb\",\"ts\":{},\"user\":\"{user}\",\"n\":{i}}}",
                t - jitter
            )
        } else {
            let outcome = if next() % 3 == 0 {
                "success"
            } else {
                "failure"
            };
            format!(
                "{{\"type\":\"auth\",\"ts\":{},\"user\":\"{user}\",\"outcome\":\"{outcome}\",\"n\":{i}}}",
                t - jitter
            )
        };
        out.push(line);
    }
    out.push(format!("{{\"type\":\"flush\",\"ts\":{}}}", t + 86_400_000));
    out
}

fn config(port: Option<u16>, extra_source: &str) -> String {
    let listen = port.map_or("{port}".to_string(), |p| p.to_string());
    format!(
        r#"
rules: {{dir}}/rules
state_dir: {{dir}}/state
events:
  max_delay: 1s
  idle_timeout: "off"
sources:
  - kind: http
    listen: 127.0.0.1:{listen}
{extra_source}
admin:
  listen: 127.0.0.1:{listen}
durability:
  fsync: batch
  checkpoint_every: 150ms
default_notify: [out]
channels:
  out:
    kind: file
    path: {{dir}}/alerts.ndjson
"#
    )
}

/// Alert ids of an uninterrupted replay.
fn replay_ids(dir: &Path, events: &[String]) -> BTreeSet<String> {
    replay_ids_in_order(dir, events).into_iter().collect()
}

/// Alert ids of an uninterrupted replay, in the order written.
fn replay_ids_in_order(dir: &Path, events: &[String]) -> Vec<String> {
    let ev = dir.join("all.ndjson");
    std::fs::write(&ev, events.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["replay", "--max-delay", "1s", "--rules"])
        .arg(dir.join("rules"))
        .arg(&ev)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

fn delivered_ids(d: &Daemon) -> BTreeSet<String> {
    d.file_alerts("alerts.ndjson")
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.rules"), RULES).unwrap();
    dir
}

fn restart(dir: &Path, port: u16, extra: &str) -> Daemon {
    Daemon::start_on(dir, &config(Some(port), extra), &[], port)
}

#[test]
fn kill_9_during_http_ingest_loses_no_alert_and_adds_none() {
    let dir = setup();
    let evs = events(1500);
    let expected = replay_ids(dir.path(), &evs);
    assert!(
        expected.len() > 50,
        "the stream should make many alerts: {}",
        expected.len()
    );

    let port = common::free_port();
    let mut daemon = Some(restart(dir.path(), port, ""));
    let batches: Vec<String> = evs.chunks(25).map(|c| c.join("\n")).collect();
    let mut next_batch = 0;
    let mut seed: u64 = 42;
    let mut kills = 0;
    let started = Instant::now();
    while next_batch < batches.len() {
        // Send a random number of batches, then kill -9 (a few times).
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let burst = 3 + (seed >> 40) as usize % 12;
        for _ in 0..burst {
            if next_batch >= batches.len() {
                break;
            }
            let key = format!("batch-{next_batch}");
            let r = post_keyed(port, &key, batches[next_batch].as_bytes());
            match r {
                Ok(r) if r.status == 202 => next_batch += 1,
                other => panic!(
                    "batch {next_batch}: {:?}",
                    other.map(|r| (r.status, r.body))
                ),
            }
        }
        if kills < 4 && next_batch < batches.len() {
            kills += 1;
            // Kill while a request may be in flight: post without waiting.
            let inflight_key = format!("batch-{next_batch}");
            let body = batches[next_batch].clone();
            let sender = std::thread::spawn(move || {
                let _ = post_keyed(port, &inflight_key, body.as_bytes());
            });
            std::thread::sleep(Duration::from_millis((seed >> 50) % 5));
            if let Some(mut d) = daemon.take() {
                let _ = d.child.kill(); // SIGKILL
                let _ = d.child.wait();
            }
            let _ = sender.join();
            daemon = Some(restart(dir.path(), port, ""));
            // The in-flight batch is retried with the same key: it is either
            // answered from the log (already accepted) or accepted now.
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "test too slow"
        );
    }
    let d = daemon.take().unwrap();
    let got = wait_for("every alert delivered", Duration::from_secs(30), || {
        let got = delivered_ids(&d);
        (got.len() >= expected.len()).then_some(got)
    });
    std::thread::sleep(Duration::from_millis(200));
    let got_final = delivered_ids(&d);
    assert_eq!(got, got_final);
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "after {kills} kills: {} missing {missing:?}, {} extra {extra:?}",
        missing.len(),
        extra.len()
    );
}

#[test]
fn kill_9_while_tailing_a_file_loses_no_alert_and_adds_none() {
    let dir = setup();
    let evs = events(800);
    let expected = replay_ids(dir.path(), &evs);
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "").unwrap();
    let extra = format!(
        "  - kind: file\n    path: {}\n    start_at: beginning",
        input.display()
    );
    let port = common::free_port();
    let mut daemon = Some(restart(dir.path(), port, &extra));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    let mut seed: u64 = 7;
    for (i, chunk) in evs.chunks(40).enumerate() {
        f.write_all((chunk.join("\n") + "\n").as_bytes()).unwrap();
        f.flush().unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        if i % 5 == 4 {
            std::thread::sleep(Duration::from_millis(10 + (seed >> 58)));
            if let Some(mut d) = daemon.take() {
                let _ = d.child.kill();
                let _ = d.child.wait();
            }
            daemon = Some(restart(dir.path(), port, &extra));
        }
    }
    let d = daemon.take().unwrap();
    let got = wait_for("every alert delivered", Duration::from_secs(30), || {
        let got = delivered_ids(&d);
        (got.len() >= expected.len()).then_some(got)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(got, delivered_ids(&d));
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra_ids: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra_ids.is_empty(),
        "{} missing {missing:?}, {} extra {extra_ids:?}",
        missing.len(),
        extra_ids.len()
    );
}

fn wal_segments(state: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(state.join("wal"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

#[test]
fn a_torn_log_tail_is_cut_and_the_rest_recovered() {
    let dir = setup();
    let evs = events(200);
    let expected = replay_ids(dir.path(), &evs);
    let port = common::free_port();
    let cfg = config(Some(port), "").replace("checkpoint_every: 150ms", "checkpoint_every: 1h");
    let mut d = Daemon::start_on(dir.path(), &cfg, &[], port);
    for chunk in evs.chunks(50) {
        let r = http(port, "POST", "/v1/events", &[], chunk.join("\n").as_bytes()).unwrap();
        assert_eq!(r.status, 202);
    }
    let _ = d.child.kill();
    let _ = d.child.wait();
    drop(d);
    // A crash mid-write: half a record at the end of the last segment.
    let last = wal_segments(&dir.path().join("state")).pop().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    drop(f);
    let d = Daemon::start_on(dir.path(), &cfg, &[], port);
    assert!(
        d.stderr().contains("torn or corrupt tail"),
        "{}",
        d.stderr()
    );
    let got = wait_for("alerts", Duration::from_secs(20), || {
        let got = delivered_ids(&d);
        (got.len() >= expected.len()).then_some(got)
    });
    assert_eq!(got, expected);
}

#[test]
fn a_corrupt_checkpoint_falls_back_to_the_previous_one() {
    let dir = setup();
    let evs = events(300);
    let expected = replay_ids(dir.path(), &evs);
    let port = common::free_port();
    let cfg = config(Some(port), "");
    let mut d = Daemon::start_on(dir.path(), &cfg, &[], port);
    let (first, rest) = evs.split_at(150);
    for chunk in first.chunks(30) {
        assert_eq!(
            http(port, "POST", "/v1/events", &[], chunk.join("\n").as_bytes())
                .unwrap()
                .status,
            202
        );
        std::thread::sleep(Duration::from_millis(200)); // let checkpoints happen in between
    }
    assert!(d.terminate().success());
    drop(d);
    let cps = dir.path().join("state/checkpoints");
    let mut list: Vec<_> = std::fs::read_dir(&cps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    list.sort();
    assert!(list.len() >= 2, "two checkpoints kept: {list:?}");
    let newest = list.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(newest, bytes).unwrap();
    let d = Daemon::start_on(dir.path(), &cfg, &[], port);
    assert!(
        d.stderr().contains("Checkpoint is corrupt"),
        "{}",
        d.stderr()
    );
    for chunk in rest.chunks(30) {
        assert_eq!(
            http(port, "POST", "/v1/events", &[], chunk.join("\n").as_bytes())
                .unwrap()
                .status,
            202
        );
    }
    let got = wait_for("alerts", Duration::from_secs(20), || {
        let got = delivered_ids(&d);
        (got.len() >= expected.len()).then_some(got)
    });
    assert_eq!(got, expected);
}

#[test]
fn unchanged_rules_keep_their_state_across_a_restart_and_changed_rules_start_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    let rules = "rule a { from m window sliding 1h when count() >= 3 }\nrule b { from m window sliding 1h when count() >= 3 }\n";
    std::fs::write(dir.path().join("rules/r.rules"), rules).unwrap();
    let port = common::free_port();
    let cfg = config(Some(port), "").replace("max_delay: 1s", "max_delay: 0s");
    let mut d = Daemon::start_on(dir.path(), &cfg, &[], port);
    for t in [1000, 2000] {
        let r = http(
            port,
            "POST",
            "/v1/events",
            &[],
            format!("{{\"type\":\"m\",\"ts\":{t}}}").as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 202);
    }
    assert!(d.terminate().success());
    drop(d);
    // Rule b changes (its threshold); rule a does not.
    std::fs::write(
        dir.path().join("rules/r.rules"),
        rules.replace(
            "rule b { from m window sliding 1h when count() >= 3 }",
            "rule b { from m window sliding 1h when count() >= 2 }",
        ),
    )
    .unwrap();
    let d = Daemon::start_on(dir.path(), &cfg, &[], port);
    for t in [3000, 4000] {
        let r = http(
            port,
            "POST",
            "/v1/events",
            &[],
            format!("{{\"type\":\"m\",\"ts\":{t}}}").as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 202);
    }
    // a: 1000 (evaluated before the restart, restored), 2000 (held by the
    // sequencer at shutdown, restored, released now), 3000 → count 3 at 3000.
    // b: changed, so it starts empty: it sees only 2000 and 3000 → count 2
    // at 3000, after a (rule order).
    let alerts = wait_for("rule a's alert", Duration::from_secs(10), || {
        let a = d.file_alerts("alerts.ndjson");
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(alerts[0]["rule"], "a");
    assert_eq!(alerts[0]["time"], "1970-01-01T00:00:03.000Z");
    assert_eq!(alerts[0]["values"]["count()"], 3);
    let alerts = wait_for("rule b's alert", Duration::from_secs(10), || {
        let a = d.file_alerts("alerts.ndjson");
        (a.len() >= 2).then_some(a)
    });
    assert_eq!(alerts[1]["rule"], "b");
    assert_eq!(alerts[1]["time"], "1970-01-01T00:00:03.000Z");
    assert_eq!(alerts[1]["values"]["count()"], 2);
}

#[test]
fn kill_9_with_a_webhook_receiver_delivers_every_alert_id() {
    let dir = setup();
    let evs = events(600);
    let expected = replay_ids(dir.path(), &evs);
    let receiver = WebhookReceiver::start();
    let port = common::free_port();
    let cfg = config(Some(port), "")
        .replace("default_notify: [out]", "default_notify: [hook]\n")
        .replace(
            "channels:\n",
            &format!(
                "channels:\n  hook:\n    kind: webhook\n    url: http://127.0.0.1:{}/hook\n",
                receiver.port
            ),
        );
    let mut daemon = Some(Daemon::start_on(dir.path(), &cfg, &[], port));
    for (i, chunk) in evs.chunks(40).enumerate() {
        let key = format!("b{i}");
        loop {
            let r = post_keyed(port, &key, chunk.join("\n").as_bytes());
            if r.as_ref().is_ok_and(|r| r.status == 202) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if i % 4 == 3 {
            if let Some(mut d) = daemon.take() {
                let _ = d.child.kill();
                let _ = d.child.wait();
            }
            daemon = Some(Daemon::start_on(dir.path(), &cfg, &[], port));
        }
    }
    let ids = |r: &WebhookReceiver| -> BTreeSet<String> {
        r.bodies()
            .iter()
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect()
    };
    let got = wait_for(
        "every alert at the receiver",
        Duration::from_secs(60),
        || {
            let got = ids(&receiver);
            (got.len() >= expected.len()).then_some(got)
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        got,
        ids(&receiver),
        "no alert outside the expected set arrives later"
    );
    assert_eq!(got, expected);
    drop(daemon);
}

/// `engine.threads` shares the rules out among threads; the daemon still
/// delivers exactly replay's alerts in replay's order (rule-language.md
/// 2.3), batches big enough for the threads to take part.
#[test]
fn engine_threads_deliver_replays_alerts_in_replays_order() {
    let evs = events(3000);
    for threads in [1, 3] {
        let dir = setup();
        let expected = replay_ids_in_order(dir.path(), &evs);
        assert!(expected.len() > 100, "{}", expected.len());
        let cfg = config(None, "") + &format!("engine:\n  threads: {threads}\n");
        let d = Daemon::start(dir.path(), &cfg, &[]);
        for (i, batch) in evs.chunks(200).enumerate() {
            let r = post_keyed(d.port, &format!("b{i}"), batch.join("\n").as_bytes()).unwrap();
            assert_eq!(r.status, 202, "{}", r.body);
        }
        let got = wait_for("every alert delivered", Duration::from_secs(30), || {
            let got: Vec<String> = d
                .file_alerts("alerts.ndjson")
                .iter()
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect();
            (got.len() >= expected.len()).then_some(got)
        });
        assert_eq!(got, expected, "engine.threads {threads}");
    }
}
