//! Window functions over input sorted by partition keys then order keys
//! (the physical plan puts an external sort below): rows are gathered one
//! partition at a time, every call of the window is computed over the
//! partition, and the partition goes out with the results as new columns.
//!
//! Each row's frame is a range of the partition's rows (`frames`): by row
//! offsets (ROWS), by peer groups (GROUPS), or by ORDER BY values (RANGE,
//! found by binary search over the encoded key, since the partition is
//! sorted on it). A frame that starts at the partition's first row reads a
//! running aggregate at its end; any other reads prefix sums, a tree of
//! float sums, or a monotonic queue for min and max (`framed`).
//!
//! Where every call is row_number, rank, dense_rank, or a count, sum,
//! avg, min or max whose frame runs from the partition's start to the row
//! (ROWS UNBOUNDED PRECEDING) or to its last peer (the default with ORDER
//! BY), a row's value depends only on the rows before it and its peers, so a
//! partition goes out in pieces of about a batch. Each piece is computed as
//! if it were a partition, and the values of a piece that goes on a
//! partition start from what the pieces before it left ([`Carry`]: their
//! rows, the last row's ranks and ORDER BY key, whose peer group the piece
//! may go on, and each running aggregate's state). Under the default frame a
//! piece keeps back the open partition's last peer group, whose values wait
//! for the peers later input may add.
//!
//! # Memory
//!
//! A partition is held whole, or, where the calls stream (above), a piece
//! of about a batch and a peer group kept back: its rows are reserved as
//! they come, then again for the one batch they are gathered into, the
//! result columns and the output batches (copies, so that each is counted
//! at its own size). A floor (an eighth of the pool, 256 KB to 2 MB; a
//! quarter, up to 4 MB, where the calls stream) is reserved at creation and
//! used first. A partition the budget cannot hold
//! stops the query with
//! `ResourcesExhausted` (so does one peer group too large, under a running
//! aggregate's default frame); the sort below spills as any sort does.
//! Spilling a partition (for frames that need only nearby rows, lag and
//! lead, or whole-partition aggregates) is not built.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::compute::{concat_batches, interleave, take, take_record_batch, SortOptions};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};

use crate::error::{Error, Result};
use crate::exec::{BoxedOperator, Operator, RunContext};
use crate::memory::Reservation;
use crate::plan::aggregate::AggregateFunction as F;
use crate::plan::window::{Frame, RangeEnd, WindowExpr, WindowFunction};
use crate::spill::compact_views;

/// Window memory reserved at creation and always usable (the floor): a run of small
/// partitions (one per order, say) never has to ask the budget, which the
/// operators around it (a sort below, another window's sort above) may
/// have filled for the moment.
/// An eighth of the operator pool, within these bounds (a quarter, and up
/// to twice the maximum, for a window that streams).
const FLOOR_BYTES_MIN: usize = 256 << 10;
const FLOOR_BYTES_MAX: usize = 2 << 20;

/// Small partitions are computed together once they hold this many rows:
/// enough to spread the cost of a pass, few enough that their copies stay
/// within the floor.
const FLUSH_ROWS: usize = 1024;

pub struct Window {
    ctx: Arc<RunContext>,
    input: BoxedOperator,
    exprs: Vec<WindowExpr>,
    schema: SchemaRef,
    /// Partition keys, encoded to find where partitions change.
    partition: Option<RowConverter>,
    /// The current partition's rows so far, and its key.
    rows: Vec<RecordBatch>,
    /// How many rows `rows` holds: asked after every slice kept, which
    /// are a few rows each where partitions are small.
    held: usize,
    key: Option<OwnedRow>,
    /// Where each held partition starts, in rows from the first held row.
    starts: Vec<usize>,
    /// Bytes held in `rows` and in `out`; the reservation covers their sum
    /// beyond the floor.
    rows_bytes: usize,
    out_bytes: usize,
    reservation: Reservation,
    out: VecDeque<RecordBatch>,
    /// Reserved at creation; see `# Memory`.
    floor: Reservation,
    /// The input batch being split into partitions.
    pending: Option<Pending>,
    done: bool,
    /// Whether every call gives a row its value from the rows before it
    /// and itself (and its peers), so that a partition can go out in
    /// pieces rather than whole; see [`Carry`].
    streams: bool,
    /// Whether a call's value at a row covers the row's peers (a running
    /// aggregate under the default frame): a piece then keeps back the
    /// open partition's last peer group, which later input may go on.
    holds_peers: bool,
    /// Rows the last piece kept back; see [`Window::flush_piece`].
    held_back: usize,
    /// Where the partition that a piece left open stands.
    carry: Option<Carry>,
}

/// What the rows of a partition already sent out leave to the next piece
/// of it: how many they were, and the ranks of the last one, whose peer
/// group the next piece may go on.
struct Carry {
    rows: usize,
    rank: i64,
    dense: i64,
    /// The last row's ORDER BY key (None without ORDER BY: every row of the
    /// partition is then a peer of every other).
    order_key: Option<OwnedRow>,
    /// Each call's running aggregate (None for the others).
    states: Vec<Option<RunState>>,
}

/// How far a piece's first partition goes on from a [`Carry`]: its rows,
/// and how many of them (from the first) are peers of the carried row.
struct Continued<'c> {
    carry: &'c Carry,
    rows: usize,
    peers: usize,
}

impl Continued<'_> {
    /// Row `i`'s value `v` of `func`, counted within its piece, as counted
    /// within its whole partition.
    fn value(&self, func: &WindowFunction, i: usize, v: i64) -> i64 {
        if i >= self.rows {
            return v;
        }
        let c = self.carry;
        let went_on = self.peers > 0;
        match func {
            WindowFunction::Rank { dense: false } if i < self.peers => c.rank,
            WindowFunction::Rank { dense: false } | WindowFunction::RowNumber => c.rows as i64 + v,
            WindowFunction::Rank { dense: true } => c.dense + v - i64::from(went_on),
            _ => v,
        }
    }
}

