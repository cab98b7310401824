//! Decoding throughput: tocsin's `Decoder` (serde_json) against sonic-rs on
//! the same lines. Settles "serde_json vs sonic-rs for the hot path".
//!
//!     cargo bench --bench decode -- --warm-up-time 1 --measurement-time 3 --sample-size 20
//!
//! Per input kind (auth ~150 bytes, http ~430 bytes with nested objects;
//! 1000 distinct lines each, the same bytes as benches/gen_events.py):
//!
//! - `tocsin_decoder`: `Decoder::decode`, what replay, the daemon and the
//!   benches in engine.rs do per line (UTF-8 check, trim, parse into
//!   `serde_json::Value` with tocsin's features `preserve_order` and
//!   `float_roundtrip`, type and time extraction, `raw` copy).
//! - `serde_json_value`: only `serde_json::from_str::<serde_json::Value>`.
//! - `sonic_rs_value`: `sonic_rs::from_str::<sonic_rs::Value>`, the same
//!   whole-event parse into sonic-rs's own value type.
//! - `sonic_rs_value_type_ts`: the same plus reading `type` and `ts`, i.e.
//!   the work the decoder needs beyond the parse.
//! - `sonic_rs_to_serde_value`: sonic-rs's deserializer building a
//!   `serde_json::Value`: the drop-in swap that would keep the engine
//!   (written against `serde_json::Value`) unchanged.
//! - `sonic_rs_lazy_type_ts`: `sonic_rs::get` of `type` and `ts` only, no
//!   tree (an upper bound for a lazy design).
//! - `serde_json_validate_only`: `serde_json::from_str::<IgnoredAny>`: the
//!   parse without building anything (serde_json's floor).
//! - `sonic_rs_projection`: `sonic_rs::get_many` of `type`, `ts` and the
//!   fields the shipped rules read from that stream, each turned into a
//!   `serde_json::Value`: a "decode only what the rules use" design.
//!
//! sonic-rs only uses its SIMD paths when built with AVX2 and PCLMULQDQ
//! enabled (`RUSTFLAGS="-C target-cpu=native"` or `-C target-cpu=x86-64-v3`);
//! docs/performance.md gives both builds.

/// The same allocator as the `tocsin` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sonic_rs::JsonValueTrait;
use tocsin::decode::{Decoded, Decoder};

use common::{Scenario, lines};

/// Fields the shipped rules (rules/*.rules) read from each stream.
fn projection(kind: &str) -> sonic_rs::PointerTree {
    let fields: &[&str] = match kind {
        "auth" => &["type", "ts", "user", "outcome", "ip", "method"],
        _ => &[
            "type",
            "ts",
            "service",
            "path",
            "status",
            "latency_ms",
            "bytes",
            "client_ip",
            "session",
        ],
    };
    let mut tree = sonic_rs::PointerTree::new();
    for f in fields {
        tree.add_path([*f]);
    }
    tree
}

fn inputs() -> Vec<(&'static str, Vec<String>)> {
    let n = if common::full_run() { 1000 } else { 20 };
    // auth: the generator's auth mix over 100k users.
    let auth = lines(Scenario::Auth { users: 100_000 }, 10, 42, n);
    let http = lines(Scenario::Http { clients: 10_000 }, 10, 42, n);
    vec![("auth", auth), ("http", http)]
}

fn bench(c: &mut Criterion) {
    let decoder = Decoder::default();
    for (kind, lines) in inputs() {
        let bytes: usize = lines.iter().map(String::len).sum();
        let mut g = c.benchmark_group(format!("decode/{kind}"));
        g.throughput(Throughput::Elements(lines.len() as u64));
        eprintln!(
            "decode/{kind}: {} lines, mean {} bytes",
            lines.len(),
            bytes / lines.len().max(1)
        );

        g.bench_function("tocsin_decoder", |b| {
            b.iter(|| {
                for l in &lines {
                    match decoder.decode(black_box(l.as_bytes()), None) {
                        Decoded::Event(e) => {
                            black_box(e);
                        }
                        other => panic!("{other:?}"),
                    }
                }
            })
        });
        g.bench_function("serde_json_value", |b| {
            b.iter(|| {
                for l in &lines {
                    let v: serde_json::Value =
                        serde_json::from_str(black_box(l.as_str())).expect("json");
                    black_box(v);
                }
            })
        });
        g.bench_function("sonic_rs_value", |b| {
            b.iter(|| {
                for l in &lines {
                    let v: sonic_rs::Value =
                        sonic_rs::from_str(black_box(l.as_str())).expect("json");
                    black_box(v);
                }
            })
        });
        g.bench_function("sonic_rs_value_type_ts", |b| {
            b.iter(|| {
                for l in &lines {
                    let v: sonic_rs::Value =
                        sonic_rs::from_str(black_box(l.as_str())).expect("json");
                    let ty = v.get("type").and_then(|t| t.as_str()).map(str::to_owned);
                    let ts = v
                        .get("ts")
                        .map(|t| t.as_i64().is_some() || t.as_str().is_some());
                    black_box((v, ty, ts));
                }
            })
        });
        g.bench_function("sonic_rs_to_serde_value", |b| {
            b.iter(|| {
                for l in &lines {
                    let v: serde_json::Value =
                        sonic_rs::from_str(black_box(l.as_str())).expect("json");
                    black_box(v);
                }
            })
        });
        g.bench_function("sonic_rs_lazy_type_ts", |b| {
            b.iter(|| {
                for l in &lines {
                    let s = black_box(l.as_str());
                    let ty = sonic_rs::get(s, &["type"]).expect("type");
                    let ts = sonic_rs::get(s, &["ts"]).expect("ts");
                    black_box((ty.as_raw_str().len(), ts.as_raw_str().len()));
                }
            })
        });
        g.bench_function("serde_json_validate_only", |b| {
            b.iter(|| {
                for l in &lines {
                    let v: serde::de::IgnoredAny =
                        serde_json::from_str(black_box(l.as_str())).expect("json");
                    black_box(v);
                }
            })
        });
        let tree = projection(kind);
        g.bench_function("sonic_rs_projection", |b| {
            b.iter(|| {
                for l in &lines {
                    let found = sonic_rs::get_many(black_box(l.as_str()), &tree).expect("json");
                    let vals: Vec<Option<serde_json::Value>> = found
                        .iter()
                        .map(|f| {
                            f.as_ref()
                                .map(|lv| serde_json::from_str(lv.as_raw_str()).expect("value"))
                        })
                        .collect();
                    black_box(vals);
                }
            })
        });
        g.finish();
    }
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
