//! Event time: the millisecond-precision timestamp every event carries.
//!
//! This module owns [`EventTime`] (milliseconds since the Unix epoch, UTC),
//! RFC 3339 parsing and formatting, and the conversion of JSON time values
//! (RFC 3339 strings or numbers in a [`TimeUnit`]) into an [`EventTime`].
//!
//! Invariant: every conversion into an [`EventTime`] is exact down to the
//! millisecond and truncates finer parts toward negative infinity (floor), so
//! `-0.5 ms` becomes `-1 ms`; anything that cannot be represented as an `i64`
//! millisecond count is rejected rather than clamped or rounded.

use std::fmt;
use std::str::FromStr;

use serde_json::Number;

/// Milliseconds in one (leap-second free) day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// A point in time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime(pub i64);

impl EventTime {
    /// The earliest representable time.
    pub const MIN: EventTime = EventTime(i64::MIN);
    /// The latest representable time.
    pub const MAX: EventTime = EventTime(i64::MAX);
    /// The Unix epoch, 1970-01-01T00:00:00.000Z.
    pub const EPOCH: EventTime = EventTime(0);
    /// The earliest event time: 0000-01-01T00:00:00.000Z, the first instant
    /// RFC 3339 (four-digit years) can write.
    pub const FIRST_EVENT: EventTime = EventTime(-62_167_219_200_000);
    /// The latest event time: 9999-12-31T23:59:59.999Z, the last instant
    /// RFC 3339 can write.
    pub const LAST_EVENT: EventTime = EventTime(253_402_300_799_999);
    /// The latest instant a timer can be due: one before [`EventTime::MAX`],
    /// the watermark at the end of input (+infinity, rule-language.md 2.5),
    /// so that every timer fires then (a timer fires once `W > T`).
    pub const LAST_DUE: EventTime = EventTime(i64::MAX - 1);

    /// Builds a time from milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        EventTime(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whether this is an event time: between [`EventTime::FIRST_EVENT`]
    /// and [`EventTime::LAST_EVENT`] (years 0000-9999), so that an alert at
    /// it writes its `time` in RFC 3339.
    pub const fn is_event_time(self) -> bool {
        self.0 >= Self::FIRST_EVENT.0 && self.0 <= Self::LAST_EVENT.0
    }

    /// Adds `ms` milliseconds, saturating at [`EventTime::MIN`] below and at
    /// [`EventTime::LAST_DUE`] (not [`EventTime::MAX`]) above: deadlines and
    /// window ends are computed with it, and one past every representable
    /// instant must still fire at the end of input, when the watermark
    /// becomes [`EventTime::MAX`] (a timer at `MAX` would never be `< W`).
    pub const fn saturating_add(self, ms: i64) -> Self {
        let t = self.0.saturating_add(ms);
        if t > Self::LAST_DUE.0 && self.0 <= Self::LAST_DUE.0 {
            EventTime(Self::LAST_DUE.0)
        } else {
            EventTime(t)
        }
    }

    /// Subtracts `ms` milliseconds, saturating at [`EventTime::MIN`] / [`EventTime::MAX`].
    pub const fn saturating_sub(self, ms: i64) -> Self {
        EventTime(self.0.saturating_sub(ms))
    }

    /// Adds `ms` milliseconds, `None` on overflow.
    pub const fn checked_add(self, ms: i64) -> Option<Self> {
        match self.0.checked_add(ms) {
            Some(v) => Some(EventTime(v)),
            None => None,
        }
    }

    /// Formats as RFC 3339 in UTC with milliseconds, e.g.
    /// `2026-11-22T10:00:00.250Z`.
    pub fn rfc3339(self) -> String {
        let mut out = String::with_capacity(24);
        self.write_rfc3339(&mut out);
        out
    }

