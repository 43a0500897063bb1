//! Tests of the value cache over an in-memory vault: single-flight fetches, the negative cache, the byte budget, retries and timeouts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::vault::memory::MemoryVault;

fn name(s: &str) -> SecretName {
    SecretName::parse(s).unwrap()
}

fn cache_with(vault: &Arc<MemoryVault>, cfg: CacheConfig) -> Arc<SecretCache> {
    SecretCache::new(vault.clone() as Arc<dyn Vault>, cfg)
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_reads_make_one_get() {
    let vault = Arc::new(MemoryVault::new());
    vault.put("db", b"pw");
    vault.set_delay(Some(Duration::from_millis(50)));
    let cache = cache_with(&vault, CacheConfig::default());
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move {
                c.latest(&name("db"))
                    .await
                    .map(|s| s.value.expose().to_vec())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), b"pw");
    }
    assert_eq!(vault.gets.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn not_found_is_remembered_briefly() {
    let vault = Arc::new(MemoryVault::new());
    let cfg = CacheConfig {
        negative_ttl: Duration::from_millis(100),
        ..Default::default()
    };
    let cache = cache_with(&vault, cfg);
    assert_eq!(
        cache.latest(&name("nope")).await.unwrap_err(),
        VaultError::NotFound
    );
    assert_eq!(
        cache.latest(&name("nope")).await.unwrap_err(),
        VaultError::NotFound
    );
    assert_eq!(vault.gets.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    vault.put("nope", b"now");
    assert_eq!(
        cache.latest(&name("nope")).await.unwrap().value.expose(),
        b"now"
    );
}

#[tokio::test(start_paused = true)]
async fn byte_budget_evicts_least_recently_read() {
    let vault = Arc::new(MemoryVault::new());
    for n in ["a", "b", "c"] {
        vault.put(n, &[7u8; 1000]);
    }
    let cfg = CacheConfig {
        max_bytes: 2 * (1000 + ENTRY_OVERHEAD),
        ..Default::default()
    };
    let cache = cache_with(&vault, cfg);
    cache.latest(&name("a")).await.unwrap();
    cache.latest(&name("b")).await.unwrap();
    // Reading a promotes it, so b is the least recently read.
    assert!(cache.cached_latest(&name("a")).is_some());
    cache.latest(&name("c")).await.unwrap();
    assert!(cache.cached_latest(&name("a")).is_some());
    assert!(cache.cached_latest(&name("b")).is_none());
    assert!(cache.cached_latest(&name("c")).is_some());
    assert!(cache.bytes() <= 2 * (1000 + ENTRY_OVERHEAD));
    assert_eq!(cache.stats.evictions.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_within_the_timeout() {
    let vault = Arc::new(MemoryVault::new());
    vault.put("x", b"v");
    vault.fail_with(VaultError::Unavailable("503".into()));
    let cfg = CacheConfig {
        fetch_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let cache = cache_with(&vault, cfg);
    let c = cache.clone();
    let read = tokio::spawn(async move { c.latest(&name("x")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    vault.clear_fault();
    assert_eq!(read.await.unwrap().unwrap().value.expose(), b"v");
    assert!(vault.gets.load(Ordering::SeqCst) >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_hung_vault_fails_within_the_fetch_timeout() {
    let vault = Arc::new(MemoryVault::new());
    vault.put("x", b"v");
    vault.set_delay(Some(Duration::from_secs(3600)));
    let cfg = CacheConfig {
        fetch_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let cache = cache_with(&vault, cfg);
    let err = cache.latest(&name("x")).await.unwrap_err();
    assert!(matches!(err, VaultError::Timeout(_)), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn old_versions_stay_readable_by_key() {
    let vault = Arc::new(MemoryVault::new());
    vault.put("r", b"one");
    let cache = cache_with(&vault, CacheConfig::default());
    let first = cache.latest(&name("r")).await.unwrap();
    vault.put("r", b"two");
    let second = cache.fetch_latest(&name("r")).await.unwrap();
    assert_eq!(second.value.expose(), b"two");
    assert_eq!(
        cache.version(&first.key()).await.unwrap().value.expose(),
        b"one"
    );
    assert_eq!(
        cache.cached_latest(&name("r")).unwrap().value.expose(),
        b"two"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_u64_max_neither_panics_nor_stalls() {
    let vault = Arc::new(MemoryVault::new());
    vault.put("db", b"pw");
    let cache = cache_with(
        &vault,
        CacheConfig {
            fetch_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    );
    vault.fail_with(VaultError::Throttled {
        retry_after: Some(Duration::from_secs(u64::MAX)),
    });
    let err = cache.latest(&name("db")).await.unwrap_err();
    assert!(matches!(err, VaultError::Throttled { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(crate::vault::MAX_SERVER_DELAY));
    assert_eq!(backoff(0, &err), crate::vault::MAX_SERVER_DELAY);
    // The next fetch is a fresh one, not a poisoned join.
    vault.clear_fault();
    assert_eq!(
        cache.latest(&name("db")).await.unwrap().value.expose(),
        b"pw"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_fetch_path_completes_every_waiter_with_an_error() {
    let vault = Arc::new(MemoryVault::new());
    vault.put("db", b"pw");
    vault.set_delay(Some(Duration::from_millis(20)));
    vault.panic_on_get(true);
    let cache = cache_with(&vault, CacheConfig::default());
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.latest(&name("db")).await.map(|_| ()) })
        })
        .collect();
    for w in waiters {
        let r = w.await.expect("the waiter itself does not panic");
        assert!(matches!(r, Err(VaultError::Unavailable(_))), "{r:?}");
    }
    vault.panic_on_get(false);
    assert_eq!(
        cache.latest(&name("db")).await.unwrap().value.expose(),
        b"pw",
        "no single-flight entry is left behind"
    );
}

#[tokio::test(start_paused = true)]
async fn the_negative_cache_is_bounded() {
    let vault = Arc::new(MemoryVault::new());
    let cache = cache_with(&vault, CacheConfig::default());
    for i in 0..NEGATIVE_CACHE_MAX + 500 {
        cache.remember_refusal(&name(&format!("n{i}")), VaultError::NotFound);
    }
    assert_eq!(cache.negative_len(), NEGATIVE_CACHE_MAX);
    // The newest refusals are the ones kept.
    let last = format!("n{}", NEGATIVE_CACHE_MAX + 499);
    assert_eq!(cache.negative(&name(&last)), Some(VaultError::NotFound));
}

#[tokio::test(start_paused = true)]
async fn caches_of_one_mount_share_one_byte_budget() {
    let (va, vb) = (Arc::new(MemoryVault::new()), Arc::new(MemoryVault::new()));
    for n in ["a", "b", "c"] {
        va.put(n, &[1u8; 1000]);
        // The same names in another vault hold other values.
        vb.put(n, &[2u8; 1000]);
    }
    let entry = 1000 + ENTRY_OVERHEAD;
    let cfg = CacheConfig {
        max_bytes: 3 * entry,
        ..Default::default()
    };
    let pool = BytePool::new(cfg.max_bytes);
    let a = SecretCache::in_pool(va.clone() as Arc<dyn Vault>, cfg.clone(), &pool);
    let b = SecretCache::in_pool(vb.clone() as Arc<dyn Vault>, cfg, &pool);
    for n in ["a", "b", "c"] {
        assert_eq!(a.latest(&name(n)).await.unwrap().value.expose()[0], 1);
    }
    assert_eq!(pool.used(), 3 * entry);
    // B's first value: B keeps it (a cache keeps at least one), so A gives
    // up its least recently read value, and the pool holds.
    assert_eq!(b.latest(&name("a")).await.unwrap().value.expose()[0], 2);
    assert!(pool.used() <= 3 * entry, "{}", pool.used());
    assert!(a.cached_latest(&name("a")).is_none());
    assert_eq!(a.len(), 2);
    // B grows again: its own least recently read value goes first.
    assert_eq!(b.latest(&name("b")).await.unwrap().value.expose()[0], 2);
    assert_eq!((a.len(), b.len()), (2, 1));
    assert!(b.cached_latest(&name("a")).is_none());
    assert_eq!(pool.used(), a.bytes() + b.bytes());
    // A cache dropped gives its bytes back.
    drop(a);
    assert_eq!(pool.used(), b.bytes());
}
