//! The commands that serve mounts: one mount's life, the supervisor of a config file's mounts, and `akvfs check`.

pub mod check;
pub mod connect;
pub(crate) mod credential;
pub mod error;
pub mod mount;
pub mod supervisor;
pub mod vaults;

use std::sync::Arc;

use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::config::MountConfig;
use crate::metrics::{MountMetrics, Registry};

pub use check::check;
pub use error::Error;
pub use mount::mount;
pub use supervisor::run_config_with;

fn runtime() -> Result<Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("akvfs-rt")
        .thread_stack_size(512 << 10)
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// Hardening applied once per process, before any secret is fetched.
/// `budget` is the value-cache budget of all mounts together, which the
/// locked region for secret values is sized for when it replaces mlockall.
fn harden(mlock: bool, budget: u64) -> Result<(), Error> {
    crate::daemon::harden::disable_core_dumps().map_err(Error::Harden)?;
    crate::daemon::harden::lock_memory(mlock, budget).map_err(Error::Harden)?;
    Ok(())
}

fn start_metrics(
    rt: &Runtime,
    addr: Option<std::net::SocketAddr>,
    registry: &Arc<Registry>,
) -> Result<watch::Sender<bool>, Error> {
    let (tx, rx) = watch::channel(false);
    if let Some(addr) = addr {
        rt.block_on(crate::metrics::serve(addr, Arc::clone(registry), rx))
            .map_err(Error::Metrics)?;
    }
    Ok(tx)
}

fn metrics_for(cfg: &MountConfig, secret_names: bool) -> Arc<MountMetrics> {
    MountMetrics::new(
        &cfg.mountpoint.display().to_string(),
        &cfg.vault.url,
        cfg.refresh.interval * 2,
        secret_names,
    )
}
