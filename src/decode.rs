//! Decoding one input line (bytes) into an [`Event`], or a reason to reject it.
//!
//! This module owns the input contract: UTF-8 check, JSON white space
//! trimming, blank-line skipping, JSON parsing, and extraction of the event's
//! stream (type field) and time (time field), plus the snake_case
//! [`RejectReason`] vocabulary used everywhere rejects are reported.
//!
//! Invariant: [`Decoder::decode`] never panics on any input; it parses the
//! input exactly once, and a decoded event keeps the whole object as
//! `fields` and the trimmed input slice, byte for byte, as `raw`. Checks run
//! in a fixed order (UTF-8, blank, JSON, object, type, time), so each input
//! has exactly one outcome.

use std::fmt;

use serde_json::Value;

use crate::event::time::{self, TimeError};
use crate::event::{Event, EventTime, TimeUnit, json};

/// What to do with an event whose time field is absent or `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingTime {
    /// Reject it as `missing_time`.
    #[default]
    Reject,
    /// Stamp it with its arrival time.
    Arrival,
}

/// How input objects map to events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct DecodeConfig {
    /// Member naming the event's stream (default `type`); must be a string.
    pub type_field: String,
    /// Member holding the event time (default `ts`).
    pub time_field: String,
    /// Unit of numeric times (default `ms`).
    pub time_unit: TimeUnit,
    /// Policy for absent / `null` times (default reject).
    pub missing_time: MissingTime,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            type_field: "type".to_owned(),
            time_field: "ts".to_owned(),
            time_unit: TimeUnit::Ms,
            missing_time: MissingTime::Reject,
        }
    }
}

/// Why an input line was not accepted as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not parseable as a single JSON value (including trailing garbage).
    InvalidJson,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// Valid JSON but not an object.
    NotObject,
    /// Type field absent or not a string.
    MissingType,
    /// Time field absent or `null` (and no arrival stamping).
    MissingTime,
    /// Time field present but not a valid time.
    BadTime,
    /// Line longer than the daemon's limit (daemon only).
    TooLarge,
    /// Time too far ahead of the clock (daemon only).
    FutureTime,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::InvalidJson,
        RejectReason::InvalidUtf8,
        RejectReason::NotObject,
        RejectReason::MissingType,
        RejectReason::MissingTime,
        RejectReason::BadTime,
        RejectReason::TooLarge,
        RejectReason::FutureTime,
    ];

    /// The snake_case name used in output, e.g. `missing_type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::NotObject => "not_object",
            RejectReason::MissingType => "missing_type",
            RejectReason::MissingTime => "missing_time",
            RejectReason::BadTime => "bad_time",
            RejectReason::TooLarge => "too_large",
            RejectReason::FutureTime => "future_time",
        }
    }

    /// Inverse of [`RejectReason::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RejectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The outcome of decoding one input line.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A valid event.
    Event(Event),
    /// Empty or all JSON white space: skipped, neither read nor rejected.
    Blank,
    /// Rejected for the given reason.
    Rejected(RejectReason),
}

/// Decodes input lines according to a [`DecodeConfig`].
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    cfg: DecodeConfig,
}

/// JSON's insignificant white space (RFC 8259): space, tab, LF, CR.
fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `s` without leading/trailing JSON white space.
pub fn trim_json_ws(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_json_ws(c as u8))
}

impl Decoder {
    /// A decoder for `cfg`.
    pub fn new(cfg: DecodeConfig) -> Self {
        Decoder { cfg }
    }

    /// The configuration in use.
    pub fn config(&self) -> &DecodeConfig {
        &self.cfg
    }

    /// Decodes one line. `arrival` is used only with [`MissingTime::Arrival`]
    /// for events whose time is absent or `null`; if it is `None` there,
    /// the event is rejected as `missing_time`.
    pub fn decode(&self, bytes: &[u8], arrival: Option<EventTime>) -> Decoded {
        match self.decode_inner(bytes, arrival) {
            Ok(Some(event)) => Decoded::Event(event),
            Ok(None) => Decoded::Blank,
            Err(reason) => Decoded::Rejected(reason),
        }
    }

