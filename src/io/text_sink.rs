//! CSV and NDJSON output, to a file (atomically) or to stdout.
//!
//! # Memory
//!
//! Streams: each batch is encoded straight into a 256 KiB write buffer.
//! Reserves nothing.

use std::io::{BufWriter, Stdout, Write};
use std::path::Path;

use arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::io::atomic_file::AtomicFile;
use crate::io::{OutputFormat, Sink};

pub enum Destination {
    File(AtomicFile),
    Stdout(BufWriter<Stdout>),
}

impl Destination {
    pub fn file(path: &Path) -> Result<Destination> {
        Ok(Destination::File(AtomicFile::create(path)?))
    }

    pub fn stdout() -> Destination {
        Destination::Stdout(BufWriter::with_capacity(256 * 1024, std::io::stdout()))
    }

    fn name(&self) -> String {
        match self {
            Destination::File(f) => f.target().display().to_string(),
            Destination::Stdout(_) => "stdout".into(),
        }
    }

    fn complete(self) -> Result<()> {
        match self {
            Destination::File(f) => f.commit(),
            Destination::Stdout(mut out) => {
                out.flush().map_err(|e| Error::io("write", "stdout", e))
            }
        }
    }
}

impl Write for Destination {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Destination::File(f) => f.write(buf),
            Destination::Stdout(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Destination::File(f) => f.flush(),
            Destination::Stdout(s) => s.flush(),
        }
    }
}

// One per sink, so the size of the larger variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Encoder {
    Csv(arrow::csv::Writer<Destination>),
    Ndjson(arrow::json::LineDelimitedWriter<Destination>),
}

pub struct TextSink {
    encoder: Encoder,
    name: String,
}

impl TextSink {
    pub fn new(format: OutputFormat, destination: Destination) -> Result<TextSink> {
        let name = destination.name();
        let encoder = match format {
            OutputFormat::Csv => Encoder::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(destination),
            ),
            OutputFormat::Ndjson => {
                Encoder::Ndjson(arrow::json::LineDelimitedWriter::new(destination))
            }
            OutputFormat::Parquet => {
                return Err(Error::Internal(
                    "parquet output through the text sink".into(),
                ))
            }
        };
        Ok(TextSink { encoder, name })
    }

    fn error(&self, e: arrow::error::ArrowError) -> Error {
        match e {
            arrow::error::ArrowError::IoError(_, io) => Error::io("write", &self.name, io),
            other => Error::Execution(format!("writing {}: {other}", self.name)),
        }
    }
}

impl Sink for TextSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let result = match &mut self.encoder {
            Encoder::Csv(w) => w.write(batch),
            Encoder::Ndjson(w) => w.write(batch),
        };
        result.map_err(|e| self.error(e))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let name = self.name.clone();
        let destination = match self.encoder {
            Encoder::Csv(w) => w.into_inner(),
            Encoder::Ndjson(mut w) => {
                w.finish()
                    .map_err(|e| Error::Execution(format!("writing {name}: {e}")))?;
                w.into_inner()
            }
        };
        destination.complete()
    }
}
