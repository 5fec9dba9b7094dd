//! GROUP BY on several threads, in one of two ways, chosen from the first
//! rows of the input.
//!
//! - **Dealt by key**, for many groups. The calling thread hashes each
//!   batch's keys and hands each worker (an [`Aggregate`] on its own
//!   thread) the rows that are its own. A group's rows all go to one
//!   worker, so the workers' groups never overlap: the output is the
//!   workers' batches as each is ready, with nothing to merge. Each worker
//!   spills as a lone aggregate would; once the input is read, the workers
//!   merge all their spilled partitions from one pool, each taking the
//!   next ([`Aggregate::share_partitions`]). The hash is seeded apart from
//!   the group tables' own, so that a worker's keys still spread over all
//!   of its table. Once every worker passes its rows through to its
//!   partitions (about a row a group), the rest of the input is *scattered*:
//!   whole batches go to whichever worker has room, and partition `p` of
//!   every worker is merged as one ([`super::PartitionPool`]). Dealing by
//!   key had only kept the workers' partitions apart, at the cost of
//!   hashing and copying every row on the dealing thread: scattered, the
//!   bench's SELECT DISTINCT (SF1, 256MB) went from 1.13 to 1.00 s
//!   (medians of 5), and at SF10 from 15.7 to 14.5 s.
//! - **Two-phase**, for few groups or none. Whole batches go to whichever
//!   worker has room; each folds them into partial states
//!   ([`Mode::Partial`]), and one [`Mode::Final`] aggregate on the calling
//!   thread merges what the workers write. The calling thread then only
//!   reads the input. Dealt by key, TPC-H Q1's four groups sent most rows
//!   to one worker, and the calling thread spent as long encoding keys to
//!   deal them as the workers did aggregating.
//!
//! The choice: the first `--batch-rows` rows or more are encoded and their
//! distinct keys counted. Two-phase when there is at most one key in
//! [`REDUCTION_MIN`] rows: each partial table then holds few groups next
//! to the rows it reads, and the final merge reads little. An aggregate
//! with DISTINCT, string_agg or a quantile is always dealt by key: their
//! partial states are no smaller than their rows (see [`folds`]).
//! A wrong guess (few keys first, many later) costs time and memory, not
//! correctness: partial tables and the final one spill as any table does.
//!
//! # Memory
//!
//! - Each worker is an [`Aggregate`] with its own reservations from the
//!   shared budget, and so is the final merge; what one holds, the others
//!   cannot.
//! - Batches in flight: the sample that picks the way (at most
//!   `--batch-rows` rows and one batch more), then at most
//!   [`QUEUE_BATCHES_MAX`] waiting for each worker on the way in, and as
//!   many results on the way out, each of at most `--batch-rows` rows (or
//!   groups of partial state).
//! - Scattered, a merge takes partition `p` of every worker at once. Rows
//!   pass through to twice as many partitions in a worker, so that such a
//!   merge holds about what one worker's did; each worker reserves the
//!   writers for them when it starts, where the budget grants them
//!   (otherwise its rows pass through to a spill's partitions, and the
//!   merges are twice the size, split one level down where refused).
//! - Under a large limit the input queues are deeper, up to
//!   [`QUEUE_BATCHES_DEEP`] batches, [`QUEUE_BYTES_DEEP`] in all and a
//!   [`QUEUE_POOL_SHARE`]th of the operator pool, and what they hold is
//!   reserved ("aggregate queue") until each worker's input ends; if the
//!   budget refuses, they stay shallow.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::{Array, ArrayRef, AsArray, GenericByteViewArray, RecordBatch, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::take_record_batch;
use arrow::datatypes::{ByteViewType, DataType, SchemaRef};
use arrow::row::RowConverter;

use crate::analyze;
use crate::error::{Error, Result};
use crate::exec::aggregate::{group_keys, key_fields, Aggregate, Mode, SharedPartitions};
use crate::exec::{BoxedOperator, Operator, RunContext};
use crate::memory::{Reservation, LARGE_LIMIT_BYTES};
use crate::plan::aggregate::{AggregateExpr, AggregateFunction as F};
use crate::plan::Expr;

/// Batches queued for one worker, or from it, unless the queues are
/// deepened (see [`ParallelAggregate::queues`]).
pub const QUEUE_BATCHES_MAX: usize = 2;

