//! Accumulators: the per-group state of one aggregate call, for all groups
//! at once, updated a batch at a time by group index.
//!
//! Every accumulator can hand out its *partial state* as Arrow columns (one
//! row per group) and merge such columns back in. That is what lets the
//! aggregate spill: partial states written to disk and merged later give
//! exactly the result of never having spilled, because what is kept is
//! mergeable (a sum and a count, not an average; Welford's count, mean and
//! M2, not a variance; the distinct values themselves, not their count).
//!
//! # Memory
//!
//! State is of two kinds. Fixed state ([`Accumulator::group_bytes`] a group)
//! lives in vectors the operator grows with [`Accumulator::reserve`] after
//! reserving for them. Variable state (the bytes of a string_agg, the
//! values a DISTINCT has seen) grows in update; [`Accumulator::update_bytes`]
//! is an upper bound the operator reserves before calling it.
//! [`Accumulator::size`] is what is held, by capacity.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array,
    Float64Array, Int64Array, ListArray, StringArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Decimal128Type, Field, Float64Type, Int64Type};
use arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};
use crate::exec::group_table::{grow_to, grown, normalize_key, reserve_to, GroupTable, Step};
use crate::exec::{prefetch, PREFETCH_ROWS};
use crate::plan::aggregate::AggregateFunction;

pub trait Accumulator: Send {
    /// Bytes of fixed state one group costs.
    fn group_bytes(&self) -> usize;
    /// Capacity for `groups` groups of fixed state.
    fn reserve(&mut self, groups: usize);
    /// Give every group up to `groups` a state (new ones empty).
    fn resize(&mut self, groups: usize);
    /// At most the bytes of variable state `update` may allocate for `arg`.
    fn update_bytes(&self, _arg: Option<&ArrayRef>) -> usize {
        0
    }
    /// Fold in a batch: row i belongs to group `groups[i]`.
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()>;
    /// The columns [`state`](Self::state) returns.
    fn state_fields(&self) -> Vec<Field>;
    /// Partial state of groups `range`, one row a group.
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>>;
    /// At most the bytes of variable state `merge` may allocate for `state`.
    fn merge_bytes(&self, state: &[ArrayRef]) -> usize {
        self.update_bytes(state.first())
    }
    /// Fold in partial states: row i is a state of group `groups[i]`.
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()>;
    /// Final values of groups `range`.
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef>;
    /// Heap bytes held.
    fn size(&self) -> usize;
}

/// The accumulator for `func` over an argument of type `arg` (as bound).
pub fn create(
    func: &AggregateFunction,
    arg: Option<&DataType>,
    distinct: bool,
) -> Result<Box<dyn Accumulator>> {
    use AggregateFunction as F;
    let inner: Box<dyn Accumulator> = match (func, arg) {
        (F::CountStar, _) => Box::new(Count::default()),
        (F::Count, _) => Box::new(Count::default()),
        (F::Sum | F::Avg, Some(t)) => Box::new(Sum::new(t, *func == F::Avg)?),
        (F::Min, Some(t)) => Box::new(Pick::new(t, Choice::Min)?),
        (F::Max, Some(t)) => Box::new(Pick::new(t, Choice::Max)?),
        (F::AnyValue, Some(t)) => Box::new(Pick::new(t, Choice::First)?),
        (F::Variance { sample, sqrt }, Some(_)) => Box::new(Variance {
            sample: *sample,
            sqrt: *sqrt,
            ..Variance::default()
        }),
        (F::BoolAnd, Some(_)) => Box::new(Bool {
            and: true,
            values: Vec::new(),
        }),
        (F::BoolOr, Some(_)) => Box::new(Bool {
            and: false,
            values: Vec::new(),
        }),
        (F::StringAgg { separator }, Some(_)) => Box::new(StringAgg::new(separator)),
        (F::Quantile { q, continuous }, Some(_)) => Box::new(Quantile::new(*q, *continuous)),
        (F::ApproxCountDistinct, Some(t)) => Box::new(ApproxDistinct::new(t)?),
        (f, None) => return Err(Error::Internal(format!("aggregate {f:?} without argument"))),
    };
    match (distinct, arg) {
        (true, Some(t)) => Ok(Box::new(Distinct::new(inner, t)?)),
        _ => Ok(inner),
    }
}

fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

/// [`each_valid`], with each group's entry of `states` fetched into cache
/// [`PREFETCH_ROWS`] rows before it is used. On a large table every row's
/// state is a cache miss; a batch knows its groups in advance, so fetching
/// ahead lets the misses overlap instead of queueing one after another.
fn each_valid_ahead<T>(
    groups: &[u32],
    arg: Option<&ArrayRef>,
    states: &mut [T],
    mut f: impl FnMut(usize, &mut T),
) {
    let nulls = arg.and_then(|a| a.logical_nulls());
    for (i, &g) in groups.iter().enumerate() {
        if let Some(&ahead) = groups.get(i + PREFETCH_ROWS) {
            prefetch(states, ahead as usize);
        }
        if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
            f(i, &mut states[g as usize]);
        }
    }
}

/// Rows of `arg` that count: all of them without an argument (`count(*)`),
/// else the non-NULL ones.
fn each_valid(groups: &[u32], arg: Option<&ArrayRef>, mut f: impl FnMut(usize, usize)) {
    match arg.and_then(|a| a.logical_nulls()) {
        Some(nulls) => {
            for (i, &g) in groups.iter().enumerate() {
                if nulls.is_valid(i) {
                    f(i, g as usize);
                }
            }
        }
        None => {
            for (i, &g) in groups.iter().enumerate() {
                f(i, g as usize);
            }
        }
    }
}

