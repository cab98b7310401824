//! Evaluation of compiled expressions ([`CExpr`]) over one event, the
//! bindings of earlier sequence steps, or a window's aggregates.
//!
//! Pure and total: any operand of the wrong type yields `null` (or `false`
//! for comparisons), never an error (rule-language.md section 8).

use std::borrow::Cow;

use serde_json::{Number, Value};

use crate::event::doc::{Doc, Node, NodeRef};
use crate::event::json;
use crate::lang::program::{ArithOp, CExpr, CmpOp, Func, PathSeg, StrOp};

/// What a sequence step binds, as seen by later steps' conditions.
#[derive(Debug, Clone, Copy)]
pub struct StepView<'a> {
    /// The step's (most recent) event object.
    pub last: &'a Doc,
    pub count: usize,
}

/// Everything an expression may read.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The current event's object (`None` where there is none, e.g. in `when`).
    pub fields: Option<&'a Doc>,
    /// Bindings of sequence steps by step index (`None`: not bound).
    pub steps: &'a [Option<StepView<'a>>],
    /// Aggregate values of a threshold rule, by index.
    pub aggs: &'a [Value],
}

static NULL: Value = Value::Null;

impl<'a> Ctx<'a> {
    pub fn event(fields: &'a Doc) -> Self {
        Ctx {
            fields: Some(fields),
            steps: &[],
            aggs: &[],
        }
    }

    pub fn aggregates(aggs: &'a [Value]) -> Self {
        Ctx {
            fields: None,
            steps: &[],
            aggs,
        }
    }
}

/// Walks a field path in an event; `None` when any segment is missing.
pub fn lookup_node<'a>(root: NodeRef<'a>, path: &[PathSeg]) -> Option<NodeRef<'a>> {
    let mut cur = root;
    for seg in path {
        cur = match seg {
            PathSeg::Field(f) => cur.get(f)?,
            PathSeg::Index(i) => cur.index(*i)?,
        };
    }
    Some(cur)
}

fn num(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// `==` on JSON values: numbers numerically, arrays and objects deeply.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A value as operators read it: scalars borrowed from the event's text or
/// the rule, arrays and objects where they are. Reading a field through a
/// view builds nothing.
#[derive(Clone, Copy)]
pub enum View<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    /// An array or object of an event.
    Node(NodeRef<'a>),
    /// An array or object of a literal, an aggregate or a computed value.
    Json(&'a Value),
}

impl<'a> View<'a> {
    pub fn of_node(n: NodeRef<'a>) -> Self {
        match n.node() {
            Node::Null => View::Null,
            Node::Bool(b) => View::Bool(b),
            Node::PosInt(_) | Node::NegInt(_) | Node::Float(_) => {
                View::Num(n.as_f64().unwrap_or(f64::NAN))
            }
            Node::Str { .. } => View::Str(n.as_str().unwrap_or_default()),
            Node::Array { .. } | Node::Object { .. } => View::Node(n),
        }
    }

    pub fn of_value(v: &'a Value) -> Self {
        match v {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => View::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => View::Str(s),
            Value::Array(_) | Value::Object(_) => View::Json(v),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, View::Null)
    }

    /// An array or object as a JSON value (built for an event's).
    fn container(&self) -> Option<Cow<'a, Value>> {
        match *self {
            View::Node(n) => Some(Cow::Owned(n.to_value())),
            View::Json(v) => Some(Cow::Borrowed(v)),
            _ => None,
        }
    }

    /// Appends the value as compact JSON ([`json::write_compact`]).
    pub fn write_compact(&self, out: &mut String) {
        match *self {
            View::Null => out.push_str("null"),
            View::Bool(true) => out.push_str("true"),
            View::Bool(false) => out.push_str("false"),
            View::Num(x) => json::write_number(out, x),
            View::Str(s) => json::write_string(out, s),
            View::Node(n) => n.write_compact(out),
            View::Json(v) => json::write_compact(out, v),
        }
    }

    /// Whether `x` equals an element of this array (`false` for anything
    /// but an array).
    fn array_has(&self, x: View) -> bool {
        match *self {
            View::Node(n) if matches!(n.node(), Node::Array { .. }) => {
                n.elements().any(|i| view_eq(View::of_node(i), x))
            }
            View::Json(Value::Array(items)) => items.iter().any(|i| view_eq(View::of_value(i), x)),
            _ => false,
        }
    }

    fn is_array(&self) -> bool {
        match self {
            View::Node(n) => matches!(n.node(), Node::Array { .. }),
            View::Json(v) => v.is_array(),
            _ => false,
        }
    }
}

/// `==` on views, as [`json_eq`] on the values they show.
fn view_eq(a: View, b: View) -> bool {
    match (a, b) {
        (View::Null, View::Null) => true,
        (View::Bool(x), View::Bool(y)) => x == y,
        (View::Num(x), View::Num(y)) => x == y,
        (View::Str(x), View::Str(y)) => x == y,
        (View::Node(_) | View::Json(_), View::Node(_) | View::Json(_)) => {
            match (a.container(), b.container()) {
                (Some(x), Some(y)) => json_eq(&x, &y),
                _ => false,
            }
        }
        _ => false,
    }
}

/// An operand: an event's field read in place, or a value.
enum Operand<'a> {
    /// A field of an event, kept to build its exact value if asked.
    Field(Option<NodeRef<'a>>),
    Value(Cow<'a, Value>),
}

impl<'a> Operand<'a> {
    fn view(&self) -> View<'_> {
        match self {
            Operand::Field(n) => n.map_or(View::Null, View::of_node),
            Operand::Value(v) => View::of_value(v),
        }
    }

    fn into_value(self) -> Cow<'a, Value> {
        match self {
            Operand::Field(None) => Cow::Borrowed(&NULL),
            Operand::Field(Some(n)) => Cow::Owned(n.to_value()),
            Operand::Value(v) => v,
        }
    }
}

