//! Process hardening applied before any secret is fetched: no core dumps, no
//! ptrace by other processes of the same user, and memory locked so cached
//! secrets never reach swap.

use std::io;

/// Turns off core dumps and makes the process non-dumpable (which also keeps
/// same-user processes from attaching with ptrace or reading /proc/PID/mem).
pub fn disable_core_dumps() -> Result<(), String> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid, initialized rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(format!(
            "cannot disable core dumps (setrlimit RLIMIT_CORE): {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: PR_SET_DUMPABLE takes a plain integer argument.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Locks current and future memory. Pages are locked as they are first
/// touched (MCL_ONFAULT), so thread stacks and arenas are not populated up
/// front.
pub fn lock_memory() -> Result<(), String> {
    let advice = "run as root, grant CAP_IPC_LOCK, raise the locked-memory limit \
                  (ulimit -l unlimited, or LimitMEMLOCK=infinity under systemd), \
                  or pass --no-mlock to accept that cached secrets may be written to swap";
    // SAFETY: getrlimit writes into a valid rlimit struct.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    let is_root = nix::unistd::geteuid().is_root();
    // With MCL_FUTURE, a small limit does not fail here but makes later
    // allocations fail; refuse now with advice instead of crashing later.
    if !is_root && lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < (256 << 20) {
        return Err(format!(
            "cannot lock memory: the locked-memory limit is {} KiB, too small for akvfs; {advice}",
            lim.rlim_cur / 1024
        ));
    }
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE;
    // SAFETY: mlockall takes flags only.
    let mut rc = unsafe { libc::mlockall(flags | libc::MCL_ONFAULT) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Kernels before 4.4 lack MCL_ONFAULT.
        // SAFETY: as above.
        rc = unsafe { libc::mlockall(flags) };
    }
    if rc != 0 {
        return Err(format!(
            "cannot lock memory (mlockall): {}; {advice}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}
