//! Aggregates of threshold rules (rule-language.md section 6), over the
//! argument values of the events in a window, in event order.
//!
//! Two ways to get them:
//! - [`compute`] goes over a window's rows once: used when a tumbling,
//!   hopping or session window closes (each window is evaluated once).
//! - [`Sliding`] keeps a sliding window's rows together with incremental
//!   state per aggregate, because a sliding window is evaluated after every
//!   event and at every expiry: `count` and `first`/`last` are O(1),
//!   `min`/`max` monotone deques, percentiles a sorted vector, `distinct` a
//!   counted set, `sum`/`avg` an exact integer sum (with a pass over the
//!   window, in event order, only while a non-integer value is in it, so
//!   that the result is the same double as [`compute`]'s).
//!
//! Both give identical values for the same rows; a property test checks it.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Number, Value};

use super::key::FastMap;
use super::snapshot::{ColumnSnap, ColumnsSnap};
use crate::event::{EventTime, json};
use crate::lang::program::{AggFunc, Aggregate};

/// The argument values of one event for each aggregate of a rule
/// (`Value::Null` for `count()`, which has none). Shared: a hopping window
/// keeps one event's row in each of its overlapping windows.
pub type Args = Arc<[Value]>;

fn num(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
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
    let mut vals = vals;
    match a.func {
        AggFunc::Count if a.arg.is_none() => Value::from(vals.count() as u64),
        AggFunc::Count => Value::from(vals.filter(|v| !v.is_null()).count() as u64),
        AggFunc::Sum => sequential_sum(vals).map_or(Value::Null, |(s, _)| num(s)),
        AggFunc::Avg => sequential_sum(vals).map_or(Value::Null, |(s, n)| num(s / n as f64)),
        AggFunc::Min => vals
            .filter_map(number)
            .reduce(f64::min)
            .map_or(Value::Null, num),
        AggFunc::Max => vals
            .filter_map(number)
            .reduce(f64::max)
            .map_or(Value::Null, num),
        AggFunc::Distinct => {
            let mut seen: FastMap<DistinctKey, ()> = FastMap::default();
            for v in vals {
                if let Some(k) = DistinctKey::of(v) {
                    seen.insert(k, ());
                }
            }
            Value::from(seen.len() as u64)
        }
        AggFunc::Percentile(p) => {
            let mut ns: Vec<f64> = vals.filter_map(number).collect();
            if ns.is_empty() {
                return Value::Null;
            }
            let i = rank(p, ns.len()) - 1;
            let (_, x, _) = ns.select_nth_unstable_by(i, f64::total_cmp);
            num(*x)
        }
        AggFunc::First => vals.find(|v| !v.is_null()).cloned().unwrap_or(Value::Null),
        AggFunc::Last => vals
            .filter(|v| !v.is_null())
            .last()
            .cloned()
            .unwrap_or(Value::Null),
    }
}

/// The numeric values summed in event order, and how many there were;
/// `None` when there are none.
fn sequential_sum<'a>(vals: impl Iterator<Item = &'a Value>) -> Option<(f64, usize)> {
    let mut n = 0;
    let s = vals.filter_map(number).fold(-0.0, |s, x| {
        n += 1;
        s + x
    });
    (n > 0).then_some((s, n))
}

/// Nearest rank (1-based) of percentile `p` among `n` values:
/// `ceil(p*n/100)`, in integers, at least 1.
fn rank(p: u32, n: usize) -> usize {
    (u64::from(p) * n as u64).div_ceil(100).max(1) as usize
}

/// A value as `distinct` tells values apart: as `==` does (numbers by
/// value, so `1` and `1.0` are one; arrays and objects deeply, objects
/// whatever their member order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DistinctKey {
    Bool(bool),
    /// The number's bits, `-0` written as `0` (`-0 == 0`).
    Number(u64),
    String(Box<str>),
    /// Arrays and objects: compact JSON with members sorted by name.
    Composite(String),
}

