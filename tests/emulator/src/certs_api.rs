//! The Key Vault certificates API.
//!
//! Operations: create (self-signed issuer `Self`, completes at once), import
//! (PKCS#12 or PEM), get, list, versions, policy, pending operation, update, delete, deleted
//! certificates, purge, recover. Each version comes with its key and backing secret version.

use crate::bodies::{parse_attributes, parse_tags, read_json, ParsedAttributes};
use crate::certadd::NewCert;
use crate::certgen::{self, CertRequest, KeySpec, Material};
use crate::http::{empty, json};
use crate::objapi::{deleted, deleted_not_found, get, newest, not_found, update, Answer, Ctx};
use crate::objects::{bad, CertVersion, Named, PEM, PKCS12};
use crate::objroutes::{Kind, ObjRoute};
use crate::state::Shared;
use crate::vault_error::VaultError;
use crate::wire::{insert_tags, Times};
use base64::Engine;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

/// Makes a self-signed certificate's material from a REST policy (snake_case members).
pub(crate) fn self_signed_material(policy: &Value) -> Result<(Material, bool, String), VaultError> {
    let issuer = policy
        .pointer("/issuer/name")
        .and_then(Value::as_str)
        .unwrap_or("Self");
    if !issuer.eq_ignore_ascii_case("Self") {
        return Err(bad(format!(
            "Issuer '{issuer}' is not supported by the emulator; use the self-signed issuer 'Self'."
        )));
    }
    let kp = policy.get("key_props").cloned().unwrap_or(Value::Null);
    let kty = kp.get("kty").and_then(Value::as_str).unwrap_or("RSA");
    let spec = KeySpec::parse(
        kty,
        kp.get("key_size").and_then(Value::as_u64),
        kp.get("crv").and_then(Value::as_str),
    )
    .map_err(bad)?;
    let exportable = kp
        .get("exportable")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let content_type = content_type_of(policy).unwrap_or(PKCS12).to_string();
    let subject = policy
        .pointer("/x509_props/subject")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("Property 'policy.x509_props.subject' is required."))?;
    let dns_names = policy
        .pointer("/x509_props/sans/dns_names")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let months = policy
        .pointer("/x509_props/validity_months")
        .and_then(Value::as_u64)
        .unwrap_or(12);
    let key = spec.generate().map_err(bad)?;
    let req = CertRequest {
        subject: subject.to_string(),
        dns_names,
        validity_months: months.clamp(1, 1200) as u32,
        ca: false,
    };
    let der = certgen::self_signed(&req, &key).map_err(bad)?;
    let material = Material {
        key: Some(key.serialize_der()),
        certs: vec![der],
    };
    Ok((material, exportable, content_type))
}

fn content_type_of(policy: &Value) -> Option<&str> {
    policy
        .pointer("/secret_props/contentType")
        .and_then(Value::as_str)
        .filter(|c| *c == PKCS12 || *c == PEM)
}

/// Decodes imported content: PEM text, or base64 PKCS#12 with `password`.
pub(crate) fn import_material(
    value: &str,
    password: &str,
) -> Result<(Material, &'static str), VaultError> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok((certgen::pem_decode(value).map_err(bad)?, PEM));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| bad("The certificate value is neither PEM nor base64 PKCS#12 content."))?;
    // The SDKs send PEM imports base64-encoded too.
    if der.starts_with(b"-----BEGIN") {
        let text = String::from_utf8(der).map_err(|_| bad("The PEM content is not UTF-8."))?;
        return Ok((certgen::pem_decode(&text).map_err(bad)?, PEM));
    }
    Ok((certgen::pfx_decode(&der, password).map_err(bad)?, PKCS12))
}

