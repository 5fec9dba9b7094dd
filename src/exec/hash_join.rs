//! Hash join: the right input is built into a hash table on its join keys,
//! then the left input streams past it. (The optimizer puts the smaller
//! input on the right.) When the build side does not fit,
//! both sides are partitioned to disk by hash (grace hash join) and joined
//! partition by partition; a partition that still does not fit is split
//! again with a new hash, and one that splitting cannot shrink (a key too
//! common for memory) is joined a block of build rows at a time.
//!
//! Every join kind runs on one shape, building the right side:
//!
//! - INNER: pairs that match (equal keys, then `filter`).
//! - LEFT: and each left row without a pair, with NULLs for the right.
//! - RIGHT: and, at the end, each right row that never paired, with NULLs
//!   for the left (a matched bit a build row).
//! - FULL: both.
//! - SEMI / ANTI: each left row with / without a pair, once, left columns
//!   only. With `null_aware` (NOT IN), a NULL key on the left, or any NULL
//!   key on a non-empty right, leaves the row's outcome unknown: it is not
//!   returned. What "non-empty" and "any NULL" mean is always the whole
//!   right side, not a partition of it.
//!
//! Keys are arrow-row encodings of the key columns, interned in a
//! [`GroupTable`]; the build rows of one key are chained through `next`.
//! A NULL key never matches. No keys at all is a cross join (every build
//! row is one chain), with `filter` for any condition that is not an
//! equality.
//!
//! # Spilling
//!
//! The work is a stack of tasks, each a build side and a probe side at a
//! level of partitioning; the first is the two inputs at level 0.
//!
//! 1. **Build.** Build rows are added while the budget grants them. If the
//!    whole build side fits, the probe side streams past it: done.
//! 2. **Partition.** If the budget refuses, what was built and the rest of
//!    the build side are written into [`PARTITIONS`] spill files each by
//!    the top bits of a hash of the key seeded by the level. Equal keys land
//!    in the same partition, so each partition is a join of its own.
//!    **Hybrid:** the build partitions that fit what the budget has free
//!    (judged by what a build row cost so far) are read back into memory,
//!    one level down. The probe side then streams: its rows of those
//!    partitions are joined at once, the rest written to their partitions'
//!    files. Each other pair of files is pushed as a task one level down;
//!    pairs that cannot produce rows (an empty build side for an inner
//!    join, an empty probe side unless right rows are kept) are dropped.
//!    SF1 lineitem JOIN orders at 256MB kept 2 of 8 partitions and spilled
//!    327 MB instead of 427 MB.
//! 3. **Blocks.** A task without keys (a cross or pure non-equi join), one
//!    whose partition held nearly all its parent's build rows (splitting
//!    does not help: one hot key), or one [`LEVELS_MAX`] deep, is joined a
//!    block at a time: each block of build rows that fits is joined against
//!    a full pass over the probe side's spill files. Probe rows' match bits
//!    are kept across blocks (one bit a row), and a last pass emits the
//!    probe rows that LEFT/FULL/ANTI keep or SEMI returns; unmatched build
//!    rows are emitted at the end of their block's pass.
//!
//! # Memory
//!
//! - Each build batch is reserved (its Arrow size, 13 bytes a row for its
//!   chain link, location and matched bit, and the key table's growth)
//!   before it is kept. View columns that use under half of the buffers
//!   they share with other batches are copied out first, so that a batch
//!   holds, and is counted for, its own strings only.
//! - At creation the operator reserves the spill writers' buffers and a
//!   floor of build memory ([`BUILD_FLOOR_BYTES`]). The floor is always
//!   usable, so partitions shrink level by level until they fit it, and
//!   every block holds at least some rows, even when memory pressure
//!   refuses every other request; a block also always takes one batch.
//! - The probe side streams; an output batch holds at most `--batch-rows`
//!   pairs, however many build rows share a key. Spill files are read one
//!   at a time a side.
//! - Block joins reserve one bit a probe row of the task for match bits.
//! - Partitioning on a writer thread (two threads or more, a pool of 48 MB
//!   or more; see `Partitioner`): at most [`PIECES_QUEUED_MAX`] pieces wait
//!   for it, about two input batches, and the pieces it gathers into
//!   batches are reserved ("join partition pieces").
//! - Resident partitions are built through the same reservation as any
//!   build; if the estimate of what they need was low and one is refused
//!   half built, it is spilled after all (see `keep_resident`).

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions,
    UInt32Array,
};
use arrow::compute::{concat_batches, filter_record_batch, interleave, take, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{Rows, SortField};

use crate::analyze;
use crate::error::{Error, Result};
use crate::exec::group_table::{grow_to, grown, normalize_key, GroupTable, Step, NO_GROUP};
use crate::exec::{true_mask, BoxedOperator, Operator, RunContext, THREADED_POOL_BYTES_MIN};
use crate::memory::Reservation;
use crate::plan::{Expr, JoinKind};
use crate::spill::{compact_views, SpillFile, SpillReader, SpillWriter, IO_BUFFER_BYTES};

const NONE: u32 = u32::MAX;

/// Reserved bytes a build row costs beyond its data: `next` (4), `rows`
/// (8) and `matched` (1).
const BUILD_ROW_BYTES: usize = 13;

/// Partitions a side splits into: the top bits of the key's hash.
pub const PARTITIONS: usize = 8;
const PARTITION_BITS: u32 = PARTITIONS.trailing_zeros();

/// Levels of partitioning before a task is joined by blocks. Each level
/// divides a task by [`PARTITIONS`], so after this many only keys too common
/// to split are left.
const LEVELS_MAX: u32 = 6;

/// Bytes one open spill writer holds: its write buffer and the IPC
/// encoder's scratch.
const SPILL_WRITER_BYTES: usize = IO_BUFFER_BYTES + 16 * 1024;

/// Build memory reserved at creation and always usable; see `# Memory`.
const BUILD_FLOOR_BYTES: usize = 256 * 1024;

/// The partitioning hash is seeded apart from the tables' (seeded by the
/// level), so that a partition's table does not see only keys that share
/// its hash's top bits.
const PARTITION_SEED: u64 = 0x9e37_79b9;

pub struct HashJoin {
    ctx: Arc<RunContext>,
    kind: JoinKind,
    left_keys: Vec<Expr>,
    right_keys: Vec<Expr>,
    key_fields: Vec<SortField>,
    filter: Option<Expr>,
    null_aware: bool,
    schema: SchemaRef,
    left_schema: SchemaRef,
    right_schema: SchemaRef,
    build: Build,
    /// Tasks still to join, the next last.
    tasks: Vec<Task>,
    stage: Stage,
    /// The probe side of the current task or pass.
    probe: Option<BoxedOperator>,
    /// The probe batch being joined.
    current: Option<Probe>,
    /// Next build row to consider for the unmatched-right output.
    unmatched_next: Option<usize>,
    /// The current task is being joined a block at a time.
    blocks: Option<Blocks>,
    /// What the whole build side held, once it has been partitioned; until
    /// then the current task's build side is the whole of it.
    whole_build: Option<BuildFlags>,
    task_build: BuildFlags,
    /// The deepest partitioning level met, and the number of blocks joined:
    /// what the tests check to know spilling happened.
    level_deepest: u32,
    blocks_joined: usize,
    /// Partitions with build rows kept in memory by hybrid partitioning.
    resident_partitions: usize,
    /// Times a resident partition was refused half built (`keep_resident`).
    resident_rollbacks: usize,
    /// A partitioning whose resident partitions are being probed: the
    /// other partitions become tasks once the probe side has been split
    /// (its files arrive in the slot).
    split: Option<(Split, ProbeFiles)>,
    /// Held for spill writers and the build floor; see `# Memory`.
    _reservation: Reservation,
}

/// A task's partitions, one level down.
struct Split {
    level: u32,
    right_files: Vec<Arc<Vec<SpillFile>>>,
    right_rows: Vec<u64>,
    /// Built in memory, not spilled as tasks.
    resident: Vec<bool>,
}

/// Where a [`HybridProbe`] leaves its rows and files a partition.
type ProbeFiles = Arc<std::sync::Mutex<Option<(Vec<u64>, Vec<Vec<SpillFile>>)>>>;

#[derive(Clone, Copy, Default)]
struct BuildFlags {
    any_row: bool,
    null_key: bool,
}

impl BuildFlags {
    fn or(self, other: BuildFlags) -> BuildFlags {
        BuildFlags {
            any_row: self.any_row || other.any_row,
            null_key: self.null_key || other.null_key,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Take the next task.
    Next,
    /// Stream the probe side past the build.
    Probe,
    /// Emit build rows no probe row paired with.
    Unmatched,
    /// After the last block: emit the probe rows that the match bits keep.
    Final,
}

/// One join of a build side and a probe side.
struct Task {
    level: u32,
    build: Side,
    probe: Side,
    /// Partitioning did not split this task's build side: join by blocks.
    unsplittable: bool,
}

enum Side {
    Input(BoxedOperator),
    Spilled(Arc<Vec<SpillFile>>),
}

impl Side {
    fn into_operator(self, schema: &SchemaRef, rows_max: usize) -> BoxedOperator {
        match self {
            Side::Input(op) => op,
            Side::Spilled(files) => Box::new(SpillSource::new(schema.clone(), files, rows_max)),
        }
    }
}

/// A task being joined a block of build rows at a time.
struct Blocks {
    level: u32,
    /// The probe side, read once a block and once more at the end.
    probe: Arc<Vec<SpillFile>>,
    /// The rest of the build side, and the batch the last block refused.
    build: BoxedOperator,
    carry: Option<RecordBatch>,
    /// One bit a probe row: whether it paired in any block so far.
    matched: Vec<u64>,
    /// Probe rows started in this pass.
    offset: usize,
    final_pass: bool,
    _reservation: Reservation,
}

/// The build side: its rows, and their key table.
struct Build {
    batches: Vec<RecordBatch>,
    batches_bytes: usize,
    table: GroupTable,
    /// Per key: its first build row, then `next` per row.
    heads: Vec<u32>,
    next: Vec<u32>,
    /// Per build row: (batch, row).
    rows: Vec<(u32, u32)>,
    matched: Vec<bool>,
    /// A build row had a NULL key (what NOT IN needs to know).
    has_null_key: bool,
    /// Whether the first probe batch has been looked up, and the table
    /// spread if most of its rows found nothing ([`Build::spread`]).
    spread_checked: bool,
    reservation: Reservation,
}

impl Build {
    /// Let go of every row, and start a table seeded by `level`.
    fn clear(&mut self, fields: &[SortField], level: u32) -> Result<()> {
        self.batches = Vec::new();
        self.batches_bytes = 0;
        self.table = GroupTable::new(fields.to_vec(), level as u64)?;
        self.heads = Vec::new();
        self.next = Vec::new();
        self.rows = Vec::new();
        self.matched = Vec::new();
        self.has_null_key = false;
        self.spread_checked = false;
        self.reservation.free();
        Ok(())
    }

    /// Spread the key table for lookups that mostly miss
    /// ([`GroupTable::spread`]), if the budget has the new table's bytes;
    /// otherwise leave it as it is.
    fn spread(&mut self) {
        let bytes = self.table.spread_bytes();
        if bytes == 0 || self.reservation.try_grow(bytes).is_err() {
            return;
        }
        self.table.spread();
        let held = self.held().saturating_sub(BUILD_FLOOR_BYTES);
        let _ = self.reservation.try_resize(held);
    }

    /// Heap bytes held.
    fn held(&self) -> usize {
        self.batches_bytes
            + self.table.size()
            + self.heads.capacity() * 4
            + self.rows.capacity() * BUILD_ROW_BYTES
    }
}

/// A probe batch in progress.
struct Probe {
    batch: RecordBatch,
    /// Per row: the first build row with the same key, or NONE.
    first: Vec<u32>,
    /// Per row: whether its key had a NULL.
    null_key: Vec<bool>,
    matched: Vec<bool>,
    /// Where pair production resumes: a row, and the next build row of its
    /// chain.
    row: usize,
    chain: u32,
    /// Pairs are done; the unmatched (or, for SEMI, matched) rows remain.
    pairs_done: bool,
    /// The batch's first row's place in the probe side of a block join.
    offset: usize,
}

impl HashJoin {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: Arc<RunContext>,
        probe: BoxedOperator,
        build: BoxedOperator,
        kind: JoinKind,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        null_aware: bool,
        schema: SchemaRef,
    ) -> Result<HashJoin> {
        let floor = HashJoin::reserve_floor(&ctx)?;
        HashJoin::with_floor(
            ctx, probe, build, kind, on, filter, null_aware, schema, floor,
        )
    }

    /// What every hash join reserves before it starts: its spill writers'
    /// buffers and its build floor (see `# Memory`).
    pub fn reserve_floor(ctx: &RunContext) -> Result<Reservation> {
        let mut reservation = ctx.budget.reservation("join spill buffers and build floor");
        reservation.try_grow(PARTITIONS * SPILL_WRITER_BYTES + BUILD_FLOOR_BYTES)?;
        Ok(reservation)
    }

    /// [`HashJoin::new`] with its floor reserved already.
    #[allow(clippy::too_many_arguments)]
    pub fn with_floor(
        ctx: Arc<RunContext>,
        probe: BoxedOperator,
        build: BoxedOperator,
        kind: JoinKind,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        null_aware: bool,
        schema: SchemaRef,
        floor: Reservation,
    ) -> Result<HashJoin> {
        let left_schema = probe.schema();
        let right_schema = build.schema();
        let (left_keys, right_keys): (Vec<Expr>, Vec<Expr>) = on.into_iter().unzip();
        let key_fields = right_keys
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(&right_schema)?)))
            .collect::<Result<Vec<_>>>()?;
        let build_reservation = ctx.budget.reservation("join build side");
        Ok(HashJoin {
            ctx,
            kind,
            left_keys,
            right_keys,
            filter,
            null_aware,
            schema,
            build: Build {
                batches: Vec::new(),
                batches_bytes: 0,
                table: GroupTable::new(key_fields.clone(), 0)?,
                heads: Vec::new(),
                next: Vec::new(),
                rows: Vec::new(),
                matched: Vec::new(),
                has_null_key: false,
                spread_checked: false,
                reservation: build_reservation,
            },
            key_fields,
            tasks: vec![Task {
                level: 0,
                build: Side::Input(build),
                probe: Side::Input(probe),
                unsplittable: false,
            }],
            stage: Stage::Next,
            probe: None,
            current: None,
            unmatched_next: None,
            blocks: None,
            whole_build: None,
            task_build: BuildFlags::default(),
            level_deepest: 0,
            blocks_joined: 0,
            resident_partitions: 0,
            resident_rollbacks: 0,
            split: None,
            left_schema,
            right_schema,
            _reservation: floor,
        })
    }

    /// Key columns of `batch` (floats normalised so that -0.0 meets 0.0),
    /// their encoding by `table`, and which rows have a NULL in any key.
    fn keys(
        table: &GroupTable,
        keys: &[Expr],
        batch: &RecordBatch,
    ) -> Result<(Option<Rows>, Vec<bool>)> {
        let columns = keys
            .iter()
            .map(|e| Ok(normalize_key(e.evaluate_to_array(batch)?)))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let mut null_key = vec![false; batch.num_rows()];
        for c in &columns {
            if let Some(nulls) = c.logical_nulls() {
                for (i, n) in null_key.iter_mut().enumerate() {
                    *n |= nulls.is_null(i);
                }
            }
        }
        Ok((table.encode(&columns)?, null_key))
    }

    /// Add build batches from `carry`, then `input`, while the budget grants
    /// them; a build that holds nothing takes one batch regardless. Returns
    /// the batch that was refused, or None when the input is exhausted.
    fn fill_build(
        &mut self,
        input: &mut BoxedOperator,
        mut carry: Option<RecordBatch>,
    ) -> Result<Option<RecordBatch>> {
        loop {
            let batch = match carry.take() {
                Some(b) => b,
                None => match input.next_batch()? {
                    Some(b) => b,
                    None => return Ok(None),
                },
            };
            self.ctx.check()?;
            if !self.add_build(&batch)? {
                return Ok(Some(batch));
            }
        }
    }

    /// Keep one build batch, if the budget grants it (or the build is
    /// empty). False if refused; then nothing has changed.
    fn add_build(&mut self, batch: &RecordBatch) -> Result<bool> {
        // View columns taken or filtered from a reader's batches share its
        // decoded pages: kept as they are, each build batch would hold (and
        // be counted for) whole pages of which it uses a few rows. TPC-H
        // Q10's build (57k customer and order rows, their comments and
        // addresses among them) reserved 104 MB that way, and spilled.
        let batch = &compact_views(batch);
        let (rows, null_key) = Self::keys(&self.build.table, &self.right_keys, batch)?;
        let n = batch.num_rows();
        let b = &mut self.build;
        let key_bytes = rows.as_ref().map_or(0, |r| r.size());
        let total = b.rows.len() + n;
        let batch_bytes = batch.get_array_memory_size();
        let mut bytes =
            batch_bytes + b.table.growth_bytes(n, key_bytes, Step::Double) + n * BUILD_ROW_BYTES;
        if total > b.rows.capacity() {
            bytes += grown(b.rows.capacity(), total) * BUILD_ROW_BYTES;
        }
        let want = (b.held() + bytes).saturating_sub(BUILD_FLOOR_BYTES);
        if b.reservation.try_resize(want).is_err() && !b.rows.is_empty() {
            return Ok(false);
        }
        b.table.make_room(n, key_bytes, Step::Double);
        grow_to(&mut b.rows, total);
        grow_to(&mut b.next, total);
        grow_to(&mut b.matched, total);
        let batch_index = b.batches.len() as u32;
        let mut groups = Vec::new();
        if let Some(rows) = &rows {
            let key = |i: usize| (!null_key[i]).then(|| rows.row(i).data());
            b.table.intern_each(n, key, &mut groups);
        }
        for (i, &null) in null_key.iter().enumerate() {
            let id = b.rows.len() as u32;
            b.rows.push((batch_index, i as u32));
            b.matched.push(false);
            if null {
                b.has_null_key = true;
                b.next.push(NONE);
                continue;
            }
            // No key columns: every row is group 0.
            let group = groups.get(i).map_or(0, |&g| g as usize);
            if group == b.heads.len() {
                b.heads.push(NONE);
            }
            // Prepend: a key's rows come out newest first.
            b.next.push(b.heads[group]);
            b.heads[group] = id;
        }
        b.batches.push(batch.clone());
        b.batches_bytes += batch_bytes;
        self.task_build = self.task_build.or(BuildFlags {
            any_row: n > 0,
            null_key: b.has_null_key,
        });
        // Settle on what is held; growth past the estimate is refused at the
        // next batch.
        let held = b.held().saturating_sub(BUILD_FLOOR_BYTES);
        let _ = b.reservation.try_resize(held);
        Ok(true)
    }

    /// Build the next task's side, and decide how to join it.
    fn start_task(&mut self, task: Task) -> Result<()> {
        self.level_deepest = self.level_deepest.max(task.level);
        self.build.clear(&self.key_fields, task.level)?;
        self.task_build = BuildFlags::default();
        let mut build = task
            .build
            .into_operator(&self.right_schema, self.ctx.config.batch_rows);
        let Some(refused) = self.fill_build(&mut build, None)? else {
            self.probe = Some(
                task.probe
                    .into_operator(&self.left_schema, self.ctx.config.batch_rows),
            );
            self.stage = Stage::Probe;
            return Ok(());
        };
        let splittable =
            !self.key_fields.is_empty() && task.level < LEVELS_MAX && !task.unsplittable;
        if splittable {
            self.partition(task.level, build, refused, task.probe)
        } else {
            self.start_blocks(task.level, build, refused, task.probe)
        }
    }

    /// Split a task that does not fit into [`PARTITIONS`] tasks one level
    /// down. Build partitions that fit the budget stay in memory (hybrid
    /// hash join): the probe side then streams, its rows of those
    /// partitions joined at once and only the rest written out.
    fn partition(
        &mut self,
        level: u32,
        mut build: BoxedOperator,
        refused: RecordBatch,
        probe: Side,
    ) -> Result<()> {
        let hash = GroupTable::new(self.key_fields.clone(), PARTITION_SEED + level as u64)?;
        let mut right = Partitioner::new(&self.ctx, self.right_schema.clone(), &self.right_keys)?;
        for batch in self.build.batches.iter().chain(std::iter::once(&refused)) {
            right.write(&self.ctx, &hash, batch)?;
        }
        // What a build row cost, for choosing the partitions kept.
        let row_bytes = self.build.held() / self.build.rows.len().max(1);
        // Only now: until written, the rows are still what the reservation
        // covers.
        self.build.clear(&self.key_fields, level)?;
        drop(refused);
        while let Some(batch) = build.next_batch()? {
            self.ctx.check()?;
            right.write(&self.ctx, &hash, &batch)?;
        }
        drop(build);
        let right_rows = right.rows.clone();
        if self.whole_build.is_none() {
            self.whole_build = Some(right.flags);
        }
        let right_files: Vec<Arc<Vec<SpillFile>>> =
            right.finish()?.into_iter().map(Arc::new).collect();
        let resident = self.keep_resident(level + 1, &right_files, &right_rows, row_bytes)?;
        let split = Split {
            level: level + 1,
            right_files,
            right_rows,
            resident,
        };
        let mut left = Partitioner::new(&self.ctx, self.left_schema.clone(), &self.left_keys)?;
        let mut probe = probe.into_operator(&self.left_schema, self.ctx.config.batch_rows);
        if split.resident.contains(&true) {
            let slot = Arc::new(std::sync::Mutex::new(None));
            self.probe = Some(Box::new(HybridProbe {
                ctx: self.ctx.clone(),
                input: probe,
                hash,
                resident: split.resident.clone(),
                left: Some(left),
                done: slot.clone(),
            }));
            self.split = Some((split, slot));
            self.stage = Stage::Probe;
            return Ok(());
        }
        while let Some(batch) = probe.next_batch()? {
            self.ctx.check()?;
            left.write(&self.ctx, &hash, &batch)?;
        }
        drop(probe);
        self.push_tasks(split, left.rows.clone(), left.finish()?);
        self.stage = Stage::Next;
        Ok(())
    }

    /// Build, one level down, the partitions that fit what the budget has
    /// free now, judged by `row_bytes` a row; return which are built.
    /// A partition with no build rows is kept too: it costs nothing.
    ///
    /// The estimate can be low (a table doubling needs its old and new
    /// buffers at once). A partition refused half built is then dropped by
    /// building again the ones before it, which fitted, and no more are
    /// tried.
    fn keep_resident(
        &mut self,
        level: u32,
        files: &[Arc<Vec<SpillFile>>],
        rows: &[u64],
        row_bytes: usize,
    ) -> Result<Vec<bool>> {
        let none: Vec<bool> = rows.iter().map(|&r| r == 0).collect();
        self.build_partitions(level, files, &[])?;
        let mut kept = Vec::new();
        for (p, &p_rows) in rows.iter().enumerate() {
            if p_rows == 0 {
                continue;
            }
            // As much again spare: a table doubling holds its old and new
            // buffers at once, and the probe side needs room too.
            let need = p_rows as usize * row_bytes;
            if need * 2 > self.ctx.budget.available_bytes() {
                continue;
            }
            if self.add_partition(&files[p])? {
                kept.push(p);
                continue;
            }
            // Refused half built: build again the ones that fitted.
            self.resident_rollbacks += 1;
            if !self.build_partitions(level, files, &kept)? {
                self.build_partitions(level, files, &[])?;
                return Ok(none);
            }
            break;
        }
        if !kept.is_empty() {
            self.level_deepest = self.level_deepest.max(level);
            self.resident_partitions += kept.len();
        }
        let mut resident = none;
        for p in kept {
            resident[p] = true;
        }
        Ok(resident)
    }

    /// Build exactly the partitions `which` of `files`, afresh (none:
    /// an empty build seeded by `level`); false if the budget refused part
    /// of them (the build is then partial).
    fn build_partitions(
        &mut self,
        level: u32,
        files: &[Arc<Vec<SpillFile>>],
        which: &[usize],
    ) -> Result<bool> {
        self.build.clear(&self.key_fields, level)?;
        self.task_build = BuildFlags::default();
        for &p in which {
            if !self.add_partition(&files[p])? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Add a spilled build partition to the build; false if the budget
    /// refused part of it.
    fn add_partition(&mut self, files: &Arc<Vec<SpillFile>>) -> Result<bool> {
        let mut source: BoxedOperator = Box::new(SpillSource::new(
            self.right_schema.clone(),
            files.clone(),
            self.ctx.config.batch_rows,
        ));
        Ok(self.fill_build(&mut source, None)?.is_none())
    }

    /// One task a partition that is not resident and can produce rows.
    fn push_tasks(&mut self, split: Split, left_rows: Vec<u64>, left_files: Vec<Vec<SpillFile>>) {
        let right_total: u64 = split.right_rows.iter().sum();
        let keeps_probe_only =
            matches!(self.kind, JoinKind::Left | JoinKind::Full | JoinKind::Anti);
        for (p, (r, l)) in split.right_files.into_iter().zip(left_files).enumerate() {
            let right_rows = split.right_rows[p];
            let useful = !split.resident[p]
                && (right_rows > 0 || keeps_probe_only)
                && (left_rows[p] > 0 || self.kind.right_outer());
            if !useful {
                continue;
            }
            self.tasks.push(Task {
                level: split.level,
                build: Side::Spilled(r),
                probe: Side::Spilled(Arc::new(l)),
                // Nine tenths or more of the rows in one partition: a few
                // keys hold them, and splitting again will not help.
                unsplittable: right_rows * 10 >= right_total * 9 && right_total > 0,
            });
        }
    }

    /// Join a task whose build side does not fit a block at a time; the
    /// build holds the first block, and `refused` starts the next.
    fn start_blocks(
        &mut self,
        level: u32,
        build: BoxedOperator,
        refused: RecordBatch,
        probe: Side,
    ) -> Result<()> {
        let files = match probe {
            Side::Spilled(files) => files,
            Side::Input(mut op) => {
                let mut writer = self
                    .ctx
                    .spill
                    .writer(self.left_schema.clone(), "join probe side")?;
                while let Some(batch) = op.next_batch()? {
                    self.ctx.check()?;
                    writer.write(&batch)?;
                }
                Arc::new(vec![writer.finish()?])
            }
        };
        let rows: u64 = files.iter().map(|f| f.rows()).sum();
        let words = (rows as usize).div_ceil(64);
        let mut reservation = self.ctx.budget.reservation("join probe match bits");
        reservation.try_grow(words * 8).map_err(|e| {
            Error::ResourcesExhausted(format!(
                "JOIN: no room for the match bits of {rows} probe rows in a block join ({e})"
            ))
        })?;
        self.blocks = Some(Blocks {
            level,
            probe: files,
            build,
            carry: Some(refused),
            matched: vec![0; words],
            offset: 0,
            final_pass: false,
            _reservation: reservation,
        });
        self.start_pass();
        Ok(())
    }

    /// Stream the block join's probe files past the current block.
    fn start_pass(&mut self) {
        let blocks = self.blocks.as_mut().expect("a block join is in progress");
        blocks.offset = 0;
        self.probe = Some(Box::new(SpillSource::new(
            self.left_schema.clone(),
            blocks.probe.clone(),
            self.ctx.config.batch_rows,
        )));
        self.blocks_joined += usize::from(!blocks.final_pass);
        self.stage = if blocks.final_pass {
            Stage::Final
        } else {
            Stage::Probe
        };
    }

    /// A pass over the probe side is over (and its unmatched build rows are
    /// out): go on to the next block, the final pass, or the next task.
    fn end_pass(&mut self) -> Result<()> {
        let Some(mut blocks) = self.blocks.take() else {
            self.stage = Stage::Next;
            return Ok(());
        };
        if blocks.final_pass {
            self.stage = Stage::Next;
            return Ok(());
        }
        self.build.clear(&self.key_fields, blocks.level)?;
        if let Some(carry) = blocks.carry.take() {
            blocks.carry = self.fill_build(&mut blocks.build, Some(carry))?;
        } else if matches!(
            self.kind,
            JoinKind::Left | JoinKind::Full | JoinKind::Semi | JoinKind::Anti
        ) {
            blocks.final_pass = true;
        } else {
            self.stage = Stage::Next;
            return Ok(());
        }
        self.blocks = Some(blocks);
        self.start_pass();
        Ok(())
    }

    /// Start joining a probe batch.
    fn start(&mut self, batch: RecordBatch) -> Result<Probe> {
        let (rows, null_key) = Self::keys(&self.build.table, &self.left_keys, &batch)?;
        let n = batch.num_rows();
        let b = &self.build;
        let first: Vec<u32> = match &rows {
            Some(rows) => {
                let mut groups = Vec::with_capacity(n);
                b.table.find_all(rows, &mut groups);
                if !self.build.spread_checked {
                    let misses = groups.iter().filter(|&&g| g == NO_GROUP).count();
                    self.build.spread_checked = true;
                    if 2 * misses >= n {
                        self.build.spread();
                    }
                }
                let b = &self.build;
                groups
                    .iter()
                    .zip(&null_key)
                    .map(|(&g, &null)| {
                        if null || g == NO_GROUP {
                            NONE
                        } else {
                            b.heads[g as usize]
                        }
                    })
                    .collect()
            }
            None => vec![b.heads.first().copied().unwrap_or(NONE); n],
        };
        let mut probe = Probe {
            batch,
            first,
            null_key,
            matched: vec![false; n],
            row: 0,
            chain: NONE,
            pairs_done: false,
            offset: 0,
        };
        if let Some(blocks) = self.blocks.as_mut() {
            probe.offset = blocks.offset;
            blocks.offset += n;
            if blocks.final_pass {
                for (i, m) in probe.matched.iter_mut().enumerate() {
                    let at = probe.offset + i;
                    *m = blocks.matched[at / 64] & (1 << (at % 64)) != 0;
                }
                probe.pairs_done = true;
            }
        }
        Ok(probe)
    }

    /// The next chunk of output from the current probe batch, or None when
    /// it is finished.
    fn advance(&mut self) -> Result<Option<RecordBatch>> {
        let Some(probe) = self.current.as_mut() else {
            return Ok(None);
        };
        let limit = self.ctx.config.batch_rows.max(1);
        // Semi and anti joins without a filter need no pairs: a key with a
        // chain is a match.
        let pairless = !self.kind.keeps_right() && self.filter.is_none();
        if !probe.pairs_done && pairless {
            for (m, &f) in probe.matched.iter_mut().zip(&probe.first) {
                *m = f != NONE;
            }
            probe.pairs_done = true;
        }
        if !probe.pairs_done {
            let mut left = Vec::with_capacity(limit);
            let mut right = Vec::with_capacity(limit);
            let n = probe.batch.num_rows();
            while left.len() < limit && probe.row < n {
                if probe.chain == NONE {
                    probe.chain = probe.first[probe.row];
                    if probe.chain == NONE {
                        probe.row += 1;
                        continue;
                    }
                }
                left.push(probe.row as u32);
                right.push(probe.chain);
                probe.chain = self.build.next[probe.chain as usize];
                if probe.chain == NONE {
                    probe.row += 1;
                }
            }
            if probe.row >= n {
                probe.pairs_done = true;
            }
            if left.is_empty() {
                return self.finish_probe();
            }
            let joined = self.pairs(&left, &right)?;
            let (joined, left, right) = match &self.filter {
                Some(f) => {
                    let mask = f.evaluate_to_array(&joined)?;
                    let mask = true_mask(mask.as_boolean_opt().ok_or_else(|| {
                        Error::Internal(format!("join filter {f} is not boolean"))
                    })?);
                    let keep: Vec<usize> = (0..mask.len()).filter(|&i| mask.value(i)).collect();
                    let left: Vec<u32> = keep.iter().map(|&i| left[i]).collect();
                    let right: Vec<u32> = keep.iter().map(|&i| right[i]).collect();
                    (filter_record_batch(&joined, &mask)?, left, right)
                }
                None => (joined, left, right),
            };
            let probe = self.current.as_mut().expect("a probe batch is in progress");
            for &l in &left {
                probe.matched[l as usize] = true;
            }
            if self.kind.right_outer() {
                for &r in &right {
                    self.build.matched[r as usize] = true;
                }
            }
            if self.kind.keeps_right() && joined.num_rows() > 0 {
                return Ok(Some(self.relabel(joined)?));
            }
            return Ok(Some(RecordBatch::new_empty(self.schema.clone())));
        }
        self.finish_probe()
    }

    /// The rows a probe batch contributes once its pairs are done: unmatched
    /// left rows (LEFT, FULL, ANTI) or matched ones (SEMI). In a block
    /// join's passes its matches are only recorded: the final pass decides.
    fn finish_probe(&mut self) -> Result<Option<RecordBatch>> {
        let Some(probe) = self.current.take() else {
            return Ok(None);
        };
        if let Some(blocks) = self.blocks.as_mut() {
            if !blocks.final_pass {
                for (i, &m) in probe.matched.iter().enumerate() {
                    let at = probe.offset + i;
                    blocks.matched[at / 64] |= u64::from(m) << (at % 64);
                }
                return Ok(None);
            }
        }
        let build = self.whole_build.unwrap_or(self.task_build);
        let keep: Vec<bool> = match self.kind {
            JoinKind::Semi => probe.matched.clone(),
            JoinKind::Anti if self.null_aware && build.any_row => {
                if build.null_key {
                    vec![false; probe.matched.len()]
                } else {
                    probe
                        .matched
                        .iter()
                        .zip(&probe.null_key)
                        .map(|(&m, &null)| !m && !null)
                        .collect()
                }
            }
            JoinKind::Anti | JoinKind::Left | JoinKind::Full => {
                probe.matched.iter().map(|&m| !m).collect()
            }
            JoinKind::Inner | JoinKind::Right => return Ok(None),
        };
        let mask = BooleanArray::from(keep);
        if mask.true_count() == 0 {
            return Ok(None);
        }
        let rows = filter_record_batch(&probe.batch, &mask)?;
        let mut columns = rows.columns().to_vec();
        if self.kind.keeps_right() {
            for f in self.right_schema.fields() {
                columns.push(new_null_array(f.data_type(), rows.num_rows()));
            }
        }
        Ok(Some(self.batch(columns, rows.num_rows())?))
    }

    /// Left rows `left` beside build rows `right`, as one batch of the
    /// left's columns then the right's.
    ///
    /// Left rows that follow each other, as every probe row of a join on a
    /// key unique on the build side does (lineitem with orders), are a
    /// slice of the probe batch, not a copy: copying all of lineitem's
    /// columns took about a tenth of that join's CPU time. Only a slice of
    /// half the batch or more, though: a slice holds the whole batch's
    /// buffers, and whoever buffers the output (a sort) counts them all.
    fn pairs(&self, left: &[u32], right: &[u32]) -> Result<RecordBatch> {
        let probe = self.current_batch()?;
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        let follow = |l: &[u32]| l.windows(2).all(|w| w[1] == w[0] + 1);
        match left.first() {
            Some(&first) if 2 * left.len() >= probe.num_rows() && follow(left) => {
                let rows = probe.slice(first as usize, left.len());
                columns.extend(rows.columns().iter().cloned());
            }
            _ => {
                let indices = UInt32Array::from(left.to_vec());
                for c in probe.columns() {
                    columns.push(take(c.as_ref(), &indices, None)?);
                }
            }
        }
        columns.extend(self.build_columns(right)?);
        let options = RecordBatchOptions::new().with_row_count(Some(left.len()));
        let fields: Vec<_> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                arrow::datatypes::Field::new(format!("c{i}"), c.data_type().clone(), true)
            })
            .collect();
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
    }

    fn current_batch(&self) -> Result<&RecordBatch> {
        self.current
            .as_ref()
            .map(|p| &p.batch)
            .ok_or_else(|| Error::Internal("no probe batch".into()))
    }

    /// The build side's columns at build rows `ids`.
    fn build_columns(&self, ids: &[u32]) -> Result<Vec<ArrayRef>> {
        let at: Vec<(usize, usize)> = ids
            .iter()
            .map(|&id| {
                let (b, r) = self.build.rows[id as usize];
                (b as usize, r as usize)
            })
            .collect();
        (0..self.right_schema.fields().len())
            .map(|c| {
                let values: Vec<&dyn Array> = self
                    .build
                    .batches
                    .iter()
                    .map(|b| b.column(c).as_ref())
                    .collect();
                if values.is_empty() {
                    return Ok(new_null_array(self.right_schema.field(c).data_type(), 0));
                }
                Ok(interleave(&values, &at)?)
            })
            .collect()
    }

    /// Right rows that never paired, with NULLs for the left: the end of a
    /// RIGHT or FULL join's pass.
    fn unmatched_right(&mut self) -> Result<Option<RecordBatch>> {
        let Some(start) = self.unmatched_next else {
            return Ok(None);
        };
        let limit = self.ctx.config.batch_rows.max(1);
        let total = self.build.rows.len();
        let mut ids = Vec::with_capacity(limit);
        let mut at = start;
        while at < total && ids.len() < limit {
            if !self.build.matched[at] {
                ids.push(at as u32);
            }
            at += 1;
        }
        self.unmatched_next = (at < total).then_some(at);
        if ids.is_empty() {
            return Ok(None);
        }
        let n = ids.len();
        let mut columns: Vec<ArrayRef> = self
            .left_schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), n))
            .collect();
        columns.extend(self.build_columns(&ids)?);
        Ok(Some(self.batch(columns, n)?))
    }

    fn batch(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        crate::exec::batch_of(&self.schema, columns, rows)
    }

    fn relabel(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.batch(batch.columns().to_vec(), batch.num_rows())
    }
}

