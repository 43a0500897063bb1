//! Locked memory for secret values when the whole process cannot be locked.
//!
//! `mlockall` charges every mapping (binary, libraries, thread stacks, malloc
//! arenas) against `RLIMIT_MEMLOCK`, so under the usual 8 MiB limit of an
//! unprivileged user it is not an option. Instead, one anonymous region sized
//! within the limit is mapped, locked with `mlock`, excluded from core dumps
//! (`MADV_DONTDUMP`) and from forked children (`MADV_WIPEONFORK`), and named
//! `[anon:akvfs-secrets]` in /proc/PID/maps. [`LockedBuf`], the storage of
//! every secret value, is carved out of it and wiped before its space is
//! returned.
//!
//! Copies that pass through ordinary heap memory on the way in (the decrypted
//! HTTP response, the parsed JSON string) are wiped when freed:
//! [`WipeOnFree`] is the process's global allocator and zeroes every block
//! before handing it back to malloc once [`set_wipe_on_free`] turned it on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use linked_list_allocator::Heap;
use zeroize::{Zeroize, Zeroizing};

/// How the process keeps secrets out of swap; chosen once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryMode {
    /// `mlockall`: every page of the process is locked.
    All,
    /// Secret values live in a locked region of `bytes` bytes.
    Secrets { bytes: usize, limit: u64 },
    /// Nothing is locked (`--no-mlock`).
    Off,
}

impl MemoryMode {
    /// The mode's short name, as logged and printed.
    pub fn name(&self) -> &'static str {
        match self {
            MemoryMode::All => "all",
            MemoryMode::Secrets { .. } => "secrets",
            MemoryMode::Off => "off",
        }
    }

    /// One line: the mode and what it protects.
    pub fn describe(&self) -> String {
        match self {
            MemoryMode::All => "all (mlockall): every page of the process is locked, \
                 so secret values, tokens and TLS and SDK buffers never reach swap"
                .to_string(),
            MemoryMode::Secrets { bytes, limit } => format!(
                "secrets ({} locked region within the {} locked-memory limit): secret values \
                 are kept in locked memory that core dumps leave out and freed memory is wiped; \
                 for mlockall of the whole process run as root, grant CAP_IPC_LOCK, or raise \
                 the limit to 256 MiB or more",
                human(*bytes as u64),
                human(*limit)
            ),
            MemoryMode::Off => {
                "off (--no-mlock): nothing is locked; cached secrets may be written to swap"
                    .to_string()
            }
        }
    }
}

/// `8 MiB`, `512 KiB`, `100 B`.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

static MODE: OnceLock<MemoryMode> = OnceLock::new();

/// Records the mode in effect (the first call wins).
pub fn set_mode(mode: MemoryMode) {
    let _ = MODE.set(mode);
}

/// The mode in effect; `None` before hardening (tests, `akvfs check`).
pub fn mode() -> Option<MemoryMode> {
    MODE.get().copied()
}

struct Region {
    heap: Mutex<Heap>,
    start: usize,
    len: usize,
}

static REGION: OnceLock<Region> = OnceLock::new();
/// (room for cached values, the budget asked for at start).
static VALUES_ROOM: OnceLock<(u64, u64)> = OnceLock::new();

/// Records how much of the region cached values may use, against the cache
/// budget(s) asked for at start.
pub fn set_values_room(room: u64, asked: u64) {
    let _ = VALUES_ROOM.set((room, asked));
}

/// A mount's value-cache budget, scaled down so all budgets together fit in
/// the locked region; unchanged without a region or when they fit.
pub fn fit_cache_budget(budget: u64) -> u64 {
    match VALUES_ROOM.get() {
        Some(&(room, asked)) if asked > room && asked > 0 => {
            let scaled = (budget as u128 * room as u128 / asked as u128) as u64;
            scaled.max(64 << 10).min(budget)
        }
        _ => budget,
    }
}
/// Values that did not fit in the region and live in ordinary memory.
static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// Maps, locks and registers the secret region. Fails, naming the step,
/// rather than leaving values in memory that may be swapped.
pub fn create_region(bytes: usize) -> Result<(), String> {
    if REGION.get().is_some() {
        return Ok(());
    }
    let page = page_size();
    let len = bytes.div_ceil(page) * page;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing; no existing memory is affected.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(format!(
            "cannot map {} for secret values (mmap): {}",
            human(len as u64),
            std::io::Error::last_os_error()
        ));
    }
    let unmap = |msg: String| {
        // SAFETY: unmaps exactly the mapping created above, which nothing
        // else references yet.
        unsafe { libc::munmap(ptr, len) };
        Err(msg)
    };
    // SAFETY: madvise and mlock on the mapping created above.
    if unsafe { libc::madvise(ptr, len, libc::MADV_DONTDUMP) } != 0 {
        return unmap(format!(
            "cannot exclude the secret region from core dumps (madvise MADV_DONTDUMP): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: as above. Older kernels lack MADV_WIPEONFORK; forked children
    // exec at once (fusermount3), so it is a second line only.
    unsafe { libc::madvise(ptr, len, libc::MADV_WIPEONFORK) };
    // SAFETY: as above; mlock also populates the pages.
    if unsafe { libc::mlock(ptr, len) } != 0 {
        return unmap(format!(
            "cannot lock {} for secret values (mlock): {}",
            human(len as u64),
            std::io::Error::last_os_error()
        ));
    }
    name_region(ptr, len);
    let mut heap = Heap::empty();
    // SAFETY: the mapping is ours, readable and writable, `len` bytes long,
    // and lives as long as the process (it is never unmapped from here on).
    unsafe { heap.init(ptr.cast(), len) };
    let _ = REGION.set(Region {
        heap: Mutex::new(heap),
        start: ptr as usize,
        len,
    });
    Ok(())
}

/// Names the mapping `[anon:akvfs-secrets]` (Linux 5.17+ with
/// CONFIG_ANON_VMA_NAME); harmless where unsupported.
fn name_region(ptr: *mut libc::c_void, len: usize) {
    const PR_SET_VMA: libc::c_int = 0x53564d41;
    const PR_SET_VMA_ANON_NAME: libc::c_ulong = 0;
    let name = c"akvfs-secrets";
    // SAFETY: prctl reads the NUL-terminated name; the range is our mapping.
    unsafe {
        libc::prctl(
            PR_SET_VMA,
            PR_SET_VMA_ANON_NAME,
            ptr as libc::c_ulong,
            len as libc::c_ulong,
            name.as_ptr() as libc::c_ulong,
        )
    };
}

/// The region's size, if one was created.
#[cfg(test)]
pub fn region_size() -> Option<usize> {
    REGION.get().map(|r| r.len)
}

/// How many values did not fit in the region since start.
#[cfg(test)]
pub fn overflows() -> u64 {
    OVERFLOWS.load(Ordering::Relaxed)
}

fn page_size() -> usize {
    // SAFETY: sysconf takes a plain constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

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
                if n % 100 == 0 {
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

#[cfg(test)]
mod tests {
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

    #[test]
    fn modes_are_named() {
        assert_eq!(MemoryMode::All.name(), "all");
        let s = MemoryMode::Secrets {
            bytes: 7 << 20,
            limit: 8 << 20,
        };
        assert!(s
            .describe()
            .starts_with("secrets (7 MiB locked region within the 8 MiB"));
        assert!(MemoryMode::Off.describe().contains("swap"));
    }
}
