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

mod arc;
mod claims;
mod error;
mod imds;
mod scope;
mod workload;

pub use arc::*;
pub use claims::*;
pub use error::{AuthError, Required};
pub use imds::*;
pub use scope::*;
pub use workload::*;

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
    AuthConfig, AuthMode, ENV_CLIENT_SECRET, ENV_FEDERATED_TOKEN_FILE, ENV_IDENTITY_ENDPOINT,
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
pub fn build_identity(cfg: &AuthConfig, transport: &Transport) -> Result<Identity, AuthError> {
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
) -> Result<Arc<dyn TokenCredential>, AuthError> {
    let sdk_err = |what: &'static str, source| AuthError::Credential {
        what,
        source: Box::new(source),
    };
    match mode {
        AuthMode::ClientSecret => {
            let secret = client_secret().ok_or(AuthError::NoClientSecret)?;
            let tenant = require(&cfg.tenant_id, "client-secret", Required::TenantId)?;
            let client = require(&cfg.client_id, "client-secret", Required::ClientId)?;
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
            let file = cfg
                .federated_token_file
                .clone()
                .ok_or(AuthError::NoFederatedTokenFile)?;
            let tenant = require(&cfg.tenant_id, "workload-identity", Required::TenantId)?;
            let client = require(&cfg.client_id, "workload-identity", Required::ClientId)?;
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

fn require(v: &Option<String>, mode: &'static str, setting: Required) -> Result<String, AuthError> {
    v.clone().ok_or(AuthError::Missing { mode, setting })
}
