//! `akvfs run --config FILE`: keeps every mount of the file serving, retries failed starts, applies reloads on SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::config::{load_config_file, MountConfig};
use crate::daemon::mounts::{prepare_mountpoint_with, Prepare};
use crate::daemon::notify::{sd_notify, under_systemd, NotifyState};
use crate::daemon::signals::{Signals, Wake};
use crate::metrics::{MountMetrics, Registry};

use super::mount::{MountHandle, PreparedMount};
use super::{harden, metrics_for, runtime, start_metrics, Error};

/// One configured mount of `akvfs run`: serving, or waiting to try again.
struct Slot {
    config: MountConfig,
    metrics: Arc<MountMetrics>,
    state: SlotState,
}

enum SlotState {
    /// Boxed: a handle is large, and most slots wait or run alike.
    Running(Box<MountHandle>),
    Waiting {
        next_try: Instant,
        attempt: u32,
    },
}

/// Keeps every configured mount serving: starts them, retries the ones that
/// fail (vault unreachable, role assignment not yet effective, unmounted from
/// outside) with backoff from 1 s to 1 min, and applies reloads.
struct Supervisor {
    slots: Vec<Slot>,
    registry: Arc<Registry>,
}

impl Supervisor {
    fn same(a: &MountConfig, b: &MountConfig) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    fn waiting_now() -> SlotState {
        SlotState::Waiting {
            next_try: Instant::now(),
            attempt: 0,
        }
    }

    /// Brings the slots to the file's mounts: stops what is gone, replaces
    /// what changed, adds what is new, leaves the rest alone, then starts
    /// what is due. A changed mount keeps serving with its old settings
    /// until its replacement has connected and read the vault, and keeps
    /// serving if the replacement cannot.
    fn apply(&mut self, rt: &Runtime, file: crate::config::ConfigFile) {
        let (wanted, secret_names) = (file.mounts, file.metrics_secret_names);
        let mut next = Vec::new();
        for slot in std::mem::take(&mut self.slots) {
            if wanted.iter().any(|w| Self::same(w, &slot.config)) {
                next.push(slot);
                continue;
            }
            let changed = wanted
                .iter()
                .find(|w| w.mountpoint == slot.config.mountpoint);
            match (slot.state, changed) {
                (SlotState::Running(old), Some(cfg)) => {
                    next.push(self.replace(rt, *old, slot.metrics, cfg.clone(), secret_names));
                }
                (state, _) => {
                    tracing::info!(mountpoint = %slot.config.mountpoint.display(), "removing mount");
                    self.registry.remove(&slot.metrics.mountpoint);
                    if let SlotState::Running(h) = state {
                        h.stop(rt);
                    }
                }
            }
        }
        self.slots = next;
        for cfg in wanted {
            if self
                .slots
                .iter()
                .any(|s| s.config.mountpoint == cfg.mountpoint)
            {
                continue;
            }
            let metrics = metrics_for(&cfg, secret_names);
            metrics.set_down_reason("starting");
            self.registry.add(Arc::clone(&metrics));
            self.slots.push(Slot {
                config: cfg,
                metrics,
                state: Self::waiting_now(),
            });
        }
        self.tend(rt);
    }

    /// Replaces the running mount `old` with one of `cfg` at the same path.
    fn replace(
        &mut self,
        rt: &Runtime,
        old: MountHandle,
        old_metrics: Arc<MountMetrics>,
        cfg: MountConfig,
        secret_names: bool,
    ) -> Slot {
        let shown = cfg.mountpoint.display().to_string();
        tracing::info!(mountpoint = %shown, "the mount's settings changed; starting its replacement");
        let metrics = metrics_for(&cfg, secret_names);
        let prepared = match PreparedMount::new(rt, cfg.clone(), Arc::clone(&metrics)) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(
                    mountpoint = %shown,
                    "reload: cannot start the changed mount: {e}; the mount keeps serving with its previous settings (fix the config and reload again)"
                );
                return Slot {
                    config: old.config.clone(),
                    metrics: old_metrics,
                    state: SlotState::Running(Box::new(old)),
                };
            }
        };
        old.stop(rt);
        self.registry.remove(&old_metrics.mountpoint);
        self.registry.add(Arc::clone(&metrics));
        let mounted = prepare_mountpoint_with(
            &cfg.mountpoint,
            Prepare {
                create: true,
                nonempty: cfg.nonempty,
            },
        )
        .map_err(Error::Mountpoint)
        .and_then(|mp| prepared.mount(rt, mp));
        match mounted {
            Ok(h) => Slot {
                config: cfg,
                metrics,
                state: SlotState::Running(Box::new(h)),
            },
            Err(e) => {
                tracing::error!(mountpoint = %shown, "{e}; trying again in 1 s");
                metrics.set_down_reason(&e.to_string());
                Slot {
                    config: cfg,
                    metrics,
                    state: SlotState::Waiting {
                        next_try: Instant::now() + Duration::from_secs(1),
                        attempt: 1,
                    },
                }
            }
        }
    }

    /// Whether a mount went away or a retry is due.
    fn needs_attention(&self) -> bool {
        self.slots.iter().any(|s| match &s.state {
            SlotState::Running(h) => h.is_gone(),
            SlotState::Waiting { next_try, .. } => *next_try <= Instant::now(),
        })
    }

    /// Restarts mounts that went away and starts those that are due.
    fn tend(&mut self, rt: &Runtime) {
        for slot in &mut self.slots {
            slot.state = match std::mem::replace(&mut slot.state, Self::waiting_now()) {
                SlotState::Running(h) if h.is_gone() => {
                    tracing::warn!(
                        mountpoint = %slot.config.mountpoint.display(),
                        "the mount was unmounted, or its FUSE connection aborted, from outside; mounting it again (remove it from the config and reload to stop it)"
                    );
                    h.stop(rt);
                    slot.metrics.set_down_reason("unmounted from outside");
                    SlotState::Waiting {
                        next_try: Instant::now() + Duration::from_secs(1),
                        attempt: 1,
                    }
                }
                SlotState::Waiting { next_try, attempt } if next_try <= Instant::now() => {
                    match Self::start(rt, &slot.config, &slot.metrics) {
                        Ok(h) => SlotState::Running(Box::new(h)),
                        Err(e) => {
                            let wait = Duration::from_secs(1u64 << attempt.min(6))
                                .min(Duration::from_secs(60));
                            tracing::error!(
                                mountpoint = %slot.config.mountpoint.display(),
                                "{e}; trying again in {} s",
                                wait.as_secs()
                            );
                            slot.metrics.set_down_reason(&e.to_string());
                            SlotState::Waiting {
                                next_try: Instant::now() + wait,
                                attempt: attempt + 1,
                            }
                        }
                    }
                }
                other => other,
            };
        }
    }

    fn start(
        rt: &Runtime,
        cfg: &MountConfig,
        metrics: &Arc<MountMetrics>,
    ) -> Result<MountHandle, Error> {
        // A service creates its own mount directories (the DaemonSet's host
        // path, a VM's /mnt/...) and recovers what a killed predecessor left
        // there; `akvfs mount` leaves creating to the user.
        let mountpoint = prepare_mountpoint_with(
            &cfg.mountpoint,
            Prepare {
                create: true,
                nonempty: cfg.nonempty,
            },
        )
        .map_err(Error::Mountpoint)?;
        MountHandle::start(rt, cfg.clone(), mountpoint, Arc::clone(metrics))
    }

    fn stop_all(&mut self, rt: &Runtime) {
        for slot in self.slots.drain(..) {
            self.registry.remove(&slot.metrics.mountpoint);
            if let SlotState::Running(h) = slot.state {
                h.stop(rt);
            }
        }
    }

    fn status(&self) -> String {
        let running = self
            .slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Running(_)))
            .count();
        format!("{running} of {} mounts serving", self.slots.len())
    }
}

