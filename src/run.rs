//! Wiring and process life: vault client -> cache -> filesystem -> FUSE
//! session; hardening, daemonizing, signals and a clean unmount on exit.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use fuser::{MountOption, SessionACL};

use crate::auth::{build_identity, whoami, Identity};
use crate::cache::{backoff, SecretCache};
use crate::config::{AuthConfig, MountConfig, VaultConfig};
use crate::fs::{FsCore, FsTimings};
use crate::fuse::{AkvFs, KernelNotifier};
use crate::refresh::Refresher;
use crate::mounts::{prepare_mountpoint, unmount};
use crate::vault::azure::{build_transport, AzureVault, TransportSettings};
use crate::vault::{PageCount, Vault, VaultError};

/// A failure that ends the command, with the message to print.
#[derive(Debug)]
pub struct Failure(pub String);

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure(s)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
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
pub fn connect(vault: &VaultConfig, auth: &AuthConfig) -> Result<Connection, Failure> {
    let extra_roots_pem = match &vault.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| {
            Failure(format!("cannot read --ca-file {}: {e}", p.display()))
        })?),
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
    let identity = build_identity(auth, &transport).map_err(Failure)?;
    tracing::info!(
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
        vault: Arc::new(client),
    })
}

/// Adds what to check to a vault error, by its kind and wording.
pub fn hint(err: &VaultError, vault: &VaultConfig) -> String {
    let text = err.to_string();
    let lower = text.to_lowercase();
    let extra = if lower.contains("az not found") {
        " (install the Azure CLI and run az login, or choose another --auth)"
    } else if lower.contains("az login") || lower.contains("please run 'az login'") {
        " (run az login)"
    } else if lower.contains("dns") || lower.contains("resolve") || lower.contains("name or service") {
        " (check the vault name, DNS, and for private endpoints the private DNS zone)"
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("unknownissuer") {
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

/// `akvfs mount`.
pub fn mount(cfg: MountConfig) -> Result<(), Failure> {
    let mountpoint = prepare_mountpoint(&cfg.mountpoint)?;
    if cfg.foreground {
        return serve(cfg, mountpoint, &mut None);
    }
    // Fork before any thread exists; the parent waits until the child is
    // serving (or failed) and exits with its status.
    let (read_end, write_end) =
        nix::unistd::pipe().map_err(|e| Failure(format!("cannot create a pipe: {e}")))?;
    // SAFETY: no other thread exists yet (no runtime, no FUSE session), so
    // the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Failure(format!("cannot fork into the background: {e}"))),
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(write_end);
            let mut status = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut status);
            match status.strip_prefix("ok") {
                Some(_) => Ok(()),
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
            match serve(cfg, mountpoint, &mut pipe) {
                Ok(()) => std::process::exit(0),
                Err(Failure(msg)) => {
                    // The waiting parent prints it.
                    if let Some(mut p) = pipe {
                        let _ = write!(p, "err {msg}");
                    }
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null once a background daemon is
/// serving, so it holds no terminal or pipe of its parent open.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let null: OwnedFd = null.into();
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors, which we own.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

fn serve(
    cfg: MountConfig,
    mountpoint: std::path::PathBuf,
    ready_pipe: &mut Option<std::fs::File>,
) -> Result<(), Failure> {
    crate::harden::disable_core_dumps()?;
    if cfg.mlock {
        crate::harden::lock_memory()?;
    } else {
        tracing::warn!("memory is not locked (--no-mlock): cached secrets may be written to swap");
    }
    let rt = runtime()?;
    let conn = connect(&cfg.vault, &cfg.auth)?;
    let vault_url = cfg.vault.url.clone();
    let listing = rt.block_on(first_listing(&conn.vault, cfg.cache.fetch_timeout));
    let listing = match listing {
        Ok(l) => Some(l),
        Err(e @ VaultError::Forbidden { .. }) => {
            tracing::warn!(
                vault = %vault_url,
                "{}; the directory cannot be listed, but secrets can still be read by name",
                e
            );
            None
        }
        Err(e) => {
            return Err(Failure(format!(
                "cannot list secrets in {vault_url}: {}",
                hint(&e, &cfg.vault)
            )))
        }
    };

    let cache = SecretCache::new(Arc::clone(&conn.vault), cfg.cache.clone());
    let core = FsCore::new(cache, cfg.owner, FsTimings::default());
    let count = listing.as_ref().map(|l| l.len());
    if let Some(l) = listing {
        core.set_listing(l);
    }
    let fs = AkvFs::new(Arc::clone(&core), rt.handle().clone(), cfg.strict_open);

    let mut fuse_cfg = fuser::Config::default();
    fuse_cfg.mount_options = vec![
        MountOption::FSName(vault_host(&vault_url)),
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
    let session = fuser::Session::new(fs, &mountpoint, &fuse_cfg).map_err(|e| {
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
    let bg = session
        .spawn()
        .map_err(|e| Failure(format!("cannot start the FUSE session: {e}")))?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let refresher = Refresher::new(
        Arc::clone(&core),
        Arc::new(KernelNotifier(bg.notifier())),
        cfg.refresh,
    );
    let refresh_task = rt.spawn(refresher.run(stop_rx));

    tracing::info!(
        vault = %vault_url,
        mountpoint = %mountpoint.display(),
        secrets = count.map(|c| c as i64).unwrap_or(-1),
        pid = std::process::id(),
        "serving"
    );
    // Closing the pipe is what lets the waiting parent exit.
    if let Some(mut pipe) = ready_pipe.take() {
        let _ = pipe.write_all(b"ok");
        drop(pipe);
        detach_stdio();
    }

    let reason = rt.block_on(wait_for_stop(&bg));
    tracing::info!(mountpoint = %mountpoint.display(), "{reason}; unmounting");
    let _ = stop_tx.send(true);
    let _ = rt.block_on(refresh_task);
    if bg.guard.is_finished() {
        let _ = bg.join();
        return Ok(());
    }
    if let Err(e) = bg.umount_and_join() {
        tracing::warn!(mountpoint = %mountpoint.display(), "unmount failed ({e}); detaching lazily instead");
        unmount(&mountpoint, true).map_err(Failure)?;
    }
    Ok(())
}

fn vault_host(url: &str) -> String {
    url.trim_start_matches("https://").to_string()
}

/// Waits for SIGTERM, SIGINT, or the mount going away (`umount` by someone else).
async fn wait_for_stop(bg: &fuser::BackgroundSession) -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            Some(_) = async { term.as_mut()?.recv().await } => return "received SIGTERM",
            Some(_) = async { int.as_mut()?.recv().await } => return "received SIGINT",
            _ = tick.tick() => {
                if bg.guard.is_finished() {
                    return "the mount was unmounted";
                }
            }
        }
    }
}

/// `akvfs check`: identity, token, and list access. Prints names, never values.
pub fn check(vault: VaultConfig, auth: AuthConfig) -> Result<(), Failure> {
    let rt = runtime()?;
    let conn = connect(&vault, &auth)?;
    println!("vault:    {}", vault.url);
    println!(
        "auth:     {} ({})",
        conn.identity.mode.as_str(),
        conn.identity.reason
    );
    rt.block_on(async {
        let (claims, expires) = whoami(&conn.identity.credential).await.map_err(|e| {
            Failure(format!("{} authentication failed: {e}", conn.identity.mode.as_str()))
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
        println!("list:     ok, {} secrets ({} pages)", names.len(), pages.get());
        for s in names {
            let state = if s.enabled { "" } else { "  (disabled)" };
            println!("  {}{state}", s.name);
        }
        Ok::<(), Failure>(())
    })
}

/// Used by tests: the core for a vault, without a mount.
pub fn core_for(vault: Arc<dyn Vault>, cfg: &MountConfig) -> Arc<FsCore> {
    FsCore::new(
        SecretCache::new(vault, cfg.cache.clone()),
        cfg.owner,
        FsTimings::default(),
    )
}
