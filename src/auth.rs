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
//!
//! Managed identity is the SDK's `ManagedIdentityCredential` (App Service, or
//! on a VM the instance metadata service, wrapped in [`ImdsCredential`] so its
//! errors say what to check), except on Azure Arc-enabled servers, which the
//! SDK does not support: [`ArcCredential`] speaks that protocol.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use zeroize::Zeroizing;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientMethodOptions, ClientOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertion, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};

use crate::config::{
    AuthConfig, AuthMode, ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_FEDERATED_TOKEN_FILE,
    ENV_IDENTITY_ENDPOINT, ENV_TENANT_ID,
};
use crate::text::one_line;

/// Client options with the SDK retry policy off and our transport in place.
pub fn client_options(transport: &Transport) -> ClientOptions {
    ClientOptions {
        transport: Some(transport.clone()),
        retry: RetryOptions::none(),
        ..Default::default()
    }
}

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

/// Where sysfs is mounted; `AKVFS_SYSFS_ROOT` replaces `/sys` so the DMI
/// check can be pointed at a prepared tree (tests, containers that bind the
/// host's DMI files elsewhere).
pub const ENV_SYSFS_ROOT: &str = "AKVFS_SYSFS_ROOT";

/// The chassis asset tag every Azure VM reports.
pub const AZURE_CHASSIS_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// Azure VMs carry a fixed chassis asset tag; reading it needs no network,
/// unlike probing the instance metadata service.
fn is_azure_vm() -> bool {
    let root = env(ENV_SYSFS_ROOT).unwrap_or_else(|| "/sys".to_string());
    let path = Path::new(&root).join("class/dmi/id/chassis_asset_tag");
    std::fs::read_to_string(path)
        .map(|t| t.trim() == AZURE_CHASSIS_ASSET_TAG)
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
            if let Some(arc) = ArcCredential::from_env(cfg.client_id.as_deref())? {
                return Ok(Arc::new(arc));
            }
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: cfg.client_id.clone().map(UserAssignedId::ClientId),
                client_options: client_options(transport),
            };
            let c = ManagedIdentityCredential::new(Some(options))
                .map_err(|e| sdk_err("the managed-identity credential", e))?;
            if env(ENV_IDENTITY_ENDPOINT).is_none() {
                return Ok(Arc::new(ImdsCredential {
                    inner: c,
                    client_id: cfg.client_id.clone(),
                }));
            }
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

/// A client assertion read from the projected service-account token file each
/// time a new access token is requested.
#[derive(Debug)]
pub struct FederatedTokenFile {
    path: PathBuf,
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

/// Azure Arc's identity variables: `IDENTITY_ENDPOINT` with `IMDS_ENDPOINT`
/// (and no `IDENTITY_HEADER`, which would mean App Service).
pub const ENV_IMDS_ENDPOINT: &str = "IMDS_ENDPOINT";
const ENV_IDENTITY_HEADER: &str = "IDENTITY_HEADER";
/// The directory the Arc agent writes its challenge key files to;
/// `AKVFS_ARC_TOKENS_DIR` replaces it (test setups).
pub const ARC_TOKENS_DIR: &str = "/var/opt/azcmagent/tokens";
pub const ENV_ARC_TOKENS_DIR: &str = "AKVFS_ARC_TOKENS_DIR";
const ARC_API_VERSION: &str = "2020-06-01";
/// The Arc agent's key files are small; anything bigger is not one.
const ARC_MAX_KEY_BYTES: u64 = 4096;

/// Managed identity on an Azure Arc-enabled server, which the SDK's
/// `ManagedIdentityCredential` does not support. The agent answers a first
/// request with 401 and `WWW-Authenticate: Basic realm=<key file>`; the key
/// file is readable only by root and the `himds` group, so presenting its
/// content proves the caller is privileged on this machine. The file must lie
/// in the agent's token directory, end in `.key` and be at most 4 KiB, so a
/// rogue local listener cannot make akvfs send it the content of other files.
/// Tokens are cached until 5 minutes before expiry, as the SDK does.
pub struct ArcCredential {
    endpoint: String,
    tokens_dir: PathBuf,
    http: reqwest::Client,
    /// The last token and the resource it is for.
    cache: tokio::sync::Mutex<Option<(String, azure_core::credentials::AccessToken)>>,
}

impl std::fmt::Debug for ArcCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArcCredential")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn arc_error(msg: String) -> azure_core::Error {
    azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, msg)
}

