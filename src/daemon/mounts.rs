//! Mountpoint checks and unmounting: a missing or non-directory mountpoint, a
//! stale mount left by a killed daemon, a mount already being served, another
//! filesystem mounted there, and a directory with files in it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

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
pub fn prepare_mountpoint_with(path: &Path, opts: Prepare) -> Result<PathBuf, String> {
    let shown = path.display();
    // A few stacked dead mounts are detached one by one; more is not a crash.
    for _ in 0..8 {
        match probe(path) {
            Err(e) if is_dead_mount(&e) => {
                let abs = lexical_absolute(path);
                match mounted_at(&abs)? {
                    Some(m) if m.fs_type != FS_TYPE => {
                        return Err(format!(
                            "{shown} holds a dead {} mount of {} that akvfs did not make; unmount it first (umount -l {shown})",
                            m.fs_type, m.source
                        ))
                    }
                    _ => {}
                }
                tracing::warn!(
                    mountpoint = %shown,
                    "found a stale mount (\"Transport endpoint is not connected\"), left by a daemon that exited without unmounting; detaching it"
                );
                unmount(path, true).map_err(|e| {
                    format!("{shown} holds a stale mount that could not be detached: {e}")
                })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && opts.create => {
                std::fs::create_dir_all(path).map_err(|e| {
                    format!("cannot create the mount directory {shown}: {e}; check the parent directory's permissions")
                })?;
                tracing::info!(mountpoint = %shown, "created the mount directory");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "mountpoint {shown} does not exist; create it first (mkdir -p {shown})"
                ))
            }
            Err(e) => return Err(format!("cannot use mountpoint {shown}: {e}")),
            Ok(m) if !m.is_dir() => {
                return Err(format!(
                    "mountpoint {shown} is not a directory; mount on an empty directory"
                ))
            }
            Ok(_) => return check_live(path, opts),
        }
    }
    Err(format!(
        "{shown} still holds a stale mount after detaching several; unmount them (umount -R -l {shown})"
    ))
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
fn check_live(path: &Path, opts: Prepare) -> Result<PathBuf, String> {
    let shown = path.display();
    let abs = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot resolve mountpoint {shown}: {e}"))?;
    match mounted_at(&abs)? {
        Some(m) if m.fs_type == FS_TYPE => {
            return Err(format!(
                "{} is already an akvfs mount of {} served by a running akvfs; unmount it first (akvfs unmount {})",
                abs.display(),
                m.source,
                abs.display()
            ))
        }
        // systemd's automount point (x-systemd.automount in fstab): the
        // mount it triggers lands here, and listing it would wait for us.
        Some(m) if m.fs_type == "autofs" => return Ok(abs),
        // A bind mount of a directory (a container's volume, a kubelet
        // hostPath) is a directory like any other: only its contents could
        // be hidden, and the emptiness check below covers them.
        Some(m) if m.root != "/" => {}
        Some(m) => {
            return Err(format!(
                "{} is already a mount point ({} of {}); akvfs does not mount over another filesystem: unmount it or choose another directory",
                abs.display(),
                m.fs_type,
                m.source
            ))
        }
        None => {}
    }
    if !opts.nonempty {
        let mut entries = std::fs::read_dir(&abs)
            .map_err(|e| format!("cannot read mountpoint {}: {e}", abs.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "mountpoint {} is not empty, and mounting would hide its files; use an empty directory, or pass -o nonempty (nonempty = true in a config file) to mount over them",
                abs.display()
            ));
        }
    }
    Ok(abs)
}

/// A normal user's `allow_other` mount needs `user_allow_other` in
/// /etc/fuse.conf (fusermount3 refuses it otherwise); say so up front.
pub fn check_allow_other(allow_other: bool) -> Result<(), String> {
    if !allow_other || nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    if conf.lines().any(|l| l.trim() == "user_allow_other") {
        return Ok(());
    }
    Err("--allow-other needs the line user_allow_other in /etc/fuse.conf when mounting as a normal user; \
         add it (as root), or mount without --allow-other"
        .into())
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
pub fn mounted_at(path: &Path) -> Result<Option<MountEntry>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
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
pub fn unmount(path: &Path, lazy: bool) -> Result<(), String> {
    let shown = path.display();
    if nix::unistd::geteuid().is_root() {
        let flags = if lazy {
            nix::mount::MntFlags::MNT_DETACH
        } else {
            nix::mount::MntFlags::empty()
        };
        return nix::mount::umount2(path, flags).map_err(|e| match e {
            nix::errno::Errno::EBUSY => format!(
                "{shown} is busy: a process has a file open or its working directory there; close it, or use --lazy"
            ),
            nix::errno::Errno::EINVAL => format!("{shown} is not a mount point"),
            nix::errno::Errno::ENOENT => format!("{shown} does not exist"),
            e => format!("cannot unmount {shown}: {e}"),
        });
    }
    let mut cmd = Command::new("fusermount3");
    cmd.arg(if lazy { "-uz" } else { "-u" }).arg(path);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run fusermount3 to unmount {shown}: {e}; install fuse3"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim();
    Err(if err.contains("not found in") {
        format!("{shown} is not a mount of this user (fusermount3: {err}); a mount made by root or another user is unmounted by them")
    } else if err.contains("busy") {
        format!("{shown} is busy: a process has a file open or its working directory there; close it, or use --lazy")
    } else {
        format!("cannot unmount {shown}: {err}")
    })
}
