//! Mountpoint checks and unmounting: a missing or non-directory mountpoint, a
//! stale mount left by a killed daemon, a mount already being served, another
//! filesystem mounted there, and a directory with files in it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use super::error::MountpointError;

/// The filesystem type akvfs mounts show in /proc/mounts.
pub const FS_TYPE: &str = "fuse.akvfs";

/// How [`prepare_mountpoint_with`] treats the directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Prepare {
    /// Create a missing directory (with its parents, mode 0755), as a
    /// service does for its own mountpoints.
    pub create: bool,
    /// Mount over a directory that has files in it, hiding them.
    pub nonempty: bool,
}

/// Checks `path` before mounting and returns the absolute path to mount on.
/// Recovers what a killed daemon leaves
/// behind (a dead akvfs mount: detached lazily), creates a missing directory
/// if asked, and refuses with a one-line reason: a live akvfs mount, another
/// filesystem mounted there (dead or alive), a non-directory, and a
/// directory with files in it (unless `nonempty`).
pub fn prepare_mountpoint_with(path: &Path, opts: Prepare) -> Result<PathBuf, MountpointError> {
    let shown = path.display();
    let at = || path.to_path_buf();
    // A few stacked dead mounts are detached one by one; more is not a crash.
    for _ in 0..8 {
        match probe(path) {
            Err(e) if is_dead_mount(&e) => {
                let abs = lexical_absolute(path);
                match mounted_at(&abs)? {
                    Some(m) if m.fs_type != FS_TYPE => {
                        return Err(MountpointError::ForeignDeadMount {
                            path: at(),
                            fs_type: m.fs_type,
                            source_name: m.source,
                        })
                    }
                    _ => {}
                }
                tracing::warn!(
                    mountpoint = %shown,
                    "found a stale mount (\"Transport endpoint is not connected\"), left by a daemon that exited without unmounting; detaching it"
                );
                unmount(path, true).map_err(|e| MountpointError::StaleNotDetached {
                    path: at(),
                    source: Box::new(e),
                })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && opts.create => {
                std::fs::create_dir_all(path)
                    .map_err(|source| MountpointError::Create { path: at(), source })?;
                tracing::info!(mountpoint = %shown, "created the mount directory");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MountpointError::Missing { path: at() })
            }
            Err(source) => return Err(MountpointError::Unusable { path: at(), source }),
            Ok(m) if !m.is_dir() => return Err(MountpointError::NotDirectory { path: at() }),
            Ok(_) => return check_live(path, opts),
        }
    }
    Err(MountpointError::TooManyStale { path: at() })
}

/// statfs always reaches a FUSE daemon (stat may be answered from the
/// kernel's attribute cache), so it is what reveals a dead one.
fn probe(path: &Path) -> io::Result<std::fs::Metadata> {
    nix::sys::statfs::statfs(path)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
        .and_then(|_| std::fs::metadata(path))
}

/// What a FUSE mount whose daemon is gone answers (ECONNABORTED after a
/// forced abort of the connection).
fn is_dead_mount(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
    )
}

/// Whether `path` is a dead FUSE mount (its daemon is gone).
pub fn is_dead(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_err_and(|e| is_dead_mount(&io::Error::from_raw_os_error(e as i32)))
}

/// An absolute form of `path` that needs no access to `path` itself (a dead
/// mount cannot be resolved): its parent resolved, its last component kept.
fn lexical_absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(abs),
        _ => abs,
    }
}

