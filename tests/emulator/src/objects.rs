//! Certificates and keys: their versions, their collections and soft deletion.

use crate::secret::Deletion;
use crate::store::RECOVERABLE_DAYS;
use crate::util;
use crate::vault_error::VaultError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Content type of a PKCS#12 certificate secret.
pub const PKCS12: &str = "application/x-pkcs12";
/// Content type of a PEM certificate secret.
pub const PEM: &str = "application/x-pem-file";

/// Attributes shared by certificate and key versions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attrs {
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub tags: Option<BTreeMap<String, String>>,
}

/// One version of a key: its public JWK members (no `kid`), operations, attributes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyVersion {
    pub id: String,
    pub jwk: Map<String, Value>,
    pub key_ops: Vec<String>,
    pub attrs: Attrs,
    /// The key backs a certificate.
    pub managed: bool,
}

/// One version of a certificate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CertVersion {
    pub id: String,
    /// DER of the leaf (`cer`).
    pub cer: Vec<u8>,
    pub attrs: Attrs,
    /// The policy in force when the version was made.
    pub policy: Value,
}

/// A named, versioned object (certificate or key).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Named<V> {
    pub name: String,
    pub versions: Vec<V>,
    pub deleted: Option<Deletion>,
}

/// Access to a version's id.
pub(crate) trait HasId {
    fn id(&self) -> &str;
}
impl HasId for KeyVersion {
    fn id(&self) -> &str {
        &self.id
    }
}
impl HasId for CertVersion {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Objects of one kind by lowercase name.
#[derive(Debug)]
pub(crate) struct Collection<V> {
    pub items: BTreeMap<String, Named<V>>,
}

impl<V> Default for Collection<V> {
    fn default() -> Self {
        Collection {
            items: BTreeMap::new(),
        }
    }
}

impl<V: HasId + Clone> Collection<V> {
    pub(crate) fn live(&self, name: &str) -> Option<&Named<V>> {
        self.items
            .get(&name.to_ascii_lowercase())
            .filter(|n| n.deleted.is_none() && !n.versions.is_empty())
    }

    pub(crate) fn get(&self, name: &str, version: Option<&str>) -> Option<(Named<V>, V)> {
        let n = self.live(name)?;
        let v = match version.filter(|v| !v.is_empty()) {
            None => n.versions.last(),
            Some(id) => n.versions.iter().find(|v| v.id().eq_ignore_ascii_case(id)),
        }?;
        Some((n.clone(), v.clone()))
    }

    pub(crate) fn get_mut(&mut self, name: &str, version: Option<&str>) -> Option<&mut V> {
        let n = self
            .items
            .get_mut(&name.to_ascii_lowercase())
            .filter(|n| n.deleted.is_none())?;
        match version.filter(|v| !v.is_empty()) {
            None => n.versions.last_mut(),
            Some(id) => n
                .versions
                .iter_mut()
                .find(|v| v.id().eq_ignore_ascii_case(id)),
        }
    }

    /// Adds a version; 409 if the name is soft-deleted.
    pub(crate) fn push(&mut self, name: &str, v: V, kind: &str) -> Result<(), VaultError> {
        let entry = self
            .items
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Named {
                name: name.to_string(),
                versions: Vec::new(),
                deleted: None,
            });
        if entry.deleted.is_some() {
            return Err(VaultError::new(
                409,
                "Conflict",
                format!(
                    "{kind} {} is currently in a deleted but recoverable state, and its name cannot be \
                     reused; in this state, the {} can only be recovered or purged.",
                    entry.name,
                    kind.to_ascii_lowercase()
                ),
            )
            .with_inner("ObjectIsDeletedButRecoverable"));
        }
        entry.versions.push(v);
        Ok(())
    }

    /// Live objects by lowercase name.
    pub(crate) fn all_live(&self) -> Vec<(String, Named<V>)> {
        self.items
            .iter()
            .filter(|(_, n)| n.deleted.is_none() && !n.versions.is_empty())
            .map(|(k, n)| (k.clone(), n.clone()))
            .collect()
    }

    /// Soft-deleted objects by lowercase name.
    pub(crate) fn all_deleted(&self) -> Vec<(String, Named<V>)> {
        self.items
            .iter()
            .filter(|(_, n)| n.deleted.is_some())
            .map(|(k, n)| (k.clone(), n.clone()))
            .collect()
    }

    pub(crate) fn delete(&mut self, name: &str, now: i64) -> Option<Named<V>> {
        let n = self
            .items
            .get_mut(&name.to_ascii_lowercase())
            .filter(|n| n.deleted.is_none() && !n.versions.is_empty())?;
        n.deleted = Some(Deletion {
            deleted_date: now,
            scheduled_purge_date: now + RECOVERABLE_DAYS * 86_400,
        });
        Some(n.clone())
    }

    pub(crate) fn deleted(&self, name: &str) -> Option<Named<V>> {
        self.items
            .get(&name.to_ascii_lowercase())
            .filter(|n| n.deleted.is_some())
            .cloned()
    }

    pub(crate) fn purge(&mut self, name: &str) -> bool {
        let key = name.to_ascii_lowercase();
        if self.items.get(&key).is_some_and(|n| n.deleted.is_some()) {
            self.items.remove(&key);
            return true;
        }
        false
    }

    pub(crate) fn recover(&mut self, name: &str) -> Option<Named<V>> {
        let n = self
            .items
            .get_mut(&name.to_ascii_lowercase())
            .filter(|n| n.deleted.is_some())?;
        n.deleted = None;
        Some(n.clone())
    }
}

/// Certificates and keys.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    pub certs: Collection<CertVersion>,
    pub keys: Collection<KeyVersion>,
}

/// The operations a key of this type allows (what Key Vault reports by default).
pub(crate) fn default_key_ops(kty: &str) -> Vec<String> {
    let ops: &[&str] = if kty.starts_with("EC") {
        &["sign", "verify"]
    } else {
        &[
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ]
    };
    ops.iter().map(|s| s.to_string()).collect()
}

/// A new version id, or the given one if it is 32 hex digits.
pub(crate) fn version_id(given: Option<&str>) -> Result<String, VaultError> {
    match given {
        Some(v) if util::is_version_id(v) => Ok(v.to_ascii_lowercase()),
        Some(v) => Err(VaultError::bad_parameter(format!(
            "Version {v:?} is not 32 hexadecimal digits."
        ))),
        None => Ok(util::random_hex(16)),
    }
}

/// 400 BadParameter with `message`.
pub(crate) fn bad<S: Into<String>>(message: S) -> VaultError {
    VaultError::bad_parameter(message)
}
