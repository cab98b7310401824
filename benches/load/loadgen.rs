//! Load generator for `tocsin run`: POST /v1/events with NDJSON bodies on
//! several keep-alive connections, one thread each, and report accepted
//! events/s and acknowledgement latency. It does what
//! `benches/load/post_events.lua` does under wrk, at a fraction of the CPU
//! (wrk's Lua re-stamping took 1.6 µs per event, a fifth of the two cores
//! the daemon is measured on; this takes ~0.1 µs).
//!
//!     cargo bench --bench loadgen -- URL FILE CONNECTIONS SECONDS \
//!         [--batch 1000] [--ms-per-event 0.25] [--rate 0 | --paced 0] [--token T]
//!     (benches/load/daemon-run.sh runs it with LOADGEN=rust)
//!
//! FILE: NDJSON from benches/gen_events.py; its first 100,000 lines are the
//! event templates, used in order and then again. Each body re-stamps its
//! templates with numeric event times: event k of the run gets
//! `base + k * ms-per-event` ms, `base` one day before the wall clock
//! (never beyond `max_future`), and the template cycle number goes after
//! the `o-` and `s-` prefixes of order and session ids so that an order or
//! a session does not come back (users, clients and hosts do). Requests
//! take consecutive slots of events, so concurrent bodies are close in
//! event time: keep CONNECTIONS x batch x ms-per-event under `max_delay`.
//!
//! --rate R: requests per second per connection; each connection waits
//! 1000/R ms after an answer before its next request (as wrk's `delay()`).
//!
//! --paced R: an open loop: each connection's request k is due k/R seconds
//! after the start, sent then (or at once if the previous answer came
//! late), and its latency counts from when it was due, so a daemon that
//! falls behind shows in the latency instead of slowing the load down (no
//! coordinated omission). CONNECTIONS x R x batch is the offered events/s.
//!
//! Output (the same lines as the wrk script): requests and non-2xx,
//! accepted events/s, ack latency p50/p90/p99/p99.9/max.
//!
//! Under `cargo test --benches` it renders bodies and checks them instead
//! (no daemon needed).

#[path = "common.rs"]
mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One piece of an event template.
#[derive(Debug, Clone)]
enum Piece {
    Text(Vec<u8>),
    /// The event time, as an integer of milliseconds.
    Time,
    /// The template cycle number and a dash, after `"o-` / `"s-`.
    Cycle,
}

/// Splits a template line at its time member's value and after the first
/// `"o-` and `"s-`.
fn template(line: &str) -> Vec<Piece> {
    let mut marks: Vec<(usize, usize, Piece)> = Vec::new();
    if let Some(i) = line.find("\"ts\":") {
        let v = i + 5;
        let rest = &line[v..];
        let len = if let Some(r) = rest.strip_prefix('"') {
            r.find('"').map_or(rest.len(), |e| e + 2)
        } else {
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                .unwrap_or(rest.len())
        };
        marks.push((v, v + len, Piece::Time));
    }
    for prefix in ["\"o-", "\"s-"] {
        if let Some(i) = line.find(prefix) {
            let at = i + prefix.len();
            marks.push((at, at, Piece::Cycle));
        }
    }
    marks.sort_by_key(|m| m.0);
    let mut pieces = Vec::new();
    let mut pos = 0;
    for (start, end, p) in marks {
        if start < pos {
            continue;
        }
        pieces.push(Piece::Text(line.as_bytes()[pos..start].to_vec()));
        pieces.push(p);
        pos = end;
    }
    pieces.push(Piece::Text(line.as_bytes()[pos..].to_vec()));
    pieces
}

/// What every connection shares.
struct Plan {
    templates: Vec<Vec<Piece>>,
    per: u64,
    ms_per_event: f64,
    base: i64,
    /// The next request's slot.
    next: AtomicU64,
}

impl Plan {
    /// Writes the body of request `slot` into `out`.
    fn body(&self, slot: u64, out: &mut Vec<u8>) {
        out.clear();
        let n = self.templates.len() as u64;
        for k in slot * self.per..(slot + 1) * self.per {
            let ts = self.base + (k as f64 * self.ms_per_event).floor() as i64;
            for p in &self.templates[(k % n) as usize] {
                match p {
                    Piece::Text(t) => out.extend_from_slice(t),
                    // Writing into a Vec cannot fail.
                    Piece::Time => {
                        let _ = write!(out, "{ts}");
                    }
                    Piece::Cycle => {
                        let _ = write!(out, "{}-", k / n);
                    }
                }
            }
            out.push(b'\n');
        }
    }
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    requests: u64,
    non_2xx: u64,
    errors: u64,
    /// Microseconds from the request's first byte to the answer's last.
    latencies: Vec<u32>,
}

struct Target {
    addr: String,
    host: String,
    path: String,
    token: Option<String>,
}

/// Sends one request and reads the answer; the status code.
fn exchange(
    conn: &mut Option<BufReader<TcpStream>>,
    target: &Target,
    body: &[u8],
    head: &mut Vec<u8>,
) -> std::io::Result<u16> {
    if conn.is_none() {
        let s = TcpStream::connect(&target.addr)?;
        s.set_nodelay(true)?;
        *conn = Some(BufReader::with_capacity(64 << 10, s));
    }
    let Some(r) = conn.as_mut() else {
        return Err(std::io::Error::other("no connection"));
    };
    head.clear();
    write!(
        head,
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n",
        target.path,
        target.host,
        body.len()
    )?;
    if let Some(t) = &target.token {
        write!(head, "Authorization: Bearer {t}\r\n")?;
    }
    head.extend_from_slice(b"\r\n");
    let s = r.get_mut();
    s.write_all(head)?;
    s.write_all(body)?;
    let Some((answer, _)) = common::read_message(r)? else {
        return Err(std::io::Error::other("connection closed"));
    };
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {answer:?}")))?;
    if common::header(&answer, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
        *conn = None;
    }
    Ok(status)
}

