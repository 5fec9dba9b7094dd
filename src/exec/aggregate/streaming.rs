//! GROUP BY over input already ordered on the group keys: a streaming
//! aggregation, which holds one group at a time instead of a table of all.
//!
//! When every group's rows arrive together, a group is complete as soon as
//! a row of another group arrives. Each input batch is cut where its key
//! changes (arrow-row encoded keys, compared with their neighbours), every
//! aggregate is folded into fresh accumulators for the batch's groups, and
//! all of them but the last go out at once. The last may go on in the next
//! batch, so its partial state is kept (the same mergeable state a hash
//! aggregation spills) and merged into the next batch's first group if that
//! has the same key, or sent out before it if not.
//!
//! The planner picks this operator where the input is ordered on exactly
//! the group columns (see [`suits`]): under a sort on them, or a scan of a
//! Parquet file whose row groups say they are sorted so. Order is per key,
//! not per direction: ascending or descending, NULLs first or last, equal
//! keys are next to each other either way. Keys are encoded in the order's
//! directions, so a row out of order (a file whose metadata does not hold)
//! is seen, and stops the run with an error rather than a group twice.
//!
//! # Memory
//!
//! - The state of the one open group is reserved, or, when the budget
//!   refuses and it is small (at most 1 MB and an eighth of the pool),
//!   counted anyway, since it is held already; a group whose own state
//!   outgrows that (a huge `string_agg` of one group) fails with
//!   `ResourcesExhausted`, as it would in a hash aggregation that cannot
//!   split it.
//! - The accumulators of one batch's groups live while the batch is
//!   folded, as the batch does; output batches hold at most an input
//!   batch's groups, plus the group that was open before it.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::SortOptions;
use arrow::compute::{concat, filter, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};

use super::accumulator::Accumulator;
use super::{accumulators, arguments, group_keys, typed_aggregates, Argument};
use crate::analyze;
use crate::error::{Error, Result};
use crate::exec::{batch_of, BoxedOperator, Operator, RunContext};
use crate::memory::Reservation;
use crate::plan::aggregate::AggregateExpr;
use crate::plan::Expr;
use crate::source::OrderColumn;

/// Whether a GROUP BY on `group` can stream over input whose rows are
/// ordered on the columns `ordering` (output positions, major key first),
/// with `schema` the input's schema.
///
/// Every group expression must be a plain column, and they must be the
/// first `group.len()` ordering columns, in any order. Not floats: a sort
/// puts -NaN first and NaN last, while grouping makes every NaN one group.
pub fn suits(group: &[Expr], ordering: &[usize], schema: &SchemaRef) -> bool {
    if group.is_empty() || ordering.len() < group.len() {
        return false;
    }
    let mut columns = Vec::with_capacity(group.len());
    for e in group {
        let Expr::Column { index, .. } = e else {
            return false;
        };
        if matches!(
            schema.field(*index).data_type(),
            DataType::Float16 | DataType::Float32 | DataType::Float64
        ) || columns.contains(index)
        {
            return false;
        }
        columns.push(*index);
    }
    let mut leading = ordering[..group.len()].to_vec();
    leading.sort_unstable();
    columns.sort_unstable();
    leading == columns
}

/// The most state of the open group counted when the budget refuses it:
/// see [`StreamingAggregate::reserve_open`].
const OPEN_STATE_BYTES_MAX: usize = 1 << 20;

pub struct StreamingAggregate {
    ctx: Arc<RunContext>,
    input: BoxedOperator,
    group: Vec<Expr>,
    aggregates: Vec<(AggregateExpr, Option<DataType>)>,
    schema: SchemaRef,
    /// Encodes the group keys in the input's order: `key_order[k]` is the
    /// group column that is the order's k-th.
    converter: RowConverter,
    key_order: Vec<usize>,
    /// The last group met, which the next batch may continue.
    open: Option<OpenGroup>,
    /// Holds the open group's state.
    reservation: Reservation,
    done: bool,
}

/// A group whose rows may not all have arrived yet.
struct OpenGroup {
    /// Its encoded key.
    key: Vec<u8>,
    /// Its key columns, one row each.
    key_columns: Vec<ArrayRef>,
    /// Every aggregate's state, for one group.
    accs: Vec<Box<dyn Accumulator>>,
}

