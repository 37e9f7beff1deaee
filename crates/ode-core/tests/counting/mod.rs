//! A counting global allocator for the allocation tests, one set of counters per thread.
//!
//! Per thread, because the test harness's own threads allocate at moments no test controls (the
//! main thread registers itself on the result channel when it first waits, which on a loaded
//! machine can fall inside a measurement). Only the thread that runs the measured code counts.
//! The solver under test starts no threads of its own, so nothing it does escapes the count.
#![allow(dead_code, reason = "shared by several test binaries; each uses a part")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Forwards to the system allocator and counts this thread's calls and live bytes.
pub struct Counting;

fn grow(bytes: isize) {
    ALLOCS.set(ALLOCS.get() + 1);
    let now = LIVE.get() + bytes;
    LIVE.set(now);
    PEAK.set(PEAK.get().max(now));
}

fn shrink(bytes: isize) {
    LIVE.set(LIVE.get() - bytes);
}

#[allow(unsafe_code)]
// SAFETY: forwards every call to the system allocator unchanged; the counters are plain
// thread-local cells with constant initialisers, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grow(l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        shrink(l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        shrink(l.size() as isize);
        grow(new_size as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new_size) }
    }
}

/// Allocation calls (alloc and realloc) made so far by the calling thread.
pub fn allocations() -> usize {
    ALLOCS.get()
}

/// Starts a peak measurement on the calling thread and returns its live heap bytes now (the base).
pub fn reset_peak() -> isize {
    let base = LIVE.get();
    PEAK.set(base);
    base
}

/// The most bytes by which this thread's live heap rose above `base` since the last `reset_peak`.
pub fn peak_above(base: isize) -> usize {
    (PEAK.get() - base).max(0) as usize
}
