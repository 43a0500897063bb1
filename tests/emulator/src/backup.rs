//! Secret backup blobs: sealed by `POST /secrets/{name}/backup`, opened by restore.
//!
//! As in Key Vault the blob is opaque and only restores where it was made: it is the secret (name
//! and every version with its value and attributes) as JSON, sealed with AES-256-GCM under a key
//! each emulator generates at start and never publishes. A blob from another emulator instance,
//! or a changed one, fails to open. The AEAD comes from aws-lc-rs, the crypto library the
//! emulator already uses for TLS, rather than anything hand-rolled.

use crate::secret::{Secret, Version};
use crate::store::is_valid_name;
use crate::wire::{insert_tags, Times};
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The first bytes of every blob (also bound into the AEAD as associated data).
const MAGIC: &[u8] = b"AkvfsEmulatorSecretBackupV1";

/// The sealing key of one emulator instance.
pub(crate) struct BackupKey {
    key: Option<RandomizedNonceKey>,
}

impl BackupKey {
    /// A fresh random key.
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; 32];
        crate::util::random_bytes(&mut bytes);
        // AES-256-GCM accepts any 32-byte key; None only if the crypto library refused to start,
        // and then backups answer an error instead of the emulator failing to start.
        BackupKey {
            key: RandomizedNonceKey::new(&AES_256_GCM, &bytes).ok(),
        }
    }

    /// Seals `secret` (all its versions) into a blob.
    pub(crate) fn seal(&self, secret: &Secret) -> Result<Vec<u8>, String> {
        let key = self.key.as_ref().ok_or("the backup key is unavailable")?;
        let mut body = serde_json::to_vec(&payload(secret)).map_err(|e| e.to_string())?;
        let nonce = key
            .seal_in_place_append_tag(Aad::from(MAGIC), &mut body)
            .map_err(|_| "sealing the backup failed".to_string())?;
        let mut blob = Vec::with_capacity(MAGIC.len() + NONCE_LEN + body.len());
        blob.extend_from_slice(MAGIC);
        blob.extend_from_slice(nonce.as_ref());
        blob.extend_from_slice(&body);
        Ok(blob)
    }

    /// Opens a blob made by [`BackupKey::seal`] of this key; None if it is not one.
    pub(crate) fn open(&self, blob: &[u8]) -> Option<Secret> {
        let key = self.key.as_ref()?;
        let rest = blob.strip_prefix(MAGIC)?;
        if rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(MAGIC), &mut in_out)
            .ok()?;
        let value: Value = serde_json::from_slice(plain).ok()?;
        secret_from(&value)
    }
}

fn payload(secret: &Secret) -> Value {
    let versions: Vec<Value> = secret
        .versions
        .iter()
        .map(|v| {
            let mut m = Map::new();
            m.insert("id".into(), Value::from(v.id.clone()));
            m.insert("value".into(), Value::from(v.value.clone()));
            if let Some(ct) = &v.content_type {
                m.insert("contentType".into(), Value::from(ct.clone()));
            }
            insert_tags(&mut m, &v.tags);
            Times::from(v).insert_into(&mut m);
            Value::Object(m)
        })
        .collect();
    json!({"name": secret.name, "versions": versions})
}

fn secret_from(value: &Value) -> Option<Secret> {
    let name = value.get("name")?.as_str()?;
    if !is_valid_name(name) {
        return None;
    }
    let mut versions = Vec::new();
    for v in value.get("versions")?.as_array()? {
        let id = v.get("id")?.as_str()?;
        if !crate::util::is_version_id(id) {
            return None;
        }
        let tags = match v.get("tags") {
            None => None,
            Some(Value::Object(map)) => {
                let mut tags = BTreeMap::new();
                for (k, t) in map {
                    tags.insert(k.clone(), t.as_str()?.to_string());
                }
                Some(tags)
            }
            Some(_) => return None,
        };
        versions.push(Version {
            id: id.to_string(),
            value: v.get("value")?.as_str()?.to_string(),
            content_type: match v.get("contentType") {
                None => None,
                Some(ct) => Some(ct.as_str()?.to_string()),
            },
            tags,
            enabled: v.get("enabled")?.as_bool()?,
            nbf: match v.get("nbf") {
                None => None,
                Some(n) => Some(n.as_i64()?),
            },
            exp: match v.get("exp") {
                None => None,
                Some(n) => Some(n.as_i64()?),
            },
            managed: false,
            created: v.get("created")?.as_i64()?,
            updated: v.get("updated")?.as_i64()?,
        });
    }
    if versions.is_empty() {
        return None;
    }
    Some(Secret {
        name: name.to_string(),
        versions,
        deleted: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret {
            name: "Db-Pass".into(),
            versions: vec![
                Version {
                    id: "0123456789abcdef0123456789abcdef".into(),
                    value: "one".into(),
                    content_type: None,
                    tags: None,
                    enabled: false,
                    nbf: None,
                    exp: Some(1_900_000_000),
                    created: 10,
                    updated: 12,
                    managed: false,
                },
                Version {
                    id: "fedcba9876543210fedcba9876543210".into(),
                    value: "two".into(),
                    content_type: Some("text/plain".into()),
                    tags: Some(BTreeMap::from([("env".to_string(), "dev".to_string())])),
                    enabled: true,
                    nbf: Some(5),
                    exp: None,
                    created: 11,
                    updated: 11,
                    managed: false,
                },
            ],
            deleted: None,
        }
    }

    #[test]
    fn round_trip_keeps_every_version() {
        let key = BackupKey::generate();
        let blob = key.seal(&secret()).expect("seals");
        assert_eq!(key.open(&blob), Some(secret()));
    }

    #[test]
    fn opaque_and_bound_to_one_emulator() {
        let key = BackupKey::generate();
        let blob = key.seal(&secret()).expect("seals");
        assert!(
            !blob.windows(3).any(|w| w == b"two"),
            "values are not readable in the blob"
        );
        assert_eq!(BackupKey::generate().open(&blob), None, "another emulator");
        let mut changed = blob.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert_eq!(key.open(&changed), None, "a changed blob");
        assert_eq!(key.open(&blob[..MAGIC.len() + 4]), None, "a truncated blob");
        assert_eq!(key.open(b"not a backup"), None);
    }
}
