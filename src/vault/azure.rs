//! [`Vault`] over the official Azure Key Vault secrets SDK.
//!
//! This file and `auth.rs` are the only places that name Azure SDK types.
//! The SDK's own retry policy is switched off: retries, backoff and timeouts
//! are decided by the cache and refresher, which know whether a stale value
//! can be served meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_security_keyvault_secrets::models::{
    SecretClientGetSecretOptions, SecretClientListSecretPropertiesOptions,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::TryStreamExt;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{ListPacer, Vault, VaultError};
use crate::error::one_line;
use crate::secret::{Secret, SecretBytes, SecretName, SecretProps, SecretSummary, VersionId};

/// How to reach the vault over HTTPS.
#[derive(Clone, Debug, Default)]
pub struct TransportSettings {
    /// Extra trusted root certificates, PEM (private CAs, TLS-inspecting proxies).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Connect timeout for every connection.
    pub connect_timeout: Option<Duration>,
    /// Close each connection after its response instead of keeping it idle
    /// for reuse. An idle connection keeps its TLS and HTTP read buffers,
    /// which still hold the last response's plaintext (a secret value);
    /// closing frees them, and freed memory is wiped when only the secret
    /// region is locked (see `crate::locked`).
    pub no_idle_connections: bool,
}

/// Builds the HTTP transport shared by the credential and the secret client,
/// so both trust the same roots.
pub fn build_transport(settings: &TransportSettings) -> Result<Transport, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = &settings.extra_roots_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("cannot parse the CA file as PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("the CA file holds no PEM certificate".into());
        }
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(t) = settings.connect_timeout {
        builder = builder.connect_timeout(t);
    }
    if settings.no_idle_connections {
        builder = builder.pool_max_idle_per_host(0);
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot set up HTTPS: {e}"))?;
    Ok(Transport::new(Arc::new(client)))
}

/// Client options with the SDK retry policy off and our transport in place.
pub fn client_options(transport: &Transport) -> ClientOptions {
    ClientOptions {
        transport: Some(transport.clone()),
        retry: RetryOptions::none(),
        ..Default::default()
    }
}

/// A vault reached through the Azure SDK.
pub struct AzureVault {
    url: String,
    client: SecretClient,
}

impl AzureVault {
    pub fn new(
        url: &str,
        credential: Arc<dyn TokenCredential>,
        transport: &Transport,
        verify_challenge_resource: bool,
    ) -> Result<AzureVault, String> {
        let options = SecretClientOptions {
            client_options: client_options(transport),
            verify_challenge_resource: Some(verify_challenge_resource),
            ..Default::default()
        };
        let client = SecretClient::new(url, credential, Some(options))
            .map_err(|e| format!("cannot create a Key Vault client for {url}: {e}"))?;
        Ok(AzureVault {
            url: url.trim_end_matches('/').to_string(),
            client,
        })
    }
}

/// The SecretBundle fields we use. Parsed here rather than through the SDK
/// model so the value lands straight in a zeroizing buffer.
#[derive(Deserialize)]
struct Bundle {
    value: Option<Zeroizing<String>>,
    id: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct Attributes {
    enabled: Option<bool>,
    created: Option<i64>,
    updated: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
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
        let options = SecretClientGetSecretOptions {
            secret_version: version.map(|v| v.as_str().to_string()),
            ..Default::default()
        };
        let response = self
            .client
            .get_secret(name.as_str(), Some(options))
            .await
            .map_err(|e| map_error(e, "get"))?;
        let body = response.into_body();
        let bundle: Bundle = serde_json::from_slice(&body).map_err(|e| {
            VaultError::BadResponse(format!(
                "secret body is not a SecretBundle: {}",
                e.classify_str()
            ))
        })?;
        let id = bundle.id.unwrap_or_default();
        // Key Vault matches names case-insensitively; file names are exact, so
        // `DB-PASSWORD` must not open `db-password`.
        let served_name = id
            .split("/secrets/")
            .nth(1)
            .and_then(|r| r.split('/').next());
        if served_name != Some(name.as_str()) {
            return Err(VaultError::NotFound);
        }
        let version = id
            .rsplit('/')
            .next()
            .filter(|v| !v.is_empty())
            .map(VersionId::new)
            .ok_or_else(|| VaultError::BadResponse("secret id carries no version".into()))?;
        let mut value = bundle
            .value
            .ok_or_else(|| VaultError::BadResponse("secret body has no value".into()))?;
        let bytes = Zeroizing::new(std::mem::take(&mut *value).into_bytes());
        Ok(Secret {
            props: SecretProps {
                name: name.clone(),
                version,
                id,
                content_type: bundle.content_type,
                enabled: bundle.attributes.enabled.unwrap_or(true),
                created: bundle.attributes.created,
                updated: bundle.attributes.updated,
                expires: bundle.attributes.exp,
                not_before: bundle.attributes.nbf,
                tags: bundle.tags.unwrap_or_default(),
            },
            value: SecretBytes::new(bytes),
        })
    }