/// Evaluates `e` as an operand: fields are read in place.
fn operand<'a>(e: &'a CExpr, cx: &Ctx<'a>) -> Operand<'a> {
    match e {
        CExpr::Field(p) => Operand::Field(cx.fields.and_then(|d| lookup_node(d.root(), p))),
        CExpr::StepField(i, p) => Operand::Field(
            cx.steps
                .get(*i)
                .copied()
                .flatten()
                .and_then(|s| lookup_node(s.last.root(), p)),
        ),
        CExpr::Lit(v) => Operand::Value(Cow::Borrowed(v)),
        CExpr::Agg(i) => {
            Operand::Value(cx.aggs.get(*i).map_or(Cow::Borrowed(&NULL), Cow::Borrowed))
        }
        _ => Operand::Value(eval(e, cx)),
    }
}

/// The value of `e` if it is a number, read in place (`None` otherwise).
pub fn number(e: &CExpr, cx: &Ctx) -> Option<f64> {
    match operand(e, cx).view() {
        View::Num(x) => Some(x),
        _ => None,
    }
}

/// Whether `e` is null, read in place.
pub fn is_null(e: &CExpr, cx: &Ctx) -> bool {
    operand(e, cx).view().is_null()
}

/// Evaluates `e` and appends it as a key value to `out`: compact JSON with
/// the members of objects sorted bytewise by name at every depth
/// ([`json::write_canonical`]), so that values `==` treats as equal give
/// one text (rule-language.md 4). `false` (and nothing written) when it is
/// null. A scalar field is written from the event's text without building
/// a value; only arrays and objects build one.
pub fn write_key_value(e: &CExpr, cx: &Ctx, out: &mut String) -> bool {
    let o = operand(e, cx);
    match o.view() {
        View::Null => return false,
        View::Node(n) => json::write_canonical(out, &n.to_value()),
        View::Json(v) => json::write_canonical(out, v),
        v => v.write_compact(out),
    }
    true
}

/// Whether an expression reads earlier sequence steps (`step.field`,
/// `count(step)`); a condition that does not can be tested without them.
pub fn reads_steps(e: &CExpr) -> bool {
    match e {
        CExpr::StepField(..) | CExpr::StepCount(_) => true,
        CExpr::Lit(_) | CExpr::Field(_) | CExpr::Exists(_) | CExpr::Agg(_) => false,
        CExpr::Call(_, a) | CExpr::Neg(a) | CExpr::Not(a) | CExpr::IsNull(a, _) => reads_steps(a),
        CExpr::Matches(a, _) => reads_steps(a),
        CExpr::Arith(_, a, b)
        | CExpr::Cmp(_, a, b)
        | CExpr::In(a, b, _)
        | CExpr::Str(_, a, b)
        | CExpr::And(a, b)
        | CExpr::Or(a, b) => reads_steps(a) || reads_steps(b),
    }
}

