//! Sequence rules (rule-language.md 5): followed-by steps with relaxed
//! contiguity, quantified steps, negation between steps and trailing
//! negation, bounded by `within`.
//!
//! State per key: the unconsumed events of the rule's streams, in event
//! order, no older than `within` before the newest; and, for a trailing
//! negation, the pending candidates. Consumption (5.4) is always a prefix of
//! the key's events, so it is a single sequence number per key.
//!
//! When an event `e` is released, the earliest match ending at `e` (5.3) is
//! found by a depth-first search over the buffer that tries each
//! non-quantified step's events in event order; a quantified step's events
//! are fixed by its neighbours, and its `(first, count)` grows with the
//! next step's event, so the first complete assignment found is the
//! earliest one.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{KeyMap, NewTimers, slot};
use crate::engine::expr::{Ctx, StepView, reads_steps, test};
use crate::engine::key::{Key, whole_text};
use crate::engine::snapshot::{CandidateSnap, EventSnap, OpSnapshot, SequenceKeySnap};
use crate::engine::{Match, Status};
use crate::event::{Event, EventTime};
use crate::lang::program::{Sequence, Step};

#[derive(Debug, Clone)]
struct Entry {
    /// Release order within the rule: event order.
    seq: u64,
    ev: Arc<Event>,
    /// Bit `s`: step `s` may use this event ([`fits`]), computed once when
    /// it is buffered, so a search does not test it again for every match.
    fits: Steps,
}

/// One bit per step. Bits 0..=62 are steps 0..=62; bit 63 stands for every
/// step from 63 on (whose fit is therefore only a "maybe", see [`masked`]).
pub(crate) type Steps = u64;
const MAX_STEPS: usize = 64;

/// What the mask says about step `s`: `Some(fits)` for a step it covers
/// alone, `None` for steps past it (test them in full).
fn masked(fits: Steps, s: usize) -> Option<bool> {
    (s < MAX_STEPS - 1).then_some(fits & (1 << s) != 0)
}

/// Events bound to one positive step, as buffer indexes during a search.
#[derive(Debug, Clone)]
enum Bind {
    One(usize),
    Many(Vec<usize>),
}

/// A positive prefix waiting for its trailing-negation deadline (5.5).
#[derive(Debug, Clone)]
struct Candidate {
    deadline: EventTime,
    /// Sequence number of the prefix's last event `p` and of its first event.
    p_seq: u64,
    first_seq: u64,
    /// Events bound to each step (empty for negated steps).
    bound: Vec<Vec<Arc<Event>>>,
}

#[derive(Default)]
struct KeyState {
    buf: VecDeque<Entry>,
    candidates: Vec<Candidate>,
    /// Events with `seq <= consumed` are consumed.
    consumed: u64,
    /// The pending clean-up timer, if any.
    cleanup_at: Option<EventTime>,
}

pub(crate) struct SequenceOp {
    keys: KeyMap<KeyState>,
    next_seq: u64,
    /// Indexes of the positive steps.
    positive: Vec<usize>,
    /// The trailing negated step, if the sequence ends with one.
    trailing: Option<usize>,
    /// Per step: its condition reads earlier steps (tested during a search).
    reads: Vec<bool>,
    /// The steps that can use a buffered event later ([`kept_steps`]).
    keep: Steps,
}

/// The steps for which an event is worth keeping in the buffer after its
/// own release: every positive step but an unquantified last one (which
/// only ever binds the event that ends the match, the one being released),
/// and every negated step between positive ones (a trailing negation is
/// decided against the pending candidates when its event arrives, and never
/// reads the buffer). An event fitting none of them can bind nothing in a
/// later search, so it is dropped once its own search is done; most events
/// of a rule like `fail {3,}` then `ok` are such `ok`s. Steps from 63 on
/// share bit 63, which is then always kept.
fn kept_steps(seq: &Sequence, trailing: Option<usize>) -> Steps {
    let last_pos = seq.positive().last();
    let mut bits: Steps = 0;
    for (i, step) in seq.steps.iter().enumerate() {
        let end_only = Some(i) == last_pos && step.min.is_none();
        if (!end_only && Some(i) != trailing) || i >= MAX_STEPS - 1 {
            bits |= 1 << i.min(MAX_STEPS - 1);
        }
    }
    bits
}

