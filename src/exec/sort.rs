//! ORDER BY: an external merge sort, which is also the top-k of
//! `ORDER BY ... LIMIT k`.
//!
//! Sort keys are evaluated once per input batch and encoded with arrow-row
//! into one binary column appended to the batch. From then on every
//! comparison is a `memcmp` of two byte strings, whatever the key types and
//! directions. Spilled runs carry their keys where they are expressions or
//! columns held in another type; where every key is a column kept as it
//! is, runs are written without the key column and it is encoded again as
//! they are read back ([`Rekey`]), which costs less than writing it.
//!
//! 1. **Run generation.** Batches gather in a [`RunBuffer`] under a
//!    reservation. When the budget refuses more, or the buffer reaches its
//!    share of the pool, the buffer is sorted and written as one run of LZ4
//!    Arrow IPC. With `--threads` above 1 that happens on a worker thread
//!    while this one goes on reading, which is why a buffer gets half of
//!    what is free when the sort starts: one fills while the other is
//!    written. Writing is the slower side, so when this thread has to wait
//!    for the worker it gathers the run's next batches for it.
//! 2. **Merge.** Runs merge through a loser tree over their key bytes, at
//!    most `fan_in` at a time: the smaller of `--merge-fan-in` and what the
//!    budget allows for one read cursor per run (asked once freed memory
//!    has gone back to the system and pressure has been judged again). With more runs than that,
//!    consecutive groups merge into longer runs, pass after pass, and only
//!    the last pass streams out. A pass that can leave the last merge few
//!    enough runs by merging only some of them merges just those, the first
//!    ones in input order, so that ties keep their order ([`runs_to_merge`]).
//! 3. An input that never outgrew its buffer is sorted in memory and never
//!    touches disk. One that did keeps its last buffer in memory for the
//!    merge when a single merge takes every run.
//!
//! The sort is stable, so results are deterministic: ties keep input order
//! (in memory the tiebreak is the row's position, in a merge the run's, and
//! runs are in input order).
//!
//! With a `fetch` of k rows the buffer is cut back to its best k rows
//! whenever it passes 2k, and the k-th key becomes a threshold that later
//! rows must beat to be kept at all: memory is O(k), not O(input). If even
//! 2k rows do not fit, the same buffer simply spills, and each run keeps
//! only its first k rows.
//!
//! # Memory
//!
//! - The run buffer reserves each batch's Arrow size plus
//!   [`ENTRY_BYTES`] a row for its place in the sorted order, before
//!   keeping it.
//! - Before reading input the sort reserves what a two-way merge needs
//!   ([`merge_bytes`] for two cursors): a sort that has spilled can always
//!   finish, however the pool is used meanwhile. If operators below hold
//!   the pool then, it takes that memory when it writes its first run
//!   instead, from what the run buffer gives back.
//! - Batches gathered ahead of the run writer (at most
//!   [`GATHERED_AHEAD_MAX`]) are reserved before they are gathered.
//! - The last buffer kept for the merge keeps its reservation, and the
//!   merge reserves two batches' worth for gathering from it.
//! - Runs are written in batches of about [`spill_batch_bytes`], so that a
//!   merge cursor (its current batch, one retired batch awaiting output, and
//!   its IPC read buffer) costs a bounded amount; the merge grows its
//!   reservation one cursor at a time, and its fan-in is what it got.
//! - Output batches hold at most `--batch-rows` rows and about as many bytes
//!   as a spill batch; the last merge grows its reservation to make them
//!   [`OUTPUT_BATCH_BYTES`] where the budget allows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch, RecordBatchOptions,
    UInt32Array,
};
use arrow::compute::{
    cast, filter_record_batch, interleave, interleave_record_batch, take, SortOptions,
};
use arrow::datatypes::{DataType, Decimal128Type, Decimal64Type, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};

use crate::analyze;
use crate::error::{Error, Result};
use crate::exec::{BoxedOperator, Operator, RunContext};
use crate::memory::monitor::Monitor;
use crate::memory::Reservation;
use crate::plan::{Expr, SortKey};
use crate::spill::{SpillFile, SpillReader, IO_BUFFER_BYTES};

/// Bytes a buffered row costs beyond its data: its place in the sorted
/// order, `(batch, row)`. (Sorting a batch as it arrives takes a 32-byte
/// entry a row, but only for one batch at a time.)
const ENTRY_BYTES: usize = 8;

/// The name of the encoded-key column appended to buffered and spilled
/// batches.
const KEY_COLUMN: &str = "__highwater_sort_key";

/// The most a run buffer takes while the runs are few: larger runs sort
/// slower, and while one merge can take every run they save nothing.
/// Sorting SF1 lineitem (medians of 3):
/// - under a 141 MB pool, 14 runs of about 70 MB took 5.28 s, against
///   4.95 s for 22 runs of 47 MB under a 96 MB pool;
/// - at a 2GB limit, 2 runs of about 400 MB took 5.63 s and 830 MB of RSS,
///   20 runs of 48 MB 5.03 s and 164 MB.
///
/// The cost: an input of 48 MB to half the pool, which one buffer would
/// have sorted in memory, spills (SF0.1 lineitem at 2GB: 0.60 s in memory,
/// 0.72 s in two runs). Past half the fan-in the buffers take what they
/// can, so that a large input makes fewer runs and needs fewer merge
/// passes.
const RUN_BUFFER_BYTES: usize = 48 << 20;

/// Bytes one batch of a spilled run should hold: small enough that a merge
/// of `--merge-fan-in` runs (three batches a cursor, see [`merge_bytes`])
/// fits in most of the pool; never so small that per-batch overhead
/// dominates.
pub fn spill_batch_bytes(pool_bytes: usize, fan_in_max: usize) -> usize {
    (pool_bytes / (4 * fan_in_max.max(2))).clamp(64 << 10, 8 << 20)
}

/// What a merge of `fan_in` runs reserves: per cursor its current batch,
/// one retired batch still referenced by the output being built, and the
/// IPC reader's buffer and decoded message; plus the output batch.
pub fn merge_bytes(fan_in: usize, batch_bytes: usize) -> usize {
    fan_in * cursor_bytes(batch_bytes) + batch_bytes
}

/// Bytes an output batch of the last merge should hold, where the budget
/// gives it. Whatever reads the sort works a batch at a time (the Parquet
/// sink shares each batch's columns between two threads and waits for
/// both), and spill-sized batches made that per-batch cost a sixth of the
/// merge phase: SF1 lineitem sorted in 5.0 s with them, 4.7 s with these.
const OUTPUT_BATCH_BYTES: usize = 2 << 20;

fn cursor_bytes(batch_bytes: usize) -> usize {
    3 * batch_bytes + IO_BUFFER_BYTES
}

/// How many of `runs` runs (taken from the front, in order) a merge pass
/// with fan-in `fan_in` merges, in groups of `fan_in`.
///
/// Every run, unless the pass can leave at most `fan_in` runs for the last
/// merge by merging fewer: then just enough to get there. Each group of g
/// runs merged leaves one, so bringing the count down by `runs - fan_in`
/// takes that many divided by `fan_in - 1`, rounded up, groups. The runs
/// left alone are not read and written again: SF1 lineitem at 64MB wrote
/// 110 runs with a fan-in of 41, and the pass before the last merge
/// rewrote all of them where 71 were enough.
fn runs_to_merge(runs: usize, fan_in: usize) -> usize {
    let fan_in = fan_in.max(2);
    if runs <= fan_in {
        return 0;
    }
    if runs.div_ceil(fan_in) > fan_in {
        // Even merging every run leaves more than one merge can take.
        return runs;
    }
    let excess = runs - fan_in;
    let groups = excess.div_ceil(fan_in - 1);
    // Full groups, then a last one of what is still in excess plus the run
    // it becomes.
    let full = groups - 1;
    full * fan_in + (excess - full * (fan_in - 1)) + 1
}

pub struct Sort {
    ctx: Arc<RunContext>,
    input: BoxedOperator,
    schema: SchemaRef,
    keys: Vec<SortKey>,
    converter: Arc<RowConverter>,
    /// The input's schema plus the key column.
    keyed_schema: SchemaRef,
    /// Set where runs are written without their key column.
    rekey: Option<Arc<Rekey>>,
    fetch: Option<usize>,
    output: Option<Output>,
}

