//! The Key Vault secrets REST API: its routes, the permission each needs, and the operations.

use crate::access::{authorize, SECRETS};
use crate::bodies::{decode_blob, parse_set, parse_update, read_json};
use crate::counts::Operation;
use crate::http::{empty, json, query_pairs, segments, Resp};
use crate::paging::{list_response, Paging};
use crate::secret_json::{bundle, deleted_bundle, deleted_item, item};
use crate::state::{Caller, Shared};
use crate::store::is_valid_name;
use crate::vault::api_version;
use crate::vault_error::VaultError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::Method;
use serde_json::{json, Value};
use std::sync::Arc;

/// A parsed vault request path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    GetSecret(String),
    GetSecretVersion(String, String),
    ListSecrets,
    ListVersions(String),
    Set(String),
    Update(String, Option<String>),
    Delete(String),
    GetDeleted(String),
    ListDeleted,
    Purge(String),
    Recover(String),
    Backup(String),
    Restore,
    Unknown,
}

impl Route {
    pub(crate) fn parse(method: &Method, path: &str) -> Route {
        let mut segs = segments(path);
        // One trailing slash is not significant (`GET /secrets/{name}/` is "get latest").
        if segs.len() > 1 && segs.last() == Some(&"") {
            segs.pop();
        }
        let Some(first) = segs.first() else {
            return Route::Unknown;
        };
        let s = |i: usize| segs.get(i).map(|x| x.to_string()).unwrap_or_default();
        let is = |i: usize, word: &str| segs.get(i).is_some_and(|x| x.eq_ignore_ascii_case(word));
        if first.eq_ignore_ascii_case("secrets") {
            match (segs.len(), method) {
                (1, &Method::GET) => Route::ListSecrets,
                (2, &Method::GET) => Route::GetSecret(s(1)),
                (2, &Method::PUT) => Route::Set(s(1)),
                (2, &Method::DELETE) => Route::Delete(s(1)),
                (2, &Method::PATCH) => Route::Update(s(1), None),
                (2, &Method::POST) if is(1, "restore") => Route::Restore,
                (3, &Method::POST) if is(2, "backup") => Route::Backup(s(1)),
                (3, &Method::GET) if is(2, "versions") => Route::ListVersions(s(1)),
                (3, &Method::GET) if s(2).is_empty() => Route::GetSecret(s(1)),
                (3, &Method::GET) => Route::GetSecretVersion(s(1), s(2)),
                (3, &Method::PATCH) => Route::Update(s(1), Some(s(2)).filter(|v| !v.is_empty())),
                _ => Route::Unknown,
            }
        } else if first.eq_ignore_ascii_case("deletedsecrets") {
            match (segs.len(), method) {
                (1, &Method::GET) => Route::ListDeleted,
                (2, &Method::GET) => Route::GetDeleted(s(1)),
                (2, &Method::DELETE) => Route::Purge(s(1)),
                (3, &Method::POST) if is(2, "recover") => Route::Recover(s(1)),
                _ => Route::Unknown,
            }
        } else {
            Route::Unknown
        }
    }

    pub(crate) fn operation(&self) -> Operation {
        match self {
            Route::GetSecret(_) => Operation::GetSecret,
            Route::GetSecretVersion(..) => Operation::GetSecretVersion,
            Route::ListSecrets => Operation::ListSecrets,
            Route::ListVersions(_) => Operation::ListSecretVersions,
            Route::Set(_) => Operation::SetSecret,
            Route::Update(..) => Operation::UpdateSecret,
            Route::Delete(_) => Operation::DeleteSecret,
            Route::GetDeleted(_) => Operation::GetDeletedSecret,
            Route::ListDeleted => Operation::ListDeletedSecrets,
            Route::Purge(_) => Operation::Purge,
            Route::Recover(_) => Operation::RecoverDeletedSecret,
            Route::Backup(_) => Operation::BackupSecret,
            Route::Restore => Operation::RestoreSecret,
            Route::Unknown => Operation::UnknownVaultOperation,
        }
    }

    fn secret_name(&self) -> Option<&str> {
        match self {
            Route::GetSecret(n)
            | Route::GetSecretVersion(n, _)
            | Route::ListVersions(n)
            | Route::Set(n)
            | Route::Update(n, _)
            | Route::Delete(n)
            | Route::GetDeleted(n)
            | Route::Purge(n)
            | Route::Recover(n)
            | Route::Backup(n) => Some(n),
            // The name of a restore is inside the backup blob.
            Route::ListSecrets | Route::ListDeleted | Route::Restore | Route::Unknown => None,
        }
    }

