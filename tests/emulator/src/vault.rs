//! The Key Vault secrets data plane.
//!
//! Order of checks for every request, as the real service does it where that is known:
//! 1. authentication (no token: 401 + challenge; a bad token: 401 + challenge), before the path,
//!    the query or the body is looked at;
//! 2. injected faults, then the request budget (429 Throttled); then the operation is counted;
//! 3. `api-version`; 4. the secret name; 5. the caller's permission; 6. query and body; 7. the
//!    operation itself.

use crate::counts::{special, Operation};
use crate::http::{
    empty, header, json, query_get, query_pairs, read_body, segments, set_header, BodyError, Reply,
    Resp,
};
use crate::props::Props;
use crate::server::{apply_faults, Family};
use crate::state::{Caller, Shared, TokenRejection};
use crate::store::{
    is_valid_name, AttributeUpdate, NewVersion, Secret, VaultError, Version, RECOVERABLE_DAYS,
    RECOVERY_LEVEL,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::Method;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// API versions the emulator accepts.
pub const API_VERSIONS: &[&str] = &[
    "2016-10-01",
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
    "2026-04-01",
];
/// The version named in the "not recognized" error.
pub const LATEST_API_VERSION: &str = "2026-04-01";
/// Default and maximum page size of list operations.
pub const MAX_RESULTS: usize = 25;

/// A parsed vault request path.
#[derive(Debug, Clone, PartialEq)]
enum Route {
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
    fn parse(method: &Method, path: &str) -> Route {
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

    fn operation(&self) -> Operation {
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

/// Handles one vault request.
pub(crate) async fn handle(shared: &Arc<Shared>, parts: Parts, body: Incoming) -> Reply {
    let mut reply = match crate::faults_extra::before(shared, &parts) {
        Some(reply) => reply,
        None => handle_checked(shared, &parts, body).await,
    };
    reply = crate::faults_extra::after(shared, &parts, reply).await;
    if let Reply::Send(resp) = &mut reply {
        set_header(resp, "x-ms-request-id", &crate::util::random_uuid());
        set_header(resp, "x-ms-keyvault-service-version", "1.9.0.0-emulator");
        set_header(resp, "x-ms-keyvault-region", "emulator");
        set_header(resp, "cache-control", "no-cache");
        if let Some(id) = header(&parts.headers, "x-ms-client-request-id") {
            set_header(resp, "x-ms-client-request-id", id);
        }
    }
    reply
}

async fn handle_checked(shared: &Arc<Shared>, parts: &Parts, body: Incoming) -> Reply {
    let caller = match authenticate(shared, &parts.headers) {
        Ok(caller) => caller,
        Err(resp) => return (*resp).into(),
    };
    let route = Route::parse(&parts.method, parts.uri.path());
    // Certificates and keys have their own routes (`objroutes`).
    let object_route = match route {
        Route::Unknown => crate::objroutes::ObjRoute::parse(&parts.method, parts.uri.path()),
        _ => None,
    };
    let op = object_route
        .as_ref()
        .map_or(route.operation(), |r| r.operation());
    if let Some(reply) = apply_faults(shared, op, Family::Vault).await {
        return reply;
    }
    {
        let mut st = shared.lock();
        if let Err(wait) = st.throttle.admit(Instant::now()) {
            st.counts.bump(special::THROTTLED);
            drop(st);
            let mut resp = error(&VaultError::new(
                429,
                "Throttled",
                "Request was not processed because too many requests were received. Reason: \
                 VaultRequestTypeLimitReached",
            ));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            set_header(&mut resp, "retry-after", &secs.max(1).to_string());
            return resp.into();
        }
        st.counts.bump(op.name());
    }
    if let Some(object_route) = object_route {
        return match crate::objroutes::execute(shared, &caller, object_route, parts, body).await {
            Ok(resp) => resp.into(),
            Err(e) => error(&e).into(),
        };
    }
    match execute(shared, &caller, route, parts, body).await {
        Ok(resp) => resp.into(),
        Err(e) => error(&e).into(),
    }
}

/// Checks the bearer token; on failure returns the 401 challenge response (and counts it).
fn authenticate(shared: &Shared, headers: &hyper::HeaderMap) -> Result<Caller, Box<Resp>> {
    let bearer = header(headers, "authorization").and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    });
    let Some(token) = bearer else {
        shared.bump(special::CHALLENGE);
        return Err(Box::new(challenge(
            shared,
            "AKV10000: Request is missing a Bearer or PoP token.",
        )));
    };
    shared.verify_access_token(token).map_err(|rejection| {
        shared.bump(special::INVALID_TOKEN);
        let tenant = &shared.settings.tenant_id;
        let message = match rejection {
            TokenRejection::Malformed => {
                "[BearerReadAccessTokenFailed] Error validating token: 'S2S12005'.".to_string()
            }
            TokenRejection::BadSignature => {
                "AKV10046: Unable to resolve the key used for signature validation.".to_string()
            }
            TokenRejection::Expired => {
                "[TokenExpired] Error validating token: 'S2S12086'.".to_string()
            }
            TokenRejection::NotYetValid => {
                "[TokenNotYetValid] Error validating token: 'S2S12085'.".to_string()
            }
            TokenRejection::Audience(aud) => format!(
                "AKV10022: Invalid audience. Expected {}, found: {aud}.",
                crate::config::VAULT_RESOURCE
            ),
            TokenRejection::Issuer(iss) => format!(
                "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{tenant}/, \
                 https://login.microsoftonline.com/{tenant}/v2.0, found {iss}."
            ),
        };
        Box::new(challenge(shared, &message))
    })
}

/// 401 Unauthorized with the `WWW-Authenticate` challenge.
pub(crate) fn challenge(shared: &Shared, message: &str) -> Resp {
    challenge_for(shared, crate::config::VAULT_RESOURCE, message)
}

/// 401 Unauthorized with a challenge naming `resource` (a fault may name another service).
pub(crate) fn challenge_for(shared: &Shared, resource: &str, message: &str) -> Resp {
    let mut resp = error(&VaultError::new(401, "Unauthorized", message));
    let value = format!(
        "Bearer authorization=\"{}/{}\", resource=\"{}\"",
        shared.settings.authority_host, shared.settings.tenant_id, resource
    );
    set_header(&mut resp, "www-authenticate", &value);
    resp
}

/// The JSON error response for `e`.
/// The request's `api-version`: required, and one the emulator serves.
pub(crate) fn api_version(query: &[(String, String)]) -> Result<String, VaultError> {
    match query_get(query, "api-version") {
        Some(v) if API_VERSIONS.contains(&v) => Ok(v.to_string()),
        Some(v) => Err(unknown_api_version(v)),
        None => Err(VaultError::bad_parameter(
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
    }
}

pub(crate) fn error(e: &VaultError) -> Resp {
    let mut err = json!({"code": e.code, "message": e.message});
    if let Some(inner) = e.inner {
        err["innererror"] = json!({ "code": inner });
    }
    json(e.status, &json!({ "error": err }))
}

async fn execute(
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
        authorize(shared, caller, permission, route.secret_name())?;
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
            authorize(shared, caller, "restore", Some(&secret.name))?;
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

/// The real service's answer to an api-version it does not know.
pub(crate) fn unknown_api_version(v: &str) -> VaultError {
    VaultError::bad_parameter(format!(
        "The specified version ({v}) is not recognized. Consider using the latest supported version \
         ({LATEST_API_VERSION})."
    ))
}

fn get(shared: &Shared, name: &str, version: Option<&str>) -> Result<Resp, VaultError> {
    let (secret, v) = shared.lock().store.get(name, version)?;
    if !v.enabled {
        return Err(VaultError::disabled("get"));
    }
    Ok(json(200, &bundle(shared, &secret, &v, true)))
}

/// 403 unless the caller's identity has `permission` and is not denied `secret`.
fn authorize(
    shared: &Shared,
    caller: &Caller,
    permission: &str,
    secret: Option<&str>,
) -> Result<(), VaultError> {
    let tenant = &shared.settings.tenant_id;
    let who = format!(
        "appid={};oid={};iss=https://sts.windows.net/{tenant}/",
        caller.client_id, caller.object_id
    );
    let vault = vault_name(&shared.settings.vault_url);
    let identity = shared.identity(&caller.client_id);
    let allowed = identity
        .as_ref()
        .is_some_and(|i| i.permissions.allows(permission));
    if !allowed {
        return Err(VaultError::new(
            403,
            "Forbidden",
            format!(
                "The user, group or application '{who}' does not have secrets {permission} permission on key \
                 vault '{vault};location=emulator'. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125287"
            ),
        )
        .with_inner("ForbiddenByPolicy"));
    }
    if let (Some(identity), Some(secret)) = (identity, secret) {
        if identity.denies(secret) {
            let action = match permission {
                "get" => "getSecret",
                "list" => "readMetadata",
                "set" => "setSecret",
                "delete" => "delete",
                "purge" => "purge",
                "backup" => "backup",
                "restore" => "restore",
                _ => "recover",
            };
            return Err(VaultError::new(
                403,
                "Forbidden",
                format!(
                    "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny \
                     assignments or role definitions were changed recently, please observe propagation \
                     time.\r\nCaller: {who}\r\nAction: 'Microsoft.KeyVault/vaults/secrets/{action}/action'\r\n\
                     Resource: '/vaults/{vault}/secrets/{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: \
                     null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {vault};location=emulator\r\n",
                    secret.to_ascii_lowercase()
                ),
            )
            .with_inner("ForbiddenByRbac"));
        }
    }
    Ok(())
}

/// The first DNS label of the vault URL's host (`myvault` of `https://myvault.vault.azure.net`).
pub(crate) fn vault_name(vault_url: &str) -> String {
    let host = vault_url
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or("emulator");
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return "emulator".to_string();
    }
    host.split('.').next().unwrap_or("emulator").to_string()
}

pub(crate) async fn read_json(body: Incoming) -> Result<Value, VaultError> {
    let bytes = read_body(body, crate::http::MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => VaultError::bad_parameter(format!(
                "The request body is larger than {} bytes.",
                crate::http::MAX_BODY_BYTES
            )),
            BodyError::Io => VaultError::bad_parameter("The request body could not be read."),
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(VaultError::bad_parameter(
            "Bad JSON content found in the request.",
        )),
    }
}

fn parse_set(body: &Value) -> Result<NewVersion, VaultError> {
    let value = match body.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => {
            return Err(VaultError::bad_parameter(
                "Property 'value' is required and must be a string.",
            ))
        }
        Some(_) => {
            return Err(VaultError::bad_parameter(
                "Property 'value' has invalid value: it must be a string.",
            ))
        }
    };
    Ok(parse_props(body)?.new_version(value, None, None))
}

fn parse_update(body: &Value) -> Result<AttributeUpdate, VaultError> {
    parse_props(body).map(AttributeUpdate::from)
}

/// `contentType`, `tags` and the settable attributes of a set or update body.
fn parse_props(body: &Value) -> Result<Props, VaultError> {
    let attrs = parse_attributes(body)?;
    Ok(Props {
        content_type: parse_content_type(body)?,
        tags: parse_tags(body)?,
        enabled: attrs.enabled,
        nbf: attrs.nbf,
        exp: attrs.exp,
    })
}

fn parse_content_type(body: &Value) -> Result<Option<String>, VaultError> {
    match body.get("contentType") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 255 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(VaultError::bad_parameter(
            "Property 'contentType' is longer than 255 characters.",
        )),
        Some(_) => Err(VaultError::bad_parameter(
            "Property 'contentType' has invalid value: it must be a string.",
        )),
    }
}

pub(crate) fn parse_tags(body: &Value) -> Result<Option<BTreeMap<String, String>>, VaultError> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => {
            let mut tags = BTreeMap::new();
            for (k, v) in map {
                match v {
                    Value::String(s) => {
                        tags.insert(k.clone(), s.clone());
                    }
                    _ => {
                        return Err(VaultError::bad_parameter(format!(
                            "Tag '{k}' has invalid value: tag values must be strings."
                        )))
                    }
                }
            }
            Ok(Some(tags))
        }
        Some(_) => Err(VaultError::bad_parameter(
            "Property 'tags' has invalid value: it must be an object.",
        )),
    }
}