struct Pending {
    batch: RecordBatch,
    /// Its partition keys, encoded (None without PARTITION BY).
    keys: Option<Rows>,
    /// Its first row not yet taken.
    at: usize,
}

impl Window {
    pub fn new(
        ctx: Arc<RunContext>,
        input: BoxedOperator,
        exprs: Vec<WindowExpr>,
        schema: SchemaRef,
    ) -> Result<Window> {
        let in_schema = input.schema();
        let first = exprs
            .first()
            .ok_or_else(|| Error::Internal("a window without calls".into()))?;
        let partition = if first.partition_by.is_empty() {
            None
        } else {
            let fields = first
                .partition_by
                .iter()
                .map(|e| Ok(SortField::new(e.data_type(&in_schema)?)))
                .collect::<Result<Vec<_>>>()?;
            Some(RowConverter::new(fields)?)
        };
        let streams = exprs.iter().all(|w| match w.func {
            WindowFunction::RowNumber | WindowFunction::Rank { .. } => true,
            WindowFunction::Aggregate(_) => matches!(w.frame, Frame::ToRow | Frame::ToPeers),
            _ => false,
        });
        let holds_peers = exprs.iter().any(|w| {
            matches!(w.func, WindowFunction::Aggregate(_)) && matches!(w.frame, Frame::ToPeers)
        });
        let reservation = ctx.budget.reservation("window partition");
        let mut floor = ctx.budget.reservation("window floor");
        // A window that streams holds a piece and a peer group at most,
        // which a larger floor can cover while the sort below holds the rest
        // (a running sum over SF1 at 32MB asked 0.2 MB beyond an eighth).
        let (share, max) = match streams {
            true => (4, 2 * FLOOR_BYTES_MAX),
            false => (8, FLOOR_BYTES_MAX),
        };
        floor.try_grow((ctx.budget.pool_bytes() / share).clamp(FLOOR_BYTES_MIN, max))?;
        Ok(Window {
            ctx,
            input,
            exprs,
            schema,
            partition,
            rows: Vec::new(),
            held: 0,
            key: None,
            starts: Vec::new(),
            rows_bytes: 0,
            out_bytes: 0,
            reservation,
            out: VecDeque::new(),
            floor,
            pending: None,
            done: false,
            streams,
            holds_peers,
            held_back: 0,
            carry: None,
        })
    }

    /// Reserve what `rows_bytes` and `out_bytes` say is held, beyond the
    /// floor.
    fn cover(&mut self, extra: usize) -> Result<()> {
        let want = (self.rows_bytes + self.out_bytes + extra).saturating_sub(self.floor.size());
        let rows = self.held_rows();
        let streams = self.streams;
        self.reservation.try_resize(want).map_err(|e| {
            Error::ResourcesExhausted(if streams {
                format!(
                    "window: {rows} rows (a piece of a partition and, under a running \
                     aggregate, the peer group it ends in, which is held whole) do not fit \
                     in the memory budget; raise --memory-limit ({e})"
                )
            } else {
                format!(
                    "window: a partition of {rows} rows does not fit in the memory budget, \
                     and windows hold a partition whole (but for row_number, rank, \
                     dense_rank and running aggregates); raise --memory-limit ({e})"
                )
            })
        })
    }

    fn held_rows(&self) -> usize {
        self.held
    }

    /// Keep `rows` of the current partition (or, if `new`, the first of a
    /// new one), and of the partitions that start `later` rows into them,
    /// reserved first.
    fn keep(&mut self, rows: RecordBatch, share: usize, new: bool, later: &[usize]) -> Result<()> {
        self.cover(share)?;
        let at = self.held_rows();
        if new || self.starts.is_empty() {
            self.starts.push(at);
        }
        self.starts.extend(later.iter().map(|l| at + l));
        self.rows_bytes += share;
        self.held += rows.num_rows();
        self.rows.push(rows);
        Ok(())
    }

    /// Take the next run of the pending input batch that belongs to one
    /// partition; when the next row starts a new partition, first compute
    /// the held one. One partition at a time, so that output never piles
    /// up behind a batch of many small partitions.
    fn advance(&mut self) -> Result<()> {
        let Some(mut pending) = self.pending.take() else {
            return Ok(());
        };
        let n = pending.batch.num_rows();
        let bytes = pending.batch.get_array_memory_size();
        let share = |len: usize| bytes * len / n.max(1);
        let start = pending.at;
        let Some(keys) = &pending.keys else {
            // No PARTITION BY: one partition.
            self.keep(
                pending.batch.slice(start, n - start),
                share(n - start),
                false,
                &[],
            )?;
            return self.flush_piece();
        };
        if self
            .key
            .as_ref()
            .is_some_and(|k| k.row() != keys.row(start))
        {
            // The held partitions are complete: compute them once they make
            // a batch (many small partitions go through at once).
            self.key = None;
            if self.rows.is_empty() {
                // A piece of the partition that ended went out last.
                self.carry = None;
            }
            if self.held_rows() >= FLUSH_ROWS {
                self.flush(false)?;
            }
            self.pending = Some(pending);
            return Ok(());
        }
        let run_end = |from: usize| {
            let mut end = from + 1;
            while end < n && keys.row(end) == keys.row(from) {
                end += 1;
            }
            end
        };
        let mut end = run_end(start);
        let new = self.key.is_none();
        // Whole partitions that follow in this batch, up to what is computed
        // together, go in the same slice: one slice (of every column) per
        // partition, gathered again by the flush, was a fifth of the time
        // taken over SF1 lineitem's 1.5M orders of 4 rows.
        let mut later = Vec::new();
        let mut last = start;
        while end < n && self.held_rows() + (end - start) < FLUSH_ROWS {
            last = end;
            later.push(end - start);
            end = run_end(end);
        }
        self.keep(
            pending.batch.slice(start, end - start),
            share(end - start),
            new,
            &later,
        )?;
        self.key = Some(keys.row(last).owned());
        pending.at = end;
        if end < n {
            self.pending = Some(pending);
        }
        self.flush_piece()
    }

