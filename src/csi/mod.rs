//! `akvfs csi`: a Kubernetes CSI node plugin (driver `csi.akvfs.io`) that serves each pod's
//! inline `csi:` volume with the pod's own workload identity.
//!
//! kubelet calls NodePublishVolume with the pod's information and a service-account token for
//! `api://AzureADTokenExchange` (CSIDriver `podInfoOnMount: true`, `tokenRequests`,
//! `requiresRepublish: true`). The plugin checks the token's audience, lifetime, subject
//! (`system:serviceaccount:<namespace>:<service account>`) and pod binding, exchanges it with
//! Entra ID for a Key Vault token (Entra ID verifies its signature against the cluster's
//! issuer), and binds a read-only view of that identity's mount onto the pod's target.
//!
//! Volume attributes: `keyvaultName` (a vault name or https URL), `clientID`, optional
//! `tenantId` (default: the plugin's `--tenant-id`/`AZURE_TENANT_ID`), and the mount options
//! listed in [`request::VOLUME_OPTIONS`] under the config file's names; `cache_bytes` may not
//! exceed the plugin's `--max-volume-cache-bytes`, which is also the cap of a volume that sets
//! none. `readOnly: true` is required. With an fsGroup (`fsGroupPolicy: File`), files belong to that group and are
//! group-readable; otherwise they are readable by every user of the pod.
//!
//! A SecretProviderClass of the Azure provider maps one to one for `keyvaultName`, `clientID`
//! and `tenantId`; `objects` has no counterpart (every secret the identity may read is a file,
//! and the vault's RBAC decides which), and the provider's other parameters (`usePodIdentity`,
//! `useVMManagedIdentity`, `cloudName`, ...) are refused as unknown attributes.
//!
//! Revocation, per identity mount: removing the identity or its access to the vault (the list
//! answers 403) removes every file within one `refresh_interval` (default 30s); a per-secret
//! deny that a listing cannot show, within `max_unverified` (default 10m); a federated
//! credential removed in Entra ID, when the Key Vault token is next renewed, at most 10 minutes
//! plus one `refresh_interval` later (the identity is then refused and every value dropped).
//!
//! Refusals answer a gRPC code kubelet shows in the pod's events: InvalidArgument (attributes,
//! a writable volume, mount flags), Unauthenticated (no token or a bad one), PermissionDenied
//! (Entra ID or the vault refused the identity), NotFound (a vault that does not exist),
//! Unavailable (Entra ID or the vault unreachable), Aborted (another call for the same target
//! is still in progress). No token, request or value is ever logged.
//!
//! Restart: the state directory records each target's identity key, vault, identity, group and
//! options, never a token. After a restart, the identity mounts are dead until kubelet's next
//! republish of one of their targets (at most a minute or so with `requiresRepublish`), which
//! mounts the identity again with the new token and stacks a new bind on the target. A
//! container that mounted the volume with `mountPropagation: HostToContainer` sees the new
//! mount; one without it keeps the dead mount (reads fail with ENOTCONN or ECONNABORTED) until
//! the pod is restarted.
//!
//! # Layout
//! - [`proto`]: the generated CSI messages and services.
//! - [`request`]: reading and checking a publish request.
//! - [`token`]: the token's claims, the exchange, the identity's credential.
//! - [`identity`]: one identity's mount and its tokens.
//! - [`slots`]: the per-identity and per-target locks that order publishes.
//! - [`registry`]: identity mounts and targets.
//! - [`state`]: the state directory.
//! - [`bind`]: binds, unmounts, aborting FUSE connections.
//! - [`heap`]: keeping the memory of identity mounts that ended out of the process.
//! - [`server`]: the Identity and Node services.
//! - [`error`]: refusals and their gRPC codes, and the node-side failures they carry.

pub mod bind;
mod error;
pub mod heap;
pub mod identity;
pub mod proto;
pub mod registry;
pub mod request;
pub mod server;
pub mod slots;
pub mod state;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::{CsiError, Refusal};

use crate::daemon::signals::Signals;
use crate::service::Error;

/// The driver's name, as in the CSIDriver object.
pub const DRIVER_NAME: &str = "csi.akvfs.io";

/// Memory for cached values that the locked region is sized for, for all
/// identity mounts together.
const VALUES_BUDGET: u64 = 256 << 20;

/// `akvfs csi`.
#[derive(clap::Args, Debug)]
pub struct CsiArgs {
    /// The gRPC endpoint kubelet calls: unix:///path/to/csi.sock.
    #[arg(long, value_name = "URL", default_value = "unix:///csi/csi.sock")]
    pub endpoint: String,

    /// This node's name, reported to kubelet (NodeGetInfo).
    #[arg(long, value_name = "NAME", env = "KUBE_NODE_NAME")]
    pub node_id: String,

