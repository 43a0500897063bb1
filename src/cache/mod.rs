//! The value cache: memory only, bounded by bytes, least-recently-read first
//! out, with single-flight fetches, short negative caching and wiping of
//! evicted values.
//!
//! Values are keyed by (name, version) so a version, once fetched, never
//! changes under a reader; `latest` maps a name to the version a fresh lookup
//! should see. Cached reads never wait on the vault: only a miss fetches.

mod budget;
mod entry;
mod fetch;
mod pool;

use std::any::Any;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use lru::LruCache;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::CacheConfig;
use crate::secret::{Secret, SecretName, VersionId};
use crate::sync::lock;
use crate::vault::{Vault, VaultError};

pub use budget::Budget;
use entry::Derived;
#[cfg(test)]
use entry::ENTRY_OVERHEAD;
pub use entry::{CachedSecret, SecretKey};
pub use fetch::backoff;
pub use pool::BytePool;

/// Names whose refusal is remembered at most. Each costs under 300 bytes of
/// locked memory; past this the oldest refusal is forgotten first, so a
/// flood of random names cannot grow the process.
pub const NEGATIVE_CACHE_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FetchKey {
    name: SecretName,
    version: Option<VersionId>,
}

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<CachedSecret>, VaultError>>>;

struct State {
    values: LruCache<SecretKey, Arc<CachedSecret>>,
    bytes: u64,
    latest: HashMap<SecretName, VersionId>,
    negative: LruCache<SecretName, (Instant, VaultError)>,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub fetches: AtomicU64,
    pub fetch_errors: AtomicU64,
    pub evictions: AtomicU64,
    /// Lookups of unlisted names answered without asking the vault because
    /// the cold-lookup budget was spent.
    pub lookups_refused: AtomicU64,
}

/// The cache in front of a [`Vault`].
pub struct SecretCache {
    vault: Arc<dyn Vault>,
    cfg: CacheConfig,
    state: Mutex<State>,
    inflight: Mutex<HashMap<FetchKey, SharedFetch>>,
    permits: Semaphore,
    /// Cold fetches that lookups of names missing from the listing may make.
    cold_lookups: Budget,
    /// The byte budget, shared with the mount's caches of other vaults.
    pool: Arc<BytePool>,
    pub stats: CacheStats,
}

impl SecretCache {
    /// A cache with a byte budget of its own (`cfg.max_bytes`).
    pub fn new(vault: Arc<dyn Vault>, cfg: CacheConfig) -> Arc<SecretCache> {
        let pool = BytePool::new(cfg.max_bytes);
        SecretCache::in_pool(vault, cfg, &pool)
    }

    /// A cache charging its values to `pool`, shared with other caches.
    pub fn in_pool(
        vault: Arc<dyn Vault>,
        cfg: CacheConfig,
        pool: &Arc<BytePool>,
    ) -> Arc<SecretCache> {
        let cache = Arc::new(SecretCache {
            vault,
            permits: Semaphore::new(cfg.max_concurrent_fetches.max(1)),
            cold_lookups: Budget::new(cfg.max_cold_lookups_per_10s),
            cfg,
            state: Mutex::new(State {
                values: LruCache::unbounded(),
                bytes: 0,
                latest: HashMap::new(),
                negative: LruCache::new(
                    NonZeroUsize::new(NEGATIVE_CACHE_MAX).unwrap_or(NonZeroUsize::MIN),
                ),
            }),
            inflight: Mutex::new(HashMap::new()),
            pool: Arc::clone(pool),
            stats: CacheStats::default(),
        });
        pool.join(&cache);
        cache
    }