/// `count(*)` and `count(x)`.
#[derive(Default)]
struct Count {
    counts: Vec<i64>,
}

impl Accumulator for Count {
    fn group_bytes(&self) -> usize {
        8
    }
    fn reserve(&mut self, groups: usize) {
        reserve_to(&mut self.counts, groups);
    }
    fn resize(&mut self, groups: usize) {
        self.counts.resize(groups, 0);
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        each_valid_ahead(groups, arg, &mut self.counts, |_, c| *c += 1);
        Ok(())
    }
    fn state_fields(&self) -> Vec<Field> {
        vec![Field::new("count", DataType::Int64, false)]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(range)?])
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let counts = state[0].as_primitive::<Int64Type>().values();
        // Spilled states have no NULLs: a count is a number.
        each_valid_ahead(groups, None, &mut self.counts, |i, c| *c += counts[i]);
        Ok(())
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from(self.counts[range].to_vec())))
    }
    fn size(&self) -> usize {
        vec_bytes(&self.counts)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum SumKind {
    Int,
    Float,
    Decimal(i8),
}

/// A group's exact total and count, side by side: a row then touches one
/// cache line of state instead of two, and on a large table each is a miss.
/// The i128 is kept as two halves so that the element is 24 bytes; an i128
/// field would align it to 16 and pad it to 32.
#[derive(Clone, Copy, Default)]
struct ExactTotal {
    lo: u64,
    hi: u64,
    count: i64,
}

impl ExactTotal {
    fn total(&self) -> i128 {
        (((self.hi as u128) << 64) | self.lo as u128) as i128
    }

    fn set_total(&mut self, v: i128) {
        self.lo = v as u64;
        self.hi = ((v as u128) >> 64) as u64;
    }
}

/// A group's float total and count.
#[derive(Clone, Copy, Default)]
struct FloatTotal {
    total: f64,
    count: i64,
}

/// `sum` and `avg`: a total and a count a group. Integers and decimals are
/// summed exactly in 128 bits, so only the final value can overflow.
struct Sum {
    kind: SumKind,
    avg: bool,
    exact: Vec<ExactTotal>,
    floats: Vec<FloatTotal>,
}

impl Sum {
    fn new(t: &DataType, avg: bool) -> Result<Sum> {
        let kind = match t {
            DataType::Int64 => SumKind::Int,
            DataType::Float64 => SumKind::Float,
            DataType::Decimal128(_, s) => SumKind::Decimal(*s),
            other => return Err(Error::Internal(format!("sum over {other}"))),
        };
        Ok(Sum {
            kind,
            avg,
            exact: Vec::new(),
            floats: Vec::new(),
        })
    }

    fn overflow(&self) -> Error {
        Error::Execution(format!(
            "{} overflowed: the total does not fit in DECIMAL(38)",
            if self.avg { "avg" } else { "sum" }
        ))
    }

    fn count(&self, g: usize) -> i64 {
        match self.kind {
            SumKind::Float => self.floats[g].count,
            _ => self.exact[g].count,
        }
    }
}

impl Accumulator for Sum {
    fn group_bytes(&self) -> usize {
        match self.kind {
            SumKind::Float => std::mem::size_of::<FloatTotal>(),
            _ => std::mem::size_of::<ExactTotal>(),
        }
    }
    fn reserve(&mut self, groups: usize) {
        match self.kind {
            SumKind::Float => reserve_to(&mut self.floats, groups),
            _ => reserve_to(&mut self.exact, groups),
        }
    }
    fn resize(&mut self, groups: usize) {
        match self.kind {
            SumKind::Float => self.floats.resize(groups, FloatTotal::default()),
            _ => self.exact.resize(groups, ExactTotal::default()),
        }
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        let arg = arg.ok_or_else(|| Error::Internal("sum without argument".into()))?;
        match self.kind {
            SumKind::Int => {
                let values = arg.as_primitive::<Int64Type>().values();
                // 2^63 rows of i64 values cannot overflow an i128.
                each_valid_ahead(groups, Some(arg), &mut self.exact, |i, t| {
                    t.set_total(t.total() + values[i] as i128);
                    t.count += 1;
                });
                Ok(())
            }

            SumKind::Float => {
                let values = arg.as_primitive::<Float64Type>().values();
                each_valid_ahead(groups, Some(arg), &mut self.floats, |i, t| {
                    t.total += values[i];
                    t.count += 1;
                });
                Ok(())
            }
            SumKind::Decimal(_) => {
                let values = arg.as_primitive::<Decimal128Type>().values();
                // Overflow is noted, not branched on, row by row: the run
                // fails on it anyway, and the loop stays tight.
                let mut overflow = false;
                each_valid_ahead(groups, Some(arg), &mut self.exact, |i, t| {
                    let (total, o) = t.total().overflowing_add(values[i]);
                    overflow |= o;
                    t.set_total(total);
                    t.count += 1;
                });
                if overflow {
                    return Err(self.overflow());
                }
                Ok(())
            }
        }
    }
    fn state_fields(&self) -> Vec<Field> {
        let total = match self.kind {
            SumKind::Float => DataType::Float64,
            SumKind::Int => DataType::Decimal128(38, 0),
            SumKind::Decimal(s) => DataType::Decimal128(38, s),
        };
        vec![
            Field::new("total", total, false),
            Field::new("count", DataType::Int64, false),
        ]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        let (total, counts): (ArrayRef, Int64Array) = match self.kind {
            SumKind::Float => {
                let states = &self.floats[range];
                (
                    Arc::new(states.iter().map(|t| t.total).collect::<Float64Array>()),
                    states.iter().map(|t| t.count).collect(),
                )
            }
            SumKind::Int | SumKind::Decimal(_) => {
                let scale = match self.kind {
                    SumKind::Decimal(s) => s,
                    _ => 0,
                };
                let states = &self.exact[range];
                (
                    Arc::new(
                        states
                            .iter()
                            .map(|t| t.total())
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(38, scale)?,
                    ),
                    states.iter().map(|t| t.count).collect(),
                )
            }
        };
        Ok(vec![total, Arc::new(counts)])
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let counts = state[1].as_primitive::<Int64Type>().values();
        // Ahead, as in `update`: merging states reaches the groups' totals
        // as much at random as folding rows does (the bench's GROUP BY at
        // SF10 merges 60M states into 8M groups). Spilled states have no
        // NULLs.
        match self.kind {
            SumKind::Float => {
                let totals = state[0].as_primitive::<Float64Type>().values();
                each_valid_ahead(groups, None, &mut self.floats, |i, t| {
                    t.total += totals[i];
                    t.count += counts[i];
                });
            }
            _ => {
                let totals = state[0].as_primitive::<Decimal128Type>().values();
                let mut overflow = false;
                each_valid_ahead(groups, None, &mut self.exact, |i, t| {
                    let (total, o) = t.total().overflowing_add(totals[i]);
                    overflow |= o;
                    t.set_total(total);
                    t.count += counts[i];
                });
                if overflow {
                    return Err(self.overflow());
                }
            }
        }
        Ok(())
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        if self.avg {
            let scale = match self.kind {
                SumKind::Decimal(s) => 10f64.powi(s as i32),
                _ => 1.0,
            };
            let values: Float64Array = range
                .map(|g| {
                    let n = self.count(g);
                    (n > 0).then(|| {
                        let total = match self.kind {
                            SumKind::Float => self.floats[g].total,
                            _ => self.exact[g].total() as f64 / scale,
                        };
                        total / n as f64
                    })
                })
                .collect();
            return Ok(Arc::new(values));
        }
        Ok(match self.kind {
            SumKind::Float => Arc::new(
                self.floats[range]
                    .iter()
                    .map(|t| (t.count > 0).then_some(t.total))
                    .collect::<Float64Array>(),
            ),
            SumKind::Int => {
                let values = self.exact[range]
                    .iter()
                    .map(|t| {
                        if t.count == 0 {
                            return Ok(None);
                        }
                        let v = t.total();
                        i64::try_from(v).map(Some).map_err(|_| {
                            Error::Execution(format!(
                                "sum overflowed BIGINT (the total is {v}): cast the argument to DECIMAL(38, 0)"
                            ))
                        })
                    })
                    .collect::<Result<Int64Array>>()?;
                Arc::new(values)
            }
            SumKind::Decimal(s) => {
                const MAX: i128 = 10i128.pow(38) - 1;
                let values = self.exact[range]
                    .iter()
                    .map(|t| {
                        let v = t.total();
                        if t.count == 0 {
                            Ok(None)
                        } else if v.abs() > MAX {
                            Err(self.overflow())
                        } else {
                            Ok(Some(v))
                        }
                    })
                    .collect::<Result<Decimal128Array>>()?;
                Arc::new(values.with_precision_and_scale(38, s)?)
            }
        })
    }
    fn size(&self) -> usize {
        vec_bytes(&self.exact) + vec_bytes(&self.floats)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Choice {
    Min,
    Max,
    /// any_value: the first non-NULL value met.
    First,
}

/// `min`, `max` and `any_value` over any type: values are kept as arrow-row
/// bytes, whose order is the values' order.
struct Pick {
    choice: Choice,
    data_type: DataType,
    converter: RowConverter,
    values: Vec<Option<Box<[u8]>>>,
    /// Bytes of the boxed values, with the allocator's per-block cost.
    heap: usize,
    /// The encoding of NULL, for groups that met no value.
    null_row: Box<[u8]>,
}

/// What the allocator is taken to spend on one small allocation beyond its
/// bytes.
const ALLOC_OVERHEAD: usize = 16;

impl Pick {
    fn new(t: &DataType, choice: Choice) -> Result<Pick> {
        let converter = RowConverter::new(vec![SortField::new(t.clone())])?;
        let null_row = converter
            .convert_columns(&[new_null_array(t, 1)])?
            .row(0)
            .as_ref()
            .into();
        Ok(Pick {
            choice,
            data_type: t.clone(),
            converter,
            values: Vec::new(),
            heap: 0,
            null_row,
        })
    }
}

impl Accumulator for Pick {
    fn group_bytes(&self) -> usize {
        std::mem::size_of::<Option<Box<[u8]>>>()
    }
    fn reserve(&mut self, groups: usize) {
        reserve_to(&mut self.values, groups);
    }
    fn resize(&mut self, groups: usize) {
        self.values.resize(groups, None);
    }
    fn update_bytes(&self, arg: Option<&ArrayRef>) -> usize {
        // The encoded batch, and at worst a kept copy of every value.
        arg.map_or(0, |a| {
            2 * (2 * a.get_buffer_memory_size() + a.len() * (ALLOC_OVERHEAD + 8))
        })
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        let arg = arg.ok_or_else(|| Error::Internal("min/max without argument".into()))?;
        let rows = self.converter.convert_columns(std::slice::from_ref(arg))?;
        let choice = self.choice;
        each_valid(groups, Some(arg), |i, g| {
            let row = rows.row(i);
            let better = match (&self.values[g], choice) {
                (None, _) => true,
                (Some(_), Choice::First) => false,
                (Some(cur), Choice::Min) => row.as_ref() < &cur[..],
                (Some(cur), Choice::Max) => row.as_ref() > &cur[..],
            };
            if better {
                let new: Box<[u8]> = row.as_ref().into();
                self.heap += new.len() + ALLOC_OVERHEAD;
                if let Some(old) = self.values[g].replace(new) {
                    self.heap -= old.len() + ALLOC_OVERHEAD;
                }
            }
        });
        Ok(())
    }
    fn state_fields(&self) -> Vec<Field> {
        vec![Field::new("value", self.data_type.clone(), true)]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(range)?])
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        self.update(groups, Some(&state[0]))
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        let parser = self.converter.parser();
        let rows = self.values[range]
            .iter()
            .map(|v| parser.parse(v.as_deref().unwrap_or(&self.null_row)));
        let mut columns = self.converter.convert_rows(rows)?;
        columns
            .pop()
            .ok_or_else(|| Error::Internal("row converter gave no column".into()))
    }
    fn size(&self) -> usize {
        vec_bytes(&self.values) + self.heap + self.converter.size()
    }
}

/// Variances and standard deviations: Welford's running count, mean and M2,
/// which merge exactly (Chan et al.) where a variance would not.
#[derive(Default)]
struct Variance {
    sample: bool,
    sqrt: bool,
    counts: Vec<i64>,
    means: Vec<f64>,
    m2s: Vec<f64>,
}

impl Variance {
    fn combine(&mut self, g: usize, n: i64, mean: f64, m2: f64) {
        let na = self.counts[g];
        let total = na + n;
        if total == 0 {
            return;
        }
        let delta = mean - self.means[g];
        self.means[g] += delta * n as f64 / total as f64;
        self.m2s[g] += m2 + delta * delta * na as f64 * n as f64 / total as f64;
        self.counts[g] = total;
    }
}

impl Accumulator for Variance {
    fn group_bytes(&self) -> usize {
        24
    }
    fn reserve(&mut self, groups: usize) {
        reserve_to(&mut self.counts, groups);
        reserve_to(&mut self.means, groups);
        reserve_to(&mut self.m2s, groups);
    }
    fn resize(&mut self, groups: usize) {
        self.counts.resize(groups, 0);
        self.means.resize(groups, 0.0);
        self.m2s.resize(groups, 0.0);
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        let arg = arg.ok_or_else(|| Error::Internal("variance without argument".into()))?;
        let values = arg.as_primitive::<Float64Type>().values();
        each_valid(groups, Some(arg), |i, g| {
            let x = values[i];
            self.counts[g] += 1;
            let delta = x - self.means[g];
            self.means[g] += delta / self.counts[g] as f64;
            self.m2s[g] += delta * (x - self.means[g]);
        });
        Ok(())
    }
    fn state_fields(&self) -> Vec<Field> {
        vec![
            Field::new("count", DataType::Int64, false),
            Field::new("mean", DataType::Float64, false),
            Field::new("m2", DataType::Float64, false),
        ]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        Ok(vec![
            Arc::new(Int64Array::from(self.counts[range.clone()].to_vec())),
            Arc::new(Float64Array::from(self.means[range.clone()].to_vec())),
            Arc::new(Float64Array::from(self.m2s[range].to_vec())),
        ])
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let counts = state[0].as_primitive::<Int64Type>().values();
        let means = state[1].as_primitive::<Float64Type>().values();
        let m2s = state[2].as_primitive::<Float64Type>().values();
        for (i, &g) in groups.iter().enumerate() {
            self.combine(g as usize, counts[i], means[i], m2s[i]);
        }
        Ok(())
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        let min = if self.sample { 2 } else { 1 };
        let values: Float64Array = range
            .map(|g| {
                let n = self.counts[g];
                (n >= min).then(|| {
                    let v = self.m2s[g] / (n - (min - 1)) as f64;
                    if self.sqrt {
                        v.sqrt()
                    } else {
                        v
                    }
                })
            })
            .collect();
        Ok(Arc::new(values))
    }
    fn size(&self) -> usize {
        vec_bytes(&self.counts) + vec_bytes(&self.means) + vec_bytes(&self.m2s)
    }
}

/// `bool_and` and `bool_or`. A group's value: 0 none yet, 1 false, 2 true.
struct Bool {
    and: bool,
    values: Vec<u8>,
}

impl Accumulator for Bool {
    fn group_bytes(&self) -> usize {
        1
    }
    fn reserve(&mut self, groups: usize) {
        reserve_to(&mut self.values, groups);
    }
    fn resize(&mut self, groups: usize) {
        self.values.resize(groups, 0);
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        let arg = arg.ok_or_else(|| Error::Internal("bool_and without argument".into()))?;
        let values = arg.as_boolean();
        let and = self.and;
        each_valid(groups, Some(arg), |i, g| {
            let v = values.value(i);
            let cur = self.values[g];
            let next = if cur == 0 {
                v
            } else if and {
                cur == 2 && v
            } else {
                cur == 2 || v
            };
            self.values[g] = if next { 2 } else { 1 };
        });
        Ok(())
    }
    fn state_fields(&self) -> Vec<Field> {
        vec![Field::new("value", DataType::Boolean, true)]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(range)?])
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        self.update(groups, Some(&state[0]))
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        let values: BooleanArray = self.values[range]
            .iter()
            .map(|&v| (v != 0).then_some(v == 2))
            .collect();
        Ok(Arc::new(values))
    }
    fn size(&self) -> usize {
        vec_bytes(&self.values)
    }
}

