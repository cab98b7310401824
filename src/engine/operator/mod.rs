//! One operator per rule kind, all with the same hooks: `on_event` for a
//! released event of the rule's streams, `on_timer` for a due timer of one
//! key. Operators own their keyed state and free a key as soon as nothing
//! pending can use it.

mod absence;
mod filter;
mod sequence;
mod threshold;

use std::sync::Arc;

use super::Match;
use super::expr::{Ctx, test};
use super::key::{Key, short_key_into};
use super::snapshot::OpSnapshot;
use crate::event::{Event, EventTime};
use crate::lang::program::{From, Rule, RuleKind};
pub(super) use sequence::Steps;

/// Timers an operator asks for: (instant, key).
pub(super) type NewTimers = Vec<(EventTime, Key)>;

/// Keyed state of one rule, looked up by the key text so that an event of a
/// live key allocates nothing (hashbrown for `entry_ref`; same hasher as
/// `FastMap`).
pub(super) type KeyMap<V> = hashbrown::HashMap<Key, V, foldhash::fast::RandomState>;

/// A snapshot's whole key text as the operators hold it: without the
/// rule's `prefix`; `None` if it lacks it (the snapshot is not this rule's).
pub(super) fn short_key(whole: &str, prefix: &str) -> Option<Key> {
    whole.strip_prefix(prefix).map(Key::from)
}

/// Drops key `key` and gives memory back once the table is mostly empty
/// (after a burst of keys), amortised O(1) per removal.
pub(super) fn remove<V>(map: &mut KeyMap<V>, key: &str) {
    map.remove(key);
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// The state of key `text` (created by `init` if new), its shared key, and
/// whether it was created now.
pub(super) fn slot<'m, V>(
    map: &'m mut KeyMap<V>,
    text: &str,
    init: impl FnOnce() -> V,
) -> (Key, &'m mut V, bool) {
    match map.entry_ref(text) {
        hashbrown::hash_map::EntryRef::Occupied(o) => (o.key().clone(), o.into_mut(), false),
        hashbrown::hash_map::EntryRef::Vacant(v) => {
            let k = Key::new(text);
            (k.clone(), v.insert_with_key(k, init()), true)
        }
    }
}

pub(super) enum Operator {
    Filter(filter::Filter),
    Threshold(threshold::ThresholdOp),
    Absence(absence::AbsenceOp),
    Sequence(sequence::SequenceOp),
}

impl Operator {
    pub(super) fn new(rule: &Rule) -> Self {
        match &rule.kind {
            RuleKind::Filter(_) => Operator::Filter(filter::Filter),
            RuleKind::Threshold(t) => Operator::Threshold(threshold::ThresholdOp::new(t)),
            RuleKind::Absence(_) => Operator::Absence(absence::AbsenceOp::default()),
            RuleKind::Sequence(s) => Operator::Sequence(sequence::SequenceOp::new(s)),
        }
    }

    /// The state, each key as its whole text (`prefix`, the rule's
    /// [`super::key::key_prefix`], put back).
    pub(super) fn snapshot(&self, prefix: &str) -> OpSnapshot {
        match self {
            Operator::Filter(_) => OpSnapshot::Filter,
            Operator::Threshold(o) => o.snapshot(prefix),
            Operator::Absence(o) => o.snapshot(prefix),
            Operator::Sequence(o) => o.snapshot(prefix),
        }
    }

    /// Rebuilds an operator of `rule` from a snapshot, whose keys are
    /// whole texts starting with `prefix` ([`super::key::key_prefix`]);
    /// `None` when the snapshot does not fit the rule's kind or cannot be
    /// read.
    pub(super) fn restore(rule: &Rule, snap: &OpSnapshot, prefix: &str) -> Option<Self> {
        Some(match (&rule.kind, snap) {
            (RuleKind::Filter(_), OpSnapshot::Filter) => Operator::Filter(filter::Filter),
            (RuleKind::Absence(_), OpSnapshot::Absence { keys }) => {
                Operator::Absence(absence::AbsenceOp::restore(keys, prefix)?)
            }
            (RuleKind::Threshold(t), OpSnapshot::Threshold { keys }) => {
                Operator::Threshold(threshold::ThresholdOp::restore(t, keys, prefix)?)
            }
            (RuleKind::Sequence(s), OpSnapshot::Sequence { next_seq, keys }) => {
                Operator::Sequence(sequence::SequenceOp::restore(s, *next_seq, keys, prefix)?)
            }
            _ => return None,
        })
    }

    pub(super) fn key_count(&self) -> usize {
        match self {
            Operator::Filter(_) => 0,
            Operator::Threshold(o) => o.key_count(),
            Operator::Absence(o) => o.key_count(),
            Operator::Sequence(o) => o.key_count(),
        }
    }

    /// The per-step conditions of a sequence rule that read earlier steps
    /// (empty for other kinds), as [`decide`] needs them.
    pub(super) fn reads(&self) -> &[bool] {
        match self {
            Operator::Sequence(op) => op.reads(),
            _ => &[],
        }
    }

