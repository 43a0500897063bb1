//! The Key Vault keys API.
//!
//! Operations: create, import, get (public JWK only), list, versions, update,
//! delete, deleted keys, purge, recover.

use crate::bodies::{parse_attributes, parse_tags, read_json, ParsedAttributes};
use crate::certgen::{self, KeySpec};
use crate::http::{empty, json};
use crate::objapi::{deleted, deleted_not_found, get, newest, not_found, update, Answer, Ctx};
use crate::objects::{bad, default_key_ops, version_id, Attrs, KeyVersion, Named};
use crate::objroutes::{Kind, ObjRoute};
use crate::state::Shared;
use crate::vault_error::VaultError;
use crate::wire::{insert_tags, Times};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

/// Public JWK members of a new key: generated from `kty`/`key_size`/`crv`, or taken from `jwk`.
pub(crate) fn key_material(
    kty: Option<&str>,
    key_size: Option<u64>,
    crv: Option<&str>,
    jwk: Option<&Value>,
) -> Result<Map<String, Value>, VaultError> {
    if let Some(jwk) = jwk {
        let Value::Object(j) = jwk else {
            return Err(bad("Property 'key' must be a JSON Web Key object."));
        };
        let kty = j.get("kty").and_then(Value::as_str).unwrap_or_default();
        let members: &[&str] = match kty.to_ascii_uppercase().as_str() {
            "RSA" | "RSA-HSM" => &["n", "e"],
            "EC" | "EC-HSM" => &["crv", "x", "y"],
            other => {
                return Err(bad(format!(
                    "The key type '{other}' is not supported (RSA, RSA-HSM, EC, EC-HSM)."
                )))
            }
        };
        let mut m = Map::new();
        m.insert(
            "kty".into(),
            Value::from(kty.trim_end_matches("-HSM").to_ascii_uppercase()),
        );
        for k in members {
            let v = j
                .get(*k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(format!("The JSON Web Key lacks member '{k}'.")))?;
            m.insert((*k).into(), Value::from(v.trim_end_matches('=')));
        }
        if let Some(crv) = m.get("crv").and_then(Value::as_str) {
            KeySpec::parse("EC", None, Some(crv)).map_err(bad)?;
        }
        return Ok(m);
    }
    let kty = kty.ok_or_else(|| bad("Property 'kty' is required."))?;
    let spec = KeySpec::parse(kty, key_size, crv).map_err(bad)?;
    let kp = spec.generate().map_err(bad)?;
    certgen::public_jwk(&certgen::key_spki(&kp).map_err(bad)?).map_err(bad)
}

/// A new key version.
pub(crate) fn new_version(
    jwk: Map<String, Value>,
    key_ops: Option<Vec<String>>,
    version: Option<&str>,
    enabled: bool,
    tags: Option<std::collections::BTreeMap<String, String>>,
    now: i64,
) -> Result<KeyVersion, VaultError> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .unwrap_or("RSA")
        .to_string();
    Ok(KeyVersion {
        id: version_id(version)?,
        jwk,
        key_ops: key_ops.unwrap_or_else(|| default_key_ops(&kty)),
        attrs: Attrs {
            enabled,
            nbf: None,
            exp: None,
            created: now,
            updated: now,
            tags,
        },
        managed: false,
    })
}

