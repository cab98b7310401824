//! Load-time problems and how they are shown.
//!
//! Every front-end check produces a [`Diagnostic`]; they are collected, never
//! first-only, and rendered here only (rule-language.md section 10):
//!
//! ```text
//! rules/auth.rules:12:30: error: unknown step `fial` (did you mean `fail`?)
//!    |
//! 12 |         ok: auth where count(fial) >= 3
//!    |                              ^^^^
//! ```

use std::fmt::Write;

use super::span::{SourceMap, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
    /// A suggestion shown after the message, e.g. "did you mean `fail`?".
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The first line: `file:line:col: error: message (hint)`.
    pub fn headline(&self, sources: &SourceMap) -> String {
        let file = sources.file(self.span.file);
        let lc = file.line_col(self.span.start);
        let mut s = format!(
            "{}:{}:{}: {}: {}",
            file.name,
            lc.line,
            lc.col,
            self.severity.as_str(),
            self.message
        );
        if let Some(h) = &self.hint {
            let _ = write!(s, " ({h})");
        }
        s
    }

    /// The full text: headline, source line, caret under the span.
    pub fn render(&self, sources: &SourceMap) -> String {
        let file = sources.file(self.span.file);
        let lc = file.line_col(self.span.start);
        let line = file.line_text(lc.line);
        let gutter = lc.line.to_string().len();
        // Underline to the span's end, or to the line's end if it spans lines.
        let end_lc = file.line_col(self.span.end);
        let line_chars = line.chars().count();
        let width = if end_lc.line == lc.line {
            end_lc.col.saturating_sub(lc.col)
        } else {
            (line_chars + 1).saturating_sub(lc.col)
        }
        .max(1);
        // Keep tabs so that the caret lines up with the source line.
        let pad: String = line
            .chars()
            .take(lc.col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let mut out = self.headline(sources);
        let _ = write!(
            out,
            "\n{:g$} |\n{} | {}\n{:g$} | {}{}\n",
            "",
            lc.line,
            line,
            "",
            pad,
            "^".repeat(width),
            g = gutter
        );
        out
    }

    /// The diagnostic as one JSON object (for editors and CI).
    pub fn to_json(&self, sources: &SourceMap) -> serde_json::Value {
        let file = sources.file(self.span.file);
        let start = file.line_col(self.span.start);
        let end = file.line_col(self.span.end);
        serde_json::json!({
            "file": file.name,
            "line": start.line,
            "column": start.col,
            "end_line": end.line,
            "end_column": end.col,
            "severity": self.severity.as_str(),
            "message": self.message,
            "hint": self.hint,
        })
    }
}

/// "did you mean `x`?" for the closest candidate, when one is close enough.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        // Optimal string alignment: a swap of two neighbours (`fial` for
        // `fail`) counts as one edit, as a typo is usually made.
        let d = strsim::osa_distance(name, c);
        let limit = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}
