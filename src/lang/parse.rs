//! Text → AST. One function per grammar rule; pest errors are translated
//! into [`Diagnostic`]s with user words ("expected an expression").
//!
//! A syntax error does not end the file: parsing resumes at the next line
//! that starts a top-level declaration, so one run reports every mistake.

use pest::Parser;
use pest::error::InputLocation;
use pest::iterators::Pair;

use super::ast::*;
use super::diagnostic::Diagnostic;
use super::grammar::{Rule, TocsinParser};
use super::span::{FileId, Span, Spanned};

/// Parses one file. Returns every declaration that parsed and every error.
pub fn parse_file(file: FileId, text: &str) -> (Vec<Decl>, Vec<Diagnostic>) {
    let mut decls = Vec::new();
    let mut diags = Vec::new();
    let mut start = 0;
    loop {
        let rest = &text[start..];
        match TocsinParser::parse(Rule::file, rest) {
            Ok(mut pairs) => {
                let cx = Cx {
                    file,
                    base: start,
                    diags: &mut diags,
                };
                let mut cx = cx;
                if let Some(f) = pairs.next() {
                    for p in f.into_inner() {
                        if let Some(d) = cx.decl(p) {
                            decls.push(d);
                        }
                    }
                }
                break;
            }
            Err(e) => {
                let pos = match e.location {
                    InputLocation::Pos(p) => p,
                    InputLocation::Span((s, _)) => s,
                };
                let at = start + pos;
                diags.push(syntax_error(file, text, at, &e));
                // Parse what came before the error again, up to the last
                // declaration boundary, to keep its declarations.
                let good_end = last_boundary_before(text, start, at);
                if good_end > start
                    && let Ok(mut pairs) = TocsinParser::parse(Rule::file, &text[start..good_end])
                {
                    let mut cx = Cx {
                        file,
                        base: start,
                        diags: &mut diags,
                    };
                    if let Some(f) = pairs.next() {
                        for p in f.into_inner() {
                            if let Some(d) = cx.decl(p) {
                                decls.push(d);
                            }
                        }
                    }
                }
                match next_boundary_after(text, start, at) {
                    Some(next) => start = next,
                    None => break,
                }
            }
        }
    }
    (decls, diags)
}

/// Offsets of lines that begin (at column 1) with `rule`, `list` or `let`.
fn boundaries(text: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .filter(move |&i| {
            let line = &text[i..];
            ["rule", "list", "let"].iter().any(|kw| {
                line.starts_with(kw)
                    && line[kw.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c == ' ' || c == '\t')
            })
        })
}

fn next_boundary_after(text: &str, start: usize, at: usize) -> Option<usize> {
    boundaries(text).find(|&b| b >= at && b > start)
}

fn last_boundary_before(text: &str, start: usize, at: usize) -> usize {
    boundaries(text)
        .filter(|&b| b > start && b <= at)
        .last()
        .unwrap_or(start)
}

fn syntax_error(file: FileId, text: &str, at: usize, e: &pest::error::Error<Rule>) -> Diagnostic {
    let found = text[at..]
        .split(|c: char| c.is_whitespace())
        .next()
        .filter(|s| !s.is_empty());
    let end = at
        + found.map_or(
            text[at..].chars().next().map_or(0, char::len_utf8),
            str::len,
        );
    let span = Span::new(file, at, end.max(at));
    let expected = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut words: Vec<&str> = positives.iter().filter_map(|r| rule_word(*r)).collect();
            words.sort_unstable();
            words.dedup();
            words
        }
        pest::error::ErrorVariant::CustomError { .. } => Vec::new(),
    };
    let found_text = match found {
        Some(f) => format!("`{}`", f.chars().take(30).collect::<String>()),
        // Inside a token (`a[ 0` in a string's `\u{ 41}`...), white space
        // is what was found: name it; only an empty rest is the end.
        None => match text[at..].chars().next() {
            None => "end of file".to_string(),
            Some(c) => found_blank(c),
        },
    };
    let msg = if expected.is_empty() {
        format!("syntax error: unexpected {found_text}")
    } else {
        format!(
            "syntax error: expected {}, found {found_text}",
            join_or(&expected)
        )
    };
    Diagnostic::error(span, msg)
}

