//! Test fixtures shared by the filesystem, refresher and notice tests: a core over the in-memory vault, and reading a file through it.

use std::ffi::OsStr;
use std::sync::Arc;

use super::{FsCore, FsTimings, ROOT_INO};
use crate::cache::SecretCache;
use crate::config::{CacheConfig, OwnerConfig};
use crate::vault::memory::MemoryVault;
use crate::vault::Vault;

/// Files owned by `uid`/`gid`, modes 0400 and 0500, no `allow_other`.
pub(crate) fn owner(uid: u32, gid: u32) -> OwnerConfig {
    OwnerConfig {
        uid,
        gid,
        file_mode: 0o400,
        dir_mode: 0o500,
        allow_other: false,
        allow_root: false,
    }
}

/// An empty in-memory vault and a root-owned core over it.
pub(crate) fn memory_fs(cfg: CacheConfig) -> (Arc<MemoryVault>, Arc<FsCore>) {
    memory_fs_owned(cfg, owner(0, 0))
}

/// An empty in-memory vault and a core over it, owned as `owner` says.
pub(crate) fn memory_fs_owned(
    cfg: CacheConfig,
    owner: OwnerConfig,
) -> (Arc<MemoryVault>, Arc<FsCore>) {
    let vault = Arc::new(MemoryVault::new());
    let cache = SecretCache::new(vault.clone() as Arc<dyn Vault>, cfg);
    (vault, FsCore::new(cache, owner, FsTimings::default()))
}

/// The whole of the root file `name`, or the errno of the lookup or the read.
pub(crate) async fn read(core: &FsCore, name: &str) -> Result<Vec<u8>, i32> {
    let e = core
        .lookup(ROOT_INO, OsStr::new(name))
        .await
        .map_err(|e| e.errno())?;
    Ok(core
        .read(e.attr.ino, 0, 1 << 20)
        .await
        .map_err(|e| e.errno())?
        .bytes()
        .to_vec())
}
