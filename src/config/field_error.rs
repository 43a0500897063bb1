//! A mount setting that cannot be used: the setting, and what is wrong with
//! it as a type. The setting is named by its config key; whoever knows how
//! the user wrote it (flag, `-o` option, config key, volume attribute)
//! renders the name, and the problem renders its own advice.

use std::time::Duration;

use super::views_error::{ViewError, ViewSourceError};
use super::{AuthMode, ConfigError};

/// The smallest value cache a mount may have (`cache_bytes`).
pub(super) const MIN_CACHE_BYTES: u64 = 64 << 10;

/// A bad setting: which one, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The setting's config key (`cache_bytes`), also its `-o` option.
    pub field: &'static str,
    #[source]
    pub problem: Problem,
}

impl FieldError {
    /// Whether this is `field`'s error with a problem `is` accepts (for tests).
    #[cfg(test)]
    pub(crate) fn is(&self, field: &str, is: impl Fn(&Problem) -> bool) -> bool {
        self.field == field && is(&self.problem)
    }

    pub(super) fn new(field: &'static str, problem: impl Into<Problem>) -> FieldError {
        FieldError {
            field,
            problem: problem.into(),
        }
    }

    /// The field as a command-line flag.
    pub fn as_flag(&self) -> String {
        format!("--{}: {}", self.field.replace('_', "-"), self.problem)
    }
}

/// What is wrong with one setting. Values quoted here are settings (sizes,
/// durations, names, paths), never secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The setting is absent and has no default.
    #[error("is required")]
    Required,
    /// `node_name` is absent and no default can be found.
    #[error("is not set and neither NODE_NAME nor the host name is available")]
    NoNodeName,
    /// A value that does not parse: a size, duration, mode, vault or notice source.
    #[error("{0}")]
    Value(#[from] ConfigError),
    /// `auth` names no identity mode.
    #[error("{value:?} is not one of {}", auth_modes())]
    AuthMode { value: String },
    /// `cache_bytes` below [`MIN_CACHE_BYTES`].
    #[error("must be at least {}KiB (one Key Vault secret is up to 25KiB)", MIN_CACHE_BYTES >> 10)]
    CacheTooSmall { bytes: u64 },
    /// A duration that must not be zero.
    #[error("must be greater than zero")]
    Zero,
    /// A duration below its floor.
    #[error("must be at least {}", seconds_or_millis(*.min))]
    TooShort { value: Duration, min: Duration },
    /// A duration shorter than `refresh_interval`, which it must cover.
    #[error("must be at least the refresh interval")]
    BelowRefreshInterval { value: Duration, interval: Duration },
    /// A count outside its bounds; `vault_limit` when the upper bound is Key
    /// Vault's own limit rather than ours.
    #[error("must be between {min} and {max}{}", if *.vault_limit { " (Key Vault's own limit per vault)" } else { "" })]
    OutOfRange {
        value: u64,
        min: u64,
        max: u64,
        vault_limit: bool,
    },
    /// A views file, a SecretProviderClass or a `root` value that cannot be used.
    #[error("{0}")]
    ViewSource(#[from] ViewSourceError),
    /// A view, or the set of views, that cannot be used.
    #[error("{0}")]
    View(#[from] ViewError),
    /// `root = views` with no view declared: the mount would be empty.
    #[error(
        "views shows only declared views, and none is declared (add views, spc or [[mount.view]])"
    )]
    RootWithoutViews,
    /// `allow_root` with `allow_other`: FUSE takes one or the other.
    #[error("cannot be combined with allow_other, which already lets root and every other user in; set one of them")]
    RootWithOther,
    /// `allow_root` with modes that let group or others read: the modes are
    /// what keeps them out of such a mount.
    #[error("lets only root in besides the owner, but file_mode {file_mode:04o} / dir_mode {dir_mode:04o} would let other users read; use modes without group and other bits (the defaults 0400 and 0500), or allow_other if other users should read")]
    RootWithOpenModes { file_mode: u16, dir_mode: u16 },
}

/// The identity modes as `auth` takes them.
fn auth_modes() -> String {
    use clap::ValueEnum;
    AuthMode::value_variants()
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1s`, `1500ms`: a floor as a user would write it.
fn seconds_or_millis(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
