//! Explicit, versioned snapshot structs of the engine's state, for
//! checkpoints. Internal types never derive `Serialize`; each operator
//! converts its state to and from these.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Doc, Event, EventTime};

/// An event as stored: its stream, time and input text (fields are parsed
/// again from the text on restore). A snapshot taken from the engine
/// shares its events ([`EventSnap::Live`]): taking it copies no text, and
/// the text is written out on the checkpoint thread in the same form as a
/// stored one.
#[derive(Debug, Clone)]
pub enum EventSnap {
    Live(Arc<Event>),
    Stored(StoredEvent),
}

/// The serialized form of an [`EventSnap`]. `raw` is written as the
/// event's JSON itself, not as a string holding it: copied as it is instead
/// of escaped quote by quote (most of a checkpoint's bytes are event text).
/// A string is read too (checkpoint format 2 wrote one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub stream: String,
    pub time: i64,
    #[serde(serialize_with = "write_raw", deserialize_with = "read_raw")]
    pub raw: String,
}

/// [`StoredEvent`] borrowed from a live event, for writing.
#[derive(Serialize)]
struct StoredRef<'a> {
    stream: &'a str,
    time: i64,
    #[serde(serialize_with = "write_raw")]
    raw: &'a str,
}

/// An event's text as JSON in place; as a string if it is not JSON (never
/// so for a decoded event, but a snapshot must not fail on it).
fn write_raw<T: AsRef<str>, S: serde::Serializer>(raw: &T, s: S) -> Result<S::Ok, S::Error> {
    let raw = raw.as_ref();
    match serde_json::from_str::<&serde_json::value::RawValue>(raw) {
        Ok(json) => json.serialize(s),
        Err(_) => s.serialize_str(raw),
    }
}

/// The text written by [`write_raw`]: a JSON string is unquoted (format 2,
/// or text that was not JSON), anything else is the event's JSON as it was.
fn read_raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let json = Box::<serde_json::value::RawValue>::deserialize(d)?;
    if json.get().starts_with('"') {
        serde_json::from_str(json.get()).map_err(serde::de::Error::custom)
    } else {
        Ok(Box::<str>::from(json).into_string())
    }
}

impl Serialize for EventSnap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EventSnap::Live(ev) => StoredRef {
                stream: ev.stream.as_str(),
                time: ev.time.0,
                raw: ev.raw(),
            }
            .serialize(s),
            EventSnap::Stored(e) => e.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for EventSnap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StoredEvent::deserialize(d).map(EventSnap::Stored)
    }
}

impl EventSnap {
    pub fn of(ev: &Arc<Event>) -> Self {
        EventSnap::Live(ev.clone())
    }

    pub fn restore(&self) -> Option<Arc<Event>> {
        match self {
            EventSnap::Live(ev) => Some(ev.clone()),
            EventSnap::Stored(e) => {
                let fields = Doc::parse(&e.raw).ok()?;
                Some(Arc::new(Event {
                    stream: e.stream.as_str().into(),
                    time: EventTime(e.time),
                    fields,
                }))
            }
        }
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

/// Written as an object with its `kind` first (serde's internally tagged
/// form); read by [`OpSnapshot`]'s own `Deserialize`, which takes the
/// `kind` and then reads the other fields straight from the input. (Serde's
/// derived reading of a tagged enum buffers the whole object first: twice
/// the memory for a rule holding a million keys, and no way to read an
/// event's JSON text in place, which [`StoredEvent`] needs.)
#[derive(Debug, Clone, Serialize)]
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

impl<'de> Deserialize<'de> for OpSnapshot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OpVisitor)
    }
}

struct OpVisitor;

/// The fields of each kind of [`OpSnapshot`] after its `kind`.
#[derive(Deserialize)]
struct NoFields {}
#[derive(Deserialize)]
struct AbsenceFields {
    keys: Vec<(String, i64, bool)>,
}
#[derive(Deserialize)]
struct ThresholdFields {
    keys: Vec<(String, ThresholdKeySnap)>,
}
#[derive(Deserialize)]
struct SequenceFields {
    next_seq: u64,
    keys: Vec<(String, SequenceKeySnap)>,
}