impl DistinctKey {
    pub fn of(v: &Value) -> Option<DistinctKey> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => DistinctKey::Bool(*b),
            Value::Number(n) => {
                DistinctKey::Number((n.as_f64().unwrap_or(f64::NAN) + 0.0).to_bits())
            }
            Value::String(s) => DistinctKey::String(s.as_str().into()),
            _ => {
                let mut out = String::new();
                json::write_canonical(&mut out, v);
                DistinctKey::Composite(out)
            }
        })
    }

    /// A value this key is the key of (for snapshots): `DistinctKey::of`
    /// gives this key back for it.
    fn to_value(&self) -> Value {
        match self {
            DistinctKey::Bool(b) => Value::Bool(*b),
            DistinctKey::Number(bits) => num(f64::from_bits(*bits)),
            DistinctKey::String(s) => Value::String(s.to_string()),
            DistinctKey::Composite(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        }
    }
}

/// One event's argument for one aggregate of an append-only window
/// ([`Columns`]), in the form the aggregate folds it.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `count()`: nothing but the event.
    Row,
    /// `count(EXPR)`: whether the value is not null.
    Present(bool),
    /// `sum`, `avg`, `min`, `max`, percentiles: the value if it is a number.
    Number(Option<f64>),
    /// `distinct`: the value as `distinct` tells values apart (`None`: null).
    Distinct(Option<DistinctKey>),
    /// `first`, `last`: the value unless it is null.
    Value(Option<Value>),
}

/// Which [`Arg`] an aggregate folds its argument as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgForm {
    Row,
    Present,
    Number,
    Distinct,
    Value,
}

impl ArgForm {
    pub fn of(a: &Aggregate) -> ArgForm {
        match a.func {
            AggFunc::Count if a.arg.is_none() => ArgForm::Row,
            AggFunc::Count => ArgForm::Present,
            AggFunc::Sum | AggFunc::Avg | AggFunc::Min | AggFunc::Max | AggFunc::Percentile(_) => {
                ArgForm::Number
            }
            AggFunc::Distinct => ArgForm::Distinct,
            AggFunc::First | AggFunc::Last => ArgForm::Value,
        }
    }
}

impl Arg {
    /// The argument of aggregate `a` for a row value `v` (kept whole only
    /// by `first` and `last`, which take it as it is when it is owned).
    pub fn of(a: &Aggregate, v: std::borrow::Cow<'_, Value>) -> Arg {
        match ArgForm::of(a) {
            ArgForm::Row => Arg::Row,
            ArgForm::Present => Arg::Present(!v.is_null()),
            ArgForm::Number => Arg::Number(number(&v)),
            ArgForm::Distinct => Arg::Distinct(DistinctKey::of(&v)),
            ArgForm::Value => Arg::Value((!v.is_null()).then(|| v.into_owned())),
        }
    }
}

/// An append-only window (tumbling, hopping, session): each aggregate
/// folded as the window's events come, in event order, keeping only what
/// its value needs — a count, a sum in event order, a minimum, the
/// numbers of a percentile, the distinct values, a first or last value.
/// Such a window is evaluated once, when it closes; its values are exactly
/// those [`compute`] gives over the same events' rows (a property test
/// checks it). Instead of a row per event, a `count/sum/max` window holds
/// three numbers.
#[derive(Debug, Clone)]
pub struct Columns {
    rows: u64,
    cols: Box<[Column]>,
}

#[derive(Debug, Clone)]
enum Column {
    /// `count()`: the window's event count is enough.
    Rows,
    NonNull(u64),
    /// `sum` and `avg`: the numbers added in event order from `-0.0`.
    Sum {
        s: f64,
        n: u64,
    },
    Min(Option<f64>),
    Max(Option<f64>),
    /// Percentiles: the numbers, in any order.
    Numbers(Vec<f64>),
    // The larger values are boxed: a column is 32 bytes rather than 80
    // (a `Value` is 72), and a session or hopping window of a live key
    // holds one column per aggregate.
    #[allow(clippy::box_collection)] // deliberate, see above
    Distinct(Box<std::collections::HashSet<DistinctKey, foldhash::fast::RandomState>>),
    First(Option<Box<Value>>),
    Last(Option<Box<Value>>),
}

