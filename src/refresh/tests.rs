//! The refresh cycle's change detection over the in-memory vault, and the fixtures its tests share.
//!
//! Rotations, deletions, new and idle secrets, all within the request budget.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::CacheConfig;
use crate::fs::fixture::{memory_fs, read};
use crate::fs::{FsCore, ROOT_INO};
use crate::secret::SecretName;
use crate::vault::memory::MemoryVault;

#[derive(Default)]
pub(super) struct Recorder {
    pub(super) names: Mutex<Vec<String>>,
    pub(super) inodes: Mutex<Vec<u64>>,
}

impl KernelCache for Recorder {
    fn forget_name(&self, name: &str) {
        self.names.lock().unwrap().push(name.to_string());
    }
    fn forget_inode(&self, ino: u64) {
        self.inodes.lock().unwrap().push(ino);
    }
}

pub(super) struct Setup {
    pub(super) vault: Arc<MemoryVault>,
    pub(super) core: Arc<FsCore>,
    pub(super) kernel: Arc<Recorder>,
    pub(super) refresher: Arc<Refresher>,
}

pub(super) fn setup(cfg: RefreshConfig) -> Setup {
    setup_with(
        cfg,
        CacheConfig {
            fetch_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
}

pub(super) fn setup_with(cfg: RefreshConfig, cache_cfg: CacheConfig) -> Setup {
    let (vault, core) = memory_fs(cache_cfg);
    let kernel = Arc::new(Recorder::default());
    let refresher = Refresher::new(core.clone(), kernel.clone() as Arc<dyn KernelCache>, cfg);
    Setup {
        vault,
        core,
        kernel,
        refresher,
    }
}

pub(super) fn long_ago(v: &MemoryVault, name: &str) {
    v.set_updated(name, 1_600_000_000);
}

/// Puts `s0`..`s{n-1}` (each last changed long ago) and reads each once, so
/// the cache holds them all.
pub(super) async fn cache_many(s: &Setup, n: usize) {
    for i in 0..n {
        let name = format!("s{i}");
        s.vault.put(&name, b"v");
        long_ago(&s.vault, &name);
        read(&s.core, &name).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn unchanged_secrets_cost_list_pages_and_no_gets() {
    let s = setup(RefreshConfig::default());
    cache_many(&s, 100).await;
    let gets = s.vault.gets.load(Ordering::SeqCst);
    let r = s.refresher.cycle().await;
    assert_eq!(r.list_pages, 4);
    assert_eq!(r.gets, 0);
    assert_eq!(s.vault.gets.load(Ordering::SeqCst), gets);
    assert!(s.kernel.names.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_rotation_is_fetched_once_and_the_name_rebound() {
    let s = setup(RefreshConfig::default());
    s.vault.put("db", b"old");
    long_ago(&s.vault, "db");
    let old = s.core.lookup(ROOT_INO, OsStr::new("db")).await.unwrap();
    s.vault.put("db", b"new-value");
    s.vault.set_updated("db", 1_600_000_100);
    let r = s.refresher.cycle().await;
    assert_eq!(r.changed, vec!["db".to_string()]);
    assert_eq!(r.gets, 1);
    assert_eq!(*s.kernel.names.lock().unwrap(), vec!["db".to_string()]);
    assert_eq!(read(&s.core, "db").await.unwrap(), b"new-value");
    // The inode an open file holds still reads the old version, whole.
    assert_eq!(
        s.core.read(old.attr.ino, 0, 100).await.unwrap().bytes(),
        b"old"
    );
    // Nothing changed since: the next cycle makes no GET.
    let r = s.refresher.cycle().await;
    assert_eq!(r.gets, 0);
}

#[tokio::test(start_paused = true)]
async fn two_updates_within_one_second_are_not_missed() {
    let s = setup(RefreshConfig::default());
    s.vault.put("fast", b"one");
    assert_eq!(read(&s.core, "fast").await.unwrap(), b"one");
    // Same `updated` second as the version we fetched.
    let updated = s
        .core
        .cache()
        .cached_latest(&SecretName::parse("fast").unwrap())
        .unwrap()
        .props
        .updated
        .unwrap();
    s.vault.put("fast", b"two");
    s.vault.set_updated("fast", updated);
    let r = s.refresher.cycle().await;
    assert_eq!(r.changed, vec!["fast".to_string()]);
    assert_eq!(read(&s.core, "fast").await.unwrap(), b"two");
}

#[tokio::test(start_paused = true)]
async fn deleted_and_disabled_secrets_are_revoked_and_wiped() {
    let s = setup(RefreshConfig::default());
    for n in ["gone", "off", "stays"] {
        s.vault.put(n, b"v");
        long_ago(&s.vault, n);
        read(&s.core, n).await.unwrap();
    }
    s.refresher.cycle().await;
    s.vault.delete("gone");
    s.vault.set_enabled("off", false);
    let r = s.refresher.cycle().await;
    let mut revoked = r.revoked.clone();
    revoked.sort();
    assert_eq!(revoked, vec!["gone".to_string(), "off".to_string()]);
    assert_eq!(s.core.cache().len(), 1, "only the live secret stays cached");
    assert_eq!(read(&s.core, "gone").await.unwrap_err(), libc::ENOENT);
    assert_eq!(read(&s.core, "off").await.unwrap_err(), libc::EACCES);
    assert_eq!(read(&s.core, "stays").await.unwrap(), b"v");
    assert_eq!(r.removed_names, 1);
    assert!(!s
        .core
        .current_listing()
        .iter()
        .any(|x| x.name.as_str() == "gone"));
    assert!(
        !s.kernel.inodes.lock().unwrap().is_empty(),
        "kernel pages dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_secrets_are_evicted() {
    let s = setup(RefreshConfig {
        idle_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    s.vault.put("cold", b"v");
    read(&s.core, "cold").await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r = s.refresher.cycle().await;
    assert_eq!(r.evicted_idle, 1);
    assert!(s.core.cache().is_empty());
}

#[tokio::test(start_paused = true)]
async fn new_secrets_appear_in_the_listing() {
    let s = setup(RefreshConfig::default());
    s.vault.put("a", b"1");
    s.refresher.cycle().await;
    s.vault.put("b", b"2");
    let r = s.refresher.cycle().await;
    assert_eq!(r.added_names, 1);
    let names: Vec<_> = s
        .core
        .current_listing()
        .iter()
        .map(|x| x.name.to_string())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_never_exceeded() {
    let s = setup(RefreshConfig {
        max_requests_per_10s: 3,
        ..Default::default()
    });
    cache_many(&s, 10).await;
    for i in 0..10 {
        let n = format!("s{i}");
        s.vault.put(&n, b"w");
        s.vault.set_updated(&n, 1_600_000_500);
    }
    let gets_before = s.vault.gets.load(Ordering::SeqCst);
    let r = s.refresher.cycle().await;
    assert_eq!(r.list_pages, 1);
    assert_eq!(r.gets, 2, "1 list + 2 GETs fill a budget of 3");
    assert_eq!(r.deferred, 8);
    assert_eq!(s.vault.gets.load(Ordering::SeqCst) - gets_before, 2);
}

/// Settings under which every tracked secret is due for a readability check
/// at each cycle.
pub(super) fn always_recheck() -> RefreshConfig {
    RefreshConfig {
        max_unverified: Duration::from_millis(1),
        ..Default::default()
    }
}

pub(super) async fn past_max_unverified() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

mod checks;
mod stale;