impl Operator for HashJoin {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.current.is_some() {
                match self.advance()? {
                    Some(b) if b.num_rows() > 0 => return Ok(Some(b)),
                    Some(_) => {}
                    None => self.current = None,
                }
                continue;
            }
            match self.stage {
                Stage::Next => {
                    if let Some((split, slot)) = self.split.take() {
                        let done = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                        let (left_rows, left_files) = done.ok_or_else(|| {
                            Error::Internal("a hybrid probe ended unfinished".into())
                        })?;
                        self.push_tasks(split, left_rows, left_files);
                    }
                    let Some(task) = self.tasks.pop() else {
                        return Ok(None);
                    };
                    self.start_task(task)?;
                }
                Stage::Probe | Stage::Final => {
                    let probe = self.probe.as_mut().expect("a probe side is open");
                    match probe.next_batch()? {
                        Some(batch) => {
                            self.ctx.check()?;
                            self.current = Some(self.start(batch)?);
                        }
                        None => {
                            self.probe = None;
                            if self.stage == Stage::Probe
                                && self.kind.right_outer()
                                && !self.build.rows.is_empty()
                            {
                                self.unmatched_next = Some(0);
                                self.stage = Stage::Unmatched;
                            } else {
                                self.end_pass()?;
                            }
                        }
                    }
                }
                Stage::Unmatched => {
                    if let Some(b) = self.unmatched_right()? {
                        return Ok(Some(b));
                    }
                    if self.unmatched_next.is_none() {
                        self.end_pass()?;
                    }
                }
            }
        }
    }
}

