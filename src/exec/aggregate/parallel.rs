//! GROUP BY on several threads: rows dealt out by a hash of their group
//! key to one [`Aggregate`] per thread.
//!
//! A group's rows all go to one worker, so the workers' groups never
//! overlap: the output is each worker's output in turn, with nothing to
//! merge, and each worker spills and merges its partitions exactly as a
//! lone aggregate would. The hash is seeded apart from the group tables'
//! own, so that a worker's keys still spread over all of its table.
//!
//! The thread that calls [`next_batch`](Operator::next_batch) reads the
//! input, encodes each batch's keys to hash them, and hands each worker the
//! rows that are its own; the workers aggregate meanwhile, and after the
//! input ends their results are read one worker after another.
//!
//! # Memory
//!
//! - Each worker is an [`Aggregate`] with its own reservations from the
//!   shared budget; what one holds, the others cannot.
//! - Batches in flight: at most [`QUEUE_BATCHES_MAX`] waiting for each
//!   worker on the way in, and as many results on the way out, each of at
//!   most `--batch-rows` rows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::RowConverter;

use crate::analyze;
use crate::error::{Error, Result};
use crate::exec::aggregate::{group_keys, key_fields, Aggregate};
use crate::exec::{BoxedOperator, Operator, RunContext};
use crate::plan::aggregate::AggregateExpr;
use crate::plan::Expr;

/// The smallest operator pool a parallel aggregate is planned for; see
/// the planner (`plan/physical.rs`).
pub const POOL_BYTES_MIN: usize = 48 << 20;

/// Batches queued for one worker, or from it.
pub const QUEUE_BATCHES_MAX: usize = 2;

/// A seed for the dealing hash unlike any group table's (those use small
/// seeds: the partition level).
const DEAL_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

pub struct ParallelAggregate {
    ctx: Arc<RunContext>,
    input: Option<BoxedOperator>,
    group: Vec<Expr>,
    converter: RowConverter,
    hasher: ahash::RandomState,
    schema: SchemaRef,
    /// The workers before the input is read; taken when they start.
    idle: Vec<(Aggregate, SyncSender<Batch>)>,
    /// Started workers, in output order.
    running: Vec<Worker>,
    /// Set when this operator stops early: workers still reading input
    /// then stop with an error instead of finishing their aggregation.
    cancelled: Arc<AtomicBool>,
}

type Batch = Result<RecordBatch>;

