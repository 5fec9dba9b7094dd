//! GROUP BY, aggregates and SELECT DISTINCT: a hash aggregation that spills
//! partial states by hash partition when the budget refuses, and merges each
//! partition on its own afterwards.
//!
//! 1. **In memory.** Each input batch's group keys are encoded with
//!    arrow-row and interned in a [`GroupTable`] (a dense group index per
//!    distinct key); every aggregate's [`Accumulator`] is updated by group
//!    index. If the input fits, that is all: the groups are emitted in the
//!    order first met.
//! 2. **Spill.** When the budget refuses the next batch, the table is
//!    written out as partial states (each group's encoded key and every
//!    accumulator's mergeable state), split into [`PARTITIONS`] files by the
//!    top bits of the key's hash, and emptied; the batch is then taken again.
//!    A table that has reduced nothing (about a group a row) is spilled so
//!    too, at its first refusal or once it holds
//!    [`PASS_THROUGH_CHECK_GROUPS`] groups, and the rest of the input then
//!    goes to the partitions a batch at a time ([`Aggregate::consume`]).
//! 3. **Merge.** At the end of the input what is still in memory is spilled
//!    too, and partitions are merged one at a time into a fresh table whose
//!    hash has a new seed. A partition that still does not fit is split the
//!    same way, one level down, until it does. Only a group whose own state
//!    outgrows the budget (a huge string_agg or DISTINCT of one group)
//!    cannot be split further; that fails with `ResourcesExhausted`.
//!
//! Groups of a partition never meet groups of another, so the output is
//! every group exactly once, and equal to the in-memory result up to order.
//!
//! Over input already ordered on the group keys the planner uses
//! [`streaming`] instead, which holds one group at a time.
//!
//! # Memory
//!
//! - Before a batch is interned the operator reserves, at most, what it can
//!   add: the table's and accumulators' growth to hold every row as a new
//!   group (in the buffers' own doubling steps), and each accumulator's
//!   variable growth ([`Accumulator::update_bytes`]). After the batch the
//!   reservation is trimmed to what is really held.
//! - At creation the operator reserves what spilling needs (one write
//!   buffer per partition) and a floor of table memory. An aggregate that
//!   has started can always spill, and always merges a partition small
//!   enough for the floor, so repartitioning ends even when memory pressure
//!   refuses everything else. One of several sharing their partitions
//!   reserves too, if granted, the buffers of the finer partitions its
//!   rows pass through to ([`PASS_BITS_SHARED`]).
//! - Rows passing through hold their encoded keys and a partial state
//!   each, unreserved, for one batch at a time: about the batch's own
//!   size again, as any batch in flight.
//! - Merging reads one spill file at a time; output batches hold at most
//!   `--batch-rows` groups.

mod accumulator;
pub mod parallel;
pub mod streaming;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex};

use arrow::array::{
    ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::compute::{filter, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{Rows, SortField};

use crate::analyze;
use crate::error::{Error, Result};
use crate::exec::group_table::{normalize_key, peak_growth, GroupTable, Step};
use crate::exec::{true_mask, BoxedOperator, Operator, RunContext};
use crate::memory::Reservation;
use crate::plan::aggregate::AggregateExpr;
use crate::plan::Expr;
use crate::spill::{SpillFile, SpillWriter, IO_BUFFER_BYTES};
use accumulator::Accumulator;

/// Partitions a spill splits the groups into: the top bits of the hash.
pub const PARTITIONS: usize = 8;
const PARTITION_BITS: u32 = PARTITIONS.trailing_zeros();

/// Groups a table holds when it first spills, in percent of the rows it
/// read, from which the rest of the input passes through to the partitions
/// without a table to reduce it; see [`Aggregate::consume`].
const PASS_THROUGH_GROUPS_PERCENT: usize = 90;

/// And batches' worth of rows it read, at least: a table refused after a
/// batch or two says more about the budget than about the groups.
const PASS_THROUGH_BATCHES_MIN: usize = 4;

/// Groups a table holds when it is checked for reducing nothing even
/// though the budget still grants it more (about 12 MB for three key
/// columns); see [`Aggregate::consume`]. A quarter of this passed the
/// bench's GROUP BY (800k groups in 6M rows) through as well, 1.97 s
/// where it takes 1.08 s, and made its DISTINCT no faster.
const PASS_THROUGH_CHECK_GROUPS: usize = 1 << 18;

/// Levels of repartitioning before a partition is declared unsplittable.
/// Each level divides a partition by [`PARTITIONS`] with a fresh hash, so
/// only a handful of groups can be left after this many.
const LEVELS_MAX: u32 = 8;

/// The fixed state one spill batch carries, at most (unless a batch of one
/// group is larger).
const SPILL_BATCH_BYTES: usize = 256 * 1024;

/// Bytes one open spill writer holds: its write buffer and the IPC
/// encoder's scratch.
const SPILL_WRITER_BYTES: usize = IO_BUFFER_BYTES + 16 * 1024;

/// Bytes of group table reserved at creation and always usable, whatever
/// the budget says later. Why: under a small limit RSS can sit above the
/// pressure line for a whole run, and then every request is refused. Without
/// a floor a table would take one batch, spill it, and a merged partition
/// would be split again into as many files as it had batches, never
/// converging. With it, partitions shrink by [`PARTITIONS`] a level until
/// they fit the floor, and the merge always ends.
const TABLE_FLOOR_BYTES: usize = 256 * 1024;

/// The floor of an aggregate without GROUP BY. Its one group goes to one
/// partition when it spills, so it needs one spill writer, not
/// [`PARTITIONS`], and little table. (Spilling that group can only defer
/// it: its parts merge back whole, which works once operators below, such
/// as a join's build, have let go of their memory.) Under a 20MB limit,
/// when the operator pool there was about 1.5 MB, the full floor and
/// writers of `count(DISTINCT x)`'s outer count took most of it.
const GLOBAL_FLOOR_BYTES: usize = 16 * 1024;

/// What an aggregate reads and what it writes. The two halves of a
/// two-phase aggregation ([`parallel`]) are a `Partial` per thread and one
/// `Final` over their output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Rows in, aggregate values out.
    Single,
    /// Rows in, partial states out: each group's encoded key and every
    /// accumulator's mergeable state, as in a spill file.
    Partial,
    /// Partial states in (several may be of one group), values out.
    Final,
}

pub struct Aggregate {
    ctx: Arc<RunContext>,
    mode: Mode,
    input: Option<BoxedOperator>,
    group: Vec<Expr>,
    aggregates: Vec<AggregateExpr>,
    schema: SchemaRef,
    /// The shape of a group table and its accumulators.
    spec: Arc<Spec>,
    /// The table being filled, or being emitted.
    state: GroupState,
    /// Next group of `state` to emit, once the input is consumed.
    emitted: Option<usize>,
    /// Spilled partitions still to merge, each with its level.
    pending: Partitions,
    /// The deepest level merged so far: 0 if nothing spilled.
    level_deepest: u32,
    /// Whether rows passed through to the partitions; see
    /// [`Aggregate::consume`].
    passed_through: bool,
    /// Where this aggregate puts its spilled partitions once its input is
    /// read, and takes the next one to merge from, when it is one of
    /// several that share them ([`Aggregate::share_partitions`]).
    shared: Option<SharedPartitions>,
    /// The bits of the hash that split rows passing through: more than a
    /// spill's where partitions are shared ([`PASS_BITS_SHARED`]).
    pass_bits: u32,
    /// Whether this aggregate has handed its partitions in to a scattered
    /// pool (see [`PartitionPool`]).
    handed_in: bool,
    /// Held for the spill writers and the table floor; see the module's
    /// `# Memory`.
    spill_reservation: Reservation,
}

impl Drop for Aggregate {
    /// Aggregates waiting for this one's partitions would wait forever.
    fn drop(&mut self) {
        if let Some(pool) = &self.shared {
            if !self.handed_in {
                pool.fail();
            }
        }
    }
}

/// The group key columns of `batch`, floats normalised so that -0.0 and
/// 0.0, and every NaN, are one group.
fn group_keys(group: &[Expr], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    group
        .iter()
        .map(|e| Ok(normalize_key(e.evaluate_to_array(batch)?)))
        .collect()
}

/// The row-encoding fields of the group keys over `schema`.
fn key_fields(group: &[Expr], schema: &SchemaRef) -> Result<Vec<SortField>> {
    group
        .iter()
        .map(|e| Ok(SortField::new(e.data_type(schema)?)))
        .collect()
}

/// What every group table of one aggregate is made of.
struct Spec {
    key_fields: Vec<SortField>,
    aggregates: Vec<(AggregateExpr, Option<DataType>)>,
    spill_schema: SchemaRef,
    /// Table bytes reserved at creation: [`TABLE_FLOOR_BYTES`], or
    /// [`GLOBAL_FLOOR_BYTES`] without GROUP BY.
    floor: usize,
}

impl Spec {
    /// Fresh accumulators, one for each aggregate.
    fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        accumulators(&self.aggregates)
    }
}

/// Spilled partitions, each with its level.
type Partitions = Vec<(u32, Vec<SpillFile>)>;

/// Spilled partitions that several aggregates take from; see
/// [`Aggregate::share_partitions`].
pub type SharedPartitions = Arc<PartitionPool>;

/// What aggregates sharing their partitions share.
///
/// Each puts its partitions in the pool once its input is read, and they
/// merge them in turn, each taking the next. That needs no group to be in
/// two aggregates' partitions, as when rows are dealt by key, until the
/// pool is *scattered* ([`PartitionPool::scatter`]): rows of one key may
/// then reach any aggregate, every one of which passes them through to its
/// partitions (see [`Aggregate::consume`]). Partition `p` of every
/// aggregate is then merged as one, so each waits until all have handed
/// theirs in ([`PartitionPool::hand_in`]).
#[derive(Default)]
pub struct PartitionPool {
    state: Mutex<PoolState>,
    handed_in: Condvar,
    /// Aggregates that pass rows through.
    passing: AtomicUsize,
    /// The deepest level of partitions any of them merged.
    deepest: AtomicU32,
}

#[derive(Default)]
struct PoolState {
    /// Ready to merge, each with its level.
    ready: Partitions,
    /// Once scattered: the aggregates that have yet to hand in their
    /// partitions, and the files handed in, by partition: spilled tables'
    /// and passed-through rows' (see [`merge_tasks`]).
    scattered: Option<Scattered>,
    /// An aggregate sharing the pool stopped before handing in.
    failed: bool,
}

fn poisoned() -> Error {
    Error::Internal("an aggregate worker failed holding the partitions".into())
}

struct Scattered {
    waiting: usize,
    coarse: Vec<Vec<SpillFile>>,
    fine: Vec<Vec<SpillFile>>,
}

