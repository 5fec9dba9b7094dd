//! Parquet output: ZSTD-compressed, row groups closed by bytes, columns
//! encoded on as many threads as the run has ([`RowGroupEncoder`]).
//!
//! # Memory
//!
//! The writer buffers one row group's encoded and compressed pages until it
//! is flushed. That buffer is reserved from the budget ("parquet writer")
//! and the row group is closed whenever the writer's memory reaches it, so
//! the buffer stays bounded whatever the row width. Pages are sized so that
//! one page per column fits in a fraction of the buffer it aims for.
//!
//! The buffer aimed for is a quarter of the operator pool. Under a large
//! limit (see [`LARGE_LIMIT_BYTES`]) only the smallest buffer is reserved
//! when the writer is made, so that the writer can always work; the rest is
//! asked for when rows arrive and again at each row group. A sort or
//! aggregate reads all of its input before the first row is written, and
//! until then the memory is worth more to it (measured: the GROUP BY of
//! the bench at 256MB spilled 54 MB with 29 MB held here for nothing).
//! Under a small limit the whole buffer is reserved up front: there the
//! operators' unreserved memory (decoders, batches in flight) is a large
//! share of the limit, and the quarter of the pool left idle here is what
//! kept them under it (measured: a sort at 64MB and a join at 32MB crossed
//! the abort line without it).
//!
//! Where that buffer is under [`SPOOL_BELOW_BYTES`], finished pages go to
//! the spill directory instead ([`crate::io::page_spool`]) and the buffer
//! holds only the pages being encoded; row groups are then closed by rows
//! and encoded size, so that their metadata, held until the footer, stays
//! small.
//!
//! That metadata is the one part that grows with the file: parquet-rs holds
//! every closed row group's column-chunk metadata until the footer. It is
//! counted as it grows ("parquet footer", [`FOOTER_BYTES_PER_CHUNK`] a
//! column chunk), never refused, so that operators still asking for memory
//! spill sooner. Files carry chunk statistics but no page index (column and
//! offset indexes): parquet-rs would hold an entry for every page of every
//! column until the footer, which grows with the file at any limit.
//! Copying SF10 lineitem (234,000 spooled pages) at 40MB, the unreserved
//! heap grew to 18 MB and the run stopped at the limit after 14 s; without
//! the page index it completes even at 32MB, at 29.7 MB peak RSS.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, DEFAULT_MAX_ROW_GROUP_ROW_COUNT,
};
use parquet::schema::types::ColumnPath;

use crate::config::format_bytes;
use crate::error::{Error, Result};
use crate::io::atomic_file::AtomicFile;
use crate::io::column_encoder::RowGroupEncoder;
use crate::io::page_spool::PageSpoolFactory;
use crate::io::view_stats;
use crate::io::Sink;
use crate::memory::{MemoryBudget, Reservation, LARGE_LIMIT_BYTES};
use crate::source::OrderColumn;
use crate::spill::SpillManager;

/// Bounds on the row-group buffer.
const ROW_GROUP_BYTES_MAX: usize = 128 << 20;
const ROW_GROUP_BYTES_MIN: usize = 1 << 20;
/// A row-group buffer smaller than this would make so many row groups that
/// their metadata, held until the footer, outgrows the buffer; below it the
/// pages are spooled to disk ([`PageSpoolFactory`]). At 256MB the buffer is
/// about 24 MB: SF1 lineitem is 8 row groups and stays in memory.
const SPOOL_BELOW_BYTES: usize = 16 << 20;
/// Rows a page holds at most when spooled; see where it is set.
const SPOOLED_PAGE_ROWS_MAX: usize = 4096;
/// Batches a write may leave being encoded when the buffer is in memory
/// (see [`RowGroupEncoder`]). With one, the two cores were about 175% busy
/// while a sort's last merge wrote SF1 lineitem, with two about 185%.
/// Measured at SF1 and 256MB: lineitem sorted in 7.09 s with one, 6.63 s
/// with two (medians of 7), copied in 3.27 and 3.16 s (of 6), joined with
/// orders in 4.24 and 4.05 s (of 4), for 2 to 4 MB more of RSS.
const BATCHES_AHEAD: usize = 2;
/// Bounds on one data or dictionary page.
const PAGE_BYTES_MAX: usize = 1 << 20;
const PAGE_BYTES_MIN: usize = 16 << 10;
/// Rows of the first batch, at least, for its distinct values to choose
/// the columns written plain ([`plain_columns`]).
const SAMPLE_ROWS_MIN: usize = 1024;
/// A column of the first batch with at least one distinct value in this
/// many rows is written plain. SF1 lineitem's first 8192 rows have one in
/// 4 for l_orderkey (in order, 4 lines an order; plain it took less time
/// and space), one in 3.4 for l_shipdate (no difference either way) and
/// one in 160 or fewer for its flags and quantities.
const PLAIN_ROWS_PER_VALUE: usize = 5;
/// Heap one column chunk's metadata takes until the footer is written:
/// measured at 12.5 KB per row group of SF1 lineitem's 16 columns (about
/// 780 bytes a chunk, with its statistics), rounded up.
const FOOTER_BYTES_PER_CHUNK: usize = 1024;

