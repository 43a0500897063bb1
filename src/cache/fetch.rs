//! Fetching from the vault: one GET per (name, version) however many
//! callers ask at once (single flight), retried with backoff on transient
//! errors within the fetch timeout, and refusals remembered briefly.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::FutureExt;
use tokio::time::Instant;

use super::{lock, CachedSecret, FetchKey, SecretCache};
use crate::secret::{SecretName, VersionId};
use crate::vault::{clamp_server_delay, VaultError};

impl SecretCache {
    pub(super) async fn fetch(
        self: &Arc<Self>,
        name: SecretName,
        version: Option<VersionId>,
    ) -> Result<Arc<CachedSecret>, VaultError> {
        let key = FetchKey { name, version };
        let fut = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let this = Arc::clone(self);
                    let k = key.clone();
                    let f = async move {
                        // Whatever happens below (an answer, an error, a
                        // panic, or every waiter going away), the guard
                        // removes the entry, so no later lookup can join a
                        // fetch that will never complete.
                        let _guard = InflightGuard {
                            cache: &this,
                            key: &k,
                        };
                        // A panic is turned into an error for every waiter
                        // instead of unwinding into a FUSE worker thread.
                        match AssertUnwindSafe(this.fetch_uncoalesced(&k))
                            .catch_unwind()
                            .await
                        {
                            Ok(result) => result,
                            Err(_) => {
                                tracing::error!(secret = %k.name, vault = %this.vault.url(), "internal error while fetching; answering EIO (please report this)");
                                Err(VaultError::Unavailable(
                                    "internal error while fetching (see the log)".into(),
                                ))
                            }
                        }
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key, f.clone());
                    f
                }
            }
        };
        fut.await
    }

    /// One fetch with retries on transient errors, within the fetch timeout.
    async fn fetch_uncoalesced(&self, key: &FetchKey) -> Result<Arc<CachedSecret>, VaultError> {
        // A starting node's pacing is not the vault being slow: the fetch
        // timeout starts once the client admits the call.
        self.vault.admit().await;
        let timeout = self.cfg.fetch_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let _permit = match tokio::time::timeout_at(deadline, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => return Err(VaultError::Timeout(timeout)),
        };
        let mut attempt: u32 = 0;
        loop {
            self.stats.fetches.fetch_add(1, Ordering::Relaxed);
            let call = self.vault.get(&key.name, key.version.as_ref());
            let result = match tokio::time::timeout_at(deadline, call).await {
                Ok(r) => r,
                Err(_) => Err(VaultError::Timeout(timeout)),
            };
            match result {
                Ok(secret) => return Ok(self.insert(secret, key.version.is_none())),
                Err(err) => {
                    self.stats.fetch_errors.fetch_add(1, Ordering::Relaxed);
                    if err.is_transient() && !matches!(err, VaultError::Timeout(_)) {
                        let wait = backoff(attempt, &err);
                        if deadline
                            .checked_duration_since(tokio::time::Instant::now())
                            .is_some_and(|left| wait < left)
                        {
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                            continue;
                        }
                    }
                    if err.is_revocation() && key.version.is_none() {
                        lock(&self.state)
                            .negative
                            .put(key.name.clone(), (Instant::now(), err.clone()));
                    }
                    return Err(err);
                }
            }
        }
    }
}

/// Removes a single-flight entry when its fetch ends in any way.
struct InflightGuard<'a> {
    cache: &'a SecretCache,
    key: &'a FetchKey,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.cache.inflight).remove(self.key);
    }
}

/// Exponential backoff with full jitter from 100 ms, capped at 5 s; a
/// `Retry-After` from the vault wins, clamped to
/// [`crate::vault::MAX_SERVER_DELAY`].
pub fn backoff(attempt: u32, err: &VaultError) -> Duration {
    if let VaultError::Throttled {
        retry_after: Some(d),
    } = err
    {
        return clamp_server_delay(*d);
    }
    let cap = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(6))
        .min(Duration::from_secs(5));
    cap.mul_f64(0.5 + fastrand::f64() * 0.5)
}
