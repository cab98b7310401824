//! Matches → alerts (rule-language.md 9): throttling, stable ids, labels,
//! rendered messages, and the alert's JSON text.
//!
//! Throttling is applied here, after matching and consumption, so it never
//! changes rule state.

mod stage;

use std::fmt::Write;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::engine::{Key, Status};
use crate::event::{Event, EventTime, json};
use crate::lang::program::Rule;

pub use stage::{AlertStage, StageSnapshot, StageStats};

/// One alert, ready to be written or delivered.
#[derive(Debug, Clone)]
pub struct Alert {
    pub id: String,
    pub rule: Arc<Rule>,
    pub status: Status,
    pub key: Key,
    pub time: EventTime,
    pub values: Vec<(String, Value)>,
    pub window: Option<(EventTime, EventTime)>,
    pub message: String,
    pub events: Vec<(String, Vec<Arc<Event>>)>,
}

/// The id: first 32 hex digits of SHA-256 of
/// `[rule, key, status, time, window_start]` as compact JSON.
pub fn alert_id(
    rule: &str,
    key: &str,
    status: Status,
    time: EventTime,
    window_start: Option<EventTime>,
) -> String {
    let mut text = String::with_capacity(96);
    text.push('[');
    json::write_string(&mut text, rule);
    text.push(',');
    text.push_str(key);
    text.push_str(",\"");
    text.push_str(status.as_str());
    text.push_str("\",\"");
    time.write_rfc3339(&mut text);
    text.push_str("\",");
    match window_start {
        Some(w) => {
            text.push('"');
            w.write_rfc3339(&mut text);
            text.push('"');
        }
        None => text.push_str("null"),
    }
    text.push(']');
    let digest = Sha256::digest(text.as_bytes());
    let mut id = String::with_capacity(32);
    for b in &digest[..16] {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// Steps with more than this many events keep the first and last half.
const MAX_STEP_EVENTS: usize = 100;

impl Alert {
    /// The alert as one line of compact JSON; events are echoed as received.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(256);
        s.push_str("{\"id\":\"");
        s.push_str(&self.id);
        s.push_str("\",\"rule\":");
        json::write_string(&mut s, &self.rule.name);
        s.push_str(",\"status\":\"");
        s.push_str(self.status.as_str());
        s.push_str("\",\"severity\":\"");
        s.push_str(self.rule.severity.as_str());
        s.push_str("\",\"key\":");
        s.push_str(&self.key);
        s.push_str(",\"time\":\"");
        self.time.write_rfc3339(&mut s);
        s.push_str("\",\"values\":{");
        for (i, (name, v)) in self.values.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json::write_string(&mut s, name);
            s.push(':');
            json::write_compact(&mut s, v);
        }
        s.push_str("},\"window\":");
        match self.window {
            Some((start, end)) => {
                s.push_str("{\"start\":\"");
                start.write_rfc3339(&mut s);
                s.push_str("\",\"end\":\"");
                end.write_rfc3339(&mut s);
                s.push_str("\"}");
            }
            None => s.push_str("null"),
        }
        s.push_str(",\"labels\":{");
        for (i, (k, v)) in self.rule.labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json::write_string(&mut s, k);
            s.push(':');
            json::write_string(&mut s, v);
        }
        s.push_str("},\"message\":");
        json::write_string(&mut s, &self.message);
        s.push_str(",\"events\":{");
        for (i, (name, evs)) in self.events.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json::write_string(&mut s, name);
            s.push_str(":[");
            let n = evs.len();
            let keep = |j: usize| n <= MAX_STEP_EVENTS || j < 50 || j >= n - 50;
            let mut first = true;
            for (j, ev) in evs.iter().enumerate() {
                if !keep(j) {
                    continue;
                }
                if !first {
                    s.push(',');
                }
                first = false;
                s.push_str(ev.raw());
            }
            s.push(']');
        }
        s.push_str("}}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_of_the_spec_example_text() {
        // ["r",{"k":2,"name":"José"},"firing","1970-01-01T00:00:01.000Z",null]
        let id = alert_id(
            "r",
            "{\"k\":2,\"name\":\"José\"}",
            Status::Firing,
            EventTime(1000),
            None,
        );
        assert_eq!(id, "260436aef0d41c62234c359c9f767bc6");
    }
}