/// Runs a certificate operation whose request has passed the common checks.
pub(crate) async fn execute(ctx: &Ctx<'_>, route: ObjRoute, body: Incoming) -> Answer {
    let (shared, now) = (ctx.shared, ctx.now);
    let c = Kind::Certificates;
    match route {
        ObjRoute::Get(_, name, version) => {
            let (cert, v) = get::<CertVersion>(shared, &name, version.as_deref())?;
            Ok(json(200, &bundle(shared, &cert, &v)))
        }
        ObjRoute::Policy(name) => {
            let (cert, v) = get::<CertVersion>(shared, &name, None)?;
            Ok(json(200, &policy_json(shared, &cert, &v)))
        }
        ObjRoute::Pending(name) => {
            let (cert, _) = get::<CertVersion>(shared, &name, None)?;
            Ok(json(200, &operation(shared, &cert.name, true)))
        }
        ObjRoute::List(_) => ctx.list::<CertVersion>(),
        ObjRoute::ListVersions(_, name) => ctx.list_versions::<CertVersion>(&name),
        ObjRoute::Create(_, name) => {
            let body = read_json(body).await?;
            let policy = body.get("policy").cloned().unwrap_or_else(|| json!({}));
            let made = self_signed_material(&policy)?;
            let mut policy = policy;
            policy["issuer"] = json!({"name": "Self"});
            add(shared, &name, &body, made, policy, now)?;
            // Key Vault answers the creation as in progress even for a self-signed certificate
            // (the SDK pollers rely on it); the pending operation is complete at the first poll.
            Ok(json(202, &operation(shared, &name, false)))
        }
        ObjRoute::Import(_, name) => {
            let body = read_json(body).await?;
            let value = body.get("value").and_then(Value::as_str).ok_or_else(|| {
                VaultError::bad_parameter("Property 'value' is required and must be a string.")
            })?;
            let pwd = body.get("pwd").and_then(Value::as_str).unwrap_or("");
            let (material, form) = import_material(value, pwd)?;
            let policy = body.get("policy").cloned().unwrap_or_else(|| json!({}));
            let content_type = content_type_of(&policy).unwrap_or(form).to_string();
            let exportable = policy
                .pointer("/key_props/exportable")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let made = (material, exportable, content_type);
            let v = add(shared, &name, &body, made, policy, now)?;
            let (cert, _) = get::<CertVersion>(shared, &name, Some(&v.id))?;
            Ok(json(200, &bundle(shared, &cert, &v)))
        }
        ObjRoute::Update(_, name, version) => {
            let body = read_json(body).await?;
            let mut st = shared.lock();
            let changes = |v: &mut CertVersion, _: &ParsedAttributes| {
                if let (Some(Value::Object(p)), Value::Object(cur)) =
                    (body.get("policy"), &mut v.policy)
                {
                    for (k, val) in p {
                        cur.insert(k.clone(), val.clone());
                    }
                }
            };
            let (v, attrs) = update(&mut st, &name, version.as_deref(), &body, now, changes)?;
            // As in Key Vault, enabling or disabling a certificate does the same to its key and
            // secret versions.
            if let Some(enabled) = attrs.enabled {
                if let Some(k) = st.objects.keys.get_mut(&name, Some(&v.id)) {
                    k.attrs.enabled = enabled;
                }
                let update = crate::secret::AttributeUpdate {
                    enabled: Some(enabled),
                    ..Default::default()
                };
                let _ = st.store.update(&name, Some(&v.id), update, now);
            }
            drop(st);
            let (cert, _) = get::<CertVersion>(shared, &name, None)?;
            Ok(json(200, &bundle(shared, &cert, &v)))
        }
        ObjRoute::Delete(_, name) => {
            let mut st = shared.lock();
            let cert = st
                .objects
                .certs
                .delete(&name, now)
                .ok_or_else(|| not_found(c, &name, None))?;
            st.objects.keys.delete(&name, now);
            let _ = st.store.delete(&name, now);
            drop(st);
            Ok(json(200, &deleted(shared, &cert, true)))
        }
        ObjRoute::GetDeleted(_, name) => ctx.get_deleted::<CertVersion>(&name),
        ObjRoute::ListDeleted(_) => ctx.list_deleted::<CertVersion>(),
        ObjRoute::Purge(_, name) => {
            let mut st = shared.lock();
            if !st.objects.certs.purge(&name) {
                return Err(deleted_not_found(c, &name));
            }
            st.objects.keys.purge(&name);
            let _ = st.store.purge(&name);
            Ok(empty(204))
        }
        ObjRoute::Recover(_, name) => {
            let mut st = shared.lock();
            let cert = st
                .objects
                .certs
                .recover(&name)
                .ok_or_else(|| deleted_not_found(c, &name))?;
            st.objects.keys.recover(&name);
            let _ = st.store.recover(&name);
            drop(st);
            let v = newest(&cert, &name)?;
            Ok(json(200, &bundle(shared, &cert, &v)))
        }
    }
}