/// Per step: whether its condition reads earlier steps (such a condition is
/// tested during a search, not when the event is buffered).
pub(super) fn step_reads(seq: &Sequence) -> Vec<bool> {
    seq.steps
        .iter()
        .map(|s| s.cond.as_ref().is_some_and(reads_steps))
        .collect()
}

fn stream_ok(step: &Step, ev: &Event) -> bool {
    step.stream.as_deref().is_none_or(|s| s == ev.stream)
}

/// The steps that may use `ev` (bind it, or for a negated step block a
/// match): of their stream, and satisfying their condition when it reads no
/// earlier step (one that does is tested during the search). Steps from 63
/// on share bit 63 ([`Steps`]). Zero: no step can use the event.
pub(super) fn fits(seq: &Sequence, reads: &[bool], ev: &Event) -> Steps {
    let mut bits = 0;
    for (i, step) in seq.steps.iter().enumerate() {
        let ok = stream_ok(step, ev)
            && (reads[i]
                || step
                    .cond
                    .as_ref()
                    .is_none_or(|c| test(c, &Ctx::event(&ev.fields))));
        if ok {
            bits |= 1 << i.min(MAX_STEPS - 1);
        }
    }
    bits
}

impl SequenceOp {
    pub(super) fn new(seq: &Sequence) -> Self {
        let positive: Vec<usize> = seq.positive().collect();
        let trailing = seq
            .steps
            .last()
            .filter(|s| s.negated)
            .map(|_| seq.steps.len() - 1);
        SequenceOp {
            keys: KeyMap::default(),
            next_seq: 1,
            positive,
            trailing,
            reads: step_reads(seq),
            keep: kept_steps(seq, trailing),
        }
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn snapshot(&self, prefix: &str) -> OpSnapshot {
        let keys: Vec<(String, SequenceKeySnap)> = self
            .keys
            .iter()
            .map(|(k, st)| {
                let snap = SequenceKeySnap {
                    buf: st
                        .buf
                        .iter()
                        .map(|e| (e.seq, EventSnap::of(&e.ev)))
                        .collect(),
                    candidates: st
                        .candidates
                        .iter()
                        .map(|c| CandidateSnap {
                            deadline: c.deadline.0,
                            p_seq: c.p_seq,
                            first_seq: c.first_seq,
                            bound: c
                                .bound
                                .iter()
                                .map(|evs| evs.iter().map(EventSnap::of).collect())
                                .collect(),
                        })
                        .collect(),
                    consumed: st.consumed,
                    cleanup_at: st.cleanup_at.map(|t| t.0),
                };
                (whole_text(prefix, k), snap)
            })
            .collect();
        OpSnapshot::Sequence {
            next_seq: self.next_seq,
            keys,
        }
    }

    /// Rebuilds the state; `None` if a stored event no longer parses (or a
    /// key lacks `prefix`).
    pub(super) fn restore(
        seq: &Sequence,
        next_seq: u64,
        keys: &[(String, SequenceKeySnap)],
        prefix: &str,
    ) -> Option<Self> {
        let mut op = SequenceOp::new(seq);
        op.next_seq = next_seq;
        for (k, snap) in keys {
            let mut st = KeyState {
                consumed: snap.consumed,
                cleanup_at: snap.cleanup_at.map(EventTime),
                ..KeyState::default()
            };
            for (seq_no, ev) in &snap.buf {
                let ev = ev.restore()?;
                st.buf.push_back(Entry {
                    seq: *seq_no,
                    fits: fits(seq, &op.reads, &ev),
                    ev,
                });
            }
            for c in &snap.candidates {
                let mut bound = Vec::with_capacity(c.bound.len());
                for evs in &c.bound {
                    bound.push(
                        evs.iter()
                            .map(EventSnap::restore)
                            .collect::<Option<Vec<_>>>()?,
                    );
                }
                st.candidates.push(Candidate {
                    deadline: EventTime(c.deadline),
                    p_seq: c.p_seq,
                    first_seq: c.first_seq,
                    bound,
                });
            }
            op.keys.insert(super::short_key(k, prefix)?, st);
        }
        Some(op)
    }

    /// Per step: whether its condition reads earlier steps.
    pub(super) fn reads(&self) -> &[bool] {
        &self.reads
    }

    /// One event of key `text`; `fits`: the steps it fits ([`fits`], not
    /// zero: an event no step can use is neither buffered nor makes key
    /// state).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_event(
        &mut self,
        idx: usize,
        seq: &Sequence,
        text: &str,
        fits: Steps,
        ev: &Arc<Event>,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
    ) {
        debug_assert!(fits != 0, "decided by the caller");
        let entry_seq = self.next_seq;
        self.next_seq += 1;
        let (key, st, _) = slot(&mut self.keys, text, KeyState::default);

        // A negated event after `p` kills pending candidates (5.5).
        if let Some(neg) = self.trailing {
            let step = &seq.steps[neg];
            let known = masked(fits, neg);
            if known == Some(true) && !self.reads[neg] {
                // The condition holds whatever the candidate bound.
                st.candidates.retain(|c| ev.time > c.deadline);
            } else if known.unwrap_or_else(|| stream_ok(step, ev)) {
                st.candidates.retain(|c| {
                    if ev.time > c.deadline {
                        return true;
                    }
                    let views = views_of(&c.bound);
                    let cx = Ctx {
                        fields: Some(&ev.fields),
                        steps: &views,
                        aggs: &[],
                    };
                    !step.cond.as_ref().is_none_or(|cond| test(cond, &cx))
                });
            }
        }

        // Events older than `within` before this one can no longer be used.
        let lo_time = ev.time.saturating_sub(seq.within);
        while st.buf.front().is_some_and(|e| e.ev.time < lo_time) {
            st.buf.pop_front();
        }
        st.buf.push_back(Entry {
            seq: entry_seq,
            ev: ev.clone(),
            fits,
        });

        let last_pos = self.positive[self.positive.len() - 1];
        if stream_ok(&seq.steps[last_pos], ev) {
            let buf = st.buf.make_contiguous();
            let mut search = Search {
                seq,
                buf,
                end: buf.len() - 1,
                lo_time,
                pos: &self.positive,
                reads: &self.reads,
                binds: vec![None; seq.steps.len()],
            };
            if search.place(0, None) {
                let bound = search.bound_events();
                let first_seq = search.first_seq();
                match self.trailing {
                    None => {
                        out.push(sequence_alert(idx, seq, key.clone(), ev.time, &bound));
                        // Consume every event of the key up to `e`: all of the buffer.
                        st.consumed = entry_seq;
                        st.buf.clear();
                    }
                    Some(_) => {
                        let first_time = search.first_time();
                        let deadline = first_time.saturating_add(seq.within);
                        st.candidates.push(Candidate {
                            deadline,
                            p_seq: entry_seq,
                            first_seq,
                            bound,
                        });
                        timers.push((deadline, key.clone()));
                    }
                }
            }
        }
        if fits & self.keep == 0 && st.buf.back().is_some_and(|e| e.seq == entry_seq) {
            st.buf.pop_back();
        }

        if st.buf.is_empty() && st.candidates.is_empty() {
            super::remove(&mut self.keys, &key);
            return;
        }
        if st.cleanup_at.is_none()
            && let Some(last) = st.buf.back()
        {
            let at = last.ev.time.saturating_add(seq.within);
            st.cleanup_at = Some(at);
            timers.push((at, key));
        }
    }

