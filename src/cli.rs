//! The command line: `akvfs mount`, `akvfs unmount`, `akvfs check`.
//!
//! Flags are grouped by topic in `--help` and every default is stated. Values
//! are parsed into the typed [`crate::config`] structures here, so a bad flag
//! is a usage error (exit code 2) with one line that says what to fix.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    parse_duration, parse_mode, parse_size, parse_vault, AuthConfig, AuthMode, CacheConfig,
    MountConfig, OwnerConfig, VaultConfig,
};

#[derive(Parser, Debug)]
#[command(
    name = "akvfs",
    version,
    about = "Mount an Azure Key Vault as a read-only directory: each secret is a file",
    long_about = "Mount an Azure Key Vault as a read-only directory. Each secret is a file whose \
contents are the secret's current value, fetched on first use with your Azure identity and kept \
in memory only. Nothing is written to disk.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log filter: error, warn, info, debug or trace, or a RUST_LOG-style filter.
    /// Logs never contain secret values.
    #[arg(long, global = true, env = "AKVFS_LOG", default_value = "info", help_heading = "Logging")]
    pub log_level: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount a vault at a directory and serve it until unmounted or signalled.
    Mount(MountArgs),
    /// Unmount an akvfs mount.
    Unmount(UnmountArgs),
    /// Check identity, token and list access for a vault; prints names, never values.
    Check(CheckArgs),
}

/// Where the vault is and how to reach it.
#[derive(Args, Debug, Clone)]
pub struct VaultArgs {
    /// A vault name (myvault -> https://myvault.vault.azure.net) or an https:// URL.
    #[arg(value_name = "VAULT", value_parser = parse_vault)]
    pub vault: String,

    /// Extra trusted root certificates, PEM (private CAs, TLS-inspecting proxies).
    /// [default: the system trust store only]
    #[arg(long, value_name = "PEM", help_heading = "Connection")]
    pub ca_file: Option<PathBuf>,

    /// Do not require the token challenge's resource to match the vault's domain.
    /// Needed for private endpoints with custom DNS names and for the emulator.
    #[arg(long, help_heading = "Connection")]
    pub disable_challenge_resource_verification: bool,
}

/// How to authenticate.
#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// Which identity to use. auto tries, in order: a client secret (AZURE_CLIENT_SECRET),
    /// workload identity (AZURE_FEDERATED_TOKEN_FILE), managed identity, the Azure CLI.
    #[arg(long, value_enum, default_value = "auto", help_heading = "Authentication")]
    pub auth: AuthMode,

    /// Client (application) id of the identity; for managed identity, a user-assigned identity.
    /// [default: AZURE_CLIENT_ID]
    #[arg(long, value_name = "ID", help_heading = "Authentication")]
    pub client_id: Option<String>,

    /// Entra tenant id. [default: AZURE_TENANT_ID]
    #[arg(long, value_name = "ID", help_heading = "Authentication")]
    pub tenant_id: Option<String>,
}

impl AuthArgs {
    pub fn to_config(&self) -> AuthConfig {
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        AuthConfig {
            mode: self.auth,
            client_id: self.client_id.clone().or_else(|| env("AZURE_CLIENT_ID")),
            tenant_id: self.tenant_id.clone().or_else(|| env("AZURE_TENANT_ID")),
            federated_token_file: env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
        }
    }
}

#[derive(Args, Debug)]
pub struct MountArgs {
    #[command(flatten)]
    pub vault: VaultArgs,

    /// An existing, empty directory to mount on.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// Stay in the foreground and log to stderr. [default: return once the mount is
    /// serving and keep serving in the background]
    #[arg(long, short = 'f', help_heading = "Mount")]
    pub foreground: bool,

    /// Let users other than the mounting user access the mount (mode bits still apply).
    #[arg(long, help_heading = "Mount")]
    pub allow_other: bool,

    /// Owner of every file and the directory. [default: the mounting user]
    #[arg(long, value_name = "N", help_heading = "Mount")]
    pub uid: Option<u32>,

    /// Group of every file and the directory. [default: the mounting user's group]
    #[arg(long, value_name = "N", help_heading = "Mount")]
    pub gid: Option<u32>,