impl ArcCredential {
    /// The Arc credential if the environment is an Arc machine's.
    pub fn from_env(client_id: Option<&str>) -> Result<Option<ArcCredential>, String> {
        let (Some(endpoint), Some(_)) = (env(ENV_IDENTITY_ENDPOINT), env(ENV_IMDS_ENDPOINT)) else {
            return Ok(None);
        };
        if env(ENV_IDENTITY_HEADER).is_some() {
            return Ok(None);
        }
        if let Some(id) = client_id {
            return Err(format!(
                "Azure Arc managed identity is system-assigned only, but a user-assigned client id ({id}) was given; remove --client-id/AZURE_CLIENT_ID/client_id"
            ));
        }
        let tokens_dir =
            PathBuf::from(env(ENV_ARC_TOKENS_DIR).unwrap_or_else(|| ARC_TOKENS_DIR.to_string()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot set up the Azure Arc identity client: {e}"))?;
        Ok(Some(ArcCredential {
            endpoint,
            tokens_dir,
            http,
            cache: tokio::sync::Mutex::new(None),
        }))
    }

    async fn request(
        &self,
        resource: &str,
        key: Option<&str>,
    ) -> azure_core::Result<reqwest::Response> {
        let mut url = azure_core::http::Url::parse(&self.endpoint).map_err(|e| {
            arc_error(format!(
                "{ENV_IDENTITY_ENDPOINT} ({}) is not a URL: {e}",
                self.endpoint
            ))
        })?;
        url.query_pairs_mut()
            .append_pair("api-version", ARC_API_VERSION)
            .append_pair("resource", resource);
        let mut req = self.http.get(url.as_str()).header("Metadata", "true");
        if let Some(key) = key {
            req = req.header("Authorization", format!("Basic {key}"));
        }
        req.send().await.map_err(|e| {
            arc_error(format!(
                "cannot reach the Azure Arc identity endpoint {}: {e}; check that the himds service runs (azcmagent show)",
                self.endpoint
            ))
        })
    }

    /// Reads the challenge key file after checking where it is.
    fn read_key(&self, challenge: &str) -> azure_core::Result<zeroize::Zeroizing<String>> {
        let realm = challenge
            .split_once("realm=")
            .map(|(_, r)| r.trim().trim_matches('"'))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                arc_error(format!(
                    "the Azure Arc identity endpoint {} sent no key file in its challenge",
                    self.endpoint
                ))
            })?;
        let path = Path::new(realm);
        let inside = path.parent().is_some_and(|p| p == self.tokens_dir);
        let is_key = path.extension().is_some_and(|e| e == "key");
        if !inside || !is_key {
            return Err(arc_error(format!(
                "the Azure Arc identity endpoint {} named the key file {realm}, which is not a .key file in {}; refusing to read it",
                self.endpoint,
                self.tokens_dir.display()
            )));
        }
        let size = std::fs::metadata(path)
            .map_err(|e| arc_error(format!("cannot read the Azure Arc key file {realm}: {e}; akvfs must run as root or in the himds group")))?
            .len();
        if size > ARC_MAX_KEY_BYTES {
            return Err(arc_error(format!(
                "the Azure Arc key file {realm} is {size} bytes, more than a key; refusing to send it"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            arc_error(format!(
                "cannot read the Azure Arc key file {realm}: {e}; akvfs must run as root or in the himds group"
            ))
        })?;
        Ok(zeroize::Zeroizing::new(text.trim().to_string()))
    }

    async fn fetch(
        &self,
        resource: &str,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let first = self.request(resource, None).await?;
        let resp = if first.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = first
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let key = self.read_key(&challenge)?;
            self.request(resource, Some(&key)).await?
        } else {
            first
        };
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            arc_error(format!(
                "cannot read the answer of the Azure Arc identity endpoint {}: {e}",
                self.endpoint
            ))
        })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            return Err(arc_error(format!(
                "the Azure Arc identity endpoint {} answered {status}: {}",
                self.endpoint,
                text.trim()
            )));
        }
        #[derive(serde::Deserialize)]
        struct ArcToken {
            access_token: zeroize::Zeroizing<String>,
            expires_on: serde_json::Value,
        }
        let token: ArcToken = serde_json::from_slice(&body).map_err(|e| {
            arc_error(format!(
                "the Azure Arc identity endpoint {} sent an unreadable token answer: {e}",
                self.endpoint
            ))
        })?;
        let expires_on = match &token.expires_on {
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| {
            arc_error(format!(
                "the Azure Arc identity endpoint {} sent a token without a valid expires_on",
                self.endpoint
            ))
        })?;
        Ok(azure_core::credentials::AccessToken::new(
            Secret::new(token.access_token.as_str().to_string()),
            expires_on,
        ))
    }
}

