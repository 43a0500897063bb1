//! Turning [`MountOptions`] into a checked [`MountConfig`]: defaults from the
//! environment and the built-in values, and one rule per field with the
//! field named in its error.

use std::path::PathBuf;
use std::time::Duration;

use super::field_error::{FieldError, Problem, MIN_CACHE_BYTES};
use super::options::MountOptions;
use super::{
    parse_duration, parse_mode, parse_size, parse_vault, AuthConfig, AuthMode, CacheConfig,
    MountConfig, OwnerConfig, VaultConfig,
};
use super::{ENV_CLIENT_ID, ENV_FEDERATED_TOKEN_FILE, ENV_TENANT_ID};

/// A setting from the environment; empty counts as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl MountOptions {
    /// The vault and identity settings (all `akvfs check` needs), checked,
    /// with the environment's defaults applied.
    pub fn validate_connection(&self) -> Result<(VaultConfig, AuthConfig), FieldError> {
        use clap::ValueEnum;
        let vault = self
            .vault
            .as_deref()
            .ok_or(FieldError::new("vault", Problem::Required))?;
        let url = parse_vault(vault).map_err(|e| FieldError::new("vault", e))?;
        let mode = match self.auth.as_deref() {
            None => AuthMode::Auto,
            Some(s) => AuthMode::from_str(s, true)
                .map_err(|_| FieldError::new("auth", Problem::AuthMode { value: s.into() }))?,
        };
        Ok((
            VaultConfig {
                url,
                ca_file: self.ca_file.clone(),
                verify_challenge_resource: !self
                    .disable_challenge_resource_verification
                    .unwrap_or(false),
            },
            AuthConfig {
                mode,
                client_id: self.client_id.clone().or_else(|| env(ENV_CLIENT_ID)),
                tenant_id: self.tenant_id.clone().or_else(|| env(ENV_TENANT_ID)),
                federated_token_file: env(ENV_FEDERATED_TOKEN_FILE).map(PathBuf::from),
            },
        ))
    }

    /// `akvfs check`: every setting validated exactly as for a mount, so a
    /// line copied from a mount command, unit or fstab entry is checked
    /// whole (a bad `--cache-bytes` fails here, not at the next mount); the
    /// mount-only settings are then left unused. Returns what `check` uses:
    /// the vault and identity settings, and `fetch_timeout` as the bound on
    /// each of its calls.
    pub fn validate_for_check(self) -> Result<(VaultConfig, AuthConfig, Duration), FieldError> {
        let placeholder = PathBuf::from("/");
        let cfg = MountOptions {
            path: Some(self.path.clone().unwrap_or(placeholder)),
            ..self
        }
        .validate(true, true)?;
        Ok((cfg.vault, cfg.auth, cfg.cache.fetch_timeout))
    }

    /// Checks every field and applies defaults. `foreground` and `mlock` are
    /// process settings, passed through.
    pub fn validate(self, foreground: bool, mlock: bool) -> Result<MountConfig, FieldError> {
        let (vault, auth) = self.validate_connection()?;
        let path = self
            .path
            .ok_or(FieldError::new("path", Problem::Required))?;
        let dur = |field: &'static str, v: Option<String>, default: &str| {
            parse_duration(v.as_deref().unwrap_or(default)).map_err(|e| FieldError::new(field, e))
        };
        let mode_bits = |field: &'static str, v: Option<String>, default: &str| {
            parse_mode(v.as_deref().unwrap_or(default)).map_err(|e| FieldError::new(field, e))
        };
        let cache_bytes = parse_size(self.cache_bytes.as_deref().unwrap_or("64MiB"))
            .map_err(|e| FieldError::new("cache_bytes", e))?;
        if cache_bytes < MIN_CACHE_BYTES {
            return Err(FieldError::new(
                "cache_bytes",
                Problem::CacheTooSmall { bytes: cache_bytes },
            ));
        }
        let fetch_timeout = dur("fetch_timeout", self.fetch_timeout, "10s")?;
        if fetch_timeout.is_zero() {
            return Err(FieldError::new("fetch_timeout", Problem::Zero));
        }
        let interval = dur("refresh_interval", self.refresh_interval, "30s")?;
        let min_interval = Duration::from_secs(1);
        if interval < min_interval {
            return Err(FieldError::new(
                "refresh_interval",
                Problem::TooShort {
                    value: interval,
                    min: min_interval,
                },
            ));
        }
        let idle_timeout = dur("idle_timeout", self.idle_timeout, "10m")?;
        covers_interval("idle_timeout", idle_timeout, interval)?;
        let max_unverified = dur("max_unverified", self.max_unverified, "10m")?;
        covers_interval("max_unverified", max_unverified, interval)?;
        let max_cold_lookups = self.max_cold_lookups_per_10s.unwrap_or(100);
        within(
            "max_cold_lookups_per_10s",
            max_cold_lookups,
            KEY_VAULT_LIMIT,
        )?;
        let max_concurrent_fetches = self.max_concurrent_fetches.unwrap_or(16);
        within(
            "max_concurrent_fetches",
            max_concurrent_fetches,
            MAX_FETCHES,
        )?;
        let max_requests = self.max_requests_per_10s.unwrap_or(50);
        within("max_requests_per_10s", max_requests, KEY_VAULT_LIMIT)?;
        let (views, view_root) = super::view_sources::views_config(
            self.view.unwrap_or_default(),
            self.views.as_deref(),
            self.spc.as_deref(),
            self.root.as_deref(),
            &vault.url,
        )?;
        Ok(MountConfig {
            vault,
            mountpoint: path,
            auth,
            owner: owner(OwnerConfig {
                uid: self.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
                gid: self.gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
                file_mode: mode_bits("file_mode", self.file_mode, "0400")?,
                dir_mode: mode_bits("dir_mode", self.dir_mode, "0500")?,
                allow_other: self.allow_other.unwrap_or(false),
                allow_root: self.allow_root.unwrap_or(false),
            })?,
            cache: CacheConfig {
                max_bytes: cache_bytes,
                negative_ttl: dur("negative_cache_ttl", self.negative_cache_ttl, "5s")?,
                fetch_timeout,
                max_cold_lookups_per_10s: max_cold_lookups,
                max_concurrent_fetches: max_concurrent_fetches as usize,
            },
            refresh: super::RefreshConfig {
                interval,
                idle_timeout,
                max_stale: dur("max_stale", self.max_stale, "24h")?,
                max_unverified,
                max_requests_per_10s: max_requests,
            },
            notice: notice_config(
                self.notice,
                self.notice_poll_interval,
                self.node_name,
                interval,
            )?,
            views,
            view_root,
            strict_open: self.strict_open.unwrap_or(false),
            nonempty: self.nonempty.unwrap_or(false),
            foreground,
            mlock,
        })
    }
}