    /// The access-policy permission the route needs.
    fn permission(&self) -> Option<&'static str> {
        match self {
            Route::GetSecret(_) | Route::GetSecretVersion(..) | Route::GetDeleted(_) => Some("get"),
            Route::ListSecrets | Route::ListVersions(_) | Route::ListDeleted => Some("list"),
            Route::Set(_) | Route::Update(..) => Some("set"),
            Route::Delete(_) => Some("delete"),
            Route::Purge(_) => Some("purge"),
            Route::Recover(_) => Some("recover"),
            Route::Backup(_) => Some("backup"),
            Route::Restore => Some("restore"),
            Route::Unknown => None,
        }
    }
}

/// Checks `api-version`, the secret name and the caller's permission, then runs the operation.
pub(crate) async fn execute(
    shared: &Arc<Shared>,
    caller: &Caller,
    route: Route,
    parts: &Parts,
    body: Incoming,
) -> Result<Resp, VaultError> {
    let query = query_pairs(parts.uri.query());
    let api_version = api_version(&query)?;
    if route == Route::Unknown {
        return Err(VaultError::new(
            404,
            "NotFound",
            format!(
                "The emulator does not implement {} {}.",
                parts.method,
                parts.uri.path()
            ),
        ));
    }
    if let Some(name) = route.secret_name() {
        if !is_valid_name(name) {
            return Err(VaultError::invalid_name(name));
        }
    }
    if let Some(permission) = route.permission() {
        authorize(shared, caller, &SECRETS, permission, route.secret_name())?;
    }
    let now = crate::util::now_unix();
    match route {
        Route::GetSecret(name) => get(shared, &name, None),
        Route::GetSecretVersion(name, version) => get(shared, &name, Some(&version)),
        Route::ListSecrets => {
            let paging = Paging::from_query(&query)?;
            let live = shared.lock().store.live();
            let (page, next) = paging.page(live);
            let items = page
                .iter()
                .filter_map(|s| s.latest().map(|v| item(shared, s, v, false)))
                .collect();
            Ok(list_response(
                shared,
                items,
                next,
                "/secrets",
                &api_version,
                &paging,
            ))
        }
        Route::ListVersions(name) => {
            let paging = Paging::from_query(&query)?;
            // As in Key Vault, the versions of a secret that does not exist (or is soft-deleted)
            // are an empty list, not 404.
            let Some(secret) = shared.lock().store.find_live(&name) else {
                return Ok(list_response(
                    shared,
                    Vec::new(),
                    None,
                    "",
                    &api_version,
                    &paging,
                ));
            };
            // Creation order: by `created`, then by insertion (versions created in the same
            // second); the offset keeps negative (seeded) times in order as text.
            let keyed = secret
                .versions
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let created = (i128::from(v.created) - i128::from(i64::MIN)) as u128;
                    (format!("{created:020}-{i:010}"), v.clone())
                })
                .collect();
            let (page, next) = paging.page(keyed);
            let items = page
                .iter()
                .map(|v| item(shared, &secret, v, true))
                .collect();
            let path = format!("/secrets/{}/versions", secret.name);
            Ok(list_response(
                shared,
                items,
                next,
                &path,
                &api_version,
                &paging,
            ))
        }
        Route::Set(name) => {
            let body = read_json(body).await?;
            let new = parse_set(&body)?;
            let (secret, version) = shared.lock().store.set(&name, new, now)?;
            Ok(json(200, &bundle(shared, &secret, &version, true)))
        }
        Route::Update(name, version) => {
            let body = read_json(body).await?;
            let update = parse_update(&body)?;
            let (secret, v) = shared
                .lock()
                .store
                .update(&name, version.as_deref(), update, now)?;
            Ok(json(200, &bundle(shared, &secret, &v, false)))
        }
        Route::Delete(name) => {
            let secret = shared.lock().store.delete(&name, now)?;
            Ok(json(200, &deleted_bundle(shared, &secret)))
        }
        Route::GetDeleted(name) => {
            let secret = shared.lock().store.get_deleted(&name)?;
            Ok(json(200, &deleted_bundle(shared, &secret)))
        }
        Route::ListDeleted => {
            let paging = Paging::from_query(&query)?;
            let deleted = shared.lock().store.deleted();
            let (page, next) = paging.page(deleted);
            let items = page.iter().map(|s| deleted_item(shared, s)).collect();
            Ok(list_response(
                shared,
                items,
                next,
                "/deletedsecrets",
                &api_version,
                &paging,
            ))
        }
        Route::Purge(name) => {
            shared.lock().store.purge(&name)?;
            Ok(empty(204))
        }
        Route::Backup(name) => {
            let secret = shared.lock().store.get_secret(&name)?;
            let blob = shared.backup_key.seal(&secret).map_err(|e| {
                VaultError::new(
                    500,
                    "InternalServerError",
                    format!("The backup could not be made: {e}."),
                )
            })?;
            Ok(json(200, &json!({ "value": URL_SAFE_NO_PAD.encode(blob) })))
        }
        Route::Restore => {
            let body = read_json(body).await?;
            let blob = match body.get("value") {
                Some(Value::String(s)) => decode_blob(s).ok_or_else(|| {
                    VaultError::bad_parameter("Property 'value' is not a valid base64url string.")
                })?,
                _ => {
                    return Err(VaultError::bad_parameter(
                        "Property 'value' is required and must be a string (the backup blob).",
                    ))
                }
            };
            let secret = shared.backup_key.open(&blob).ok_or_else(|| {
                VaultError::bad_parameter(
                    "The backup blob is not valid: it is damaged or was made by another vault. A backup \
                     restores only into the vault (emulator instance) that made it.",
                )
            })?;
            authorize(shared, caller, &SECRETS, "restore", Some(&secret.name))?;
            let id = secret
                .latest()
                .map(|v| {
                    format!(
                        "{}/secrets/{}/{}",
                        shared.settings.vault_url, secret.name, v.id
                    )
                })
                .unwrap_or_default();
            let secret = shared.lock().store.restore(secret, &id)?;
            match secret.latest() {
                Some(v) => Ok(json(200, &bundle(shared, &secret, v, false))),
                None => Err(VaultError::not_found(&secret.name, None)),
            }
        }
        Route::Recover(name) => {
            let secret = shared.lock().store.recover(&name)?;
            match secret.latest() {
                Some(v) => Ok(json(200, &bundle(shared, &secret, v, false))),
                None => Err(VaultError::not_found(&name, None)),
            }
        }
        Route::Unknown => Err(VaultError::new(404, "NotFound", "Not found.")),
    }
}

