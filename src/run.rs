//! Wiring and process life: vault client -> cache -> filesystem -> FUSE
//! session -> refresher, for one mount ([`MountHandle`]) or several from a
//! config file; hardening, daemonizing, signals, reload and clean unmounts.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{MountOption, SessionACL};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::auth::{build_identity, whoami, CountingCredential, Identity};
use crate::cache::{backoff, SecretCache};
use crate::config::{load_config_file, AuthConfig, MountConfig, VaultConfig};
use crate::fs::{FsCore, FsTimings};
use crate::fuse::{AkvFs, KernelNotifier};
use crate::metrics::{MountMetrics, Registry};
use crate::mounts::{prepare_mountpoint_with, unmount, Prepare};
use crate::refresh::Refresher;
use crate::secret::SecretName;
use crate::vault::azure::{build_transport, AzureVault, TransportSettings};
use crate::vault::metered::MeteredVault;
use crate::vault::{PageCount, Vault, VaultError};

/// A failure that ends the command, with the message to print.
#[derive(Debug)]
pub struct Failure(pub String);

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure(s)
    }
}

fn runtime() -> Result<Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("akvfs-rt")
        .thread_stack_size(512 << 10)
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the async runtime: {e}")))
}

/// The vault client and the identity behind it.
pub struct Connection {
    pub identity: Identity,
    pub vault: Arc<dyn Vault>,
}