/// `files` added to `into`, partition by partition.
fn add_by_partition(into: &mut Vec<Vec<SpillFile>>, files: Vec<Vec<SpillFile>>) {
    into.resize_with(into.len().max(files.len()), Vec::new);
    for (p, part) in files.into_iter().enumerate() {
        into[p].extend(part);
    }
}

impl PartitionPool {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, PoolState>> {
        self.state.lock().map_err(|_| poisoned())
    }

    /// How many aggregates sharing the pool pass rows through.
    pub fn passing(&self) -> usize {
        self.passing.load(AtomicOrdering::Acquire)
    }

    /// Say that rows of a key may from now on reach any of `aggregates`
    /// (all passing rows through), which must then hand in their
    /// partitions to be merged together.
    pub fn scatter(&self, aggregates: usize) -> Result<()> {
        self.lock()?.scattered = Some(Scattered {
            waiting: aggregates,
            coarse: Vec::new(),
            fine: Vec::new(),
        });
        Ok(())
    }

    fn is_scattered(&self) -> Result<bool> {
        Ok(self.lock()?.scattered.is_some())
    }

    /// The deepest level of partitions merged from the pool so far.
    pub fn deepest_level(&self) -> u32 {
        self.deepest.load(AtomicOrdering::Relaxed)
    }

    /// Add `spilled` and `passed` (files by partition, of spilled tables
    /// and of rows passed through) to the pool's, and wait until every
    /// aggregate has: then each partition's files, whoever wrote them, are
    /// one partition to merge.
    fn hand_in(&self, spilled: Vec<Vec<SpillFile>>, passed: Vec<Vec<SpillFile>>) -> Result<()> {
        let mut state = self.lock()?;
        let Some(scattered) = state.scattered.as_mut() else {
            return Err(Error::Internal(
                "partitions handed in to a pool not scattered".into(),
            ));
        };
        add_by_partition(&mut scattered.coarse, spilled);
        add_by_partition(&mut scattered.fine, passed);
        scattered.waiting -= 1;
        if scattered.waiting == 0 {
            let coarse = std::mem::take(&mut scattered.coarse);
            let fine = std::mem::take(&mut scattered.fine);
            merge_tasks(coarse, fine, &mut state.ready);
            self.handed_in.notify_all();
        }
        loop {
            if state.failed {
                return Err(Error::Internal(
                    "another aggregate worker stopped before its partitions were merged".into(),
                ));
            }
            if state.scattered.as_ref().is_none_or(|s| s.waiting == 0) {
                return Ok(());
            }
            state = self.handed_in.wait(state).map_err(|_| poisoned())?;
        }
    }

    /// An aggregate sharing the pool stops without handing in: those that
    /// wait for it stop too.
    fn fail(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.failed = true;
        }
        self.handed_in.notify_all();
    }

    fn append(&self, partitions: &mut Partitions) -> Result<()> {
        self.lock()?.ready.append(partitions);
        Ok(())
    }

    fn pop(&self) -> Result<Option<(u32, Vec<SpillFile>)>> {
        Ok(self.lock()?.ready.pop())
    }
}

/// The spill partition of a key whose hash is `hash`: its top `bits` bits.
fn partition(hash: u64, bits: u32) -> usize {
    (hash >> (64 - bits)) as usize
}

/// The bits rows passing through are split by, in an aggregate sharing
/// its partitions: twice as many partitions as a spill's. Once the pool
/// is scattered, partition `p` of every worker is merged as one, so that
/// each merge would otherwise hold twice what a worker's did; at SF10 the
/// bench's GROUP BY then split most partitions again at 256MB (2.4 GB
/// spilled against 1.5 GB, 27.7 s against 20 to 26 s).
const PASS_BITS_SHARED: u32 = PARTITION_BITS + 1;

/// Merge tasks, at level 1, from a spill's partitions (`coarse`, by the
/// top [`PARTITION_BITS`] bits) and passed-through rows' (`fine`, by as
/// many bits or more). A fine partition is merged alone unless the coarse
/// one it falls in has files, which hold keys of all of its fine ones:
/// then they are merged together.
fn merge_tasks(coarse: Vec<Vec<SpillFile>>, fine: Vec<Vec<SpillFile>>, out: &mut Partitions) {
    let per = (fine.len() / PARTITIONS).max(1);
    let mut coarse = coarse.into_iter();
    let mut fine = fine.into_iter();
    for _ in 0..PARTITIONS {
        let mut files = coarse.next().unwrap_or_default();
        let fines = fine.by_ref().take(per);
        if files.is_empty() {
            out.extend(fines.filter(|f| !f.is_empty()).map(|f| (1, f)));
        } else {
            files.extend(fines.flatten());
            out.push((1, files));
        }
    }
}

/// Fold the rows whose groups are `groups` into `accs`, which hold `count`
/// groups once resized.
fn update(
    accs: &mut [Box<dyn Accumulator>],
    count: usize,
    groups: &[u32],
    args: &[Argument],
) -> Result<()> {
    for (acc, a) in accs.iter_mut().zip(args) {
        acc.resize(count);
        match &a.mask {
            Some(mask) => {
                let kept: Vec<u32> = groups
                    .iter()
                    .zip(mask.values().iter())
                    .filter_map(|(&g, keep)| keep.then_some(g))
                    .collect();
                let value = a.value.as_ref().map(|v| filter(v, mask)).transpose()?;
                acc.update(&kept, value.as_ref())?;
            }
            None => acc.update(groups, a.value.as_ref())?,
        }
    }
    Ok(())
}

/// Write one input batch, its keys encoded as `rows`, to `writers` as
/// partial states without a table, every row its own group: what passing
/// rows through means (see [`Aggregate::consume`]). Each row goes to the
/// partition that its key's hash in `table` picks, where a spill of
/// `table` puts the group of that key.
///
/// Why not intern the batch into a table and spill that, as before: it
/// reduces nothing where rows pass through (a table reduced nothing to get
/// here), and the bench's SELECT DISTINCT spent a tenth of its time on it.
fn pass_rows(
    ctx: &RunContext,
    spec: &Spec,
    table: &GroupTable,
    rows: Option<Rows>,
    args: &[Argument],
    writers: &mut PartitionWriters,
) -> Result<()> {
    let Some(rows) = rows else {
        return Err(Error::Internal(
            "rows pass through only a GROUP BY, which has keys".into(),
        ));
    };
    let n = rows.num_rows();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); writers.0.len()];
    for (i, row) in rows.iter().enumerate() {
        members[partition(table.hash(row.as_ref()), writers.bits())].push(i as u32);
    }
    // The encoded keys as they are: a spill's key column holds the same.
    let mut columns: Vec<ArrayRef> = vec![Arc::new(rows.try_into_binary()?)];
    if !spec.aggregates.is_empty() {
        // Unreserved, as the batch's own columns are: about their size.
        let mut accs = spec.accumulators()?;
        for acc in &mut accs {
            acc.reserve(n);
        }
        let identity: Vec<u32> = (0..n as u32).collect();
        update(&mut accs, n, &identity, args)?;
        for acc in &mut accs {
            columns.extend(acc.state(0..n)?);
        }
    }
    let batch = RecordBatch::try_new(spec.spill_schema.clone(), columns)?;
    writers.write(ctx, spec, &batch, members)
}

/// Each aggregate call with the type of its argument over `schema`.
fn typed_aggregates(
    aggregates: Vec<AggregateExpr>,
    schema: &SchemaRef,
) -> Result<Vec<(AggregateExpr, Option<DataType>)>> {
    aggregates
        .into_iter()
        .map(|a| {
            let t = a.arg.as_ref().map(|e| e.data_type(schema)).transpose()?;
            Ok((a, t))
        })
        .collect()
}

/// Fresh accumulators, one for each of `aggregates` (as typed by
/// [`typed_aggregates`]).
fn accumulators(
    aggregates: &[(AggregateExpr, Option<DataType>)],
) -> Result<Vec<Box<dyn Accumulator>>> {
    (aggregates.iter())
        .map(|(a, t)| accumulator::create(&a.func, t.as_ref(), a.distinct))
        .collect()
}

impl Aggregate {
    pub fn new(
        ctx: Arc<RunContext>,
        input: BoxedOperator,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
        schema: SchemaRef,
    ) -> Result<Aggregate> {
        let in_schema = input.schema();
        Aggregate::with_mode(
            ctx,
            Mode::Single,
            input,
            &in_schema,
            group,
            aggregates,
            schema,
        )
    }

    /// An aggregate in `mode`. `group` and `aggregates` are over
    /// `rows_schema`, the rows the aggregation started from: the input's
    /// own schema but in [`Mode::Final`], whose input is partial states
    /// ([`Aggregate::state_schema`]). `schema` is that of the values, and
    /// unused in [`Mode::Partial`], which writes states.
    pub fn with_mode(
        ctx: Arc<RunContext>,
        mode: Mode,
        input: BoxedOperator,
        rows_schema: &SchemaRef,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
        schema: SchemaRef,
    ) -> Result<Aggregate> {
        let in_schema = rows_schema;
        let key_fields = key_fields(&group, in_schema)?;
        let typed = typed_aggregates(aggregates.clone(), in_schema)?;
        // The spill schema: the encoded key, then each accumulator's state.
        let mut fields = vec![Field::new("key", DataType::Binary, false)];
        for (i, (a, t)) in typed.iter().enumerate() {
            let acc = accumulator::create(&a.func, t.as_ref(), a.distinct)?;
            for f in acc.state_fields() {
                let name = format!("a{i}_{}", f.name());
                fields.push(f.with_name(name));
            }
        }
        let (writers, floor) = if group.is_empty() {
            (1, GLOBAL_FLOOR_BYTES)
        } else {
            (PARTITIONS, TABLE_FLOOR_BYTES)
        };
        let spec = Arc::new(Spec {
            key_fields,
            aggregates: typed,
            spill_schema: Arc::new(Schema::new(fields)),
            floor,
        });
        let mut spill_reservation = ctx.budget.reservation("aggregate spill buffers");
        spill_reservation.try_grow(writers * SPILL_WRITER_BYTES + floor)?;
        let state = GroupState::new(&ctx, &spec)?;
        let schema = match mode {
            Mode::Partial => spec.spill_schema.clone(),
            Mode::Single | Mode::Final => schema,
        };
        Ok(Aggregate {
            ctx,
            mode,
            input: Some(input),
            group,
            aggregates,
            schema,
            spec,
            state,
            emitted: None,
            pending: Vec::new(),
            level_deepest: 0,
            passed_through: false,
            shared: None,
            pass_bits: PARTITION_BITS,
            handed_in: false,
            spill_reservation,
        })
    }

