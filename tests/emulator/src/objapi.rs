//! What the certificates and keys APIs do alike: lookups, lists, updates, deleted answers.

use crate::bodies::{parse_attributes, parse_tags, ParsedAttributes};
use crate::http::{json, Resp};
use crate::objects::{Attrs, Collection, HasId, Named, Objects};
use crate::objroutes::Kind;
use crate::paging::{list_response, Paging};
use crate::state::{Shared, State};
use crate::vault_error::VaultError;
use crate::wire::with_deletion;
use serde_json::{json, Value};
use std::sync::Arc;

/// A certificate or key version, and how its collection answers.
pub(crate) trait ObjectKind: HasId + Clone {
    /// Which collection.
    const KIND: Kind;
    /// The collection's path (`/certificates`).
    const PATH: &'static str;
    /// The path word of its deleted objects (`deletedcertificates`).
    const DELETED: &'static str;
    /// The collection in the state.
    fn collection(objects: &Objects) -> &Collection<Self>;
    /// The collection in the state, to change.
    fn collection_mut(objects: &mut Objects) -> &mut Collection<Self>;
    /// The version's attributes, to change.
    fn attrs_mut(&mut self) -> &mut Attrs;
    /// The full answer about one version (CertificateBundle, KeyBundle).
    fn bundle(shared: &Shared, named: &Named<Self>, v: &Self) -> Value;
    /// One version in a list; its id is versioned when `versioned`.
    fn item(shared: &Shared, named: &Named<Self>, v: &Self, versioned: bool) -> Value;
}

/// Implements [`ObjectKind`] for a version type: `object_kind!(Version, Kind variant, path,
/// deleted word, field of Objects)`, with the `bundle` and `item` functions of the calling module.
macro_rules! object_kind {
    ($version:ty, $kind:ident, $path:literal, $deleted:literal, $field:ident) => {
        impl crate::objapi::ObjectKind for $version {
            const KIND: crate::objroutes::Kind = crate::objroutes::Kind::$kind;
            const PATH: &'static str = $path;
            const DELETED: &'static str = $deleted;

            fn collection(objects: &crate::objects::Objects) -> &crate::objects::Collection<Self> {
                &objects.$field
            }

            fn collection_mut(
                objects: &mut crate::objects::Objects,
            ) -> &mut crate::objects::Collection<Self> {
                &mut objects.$field
            }

            fn attrs_mut(&mut self) -> &mut crate::objects::Attrs {
                &mut self.attrs
            }

            fn bundle(
                shared: &crate::state::Shared,
                named: &crate::objects::Named<Self>,
                v: &Self,
            ) -> serde_json::Value {
                bundle(shared, named, v)
            }

            fn item(
                shared: &crate::state::Shared,
                named: &crate::objects::Named<Self>,
                v: &Self,
                versioned: bool,
            ) -> serde_json::Value {
                item(shared, named, v, versioned)
            }
        }
    };
}
pub(crate) use object_kind;

/// A live object's version (the newest when `version` is `None`), or 404.
pub(crate) fn get<V: ObjectKind>(
    shared: &Shared,
    name: &str,
    version: Option<&str>,
) -> Result<(Named<V>, V), VaultError> {
    V::collection(&shared.lock().objects)
        .get(name, version)
        .ok_or_else(|| not_found(V::KIND, name, version))
}

/// The newest version of an object just recovered, or 404 naming it as the request did.
pub(crate) fn newest<V: ObjectKind>(named: &Named<V>, name: &str) -> Result<V, VaultError> {
    named
        .versions
        .last()
        .cloned()
        .ok_or_else(|| not_found(V::KIND, name, None))
}

/// PATCH of a version with `body`: `enabled` and `tags` when given, then what `more` changes
/// (it sees the body's attributes too); `updated` is stamped last. Returns the updated version
/// and the body's attributes; the caller holds the lock for what must change with it.
pub(crate) fn update<V: ObjectKind>(
    st: &mut State,
    name: &str,
    version: Option<&str>,
    body: &Value,
    now: i64,
    more: impl FnOnce(&mut V, &ParsedAttributes),
) -> Result<(V, ParsedAttributes), VaultError> {
    let attrs = parse_attributes(body)?;
    let tags = parse_tags(body)?;
    let v = V::collection_mut(&mut st.objects)
        .get_mut(name, version)
        .ok_or_else(|| not_found(V::KIND, name, version))?;
    let a = v.attrs_mut();
    if let Some(e) = attrs.enabled {
        a.enabled = e;
    }
    if tags.is_some() {
        a.tags = tags;
    }
    more(v, &attrs);
    let a = v.attrs_mut();
    a.updated = now.max(a.created);
    Ok((v.clone(), attrs))
}