/// Builds transport, credential and vault client. Makes no network call.
pub fn connect(
    vault: &VaultConfig,
    auth: &AuthConfig,
    metrics: &Arc<MountMetrics>,
) -> Result<Connection, Failure> {
    let extra_roots_pem = match &vault.ca_file {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| Failure(format!("cannot read --ca-file {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let transport = build_transport(&TransportSettings {
        extra_roots_pem,
        connect_timeout: Some(Duration::from_secs(5)),
    })
    .map_err(|e| match &vault.ca_file {
        Some(p) => Failure(format!("--ca-file {}: {e}", p.display())),
        None => Failure(e),
    })?;
    let mut identity = build_identity(auth, &transport).map_err(Failure)?;
    identity.credential = CountingCredential::wrap(identity.credential, Arc::clone(metrics));
    tracing::info!(
        vault = %vault.url,
        auth = identity.mode.as_str(),
        reason = %identity.reason,
        "using {} authentication",
        identity.mode.as_str()
    );
    let client = AzureVault::new(
        &vault.url,
        Arc::clone(&identity.credential),
        &transport,
        vault.verify_challenge_resource,
    )
    .map_err(Failure)?;
    Ok(Connection {
        identity,
        vault: Arc::new(MeteredVault::new(Arc::new(client), Arc::clone(metrics))),
    })
}

/// Adds what to check to a vault error, by its kind and wording.
pub fn hint(err: &VaultError, vault: &VaultConfig) -> String {
    let text = err.to_string();
    let lower = text.to_lowercase();
    let extra = if lower.contains("az not found") {
        " (install the Azure CLI and run az login, or choose another --auth)"
    } else if lower.contains("az login") {
        " (run az login)"
    } else if lower.contains("dns")
        || lower.contains("resolve")
        || lower.contains("name or service")
    {
        " (check the vault name, DNS, and for private endpoints the private DNS zone)"
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("unknownissuer")
    {
        " (the vault's TLS certificate is not trusted: check --ca-file, SSL_CERT_FILE, or a TLS-inspecting proxy)"
    } else if lower.contains("connection refused") || lower.contains("connect") {
        " (check the URL and port, firewalls, and the vault's network rules)"
    } else if lower.contains("challenge") && vault.verify_challenge_resource {
        " (for a private endpoint with a custom name or the emulator, pass --disable-challenge-resource-verification)"
    } else {
        ""
    };
    format!("{text}{extra}")
}

/// Lists the vault once, retrying transient errors within `budget`.
async fn first_listing(
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
    ) -> Result<PreparedMount, Failure> {
        let vault_url = cfg.vault.url.clone();
        let conn = connect(&cfg.vault, &cfg.auth, &metrics)?;
        let listing = match rt.block_on(first_listing(&conn.vault, cfg.cache.fetch_timeout)) {
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
                        return Err(Failure(format!(
                            "cannot read secrets in {vault_url}: {}",
                            hint(
                                if matches!(read, VaultError::Forbidden { .. }) {
                                    &read
                                } else {
                                    &e
                                },
                                &cfg.vault
                            )
                        )))
                    }
                }
            }
            Err(e) => {
                return Err(Failure(format!(
                    "cannot list secrets in {vault_url}: {}",
                    hint(&e, &cfg.vault)
                )))
            }
        };

        let cache = SecretCache::new(Arc::clone(&conn.vault), cfg.cache.clone());
        let core =
            FsCore::with_metrics(cache, cfg.owner, FsTimings::default(), Arc::clone(&metrics));
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
        })
    }

    /// Mounts on `mountpoint` (checked by [`crate::mounts::prepare_mountpoint`]) and starts
    /// refreshing.
    pub fn mount(self, rt: &Runtime, mountpoint: PathBuf) -> Result<MountHandle, Failure> {
        let PreparedMount {
            config: cfg,
            metrics,
            core,
            count,
        } = self;
        let vault_url = cfg.vault.url.clone();
        let fs = AkvFs::new(Arc::clone(&core), rt.handle().clone(), cfg.strict_open);
        let session = fuser::Session::new(fs, &mountpoint, &fuse_config(&cfg)).map_err(|e| {
            Failure(format!(
                "cannot mount on {}: {e}{}",
                mountpoint.display(),
                if e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EPERM) {
                    "; mounting needs root, or fusermount3 (package fuse3) for other users; --allow-other also needs user_allow_other in /etc/fuse.conf"
                } else if e.kind() == std::io::ErrorKind::NotFound {
                    "; is /dev/fuse present and fuse3 installed?"
                } else {
                    ""
                }
            ))
        })?;
        let session = session
            .spawn()
            .map_err(|e| Failure(format!("cannot start the FUSE session: {e}")))?;
        let (stop, stop_rx) = watch::channel(false);
        let refresher = Refresher::new(
            Arc::clone(&core),
            Arc::new(KernelNotifier(session.notifier())),
            cfg.refresh,
        );
        let refresher = rt.spawn(refresher.run(stop_rx));
        metrics.up.store(true, Ordering::Relaxed);
        tracing::info!(
            vault = %vault_url,
            mountpoint = %mountpoint.display(),
            secrets = count,
            pid = std::process::id(),
            "serving"
        );
        Ok(MountHandle {
            config: cfg,
            mountpoint,
            metrics,
            session,
            stop,
            refresher,
        })
    }
}

/// One serving mount: its FUSE session, refresher and metrics.
pub struct MountHandle {
    pub config: MountConfig,
    pub mountpoint: PathBuf,
    pub metrics: Arc<MountMetrics>,
    session: fuser::BackgroundSession,
    stop: watch::Sender<bool>,
    refresher: tokio::task::JoinHandle<()>,
}

impl MountHandle {
    /// Connects, lists the vault, mounts and starts refreshing. `mountpoint`
    /// has been checked by [`crate::mounts::prepare_mountpoint`].
    pub fn start(
        rt: &Runtime,
        cfg: MountConfig,
        mountpoint: PathBuf,
        metrics: Arc<MountMetrics>,
    ) -> Result<MountHandle, Failure> {
        PreparedMount::new(rt, cfg, metrics)?.mount(rt, mountpoint)
    }

    /// The mount went away without us (someone ran umount).
    pub fn is_gone(&self) -> bool {
        self.session.guard.is_finished()
    }

