//! Parquet scan: read a source's files one after another, reading only the
//! projected columns, skipping row groups whose statistics rule out the
//! filters, and applying the filters as a row filter while decoding.
//!
//! # Algorithm
//!
//! 1. For each file, in order: read the footer.
//! 2. Prune row groups: for each conjunct `column <op> literal`, compare the
//!    literal with the row groups' min/max statistics; a row group is skipped
//!    when any conjunct is certainly false for all its rows.
//! 3. Decode the filter's columns first and evaluate the filter on them (an
//!    arrow-rs `RowFilter`); the projected columns are then decoded only for
//!    the selected rows.
//! 4. Stop once `limit` rows have passed the filter.
//!
//! # Memory
//!
//! Streams. The reader holds one decompressed page per column being read and
//! one batch of `batch_rows` rows; it reserves nothing, as no rows are
//! buffered past the batch it hands on. Only one file is open at a time.

use std::sync::Arc;

use arrow::array::Scalar;
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::kernels::cmp;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::arrow::ProjectionMask;

use crate::error::{Error, Result};
use crate::exec::{relabel, Operator, RunContext};
use crate::plan::expr::{BinaryOp, Expr};
use crate::source::{parquet_metadata, Source};

pub struct ParquetScan {
    ctx: Arc<RunContext>,
    source: Arc<Source>,
    projection: Vec<usize>,
    filters: Vec<Expr>,
    schema: SchemaRef,
    /// Rows still to produce under the scan's limit.
    rows_left: Option<usize>,
    next_file: usize,
    current: Option<OpenFile>,
}

struct OpenFile {
    reader: ParquetRecordBatchReader,
    file_index: usize,
    /// Compressed bytes per row, to turn rows read into progress bytes.
    bytes_per_row: f64,
    /// Whether a row filter counts the rows read (see `open`).
    filtered: bool,
}

impl ParquetScan {
    pub fn new(
        ctx: Arc<RunContext>,
        source: Arc<Source>,
        projection: Vec<usize>,
        filters: Vec<Expr>,
        limit: Option<usize>,
    ) -> Result<Self> {
        let schema = Arc::new(source.schema.project(&projection)?);
        Ok(ParquetScan {
            ctx,
            source,
            projection,
            filters,
            schema,
            rows_left: limit,
            next_file: 0,
            current: None,
        })
    }

    fn open(&self, file_index: usize) -> Result<OpenFile> {
        let path = &self.source.files[file_index];
        let (file, metadata) = parquet_metadata(path)?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let rows = metadata.metadata().file_metadata().num_rows().max(1);
        let row_groups = prune_row_groups(&metadata, &self.filters)?;
        let descr = metadata.metadata().file_metadata().schema_descr_ptr();
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
            .with_batch_size(self.ctx.config.batch_rows)
            .with_projection(ProjectionMask::roots(
                &descr,
                self.projection.iter().copied(),
            ))
            .with_row_groups(row_groups);
        let bytes_per_row = bytes as f64 / rows as f64;
        let filtered = !self.filters.is_empty();
        if let Some(predicate) = Expr::conjunction(self.filters.iter().cloned()) {
            let ctx = self.ctx.clone();
            // The filter sees every row decoded, before any is dropped: count
            // them here so that "rows read" means rows read from the file.
            let count = move |rows: usize| ctx.progress.add_read(rows, bytes_per_row);
            builder = builder.with_row_filter(row_filter(&descr, predicate, count)?);
        }
        if let Some(left) = self.rows_left {
            builder = builder.with_limit(left);
        }
        let reader = builder.build().map_err(|e| Error::from(e).reading(path))?;
        Ok(OpenFile {
            reader,
            file_index,
            bytes_per_row,
            filtered,
        })
    }
}

