//! The Entra ID endpoints: routing, the token endpoint's request and Entra's error bodies.
//!
//! The v2.0 token endpoint (client assertion and client secret; the checks are in `credentials`)
//! and the discovery documents MSAL-based clients fetch first (`discovery`).
//!
//! Error bodies follow Entra ID: `{"error", "error_description": "AADSTS…", "error_codes": […],
//! "timestamp", "trace_id", "correlation_id", "error_uri"}` with status 400 or 401.

use crate::counts::Operation;
use crate::credentials::issue;
use crate::discovery::{instance_discovery, openid_configuration};
use crate::http::{json, read_body, segments, Reply, Resp};
use crate::server::{apply_faults, Family};
use crate::state::Shared;
use crate::util;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::Method;
use serde_json::json;
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
pub(crate) struct EntraError {
    status: u16,
    error: &'static str,
    code: u32,
    description: String,
}

impl EntraError {
    pub(crate) fn new(
        status: u16,
        error: &'static str,
        code: u32,
        description: impl Into<String>,
    ) -> Self {
        EntraError {
            status,
            error,
            code,
            description: description.into(),
        }
    }

    pub(crate) fn missing(param: &str) -> Self {
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

pub(crate) fn tenant_not_found(tenant: &str) -> EntraError {
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
