//! The secret source behind the filesystem.
//!
//! [`Vault`] is the only thing the cache knows about Key Vault. The Azure
//! implementation lives in [`azure`], which (with `auth`) is the only code that
//! names an Azure SDK type. [`memory`] is an in-process fake with call counters
//! and fault injection, used to test the cache and the filesystem without a
//! network.

pub mod azure;
#[cfg(test)]
pub mod memory;
pub mod metered;
pub mod objects;

use std::time::Duration;

use async_trait::async_trait;

use crate::secret::{Secret, SecretName, SecretSummary, VersionId};
pub use objects::{CertificateBundle, KeyBundle, VersionItem};

/// A source of secrets: one vault, one identity.
#[async_trait]
pub trait Vault: Send + Sync + 'static {
    /// The vault URL, for messages and metrics.
    fn url(&self) -> &str;

    /// Fetches a secret's latest version, or a given version.
    async fn get(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<Secret, VaultError>;

    /// Waits until this client may make its next fetch; callers start their
    /// own deadline after it. A node starting from a change notice paces its
    /// first reads here (crate::notice::start); every other client admits at
    /// once.
    async fn admit(&self) {}

    /// Lists every secret in the vault, following all pages. `pacer` is
    /// called before each page request: it counts the calls and may delay
    /// them to stay within a request budget.
    async fn list(&self, pacer: &dyn ListPacer) -> Result<Vec<SecretSummary>, VaultError>;

    /// Every version of a secret (or of the certificate it backs: they
    /// share version ids), following all pages.
    async fn versions(&self, name: &SecretName) -> Result<Vec<VersionItem>, VaultError> {
        let _ = name;
        Err(VaultError::BadResponse(
            "this source lists no versions".into(),
        ))
    }

    /// A certificate's public part, latest or a given version.
    async fn certificate(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<CertificateBundle, VaultError> {
        let _ = (name, version);
        Err(VaultError::BadResponse(
            "this source serves no certificates".into(),
        ))
    }

    /// A key's public JWK, latest or a given version.
    async fn key(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<KeyBundle, VaultError> {
        let _ = (name, version);
        Err(VaultError::BadResponse("this source serves no keys".into()))
    }

    /// The names of every key in the vault, following all pages.
    async fn list_keys(&self) -> Result<Vec<SecretName>, VaultError> {
        Err(VaultError::BadResponse("this source lists no keys".into()))
    }
}

/// Called before each list page request.
#[async_trait]
pub trait ListPacer: Send + Sync {
    async fn before_page(&self);
}

/// A pacer that only counts pages.
#[derive(Debug, Default)]
pub struct PageCount(pub std::sync::atomic::AtomicU32);

impl PageCount {
    pub fn get(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl ListPacer for PageCount {
    async fn before_page(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What can go wrong when talking to the vault.
///
/// Messages carry the cause as the service or the network stated it; they never
/// contain secret values (error bodies from Key Vault hold none). The caller
/// adds which vault and which secret.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("the secret does not exist (SecretNotFound)")]
    NotFound,
    #[error("the secret is disabled in the vault (SecretDisabled); enable it to read it")]
    Disabled,
    #[error("{}", forbidden_text(.operation, .detail))]
    Forbidden {
        operation: &'static str,
        detail: String,
    },
    #[error("could not authenticate: {0}")]
    Auth(Detail),
    /// A definite refusal of the identity itself, seen twice (the second
    /// time with a newly requested token): the token endpoint answered
    /// invalid_client, unauthorized_client, invalid_grant or an AADSTS code
    /// that means "not allowed", or the vault answered 401 to a newly issued
    /// token. Unlike an outage, nothing cached may be served after it.
    #[error("could not authenticate, and the identity may no longer obtain a token for the vault: {0}; check that the app registration or managed identity still exists and that its client secret or federated credential is valid")]
    IdentityRejected(String),
    #[error("the vault is throttling requests (429){}", retry_hint(.retry_after))]
    Throttled { retry_after: Option<Duration> },
    #[error("the vault did not answer in time ({0:?}); check network access to the vault, private endpoints and proxies")]
    Timeout(Duration),
    #[error("the vault is unreachable or failing: {0}")]
    Unavailable(Detail),
    /// Text here (as in `IdentityRejected`) is the server's or identity
    /// provider's own description, not advice of ours rendered early.
    #[error("the vault sent a response that could not be understood: {0}")]
    BadResponse(String),
}

/// The cause of an [`VaultError::Auth`] or [`VaultError::Unavailable`] as
/// stated by the SDK or the network, and what it points at. The kind is
/// decided where the error is created, so that advice is chosen by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    pub kind: Cause,
    pub text: String,
}

/// What a failure to reach or authenticate to the vault points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cause {
    #[default]
    Other,
    /// The vault's host name does not resolve.
    Dns,
    /// The vault's TLS certificate is not trusted.
    Tls,
    /// No connection could be made (refused, unreachable, reset).
    Connect,
    /// The Azure CLI is not installed.
    CliMissing,
    /// The Azure CLI is not signed in.
    CliSignIn,
    /// The Azure CLI's sign-in has expired; the text says so and what to do.
    CliSignInExpired,
}

impl Detail {
    pub fn new(kind: Cause, text: impl Into<String>) -> Detail {
        Detail {
            kind,
            text: text.into(),
        }
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<String> for Detail {
    fn from(text: String) -> Detail {
        Detail::new(Cause::Other, text)
    }
}

impl From<&str> for Detail {
    fn from(text: &str) -> Detail {
        Detail::new(Cause::Other, text)
    }
}

/// A 403's message, by Key Vault's inner error code (which `detail` starts
/// with when the vault sent one): the firewall, a missing role assignment
/// and a missing access policy each need a different fix.
fn forbidden_text(operation: &str, detail: &str) -> String {
    if let Some((kind, verb)) = operation.split_once('/') {
        return objects::forbidden_text(kind, verb, detail);
    }
    if detail.starts_with("ForbiddenByFirewall") {
        format!("the vault's firewall refuses this client's network address (403 {detail}); allow the node's outbound IP address or subnet in the vault's networking settings, or reach it through a private endpoint")
    } else if detail.starts_with("ForbiddenByRbac") {
        format!("the identity has no role assignment that allows it to {operation} secrets (403 {detail}); assign it the \"Key Vault Secrets User\" role on the vault (new assignments can take several minutes to take effect)")
    } else if detail.starts_with("ForbiddenByPolicy") || detail.starts_with("AccessDenied") {
        format!("the vault's access policies do not allow the identity to {operation} secrets (403 {detail}); add get and list secret permissions for it to the vault's access policies")
    } else {
        format!("the identity is not allowed to {operation} secrets (403 Forbidden: {detail}); grant it the \"Key Vault Secrets User\" role or a get/list access policy, and check the vault's firewall")
    }
}

/// The longest pause a vault (or anything on the path to it) can impose
/// through `Retry-After`. A larger, overflowing or hostile value is read as
/// this, so a server answer can neither stall a mount for hours nor overflow
/// a time calculation.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(300);

/// A delay asked for by the server, clamped to [`MAX_SERVER_DELAY`].
pub fn clamp_server_delay(d: Duration) -> Duration {
    d.min(MAX_SERVER_DELAY)
}

fn retry_hint(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!("; it asked to retry after {}s", d.as_secs_f32()),
        None => String::new(),
    }
}

impl VaultError {
    /// Transient errors are worth a retry and let a cached value keep serving.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VaultError::Throttled { .. } | VaultError::Timeout(_) | VaultError::Unavailable(_)
        )
    }

    /// The pause the vault asked for (429 `Retry-After`), clamped to
    /// [`MAX_SERVER_DELAY`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VaultError::Throttled { retry_after } => retry_after.map(clamp_server_delay),
            _ => None,
        }
    }

    /// Revocations: the vault said this secret may no longer be read (or
    /// the identity may no longer read anything).
    pub fn is_revocation(&self) -> bool {
        matches!(
            self,
            VaultError::NotFound
                | VaultError::Disabled
                | VaultError::Forbidden { .. }
                | VaultError::IdentityRejected(_)
        )
    }

    /// The identity itself was refused: every cached value must go.
    pub fn is_identity_loss(&self) -> bool {
        matches!(self, VaultError::IdentityRejected(_))
    }
}