    pub(super) fn on_timer(
        &mut self,
        idx: usize,
        seq: &Sequence,
        at: EventTime,
        key: &Key,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
    ) {
        let Some(st) = self.keys.get_mut(key) else {
            return;
        };
        // Candidates due now, decided in event order of `p`.
        let mut due: Vec<Candidate> = Vec::new();
        st.candidates.retain(|c| {
            if c.deadline == at {
                due.push(c.clone());
                false
            } else {
                true
            }
        });
        due.sort_by_key(|c| c.p_seq);
        for c in due {
            if c.first_seq <= st.consumed {
                continue; // uses a consumed event
            }
            out.push(sequence_alert(idx, seq, key.clone(), at, &c.bound));
            st.consumed = st.consumed.max(c.p_seq);
            let consumed = st.consumed;
            while st.buf.front().is_some_and(|e| e.seq <= consumed) {
                st.buf.pop_front();
            }
        }
        if st.cleanup_at == Some(at) {
            st.cleanup_at = None;
            // Every future event is later than `at`: older events are useless.
            let horizon = at.saturating_sub(seq.within);
            while st.buf.front().is_some_and(|e| e.ev.time <= horizon) {
                st.buf.pop_front();
            }
            if let Some(last) = st.buf.back() {
                let next = last.ev.time.saturating_add(seq.within);
                if next > at {
                    st.cleanup_at = Some(next);
                    timers.push((next, key.clone()));
                }
            }
        }
        if st.buf.is_empty() && st.candidates.is_empty() {
            super::remove(&mut self.keys, key);
        }
    }
}

