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

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::properties::DEFAULT_MAX_ROW_GROUP_ROW_COUNT;

use crate::config::format_bytes;
use crate::error::{Error, Result};
use crate::io::atomic_file::AtomicFile;
use crate::io::column_encoder::RowGroupEncoder;
use crate::io::Sink;
use crate::memory::{MemoryBudget, Reservation, LARGE_LIMIT_BYTES};

/// Bounds on the row-group buffer.
const ROW_GROUP_BYTES_MAX: usize = 128 << 20;
const ROW_GROUP_BYTES_MIN: usize = 1 << 20;
/// Bounds on one data or dictionary page.
const PAGE_BYTES_MAX: usize = 1 << 20;
const PAGE_BYTES_MIN: usize = 16 << 10;

pub struct ParquetSink {
    writer: Option<RowGroupEncoder<AtomicFile>>,
    /// The row-group buffer: its size is what closes a row group.
    reservation: Reservation,
    /// The buffer aimed for.
    row_group_bytes_max: usize,
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
        threads: usize,
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
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_data_page_size_limit(page_bytes)
            .set_dictionary_page_size_limit(page_bytes)
            .set_created_by(format!("highwater {}", env!("CARGO_PKG_VERSION")))
            .build();
        let file = AtomicFile::create(path)?;
        // ArrowWriter sets up the file (schema conversion, the Arrow schema
        // in the footer); the encoder takes over before any row is written.
        let (file, factory) = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .and_then(|w| w.into_serialized_writer())
            .map_err(Error::from)?;
        let writer = RowGroupEncoder::new(file, factory, schema, threads).map_err(Error::from)?;
        Ok(ParquetSink {
            writer: Some(writer),
            reservation,
            row_group_bytes_max,
        })
    }

    fn target(&self) -> String {
        self.writer
            .as_ref()
            .map(|w| w.inner().target().display().to_string())
            .unwrap_or_default()
    }
}

/// The writer's errors: a full disk or unwritable path named as such.
fn write_error(e: parquet::errors::ParquetError, target: &str) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => Error::io("write", target, *io),
                Err(other) => Error::Execution(format!("writing {target}: {other}")),
            }
        }
        other => Error::Execution(format!("writing {target}: {other}")),
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
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
        if writer.memory_size() >= self.reservation.size()
            || writer.rows() >= DEFAULT_MAX_ROW_GROUP_ROW_COUNT
        {
            writer.flush().map_err(|e| write_error(e, &target))?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
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
