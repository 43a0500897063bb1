//! File views: an explicit list of files, each one object of the vault
//! (a secret, a part of a certificate, a key's public part) at a chosen
//! path, optionally pinned, decoded or cut down to one JSON field.
//!
//! Views come from `[[mount.view]]` tables, a views file (`views = FILE`,
//! `[[view]]` tables) and a SecretProviderClass (`spc = FILE`, see
//! [`super::spc`]); all three give [`RawView`]s (gathered in `view_sources`), which [`validate_views`]
//! checks as one set (paths unique, no file that is also a directory).

use std::collections::BTreeMap;

use super::{parse_mode, parse_vault};
use crate::secret::SecretName;

/// Views a mount may declare at most.
pub const MAX_VIEWS: usize = 1024;
/// Largest `version_history`.
pub const MAX_HISTORY: u32 = 100;
/// Longest view path, in bytes.
const MAX_PATH: usize = 1024;

/// One view as written in a config file, a views file or converted from a
/// SecretProviderClass object. Every field optional; [`validate_views`]
/// applies defaults and checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawView {
    /// The file's path in the mount, relative, `/` between directories.
    pub path: Option<String>,
    /// The object's name in the vault.
    pub name: Option<String>,
    /// `secret` (default), `cert` or `key`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `cert`: which file of `.certs/<name>/` (default `leaf.crt`); `key`:
    /// `pem` (default) or `jwk`.
    pub part: Option<String>,
    /// `secret`: `pem` (default: a PKCS#12 certificate secret becomes PEM)
    /// or `pfx` (the value as stored).
    pub format: Option<String>,
    /// A version id to pin (`latest` or empty: the newest).
    pub version: Option<String>,
    /// A directory of the newest N enabled versions, `0` newest.
    pub version_history: Option<u32>,
    /// `utf-8` (default), `base64` or `hex`: how the value is stored.
    pub encoding: Option<String>,
    /// An RFC 6901 pointer into the value as JSON.
    pub json_pointer: Option<String>,
    /// The file's mode, octal.
    pub mode: Option<String>,
    /// A missing object leaves the file absent instead of failing.
    pub optional: Option<bool>,
    /// The vault to read from, when not the mount's.
    pub vault: Option<String>,
}

/// How a secret's value is stored in the vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Base64,
    Hex,
}

/// The file a certificate view shows: one of `.certs/<name>/`'s.
pub const CERT_PARTS: [&str; 6] = [
    "tls.crt", "tls.key", "tls.pem", "leaf.crt", "ca.crt", "cert.pfx",
];

/// What a view shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewObject {
    /// A secret's value; `pem` turns a PKCS#12 certificate secret into PEM
    /// (key, then the chain leaf first) as the CSI provider does.
    Secret { pem: bool },
    /// A file derived from a certificate's secret.
    Cert(&'static str),
    /// A key's public part, as PEM (SubjectPublicKeyInfo) or JWK.
    Key { jwk: bool },
}

/// A validated view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewSpec {
    /// The path's components.
    pub path: Vec<String>,
    pub name: SecretName,
    pub object: ViewObject,
    /// A pinned version id.
    pub version: Option<String>,
    /// Files `0..N-1`, newest first.
    pub history: Option<u32>,
    pub encoding: Encoding,
    pub json_pointer: Option<String>,
    pub mode: Option<u16>,
    pub optional: bool,
    /// The vault URL when another than the mount's was named.
    pub vault: Option<String>,
}

impl ViewSpec {
    /// The path as written, for messages.
    pub fn shown(&self) -> String {
        self.path.join("/")
    }
}

/// What the mount's root shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewRoot {
    /// Every secret of the vault, the special trees, and the views.
    Vault,
    /// Only the declared views (allow-listing).
    Views,
}

/// Checks a view's path and splits it into components.
pub fn parse_view_path(p: &str) -> Result<Vec<String>, String> {
    if p.is_empty() {
        return Err("path is empty".into());
    }
    if p.len() > MAX_PATH {
        return Err(format!("path is longer than {MAX_PATH} bytes"));
    }
    if p.starts_with('/') {
        return Err(format!(
            "path {p:?} is absolute; write it relative to the mount"
        ));
    }
    let parts: Vec<String> = p.split('/').map(str::to_string).collect();
    for c in &parts {
        if c.is_empty() {
            return Err(format!(
                "path {p:?} has an empty component (// or a trailing /)"
            ));
        }
        if c == "." || c == ".." {
            return Err(format!("path {p:?} may not contain . or .."));
        }
        if c.len() > 255 || c.bytes().any(|b| b == 0 || b.is_ascii_control()) {
            return Err(format!(
                "path {p:?} has a component that is too long or holds control characters"
            ));
        }
    }
    if matches!(parts[0].as_str(), ".versions" | ".certs" | ".keys") {
        return Err(format!(
            "path {p:?} collides with the mount's {} directory",
            parts[0]
        ));
    }
    Ok(parts)
}

