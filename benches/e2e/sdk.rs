//! The cold-read baseline: a Key Vault client built the way an application would build it with
//! the Azure SDK, against the same emulator, trusting the same CA. SDK retries are off (akvfs
//! turns them off too), it runs on a single-threaded runtime (the cheapest way to drive it), and
//! its credential caches the access token after the first call, as akvfs's does.

use std::sync::Arc;

use akvfs_emulator::ReadyInfo;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};

use crate::rig::Result;

pub struct DirectClient {
    rt: tokio::runtime::Runtime,
    client: SecretClient,
}

fn options(info: &ReadyInfo, transport: &Transport) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = info.authority_host.clone();
    ClientOptions {
        transport: Some(transport.clone()),
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    }
}

impl DirectClient {
    pub fn new(info: &ReadyInfo, ca_pem: &str) -> Result<DirectClient> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime for the SDK client: {e}"))?;
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| format!("the emulator's CA is not PEM: {e}"))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .map_err(|e| format!("cannot build the HTTPS client: {e}"))?;
        let transport = Transport::new(Arc::new(http));
        let credential = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: options(info, &transport),
            },
            client_id: Some(info.client_id.clone()),
            tenant_id: Some(info.tenant_id.clone()),
            token_file_path: Some(info.federated_token_file.clone()),
        }))
        .map_err(|e| format!("cannot build the workload identity credential: {e}"))?;
        let client = SecretClient::new(
            &info.vault_url,
            credential,
            Some(SecretClientOptions {
                client_options: options(info, &transport),
                // The emulator answers on 127.0.0.1, not a *.vault.azure.net name (akvfs runs
                // with --disable-challenge-resource-verification for the same reason).
                verify_challenge_resource: Some(false),
                ..Default::default()
            }),
        )
        .map_err(|e| format!("cannot build the secret client: {e}"))?;
        Ok(DirectClient { rt, client })
    }

    /// GETs the latest version of `name` and returns its value.
    pub fn get(&self, name: &str) -> Result<String> {
        self.rt.block_on(async {
            let secret = self
                .client
                .get_secret(name, None)
                .await
                .map_err(|e| format!("SDK GET {name}: {e}"))?
                .into_model()
                .map_err(|e| format!("SDK GET {name}: body: {e}"))?;
            Ok(secret.value.unwrap_or_default())
        })
    }
}
