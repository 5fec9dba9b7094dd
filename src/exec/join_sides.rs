//! Which input a hash join builds, settled at run time.
//!
//! The planner puts the input it estimates smaller on the right, the side
//! the [`HashJoin`] builds, but what a filter or a join keeps is a guess
//! before anything is read. In TPC-H Q9 the left input of the join with
//! partsupp is the 319k lineitem rows of green parts, guessed at half of
//! lineitem, so the join built all 800k partsupp rows, the next one all
//! 1.5M orders, and both spilled at 256MB.
//!
//! So before the join starts, this reads ahead on the right input, up to a
//! [`LOOK_AHEAD_SHARE`] of the operator pool. If it ends within that, it is
//! built as planned: the batches read ahead are the first of the build,
//! unless it is large ([`COMPARE_BYTES_MIN`]). Then, or if the right does
//! not end, the left input is read up to as much as was read of the right.
//! If the left input ends within that, the join is mirrored: it builds the
//! left input and streams the right (a LEFT join becomes a RIGHT one), and
//! its output columns are put back in order. Otherwise the join runs as
//! planned, reading first what was read ahead. Sizes are what a build
//! would hold: the batches' Arrow bytes and [`ROW_BYTES`] a row.
//!
//! The right input is read first because a build that fits is the common
//! case, and then nothing else is paused: reading the left input ahead
//! starts its operators (its joins' builds held, its scans' decoders
//! open) while the right input is still to be read. That is done only for
//! a right input too big for the look-ahead, and the planner uses this
//! operator only under a pool of [`POOL_BYTES_MIN`] or more: below that,
//! TPC-H Q10 at 32MB passed the heap's abort line with the left input
//! read first.
//!
//! Only inner, left, right and full joins mirror. SEMI and ANTI joins
//! return left rows, and are planned as [`HashJoin`]s directly.
//!
//! # Memory
//!
//! - What is read ahead is reserved batch by batch, its view columns
//!   compacted first as a build's are. If the budget refuses, reading
//!   ahead stops and the join runs as planned.
//! - The join's spill buffers and build floor are reserved at creation, as
//!   a [`HashJoin`]'s are, so that operators made after it cannot take
//!   them.
//! - A left input that does not end within the look-ahead is what the
//!   planner expected: its batches read so far go to one spill file, and
//!   are read back from it before the rest, so that their memory goes to
//!   the build.
//! - Batches read ahead are handed to the join one at a time, and the
//!   reservation shrinks as they go: a build batch is then the join's to
//!   reserve, and a probe batch the join's to stream.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};

use crate::analyze;
use crate::error::{Error, Result};
use crate::exec::hash_join::{HashJoin, SpillSource};
use crate::exec::{BoxedOperator, Operator, RunContext};
use crate::memory::Reservation;
use crate::plan::logical::JoinKind;
use crate::plan::Expr;
use crate::spill::{compact_views, IO_BUFFER_BYTES};

/// The look-ahead on each side is at most the pool divided by this.
pub const LOOK_AHEAD_SHARE: usize = 2;

/// And at most this, when the pool is very large or unlimited.
const LOOK_AHEAD_BYTES_MAX: usize = 1 << 30;

/// The smallest operator pool this operator is planned for; see the module
/// doc.
pub const POOL_BYTES_MIN: usize = 48 << 20;

/// A right input that ends within the look-ahead but holds this much or
/// more is still compared with the left, which is built if it ends first.
/// Why: a right input fitting the look-ahead says it fits, not that it is
/// the smaller. In TPC-H Q9 the 1.5M orders rows (about 66 MB to build)
/// fitted a 141 MB pool's look-ahead, and building them instead of the
/// 319k lineitem rows on the left (about 36 MB) took the query from 0.82
/// to 1.66 s at 256MB. Smaller right inputs are built without looking: a
/// left input that is not smaller is read ahead to disk and back, and a
/// small build costs little whichever side it is.
const COMPARE_BYTES_MIN: usize = 8 << 20;

/// What a build row costs beyond its Arrow bytes, roughly: its chain link,
/// location and matched bit (13 bytes), a hash slot and its encoded key.
const ROW_BYTES: usize = 32;

pub struct JoinSides {
    ctx: Arc<RunContext>,
    /// The inputs and the join's floor, until the join is made.
    inputs: Option<(BoxedOperator, BoxedOperator, Reservation)>,
    kind: JoinKind,
    on: Vec<(Expr, Expr)>,
    filter: Option<Expr>,
    schema: SchemaRef,
    /// The join, once the sides are settled.
    join: Option<BoxedOperator>,
    /// Whether it builds the left input.
    mirrored: Option<bool>,
    /// [`COMPARE_BYTES_MIN`], or what a test sets.
    compare_bytes_min: usize,
}

