//! The engine can share the rules out among parts that run side by side
//! (`Pipeline::with_parts`, the daemon's `engine.threads`). Whatever the
//! number of parts, and whether they run on threads, the alerts and their
//! order (rule-language.md 2.3: by step, then rule order, then key order)
//! and every counter must be those of one engine: checked on random
//! streams over all rule kinds, on every conformance case, across a
//! checkpoint taken with one part count and restored into another, and
//! across a reload.

mod common;

use proptest::prelude::*;
use tocsin::alert::Alert;
use tocsin::decode::{Decoded, Decoder};
use tocsin::event::Event;
use tocsin::lang::{Options, Program, load_texts};
use tocsin::pipeline::Pipeline;

/// Every rule kind, several rules per stream, timers at shared instants:
/// the determinism test's rules and three more.
fn rules() -> String {
    format!(
        "{}{}",
        common::ALL_KINDS,
        r#"
rule tumble { key u from * where type != "c" window tumbling 1s when count() >= 2 }
rule gone_a { key u from a absent 1s }
rule any { from * where v == 7 }
"#
    )
}

const MAX_DELAY: i64 = 500;

fn program(text: &str) -> Program {
    let loaded = load_texts(vec![("r.rules".into(), text.into())], &Options::default());
    assert!(!loaded.has_errors(), "{}", loaded.render());
    loaded.program
}

