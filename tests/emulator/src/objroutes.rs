//! Routes of the certificates and keys APIs and the checks before an operation runs.
//!
//! Routes of the certificate and key APIs, their permissions and the common checks (api-version,
//! name, access policy) before `certs_api` or `keys_api` runs the operation.

use crate::access::{authorize, CERTIFICATES, KEYS};
use crate::counts::Operation;
use crate::http::{query_pairs, segments, Resp};
use crate::objapi::Ctx;
use crate::state::{Caller, Shared};
use crate::store::is_valid_name;
use crate::vault_error::VaultError;
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
    let policy = match route.kind() {
        Kind::Certificates => &CERTIFICATES,
        Kind::Keys => &KEYS,
    };
    authorize(shared, caller, policy, route.permission(), route.name())?;
    let ctx = Ctx {
        shared,
        query: &query,
        api_version: &api_version,
        now: crate::util::now_unix(),
    };
    match route.kind() {
        Kind::Certificates => crate::certs_api::execute(&ctx, route, body).await,
        Kind::Keys => crate::keys_api::execute(&ctx, route, body).await,
    }
}
