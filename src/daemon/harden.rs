//! Process hardening applied before any secret is fetched: no core dumps, no
//! ptrace by other processes of the same user, and memory locked so cached
//! secrets never reach swap: the whole process where permitted, otherwise a
//! locked region that holds the secret values ([`crate::locked`]).

use std::io;

pub use super::error::HardenError;
use crate::locked::MemoryMode;

/// Turns off core dumps and makes the process non-dumpable (which also keeps
/// same-user processes from attaching with ptrace or reading /proc/PID/mem).
pub fn disable_core_dumps() -> Result<(), HardenError> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid, initialized rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(HardenError::CoreLimit(io::Error::last_os_error()));
    }
    // SAFETY: PR_SET_DUMPABLE takes a plain integer argument.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(HardenError::Dumpable(io::Error::last_os_error()));
    }
    Ok(())
}

/// Below this locked-memory limit (and without CAP_IPC_LOCK), `mlockall`
/// would make ordinary allocations fail later, so only the secret region is
/// locked.
pub const MLOCKALL_MIN_LIMIT: u64 = 256 << 20;
/// Left unlocked below the limit, for anything else that may lock a page.
const LIMIT_MARGIN: u64 = 128 << 10;
/// The smallest secret region worth starting with.
const MIN_REGION: u64 = 256 << 10;

/// The soft RLIMIT_MEMLOCK in bytes; `u64::MAX` for unlimited.
pub fn memlock_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        lim.rlim_cur
    }
}

/// Whether CAP_IPC_LOCK is in the effective set (root normally has it; a
/// container or unit may drop it, and a non-root service may be granted it).
pub fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Whether `mlockall` of the whole process can hold.
fn mlockall_permitted(limit: u64) -> bool {
    has_cap_ipc_lock() || limit >= MLOCKALL_MIN_LIMIT
}

/// The secret region's size for a locked-memory limit and a budget of cached
/// values: twice the budget (older versions held by open files, fetches in
/// flight, block overhead) plus 1 MiB, within the limit.
pub fn region_bytes(limit: u64, budget: u64) -> Result<usize, HardenError> {
    let want = budget.saturating_mul(2).saturating_add(1 << 20);
    let have = limit.saturating_sub(LIMIT_MARGIN) & !0xfff;
    if have < MIN_REGION {
        return Err(HardenError::LimitTooLow {
            limit,
            needed: MIN_REGION + LIMIT_MARGIN,
        });
    }
    Ok(want.min(have).min(usize::MAX as u64) as usize)
}

/// What [`lock_memory`] would choose, without locking anything.
pub fn planned_mode(mlock: bool, budget: u64) -> Result<MemoryMode, HardenError> {
    if !mlock {
        return Ok(MemoryMode::Off);
    }
    let limit = memlock_limit();
    if mlockall_permitted(limit) {
        return Ok(MemoryMode::All);
    }
    Ok(MemoryMode::Secrets {
        bytes: region_bytes(limit, budget)?,
        limit,
    })
}

/// Keeps secrets out of swap, the strongest way permitted: `mlockall` where
/// root, CAP_IPC_LOCK or a large limit allow it, otherwise a locked region
/// for secret values sized within the limit, with `budget` bytes of cached
/// values in mind. With `mlock` false (`--no-mlock`) nothing is locked.
/// Never falls back to unlocked memory by itself. Logs the mode.
pub fn lock_memory(mlock: bool, budget: u64) -> Result<MemoryMode, HardenError> {
    let limit = memlock_limit();
    let mode = if !mlock {
        MemoryMode::Off
    } else if mlockall_permitted(limit) {
        match lock_all() {
            Ok(()) => MemoryMode::All,
            Err(e) => {
                tracing::warn!("{e}; locking only the memory that holds secret values");
                lock_region(limit, budget)?
            }
        }
    } else {
        lock_region(limit, budget)?
    };
    // Freed heap blocks may hold copies of a value on their way in; under
    // mlockall they are locked anyway.
    crate::locked::set_wipe_on_free(mode != MemoryMode::All);
    if mode == MemoryMode::Off {
        tracing::warn!("memory: {}", mode.describe());
    } else {
        tracing::info!("memory: {}", mode.describe());
    }
    if let MemoryMode::Secrets { bytes, .. } = mode {
        crate::locked::set_values_room(bytes as u64 / 2, budget);
        if (bytes as u64) / 2 < budget {
            tracing::info!(
                "the locked-memory limit of {} leaves room for {} of cached secret values; \
                 the value cache is capped there instead of {} (raise the limit with ulimit -l \
                 or LimitMEMLOCK= to cache more)",
                crate::locked::human(limit),
                crate::locked::human(bytes as u64 / 2),
                crate::locked::human(budget)
            );
        }
    }
    crate::locked::set_mode(mode);
    Ok(mode)
}

fn lock_region(limit: u64, budget: u64) -> Result<MemoryMode, HardenError> {
    let bytes = region_bytes(limit, budget)?;
    crate::locked::create_region(bytes)?;
    Ok(MemoryMode::Secrets { bytes, limit })
}

/// Locks current and future memory. Pages are locked as they are first
/// touched (MCL_ONFAULT), so thread stacks and arenas are not populated up
/// front.
fn lock_all() -> Result<(), HardenError> {
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE;
    // SAFETY: mlockall takes flags only.
    let mut rc = unsafe { libc::mlockall(flags | libc::MCL_ONFAULT) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Kernels before 4.4 lack MCL_ONFAULT.
        // SAFETY: as above.
        rc = unsafe { libc::mlockall(flags) };
    }
    if rc != 0 {
        return Err(HardenError::LockAll(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_fits_the_limit_and_the_budget() {
        // The default 8 MiB limit with the default 64 MiB cache budget.
        let r = region_bytes(8 << 20, 64 << 20).unwrap();
        assert_eq!(r as u64, (8 << 20) - LIMIT_MARGIN);
        // A small budget needs no more than twice itself plus 1 MiB.
        assert_eq!(region_bytes(64 << 20, 1 << 20).unwrap(), 3 << 20);
        let e = region_bytes(64 << 10, 64 << 20).unwrap_err();
        assert!(
            matches!(e, HardenError::LimitTooLow { limit, .. } if limit == 64 << 10),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("CAP_IPC_LOCK") && text.contains("64 KiB"),
            "{text}"
        );
    }
}
