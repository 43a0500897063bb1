//! Fixtures: the in-process Key Vault emulator, akvfs mounts run as child processes, the tmpfs
//! baseline, and the cleanup behind them.
//!
//! Every process started and every mount made is also recorded in one undo list, so it is
//! undone on a normal return (drop guards), on a panic (the same guards, while unwinding) and on
//! SIGINT, SIGTERM or SIGHUP (a thread that waits for those signals runs the list, then exits).

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use akvfs::sim::lock;
use akvfs_emulator::{Emulator, EmulatorConfig};

use crate::child;

pub type Result<T> = std::result::Result<T, String>;

/// Something to undo if the bench stops early.
enum Undo {
    /// An akvfs daemon: SIGTERM, then SIGKILL.
    Process(i32),
    /// A mount point: lazy unmount.
    Unmount(PathBuf),
    /// A directory of ours: removed when nothing is mounted below it.
    RemoveDir(PathBuf),
}

static UNDO: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());
static NEXT_UNDO: AtomicU64 = AtomicU64::new(1);

fn undo_list() -> std::sync::MutexGuard<'static, Vec<(u64, Undo)>> {
    lock(&UNDO)
}

fn remember(u: Undo) -> u64 {
    let id = NEXT_UNDO.fetch_add(1, Ordering::Relaxed);
    undo_list().push((id, u));
    id
}

fn forget(id: u64) {
    undo_list().retain(|(i, _)| *i != id);
}

/// Records a mount point to detach if the bench stops early (for mounts made in this process).
pub fn remember_unmount(path: &Path) {
    remember(Undo::Unmount(path.to_path_buf()));
}

/// Forgets a mount point recorded with [`remember_unmount`].
pub fn forget_unmount(path: &Path) {
    undo_list().retain(|(_, u)| !matches!(u, Undo::Unmount(p) if p == path));
}

/// Undoes everything still recorded: processes first, then mounts, then directories.
pub fn undo_all() {
    let items: Vec<Undo> = undo_list().drain(..).map(|(_, u)| u).collect();
    for u in &items {
        if let Undo::Process(pid) = u {
            stop_pid(*pid, Duration::from_secs(10));
        }
    }
    for u in &items {
        if let Undo::Unmount(path) = u {
            if is_mounted(path) {
                detach(path);
            }
        }
    }
    for u in items.iter().rev() {
        if let Undo::RemoveDir(path) = u {
            remove_dir_if_unmounted(path);
        }
    }
}

/// Which scenarios a bench runs: `--only` and `--skip`.
#[derive(clap::Args, Debug)]
pub struct Selection {
    /// Run only these scenarios (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Skip these scenarios (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    skip: Vec<String>,
}

impl Selection {
    /// Whether scenario `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|o| o == name))
            && !self.skip.iter().any(|s| s == name)
    }
}

/// The start of a bench's `main`: [`catch_signals`], then every scenario the selection names
/// checked against the `known` ones. Exits with status 2 when either fails.
pub fn begin(bench: &str, selection: &Selection, known: &[&str]) {
    if let Err(e) = catch_signals() {
        eprintln!("{bench}: {e}");
        std::process::exit(2);
    }
    for n in selection.only.iter().chain(&selection.skip) {
        if !known.contains(&n.as_str()) {
            eprintln!(
                "{bench}: unknown scenario {n:?}; known: {}",
                known.join(", ")
            );
            std::process::exit(2);
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread started after it)
/// and starts a thread that waits for them, undoes everything and exits. Call it first in
/// `main`. Child processes would inherit the mask; [`Akvfs::mount`] clears it for akvfs.
pub fn catch_signals() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| format!("cannot block termination signals: {e}"))?;
    std::thread::Builder::new()
        .name("e2e-signals".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                eprintln!("e2e: {sig:?}: stopping akvfs and unmounting");
                undo_all();
                std::process::exit(128 + sig as i32);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// SIGTERM, wait up to `grace` for the process to exit (reaping it), then SIGKILL.
fn stop_pid(pid: i32, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(pid);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// Whether `path` is a mount point (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let target = path.to_string_lossy();
    text.lines().any(|l| l.split(' ').nth(4) == Some(&*target))
}

fn anything_mounted_below(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", path.to_string_lossy());
    text.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| m.starts_with(&prefix) || m == path.to_string_lossy())
    })
}