/// Rows split into per-partition spill files by the hash of their keys.
///
/// With two threads or more, and a pool of [`THREADED_POOL_BYTES_MIN`], the
/// files are written on a thread of their own ([`PieceWriter`]): this one
/// reads, hashes and splits the input while that one encodes and
/// compresses what was split before. That thread gathers each partition's
/// pieces (an eighth of a batch each) into batches of `--batch-rows` rows,
/// under a reservation, before writing them: each batch written is an IPC
/// message and an LZ4 frame per buffer, which on pieces cost more than the
/// compression itself. Joining SF10 lineitem and orders at 256MB, the
/// first 41 to 43 s of 117 s wrote partitions, on one core; on two,
/// without gathering, as long, LZ4 on the pieces taking most of the writer
/// thread.
struct Partitioner {
    schema: SchemaRef,
    keys: Vec<Expr>,
    writers: PieceWriter,
    rows: Vec<u64>,
    flags: BuildFlags,
}

/// Pieces of input queued for the partition writer thread, at most: two
/// input batches' worth, when rows spread over every partition.
const PIECES_QUEUED_MAX: usize = 2 * PARTITIONS;

/// A piece of one partition, for the writer thread.
struct Piece {
    partition: usize,
    batch: RecordBatch,
}

/// Where the pieces are written.
enum PieceWriter {
    /// Here, as they come.
    Inline(Vec<Option<SpillWriter>>),
    /// On a thread of its own, which gives the writers back when the
    /// channel closes, or fails with the first error.
    Thread {
        pieces: Option<SyncSender<Piece>>,
        handle: Option<JoinHandle<Result<Vec<Option<SpillWriter>>>>>,
    },
}