impl JoinSides {
    /// A hash join of `left` and `right`, as [`HashJoin::new`] takes them;
    /// `kind` must mirror (see [`mirrors`]).
    pub fn new(
        ctx: Arc<RunContext>,
        left: BoxedOperator,
        right: BoxedOperator,
        kind: JoinKind,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        schema: SchemaRef,
    ) -> Result<JoinSides> {
        debug_assert!(mirrors(kind));
        let floor = HashJoin::reserve_floor(&ctx)?;
        Ok(JoinSides {
            ctx,
            inputs: Some((left, right, floor)),
            kind,
            on,
            filter,
            schema,
            join: None,
            mirrored: None,
            compare_bytes_min: COMPARE_BYTES_MIN,
        })
    }

    /// Compare a right input that ends within the look-ahead with the left
    /// from `bytes` on: a test's way to reach that with small inputs.
    #[cfg(test)]
    pub fn comparing_from(mut self, bytes: usize) -> JoinSides {
        self.compare_bytes_min = bytes;
        self
    }

    /// Whether the join builds its left input, once the first batch has
    /// been asked for.
    pub fn mirrored(&self) -> Option<bool> {
        self.mirrored
    }

    fn start(
        &mut self,
        mut left: BoxedOperator,
        mut right: BoxedOperator,
        floor: Reservation,
    ) -> Result<()> {
        let cap = (self.ctx.budget.pool_bytes() / LOOK_AHEAD_SHARE).min(LOOK_AHEAD_BYTES_MAX);
        let mut right_ahead = Ahead::new(&self.ctx, right.schema());
        let right_rest = match right_ahead.read(right.as_mut(), cap)? {
            Stop::Ended if right_ahead.cost >= self.compare_bytes_min => None,
            // Small enough, or no memory to tell: the batches read are
            // the first of the build.
            Stop::Ended => return self.plan_as_is(left, right_ahead.before(None), floor),
            Stop::Refused => return self.plan_as_is(left, right_ahead.before(Some(right)), floor),
            Stop::Bigger => Some(right),
        };
        let mut left_ahead = Ahead::new(&self.ctx, left.schema());
        if left_ahead.read(left.as_mut(), right_ahead.cost)? == Stop::Ended {
            self.mirrored = Some(true);
            analyze::note("built=left");
            return self.mirror(
                right_ahead.before(right_rest),
                left_ahead.before(None),
                floor,
            );
        }
        // The left input is as big as planned: what was read of it waits
        // on disk, so that its memory goes to the build.
        let left = left_ahead.spill_before(&self.ctx, left)?;
        self.plan_as_is(left, right_ahead.before(right_rest), floor)
    }

    fn plan_as_is(
        &mut self,
        left: BoxedOperator,
        right: BoxedOperator,
        floor: Reservation,
    ) -> Result<()> {
        self.mirrored.get_or_insert(false);
        self.join = Some(Box::new(HashJoin::with_floor(
            self.ctx.clone(),
            left,
            right,
            self.kind,
            std::mem::take(&mut self.on),
            self.filter.take(),
            false,
            self.schema.clone(),
            floor,
        )?));
        Ok(())
    }

    /// Join with the sides swapped: `probe` is the right input, `build`
    /// the left.
    fn mirror(
        &mut self,
        probe: BoxedOperator,
        build: BoxedOperator,
        floor: Reservation,
    ) -> Result<()> {
        let nl = build.schema().fields().len();
        let nr = probe.schema().fields().len();
        let on = std::mem::take(&mut self.on);
        let Some(m) = self.kind.mirror(on, self.filter.take(), nl, nr)? else {
            return Err(Error::Internal(format!(
                "a {} join cannot build its left input",
                self.kind.name()
            )));
        };
        let fields = self.schema.fields();
        let swapped = Arc::new(Schema::new(
            (fields.iter().skip(nl).chain(fields.iter().take(nl)))
                .cloned()
                .collect::<Vec<_>>(),
        ));
        let join = HashJoin::with_floor(
            self.ctx.clone(),
            probe,
            build,
            m.kind,
            m.on,
            m.filter,
            false,
            swapped,
            floor,
        )?;
        self.join = Some(Box::new(Reorder {
            input: Box::new(join),
            schema: self.schema.clone(),
            order: m.order,
        }));
        Ok(())
    }
}

