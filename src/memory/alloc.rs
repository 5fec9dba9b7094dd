//! A global allocator that counts live heap bytes.
//!
//! Operators reserve what they mean to buffer, but estimates miss things:
//! decoder scratch space, writer page buffers, strings grown in place. This
//! allocator makes the budget's view of the heap exact at the cost of one
//! relaxed atomic add per allocation. The binary installs it; a library user
//! who does not gets a budget that works on reservations alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);
static HEAP_BYTES_PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// When the live heap passes this, the allocator raises [`heap_over_limit`].
/// It cannot refuse memory without aborting the process, so it only reports;
/// the pipeline stops at its next batch boundary.
static HEAP_BYTES_HARD_MAX: AtomicUsize = AtomicUsize::new(usize::MAX);
static OVER_LIMIT: AtomicBool = AtomicBool::new(false);

pub struct CountingAllocator;

/// Allocations at least this large ask the kernel for transparent huge
/// pages (see [`advise_huge_pages`]).
const HUGE_PAGE_ALLOC_MIN: usize = 4 << 20;
const HUGE_PAGE_BYTES: usize = 2 << 20;
/// Off until the budget knows the limit; see [`set_huge_pages`].
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// Ask for 2 MB pages over the 2 MB-aligned part of a large allocation.
///
/// Why: hash tables and sort buffers are read at random, and with 4 KB pages
/// nearly every probe of a table of a few MB is a TLB miss as well as a
/// cache miss; huge pages cut a group-by's time by about a third. Where the
/// kernel's THP mode is `madvise` (a common default) nothing else turns
/// them on. Only fully covered 2 MB stretches are advised, and a huge page
/// is backed only when first touched, so RSS grows by at most one partly
/// used 2 MB page an allocation.
fn advise_huge_pages(ptr: *mut u8, size: usize) {
    if size < HUGE_PAGE_ALLOC_MIN || !HUGE_PAGES.load(Ordering::Relaxed) {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE_BYTES);
    let end = (ptr as usize + size) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if start < end {
        // SAFETY: the range lies inside an allocation we own; MADV_HUGEPAGE
        // changes how it is backed, never its contents. A failure (THP
        // disabled) is harmless and ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters and the huge-page advice are on the side.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
            advise_huge_pages(ptr, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
            advise_huge_pages(ptr, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
                advise_huge_pages(new_ptr, new_size);
            } else {
                HEAP_BYTES.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new_ptr
    }
}

#[inline]
fn grew(bytes: usize) {
    let now = HEAP_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    if now > HEAP_BYTES_HARD_MAX.load(Ordering::Relaxed) {
        OVER_LIMIT.store(true, Ordering::Relaxed);
    }
    if now > HEAP_BYTES_PEAK.load(Ordering::Relaxed) {
        HEAP_BYTES_PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

/// Declare that the counting allocator is the global allocator. The binary
/// calls this first thing in `main`.
pub fn mark_installed() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// Live heap bytes, or `None` when the counting allocator is not installed.
pub fn heap_bytes() -> Option<usize> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| HEAP_BYTES.load(Ordering::Relaxed))
}

/// The most live heap bytes seen, or `None` when not installed.
pub fn heap_bytes_peak() -> Option<usize> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| HEAP_BYTES_PEAK.load(Ordering::Relaxed))
}

/// Turn the huge-page advice on or off. Why off under small limits: each
/// advised allocation may hold one partly used 2 MB page, and RSS also
/// gives huge pages back to the kernel less readily; at 32MB that keeps
/// RSS above the pressure line, every reservation is refused and spilling
/// operators make no progress.
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Ordering::Relaxed);
}

pub fn set_heap_bytes_hard_max(bytes: usize) {
    HEAP_BYTES_HARD_MAX.store(bytes, Ordering::Relaxed);
}

/// True once the live heap has passed the hard maximum.
pub fn heap_over_limit() -> bool {
    OVER_LIMIT.load(Ordering::Relaxed)
}
