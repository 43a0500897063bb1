//! Helpers for the tests that drive the emulator with the official Rust SDK or plain HTTPS.

#![allow(dead_code)]

use akvfs_emulator::{Emulator, EmulatorConfig};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_core::time::Duration as SdkDuration;
use azure_identity::{
    ClientAssertionCredentialOptions, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use std::sync::Arc;

/// Host name tests resolve to 127.0.0.1 so the SDK's challenge-resource check can stay on.
pub const VAULT_HOST: &str = "myvault.vault.azure.net";

/// An emulator with the default configuration.
pub async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts")
}

/// An emulator whose vault URL uses [`VAULT_HOST`].
pub async fn emulator_with_vault_host() -> Emulator {
    Emulator::start(EmulatorConfig {
        vault_host: Some(VAULT_HOST.to_string()),
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

/// A reqwest client that trusts only the emulator's CA and resolves [`VAULT_HOST`] to it.
pub fn http_client(emu: &Emulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("the CA is PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(VAULT_HOST, emu.info().address)
        .build()
        .expect("reqwest client builds")
}

/// The SDK transport over [`http_client`].
pub fn transport(emu: &Emulator) -> Transport {
    Transport::new(Arc::new(http_client(emu)))
}

/// Retries that keep fault tests fast: `retries` attempts 10 ms apart at first.
pub fn quick_retries(retries: u32) -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: SdkDuration::milliseconds(10),
        max_retries: retries,
        max_total_elapsed: SdkDuration::seconds(10),
        max_delay: SdkDuration::milliseconds(100),
    })
}

/// Client options with the emulator transport, the emulator as authority host, and `retry`.
pub fn client_options(emu: &Emulator, retry: RetryOptions) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = emu.info().authority_host.clone();
    ClientOptions {
        transport: Some(transport(emu)),
        retry,
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    }
}

/// A workload identity credential reading the emulator's federated token file; the authority
/// host comes from the client options, not the process environment.
pub fn workload_credential(emu: &Emulator) -> Arc<WorkloadIdentityCredential> {
    let info = emu.info();
    WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions {
            client_options: client_options(emu, RetryOptions::none()),
        },
        client_id: Some(info.client_id.clone()),
        tenant_id: Some(info.tenant_id.clone()),
        token_file_path: Some(info.federated_token_file.clone()),
    }))
    .expect("credential builds")
}

/// A secret client for the emulator's vault URL with `retry`; challenge-resource verification is
/// on only when the vault URL uses a `*.vault.azure.net` name.
pub fn secret_client(
    emu: &Emulator,
    credential: Arc<dyn azure_core::credentials::TokenCredential>,
    retry: RetryOptions,
) -> SecretClient {
    let verify = emu.info().vault_url.contains(".vault.azure.net");
    SecretClient::new(
        &emu.info().vault_url,
        credential,
        Some(SecretClientOptions {
            client_options: client_options(emu, retry),
            verify_challenge_resource: Some(verify),
            ..Default::default()
        }),
    )
    .expect("secret client builds")
}

/// Status, `error.code` and `error.innererror.code` of an SDK error.
pub fn error_parts(err: &azure_core::Error) -> (u16, String, Option<String>) {
    match err.kind() {
        azure_core::error::ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let body = raw_response
                .as_ref()
                .map(|r| String::from_utf8_lossy(r.body()).into_owned())
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let inner = v
                .pointer("/error/innererror/code")
                .and_then(|c| c.as_str())
                .map(str::to_string);
            (
                u16::from(*status),
                error_code.clone().unwrap_or_default(),
                inner,
            )
        }
        other => panic!("expected an HTTP error, got {other:?}: {err}"),
    }
}

/// The HTTP error inside a credential error (the SDK wraps token endpoint errors).
pub fn inner_http_error(err: &azure_core::Error) -> Option<(u16, String)> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(core) = e.downcast_ref::<azure_core::Error>() {
            if let azure_core::error::ErrorKind::HttpResponse {
                status, error_code, ..
            } = core.kind()
            {
                return Some((u16::from(*status), error_code.clone().unwrap_or_default()));
            }
        }
        current = e.source();
    }
    None
}

/// A plain HTTPS request helper for tests that need exact control over what is sent.
pub struct Raw {
    pub client: reqwest::Client,
    pub base: String,
}

impl Raw {
    pub fn new(emu: &Emulator) -> Raw {
        Raw {
            client: http_client(emu),
            base: emu.info().authority_host.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; returns status, headers and body as JSON (Null when not JSON).
    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let resp = req.send().await.expect("request is answered");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body is read");
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, body)
    }

    /// A form-encoded POST (the token endpoint's format).
    pub fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (status, _, body) = self.send(req).await;
        (status, body)
    }
}