    /// With calls that stream, send out what is held once it makes a batch,
    /// the open partition's rows so far among it: memory is then a batch or
    /// so, however large a partition (INTERSECT ALL's row_number over one
    /// value repeated 15k times did not fit at 32MB), unless one peer group
    /// is that large under a running aggregate.
    fn flush_piece(&mut self) -> Result<()> {
        let piece = FLUSH_ROWS.max(self.ctx.config.batch_rows);
        // After keeping rows back, wait for twice as many: a peer group
        // larger than a piece is then gathered again only log-many times.
        if self.streams && self.held_rows() >= piece.max(2 * self.held_back) {
            self.flush(true)?;
        }
        Ok(())
    }

    /// Start splitting an input batch into partitions.
    fn start(&mut self, batch: RecordBatch) -> Result<()> {
        // Views into buffers shared with other batches (the sort's output)
        // would be counted whole for every batch; hold compact copies.
        let batch = compact_views(&batch);
        let keys = match &self.partition {
            Some(converter) => {
                let columns = self.exprs[0]
                    .partition_by
                    .iter()
                    .map(|e| e.evaluate_to_array(&batch))
                    .collect::<Result<Vec<_>>>()?;
                Some(converter.convert_columns(&columns)?)
            }
            None => None,
        };
        self.pending = Some(Pending { batch, keys, at: 0 });
        Ok(())
    }

