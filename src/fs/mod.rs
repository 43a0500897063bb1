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
mod keys;
pub mod special;
mod versions;
mod xattr;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::cache::{CachedSecret, SecretCache, SecretKey};
use crate::config::OwnerConfig;
use crate::error::FsError;
use crate::metrics::MountMetrics;
use crate::secret::{SecretName, SecretProps, SecretSummary};
use crate::vault::{PageCount, VaultError};

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
    dir_entries: Mutex<Option<(Arc<Vec<SecretSummary>>, Arc<Vec<DirEntry>>)>>,
    /// `.versions`, `.certs` and `.keys`.
    special: special::Special,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    async fn admit_cold_lookup(&self, name: &SecretName) -> Result<(), FsError> {
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

    /// The kernel dropped `n` references to `ino`; an inode with none left is
    /// forgotten (its value stays cached by the LRU until evicted).
    pub fn forget(&self, ino: u64, n: u64) {
        if special::is_special(ino) {
            return self.special_forget(ino, n);
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

    /// The vault's secret names, loading the listing if none was loaded yet.
    /// A loaded listing is served as is; the refresher replaces it.
    pub async fn listing(&self) -> Result<Arc<Vec<SecretSummary>>, FsError> {
        if let Some(names) = self.loaded_listing() {
            return Ok(names);
        }
        let _guard = self.list_lock.lock().await;
        if let Some(names) = self.loaded_listing() {
            return Ok(names);
        }
        self.reload_listing().await
    }

    fn loaded_listing(&self) -> Option<Arc<Vec<SecretSummary>>> {
        let l = lock(&self.listing);
        l.loaded_at.map(|_| Arc::clone(&l.names))
    }

    /// Lists the vault now and replaces the listing.
    pub async fn reload_listing(&self) -> Result<Arc<Vec<SecretSummary>>, FsError> {
        let result = self.cache.vault().list(&PageCount::default()).await;
        let mut l = lock(&self.listing);
        match result {
            Ok(mut names) => {
                names.sort_by(|a, b| a.name.cmp(&b.name));
                l.names = Arc::new(names);
                l.loaded_at = Some(Instant::now());
                Ok(Arc::clone(&l.names))
            }
            Err(source) => Err(FsError::List {
                vault: self.vault_url.clone(),
                source,
            }),
        }
    }

    /// Replaces the listing with one obtained elsewhere (the refresher).
    pub fn set_listing(&self, mut names: Vec<SecretSummary>) {
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let mut l = lock(&self.listing);
        l.names = Arc::new(names);
        l.loaded_at = Some(Instant::now());
    }

    /// Opens the root directory: takes a snapshot of the listing so that one
    /// directory stream sees one consistent list across readdir calls.
    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        if special::is_special(ino) {
            let entries = Arc::new(self.special_opendir(ino).await?);
            return Ok(self.dir_handle(entries));
        }
        if ino != ROOT_INO {
            return Err(FsError::NotDir);
        }
        let names = self.listing().await?;
        let cached = lock(&self.dir_entries)
            .as_ref()
            .filter(|(n, _)| Arc::ptr_eq(n, &names))
            .map(|(_, e)| Arc::clone(e));
        let entries = match cached {
            Some(e) => e,
            None => {
                let e = Arc::new(self.dir_entries_for(&names));
                *lock(&self.dir_entries) = Some((Arc::clone(&names), Arc::clone(&e)));
                e
            }
        };
        Ok(self.dir_handle(entries))
    }

    fn dir_handle(&self, entries: Arc<Vec<DirEntry>>) -> u64 {
        let mut handles = lock(&self.dir_handles);
        let fh = (0..u64::MAX)
            .map(|_| fastrand::u64(1..))
            .find(|fh| !handles.contains_key(fh))
            .unwrap_or(1);
        handles.insert(fh, entries);
        fh
    }

    /// The directory entries for a listing, with a stable d_ino per name.
    fn dir_entries_for(&self, names: &[SecretSummary]) -> Vec<DirEntry> {
        let mut inodes = lock(&self.inodes);
        let mut entries = Vec::with_capacity(names.len() + 2);
        entries.push(DirEntry {
            ino: ROOT_INO,
            kind: Kind::Directory,
            name: ".".into(),
        });
        entries.push(DirEntry {
            ino: ROOT_INO,
            kind: Kind::Directory,
            name: "..".into(),
        });
        for s in names.iter() {
            let id = match inodes.listing_ids.get(&s.name) {
                Some(&id) => id,
                None => {
                    let id = inodes.alloc();
                    inodes.listing_ids.insert(s.name.clone(), id);
                    id
                }
            };
            entries.push(DirEntry {
                ino: id,
                kind: Kind::File,
                name: s.name.to_string(),
            });
        }
        entries
    }

    /// Entries of an open directory stream from `offset` on. Each entry's
    /// offset for the next call is its index + 1.
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>, FsError> {
        let _ = offset;
        lock(&self.dir_handles)
            .get(&fh)
            .cloned()
            .ok_or(FsError::NoEntry)
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.dir_handles).remove(&fh);
    }

    /// Extended attribute names of `ino`, NUL-terminated and concatenated.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        if ino == ROOT_INO {
            return Ok(xattr::join(&xattr::root_names()));
        }
        if special::is_special(ino) {
            return self.special_listxattr(ino);
        }
        let props = self.props(ino)?;
        Ok(xattr::join(&xattr::names(&props)))
    }

    /// The value of one extended attribute.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError> {
        let name = name.to_str().ok_or(FsError::NoAttr)?;
        if ino == ROOT_INO {
            return xattr::root_value(&self.vault_url, name).ok_or(FsError::NoAttr);
        }
        if special::is_special(ino) {
            return self.special_getxattr(ino, name);
        }
        let props = self.props(ino)?;
        xattr::value(&props, name).ok_or(FsError::NoAttr)
    }

    fn props(&self, ino: u64) -> Result<Arc<SecretProps>, FsError> {
        let inodes = lock(&self.inodes);
        Ok(Arc::clone(
            &inodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?.props,
        ))
    }

    /// The current listing (empty before the first one).
    pub fn current_listing(&self) -> Arc<Vec<SecretSummary>> {
        Arc::clone(&lock(&self.listing).names)
    }

    fn revoked(&self, ino: u64) -> Option<VaultError> {
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .and_then(|n| n.revoked.clone())
    }

    /// Marks every inode bound to any version of `name` as revoked, so that
    /// a descriptor opened on an older version cannot fetch that version
    /// again once the kernel drops its pages; returns those inodes.
    pub fn revoke_inodes(&self, name: &SecretName, why: &VaultError) -> Vec<u64> {
        let mut revoked = self.special_revoke(name, why);
        let mut inodes = lock(&self.inodes);
        revoked.extend(
            inodes
                .by_ino
                .iter_mut()
                .filter(|(_, n)| &n.key.name == name)
                .map(|(ino, n)| {
                    n.revoked = Some(why.clone());
                    *ino
                }),
        );
        revoked
    }

    /// Names with an inode the kernel may still cache pages of, with the
    /// properties of each bound version (whether or not the value is still
    /// in the value cache).
    pub fn bound_names(&self) -> HashMap<SecretName, Vec<Arc<SecretProps>>> {
        let inodes = lock(&self.inodes);
        let mut out: HashMap<SecretName, Vec<Arc<SecretProps>>> = HashMap::new();
        for n in inodes.by_ino.values().filter(|n| n.revoked.is_none()) {
            out.entry(n.key.name.clone())
                .or_default()
                .push(Arc::clone(&n.props));
        }
        drop(inodes);
        for (name, props) in self.special_bound() {
            out.entry(name).or_default().push(props);
        }
        out
    }

    /// Every inode bound to a version of `name`.
    pub fn inodes_of(&self, name: &SecretName) -> Vec<u64> {
        let mut out = self.special_inodes_of(name);
        let inodes = lock(&self.inodes);
        out.extend(
            inodes
                .by_ino
                .iter()
                .filter(|(_, n)| &n.key.name == name)
                .map(|(ino, _)| *ino),
        );
        out
    }

    /// Number of names in the current listing, for statfs.
    pub fn file_count(&self) -> u64 {
        lock(&self.listing).names.len() as u64
    }
}

#[cfg(test)]
mod tests;