    /// Stops refreshing and unmounts; detaches lazily if files are open.
    pub fn stop(self, rt: &Runtime) {
        self.metrics.up.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = rt.block_on(self.refresher);
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
    } else {
        SessionACL::Owner
    };
    fuse_cfg.n_threads = Some(2);
    fuse_cfg.clone_fd = true;
    fuse_cfg
}

/// Hardening applied once per process, before any secret is fetched.
fn harden(mlock: bool) -> Result<(), Failure> {
    crate::harden::disable_core_dumps()?;
    if mlock {
        crate::harden::lock_memory()?;
    } else {
        tracing::warn!("memory is not locked (--no-mlock): cached secrets may be written to swap");
    }
    Ok(())
}

/// Tells systemd (Type=notify) how we are doing, when it asked.
fn sd_notify(state: &[sd_notify::NotifyState]) {
    if under_systemd() {
        if let Err(e) = sd_notify::notify(false, state) {
            tracing::debug!("sd_notify: {e}");
        }
    }
}

fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// `akvfs mount`.
pub fn mount(
    cfg: MountConfig,
    metrics_listen: Option<std::net::SocketAddr>,
) -> Result<(), Failure> {
    let mountpoint = prepare_mountpoint_with(
        &cfg.mountpoint,
        Prepare {
            create: false,
            nonempty: cfg.nonempty,
        },
    )?;
    if cfg.foreground {
        return serve_one(cfg, mountpoint, metrics_listen, &mut None);
    }
    // Fork before any thread exists; the parent waits until the child is
    // serving (or failed) and exits with its status.
    let (read_end, write_end) =
        nix::unistd::pipe().map_err(|e| Failure(format!("cannot create a pipe: {e}")))?;
    // SAFETY: no other thread exists yet (no runtime, no FUSE session), so
    // the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Failure(format!("cannot fork into the background: {e}"))),
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(write_end);
            let mut status = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut status);
            match status.strip_prefix("ok ") {
                Some(logs) => {
                    eprintln!(
                        "akvfs: serving {} on {} in the background (pid {child}); logs: {logs}",
                        cfg.vault.url,
                        mountpoint.display()
                    );
                    Ok(())
                }
                None if status.is_empty() => Err(Failure(
                    "the background process exited before the mount was ready; run with --foreground to see why".into(),
                )),
                None => Err(Failure(status.trim_start_matches("err ").to_string())),
            }
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read_end);
            let _ = nix::unistd::setsid();
            let mut pipe = Some(std::fs::File::from(write_end));
            match serve_one(cfg, mountpoint, metrics_listen, &mut pipe) {
                Ok(()) => std::process::exit(0),
                Err(Failure(msg)) => {
                    // The waiting parent prints it; once it has gone, the
                    // log destination holds it.
                    match pipe {
                        Some(mut p) => {
                            let _ = write!(p, "err {msg}");
                        }
                        None => tracing::error!("{msg}"),
                    }
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Where a background daemon's log lines go, once its stderr is no longer
/// the terminal: the systemd journal, else syslog, else a file under the
/// user's state directory. Logs never hold secret values, so a file is
/// allowed.
enum LogSink {
    /// A stream to journald (what `systemd-cat` uses), or a file.
    Fd(OwnedFd, String),
    /// A pipe whose lines a thread forwards to syslog as datagrams.
    Syslog(OwnedFd, String),
}

const JOURNAL_STREAM: &str = "/run/systemd/journal/stdout";
const SYSLOG_SOCKET: &str = "/dev/log";

fn open_log_sink() -> Result<LogSink, String> {
    if let Ok(mut s) = std::os::unix::net::UnixStream::connect(JOURNAL_STREAM) {
        // identifier, unit id, priority (info), level prefix, and no
        // forwarding to syslog, kmsg or the console.
        if s.write_all(b"akvfs\n\n6\n0\n0\n0\n0\n").is_ok() {
            let how = if nix::unistd::geteuid().is_root() {
                "the systemd journal (journalctl -t akvfs)"
            } else {
                "the systemd journal (journalctl --user -t akvfs, or journalctl -t akvfs)"
            };
            return Ok(LogSink::Fd(s.into(), how.into()));
        }
    }
    if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
        // A stuck syslog daemon drops lines instead of blocking the writers
        // (FUSE request threads log too).
        if sock.connect(SYSLOG_SOCKET).is_ok() && sock.set_nonblocking(true).is_ok() {
            let (read, write) =
                nix::unistd::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
            let pid = std::process::id();
            std::thread::Builder::new()
                .name("akvfs-syslog".into())
                .spawn(move || {
                    use std::io::BufRead;
                    let lines = std::io::BufReader::new(std::fs::File::from(read));
                    for line in lines.lines().map_while(Result::ok) {
                        // facility daemon (3), severity info (6)
                        let _ = sock.send(format!("<30>akvfs[{pid}]: {line}").as_bytes());
                    }
                })
                .map_err(|e| format!("cannot start the syslog thread: {e}"))?;
            return Ok(LogSink::Syslog(
                write,
                "syslog (identifier akvfs, e.g. /var/log/syslog)".into(),
            ));
        }
    }
    let dir = state_dir()
        .ok_or("cannot find a directory for the log file: set XDG_STATE_HOME or HOME")?
        .join("akvfs");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create the log directory {}: {e}", dir.display()))?;
    let file = dir.join("akvfs.log");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&file)
        .map_err(|e| format!("cannot open the log file {}: {e}", file.display()))?;
    Ok(LogSink::Fd(f.into(), file.display().to_string()))
}

