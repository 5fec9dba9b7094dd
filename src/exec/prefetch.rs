//! Run an input on a thread of its own, a few batches ahead of the
//! operator reading it.
//!
//! Why: a hash join reads its whole build side before it can probe, and
//! until then the pipeline's other thread, the sink's, has nothing to do.
//! Built on one thread, each build batch is decoded (Parquet pages
//! decompressed and unpacked) and then hashed into the table, in turn.
//! With the build input on its own thread, the next batch is decoded while
//! this one is hashed. Measured on the bench's join (SF1, 256MB, 2 threads,
//! 9 runs each, interleaved): the build's 0.55 s went to about 0.4 s, and
//! the join from 2.85 to 3.65 s (median 2.97) to 2.68 to 3.22 s (median
//! 2.93): the hashing, not the decoding, is most of the build.
//!
//! A join's probe side runs so too: the probe itself is one thread's work,
//! and its input's decoding (or the joins below it) then happens beside it.
//! Measured at SF1, 256MB, 2 threads (medians of 5, interleaved): TPC-H Q3
//! went from 0.35 to 0.25 s, Q5 0.46 to 0.40 s, Q9 0.88 to 0.72 s, Q18 0.61
//! to 0.54 s; the bench's join, whose other threads were busy already
//! writing, 2.97 to 2.79 s (of 7), for 6 MB more RSS.
//!
//! Only with two threads or more, and under a large limit
//! ([`LARGE_LIMIT_BYTES`]): see `# Memory`.
//!
//! # Memory
//!
//! At most [`PREFETCH_BATCHES`] batches wait in the channel, plus the one
//! the thread is producing. Like the pipeline's channel they are not
//! reserved: under a large limit they are a small part of the headroom
//! left for memory no operator reserves, and under a small one this
//! operator is not used. There is one for each side of each hash join, so
//! a plan of n joins has at most 2n: TPC-H Q9's five joins peaked at 126
//! MB of RSS with them on both sides, 110 MB with the build sides' only.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::analyze;
use crate::error::{Error, Result};
use crate::exec::{BoxedOperator, Operator, RunContext};
use crate::memory::LARGE_LIMIT_BYTES;

/// Batches the thread may have ready before the reader takes them: two
/// keep it busy while the reader works on one.
pub const PREFETCH_BATCHES: usize = 2;

type Next = Result<Option<RecordBatch>>;

pub struct Prefetch {
    schema: SchemaRef,
    state: State,
}

enum State {
    /// Started at the first read, so that the input starts when the
    /// operator above would have started it, after it has reserved what it
    /// needs.
    Waiting(BoxedOperator),
    Running {
        batches: Receiver<Next>,
        thread: JoinHandle<()>,
    },
    Done,
}

impl Prefetch {
    /// `input` behind a prefetch thread where that is allowed (see the
    /// module doc), else `input` itself.
    pub fn wrap(input: BoxedOperator, ctx: &RunContext) -> BoxedOperator {
        if ctx.config.threads < 2 || ctx.budget.limit_bytes() < LARGE_LIMIT_BYTES {
            return input;
        }
        Box::new(Prefetch {
            schema: input.schema(),
            state: State::Waiting(input),
        })
    }

    fn start(mut input: BoxedOperator) -> Result<State> {
        let (sender, batches) = sync_channel::<Next>(PREFETCH_BATCHES);
        // Spill files the input makes belong to its node in EXPLAIN ANALYZE.
        let node = analyze::current();
        let thread = std::thread::Builder::new()
            .name("highwater-prefetch".into())
            .spawn(move || {
                analyze::enter(node);
                loop {
                    let next = input.next_batch();
                    let last = !matches!(next, Ok(Some(_)));
                    // A closed channel: the reader has gone (it failed, or
                    // needs no more rows); stop.
                    if sender.send(next).is_err() || last {
                        return;
                    }
                }
            })
            .map_err(|e| {
                Error::ResourcesExhausted(format!("cannot start a prefetch thread: {e}"))
            })?;
        Ok(State::Running { batches, thread })
    }

    /// Stop reading; wait for the thread, which returns at its next send.
    fn stop(&mut self) -> Result<()> {
        if let State::Running { batches, thread } = std::mem::replace(&mut self.state, State::Done)
        {
            drop(batches);
            thread
                .join()
                .map_err(|_| Error::Internal("the prefetch thread panicked".into()))?;
        }
        Ok(())
    }
}

