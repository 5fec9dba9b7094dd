//! Values: constant rows written in the query (`VALUES (1, 'a'), (2, 'b')`,
//! or the single empty row of a `SELECT` without `FROM`).
//!
//! # Memory
//!
//! Holds the one batch the planner built from the query text; its size is
//! bounded by the SQL text itself. Reserves nothing.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::exec::Operator;

pub struct Values {
    schema: SchemaRef,
    batch: Option<RecordBatch>,
}

impl Values {
    pub fn new(batch: RecordBatch) -> Self {
        Values {
            schema: batch.schema(),
            batch: (batch.num_rows() > 0).then_some(batch),
        }
    }
}

impl Operator for Values {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        Ok(self.batch.take())
    }
}