/// $XDG_STATE_HOME, else ~/.local/state (the XDG base directory default).
fn state_dir() -> Option<PathBuf> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| var("HOME").map(|h| h.join(".local/state")))
}

/// Points stdin and stdout at /dev/null and stderr (where the log lines go)
/// at `sink`, once a background daemon is serving, so it holds no terminal
/// or pipe of its parent open.
fn detach_stdio(sink: Option<&LogSink>) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let null: OwnedFd = null.into();
        let err = match sink {
            Some(LogSink::Fd(fd, _)) | Some(LogSink::Syslog(fd, _)) => fd.as_raw_fd(),
            None => null.as_raw_fd(),
        };
        for (fd, from) in [(0, null.as_raw_fd()), (1, null.as_raw_fd()), (2, err)] {
            // SAFETY: dup2 onto the standard descriptors, which we own.
            unsafe { libc::dup2(from, fd) };
        }
    }
}

fn start_metrics(
    rt: &Runtime,
    addr: Option<std::net::SocketAddr>,
    registry: &Arc<Registry>,
) -> Result<watch::Sender<bool>, Failure> {
    let (tx, rx) = watch::channel(false);
    if let Some(addr) = addr {
        rt.block_on(crate::metrics::serve(addr, Arc::clone(registry), rx))?;
    }
    Ok(tx)
}

fn serve_one(
    cfg: MountConfig,
    mountpoint: PathBuf,
    metrics_listen: Option<std::net::SocketAddr>,
    ready_pipe: &mut Option<std::fs::File>,
) -> Result<(), Failure> {
    harden(cfg.mlock)?;
    let rt = runtime()?;
    // Before anything can take long, so no signal is missed or kills us.
    let mut signals = Signals::new(&rt);
    let registry = Arc::new(Registry::default());
    let metrics_stop = start_metrics(&rt, metrics_listen, &registry)?;
    let metrics = metrics_for(&cfg, false);
    let handle = MountHandle::start(&rt, cfg, mountpoint, metrics)?;
    registry.add(Arc::clone(&handle.metrics));
    sd_notify(&[sd_notify::NotifyState::Ready]);
    // Closing the pipe is what lets the waiting parent exit.
    if let Some(mut pipe) = ready_pipe.take() {
        let sink = open_log_sink();
        let said = match &sink {
            Ok(LogSink::Fd(_, how)) | Ok(LogSink::Syslog(_, how)) => how.clone(),
            Err(e) => format!("none ({e})"),
        };
        let _ = write!(pipe, "ok {said}");
        drop(pipe);
        detach_stdio(sink.as_ref().ok());
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
    sd_notify(&[sd_notify::NotifyState::Stopping]);
    handle.stop(&rt);
    let _ = metrics_stop.send(true);
    Ok(())
}

/// Why the wait ended.
enum Wake {
    Term,
    Int,
    Hup,
    Gone,
}

impl Wake {
    fn describe(&self) -> &'static str {
        match self {
            Wake::Term => "received SIGTERM",
            Wake::Int => "received SIGINT",
            Wake::Hup => "received SIGHUP",
            Wake::Gone => "the mount was unmounted",
        }
    }
}

