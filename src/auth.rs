//! Credential selection: which Azure identity akvfs uses to reach the vault.
//!
//! `auto` picks, in order: a client secret from the environment, workload
//! identity (`AZURE_FEDERATED_TOKEN_FILE`), managed identity (an
//! `IDENTITY_ENDPOINT`, or a machine that identifies itself as an Azure VM),
//! then the Azure CLI. It logs which one it chose and why.
//!
//! Workload identity uses our own [`FederatedTokenFile`] assertion rather than
//! the SDK's `WorkloadIdentityCredential`: the SDK keeps the file's contents
//! for up to 10 minutes, so after the kubelet rotates the projected token the
//! SDK can keep presenting the old one. We re-read the file whenever a new
//! access token is needed, which costs one small file read per token.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use zeroize::Zeroizing;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientMethodOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertion, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};

use crate::config::{AuthConfig, AuthMode};
use crate::error::one_line;
use crate::vault::azure::client_options;

/// Environment variables akvfs reads for authentication.
pub const ENV_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
pub const ENV_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const ENV_TENANT_ID: &str = "AZURE_TENANT_ID";
pub const ENV_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
pub const ENV_IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";

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

/// A credential and the mode it came from.
pub struct Identity {
    pub mode: AuthMode,
    pub credential: Arc<dyn TokenCredential>,
    /// Why this mode, for the log and `akvfs check`.
    pub reason: String,
}

/// Resolves `auto` and builds the credential. Errors name the missing piece.
/// The credential only ever requests Key Vault scopes, and starts over with
/// no cached token when a request carries [`FreshToken`].
pub fn build_identity(cfg: &AuthConfig, transport: &Transport) -> Result<Identity, String> {
    let (mode, reason) = match cfg.mode {
        AuthMode::Auto => choose_auto(cfg),
        m => (m, "chosen with --auth".to_string()),
    };
    let inner = build_credential(mode, cfg, transport)?;
    let credential = Arc::new(GuardedCredential {
        mode,
        cfg: cfg.clone(),
        transport: transport.clone(),
        inner: Mutex::new(inner),
    });
    Ok(Identity {
        mode,
        credential,
        reason,
    })
}

/// Refuses non-Key-Vault scopes, and rebuilds the SDK credential (whose
/// token cache cannot be cleared) when asked for a fresh token.
struct GuardedCredential {
    mode: AuthMode,
    cfg: AuthConfig,
    transport: Transport,
    inner: Mutex<Arc<dyn TokenCredential>>,
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
                Ok(c) => *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = c,
                Err(e) => tracing::debug!("cannot rebuild the credential for a fresh token: {e}"),
            }
        }
        let inner = Arc::clone(&self.inner.lock().unwrap_or_else(|e| e.into_inner()));
        inner.get_token(scopes, options).await
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The client secret, taken out of the environment the first time it is
/// needed (or at start by [`take_client_secret_from_env`]) and kept in a
/// zeroizing buffer, so child processes (the Azure CLI) and
/// /proc/PID/environ no longer show it.
static CLIENT_SECRET: OnceLock<Option<Zeroizing<String>>> = OnceLock::new();

/// Moves `AZURE_CLIENT_SECRET` out of the environment into memory akvfs
/// wipes, and overwrites the original bytes in the environment block (which
/// /proc/PID/environ shows even after the variable is removed). Call it
/// while the process has one thread: changing the environment races with
/// other threads reading it.
pub fn take_client_secret_from_env() {
    CLIENT_SECRET.get_or_init(|| {
        let value = env(ENV_CLIENT_SECRET).map(Zeroizing::new);
        if std::env::var_os(ENV_CLIENT_SECRET).is_some() {
            wipe_env_value(ENV_CLIENT_SECRET);
            std::env::remove_var(ENV_CLIENT_SECRET);
        }
        value
    });
}

fn client_secret() -> Option<&'static Zeroizing<String>> {
    take_client_secret_from_env();
    CLIENT_SECRET.get().and_then(|v| v.as_ref())
}