impl Sort {
    pub fn new(
        ctx: Arc<RunContext>,
        input: BoxedOperator,
        keys: Vec<SortKey>,
        fetch: Option<usize>,
    ) -> Result<Self> {
        let schema = input.schema();
        let mut fields = Vec::with_capacity(keys.len());
        for k in &keys {
            let data_type = k.expr.data_type(&schema)?;
            let options = SortOptions {
                descending: k.descending,
                nulls_first: k.nulls_first,
            };
            let field = SortField::new_with_options(data_type.clone(), options);
            if !RowConverter::supports_fields(std::slice::from_ref(&field)) {
                return Err(Error::NotImplemented(format!(
                    "ORDER BY on a key of type {}",
                    crate::plan::expr::sql_type_name(&data_type)
                )));
            }
            fields.push(field);
        }
        let converter = RowConverter::new(fields)?;
        let mut keyed: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_data_type(stored_type(f.data_type()))
            })
            .collect();
        keyed.push(Field::new(KEY_COLUMN, DataType::Binary, false));
        let keyed_schema = Arc::new(Schema::new(keyed));
        let converter = Arc::new(converter);
        let rekey = Rekey::new(&keys, &schema, &converter, &keyed_schema)?.map(Arc::new);
        Ok(Sort {
            ctx,
            input,
            schema,
            keys,
            converter,
            keyed_schema,
            rekey,
            fetch,
            output: None,
        })
    }

    /// Hand out string and binary columns in the layout they are sorted in
    /// (plain offsets and bytes, see [`stored_type`]) where the plan says
    /// views. Only for a sort whose rows go straight out, where either
    /// does: operators above a sort were planned for the plan's types. Rebuilding views that the writer reads once cost 3% of
    /// sorting SF1 lineitem into Parquet.
    pub fn with_plain_strings(mut self) -> Self {
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Utf8View | DataType::BinaryView => stored_type(f.data_type()),
                    other => other.clone(),
                };
                f.as_ref().clone().with_data_type(t)
            })
            .collect();
        self.schema = Arc::new(Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ));
        self
    }

    /// `batch` with its encoded keys appended as the last column.
    fn with_keys(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|k| k.expr.evaluate_to_array(&batch))
            .collect::<Result<_>>()?;
        let encoded = self
            .converter
            .convert_columns(&columns)?
            .try_into_binary()?;
        let order = batch_order(&encoded);
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(encoded));
        if let Some(indices) = order {
            // Before the cast: a view column is reordered by its views, and
            // the cast then copies each string once, already in order.
            columns = columns
                .iter()
                .map(|c| take(c, &indices, None))
                .collect::<std::result::Result<_, _>>()?;
        }
        let columns = cast_to(&columns, self.keyed_schema.fields())?;
        Ok(RecordBatch::try_new(self.keyed_schema.clone(), columns)?)
    }

    /// Read the whole input into sorted runs or one in-memory buffer.
    fn consume(&mut self) -> Result<Output> {
        let ctx = self.ctx.clone();
        let budget = &ctx.budget;
        let pool = budget.pool_bytes();
        let batch_bytes = spill_batch_bytes(pool, ctx.config.merge_fan_in_max);
        // Reserved before any input where it can be, so that a sort that
        // has spilled can always merge; see the module doc. Operators below
        // (a stack of joins) may hold the pool at first: then it is taken
        // from the buffer's memory when the first run is written, and a sort
        // that never spills (most sorts above joins) never needs it.
        let merge_need = merge_bytes(2, batch_bytes);
        let mut merge = budget.reservation("sort merge");
        let _ = merge.try_grow(merge_need);
        let ensure_merge = |merge: &mut Reservation, runs: &mut RunWriter| -> Result<()> {
            if merge.size() < merge_need && merge.try_grow(merge_need).is_err() {
                // The run just handed over still holds the buffer's memory.
                runs.wait()?;
                merge.try_grow(merge_need)?;
            }
            Ok(())
        };
        let background = ctx.config.threads > 1;
        // In the background one buffer fills while the other is written, so
        // each gets half of what is free now (the output writer's buffer and
        // operators below may hold part of the pool). Sized from the pool
        // instead, the second buffer would find only the remainder and spill
        // early: runs then alternated large and small, and reading stalled
        // while each large one was written (SF1 lineitem: 5.9 s, now 5.4 s).
        // At least an eighth of the pool even so: operators below that hold
        // the pool now may let go of it, and what a buffer really gets is
        // still what the budget grants.
        let buffer_bytes_max = if background {
            (budget.available_bytes() / 2).max(pool / 8)
        } else {
            pool
        };
        let mut shape = BatchShape::new(batch_bytes, ctx.config.batch_rows);
        let mut runs = RunWriter::new(
            ctx.clone(),
            self.keyed_schema.clone(),
            self.rekey.clone(),
            background,
        );
        let mut buffer = RunBuffer::new(budget.reservation("sort buffer"));
        // Top-k: rows must sort before this key to be worth keeping.
        let mut threshold: Option<Vec<u8>> = None;

        while let Some(batch) = self.input.next_batch()? {
            ctx.check()?;
            let mut batch = self.with_keys(batch)?;
            if let Some(t) = &threshold {
                batch = below(&batch, t)?;
                if batch.num_rows() == 0 {
                    continue;
                }
            }
            shape.observe(&batch);
            let bytes = batch.get_array_memory_size() + ENTRY_BYTES * batch.num_rows();
            loop {
                let cap = if runs.count() < ctx.config.merge_fan_in_max / 2 {
                    buffer_bytes_max.min(RUN_BUFFER_BYTES)
                } else {
                    buffer_bytes_max
                };
                let fits = buffer.reservation.size() + bytes <= cap;
                if fits && buffer.reservation.try_grow(bytes).is_ok() {
                    buffer.push(batch);
                    break;
                }
                if buffer.rows == 0 {
                    // Not even one batch fits: a run being written may be
                    // holding the memory, so wait for it and try again.
                    if runs.wait()? {
                        continue;
                    }
                    // This batch is in memory already; write it out alone.
                    buffer.push(batch);
                    runs.write(buffer.take(), self.fetch, shape.rows)?;
                    ensure_merge(&mut merge, &mut runs)?;
                    break;
                }
                runs.write(buffer.take(), self.fetch, shape.rows)?;
                ensure_merge(&mut merge, &mut runs)?;
            }
            if let Some(k) = self.fetch {
                if buffer.rows >= (2 * k).max(ctx.config.batch_rows) {
                    threshold = buffer.keep_first(k, shape.rows)?;
                }
            }
        }
        if !runs.started() {
            let order = buffer.sorted(self.fetch);
            return Ok(Output::Memory {
                run: MemoryRun::new(buffer, order, shape.rows),
                _reservation: merge,
            });
        }
        // The last buffer is sorted here while the run before it is still
        // being written, and kept for the merge if it can be.
        let last = (buffer.rows > 0).then(|| {
            let order = buffer.sorted(self.fetch);
            (buffer, order)
        });
        self.merge_runs(runs.finish()?, last, merge, shape.rows)
    }

    /// Merge runs in passes until one merge can take them all; return that
    /// last merge, which streams the output.
    ///
    /// `last` is the input's last buffer and its sorted order. When one
    /// merge takes every run, it joins that merge from memory instead of
    /// being written and read back: the input ends with no run to write
    /// while the merge waits, and the disk sees one run fewer.
    fn merge_runs(
        &self,
        mut runs: Vec<Run>,
        last: Option<(RunBuffer, Vec<(u32, u32)>)>,
        mut merge: Reservation,
        out_rows: usize,
    ) -> Result<Output> {
        let ctx = &self.ctx;
        // The run buffers just let go of may still count in RSS until the
        // allocator returns them. Judged by that, pressure would refuse every
        // cursor past two, and the fan-in, chosen once for every pass, would
        // stay two. Without this, 2 of 7 SF1 sorts to Parquet at 32MB
        // spilled 5.2 GB in 38 s, where the others spilled 1.5 GB in 15 s;
        // with it, none of 14.
        Monitor::settle(&ctx.budget);
        let batch_bytes = runs.iter().map(|r| r.batch_bytes_max).max().unwrap_or(0);
        let fan_in_max = ctx.config.merge_fan_in_max.max(2);
        let per_cursor = cursor_bytes(batch_bytes);
        // What is reserved already buys this many cursors (at least two: the
        // merge may not stall, and a row wider than the target batch size
        // makes the estimate low rather than the merge impossible).
        let mut fan_in = (merge.size().saturating_sub(batch_bytes) / per_cursor).max(2);
        // Then one more cursor at a time, up to what the runs need.
        let grow = |merge: &mut Reservation, mut fan_in: usize, runs: usize| {
            while fan_in < fan_in_max.min(runs) && merge.try_grow(per_cursor).is_ok() {
                fan_in += 1;
            }
            fan_in
        };
        fan_in = grow(&mut merge, fan_in, runs.len());
        let mut memory = None;
        if let Some((buffer, order)) = last {
            // In memory it opens no file, so it is not one of the fan-in;
            // it needs room for the two batches a cursor holds (its current
            // one and one retired), gathered from the buffer it still holds.
            if fan_in >= runs.len() && merge.try_grow(2 * batch_bytes).is_ok() {
                memory = Some(MemoryRun::new(buffer, order, out_rows));
            } else {
                let job = RunJob::new(buffer, order, out_rows, self.rekey.clone());
                runs.push(write_run(ctx, &self.keyed_schema, &job)?);
                fan_in = grow(&mut merge, fan_in, runs.len());
            }
        }
        let runs_written = runs.len();
        let mut passes = 1;
        while runs.len() > fan_in {
            passes += 1;
            let mut next = Vec::with_capacity(runs.len().div_ceil(fan_in));
            let mut to_merge = runs_to_merge(runs.len(), fan_in);
            let mut rest = runs.into_iter().peekable();
            while rest.peek().is_some() {
                let take = fan_in.min(to_merge);
                to_merge -= take;
                let group: Vec<Run> = rest.by_ref().take(take.max(1)).collect();
                if group.len() == 1 {
                    next.extend(group);
                    continue;
                }
                let (written, mut merger) = match &self.rekey {
                    Some(rekey) => {
                        let schema = rekey.run_schema.clone();
                        let merger = Merger::new(group, None, out_rows, Some(schema.clone()))?;
                        (schema, merger.measuring_keys())
                    }
                    None => (
                        self.keyed_schema.clone(),
                        Merger::new(group, None, out_rows, None)?,
                    ),
                };
                let mut writer = ctx.spill.writer(written, "sort run")?;
                let mut rows_left = self.fetch.unwrap_or(usize::MAX);
                let mut batch_bytes_max = 0;
                while rows_left > 0 {
                    ctx.check()?;
                    let Some(batch) = merger.next_batch()? else {
                        break;
                    };
                    let batch = batch.slice(0, batch.num_rows().min(rows_left));
                    rows_left -= batch.num_rows();
                    // With its key, as a cursor will hold it.
                    let bytes = batch.get_array_memory_size() + merger.key_bytes_left_out();
                    batch_bytes_max = batch_bytes_max.max(bytes);
                    writer.write(&batch)?;
                }
                next.push(Run {
                    file: writer.finish()?,
                    batch_bytes_max,
                    rekey: self.rekey.clone(),
                });
            }
            runs = next;
        }
        analyze::note(&format!(
            "runs={runs_written} fan-in={fan_in} merge passes={passes}{}",
            if memory.is_some() {
                ", last run merged from memory"
            } else {
                ""
            }
        ));
        // The reservation holds one spill-sized output batch; grow it to
        // OUTPUT_BATCH_BYTES if the budget allows, keeping `--batch-rows`.
        let mut out_rows = out_rows;
        let extra = OUTPUT_BATCH_BYTES.saturating_sub(batch_bytes);
        if batch_bytes > 0 && extra > 0 && merge.try_grow(extra).is_ok() {
            out_rows = (out_rows * (OUTPUT_BATCH_BYTES / batch_bytes)).min(ctx.config.batch_rows);
        }
        Ok(Output::Merge {
            merger: Merger::new(runs, memory, out_rows, Some(self.unkeyed_schema()?))?,
            rows_left: self.fetch.unwrap_or(usize::MAX),
            _reservation: merge,
        })
    }

    /// The stored schema without the key column.
    fn unkeyed_schema(&self) -> Result<SchemaRef> {
        let columns: Vec<usize> = (0..self.keyed_schema.fields().len() - 1).collect();
        Ok(Arc::new(self.keyed_schema.project(&columns)?))
    }

    /// Drop the key column and give the batch the plan's schema and types.
    fn strip(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let columns = cast_to(batch.columns(), self.schema.fields())?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

/// The first `fields.len()` of `columns`, each cast to its field's type
/// where it differs (see [`stored_type`]).
fn cast_to(columns: &[ArrayRef], fields: &Fields) -> Result<Vec<ArrayRef>> {
    columns
        .iter()
        .zip(fields)
        .map(
            |(column, field)| match (column.data_type(), field.data_type()) {
                (from, to) if from == to => Ok(column.clone()),
                // Not arrow's cast, which checks each value against the
                // precision and nulls it if too wide: here a value only changes
                // width, so any that fits 64 bits passes, whatever a writer put
                // in the file.
                (DataType::Decimal128(..), &DataType::Decimal64(p, s)) => {
                    let narrow = column
                        .as_primitive::<Decimal128Type>()
                        .try_unary::<_, Decimal64Type, _>(|v| {
                            i64::try_from(v).map_err(|_| {
                                ArrowError::ComputeError(format!(
                                    "decimal value {v} of column {} exceeds its precision {p}",
                                    field.name()
                                ))
                            })
                        })?;
                    Ok(Arc::new(narrow.with_precision_and_scale(p, s)?) as ArrayRef)
                }
                (DataType::Decimal64(..), &DataType::Decimal128(p, s)) => {
                    let wide = column
                        .as_primitive::<Decimal64Type>()
                        .unary::<_, Decimal128Type>(i128::from);
                    Ok(Arc::new(wide.with_precision_and_scale(p, s)?) as ArrayRef)
                }
                (_, to) => Ok(cast(column, to)?),
            },
        )
        .collect()
}

/// The rows of `batches` at `indices` (batch, row), as `schema`: every
/// column but the key, which is last and not gathered at all.
fn interleave_unkeyed(
    batches: &[RecordBatch],
    indices: &[(usize, usize)],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            interleave(&arrays, indices)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

/// Arrow bytes of a key column of `batches`' keys at `rows` (batch, row):
/// what a run written without its keys holds again once they are rebuilt.
fn key_bytes(
    batches: &[RecordBatch],
    rows: impl ExactSizeIterator<Item = (usize, usize)>,
) -> usize {
    let keys: Vec<&BinaryArray> = batches.iter().map(key_column).collect();
    let n = rows.len();
    let values: usize = rows.map(|(b, r)| keys[b].value_length(r) as usize).sum();
    values + 4 * (n + 1)
}

/// The first sixteen bytes of a key as a number, zero-padded: comparing
/// these first settles most comparisons without a memcmp, and the padding
/// keeps the order that of the bytes.
///
/// Sixteen, not eight: rows that meet in a merge have nearly equal keys,
/// and arrow-row spends a byte on each column's nulls, so eight bytes hold
/// little more than the first key column. Of TPC-H lineitem's
/// (l_shipdate, l_orderkey, l_linenumber) they hold the date and two
/// bytes of the order key, which tie in almost every merge comparison;
/// sixteen hold the order key whole.
fn key_prefix(key: &[u8]) -> u128 {
    let mut head = [0u8; 16];
    let n = key.len().min(16);
    head[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(head)
}

/// The order that puts a batch's rows in key order, ties in input order;
/// `None` if they are in order already.
///
/// Each batch is sorted as it arrives, while it is small enough to sit in
/// cache. A run's sorted order then visits every batch front to back, so
/// gathering the run streams through memory instead of jumping across all
/// of it, which made the gather the slowest step of writing a run.
fn batch_order(keys: &BinaryArray) -> Option<UInt32Array> {
    let mut entries: Vec<(u128, &[u8], u32)> = (0..keys.len())
        .map(|r| {
            let key = keys.value(r);
            (key_prefix(key), key, r as u32)
        })
        .collect();
    if entries.windows(2).all(|w| w[0] <= w[1]) {
        return None;
    }
    entries.sort_unstable();
    Some(UInt32Array::from_iter_values(entries.iter().map(|e| e.2)))
}

/// The type a column is held in while sorted.
///
/// Decimals of up to 18 digits fit 64 bits, and held in 64 they take half
/// the memory, gather and spill bytes of 128.
///
/// String and binary views become plain offsets and bytes. A view array's
/// values sit in shared buffers (a Parquet reader's batches share its
/// decoded pages), so a view batch that is gathered, filtered or kept
/// pins every buffer its rows came from, and IPC writes those buffers
/// whole. Plain arrays copy exactly the bytes they hold; views are rebuilt
/// on output, which costs a view per row and no copy of the bytes.
fn stored_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Decimal128(p, s) if *p <= 18 => DataType::Decimal64(*p, *s),
        other => other.clone(),
    }
}

/// The rows of `batch` whose key sorts strictly before `threshold`.
fn below(batch: &RecordBatch, threshold: &[u8]) -> Result<RecordBatch> {
    let keys = key_column(batch);
    let keep: BooleanArray = (0..keys.len())
        .map(|i| Some(keys.value(i) < threshold))
        .collect();
    Ok(filter_record_batch(batch, &keep)?)
}

fn key_column(batch: &RecordBatch) -> &BinaryArray {
    batch.column(batch.num_columns() - 1).as_binary::<i32>()
}

impl Operator for Sort {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.output.is_none() {
            let output = self.consume()?;
            self.output = Some(output);
        }
        self.ctx.check()?;
        let batch = match self.output.as_mut().expect("set above") {
            Output::Memory { run, .. } => match run.next_batch()? {
                Some(batch) => batch,
                None => return Ok(None),
            },
            Output::Merge {
                merger, rows_left, ..
            } => {
                if *rows_left == 0 {
                    return Ok(None);
                }
                let Some(batch) = merger.next_batch()? else {
                    return Ok(None);
                };
                let batch = batch.slice(0, batch.num_rows().min(*rows_left));
                *rows_left -= batch.num_rows();
                batch
            }
        };
        self.strip(batch).map(Some)
    }
}

