//! Canonical JSON output: compact JSON with ECMAScript number formatting.
//!
//! This module owns how values are written back out (alerts, rejects,
//! digests): numbers exactly as ECMAScript `JSON.stringify` writes an IEEE
//! double (`2`, `0.1`, `1e-7`, `1e+21`, `-0` as `0`), strings with only the
//! escapes JSON requires (non-ASCII left as is), no whitespace, and object
//! members in stored order ([`write_compact`]) or sorted bytewise by name
//! ([`write_canonical`], for key values).
//!
//! Invariant: the output is deterministic for a given value and is always
//! valid JSON (a non-finite number, which callers never pass, becomes `null`).

use serde_json::Value;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `n` as ECMAScript `Number.prototype.toString` would write it;
/// `null` for a non-finite value.
pub fn write_number(out: &mut String, n: f64) {
    if n.is_finite() {
        let mut buf = ryu_js::Buffer::new();
        out.push_str(buf.format_finite(n));
    } else {
        out.push_str("null");
    }
}

/// [`write_number`] into a fresh string.
pub fn number_text(n: f64) -> String {
    let mut out = String::with_capacity(24);
    write_number(&mut out, n);
    out
}

/// Appends `s` as a JSON string literal: `"` and `\` escaped, control
/// characters as `\b \f \n \r \t` or `\u00xx` (lower-case hex), everything
/// else (including non-ASCII) verbatim.
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Most strings need no escape: one pass the compiler vectorises.
    if !s
        .as_bytes()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
    {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let short: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a char boundary.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `v` as compact JSON. Numbers go through `as_f64` and
/// [`write_number`], so large integers are written as the double they
/// round to, like `JSON.stringify`.
pub fn write_compact(out: &mut String, v: &Value) {
    write_json(out, v, false);
}

/// Appends `v` as compact JSON like [`write_compact`], but with the members
/// of every object (at any depth, inside arrays too) sorted bytewise by
/// name: two values `==` treats as equal are written as one text. This is
/// how a key value is written (rule-language.md 4), so that
/// `{"a":1,"b":2}` and `{"b":2,"a":1}` are one key. A `Value` holds each
/// name once (a repeated name in the input keeps its last value).
pub fn write_canonical(out: &mut String, v: &Value) {
    write_json(out, v, true);
}

/// [`write_compact`] (`sorted` false) or [`write_canonical`] (true).
fn write_json(out: &mut String, v: &Value, sorted: bool) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item, sorted);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            if sorted {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                // Names are unique, so an unstable sort is deterministic.
                members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                write_members(out, members.into_iter(), sorted);
            } else {
                write_members(out, map.iter(), sorted);
            }
            out.push('}');
        }
    }
}

/// An object's members, `name:value` separated by commas.
fn write_members<'v>(
    out: &mut String,
    members: impl Iterator<Item = (&'v String, &'v Value)>,
    sorted: bool,
) {
    for (i, (name, item)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_json(out, item, sorted);
    }
}

/// [`write_canonical`] into a fresh string.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, v);
    out
}

/// [`write_compact`] into a fresh string.
pub fn compact(v: &Value) -> String {
    let mut out = String::new();
    write_compact(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_like_ecmascript() {
        let cases: &[(f64, &str)] = &[
            (2.0, "2"),
            (0.0, "0"),
            (-0.0, "0"),
            (-2.0, "-2"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.5, "1.5"),
            (-1.5, "-1.5"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e20, "100000000000000000000"),
            (123456789012.0, "123456789012"),
            (1795341600250.0, "1795341600250"),
            (9007199254740993.0, "9007199254740992"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-1e-7, "-1e-7"),
            (100.0, "100"),
        ];
        for &(n, text) in cases {
            assert_eq!(number_text(n), text, "{n:?}");
        }
        assert_eq!(number_text(f64::NAN), "null");
        assert_eq!(number_text(f64::INFINITY), "null");
        assert_eq!(number_text(f64::NEG_INFINITY), "null");
        let mut out = String::from("x=");
        write_number(&mut out, 3.25);
        assert_eq!(out, "x=3.25");
    }

    #[test]
    fn strings_escape_only_what_json_requires() {
        let mut out = String::new();
        write_string(
            &mut out,
            "a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}/é日本😀\u{2028}",
        );
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u001f\u{7f}/é日本😀\u{2028}\""
        );
        let mut out = String::new();
        write_string(&mut out, "\u{1b}[0m\u{0b}");
        assert_eq!(out, "\"\\u001b[0m\\u000b\"");
        let mut out = String::new();
        write_string(&mut out, "");
        assert_eq!(out, "\"\"");
    }

    #[test]
    fn compact_output() {
        let v: Value = serde_json::from_str(
            r#" { "type" : "login", "ts": 2.0, "z": [1, -0.0, 1e21, 1E-7, null, true, false],
                "a": {"ü": "naïve\u0001", "n": 123456789012}, "big": 18446744073709551615 } "#,
        )
        .expect("test json");
        assert_eq!(
            compact(&v),
            r#"{"type":"login","ts":2,"z":[1,0,1e+21,1e-7,null,true,false],"a":{"ü":"naïve\u0001","n":123456789012},"big":18446744073709552000}"#
        );
        assert_eq!(compact(&json!([])), "[]");
        assert_eq!(compact(&json!({})), "{}");
        assert_eq!(compact(&json!(-7)), "-7");
        assert_eq!(compact(&json!("k\"")), r#""k\"""#);
        // Output parses back to an equal value (modulo number canonicalisation).
        let round: Value = serde_json::from_str(&compact(&v)).expect("reparse");
        assert_eq!(compact(&round), compact(&v));
    }

    #[test]
    fn canonical_sorts_members_at_every_depth() {
        let a: Value = serde_json::from_str(
            r#"{"b":2,"a":{"y":[{"d":1,"c":2.0}],"x":null},"\u00e9":0,"Z":1}"#,
        )
        .expect("a");
        let b: Value =
            serde_json::from_str(r#"{"Z":1.0,"é":0,"a":{"x":null,"y":[{"c":2,"d":1}]},"b":2}"#)
                .expect("b");
        let want = r#"{"Z":1,"a":{"x":null,"y":[{"c":2,"d":1}]},"b":2,"é":0}"#;
        assert_eq!(canonical(&a), want);
        assert_eq!(canonical(&b), want);
        // A repeated name keeps its last value, as `==` sees it.
        let dup: Value = serde_json::from_str(r#"{"k":1,"a":0,"k":2}"#).expect("dup");
        assert_eq!(canonical(&dup), r#"{"a":0,"k":2}"#);
        // Scalars and arrays of scalars are written as `write_compact` does.
        for text in [r#"[3,"x",null,true,1e21]"#, "-0", r#""q\"""#, "[]", "{}"] {
            let v: Value = serde_json::from_str(text).expect("scalar");
            assert_eq!(canonical(&v), compact(&v), "{text}");
        }
        // Bytewise, not by char or case: "B" (0x42) < "a" (0x61) < "é" (0xc3 ...).
        let v: Value = serde_json::from_str(r#"{"é":1,"a":2,"B":3}"#).expect("bytes");
        assert_eq!(canonical(&v), r#"{"B":3,"a":2,"é":1}"#);
    }
}
