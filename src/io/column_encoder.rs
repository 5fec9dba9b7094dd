//! Encode a Parquet row group's columns on several threads.
//!
//! Encoding and ZSTD-compressing the output is the slowest step of most
//! jobs that write Parquet: a copy of TPC-H lineitem spent its whole run
//! with the writing thread busy and the reading one mostly idle. Parquet
//! encodes each column chunk on its own, so the columns of every batch are
//! shared out between the sink's thread and helpers: a free thread takes
//! the column with the oldest batch waiting, the largest first. Row groups
//! are then assembled in column order on the sink's thread, so the file is
//! the one a single-threaded writer makes.
//!
//! Why by column and batch, not by column alone: one column can dominate
//! (lineitem's comments are most of its bytes), and a column's pages must be
//! encoded in order by one writer. Dealing whole columns to threads for a
//! row group at a time left the thread with the comments as the bottleneck:
//! the lineitem copy took 2.15 s that way, 1.93 s batch by batch.
//!
//! Why `ahead`: with a wait for every batch's last column before the next
//! batch could start, the helper sat idle while the sink's thread finished
//! the comments of each batch (sorting SF1 lineitem into Parquet, the
//! helper was busy 1.1 s of the 2.4 s the writing took). A write may return
//! with batches still being encoded (the sink leaves two), so the next
//! batches' other columns fill that time.
//!
//! # Memory
//!
//! The column writers' page buffers (bounded by the sink's row group size)
//! and at most `ahead` batches beyond the one being written, which the
//! encoder holds until every column has encoded them. With `ahead` 0, as
//! under the small limits whose writers spool their pages, a write returns
//! only when its batch is encoded, and [`RowGroupEncoder::memory_size`] is
//! exact; otherwise it may lag by those batches.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn,
    ArrowRowGroupWriterFactory,
};
use parquet::errors::{ParquetError, Result};
use parquet::file::writer::SerializedFileWriter;

use crate::io::view_stats::ViewStats;

/// Helpers beyond this would mostly wait: a batch has only so many columns.
const HELPERS_MAX: usize = 7;

/// Writes batches into row groups of `file`.
pub struct RowGroupEncoder<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    shared: Arc<Shared>,
    rows: usize,
    /// Batches a write may leave to be encoded when it returns.
    ahead: usize,
    helpers: Helpers,
    /// The view columns whose chunk statistics are found here, not by the
    /// column writers (see [`crate::io::view_stats`]).
    view_stats: Vec<ViewStats>,
}

/// The helper threads, stopped when this is dropped, once the work they
/// are on is done.
struct Helpers {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// One row group's column writers (one per Parquet leaf column), and the
/// chunks they give when closed.
struct Group {
    writers: Vec<Mutex<Option<ArrowColumnWriter>>>,
    chunks: Vec<Mutex<Option<ArrowColumnChunk>>>,
}

enum Work {
    Write(Arc<Vec<ArrowLeafColumn>>),
    Close,
}

struct Pending {
    work: Work,
    /// Columns that have not done it yet.
    left: usize,
}

/// What the sink's thread and the helpers share.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The open row group's column writers, if one is open.
    group: Option<Arc<Group>>,
    /// Work not yet done by every column, oldest first.
    pending: VecDeque<Pending>,
    /// Per column: how many of `pending`, from the front, it has done.
    done: Vec<usize>,
    /// Per column: whether a thread is working on it.
    busy: Vec<bool>,
    /// Per column: its place when free threads pick, largest first.
    rank: Vec<usize>,
    /// Per column: its writer's memory and estimated encoded bytes after
    /// its last write.
    memory: Vec<usize>,
    encoded: Vec<usize>,
    error: Option<ParquetError>,
    failed: bool,
    stop: bool,
}

