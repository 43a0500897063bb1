//! Configuration: the emulator's settings and the identities it knows.
//!
//! Configuration: the emulator's settings and the identities it knows; the seed file format is in
//! `seed`.

pub use crate::objconfig::{
    ObjectPermissions, SeedCertVersion, SeedCertificate, SeedKey, SeedKeyVersion, SeedPolicy,
};
pub use crate::seed::{Seed, SeedSecret, SeedVersion};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default tenant id (fixed, so logs and docs can show it).
pub const DEFAULT_TENANT_ID: &str = "7e4a1b2c-3d5e-4f60-8a9b-0c1d2e3f4a5b";
/// Default client id of the workload identity / service principal / managed identity.
pub const DEFAULT_CLIENT_ID: &str = "5b3a1c2d-7e8f-4a6b-9c0d-1e2f3a4b5c6d";
/// Default client secret of the default identity.
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-client-secret";
/// Default subject of the federated credential (a Kubernetes service account).
pub const DEFAULT_FEDERATED_SUBJECT: &str = "system:serviceaccount:akvfs:akvfs";
/// Default issuer of federated tokens.
pub const DEFAULT_FEDERATED_ISSUER: &str = "https://oidc.emulator.invalid/akvfs";
/// Audience a federated token must carry.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The Key Vault resource (token audience).
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";

/// Everything needed to start an emulator. `Default` gives test-friendly values: a random port on
/// 127.0.0.1, a fresh temporary state directory, fixed tenant and client ids, 1 h tokens.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where `ca.pem` and `federated-token` are written. None: a new temporary directory that is
    /// removed when the emulator stops.
    pub state_dir: Option<PathBuf>,
    /// Extra DNS names (or IP addresses) for the server certificate.
    pub hostnames: Vec<String>,
    /// Host name used in `vault_url` (e.g. `myvault.vault.azure.net`); also added to the
    /// certificate. The caller makes it resolve to the listen address. None: the listen IP.
    pub vault_host: Option<String>,
    /// Host name the Entra ID endpoints are served as (e.g. `login.microsoftonline.com`): named in
    /// `authority_host`, the vault's 401 challenge and the discovery documents; also added to the
    /// certificate. The caller makes it resolve to the listen address. None: the listen IP.
    pub authority_host: Option<String>,
    /// Tenant id.
    pub tenant_id: String,
    /// Client id of the default identity (workload identity, service principal and managed identity).
    pub client_id: String,
    /// Client secret of the default identity (None: client secret authentication is refused).
    pub client_secret: Option<String>,
    /// Subject the default identity's federated credential accepts.
    pub federated_subject: String,
    /// Issuer of federated tokens (`iss` claim; assertions from another issuer are refused).
    pub federated_issuer: String,
    /// Lifetime of the federated token written to `federated-token`.
    pub federated_token_lifetime: Duration,
    /// Value the managed identity endpoint requires in `X-IDENTITY-HEADER` (None: random).
    pub identity_header: Option<String>,
    /// Lifetime of issued access tokens.
    pub token_lifetime: Duration,
    /// Authenticated vault requests allowed per sliding 10 s window before 429 Throttled.
    pub requests_per_10s: u32,
    /// Secrets and identities to start with.
    pub seed: Option<Seed>,
    /// Where to serve the Azure Instance Metadata Service token endpoint over plain HTTP (on a
    /// VM it is `169.254.169.254:80`). None: not served.
    pub imds_listen: Option<SocketAddr>,
    /// Where to serve the Azure Arc variant of the token endpoint over plain HTTP (the Arc
    /// agent's is `127.0.0.1:40342`). None: not served.
    pub arc_listen: Option<SocketAddr>,
    /// Directory of the key files the Arc endpoint challenges with (the agent's is
    /// `/var/opt/azcmagent/tokens`). None: `arc-tokens` in the state directory.
    pub arc_key_dir: Option<PathBuf>,
    /// More vaults, one HTTPS listener each (port 0 picks a free port), each with its own
    /// secrets, objects, identities' permissions and admin API, accepting the tokens of the one
    /// Entra ID (as one tenant's vaults do). Empty: one vault.
    pub extra_vaults: Vec<SocketAddr>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            hostnames: Vec::new(),
            vault_host: None,
            authority_host: None,
            tenant_id: DEFAULT_TENANT_ID.to_string(),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: Some(DEFAULT_CLIENT_SECRET.to_string()),
            federated_subject: DEFAULT_FEDERATED_SUBJECT.to_string(),
            federated_issuer: DEFAULT_FEDERATED_ISSUER.to_string(),
            federated_token_lifetime: Duration::from_secs(24 * 3600),
            identity_header: None,
            token_lifetime: Duration::from_secs(3600),
            requests_per_10s: 4000,
            seed: None,
            imds_listen: None,
            arc_listen: None,
            arc_key_dir: None,
            extra_vaults: Vec::new(),
        }
    }
}

