#!/usr/bin/env python3
"""Ingest-to-alert latency of `tocsin run` (docs/performance.md section 5).

Starts a webhook receiver on 127.0.0.1 (its own process), then
`tocsin run` with `max_delay: 0s`, `fsync: batch`, one filter rule that
fires on every `probe` event and a webhook channel pointing at the
receiver. Posts probe events at a steady rate, one event per request on a
kept-alive connection, each carrying its send time (CLOCK_MONOTONIC, the
same clock in both processes), and reports percentiles of

    received - sent   (event posted -> webhook request read by the receiver)
    ack               (event posted -> 202 read by the sender)

With `max_delay: 0s` an event is held until an event with a later time is
accepted (rule-language.md 2.2), so each request carries the probe and a
`tick` event 1 ms later (no rule reads ticks): the figure is the daemon's
own latency. --isolated posts probes alone; the latency then includes the
hold until the next probe (1/rate).

With --background C, wrk posts NDJSON batches of 1,000 events on C
connections at the same time (benches/load/post_events.lua, as
daemon-run.sh). Those events are stamped a day back, so once the first
probe has moved the watermark to the wall clock they are late for the
sequencer (counted and dropped): the background loads the ingest path
(HTTP, decoding, the write-ahead log and its fsyncs) and the engine's
late path, not rule state.

    python3 benches/load/alert-latency.py [--rate 200] [--seconds 20] \\
        [--background 4 [--background-rate 25]] [--isolated] [--tocsin PATH] [--port 18090] \\
        [--probe python|rust]

--probe rust sends the probes and receives the webhooks with
benches/load/probe.rs (built with `cargo bench`) instead of this script:
the same requests and the same figures, without the interpreter's own
latency in them.

Needs wrk (with --background) and /tmp/tocsin-bench/mixed.ndjson.
"""

