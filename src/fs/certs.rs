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
//!
//! An identity that may read certificates but not secrets (403 on the
//! secret) gets a directory holding `leaf.crt` only, from the certificate's
//! public part (`GET /certificates/{name}`, its `cer`); every other file
//! answers the secret's refusal (EACCES). Such a directory is public
//! material and follows the keys' rule: it is looked up again after the
//! listing TTL.

use std::sync::Arc;
use std::time::Instant;

use super::special::What;
use super::{lock, Bytes, Entry, FsCore, Kind, REREAD_AFTER};
use crate::cache::{CachedSecret, SecretKey};
use crate::error::FsError;
use crate::objects::{bundle, LeafInfo, ObjectError};
use crate::secret::{SecretBytes, SecretName, SecretProps, VersionId};
use crate::vault::VaultError;

/// Every file a certificate directory can hold.
const PARTS: [&str; 6] = [
    "tls.crt", "tls.key", "tls.pem", "leaf.crt", "ca.crt", "cert.pfx",
];

/// The derived files of one certificate version, in locked memory.
pub(crate) struct CertFiles {
    files: Vec<(&'static str, Arc<SecretBytes>)>,
    pub(crate) leaf: LeafInfo,
    /// Set when the files come from the certificate's public part because
    /// the identity may not read its secret: the refusal, answered for
    /// every file the secret would give.
    refused: Option<VaultError>,
}

/// A certificate's public files by name, with when they were fetched.
pub(super) type PublicCert = (Instant, SecretKey, Arc<CertFiles>);

impl Bytes for SecretBytes {
    fn bytes(&self) -> &[u8] {
        self.expose()
    }
}

impl CertFiles {
    fn build(secret: &CachedSecret) -> Result<CertFiles, ObjectError> {
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
            refused: None,
        })
        // `parts` drops here: its private buffers are wiped.
    }

    /// `leaf.crt` alone, from the certificate's public part.
    fn public(cer: &[u8], refused: VaultError) -> Result<CertFiles, ObjectError> {
        let (leaf_crt, leaf) = bundle::leaf_from_der(cer)?;
        Ok(CertFiles {
            files: vec![("leaf.crt", Arc::new(SecretBytes::from(&leaf_crt[..])))],
            leaf,
            refused: Some(refused),
        })
    }

    /// Bytes held, for the cache's budget.
    fn bytes(&self) -> u64 {
        let leaf = &self.leaf;
        let meta = leaf.x5t.len() + leaf.subject.len() + leaf.issuer.len();
        let files: usize = self.files.iter().map(|(_, b)| b.len()).sum();
        (files + meta) as u64
    }

    fn get(&self, part: &str) -> Option<&Arc<SecretBytes>> {
        self.files.iter().find(|(n, _)| *n == part).map(|(_, b)| b)
    }
}

impl FsCore {
    fn object_err(&self, name: &SecretName, source: ObjectError) -> FsError {
        FsError::Object {
            vault: self.vault_url.clone(),
            name: name.clone(),
            source,
        }
    }

    /// Why `part` is not in `files`: the secret's refusal for a file only
    /// the secret gives, otherwise no such file.
    fn missing_part(&self, name: &SecretName, files: &CertFiles, part: &str) -> FsError {
        match &files.refused {
            Some(why) if PARTS.contains(&part) => self.vault_err(name, why.clone()),
            _ => FsError::NoEntry,
        }
    }

    /// The files of the version in `secret`, derived on first use and
    /// attached to that cached version: charged against the cache's byte
    /// budget, evicted and wiped with it.
    fn cert_files(&self, secret: &Arc<CachedSecret>) -> Result<Arc<CertFiles>, FsError> {
        if let Some(files) = secret.derived::<CertFiles>() {
            return Ok(files);
        }
        let key = secret.key();
        let files = Arc::new(CertFiles::build(secret).map_err(|e| self.object_err(&key.name, e))?);
        self.metrics
            .certificate_expiry(key.name.as_str(), files.leaf.not_after);
        Ok(self.cache.attach(secret, files.bytes(), files))
    }

    /// Files already in memory: public ones, or attached to a cached
    /// version. Never waits.
    fn cert_files_cached(&self, key: &SecretKey) -> Option<Arc<CertFiles>> {
        if let Some(files) = lock(&self.special.certs).get(key) {
            return Some(Arc::clone(files));
        }
        self.cache.peek(key)?.derived::<CertFiles>()
    }