    /// Mode of every secret file, octal.
    #[arg(long, value_name = "MODE", default_value = "0400", value_parser = parse_mode, help_heading = "Mount")]
    pub file_mode: u16,

    /// Mode of the mount's root directory, octal.
    #[arg(long, value_name = "MODE", default_value = "0500", value_parser = parse_mode, help_heading = "Mount")]
    pub dir_mode: u16,

    /// Memory budget of the value cache (LRU); least recently read values are evicted
    /// and wiped beyond it.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size, help_heading = "Cache")]
    pub cache_bytes: u64,

    /// How long a "not found" answer is remembered before asking the vault again.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, help_heading = "Cache")]
    pub negative_cache_ttl: std::time::Duration,

    /// How long a read with nothing cached may wait for the vault before failing with EIO.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Cache")]
    pub fetch_timeout: std::time::Duration,

    /// How often cached secrets are checked for new versions (±10% jitter; at least 1s).
    /// A rotation becomes visible within about one interval.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = "Refresh")]
    pub refresh_interval: std::time::Duration,

    /// Secrets not read for this long stop being refreshed and are evicted and wiped.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration, help_heading = "Refresh")]
    pub idle_timeout: std::time::Duration,

    /// While the vault is unreachable or throttling, keep serving cached values this long
    /// after their last successful check; then fail closed.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration, help_heading = "Refresh")]
    pub max_stale: std::time::Duration,

    /// Upper bound on the refresher's calls to the vault in any 10 seconds. Key Vault allows
    /// 4,000 per vault across all clients; see docs/SCALING.md.
    #[arg(long, value_name = "N", default_value = "50", value_parser = clap::value_parser!(u32).range(1..=4000), help_heading = "Refresh")]
    pub max_requests_per_10s: u32,

    /// Route every open and read through the daemon (no kernel page cache across opens),
    /// so each open sees the daemon's current value and can be logged. About 10x slower
    /// than the default for open+read+close; see docs/BENCHMARKS.md.
    #[arg(long, help_heading = "Refresh")]
    pub strict_open: bool,

    /// Do not lock memory. Without locking, cached secrets can be written to swap.
    #[arg(long, help_heading = "Security")]
    pub no_mlock: bool,
}

impl MountArgs {
    pub fn to_config(&self) -> Result<MountConfig, String> {
        if self.fetch_timeout.is_zero() {
            return Err("--fetch-timeout must be greater than zero".into());
        }
        if self.refresh_interval < std::time::Duration::from_secs(1) {
            return Err("--refresh-interval must be at least 1s".into());
        }
        if self.idle_timeout < self.refresh_interval {
            return Err("--idle-timeout must be at least --refresh-interval".into());
        }
        if self.cache_bytes < 64 << 10 {
            return Err("--cache-bytes must be at least 64KiB (one Key Vault secret is up to 25KiB)".into());
        }
        Ok(MountConfig {
            vault: VaultConfig {
                url: self.vault.vault.clone(),
                ca_file: self.vault.ca_file.clone(),
                verify_challenge_resource: !self.vault.disable_challenge_resource_verification,
            },
            mountpoint: self.mountpoint.clone(),
            auth: self.auth.to_config(),
            owner: OwnerConfig {
                uid: self.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
                gid: self.gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
                file_mode: self.file_mode,
                dir_mode: self.dir_mode,
                allow_other: self.allow_other,
            },
            cache: CacheConfig {
                max_bytes: self.cache_bytes,
                negative_ttl: self.negative_cache_ttl,
                fetch_timeout: self.fetch_timeout,
                ..CacheConfig::default()
            },
            refresh: crate::refresh::RefreshConfig {
                interval: self.refresh_interval,
                idle_timeout: self.idle_timeout,
                max_stale: self.max_stale,
                max_requests_per_10s: self.max_requests_per_10s,
            },
            strict_open: self.strict_open,
            foreground: self.foreground,
            mlock: !self.no_mlock,
        })
    }
}

#[derive(Args, Debug)]
pub struct UnmountArgs {
    /// The mount to unmount.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Detach now even if files are open; the mount goes away when they are closed.
    #[arg(long)]
    pub lazy: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub vault: VaultArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
