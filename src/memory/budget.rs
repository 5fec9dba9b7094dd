//! The process-wide memory budget and its RAII reservations.
//!
//! # How the limit is split
//!
//! Of the `--memory-limit` L, the process's own footprint at start (binary,
//! libraries, runtime, but not resident code: the baseline B), and an
//! allowance U of 7.5 MB for what no counter sees later (code paged in, C
//! libraries' allocations),
//! are not ours to hand out. The monitor raises pressure at 80% of L, so
//! the room that can be used calmly is C = 0.8 L - B - U, and the room
//! before the limit is H = L - B - U. Then:
//!
//! - half of C is the *operator pool*: the most that reservations may total;
//! - a reservation may grow while the live heap is under 70% of C (the heap
//!   counts unreserved memory too: batches in flight, reader and writer
//!   buffers);
//! - except under large limits, where the pool is all of C but
//!   [`SLACK_BYTES`], and the heap may grow to C less half of that: what is
//!   not pooled is room for unreserved memory and allocator slack, and
//!   those do not grow with the limit. At 256MB the pool was 96 MB and peak
//!   RSS 100-140 MB, so half the limit sat unused while the bench's join
//!   spilled, needing 127 MB for its build; with 141 MB it does not spill
//!   (3.9 to 2.0 s) and peaks at 145 MB;
//! - past 88% of H as live heap, the allocator flags the run for abort;
//! - the rest is slack for allocator fragmentation and thread stacks, which
//!   RSS counts and the heap counter does not.
//!
//! Sizing the pool from C rather than H matters under small limits, where
//! B + U is a large share of L: a pool sized from H would reach the pressure
//! line before it was full, and pressure refuses every reservation.
//!
//! A reservation that cannot grow returns `ResourcesExhausted`; an operator
//! that can spill does so and retries, one that cannot passes the error up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::analyze;
use crate::config::format_bytes;
use crate::error::{Error, Result};
use crate::memory::{alloc, monitor};

/// Shares of the calm room C (pool, heap growth) and of the room H (abort),
/// in percent; see the module doc.
const POOL_PERCENT: u64 = 50;
const HEAP_GROW_PERCENT: u64 = 70;
const HEAP_ABORT_PERCENT: u64 = 88;
/// What large limits keep out of the pool; see the module doc.
const SLACK_BYTES: u64 = 48 << 20;

#[derive(Clone)]
pub struct MemoryBudget {
    shared: Arc<Shared>,
}

struct Shared {
    /// The process RSS ceiling (L), or `u64::MAX` when unlimited.
    limit_bytes: u64,
    /// The most that reservations may total.
    pool_bytes: usize,
    /// A reservation may not grow past this much live heap.
    heap_grow_bytes_max: usize,
    state: Mutex<State>,
    /// Raised by the monitor above 80% of the limit: refuse growth so that
    /// operators spill.
    pressure: AtomicBool,
    /// Why the run must stop, set by the monitor.
    abort: Mutex<Option<String>>,
    aborted: AtomicBool,
}

#[derive(Default)]
struct State {
    reserved_bytes: usize,
    reserved_bytes_peak: usize,
    next_id: u64,
    consumers: BTreeMap<u64, Consumer>,
}

struct Consumer {
    name: String,
    bytes: usize,
    /// The operator it was made for, when the run is analysed.
    node: Option<analyze::Node>,
}

