//! [`WipeOnFree`]: the global allocator that zeroes freed blocks once turned on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

static WIPE: AtomicBool = AtomicBool::new(false);

/// Turns wiping of freed heap memory on (see [`WipeOnFree`]).
pub fn set_wipe_on_free(on: bool) {
    WIPE.store(on, Ordering::Relaxed);
}

/// The system allocator, but once [`set_wipe_on_free`] is on, every block is
/// zeroed before it is freed (and a moving `realloc` wipes the old block), so
/// transient copies of a value in response buffers do not linger in memory
/// that may be swapped.
pub struct WipeOnFree;

fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: `ptr` is a live block of at least `len` bytes about to be freed.
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    // The block is freed next; keep the compiler from dropping the stores.
    std::hint::black_box(ptr);
}

// SAFETY: every method forwards to the system allocator; wiping only writes
// within the block being freed.
unsafe impl GlobalAlloc for WipeOnFree {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WIPE.load(Ordering::Relaxed) {
            wipe(ptr, layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !WIPE.load(Ordering::Relaxed) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees new_size is valid for layout.align().
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block; on success the old one is copied, wiped and freed.
        let new = unsafe { System.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct; copy the smaller size.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            wipe(ptr, layout.size());
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) };
        }
        new
    }
}