    /// Compute the held partitions' calls and queue them for output. With
    /// `open`, the last of them goes on in later input (see [`Carry`]).
    fn flush(&mut self, open: bool) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let in_schema = self.input.schema();
        let held = self.rows_bytes;
        // At the peak: the rows, their gathered copy, the result columns
        // (16 bytes a row a call; a value copied by lag/lead or min/max may
        // be longer, which the pool's slack covers), the output copy, and
        // one call's scratch: frame bounds and prefix sums, 64 bytes a row,
        // and for RANGE and GROUPS frames also peer groups and the encoded
        // keys and bounds (two of each, about 24 bytes a value), 192 in all.
        let rows = self.held;
        let results = rows * 16 * self.exprs.len();
        let scratch = if self
            .exprs
            .iter()
            .any(|w| matches!(w.frame, Frame::Range { .. } | Frame::Groups { .. }))
        {
            192
        } else {
            64
        };
        self.cover(held * 2 + results * 2 + rows * scratch)?;
        let mut part = concat_batches(&in_schema, &self.rows)?;
        self.rows.clear();
        self.held = 0;
        self.rows_bytes = 0;
        self.held_back = 0;
        // Partition bounds: each start, then the end.
        let mut bounds = std::mem::take(&mut self.starts);
        bounds.push(part.num_rows());
        let order_keys = self.order_keys(&part)?;
        let mut peers = peers(order_keys.as_ref(), &bounds);
        let mut open = open;
        if open && self.holds_peers {
            // Keep back the open partition's last peer group: its rows'
            // values wait for the peers later input may add.
            let n = part.num_rows();
            let open_start = bounds[bounds.len() - 2];
            let cut = (open_start..n).find(|&i| peers[i] == n - 1).unwrap_or(n);
            // A compact copy: string views taken would keep every buffer
            // of the piece, and be counted at that size.
            let back = compact_views(&take_record_batch(
                &part,
                &UInt32Array::from_iter_values(cut as u32..n as u32),
            )?);
            self.rows_bytes = back.get_array_memory_size();
            self.held = back.num_rows();
            self.rows.push(back);
            self.starts.push(0);
            self.held_back = n - cut;
            if cut == 0 {
                // One peer group so far: nothing can go out yet.
                return self.cover(0);
            }
            part = part.slice(0, cut);
            bounds.pop();
            if open_start < cut {
                bounds.push(cut);
            } else {
                // The open partition is all kept back, and it starts there.
                open = false;
            }
            // The rows before the cut keep their keys' places, and their
            // peers, whose groups all end before it.
            peers.truncate(cut);
        }
        let carry = self.carry.take();
        let continued = carry.as_ref().map(|carry| {
            let went_on = match (&carry.order_key, &order_keys) {
                (Some(last), Some(keys)) => last.row() == keys.row(0),
                _ => true,
            };
            Continued {
                carry,
                rows: bounds[1],
                peers: if went_on { peers[0] + 1 } else { 0 },
            }
        });
        let mut columns = part.columns().to_vec();
        let mut states = Vec::with_capacity(self.exprs.len());
        for (e, w) in self.exprs.iter().enumerate() {
            let column = match &w.func {
                WindowFunction::Aggregate(func) if self.streams => {
                    let init = continued.as_ref().and_then(|c| c.carry.states[e].as_ref());
                    let (column, state) = running_to(w, func, &part, &peers, &bounds, init)?;
                    states.push(Some(state));
                    column
                }
                WindowFunction::RowNumber | WindowFunction::Rank { .. } => {
                    states.push(None);
                    let column = compute(w, &part, &peers, &bounds)?;
                    match &continued {
                        Some(c) => {
                            let values = column.as_primitive::<Int64Type>();
                            Arc::new(Int64Array::from_iter_values(
                                values
                                    .values()
                                    .iter()
                                    .enumerate()
                                    .map(|(i, &v)| c.value(&w.func, i, v)),
                            ))
                        }
                        None => column,
                    }
                }
                _ => {
                    states.push(None);
                    compute(w, &part, &peers, &bounds)?
                }
            };
            columns.push(column);
        }
        if open {
            // The open partition is the last: where its last row stands.
            let n = part.num_rows();
            let (first, last) = (bounds[bounds.len() - 2], n - 1);
            let firsts: Vec<usize> = bounds
                .windows(2)
                .flat_map(|p| std::iter::repeat_n(p[0], p[1] - p[0]))
                .collect();
            let mut rank = ranks(&firsts, &peers, false)[last];
            let mut dense = ranks(&firsts, &peers, true)[last];
            let mut rows = n - first;
            if let Some(c) = continued.as_ref().filter(|_| first == 0) {
                rank = c.value(&WindowFunction::Rank { dense: false }, last, rank);
                dense = c.value(&WindowFunction::Rank { dense: true }, last, dense);
                rows += c.carry.rows;
            }
            self.carry = Some(Carry {
                rows,
                rank,
                dense,
                order_key: order_keys.map(|k| k.row(last).owned()),
                states,
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(part.num_rows()));
        let whole = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        let step = self.ctx.config.batch_rows.max(1);
        let mut at = 0;
        while at < whole.num_rows() {
            let len = step.min(whole.num_rows() - at);
            // A copy, not a slice: a slice would keep the whole partition
            // alive, and an operator above would count (and reserve) every
            // slice at the whole partition's size.
            let rows = UInt32Array::from_iter_values(at as u32..(at + len) as u32);
            let chunk = compact_views(&take_record_batch(&whole, &rows)?);
            self.out_bytes += chunk.get_array_memory_size();
            self.out.push_back(chunk);
            at += len;
        }
        drop(whole);
        // Only the copies are left.
        self.cover(0)?;
        Ok(())
    }

    /// The ORDER BY keys of `part`, encoded (None without ORDER BY).
    fn order_keys(&self, part: &RecordBatch) -> Result<Option<Rows>> {
        let order = &self.exprs[0].order_by;
        if order.is_empty() {
            return Ok(None);
        }
        let schema = part.schema();
        let fields = order
            .iter()
            .map(|k| {
                Ok(SortField::new_with_options(
                    k.expr.data_type(&schema)?,
                    SortOptions {
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let columns = order
            .iter()
            .map(|k| k.expr.evaluate_to_array(part))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RowConverter::new(fields)?.convert_columns(&columns)?))
    }
}

/// Per row: the index of the last row of its peer group (rows of its
/// partition equal on the ORDER BY keys `rows`), or of its partition when
/// there is no ORDER BY. `bounds` are the partitions' starts, then the end.
fn peers(rows: Option<&Rows>, bounds: &[usize]) -> Vec<usize> {
    let n = bounds.last().copied().unwrap_or(0);
    let mut last = vec![0; n];
    for p in bounds.windows(2) {
        let (s, e) = (p[0], p[1]);
        let mut end = e;
        for i in (s..e).rev() {
            if let Some(rows) = rows {
                if i + 1 < e && rows.row(i) != rows.row(i + 1) {
                    end = i + 1;
                }
            }
            last[i] = end - 1;
        }
    }
    last
}

/// One call's column over a partition; `peers[i]` is row i's last peer.
fn compute(
    w: &WindowExpr,
    part: &RecordBatch,
    peers: &[usize],
    bounds: &[usize],
) -> Result<ArrayRef> {
    let n = part.num_rows();
    let arg = w
        .args
        .first()
        .map(|e| e.evaluate_to_array(part))
        .transpose()?;
    // Per row: its partition's first row and the row after its last.
    let mut first = Vec::with_capacity(n);
    let mut stop = Vec::with_capacity(n);
    for p in bounds.windows(2) {
        first.extend(std::iter::repeat_n(p[0], p[1] - p[0]));
        stop.extend(std::iter::repeat_n(p[1], p[1] - p[0]));
    }
    let (lo, hi) = frames(w, part, peers, &first, &stop)?;
    let arg_or = || {
        arg.clone()
            .ok_or_else(|| Error::Internal(format!("{w} without argument")))
    };
    // The argument at row `at(i)` of each row's frame, NULL where `None`.
    let pick = |at: &dyn Fn(usize) -> Option<usize>| -> Result<ArrayRef> {
        let arg = arg_or()?;
        let none = new_null_array(arg.data_type(), 1);
        let at: Vec<(usize, usize)> = (0..n).map(|i| at(i).map_or((1, 0), |j| (0, j))).collect();
        Ok(interleave(&[arg.as_ref(), none.as_ref()], &at)?)
    };
    Ok(match &w.func {
        WindowFunction::RowNumber => Arc::new(Int64Array::from_iter_values(
            (0..n).map(|i| (i - first[i] + 1) as i64),
        )),
        WindowFunction::Rank { dense } => Arc::new(Int64Array::from(ranks(&first, peers, *dense))),
        WindowFunction::PercentRank => {
            let ranks = ranks(&first, peers, false);
            Arc::new(Float64Array::from_iter_values((0..n).map(|i| {
                let rows = stop[i] - first[i];
                if rows > 1 {
                    (ranks[i] - 1) as f64 / (rows - 1) as f64
                } else {
                    0.0
                }
            })))
        }
        WindowFunction::CumeDist => {
            Arc::new(Float64Array::from_iter_values((0..n).map(|i| {
                (peers[i] + 1 - first[i]) as f64 / (stop[i] - first[i]) as f64
            })))
        }
        WindowFunction::Ntile { buckets } => {
            let buckets = *buckets as usize;
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| {
                let (rows, k) = (stop[i] - first[i], i - first[i]);
                // The first `extra` buckets hold `size + 1` rows.
                let (size, extra) = (rows / buckets, rows % buckets);
                let bucket = if k < extra * (size + 1) {
                    k / (size + 1)
                } else {
                    extra + (k - extra * (size + 1)) / size.max(1)
                };
                bucket as i64 + 1
            })))
        }
        WindowFunction::Shift { offset } => {
            let arg = arg_or()?;
            let default = match w.args.get(1) {
                Some(d) => d.evaluate_to_array(part)?,
                None => new_null_array(arg.data_type(), n),
            };
            let at: Vec<(usize, usize)> = (0..n)
                .map(|i| {
                    let j = i as i64 + offset;
                    if (first[i] as i64..stop[i] as i64).contains(&j) {
                        (0, j as usize)
                    } else {
                        (1, i)
                    }
                })
                .collect();
            interleave(&[arg.as_ref(), default.as_ref()], &at)?
        }
        WindowFunction::FirstValue => pick(&|i| (lo[i] < hi[i]).then_some(lo[i]))?,
        WindowFunction::LastValue => pick(&|i| (lo[i] < hi[i]).then(|| hi[i] - 1))?,
        WindowFunction::NthValue { n: nth } => {
            let nth = *nth as usize;
            pick(&|i| (lo[i] + nth - 1 < hi[i]).then(|| lo[i] + nth - 1))?
        }
        WindowFunction::Aggregate(func)
            if matches!(
                w.frame,
                Frame::Rows { .. } | Frame::Range { .. } | Frame::Groups { .. }
            ) =>
        {
            framed(func, arg.as_ref(), w.frame, (&lo, &hi), &w.data_type)?
        }
        WindowFunction::Aggregate(func) => {
            // Every other frame starts at the partition's first row: the
            // running value at the frame's last row is the answer.
            let (running, _) = running(func, arg.as_ref(), &first, &w.data_type, None)?;
            let at: UInt32Array = (0..n).map(|i| (hi[i] - 1) as u32).collect();
            take(running.as_ref(), &at, None)?
        }
    })
}

/// A running aggregate's column over `part` (a piece of partitions, the
/// first going on from `init` if given), and where it stands after the
/// last row: at each row for ROWS UNBOUNDED PRECEDING, at its last peer
/// for the default frame.
fn running_to(
    w: &WindowExpr,
    func: &F,
    part: &RecordBatch,
    peers: &[usize],
    bounds: &[usize],
    init: Option<&RunState>,
) -> Result<(ArrayRef, RunState)> {
    let arg = w
        .args
        .first()
        .map(|e| e.evaluate_to_array(part))
        .transpose()?;
    let first: Vec<usize> = bounds
        .windows(2)
        .flat_map(|p| std::iter::repeat_n(p[0], p[1] - p[0]))
        .collect();
    let (values, state) = running(func, arg.as_ref(), &first, &w.data_type, init)?;
    if !matches!(w.frame, Frame::ToPeers) {
        return Ok((values, state));
    }
    let at: UInt32Array = peers.iter().map(|&p| p as u32).collect();
    Ok((take(values.as_ref(), &at, None)?, state))
}

/// Each row's frame: its first row and the row after its last (empty
/// where the start is not before the end). `first` and `stop` bound each
/// row's partition; `peers[i]` is row i's last peer.
fn frames(
    w: &WindowExpr,
    part: &RecordBatch,
    peers: &[usize],
    first: &[usize],
    stop: &[usize],
) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = first.len();
    // Each row's first peer.
    let first_peer = || -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let at = if i > first[i] && peers[i - 1] == peers[i] {
                out[i - 1]
            } else {
                i
            };
            out.push(at);
        }
        out
    };
    let (lo, hi): (Vec<usize>, Vec<usize>) = match w.frame {
        Frame::ToRow => (first.to_vec(), (1..=n).collect()),
        Frame::ToPeers => (first.to_vec(), peers.iter().map(|p| p + 1).collect()),
        Frame::Partition => (first.to_vec(), stop.to_vec()),
        Frame::Rows { start, end } => (0..n)
            .map(|i| {
                let at = |offset: i64| (i as i64 + offset).clamp(first[i] as i64, stop[i] as i64);
                let lo = start.map_or(first[i], |o| at(o) as usize);
                let hi = end.map_or(stop[i], |o| at(o + 1) as usize);
                (lo, hi)
            })
            .unzip(),
        Frame::Groups { start, end } => {
            // Peer groups numbered across the batch, each with its first
            // row; a partition's groups are consecutive, and the start of
            // the group after its last is its stop (the sentinel for the
            // last partition).
            let starts = first_peer();
            let mut group = Vec::with_capacity(n);
            let mut group_start: Vec<usize> = Vec::new();
            let mut partition_groups = Vec::with_capacity(n);
            for i in 0..n {
                if starts[i] == i {
                    group_start.push(i);
                }
                group.push(group_start.len() - 1);
                if i == first[i] {
                    partition_groups.push(group_start.len() - 1);
                } else {
                    partition_groups.push(partition_groups[i - 1]);
                }
            }
            group_start.push(n);
            (0..n)
                .map(|i| {
                    let g = group[i] as i64;
                    let p_first = partition_groups[i] as i64;
                    // One past the partition's last group.
                    let p_stop = group[stop[i] - 1] as i64 + 1;
                    let at = |k: i64| group_start[k.clamp(p_first, p_stop) as usize];
                    let lo = start.map_or(first[i], |o| at(g + o));
                    let hi = end.map_or(stop[i], |o| at(g + o + 1));
                    (lo, hi)
                })
                .unzip()
        }
        Frame::Range { start, end } => {
            // Values are compared as arrow-row encodes them in the window's
            // order, so DESC and NULLS FIRST/LAST need no cases of their own;
            // the key is cast to its bound's type, which is at least as wide.
            let key = w
                .order_by
                .first()
                .ok_or_else(|| Error::Internal("a RANGE frame without ORDER BY".into()))?;
            let mut bounds = w.range_bounds.iter();
            let mut values = |kind: &str| -> Result<(Rows, Rows)> {
                let Some(bound) = bounds.next() else {
                    return Err(Error::Internal(format!(
                        "a RANGE frame's {kind} value is missing"
                    )));
                };
                let bound = bound.evaluate_to_array(part)?;
                let keys =
                    arrow::compute::cast(&key.expr.evaluate_to_array(part)?, bound.data_type())?;
                let converter = RowConverter::new(vec![SortField::new_with_options(
                    bound.data_type().clone(),
                    SortOptions {
                        descending: key.descending,
                        nulls_first: key.nulls_first,
                    },
                )])?;
                Ok((
                    converter.convert_columns(&[keys])?,
                    converter.convert_columns(&[bound])?,
                ))
            };
            let start_values = match start {
                RangeEnd::Value => Some(values("start")?),
                _ => None,
            };
            let end_values = match end {
                RangeEnd::Value => Some(values("end")?),
                _ => None,
            };
            let starts = first_peer();
            // The first row of row i's partition at or after which `past`
            // stops holding: rows sort in key order, so it is a boundary.
            let search = |i: usize, past: &dyn Fn(usize) -> bool| -> usize {
                let (mut a, mut b) = (first[i], stop[i]);
                while a < b {
                    let mid = (a + b) / 2;
                    if past(mid) {
                        a = mid + 1;
                    } else {
                        b = mid;
                    }
                }
                a
            };
            (0..n)
                .map(|i| {
                    let lo = match (start, &start_values) {
                        (RangeEnd::Unbounded, _) => first[i],
                        (RangeEnd::CurrentRow, _) => starts[i],
                        (RangeEnd::Value, Some((keys, bound))) => {
                            search(i, &|j| keys.row(j) < bound.row(i))
                        }
                        (RangeEnd::Value, None) => first[i],
                    };
                    let hi = match (end, &end_values) {
                        (RangeEnd::Unbounded, _) => stop[i],
                        (RangeEnd::CurrentRow, _) => peers[i] + 1,
                        (RangeEnd::Value, Some((keys, bound))) => {
                            search(i, &|j| keys.row(j) <= bound.row(i))
                        }
                        (RangeEnd::Value, None) => stop[i],
                    };
                    (lo, hi)
                })
                .unzip()
        }
    };
    let hi = hi.into_iter().zip(&lo).map(|(h, &l)| h.max(l)).collect();
    Ok((lo, hi))
}