/// `string_agg`: each group's pieces, chained through one arena so that
/// growth happens in steps the operator reserved for (a `String` a group
/// would double behind the budget's back).
struct StringAgg {
    separator: String,
    /// Per group: first and last piece, `NONE` if none.
    heads: Vec<u32>,
    tails: Vec<u32>,
    /// Per piece: where its bytes are in `bytes`, and the next piece of the
    /// same group.
    starts: Vec<usize>,
    nexts: Vec<u32>,
    bytes: Vec<u8>,
}

const NONE: u32 = u32::MAX;

impl StringAgg {
    fn new(separator: &str) -> StringAgg {
        StringAgg {
            separator: separator.to_string(),
            heads: Vec::new(),
            tails: Vec::new(),
            starts: vec![0],
            nexts: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn piece(&self, p: usize) -> &[u8] {
        &self.bytes[self.starts[p]..self.starts[p + 1]]
    }

    fn push(&mut self, g: usize, text: &str) -> Result<()> {
        let p = u32::try_from(self.nexts.len())
            .ok()
            .filter(|&p| p != NONE)
            .ok_or_else(|| {
                Error::ResourcesExhausted("string_agg holds more than 4 billion values".into())
            })?;
        self.bytes.extend_from_slice(text.as_bytes());
        self.starts.push(self.bytes.len());
        self.nexts.push(NONE);
        if self.heads[g] == NONE {
            self.heads[g] = p;
        } else {
            self.nexts[self.tails[g] as usize] = p;
        }
        self.tails[g] = p;
        Ok(())
    }

    /// Bytes the piece vectors and the arena grow by for `pieces` more
    /// pieces of `bytes` bytes.
    fn growth(&self, pieces: usize, bytes: usize) -> usize {
        let need = self.nexts.len() + pieces;
        let mut total = 0;
        if need > self.nexts.capacity() {
            total += grown(self.nexts.capacity(), need) * 4;
        }
        if need + 1 > self.starts.capacity() {
            total += grown(self.starts.capacity(), need + 1) * 8;
        }
        let b = self.bytes.len() + bytes;
        if b > self.bytes.capacity() {
            total += grown(self.bytes.capacity(), b);
        }
        total
    }

    fn make_room(&mut self, pieces: usize, bytes: usize) {
        let need = self.nexts.len() + pieces;
        grow_to(&mut self.nexts, need);
        grow_to(&mut self.starts, need + 1);
        let b = self.bytes.len() + bytes;
        grow_to(&mut self.bytes, b);
    }

    fn text_bytes(arg: &ArrayRef) -> usize {
        arg.as_string::<i32>().values().len()
    }
}

impl Accumulator for StringAgg {
    fn group_bytes(&self) -> usize {
        8
    }
    fn reserve(&mut self, groups: usize) {
        reserve_to(&mut self.heads, groups);
        reserve_to(&mut self.tails, groups);
    }
    fn resize(&mut self, groups: usize) {
        self.heads.resize(groups, NONE);
        self.tails.resize(groups, NONE);
    }
    fn update_bytes(&self, arg: Option<&ArrayRef>) -> usize {
        arg.map_or(0, |a| self.growth(a.len(), Self::text_bytes(a)))
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        let arg = arg.ok_or_else(|| Error::Internal("string_agg without argument".into()))?;
        self.make_room(arg.len(), Self::text_bytes(arg));
        let strings = arg.as_string::<i32>();
        for (i, &g) in groups.iter().enumerate() {
            if strings.is_valid(i) {
                self.push(g as usize, strings.value(i))?;
            }
        }
        Ok(())
    }
    fn state_fields(&self) -> Vec<Field> {
        vec![Field::new("value", DataType::Utf8, true)]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(range)?])
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        self.update(groups, Some(&state[0]))
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        let mut out = Vec::with_capacity(range.len());
        let mut text = Vec::new();
        for g in range {
            let mut p = self.heads[g];
            if p == NONE {
                out.push(None);
                continue;
            }
            text.clear();
            while p != NONE {
                if !text.is_empty() || p != self.heads[g] {
                    text.extend_from_slice(self.separator.as_bytes());
                }
                text.extend_from_slice(self.piece(p as usize));
                p = self.nexts[p as usize];
            }
            // Pieces are whole UTF-8 strings and so is the separator.
            out.push(Some(String::from_utf8_lossy(&text).into_owned()));
        }
        Ok(Arc::new(StringArray::from(out)))
    }
    fn size(&self) -> usize {
        vec_bytes(&self.heads)
            + vec_bytes(&self.tails)
            + vec_bytes(&self.starts)
            + vec_bytes(&self.nexts)
            + vec_bytes(&self.bytes)
    }
}