fn views_of(bound: &[Vec<Arc<Event>>]) -> Vec<Option<StepView<'_>>> {
    bound
        .iter()
        .map(|evs| {
            evs.last().map(|l| StepView {
                last: &l.fields,
                count: evs.len(),
            })
        })
        .collect()
}

fn sequence_alert(
    idx: usize,
    seq: &Sequence,
    key: Key,
    time: EventTime,
    bound: &[Vec<Arc<Event>>],
) -> Match {
    let mut events = Vec::new();
    let mut quantified = Vec::new();
    for (step, evs) in seq.steps.iter().zip(bound) {
        if !step.negated {
            events.push((step.name.clone(), evs.clone()));
            quantified.push(step.min.is_some());
        }
    }
    Match {
        rule: idx,
        key,
        status: Status::Firing,
        time,
        values: Vec::new(),
        window: None,
        events,
        quantified,
    }
}

/// One search for the earliest match ending at `buf[end]`.
struct Search<'a> {
    seq: &'a Sequence,
    buf: &'a [Entry],
    end: usize,
    /// `e.time - within`: the earliest time a match's first event may have.
    lo_time: EventTime,
    pos: &'a [usize],
    /// Per step: its condition reads earlier steps.
    reads: &'a [bool],
    binds: Vec<Option<Bind>>,
}

