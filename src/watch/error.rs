//! Why `akvfs watch` cannot start or keep running: the flag or the service that failed, and what to check.

use crate::config::FieldError;

/// A bad `akvfs watch` command line, or a failure that ends the watcher. The
/// watcher is configured by flags only, so settings are named as flags.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A vault or identity flag that does not validate.
    #[error("--{}: {}", .0.field.replace('_', "-"), .0.problem)]
    Connection(#[source] FieldError),
    #[error("--vault {url}: another vault has the same first host label, so both would publish to the ConfigMap {configmap}; watch them from separate namespaces")]
    SameConfigMap { url: String, configmap: String },
    #[error("--fleet-daemonset {value:?} must be NAME or NAMESPACE/NAME")]
    FleetDaemonSet { value: String },
    #[error("set --fleet-daemonset (the node DaemonSet, whose desired count is the fleet size) or --fleet-size N")]
    NoFleet,
    #[error("--heartbeat must be between 1s and 5m (nodes take a notice older than 15m as a dead watcher)")]
    Heartbeat,
    #[error("--interval must be at least 1s")]
    Interval,
    #[error("--lease-retry-period must be shorter than --lease-renew-deadline, and that shorter than --lease-duration")]
    LeaseOrder,
    #[error("--lease-duration must be at least 1s")]
    LeaseDuration,
    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("could not configure the Kubernetes client: {0}; run inside a pod with a service account, or set KUBECONFIG")]
    Kubernetes(#[source] Box<kube::Error>),
    /// A vault's client could not be set up.
    #[error("vault {vault}: {source}")]
    Connect {
        vault: String,
        #[source]
        source: Box<crate::service::Error>,
    },
    #[error("could not handle SIGTERM: {0}")]
    Signal(#[source] std::io::Error),
}
