//! The Entra ID endpoints: the v2.0 token endpoint (client assertion and client secret) and the
//! discovery documents MSAL-based clients fetch first.
//!
//! Error bodies follow Entra ID: `{"error", "error_description": "AADSTS…", "error_codes": […],
//! "timestamp", "trace_id", "correlation_id", "error_uri"}` with status 400 or 401.

use crate::config::{FEDERATED_AUDIENCE, VAULT_RESOURCE};
use crate::counts::Operation;
use crate::http::{json, query_get, query_pairs, read_body, segments, Reply, Resp};
use crate::jwt::{self, JwtError};
use crate::server::{apply_faults, Family};
use crate::state::{Shared, TokenSpec};
use crate::util;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The `client_assertion_type` of a JWT bearer assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra ID route.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    Token(String),
    OpenidConfiguration(String, bool),
    Jwks(String),
    InstanceDiscovery,
}

impl Route {
    /// Recognizes Entra ID paths; anything else belongs to the vault.
    pub(crate) fn parse(path: &str) -> Option<Route> {
        let segs = segments(path);
        let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
        let l: Vec<&str> = lower.iter().map(String::as_str).collect();
        let tenant = || segs.first().map(|t| t.to_string()).unwrap_or_default();
        match l.as_slice() {
            [_, "oauth2", "v2.0", "token"] => Some(Route::Token(tenant())),
            [_, "v2.0", ".well-known", "openid-configuration"] => {
                Some(Route::OpenidConfiguration(tenant(), true))
            }
            [_, ".well-known", "openid-configuration"] => {
                Some(Route::OpenidConfiguration(tenant(), false))
            }
            [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] => {
                Some(Route::Jwks(tenant()))
            }
            [_, "discovery", "instance"] => Some(Route::InstanceDiscovery),
            _ => None,
        }
    }
}

/// An Entra ID error.
struct EntraError {
    status: u16,
    error: &'static str,
    code: u32,
    description: String,
}

impl EntraError {
    fn new(status: u16, error: &'static str, code: u32, description: impl Into<String>) -> Self {
        EntraError {
            status,
            error,
            code,
            description: description.into(),
        }
    }

    fn missing(param: &str) -> Self {
        EntraError::new(
            400,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }
}

/// Renders an Entra ID error response. The trace details are separated by spaces, not CRLF: Entra
/// has used both, and azure_identity 1.0 cannot parse an `error_description` containing JSON
/// escapes (it borrows the string), so escapes would hide the AADSTS code from Rust clients.
pub(crate) fn error_response(
    status: u16,
    error: &str,
    code: Option<u32>,
    description: &str,
) -> Resp {
    let now = util::now_unix();
    let trace = util::random_uuid();
    let correlation = util::random_uuid();
    let text = match code {
        Some(c) => format!(
            "AADSTS{c}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {}",
            util::entra_timestamp(now)
        ),
        None => description.to_string(),
    };
    let codes: Vec<u32> = code.into_iter().collect();
    json(
        status,
        &json!({
            "error": error,
            "error_description": text,
            "error_codes": codes,
            "timestamp": util::entra_timestamp(now),
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": match code {
                Some(c) => format!("https://login.microsoftonline.com/error?code={c}"),
                None => "https://login.microsoftonline.com/error".to_string(),
            },
        }),
    )
}

fn render(e: EntraError) -> Resp {
    error_response(e.status, e.error, Some(e.code), &e.description)
}

fn tenant_not_found(tenant: &str) -> EntraError {
    EntraError::new(
        400,
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing \
             into the correct cloud. Check with your subscription administrator, this may happen if there \
             are no active subscriptions for the tenant."
        ),
    )
}

/// Handles an Entra ID request.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    route: Route,
    parts: Parts,
    body: Incoming,
) -> Reply {
    match route {
        Route::Token(tenant) => token(shared, &tenant, &parts, body).await,
        Route::OpenidConfiguration(tenant, v2) => {
            if let Some(reply) =
                apply_faults(shared, Operation::OpenidConfiguration, Family::Entra).await
            {
                return reply;
            }
            shared.bump(Operation::OpenidConfiguration.name());
            if !tenant.eq_ignore_ascii_case(&shared.settings.tenant_id) {
                return render(tenant_not_found(&tenant)).into();
            }
            json(200, &openid_configuration(shared, v2)).into()
        }
        Route::Jwks(tenant) => {
            if let Some(reply) = apply_faults(shared, Operation::Jwks, Family::Entra).await {
                return reply;
            }
            shared.bump(Operation::Jwks.name());
            if !tenant.eq_ignore_ascii_case(&shared.settings.tenant_id) {
                return render(tenant_not_found(&tenant)).into();
            }
            // Tokens are signed with a symmetric key, which is never published.
            json(200, &json!({"keys": []})).into()
        }
        Route::InstanceDiscovery => {
            if let Some(reply) =
                apply_faults(shared, Operation::InstanceDiscovery, Family::Entra).await
            {
                return reply;
            }
            shared.bump(Operation::InstanceDiscovery.name());
            json(200, &instance_discovery(shared, parts.uri.query())).into()
        }
    }
}

