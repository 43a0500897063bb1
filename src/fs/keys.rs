//! `.keys/<name>.pem` and `.keys/<name>.jwk`: a key's public part.
//!
//! Each inode is one key version. A lookup serves the key as fetched
//! within the last listing TTL and otherwise asks the vault again. The
//! refresher re-reads every key in use once per refresh interval (see
//! `refresh::keys`): a rotation makes the kernel drop the names, and a key
//! deleted, disabled or no longer readable fails closed, open descriptors
//! included. If the vault is unreachable the last key is served (public
//! material) for up to `max_stale`.

use super::REREAD_AFTER;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::special::What;
use super::{lock, Bytes, Entry, FsCore, Kind};
use crate::error::FsError;
use crate::objects::jwk;
use crate::secret::{SecretBytes, SecretName, VersionId};
use crate::vault::{KeyBundle, VaultError};

/// A key as last fetched: when the vault last confirmed it and when it was
/// last used.
#[derive(Clone)]
pub(crate) struct KeyEntry {
    fetched: Instant,
    used: Instant,
    files: Arc<KeyFiles>,
}

impl KeyEntry {
    fn new(files: Arc<KeyFiles>) -> KeyEntry {
        let now = Instant::now();
        KeyEntry {
            fetched: now,
            used: now,
            files,
        }
    }
}

/// A disabled key is refused, whatever the vault's GET answered.
fn enabled(bundle: KeyBundle) -> Result<KeyBundle, VaultError> {
    if bundle.enabled {
        Ok(bundle)
    } else {
        Err(VaultError::Disabled)
    }
}

/// One key version's files.
pub(crate) struct KeyFiles {
    pub(super) version: VersionId,
    pem: Result<Arc<SecretBytes>, crate::objects::ObjectError>,
    jwk: Arc<SecretBytes>,
    pub(super) updated: Option<i64>,
}

impl KeyFiles {
    fn new(bundle: &KeyBundle) -> KeyFiles {
        KeyFiles {
            version: bundle.version.clone(),
            pem: jwk::to_pem(&bundle.jwk).map(|p| Arc::new(SecretBytes::from(&p[..]))),
            jwk: Arc::new(SecretBytes::from(&jwk::to_json(&bundle.jwk)[..])),
            updated: bundle.updated,
        }
    }

    fn part(&self, ext: &str) -> Result<Arc<SecretBytes>, crate::objects::ObjectError> {
        match ext {
            "pem" => self.pem.clone(),
            _ => Ok(Arc::clone(&self.jwk)),
        }
    }
}

fn split(file: &str) -> Option<(SecretName, &'static str)> {
    if let Some(n) = file.strip_suffix(".pem") {
        return Some((SecretName::parse(n)?, "pem"));
    }
    let n = file.strip_suffix(".jwk")?;
    Some((SecretName::parse(n)?, "jwk"))
}

impl FsCore {
    pub(super) async fn key_files(&self, name: &SecretName) -> Result<Arc<KeyFiles>, FsError> {
        let cached = lock(&self.special.keys).get_mut(name).map(|e| {
            e.used = Instant::now();
            e.clone()
        });
        if let Some(e) = &cached {
            if e.fetched.elapsed() < REREAD_AFTER {
                return Ok(Arc::clone(&e.files));
            }
        }
        if cached.is_none() && !self.cache.try_take_cold_lookup() {
            return Err(FsError::NoEntry);
        }
        match self.cache.vault().key(name, None).await.and_then(enabled) {
            Ok(bundle) => {
                let files = Arc::new(KeyFiles::new(&bundle));
                let entry = KeyEntry::new(Arc::clone(&files));
                lock(&self.special.keys).insert(name.clone(), entry);
                Ok(files)
            }
            Err(e) if e.is_transient() && cached.is_some() => {
                tracing::warn!(key = %name, vault = %self.vault_url, "{e}; serving the key fetched before");
                Ok(cached.map(|e| e.files).ok_or(FsError::Internal)?)
            }
            Err(e) => {
                lock(&self.special.keys).remove(name);
                Err(self.vault_err(name, e))
            }
        }
    }

