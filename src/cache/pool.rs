//! One byte budget shared by the value caches of a mount. A mount whose
//! views read from other vaults has one cache per vault (so a value of one
//! vault can never answer for another), and `cache_bytes` bounds them
//! together: the locked region is sized for one budget per mount.
//!
//! A cache over the budget first gives up its own least recently read
//! values, then the other caches give up theirs; each keeps at least one
//! value, as a lone cache does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{lock, SecretCache, State};

/// Bytes charged by every cache of one mount, against one limit.
#[derive(Debug)]
pub struct BytePool {
    max: u64,
    used: AtomicU64,
    caches: Mutex<Vec<Weak<SecretCache>>>,
}

impl BytePool {
    pub fn new(max: u64) -> Arc<BytePool> {
        Arc::new(BytePool {
            max,
            used: AtomicU64::new(0),
            caches: Mutex::new(Vec::new()),
        })
    }

    /// Bytes charged by all the caches.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(super) fn over(&self) -> bool {
        self.used() > self.max
    }

    pub(super) fn charge(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn release(&self, bytes: u64) {
        // Never below zero, whatever the order of concurrent updates.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }

    pub(super) fn join(&self, cache: &Arc<SecretCache>) {
        let mut caches = lock(&self.caches);
        caches.retain(|c| c.strong_count() > 0);
        caches.push(Arc::downgrade(cache));
    }

    /// Brings the caches back within the budget after one of them grew:
    /// each evicts its least recently read values while the pool is over.
    /// Takes one cache's lock at a time.
    pub(super) fn settle(&self) {
        if !self.over() {
            return;
        }
        let caches: Vec<Arc<SecretCache>> = lock(&self.caches)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for cache in caches {
            if !self.over() {
                break;
            }
            cache.shrink();
        }
    }
}

impl SecretCache {
    pub(super) fn charge(&self, st: &mut State, bytes: u64) {
        st.bytes += bytes;
        self.pool.charge(bytes);
    }

    pub(super) fn release(&self, st: &mut State, bytes: u64) {
        st.bytes -= bytes;
        self.pool.release(bytes);
    }

    /// Evicts this cache's least recently read values while the pool is
    /// over its budget (another cache of the mount grew).
    fn shrink(&self) {
        let mut st = lock(&self.state);
        self.evict_over_budget(&mut st);
    }
}

impl Drop for SecretCache {
    fn drop(&mut self) {
        // The pool may outlive this cache (another vault's cache holds it).
        self.pool.release(lock(&self.state).bytes);
    }
}
