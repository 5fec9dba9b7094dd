//! ORDER BY: an external merge sort, which is also the top-k of
//! `ORDER BY ... LIMIT k`.
//!
//! Sort keys are evaluated once per input batch and encoded with arrow-row
//! into one binary column appended to the batch. From then on every
//! comparison is a `memcmp` of two byte strings, whatever the key types and
//! directions, and spilled runs carry their keys instead of re-encoding them
//! when read back.
//!
//! 1. **Run generation.** Batches gather in a [`RunBuffer`] under a
//!    reservation. When the budget refuses more, or the buffer reaches its
//!    share of the pool, the buffer is sorted and written as one run of LZ4
//!    Arrow IPC. With `--threads` above 1 that happens on a worker thread
//!    while this one goes on reading, which is why a buffer gets half the
//!    pool: one fills while the other is written.
//! 2. **Merge.** Runs merge through a loser tree over their key bytes, at
//!    most `fan_in` at a time: the smaller of `--merge-fan-in` and what the
//!    budget allows for one read cursor per run. With more runs than that,
//!    consecutive groups merge into longer runs, pass after pass, and only
//!    the last pass streams out.
//! 3. An input that never outgrew its buffer is sorted in memory and never
//!    touches disk.
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
//!   [`ENTRY_BYTES`] a row for the sort index, before keeping it.
//! - At creation the sort reserves what a two-way merge needs
//!   ([`merge_bytes`] for two cursors): a sort that has spilled can always
//!   finish, however the pool is used meanwhile.
//! - Runs are written in batches of about [`spill_batch_bytes`], so that a
//!   merge cursor (its current batch, one retired batch awaiting output, and
//!   its IPC read buffer) costs a bounded amount; the merge grows its
//!   reservation one cursor at a time, and its fan-in is what it got.
//! - Output batches hold at most `--batch-rows` rows and about as many bytes
//!   as a spill batch.

use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{
    cast, filter_record_batch, interleave_record_batch, take_record_batch, SortOptions,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};
use crate::exec::{relabel, BoxedOperator, Operator, RunContext};
use crate::memory::Reservation;
use crate::plan::SortKey;
use crate::spill::{SpillFile, SpillReader, IO_BUFFER_BYTES};

/// Bytes a buffered row costs beyond its data: its entry in the sort index
/// (`(u64, &[u8], u32, u32)`, 32 bytes) while a run is sorted, then its
/// place in the sorted order (8 bytes).
const ENTRY_BYTES: usize = 40;

/// The name of the encoded-key column appended to buffered and spilled
/// batches.
const KEY_COLUMN: &str = "__highwater_sort_key";

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

fn cursor_bytes(batch_bytes: usize) -> usize {
    3 * batch_bytes + IO_BUFFER_BYTES
}

