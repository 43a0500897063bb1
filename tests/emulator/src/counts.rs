//! Operations the emulator tells apart, and the request counters tests assert on.
//!
//! What counts, and when (also in docs/EMULATOR.md):
//! - `total`: every request except `/_emulator/` admin calls, counted on arrival.
//! - `challenge`: vault requests without a bearer token, answered 401 with the challenge.
//! - `invalid_token`: vault requests whose bearer token was rejected (forged, expired, wrong
//!   audience, tenant or issuer), answered 401 with the challenge.
//! - `faulted`: requests answered (or dropped) by an injected status or reset fault; they do not
//!   count under their operation.
//! - `throttled`: vault requests answered 429 because the per-10-second budget was spent; they do
//!   not count under their operation.
//! - one counter per [`Operation`]: requests that reached that operation's handler, whatever its
//!   outcome (200, 400, 403, 404, 409 ...). For vault operations that means after authentication,
//!   fault injection and throttling; token and discovery requests have no authentication step.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One kind of request the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `GET /secrets/{name}` or `/secrets/{name}/`.
    GetSecret,
    /// `GET /secrets/{name}/{version}`.
    GetSecretVersion,
    /// `GET /secrets` (every page).
    ListSecrets,
    /// `GET /secrets/{name}/versions` (every page).
    ListSecretVersions,
    /// `PUT /secrets/{name}`.
    SetSecret,
    /// `PATCH /secrets/{name}/{version}` (or an empty version for the latest).
    UpdateSecret,
    /// `DELETE /secrets/{name}` (soft delete).
    DeleteSecret,
    /// `GET /deletedsecrets/{name}`.
    GetDeletedSecret,
    /// `GET /deletedsecrets` (every page).
    ListDeletedSecrets,
    /// `DELETE /deletedsecrets/{name}`.
    Purge,
    /// `POST /deletedsecrets/{name}/recover`.
    RecoverDeletedSecret,
    /// `POST /secrets/{name}/backup`.
    BackupSecret,
    /// `POST /secrets/restore`.
    RestoreSecret,
    /// `GET /certificates/{name}[/{version}]`.
    GetCertificate,
    /// `GET /certificates` (every page).
    ListCertificates,
    /// `GET /certificates/{name}/versions` (every page).
    ListCertificateVersions,
    /// `POST /certificates/{name}/create`.
    CreateCertificate,
    /// `POST /certificates/{name}/import`.
    ImportCertificate,
    /// `GET /certificates/{name}/pending`.
    GetCertificateOperation,
    /// `GET /certificates/{name}/policy`.
    GetCertificatePolicy,
    /// `PATCH /certificates/{name}/{version}`.
    UpdateCertificate,
    /// `DELETE /certificates/{name}`.
    DeleteCertificate,
    /// `GET /deletedcertificates/{name}`.
    GetDeletedCertificate,
    /// `GET /deletedcertificates`.
    ListDeletedCertificates,
    /// `DELETE /deletedcertificates/{name}`.
    PurgeDeletedCertificate,
    /// `POST /deletedcertificates/{name}/recover`.
    RecoverDeletedCertificate,
    /// `GET /keys/{name}[/{version}]`.
    GetKey,
    /// `GET /keys` (every page).
    ListKeys,
    /// `GET /keys/{name}/versions` (every page).
    ListKeyVersions,
    /// `POST /keys/{name}/create`.
    CreateKey,
    /// `PUT /keys/{name}`.
    ImportKey,
    /// `PATCH /keys/{name}/{version}`.
    UpdateKey,
    /// `DELETE /keys/{name}`.
    DeleteKey,
    /// `GET /deletedkeys/{name}`.
    GetDeletedKey,
    /// `GET /deletedkeys`.
    ListDeletedKeys,
    /// `DELETE /deletedkeys/{name}`.
    PurgeDeletedKey,
    /// `POST /deletedkeys/{name}/recover`.
    RecoverDeletedKey,
    /// A vault request that matches no emulated operation.
    UnknownVaultOperation,
    /// Token request with `client_assertion` (workload identity).
    TokenClientAssertion,
    /// Token request with `client_secret` (service principal).
    TokenClientSecret,
    /// Token request with neither, or not a POST.
    TokenOther,
    /// Managed identity token request (`/msi/token`).
    TokenManagedIdentity,
    /// OpenID discovery document.
    OpenidConfiguration,
    /// MSAL instance discovery.
    InstanceDiscovery,
    /// JSON Web Key Set of the token issuer.
    Jwks,
}

