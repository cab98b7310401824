//! Shared, deterministic event generators for the benches.
//!
//! Everything is a pure function of a fixed seed, so every run sees the
//! same bytes. The shapes mirror the example events in `rules/*.rules` and
//! `benches/gen_events.py` (which writes the NDJSON files used for the
//! end-to-end figures in docs/performance.md).

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tocsin::decode::{Decoded, Decoder};
use tocsin::event::{Event, EventTime};
use tocsin::lang::{self, Options, Program};

/// 2026-11-22T10:00:00.000Z
pub const T0: i64 = 1_795_341_600_000;

/// Whether criterion was started by `cargo bench` (`--bench` on the
/// command line) rather than `cargo test --benches` (each bench run once).
/// Data sets are sized down in test mode so that `cargo test --all-targets`
/// stays fast.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// splitmix64: tiny, fast, and identical everywhere.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// True with probability `p` (0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

pub fn rfc3339(ms: i64) -> String {
    EventTime(ms).rfc3339()
}

const SERVICES: &[&str] = &[
    "checkout",
    "cart",
    "search",
    "catalog",
    "auth",
    "payments",
    "shipping",
    "reviews",
    "profile",
    "recommend",
    "inventory",
    "pricing",
    "gateway",
    "media",
    "notify",
    "orders",
    "ledger",
    "fraud",
    "support",
    "admin",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1",
    "curl/8.5.0",
    "okhttp/4.12.0",
];
const LANGS: &[&str] = &["en-GB", "en-US", "de-DE", "fr-FR"];
const COUNTRIES: &[(&str, &str)] = &[
    ("DE", "Berlin"),
    ("FR", "Paris"),
    ("GB", "London"),
    ("US", "Chicago"),
    ("JP", "Osaka"),
];
const AUTH_METHODS: &[&str] = &["password", "password", "password", "totp", "sso", "key"];
const ADMINS: &[&str] = &["root", "admin", "ops"];

/// An `auth` event, ~150 bytes. `user` is given; `outcome` is "failure" or
/// "success".
pub fn auth_event(ms: i64, user: &str, outcome: &str, rng: &mut Rng) -> String {
    format!(
        r#"{{"type":"auth","ts":"{}","user":"{}","ip":"203.0.{}.{}","outcome":"{}","method":"{}","agent":"sshd","port":22}}"#,
        rfc3339(ms),
        user,
        rng.below(256),
        rng.below(256),
        outcome,
        rng.pick(AUTH_METHODS),
    )
}

/// An `http` event with nested objects, ~400 bytes.
pub fn http_event(ms: i64, client: u64, rng: &mut Rng) -> String {
    let r = rng.below(1000);
    let status = if r < 900 {
        [200, 200, 200, 201, 204, 304][rng.below(6) as usize]
    } else if r < 970 {
        [400, 401, 403, 404, 404, 429][rng.below(6) as usize]
    } else {
        [500, 502, 503, 504][rng.below(4) as usize]
    };
    // Latency: mostly fast, a long tail.
    let latency = match rng.below(100) {
        0..=79 => 5 + rng.below(150),
        80..=97 => 150 + rng.below(1000),
        _ => 1000 + rng.below(5000),
    };
    let (country, city) = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
    format!(
        concat!(
            r#"{{"type":"http","ts":{},"service":"{}","method":"{}","path":"/api/v1/{}/{}","status":{},"#,
            r#""latency_ms":{},"bytes":{},"client_ip":"198.51.{}.{}","session":"s-{:06x}","#,
            r#""request":{{"id":"req-{:08x}","headers":{{"user_agent":"{}","accept":"application/json","accept_language":"{}"}},"#,
            r#""query":{{"page":{},"sort":"price"}}}},"upstream":{{"host":"10.0.{}.{}","port":8443,"tls":true,"retries":{}}},"#,
            r#""geo":{{"country":"{}","city":"{}"}}}}"#
        ),
        ms,
        rng.pick(SERVICES),
        rng.pick(METHODS),
        rng.pick(&["cart", "items", "users", "orders", "search"]),
        rng.below(200),
        status,
        latency,
        200 + rng.below(20_000),
        client / 256 % 256,
        client % 256,
        client * 7 % 0xff_ffff,
        rng.next_u64() as u32,
        rng.pick(AGENTS),
        rng.pick(LANGS),
        1 + rng.below(9),
        rng.below(8),
        rng.below(256),
        u64::from(rng.below(20) == 0),
        country,
        city,
    )
}

