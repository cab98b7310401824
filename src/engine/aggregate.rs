//! Aggregates of threshold rules (rule-language.md section 6), computed over
//! the argument values of the events in a window, in event order.

use serde_json::{Number, Value};

use super::expr::json_eq;
use crate::lang::program::{AggFunc, Aggregate};

/// The argument values of one event for each aggregate of a rule
/// (`Value::Null` for `count()`, which has none).
pub type Args = Box<[Value]>;

fn num(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Computes every aggregate over `rows` (each row: one event's arguments).
pub fn compute<'a, I>(aggs: &[Aggregate], rows: I) -> Vec<Value>
where
    I: Iterator<Item = &'a Args> + Clone,
{
    aggs.iter()
        .enumerate()
        .map(|(i, a)| one(a, rows.clone().map(|r| &r[i])))
        .collect()
}

fn one<'a>(a: &Aggregate, vals: impl Iterator<Item = &'a Value>) -> Value {
    let numbers = |vals: &mut dyn Iterator<Item = &'a Value>| -> Vec<f64> {
        vals.filter_map(|v| match v {
            Value::Number(n) => n.as_f64(),
            _ => None,
        })
        .collect()
    };
    let mut vals = vals;
    match a.func {
        AggFunc::Count if a.arg.is_none() => Value::from(vals.count() as u64),
        AggFunc::Count => Value::from(vals.filter(|v| !v.is_null()).count() as u64),
        AggFunc::Sum => {
            let ns = numbers(&mut vals);
            if ns.is_empty() {
                Value::Null
            } else {
                num(ns.iter().sum())
            }
        }
        AggFunc::Avg => {
            let ns = numbers(&mut vals);
            if ns.is_empty() {
                Value::Null
            } else {
                num(ns.iter().sum::<f64>() / ns.len() as f64)
            }
        }
        AggFunc::Min => numbers(&mut vals)
            .into_iter()
            .reduce(f64::min)
            .map_or(Value::Null, num),
        AggFunc::Max => numbers(&mut vals)
            .into_iter()
            .reduce(f64::max)
            .map_or(Value::Null, num),
        AggFunc::Distinct => {
            let mut seen: Vec<&Value> = Vec::new();
            for v in vals.filter(|v| !v.is_null()) {
                if !seen.iter().any(|s| json_eq(s, v)) {
                    seen.push(v);
                }
            }
            Value::from(seen.len() as u64)
        }
        AggFunc::Percentile(p) => {
            let mut ns = numbers(&mut vals);
            if ns.is_empty() {
                return Value::Null;
            }
            ns.sort_by(f64::total_cmp);
            let n = ns.len() as u64;
            // Nearest rank, in integers: ceil(p*n/100).
            let rank = (u64::from(p) * n).div_ceil(100).max(1);
            num(ns[(rank - 1) as usize])
        }
        AggFunc::First => vals.find(|v| !v.is_null()).cloned().unwrap_or(Value::Null),
        AggFunc::Last => vals
            .filter(|v| !v.is_null())
            .last()
            .cloned()
            .unwrap_or(Value::Null),
    }
}
