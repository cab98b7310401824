//! The rule file as written: every node carries its [`Span`]; no pest types,
//! no resolution. `parse.rs` builds it, `validate.rs` consumes it.

use super::span::{Span, Spanned};

#[derive(Debug, Clone, PartialEq)]
pub enum Decl {
    List(ListDecl),
    Let(LetDecl),
    Rule(RuleDecl),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListDecl {
    pub name: Spanned<String>,
    pub items: Vec<Spanned<Literal>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LetDecl {
    pub name: Spanned<String>,
    pub body: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDecl {
    pub name: Spanned<String>,
    pub clauses: Vec<Clause>,
    /// The whole `rule ... { ... }` text, for "changed since last load" and the console.
    pub span: Span,
}

/// One clause; `span` covers the clause keyword (where a misplaced clause is reported).
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub kind: ClauseKind,
    pub keyword: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClauseKind {
    Description(Spanned<String>),
    Severity(Spanned<String>),
    Key(Vec<Expr>),
    From {
        stream: Spanned<Stream>,
        cond: Option<Expr>,
    },
    Sequence {
        within: Option<Spanned<Duration>>,
        steps: Vec<Step>,
    },
    Window(WindowSpec),
    When(Expr),
    Absent(Spanned<Duration>),
    Throttle(Spanned<Duration>),
    Labels(Vec<(Spanned<String>, Spanned<String>)>),
    Notify(Vec<Spanned<String>>),
    Message(Spanned<String>),
}

impl ClauseKind {
    /// The clause keyword, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            ClauseKind::Description(_) => "description",
            ClauseKind::Severity(_) => "severity",
            ClauseKind::Key(_) => "key",
            ClauseKind::From { .. } => "from",
            ClauseKind::Sequence { .. } => "sequence",
            ClauseKind::Window(_) => "window",
            ClauseKind::When(_) => "when",
            ClauseKind::Absent(_) => "absent",
            ClauseKind::Throttle(_) => "throttle",
            ClauseKind::Labels(_) => "labels",
            ClauseKind::Notify(_) => "notify",
            ClauseKind::Message(_) => "message",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `*`: every stream.
    Any,
    Named(String),
}

/// A duration in milliseconds (already checked for unit order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub i64);

#[derive(Debug, Clone, PartialEq)]
pub enum WindowSpec {
    Sliding(Spanned<Duration>),
    Tumbling(Spanned<Duration>),
    Hopping {
        size: Spanned<Duration>,
        every: Spanned<Duration>,
    },
    Session(Spanned<Duration>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub negated: Option<Span>,
    pub name: Spanned<String>,
    pub stream: Spanned<Stream>,
    pub cond: Option<Expr>,
    pub quant: Option<Spanned<Quant>>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// `+`
    OneOrMore,
    /// `{n,}`
    AtLeast(u64),
}

impl Quant {
    pub fn min(self) -> u64 {
        match self {
            Quant::OneOrMore => 1,
            Quant::AtLeast(n) => n,
        }
    }
}

pub type Expr = Spanned<ExprKind>;

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    List(Vec<Spanned<Literal>>),
    Path(Path),
    Call {
        name: Spanned<String>,
        args: Vec<Expr>,
    },
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary {
        op: Spanned<BinOp>,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    /// A duration literal: its value is its milliseconds.
    Duration(i64),
    String(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub head: Spanned<String>,
    /// `` `name` ``: always an event field, never a step, let or list.
    pub head_backticked: bool,
    pub segments: Vec<Spanned<Segment>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Matches,
    Contains,
    StartsWith,
    EndsWith,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}
