//! Keyed state is freed as soon as nothing pending can use it: many
//! distinct keys pass through each windowed rule kind, and once their
//! windows and `within` bounds have passed, no key is left.

use tocsin::alert::Alert;
use tocsin::decode::{Decoded, Decoder};
use tocsin::lang::{Options, load_texts};
use tocsin::pipeline::Pipeline;

/// A pipeline over `rules` (which must load), with max-delay 0.
fn pipeline(rules: &str) -> Pipeline {
    let loaded = load_texts(vec![("r.rules".into(), rules.into())], &Options::default());
    assert!(!loaded.has_errors(), "{}", loaded.render());
    Pipeline::new(&loaded.program, 0)
}

/// Decodes one event line (which must be valid) and offers it.
fn push(p: &mut Pipeline, line: &str, alerts: &mut Vec<Alert>) {
    let Decoded::Event(ev) = Decoder::default().decode(line.as_bytes(), None) else {
        panic!("decodes: {line}");
    };
    p.push(ev, alerts).unwrap();
}

const RULES: &str = r#"
rule sliding { key u from a window sliding 10s when count() >= 3 }
rule hopping { key u from a window hopping 10s every 5s when count() >= 3 }
rule session { key u from a window session 5s when count() >= 3 }
rule seq {
    key u
    sequence within 30s {
        x: a where v == 1
        y: b
    }
}
rule trailing {
    key u
    sequence within 20s {
        x: a
        not y: b
    }
}
rule gone { key u from a absent 1m }
"#;

#[test]
fn every_windowed_key_is_dropped_once_it_can_no_longer_fire() {
    let mut p = pipeline(RULES);
    let mut alerts = Vec::new();
    let keys = 20_000;
    for i in 0..keys {
        let line = format!(
            "{{\"type\":\"a\",\"ts\":{},\"u\":\"user{i}\",\"v\":{}}}",
            i,
            i % 2
        );
        push(&mut p, &line, &mut alerts);
    }
    let counts = p.key_counts();
    let names: Vec<String> = p.rules().iter().map(|r| r.name.clone()).collect();
    // While the windows are open, every key is live.
    for (n, c) in names.iter().zip(&counts) {
        // Events span 20s; windows of 5s-30s: a good share of keys is live.
        assert!(
            *c >= keys / 4,
            "{n}: only {c} live keys before the windows pass"
        );
    }
    // Time moves on (one unrelated event an hour later releases the rest).
    push(&mut p, r#"{"type":"zzz","ts":3600000}"#, &mut alerts);
    push(&mut p, r#"{"type":"zzz","ts":3600001}"#, &mut alerts);
    let after = p.key_counts();
    for (n, c) in names.iter().zip(&after) {
        if *n == "gone" {
            // Absence keys that fired are kept until they resolve (spec 7).
            assert_eq!(*c, keys, "absence keys stay until resolved");
        } else {
            assert_eq!(*c, 0, "{n}: {c} keys left after their windows passed");
        }
    }
    // One event per key: only the absence rule and the trailing negation
    // (an `a` never followed by a `b`) can fire, once per key each.
    let by = |rule: &str| alerts.iter().filter(|a| a.rule.name == rule).count();
    assert_eq!(by("gone"), keys);
    assert_eq!(by("trailing"), keys);
    assert_eq!(alerts.len(), 2 * keys);
}

/// A hot key holds one pending timer per rule, not one per event: sliding,
/// session and absence timers re-arm themselves, hopping windows arm one per
/// window.
#[test]
fn a_hot_key_keeps_one_timer_per_rule() {
    let rules = r#"
rule sliding { key u from a window sliding 10s when count() >= 1000000 }
rule session { key u from a window session 5s when count() >= 1000000 }
rule gone { key u from a absent 1m }
rule hopping { key u from a window hopping 10s every 5s when count() >= 1000000 }
"#;
    let mut p = pipeline(rules);
    let mut alerts = Vec::new();
    // 2,000 events of one key, 1 ms apart (all inside every window).
    for i in 0..2_000 {
        let line = format!("{{\"type\":\"a\",\"ts\":{i},\"u\":\"hot\"}}");
        push(&mut p, &line, &mut alerts);
    }
    // sliding 1 + session 1 + absence 1 + hopping: windows [-5s,5s) and
    // [0s,10s) hold the events.
    assert_eq!(p.pending_timers(), 5);
    assert!(alerts.is_empty());
}

/// An event that no step of a sequence can use (right stream, but failing a
/// condition that reads no earlier step) is not buffered and makes no key.
#[test]
fn events_no_sequence_step_can_use_make_no_key() {
    let rules = r#"
rule seq {
    key u
    sequence within 1h {
        x: a where v == 1
        not n: a where v == 2
        y: b where exists(ok)
    }
}
"#;
    let mut p = pipeline(rules);
    let mut alerts = Vec::new();
    for i in 0..1_000 {
        // v == 0 fits no step; a `b` without `ok` neither.
        let line = if i % 2 == 0 {
            format!("{{\"type\":\"a\",\"ts\":{i},\"u\":\"u{i}\",\"v\":0}}")
        } else {
            format!("{{\"type\":\"b\",\"ts\":{i},\"u\":\"u{i}\"}}")
        };
        push(&mut p, &line, &mut alerts);
    }
    assert_eq!(p.key_counts(), vec![0]);
    // Events that a step can use do make keys (the negated step's too).
    // (The event of another stream at the end releases the two before it.)
    for (i, v) in [(2_000, 1), (2_001, 2), (3_000, 0)] {
        let t = if v == 0 { "zzz" } else { "a" };
        let line = format!("{{\"type\":\"{t}\",\"ts\":{i},\"u\":\"k{v}\",\"v\":{v}}}");
        push(&mut p, &line, &mut alerts);
    }
    assert_eq!(p.key_counts(), vec![2]);
}