/// Checks one view; `label` names it in messages.
fn validate_one(raw: RawView, label: &str) -> Result<ViewSpec, String> {
    let err = |field: &str, problem: String| format!("{label}: {field}: {problem}");
    let name_s = raw.name.ok_or_else(|| {
        err(
            "name",
            "is required (the object's name in the vault)".into(),
        )
    })?;
    let name = SecretName::parse(&name_s).ok_or_else(|| {
        err(
            "name",
            format!("{name_s:?} is not a Key Vault object name (1-127 letters, digits and -)"),
        )
    })?;
    let path =
        parse_view_path(raw.path.as_deref().unwrap_or(&name_s)).map_err(|e| err("path", e))?;
    let kind = raw.kind.as_deref().unwrap_or("secret");
    let object = match kind {
        "secret" => {
            if let Some(p) = &raw.part {
                return Err(err(
                    "part",
                    format!("{p:?} applies to type cert or key only"),
                ));
            }
            let pem = match raw.format.as_deref() {
                None | Some("pem") => true,
                Some("pfx") => false,
                Some(f) => return Err(err("format", format!("{f:?} is not pem or pfx"))),
            };
            ViewObject::Secret { pem }
        }
        "cert" => {
            let part = raw.part.as_deref().unwrap_or("leaf.crt");
            let part = CERT_PARTS.iter().find(|p| **p == part).ok_or_else(|| {
                err(
                    "part",
                    format!("{part:?} is not one of {}", CERT_PARTS.join(", ")),
                )
            })?;
            ViewObject::Cert(part)
        }
        "key" => match raw.part.as_deref() {
            None | Some("pem") => ViewObject::Key { jwk: false },
            Some("jwk") => ViewObject::Key { jwk: true },
            Some(p) => return Err(err("part", format!("{p:?} is not pem or jwk"))),
        },
        other => return Err(err("type", format!("{other:?} is not secret, cert or key"))),
    };
    let is_secret = matches!(object, ViewObject::Secret { .. });
    if !is_secret && raw.format.is_some() {
        return Err(err("format", "applies to type secret only".into()));
    }
    let encoding = match raw
        .encoding
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("utf-8") | Some("utf8") => Encoding::Utf8,
        Some("base64") => Encoding::Base64,
        Some("hex") => Encoding::Hex,
        Some(e) => {
            return Err(err(
                "encoding",
                format!("{e:?} is not utf-8, base64 or hex"),
            ))
        }
    };
    if !is_secret && encoding != Encoding::Utf8 {
        return Err(err("encoding", "applies to type secret only".into()));
    }
    if let Some(ptr) = &raw.json_pointer {
        if !is_secret {
            return Err(err("json_pointer", "applies to type secret only".into()));
        }
        if !ptr.starts_with('/') {
            return Err(err(
                "json_pointer",
                format!("{ptr:?} is not an RFC 6901 pointer (it starts with /, like /db/password)"),
            ));
        }
    }
    let version = match raw.version.as_deref() {
        None | Some("") | Some("latest") => None,
        Some(v) if v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Some(v.to_string())
        }
        Some(v) => {
            return Err(err(
                "version",
                format!("{v:?} is not a version id (letters and digits, like the 32 hex digits Key Vault gives)"),
            ))
        }
    };
    let history = match raw.version_history {
        None => None,
        Some(n) if (1..=MAX_HISTORY).contains(&n) => Some(n),
        Some(n) => {
            return Err(err(
                "version_history",
                format!("{n} is not between 1 and {MAX_HISTORY}"),
            ))
        }
    };
    if history.is_some() && version.is_some() {
        return Err(err(
            "version_history",
            "cannot be combined with a pinned version".into(),
        ));
    }
    if history.is_some() && matches!(object, ViewObject::Key { .. }) {
        return Err(err(
            "version_history",
            "is supported for secrets and certificates, not keys".into(),
        ));
    }
    let mode = raw
        .mode
        .as_deref()
        .map(parse_mode)
        .transpose()
        .map_err(|e| err("mode", e.to_string()))?;
    let vault = raw
        .vault
        .as_deref()
        .map(parse_vault)
        .transpose()
        .map_err(|e| err("vault", e.to_string()))?;
    Ok(ViewSpec {
        path,
        name,
        object,
        version,
        history,
        encoding,
        json_pointer: raw.json_pointer,
        mode,
        optional: raw.optional.unwrap_or(false),
        vault,
    })
}

/// Checks every view and the set: unique paths, no path both a file and a
/// directory, views of the mount's own vault (`mount_vault`).
pub fn validate_views(raw: Vec<RawView>, mount_vault: &str) -> Result<Vec<ViewSpec>, String> {
    if raw.len() > MAX_VIEWS {
        return Err(format!(
            "{} views; at most {MAX_VIEWS} are allowed",
            raw.len()
        ));
    }
    let mut out: Vec<ViewSpec> = Vec::with_capacity(raw.len());
    // What each path already is: a view's file, a view's history
    // directory, or a directory holding views.
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        File,
        History,
        Dir,
    }
    let mut seen: BTreeMap<Vec<String>, Seen> = BTreeMap::new();
    for (i, r) in raw.into_iter().enumerate() {
        let label = match (&r.path, &r.name) {
            (Some(p), _) | (None, Some(p)) => format!("view {p:?}"),
            _ => format!("view #{}", i + 1),
        };
        let v = validate_one(r, &label)?;
        if let Some(url) = &v.vault {
            if url != mount_vault {
                return Err(format!(
                    "{label}: vault: {url} is not the mount's vault ({mount_vault}); views of another vault are not supported yet, declare a second mount for it"
                ));
            }
        }
        for depth in 1..v.path.len() {
            let dir = v.path[..depth].to_vec();
            match seen.insert(dir.clone(), Seen::Dir) {
                None | Some(Seen::Dir) => {}
                Some(_) => {
                    return Err(format!(
                        "{label}: path: {:?} is a file or version history of another view and cannot also hold views",
                        dir.join("/")
                    ))
                }
            }
        }
        let this = if v.history.is_some() {
            Seen::History
        } else {
            Seen::File
        };
        match seen.insert(v.path.clone(), this) {
            None => {}
            Some(Seen::Dir) => {
                return Err(format!(
                    "{label}: path: {:?} is a directory holding other views",
                    v.shown()
                ))
            }
            Some(_) => return Err(format!("{label}: path: {:?} is declared twice", v.shown())),
        }
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
