//! The daemon's sources work out each rule's stateless decision for an
//! event (its `from`/`where`, its key, a sequence's fitting steps) before
//! the engine thread evaluates it (`engine::Preparer`). Evaluating prepared
//! events must give exactly the alerts and counters of deciding on the
//! engine thread, and events prepared for other rules (a reload in
//! between) must be decided again. Checked on every conformance case.

mod common;

use tocsin::alert::Alert;
use tocsin::decode::{Decoded, Decoder};
use tocsin::event::Event;
use tocsin::lang::{Options, load_texts};
use tocsin::pipeline::Pipeline;

/// How the events of a case reach the pipeline.
#[derive(Clone, Copy, Debug)]
enum Feed {
    Plain,
    /// Prepared by the pipeline's own rules.
    Prepared,
    /// Prepared by the same rules loaded into another pipeline (another
    /// preparer id, as after a reload).
    Stale,
}

fn run(
    program: &tocsin::lang::Program,
    max_delay: i64,
    events: &[Event],
    feed: Feed,
) -> (Vec<String>, String) {
    let mut p = Pipeline::new(program, max_delay);
    let other = Pipeline::new(program, max_delay);
    let preparer = match feed {
        Feed::Plain => None,
        Feed::Prepared => Some(p.preparer()),
        Feed::Stale => Some(other.preparer()),
    };
    let mut out: Vec<Alert> = Vec::new();
    let mut kbuf = String::new();
    for ev in events {
        let prep = preparer.as_ref().map(|pr| pr.prepare(ev, &mut kbuf));
        let _ = p.push_prepared(ev.clone(), prep, &mut out);
    }
    p.finish(&mut out);
    let stats = p
        .rule_stats()
        .iter()
        .map(|s| format!("{}/{}", s.matches, s.key_missing))
        .collect::<Vec<_>>()
        .join(" ");
    (out.iter().map(Alert::to_json).collect(), stats)
}

#[test]
fn prepared_events_give_the_same_alerts_and_counters() {
    let mut with_alerts = 0;
    for case in common::conformance_cases() {
        let plain = run(&case.program, case.max_delay, &case.events, Feed::Plain);
        for feed in [Feed::Prepared, Feed::Stale] {
            assert_eq!(
                run(&case.program, case.max_delay, &case.events, feed),
                plain,
                "{} fed {feed:?}",
                case.dir.display()
            );
        }
        with_alerts += usize::from(!plain.0.is_empty());
    }
    assert!(with_alerts >= 40, "only {with_alerts} cases made alerts");
}

/// Events prepared for other rules (the rules were reloaded after the
/// batch was prepared) are decided again: here the old rule would skip the
/// event and the new one alerts on it.
#[test]
fn events_prepared_for_replaced_rules_are_decided_again() {
    let load = |text: &str| {
        let l = load_texts(vec![("r.rules".into(), text.into())], &Options::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.program
    };
    let old = load("rule r { from s where n > 5 }");
    let new = load("rule r { from s where n > 0 }");
    let ev = match Decoder::default().decode(br#"{"type":"s","ts":1,"n":3}"#, None) {
        Decoded::Event(e) => e,
        other => panic!("{other:?}"),
    };
    let stale = Pipeline::new(&old, 0)
        .preparer()
        .prepare(&ev, &mut String::new());
    let mut p = Pipeline::new(&new, 0);
    let mut out: Vec<Alert> = Vec::new();
    p.push_prepared(ev.clone(), Some(stale), &mut out)
        .expect("on time");
    p.finish(&mut out);
    assert_eq!(out.len(), 1, "the new rule's decision counts");
    // Prepared for the running rules, the same event alerts too; prepared
    // for the old rules and run by them, it does not.
    let mut p = Pipeline::new(&old, 0);
    let own = p.preparer().prepare(&ev, &mut String::new());
    let mut out: Vec<Alert> = Vec::new();
    p.push_prepared(ev, Some(own), &mut out).expect("on time");
    p.finish(&mut out);
    assert!(out.is_empty());
}
