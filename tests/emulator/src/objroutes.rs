//! Routes of the certificate and key APIs, their permissions and the common checks (api-version,
//! name, access policy) before `certs_api` or `keys_api` runs the operation.

use crate::counts::Operation;
use crate::http::{query_pairs, segments, Resp};
use crate::objects::Named;
use crate::state::{Caller, Shared};
use crate::store::{is_valid_name, VaultError};
use crate::vault::{list_response, vault_name, Paging};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::Method;
use std::sync::Arc;

/// Which collection a route is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Certificates,
    Keys,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Certificates => "certificates",
            Kind::Keys => "keys",
        }
    }
}

/// A certificate or key request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ObjRoute {
    Get(Kind, String, Option<String>),
    List(Kind),
    ListVersions(Kind, String),
    Create(Kind, String),
    Import(Kind, String),
    Update(Kind, String, Option<String>),
    Delete(Kind, String),
    GetDeleted(Kind, String),
    ListDeleted(Kind),
    Purge(Kind, String),
    Recover(Kind, String),
    /// `GET /certificates/{name}/pending`.
    Pending(String),
    /// `GET /certificates/{name}/policy`.
    Policy(String),
}

impl ObjRoute {
    pub(crate) fn parse(method: &Method, path: &str) -> Option<ObjRoute> {
        let mut segs = segments(path);
        if segs.len() > 1 && segs.last() == Some(&"") {
            segs.pop();
        }
        let first = segs.first()?.to_ascii_lowercase();
        let (kind, deleted) = match first.as_str() {
            "certificates" => (Kind::Certificates, false),
            "keys" => (Kind::Keys, false),
            "deletedcertificates" => (Kind::Certificates, true),
            "deletedkeys" => (Kind::Keys, true),
            _ => return None,
        };
        let s = |i: usize| segs.get(i).map(|x| x.to_string()).unwrap_or_default();
        let is = |i: usize, w: &str| segs.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
        let certs = kind == Kind::Certificates;
        let m = method.clone();
        Some(if deleted {
            match (segs.len(), m) {
                (1, Method::GET) => ObjRoute::ListDeleted(kind),
                (2, Method::GET) => ObjRoute::GetDeleted(kind, s(1)),
                (2, Method::DELETE) => ObjRoute::Purge(kind, s(1)),
                (3, Method::POST) if is(2, "recover") => ObjRoute::Recover(kind, s(1)),
                _ => return None,
            }
        } else {
            match (segs.len(), m) {
                (1, Method::GET) => ObjRoute::List(kind),
                (2, Method::GET) => ObjRoute::Get(kind, s(1), None),
                (2, Method::DELETE) => ObjRoute::Delete(kind, s(1)),
                (2, Method::PUT) if !certs => ObjRoute::Import(kind, s(1)),
                (2, Method::PATCH) => ObjRoute::Update(kind, s(1), None),
                (3, Method::GET) if is(2, "versions") => ObjRoute::ListVersions(kind, s(1)),
                (3, Method::GET) if certs && is(2, "pending") => ObjRoute::Pending(s(1)),
                (3, Method::GET) if certs && is(2, "policy") => ObjRoute::Policy(s(1)),
                (3, Method::GET) => ObjRoute::Get(kind, s(1), Some(s(2))),
                (3, Method::POST) if is(2, "create") => ObjRoute::Create(kind, s(1)),
                (3, Method::POST) if certs && is(2, "import") => ObjRoute::Import(kind, s(1)),
                (3, Method::PATCH) => ObjRoute::Update(kind, s(1), Some(s(2))),
                _ => return None,
            }
        })
    }