/// Batches queued for one worker at most, under a large limit. Dealt by
/// key, every batch gives each worker a part, so the dealer runs ahead of
/// the slowest worker by a queue at most: two batches deep, whichever
/// worker paused (to grow its table, say) held the dealer up while the
/// other one ran dry. In the bench's GROUP BY at 256MB the dealer waited
/// 0.35 to 0.40 s for room and the workers 0.7 to 1.0 s for input (summed);
/// 8 deep, 0.11 to 0.16 s and 0.33 to 0.49 s, and the run took 0.78 to
/// 0.83 s instead of 1.14 to 1.25. By medians of five: 4 deep, 0.89 s;
/// 16 deep, 0.81 s; 32 deep, 0.82 s.
pub const QUEUE_BATCHES_DEEP: usize = 16;

/// Bytes all the workers' input queues hold at most when deepened: wide
/// rows get fewer batches a queue, never fewer than [`QUEUE_BATCHES_MAX`].
const QUEUE_BYTES_DEEP: usize = 8 << 20;

/// And at most this fraction of the operator pool: what the queues take,
/// the tables cannot have. At 200MB (a 98 MB pool) queues of 6 MB made the
/// bench's GROUP BY spill 21 MB and take 1.26 s; of 3 MB (a 32nd), it did
/// not spill and took 0.94 s.
const QUEUE_POOL_SHARE: usize = 32;

/// Input rows per distinct key in the sample, at least, for the two-phase
/// way. The bench's GROUP BY (800k groups in 6M rows) has about one key a
/// row in a sample; TPC-H Q1, Q5, Q9 and Q12 have a few hundred keys at
/// most, a sample of thousands of rows.
pub const REDUCTION_MIN: usize = 16;

/// A seed for the dealing hash unlike any group table's (those use small
/// seeds: the partition level).
const DEAL_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Whether `group` and `aggregates` may run here at all: without GROUP BY
/// only the two-phase way can share the work, and that is taken only when
/// every aggregate [`folds`].
pub fn suits(group: &[Expr], aggregates: &[AggregateExpr]) -> bool {
    !group.is_empty() || aggregates.iter().all(folds)
}

/// Whether a partial state of `a` is smaller than the rows folded into it.
/// Not for DISTINCT, whose state keeps each value seen, nor for string_agg
/// and quantiles, whose state is every value: in two phases each worker
/// would hold a share of every group's values, and the final merge all of
/// them again while the last worker still holds its share.
pub fn folds(a: &AggregateExpr) -> bool {
    !a.distinct && !matches!(a.func, F::StringAgg { .. } | F::Quantile { .. })
}

pub struct ParallelAggregate {
    ctx: Arc<RunContext>,
    input: Option<BoxedOperator>,
    group: Vec<Expr>,
    aggregates: Vec<AggregateExpr>,
    schema: SchemaRef,
    workers: usize,
    converter: RowConverter,
    hasher: ahash::RandomState,
    /// The way taken, once the sample is read.
    mode: Option<Way>,
    /// The result, once the input is dealt out: the workers' output, or
    /// the final merge of it.
    output: Option<BoxedOperator>,
    /// Set when this operator stops early: workers still reading input
    /// then stop with an error instead of finishing their aggregation.
    cancelled: Arc<AtomicBool>,
    /// The partitions the workers spill, dealt by key.
    pool: SharedPartitions,
}

/// How the rows are shared out; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    DealtByKey,
    TwoPhase,
}

type Batch = Result<RecordBatch>;

impl ParallelAggregate {
    /// An aggregate over `input` on `workers` threads (at least 2).
    pub fn new(
        ctx: Arc<RunContext>,
        input: BoxedOperator,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
        schema: SchemaRef,
        workers: usize,
    ) -> Result<ParallelAggregate> {
        let fields = key_fields(&group, &input.schema())?;
        Ok(ParallelAggregate {
            ctx,
            input: Some(input),
            group,
            aggregates,
            schema,
            workers: workers.max(2),
            converter: RowConverter::new(fields)?,
            hasher: ahash::RandomState::with_seeds(DEAL_SEED, !DEAL_SEED, DEAL_SEED << 1, 7),
            mode: None,
            output: None,
            cancelled: Arc::new(AtomicBool::new(false)),
            pool: SharedPartitions::default(),
        })
    }

    /// Take `way` whatever the sample says: a test's way to reach both with
    /// any input.
    #[cfg(test)]
    pub fn forced(mut self, way: Way) -> ParallelAggregate {
        self.mode = Some(way);
        self
    }

