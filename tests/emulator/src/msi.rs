//! The managed identity endpoint, App Service style (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).
//!
//! `GET /msi/token?api-version=2019-08-01&resource=…[&client_id=…|&object_id=…|&principal_id=…]`
//! with header `X-IDENTITY-HEADER` (the Rust SDK sends `x-identity-header` and `metadata: true`,
//! Python's MSAL sends `X-IDENTITY-HEADER` and `Metadata: true`; header names are
//! case-insensitive). The answer is
//! `{"access_token","expires_on":"<unix seconds as a string>","resource","token_type":"Bearer","client_id"}`.
//! Errors are `{"statusCode": n, "message": "…"}`.

use crate::config::Identity;
use crate::counts::Operation;
use crate::http::{header, json, query_get, query_pairs, Reply, Resp};
use crate::server::{apply_faults, Family};
use crate::state::{Shared, TokenSpec};
use hyper::http::request::Parts;
use hyper::Method;
use serde_json::json;
use std::sync::Arc;

/// Path of the endpoint.
pub const PATH: &str = "/msi/token";
/// The only API version served.
pub const API_VERSION: &str = "2019-08-01";

/// An error in the App Service identity endpoint's shape.
pub(crate) fn error(status: u16, message: &str) -> Resp {
    json(status, &json!({"statusCode": status, "message": message}))
}

/// Handles a managed identity token request.
pub(crate) async fn handle(shared: &Arc<Shared>, parts: Parts) -> Reply {
    let op = Operation::TokenManagedIdentity;
    if let Some(reply) = apply_faults(shared, op, Family::ManagedIdentity).await {
        return reply;
    }
    shared.bump(op.name());
    issue(shared, &parts).into()
}

fn issue(shared: &Shared, parts: &Parts) -> Resp {
    if parts.method != Method::GET {
        return error(
            405,
            "The managed identity endpoint only accepts GET requests.",
        );
    }
    match header(&parts.headers, "x-identity-header") {
        Some(h) if h == shared.settings.identity_header => {}
        Some(_) => return error(401, "The X-IDENTITY-HEADER value is not valid."),
        None => return error(401, "The request is missing the X-IDENTITY-HEADER header."),
    }
    let q = query_pairs(parts.uri.query());
    match query_get(&q, "api-version") {
        Some(API_VERSION) => {}
        Some(other) => {
            return error(
                400,
                &format!("The api-version '{other}' is not supported; use {API_VERSION}."),
            )
        }
        None => return error(400, "The api-version query parameter is required."),
    }
    let Some(resource) = query_get(&q, "resource").filter(|r| !r.is_empty()) else {
        return error(400, "The resource query parameter is required.");
    };
    let wanted_client = query_get(&q, "client_id");
    let wanted_object = query_get(&q, "object_id").or_else(|| query_get(&q, "principal_id"));
    if query_get(&q, "mi_res_id").is_some() || query_get(&q, "msi_res_id").is_some() {
        return error(
            400,
            "Resource ids are not supported by the emulator; use client_id or object_id.",
        );
    }
    let identity = find_managed(shared, wanted_client, wanted_object, None);
    let Some(identity) = identity else {
        return error(
            400,
            "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
        );
    };
    let (token, exp, _) = mint(shared, &identity, resource);
    json(
        200,
        &json!({
            "access_token": token,
            "expires_on": exp.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }),
    )
}

/// The managed identity a token request names by client id, object id or resource id (tried in
/// that order), or the default identity when it names none.
pub(crate) fn find_managed(
    shared: &Shared,
    client_id: Option<&str>,
    object_id: Option<&str>,
    res_id: Option<&str>,
) -> Option<Identity> {
    let st = shared.lock();
    st.identities
        .values()
        .find(|i| {
            i.managed_identity
                && match (client_id, object_id, res_id) {
                    (Some(c), _, _) => i.client_id.eq_ignore_ascii_case(c),
                    (_, Some(o), _) => i.oid().eq_ignore_ascii_case(o),
                    (_, _, Some(r)) => crate::imds::resource_id(i).eq_ignore_ascii_case(r),
                    _ => i
                        .client_id
                        .eq_ignore_ascii_case(&shared.settings.default_client_id),
                }
        })
        .cloned()
}

/// A managed identity token for `resource` (a scope's `/.default` is dropped; Key Vault's
/// resource in either spelling): the token, its expiry and its lifetime in seconds.
pub(crate) fn mint(shared: &Shared, identity: &Identity, resource: &str) -> (String, i64, i64) {
    let audience = resource.trim_end_matches("/.default");
    let audience = if audience.eq_ignore_ascii_case("https://vault.azure.net/") {
        crate::config::VAULT_RESOURCE
    } else {
        audience
    };
    let lifetime = shared.lock().token_lifetime.as_secs() as i64;
    let spec = TokenSpec {
        client_id: identity.client_id.clone(),
        lifetime_secs: lifetime,
        audience: Some(audience.to_string()),
        tenant_id: None,
    };
    let (token, exp) = shared.mint_access_token(identity, &spec);
    (token, exp, lifetime)
}