const _: () = assert!(std::mem::size_of::<Column>() <= 32);

impl Column {
    fn new(a: &Aggregate) -> Column {
        match a.func {
            AggFunc::Count if a.arg.is_none() => Column::Rows,
            AggFunc::Count => Column::NonNull(0),
            AggFunc::Sum | AggFunc::Avg => Column::Sum { s: -0.0, n: 0 },
            AggFunc::Min => Column::Min(None),
            AggFunc::Max => Column::Max(None),
            AggFunc::Percentile(_) => Column::Numbers(Vec::new()),
            AggFunc::Distinct => Column::Distinct(Default::default()),
            AggFunc::First => Column::First(None),
            AggFunc::Last => Column::Last(None),
        }
    }

    fn add(&mut self, arg: &Arg) {
        match (self, arg) {
            (Column::NonNull(n), Arg::Present(p)) => *n += u64::from(*p),
            (Column::Sum { s, n }, Arg::Number(Some(x))) => {
                *s += x;
                *n += 1;
            }
            (Column::Min(m), Arg::Number(Some(x))) => *m = Some(m.map_or(*x, |m| m.min(*x))),
            (Column::Max(m), Arg::Number(Some(x))) => *m = Some(m.map_or(*x, |m| m.max(*x))),
            (Column::Numbers(v), Arg::Number(Some(x))) => v.push(*x),
            (Column::Distinct(set), Arg::Distinct(Some(k))) if !set.contains(k) => {
                set.insert(k.clone());
            }
            (Column::First(f @ None), Arg::Value(Some(v))) => *f = Some(Box::new(v.clone())),
            (Column::Last(Some(l)), Arg::Value(Some(v))) => **l = v.clone(),
            (Column::Last(l @ None), Arg::Value(Some(v))) => *l = Some(Box::new(v.clone())),
            _ => {}
        }
    }
}

impl Columns {
    pub fn new(aggs: &[Aggregate]) -> Self {
        Columns {
            rows: 0,
            cols: aggs.iter().map(Column::new).collect(),
        }
    }