/// Each partition's pieces not yet written, under a reservation.
///
/// # Memory
///
/// Pieces are reserved before they are kept, and at most `--batch-rows`
/// rows a partition are kept; where the budget refuses, the largest
/// partition's pieces are written out first, and a piece that is still
/// refused goes out alone.
struct Gathered {
    pieces: Vec<Vec<RecordBatch>>,
    rows: Vec<usize>,
    bytes: Vec<usize>,
    rows_max: usize,
    reservation: Reservation,
}

impl Gathered {
    fn new(ctx: &RunContext) -> Gathered {
        Gathered {
            pieces: vec![Vec::new(); PARTITIONS],
            rows: vec![0; PARTITIONS],
            bytes: vec![0; PARTITIONS],
            rows_max: ctx.config.batch_rows,
            reservation: ctx.budget.reservation("join partition pieces"),
        }
    }

    /// Keep `piece`; return what is to be written now.
    fn add(&mut self, piece: Piece) -> Result<Vec<Piece>> {
        let mut out = Vec::new();
        let bytes = piece.batch.get_array_memory_size();
        while self.reservation.try_grow(bytes).is_err() {
            let largest = (0..PARTITIONS).max_by_key(|&p| self.bytes[p]);
            match largest.filter(|&p| self.bytes[p] > 0) {
                Some(p) => out.push(self.take(p)?),
                None => {
                    out.push(piece);
                    return Ok(out);
                }
            }
        }
        let p = piece.partition;
        self.rows[p] += piece.batch.num_rows();
        self.bytes[p] += bytes;
        self.pieces[p].push(piece.batch);
        if self.rows[p] >= self.rows_max {
            out.push(self.take(p)?);
        }
        Ok(out)
    }