struct Worker {
    results: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl ParallelAggregate {
    /// An aggregate over `input` on `workers` threads (at least 2).
    pub fn new(
        ctx: Arc<RunContext>,
        input: BoxedOperator,
        group: Vec<Expr>,
        aggregates: Vec<AggregateExpr>,
        schema: SchemaRef,
        workers: usize,
    ) -> Result<ParallelAggregate> {
        let in_schema = input.schema();
        let fields = key_fields(&group, &in_schema)?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut idle = Vec::with_capacity(workers);
        for _ in 0..workers.max(2) {
            let (sender, receiver) = sync_channel(QUEUE_BATCHES_MAX);
            let queue = Box::new(Queue {
                schema: in_schema.clone(),
                receiver,
                cancelled: cancelled.clone(),
            });
            let worker = Aggregate::new(
                ctx.clone(),
                queue,
                group.clone(),
                aggregates.clone(),
                schema.clone(),
            )?;
            idle.push((worker, sender));
        }
        Ok(ParallelAggregate {
            ctx,
            input: Some(input),
            group,
            converter: RowConverter::new(fields)?,
            hasher: ahash::RandomState::with_seeds(DEAL_SEED, !DEAL_SEED, DEAL_SEED << 1, 7),
            schema,
            idle,
            running: Vec::new(),
            cancelled,
        })
    }

    /// Start the workers and deal them the whole input.
    fn deal(&mut self, input: BoxedOperator) -> Result<()> {
        let node = analyze::current();
        let mut senders = Vec::with_capacity(self.idle.len());
        for (mut aggregate, sender) in self.idle.drain(..) {
            let (results, outbox) = sync_channel(QUEUE_BATCHES_MAX);
            let node = node.clone();
            let handle = std::thread::Builder::new()
                .name("highwater-aggregate".into())
                .spawn(move || {
                    analyze::enter(node);
                    loop {
                        let next = aggregate.next_batch().transpose();
                        let Some(next) = next else { return };
                        let failed = next.is_err();
                        if results.send(next).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(|e| {
                    Error::ResourcesExhausted(format!("cannot start an aggregate thread: {e}"))
                })?;
            self.running.push(Worker {
                results: outbox,
                handle: Some(handle),
            });
            senders.push(sender);
        }
        let result = self.deal_input(input, &senders);
        if result.is_err() {
            // Before the queues close, so that no worker takes the end of
            // its queue for the end of the input.
            self.cancelled.store(true, Ordering::Relaxed);
        }
        result
    }

    fn deal_input(
        &mut self,
        mut input: BoxedOperator,
        senders: &[SyncSender<Batch>],
    ) -> Result<()> {
        let workers = senders.len() as u64;
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); senders.len()];
        while let Some(batch) = input.next_batch()? {
            self.ctx.check()?;
            let keys = group_keys(&self.group, &batch)?;
            let encoded = self.converter.convert_columns(&keys)?;
            for rows in rows_of.iter_mut() {
                rows.clear();
            }
            for (i, key) in encoded.iter().enumerate() {
                // The high bits: the low ones pick the bucket in a table.
                let w = ((self.hasher.hash_one(key.as_ref()) >> 32) % workers) as usize;
                rows_of[w].push(i as u32);
            }
            for (w, (rows, sender)) in rows_of.iter_mut().zip(senders).enumerate() {
                if rows.is_empty() {
                    continue;
                }
                let part = if rows.len() == batch.num_rows() {
                    batch.clone()
                } else {
                    let indices = UInt32Array::from(std::mem::take(rows));
                    take_record_batch(&batch, &indices)?
                };
                if sender.send(Ok(part)).is_err() {
                    // The worker stopped, and said why first.
                    return Err(match self.running[w].results.recv() {
                        Ok(Err(e)) => e,
                        _ => Error::Internal("an aggregate thread stopped".into()),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Operator for ParallelAggregate {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(input) = self.input.take() {
            if let Err(e) = self.deal(input) {
                self.cancelled.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        while let Some(worker) = self.running.first_mut() {
            match worker.results.recv() {
                Ok(Ok(batch)) => return Ok(Some(batch)),
                Ok(Err(e)) => {
                    self.cancelled.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                // The worker is done.
                Err(_) => {
                    let mut done = self.running.remove(0);
                    if let Some(handle) = done.handle.take() {
                        handle
                            .join()
                            .map_err(|_| Error::Internal("an aggregate thread panicked".into()))?;
                    }
                }
            }
        }
        Ok(None)
    }
}

impl Drop for ParallelAggregate {
    /// Stop the workers (their input ends with an error, their output is
    /// closed) and wait for them, so that none outlives the run's spill
    /// directory.
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.idle.clear();
        for mut worker in self.running.drain(..) {
            drop(worker.results);
            if let Some(handle) = worker.handle.take() {
                let _ = handle.join();
            }
        }
    }
}

/// A worker's input: the rows dealt to it.
struct Queue {
    schema: SchemaRef,
    receiver: Receiver<Batch>,
    cancelled: Arc<AtomicBool>,
}

impl Operator for Queue {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self.receiver.recv() {
            Ok(batch) => batch.map(Some),
            // The dealer is gone: the input ended, or the run failed.
            Err(_) if self.cancelled.load(Ordering::Relaxed) => {
                Err(Error::Internal("the aggregate was stopped".into()))
            }
            Err(_) => Ok(None),
        }
    }
}
