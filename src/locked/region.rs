//! The locked region for secret values: mapped, locked, left out of core dumps and forks, and carved into blocks.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

use linked_list_allocator::Heap;

use super::human;

/// Why the locked region for secret values could not be set up: the step
/// that failed and the system's answer.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("cannot map {} for secret values (mmap): {source}", human(*bytes as u64))]
    Map {
        bytes: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot exclude the secret region from core dumps (madvise MADV_DONTDUMP): {0}")]
    DontDump(#[source] std::io::Error),
    #[error("cannot lock {} for secret values (mlock): {source}", human(*bytes as u64))]
    Lock {
        bytes: usize,
        #[source]
        source: std::io::Error,
    },
}

pub(super) struct Region {
    pub(super) heap: Mutex<Heap>,
    pub(super) start: usize,
    pub(super) len: usize,
}

pub(super) static REGION: OnceLock<Region> = OnceLock::new();

/// Values that did not fit in the region and live in ordinary memory.
pub(super) static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// Maps, locks and registers the secret region. Fails, naming the step,
/// rather than leaving values in memory that may be swapped.
pub fn create_region(bytes: usize) -> Result<(), RegionError> {
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
        return Err(RegionError::Map {
            bytes: len,
            source: std::io::Error::last_os_error(),
        });
    }
    let unmap = |e: RegionError| {
        // SAFETY: unmaps exactly the mapping created above, which nothing
        // else references yet.
        unsafe { libc::munmap(ptr, len) };
        Err(e)
    };
    // SAFETY: madvise and mlock on the mapping created above.
    if unsafe { libc::madvise(ptr, len, libc::MADV_DONTDUMP) } != 0 {
        return unmap(RegionError::DontDump(std::io::Error::last_os_error()));
    }
    // SAFETY: as above. Older kernels lack MADV_WIPEONFORK; forked children
    // exec at once (fusermount3), so it is a second line only.
    unsafe { libc::madvise(ptr, len, libc::MADV_WIPEONFORK) };
    // SAFETY: as above; mlock also populates the pages.
    if unsafe { libc::mlock(ptr, len) } != 0 {
        return unmap(RegionError::Lock {
            bytes: len,
            source: std::io::Error::last_os_error(),
        });
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
    OVERFLOWS.load(std::sync::atomic::Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_errors_name_the_step_and_the_size() {
        let e = RegionError::Lock {
            bytes: 8 << 20,
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        };
        let shown = e.to_string();
        assert!(
            shown.starts_with("cannot lock 8 MiB for secret values (mlock): "),
            "{shown}"
        );
        let e = RegionError::Map {
            bytes: 4096,
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        };
        assert!(e
            .to_string()
            .starts_with("cannot map 4 KiB for secret values (mmap)"));
        let e = RegionError::DontDump(std::io::Error::from_raw_os_error(libc::EINVAL));
        assert!(e.to_string().contains("MADV_DONTDUMP"));
    }
}
