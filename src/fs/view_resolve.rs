//! Resolving a view to what its file shows: the object's version (pinned,
//! latest, or one of a history), and the bytes derived from it.

use std::sync::Arc;

use super::view::{Resolved, VWhat};
use super::{Bytes, FsCore};
use crate::cache::{CachedSecret, SecretKey};
use crate::config::ViewObject;
use crate::error::FsError;
use crate::secret::{SecretBytes, VersionId};
use crate::vault::VaultError;

/// Whether an error means the object is not there (what `optional` forgives).
fn is_missing(e: &FsError) -> bool {
    matches!(
        e,
        FsError::NoEntry
            | FsError::Vault {
                source: VaultError::NotFound,
                ..
            }
    )
}

impl FsCore {
    /// What view `i` shows now. A missing object of an optional view is
    /// [`FsError::NoEntry`]: the file is absent.
    pub(super) async fn resolve_view(&self, i: usize) -> Result<Resolved, FsError> {
        let optional = self.view_spec(i)?.optional;
        let r = self.resolve_view_now(i).await;
        let missing = r.as_ref().err().is_some_and(is_missing);
        if let Some(v) = self.views().filter(|_| optional) {
            let mut absent = super::lock(&v.absent);
            if missing {
                absent.insert(i);
            } else if r.is_ok() {
                absent.remove(&i);
            }
        }
        match r {
            Err(_) if optional && missing => Err(FsError::NoEntry),
            r => r,
        }
    }

    async fn resolve_view_now(&self, i: usize) -> Result<Resolved, FsError> {
        let spec = self.view_spec(i)?;
        if let ViewObject::Key { jwk } = spec.object {
            return self.resolve_key_view(i, jwk).await;
        }
        if let Some(n) = spec.history {
            return self.resolve_history(i, n as usize).await;
        }
        let secret = match &spec.version {
            Some(v) => {
                let key = SecretKey {
                    name: spec.name.clone(),
                    version: VersionId::new(v),
                };
                self.version_of(&key).await?
            }
            None => match self.cache.cached_latest(&spec.name) {
                Some(hit) => hit,
                None => {
                    if let Some(err) = self.cache.negative(&spec.name) {
                        return Err(self.vault_err(&spec.name, err));
                    }
                    self.cache
                        .fetch_latest(&spec.name)
                        .await
                        .map_err(|e| self.vault_err(&spec.name, e))?
                }
            },
        };
        self.note_use(&secret);
        self.resolve_from(i, &secret).await
    }

    /// One version by id: from memory, or fetched.
    async fn version_of(&self, key: &SecretKey) -> Result<Arc<CachedSecret>, FsError> {
        match self.cache.cached(key) {
            Some(s) => Ok(s),
            None => self
                .cache
                .version(key)
                .await
                .map_err(|e| self.vault_err(&key.name, e)),
        }
    }

    /// File `k` of a history directory: the version `key`.
    pub(super) async fn resolve_version_file(
        &self,
        i: usize,
        key: &SecretKey,
    ) -> Result<Resolved, FsError> {
        let secret = self.version_of(key).await?;
        self.note_use(&secret);
        self.resolve_from(i, &secret).await
    }

    /// A secret or certificate view's file from one version.
    async fn resolve_from(&self, i: usize, secret: &CachedSecret) -> Result<Resolved, FsError> {
        let spec = self.view_spec(i)?;
        let key = secret.key();
        let bytes: Arc<dyn Bytes> = match spec.object {
            ViewObject::Cert(part) => self.cert_part(&key, part).await?,
            _ => {
                let derived = super::view_bytes::derive(
                    spec,
                    secret.value.expose(),
                    secret.props.content_type.as_deref(),
                )
                .map_err(|problem| self.view_err(i, &key.name, problem))?;
                Arc::new(SecretBytes::new(derived))
            }
        };
        let props = Arc::new(secret.props.clone());
        Ok(Resolved {
            what: VWhat::File(i, key),
            bytes: Some(bytes),
            mtime: props.updated,
            props: Some(props),
            history: None,
        })
    }

    /// A history directory: the newest `n` enabled versions, newest first.
    async fn resolve_history(&self, i: usize, n: usize) -> Result<Resolved, FsError> {
        let name = self.view_spec(i)?.name.clone();
        let list = self.version_list(&name, true).await?;
        let keys: Vec<SecretKey> = list
            .iter()
            .filter(|v| v.enabled)
            .take(n)
            .map(|v| SecretKey {
                name: name.clone(),
                version: v.version.clone(),
            })
            .collect();
        let newest = keys
            .first()
            .ok_or_else(|| self.vault_err(&name, VaultError::NotFound))?;
        let mtime = list
            .iter()
            .find(|v| v.version == newest.version)
            .and_then(|v| v.updated);
        Ok(Resolved {
            what: VWhat::History(i, newest.version.clone()),
            bytes: None,
            props: None,
            mtime,
            history: Some(Arc::new(keys)),
        })
    }

    /// A key view: the key's public part as PEM or JWK, pinned or latest.
    async fn resolve_key_view(&self, i: usize, jwk: bool) -> Result<Resolved, FsError> {
        let spec = self.view_spec(i)?;
        let ext = if jwk { "jwk" } else { "pem" };
        let (version, mtime) = match &spec.version {
            Some(v) => (VersionId::new(v), None),
            None => {
                let files = self.key_files(&spec.name).await?;
                (files.version.clone(), files.updated)
            }
        };
        let bytes = self.key_part(&spec.name, &version, ext).await?;
        Ok(Resolved {
            what: VWhat::Key(i, version),
            bytes: Some(bytes),
            props: None,
            mtime,
            history: None,
        })
    }
}
