//! Events: the decoded unit of input that flows through the engine.
//!
//! This module owns [`Event`] and re-exports the time ([`time`]) and
//! canonical JSON output ([`json`]) helpers it is built on.
//!
//! Invariant: an [`Event`]'s `fields` is always a JSON object (the whole
//! input object, including its type and time members), `stream` is the
//! string value of its type field, and `raw` is the exact input text with
//! surrounding JSON white space trimmed. Events are totally ordered by
//! [`Event::order_cmp`]: time first, then `raw` bytewise.

pub mod doc;
pub mod json;
pub mod time;

use std::cmp::Ordering;

pub use doc::{Doc, NodeRef};
pub use time::{EventTime, TimeUnit};

/// Asks the CPU to cache the first 512 bytes of `items` (a hint, ignored
/// on other architectures than x86-64): for data read soon by a thread
/// other than the one that wrote it.
pub fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = items.as_ptr().cast::<u8>();
        for off in (0..std::mem::size_of_val(items).min(512)).step_by(64) {
            // SAFETY: a prefetch is a hint: it neither faults nor changes
            // memory, and the address is inside `items`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off).cast::<i8>()) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}

/// A stream name: held inline up to 23 bytes (every practical name), so
/// decoding an event allocates nothing for it.
pub type Stream = smol_str::SmolStr;

/// One decoded event. Cheap to share: the engine holds `Arc<Event>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The stream the event belongs to (value of the type field).
    pub stream: Stream,
    /// Event time (or arrival time when configured and absent).
    pub time: EventTime,
    /// The whole decoded object (its root is always an object), which
    /// holds the input text too.
    pub fields: Doc,
}

impl Event {
    /// Deterministic total order: by time, then by raw text bytewise.
    pub fn order_cmp(&self, other: &Event) -> Ordering {
        self.time
            .cmp(&other.time)
            .then_with(|| self.raw().as_bytes().cmp(other.raw().as_bytes()))
    }

    /// The input text, trimmed of surrounding JSON white space.
    pub fn raw(&self) -> &str {
        self.fields.input()
    }

    /// A top-level member of the event object.
    pub fn get(&self, field: &str) -> Option<NodeRef<'_>> {
        self.fields.root().get(field)
    }

    /// The event object as compact canonical JSON (see [`json::compact`]).
    pub fn compact_json(&self) -> String {
        let mut out = String::new();
        self.fields.root().write_compact(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(time: i64, raw: &str) -> Event {
        Event {
            stream: "s".into(),
            time: EventTime(time),
            fields: Doc::parse(raw).expect("test json"),
        }
    }

    #[test]
    fn order_by_time_then_raw_bytes() {
        let a = ev(1, r#"{"type":"s","b":1}"#);
        let b = ev(1, r#"{"type":"s","a":1}"#);
        let c = ev(0, r#"{"type":"s","z":1}"#);
        let d = ev(-5, r#"{"type":"s","z":1}"#);
        assert_eq!(a.order_cmp(&b), Ordering::Greater);
        assert_eq!(b.order_cmp(&a), Ordering::Less);
        assert_eq!(a.order_cmp(&a.clone()), Ordering::Equal);
        assert_eq!(c.order_cmp(&a), Ordering::Less);
        assert_eq!(d.order_cmp(&c), Ordering::Less);
        // Bytewise, not char-wise or locale: 'Z' (0x5a) < 'a' (0x61) < 'é' (0xc3 ..).
        let upper = ev(1, r#"{"k":"Z"}"#);
        let lower = ev(1, r#"{"k":"a"}"#);
        let accent = ev(1, r#"{"k":"é"}"#);
        assert_eq!(upper.order_cmp(&lower), Ordering::Less);
        assert_eq!(lower.order_cmp(&accent), Ordering::Less);
        // A prefix sorts first.
        let short = ev(1, "{}");
        let long = ev(1, "{} ");
        assert_eq!(short.order_cmp(&long), Ordering::Less);

        let mut v = [a.clone(), c.clone(), b.clone(), d.clone()];
        v.sort_by(Event::order_cmp);
        assert_eq!(v, [d, c, b, a]);
    }

    #[test]
    fn accessors() {
        let e = ev(1, r#"{"type":"s","n":2.0,"u":"ü"}"#);
        assert_eq!(e.get("n").map(|n| n.to_value()), Some(json!(2.0)));
        assert!(e.get("missing").is_none());
        assert_eq!(e.compact_json(), r#"{"type":"s","n":2,"u":"ü"}"#);
    }
}
