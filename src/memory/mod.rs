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
//!   allocator is asked to give free pages back, and cold code pages are
//!   dropped); if RSS still climbs to the
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
/// heap; a fixed threshold stops that. Under small limits, one arena per
/// core bounds how many half-empty heaps threads can leave behind, and a
/// heap gives back any free MB at its top.
///
/// Under a large limit, four arenas a core (at most 8) and 16 MB kept at a
/// heap's top, at most a 16th of the limit. A pipeline runs more threads
/// than cores (the operators', the sink's, the column encoders', a
/// prefetch), and one batch's buffers are freed on another thread than
/// the one that made them; with two arenas for five threads, threads slept
/// on arena locks inside malloc and free (1,193 times in the bench's join,
/// 349 with 8). And a heap that gave back everything over 1 MB at its top
/// faulted it in again for the next row group: 67k page faults against
/// 45k. The join (SF1, 256MB, 2 threads, medians of 7, interleaved) went
/// from 3.09 s to 2.84 s with the 16 MB, and from 3.41 s to 3.09 s with
/// the arenas and the early writeback of `io::atomic_file`; its peak RSS
/// from 174 to 185 MB. What heaps keep is returned under pressure
/// ([`release_free_memory`]).
///
/// The threshold is 128 KB under small limits. Under a large one it is a
/// 64th of the limit, up to 4 MB: below it a batch's buffers come from the
/// heap instead of a fresh mapping each time, which spares a page fault per
/// page and an munmap per buffer (measured: TPC-H Q1 at SF1, 256MB, 1.31 s
/// at 128 KB, 0.82 s at 8 MB; a copy of lineitem 3.4 s against 3.0 s), for a
/// few MB more of RSS.
pub fn tune_allocator(threads: usize, memory_bytes_max: u64) {
    let large = memory_bytes_max >= LARGE_LIMIT_BYTES;
    let (mmap_threshold, arenas, trim_threshold) = if large {
        (
            (memory_bytes_max / 64).clamp(128 << 10, 4 << 20),
            (threads * 4).clamp(1, 8),
            (memory_bytes_max / 16).clamp(1 << 20, 16 << 20),
        )
    } else {
        (128 << 10, threads.clamp(1, 8), 1 << 20)
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is called before
    // other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas as i32);
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold as i32);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold as i32);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (mmap_threshold, arenas, trim_threshold);
}

/// From this limit up, memory is spent for speed where it is cheap: larger
/// allocations come from the heap (see [`tune_allocator`]) and ask for huge
/// pages. Below it, their granularity costs RSS a small limit cannot spare.
pub const LARGE_LIMIT_BYTES: u64 = 200_000_000;

/// Ask the allocator to return free pages to the kernel, and drop the
/// resident pages of code (see [`release_code_pages`]).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    release_code_pages();
}

/// Bytes of this process's executable code resident now: the mappings
/// [`release_code_pages`] drops, by `/proc/self/smaps`.
pub fn resident_code_bytes() -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut code = false;
    let mut bytes = 0;
    for line in smaps.lines() {
        match line.split_whitespace().next() {
            // A field of the mapping last named ("Rss:    48 kB").
            Some(key) if key.ends_with(':') => {
                if code && key == "Rss:" {
                    let kib = line[4..].trim().trim_end_matches("kB").trim();
                    bytes += kib.parse::<u64>().unwrap_or(0) * 1024;
                }
            }
            // A mapping, named as in /proc/self/maps.
            _ => code = code_range(line).is_some(),
        }
    }
    bytes
}

/// The address range of a mapping, from its line in `/proc/self/maps`, if
/// it is executable code of a file (`r-xp`, with a path).
fn code_range(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let (range, perms) = (fields.next()?, fields.next()?);
    // Offset, device, inode, then the path of a file mapping.
    let path = fields.nth(3)?;
    if perms != "r-xp" || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some((start, end))
}

/// Unmap the resident pages of this process's executable code (the binary's
/// and the C libraries' `r-xp` file mappings), returning how many bytes of
/// mappings were advised.
///
/// Why: RSS counts code that was paged in once and is cold now (argument
/// parsing, SQL planning, decoders of other types): 16 MB or more of a
/// 32MB limit in a spilling join, against 13 MB of everything else. The
/// pages stay in the page cache, so what is still hot faults back in at
/// the cost of a minor fault per page. Only mappings that are executable
/// and not writable are touched: their pages are never written (no text
/// relocations in our binary), so dropping them loses nothing. Read-only
/// data is left alone, since RELRO pages were written by the loader.
pub fn release_code_pages() -> usize {
    #[cfg(target_os = "linux")]
    {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return 0;
        };
        let mut advised = 0;
        for (start, end) in maps.lines().filter_map(code_range) {
            // SAFETY: the range is a whole private, read-only, executable
            // file mapping of this process, as the kernel lists it. Its pages
            // are never written, so MADV_DONTNEED only unmaps them; the next
            // access maps them again from the file. A failure (a locked
            // mapping) leaves the pages as they were.
            let ok = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            } == 0;
            if ok {
                advised += end - start;
            }
        }
        advised
    }
    #[cfg(not(target_os = "linux"))]
    0
}
