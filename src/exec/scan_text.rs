//! CSV and NDJSON scans: read a source's text files one after another.
//!
//! Both formats decode with arrow-rs readers; what they share is here: only
//! the columns that the projection and the filters need are decoded, the
//! filters are applied to each batch, and reading stops at the limit.
//!
//! A malformed row (wrong number of fields, a value that does not parse as
//! its column's type, bad UTF-8) fails the scan with the file, line and
//! column named.
//!
//! # Memory
//!
//! Streams: one batch of `batch_rows` rows plus the reader's input buffer.
//! Reserves nothing. Only one file is open at a time.

use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use crate::error::{Error, Result};
use crate::exec::filter::filter_batch;
use crate::exec::{relabel, Operator, Progress, RunContext};
use crate::plan::Expr;
use crate::source::{explain_text_error, FileFormat, Source};

type BatchReader = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

/// Input buffer of the text readers.
const READ_BUFFER_BYTES: usize = 256 * 1024;

pub struct TextScan {
    ctx: Arc<RunContext>,
    source: Arc<Source>,
    /// Columns decoded from the file: the projection and the filters' columns.
    decoded: Vec<usize>,
    /// The filters, bound to `decoded`.
    predicate: Option<Expr>,
    /// Positions in `decoded` of the projected columns.
    output: Vec<usize>,
    schema: SchemaRef,
    rows_left: Option<usize>,
    next_file: usize,
    current: Option<(usize, BatchReader)>,
}

impl TextScan {
    pub fn new(
        ctx: Arc<RunContext>,
        source: Arc<Source>,
        projection: Vec<usize>,
        filters: Vec<Expr>,
        limit: Option<usize>,
    ) -> Result<Self> {
        let mut decoded: std::collections::BTreeSet<usize> = projection.iter().copied().collect();
        for f in &filters {
            decoded.extend(f.columns());
        }
        let decoded: Vec<usize> = decoded.into_iter().collect();
        let at = |i: usize| decoded.iter().position(|&d| d == i);
        let predicate = match Expr::conjunction(filters) {
            Some(p) => Some(p.remap(&at)?),
            None => None,
        };
        let output = projection.iter().map(|&p| at(p).unwrap()).collect();
        let schema = Arc::new(source.schema.project(&projection)?);
        Ok(TextScan {
            ctx,
            source,
            decoded,
            predicate,
            output,
            schema,
            rows_left: limit,
            next_file: 0,
            current: None,
        })
    }

    fn open(&self, file_index: usize) -> Result<BatchReader> {
        let path = &self.source.files[file_index];
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let input = BufReader::with_capacity(
            READ_BUFFER_BYTES,
            CountingRead {
                inner: file,
                ctx: self.ctx.clone(),
            },
        );
        let batch_rows = self.ctx.config.batch_rows;
        let reader: BatchReader = match &self.source.format {
            FileFormat::Csv(options) => {
                let mut builder = arrow::csv::ReaderBuilder::new(self.source.schema.clone())
                    .with_header(options.header)
                    .with_delimiter(options.delimiter)
                    .with_quote(options.quote)
                    .with_batch_size(batch_rows)
                    .with_projection(self.decoded.clone());
                if let Some(null) = &options.null_string {
                    builder = builder.with_null_regex(crate::source::null_regex(null)?);
                }
                Box::new(
                    builder
                        .build(input)
                        .map_err(|e| Error::from(e).reading(path))?,
                )
            }
            FileFormat::Ndjson => {
                // The JSON decoder skips fields that are not in its schema, so
                // giving it only the decoded columns is the projection.
                let schema = Arc::new(self.source.schema.project(&self.decoded)?);
                Box::new(
                    arrow::json::ReaderBuilder::new(schema)
                        .with_batch_size(batch_rows)
                        .build(input)
                        .map_err(|e| Error::from(e).reading(path))?,
                )
            }
            FileFormat::Parquet => {
                return Err(Error::Internal("a Parquet source in the text scan".into()))
            }
        };
        Ok(reader)
    }
}

/// Counts bytes read for the progress bar.
struct CountingRead {
    inner: File,
    ctx: Arc<RunContext>,
}

impl Read for CountingRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        Progress::add(&self.ctx.progress.bytes_read, n as u64);
        Ok(n)
    }
}

impl Operator for TextScan {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            self.ctx.check()?;
            if self.rows_left == Some(0) {
                self.current = None;
                return Ok(None);
            }
            if self.current.is_none() {
                if self.next_file >= self.source.files.len() {
                    return Ok(None);
                }
                self.current = Some((self.next_file, self.open(self.next_file)?));
                self.next_file += 1;
            }
            let (file_index, reader) = self.current.as_mut().expect("a file is open");
            let batch = match reader.next() {
                Some(Ok(batch)) => batch,
                Some(Err(e)) => {
                    let path = &self.source.files[*file_index];
                    let e = Error::from(e).reading(path);
                    return Err(explain_text_error(
                        &self.source.format,
                        &self.source.schema,
                        path,
                        e,
                    ));
                }
                None => {
                    self.current = None;
                    continue;
                }
            };
            Progress::add(&self.ctx.progress.rows_read, batch.num_rows() as u64);
            let batch = match &self.predicate {
                Some(p) => filter_batch(p, &batch)?,
                None => batch,
            };
            let mut batch = batch.project(&self.output)?;
            if let Some(left) = self.rows_left.as_mut() {
                let take = (*left).min(batch.num_rows());
                *left -= take;
                batch = batch.slice(0, take);
            }
            if batch.num_rows() == 0 {
                continue;
            }
            // Re-label with the plan's schema (the readers' may differ in
            // nullability or metadata).
            return relabel(&self.schema, batch).map(Some);
        }
    }
}