    /// The way taken, once the first batch has been asked for.
    pub fn way(&self) -> Option<Way> {
        self.mode
    }

    /// Whether the dealer went on to scatter whole batches, every worker
    /// passing rows through (see [`ParallelAggregate::deal_by_key`]).
    #[cfg(test)]
    pub fn scattered(&self) -> bool {
        self.pool.is_scattered().unwrap_or(false)
    }

    /// The deepest level of spilled partitions the workers merged.
    #[cfg(test)]
    pub fn deepest_level(&self) -> u32 {
        self.pool.deepest_level()
    }

    /// Read the sample, pick the way, start the workers and deal them the
    /// whole input; then set `output`.
    fn start(&mut self, mut input: BoxedOperator) -> Result<()> {
        let in_schema = input.schema();
        let mut sample = Vec::new();
        let way = if let Some(way) = self.mode {
            way
        } else if self.group.is_empty() {
            Way::TwoPhase
        } else if !self.aggregates.iter().all(folds) {
            Way::DealtByKey
        } else {
            let mut rows = 0;
            let mut keys = HashSet::new();
            while rows < self.ctx.config.batch_rows.max(1) {
                let Some(batch) = input.next_batch()? else {
                    break;
                };
                self.ctx.check()?;
                let encoded = self
                    .converter
                    .convert_columns(&group_keys(&self.group, &batch)?)?;
                keys.extend(encoded.iter().map(|k| self.hasher.hash_one(k.as_ref())));
                rows += batch.num_rows();
                sample.push(batch);
            }
            if keys.len() * REDUCTION_MIN <= rows {
                Way::TwoPhase
            } else {
                Way::DealtByKey
            }
        };
        self.mode = Some(way);
        analyze::note(match way {
            Way::DealtByKey => "threads=dealt-by-key",
            Way::TwoPhase => "threads=two-phase",
        });
        let worker_mode = match way {
            Way::DealtByKey => Mode::Single,
            Way::TwoPhase => Mode::Partial,
        };
        // The final merge first, so that its spill buffers and table floor
        // are reserved before the partial tables fill the pool.
        let mut merge = match way {
            Way::DealtByKey => None,
            Way::TwoPhase => Some(Aggregate::with_mode(
                self.ctx.clone(),
                Mode::Final,
                Box::new(Gather::default()),
                &in_schema,
                self.group.clone(),
                self.aggregates.clone(),
                self.schema.clone(),
            )?),
        };
        // Workers before their queues' senders: on an early return the
        // queues close first, so that no worker waits for input while it
        // is joined.
        if sample.is_empty() {
            // One batch to size the queues by.
            sample.extend(input.next_batch()?);
        }
        let queues = self.queues(&sample, way);
        let (results, outbox) = sync_channel(QUEUE_BATCHES_MAX * self.workers);
        let mut workers = Workers {
            results: outbox,
            handles: Vec::with_capacity(self.workers),
        };
        let mut senders = Vec::with_capacity(self.workers);
        let dealt = self
            .spawn(
                worker_mode,
                queues,
                &in_schema,
                results,
                &mut workers,
                &mut senders,
            )
            .and_then(|()| match way {
                Way::DealtByKey => self.deal_by_key(sample, input, &senders, &workers),
                Way::TwoPhase => self.deal_batches(sample, input, &senders, &workers),
            });
        if let Err(e) = dealt {
            // Before the queues close, so that no worker takes the end of
            // its queue for the end of the input.
            self.cancelled.store(true, Ordering::Relaxed);
            return Err(e);
        }
        drop(senders);
        let gather = Box::new(Gather {
            schema: match &merge {
                None => self.schema.clone(),
                Some(merge) => merge.state_schema(),
            },
            workers: Some(workers),
            cancelled: Some(self.cancelled.clone()),
        });
        self.output = Some(match merge.take() {
            None => gather,
            Some(mut merge) => {
                merge.set_input(gather);
                Box::new(merge)
            }
        });
        Ok(())
    }

