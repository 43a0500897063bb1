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

/// Declares a seed entry: serde with `deny_unknown_fields`; a field written `opt name: T` is an
/// `Option<T>` that may be absent and is left out of the JSON when `None`. Other fields are kept
/// as written.
macro_rules! seed_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        seed_struct!(@munch [$(#[$m])*] $name [] $($fields)*);
    };
    (@munch $m:tt $name:ident [$($out:tt)*] $(#[$fm:meta])* opt $field:ident: $ty:ty, $($rest:tt)*) => {
        seed_struct!(@munch $m $name [$($out)*
            $(#[$fm])*
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub $field: Option<$ty>,
        ] $($rest)*);
    };
    (@munch $m:tt $name:ident [$($out:tt)*] $(#[$fm:meta])* pub $field:ident: $ty:ty, $($rest:tt)*) => {
        seed_struct!(@munch $m $name [$($out)* $(#[$fm])* pub $field: $ty,] $($rest)*);
    };
    (@munch [$(#[$m:meta])*] $name:ident [$($out:tt)*]) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($out)*
        }
    };
}

/// Declares a seed certificate or key: its name, its versions (oldest first), the fields given,
/// then `enabled` and `tags` for every version.
macro_rules! seed_object {
    ($(#[$m:meta])* pub struct $name:ident of $version:ty { $($fields:tt)* }) => {
        seed_struct! {
            $(#[$m])*
            pub struct $name {
                /// Name (`^[0-9a-zA-Z-]{1,127}$`).
                pub name: String,
                /// Versions, oldest first.
                pub versions: Vec<$version>,
                $($fields)*
                /// Enabled (default true), for every version.
                opt enabled: bool,
                /// Tags of every version.
                opt tags: BTreeMap<String, String>,
            }
        }
    };
}

seed_object! {
    /// A certificate in a seed: its versions, oldest first.
    pub struct SeedCertificate of SeedCertVersion {
        /// Whether the backing secret holds the private key (default true); a version may
        /// override.
        opt exportable: bool,
    }
}

seed_struct! {
    /// One certificate version: exactly one of `pfx`, `pem`, `policy`.
    pub struct SeedCertVersion {
        /// Base64 PKCS#12 (password `password`, default empty).
        opt pfx: String,
        /// PEM text: the private key and the certificates.
        opt pem: String,
        /// Generate a self-signed certificate from this policy.
        opt policy: SeedPolicy,
        /// Password of `pfx`.
        opt password: String,
        /// Secret content type for `pfx`/`pem` (default: the form given).
        #[serde(
            default,
            rename = "contentType",
            alias = "content_type",
            skip_serializing_if = "Option::is_none"
        )]
        pub content_type: Option<String>,
        /// Overrides the certificate's `exportable`.
        opt exportable: bool,
        /// Enabled (default: the certificate's, else true).
        opt enabled: bool,
        /// Version id (32 hex digits); random when omitted.
        opt version: String,
    }
}

seed_struct! {
    /// A self-signed certificate to generate.
    pub struct SeedPolicy {
        /// Subject, e.g. `CN=app.example.com`.
        pub subject: String,
        /// `RSA` or `EC` (default RSA).
        opt kty: String,
        /// RSA size (2048, 3072, 4096; default 2048).
        opt key_size: u64,
        /// EC curve (P-256, P-384, P-521; default P-256).
        opt crv: String,
        /// Whether the secret holds the private key (default true).
        opt exportable: bool,
        /// `application/x-pkcs12` (default) or `application/x-pem-file`.
        opt content_type: String,
        /// DNS names (subject alternative names).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub dns_names: Vec<String>,
        /// Validity in months (default 12).
        opt validity_months: u32,
    }
}

seed_object! {
    /// A key in a seed: its versions, oldest first.
    pub struct SeedKey of SeedKeyVersion {}
}

seed_struct! {
    /// One key version: generated (`kty`, `key_size`, `crv`) or imported (`jwk`).
    pub struct SeedKeyVersion {
        /// `RSA` or `EC` (generate).
        opt kty: String,
        /// RSA size.
        opt key_size: u64,
        /// EC curve.
        opt crv: String,
        /// A JWK to import (public members are kept; private members are checked and dropped).
        opt jwk: Value,
        /// Enabled (default: the key's, else true).
        opt enabled: bool,
        /// Version id; random when omitted.
        opt version: String,
    }
}
