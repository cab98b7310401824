//! Text helpers of the console: JSON re-indented without reparsing, ages.
//! Pure functions; escaping is not theirs (the templates escape).

/// Indents JSON text by two spaces per level, copying every token
/// verbatim (numbers keep their digits, strings their escapes), so the page
/// shows exactly the text that was delivered. Whitespace outside strings is
/// dropped; `{}` and `[]` stay on one line. Invalid JSON is indented as far
/// as it goes, never rejected.
pub fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for
/// a path segment or a query value (the `urlencode` template filter).
pub fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A duration in milliseconds as an operator reads it: `850ms`, `42s`,
/// `3m 20s`, `5h 02m`, `3d 4h`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_keeps_tokens_verbatim() {
        let text = r#"{"a":1.50,"b":[],"c":{"d":"x,\"{y}:"},"e":[1, 2]}"#;
        assert_eq!(
            pretty_json(text),
            "{\n  \"a\": 1.50,\n  \"b\": [],\n  \"c\": {\n    \"d\": \"x,\\\"{y}:\"\n  },\n  \"e\": [\n    1,\n    2\n  ]\n}"
        );
    }

    #[test]
    fn pretty_json_of_empty_and_scalar_values() {
        assert_eq!(pretty_json("{ }"), "{}");
        assert_eq!(pretty_json(" 42 "), "42");
        assert_eq!(pretty_json(r#""\\""#), r#""\\""#);
    }

    #[test]
    fn url_components_keep_only_unreserved_characters() {
        assert_eq!(url_component("disk_full-1.x~"), "disk_full-1.x~");
        assert_eq!(url_component("a b/é?&\""), "a%20b%2F%C3%A9%3F%26%22");
    }

    #[test]
    fn durations_read_like_an_operator_writes_them() {
        assert_eq!(duration(-5), "0ms");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(200_000), "3m 20s");
        assert_eq!(duration(5 * 3_600_000 + 120_000), "5h 02m");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
    }
}