    /// How many batches each worker's input queue holds, and the
    /// reservation for each queue. Under a large limit the queues are
    /// deepened ([`QUEUE_BATCHES_DEEP`], bounded by [`QUEUE_BYTES_DEEP`]
    /// and [`QUEUE_POOL_SHARE`]) if the budget grants their bytes, which
    /// are sized from the batches of `sample`; otherwise they keep
    /// [`QUEUE_BATCHES_MAX`] and reserve nothing, as batches in flight
    /// anywhere else do.
    fn queues(&self, sample: &[RecordBatch], way: Way) -> Queues {
        let shallow = Queues {
            depth: QUEUE_BATCHES_MAX,
            shares: Vec::new(),
        };
        let rows: usize = sample.iter().map(|b| b.num_rows()).sum();
        if self.ctx.budget.limit_bytes() < LARGE_LIMIT_BYTES || rows == 0 {
            return shallow;
        }
        let bytes: usize = sample.iter().map(|b| b.get_array_memory_size()).sum();
        // Dealt by key, a worker's part of a batch is its share of the rows.
        let part_rows = match way {
            Way::DealtByKey => self.ctx.config.batch_rows.div_ceil(self.workers),
            Way::TwoPhase => self.ctx.config.batch_rows,
        };
        let part_bytes = (bytes / rows).max(1) * part_rows.max(1);
        let queue_bytes = QUEUE_BYTES_DEEP.min(self.ctx.budget.pool_bytes() / QUEUE_POOL_SHARE);
        let depth = (queue_bytes / (part_bytes * self.workers))
            .clamp(QUEUE_BATCHES_MAX, QUEUE_BATCHES_DEEP);
        if depth == QUEUE_BATCHES_MAX {
            return shallow;
        }
        let mut all = self.ctx.budget.reservation("aggregate queues");
        if all.try_grow(depth * part_bytes * self.workers).is_err() {
            return shallow;
        }
        let shares = (0..self.workers)
            .map(|_| all.split(depth * part_bytes, "aggregate queue"))
            .collect();
        Queues { depth, shares }
    }

