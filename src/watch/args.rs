//! `akvfs watch` flags and their validation.

use std::time::Duration;

use clap::Args;

use super::WatchError;
use crate::config::{
    parse_duration, parse_vault, AuthConfig, ConnectionOptions, MountOptions, VaultConfig,
};

/// Longest heartbeat period: nodes take a notice older than three of these as
/// a dead watcher and fall back to their own polling.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(300);

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// A vault to watch (name or https:// URL); repeat for several. Each gets
    /// the notice ConfigMap `akvfs-notice-<first label of its host>`.
    #[arg(long = "vault", value_name = "VAULT", required = true, value_parser = parse_vault)]
    pub vaults: Vec<String>,

    /// Which identity lists the vaults (it needs `list` on secrets only), and
    /// how to reach them.
    #[command(flatten)]
    pub connection: ConnectionOptions,

    /// How often the leader lists each vault.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, help_heading = "Watch")]
    pub interval: Duration,

    /// Upper bound on the watcher's list calls per vault in any 10 seconds
    /// (pages of 25 secrets are paced to stay under it).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=4000), help_heading = "Watch")]
    pub max_requests_per_10s: u32,

    /// The vault's request limit per 10 seconds that the fleet shares; nodes
    /// spread a rotation's GETs so its busiest 10 s stay under 40% of it.
    #[arg(long = "limit-per-10s", value_name = "N", default_value_t = 4000, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Watch")]
    pub limit_per_10s: u32,

    /// Rewrite an unchanged notice this often so nodes can tell a live
    /// watcher from a dead one (at most 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, help_heading = "Watch")]
    pub heartbeat: Duration,

    /// The node DaemonSet, `NAME` or `NAMESPACE/NAME`, whose
    /// status.desiredNumberScheduled is the fleet size.
    #[arg(
        long,
        value_name = "DAEMONSET",
        env = "AKVFS_FLEET_DAEMONSET",
        conflicts_with = "fleet_size",
        help_heading = "Fleet"
    )]
    pub fleet_daemonset: Option<String>,

    /// A fixed fleet size (number of nodes), instead of a DaemonSet's.
    #[arg(long, value_name = "N", env = "AKVFS_FLEET_SIZE", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Fleet")]
    pub fleet_size: Option<u64>,

    /// Namespace of the notices and the Lease. [default: POD_NAMESPACE, the
    /// service account's namespace, or the kubeconfig's]
    #[arg(
        long,
        value_name = "NS",
        env = "POD_NAMESPACE",
        help_heading = "Kubernetes"
    )]
    pub namespace: Option<String>,

    /// Name of the Lease the replicas elect a leader on.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "akvfs-watch",
        help_heading = "Kubernetes"
    )]
    pub lease_name: String,

    /// This replica's identity in the Lease. [default: POD_NAME, else the host name]
    #[arg(long, value_name = "ID", env = "POD_NAME", help_heading = "Kubernetes")]
    pub identity: Option<String>,

    /// How long a Lease stays valid after its last renewal.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration, help_heading = "Kubernetes")]
    pub lease_duration: Duration,

    /// A leader that could not renew for this long stops publishing (less than --lease-duration).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Kubernetes")]
    pub lease_renew_deadline: Duration,

    /// How often the leader renews and the others try to take over.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, help_heading = "Kubernetes")]
    pub lease_retry_period: Duration,
}

/// Where the fleet size comes from.
#[derive(Clone, Debug)]
pub enum FleetSource {
    Fixed(u64),
    DaemonSet {
        namespace: Option<String>,
        name: String,
    },
}

/// A validated `akvfs watch`.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub vaults: Vec<(VaultConfig, AuthConfig)>,
    pub fleet: FleetSource,
    pub args: WatchArgs,
}

impl WatchArgs {
    /// Checks the flags; the message names the flag to fix.
    pub fn to_config(&self) -> Result<WatchConfig, WatchError> {
        let mut vaults = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for v in &self.vaults {
            let (vault, auth) = MountOptions {
                vault: Some(v.clone()),
                ..self.connection.clone().into()
            }
            .validate_connection()
            .map_err(WatchError::Connection)?;
            let name = super::notice::object_name(&vault.url);
            if !names.insert(name.clone()) {
                return Err(WatchError::SameConfigMap {
                    url: vault.url,
                    configmap: name,
                });
            }
            vaults.push((vault, auth));
        }
        let fleet = match (&self.fleet_size, &self.fleet_daemonset) {
            (Some(n), _) => FleetSource::Fixed(*n),
            (None, Some(ds)) => match ds.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => FleetSource::DaemonSet {
                    namespace: Some(ns.to_string()),
                    name: name.to_string(),
                },
                None if !ds.is_empty() => FleetSource::DaemonSet {
                    namespace: None,
                    name: ds.clone(),
                },
                _ => return Err(WatchError::FleetDaemonSet { value: ds.clone() }),
            },
            (None, None) => return Err(WatchError::NoFleet),
        };
        if self.heartbeat.is_zero() || self.heartbeat > MAX_HEARTBEAT {
            return Err(WatchError::Heartbeat);
        }
        if self.interval.is_zero() {
            return Err(WatchError::Interval);
        }
        if self.lease_renew_deadline >= self.lease_duration
            || self.lease_retry_period >= self.lease_renew_deadline
        {
            return Err(WatchError::LeaseOrder);
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err(WatchError::LeaseDuration);
        }
        Ok(WatchConfig {
            vaults,
            fleet,
            args: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: WatchArgs,
    }

    fn check(flags: &[&str]) -> Result<WatchConfig, WatchError> {
        let argv = ["watch"].iter().chain(flags);
        Cmd::try_parse_from(argv).unwrap().args.to_config()
    }

    #[test]
    fn each_bad_flag_has_its_variant() {
        let fleet = ["--vault", "kv-one", "--fleet-size", "10"];
        assert!(check(&fleet).is_ok());
        let with = |extra: &[&'static str]| {
            let mut v = fleet.to_vec();
            v.extend_from_slice(extra);
            check(&v).unwrap_err()
        };
        assert!(matches!(
            with(&["--heartbeat", "6m"]),
            WatchError::Heartbeat
        ));
        assert!(matches!(with(&["--interval", "0s"]), WatchError::Interval));
        assert!(matches!(
            with(&["--lease-renew-deadline", "20s"]),
            WatchError::LeaseOrder
        ));
        let same = with(&["--vault", "https://kv-one.vault.azure.net"]);
        assert!(
            matches!(&same, WatchError::SameConfigMap { configmap, .. } if configmap == "akvfs-notice-kv-one"),
            "{same:?}"
        );
        let daemonset = check(&["--vault", "kv-one", "--fleet-daemonset", "ns/"]);
        assert!(matches!(daemonset, Err(WatchError::FleetDaemonSet { .. })));
    }
}
