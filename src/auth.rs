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
use std::sync::Arc;

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

/// A credential and the mode it came from.
pub struct Identity {
    pub mode: AuthMode,
    pub credential: Arc<dyn TokenCredential>,
    /// Why this mode, for the log and `akvfs check`.
    pub reason: String,
}

/// Resolves `auto` and builds the credential. Errors name the missing piece.
pub fn build_identity(cfg: &AuthConfig, transport: &Transport) -> Result<Identity, String> {
    let (mode, reason) = match cfg.mode {
        AuthMode::Auto => choose_auto(cfg),
        m => (m, "chosen with --auth".to_string()),
    };
    let credential = build_credential(mode, cfg, transport)?;
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn choose_auto(cfg: &AuthConfig) -> (AuthMode, String) {
    if env(ENV_CLIENT_SECRET).is_some() {
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
            let secret = env(ENV_CLIENT_SECRET).ok_or_else(|| {
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
            let c =
                ClientSecretCredential::new(&tenant, client, Secret::new(secret), Some(options))
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
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!(
                    "cannot read the federated token file {}: {e}; check the projected service account token volume",
                    self.path.display()
                ),
            )
        })?;
        Ok(text.trim().to_string())
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