    /// Start one [`Aggregate`] in `mode` per worker thread, each reading
    /// from a queue of `queues.depth` batches (holding one of its shares,
    /// if there are any) and sending its output into `results`.
    fn spawn(
        &mut self,
        mode: Mode,
        mut queues: Queues,
        in_schema: &SchemaRef,
        results: SyncSender<Batch>,
        workers: &mut Workers,
        senders: &mut Vec<SyncSender<Batch>>,
    ) -> Result<()> {
        let node = analyze::current();
        let mut aggregates = Vec::with_capacity(self.workers);
        for _ in 0..self.workers {
            let (sender, receiver) = sync_channel(queues.depth);
            senders.push(sender);
            let queue = Box::new(Queue {
                schema: in_schema.clone(),
                receiver,
                cancelled: self.cancelled.clone(),
                reservation: queues.shares.pop(),
            });
            aggregates.push(Aggregate::with_mode(
                self.ctx.clone(),
                mode,
                queue,
                in_schema,
                self.group.clone(),
                self.aggregates.clone(),
                self.schema.clone(),
            )?);
        }
        // Shared once every worker has reserved what it must: sharing
        // reserves more where the budget grants it.
        for mut aggregate in aggregates {
            if mode == Mode::Single {
                // Dealt by key: no group is in two workers' partitions.
                aggregate.share_partitions(self.pool.clone());
            }
            let results = PanicNotice(results.clone());
            let node = node.clone();
            let handle = std::thread::Builder::new()
                .name("highwater-aggregate".into())
                .spawn(move || {
                    analyze::enter(node);
                    loop {
                        let next = aggregate.next_batch().transpose();
                        let Some(next) = next else { return };
                        let failed = next.is_err();
                        if results.0.send(next).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(|e| {
                    Error::ResourcesExhausted(format!("cannot start an aggregate thread: {e}"))
                })?;
            workers.handles.push(handle);
        }
        Ok(())
    }

    /// Deal every row to the worker its key hashes to.
    fn deal_by_key(
        &mut self,
        sample: Vec<RecordBatch>,
        mut input: BoxedOperator,
        senders: &[SyncSender<Batch>],
        workers: &Workers,
    ) -> Result<()> {
        let count = senders.len() as u64;
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); senders.len()];
        let mut hashes = Vec::new();
        let mut sample = sample.into_iter();
        while let Some(batch) = next_input(&mut sample, input.as_mut())? {
            self.ctx.check()?;
            if self.pool.passing() == senders.len() {
                // Every worker passes its rows through to its partitions,
                // which it merges once the input ends: dealing by key
                // spares nothing later, and cost the dealing thread 7% of
                // the bench's SELECT DISTINCT (hashing, and copying each
                // worker its rows). From here whole batches go to
                // whichever worker has room, and partition p of every
                // worker is merged as one.
                self.pool.scatter(senders.len())?;
                analyze::note("then batches scattered");
                let rest = std::iter::once(batch).chain(sample).collect();
                return self.deal_batches(rest, input, senders, workers);
            }
            let keys = group_keys(&self.group, &batch)?;
            self.deal_hashes(&keys, batch.num_rows(), &mut hashes)?;
            for rows in rows_of.iter_mut() {
                rows.clear();
            }
            for (i, hash) in hashes.iter().enumerate() {
                // The high 32 bits, scaled to 0..count by a multiply and a
                // shift, not by `%`: the division was 29% of this
                // operator's own samples in the bench's GROUP BY (perf
                // annotate).
                let w = (((hash >> 32) * count) >> 32) as usize;
                rows_of[w].push(i as u32);
            }
            for (rows, sender) in rows_of.iter_mut().zip(senders) {
                if rows.is_empty() {
                    continue;
                }
                let part = if rows.len() == batch.num_rows() {
                    batch.clone()
                } else {
                    let indices = UInt32Array::from(std::mem::take(rows));
                    take_record_batch(&batch, &indices)?
                };
                if sender.send(Ok(part)).is_err() {
                    return Err(workers.failure());
                }
            }
        }
        Ok(())
    }

    /// The hash each of `rows` rows is dealt by, from its group `keys`,
    /// into `out`. Keys that are all of fixed-width primitive types (ints,
    /// floats, decimals, dates, times) or string and binary views are
    /// hashed from their values, a multiply a word ([`mix`]); any other key
    /// is row-encoded and its bytes hashed. Encoding and hashing every row
    /// took the dealing thread, which also decodes the input, 3.3% of the
    /// bench GROUP BY's samples, and the workers waited for it; for the
    /// bench's SELECT DISTINCT, with a string key, it was 4% of all
    /// samples.
    fn deal_hashes(&self, keys: &[ArrayRef], rows: usize, out: &mut Vec<u64>) -> Result<()> {
        out.clear();
        let ways: Option<Vec<Mix>> = keys
            .iter()
            .map(|k| match k.data_type() {
                DataType::Utf8View => Some(Mix::Utf8View),
                DataType::BinaryView => Some(Mix::BinaryView),
                t => t
                    .primitive_width()
                    .filter(|_| t.is_primitive())
                    .map(Mix::Fixed),
            })
            .collect();
        let Some(ways) = ways else {
            let encoded = self.converter.convert_columns(keys)?;
            out.extend(encoded.iter().map(|k| self.hasher.hash_one(k.as_ref())));
            return Ok(());
        };
        out.resize(rows, DEAL_SEED);
        for (key, way) in keys.iter().zip(ways) {
            let width = match way {
                Mix::Utf8View => {
                    mix_views(key.as_string_view(), |v: &str| v.as_bytes(), out);
                    continue;
                }
                Mix::BinaryView => {
                    mix_views(key.as_binary_view(), |v: &[u8]| v, out);
                    continue;
                }
                Mix::Fixed(width) => width,
            };
            let data = key.to_data();
            let start = data.offset() * width;
            let values = &data.buffers()[0].as_slice()[start..start + rows * width];
            let nulls = data.nulls().filter(|n| n.null_count() > 0);
            match width {
                1 => mix_column::<1>(values, nulls, out),
                2 => mix_column::<2>(values, nulls, out),
                4 => mix_column::<4>(values, nulls, out),
                8 => mix_column::<8>(values, nulls, out),
                16 => mix_column::<16>(values, nulls, out),
                _ => mix_column::<32>(values, nulls, out),
            }
        }
        for h in out.iter_mut() {
            *h = finish(*h);
        }
        Ok(())
    }

    /// Hand each batch whole to the next worker with room in its queue, or
    /// wait for the next in turn when none has.
    fn deal_batches(
        &mut self,
        sample: Vec<RecordBatch>,
        mut input: BoxedOperator,
        senders: &[SyncSender<Batch>],
        workers: &Workers,
    ) -> Result<()> {
        let mut turn = 0;
        let mut sample = sample.into_iter();
        while let Some(batch) = next_input(&mut sample, input.as_mut())? {
            self.ctx.check()?;
            let mut unsent = Some(Ok(batch));
            for i in 0..senders.len() {
                let w = (turn + i) % senders.len();
                let Some(batch) = unsent.take() else { break };
                match senders[w].try_send(batch) {
                    Ok(()) => turn = w + 1,
                    Err(TrySendError::Full(back)) => unsent = Some(back),
                    Err(TrySendError::Disconnected(_)) => return Err(workers.failure()),
                }
            }
            if let Some(batch) = unsent {
                let w = turn % senders.len();
                if senders[w].send(batch).is_err() {
                    return Err(workers.failure());
                }
                turn = w + 1;
            }
        }
        Ok(())
    }
}

impl Operator for ParallelAggregate {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(input) = self.input.take() {
            if let Err(e) = self.start(input) {
                self.cancelled.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        let Some(output) = &mut self.output else {
            return Ok(None);
        };
        let next = output.next_batch();
        if next.is_err() {
            self.cancelled.store(true, Ordering::Relaxed);
        }
        next
    }
}

impl Drop for ParallelAggregate {
    /// Stop the workers (their input ends with an error, their output is
    /// closed) and wait for them, so that none outlives the run's spill
    /// directory.
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.output = None;
    }
}

/// The workers' output, each batch as soon as any worker has it ready.
/// In turn, one worker's output after another, the others stopped with
/// their queues full: dealt by key, where the workers merge spilled
/// partitions after the input ends, those merges then ran one at a time
/// (the bench's SELECT DISTINCT took 1.87 s at 256MB that way).
struct Gather {
    schema: SchemaRef,
    /// None for the stand-in that a final merge holds before the workers
    /// start, and once they are all done.
    workers: Option<Workers>,
    cancelled: Option<Arc<AtomicBool>>,
}

impl Default for Gather {
    /// No workers: an empty input.
    fn default() -> Gather {
        Gather {
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            workers: None,
            cancelled: None,
        }
    }
}

/// Fold into each hash of `out` its row's value of a column of `W`-byte
/// values, 8 bytes at a time.
fn mix_column<const W: usize>(values: &[u8], nulls: Option<&NullBuffer>, out: &mut [u64]) {
    let rows = out.iter_mut().zip(values.chunks_exact(W));
    match nulls {
        None => rows.for_each(|(h, v)| *h = mix_bytes(*h, v)),
        // A NULL's bytes are anything: every NULL is folded in as one word
        // instead, which a value may share (that only deals both to the
        // same worker).
        Some(nulls) => {
            for (i, (h, v)) in rows.enumerate() {
                *h = if nulls.is_null(i) {
                    mix(*h, NULL_WORD)
                } else {
                    mix_bytes(*h, v)
                };
            }
        }
    }
}

/// How a key column is folded into the dealing hash without encoding it.
enum Mix {
    /// Values of this many bytes each ([`mix_column`]).
    Fixed(usize),
    /// String or binary views, by their bytes ([`mix_views`]).
    Utf8View,
    BinaryView,
}

/// Fold into each hash of `out` its row's value of a string or binary view
/// column: its length, then its bytes 8 at a time. The bytes rather than
/// the views, which also hold where a long value is stored.
fn mix_views<T: ByteViewType + ?Sized>(
    column: &GenericByteViewArray<T>,
    bytes: impl Fn(&T::Native) -> &[u8],
    out: &mut [u64],
) {
    for (i, h) in out.iter_mut().enumerate() {
        *h = if column.is_null(i) {
            mix(*h, NULL_WORD)
        } else {
            let value = bytes(column.value(i));
            mix_bytes(mix(*h, value.len() as u64), value)
        };
    }
}

/// `h` with `bytes` folded in, 8 at a time (the last word zero-padded).
fn mix_bytes(h: u64, bytes: &[u8]) -> u64 {
    bytes.chunks(8).fold(h, |h, word| {
        let mut padded = [0u8; 8];
        padded[..word.len()].copy_from_slice(word);
        mix(h, u64::from_le_bytes(padded))
    })
}

/// What a NULL key value is hashed as.
const NULL_WORD: u64 = 0x6e75_6c6c;

/// `h` with one word of a key folded in. Multiplying by an odd constant
/// spreads each bit upward only; [`finish`] then brings the high bits
/// down, so that both halves of the hash depend on every bit of the key.
fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The avalanche step of MurmurHash3's 64-bit finalizer.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The next batch: what the sample kept first, then the rest of `input`.
fn next_input(
    sample: &mut std::vec::IntoIter<RecordBatch>,
    input: &mut dyn Operator,
) -> Result<Option<RecordBatch>> {
    match sample.next() {
        Some(batch) => Ok(Some(batch)),
        None => input.next_batch(),
    }
}

impl Operator for Gather {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(workers) = &mut self.workers else {
            return Ok(None);
        };
        match workers.results.recv() {
            Ok(Ok(batch)) => Ok(Some(batch)),
            Ok(Err(e)) => {
                self.cancel();
                Err(e)
            }
            // Every worker is done: each has dropped its sender.
            Err(_) => {
                for handle in workers.handles.drain(..) {
                    handle
                        .join()
                        .map_err(|_| Error::Internal("an aggregate thread panicked".into()))?;
                }
                self.workers = None;
                Ok(None)
            }
        }
    }
}