/// A deleted object's answer: its newest version in full (`full`) or as a list item, with the
/// deletion fields.
pub(crate) fn deleted<V: ObjectKind>(shared: &Shared, named: &Named<V>, full: bool) -> Value {
    let value = match named.versions.last() {
        Some(v) if full => V::bundle(shared, named, v),
        Some(v) => V::item(shared, named, v, false),
        None => json!({}),
    };
    with_deletion(shared, &named.name, named.deleted, V::DELETED, value)
}

/// What a handler needs besides its route.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub query: &'a [(String, String)],
    pub api_version: &'a str,
    /// The time of the request (Unix seconds).
    pub now: i64,
}

/// What an operation answers: a response, or the error to answer.
pub(crate) type Answer = Result<Resp, VaultError>;

impl Ctx<'_> {
    /// `GET /{kind}`: a page of the newest version of every live object.
    pub(crate) fn list<V: ObjectKind>(&self) -> Result<Resp, VaultError> {
        let all = V::collection(&self.shared.lock().objects).all_live();
        let shared = self.shared;
        self.list_each(all, V::PATH, &|n| {
            n.versions.last().map(|v| V::item(shared, n, v, false))
        })
    }

    /// `GET /deleted{kind}`: a page of the soft-deleted objects.
    pub(crate) fn list_deleted<V: ObjectKind>(&self) -> Result<Resp, VaultError> {
        let all = V::collection(&self.shared.lock().objects).all_deleted();
        let path = format!("/{}", V::DELETED);
        self.list_each(all, &path, &|n| Some(deleted(self.shared, n, false)))
    }

    /// `GET /deleted{kind}/{name}`.
    pub(crate) fn get_deleted<V: ObjectKind>(&self, name: &str) -> Result<Resp, VaultError> {
        let named = V::collection(&self.shared.lock().objects)
            .deleted(name)
            .ok_or_else(|| deleted_not_found(V::KIND, name))?;
        Ok(json(200, &deleted(self.shared, &named, true)))
    }

    /// A page of `all`, each object listed as `each` says (or left out).
    fn list_each<V: Clone>(
        &self,
        all: Vec<(String, Named<V>)>,
        path: &str,
        each: &dyn Fn(&Named<V>) -> Option<Value>,
    ) -> Result<Resp, VaultError> {
        let paging = Paging::from_query(self.query)?;
        let (page, next) = paging.page(all);
        let items = page.iter().filter_map(each).collect();
        Ok(list_response(
            self.shared,
            items,
            next,
            path,
            self.api_version,
            &paging,
        ))
    }

    /// `GET /{kind}/{name}/versions`: a page of one live object's versions (an empty list when
    /// there is no such object, as Key Vault answers).
    pub(crate) fn list_versions<V: ObjectKind>(&self, name: &str) -> Result<Resp, VaultError> {
        let object = V::collection(&self.shared.lock().objects)
            .live(name)
            .cloned();
        let paging = Paging::from_query(self.query)?;
        let Some(object) = object else {
            let empty = Vec::new();
            return Ok(list_response(
                self.shared,
                empty,
                None,
                "",
                self.api_version,
                &paging,
            ));
        };
        let keyed = object
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{i:010}"), v.clone()))
            .collect();
        let (page, next) = paging.page(keyed);
        let items = page
            .iter()
            .map(|v| V::item(self.shared, &object, v, true))
            .collect();
        let path = format!("{}/{}/versions", V::PATH, object.name);
        Ok(list_response(
            self.shared,
            items,
            next,
            &path,
            self.api_version,
            &paging,
        ))
    }
}

/// 404 CertificateNotFound / KeyNotFound.
pub(crate) fn not_found(kind: Kind, name: &str, version: Option<&str>) -> VaultError {
    let id = match version.filter(|v| !v.is_empty()) {
        Some(v) => format!("{name}/{v}"),
        None => name.to_string(),
    };
    let (code, what) = match kind {
        Kind::Certificates => ("CertificateNotFound", "certificate"),
        Kind::Keys => ("KeyNotFound", "key"),
    };
    let article = if what == "key" {
        "A key"
    } else {
        "A certificate"
    };
    VaultError::new(
        404,
        code,
        format!(
            "{article} with (name/id) {id} was not found in this key vault. If you recently deleted this \
             {what} you may be able to recover it using the correct recovery command. For help resolving \
             this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

/// 404 for a deleted object that is not there.
pub(crate) fn deleted_not_found(kind: Kind, name: &str) -> VaultError {
    match kind {
        Kind::Certificates => VaultError::new(
            404,
            "CertificateNotFound",
            format!("Deleted Certificate not found: {name}"),
        ),
        Kind::Keys => VaultError::new(404, "KeyNotFound", format!("Deleted Key not found: {name}")),
    }
}
