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

use crate::event::doc::{Doc, Node};
use crate::event::time::{self, TimeError};
use crate::event::{Event, EventTime, Stream, TimeUnit};

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
        let fields = Doc::parse(raw).map_err(|_| RejectReason::InvalidJson)?;
        let root = fields.root();
        if !matches!(root.node(), Node::Object { .. }) {
            return Err(RejectReason::NotObject);
        }
        let stream = match root.get(&self.cfg.type_field).and_then(|v| v.as_str()) {
            Some(s) => Stream::new(s),
            None => return Err(RejectReason::MissingType),
        };
        let time = match root.get(&self.cfg.time_field) {
            None => self.missing_time(arrival)?,
            Some(v) => match time::from_node(v, self.cfg.time_unit) {
                Ok(t) => t,
                Err(TimeError::Missing) => self.missing_time(arrival)?,
                Err(TimeError::Bad) => return Err(RejectReason::BadTime),
            },
        };
        Ok(Some(Event {
            stream,
            time,
            fields,
        }))
    }

    fn missing_time(&self, arrival: Option<EventTime>) -> Result<EventTime, RejectReason> {
        match (self.cfg.missing_time, arrival) {
            (MissingTime::Arrival, Some(t)) => Ok(t),
            _ => Err(RejectReason::MissingTime),
        }
    }
}

/// A unit test's event from one line, decoded with the default
/// configuration (panics on anything but an event).
#[cfg(test)]
pub(crate) fn test_event(line: &str) -> Event {
    match Decoder::default().decode(line.as_bytes(), None) {
        Decoded::Event(e) => e,
        other => panic!("{line}: expected an event, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            e.raw(),
            "{\"type\":\"login\", \"ts\":\"2026-11-22T10:00:00.250Z\",\"user\":\"é\",\"n\":2.0}"
        );
        assert_eq!(
            e.fields.root().to_value(),
            json!({"type":"login","ts":"2026-11-22T10:00:00.250Z","user":"é","n":2.0})
        );
        let keys: Vec<&str> = e.fields.root().members().map(|(k, _)| k).collect();
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
            // Outside years 0000-9999 UTC: an alert could not write the
            // time in RFC 3339, and 2^63-1 is never passed by the watermark.
            (b"{\"type\":\"a\",\"ts\":9223372036854775807}", BadTime),
            (b"{\"type\":\"a\",\"ts\":9223372036854775000}", BadTime),
            (b"{\"type\":\"a\",\"ts\":-9223372036854775000}", BadTime),
            (b"{\"type\":\"a\",\"ts\":253402300800000}", BadTime),
            (b"{\"type\":\"a\",\"ts\":-62167219200001}", BadTime),
            (
                b"{\"type\":\"a\",\"ts\":\"9999-12-31T23:59:59.999-01:00\"}",
                BadTime,
            ),
            (
                b"{\"type\":\"a\",\"ts\":\"0000-01-01T00:30:00+01:00\"}",
                BadTime,
            ),
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
        // The ends of the range are events.
        for line in [
            "{\"type\":\"a\",\"ts\":253402300799999}",
            "{\"type\":\"a\",\"ts\":-62167219200000}",
            "{\"type\":\"a\",\"ts\":\"9999-12-31T23:59:59.999Z\"}",
            "{\"type\":\"a\",\"ts\":\"0000-01-01T00:00:00Z\"}",
        ] {
            assert!(matches!(dec(line), Decoded::Event(_)), "{line}");
        }
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
