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

fn setup_with(cfg: RefreshConfig, cache_cfg: CacheConfig) -> Setup {
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

fn long_ago(v: &MemoryVault, name: &str) {
    v.set_updated(name, 1_600_000_000);
}

#[tokio::test(start_paused = true)]
async fn unchanged_secrets_cost_list_pages_and_no_gets() {
    let s = setup(RefreshConfig::default());
    for i in 0..100 {
        let n = format!("s{i}");
        s.vault.put(&n, b"v");
        long_ago(&s.vault, &n);
        read(&s.core, &n).await.unwrap();
    }
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
async fn an_outage_keeps_serving_until_max_stale() {
    let s = setup(RefreshConfig {
        max_stale: Duration::from_millis(300),
        ..Default::default()
    });
    s.vault.put("k", b"v");
    read(&s.core, "k").await.unwrap();
    s.vault.fail_with(VaultError::Unavailable("503".into()));
    let r = s.refresher.cycle().await;
    assert!(r.error.is_some());
    assert!(r.revoked.is_empty());
    assert_eq!(
        read(&s.core, "k").await.unwrap(),
        b"v",
        "stale value served"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = s.refresher.cycle().await;
    assert_eq!(r.revoked, vec!["k".to_string()]);
    assert_eq!(read(&s.core, "k").await.unwrap_err(), libc::EIO);
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
    for i in 0..10 {
        let n = format!("s{i}");
        s.vault.put(&n, b"v");
        long_ago(&s.vault, &n);
        read(&s.core, &n).await.unwrap();
    }
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
fn always_recheck() -> RefreshConfig {
    RefreshConfig {
        max_unverified: Duration::from_millis(1),
        ..Default::default()
    }
}

async fn past_max_unverified() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_get_permission_with_list_kept_is_caught_by_the_readability_check() {
    // Baseline: within --max-unverified the listing alone is trusted.
    let s = setup(RefreshConfig::default());
    s.vault.put("db", b"pw");
    long_ago(&s.vault, "db");
    read(&s.core, "db").await.unwrap();
    s.vault.deny("db", true);
    let r = s.refresher.cycle().await;
    assert_eq!((r.gets, r.rechecks), (0, 0));
    assert_eq!(read(&s.core, "db").await.unwrap(), b"pw");

    // Past it, one GET per secret proves readability; the 403 revokes it.
    let s = setup(always_recheck());
    s.vault.put("db", b"pw");
    long_ago(&s.vault, "db");
    s.vault.put("ok", b"fine");
    long_ago(&s.vault, "ok");
    let held = s.core.lookup(ROOT_INO, OsStr::new("db")).await.unwrap();
    read(&s.core, "ok").await.unwrap();
    s.vault.deny("db", true);
    past_max_unverified().await;
    let r = s.refresher.cycle().await;
    assert_eq!(r.rechecks, 2, "{r:?}");
    assert_eq!(r.revoked, vec!["db".to_string()]);
    assert!(s.kernel.inodes.lock().unwrap().contains(&held.attr.ino));
    assert_eq!(read(&s.core, "db").await.unwrap_err(), libc::EACCES);
    assert_eq!(
        s.core
            .read(held.attr.ino, 0, 10)
            .await
            .err()
            .map(|e| e.errno()),
        Some(libc::EACCES),
        "an inode held open reads nothing either"
    );
    assert_eq!(read(&s.core, "ok").await.unwrap(), b"fine");
}

#[tokio::test(start_paused = true)]
async fn readability_checks_stay_within_the_budget() {
    let s = setup(RefreshConfig {
        max_requests_per_10s: 5,
        ..always_recheck()
    });
    for i in 0..20 {
        let n = format!("s{i}");
        s.vault.put(&n, b"v");
        long_ago(&s.vault, &n);
        read(&s.core, &n).await.unwrap();
    }
    past_max_unverified().await;
    let gets = s.vault.gets.load(Ordering::SeqCst);
    let r = s.refresher.cycle().await;
    assert_eq!((r.list_pages, r.rechecks, r.deferred), (1, 4, 16), "{r:?}");
    assert_eq!(s.vault.gets.load(Ordering::SeqCst) - gets, 4);
}

#[tokio::test(start_paused = true)]
async fn a_secret_evicted_by_the_memory_budget_is_still_revoked() {
    let cache_cfg = CacheConfig {
        max_bytes: 3000,
        fetch_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    for revocation in ["delete", "disable", "deny"] {
        let cfg = if revocation == "deny" {
            always_recheck()
        } else {
            RefreshConfig::default()
        };
        let s = setup_with(cfg, cache_cfg.clone());
        for n in ["a", "b", "c"] {
            s.vault.put(n, &[b'x'; 800]);
            long_ago(&s.vault, n);
        }
        // `a` is looked up (the kernel holds its inode and pages), then
        // pushed out of the value cache by later reads.
        let held = s.core.lookup(ROOT_INO, OsStr::new("a")).await.unwrap();
        read(&s.core, "b").await.unwrap();
        read(&s.core, "c").await.unwrap();
        assert!(
            s.core
                .cache()
                .cached_latest(&SecretName::parse("a").unwrap())
                .is_none(),
            "evicted"
        );
        match revocation {
            "delete" => s.vault.delete("a"),
            "disable" => s.vault.set_enabled("a", false),
            _ => s.vault.deny("a", true),
        }
        past_max_unverified().await;
        let r = s.refresher.cycle().await;
        assert_eq!(r.revoked, vec!["a".to_string()], "{revocation}: {r:?}");
        assert!(
            s.kernel.inodes.lock().unwrap().contains(&held.attr.ino),
            "{revocation}: the kernel is told to drop the evicted inode's pages"
        );
        assert!(
            s.core.read(held.attr.ino, 0, 10).await.is_err(),
            "{revocation}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn disabling_the_latest_version_revokes_an_older_one_held_open() {
    let s = setup(RefreshConfig::default());
    s.vault.put("db", b"old");
    long_ago(&s.vault, "db");
    let old = s.core.lookup(ROOT_INO, OsStr::new("db")).await.unwrap();
    let v2 = s.vault.put("db", b"new");
    s.vault.set_updated("db", 1_600_000_100);
    let r = s.refresher.cycle().await;
    assert_eq!(r.changed, vec!["db".to_string()]);
    // The open file keeps its version after a rotation...
    assert_eq!(
        s.core.read(old.attr.ino, 0, 10).await.unwrap().bytes(),
        b"old"
    );
    // ...but not after the secret is revoked, although the vault would
    // still serve that older version by id.
    s.vault.set_version_enabled("db", &v2, false);
    let r = s.refresher.cycle().await;
    assert_eq!(r.revoked, vec!["db".to_string()]);
    assert!(s.kernel.inodes.lock().unwrap().contains(&old.attr.ino));
    assert_eq!(
        s.core
            .read(old.attr.ino, 0, 10)
            .await
            .err()
            .map(|e| e.errno()),
        Some(libc::EACCES)
    );
    // Enabled again: a new lookup serves it again.
    s.vault.set_version_enabled("db", &v2, true);
    tokio::time::sleep(s.core.cache().config().negative_ttl).await;
    assert_eq!(read(&s.core, "db").await.unwrap(), b"new");
}

#[tokio::test(start_paused = true)]
async fn max_stale_applies_per_secret_when_the_list_works_but_gets_fail() {
    let rotate_and_break_gets = |s: &Setup| {
        s.vault.put("db", b"new");
        s.vault.set_updated("db", 1_600_000_100);
        s.vault
            .fail_gets_with(Some(VaultError::Unavailable("503".into())));
    };
    // Baseline: within --max-stale the old value keeps serving.
    let s = setup(RefreshConfig::default());
    s.vault.put("db", b"old");
    long_ago(&s.vault, "db");
    read(&s.core, "db").await.unwrap();
    rotate_and_break_gets(&s);
    let r = s.refresher.cycle().await;
    assert!(r.error.is_some() && r.revoked.is_empty(), "{r:?}");
    assert_eq!(read(&s.core, "db").await.unwrap(), b"old");

    // Past it, the secret is dropped although every list succeeded.
    let s = setup(RefreshConfig {
        max_stale: Duration::from_millis(1),
        ..Default::default()
    });
    s.vault.put("db", b"old");
    long_ago(&s.vault, "db");
    read(&s.core, "db").await.unwrap();
    rotate_and_break_gets(&s);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = s.refresher.cycle().await;
    assert_eq!(r.list_pages, 1);
    assert_eq!(r.revoked, vec!["db".to_string()], "{r:?}");
    assert_eq!(read(&s.core, "db").await.unwrap_err(), libc::EIO);
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_clamped() {
    let s = setup(RefreshConfig::default());
    s.vault.put("a", b"1");
    read(&s.core, "a").await.unwrap();
    s.vault.fail_with(VaultError::Throttled {
        retry_after: Some(Duration::from_secs(u64::MAX)),
    });
    let r = s.refresher.cycle().await;
    assert_eq!(r.retry_after, Some(crate::vault::MAX_SERVER_DELAY));
}

/// Log lines written while `f` runs on this thread.
fn logs_of<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || rt.block_on(f));
    let out = buf.0.lock().unwrap().clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn expired_secrets_are_served_warned_about_once_and_exported() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup(RefreshConfig::default());
    s.vault.put("old-cert", b"pem");
    long_ago(&s.vault, "old-cert");
    s.vault.set_validity("old-cert", Some(1_600_000_000), None);
    s.vault.put("fresh", b"v");
    long_ago(&s.vault, "fresh");
    s.vault.set_validity("fresh", Some(4_000_000_000), None);
    let log = logs_of(&rt, async {
        assert_eq!(read(&s.core, "old-cert").await.unwrap(), b"pem");
        read(&s.core, "fresh").await.unwrap();
        for _ in 0..3 {
            s.refresher.cycle().await;
        }
    });
    assert_eq!(log.matches("secret has expired").count(), 1, "{log}");
    assert!(log.contains("old-cert"));

    let render = |names: bool| {
        let m = crate::metrics::MountMetrics::new("/m", "v", Duration::from_secs(60), names);
        m.attach_cache(s.core.cache());
        let reg = crate::metrics::Registry::default();
        reg.add(m);
        reg.render()
    };
    let text = render(false);
    assert!(
        text.contains("akvfs_secret_earliest_expiry_timestamp_seconds{mountpoint=\"/m\",vault=\"v\"} 1600000000"),
        "{text}"
    );
    assert!(!text.contains("akvfs_secret_expiry_timestamp_seconds{"));
    let text = render(true);
    assert!(text.contains(
        "akvfs_secret_expiry_timestamp_seconds{mountpoint=\"/m\",vault=\"v\",secret=\"fresh\"} 4000000000"
    ));
}

#[tokio::test(start_paused = true)]
async fn readability_checks_do_not_storm_a_failing_vault() {
    let s = setup(always_recheck());
    for i in 0..20 {
        let n = format!("s{i}");
        s.vault.put(&n, b"v");
        long_ago(&s.vault, &n);
        read(&s.core, &n).await.unwrap();
    }
    past_max_unverified().await;
    s.vault
        .fail_gets_with(Some(VaultError::Unavailable("503".into())));
    let gets = s.vault.gets.load(Ordering::SeqCst);
    let r = s.refresher.cycle().await;
    assert_eq!(r.rechecks, 1, "one probe, then wait for the next cycle");
    assert!(r.revoked.is_empty());
    // One fetch, with its own few retries inside the fetch timeout.
    let made = s.vault.gets.load(Ordering::SeqCst) - gets;
    assert!(made <= 5, "{made} GETs, not one per secret");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_cycle_does_not_stop_change_detection() {
    let s = setup_with(
        RefreshConfig {
            interval: Duration::from_millis(20),
            ..always_recheck()
        },
        CacheConfig {
            max_bytes: 3000,
            fetch_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    );
    for n in ["a", "b", "c"] {
        s.vault.put(n, &[b'x'; 800]);
        long_ago(&s.vault, n);
    }
    // `a` is evicted but its inode held, so its checks GET the vault
    // directly: that is where the injected panic fires.
    let held = s.core.lookup(ROOT_INO, OsStr::new("a")).await.unwrap();
    read(&s.core, "b").await.unwrap();
    read(&s.core, "c").await.unwrap();
    s.vault.panic_on_get(true);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(s.refresher.clone().run(stop_rx));
    let gets = s.vault.gets.load(Ordering::SeqCst);
    while s.vault.gets.load(Ordering::SeqCst) < gets + 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.vault.panic_on_get(false);
    s.vault.delete("a");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !s.kernel.inodes.lock().unwrap().contains(&held.attr.ino) {
        assert!(std::time::Instant::now() < deadline, "revocation seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    task.await.expect("the refresher task ends normally");
}