/// Each row's rank in its partition: peers share the first place of their
/// group; `dense` counts groups instead of rows.
fn ranks(first: &[usize], peers: &[usize], dense: bool) -> Vec<i64> {
    let mut out = Vec::with_capacity(first.len());
    let (mut rank, mut groups) = (0i64, 0i64);
    for i in 0..first.len() {
        if i == first[i] {
            groups = 0;
        }
        if i == first[i] || peers[i - 1] != peers[i] {
            groups += 1;
            rank = if dense {
                groups
            } else {
                (i - first[i]) as i64 + 1
            };
        }
        out.push(rank);
    }
    out
}

/// A float window sum, or its mean over `count` values for avg.
fn sum_or_mean(func: &F, sum: f64, count: i64) -> f64 {
    if *func == F::Avg {
        sum / count as f64
    } else {
        sum
    }
}

/// A window sum (of type `t`) or average from exact sums, NULL where a
/// frame has no value; `counts` are the frames' non-NULL values.
fn sum_or_avg(
    func: &F,
    t: &DataType,
    arg_type: &DataType,
    sums: Vec<Option<i128>>,
    counts: &[i64],
) -> Result<ArrayRef> {
    Ok(match (func, t) {
        (F::Sum, DataType::Int64) => Arc::new(
            sums.iter()
                .map(|s| s.map(i64::try_from).transpose())
                .collect::<std::result::Result<Int64Array, _>>()
                .map_err(|_| Error::Execution("window sum overflows BIGINT".into()))?,
        ),
        (F::Sum, DataType::Decimal128(p, s)) => {
            Arc::new(Decimal128Array::from(sums).with_precision_and_scale(*p, *s)?)
        }
        _ => {
            let scale = match arg_type {
                DataType::Decimal128(_, s) => 10f64.powi(*s as i32),
                _ => 1.0,
            };
            Arc::new(Float64Array::from(
                sums.iter()
                    .zip(counts)
                    .map(|(s, &c)| s.map(|s| s as f64 / scale / c as f64))
                    .collect::<Vec<_>>(),
            ))
        }
    })
}

