//! `-o key[=value],…` option strings (the command line's `-o`, and mount(8)
//! from fstab) read into [`MountOptions`], each value typed by its field.

use std::path::PathBuf;

use super::{ConfigError, MountOptions};

/// How a value written after `-o key=` becomes the field's type.
pub(super) trait OptionValue {
    fn from_option(key: &str, value: Option<&str>) -> Result<toml::Value, ConfigError>;
}

impl OptionValue for bool {
    fn from_option(key: &str, value: Option<&str>) -> Result<toml::Value, ConfigError> {
        Ok(toml::Value::Boolean(match value {
            None | Some("true") | Some("1") | Some("yes") => true,
            Some("false") | Some("0") | Some("no") => false,
            Some(v) => {
                return Err(ConfigError::OptionBool {
                    key: key.to_string(),
                    value: v.to_string(),
                })
            }
        }))
    }
}

impl OptionValue for u32 {
    fn from_option(key: &str, value: Option<&str>) -> Result<toml::Value, ConfigError> {
        let v = value.ok_or_else(|| ConfigError::OptionNeedsValue {
            key: key.to_string(),
            form: "N",
        })?;
        Ok(toml::Value::Integer(v.parse().map_err(|_| {
            ConfigError::OptionNumber {
                key: key.to_string(),
                value: v.to_string(),
            }
        })?))
    }
}

impl OptionValue for String {
    fn from_option(key: &str, value: Option<&str>) -> Result<toml::Value, ConfigError> {
        Ok(toml::Value::String(
            value
                .ok_or_else(|| ConfigError::OptionNeedsValue {
                    key: key.to_string(),
                    form: "...",
                })?
                .to_string(),
        ))
    }
}

impl OptionValue for PathBuf {
    fn from_option(key: &str, value: Option<&str>) -> Result<toml::Value, ConfigError> {
        String::from_option(key, value)
    }
}

impl OptionValue for Vec<super::views::RawView> {
    fn from_option(key: &str, _value: Option<&str>) -> Result<toml::Value, ConfigError> {
        Err(ConfigError::OptionViews {
            key: key.to_string(),
        })
    }
}

/// Generic mount options that mount(8) and systemd pass along.
const IGNORED_OPTIONS: [&str; 22] = [
    "defaults",
    "ro",
    "rw",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "users",
    "nouser",
    "nodev",
    "nosuid",
    "noexec",
    "dev",
    "suid",
    "exec",
    "atime",
    "noatime",
    "relatime",
    "nodiratime",
    "async",
    "sync",
];

/// Mount options as given to `-o` (and by mount(8) from fstab), split into
/// akvfs settings and the process-level `no_mlock`. Generic mount options that
/// mount(8) and systemd pass along are accepted and ignored.
pub fn parse_mount_options(opts: &str) -> Result<(MountOptions, bool), ConfigError> {
    let mut table = toml::Table::new();
    let mut mlock = true;
    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (opt, None),
        };
        if IGNORED_OPTIONS.contains(&key) || key.starts_with("x-") || key.starts_with("comment=") {
            continue;
        }
        if key == "no_mlock" {
            mlock = false;
            continue;
        }
        // An unknown key goes in as a string; deserializing names it.
        let value = MountOptions::option_value(key, value)
            .unwrap_or_else(|| String::from_option(key, value))?;
        table.insert(key.to_string(), value);
    }
    let raw: MountOptions = toml::Value::Table(table)
        .try_into()
        .map_err(|e| ConfigError::Options(Box::new(e)))?;
    Ok((raw, mlock))
}
