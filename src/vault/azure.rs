//! [`Vault`] over the official Azure Key Vault secrets SDK.
//!
//! The `azure*.rs` files and `auth/` are the only places that name Azure SDK
//! types. Here: the client's set-up, reads and listing; the transport in
//! `azure_http.rs`, the secret body's parsing in `azure_bundle.rs`, error
//! mapping in `azure_errors.rs`, certificates and keys in `azure_objects.rs`.
//! The SDK's own retry policy is switched off: retries, backoff and timeouts
//! are decided by the cache and refresher, which know whether a stale value
//! can be served meanwhile.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::headers::HeaderName;
use azure_core::http::{ClientMethodOptions, Context};
use azure_security_keyvault_secrets::models::{
    SecretClientGetSecretOptions, SecretClientListSecretPropertiesOptions,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::TryStreamExt;
use zeroize::Zeroize;

use super::{CertificateBundle, KeyBundle, VersionItem};
use super::{ListPacer, Vault, VaultError};
use crate::auth::{client_options, FreshToken};
use crate::secret::{Secret, SecretBytes, SecretName, SecretSummary, VersionId};
use crate::sync::lock;

#[path = "azure_bundle.rs"]
mod bundle;
#[path = "azure_errors.rs"]
mod errors;
#[path = "azure_http.rs"]
mod http;
#[path = "azure_objects.rs"]
mod objects;

/// The HTTPS transport of every client, built once by [`build_transport`].
pub use azure_core::http::Transport;
pub use bundle::parse_secret_bundle;
pub use http::{build_transport, SetupError, TransportSettings};

/// How long an SDK client (and the access token its pipeline holds) is used
/// before the next listing starts over with a newly requested token. An
/// issued token stays valid at the vault for its whole lifetime (up to 24 h
/// for a managed identity), so without this an identity revoked in Entra ID
/// would only be noticed when its token expired; with it, within this period
/// plus one refresh interval, at the cost of one token request and one
/// unauthenticated challenge per period.
pub const IDENTITY_RECHECK: Duration = Duration::from_secs(600);

/// A vault reached through the Azure SDK.
pub struct AzureVault {
    url: String,
    host: String,
    credential: Arc<dyn TokenCredential>,
    transport: Transport,
    verify_challenge_resource: bool,
    /// Replaced when a challenge named a scope akvfs refuses: the SDK keeps
    /// the scope of the last challenge, so a fresh client starts over with
    /// an unauthenticated request instead of repeating the refused scope.
    client: std::sync::Mutex<(Arc<SecretClient>, std::time::Instant)>,
    /// Certificate and key clients, made on first use.
    objects: objects::ObjectClients,
}

impl AzureVault {
    pub fn new(
        url: &str,
        credential: Arc<dyn TokenCredential>,
        transport: &Transport,
        verify_challenge_resource: bool,
    ) -> Result<AzureVault, SetupError> {
        let client = Self::build_client(url, &credential, transport, verify_challenge_resource)?;
        let trimmed = url.trim_end_matches('/').to_string();
        let host = azure_core::http::Url::parse(&trimmed)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| trimmed.clone());
        Ok(AzureVault {
            url: trimmed,
            host,
            credential,
            transport: transport.clone(),
            verify_challenge_resource,
            client: std::sync::Mutex::new((Arc::new(client), std::time::Instant::now())),
            objects: Default::default(),
        })
    }

    fn build_client(
        url: &str,
        credential: &Arc<dyn TokenCredential>,
        transport: &Transport,
        verify_challenge_resource: bool,
    ) -> Result<SecretClient, SetupError> {
        let options = SecretClientOptions {
            client_options: client_options(transport),
            verify_challenge_resource: Some(verify_challenge_resource),
            ..Default::default()
        };
        SecretClient::new(url, Arc::clone(credential), Some(options)).map_err(|source| {
            SetupError::Client {
                url: url.to_string(),
                source: Box::new(source),
            }
        })
    }

    fn client(&self) -> Arc<SecretClient> {
        Arc::clone(&lock(&self.client).0)
    }

    fn client_age(&self) -> Duration {
        lock(&self.client).1.elapsed()
    }

    /// A new SDK client: forgets the scope a refused challenge left in it,
    /// and the access token its pipeline holds (the SDK keeps a token in
    /// its pipeline besides the credential's cache).
    fn reset_client(&self) {
        match Self::build_client(
            &self.url,
            &self.credential,
            &self.transport,
            self.verify_challenge_resource,
        ) {
            Ok(c) => *lock(&self.client) = (Arc::new(c), std::time::Instant::now()),
            Err(e) => tracing::warn!(vault = %self.url, "{e}"),
        }
    }

    /// Request context: with `fresh`, the credential drops its cached token
    /// and asks for a new one.
    fn context(fresh: bool) -> ClientMethodOptions<'static> {
        let context = if fresh {
            Context::new().with_value(FreshToken)
        } else {
            Context::new()
        };
        ClientMethodOptions { context }
    }

    async fn get_once(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
        fresh: bool,
    ) -> Result<Secret, VaultError> {
        let options = SecretClientGetSecretOptions {
            secret_version: version.map(|v| v.as_str().to_string()),
            method_options: Self::context(fresh),
            ..Default::default()
        };
        let response = self
            .client()
            .get_secret(name.as_str(), Some(options))
            .await
            .map_err(|e| self.map_error(e, "get"))?;
        let served_at = response
            .headers()
            .get_optional_str(&HeaderName::from_static("date"))
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let body: azure_core::Bytes = response.into_body().into();
        let parsed = parse_secret_bundle(&body, name);
        // The body holds the value, JSON-escaped. Wipe it if nothing else
        // holds it; the SDK's own intermediate copy is described in
        // docs/SECURITY.md.
        if let Ok(mut owned) = body.try_into_mut() {
            owned[..].zeroize();
        }
        let mut bundle = parsed?;
        bundle.props.served_at = served_at;
        Ok(Secret {
            props: bundle.props,
            value: SecretBytes::new(bundle.value),
        })
    }

    async fn list_once(
        &self,
        pacer: &dyn ListPacer,
        fresh: bool,
    ) -> Result<Vec<SecretSummary>, VaultError> {
        let options = SecretClientListSecretPropertiesOptions {
            maxresults: Some(25),
            method_options: azure_core::http::pager::PagerOptions {
                context: Self::context(fresh).context,
                ..Default::default()
            },
        };
        let mut stream = self
            .client()
            .list_secret_properties(Some(options))
            .map_err(|e| self.map_error(e, "list"))?
            .into_pages();
        let mut out = Vec::new();
        let mut more = true;
        while more {
            // The pager requests a page only when polled, so pacing here
            // paces the calls; it is polled again only if a nextLink says
            // there is another page.
            pacer.before_page().await;
            let Some(page) = stream
                .try_next()
                .await
                .map_err(|e| self.map_error(e, "list"))?
            else {
                break;
            };
            let page = page.into_model().map_err(|e| self.map_error(e, "list"))?;
            more = page.next_link.as_deref().is_some_and(|l| !l.is_empty());
            for item in page.value {
                let Some(id) = item.id else { continue };
                let Some(name) = id.rsplit('/').next().and_then(SecretName::parse) else {
                    continue;
                };
                let attrs = item.attributes.unwrap_or_default();
                out.push(SecretSummary {
                    name,
                    enabled: attrs.enabled.unwrap_or(true),
                    content_type: item.content_type,
                    updated: attrs.updated.map(|t| t.unix_timestamp()),
                    expires: attrs.expires.map(|t| t.unix_timestamp()),
                    managed: item.managed.unwrap_or(false),
                });
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Vault for AzureVault {
    fn url(&self) -> &str {
        &self.url
    }

    async fn get(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<Secret, VaultError> {
        match self.get_once(name, version, false).await {
            // One refusal is not proof: ask again with a newly issued token.
            Err(VaultError::IdentityRejected(_)) => {
                self.reset_client();
                self.get_once(name, version, true).await
            }
            other => other,
        }
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<VersionItem>, VaultError> {
        match self.versions_once(name, false).await {
            Err(VaultError::IdentityRejected(_)) => {
                self.reset_client();
                self.versions_once(name, true).await
            }
            other => other,
        }
    }

    async fn certificate(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<CertificateBundle, VaultError> {
        match self.certificate_once(name, version, false).await {
            Err(VaultError::IdentityRejected(_)) => {
                self.certificate_once(name, version, true).await
            }
            other => other,
        }
    }

    async fn key(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<KeyBundle, VaultError> {
        match self.key_once(name, version, false).await {
            Err(VaultError::IdentityRejected(_)) => self.key_once(name, version, true).await,
            other => other,
        }
    }

    async fn list_keys(&self) -> Result<Vec<SecretName>, VaultError> {
        match self.list_keys_once(false).await {
            Err(VaultError::IdentityRejected(_)) => self.list_keys_once(true).await,
            other => other,
        }
    }

    async fn list(&self, pacer: &dyn ListPacer) -> Result<Vec<SecretSummary>, VaultError> {
        // The refresher lists every interval: that is where a token older
        // than IDENTITY_RECHECK is replaced, so identity loss is seen.
        let recheck = self.client_age() >= IDENTITY_RECHECK;
        if recheck {
            self.reset_client();
        }
        match self.list_once(pacer, recheck).await {
            Err(VaultError::IdentityRejected(_)) => {
                self.reset_client();
                self.list_once(pacer, true).await
            }
            other => other,
        }
    }
}