/// `median` and `quantile_cont`/`quantile_disc`: every non-NULL value of a
/// group, chained through one arena as string_agg's pieces are, sorted
/// when the result is asked for. Exact, so the state is the values
/// themselves: a group's partial state is its values packed as
/// little-endian f64 bytes.
struct Quantile {
    q: f64,
    continuous: bool,
    heads: Vec<u32>,
    tails: Vec<u32>,
    nexts: Vec<u32>,
    values: Vec<f64>,
}

/// Bytes a value costs: its link, itself, and its place in the scratch
/// vector `evaluate` sorts a group in (reserved with the value, so that
/// sorting the largest group cannot exceed the budget). The same 8 bytes
/// cover the packed copy `state` makes of the values it spills.
const QUANTILE_VALUE_BYTES: usize = 4 + 8 + 8;

impl Quantile {
    fn new(q: f64, continuous: bool) -> Quantile {
        Quantile {
            q,
            continuous,
            heads: Vec::new(),
            tails: Vec::new(),
            nexts: Vec::new(),
            values: Vec::new(),
        }
    }

    fn growth(&self, values: usize) -> usize {
        let need = self.values.len() + values;
        if need > self.values.capacity() {
            grown(self.values.capacity(), need) * QUANTILE_VALUE_BYTES
        } else {
            0
        }
    }

