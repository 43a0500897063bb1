//! The notice object's `data`, read as hostile input: whoever can write the
//! object (or sits between the node and the API server) chooses every byte.
//! Sizes, counts and numbers are bounded, types are exact, and anything else
//! is refused with a one-line reason. Nothing in a notice is a secret value.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::NoticeData;
use crate::secret::SecretName;

/// The largest `data` accepted, all keys and values together: a ConfigMap's
/// own limit.
pub const MAX_DATA_BYTES: usize = 1 << 20;
/// The most secrets one notice may describe (a 1 MiB object holds about
/// 10,000 at ~100 bytes each).
pub const MAX_SECRETS: usize = 25_000;
/// Largest fleet size and request limit taken from a notice.
pub const MAX_FLEET: u64 = 1_000_000;
pub const MAX_LIMIT: u64 = 1_000_000;
/// Times after 9999-12-31 are refused (and negative ones).
pub const MAX_UNIX: i64 = 253_402_300_799;

/// One secret as the watcher listed it. Metadata only.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SecretMeta {
    pub updated: i64,
    pub enabled: bool,
    #[serde(rename = "contentType", default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub expires: Option<i64>,
}

/// A parsed notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub vault: String,
    pub fleet_size: u32,
    pub limit_per_10s: u32,
    pub secrets: BTreeMap<SecretName, SecretMeta>,
    pub listed_at: i64,
    pub heartbeat: i64,
}

/// Why a notice's content cannot be used: what in it is wrong. Logged by
/// the node, which then treats the source as down.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("the ConfigMap has no data")]
    NoData,
    #[error("the notice is {size} bytes, more than the {MAX_DATA_BYTES} a ConfigMap may hold")]
    TooLarge { size: usize },
    #[error("the notice has no {key:?} field")]
    Missing { key: &'static str },
    #[error("the notice's vault is not an https:// URL")]
    Vault,
    #[error("{key} is not a decimal number (got {len} bytes)")]
    NotDecimal { key: &'static str, len: usize },
    /// At most 20 digits, so quoting it is bounded.
    #[error("{key} {value:?} is out of range")]
    Overflow { key: &'static str, value: String },
    #[error("{key} {value} is outside {min}..={max}")]
    OutOfRange {
        key: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("{what} {value} is not a plausible unix time")]
    Time { what: &'static str, value: i64 },
    /// Shared so that an event carrying it can be cloned.
    #[error("the notice's secrets are not valid: {0}")]
    Secrets(#[source] Arc<serde_json::Error>),
    #[error("the notice lists {count} secrets, more than {MAX_SECRETS}")]
    TooManySecrets { count: usize },
    /// The name's first 40 characters.
    #[error("the notice names a secret {name:?} that is not a valid Key Vault name")]
    SecretName { name: String },
    #[error("the content type of {name} is longer than 255 bytes")]
    ContentType { name: SecretName },
}

fn field<'a>(data: &'a NoticeData, key: &'static str) -> Result<&'a str, NoticeError> {
    data.get(key)
        .map(|v| v.trim())
        .ok_or(NoticeError::Missing { key })
}

fn number(data: &NoticeData, key: &'static str, min: u64, max: u64) -> Result<u64, NoticeError> {
    let v = field(data, key)?;
    let n: u64 = if v.len() <= 20 && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse().map_err(|_| NoticeError::Overflow {
            key,
            value: v.to_string(),
        })?
    } else {
        return Err(NoticeError::NotDecimal { key, len: v.len() });
    };
    if !(min..=max).contains(&n) {
        return Err(NoticeError::OutOfRange {
            key,
            value: n,
            min,
            max,
        });
    }
    Ok(n)
}

fn unix(what: &'static str, t: i64) -> Result<i64, NoticeError> {
    if (0..=MAX_UNIX).contains(&t) {
        Ok(t)
    } else {
        Err(NoticeError::Time { what, value: t })
    }
}

/// Parses and checks a notice object's `data`.
pub fn parse_notice(data: &NoticeData) -> Result<Notice, NoticeError> {
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_DATA_BYTES {
        return Err(NoticeError::TooLarge { size });
    }
    let vault = field(data, "vault")?.trim_end_matches('/').to_string();
    if !vault.starts_with("https://") || vault.len() > 300 {
        return Err(NoticeError::Vault);
    }
    let fleet_size = number(data, "fleetSize", 1, MAX_FLEET)? as u32;
    let limit_per_10s = number(data, "limitPer10s", 1, MAX_LIMIT)? as u32;
    let listed_at = unix(
        "listedAt",
        number(data, "listedAt", 0, MAX_UNIX as u64)? as i64,
    )?;
    let heartbeat = unix(
        "heartbeat",
        number(data, "heartbeat", 0, MAX_UNIX as u64)? as i64,
    )?;
    let raw: BTreeMap<String, SecretMeta> = serde_json::from_str(field(data, "secrets")?)
        .map_err(|e| NoticeError::Secrets(Arc::new(e)))?;
    if raw.len() > MAX_SECRETS {
        return Err(NoticeError::TooManySecrets { count: raw.len() });
    }
    let mut secrets = BTreeMap::new();
    for (name, meta) in raw {
        let Some(parsed) = SecretName::parse(&name) else {
            return Err(NoticeError::SecretName {
                name: name.chars().take(40).collect(),
            });
        };
        unix("updated", meta.updated)?;
        if let Some(e) = meta.expires {
            unix("expires", e)?;
        }
        if meta.content_type.as_ref().is_some_and(|c| c.len() > 255) {
            return Err(NoticeError::ContentType { name: parsed });
        }
        secrets.insert(parsed, meta);
    }
    Ok(Notice {
        vault,
        fleet_size,
        limit_per_10s,
        secrets,
        listed_at,
        heartbeat,
    })
}

impl Notice {
    /// The content as the watcher would write it (for fakes and tests).
    pub fn to_data(&self) -> NoticeData {
        let secrets: serde_json::Map<String, serde_json::Value> = self
            .secrets
            .iter()
            .map(|(n, m)| {
                (
                    n.to_string(),
                    serde_json::json!({
                        "updated": m.updated,
                        "enabled": m.enabled,
                        "contentType": m.content_type,
                        "expires": m.expires,
                    }),
                )
            })
            .collect();
        [
            ("vault", self.vault.clone()),
            ("fleetSize", self.fleet_size.to_string()),
            ("limitPer10s", self.limit_per_10s.to_string()),
            ("secrets", serde_json::Value::Object(secrets).to_string()),
            ("listedAt", self.listed_at.to_string()),
            ("heartbeat", self.heartbeat.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
