//! Limit: skip `skip` rows, then pass at most `fetch` rows.
//!
//! # Memory
//!
//! Streams; reserves nothing. Once `fetch` rows are out it stops pulling
//! from its input, which is what lets a scan below it stop reading early.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::exec::{BoxedOperator, Operator};

pub struct Limit {
    input: BoxedOperator,
    skip_left: usize,
    fetch_left: Option<usize>,
}

impl Limit {
    pub fn new(input: BoxedOperator, skip: usize, fetch: Option<usize>) -> Self {
        Limit {
            input,
            skip_left: skip,
            fetch_left: fetch,
        }
    }
}

impl Operator for Limit {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.fetch_left == Some(0) {
                return Ok(None);
            }
            let Some(mut batch) = self.input.next_batch()? else {
                return Ok(None);
            };
            if self.skip_left > 0 {
                let skipped = self.skip_left.min(batch.num_rows());
                self.skip_left -= skipped;
                batch = batch.slice(skipped, batch.num_rows() - skipped);
            }
            if let Some(left) = self.fetch_left.as_mut() {
                let take = (*left).min(batch.num_rows());
                *left -= take;
                batch = batch.slice(0, take);
            }
            if batch.num_rows() > 0 {
                return Ok(Some(batch));
            }
        }
    }
}