impl Operation {
    /// Every operation, in counter order.
    pub const ALL: [Operation; 45] = [
        Operation::GetSecret,
        Operation::GetSecretVersion,
        Operation::ListSecrets,
        Operation::ListSecretVersions,
        Operation::SetSecret,
        Operation::UpdateSecret,
        Operation::DeleteSecret,
        Operation::GetDeletedSecret,
        Operation::ListDeletedSecrets,
        Operation::Purge,
        Operation::RecoverDeletedSecret,
        Operation::BackupSecret,
        Operation::RestoreSecret,
        Operation::GetCertificate,
        Operation::ListCertificates,
        Operation::ListCertificateVersions,
        Operation::CreateCertificate,
        Operation::ImportCertificate,
        Operation::GetCertificateOperation,
        Operation::GetCertificatePolicy,
        Operation::UpdateCertificate,
        Operation::DeleteCertificate,
        Operation::GetDeletedCertificate,
        Operation::ListDeletedCertificates,
        Operation::PurgeDeletedCertificate,
        Operation::RecoverDeletedCertificate,
        Operation::GetKey,
        Operation::ListKeys,
        Operation::ListKeyVersions,
        Operation::CreateKey,
        Operation::ImportKey,
        Operation::UpdateKey,
        Operation::DeleteKey,
        Operation::GetDeletedKey,
        Operation::ListDeletedKeys,
        Operation::PurgeDeletedKey,
        Operation::RecoverDeletedKey,
        Operation::UnknownVaultOperation,
        Operation::TokenClientAssertion,
        Operation::TokenClientSecret,
        Operation::TokenOther,
        Operation::TokenManagedIdentity,
        Operation::OpenidConfiguration,
        Operation::InstanceDiscovery,
        Operation::Jwks,
    ];

