//! Certificates and keys: their versions, soft deletion, and the one transaction that adds a
//! certificate version together with its key version and its backing secret version (all three
//! share one version id, as in Key Vault).

use crate::certgen::{self, Material};
use crate::secret::{Deletion, NewVersion};
use crate::state::State;
use crate::store::{is_valid_name, RECOVERABLE_DAYS};
use crate::util;
use crate::vault_error::VaultError;
use serde_json::{json, Map, Value};
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

/// What a new certificate version is made of.
pub(crate) struct NewCert {
    pub material: Material,
    pub exportable: bool,
    pub content_type: String,
    /// The policy (snake_case members as in the REST API); completed from the leaf.
    pub policy: Value,
    pub enabled: bool,
    pub tags: Option<BTreeMap<String, String>>,
    pub version: Option<String>,
}

/// Adds a certificate version with its key and secret versions (one version id).
pub(crate) fn add_certificate(
    st: &mut State,
    name: &str,
    new: NewCert,
    now: i64,
) -> Result<CertVersion, VaultError> {
    if !is_valid_name(name) {
        return Err(VaultError::invalid_name(name));
    }
    let leaf = new
        .material
        .certs
        .first()
        .ok_or_else(|| bad("The certificate content holds no certificate."))?
        .clone();
    let facts = certgen::cert_facts(&leaf).map_err(bad)?;
    let jwk = certgen::public_jwk(&facts.spki).map_err(bad)?;
    if let Some(key) = &new.material.key {
        let kp = certgen::key_from_pkcs8(key).map_err(bad)?;
        if certgen::key_spki(&kp).map_err(bad)? != facts.spki {
            return Err(bad(
                "The private key does not match the public key of the certificate.",
            ));
        }
    } else if new.exportable {
        return Err(bad(
            "The certificate content holds no private key (an exportable certificate needs one).",
        ));
    }
    if let Some(c) = st.objects.certs.items.get(&name.to_ascii_lowercase()) {
        if c.deleted.is_some() {
            return Err(VaultError::new(
                409,
                "Conflict",
                format!(
                    "Certificate {} is currently in a deleted but recoverable state, and its name cannot be \
                     reused; in this state, the certificate can only be recovered or purged.",
                    c.name
                ),
            )
            .with_inner("ObjectIsDeletedButRecoverable"));
        }
    }
    let id = version_id(new.version.as_deref())?;
    let key = if new.exportable {
        new.material.key.as_deref()
    } else {
        None
    };
    let value = if new.content_type == PEM {
        certgen::pem_encode(key, &new.material.certs)
    } else {
        certgen::b64(&certgen::pfx_encode(key, &new.material.certs).map_err(bad)?)
    };
    let attrs = Attrs {
        enabled: new.enabled,
        nbf: Some(facts.not_before),
        exp: Some(facts.not_after),
        created: now,
        updated: now,
        tags: new.tags.clone(),
    };
    let policy = complete_policy(new.policy, &facts, &jwk, new.exportable, &new.content_type);
    let (_, secret_version) = st.store.set(
        name,
        NewVersion {
            value,
            version: Some(id.clone()),
            content_type: Some(new.content_type.clone()),
            tags: new.tags.clone(),
            enabled: Some(new.enabled),
            nbf: attrs.nbf,
            exp: attrs.exp,
            created: Some(now),
        },
        now,
    )?;
    st.store.mark_managed(name, &secret_version.id);
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .unwrap_or("RSA")
        .to_string();
    st.objects.keys.push(
        name,
        KeyVersion {
            id: id.clone(),
            jwk,
            key_ops: default_key_ops(&kty),
            attrs: attrs.clone(),
            managed: true,
        },
        "Key",
    )?;
    let version = CertVersion {
        id,
        cer: leaf,
        attrs,
        policy,
    };
    st.objects
        .certs
        .push(name, version.clone(), "Certificate")?;
    Ok(version)
}

/// Fills the policy's key, secret and X.509 properties in from the certificate where missing.
fn complete_policy(
    policy: Value,
    facts: &certgen::CertFacts,
    jwk: &Map<String, Value>,
    exportable: bool,
    content_type: &str,
) -> Value {
    let mut p = match policy {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let kty = jwk.get("kty").cloned().unwrap_or(Value::from("RSA"));
    let mut key_props = json!({"exportable": exportable, "kty": kty, "reuse_key": false});
    if let Some(crv) = jwk.get("crv") {
        key_props["crv"] = crv.clone();
    } else if let Some(n) = jwk.get("n").and_then(Value::as_str) {
        let bytes = n.len() * 3 / 4;
        key_props["key_size"] = Value::from(bytes.div_ceil(128) * 1024);
    }
    if let Some(Value::Object(given)) = p.get("key_props") {
        for (k, v) in given {
            key_props[k] = v.clone();
        }
    }
    key_props["exportable"] = Value::from(exportable);
    p.insert("key_props".into(), key_props);
    p.insert("secret_props".into(), json!({"contentType": content_type}));
    let validity_months = ((facts.not_after - facts.not_before) / (30 * 86_400)).max(1);
    let x509 = p.entry("x509_props").or_insert_with(|| json!({}));
    if let Value::Object(x) = x509 {
        x.entry("subject")
            .or_insert_with(|| Value::from(facts.subject.clone()));
        if !facts.dns_names.is_empty() {
            x.entry("sans")
                .or_insert_with(|| json!({"dns_names": facts.dns_names}));
        }
        x.entry("ekus")
            .or_insert_with(|| json!(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
        x.entry("key_usage")
            .or_insert_with(|| json!(["digitalSignature", "keyEncipherment"]));
        x.entry("validity_months")
            .or_insert_with(|| Value::from(validity_months));
    }
    p.entry("lifetime_actions").or_insert_with(|| {
        json!([{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}])
    });
    p.entry("issuer")
        .or_insert_with(|| json!({"name": "Unknown"}));
    p.into_iter().collect::<Map<String, Value>>().into()
}

/// 400 BadParameter with `message`.
pub(crate) fn bad<S: Into<String>>(message: S) -> VaultError {
    VaultError::bad_parameter(message)
}