    /// Where targets are recorded to survive a restart (never a token or a value).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/kubelet/plugins/csi.akvfs.io/state"
    )]
    pub state_dir: PathBuf,

    /// Entra tenant of volumes that set no tenantId. [default: AZURE_TENANT_ID]
    #[arg(
        long,
        value_name = "ID",
        env = "AZURE_TENANT_ID",
        help_heading = "Authentication"
    )]
    pub tenant_id: Option<String>,

    /// Extra trusted root certificates, PEM (private CAs, TLS-inspecting proxies).
    #[arg(long, value_name = "PEM", help_heading = "Connection")]
    pub ca_file: Option<PathBuf>,

    /// Do not require the token challenge's resource to match the vault's domain.
    #[arg(long, help_heading = "Connection")]
    pub disable_challenge_resource_verification: bool,

    /// Serve Prometheus metrics and health checks (/metrics, /healthz, /readyz) on this address.
    #[arg(long, value_name = "ADDR", help_heading = "Observability")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// The most a volume's value cache may hold (its cache_bytes attribute), and the cap of a
    /// volume that sets none: one identity cannot take the node's locked memory.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "16MiB",
        value_parser = parse_volume_cache,
        help_heading = "Security"
    )]
    pub max_volume_cache_bytes: u64,

    /// Do not lock memory. Without locking, cached secrets can be written to swap.
    #[arg(long, help_heading = "Security")]
    pub no_mlock: bool,
}

/// `--max-volume-cache-bytes`: a size within what the locked budget of all volumes holds.
fn parse_volume_cache(s: &str) -> Result<u64, CsiError> {
    let n = crate::config::parse_size(s).map_err(CsiError::VolumeCacheSize)?;
    if !(64 << 10..=VALUES_BUDGET).contains(&n) {
        return Err(CsiError::VolumeCacheRange {
            bytes: n,
            budget: VALUES_BUDGET,
        });
    }
    Ok(n)
}

/// Serves the Identity and Node services until SIGTERM or SIGINT. Identity
/// mounts are left to end with the process: their targets stay bound (and
/// dead) until kubelet republishes them to a restarted plugin.
pub fn run(args: CsiArgs) -> Result<(), Error> {
    let socket = args
        .endpoint
        .strip_prefix("unix://")
        .map(PathBuf::from)
        .ok_or_else(|| Error::Endpoint {
            endpoint: args.endpoint.clone(),
        })?;
    crate::daemon::harden::disable_core_dumps().map_err(Error::Harden)?;
    heap::keep_large_blocks_mapped();
    crate::daemon::harden::lock_memory(!args.no_mlock, VALUES_BUDGET).map_err(Error::Harden)?;
    let state = state::StateDir::open(&args.state_dir)?;
    let transport = crate::service::connect::transport(args.ca_file.as_deref())?;
    bind::ensure_fusectl();
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("akvfs-rt")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?,
    );
    let mut signals = Signals::new(&rt);
    let metrics = Arc::new(crate::metrics::Registry::default());
    let (metrics_stop, metrics_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = args.metrics_listen {
        rt.block_on(crate::metrics::serve(
            addr,
            Arc::clone(&metrics),
            metrics_rx,
        ))
        .map_err(Error::Metrics)?;
    }
    let node = request::NodeDefaults {
        tenant_id: args.tenant_id.clone().filter(|t| !t.is_empty()),
        ca_file: args.ca_file.clone(),
        verify_challenge_resource: !args.disable_challenge_resource_verification,
        max_cache_bytes: args.max_volume_cache_bytes,
    };
    let registry = Arc::new(registry::Registry::new(
        Arc::clone(&rt),
        node,
        state,
        transport,
        metrics,
    ));
    let (identity, nodesvc) = server::services(registry, args.node_id.clone());

    if let Some(parent) = socket.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    // A socket left by a previous run.
    let _ = std::fs::remove_file(&socket);
    let listener = {
        let _in = rt.enter();
        tokio::net::UnixListener::bind(&socket).map_err(|source| Error::Listen {
            socket: socket.clone(),
            source,
        })?
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(
        tonic::transport::Server::builder()
            .add_service(identity)
            .add_service(nodesvc)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    tracing::info!(endpoint = %args.endpoint, node = %args.node_id, driver = DRIVER_NAME, "serving CSI");
    let reason = rt.block_on(signals.wait(|| server.is_finished()));
    tracing::info!("{}; stopping the CSI server", reason.describe());
    let _ = stop.send(());
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await });
    let _ = metrics_stop.send(true);
    let _ = std::fs::remove_file(&socket);
    // The runtime is dropped here, on the main thread, with the mounts' tasks.
    Ok(())
}
