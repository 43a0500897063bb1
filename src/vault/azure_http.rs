//! The HTTPS transport the credential and the vault clients share: trusted roots, timeouts, and response bodies read into wiped buffers up to a limit.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::headers::HeaderName;
use azure_core::http::{AsyncRawResponse, HttpClient, Request, Transport};
use futures::StreamExt;
use zeroize::Zeroizing;

/// Largest response body read from the vault or the token endpoint. A Key
/// Vault value is at most 25 KB (about 150 KB with every byte JSON-escaped)
/// and a list page holds 25 items; anything larger is refused before it is
/// buffered, so a hostile or broken answer cannot make akvfs allocate (and
/// lock) memory without bound.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

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
pub fn build_transport(settings: &TransportSettings) -> Result<Transport, SetupError> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = &settings.extra_roots_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(SetupError::CaPem)?;
        if certs.is_empty() {
            return Err(SetupError::CaEmpty);
        }
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(t) = settings.connect_timeout {
        builder = builder.connect_timeout(t);
    }
    if settings.no_idle_connections {
        builder = builder.pool_max_idle_per_host(0);
    }
    let client = builder.build().map_err(SetupError::Https)?;
    Ok(Transport::new(Arc::new(CappedClient {
        inner: client,
        limit: MAX_RESPONSE_BYTES,
    })))
}

/// Why the HTTPS transport or a vault client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot parse the CA file as PEM certificates: {0}; check that it holds certificates between -----BEGIN CERTIFICATE----- lines")]
    CaPem(#[source] reqwest::Error),
    #[error("the CA file holds no PEM certificate; check that it holds certificates between -----BEGIN CERTIFICATE----- lines")]
    CaEmpty,
    #[error("cannot set up HTTPS: {0}; check the system's trust store (ca-certificates)")]
    Https(#[source] reqwest::Error),
    #[error("cannot create a Key Vault client for {url}: {source}; check the vault URL (https://NAME.vault.azure.net/)")]
    Client {
        url: String,
        #[source]
        source: Box<azure_core::Error>,
    },
    /// The certificates or keys client (`kind`) of a vault.
    #[error("cannot create a Key Vault {kind} client for {url}: {source}")]
    ObjectClient {
        kind: &'static str,
        url: String,
        #[source]
        source: Box<azure_core::Error>,
    },
}
