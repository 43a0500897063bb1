//! The JSON of secrets: SecretBundle, SecretItem and their deleted forms.

use crate::secret::{Secret, Version};
use crate::state::Shared;
use crate::wire::{insert_tags, with_deletion, Times};
use serde_json::{json, Map, Value};

fn common(m: &mut Map<String, Value>, v: &Version) {
    if let Some(ct) = &v.content_type {
        m.insert("contentType".into(), Value::from(ct.clone()));
    }
    if v.managed {
        m.insert("managed".into(), Value::from(true));
    }
    m.insert("attributes".into(), Times::from(v).attributes());
    insert_tags(m, &v.tags);
}

/// SecretBundle: `value` (when `with_value`), `id` with version, `contentType`, `attributes`, `tags`.
pub(crate) fn bundle(shared: &Shared, s: &Secret, v: &Version, with_value: bool) -> Value {
    let mut m = Map::new();
    if with_value {
        m.insert("value".into(), Value::from(v.value.clone()));
    }
    m.insert(
        "id".into(),
        Value::from(format!(
            "{}/secrets/{}/{}",
            shared.settings.vault_url, s.name, v.id
        )),
    );
    if v.managed {
        m.insert(
            "kid".into(),
            Value::from(format!(
                "{}/keys/{}/{}",
                shared.settings.vault_url, s.name, v.id
            )),
        );
    }
    common(&mut m, v);
    Value::Object(m)
}

/// SecretItem: like a bundle without `value`; `id` without version unless `versioned`.
pub(crate) fn item(shared: &Shared, s: &Secret, v: &Version, versioned: bool) -> Value {
    let mut m = Map::new();
    let id = if versioned {
        format!("{}/secrets/{}/{}", shared.settings.vault_url, s.name, v.id)
    } else {
        format!("{}/secrets/{}", shared.settings.vault_url, s.name)
    };
    m.insert("id".into(), Value::from(id));
    common(&mut m, v);
    Value::Object(m)
}

/// DeletedSecretBundle of the latest version (no `value`).
pub(crate) fn deleted_bundle(shared: &Shared, s: &Secret) -> Value {
    let value = s
        .latest()
        .map_or_else(|| json!({}), |v| bundle(shared, s, v, false));
    with_deletion(shared, &s.name, s.deleted, "deletedsecrets", value)
}

/// DeletedSecretItem.
pub(crate) fn deleted_item(shared: &Shared, s: &Secret) -> Value {
    let value = s
        .latest()
        .map_or_else(|| json!({}), |v| item(shared, s, v, false));
    with_deletion(shared, &s.name, s.deleted, "deletedsecrets", value)
}