impl StreamingAggregate {
    pub fn new(
        ctx: Arc<RunContext>,
        input: BoxedOperator,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
        schema: SchemaRef,
        order: &[OrderColumn],
    ) -> Result<StreamingAggregate> {
        let in_schema = input.schema();
        // The group columns in the order's sequence and directions, so that
        // encoded keys must never decrease.
        let key_order = order
            .iter()
            .take(group.len())
            .map(|o| {
                group
                    .iter()
                    .position(|e| matches!(e, Expr::Column { index, .. } if *index == o.column))
            })
            .collect::<Option<Vec<usize>>>()
            .filter(|k| k.len() == group.len())
            .ok_or_else(|| {
                Error::Internal("a streaming GROUP BY over input not ordered on its keys".into())
            })?;
        let fields = key_order
            .iter()
            .zip(order)
            .map(|(&k, o)| {
                let options = SortOptions {
                    descending: o.descending,
                    nulls_first: o.nulls_first,
                };
                Ok(SortField::new_with_options(
                    group[k].data_type(&in_schema)?,
                    options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let aggregates = typed_aggregates(aggregates, &in_schema)?;
        analyze::note("streaming: input ordered on the group keys");
        let reservation = ctx.budget.reservation("streaming aggregate");
        Ok(StreamingAggregate {
            ctx,
            input,
            group,
            aggregates,
            schema,
            converter: RowConverter::new(fields)?,
            key_order,
            open: None,
            reservation,
            done: false,
        })
    }

    fn accumulators(&self, groups: usize) -> Result<Vec<Box<dyn Accumulator>>> {
        let mut accs = accumulators(&self.aggregates)?;
        for acc in &mut accs {
            acc.reserve(groups);
            acc.resize(groups);
        }
        Ok(accs)
    }

    /// Fold in one input batch; the groups it completes, if any.
    fn fold(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        let keys = group_keys(&self.group, batch)?;
        let ordered: Vec<ArrayRef> = self.key_order.iter().map(|&k| keys[k].clone()).collect();
        let rows = self.converter.convert_columns(&ordered)?;
        let args = (self.aggregates.iter())
            .map(|(a, _)| arguments(a, batch))
            .collect::<Result<Vec<_>>>()?;
        // The first row of each group. A key below the one before means the
        // input is not in the order it was said to be in (a Parquet file
        // whose sorting_columns do not hold): groups would come out twice,
        // so stop instead.
        let mut starts = vec![0u32];
        let behind = self
            .open
            .as_ref()
            .is_some_and(|open| rows.row(0).as_ref() < open.key.as_slice());
        if behind {
            return Err(out_of_order());
        }
        for i in 1..n {
            match rows.row(i).cmp(&rows.row(i - 1)) {
                std::cmp::Ordering::Greater => starts.push(i as u32),
                std::cmp::Ordering::Equal => {}
                std::cmp::Ordering::Less => return Err(out_of_order()),
            }
        }
        // The group left open by the last batch either goes on in this
        // one's first rows, folded into its own accumulators (a group that
        // spans many batches is never copied), or is complete.
        let mut finished = None;
        let mut new_from = 0;
        if let Some(mut open) = self.open.take() {
            if open.key.as_slice() == rows.row(0).as_ref() {
                new_from = starts.get(1).map_or(n, |&s| s as usize);
                let zeros = vec![0u32; new_from];
                for (acc, arg) in open.accs.iter_mut().zip(&args) {
                    update(acc.as_mut(), &zeros, arg, 0..new_from)?;
                }
                if new_from == n {
                    self.open = Some(open);
                    self.reserve_open()?;
                    return Ok(None);
                }
                starts.remove(0);
            }
            finished = Some(open);
        }
        // Groups that start in this batch, numbered from 0.
        let groups = starts.len();
        let mut ids = Vec::with_capacity(n - new_from);
        let mut g = 0;
        for i in new_from..n {
            if starts.get(g + 1).is_some_and(|&s| s as usize == i) {
                g += 1;
            }
            ids.push(g as u32);
        }
        let mut accs = self.accumulators(groups)?;
        for (acc, arg) in accs.iter_mut().zip(&args) {
            update(acc.as_mut(), &ids, arg, new_from..n)?;
        }
        // The last stays open, with accumulators of its own.
        let last = groups - 1;
        let first_row = starts[last];
        let mut open_accs = self.accumulators(1)?;
        for (acc, all) in open_accs.iter_mut().zip(&mut accs) {
            acc.merge(&[0], &all.state(last..groups)?)?;
        }
        let at = UInt32Array::from(vec![first_row]);
        self.open = Some(OpenGroup {
            key: rows.row(first_row as usize).as_ref().to_vec(),
            key_columns: keys
                .iter()
                .map(|k| Ok(take(k.as_ref(), &at, None)?))
                .collect::<Result<_>>()?,
            accs: open_accs,
        });
        self.reserve_open()?;

        // Out: the group completed before this batch's groups, then every
        // one of them but the last.
        let complete = UInt32Array::from(starts[..last].to_vec());
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (i, k) in keys.iter().enumerate() {
            let here = take(k.as_ref(), &complete, None)?;
            columns.push(match &finished {
                Some(f) => concat(&[f.key_columns[i].as_ref(), here.as_ref()])?,
                None => here,
            });
        }
        for (i, acc) in accs.iter_mut().enumerate() {
            let here = acc.evaluate(0..last)?;
            columns.push(match &mut finished {
                Some(f) => {
                    let before = f.accs[i].evaluate(0..1)?;
                    concat(&[before.as_ref(), here.as_ref()])?
                }
                None => here,
            });
        }
        let count = last + usize::from(finished.is_some());
        if count == 0 {
            return Ok(None);
        }
        Ok(Some(self.batch(columns, count)?))
    }

    /// Reserve what the open group holds.
    fn reserve_open(&mut self) -> Result<()> {
        let held = self.open.as_ref().map_or(0, |open| {
            open.accs.iter().map(|a| a.size()).sum::<usize>() + open.key.len()
        });
        let Err(e) = self.reservation.try_resize(held) else {
            return Ok(());
        };
        // Refused. The state is held already, and pressure refuses even a
        // few bytes (a min of strings whose new value is longer): up to
        // OPEN_STATE_BYTES_MAX it is counted anyway, as a fact. Past that it
        // is one group's state outgrowing what the budget allows.
        if held > OPEN_STATE_BYTES_MAX.min(self.reservation.budget().pool_bytes() / 8) {
            return Err(Error::ResourcesExhausted(format!(
                "GROUP BY over ordered input: one group's state outgrows the memory budget \
                 (a long string_agg or a count(DISTINCT) of one group); raise --memory-limit ({e})"
            )));
        }
        self.reservation.record(held - self.reservation.size());
        Ok(())
    }

    /// The open group, once the input has ended.
    fn close(&mut self) -> Result<Option<RecordBatch>> {
        let Some(mut open) = self.open.take() else {
            return Ok(None);
        };
        let mut columns = open.key_columns;
        for acc in &mut open.accs {
            columns.push(acc.evaluate(0..1)?);
        }
        self.reservation.free();
        Ok(Some(self.batch(columns, 1)?))
    }

    fn batch(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        batch_of(&self.schema, columns, rows)
    }
}

fn out_of_order() -> Error {
    Error::Execution(
        "GROUP BY over input said to be ordered on its keys met a row out of that order \
         (a Parquet file whose sorting_columns metadata does not hold for its rows?)"
            .into(),
    )
}

/// Fold rows `range` of the batch `arg` was taken from into `acc`; `groups`
/// holds the group of each of those rows.
fn update(
    acc: &mut dyn Accumulator,
    groups: &[u32],
    arg: &Argument,
    range: std::ops::Range<usize>,
) -> Result<()> {
    let value = arg
        .value
        .as_ref()
        .map(|v| v.slice(range.start, range.len()));
    match &arg.mask {
        Some(mask) => {
            let mask = mask.slice(range.start, range.len());
            let kept: Vec<u32> = groups
                .iter()
                .zip(mask.values().iter())
                .filter_map(|(&g, keep)| keep.then_some(g))
                .collect();
            let value = value.map(|v| filter(&v, &mask)).transpose()?;
            acc.update(&kept, value.as_ref())
        }
        None => acc.update(groups, value.as_ref()),
    }
}

impl Operator for StreamingAggregate {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while !self.done {
            match self.input.next_batch()? {
                Some(batch) if batch.num_rows() == 0 => continue,
                Some(batch) => {
                    self.ctx.check()?;
                    if let Some(out) = self.fold(&batch)? {
                        return Ok(Some(out));
                    }
                }
                None => {
                    self.done = true;
                    return self.close();
                }
            }
        }
        Ok(None)
    }
}