#[derive(Default)]
pub(crate) struct ParsedAttributes {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

pub(crate) fn parse_attributes(body: &Value) -> Result<ParsedAttributes, VaultError> {
    let attrs = match body.get("attributes") {
        None | Some(Value::Null) => return Ok(ParsedAttributes::default()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(VaultError::bad_parameter(
                "Property 'attributes' has invalid value: it must be an object.",
            ))
        }
    };
    let enabled = match attrs.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(VaultError::bad_parameter(
                "Property 'attributes.enabled' has invalid value: it must be true or false.",
            ))
        }
    };
    let time = |key: &str| -> Result<Option<i64>, VaultError> {
        match attrs.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| {
                    VaultError::bad_parameter(format!(
                        "Property 'attributes.{key}' has invalid value."
                    ))
                }),
            Some(_) => Err(VaultError::bad_parameter(format!(
                "Property 'attributes.{key}' has invalid value: it must be Unix seconds."
            ))),
        }
    };
    Ok(ParsedAttributes {
        enabled,
        nbf: time("nbf")?,
        exp: time("exp")?,
    })
}

/// `maxresults` and `$skiptoken` of a list request.
pub(crate) struct Paging {
    max: usize,
    max_given: bool,
    marker: Option<String>,
}

impl Paging {
    pub(crate) fn from_query(query: &[(String, String)]) -> Result<Paging, VaultError> {
        let (max, max_given) = match query_get(query, "maxresults") {
            None => (MAX_RESULTS, false),
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if (1..=MAX_RESULTS as i64).contains(&n) => (n as usize, true),
                _ => {
                    return Err(VaultError::bad_parameter(format!(
                        "Invalid value '{raw}' for parameter maxresults: it must be an integer from 1 to \
                         {MAX_RESULTS}."
                    )))
                }
            },
        };
        let marker = match query_get(query, "$skiptoken") {
            None | Some("") => None,
            Some(token) => Some(decode_skiptoken(token).ok_or_else(|| {
                VaultError::bad_parameter(format!("The skip token '{token}' is not valid."))
            })?),
        };
        Ok(Paging {
            max,
            max_given,
            marker,
        })
    }

    /// The page of `items` (sorted by key) after the marker, and the marker of the next page.
    pub(crate) fn page<T>(&self, mut items: Vec<(String, T)>) -> (Vec<T>, Option<String>) {
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rest: Vec<(String, T)> = items
            .into_iter()
            .filter(|(k, _)| self.marker.as_ref().is_none_or(|m| k > m))
            .collect();
        let more = rest.len() > self.max;
        rest.truncate(self.max);
        let next = if more {
            rest.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        (rest.into_iter().map(|(_, v)| v).collect(), next)
    }
}