enum Output {
    /// Everything fit: the buffer and the order to read it in.
    Memory {
        run: MemoryRun,
        _reservation: Reservation,
    },
    /// The last merge pass, streaming.
    Merge {
        merger: Merger,
        rows_left: usize,
        _reservation: Reservation,
    },
}

/// How many rows make a batch of about the target size, from the widest
/// rows seen so far.
struct BatchShape {
    bytes: usize,
    rows_max: usize,
    row_bytes_max: usize,
    rows: usize,
}

impl BatchShape {
    fn new(bytes: usize, rows_max: usize) -> Self {
        BatchShape {
            bytes,
            rows_max,
            row_bytes_max: 0,
            rows: rows_max,
        }
    }

    fn observe(&mut self, batch: &RecordBatch) {
        let row_bytes = batch.get_array_memory_size() / batch.num_rows().max(1);
        if row_bytes > self.row_bytes_max {
            self.row_bytes_max = row_bytes;
            self.rows = (self.bytes / row_bytes.max(1)).clamp(1, self.rows_max);
        }
    }
}

/// Buffered batches (each with its key column) and the reservation that
/// pays for them.
struct RunBuffer {
    batches: Vec<RecordBatch>,
    rows: usize,
    reservation: Reservation,
}

impl RunBuffer {
    fn new(reservation: Reservation) -> Self {
        RunBuffer {
            batches: Vec::new(),
            rows: 0,
            reservation,
        }
    }

