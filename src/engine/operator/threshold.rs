//! Threshold rules (rule-language.md 6): sliding windows fire on the edges
//! of their condition; tumbling/hopping and session windows are evaluated
//! once when they close.
//!
//! State per key: the argument values of the events in its window(s). A key
//! is dropped when its last window closes (sliding: when a timer leaves it
//! empty).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{KeyMap, NewTimers, slot};
use crate::engine::aggregate::{Arg, ArgForm, Args, Columns, Sliding};
use crate::engine::expr::{self, Ctx, eval, test};
use crate::engine::key::{Key, whole_text};
use crate::engine::snapshot::{OpSnapshot, ThresholdKeySnap};
use crate::engine::{Match, Status};
use crate::event::{Event, EventTime};
use crate::lang::program::{Aggregate, Threshold, Window};

enum KeyState {
    Sliding {
        win: Sliding,
        on: bool,
    },
    /// Open windows by start time (tumbling windows too).
    Hopping(BTreeMap<EventTime, Columns>),
    Session {
        start: EventTime,
        last: EventTime,
        win: Columns,
    },
}

pub(crate) struct ThresholdOp {
    keys: KeyMap<KeyState>,
    /// Scratch: the current event's arguments for an append-only window.
    args: Vec<Arg>,
    /// Per aggregate: an earlier aggregate whose argument is the same
    /// ([`same_args`]), copied instead of read from the event again.
    same: Vec<Option<usize>>,
}

/// Per aggregate, the first earlier one with the same argument in the same
/// form ([`event_arg`]): `avg(latency_ms)` and `p95(latency_ms)` read
/// `latency_ms` once per event. Aggregate names are canonical (no spaces),
/// so equal argument texts are equal expressions.
fn same_args(aggs: &[Aggregate]) -> Vec<Option<usize>> {
    let arg_text = |a: &Aggregate| a.name.split_once('(').map(|(_, rest)| rest.to_string());
    aggs.iter()
        .enumerate()
        .map(|(k, a)| {
            let form = ArgForm::of(a);
            if form == ArgForm::Row {
                return None;
            }
            aggs[..k]
                .iter()
                .position(|b| ArgForm::of(b) == form && arg_text(b) == arg_text(a))
        })
        .collect()
}

/// Aggregate `a`'s argument for the event of `cx`: [`Arg::of`] the
/// argument's value, with counts and numbers read in place (no value
/// built).
fn event_arg(a: &Aggregate, cx: &Ctx) -> Arg {
    match (&a.arg, ArgForm::of(a)) {
        (None, _) => Arg::Row,
        (Some(e), ArgForm::Present) => Arg::Present(!expr::is_null(e, cx)),
        (Some(e), ArgForm::Number) => Arg::Number(expr::number(e, cx)),
        (Some(e), _) => Arg::of(a, eval(e, cx)),
    }
}

