//! Filter rules: one firing alert per matching event, at its time. Stateless.

use std::sync::Arc;

use crate::engine::key::Key;
use crate::engine::{Match, Status};
use crate::event::Event;

pub(crate) struct Filter;

pub(super) fn on_event(idx: usize, key: Key, ev: &Arc<Event>, out: &mut Vec<Match>) {
    out.push(Match {
        rule: idx,
        key,
        status: Status::Firing,
        time: ev.time,
        values: Vec::new(),
        window: None,
        events: vec![("event".to_string(), vec![ev.clone()])],
        quantified: vec![false],
    });
}
