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
use super::key::{Key, key_into};
use super::snapshot::OpSnapshot;
use crate::event::{Event, EventTime};
use crate::lang::program::{From, Rule, RuleKind};

/// Timers an operator asks for: (instant, key).
pub(super) type NewTimers = Vec<(EventTime, Key)>;

/// Keyed state of one rule, looked up by the key text so that an event of a
/// live key allocates nothing (hashbrown for `entry_ref`; same hasher as
/// `FastMap`).
pub(super) type KeyMap<V> = hashbrown::HashMap<Key, V, foldhash::fast::RandomState>;

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

    pub(super) fn snapshot(&self) -> OpSnapshot {
        match self {
            Operator::Filter(_) => OpSnapshot::Filter,
            Operator::Threshold(o) => o.snapshot(),
            Operator::Absence(o) => o.snapshot(),
            Operator::Sequence(o) => o.snapshot(),
        }
    }

    /// Rebuilds an operator of `rule` from a snapshot; `None` when the
    /// snapshot does not fit the rule's kind or cannot be read.
    pub(super) fn restore(rule: &Rule, snap: &OpSnapshot) -> Option<Self> {
        Some(match (&rule.kind, snap) {
            (RuleKind::Filter(_), OpSnapshot::Filter) => Operator::Filter(filter::Filter),
            (RuleKind::Absence(_), OpSnapshot::Absence { keys }) => {
                Operator::Absence(absence::AbsenceOp::restore(keys))
            }
            (RuleKind::Threshold(t), OpSnapshot::Threshold { keys }) => {
                Operator::Threshold(threshold::ThresholdOp::restore(t, keys))
            }
            (RuleKind::Sequence(s), OpSnapshot::Sequence { next_seq, keys }) => {
                Operator::Sequence(sequence::SequenceOp::restore(s, *next_seq, keys)?)
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

    /// Returns `false` when the event's key is missing (not evaluated).
    pub(super) fn on_event(
        &mut self,
        idx: usize,
        rule: &Rule,
        ev: &Arc<Event>,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
        kbuf: &mut String,
    ) -> bool {
        if let RuleKind::Sequence(seq) = &rule.kind {
            if let Operator::Sequence(op) = self {
                if !key_into(&rule.key, &ev.fields, kbuf) {
                    return false;
                }
                op.on_event(idx, seq, kbuf, ev, out, timers);
            }
            return true;
        }
        let from = match &rule.kind {
            RuleKind::Filter(f) => f,
            RuleKind::Threshold(t) => &t.from,
            RuleKind::Absence(a) => &a.from,
            RuleKind::Sequence(_) => return true,
        };
        if !passes(from, ev) {
            return true;
        }
        if !key_into(&rule.key, &ev.fields, kbuf) {
            return false;
        }
        match (self, &rule.kind) {
            (Operator::Filter(_), _) => filter::on_event(idx, Key::from(kbuf.as_str()), ev, out),
            (Operator::Threshold(op), RuleKind::Threshold(t)) => {
                op.on_event(idx, t, kbuf, ev, out, timers)
            }
            (Operator::Absence(op), RuleKind::Absence(a)) => {
                op.on_event(idx, a, kbuf, ev, out, timers)
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

/// `from STREAM [where COND]`.
fn passes(from: &From, ev: &Event) -> bool {
    if from.stream.as_deref().is_some_and(|s| s != ev.stream) {
        return false;
    }
    from.cond
        .as_ref()
        .is_none_or(|c| test(c, &Ctx::event(&ev.fields)))
}
