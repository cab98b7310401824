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
use crate::engine::aggregate::{Args, Sliding, compute};
use crate::engine::expr::{Ctx, eval, test};
use crate::engine::key::Key;
use crate::engine::snapshot::{OpSnapshot, ThresholdKeySnap};
use crate::engine::{Match, Status};
use crate::event::{Event, EventTime};
use crate::lang::program::{Threshold, Window};

enum KeyState {
    Sliding {
        win: Sliding,
        on: bool,
    },
    /// Open windows by start time.
    Hopping(BTreeMap<EventTime, Vec<Args>>),
    Session {
        start: EventTime,
        last: EventTime,
        rows: Vec<Args>,
    },
}

pub(crate) struct ThresholdOp {
    keys: KeyMap<KeyState>,
}

impl ThresholdOp {
    pub(super) fn new(_t: &Threshold) -> Self {
        ThresholdOp {
            keys: KeyMap::default(),
        }
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn snapshot(&self) -> OpSnapshot {
        let rows = |r: &[Args]| -> Vec<Vec<Value>> { r.iter().map(|a| a.to_vec()).collect() };
        let mut keys: Vec<(String, ThresholdKeySnap)> = self
            .keys
            .iter()
            .map(|(k, st)| {
                let snap = match st {
                    KeyState::Sliding { win, on } => ThresholdKeySnap::Sliding {
                        rows: win.rows().map(|(t, a)| (t.0, a.to_vec())).collect(),
                        on: *on,
                    },
                    KeyState::Hopping(w) => ThresholdKeySnap::Hopping {
                        windows: w.iter().map(|(s, r)| (s.0, rows(r))).collect(),
                    },
                    KeyState::Session {
                        start,
                        last,
                        rows: r,
                    } => ThresholdKeySnap::Session {
                        start: start.0,
                        last: last.0,
                        rows: rows(r),
                    },
                };
                (k.to_string(), snap)
            })
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        OpSnapshot::Threshold { keys }
    }

    pub(super) fn restore(t: &Threshold, keys: &[(String, ThresholdKeySnap)]) -> Self {
        let args = |v: &[Value]| -> Args { Args::from(v) };
        ThresholdOp {
            keys: keys
                .iter()
                .map(|(k, snap)| {
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
                                .map(|(s, r)| (EventTime(*s), r.iter().map(|a| args(a)).collect()))
                                .collect(),
                        ),
                        ThresholdKeySnap::Session { start, last, rows } => KeyState::Session {
                            start: EventTime(*start),
                            last: EventTime(*last),
                            rows: rows.iter().map(|a| args(a)).collect(),
                        },
                    };
                    (Key::from(k.as_str()), st)
                })
                .collect(),
        }
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
        let args: Args = t
            .aggs
            .iter()
            .map(|a| {
                a.arg
                    .as_ref()
                    .map_or(Value::Null, |e| eval(e, &cx).into_owned())
            })
            .collect();
        let now = ev.time;
        match t.window {
            Window::Sliding { size } => {
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
                        let rows = windows.entry(EventTime(s)).or_default();
                        if rows.is_empty() {
                            timers.push((EventTime(e), key.clone()));
                        }
                        rows.push(args.clone());
                    }
                    k += 1;
                }
            }
            Window::Session { gap } => {
                let (key, st, new) = slot(&mut self.keys, text, || KeyState::Session {
                    start: now,
                    last: now,
                    rows: Vec::new(),
                });
                let KeyState::Session { last, rows, .. } = st else {
                    return;
                };
                *last = now;
                rows.push(args);
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
                if let Some(rows) = windows.remove(&start) {
                    let vals = compute(&t.aggs, rows.iter());
                    if !rows.is_empty() && test(&t.when, &Ctx::aggregates(&vals)) {
                        let w = Some((start, at));
                        out.push(alert(idx, t, key.clone(), Status::Firing, at, vals, w));
                    }
                }
                drop_key = windows.is_empty();
            }
            (KeyState::Session { start, last, rows }, Window::Session { gap })
                if last.saturating_add(gap) == at =>
            {
                let vals = compute(&t.aggs, rows.iter());
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