import argparse
import http.client
import http.server
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def receiver(port_q, out_q, stop):
    """Webhook receiver: answers 200 and notes (alert seq, received - sent)."""
    lat = []

    class Hook(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            got = time.monotonic_ns()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            try:
                ev = json.loads(body)["events"]["event"][0]
                lat.append((ev["n"], got - ev["sent"]))
            except (KeyError, IndexError, ValueError):
                pass

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    srv.daemon_threads = True
    port_q.put(srv.server_address[1])
    srv.timeout = 0.2
    while not stop.is_set():
        srv.handle_request()
    out_q.put(lat)


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def report(name, ns):
    ms = [x / 1e6 for x in ns]
    print(
        f"{name}: n={len(ms)} p50={pct(ms, 50):.2f} ms p90={pct(ms, 90):.2f} ms "
        f"p99={pct(ms, 99):.2f} ms p99.9={pct(ms, 99.9):.2f} ms max={max(ms) if ms else float('nan'):.2f} ms"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=200, help="probe events per second")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--background", type=int, default=0, help="wrk connections (0: none)")
    ap.add_argument("--background-rate", type=float, default=0,
                    help="requests/s per wrk connection, 1,000 events each (0: unpaced)")
    default_bin = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "tocsin")
    ap.add_argument("--tocsin", default=default_bin)
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument(
        "--isolated", action="store_true",
        help="post each probe alone (without the following tick event); with max_delay: 0s "
             "a probe is then held until the next probe (rule-language.md 2.2)")
    ap.add_argument("--probe", choices=["python", "rust"], default="python",
                    help="who sends the probes and receives the webhooks")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    if a.probe == "rust":
        # Built before the daemon starts (an idle daemon would advance its
        # watermark while cargo works).
        subprocess.run(["cargo", "bench", "-q", "--bench", "probe", "--no-run"], cwd=root, check=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            hook_port = s.getsockname()[1]
    else:
        port_q, out_q, stop = mp.Queue(), mp.Queue(), mp.Event()
        rx = mp.Process(target=receiver, args=(port_q, out_q, stop), daemon=True)
        rx.start()
        hook_port = port_q.get(timeout=10)

    d = tempfile.mkdtemp(prefix="tocsin-alert-latency-")
    with open(os.path.join(d, "probe.rules"), "w") as f:
        f.write('rule probe {\n    from probe where n >= 0\n    message "probe {{ event.n }}"\n}\n')
    with open(os.path.join(d, "tocsin.yaml"), "w") as f:
        f.write(
            f"""rules: {d}/probe.rules
state_dir: {d}/state
events:
  max_delay: 0s
  idle_timeout: off
sources:
  - kind: http
    listen: 127.0.0.1:{a.port}
    max_body: 16MiB
admin:
  listen: 127.0.0.1:{a.port}
durability:
  fsync: batch
  checkpoint_every: 30s
default_notify: [hook]
channels:
  hook:
    kind: webhook
    url: http://127.0.0.1:{hook_port}/hook
"""
        )
    log = open(os.path.join(d, "daemon.log"), "w")
    daemon = subprocess.Popen([a.tocsin, "run", "-c", os.path.join(d, "tocsin.yaml")], stdout=log, stderr=log)
    wrk = None
    try:
        deadline = time.time() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or daemon.poll() is not None:
                sys.exit("tocsin did not become ready; see " + os.path.join(d, "daemon.log"))
            time.sleep(0.1)
        if a.background:
            wrk = subprocess.Popen(
                ["wrk", "-t1", f"-c{a.background}", f"-d{int(a.seconds) + 5}s", "--latency",
                 "-s", os.path.join(root, "benches/load/post_events.lua"),
                 f"http://127.0.0.1:{a.port}/v1/events", "--",
                 "/tmp/tocsin-bench/mixed.ndjson", "1000", "1", "0.25", f"{a.background_rate:g}"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(2)  # let wrk load its templates and ramp up
        if a.probe == "rust":
            probe = subprocess.run(
                ["cargo", "bench", "-q", "--bench", "probe", "--", str(hook_port), str(a.port),
                 format(a.rate, "g"), format(a.seconds, "g")] + (["--isolated"] if a.isolated else []),
                cwd=root, stdout=subprocess.PIPE, text=True, check=True)
            bg = wrk.communicate(timeout=60)[0] if wrk else ""
            print(f"probe: rust (benches/load/probe.rs), background: "
                  f"{str(a.background) + ' wrk connections' if a.background else 'none'}"
                  f"{' at ' + format(a.background_rate, 'g') + ' req/s each' if a.background and a.background_rate else ''}")
            print(probe.stdout, end="")
            for line in bg.splitlines():
                if line.startswith(("requests:", "accepted events/s", "ack latency p99:")):
                    print("background wrk " + line)
            return
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        acks, statuses = [], {}
        period = 1.0 / a.rate
        total = int(a.seconds * a.rate)
        start = time.monotonic()
        last_ts = 0
        for n in range(total):
            due = start + n * period
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            sent = time.monotonic_ns()
            # Strictly after the previous request's events, or the probe
            # would be late (behind the watermark) when the sender catches up.
            ts = max(int(time.time() * 1000), last_ts + 1)
            last_ts = ts + 1
            body = json.dumps({"type": "probe", "ts": ts, "n": n, "sent": sent})
            ctype = "application/json"
            if not a.isolated:
                # An event 1 ms later in the same body raises the watermark
                # past the probe, so it is released at once (2.2).
                body += "\n" + json.dumps({"type": "tick", "ts": ts + 1}) + "\n"
                ctype = "application/x-ndjson"
            conn.request("POST", "/v1/events", body, {"Content-Type": ctype})
            r = conn.getresponse()
            r.read()
            acks.append(time.monotonic_ns() - sent)
            statuses[r.status] = statuses.get(r.status, 0) + 1
        time.sleep(3.0)  # let the last alerts arrive
        stop.set()
        lat = dict(out_q.get(timeout=10))
        rx.join(5)
        bg = ""
        if wrk:
            bg = wrk.communicate(timeout=60)[0]
        print(f"probes: {total} at {a.rate:g}/s for {a.seconds:g}s"
              f"{' (isolated)' if a.isolated else ' (each followed by a tick 1 ms later)'}, "
              f"answers {statuses}, alerts received: {len(lat)}, "
              f"background: {str(a.background) + ' wrk connections' if a.background else 'none'}"
              f"{' at ' + format(a.background_rate, 'g') + ' req/s each' if a.background and a.background_rate else ''}")
        report("ingest-to-alert", list(lat.values()))
        report("probe ack", acks)
        for line in bg.splitlines():
            if line.startswith(("requests:", "accepted events/s", "ack latency p99:")):
                print("background wrk " + line)
    finally:
        if wrk and wrk.poll() is None:
            wrk.kill()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print("scratch directory: " + d)


if __name__ == "__main__":
    main()
