//! Why a mountpoint, an unmount or the process hardening failed: what failed and what to check, as one line.

use std::io;
use std::path::PathBuf;

use crate::locked::{human, RegionError};

/// A mountpoint that cannot be used, or an unmount that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountpointError {
    #[error("{} holds a dead {fs_type} mount of {source_name} that akvfs did not make; unmount it first (umount -l {})", path.display(), path.display())]
    ForeignDeadMount {
        path: PathBuf,
        fs_type: String,
        source_name: String,
    },
    #[error("{} holds a stale mount that could not be detached: {source}", path.display())]
    StaleNotDetached {
        path: PathBuf,
        source: Box<MountpointError>,
    },
    #[error("{} still holds a stale mount after detaching several; unmount them (umount -R -l {})", path.display(), path.display())]
    TooManyStale { path: PathBuf },
    #[error("cannot create the mount directory {}: {source}; check the parent directory's permissions", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("mountpoint {} does not exist; create it first (mkdir -p {})", path.display(), path.display())]
    Missing { path: PathBuf },
    #[error("cannot use mountpoint {}: {source}", path.display())]
    Unusable { path: PathBuf, source: io::Error },
    #[error("mountpoint {} is not a directory; mount on an empty directory", path.display())]
    NotDirectory { path: PathBuf },
    #[error("cannot resolve mountpoint {}: {source}", path.display())]
    Resolve { path: PathBuf, source: io::Error },
    #[error("{} is already an akvfs mount of {source_name} served by a running akvfs; unmount it first (akvfs unmount {})", path.display(), path.display())]
    AlreadyServed { path: PathBuf, source_name: String },
    #[error("{} is already a mount point ({fs_type} of {source_name}); akvfs does not mount over another filesystem: unmount it or choose another directory", path.display())]
    OtherFilesystem {
        path: PathBuf,
        fs_type: String,
        source_name: String,
    },
    #[error("cannot read mountpoint {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("mountpoint {} is not empty, and mounting would hide its files; use an empty directory, or pass -o nonempty (nonempty = true in a config file) to mount over them", path.display())]
    NotEmpty { path: PathBuf },
    #[error("{setting} needs the line user_allow_other in /etc/fuse.conf when mounting as a normal user; add it (as root), or mount without {setting}")]
    AllowOtherNotPermitted { setting: &'static str },
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(#[source] io::Error),
    #[error("{} is busy: a process has a file open or its working directory there; close it, or use --lazy", path.display())]
    Busy { path: PathBuf },
    #[error("{} is not a mount point", path.display())]
    NotMounted { path: PathBuf },
    #[error("{} does not exist", path.display())]
    Gone { path: PathBuf },
    #[error("{} is not a mount of this user (fusermount3: {detail}); a mount made by root or another user is unmounted by them", path.display())]
    NotOurs { path: PathBuf, detail: String },
    #[error("cannot run fusermount3 to unmount {}: {source}; install fuse3", path.display())]
    NoFusermount { path: PathBuf, source: io::Error },
    #[error("cannot unmount {}: {detail}", path.display())]
    Unmount { path: PathBuf, detail: String },
}

/// What to do when memory cannot be locked.
const ADVICE: &str = "run as root, grant CAP_IPC_LOCK, raise the locked-memory limit \
                      (ulimit -l unlimited, or LimitMEMLOCK=infinity under systemd), \
                      or pass --no-mlock to accept that cached secrets may be written to swap";

/// Core dumps or memory locking could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("cannot disable core dumps (setrlimit RLIMIT_CORE): {0}")]
    CoreLimit(#[source] io::Error),
    #[error("cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE): {0}")]
    Dumpable(#[source] io::Error),
    #[error("cannot lock memory for secret values: the locked-memory limit is {}, below the {} that akvfs needs at least; {ADVICE}", human(*limit), human(*needed))]
    LimitTooLow { limit: u64, needed: u64 },
    #[error("{0}; {ADVICE}")]
    Region(#[from] RegionError),
    #[error("cannot lock all memory (mlockall): {0}")]
    LockAll(#[source] io::Error),
}
