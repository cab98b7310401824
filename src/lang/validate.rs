//! AST → [`Program`]: resolves names (steps, lets, lists, fields), checks
//! every rule of section 10 of the rule-language spec, and compiles
//! expressions once. Every problem becomes a [`Diagnostic`]; none stops the
//! others from being found.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::ast::{self, BinOp, ClauseKind, Decl, Expr, ExprKind, Literal, Stream};
use super::diagnostic::{Diagnostic, did_you_mean};
use super::program::*;
use super::span::{FileId, SourceMap, Span, Spanned};

/// What a validation run knows besides the rules.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Channel names from the config; `None` skips the `notify` check.
    pub channels: Option<HashSet<String>>,
}

/// Compiles every file's declarations. The program is usable only when no
/// diagnostic is an error.
pub fn compile(
    sources: &SourceMap,
    files: &[(FileId, Vec<Decl>)],
    opts: &Options,
) -> (Program, Vec<Diagnostic>) {
    let mut v = Validator {
        sources,
        opts,
        diags: Vec::new(),
        lists: HashMap::new(),
        lets: HashMap::new(),
    };
    // Pass 1: lists and lets are visible everywhere, in any order.
    for (_, decls) in files {
        for d in decls {
            match d {
                Decl::List(l) => {
                    if v.lists.contains_key(&l.name.node) {
                        v.err(l.name.span, format!("duplicate list `{}`", l.name.node));
                    } else {
                        let items = l.items.iter().map(|i| literal_value(&i.node)).collect();
                        v.lists.insert(l.name.node.clone(), Value::Array(items));
                    }
                }
                Decl::Let(l) => {
                    if v.lets.contains_key(&l.name.node) {
                        v.err(l.name.span, format!("duplicate let `{}`", l.name.node));
                    } else {
                        v.lets.insert(l.name.node.clone(), l);
                    }
                }
                Decl::Rule(_) => {}
            }
        }
    }
    // Every let body is checked once on its own (recursion, unknown names).
    for (_, decls) in files {
        for d in decls {
            if let Decl::Let(l) = d
                && v.lets
                    .get(&l.name.node)
                    .is_some_and(|x| std::ptr::eq(*x, l))
            {
                let mut stack = vec![l.name.node.clone()];
                let mut cx = ExprCx::new(Mode::Let);
                v.expr(&l.body, &mut cx, &mut stack);
            }
        }
    }
    // Pass 2: rules.
    let mut program = Program::default();
    let mut names: HashSet<String> = HashSet::new();
    for (file, decls) in files {
        for d in decls {
            if let Decl::Rule(r) = d {
                if !names.insert(r.name.node.clone()) {
                    v.err(
                        r.name.span,
                        format!("duplicate rule name `{}`", r.name.node),
                    );
                }
                if let Some(rule) = v.rule(*file, r) {
                    program.rules.push(Arc::new(rule));
                }
            }
        }
    }
    let mut diags = v.diags;
    // The same let expanded in several places reports its problem once.
    let mut seen = HashSet::new();
    diags.retain(|d| seen.insert((d.span, d.message.clone())));
    diags.sort_by_key(|d| (d.span.file.0, d.span.start));
    (program, diags)
}

struct Validator<'a> {
    sources: &'a SourceMap,
    opts: &'a Options,
    diags: Vec<Diagnostic>,
    lists: HashMap<String, Value>,
    lets: HashMap<String, &'a ast::LetDecl>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Conditions and keys: event fields, functions; no aggregates.
    Plain,
    /// A sequence step's condition: also earlier steps.
    Step,
    /// `when`: aggregates and literals only.
    When,
    /// Inside an aggregate's argument: event fields, no nested aggregate.
    AggArg,
    /// A `let` body checked on its own: it is a macro, so what it may hold
    /// depends on where it is used; only context-free problems are reported.
    Let,
}

/// Deeper expressions are refused: evaluation is recursive.
const MAX_DEPTH: usize = 200;

struct ExprCx<'s> {
    mode: Mode,
    /// For `Mode::Step`: every step of the sequence and the current index.
    steps: &'s [ast::Step],
    current: usize,
    /// For `Mode::When`: the aggregates found so far.
    aggs: Vec<Aggregate>,
    /// Current nesting depth.
    depth: usize,
}

