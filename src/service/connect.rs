//! Building a mount's vault client (transport, identity, Azure client) and the advice added to vault errors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{build_identity, Identity};
use crate::config::{AuthConfig, VaultConfig};
use crate::metrics::MountMetrics;
use crate::vault::azure::{build_transport, AzureVault, Transport, TransportSettings};
use crate::vault::metered::MeteredVault;
use crate::vault::{Cause, Vault, VaultError};

use super::credential::CountingCredential;
use super::Error;

/// The vault client, the identity behind it, and the HTTPS transport both
/// use (which the clients of a mount's other vaults share too).
pub struct Connection {
    pub identity: Identity,
    pub vault: Arc<dyn Vault>,
    pub transport: Transport,
}

/// Builds transport, credential and vault client. Makes no network call.
pub fn connect(
    vault: &VaultConfig,
    auth: &AuthConfig,
    metrics: &Arc<MountMetrics>,
) -> Result<Connection, Error> {
    let transport = transport(vault.ca_file.as_deref())?;
    let mut identity = build_identity(auth, &transport).map_err(Error::Identity)?;
    identity.credential = CountingCredential::wrap(identity.credential, Arc::clone(metrics));
    tracing::info!(
        vault = %vault.url,
        auth = identity.mode.as_str(),
        reason = %identity.reason,
        "using {} authentication",
        identity.mode.as_str()
    );
    let vault = connect_with(vault, &identity, &transport, metrics)?;
    Ok(Connection {
        identity,
        vault,
        transport,
    })
}

/// The client of `vault` with an identity already built: the mount's own
/// vault, or another its views read (one credential, and so one token, for
/// every vault of a mount). Calls are counted in `metrics` (that vault's).
/// Makes no network call.
pub fn connect_with(
    vault: &VaultConfig,
    identity: &Identity,
    transport: &Transport,
    metrics: &Arc<MountMetrics>,
) -> Result<Arc<dyn Vault>, Error> {
    let client = AzureVault::new(
        &vault.url,
        Arc::clone(&identity.credential),
        transport,
        vault.verify_challenge_resource,
    )
    .map_err(Error::Client)?;
    Ok(Arc::new(MeteredVault::new(
        Arc::new(client),
        metrics.clone(),
    )))
}

/// The HTTPS transport every vault client of the process uses: the system's
/// roots plus `ca_file`'s. Unless the whole process is locked, idle
/// connections are not kept: their buffers would keep the last value read in
/// memory that may be swapped.
pub fn transport(ca_file: Option<&Path>) -> Result<Transport, Error> {
    let extra_roots_pem = match ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|source| Error::CaFile {
            path: p.to_path_buf(),
            source,
        })?),
        None => None,
    };
    build_transport(&TransportSettings {
        extra_roots_pem,
        connect_timeout: Some(Duration::from_secs(5)),
        no_idle_connections: matches!(
            crate::locked::mode(),
            Some(crate::locked::MemoryMode::Secrets { .. })
        ),
    })
    .map_err(|detail| Error::Transport {
        ca_file: ca_file.map(Path::to_path_buf),
        detail,
    })
}

/// What to check after a vault error whose text does not already say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    InstallCli,
    RunAzLogin,
    CheckDns,
    CheckTrust,
    CheckNetwork,
}

impl Advice {
    /// The advice as appended to the error's line.
    pub fn text(self) -> &'static str {
        match self {
            Advice::InstallCli => {
                " (install the Azure CLI and run az login, or choose another --auth)"
            }
            Advice::RunAzLogin => " (run az login)",
            Advice::CheckDns => {
                " (check the vault name, DNS, and for private endpoints the private DNS zone)"
            }
            Advice::CheckTrust => {
                " (the vault's TLS certificate is not trusted: check --ca-file, SSL_CERT_FILE, or a TLS-inspecting proxy)"
            }
            Advice::CheckNetwork => {
                " (check the URL and port, firewalls, and the vault's network rules)"
            }
        }
    }
}

/// The advice for a vault error, chosen by its kind. Errors whose text
/// already says what to check (timeouts, 403s, refused identities, an
/// expired Azure CLI sign-in, challenge failures) get none.
pub fn advice(err: &VaultError) -> Option<Advice> {
    let cause = match err {
        VaultError::Auth(d) | VaultError::Unavailable(d) => d.kind,
        _ => return None,
    };
    match cause {
        Cause::CliMissing => Some(Advice::InstallCli),
        Cause::CliSignIn => Some(Advice::RunAzLogin),
        Cause::Dns => Some(Advice::CheckDns),
        Cause::Tls => Some(Advice::CheckTrust),
        Cause::Connect => Some(Advice::CheckNetwork),
        Cause::CliSignInExpired | Cause::Other => None,
    }
}

/// [`advice`] as text to append; empty when there is none.
pub fn hint(err: &VaultError) -> &'static str {
    advice(err).map_or("", Advice::text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Detail;

    #[test]
    fn advice_follows_the_cause() {
        let unavailable = |kind| VaultError::Unavailable(Detail::new(kind, "x"));
        assert_eq!(advice(&unavailable(Cause::Dns)), Some(Advice::CheckDns));
        assert_eq!(advice(&unavailable(Cause::Tls)), Some(Advice::CheckTrust));
        assert_eq!(
            advice(&unavailable(Cause::Connect)),
            Some(Advice::CheckNetwork)
        );
        let auth = |kind| VaultError::Auth(Detail::new(kind, "x"));
        assert_eq!(advice(&auth(Cause::CliMissing)), Some(Advice::InstallCli));
        assert_eq!(advice(&auth(Cause::CliSignIn)), Some(Advice::RunAzLogin));
        // The rendered line carries the advice's text once.
        let err = Error::List {
            vault: "v".into(),
            source: unavailable(Cause::Dns),
        };
        assert_eq!(err.to_string().matches(Advice::CheckDns.text()).count(), 1);
    }

    #[test]
    fn advice_already_in_the_message_is_not_repeated() {
        // The expired sign-in's remedy is part of the error's own text.
        let expired = VaultError::Auth(Detail::new(Cause::CliSignInExpired, "x"));
        assert_eq!(advice(&expired), None);
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
            assert_eq!(advice(&err), None, "{err:?}");
        }
    }
}