    /// Evaluates one event; `pre` is the rule's [`Pre`] for it when it was
    /// prepared on a source thread (decided here otherwise, the same way).
    /// Returns `false` when the event's key is missing (not evaluated).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_event(
        &mut self,
        idx: usize,
        rule: &Rule,
        ev: &Arc<Event>,
        pre: Option<&Pre>,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
        kbuf: &mut String,
    ) -> bool {
        let (text, fits): (&str, Steps) = match pre {
            Some(Pre::Skip) => return true,
            Some(Pre::Missing) => return false,
            Some(Pre::Key(k, fits)) => (k.as_str(), *fits),
            None => match decide(rule, self.reads(), ev, kbuf) {
                Decision::Skip => return true,
                Decision::Missing => return false,
                Decision::Take(fits) => (kbuf.as_str(), fits),
            },
        };
        match (self, &rule.kind) {
            (Operator::Filter(_), _) => filter::on_event(idx, Key::from(text), ev, out),
            (Operator::Threshold(op), RuleKind::Threshold(t)) => {
                op.on_event(idx, t, text, ev, out, timers)
            }
            (Operator::Absence(op), RuleKind::Absence(a)) => {
                op.on_event(idx, a, text, ev, out, timers)
            }
            (Operator::Sequence(op), RuleKind::Sequence(s)) => {
                op.on_event(idx, s, text, fits, ev, out, timers)
            }
            _ => {}
        }
        true
    }

    pub(super) fn on_timer(
        &mut self,
        idx: usize,
        rule: &Rule,
        at: EventTime,
        key: &Key,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
    ) {
        match (self, &rule.kind) {
            (Operator::Threshold(op), RuleKind::Threshold(t)) => {
                op.on_timer(idx, t, at, key, out, timers)
            }
            (Operator::Absence(op), RuleKind::Absence(a)) => {
                op.on_timer(idx, a, at, key, out, timers)
            }
            (Operator::Sequence(op), RuleKind::Sequence(s)) => {
                op.on_timer(idx, s, at, key, out, timers)
            }
            _ => {}
        }
    }
}

/// What the stateless part of a rule makes of one event: everything
/// [`Operator::on_event`] decides before it touches state. It depends on
/// the rule and the event only, so a source thread can work it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Pre {
    /// The rule does not take the event (its `from`/`where` fails, or no
    /// step of a sequence can use it).
    Skip,
    /// A key expression is null (`key_missing`).
    Missing,
    /// The key, and for a sequence the steps the event fits.
    Key(Key, Steps),
}

/// [`Pre`] with the key text left in the caller's buffer.
enum Decision {
    Skip,
    Missing,
    Take(Steps),
}

/// The stateless part of `rule` for `ev`; the key text goes into `kbuf`.
/// `reads`: see [`Operator::reads`]. A sequence computes its key first (a
/// null key counts as missing even when no step fits), as it always has.
fn decide(rule: &Rule, reads: &[bool], ev: &Event, kbuf: &mut String) -> Decision {
    let from = match &rule.kind {
        RuleKind::Sequence(seq) => {
            if !short_key_into(&rule.key, &ev.fields, kbuf) {
                return Decision::Missing;
            }
            return match sequence::fits(seq, reads, ev) {
                0 => Decision::Skip,
                fits => Decision::Take(fits),
            };
        }
        RuleKind::Filter(f) => f,
        RuleKind::Threshold(t) => &t.from,
        RuleKind::Absence(a) => &a.from,
    };
    if !passes(from, ev) {
        Decision::Skip
    } else if !short_key_into(&rule.key, &ev.fields, kbuf) {
        Decision::Missing
    } else {
        Decision::Take(0)
    }
}

/// [`Pre`] of `rule` for `ev` (`reads`: [`step_reads`] of a sequence rule).
pub(super) fn prepare(rule: &Rule, reads: &[bool], ev: &Event, kbuf: &mut String) -> Pre {
    match decide(rule, reads, ev, kbuf) {
        Decision::Skip => Pre::Skip,
        Decision::Missing => Pre::Missing,
        Decision::Take(fits) => Pre::Key(Key::from(kbuf.as_str()), fits),
    }
}

/// Per step of a sequence rule: whether its condition reads earlier steps
/// (empty for other kinds).
pub(super) fn step_reads(rule: &Rule) -> Vec<bool> {
    match &rule.kind {
        RuleKind::Sequence(seq) => sequence::step_reads(seq),
        _ => Vec::new(),
    }
}

/// `from STREAM [where COND]`.
fn passes(from: &From, ev: &Event) -> bool {
    if from.stream.as_deref().is_some_and(|s| s != ev.stream) {
        return false;
    }
    from.cond
        .as_ref()
        .is_none_or(|c| test(c, &Ctx::event(&ev.fields)))
}
