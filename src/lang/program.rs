//! The validated, compiled rule set the engine runs: names resolved, lets
//! and lists inlined, regexes built, durations in milliseconds. Nothing here
//! refers to the AST or to pest.

use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

/// Every rule, in rule order (file-name order, then order within a file).
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub rules: Vec<Arc<Rule>>,
    /// The rule files it was loaded from, `(name, text)` in load order: what
    /// the write-ahead log and checkpoints record, so that recovery can load
    /// the very rules that were running.
    pub texts: Arc<[(String, String)]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertSeverity {
    Info,
    Warning,
    Error,
    Critical,
}

impl AlertSeverity {
    pub const NAMES: [&'static str; 4] = ["info", "warning", "error", "critical"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => AlertSeverity::Info,
            "warning" => AlertSeverity::Warning,
            "error" => AlertSeverity::Error,
            "critical" => AlertSeverity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// File name and 1-based line of the `rule` keyword.
    pub file: String,
    pub line: usize,
    /// The rule's source text: equal text means "unchanged" across reloads.
    pub source: String,
    pub description: Option<String>,
    pub severity: AlertSeverity,
    pub key: Vec<KeyExpr>,
    pub kind: RuleKind,
    pub throttle_ms: Option<i64>,
    pub labels: Vec<(String, String)>,
    /// Channel names; empty means the config's `default_notify`.
    pub notify: Vec<String>,
    pub message: Option<String>,
}

impl Rule {
    /// The stream this rule reads, for routing (`None`: every stream).
    pub fn streams(&self) -> Vec<Option<&str>> {
        match &self.kind {
            RuleKind::Filter(f) => vec![f.stream.as_deref()],
            RuleKind::Threshold(t) => vec![t.from.stream.as_deref()],
            RuleKind::Absence(a) => vec![a.from.stream.as_deref()],
            RuleKind::Sequence(s) => s.steps.iter().map(|st| st.stream.as_deref()).collect(),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            RuleKind::Filter(_) => "filter",
            RuleKind::Threshold(_) => "threshold",
            RuleKind::Absence(_) => "absence",
            RuleKind::Sequence(_) => "sequence",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeyExpr {
    /// Canonical source text: the member name in alert `key` objects.
    pub name: String,
    pub expr: CExpr,
}

#[derive(Debug, Clone)]
pub enum RuleKind {
    Filter(From),
    Threshold(Threshold),
    Absence(Absence),
    Sequence(Sequence),
}

/// `from STREAM [where COND]`; `stream` is `None` for `*`.
#[derive(Debug, Clone)]
pub struct From {
    pub stream: Option<String>,
    pub cond: Option<CExpr>,
}

#[derive(Debug, Clone)]
pub struct Threshold {
    pub from: From,
    pub window: Window,
    /// The `when` condition; aggregates appear as [`CExpr::Agg`] indexes into `aggs`.
    pub when: CExpr,
    pub aggs: Vec<Aggregate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Sliding {
        size: i64,
    },
    /// Tumbling is hopping with `every == size`.
    Hopping {
        size: i64,
        every: i64,
    },
    Session {
        gap: i64,
    },
}

#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Canonical text, e.g. `avg(latency_ms)`: the name in alert `values`.
    pub name: String,
    pub func: AggFunc,
    /// `None` only for `count()`.
    pub arg: Option<CExpr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Distinct,
    /// Nearest-rank percentile: 50, 90, 95 or 99.
    Percentile(u32),
    First,
    Last,
}

impl AggFunc {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "count" => AggFunc::Count,
            "sum" => AggFunc::Sum,
            "avg" => AggFunc::Avg,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "distinct" => AggFunc::Distinct,
            "p50" => AggFunc::Percentile(50),
            "p90" => AggFunc::Percentile(90),
            "p95" => AggFunc::Percentile(95),
            "p99" => AggFunc::Percentile(99),
            "first" => AggFunc::First,
            "last" => AggFunc::Last,
            _ => return None,
        })
    }

    pub const NAMES: [&'static str; 12] = [
        "count", "sum", "avg", "min", "max", "distinct", "p50", "p90", "p95", "p99", "first",
        "last",
    ];
}

#[derive(Debug, Clone)]
pub struct Absence {
    pub from: From,
    pub duration: i64,
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub within: i64,
    pub steps: Vec<Step>,
}

impl Sequence {
    /// Indexes of the positive steps, in order.
    pub fn positive(&self) -> impl Iterator<Item = usize> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.negated)
            .map(|(i, _)| i)
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub negated: bool,
    pub stream: Option<String>,
    /// May refer to earlier positive steps as [`CExpr::StepField`] / [`CExpr::StepCount`]
    /// (indexes into the sequence's `steps`).
    pub cond: Option<CExpr>,
    /// Minimum count of a quantified step (`+` is 1); `None`: exactly one event.
    pub min: Option<u64>,
}

/// A field path resolved once at load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Field(Box<str>),
    Index(usize),
}

pub type FieldPath = Box<[PathSeg]>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    Len,
    Number,
    String,
    Abs,
}

impl Func {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            "len" => Func::Len,
            "number" => Func::Number,
            "string" => Func::String,
            "abs" => Func::Abs,
            _ => return None,
        })
    }

    pub const NAMES: [&'static str; 7] =
        ["lower", "upper", "len", "exists", "number", "string", "abs"];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// A compiled expression. Evaluation lives in `engine::expr`.
#[derive(Debug, Clone)]
pub enum CExpr {
    Lit(Value),
    Field(FieldPath),
    /// `exists(path)`.
    Exists(FieldPath),
    /// `step.path`: the (most recent) event of an earlier positive step.
    StepField(usize, FieldPath),
    /// `count(step)`.
    StepCount(usize),
    /// An aggregate of a threshold rule, by index into `Threshold::aggs`.
    Agg(usize),
    Call(Func, Box<CExpr>),
    Neg(Box<CExpr>),
    Arith(ArithOp, Box<CExpr>, Box<CExpr>),
    Cmp(CmpOp, Box<CExpr>, Box<CExpr>),
    /// `x == null` (false) / `x != null` (true): tests null-or-missing.
    IsNull(Box<CExpr>, bool),
    In(Box<CExpr>, Box<CExpr>, bool),
    Matches(Box<CExpr>, Regex),
    Str(StrOp, Box<CExpr>, Box<CExpr>),
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    Not(Box<CExpr>),
}
