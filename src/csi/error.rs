//! Why a publish or unpublish was refused (one gRPC code each), and the node-side failures a refusal carries.

use std::io;
use std::path::PathBuf;

use tonic::Code;

use super::request::VOLUME_OPTIONS;
use crate::auth::TokenFailure;
use crate::config::{ConfigError, FieldError};
use crate::service::Error as ServiceError;
use crate::text::one_line;
use crate::vault::azure::SetupError;
use crate::vault::VaultError;

/// Work on this node that failed: binds, the state directory, an identity's
/// credential, the plugin's own flags.
#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    #[error("cannot create the target directory {}: {source}", target.display())]
    CreateTarget { target: PathBuf, source: io::Error },
    #[error("cannot bind {} on {}: {source}", mount.display(), target.display())]
    Bind {
        mount: PathBuf,
        target: PathBuf,
        source: nix::Error,
    },
    #[error("cannot make {} read-only: {source}", target.display())]
    ReadOnly { target: PathBuf, source: nix::Error },
    #[error("cannot encode the state of {}: {source}", target.display())]
    StateEncode {
        target: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the state file {}: {source}", path.display())]
    StateWrite { path: PathBuf, source: io::Error },
    #[error("cannot create {}: {source}", dir.display())]
    MountDir { dir: PathBuf, source: io::Error },
    #[error("cannot set up the credential for client id {client_id}: {}", one_line(&**source))]
    Credential {
        client_id: String,
        source: Box<azure_core::Error>,
    },
    #[error("cannot set up the token exchange for client id {client_id} in tenant {tenant}: {}", one_line(&**source))]
    ExchangeSetup {
        client_id: String,
        tenant: String,
        source: Box<azure_core::Error>,
    },
    /// `--max-volume-cache-bytes` is not a size.
    #[error(transparent)]
    VolumeCacheSize(ConfigError),
    /// `--max-volume-cache-bytes` is outside what the locked budget holds.
    #[error("{} is outside 64 KiB..{}, the memory locked for all volumes' values", crate::locked::human(*.bytes), crate::locked::human(*.budget))]
    VolumeCacheRange { bytes: u64, budget: u64 },
}

