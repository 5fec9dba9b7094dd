//! Parquet output: ZSTD-compressed, row groups closed by bytes, columns
//! encoded on as many threads as the run has ([`RowGroupEncoder`]).
//!
//! # Memory
//!
//! The writer buffers one row group's encoded and compressed pages until it
//! is flushed. That buffer is reserved from the budget up front ("parquet
//! writer") and the row group is closed whenever the writer's memory reaches
//! it, so the buffer stays bounded whatever the row width. Pages are sized so
//! that one page per column fits in a fraction of the buffer.

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
use crate::memory::{MemoryBudget, Reservation};

/// Bounds on the row-group buffer.
const ROW_GROUP_BYTES_MAX: usize = 128 << 20;
const ROW_GROUP_BYTES_MIN: usize = 1 << 20;
/// Bounds on one data or dictionary page.
const PAGE_BYTES_MAX: usize = 1 << 20;
const PAGE_BYTES_MIN: usize = 16 << 10;

pub struct ParquetSink {
    writer: Option<RowGroupEncoder<AtomicFile>>,
    row_group_bytes: usize,
    _reservation: Reservation,
}

impl ParquetSink {
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        zstd_level: i32,
        budget: &MemoryBudget,
        threads: usize,
    ) -> Result<ParquetSink> {
        let mut reservation = budget.reservation("parquet writer");
        // A quarter of the operator pool, within bounds; if even that is not
        // there, halve down to the minimum before giving up.
        let mut row_group_bytes =
            (budget.pool_bytes() / 4).clamp(ROW_GROUP_BYTES_MIN, ROW_GROUP_BYTES_MAX);
        loop {
            match reservation.try_grow(row_group_bytes) {
                Ok(()) => break,
                Err(_) if row_group_bytes > ROW_GROUP_BYTES_MIN => row_group_bytes /= 2,
                Err(e) => {
                    return Err(Error::ResourcesExhausted(format!(
                        "no memory for the Parquet writer's row group buffer: {e}"
                    )))
                }
            }
        }
        let columns = schema.fields().len().max(1);
        let page_bytes = (row_group_bytes / (4 * columns)).clamp(PAGE_BYTES_MIN, PAGE_BYTES_MAX);
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
            row_group_bytes,
            _reservation: reservation,
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
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::Internal("parquet sink written after finish".into()))?;
        writer.write(batch).map_err(|e| write_error(e, &target))?;
        // Memory (encoded pages, dictionaries, values not yet encoded) runs
        // ahead of the encoded size, so it is what closes a row group.
        if writer.memory_size() >= self.row_group_bytes
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
            format_bytes(self.row_group_bytes as u64)
        )
    }
}