    /// A window holding `rows` (each one event's values, in event order):
    /// restoring snapshots written before windows were folded.
    pub fn from_rows<'a>(aggs: &[Aggregate], rows: impl IntoIterator<Item = &'a [Value]>) -> Self {
        let mut c = Columns::new(aggs);
        let mut args = Vec::with_capacity(aggs.len());
        for row in rows {
            args.clear();
            args.extend(
                aggs.iter()
                    .zip(row)
                    .map(|(a, v)| Arg::of(a, std::borrow::Cow::Borrowed(v))),
            );
            c.add(&args);
        }
        c
    }

    /// Folds one event's arguments (one per aggregate) in.
    pub fn add(&mut self, args: &[Arg]) {
        self.rows += 1;
        for (c, a) in self.cols.iter_mut().zip(args) {
            c.add(a);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The value of every aggregate (the window is closing: a percentile's
    /// numbers are reordered).
    pub fn values(&mut self, aggs: &[Aggregate]) -> Vec<Value> {
        let rows = self.rows;
        self.cols
            .iter_mut()
            .zip(aggs)
            .map(|(c, a)| match c {
                Column::Rows => Value::from(rows),
                Column::NonNull(n) => Value::from(*n),
                Column::Sum { n: 0, .. } => Value::Null,
                Column::Sum { s, n } if matches!(a.func, AggFunc::Avg) => num(*s / *n as f64),
                Column::Sum { s, .. } => num(*s),
                Column::Min(m) | Column::Max(m) => m.map_or(Value::Null, num),
                Column::Numbers(v) if v.is_empty() => Value::Null,
                Column::Numbers(v) => {
                    let AggFunc::Percentile(p) = a.func else {
                        return Value::Null;
                    };
                    let i = rank(p, v.len()) - 1;
                    let (_, x, _) = v.select_nth_unstable_by(i, f64::total_cmp);
                    num(*x)
                }
                Column::Distinct(set) => Value::from(set.len() as u64),
                Column::First(v) | Column::Last(v) => v.as_deref().cloned().unwrap_or(Value::Null),
            })
            .collect()
    }

    pub fn snapshot(&self) -> ColumnsSnap {
        let cols = self
            .cols
            .iter()
            .map(|c| match c {
                Column::Rows => ColumnSnap::Rows,
                Column::NonNull(n) => ColumnSnap::NonNull(*n),
                Column::Sum { s, n } => ColumnSnap::Sum { s: *s, n: *n },
                Column::Min(m) => ColumnSnap::Min(*m),
                Column::Max(m) => ColumnSnap::Max(*m),
                Column::Numbers(v) => ColumnSnap::Numbers(v.clone()),
                Column::Distinct(set) => {
                    // Listed in a fixed order (by compact text), so that
                    // equal states snapshot alike.
                    let mut keys: Vec<(String, Value)> = set
                        .iter()
                        .map(|k| {
                            let v = k.to_value();
                            (json::compact(&v), v)
                        })
                        .collect();
                    keys.sort_by(|a, b| a.0.cmp(&b.0));
                    ColumnSnap::Distinct(keys.into_iter().map(|k| k.1).collect())
                }
                Column::First(v) => ColumnSnap::First(v.as_deref().cloned()),
                Column::Last(v) => ColumnSnap::Last(v.as_deref().cloned()),
            })
            .collect();
        ColumnsSnap {
            rows: self.rows,
            cols,
        }
    }

    /// A window from its snapshot; `None` if it does not fit `aggs`.
    pub fn restore(aggs: &[Aggregate], snap: &ColumnsSnap) -> Option<Self> {
        if snap.cols.len() != aggs.len() {
            return None;
        }
        let cols = aggs
            .iter()
            .zip(&snap.cols)
            .map(|(a, c)| {
                let col = match (Column::new(a), c) {
                    (Column::Rows, ColumnSnap::Rows) => Column::Rows,
                    (Column::NonNull(_), ColumnSnap::NonNull(n)) => Column::NonNull(*n),
                    (Column::Sum { .. }, ColumnSnap::Sum { s, n }) => Column::Sum { s: *s, n: *n },
                    (Column::Min(_), ColumnSnap::Min(m)) => Column::Min(*m),
                    (Column::Max(_), ColumnSnap::Max(m)) => Column::Max(*m),
                    (Column::Numbers(_), ColumnSnap::Numbers(v)) => Column::Numbers(v.clone()),
                    (Column::Distinct(mut set), ColumnSnap::Distinct(vals)) => {
                        set.extend(vals.iter().filter_map(DistinctKey::of));
                        Column::Distinct(set)
                    }
                    (Column::First(_), ColumnSnap::First(v)) => {
                        Column::First(v.clone().map(Box::new))
                    }
                    (Column::Last(_), ColumnSnap::Last(v)) => Column::Last(v.clone().map(Box::new)),
                    _ => return None,
                };
                Some(col)
            })
            .collect::<Option<Box<[Column]>>>()?;
        Some(Columns {
            rows: snap.rows,
            cols,
        })
    }
}

/// Sequence number of a row in a [`Sliding`] window (the n-th row ever
/// added to it).
type Seq = u64;

/// Incremental state of one aggregate of a sliding window.
enum Acc {
    /// `count()` and `count(EXPR)`: rows, or rows with a non-null value.
    Count(u64),
    /// `sum` and `avg`.
    Sum(SumAcc),
    /// Monotone deque: candidates for the minimum (maximum) of the rows
    /// from each one on, oldest first.
    Min(VecDeque<(Seq, f64)>),
    Max(VecDeque<(Seq, f64)>),
    /// The numeric values, sorted by `f64::total_cmp`.
    Percentile(u32, Vec<f64>),
    /// Rows per distinct non-null value.
    Distinct(FastMap<DistinctKey, u32>),
    /// The oldest row with a non-null value.
    First(Option<Seq>),
    /// The newest row with a non-null value.
    Last(Option<Seq>),
}

/// An exact sum of the integer values (below 2^53 in magnitude) and how many
/// values are not such integers. While none is and the magnitudes add up to
/// at most 2^53, every partial sum is exact in a double, so the integer sum
/// *is* the double that adding in event order gives.
#[derive(Default)]
struct SumAcc {
    n: u64,
    sum: i128,
    magnitude: u128,
    inexact: u64,
}

const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

fn as_exact_int(x: f64) -> Option<i64> {
    (x.fract() == 0.0 && x.abs() <= EXACT).then_some(x as i64)
}

impl SumAcc {
    fn add(&mut self, x: f64, sign: i64) {
        match as_exact_int(x) {
            Some(i) => {
                self.sum += i128::from(i) * i128::from(sign);
                if sign > 0 {
                    self.magnitude += u128::from(i.unsigned_abs());
                } else {
                    self.magnitude -= u128::from(i.unsigned_abs());
                }
            }
            None if sign > 0 => self.inexact += 1,
            None => self.inexact -= 1,
        }
        if sign > 0 {
            self.n += 1;
        } else {
            self.n -= 1;
        }
    }

    /// The sum, or `None` when it must be added up in event order.
    fn exact(&self) -> Option<f64> {
        (self.inexact == 0 && self.magnitude <= EXACT as u128).then_some(self.sum as f64)
    }
}

/// Rows from which a sliding window keeps incremental state. Below, a pass
/// over the few rows is as fast and the key stays small (most keys of a
/// typical rule hold one or two events).
pub const INCREMENTAL_FROM: usize = 8;

/// A sliding window's rows (time, arguments), oldest first, and, once it
/// holds [`INCREMENTAL_FROM`] rows, incremental state for every aggregate
/// (dropped again when it falls below half that).
#[derive(Default)]
pub struct Sliding {
    rows: VecDeque<(EventTime, Args)>,
    /// Sequence number of `rows[0]`.
    head: Seq,
    accs: Option<Box<[Acc]>>,
}

impl Sliding {
    pub fn new() -> Self {
        Sliding::default()
    }

    /// A window holding `rows` (oldest first), as restored from a snapshot.
    pub fn from_rows(
        aggs: &[Aggregate],
        rows: impl IntoIterator<Item = (EventTime, Args)>,
    ) -> Self {
        let mut w = Sliding::new();
        for (t, a) in rows {
            w.push(aggs, t, a);
        }
        w
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> std::collections::vec_deque::Iter<'_, (EventTime, Args)> {
        self.rows.iter()
    }

    /// Adds the row of an event at `t` (not older than any row held).
    pub fn push(&mut self, aggs: &[Aggregate], t: EventTime, args: Args) {
        let seq = self.head + self.rows.len() as Seq;
        if let Some(accs) = &mut self.accs {
            add(accs, aggs, seq, &args);
        }
        self.rows.push_back((t, args));
        if self.accs.is_none() && self.rows.len() >= INCREMENTAL_FROM {
            let mut accs = new_accs(aggs);
            for (i, (_, a)) in self.rows.iter().enumerate() {
                add(&mut accs, aggs, self.head + i as Seq, a);
            }
            self.accs = Some(accs);
        }
    }

    /// Removes the rows with time at or before `cutoff`.
    pub fn expire(&mut self, aggs: &[Aggregate], cutoff: EventTime) {
        while self.rows.front().is_some_and(|r| r.0 <= cutoff) {
            let Some((_, args)) = self.rows.pop_front() else {
                break;
            };
            let seq = self.head;
            self.head += 1;
            if let Some(accs) = &mut self.accs {
                remove(accs, aggs, seq, &args, &self.rows, self.head);
            }
        }
        if self.rows.len() < INCREMENTAL_FROM / 2 {
            self.accs = None;
        }
    }

    /// The value of every aggregate over the rows held.
    pub fn values(&self, aggs: &[Aggregate]) -> Vec<Value> {
        let Some(accs) = &self.accs else {
            return compute(aggs, self.rows.iter().map(|r| &r.1));
        };
        let row = |seq: Seq, i: usize| self.rows[(seq - self.head) as usize].1[i].clone();
        accs.iter()
            .zip(aggs)
            .enumerate()
            .map(|(i, (acc, a))| match acc {
                Acc::Count(n) => Value::from(*n),
                Acc::Sum(s) if s.n == 0 => Value::Null,
                Acc::Sum(s) => {
                    let sum = s.exact().unwrap_or_else(|| {
                        sequential_sum(self.rows.iter().map(|r| &r.1[i])).map_or(0.0, |(s, _)| s)
                    });
                    if matches!(a.func, AggFunc::Avg) {
                        num(sum / s.n as f64)
                    } else {
                        num(sum)
                    }
                }
                Acc::Min(d) | Acc::Max(d) => d.front().map_or(Value::Null, |f| num(f.1)),
                Acc::Percentile(_, sorted) if sorted.is_empty() => Value::Null,
                Acc::Percentile(p, sorted) => num(sorted[rank(*p, sorted.len()) - 1]),
                Acc::Distinct(m) => Value::from(m.len() as u64),
                Acc::First(s) | Acc::Last(s) => s.map_or(Value::Null, |s| row(s, i)),
            })
            .collect()
    }
}

fn new_accs(aggs: &[Aggregate]) -> Box<[Acc]> {
    aggs.iter()
        .map(|a| match a.func {
            AggFunc::Count => Acc::Count(0),
            AggFunc::Sum | AggFunc::Avg => Acc::Sum(SumAcc::default()),
            AggFunc::Min => Acc::Min(VecDeque::new()),
            AggFunc::Max => Acc::Max(VecDeque::new()),
            AggFunc::Percentile(p) => Acc::Percentile(p, Vec::new()),
            AggFunc::Distinct => Acc::Distinct(FastMap::default()),
            AggFunc::First => Acc::First(None),
            AggFunc::Last => Acc::Last(None),
        })
        .collect()
}

/// Adds row `seq` (the newest) to the incremental state.
fn add(accs: &mut [Acc], aggs: &[Aggregate], seq: Seq, args: &Args) {
    for (i, (acc, a)) in accs.iter_mut().zip(aggs).enumerate() {
        let v = &args[i];
        let x = number(v);
        match acc {
            Acc::Count(n) => *n += u64::from(a.arg.is_none() || !v.is_null()),
            Acc::Sum(s) => {
                if let Some(x) = x {
                    s.add(x, 1);
                }
            }
            Acc::Min(d) => {
                if let Some(x) = x {
                    while d.back().is_some_and(|b| b.1 > x) {
                        d.pop_back();
                    }
                    d.push_back((seq, x));
                }
            }
            Acc::Max(d) => {
                if let Some(x) = x {
                    while d.back().is_some_and(|b| b.1 < x) {
                        d.pop_back();
                    }
                    d.push_back((seq, x));
                }
            }
            Acc::Percentile(_, sorted) => {
                if let Some(x) = x {
                    let at = sorted.partition_point(|y| y.total_cmp(&x).is_le());
                    sorted.insert(at, x);
                }
            }
            Acc::Distinct(m) => {
                if let Some(k) = DistinctKey::of(v) {
                    *m.entry(k).or_insert(0) += 1;
                }
            }
            Acc::First(first) => {
                if first.is_none() && !v.is_null() {
                    *first = Some(seq);
                }
            }
            Acc::Last(last) => {
                if !v.is_null() {
                    *last = Some(seq);
                }
            }
        }
    }
}

/// Removes row `seq` (the oldest, already taken off `rows`, which now starts
/// at `head`) from the incremental state.
fn remove(
    accs: &mut [Acc],
    aggs: &[Aggregate],
    seq: Seq,
    args: &Args,
    rows: &VecDeque<(EventTime, Args)>,
    head: Seq,
) {
    for (i, (acc, a)) in accs.iter_mut().zip(aggs).enumerate() {
        let v = &args[i];
        let x = number(v);
        match acc {
            Acc::Count(n) => *n -= u64::from(a.arg.is_none() || !v.is_null()),
            Acc::Sum(s) => {
                if let Some(x) = x {
                    s.add(x, -1);
                }
            }
            Acc::Min(d) | Acc::Max(d) => {
                if d.front().is_some_and(|f| f.0 == seq) {
                    d.pop_front();
                }
            }
            Acc::Percentile(_, sorted) => {
                if let Some(x) = x {
                    let at = sorted.partition_point(|y| y.total_cmp(&x).is_lt());
                    sorted.remove(at);
                }
            }
            Acc::Distinct(m) => {
                if let Some(k) = DistinctKey::of(v)
                    && let Some(c) = m.get_mut(&k)
                {
                    *c -= 1;
                    if *c == 0 {
                        m.remove(&k);
                    }
                }
            }
            Acc::First(first) => {
                if *first == Some(seq) {
                    // The next non-null row, if any (each row is passed over
                    // at most once while it is the oldest).
                    *first = rows
                        .iter()
                        .position(|r| !r.1[i].is_null())
                        .map(|p| head + p as Seq);
                }
            }
            Acc::Last(last) => {
                if *last == Some(seq) {
                    *last = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::program::CExpr;
    use proptest::prelude::*;
    use serde_json::json;

    fn aggs() -> Vec<Aggregate> {
        let arg = || Some(CExpr::Lit(Value::Null)); // only `is_none` matters here
        [
            (AggFunc::Count, None),
            (AggFunc::Count, arg()),
            (AggFunc::Sum, arg()),
            (AggFunc::Avg, arg()),
            (AggFunc::Min, arg()),
            (AggFunc::Max, arg()),
            (AggFunc::Distinct, arg()),
            (AggFunc::Percentile(50), arg()),
            (AggFunc::Percentile(99), arg()),
            (AggFunc::First, arg()),
            (AggFunc::Last, arg()),
        ]
        .into_iter()
        .map(|(func, arg)| Aggregate {
            name: format!("{func:?}"),
            func,
            arg,
        })
        .collect()
    }

    /// Values that stress each aggregate: nulls, strings, equal numbers in
    /// two spellings, fractions (the event-order sum), big integers (past the
    /// exact range), -0, arrays and objects in two member orders.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(json!("a")),
            Just(json!("b")),
            Just(json!(true)),
            (-5i64..5).prop_map(Value::from),
            Just(json!(1.0)),
            Just(json!(-0.0)),
            Just(json!(0.1)),
            Just(json!(0.7)),
            Just(json!(2.5e-3)),
            Just(json!(4_503_599_627_370_497i64)),
            Just(json!(9_007_199_254_740_993u64)),
            Just(json!(-1e300)),
            Just(json!([1, "x"])),
            Just(json!({"a": 1, "b": 2})),
            Just(json!({"b": 2.0, "a": 1})),
        ]
    }

    /// As alerts write them (ECMAScript numbers: `-0` is `0`).
    fn text(vals: &[Value]) -> String {
        json::compact(&Value::Array(vals.to_vec()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// After every push and expiry the incremental values are exactly
        /// (same JSON text) what one pass over the rows gives.
        #[test]
        fn incremental_equals_one_pass(
            steps in prop::collection::vec((0i64..3, value(), any::<bool>()), 1..120),
            size in 1i64..16,
        ) {
            let aggs = aggs();
            let mut w = Sliding::new();
            let mut t = 0;
            for (dt, v, expire_only) in steps {
                t += dt;
                w.expire(&aggs, EventTime(t - size));
                if !expire_only {
                    let row: Args = aggs.iter().map(|_| v.clone()).collect();
                    w.push(&aggs, EventTime(t), row);
                }
                let want = compute(&aggs, w.rows().map(|r| &r.1));
                prop_assert_eq!(text(&w.values(&aggs)), text(&want));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// A folded window gives exactly (same JSON text) what one pass
        /// over its rows gives, and so does its snapshot, restored, and a
        /// window rebuilt from the rows (format-1 checkpoints).
        #[test]
        fn folded_equals_one_pass(
            rows in prop::collection::vec(prop::collection::vec(value(), 11), 0..60),
        ) {
            let aggs = aggs();
            let mut c = Columns::new(&aggs);
            for row in &rows {
                let args: Vec<Arg> = aggs
                    .iter()
                    .zip(row)
                    .map(|(a, v)| Arg::of(a, std::borrow::Cow::Borrowed(v)))
                    .collect();
                c.add(&args);
            }
            let args: Vec<Args> = rows.iter().map(|r| Args::from(r.as_slice())).collect();
            let want = text(&compute(&aggs, args.iter()));
            let snap = serde_json::to_string(&c.snapshot()).expect("serializes");
            let snap: ColumnsSnap = serde_json::from_str(&snap).expect("parses");
            let mut restored = Columns::restore(&aggs, &snap).expect("fits");
            let mut rebuilt = Columns::from_rows(&aggs, rows.iter().map(Vec::as_slice));
            prop_assert_eq!(c.is_empty(), rows.is_empty());
            prop_assert_eq!(text(&c.values(&aggs)), want.clone());
            prop_assert_eq!(text(&restored.values(&aggs)), want.clone());
            prop_assert_eq!(text(&rebuilt.values(&aggs)), want);
        }
    }

    /// A snapshot of other aggregates does not restore.
    #[test]
    fn folded_snapshot_must_fit_the_aggregates() {
        let aggs = aggs();
        let snap = Columns::new(&aggs).snapshot();
        assert!(Columns::restore(&aggs[1..], &snap).is_none());
        let mut swapped = snap.clone();
        swapped.cols.swap(0, 2);
        assert!(Columns::restore(&aggs, &swapped).is_none());
    }

    /// The incremental state is built at `INCREMENTAL_FROM` rows, kept
    /// while the window is busy and dropped when it empties out.
    #[test]
    fn incremental_state_follows_the_window_size() {
        let aggs = aggs();
        let mut w = Sliding::new();
        for i in 0..INCREMENTAL_FROM as i64 {
            assert!(w.accs.is_none());
            let row: Args = aggs.iter().map(|_| json!(i)).collect();
            w.push(&aggs, EventTime(i), row);
        }
        assert!(w.accs.is_some());
        let want = compute(&aggs, w.rows().map(|r| &r.1));
        assert_eq!(text(&w.values(&aggs)), text(&want));
        w.expire(&aggs, EventTime(INCREMENTAL_FROM as i64 - 2));
        assert_eq!(w.rows().count(), 1);
        assert!(w.accs.is_none());
        let want = compute(&aggs, w.rows().map(|r| &r.1));
        assert_eq!(text(&w.values(&aggs)), text(&want));
    }

    #[test]
    fn distinct_compares_as_equality_does() {
        let a = aggs();
        let d = &a[6..7];
        let rows: Vec<Args> = [
            json!(1),
            json!(1.0),
            json!(-0.0),
            json!(0),
            json!("1"),
            json!({"a": 1, "b": [2]}),
            json!({"b": [2.0], "a": 1}),
            Value::Null,
        ]
        .into_iter()
        .map(|v| Args::from(vec![v]))
        .collect();
        assert_eq!(compute(d, rows.iter()), vec![json!(4)]);
    }
}