/// The filter as an arrow-rs row filter: it sees only the columns it reads,
/// in file order, so its column references are renumbered to match.
fn row_filter(
    descr: &parquet::schema::types::SchemaDescriptor,
    predicate: Expr,
    count: impl Fn(usize) + Send + 'static,
) -> Result<RowFilter> {
    let columns: Vec<usize> = predicate.columns().into_iter().collect();
    let bound = predicate.remap(&|i| columns.iter().position(|&c| c == i))?;
    let mask = ProjectionMask::roots(descr, columns.iter().copied());
    let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
        count(batch.num_rows());
        let result = bound
            .evaluate_to_array(&batch)
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        result
            .as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| ArrowError::ComputeError("filter is not boolean".into()))
    });
    Ok(RowFilter::new(vec![Box::new(predicate)]))
}

/// The row groups that may hold rows passing every filter.
fn prune_row_groups(metadata: &ArrowReaderMetadata, filters: &[Expr]) -> Result<Vec<usize>> {
    let parquet = metadata.metadata();
    let n = parquet.num_row_groups();
    let mut keep = vec![true; n];
    let schema = metadata.schema();
    for filter in filters {
        let Some((index, op, literal)) = column_op_literal(filter) else {
            continue;
        };
        let field = schema.field(index);
        if field.data_type() != literal.data_type() || literal.is_null(0) {
            continue;
        }
        let Ok(converter) = StatisticsConverter::try_new(
            field.name(),
            schema,
            parquet.file_metadata().schema_descr(),
        ) else {
            continue;
        };
        let (Ok(mins), Ok(maxes)) = (
            converter.row_group_mins(parquet.row_groups()),
            converter.row_group_maxes(parquet.row_groups()),
        ) else {
            continue;
        };
        // For each row group: is the conjunct certainly false for every row?
        let lit = Scalar::new(literal);
        let excluded: Vec<BooleanArray> = match op {
            BinaryOp::Eq => vec![cmp::lt(&maxes, &lit)?, cmp::gt(&mins, &lit)?],
            BinaryOp::Lt => vec![cmp::gt_eq(&mins, &lit)?],
            BinaryOp::LtEq => vec![cmp::gt(&mins, &lit)?],
            BinaryOp::Gt => vec![cmp::lt_eq(&maxes, &lit)?],
            BinaryOp::GtEq => vec![cmp::lt(&maxes, &lit)?],
            _ => continue,
        };
        for ex in excluded {
            for (rg, k) in keep.iter_mut().enumerate() {
                // A missing statistic (NULL) proves nothing: keep the group.
                if ex.is_valid(rg) && ex.value(rg) {
                    *k = false;
                }
            }
        }
    }
    Ok((0..n).filter(|&i| keep[i]).collect())
}

/// `column <op> literal` or `literal <op> column`, normalised to the former.
fn column_op_literal(e: &Expr) -> Option<(usize, BinaryOp, ArrayRef)> {
    let Expr::Binary { op, left, right } = e else {
        return None;
    };
    if !op.is_comparison() {
        return None;
    }
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column { index, .. }, Expr::Literal(v)) => Some((*index, *op, v.clone())),
        (Expr::Literal(v), Expr::Column { index, .. }) => Some((*index, op.swapped(), v.clone())),
        _ => None,
    }
}

impl Operator for ParquetScan {
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
                self.current = Some(self.open(self.next_file)?);
                self.next_file += 1;
            }
            let open = self.current.as_mut().expect("a file is open");
            match open.reader.next() {
                Some(Ok(batch)) => {
                    let rows = batch.num_rows();
                    if rows == 0 {
                        continue;
                    }
                    if let Some(left) = self.rows_left.as_mut() {
                        *left = left.saturating_sub(rows);
                    }
                    if !open.filtered {
                        self.ctx.progress.add_read(rows, open.bytes_per_row);
                    }
                    // The reader's schema carries the file's field metadata;
                    // the plan's schema is what operators above expect.
                    return relabel(&self.schema, batch).map(Some);
                }
                Some(Err(e)) => {
                    let path = &self.source.files[open.file_index];
                    return Err(Error::from(e).reading(path));
                }
                None => self.current = None,
            }
        }
    }
}
