//! One cached version of a secret, and the key that names a version.

use std::sync::Mutex;

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
}

impl CachedSecret {
    pub fn key(&self) -> SecretKey {
        SecretKey {
            name: self.props.name.clone(),
            version: self.props.version.clone(),
        }
    }

    pub(super) fn cost(&self) -> u64 {
        self.value.len() as u64 + ENTRY_OVERHEAD
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
