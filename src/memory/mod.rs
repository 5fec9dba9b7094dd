//! Memory governance: the heart of highwater.
//!
//! Three pieces keep the process under `--memory-limit`:
//!
//! - [`alloc::CountingAllocator`], the global allocator of the binary, counts
//!   live heap bytes exactly, so the budget knows the real heap and not only
//!   what operators estimate.
//! - [`MemoryBudget`] hands out RAII [`Reservation`]s. Whatever buffers rows
//!   reserves first; a refusal is the signal to spill.
//! - [`monitor::Monitor`] samples the process's RSS. Above 80% of the limit it
//!   raises pressure (growth is refused, so spilling operators spill, and the
//!   allocator is asked to give free pages back); if RSS still climbs to the
//!   abort line the run stops with an error naming the largest consumers,
//!   before the kernel's OOM killer would.

pub mod alloc;
pub mod budget;
pub mod monitor;

pub use budget::{MemoryBudget, Reservation};

/// The resident set size of this process now, in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_bytes())
}

/// The peak resident set size of this process so far, in bytes, as the
/// kernel counts it.
///
/// Read from `VmHWM`, not `getrusage`: after `vfork` + `exec` the kernel
/// carries the parent's high-water mark into the child's `ru_maxrss`, so a
/// small job started by a large parent would report the parent's peak.
/// `VmHWM` belongs to this address space alone, which begins at `exec`.
pub fn rss_bytes_peak() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Make glibc's allocator return memory to the kernel promptly, so that RSS
/// tracks the live heap. Called once, before any thread starts.
///
/// glibc raises its mmap threshold each time a large block is freed, after
/// which freed large blocks stay in the heap and RSS drifts far above the live
/// heap; a fixed threshold stops that. One arena per core bounds how many
/// half-empty heaps threads can leave behind.
pub fn tune_allocator(threads: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is called before
    // other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, threads.clamp(1, 8) as i32);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threads;
}

/// Ask the allocator to return free pages to the kernel.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
