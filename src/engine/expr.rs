//! Evaluation of compiled expressions ([`CExpr`]) over one event, the
//! bindings of earlier sequence steps, or a window's aggregates.
//!
//! Pure and total: any operand of the wrong type yields `null` (or `false`
//! for comparisons), never an error (rule-language.md section 8).

use std::borrow::Cow;

use serde_json::{Number, Value};

use crate::event::json;
use crate::lang::program::{ArithOp, CExpr, CmpOp, FieldPath, Func, PathSeg, StrOp};

/// What a sequence step binds, as seen by later steps' conditions.
#[derive(Debug, Clone, Copy)]
pub struct StepView<'a> {
    /// The step's (most recent) event object.
    pub last: &'a Value,
    pub count: usize,
}

/// Everything an expression may read.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The current event's object (`Value::Null` where there is none, e.g. in `when`).
    pub fields: &'a Value,
    /// Bindings of sequence steps by step index (`None`: not bound).
    pub steps: &'a [Option<StepView<'a>>],
    /// Aggregate values of a threshold rule, by index.
    pub aggs: &'a [Value],
}

static NULL: Value = Value::Null;

impl<'a> Ctx<'a> {
    pub fn event(fields: &'a Value) -> Self {
        Ctx {
            fields,
            steps: &[],
            aggs: &[],
        }
    }

    pub fn aggregates(aggs: &'a [Value]) -> Self {
        Ctx {
            fields: &NULL,
            steps: &[],
            aggs,
        }
    }
}