impl MemoryBudget {
    /// A budget for a process whose RSS must stay under `limit_bytes`.
    /// `baseline_bytes` is the RSS the process has before it does any work.
    pub fn new(limit_bytes: u64, baseline_bytes: u64) -> Result<Self> {
        // Below this much headroom not even one batch fits; say so plainly
        // instead of failing later with a confusing error. 16MB is about the
        // smallest limit that starts (the baseline is 2.2 to 2.6 MB once the
        // start-up code is dropped, see `Session::new`), and there
        // `count(DISTINCT l_orderkey)` over SF1 lineitem completes at about
        // 13.2 MB peak RSS.
        const HEADROOM_BYTES_MIN: u64 = 5 << 20;
        // RSS that no counter sees grows after the baseline is measured:
        // code paged in by decoders, encoders and compressors (measured: 6
        // to 11 MB of the binary's code resident during a 16MB
        // `count(DISTINCT)`), and the C libraries' own allocations (ZSTD
        // contexts), which bypass the counting allocator. Under pressure the
        // monitor drops the resident code pages (`release_code_pages`), so
        // cold code does not pile up. It was 6 MB over a baseline that
        // counted the start-up code as well; with that code dropped first,
        // 6 MB let the pool grow by 1.3 MB at 32MB, where RSS is already
        // near the pressure line. 7.5 MB keeps it within 0.3 MB of where it
        // was. (The SF1 sort there cut 809 to 2585 runs from one run to the
        // next with either, so run counts did not decide it.)
        const UNCOUNTED_BYTES: u64 = (15 << 20) / 2;
        let headroom = limit_bytes.saturating_sub(baseline_bytes + UNCOUNTED_BYTES);
        if headroom < HEADROOM_BYTES_MIN {
            return Err(Error::ResourcesExhausted(format!(
                "memory limit {} is too small: the process needs {} to start, {} for code and \
                 libraries as it works, and at least {} to work in: {} in all",
                format_bytes(limit_bytes),
                format_bytes(baseline_bytes),
                format_bytes(UNCOUNTED_BYTES),
                format_bytes(HEADROOM_BYTES_MIN),
                format_bytes(baseline_bytes + UNCOUNTED_BYTES + HEADROOM_BYTES_MIN)
            )));
        }
        let calm = (limit_bytes / 100 * monitor::PRESSURE_PERCENT)
            .saturating_sub(baseline_bytes + UNCOUNTED_BYTES)
            .max(HEADROOM_BYTES_MIN / 2);
        let heap_start = alloc::heap_bytes().unwrap_or(0);
        let share = |room: u64, percent: u64| (room / 100 * percent) as usize;
        let but_slack = |slack: u64| calm.saturating_sub(slack) as usize;
        alloc::set_heap_bytes_hard_max(heap_start + share(headroom, HEAP_ABORT_PERCENT));
        alloc::set_huge_pages(limit_bytes >= super::LARGE_LIMIT_BYTES);
        Ok(Self::from_parts(
            limit_bytes,
            share(calm, POOL_PERCENT).max(but_slack(SLACK_BYTES)),
            heap_start + share(calm, HEAP_GROW_PERCENT).max(but_slack(SLACK_BYTES / 2)),
        ))
    }

    /// A budget with no limit at all.
    pub fn unlimited() -> Self {
        Self::from_parts(u64::MAX, usize::MAX, usize::MAX)
    }

    /// A budget whose operator pool is exactly `pool_bytes`, with no process
    /// limit: for tests that force operators to spill.
    pub fn with_pool_bytes(pool_bytes: usize) -> Self {
        Self::from_parts(u64::MAX, pool_bytes, usize::MAX)
    }

    fn from_parts(limit_bytes: u64, pool_bytes: usize, heap_grow_bytes_max: usize) -> Self {
        MemoryBudget {
            shared: Arc::new(Shared {
                limit_bytes,
                pool_bytes,
                heap_grow_bytes_max,
                state: Mutex::new(State::default()),
                pressure: AtomicBool::new(false),
                abort: Mutex::new(None),
                aborted: AtomicBool::new(false),
            }),
        }
    }

    /// A new, empty reservation for a consumer; `name` appears in errors and
    /// reports.
    pub fn reservation(&self, name: impl Into<String>) -> Reservation {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.consumers.insert(
            id,
            Consumer {
                name: name.into(),
                bytes: 0,
                node: analyze::current(),
            },
        );
        Reservation {
            budget: self.clone(),
            id,
            bytes: 0,
        }
    }

    pub fn limit_bytes(&self) -> u64 {
        self.shared.limit_bytes
    }

    pub fn pool_bytes(&self) -> usize {
        self.shared.pool_bytes
    }

    pub fn reserved_bytes(&self) -> usize {
        self.state().reserved_bytes
    }

    pub fn reserved_bytes_peak(&self) -> usize {
        self.state().reserved_bytes_peak
    }

    /// Bytes that a reservation could still grow by, ignoring pressure.
    pub fn available_bytes(&self) -> usize {
        let state = self.state();
        let by_pool = self.shared.pool_bytes.saturating_sub(state.reserved_bytes);
        match alloc::heap_bytes() {
            Some(heap) => by_pool.min(self.shared.heap_grow_bytes_max.saturating_sub(heap)),
            None => by_pool,
        }
    }

    pub fn set_pressure(&self, on: bool) {
        self.shared.pressure.store(on, Ordering::Relaxed);
    }

    pub fn under_pressure(&self) -> bool {
        self.shared.pressure.load(Ordering::Relaxed)
    }

    /// Stop the run at its next check, with this reason.
    pub fn abort(&self, reason: String) {
        let mut abort = self.shared.abort.lock().unwrap_or_else(|p| p.into_inner());
        if abort.is_none() {
            *abort = Some(reason);
        }
        self.shared.aborted.store(true, Ordering::Release);
    }

