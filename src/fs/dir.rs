//! The root directory's listing and open directory streams: the vault's
//! names (with the views' top names when the mount has views), and the
//! entries of the special and view directories.

use std::sync::Arc;

use tokio::time::Instant;

use super::{lock, special, view, DirEntry, FsCore, Kind, ROOT_INO};
use crate::error::FsError;
use crate::secret::SecretSummary;
use crate::vault::PageCount;

impl FsCore {
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
        if view::is_view(ino) {
            let entries = Arc::new(self.view_opendir(ino)?);
            return Ok(self.dir_handle(entries));
        }
        if ino != ROOT_INO {
            return Err(FsError::NotDir);
        }
        if self.views().is_some_and(|v| v.only()) {
            // Only the views: the vault's listing is neither needed nor shown.
            let entries = Arc::new(self.view_opendir(ROOT_INO)?);
            return Ok(self.dir_handle(entries));
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

    /// The directory entries for a listing, with a stable d_ino per name,
    /// and the views' top names (a view hides a secret of the same name).
    fn dir_entries_for(&self, names: &[SecretSummary]) -> Vec<DirEntry> {
        let tops = self.views().map(|v| v.root_entries()).unwrap_or_default();
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
        for s in names
            .iter()
            .filter(|s| !tops.iter().any(|t| t.name == s.name.as_str()))
        {
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
        entries.extend(tops);
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

    /// The current listing (empty before the first one).
    pub fn current_listing(&self) -> Arc<Vec<SecretSummary>> {
        Arc::clone(&lock(&self.listing).names)
    }

    /// Number of names in the current listing, for statfs.
    pub fn file_count(&self) -> u64 {
        lock(&self.listing).names.len() as u64
    }
}