impl State {
    /// Rank the columns for free threads to pick, largest `sizes` first.
    fn rank_largest_first(&mut self, sizes: &[usize]) {
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&c| std::cmp::Reverse(sizes[c]));
        for (place, &c) in order.iter().enumerate() {
            self.rank[c] = place;
        }
    }

    /// The free column with the oldest work waiting, the largest first.
    fn next_column(&self) -> Option<usize> {
        if self.failed || self.error.is_some() {
            return None;
        }
        (0..self.done.len())
            .filter(|&c| !self.busy[c] && self.done[c] < self.pending.len())
            .min_by_key(|&c| (self.done[c], self.rank[c]))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Do one column's next piece of work, if any is free; return the
    /// state again and whether there was any.
    fn work_one<'a>(&'a self, mut state: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, bool) {
        let Some(c) = state.next_column() else {
            return (state, false);
        };
        let Some(group) = state.group.clone() else {
            state.error = Some(ParquetError::General("work with no row group open".into()));
            return (state, false);
        };
        let leaves = match &state.pending[state.done[c]].work {
            Work::Write(leaves) => Some(leaves.clone()),
            Work::Close => None,
        };
        state.busy[c] = true;
        drop(state);
        // A panic must still reach the bookkeeping below: the column would
        // stay busy and the sink's thread wait for it for ever.
        let work = || match leaves {
            Some(leaves) => match lock(&group.writers[c]).as_mut() {
                Some(writer) => writer
                    .write(&leaves[c])
                    .map(|()| (writer.memory_size(), writer.get_estimated_total_bytes())),
                None => Err(ParquetError::General("a column written after close".into())),
            },
            None => match lock(&group.writers[c]).take() {
                Some(writer) => writer.close().map(|chunk| {
                    *lock(&group.chunks[c]) = Some(chunk);
                    (0, 0)
                }),
                None => Err(ParquetError::General("a column closed twice".into())),
            },
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .unwrap_or_else(|_| Err(ParquetError::General("encoding a column panicked".into())));
        let mut state = self.lock();
        state.busy[c] = false;
        match result {
            Ok((memory, encoded)) => {
                state.memory[c] = memory;
                state.encoded[c] = encoded;
            }
            Err(e) => {
                state.error.get_or_insert(e);
            }
        }
        // Not the index taken above: the front may have gone meanwhile.
        let at = state.done[c];
        state.pending[at].left -= 1;
        state.done[c] += 1;
        while state.pending.front().is_some_and(|p| p.left == 0) {
            state.pending.pop_front();
            for done in &mut state.done {
                *done -= 1;
            }
        }
        self.changed.notify_all();
        (state, true)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(state).unwrap_or_else(|p| p.into_inner())
    }
}

