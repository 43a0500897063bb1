//! `.certs/<name>/`: one directory per certificate version.
//!
//! A lookup of `.certs/<name>` binds the name to a directory inode of the
//! certificate's current version (the version of its backing secret, which
//! holds the key and the chain: one GET gives every file). The files in it
//! are derived once from that one value, so `tls.crt` and `tls.key` read
//! through one opened directory always match. After a rotation the name is
//! bound to a new directory; a process holding the old one (an open
//! descriptor, `openat`) keeps reading the old pair until it opens the path
//! again. `tls.pem` holds key and chain in one file, for readers that want
//! one atomic open.

use std::sync::Arc;

use super::special::What;
use super::{lock, Bytes, Entry, FsCore, Kind};
use crate::cache::{CachedSecret, SecretKey};
use crate::error::FsError;
use crate::objects::{bundle, LeafInfo};
use crate::secret::{SecretBytes, SecretName};

/// The derived files of one certificate version, in locked memory.
pub(crate) struct CertFiles {
    files: Vec<(&'static str, Arc<SecretBytes>)>,
    pub(crate) leaf: LeafInfo,
}

impl Bytes for SecretBytes {
    fn bytes(&self) -> &[u8] {
        self.expose()
    }
}

impl CertFiles {
    fn build(secret: &CachedSecret) -> Result<CertFiles, crate::objects::ObjectError> {
        let parts =
            bundle::from_secret(secret.value.expose(), secret.props.content_type.as_deref())?;
        let mut files = vec![("tls.crt", SecretBytes::from(&parts.tls_crt[..]))];
        if let Some(key) = &parts.tls_key {
            files.push(("tls.key", SecretBytes::from(&key[..])));
        }
        files.push(("tls.pem", SecretBytes::from(&parts.tls_pem[..])));
        files.push(("leaf.crt", SecretBytes::from(&parts.leaf_crt[..])));
        if !parts.ca_crt.is_empty() {
            files.push(("ca.crt", SecretBytes::from(&parts.ca_crt[..])));
        }
        if let Some(pfx) = &parts.pfx {
            files.push(("cert.pfx", SecretBytes::from(&pfx[..])));
        }
        Ok(CertFiles {
            files: files.into_iter().map(|(n, b)| (n, Arc::new(b))).collect(),
            leaf: parts.leaf.clone(),
        })
        // `parts` drops here: its private buffers are wiped.
    }

    fn get(&self, part: &str) -> Option<&Arc<SecretBytes>> {
        self.files.iter().find(|(n, _)| *n == part).map(|(_, b)| b)
    }
}

impl FsCore {
    fn object_err(&self, name: &SecretName, source: crate::objects::ObjectError) -> FsError {
        FsError::Object {
            vault: self.vault_url.clone(),
            name: name.clone(),
            source,
        }
    }

    /// The files of the version in `secret`, derived on first use.
    fn cert_files(&self, secret: &CachedSecret) -> Result<Arc<CertFiles>, FsError> {
        let key = secret.key();
        if let Some(f) = lock(&self.special.certs).get(&key) {
            return Ok(Arc::clone(f));
        }
        let files = Arc::new(CertFiles::build(secret).map_err(|e| self.object_err(&key.name, e))?);
        self.metrics
            .certificate_expiry(key.name.as_str(), files.leaf.not_after);
        lock(&self.special.certs).insert(key, Arc::clone(&files));
        Ok(files)
    }

    /// The files of a bound version: from memory, or derived again from
    /// the version's value (fetched by version id only if evicted).
    async fn cert_files_of(
        &self,
        key: &SecretKey,
    ) -> Result<(Arc<CertFiles>, Arc<CachedSecret>), FsError> {
        let secret = self
            .cache
            .version(key)
            .await
            .map_err(|e| self.vault_err(&key.name, e))?;
        self.note_use(&secret);
        Ok((self.cert_files(&secret)?, secret))
    }

    pub(super) async fn lookup_cert_dir(&self, name: &str) -> Result<Entry, FsError> {
        let name = SecretName::parse(name).ok_or(FsError::NoEntry)?;
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
        self.note_use(&secret);
        self.cert_files(&secret)?;
        let props = Arc::new(secret.props.clone());
        let mtime = props.updated;
        let attr = self.bind_special(
            What::CertDir(secret.key()),
            Kind::Directory,
            0,
            Some(props),
            mtime,
        );
        Ok(self.special_entry(attr, self.timings.entry_ttl))
    }

    pub(super) async fn lookup_cert_file(
        &self,
        key: &SecretKey,
        part: &str,
    ) -> Result<Entry, FsError> {
        let (files, secret) = self.cert_files_of(key).await?;
        let (part, bytes) = files
            .files
            .iter()
            .find(|(n, _)| *n == part)
            .map(|(n, b)| (*n, b.len() as u64))
            .ok_or(FsError::NoEntry)?;
        let props = Arc::new(secret.props.clone());
        let mtime = props.updated;
        let attr = self.bind_special(
            What::CertFile(key.clone(), part),
            Kind::File,
            bytes,
            Some(props),
            mtime,
        );
        // Bound to one version: never changes.
        Ok(self.special_entry(attr, self.timings.entry_ttl))
    }

    pub(super) async fn cert_part(
        &self,
        key: &SecretKey,
        part: &str,
    ) -> Result<Arc<dyn Bytes>, FsError> {
        let cached = lock(&self.special.certs).get(key).cloned();
        let files = match cached {
            Some(f) => f,
            None => self.cert_files_of(key).await?.0,
        };
        let bytes = files.get(part).ok_or(FsError::NoEntry)?;
        Ok(Arc::clone(bytes) as Arc<dyn Bytes>)
    }

    pub(super) async fn cert_dir_entries(
        &self,
        key: &SecretKey,
    ) -> Result<Vec<(String, Kind)>, FsError> {
        let (files, _) = self.cert_files_of(key).await?;
        Ok(files
            .files
            .iter()
            .map(|(n, _)| (n.to_string(), Kind::File))
            .collect())
    }

    /// Leaf metadata of a certificate node, for its xattrs.
    pub(super) fn cert_leaf(&self, what: &What) -> Option<LeafInfo> {
        let key = match what {
            What::CertDir(k) | What::CertFile(k, _) => k,
            _ => return None,
        };
        lock(&self.special.certs).get(key).map(|f| f.leaf.clone())
    }
}
