//! The deterministic core: compiled rules evaluated on event time.
//!
//! No tokio, no clock, no I/O, no locks. Events arrive already in event order
//! (the sequencer's job); the engine routes each one to the rules of its
//! stream, keeps keyed state per rule and fires event-time timers when told
//! to. Output is a list of [`Match`]es in the order of rule-language.md 2.3;
//! the alert stage turns them into alerts.

pub mod aggregate;
pub mod expr;
pub mod key;
mod operator;
pub mod snapshot;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::event::{Event, EventTime};
use crate::lang::program::{Program, Rule};
pub use key::{FastMap, Key};
use operator::Operator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// What a rule produced for one key at one instant, before throttling.
#[derive(Debug, Clone)]
pub struct Match {
    /// Index of the rule in the program.
    pub rule: usize,
    pub key: Key,
    pub status: Status,
    pub time: EventTime,
    /// Aggregate values by canonical name (threshold rules).
    pub values: Vec<(String, Value)>,
    /// `[start, end)` of a tumbling, hopping or session window.
    pub window: Option<(EventTime, EventTime)>,
    /// Events bound to each positive step (`event` for a filter rule).
    pub events: Vec<(String, Vec<Arc<Event>>)>,
    /// For sequence steps: whether the step is quantified (a list in templates).
    pub quantified: Vec<bool>,
}

/// Counters the engine keeps per rule.
#[derive(Debug, Clone, Default)]
pub struct RuleStats {
    pub matches: u64,
    pub key_missing: u64,
}

/// A timer: at instant `.0`, rule `.1` has something due for key `.2`.
/// The set's order is exactly the firing order of 2.3.
type Timer = (EventTime, usize, Key);

/// The stateless part of the rules, shareable with the source threads:
/// which rules read a stream, and for an event what each of them decides
/// before touching state ([`Pre`]). A program's preparer has an id of its
/// own: a prepared event is used only by an engine running that program.
pub struct Preparer {
    id: u64,
    rules: Vec<Arc<Rule>>,
    /// Per rule: [`operator::step_reads`].
    reads: Vec<Vec<bool>>,
    /// Rules by stream name, in rule order, `*` rules merged in.
    routes: FastMap<String, Vec<usize>>,
    /// Rules reading every stream (`from *`), for streams not in `routes`.
    any: Vec<usize>,
    /// Per rule: [`key::key_prefix`]. Operators hold keys without it; a
    /// match, a snapshot and a restore put it back or take it off.
    prefixes: Vec<String>,
}

/// An event's [`Pre`] for each rule of its stream, in route order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    by: u64,
    rules: Box<[Pre]>,
}

pub use operator::Pre;

impl Prepared {
    /// [`crate::event::prefetch`] of the decisions.
    pub fn prefetch(&self) {
        crate::event::prefetch(&self.rules);
    }
}

impl Preparer {
    pub fn new(program: &Program) -> Self {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let rules = program.rules.clone();
        let mut routes: FastMap<String, Vec<usize>> = FastMap::default();
        let mut any = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            for s in r.streams() {
                match s {
                    Some(name) => {
                        let v = routes.entry(name.to_string()).or_default();
                        if v.last() != Some(&i) {
                            v.push(i);
                        }
                    }
                    None => {
                        if any.last() != Some(&i) {
                            any.push(i);
                        }
                    }
                }
            }
        }
        for v in routes.values_mut() {
            v.extend(any.iter().copied());
            v.sort_unstable();
            v.dedup();
        }
        Preparer {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            reads: rules.iter().map(|r| operator::step_reads(r)).collect(),
            prefixes: rules.iter().map(|r| key::key_prefix(&r.key)).collect(),
            rules,
            routes,
            any,
        }
    }

    /// The rules reading `stream`, in rule order.
    fn route(&self, stream: &str) -> &[usize] {
        match self.routes.get(stream) {
            Some(r) => r.as_slice(),
            None => self.any.as_slice(),
        }
    }

    /// What each rule of the event's stream decides for it.
    pub fn prepare(&self, ev: &Event, kbuf: &mut String) -> Prepared {
        Prepared {
            by: self.id,
            rules: self
                .route(&ev.stream)
                .iter()
                .map(|&i| operator::prepare(&self.rules[i], &self.reads[i], ev, kbuf))
                .collect(),
        }
    }
}