/// A count's bounds: its upper bound and whether that is Key Vault's own.
struct Bound {
    max: u32,
    vault_limit: bool,
}

/// Key Vault's own limit of requests per vault in 10 seconds.
const KEY_VAULT_LIMIT: Bound = Bound {
    max: 4000,
    vault_limit: true,
};

/// The bound of `max_concurrent_fetches`.
const MAX_FETCHES: Bound = Bound {
    max: 256,
    vault_limit: false,
};

/// `value` is between 1 and the bound.
fn within(field: &'static str, value: u32, bound: Bound) -> Result<(), FieldError> {
    if (1..=bound.max).contains(&value) {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        Problem::OutOfRange {
            value: value.into(),
            min: 1,
            max: bound.max.into(),
            vault_limit: bound.vault_limit,
        },
    ))
}

/// A duration that may not be shorter than the refresh interval.
fn covers_interval(
    field: &'static str,
    value: Duration,
    interval: Duration,
) -> Result<(), FieldError> {
    if value < interval {
        return Err(FieldError::new(
            field,
            Problem::BelowRefreshInterval { value, interval },
        ));
    }
    Ok(())
}

/// The notice settings: none without `notice`.
fn notice_config(
    notice: Option<String>,
    poll: Option<String>,
    node_name: Option<String>,
    interval: Duration,
) -> Result<Option<super::notice::NoticeConfig>, FieldError> {
    let Some(spec) = notice else {
        return Ok(None);
    };
    let source =
        super::notice::SourceSpec::parse(&spec).map_err(|e| FieldError::new("notice", e))?;
    let live_poll = match poll {
        Some(p) => parse_duration(&p).map_err(|e| FieldError::new("notice_poll_interval", e))?,
        None => super::notice::DEFAULT_LIVE_POLL,
    };
    covers_interval("notice_poll_interval", live_poll, interval)?;
    let node_name = node_name
        .filter(|n| !n.is_empty())
        .or_else(super::notice::default_node_name)
        .ok_or(FieldError::new("node_name", Problem::NoNodeName))?;
    Ok(Some(super::notice::NoticeConfig {
        source,
        node_name,
        live_poll,
    }))
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;

/// Checks `allow_root` against the rest: FUSE takes it or `allow_other`, not
/// both; and since the kernel lets every user reach an `allow_root` mount and
/// only the mode bits keep the others out (akvfs answers no OPEN, so a
/// filter on requests could not see their reads), the modes must grant
/// nothing to group or others.
fn owner(o: OwnerConfig) -> Result<OwnerConfig, FieldError> {
    if !o.allow_root {
        return Ok(o);
    }
    if o.allow_other {
        return Err(FieldError::new("allow_root", Problem::RootWithOther));
    }
    if (o.file_mode | o.dir_mode) & 0o077 != 0 {
        return Err(FieldError::new(
            "allow_root",
            Problem::RootWithOpenModes {
                file_mode: o.file_mode,
                dir_mode: o.dir_mode,
            },
        ));
    }
    Ok(o)
}
