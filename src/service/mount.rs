//! One mount's life: connect and read the vault, mount, serve with a refresher, stop; and `akvfs mount`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fuser::{MountOption, SessionACL};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::cache::{backoff, BytePool, SecretCache};
use crate::config::MountConfig;
use crate::daemon::background::{fork_and_wait, ReadyPipe};
use crate::daemon::mounts::{prepare_mountpoint_with, unmount, Prepare};
use crate::daemon::notify::{sd_notify, NotifyState};
use crate::daemon::signals::{Signals, Wake};
use crate::fs::{FsCore, FsTimings};
use crate::fuse::{AkvFs, KernelNotifier};
use crate::metrics::{MountMetrics, Registry};
use crate::refresh::Refresher;
use crate::secret::SecretName;
use crate::vault::{PageCount, Vault, VaultError};

use super::connect::connect;
use super::vaults::connect_view_vaults;
use super::{harden, metrics_for, runtime, start_metrics, Error};

/// How long a mount that follows notices waits for the notice at start
/// before it lists the vault itself.
const NOTICE_START_WAIT: Duration = Duration::from_secs(5);

/// Lists the vault once, retrying transient errors within `budget`.
pub(super) async fn first_listing(
    vault: &Arc<dyn Vault>,
    budget: Duration,
) -> Result<Vec<crate::secret::SecretSummary>, VaultError> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut attempt = 0;
    loop {
        let r = match tokio::time::timeout_at(deadline, vault.list(&PageCount::default())).await {
            Ok(r) => r,
            Err(_) => Err(VaultError::Timeout(budget)),
        };
        match r {
            Err(e) if e.is_transient() && !matches!(e, VaultError::Timeout(_)) => {
                let wait = backoff(attempt, &e);
                if tokio::time::Instant::now() + wait >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// Asks for a secret that does not exist: 404 means the identity may read
/// secrets, 403 that it may not (or the vault's firewall refuses us).
async fn probe_read(vault: &Arc<dyn Vault>, budget: Duration) -> Result<(), VaultError> {
    let name = SecretName::parse("akvfs-read-probe").ok_or_else(|| {
        VaultError::BadResponse("the read probe's name is not a valid secret name".into())
    })?;
    match tokio::time::timeout(budget, vault.get(&name, None)).await {
        Err(_) => Err(VaultError::Timeout(budget)),
        Ok(Ok(_)) | Ok(Err(VaultError::NotFound)) | Ok(Err(VaultError::Disabled)) => Ok(()),
        Ok(Err(e)) => Err(e),
    }
}

/// A mount that has connected and proven it can read the vault, not yet
/// mounted: what a reload builds while the mount it replaces keeps serving.
pub struct PreparedMount {
    config: MountConfig,
    metrics: Arc<MountMetrics>,
    core: Arc<FsCore>,
    count: i64,
    /// The notice source read at start, to follow once mounted.
    notices: Option<Box<dyn crate::notice::NoticeSource>>,
    /// The other vaults the views read from.
    others: Vec<Arc<FsCore>>,
}

impl PreparedMount {
    /// Connects and lists the vault. A mount is only started when it can
    /// read: a 403 on the listing is followed by a GET of a missing name, and
    /// a 403 there too (no permission at all, or the vault's firewall) fails
    /// the start with the reason.
    pub fn new(
        rt: &Runtime,
        cfg: MountConfig,
        metrics: Arc<MountMetrics>,
    ) -> Result<PreparedMount, Error> {
        crate::daemon::mounts::check_allow_other(&cfg.owner).map_err(Error::Mountpoint)?;
        let conn = connect(&cfg.vault, &cfg.auth, &metrics)?;
        PreparedMount::with_connection(rt, cfg, metrics, conn)
    }

    /// Like [`PreparedMount::new`], over a vault client built by the caller
    /// (the CSI node plugin's, whose identity is a pod's token).
    pub fn with_connection(
        rt: &Runtime,
        cfg: MountConfig,
        metrics: Arc<MountMetrics>,
        conn: super::connect::Connection,
    ) -> Result<PreparedMount, Error> {
        let vault_url = cfg.vault.url.clone();
        // Following notices: start from the notice's listing, with the
        // first vault calls paced (crate::notice::start).
        let (vault, noticed, notices) = match &cfg.notice {
            Some(n) => {
                let start = rt.block_on(crate::notice::start::begin(
                    Arc::clone(&conn.vault),
                    &n.node_name,
                    crate::notice::source_for(&n.source),
                    NOTICE_START_WAIT,
                ));
                (start.vault, start.listing, Some(start.source))
            }
            None => (Arc::clone(&conn.vault), None, None),
        };
        let listing = match noticed {
            Some(l) => Ok(l),
            None => rt.block_on(first_listing(&conn.vault, cfg.cache.fetch_timeout)),
        };
        let listing = match listing {
            Ok(l) => Some(l),
            Err(e @ VaultError::Forbidden { .. }) => {
                match rt.block_on(probe_read(&conn.vault, cfg.cache.fetch_timeout)) {
                    Ok(()) => {
                        tracing::warn!(
                            vault = %vault_url,
                            "{}; the directory cannot be listed, but secrets can still be read by name",
                            e
                        );
                        None
                    }
                    Err(read) => {
                        return Err(Error::Read {
                            vault: vault_url,
                            source: if matches!(read, VaultError::Forbidden { .. }) {
                                read
                            } else {
                                e
                            },
                        })
                    }
                }
            }
            Err(source) => {
                return Err(Error::List {
                    vault: vault_url,
                    source,
                })
            }
        };

        let mut cache_cfg = cfg.cache.clone();
        cache_cfg.max_bytes = crate::locked::fit_cache_budget(cache_cfg.max_bytes);
        // One byte budget for the values of every vault the mount reads.
        let pool = BytePool::new(cache_cfg.max_bytes);
        let others = connect_view_vaults(rt, &cfg, &conn, &cache_cfg, &pool, &metrics)?;
        let cache = SecretCache::in_pool(vault, cache_cfg, &pool);
        let core =
            FsCore::with_metrics(cache, cfg.owner, FsTimings::default(), Arc::clone(&metrics));
        core.set_views_with(cfg.views.clone(), cfg.view_root, others.clone());
        // Every view that is not optional must resolve before the mount
        // serves: a missing object fails the start, naming the view.
        rt.block_on(core.check_views())
            .map_err(|(view, source)| Error::View { view, source })?;
        let count = listing.as_ref().map(|l| l.len() as i64).unwrap_or(-1);
        metrics.lists.store(listing.is_some(), Ordering::Relaxed);
        if let Some(l) = listing {
            core.set_listing(l);
            metrics.refresh_cycle(true);
        }
        Ok(PreparedMount {
            config: cfg,
            metrics,
            core,
            count,
            notices,
            others,
        })
    }

    /// Mounts on `mountpoint` (checked by [`crate::daemon::mounts::prepare_mountpoint`]) and starts
    /// refreshing.
    pub fn mount(self, rt: &Runtime, mountpoint: PathBuf) -> Result<MountHandle, Error> {
        let PreparedMount {
            config: cfg,
            metrics,
            core,
            count,
            notices: source,
            others,
        } = self;
        let vault_url = cfg.vault.url.clone();
        let fs = AkvFs::new(Arc::clone(&core), rt.handle().clone(), cfg.strict_open);
        let session =
            fuser::Session::new(fs, &mountpoint, &fuse_config(&cfg)).map_err(|source| {
                Error::Mount {
                    mountpoint: mountpoint.clone(),
                    source,
                }
            })?;
        let session = session.spawn().map_err(Error::Session)?;
        let (stop, stop_rx) = watch::channel(false);
        let refresher = Refresher::new(
            Arc::clone(&core),
            Arc::new(KernelNotifier(session.notifier(), Arc::clone(&core))),
            cfg.refresh,
        );
        let notices = cfg.notice.as_ref().zip(source).map(|(n, source)| {
            rt.spawn(follow_notices(
                Arc::clone(&refresher),
                n,
                source,
                stop_rx.clone(),
            ))
        });
        // Each other vault's views are refreshed by that vault's own
        // refresher, with the same settings and the same kernel notifier.
        let view_refreshers = others
            .into_iter()
            .map(|other| {
                let kernel = KernelNotifier(session.notifier(), Arc::clone(&other));
                let r = Refresher::new(other, Arc::new(kernel), cfg.refresh);
                rt.spawn(r.run(stop_rx.clone()))
            })
            .collect();
        let refresher = rt.spawn(refresher.run(stop_rx));
        metrics.set_up(true);
        tracing::info!(
            vault = %vault_url,
            mountpoint = %mountpoint.display(),
            secrets = count,
            pid = std::process::id(),
            memory = crate::locked::mode().map(|m| m.name()).unwrap_or("off"),
            "serving"
        );
        Ok(MountHandle {
            config: cfg,
            mountpoint,
            metrics,
            session,
            stop,
            refresher,
            view_refreshers,
            notices,
        })
    }
}

/// Follows a mount's change notices (crate::notice) until `stop`.
fn follow_notices(
    refresher: Arc<Refresher>,
    cfg: &crate::notice::NoticeConfig,
    source: Box<dyn crate::notice::NoticeSource>,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let node = crate::notice::NoticeNode::new(refresher, cfg.node_name.clone(), cfg.live_poll);
    node.run(source, stop)
}

/// One serving mount: its FUSE session, refresher and metrics.
pub struct MountHandle {
    pub config: MountConfig,
    pub mountpoint: PathBuf,
    pub metrics: Arc<MountMetrics>,
    session: fuser::BackgroundSession,
    stop: watch::Sender<bool>,
    refresher: tokio::task::JoinHandle<()>,
    /// The refreshers of the other vaults the views read from.
    view_refreshers: Vec<tokio::task::JoinHandle<()>>,
    notices: Option<tokio::task::JoinHandle<()>>,
}

impl MountHandle {
    /// Connects, lists the vault, mounts and starts refreshing. `mountpoint`
    /// has been checked by [`crate::daemon::mounts::prepare_mountpoint`].
    pub fn start(
        rt: &Runtime,
        cfg: MountConfig,
        mountpoint: PathBuf,
        metrics: Arc<MountMetrics>,
    ) -> Result<MountHandle, Error> {
        PreparedMount::new(rt, cfg, metrics)?.mount(rt, mountpoint)
    }

    /// The mount went away without us (someone ran umount).
    pub fn is_gone(&self) -> bool {
        self.session.guard.is_finished()
    }

    /// Stops refreshing and unmounts; detaches lazily if files are open.
    pub fn stop(self, rt: &Runtime) {
        self.metrics.set_up(false);
        let _ = self.stop.send(true);
        let _ = rt.block_on(self.refresher);
        for r in self.view_refreshers {
            let _ = rt.block_on(r);
        }
        if let Some(n) = self.notices {
            let _ = rt.block_on(n);
        }
        if self.session.guard.is_finished() {
            let _ = self.session.join();
            return;
        }
        if let Err(e) = self.session.umount_and_join() {
            tracing::warn!(mountpoint = %self.mountpoint.display(), "unmount failed ({e}); detaching lazily instead");
            if let Err(e) = unmount(&self.mountpoint, true) {
                tracing::error!("{e}");
            }
        }
        tracing::info!(mountpoint = %self.mountpoint.display(), "unmounted");
    }
}

fn fuse_config(cfg: &MountConfig) -> fuser::Config {
    let mut fuse_cfg = fuser::Config::default();
    fuse_cfg.mount_options = vec![
        MountOption::FSName(cfg.vault.url.trim_start_matches("https://").to_string()),
        // The kernel's own `subtype` parameter, so the mount shows as
        // fuse.akvfs whether mounted directly or through fusermount3.
        MountOption::CUSTOM("subtype=akvfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
        MountOption::RO,
    ];
    fuse_cfg.acl = if cfg.owner.allow_other {
        SessionACL::All
    } else if cfg.owner.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    fuse_cfg.n_threads = Some(2);
    fuse_cfg.clone_fd = true;
    fuse_cfg
}

/// `akvfs mount`.
pub fn mount(cfg: MountConfig, metrics_listen: Option<std::net::SocketAddr>) -> Result<(), Error> {
    crate::daemon::mounts::check_allow_other(&cfg.owner).map_err(Error::Mountpoint)?;
    let mountpoint = prepare_mountpoint_with(
        &cfg.mountpoint,
        Prepare {
            create: false,
            nonempty: cfg.nonempty,
        },
    )
    .map_err(Error::Mountpoint)?;
    if cfg.foreground {
        return serve_one(cfg, mountpoint, metrics_listen, &mut None);
    }
    // Fork before any thread exists; the parent waits until the child is
    // serving (or failed) and exits with its status.
    let (url, shown) = (cfg.vault.url.clone(), mountpoint.display().to_string());
    let (child, logs) = fork_and_wait(|pipe| serve_one(cfg, mountpoint, metrics_listen, pipe))?;
    eprintln!("akvfs: serving {url} on {shown} in the background (pid {child}); logs: {logs}");
    Ok(())
}

fn serve_one(
    cfg: MountConfig,
    mountpoint: PathBuf,
    metrics_listen: Option<std::net::SocketAddr>,
    ready_pipe: &mut Option<ReadyPipe>,
) -> Result<(), Error> {
    harden(cfg.mlock, cfg.cache.max_bytes)?;
    let rt = runtime()?;
    // Before anything can take long, so no signal is missed or kills us.
    let mut signals = Signals::new(&rt);
    let registry = Arc::new(Registry::default());
    let metrics_stop = start_metrics(&rt, metrics_listen, &registry)?;
    let metrics = metrics_for(&cfg, false);
    let handle = MountHandle::start(&rt, cfg, mountpoint, metrics)?;
    registry.add(Arc::clone(&handle.metrics));
    sd_notify(&[NotifyState::Ready]);
    if let Some(pipe) = ready_pipe.take() {
        let said = pipe.ready();
        tracing::info!(mountpoint = %handle.mountpoint.display(), "serving in the background; logging to {said}");
    }
    let reason = loop {
        match rt.block_on(signals.wait(|| handle.is_gone())) {
            Wake::Hup => tracing::info!(
                mountpoint = %handle.mountpoint.display(),
                "received SIGHUP; akvfs mount has nothing to reload, so it is ignored (akvfs run --config reloads a config file)"
            ),
            other => break other,
        }
    };
    tracing::info!(mountpoint = %handle.mountpoint.display(), "{}; unmounting", reason.describe());
    sd_notify(&[NotifyState::Stopping]);
    handle.stop(&rt);
    let _ = metrics_stop.send(true);
    Ok(())
}