    fn decode_inner(
        &self,
        bytes: &[u8],
        arrival: Option<EventTime>,
    ) -> Result<Option<Event>, RejectReason> {
        let text = std::str::from_utf8(bytes).map_err(|_| RejectReason::InvalidUtf8)?;
        let raw = trim_json_ws(text);
        if raw.is_empty() {
            return Ok(None);
        }
        let Tree(value) = serde_json::from_str(raw).map_err(|_| RejectReason::InvalidJson)?;
        let Value::Object(map) = &value else {
            return Err(RejectReason::NotObject);
        };
        let stream = match json::member(map, &self.cfg.type_field) {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(RejectReason::MissingType),
        };
        let time = match json::member(map, &self.cfg.time_field) {
            None | Some(Value::Null) => self.missing_time(arrival)?,
            Some(v) => match time::from_json(v, self.cfg.time_unit) {
                Ok(t) => t,
                Err(TimeError::Missing) => self.missing_time(arrival)?,
                Err(TimeError::Bad) => return Err(RejectReason::BadTime),
            },
        };
        Ok(Some(Event {
            stream,
            time,
            fields: value,
            raw: raw.into(),
        }))
    }

    fn missing_time(&self, arrival: Option<EventTime>) -> Result<EventTime, RejectReason> {
        match (self.cfg.missing_time, arrival) {
            (MissingTime::Arrival, Some(t)) => Ok(t),
            _ => Err(RejectReason::MissingTime),
        }
    }
}

/// A JSON tree, built as `serde_json::Value`'s own deserializer builds it
/// (same numbers, duplicate members: the last value at the first one's
/// place) except that an object's members are collected first and the map
/// is made at its final size, instead of growing (and rehashing) as members
/// come. serde_json's depth limit still applies: it is the deserializer's.
struct Tree(Value);

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor).map(Tree)
    }
}

struct TreeVisitor;