pub struct ParquetSink {
    /// What making the writer takes, until the first batch.
    pending: Option<Pending>,
    writer: Option<RowGroupEncoder<AtomicFile>>,
    /// The row-group buffer: its size is what closes a row group.
    reservation: Reservation,
    /// The buffer aimed for.
    row_group_bytes_max: usize,
    /// Whether finished pages go to the spill directory ([`PageSpoolFactory`])
    /// rather than the buffer, which then holds only the pages being encoded.
    spooled: bool,
    /// The closed row groups' metadata, held until the footer.
    footer: Reservation,
}

/// A writer not made yet: which columns get a dictionary is read off the
/// first batch.
struct Pending {
    file: AtomicFile,
    schema: SchemaRef,
    properties: WriterPropertiesBuilder,
    page_spool: Option<Arc<PageSpoolFactory>>,
    threads: usize,
}

/// The columns of `sample` written without a dictionary: those with at
/// least one distinct value in [`PLAIN_ROWS_PER_VALUE`] rows.
///
/// parquet-rs starts every column chunk with a dictionary and gives it up
/// only once the dictionary outgrows its page, so a column of mostly
/// distinct values pays for interning each value up to there, in every row
/// group, and its pages of bit-packed indices compress worse under ZSTD
/// than its plain values do. Writing SF1 lineitem joined to orders
/// (`bench/run`'s join), a dictionary for each column took 5.9 to 6.1 s
/// and made 216 to 220 MB; with the columns this picks written plain
/// (keys, prices, comments, dates), 4.7 to 4.8 s and 178 MB. Writing its
/// quantities, discounts and taxes plain too made the file 4% larger and
/// no faster.
///
/// A first batch of fewer than [`SAMPLE_ROWS_MIN`] rows says too little:
/// every column keeps its dictionary. Types parquet never or always writes
/// as a dictionary (booleans, nested types, dictionaries) are left alone.
fn plain_columns(sample: &RecordBatch) -> Vec<String> {
    if sample.num_rows() < SAMPLE_ROWS_MIN {
        return Vec::new();
    }
    let schema = sample.schema();
    let mut plain = Vec::new();
    for (field, column) in schema.fields().iter().zip(sample.columns()) {
        let data_type = field.data_type();
        if data_type.is_nested()
            || matches!(data_type, DataType::Boolean | DataType::Dictionary(..))
        {
            continue;
        }
        let sort_field = SortField::new(data_type.clone());
        if !RowConverter::supports_fields(std::slice::from_ref(&sort_field)) {
            continue;
        }
        let Ok(rows) = RowConverter::new(vec![sort_field])
            .and_then(|c| c.convert_columns(std::slice::from_ref(column)))
        else {
            continue;
        };
        let distinct: HashSet<&[u8]> = rows.iter().map(|row| row.data()).collect();
        if distinct.len() * PLAIN_ROWS_PER_VALUE >= rows.num_rows() {
            plain.push(field.name().clone());
        }
    }
    plain
}

