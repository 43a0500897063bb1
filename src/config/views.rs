//! File views: an explicit list of files, each one object of a vault (a
//! secret, a part of a certificate, a key's public part) at a chosen path,
//! optionally pinned, decoded or cut down to one JSON field. The vault is
//! the mount's, or another one named by the view (at most [`MAX_VAULTS`]
//! in all).
//!
//! Views come from `[[mount.view]]` tables, a views file (`views = FILE`,
//! `[[view]]` tables) and a SecretProviderClass (`spc = FILE`, see
//! [`super::spc`]); all three give [`RawView`]s (gathered in
//! `view_sources`), which [`validate_views`] checks as one set (paths
//! unique, no file that is also a directory). Failures are
//! [`super::views_error`]'s types.

use std::collections::BTreeMap;

use super::views_error::{PathError, ViewError};
use super::{parse_mode, parse_vault};
use crate::secret::SecretName;

/// Views a mount may declare at most.
pub const MAX_VIEWS: usize = 1024;
/// Largest `version_history`.
pub const MAX_HISTORY: u32 = 100;
/// Longest view path, in bytes.
pub const MAX_PATH: usize = 1024;
/// Vaults one mount reads from at most, its own included: each other vault
/// has its own client, cache and refresher.
pub const MAX_VAULTS: usize = 8;

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
    /// The URL of the vault to read from when it is not the mount's own
    /// (naming the mount's own vault gives `None`).
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
pub fn parse_view_path(p: &str) -> Result<Vec<String>, PathError> {
    if p.is_empty() {
        return Err(PathError::Empty);
    }
    if p.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if p.starts_with('/') {
        return Err(PathError::Absolute(p.into()));
    }
    let parts: Vec<String> = p.split('/').map(str::to_string).collect();
    for c in &parts {
        if c.is_empty() {
            return Err(PathError::EmptyComponent(p.into()));
        }
        if c == "." || c == ".." {
            return Err(PathError::Dots(p.into()));
        }
        if c.len() > 255 || c.bytes().any(|b| b == 0 || b.is_ascii_control()) {
            return Err(PathError::BadComponent(p.into()));
        }
    }
    if matches!(parts[0].as_str(), ".versions" | ".certs" | ".keys") {
        return Err(PathError::Reserved {
            path: p.into(),
            dir: parts[0].clone(),
        });
    }
    Ok(parts)
}

/// Checks one view; `label` names it in messages.
fn validate_one(raw: RawView, label: &str) -> Result<ViewSpec, ViewError> {
    let err = |field: &'static str, problem: String| ViewError::field(label, field, problem);
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
    let path = parse_view_path(raw.path.as_deref().unwrap_or(&name_s)).map_err(|source| {
        ViewError::Path {
            view: label.to_string(),
            source,
        }
    })?;
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
/// directory, at most [`MAX_VAULTS`] vaults. A view naming the mount's own
/// vault (`mount_vault`) gets `vault: None`, so `Some` always means another.
pub fn validate_views(raw: Vec<RawView>, mount_vault: &str) -> Result<Vec<ViewSpec>, ViewError> {
    if raw.len() > MAX_VIEWS {
        return Err(ViewError::TooMany { count: raw.len() });
    }
    let mut vaults: Vec<String> = vec![mount_vault.to_string()];
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
        let mut v = validate_one(r, &label)?;
        if v.vault.as_deref() == Some(mount_vault) {
            v.vault = None;
        }
        if let Some(url) = &v.vault {
            if !vaults.contains(url) {
                if vaults.len() == MAX_VAULTS {
                    return Err(ViewError::TooManyVaults {
                        view: label,
                        vault: url.clone(),
                    });
                }
                vaults.push(url.clone());
            }
        }
        for depth in 1..v.path.len() {
            let dir = v.path[..depth].to_vec();
            match seen.insert(dir.clone(), Seen::Dir) {
                None | Some(Seen::Dir) => {}
                Some(_) => {
                    return Err(ViewError::NotADirectory {
                        view: label,
                        dir: dir.join("/"),
                    })
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
                return Err(ViewError::HoldsViews {
                    view: label,
                    path: v.shown(),
                })
            }
            Some(_) => {
                return Err(ViewError::Duplicate {
                    view: label,
                    path: v.shown(),
                })
            }
        }
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
