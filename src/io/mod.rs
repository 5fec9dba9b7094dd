//! Outputs: where a query's batches go.
//!
//! Every file output is written under a temporary name beside its target
//! and renamed into place only when complete ([`atomic_file::AtomicFile`]),
//! so a failed, interrupted or killed run never leaves a partial file that
//! looks like output.

pub mod atomic_file;
pub mod collect_sink;
pub mod column_encoder;
pub mod page_spool;
pub mod parquet_sink;
pub mod table_printer;
pub mod text_sink;
pub mod view_stats;

use arrow::array::RecordBatch;

use crate::error::Result;

/// A consumer of a query's batches.
pub trait Sink: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Complete the output; for files, this is when they appear.
    fn finish(self: Box<Self>) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Parquet,
    Csv,
    Ndjson,
}

impl OutputFormat {
    pub fn from_path(path: &std::path::Path) -> Option<OutputFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Some(OutputFormat::Parquet),
            "csv" => Some(OutputFormat::Csv),
            "json" | "ndjson" | "jsonl" => Some(OutputFormat::Ndjson),
            _ => None,
        }
    }
}