/// Words for a white-space character where a token was expected.
fn found_blank(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        '\n' | '\r' => "the end of the line".to_string(),
        c => format!("white space (U+{:04X})", u32::from(c)),
    }
}

fn join_or(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// User words for grammar rules; `None` hides a rule from "expected" lists.
fn rule_word(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::EOI => "end of file",
        Rule::list_decl | Rule::kw_list => "`list`",
        Rule::let_decl | Rule::kw_let => "`let`",
        Rule::rule_decl | Rule::kw_rule => "`rule`",
        Rule::description_clause
        | Rule::severity_clause
        | Rule::key_clause
        | Rule::from_clause
        | Rule::sequence_clause
        | Rule::window_clause
        | Rule::when_clause
        | Rule::absent_clause
        | Rule::throttle_clause
        | Rule::labels_clause
        | Rule::notify_clause
        | Rule::message_clause
        | Rule::kw_description
        | Rule::kw_severity
        | Rule::kw_key
        | Rule::kw_from
        | Rule::kw_sequence
        | Rule::kw_window
        | Rule::kw_when
        | Rule::kw_absent
        | Rule::kw_throttle
        | Rule::kw_labels
        | Rule::kw_notify
        | Rule::kw_message => "a clause",
        Rule::kw_where => "`where`",
        Rule::kw_within => "`within`",
        Rule::kw_every => "`every`",
        Rule::sliding | Rule::tumbling | Rule::hopping | Rule::session => {
            "a window (`sliding`, `tumbling`, `hopping`, `session`)"
        }
        Rule::kw_sliding | Rule::kw_tumbling | Rule::kw_hopping | Rule::kw_session => {
            "a window (`sliding`, `tumbling`, `hopping`, `session`)"
        }
        Rule::step | Rule::negation => "a step",
        Rule::quant | Rule::plus_quant | Rule::min_quant => "a quantifier",
        Rule::expr
        | Rule::or_expr
        | Rule::and_expr
        | Rule::not_expr
        | Rule::not_op
        | Rule::cmp_expr
        | Rule::sum
        | Rule::product
        | Rule::unary
        | Rule::neg
        | Rule::paren
        | Rule::call
        | Rule::path
        | Rule::path_head
        | Rule::literal => "an expression",
        Rule::cmp_op | Rule::not_in => "a comparison",
        Rule::add_op | Rule::plus_op | Rule::minus_op | Rule::mul_op => "an operator",
        Rule::kw_and | Rule::kw_or => "an operator",
        // `.name` / `[i]` may follow any path, so they would be listed after
        // every complete path (`a < b` then `<`): not worth the noise. A
        // half-written one (`a.`, `a[`) reports its name or number instead.
        Rule::field_seg | Rule::index_seg => return None,
        Rule::duration | Rule::unit => "a duration",
        Rule::number | Rule::signed_number | Rule::int => "a number",
        Rule::string | Rule::str_body => "a string",
        Rule::list_lit => "a list",
        Rule::label => "a label",
        Rule::stream | Rule::star => "a stream name",
        Rule::ident => "a name",
        Rule::backtick | Rule::tick_body => "a quoted name",
        _ => return None,
    })
}

/// Parsing context: the file and the byte offset of the parsed slice.
struct Cx<'d> {
    file: FileId,
    base: usize,
    diags: &'d mut Vec<Diagnostic>,
}

/// Pairs produced by the grammar always have the shape it declares; a
/// mismatch is a bug in this file, never in user input.
fn next<'i>(it: &mut pest::iterators::Pairs<'i, Rule>) -> Pair<'i, Rule> {
    it.next().expect("grammar guarantees this child")
}