/// For each rule of `new`, the rule of `old` with the same name and text,
/// whose state a reload keeps (the first such rule, each at most once).
pub fn kept_rules(old: &[Arc<Rule>], new: &[Arc<Rule>]) -> Vec<Option<usize>> {
    let mut taken = vec![false; old.len()];
    new.iter()
        .map(|r| {
            let i = old
                .iter()
                .position(|o| o.name == r.name && o.source == r.source)?;
            (!std::mem::replace(&mut taken[i], true)).then_some(i)
        })
        .collect()
}

pub struct Engine {
    ops: Vec<Operator>,
    /// The rules (`prep.rules`), their routes and stateless decisions.
    prep: Arc<Preparer>,
    /// The rules this engine evaluates ([`Engine::part`]): all of them,
    /// unless the rules are shared out between parts run side by side.
    owned: Vec<bool>,
    timers: BTreeSet<Timer>,
    stats: Vec<RuleStats>,
    /// Scratch: the key text of the current event, and new timers.
    kbuf: String,
    scratch: Vec<(EventTime, Key)>,
}

impl Engine {
    /// An engine evaluating only the rules marked in `owned` (one per rule
    /// of `prep`); the others see no event, keep no state and make no
    /// timer. Parts built on one preparer use the same prepared events.
    pub fn part(prep: Arc<Preparer>, owned: Vec<bool>) -> Self {
        debug_assert_eq!(owned.len(), prep.rules.len());
        Engine {
            ops: prep.rules.iter().map(|r| Operator::new(r)).collect(),
            stats: vec![RuleStats::default(); prep.rules.len()],
            owned,
            prep,
            timers: BTreeSet::new(),
            kbuf: String::with_capacity(64),
            scratch: Vec::new(),
        }
    }

    /// The stateless part of the running rules, for source threads to
    /// prepare events with ([`Engine::on_event`]).
    pub fn preparer(&self) -> Arc<Preparer> {
        self.prep.clone()
    }

    /// Swaps in a new rule set, keeping the state (keys, timers, counters)
    /// of every rule whose name and text did not change. The new rules
    /// come with their preparer (shared by all parts) and the part's new
    /// `owned` mask. Returns [`kept_rules`], the same in every part; a kept
    /// rule should stay with the part that owned it, the only one holding
    /// its state.
    pub fn reload_part(&mut self, prep: Arc<Preparer>, owned: Vec<bool>) -> Vec<Option<usize>> {
        let mut old_ops: Vec<Option<Operator>> = std::mem::take(&mut self.ops)
            .into_iter()
            .map(Some)
            .collect();
        let mut old_stats = std::mem::take(&mut self.stats);
        let kept = kept_rules(&self.prep.rules, &prep.rules);
        let mut ops = Vec::with_capacity(prep.rules.len());
        let mut stats = Vec::with_capacity(prep.rules.len());
        for (r, old) in prep.rules.iter().zip(&kept) {
            let carried = old.and_then(|i| {
                let op = old_ops[i].take()?;
                Some((op, std::mem::take(&mut old_stats[i])))
            });
            let (op, st) = carried.unwrap_or_else(|| (Operator::new(r), RuleStats::default()));
            ops.push(op);
            stats.push(st);
        }
        let mut remap = vec![None; self.prep.rules.len()];
        for (new, old) in kept.iter().enumerate() {
            if let Some(o) = old {
                remap[*o] = Some(new);
            }
        }
        let timers = std::mem::take(&mut self.timers);
        self.timers = timers
            .into_iter()
            .filter_map(|(t, i, k)| remap[i].map(|j| (t, j, k)))
            .collect();
        self.prep = prep;
        self.owned = owned;
        self.ops = ops;
        self.stats = stats;
        kept
    }