impl ThresholdOp {
    pub(super) fn new(t: &Threshold) -> Self {
        ThresholdOp {
            keys: KeyMap::default(),
            args: Vec::new(),
            same: same_args(&t.aggs),
        }
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn snapshot(&self, prefix: &str) -> OpSnapshot {
        let keys: Vec<(String, ThresholdKeySnap)> = self
            .keys
            .iter()
            .map(|(k, st)| {
                let snap = match st {
                    KeyState::Sliding { win, on } => ThresholdKeySnap::Sliding {
                        rows: win.rows().map(|(t, a)| (t.0, a.to_vec())).collect(),
                        on: *on,
                    },
                    KeyState::Hopping(w) => ThresholdKeySnap::HoppingFolded {
                        windows: w.iter().map(|(s, c)| (s.0, c.snapshot())).collect(),
                    },
                    KeyState::Session { start, last, win } => ThresholdKeySnap::SessionFolded {
                        start: start.0,
                        last: last.0,
                        folded: win.snapshot(),
                    },
                };
                (whole_text(prefix, k), snap)
            })
            .collect();
        OpSnapshot::Threshold { keys }
    }

    /// The state of a snapshot; `None` if it does not fit the rule (or a
    /// key lacks `prefix`).
    pub(super) fn restore(
        t: &Threshold,
        keys: &[(String, ThresholdKeySnap)],
        prefix: &str,
    ) -> Option<Self> {
        let args = |v: &[Value]| -> Args { Args::from(v) };
        let rows = |r: &[Vec<Value>]| Columns::from_rows(&t.aggs, r.iter().map(Vec::as_slice));
        let mut map = KeyMap::default();
        for (k, snap) in keys {
            let st = match snap {
                ThresholdKeySnap::Sliding { rows, on } => KeyState::Sliding {
                    win: Sliding::from_rows(
                        &t.aggs,
                        rows.iter().map(|(t, a)| (EventTime(*t), args(a))),
                    ),
                    on: *on,
                },
                ThresholdKeySnap::Hopping { windows } => KeyState::Hopping(
                    windows
                        .iter()
                        .map(|(s, r)| (EventTime(*s), rows(r)))
                        .collect(),
                ),
                ThresholdKeySnap::Session {
                    start,
                    last,
                    rows: r,
                } => KeyState::Session {
                    start: EventTime(*start),
                    last: EventTime(*last),
                    win: rows(r),
                },
                ThresholdKeySnap::HoppingFolded { windows } => KeyState::Hopping(
                    windows
                        .iter()
                        .map(|(s, c)| Some((EventTime(*s), Columns::restore(&t.aggs, c)?)))
                        .collect::<Option<_>>()?,
                ),
                ThresholdKeySnap::SessionFolded {
                    start,
                    last,
                    folded,
                } => KeyState::Session {
                    start: EventTime(*start),
                    last: EventTime(*last),
                    win: Columns::restore(&t.aggs, folded)?,
                },
            };
            map.insert(super::short_key(k, prefix)?, st);
        }
        Some(ThresholdOp {
            keys: map,
            ..ThresholdOp::new(t)
        })
    }

    pub(super) fn on_event(
        &mut self,
        idx: usize,
        t: &Threshold,
        text: &str,
        ev: &Arc<Event>,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
    ) {
        let cx = Ctx::event(&ev.fields);
        let now = ev.time;
        if !matches!(t.window, Window::Sliding { .. }) {
            self.args.clear();
            for (a, same) in t.aggs.iter().zip(&self.same) {
                let arg = match same {
                    Some(j) => self.args[*j].clone(),
                    None => event_arg(a, &cx),
                };
                self.args.push(arg);
            }
        }
        match t.window {
            Window::Sliding { size } => {
                let args: Args = t
                    .aggs
                    .iter()
                    .map(|a| {
                        a.arg
                            .as_ref()
                            .map_or(Value::Null, |e| eval(e, &cx).into_owned())
                    })
                    .collect();
                let (key, st, new) = slot(&mut self.keys, text, || KeyState::Sliding {
                    win: Sliding::new(),
                    on: false,
                });
                let KeyState::Sliding { win, on } = st else {
                    return;
                };
                win.expire(&t.aggs, now.saturating_sub(size));
                win.push(&t.aggs, now, args);
                let vals = win.values(&t.aggs);
                if let Some(m) = edge(idx, t, &key, on, now, vals) {
                    out.push(m);
                }
                // One timer per key, at the instant its oldest row leaves;
                // it re-arms itself for the next one.
                if new {
                    timers.push((now.saturating_add(size), key));
                }
            }
            Window::Hopping { size, every } => {
                let (key, st, _) =
                    slot(&mut self.keys, text, || KeyState::Hopping(BTreeMap::new()));
                let KeyState::Hopping(windows) = st else {
                    return;
                };
                // Windows [k*every, k*every + size) that contain `now`.
                let t_ms = i128::from(now.millis());
                let (size, every) = (i128::from(size), i128::from(every));
                let k_max = t_ms.div_euclid(every);
                let mut k = (t_ms - size).div_euclid(every) + 1;
                while k <= k_max {
                    let start = k * every;
                    if let (Ok(s), Ok(e)) = (i64::try_from(start), i64::try_from(start + size))
                        && start <= t_ms
                        && t_ms < start + size
                    {
                        let win = windows
                            .entry(EventTime(s))
                            .or_insert_with(|| Columns::new(&t.aggs));
                        if win.is_empty() {
                            timers.push((EventTime(e), key.clone()));
                        }
                        win.add(&self.args);
                    }
                    k += 1;
                }
            }
            Window::Session { gap } => {
                let (key, st, new) = slot(&mut self.keys, text, || KeyState::Session {
                    start: now,
                    last: now,
                    win: Columns::new(&t.aggs),
                });
                let KeyState::Session { last, win, .. } = st else {
                    return;
                };
                *last = now;
                win.add(&self.args);
                if new {
                    timers.push((now.saturating_add(gap), key));
                }
            }
        }
    }

    pub(super) fn on_timer(
        &mut self,
        idx: usize,
        t: &Threshold,
        at: EventTime,
        key: &Key,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
    ) {
        let Some(st) = self.keys.get_mut(key) else {
            return;
        };
        let mut drop_key = false;
        match (st, t.window) {
            (KeyState::Sliding { win, on }, Window::Sliding { size }) => {
                win.expire(&t.aggs, at.saturating_sub(size));
                let vals = win.values(&t.aggs);
                if win.is_empty() {
                    drop_key = true;
                    if *on {
                        out.push(alert(idx, t, key.clone(), Status::Resolved, at, vals, None));
                    }
                } else {
                    if let Some(m) = edge(idx, t, key, on, at, vals) {
                        out.push(m);
                    }
                    if let Some(front) = win.rows().next() {
                        timers.push((front.0.saturating_add(size), key.clone()));
                    }
                }
            }
            (KeyState::Hopping(windows), Window::Hopping { size, .. }) => {
                let start = at.saturating_sub(size);
                if let Some(mut win) = windows.remove(&start) {
                    let vals = win.values(&t.aggs);
                    if !win.is_empty() && test(&t.when, &Ctx::aggregates(&vals)) {
                        let w = Some((start, at));
                        out.push(alert(idx, t, key.clone(), Status::Firing, at, vals, w));
                    }
                }
                drop_key = windows.is_empty();
            }
            (KeyState::Session { start, last, win }, Window::Session { gap })
                if last.saturating_add(gap) == at =>
            {
                let vals = win.values(&t.aggs);
                if test(&t.when, &Ctx::aggregates(&vals)) {
                    let w = Some((*start, at));
                    out.push(alert(idx, t, key.clone(), Status::Firing, at, vals, w));
                }
                drop_key = true;
            }
            (KeyState::Session { last, .. }, Window::Session { gap }) => {
                // The key's one timer came before the session's end: re-arm.
                let due = last.saturating_add(gap);
                if due > at {
                    timers.push((due, key.clone()));
                }
            }
            _ => {}
        }
        if drop_key {
            super::remove(&mut self.keys, key);
        }
    }
}

/// A sliding window's evaluation: an alert when the condition changes
/// (false → true fires, true → false resolves), none otherwise.
fn edge(
    idx: usize,
    t: &Threshold,
    key: &Key,
    on: &mut bool,
    at: EventTime,
    vals: Vec<Value>,
) -> Option<Match> {
    let holds = test(&t.when, &Ctx::aggregates(&vals));
    if holds == *on {
        return None;
    }
    *on = holds;
    let status = if holds {
        Status::Firing
    } else {
        Status::Resolved
    };
    Some(alert(idx, t, key.clone(), status, at, vals, None))
}

fn alert(
    idx: usize,
    t: &Threshold,
    key: Key,
    status: Status,
    time: EventTime,
    vals: Vec<Value>,
    window: Option<(EventTime, EventTime)>,
) -> Match {
    Match {
        rule: idx,
        key,
        status,
        time,
        values: t.aggs.iter().map(|a| a.name.clone()).zip(vals).collect(),
        window,
        events: Vec::new(),
        quantified: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::program::RuleKind;
    use crate::lang::{Options, load_texts};

    fn rule(text: &str) -> Threshold {
        let l = load_texts(vec![("r.rules".into(), text.into())], &Options::default());
        assert!(!l.has_errors(), "{}", l.render());
        match &l.program.rules[0].kind {
            RuleKind::Threshold(t) => t.clone(),
            _ => panic!("a threshold rule"),
        }
    }

    /// Aggregates with the same argument in the same form share one read
    /// of it; others (another form, another argument, `count()`) do not.
    #[test]
    fn aggregates_share_equal_arguments() {
        let t = rule(
            "rule r { key u from a window tumbling 1m when count() >= 1 and (avg(v) > 0 or p95(v) > 0 or count(v) > 0 or distinct(v) > 0 or max(w) > 0 or sum(v) > 0 or last(v) != null or first(v) != null or count() > 0) }",
        );
        let names: Vec<&str> = t.aggs.iter().map(|a| a.name.as_str()).collect();
        let same: Vec<Option<&str>> = same_args(&t.aggs)
            .into_iter()
            .map(|j| j.map(|j| names[j]))
            .collect();
        let expect: Vec<(&str, Option<&str>)> = vec![
            ("count()", None),
            ("avg(v)", None),
            ("p95(v)", Some("avg(v)")),
            ("count(v)", None),
            ("distinct(v)", None),
            ("max(w)", None),
            ("sum(v)", Some("avg(v)")),
            ("last(v)", None),
            ("first(v)", Some("last(v)")),
        ];
        assert_eq!(names.iter().copied().zip(same).collect::<Vec<_>>(), expect);
    }

    /// Windows checkpointed as rows (format 1) restore folded and close
    /// with the values the rows give; format 2 snapshots round-trip.
    #[test]
    fn row_snapshots_of_format_1_restore_folded() {
        let t = rule(
            "rule r { key u from a window tumbling 1m when count() >= 1 and (avg(v) > 0 or distinct(v) > 0) }",
        );
        let rows = vec![
            vec![Value::Null, serde_json::json!(1), serde_json::json!(1)],
            vec![Value::Null, serde_json::json!(2.5), serde_json::json!(2.5)],
            vec![Value::Null, serde_json::json!("x"), serde_json::json!("x")],
        ];
        let old = vec![(
            r#"{"u":"k"}"#.to_string(),
            ThresholdKeySnap::Hopping {
                windows: vec![(0, rows)],
            },
        )];
        // Operator-level keys: no prefix taken off.
        let mut op = ThresholdOp::restore(&t, &old, "").expect("fits");
        let again = ThresholdOp::restore(
            &t,
            match &op.snapshot("") {
                OpSnapshot::Threshold { keys } => keys,
                _ => panic!("threshold state"),
            },
            "",
        );
        for op in [&mut op, &mut again.expect("round trip")] {
            let (mut out, mut timers) = (Vec::new(), Vec::new());
            op.on_timer(
                0,
                &t,
                EventTime(60_000),
                &Key::from(r#"{"u":"k"}"#),
                &mut out,
                &mut timers,
            );
            assert_eq!(out.len(), 1);
            let vals: Vec<String> = out[0]
                .values
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            assert_eq!(vals, ["count()=3", "avg(v)=1.75", "distinct(v)=3"]);
            assert_eq!(op.key_count(), 0, "the closed window's key is freed");
        }
    }
}