/// Adds a version made of `made` (material, exportable, content type) and `policy`, with the
/// attributes and tags of `body`.
fn add(
    shared: &Shared,
    name: &str,
    body: &Value,
    made: (Material, bool, String),
    policy: Value,
    now: i64,
) -> Result<CertVersion, VaultError> {
    let (material, exportable, content_type) = made;
    let attrs = parse_attributes(body)?;
    let new = NewCert {
        material,
        exportable,
        content_type,
        policy,
        enabled: attrs.enabled.unwrap_or(true),
        tags: parse_tags(body)?,
        version: None,
    };
    crate::certadd::add_certificate(&mut shared.lock(), name, new, now)
}

/// The creation operation of `name`, completed or in progress.
fn operation(shared: &Shared, name: &str, completed: bool) -> Value {
    let url = &shared.settings.vault_url;
    let (status, details) = if completed {
        ("completed", "")
    } else {
        (
            "inProgress",
            "Pending certificate created. Certificate request is in progress. This may take some time \
             based on the issuer provider. Please check again later.",
        )
    };
    json!({
        "id": format!("{url}/certificates/{name}/pending"),
        "issuer": {"name": "Self"},
        "cancellation_requested": false,
        "status": status,
        "status_details": details,
        "target": format!("{url}/certificates/{name}"),
        "request_id": crate::util::random_hex(16),
    })
}

fn policy_json(shared: &Shared, cert: &Named<CertVersion>, v: &CertVersion) -> Value {
    let mut p = match &v.policy {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    p.insert(
        "id".into(),
        Value::from(format!(
            "{}/certificates/{}/policy",
            shared.settings.vault_url, cert.name
        )),
    );
    p.insert(
        "attributes".into(),
        json!({"enabled": true, "created": v.attrs.created, "updated": v.attrs.updated}),
    );
    Value::Object(p)
}

/// CertificateBundle.
pub(crate) fn bundle(shared: &Shared, cert: &Named<CertVersion>, v: &CertVersion) -> Value {
    let url = &shared.settings.vault_url;
    let n = &cert.name;
    let mut m = Map::new();
    m.insert(
        "id".into(),
        Value::from(format!("{url}/certificates/{n}/{}", v.id)),
    );
    m.insert(
        "kid".into(),
        Value::from(format!("{url}/keys/{n}/{}", v.id)),
    );
    m.insert(
        "sid".into(),
        Value::from(format!("{url}/secrets/{n}/{}", v.id)),
    );
    m.insert("x5t".into(), Value::from(certgen::x5t(&v.cer)));
    m.insert("cer".into(), Value::from(certgen::b64(&v.cer)));
    m.insert("attributes".into(), Times::from(&v.attrs).attributes());
    m.insert("policy".into(), policy_json(shared, cert, v));
    insert_tags(&mut m, &v.attrs.tags);
    Value::Object(m)
}

fn item(shared: &Shared, cert: &Named<CertVersion>, v: &CertVersion, versioned: bool) -> Value {
    let url = &shared.settings.vault_url;
    let id = if versioned {
        format!("{url}/certificates/{}/{}", cert.name, v.id)
    } else {
        format!("{url}/certificates/{}", cert.name)
    };
    let mut m = Map::new();
    m.insert("id".into(), Value::from(id));
    m.insert("x5t".into(), Value::from(certgen::x5t(&v.cer)));
    m.insert("attributes".into(), Times::from(&v.attrs).attributes());
    insert_tags(&mut m, &v.attrs.tags);
    Value::Object(m)
}

crate::objapi::object_kind!(
    CertVersion,
    Certificates,
    "/certificates",
    "deletedcertificates",
    certs
);