#[async_trait::async_trait]
impl TokenCredential for ArcCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let [scope] = scopes else {
            return Err(arc_error(
                "Azure Arc managed identity needs exactly one scope".to_string(),
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut cached = self.cache.lock().await;
        if let Some((r, t)) = cached.as_ref() {
            if r == resource
                && t.expires_on > time::OffsetDateTime::now_utc() + time::Duration::seconds(300)
            {
                return Ok(t.clone());
            }
        }
        let token = self.fetch(resource).await?;
        *cached = Some((resource.to_string(), token.clone()));
        Ok(token)
    }
}

/// How long a token request to the instance metadata service may take before
/// akvfs logs that it is waiting for it (a vault call waiting on it then fails
/// at `--fetch-timeout` as a timeout; the log line names the real cause).
const IMDS_SLOW_WARNING: std::time::Duration = std::time::Duration::from_secs(1);

/// The SDK's managed identity credential on a VM, where tokens come from the
/// instance metadata service at 169.254.169.254. Adds what to check to its
/// errors and logs when the service is slow to answer.
pub struct ImdsCredential {
    inner: Arc<ManagedIdentityCredential>,
    client_id: Option<String>,
}

impl std::fmt::Debug for ImdsCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImdsCredential")
    }
}

impl ImdsCredential {
    fn which(&self) -> String {
        match &self.client_id {
            Some(id) => format!("the user-assigned identity with client id {id}"),
            None => "the system-assigned identity".to_string(),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for ImdsCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let call = self.inner.get_token(scopes, options);
        tokio::pin!(call);
        let result = tokio::select! {
            r = &mut call => r,
            _ = tokio::time::sleep(IMDS_SLOW_WARNING) => {
                tracing::warn!(
                    "the instance metadata service (169.254.169.254) has not answered a token request for {} within {}s; vault calls wait for it; check that this is an Azure VM or scale set and that no firewall or proxy intercepts 169.254.169.254",
                    self.which(),
                    IMDS_SLOW_WARNING.as_secs()
                );
                call.await
            }
        };
        result.map_err(|e| {
            let hint = match self.client_id {
                Some(_) => "check that the VM has this user-assigned identity (az vm identity assign --identities) and that --client-id is its client id",
                None => "check that the VM has a system-assigned identity (az vm identity assign), or give --client-id for a user-assigned one",
            };
            let message = format!(
                "no token for {} from the instance metadata service (169.254.169.254): {e}; {hint}",
                self.which(),
            );
            azure_core::Error::with_error(azure_core::error::ErrorKind::Credential, e, message)
        })
    }
}

#[cfg(test)]
mod arc_tests {
    use super::*;

    fn arc(dir: &Path) -> ArcCredential {
        ArcCredential {
            endpoint: "http://127.0.0.1:40342/metadata/identity/oauth2/token".into(),
            tokens_dir: dir.to_path_buf(),
            http: reqwest::Client::new(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    #[test]
    fn only_small_key_files_in_the_agent_directory_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let good = tokens.join("a.key");
        std::fs::write(&good, "k3y\n").unwrap();
        let c = arc(&tokens);
        let key = c
            .read_key(&format!("Basic realm={}", good.display()))
            .unwrap();
        assert_eq!(key.as_str(), "k3y");

        let outside = dir.path().join("b.key");
        std::fs::write(&outside, "x").unwrap();
        let not_key = tokens.join("c.txt");
        std::fs::write(&not_key, "x").unwrap();
        let big = tokens.join("d.key");
        std::fs::write(&big, vec![b'x'; 4097]).unwrap();
        let nested = tokens.join("sub");
        std::fs::create_dir(&nested).unwrap();
        std::fs::write(nested.join("e.key"), "x").unwrap();
        let traversal = format!("{}/../b.key", tokens.display());
        for realm in [
            outside.display().to_string(),
            not_key.display().to_string(),
            big.display().to_string(),
            nested.join("e.key").display().to_string(),
            traversal,
        ] {
            let err = c
                .read_key(&format!("Basic realm={realm}"))
                .expect_err(&realm)
                .to_string();
            assert!(err.contains("refusing"), "{realm}: {err}");
        }
        assert!(c.read_key("Basic").is_err(), "no realm");
    }
}
