//! Absence rules (rule-language.md 7): once a key is seen, silence for `D`
//! fires at `last + D`; the next event resolves and restarts the timer.
//!
//! State per key: the last event time and whether the silence has fired. A
//! fired key is kept until it resolves.

use std::sync::Arc;

use super::{KeyMap, NewTimers, slot};
use crate::engine::key::{Key, whole_text};
use crate::engine::snapshot::OpSnapshot;
use crate::engine::{Match, Status};
use crate::event::{Event, EventTime};
use crate::lang::program::Absence;

#[derive(Debug, Clone, Copy)]
struct KeyState {
    last: EventTime,
    fired: bool,
}

#[derive(Default)]
pub(crate) struct AbsenceOp {
    keys: KeyMap<KeyState>,
}

fn alert(idx: usize, key: Key, status: Status, time: EventTime) -> Match {
    Match {
        rule: idx,
        key,
        status,
        time,
        values: Vec::new(),
        window: None,
        events: Vec::new(),
        quantified: Vec::new(),
    }
}

impl AbsenceOp {
    pub(super) fn snapshot(&self, prefix: &str) -> OpSnapshot {
        let keys: Vec<(String, i64, bool)> = self
            .keys
            .iter()
            .map(|(k, s)| (whole_text(prefix, k), s.last.0, s.fired))
            .collect();
        OpSnapshot::Absence { keys }
    }

    /// The state of a snapshot; `None` if a key lacks `prefix`.
    pub(super) fn restore(keys: &[(String, i64, bool)], prefix: &str) -> Option<Self> {
        Some(AbsenceOp {
            keys: keys
                .iter()
                .map(|(k, last, fired)| {
                    Some((
                        super::short_key(k, prefix)?,
                        KeyState {
                            last: EventTime(*last),
                            fired: *fired,
                        },
                    ))
                })
                .collect::<Option<_>>()?,
        })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn on_event(
        &mut self,
        idx: usize,
        rule: &Absence,
        text: &str,
        ev: &Arc<Event>,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
    ) {
        let (key, st, new) = slot(&mut self.keys, text, || KeyState {
            last: ev.time,
            fired: false,
        });
        // One timer per key: a key that has not fired has one pending (at
        // most at `last + D`), which re-arms itself when it comes early.
        let arm = new || st.fired;
        if st.fired {
            out.push(alert(idx, key.clone(), Status::Resolved, ev.time));
        }
        st.fired = false;
        st.last = ev.time;
        if arm {
            timers.push((ev.time.saturating_add(rule.duration), key));
        }
    }

    pub(super) fn on_timer(
        &mut self,
        idx: usize,
        rule: &Absence,
        at: EventTime,
        key: &Key,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
    ) {
        let Some(st) = self.keys.get_mut(key) else {
            return;
        };
        if st.fired {
            return;
        }
        let due = st.last.saturating_add(rule.duration);
        if due == at {
            st.fired = true;
            out.push(alert(idx, key.clone(), Status::Firing, at));
        } else if due > at {
            timers.push((due, key.clone()));
        }
    }
}