    /// Err if the run must stop for memory. Operators call this once a batch.
    pub fn check(&self) -> Result<()> {
        if alloc::heap_over_limit() && !self.shared.aborted.load(Ordering::Acquire) {
            self.abort(format!(
                "the live heap passed the abort line for the memory limit of {}; {}",
                format_bytes(self.shared.limit_bytes),
                self.describe_consumers()
            ));
        }
        if self.shared.aborted.load(Ordering::Acquire) {
            let abort = self.shared.abort.lock().unwrap_or_else(|p| p.into_inner());
            return Err(Error::ResourcesExhausted(
                abort.clone().unwrap_or_else(|| "memory limit".into()),
            ));
        }
        Ok(())
    }

    /// "largest consumers: sort 12.0 MB, parquet writer 4.0 MB; unreserved
    /// heap 3.1 MB": what an abort message needs to be actionable.
    pub fn describe_consumers(&self) -> String {
        let state = self.state();
        let mut consumers: Vec<&Consumer> =
            state.consumers.values().filter(|c| c.bytes > 0).collect();
        consumers.sort_by_key(|c| std::cmp::Reverse(c.bytes));
        let mut text = String::from("largest consumers: ");
        if consumers.is_empty() {
            text.push_str("none reserved");
        }
        for (i, c) in consumers.iter().take(3).enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(&format!("{} {}", c.name, format_bytes(c.bytes as u64)));
        }
        if let Some(heap) = alloc::heap_bytes() {
            let unreserved = heap.saturating_sub(state.reserved_bytes);
            text.push_str(&format!(
                "; unreserved heap {}",
                format_bytes(unreserved as u64)
            ));
        }
        text
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters torn (each
        // update is a few assignments), so a poisoned lock is still usable.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_grow(&self, id: u64, bytes: usize) -> Result<()> {
        let mut state = self.state();
        let pool = self.shared.pool_bytes;
        let refused = if self.under_pressure() {
            Some("memory pressure: the process is above 80% of its limit".to_string())
        } else if state.reserved_bytes.saturating_add(bytes) > pool {
            Some(format!(
                "{} of {} operator memory is already reserved",
                format_bytes(state.reserved_bytes as u64),
                format_bytes(pool as u64)
            ))
        } else {
            match alloc::heap_bytes() {
                Some(heap) if heap.saturating_add(bytes) > self.shared.heap_grow_bytes_max => {
                    Some(format!(
                        "the live heap is {} of the {} allowed",
                        format_bytes(heap as u64),
                        format_bytes(self.shared.heap_grow_bytes_max as u64)
                    ))
                }
                _ => None,
            }
        };
        if let Some(why) = refused {
            let name = &state.consumers[&id].name;
            return Err(Error::ResourcesExhausted(format!(
                "cannot reserve {} for {name}: {why}",
                format_bytes(bytes as u64)
            )));
        }
        state.reserved_bytes += bytes;
        state.reserved_bytes_peak = state.reserved_bytes_peak.max(state.reserved_bytes);
        if let Some(c) = state.consumers.get_mut(&id) {
            c.bytes += bytes;
            if let Some(node) = &c.node {
                node.reserved(bytes, 0);
            }
        }
        Ok(())
    }

    fn shrink(&self, id: u64, bytes: usize) {
        let mut state = self.state();
        debug_assert!(state.reserved_bytes >= bytes);
        state.reserved_bytes -= bytes;
        if let Some(c) = state.consumers.get_mut(&id) {
            c.bytes -= bytes;
            if let Some(node) = &c.node {
                node.reserved(0, bytes);
            }
        }
    }
}

/// Bytes a consumer holds from the budget. Dropping it gives them back.
pub struct Reservation {
    budget: MemoryBudget,
    id: u64,
    bytes: usize,
}