fn get(shared: &Shared, name: &str, version: Option<&str>) -> Result<Resp, VaultError> {
    let (secret, v) = shared.lock().store.get(name, version)?;
    if !v.enabled {
        return Err(VaultError::disabled("get"));
    }
    Ok(json(200, &bundle(shared, &secret, &v, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let g = Method::GET;
        assert_eq!(Route::parse(&g, "/secrets"), Route::ListSecrets);
        assert_eq!(Route::parse(&g, "/secrets/"), Route::ListSecrets);
        assert_eq!(Route::parse(&g, "/secrets/a"), Route::GetSecret("a".into()));
        assert_eq!(
            Route::parse(&g, "/secrets/a/"),
            Route::GetSecret("a".into())
        );
        assert_eq!(
            Route::parse(&g, "/secrets/a/versions"),
            Route::ListVersions("a".into())
        );
        assert_eq!(
            Route::parse(&g, "/secrets/a/abc"),
            Route::GetSecretVersion("a".into(), "abc".into())
        );
        assert_eq!(
            Route::parse(&Method::PATCH, "/secrets/a/"),
            Route::Update("a".into(), None)
        );
        assert_eq!(
            Route::parse(&Method::PATCH, "/secrets/a/v1"),
            Route::Update("a".into(), Some("v1".into()))
        );
        assert_eq!(
            Route::parse(&Method::PUT, "/Secrets/a"),
            Route::Set("a".into())
        );
        assert_eq!(
            Route::parse(&Method::POST, "/deletedsecrets/a/recover"),
            Route::Recover("a".into())
        );
        assert_eq!(
            Route::parse(&Method::POST, "/secrets/a/backup"),
            Route::Backup("a".into())
        );
        assert_eq!(
            Route::parse(&Method::POST, "/secrets/restore"),
            Route::Restore
        );
        assert_eq!(
            Route::parse(&Method::PUT, "/secrets/restore"),
            Route::Set("restore".into())
        );
        assert_eq!(
            Route::parse(&g, "/secrets/backup/versions"),
            Route::ListVersions("backup".into())
        );
        assert_eq!(Route::parse(&Method::POST, "/secrets/a"), Route::Unknown);
        assert_eq!(Route::parse(&g, "/keys"), Route::Unknown);
        assert_eq!(Route::parse(&g, "/"), Route::Unknown);
        assert_eq!(Route::parse(&g, "/secrets/a/b/c"), Route::Unknown);
    }
}
