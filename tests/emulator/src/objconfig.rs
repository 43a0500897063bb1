//! Configuration of certificates and keys: per-identity permissions and the seed entries.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Permission names an access policy may grant on certificates or keys.
const KNOWN: &[&str] = &[
    "get",
    "list",
    "create",
    "import",
    "update",
    "delete",
    "purge",
    "recover",
    "backup",
    "restore",
    "managecontacts",
    "getissuers",
    "listissuers",
    "setissuers",
    "deleteissuers",
    "manageissuers",
    "decrypt",
    "encrypt",
    "unwrapkey",
    "wrapkey",
    "verify",
    "sign",
    "release",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
];

/// Certificate or key permissions of an identity (an access policy), e.g. `["get", "list"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPermissions {
    names: BTreeSet<String>,
}

impl Default for ObjectPermissions {
    fn default() -> Self {
        ObjectPermissions::all()
    }
}

impl ObjectPermissions {
    /// Every permission.
    pub fn all() -> Self {
        ObjectPermissions {
            names: KNOWN.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// None.
    pub fn none() -> Self {
        ObjectPermissions {
            names: BTreeSet::new(),
        }
    }

    /// `get` and `list`.
    pub fn read_only() -> Self {
        ObjectPermissions {
            names: ["get", "list"].iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Parses names (case-insensitive; `all` grants everything).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut p = ObjectPermissions::none();
        for n in names {
            let n = n.as_ref().to_ascii_lowercase();
            if n == "all" {
                return Ok(ObjectPermissions::all());
            }
            if !KNOWN.contains(&n.as_str()) {
                return Err(format!(
                    "unknown certificate/key permission {n:?}; expected one of {} or all",
                    KNOWN.join(", ")
                ));
            }
            p.names.insert(n);
        }
        Ok(p)
    }

    /// Whether `name` is granted.
    pub fn allows(&self, name: &str) -> bool {
        self.names.contains(&name.to_ascii_lowercase())
    }

    /// The granted names.
    pub fn names(&self) -> Vec<String> {
        self.names.iter().cloned().collect()
    }
}

impl Serialize for ObjectPermissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for ObjectPermissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        ObjectPermissions::from_names(&names).map_err(serde::de::Error::custom)
    }
}

/// A certificate in a seed: its versions, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCertificate {
    /// Name (`^[0-9a-zA-Z-]{1,127}$`).
    pub name: String,
    /// Versions, oldest first.
    pub versions: Vec<SeedCertVersion>,
    /// Whether the backing secret holds the private key (default true); a version may override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    /// Enabled (default true), for every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Tags of every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// One certificate version: exactly one of `pfx`, `pem`, `policy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCertVersion {
    /// Base64 PKCS#12 (password `password`, default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pfx: Option<String>,
    /// PEM text: the private key and the certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// Generate a self-signed certificate from this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<SeedPolicy>,
    /// Password of `pfx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Secret content type for `pfx`/`pem` (default: the form given).
    #[serde(
        default,
        rename = "contentType",
        alias = "content_type",
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
    /// Overrides the certificate's `exportable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    /// Enabled (default: the certificate's, else true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Version id (32 hex digits); random when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A self-signed certificate to generate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPolicy {
    /// Subject, e.g. `CN=app.example.com`.
    pub subject: String,
    /// `RSA` or `EC` (default RSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    /// RSA size (2048, 3072, 4096; default 2048).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u64>,
    /// EC curve (P-256, P-384, P-521; default P-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Whether the secret holds the private key (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    /// `application/x-pkcs12` (default) or `application/x-pem-file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// DNS names (subject alternative names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// Validity in months (default 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_months: Option<u32>,
}

/// A key in a seed: its versions, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedKey {
    /// Name.
    pub name: String,
    /// Versions, oldest first.
    pub versions: Vec<SeedKeyVersion>,
    /// Enabled (default true), for every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Tags of every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// One key version: generated (`kty`, `key_size`, `crv`) or imported (`jwk`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedKeyVersion {
    /// `RSA` or `EC` (generate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    /// RSA size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u64>,
    /// EC curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// A JWK to import (public members are kept; private members are checked and dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<Value>,
    /// Enabled (default: the key's, else true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Version id; random when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}
