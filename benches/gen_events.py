#!/usr/bin/env python3
"""Deterministic NDJSON event generator for tocsin's end-to-end benchmarks.

A line-for-line port of benches/common/mod.rs (same splitmix64 generator,
same draws in the same order), so for the same scenario, seed, step and
count it writes exactly the bytes the criterion benches feed the engine.

    python3 benches/gen_events.py --scenario mixed -n 1000000 > /tmp/tocsin-bench/mixed.ndjson

Scenarios (see Scenario in benches/common/mod.rs):
  auth       auth events, --keys users (default 100000)
  http       http events, --keys client addresses (default 10000)
  heartbeat  heartbeat events, --keys hosts (default 10000)
  orders     order / payment / shipment lifecycles
  mixed      40 % http, 40 % auth, 10 % heartbeat, 10 % orders
  distinct   one event per key, every key new (memory per key):
             --stream auth|heartbeat, --keys ignored (= -n)
Options: -n COUNT, --step-ms MS (default 10), --seed N (default 42),
         --flush: append one event 2 days after the last (memory test).
"""

import argparse
import heapq
import sys
from datetime import datetime, timezone

M64 = (1 << 64) - 1
T0 = 1_795_341_600_000  # 2026-11-22T10:00:00.000Z


class Rng:
    def __init__(self, seed):
        self.s = seed & M64

    def next_u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next_u64() * n) >> 64

    def chance(self, p):
        return (self.next_u64() >> 11) / float(1 << 53) <= p

    def pick(self, xs):
        return xs[self.below(len(xs))]


def rfc3339(ms):
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


SERVICES = ["checkout", "cart", "search", "catalog", "auth", "payments", "shipping", "reviews",
            "profile", "recommend", "inventory", "pricing", "gateway", "media", "notify", "orders",
            "ledger", "fraud", "support", "admin"]
METHODS = ["GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1",
    "curl/8.5.0",
    "okhttp/4.12.0",
]
LANGS = ["en-GB", "en-US", "de-DE", "fr-FR"]
COUNTRIES = [("DE", "Berlin"), ("FR", "Paris"), ("GB", "London"), ("US", "Chicago"), ("JP", "Osaka")]
AUTH_METHODS = ["password", "password", "password", "totp", "sso", "key"]
ADMINS = ["root", "admin", "ops"]
PATHS = ["cart", "items", "users", "orders", "search"]


def auth_event(ms, user, outcome, rng):
    a = rng.below(256)
    b = rng.below(256)
    m = rng.pick(AUTH_METHODS)
    return ('{"type":"auth","ts":"%s","user":"%s","ip":"203.0.%d.%d","outcome":"%s",'
            '"method":"%s","agent":"sshd","port":22}' % (rfc3339(ms), user, a, b, outcome, m))


def http_event(ms, client, rng):
    r = rng.below(1000)
    if r < 900:
        status = [200, 200, 200, 201, 204, 304][rng.below(6)]
    elif r < 970:
        status = [400, 401, 403, 404, 404, 429][rng.below(6)]
    else:
        status = [500, 502, 503, 504][rng.below(4)]
    x = rng.below(100)
    if x <= 79:
        latency = 5 + rng.below(150)
    elif x <= 97:
        latency = 150 + rng.below(1000)
    else:
        latency = 1000 + rng.below(5000)
    country, city = COUNTRIES[rng.below(len(COUNTRIES))]
    service = rng.pick(SERVICES)
    method = rng.pick(METHODS)
    path_a = rng.pick(PATHS)
    path_b = rng.below(200)
    nbytes = 200 + rng.below(20_000)
    req = rng.next_u64() & 0xFFFFFFFF
    agent = rng.pick(AGENTS)
    lang = rng.pick(LANGS)
    page = 1 + rng.below(9)
    up_a = rng.below(8)
    up_b = rng.below(256)
    retries = 1 if rng.below(20) == 0 else 0
    return (
        '{"type":"http","ts":%d,"service":"%s","method":"%s","path":"/api/v1/%s/%d","status":%d,'
        '"latency_ms":%d,"bytes":%d,"client_ip":"198.51.%d.%d","session":"s-%06x",'
        '"request":{"id":"req-%08x","headers":{"user_agent":"%s","accept":"application/json","accept_language":"%s"},'
        '"query":{"page":%d,"sort":"price"}},"upstream":{"host":"10.0.%d.%d","port":8443,"tls":true,"retries":%d},'
        '"geo":{"country":"%s","city":"%s"}}'
        % (ms, service, method, path_a, path_b, status, latency, nbytes, client // 256 % 256,
           client % 256, client * 7 % 0xFFFFFF, req, agent, lang, page, up_a, up_b, retries,
           country, city))


