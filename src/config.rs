//! Validated, typed configuration. The CLI (and later a config file) produce
//! raw values; everything here has been checked, so the rest of the program
//! never re-validates.

use std::path::PathBuf;
use std::time::Duration;

/// How akvfs authenticates to Entra ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Client secret, then workload identity, then managed identity, then Azure CLI.
    Auto,
    /// Kubernetes workload identity: a federated service-account token.
    WorkloadIdentity,
    /// An Azure VM's (or App Service-style endpoint's) managed identity.
    ManagedIdentity,
    /// The signed-in Azure CLI user (`az login`).
    AzureCli,
    /// A service principal with AZURE_CLIENT_SECRET.
    ClientSecret,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Auto => "auto",
            AuthMode::WorkloadIdentity => "workload-identity",
            AuthMode::ManagedIdentity => "managed-identity",
            AuthMode::AzureCli => "azure-cli",
            AuthMode::ClientSecret => "client-secret",
        }
    }
}

/// Identity settings, with environment defaults already applied.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub federated_token_file: Option<PathBuf>,
}

/// How to reach the vault.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// `https://name.vault.azure.net` (no trailing slash).
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub verify_challenge_resource: bool,
}

/// Ownership and permissions of the files in the mount.
#[derive(Clone, Copy, Debug)]
pub struct OwnerConfig {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub allow_other: bool,
}

/// The value cache and upstream behaviour.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Memory budget of cached values, in bytes.
    pub max_bytes: u64,
    /// How long "not found" (and other refusals) are remembered.
    pub negative_ttl: Duration,
    /// How long a read with nothing cached may wait for the vault.
    pub fetch_timeout: Duration,
    /// Cold fetches running at once.
    pub max_concurrent_fetches: usize,
    /// Cold fetches that lookups of names missing from the listing may make
    /// in any 10 seconds.
    pub max_cold_lookups_per_10s: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 64 << 20,
            negative_ttl: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(10),
            max_concurrent_fetches: 16,
            max_cold_lookups_per_10s: 100,
        }
    }
}

/// Everything one mount needs.
#[derive(Clone, Debug)]
pub struct MountConfig {
    pub vault: VaultConfig,
    pub mountpoint: PathBuf,
    pub auth: AuthConfig,
    pub owner: OwnerConfig,
    pub cache: CacheConfig,
    pub refresh: crate::refresh::RefreshConfig,
    /// Serve every open through the daemon instead of the kernel page cache.
    pub strict_open: bool,
    /// Mount over a directory that has files in it.
    pub nonempty: bool,
    pub foreground: bool,
    pub mlock: bool,
}

/// Turns `myvault` or `https://myvault.vault.azure.net[:port][/]` into a vault URL.
pub fn parse_vault(input: &str) -> Result<String, String> {
    let input = input.trim();
    if input.contains("://") {
        let rest = input.strip_prefix("https://").ok_or_else(|| {
            format!("vault URL {input:?} must use https:// (Key Vault only serves HTTPS)")
        })?;
        let host_port = rest.trim_end_matches('/');
        if host_port.is_empty() || host_port.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!(
                "vault URL {input:?} must be just scheme and host, like https://myvault.vault.azure.net"
            ));
        }
        return Ok(format!("https://{host_port}"));
    }
    if is_vault_name(input) {
        Ok(format!("https://{input}.vault.azure.net"))
    } else {
        Err(format!(
            "{input:?} is neither a vault name (3-24 letters, digits and single hyphens, starting with a letter) nor an https:// URL"
        ))
    }
}

fn is_vault_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=24).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !s.contains("--")
}

/// Parses `64MiB`, `1G`, `512k`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 64MiB, 512KiB or 1048576"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit; use B, KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses an octal mode such as `0400` or `440`.
pub fn parse_mode(s: &str) -> Result<u16, String> {
    let m = u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode like 0400"))?;
    if m > 0o7777 {
        return Err(format!("{s:?} is not a valid mode (at most 07777)"));
    }
    if m & 0o7000 != 0 {
        return Err(format!(
            "{s:?}: setuid, setgid and sticky bits are not allowed"
        ));
    }
    Ok(m)
}