pub fn heartbeat_event(ms: i64, host: u64, env: &str) -> String {
    format!(
        r#"{{"type":"heartbeat","ts":"{}","host":"host-{:07}","env":"{}","uptime_s":{}}}"#,
        rfc3339(ms),
        host,
        env,
        (ms - T0) / 1000 + 86_400
    )
}

/// `cents` as a JSON number with two decimals, e.g. `59.90`.
fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

pub fn order_event(ms: i64, id: u64, state: &str, cents: u64) -> String {
    format!(
        r#"{{"type":"order","ts":"{}","order_id":"o-{:08}","state":"{}","total":{}}}"#,
        rfc3339(ms),
        id,
        state,
        money(cents)
    )
}

pub fn payment_event(ms: i64, id: u64, status: &str, cents: u64) -> String {
    format!(
        r#"{{"type":"payment","ts":"{}","order_id":"o-{:08}","status":"{}","amount":{}}}"#,
        rfc3339(ms),
        id,
        status,
        money(cents)
    )
}

pub fn shipment_event(ms: i64, id: u64) -> String {
    format!(
        r#"{{"type":"shipment","ts":"{}","order_id":"o-{:08}","carrier":"dhl"}}"#,
        rfc3339(ms),
        id
    )
}

/// What a generator produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// `auth` only: `users` users; 1 % of them ("targets") get 10 % of
    /// the traffic and fail 70 % of the time (brute force), the others fail
    /// 5 %; 0.1 % of successes are by an admin account.
    Auth { users: u64 },
    /// `http` only, `clients` distinct client_ip values.
    Http { clients: u64 },
    /// `heartbeat` only: `hosts` hosts in round robin, 1 in 1000 hosts
    /// dies for good at a random moment (absence firing).
    Heartbeat { hosts: u64 },
    /// `order` lifecycle: created, (cancelled 2 %), payment captured
    /// 3-60 s later, shipment 10-500 s after payment for 95 % of orders.
    Orders,
    /// 40 % http, 40 % auth, 10 % heartbeat, 10 % orders, like the shipped
    /// rules expect.
    Mixed,
}

/// A deterministic stream of NDJSON lines with event times `step_ms` apart.
pub struct Gen {
    rng: Rng,
    scenario: Scenario,
    step_ms: i64,
    now: i64,
    n: u64,
    /// Future events (orders), by (time, sequence).
    pending: BinaryHeap<Reverse<(i64, u64, String)>>,
    next_order: u64,
    hb_host: u64,
    dead: std::collections::HashSet<u64>,
}

impl Gen {
    pub fn new(scenario: Scenario, step_ms: i64, seed: u64) -> Self {
        Gen {
            rng: Rng::new(seed),
            scenario,
            step_ms,
            now: T0,
            n: 0,
            pending: BinaryHeap::new(),
            next_order: 0,
            hb_host: 0,
            dead: Default::default(),
        }
    }

    /// The next event as one JSON line (no line ending).
    pub fn next_line(&mut self) -> String {
        self.now += self.step_ms;
        self.n += 1;
        let ms = self.now;
        match self.scenario {
            Scenario::Auth { users } => self.auth(ms, users),
            Scenario::Http { clients } => {
                let c = self.rng.below(clients);
                http_event(ms, c, &mut self.rng)
            }
            Scenario::Heartbeat { hosts } => self.heartbeat(ms, hosts),
            Scenario::Orders => self.orders(ms),
            Scenario::Mixed => match self.rng.below(10) {
                0..=3 => {
                    let c = self.rng.below(10_000);
                    http_event(ms, c, &mut self.rng)
                }
                4..=7 => self.auth(ms, 100_000),
                8 => self.heartbeat(ms, 1_000),
                _ => self.orders(ms),
            },
        }
    }