/// Integer columns (INT32 and INT64 in Parquet: integers, dates, times,
/// timestamps, decimals of up to 18 digits) written DELTA_BINARY_PACKED
/// rather than PLAIN, where they have no dictionary ([`plain_columns`]) or
/// outgrow it (the encoding is then the fallback).
///
/// Why: deltas bit-packed in blocks are what ZSTD would otherwise have to
/// find in 8 bytes a value, and ZSTD was the most of this writer's time.
/// Copying SF1 lineitem (256MB, 2 threads, 5 runs each) took 2.40 to 2.90
/// s (4.3 to 5.3 s of CPU) with its keys, prices and dates PLAIN, 2.18 to
/// 2.51 s (3.8 to 4.4 s) with them delta-encoded; the file went from 158.8
/// to 145.5 MB, and reading those columns back got faster too (summing
/// seven of them: 0.41 to 0.47 s before, 0.26 to 0.28 s after; DuckDB 0.31
/// to 0.38 s, then 0.19 to 0.22 s). The encoding is part of the Parquet
/// format since 2.0 (2014), and the readers we test against (DuckDB,
/// parquet-rs) read it in data pages of version 1, which these are.
fn delta_integers(
    schema: &SchemaRef,
    mut properties: WriterPropertiesBuilder,
) -> Result<WriterPropertiesBuilder> {
    let descriptor = ArrowSchemaConverter::new().convert(schema)?;
    for column in descriptor.columns() {
        if matches!(
            column.physical_type(),
            PhysicalType::INT32 | PhysicalType::INT64
        ) {
            properties = properties
                .set_column_encoding(column.path().clone(), Encoding::DELTA_BINARY_PACKED);
        }
    }
    Ok(properties)
}

/// Grow a row-group buffer toward `bytes_max`: all of it if the budget has
/// it, else the largest halving of it that is more than what is held.
fn grow(reservation: &mut Reservation, bytes_max: usize) {
    let mut bytes = bytes_max;
    while bytes > reservation.size() {
        if reservation.try_resize(bytes).is_ok() {
            return;
        }
        bytes /= 2;
    }
}