/// How a connection spaces its requests.
#[derive(Clone, Copy)]
enum Pace {
    /// Closed loop: the next request as soon as the answer is in.
    Closed,
    /// This long after each answer (`--rate`).
    Pause(Duration),
    /// One request per interval on a fixed schedule (`--paced`).
    Every(Duration),
}

fn connection(plan: &Plan, target: &Target, until: Instant, pace: Pace) -> Tally {
    let mut t = Tally::default();
    let (mut body, mut head) = (Vec::new(), Vec::new());
    let mut conn = None;
    let mut due = Instant::now();
    while Instant::now() < until {
        let slot = plan.next.fetch_add(1, Ordering::Relaxed);
        plan.body(slot, &mut body);
        if let Pace::Every(_) = pace {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let start = match pace {
            Pace::Every(_) => due,
            _ => Instant::now(),
        };
        match exchange(&mut conn, target, &body, &mut head) {
            Ok(status) => {
                t.requests += 1;
                if !(200..300).contains(&status) {
                    t.non_2xx += 1;
                }
                let us = start.elapsed().as_micros();
                t.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(_) => {
                t.errors += 1;
                conn = None;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        match pace {
            Pace::Closed => {}
            Pace::Pause(p) => std::thread::sleep(p),
            Pace::Every(every) => due += every,
        }
    }
    t
}

fn load_templates(path: &str) -> Vec<Vec<Piece>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("loadgen: cannot read {path}: {e}");
        std::process::exit(2)
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(100_000)
        .map(template)
        .collect()
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen URL FILE CONNECTIONS SECONDS [--batch N] [--ms-per-event X] [--rate R | --paced R] [--token T]"
    );
    std::process::exit(2)
}

/// Under `cargo test`: bodies re-stamp times and ids as documented.
fn self_check() {
    let lines = [
        r#"{"type":"auth","ts":"2026-11-22T10:00:00.010Z","user":"u1","ip":"1.2.3.4"}"#,
        r#"{"type":"orders","ts":1795341600020,"order":"o-17","session":"s-9","n":1}"#,
    ];
    let plan = Plan {
        templates: lines.iter().map(|l| template(l)).collect(),
        per: 3,
        ms_per_event: 0.5,
        base: 1_000,
        next: AtomicU64::new(0),
    };
    let mut out = Vec::new();
    plan.body(1, &mut out);
    let text = String::from_utf8(out).expect("utf-8");
    let want = [
        r#"{"type":"orders","ts":1001,"order":"o-1-17","session":"s-1-9","n":1}"#,
        r#"{"type":"auth","ts":1002,"user":"u1","ip":"1.2.3.4"}"#,
        r#"{"type":"orders","ts":1002,"order":"o-2-17","session":"s-2-9","n":1}"#,
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), want);
    println!("loadgen: self-check ok (run with cargo bench --bench loadgen -- URL ...)");
}

fn main() {
    let args = common::bench_args();
    if args.is_empty() {
        self_check();
        return;
    }
    let mut pos = Vec::new();
    let (mut per, mut ms, mut rate, mut paced, mut token) = (1000u64, 0.25f64, 0f64, 0f64, None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--batch" => per = val().parse().unwrap_or_else(|_| usage()),
            "--ms-per-event" => ms = val().parse().unwrap_or_else(|_| usage()),
            "--rate" => rate = val().parse().unwrap_or_else(|_| usage()),
            "--paced" => paced = val().parse().unwrap_or_else(|_| usage()),
            "--token" => token = Some(val()),
            _ => pos.push(a),
        }
    }
    let [url, file, conns, secs] = pos.as_slice() else {
        usage()
    };
    let conns: usize = conns.parse().unwrap_or_else(|_| usage());
    let secs: f64 = secs
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| usage());
    let rest = url.strip_prefix("http://").unwrap_or_else(|| usage());
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let target = Arc::new(Target {
        addr: host.to_string(),
        host: host.to_string(),
        path: format!("/{path}"),
        token,
    });
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let plan = Arc::new(Plan {
        templates: load_templates(file),
        per,
        ms_per_event: ms,
        base: (now_s - 86_400) * 1000,
        next: AtomicU64::new(0),
    });
    let pace = if paced > 0.0 {
        Pace::Every(Duration::from_secs_f64(1.0 / paced))
    } else if rate > 0.0 {
        Pace::Pause(Duration::from_secs_f64(1.0 / rate))
    } else {
        Pace::Closed
    };
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (plan, target) = (plan.clone(), target.clone());
            std::thread::spawn(move || connection(&plan, &target, until, pace))
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().unwrap_or_default();
        all.requests += t.requests;
        all.non_2xx += t.non_2xx;
        all.errors += t.errors;
        all.latencies.extend(t.latencies);
    }
    let s = started.elapsed().as_secs_f64();
    all.latencies.sort_unstable();
    println!(
        "requests: {} in {:.2}s, non-2xx: {}, socket errors: {}",
        all.requests, s, all.non_2xx, all.errors
    );
    println!(
        "accepted events/s (2xx requests x {} / duration): {:.0}",
        per,
        (all.requests - all.non_2xx) as f64 * per as f64 / s
    );
    for p in [50.0, 90.0, 99.0, 99.9] {
        println!(
            "ack latency p{p}: {:.2} ms",
            common::percentile(&all.latencies, p).map_or(0.0, |us| f64::from(us) / 1000.0)
        );
    }
    println!(
        "ack latency max: {:.2} ms",
        all.latencies.last().map_or(0.0, |&m| f64::from(m) / 1000.0)
    );
}
