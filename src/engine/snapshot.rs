//! Explicit, versioned snapshot structs of the engine's state, for
//! checkpoints. Internal types never derive `Serialize`; each operator
//! converts its state to and from these.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Doc, Event, EventTime};

/// An event as stored: its stream, time and input text (fields are parsed
/// again from the text on restore).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSnap {
    pub stream: String,
    pub time: i64,
    pub raw: String,
}

impl EventSnap {
    pub fn of(ev: &Event) -> Self {
        EventSnap {
            stream: ev.stream.to_string(),
            time: ev.time.0,
            raw: ev.raw().to_owned(),
        }
    }

    pub fn restore(&self) -> Option<Arc<Event>> {
        let fields = Doc::parse(&self.raw).ok()?;
        Some(Arc::new(Event {
            stream: self.stream.as_str().into(),
            time: EventTime(self.time),
            fields,
        }))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineSnapshot {
    pub rules: Vec<RuleSnapshot>,
}

impl EngineSnapshot {
    /// Puts every rule's keys in bytewise order, the order a checkpoint
    /// holds them in. Operators snapshot their keys unordered, so that a
    /// checkpoint's sort runs on its writer's thread, not the engine's.
    pub fn sort_keys(&mut self) {
        for r in &mut self.rules {
            r.state.sort_keys();
        }
    }
}

/// One rule's state; restored only into a rule with the same name and text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleSnapshot {
    pub name: String,
    pub source: String,
    pub state: OpSnapshot,
    /// Pending timers: (instant, key).
    pub timers: Vec<(i64, String)>,
    pub matches: u64,
    pub key_missing: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpSnapshot {
    Filter,
    Absence {
        /// (key, last event time, fired)
        keys: Vec<(String, i64, bool)>,
    },
    Threshold {
        keys: Vec<(String, ThresholdKeySnap)>,
    },
    Sequence {
        next_seq: u64,
        keys: Vec<(String, SequenceKeySnap)>,
    },
}

impl OpSnapshot {
    /// Keys in bytewise order (a rule's keys are distinct).
    fn sort_keys(&mut self) {
        match self {
            OpSnapshot::Filter => {}
            OpSnapshot::Absence { keys } => keys.sort_unstable_by(|a, b| a.0.cmp(&b.0)),
            OpSnapshot::Threshold { keys } => keys.sort_unstable_by(|a, b| a.0.cmp(&b.0)),
            OpSnapshot::Sequence { keys, .. } => keys.sort_unstable_by(|a, b| a.0.cmp(&b.0)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "window", rename_all = "snake_case")]
pub enum ThresholdKeySnap {
    Sliding {
        rows: Vec<(i64, Vec<Value>)>,
        on: bool,
    },
    /// Checkpoint format 1: each window's rows.
    Hopping {
        windows: Vec<(i64, Vec<Vec<Value>>)>,
    },
    /// Checkpoint format 1.
    Session {
        start: i64,
        last: i64,
        rows: Vec<Vec<Value>>,
    },
    /// Tumbling and hopping windows, folded (format 2).
    HoppingFolded { windows: Vec<(i64, ColumnsSnap)> },
    /// A session, folded (format 2).
    SessionFolded {
        start: i64,
        last: i64,
        folded: ColumnsSnap,
    },
}

/// A folded append-only window (`aggregate::Columns`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnsSnap {
    pub rows: u64,
    pub cols: Vec<ColumnSnap>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnSnap {
    Rows,
    NonNull(u64),
    Sum { s: f64, n: u64 },
    Min(Option<f64>),
    Max(Option<f64>),
    Numbers(Vec<f64>),
    Distinct(Vec<Value>),
    First(Option<Value>),
    Last(Option<Value>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SequenceKeySnap {
    pub buf: Vec<(u64, EventSnap)>,
    pub candidates: Vec<CandidateSnap>,
    pub consumed: u64,
    pub cleanup_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CandidateSnap {
    pub deadline: i64,
    pub p_seq: u64,
    pub first_seq: u64,
    pub bound: Vec<Vec<EventSnap>>,
}