impl ParquetSink {
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        zstd_level: i32,
        budget: &MemoryBudget,
        spill: &SpillManager,
        threads: usize,
        sorted_by: &[OrderColumn],
    ) -> Result<ParquetSink> {
        let row_group_bytes_max =
            (budget.pool_bytes() / 4).clamp(ROW_GROUP_BYTES_MIN, ROW_GROUP_BYTES_MAX);
        let mut reservation = budget.reservation("parquet writer");
        reservation.try_grow(ROW_GROUP_BYTES_MIN).map_err(|e| {
            Error::ResourcesExhausted(format!(
                "no memory for the Parquet writer's row group buffer: {e}"
            ))
        })?;
        if budget.limit_bytes() < LARGE_LIMIT_BYTES {
            grow(&mut reservation, row_group_bytes_max);
        }
        let columns = schema.fields().len().max(1);
        let page_bytes =
            (row_group_bytes_max / (4 * columns)).clamp(PAGE_BYTES_MIN, PAGE_BYTES_MAX);
        let level = ZstdLevel::try_new(zstd_level).map_err(|_| {
            Error::plan(format!(
                "--zstd-level {zstd_level} is out of range (1 to 22)"
            ))
        })?;
        let spooled = row_group_bytes_max < SPOOL_BELOW_BYTES;
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_data_page_size_limit(page_bytes)
            .set_dictionary_page_size_limit(page_bytes)
            // No page index: see the module doc.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .set_created_by(format!("highwater {}", env!("CARGO_PKG_VERSION")));
        // Decimals wider than 18 digits are FIXED_LEN_BYTE_ARRAY, whose values
        // the parquet crate (60.1) cuts from one buffer per batch written. A
        // dictionary keeps each distinct value, and with it that batch's
        // whole buffer, until the row group closes, and the writer's memory
        // size does not count it: running sums (a DECIMAL(38,2) of 7.5k
        // values in 6M rows) held 17.5 MB of heap at 32MB, 1.9 MB reserved.
        // Written plain, and ZSTD-compressed, they keep nothing.
        for field in schema.fields() {
            if matches!(field.data_type(), DataType::Decimal128(p, _) if *p > 18)
                || matches!(field.data_type(), DataType::Decimal256(..))
            {
                properties = properties
                    .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        properties = delta_integers(&schema, properties)?;
        // Rows that go out sorted say so in every row group, so that a later
        // GROUP BY over the file can stream (`source::parquet_ordering`).
        // Only where every field is one leaf column, as the metadata counts
        // columns by leaf.
        let flat = !schema.fields().iter().any(|f| f.data_type().is_nested());
        if flat && !sorted_by.is_empty() {
            let columns = sorted_by
                .iter()
                .map(|o| SortingColumn {
                    column_idx: o.column as i32,
                    descending: o.descending,
                    nulls_first: o.nulls_first,
                })
                .collect();
            properties = properties.set_sorting_columns(Some(columns));
        }
        if spooled {
            // A dictionary-encoded column buffers its page's indices as
            // 8-byte numbers, and its encoded estimate (a few bits each)
            // reaches the page size late: at parquet's default of 20,000
            // rows a page, lineitem's writers held 3.5 MB, more than the
            // buffer under 32MB, and every row group closed early for it.
            properties = properties.set_data_page_row_count_limit(SPOOLED_PAGE_ROWS_MAX);
        }
        // The file is created now, so that an unwritable path fails before
        // the query runs; the writer waits for the first batch.
        let file = AtomicFile::create(path)?;
        Ok(ParquetSink {
            pending: Some(Pending {
                file,
                schema,
                properties,
                page_spool: spooled.then(|| Arc::new(PageSpoolFactory::new(spill.clone()))),
                threads,
            }),
            writer: None,
            reservation,
            row_group_bytes_max,
            spooled,
            footer: budget.reservation("parquet footer"),
        })
    }

    /// Make the writer, its dictionaries chosen from `sample`, the first
    /// batch (none when there are no rows): see [`plain_columns`].
    fn open(&mut self, sample: Option<&RecordBatch>) -> Result<()> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let Pending {
            file,
            schema,
            mut properties,
            page_spool,
            threads,
        } = pending;
        for name in sample.map(plain_columns).unwrap_or_default() {
            properties = properties.set_column_dictionary_enabled(ColumnPath::from(name), false);
        }
        let (properties, own_stats) = view_stats::take_over(&schema, properties);
        let mut options = ArrowWriterOptions::new().with_properties(properties.build());
        if let Some(factory) = page_spool {
            options = options.with_page_store_factory(factory);
        }
        // ArrowWriter sets up the file (schema conversion, the Arrow schema
        // in the footer); the encoder takes over before any row is written.
        let (file, factory) = ArrowWriter::try_new_with_options(file, schema.clone(), options)
            .and_then(|w| w.into_serialized_writer())
            .map_err(Error::from)?;
        // Spooled, a row group closes when its writers' memory outgrows the
        // reservation, which must then be known exactly after each write.
        let ahead = if self.spooled { 0 } else { BATCHES_AHEAD };
        self.writer = Some(
            RowGroupEncoder::new(file, factory, schema, threads, ahead, own_stats)
                .map_err(Error::from)?,
        );
        Ok(())
    }

    fn target(&self) -> String {
        let file = match (&self.writer, &self.pending) {
            (Some(writer), _) => writer.inner(),
            (None, Some(pending)) => &pending.file,
            (None, None) => return String::new(),
        };
        file.target().display().to_string()
    }
}