impl Search<'_> {
    fn time(&self, i: usize) -> EventTime {
        self.buf[i].ev.time
    }

    fn views(&self) -> Vec<Option<StepView<'_>>> {
        self.binds
            .iter()
            .map(|b| {
                b.as_ref().map(|b| match b {
                    Bind::One(i) => StepView {
                        last: &self.buf[*i].ev.fields,
                        count: 1,
                    },
                    Bind::Many(v) => StepView {
                        last: &self.buf[v[v.len() - 1]].ev.fields,
                        count: v.len(),
                    },
                })
            })
            .collect()
    }

    /// Whether `buf[i]` is of step `s`'s stream and meets its condition
    /// under the current bindings.
    fn qualifies(&self, s: usize, i: usize) -> bool {
        let step = &self.seq.steps[s];
        let entry = &self.buf[i];
        // Stream and any condition without step references: decided when
        // the event was buffered.
        match masked(entry.fits, s) {
            Some(false) => return false,
            Some(true) if !self.reads[s] => return true,
            _ => {}
        }
        let ev = &entry.ev;
        if !stream_ok(step, ev) {
            return false;
        }
        match &step.cond {
            None => true,
            Some(c) if !self.reads[s] => test(c, &Ctx::event(&ev.fields)),
            Some(c) => {
                let views = self.views();
                test(
                    c,
                    &Ctx {
                        fields: Some(&ev.fields),
                        steps: &views,
                        aggs: &[],
                    },
                )
            }
        }
    }

    /// Whether the negated step just before positive `pi` (if any) has a
    /// qualifying event strictly between buffer indexes `lo` and `hi`.
    fn neg_blocked(&self, pi: usize, lo: usize, hi: usize) -> bool {
        let s = self.pos[pi];
        if s == 0 || !self.seq.steps[s - 1].negated {
            return false;
        }
        (lo + 1..hi).any(|i| self.qualifies(s - 1, i))
    }

    /// Assigns positive steps `pi..` after buffer index `lower`.
    fn place(&mut self, pi: usize, lower: Option<usize>) -> bool {
        let m = self.pos.len() - 1;
        let s = self.pos[pi];
        let start = lower.map_or(0, |l| l + 1);
        if start > self.end {
            return false;
        }
        match self.seq.steps[s].min {
            None => {
                let (from, to) = if pi == m {
                    (self.end, self.end)
                } else if self.end == 0 {
                    return false;
                } else {
                    (start, self.end - 1)
                };
                for i in from.max(start)..=to {
                    if !self.takes(pi, s, i) {
                        continue;
                    }
                    if let Some(l) = lower
                        && self.neg_blocked(pi, l, i)
                    {
                        continue;
                    }
                    self.binds[s] = Some(Bind::One(i));
                    if pi == m || self.place(pi + 1, Some(i)) {
                        return true;
                    }
                    self.binds[s] = None;
                }
                false
            }
            Some(n) if pi == m => {
                // The last positive step ends at `e`, the event that first
                // brings its count to the minimum: exactly `n` events.
                // Counted (stopping past `n`) before anything is
                // collected: most events end no match.
                let want = usize::try_from(n).unwrap_or(usize::MAX);
                let takes = |i: usize| self.takes(pi, s, i);
                if !takes(self.end)
                    || (start..=self.end)
                        .filter(|&i| takes(i))
                        .take(want.saturating_add(1))
                        .count()
                        != want
                {
                    return false;
                }
                let set: Vec<usize> = (start..=self.end).filter(|&i| takes(i)).collect();
                if let Some(l) = lower
                    && self.neg_blocked(pi, l, set[0])
                {
                    return false;
                }
                self.binds[s] = Some(Bind::Many(set));
                true
            }
            Some(n) => {
                let next = self.pos[pi + 1];
                let next_is_last = pi + 1 == m;
                let (from, to) = if next_is_last {
                    (self.end, self.end)
                } else if self.end == 0 {
                    return false;
                } else {
                    (start, self.end - 1)
                };
                for b in from.max(start)..=to {
                    // Cheap refusals first (same outcome, the order of
                    // these tests does not matter): an event at `b` the
                    // next step cannot take whatever is bound, fewer than
                    // `n` events for this step.
                    if !self.reads[next] && !self.qualifies(next, b) {
                        continue;
                    }
                    let takes = |i: usize| self.takes(pi, s, i);
                    let want = usize::try_from(n).unwrap_or(usize::MAX);
                    if (start..b).filter(|&i| takes(i)).take(want).count() < want {
                        continue;
                    }
                    let set: Vec<usize> = (start..b).filter(|&i| takes(i)).collect();
                    if let Some(l) = lower
                        && self.neg_blocked(pi, l, set[0])
                    {
                        continue;
                    }
                    let last_of_set = set[set.len() - 1];
                    self.binds[s] = Some(Bind::Many(set));
                    if self.neg_blocked(pi + 1, last_of_set, b) || !self.qualifies(next, b) {
                        self.binds[s] = None;
                        continue;
                    }
                    self.binds[next] = Some(Bind::One(b));
                    if next_is_last || self.place(pi + 2, Some(b)) {
                        return true;
                    }
                    self.binds[next] = None;
                    self.binds[s] = None;
                }
                false
            }
        }
    }

    /// Whether the event at buffer index `i` may bind positive step `pi`
    /// (step `s`): it qualifies, and for the first step it is within
    /// `within` of the newest event.
    fn takes(&self, pi: usize, s: usize, i: usize) -> bool {
        (pi != 0 || self.time(i) >= self.lo_time) && self.qualifies(s, i)
    }

    fn first_index(&self) -> usize {
        match &self.binds[self.pos[0]] {
            Some(Bind::One(i)) => *i,
            Some(Bind::Many(v)) => v[0],
            None => self.end,
        }
    }

    fn first_seq(&self) -> u64 {
        self.buf[self.first_index()].seq
    }

    fn first_time(&self) -> EventTime {
        self.time(self.first_index())
    }

    /// The events bound to each step, in event order.
    fn bound_events(&self) -> Vec<Vec<Arc<Event>>> {
        self.binds
            .iter()
            .map(|b| match b {
                None => Vec::new(),
                Some(Bind::One(i)) => vec![self.buf[*i].ev.clone()],
                Some(Bind::Many(v)) => v.iter().map(|i| self.buf[*i].ev.clone()).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::decode::test_event;
    use crate::lang::program::RuleKind;
    use crate::lang::{Options, load_texts};

    /// Sequences of every shape `kept_steps` tells apart: quantified first
    /// and last steps, negation between steps and trailing, conditions
    /// that read earlier steps, three steps, two steps of one stream.
    const RULES: &str = r#"
rule between { key u sequence within 4s { x: a where v < 5 {2,} not n: c y: b where v >= x.v } }
rule trailing { key u sequence within 3s { p: a not q: c where v == p.v } }
rule last_many { key u sequence within 3s { x: a y: b {2,} } }
rule three { key u sequence within 2s { x: a where v > 2 y: b z: c where v != y.v } }
rule one_stream { key u sequence within 3s { x: a y: a where v > x.v } }
rule both { key u sequence within 5s { x: a + not n: b y: c where count(x) >= 2 not z: a where v == y.v } }
rule brute { key u sequence within 5s { fail: a where v == 0 {3,} ok: a where v == 1 } }
"#;

    fn sequences() -> Vec<Sequence> {
        let l = load_texts(vec![("r.rules".into(), RULES.into())], &Options::default());
        assert!(!l.has_errors(), "{}", l.render());
        l.program
            .rules
            .iter()
            .map(|r| match &r.kind {
                RuleKind::Sequence(s) => s.clone(),
                _ => panic!("a sequence rule"),
            })
            .collect()
    }

    /// An event of key `{"u":u}`, with its key text.
    fn event(i: usize, stream: &str, t: i64, u: u8, v: u8) -> (Arc<Event>, String) {
        let line = format!(r#"{{"type":"{stream}","ts":{t},"u":{u},"v":{v},"i":{i}}}"#);
        (Arc::new(test_event(&line)), format!(r#"{{"u":{u}}}"#))
    }

    /// Runs `events` (in event order) through one sequence, firing timers
    /// due before each event; the alerts as text.
    fn run(seq: &Sequence, keep_all: bool, events: &[(Arc<Event>, String)]) -> Vec<String> {
        let mut op = SequenceOp::new(seq);
        if keep_all {
            op.keep = !0;
        }
        let mut timers: BTreeSet<(EventTime, Key)> = BTreeSet::new();
        let mut out = Vec::new();
        let mut new = Vec::new();
        for (ev, key) in events {
            fire(&mut op, seq, &mut timers, &mut out, ev.time);
            let f = fits(seq, &op.reads, ev);
            if f == 0 {
                continue;
            }
            op.on_event(0, seq, key, f, ev, &mut out, &mut new);
            timers.extend(new.drain(..));
        }
        fire(&mut op, seq, &mut timers, &mut out, EventTime(i64::MAX));
        out.iter()
            .map(|m| {
                let bound: Vec<String> = m
                    .events
                    .iter()
                    .map(|(n, evs)| {
                        format!("{n}={:?}", evs.iter().map(|e| e.raw()).collect::<Vec<_>>())
                    })
                    .collect();
                format!("{} {} {}", m.time.0, m.key, bound.join(" "))
            })
            .collect()
    }

    /// Fires, in order, the timers due before `before`.
    fn fire(
        op: &mut SequenceOp,
        seq: &Sequence,
        timers: &mut BTreeSet<(EventTime, Key)>,
        out: &mut Vec<Match>,
        before: EventTime,
    ) {
        let mut new = Vec::new();
        while timers.first().is_some_and(|(t, _)| *t < before) {
            let Some((t, k)) = timers.pop_first() else {
                return;
            };
            op.on_timer(0, seq, t, &k, out, &mut new);
            timers.extend(new.drain(..));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Dropping events that can only end a match, once their search is
        /// done, changes no alert of any sequence shape.
        #[test]
        fn dropping_end_only_events_changes_no_alert(
            raw in prop::collection::vec((0usize..3, 0i64..1500, 0u8..2, 0u8..6), 0..60)
        ) {
            let mut t = 0;
            let events: Vec<(Arc<Event>, String)> = raw
                .iter()
                .enumerate()
                .map(|(i, &(s, gap, u, v))| {
                    t += gap;
                    event(i, ["a", "b", "c"][s], t, u, v)
                })
                .collect();
            for seq in sequences() {
                prop_assert_eq!(run(&seq, false, &events), run(&seq, true, &events));
            }
        }
    }

    /// Events that can only end a match hold no state: a thousand
    /// successful logins of 250 users leave no key behind.
    #[test]
    fn end_only_events_are_not_buffered() {
        let brute = sequences().pop().expect("rule brute");
        let mut op = SequenceOp::new(&brute);
        let (mut out, mut timers) = (Vec::new(), Vec::new());
        let mut feed = |op: &mut SequenceOp, (ev, key): (Arc<Event>, String)| {
            let f = fits(&brute, &op.reads, &ev);
            op.on_event(0, &brute, &key, f, &ev, &mut out, &mut timers);
        };
        for i in 0..1000 {
            feed(&mut op, event(i, "a", i as i64, (i % 250) as u8, 1));
        }
        assert_eq!(op.key_count(), 0);
        // A failure is kept: it may start a match.
        feed(&mut op, event(1000, "a", 1000, 7, 0));
        assert_eq!(op.key_count(), 1);
        assert!(out.is_empty());
    }
}