/// The aggregate over each row's frame `lo[k]..hi[k]` of ROWS offsets.
/// Counts and integer or decimal sums are differences of exact prefix
/// sums. Float sums only ever add, so no rounding is subtracted back out:
/// a frame from the partition's start reads a running sum, one to its end
/// a running sum from the end, and a frame bounded both ways adds its
/// values afresh (its width is a constant of the query). Min and max keep
/// a monotonic queue of candidates, since both frame ends only move
/// forward within a partition.
fn framed(
    func: &F,
    arg: Option<&ArrayRef>,
    frame: Frame,
    (lo, hi): (&[usize], &[usize]),
    t: &DataType,
) -> Result<ArrayRef> {
    let n = lo.len();
    if let F::CountStar = func {
        return Ok(Arc::new(Int64Array::from_iter_values(
            (0..n).map(|i| (hi[i] - lo[i]) as i64),
        )));
    }
    let arg = arg.ok_or_else(|| Error::Internal(format!("{func:?} without argument")))?;
    // Prefix counts of non-NULL values: prefix[k] counts rows before k.
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0i64);
    for i in 0..n {
        prefix.push(prefix[i] + i64::from(arg.is_valid(i)));
    }
    let counts: Vec<i64> = (0..n).map(|i| prefix[hi[i]] - prefix[lo[i]]).collect();
    Ok(match (func, arg.data_type()) {
        (F::Count, _) => Arc::new(Int64Array::from(counts)),
        (F::Sum | F::Avg, DataType::Int64 | DataType::Decimal128(..)) => {
            let value = |i: usize| -> i128 {
                if arg.is_null(i) {
                    return 0;
                }
                match arg.data_type() {
                    DataType::Int64 => arg.as_primitive::<Int64Type>().value(i) as i128,
                    _ => arg.as_primitive::<Decimal128Type>().value(i),
                }
            };
            let mut sums = Vec::with_capacity(n + 1);
            sums.push(0i128);
            for i in 0..n {
                let next = sums[i]
                    .checked_add(value(i))
                    .ok_or_else(|| Error::Execution("window sum overflows 128 bits".into()))?;
                sums.push(next);
            }
            let sums: Vec<Option<i128>> = (0..n)
                .map(|i| (counts[i] > 0).then(|| sums[hi[i]] - sums[lo[i]]))
                .collect();
            sum_or_avg(func, t, arg.data_type(), sums, &counts)?
        }
        (F::Sum | F::Avg, DataType::Float64) => {
            let values = arg.as_primitive::<Float64Type>();
            let value = |j: usize| {
                if values.is_valid(j) {
                    values.value(j)
                } else {
                    0.0
                }
            };
            // running[k]: the sum from k's frame start (when unbounded
            // before) through k, or from k through its frame end (when
            // unbounded after).
            let (from_start, to_end) = match frame {
                Frame::Rows { start: None, .. }
                | Frame::Groups { start: None, .. }
                | Frame::Range {
                    start: RangeEnd::Unbounded,
                    ..
                } => (true, false),
                Frame::Rows { end: None, .. }
                | Frame::Groups { end: None, .. }
                | Frame::Range {
                    end: RangeEnd::Unbounded,
                    ..
                } => (false, true),
                _ => (false, false),
            };
            // A ROWS frame bounded both ways is as wide as the query says;
            // RANGE and GROUPS frames may hold any share of the partition,
            // so their sums come from a tree of partial sums instead.
            let tree = (!from_start && !to_end && !matches!(frame, Frame::Rows { .. }))
                .then(|| SumTree::new((0..n).map(value)));
            let mut running = vec![0.0; n];
            if from_start {
                for j in 0..n {
                    let before = if j > 0 && lo[j] == lo[j - 1] {
                        running[j - 1]
                    } else {
                        0.0
                    };
                    running[j] = before + value(j);
                }
            } else if to_end {
                for j in (0..n).rev() {
                    let after = if j + 1 < n && hi[j] == hi[j + 1] {
                        running[j + 1]
                    } else {
                        0.0
                    };
                    running[j] = after + value(j);
                }
            }
            let out: Float64Array = (0..n)
                .map(|i| {
                    (counts[i] > 0).then(|| {
                        let sum = if from_start {
                            running[hi[i] - 1]
                        } else if to_end {
                            running[lo[i]]
                        } else if let Some(tree) = &tree {
                            tree.sum(lo[i], hi[i])
                        } else {
                            (lo[i]..hi[i]).map(value).sum()
                        };
                        sum_or_mean(func, sum, counts[i])
                    })
                })
                .collect();
            Arc::new(out)
        }
        (F::Min | F::Max, _) => {
            let converter = RowConverter::new(vec![SortField::new(arg.data_type().clone())])?;
            let rows: Rows = converter.convert_columns(std::slice::from_ref(arg))?;
            // Candidates in order, each better than every one before it is
            // not: the front is the frame's best.
            let mut queue: std::collections::VecDeque<usize> = Default::default();
            let mut next = 0;
            let mut at = Vec::with_capacity(n);
            // Frame starts and ends never move back, across partitions too
            // (a partition's frames lie after the one before's): candidates
            // from an earlier partition fall off the front like any other.
            for i in 0..n {
                next = next.max(lo[i]);
                while next < hi[i] {
                    if arg.is_valid(next) {
                        while let Some(&back) = queue.back() {
                            let (new, old) = (rows.row(next), rows.row(back));
                            let beats = if *func == F::Min {
                                new < old
                            } else {
                                new > old
                            };
                            if !beats {
                                break;
                            }
                            queue.pop_back();
                        }
                        queue.push_back(next);
                    }
                    next += 1;
                }
                while queue.front().is_some_and(|&f| f < lo[i]) {
                    queue.pop_front();
                }
                at.push(queue.front().map_or((1, 0), |&b| (0, b)));
            }
            let none = new_null_array(arg.data_type(), 1);
            interleave(&[arg.as_ref(), none.as_ref()], &at)?
        }
        (f, t) => {
            return Err(Error::Internal(format!(
                "window aggregate {f:?} over {t} was not refused by the binder"
            )))
        }
    })
}