    fn push(&mut self, g: usize, v: f64) -> Result<()> {
        let p = u32::try_from(self.values.len())
            .ok()
            .filter(|&p| p != NONE)
            .ok_or_else(|| {
                Error::ResourcesExhausted("a quantile holds more than 4 billion values".into())
            })?;
        self.values.push(v);
        self.nexts.push(NONE);
        if self.heads[g] == NONE {
            self.heads[g] = p;
        } else {
            self.nexts[self.tails[g] as usize] = p;
        }
        self.tails[g] = p;
        Ok(())
    }

    fn make_room(&mut self, values: usize) {
        let need = self.values.len() + values;
        grow_to(&mut self.values, need);
        grow_to(&mut self.nexts, need);
    }

    fn group_values(&self, g: usize, out: &mut Vec<f64>) {
        out.clear();
        let mut p = self.heads[g];
        while p != NONE {
            out.push(self.values[p as usize]);
            p = self.nexts[p as usize];
        }
    }
}

/// The `q`-quantile of `sorted` (not empty).
fn quantile_of(sorted: &[f64], q: f64, continuous: bool) -> f64 {
    let n = sorted.len();
    if continuous {
        let at = q * (n - 1) as f64;
        let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
        let (a, b) = (sorted[lo], sorted[hi.min(n - 1)]);
        if lo == hi {
            a
        } else {
            a + (b - a) * (at - lo as f64)
        }
    } else {
        // The first value whose cumulative share reaches q.
        let rank = (q * n as f64).ceil() as usize;
        sorted[rank.saturating_sub(1).min(n - 1)]
    }
}

