//! Absence rules (rule-language.md 7): once a key is seen, silence for `D`
//! fires at `last + D`; the next event resolves and restarts the timer.
//!
//! State per key: the last event time and whether the silence has fired. A
//! fired key is kept until it resolves.

use std::sync::Arc;

use super::NewTimers;
use crate::engine::key::{FastMap, Key};
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
    keys: FastMap<Key, KeyState>,
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
    pub(super) fn snapshot(&self) -> OpSnapshot {
        let mut keys: Vec<(String, i64, bool)> = self
            .keys
            .iter()
            .map(|(k, s)| (k.to_string(), s.last.0, s.fired))
            .collect();
        keys.sort();
        OpSnapshot::Absence { keys }
    }

    pub(super) fn restore(keys: &[(String, i64, bool)]) -> Self {
        AbsenceOp {
            keys: keys
                .iter()
                .map(|(k, last, fired)| {
                    (
                        Key::from(k.as_str()),
                        KeyState {
                            last: EventTime(*last),
                            fired: *fired,
                        },
                    )
                })
                .collect(),
        }
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn on_event(
        &mut self,
        idx: usize,
        rule: &Absence,
        key: Key,
        ev: &Arc<Event>,
        out: &mut Vec<Match>,
        timers: &mut NewTimers,
    ) {
        let st = self.keys.entry(key.clone()).or_insert(KeyState {
            last: ev.time,
            fired: false,
        });
        if st.fired {
            out.push(alert(idx, key.clone(), Status::Resolved, ev.time));
        }
        st.fired = false;
        st.last = ev.time;
        timers.push((ev.time.saturating_add(rule.duration), key));
    }

    pub(super) fn on_timer(
        &mut self,
        idx: usize,
        rule: &Absence,
        at: EventTime,
        key: &Key,
        out: &mut Vec<Match>,
    ) {
        if let Some(st) = self.keys.get_mut(key)
            && !st.fired
            && st.last.saturating_add(rule.duration) == at
        {
            st.fired = true;
            out.push(alert(idx, key.clone(), Status::Firing, at));
        }
    }
}
