//! The FUSE adapter mounted in the test process over the in-memory vault
//! (which fails from a chosen call on), read through the kernel with
//! ordinary file calls. Mounting needs /dev/fuse and the right to mount
//! (root, or fusermount3); where that is missing each test says why and
//! passes without running.

use std::path::Path;
use std::sync::Arc;

use fuser::{BackgroundSession, MountOption};

use super::{AkvFs, KernelNotifier};
use crate::cache::SecretCache;
use crate::config::{CacheConfig, RefreshConfig};
use crate::fs::{FsCore, FsTimings};
use crate::refresh::{KernelCache, Refresher};
use crate::vault::memory::MemoryVault;
use crate::vault::Vault;

struct Mounted {
    vault: Arc<MemoryVault>,
    core: Arc<FsCore>,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    session: Option<BackgroundSession>,
}

impl Mounted {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn refresher(&self) -> Arc<Refresher> {
        let notifier = self
            .session
            .as_ref()
            .map(|s| KernelNotifier(s.notifier(), Arc::clone(&self.core)));
        let kernel: Arc<dyn KernelCache> = Arc::new(notifier.expect("mounted"));
        Refresher::new(Arc::clone(&self.core), kernel, RefreshConfig::default())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Unmounts before the directory goes.
        drop(self.session.take());
    }
}

/// Mounts a fresh filesystem, or says why it cannot here.
fn mount(secrets: &[(&str, &[u8])]) -> Option<Mounted> {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: /dev/fuse is missing");
        return None;
    }
    let vault = Arc::new(MemoryVault::new());
    for (name, value) in secrets {
        vault.put(name, value);
        vault.set_updated(name, 1_600_000_000);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ok()?;
    let cache_cfg = CacheConfig {
        // A failing vault is retried until this deadline, then EIO.
        fetch_timeout: std::time::Duration::from_millis(300),
        ..CacheConfig::default()
    };
    let cache = SecretCache::new(Arc::clone(&vault) as Arc<dyn Vault>, cache_cfg);
    let owner = crate::fs::fixture::owner(
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let core = FsCore::new(cache, owner, FsTimings::default());
    let dir = tempfile::tempdir().ok()?;
    let fs = AkvFs::new(Arc::clone(&core), rt.handle().clone(), false);
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![MountOption::FSName("akvfs-test".into()), MountOption::RO];
    let session = match fuser::Session::new(fs, dir.path(), &cfg).and_then(|s| s.spawn()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: cannot mount FUSE here ({e})");
            return None;
        }
    };
    Some(Mounted {
        vault,
        core,
        rt,
        dir,
        session: Some(session),
    })
}

#[test]
fn lookup_read_and_readdir_go_through_the_kernel() {
    let Some(m) = mount(&[("db-password", b"s3cr3t"), ("api-key", b"k")]) else {
        return;
    };
    let meta = std::fs::metadata(m.path("db-password")).unwrap();
    assert_eq!(meta.len(), 6);
    assert_eq!(std::fs::read(m.path("db-password")).unwrap(), b"s3cr3t");
    let mut names: Vec<String> = std::fs::read_dir(m.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["api-key", "db-password"]);
    let missing = std::fs::read(m.path("nope")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    let write = std::fs::write(m.path("db-password"), b"x").unwrap_err();
    assert!(
        matches!(write.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)),
        "{write:?}"
    );
}

#[test]
fn a_failing_vault_is_eio_and_reads_recover_when_it_heals() {
    let Some(m) = mount(&[("db", b"value"), ("other", b"x")]) else {
        return;
    };
    // The listing (the first call) succeeds; the GETs after it fail.
    m.vault.fail_from_call(2);
    assert_eq!(std::fs::read_dir(m.dir.path()).unwrap().count(), 2);
    let err = std::fs::read(m.path("db")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err:?}");
    // A transient failure is not remembered as "not found".
    m.vault.clear_fault();
    assert_eq!(std::fs::read(m.path("db")).unwrap(), b"value");
}

#[test]
fn a_rotation_is_seen_after_the_refresher_invalidates_the_name() {
    let Some(m) = mount(&[("db", b"old")]) else {
        return;
    };
    assert_eq!(std::fs::read(m.path("db")).unwrap(), b"old");
    let held = std::fs::File::open(m.path("db")).unwrap();
    m.vault.put("db", b"new-value");
    m.vault.set_updated("db", 1_600_000_100);
    let report = m.rt.block_on(m.refresher().cycle());
    assert_eq!(report.changed, ["db".to_string()]);
    assert_eq!(std::fs::read(m.path("db")).unwrap(), b"new-value");
    // The file opened before keeps the version it opened.
    let mut old = Vec::new();
    std::io::Read::read_to_end(&mut &held, &mut old).unwrap();
    assert_eq!(old, b"old");
}