impl Accumulator for Quantile {
    fn group_bytes(&self) -> usize {
        8
    }
    fn reserve(&mut self, groups: usize) {
        reserve_to(&mut self.heads, groups);
        reserve_to(&mut self.tails, groups);
    }
    fn resize(&mut self, groups: usize) {
        self.heads.resize(groups, NONE);
        self.tails.resize(groups, NONE);
    }
    fn update_bytes(&self, arg: Option<&ArrayRef>) -> usize {
        arg.map_or(0, |a| self.growth(a.len()))
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        let arg = arg.ok_or_else(|| Error::Internal("quantile without argument".into()))?;
        let values = arg.as_primitive::<Float64Type>();
        self.make_room(values.len() - values.null_count());
        for (i, &g) in groups.iter().enumerate() {
            if values.is_valid(i) {
                self.push(g as usize, values.value(i))?;
            }
        }
        Ok(())
    }
    fn state_fields(&self) -> Vec<Field> {
        vec![Field::new("values", DataType::Binary, false)]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        let mut group = Vec::new();
        let packed: BinaryArray = range
            .map(|g| {
                self.group_values(g, &mut group);
                Some(
                    group
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect::<Vec<u8>>(),
                )
            })
            .collect();
        Ok(vec![Arc::new(packed)])
    }
    fn merge_bytes(&self, state: &[ArrayRef]) -> usize {
        state
            .first()
            .map_or(0, |s| self.growth(s.as_binary::<i32>().values().len() / 8))
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let packed = state[0].as_binary::<i32>();
        self.make_room(packed.values().len() / 8);
        for (i, &g) in groups.iter().enumerate() {
            for chunk in packed.value(i).chunks_exact(8) {
                let bytes: [u8; 8] = chunk.try_into().expect("chunks of 8");
                self.push(g as usize, f64::from_le_bytes(bytes))?;
            }
        }
        Ok(())
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        let mut group = Vec::new();
        let out: Float64Array = range
            .map(|g| {
                self.group_values(g, &mut group);
                if group.is_empty() {
                    return None;
                }
                group.sort_unstable_by(f64::total_cmp);
                Some(quantile_of(&group, self.q, self.continuous))
            })
            .collect();
        Ok(Arc::new(out))
    }
    fn size(&self) -> usize {
        vec_bytes(&self.heads)
            + vec_bytes(&self.tails)
            + vec_bytes(&self.nexts)
            + self.values.capacity() * (QUANTILE_VALUE_BYTES - 4)
    }
}

/// HyperLogLog registers a group: 2^10, so about 1.04 / 32 = 3% standard
/// error, in 1 KB a group.
const HLL_BITS: u32 = 10;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// `approx_count_distinct`: a HyperLogLog sketch a group. Registers merge
/// by maximum, so a spilled and merged group gives exactly the estimate of
/// the group seen at once.
struct ApproxDistinct {
    /// Values are hashed through their arrow-row encoding, which every
    /// type has.
    converter: RowConverter,
    hasher: ahash::RandomState,
    /// `HLL_REGISTERS` bytes a group.
    registers: Vec<u8>,
}