/// A backup blob from base64url (padded or not; the standard alphabet is accepted too).
fn decode_blob(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).ok().or_else(|| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .ok()
    })
}

fn encode_skiptoken(marker: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"NextMarker": marker, "TargetLocation": 0}).to_string())
}

fn decode_skiptoken(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("NextMarker")?.as_str().map(str::to_string)
}

pub(crate) fn list_response(
    shared: &Shared,
    items: Vec<Value>,
    next: Option<String>,
    path: &str,
    api_version: &str,
    paging: &Paging,
) -> Resp {
    let next_link = next.map(|marker| {
        let mut link = format!(
            "{}{path}?api-version={api_version}&$skiptoken={}",
            shared.settings.vault_url,
            encode_skiptoken(&marker)
        );
        if paging.max_given {
            link.push_str(&format!("&maxresults={}", paging.max));
        }
        link
    });
    json(200, &json!({"value": items, "nextLink": next_link}))
}

fn attributes(v: &Version) -> Value {
    let mut m = Map::new();
    m.insert("enabled".into(), Value::from(v.enabled));
    if let Some(nbf) = v.nbf {
        m.insert("nbf".into(), Value::from(nbf));
    }
    if let Some(exp) = v.exp {
        m.insert("exp".into(), Value::from(exp));
    }
    m.insert("created".into(), Value::from(v.created));
    m.insert("updated".into(), Value::from(v.updated));
    m.insert("recoveryLevel".into(), Value::from(RECOVERY_LEVEL));
    m.insert("recoverableDays".into(), Value::from(RECOVERABLE_DAYS));
    Value::Object(m)
}