impl Cx<'_> {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    fn spanned_str(&self, p: &Pair<Rule>) -> Spanned<String> {
        Spanned::new(p.as_str().to_string(), self.span(p))
    }

    fn decl(&mut self, p: Pair<Rule>) -> Option<Decl> {
        match p.as_rule() {
            Rule::list_decl => {
                let mut it = p.into_inner();
                let _kw = next(&mut it);
                let name = self.spanned_str(&next(&mut it));
                let items = self.list_items(next(&mut it));
                Some(Decl::List(ListDecl { name, items }))
            }
            Rule::let_decl => {
                let mut it = p.into_inner();
                let _kw = next(&mut it);
                let name = self.spanned_str(&next(&mut it));
                let body = self.expr(next(&mut it));
                Some(Decl::Let(LetDecl { name, body }))
            }
            Rule::rule_decl => {
                let span = self.span(&p);
                let mut it = p.into_inner();
                let _kw = next(&mut it);
                let name = self.spanned_str(&next(&mut it));
                let clauses = it.map(|c| self.clause(c)).collect();
                Some(Decl::Rule(RuleDecl {
                    name,
                    clauses,
                    span,
                }))
            }
            _ => None, // EOI
        }
    }

    fn clause(&mut self, p: Pair<Rule>) -> Clause {
        let rule = p.as_rule();
        let mut it = p.into_inner();
        let keyword = self.span(&next(&mut it));
        let kind = match rule {
            Rule::description_clause => ClauseKind::Description(self.string(next(&mut it))),
            Rule::severity_clause => ClauseKind::Severity(self.spanned_str(&next(&mut it))),
            Rule::key_clause => ClauseKind::Key(it.map(|e| self.expr(e)).collect()),
            Rule::from_clause => {
                let stream = self.stream(next(&mut it));
                let cond = it.find(|p| p.as_rule() == Rule::expr).map(|e| self.expr(e));
                ClauseKind::From { stream, cond }
            }
            Rule::sequence_clause => {
                let mut within = None;
                let mut steps = Vec::new();
                for c in it {
                    match c.as_rule() {
                        Rule::duration => within = Some(self.duration(c)),
                        Rule::step => steps.push(self.step(c)),
                        _ => {}
                    }
                }
                ClauseKind::Sequence { within, steps }
            }
            Rule::window_clause => ClauseKind::Window(self.window(next(&mut it))),
            Rule::when_clause => ClauseKind::When(self.expr(next(&mut it))),
            Rule::absent_clause => ClauseKind::Absent(self.duration(next(&mut it))),
            Rule::throttle_clause => ClauseKind::Throttle(self.duration(next(&mut it))),
            Rule::labels_clause => ClauseKind::Labels(
                it.map(|l| {
                    let mut li = l.into_inner();
                    let k = next(&mut li);
                    let key = if k.as_rule() == Rule::string {
                        self.string(k)
                    } else {
                        self.spanned_str(&k)
                    };
                    let value = self.string(next(&mut li));
                    (key, value)
                })
                .collect(),
            ),
            Rule::notify_clause => ClauseKind::Notify(it.map(|n| self.spanned_str(&n)).collect()),
            Rule::message_clause => ClauseKind::Message(self.string(next(&mut it))),
            other => unreachable!("not a clause rule: {other:?}"),
        };
        Clause { kind, keyword }
    }

    fn stream(&self, p: Pair<Rule>) -> Spanned<Stream> {
        let span = self.span(&p);
        let inner = p.into_inner().next();
        let s = match inner {
            Some(i) if i.as_rule() == Rule::ident => Stream::Named(i.as_str().to_string()),
            _ => Stream::Any,
        };
        Spanned::new(s, span)
    }

    fn window(&mut self, p: Pair<Rule>) -> WindowSpec {
        let rule = p.as_rule();
        let mut it = p.into_inner().filter(|c| c.as_rule() == Rule::duration);
        let mut d = |cx: &mut Self| cx.duration(it.next().expect("window has a duration"));
        match rule {
            Rule::sliding => WindowSpec::Sliding(d(self)),
            Rule::tumbling => WindowSpec::Tumbling(d(self)),
            Rule::hopping => {
                let size = d(self);
                let every = d(self);
                WindowSpec::Hopping { size, every }
            }
            _ => WindowSpec::Session(d(self)),
        }
    }

    fn step(&mut self, p: Pair<Rule>) -> Step {
        let span = self.span(&p);
        let mut negated = None;
        let mut name = None;
        let mut stream = None;
        let mut cond = None;
        let mut quant = None;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::negation => negated = Some(self.span(&c)),
                Rule::ident => name = Some(self.spanned_str(&c)),
                Rule::stream => stream = Some(self.stream(c)),
                Rule::expr => cond = Some(self.expr(c)),
                Rule::quant => {
                    let qspan = self.span(&c);
                    let q = next(&mut c.into_inner());
                    let q = if q.as_rule() == Rule::min_quant {
                        let n = q.into_inner().next().map_or("0", |n| n.as_str());
                        match n.parse::<u64>() {
                            Ok(n) if n >= 1 => Quant::AtLeast(n),
                            _ => {
                                self.diags.push(Diagnostic::error(
                                    qspan,
                                    "a quantifier `{n,}` needs n >= 1 (and small enough to count)",
                                ));
                                Quant::AtLeast(1)
                            }
                        }
                    } else {
                        Quant::OneOrMore
                    };
                    quant = Some(Spanned::new(q, qspan));
                }
                _ => {}
            }
        }
        Step {
            negated,
            name: name.expect("step has a name"),
            stream: stream.expect("step has a stream"),
            cond,
            quant,
            span,
        }
    }

    fn duration(&mut self, p: Pair<Rule>) -> Spanned<Duration> {
        let span = self.span(&p);
        let text = p.as_str();
        Spanned::new(Duration(self.duration_ms(text, span)), span)
    }

    /// Milliseconds of a duration literal; reports unit-order mistakes.
    fn duration_ms(&mut self, text: &str, span: Span) -> i64 {
        match duration_ms(text) {
            Ok(ms) => ms,
            Err(msg) => {
                self.diags.push(Diagnostic::error(span, msg));
                1
            }
        }
    }

    /// A string literal with its escapes decoded; bad escapes are reported
    /// at their backslash.
    fn string(&mut self, p: Pair<Rule>) -> Spanned<String> {
        let span = self.span(&p);
        let body = p.into_inner().next();
        let (raw, body_start) = match &body {
            Some(b) => (b.as_str(), self.span(b).start),
            None => ("", span.start + 1),
        };
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let at = body_start + i;
            let bad = |cx: &mut Self, len: usize, msg: String| {
                cx.diags.push(
                    Diagnostic::error(Span::new(cx.file, at, at + len), msg).with_hint(
                        "the escapes are \\\" \\\\ \\n \\t and \\u{X} with 1 to 6 hex digits",
                    ),
                );
            };
            match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'u')) => {
                    // \u{X..}
                    let rest = &raw[i + 2..];
                    // Only `\u{...}` has a closing brace to skip; a `}`
                    // further on after a bare `\u` belongs to other text.
                    let close = if rest.starts_with('{') {
                        rest.find('}')
                    } else {
                        None
                    };
                    let ok = rest.starts_with('{')
                        && close.is_some_and(|c| {
                            let hex = &rest[1..c];
                            (1..=6).contains(&hex.len())
                                && hex.chars().all(|h| h.is_ascii_hexdigit())
                        });
                    let value = if ok {
                        let c = close.unwrap_or(0);
                        u32::from_str_radix(&rest[1..c], 16)
                            .ok()
                            .and_then(char::from_u32)
                    } else {
                        None
                    };
                    match value {
                        Some(ch) => {
                            out.push(ch);
                            let c = close.unwrap_or(0);
                            // Skip `{hex}`.
                            for _ in 0..=c {
                                chars.next();
                            }
                        }
                        None => {
                            let len = close.map_or(2, |c| c + 3);
                            bad(
                                self,
                                len,
                                "invalid unicode escape: write \\u{X} with 1 to 6 hex digits naming a Unicode scalar value".into(),
                            );
                            if let Some(c) = close {
                                for _ in 0..=c {
                                    chars.next();
                                }
                            }
                        }
                    }
                }
                Some((_, other)) => bad(
                    self,
                    1 + other.len_utf8(),
                    format!("invalid escape `\\{other}` in string"),
                ),
                None => bad(self, 1, "invalid escape at end of string".into()),
            }
        }
        Spanned::new(out, span)
    }

    fn list_items(&mut self, p: Pair<Rule>) -> Vec<Spanned<Literal>> {
        p.into_inner().map(|i| self.literal(i)).collect()
    }

    fn literal(&mut self, p: Pair<Rule>) -> Spanned<Literal> {
        let span = self.span(&p);
        let lit = match p.as_rule() {
            Rule::kw_true => Literal::Bool(true),
            Rule::kw_false => Literal::Bool(false),
            Rule::kw_null => Literal::Null,
            Rule::string => return self.string(p).map_node(Literal::String),
            Rule::duration => Literal::Duration(self.duration_ms(p.as_str(), span)),
            Rule::number => self.number(p.as_str(), span),
            Rule::signed_number => {
                let text = &p.as_str()[1..];
                match self.number(text, span) {
                    Literal::Number(n) => Literal::Number(-n),
                    _ => {
                        let ms = self.duration_ms(text, span);
                        Literal::Duration(-ms)
                    }
                }
            }
            other => unreachable!("not a literal: {other:?}"),
        };
        Spanned::new(lit, span)
    }

    fn number(&mut self, text: &str, span: Span) -> Literal {
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Literal::Number(n),
            Ok(_) => {
                self.diags.push(Diagnostic::error(
                    span,
                    format!("number `{text}` is too large"),
                ));
                Literal::Number(0.0)
            }
            // Not a number: a duration inside a signed literal.
            Err(_) => Literal::Duration(0),
        }
    }

    fn expr(&mut self, p: Pair<Rule>) -> Expr {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::expr | Rule::paren => {
                let inner = next(&mut p.into_inner());
                let mut e = self.expr(inner);
                if span.start < e.span.start {
                    // Parenthesised: keep the parentheses in the span.
                    e.span = span;
                }
                e
            }
            Rule::or_expr | Rule::and_expr => {
                let op = if p.as_rule() == Rule::or_expr {
                    BinOp::Or
                } else {
                    BinOp::And
                };
                let mut it = p.into_inner();
                let mut lhs = self.expr(next(&mut it));
                while let Some(kw) = it.next() {
                    let opspan = self.span(&kw);
                    let rhs = self.expr(next(&mut it));
                    let s = lhs.span.to(rhs.span);
                    lhs = Spanned::new(
                        ExprKind::Binary {
                            op: Spanned::new(op, opspan),
                            lhs: Box::new(lhs),
                            rhs: Box::new(rhs),
                        },
                        s,
                    );
                }
                lhs
            }
            Rule::not_expr => {
                let mut it = p.into_inner();
                let first = next(&mut it);
                if first.as_rule() == Rule::not_op {
                    let inner = self.expr(next(&mut it));
                    Spanned::new(ExprKind::Not(Box::new(inner)), span)
                } else {
                    self.expr(first)
                }
            }
            Rule::cmp_expr | Rule::sum | Rule::product => {
                let mut it = p.into_inner();
                let mut lhs = self.expr(next(&mut it));
                while let Some(opp) = it.next() {
                    let opspan = self.span(&opp);
                    let op = binop(opp);
                    let rhs = self.expr(next(&mut it));
                    let s = lhs.span.to(rhs.span);
                    lhs = Spanned::new(
                        ExprKind::Binary {
                            op: Spanned::new(op, opspan),
                            lhs: Box::new(lhs),
                            rhs: Box::new(rhs),
                        },
                        s,
                    );
                }
                lhs
            }
            Rule::unary => {
                let parts: Vec<Pair<Rule>> = p.into_inner().collect();
                let mut iter = parts.into_iter().rev();
                let prim = iter.next().expect("unary has a primary");
                let mut e = self.expr(prim);
                for neg in iter {
                    let s = self.span(&neg).to(e.span);
                    e = Spanned::new(ExprKind::Neg(Box::new(e)), s);
                }
                e
            }
            Rule::call => {
                let mut it = p.into_inner();
                let name = self.spanned_str(&next(&mut it));
                let args = it.map(|a| self.expr(a)).collect();
                Spanned::new(ExprKind::Call { name, args }, span)
            }
            Rule::path => {
                let mut it = p.into_inner();
                let head_pair = next(&mut it);
                let inner = next(&mut head_pair.into_inner());
                let head_backticked = inner.as_rule() == Rule::backtick;
                let head = self.name_of(inner);
                let segments = it
                    .map(|s| {
                        let sspan = self.span(&s);
                        let seg = if s.as_rule() == Rule::index_seg {
                            let n = s.into_inner().next().map_or("0", |n| n.as_str());
                            Segment::Index(n.parse().unwrap_or(usize::MAX))
                        } else {
                            let inner = next(&mut s.into_inner());
                            Segment::Field(self.name_of(inner).node)
                        };
                        Spanned::new(seg, sspan)
                    })
                    .collect();
                Spanned::new(
                    ExprKind::Path(Path {
                        head,
                        head_backticked,
                        segments,
                    }),
                    span,
                )
            }
            Rule::list_lit => Spanned::new(ExprKind::List(self.list_items(p)), span),
            _ => {
                let lit = self.literal(p);
                Spanned::new(ExprKind::Literal(lit.node), lit.span)
            }
        }
    }

    /// An identifier or a backticked name, without the backticks.
    fn name_of(&self, p: Pair<Rule>) -> Spanned<String> {
        let span = self.span(&p);
        if p.as_rule() == Rule::backtick {
            let body = p.into_inner().next().map_or("", |b| b.as_str());
            Spanned::new(body.to_string(), span)
        } else {
            Spanned::new(p.as_str().to_string(), span)
        }
    }
}