def heartbeat_event(ms, host, env):
    return ('{"type":"heartbeat","ts":"%s","host":"host-%07d","env":"%s","uptime_s":%d}'
            % (rfc3339(ms), host, env, (ms - T0) // 1000 + 86_400))


def money(cents):
    return "%d.%02d" % (cents // 100, cents % 100)


def order_event(ms, oid, state, cents):
    return ('{"type":"order","ts":"%s","order_id":"o-%08d","state":"%s","total":%s}'
            % (rfc3339(ms), oid, state, money(cents)))


def payment_event(ms, oid, status, cents):
    return ('{"type":"payment","ts":"%s","order_id":"o-%08d","status":"%s","amount":%s}'
            % (rfc3339(ms), oid, status, money(cents)))


def shipment_event(ms, oid):
    return '{"type":"shipment","ts":"%s","order_id":"o-%08d","carrier":"dhl"}' % (rfc3339(ms), oid)


PLACEHOLDER = rfc3339(0)


class Gen:
    def __init__(self, scenario, keys, step_ms, seed):
        self.rng = Rng(seed)
        self.scenario = scenario
        self.keys = keys
        self.step_ms = step_ms
        self.now = T0
        self.n = 0
        self.pending = []
        self.next_order = 0
        self.hb_host = 0
        self.dead = set()

    def next_line(self):
        self.now += self.step_ms
        self.n += 1
        ms = self.now
        s = self.scenario
        if s == "auth":
            return self.auth(ms, self.keys)
        if s == "http":
            c = self.rng.below(self.keys)
            return http_event(ms, c, self.rng)
        if s == "heartbeat":
            return self.heartbeat(ms, self.keys)
        if s == "orders":
            return self.orders(ms)
        x = self.rng.below(10)
        if x <= 3:
            c = self.rng.below(10_000)
            return http_event(ms, c, self.rng)
        if x <= 7:
            return self.auth(ms, 100_000)
        if x == 8:
            return self.heartbeat(ms, 1_000)
        return self.orders(ms)

    def auth(self, ms, users):
        targets = max(users // 100, 1)
        if self.rng.chance(0.10):
            user, fail_p = self.rng.below(targets), 0.70
        else:
            user, fail_p = targets + self.rng.below(max(users - targets, 1)), 0.05
        failed = self.rng.chance(fail_p)
        if not failed and self.rng.chance(0.001):
            name = self.rng.pick(ADMINS)
        else:
            name = "user-%07d" % user
        return auth_event(ms, name, "failure" if failed else "success", self.rng)

    def heartbeat(self, ms, hosts):
        while True:
            h = self.hb_host
            self.hb_host = (self.hb_host + 1) % hosts
            if h in self.dead:
                continue
            if self.rng.chance(0.000_01) and len(self.dead) < hosts // 2:
                self.dead.add(h)
                continue
            return heartbeat_event(ms, h, "staging" if h % 5 == 4 else "prod")

    def orders(self, ms):
        if self.pending and self.pending[0][0] <= ms:
            line = heapq.heappop(self.pending)[2]
            return line.replace(PLACEHOLDER, rfc3339(ms), 1)
        oid = self.next_order
        self.next_order += 1
        total = 1000 + self.rng.below(20_000)
        seq = self.n
        if self.rng.chance(0.02):
            at = ms + 1000 + self.rng.below(60_000)
            heapq.heappush(self.pending, (at, seq, order_event(0, oid, "cancelled", total)))
        declines = 3 + self.rng.below(3) if self.rng.chance(0.01) else 0
        at = ms
        for _ in range(declines):
            at += 1000 + self.rng.below(10_000)
            heapq.heappush(self.pending, (at, seq, payment_event(0, oid, "declined", total)))
        paid_at = at + 3000 + self.rng.below(57_000)
        heapq.heappush(self.pending, (paid_at, seq, payment_event(0, oid, "captured", total)))
        if self.rng.chance(0.95):
            ship_at = paid_at + 10_000 + self.rng.below(490_000)
            heapq.heappush(self.pending, (ship_at, seq, shipment_event(0, oid)))
        return order_event(ms, oid, "created", total)


def distinct(stream, n, step_ms, seed):
    """One event per key, every key new: memory per live key."""
    rng = Rng(seed)
    for i in range(n):
        ms = T0 + (i + 1) * step_ms
        if stream == "heartbeat":
            yield heartbeat_event(ms, i, "prod")
        else:
            # A failure: a sequence rule buffers it, a sliding window keeps it.
            yield auth_event(ms, "user-%07d" % i, "failure", rng)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="mixed",
                    choices=["auth", "http", "heartbeat", "orders", "mixed", "distinct"])
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=None)
    ap.add_argument("--stream", default="auth", choices=["auth", "heartbeat"])
    ap.add_argument("--step-ms", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--flush", action="store_true",
                    help="append one event of the same stream 2 days after the last")
    a = ap.parse_args()
    keys = a.keys or {"auth": 100_000, "http": 10_000, "heartbeat": 10_000}.get(a.scenario, 0)
    out = sys.stdout
    buf = []
    if a.scenario == "distinct":
        it = distinct(a.stream, a.n, a.step_ms, a.seed)
    else:
        g = Gen(a.scenario, keys, a.step_ms, a.seed)
        it = (g.next_line() for _ in range(a.n))
    last_ms = T0 + a.n * a.step_ms
    for line in it:
        buf.append(line)
        if len(buf) >= 10_000:
            out.write("\n".join(buf) + "\n")
            buf.clear()
    if a.flush:
        # A stream no rule reads: it only moves the watermark.
        buf.append('{"type":"flush","ts":"%s"}' % rfc3339(last_ms + 2 * 86_400_000))
    if buf:
        out.write("\n".join(buf) + "\n")


if __name__ == "__main__":
    main()