/// Whether a join of `kind` can build either input (see
/// [`JoinKind::mirror`]).
pub fn mirrors(kind: JoinKind) -> bool {
    kind.keeps_right()
}

impl Operator for JoinSides {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some((left, right, floor)) = self.inputs.take() {
            self.start(left, right, floor)?;
        }
        match &mut self.join {
            Some(join) => join.next_batch(),
            None => Ok(None),
        }
    }
}

/// Why reading ahead stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The input ended.
    Ended,
    /// It read more than it was allowed.
    Bigger,
    /// The budget refused a batch (which is kept all the same).
    Refused,
}

/// Batches read ahead on one input, and their reservation.
struct Ahead {
    schema: SchemaRef,
    batches: VecDeque<RecordBatch>,
    /// Arrow bytes and [`ROW_BYTES`] a row.
    cost: usize,
    reservation: Reservation,
}

impl Ahead {
    fn new(ctx: &RunContext, schema: SchemaRef) -> Ahead {
        Ahead {
            schema,
            batches: VecDeque::new(),
            cost: 0,
            reservation: ctx.budget.reservation("join look-ahead"),
        }
    }

    /// Read `input` until it ends or more than `cap` has been read.
    fn read(&mut self, input: &mut dyn Operator, cap: usize) -> Result<Stop> {
        while let Some(batch) = input.next_batch()? {
            // Held, and measured: a view batch that shares its reader's
            // pages would count them all (see HashJoin's build, which
            // compacts its batches the same way).
            let batch = compact_views(&batch);
            let bytes = batch.get_array_memory_size();
            let refused = self.reservation.try_grow(bytes).is_err();
            self.cost += bytes + batch.num_rows() * ROW_BYTES;
            self.batches.push_back(batch);
            if refused {
                return Ok(Stop::Refused);
            }
            if self.cost > cap {
                return Ok(Stop::Bigger);
            }
        }
        Ok(Stop::Ended)
    }

    /// The batches read ahead, then `rest`.
    fn before(self, rest: Option<BoxedOperator>) -> BoxedOperator {
        Box::new(Replay { ahead: self, rest })
    }

    /// The batches read ahead through a spill file, then `rest`.
    fn spill_before(mut self, ctx: &RunContext, rest: BoxedOperator) -> Result<BoxedOperator> {
        // The writer's buffer comes from the batches' reservation: the
        // first batch written frees more than that.
        let mut writer = ctx.spill.writer(self.schema.clone(), "join look-ahead")?;
        let floor = IO_BUFFER_BYTES.min(self.reservation.size());
        while let Some(batch) = self.batches.pop_front() {
            writer.write(&batch)?;
            let bytes = batch.get_array_memory_size();
            drop(batch);
            let held = self.reservation.size();
            self.reservation
                .shrink(bytes.min(held.saturating_sub(floor)));
        }
        let file = writer.finish()?;
        drop(self.reservation);
        Ok(Box::new(Chain {
            first: Some(Box::new(SpillSource::new(
                self.schema,
                Arc::new(vec![file]),
                ctx.config.batch_rows,
            ))),
            rest,
        }))
    }
}

/// Batches read ahead, then the rest of their input.
struct Replay {
    ahead: Ahead,
    rest: Option<BoxedOperator>,
}

impl Operator for Replay {
    fn schema(&self) -> SchemaRef {
        self.ahead.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(batch) = self.ahead.batches.pop_front() {
            let held = self.ahead.reservation.size();
            self.ahead
                .reservation
                .shrink(batch.get_array_memory_size().min(held));
            return Ok(Some(batch));
        }
        match &mut self.rest {
            Some(rest) => rest.next_batch(),
            None => Ok(None),
        }
    }
}

/// One operator, then another.
struct Chain {
    first: Option<BoxedOperator>,
    rest: BoxedOperator,
}

impl Operator for Chain {
    fn schema(&self) -> SchemaRef {
        self.rest.schema()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(first) = &mut self.first {
            if let Some(batch) = first.next_batch()? {
                return Ok(Some(batch));
            }
            // Its spill file goes now, not at the end of the join.
            self.first = None;
        }
        self.rest.next_batch()
    }
}

/// A mirrored join's output, its columns back in the query's order.
struct Reorder {
    input: BoxedOperator,
    schema: SchemaRef,
    order: Vec<usize>,
}

impl Operator for Reorder {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(batch) = self.input.next_batch()? else {
            return Ok(None);
        };
        let columns = self.order.iter().map(|&i| batch.column(i).clone());
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(Some(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns.collect(),
            &options,
        )?))
    }
}
