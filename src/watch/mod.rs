//! `akvfs watch`: one watcher per cluster. The elected leader lists each
//! configured vault every few seconds and publishes its metadata (never a
//! value) to one ConfigMap per vault, which the nodes watch; see
//! docs/SCALING.md and docs/DEPLOYMENT.md.

pub mod args;
mod error;
pub mod lease;
pub mod notice;
pub mod publish;

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use tokio::sync::watch;

pub use args::{WatchArgs, WatchConfig};
pub use error::WatchError;

use crate::metrics::MountMetrics;
use lease::{Elector, LeaseTimings};
use publish::{Fleet, Pacer, Publisher};

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Runs the watcher until SIGTERM or SIGINT; then gives the Lease up.
pub fn run(cfg: WatchConfig) -> Result<(), WatchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(WatchError::Runtime)?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: WatchConfig) -> Result<(), WatchError> {
    // The Kubernetes client's TLS uses rustls's process-wide provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .map_err(|e| WatchError::Kubernetes(Box::new(e)))?;
    let namespace = cfg
        .args
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = cfg
        .args
        .identity
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| format!("akvfs-watch-{}", std::process::id()));

    let fleet = Arc::new(Fleet::new(
        cfg.fleet.clone(),
        client.clone(),
        namespace.clone(),
    ));
    let mut publishers = Vec::new();
    for (vault, auth) in &cfg.vaults {
        let conn = crate::service::connect::connect(vault, auth, &MountMetrics::detached())
            .map_err(|e| WatchError::Connect {
                vault: vault.url.clone(),
                source: Box::new(e),
            })?;
        let publisher = Publisher {
            vault: conn.vault,
            configmaps: Api::<ConfigMap>::namespaced(client.clone(), &namespace),
            name: notice::object_name(&vault.url),
            fleet: Arc::clone(&fleet),
            interval: cfg.args.interval,
            heartbeat: cfg.args.heartbeat,
            limit_per_10s: cfg.args.limit_per_10s,
            pacer: Pacer::new(cfg.args.max_requests_per_10s),
        };
        publishers.push(publisher);
    }
    let (leading_tx, leading) = watch::channel(None);
    let (stop_tx, stop) = watch::channel(false);
    let elector = Elector::new(
        Api::<Lease>::namespaced(client.clone(), &namespace),
        &cfg.args.lease_name,
        &identity,
        LeaseTimings {
            duration: cfg.args.lease_duration,
            renew_deadline: cfg.args.lease_renew_deadline,
            retry_period: cfg.args.lease_retry_period,
        },
    );
    let election = tokio::spawn(elector.run(leading_tx, stop));

    for publisher in publishers {
        tokio::spawn(publisher.run(leading.clone()));
    }
    tracing::info!(%namespace, %identity, lease = %cfg.args.lease_name, vaults = cfg.vaults.len(), "watcher started");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(WatchError::Signal)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: giving the lease up");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), election).await;
    Ok(())
}
