//! Memory per live key, and proof that keys that can no longer fire are
//! freed. Not a criterion bench: it prints a table.
//!
//!     cargo bench --bench memory            # 1,000,000 distinct keys per rule
//!     TOCSIN_MEM_KEYS=100000 cargo bench --bench memory
//!
//! For each rule kind, a child process (so that one case's freed memory
//! does not blur the next) loads one rule, pushes N events through a
//! `Pipeline`, each with a new key, 1 ms apart (so with windows of 1 h every
//! key is still live at the end), then one event two days later (a "flush"
//! of a stream no rule reads, which only moves the watermark). It reports
//! the live keys (`Engine::key_counts`, what `tocsin_rule_keys` exports) and
//! the RSS (after `malloc_trim`) at three points: after loading, after the
//! N events, after the flush. Under `cargo test --benches` N is 2000.
//!
//! This binary keeps the system allocator (glibc), not the `tocsin`
//! binary's mimalloc, so that `malloc_trim` makes RSS show live memory; the
//! `tocsin replay` peak-RSS figures in docs/performance.md are the
//! mimalloc counterpart.

#[path = "common/mod.rs"]
mod common;

use std::process::Command;

use tocsin::decode::Decoder;
use tocsin::pipeline::Pipeline;

use common::{Rng, T0, auth_event, decode, heartbeat_event, program, rfc3339, rss_bytes};

unsafe extern "C" {
    /// glibc: give free heap memory back to the kernel, so that RSS shows
    /// what is live rather than what was ever allocated.
    fn malloc_trim(pad: usize) -> i32;
}

fn trimmed_rss() -> u64 {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        malloc_trim(0);
    }
    rss_bytes()
}

/// (name, stream read, rule text); the files are shared with the
/// `tocsin replay` memory figures in docs/performance.md.
const CASES: &[(&str, &str, &str)] = &[
    ("baseline", "auth", include_str!("rules/mem/baseline.rules")),
    ("sliding", "auth", include_str!("rules/mem/sliding.rules")),
    ("session", "auth", include_str!("rules/mem/session.rules")),
    (
        "absence",
        "heartbeat",
        include_str!("rules/mem/absence.rules"),
    ),
    ("sequence", "auth", include_str!("rules/mem/sequence.rules")),
    (
        "sequence_trailing_not",
        "auth",
        include_str!("rules/mem/trailing-not.rules"),
    ),
];

fn run_case(name: &str, n: u64) {
    let (_, stream, text) = CASES
        .iter()
        .find(|c| c.0 == name)
        .copied()
        .expect("known case");
    let prog = program(text);
    let decoder = Decoder::default();
    let mut p = Pipeline::new(&prog, 0);
    let mut alerts = Vec::new();
    let mut rng = Rng::new(42);
    let rss0 = trimmed_rss();
    let mut last = T0;
    let mut produced = 0usize;
    for i in 0..n {
        last = T0 + 1 + i as i64;
        let line = if stream == "heartbeat" {
            heartbeat_event(last, i, "prod")
        } else {
            auth_event(last, &format!("user-{i:07}"), "failure", &mut rng)
        };
        let _ = p.push(decode(&decoder, &line), &mut alerts);
        produced += alerts.len();
        alerts.clear();
    }
    let keys1: usize = p.key_counts().iter().sum();
    let rss1 = trimmed_rss();
    let flush = format!(
        r#"{{"type":"flush","ts":"{}"}}"#,
        rfc3339(last + 2 * 86_400_000)
    );
    let _ = p.push(decode(&decoder, &flush), &mut alerts);
    produced += alerts.len();
    alerts.clear();
    alerts.shrink_to_fit();
    let keys2: usize = p.key_counts().iter().sum();
    let rss2 = trimmed_rss();
    // The last event is still held by the sequencer (released by the next
    // one), so `keys1` is N - 1 for the stateful rules.
    let per_key = (rss1 as f64 - rss0 as f64) / if keys1 > 0 { keys1 as f64 } else { n as f64 };
    println!(
        "{name:<22} N={n:>8}  keys_live={keys1:>8}  rss_loaded={:>7.1}MiB  rss_live={:>8.1}MiB  \
         bytes_per_key={per_key:>6.0}  after_flush: keys_live={keys2:>8} rss={:>7.1}MiB  alerts={produced}",
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        rss2 as f64 / 1048576.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = std::env::var("TOCSIN_MEM_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if common::full_run() { 1_000_000 } else { 2_000 });
    if let Some(i) = args.iter().position(|a| a == "--case") {
        run_case(&args[i + 1], n);
        return;
    }
    // Under `cargo bench` criterion-style filters may follow; ignore them.
    let exe = std::env::current_exe().expect("current exe");
    for (name, _, _) in CASES {
        let status = Command::new(&exe)
            .arg("--case")
            .arg(name)
            .env("TOCSIN_MEM_KEYS", n.to_string())
            .status()
            .expect("spawn case");
        assert!(status.success(), "case {name} failed");
    }
}
