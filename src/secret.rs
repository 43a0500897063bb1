//! Domain types for secrets: validated names, version ids, metadata, and the
//! zeroizing buffer that holds a value.
//!
//! Nothing in this module can print a secret value: [`SecretBytes`] has a
//! redacting `Debug`, no `Display`, and wipes its memory when dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::locked::LockedBuf;

/// A Key Vault secret name: 1 to 127 characters of `[0-9a-zA-Z-]`.
///
/// File names in the mount are exactly these names; anything else (dot files,
/// editor swap files, names with spaces) can never exist in a vault, so such
/// lookups are answered without a network call.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(Arc<str>);

impl SecretName {
    /// Validates `s` against the Key Vault naming rule.
    pub fn parse(s: &str) -> Option<SecretName> {
        let ok = !s.is_empty()
            && s.len() <= 127
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| SecretName(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The version part of a secret id (32 hex characters in Azure).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId(Arc<str>);

impl VersionId {
    pub fn new(s: &str) -> VersionId {
        VersionId(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret value. The bytes live in locked memory (see [`crate::locked`])
/// and are wiped when the last owner drops them.
pub struct SecretBytes(LockedBuf);

impl SecretBytes {
    /// Moves `bytes` into locked memory; the given buffer is wiped on return.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> SecretBytes {
        SecretBytes(LockedBuf::copy_from(&bytes))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub fn len(&self) -> usize {
        self.0.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_slice().is_empty()
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(b: &[u8]) -> Self {
        SecretBytes(LockedBuf::copy_from(b))
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {} bytes])", self.len())
    }
}

/// Metadata of one secret version, as Key Vault reports it. Holds no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretProps {
    pub name: SecretName,
    pub version: VersionId,
    /// The full id, `https://{vault}/secrets/{name}/{version}`.
    pub id: String,
    pub content_type: Option<String>,
    pub enabled: bool,
    /// Unix seconds.
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub expires: Option<i64>,
    pub not_before: Option<i64>,
    pub tags: BTreeMap<String, String>,
}

/// One secret version with its value.
#[derive(Debug)]
pub struct Secret {
    pub props: SecretProps,
    pub value: SecretBytes,
}

/// What a list page says about a secret: its latest version's attributes,
/// without the version id or the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSummary {
    pub name: SecretName,
    pub enabled: bool,
    pub content_type: Option<String>,
    pub updated: Option<i64>,
    /// Secrets that back a Key Vault certificate (`managed: true`).
    pub managed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_key_vault_rules() {
        assert!(SecretName::parse("db-password").is_some());
        assert!(SecretName::parse("A1-b2").is_some());
        assert!(SecretName::parse(&"a".repeat(127)).is_some());
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a_b",
            "a b",
            "a.txt",
            "ä",
            &"a".repeat(128),
        ] {
            assert!(SecretName::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn debug_never_shows_value() {
        let v = SecretBytes::from(&b"hunter2"[..]);
        let shown = format!("{v:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("7 bytes"));
    }
}