pub struct Sort {
    ctx: Arc<RunContext>,
    input: BoxedOperator,
    schema: SchemaRef,
    keys: Vec<SortKey>,
    converter: RowConverter,
    /// The input's schema plus the key column.
    keyed_schema: SchemaRef,
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
        Ok(Sort {
            ctx,
            input,
            schema,
            keys,
            converter,
            keyed_schema: Arc::new(Schema::new(keyed)),
            fetch,
            output: None,
        })
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
        let mut columns = Vec::with_capacity(batch.num_columns() + 1);
        for (column, field) in batch.columns().iter().zip(self.keyed_schema.fields()) {
            columns.push(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast(column, field.data_type())?
            });
        }
        columns.push(Arc::new(encoded));
        sort_batch(RecordBatch::try_new(self.keyed_schema.clone(), columns)?)
    }

    /// Read the whole input into sorted runs or one in-memory buffer.
    fn consume(&mut self) -> Result<Output> {
        let ctx = self.ctx.clone();
        let budget = &ctx.budget;
        let pool = budget.pool_bytes();
        let batch_bytes = spill_batch_bytes(pool, ctx.config.merge_fan_in_max);
        // Reserved before any input, so that a sort that has spilled can
        // always merge; see the module doc.
        let mut merge = budget.reservation("sort merge");
        merge.try_grow(merge_bytes(2, batch_bytes))?;
        let background = ctx.config.threads > 1;
        let buffer_bytes_max = if background { pool / 2 } else { pool };
        let mut shape = BatchShape::new(batch_bytes, ctx.config.batch_rows);
        let mut runs = RunWriter::new(ctx.clone(), self.keyed_schema.clone(), background);
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
                let fits = buffer.reservation.size() + bytes <= buffer_bytes_max;
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
                    runs.write(
                        std::mem::replace(
                            &mut buffer,
                            RunBuffer::new(budget.reservation("sort buffer")),
                        ),
                        self.fetch,
                        shape.rows,
                    )?;
                    break;
                }
                let full = std::mem::replace(
                    &mut buffer,
                    RunBuffer::new(budget.reservation("sort buffer")),
                );
                runs.write(full, self.fetch, shape.rows)?;
            }
            if let Some(k) = self.fetch {
                if buffer.rows >= (2 * k).max(ctx.config.batch_rows) {
                    threshold = buffer.keep_first(k, shape.rows)?;
                }
            }
        }
        let runs = runs.finish()?;
        if runs.is_empty() {
            let order = buffer.sorted(self.fetch);
            return Ok(Output::Memory {
                buffer,
                order,
                next: 0,
                shape,
                _reservation: merge,
            });
        }
        let mut runs = runs;
        if buffer.rows > 0 {
            let order = buffer.sorted(self.fetch);
            runs.push(write_run(
                &ctx,
                &self.keyed_schema,
                buffer,
                order,
                shape.rows,
            )?);
        } else {
            drop(buffer);
        }
        self.merge_runs(runs, merge, shape.rows)
    }

    /// Merge runs in passes until one merge can take them all; return that
    /// last merge, which streams the output.
    fn merge_runs(
        &self,
        mut runs: Vec<Run>,
        mut merge: Reservation,
        out_rows: usize,
    ) -> Result<Output> {
        let ctx = &self.ctx;
        let batch_bytes = runs.iter().map(|r| r.batch_bytes_max).max().unwrap_or(0);
        let fan_in_max = ctx.config.merge_fan_in_max.max(2);
        let per_cursor = cursor_bytes(batch_bytes);
        // What is reserved already buys this many cursors (at least two: the
        // merge may not stall, and a row wider than the target batch size
        // makes the estimate low rather than the merge impossible).
        let mut fan_in = (merge.size().saturating_sub(batch_bytes) / per_cursor).max(2);
        while fan_in < fan_in_max.min(runs.len()) && merge.try_grow(per_cursor).is_ok() {
            fan_in += 1;
        }
        while runs.len() > fan_in {
            let mut next = Vec::with_capacity(runs.len().div_ceil(fan_in));
            let mut rest = runs.into_iter().peekable();
            while rest.peek().is_some() {
                let group: Vec<Run> = rest.by_ref().take(fan_in).collect();
                if group.len() == 1 {
                    next.extend(group);
                    continue;
                }
                let mut merger = Merger::new(group, out_rows)?;
                let mut writer = ctx.spill.writer(self.keyed_schema.clone(), "sort run")?;
                let mut rows_left = self.fetch.unwrap_or(usize::MAX);
                let mut batch_bytes_max = 0;
                while rows_left > 0 {
                    ctx.check()?;
                    let Some(batch) = merger.next_batch()? else {
                        break;
                    };
                    let batch = batch.slice(0, batch.num_rows().min(rows_left));
                    rows_left -= batch.num_rows();
                    batch_bytes_max = batch_bytes_max.max(batch.get_array_memory_size());
                    writer.write(&batch)?;
                }
                next.push(Run {
                    file: writer.finish()?,
                    batch_bytes_max,
                });
            }
            runs = next;
        }
        Ok(Output::Merge {
            merger: Merger::new(runs, out_rows)?,
            rows_left: self.fetch.unwrap_or(usize::MAX),
            _reservation: merge,
        })
    }

    /// Drop the key column and give the batch the plan's schema and types.
    fn strip(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (column, field) in batch.columns().iter().zip(self.schema.fields()) {
            columns.push(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast(column, field.data_type())?
            });
        }
        relabel(
            &self.schema,
            RecordBatch::try_new(self.schema.clone(), columns)?,
        )
    }
}

