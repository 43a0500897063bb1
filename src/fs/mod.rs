//! Filesystem semantics, without FUSE: names to inodes, attributes, reads,
//! directory listings and extended attributes. Returns plain structs and
//! [`FsError`]s; the `fuse` module turns them into kernel replies.
//!
//! Inodes are bound to one version of one secret. When a secret rotates, its
//! name is bound to a new inode; a file already open keeps its inode and so
//! keeps reading the bytes of the version it opened, at that version's size.
//! This is what lets the kernel cache pages and attributes of an inode for
//! as long as it likes: an inode's content never changes.

mod certs;
mod dir;
mod keys;
mod lookup;
pub mod special;
mod track;
mod versions;
pub mod view;
mod view_bytes;
mod view_nodes;
mod view_resolve;
mod view_track;
mod xattr;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::cache::{CachedSecret, SecretCache, SecretKey};
use crate::config::OwnerConfig;
use crate::error::FsError;
use crate::metrics::MountMetrics;
use crate::secret::{SecretName, SecretProps, SecretSummary};
use crate::sync::lock;
use crate::vault::VaultError;

/// The root directory's inode.
pub const ROOT_INO: u64 = 1;

/// Kernel cache lifetimes.
#[derive(Clone, Copy, Debug)]
pub struct FsTimings {
    /// How long the kernel may cache a name -> inode binding.
    pub entry_ttl: Duration,
    /// How long the kernel may cache an inode's attributes.
    pub attr_ttl: Duration,
}

/// How long a key's public part or a secret's version list is reused
/// before a lookup reads it from the vault again (the stale one is served
/// while the vault is unreachable).
const REREAD_AFTER: Duration = Duration::from_secs(30);

impl Default for FsTimings {
    fn default() -> Self {
        FsTimings {
            entry_ttl: Duration::from_secs(60),
            attr_ttl: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
}

/// Attributes of an inode.
#[derive(Clone, Debug)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
}

/// The answer to a lookup.
#[derive(Clone, Debug)]
pub struct Entry {
    pub attr: Attr,
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
}

/// One directory entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: String,
}

/// Bytes a file reads: a cached version, or a file derived from one.
pub(crate) trait Bytes: Send + Sync {
    fn bytes(&self) -> &[u8];
}

impl Bytes for CachedSecret {
    fn bytes(&self) -> &[u8] {
        self.value.expose()
    }
}

/// Bytes of a read, borrowed from the cached version.
pub struct ReadData {
    secret: Arc<dyn Bytes>,
    start: usize,
    end: usize,
}

impl ReadData {
    fn new(secret: Arc<dyn Bytes>, offset: u64, size: u32) -> ReadData {
        let len = secret.bytes().len();
        let start = (offset.min(len as u64)) as usize;
        let end = start.saturating_add(size as usize).min(len);
        ReadData { secret, start, end }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.secret.bytes()[self.start..self.end]
    }
}

struct Node {
    key: SecretKey,
    props: Arc<SecretProps>,
    size: u64,
    lookups: u64,
    /// Set when the secret was revoked (deleted, disabled, permission
    /// lost): reads of this inode fail with it even if the vault would still
    /// serve this version by id. Cleared when a lookup binds it again.
    revoked: Option<VaultError>,
}

#[derive(Default)]
struct Inodes {
    by_ino: HashMap<u64, Node>,
    by_key: HashMap<SecretKey, u64>,
    /// Stable numbers for names in listings (d_ino); never used as inodes.
    listing_ids: HashMap<SecretName, u64>,
    next: u64,
}