/// Overwrites a variable's value where the C environment holds it.
fn wipe_env_value(name: &str) {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return;
    };
    // SAFETY: getenv returns NULL or a pointer to the NUL-terminated value
    // inside the process's environment block, which is writable memory that
    // lives as long as the process; nothing else runs while the caller is
    // single-threaded, and only the value's own bytes (up to, not including,
    // the terminating NUL) are written.
    unsafe {
        let p = libc::getenv(cname.as_ptr());
        if !p.is_null() {
            let len = libc::strlen(p);
            std::ptr::write_bytes(p, b'x', len);
        }
    }
}

fn choose_auto(cfg: &AuthConfig) -> (AuthMode, String) {
    if client_secret().is_some() {
        return (
            AuthMode::ClientSecret,
            format!("{ENV_CLIENT_SECRET} is set"),
        );
    }
    if cfg.federated_token_file.is_some() {
        return (
            AuthMode::WorkloadIdentity,
            format!("{ENV_FEDERATED_TOKEN_FILE} is set"),
        );
    }
    if env(ENV_IDENTITY_ENDPOINT).is_some() {
        return (
            AuthMode::ManagedIdentity,
            format!("{ENV_IDENTITY_ENDPOINT} is set"),
        );
    }
    if is_azure_vm() {
        return (
            AuthMode::ManagedIdentity,
            "this machine reports itself as an Azure VM (DMI chassis asset tag)".to_string(),
        );
    }
    (
        AuthMode::AzureCli,
        format!(
            "no {ENV_CLIENT_SECRET}, {ENV_FEDERATED_TOKEN_FILE} or {ENV_IDENTITY_ENDPOINT}, and not an Azure VM"
        ),
    )
}

/// Azure VMs carry a fixed chassis asset tag; reading it needs no network,
/// unlike probing the instance metadata service.
fn is_azure_vm() -> bool {
    std::fs::read_to_string("/sys/class/dmi/id/chassis_asset_tag")
        .map(|t| t.trim() == "7783-7084-3265-9085-8269-3286-77")
        .unwrap_or(false)
}

fn build_credential(
    mode: AuthMode,
    cfg: &AuthConfig,
    transport: &Transport,
) -> Result<Arc<dyn TokenCredential>, String> {
    let sdk_err = |what: &str, e: azure_core::Error| format!("cannot set up {what}: {e}");
    match mode {
        AuthMode::ClientSecret => {
            let secret = client_secret().ok_or_else(|| {
                format!("--auth client-secret needs {ENV_CLIENT_SECRET} in the environment (it is never taken as a flag, so it stays out of the process list)")
            })?;
            let tenant = require(
                &cfg.tenant_id,
                "--tenant-id",
                ENV_TENANT_ID,
                "client-secret",
            )?;
            let client = require(
                &cfg.client_id,
                "--client-id",
                ENV_CLIENT_ID,
                "client-secret",
            )?;
            let options = ClientSecretCredentialOptions {
                client_options: client_options(transport),
            };
            // The SDK keeps its own copy for the credential's life
            // (docs/SECURITY.md).
            let c = ClientSecretCredential::new(
                &tenant,
                client,
                Secret::new(secret.as_str().to_string()),
                Some(options),
            )
            .map_err(|e| sdk_err("the client-secret credential", e))?;
            Ok(c)
        }
        AuthMode::WorkloadIdentity => {
            let file = cfg.federated_token_file.clone().ok_or_else(|| {
                format!("--auth workload-identity needs {ENV_FEDERATED_TOKEN_FILE}; check that the pod has the label azure.workload.identity/use: \"true\" and a service account annotated with azure.workload.identity/client-id")
            })?;
            let tenant = require(
                &cfg.tenant_id,
                "--tenant-id",
                ENV_TENANT_ID,
                "workload-identity",
            )?;
            let client = require(
                &cfg.client_id,
                "--client-id",
                ENV_CLIENT_ID,
                "workload-identity",
            )?;
            let options = ClientAssertionCredentialOptions {
                client_options: client_options(transport),
            };
            let c = ClientAssertionCredential::new(
                tenant,
                client,
                FederatedTokenFile { path: file },
                Some(options),
            )
            .map_err(|e| sdk_err("the workload-identity credential", e))?;
            Ok(c)
        }
        AuthMode::ManagedIdentity => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: cfg.client_id.clone().map(UserAssignedId::ClientId),
                client_options: client_options(transport),
            };
            let c = ManagedIdentityCredential::new(Some(options))
                .map_err(|e| sdk_err("the managed-identity credential", e))?;
            Ok(c)
        }
        AuthMode::AzureCli => {
            let options = AzureCliCredentialOptions {
                tenant_id: cfg.tenant_id.clone(),
                ..Default::default()
            };
            let c = AzureCliCredential::new(Some(options))
                .map_err(|e| sdk_err("the Azure CLI credential", e))?;
            Ok(c)
        }
        AuthMode::Auto => unreachable!("auto is resolved before building"),
    }
}