    async fn list(&self, pacer: &dyn ListPacer) -> Result<Vec<SecretSummary>, VaultError> {
        let options = SecretClientListSecretPropertiesOptions {
            maxresults: Some(25),
            ..Default::default()
        };
        let mut stream = self
            .client
            .list_secret_properties(Some(options))
            .map_err(|e| map_error(e, "list"))?
            .into_pages();
        let mut out = Vec::new();
        let mut more = true;
        while more {
            // The pager requests a page only when polled, so pacing here
            // paces the calls; it is polled again only if a nextLink says
            // there is another page.
            pacer.before_page().await;
            let Some(page) = stream.try_next().await.map_err(|e| map_error(e, "list"))? else {
                break;
            };
            let page = page.into_model().map_err(|e| map_error(e, "list"))?;
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
                    managed: item.managed.unwrap_or(false),
                });
            }
        }
        Ok(out)
    }
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    // serde_json's message can quote input; name only the kind of failure.
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unexpected JSON shape",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// Maps an SDK error to a [`VaultError`]. `operation` is the permission the
/// call needed, for the 403 message.
fn map_error(err: azure_core::Error, operation: &'static str) -> VaultError {
    match err.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let status = u16::from(*status);
            let code = error_code.clone().unwrap_or_default();
            let body = raw_response
                .as_ref()
                .map(|r| String::from_utf8_lossy(r.body()).into_owned())
                .unwrap_or_default();
            let inner = serde_json::from_str::<serde_json::Value>(&body).ok();
            let message = inner
                .as_ref()
                .and_then(|v| v.pointer("/error/message"))
                .and_then(|m| m.as_str())
                .unwrap_or("")
                // RBAC denials span several lines; logs and errors are one line.
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let inner_code = inner
                .as_ref()
                .and_then(|v| v.pointer("/error/innererror/code"))
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string();
            match status {
                404 => VaultError::NotFound,
                403 if inner_code == "SecretDisabled" || code == "SecretDisabled" => {
                    VaultError::Disabled
                }
                403 => VaultError::Forbidden {
                    operation,
                    detail: match (inner_code.is_empty(), message.is_empty()) {
                        (true, true) => code,
                        (true, false) => message,
                        (false, true) => inner_code,
                        (false, false) => format!("{inner_code}: {message}"),
                    },
                },
                401 => VaultError::Auth(format!(
                    "the vault rejected the access token (401 {code}): {message}"
                )),
                429 => VaultError::Throttled {
                    retry_after: retry_after(raw_response.as_deref()),
                },
                408 | 500..=599 => {
                    VaultError::Unavailable(format!("HTTP {status} {code} {message}"))
                }
                _ => VaultError::BadResponse(format!("HTTP {status} {code}: {message}")),
            }
        }
        ErrorKind::Credential => {
            let text = one_line(&err);
            if crate::auth::cli_sign_in_expired(&text.to_lowercase()) {
                VaultError::Auth(format!("{text}{}", crate::auth::CLI_SIGN_IN_EXPIRED))
            } else {
                VaultError::Auth(text)
            }
        }
        ErrorKind::Connection | ErrorKind::Io => VaultError::Unavailable(one_line(&err)),
        _ => {
            let text = one_line(&err);
            if text.contains("challenge") || text.contains("resource") {
                VaultError::Auth(format!(
                    "{text}; for a private endpoint or the emulator pass --disable-challenge-resource-verification"
                ))
            } else {
                VaultError::Unavailable(text)
            }
        }
    }
}

fn retry_after(raw: Option<&azure_core::http::RawResponse>) -> Option<Duration> {
    let headers = raw?.headers();
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(v) =
            headers.get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
        {
            if let Ok(ms) = v.trim().parse::<u64>() {
                return Some(Duration::from_millis(ms));
            }
        }
    }
    headers
        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
            "retry-after",
        ))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
