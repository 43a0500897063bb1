//! Seeding certificates and keys (seed file, `POST /_emulator/seed`, and the test controls).

use crate::certadd::{add_certificate, NewCert};
use crate::certs_api::{import_material, self_signed_material};
use crate::config::{Seed, SeedCertVersion, SeedCertificate, SeedKey, SeedKeyVersion};
use crate::keys_api::{key_material, new_version};
use crate::objects::{PEM, PKCS12};
use crate::state::State;
use serde_json::{json, Value};

/// Adds the seed's certificates and keys.
pub(crate) fn apply(st: &mut State, seed: &Seed, now: i64) -> Result<(), String> {
    for c in &seed.certificates {
        for v in &c.versions {
            add_cert_version(st, c, v, now)?;
        }
    }
    for k in &seed.keys {
        for v in &k.versions {
            add_key_version(st, k, v, now)?;
        }
    }
    Ok(())
}

/// Adds one certificate version; returns its version id.
pub(crate) fn add_cert_version(
    st: &mut State,
    cert: &SeedCertificate,
    v: &SeedCertVersion,
    now: i64,
) -> Result<String, String> {
    let name = &cert.name;
    let err = |m: String| format!("certificate {name}: {m}");
    let given = [v.pfx.is_some(), v.pem.is_some(), v.policy.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(err(
            "each version needs exactly one of \"pfx\", \"pem\" or \"policy\"".into(),
        ));
    }
    let (material, exportable, content_type, policy) = if let Some(p) = &v.policy {
        let mut key_props = json!({"kty": p.kty.clone().unwrap_or_else(|| "RSA".into()),
                                   "exportable": p.exportable.or(v.exportable).or(cert.exportable).unwrap_or(true)});
        if let Some(size) = p.key_size {
            key_props["key_size"] = Value::from(size);
        }
        if let Some(crv) = &p.crv {
            key_props["crv"] = Value::from(crv.clone());
        }
        let policy = json!({
            "key_props": key_props,
            "secret_props": {"contentType": p.content_type.clone().unwrap_or_else(|| PKCS12.into())},
            "x509_props": {"subject": p.subject, "sans": {"dns_names": p.dns_names},
                           "validity_months": p.validity_months.unwrap_or(12)},
            "issuer": {"name": "Self"},
        });
        let (m, e, ct) = self_signed_material(&policy).map_err(|e| err(e.message))?;
        (m, e, ct, policy)
    } else {
        let (text, pwd) = match (&v.pfx, &v.pem) {
            (Some(pfx), _) => (pfx.as_str(), v.password.as_deref().unwrap_or("")),
            (_, Some(pem)) => (pem.as_str(), ""),
            _ => return Err(err("no content".into())),
        };
        let (m, form) = import_material(text, pwd).map_err(|e| err(e.message))?;
        let ct = v.content_type.clone().unwrap_or_else(|| form.to_string());
        if ct != PKCS12 && ct != PEM {
            return Err(err(format!(
                "content type {ct:?} must be {PKCS12} or {PEM}"
            )));
        }
        let exportable = v.exportable.or(cert.exportable).unwrap_or(true);
        (m, exportable, ct, json!({}))
    };
    let new = NewCert {
        material,
        exportable,
        content_type,
        policy,
        enabled: v.enabled.or(cert.enabled).unwrap_or(true),
        tags: cert.tags.clone(),
        version: v.version.clone(),
    };
    add_certificate(st, name, new, now)
        .map(|v| v.id)
        .map_err(|e| err(e.message))
}

/// Adds one key version; returns its version id.
pub(crate) fn add_key_version(
    st: &mut State,
    key: &SeedKey,
    v: &SeedKeyVersion,
    now: i64,
) -> Result<String, String> {
    let name = &key.name;
    let err = |m: String| format!("key {name}: {m}");
    if !crate::store::is_valid_name(name) {
        return Err(err("invalid name".into()));
    }
    if v.jwk.is_some() == v.kty.is_some() {
        return Err(err(
            "each version needs exactly one of \"kty\" or \"jwk\"".into()
        ));
    }
    let jwk = key_material(
        v.kty.as_deref(),
        v.key_size,
        v.crv.as_deref(),
        v.jwk.as_ref(),
    )
    .map_err(|e| err(e.message))?;
    let kv = new_version(
        jwk,
        None,
        v.version.as_deref(),
        v.enabled.or(key.enabled).unwrap_or(true),
        key.tags.clone(),
        now,
    )
    .map_err(|e| err(e.message))?;
    let id = kv.id.clone();
    st.objects
        .keys
        .push(name, kv, "Key")
        .map_err(|e| err(e.message))?;
    Ok(id)
}
