//! Ingest-to-alert probe for `benches/load/alert-latency.py --probe rust`:
//! the sender and the webhook receiver of that script, in one process,
//! without Python's own latency (its interpreter added ~0.5 ms at the
//! median and more in the tail on the two shared cores).
//!
//!     cargo bench --bench probe -- HOOK_PORT DAEMON_PORT RATE SECONDS [--isolated]
//!
//! Listens for webhooks on 127.0.0.1:HOOK_PORT (answering 200), then posts
//! RATE probe events per second for SECONDS to the daemon on one kept-alive
//! connection, each request due at a fixed time. Each probe carries its
//! send time (`sent`, ns since the probe started, one clock for sender and
//! receiver) and is followed in the same NDJSON body by a `tick` event 1 ms
//! later, which releases it at once with `max_delay: 0s` (--isolated: the
//! probe alone). Prints the script's lines:
//!
//!     ingest-to-alert: n=... p50=... ms p90=... p99=... p99.9=... max=...
//!     probe ack: ...
//!
//! where ingest-to-alert = webhook request read - sent, and ack = 202 read
//! - sent.

#[path = "common.rs"]
mod common;

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// (probe number, latency in ns) of the alerts received.
type Received = Arc<Mutex<Vec<(u64, u64)>>>;

/// The number after `"key":` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let i = text.find(key)? + key.len();
    let rest = text[i..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The webhook receiver: one thread per connection, 200 to everything.
fn receive(listener: TcpListener, base: Instant, got: Received) {
    for stream in listener.incoming().flatten() {
        let got = got.clone();
        std::thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let Ok(mut out) = stream.try_clone() else {
                return;
            };
            let mut r = BufReader::new(stream);
            while let Ok(Some((_, body))) = common::read_message(&mut r) {
                let at = base.elapsed().as_nanos() as u64;
                let text = String::from_utf8_lossy(&body);
                if let (Some(n), Some(sent)) = (
                    number_after(&text, "\"n\":"),
                    number_after(&text, "\"sent\":"),
                ) {
                    got.lock().unwrap().push((n, at.saturating_sub(sent)));
                }
                if out
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

fn report(name: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    let ms = |p: f64| common::percentile(&ns, p).map_or(f64::NAN, |v| v as f64 / 1e6);
    let max = ms(100.0);
    println!(
        "{name}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms p99.9={:.2} ms max={max:.2} ms",
        ns.len(),
        ms(50.0),
        ms(90.0),
        ms(99.0),
        ms(99.9),
    );
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn main() {
    let args = common::bench_args();
    if args.is_empty() {
        // `cargo test --benches`: no daemon; check the body parsing.
        let body = r#"{"events":{"event":[{"type":"probe","ts":5,"n": 42,"sent":917}]}}"#;
        assert_eq!(number_after(body, "\"n\":"), Some(42));
        assert_eq!(number_after(body, "\"sent\":"), Some(917));
        assert_eq!(number_after(body, "\"missing\":"), None);
        println!("probe: self-check ok");
        return;
    }
    let usage = || -> ! {
        eprintln!("usage: probe HOOK_PORT DAEMON_PORT RATE SECONDS [--isolated]");
        std::process::exit(2)
    };
    if args.len() < 4 {
        usage();
    }
    let hook_port: u16 = args[0].parse().unwrap_or_else(|_| usage());
    let daemon_port: u16 = args[1].parse().unwrap_or_else(|_| usage());
    let rate: f64 = args[2].parse().unwrap_or_else(|_| usage());
    let seconds: f64 = args[3].parse().unwrap_or_else(|_| usage());
    let isolated = args.iter().any(|a| a == "--isolated");

    let base = Instant::now();
    let got: Received = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", hook_port)).unwrap_or_else(|e| {
        eprintln!("probe: cannot listen on 127.0.0.1:{hook_port}: {e}");
        std::process::exit(1)
    });
    {
        let got = got.clone();
        std::thread::spawn(move || receive(listener, base, got));
    }
    let stream = TcpStream::connect(("127.0.0.1", daemon_port)).unwrap_or_else(|e| {
        eprintln!("probe: cannot connect to 127.0.0.1:{daemon_port}: {e}");
        std::process::exit(1)
    });
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone().expect("clone the connection");
    let mut answers = BufReader::new(stream);

    let total = (seconds * rate) as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut acks = Vec::with_capacity(total as usize);
    let mut statuses: Vec<(String, u64)> = Vec::new();
    let mut last_ts = 0;
    for n in 0..total {
        let due = start + period.mul_f64(n as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // Strictly after the previous request's events, or the probe would
        // be late when the sender catches up.
        let ts = wall_ms().max(last_ts + 1);
        last_ts = ts + 1;
        let sent = base.elapsed().as_nanos() as u64;
        let mut body = format!("{{\"type\":\"probe\",\"ts\":{ts},\"n\":{n},\"sent\":{sent}}}\n");
        if !isolated {
            body.push_str(&format!("{{\"type\":\"tick\",\"ts\":{}}}\n", ts + 1));
        }
        let request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if let Err(e) = out.write_all(request.as_bytes()) {
            eprintln!("probe: send failed: {e}");
            std::process::exit(1);
        }
        let Ok(Some((head, _))) = common::read_message(&mut answers) else {
            eprintln!("probe: the daemon closed the connection");
            std::process::exit(1);
        };
        acks.push(base.elapsed().as_nanos() as u64 - sent);
        let status = head.split_whitespace().nth(1).unwrap_or("?").to_string();
        match statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, c)) => *c += 1,
            None => statuses.push((status, 1)),
        }
    }
    std::thread::sleep(Duration::from_secs(3)); // the last alerts
    let alerts: Vec<u64> = got.lock().unwrap().iter().map(|&(_, ns)| ns).collect();
    println!(
        "probes: {total} at {rate}/s for {seconds}s, answers {statuses:?}, alerts received: {}",
        alerts.len()
    );
    report("ingest-to-alert", alerts);
    report("probe ack", acks);
}