    /// The whole state, for a checkpoint, each rule's keys in no order
    /// ([`snapshot::EngineSnapshot::sort_keys`] orders them).
    pub fn snapshot(&self) -> snapshot::EngineSnapshot {
        let prefixes = &self.prep.prefixes;
        let mut timers: Vec<Vec<(i64, String)>> = vec![Vec::new(); self.prep.rules.len()];
        for (t, i, k) in &self.timers {
            timers[*i].push((t.0, key::whole_text(&prefixes[*i], k)));
        }
        let rules = self
            .prep
            .rules
            .iter()
            .zip(&self.ops)
            .zip(timers)
            .enumerate()
            .map(|(i, ((r, op), timers))| snapshot::RuleSnapshot {
                name: r.name.clone(),
                source: r.source.clone(),
                state: op.snapshot(&prefixes[i]),
                timers,
                matches: self.stats[i].matches,
                key_missing: self.stats[i].key_missing,
            })
            .collect();
        snapshot::EngineSnapshot { rules }
    }

    /// Restores the state of every rule whose name and text are unchanged;
    /// other rules start empty. Returns the names of the rules restored.
    pub fn restore(&mut self, snap: &snapshot::EngineSnapshot) -> Vec<String> {
        let mut restored = Vec::new();
        for rs in &snap.rules {
            let Some(i) = self
                .prep
                .rules
                .iter()
                .position(|r| r.name == rs.name && r.source == rs.source)
            else {
                continue;
            };
            if !self.owned[i] {
                continue;
            }
            let prefix = self.prep.prefixes[i].as_str();
            let timers: Option<Vec<(EventTime, Key)>> = rs
                .timers
                .iter()
                .map(|(t, k)| Some((EventTime(*t), operator::short_key(k, prefix)?)))
                .collect();
            let Some((op, timers)) =
                Operator::restore(&self.prep.rules[i], &rs.state, prefix).zip(timers)
            else {
                tracing::warn!(rule = %rs.name, "Checkpointed state does not fit the rule; starting it empty");
                continue;
            };
            self.ops[i] = op;
            self.stats[i] = RuleStats {
                matches: rs.matches,
                key_missing: rs.key_missing,
            };
            self.timers.retain(|t| t.1 != i);
            self.timers
                .extend(timers.into_iter().map(|(t, k)| (t, i, k)));
            restored.push(rs.name.clone());
        }
        restored
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.prep.rules
    }

    pub fn stats(&self) -> &[RuleStats] {
        &self.stats
    }

    /// Live keys of each rule.
    pub fn key_counts(&self) -> Vec<usize> {
        self.ops.iter().map(Operator::key_count).collect()
    }

    /// Evaluates one released event (events come in event order). `prep`:
    /// what a source thread prepared for it, used if it was prepared for
    /// these rules (decided here otherwise, the same way).
    pub fn on_event(&mut self, ev: &Arc<Event>, prep: Option<&Prepared>, out: &mut Vec<Match>) {
        let Engine {
            ops,
            prep: preparer,
            owned,
            timers,
            stats,
            kbuf,
            scratch,
        } = self;
        let prep = prep.filter(|p| p.by == preparer.id);
        for (j, &i) in preparer.route(&ev.stream).iter().enumerate() {
            if !owned[i] {
                continue;
            }
            let before = out.len();
            let ok = ops[i].on_event(
                i,
                &preparer.rules[i],
                ev,
                prep.and_then(|p| p.rules.get(j)),
                out,
                scratch,
                kbuf,
            );
            if !ok {
                stats[i].key_missing += 1;
            }
            whole_keys(&preparer.prefixes[i], &mut out[before..]);
            stats[i].matches += (out.len() - before) as u64;
            for (t, k) in scratch.drain(..) {
                timers.insert((t, i, k));
            }
        }
    }

    /// Timers pending, all rules.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The earliest pending timer instant.
    pub fn next_timer(&self) -> Option<EventTime> {
        self.timers.first().map(|t| t.0)
    }

    /// Fires every timer due at exactly `at`, in rule order then key order.
    pub fn fire_timers(&mut self, at: EventTime, out: &mut Vec<Match>) {
        let mut new_timers = Vec::new();
        while let Some(first) = self.timers.first() {
            if first.0 != at {
                break;
            }
            let Some((t, i, key)) = self.timers.pop_first() else {
                break;
            };
            let before = out.len();
            self.ops[i].on_timer(i, &self.prep.rules[i], t, &key, out, &mut new_timers);
            whole_keys(&self.prep.prefixes[i], &mut out[before..]);
            self.stats[i].matches += (out.len() - before) as u64;
            for (t2, k) in new_timers.drain(..) {
                self.timers.insert((t2, i, k));
            }
        }
    }
}