impl ApproxDistinct {
    fn new(t: &DataType) -> Result<ApproxDistinct> {
        Ok(ApproxDistinct {
            converter: RowConverter::new(vec![SortField::new(t.clone())])?,
            // Fixed seeds: a group's registers from a spill and from memory
            // must come from one hash function.
            hasher: ahash::RandomState::with_seeds(
                0x5851_f42d_4c95_7f2d,
                0x1405_7b7e_f767_814f,
                0x9e37_79b9_7f4a_7c15,
                0xbf58_476d_1ce4_e5b9,
            ),
            registers: Vec::new(),
        })
    }

    fn add(&mut self, g: usize, hash: u64) {
        let index = (hash >> (64 - HLL_BITS)) as usize;
        // The position of the first 1 in the remaining bits (a guard bit
        // bounds it).
        let rest = (hash << HLL_BITS) | (1 << (HLL_BITS - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        let r = &mut self.registers[g * HLL_REGISTERS + index];
        *r = (*r).max(rank);
    }

    fn estimate(registers: &[u8]) -> i64 {
        let m = HLL_REGISTERS as f64;
        let sum: f64 = registers.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
        let zeros = registers.iter().filter(|&&r| r == 0).count();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        // Few values: linear counting over the empty registers is better.
        let e = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        e.round() as i64
    }
}

impl Accumulator for ApproxDistinct {
    fn group_bytes(&self) -> usize {
        HLL_REGISTERS
    }
    fn reserve(&mut self, groups: usize) {
        reserve_to(&mut self.registers, groups * HLL_REGISTERS);
    }
    fn resize(&mut self, groups: usize) {
        self.registers.resize(groups * HLL_REGISTERS, 0);
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        let arg =
            arg.ok_or_else(|| Error::Internal("approx_count_distinct without argument".into()))?;
        // -0.0 and 0.0 (and every NaN) are one value, as for count(DISTINCT).
        let arg = normalize_key(arg.clone());
        let rows = self.converter.convert_columns(std::slice::from_ref(&arg))?;
        for (i, &g) in groups.iter().enumerate() {
            if arg.is_valid(i) {
                let hash = self.hasher.hash_one(rows.row(i).as_ref());
                self.add(g as usize, hash);
            }
        }
        Ok(())
    }
    fn state_fields(&self) -> Vec<Field> {
        vec![Field::new("registers", DataType::Binary, false)]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        let packed: BinaryArray = range
            .map(|g| Some(&self.registers[g * HLL_REGISTERS..(g + 1) * HLL_REGISTERS]))
            .collect();
        Ok(vec![Arc::new(packed)])
    }
    fn merge_bytes(&self, _state: &[ArrayRef]) -> usize {
        0
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let packed = state[0].as_binary::<i32>();
        for (i, &g) in groups.iter().enumerate() {
            let to = &mut self.registers[g as usize * HLL_REGISTERS..][..HLL_REGISTERS];
            for (t, &f) in to.iter_mut().zip(packed.value(i)) {
                *t = (*t).max(f);
            }
        }
        Ok(())
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        let out: Int64Array = range
            .map(|g| {
                Some(Self::estimate(
                    &self.registers[g * HLL_REGISTERS..][..HLL_REGISTERS],
                ))
            })
            .collect();
        Ok(Arc::new(out))
    }
    fn size(&self) -> usize {
        self.registers.capacity() + self.converter.size()
    }
}

/// `agg(DISTINCT x)`: the distinct (group, value) pairs seen, kept in a
/// group table of their own and chained by group; the inner accumulator is
/// fed each pair once, when results are asked for. The partial state is
/// each group's list of distinct values.
struct Distinct {
    inner: Box<dyn Accumulator>,
    arg_type: DataType,
    seen: GroupTable,
    /// Per group: its first and last pair, `NONE` if none.
    heads: Vec<u32>,
    tails: Vec<u32>,
    /// Per pair: the next pair of the same group.
    nexts: Vec<u32>,
    fed: bool,
}

impl Distinct {
    fn new(inner: Box<dyn Accumulator>, t: &DataType) -> Result<Distinct> {
        let fields = vec![SortField::new(DataType::UInt32), SortField::new(t.clone())];
        Ok(Distinct {
            inner,
            arg_type: t.clone(),
            seen: GroupTable::new(fields, 0x5eed)?,
            heads: Vec::new(),
            tails: Vec::new(),
            nexts: Vec::new(),
            fed: false,
        })
    }

    /// The pairs of groups `range`, group by group: (group, pair) each.
    fn pairs(&self, range: Range<usize>, mut f: impl FnMut(usize, u32)) {
        for g in range {
            let mut p = self.heads[g];
            while p != NONE {
                f(g, p);
                p = self.nexts[p as usize];
            }
        }
    }

    /// Give the inner accumulator every pair, once.
    fn feed(&mut self) -> Result<()> {
        if self.fed {
            return Ok(());
        }
        self.fed = true;
        self.inner.resize(self.heads.len());
        let mut groups = Vec::with_capacity(8192);
        let mut pairs = Vec::with_capacity(8192);
        let mut chunks = Vec::new();
        self.pairs(0..self.heads.len(), |g, p| {
            groups.push(g as u32);
            pairs.push(p as usize);
            if groups.len() == 8192 {
                chunks.push((std::mem::take(&mut groups), std::mem::take(&mut pairs)));
            }
        });
        chunks.push((groups, pairs));
        for (groups, pairs) in chunks {
            let columns = self.seen.key_columns(pairs.into_iter())?;
            self.inner.update(&groups, Some(&columns[1]))?;
        }
        Ok(())
    }

    /// Add (group, value) pairs; NULL values count for nothing.
    fn add(&mut self, groups: &[u32], values: &ArrayRef) -> Result<()> {
        if self.fed {
            return Err(Error::Internal("DISTINCT updated after evaluation".into()));
        }
        let mut g = Vec::with_capacity(groups.len());
        let mut keep = Vec::with_capacity(groups.len());
        each_valid(groups, Some(values), |i, group| {
            g.push(group as u32);
            keep.push(i as u32);
        });
        let values = arrow::compute::take(values.as_ref(), &UInt32Array::from(keep), None)?;
        let owners: ArrayRef = Arc::new(UInt32Array::from(g.clone()));
        let Some(rows) = self.seen.encode(&[owners, values])? else {
            return Ok(());
        };
        self.seen
            .make_room(rows.num_rows(), rows.size(), Step::Double);
        let pairs = self.nexts.len() + rows.num_rows();
        grow_to(&mut self.nexts, pairs);
        let mut ids = Vec::new();
        self.seen.intern(Some(&rows), rows.num_rows(), &mut ids);
        for (&pair, &group) in ids.iter().zip(&g) {
            if pair as usize == self.nexts.len() {
                // A pair met for the first time: chain it to its group.
                self.nexts.push(NONE);
                let group = group as usize;
                if self.heads[group] == NONE {
                    self.heads[group] = pair;
                } else {
                    self.nexts[self.tails[group] as usize] = pair;
                }
                self.tails[group] = pair;
            }
        }
        Ok(())
    }
}

impl Accumulator for Distinct {
    fn group_bytes(&self) -> usize {
        self.inner.group_bytes() + 8
    }
    fn reserve(&mut self, groups: usize) {
        self.inner.reserve(groups);
        reserve_to(&mut self.heads, groups);
        reserve_to(&mut self.tails, groups);
    }
    fn resize(&mut self, groups: usize) {
        self.heads.resize(groups, NONE);
        self.tails.resize(groups, NONE);
    }
    fn update_bytes(&self, arg: Option<&ArrayRef>) -> usize {
        // The encoded batch, and the growth of the pair table and chains
        // if every pair is new. The row encoding costs at most about twice
        // the Arrow bytes plus a few bytes a row.
        arg.map_or(0, |a| {
            let rows = a.len();
            let key_bytes = 2 * a.get_buffer_memory_size() + 16 * rows;
            let chain = if self.nexts.len() + rows > self.nexts.capacity() {
                grown(self.nexts.capacity(), self.nexts.len() + rows) * 4
            } else {
                0
            };
            key_bytes + self.seen.growth_bytes(rows, key_bytes, Step::Double) + chain
        })
    }
    fn update(&mut self, groups: &[u32], arg: Option<&ArrayRef>) -> Result<()> {
        let arg = arg.ok_or_else(|| Error::Internal("DISTINCT without argument".into()))?;
        self.add(groups, arg)
    }
    fn state_fields(&self) -> Vec<Field> {
        let item = Arc::new(Field::new("item", self.arg_type.clone(), true));
        vec![Field::new("values", DataType::List(item), false)]
    }
    fn state(&mut self, range: Range<usize>) -> Result<Vec<ArrayRef>> {
        let mut offsets = Vec::with_capacity(range.len() + 1);
        offsets.push(0i32);
        let mut pairs = Vec::new();
        let mut last = range.start;
        self.pairs(range.clone(), |g, p| {
            while last < g {
                offsets.push(pairs.len() as i32);
                last += 1;
            }
            pairs.push(p as usize);
        });
        while offsets.len() < range.len() + 1 {
            offsets.push(pairs.len() as i32);
        }
        let values = match self.seen.key_columns(pairs.into_iter())?.pop() {
            Some(v) => v,
            None => new_null_array(&self.arg_type, 0),
        };
        let item = Arc::new(Field::new("item", self.arg_type.clone(), true));
        let list = ListArray::try_new(item, OffsetBuffer::new(offsets.into()), values, None)?;
        Ok(vec![Arc::new(list)])
    }
    fn merge_bytes(&self, state: &[ArrayRef]) -> usize {
        state.first().map_or(0, |s| {
            let values = s.as_list::<i32>().values();
            self.update_bytes(Some(values))
        })
    }
    fn merge(&mut self, groups: &[u32], state: &[ArrayRef]) -> Result<()> {
        let lists = state[0].as_list::<i32>();
        let mut owners = Vec::with_capacity(lists.values().len());
        for (i, w) in lists.offsets().windows(2).enumerate() {
            owners.extend(std::iter::repeat_n(groups[i], (w[1] - w[0]) as usize));
        }
        let start = lists.offsets()[0] as usize;
        let end = lists.offsets().last() as usize;
        let values = lists.values().slice(start, end - start);
        self.add(&owners, &values)
    }
    fn evaluate(&mut self, range: Range<usize>) -> Result<ArrayRef> {
        self.feed()?;
        self.inner.evaluate(range)
    }
    fn size(&self) -> usize {
        self.inner.size()
            + self.seen.size()
            + vec_bytes(&self.heads)
            + vec_bytes(&self.tails)
            + vec_bytes(&self.nexts)
    }
}
