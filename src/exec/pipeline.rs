//! Drive an operator tree into a sink.
//!
//! With two or more threads, the operator tree runs on a producer thread and
//! the sink on the calling thread, joined by a channel of
//! [`CHANNEL_BATCHES_MAX`] batches: decoding and filtering on one core,
//! encoding and compressing on the other. With one thread both run inline.
//!
//! Batches much smaller than `--batch-rows` (a selective filter's output, a
//! QUALIFY that keeps one row of four) are gathered into full ones first
//! (arrow's `BatchCoalescer`): each batch costs the sink a fixed amount
//! (the Parquet writer deals out a piece of work per column per batch), and
//! so does the channel. Keeping the latest row of each of SF1 lineitem's
//! 1.5M orders took 9.1 s written in batches of 256 rows, 5.3 to 6.0 s
//! gathered. A batch of half a batch or more passes through without a copy
//! unless a few small rows wait before it, which it is gathered with.
//!
//! # Memory
//!
//! At most `CHANNEL_BATCHES_MAX` batches wait in the channel, plus the one
//! each side is working on, and less than one batch being gathered.

use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::BatchCoalescer;

use crate::error::Result;
use crate::exec::{BoxedOperator, Progress, RunContext};
use crate::io::Sink;

pub const CHANNEL_BATCHES_MAX: usize = 2;

pub fn run(root: BoxedOperator, mut sink: Box<dyn Sink>, ctx: &Arc<RunContext>) -> Result<()> {
    let mut root = Coalesced::new(root, ctx.config.batch_rows);
    if ctx.config.threads <= 1 {
        while let Some(batch) = root.next_batch()? {
            ctx.check()?;
            Progress::add(&ctx.progress.rows_written, batch.num_rows() as u64);
            sink.write(&batch)?;
        }
        return sink.finish();
    }
    let (sender, receiver) = sync_channel(CHANNEL_BATCHES_MAX);
    std::thread::scope(|scope| {
        scope.spawn(move || loop {
            let next = root.next_batch();
            let done = !matches!(next, Ok(Some(_)));
            // A closed channel means the sink side failed; it reports.
            if sender.send(next).is_err() || done {
                return;
            }
        });
        for next in receiver {
            let Some(batch) = next? else { break };
            ctx.check()?;
            Progress::add(&ctx.progress.rows_written, batch.num_rows() as u64);
            sink.write(&batch)?;
        }
        sink.finish()
    })
}

/// The root's batches, small ones gathered into batches of `batch_rows`.
struct Coalesced {
    root: BoxedOperator,
    /// None where there is nothing to gather into: no columns.
    coalescer: Option<BatchCoalescer>,
    done: bool,
}

impl Coalesced {
    fn new(root: BoxedOperator, batch_rows: usize) -> Self {
        let schema = root.schema();
        let batch_rows = batch_rows.max(1);
        let coalescer = (!schema.fields().is_empty()).then(|| {
            BatchCoalescer::new(schema, batch_rows)
                .with_biggest_coalesce_batch_size(Some(batch_rows / 2))
        });
        Coalesced {
            root,
            coalescer,
            done: false,
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(coalescer) = &mut self.coalescer else {
            return self.root.next_batch();
        };
        loop {
            if let Some(batch) = coalescer.next_completed_batch() {
                return Ok(Some(batch));
            }
            if self.done {
                return Ok(None);
            }
            match self.root.next_batch()? {
                Some(batch) => coalescer.push_batch(batch)?,
                None => {
                    coalescer.finish_buffered_batch()?;
                    self.done = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::testing::Batches;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    #[test]
    fn small_batches_are_gathered_and_large_ones_pass_through_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let sizes = [3, 3, 3, 9, 1, 2];
        let mut next = 0;
        let batches = sizes
            .iter()
            .map(|&n| {
                let values = Int64Array::from_iter_values(next..next + n);
                next += n;
                RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
            })
            .collect();
        let mut coalesced = Coalesced::new(Batches::new(schema, batches), 8);
        let mut out = Vec::new();
        while let Some(b) = coalesced.next_batch().unwrap() {
            out.push(b);
        }
        let rows: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(rows, (0..next).collect::<Vec<i64>>());
        // 3+3+3 make 8 and leave 1; the 9 joins that 1 (too few to send
        // alone) and makes 8, leaving 2; with 1 and 2 that is a last 5.
        let lens: Vec<usize> = out.iter().map(|b| b.num_rows()).collect();
        assert_eq!(lens, [8, 8, 5]);
    }
}
