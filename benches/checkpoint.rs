//! What a checkpoint costs, by step, for the shipped rules holding the state
//! of a stream of mixed events:
//!
//!     cargo bench --bench checkpoint
//!     TOCSIN_CKPT_EVENTS=2000000 cargo bench --bench checkpoint
//!     TOCSIN_CKPT_PROFILE_TAKE=30 perf record -g target/release/deps/checkpoint-* --bench
//!
//! - `take`: `Pipeline::snapshot_unsorted`, the part the engine thread waits
//!   for in the daemon (it shares held events, copies everything else);
//! - `sort`: putting each rule's keys in order (the checkpoint thread);
//! - `encode`: the JSON body (`serde_json::to_vec`);
//! - `checksum`: the body's CRC-32 (format 3) and, for comparison, the
//!   SHA-256 that formats 1 and 2 had;
//! - `parse`: reading a checkpoint file's bytes back (`checkpoint::parse`);
//! - `restore`: putting the state into a fresh pipeline.
//!
//! Not a criterion bench: each step on a state of this size takes long
//! enough to time directly; the median of five runs is printed. Under
//! `cargo test --benches` the state is small and each step runs once.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tocsin::checkpoint::{self, Checkpoint};
use tocsin::decode::Decoder;
use tocsin::pipeline::Pipeline;

use common::{Gen, Scenario, decode, shipped_rules};

/// The median time of `runs` runs of `f`.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let full = common::full_run();
    let events: usize = std::env::var("TOCSIN_CKPT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 5_000 });
    let runs = if full { 5 } else { 1 };

    let program = shipped_rules();
    let decoder = Decoder::default();
    let mut pipeline = Pipeline::new(&program, 2_000);
    let mut lines = Gen::new(Scenario::Mixed, 1, 42);
    let mut alerts = Vec::new();
    for _ in 0..events {
        let _ = pipeline.push(decode(&decoder, &lines.next_line()), &mut alerts);
        alerts.clear();
    }
    let keys: usize = pipeline.key_counts().iter().sum();
    println!("checkpoint: {events} mixed events, shipped rules, {keys} live keys");

    // For profiling the engine thread's part alone:
    // TOCSIN_CKPT_PROFILE_TAKE=20 perf record … (takes 20 more snapshots).
    let extra: usize = std::env::var("TOCSIN_CKPT_PROFILE_TAKE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..extra {
        black_box(pipeline.snapshot_unsorted());
    }
    let take = time(runs, || pipeline.snapshot_unsorted());
    // The sort alone, each time on a fresh snapshot.
    let sort_only = {
        let mut best = Vec::new();
        for _ in 0..runs {
            let mut s = pipeline.snapshot_unsorted();
            let start = Instant::now();
            s.engine.sort_keys();
            best.push(start.elapsed());
            drop(s);
        }
        best.sort();
        best[best.len() / 2]
    };
    let cp = Checkpoint {
        lsn: 1,
        written_at: 0,
        pipeline: pipeline.snapshot(),
        rules: Some(program.texts.to_vec()),
        file_offsets: Vec::new(),
        idempotency: Vec::new(),
    };
    let encode = time(runs, || serde_json::to_vec(&cp).expect("encodes"));
    let body = serde_json::to_vec(&cp).expect("encodes");
    let crc = time(runs, || crc32fast::hash(&body));
    let sha = time(runs, || Sha256::digest(&body));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = checkpoint::write(dir.path(), &cp).expect("writes");
    let bytes = std::fs::read(&path).expect("reads");
    let parse = time(runs, || {
        checkpoint::parse(&path, &bytes)
            .expect("parses")
            .expect("intact")
    });
    let read = checkpoint::parse(&path, &bytes)
        .expect("parses")
        .expect("intact");
    let restore = time(runs, || {
        let mut p = Pipeline::new(&program, 2_000);
        let restored = p.restore(&read.pipeline);
        assert_eq!(restored.len(), program.rules.len(), "every rule restored");
        p
    });

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_key = |d: Duration| d.as_secs_f64() * 1e9 / keys.max(1) as f64;
    println!("body: {:.1} MB", bytes.len() as f64 / 1e6);
    println!("| step | ms | ns per live key |");
    println!("|---|---|---|");
    for (name, d) in [
        ("take (engine thread)", take),
        ("sort keys", sort_only),
        ("encode JSON", encode),
        ("CRC-32 (format 3)", crc),
        ("SHA-256 (formats 1, 2)", sha),
        ("parse file", parse),
        ("restore", restore),
    ] {
        println!("| {name} | {:.1} | {:.0} |", ms(d), per_key(d));
    }
}