    fn kind(&self) -> Kind {
        match self {
            ObjRoute::Get(k, ..)
            | ObjRoute::List(k)
            | ObjRoute::ListVersions(k, _)
            | ObjRoute::Create(k, _)
            | ObjRoute::Import(k, _)
            | ObjRoute::Update(k, ..)
            | ObjRoute::Delete(k, _)
            | ObjRoute::GetDeleted(k, _)
            | ObjRoute::ListDeleted(k)
            | ObjRoute::Purge(k, _)
            | ObjRoute::Recover(k, _) => *k,
            ObjRoute::Pending(_) | ObjRoute::Policy(_) => Kind::Certificates,
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            ObjRoute::Get(_, n, _)
            | ObjRoute::ListVersions(_, n)
            | ObjRoute::Create(_, n)
            | ObjRoute::Import(_, n)
            | ObjRoute::Update(_, n, _)
            | ObjRoute::Delete(_, n)
            | ObjRoute::GetDeleted(_, n)
            | ObjRoute::Purge(_, n)
            | ObjRoute::Recover(_, n)
            | ObjRoute::Pending(n)
            | ObjRoute::Policy(n) => Some(n),
            ObjRoute::List(_) | ObjRoute::ListDeleted(_) => None,
        }
    }

    fn permission(&self) -> &'static str {
        match self {
            ObjRoute::Get(..) | ObjRoute::GetDeleted(..) | ObjRoute::Pending(_) => "get",
            ObjRoute::Policy(_) => "get",
            ObjRoute::List(_) | ObjRoute::ListVersions(..) | ObjRoute::ListDeleted(_) => "list",
            ObjRoute::Create(..) => "create",
            ObjRoute::Import(..) => "import",
            ObjRoute::Update(..) => "update",
            ObjRoute::Delete(..) => "delete",
            ObjRoute::Purge(..) => "purge",
            ObjRoute::Recover(..) => "recover",
        }
    }

    pub(crate) fn operation(&self) -> Operation {
        use Kind::{Certificates as C, Keys as K};
        match self {
            ObjRoute::Get(C, ..) => Operation::GetCertificate,
            ObjRoute::List(C) => Operation::ListCertificates,
            ObjRoute::ListVersions(C, _) => Operation::ListCertificateVersions,
            ObjRoute::Create(C, _) => Operation::CreateCertificate,
            ObjRoute::Import(C, _) => Operation::ImportCertificate,
            ObjRoute::Update(C, ..) => Operation::UpdateCertificate,
            ObjRoute::Delete(C, _) => Operation::DeleteCertificate,
            ObjRoute::GetDeleted(C, _) => Operation::GetDeletedCertificate,
            ObjRoute::ListDeleted(C) => Operation::ListDeletedCertificates,
            ObjRoute::Purge(C, _) => Operation::PurgeDeletedCertificate,
            ObjRoute::Recover(C, _) => Operation::RecoverDeletedCertificate,
            ObjRoute::Pending(_) => Operation::GetCertificateOperation,
            ObjRoute::Policy(_) => Operation::GetCertificatePolicy,
            ObjRoute::Get(K, ..) => Operation::GetKey,
            ObjRoute::List(K) => Operation::ListKeys,
            ObjRoute::ListVersions(K, _) => Operation::ListKeyVersions,
            ObjRoute::Create(K, _) => Operation::CreateKey,
            ObjRoute::Import(K, _) => Operation::ImportKey,
            ObjRoute::Update(K, ..) => Operation::UpdateKey,
            ObjRoute::Delete(K, _) => Operation::DeleteKey,
            ObjRoute::GetDeleted(K, _) => Operation::GetDeletedKey,
            ObjRoute::ListDeleted(K) => Operation::ListDeletedKeys,
            ObjRoute::Purge(K, _) => Operation::PurgeDeletedKey,
            ObjRoute::Recover(K, _) => Operation::RecoverDeletedKey,
        }
    }
}

/// Checks api-version, name and permission, then runs the operation.
pub(crate) async fn execute(
    shared: &Arc<Shared>,
    caller: &Caller,
    route: ObjRoute,
    parts: &Parts,
    body: Incoming,
) -> Result<Resp, VaultError> {
    let query = query_pairs(parts.uri.query());
    let api_version = crate::vault::api_version(&query)?;
    if let Some(name) = route.name() {
        if !is_valid_name(name) {
            return Err(VaultError::invalid_name(name));
        }
    }
    authorize(
        shared,
        caller,
        route.kind(),
        route.permission(),
        route.name(),
    )?;
    let ctx = Ctx {
        shared,
        query: &query,
        api_version: &api_version,
    };
    match route.kind() {
        Kind::Certificates => crate::certs_api::execute(&ctx, route, body).await,
        Kind::Keys => crate::keys_api::execute(&ctx, route, body).await,
    }
}