    /// Hand over what is buffered, leaving an empty buffer with a fresh
    /// reservation in its place.
    fn take(&mut self) -> RunBuffer {
        let fresh = self.reservation.budget().reservation("sort buffer");
        std::mem::replace(self, RunBuffer::new(fresh))
    }

    fn push(&mut self, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.batches.push(batch);
    }

    /// (batch, row) of every buffered row in sorted order, or of the first
    /// `fetch` of them.
    ///
    /// Each batch is sorted already ([`batch_order`]), so this merges them
    /// through a loser tree: about log2(batches) comparisons a row, where
    /// sorting the whole buffer again took log2(rows), and no sort index
    /// beside the order itself.
    fn sorted(&self, fetch: Option<usize>) -> Vec<(u32, u32)> {
        let keys: Vec<&BinaryArray> = self.batches.iter().map(key_column).collect();
        // Each batch's next row and the prefix of its key.
        let mut heads: Vec<(usize, u128)> = keys
            .iter()
            .map(|k| {
                (
                    0,
                    if k.is_empty() {
                        0
                    } else {
                        key_prefix(k.value(0))
                    },
                )
            })
            .collect();
        // Whether batch `a`'s next row sorts before batch `b`'s: by the key
        // prefixes where they differ, which settles most comparisons.
        let less = |heads: &[(usize, u128)], a: usize, b: usize| {
            let ((ra, pa), (rb, pb)) = (heads[a], heads[b]);
            if ra < keys[a].len() && rb < keys[b].len() && pa != pb {
                return pa < pb;
            }
            let key = |s: usize, row: usize| (row < keys[s].len()).then(|| keys[s].value(row));
            goes_first(a, key(a, ra), b, key(b, rb))
        };
        let rows = fetch.unwrap_or(usize::MAX).min(self.rows);
        let mut order = Vec::with_capacity(rows);
        let mut tree = LoserTree::new(keys.len(), |a, b| less(&heads, a, b));
        while order.len() < rows {
            let b = tree.winner();
            let (row, prefix) = &mut heads[b];
            order.push((b as u32, *row as u32));
            *row += 1;
            if *row < keys[b].len() {
                *prefix = key_prefix(keys[b].value(*row));
            }
            tree.replay(b, |x, y| less(&heads, x, y));
        }
        order
    }

    fn gather(&self, order: &[(u32, u32)]) -> Result<RecordBatch> {
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        let indices: Vec<(usize, usize)> = order
            .iter()
            .map(|&(b, r)| (b as usize, r as usize))
            .collect();
        Ok(interleave_record_batch(&batches, &indices)?)
    }

    /// [`Self::gather`] without the key column, as `schema`.
    fn gather_unkeyed(&self, order: &[(u32, u32)], schema: &SchemaRef) -> Result<RecordBatch> {
        let indices: Vec<(usize, usize)> = order
            .iter()
            .map(|&(b, r)| (b as usize, r as usize))
            .collect();
        interleave_unkeyed(&self.batches, &indices, schema)
    }

    /// Arrow bytes of the key column of the rows at `order`.
    fn key_bytes(&self, order: &[(u32, u32)]) -> usize {
        let rows = order.iter().map(|&(b, r)| (b as usize, r as usize));
        key_bytes(&self.batches, rows)
    }

    /// Keep only the first `k` rows in sort order; return the key they
    /// leave as the bar for later rows, once there are `k` of them.
    fn keep_first(&mut self, k: usize, batch_rows: usize) -> Result<Option<Vec<u8>>> {
        let order = self.sorted(Some(k));
        let mut kept = Vec::with_capacity(order.len().div_ceil(batch_rows.max(1)));
        for chunk in order.chunks(batch_rows.max(1)) {
            kept.push(self.gather(chunk)?);
        }
        self.batches = kept;
        self.rows = order.len();
        let bytes: usize = self
            .batches
            .iter()
            .map(|b| b.get_array_memory_size() + ENTRY_BYTES * b.num_rows())
            .sum();
        self.reservation
            .try_resize(bytes.min(self.reservation.size()))?;
        if self.rows < k || k == 0 {
            return Ok(None);
        }
        let last = self.batches.last().expect("k > 0 rows kept");
        Ok(Some(key_column(last).value(last.num_rows() - 1).to_vec()))
    }
}

/// A sorted run on disk.
struct Run {
    file: SpillFile,
    /// The largest batch in it with its key column, in Arrow bytes: what a
    /// cursor must hold.
    batch_bytes_max: usize,
    /// Set if the run was written without its key column.
    rekey: Option<Arc<Rekey>>,
}

/// How a run written without its key column gets it back when read.
///
/// Where every key is a column kept in its own type, the encoded key says
/// nothing the columns do not, and writing it costs: for SF1 lineitem by
/// (l_shipdate, l_orderkey, l_linenumber) it is 23 of about 160 bytes a
/// row, compressed, written, read and decompressed again in every pass.
/// Encoding it again from the columns as each batch is read costs less.
struct Rekey {
    /// The key columns' indices, in key order.
    columns: Vec<usize>,
    converter: Arc<RowConverter>,
    keyed_schema: SchemaRef,
    /// The keyed schema without its key column: what runs are written in.
    run_schema: SchemaRef,
}

impl Rekey {
    /// `Some` if every key is a column whose stored type is its own (see
    /// [`stored_type`]), so that the converter takes the stored column.
    fn new(
        keys: &[SortKey],
        schema: &SchemaRef,
        converter: &Arc<RowConverter>,
        keyed_schema: &SchemaRef,
    ) -> Result<Option<Rekey>> {
        let mut columns = Vec::with_capacity(keys.len());
        for key in keys {
            let Expr::Column { index, .. } = &key.expr else {
                return Ok(None);
            };
            let t = schema.field(*index).data_type();
            if stored_type(t) != *t {
                return Ok(None);
            }
            columns.push(*index);
        }
        let stored: Vec<usize> = (0..keyed_schema.fields().len() - 1).collect();
        Ok(Some(Rekey {
            columns,
            converter: converter.clone(),
            keyed_schema: keyed_schema.clone(),
            run_schema: Arc::new(keyed_schema.project(&stored)?),
        }))
    }

    /// A batch read back, with its key column encoded again.
    fn restore(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let keys: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let encoded = self.converter.convert_columns(&keys)?.try_into_binary()?;
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(encoded));
        Ok(RecordBatch::try_new(self.keyed_schema.clone(), columns)?)
    }
}

/// Write a run's batches, in order, as a spill file (without their key
/// column if the job has a [`Rekey`]). Each is gathered here unless a
/// helper ([`RunJob::help`]) has gathered it already.
fn write_run(ctx: &RunContext, schema: &SchemaRef, job: &RunJob) -> Result<Run> {
    // However this ends, a helper waiting for room must not wait on.
    struct Finished<'a>(&'a RunJob);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.lock().writer_done = true;
            self.0.changed.notify_all();
        }
    }
    let _finished = Finished(job);
    let written = match &job.rekey {
        Some(rekey) => rekey.run_schema.clone(),
        None => schema.clone(),
    };
    let mut writer = ctx.spill.writer(written, "sort run")?;
    let mut batch_bytes_max = 0;
    for i in 0..job.batches() {
        ctx.check()?;
        let batch = job.batch(i)?;
        // With its key, as a cursor will hold it.
        let bytes = batch.get_array_memory_size() + job.key_bytes_unwritten(i);
        batch_bytes_max = batch_bytes_max.max(bytes);
        writer.write(&batch)?;
    }
    Ok(Run {
        file: writer.finish()?,
        batch_bytes_max,
        rekey: job.rekey.clone(),
    })
}

/// Batches a helper may have gathered that the writer has not yet written.
const GATHERED_AHEAD_MAX: usize = 2;

/// One run to write: a buffer, its sorted order cut into batches of
/// `batch_rows`, and the batches gathered ahead of the writer.
///
/// Writing a run (gather, compress, write) costs more than reading and
/// sorting the buffer that follows it, so the reading thread would wait
/// for the run writer about a third of the time (SF1 lineitem: 29 ms
/// before each of 22 runs). It gathers batches for it instead while it
/// waits, a few ahead, and the writer compresses and writes them in order.
struct RunJob {
    buffer: RunBuffer,
    order: Vec<(u32, u32)>,
    batch_rows: usize,
    /// Set if the run is written without its key column, which is then
    /// not gathered either.
    rekey: Option<Arc<Rekey>>,
    /// The first batch nobody has started to gather.
    next: AtomicUsize,
    state: Mutex<JobState>,
    changed: Condvar,
}

