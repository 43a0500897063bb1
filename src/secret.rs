//! Domain types for secrets: validated names, version ids, metadata, and the
//! zeroizing buffer that holds a value.
//!
//! Nothing in this module can print a secret value: [`SecretBytes`] has a
//! redacting `Debug`, no `Display`, and wipes its memory when dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

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

/// Unescapes a JSON string literal (with its quotes, as serde_json's
/// `RawValue` holds it) straight into a zeroizing buffer. The buffer is sized
/// once (unescaping never lengthens), so no partial copy is left behind by a
/// reallocation. `None` if `raw` is not a string literal or holds an invalid
/// escape; a lone UTF-16 surrogate is refused, as serde_json refuses it.
pub fn unescape_json_string(raw: &str) -> Option<Zeroizing<Vec<u8>>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let bytes = inner.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' || b < 0x20 {
            return None;
        }
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let esc = *bytes.get(i + 1)?;
        i += 2;
        let simple = match esc {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return None,
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let hi = hex4(bytes.get(i..i + 4)?)?;
        i += 4;
        let code = match hi {
            0xD800..=0xDBFF => {
                if bytes.get(i) != Some(&b'\\') || bytes.get(i + 1) != Some(&b'u') {
                    return None;
                }
                let lo = hex4(bytes.get(i + 2..i + 6)?)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return None;
                }
                i += 6;
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return None,
            c => c,
        };
        let ch = char::from_u32(code)?;
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
        utf8.zeroize();
    }
    Some(out)
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc * 16 + v)
    })
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
    /// The vault's own clock (its HTTP `Date`, Unix seconds) when it
    /// answered the GET that produced these properties, if it said. Compared
    /// only with the vault's own `updated` times, never with the local clock.
    pub served_at: Option<i64>,
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
    /// Expiry (`exp` attribute), unix seconds.
    pub expires: Option<i64>,
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
    fn unescapes_json_strings_like_serde_json() {
        for s in [
            "",
            "plain",
            "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
            "quote \" backslash \\ slash / tab \t nul \0 bell \u{7}",
            "é 漢字 🎉",
        ] {
            let raw = serde_json::to_string(s).unwrap();
            assert_eq!(
                &unescape_json_string(&raw).unwrap()[..],
                s.as_bytes(),
                "{raw}"
            );
        }
        assert_eq!(
            &unescape_json_string(r#""\u00e9\ud83c\udf89\/""#).unwrap()[..],
            "é🎉/".as_bytes()
        );
        for bad in [
            r#"abc"#,
            r#""abc"#,
            r#""\x""#,
            r#""\u12""#,
            r#""\ud83c""#,
            r#""\udf89""#,
            r#""\ud83c\u0041""#,
            r#""a"b""#,
            "\"\n\"",
            r#""\""#,
        ] {
            assert!(unescape_json_string(bad).is_none(), "{bad:?} accepted");
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
