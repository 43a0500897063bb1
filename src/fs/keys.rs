//! `.keys/<name>.pem` and `.keys/<name>.jwk`: a key's public part.
//!
//! Keys are not secrets, so the secret refresher does not track them.
//! Each lookup serves the key as fetched within the last listing TTL,
//! and otherwise asks the vault again (the kernel's entry lifetime for
//! these names is at most the listing TTL, so a rotated key shows up
//! within two listing TTLs). If the vault is unreachable the last key is
//! served (public material); if it says the key is gone, disabled or no
//! longer readable, the name fails at once. Each inode is one key version.

use super::REREAD_AFTER;
use std::sync::Arc;
use std::time::Instant;

use super::special::What;
use super::{lock, Bytes, Entry, FsCore, Kind};
use crate::error::FsError;
use crate::objects::jwk;
use crate::secret::{SecretBytes, SecretName, VersionId};
use crate::vault::KeyBundle;

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
        let cached = lock(&self.special.keys).get(name).cloned();
        if let Some((at, files)) = &cached {
            if at.elapsed() < REREAD_AFTER {
                return Ok(Arc::clone(files));
            }
        }
        if cached.is_none() && !self.cache.try_take_cold_lookup() {
            return Err(FsError::NoEntry);
        }
        match self.cache.vault().key(name, None).await {
            Ok(bundle) => {
                let files = Arc::new(KeyFiles::new(&bundle));
                lock(&self.special.keys).insert(name.clone(), (Instant::now(), Arc::clone(&files)));
                Ok(files)
            }
            Err(e) if e.is_transient() && cached.is_some() => {
                tracing::warn!(key = %name, vault = %self.vault_url, "{e}; serving the key fetched before");
                Ok(cached.map(|(_, f)| f).ok_or(FsError::Internal)?)
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
            .get(name)
            .filter(|(_, f)| &f.version == version)
            .map(|(_, f)| Arc::clone(f));
        let files = match cached {
            Some(f) => f,
            None => {
                let bundle = self
                    .cache
                    .vault()
                    .key(name, Some(version))
                    .await
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
}
