//! The vault's content: secrets with their versions, and soft-deleted secrets.
//!
//! Names are looked up case-insensitively and keep the case they were first created with.
//! The latest version is the most recently created one.

use crate::secret::{AttributeUpdate, Deletion, NewVersion, Secret, Version};
use crate::util;
use crate::vault_error::VaultError;
use std::collections::BTreeMap;

/// Maximum secret value size in bytes (UTF-8). A value of exactly this size is accepted.
pub const MAX_VALUE_BYTES: usize = 25_600;
/// Days a deleted secret stays recoverable (`recoverableDays`).
pub const RECOVERABLE_DAYS: i64 = 90;
/// Recovery level reported for every secret.
pub const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
/// Maximum number of tags on a secret.
pub const MAX_TAGS: usize = 15;

/// Whether `name` is a valid secret name: `^[0-9a-zA-Z-]{1,127}$`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// All secrets, keyed by lowercase name.
#[derive(Debug, Default)]
pub(crate) struct Store {
    secrets: BTreeMap<String, Secret>,
}

impl Store {
    /// Adds a version (creating the secret if needed). Refuses names of soft-deleted secrets.
    pub(crate) fn set(
        &mut self,
        name: &str,
        new: NewVersion,
        now: i64,
    ) -> Result<(Secret, Version), VaultError> {
        if !is_valid_name(name) {
            return Err(VaultError::invalid_name(name));
        }
        if new.value.len() > MAX_VALUE_BYTES {
            return Err(VaultError::bad_parameter(format!(
                "The secret value is {} bytes; the maximum is {MAX_VALUE_BYTES} bytes.",
                new.value.len()
            )));
        }
        if new.tags.as_ref().is_some_and(|t| t.len() > MAX_TAGS) {
            return Err(VaultError::bad_parameter(format!(
                "A secret may have at most {MAX_TAGS} tags."
            )));
        }
        let key = name.to_ascii_lowercase();
        let entry = self.secrets.entry(key).or_insert_with(|| Secret {
            name: name.to_string(),
            versions: Vec::new(),
            deleted: None,
        });
        if entry.deleted.is_some() {
            return Err(VaultError::deleted_conflict(&entry.name));
        }
        let id = match new.version {
            Some(v) if util::is_version_id(&v) => v.to_ascii_lowercase(),
            Some(v) => {
                return Err(VaultError::bad_parameter(format!(
                    "Version {v:?} is not 32 hexadecimal digits."
                )))
            }
            None => util::random_hex(16),
        };
        if entry.version(&id).is_some() {
            return Err(VaultError::bad_parameter(format!(
                "Secret {name} already has a version {id}."
            )));
        }
        let created = new.created.unwrap_or(now);
        let version = Version {
            id,
            value: new.value,
            content_type: new.content_type,
            tags: new.tags,
            enabled: new.enabled.unwrap_or(true),
            nbf: new.nbf,
            exp: new.exp,
            created,
            updated: created,
            managed: false,
        };
        entry.versions.push(version.clone());
        Ok((entry.clone(), version))
    }

    /// A live secret and one of its versions (latest when `version` is None or empty).
    pub(crate) fn get(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Secret, Version), VaultError> {
        let version = version.filter(|v| !v.is_empty());
        let secret = self
            .secrets
            .get(&name.to_ascii_lowercase())
            .filter(|s| s.deleted.is_none())
            .ok_or_else(|| VaultError::not_found(name, version))?;
        let v = match version {
            None => secret.latest(),
            Some(id) => secret.version(id),
        }
        .ok_or_else(|| VaultError::not_found(name, version))?;
        Ok((secret.clone(), v.clone()))
    }

    /// A live secret with all its versions.
    pub(crate) fn get_secret(&self, name: &str) -> Result<Secret, VaultError> {
        self.secrets
            .get(&name.to_ascii_lowercase())
            .filter(|s| s.deleted.is_none())
            .cloned()
            .ok_or_else(|| VaultError::not_found(name, None))
    }

    /// A live secret, if there is one by that name.
    pub(crate) fn find_live(&self, name: &str) -> Option<Secret> {
        self.secrets
            .get(&name.to_ascii_lowercase())
            .filter(|s| s.deleted.is_none())
            .cloned()
    }

