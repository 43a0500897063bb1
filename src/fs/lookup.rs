//! Lookups of secrets in the root: binding a version to an inode, and the
//! budget of cold fetches for names the listing lacks.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::{lock, special, Entry, FsCore, Node, ROOT_INO};
use crate::cache::CachedSecret;
use crate::error::FsError;
use crate::secret::SecretName;
use crate::vault::VaultError;

impl FsCore {
    /// Binds (or re-binds) the version in `secret` to an inode and counts one
    /// kernel lookup reference on it.
    fn bind(&self, secret: &CachedSecret) -> Entry {
        let key = secret.key();
        let mut inodes = lock(&self.inodes);
        let ino = match inodes.by_key.get(&key).copied() {
            Some(ino) => ino,
            None => {
                let ino = inodes.alloc();
                inodes.by_key.insert(key.clone(), ino);
                ino
            }
        };
        let node = inodes.by_ino.entry(ino).or_insert_with(|| Node {
            key,
            props: Arc::new(secret.props.clone()),
            size: secret.value.len() as u64,
            lookups: 0,
            revoked: None,
        });
        node.lookups += 1;
        node.revoked = None;
        let attr = self.file_attr(ino, node);
        Entry {
            attr,
            entry_ttl: self.timings.entry_ttl,
            attr_ttl: self.timings.attr_ttl,
        }
    }

    /// Resolves `name` in `parent`. Fetches the value on first access so the
    /// size is exact; answers from memory afterwards.
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> Result<Entry, FsError> {
        if let Some(r) = self.view_lookup(parent, name).await {
            return r;
        }
        if parent == ROOT_INO || special::is_special(parent) {
            if let Some(r) = self.special_lookup(parent, name).await {
                return r;
            }
        }
        if parent != ROOT_INO {
            return Err(FsError::NotDir);
        }
        let name = name
            .to_str()
            .and_then(SecretName::parse)
            .ok_or(FsError::NoEntry)?;
        let secret = match self.cache.cached_latest(&name) {
            Some(hit) => hit,
            None => {
                if let Some(err) = self.cache.negative(&name) {
                    return Err(self.vault_err(&name, err));
                }
                self.admit_cold_lookup(&name).await?;
                self.cache
                    .fetch_latest(&name)
                    .await
                    .map_err(|e| self.vault_err(&name, e))?
            }
        };
        self.metrics.lookup(name.as_str());
        self.note_use(&secret);
        Ok(self.bind(&secret))
    }

    /// Lets a cold fetch for a lookup go ahead. Names in the listing always
    /// may: they are bounded by the vault's size and cached once read. Other
    /// names (random names from a local user, or any name when the identity
    /// cannot list) take from a per-mount budget. With a listing loaded, a
    /// name it lacks is answered ENOENT once the budget is spent (a new
    /// secret shows up with the next listing); without one, the lookup waits
    /// for room within the fetch timeout.
    pub(super) async fn admit_cold_lookup(&self, name: &SecretName) -> Result<(), FsError> {
        let listed = {
            let l = lock(&self.listing);
            l.loaded_at
                .map(|_| l.names.binary_search_by(|s| s.name.cmp(name)).is_ok())
        };
        if listed == Some(true) || self.cache.try_take_cold_lookup() {
            return Ok(());
        }
        self.cache
            .stats
            .lookups_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if listed == Some(false) {
            return Err(FsError::NoEntry);
        }
        let timeout = self.cache.config().fetch_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let wait = self.cache.cold_lookup_wait().max(Duration::from_millis(10));
            if tokio::time::Instant::now() + wait >= deadline {
                return Err(self.vault_err(name, VaultError::Timeout(timeout)));
            }
            tokio::time::sleep(wait).await;
            if self.cache.try_take_cold_lookup() {
                return Ok(());
            }
        }
    }
}