fn decode(lines: &[String]) -> Vec<Event> {
    let dec = Decoder::default();
    lines
        .iter()
        .filter_map(|l| match dec.decode(l.as_bytes(), None) {
            Decoded::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// How a pipeline is built: parts, and whether they run on threads.
#[derive(Clone, Copy, Debug)]
struct Shape {
    parts: usize,
    threads: bool,
}

const ONE: Shape = Shape {
    parts: 1,
    threads: false,
};

/// Every other shape checked against one part.
const SHAPES: [Shape; 4] = [
    Shape {
        parts: 2,
        threads: true,
    },
    Shape {
        parts: 3,
        threads: false,
    },
    Shape {
        parts: 4,
        threads: true,
    },
    // More parts than rules: one rule each.
    Shape {
        parts: 64,
        threads: false,
    },
];

fn pipeline(program: &Program, max_delay: i64, shape: Shape) -> Pipeline {
    let mut p = Pipeline::with_parts(program, max_delay, shape.parts, shape.threads);
    // Every step on the helper threads, however few its events.
    p.parallel_from(0);
    p
}

/// What a run shows: alerts in order, then per-rule counters and keys.
fn observe(p: &Pipeline, alerts: &[Alert]) -> Vec<String> {
    let mut seen: Vec<String> = alerts.iter().map(Alert::to_json).collect();
    let stage = p.stage_stats();
    for (i, (s, keys)) in p.rule_stats().iter().zip(p.key_counts()).enumerate() {
        seen.push(format!(
            "rule {i}: matches {} missing {} keys {keys} alerts {:?} throttled {}",
            s.matches, s.key_missing, stage.alerts[i], stage.throttled[i]
        ));
    }
    seen.push(format!("late {}", p.late()));
    seen
}

/// Feeds events one by one (`push`), or in batches offered then drained
/// once, as the daemon does.
fn run(
    program: &Program,
    max_delay: i64,
    events: &[Event],
    shape: Shape,
    batch: usize,
) -> Vec<String> {
    let mut p = pipeline(program, max_delay, shape);
    let mut out = Vec::new();
    for chunk in events.chunks(batch.max(1)) {
        for ev in chunk {
            let _ = p.offer(ev.clone(), None);
        }
        p.drain(&mut out);
    }
    p.finish(&mut out);
    observe(&p, &out)
}

/// (time step, stream, user, v)
fn stream() -> impl Strategy<Value = Vec<(i64, u8, u8, u8)>> {
    prop::collection::vec((0i64..60, 0u8..3, 0u8..4, 0u8..10), 1..150)
}

fn lines(spec: &[(i64, u8, u8, u8)]) -> Vec<String> {
    let mut t = 0i64;
    spec.iter()
        .map(|&(dt, s, u, v)| {
            t += dt * 25; // ties, and timers sharing instants with events
            let stream = ["a", "b", "c"][s as usize];
            format!("{{\"type\":\"{stream}\",\"ts\":{t},\"u\":\"u{u}\",\"v\":{v}}}")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn parts_give_the_alerts_and_counters_of_one_engine(spec in stream(), batch in 1usize..40) {
        let program = program(&rules());
        let events = decode(&lines(&spec));
        let one = run(&program, MAX_DELAY, &events, ONE, 1);
        for shape in SHAPES {
            prop_assert_eq!(&run(&program, MAX_DELAY, &events, shape, batch), &one, "{:?}", shape);
        }
    }
}

/// A fixed stream: event `i` has time step `i*a % 4`, stream `i*b % 3`,
/// user `i % c`, value `i*d % 10`.
fn fixed(n: usize, [a, b, c, d]: [usize; 4]) -> Vec<Event> {
    let spec: Vec<(i64, u8, u8, u8)> = (0..n)
        .map(|i| {
            (
                (i * a % 4) as i64,
                (i * b % 3) as u8,
                (i % c) as u8,
                (i * d % 10) as u8,
            )
        })
        .collect();
    decode(&lines(&spec))
}

/// The property above is not vacuous: every rule fires on a fixed stream,
/// and the parts really split the rules.
#[test]
fn every_rule_fires_and_parts_share_the_rules() {
    let spec: Vec<(i64, u8, u8, u8)> = (0..400)
        .map(|i| {
            (
                (i * 7 % 5) as i64,
                (i % 3) as u8,
                (i % 4) as u8,
                (i * 3 % 10) as u8,
            )
        })
        .collect();
    let program = program(&rules());
    let events = decode(&lines(&spec));
    let one = run(&program, MAX_DELAY, &events, ONE, 1);
    for rule in [
        "f", "slide", "hop", "tumble", "sess", "gone", "gone_a", "seq", "trail", "any",
    ] {
        assert!(
            one.iter()
                .any(|a| a.contains(&format!("\"rule\":\"{rule}\""))),
            "rule {rule} never fired"
        );
    }
    for shape in SHAPES {
        assert_eq!(
            run(&program, MAX_DELAY, &events, shape, 17),
            one,
            "{shape:?}"
        );
        let p = pipeline(&program, MAX_DELAY, shape);
        assert_eq!(p.parts(), shape.parts.min(10));
    }
}

/// A checkpoint taken with one part count restores into another, and the
/// run goes on as if never interrupted.
#[test]
fn checkpoints_move_between_part_counts() {
    let program = program(&rules());
    let events = fixed(600, [11, 5, 5, 7]);
    let whole = run(&program, MAX_DELAY, &events, ONE, 1);
    let (head, tail) = events.split_at(events.len() / 2);
    for (before, after) in [(ONE, SHAPES[0]), (SHAPES[0], ONE), (SHAPES[1], SHAPES[2])] {
        let mut p = pipeline(&program, MAX_DELAY, before);
        let mut out = Vec::new();
        for ev in head {
            let _ = p.push(ev.clone(), &mut out);
        }
        let snap = p.snapshot();
        drop(p);
        let mut q = pipeline(&program, MAX_DELAY, after);
        assert_eq!(q.restore(&snap).len(), 10, "every rule restored");
        for ev in tail {
            let _ = q.push(ev.clone(), &mut out);
        }
        q.finish(&mut out);
        assert_eq!(observe(&q, &out), whole, "{before:?} then {after:?}");
    }
}

/// A reload keeps the state of unchanged rules wherever they run: rules
/// removed, added and kept in between give the same alerts in every shape.
#[test]
fn reload_keeps_state_in_every_shape() {
    let first = program(&rules());
    // `slide`, `hop` and `seq` go; two new rules come first; the rest stay.
    let second = program(&format!(
        "rule new_a {{ key u from a where v < 2 }}\nrule new_w {{ key u from b window sliding 1s when count() >= 2 }}\n{}",
        rules()
            .replace("rule slide {", "rule slide2 {")
            .replace("rule hop {", "rule hop2 {")
            .replace("rule seq {", "rule seq2 {")
    ));
    let events = fixed(500, [3, 7, 3, 9]);
    let (head, tail) = events.split_at(events.len() / 2);
    let go = |shape: Shape| {
        let mut p = pipeline(&first, MAX_DELAY, shape);
        let mut out = Vec::new();
        for ev in head {
            let _ = p.push(ev.clone(), &mut out);
        }
        p.reload(&second);
        for ev in tail {
            let _ = p.push(ev.clone(), &mut out);
        }
        p.finish(&mut out);
        observe(&p, &out)
    };
    let one = go(ONE);
    assert!(one.iter().any(|a| a.contains("\"rule\":\"new_w\"")));
    for shape in SHAPES {
        assert_eq!(go(shape), one, "{shape:?}");
    }
}

/// Every conformance case, in every shape.
#[test]
fn conformance_cases_in_every_shape() {
    let mut several = 0;
    for case in common::conformance_cases() {
        let one = run(&case.program, case.max_delay, &case.events, ONE, 1);
        for shape in SHAPES {
            assert_eq!(
                run(&case.program, case.max_delay, &case.events, shape, 3),
                one,
                "{} in {shape:?}",
                case.dir.display()
            );
        }
        several += usize::from(case.program.rules.len() > 1);
    }
    assert!(several >= 5, "only {several} cases have several rules");
}
