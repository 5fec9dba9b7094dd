//! Filter: keep the rows for which a predicate is true (NULL counts as
//! false).
//!
//! # Memory
//!
//! Streams: one input batch and its filtered copy at a time. Reserves
//! nothing. Batches that come out empty are skipped, not passed on.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::exec::{BoxedOperator, Operator, RunContext};
use crate::plan::Expr;

pub struct Filter {
    ctx: Arc<RunContext>,
    input: BoxedOperator,
    predicate: Expr,
}

impl Filter {
    pub fn new(ctx: Arc<RunContext>, input: BoxedOperator, predicate: Expr) -> Self {
        Filter {
            ctx,
            input,
            predicate,
        }
    }
}

/// Apply `predicate` to `batch`.
pub fn filter_batch(predicate: &Expr, batch: &RecordBatch) -> Result<RecordBatch> {
    let mask = predicate.evaluate_to_array(batch)?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| Error::Internal(format!("filter {predicate} is not boolean")))?;
    if mask.null_count() == 0 && mask.true_count() == mask.len() {
        return Ok(batch.clone());
    }
    Ok(filter_record_batch(batch, mask)?)
}

impl Operator for Filter {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while let Some(batch) = self.input.next_batch()? {
            self.ctx.check()?;
            let out = filter_batch(&self.predicate, &batch)?;
            if out.num_rows() > 0 {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }
}