    /// Partition `p`'s pieces as one batch, their reservation let go.
    fn take(&mut self, p: usize) -> Result<Piece> {
        let pieces = std::mem::take(&mut self.pieces[p]);
        let batch = match pieces.as_slice() {
            [one] => one.clone(),
            _ => concat_batches(&pieces[0].schema(), &pieces)?,
        };
        self.reservation.shrink(std::mem::take(&mut self.bytes[p]));
        self.rows[p] = 0;
        Ok(Piece {
            partition: p,
            batch,
        })
    }

    /// What is left, partition by partition.
    fn drain(&mut self) -> Result<Vec<Piece>> {
        let left: Vec<usize> = (0..PARTITIONS)
            .filter(|&p| !self.pieces[p].is_empty())
            .collect();
        left.into_iter().map(|p| self.take(p)).collect()
    }
}

/// Write `piece` into its partition's file, which is made on its first row.
fn write_piece(
    ctx: &RunContext,
    schema: &SchemaRef,
    writers: &mut [Option<SpillWriter>],
    piece: &Piece,
) -> Result<()> {
    let writer = match &mut writers[piece.partition] {
        Some(w) => w,
        slot => slot.insert(ctx.spill.writer(schema.clone(), "join partition")?),
    };
    writer.write(&piece.batch)
}

fn no_writers() -> Vec<Option<SpillWriter>> {
    (0..PARTITIONS).map(|_| None).collect()
}

impl PieceWriter {
    fn new(ctx: &Arc<RunContext>, schema: &SchemaRef) -> Result<PieceWriter> {
        if ctx.config.threads <= 1 || ctx.budget.pool_bytes() < THREADED_POOL_BYTES_MIN {
            return Ok(PieceWriter::Inline(no_writers()));
        }
        let (pieces, queue) = sync_channel::<Piece>(PIECES_QUEUED_MAX);
        let (ctx, schema) = (ctx.clone(), schema.clone());
        // The files belong to this join in EXPLAIN ANALYZE.
        let node = analyze::current();
        let handle = std::thread::Builder::new()
            .name("highwater-join-partitions".into())
            .spawn(move || {
                analyze::enter(node);
                let mut gathered = Gathered::new(&ctx);
                let mut writers = no_writers();
                for piece in queue {
                    for full in gathered.add(piece)? {
                        write_piece(&ctx, &schema, &mut writers, &full)?;
                    }
                }
                for rest in gathered.drain()? {
                    write_piece(&ctx, &schema, &mut writers, &rest)?;
                }
                Ok(writers)
            })
            .map_err(|e| {
                Error::ResourcesExhausted(format!("cannot start a join partition thread: {e}"))
            })?;
        Ok(PieceWriter::Thread {
            pieces: Some(pieces),
            handle: Some(handle),
        })
    }

    fn write(&mut self, ctx: &RunContext, schema: &SchemaRef, piece: Piece) -> Result<()> {
        match self {
            PieceWriter::Inline(writers) => write_piece(ctx, schema, writers, &piece),
            PieceWriter::Thread { pieces, .. } => {
                let sent = pieces.as_ref().map(|p| p.send(piece));
                if matches!(sent, Some(Ok(()))) {
                    return Ok(());
                }
                // The thread stopped: its error says why.
                self.writers().map(|_| ())?;
                Err(Error::Internal("the join partition writer stopped".into()))
            }
        }
    }

    /// Every piece written: the writers, a slot per partition.
    fn writers(&mut self) -> Result<Vec<Option<SpillWriter>>> {
        match self {
            PieceWriter::Inline(writers) => Ok(std::mem::take(writers)),
            PieceWriter::Thread { pieces, handle } => {
                drop(pieces.take());
                let handle = handle
                    .take()
                    .ok_or_else(|| Error::Internal("the join partition writer stopped".into()))?;
                handle
                    .join()
                    .map_err(|_| Error::Internal("the join partition writer panicked".into()))?
            }
        }
    }
}

impl Drop for PieceWriter {
    /// A join dropped mid-partitioning (an error, a LIMIT above) waits for
    /// its writer thread, so that no thread outlives the run's spill files.
    fn drop(&mut self) {
        if let PieceWriter::Thread {
            handle: Some(_), ..
        } = self
        {
            let _ = self.writers();
        }
    }
}

impl Partitioner {
    fn new(ctx: &Arc<RunContext>, schema: SchemaRef, keys: &[Expr]) -> Result<Partitioner> {
        Ok(Partitioner {
            writers: PieceWriter::new(ctx, &schema)?,
            schema,
            keys: keys.to_vec(),
            rows: vec![0; PARTITIONS],
            flags: BuildFlags::default(),
        })
    }

    fn write(&mut self, ctx: &RunContext, hash: &GroupTable, batch: &RecordBatch) -> Result<()> {
        self.split(ctx, hash, batch, &[]).map(|_| ())
    }

    /// Write the rows of partitions not `resident` to their files; return
    /// the others, if any.
    fn split(
        &mut self,
        ctx: &RunContext,
        hash: &GroupTable,
        batch: &RecordBatch,
        resident: &[bool],
    ) -> Result<Option<RecordBatch>> {
        let (rows, null_key) = HashJoin::keys(hash, &self.keys, batch)?;
        let rows = rows.ok_or_else(|| Error::Internal("partitioning a keyless join".into()))?;
        self.flags = self.flags.or(BuildFlags {
            any_row: batch.num_rows() > 0,
            null_key: null_key.contains(&true),
        });
        let shift = 64 - PARTITION_BITS;
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); PARTITIONS];
        let mut kept = Vec::new();
        for i in 0..batch.num_rows() {
            let p = (hash.hash(rows.row(i).as_ref()) >> shift) as usize;
            if resident.get(p) == Some(&true) {
                kept.push(i as u32);
            } else {
                members[p].push(i as u32);
            }
        }
        for (partition, ids) in members.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            self.rows[partition] += ids.len() as u64;
            let batch = take_record_batch(batch, &UInt32Array::from(ids))?;
            self.writers
                .write(ctx, &self.schema, Piece { partition, batch })?;
        }
        Ok(match kept.len() {
            0 => None,
            n if n == batch.num_rows() => Some(batch.clone()),
            _ => Some(take_record_batch(batch, &UInt32Array::from(kept))?),
        })
    }

    /// The files, a list per partition (empty where no row went).
    fn finish(mut self) -> Result<Vec<Vec<SpillFile>>> {
        self.writers
            .writers()?
            .into_iter()
            .map(|w| Ok(w.map(|w| w.finish()).transpose()?.into_iter().collect()))
            .collect()
    }
}

