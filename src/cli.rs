//! The command line: `akvfs mount`, `akvfs unmount`, `akvfs check`.
//!
//! Flags are grouped by topic in `--help` and every default is stated. Values
//! are parsed into the typed [`crate::config`] structures here, so a bad flag
//! is a usage error (exit code 2) with one line that says what to fix.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    parse_mount_options, parse_vault, AuthConfig, AuthMode, MountConfig, RawMount,
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
    #[arg(
        long,
        global = true,
        env = "AKVFS_LOG",
        default_value = "info",
        help_heading = "Logging"
    )]
    pub log_level: String,

    /// Log line format: text for people, json for log collectors (one object per line).
    #[arg(
        long,
        global = true,
        env = "AKVFS_LOG_FORMAT",
        value_enum,
        default_value = "text",
        help_heading = "Logging"
    )]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount a vault at a directory and serve it until unmounted or signalled.
    Mount(MountArgs),
    /// Serve every mount in a config file (SIGHUP reloads it); stays in the foreground.
    Run(RunArgs),
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
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        help_heading = "Authentication"
    )]
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

    /// Mount options, comma-separated, as in fstab: allow_other, uid=N, file_mode=0440,
    /// auth=managed-identity, refresh_interval=1m, ... (every flag below, with _ for -).
    /// They override the flags. Generic options such as defaults, nofail, _netdev are ignored.
    #[arg(short = 'o', value_name = "OPTIONS", help_heading = "Mount")]
    pub options: Vec<String>,

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

    /// Mode of every secret file, octal. [default: 0400]
    #[arg(long, value_name = "MODE", help_heading = "Mount")]
    pub file_mode: Option<String>,

    /// Mode of the mount's root directory, octal. [default: 0500]
    #[arg(long, value_name = "MODE", help_heading = "Mount")]
    pub dir_mode: Option<String>,

    /// Serve Prometheus metrics and health checks (/metrics, /healthz, /readyz) on this address.
    #[arg(long, value_name = "ADDR", help_heading = "Observability")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Memory budget of the value cache (LRU); least recently read values are evicted
    /// and wiped beyond it. [default: 64MiB]
    #[arg(long, value_name = "SIZE", help_heading = "Cache")]
    pub cache_bytes: Option<String>,

    /// How long a "not found" answer is remembered before asking the vault again. [default: 5s]
    #[arg(long, value_name = "DURATION", help_heading = "Cache")]
    pub negative_cache_ttl: Option<String>,

    /// How long a read with nothing cached may wait for the vault before failing with EIO.
    /// [default: 10s]
    #[arg(long, value_name = "DURATION", help_heading = "Cache")]
    pub fetch_timeout: Option<String>,

    /// How often cached secrets are checked for new versions (jittered 0-10% shorter; at least 1s).
    /// A rotation becomes visible within about one interval. [default: 30s]
    #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
    pub refresh_interval: Option<String>,

    /// Secrets not used for this long stop being refreshed and are evicted and wiped.
    /// [default: 10m]
    #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
    pub idle_timeout: Option<String>,

    /// While the vault is unreachable or throttling, keep serving cached values this long
    /// after their last successful check; then fail closed. [default: 24h]
    #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
    pub max_stale: Option<String>,

    /// Upper bound on the refresher's calls to the vault in any 10 seconds (1 to 4000). Key
    /// Vault allows 4,000 per vault across all clients; see docs/SCALING.md. [default: 50]
    #[arg(long, value_name = "N", help_heading = "Refresh")]
    pub max_requests_per_10s: Option<u32>,

    /// Longest time a cached value is served without a GET proving the identity may still
    /// read it; a 403 then removes it. Catches permission losses a listing cannot show.
    /// [default: 10m]
    #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
    pub max_unverified: Option<String>,

    /// Upper bound on vault GETs that lookups of names missing from the listing may cause in
    /// any 10 seconds (1 to 4000); beyond it such names are answered ENOENT. [default: 100]
    #[arg(long, value_name = "N", help_heading = "Cache")]
    pub max_cold_lookups_per_10s: Option<u32>,

    /// Route every open and read through the daemon (no kernel page cache across opens),
    /// so each open sees the daemon's current value and can be logged. 13 to 18 times
    /// slower than the default for open+read+close; see docs/BENCHMARKS.md.
    #[arg(long, help_heading = "Refresh")]
    pub strict_open: bool,

    /// Mount even if the directory has files in it (they are hidden while mounted).
    /// [default: refuse a non-empty directory]
    #[arg(long, help_heading = "Mount")]
    pub nonempty: bool,

    /// Do not lock memory. Without locking, cached secrets can be written to swap.
    #[arg(long, help_heading = "Security")]
    pub no_mlock: bool,
}

impl MountArgs {
    /// The flags as a [`RawMount`], with `-o` options on top, validated.
    pub fn to_config(&self) -> Result<MountConfig, String> {
        let flags = RawMount {
            vault: Some(self.vault.vault.clone()),
            path: Some(self.mountpoint.clone()),
            auth: Some(self.auth.auth.as_str().to_string()),
            client_id: self.auth.client_id.clone(),
            tenant_id: self.auth.tenant_id.clone(),
            ca_file: self.vault.ca_file.clone(),
            disable_challenge_resource_verification: self
                .vault
                .disable_challenge_resource_verification
                .then_some(true),
            uid: self.uid,
            gid: self.gid,
            file_mode: self.file_mode.clone(),
            dir_mode: self.dir_mode.clone(),
            allow_other: self.allow_other.then_some(true),
            cache_bytes: self.cache_bytes.clone(),
            negative_cache_ttl: self.negative_cache_ttl.clone(),
            fetch_timeout: self.fetch_timeout.clone(),
            refresh_interval: self.refresh_interval.clone(),
            idle_timeout: self.idle_timeout.clone(),
            max_stale: self.max_stale.clone(),
            max_requests_per_10s: self.max_requests_per_10s,
            strict_open: self.strict_open.then_some(true),
            max_unverified: self.max_unverified.clone(),
            max_cold_lookups_per_10s: self.max_cold_lookups_per_10s,
            nonempty: self.nonempty.then_some(true),
        };
        let mut raw = flags;
        let mut mlock = !self.no_mlock;
        for opts in &self.options {
            let (o, o_mlock) = parse_mount_options(opts)?;
            raw = raw.overlay(o);
            mlock &= o_mlock;
        }
        raw.validate(self.foreground, mlock).map_err(|e| {
            if self.options.is_empty() {
                e.as_flag()
            } else {
                format!("{} (from a flag or -o {})", e.as_flag(), e.field)
            }
        })
    }
}

/// `akvfs run`: several mounts from a config file, in the foreground.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The config file (TOML); see docs/CONFIGURATION.md. SIGHUP re-reads it.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        default_value = "/etc/akvfs/config.toml"
    )]
    pub config: PathBuf,

    /// Serve Prometheus metrics and health checks (/metrics, /healthz, /readyz) on this
    /// address. [default: metrics_listen from the config file, else none]
    #[arg(long, value_name = "ADDR", help_heading = "Observability")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Under systemd (Type=notify), READY=1 is sent once every mount serves and can read;
    /// if that takes longer than this, akvfs exits with the reason so the unit fails
    /// (and Restart= applies). 0 waits forever. Keep it below the unit's TimeoutStartSec.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::config::parse_duration)]
    pub ready_timeout: std::time::Duration,
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