impl<W: Write + Send> RowGroupEncoder<W> {
    /// `threads`: how many threads encode, the caller's among them.
    /// `ahead`: how many batches a write may leave being encoded (see the
    /// module doc); none on one thread. `view_stats`: the columns whose
    /// statistics the writer properties leave to this encoder
    /// ([`crate::io::view_stats::take_over`]).
    pub fn new(
        file: SerializedFileWriter<W>,
        factory: ArrowRowGroupWriterFactory,
        schema: SchemaRef,
        threads: usize,
        ahead: usize,
        view_stats: Vec<ViewStats>,
    ) -> Result<Self> {
        let helpers = threads
            .saturating_sub(1)
            .min(file.schema_descr().num_columns().saturating_sub(1))
            .min(HELPERS_MAX);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let mut encoder = RowGroupEncoder {
            file,
            factory,
            schema,
            shared: shared.clone(),
            rows: 0,
            ahead: if helpers == 0 { 0 } else { ahead },
            helpers: Helpers {
                shared: shared.clone(),
                handles: Vec::with_capacity(helpers),
            },
            view_stats,
        };
        for _ in 0..helpers {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name("highwater-parquet-encode".into())
                .spawn(move || help(&shared))
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            // Pushed one by one: on an error, Drop stops those started.
            encoder.helpers.handles.push(handle);
        }
        Ok(encoder)
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let open = self.shared.lock().group.clone();
        let group = match open {
            Some(group) => group,
            None => {
                let writers = self
                    .factory
                    .create_column_writers(self.file.flushed_row_groups().len())?;
                let n = writers.len();
                let group = Arc::new(Group {
                    chunks: writers.iter().map(|_| Mutex::new(None)).collect(),
                    writers: writers.into_iter().map(|w| Mutex::new(Some(w))).collect(),
                });
                let mut state = self.shared.lock();
                state.group = Some(group.clone());
                state.done = vec![0; n];
                state.busy = vec![false; n];
                state.rank = (0..n).collect();
                state.memory = vec![0; n];
                state.encoded = vec![0; n];
                group
            }
        };
        let mut leaves = Vec::with_capacity(group.writers.len());
        let mut sizes = Vec::with_capacity(group.writers.len());
        for (field, array) in self.schema.fields().iter().zip(batch.columns()) {
            for leaf in compute_leaves(field, array)? {
                leaves.push(leaf);
                sizes.push(array.get_buffer_memory_size());
            }
        }
        if leaves.len() != group.writers.len() {
            return Err(ParquetError::General(format!(
                "a batch of {} leaf columns for a row group of {}",
                leaves.len(),
                group.writers.len()
            )));
        }
        for stats in &mut self.view_stats {
            let column = batch
                .columns()
                .get(stats.column)
                .ok_or_else(|| ParquetError::General("a view column out of range".into()))?;
            stats
                .update(column.as_ref())
                .map_err(ParquetError::General)?;
        }
        {
            let mut state = self.shared.lock();
            state.rank_largest_first(&sizes);
            state.pending.push_back(Pending {
                work: Work::Write(Arc::new(leaves)),
                left: sizes.len(),
            });
            self.shared.changed.notify_all();
        }
        self.settle(self.ahead)?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Work on the columns, with the helpers, until at most `ahead` pieces
    /// of work are left.
    fn settle(&self, ahead: usize) -> Result<()> {
        let mut state = self.shared.lock();
        loop {
            if let Some(e) = state.error.take() {
                state.failed = true;
                return Err(e);
            }
            if state.failed {
                return Err(ParquetError::General("a column failed to encode".into()));
            }
            if state.pending.len() <= ahead {
                return Ok(());
            }
            let (next, worked) = self.shared.work_one(state);
            state = if worked { next } else { self.shared.wait(next) };
        }
    }

    /// Rows in the open row group.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes the open row group's writers hold: encoded pages and the
    /// values not yet encoded, as of each column's last write.
    pub fn memory_size(&self) -> usize {
        self.shared.lock().memory.iter().sum()
    }

    /// The open row group's size once encoded, as the writers estimate it.
    pub fn encoded_size(&self) -> usize {
        self.shared.lock().encoded.iter().sum()
    }

    /// Close the open row group, if any, and write it to the file.
    pub fn flush(&mut self) -> Result<()> {
        let open = self.shared.lock().group.clone();
        let Some(group) = open else {
            return Ok(());
        };
        {
            let mut state = self.shared.lock();
            // Closing writes each column's last page and its dictionary page:
            // the largest writers first, as with batches.
            let memory = state.memory.clone();
            state.rank_largest_first(&memory);
            state.pending.push_back(Pending {
                work: Work::Close,
                left: group.writers.len(),
            });
            self.shared.changed.notify_all();
        }
        self.settle(0)?;
        {
            let mut state = self.shared.lock();
            state.group = None;
            state.memory.iter_mut().for_each(|m| *m = 0);
            state.encoded.iter_mut().for_each(|e| *e = 0);
        }
        self.rows = 0;
        let truncate = self.file.properties().statistics_truncate_length();
        let mut chunks = Vec::with_capacity(group.chunks.len());
        for chunk in &group.chunks {
            let chunk = lock(chunk)
                .take()
                .ok_or_else(|| ParquetError::General("a column chunk was not closed".into()))?;
            chunks.push(chunk);
        }
        for stats in &mut self.view_stats {
            let chunk = chunks
                .get_mut(stats.column)
                .ok_or_else(|| ParquetError::General("a view column out of range".into()))?;
            let close = chunk.close_mut();
            close.metadata = close
                .metadata
                .clone()
                .into_builder()
                .set_statistics(stats.finish(truncate))
                .build()?;
        }
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// Flush and write the footer; return the file.
    pub fn finish(mut self) -> Result<W> {
        self.flush()?;
        drop(self.helpers);
        self.file.into_inner()
    }

    pub fn inner(&self) -> &W {
        self.file.inner()
    }

    /// Column chunks written so far (leaf columns of every row group
    /// closed), whose metadata the file writer holds until the footer.
    pub fn column_chunks_written(&self) -> usize {
        self.file
            .flushed_row_groups()
            .iter()
            .map(|g| g.num_columns())
            .sum()
    }
}

/// A helper's life: take free columns' work until told to stop.
fn help(shared: &Shared) {
    let mut state = shared.lock();
    while !state.stop {
        let (next, worked) = shared.work_one(state);
        state = if worked { next } else { shared.wait(next) };
    }
}

/// A lock on the shared state or a column writer. A panic while encoding
/// fails the whole write, so a poisoned lock is still used, to reach that
/// error.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    use crate::exec::testing::temp_dir;

    fn batches(schema: &SchemaRef) -> Vec<RecordBatch> {
        (0..20i64)
            .map(|b| {
                let ids: ArrayRef =
                    Arc::new(Int64Array::from_iter_values((0..500).map(|r| b * 500 + r)));
                let texts: ArrayRef =
                    Arc::new(StringArray::from_iter((0..500).map(|r| {
                        (r % 7 != 0).then(|| format!("row {} of batch {b}", r * 31 % 97))
                    })));
                let small: ArrayRef = Arc::new(Int64Array::from_iter(
                    (0..500).map(|r| (r % 3 != 0).then_some(r % 5)),
                ));
                RecordBatch::try_new(schema.clone(), vec![ids, texts, small]).unwrap()
            })
            .collect()
    }

    /// Write `batches` with `threads`, leaving `ahead` batches encoding,
    /// closing a row group every `row_group_rows`; return the file's bytes.
    fn write(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        threads: usize,
        ahead: usize,
        row_group_rows: usize,
    ) -> Result<Vec<u8>> {
        let (file, factory) =
            ArrowWriter::try_new(Vec::new(), schema.clone(), None)?.into_serialized_writer()?;
        let mut encoder =
            RowGroupEncoder::new(file, factory, schema.clone(), threads, ahead, Vec::new())?;
        for batch in batches {
            encoder.write(batch)?;
            if encoder.rows() >= row_group_rows {
                encoder.flush()?;
            }
        }
        encoder.finish()
    }

    fn schema(nullable_small: bool) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("text", DataType::Utf8, true),
            Field::new("small", DataType::Int64, nullable_small),
        ]))
    }

    #[test]
    fn columns_encoded_on_several_threads_make_the_same_file() {
        let schema = schema(true);
        let input = batches(&schema);
        let one = write(&schema, &input, 1, 0, 3000).unwrap();
        for threads in [2, 3, 8] {
            for ahead in [0, 1, 3] {
                let many = write(&schema, &input, threads, ahead, 3000).unwrap();
                assert!(
                    one == many,
                    "{threads} threads, {ahead} ahead wrote a different file"
                );
            }
        }
        let path = temp_dir().join(format!("encoded-{}.parquet", std::process::id()));
        std::fs::write(&path, one).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 4);
        let read: Vec<RecordBatch> = reader
            .build()
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        let read = arrow::compute::concat_batches(&schema, &read).unwrap();
        let written = arrow::compute::concat_batches(&schema, &input).unwrap();
        assert_eq!(read, written);
    }

    #[test]
    fn a_column_that_fails_to_encode_fails_the_write_on_every_thread_count() {
        // Nulls in a column the file declares non-nullable: the column
        // writer refuses them, on whichever thread encodes that column.
        let input = batches(&schema(true));
        let strict = schema(false);
        for threads in [1, 2, 3] {
            for ahead in [0, 1] {
                let error = write(&strict, &input, threads, ahead, 3000).unwrap_err();
                assert!(
                    error.to_string().contains("null"),
                    "{threads} threads, {ahead} ahead: {error}"
                );
            }
        }
    }
}