/// Runs a key operation whose request has passed the common checks.
pub(crate) async fn execute(ctx: &Ctx<'_>, route: ObjRoute, body: Incoming) -> Answer {
    let (shared, now) = (ctx.shared, ctx.now);
    match route {
        ObjRoute::Get(_, name, version) => {
            let (k, v) = get::<KeyVersion>(shared, &name, version.as_deref())?;
            if !v.attrs.enabled {
                return Err(VaultError::new(
                    403,
                    "Forbidden",
                    "Operation get is not allowed on a disabled key.",
                )
                .with_inner("KeyDisabled"));
            }
            Ok(json(200, &bundle(shared, &k, &v)))
        }
        ObjRoute::List(_) => ctx.list::<KeyVersion>(),
        ObjRoute::ListVersions(_, name) => ctx.list_versions::<KeyVersion>(&name),
        ObjRoute::Create(_, name) | ObjRoute::Import(_, name) => {
            let body = read_json(body).await?;
            let jwk = if let Some(key) = body.get("key") {
                key_material(None, None, None, Some(key))?
            } else {
                let kty = body.get("kty").and_then(Value::as_str);
                let size = body.get("key_size").and_then(Value::as_u64);
                let crv = body.get("crv").and_then(Value::as_str);
                key_material(kty, size, crv, None)?
            };
            let ops =
                key_ops(body.get("key_ops")).or_else(|| key_ops(body.pointer("/key/key_ops")));
            let attrs = parse_attributes(&body)?;
            let mut v = new_version(
                jwk,
                ops,
                None,
                attrs.enabled.unwrap_or(true),
                parse_tags(&body)?,
                now,
            )?;
            v.attrs.nbf = attrs.nbf;
            v.attrs.exp = attrs.exp;
            let mut st = shared.lock();
            st.objects.keys.push(&name, v.clone(), "Key")?;
            let k = st
                .objects
                .keys
                .live(&name)
                .cloned()
                .ok_or_else(|| not_found(Kind::Keys, &name, None))?;
            drop(st);
            Ok(json(200, &bundle(shared, &k, &v)))
        }
        ObjRoute::Update(_, name, version) => {
            let body = read_json(body).await?;
            let mut st = shared.lock();
            let changes = |v: &mut KeyVersion, attrs: &ParsedAttributes| {
                if attrs.nbf.is_some() {
                    v.attrs.nbf = attrs.nbf;
                }
                if attrs.exp.is_some() {
                    v.attrs.exp = attrs.exp;
                }
                if let Some(ops) = key_ops(body.get("key_ops")) {
                    v.key_ops = ops;
                }
            };
            let (v, _) = update(&mut st, &name, version.as_deref(), &body, now, changes)?;
            let k = st.objects.keys.live(&name).cloned();
            drop(st);
            let k = k.ok_or_else(|| not_found(Kind::Keys, &name, None))?;
            Ok(json(200, &bundle(shared, &k, &v)))
        }
        ObjRoute::Delete(_, name) => {
            let k = shared
                .lock()
                .objects
                .keys
                .delete(&name, now)
                .ok_or_else(|| not_found(Kind::Keys, &name, None))?;
            Ok(json(200, &deleted(shared, &k, true)))
        }
        ObjRoute::GetDeleted(_, name) => ctx.get_deleted::<KeyVersion>(&name),
        ObjRoute::ListDeleted(_) => ctx.list_deleted::<KeyVersion>(),
        ObjRoute::Purge(_, name) => {
            if shared.lock().objects.keys.purge(&name) {
                Ok(empty(204))
            } else {
                Err(deleted_not_found(Kind::Keys, &name))
            }
        }
        ObjRoute::Recover(_, name) => {
            let k = shared
                .lock()
                .objects
                .keys
                .recover(&name)
                .ok_or_else(|| deleted_not_found(Kind::Keys, &name))?;
            let v = newest(&k, &name)?;
            Ok(json(200, &bundle(shared, &k, &v)))
        }
        ObjRoute::Pending(_) | ObjRoute::Policy(_) => {
            Err(VaultError::new(404, "NotFound", "Not found."))
        }
    }
}

/// The operation names of a `key_ops` array (its strings; anything else is left out).
fn key_ops(value: Option<&Value>) -> Option<Vec<String>> {
    value.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect()
    })
}

fn common(m: &mut Map<String, Value>, v: &KeyVersion) {
    m.insert("attributes".into(), Times::from(&v.attrs).attributes());
    insert_tags(m, &v.attrs.tags);
    if v.managed {
        m.insert("managed".into(), Value::from(true));
    }
}

/// KeyBundle: the public JWK with `kid` and `key_ops`, attributes, tags, `managed`.
pub(crate) fn bundle(shared: &Shared, k: &Named<KeyVersion>, v: &KeyVersion) -> Value {
    let mut key = v.jwk.clone();
    key.insert(
        "kid".into(),
        Value::from(format!(
            "{}/keys/{}/{}",
            shared.settings.vault_url, k.name, v.id
        )),
    );
    key.insert("key_ops".into(), json!(v.key_ops));
    let mut m = Map::new();
    m.insert("key".into(), Value::Object(key));
    common(&mut m, v);
    Value::Object(m)
}

fn item(shared: &Shared, k: &Named<KeyVersion>, v: &KeyVersion, versioned: bool) -> Value {
    let kid = if versioned {
        format!("{}/keys/{}/{}", shared.settings.vault_url, k.name, v.id)
    } else {
        format!("{}/keys/{}", shared.settings.vault_url, k.name)
    };
    let mut m = Map::new();
    m.insert("kid".into(), Value::from(kid));
    common(&mut m, v);
    Value::Object(m)
}

crate::objapi::object_kind!(KeyVersion, Keys, "/keys", "deletedkeys", keys);