    fn auth(&mut self, ms: i64, users: u64) -> String {
        let targets = (users / 100).max(1);
        let (user, fail_p) = if self.rng.chance(0.10) {
            (self.rng.below(targets), 0.70)
        } else {
            (targets + self.rng.below((users - targets).max(1)), 0.05)
        };
        let failed = self.rng.chance(fail_p);
        let name = if !failed && self.rng.chance(0.001) {
            self.rng.pick(ADMINS).to_string()
        } else {
            format!("user-{user:07}")
        };
        let outcome = if failed { "failure" } else { "success" };
        auth_event(ms, &name, outcome, &mut self.rng)
    }

    fn heartbeat(&mut self, ms: i64, hosts: u64) -> String {
        // Round robin over the live hosts; a host may die for good.
        loop {
            let h = self.hb_host;
            self.hb_host = (self.hb_host + 1) % hosts;
            if self.dead.contains(&h) {
                continue;
            }
            // About 1 host in 1000 dies per 100 rounds; at most half of them.
            if self.rng.chance(0.000_01) && (self.dead.len() as u64) < hosts / 2 {
                self.dead.insert(h);
                continue;
            }
            let env = if h % 5 == 4 { "staging" } else { "prod" };
            return heartbeat_event(ms, h, env);
        }
    }

    fn orders(&mut self, ms: i64) -> String {
        if let Some(Reverse((t, _, _))) = self.pending.peek()
            && *t <= ms
            && let Some(Reverse((_, _, line))) = self.pending.pop()
        {
            // Re-stamp with the current time so output stays in order.
            return restamp(&line, ms);
        }
        let id = self.next_order;
        self.next_order += 1;
        let total = 1000 + self.rng.below(20_000);
        let seq = self.n;
        if self.rng.chance(0.02) {
            let at = ms + 1000 + self.rng.below(60_000) as i64;
            self.pending
                .push(Reverse((at, seq, order_event(0, id, "cancelled", total))));
        }
        let declines = if self.rng.chance(0.01) {
            3 + self.rng.below(3)
        } else {
            0
        };
        let mut at = ms;
        for _ in 0..declines {
            at += 1000 + self.rng.below(10_000) as i64;
            self.pending
                .push(Reverse((at, seq, payment_event(0, id, "declined", total))));
        }
        let paid_at = at + 3000 + self.rng.below(57_000) as i64;
        self.pending.push(Reverse((
            paid_at,
            seq,
            payment_event(0, id, "captured", total),
        )));
        if self.rng.chance(0.95) {
            let ship_at = paid_at + 10_000 + self.rng.below(490_000) as i64;
            self.pending
                .push(Reverse((ship_at, seq, shipment_event(0, id))));
        }
        order_event(ms, id, "created", total)
    }
}

/// Replaces the placeholder time `1970-01-01T00:00:00.000Z` by `ms`.
fn restamp(line: &str, ms: i64) -> String {
    line.replacen("1970-01-01T00:00:00.000Z", &rfc3339(ms), 1)
}

/// `n` lines of a scenario.
pub fn lines(scenario: Scenario, step_ms: i64, seed: u64, n: usize) -> Vec<String> {
    let mut g = Gen::new(scenario, step_ms, seed);
    (0..n).map(|_| g.next_line()).collect()
}

pub fn decode(decoder: &Decoder, line: &str) -> Event {
    match decoder.decode(line.as_bytes(), None) {
        Decoded::Event(e) => e,
        other => panic!("generator produced a bad event: {other:?}: {line}"),
    }
}

/// Loads rule text (panics on load errors).
pub fn program(text: &str) -> Program {
    let loaded = lang::load_texts(
        vec![("bench.rules".into(), text.into())],
        &Options::default(),
    );
    assert!(!loaded.has_errors(), "{}", loaded.render());
    loaded.program
}

/// Loads the shipped `rules/` directory.
pub fn shipped_rules() -> Program {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let loaded = lang::load(&dir, &Options::default()).expect("read rules/");
    assert!(!loaded.has_errors(), "{}", loaded.render());
    loaded.program
}

/// Resident set size of this process in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
