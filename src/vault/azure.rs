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
use azure_core::http::headers::HeaderName;
use azure_core::http::{
    AsyncRawResponse, ClientMethodOptions, Context, HttpClient, Request, Transport,
};
use azure_security_keyvault_secrets::models::{
    SecretClientGetSecretOptions, SecretClientListSecretPropertiesOptions,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::{Cause, Detail, ListPacer, Vault, VaultError};
use super::{CertificateBundle, KeyBundle, VersionItem};
use crate::auth::{
    classify_token_error, client_options, ForeignScope, FreshToken, TokenFailure, KEY_VAULT_SCOPES,
};
use crate::text::one_line;

#[path = "azure_objects.rs"]
mod objects;
use crate::secret::{
    unescape_json_string, Secret, SecretBytes, SecretName, SecretProps, SecretSummary, VersionId,
};

/// Largest response body read from the vault or the token endpoint. A Key
/// Vault value is at most 25 KB (about 150 KB with every byte JSON-escaped)
/// and a list page holds 25 items; anything larger is refused before it is
/// buffered, so a hostile or broken answer cannot make akvfs allocate (and
/// lock) memory without bound.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How long an SDK client (and the access token its pipeline holds) is used
/// before the next listing starts over with a newly requested token. An
/// issued token stays valid at the vault for its whole lifetime (up to 24 h
/// for a managed identity), so without this an identity revoked in Entra ID
/// would only be noticed when its token expired; with it, within this period
/// plus one refresh interval, at the cost of one token request and one
/// unauthenticated challenge per period.
pub const IDENTITY_RECHECK: Duration = Duration::from_secs(600);

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

/// A response body was larger than [`MAX_RESPONSE_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("the answer is larger than {limit} bytes (Key Vault values are at most 25 KB)")]
pub struct BodyTooLarge {
    pub limit: usize,
}

/// The reqwest client with every response body read here, up to a limit,
/// into one buffer that is wiped when the SDK drops it.
#[derive(Debug)]
struct CappedClient {
    inner: reqwest::Client,
    limit: usize,
}

#[async_trait]
impl HttpClient for CappedClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let response = self.inner.execute_request(request).await?;
        let too_large =
            || azure_core::Error::new(ErrorKind::Io, BodyTooLarge { limit: self.limit });
        let declared = response
            .headers()
            .get_optional_str(&HeaderName::from_static("content-length"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limit as u64) {
            return Err(too_large());
        }
        let (status, headers, mut body) = response.deconstruct();
        // Sized from Content-Length when given, so the common case never
        // reallocates; growth copies into a new zeroizing buffer and wipes
        // the old one.
        let mut buf = Zeroizing::new(Vec::with_capacity(declared.unwrap_or(0) as usize));
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            let needed = buf.len() + chunk.len();
            if needed > self.limit {
                return Err(too_large());
            }
            if needed > buf.capacity() {
                let mut bigger = Zeroizing::new(Vec::with_capacity(
                    needed.max(buf.capacity() * 2).min(self.limit),
                ));
                bigger.extend_from_slice(&buf);
                buf = bigger;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(AsyncRawResponse::from_bytes(
            status,
            headers,
            azure_core::Bytes::from_owner(WipedOnDrop(buf)),
        ))
    }
}

/// Owner of a response buffer handed to the SDK as `Bytes`: wiped when the
/// last reference is dropped.
struct WipedOnDrop(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for WipedOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
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
    Ok(Transport::new(Arc::new(CappedClient {
        inner: client,
        limit: MAX_RESPONSE_BYTES,
    })))
}

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
    ) -> Result<AzureVault, String> {
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
    ) -> Result<SecretClient, String> {
        let options = SecretClientOptions {
            client_options: client_options(transport),
            verify_challenge_resource: Some(verify_challenge_resource),
            ..Default::default()
        };
        SecretClient::new(url, Arc::clone(credential), Some(options))
            .map_err(|e| format!("cannot create a Key Vault client for {url}: {e}"))
    }

    fn client(&self) -> Arc<SecretClient> {
        Arc::clone(&self.client.lock().unwrap_or_else(|e| e.into_inner()).0)
    }

    fn client_age(&self) -> Duration {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .elapsed()
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
            Ok(c) => {
                *self.client.lock().unwrap_or_else(|e| e.into_inner()) =
                    (Arc::new(c), std::time::Instant::now())
            }
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
        let parsed = parse_secret_bundle(&body);
        // The body holds the value, JSON-escaped. Wipe it if nothing else
        // holds it; the SDK's own intermediate copy is described in
        // docs/SECURITY.md.
        if let Ok(mut owned) = body.try_into_mut() {
            owned[..].zeroize();
        }
        let bundle = parsed?;
        // Key Vault matches names case-insensitively; file names are exact, so
        // `DB-PASSWORD` must not open `db-password`.
        let served_name = bundle
            .id
            .split("/secrets/")
            .nth(1)
            .and_then(|r| r.split('/').next());
        if served_name != Some(name.as_str()) {
            return Err(VaultError::NotFound);
        }
        let version = bundle
            .id
            .rsplit('/')
            .next()
            .filter(|v| !v.is_empty())
            .map(VersionId::new)
            .ok_or_else(|| VaultError::BadResponse("secret id carries no version".into()))?;
        Ok(Secret {
            props: SecretProps {
                name: name.clone(),
                version,
                id: bundle.id,
                content_type: bundle.content_type,
                enabled: bundle.enabled,
                created: bundle.created,
                updated: bundle.updated,
                expires: bundle.expires,
                not_before: bundle.not_before,
                tags: bundle.tags,
                served_at,
            },
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

/// A SecretBundle as akvfs uses it, the value in a zeroizing buffer.
pub struct ParsedBundle {
    pub value: Zeroizing<Vec<u8>>,
    pub id: String,
    pub content_type: Option<String>,
    pub enabled: bool,
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub expires: Option<i64>,
    pub not_before: Option<i64>,
    pub tags: BTreeMap<String, String>,
}

impl std::fmt::Debug for ParsedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedBundle")
            .field(
                "value",
                &format_args!("[REDACTED; {} bytes]", self.value.len()),
            )
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Parses a GET secret body. The value is taken as raw JSON text borrowed
/// from `body` and unescaped straight into a zeroizing buffer: serde_json
/// would unescape it through its scratch buffer and free that unwiped.
/// Errors name the kind of failure only, never input text.
pub fn parse_secret_bundle(body: &[u8]) -> Result<ParsedBundle, VaultError> {
    let bundle: Bundle<'_> = serde_json::from_slice(body).map_err(|e| {
        VaultError::BadResponse(format!(
            "secret body is not a SecretBundle: {}",
            e.classify_str()
        ))
    })?;
    let raw = bundle
        .value
        .ok_or_else(|| VaultError::BadResponse("secret body has no value".into()))?;
    let value = unescape_json_string(raw.get())
        .ok_or_else(|| VaultError::BadResponse("secret value is not a JSON string".into()))?;
    Ok(ParsedBundle {
        value,
        id: bundle.id.unwrap_or_default(),
        content_type: bundle.content_type,
        enabled: bundle.attributes.enabled.unwrap_or(true),
        created: bundle.attributes.created,
        updated: bundle.attributes.updated,
        expires: bundle.attributes.exp,
        not_before: bundle.attributes.nbf,
        tags: bundle.tags.unwrap_or_default(),
    })
}

/// The SecretBundle fields we use. Parsed here rather than through the SDK
/// model so the value lands straight in a zeroizing buffer.
#[derive(Deserialize)]
struct Bundle<'a> {
    #[serde(borrow)]
    value: Option<&'a serde_json::value::RawValue>,
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

impl AzureVault {
    /// Maps an SDK error to a [`VaultError`], and forgets a refused
    /// challenge scope. `operation` is the permission the call needed, for
    /// the 403 message.
    fn map_error(&self, err: azure_core::Error, operation: &'static str) -> VaultError {
        if let Some(refused) = find_cause::<ForeignScope>(&err) {
            self.reset_client();
            return VaultError::Auth(Detail::from(format!(
                "the vault host {} asked for an access token for {}, which is not a Key Vault scope; no token was sent (akvfs requests tokens only for {}); check the vault URL, its DNS name and any proxy on the way",
                self.host,
                refused.scope,
                KEY_VAULT_SCOPES.join(", ")
            )));
        }
        map_error(err, operation)
    }
}

/// The first cause of type `T` in an error's chain.
fn find_cause<T: std::error::Error + 'static>(err: &azure_core::Error) -> Option<&T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = e.downcast_ref::<azure_core::Error>() {
            if let Some(t) = inner.downcast_ref::<T>() {
                return Some(t);
            }
        }
        cur = e.source();
    }
    None
}

