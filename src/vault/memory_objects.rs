//! Certificates, keys and versions of the in-memory vault.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::{name_key, MemoryVault};
use crate::objects::jwk::PublicJwk;
use crate::secret::{SecretName, VersionId};
use crate::sync::lock;
use crate::vault::{CertificateBundle, KeyBundle, VaultError, VersionItem};

/// Certificates' public parts and keys, by name, oldest version first.
#[derive(Default)]
pub(super) struct Store {
    pub(super) certs: BTreeMap<SecretName, Vec<CertificateBundle>>,
    pub(super) keys: BTreeMap<SecretName, Vec<KeyBundle>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl MemoryVault {
    /// Adds a version of a certificate: its backing secret (`value` with
    /// `content_type`, a base64 PFX or PEM) and its public part (`cer`, the
    /// leaf's DER) under one version id, as Key Vault does on import.
    pub fn put_certificate(
        &self,
        name: &str,
        value: &[u8],
        content_type: &str,
        cer: &[u8],
    ) -> VersionId {
        let version = self.put(name, value);
        let key = name_key(name).expect("test certificate name must be valid");
        {
            let mut map = lock(&self.secrets);
            if let Some(s) = map.get_mut(&key) {
                s.content_type = Some(content_type.to_string());
                s.managed = true;
            }
        }
        let sha1 = {
            use sha1::Digest;
            sha1::Sha1::digest(cer).to_vec()
        };
        let bundle = CertificateBundle {
            name: key.clone(),
            version: version.clone(),
            id: format!("memory://test/certificates/{name}/{version}"),
            kid: Some(format!("memory://test/keys/{name}/{version}")),
            sid: Some(format!("memory://test/secrets/{name}/{version}")),
            x5t: sha1,
            cer: cer.to_vec(),
            enabled: true,
            created: Some(now()),
            updated: Some(now()),
            expires: None,
            not_before: None,
        };
        lock(&self.objects)
            .certs
            .entry(key)
            .or_default()
            .push(bundle);
        version
    }

    /// Adds a version of a key with this public JWK.
    pub fn put_key(&self, name: &str, jwk: PublicJwk) -> VersionId {
        let key = name_key(name).expect("test key name must be valid");
        let n = self.next_version.fetch_add(1, Ordering::SeqCst);
        let version = VersionId::new(&format!("{n:032x}"));
        let mut jwk = jwk;
        jwk.kid = Some(format!("memory://test/keys/{name}/{version}"));
        let bundle = KeyBundle {
            name: key.clone(),
            version: version.clone(),
            jwk,
            enabled: true,
            created: Some(now()),
            updated: Some(now()),
        };
        lock(&self.objects)
            .keys
            .entry(key)
            .or_default()
            .push(bundle);
        version
    }

    /// Removes a key (all versions).
    pub fn delete_key(&self, name: &str) {
        if let Some(k) = name_key(name) {
            lock(&self.objects).keys.remove(&k);
        }
    }

    pub(super) async fn versions_of(
        &self,
        name: &SecretName,
    ) -> Result<Vec<VersionItem>, VaultError> {
        self.list_pages.fetch_add(1, Ordering::SeqCst);
        self.before_call().await?;
        let map = lock(&self.secrets);
        let stored = map.get(name).ok_or(VaultError::NotFound)?;
        Ok(stored
            .versions
            .iter()
            .map(|(id, _, updated)| VersionItem {
                version: id.clone(),
                enabled: stored.enabled && !stored.disabled_versions.contains(id),
                created: Some(*updated),
                updated: Some(*updated),
            })
            .collect())
    }

    pub(super) async fn certificate_of(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<CertificateBundle, VaultError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.before_call().await?;
        let store = lock(&self.objects);
        let all = store.certs.get(name).ok_or(VaultError::NotFound)?;
        match version {
            Some(v) => all.iter().find(|c| &c.version == v),
            None => all.last(),
        }
        .cloned()
        .ok_or(VaultError::NotFound)
    }

    pub(super) async fn key_of(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<KeyBundle, VaultError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.before_call().await?;
        let store = lock(&self.objects);
        let all = store.keys.get(name).ok_or(VaultError::NotFound)?;
        match version {
            Some(v) => all.iter().find(|k| &k.version == v),
            None => all.last(),
        }
        .cloned()
        .ok_or(VaultError::NotFound)
    }

    pub(super) async fn key_names(&self) -> Result<Vec<SecretName>, VaultError> {
        self.list_pages.fetch_add(1, Ordering::SeqCst);
        self.before_call().await?;
        let store = lock(&self.objects);
        Ok(store.keys.keys().cloned().collect())
    }
}