fn binop(p: Pair<Rule>) -> BinOp {
    let text = p.as_str();
    let inner = p.into_inner().next();
    let inner_rule = inner.as_ref().map(|i| i.as_rule());
    match inner_rule {
        Some(Rule::not_in) => BinOp::NotIn,
        Some(Rule::kw_in) => BinOp::In,
        Some(Rule::kw_matches) => BinOp::Matches,
        Some(Rule::kw_contains) => BinOp::Contains,
        Some(Rule::kw_starts_with) => BinOp::StartsWith,
        Some(Rule::kw_ends_with) => BinOp::EndsWith,
        Some(Rule::plus_op) => BinOp::Add,
        Some(Rule::minus_op) => BinOp::Sub,
        _ => match text.trim() {
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            _ => BinOp::Rem,
        },
    }
}

impl<T> Spanned<T> {
    pub fn map_node<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned::new(f(self.node), self.span)
    }
}

/// Milliseconds of a duration written in the rule language (`1h30m`,
/// `250ms`): one or more `<integer><unit>` parts, units `d h m s ms` in
/// decreasing order, each at most once. Zero is allowed here; callers that
/// need a positive duration check it.
pub fn duration_ms(text: &str) -> Result<i64, String> {
    const UNITS: [(&str, i64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let invalid = || {
        format!(
            "invalid duration `{text}`: write <integer><unit> parts with units d h m s ms in decreasing order, each at most once (e.g. 1h30m, 250ms)"
        )
    };
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total: i64 = 0;
    let mut last_rank: Option<usize> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let (num, tail) = rest.split_at(digits);
        // The unit: `ms`, or one character (split on a char boundary: the
        // text may hold any Unicode, e.g. `1Д` from a config file).
        let unit_len = if tail.starts_with("ms") {
            2
        } else {
            tail.chars().next().map_or(0, char::len_utf8)
        };
        if tail.is_empty() {
            return Err(invalid());
        }
        let (unit, tail) = tail.split_at(unit_len);
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        if last_rank.is_some_and(|l| rank <= l) {
            return Err(invalid());
        }
        last_rank = Some(rank);
        let too_large = || format!("duration `{text}` is too large");
        let n: i64 = num.parse().map_err(|_| too_large())?;
        total = n
            .checked_mul(UNITS[rank].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(too_large)?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::duration_ms;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("250ms"), Ok(250));
        assert_eq!(duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(duration_ms("2s500ms"), Ok(2500));
        assert_eq!(duration_ms("1m0s"), Ok(60_000));
        assert_eq!(duration_ms("1d"), Ok(86_400_000));
        // `1Д`: found by fuzzing the config loader (a multi-byte unit
        // character split inside its UTF-8 bytes panicked).
        for bad in [
            "", "1s1m", "1m1m", "1", "s", "1.5s", "1x", "1ms1s", "1Д", "Д", "1mД",
        ] {
            assert!(duration_ms(bad).is_err(), "{bad}");
        }
    }
}