impl Gather {
    fn cancel(&self) {
        if let Some(cancelled) = &self.cancelled {
            cancelled.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Gather {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The worker threads and the one queue of their output.
struct Workers {
    results: Receiver<Batch>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Why a worker stopped taking input: the first error any worker
    /// sent. While the input is dealt, no worker sends anything else: each
    /// emits only once its input has ended.
    fn failure(&self) -> Error {
        loop {
            match self.results.recv() {
                Ok(Err(e)) => return e,
                Ok(Ok(_)) => continue,
                Err(_) => return Error::Internal("an aggregate thread stopped".into()),
            }
        }
    }
}

impl Drop for Workers {
    /// Close the workers' output, so that each stops at its next batch,
    /// and wait for them.
    fn drop(&mut self) {
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.results, closed));
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// A worker's end of the output queue, which says so there if the worker
/// panics: the queue is shared, so the worker's leaving does not close it,
/// and a dealer waiting in [`Workers::failure`] for its error would wait
/// for the others, which wait for input.
struct PanicNotice(SyncSender<Batch>);

impl Drop for PanicNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self
                .0
                .try_send(Err(Error::Internal("an aggregate thread panicked".into())));
        }
    }
}

/// The workers' input queues: how many batches each holds, and, when
/// deepened, each one's reservation.
struct Queues {
    depth: usize,
    shares: Vec<Reservation>,
}

/// A worker's input: the rows dealt to it.
struct Queue {
    schema: SchemaRef,
    receiver: Receiver<Batch>,
    cancelled: Arc<AtomicBool>,
    /// What a deepened queue holds, reserved until its input ends.
    reservation: Option<Reservation>,
}

impl Operator for Queue {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let next = self.receiver.recv();
        if next.is_err() {
            // Nothing is queued any more.
            self.reservation = None;
        }
        match next {
            Ok(batch) => batch.map(Some),
            // The dealer is gone: the input ended, or the run failed.
            Err(_) if self.cancelled.load(Ordering::Relaxed) => {
                Err(Error::Internal("the aggregate was stopped".into()))
            }
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array};
    use arrow::buffer::ScalarBuffer;

