//! An operator wrapped for EXPLAIN ANALYZE: counts what it returns and the
//! time it takes, and makes its node current while it works so that its
//! reservations and spill files are counted for it (see `crate::analyze`).
//!
//! # Memory
//!
//! None of its own: it passes batches through.

use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::analyze::{self, Node};
use crate::error::Result;
use crate::exec::{BoxedOperator, Operator};

pub struct Analyzed {
    inner: BoxedOperator,
    node: Node,
}

impl Analyzed {
    pub fn new(inner: BoxedOperator, node: Node) -> Analyzed {
        Analyzed { inner, node }
    }
}

impl Operator for Analyzed {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let previous = analyze::enter(Some(self.node.clone()));
        let started = Instant::now();
        let result = self.inner.next_batch();
        let nanos = started.elapsed().as_nanos() as u64;
        analyze::leave(previous);
        let rows = match &result {
            Ok(Some(b)) => b.num_rows() as u64,
            _ => 0,
        };
        self.node.produced(rows, nanos);
        result
    }
}
