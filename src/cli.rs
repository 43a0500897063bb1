//! The command line: `akvfs mount`, `akvfs run`, `akvfs unmount`, `akvfs check`, `akvfs csi`,
//! `akvfs watch`.
//!
//! Flags are grouped by topic in `--help` and every default is stated. Values
//! are parsed into the typed [`crate::config`] structures here, so a bad flag
//! is a usage error (exit code 2) with one line that says what to fix.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    parse_mount_options, parse_vault, AuthConfig, MountConfig, MountOptions, VaultConfig,
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
    /// Serve as a Kubernetes CSI node plugin (driver csi.akvfs.io): each pod's inline csi
    /// volume is read with the pod's own workload identity.
    Csi(crate::csi::CsiArgs),
    /// Per-cluster watcher: the elected replica lists vaults and publishes their
    /// metadata (never values) to one ConfigMap per vault for the nodes.
    Watch(crate::watch::WatchArgs),
}

/// `akvfs mount`: the vault, the mountpoint, and the mount options as flags
/// or `-o`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// A vault name (myvault -> https://myvault.vault.azure.net) or an https:// URL.
    #[arg(value_name = "VAULT", value_parser = parse_vault)]
    pub vault: String,

    /// An existing, empty directory to mount on.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Mount options, comma-separated, as in fstab: allow_other, uid=N, file_mode=0440,
    /// auth=managed-identity, refresh_interval=1m, ... (every flag below, with _ for -).
    /// They override the flags. Generic options such as defaults, nofail, _netdev are ignored.
    #[arg(short = 'o', value_name = "OPTIONS", help_heading = "Mount")]
    pub options: Vec<String>,

    /// Stay in the foreground and log to stderr. [default: return once the mount is
    /// serving and keep serving in the background]
    #[arg(long, short = 'f', help_heading = "Mount")]
    pub foreground: bool,

    #[command(flatten)]
    pub settings: MountOptions,

    /// Serve Prometheus metrics and health checks (/metrics, /healthz, /readyz) on this address.
    #[arg(long, value_name = "ADDR", help_heading = "Observability")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Do not lock memory. Without locking, cached secrets can be written to swap.
    #[arg(long, help_heading = "Security")]
    pub no_mlock: bool,
}

impl MountArgs {
    /// The flags, with `-o` options on top, validated.
    pub fn to_config(&self) -> Result<MountConfig, ArgsError> {
        let mut raw = MountOptions {
            vault: Some(self.vault.clone()),
            path: Some(self.mountpoint.clone()),
            ..self.settings.clone()
        };
        let mut mlock = !self.no_mlock;
        for opts in &self.options {
            let (o, o_mlock) = parse_mount_options(opts).map_err(ArgsError::Options)?;
            raw = raw.overlay(o);
            mlock &= o_mlock;
        }
        raw.validate(self.foreground, mlock)
            .map_err(|e| ArgsError::Field {
                field: e.field,
                problem: e.problem,
                via_options: !self.options.is_empty(),
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

/// `akvfs check`: the vault and how to reach it. It takes every option of
/// `akvfs mount` and validates them all the same way, so a mount's own line
/// can be checked unchanged; only the connection and identity settings are
/// then used.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A vault name (myvault -> https://myvault.vault.azure.net) or an https:// URL.
    #[arg(value_name = "VAULT", value_parser = parse_vault)]
    pub vault: String,

    #[command(flatten)]
    pub settings: MountOptions,
}

impl CheckArgs {
    /// The vault and identity settings and the per-call timeout, every option validated as for a mount.
    pub fn to_config(&self) -> Result<(VaultConfig, AuthConfig, std::time::Duration), ArgsError> {
        MountOptions {
            vault: Some(self.vault.clone()),
            ..self.settings.clone()
        }
        .validate_for_check()
        .map_err(|e| ArgsError::Field {
            field: e.field,
            problem: e.problem,
            via_options: false,
        })
    }
}

/// Arguments that parse but do not make a valid command: the setting,
/// named the way the user gave it, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// An `-o` list that does not parse; the error names the option.
    #[error(transparent)]
    Options(#[from] crate::config::ConfigError),
    /// A setting with a bad value. Given only as flags, it is named as its
    /// flag; when `-o` lists were given too, it may have come from either.
    #[error("--{}: {problem}{}", .field.replace('_', "-"), if *.via_options { format!(" (from a flag or -o {field})") } else { String::new() })]
    Field {
        /// The setting's name as an `-o` option or config key.
        field: &'static str,
        #[source]
        problem: crate::config::Problem,
        via_options: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn bad_settings_are_named_as_the_user_set_them() {
        use crate::config::Problem;
        let mount = |extra: &[&str]| {
            let argv = ["akvfs", "mount", "myvault", "/mnt"].iter().chain(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Mount(args) => args.to_config().unwrap_err(),
                other => panic!("{other:?}"),
            }
        };
        let flag = mount(&["--fetch-timeout", "0s"]);
        assert!(
            matches!(
                &flag,
                ArgsError::Field {
                    field: "fetch_timeout",
                    problem: Problem::Zero,
                    via_options: false
                }
            ),
            "{flag:?}"
        );
        assert_eq!(
            flag.to_string(),
            "--fetch-timeout: must be greater than zero"
        );
        let either = mount(&["-o", "allow_other", "--fetch-timeout", "0s"]);
        assert!(
            matches!(
                &either,
                ArgsError::Field {
                    via_options: true,
                    ..
                }
            ),
            "{either:?}"
        );
        assert_eq!(
            either.to_string(),
            "--fetch-timeout: must be greater than zero (from a flag or -o fetch_timeout)"
        );
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