impl EmulatorConfig {
    /// The default identity: this config's client id, secret and federated subject, with every
    /// permission, also usable as the managed identity.
    pub fn default_identity(&self) -> Identity {
        Identity {
            client_id: self.client_id.clone(),
            object_id: None,
            client_secret: self.client_secret.clone(),
            federated_subjects: vec![self.federated_subject.clone()],
            permissions: Permissions::all(),
            denied_secrets: Vec::new(),
            managed_identity: true,
            certificates: ObjectPermissions::all(),
            keys: ObjectPermissions::all(),
            denied_certificates: Vec::new(),
            denied_keys: Vec::new(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.tenant_id.is_empty()
            || !self
                .tenant_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!(
                "tenant id {:?} must be letters, digits, '-' or '.'",
                self.tenant_id
            ));
        }
        for (what, host) in [
            ("vault host", &self.vault_host),
            ("authority host", &self.authority_host),
        ] {
            if let Some(host) = host {
                if !is_host_name(host) {
                    return Err(format!(
                        "{what} {host:?} must be a DNS name (letters, digits, '-' and '.'), without scheme or port"
                    ));
                }
            }
        }
        if self.client_id.is_empty() {
            return Err("client id must not be empty".into());
        }
        if self.requests_per_10s == 0 {
            return Err("requests per 10 s must be at least 1".into());
        }
        if self.token_lifetime < Duration::from_secs(1)
            || self.token_lifetime > crate::state::MAX_TOKEN_LIFETIME
        {
            return Err("token lifetime must be from 1 s to 365 days".into());
        }
        Ok(())
    }
}

/// Whether `host` is a plain DNS name: labels of letters, digits and '-', separated by dots.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Secret permissions of an identity (an access policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    /// Get secrets (latest or a version) and deleted secrets.
    pub get: bool,
    /// List secrets, versions and deleted secrets.
    pub list: bool,
    /// Set secrets and update their attributes.
    pub set: bool,
    /// Delete secrets.
    pub delete: bool,
    /// Purge deleted secrets.
    pub purge: bool,
    /// Recover deleted secrets.
    pub recover: bool,
    /// Back secrets up (`POST /secrets/{name}/backup`).
    pub backup: bool,
    /// Restore secrets from a backup (`POST /secrets/restore`).
    pub restore: bool,
}

impl Permissions {
    /// Every permission.
    pub fn all() -> Self {
        Permissions {
            get: true,
            list: true,
            set: true,
            delete: true,
            purge: true,
            recover: true,
            backup: true,
            restore: true,
        }
    }

    /// No permission at all.
    pub fn none() -> Self {
        Permissions {
            get: false,
            list: false,
            set: false,
            delete: false,
            purge: false,
            recover: false,
            backup: false,
            restore: false,
        }
    }

    /// Only `get` and `list` (what a read-only mount needs).
    pub fn read_only() -> Self {
        Permissions {
            get: true,
            list: true,
            ..Permissions::none()
        }
    }

