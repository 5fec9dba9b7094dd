//! Union all: the inputs' batches, one input after another.
//!
//! # Memory
//!
//! Streams; reserves nothing. Only one input is pulled at a time, so a union
//! of many file scans has one file open, not all.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::exec::{relabel, BoxedOperator, Operator};

pub struct Union {
    inputs: std::collections::VecDeque<BoxedOperator>,
    schema: SchemaRef,
}

impl Union {
    pub fn new(inputs: Vec<BoxedOperator>, schema: SchemaRef) -> Self {
        Union {
            inputs: inputs.into(),
            schema,
        }
    }
}

impl Operator for Union {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while let Some(input) = self.inputs.front_mut() {
            match input.next_batch()? {
                // The branches' types were unified by the planner; only the
                // field names (and nullability) may differ, so re-label.
                Some(batch) => return relabel(&self.schema, batch).map(Some),
                None => {
                    self.inputs.pop_front();
                }
            }
        }
        Ok(None)
    }
}