/// Walks a field path; `None` when any segment is missing.
pub fn lookup<'v>(root: &'v Value, path: &[PathSeg]) -> Option<&'v Value> {
    let mut cur = root;
    for seg in path {
        cur = match (seg, cur) {
            (PathSeg::Field(f), Value::Object(m)) => json::member(m, f)?,
            (PathSeg::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
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
    truthy(&eval(e, cx))
}

pub fn eval<'a>(e: &'a CExpr, cx: &Ctx<'a>) -> Cow<'a, Value> {
    match e {
        CExpr::Lit(v) => Cow::Borrowed(v),
        CExpr::Field(p) => field(cx.fields, p),
        CExpr::Exists(p) => Cow::Owned(Value::Bool(lookup(cx.fields, p).is_some())),
        CExpr::StepField(i, p) => match cx.steps.get(*i).copied().flatten() {
            Some(s) => field(s.last, p),
            None => Cow::Borrowed(&NULL),
        },
        CExpr::StepCount(i) => match cx.steps.get(*i).copied().flatten() {
            Some(s) => Cow::Owned(Value::from(s.count as u64)),
            None => Cow::Owned(Value::from(0)),
        },
        CExpr::Agg(i) => cx.aggs.get(*i).map_or(Cow::Borrowed(&NULL), Cow::Borrowed),
        CExpr::Call(f, arg) => Cow::Owned(call(*f, &eval(arg, cx))),
        CExpr::Neg(a) => Cow::Owned(match eval(a, cx).as_f64() {
            Some(x) => num(-x),
            None => Value::Null,
        }),
        CExpr::Arith(op, a, b) => {
            let (x, y) = (eval(a, cx), eval(b, cx));
            Cow::Owned(match (x.as_ref(), y.as_ref()) {
                (Value::Number(x), Value::Number(y)) => arith(*op, x.as_f64(), y.as_f64()),
                _ => Value::Null,
            })
        }
        CExpr::Cmp(op, a, b) => Cow::Owned(Value::Bool(compare(*op, &eval(a, cx), &eval(b, cx)))),
        CExpr::IsNull(a, negated) => {
            let is_null = eval(a, cx).is_null();
            Cow::Owned(Value::Bool(is_null != *negated))
        }
        CExpr::In(a, l, negated) => {
            let x = eval(a, cx);
            let list = eval(l, cx);
            let r = match (x.as_ref(), list.as_ref()) {
                (Value::Null, _) => false,
                (x, Value::Array(items)) => items.iter().any(|i| json_eq(x, i)) != *negated,
                _ => false,
            };
            Cow::Owned(Value::Bool(r))
        }
        CExpr::Matches(a, re) => Cow::Owned(Value::Bool(match eval(a, cx).as_ref() {
            Value::String(s) => re.is_match(s),
            _ => false,
        })),
        CExpr::Str(op, a, b) => {
            let (x, y) = (eval(a, cx), eval(b, cx));
            let r = match (op, x.as_ref(), y.as_ref()) {
                (_, Value::Null, _) | (_, _, Value::Null) => false,
                (StrOp::Contains, Value::String(s), Value::String(t)) => s.contains(t.as_str()),
                (StrOp::Contains, Value::Array(items), y) => items.iter().any(|i| json_eq(i, y)),
                (StrOp::StartsWith, Value::String(s), Value::String(t)) => {
                    s.starts_with(t.as_str())
                }
                (StrOp::EndsWith, Value::String(s), Value::String(t)) => s.ends_with(t.as_str()),
                _ => false,
            };
            Cow::Owned(Value::Bool(r))
        }
        CExpr::And(a, b) => Cow::Owned(Value::Bool(test(a, cx) && test(b, cx))),
        CExpr::Or(a, b) => Cow::Owned(Value::Bool(test(a, cx) || test(b, cx))),
        CExpr::Not(a) => Cow::Owned(Value::Bool(!test(a, cx))),
    }
}

fn field<'a>(root: &'a Value, p: &FieldPath) -> Cow<'a, Value> {
    Cow::Borrowed(lookup(root, p).unwrap_or(&NULL))
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

fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    if a.is_null() || b.is_null() {
        return false;
    }
    match op {
        CmpOp::Eq => json_eq(a, b),
        CmpOp::Ne => !json_eq(a, b),
        _ => {
            let ord = match (a, b) {
                (Value::Number(x), Value::Number(y)) => {
                    match x
                        .as_f64()
                        .zip(y.as_f64())
                        .and_then(|(x, y)| x.partial_cmp(&y))
                    {
                        Some(o) => o,
                        None => return false,
                    }
                }
                (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
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

fn call(f: Func, v: &Value) -> Value {
    match (f, v) {
        (Func::Lower, Value::String(s)) => Value::String(s.to_lowercase()),
        (Func::Upper, Value::String(s)) => Value::String(s.to_uppercase()),
        (Func::Len, Value::String(s)) => Value::from(s.chars().count() as u64),
        (Func::Len, Value::Array(a)) => Value::from(a.len() as u64),
        (Func::Len, Value::Object(o)) => Value::from(o.len() as u64),
        (Func::Number, Value::Number(_)) => v.clone(),
        (Func::Number, Value::String(s)) => parse_json_number(s).map_or(Value::Null, num),
        (Func::String, Value::String(_)) => v.clone(),
        (Func::String, Value::Number(n)) => {
            Value::String(n.as_f64().map_or_else(String::new, json::number_text))
        }
        (Func::String, Value::Bool(b)) => Value::String(b.to_string()),
        (Func::String, Value::Array(_) | Value::Object(_)) => Value::String(json::compact(v)),
        (Func::Abs, Value::Number(n)) => n.as_f64().map_or(Value::Null, |x| num(x.abs())),
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

    /// Small objects are searched by name in order, large ones through the
    /// hash index: both find every member, and nothing else.
    #[test]
    fn lookup_in_small_and_large_objects() {
        for n in [3usize, 12, 13, 40] {
            let mut m = serde_json::Map::new();
            for i in 0..n {
                m.insert(format!("f{i}"), Value::from(i as u64));
            }
            let root = Value::Object(m);
            for i in 0..n {
                let path = [PathSeg::Field(format!("f{i}").into())];
                assert_eq!(
                    lookup(&root, &path),
                    Some(&Value::from(i as u64)),
                    "n={n} i={i}"
                );
            }
            let missing = [PathSeg::Field("g".into())];
            assert_eq!(lookup(&root, &missing), None, "n={n}");
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
        assert!(compare(CmpOp::Lt, &n(5.0), &n(10.0)));
        assert!(!compare(CmpOp::Lt, &s("5"), &n(10.0)));
        assert!(compare(CmpOp::Ge, &s("n"), &s("m")));
        assert!(!compare(CmpOp::Eq, &Value::Null, &Value::Null));
        assert!(compare(CmpOp::Eq, &n(1.0), &serde_json::json!(1)));
    }
}