    /// The counter name, e.g. `get_secret`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetSecret => "get_secret",
            Operation::GetSecretVersion => "get_secret_version",
            Operation::ListSecrets => "list_secrets",
            Operation::ListSecretVersions => "list_secret_versions",
            Operation::SetSecret => "set_secret",
            Operation::UpdateSecret => "update_secret",
            Operation::DeleteSecret => "delete_secret",
            Operation::GetDeletedSecret => "get_deleted_secret",
            Operation::ListDeletedSecrets => "list_deleted_secrets",
            Operation::Purge => "purge",
            Operation::RecoverDeletedSecret => "recover_deleted_secret",
            Operation::BackupSecret => "backup_secret",
            Operation::RestoreSecret => "restore_secret",
            Operation::GetCertificate => "get_certificate",
            Operation::ListCertificates => "list_certificates",
            Operation::ListCertificateVersions => "list_certificate_versions",
            Operation::CreateCertificate => "create_certificate",
            Operation::ImportCertificate => "import_certificate",
            Operation::GetCertificateOperation => "get_certificate_operation",
            Operation::GetCertificatePolicy => "get_certificate_policy",
            Operation::UpdateCertificate => "update_certificate",
            Operation::DeleteCertificate => "delete_certificate",
            Operation::GetDeletedCertificate => "get_deleted_certificate",
            Operation::ListDeletedCertificates => "list_deleted_certificates",
            Operation::PurgeDeletedCertificate => "purge_deleted_certificate",
            Operation::RecoverDeletedCertificate => "recover_deleted_certificate",
            Operation::GetKey => "get_key",
            Operation::ListKeys => "list_keys",
            Operation::ListKeyVersions => "list_key_versions",
            Operation::CreateKey => "create_key",
            Operation::ImportKey => "import_key",
            Operation::UpdateKey => "update_key",
            Operation::DeleteKey => "delete_key",
            Operation::GetDeletedKey => "get_deleted_key",
            Operation::ListDeletedKeys => "list_deleted_keys",
            Operation::PurgeDeletedKey => "purge_deleted_key",
            Operation::RecoverDeletedKey => "recover_deleted_key",
            Operation::UnknownVaultOperation => "unknown_vault_operation",
            Operation::TokenClientAssertion => "token_client_assertion",
            Operation::TokenClientSecret => "token_client_secret",
            Operation::TokenOther => "token_other",
            Operation::TokenManagedIdentity => "token_managed_identity",
            Operation::OpenidConfiguration => "openid_configuration",
            Operation::InstanceDiscovery => "instance_discovery",
            Operation::Jwks => "jwks",
        }
    }

    /// The operation with counter name `name`.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether this is a Key Vault data-plane operation (as opposed to a token or discovery one).
    pub fn is_vault(self) -> bool {
        matches!(
            self,
            Operation::GetSecret
                | Operation::GetSecretVersion
                | Operation::ListSecrets
                | Operation::ListSecretVersions
                | Operation::SetSecret
                | Operation::UpdateSecret
                | Operation::DeleteSecret
                | Operation::GetDeletedSecret
                | Operation::ListDeletedSecrets
                | Operation::Purge
                | Operation::RecoverDeletedSecret
                | Operation::BackupSecret
                | Operation::RestoreSecret
                | Operation::GetCertificate
                | Operation::ListCertificates
                | Operation::ListCertificateVersions
                | Operation::CreateCertificate
                | Operation::ImportCertificate
                | Operation::GetCertificateOperation
                | Operation::GetCertificatePolicy
                | Operation::UpdateCertificate
                | Operation::DeleteCertificate
                | Operation::GetDeletedCertificate
                | Operation::ListDeletedCertificates
                | Operation::PurgeDeletedCertificate
                | Operation::RecoverDeletedCertificate
                | Operation::GetKey
                | Operation::ListKeys
                | Operation::ListKeyVersions
                | Operation::CreateKey
                | Operation::ImportKey
                | Operation::UpdateKey
                | Operation::DeleteKey
                | Operation::GetDeletedKey
                | Operation::ListDeletedKeys
                | Operation::PurgeDeletedKey
                | Operation::RecoverDeletedKey
                | Operation::UnknownVaultOperation
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counter names that are not operations.
pub mod special {
    /// Every request except admin calls.
    pub const TOTAL: &str = "total";
    /// Vault requests answered 401 because they carried no bearer token.
    pub const CHALLENGE: &str = "challenge";
    /// Vault requests answered 401 because their bearer token was rejected.
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// Requests answered by an injected status or reset fault.
    pub const FAULTED: &str = "faulted";
    /// Vault requests answered 429 by the request budget.
    pub const THROTTLED: &str = "throttled";
    /// All of them.
    pub const ALL: [&str; 5] = [TOTAL, CHALLENGE, INVALID_TOKEN, FAULTED, THROTTLED];
}

/// A snapshot of the request counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counts(BTreeMap<String, u64>);

impl Counts {
    /// All counters at zero (every known name present, so a snapshot lists what can be counted).
    pub fn zero() -> Self {
        let mut map = BTreeMap::new();
        for op in Operation::ALL {
            map.insert(op.name().to_string(), 0);
        }
        for name in special::ALL {
            map.insert(name.to_string(), 0);
        }
        Counts(map)
    }

    /// The counter `name` (an operation name such as `get_secret`, or `total`, `challenge`,
    /// `invalid_token`, `faulted`, `throttled`); 0 for names never counted.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// The counter of `op`.
    pub fn op(&self, op: Operation) -> u64 {
        self.get(op.name())
    }

    /// Sum of all vault operation counters (requests that reached a vault handler).
    pub fn vault_requests(&self) -> u64 {
        Operation::ALL
            .into_iter()
            .filter(|op| op.is_vault())
            .map(|op| self.op(op))
            .sum()
    }

    /// Counters that are not zero, e.g. to compare a whole scripted sequence at once.
    pub fn nonzero(&self) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Every counter by name.
    pub fn as_map(&self) -> &BTreeMap<String, u64> {
        &self.0
    }

    pub(crate) fn bump(&mut self, name: &str) {
        *self.0.entry(name.to_string()).or_insert(0) += 1;
    }
}

impl std::ops::Index<&str> for Counts {
    type Output = u64;

    fn index(&self, name: &str) -> &u64 {
        self.0.get(name).unwrap_or(&0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(op));
        }
        assert_eq!(Operation::from_name("nope"), None);
    }

    #[test]
    fn counts_accessors() {
        let mut c = Counts::zero();
        c.bump("get_secret");
        c.bump("get_secret");
        c.bump("total");
        assert_eq!(c.get("get_secret"), 2);
        assert_eq!(c["get_secret"], 2);
        assert_eq!(c.op(Operation::GetSecret), 2);
        assert_eq!(c["missing"], 0);
        assert_eq!(c.vault_requests(), 2);
        assert_eq!(c.nonzero().len(), 2);
    }
}
