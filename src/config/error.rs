//! The configuration layer's error: which setting value failed to parse and
//! the form it should take. The setting's own name (flag, `-o` key or config
//! key) is added by whoever knows how the user wrote it.

use std::path::PathBuf;

use super::field_error::FieldError;

/// A setting's value that does not parse. Values are durations, sizes,
/// modes, vault names and option keys, never secret bytes, so they are quoted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{value:?} is not a size; use e.g. 64MiB, 512KiB or 1048576")]
    Size { value: String },
    #[error("{value:?} has an unknown unit; use B, KiB, MiB or GiB")]
    SizeUnit { value: String },
    #[error("{value:?} is too large")]
    SizeTooLarge { value: String },
    #[error("{value:?} is not an octal mode like 0400")]
    Mode { value: String },
    #[error("{value:?} is not a valid mode (at most 07777)")]
    ModeRange { value: String },
    #[error("{value:?}: setuid, setgid and sticky bits are not allowed")]
    ModeSpecialBits { value: String },
    #[error("{value:?} is not a duration; use e.g. 500ms, 30s, 10m or 24h")]
    Duration { value: String },
    #[error("{value:?} has an unknown unit; use ms, s, m or h")]
    DurationUnit { value: String },
    #[error("{value:?} is out of range")]
    DurationRange { value: String },
    #[error("vault URL {input:?} must use https:// (Key Vault only serves HTTPS)")]
    VaultScheme { input: String },
    #[error(
        "vault URL {input:?} must be just scheme and host, like https://myvault.vault.azure.net"
    )]
    VaultUrl { input: String },
    #[error("{input:?} is neither a vault name (3-24 letters, digits and single hyphens, starting with a letter) nor an https:// URL")]
    VaultName { input: String },
    #[error("{value:?} is not a notice source; expected configmap:<namespace>/<name>")]
    NoticeSource { value: String },
    #[error("{value:?}: expected configmap:<namespace>/<name> (a slash between them)")]
    NoticeSourceSlash { value: String },
    #[error("{value:?}: the {what} {name:?} is not a valid Kubernetes name (lower-case letters, digits, '-' and '.', at most {max})")]
    NoticeSourceName {
        value: String,
        /// `namespace` or `name`.
        what: &'static str,
        name: String,
        max: usize,
    },
    #[error("{value:?}: a namespace cannot contain '.'")]
    NoticeSourceNamespaceDot { value: String },
    #[error("-o {key}={value}: expected true or false")]
    OptionBool { key: String, value: String },
    #[error("-o {key} needs a value ({key}={form})")]
    OptionNeedsValue { key: String, form: &'static str },
    #[error("-o {key}={value}: not a number")]
    OptionNumber { key: String, value: String },
    #[error("-o {key}: views are declared in a file: -o views=FILE or -o spc=FILE")]
    OptionViews { key: String },
    /// An unknown key or a value of the wrong type, as the option table's
    /// deserializer names it.
    #[error("-o: {}", .0.message())]
    Options(#[source] Box<toml::de::Error>),
    #[error("cannot read config file {}: {source}", path.display())]
    FileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML that does not parse or does not fit the file's fields.
    #[error("config file {}{}: {}", path.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default(), source.message())]
    FileSyntax {
        path: PathBuf,
        line: Option<usize>,
        source: Box<toml::de::Error>,
    },
    #[error("config file {}: no [[mount]] sections; add at least one with vault and path", path.display())]
    FileNoMounts { path: PathBuf },
    #[error("config file {}: metrics_listen: {value:?} is not an address like 127.0.0.1:9464", path.display())]
    FileMetricsListen { path: PathBuf, value: String },
    /// A `[[mount]]` section with a bad setting, named as its config key.
    #[error("config file {}: {mount}: {}: {}", path.display(), source.field, source.problem)]
    FileMount {
        path: PathBuf,
        /// `[[mount]] #N (path)`.
        mount: String,
        source: Box<FieldError>,
    },
    #[error("config file {}: {mount}: path {} is used by another mount", path.display(), mountpoint.display())]
    FileDuplicatePath {
        path: PathBuf,
        mount: String,
        mountpoint: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::ConfigError;
    use crate::config::{parse_duration, parse_mode, parse_mount_options, parse_size, parse_vault};
    use crate::config::{FieldError, Problem};

    #[test]
    fn each_kind_of_bad_value_has_its_variant() {
        let e = parse_duration("1y").unwrap_err();
        assert!(matches!(e, ConfigError::DurationUnit { .. }), "{e:?}");
        assert!(matches!(
            parse_duration("x").unwrap_err(),
            ConfigError::Duration { .. }
        ));
        assert!(matches!(
            parse_duration("1.2.3s").unwrap_err(),
            ConfigError::Duration { .. }
        ));
        assert!(matches!(
            parse_duration("400000h").unwrap_err(),
            ConfigError::DurationRange { .. }
        ));
        assert!(matches!(
            parse_size("lots").unwrap_err(),
            ConfigError::Size { .. }
        ));
        assert!(matches!(
            parse_size("5 parsecs").unwrap_err(),
            ConfigError::SizeUnit { .. }
        ));
        assert!(matches!(
            parse_size("99999999999999GiB").unwrap_err(),
            ConfigError::SizeTooLarge { .. }
        ));
        assert!(matches!(
            parse_mode("0800").unwrap_err(),
            ConfigError::Mode { .. }
        ));
        assert!(matches!(
            parse_mode("17777").unwrap_err(),
            ConfigError::ModeRange { .. }
        ));
        assert!(matches!(
            parse_mode("4755").unwrap_err(),
            ConfigError::ModeSpecialBits { .. }
        ));
        assert!(matches!(
            parse_vault("http://kv").unwrap_err(),
            ConfigError::VaultScheme { .. }
        ));
        assert!(matches!(
            parse_vault("https://kv/x").unwrap_err(),
            ConfigError::VaultUrl { .. }
        ));
        assert!(matches!(
            parse_vault("-kv").unwrap_err(),
            ConfigError::VaultName { .. }
        ));
    }

    #[test]
    fn each_kind_of_bad_option_has_its_variant() {
        let e = parse_mount_options("allow_other=maybe").unwrap_err();
        assert!(
            matches!(&e, ConfigError::OptionBool { key, .. } if key == "allow_other"),
            "{e:?}"
        );
        assert!(matches!(
            parse_mount_options("uid").unwrap_err(),
            ConfigError::OptionNeedsValue { .. }
        ));
        assert!(matches!(
            parse_mount_options("uid=x").unwrap_err(),
            ConfigError::OptionNumber { .. }
        ));
        assert!(matches!(
            parse_mount_options("view=x").unwrap_err(),
            ConfigError::OptionViews { .. }
        ));
        let e = parse_mount_options("bogus=1").unwrap_err();
        assert!(matches!(e, ConfigError::Options(_)), "{e:?}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn each_kind_of_bad_config_file_has_its_variant() {
        use crate::config::load_config_file;
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let f = dir.path().join("c.toml");
            std::fs::write(&f, text).unwrap();
            load_config_file(&f).unwrap_err()
        };
        let e = load_config_file(&dir.path().join("absent.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::FileRead { .. }), "{e:?}");
        let e = load("mlock = false\n");
        assert!(matches!(e, ConfigError::FileNoMounts { .. }), "{e:?}");
        let e = load("metrics_listen = \"here\"\n[[mount]]\nvault = \"kv1\"\npath = \"/a\"\n");
        assert!(
            matches!(&e, ConfigError::FileMetricsListen { value, .. } if value == "here"),
            "{e:?}"
        );
        let e = load("[[mount]]\nvault = \"kv1\"\npath = \"/a\"\nfetch_timeout = \"soon\"\n");
        assert!(
            matches!(&e, ConfigError::FileMount { source, .. } if matches!(
                **source,
                FieldError {
                    field: "fetch_timeout",
                    problem: Problem::Value(ConfigError::Duration { .. })
                }
            )),
            "{e:?}"
        );
        let e = load("[[mount]]\nvault = \"kv1\"\npath = \"/a\"\n[[mount]]\nvault = \"kv2\"\npath = \"/a\"\n");
        assert!(matches!(e, ConfigError::FileDuplicatePath { .. }), "{e:?}");
        assert!(e.to_string().contains("used by another mount"), "{e}");
    }
}
