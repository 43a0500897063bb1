//! Reading the config file of `akvfs run`: several mounts, shared defaults.

use super::{ConfigError, MountConfig, MountOptions};

/// The config file for `akvfs run`: several mounts in one process.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfigFile {
    pub mlock: Option<bool>,
    pub metrics_listen: Option<String>,
    /// Include secret names as a label on per-secret metrics.
    pub metrics_secret_names: Option<bool>,
    #[serde(default)]
    pub defaults: MountOptions,
    #[serde(default, rename = "mount")]
    pub mounts: Vec<MountOptions>,
}

/// A validated config file.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub mlock: bool,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub metrics_secret_names: bool,
    pub mounts: Vec<MountConfig>,
}

/// Reads and validates a config file. Errors name the file, the field and
/// the problem.
pub fn load_config_file(path: &std::path::Path) -> Result<ConfigFile, ConfigError> {
    let file = || path.to_path_buf();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FileRead {
        path: file(),
        source,
    })?;
    let raw: RawConfigFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        ConfigError::FileSyntax {
            path: file(),
            line,
            source: Box::new(e),
        }
    })?;
    if raw.mounts.is_empty() {
        return Err(ConfigError::FileNoMounts { path: file() });
    }
    let mlock = raw.mlock.unwrap_or(true);
    let metrics_listen = match &raw.metrics_listen {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| ConfigError::FileMetricsListen {
            path: file(),
            value: s.clone(),
        })?),
    };
    let mut mounts = Vec::new();
    let mut paths = std::collections::HashSet::new();
    for (i, m) in raw.mounts.into_iter().enumerate() {
        let label = match &m.path {
            Some(p) => format!("[[mount]] #{} ({})", i + 1, p.display()),
            None => format!("[[mount]] #{}", i + 1),
        };
        let cfg = raw
            .defaults
            .clone()
            .overlay(m)
            .validate(true, mlock)
            .map_err(|source| ConfigError::FileMount {
                path: file(),
                mount: label.clone(),
                source: Box::new(source),
            })?;
        if !paths.insert(cfg.mountpoint.clone()) {
            return Err(ConfigError::FileDuplicatePath {
                path: file(),
                mount: label,
                mountpoint: cfg.mountpoint,
            });
        }
        mounts.push(cfg);
    }
    Ok(ConfigFile {
        mlock,
        metrics_listen,
        metrics_secret_names: raw.metrics_secret_names.unwrap_or(false),
        mounts,
    })
}