fn detach(path: &Path) {
    if nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_err() {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

fn remove_dir_if_unmounted(path: &Path) {
    if anything_mounted_below(path) {
        eprintln!(
            "e2e: leaving {} in place: something is still mounted below it",
            path.display()
        );
        return;
    }
    let _ = std::fs::remove_dir_all(path);
}

/// The bench's scratch directory; mount points are made below it.
pub struct Workdir {
    pub path: PathBuf,
    undo: u64,
}

impl Workdir {
    pub fn new() -> Result<Workdir> {
        let path = std::env::temp_dir().join(format!("akvfs-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let undo = remember(Undo::RemoveDir(path.clone()));
        Ok(Workdir { path, undo })
    }

    /// A fresh, empty directory `name` below the workdir.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        forget(self.undo);
        remove_dir_if_unmounted(&self.path);
    }
}

/// The emulator, started in this process, seeded with `secrets`, counters at zero.
pub struct Vault {
    pub emu: Emulator,
    undo: u64,
    last_write: Mutex<Instant>,
}

impl Vault {
    pub fn start(secrets: &[(String, String)]) -> Result<Vault> {
        let emu = Emulator::spawn(EmulatorConfig::default())
            .map_err(|e| format!("the emulator did not start: {e}"))?;
        let undo = remember(Undo::RemoveDir(emu.state_dir().to_path_buf()));
        for (name, value) in secrets {
            emu.set_secret(name, value)
                .map_err(|e| format!("the emulator refused secret {name}: {e}"))?;
        }
        emu.reset_counts();
        Ok(Vault {
            emu,
            undo,
            last_write: Mutex::new(Instant::now()),
        })
    }

    /// Sets a new version of `name`.
    pub fn put(&self, name: &str, value: &str) -> Result<()> {
        *lock(&self.last_write) = Instant::now();
        self.emu
            .set_secret(name, value)
            .map(|_| ())
            .map_err(|e| format!("the emulator refused secret {name}: {e}"))
    }

    /// Waits until the last write is more than 2 s old. `updated` has one-second resolution, so
    /// akvfs verifies a secret it fetched within a second of its last write with one extra GET
    /// on its next refresh; reading only after this keeps that GET out of the figures.
    pub fn settle(&self) {
        let last = *lock(&self.last_write);
        let until = last + Duration::from_millis(2100);
        let now = Instant::now();
        if until > now {
            std::thread::sleep(until - now);
        }
    }

    /// A request counter (`get_secret`, `list_secrets`, `faulted` ...).
    pub fn count(&self, name: &str) -> u64 {
        self.emu.counts().get(name)
    }

    /// Token requests of every kind.
    pub fn token_requests(&self) -> u64 {
        let c = self.emu.counts();
        [
            "token_client_assertion",
            "token_client_secret",
            "token_other",
            "token_managed_identity",
        ]
        .iter()
        .map(|n| c.get(n))
        .sum()
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        forget(self.undo);
    }
}

/// Memory figures of a process, from /proc/PID/status, in KiB.
#[derive(Clone, Debug, Default)]
pub struct ProcStatus {
    pub vm_rss: u64,
    pub vm_hwm: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub vm_lck: u64,
    pub threads: u64,
}

impl ProcStatus {
    pub fn of(pid: i32) -> Result<ProcStatus> {
        let path = format!("/proc/{pid}/status");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let field = |key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcStatus {
            vm_rss: field("VmRSS"),
            vm_hwm: field("VmHWM"),
            rss_anon: field("RssAnon"),
            rss_file: field("RssFile"),
            vm_lck: field("VmLck"),
            threads: field("Threads"),
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "vm_rss_kib": self.vm_rss, "vm_hwm_kib": self.vm_hwm, "rss_anon_kib": self.rss_anon,
            "rss_file_kib": self.rss_file, "vm_lck_kib": self.vm_lck, "threads": self.threads,
        })
    }
}

/// `akvfs mount --foreground` of an emulator's vault, with workload identity, as a child
/// process. Dropping it sends SIGTERM (akvfs unmounts itself), and falls back to SIGKILL and a
/// lazy unmount.
pub struct Akvfs {
    child: Option<Child>,
    pub path: PathBuf,
    log: child::Log,
    undo: Vec<u64>,
}

impl Akvfs {
    pub fn mount(bin: &Path, vault: &Vault, at: &Path, flags: &[&str]) -> Result<Akvfs> {
        let info = vault.emu.info();
        let mut cmd = child::akvfs(bin, info);
        cmd.env("AZURE_CLIENT_ID", &info.client_id)
            .env("AZURE_FEDERATED_TOKEN_FILE", &info.federated_token_file)
            .arg("mount")
            .arg(&info.vault_url)
            .arg(at)
            .arg("--foreground")
            .arg("--ca-file")
            .arg(&info.ca_file)
            .arg("--disable-challenge-resource-verification")
            .args(flags);
        let (child, log) = child::spawn(&mut cmd, bin)?;
        let undo = vec![
            remember(Undo::Process(child.id() as i32)),
            remember(Undo::Unmount(at.to_path_buf())),
        ];
        let mut m = Akvfs {
            child: Some(child),
            path: at.to_path_buf(),
            log,
            undo,
        };
        let start = Instant::now();
        loop {
            if m.log().contains(" serving ") && is_mounted(&m.path) {
                return Ok(m);
            }
            let exited = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "akvfs did not mount on {} (exit: {exited:?}); its log:\n{}",
                    at.display(),
                    m.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn status(&self) -> Result<ProcStatus> {
        ProcStatus::of(self.pid())
    }

    /// What akvfs wrote to stderr so far (the newest 2-4 MiB).
    pub fn log(&self) -> String {
        child::text(&self.log)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Akvfs {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_pid(child.id() as i32, Duration::from_secs(20));
        }
        if is_mounted(&self.path) {
            detach(&self.path);
        }
        for id in &self.undo {
            forget(*id);
        }
    }
}

/// A tmpfs holding the same files as a vault: the baseline (what a CSI-style secrets volume
/// gives). Mounted read-only with noatime, like akvfs; files are mode 0400.
pub struct Tmpfs {
    pub path: PathBuf,
    undo: u64,
}

impl Tmpfs {
    pub fn mount(at: &Path, files: &[(String, String)]) -> Result<Tmpfs> {
        use nix::mount::{mount, MsFlags};
        let base =
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            base,
            Some("size=64m,mode=0700"),
        )
        .map_err(|e| {
            format!(
                "cannot mount a tmpfs on {}: {e} (the bench runs as root)",
                at.display()
            )
        })?;
        let t = Tmpfs {
            path: at.to_path_buf(),
            undo: remember(Undo::Unmount(at.to_path_buf())),
        };
        for (name, value) in files {
            let p = at.join(name);
            std::fs::write(&p, value).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400))
                .map_err(|e| format!("cannot chmod {}: {e}", p.display()))?;
        }
        std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o500))
            .map_err(|e| format!("cannot chmod {}: {e}", at.display()))?;
        mount(
            None::<&str>,
            at,
            None::<&str>,
            base | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("cannot remount {} read-only: {e}", at.display()))?;
        Ok(t)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        detach(&self.path);
        forget(self.undo);
    }
}

/// A path as a C string for the libc loops.
pub fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} holds a NUL byte", p.display()))
}

/// Waits until `cond` holds, polling every `step`, for at most `limit`; returns the time it took
/// or None on timeout.
pub fn wait_for(
    limit: Duration,
    step: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(step);
    }
}

/// A value of exactly `len` printable bytes, distinct per `tag` and per call.
pub fn value(tag: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::with_capacity(len);
    s.push_str(tag);
    s.push(':');
    while s.len() < len {
        s.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    s.truncate(len);
    s
}

/// `count` secrets named `{prefix}{i:04}`, each with a `len`-byte value.
pub fn secrets(prefix: &str, count: usize, len: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let name = format!("{prefix}{i:04}");
            let v = value(&name, len);
            (name, v)
        })
        .collect()
}
