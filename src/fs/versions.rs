//! `.versions/<name>/<version>`: every version of a secret, each file
//! bound to one version and never changing; and the extended attributes of
//! the special namespace's nodes.

use super::REREAD_AFTER;
use std::sync::Arc;
use std::time::Instant;

use super::special::{fixed_dir, What};
use super::{lock, Entry, FsCore, Kind};
use crate::cache::SecretKey;
use crate::error::FsError;
use crate::secret::{SecretName, VersionId};
use crate::vault::VersionItem;

impl FsCore {
    pub(super) fn lookup_versions_dir(&self, name: &str) -> Result<Entry, FsError> {
        let secret = SecretName::parse(name).ok_or(FsError::NoEntry)?;
        let known = {
            let l = lock(&self.listing);
            l.loaded_at
                .map(|_| l.names.binary_search_by(|s| s.name.cmp(&secret)).is_ok())
        };
        if known == Some(false) && self.cache.cached_latest(&secret).is_none() {
            return Err(FsError::NoEntry);
        }
        let attr = self.bind_special(What::VersionsOf(secret), Kind::Directory, 0, None, None);
        Ok(self.special_entry(attr, self.timings.entry_ttl))
    }

    /// The versions of `name`, newest first, from a listing at most one
    /// listing TTL old (`fresh` asks for that bound; otherwise any).
    pub(super) async fn version_list(
        &self,
        name: &SecretName,
        fresh: bool,
    ) -> Result<Arc<Vec<VersionItem>>, FsError> {
        // A latest version the cache knows and the listing lacks (a
        // rotation seen by the refresher) makes the listing stale at once.
        let latest = self
            .cache
            .cached_latest(name)
            .map(|s| s.props.version.clone());
        if let Some((at, list)) = lock(&self.special.versions).get(name) {
            let current = latest
                .as_ref()
                .is_none_or(|v| list.iter().any(|i| &i.version == v));
            if !fresh || (current && at.elapsed() < REREAD_AFTER) {
                return Ok(Arc::clone(list));
            }
        }
        let mut list = self
            .cache
            .vault()
            .versions(name)
            .await
            .map_err(|e| self.vault_err(name, e))?;
        list.sort_by(|a, b| b.created.cmp(&a.created).then(b.version.cmp(&a.version)));
        let list = Arc::new(list);
        lock(&self.special.versions).insert(name.clone(), (Instant::now(), Arc::clone(&list)));
        Ok(list)
    }

    pub(super) async fn lookup_version_file(
        &self,
        name: &SecretName,
        version: &str,
    ) -> Result<Entry, FsError> {
        let valid = !version.is_empty()
            && version.len() <= 64
            && version.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(FsError::NoEntry);
        }
        let key = SecretKey {
            name: name.clone(),
            version: VersionId::new(version),
        };
        let secret = match self.cache.cached(&key) {
            Some(s) => s,
            None => {
                // Only versions the vault listed are fetched freely; any
                // other id takes from the cold-lookup budget.
                let listed = self.version_list(name, false).await?;
                if !listed.iter().any(|v| v.version == key.version) {
                    return Err(FsError::NoEntry);
                }
                self.cache
                    .version(&key)
                    .await
                    .map_err(|e| self.vault_err(name, e))?
            }
        };
        self.note_use(&secret);
        let props = Arc::new(secret.props.clone());
        let size = secret.value.len() as u64;
        let mtime = props.updated;
        let attr = self.bind_special(What::Version(key), Kind::File, size, Some(props), mtime);
        // A version never changes: the kernel may keep it as long as a
        // secret's entry.
        Ok(self.special_entry(attr, self.timings.entry_ttl))
    }
}

impl FsCore {
    /// Extended attributes of special nodes: a bound version's as a
    /// secret's, and a certificate's `x5t`, `not_after`, `subject`, `issuer`.
    fn special_xattrs(&self, ino: u64) -> Result<Vec<(String, Vec<u8>)>, FsError> {
        if fixed_dir(ino).is_some() {
            return Ok(Vec::new());
        }
        let (props, what) = self.special_props(ino)?;
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(p) = &props {
            for n in super::xattr::names(p) {
                if let Some(v) = super::xattr::value(p, &n) {
                    out.push((n, v));
                }
            }
        }
        if let Some(leaf) = self.cert_leaf(&what) {
            for (k, v) in super::xattr::cert_fields(&leaf) {
                if let Some(v) = v {
                    out.push((super::xattr::prefixed(k), v.into_bytes()));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn special_listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let names: Vec<String> = self
            .special_xattrs(ino)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        Ok(super::xattr::join(&names))
    }

    pub(super) fn special_getxattr(&self, ino: u64, name: &str) -> Result<Vec<u8>, FsError> {
        self.special_xattrs(ino)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or(FsError::NoAttr)
    }
}