/// The probe side of a hybrid partitioning: rows of the resident
/// partitions come out to be joined now, the others go to their partitions'
/// files, which are left in `done` when the input ends.
struct HybridProbe {
    ctx: Arc<RunContext>,
    input: BoxedOperator,
    hash: GroupTable,
    resident: Vec<bool>,
    left: Option<Partitioner>,
    done: ProbeFiles,
}

impl Operator for HybridProbe {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let Some(left) = self.left.as_mut() else {
                return Ok(None);
            };
            let Some(batch) = self.input.next_batch()? else {
                let left = self.left.take().expect("checked above");
                let rows = left.rows.clone();
                let files = left.finish()?;
                *self.done.lock().unwrap_or_else(|p| p.into_inner()) = Some((rows, files));
                return Ok(None);
            };
            self.ctx.check()?;
            if let Some(kept) = left.split(&self.ctx, &self.hash, &batch, &self.resident)? {
                return Ok(Some(kept));
            }
        }
    }
}

/// Spill files read back in order, as an operator, with small batches
/// joined up to `rows_max` rows.
///
/// Why join them: a partition's files hold the rows of each input batch
/// that fell to it, an eighth of a batch, and a partition split again holds
/// an eighth of that (about 60 rows at 64MB, where batches are 3,906 rows).
/// Every operator and the Parquet writer above pay a fixed cost per batch:
/// the bench join at 64MB took 25 s with such pieces, 11 s without.
///
/// # Memory
///
/// Besides the reader's buffers, at most `rows_max` rows of pieces and the
/// batch they are joined into, unreserved like any batch in flight.
pub struct SpillSource {
    schema: SchemaRef,
    files: Arc<Vec<SpillFile>>,
    next: usize,
    reader: Option<SpillReader>,
    rows_max: usize,
    /// A piece read that did not fit the batch before: the next one's first.
    held: Option<RecordBatch>,
}

impl SpillSource {
    pub fn new(schema: SchemaRef, files: Arc<Vec<SpillFile>>, rows_max: usize) -> SpillSource {
        SpillSource {
            schema,
            files,
            next: 0,
            reader: None,
            rows_max: rows_max.max(1),
            held: None,
        }
    }

    /// The next non-empty batch as it was written.
    fn next_piece(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(piece) = self.held.take() {
            return Ok(Some(piece));
        }
        loop {
            if let Some(reader) = self.reader.as_mut() {
                if let Some(batch) = reader.next_batch()? {
                    if batch.num_rows() > 0 {
                        return Ok(Some(batch));
                    }
                    continue;
                }
                self.reader = None;
            }
            let Some(file) = self.files.get(self.next) else {
                return Ok(None);
            };
            self.reader = Some(file.reader()?);
            self.next += 1;
        }
    }
}