/// Maps an SDK error to a [`VaultError`]. `operation` is the permission the
/// call needed, for the 403 message.
fn map_error(err: azure_core::Error, operation: &'static str) -> VaultError {
    if let Some(big) = find_cause::<BodyTooLarge>(&err) {
        return VaultError::BadResponse(big.to_string());
    }
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
                // After the SDK's own retry with a new challenge; the
                // caller retries once more with a newly issued token
                // before it takes this as final.
                401 => VaultError::IdentityRejected(format!(
                    "the vault refused a newly issued access token (401 {code}): {message}"
                )),
                429 => VaultError::Throttled {
                    retry_after: retry_after(raw_response.as_deref()),
                },
                408 | 500..=599 => {
                    VaultError::Unavailable(format!("HTTP {status} {code} {message}").into())
                }
                _ => VaultError::BadResponse(format!("HTTP {status} {code}: {message}")),
            }
        }
        ErrorKind::Credential => {
            // An expired Azure CLI sign-in gets its remedy whatever its class.
            let hint = |why: String| {
                let kind = cause_of(None, &why);
                if kind == Cause::CliSignInExpired {
                    Detail::new(kind, format!("{why}{}", crate::auth::CLI_SIGN_IN_EXPIRED))
                } else {
                    Detail::new(kind, why)
                }
            };
            match classify_token_error(&err) {
                TokenFailure::Refused(why) => VaultError::IdentityRejected(hint(why).text),
                TokenFailure::Transient(why) => VaultError::Unavailable(hint(why)),
                TokenFailure::Other(why) => VaultError::Auth(hint(why)),
            }
        }
        ErrorKind::Connection | ErrorKind::Io => {
            let text = one_line(&err);
            VaultError::Unavailable(Detail::new(cause_of(Some(&err), &text), text))
        }
        _ => {
            let text = one_line(&err);
            if let Some(scope) =
                challenge_scope(&text).filter(|s| !crate::auth::is_key_vault_scope(s))
            {
                VaultError::Auth(Detail::from(format!(
                    "the vault's authentication challenge names {scope}, which is not a Key Vault scope; no token was sent; check the vault URL, its DNS name and any proxy on the way"
                )))
            } else if text.contains("challenge") || text.contains("resource") {
                VaultError::Auth(Detail::from(format!(
                    "{text}; for a private endpoint or the emulator pass --disable-challenge-resource-verification"
                )))
            } else {
                VaultError::Unavailable(Detail::new(cause_of(Some(&err), &text), text))
            }
        }
    }
}

