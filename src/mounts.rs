//! Mountpoint checks and unmounting: a missing or non-directory mountpoint, a
//! stale mount left by a killed daemon, and a mount already being served.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The filesystem type akvfs mounts show in /proc/mounts.
pub const FS_TYPE: &str = "fuse.akvfs";

/// Checks `path` before mounting; lazily unmounts a stale akvfs mount there.
/// Returns the absolute path to mount on.
pub fn prepare_mountpoint(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    // statfs always reaches a FUSE daemon (stat may be answered from the
    // kernel's attribute cache), so it is what reveals a dead one.
    let probe = nix::sys::statfs::statfs(path)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        .and_then(|_| std::fs::metadata(path));
    match probe {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(
                mountpoint = %shown,
                "found a stale mount (\"Transport endpoint is not connected\"), left by a daemon that exited without unmounting; detaching it"
            );
            unmount(path, true).map_err(|e| {
                format!("{shown} holds a stale mount that could not be detached: {e}")
            })?;
            return prepare_mountpoint(path);
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
        Ok(_) => {}
    }
    let abs = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot resolve mountpoint {shown}: {e}"))?;
    if let Some(source) = mounted_at(&abs)?.filter(|m| m.fs_type == FS_TYPE) {
        return Err(format!(
            "{} is already an akvfs mount of {} served by a running akvfs; unmount it first (akvfs unmount {})",
            abs.display(),
            source.source,
            abs.display()
        ));
    }
    Ok(abs)
}

/// One line of /proc/self/mountinfo that we care about.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub fs_type: String,
    pub source: String,
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
        let mount_point = left.split(' ').nth(4).map(unescape).unwrap_or_default();
        if mount_point != target {
            continue;
        }
        let mut r = right.split(' ');
        let fs_type = r.next().unwrap_or_default().to_string();
        let source = r.next().map(unescape).unwrap_or_default();
        found = Some(MountEntry { fs_type, source });
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
        Ok(())
    } else {
        Err(format!(
            "cannot unmount {shown}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