/// The writer's errors: a full disk or unwritable path named as such; our
/// own (a page spool's) as they were.
fn write_error(e: parquet::errors::ParquetError, target: &str) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => Error::io("write", target, *io),
                Err(other) => match other.downcast::<Error>() {
                    Ok(ours) => *ours,
                    Err(other) => Error::Execution(format!("writing {target}: {other}")),
                },
            }
        }
        other => Error::Execution(format!("writing {target}: {other}")),
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.open(Some(batch))?;
        let target = self.target();
        // Each row group starts by asking for a larger buffer.
        if self.writer.as_ref().is_some_and(|w| w.rows() == 0) {
            grow(&mut self.reservation, self.row_group_bytes_max);
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::Internal("parquet sink written after finish".into()))?;
        writer.write(batch).map_err(|e| write_error(e, &target))?;
        // Memory (encoded pages, dictionaries, values not yet encoded) runs
        // ahead of the encoded size, so it is what closes a row group.
        // Spooled, the memory is only each column's page in progress and its
        // dictionary, bounded by the page limits however long the row group
        // grows: the buffer grows to hold it, and the row group is closed
        // only if that is refused, or by its encoded size.
        let memory = writer.memory_size();
        let full = if self.spooled {
            (memory > self.reservation.size() && self.reservation.try_resize(memory).is_err())
                || writer.encoded_size() >= ROW_GROUP_BYTES_MAX
        } else {
            memory >= self.reservation.size()
        };
        if full || writer.rows() >= DEFAULT_MAX_ROW_GROUP_ROW_COUNT {
            writer.flush().map_err(|e| write_error(e, &target))?;
            let held = writer.column_chunks_written() * FOOTER_BYTES_PER_CHUNK;
            self.footer.record(held.saturating_sub(self.footer.size()));
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.open(None)?;
        let target = self.target();
        let writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Internal("parquet sink finished twice".into()))?;
        let file = writer.finish().map_err(|e| write_error(e, &target))?;
        file.commit()
    }
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ParquetSink({}, row groups of {})",
            self.target(),
            format_bytes(self.reservation.size() as u64)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::testing::temp_dir;
    use crate::io::Sink;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::fs::File;

    /// 200k rows: a low-cardinality string (dictionary pages), a unique
    /// number and a long unique string.
    fn batches() -> Vec<RecordBatch> {
        (0..50)
            .map(|b| {
                let ids: Vec<i64> = (b * 4000..(b + 1) * 4000).collect();
                let modes: Vec<&str> = ids
                    .iter()
                    .map(|i| ["AIR", "RAIL", "SHIP"][*i as usize % 3])
                    .collect();
                let notes: Vec<String> =
                    ids.iter().map(|i| format!("note {i} of the row")).collect();
                RecordBatch::try_from_iter([
                    ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                    ("mode", Arc::new(StringArray::from(modes)) as ArrayRef),
                    ("note", Arc::new(StringArray::from(notes)) as ArrayRef),
                ])
                .unwrap()
            })
            .collect()
    }

    /// Write `batches()` under a pool of `pool_bytes`; return the file's
    /// rows, its row group count and the spill files made.
    fn write(pool_bytes: usize, spill_limit: u64) -> Result<(Vec<RecordBatch>, usize, u64)> {
        let budget = MemoryBudget::with_pool_bytes(pool_bytes);
        let spill = SpillManager::create(&temp_dir(), spill_limit)?;
        let input = batches();
        let path = spill.dir().join("out.parquet");
        let mut sink = Box::new(ParquetSink::create(
            &path,
            input[0].schema(),
            1,
            &budget,
            &spill,
            2,
            &[],
        )?);
        for batch in &input {
            sink.write(batch)?;
        }
        sink.finish()?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let row_groups = reader.metadata().num_row_groups();
        let out = reader
            .build()
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let left = std::fs::read_dir(spill.dir()).unwrap().count();
        assert_eq!(left, 1, "only the lock file should be left");
        Ok((out, row_groups, spill.spill_files()))
    }

    /// Columns of mostly distinct values in the first batch are written
    /// without a dictionary, the others with one; a small first batch
    /// leaves every column its dictionary.
    #[test]
    fn dictionaries_only_where_values_repeat() {
        let mut input = batches();
        assert_eq!(plain_columns(&input[0]), ["id", "note"]);
        assert!(plain_columns(&input[0].slice(0, SAMPLE_ROWS_MIN - 1)).is_empty());

        let budget = MemoryBudget::with_pool_bytes(64 << 20);
        let spill = SpillManager::create(&temp_dir(), u64::MAX).unwrap();
        let path = spill.dir().join("dictionaries.parquet");
        let mut sink =
            ParquetSink::create(&path, input[0].schema(), 1, &budget, &spill, 2, &[]).unwrap();
        for batch in &input {
            sink.write(batch).unwrap();
        }
        Box::new(sink).finish().unwrap();
        let (_, metadata) = crate::source::parquet_metadata(&path).unwrap();
        for group in metadata.metadata().row_groups() {
            let dictionary = |c: usize| group.column(c).dictionary_page_offset().is_some();
            assert_eq!(
                (dictionary(0), dictionary(1), dictionary(2)),
                (false, true, false)
            );
        }
        let read = read_file(&path);
        assert_eq!(concat(&read), concat(&std::mem::take(&mut input)));
        std::fs::remove_file(&path).unwrap();
    }

    /// Rows written in order say so in their row groups' metadata, which
    /// a later read of the file trusts (`source::parquet_ordering`).
    #[test]
    fn sorted_output_declares_its_order() {
        let budget = MemoryBudget::with_pool_bytes(64 << 20);
        let spill = SpillManager::create(&temp_dir(), u64::MAX).unwrap();
        let path = spill.dir().join("sorted.parquet");
        let batch = RecordBatch::try_from_iter([
            (
                "k",
                Arc::new(Int64Array::from(vec![1, 2, 2, 5])) as ArrayRef,
            ),
            (
                "v",
                Arc::new(StringArray::from(vec!["d", "c", "b", "a"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let order = OrderColumn {
            column: 0,
            descending: false,
            nulls_first: true,
        };
        let mut sink =
            ParquetSink::create(&path, batch.schema(), 1, &budget, &spill, 2, &[order]).unwrap();
        sink.write(&batch).unwrap();
        Box::new(sink).finish().unwrap();
        let (_, metadata) = crate::source::parquet_metadata(&path).unwrap();
        for group in metadata.metadata().row_groups() {
            let declared = group.sorting_columns().expect("declared");
            assert_eq!(declared.len(), 1);
            assert_eq!(
                (
                    declared[0].column_idx,
                    declared[0].descending,
                    declared[0].nulls_first
                ),
                (0, false, true)
            );
        }
        assert_eq!(crate::source::parquet_ordering(&metadata), vec![order]);
        std::fs::remove_file(&path).unwrap();
    }

    /// View columns' statistics, found by the encoder, are those parquet
    /// finds for the same values: nulls, values past the truncation
    /// length, a column of nulls only, and several row groups.
    #[test]
    fn view_column_statistics_are_the_ones_parquet_writes() {
        use arrow::array::{BinaryViewArray, StringViewArray};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        let long = |i: usize| format!("{}{i:04}", "é".repeat(40));
        let input: Vec<RecordBatch> = (0..6)
            .map(|b| {
                let rows = 0..3000usize;
                let names = StringViewArray::from_iter(rows.clone().map(|r| {
                    let i = b * 3000 + r;
                    (i % 11 != 0).then(|| match i % 5 {
                        0 => long(i),
                        1 => "DELIVER IN PERSON".to_string(),
                        _ => format!("n{}", i * 7919 % 1000),
                    })
                }));
                let blobs = BinaryViewArray::from_iter(
                    rows.clone()
                        .map(|r| (r % 3 != 0).then(|| vec![0xFF; 70 + (b * 3000 + r) % 3])),
                );
                let nothing = StringViewArray::from_iter(rows.map(|_| None::<&str>));
                RecordBatch::try_from_iter([
                    ("name", Arc::new(names) as ArrayRef),
                    ("blob", Arc::new(blobs) as ArrayRef),
                    ("nothing", Arc::new(nothing) as ArrayRef),
                ])
                .unwrap()
            })
            .collect();
        let schema = input[0].schema();
        let budget = MemoryBudget::with_pool_bytes(64 << 20);
        let spill = SpillManager::create(&temp_dir(), u64::MAX).unwrap();
        let ours = spill.dir().join("views.parquet");
        let mut sink =
            ParquetSink::create(&ours, schema.clone(), 1, &budget, &spill, 2, &[]).unwrap();
        // Their row groups: one a batch, closed as ours are below.
        let properties = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_max_row_group_row_count(Some(3000))
            .build();
        let mut theirs = ArrowWriter::try_new(Vec::new(), schema, Some(properties)).unwrap();
        for batch in &input {
            sink.write(batch).unwrap();
            sink.writer.as_mut().unwrap().flush().unwrap();
            theirs.write(batch).unwrap();
        }
        Box::new(sink).finish().unwrap();
        let theirs = bytes::Bytes::from(theirs.into_inner().unwrap());
        let theirs = ParquetRecordBatchReaderBuilder::try_new(theirs).unwrap();
        let (_, ours_metadata) = crate::source::parquet_metadata(&ours).unwrap();
        let (ours_groups, theirs_groups) = (
            ours_metadata.metadata().row_groups(),
            theirs.metadata().row_groups(),
        );
        assert_eq!(ours_groups.len(), 6);
        assert_eq!(theirs_groups.len(), 6);
        for (ours, theirs) in ours_groups.iter().zip(theirs_groups) {
            for c in 0..3 {
                let (a, b) = (ours.column(c).statistics(), theirs.column(c).statistics());
                assert_eq!(a, b, "column {c}");
            }
        }
        std::fs::remove_file(&ours).unwrap();
    }

    /// Integers of every width, extremes and nulls among them, are written
    /// delta-encoded where they have no dictionary, and read back as they
    /// were.
    #[test]
    fn integer_columns_round_trip_delta_encoded() {
        use arrow::array::{
            Date32Array, Decimal128Array, Int32Array, Int8Array, TimestampMicrosecondArray,
            UInt32Array, UInt64Array,
        };
        use parquet::basic::Encoding;
        let rows = 5000usize;
        // Distinct enough to be written without a dictionary, with the
        // extremes (the widest deltas) and nulls.
        let pick = |r: usize, low: i128, high: i128| match r % 97 {
            0 => None,
            1 => Some(low),
            2 => Some(high),
            _ => Some(low / 2 + (r as i128 * 7919) % 100_000),
        };
        // Every row's value between `low` and `high`, cast to the column's type.
        let between = |low: i128, high: i128| (0..rows).map(move |r| pick(r, low, high));
        let i64s = || between(i64::MIN.into(), i64::MAX.into()).map(|v| v.map(|v| v as i64));
        let i32s = || between(i32::MIN.into(), i32::MAX.into()).map(|v| v.map(|v| v as i32));
        let decimals = 10i128.pow(18) - 1;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("i64", Arc::new(Int64Array::from_iter(i64s()))),
            (
                "u64",
                Arc::new(UInt64Array::from_iter(
                    between(0, u64::MAX.into()).map(|v| v.map(|v| v as u64)),
                )),
            ),
            ("i32", Arc::new(Int32Array::from_iter(i32s()))),
            (
                "u32",
                Arc::new(UInt32Array::from_iter(
                    between(0, u32::MAX.into()).map(|v| v.map(|v| v as u32)),
                )),
            ),
            (
                "i8",
                Arc::new(Int8Array::from_iter(
                    between(-128, 127).map(|v| v.map(|v| (v % 128) as i8)),
                )),
            ),
            ("date", Arc::new(Date32Array::from_iter(i32s()))),
            ("ts", Arc::new(TimestampMicrosecondArray::from_iter(i64s()))),
            (
                "price",
                Arc::new(
                    Decimal128Array::from_iter(between(-decimals, decimals))
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
            ),
        ];
        let input = RecordBatch::try_from_iter(columns).unwrap();
        let budget = MemoryBudget::with_pool_bytes(64 << 20);
        let spill = SpillManager::create(&temp_dir(), u64::MAX).unwrap();
        let path = spill.dir().join("integers.parquet");
        let mut sink =
            ParquetSink::create(&path, input.schema(), 1, &budget, &spill, 2, &[]).unwrap();
        sink.write(&input).unwrap();
        Box::new(sink).finish().unwrap();
        let (_, metadata) = crate::source::parquet_metadata(&path).unwrap();
        let group = &metadata.metadata().row_groups()[0];
        for c in 0..input.num_columns() {
            let encodings: Vec<Encoding> = group.column(c).encodings().collect();
            let delta = encodings.contains(&Encoding::DELTA_BINARY_PACKED);
            // The int8 column has 256 values at most: a dictionary.
            assert_eq!(delta, c != 4, "column {c}: {encodings:?}");
        }
        let read = read_file(&path);
        assert_eq!(concat(&read), input);
        std::fs::remove_file(&path).unwrap();
    }

    fn read_file(path: &Path) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap()
    }

    fn concat(batches: &[RecordBatch]) -> RecordBatch {
        arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
    }

    /// Under a small pool the pages go to disk and the row groups stay
    /// large; the file reads back the same as one written in memory.
    #[test]
    fn spooled_pages_make_the_same_rows_in_few_row_groups() {
        let (in_memory, groups_in_memory, files) = write(usize::MAX, u64::MAX).unwrap();
        assert_eq!(files, 0);
        assert_eq!(groups_in_memory, 1);
        let (spooled, groups_spooled, files) = write(4 << 20, u64::MAX).unwrap();
        // The buffer is 1 MB: without the spool, every MB of pages would
        // have closed a row group. The row group's three columns share one
        // file.
        assert_eq!(groups_spooled, 1);
        assert_eq!(files, 1);
        let expected = concat(&batches());
        assert_eq!(concat(&in_memory), expected);
        assert_eq!(concat(&spooled), expected);
    }

    #[test]
    fn a_spool_past_the_spill_limit_fails_clearly() {
        let err = write(4 << 20, 64 << 10).unwrap_err().to_string();
        assert!(err.contains("spill limit"), "{err}");
    }

    /// Each closed row group's metadata is counted until the footer, and
    /// the file has chunk statistics but no page index, whose entries
    /// (one a page) would be held until the footer too.
    #[test]
    fn row_group_metadata_is_counted_and_no_page_index_is_written() {
        let budget = MemoryBudget::with_pool_bytes(4 << 20);
        let spill = SpillManager::create(&temp_dir(), u64::MAX).unwrap();
        let path = spill.dir().join("out.parquet");
        let batch = |b: i64| {
            let ids: Vec<i64> = (b * 10_000..(b + 1) * 10_000).collect();
            RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(ids)) as ArrayRef)])
                .unwrap()
        };
        let mut sink = Box::new(
            ParquetSink::create(&path, batch(0).schema(), 1, &budget, &spill, 2, &[]).unwrap(),
        );
        let footer = |budget: &MemoryBudget| {
            let text = budget.describe_consumers();
            text.contains("parquet footer").then_some(text)
        };
        // A row group closes at 2^20 rows, after 105 batches of 10,000:
        // 250 batches make two row groups and part of a third.
        for b in 0..250 {
            sink.write(&batch(b)).unwrap();
            if b == 103 {
                assert!(footer(&budget).is_none(), "no row group closed yet");
            }
            if b == 104 {
                let text = footer(&budget).expect("one row group closed");
                assert!(text.contains("parquet footer 1.0 KB"), "{text}");
            }
        }
        let text = footer(&budget).expect("two row groups closed");
        assert!(text.contains("parquet footer 2.0 KB"), "{text}");
        sink.finish().unwrap();
        assert!(footer(&budget).is_none(), "given back with the sink");

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let metadata = reader.metadata();
        assert_eq!(metadata.num_row_groups(), 3);
        for group in metadata.row_groups() {
            assert_eq!(group.column(0).column_index_offset(), None);
            assert_eq!(group.column(0).offset_index_offset(), None);
        }
        let stats = metadata.row_group(2).column(0).statistics().unwrap();
        assert_eq!(stats.min_bytes_opt(), Some(&2_100_000i64.to_le_bytes()[..]));
        assert_eq!(stats.max_bytes_opt(), Some(&2_499_999i64.to_le_bytes()[..]));
        let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 2_500_000);
    }
}
