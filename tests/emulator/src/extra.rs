//! Extra vaults: more HTTPS listeners of one emulator, each a vault of its own.
//!
//! Extra vaults: more HTTPS listeners of one emulator, each a vault of its own (secrets, objects,
//! identities and their permissions, counters, faults, throttle window, admin API under its own
//! `/_emulator`) that accepts the access tokens the one Entra ID issues, as the vaults of one
//! tenant do: a token is valid everywhere, and each vault decides what its caller may do.

use crate::emulator::{EmulatorError, ReadyInfo};
use crate::prepare::{https_origin, url_host};
use crate::state::{Settings, Shared};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Where an extra vault is served: a field of the ready line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraVaultInfo {
    /// The vault's URL, e.g. `https://127.0.0.1:8444`.
    pub vault_url: String,
    /// Its admin API, e.g. `https://127.0.0.1:8444/_emulator` (acting on this vault only).
    pub admin_url: String,
    /// The address listened on.
    pub address: SocketAddr,
}

/// Binds an extra vault's listener; returns it with its ready-line entry.
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, ExtraVaultInfo), EmulatorError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| EmulatorError::Bind { addr, source })?;
    let address = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind { addr, source })?;
    let base = https_origin(&url_host(address.ip()), address.port());
    let info = ExtraVaultInfo {
        vault_url: base.clone(),
        admin_url: format!("{base}/_emulator"),
        address,
    };
    Ok((listener, info))
}

/// The state of an extra vault: the first vault's settings and signing keys with its own URL,
/// and a copy of the identities (with their permissions) the first vault has now; no secrets.
pub(crate) fn shared_for(
    main: &Shared,
    extra: &ExtraVaultInfo,
    token_lifetime: Duration,
    requests_per_10s: u32,
) -> Arc<Shared> {
    let s = &main.settings;
    let info = ReadyInfo {
        vault_url: extra.vault_url.clone(),
        admin_url: extra.admin_url.clone(),
        address: extra.address,
        extra_vaults: Vec::new(),
        ..s.info.clone()
    };
    let settings = Settings {
        tenant_id: s.tenant_id.clone(),
        vault_url: extra.vault_url.clone(),
        authority_host: s.authority_host.clone(),
        default_client_id: s.default_client_id.clone(),
        federated_issuer: s.federated_issuer.clone(),
        federated_token_lifetime: s.federated_token_lifetime,
        federated_token_file: s.federated_token_file.clone(),
        identity_header: s.identity_header.clone(),
        info,
    };
    let identities = main.lock().identities.values().cloned().collect();
    Arc::new(Shared::with_keys(
        settings,
        identities,
        token_lifetime,
        requests_per_10s,
        (main.access_key.clone(), main.federated_key.clone()),
    ))
}