    /// Merge spilled partitions from `pool`, shared with other aggregates,
    /// as well as this one's own, which go into it once the input is read.
    /// Only for aggregates whose groups never meet another's (workers that
    /// are dealt rows by key): a partition is then merged whole by
    /// whichever takes it; or, once the pool is scattered, aggregates that
    /// all pass rows through, whose partitions it merges together (see
    /// [`PartitionPool`]). Why: each worker merged its own partitions, and
    /// the one that finished first sat idle while the other merged its
    /// last ones (in the bench's SELECT DISTINCT, one worker ran alone for
    /// the last tenth of a second).
    pub fn share_partitions(&mut self, pool: SharedPartitions) {
        self.shared = Some(pool);
        // The finer partitions of rows passing through need writers of
        // their own; without them, rows pass through to a spill's.
        let more = (1 << PASS_BITS_SHARED) - PARTITIONS;
        if !self.group.is_empty()
            && self
                .spill_reservation
                .try_grow(more * SPILL_WRITER_BYTES)
                .is_ok()
        {
            self.pass_bits = PASS_BITS_SHARED;
        }
    }

    /// Read `input` instead of the input given at creation, which must not
    /// have been read yet. Why: a final merge is made before the workers
    /// whose output it reads, so that it reserves its memory before they
    /// fill the pool.
    pub fn set_input(&mut self, input: BoxedOperator) {
        debug_assert!(self.input.is_some() && self.emitted.is_none());
        self.input = Some(input);
    }

    /// The partial states a [`Mode::Partial`] aggregate writes and a
    /// [`Mode::Final`] one reads.
    pub fn state_schema(&self) -> SchemaRef {
        self.spec.spill_schema.clone()
    }

    /// Read the whole input into the table, spilling as refused.
    ///
    /// A table that fills the memory it is given with about as many groups
    /// as it read rows ([`PASS_THROUGH_GROUPS_PERCENT`]) reduces nothing
    /// before it spills, and is no better than spilling the rows
    /// themselves, which is what the rest of the input then does: each
    /// batch is written to the partitions at once, every row its own
    /// partial state ([`pass_rows`]), through writers kept open to the end
    /// of the input. Merging the partitions is unchanged. Measured, medians
    /// of 2 to 4 runs: the bench's SELECT DISTINCT (a group a row) at 256MB
    /// took 1.56 s, now 1.42 s; its GROUP BY (800k groups in 6M rows) at
    /// 64MB 3.62 s, now 2.08 s, and at 32MB 5.33 s, now 4.23 s. (Each batch
    /// was then interned alone first, in a table small enough to stay in
    /// the CPU's cache; without it the DISTINCT took 1.19 s, not 1.36 s.)
    ///
    /// A table is also checked once it holds [`PASS_THROUGH_CHECK_GROUPS`]
    /// groups, before the budget refuses it: growing it further only to
    /// spill it whole costs a cache miss a row, a rehash at each doubling
    /// and fresh pages, and under a parallel aggregate the worker doing
    /// that stalls the other, which waits for rows the dealer cannot hand
    /// out. The bench's DISTINCT at 256MB went from 2.76 s to 1.92 s
    /// (medians of 5) and from 148 to 71 MB peak RSS; even at 4GB, where
    /// it never spilled, from 2.65 s and 375 MB to 2.20 s and 76 MB. Its
    /// GROUP BY has reduced enough by then and keeps its table (nothing
    /// passes through in EXPLAIN ANALYZE; 1.21 s before and 1.27 s after,
    /// within this machine's noise).
    ///
    /// Only where every aggregate [`folds`](parallel::folds): a group met
    /// in every batch then spills a piece of state a batch, and pieces of
    /// string_agg, a quantile or a DISTINCT carry their values. Merged
    /// under a 1 MB pool, such pieces of a test's NULL group did not fit
    /// at any level of repartitioning.
    fn consume(&mut self, mut input: BoxedOperator) -> Result<()> {
        let mut spilled: Vec<Vec<SpillFile>> = Vec::new();
        // Rows folded into the table since it was last emptied.
        let mut rows_in = 0;
        let mut pass_through: Option<PartitionWriters> = None;
        let may_pass_through =
            !self.group.is_empty() && self.aggregates.iter().all(parallel::folds);
        while let Some(batch) = input.next_batch()? {
            self.ctx.check()?;
            if self.mode == Mode::Final {
                self.fold_states(&batch, &mut spilled)?;
                continue;
            }
            let keys = group_keys(&self.group, &batch)?;
            let args = self
                .aggregates
                .iter()
                .map(|a| arguments(a, &batch))
                .collect::<Result<Vec<_>>>()?;
            let rows = self.state.table.encode(&keys)?;
            let n = batch.num_rows();
            if let Some(writers) = &mut pass_through {
                pass_rows(
                    &self.ctx,
                    &self.spec,
                    &self.state.table,
                    rows,
                    &args,
                    writers,
                )?;
                continue;
            }
            let granted = self
                .state
                .try_update(rows.as_ref(), n, &args, Admit::IfGranted)?;
            if granted {
                rows_in += n;
            }
            let groups = self.state.table.len();
            let reduces_nothing = may_pass_through
                && rows_in >= PASS_THROUGH_BATCHES_MIN * self.ctx.config.batch_rows
                && groups * 100 >= rows_in * PASS_THROUGH_GROUPS_PERCENT;
            if granted && !(groups >= PASS_THROUGH_CHECK_GROUPS && reduces_nothing) {
                continue;
            }
            if reduces_nothing {
                // The table goes to the partitions the rows will follow it
                // to: finer ones where they may be merged with other
                // aggregates' (see [`PASS_BITS_SHARED`]).
                let mut writers = PartitionWriters::new(self.pass_bits);
                self.state.spill_into(&self.ctx, &self.spec, &mut writers)?;
                self.state.reset(&self.spec)?;
                self.state.table.shrink_to_fit();
                self.state.settle();
                pass_through = Some(writers);
                self.passed_through = true;
                if let Some(pool) = &self.shared {
                    pool.passing.fetch_add(1, AtomicOrdering::Release);
                }
                analyze::note("rows passed through");
            } else {
                self.state.spill(&self.ctx, &self.spec, &mut spilled)?;
                self.state.reset(&self.spec)?;
            }
            rows_in = 0;
            if !granted {
                self.state
                    .try_update(rows.as_ref(), n, &args, Admit::Force)?;
                rows_in = n;
            }
        }
        // Passed-through rows' partitions, apart from the spills'.
        let mut passed: Vec<Vec<SpillFile>> = Vec::new();
        if let Some(writers) = pass_through {
            writers.finish(&mut passed)?;
        }
        let scattered = match &self.shared {
            Some(pool) => pool.is_scattered()?.then(|| pool.clone()),
            None => None,
        };
        if let Some(pool) = scattered {
            // Every aggregate passed rows through, so the table is empty;
            // spilled anyway, as what the pool merges must be all there is.
            self.state.spill(&self.ctx, &self.spec, &mut spilled)?;
            self.state.reset(&self.spec)?;
            self.handed_in = true;
            return pool.hand_in(spilled, passed);
        }
        if !spilled.is_empty() || !passed.is_empty() {
            self.state.spill(&self.ctx, &self.spec, &mut spilled)?;
            merge_tasks(spilled, passed, &mut self.pending);
        } else {
            self.state.table.ensure_global_group();
            self.state.resize_all();
        }
        Ok(())
    }

    /// Merge the next spilled partition into `state`, splitting it further
    /// when it does not fit. Returns false when none is left.
    fn merge_next(&mut self) -> Result<bool> {
        let next = match (self.pending.pop(), &self.shared) {
            (Some(next), _) => Some(next),
            (None, Some(shared)) => shared.pop()?,
            (None, None) => None,
        };
        let Some((level, files)) = next else {
            return Ok(false);
        };
        if level > LEVELS_MAX {
            let bytes: u64 = files.iter().map(|f| f.bytes()).sum();
            return Err(Error::ResourcesExhausted(format!(
                "GROUP BY: a partition of {} spilled still does not fit after {LEVELS_MAX} \
                 levels of repartitioning (one group's state, such as a long string_agg or a \
                 count(DISTINCT) of one group, outgrows the memory budget); raise --memory-limit",
                crate::config::format_bytes(bytes)
            )));
        }
        self.level_deepest = self.level_deepest.max(level);
        if let Some(pool) = &self.shared {
            pool.deepest.fetch_max(level, AtomicOrdering::Relaxed);
        }
        self.state.reset(&self.spec)?;
        self.state.table.reseed(level as u64);
        let mut spilled: Vec<Vec<SpillFile>> = Vec::new();
        for file in files {
            let mut reader = file.reader()?;
            while let Some(batch) = reader.next_batch()? {
                self.ctx.check()?;
                self.fold_states(&batch, &mut spilled)?;
            }
            // The file is deleted as it goes out of scope here.
        }
        if !spilled.is_empty() {
            self.state.spill(&self.ctx, &self.spec, &mut spilled)?;
            self.state.reset(&self.spec)?;
            self.pending.extend(
                spilled
                    .into_iter()
                    .filter(|files| !files.is_empty())
                    .map(|files| (level + 1, files)),
            );
        }
        Ok(true)
    }

    /// Merge a batch of partial states into the table, spilling it into
    /// `spilled` first if refused.
    fn fold_states(
        &mut self,
        batch: &RecordBatch,
        spilled: &mut Vec<Vec<SpillFile>>,
    ) -> Result<()> {
        if !self.state.try_merge(batch, Admit::IfGranted)? {
            self.state.spill(&self.ctx, &self.spec, spilled)?;
            self.state.reset(&self.spec)?;
            self.state.try_merge(batch, Admit::Force)?;
        }
        Ok(())
    }
}

/// The rows an aggregate call reads from `batch`: its argument (floats
/// normalised for DISTINCT), and which rows its FILTER keeps.
fn arguments(a: &AggregateExpr, batch: &RecordBatch) -> Result<Argument> {
    let mut value = a
        .arg
        .as_ref()
        .map(|e| e.evaluate_to_array(batch))
        .transpose()?;
    if a.distinct {
        value = value.map(normalize_key);
    }
    let mask = match &a.filter {
        Some(f) => {
            let m = f.evaluate_to_array(batch)?;
            let m = m
                .as_boolean_opt()
                .ok_or_else(|| Error::Internal(format!("FILTER {f} is not boolean")))?;
            // NULL counts as false.
            Some(true_mask(m))
        }
        None => None,
    };
    Ok(Argument { value, mask })
}

struct Argument {
    value: Option<ArrayRef>,
    mask: Option<BooleanArray>,
}