impl Operator for Prefetch {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if matches!(self.state, State::Waiting(_)) {
            if let State::Waiting(input) = std::mem::replace(&mut self.state, State::Done) {
                self.state = Prefetch::start(input)?;
            }
        }
        let State::Running { batches, .. } = &self.state else {
            return Ok(None);
        };
        match batches.recv() {
            Ok(Ok(Some(batch))) => Ok(Some(batch)),
            Ok(end) => {
                self.stop()?;
                end
            }
            // The thread ended without a last message: it panicked.
            Err(_) => {
                self.stop()?;
                Err(Error::Internal(
                    "the prefetch thread stopped without an end".into(),
                ))
            }
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::testing::{context, temp_dir, Batches};
    use crate::memory::MemoryBudget;
    use arrow::array::{ArrayRef, Int64Array};
    use std::sync::Arc;

    fn batches(n: i64) -> Vec<RecordBatch> {
        (0..n)
            .map(|b| {
                let values: ArrayRef = Arc::new(Int64Array::from_iter_values(b * 10..b * 10 + 10));
                RecordBatch::try_from_iter([("v", values)]).unwrap()
            })
            .collect()
    }

    fn input(batches: &[RecordBatch], fail_at_end: bool) -> BoxedOperator {
        let mut input = Batches::new(batches[0].schema(), batches.to_vec());
        input.fail_at_end = fail_at_end;
        input
    }

    fn read_all(op: &mut BoxedOperator) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while let Some(batch) = op.next_batch()? {
            out.push(batch);
        }
        Ok(out)
    }

    #[test]
    fn batches_come_through_in_order_then_the_end_or_the_error() {
        let ctx = context(MemoryBudget::unlimited(), temp_dir(), 2, 64, 1024);
        let want = batches(50);
        let mut prefetch = Prefetch::wrap(input(&want, false), &ctx);
        assert_eq!(read_all(&mut prefetch).unwrap(), want);
        // After the end, still the end.
        assert!(prefetch.next_batch().unwrap().is_none());

        let mut failing = Prefetch::wrap(input(&want, true), &ctx);
        for batch in &want {
            assert_eq!(&failing.next_batch().unwrap().unwrap(), batch);
        }
        let error = failing.next_batch().unwrap_err();
        assert!(error.to_string().contains("input failed"), "{error}");
    }

    #[test]
    fn a_reader_that_stops_early_stops_the_thread() {
        let ctx = context(MemoryBudget::unlimited(), temp_dir(), 2, 64, 1024);
        let mut prefetch = Prefetch::wrap(input(&batches(1000), false), &ctx);
        assert!(prefetch.next_batch().unwrap().is_some());
        // Dropped with batches left: the thread must end, not block on a
        // full channel (a hang fails the test by its time limit).
        drop(prefetch);
    }

    /// Yields one batch, saying which thread asked for it.
    struct Spy(Option<RecordBatch>, std::sync::mpsc::Sender<Option<String>>);

    impl Operator for Spy {
        fn schema(&self) -> SchemaRef {
            batches(1)[0].schema()
        }

        fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
            let _ = self.1.send(std::thread::current().name().map(String::from));
            Ok(self.0.take())
        }
    }

    #[test]
    fn the_input_runs_on_the_prefetch_thread_only_with_two_threads() {
        for (threads, want) in [(2, Some("highwater-prefetch")), (1, None)] {
            let ctx = context(MemoryBudget::unlimited(), temp_dir(), threads, 64, 1024);
            let (names, asked) = std::sync::mpsc::channel();
            let spy = Box::new(Spy(Some(batches(1).remove(0)), names));
            let reader = std::thread::Builder::new().name("reader".into());
            let mut op = Prefetch::wrap(spy, &ctx);
            let read = reader.spawn(move || read_all(&mut op)).unwrap().join();
            assert_eq!(read.unwrap().unwrap().len(), 1);
            let asked: Vec<Option<String>> = asked.iter().collect();
            let want = want.unwrap_or("reader");
            assert!(
                asked.iter().all(|n| n.as_deref() == Some(want)),
                "{asked:?}"
            );
        }
    }
}