    /// Appends the [`EventTime::rfc3339`] form to `out`.
    ///
    /// Years 0000-9999 use four digits. Events are never outside that
    /// range ([`EventTime::is_event_time`], `bad_time` at decode), but a
    /// timer computed from one can be due after 9999 (`absent 1d` at
    /// 9999-12-31): such times use the ECMAScript expanded form with a sign
    /// and at least six digits, e.g. `+010000-01-01T00:00:00.000Z`.
    pub fn write_rfc3339(self, out: &mut String) {
        let days = self.0.div_euclid(MS_PER_DAY);
        let rem = self.0.rem_euclid(MS_PER_DAY); // 0..MS_PER_DAY
        let (year, month, day) = civil_from_days(days);
        if (0..=9999).contains(&year) {
            push_digits(out, year as u32, 4);
        } else {
            out.push(if year < 0 { '-' } else { '+' });
            let abs = year.unsigned_abs();
            let text = abs.to_string();
            for _ in text.len()..6 {
                out.push('0');
            }
            out.push_str(&text);
        }
        let rem = rem as u32;
        out.push('-');
        push_digits(out, month, 2);
        out.push('-');
        push_digits(out, day, 2);
        out.push('T');
        push_digits(out, rem / 3_600_000, 2);
        out.push(':');
        push_digits(out, rem / 60_000 % 60, 2);
        out.push(':');
        push_digits(out, rem / 1000 % 60, 2);
        out.push('.');
        push_digits(out, rem % 1000, 3);
        out.push('Z');
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(24);
        self.write_rfc3339(&mut s);
        f.write_str(&s)
    }
}

/// Appends `v` zero-padded to exactly `width` digits (`v < 10^width`).
fn push_digits(out: &mut String, v: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (v / div % 10) as u8));
        div /= 10;
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic Gregorian.
/// Valid for every `i64` millisecond time's day count.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month 1-12, day 1-31) → days since 1970-01-01, proleptic Gregorian.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads exactly `n` ASCII digits at `b[at..]`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = b.get(at..at + n)?;
    part.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

/// Parses an RFC 3339 date-time:
/// `YYYY-MM-DD` (`T` | `t` | ` `) `hh:mm:ss` [`.` 1+ digits] (`Z` | `z` | `±hh:mm`).
///
/// Fraction digits beyond milliseconds are truncated (which is a floor, since
/// offsets are whole minutes). Leap seconds (`:60`), impossible dates and
/// out-of-range fields yield `None`.
pub fn parse_rfc3339(s: &str) -> Option<EventTime> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2)?;

    let mut i = 19;
    let mut frac_ms = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                frac_ms = frac_ms * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let count = i - start;
        if count == 0 {
            return None;
        }
        for _ in count..3 {
            frac_ms *= 10;
        }
    }

    let offset_min: i64 = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            expect(b, i + 3, b':')?;
            let om = digits(b, i + 4, 2)?;
            if oh >= 24 || om >= 60 {
                return None;
            }
            i += 6;
            let m = i64::from(oh * 60 + om);
            if sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }

    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour >= 24
        || minute >= 60
        || second >= 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let ms = days * MS_PER_DAY
        + i64::from(hour) * 3_600_000
        + i64::from(minute) * 60_000
        + i64::from(second) * 1000
        + i64::from(frac_ms)
        - offset_min * 60_000;
    Some(EventTime(ms))
}

/// The unit of a numeric event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Seconds.
    S,
    /// Milliseconds.
    #[default]
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl TimeUnit {
    /// All units, coarsest first.
    pub const ALL: [TimeUnit; 4] = [TimeUnit::S, TimeUnit::Ms, TimeUnit::Us, TimeUnit::Ns];

    /// The config spelling: `s`, `ms`, `us` or `ns`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeUnit::S => "s",
            TimeUnit::Ms => "ms",
            TimeUnit::Us => "us",
            TimeUnit::Ns => "ns",
        }
    }

    /// Power of ten that turns a value in this unit into milliseconds.
    const fn ms_exponent(self) -> i32 {
        match self {
            TimeUnit::S => 3,
            TimeUnit::Ms => 0,
            TimeUnit::Us => -3,
            TimeUnit::Ns => -6,
        }
    }
}

impl fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown time unit name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time unit `{0}` (expected s, ms, us or ns)")]
pub struct UnknownTimeUnit(pub String);

impl FromStr for TimeUnit {
    type Err = UnknownTimeUnit;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeUnit::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| UnknownTimeUnit(s.to_owned()))
    }
}