/// Puts a rule's key prefix back on the keys of its new matches.
fn whole_keys(prefix: &str, matches: &mut [Match]) {
    if prefix.is_empty() {
        return;
    }
    for m in matches {
        m.key = key::full_key(prefix, &m.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::test_event;
    use crate::lang::{Options, load_texts};

    const RULES: &str = r#"
rule gone { key user, ip from hb absent 1s }
rule seq { key user sequence within 5s { a: hb where n == 1 b: hb where n == 2 } }
"#;

    fn engine() -> Engine {
        let l = load_texts(vec![("r.rules".into(), RULES.into())], &Options::default());
        assert!(!l.has_errors(), "{}", l.render());
        let n = l.program.rules.len();
        Engine::part(Arc::new(Preparer::new(&l.program)), vec![true; n])
    }

    fn event(line: &str) -> Arc<Event> {
        Arc::new(test_event(line))
    }

    /// The engine's snapshot leaves keys as its tables hold them; sorting
    /// it (later, off the engine thread) puts the same keys in bytewise
    /// order.
    #[test]
    fn snapshot_keys_are_sorted_apart_from_taking_them() {
        let mut e = engine();
        let mut out = Vec::new();
        for i in 0..300 {
            let user = format!("u{}", (i * 7919) % 1000);
            e.on_event(
                &event(&format!(
                    r#"{{"type":"hb","ts":{},"user":"{user}","ip":"x","n":1}}"#,
                    i + 1
                )),
                None,
                &mut out,
            );
        }
        let absence_keys = |s: &snapshot::EngineSnapshot| -> Vec<String> {
            s.rules
                .iter()
                .find_map(|r| match &r.state {
                    snapshot::OpSnapshot::Absence { keys } => {
                        Some(keys.iter().map(|k| k.0.clone()).collect())
                    }
                    _ => None,
                })
                .expect("an absence rule")
        };
        let mut snap = e.snapshot();
        let mut unsorted = absence_keys(&snap);
        snap.sort_keys();
        let sorted = absence_keys(&snap);
        assert_eq!(sorted.len(), 300);
        assert!(sorted.windows(2).all(|w| w[0] < w[1]), "{sorted:?}");
        unsorted.sort();
        assert_eq!(unsorted, sorted);
    }

    /// The engine holds keys without the rule's `{"name":` prefix, but
    /// matches, snapshots and their timers carry the whole key text (the
    /// checkpoint format of earlier versions), and a restore takes the
    /// prefix off again.
    #[test]
    fn keys_are_whole_outside_the_engine() {
        let mut e = engine();
        let mut out = Vec::new();
        e.on_event(
            &event(r#"{"type":"hb","ts":1,"user":"a","ip":"x","n":1}"#),
            None,
            &mut out,
        );
        e.on_event(
            &event(r#"{"type":"hb","ts":2,"user":"a","ip":"x","n":2}"#),
            None,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key.as_str(), r#"{"user":"a"}"#);

        let snap = e.snapshot();
        let text = serde_json::to_string(&snap).expect("serialises");
        assert!(
            text.contains(r#"[1001,"{\"user\":\"a\",\"ip\":\"x\"}"]"#),
            "{text}"
        );
        assert!(
            text.contains(r#"["{\"user\":\"a\",\"ip\":\"x\"}",2,false]"#),
            "{text}"
        );

        let mut again = engine();
        assert_eq!(again.restore(&snap), vec!["gone", "seq"]);
        let mut fired = Vec::new();
        again.fire_timers(EventTime(1001), &mut fired); // re-arms at 1002
        again.fire_timers(EventTime(1002), &mut fired);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].key.as_str(), r#"{"user":"a","ip":"x"}"#);

        // Keys without the rule's prefix are not this rule's state.
        let mut other = snap.clone();
        let snapshot::OpSnapshot::Absence { keys } = &mut other.rules[0].state else {
            panic!("an absence rule's state");
        };
        keys[0].0 = keys[0].0.replacen("user", "name", 1);
        assert_eq!(engine().restore(&other), vec!["seq"]);
    }
}