/// Whether a batch may come in when the budget refuses it.
#[derive(Clone, Copy)]
enum Admit {
    IfGranted,
    /// Into a table just emptied by a spill, whatever the budget says:
    /// the batch is in memory already and adds at most about its own size
    /// in state (a refusal right after a spill is most often the RSS
    /// monitor not having seen the freed memory yet). The table is then
    /// marked full, so the next batch spills it first. This is the one
    /// unreserved growth, bounded by a batch, as the sort's lone-batch run.
    Force,
}

/// A group table, its accumulators, and the reservation that covers them.
struct GroupState {
    table: GroupTable,
    accs: Vec<Box<dyn Accumulator>>,
    /// Groups the accumulators' fixed state has room for.
    capacity: usize,
    reservation: Reservation,
    /// An estimate fell short and the budget refused the difference: the
    /// next batch must not come in before a spill.
    full: bool,
    /// What the table may hold beyond its own reservation: the floor that
    /// the operator reserved at creation. Only one `GroupState` grows at a
    /// time.
    floor: usize,
}

impl GroupState {
    /// An empty table, hashing as level 0 does; [`Aggregate::merge_next`]
    /// reseeds it for each partition's level of repartitioning.
    fn new(ctx: &RunContext, spec: &Spec) -> Result<GroupState> {
        let accs = spec.accumulators()?;
        // An empty table holds a few hundred bytes; they are reserved with
        // its first batch.
        Ok(GroupState {
            table: GroupTable::new(spec.key_fields.clone(), 0)?,
            accs,
            capacity: 0,
            reservation: ctx.budget.reservation("aggregate"),
            full: false,
            floor: spec.floor,
        })
    }

    fn size(&self) -> usize {
        self.table.size() + self.accs.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Empty the table after a spill, for the rest of the same input or
    /// for the next partition: the key arena and hash slots keep their
    /// memory (and its reservation), which the next rows fill again at
    /// once, instead of growing from nothing through every doubling, with
    /// a copy and page faults each time. (The bench's SELECT DISTINCT
    /// merges 16 partitions at 256MB; growing a new table for each took a
    /// fifth of its CPU time.) Accumulators start anew, since some keep
    /// state by group index beside their fixed state (a DISTINCT's seen
    /// values).
    ///
    /// A table that was full (grown by [`Admit::Force`], or past an
    /// estimate) lets go of its memory instead. Its buffers are sized to
    /// the batch it was forced to take, not by doubling, so the next batch
    /// would need them to grow again, which the budget refused just now:
    /// kept, they made a merge under pressure spill at every batch and
    /// split partitions as many ways as they had batches, never ending.
    fn reset(&mut self, spec: &Spec) -> Result<()> {
        self.table.clear();
        if self.full {
            self.table.shrink_to_fit();
        }
        self.accs = spec.accumulators()?;
        self.capacity = 0;
        self.full = false;
        self.settle();
        Ok(())
    }

    fn resize_all(&mut self) {
        let groups = self.table.len();
        for acc in &mut self.accs {
            acc.reserve(groups);
            acc.resize(groups);
        }
    }

    /// Reserve for `rows` more keys of `key_bytes` and `variable` bytes of
    /// accumulator growth, then make room for them. False if refused,
    /// unless `force`d: see [`Admit::Force`].
    ///
    /// Buffers grow by doubling, which keeps growth amortised. When the
    /// budget refuses that, smaller steps down to just this batch may still
    /// be granted, so the table fills the memory it has before it spills
    /// (measured over six runs each: the bench's 800k-group GROUP BY at
    /// 256MB spilled 67 MB in 1.9 to 2.1 s with doubling alone, 25 MB in
    /// 1.3 to 1.4 s with the smaller steps, or 62 MB in one run of six, the
    /// two workers racing for the pool). Each step is a reallocation of
    /// every buffer, so the steps shrink by halves rather than going
    /// straight to the batch (that cost 0.45 s of page faults over about
    /// 80 reallocations).
    ///
    /// Merging spilled partitions passes only doubling in `steps`: with
    /// the smaller steps there too the same GROUP BY spilled 62 MB in three
    /// runs of six.
    fn admit(
        &mut self,
        rows: usize,
        key_bytes: usize,
        variable: usize,
        admit: Admit,
        steps: &[Step],
    ) -> bool {
        let need_groups = self.table.len() + rows;
        let mut granted = None;
        for &step in steps {
            let capacity = step.apply(self.capacity, need_groups);
            let mut buffers = Vec::new();
            self.table.growth(rows, key_bytes, step, &mut buffers);
            if capacity > self.capacity {
                // An accumulator's fixed state may be several buffers
                // (variance keeps three); counted as one, they are
                // overcounted, never under.
                buffers.extend(self.accs.iter().map(|a| {
                    let one = a.group_bytes();
                    (self.capacity * one, capacity * one)
                }));
            }
            let bytes = peak_growth(&buffers) + variable;
            let want = (self.size() + bytes).saturating_sub(self.floor);
            if !self.full && self.reservation.try_resize(want).is_ok() {
                granted = Some((step, capacity));
                break;
            }
        }
        let (step, capacity) = match (granted, admit) {
            (Some(granted), _) => granted,
            (None, Admit::IfGranted) => return false,
            (None, Admit::Force) => {
                self.full = true;
                (Step::Exact, Step::Exact.apply(self.capacity, need_groups))
            }
        };
        self.table.make_room(rows, key_bytes, step);
        for acc in &mut self.accs {
            acc.reserve(capacity);
        }
        self.capacity = capacity;
        true
    }

    /// Trim the reservation to what is held, or grow it if an estimate fell
    /// short; if the budget refuses that, no more comes in before a spill.
    fn settle(&mut self) {
        let held = self.size().saturating_sub(self.floor);
        if self.reservation.try_resize(held).is_err() {
            self.full = true;
        }
    }

    /// Fold in one input batch of `n` rows with encoded keys `rows`. False
    /// if the budget refused; then nothing has changed.
    fn try_update(
        &mut self,
        rows: Option<&Rows>,
        n: usize,
        args: &[Argument],
        admit: Admit,
    ) -> Result<bool> {
        let key_bytes = rows.map_or(0, |r| r.size());
        let variable = self
            .accs
            .iter()
            .zip(args)
            .map(|(acc, a)| acc.update_bytes(a.value.as_ref()))
            .sum();
        if !self.admit(n, key_bytes, variable, admit, &Step::LADDER) {
            return Ok(false);
        }
        let mut groups = Vec::with_capacity(n);
        self.table.intern(rows, n, &mut groups);
        update(&mut self.accs, self.table.len(), &groups, args)?;
        self.settle();
        Ok(true)
    }

    /// Fold in one batch of spilled partial states. False if refused.
    fn try_merge(&mut self, batch: &RecordBatch, admit: Admit) -> Result<bool> {
        let keys = batch.column(0).as_binary::<i32>();
        let n = batch.num_rows();
        let key_bytes = keys.values().len();
        let states = self.split_states(batch);
        let variable = self
            .accs
            .iter()
            .zip(&states)
            .map(|(acc, s)| acc.merge_bytes(s))
            .sum();
        if !self.admit(n, key_bytes, variable, admit, &[Step::Double]) {
            return Ok(false);
        }
        // Spilled keys are never null: a key column holds encoded rows.
        let mut groups = Vec::with_capacity(n);
        self.table.intern_keys(n, |i| keys.value(i), &mut groups);
        let count = self.table.len();
        for (acc, state) in self.accs.iter_mut().zip(&states) {
            acc.resize(count);
            acc.merge(&groups, state)?;
        }
        self.settle();
        Ok(true)
    }

    /// The state columns of `batch`, accumulator by accumulator.
    fn split_states(&self, batch: &RecordBatch) -> Vec<Vec<ArrayRef>> {
        let mut at = 1;
        self.accs
            .iter()
            .map(|acc| {
                let n = acc.state_fields().len();
                let columns = batch.columns()[at..at + n].to_vec();
                at += n;
                columns
            })
            .collect()
    }

    /// Write every group's partial state into per-partition spill files
    /// (appended to `out`, one list per partition).
    fn spill(
        &mut self,
        ctx: &RunContext,
        spec: &Spec,
        out: &mut Vec<Vec<SpillFile>>,
    ) -> Result<()> {
        let mut writers = PartitionWriters::new(PARTITION_BITS);
        self.spill_into(ctx, spec, &mut writers)?;
        writers.finish(out)
    }

    /// Write every group's partial state into `writers`, by partition.
    fn spill_into(
        &mut self,
        ctx: &RunContext,
        spec: &Spec,
        writers: &mut PartitionWriters,
    ) -> Result<()> {
        let groups = self.table.len();
        let step = self.state_batch_groups(ctx.config.batch_rows);
        let mut start = 0;
        while start < groups {
            let end = (start + step).min(groups);
            let batch = RecordBatch::try_new(spec.spill_schema.clone(), self.states(start..end)?)?;
            let mut members: Vec<Vec<u32>> = vec![Vec::new(); writers.0.len()];
            for g in start..end {
                members[partition(self.table.group_hash(g), writers.bits())]
                    .push((g - start) as u32);
            }
            writers.write(ctx, spec, &batch, members)?;
            start = end;
        }
        Ok(())
    }

    /// Groups in one batch of partial states: about [`SPILL_BATCH_BYTES`]
    /// of fixed state. At `--batch-rows` groups, a wide state (a 1 KB
    /// HyperLogLog sketch) would take megabytes of unreserved memory to
    /// encode.
    fn state_batch_groups(&self, batch_rows: usize) -> usize {
        let state_bytes: usize = self.accs.iter().map(|a| a.group_bytes()).sum();
        (SPILL_BATCH_BYTES / state_bytes.max(1)).clamp(1, batch_rows.max(1))
    }

    /// The partial states of groups `range`: encoded keys, then every
    /// accumulator's state columns.
    fn states(&mut self, range: std::ops::Range<usize>) -> Result<Vec<ArrayRef>> {
        let keys: BinaryArray = range.clone().map(|g| Some(self.table.key(g))).collect();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(keys)];
        for acc in &mut self.accs {
            columns.extend(acc.state(range.clone())?);
        }
        Ok(columns)
    }

    /// The output rows of groups `range`: keys, then aggregates.
    fn emit(&mut self, range: std::ops::Range<usize>) -> Result<Vec<ArrayRef>> {
        let mut columns = self.table.key_columns(range.clone())?;
        for acc in &mut self.accs {
            columns.push(acc.evaluate(range.clone())?);
        }
        Ok(columns)
    }
}

/// One spill writer per partition, each opened at its first batch: the
/// files of one spill, or of every batch after a switch to passing rows
/// through (see [`Aggregate::consume`]).
struct PartitionWriters(Vec<Option<SpillWriter>>);

impl PartitionWriters {
    /// Writers for the partitions of `bits` bits of the hash.
    fn new(bits: u32) -> PartitionWriters {
        PartitionWriters((0..1usize << bits).map(|_| None).collect())
    }