/// The process's handlers for SIGTERM, SIGINT and SIGHUP, created once and
/// kept: a signal that arrives while a mount is being started is delivered
/// to the next wait instead of being lost (or ending the process with a
/// dead mount, which is what SIGHUP's default action does).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new(rt: &Runtime) -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_runtime = rt.enter();
        let make = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot handle {name}: {e}");
                None
            }
        };
        Signals {
            term: make(SignalKind::terminate(), "SIGTERM"),
            int: make(SignalKind::interrupt(), "SIGINT"),
            hup: make(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// Waits for a signal, or for `check()` turning true (polled every
    /// 200 ms), which answers [`Wake::Gone`].
    async fn wait(&mut self, check: impl Fn() -> bool) -> Wake {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let Signals { term, int, hup } = self;
        loop {
            tokio::select! {
                Some(_) = async { term.as_mut()?.recv().await } => return Wake::Term,
                Some(_) = async { int.as_mut()?.recv().await } => return Wake::Int,
                Some(_) = async { hup.as_mut()?.recv().await } => return Wake::Hup,
                _ = tick.tick() => {
                    if check() {
                        return Wake::Gone;
                    }
                }
            }
        }
    }
}

fn metrics_for(cfg: &MountConfig, secret_names: bool) -> Arc<MountMetrics> {
    MountMetrics::new(
        &cfg.mountpoint.display().to_string(),
        &cfg.vault.url,
        cfg.refresh.interval * 2,
        secret_names,
    )
}

/// One configured mount of `akvfs run`: serving, or waiting to try again.
struct Slot {
    config: MountConfig,
    metrics: Arc<MountMetrics>,
    state: SlotState,
}

enum SlotState {
    Running(MountHandle),
    Waiting { next_try: Instant, attempt: u32 },
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
                    next.push(self.replace(rt, old, slot.metrics, cfg.clone(), secret_names));
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
            Err(Failure(e)) => {
                tracing::error!(
                    mountpoint = %shown,
                    "reload: cannot start the changed mount: {e}; the mount keeps serving with its previous settings (fix the config and reload again)"
                );
                return Slot {
                    config: old.config.clone(),
                    metrics: old_metrics,
                    state: SlotState::Running(old),
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
        .map_err(Failure)
        .and_then(|mp| prepared.mount(rt, mp));
        match mounted {
            Ok(h) => Slot {
                config: cfg,
                metrics,
                state: SlotState::Running(h),
            },
            Err(Failure(e)) => {
                tracing::error!(mountpoint = %shown, "{e}; trying again in 1 s");
                metrics.set_down_reason(&e);
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
                        Ok(h) => SlotState::Running(h),
                        Err(Failure(e)) => {
                            let wait = Duration::from_secs(1u64 << attempt.min(6))
                                .min(Duration::from_secs(60));
                            tracing::error!(
                                mountpoint = %slot.config.mountpoint.display(),
                                "{e}; trying again in {} s",
                                wait.as_secs()
                            );
                            slot.metrics.set_down_reason(&e);
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
    ) -> Result<MountHandle, Failure> {
        // A service creates its own mount directories (the DaemonSet's host
        // path, a VM's /mnt/...) and recovers what a killed predecessor left
        // there; `akvfs mount` leaves creating to the user.
        let mountpoint = prepare_mountpoint_with(
            &cfg.mountpoint,
            Prepare {
                create: true,
                nonempty: cfg.nonempty,
            },
        )?;
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

/// `akvfs run --config FILE` with the default ready timeout.
pub fn run_config(
    path: &Path,
    metrics_listen: Option<std::net::SocketAddr>,
) -> Result<(), Failure> {
    run_config_with(path, metrics_listen, Some(Duration::from_secs(60)))
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
) -> Result<(), Failure> {
    let file = load_config_file(path).map_err(Failure)?;
    harden(file.mlock)?;
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
        sd_notify(&[sd_notify::NotifyState::Stopping]);
        sup.stop_all(&rt);
        let _ = metrics_stop.send(true);
    };
    loop {
        if !told_ready {
            let (ready, why) = registry.readiness();
            if ready {
                told_ready = true;
                tracing::info!("ready: {}", sup.status());
                sd_notify(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&sup.status()),
                ]);
            } else {
                if why != last_status {
                    sd_notify(&[sd_notify::NotifyState::Status(&format!(
                        "{}; not ready: {why}",
                        sup.status()
                    ))]);
                    last_status = why.clone();
                }
                if let Some(limit) = give_up_after {
                    if started.elapsed() >= limit {
                        let msg = format!(
                            "not every mount could start within the ready timeout ({} s): {why}",
                            limit.as_secs()
                        );
                        stop(&mut sup, "giving up");
                        return Err(Failure(msg));
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
                sd_notify(&[sd_notify::NotifyState::Reloading]);
                match load_config_file(path) {
                    Ok(file) => sup.apply(&rt, file),
                    Err(e) => tracing::error!("{e}; keeping the running configuration"),
                }
                // Before the first READY=1 the loop above sends it.
                if told_ready {
                    sd_notify(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(&sup.status()),
                    ]);
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

/// `akvfs check`: identity, token, and list access. Prints names, never values.
pub fn check(vault: VaultConfig, auth: AuthConfig) -> Result<(), Failure> {
    let rt = runtime()?;
    let conn = connect(&vault, &auth, &MountMetrics::detached())?;
    println!("vault:    {}", vault.url);
    println!(
        "auth:     {} ({})",
        conn.identity.mode.as_str(),
        conn.identity.reason
    );
    rt.block_on(async {
        let (claims, expires) = whoami(&conn.identity.credential).await.map_err(|e| {
            Failure(format!(
                "{} authentication failed: {e}",
                conn.identity.mode.as_str()
            ))
        })?;
        let who = claims
            .upn
            .clone()
            .or(claims.unique_name.clone())
            .or(claims.appid.clone())
            .or(claims.azp.clone())
            .unwrap_or_else(|| "(not stated in the token)".into());
        println!("identity: {who}");
        if let Some(oid) = &claims.oid {
            println!("object:   {oid}");
        }
        if let Some(tid) = &claims.tid {
            println!("tenant:   {tid}");
        }
        if let Some(mi) = &claims.xms_mirid {
            println!("resource: {mi}");
        }
        let until = expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!("token:    ok, valid until {until}");
        let pages = PageCount::default();
        let names = conn.vault.list(&pages).await.map_err(|e| {
            Failure(format!(
                "cannot list secrets in {}: {}",
                vault.url,
                hint(&e, &vault)
            ))
        })?;
        println!(
            "list:     ok, {} secrets ({} pages)",
            names.len(),
            pages.get()
        );
        for s in names {
            let state = if s.enabled { "" } else { "  (disabled)" };
            println!("  {}{state}", s.name);
        }
        Ok::<(), Failure>(())
    })
}
