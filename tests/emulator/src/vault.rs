//! The data plane's front door: authentication, faults, request budget, errors, response headers.
//!
//! After these checks the secrets API (`secrets_api`) or the certificates and keys API
//! (`objroutes`) runs the operation.
//!
//! Order of checks for every request, as the real service does it where that is known:
//! 1. authentication (no token: 401 + challenge; a bad token: 401 + challenge), before the path,
//!    the query or the body is looked at;
//! 2. injected faults, then the request budget (429 Throttled); then the operation is counted;
//! 3. `api-version`; 4. the secret name; 5. the caller's permission; 6. query and body; 7. the
//!    operation itself.

use crate::counts::special;
use crate::http::{header, json, query_get, set_header, Reply, Resp};
use crate::objroutes::ObjRoute;
use crate::secrets_api::{execute, Route};
use crate::server::{apply_faults, Family};
use crate::state::{Caller, Shared, TokenRejection};
use crate::vault_error::VaultError;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use serde_json::json;
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
        Route::Unknown => ObjRoute::parse(&parts.method, parts.uri.path()),
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

/// The JSON error response for `e`.
pub(crate) fn error(e: &VaultError) -> Resp {
    let mut err = json!({"code": e.code, "message": e.message});
    if let Some(inner) = e.inner {
        err["innererror"] = json!({ "code": inner });
    }
    json(e.status, &json!({ "error": err }))
}

/// The real service's answer to an api-version it does not know.
pub(crate) fn unknown_api_version(v: &str) -> VaultError {
    VaultError::bad_parameter(format!(
        "The specified version ({v}) is not recognized. Consider using the latest supported version \
         ({LATEST_API_VERSION})."
    ))
}