/// The first eight bytes of a key as a number, zero-padded: comparing these
/// first settles most comparisons without a memcmp, and the padding keeps
/// the order that of the bytes.
fn key_prefix(key: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = key.len().min(8);
    head[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(head)
}

/// `batch` (with its key column) in key order, ties in input order.
///
/// Each batch is sorted as it arrives, while it is small enough to sit in
/// cache. A run's sorted order then visits every batch front to back, so
/// gathering the run streams through memory instead of jumping across all
/// of it, which made the gather the slowest step of writing a run.
fn sort_batch(batch: RecordBatch) -> Result<RecordBatch> {
    let keys = key_column(&batch);
    let mut entries: Vec<(u64, &[u8], u32)> = (0..keys.len())
        .map(|r| {
            let key = keys.value(r);
            (key_prefix(key), key, r as u32)
        })
        .collect();
    if entries.windows(2).all(|w| w[0] <= w[1]) {
        return Ok(batch);
    }
    entries.sort_unstable();
    let indices = UInt32Array::from_iter_values(entries.iter().map(|e| e.2));
    Ok(take_record_batch(&batch, &indices)?)
}

/// The type a column is held in while sorted.
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
            Output::Memory {
                buffer,
                order,
                next,
                shape,
                ..
            } => {
                if *next >= order.len() {
                    return Ok(None);
                }
                let end = (*next + shape.rows).min(order.len());
                let batch = buffer.gather(&order[*next..end])?;
                *next = end;
                batch
            }
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
        buffer: RunBuffer,
        order: Vec<(u32, u32)>,
        next: usize,
        shape: BatchShape,
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

    fn push(&mut self, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.batches.push(batch);
    }

    /// (batch, row) of every buffered row in sorted order, or of the first
    /// `fetch` of them.
    fn sorted(&self, fetch: Option<usize>) -> Vec<(u32, u32)> {
        let mut entries: Vec<(u64, &[u8], u32, u32)> = Vec::with_capacity(self.rows);
        for (b, batch) in self.batches.iter().enumerate() {
            let keys = key_column(batch);
            for r in 0..keys.len() {
                let key = keys.value(r);
                entries.push((key_prefix(key), key, b as u32, r as u32));
            }
        }
        // (key, batch, row) order is input order among equal keys: stable.
        match fetch {
            Some(k) if k < entries.len() => {
                if k > 0 {
                    entries.select_nth_unstable(k - 1);
                }
                entries.truncate(k);
                entries.sort_unstable();
            }
            _ => entries.sort_unstable(),
        }
        entries.into_iter().map(|(_, _, b, r)| (b, r)).collect()
    }

    fn gather(&self, order: &[(u32, u32)]) -> Result<RecordBatch> {
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        let indices: Vec<(usize, usize)> = order
            .iter()
            .map(|&(b, r)| (b as usize, r as usize))
            .collect();
        Ok(interleave_record_batch(&batches, &indices)?)
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
    /// The largest batch in it, in Arrow bytes: what a cursor must hold.
    batch_bytes_max: usize,
}

/// Write the rows of `buffer` in `order` as a run, in batches of
/// `batch_rows`.
fn write_run(
    ctx: &RunContext,
    schema: &SchemaRef,
    buffer: RunBuffer,
    order: Vec<(u32, u32)>,
    batch_rows: usize,
) -> Result<Run> {
    let mut writer = ctx.spill.writer(schema.clone(), "sort run")?;
    let mut batch_bytes_max = 0;
    for chunk in order.chunks(batch_rows.max(1)) {
        ctx.check()?;
        let batch = buffer.gather(chunk)?;
        batch_bytes_max = batch_bytes_max.max(batch.get_array_memory_size());
        writer.write(&batch)?;
    }
    Ok(Run {
        file: writer.finish()?,
        batch_bytes_max,
    })
}

/// Writes runs, in order, on a worker thread or inline; at most one is in
/// flight, so at most two buffers exist.
struct RunWriter {
    ctx: Arc<RunContext>,
    schema: SchemaRef,
    background: bool,
    runs: Vec<Run>,
    pending: Option<JoinHandle<Result<Run>>>,
}

impl RunWriter {
    fn new(ctx: Arc<RunContext>, schema: SchemaRef, background: bool) -> Self {
        RunWriter {
            ctx,
            schema,
            background,
            runs: Vec::new(),
            pending: None,
        }
    }

    /// Sort `buffer` (only its first `fetch` rows matter) and write it.
    ///
    /// The sort happens here and the gather, compression and write on the
    /// worker: that split keeps both threads about equally busy while the
    /// input is read.
    fn write(&mut self, buffer: RunBuffer, fetch: Option<usize>, batch_rows: usize) -> Result<()> {
        let order = buffer.sorted(fetch);
        self.wait()?;
        if !self.background {
            let run = write_run(&self.ctx, &self.schema, buffer, order, batch_rows)?;
            self.runs.push(run);
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let schema = self.schema.clone();
        let handle = std::thread::Builder::new()
            .name("highwater-sort-run".into())
            .spawn(move || write_run(&ctx, &schema, buffer, order, batch_rows))
            .map_err(|e| Error::ResourcesExhausted(format!("cannot start a sort thread: {e}")))?;
        self.pending = Some(handle);
        Ok(())
    }

    /// Wait for the run in flight, if any; true if there was one.
    fn wait(&mut self) -> Result<bool> {
        let Some(handle) = self.pending.take() else {
            return Ok(false);
        };
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
        if let Some(handle) = self.pending.take() {
            let _ = handle.join();
        }
    }
}

/// A k-way merge of sorted runs through a loser tree.
struct Merger {
    cursors: Vec<Cursor>,
    /// `tree[0]` is the winning cursor; `tree[1..]` hold the losers of the
    /// games played at each inner node.
    tree: Vec<usize>,
    /// Batches the output being built refers to: every cursor's current
    /// batch and those retired since the last output.
    arena: Vec<RecordBatch>,
    out_rows: usize,
    /// Kept until the merge ends, so their files outlive their readers.
    _runs: Vec<Run>,
}

struct Cursor {
    reader: SpillReader,
    keys: BinaryArray,
    row: usize,
    /// Index of the current batch in the arena.
    slot: usize,
    done: bool,
}

impl Merger {
    fn new(runs: Vec<Run>, out_rows: usize) -> Result<Self> {
        let mut merger = Merger {
            cursors: Vec::with_capacity(runs.len()),
            tree: Vec::new(),
            arena: Vec::with_capacity(2 * runs.len()),
            out_rows: out_rows.max(1),
            _runs: Vec::new(),
        };
        for run in &runs {
            let mut cursor = Cursor {
                reader: run.file.reader()?,
                keys: BinaryArray::from(Vec::<&[u8]>::new()),
                row: 0,
                slot: 0,
                done: false,
            };
            load(&mut cursor, &mut merger.arena)?;
            merger.cursors.push(cursor);
        }
        merger._runs = runs;
        merger.build_tree();
        Ok(merger)
    }

    /// Whether cursor `a`'s row sorts before cursor `b`'s. Exhausted cursors
    /// sort last; equal keys go to the earlier run, which keeps the sort
    /// stable.
    fn less(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (&self.cursors[a], &self.cursors[b]);
        match (ca.done, cb.done) {
            (true, _) => false,
            (false, true) => true,
            (false, false) => match ca.keys.value(ca.row).cmp(cb.keys.value(cb.row)) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => a < b,
            },
        }
    }

    fn build_tree(&mut self) {
        let k = self.cursors.len();
        const EMPTY: usize = usize::MAX;
        self.tree = vec![EMPTY; k.max(1)];
        for leaf in 0..k {
            let mut winner = leaf;
            let mut node = (leaf + k) / 2;
            while node > 0 {
                if self.tree[node] == EMPTY {
                    self.tree[node] = winner;
                    winner = EMPTY;
                    break;
                }
                if self.less(self.tree[node], winner) {
                    std::mem::swap(&mut self.tree[node], &mut winner);
                }
                node /= 2;
            }
            if winner != EMPTY {
                self.tree[0] = winner;
            }
        }
    }

    /// Replay the games on the path of cursor `leaf` after it moved.
    fn replay(&mut self, leaf: usize) {
        let k = self.cursors.len();
        let mut winner = leaf;
        let mut node = (leaf + k) / 2;
        while node > 0 {
            if self.less(self.tree[node], winner) {
                std::mem::swap(&mut self.tree[node], &mut winner);
            }
            node /= 2;
        }
        self.tree[0] = winner;
    }

    /// The next batch of merged rows (with their key column), or `None`.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let k = self.cursors.len();
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(self.out_rows);
        while indices.len() < self.out_rows {
            let w = self.tree[0];
            if self.cursors[w].done {
                break;
            }
            let cursor = &mut self.cursors[w];
            indices.push((cursor.slot, cursor.row));
            cursor.row += 1;
            let exhausted = cursor.row == cursor.keys.len();
            if exhausted {
                load(cursor, &mut self.arena)?;
            }
            self.replay(w);
            // Each cursor may retire one batch before the output must be
            // cut, which bounds the arena at two batches a cursor.
            if exhausted && self.arena.len() >= 2 * k {
                break;
            }
        }
        if indices.is_empty() {
            return Ok(None);
        }
        let batch = {
            let refs: Vec<&RecordBatch> = self.arena.iter().collect();
            interleave_record_batch(&refs, &indices)?
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

/// Move `cursor` to its run's next batch, kept in `arena`, or mark it done.
fn load(cursor: &mut Cursor, arena: &mut Vec<RecordBatch>) -> Result<()> {
    loop {
        match cursor.reader.next_batch()? {
            Some(batch) if batch.num_rows() == 0 => continue,
            Some(batch) => {
                cursor.keys = key_column(&batch).clone();
                cursor.row = 0;
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
