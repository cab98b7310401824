//! Engine throughput: events/s through `Pipeline` (sequencer → engine →
//! alert stage) for each rule kind, and for the shipped `rules/` directory.
//!
//!     cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3 --sample-size 20
//!
//! Each benchmark keeps one pipeline for its whole run and feeds it batches
//! of events whose times keep increasing (10 ms apart), so state is in
//! steady state: windows full, keys expiring as fast as they appear. The
//! state is pre-filled with one window's worth of events before measuring.
//!
//! - `<kind>/predecoded`: the batch is decoded outside the timed section;
//!   timed: `Pipeline::push` of each event (and dropping the alerts).
//! - `<kind>/with_decode`: timed: `Decoder::decode` of each line, then
//!   `push`: what `tocsin replay` does per line minus reading and writing.
//!
//! After each kind, the live keys per rule (`tocsin_rule_keys`) are printed
//! on stderr.

/// The same allocator as the `tocsin` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tocsin::decode::Decoder;
use tocsin::event::Event;
use tocsin::lang::Program;
use tocsin::pipeline::Pipeline;

use common::{Gen, Scenario, decode, program};

// The rule files are shared with the end-to-end figures
// (`tocsin replay --rules benches/rules/<kind>.rules`).
const FILTER: &str = include_str!("rules/filter.rules");
const FILTER_BUSY: &str = include_str!("rules/filter-busy.rules");
const SLIDING: &str = include_str!("rules/sliding.rules");
const TUMBLING: &str = include_str!("rules/tumbling.rules");
const ABSENCE: &str = include_str!("rules/absence.rules");
const SEQUENCE: &str = include_str!("rules/sequence.rules");
const TRAILING: &str = include_str!("rules/trailing-not.rules");

struct Case {
    name: &'static str,
    rules: Option<&'static str>,
    scenario: Scenario,
    /// Events to pre-fill the state with (about one window).
    prefill: usize,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "filter",
            rules: Some(FILTER),
            scenario: Scenario::Auth { users: 100_000 },
            prefill: 0,
        },
        Case {
            name: "filter_11pct_match",
            rules: Some(FILTER_BUSY),
            scenario: Scenario::Auth { users: 100_000 },
            prefill: 0,
        },
        Case {
            name: "sliding_10k_keys",
            rules: Some(SLIDING),
            scenario: Scenario::Http { clients: 10_000 },
            prefill: 7_000,
        },
        Case {
            name: "sliding_10_keys",
            rules: Some(SLIDING),
            scenario: Scenario::Http { clients: 10 },
            prefill: 7_000,
        },
        Case {
            name: "tumbling",
            rules: Some(TUMBLING),
            scenario: Scenario::Http { clients: 10_000 },
            prefill: 30_000,
        },
        Case {
            name: "absence",
            rules: Some(ABSENCE),
            scenario: Scenario::Heartbeat { hosts: 10_000 },
            prefill: 20_000,
        },
        Case {
            name: "sequence_quantified",
            rules: Some(SEQUENCE),
            scenario: Scenario::Auth { users: 100_000 },
            prefill: 31_000,
        },
        Case {
            name: "sequence_trailing_not",
            rules: Some(TRAILING),
            scenario: Scenario::Orders,
            prefill: 120_000,
        },
        Case {
            name: "shipped_rules_mixed",
            rules: None,
            scenario: Scenario::Mixed,
            prefill: 60_000,
        },
    ]
}

fn load(case: &Case) -> Program {
    match case.rules {
        Some(text) => program(text),
        None => common::shipped_rules(),
    }
}

fn bench(c: &mut Criterion) {
    let full = common::full_run();
    let batch = if full { 10_000 } else { 200 };
    let decoder = Decoder::default();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(batch as u64));
    for case in cases() {
        let prog = load(&case);
        for with_decode in [false, true] {
            let mut gen_ = Gen::new(case.scenario, 10, 42);
            let mut pipeline = Pipeline::new(&prog, 0);
            let mut alerts = Vec::new();
            let mut pushed = 0u64;
            let mut produced = 0u64;
            if full {
                for _ in 0..case.prefill {
                    let ev = decode(&decoder, &gen_.next_line());
                    let _ = pipeline.push(ev, &mut alerts);
                    alerts.clear();
                }
            }
            let variant = if with_decode {
                "with_decode"
            } else {
                "predecoded"
            };
            group.bench_function(BenchmarkId::new(case.name, variant), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let lines: Vec<String> = (0..batch).map(|_| gen_.next_line()).collect();
                        if with_decode {
                            let t = Instant::now();
                            for l in &lines {
                                let ev = decode(&decoder, l);
                                let _ = pipeline.push(ev, &mut alerts);
                                produced += alerts.len() as u64;
                                alerts.clear();
                            }
                            total += t.elapsed();
                        } else {
                            let evs: Vec<Event> =
                                lines.iter().map(|l| decode(&decoder, l)).collect();
                            drop(lines);
                            let t = Instant::now();
                            for ev in evs {
                                let _ = pipeline.push(ev, &mut alerts);
                                produced += alerts.len() as u64;
                                alerts.clear();
                            }
                            total += t.elapsed();
                        }
                        pushed += batch as u64;
                    }
                    total
                })
            });
            if !with_decode {
                let keys = pipeline.key_counts();
                let names: Vec<&str> = pipeline.rules().iter().map(|r| r.name.as_str()).collect();
                eprintln!(
                    "engine/{}: {} events measured, {} alerts ({:.3} per event), live keys {:?}",
                    case.name,
                    pushed,
                    produced,
                    produced as f64 / pushed.max(1) as f64,
                    names.iter().zip(&keys).collect::<Vec<_>>()
                );
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
