//! The token request's checks: tenant, grant, scope and client credential (secret or assertion).

use crate::config::{FEDERATED_AUDIENCE, VAULT_RESOURCE};
use crate::entra::{tenant_not_found, EntraError, ASSERTION_TYPE};
use crate::jwt::{self, JwtError};
use crate::state::{Shared, TokenSpec};
use crate::util;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Validates a token request and issues an access token.
pub(crate) fn issue(
    shared: &Shared,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Result<Value, EntraError> {
    if !tenant.eq_ignore_ascii_case(&shared.settings.tenant_id) {
        return Err(tenant_not_found(tenant));
    }
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let grant = get("grant_type").ok_or_else(|| EntraError::missing("grant_type"))?;
    if grant != "client_credentials" {
        return Err(EntraError::new(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = get("client_id").ok_or_else(|| EntraError::missing("client_id"))?;
    let scope = get("scope").ok_or_else(|| EntraError::missing("scope"))?;
    let resource = scope
        .split_whitespace()
        .find_map(|s| s.strip_suffix("/.default"))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            EntraError::new(
                400,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a \
                     scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            )
        })?;
    let identity = shared.identity(client_id).ok_or_else(|| {
        EntraError::new(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can \
                 happen if the application has not been installed by the administrator of the tenant or \
                 consented to by any user in the tenant. You may have sent your authentication request to \
                 the wrong tenant.",
                shared.settings.tenant_id
            ),
        )
    })?;

    if let Some(assertion) = get("client_assertion") {
        match get("client_assertion_type") {
            Some(ASSERTION_TYPE) => {}
            Some(other) => {
                return Err(EntraError::new(
                    400,
                    "invalid_request",
                    50027,
                    format!(
                        "Invalid client_assertion_type '{other}'; expected '{ASSERTION_TYPE}'. JWT token is \
                         invalid or malformed."
                    ),
                ))
            }
            None => return Err(EntraError::missing("client_assertion_type")),
        }
        check_assertion(shared, &identity.federated_subjects, assertion)?;
    } else if let Some(secret) = get("client_secret") {
        if identity.client_secret.as_deref() != Some(secret) {
            return Err(EntraError::new(
                401,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client \
                     secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            ));
        }
    } else {
        return Err(EntraError::new(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    }

    let lifetime = shared.lock().token_lifetime;
    let audience = if resource.eq_ignore_ascii_case(VAULT_RESOURCE)
        || resource.eq_ignore_ascii_case("https://vault.azure.net/")
    {
        VAULT_RESOURCE.to_string()
    } else {
        resource.to_string()
    };
    let spec = TokenSpec {
        client_id: identity.client_id.clone(),
        lifetime_secs: lifetime.as_secs() as i64,
        audience: Some(audience),
        tenant_id: None,
    };
    let (token, _) = shared.mint_access_token(&identity, &spec);
    let secs = lifetime.as_secs();
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": secs,
        "ext_expires_in": secs,
        "access_token": token,
    }))
}

/// Checks a federated token presented as client assertion.
fn check_assertion(
    shared: &Shared,
    subjects: &[String],
    assertion: &str,
) -> Result<(), EntraError> {
    let malformed = || {
        EntraError::new(
            400,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let claims = shared
        .federated_key
        .verify(assertion)
        .map_err(|e| match e {
            JwtError::Malformed => malformed(),
            JwtError::BadSignature => EntraError::new(
                401,
                "invalid_client",
                50013,
                "Assertion failed signature validation. [Reason - The provided signature value did not match \
                 the expected signature value.]",
            ),
        })?;
    let now = util::now_unix();
    let exp = jwt::int_claim(&claims, "exp").ok_or_else(malformed)?;
    let nbf = jwt::int_claim(&claims, "nbf").unwrap_or(0);
    let time_range = |exp: i64| {
        EntraError::new(
            401,
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from \
                 {}, expiry time of assertion {}. Review the documentation at \
                 https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                util::entra_iso(now),
                util::entra_iso(nbf),
                util::entra_iso(exp)
            ),
        )
    };
    if now >= exp || nbf > now {
        return Err(time_range(exp));
    }
    let iss = jwt::str_claim(&claims, "iss").unwrap_or_default();
    if iss != shared.settings.federated_issuer {
        return Err(no_federated_match(700211, "issuer", iss));
    }
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| a == FEDERATED_AUDIENCE) {
        return Err(no_federated_match(700212, "audience", &audiences.join(",")));
    }
    let sub = jwt::str_claim(&claims, "sub").unwrap_or_default();
    if !subjects.iter().any(|s| s == sub) {
        return Err(no_federated_match(700213, "subject", sub));
    }
    // A token rotated out of the token file is treated like an expired one: that is what a client
    // holding on to a stale token eventually meets.
    let jti = jwt::str_claim(&claims, "jti").unwrap_or_default();
    if shared.lock().revoked_assertions.contains(jti) {
        return Err(time_range(now.min(exp)));
    }
    Ok(())
}

/// 401 for an assertion whose `what` (issuer, audience, subject) matches no federated credential.
fn no_federated_match(code: u32, what: &str, presented: &str) -> EntraError {
    EntraError::new(
        401,
        "invalid_client",
        code,
        format!(
            "No matching federated identity record found for presented assertion {what} '{presented}'. Please \
             note that the matching is done using a case-sensitive comparison. Check your federated \
             identity credential Subject, Audience and Issuer against the presented assertion. \
             https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
        ),
    )
}