impl<'de> serde::de::Visitor<'de> for OpVisitor {
    type Value = OpSnapshot;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a rule's state: an object whose first member is its `kind`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OpSnapshot, A::Error> {
        use serde::de::Error;
        if map.next_key::<String>()?.as_deref() != Some("kind") {
            return Err(A::Error::custom(
                "a rule's state must start with its `kind`",
            ));
        }
        let kind: String = map.next_value()?;
        let rest = serde::de::value::MapAccessDeserializer::new(map);
        Ok(match kind.as_str() {
            "filter" => {
                NoFields::deserialize(rest)?;
                OpSnapshot::Filter
            }
            "absence" => OpSnapshot::Absence {
                keys: AbsenceFields::deserialize(rest)?.keys,
            },
            "threshold" => OpSnapshot::Threshold {
                keys: ThresholdFields::deserialize(rest)?.keys,
            },
            "sequence" => {
                let f = SequenceFields::deserialize(rest)?;
                OpSnapshot::Sequence {
                    next_seq: f.next_seq,
                    keys: f.keys,
                }
            }
            other => {
                return Err(A::Error::unknown_variant(
                    other,
                    &["filter", "absence", "threshold", "sequence"],
                ));
            }
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot shares the engine's events but writes them exactly as a
    /// checkpoint stores them, and reads them back as stored ones.
    #[test]
    fn live_events_are_written_as_stored_ones() {
        let text = r#"{"type":"order","ts":1700000000123,"id":"o-1","total":12.5}"#;
        let ev = Arc::new(crate::decode::test_event(text));
        let live = EventSnap::of(&ev);
        let stored = EventSnap::Stored(StoredEvent {
            stream: "order".into(),
            time: 1_700_000_000_123,
            raw: text.into(),
        });
        let written = serde_json::to_string(&live).expect("serializes");
        assert_eq!(written, serde_json::to_string(&stored).expect("serializes"));
        // The event's JSON in place, not escaped into a string.
        assert_eq!(
            written,
            format!(r#"{{"stream":"order","time":1700000000123,"raw":{text}}}"#)
        );
        let read: EventSnap = serde_json::from_str(&written).expect("deserializes");
        assert!(matches!(read, EventSnap::Stored(_)));
        let back = read.restore().expect("parses");
        assert_eq!(*back, *ev);
        // A live one restores to the same event, not a copy.
        assert!(Arc::ptr_eq(&live.restore().unwrap(), &ev));
    }

    /// Format 2 held the text as a JSON string; it reads back to the same
    /// event. Text that is not JSON is written as a string and survives.
    #[test]
    fn event_text_as_a_string_is_read_too() {
        let text = r#"{"type":"order", "ts":1700000000123,"note":"a \"quoted\" word"}"#;
        let old = format!(
            r#"{{"stream":"order","time":1700000000123,"raw":{}}}"#,
            serde_json::to_string(text).unwrap()
        );
        let read: EventSnap = serde_json::from_str(&old).expect("deserializes");
        let EventSnap::Stored(e) = &read else {
            panic!("read as stored")
        };
        assert_eq!(e.raw, text, "the exact text, spaces and escapes included");
        assert_eq!(read.restore().expect("parses").raw(), text);
        let new: EventSnap = serde_json::from_str(&serde_json::to_string(&read).unwrap()).unwrap();
        assert!(matches!(new, EventSnap::Stored(ref n) if n.raw == text));

        let odd = EventSnap::Stored(StoredEvent {
            stream: "s".into(),
            time: 1,
            raw: "not json".into(),
        });
        let written = serde_json::to_string(&odd).unwrap();
        assert!(written.contains(r#""raw":"not json""#), "{written}");
        let back: EventSnap = serde_json::from_str(&written).unwrap();
        assert!(matches!(back, EventSnap::Stored(ref n) if n.raw == "not json"));
    }
}
