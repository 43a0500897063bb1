//! The seed: initial or additional secrets, identities, certificates and keys.
//!
//! The seed: initial (or additional) secrets, identities, certificates and keys, read from the
//! `--seed` file or the body of `POST /_emulator/seed`.

use crate::config::{Identity, SeedCertificate, SeedKey};
use serde::{Deserialize, Serialize};

/// Initial (or additional) content: the seed file given with `--seed` and the body of
/// `POST /_emulator/seed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Secrets to create (added as new versions when the name exists).
    #[serde(default)]
    pub secrets: Vec<SeedSecret>,
    /// Identities to add; one with the default client id replaces the default identity.
    #[serde(default)]
    pub identities: Vec<Identity>,
    /// Certificates to create (added as new versions when the name exists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<SeedCertificate>,
    /// Keys to create (added as new versions when the name exists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<SeedKey>,
}

crate::props::with_props! {
    /// One secret in a seed. Give either `value` (one version) or `versions` (oldest first);
    /// `contentType`, `tags`, `enabled`, `exp` and `nbf` apply to that single version.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SeedSecret {
        /// Secret name (`^[0-9a-zA-Z-]{1,127}$`).
        pub name: String,
        /// Value of a single version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub value: Option<String>,
    }
    then {
        /// Creation time, Unix seconds (default: now).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub created: Option<i64>,
        /// Several versions, oldest first; the last one is the latest.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub versions: Vec<SeedVersion>,
        /// Soft-delete the secret after creating it.
        #[serde(default)]
        pub deleted: bool,
    }
}

crate::props::with_props! {
    /// One version of a seeded secret.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SeedVersion {
        /// The value.
        pub value: String,
        /// Version id (32 hex digits); None: random.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub version: Option<String>,
    }
    then {
        /// Creation time, Unix seconds (default: now).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub created: Option<i64>,
    }
}

impl Seed {
    /// Parses seed JSON.
    pub fn from_json(text: &str) -> Result<Seed, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid seed JSON: {e}"))
    }

    /// Reads a seed file.
    pub fn from_file(path: &std::path::Path) -> Result<Seed, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read seed file {}: {e}", path.display()))?;
        Seed::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Permissions;

    #[test]
    fn seed_format() {
        let seed = Seed::from_json(
            r#"{
              "secrets": [
                {"name": "db-password", "value": "s3cret", "contentType": "text/plain",
                 "tags": {"env": "dev"}, "enabled": true, "exp": 1900000000},
                {"name": "api-key", "versions": [
                    {"value": "v1", "enabled": false},
                    {"value": "v2", "version": "0123456789abcdef0123456789abcdef", "nbf": 1}
                ]},
                {"name": "old", "value": "x", "deleted": true}
              ],
              "identities": [
                {"client_id": "reader", "client_secret": "pw", "permissions": ["get", "list"],
                 "federated_subjects": ["system:serviceaccount:ns:reader"],
                 "denied_secrets": ["db-password"], "managed_identity": true}
              ]
            }"#,
        )
        .expect("valid seed");
        assert_eq!(seed.secrets.len(), 3);
        assert_eq!(seed.secrets[0].content_type.as_deref(), Some("text/plain"));
        assert_eq!(seed.secrets[1].versions.len(), 2);
        assert!(seed.secrets[2].deleted);
        assert_eq!(seed.identities[0].permissions, Permissions::read_only());
        assert!(Seed::from_json(r#"{"secretz": []}"#).is_err());
    }
}