impl<'s> ExprCx<'s> {
    fn new(mode: Mode) -> Self {
        ExprCx {
            mode,
            steps: &[],
            current: 0,
            aggs: Vec::new(),
            depth: 0,
        }
    }

    fn step_index(&self, name: &str) -> Option<usize> {
        if self.mode != Mode::Step {
            return None;
        }
        self.steps.iter().position(|s| s.name.node == name)
    }
}

fn literal_value(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Number(n) => number_value(*n),
        Literal::Duration(ms) => Value::from(*ms),
        Literal::String(s) => Value::String(s.clone()),
    }
}

fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Source text with white space and comments between tokens removed; string
/// literals and backticked names kept verbatim.
pub fn canonical_text(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            '`' => {
                out.push(c);
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '`' {
                        break;
                    }
                }
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

impl<'a> Validator<'a> {
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(span, msg));
    }

    fn err_hint(&mut self, span: Span, msg: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::error(span, msg);
        d.hint = hint;
        self.diags.push(d);
    }

    fn text(&self, span: Span) -> &'a str {
        self.sources.slice(span)
    }

    fn positive_duration(&mut self, d: &Spanned<ast::Duration>, what: &str) -> i64 {
        if d.node.0 <= 0 {
            self.err(
                d.span,
                format!("{what} must be a positive duration, not zero"),
            );
        }
        d.node.0.max(1)
    }

    fn rule(&mut self, file: FileId, r: &'a ast::RuleDecl) -> Option<Rule> {
        let errors_before = self.diags.iter().filter(|d| d.is_error()).count();
        let src = self.sources.file(file);
        // Each clause at most once.
        let mut by_kw: HashMap<&'static str, &'a ast::Clause> = HashMap::new();
        for c in &r.clauses {
            let kw = c.kind.keyword();
            if by_kw.contains_key(kw) {
                self.err(
                    c.keyword,
                    format!("duplicate `{kw}` clause in rule `{}`", r.name.node),
                );
            } else {
                by_kw.insert(kw, c);
            }
        }
        let get = |kw: &str| by_kw.get(kw).copied();

        let mut severity = AlertSeverity::Warning;
        let mut description = None;
        let mut key = Vec::new();
        let mut throttle_ms = None;
        let mut labels = Vec::new();
        let mut notify = Vec::new();
        let mut message = None;
        let mut message_at = None;
        for c in by_kw.values() {
            match &c.kind {
                ClauseKind::Severity(s) => match AlertSeverity::parse(&s.node) {
                    Some(sv) => severity = sv,
                    None => self.err_hint(
                        s.span,
                        format!("unknown severity `{}`", s.node),
                        did_you_mean(&s.node, AlertSeverity::NAMES)
                            .or(Some("one of info, warning, error, critical".into())),
                    ),
                },
                ClauseKind::Description(d) => description = Some(d.node.clone()),
                ClauseKind::Throttle(d) => {
                    throttle_ms = Some(self.positive_duration(d, "throttle"))
                }
                ClauseKind::Labels(ls) => {
                    let mut seen = HashSet::new();
                    for (k, val) in ls {
                        if !seen.insert(k.node.clone()) {
                            self.err(k.span, format!("duplicate label `{}`", k.node));
                        }
                        labels.push((k.node.clone(), val.node.clone()));
                    }
                }
                ClauseKind::Notify(ns) => {
                    for n in ns {
                        if let Some(chs) = &self.opts.channels
                            && !chs.contains(&n.node)
                        {
                            let hint = did_you_mean(&n.node, chs.iter().map(String::as_str));
                            self.err_hint(n.span, format!("unknown channel `{}`", n.node), hint);
                        }
                        notify.push(n.node.clone());
                    }
                }
                ClauseKind::Message(m) => {
                    // Checked once the rule's kind (and so its context) is known.
                    message_at = Some(m.span);
                    message = Some(m.node.clone());
                }
                _ => {}
            }
        }
        if let Some(c) = get("key")
            && let ClauseKind::Key(exprs) = &c.kind
        {
            let mut names = HashSet::new();
            for e in exprs {
                let name = canonical_text(self.text(e.span));
                if !names.insert(name.clone()) {
                    self.err(e.span, format!("duplicate key `{name}`"));
                }
                let mut cx = ExprCx::new(Mode::Plain);
                let expr = self.expr(e, &mut cx, &mut Vec::new());
                key.push(KeyExpr { name, expr });
            }
        }

        let kind = self.rule_kind(r, &get);
        if let (Some(text), Some(at), Some(kind)) = (&message, message_at, &kind) {
            let extra: Vec<&str> = match kind {
                RuleKind::Filter(_) => vec!["event"],
                RuleKind::Sequence(s) => s.positive().map(|i| s.steps[i].name.as_str()).collect(),
                RuleKind::Threshold(_) | RuleKind::Absence(_) => Vec::new(),
            };
            for p in super::template::problems(&minijinja::Environment::new(), text, &extra) {
                self.err(at, p);
            }
        }
        let errors_after = self.diags.iter().filter(|d| d.is_error()).count();
        let kind = kind?;
        if errors_after > errors_before {
            return None;
        }
        let lc = src.line_col(r.span.start);
        Some(Rule {
            name: r.name.node.clone(),
            file: src.name.clone(),
            line: lc.line,
            source: src.slice(r.span).to_string(),
            description,
            severity,
            key,
            kind,
            throttle_ms,
            labels,
            notify,
            message,
        })
    }

    fn rule_kind(
        &mut self,
        r: &'a ast::RuleDecl,
        get: &dyn Fn(&str) -> Option<&'a ast::Clause>,
    ) -> Option<RuleKind> {
        let misfit = |v: &mut Self, kw: &str, kind: &str| {
            if let Some(c) = get(kw) {
                v.err(
                    c.keyword,
                    format!("`{kw}` does not fit a {kind} rule (rule `{}`)", r.name.node),
                );
            }
        };
        if let Some(seq) = get("sequence") {
            for kw in ["from", "window", "when", "absent"] {
                misfit(self, kw, "sequence");
            }
            let ClauseKind::Sequence { within, steps } = &seq.kind else {
                return None;
            };
            return self
                .sequence(seq.keyword, within.as_ref(), steps)
                .map(RuleKind::Sequence);
        }
        let Some(from_c) = get("from") else {
            for kw in ["window", "when", "absent"] {
                if let Some(c) = get(kw) {
                    self.err(
                        c.keyword,
                        format!("`{kw}` needs a `from` clause (rule `{}`)", r.name.node),
                    );
                }
            }
            self.err(
                r.name.span,
                format!("rule `{}` has neither `from` nor `sequence`", r.name.node),
            );
            return None;
        };
        let ClauseKind::From { stream, cond } = &from_c.kind else {
            return None;
        };
        let from = From {
            stream: match &stream.node {
                Stream::Any => None,
                Stream::Named(s) => Some(s.clone()),
            },
            cond: cond.as_ref().map(|c| {
                let mut cx = ExprCx::new(Mode::Plain);
                self.expr(c, &mut cx, &mut Vec::new())
            }),
        };
        let window = get("window");
        let when = get("when");
        if window.is_some() || when.is_some() {
            misfit(self, "absent", "threshold");
            let (Some(window), Some(when)) = (window, when) else {
                if let Some(w) = window {
                    self.err(w.keyword, "a `window` needs a `when` condition");
                }
                if let Some(w) = when {
                    self.err(
                        w.keyword,
                        "`when` needs a `window` (a threshold rule has both)",
                    );
                }
                return None;
            };
            let ClauseKind::Window(spec) = &window.kind else {
                return None;
            };
            let ClauseKind::When(cond) = &when.kind else {
                return None;
            };
            let window = match spec {
                ast::WindowSpec::Sliding(d) => Window::Sliding {
                    size: self.positive_duration(d, "a window size"),
                },
                ast::WindowSpec::Tumbling(d) => {
                    let size = self.positive_duration(d, "a window size");
                    Window::Hopping { size, every: size }
                }
                ast::WindowSpec::Hopping { size, every } => Window::Hopping {
                    size: self.positive_duration(size, "a window size"),
                    every: self.positive_duration(every, "a hop"),
                },
                ast::WindowSpec::Session(d) => Window::Session {
                    gap: self.positive_duration(d, "a session gap"),
                },
            };
            let mut cx = ExprCx::new(Mode::When);
            let when = self.expr(cond, &mut cx, &mut Vec::new());
            return Some(RuleKind::Threshold(Threshold {
                from,
                window,
                when,
                aggs: cx.aggs,
            }));
        }
        if let Some(a) = get("absent") {
            let ClauseKind::Absent(d) = &a.kind else {
                return None;
            };
            let duration = self.positive_duration(d, "`absent`");
            return Some(RuleKind::Absence(Absence { from, duration }));
        }
        Some(RuleKind::Filter(from))
    }

    fn sequence(
        &mut self,
        keyword: Span,
        within: Option<&Spanned<ast::Duration>>,
        steps: &'a [ast::Step],
    ) -> Option<Sequence> {
        let within = match within {
            Some(d) => self.positive_duration(d, "`within`"),
            None => {
                self.err_hint(
                    keyword,
                    "a sequence needs a time bound",
                    Some("write `sequence within 5m { ... }`".into()),
                );
                1
            }
        };
        if steps.len() < 2 {
            self.err(keyword, "a sequence needs at least two steps");
        }
        let mut names = HashSet::new();
        let mut last_positive_quantified = false;
        let mut prev_negated = false;
        let mut out = Vec::new();
        for (i, st) in steps.iter().enumerate() {
            if !names.insert(st.name.node.as_str()) {
                self.err(
                    st.name.span,
                    format!("duplicate step name `{}`", st.name.node),
                );
            }
            let negated = st.negated.is_some();
            if negated {
                if i == 0 {
                    self.err(st.span, "the first step of a sequence must not be negated");
                }
                if prev_negated {
                    self.err(st.span, "two negated steps must not be adjacent");
                }
                if let Some(q) = &st.quant {
                    self.err(q.span, "a negated step takes no quantifier");
                }
            } else if st.quant.is_some() {
                if last_positive_quantified {
                    self.err(
                        st.span,
                        "two consecutive positive steps must not both be quantified",
                    );
                }
                last_positive_quantified = true;
            } else {
                last_positive_quantified = false;
            }
            prev_negated = negated;
            let cond = st.cond.as_ref().map(|c| {
                let mut cx = ExprCx::new(Mode::Step);
                cx.steps = steps;
                cx.current = i;
                self.expr(c, &mut cx, &mut Vec::new())
            });
            out.push(Step {
                name: st.name.node.clone(),
                negated,
                stream: match &st.stream.node {
                    Stream::Any => None,
                    Stream::Named(s) => Some(s.clone()),
                },
                cond,
                min: if negated {
                    None
                } else {
                    st.quant.as_ref().map(|q| q.node.min())
                },
            });
        }
        Some(Sequence { within, steps: out })
    }

    /// Compiles an expression; on error reports it and yields `null`.
    fn expr(&mut self, e: &'a Expr, cx: &mut ExprCx<'a>, lets: &mut Vec<String>) -> CExpr {
        if cx.depth >= MAX_DEPTH {
            self.err(
                e.span,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            );
            return CExpr::Lit(Value::Null);
        }
        cx.depth += 1;
        let r = self.expr_inner(e, cx, lets);
        cx.depth -= 1;
        r
    }

    fn expr_inner(&mut self, e: &'a Expr, cx: &mut ExprCx<'a>, lets: &mut Vec<String>) -> CExpr {
        match &e.node {
            ExprKind::Literal(l) => CExpr::Lit(literal_value(l)),
            ExprKind::List(items) => CExpr::Lit(Value::Array(
                items.iter().map(|i| literal_value(&i.node)).collect(),
            )),
            ExprKind::Path(p) => self.path(e.span, p, cx, lets),
            ExprKind::Neg(inner) => CExpr::Neg(Box::new(self.expr(inner, cx, lets))),
            ExprKind::Not(inner) => CExpr::Not(Box::new(self.expr(inner, cx, lets))),
            ExprKind::Call { name, args } => self.call(name, args, e.span, cx, lets),
            ExprKind::Binary { op, lhs, rhs } => self.binary(op.node, lhs, rhs, cx, lets),
        }
    }

    fn binary(
        &mut self,
        op: BinOp,
        lhs: &'a Expr,
        rhs: &'a Expr,
        cx: &mut ExprCx<'a>,
        lets: &mut Vec<String>,
    ) -> CExpr {
        let is_null = |e: &Expr| matches!(e.node, ExprKind::Literal(Literal::Null));
        if matches!(op, BinOp::Eq | BinOp::Ne) && (is_null(lhs) || is_null(rhs)) {
            let other = if is_null(lhs) { rhs } else { lhs };
            let inner = self.expr(other, cx, lets);
            return CExpr::IsNull(Box::new(inner), op == BinOp::Ne);
        }
        if matches!(op, BinOp::In | BinOp::NotIn) {
            let a = self.expr(lhs, cx, lets);
            let b = self.in_rhs(rhs, cx, lets);
            return CExpr::In(Box::new(a), Box::new(b), op == BinOp::NotIn);
        }
        if op == BinOp::Matches {
            let a = self.expr(lhs, cx, lets);
            let ExprKind::Literal(Literal::String(pat)) = &rhs.node else {
                self.err(rhs.span, "`matches` needs a string literal pattern");
                return CExpr::Lit(Value::Null);
            };
            return match regex::Regex::new(pat) {
                Ok(re) => CExpr::Matches(Box::new(a), re),
                Err(err) => {
                    let msg = err.to_string();
                    let last = msg.lines().last().unwrap_or("").trim();
                    let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
                    self.err(rhs.span, format!("invalid regex: {last}"));
                    CExpr::Lit(Value::Null)
                }
            };
        }
        let a = Box::new(self.expr(lhs, cx, lets));
        let b = Box::new(self.expr(rhs, cx, lets));
        match op {
            BinOp::Or => CExpr::Or(a, b),
            BinOp::And => CExpr::And(a, b),
            BinOp::Eq => CExpr::Cmp(CmpOp::Eq, a, b),
            BinOp::Ne => CExpr::Cmp(CmpOp::Ne, a, b),
            BinOp::Lt => CExpr::Cmp(CmpOp::Lt, a, b),
            BinOp::Le => CExpr::Cmp(CmpOp::Le, a, b),
            BinOp::Gt => CExpr::Cmp(CmpOp::Gt, a, b),
            BinOp::Ge => CExpr::Cmp(CmpOp::Ge, a, b),
            BinOp::Contains => CExpr::Str(StrOp::Contains, a, b),
            BinOp::StartsWith => CExpr::Str(StrOp::StartsWith, a, b),
            BinOp::EndsWith => CExpr::Str(StrOp::EndsWith, a, b),
            BinOp::Add => CExpr::Arith(ArithOp::Add, a, b),
            BinOp::Sub => CExpr::Arith(ArithOp::Sub, a, b),
            BinOp::Mul => CExpr::Arith(ArithOp::Mul, a, b),
            BinOp::Div => CExpr::Arith(ArithOp::Div, a, b),
            BinOp::Rem => CExpr::Arith(ArithOp::Rem, a, b),
            BinOp::In | BinOp::NotIn | BinOp::Matches => unreachable!("handled above"),
        }
    }

    /// The right of `in`: a bare name must be a declared list. Only a name
    /// right after `in` is one (rule-language.md 3): a parenthesised name,
    /// `1 in (tags)`, is an ordinary expression (here the field `tags`),
    /// which `in` accepts as "any expression giving an array" (8). The
    /// parser widens a parenthesised expression's span to its parentheses,
    /// so the name is bare exactly when the span starts at the name.
    fn in_rhs(&mut self, rhs: &'a Expr, cx: &mut ExprCx<'a>, lets: &mut Vec<String>) -> CExpr {
        if let ExprKind::Path(p) = &rhs.node
            && !p.head_backticked
            && p.segments.is_empty()
            && rhs.span.start == p.head.span.start
        {
            return match self.lists.get(&p.head.node) {
                Some(list) => CExpr::Lit(list.clone()),
                None => {
                    let hint = did_you_mean(&p.head.node, self.lists.keys().map(String::as_str))
                            .or_else(|| {
                                Some(format!(
                                    "declare it with `list {} = [...]`, or write `` `{}` `` for an array field",
                                    p.head.node, p.head.node
                                ))
                            });
                    self.err_hint(p.head.span, format!("unknown list `{}`", p.head.node), hint);
                    CExpr::Lit(Value::Null)
                }
            };
        }
        if let ExprKind::Path(p) = &rhs.node
            && !p.head_backticked
            && p.segments.is_empty()
            && self.lists.contains_key(&p.head.node)
            && !self.lets.contains_key(&p.head.node)
        {
            // `x in (admins)` with a list `admins`: legal (a field), but
            // likely meant the list.
            self.diags.push(
                Diagnostic::warning(
                    p.head.span,
                    format!(
                        "`({})` is read as the event field `{}`, not the list",
                        p.head.node, p.head.node
                    ),
                )
                .with_hint(format!(
                    "write `in {}` without parentheses for the list",
                    p.head.node
                )),
            );
        }
        self.expr(rhs, cx, lets)
    }

    fn path(
        &mut self,
        span: Span,
        p: &'a ast::Path,
        cx: &mut ExprCx<'a>,
        lets: &mut Vec<String>,
    ) -> CExpr {
        let segs: FieldPath = p
            .segments
            .iter()
            .map(|s| match &s.node {
                ast::Segment::Field(f) => PathSeg::Field(f.as_str().into()),
                ast::Segment::Index(i) => PathSeg::Index(*i),
            })
            .collect();
        if !p.head_backticked {
            if !p.segments.is_empty() {
                if let Some(idx) = cx.step_index(&p.head.node) {
                    return match self.check_step_ref(&p.head, idx, cx) {
                        true => CExpr::StepField(idx, segs),
                        false => CExpr::Lit(Value::Null),
                    };
                }
                if cx.mode == Mode::Step {
                    let names = cx.steps.iter().map(|s| s.name.node.as_str());
                    if let Some(hint) = did_you_mean(&p.head.node, names) {
                        self.diags.push(
                            Diagnostic::warning(
                                p.head.span,
                                format!("`{}` is read as an event field", p.head.node),
                            )
                            .with_hint(hint),
                        );
                    }
                }
            } else if let Some(l) = self.lets.get(&p.head.node).copied() {
                if lets.contains(&p.head.node) {
                    self.err(
                        p.head.span,
                        format!("`let {}` refers to itself (recursion)", p.head.node),
                    );
                    return CExpr::Lit(Value::Null);
                }
                lets.push(p.head.node.clone());
                let e = self.expr(&l.body, cx, lets);
                lets.pop();
                return e;
            }
        }
        if cx.mode == Mode::When {
            self.err(
                span,
                format!(
                    "event field `{}` outside an aggregate in `when`",
                    self.text(span)
                ),
            );
            return CExpr::Lit(Value::Null);
        }
        let mut full = Vec::with_capacity(segs.len() + 1);
        full.push(PathSeg::Field(p.head.node.as_str().into()));
        full.extend(segs.iter().cloned());
        CExpr::Field(full.into())
    }

    /// A reference to step `idx` from the current step: only earlier positive steps.
    fn check_step_ref(&mut self, name: &Spanned<String>, idx: usize, cx: &ExprCx) -> bool {
        if idx >= cx.current {
            let which = if idx == cx.current {
                "itself"
            } else {
                "a later step"
            };
            self.err(
                name.span,
                format!(
                    "step `{}` refers to {which} `{}`: only earlier steps can be used",
                    cx.steps[cx.current].name.node, name.node
                ),
            );
            return false;
        }
        if cx.steps[idx].negated.is_some() {
            self.err(
                name.span,
                format!(
                    "`{}` is a negated step: it binds no event to refer to",
                    name.node
                ),
            );
            return false;
        }
        true
    }

    fn call(
        &mut self,
        name: &'a Spanned<String>,
        args: &'a [Expr],
        span: Span,
        cx: &mut ExprCx<'a>,
        lets: &mut Vec<String>,
    ) -> CExpr {
        let n = name.node.as_str();
        if n == "exists" {
            if args.len() != 1 {
                self.err(name.span, "`exists` takes one path");
                return CExpr::Lit(Value::Null);
            }
            return match &args[0].node {
                ExprKind::Path(p) => match self.path(args[0].span, p, cx, lets) {
                    CExpr::Field(fp) => CExpr::Exists(fp),
                    _ => {
                        if !matches!(cx.mode, Mode::When) {
                            self.err(args[0].span, "`exists` needs an event field path");
                        }
                        CExpr::Lit(Value::Null)
                    }
                },
                _ => {
                    self.err(
                        args[0].span,
                        "`exists` needs a path, e.g. `exists(user.name)`",
                    );
                    CExpr::Lit(Value::Null)
                }
            };
        }
        if let Some(f) = Func::parse(n) {
            if args.len() != 1 {
                self.err(name.span, format!("`{n}` takes exactly one argument"));
                return CExpr::Lit(Value::Null);
            }
            return CExpr::Call(f, Box::new(self.expr(&args[0], cx, lets)));
        }
        if let Some(agg) = AggFunc::parse(n) {
            return self.aggregate(name, agg, args, span, cx, lets);
        }
        let all = Func::NAMES.iter().chain(AggFunc::NAMES.iter()).copied();
        self.err_hint(
            name.span,
            format!("unknown function `{n}`"),
            did_you_mean(n, all),
        );
        CExpr::Lit(Value::Null)
    }

    fn aggregate(
        &mut self,
        name: &'a Spanned<String>,
        agg: AggFunc,
        args: &'a [Expr],
        span: Span,
        cx: &mut ExprCx<'a>,
        lets: &mut Vec<String>,
    ) -> CExpr {
        let n = name.node.as_str();
        if cx.mode == Mode::Step && agg == AggFunc::Count {
            // count(step)
            let target = match args {
                [
                    Spanned {
                        node: ExprKind::Path(p),
                        ..
                    },
                ] if p.segments.is_empty() && !p.head_backticked => &p.head,
                _ => {
                    self.err(span, "in a step, `count` takes the name of an earlier step");
                    return CExpr::Lit(Value::Null);
                }
            };
            return match cx.step_index(&target.node) {
                Some(idx) => {
                    if self.check_step_ref(target, idx, cx) {
                        CExpr::StepCount(idx)
                    } else {
                        CExpr::Lit(Value::Null)
                    }
                }
                None => {
                    let names = cx.steps[..cx.current]
                        .iter()
                        .filter(|s| s.negated.is_none())
                        .map(|s| s.name.node.as_str());
                    let hint = did_you_mean(&target.node, names);
                    self.err_hint(target.span, format!("unknown step `{}`", target.node), hint);
                    CExpr::Lit(Value::Null)
                }
            };
        }
        if cx.mode == Mode::Let {
            for a in args {
                let mut inner = ExprCx::new(Mode::AggArg);
                self.expr(a, &mut inner, lets);
            }
            return CExpr::Lit(Value::Null);
        }
        if cx.mode != Mode::When {
            let msg = if cx.mode == Mode::AggArg {
                format!("aggregate `{n}` cannot be nested in another aggregate")
            } else {
                format!("aggregate `{n}` is only allowed in `when`")
            };
            self.err(name.span, msg);
            return CExpr::Lit(Value::Null);
        }
        let arity_ok = match agg {
            AggFunc::Count => args.len() <= 1,
            _ => args.len() == 1,
        };
        if !arity_ok {
            let msg = if agg == AggFunc::Count {
                "`count` takes at most one argument".to_string()
            } else {
                format!("`{n}` takes exactly one argument")
            };
            self.err(name.span, msg);
            return CExpr::Lit(Value::Null);
        }
        let canonical = format!(
            "{n}({})",
            args.first()
                .map(|a| canonical_text(self.text(a.span)))
                .unwrap_or_default()
        );
        if let Some(i) = cx.aggs.iter().position(|a| a.name == canonical) {
            return CExpr::Agg(i);
        }
        let arg = args.first().map(|a| {
            let mut inner = ExprCx::new(Mode::AggArg);
            self.expr(a, &mut inner, lets)
        });
        cx.aggs.push(Aggregate {
            name: canonical,
            func: agg,
            arg,
        });
        CExpr::Agg(cx.aggs.len() - 1)
    }
}