/// A condition's truth: only `true` is true.
pub fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// Evaluates a condition.
pub fn test(e: &CExpr, cx: &Ctx) -> bool {
    match e {
        CExpr::And(a, b) => test(a, cx) && test(b, cx),
        CExpr::Or(a, b) => test(a, cx) || test(b, cx),
        CExpr::Not(a) => !test(a, cx),
        CExpr::Cmp(op, a, b) => compare(*op, operand(a, cx).view(), operand(b, cx).view()),
        CExpr::Field(_) | CExpr::StepField(..) => {
            matches!(operand(e, cx).view(), View::Bool(true))
        }
        _ => truthy(&eval(e, cx)),
    }
}

pub fn eval<'a>(e: &'a CExpr, cx: &Ctx<'a>) -> Cow<'a, Value> {
    let bool = |b: bool| Cow::Owned(Value::Bool(b));
    match e {
        CExpr::Lit(v) => Cow::Borrowed(v),
        CExpr::Field(_) | CExpr::StepField(..) => operand(e, cx).into_value(),
        CExpr::Exists(p) => bool(cx.fields.and_then(|d| lookup_node(d.root(), p)).is_some()),
        CExpr::StepCount(i) => match cx.steps.get(*i).copied().flatten() {
            Some(s) => Cow::Owned(Value::from(s.count as u64)),
            None => Cow::Owned(Value::from(0)),
        },
        CExpr::Agg(i) => cx.aggs.get(*i).map_or(Cow::Borrowed(&NULL), Cow::Borrowed),
        CExpr::Call(f, arg) => Cow::Owned(call(*f, operand(arg, cx))),
        CExpr::Neg(a) => Cow::Owned(match operand(a, cx).view() {
            View::Num(x) => num(-x),
            _ => Value::Null,
        }),
        CExpr::Arith(op, a, b) => {
            let (x, y) = (operand(a, cx), operand(b, cx));
            Cow::Owned(match (x.view(), y.view()) {
                (View::Num(x), View::Num(y)) => arith(*op, Some(x), Some(y)),
                _ => Value::Null,
            })
        }
        CExpr::Cmp(..) | CExpr::And(..) | CExpr::Or(..) | CExpr::Not(_) => bool(test(e, cx)),
        CExpr::IsNull(a, negated) => bool(operand(a, cx).view().is_null() != *negated),
        CExpr::In(a, l, negated) => {
            let (x, list) = (operand(a, cx), operand(l, cx));
            let (x, list) = (x.view(), list.view());
            bool(!x.is_null() && list.is_array() && list.array_has(x) != *negated)
        }
        CExpr::Matches(a, re) => bool(match operand(a, cx).view() {
            View::Str(s) => re.is_match(s),
            _ => false,
        }),
        CExpr::Str(op, a, b) => {
            let (x, y) = (operand(a, cx), operand(b, cx));
            bool(match (op, x.view(), y.view()) {
                (_, View::Null, _) | (_, _, View::Null) => false,
                (StrOp::Contains, View::Str(s), View::Str(t)) => s.contains(t),
                (StrOp::Contains, x, y) => x.array_has(y),
                (StrOp::StartsWith, View::Str(s), View::Str(t)) => s.starts_with(t),
                (StrOp::EndsWith, View::Str(s), View::Str(t)) => s.ends_with(t),
                _ => false,
            })
        }
    }
}

fn arith(op: ArithOp, x: Option<f64>, y: Option<f64>) -> Value {
    let (Some(x), Some(y)) = (x, y) else {
        return Value::Null;
    };
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div if y == 0.0 => return Value::Null,
        ArithOp::Div => x / y,
        ArithOp::Rem if y == 0.0 => return Value::Null,
        // Rust's `%` on floats takes the sign of the dividend, as specified.
        ArithOp::Rem => x % y,
    };
    if r.is_finite() { num(r) } else { Value::Null }
}

