//! Building a mount's vault client (transport, identity, Azure client) and the advice added to vault errors.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{build_identity, Identity};
use crate::config::{AuthConfig, VaultConfig};
use crate::metrics::MountMetrics;
use crate::vault::azure::{build_transport, AzureVault, TransportSettings};
use crate::vault::metered::MeteredVault;
use crate::vault::{Cause, Vault, VaultError};

use super::credential::CountingCredential;
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
        vault: Arc::new(MeteredVault::new(Arc::new(client), metrics.clone())),
    })
}

/// What to check after a vault error, chosen by its kind. Errors whose
/// text already says what to check (timeouts, 403s, refused identities, an
/// expired Azure CLI sign-in, challenge failures) get nothing more.
pub fn hint(err: &VaultError) -> &'static str {
    let cause = match err {
        VaultError::Auth(d) | VaultError::Unavailable(d) => d.kind,
        _ => return "",
    };
    match cause {
        Cause::CliMissing => {
            " (install the Azure CLI and run az login, or choose another --auth)"
        }
        Cause::CliSignIn => " (run az login)",
        Cause::Dns => {
            " (check the vault name, DNS, and for private endpoints the private DNS zone)"
        }
        Cause::Tls => {
            " (the vault's TLS certificate is not trusted: check --ca-file, SSL_CERT_FILE, or a TLS-inspecting proxy)"
        }
        Cause::Connect => " (check the URL and port, firewalls, and the vault's network rules)",
        Cause::CliSignInExpired | Cause::Other => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Detail;

    #[test]
    fn advice_follows_the_cause() {
        let unavailable = |kind| VaultError::Unavailable(Detail::new(kind, "x"));
        assert!(hint(&unavailable(Cause::Dns)).contains("DNS"));
        assert!(hint(&unavailable(Cause::Tls)).contains("--ca-file"));
        assert!(hint(&unavailable(Cause::Connect)).contains("firewalls"));
        let auth = |kind| VaultError::Auth(Detail::new(kind, "x"));
        assert!(hint(&auth(Cause::CliMissing)).contains("install the Azure CLI"));
        assert_eq!(hint(&auth(Cause::CliSignIn)), " (run az login)");
    }

    #[test]
    fn advice_already_in_the_message_is_not_repeated() {
        // The expired sign-in's remedy is part of the error's own text.
        let expired = VaultError::Auth(Detail::new(Cause::CliSignInExpired, "x"));
        assert_eq!(hint(&expired), "");
        for err in [
            VaultError::Timeout(Duration::from_secs(1)),
            VaultError::IdentityRejected("dns connect tls".into()),
            VaultError::Forbidden {
                operation: "list",
                detail: "ForbiddenByFirewall".into(),
            },
            VaultError::Unavailable("dns connect tls certificate".into()),
            VaultError::NotFound,
        ] {
            assert_eq!(hint(&err), "", "{err:?}");
        }
    }
}