/// Why a publish or unpublish was refused; each maps to one gRPC code
/// ([`Refusal::code`]). Text variants are refusals of our own wording; the
/// others carry the typed failure they come from.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unavailable(String),
    /// A volume attribute that is neither akvfs's nor kubelet's.
    #[error("unknown volume attribute {key:?}; akvfs takes keyvaultName, clientID, tenantId, objects and the mount options {}", VOLUME_OPTIONS.join(", "))]
    UnknownAttribute { key: String },
    /// `secretProviderClass`: the CSI driver's way, which akvfs does not take.
    #[error("volume attribute secretProviderClass: akvfs does not read SecretProviderClass resources; copy the class's keyvaultName, clientID, tenantId and objects into the volume's attributes")]
    ProviderClass,
    /// An `objects` attribute larger than a volume may hold.
    #[error("volume attribute objects is {bytes} bytes, more than the {max} a volume may hold; split the objects over several volumes")]
    ObjectsTooLarge { bytes: usize, max: usize },
    /// An `objects` attribute that is not a SecretProviderClass's objects.
    #[error(transparent)]
    Objects(crate::config::views_error::ViewSourceError),
    /// `keyvaultName` is not a vault name or URL.
    #[error("volume attribute keyvaultName: {0}")]
    VaultName(#[source] ConfigError),
    /// A mount option attribute whose value does not parse (the error names
    /// it as an `-o` option; a volume sets it as an attribute).
    #[error("volume attribute {}", .0.to_string().trim_start_matches("-o "))]
    Option(#[source] ConfigError),
    /// A mount setting the validation of every mount refused.
    #[error("volume attribute {}: {}", .0.field, .0.problem)]
    Setting(#[source] FieldError),
    /// A volume's `cache_bytes` above the node's `--max-volume-cache-bytes`.
    #[error("volume attribute cache_bytes: {given} ({}) is more than this node allows a volume ({}); set a smaller cache_bytes, or raise --max-volume-cache-bytes on the node plugin", crate::locked::human(*.asked), crate::locked::human(*.max))]
    CacheCap { given: String, asked: u64, max: u64 },
    /// The identity's vault client could not be built from the URL.
    #[error("vault {vault}: {source}")]
    Client { vault: String, source: SetupError },
    /// Entra ID did not accept the pod's token for the identity.
    #[error("{}", exchange_text(client_id, tenant, failure))]
    Exchange {
        client_id: String,
        tenant: String,
        failure: TokenFailure,
    },
    /// The identity's mount could not start; the code follows the vault's answer.
    #[error("{}", mount_text(vault, source))]
    Mount {
        vault: String,
        source: Box<ServiceError>,
    },
    /// Work on this node failed.
    #[error(transparent)]
    Node(#[from] CsiError),
}

impl Refusal {
    /// The gRPC code kubelet shows in the pod's events.
    pub fn code(&self) -> Code {
        match self {
            Refusal::InvalidArgument(_)
            | Refusal::UnknownAttribute { .. }
            | Refusal::ProviderClass
            | Refusal::ObjectsTooLarge { .. }
            | Refusal::Objects(_)
            | Refusal::VaultName(_)
            | Refusal::Option(_)
            | Refusal::Setting(_)
            | Refusal::CacheCap { .. }
            | Refusal::Client { .. } => Code::InvalidArgument,
            Refusal::Unauthenticated(_) => Code::Unauthenticated,
            Refusal::NotFound(_) => Code::NotFound,
            Refusal::AlreadyExists(_) => Code::AlreadyExists,
            Refusal::Aborted(_) => Code::Aborted,
            Refusal::Unavailable(_) => Code::Unavailable,
            Refusal::Exchange { failure, .. } => match failure {
                TokenFailure::Transient(_) => Code::Unavailable,
                TokenFailure::Refused(_) | TokenFailure::Other(_) => Code::PermissionDenied,
            },
            Refusal::Mount { source, .. } => match vault_answer(source).or(view_answer(source)) {
                Some(VaultError::Forbidden { .. } | VaultError::IdentityRejected(_)) => {
                    Code::PermissionDenied
                }
                Some(VaultError::NotFound) => Code::NotFound,
                Some(_) => Code::Unavailable,
                None => Code::Internal,
            },
            Refusal::Node(_) => Code::Internal,
        }
    }
}

/// The vault's answer behind a mount that could not start, if that is why.
fn vault_answer(e: &ServiceError) -> Option<&VaultError> {
    match e {
        ServiceError::List { source, .. } | ServiceError::Read { source, .. } => Some(source),
        _ => None,
    }
}

/// The vault's answer that stopped a declared view (an `objects` entry), for the code only:
/// the message already names the view and its vault.
fn view_answer(e: &ServiceError) -> Option<&VaultError> {
    match e {
        ServiceError::View {
            source: crate::error::FsError::Vault { source, .. },
            ..
        }
        | ServiceError::ViewVault { source, .. } => Some(source),
        _ => None,
    }
}

fn mount_text(vault: &str, e: &ServiceError) -> String {
    match vault_answer(e) {
        Some(VaultError::NotFound) => format!("vault {vault}: {e}"),
        _ => e.to_string(),
    }
}

fn exchange_text(client_id: &str, tenant: &str, failure: &TokenFailure) -> String {
    let who = format!("client id {client_id} in tenant {tenant}");
    match failure {
        TokenFailure::Transient(why) => {
            format!("Entra ID is unreachable or failing for the token exchange of {who}: {why}")
        }
        TokenFailure::Refused(why) | TokenFailure::Other(why) => format!(
            "Entra ID refused the pod's service-account token for {who}: {why}; check that the identity has a federated credential for this cluster's issuer and the subject of the pod's service account"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: VaultError) -> Refusal {
        Refusal::Mount {
            vault: "https://kv.vault.azure.net".into(),
            source: Box::new(ServiceError::List {
                vault: "https://kv.vault.azure.net".into(),
                source,
            }),
        }
    }

    #[test]
    fn each_cause_answers_its_code() {
        let exchange = |failure| Refusal::Exchange {
            client_id: "c".into(),
            tenant: "t".into(),
            failure,
        };
        assert_eq!(
            exchange(TokenFailure::Transient("503".into())).code(),
            Code::Unavailable
        );
        assert_eq!(
            exchange(TokenFailure::Refused("AADSTS70021".into())).code(),
            Code::PermissionDenied
        );
        let forbidden = VaultError::Forbidden {
            operation: "list",
            detail: String::new(),
        };
        assert_eq!(mount(forbidden).code(), Code::PermissionDenied);
        assert_eq!(
            mount(VaultError::Timeout(std::time::Duration::from_secs(1))).code(),
            Code::Unavailable
        );
        let missing = mount(VaultError::NotFound);
        assert_eq!(missing.code(), Code::NotFound);
        assert!(missing
            .to_string()
            .starts_with("vault https://kv.vault.azure.net: "));
        let node = Refusal::from(CsiError::MountDir {
            dir: PathBuf::from("/state/mounts/k"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert_eq!(node.code(), Code::Internal);
        assert_eq!(
            Refusal::UnknownAttribute {
                key: "objectz".into()
            }
            .code(),
            Code::InvalidArgument
        );
        assert_eq!(Refusal::ProviderClass.code(), Code::InvalidArgument);
        // An objects entry the vault does not hold: NotFound, like a missing vault.
        let view = Refusal::Mount {
            vault: "https://kv.vault.azure.net".into(),
            source: Box::new(ServiceError::View {
                view: "db".into(),
                source: crate::error::FsError::Vault {
                    vault: "https://kv.vault.azure.net".into(),
                    name: crate::secret::SecretName::parse("db").unwrap(),
                    source: VaultError::NotFound,
                },
            }),
        };
        assert_eq!(view.code(), Code::NotFound);
    }
}