thread_local! {
    /// Members of the objects being built on this thread ([`TreeVisitor`]).
    static MEMBERS: std::cell::RefCell<Vec<(String, Value)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<'de> serde::de::Visitor<'de> for TreeVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Tree(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        // Members wait on a per-thread stack (nested objects use the part
        // above ours and leave it empty again), so no vector is allocated
        // per object.
        let start = MEMBERS.with(|m| m.borrow().len());
        let mut collect = || -> Result<(), A::Error> {
            while let Some((k, Tree(v))) = access.next_entry::<String, Tree>()? {
                MEMBERS.with(|m| m.borrow_mut().push((k, v)));
            }
            Ok(())
        };
        let collected = collect();
        MEMBERS.with(|m| {
            let mut m = m.borrow_mut();
            let mut map = serde_json::Map::with_capacity(m.len() - start);
            for (k, v) in m.drain(start..) {
                map.insert(k, v);
            }
            // A huge object (up to `max_event_bytes`) does not leave a huge
            // stack behind on the thread.
            if start == 0 && m.capacity() > 4096 {
                m.shrink_to(4096);
            }
            collected.map(|()| Value::Object(map))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's tree is exactly what `serde_json::Value`'s own
    /// deserializer gives (members, their order, duplicates, numbers), and
    /// it fails where that one fails.
    #[test]
    fn tree_equals_serde_json_value() {
        let texts = [
            r#"{"type":"a","ts":1,"n":-0.0,"big":18446744073709551615,"neg":-9223372036854775808,"f":1.5e-7,"e":1E400}"#,
            r#"{"type":"a","ts":1,"n":1,"n":2,"m":{"b":1,"a":[1,{"z":null,"y":true}],"b":3},"s":"\u00e9\n\ud83d\ude00"}"#,
            r#"{"z":1,"y":2,"x":3,"w":4,"v":5,"u":6,"t":7,"s":8,"r":9,"q":10,"p":11,"o":12,"n":13,"z":0}"#,
            r#"[1,2,{"a":[]},[],{}]"#,
            r#""just a string""#,
            r#"{"a":1,}"#,
            r#"{"a":1"#,
            r#"{"a":NaN}"#,
        ];
        for t in texts {
            let ours = serde_json::from_str::<Tree>(t).map(|Tree(v)| v);
            let theirs = serde_json::from_str::<Value>(t);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{t}");
                    assert_eq!(
                        serde_json::to_string(&a).ok(),
                        serde_json::to_string(&b).ok(),
                        "{t}"
                    );
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{t}: ours {a:?}, serde_json {b:?}"),
            }
        }
        // A failure inside a nested object leaves nothing behind for the
        // next event on this thread.
        assert!(serde_json::from_str::<Tree>(r#"{"a":{"b":1,"c":}}"#).is_err());
        let Tree(v) = serde_json::from_str(r#"{"x":{"y":1}}"#).expect("parses");
        assert_eq!(
            serde_json::to_string(&v).ok().as_deref(),
            Some(r#"{"x":{"y":1}}"#)
        );
        assert!(MEMBERS.with(|m| m.borrow().is_empty()));
        // A 10,000-member object parses, and its members' room is given back.
        let big: String = format!(
            "{{{}}}",
            (0..10_000)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let Tree(v) = serde_json::from_str(&big).expect("parses");
        assert_eq!(v.as_object().map(|m| m.len()), Some(10_000));
        assert!(MEMBERS.with(|m| m.borrow().capacity() <= 4096));
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(serde_json::from_str::<Tree>(&deep).is_err(), "depth limit");
    }
    use serde_json::json;

    fn dec(line: &str) -> Decoded {
        Decoder::default().decode(line.as_bytes(), None)
    }

    fn rejected(line: &[u8]) -> Option<RejectReason> {
        match Decoder::default().decode(line, None) {
            Decoded::Rejected(r) => Some(r),
            _ => None,
        }
    }

    fn event(d: Decoded) -> Event {
        match d {
            Decoded::Event(e) => e,
            other => panic!("expected event, got {other:?}"),
        }
    }

    #[test]
    fn decodes_event_keeping_fields_and_raw() {
        let line = " \t{\"type\":\"login\", \"ts\":\"2026-11-22T10:00:00.250Z\",\"user\":\"é\",\"n\":2.0}\r\n";
        let e = event(dec(line));
        assert_eq!(e.stream, "login");
        assert_eq!(e.time, EventTime(1_795_341_600_250));
        assert_eq!(
            &*e.raw,
            "{\"type\":\"login\", \"ts\":\"2026-11-22T10:00:00.250Z\",\"user\":\"é\",\"n\":2.0}"
        );
        assert_eq!(
            e.fields,
            json!({"type":"login","ts":"2026-11-22T10:00:00.250Z","user":"é","n":2.0})
        );
        let keys: Vec<&str> = e
            .fields
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["type", "ts", "user", "n"]);
        // Empty string is still a string type.
        assert_eq!(event(dec(r#"{"type":"","ts":0}"#)).stream, "");
    }

    #[test]
    fn blank_lines() {
        for line in ["", " ", "\t", "\r\n", " \n\t\r "] {
            assert_eq!(dec(line), Decoded::Blank, "{line:?}");
        }
        // Non-JSON white space is not blank.
        assert_eq!(
            rejected("\u{a0}".as_bytes()),
            Some(RejectReason::InvalidJson)
        );
        assert_eq!(rejected(b"\x0c"), Some(RejectReason::InvalidJson));
    }

    #[test]
    fn every_reject_reason() {
        use RejectReason::*;
        let cases: &[(&[u8], RejectReason)] = &[
            (b"{\"type\":\"a\",\"ts\":1,\"x\":\"\xff\"}", InvalidUtf8),
            (b"\xc3", InvalidUtf8),
            (b"   \xfe  ", InvalidUtf8),
            (b"{", InvalidJson),
            (b"{\"type\":\"a\",\"ts\":1} x", InvalidJson),
            (b"{\"type\":\"a\",\"ts\":1}{}", InvalidJson),
            (b"{'type':'a'}", InvalidJson),
            (b"\xef\xbb\xbf{\"type\":\"a\",\"ts\":1}", InvalidJson),
            (b"{\"ts\":1e400,\"type\":\"a\"}", InvalidJson),
            (b"[1,", InvalidJson),
            (b"nul", InvalidJson),
            (b"[]", NotObject),
            (b"\"x\"", NotObject),
            (b"null", NotObject),
            (b"42", NotObject),
            (b"{\"ts\":1}", MissingType),
            (b"{}", MissingType),
            (b"{\"type\":null,\"ts\":1}", MissingType),
            (b"{\"type\":5,\"ts\":1}", MissingType),
            (b"{\"type\":[\"a\"],\"ts\":1}", MissingType),
            (b"{\"Type\":\"a\",\"ts\":1}", MissingType),
            (b"{\"type\":\"a\"}", MissingTime),
            (b"{\"type\":\"a\",\"ts\":null}", MissingTime),
            (b"{\"type\":\"a\",\"ts\":\"2000\"}", BadTime),
            (b"{\"type\":\"a\",\"ts\":\"1000\"}", BadTime),
            (b"{\"type\":\"a\",\"ts\":true}", BadTime),
            (b"{\"type\":\"a\",\"ts\":{}}", BadTime),
            (b"{\"type\":\"a\",\"ts\":1e19}", BadTime),
            (b"{\"type\":\"a\",\"ts\":9223372036854775808}", BadTime),
            (b"{\"type\":\"a\",\"ts\":\"2016-12-31T23:59:60Z\"}", BadTime),
            (b"{\"type\":\"a\",\"ts\":\"2023-02-29T00:00:00Z\"}", BadTime),
        ];
        for &(line, want) in cases {
            assert_eq!(
                rejected(line),
                Some(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // Type is checked before time.
        assert_eq!(rejected(b"{\"ts\":true}"), Some(MissingType));
    }

    #[test]
    fn reason_names() {
        let names: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "invalid_json",
                "invalid_utf8",
                "not_object",
                "missing_type",
                "missing_time",
                "bad_time",
                "too_large",
                "future_time"
            ]
        );
        for r in RejectReason::ALL {
            assert_eq!(r.to_string(), r.as_str());
            assert_eq!(RejectReason::from_name(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).ok(),
                Some(format!("\"{}\"", r.as_str()))
            );
        }
        assert_eq!(RejectReason::from_name("nope"), None);
    }

    #[test]
    fn custom_fields_and_units() {
        let d = Decoder::new(DecodeConfig {
            type_field: "kind".into(),
            time_field: "at".into(),
            time_unit: TimeUnit::S,
            missing_time: MissingTime::Reject,
        });
        let e = event(d.decode(br#"{"kind":"k","at":1.9,"type":5,"ts":true}"#, None));
        assert_eq!((e.stream.as_str(), e.time), ("k", EventTime(1900)));
        let e = event(d.decode(br#"{"kind":"k","at":-0.0005}"#, None));
        assert_eq!(e.time, EventTime(-1));
        assert_eq!(
            d.decode(br#"{"type":"k","ts":1}"#, None),
            Decoded::Rejected(RejectReason::MissingType)
        );

        for (unit, ts, want) in [
            (TimeUnit::Ms, "-0.5", -1),
            (TimeUnit::Us, "-1", -1),
            (TimeUnit::Ns, "1795341600250999999", 1_795_341_600_250),
            (TimeUnit::S, "1.9", 1900),
        ] {
            let d = Decoder::new(DecodeConfig {
                time_unit: unit,
                ..DecodeConfig::default()
            });
            let line = format!(r#"{{"type":"t","ts":{ts}}}"#);
            assert_eq!(event(d.decode(line.as_bytes(), None)).time, EventTime(want));
        }
    }

    #[test]
    fn arrival_stamping() {
        let d = Decoder::new(DecodeConfig {
            missing_time: MissingTime::Arrival,
            ..DecodeConfig::default()
        });
        let now = Some(EventTime(42));
        assert_eq!(event(d.decode(br#"{"type":"a"}"#, now)).time, EventTime(42));
        assert_eq!(
            event(d.decode(br#"{"type":"a","ts":null}"#, now)).time,
            EventTime(42)
        );
        // A present time wins over arrival.
        assert_eq!(
            event(d.decode(br#"{"type":"a","ts":7}"#, now)).time,
            EventTime(7)
        );
        // Bad times are still bad.
        assert_eq!(
            d.decode(br#"{"type":"a","ts":"x"}"#, now),
            Decoded::Rejected(RejectReason::BadTime)
        );
        // No arrival time available: reject.
        assert_eq!(
            d.decode(br#"{"type":"a"}"#, None),
            Decoded::Rejected(RejectReason::MissingTime)
        );
        // Arrival is ignored when rejecting.
        assert_eq!(
            Decoder::default().decode(br#"{"type":"a"}"#, now),
            Decoded::Rejected(RejectReason::MissingTime)
        );
    }

    #[test]
    fn config_deserialize_defaults() {
        let c: DecodeConfig =
            serde_json::from_str(r#"{"time_unit":"us","missing_time":"arrival"}"#).expect("config");
        assert_eq!(c.type_field, "type");
        assert_eq!(c.time_field, "ts");
        assert_eq!(c.time_unit, TimeUnit::Us);
        assert_eq!(c.missing_time, MissingTime::Arrival);
        assert_eq!(Decoder::new(c.clone()).config(), &c);
        assert_eq!(DecodeConfig::default().missing_time, MissingTime::Reject);
    }
}
