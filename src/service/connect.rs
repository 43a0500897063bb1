//! Building a mount's vault client (transport, identity, Azure client) and the advice added to vault errors.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{
    build_identity, cli_sign_in_expired, CountingCredential, Identity, CLI_SIGN_IN_EXPIRED,
};
use crate::config::{AuthConfig, VaultConfig};
use crate::metrics::MountMetrics;
use crate::vault::azure::{build_transport, AzureVault, TransportSettings};
use crate::vault::metered::MeteredVault;
use crate::vault::{Vault, VaultError};

use super::Error;

/// The vault client and the identity behind it.
pub struct Connection {
    pub identity: Identity,
    pub vault: Arc<dyn Vault>,
}

/// Builds transport, credential and vault client. Makes no network call.
pub fn connect(
    vault: &VaultConfig,
    auth: &AuthConfig,
    metrics: &Arc<MountMetrics>,
) -> Result<Connection, Error> {
    let extra_roots_pem = match &vault.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|source| Error::CaFile {
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let transport = build_transport(&TransportSettings {
        extra_roots_pem,
        connect_timeout: Some(Duration::from_secs(5)),
        // Unless the whole process is locked, idle connections' buffers would
        // keep the last value read in memory that may be swapped.
        no_idle_connections: matches!(
            crate::locked::mode(),
            Some(crate::locked::MemoryMode::Secrets { .. })
        ),
    })
    .map_err(|detail| Error::Transport {
        ca_file: vault.ca_file.clone(),
        detail,
    })?;
    let mut identity = build_identity(auth, &transport).map_err(Error::Identity)?;
    identity.credential = CountingCredential::wrap(identity.credential, Arc::clone(metrics));
    tracing::info!(
        vault = %vault.url,
        auth = identity.mode.as_str(),
        reason = %identity.reason,
        "using {} authentication",
        identity.mode.as_str()
    );
    let client = AzureVault::new(
        &vault.url,
        Arc::clone(&identity.credential),
        &transport,
        vault.verify_challenge_resource,
    )
    .map_err(Error::Client)?;
    Ok(Connection {
        identity,
        vault: Arc::new(MeteredVault::new(Arc::new(client), Arc::clone(metrics))),
    })
}

/// What to check after a vault error, by its kind and wording.
/// `verify_challenge` is whether the vault's challenge resource is verified.
pub fn hint(err: &VaultError, verify_challenge: bool) -> &'static str {
    let lower = err.to_string().to_lowercase();
    if lower.contains("run az login again") {
        ""
    } else if cli_sign_in_expired(&lower) {
        CLI_SIGN_IN_EXPIRED
    } else if lower.contains("az not found") {
        " (install the Azure CLI and run az login, or choose another --auth)"
    } else if lower.contains("az login") {
        " (run az login)"
    } else if lower.contains("dns")
        || lower.contains("resolve")
        || lower.contains("name or service")
    {
        " (check the vault name, DNS, and for private endpoints the private DNS zone)"
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("unknownissuer")
    {
        " (the vault's TLS certificate is not trusted: check --ca-file, SSL_CERT_FILE, or a TLS-inspecting proxy)"
    } else if lower.contains("connection refused") || lower.contains("connect") {
        " (check the URL and port, firewalls, and the vault's network rules)"
    } else if lower.contains("challenge") && verify_challenge {
        " (for a private endpoint with a custom name or the emulator, pass --disable-challenge-resource-verification)"
    } else {
        ""
    }
}