impl Operator for SpillSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut pieces: Vec<RecordBatch> = Vec::new();
        let mut rows = 0;
        while let Some(piece) = self.next_piece()? {
            // A piece of half a batch or more is worth no copy.
            if pieces.is_empty() && piece.num_rows() >= self.rows_max / 2 {
                return Ok(Some(piece));
            }
            if !pieces.is_empty() && rows + piece.num_rows() > self.rows_max {
                self.held = Some(piece);
                break;
            }
            rows += piece.num_rows();
            pieces.push(piece);
            if rows >= self.rows_max {
                break;
            }
        }
        match pieces.len() {
            0 => Ok(None),
            1 => Ok(pieces.pop()),
            _ => Ok(Some(concat_batches(&pieces[0].schema(), &pieces)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::exec::join_sides::JoinSides;
    use crate::exec::testing::{assert_clean, context, temp_dir, Batches, Lcg};
    use crate::memory::MemoryBudget;
    use crate::plan::{BinaryOp, LogicalPlan};

    /// `rows` rows: an id, an integer key and a string key (both with
    /// NULLs, from `keys` values), and a value for join filters.
    fn side(rows: usize, keys: u64, seed: u64) -> RecordBatch {
        let mut r = Lcg(seed);
        let ids: Int64Array = (0..rows as i64).map(Some).collect();
        let k1: Int64Array = (0..rows)
            .map(|_| (r.below(15) != 0).then(|| r.below(keys) as i64))
            .collect();
        let k2: StringArray = (0..rows)
            .map(|_| (r.below(15) != 0).then(|| format!("s{}", r.below(3))))
            .collect();
        let v: Int64Array = (0..rows).map(|_| Some(r.below(100) as i64)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("k1", DataType::Int64, true),
            Field::new("k2", DataType::Utf8, true),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(ids), Arc::new(k1), Arc::new(k2), Arc::new(v)],
        )
        .unwrap()
    }

    fn col(i: usize) -> Expr {
        Expr::column(i, format!("c{i}"))
    }

    /// `b` in batches of `size` rows, each with buffers of its own (as a
    /// scan's are): a slice would report its parent's whole buffers as its
    /// size, and the join would budget for rows it does not hold.
    fn pieces(b: &RecordBatch, size: usize) -> Vec<RecordBatch> {
        (0..b.num_rows())
            .step_by(size)
            .map(|i| {
                let n = size.min(b.num_rows() - i);
                let rows = UInt32Array::from_iter_values(i as u32..(i + n) as u32);
                take_record_batch(b, &rows).unwrap()
            })
            .collect()
    }

    /// The (left id, right id) pairs a join outputs, sorted; None for a
    /// NULL-extended side.
    type Pairs = Vec<(Option<i64>, Option<i64>)>;

    fn run(
        ctx: Arc<RunContext>,
        left: &RecordBatch,
        right: &RecordBatch,
        kind: JoinKind,
        keys: &[usize],
        filter: Option<Expr>,
        null_aware: bool,
    ) -> Result<Pairs> {
        run_counted(ctx, left, right, kind, keys, filter, null_aware).map(|(pairs, ..)| pairs)
    }

    /// [`run`], with the deepest partitioning level and the blocks joined.
    fn run_counted(
        ctx: Arc<RunContext>,
        left: &RecordBatch,
        right: &RecordBatch,
        kind: JoinKind,
        keys: &[usize],
        filter: Option<Expr>,
        null_aware: bool,
    ) -> Result<(Pairs, u32, usize, usize, usize)> {
        let (on, schema, left, right) = inputs(left, right, kind, keys, &filter, null_aware);
        let mut op = HashJoin::new(ctx, left, right, kind, on, filter, null_aware, schema)?;
        let out = pairs_of(&mut op, kind)?;
        Ok((
            out,
            op.level_deepest,
            op.blocks_joined,
            op.resident_partitions,
            op.resident_rollbacks,
        ))
    }

    /// What a join of `left` and `right` on columns `keys` is made of: its
    /// key pairs, its output schema, and the inputs in pieces.
    fn inputs(
        left: &RecordBatch,
        right: &RecordBatch,
        kind: JoinKind,
        keys: &[usize],
        filter: &Option<Expr>,
        null_aware: bool,
    ) -> (Vec<(Expr, Expr)>, SchemaRef, BoxedOperator, BoxedOperator) {
        let on: Vec<(Expr, Expr)> = keys.iter().map(|&k| (col(k), col(k))).collect();
        let values = |b: &RecordBatch| LogicalPlan::Values { batch: b.clone() };
        let plan = LogicalPlan::join(
            values(left),
            values(right),
            kind,
            on.clone(),
            filter.clone(),
            null_aware,
        );
        (
            on,
            plan.schema(),
            Batches::new(left.schema(), pieces(left, 700)),
            Batches::new(right.schema(), pieces(right, 500)),
        )
    }

    /// The (left id, right id) pairs `op` outputs, sorted.
    fn pairs_of(op: &mut dyn Operator, kind: JoinKind) -> Result<Pairs> {
        let mut out = Vec::new();
        while let Some(b) = op.next_batch()? {
            assert!(b.num_rows() > 0, "operators never return empty batches");
            let l = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let r = kind.keeps_right().then(|| {
                b.column(4)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .clone()
            });
            for i in 0..b.num_rows() {
                out.push((
                    l.is_valid(i).then(|| l.value(i)),
                    r.as_ref().and_then(|r| r.is_valid(i).then(|| r.value(i))),
                ));
            }
        }
        out.sort();
        Ok(out)
    }

    /// [`run`] through [`JoinSides`], which may build the left input:
    /// the pairs, and whether it did.
    fn run_sides(
        ctx: Arc<RunContext>,
        left: &RecordBatch,
        right: &RecordBatch,
        kind: JoinKind,
        keys: &[usize],
        filter: Option<Expr>,
        compare_bytes_min: usize,
    ) -> Result<(Pairs, bool)> {
        let (on, schema, left, right) = inputs(left, right, kind, keys, &filter, false);
        let mut op = JoinSides::new(ctx, left, right, kind, on, filter, schema)?
            .comparing_from(compare_bytes_min);
        let pairs = pairs_of(&mut op, kind)?;
        Ok((
            pairs,
            op.mirrored().expect("sides settle with the first batch"),
        ))
    }

    #[test]
    fn the_smaller_input_is_built_whichever_side_it_is_on() {
        // Under the medium pool, a left input twelve times smaller than a
        // right one too big for the look-ahead is built (the join
        // mirrored); a bigger one is not. Without limits the right input
        // fits the look-ahead and is built as planned, unless it is large
        // enough to be compared (here from 1 byte on), and then the
        // smaller input is built too. Under the tiny pool
        // neither input ends within the look-ahead: the left's goes to a
        // spill file first, and the join partitions as planned.
        let small = side(5_000, 5_000, 31);
        let big = side(60_000, 5_000, 32);
        let filter = Expr::binary(BinaryOp::Lt, col(3), col(7));
        for (left, right, mirrored) in [(&small, &big, true), (&big, &small, false)] {
            for filter in [None, Some(filter.clone())] {
                for kind in [
                    JoinKind::Inner,
                    JoinKind::Left,
                    JoinKind::Right,
                    JoinKind::Full,
                ] {
                    let f = filter.clone();
                    let want = run(unlimited(), left, right, kind, &[1, 2], f, false).unwrap();
                    let medium = context(
                        MemoryBudget::with_pool_bytes(4_000_000),
                        temp_dir(),
                        2,
                        64,
                        1024,
                    );
                    for (ctx, compare_from, expected) in [
                        (unlimited(), usize::MAX, false),
                        (unlimited(), 1, mirrored),
                        (medium, usize::MAX, mirrored),
                        (tiny(), usize::MAX, false),
                    ] {
                        let (got, built_left) = run_sides(
                            ctx.clone(),
                            left,
                            right,
                            kind,
                            &[1, 2],
                            filter.clone(),
                            compare_from,
                        )
                        .unwrap();
                        assert_eq!(built_left, expected, "{kind:?}");
                        assert_eq!(got, want, "{kind:?} built left={built_left} {filter:?}");
                        assert_clean(&ctx);
                    }
                }
            }
        }
    }

    /// The same by a nested loop over every pair, with SQL's rules: a NULL
    /// key matches nothing.
    fn reference(
        left: &RecordBatch,
        right: &RecordBatch,
        kind: JoinKind,
        keys: &[usize],
        filter: impl Fn(i64, i64) -> bool,
    ) -> Pairs {
        let key = |b: &RecordBatch, row: usize| -> Option<Vec<String>> {
            keys.iter()
                .map(|&k| {
                    let c = b.column(k);
                    c.is_valid(row)
                        .then(|| arrow::util::display::array_value_to_string(c, row).unwrap())
                })
                .collect()
        };
        let v = |b: &RecordBatch, row: usize| {
            b.column(3)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(row)
        };
        let mut out = Vec::new();
        let mut right_matched = vec![false; right.num_rows()];
        for l in 0..left.num_rows() {
            let mut matched = false;
            for (r, seen) in right_matched.iter_mut().enumerate() {
                let (kl, kr) = (key(left, l), key(right, r));
                if kl.is_some() && kl == kr && filter(v(left, l), v(right, r)) {
                    matched = true;
                    *seen = true;
                    if kind.keeps_right() {
                        out.push((Some(l as i64), Some(r as i64)));
                    }
                }
            }
            let keep = match kind {
                JoinKind::Semi => matched,
                JoinKind::Anti | JoinKind::Left | JoinKind::Full => !matched,
                _ => false,
            };
            if keep {
                out.push((Some(l as i64), None));
            }
        }
        if kind.right_outer() {
            for (r, seen) in right_matched.iter().enumerate() {
                if !seen {
                    out.push((None, Some(r as i64)));
                }
            }
        }
        out.sort();
        out
    }

    fn unlimited() -> Arc<RunContext> {
        context(MemoryBudget::unlimited(), temp_dir(), 2, 64, 256)
    }

    const KINDS: [JoinKind; 6] = [
        JoinKind::Inner,
        JoinKind::Left,
        JoinKind::Right,
        JoinKind::Full,
        JoinKind::Semi,
        JoinKind::Anti,
    ];

    #[test]
    fn every_kind_matches_a_nested_loop_on_one_and_two_keys() {
        let (left, right) = (side(900, 40, 1), side(600, 40, 2));
        for keys in [vec![1], vec![1, 2]] {
            for kind in KINDS {
                let got = run(unlimited(), &left, &right, kind, &keys, None, false).unwrap();
                let want = reference(&left, &right, kind, &keys, |_, _| true);
                assert_eq!(got, want, "{kind:?} on {keys:?}");
            }
        }
    }

    #[test]
    fn a_filter_beside_the_keys_decides_matches_for_outer_joins_too() {
        let (left, right) = (side(700, 20, 3), side(500, 20, 4));
        // left.v < right.v, over the left's 4 columns then the right's.
        let filter = Expr::binary(BinaryOp::Lt, col(3), col(7));
        for kind in KINDS {
            let got = run(
                unlimited(),
                &left,
                &right,
                kind,
                &[1],
                Some(filter.clone()),
                false,
            )
            .unwrap();
            let want = reference(&left, &right, kind, &[1], |a, b| a < b);
            assert_eq!(got, want, "{kind:?}");
        }
    }

    #[test]
    fn a_cross_join_pairs_everything_in_bounded_batches() {
        let (left, right) = (side(120, 5, 5), side(90, 5, 6));
        let got = run(
            unlimited(),
            &left,
            &right,
            JoinKind::Inner,
            &[],
            None,
            false,
        )
        .unwrap();
        assert_eq!(got.len(), 120 * 90);
        // Heavy skew: every row of both sides has one key.
        let one = |b: &RecordBatch| {
            let mut columns = b.columns().to_vec();
            columns[1] = Arc::new(Int64Array::from(vec![7i64; b.num_rows()]));
            RecordBatch::try_new(b.schema(), columns).unwrap()
        };
        let (l, r) = (one(&side(1500, 5, 7)), one(&side(1000, 5, 8)));
        let got = run(unlimited(), &l, &r, JoinKind::Inner, &[1], None, false).unwrap();
        assert_eq!(got.len(), 1500 * 1000);
    }

    #[test]
    fn empty_sides_and_all_null_keys() {
        let (left, right) = (side(300, 10, 9), side(200, 10, 10));
        let empty = left.slice(0, 0);
        let nulls = {
            let mut columns = right.columns().to_vec();
            columns[1] = Arc::new(Int64Array::from(vec![None::<i64>; right.num_rows()]));
            RecordBatch::try_new(right.schema(), columns).unwrap()
        };
        for kind in KINDS {
            for (l, r) in [(&empty, &right), (&left, &empty), (&left, &nulls)] {
                let got = run(unlimited(), l, r, kind, &[1], None, false).unwrap();
                assert_eq!(got, reference(l, r, kind, &[1], |_, _| true), "{kind:?}");
            }
        }
    }

    #[test]
    fn not_in_is_unknown_where_a_null_is_involved() {
        let left = side(400, 10, 11);
        // Keys 0 to 4 only, so that some left keys have no match; and one
        // NULL for certain.
        let right = {
            let b = side(30, 5, 12);
            let mut columns = b.columns().to_vec();
            let mut keys: Vec<Option<i64>> = b
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .collect();
            keys[0] = None;
            columns[1] = Arc::new(Int64Array::from(keys));
            RecordBatch::try_new(b.schema(), columns).unwrap()
        };
        let k = left.column(1);
        let with_null = run(unlimited(), &left, &right, JoinKind::Anti, &[1], None, true).unwrap();
        assert!(
            with_null.is_empty(),
            "a NULL on the right makes every NOT IN unknown"
        );
        // Without NULLs on the right: unmatched rows, except NULL keys.
        let clean = arrow::compute::filter_record_batch(
            &right,
            &arrow::compute::is_not_null(right.column(1)).unwrap(),
        )
        .unwrap();
        let got = run(unlimited(), &left, &clean, JoinKind::Anti, &[1], None, true).unwrap();
        let want: Vec<_> = reference(&left, &clean, JoinKind::Anti, &[1], |_, _| true)
            .into_iter()
            .filter(|(l, _)| k.is_valid(l.unwrap() as usize))
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want);
        // An empty right side: NOT IN () is true, NULL keys included.
        let got = run(
            unlimited(),
            &left,
            &right.slice(0, 0),
            JoinKind::Anti,
            &[1],
            None,
            true,
        )
        .unwrap();
        assert_eq!(got.len(), left.num_rows());
    }

    fn tiny() -> Arc<RunContext> {
        context(
            MemoryBudget::with_pool_bytes(1_000_000),
            temp_dir(),
            2,
            64,
            1024,
        )
    }

    #[test]
    fn a_tiny_budget_partitions_two_levels_deep_with_identical_results() {
        let (left, right) = (side(30_000, 20_000, 13), side(150_000, 20_000, 14));
        let filter = Expr::binary(BinaryOp::Lt, col(3), col(7));
        for (keys, filter) in [(vec![1], None), (vec![1, 2], Some(filter))] {
            for kind in KINDS {
                let args = (kind, &keys[..], filter.clone());
                let want = run(unlimited(), &left, &right, args.0, args.1, args.2, false).unwrap();
                let ctx = tiny();
                let (got, level, ..) = run_counted(
                    ctx.clone(),
                    &left,
                    &right,
                    kind,
                    &keys,
                    filter.clone(),
                    false,
                )
                .unwrap();
                assert!(level >= 2, "{kind:?}: only {level} level(s)");
                assert_eq!(got, want, "{kind:?} on {keys:?}");
                assert_clean(&ctx);
            }
        }
    }

    #[test]
    fn build_batches_sharing_their_readers_pages_are_held_for_the_rows_they_use() -> Result<()> {
        // Right rows whose strings are views into buffers shared with the
        // rest of their input, as a Parquet reader's are once filtered or
        // joined: each batch of 100 rows refers to all 2 MB of strings.
        // Held as they come, each would count (and pin) all of them, and the
        // build, about 3 MB, would spill under a 12 MB pool; compacted, it
        // fits, whether built directly or after a look-ahead (which would
        // otherwise find the right input bigger than the look-ahead, and
        // write the larger left input's to disk).
        let left = side(200_000, 5_000, 41);
        let plain = side(20_000, 5_000, 42);
        let long: arrow::array::StringViewArray = (0..plain.num_rows())
            .map(|i| Some(format!("{i:0>100}")))
            .collect();
        let mut fields = plain.schema().fields().to_vec();
        fields[2] = Arc::new(Field::new("k2", DataType::Utf8View, true));
        let mut columns = plain.columns().to_vec();
        columns[2] = Arc::new(long);
        let right = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        // Taken, not sliced: the other columns get buffers of their own.
        let shared = pieces(&right, 100);
        let per_batch = shared[0].get_array_memory_size();
        assert!(
            per_batch > 2_000_000,
            "the batches share the strings: {per_batch}"
        );
        for sides in [false, true] {
            let mut outcomes = Vec::new();
            for pool in [None, Some(12_000_000)] {
                let ctx = match pool {
                    None => unlimited(),
                    Some(bytes) => context(
                        MemoryBudget::with_pool_bytes(bytes),
                        temp_dir(),
                        2,
                        64,
                        1024,
                    ),
                };
                let (on, schema, left, _) =
                    inputs(&left, &right, JoinKind::Inner, &[1], &None, false);
                let right = Batches::new(right.schema(), shared.clone());
                let mut op: BoxedOperator = if sides {
                    Box::new(JoinSides::new(
                        ctx.clone(),
                        left,
                        right,
                        JoinKind::Inner,
                        on,
                        None,
                        schema,
                    )?)
                } else {
                    Box::new(HashJoin::new(
                        ctx.clone(),
                        left,
                        right,
                        JoinKind::Inner,
                        on,
                        None,
                        false,
                        schema,
                    )?)
                };
                outcomes.push(pairs_of(op.as_mut(), JoinKind::Inner)?);
                drop(op);
                assert_eq!(ctx.spill.spill_files(), 0, "sides={sides} pool={pool:?}");
                assert_clean(&ctx);
            }
            assert_eq!(outcomes[0], outcomes[1], "sides={sides}");
            assert!(!outcomes[0].is_empty());
        }
        Ok(())
    }

    #[test]
    fn partitions_that_fit_stay_in_memory_with_identical_results() {
        // A budget that holds some of the build side's partitions but not
        // all: the rest are spilled, the kept ones joined as the probe
        // side streams.
        let (left, right) = (side(30_000, 20_000, 21), side(150_000, 20_000, 22));
        for kind in KINDS {
            let want = run(unlimited(), &left, &right, kind, &[1], None, false).unwrap();
            let ctx = context(
                MemoryBudget::with_pool_bytes(6_000_000),
                temp_dir(),
                2,
                64,
                1024,
            );
            let (got, level, _, resident, _) =
                run_counted(ctx.clone(), &left, &right, kind, &[1], None, false).unwrap();
            assert!(resident > 0, "{kind:?}: no partition kept in memory");
            assert!(
                ctx.spill.spill_files() > PARTITIONS as u64,
                "{kind:?}: the probe side was not spilled in part"
            );
            assert!(level >= 1, "{kind:?}: not partitioned");
            assert_eq!(got, want, "{kind:?}");
            assert_clean(&ctx);
        }
    }

    #[test]
    fn partitions_written_on_their_own_thread_give_identical_results() {
        // A pool large enough for the partition writer thread, nearly all
        // of it held elsewhere: the join partitions, its pieces gathered
        // on the writer thread while the budget lets them be, and written
        // alone when it does not.
        let (left, right) = (side(30_000, 20_000, 51), side(150_000, 20_000, 52));
        for (free, kind) in [(6 << 20, JoinKind::Inner), (3 << 20, JoinKind::Full)]
            .into_iter()
            .chain(KINDS.into_iter().map(|k| (4 << 20, k)))
        {
            let want = run(unlimited(), &left, &right, kind, &[1], None, false).unwrap();
            let pool = THREADED_POOL_BYTES_MIN + (16 << 20);
            let budget = MemoryBudget::with_pool_bytes(pool);
            let mut elsewhere = budget.reservation("held elsewhere");
            elsewhere.try_grow(pool - free).unwrap();
            let ctx = context(budget, temp_dir(), 2, 64, 1024);
            let (got, level, _, _, _) =
                run_counted(ctx.clone(), &left, &right, kind, &[1], None, false).unwrap();
            assert!(level >= 1, "{kind:?}: not partitioned");
            assert_eq!(got, want, "{kind:?}");
            drop(elsewhere);
            assert_clean(&ctx);
        }
    }

    #[test]
    fn a_resident_partition_refused_half_built_goes_to_disk_after_all() {
        // The build side's rows grow wide after the first half: the cost a
        // row had when the build overflowed says a partition fits, and
        // building it is refused half way. The partitions built before it
        // are built again alone, and this one is joined from disk.
        let left = side(30_000, 20_000, 41);
        let narrow = side(60_000, 20_000, 42);
        let pad: StringArray = (0..narrow.num_rows())
            .map(|i| {
                Some(if i < 30_000 {
                    String::new()
                } else {
                    "p".repeat(1000)
                })
            })
            .collect();
        let mut columns = narrow.columns().to_vec();
        columns.push(Arc::new(pad));
        let mut fields: Vec<Field> = narrow
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("pad", DataType::Utf8, false));
        let right = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut rollbacks = 0;
        for kind in KINDS {
            let want = run(unlimited(), &left, &right, kind, &[1], None, false).unwrap();
            for pool in [4_000_000, 6_000_000] {
                let ctx = context(MemoryBudget::with_pool_bytes(pool), temp_dir(), 2, 64, 1024);
                let (got, _, _, _, rolled_back) =
                    run_counted(ctx.clone(), &left, &right, kind, &[1], None, false).unwrap();
                rollbacks += rolled_back;
                assert_eq!(got, want, "{kind:?} under {pool}");
                assert_clean(&ctx);
            }
        }
        assert!(
            rollbacks > 0,
            "no resident partition was refused half built"
        );
    }

    #[test]
    fn one_key_too_common_to_split_is_joined_by_blocks() {
        // Half the right side has key 7, which 40 left rows share: no
        // partitioning can split it, so blocks of build rows take turns.
        let skewed = |b: RecordBatch, every: usize| {
            let mut columns = b.columns().to_vec();
            let keys: Int64Array = b
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    if i % every == 0 {
                        Some(7)
                    } else {
                        k.map(|k| k + 100)
                    }
                })
                .collect();
            columns[1] = Arc::new(keys);
            RecordBatch::try_new(b.schema(), columns).unwrap()
        };
        let left = skewed(side(4_000, 3_000, 15), 100);
        let right = skewed(side(60_000, 3_000, 16), 2);
        for kind in KINDS {
            let want = run(unlimited(), &left, &right, kind, &[1], None, false).unwrap();
            let ctx = tiny();
            let (got, _, blocks, ..) =
                run_counted(ctx.clone(), &left, &right, kind, &[1], None, false).unwrap();
            assert!(blocks >= 2, "{kind:?}: {blocks} block(s)");
            assert_eq!(got, want, "{kind:?}");
            assert_clean(&ctx);
        }
    }

    #[test]
    fn a_cross_join_over_the_budget_runs_by_blocks_for_every_kind() {
        let (left, right) = (side(60, 5, 17), side(40_000, 5, 18));
        // A pure non-equi condition: left.v < right.v.
        let filter = Expr::binary(BinaryOp::Lt, col(3), col(7));
        for kind in KINDS {
            let want = run(
                unlimited(),
                &left,
                &right,
                kind,
                &[],
                Some(filter.clone()),
                false,
            )
            .unwrap();
            assert_eq!(want, reference(&left, &right, kind, &[], |a, b| a < b));
            let ctx = tiny();
            let (got, _, blocks, ..) = run_counted(
                ctx.clone(),
                &left,
                &right,
                kind,
                &[],
                Some(filter.clone()),
                false,
            )
            .unwrap();
            assert!(blocks >= 2, "{kind:?}: {blocks} block(s)");
            assert_eq!(got, want, "{kind:?}");
            assert_clean(&ctx);
        }
    }

    #[test]
    fn not_in_sees_the_whole_right_side_when_partitioned() {
        let left = side(5_000, 4_000, 19);
        let right = side(150_000, 3_000, 20);
        // side() gives the right NULL keys: every NOT IN is unknown.
        let ctx = tiny();
        let (got, level, ..) =
            run_counted(ctx.clone(), &left, &right, JoinKind::Anti, &[1], None, true).unwrap();
        assert!(level >= 1);
        assert!(got.is_empty(), "{} rows", got.len());
        assert_clean(&ctx);
        let clean = arrow::compute::filter_record_batch(
            &right,
            &arrow::compute::is_not_null(right.column(1)).unwrap(),
        )
        .unwrap();
        let want = run(unlimited(), &left, &clean, JoinKind::Anti, &[1], None, true).unwrap();
        assert!(!want.is_empty());
        let ctx = tiny();
        let (got, level, ..) =
            run_counted(ctx.clone(), &left, &clean, JoinKind::Anti, &[1], None, true).unwrap();
        assert!(level >= 1);
        assert_eq!(got, want);
        assert_clean(&ctx);
    }

    #[test]
    fn spilled_pieces_come_back_joined_up_to_a_batch() {
        let ctx = unlimited();
        let whole = side(1_000, 100, 21);
        // Pieces as a partition's file holds them: a few rows each, one as
        // large as a batch, and empty ones.
        let mut writer = ctx.spill.writer(whole.schema(), "test").unwrap();
        let sizes = [7, 0, 30, 64, 5, 5, 200, 1, 300, 388];
        let mut at = 0;
        for n in sizes {
            writer.write(&whole.slice(at, n)).unwrap();
            at += n;
        }
        assert_eq!(at, whole.num_rows());
        let files = Arc::new(vec![writer.finish().unwrap()]);
        let mut source = SpillSource::new(whole.schema(), files, 100);
        let mut sizes_read = Vec::new();
        let mut read = Vec::new();
        while let Some(b) = source.next_batch().unwrap() {
            sizes_read.push(b.num_rows());
            read.push(b);
        }
        // 7 and 30 join; 64 more would pass 100, and 64, half a batch or
        // more, comes back alone, as do 200, 300 and 388. 5 and 5 join;
        // 1 stays alone, since the 300 after it would pass 100.
        assert_eq!(sizes_read, [37, 64, 10, 200, 1, 300, 388]);
        let joined = arrow::compute::concat_batches(&whole.schema(), &read).unwrap();
        assert_eq!(joined, whole);
    }
}