fn authority_host_name(shared: &Shared) -> String {
    shared
        .settings
        .authority_host
        .trim_start_matches("https://")
        .to_string()
}

/// The tenant's OpenID configuration, pointing at the emulator's own URLs.
fn openid_configuration(shared: &Shared, v2: bool) -> Value {
    let base = format!(
        "{}/{}",
        shared.settings.authority_host, shared.settings.tenant_id
    );
    let (oauth, issuer) = if v2 {
        (format!("{base}/oauth2/v2.0"), format!("{base}/v2.0"))
    } else {
        (format!("{base}/oauth2"), format!("{base}/"))
    };
    json!({
        "token_endpoint": format!("{oauth}/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{}/oidc/userinfo", shared.settings.authority_host),
        "authorization_endpoint": format!("{oauth}/authorize"),
        "device_authorization_endpoint": format!("{oauth}/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{oauth}/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
        "kerberos_endpoint": format!("{base}/kerberos"),
        "tenant_region_scope": null,
        "cloud_instance_name": authority_host_name(shared),
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    })
}

/// MSAL instance discovery: says the emulator's authority is valid and where its tenant metadata is.
fn instance_discovery(shared: &Shared, query: Option<&str>) -> Value {
    let pairs = query_pairs(query);
    let host = authority_host_name(shared);
    let tenant = query_get(&pairs, "authorization_endpoint")
        .and_then(|ep| {
            let rest = ep.split("://").nth(1)?;
            rest.split('/').nth(1).map(str::to_string)
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| shared.settings.tenant_id.clone());
    json!({
        "tenant_discovery_endpoint": format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            shared.settings.authority_host
        ),
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": host,
            "preferred_cache": host,
            "aliases": [host],
        }],
    })
}

async fn token(shared: &Arc<Shared>, tenant: &str, parts: &Parts, body: Incoming) -> Reply {
    let bytes = if parts.method == Method::POST {
        read_body(body, 64 * 1024).await.ok()
    } else {
        None
    };
    let form: HashMap<String, String> = bytes
        .as_ref()
        .map(|b| {
            let mut map = HashMap::new();
            for (k, v) in form_urlencoded::parse(b) {
                map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
            map
        })
        .unwrap_or_default();
    let op = if parts.method != Method::POST {
        Operation::TokenOther
    } else if form.contains_key("client_assertion") {
        Operation::TokenClientAssertion
    } else if form.contains_key("client_secret") {
        Operation::TokenClientSecret
    } else {
        Operation::TokenOther
    };
    if let Some(reply) = crate::faults_extra::token_answer(shared) {
        return reply;
    }
    if let Some(reply) = apply_faults(shared, op, Family::Entra).await {
        return reply;
    }
    shared.bump(op.name());
    if parts.method != Method::POST {
        return render(EntraError::new(
            400,
            "invalid_request",
            900561,
            format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {} request.",
                parts.method
            ),
        ))
        .into();
    }
    if bytes.is_none() {
        return render(EntraError::missing("grant_type")).into();
    }
    match issue(shared, tenant, &form) {
        Ok(body) => json(200, &body).into(),
        Err(e) => render(e).into(),
    }
}

/// Validates a token request and issues an access token.
fn issue(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse("/t/oauth2/v2.0/token"),
            Some(Route::Token("t".into()))
        );
        assert_eq!(
            Route::parse("/T/v2.0/.well-known/openid-configuration"),
            Some(Route::OpenidConfiguration("T".into(), true))
        );
        assert_eq!(
            Route::parse("/common/discovery/instance"),
            Some(Route::InstanceDiscovery)
        );
        assert_eq!(
            Route::parse("/t/discovery/v2.0/keys"),
            Some(Route::Jwks("t".into()))
        );
        assert_eq!(Route::parse("/secrets/a"), None);
        assert_eq!(Route::parse("/secrets/oauth2/v2.0/token/x"), None);
    }
}