/// Sums of any range of values in O(log n) additions, none subtracted: a
/// binary tree whose every node holds the sum of its leaves.
struct SumTree {
    /// Leaves at `width..2 * width`, node k's children at 2k and 2k + 1.
    nodes: Vec<f64>,
    width: usize,
}

impl SumTree {
    fn new(values: impl ExactSizeIterator<Item = f64>) -> Self {
        let width = values.len().max(1);
        let mut nodes = vec![0.0; 2 * width];
        for (k, v) in values.enumerate() {
            nodes[width + k] = v;
        }
        for k in (1..width).rev() {
            nodes[k] = nodes[2 * k] + nodes[2 * k + 1];
        }
        SumTree { nodes, width }
    }

    /// The sum of values `lo..hi`.
    fn sum(&self, lo: usize, hi: usize) -> f64 {
        let (mut a, mut b) = (lo + self.width, hi + self.width);
        let mut sum = 0.0;
        while a < b {
            if a % 2 == 1 {
                sum += self.nodes[a];
                a += 1;
            }
            if b % 2 == 1 {
                b -= 1;
                sum += self.nodes[b];
            }
            a /= 2;
            b /= 2;
        }
        sum
    }
}

/// Where a running aggregate stands after a row: what a piece of a
/// partition that goes on leaves to the next piece (see [`Carry`]).
#[derive(Clone, Default)]
struct RunState {
    /// Rows so far, for count(*).
    rows: i64,
    /// Non-NULL values so far.
    count: i64,
    /// Their sum, for an integer or decimal argument.
    sum: i128,
    /// Their sum, for a float argument.
    float_sum: f64,
    /// The least (min) or greatest (max) value so far, as one value.
    best: Option<ArrayRef>,
}