/// The checks on a live directory: what is mounted there, and what is in it.
fn check_live(path: &Path, opts: Prepare) -> Result<PathBuf, MountpointError> {
    let abs = std::fs::canonicalize(path).map_err(|source| MountpointError::Resolve {
        path: path.to_path_buf(),
        source,
    })?;
    match mounted_at(&abs)? {
        Some(m) if m.fs_type == FS_TYPE => {
            return Err(MountpointError::AlreadyServed {
                path: abs,
                source_name: m.source,
            })
        }
        // systemd's automount point (x-systemd.automount in fstab): the
        // mount it triggers lands here, and listing it would wait for us.
        Some(m) if m.fs_type == "autofs" => return Ok(abs),
        // A bind mount of a directory (a container's volume, a kubelet
        // hostPath) is a directory like any other: only its contents could
        // be hidden, and the emptiness check below covers them.
        Some(m) if m.root != "/" => {}
        Some(m) => {
            return Err(MountpointError::OtherFilesystem {
                path: abs,
                fs_type: m.fs_type,
                source_name: m.source,
            })
        }
        None => {}
    }
    if !opts.nonempty {
        let mut entries =
            std::fs::read_dir(&abs).map_err(|source| MountpointError::Unreadable {
                path: abs.clone(),
                source,
            })?;
        if entries.next().is_some() {
            return Err(MountpointError::NotEmpty { path: abs });
        }
    }
    Ok(abs)
}

/// A normal user's `allow_other` or `allow_root` mount needs `user_allow_other`
/// in /etc/fuse.conf (fusermount3 refuses it otherwise); say so up front.
pub fn check_allow_other(owner: &crate::config::OwnerConfig) -> Result<(), MountpointError> {
    let setting = match (owner.allow_other, owner.allow_root) {
        (true, _) => "allow_other",
        (_, true) => "allow_root",
        _ => return Ok(()),
    };
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    if conf.lines().any(|l| l.trim() == "user_allow_other") {
        return Ok(());
    }
    Err(MountpointError::AllowOtherNotPermitted { setting })
}

/// One line of /proc/self/mountinfo that we care about.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub fs_type: String,
    pub source: String,
    /// The directory of the source filesystem that is mounted here: `/` for
    /// a whole filesystem, a subdirectory for a bind mount of one.
    pub root: String,
}

/// The topmost mount at exactly `path`, if any.
pub fn mounted_at(path: &Path) -> Result<Option<MountEntry>, MountpointError> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(MountpointError::Mountinfo)?;
    let target = path.to_string_lossy();
    let mut found = None;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let root = left.split(' ').nth(3).map(unescape).unwrap_or_default();
        let mount_point = left.split(' ').nth(4).map(unescape).unwrap_or_default();
        if mount_point != target {
            continue;
        }
        let mut r = right.split(' ');
        let fs_type = r.next().unwrap_or_default().to_string();
        let source = r.next().map(unescape).unwrap_or_default();
        found = Some(MountEntry {
            fs_type,
            source,
            root,
        });
    }
    Ok(found)
}

/// mountinfo escapes space, tab, newline and backslash as octal. Bytes are
/// collected first: a path's UTF-8 bytes must not become one char each.
pub fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts `path`; `lazy` detaches it even while files are open.
pub fn unmount(path: &Path, lazy: bool) -> Result<(), MountpointError> {
    let at = || path.to_path_buf();
    if nix::unistd::geteuid().is_root() {
        let flags = if lazy {
            nix::mount::MntFlags::MNT_DETACH
        } else {
            nix::mount::MntFlags::empty()
        };
        return nix::mount::umount2(path, flags).map_err(|e| match e {
            nix::errno::Errno::EBUSY => MountpointError::Busy { path: at() },
            nix::errno::Errno::EINVAL => MountpointError::NotMounted { path: at() },
            nix::errno::Errno::ENOENT => MountpointError::Gone { path: at() },
            e => MountpointError::Unmount {
                path: at(),
                detail: e.to_string(),
            },
        });
    }
    let mut cmd = Command::new("fusermount3");
    cmd.arg(if lazy { "-uz" } else { "-u" }).arg(path);
    let out = cmd
        .output()
        .map_err(|source| MountpointError::NoFusermount { path: at(), source })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim();
    let detail = err.to_string();
    Err(if err.contains("not found in") {
        MountpointError::NotOurs { path: at(), detail }
    } else if err.contains("busy") {
        MountpointError::Busy { path: at() }
    } else {
        MountpointError::Unmount { path: at(), detail }
    })
}