fn common(m: &mut Map<String, Value>, v: &Version) {
    if let Some(ct) = &v.content_type {
        m.insert("contentType".into(), Value::from(ct.clone()));
    }
    if v.managed {
        m.insert("managed".into(), Value::from(true));
    }
    m.insert("attributes".into(), attributes(v));
    if let Some(tags) = &v.tags {
        m.insert("tags".into(), json!(tags));
    }
}

/// SecretBundle: `value` (when `with_value`), `id` with version, `contentType`, `attributes`, `tags`.
fn bundle(shared: &Shared, s: &Secret, v: &Version, with_value: bool) -> Value {
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
fn item(shared: &Shared, s: &Secret, v: &Version, versioned: bool) -> Value {
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

fn deletion_fields(shared: &Shared, s: &Secret, m: &mut Map<String, Value>) {
    m.insert(
        "recoveryId".into(),
        Value::from(format!(
            "{}/deletedsecrets/{}",
            shared.settings.vault_url, s.name
        )),
    );
    if let Some(d) = s.deleted {
        m.insert("deletedDate".into(), Value::from(d.deleted_date));
        m.insert(
            "scheduledPurgeDate".into(),
            Value::from(d.scheduled_purge_date),
        );
    }
}

/// DeletedSecretBundle of the latest version (no `value`).
fn deleted_bundle(shared: &Shared, s: &Secret) -> Value {
    let mut value = match s.latest() {
        Some(v) => bundle(shared, s, v, false),
        None => json!({}),
    };
    if let Value::Object(m) = &mut value {
        deletion_fields(shared, s, m);
    }
    value
}

/// DeletedSecretItem.
fn deleted_item(shared: &Shared, s: &Secret) -> Value {
    let mut value = match s.latest() {
        Some(v) => item(shared, s, v, false),
        None => json!({}),
    };
    if let Value::Object(m) = &mut value {
        deletion_fields(shared, s, m);
    }
    value
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

    #[test]
    fn skiptoken_round_trip() {
        assert_eq!(
            decode_skiptoken(&encode_skiptoken("abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(decode_skiptoken("!!"), None);
        assert_eq!(decode_skiptoken(&URL_SAFE_NO_PAD.encode("[1]")), None);
    }

    #[test]
    fn paging() {
        let p = Paging {
            max: 2,
            max_given: true,
            marker: None,
        };
        let items = vec![("b".to_string(), 2), ("a".into(), 1), ("c".into(), 3)];
        let (page, next) = p.page(items.clone());
        assert_eq!((page, next.as_deref()), (vec![1, 2], Some("b")));
        let p = Paging {
            marker: Some("b".into()),
            ..p
        };
        assert_eq!(p.page(items), (vec![3], None));
    }

    #[test]
    fn names_of_vaults() {
        assert_eq!(
            vault_name("https://myvault.vault.azure.net:8443"),
            "myvault"
        );
        assert_eq!(vault_name("https://127.0.0.1:8443"), "emulator");
    }
}