impl Inodes {
    fn alloc(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

#[derive(Default)]
struct Listing {
    names: Arc<Vec<SecretSummary>>,
    loaded_at: Option<Instant>,
}

/// A listing and the root's directory entries built from it.
type ListingEntries = (Arc<Vec<SecretSummary>>, Arc<Vec<DirEntry>>);

/// The filesystem core shared by all FUSE worker threads.
pub struct FsCore {
    cache: Arc<SecretCache>,
    metrics: Arc<MountMetrics>,
    owner: OwnerConfig,
    timings: FsTimings,
    vault_url: String,
    mounted_at: SystemTime,
    inodes: Mutex<Inodes>,
    listing: Mutex<Listing>,
    /// Serializes listing fetches so concurrent readdirs make one listing.
    list_lock: tokio::sync::Mutex<()>,
    dir_handles: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    /// The entries built for the current listing, shared by every opendir
    /// until the listing is replaced.
    dir_entries: Mutex<Option<ListingEntries>>,
    /// `.versions`, `.certs` and `.keys`.
    special: special::Special,
    /// The declared views, when the mount has any.
    views: std::sync::OnceLock<view::ViewsHere>,
}

fn unix_time(secs: Option<i64>, fallback: SystemTime) -> SystemTime {
    match secs {
        Some(s) if s >= 0 => UNIX_EPOCH + Duration::from_secs(s as u64),
        _ => fallback,
    }
}

impl FsCore {
    #[cfg(test)]
    pub fn new(cache: Arc<SecretCache>, owner: OwnerConfig, timings: FsTimings) -> Arc<FsCore> {
        FsCore::with_metrics(cache, owner, timings, MountMetrics::detached())
    }

    pub fn with_metrics(
        cache: Arc<SecretCache>,
        owner: OwnerConfig,
        timings: FsTimings,
        metrics: Arc<MountMetrics>,
    ) -> Arc<FsCore> {
        let vault_url = cache.vault().url().to_string();
        metrics.attach_cache(&cache);
        Arc::new(FsCore {
            cache,
            metrics,
            owner,
            timings,
            vault_url,
            mounted_at: SystemTime::now(),
            inodes: Mutex::new(Inodes {
                next: ROOT_INO,
                ..Default::default()
            }),
            listing: Mutex::new(Listing::default()),
            list_lock: tokio::sync::Mutex::new(()),
            dir_handles: Mutex::new(HashMap::new()),
            dir_entries: Mutex::new(None),
            special: Default::default(),
            views: std::sync::OnceLock::new(),
        })
    }

    pub fn cache(&self) -> &Arc<SecretCache> {
        &self.cache
    }

    pub fn metrics(&self) -> &Arc<MountMetrics> {
        &self.metrics
    }

    fn note_use(&self, secret: &CachedSecret) {
        secret.touch();
        if secret.verified_at().elapsed() > self.metrics.stale_after {
            self.metrics
                .stale_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn vault_err(&self, name: &SecretName, source: VaultError) -> FsError {
        FsError::Vault {
            vault: self.vault_url.clone(),
            name: name.clone(),
            source,
        }
    }

    fn root_attr(&self) -> Attr {
        Attr {
            ino: ROOT_INO,
            kind: Kind::Directory,
            size: 0,
            perm: self.owner.dir_mode,
            uid: self.owner.uid,
            gid: self.owner.gid,
            nlink: 2,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
        }
    }

    fn file_attr(&self, ino: u64, node: &Node) -> Attr {
        let updated = unix_time(node.props.updated, self.mounted_at);
        Attr {
            ino,
            kind: Kind::File,
            size: node.size,
            perm: self.owner.file_mode,
            uid: self.owner.uid,
            gid: self.owner.gid,
            nlink: 1,
            mtime: updated,
            ctime: updated,
            crtime: unix_time(node.props.created, updated),
        }
    }

    /// The kernel dropped `n` references to `ino`; an inode with none left is
    /// forgotten (its value stays cached by the LRU until evicted).
    pub fn forget(&self, ino: u64, n: u64) {
        if special::is_special(ino) {
            return self.special_forget(ino, n);
        }
        if view::is_view(ino) {
            return self.view_forget(ino, n);
        }
        let mut inodes = lock(&self.inodes);
        let gone = match inodes.by_ino.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0
            }
            None => false,
        };
        if gone {
            if let Some(node) = inodes.by_ino.remove(&ino) {
                inodes.by_key.remove(&node.key);
            }
        }
    }

    pub fn getattr(&self, ino: u64) -> Result<(Attr, Duration), FsError> {
        if ino == ROOT_INO {
            return Ok((self.root_attr(), self.timings.attr_ttl));
        }
        if special::is_special(ino) {
            return self.special_getattr(ino);
        }
        if view::is_view(ino) {
            return Ok((self.view_getattr(ino)?, self.timings.attr_ttl));
        }
        let inodes = lock(&self.inodes);
        let node = inodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?;
        Ok((self.file_attr(ino, node), self.timings.attr_ttl))
    }

    fn node_key(&self, ino: u64) -> Result<SecretKey, FsError> {
        if ino == ROOT_INO {
            return Err(FsError::IsDir);
        }
        let inodes = lock(&self.inodes);
        Ok(inodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?.key.clone())
    }

    /// Reads from the version bound to `ino`. Served from memory when cached;
    /// only a version evicted since lookup is fetched again, by its version id.
    pub async fn read(&self, ino: u64, offset: u64, size: u32) -> Result<ReadData, FsError> {
        if special::is_special(ino) {
            let data = self.special_read(ino, offset, size).await?;
            self.count_read(data.bytes().len());
            return Ok(data);
        }
        if view::is_view(ino) {
            let data = self.view_read(ino, offset, size)?;
            self.count_read(data.bytes().len());
            return Ok(data);
        }
        let key = self.node_key(ino)?;
        if let Some(err) = self.revoked(ino) {
            return Err(self.vault_err(&key.name, err));
        }
        let secret = self
            .cache
            .version(&key)
            .await
            .map_err(|e| self.vault_err(&key.name, e))?;
        self.note_use(&secret);
        let data = ReadData::new(secret, offset, size);
        self.count_read(data.bytes().len());
        Ok(data)
    }

    fn count_read(&self, n: usize) {
        self.metrics
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .read_bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