/// Converts a JSON number in `unit` since the epoch into an [`EventTime`].
///
/// Integers are converted exactly (integer floor division for `us`/`ns`);
/// floats are floored to the millisecond using their shortest round-trip
/// decimal form (so `1.9` s is 1900 ms, as written). `None` if the result
/// does not fit an `i64` millisecond count.
pub fn from_number(n: &Number, unit: TimeUnit) -> Option<EventTime> {
    if let Some(i) = n.as_i64() {
        from_i64(i, unit)
    } else if let Some(u) = n.as_u64() {
        match unit {
            TimeUnit::S | TimeUnit::Ms => from_i64(i64::try_from(u).ok()?, unit),
            TimeUnit::Us => i64::try_from(u / 1000).ok().map(EventTime),
            TimeUnit::Ns => i64::try_from(u / 1_000_000).ok().map(EventTime),
        }
    } else {
        from_f64(n.as_f64()?, unit)
    }
}

/// Converts an integer count of `unit` since the epoch, exactly.
pub fn from_i64(i: i64, unit: TimeUnit) -> Option<EventTime> {
    match unit {
        TimeUnit::S => i.checked_mul(1000).map(EventTime),
        TimeUnit::Ms => Some(EventTime(i)),
        TimeUnit::Us => Some(EventTime(i.div_euclid(1000))),
        TimeUnit::Ns => Some(EventTime(i.div_euclid(1_000_000))),
    }
}

/// Converts a float count of `unit` since the epoch, flooring to the
/// millisecond. The float is taken as its shortest round-trip decimal form
/// and scaled exactly, avoiding binary rounding artefacts (`1.005` s is
/// 1005 ms). `None` for non-finite input or out-of-range results.
pub fn from_f64(f: f64, unit: TimeUnit) -> Option<EventTime> {
    if !f.is_finite() {
        return None;
    }
    let mut buf = ryu_js::Buffer::new();
    let (negative, mantissa, exp10) = parse_decimal(buf.format_finite(f))?;
    if mantissa == 0 {
        return Some(EventTime(0));
    }
    let exp = exp10.checked_add(unit.ms_exponent())?;
    let magnitude: u128 = if exp >= 0 {
        let scale = 10u128.checked_pow(u32::try_from(exp).ok()?)?;
        mantissa.checked_mul(scale)?
    } else {
        let k = exp.unsigned_abs();
        let (q, r) = match 10u128.checked_pow(k) {
            Some(p) => (mantissa / p, mantissa % p),
            None => (0, mantissa),
        };
        // Floor: a negative value with a dropped fraction moves down by one.
        if negative && r != 0 { q + 1 } else { q }
    };
    let magnitude = i128::try_from(magnitude).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok().map(EventTime)
}

/// Splits a decimal like `-1.25e-7` into (negative, 125, -9).
fn parse_decimal(text: &str) -> Option<(bool, u128, i32)> {
    let b = text.as_bytes();
    let mut i = 0;
    let negative = b.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut mantissa: u128 = 0;
    let mut exp: i32 = 0;
    let mut in_fraction = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa
                    .checked_mul(10)?
                    .checked_add(u128::from(c - b'0'))?;
                if in_fraction {
                    exp -= 1;
                }
            }
            b'.' if !in_fraction => in_fraction = true,
            _ => break,
        }
        i += 1;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let e: i32 = text.get(i + 1..)?.trim_start_matches('+').parse().ok()?;
        exp = exp.checked_add(e)?;
    } else if i != b.len() {
        return None;
    }
    Some((negative, mantissa, exp))
}

/// Why a JSON value is not an event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TimeError {
    /// The value is `null` (an absent field is the caller's concern).
    #[error("missing time")]
    Missing,
    /// Anything else that is not a valid time.
    #[error("bad time")]
    Bad,
}

