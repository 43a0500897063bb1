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

mod buf;
mod region;
mod wipe;

pub use buf::LockedBuf;
pub use region::{create_region, RegionError};
pub use wipe::{set_wipe_on_free, WipeOnFree};

use std::sync::OnceLock;

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
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
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
#[cfg(test)]
mod tests {
    use super::*;

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