    /// Parses names such as `["get", "list"]` (`"all"` grants everything).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut p = Permissions::none();
        for name in names {
            match name.as_ref().to_ascii_lowercase().as_str() {
                "get" => p.get = true,
                "list" => p.list = true,
                "set" => p.set = true,
                "delete" => p.delete = true,
                "purge" => p.purge = true,
                "recover" => p.recover = true,
                "backup" => p.backup = true,
                "restore" => p.restore = true,
                "all" => p = Permissions::all(),
                other => {
                    return Err(format!(
                        "unknown permission {other:?}; expected get, list, set, delete, purge, recover, backup, restore or all"
                    ))
                }
            }
        }
        Ok(p)
    }

    /// The granted permission names.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.get, "get"),
            (self.list, "list"),
            (self.set, "set"),
            (self.delete, "delete"),
            (self.purge, "purge"),
            (self.recover, "recover"),
            (self.backup, "backup"),
            (self.restore, "restore"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }

    /// Whether `name` (get, list, set, delete, purge, recover, backup, restore) is granted.
    pub fn allows(&self, name: &str) -> bool {
        match name {
            "get" => self.get,
            "list" => self.list,
            "set" => self.set,
            "delete" => self.delete,
            "purge" => self.purge,
            "recover" => self.recover,
            "backup" => self.backup,
            "restore" => self.restore,
            _ => false,
        }
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Permissions::from_names(&names).map_err(serde::de::Error::custom)
    }
}

/// An application or managed identity the emulator issues tokens to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Client (application) id.
    pub client_id: String,
    /// Object id (`oid` claim). None: derived from the client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// Client secret accepted by the token endpoint (None: secrets are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Subjects of federated tokens accepted as client assertions.
    #[serde(default)]
    pub federated_subjects: Vec<String>,
    /// Vault permissions.
    #[serde(default = "Permissions::all")]
    pub permissions: Permissions,
    /// Secrets (names, case-insensitive) this identity may not touch even with the permission.
    #[serde(default)]
    pub denied_secrets: Vec<String>,
    /// Whether the managed identity endpoint may issue tokens for it.
    #[serde(default)]
    pub managed_identity: bool,
    /// Certificate permissions (default all), e.g. `["get", "list"]`.
    #[serde(default)]
    pub certificates: ObjectPermissions,
    /// Key permissions (default all).
    #[serde(default)]
    pub keys: ObjectPermissions,
    /// Certificates (names, case-insensitive) this identity may not touch even with the permission.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_certificates: Vec<String>,
    /// Keys this identity may not touch even with the permission.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_keys: Vec<String>,
}

impl Identity {
    /// An identity with every permission and no credential yet.
    pub fn new(client_id: &str) -> Self {
        Identity {
            client_id: client_id.to_string(),
            object_id: None,
            client_secret: None,
            federated_subjects: Vec::new(),
            permissions: Permissions::all(),
            denied_secrets: Vec::new(),
            managed_identity: false,
            certificates: ObjectPermissions::all(),
            keys: ObjectPermissions::all(),
            denied_certificates: Vec::new(),
            denied_keys: Vec::new(),
        }
    }

    /// The object id, given or derived.
    pub fn oid(&self) -> String {
        self.object_id
            .clone()
            .unwrap_or_else(|| crate::util::uuid_from_name(&self.client_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_json() {
        let p: Permissions = serde_json::from_str(r#"["get","LIST"]"#).expect("valid");
        assert_eq!(p, Permissions::read_only());
        assert_eq!(
            serde_json::to_string(&p).expect("serializes"),
            r#"["get","list"]"#
        );
        assert!(serde_json::from_str::<Permissions>(r#"["fly"]"#).is_err());
        let all: Permissions = serde_json::from_str(r#"["all"]"#).expect("valid");
        assert_eq!(all, Permissions::all());
    }
}