/// Converts an event's time value: an RFC 3339 string or a number in
/// `unit`. `null` is [`TimeError::Missing`]; every other non-time is
/// [`TimeError::Bad`] (numeric strings, booleans, out-of-range numbers, ...),
/// and so is a time outside years 0000-9999 UTC
/// ([`EventTime::is_event_time`]): an alert at it could not write its
/// `time` in RFC 3339 (rule-language.md 9), e.g. `ts` 2^63-1 or
/// `"9999-12-31T23:59:59.999-01:00"` (10000-01-01 in UTC).
pub fn from_node(v: super::NodeRef, unit: TimeUnit) -> Result<EventTime, TimeError> {
    use super::doc::Node;
    let n = match v.node() {
        Node::Null => return Err(TimeError::Missing),
        Node::Str { .. } => {
            return parse_rfc3339(v.as_str().unwrap_or_default())
                .filter(|t| t.is_event_time())
                .ok_or(TimeError::Bad);
        }
        Node::PosInt(n) => Number::from(n),
        Node::NegInt(n) => Number::from(n),
        Node::Float(x) => Number::from_f64(x).ok_or(TimeError::Bad)?,
        Node::Bool(_) | Node::Array { .. } | Node::Object { .. } => return Err(TimeError::Bad),
    };
    from_number(&n, unit)
        .filter(|t| t.is_event_time())
        .ok_or(TimeError::Bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Option<i64> {
        parse_rfc3339(s).map(EventTime::millis)
    }

    fn num(text: &str, unit: TimeUnit) -> Option<i64> {
        let n: Number = serde_json::from_str(text).expect("test number");
        from_number(&n, unit).map(EventTime::millis)
    }

    const T0: i64 = 1_795_341_600_000; // 2026-11-22T10:00:00Z

    #[test]
    fn rfc3339_separators_and_zones() {
        assert_eq!(p("2026-11-22T10:00:00Z"), Some(T0));
        assert_eq!(p("2026-11-22t10:00:00z"), Some(T0));
        assert_eq!(p("2026-11-22 10:00:00Z"), Some(T0));
        assert_eq!(p("2026-11-22T11:30:00+01:30"), Some(T0));
        assert_eq!(p("2026-11-22T04:00:00-06:00"), Some(T0));
        assert_eq!(p("2026-11-22T10:00:00+00:00"), Some(T0));
        assert_eq!(p("2026-11-22T10:00:00-00:00"), Some(T0));
        assert_eq!(p("2026-11-22T23:59:00+23:59"), Some(T0 - 36_000_000));
        assert_eq!(p("2026-11-22T00:00:00-23:59"), Some(T0 + 50_340_000));
        assert_eq!(p("1970-01-01T00:00:00Z"), Some(0));
    }

    #[test]
    fn rfc3339_fractions_truncate() {
        assert_eq!(p("2026-11-22T10:00:00.2Z"), Some(T0 + 200));
        assert_eq!(p("2026-11-22T10:00:00.25Z"), Some(T0 + 250));
        assert_eq!(p("2026-11-22T10:00:00.250Z"), Some(T0 + 250));
        assert_eq!(p("2026-11-22T10:00:00.2509Z"), Some(T0 + 250));
        assert_eq!(p("2026-11-22T10:00:00.99999Z"), Some(T0 + 999));
        assert_eq!(p("2026-11-22T10:00:00.123456Z"), Some(T0 + 123));
        assert_eq!(p("2026-11-22T10:00:00.123456789Z"), Some(T0 + 123));
        assert_eq!(p("2026-11-22T10:00:00.1234567890123Z"), Some(T0 + 123));
        assert_eq!(p("2026-11-22T10:00:00.000000001+00:00"), Some(T0));
        // Before the epoch the truncation is still toward negative infinity.
        assert_eq!(p("1969-12-31T23:59:59.9999Z"), Some(-1));
        assert_eq!(p("1969-12-31T23:59:59.0001Z"), Some(-1000));
    }

    #[test]
    fn rfc3339_rejects() {
        for s in [
            "",
            "2000",
            "2026-11-22",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00Z",
            "2026-11-22T10:00:60Z",
            "2016-12-31T23:59:60Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:60:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-32T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-11-22T10:00:00+24:00",
            "2026-11-22T10:00:00+01:60",
            "2026-11-22T10:00:00+0100",
            "2026-11-22T10:00:00+01",
            "2026-11-22T10:00:00ZZ",
            "2026-11-22T10:00:00Z ",
            " 2026-11-22T10:00:00Z",
            "2026-11-22x10:00:00Z",
            "2026-11-22  10:00:00Z",
            "2026/11/22T10:00:00Z",
            "+2026-11-22T10:00:00Z",
            "20261-11-22T10:00:00Z",
            "2026-1-22T10:00:00Z",
            "2026-11-22T10:00:00.5",
            "2026-11-22T10:00:00,5Z",
            "2026-11-22T10:00:00.٣Z",
            "２026-11-22T10:00:00Z",
        ] {
            assert_eq!(p(s), None, "{s:?}");
        }
    }

    #[test]
    fn rfc3339_calendar_edges() {
        assert_eq!(p("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(p("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(p("0000-01-01T00:00:00Z"), Some(-62_167_219_200_000));
        assert_eq!(p("0000-02-29T00:00:00Z"), Some(-62_162_121_600_000));
        assert_eq!(p("9999-12-31T23:59:59.999Z"), Some(253_402_300_799_999));
        assert_eq!(p("0000-01-01T00:00:00+01:00"), Some(-62_167_222_800_000));
    }

    #[test]
    fn format_rfc3339() {
        assert_eq!(EventTime(T0 + 250).rfc3339(), "2026-11-22T10:00:00.250Z");
        assert_eq!(EventTime(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(EventTime(-1).rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(EventTime(-1000).rfc3339(), "1969-12-31T23:59:59.000Z");
        assert_eq!(EventTime(-86_400_001).rfc3339(), "1969-12-30T23:59:59.999Z");
        assert_eq!(
            EventTime(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            EventTime(-62_167_219_200_000).rfc3339(),
            "0000-01-01T00:00:00.000Z"
        );
        assert_eq!(
            EventTime(-62_167_219_200_001).rfc3339(),
            "-000001-12-31T23:59:59.999Z"
        );
        assert_eq!(
            EventTime(253_402_300_799_999).rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            EventTime(253_402_300_800_000).rfc3339(),
            "+010000-01-01T00:00:00.000Z"
        );
        assert_eq!(
            EventTime(8_640_000_000_000_000).rfc3339(),
            "+275760-09-13T00:00:00.000Z"
        );
        // Extremes must not panic.
        assert!(EventTime::MIN.rfc3339().starts_with('-'));
        assert!(EventTime::MAX.rfc3339().starts_with('+'));
    }

    #[test]
    fn roundtrip_many_days() {
        let mut ms = -62_167_219_200_000i64;
        while ms < 253_402_300_799_999 {
            let s = EventTime(ms).rfc3339();
            assert_eq!(p(&s), Some(ms), "{s}");
            ms += 7_919 * 3_600_000 + 12_345; // ~330 days, odd offset
        }
    }

    #[test]
    fn numeric_units() {
        use TimeUnit::*;
        assert_eq!(num("1", S), Some(1000));
        assert_eq!(num("1.9", S), Some(1900));
        assert_eq!(num("1.005", S), Some(1005));
        assert_eq!(num("1700000000.123", S), Some(1_700_000_000_123));
        assert_eq!(num("1.0001", S), Some(1000));
        assert_eq!(num("-1.0001", S), Some(-1001));
        assert_eq!(num("-1.9", S), Some(-1900));
        assert_eq!(num("1e3", S), Some(1_000_000));
        assert_eq!(num("-0.5", Ms), Some(-1));
        assert_eq!(num("0.5", Ms), Some(0));
        assert_eq!(num("-0.0", Ms), Some(0));
        assert_eq!(num("1.5e-7", Ms), Some(0));
        assert_eq!(num("-1.5e-7", Ms), Some(-1));
        assert_eq!(num("1795341600250", Ms), Some(T0 + 250));
        assert_eq!(num("1795341600250.0", Ms), Some(T0 + 250));
        assert_eq!(num("-1", Us), Some(-1));
        assert_eq!(num("-1000", Us), Some(-1));
        assert_eq!(num("-1001", Us), Some(-2));
        assert_eq!(num("1999", Us), Some(1));
        assert_eq!(num("-0.5", Us), Some(-1));
        assert_eq!(num("1795341600250999", Us), Some(T0 + 250));
        assert_eq!(num("1795341600250999999", Ns), Some(T0 + 250));
        assert_eq!(num("-1", Ns), Some(-1));
        assert_eq!(num("999999", Ns), Some(0));
        assert_eq!(num("1000000", Ns), Some(1));
        // Exact integer arithmetic beyond f64 precision and into u64.
        assert_eq!(num("9007199254740993", Us), Some(9_007_199_254_740));
        assert_eq!(num("18446744073709551615", Ns), Some(18_446_744_073_709));
        assert_eq!(
            num("18446744073709551615", Us),
            Some(18_446_744_073_709_551)
        );
    }

    #[test]
    fn numeric_out_of_range() {
        use TimeUnit::*;
        assert_eq!(num("9223372036854775807", Ms), Some(i64::MAX));
        assert_eq!(num("-9223372036854775808", Ms), Some(i64::MIN));
        assert_eq!(num("9223372036854775808", Ms), None);
        assert_eq!(num("18446744073709551615", S), None);
        assert_eq!(num("9223372036854776", S), None);
        assert_eq!(num("-9223372036854776", S), None);
        assert_eq!(num("1e19", Ms), None);
        assert_eq!(num("-1e19", Ms), None);
        assert_eq!(num("1e300", Ns), None);
        assert_eq!(num("1e24", Ns), Some(1_000_000_000_000_000_000));
        assert_eq!(num("1e25", Ns), None);
        assert_eq!(num("1e-300", S), Some(0));
        assert_eq!(num("-1e-300", S), Some(-1));
        assert_eq!(from_f64(f64::NAN, Ms), None);
        assert_eq!(from_f64(f64::INFINITY, Ms), None);
        // The shortest decimal of -2^63 as a double is -9223372036854776000.
        assert_eq!(from_f64(-9.223372036854776e18, Ms), None);
        assert_eq!(
            from_f64(-9.223372036854775e18, Ms),
            Some(EventTime(-9_223_372_036_854_775_000))
        );
        assert_eq!(from_f64(9.223372036854776e18, Ms), None);
    }

    #[test]
    fn json_values() {
        let from_json = |v: &serde_json::Value, u| {
            let doc = super::super::Doc::parse(&v.to_string()).expect("JSON");
            from_node(doc.root(), u)
        };
        let u = TimeUnit::Ms;
        assert_eq!(from_json(&json!(null), u), Err(TimeError::Missing));
        assert_eq!(from_json(&json!("2000"), u), Err(TimeError::Bad));
        assert_eq!(from_json(&json!("1000"), u), Err(TimeError::Bad));
        assert_eq!(from_json(&json!(true), u), Err(TimeError::Bad));
        assert_eq!(from_json(&json!([1]), u), Err(TimeError::Bad));
        assert_eq!(from_json(&json!({}), u), Err(TimeError::Bad));
        assert_eq!(from_json(&json!(5), u), Ok(EventTime(5)));
        assert_eq!(from_json(&json!(5), TimeUnit::S), Ok(EventTime(5000)));
        assert_eq!(
            from_json(&json!("1970-01-01T00:00:01Z"), TimeUnit::Ns),
            Ok(EventTime(1000))
        );
    }

    /// Event times are the instants RFC 3339 can write (years 0000-9999
    /// UTC); anything else is `bad_time` rather than an event an alert
    /// could not print, or one the watermark never passes (`ts` 2^63-1).
    #[test]
    fn event_times_are_years_0000_to_9999_utc() {
        assert_eq!(
            EventTime::FIRST_EVENT,
            EventTime(days_from_civil(0, 1, 1) * MS_PER_DAY)
        );
        assert_eq!(
            EventTime::LAST_EVENT,
            EventTime(days_from_civil(10000, 1, 1) * MS_PER_DAY - 1)
        );
        assert_eq!(EventTime::FIRST_EVENT.rfc3339(), "0000-01-01T00:00:00.000Z");
        assert_eq!(EventTime::LAST_EVENT.rfc3339(), "9999-12-31T23:59:59.999Z");
        let from_json = |text: &str, u| {
            let doc = super::super::Doc::parse(text).expect("JSON");
            from_node(doc.root(), u)
        };
        use TimeUnit::*;
        let ok = |ms: i64| Ok(EventTime(ms));
        let bad = Err(TimeError::Bad);
        let last = EventTime::LAST_EVENT.0;
        let first = EventTime::FIRST_EVENT.0;
        // Numbers, at and past both ends, in every unit.
        assert_eq!(from_json("253402300799999", Ms), ok(last));
        assert_eq!(from_json("253402300800000", Ms), bad);
        assert_eq!(from_json("253402300799999.9", Ms), ok(last));
        assert_eq!(from_json("253402300799.999", S), ok(last));
        assert_eq!(from_json("253402300800", S), bad);
        assert_eq!(from_json("253402300799999999", Us), ok(last));
        assert_eq!(from_json("253402300800000000", Us), bad);
        assert_eq!(from_json("253402300800000000000", Ns), bad);
        assert_eq!(from_json("-62167219200000", Ms), ok(first));
        assert_eq!(from_json("-62167219200000.5", Ms), bad);
        assert_eq!(from_json("-62167219200001", Ms), bad);
        assert_eq!(from_json("-62167219200", S), ok(first));
        assert_eq!(from_json("9223372036854775807", Ms), bad);
        assert_eq!(from_json("9223372036854775000", Ms), bad);
        assert_eq!(from_json("-9223372036854775000", Ms), bad);
        assert_eq!(from_json("-9223372036854775808", Ms), bad);
        assert_eq!(from_json("1e300", Ms), bad);
        // Strings: valid RFC 3339 whose UTC instant is past either end.
        assert_eq!(from_json(r#""9999-12-31T23:59:59.999Z""#, Ms), ok(last));
        assert_eq!(
            from_json(r#""9999-12-31T23:59:59.999+01:00""#, Ms),
            ok(last - 3_600_000)
        );
        assert_eq!(from_json(r#""9999-12-31T23:59:59.999-01:00""#, Ms), bad);
        assert_eq!(
            from_json(r#""9999-12-31T23:00:00.000-00:59""#, Ms),
            ok(last - 59_999)
        );
        assert_eq!(from_json(r#""0000-01-01T00:00:00Z""#, Ms), ok(first));
        assert_eq!(from_json(r#""0000-01-01T00:00:00+00:01""#, Ms), bad);
        assert_eq!(
            from_json(r#""0000-01-01T00:00:00-00:01""#, Ms),
            ok(first + 60_000)
        );
    }

    /// Deadlines past every instant still fire at the end of input: they
    /// stop at [`EventTime::LAST_DUE`], below the end-of-input watermark.
    #[test]
    fn saturating_deadlines_stay_below_the_end_of_input() {
        let end = EventTime::MAX; // the watermark at the end of input
        assert_eq!(
            EventTime::LAST_EVENT.saturating_add(i64::MAX),
            EventTime::LAST_DUE
        );
        assert_eq!(
            EventTime(1).saturating_add(i64::MAX - 1),
            EventTime::LAST_DUE
        );
        assert_eq!(EventTime(0).saturating_add(i64::MAX), EventTime::LAST_DUE);
        assert_eq!(EventTime::LAST_DUE.saturating_add(1), EventTime::LAST_DUE);
        assert!(EventTime::LAST_EVENT.saturating_add(i64::MAX) < end);
        // In range, nothing changes; `absent 1d` at the last day is 10000-01-01.
        assert_eq!(EventTime(5).saturating_add(7), EventTime(12));
        assert_eq!(
            EventTime::LAST_EVENT.saturating_add(86_400_000).rfc3339(),
            "+010000-01-01T23:59:59.999Z"
        );
        assert_eq!(EventTime(-5).saturating_add(i64::MIN), EventTime::MIN);
    }

    #[test]
    fn arithmetic_and_units() {
        assert_eq!(EventTime::MAX.saturating_add(1), EventTime::MAX);
        assert_eq!(EventTime::MIN.saturating_sub(1), EventTime::MIN);
        assert_eq!(EventTime(5).saturating_sub(7), EventTime(-2));
        assert_eq!(EventTime(5).checked_add(i64::MAX), None);
        assert!(EventTime(-1) < EventTime(0));
        for u in TimeUnit::ALL {
            assert_eq!(u.as_str().parse::<TimeUnit>(), Ok(u));
            let j = serde_json::to_string(&u).expect("serialize unit");
            assert_eq!(j, format!("\"{u}\""));
            assert_eq!(serde_json::from_str::<TimeUnit>(&j).ok(), Some(u));
        }
        assert!("sec".parse::<TimeUnit>().is_err());
        assert_eq!(TimeUnit::default(), TimeUnit::Ms);
    }
}
