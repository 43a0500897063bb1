//! The change-notice settings of a mount (`notice`, `notice_poll_interval`,
//! `node_name`): parsed here, with the other settings, and followed by
//! `crate::notice`.

use std::time::Duration;

use super::ConfigError;

/// The default listing interval while notices are live.
pub const DEFAULT_LIVE_POLL: Duration = Duration::from_secs(6 * 3600);

/// Where a mount reads notices from, as written in its setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// `configmap:<namespace>/<name>`.
    ConfigMap { namespace: String, name: String },
}

impl SourceSpec {
    /// Parses `configmap:<namespace>/<name>`.
    pub fn parse(s: &str) -> Result<SourceSpec, ConfigError> {
        let value = || s.to_string();
        let rest = s
            .trim()
            .strip_prefix("configmap:")
            .ok_or_else(|| ConfigError::NoticeSource { value: value() })?;
        let (namespace, name) = rest
            .split_once('/')
            .ok_or_else(|| ConfigError::NoticeSourceSlash { value: value() })?;
        for (what, v, max) in [("namespace", namespace, 63), ("name", name, 253)] {
            if !is_dns_name(v, max) {
                return Err(ConfigError::NoticeSourceName {
                    value: value(),
                    what,
                    name: v.to_string(),
                    max,
                });
            }
        }
        if namespace.contains('.') {
            return Err(ConfigError::NoticeSourceNamespaceDot { value: value() });
        }
        Ok(SourceSpec::ConfigMap {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

fn is_dns_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// A mount's notice settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeConfig {
    pub source: SourceSpec,
    /// This node's name, the input of its delays (`NODE_NAME`, else the host
    /// name).
    pub node_name: String,
    /// The mount's listing interval while notices are live.
    pub live_poll: Duration,
}

/// The node name: `NODE_NAME` (set from the downward API), else the host
/// name.
pub fn default_node_name() -> Option<String> {
    if let Some(n) = std::env::var("NODE_NAME").ok().filter(|v| !v.is_empty()) {
        return Some(n);
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
