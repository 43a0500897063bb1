//! Readability checks revoke a secret the identity may no longer read, even one still listed.
//!
//! Within the budget, whether evicted or held open, without storming a failing vault; a
//! panicking check does not stop change detection.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{always_recheck, cache_many, long_ago, past_max_unverified, setup, setup_with, Setup};
use crate::config::CacheConfig;
use crate::fs::fixture::read;
use crate::fs::ROOT_INO;
use crate::refresh::*;
use crate::secret::SecretName;
use crate::vault::VaultError;

/// Puts `a`, `b` and `c` (800 bytes each, for a cache of 3000 bytes), looks
/// `a` up (the kernel then holds its inode and pages), then reads `b` and `c`,
/// which push `a`'s value out of the cache. Returns `a`'s inode.
async fn hold_a_then_evict_it(s: &Setup) -> u64 {
    for n in ["a", "b", "c"] {
        s.vault.put(n, &[b'x'; 800]);
        long_ago(&s.vault, n);
    }
    let held = s.core.lookup(ROOT_INO, OsStr::new("a")).await.unwrap();
    read(&s.core, "b").await.unwrap();
    read(&s.core, "c").await.unwrap();
    held.attr.ino
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
    cache_many(&s, 20).await;
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
        let held = hold_a_then_evict_it(&s).await;
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
            s.kernel.inodes.lock().unwrap().contains(&held),
            "{revocation}: the kernel is told to drop the evicted inode's pages"
        );
        assert!(s.core.read(held, 0, 10).await.is_err(), "{revocation}");
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
async fn readability_checks_do_not_storm_a_failing_vault() {
    let s = setup(always_recheck());
    cache_many(&s, 20).await;
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
    // `a` is evicted but its inode held, so its checks GET the vault
    // directly: that is where the injected panic fires.
    let held = hold_a_then_evict_it(&s).await;
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
    while !s.kernel.inodes.lock().unwrap().contains(&held) {
        assert!(std::time::Instant::now() < deadline, "revocation seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    task.await.expect("the refresher task ends normally");
}
