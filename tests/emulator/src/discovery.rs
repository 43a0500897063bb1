//! Entra ID's discovery documents: the OpenID configuration and instance discovery.

use crate::http::{query_get, query_pairs};
use crate::state::Shared;
use serde_json::{json, Value};

fn authority_host_name(shared: &Shared) -> String {
    shared
        .settings
        .authority_host
        .trim_start_matches("https://")
        .to_string()
}

/// The tenant's OpenID configuration, pointing at the emulator's own URLs.
pub(crate) fn openid_configuration(shared: &Shared, v2: bool) -> Value {
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
pub(crate) fn instance_discovery(shared: &Shared, query: Option<&str>) -> Value {
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