    /// Puts a secret restored from a backup back, with its versions as they were. The name must
    /// not be in use, live or soft-deleted; `id` names the backup in the conflict error.
    pub(crate) fn restore(&mut self, secret: Secret, id: &str) -> Result<Secret, VaultError> {
        let key = secret.name.to_ascii_lowercase();
        if self
            .secrets
            .get(&key)
            .is_some_and(|s| !s.versions.is_empty())
        {
            return Err(VaultError::restore_conflict(id));
        }
        self.secrets.insert(key, secret.clone());
        Ok(secret)
    }

    /// Changes attributes of a version (latest when `version` is None or empty).
    pub(crate) fn update(
        &mut self,
        name: &str,
        version: Option<&str>,
        update: AttributeUpdate,
        now: i64,
    ) -> Result<(Secret, Version), VaultError> {
        let version = version.filter(|v| !v.is_empty());
        if update.tags.as_ref().is_some_and(|t| t.len() > MAX_TAGS) {
            return Err(VaultError::bad_parameter(format!(
                "A secret may have at most {MAX_TAGS} tags."
            )));
        }
        let secret = self
            .secrets
            .get_mut(&name.to_ascii_lowercase())
            .filter(|s| s.deleted.is_none())
            .ok_or_else(|| VaultError::not_found(name, version))?;
        let v = match version {
            None => secret.versions.last_mut(),
            Some(id) => secret
                .versions
                .iter_mut()
                .find(|v| v.id.eq_ignore_ascii_case(id)),
        }
        .ok_or_else(|| VaultError::not_found(name, version))?;
        if let Some(ct) = update.content_type {
            v.content_type = Some(ct);
        }
        if let Some(tags) = update.tags {
            v.tags = Some(tags);
        }
        if let Some(enabled) = update.enabled {
            v.enabled = enabled;
        }
        if let Some(nbf) = update.nbf {
            v.nbf = Some(nbf);
        }
        if let Some(exp) = update.exp {
            v.exp = Some(exp);
        }
        v.updated = now.max(v.created);
        let v = v.clone();
        Ok((secret.clone(), v))
    }

    /// Soft-deletes a live secret.
    pub(crate) fn delete(&mut self, name: &str, now: i64) -> Result<Secret, VaultError> {
        let secret = self
            .secrets
            .get_mut(&name.to_ascii_lowercase())
            .filter(|s| s.deleted.is_none())
            .ok_or_else(|| VaultError::not_found(name, None))?;
        secret.deleted = Some(Deletion {
            deleted_date: now,
            scheduled_purge_date: now + RECOVERABLE_DAYS * 86_400,
        });
        Ok(secret.clone())
    }

    /// A soft-deleted secret.
    pub(crate) fn get_deleted(&self, name: &str) -> Result<Secret, VaultError> {
        self.secrets
            .get(&name.to_ascii_lowercase())
            .filter(|s| s.deleted.is_some())
            .cloned()
            .ok_or_else(|| VaultError::deleted_not_found(name))
    }

    /// Permanently removes a soft-deleted secret.
    pub(crate) fn purge(&mut self, name: &str) -> Result<(), VaultError> {
        let key = name.to_ascii_lowercase();
        match self.secrets.get(&key) {
            Some(s) if s.deleted.is_some() => {
                self.secrets.remove(&key);
                Ok(())
            }
            _ => Err(VaultError::deleted_not_found(name)),
        }
    }

    /// Brings a soft-deleted secret back.
    pub(crate) fn recover(&mut self, name: &str) -> Result<Secret, VaultError> {
        let secret = self
            .secrets
            .get_mut(&name.to_ascii_lowercase())
            .filter(|s| s.deleted.is_some())
            .ok_or_else(|| VaultError::deleted_not_found(name))?;
        secret.deleted = None;
        Ok(secret.clone())
    }

