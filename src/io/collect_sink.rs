//! A sink that keeps a query's batches in memory, for callers that want the
//! rows themselves (the sqllogictest runner, library users).
//!
//! # Memory
//!
//! Every batch kept is reserved first; a result that outgrows the budget
//! fails with `ResourcesExhausted` rather than growing past the limit.
//! Results meant to be large go to a file sink instead.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;

use crate::error::Result;
use crate::io::Sink;
use crate::memory::Reservation;

/// Where the collected batches end up; shared with the caller, because a
/// sink is consumed by the pipeline that drives it.
pub type Collected = Arc<Mutex<Vec<RecordBatch>>>;

pub struct CollectSink {
    batches: Collected,
    reservation: Reservation,
}

impl CollectSink {
    pub fn new(batches: Collected, reservation: Reservation) -> Self {
        CollectSink {
            batches,
            reservation,
        }
    }
}

impl Sink for CollectSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.reservation.try_grow(batch.get_array_memory_size())?;
        // A poisoned lock means a caller thread panicked; the batches are
        // still whole, so keep going.
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        batches.push(batch.clone());
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        // The reservation goes with the sink; the caller now owns the rows.
        Ok(())
    }
}