    /// The public files of the latest version (`version` None, reused for
    /// the listing TTL) or of one version, for an identity refused the
    /// secret (`refused`).
    async fn public_cert_files(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
        refused: VaultError,
    ) -> Result<(SecretKey, Arc<CertFiles>), FsError> {
        let known = match version {
            Some(_) => None,
            None => lock(&self.special.public_certs).get(name).cloned(),
        };
        if let Some((at, key, files)) = &known {
            if at.elapsed() < REREAD_AFTER {
                return Ok((key.clone(), Arc::clone(files)));
            }
        }
        let bundle = match self.cache.vault().certificate(name, version).await {
            Ok(b) => b,
            Err(e) if e.is_transient() && known.is_some() => {
                tracing::warn!(certificate = %name, vault = %self.vault_url, "{e}; serving the certificate fetched before");
                let (_, key, files) = known.ok_or(FsError::Internal)?;
                return Ok((key, files));
            }
            // Refused both: the secret's permission is the one that gives
            // every file.
            Err(VaultError::Forbidden { .. }) => {
                lock(&self.special.public_certs).remove(name);
                return Err(self.vault_err(name, refused));
            }
            Err(e) => {
                lock(&self.special.public_certs).remove(name);
                return Err(self.vault_err(name, e));
            }
        };
        let files = Arc::new(
            CertFiles::public(&bundle.cer, refused).map_err(|e| self.object_err(name, e))?,
        );
        self.metrics
            .certificate_expiry(name.as_str(), files.leaf.not_after);
        let key = SecretKey {
            name: name.clone(),
            version: bundle.version,
        };
        lock(&self.special.certs).insert(key.clone(), Arc::clone(&files));
        if version.is_none() {
            let entry = (Instant::now(), key.clone(), Arc::clone(&files));
            lock(&self.special.public_certs).insert(name.clone(), entry);
        }
        Ok((key, files))
    }

    /// The files of a bound version: from memory, or derived again from
    /// the version's value (fetched by version id only if evicted), with
    /// the secret's properties (none for public files).
    async fn cert_files_of(
        &self,
        key: &SecretKey,
    ) -> Result<(Arc<CertFiles>, Option<Arc<SecretProps>>), FsError> {
        let public = lock(&self.special.certs)
            .get(key)
            .filter(|f| f.refused.is_some())
            .cloned();
        if let Some(files) = public {
            return Ok((files, None));
        }
        match self.cache.version(key).await {
            Ok(secret) => {
                self.note_use(&secret);
                let props = Arc::new(secret.props.clone());
                Ok((self.cert_files(&secret)?, Some(props)))
            }
            Err(refused @ VaultError::Forbidden { .. }) => {
                let (_, files) = self
                    .public_cert_files(&key.name, Some(&key.version), refused)
                    .await?;
                Ok((files, None))
            }
            Err(e) => Err(self.vault_err(&key.name, e)),
        }
    }

    pub(super) async fn lookup_cert_dir(&self, name: &str) -> Result<Entry, FsError> {
        let name = SecretName::parse(name).ok_or(FsError::NoEntry)?;
        let secret = match self.cache.cached_latest(&name) {
            Some(hit) => Ok(hit),
            None => match self.cache.negative(&name) {
                Some(err) => Err(err),
                None => {
                    self.admit_cold_lookup(&name).await?;
                    self.cache.fetch_latest(&name).await
                }
            },
        };
        let secret = match secret {
            Ok(secret) => secret,
            Err(refused @ VaultError::Forbidden { .. }) => {
                let (key, _) = self.public_cert_files(&name, None, refused).await?;
                let attr = self.bind_special(What::CertDir(key), Kind::Directory, 0, None, None);
                // Public material: looked up again after the listing TTL.
                let ttl = self.timings.entry_ttl.min(REREAD_AFTER);
                return Ok(self.special_entry(attr, ttl));
            }
            Err(e) => return Err(self.vault_err(&name, e)),
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
        let (files, props) = self.cert_files_of(key).await?;
        let Some((part, bytes)) = files
            .files
            .iter()
            .find(|(n, _)| *n == part)
            .map(|(n, b)| (*n, b.len() as u64))
        else {
            return Err(self.missing_part(&key.name, &files, part));
        };
        let mtime = props.as_ref().and_then(|p| p.updated);
        let attr = self.bind_special(
            What::CertFile(key.clone(), part),
            Kind::File,
            bytes,
            props,
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
        let files = match self.cert_files_cached(key) {
            Some(f) => {
                if let Some(secret) = self.cache.cached(key) {
                    self.note_use(&secret);
                }
                f
            }
            None => self.cert_files_of(key).await?.0,
        };
        let bytes = files
            .get(part)
            .ok_or_else(|| self.missing_part(&key.name, &files, part))?;
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
        self.cert_files_cached(key).map(|f| f.leaf.clone())
    }
}
