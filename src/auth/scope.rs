//! The Key Vault scope guard: which scopes a token may be requested for, and how a token failure is classified.

use super::*;
use crate::sync::lock;

/// The scope a Key Vault access token is requested for.
pub const VAULT_SCOPE: &str = "https://vault.azure.net/.default";

/// Every scope akvfs may request a token for: Key Vault and Managed HSM in
/// the public and sovereign clouds. Whatever a vault's authentication
/// challenge names, a token for anything else (Azure Resource Manager,
/// Graph, storage) is never requested, so a hostile host cannot obtain one.
pub const KEY_VAULT_SCOPES: [&str; 8] = [
    "https://vault.azure.net/.default",
    "https://vault.azure.cn/.default",
    "https://vault.usgovcloudapi.net/.default",
    "https://vault.microsoftazure.de/.default",
    "https://managedhsm.azure.net/.default",
    "https://managedhsm.azure.cn/.default",
    "https://managedhsm.usgovcloudapi.net/.default",
    "https://managedhsm.microsoftazure.de/.default",
];

/// Whether `scope` is one of [`KEY_VAULT_SCOPES`] (ASCII case aside, and
/// with the `https://host//.default` form a resource with a trailing slash
/// turns into).
pub fn is_key_vault_scope(scope: &str) -> bool {
    let lower = scope.to_ascii_lowercase();
    let Some(resource) = lower.strip_suffix("/.default") else {
        return false;
    };
    let resource = resource.strip_suffix('/').unwrap_or(resource);
    KEY_VAULT_SCOPES
        .iter()
        .any(|s| s.strip_suffix("/.default") == Some(resource))
}

/// A token was requested for a scope outside [`KEY_VAULT_SCOPES`]; the
/// request was refused before any network call.
#[derive(Debug, thiserror::Error)]
#[error("refused to request a token for {scope}: not a Key Vault scope")]
pub struct ForeignScope {
    pub scope: String,
}

/// Put in a request's context to have the credential drop its cached token
/// and obtain a new one (used for the one retry after a definite refusal).
#[derive(Clone, Copy, Debug)]
pub struct FreshToken;

/// How a failure to obtain or use a token is to be treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFailure {
    /// The identity itself was refused: invalid_client, unauthorized_client,
    /// invalid_grant, an AADSTS code meaning "not allowed", or a managed
    /// identity that no longer exists.
    Refused(String),
    /// The token endpoint is failing or unreachable (5xx, 429, 408, timeouts,
    /// connection errors): an outage, during which cached values serve.
    Transient(String),
    /// Anything else (a missing Azure CLI, an unreadable token file, a
    /// malformed request): reported, but neither an outage nor a refusal.
    Other(String),
}

/// Entra error codes that mean "this identity may not have a token", for
/// answers whose `error` field is not itself one of the definite ones.
const REFUSAL_CODES: [i64; 16] = [
    700016,  // application not found in the directory
    7000112, // application disabled
    7000215, // invalid client secret
    7000222, // client secret expired
    70021,   // no matching federated identity record
    700211,  // no matching federated identity record (issuer)
    700212,  // no matching federated identity record (audience)
    700213,  // no matching federated identity record (subject)
    700027,  // client assertion signature invalid
    50013,   // assertion signature validation failed
    53003,   // blocked by Conditional Access
    50053,   // account locked
    50057,   // account disabled
    90002,   // tenant not found
    500011,  // resource principal not found in the tenant
    7000219, // client_assertion or client_secret required
];

/// Classifies a credential error by what the token endpoint answered.
pub fn classify_token_error(err: &azure_core::Error) -> TokenFailure {
    let text = one_line(err);
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(az) = e.downcast_ref::<azure_core::Error>() {
            match az.kind() {
                azure_core::error::ErrorKind::HttpResponse {
                    status,
                    raw_response,
                    ..
                } => {
                    let body = raw_response
                        .as_ref()
                        .map(|r| String::from_utf8_lossy(r.body()).into_owned())
                        .unwrap_or_default();
                    return classify_token_answer(u16::from(*status), &body, text);
                }
                azure_core::error::ErrorKind::Connection | azure_core::error::ErrorKind::Io => {
                    return TokenFailure::Transient(text)
                }
                _ => {}
            }
        }
        cur = e.source();
    }
    TokenFailure::Other(text)
}

/// Classifies a token endpoint's (Entra ID's or a managed identity
/// endpoint's) error answer. `text` is the message to carry.
pub fn classify_token_answer(status: u16, body: &str, text: String) -> TokenFailure {
    if matches!(status, 408 | 429 | 500..=599) {
        return TokenFailure::Transient(text);
    }
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let error = field("error");
    if error == "temporarily_unavailable" {
        return TokenFailure::Transient(text);
    }
    let codes: Vec<i64> = json
        .as_ref()
        .and_then(|v| v.get("error_codes"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|c| c.as_i64()).collect())
        .unwrap_or_default();
    let description = format!("{} {}", field("error_description"), field("message"));
    let refused = matches!(status, 400 | 401 | 403)
        && (matches!(
            error.as_str(),
            "invalid_client" | "unauthorized_client" | "invalid_grant"
        ) || codes.iter().any(|c| REFUSAL_CODES.contains(c))
            || description.contains("identity not found")
            || description.contains("managed identity found"));
    if refused {
        TokenFailure::Refused(text)
    } else {
        TokenFailure::Other(text)
    }
}

/// The Azure CLI's refresh token expired or was revoked (Entra ID errors
/// AADSTS700082, AADSTS50173, AADSTS70043, or the CLI's own wording), in an
/// error text already lowercased.
pub fn cli_sign_in_expired(lower: &str) -> bool {
    [
        "aadsts700082",
        "aadsts50173",
        "aadsts70043",
        "refresh token has expired",
        "interactive authentication is needed",
    ]
    .iter()
    .any(|m| lower.contains(m))
}

/// What to append to an error for which [`cli_sign_in_expired`] holds.
pub const CLI_SIGN_IN_EXPIRED: &str = " (the Azure CLI's sign-in has expired: run az login again)";

/// Refuses non-Key-Vault scopes, and rebuilds the SDK credential (whose
/// token cache cannot be cleared) when asked for a fresh token.
pub(super) struct GuardedCredential {
    pub(super) mode: AuthMode,
    pub(super) cfg: AuthConfig,
    pub(super) transport: Transport,
    pub(super) inner: Mutex<Arc<dyn TokenCredential>>,
}

impl std::fmt::Debug for GuardedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuardedCredential")
    }
}

#[async_trait::async_trait]
impl TokenCredential for GuardedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        if let Some(foreign) = scopes.iter().find(|s| !is_key_vault_scope(s)) {
            tracing::warn!(
                scope = %foreign,
                "refused to request an access token for a scope that is not Key Vault"
            );
            return Err(azure_core::Error::new(
                azure_core::error::ErrorKind::Credential,
                ForeignScope {
                    scope: foreign.to_string(),
                },
            ));
        }
        let fresh = options
            .as_ref()
            .is_some_and(|o| o.method_options.context.value::<FreshToken>().is_some());
        if fresh {
            match build_credential(self.mode, &self.cfg, &self.transport) {
                Ok(c) => *lock(&self.inner) = c,
                Err(e) => tracing::debug!("cannot rebuild the credential for a fresh token: {e}"),
            }
        }
        let inner = Arc::clone(&lock(&self.inner));
        inner.get_token(scopes, options).await
    }
}