impl Reservation {
    pub fn size(&self) -> usize {
        self.bytes
    }

    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Grow by `bytes`, or return `ResourcesExhausted` and stay as it is.
    pub fn try_grow(&mut self, bytes: usize) -> Result<()> {
        self.budget.try_grow(self.id, bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Grow or shrink to exactly `bytes`.
    pub fn try_resize(&mut self, bytes: usize) -> Result<()> {
        if bytes > self.bytes {
            self.try_grow(bytes - self.bytes)
        } else {
            self.shrink(self.bytes - bytes);
            Ok(())
        }
    }

    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.budget.shrink(self.id, bytes);
        self.bytes -= bytes;
    }

    /// Give everything back; returns how much that was.
    pub fn free(&mut self) -> usize {
        let bytes = self.bytes;
        self.shrink(bytes);
        bytes
    }

    /// Move `bytes` of this reservation into a new one under another name, so
    /// that memory set aside early (say, for a final merge) can be handed to
    /// whoever will use it without going back to the budget.
    pub fn split(&mut self, bytes: usize, name: impl Into<String>) -> Reservation {
        let bytes = bytes.min(self.bytes);
        self.shrink(bytes);
        let mut other = self.budget.reservation(name);
        // The bytes were just released; taking them again is bookkeeping
        // that must not be refused by pressure.
        other.record(bytes);
        other
    }

    /// Count `bytes` that are already in use and cannot be given back, such
    /// as metadata a file writer must hold until its footer. Never refused,
    /// even past the pool: the count is a fact, not a request, and keeping
    /// it makes the operators that ask next spill sooner instead of the
    /// process outgrowing its limit unseen.
    pub fn record(&mut self, bytes: usize) {
        let mut state = self.budget.state();
        state.reserved_bytes += bytes;
        state.reserved_bytes_peak = state.reserved_bytes_peak.max(state.reserved_bytes);
        if let Some(c) = state.consumers.get_mut(&self.id) {
            c.bytes += bytes;
            if let Some(node) = &c.node {
                node.reserved(bytes, 0);
            }
        }
        drop(state);
        self.bytes += bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.shrink(self.id, self.bytes);
        }
        self.budget.state().consumers.remove(&self.id);
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({} bytes)", self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_by_the_pool() {
        let budget = MemoryBudget::with_pool_bytes(1000);
        let mut a = budget.reservation("a");
        let mut b = budget.reservation("b");
        a.try_grow(600).unwrap();
        let err = b.try_grow(500).unwrap_err();
        assert!(matches!(err, Error::ResourcesExhausted(_)));
        assert!(err.to_string().contains("for b"), "{err}");
        assert_eq!(
            b.size(),
            0,
            "a refused grow leaves the reservation as it was"
        );
        b.try_grow(400).unwrap();
        assert_eq!(budget.reserved_bytes(), 1000);
    }

    #[test]
    fn dropping_a_reservation_returns_its_bytes() {
        let budget = MemoryBudget::with_pool_bytes(1000);
        {
            let mut a = budget.reservation("a");
            a.try_grow(1000).unwrap();
        }
        assert_eq!(budget.reserved_bytes(), 0);
        assert_eq!(budget.reserved_bytes_peak(), 1000);
        budget.reservation("b").try_grow(1000).unwrap();
    }

    #[test]
    fn resize_shrink_and_split_keep_the_books_straight() {
        let budget = MemoryBudget::with_pool_bytes(1000);
        let mut a = budget.reservation("a");
        a.try_resize(800).unwrap();
        a.try_resize(300).unwrap();
        assert_eq!(budget.reserved_bytes(), 300);
        let merge = a.split(200, "merge");
        assert_eq!((a.size(), merge.size()), (100, 200));
        assert_eq!(budget.reserved_bytes(), 300);
        drop(merge);
        assert_eq!(a.free(), 100);
        assert_eq!(budget.reserved_bytes(), 0);
    }

    #[test]
    fn recorded_bytes_count_past_the_pool_and_under_pressure() {
        let budget = MemoryBudget::with_pool_bytes(1000);
        let mut a = budget.reservation("a");
        a.try_grow(900).unwrap();
        let mut footer = budget.reservation("footer");
        budget.set_pressure(true);
        footer.record(300);
        budget.set_pressure(false);
        assert_eq!(footer.size(), 300);
        assert_eq!(budget.reserved_bytes(), 1200);
        assert!(a.try_grow(1).is_err(), "the pool is spent");
        drop(footer);
        assert_eq!(budget.reserved_bytes(), 900);
        a.try_grow(100).unwrap();
    }

    #[test]
    fn pressure_refuses_growth_until_it_lifts() {
        let budget = MemoryBudget::with_pool_bytes(1000);
        let mut a = budget.reservation("a");
        budget.set_pressure(true);
        assert!(a.try_grow(1).is_err());
        budget.set_pressure(false);
        a.try_grow(1).unwrap();
    }

    #[test]
    fn abort_names_the_largest_consumers() {
        let budget = MemoryBudget::with_pool_bytes(10_000_000);
        let mut sort = budget.reservation("sort");
        sort.try_grow(5_000_000).unwrap();
        let mut writer = budget.reservation("parquet writer");
        writer.try_grow(1_000_000).unwrap();
        budget.check().unwrap();
        budget.abort(format!("limit crossed; {}", budget.describe_consumers()));
        let err = budget.check().unwrap_err().to_string();
        assert!(err.contains("sort 5.0 MB, parquet writer 1.0 MB"), "{err}");
    }

    #[test]
    fn a_limit_below_the_baseline_is_refused_clearly() {
        let err = MemoryBudget::new(10 << 20, 9 << 20).err().unwrap();
        assert!(err.to_string().contains("too small"), "{err}");
    }
}
