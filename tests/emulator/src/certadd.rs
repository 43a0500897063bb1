//! Adding a certificate version together with its key and backing secret versions.
//!
//! Adding a certificate version with its key and backing secret versions (one version id, as in
//! Key Vault) in one transaction, and completing its policy from the certificate.

use crate::certgen::{self, Material};
use crate::objects::{bad, default_key_ops, version_id, Attrs, CertVersion, KeyVersion, PEM};
use crate::secret::NewVersion;
use crate::state::State;
use crate::store::is_valid_name;
use crate::vault_error::VaultError;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

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
