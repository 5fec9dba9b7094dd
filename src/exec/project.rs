//! Project: compute the output columns from each input batch.
//!
//! # Memory
//!
//! Streams: one input batch and the columns computed from it. Reserves
//! nothing. Plain column references share the input's buffers.

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::exec::{BoxedOperator, Operator};
use crate::plan::Expr;

pub struct Project {
    input: BoxedOperator,
    exprs: Vec<Expr>,
    schema: SchemaRef,
}

impl Project {
    pub fn new(input: BoxedOperator, exprs: Vec<Expr>, schema: SchemaRef) -> Self {
        Project {
            input,
            exprs,
            schema,
        }
    }
}

impl Operator for Project {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(batch) = self.input.next_batch()? else {
            return Ok(None);
        };
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate_to_array(&batch))
            .collect::<Result<Vec<_>>>()?;
        // A projection of no columns (SELECT count(*)-style plans) still
        // carries the row count.
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(Some(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?))
    }
}