/// `akvfs run --config FILE`: every mount in the file, in the foreground.
/// Mounts that cannot start are retried with backoff and reported by
/// `/readyz` and `akvfs_mount_up`. SIGHUP re-reads the file: new mounts
/// start, removed ones stop, changed ones are replaced once the replacement
/// can read; the others are not touched. A bad file on reload is logged and
/// ignored.
///
/// Under systemd (Type=notify), READY=1 is sent only once every mount
/// serves and can read; if that takes longer than `ready_timeout`, the
/// start fails with the reason (and systemd's Restart= applies).
pub fn run_config_with(
    path: &Path,
    metrics_listen: Option<std::net::SocketAddr>,
    ready_timeout: Option<Duration>,
) -> Result<(), Error> {
    let file = load_config_file(path).map_err(Error::Config)?;
    let budget = file.mounts.iter().map(|m| m.cache.max_bytes).sum();
    harden(file.mlock, budget)?;
    let rt = runtime()?;
    // Before the first mount starts, so no signal is missed or kills us.
    let mut signals = Signals::new(&rt);
    let registry = Arc::new(Registry::default());
    let metrics_stop = start_metrics(&rt, metrics_listen.or(file.metrics_listen), &registry)?;
    let mut sup = Supervisor {
        slots: Vec::new(),
        registry: Arc::clone(&registry),
    };
    let started = Instant::now();
    sup.apply(&rt, file);
    tracing::info!("{}", sup.status());
    let mut told_ready = false;
    let mut last_status = String::new();
    // Only systemd waits for READY=1; elsewhere /readyz reports the state.
    let give_up_after = ready_timeout.filter(|_| under_systemd());
    let stop = |sup: &mut Supervisor, why: &str| {
        tracing::info!("{why}; unmounting everything");
        sd_notify(&[NotifyState::Stopping]);
        sup.stop_all(&rt);
        let _ = metrics_stop.send(true);
    };
    loop {
        if !told_ready {
            let (ready, why) = registry.readiness();
            if ready {
                told_ready = true;
                tracing::info!("ready: {}", sup.status());
                sd_notify(&[NotifyState::Ready, NotifyState::Status(&sup.status())]);
            } else {
                if why != last_status {
                    sd_notify(&[NotifyState::Status(&format!(
                        "{}; not ready: {why}",
                        sup.status()
                    ))]);
                    last_status = why.clone();
                }
                if let Some(limit) = give_up_after {
                    if started.elapsed() >= limit {
                        let err = Error::NotReady {
                            timeout: limit,
                            why,
                        };
                        stop(&mut sup, "giving up");
                        return Err(err);
                    }
                }
            }
        }
        let wake = rt.block_on(signals.wait(|| {
            sup.needs_attention()
                || (!told_ready
                    && (registry.readiness().0
                        || give_up_after.is_some_and(|t| started.elapsed() >= t)))
        }));
        match wake {
            Wake::Hup => {
                tracing::info!(config = %path.display(), "received SIGHUP; reloading");
                sd_notify(&[NotifyState::Reloading]);
                match load_config_file(path) {
                    Ok(file) => sup.apply(&rt, file),
                    Err(e) => tracing::error!("{e}; keeping the running configuration"),
                }
                // Before the first READY=1 the loop above sends it.
                if told_ready {
                    sd_notify(&[NotifyState::Ready, NotifyState::Status(&sup.status())]);
                }
            }
            Wake::Gone => sup.tend(&rt),
            Wake::Term | Wake::Int => {
                stop(&mut sup, wake.describe());
                return Ok(());
            }
        }
    }
}