/// Parses `30s`, `10m`, `24h`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 500ms, 30s, 10m or 24h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} has an unknown unit; use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 || secs > 365.0 * 86400.0 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_and_urls() {
        assert_eq!(
            parse_vault("myvault").unwrap(),
            "https://myvault.vault.azure.net"
        );
        assert_eq!(
            parse_vault("https://kv.vault.azure.net/").unwrap(),
            "https://kv.vault.azure.net"
        );
        assert_eq!(
            parse_vault("https://127.0.0.1:8443").unwrap(),
            "https://127.0.0.1:8443"
        );
        for bad in [
            "my_vault",
            "ab",
            "1vault",
            "vault-",
            "a--b",
            "http://kv.vault.azure.net",
            "https://kv/secrets",
            "https://",
        ] {
            assert!(parse_vault(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn readability_and_lookup_budgets_are_validated() {
        let raw = |over: RawMount| {
            RawMount {
                vault: Some("myvault".into()),
                path: Some("/mnt".into()),
                ..Default::default()
            }
            .overlay(over)
            .validate(true, true)
        };
        let cfg = raw(RawMount::default()).unwrap();
        assert_eq!(cfg.refresh.max_unverified, Duration::from_secs(600));
        assert_eq!(cfg.cache.max_cold_lookups_per_10s, 100);
        let cfg = raw(RawMount {
            max_unverified: Some("2m".into()),
            max_cold_lookups_per_10s: Some(7),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cfg.refresh.max_unverified, Duration::from_secs(120));
        assert_eq!(cfg.cache.max_cold_lookups_per_10s, 7);
        let err = raw(RawMount {
            max_unverified: Some("10s".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err.as_flag(),
            "--max-unverified: must be at least the refresh interval"
        );
        let err = raw(RawMount {
            max_cold_lookups_per_10s: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "max_cold_lookups_per_10s");
    }

    #[test]
    fn sizes_modes_durations() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_mode("0400").unwrap(), 0o400);
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("4755").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1y").is_err());
    }
}

/// One mount as written in a config file, in `-o` options or as flags: every
/// field optional. [`RawMount::validate`] applies defaults and checks every
/// field, so the three sources share one set of rules and messages.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMount {
    pub vault: Option<String>,
    pub path: Option<PathBuf>,
    pub auth: Option<String>,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub disable_challenge_resource_verification: Option<bool>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub file_mode: Option<String>,
    pub dir_mode: Option<String>,
    pub allow_other: Option<bool>,
    pub cache_bytes: Option<String>,
    pub negative_cache_ttl: Option<String>,
    pub fetch_timeout: Option<String>,
    pub refresh_interval: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_stale: Option<String>,
    pub max_requests_per_10s: Option<u32>,
    pub strict_open: Option<bool>,
    pub max_unverified: Option<String>,
    pub max_cold_lookups_per_10s: Option<u32>,
    pub nonempty: Option<bool>,
}

/// A bad field: which one, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

impl FieldError {
    fn new(field: &'static str, problem: impl Into<String>) -> FieldError {
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

macro_rules! overlay_fields {
    ($base:ident, $over:ident, $($f:ident),*) => {
        RawMount { $($f: $over.$f.or($base.$f)),* }
    };
}

impl RawMount {
    /// `over`'s fields win over `self`'s.
    pub fn overlay(self, over: RawMount) -> RawMount {
        let base = self;
        overlay_fields!(
            base,
            over,
            vault,
            path,
            auth,
            client_id,
            tenant_id,
            ca_file,
            disable_challenge_resource_verification,
            uid,
            gid,
            file_mode,
            dir_mode,
            allow_other,
            cache_bytes,
            negative_cache_ttl,
            fetch_timeout,
            refresh_interval,
            idle_timeout,
            max_stale,
            max_requests_per_10s,
            strict_open,
            max_unverified,
            max_cold_lookups_per_10s,
            nonempty
        )
    }

    /// Checks every field and applies defaults. `foreground` and `mlock` are
    /// process settings, passed through.
    pub fn validate(self, foreground: bool, mlock: bool) -> Result<MountConfig, FieldError> {
        use clap::ValueEnum;
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let vault = self
            .vault
            .ok_or_else(|| FieldError::new("vault", "is required"))?;
        let url = parse_vault(&vault).map_err(|e| FieldError::new("vault", e))?;
        let path = self
            .path
            .ok_or_else(|| FieldError::new("path", "is required"))?;
        let mode = match self.auth.as_deref() {
            None => AuthMode::Auto,
            Some(s) => AuthMode::from_str(s, true).map_err(|_| {
                FieldError::new(
                    "auth",
                    format!("{s:?} is not one of auto, workload-identity, managed-identity, azure-cli, client-secret"),
                )
            })?,
        };
        let dur = |field: &'static str, v: Option<String>, default: &str| {
            parse_duration(v.as_deref().unwrap_or(default)).map_err(|e| FieldError::new(field, e))
        };
        let mode_bits = |field: &'static str, v: Option<String>, default: &str| {
            parse_mode(v.as_deref().unwrap_or(default)).map_err(|e| FieldError::new(field, e))
        };
        let cache_bytes = parse_size(self.cache_bytes.as_deref().unwrap_or("64MiB"))
            .map_err(|e| FieldError::new("cache_bytes", e))?;
        if cache_bytes < 64 << 10 {
            return Err(FieldError::new(
                "cache_bytes",
                "must be at least 64KiB (one Key Vault secret is up to 25KiB)",
            ));
        }
        let fetch_timeout = dur("fetch_timeout", self.fetch_timeout, "10s")?;
        if fetch_timeout.is_zero() {
            return Err(FieldError::new(
                "fetch_timeout",
                "must be greater than zero",
            ));
        }
        let interval = dur("refresh_interval", self.refresh_interval, "30s")?;
        if interval < Duration::from_secs(1) {
            return Err(FieldError::new("refresh_interval", "must be at least 1s"));
        }
        let idle_timeout = dur("idle_timeout", self.idle_timeout, "10m")?;
        if idle_timeout < interval {
            return Err(FieldError::new(
                "idle_timeout",
                "must be at least the refresh interval",
            ));
        }
        let max_unverified = dur("max_unverified", self.max_unverified, "10m")?;
        if max_unverified < interval {
            return Err(FieldError::new(
                "max_unverified",
                "must be at least the refresh interval",
            ));
        }
        let max_cold_lookups = self.max_cold_lookups_per_10s.unwrap_or(100);
        if !(1..=4000).contains(&max_cold_lookups) {
            return Err(FieldError::new(
                "max_cold_lookups_per_10s",
                "must be between 1 and 4000 (Key Vault's own limit per vault)",
            ));
        }
        let max_requests = self.max_requests_per_10s.unwrap_or(50);
        if !(1..=4000).contains(&max_requests) {
            return Err(FieldError::new(
                "max_requests_per_10s",
                "must be between 1 and 4000 (Key Vault's own limit per vault)",
            ));
        }
        Ok(MountConfig {
            vault: VaultConfig {
                url,
                ca_file: self.ca_file,
                verify_challenge_resource: !self
                    .disable_challenge_resource_verification
                    .unwrap_or(false),
            },
            mountpoint: path,
            auth: AuthConfig {
                mode,
                client_id: self.client_id.or_else(|| env("AZURE_CLIENT_ID")),
                tenant_id: self.tenant_id.or_else(|| env("AZURE_TENANT_ID")),
                federated_token_file: env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            },
            owner: OwnerConfig {
                uid: self.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
                gid: self.gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
                file_mode: mode_bits("file_mode", self.file_mode, "0400")?,
                dir_mode: mode_bits("dir_mode", self.dir_mode, "0500")?,
                allow_other: self.allow_other.unwrap_or(false),
            },
            cache: CacheConfig {
                max_bytes: cache_bytes,
                negative_ttl: dur("negative_cache_ttl", self.negative_cache_ttl, "5s")?,
                fetch_timeout,
                max_cold_lookups_per_10s: max_cold_lookups,
                ..CacheConfig::default()
            },
            refresh: crate::refresh::RefreshConfig {
                interval,
                idle_timeout,
                max_stale: dur("max_stale", self.max_stale, "24h")?,
                max_unverified,
                max_requests_per_10s: max_requests,
            },
            strict_open: self.strict_open.unwrap_or(false),
            nonempty: self.nonempty.unwrap_or(false),
            foreground,
            mlock,
        })
    }
}

/// Mount options as given to `-o` (and by mount(8) from fstab), split into
/// akvfs settings and the process-level `no_mlock`. Generic mount options that
/// mount(8) and systemd pass along are accepted and ignored.
pub fn parse_mount_options(opts: &str) -> Result<(RawMount, bool), String> {
    let mut table = toml::Table::new();
    let mut mlock = true;
    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (opt, None),
        };
        let ignored = [
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
        if ignored.contains(&key) || key.starts_with("x-") || key.starts_with("comment=") {
            continue;
        }
        if key == "no_mlock" {
            mlock = false;
            continue;
        }
        let value = match key {
            "disable_challenge_resource_verification"
            | "allow_other"
            | "strict_open"
            | "nonempty" => toml::Value::Boolean(match value {
                None | Some("true") | Some("1") | Some("yes") => true,
                Some("false") | Some("0") | Some("no") => false,
                Some(v) => return Err(format!("-o {key}={v}: expected true or false")),
            }),
            "uid" | "gid" | "max_requests_per_10s" => {
                let v = value.ok_or_else(|| format!("-o {key} needs a value ({key}=N)"))?;
                toml::Value::Integer(
                    v.parse()
                        .map_err(|_| format!("-o {key}={v}: not a number"))?,
                )
            }
            _ => toml::Value::String(
                value
                    .ok_or_else(|| format!("-o {key} needs a value ({key}=...)"))?
                    .to_string(),
            ),
        };
        table.insert(key.to_string(), value);
    }
    let raw: RawMount = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| format!("-o: {}", e.message()))?;
    Ok((raw, mlock))
}

/// The config file for `akvfs run`: several mounts in one process.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfigFile {
    pub mlock: Option<bool>,
    pub metrics_listen: Option<String>,
    /// Include secret names as a label on per-secret metrics.
    pub metrics_secret_names: Option<bool>,
    #[serde(default)]
    pub defaults: RawMount,
    #[serde(default, rename = "mount")]
    pub mounts: Vec<RawMount>,
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
pub fn load_config_file(path: &std::path::Path) -> Result<ConfigFile, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {shown}: {e}"))?;
    let raw: RawConfigFile = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        format!("config file {shown}{at}: {}", e.message())
    })?;
    if raw.mounts.is_empty() {
        return Err(format!(
            "config file {shown}: no [[mount]] sections; add at least one with vault and path"
        ));
    }
    let mlock = raw.mlock.unwrap_or(true);
    let metrics_listen = match &raw.metrics_listen {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| {
            format!(
                "config file {shown}: metrics_listen: {s:?} is not an address like 127.0.0.1:9464"
            )
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
            .map_err(|e| format!("config file {shown}: {label}: {}: {}", e.field, e.problem))?;
        if !paths.insert(cfg.mountpoint.clone()) {
            return Err(format!(
                "config file {shown}: {label}: path {} is used by another mount",
                cfg.mountpoint.display()
            ));
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