    fn hashes(column: &dyn Array, width: usize) -> Vec<u64> {
        let data = column.to_data();
        let values = &data.buffers()[0].as_slice()[data.offset() * width..];
        let mut out = vec![DEAL_SEED; column.len()];
        match width {
            4 => mix_column::<4>(values, data.nulls(), &mut out),
            _ => mix_column::<8>(values, data.nulls(), &mut out),
        }
        out.into_iter().map(finish).collect()
    }

    #[test]
    fn a_null_deals_alike_whatever_bytes_lie_under_it() {
        // Rows 1 and 3 are NULL over different bytes.
        let nulls = NullBuffer::from(vec![true, false, true, false]);
        let column = Int64Array::new(ScalarBuffer::from(vec![7, 8, 7, 9]), Some(nulls));
        let h = hashes(&column, 8);
        assert_eq!(h[0], h[2]);
        assert_eq!(h[1], h[3]);
        assert_ne!(h[0], h[1]);
        // Sliced, the offset is honoured.
        assert_eq!(hashes(&column.slice(1, 3), 8), h[1..]);
    }

    #[test]
    fn dealing_hashes_spread_consecutive_keys_over_both_halves() {
        // The worker is picked by the top bits: small consecutive keys
        // (part numbers) must not all land on one worker.
        let column = Int32Array::from_iter_values(0..10_000);
        let high = hashes(&column, 4).iter().filter(|h| *h >> 63 == 1).count();
        assert!(
            (4_500..5_500).contains(&high),
            "{high} of 10000 in the top half"
        );
    }
}