fn compare(op: CmpOp, a: View, b: View) -> bool {
    if a.is_null() || b.is_null() {
        return false;
    }
    match op {
        CmpOp::Eq => view_eq(a, b),
        CmpOp::Ne => !view_eq(a, b),
        _ => {
            let ord = match (a, b) {
                (View::Num(x), View::Num(y)) => match x.partial_cmp(&y) {
                    Some(o) => o,
                    None => return false,
                },
                (View::Str(x), View::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
                _ => return false,
            };
            match op {
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Ge => ord.is_ge(),
                CmpOp::Eq | CmpOp::Ne => unreachable!("handled above"),
            }
        }
    }
}

fn call(f: Func, arg: Operand) -> Value {
    let v = arg.view();
    match (f, v) {
        (Func::Lower, View::Str(s)) => Value::String(s.to_lowercase()),
        (Func::Upper, View::Str(s)) => Value::String(s.to_uppercase()),
        (Func::Len, View::Str(s)) => Value::from(s.chars().count() as u64),
        (Func::Len, View::Node(_) | View::Json(_)) => match v.container().as_deref() {
            Some(Value::Array(a)) => Value::from(a.len() as u64),
            Some(Value::Object(o)) => Value::from(o.len() as u64),
            _ => Value::Null,
        },
        // The number itself, exactly as read (an integer stays one).
        (Func::Number, View::Num(_)) | (Func::String, View::Str(_)) => {
            arg.into_value().into_owned()
        }
        (Func::Number, View::Str(s)) => parse_json_number(s).map_or(Value::Null, num),
        (Func::String, View::Num(x)) => Value::String(json::number_text(x)),
        (Func::String, View::Bool(b)) => Value::String(b.to_string()),
        (Func::String, View::Node(_) | View::Json(_)) => {
            let mut out = String::new();
            v.write_compact(&mut out);
            Value::String(out)
        }
        (Func::Abs, View::Num(x)) => num(x.abs()),
        _ => Value::Null,
    }
}

/// A string in JSON number syntax (no blanks, no `+`, no `inf`/`nan`).
fn parse_json_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

#[cfg(test)]
mod tests {

    /// Field paths find every member of small and large objects, elements
    /// of arrays, and nothing else.
    #[test]
    fn lookup_in_small_and_large_objects() {
        for n in [3usize, 12, 13, 40] {
            let mut m = serde_json::Map::new();
            for i in 0..n {
                m.insert(format!("f{i}"), Value::from(i as u64));
            }
            m.insert("a".into(), serde_json::json!([10, {"x": 11}]));
            let doc = Doc::parse(&Value::Object(m).to_string()).expect("JSON");
            let get = |path: &[PathSeg]| lookup_node(doc.root(), path).map(|v| v.to_value());
            for i in 0..n {
                let path = [PathSeg::Field(format!("f{i}").into())];
                assert_eq!(get(&path), Some(Value::from(i as u64)), "n={n} i={i}");
            }
            let missing = [PathSeg::Field("g".into())];
            assert_eq!(get(&missing), None, "n={n}");
            let nested = [
                PathSeg::Field("a".into()),
                PathSeg::Index(1),
                PathSeg::Field("x".into()),
            ];
            assert_eq!(get(&nested), Some(Value::from(11u64)), "n={n}");
            let past = [PathSeg::Field("a".into()), PathSeg::Index(2)];
            assert_eq!(get(&past), None, "n={n}");
        }
    }

    use super::*;

    #[test]
    fn json_number_syntax() {
        assert_eq!(parse_json_number("503"), Some(503.0));
        assert_eq!(parse_json_number("-1.5e3"), Some(-1500.0));
        for bad in [
            "", "+1", " 1", "1 ", "01", "1.", ".5", "inf", "nan", "1e", "abc", "1e999",
        ] {
            assert_eq!(parse_json_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn remainder_takes_sign_of_dividend() {
        assert_eq!(arith(ArithOp::Rem, Some(-7.0), Some(3.0)), num(-1.0));
        assert_eq!(arith(ArithOp::Div, Some(7.0), Some(2.0)), num(3.5));
        assert_eq!(arith(ArithOp::Div, Some(7.0), Some(0.0)), Value::Null);
    }

    #[test]
    fn ordering_needs_same_types() {
        let n = |x: f64| num(x);
        let s = |x: &str| Value::String(x.into());
        let one = serde_json::json!(1);
        let c = |op, a: &Value, b: &Value| compare(op, View::of_value(a), View::of_value(b));
        assert!(c(CmpOp::Lt, &n(5.0), &n(10.0)));
        assert!(!c(CmpOp::Lt, &s("5"), &n(10.0)));
        assert!(c(CmpOp::Ge, &s("n"), &s("m")));
        assert!(!c(CmpOp::Eq, &Value::Null, &Value::Null));
        assert!(c(CmpOp::Eq, &n(1.0), &one));
    }
}