/// What a handler needs besides its route.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub query: &'a [(String, String)],
    pub api_version: &'a str,
}

/// How one object version is listed: `(object, version, versioned id)`.
pub(crate) type ItemFn<'a, V> = &'a dyn Fn(&Named<V>, &V, bool) -> serde_json::Value;

impl Ctx<'_> {
    /// `GET /{kind}`: a page of the newest version of every live object.
    pub(crate) fn list_latest<V: Clone>(
        &self,
        all: Vec<(String, Named<V>)>,
        path: &str,
        item: ItemFn<'_, V>,
    ) -> Result<Resp, VaultError> {
        self.list_each(all, path, &|n| n.versions.last().map(|v| item(n, v, false)))
    }

    /// A page of `all`, each object listed as `each` says (or left out).
    pub(crate) fn list_each<V: Clone>(
        &self,
        all: Vec<(String, Named<V>)>,
        path: &str,
        each: &dyn Fn(&Named<V>) -> Option<serde_json::Value>,
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
    pub(crate) fn list_versions<V: Clone>(
        &self,
        object: Option<Named<V>>,
        kind_path: &str,
        item: ItemFn<'_, V>,
    ) -> Result<Resp, VaultError> {
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
        let items = page.iter().map(|v| item(&object, v, true)).collect();
        let path = format!("{kind_path}/{}/versions", object.name);
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

/// 403 unless the caller's identity has `permission` on `kind` and is not denied `name`.
fn authorize(
    shared: &Shared,
    caller: &Caller,
    kind: Kind,
    permission: &str,
    name: Option<&str>,
) -> Result<(), VaultError> {
    let tenant = &shared.settings.tenant_id;
    let who = format!(
        "appid={};oid={};iss=https://sts.windows.net/{tenant}/",
        caller.client_id, caller.object_id
    );
    let vault = vault_name(&shared.settings.vault_url);
    let identity = shared.identity(&caller.client_id);
    let allowed = identity.as_ref().is_some_and(|i| match kind {
        Kind::Certificates => i.certificates.allows(permission),
        Kind::Keys => i.keys.allows(permission),
    });
    if !allowed {
        return Err(VaultError::new(
            403,
            "Forbidden",
            format!(
                "The user, group or application '{who}' does not have {} {permission} permission on key \
                 vault '{vault};location=emulator'. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125287",
                kind.word()
            ),
        )
        .with_inner("ForbiddenByPolicy"));
    }
    if let (Some(identity), Some(name)) = (identity, name) {
        let denied = match kind {
            Kind::Certificates => &identity.denied_certificates,
            Kind::Keys => &identity.denied_keys,
        };
        if denied.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            let action = match permission {
                "list" => "readMetadata".to_string(),
                "get" => "read".to_string(),
                other => other.to_string(),
            };
            return Err(VaultError::new(
                403,
                "Forbidden",
                format!(
                    "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny \
                     assignments or role definitions were changed recently, please observe propagation \
                     time.\r\nCaller: {who}\r\nAction: 'Microsoft.KeyVault/vaults/{}/{action}/action'\r\n\
                     Resource: '/vaults/{vault}/{}/{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: \
                     null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {vault};location=emulator\r\n",
                    kind.word(),
                    kind.word(),
                    name.to_ascii_lowercase()
                ),
            )
            .with_inner("ForbiddenByRbac"));
        }
    }
    Ok(())
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

/// A deleted object's answer: `value` (its newest version) with `recoveryId` under
/// `/{deleted_kind}/{name}` and the deletion dates.
pub(crate) fn with_deletion<V>(
    shared: &Shared,
    named: &Named<V>,
    deleted_kind: &str,
    mut value: serde_json::Value,
) -> serde_json::Value {
    if let serde_json::Value::Object(m) = &mut value {
        let url = &shared.settings.vault_url;
        let id = format!("{url}/{deleted_kind}/{}", named.name);
        m.insert("recoveryId".into(), id.into());
        if let Some(d) = named.deleted {
            m.insert("deletedDate".into(), d.deleted_date.into());
            m.insert("scheduledPurgeDate".into(), d.scheduled_purge_date.into());
        }
    }
    value
}