/// What a failure to reach or authenticate to the vault points at: from
/// the error's chain where it carries a typed I/O error, else from the text
/// the SDK, the resolver, the TLS library or the Azure CLI gave it.
fn cause_of(err: Option<&azure_core::Error>, text: &str) -> Cause {
    let lower = text.to_lowercase();
    if crate::auth::cli_sign_in_expired(&lower) {
        return Cause::CliSignInExpired;
    }
    if lower.contains("az not found") {
        return Cause::CliMissing;
    }
    if lower.contains("az login") {
        return Cause::CliSignIn;
    }
    if lower.contains("dns") || lower.contains("resolve") || lower.contains("name or service") {
        return Cause::Dns;
    }
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("unknownissuer") {
        return Cause::Tls;
    }
    let refused = err.and_then(find_cause::<std::io::Error>).is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
        )
    });
    if refused || lower.contains("connection refused") || lower.contains("connect") {
        return Cause::Connect;
    }
    Cause::Other
}

/// The scope quoted in the SDK's challenge-verification error.
fn challenge_scope(text: &str) -> Option<&str> {
    let rest = text.split("challenge resource '").nth(1)?;
    rest.split('\'').next()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_challenge_for_another_resource_is_named_not_excused() {
        let text = "challenge resource 'https://management.azure.com/.default' doesn't match the requested domain 'myvault.vault.azure.net'. Set verify_challenge_resource";
        assert_eq!(
            challenge_scope(text),
            Some("https://management.azure.com/.default")
        );
        let err = map_error(
            azure_core::Error::with_message(ErrorKind::Other, text),
            "get",
        );
        let shown = err.to_string();
        assert!(shown.contains("not a Key Vault scope"), "{shown}");
        assert!(!shown.contains("--disable-challenge"), "{shown}");
        // A Key Vault scope on a custom host name is the private-endpoint case.
        let text = "challenge resource 'https://vault.azure.net/.default' doesn't match the requested domain 'kv.corp.example'";
        let shown = map_error(
            azure_core::Error::with_message(ErrorKind::Other, text),
            "get",
        )
        .to_string();
        assert!(
            shown.contains("--disable-challenge-resource-verification"),
            "{shown}"
        );
    }

    #[test]
    fn bodies_over_the_limit_are_bad_responses() {
        let err = azure_core::Error::new(ErrorKind::Io, BodyTooLarge { limit: 10 });
        assert!(matches!(map_error(err, "get"), VaultError::BadResponse(_)));
    }
}