fn require(v: &Option<String>, flag: &str, env_name: &str, mode: &str) -> Result<String, String> {
    v.clone()
        .ok_or_else(|| format!("--auth {mode} needs {flag} or {env_name}"))
}

/// Counts the access tokens a credential obtains (a token with a new expiry
/// is a new token) and records that one was obtained, for metrics and
/// readiness.
pub struct CountingCredential {
    inner: Arc<dyn TokenCredential>,
    metrics: Arc<crate::metrics::MountMetrics>,
    last_expiry: std::sync::Mutex<Option<time::OffsetDateTime>>,
}

impl CountingCredential {
    pub fn wrap(
        inner: Arc<dyn TokenCredential>,
        metrics: Arc<crate::metrics::MountMetrics>,
    ) -> Arc<dyn TokenCredential> {
        Arc::new(CountingCredential {
            inner,
            metrics,
            last_expiry: std::sync::Mutex::new(None),
        })
    }
}

impl std::fmt::Debug for CountingCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountingCredential")
    }
}

#[async_trait::async_trait]
impl TokenCredential for CountingCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let token = self.inner.get_token(scopes, options).await?;
        let mut last = self.last_expiry.lock().unwrap_or_else(|e| e.into_inner());
        if *last != Some(token.expires_on) {
            *last = Some(token.expires_on);
            self.metrics
                .token_refreshes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.metrics
                .token_ok
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(token)
    }
}

/// A client assertion read from the projected service-account token file each
/// time a new access token is requested.
#[derive(Debug)]
pub struct FederatedTokenFile {
    path: PathBuf,
}

impl FederatedTokenFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait::async_trait]
impl ClientAssertion for FederatedTokenFile {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || read_wiped(&path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        let bytes = read.map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!(
                    "cannot read the federated token file {}: {e}; check the projected service account token volume",
                    self.path.display()
                ),
            )
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!(
                    "the federated token file {} is not UTF-8 text; check the projected service account token volume",
                    self.path.display()
                ),
            )
        })?;
        // The trait hands the SDK a plain String; that copy lives only for
        // the token request (docs/SECURITY.md).
        Ok(text.trim().to_string())
    }
}

/// Reads a file into one zeroizing buffer sized from its length, so no
/// partial copy is left by a reallocation (a file that grows meanwhile
/// reallocates once, into a buffer that is wiped too).
fn read_wiped(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let mut buf = Zeroizing::new(Vec::with_capacity(len + 1));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    loop {
        let n = file.read(&mut chunk[..])?;
        if n == 0 {
            return Ok(buf);
        }
        if buf.len() + n > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((buf.len() + n) * 2));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Non-secret claims of an access token, for `akvfs check`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TokenClaims {
    pub tid: Option<String>,
    pub oid: Option<String>,
    pub appid: Option<String>,
    pub azp: Option<String>,
    pub upn: Option<String>,
    pub unique_name: Option<String>,
    pub xms_mirid: Option<String>,
}

/// Obtains a token and returns its identity claims and lifetime. The token
/// itself is dropped, never shown.
pub async fn whoami(
    credential: &Arc<dyn TokenCredential>,
) -> Result<(TokenClaims, time::OffsetDateTime), String> {
    let token = credential
        .get_token(&[VAULT_SCOPE], None)
        .await
        .map_err(|e| format!("cannot obtain an access token: {}", one_line(&e)))?;
    let claims = decode_claims(token.token.secret()).unwrap_or_default();
    Ok((claims, token.expires_on))
}

fn decode_claims(jwt: &str) -> Option<TokenClaims> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
