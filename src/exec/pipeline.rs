//! Drive an operator tree into a sink.
//!
//! With two or more threads, the operator tree runs on a producer thread and
//! the sink on the calling thread, joined by a channel of
//! [`CHANNEL_BATCHES_MAX`] batches: decoding and filtering on one core,
//! encoding and compressing on the other. With one thread both run inline.
//!
//! # Memory
//!
//! At most `CHANNEL_BATCHES_MAX` batches wait in the channel, plus the one
//! each side is working on.

use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use crate::error::Result;
use crate::exec::{BoxedOperator, Progress, RunContext};
use crate::io::Sink;

pub const CHANNEL_BATCHES_MAX: usize = 2;

pub fn run(mut root: BoxedOperator, mut sink: Box<dyn Sink>, ctx: &Arc<RunContext>) -> Result<()> {
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
