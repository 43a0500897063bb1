//! One cached version of a secret, and the key that names a version.

use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::time::Instant;

use super::lock;
use crate::secret::{SecretBytes, SecretName, SecretProps, VersionId};

/// Bytes charged per entry on top of its value, for names, metadata and the
/// map itself, so a budget also bounds many tiny secrets.
pub(super) const ENTRY_OVERHEAD: u64 = 512;

/// One version of one secret, as cached.
#[derive(Debug)]
pub struct CachedSecret {
    pub props: SecretProps,
    pub value: SecretBytes,
    /// When the vault last confirmed this is the latest version.
    pub(super) verified_at: Mutex<Instant>,
    /// When the kernel last asked for it (lookup, getattr or read).
    pub(super) accessed_at: Mutex<Instant>,
    /// When the vault answered the GET that produced it: the last proof that
    /// the identity may read it.
    pub(super) fetched_at: Instant,
    /// Wall-clock second of the fetch. A list item whose `updated` is not
    /// older than this may hide a later version made in the same second.
    pub fetched_unix: i64,
    /// What was derived from the value (a certificate's files), set at most
    /// once under the cache's lock, charged against the byte budget with
    /// the value and dropped with it.
    pub(super) derived: OnceLock<Derived>,
}

/// Material derived from a cached value, with the bytes it holds.
pub(super) struct Derived {
    pub(super) bytes: u64,
    pub(super) value: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Derived({} bytes, [REDACTED])", self.bytes)
    }
}

impl CachedSecret {
    pub fn key(&self) -> SecretKey {
        SecretKey {
            name: self.props.name.clone(),
            version: self.props.version.clone(),
        }
    }

    pub(super) fn cost(&self) -> u64 {
        let derived = self.derived.get().map_or(0, |d| d.bytes);
        self.value.len() as u64 + ENTRY_OVERHEAD + derived
    }

    /// What was derived from this value, if it is a `T`.
    pub fn derived<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let d = self.derived.get()?;
        Arc::clone(&d.value).downcast::<T>().ok()
    }

    pub fn verified_at(&self) -> Instant {
        *lock(&self.verified_at)
    }

    pub fn mark_verified(&self, at: Instant) {
        *lock(&self.verified_at) = at;
    }

    /// When the GET that produced this entry was answered.
    pub fn fetched_at(&self) -> Instant {
        self.fetched_at
    }

    pub fn accessed_at(&self) -> Instant {
        *lock(&self.accessed_at)
    }

    /// Records a use by the kernel, for idle eviction.
    pub fn touch(&self) {
        *lock(&self.accessed_at) = Instant::now();
    }
}

/// A specific version of a secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretKey {
    pub name: SecretName,
    pub version: VersionId,
}