#[derive(Default)]
struct JobState {
    gathered: BTreeMap<usize, Result<RecordBatch>>,
    writer_done: bool,
}

impl RunJob {
    fn new(
        buffer: RunBuffer,
        order: Vec<(u32, u32)>,
        batch_rows: usize,
        rekey: Option<Arc<Rekey>>,
    ) -> Self {
        RunJob {
            buffer,
            order,
            batch_rows: batch_rows.max(1),
            rekey,
            next: AtomicUsize::new(0),
            state: Mutex::new(JobState::default()),
            changed: Condvar::new(),
        }
    }

    fn batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_rows)
    }

    /// The rows of batch `i`, in order.
    fn rows(&self, i: usize) -> &[(u32, u32)] {
        let start = i * self.batch_rows;
        let end = (start + self.batch_rows).min(self.order.len());
        &self.order[start..end]
    }

    fn gather(&self, i: usize) -> Result<RecordBatch> {
        match &self.rekey {
            Some(rekey) => self.buffer.gather_unkeyed(self.rows(i), &rekey.run_schema),
            None => self.buffer.gather(self.rows(i)),
        }
    }

    /// Bytes of batch `i`'s key column if it is not gathered, else 0.
    fn key_bytes_unwritten(&self, i: usize) -> usize {
        match self.rekey {
            Some(_) => self.buffer.key_bytes(self.rows(i)),
            None => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        // A panic elsewhere cannot leave a map of finished batches torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Batch `i`, for the writer, which asks for them in order: gathered
    /// here if nobody has started it, else taken from (or awaited from) the
    /// helper that did.
    fn batch(&self, i: usize) -> Result<RecordBatch> {
        if self
            .next
            .compare_exchange(i, i + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return self.gather(i);
        }
        let mut state = self.lock();
        loop {
            if let Some(batch) = state.gathered.remove(&i) {
                self.changed.notify_all();
                return batch;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Gather batches ahead of the writer, at most [`GATHERED_AHEAD_MAX`]
    /// unwritten, until none is left to start or the writer stops; return
    /// how many. The batches gathered ahead are reserved first; without the
    /// memory this does nothing.
    fn help(&self) -> usize {
        let rows = self.buffer.rows.max(1);
        let batch_bytes = self.buffer.reservation.size() / rows * self.batch_rows;
        let mut reservation = self
            .buffer
            .reservation
            .budget()
            .reservation("sort run gather");
        if reservation
            .try_grow(GATHERED_AHEAD_MAX * batch_bytes)
            .is_err()
        {
            return 0;
        }
        let mut gathered = 0;
        loop {
            {
                let state = self
                    .changed
                    .wait_while(self.lock(), |s| {
                        s.gathered.len() >= GATHERED_AHEAD_MAX && !s.writer_done
                    })
                    .unwrap_or_else(|p| p.into_inner());
                if state.writer_done {
                    return gathered;
                }
            }
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= self.batches() {
                return gathered;
            }
            let batch = self.gather(i);
            self.lock().gathered.insert(i, batch);
            self.changed.notify_all();
            gathered += 1;
        }
    }
}

/// Writes runs, in order, on a worker thread or inline; at most one is in
/// flight, so at most two buffers exist.
///
/// Not more: with two runs written at once (three buffers, each smaller),
/// SF1 lineitem made 61 runs, more than one merge could take, and the
/// extra pass took the sort from 4.9 s to 7.8 s.
struct RunWriter {
    ctx: Arc<RunContext>,
    schema: SchemaRef,
    rekey: Option<Arc<Rekey>>,
    background: bool,
    runs: Vec<Run>,
    pending: Option<(Arc<RunJob>, JoinHandle<Result<Run>>)>,
}

impl RunWriter {
    fn new(
        ctx: Arc<RunContext>,
        schema: SchemaRef,
        rekey: Option<Arc<Rekey>>,
        background: bool,
    ) -> Self {
        RunWriter {
            ctx,
            schema,
            rekey,
            background,
            runs: Vec::new(),
            pending: None,
        }
    }

    /// Sort `buffer` (only its first `fetch` rows matter) and write it.
    ///
    /// The sort happens here and the gather, compression and write on the
    /// worker, with help from this thread while it waits for the worker
    /// (see [`RunJob`]).
    fn write(&mut self, buffer: RunBuffer, fetch: Option<usize>, batch_rows: usize) -> Result<()> {
        let order = buffer.sorted(fetch);
        self.wait()?;
        let job = Arc::new(RunJob::new(buffer, order, batch_rows, self.rekey.clone()));
        if !self.background {
            let run = write_run(&self.ctx, &self.schema, &job)?;
            self.runs.push(run);
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let schema = self.schema.clone();
        let worker_job = job.clone();
        // The run's spill file belongs to this sort in EXPLAIN ANALYZE.
        let node = analyze::current();
        let handle = std::thread::Builder::new()
            .name("highwater-sort-run".into())
            .spawn(move || {
                analyze::enter(node);
                write_run(&ctx, &schema, &worker_job)
            })
            .map_err(|e| Error::ResourcesExhausted(format!("cannot start a sort thread: {e}")))?;
        self.pending = Some((job, handle));
        Ok(())
    }

    /// Runs written or being written.
    fn count(&self) -> usize {
        self.runs.len() + usize::from(self.pending.is_some())
    }

    /// Whether any run has been written or is being written.
    fn started(&self) -> bool {
        self.pending.is_some() || !self.runs.is_empty()
    }

    /// Wait for the run in flight, if any, helping it along; true if there
    /// was one.
    fn wait(&mut self) -> Result<bool> {
        let Some((job, handle)) = self.pending.take() else {
            return Ok(false);
        };
        job.help();
        let run = handle
            .join()
            .map_err(|_| Error::Internal("the sort run writer panicked".into()))??;
        self.runs.push(run);
        Ok(true)
    }

    fn finish(mut self) -> Result<Vec<Run>> {
        self.wait()?;
        Ok(std::mem::take(&mut self.runs))
    }
}

impl Drop for RunWriter {
    /// On an error path, let the run in flight end (it checks the run's
    /// state once a batch) before its spill file and reservation go away.
    fn drop(&mut self) {
        if let Some((_, handle)) = self.pending.take() {
            let _ = handle.join();
        }
    }
}

/// A k-way merge of sorted runs through a loser tree.
struct Merger {
    cursors: Vec<Cursor>,
    tree: LoserTree,
    /// Batches the output being built refers to: every cursor's current
    /// batch and those retired since the last output.
    arena: Vec<RecordBatch>,
    out_rows: usize,
    /// The schema of its output without the key column, which is then not
    /// gathered at all: for the last merge (the key would be dropped), and
    /// for a merge pass that writes runs without keys ([`Rekey`]).
    unkeyed: Option<SchemaRef>,
    /// Set for a pass that writes runs without keys: the key bytes its last
    /// output batch left out, which a cursor reading the run will hold.
    key_bytes_left_out: Option<usize>,
    /// Kept until the merge ends, so their files outlive their readers.
    _runs: Vec<Run>,
}

struct Cursor {
    source: RunSource,
    keys: BinaryArray,
    row: usize,
    /// [`key_prefix`] of the key at `row`.
    prefix: u128,
    /// Index of the current batch in the arena.
    slot: usize,
    done: bool,
}

impl Merger {
    /// A merge of `runs` and, after them (it is the input's last), the
    /// run `memory`.
    fn new(
        runs: Vec<Run>,
        memory: Option<MemoryRun>,
        out_rows: usize,
        unkeyed: Option<SchemaRef>,
    ) -> Result<Self> {
        let mut merger = Merger {
            cursors: Vec::with_capacity(runs.len()),
            tree: LoserTree::default(),
            arena: Vec::with_capacity(2 * runs.len()),
            out_rows: out_rows.max(1),
            unkeyed,
            key_bytes_left_out: None,
            _runs: Vec::new(),
        };
        let sources = runs
            .iter()
            .map(|run| Ok(RunSource::Spilled(run.file.reader()?, run.rekey.clone())))
            .chain(memory.map(|m| Ok(RunSource::Memory(m))))
            .collect::<Result<Vec<_>>>()?;
        for source in sources {
            let mut cursor = Cursor {
                source,
                keys: BinaryArray::from(Vec::<&[u8]>::new()),
                row: 0,
                prefix: 0,
                slot: 0,
                done: false,
            };
            load(&mut cursor, &mut merger.arena)?;
            merger.cursors.push(cursor);
        }
        merger._runs = runs;
        let cursors = &merger.cursors;
        merger.tree = LoserTree::new(cursors.len(), |a, b| less(cursors, a, b));
        Ok(merger)
    }

    /// Measure the key bytes each unkeyed output batch leaves out
    /// ([`Merger::key_bytes_left_out`]).
    fn measuring_keys(mut self) -> Self {
        self.key_bytes_left_out = Some(0);
        self
    }

    /// The key bytes the last output batch left out, if measured.
    fn key_bytes_left_out(&self) -> usize {
        self.key_bytes_left_out.unwrap_or(0)
    }

    /// The next batch of merged rows (with their key column unless the
    /// merge is `unkeyed`), or `None`.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let k = self.cursors.len();
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(self.out_rows);
        while indices.len() < self.out_rows {
            let w = self.tree.winner();
            if self.cursors[w].done {
                break;
            }
            let cursor = &mut self.cursors[w];
            indices.push((cursor.slot, cursor.row));
            cursor.row += 1;
            let exhausted = cursor.row == cursor.keys.len();
            if exhausted {
                load(cursor, &mut self.arena)?;
            } else {
                cursor.prefix = key_prefix(cursor.keys.value(cursor.row));
            }
            let cursors = &self.cursors;
            self.tree.replay(w, |a, b| less(cursors, a, b));
            // Each cursor may retire one batch before the output must be
            // cut, which bounds the arena at two batches a cursor.
            if exhausted && self.arena.len() >= 2 * k {
                break;
            }
        }
        if indices.is_empty() {
            return Ok(None);
        }
        if let Some(left_out) = &mut self.key_bytes_left_out {
            *left_out = key_bytes(&self.arena, indices.iter().copied());
        }
        let batch = match &self.unkeyed {
            None => {
                let refs: Vec<&RecordBatch> = self.arena.iter().collect();
                interleave_record_batch(&refs, &indices)?
            }
            Some(schema) => interleave_unkeyed(&self.arena, &indices, schema)?,
        };
        self.compact_arena();
        Ok(Some(batch))
    }

    /// Drop the batches no cursor is on any more.
    fn compact_arena(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.capacity());
        for cursor in self.cursors.iter_mut().filter(|c| !c.done) {
            arena.push(self.arena[cursor.slot].clone());
            cursor.slot = arena.len() - 1;
        }
        self.arena = arena;
    }
}

/// Whether cursor `a`'s row sorts before cursor `b`'s.
fn less(cursors: &[Cursor], a: usize, b: usize) -> bool {
    fn key(c: &Cursor) -> Option<&[u8]> {
        (!c.done).then(|| c.keys.value(c.row))
    }
    let (x, y) = (&cursors[a], &cursors[b]);
    if !x.done && !y.done && x.prefix != y.prefix {
        return x.prefix < y.prefix;
    }
    goes_first(a, key(x), b, key(y))
}

/// Whether source `a`, at key `ka` (`None` once it is exhausted), goes
/// before source `b` at `kb`: exhausted sources last, and equal keys to the
/// lower-numbered source, which keeps a merge of sources in input order
/// stable.
fn goes_first(a: usize, ka: Option<&[u8]>, b: usize, kb: Option<&[u8]>) -> bool {
    match (ka, kb) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(x), Some(y)) => (x, a) < (y, b),
    }
}

/// A tournament over `k` sorted sources that finds the next smallest in
/// log2(k) comparisons. The caller owns the sources and says how two
/// compare; it must replay a source's path whenever that source moves.
#[derive(Default)]
struct LoserTree {
    /// `tree[0]` is the winning source; `tree[1..]` hold the losers of the
    /// games played at each inner node.
    tree: Vec<usize>,
}

impl LoserTree {
    fn new(k: usize, less: impl Fn(usize, usize) -> bool) -> Self {
        const EMPTY: usize = usize::MAX;
        let mut tree = vec![EMPTY; k.max(1)];
        for leaf in 0..k {
            let mut winner = leaf;
            let mut node = (leaf + k) / 2;
            while node > 0 {
                if tree[node] == EMPTY {
                    tree[node] = winner;
                    winner = EMPTY;
                    break;
                }
                if less(tree[node], winner) {
                    std::mem::swap(&mut tree[node], &mut winner);
                }
                node /= 2;
            }
            if winner != EMPTY {
                tree[0] = winner;
            }
        }
        LoserTree { tree }
    }

    fn winner(&self) -> usize {
        self.tree[0]
    }

    /// Replay the games on the path of source `leaf` after it moved.
    fn replay(&mut self, leaf: usize, less: impl Fn(usize, usize) -> bool) {
        let k = self.tree.len();
        let mut winner = leaf;
        let mut node = (leaf + k) / 2;
        while node > 0 {
            if less(self.tree[node], winner) {
                std::mem::swap(&mut self.tree[node], &mut winner);
            }
            node /= 2;
        }
        self.tree[0] = winner;
    }
}

/// Where a merge cursor reads its run from.
enum RunSource {
    /// A run file, and how to rebuild its key column if it was written
    /// without.
    Spilled(SpillReader, Option<Arc<Rekey>>),
    Memory(MemoryRun),
}

/// A run that was never written: a buffer, its sorted order, and how far
/// it has been read, in batches of `batch_rows`. The whole output of a sort
/// that fit in memory, or the last run of one that did not.
struct MemoryRun {
    buffer: RunBuffer,
    order: Vec<(u32, u32)>,
    next: usize,
    batch_rows: usize,
}

impl MemoryRun {
    fn new(buffer: RunBuffer, order: Vec<(u32, u32)>, batch_rows: usize) -> Self {
        MemoryRun {
            buffer,
            order,
            next: 0,
            batch_rows: batch_rows.max(1),
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.next >= self.order.len() {
            return Ok(None);
        }
        let end = (self.next + self.batch_rows).min(self.order.len());
        let batch = self.buffer.gather(&self.order[self.next..end])?;
        self.next = end;
        Ok(Some(batch))
    }
}

impl RunSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            RunSource::Spilled(reader, None) => reader.next_batch(),
            RunSource::Spilled(reader, Some(rekey)) => {
                reader.next_batch()?.map(|b| rekey.restore(b)).transpose()
            }
            RunSource::Memory(run) => run.next_batch(),
        }
    }
}