    fn bits(&self) -> u32 {
        self.0.len().trailing_zeros()
    }

    /// Write the rows `members[p]` of `batch` to partition `p`'s file, for
    /// every `p`.
    fn write(
        &mut self,
        ctx: &RunContext,
        spec: &Spec,
        batch: &RecordBatch,
        members: Vec<Vec<u32>>,
    ) -> Result<()> {
        for (p, rows) in members.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part = take_batch(batch, &UInt32Array::from(rows))?;
            let writer = match &mut self.0[p] {
                Some(w) => w,
                slot => slot.insert(
                    ctx.spill
                        .writer(spec.spill_schema.clone(), "aggregate partition")?,
                ),
            };
            writer.write(&part)?;
        }
        Ok(())
    }

    /// Close the files, appending each to its partition's list in `out`.
    fn finish(self, out: &mut Vec<Vec<SpillFile>>) -> Result<()> {
        out.resize_with(self.0.len(), Vec::new);
        for (p, writer) in self.0.into_iter().enumerate() {
            if let Some(w) = writer {
                out[p].push(w.finish()?);
            }
        }
        Ok(())
    }
}

fn take_batch(batch: &RecordBatch, rows: &UInt32Array) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| Ok(take(c.as_ref(), rows, None)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

impl Operator for Aggregate {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(input) = self.input.take() {
            self.consume(input)?;
            self.emitted = Some(0);
            if !self.pending.is_empty() {
                if let Some(shared) = &self.shared {
                    shared.append(&mut self.pending)?;
                }
                // The table was spilled whole: it must not be emitted too,
                // even if another aggregate took every partition first
                // (a merge empties it before it starts).
                if !self.merge_next()? {
                    self.state.reset(&self.spec)?;
                }
            }
        }
        loop {
            let Some(next) = self.emitted else {
                return Ok(None);
            };
            let groups = self.state.table.len();
            if next < groups {
                let step = match self.mode {
                    Mode::Partial => self.state.state_batch_groups(self.ctx.config.batch_rows),
                    Mode::Single | Mode::Final => self.ctx.config.batch_rows.max(1),
                };
                let end = (next + step).min(groups);
                let columns = match self.mode {
                    Mode::Partial => self.state.states(next..end)?,
                    Mode::Single | Mode::Final => self.state.emit(next..end)?,
                };
                self.emitted = Some(end);
                let options = RecordBatchOptions::new().with_row_count(Some(end - next));
                let batch =
                    RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
                return Ok(Some(batch));
            }
            // This table is done: on to the next spilled partition.
            if !self.merge_next()? {
                self.emitted = None;
                return Ok(None);
            }
            self.emitted = Some(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        Array, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
        StringArray,
    };
    use arrow::compute::{concat_batches, lexsort_to_indices, take_record_batch, SortColumn};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::exec::testing::{assert_clean, context, temp_dir, Batches, Lcg};
    use crate::memory::MemoryBudget;
    use crate::plan::aggregate::AggregateFunction as F;
    use crate::plan::LogicalPlan;
    use crate::source::OrderColumn;

    /// A small deterministic generator, so that failures reproduce.
    /// `rows` rows: an integer key with about `groups` values and a string
    /// key with five, both with NULLs, and one column of each value type.
    fn input(rows: usize, groups: u64, seed: u64) -> RecordBatch {
        let mut r = Lcg(seed);
        let mut g1 = Vec::new();
        let mut g2 = Vec::new();
        let mut x = Vec::new();
        let mut d = Vec::new();
        let mut f = Vec::new();
        let mut s = Vec::new();
        let mut b = Vec::new();
        for _ in 0..rows {
            g1.push((r.below(50) != 0).then(|| r.below(groups) as i64));
            g2.push((r.below(20) != 0).then(|| format!("k{}", r.below(5))));
            x.push((r.below(10) != 0).then(|| r.below(1000) as i64 - 300));
            d.push((r.below(10) != 0).then(|| r.below(100_000) as i128));
            // Quarters: sums of them are exact in binary floating point.
            f.push((r.below(10) != 0).then(|| r.below(4000) as f64 / 4.0));
            s.push((r.below(10) != 0).then(|| format!("s{}", r.below(300))));
            b.push((r.below(10) != 0).then(|| r.below(3) != 0));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("g1", DataType::Int64, true),
            Field::new("g2", DataType::Utf8, true),
            Field::new("x", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(12, 2), true),
            Field::new("f", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(g1)),
                Arc::new(StringArray::from(g2)),
                Arc::new(Int64Array::from(x)),
                Arc::new(
                    Decimal128Array::from(d)
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
                Arc::new(Float64Array::from(f)),
                Arc::new(StringArray::from(s)),
                Arc::new(BooleanArray::from(b)),
            ],
        )
        .unwrap()
    }

    fn col(batch: &RecordBatch, name: &str) -> Expr {
        Expr::column(batch.schema().index_of(name).unwrap(), name)
    }

    fn call(func: F, arg: Option<Expr>, distinct: bool, filter: Option<Expr>) -> AggregateExpr {
        AggregateExpr {
            func,
            arg,
            distinct,
            filter,
        }
    }

    /// Every aggregate, over every value type.
    fn all_aggregates(b: &RecordBatch) -> Vec<AggregateExpr> {
        let c = |n: &str| Some(col(b, n));
        vec![
            call(F::CountStar, None, false, None),
            call(F::Count, c("x"), false, None),
            call(F::Sum, c("x"), false, None),
            call(F::Avg, c("x"), false, None),
            call(F::Sum, c("d"), false, None),
            call(F::Avg, c("d"), false, None),
            call(F::Sum, c("f"), false, None),
            call(F::Min, c("s"), false, None),
            call(F::Max, c("f"), false, None),
            call(F::Min, c("d"), false, None),
            call(
                F::Variance {
                    sample: true,
                    sqrt: true,
                },
                c("f"),
                false,
                None,
            ),
            call(F::BoolAnd, c("b"), false, None),
            call(F::BoolOr, c("b"), false, None),
            call(
                F::StringAgg {
                    separator: ",".into(),
                },
                c("s"),
                false,
                None,
            ),
            call(F::Count, c("x"), true, None),
            call(F::Sum, c("x"), true, None),
            call(F::CountStar, None, false, c("b")),
            // Constant within a group, so any value is the same value.
            call(F::AnyValue, c("g1"), false, None),
            call(
                F::Quantile {
                    q: 0.5,
                    continuous: true,
                },
                c("f"),
                false,
                None,
            ),
            call(
                F::Quantile {
                    q: 0.3,
                    continuous: false,
                },
                c("f"),
                false,
                None,
            ),
            call(F::ApproxCountDistinct, c("x"), false, None),
        ]
    }

    /// Every aggregate over `input` grouped by `group`: the calls, the
    /// output schema, and the input in pieces of 1000 rows.
    fn setup(input: &RecordBatch, group: &[Expr]) -> (Vec<AggregateExpr>, SchemaRef, Box<Batches>) {
        setup_with(input, group, all_aggregates(input))
    }

    /// [`setup`] with these aggregates.
    fn setup_with(
        input: &RecordBatch,
        group: &[Expr],
        aggregates: Vec<AggregateExpr>,
    ) -> (Vec<AggregateExpr>, SchemaRef, Box<Batches>) {
        let plan = LogicalPlan::aggregate(
            LogicalPlan::Values {
                batch: input.clone(),
            },
            group.to_vec(),
            aggregates.clone(),
        )
        .unwrap();
        let pieces: Vec<RecordBatch> = (0..input.num_rows())
            .step_by(1000)
            .map(|i| input.slice(i, 1000.min(input.num_rows() - i)))
            .collect();
        (
            aggregates,
            plan.schema(),
            Batches::new(input.schema(), pieces),
        )
    }

    /// The aggregate over `input` on `workers` threads; its output
    /// normalized, and the way it took.
    fn run_parallel(
        ctx: Arc<RunContext>,
        input: &RecordBatch,
        group: Vec<Expr>,
        workers: usize,
        fail_at_end: bool,
    ) -> Result<(RecordBatch, parallel::Way)> {
        run_parallel_with(
            ctx,
            input,
            group,
            all_aggregates(input),
            workers,
            fail_at_end,
            None,
        )
    }

    fn run_parallel_with(
        ctx: Arc<RunContext>,
        input: &RecordBatch,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
        workers: usize,
        fail_at_end: bool,
        way: Option<parallel::Way>,
    ) -> Result<(RecordBatch, parallel::Way)> {
        let keys = group.len();
        let (aggregates, schema, mut source) = setup_with(input, &group, aggregates);
        source.fail_at_end = fail_at_end;
        let mut op = parallel::ParallelAggregate::new(
            ctx,
            source,
            group,
            aggregates,
            schema.clone(),
            workers,
        )?;
        if let Some(way) = way {
            op = op.forced(way);
        }
        let mut out = Vec::new();
        while let Some(b) = op.next_batch()? {
            assert!(b.num_rows() > 0, "operators never return empty batches");
            out.push(b);
        }
        let way = op.way().expect("the way is chosen with the first batch");
        Ok((normalized(&concat_batches(&schema, &out)?, keys), way))
    }

    #[test]
    fn parallel_workers_give_the_single_aggregates_result_in_memory_and_spilled() {
        let batch = with_views(&input(60_000, 20_000, 11));
        // A string among the keys deals by their row encoding; floats and
        // decimals alone by their values (with NULLs in each), and string
        // views by their bytes: short ones held in the view, long ones in
        // buffers (sliced by the take that deals them out).
        for keys in [["g1", "g2"], ["f", "d"], ["g1", "gv"], ["lv", "d"]] {
            let group = || keys.iter().map(|k| col(&batch, k)).collect::<Vec<_>>();
            workers_agree_with_one(&batch, group);
        }
    }

    /// `batch` with two string view columns more: `gv`, `g2` as views
    /// (short values, held in the views), and `lv`, a long value a
    /// `g1` (held in data buffers), both with `g2`'s NULLs.
    fn with_views(batch: &RecordBatch) -> RecordBatch {
        let g1 = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let g2 = batch.column(1).as_string::<i32>();
        let gv = arrow::array::StringViewArray::from_iter(g2.iter());
        let lv = arrow::array::StringViewArray::from_iter(
            g1.iter()
                .zip(g2.iter())
                .map(|(k, g2)| g2.map(|_| format!("a value longer than a view holds {k:?}"))),
        );
        let mut fields = batch.schema().fields().to_vec();
        fields.push(Arc::new(Field::new("gv", DataType::Utf8View, true)));
        fields.push(Arc::new(Field::new("lv", DataType::Utf8View, true)));
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(gv));
        columns.push(Arc::new(lv));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn workers_agree_with_one(batch: &RecordBatch, group: impl Fn() -> Vec<Expr>) {
        let batch = batch.clone();
        let (expected, ..) = run(unlimited(), &batch, group());
        for workers in [2, 3] {
            let (out, way) = run_parallel(unlimited(), &batch, group(), workers, false).unwrap();
            assert_eq!(way, parallel::Way::DealtByKey);
            assert_same(&out, &expected);
            // Each worker spills on its own under a pool this small.
            let ctx = context(
                MemoryBudget::with_pool_bytes(3_000_000),
                temp_dir(),
                2,
                64,
                1024,
            );
            let (out, _) = run_parallel(ctx.clone(), &batch, group(), workers, false).unwrap();
            assert!(
                ctx.spill.spill_files() > 0,
                "{workers} workers did not spill"
            );
            assert_same(&out, &expected);
            assert_clean(&ctx);
        }
    }

    /// Fine partitions are merged alone, unless the coarse one they fall in
    /// has files: then with it.
    #[test]
    fn merge_tasks_join_fine_partitions_to_their_coarse_one_only_where_it_has_files() {
        let ctx = unlimited();
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let file = || {
            let w = ctx.spill.writer(schema.clone(), "test").unwrap();
            w.finish().unwrap()
        };
        let files = |n: usize| (0..n).map(|_| file()).collect::<Vec<_>>();
        // Coarse partition 1 has a file; fine partitions 2 and 3 are its
        // halves, 0 and 5 lie in coarse 0 and 2, which have none.
        let mut coarse: Vec<Vec<SpillFile>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
        coarse[1] = files(1);
        let mut fine: Vec<Vec<SpillFile>> = (0..2 * PARTITIONS).map(|_| Vec::new()).collect();
        fine[0] = files(2);
        fine[2] = files(1);
        fine[3] = files(1);
        fine[5] = files(1);
        let path = |f: &SpillFile| f.path().to_path_buf();
        let (c1, f0, f2, f3, f5) = (
            path(&coarse[1][0]),
            fine[0].iter().map(path).collect::<Vec<_>>(),
            path(&fine[2][0]),
            path(&fine[3][0]),
            path(&fine[5][0]),
        );
        let mut tasks = Vec::new();
        merge_tasks(coarse, fine, &mut tasks);
        let mut got: Vec<Vec<std::path::PathBuf>> = tasks
            .iter()
            .map(|(level, files)| {
                assert_eq!(*level, 1);
                files.iter().map(path).collect()
            })
            .collect();
        got.sort();
        let mut want = vec![f0, vec![c1, f2, f3], vec![f5]];
        want.sort();
        assert_eq!(got, want);
        // As many fine partitions as coarse: each joins its coarse one.
        let mut tasks = Vec::new();
        let mut coarse: Vec<Vec<SpillFile>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
        coarse[3] = files(1);
        let mut fine: Vec<Vec<SpillFile>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
        fine[3] = files(1);
        fine[4] = files(1);
        merge_tasks(coarse, fine, &mut tasks);
        let sizes: Vec<usize> = tasks.iter().map(|(_, f)| f.len()).collect();
        assert_eq!(sizes, vec![2, 1]);
    }

    /// Nearly a group a row under a small pool: every worker passes its
    /// rows through, and the dealer then scatters whole batches. The
    /// result is the single aggregate's, whether partitions merge at one
    /// level or must be split again.
    ///
    /// The input is long enough that the dealer is still dealing when the
    /// last worker switches, however late the threads run: with 60k rows,
    /// three workers sometimes switched only after the input had ended
    /// (one run in about six on a busy machine), and nothing was scattered.
    #[test]
    fn scattered_batches_give_the_single_aggregates_result() {
        let batch = with_views(&input(200_000, 1_000_000, 29));
        let group = || vec![col(&batch, "g1"), col(&batch, "gv")];
        let (expected, ..) = run_with(unlimited(), &batch, group(), folding_aggregates(&batch));
        for (workers, pool_bytes, batch_rows, deeper) in [
            (2, 6_000_000, 1024, false),
            (3, 8_000_000, 1024, false),
            (2, 2_000_000, 256, true),
        ] {
            let ctx = context(
                MemoryBudget::with_pool_bytes(pool_bytes),
                temp_dir(),
                2,
                64,
                batch_rows,
            );
            let (aggregates, schema, source) =
                setup_with(&batch, &group(), folding_aggregates(&batch));
            let mut op = parallel::ParallelAggregate::new(
                ctx.clone(),
                source,
                group(),
                aggregates,
                schema.clone(),
                workers,
            )
            .unwrap();
            let mut out = Vec::new();
            while let Some(b) = op.next_batch().unwrap() {
                out.push(b);
            }
            assert!(
                op.scattered(),
                "{workers} workers, {pool_bytes} B: not scattered"
            );
            let deepest = op.deepest_level();
            assert!(deepest > deeper as u32, "{pool_bytes} B: level {deepest}");
            let out = normalized(&concat_batches(&schema, &out).unwrap(), 2);
            assert_same(&out, &expected);
            drop(op);
            assert_clean(&ctx);
        }
        // An input that fails after the dealer scattered: the workers stop
        // (none waits for another's partitions) and leave no file behind.
        let ctx = context(
            MemoryBudget::with_pool_bytes(6_000_000),
            temp_dir(),
            2,
            64,
            1024,
        );
        let (aggregates, schema, mut source) =
            setup_with(&batch, &group(), folding_aggregates(&batch));
        source.fail_at_end = true;
        let mut op =
            parallel::ParallelAggregate::new(ctx.clone(), source, group(), aggregates, schema, 2)
                .unwrap();
        let err = std::iter::from_fn(|| op.next_batch().transpose())
            .find_map(Result::err)
            .expect("the input's failure");
        assert!(err.to_string().contains("input failed"), "{err}");
        assert!(op.scattered(), "the failing run did not scatter");
        drop(op);
        assert_clean(&ctx);
    }

    #[test]
    fn aggregates_sharing_partitions_merge_each_others() {
        // Rows split by key, as workers are dealt them, so that the two
        // aggregates' groups never meet; each spills, and their partitions
        // go into one pool.
        let batch = input(60_000, 20_000, 23);
        let g1 = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let even: BooleanArray = g1
            .iter()
            .map(|v| Some(v.is_none_or(|v| v % 2 == 0)))
            .collect();
        let first = |b: &RecordBatch| {
            let keys = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            keys.iter().filter(|v| v.is_none_or(|v| v % 2 == 0)).count()
        };
        let halves = [
            arrow::compute::filter_record_batch(&batch, &even).unwrap(),
            arrow::compute::filter_record_batch(&batch, &arrow::compute::not(&even).unwrap())
                .unwrap(),
        ];
        let group = || vec![col(&batch, "g1"), col(&batch, "g2")];
        let (expected, ..) = run_with(unlimited(), &batch, group(), folding_aggregates(&batch));
        let ctx = context(
            MemoryBudget::with_pool_bytes(3_000_000),
            temp_dir(),
            2,
            64,
            1024,
        );
        let pool = SharedPartitions::default();
        let mut ops: Vec<Aggregate> = halves
            .iter()
            .map(|half| {
                let (aggregates, schema, source) =
                    setup_with(half, &group(), folding_aggregates(&batch));
                let mut op =
                    Aggregate::new(ctx.clone(), source, group(), aggregates, schema).unwrap();
                op.share_partitions(pool.clone());
                op
            })
            .collect();
        // Each reads its input, puts its partitions in the pool and merges
        // one; then the second merges all the others, the first's among
        // them, and the first only finishes the one it took.
        let mut out = Vec::new();
        out.extend(ops[0].next_batch().unwrap());
        out.extend(ops[1].next_batch().unwrap());
        let mut second_took_firsts = 0;
        while let Some(b) = ops[1].next_batch().unwrap() {
            second_took_firsts += first(&b);
            out.push(b);
        }
        assert!(pool.lock().unwrap().ready.is_empty());
        while let Some(b) = ops[0].next_batch().unwrap() {
            out.push(b);
        }
        assert!(ops.iter().all(|op| op.level_deepest >= 1), "both spill");
        assert!(
            second_took_firsts > 0,
            "the second merged none of the first's"
        );
        let schema = out[0].schema();
        let out = normalized(&concat_batches(&schema, &out).unwrap(), 2);
        assert_same(&out, &expected);
        drop(ops);
        assert_clean(&ctx);
    }

    #[test]
    fn the_way_follows_the_keys_in_the_first_rows_and_the_aggregates() {
        let batch = input(60_000, 20_000, 13);
        // Aggregates whose partial states are smaller than their rows.
        let folding = || -> Vec<AggregateExpr> {
            all_aggregates(&batch)
                .into_iter()
                .filter(parallel::folds)
                .collect()
        };
        let way = |group: Vec<Expr>, aggregates: Vec<AggregateExpr>| {
            let (aggregates, schema, source) = setup_with(&batch, &group, aggregates);
            let mut op =
                parallel::ParallelAggregate::new(unlimited(), source, group, aggregates, schema, 2)
                    .unwrap();
            op.next_batch().unwrap();
            op.way().unwrap()
        };
        use parallel::Way::{DealtByKey, TwoPhase};
        // g2 has six keys (five and NULL) in the first 1024 rows; g1 has
        // hundreds.
        assert_eq!(way(vec![col(&batch, "g2")], folding()), TwoPhase);
        assert_eq!(way(vec![], folding()), TwoPhase);
        assert_eq!(way(vec![col(&batch, "g1")], folding()), DealtByKey);
        // DISTINCT, string_agg and quantiles do not shrink in a partial
        // state.
        assert_eq!(
            way(vec![col(&batch, "g2")], all_aggregates(&batch)),
            DealtByKey
        );
    }

    #[test]
    fn two_phases_give_the_single_aggregates_result_in_memory_and_spilled() {
        // Many groups and every aggregate, the way forced: the partial
        // tables and the final merge all spill under the small pool.
        let batch = input(60_000, 20_000, 17);
        for group in [vec![col(&batch, "g1"), col(&batch, "g2")], vec![]] {
            let (expected, ..) = run(unlimited(), &batch, group.clone());
            for workers in [2, 3] {
                let two_phase = |ctx: Arc<RunContext>| {
                    run_parallel_with(
                        ctx,
                        &batch,
                        group.clone(),
                        all_aggregates(&batch),
                        workers,
                        false,
                        Some(parallel::Way::TwoPhase),
                    )
                    .unwrap()
                    .0
                };
                assert_same_but_the_pick(&two_phase(unlimited()), &expected);
                if group.is_empty() {
                    // Its one group's string_agg and quantile states keep
                    // every value: more than the pool below leaves the
                    // final merge.
                    continue;
                }
                let ctx = context(
                    MemoryBudget::with_pool_bytes(4_500_000),
                    temp_dir(),
                    2,
                    64,
                    1024,
                );
                let out = two_phase(ctx.clone());
                assert!(
                    ctx.spill.spill_files() > 0,
                    "{workers} workers did not spill"
                );
                assert_same_but_the_pick(&out, &expected);
                assert_clean(&ctx);
            }
        }
    }

    /// [`assert_same`], but any_value only picks a value where `b` has one:
    /// two phases merge partial states in the order the workers finish
    /// them, so which of a group's values comes first varies.
    fn assert_same_but_the_pick(a: &RecordBatch, b: &RecordBatch) {
        let schema = a.schema();
        let (picks, rest): (Vec<usize>, Vec<usize>) = (0..schema.fields().len())
            .partition(|&i| schema.field(i).name().starts_with("any_value"));
        assert!(!picks.is_empty());
        for &i in &picks {
            assert_eq!(a.column(i).logical_nulls(), b.column(i).logical_nulls());
        }
        assert_same(&a.project(&rest).unwrap(), &b.project(&rest).unwrap());
    }

    #[test]
    fn a_failing_input_stops_every_parallel_worker() {
        let batch = input(30_000, 20_000, 3);
        for way in [parallel::Way::DealtByKey, parallel::Way::TwoPhase] {
            let ctx = context(
                MemoryBudget::with_pool_bytes(4_500_000),
                temp_dir(),
                2,
                64,
                1024,
            );
            let group = vec![col(&batch, "g1")];
            let aggregates = all_aggregates(&batch);
            let err = run_parallel_with(ctx.clone(), &batch, group, aggregates, 2, true, Some(way))
                .unwrap_err();
            assert!(err.to_string().contains("input failed"), "{way:?}: {err}");
            assert!(
                ctx.spill.spill_files() > 0,
                "{way:?}: the test should have spilled"
            );
            assert_clean(&ctx);
        }
    }

    /// The output, normalized; the deepest level of partitions merged;
    /// whether rows passed through to the partitions.
    fn run(
        ctx: Arc<RunContext>,
        input: &RecordBatch,
        group: Vec<Expr>,
    ) -> (RecordBatch, u32, bool) {
        let aggregates = all_aggregates(input);
        run_with(ctx, input, group, aggregates)
    }

    fn run_with(
        ctx: Arc<RunContext>,
        input: &RecordBatch,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
    ) -> (RecordBatch, u32, bool) {
        let (aggregates, schema, source) = setup_with(input, &group, aggregates);
        let mut op = Aggregate::new(ctx, source, group, aggregates, schema.clone()).unwrap();
        let mut out = Vec::new();
        while let Some(b) = op.next_batch().unwrap() {
            assert!(b.num_rows() > 0, "operators never return empty batches");
            out.push(b);
        }
        (
            normalized(&concat_batches(&schema, &out).unwrap(), 2),
            op.level_deepest,
            op.passed_through,
        )
    }

    /// Rows sorted by the first `keys` columns, and each string_agg's
    /// pieces sorted: group order and concatenation order are not defined.
    fn normalized(batch: &RecordBatch, keys: usize) -> RecordBatch {
        let sort: Vec<SortColumn> = (0..keys)
            .map(|i| SortColumn {
                values: batch.column(i).clone(),
                options: None,
            })
            .collect();
        let sorted = if sort.is_empty() {
            batch.clone()
        } else {
            take_record_batch(batch, &lexsort_to_indices(&sort, None).unwrap()).unwrap()
        };
        let columns = sorted
            .columns()
            .iter()
            .zip(sorted.schema().fields())
            .map(|(c, f)| -> ArrayRef {
                if !f.name().starts_with("string_agg") {
                    return c.clone();
                }
                let pieces: StringArray = c
                    .as_string::<i32>()
                    .iter()
                    .map(|v| {
                        v.map(|v| {
                            let mut p: Vec<&str> = v.split(',').collect();
                            p.sort();
                            p.join(",")
                        })
                    })
                    .collect();
                Arc::new(pieces)
            })
            .collect();
        RecordBatch::try_new(sorted.schema(), columns).unwrap()
    }

    /// Equal, but for floats of variances, which differ in the last bits
    /// when partial states merge in another order.
    fn assert_same(a: &RecordBatch, b: &RecordBatch) {
        assert_eq!(a.schema(), b.schema());
        assert_eq!(a.num_rows(), b.num_rows());
        for (i, f) in a.schema().fields().iter().enumerate() {
            if f.name().starts_with("stddev") {
                let (x, y) = (
                    a.column(i).as_primitive::<arrow::datatypes::Float64Type>(),
                    b.column(i).as_primitive::<arrow::datatypes::Float64Type>(),
                );
                for r in 0..x.len() {
                    assert_eq!(x.is_null(r), y.is_null(r), "{} row {r}", f.name());
                    let (p, q) = (x.value(r), y.value(r));
                    assert!(
                        (p - q).abs() <= 1e-9 * p.abs().max(1.0),
                        "{} row {r}: {p} {q}",
                        f.name()
                    );
                }
            } else {
                assert_eq!(a.column(i), b.column(i), "column {}", f.name());
            }
        }
    }

    fn unlimited() -> Arc<RunContext> {
        context(MemoryBudget::unlimited(), temp_dir(), 2, 64, 1024)
    }

    /// Over input sorted on the group keys, the streaming aggregation gives
    /// the hash aggregation's result, whether groups span many batches or a
    /// batch holds many groups, and with the sort's directions either way.
    #[test]
    fn streaming_over_sorted_input_matches_the_hash_aggregate() {
        use super::streaming::{suits, StreamingAggregate};
        for (groups, seed) in [(3, 1), (2_000, 2)] {
            let batch = input(12_000, groups, seed);
            let order = lexsort_to_indices(
                &[
                    SortColumn {
                        values: batch.column(1).clone(),
                        options: Some(arrow::compute::SortOptions {
                            descending: true,
                            nulls_first: true,
                        }),
                    },
                    SortColumn {
                        values: batch.column(0).clone(),
                        options: None,
                    },
                ],
                None,
            )
            .unwrap();
            let sorted = take_record_batch(&batch, &order).unwrap();
            // As lexsort was told: g2 descending, NULLs first; g1 by
            // arrow's default, ascending with NULLs first.
            let order = [
                OrderColumn {
                    column: 1,
                    descending: true,
                    nulls_first: true,
                },
                OrderColumn {
                    column: 0,
                    descending: false,
                    nulls_first: true,
                },
            ];
            let group = || vec![col(&sorted, "g1"), col(&sorted, "g2")];
            assert!(suits(&group(), &[1, 0], &sorted.schema()));
            let (expected, ..) = run(unlimited(), &sorted, group());
            // Pieces of 1 to 700 rows: one group across many, many in one.
            let mut r = Lcg(seed);
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < sorted.num_rows() {
                let n = (1 + r.below(700) as usize).min(sorted.num_rows() - at);
                pieces.push(sorted.slice(at, n));
                at += n;
            }
            let (aggregates, schema, _) = setup(&sorted, &group());
            let source = Batches::new(sorted.schema(), pieces);
            let mut op = StreamingAggregate::new(
                unlimited(),
                source,
                group(),
                aggregates,
                schema.clone(),
                &order,
            )
            .unwrap();
            let mut out = Vec::new();
            while let Some(b) = op.next_batch().unwrap() {
                assert!(b.num_rows() > 0, "operators never return empty batches");
                out.push(b);
            }
            let got = normalized(&concat_batches(&schema, &out).unwrap(), 2);
            assert_same(&got, &expected);

            // The same rows not in that order: an error, not groups twice.
            let (aggregates, schema, source) = setup(&batch, &group());
            let mut op =
                StreamingAggregate::new(unlimited(), source, group(), aggregates, schema, &order)
                    .unwrap();
            let failed = std::iter::from_fn(|| op.next_batch().transpose()).find(|b| b.is_err());
            match failed {
                Some(Err(Error::Execution(m))) => assert!(m.contains("out of that order"), "{m}"),
                other => panic!("unordered input gave {other:?}"),
            }
        }
    }

    /// Pressure that refuses every request does not stop a streaming
    /// aggregation whose open group holds a few bytes more than before.
    #[test]
    fn streaming_goes_on_under_pressure_while_the_open_group_is_small() {
        use super::streaming::StreamingAggregate;
        let batch = input(5_000, 40, 3);
        let order = lexsort_to_indices(
            &[SortColumn {
                values: batch.column(0).clone(),
                options: None,
            }],
            None,
        )
        .unwrap();
        let sorted = take_record_batch(&batch, &order).unwrap();
        let group = || vec![col(&sorted, "g1")];
        let (expected, ..) = run(unlimited(), &sorted, group());
        let budget = MemoryBudget::with_pool_bytes(1 << 20);
        let ctx = context(budget.clone(), temp_dir(), 1, 64, 1024);
        budget.set_pressure(true);
        let (aggregates, schema, source) = setup(&sorted, &group());
        let g1 = OrderColumn {
            column: 0,
            descending: false,
            nulls_first: true,
        };
        let mut op = StreamingAggregate::new(
            ctx.clone(),
            source,
            group(),
            aggregates,
            schema.clone(),
            &[g1],
        )
        .unwrap();
        let mut out = Vec::new();
        while let Some(b) = op.next_batch().unwrap() {
            out.push(b);
        }
        drop(op);
        budget.set_pressure(false);
        let got = normalized(&concat_batches(&schema, &out).unwrap(), 2);
        assert_same(&got, &expected);
        assert_clean(&ctx);
    }

    #[test]
    fn streaming_needs_the_group_columns_leading_the_order() {
        use super::streaming::suits;
        let batch = input(10, 5, 1);
        let schema = batch.schema();
        let (g1, g2, f) = (col(&batch, "g1"), col(&batch, "g2"), col(&batch, "f"));
        assert!(suits(std::slice::from_ref(&g1), &[0, 1], &schema));
        assert!(suits(&[g2.clone(), g1.clone()], &[0, 1, 2], &schema));
        assert!(
            !suits(std::slice::from_ref(&g2), &[0, 1], &schema),
            "not the leading key"
        );
        assert!(
            !suits(&[g1.clone(), g2.clone()], &[0], &schema),
            "order too short"
        );
        assert!(
            !suits(std::slice::from_ref(&f), &[4], &schema),
            "floats: NaNs sort apart"
        );
        assert!(!suits(&[], &[0], &schema), "no GROUP BY");
        let negated = Expr::Negate(Box::new(g1));
        assert!(!suits(&[negated], &[0], &schema), "an expression");
    }

    #[test]
    fn a_tiny_budget_forces_multi_level_spills_with_identical_results() {
        let batch = input(60_000, 20_000, 7);
        let group = || vec![col(&batch, "g1"), col(&batch, "g2")];
        let (expected, level, _) = run(unlimited(), &batch, group());
        assert_eq!(level, 0, "the unlimited run should not spill");
        assert!(
            expected.num_rows() > 20_000,
            "{} groups",
            expected.num_rows()
        );
        let ctx = context(
            MemoryBudget::with_pool_bytes(1_000_000),
            temp_dir(),
            2,
            64,
            1024,
        );
        let (out, level, _) = run(ctx.clone(), &batch, group());
        assert!(level >= 2, "only {level} level(s) of partitions");
        assert_same(&out, &expected);
        assert_clean(&ctx);
    }

    #[test]
    fn rows_pass_through_when_a_full_table_has_reduced_nothing() {
        // Nearly a group a row: the first table to spill holds about as
        // many groups as rows read (12.6k in 13k), and the rest passes
        // through. Three rows a group (12.6k in about 20k), or an aggregate
        // that does not fold: it does not, though the table spills too.

        let folding = folding_aggregates;
        type Aggregates = fn(&RecordBatch) -> Vec<AggregateExpr>;
        let cases: [(u64, Aggregates, bool); 3] = [
            (1_000_000, folding, true),
            (20_000, folding, false),
            (1_000_000, all_aggregates, false),
        ];
        for (groups, aggregates, passes) in cases {
            let batch = input(60_000, groups, 19);
            let group = || vec![col(&batch, "g1")];
            let (expected, ..) = run_with(unlimited(), &batch, group(), aggregates(&batch));
            let ctx = context(
                MemoryBudget::with_pool_bytes(6_000_000),
                temp_dir(),
                2,
                64,
                1024,
            );
            let (out, level, passed) = run_with(ctx.clone(), &batch, group(), aggregates(&batch));
            assert!(level >= 1, "{groups} groups did not spill");
            assert_eq!(passed, passes, "{groups} groups");
            assert_same(&out, &expected);
            assert_clean(&ctx);
        }
    }

    /// Aggregates that fold, but not min, max or approx_count_distinct:
    /// the tests' batches are slices of one, whose whole buffers the first
    /// two count as each batch's growth, and the third's sketch is 1 KB a
    /// group. Under a small budget a table would spill after every batch.
    fn folding_aggregates(b: &RecordBatch) -> Vec<AggregateExpr> {
        let mut all = all_aggregates(b);
        all.retain(|a| {
            parallel::folds(a) && !matches!(a.func, F::Min | F::Max | F::ApproxCountDistinct)
        });
        all
    }

    #[test]
    fn a_table_that_reduces_nothing_passes_through_before_the_budget_refuses_it() {
        // 300k rows in nearly as many groups: at PASS_THROUGH_CHECK_GROUPS
        // groups, even a table the budget never refuses spills, and the
        // rest passes through. Three rows a group (100k groups) stays in
        // memory. The reference has an aggregate that does not fold, which
        // never passes through; its columns that the folding ones share
        // must agree.
        for (groups, passes) in [(1u64 << 40, true), (100_000, false)] {
            let batch = input(300_000, groups, 23);
            let group = || vec![col(&batch, "g1")];
            let (expected, ..) = run_with(unlimited(), &batch, group(), all_aggregates(&batch));
            let ctx = unlimited();
            let (out, level, passed) =
                run_with(ctx.clone(), &batch, group(), folding_aggregates(&batch));
            assert_eq!(passed, passes, "{groups} groups");
            assert_eq!(level >= 1, passes, "{groups} groups");
            let shared = out
                .schema()
                .fields()
                .iter()
                .map(|f| expected.column_by_name(f.name()).unwrap().clone())
                .collect();
            let shared = RecordBatch::try_new(out.schema(), shared).unwrap();
            assert_same(&out, &shared);
            assert_clean(&ctx);
        }
    }

    #[test]
    fn merging_ends_under_pressure_that_refuses_every_request() {
        // RSS above the pressure line for the whole run refuses every
        // reservation; the table floor must still let partitions merge.
        let batch = input(60_000, 20_000, 5);
        let group = || vec![col(&batch, "g1"), col(&batch, "g2")];
        let (expected, ..) = run(unlimited(), &batch, group());
        let ctx = context(
            MemoryBudget::with_pool_bytes(4_000_000),
            temp_dir(),
            2,
            64,
            1024,
        );
        let aggregates = all_aggregates(&batch);
        let schema = expected.schema();
        let pieces: Vec<RecordBatch> = (0..batch.num_rows())
            .step_by(1000)
            .map(|i| batch.slice(i, 1000))
            .collect();
        let source = Batches::new(batch.schema(), pieces);
        let mut op =
            Aggregate::new(ctx.clone(), source, group(), aggregates, schema.clone()).unwrap();
        // Pressure from here on: the creation-time reservations are held.
        ctx.budget.set_pressure(true);
        let mut got = Vec::new();
        while let Some(b) = op.next_batch().unwrap() {
            got.push(b);
        }
        let out = normalized(&concat_batches(&schema, &got).unwrap(), 2);
        let level = op.level_deepest;
        assert!(level >= 1, "pressure should force a spill");
        assert_same(&out, &expected);
    }

    #[test]
    fn results_match_a_reference_computed_row_by_row() {
        let batch = input(5_000, 40, 11);
        let (out, ..) = run(
            unlimited(),
            &batch,
            vec![col(&batch, "g1"), col(&batch, "g2")],
        );
        // Recompute count(*), sum(x), min(s) and count(DISTINCT x) by hand.
        let g1 = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let g2 = batch.column(1).as_string::<i32>();
        let x = batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let s = batch.column(5).as_string::<i32>();
        type Acc = (
            i64,
            Option<i64>,
            Option<String>,
            std::collections::BTreeSet<i64>,
        );
        let mut groups: std::collections::BTreeMap<(Option<i64>, Option<String>), Acc> =
            Default::default();
        for r in 0..batch.num_rows() {
            let key = (
                g1.is_valid(r).then(|| g1.value(r)),
                g2.is_valid(r).then(|| g2.value(r).to_string()),
            );
            let e = groups.entry(key).or_default();
            e.0 += 1;
            if x.is_valid(r) {
                e.1 = Some(e.1.unwrap_or(0) + x.value(r));
                e.3.insert(x.value(r));
            }
            if s.is_valid(r) && e.2.as_deref().is_none_or(|m| s.value(r) < m) {
                e.2 = Some(s.value(r).to_string());
            }
        }
        assert_eq!(out.num_rows(), groups.len());
        let schema = out.schema();
        let at = |name: &str| {
            schema
                .fields()
                .iter()
                .position(|f| f.name() == name)
                .unwrap()
        };
        let count = out
            .column(at("count(*)"))
            .as_primitive::<arrow::datatypes::Int64Type>();
        let sum = out
            .column(at("sum(x)"))
            .as_primitive::<arrow::datatypes::Int64Type>();
        let min = out.column(at("min(s)")).as_string::<i32>();
        let distinct = out
            .column(at("count(DISTINCT x)"))
            .as_primitive::<arrow::datatypes::Int64Type>();
        let og1 = out.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let og2 = out.column(1).as_string::<i32>();
        for r in 0..out.num_rows() {
            let key = (
                og1.is_valid(r).then(|| og1.value(r)),
                og2.is_valid(r).then(|| og2.value(r).to_string()),
            );
            let e = &groups[&key];
            assert_eq!(count.value(r), e.0, "{key:?}");
            assert_eq!(sum.is_valid(r).then(|| sum.value(r)), e.1, "{key:?}");
            assert_eq!(
                min.is_valid(r).then(|| min.value(r).to_string()),
                e.2,
                "{key:?}"
            );
            assert_eq!(distinct.value(r), e.3.len() as i64, "{key:?}");
        }
    }

    /// `func` over the first column of `batch`, without groups, fed in
    /// pieces of `piece_rows`.
    fn one_global_aggregate(
        ctx: Arc<RunContext>,
        batch: &RecordBatch,
        func: F,
        piece_rows: usize,
    ) -> Aggregate {
        let name = batch.schema().field(0).name().clone();
        let aggregates = vec![call(func, Some(col(batch, &name)), false, None)];
        let plan = LogicalPlan::aggregate(
            LogicalPlan::Values {
                batch: batch.clone(),
            },
            vec![],
            aggregates.clone(),
        )
        .unwrap();
        let rows = batch.num_rows();
        let pieces = (0..rows)
            .step_by(piece_rows)
            .map(|i| batch.slice(i, piece_rows.min(rows - i)))
            .collect();
        Aggregate::new(
            ctx,
            Batches::new(batch.schema(), pieces),
            vec![],
            aggregates,
            plan.schema(),
        )
        .unwrap()
    }

    #[test]
    fn approx_count_distinct_is_within_a_few_percent() {
        let n = 200_000i64;
        // Every value twice, and NULLs, which do not count.
        let values: Int64Array = (0..2 * n)
            .map(|i| Some(i % n))
            .chain(std::iter::repeat_n(None, 1000))
            .collect();
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
        let mut op = one_global_aggregate(unlimited(), &batch, F::ApproxCountDistinct, 4096);
        let out = op.next_batch().unwrap().unwrap();
        let estimate = out
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        let error = (estimate - n).abs() as f64 / n as f64;
        assert!(error < 0.1, "estimate {estimate} of {n}");
    }

    #[test]
    fn empty_input_gives_one_row_without_groups_and_none_with() {
        let batch = input(0, 10, 1);
        let (out, ..) = run(unlimited(), &batch, vec![]);
        assert_eq!(out.num_rows(), 1);
        let counts = out.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(counts.value(0), 0);
        assert!(out.column(2).is_null(0), "sum over no rows is NULL");
        let (out, ..) = run(unlimited(), &batch, vec![col(&batch, "g1")]);
        assert_eq!(out.num_rows(), 0);
    }

    #[test]
    fn a_group_too_big_for_the_budget_fails_cleanly() {
        // One group whose string_agg outgrows the pool: repartitioning
        // cannot split it, so the operator gives up with a clear error.
        let rows = 50_000;
        let text: StringArray = (0..rows).map(|i| Some(format!("value-{i:08}"))).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(text)]).unwrap();
        let ctx = context(
            MemoryBudget::with_pool_bytes(1_000_000),
            temp_dir(),
            2,
            64,
            1024,
        );
        let separator = ",".into();
        let func = F::StringAgg { separator };
        let mut op = one_global_aggregate(ctx.clone(), &batch, func, 1000);
        let err = op.next_batch().unwrap_err();
        assert!(matches!(err, Error::ResourcesExhausted(_)), "{err}");
        drop(op);
        let left = std::fs::read_dir(ctx.spill.dir()).unwrap().count();
        assert_eq!(left, 1, "only the lock file should be left");
    }
}
