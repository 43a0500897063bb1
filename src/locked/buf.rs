//! [`LockedBuf`]: a secret value's bytes, in the locked region when there is one, wiped when dropped.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use zeroize::{Zeroize, Zeroizing};

use super::region::{OVERFLOWS, REGION};

/// Bytes that hold a secret value: in the locked region when there is one,
/// otherwise on the heap (under `mlockall`, or with locking turned off).
/// Wiped when dropped.
pub struct LockedBuf(Storage);

enum Storage {
    Region { ptr: NonNull<u8>, len: usize },
    Heap(Zeroizing<Vec<u8>>),
}

// SAFETY: a region block is owned by exactly one LockedBuf and only read
// through `&self`; the region itself lives for the whole process.
unsafe impl Send for LockedBuf {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for LockedBuf {}

impl LockedBuf {
    /// Copies `bytes` into locked memory.
    pub fn copy_from(bytes: &[u8]) -> LockedBuf {
        if bytes.is_empty() {
            return LockedBuf(Storage::Heap(Zeroizing::new(Vec::new())));
        }
        let Some(region) = REGION.get() else {
            return LockedBuf(Storage::Heap(Zeroizing::new(bytes.to_vec())));
        };
        let block = Layout::from_size_align(bytes.len(), 1)
            .ok()
            .and_then(|layout| region.heap.lock().ok()?.allocate_first_fit(layout).ok());
        match block {
            Some(ptr) => {
                // SAFETY: `ptr` is a fresh block of `bytes.len()` bytes inside
                // the region, not overlapping `bytes`.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
                LockedBuf(Storage::Region {
                    ptr,
                    len: bytes.len(),
                })
            }
            None => {
                let n = OVERFLOWS.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(100) {
                    tracing::error!(
                        region = region.len,
                        "the locked region for secret values is full: a {}-byte value is kept in \
                         memory that may be swapped ({} such values so far); raise the \
                         locked-memory limit (ulimit -l, LimitMEMLOCK=) or lower --cache-bytes",
                        bytes.len(),
                        n + 1
                    );
                }
                LockedBuf(Storage::Heap(Zeroizing::new(bytes.to_vec())))
            }
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            // SAFETY: the block is `len` initialized bytes owned by self.
            Storage::Region { ptr, len } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
            Storage::Heap(v) => v,
        }
    }

    /// Whether the bytes are in the locked region.
    #[cfg(test)]
    pub fn in_region(&self) -> bool {
        matches!(self.0, Storage::Region { .. })
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        if let Storage::Region { ptr, len } = self.0 {
            // SAFETY: the block is ours until deallocated below.
            unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) }.zeroize();
            if let (Some(region), Ok(layout)) = (REGION.get(), Layout::from_size_align(len, 1)) {
                debug_assert!((ptr.as_ptr() as usize) >= region.start);
                debug_assert!((ptr.as_ptr() as usize) + len <= region.start + region.len);
                if let Ok(mut heap) = region.heap.lock() {
                    // SAFETY: allocated from this heap with this layout.
                    unsafe { heap.deallocate(ptr, layout) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::region::{create_region, overflows, region_size};
    use super::*;

    #[test]
    fn buffers_round_trip_and_reuse_region_space() {
        create_region(64 << 10).expect("a 64 KiB region can be locked under the default limit");
        // Other tests in this process may use the region at the same time,
        // so only this test's own blocks are checked.
        let a = LockedBuf::copy_from(b"first value");
        assert!(a.in_region());
        assert_eq!(a.as_slice(), b"first value");
        let start = REGION.get().unwrap().start;
        let at = a.as_slice().as_ptr() as usize;
        assert!(at >= start && at < start + region_size().unwrap());
        drop(a);
        // The freed space is used again.
        let again: Vec<LockedBuf> = (0..10_000)
            .map(|_| LockedBuf::copy_from(&[1u8; 100]))
            .collect();
        assert!(again.iter().filter(|b| b.in_region()).count() >= 300);
        drop(again);
        assert!(LockedBuf::copy_from(b"").as_slice().is_empty());
        // A value larger than the region lands outside it, still intact.
        let big = vec![7u8; 128 << 10];
        let b = LockedBuf::copy_from(&big);
        assert!(!b.in_region());
        assert_eq!(b.as_slice(), &big[..]);
        assert!(overflows() >= 1);
    }
}