/// Move `cursor` to its run's next batch, kept in `arena`, or mark it done.
fn load(cursor: &mut Cursor, arena: &mut Vec<RecordBatch>) -> Result<()> {
    loop {
        match cursor.source.next_batch()? {
            Some(batch) if batch.num_rows() == 0 => continue,
            Some(batch) => {
                cursor.keys = key_column(&batch).clone();
                cursor.row = 0;
                cursor.prefix = key_prefix(cursor.keys.value(0));
                cursor.slot = arena.len();
                arena.push(batch);
                return Ok(());
            }
            None => {
                cursor.done = true;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::testing::{context, temp_dir, Batches};
    use crate::memory::MemoryBudget;
    use crate::plan::expr::Expr;
    use arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int32Array,
        Int64Array, StringArray, StringViewArray, TimestampMicrosecondArray,
    };
    use arrow::compute::{concat_batches, lexsort_to_indices, SortColumn};

    /// A small deterministic generator: tests need varied data, not a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Every key type, with NULLs, many ties, NaN, -0.0 and infinities, and
    /// strings that share their first eight bytes; `id` is the input order.
    fn every_type(rows: usize, seed: u64) -> RecordBatch {
        let mut rng = Rng(seed);
        let mut pick = |n: u64| rng.below(n);
        let floats = [
            f64::NAN,
            -0.0,
            0.0,
            1.5,
            -1.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "prefix-shared-1",
            "prefix-shared-2",
            "z",
        ];
        let mut ids = Vec::new();
        let (mut i32s, mut f64s, mut f32s, mut decs, mut strs) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut dates, mut stamps, mut bools, mut i64s) = (vec![], vec![], vec![], vec![]);
        for id in 0..rows {
            ids.push(id as i64);
            let null = pick(8) == 0;
            i32s.push((!null).then(|| pick(20) as i32 - 10));
            let f = floats[pick(floats.len() as u64) as usize];
            f64s.push((pick(8) != 0).then_some(f));
            f32s.push((pick(8) != 0).then_some(f as f32));
            decs.push((pick(8) != 0).then(|| pick(1000) as i128 - 500));
            strs.push((pick(8) != 0).then(|| words[pick(words.len() as u64) as usize]));
            dates.push((pick(8) != 0).then(|| pick(50) as i32 - 25));
            stamps.push((pick(8) != 0).then(|| pick(50) as i64 * 1_000_000 - 7));
            bools.push((pick(4) != 0).then(|| pick(2) == 0));
            i64s.push(pick(30) as i64 - 15);
        }
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(Int64Array::from(ids))),
            ("i32", Arc::new(Int32Array::from(i32s))),
            ("f64", Arc::new(Float64Array::from(f64s))),
            ("f32", Arc::new(Float32Array::from(f32s))),
            (
                "dec",
                Arc::new(
                    Decimal128Array::from(decs)
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                ),
            ),
            ("s", Arc::new(StringArray::from(strs.clone()))),
            ("sv", Arc::new(StringViewArray::from(strs))),
            ("d", Arc::new(Date32Array::from(dates))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(stamps))),
            ("b", Arc::new(BooleanArray::from(bools))),
            ("i64", Arc::new(Int64Array::from(i64s))),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    /// `batch` cut into pieces of uneven sizes, as a scan would deliver it.
    fn pieces(batch: &RecordBatch, seed: u64) -> Vec<RecordBatch> {
        let mut rng = Rng(seed);
        let mut out = Vec::new();
        let mut at = 0;
        while at < batch.num_rows() {
            let n = (1 + rng.below(700) as usize).min(batch.num_rows() - at);
            out.push(batch.slice(at, n));
            at += n;
        }
        out
    }

    fn key(batch: &RecordBatch, name: &str, descending: bool, nulls_first: bool) -> SortKey {
        let index = batch.schema().index_of(name).unwrap();
        SortKey {
            expr: Expr::column(index, name),
            descending,
            nulls_first,
        }
    }

    /// Sort with `ctx`, returning the output in one batch.
    fn sort(
        ctx: Arc<RunContext>,
        input: &RecordBatch,
        keys: Vec<SortKey>,
        fetch: Option<usize>,
    ) -> Result<RecordBatch> {
        let source = Batches::new(input.schema(), pieces(input, 7));
        let mut op = Sort::new(ctx, source, keys, fetch)?;
        let mut out = Vec::new();
        while let Some(b) = op.next_batch()? {
            assert!(b.num_rows() > 0, "operators never return empty batches");
            out.push(b);
        }
        Ok(concat_batches(&input.schema(), &out)?)
    }

    fn unlimited() -> Arc<RunContext> {
        context(MemoryBudget::unlimited(), temp_dir(), 2, 64, 8192)
    }

    /// The input order of the rows as a reference sort puts them: arrow's
    /// lexsort on the key, then `id`, which makes the order total.
    fn reference(
        input: &RecordBatch,
        keys: &[(&str, bool, bool)],
        fetch: Option<usize>,
    ) -> Vec<i64> {
        let mut columns: Vec<SortColumn> = keys
            .iter()
            .map(|(name, descending, nulls_first)| SortColumn {
                values: input.column_by_name(name).unwrap().clone(),
                options: Some(SortOptions {
                    descending: *descending,
                    nulls_first: *nulls_first,
                }),
            })
            .collect();
        columns.push(SortColumn {
            values: input.column_by_name("id").unwrap().clone(),
            options: None,
        });
        let order = lexsort_to_indices(&columns, fetch).unwrap();
        let ids = input
            .column_by_name("id")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        order
            .values()
            .iter()
            .map(|&i| ids.value(i as usize))
            .collect()
    }

    fn ids(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column_by_name("id")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn every_key_type_and_null_order_matches_a_reference_sort() {
        let input = every_type(3000, 42);
        let ctx = unlimited();
        for name in ["i32", "f64", "f32", "dec", "s", "sv", "d", "ts", "b", "i64"] {
            for (descending, nulls_first) in
                [(false, false), (false, true), (true, false), (true, true)]
            {
                let out = sort(
                    ctx.clone(),
                    &input,
                    vec![key(&input, name, descending, nulls_first)],
                    None,
                )
                .unwrap();
                assert_eq!(out.schema(), input.schema());
                assert_eq!(
                    ids(&out),
                    reference(&input, &[(name, descending, nulls_first)], None),
                    "key {name} descending={descending} nulls_first={nulls_first}"
                );
            }
        }
    }

    #[test]
    fn several_keys_and_an_expression_key() {
        let input = every_type(5000, 7);
        let ctx = unlimited();
        let keys = vec![
            key(&input, "s", false, true),
            key(&input, "d", true, false),
            key(&input, "f64", false, false),
        ];
        let out = sort(ctx.clone(), &input, keys, None).unwrap();
        let expected = reference(
            &input,
            &[
                ("s", false, true),
                ("d", true, false),
                ("f64", false, false),
            ],
            None,
        );
        assert_eq!(ids(&out), expected);

        // -i64 ascending is i64 descending.
        let i = input.schema().index_of("i64").unwrap();
        let negated = SortKey {
            expr: Expr::Negate(Box::new(Expr::column(i, "i64"))),
            descending: false,
            nulls_first: false,
        };
        let out = sort(ctx, &input, vec![negated], None).unwrap();
        assert_eq!(ids(&out), reference(&input, &[("i64", true, false)], None));
    }

    /// A budget small enough that runs are a few hundred KB and a merge of
    /// two is all that fits: the sort must spill many runs and merge them in
    /// several passes, with the same result as in memory.
    #[test]
    fn a_tiny_budget_forces_multi_pass_merges_with_identical_results() {
        let input = every_type(60_000, 3);
        let keys = || {
            vec![
                key(&input, "sv", true, false),
                key(&input, "i32", false, true),
                key(&input, "dec", false, false),
            ]
        };
        multi_pass_sorts_as_in_memory(&input, keys);
    }

    /// Sort `input` by `keys()` under a pool so small that many runs spill
    /// and a merge takes two (fan-in 2), on one thread and two: the rows of
    /// the sort in memory, after several merge passes, and no spill file
    /// left behind.
    fn multi_pass_sorts_as_in_memory(input: &RecordBatch, keys: impl Fn() -> Vec<SortKey>) {
        let expected = sort(unlimited(), input, keys(), None).unwrap();
        // Fan-ins above two leave passes that merge only some of the runs
        // (`runs_to_merge`); the rest must keep their place in the order.
        for (threads, fan_in) in [(1, 2), (2, 2), (1, 3), (2, 5)] {
            let budget = MemoryBudget::with_pool_bytes(1_500_000);
            let ctx = context(budget, temp_dir(), threads, fan_in, 1024);
            let out = sort(ctx.clone(), input, keys(), None).unwrap();
            assert_eq!(out, expected, "threads {threads}, fan-in {fan_in}");
            let files = ctx.spill.spill_files();
            // More files than runs of a single pass: some were merge passes.
            assert!(files >= 8, "only {files} spill files");
            assert_eq!(spill_files_left(&ctx), 0, "spill files left behind");
        }
    }

    /// Keys that are columns kept in their own type are not written with
    /// the runs but encoded again as each run is read; in every pass of a
    /// multi-pass merge the rows come out as in memory.
    #[test]
    fn runs_written_without_their_keys_merge_as_in_memory() {
        let input = every_type(60_000, 5);
        let keys = || {
            vec![
                key(&input, "s", false, true),
                key(&input, "b", true, false),
                key(&input, "d", true, true),
                key(&input, "f64", false, false),
                key(&input, "ts", false, true),
            ]
        };
        let rekeyed = |keys: Vec<SortKey>| {
            let source = Batches::new(input.schema(), vec![]);
            Sort::new(unlimited(), source, keys, None)
                .unwrap()
                .rekey
                .is_some()
        };
        assert!(rekeyed(keys()));
        // Held in another type (views as plain strings, narrow decimals in
        // 64 bits), or an expression: the key is written with the run.
        assert!(!rekeyed(vec![key(&input, "sv", false, false)]));
        assert!(!rekeyed(vec![key(&input, "dec", false, false)]));
        let i32_index = input.schema().index_of("i32").unwrap();
        let negated = SortKey {
            expr: Expr::Negate(Box::new(Expr::column(i32_index, "i32"))),
            descending: false,
            nulls_first: false,
        };
        assert!(!rekeyed(vec![negated]));
        multi_pass_sorts_as_in_memory(&input, keys);
    }

    /// Decimals of up to 18 digits are held in 64 bits while sorted. Every
    /// value that fits 64 bits comes back as it was, in memory and spilled,
    /// even one wider than the column's declared precision; one that does
    /// not fit is an error naming the column, never a NULL or a wrapped
    /// value.
    #[test]
    fn decimals_come_back_as_they_went_in_or_fail_clearly() {
        let values: Vec<Option<i128>> = (0..60_000i128)
            .map(|i| match i % 5 {
                0 => None,
                1 => Some(i64::MAX as i128 - i),
                2 => Some(i64::MIN as i128 + i),
                _ => Some((i * 7919) % 100_003 - 50_000),
            })
            .collect();
        let narrow = Decimal128Array::from(values.clone())
            .with_precision_and_scale(15, 2)
            .unwrap();
        let wide = Decimal128Array::from(values)
            .with_precision_and_scale(38, 4)
            .unwrap();
        let input = RecordBatch::try_from_iter([
            ("n", Arc::new(narrow.clone()) as ArrayRef),
            ("w", Arc::new(wide) as ArrayRef),
        ])
        .unwrap();
        let reference = |key: &str| {
            let column = SortColumn {
                values: input.column_by_name(key).unwrap().clone(),
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: false,
                }),
            };
            let order = lexsort_to_indices(&[column], None).unwrap();
            RecordBatch::try_new(
                input.schema(),
                input
                    .columns()
                    .iter()
                    .map(|c| take(c, &order, None).unwrap())
                    .collect(),
            )
            .unwrap()
        };
        for (budget, batch_rows) in [
            (MemoryBudget::unlimited(), 8192),
            (MemoryBudget::with_pool_bytes(1_500_000), 1024),
        ] {
            let spills = budget.pool_bytes() < usize::MAX;
            let ctx = context(budget, temp_dir(), 2, 2, batch_rows);
            for name in ["n", "w"] {
                let out = sort(
                    ctx.clone(),
                    &input,
                    vec![key(&input, name, false, false)],
                    None,
                )
                .unwrap();
                // The only ties are NULLs, which are NULL in every column.
                assert_eq!(out, reference(name), "by {name}");
            }
            assert_eq!(ctx.spill.spill_files() > 0, spills);
        }

        let mut too_wide = narrow.values().to_vec();
        too_wide[3] = i64::MAX as i128 + 1;
        let too_wide = Decimal128Array::new(too_wide.into(), None)
            .with_precision_and_scale(15, 2)
            .unwrap();
        let input = RecordBatch::try_from_iter([("n", Arc::new(too_wide) as ArrayRef)]).unwrap();
        let err = sort(
            unlimited(),
            &input,
            vec![key(&input, "n", false, false)],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("column n exceeds its precision 15"), "{err}");
    }

    /// Joins below a sort may hold nearly the whole pool while the sort
    /// runs (their floors): a sort small enough for what is left never
    /// needs merge memory, and must not fail for want of it.
    #[test]
    fn a_sort_under_joins_that_hold_the_pool_still_sorts() {
        let input = every_type(500, 5);
        let keys = || vec![key(&input, "i32", false, true)];
        let expected = sort(unlimited(), &input, keys(), None).unwrap();
        let pool = 1_500_000;
        let budget = MemoryBudget::with_pool_bytes(pool);
        let ctx = context(budget.clone(), temp_dir(), 2, 2, 1024);
        let mut held = budget.reservation("joins below");
        held.try_grow(pool - 300_000).unwrap();
        let out = sort(ctx.clone(), &input, keys(), None).unwrap();
        assert_eq!(out, expected);
        assert_eq!(ctx.spill.spill_files(), 0, "a sort this small spilled");
        drop(held);
    }

    /// A pass merges every run while that cannot leave few enough for
    /// the last merge, then only enough to leave exactly the fan-in.
    #[test]
    fn a_merge_pass_merges_only_the_runs_it_must() {
        for fan_in in 2..24 {
            for runs in 1..600 {
                let merged = runs_to_merge(runs, fan_in);
                assert!(merged <= runs);
                // What the pass leaves: one run a group merged, and the
                // runs it left alone.
                let left = merged.div_ceil(fan_in) + (runs - merged);
                if runs <= fan_in {
                    assert_eq!(merged, 0, "runs={runs} fan_in={fan_in}");
                } else if runs.div_ceil(fan_in) > fan_in {
                    assert_eq!(merged, runs, "runs={runs} fan_in={fan_in}");
                } else {
                    assert_eq!(left, fan_in, "runs={runs} fan_in={fan_in}");
                    // A group of one would merge nothing.
                    assert_ne!(merged % fan_in, 1, "runs={runs} fan_in={fan_in}");
                }
            }
        }
        assert_eq!(runs_to_merge(110, 41), 71);
    }

    fn spill_files_left(ctx: &RunContext) -> usize {
        std::fs::read_dir(ctx.spill.dir())
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    }

    /// A sort that feeds a file writer hands string views out as plain
    /// strings, holding the same values, in memory and spilled.
    #[test]
    fn plain_strings_out_are_the_views_in() {
        let input = every_type(20_000, 11);
        let keys = || vec![key(&input, "sv", false, true)];
        let expected = sort(unlimited(), &input, keys(), None).unwrap();
        let sv = input.schema().index_of("sv").unwrap();
        for pool in [None, Some(1_000_000)] {
            let budget = pool.map_or_else(MemoryBudget::unlimited, MemoryBudget::with_pool_bytes);
            let ctx = context(budget, temp_dir(), 2, 64, 1024);
            let source = Batches::new(input.schema(), pieces(&input, 3));
            let mut op = Sort::new(ctx.clone(), source, keys(), None)
                .unwrap()
                .with_plain_strings();
            assert_eq!(op.schema().field(sv).data_type(), &DataType::Utf8);
            let mut out = Vec::new();
            while let Some(b) = op.next_batch().unwrap() {
                assert_eq!(b.schema(), op.schema());
                out.push(b);
            }
            let out = concat_batches(&op.schema(), &out).unwrap();
            assert_eq!(pool.is_some(), ctx.spill.spill_files() > 0);
            for (c, field) in input.schema().fields().iter().enumerate() {
                let want = cast(expected.column(c), out.column(c).data_type()).unwrap();
                assert_eq!(
                    out.column(c),
                    &want,
                    "column {} pool {pool:?}",
                    field.name()
                );
            }
        }
    }

    /// When one merge takes every run, the input's last buffer joins it from
    /// memory instead of being written; when the runs need passes first, it
    /// is written like the others. Either way the rows are those of the
    /// sort in memory.
    #[test]
    fn the_last_buffer_is_merged_from_memory_only_when_one_merge_takes_all() {
        let input = every_type(60_000, 5);
        let keys = || {
            vec![
                key(&input, "i64", false, false),
                key(&input, "s", true, true),
            ]
        };
        let expected = sort(unlimited(), &input, keys(), None).unwrap();
        for (fan_in, from_memory) in [(64, true), (2, false)] {
            for threads in [1, 2] {
                let budget = MemoryBudget::with_pool_bytes(2_000_000);
                let ctx = context(budget, temp_dir(), threads, fan_in, 1024);
                let analysis = crate::analyze::Analysis::new();
                let previous = analyze::enter(Some(analysis.add_node()));
                let out = sort(ctx.clone(), &input, keys(), None);
                analyze::leave(previous);
                let case = format!("fan-in {fan_in}, threads {threads}");
                assert_eq!(out.unwrap(), expected, "{case}");
                let stats = &analysis.stats_all()[0];
                let notes = stats.notes.join("; ");
                assert!(
                    stats.spill_files >= 2,
                    "{case}: {} files; {notes}",
                    stats.spill_files
                );
                assert_eq!(
                    notes.contains("last run merged from memory"),
                    from_memory,
                    "{case}: {notes}"
                );
                assert_eq!(spill_files_left(&ctx), 0, "{case}");
            }
        }
    }

    /// A run whose batches a helper gathered in part is the run its writer
    /// writes alone.
    #[test]
    fn a_run_written_with_help_is_the_run_written_alone() {
        let input = every_type(20_000, 9);
        let ctx = unlimited();
        let job = || {
            let mut buffer = RunBuffer::new(ctx.budget.reservation("test buffer"));
            for piece in pieces(&input, 5) {
                buffer.push(piece);
            }
            // Every row, last batch first, each batch back to front.
            let order = (0..buffer.batches.len())
                .rev()
                .flat_map(|b| {
                    let rows = buffer.batches[b].num_rows() as u32;
                    (0..rows).rev().map(move |r| (b as u32, r))
                })
                .collect();
            Arc::new(RunJob::new(buffer, order, 300, None))
        };
        let read = |run: Run| {
            let mut reader = run.file.reader().unwrap();
            let mut batches = Vec::new();
            while let Some(b) = reader.next_batch().unwrap() {
                batches.push(b);
            }
            concat_batches(&input.schema(), &batches).unwrap()
        };
        let alone = read(write_run(&ctx, &input.schema(), &job()).unwrap());
        assert_eq!(alone.num_rows(), input.num_rows());

        // The helper starts first and gathers as far ahead as it may, then
        // waits for the writer, which takes those batches and the rest.
        let helped = job();
        let helper = {
            let job = helped.clone();
            std::thread::spawn(move || job.help())
        };
        while helped.lock().gathered.len() < GATHERED_AHEAD_MAX && !helper.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let run = write_run(&ctx, &input.schema(), &helped).unwrap();
        assert!(helper.join().unwrap() >= GATHERED_AHEAD_MAX);
        assert_eq!(read(run), alone);
    }

    #[test]
    fn top_k_matches_the_head_of_a_full_sort_in_memory_and_spilled() {
        let input = every_type(40_000, 11);
        let keys = || {
            vec![
                key(&input, "ts", true, true),
                key(&input, "s", false, false),
            ]
        };
        let full = sort(unlimited(), &input, keys(), None).unwrap();
        for k in [0, 1, 10, 1000, 39_999, 50_000] {
            let head = full.slice(0, k.min(full.num_rows()));
            let top = sort(unlimited(), &input, keys(), Some(k)).unwrap();
            assert_eq!(top, head, "k = {k}");
            let ctx = context(
                MemoryBudget::with_pool_bytes(1_500_000),
                temp_dir(),
                2,
                2,
                1024,
            );
            let top = sort(ctx, &input, keys(), Some(k)).unwrap();
            assert_eq!(top, head, "k = {k}, tiny budget");
        }
    }

    #[test]
    fn empty_input_gives_no_rows() {
        let input = every_type(0, 1);
        let out = sort(
            unlimited(),
            &input,
            vec![key(&input, "i32", false, false)],
            None,
        )
        .unwrap();
        assert_eq!(out.num_rows(), 0);
    }

    #[test]
    fn a_failing_input_leaves_no_spill_files() {
        let input = every_type(30_000, 5);
        let ctx = context(
            MemoryBudget::with_pool_bytes(1_500_000),
            temp_dir(),
            2,
            2,
            1024,
        );
        let mut source = Batches::new(input.schema(), pieces(&input, 3));
        source.fail_at_end = true;
        let mut op = Sort::new(
            ctx.clone(),
            source,
            vec![key(&input, "s", false, false)],
            None,
        )
        .unwrap();
        let err = op.next_batch().unwrap_err();
        assert!(err.to_string().contains("input failed"), "{err}");
        assert!(ctx.spill.spill_files() > 0, "the test should have spilled");
        drop(op);
        assert_eq!(spill_files_left(&ctx), 0);
    }
}