    pub fn vault(&self) -> &Arc<dyn Vault> {
        &self.vault
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// The latest cached version of `name`, promoted in the LRU. Never waits.
    pub fn cached_latest(&self, name: &SecretName) -> Option<Arc<CachedSecret>> {
        let hit = {
            let mut st = lock(&self.state);
            match st.latest.get(name).cloned() {
                Some(version) => st
                    .values
                    .get(&SecretKey {
                        name: name.clone(),
                        version,
                    })
                    .cloned(),
                None => None,
            }
        };
        self.count_lookup(hit.is_some());
        hit
    }

    /// A cached version, promoted in the LRU. Never waits.
    pub fn cached(&self, key: &SecretKey) -> Option<Arc<CachedSecret>> {
        let hit = lock(&self.state).values.get(key).cloned();
        self.count_lookup(hit.is_some());
        hit
    }

    fn count_lookup(&self, hit: bool) {
        let c = if hit {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A remembered refusal for `name`, if still fresh.
    pub fn negative(&self, name: &SecretName) -> Option<VaultError> {
        let mut st = lock(&self.state);
        match st.negative.peek(name) {
            Some((at, err)) if at.elapsed() < self.cfg.negative_ttl => Some(err.clone()),
            Some(_) => {
                st.negative.pop(name);
                None
            }
            None => None,
        }
    }

    /// Remembered refusals (at most [`NEGATIVE_CACHE_MAX`]).
    pub fn negative_len(&self) -> usize {
        lock(&self.state).negative.len()
    }

    /// Takes one cold fetch for a lookup of a name the listing does not
    /// hold, if the per-mount budget has room.
    pub fn try_take_cold_lookup(&self) -> bool {
        self.cold_lookups.try_take()
    }

    /// Time until the cold-lookup budget has room again.
    pub fn cold_lookup_wait(&self) -> Duration {
        self.cold_lookups.wait_hint()
    }

    /// The latest version of `name`: from memory if cached, otherwise fetched
    /// (one GET however many callers ask at once).
    pub async fn latest(
        self: &Arc<Self>,
        name: &SecretName,
    ) -> Result<Arc<CachedSecret>, VaultError> {
        if let Some(hit) = self.cached_latest(name) {
            return Ok(hit);
        }
        if let Some(err) = self.negative(name) {
            return Err(err);
        }
        self.fetch(name.clone(), None).await
    }

    /// A specific version: from memory, or fetched by version id.
    pub async fn version(
        self: &Arc<Self>,
        key: &SecretKey,
    ) -> Result<Arc<CachedSecret>, VaultError> {
        if let Some(hit) = self.cached(key) {
            return Ok(hit);
        }
        self.fetch(key.name.clone(), Some(key.version.clone()))
            .await
    }

    /// Asks the vault for the latest version now, bypassing the cache (but
    /// joining a fetch already under way), and caches the answer.
    pub async fn fetch_latest(
        self: &Arc<Self>,
        name: &SecretName,
    ) -> Result<Arc<CachedSecret>, VaultError> {
        self.fetch(name.clone(), None).await
    }

    fn insert(&self, secret: Secret, is_latest: bool) -> Arc<CachedSecret> {
        let now = Instant::now();
        let entry = Arc::new(CachedSecret {
            props: secret.props,
            value: secret.value,
            verified_at: Mutex::new(now),
            accessed_at: Mutex::new(now),
            fetched_at: now,
            fetched_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            derived: OnceLock::new(),
        });
        let key = entry.key();
        let mut st = lock(&self.state);
        if is_latest {
            st.latest.insert(key.name.clone(), key.version.clone());
            st.negative.pop(&key.name);
        }
        let cost = entry.cost();
        if let Some(old) = st.values.put(key, Arc::clone(&entry)) {
            self.release(&mut st, old.cost());
        }
        self.charge(&mut st, cost);
        self.evict_over_budget(&mut st);
        drop(st);
        self.pool.settle();
        entry
    }

    /// Evicts least recently read versions (with what was derived from
    /// them) until the budget holds, keeping at least one.
    fn evict_over_budget(&self, st: &mut State) {
        while self.pool.over() && st.values.len() > 1 {
            let Some((k, v)) = st.values.pop_lru() else {
                break;
            };
            self.release(st, v.cost());
            if st.latest.get(&k.name) == Some(&k.version) {
                st.latest.remove(&k.name);
            }
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            // `v` drops here; its bytes are wiped once no reader holds it.
        }
    }

    /// Attaches `value`, derived from `entry`'s value and holding `bytes`
    /// bytes (a certificate's files), to `entry`: charged against the byte
    /// budget and evicted, revoked and wiped with that version. Returns
    /// what is attached: `value`, or what another caller attached first.
    pub fn attach<T: Any + Send + Sync>(
        &self,
        entry: &Arc<CachedSecret>,
        bytes: u64,
        value: Arc<T>,
    ) -> Arc<T> {
        let mut st = lock(&self.state);
        if let Some(first) = entry.derived::<T>() {
            return first;
        }
        let cached = st
            .values
            .peek(&entry.key())
            .is_some_and(|e| Arc::ptr_eq(e, entry));
        let derived = Derived {
            bytes,
            value: Arc::clone(&value) as Arc<dyn Any + Send + Sync>,
        };
        if entry.derived.set(derived).is_ok() && cached {
            // Charged only while cached: an entry already evicted lives
            // only as long as its readers, and nothing counts it.
            self.charge(&mut st, bytes);
            self.evict_over_budget(&mut st);
            drop(st);
            self.pool.settle();
        }
        value
    }

    /// A cached version without promoting it or counting a lookup, for
    /// metadata.
    pub fn peek(&self, key: &SecretKey) -> Option<Arc<CachedSecret>> {
        lock(&self.state).values.peek(key).cloned()
    }

    /// Forgets every version of `name` (revocation). Values are wiped as soon
    /// as no reader holds them.
    pub fn remove(&self, name: &SecretName) {
        let mut st = lock(&self.state);
        st.latest.remove(name);
        let keys: Vec<SecretKey> = st
            .values
            .iter()
            .filter(|(k, _)| &k.name == name)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(v) = st.values.pop(&k) {
                self.release(&mut st, v.cost());
            }
        }
    }

    /// Drops every cached version of `name` but the latest: after a rotation
    /// the old value is wiped as soon as no read holds it. A file still open
    /// on the old version is served from the kernel page cache, or fetched by
    /// version id if the kernel dropped those pages.
    pub fn drop_old_versions(&self, name: &SecretName) {
        let mut st = lock(&self.state);
        let latest = st.latest.get(name).cloned();
        let keys: Vec<SecretKey> = st
            .values
            .iter()
            .filter(|(k, _)| &k.name == name && Some(&k.version) != latest.as_ref())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(v) = st.values.pop(&k) {
                self.release(&mut st, v.cost());
            }
        }
    }

    /// Remembers a refusal for `name` for the negative TTL.
    pub fn remember_refusal(&self, name: &SecretName, err: VaultError) {
        lock(&self.state)
            .negative
            .put(name.clone(), (Instant::now(), err));
    }

    /// Names whose latest version is cached, with that entry.
    pub fn latest_entries(&self) -> Vec<Arc<CachedSecret>> {
        let st = lock(&self.state);
        st.latest
            .iter()
            .filter_map(|(name, version)| {
                st.values
                    .peek(&SecretKey {
                        name: name.clone(),
                        version: version.clone(),
                    })
                    .cloned()
            })
            .collect()
    }

    /// Bytes currently charged against the budget.
    pub fn bytes(&self) -> u64 {
        lock(&self.state).bytes
    }

    /// Number of cached versions.
    pub fn len(&self) -> usize {
        lock(&self.state).values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
