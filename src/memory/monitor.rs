//! A thread that watches the process's real RSS.
//!
//! Reservations cover what operators buffer; RSS also holds what nobody
//! reserved (allocator slack, decoder scratch, page cache of mapped files).
//! The monitor is the backstop for all of it:
//!
//! - above [`PRESSURE_PERCENT`] of the limit it raises pressure on the budget
//!   (reservations stop growing, so spilling operators spill), asks the
//!   allocator to return free pages, and drops resident code pages, which
//!   fault back in from the page cache where still hot;
//! - above [`RELEASE_PERCENT`] it does both more often, and samples more
//!   often whenever pressure is raised;
//! - at [`ABORT_PERCENT`] it first returns free pages and drops code pages
//!   as above, and if RSS is still there it aborts the run with an error
//!   naming the largest consumers. The pipeline stops at its next batch
//!   boundary, which is well before the kernel's OOM killer would act at
//!   100%.
//!
//! It samples every [`SAMPLE_INTERVAL`]; reading `/proc/self/statm` costs a few
//! microseconds, so that is cheap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::format_bytes;
use crate::memory::{release_free_memory, rss_bytes, MemoryBudget};

pub const PRESSURE_PERCENT: u64 = 80;
pub const ABORT_PERCENT: u64 = 95;
/// Above this share of the limit, free pages and code go back to the
/// kernel every [`RELEASE_INTERVAL`], not every [`TRIM_INTERVAL`].
pub const RELEASE_PERCENT: u64 = 90;
const RELEASE_INTERVAL: Duration = Duration::from_millis(10);
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(5);
/// Above the pressure line RSS is sampled more often, so that the release
/// at the abort line comes before RSS has climbed far past it.
pub const PRESSED_SAMPLE_INTERVAL: Duration = Duration::from_millis(1);
/// malloc_trim walks the heap; once in this interval is plenty.
const TRIM_INTERVAL: Duration = Duration::from_millis(100);

/// The running monitor; dropping it stops the thread.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    rss_bytes_peak: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Monitor {
    pub fn start(budget: MemoryBudget) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let rss_bytes_peak = Arc::new(AtomicU64::new(0));
        let limit = budget.limit_bytes();
        let handle = (limit != u64::MAX).then(|| {
            let stop = stop.clone();
            let peak = rss_bytes_peak.clone();
            std::thread::Builder::new()
                .name("highwater-monitor".into())
                // The monitor's own stack counts against the limit too.
                .stack_size(64 * 1024)
                .spawn(move || watch(budget, limit, &stop, &peak))
                .expect("spawning the memory monitor thread")
        });
        Monitor {
            stop,
            rss_bytes_peak,
            handle,
        }
    }

    /// Between statements: return free pages to the kernel and judge
    /// pressure again now, rather than at the next sample. Without this a
    /// statement's operators are created while the pressure raised by the
    /// statement before still stands, and their floors are refused.
    pub fn settle(budget: &MemoryBudget) {
        let limit = budget.limit_bytes();
        if limit == u64::MAX {
            return;
        }
        release_free_memory();
        if let Some(rss) = rss_bytes() {
            budget.set_pressure(rss >= limit / 100 * PRESSURE_PERCENT);
        }
    }

    /// The highest RSS the monitor sampled.
    pub fn rss_bytes_peak(&self) -> u64 {
        self.rss_bytes_peak.load(Ordering::Relaxed)
    }
}

fn watch(budget: MemoryBudget, limit: u64, stop: &AtomicBool, peak: &AtomicU64) {
    let pressure_line = limit / 100 * PRESSURE_PERCENT;
    let abort_line = limit / 100 * ABORT_PERCENT;
    let release_line = limit / 100 * RELEASE_PERCENT;
    let mut last_trim = Instant::now() - TRIM_INTERVAL;
    while !stop.load(Ordering::Relaxed) {
        if let Some(mut rss) = rss_bytes() {
            peak.fetch_max(rss, Ordering::Relaxed);
            let near = rss >= release_line && last_trim.elapsed() >= RELEASE_INTERVAL;
            if rss >= abort_line || near {
                // Free heap pages and resident code go back to the kernel at
                // once: only what is left after that decides. RSS can climb
                // from under the pressure line past this one between two
                // samples, before any trim: the 32MB join test over SF0.1
                // lineitem stopped at 30.5 MB in 2 of 4 runs, and completed
                // in 6 of 6 with this. Between the release line and this
                // one the release comes sooner than the pressure line's:
                // that test's peak RSS was over its limit in 4 of 12 runs
                // when code paged back in for 100 ms between releases.
                release_free_memory();
                last_trim = Instant::now();
                rss = rss_bytes().unwrap_or(rss);
            }
            if rss >= abort_line {
                budget.abort(format!(
                    "memory limit {} would be crossed: RSS reached {}; {}",
                    format_bytes(limit),
                    format_bytes(rss),
                    budget.describe_consumers()
                ));
            }
            let pressed = rss >= pressure_line;
            budget.set_pressure(pressed);
            if pressed && last_trim.elapsed() >= TRIM_INTERVAL {
                release_free_memory();
                last_trim = Instant::now();
            }
        }
        std::thread::sleep(if budget.under_pressure() {
            PRESSED_SAMPLE_INTERVAL
        } else {
            SAMPLE_INTERVAL
        });
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