    pub(super) async fn lookup_key_file(&self, file: &str) -> Result<Entry, FsError> {
        let (name, ext) = split(file).ok_or(FsError::NoEntry)?;
        let files = self.key_files(&name).await?;
        let bytes = files.part(ext).map_err(|e| self.object_err_key(&name, e))?;
        let what = What::KeyFile(name, files.version.clone(), ext);
        let attr = self.bind_special(what, Kind::File, bytes.len() as u64, None, files.updated);
        Ok(self.special_entry(attr, self.timings.entry_ttl.min(REREAD_AFTER)))
    }

    fn object_err_key(&self, name: &SecretName, source: crate::objects::ObjectError) -> FsError {
        FsError::Object {
            vault: self.vault_url.clone(),
            name: name.clone(),
            source,
        }
    }

    /// The bytes of one key version: from memory, or that version fetched
    /// again by id if the key rotated since the lookup.
    pub(super) async fn key_part(
        &self,
        name: &SecretName,
        version: &VersionId,
        ext: &str,
    ) -> Result<Arc<dyn Bytes>, FsError> {
        let cached = lock(&self.special.keys)
            .get_mut(name)
            .filter(|e| &e.files.version == version)
            .map(|e| {
                e.used = Instant::now();
                Arc::clone(&e.files)
            });
        let files = match cached {
            Some(f) => f,
            None => {
                let bundle = self
                    .cache
                    .vault()
                    .key(name, Some(version))
                    .await
                    .and_then(enabled)
                    .map_err(|e| self.vault_err(name, e))?;
                Arc::new(KeyFiles::new(&bundle))
            }
        };
        let bytes = files.part(ext).map_err(|e| self.object_err_key(name, e))?;
        Ok(bytes as Arc<dyn Bytes>)
    }

    pub(super) async fn key_dir_entries(&self) -> Result<Vec<(String, Kind)>, FsError> {
        let cached = lock(&self.special.key_names).clone();
        let names = match cached {
            Some((at, names)) if at.elapsed() < REREAD_AFTER => names,
            _ => {
                let mut names =
                    self.cache
                        .vault()
                        .list_keys()
                        .await
                        .map_err(|source| FsError::List {
                            vault: self.vault_url.clone(),
                            source,
                        })?;
                names.sort();
                let names = Arc::new(names);
                *lock(&self.special.key_names) = Some((Instant::now(), Arc::clone(&names)));
                names
            }
        };
        Ok(names
            .iter()
            .flat_map(|n| {
                [
                    (format!("{n}.jwk"), Kind::File),
                    (format!("{n}.pem"), Kind::File),
                ]
            })
            .collect())
    }

    /// Keys the kernel may be served, for the refresher: the ones fetched
    /// and used within `idle` (older ones are forgotten here) and the ones
    /// with a live inode, each with the versions it may be served at.
    pub fn tracked_keys(&self, idle: Duration) -> HashMap<SecretName, Vec<VersionId>> {
        let mut out: HashMap<SecretName, Vec<VersionId>> = HashMap::new();
        {
            let mut keys = lock(&self.special.keys);
            keys.retain(|_, e| e.used.elapsed() < idle);
            for (name, e) in keys.iter() {
                out.entry(name.clone())
                    .or_default()
                    .push(e.files.version.clone());
            }
        }
        let bound = self.special_key_versions().into_iter();
        for (name, version) in bound.chain(self.view_key_versions()) {
            let versions = out.entry(name).or_default();
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
        out
    }

    /// The refresher's GET of the latest version of key `name`: the
    /// answer is served from now on (a disabled key is refused). Returns
    /// the version the vault answered.
    pub async fn refresh_key(&self, name: &SecretName) -> Result<VersionId, VaultError> {
        let bundle = self.cache.vault().key(name, None).await.and_then(enabled)?;
        let mut keys = lock(&self.special.keys);
        if let Some(e) = keys.get_mut(name) {
            if e.files.version != bundle.version {
                e.files = Arc::new(KeyFiles::new(&bundle));
            }
            e.fetched = Instant::now();
        }
        Ok(bundle.version)
    }

    /// Fails key `name` closed: forgets it and marks its inodes so open
    /// descriptors stop reading it. Returns those inodes.
    pub fn revoke_key(&self, name: &SecretName, why: &VaultError) -> Vec<u64> {
        lock(&self.special.keys).remove(name);
        let mut inos = self.special_revoke_key(name, why);
        // A key view's file too: it holds the key's public part.
        inos.extend(self.view_revoke(name, why, true));
        inos
    }
}
