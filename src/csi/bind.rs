//! The mount-table work of publishing: read-only binds of an identity's mount onto pod targets,
//! unmounting them, and aborting a FUSE connection so no copy of a mount in another mount
//! namespace keeps serving after its identity is gone.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::CsiError;
use crate::daemon::mounts::{is_dead, mounted_at};

const FS_TYPE: &str = "fuse.akvfs";
const FUSECTL: &str = "/sys/fs/fuse/connections";

/// Creates `target` (its parent exists: kubelet made it) if it is missing.
pub fn make_target(target: &Path) -> Result<(), CsiError> {
    if is_dead(target) || target.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .mode(0o750)
        .create(target)
        .or_else(|e| if target.is_dir() { Ok(()) } else { Err(e) })
        .map_err(|source| CsiError::CreateTarget {
            target: target.to_path_buf(),
            source,
        })
}

/// Binds `source` on `target`, read-only, nosuid, nodev, noexec. On a target
/// that already holds a mount (a dead one after a restart), the bind is
/// stacked on top, so a consumer whose mount is a slave of it
/// (HostToContainer) receives the new one.
pub fn bind_read_only(source: &Path, target: &Path) -> Result<(), CsiError> {
    let none: Option<&str> = None;
    mount(Some(source), target, none, MsFlags::MS_BIND, none).map_err(|e| CsiError::Bind {
        mount: source.to_path_buf(),
        target: target.to_path_buf(),
        source: e,
    })?;
    let flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(none, target, none, flags, none) {
        let _ = umount2(target, MntFlags::MNT_DETACH);
        return Err(CsiError::ReadOnly {
            target: target.to_path_buf(),
            source: e,
        });
    }
    Ok(())
}

/// The device of the mount at `path` (`None` if it cannot be reached).
pub fn device(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// Whether `target`'s topmost mount is a live bind of the mount with device `dev`.
pub fn serves(target: &Path, dev: u64) -> bool {
    !is_dead(target) && device(target) == Some(dev) && is_akvfs(target)
}

fn is_akvfs(path: &Path) -> bool {
    matches!(mounted_at(path), Ok(Some(m)) if m.fs_type == FS_TYPE)
}

/// Detaches every akvfs mount stacked on `path` (live or dead), never
/// anything else.
pub fn unmount_all(path: &Path) {
    for _ in 0..64 {
        if !is_akvfs(path) {
            return;
        }
        if let Err(e) = umount2(path, MntFlags::MNT_DETACH) {
            tracing::warn!(path = %path.display(), "cannot unmount: {e}");
            return;
        }
    }
}

/// Removes an empty target directory (kubelet may also remove it).
pub fn remove_target(target: &Path) {
    if !is_dead(target) && mounted_at(target).ok().flatten().is_none() {
        let _ = std::fs::remove_dir(target);
    }
}

/// Makes /sys/fs/fuse/connections usable (mounting fusectl if it is not),
/// for [`abort_connection`].
pub fn ensure_fusectl() {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| t.lines().any(|l| l.contains(" - fusectl ")))
        .unwrap_or(false);
    if mounted {
        return;
    }
    let none: Option<&str> = None;
    if let Err(e) = mount(
        Some("fusectl"),
        FUSECTL,
        Some("fusectl"),
        MsFlags::empty(),
        none,
    ) {
        tracing::warn!(
            "cannot mount fusectl on {FUSECTL} ({e}); an identity's last unpublish then cannot cut off copies of its mount in other mount namespaces"
        );
    }
}

/// Aborts the FUSE connection of device `dev`: every copy of the mount, in
/// any mount namespace, fails from then on (ECONNABORTED), and the session
/// ends even while such copies exist.
pub fn abort_connection(dev: u64) {
    let minor = nix::sys::stat::minor(dev);
    let path = format!("{FUSECTL}/{minor}/abort");
    if let Err(e) = std::fs::write(&path, b"1") {
        tracing::warn!("cannot abort the FUSE connection ({path}: {e})");
    }
}