    /// Live secrets ordered by lowercase name, with that name as the paging key.
    pub(crate) fn live(&self) -> Vec<(String, Secret)> {
        self.secrets
            .iter()
            .filter(|(_, s)| s.deleted.is_none() && !s.versions.is_empty())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// Soft-deleted secrets ordered by lowercase name.
    pub(crate) fn deleted(&self) -> Vec<(String, Secret)> {
        self.secrets
            .iter()
            .filter(|(_, s)| s.deleted.is_some() && !s.versions.is_empty())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// Marks a version as backing a certificate.
    pub(crate) fn mark_managed(&mut self, name: &str, version: &str) {
        if let Some(v) = self
            .secrets
            .get_mut(&name.to_ascii_lowercase())
            .and_then(|s| s.versions.iter_mut().find(|v| v.id == version))
        {
            v.managed = true;
        }
    }

    /// Removes everything, live and deleted.
    pub(crate) fn clear(&mut self) {
        self.secrets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nv(value: &str) -> NewVersion {
        NewVersion {
            value: value.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("Db-Password-1"));
        assert!(is_valid_name(&"a".repeat(127)));
        assert!(!is_valid_name(&"a".repeat(128)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a_b"));
        assert!(!is_valid_name("a.b"));
        assert!(!is_valid_name("é"));
    }

    #[test]
    fn versions_and_case() {
        let mut s = Store::default();
        let (_, v1) = s.set("Db-Pass", nv("one"), 10).expect("set");
        let (secret, v2) = s.set("db-pass", nv("two"), 11).expect("set");
        assert_eq!(secret.name, "Db-Pass");
        assert_ne!(v1.id, v2.id);
        assert_eq!(s.get("DB-PASS", None).expect("get").1.value, "two");
        assert_eq!(s.get("db-pass", Some(&v1.id)).expect("get").1.value, "one");
        assert_eq!(
            s.get("db-pass", Some(&v1.id.to_uppercase()))
                .expect("get")
                .1
                .value,
            "one"
        );
        assert_eq!(s.get("db-pass", Some("")).expect("get").1.value, "two");
        assert_eq!(s.get("nope", None).unwrap_err().status, 404);
        assert_eq!(
            s.get("db-pass", Some("0".repeat(32).as_str()))
                .unwrap_err()
                .code,
            "SecretNotFound"
        );
    }

    #[test]
    fn value_size_boundary() {
        let mut s = Store::default();
        assert!(s.set("a", nv(&"x".repeat(MAX_VALUE_BYTES)), 0).is_ok());
        let err = s
            .set("a", nv(&"x".repeat(MAX_VALUE_BYTES + 1)), 0)
            .unwrap_err();
        assert_eq!((err.status, err.code), (400, "BadParameter"));
        // Bytes, not characters: 12,801 two-byte characters are 25,602 bytes.
        assert!(s.set("b", nv(&"é".repeat(12_801)), 0).is_err());
    }

    #[test]
    fn delete_purge_recover() {
        let mut s = Store::default();
        s.set("a", nv("1"), 0).expect("set");
        s.delete("A", 5).expect("delete");
        assert_eq!(s.get("a", None).unwrap_err().status, 404);
        assert!(s.live().is_empty());
        assert_eq!(s.deleted().len(), 1);
        let err = s.set("a", nv("2"), 6).unwrap_err();
        assert_eq!(
            (err.status, err.inner),
            (409, Some("ObjectIsDeletedButRecoverable"))
        );
        assert_eq!(s.delete("a", 7).unwrap_err().status, 404);
        s.recover("a").expect("recover");
        assert_eq!(s.get("a", None).expect("get").1.value, "1");
        s.delete("a", 8).expect("delete");
        s.purge("a").expect("purge");
        assert_eq!(s.purge("a").unwrap_err().status, 404);
        s.set("a", nv("3"), 9).expect("name free again");
    }

    #[test]
    fn update_latest_or_version() {
        let mut s = Store::default();
        let (_, v1) = s.set("a", nv("1"), 0).expect("set");
        s.set("a", nv("2"), 1).expect("set");
        let (_, v) = s
            .update(
                "a",
                None,
                AttributeUpdate {
                    enabled: Some(false),
                    ..Default::default()
                },
                2,
            )
            .expect("update");
        assert!(!v.enabled);
        assert_eq!(v.updated, 2);
        let (_, v) = s
            .update(
                "a",
                Some(&v1.id),
                AttributeUpdate {
                    content_type: Some("text/plain".into()),
                    ..Default::default()
                },
                3,
            )
            .expect("update");
        assert_eq!(v.content_type.as_deref(), Some("text/plain"));
        assert!(v.enabled);
    }
}