/// The running value of `func` at each row, from its partition's first row
/// (`first[i]`) on; a partition that starts at row 0 starts from `init`
/// rather than from nothing. Also where it stands after the last row.
fn running(
    func: &F,
    arg: Option<&ArrayRef>,
    first: &[usize],
    t: &DataType,
    init: Option<&RunState>,
) -> Result<(ArrayRef, RunState)> {
    let n = first.len();
    let zero = RunState::default();
    // What row i's partition starts from.
    let from = |i: usize| match init {
        Some(init) if first[i] == 0 => init,
        _ => &zero,
    };
    let rows = |i: usize| (i - first[i] + 1) as i64 + from(i).rows;
    let mut state = RunState {
        rows: n.checked_sub(1).map_or(0, rows),
        ..RunState::default()
    };
    if let F::CountStar = func {
        let out = Int64Array::from_iter_values((0..n).map(rows));
        return Ok((Arc::new(out), state));
    }
    let arg = arg.ok_or_else(|| Error::Internal(format!("{func:?} without argument")))?;
    let valid = |i: usize| arg.is_valid(i);
    let counts: Vec<i64> = (0..n)
        .scan(0i64, |c, i| {
            if i == first[i] {
                *c = from(i).count;
            }
            *c += i64::from(valid(i));
            Some(*c)
        })
        .collect();
    state.count = counts.last().copied().unwrap_or(0);
    let out = match (func, arg.data_type()) {
        (F::Count, _) => Arc::new(Int64Array::from(counts)) as ArrayRef,
        (F::Sum | F::Avg, DataType::Int64 | DataType::Decimal128(..)) => {
            let value = |i: usize| -> i128 {
                match arg.data_type() {
                    DataType::Int64 => arg.as_primitive::<Int64Type>().value(i) as i128,
                    _ => arg.as_primitive::<Decimal128Type>().value(i),
                }
            };
            let mut sum = 0i128;
            let mut sums = Vec::with_capacity(n);
            for i in 0..n {
                if i == first[i] {
                    sum = from(i).sum;
                }
                if valid(i) {
                    sum = sum
                        .checked_add(value(i))
                        .ok_or_else(|| Error::Execution("window sum overflows 128 bits".into()))?;
                }
                sums.push((counts[i] > 0).then_some(sum));
            }
            state.sum = sum;
            sum_or_avg(func, t, arg.data_type(), sums, &counts)?
        }
        (F::Sum | F::Avg, DataType::Float64) => {
            let values = arg.as_primitive::<Float64Type>();
            let mut sum = 0.0;
            let out: Float64Array = (0..n)
                .map(|i| {
                    if i == first[i] {
                        sum = from(i).float_sum;
                    }
                    if valid(i) {
                        sum += values.value(i);
                    }
                    (counts[i] > 0).then(|| sum_or_mean(func, sum, counts[i]))
                })
                .collect();
            state.float_sum = sum;
            Arc::new(out)
        }
        (F::Min | F::Max, _) => {
            // Compare in arrow-row bytes, which order every type. The value
            // carried in from an earlier piece is the third source.
            let converter = RowConverter::new(vec![SortField::new(arg.data_type().clone())])?;
            let rows: Rows = converter.convert_columns(std::slice::from_ref(arg))?;
            let carried = match init.and_then(|s| s.best.clone()) {
                Some(best) => best,
                None => new_null_array(arg.data_type(), 1),
            };
            let carried_rows = converter.convert_columns(std::slice::from_ref(&carried))?;
            // (source, row): 0 = arg, 1 = NULL, 2 = carried.
            let mut best: Option<(usize, usize)> = None;
            let at: Vec<(usize, usize)> = (0..n)
                .map(|i| {
                    if i == first[i] {
                        best = (first[i] == 0 && carried.is_valid(0)).then_some((2, 0));
                    }
                    if valid(i) {
                        let better = best.is_none_or(|(source, b)| {
                            let old = match source {
                                2 => carried_rows.row(0),
                                _ => rows.row(b),
                            };
                            let new = rows.row(i);
                            if *func == F::Min {
                                new < old
                            } else {
                                new > old
                            }
                        });
                        if better {
                            best = Some((0, i));
                        }
                    }
                    best.unwrap_or((1, 0))
                })
                .collect();
            let none = new_null_array(arg.data_type(), 1);
            let out = interleave(&[arg.as_ref(), none.as_ref(), carried.as_ref()], &at)?;
            // A copy: a slice would keep the whole column.
            state.best = n
                .checked_sub(1)
                .map(|last| take(out.as_ref(), &UInt32Array::from(vec![last as u32]), None))
                .transpose()?;
            out
        }
        (f, t) => {
            return Err(Error::Internal(format!(
                "window aggregate {f:?} over {t} was not refused by the binder"
            )))
        }
    };
    Ok((out, state))
}

impl Operator for Window {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(batch) = self.out.pop_front() {
                return Ok(Some(batch));
            }
            // The queued partitions are out: their memory can go.
            if self.out_bytes > 0 {
                self.out_bytes = 0;
                self.cover(0)?;
            }
            if self.done {
                return Ok(None);
            }
            if self.pending.is_some() {
                self.advance()?;
                continue;
            }
            match self.input.next_batch()? {
                Some(batch) => {
                    self.ctx.check()?;
                    self.start(batch)?;
                }
                None => {
                    self.flush(false)?;
                    self.done = true;
                }
            }
        }
    }
}
