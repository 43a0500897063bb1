//! The notice object: one ConfigMap per vault, written by the leader, read by
//! every node. Metadata only; a value never appears here.
//!
//! `data` keys: `vault` (the URL), `fleetSize`, `limitPer10s`, `secrets` (a
//! JSON object: name -> `{"updated", "enabled", "contentType", "expires"}`),
//! `listedAt` and `heartbeat` (unix seconds).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::secret::SecretSummary;

/// Labels every notice carries.
pub const LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/name", "akvfs"),
    ("app.kubernetes.io/component", "notice"),
];

/// One secret's published metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    pub updated: i64,
    pub enabled: bool,
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    pub expires: Option<i64>,
}

/// What a notice says; `listedAt` and `heartbeat` aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub secrets: BTreeMap<String, SecretMeta>,
    pub fleet_size: u64,
}

/// The notice's name for a vault URL: `akvfs-notice-` and the host's first
/// label, lowercased.
pub fn object_name(vault_url: &str) -> String {
    let host = vault_url
        .trim_start_matches("https://")
        .split([':', '/'])
        .next()
        .unwrap_or_default();
    let label = host.split('.').next().unwrap_or_default();
    format!("akvfs-notice-{}", label.to_ascii_lowercase())
}

/// The listing as published: every secret by name.
pub fn secrets_from(listing: &[SecretSummary]) -> BTreeMap<String, SecretMeta> {
    listing
        .iter()
        .map(|s| {
            (
                s.name.as_str().to_string(),
                SecretMeta {
                    updated: s.updated.unwrap_or(0),
                    enabled: s.enabled,
                    content_type: s.content_type.clone(),
                    expires: s.expires,
                },
            )
        })
        .collect()
}

/// Reads back what a notice in the API server says, if it is one of ours and
/// well formed; anything else counts as different and is rewritten.
pub fn parse(cm: &ConfigMap) -> Option<(Content, i64)> {
    let data = cm.data.as_ref()?;
    let secrets = serde_json::from_str(data.get("secrets")?).ok()?;
    let fleet_size = data.get("fleetSize")?.parse().ok()?;
    let heartbeat = data.get("heartbeat")?.parse().ok()?;
    Some((
        Content {
            secrets,
            fleet_size,
        },
        heartbeat,
    ))
}

/// The ConfigMap for `content`, listed at `listed_at`, written at `now`.
pub fn build(
    name: &str,
    vault_url: &str,
    limit_per_10s: u32,
    content: &Content,
    listed_at: i64,
    now: i64,
) -> ConfigMap {
    let secrets = serde_json::to_string(&content.secrets).unwrap_or_else(|_| "{}".into());
    let data = BTreeMap::from([
        ("vault".to_string(), vault_url.to_string()),
        ("fleetSize".to_string(), content.fleet_size.to_string()),
        ("limitPer10s".to_string(), limit_per_10s.to_string()),
        ("secrets".to_string(), secrets),
        ("listedAt".to_string(), listed_at.to_string()),
        ("heartbeat".to_string(), now.to_string()),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                LABELS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_first_label() {
        assert_eq!(
            object_name("https://MyVault.vault.azure.net"),
            "akvfs-notice-myvault"
        );
        assert_eq!(object_name("https://127.0.0.1:8443"), "akvfs-notice-127");
    }

    #[test]
    fn round_trips_and_holds_no_value() {
        let content = Content {
            secrets: BTreeMap::from([(
                "db".to_string(),
                SecretMeta {
                    updated: 5,
                    enabled: true,
                    content_type: None,
                    expires: Some(9),
                },
            )]),
            fleet_size: 3,
        };
        let cm = build("n", "https://v.vault.azure.net", 400, &content, 1, 2);
        assert_eq!(parse(&cm), Some((content, 2)));
        let text = &cm.data.as_ref().unwrap()["secrets"];
        assert_eq!(
            text,
            r#"{"db":{"updated":5,"enabled":true,"contentType":null,"expires":9}}"#
        );
    }
}
