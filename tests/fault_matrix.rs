//! The permanent fault matrix: every fault, hostile answer, identity change and
//! process event akvfs must survive, each run against a real mount twice: on a
//! cold secret (nothing cached when the fault starts) and on a cached one (read,
//! and held open, before the fault starts).
//!
//! For every case and mode the harness asserts:
//! - what a reader sees (the bytes, or the errno), and for revocations that it
//!   happens within the documented bound, counted in refresh cycles (the
//!   emulator's list calls since the change), not in wall-clock time;
//! - that no read is torn or mixed: every successful read is exactly one whole
//!   value the vault held;
//! - that nothing that should be served is lost: an unrelated cached secret
//!   keeps its bytes, and once the fault is cleared the secret is served again;
//! - that a descriptor opened before a revocation stops reading the revoked bytes;
//! - that the daemon is still alive and mounted;
//! - that no secret value, nor any 16-byte fragment of one, reached the logs
//!   (captured at debug level).
//!
//! A case can be marked `pending` for one mode: its assertions describe the
//! correct behaviour, and a failure is reported instead of failing the run.
//! A pending case that passes is reported too, so it can be enabled.
//! `FAULT_MATRIX_ONLY=substring` runs only matching cases;
//! `FAULT_MATRIX_JOBS=n` sets how many run at once (default 3).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use akvfs_emulator::{
    clear_extra, inject_extra, vault_audiences, ExtraFault, ExtraTarget, NextLink, Operation,
    Permissions, Seed, SeedSecret,
};
use common::*;

/// Backstop for anything that must happen eventually; never an assertion on speed.
const WAIT: Duration = Duration::from_secs(45);
/// How long a cached secret is watched under a transient fault when the
/// emulator's counters cannot mark the cycles (a paused refresher).
const WATCH: Duration = Duration::from_secs(8);
const TARGET: &str = "target";
const CONTROL: &str = "control";
/// `--max-unverified`, when this build has it.
const MAX_UNVERIFIED_SECS: u64 = 3;
const ARM: &str = "https://management.azure.com";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Cold,
    Cached,
}

/// What a reader of the target sees after the case's action.
#[derive(Clone, Copy)]
enum Sees {
    /// The original bytes, and only them, while the fault lasts (several
    /// failed refresh cycles for a cached secret; the first read for a cold one).
    Value,
    /// Eventually the bytes the action wrote last, and nothing but whole values before.
    NewValue,
    /// Eventually this errno (a cold secret: at the first read), within the bound.
    Errno(i32),
    /// A check of its own.
    Custom(fn(&mut Ctx) -> Result<(), String>),
}

/// What a reader sees once every fault is cleared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    Value,
    NewValue,
}

/// The documented bound on a revocation, for the errno cases.
#[derive(Clone, Copy)]
enum Bound {
    /// Immediate, or not a revocation.
    None,
    /// Within this many refresh cycles (list calls) after the change.
    Cycles(u64),
    /// Within `--max-unverified` (in refresh cycles of this harness).
    MaxUnverified,
}

struct Case {
    name: &'static str,
    /// What a reader sees, in words, for Custom checks (cold, cached).
    says: Option<(&'static str, &'static str)>,
    /// The documented bound, for docs/SECURITY.md's table.
    bound_doc: &'static str,
    prep: fn(&mut Plan),
    act: fn(&Ctx),
    cold: Sees,
    cached: Sees,
    after: After,
    bound: Bound,
    /// The unrelated cached secret must keep being served.
    control_kept: bool,
    pending_cold: Option<&'static str>,
    pending_cached: Option<&'static str>,
}

fn case(name: &'static str, act: fn(&Ctx), cold: Sees, cached: Sees) -> Case {
    Case {
        name,
        says: None,
        bound_doc: "",
        prep: |_| {},
        act,
        cold,
        cached,
        after: After::Nothing,
        bound: Bound::None,
        control_kept: true,
        pending_cold: None,
        pending_cached: None,
    }
}

impl Case {
    fn says(mut self, cold: &'static str, cached: &'static str) -> Case {
        self.says = Some((cold, cached));
        self
    }
    fn prep(mut self, f: fn(&mut Plan)) -> Case {
        self.prep = f;
        self
    }
    fn after(mut self, a: After) -> Case {
        self.after = a;
        self
    }
    fn bound(mut self, b: Bound, doc: &'static str) -> Case {
        self.bound = b;
        self.bound_doc = doc;
        self
    }
    fn doc(mut self, doc: &'static str) -> Case {
        self.bound_doc = doc;
        self
    }
    fn control_lost(mut self) -> Case {
        self.control_kept = false;
        self
    }
    fn pending(mut self, mode: Option<Mode>, why: &'static str) -> Case {
        if mode != Some(Mode::Cached) {
            self.pending_cold = Some(why);
        }
        if mode != Some(Mode::Cold) {
            self.pending_cached = Some(why);
        }
        self
    }
}

/// How the emulator and the mount are set up for one run.
struct Plan {
    value: String,
    tags: BTreeMap<String, String>,
    content_type: Option<String>,
    flags: Vec<String>,
    fillers: usize,
    filler_len: usize,
    token_lifetime: Option<Duration>,
    mmap: bool,
    /// The harness does not start the mount; the check does.
    no_mount: bool,
}

/// One run: the emulator, the mount, and what the reader must see.
struct Ctx {
    mode: Mode,
    emu: Emulator,
    dir: PathBuf,
    mount: Option<Mount>,
    value: String,
    control: String,
    /// Every whole value the target held or was answered with, oldest first.
    known: Mutex<Vec<String>>,
    fillers: Vec<(String, String)>,
    held: Option<std::fs::File>,
    map: Option<(*mut libc::c_void, usize)>,
    args: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Ctx {
    fn m(&self) -> &Mount {
        self.mount.as_ref().expect("the mount is running")
    }

    fn client(&self) -> String {
        self.emu.info().client_id.clone()
    }

    fn vault(&self) -> &str {
        &self.emu.info().vault_url
    }

    /// Writes a new version of the target and remembers its bytes.
    fn rotate(&self, value: String) {
        self.known.lock().unwrap().push(value.clone());
        self.emu.set_secret(TARGET, &value);
    }

    fn latest(&self) -> String {
        self.known
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    fn fault(&self, f: Fault) {
        self.emu.inject_fault(f);
    }

    /// The same fault for GETs and list calls only (not token requests).
    fn vault_fault(&self, f: Fault) {
        self.fault(f.clone().for_operation(Operation::GetSecret));
        self.fault(f.for_operation(Operation::ListSecrets));
    }

    fn extra(&self, f: ExtraFault) {
        inject_extra(self.vault(), f);
    }

    fn cycles(&self) -> u64 {
        self.emu.counts().get("list_secrets")
    }

    fn faulted(&self) -> u64 {
        self.emu.counts().get("faulted")
    }
}

/// A read's outcome: bytes, an errno, or no answer within the backstop.
#[derive(Debug, PartialEq)]
enum Got {
    Bytes(Vec<u8>),
    Errno(i32),
    Hung,
}

fn read_guarded(path: &Path) -> Got {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let r = std::fs::read(&p);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(WAIT) {
        Ok(Ok(b)) => Got::Bytes(b),
        Ok(Err(e)) => Got::Errno(e.raw_os_error().unwrap_or(-1)),
        Err(_) => Got::Hung,
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EACCES => "EACCES",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENOTCONN => "ENOTCONN",
        libc::EPERM => "EPERM",
        _ => "errno",
    }
}

fn show(g: &Got) -> String {
    match g {
        Got::Bytes(b) => format!("{} bytes", b.len()),
        Got::Errno(e) => format!("{} ({e})", errno_name(*e)),
        Got::Hung => "no answer (hung)".into(),
    }
}

/// Reads the target; fails on a torn or mixed read (bytes that are not
/// exactly one whole value) and on a hang.
fn read_target(ctx: &Ctx) -> Result<Got, String> {
    read_checked(ctx, TARGET)
}

fn read_checked(ctx: &Ctx, name: &str) -> Result<Got, String> {
    let g = read_guarded(&ctx.m().file(name));
    match &g {
        Got::Hung => Err(format!("a read of {name} did not return")),
        Got::Bytes(b) if name == TARGET => {
            let known = ctx.known.lock().unwrap();
            if known.iter().any(|v| v.as_bytes() == b.as_slice()) {
                Ok(g)
            } else {
                Err(format!(
                    "torn, mixed or foreign read of {name}: {} bytes matching no whole value",
                    b.len()
                ))
            }
        }
        _ => Ok(g),
    }
}

fn is_value(g: &Got, v: &str) -> bool {
    matches!(g, Got::Bytes(b) if b == v.as_bytes())
}

/// The akvfs flags of every run: short intervals, so the matrix stays quick.
fn base_args(emu: &Emulator) -> Vec<String> {
    let mut a = conn_args(emu);
    for s in ["--refresh-interval", "1s", "--fetch-timeout", "3s"] {
        a.push(s.into());
    }
    if supports("--max-unverified") {
        a.push("--max-unverified".into());
        a.push(format!("{MAX_UNVERIFIED_SECS}s"));
    }
    a
}

/// Whether this build of `akvfs mount` has `flag`.
fn supports(flag: &str) -> bool {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        Command::new(akvfs_bin())
            .args(["mount", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    })
    .contains(flag)
}

fn seed_secret(name: &str, value: &str) -> SeedSecret {
    SeedSecret {
        name: name.into(),
        value: Some(value.into()),
        // Older than any "written within a second" special case.
        created: Some(unix_now() - 3600),
        ..Default::default()
    }
}

fn setup(c: &Case, mode: Mode) -> Result<Ctx, String> {
    let mut plan = Plan {
        value: marker("TARGET"),
        tags: BTreeMap::new(),
        content_type: None,
        flags: Vec::new(),
        fillers: 0,
        filler_len: 0,
        token_lifetime: None,
        mmap: false,
        no_mount: false,
    };
    (c.prep)(&mut plan);
    let emu = Emulator::spawn(EmulatorConfig::default()).map_err(|e| e.to_string())?;
    if let Some(l) = plan.token_lifetime {
        emu.inner().set_token_lifetime(l);
    }
    let control = marker("CONTROL");
    let mut target = seed_secret(TARGET, &plan.value);
    target.content_type = plan.content_type.clone();
    if !plan.tags.is_empty() {
        target.tags = Some(plan.tags.clone());
    }
    let fillers: Vec<(String, String)> = (0..plan.fillers)
        .map(|i| {
            let mut v = marker("FILLER");
            v.push_str(&"f".repeat(plan.filler_len));
            (format!("filler{i}"), v)
        })
        .collect();
    let mut secrets = vec![target, seed_secret(CONTROL, &control)];
    secrets.extend(fillers.iter().map(|(k, v)| seed_secret(k, v)));
    emu.inner()
        .seed(&Seed {
            secrets,
            identities: Vec::new(),
            ..Default::default()
        })
        .map_err(|e| format!("seed: {e}"))?;
    emu.reset_counts();
    // A port can be reused by a later emulator: start from no extra faults.
    clear_extra(&emu.info().vault_url);
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Other users may traverse to the mountpoint (the lookup flood runs as nobody).
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let mut args = base_args(&emu);
    if let Some(i) = args.iter().position(|a| a == "--max-unverified") {
        if plan.flags.iter().any(|f| f == "--max-unverified") {
            args.drain(i..i + 2);
        }
    }
    args.extend(plan.flags.iter().cloned());
    let mut ctx = Ctx {
        mode,
        value: plan.value.clone(),
        control,
        known: Mutex::new(vec![plan.value.clone()]),
        fillers,
        held: None,
        map: None,
        mount: None,
        dir,
        args,
        emu,
        _tmp: tmp,
    };
    if plan.no_mount {
        return Ok(ctx);
    }
    let mut env = wi_env(&ctx.emu);
    env.push(("AKVFS_LOG".into(), "debug".into()));
    let m = Mount::try_start_at(&ctx.emu, &env, &ctx.args, &ctx.dir)?;
    ctx.mount = Some(m);
    if mode == Mode::Cached {
        let g = read_target(&ctx)?;
        if !is_value(&g, &ctx.value) {
            return Err(format!(
                "the target did not read before the fault: {}",
                show(&g)
            ));
        }
        let f = std::fs::File::open(ctx.m().file(TARGET)).map_err(|e| e.to_string())?;
        if plan.mmap {
            let len = ctx.value.len();
            // SAFETY: a read-only shared mapping of an open file, unmapped in `teardown`;
            // it is only inspected with mincore, never dereferenced after a revocation.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err("mmap of the target failed".into());
            }
            // SAFETY: `p` maps `len` readable bytes of the file, which is served now.
            let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
            if bytes != ctx.value.as_bytes() {
                return Err("the mapping does not hold the value".into());
            }
            ctx.map = Some((p, len));
        }
        ctx.held = Some(f);
    }
    if ctx.mode == Mode::Cached || c.control_kept {
        let g = read_checked(&ctx, CONTROL)?;
        if !is_value(&g, &ctx.control) {
            return Err(format!("the control secret did not read: {}", show(&g)));
        }
    }
    Ok(ctx)
}

/// Whether any page of the mapping is still resident.
fn mapping_resident(p: *mut libc::c_void, len: usize) -> bool {
    let pages = len.div_ceil(4096);
    let mut vec = vec![0u8; pages];
    // SAFETY: `p` is a live mapping of `len` bytes; `vec` has one byte per page.
    let r = unsafe { libc::mincore(p, len, vec.as_mut_ptr()) };
    r == 0 && vec.iter().any(|b| b & 1 == 1)
}

fn observe(c: &Case, ctx: &mut Ctx) -> Result<String, String> {
    let sees = match ctx.mode {
        Mode::Cold => c.cold,
        Mode::Cached => c.cached,
    };
    let base_cycles = ctx.cycles();
    let base_faulted = ctx.faulted();
    (c.act)(ctx);
    let seen = match sees {
        Sees::Custom(f) => {
            f(ctx)?;
            "as specified".to_string()
        }
        Sees::Value => {
            if ctx.mode == Mode::Cold {
                let g = read_target(ctx)?;
                if !is_value(&g, &ctx.value) {
                    return Err(format!("the first read got {}, not the value", show(&g)));
                }
            } else {
                // Watch several failed cycles, or a while if the refresher is paused.
                let start = Instant::now();
                loop {
                    let g = read_target(ctx)?;
                    if !is_value(&g, &ctx.value) {
                        return Err(format!("a cached read got {}, not the value", show(&g)));
                    }
                    if ctx.held.is_some() {
                        check_held_value(ctx)?;
                    }
                    if c.control_kept {
                        let g = read_checked(ctx, CONTROL)?;
                        if !is_value(&g, &ctx.control) {
                            return Err(format!("the control secret got {}", show(&g)));
                        }
                    }
                    let progressed =
                        ctx.faulted() >= base_faulted + 3 || ctx.cycles() >= base_cycles + 3;
                    if progressed || start.elapsed() > WATCH {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            "the value".to_string()
        }
        Sees::NewValue => {
            let want = ctx.latest();
            let mut last = Got::Hung;
            let ok = wait_until(WAIT, || match read_target(ctx) {
                Ok(g) => {
                    let done = is_value(&g, &want);
                    last = g;
                    done
                }
                Err(e) => {
                    last = Got::Hung;
                    eprintln!("{}: {e}", c.name);
                    false
                }
            });
            if !ok {
                return Err(format!(
                    "the new value never showed (last: {})",
                    show(&last)
                ));
            }
            if let Some(f) = &ctx.held {
                // An old descriptor shows one whole value or an error, never the new bytes cut short.
                let mut buf = vec![0u8; ctx.value.len() + 1];
                if let Ok(n) = f.read_at(&mut buf, 0) {
                    if buf[..n] != *ctx.value.as_bytes() {
                        return Err("a descriptor opened before the change read other bytes".into());
                    }
                }
            }
            "the new value".to_string()
        }
        Sees::Errno(want) => {
            let mut last = Got::Hung;
            let mut cycles_at = 0;
            let deadline = Instant::now() + WAIT;
            loop {
                let g = read_target(ctx)?;
                if g == Got::Errno(want) {
                    cycles_at = ctx.cycles() - base_cycles;
                    break;
                }
                if ctx.mode == Mode::Cold {
                    return Err(format!(
                        "the first read got {}, not {}",
                        show(&g),
                        errno_name(want)
                    ));
                }
                last = g;
                // Past the bound (plus slack) there is no need to wait longer.
                let over = match c.bound {
                    Bound::Cycles(n) => Some(n + 3),
                    Bound::MaxUnverified => Some(MAX_UNVERIFIED_SECS + 3),
                    Bound::None => None,
                };
                if over.is_some_and(|n| ctx.cycles() - base_cycles > n) {
                    return Err(format!(
                        "still {} after {} refresh cycles, never {}",
                        show(&last),
                        ctx.cycles() - base_cycles,
                        errno_name(want)
                    ));
                }
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "still {} after {}s, never {}",
                    show(&last),
                    WAIT.as_secs(),
                    errno_name(want)
                ));
            }
            let limit = match c.bound {
                Bound::None => None,
                Bound::Cycles(n) => Some(n),
                Bound::MaxUnverified => Some(MAX_UNVERIFIED_SECS),
            };
            // One cycle may have been under way at the change, one may end as it is seen.
            if let Some(n) = limit.filter(|_| ctx.mode == Mode::Cached) {
                if cycles_at > n + 2 {
                    return Err(format!(
                        "{} only after {cycles_at} refresh cycles (bound {n})",
                        errno_name(want)
                    ));
                }
            }
            if let Some(f) = &ctx.held {
                let mut buf = vec![0u8; ctx.value.len().max(1)];
                if let Ok(n) = f.read_at(&mut buf, 0) {
                    if n > 0 {
                        return Err(format!(
                            "a descriptor opened before the revocation still reads {n} bytes"
                        ));
                    }
                }
            }
            if let Some((p, len)) = ctx.map {
                if mapping_resident(p, len) {
                    return Err("the revoked bytes are still resident in a mapping".into());
                }
            }
            if ctx.mode == Mode::Cached {
                format!("{} after {cycles_at} cycles", errno_name(want))
            } else {
                errno_name(want).to_string()
            }
        }
    };
    Ok(seen)
}

fn check_held_value(ctx: &Ctx) -> Result<(), String> {
    let Some(f) = &ctx.held else { return Ok(()) };
    let mut buf = vec![0u8; ctx.value.len() + 1];
    match f.read_at(&mut buf, 0) {
        Ok(n) if buf[..n] == *ctx.value.as_bytes() => Ok(()),
        Ok(n) => Err(format!("a held descriptor read {n} other bytes")),
        Err(e) => Err(format!("a held descriptor failed: {e}")),
    }
}

fn clear(ctx: &Ctx) {
    ctx.emu.clear_faults();
    clear_extra(ctx.vault());
}

/// Clears the faults and checks what is served afterwards, that the daemon
/// is alive and mounted, and that the logs hold no value.
fn finish(c: &Case, ctx: &mut Ctx) -> Result<(), String> {
    clear(ctx);
    if ctx.mount.is_none() {
        return check_logs(ctx, "");
    }
    let want = match c.after {
        After::Nothing => None,
        After::Value => Some(ctx.value.clone()),
        After::NewValue => Some(ctx.latest()),
    };
    if let Some(want) = want {
        let mut last = Got::Hung;
        let ok = wait_until(WAIT, || {
            let g = read_guarded(&ctx.m().file(TARGET));
            let done = is_value(&g, &want);
            last = g;
            done
        });
        if !ok {
            return Err(format!(
                "not served again once the fault was cleared (last: {})",
                show(&last)
            ));
        }
    }
    if c.control_kept {
        let g = read_checked(ctx, CONTROL)?;
        if !is_value(&g, &ctx.control) {
            return Err(format!("the control secret was lost: {}", show(&g)));
        }
    }
    let path = ctx.m().path.clone();
    let m = ctx.mount.as_mut().expect("mounted");
    if !m.alive() {
        return Err(format!("the daemon died:\n{}", tail(&m.log())));
    }
    if !is_mounted(&path) || std::fs::metadata(&path).is_err() {
        return Err("the mount is gone".into());
    }
    let log = m.log();
    check_logs(ctx, &log)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

fn check_logs(ctx: &Ctx, log: &str) -> Result<(), String> {
    let mut values: Vec<String> = ctx.known.lock().unwrap().clone();
    values.push(ctx.control.clone());
    values.extend(ctx.fillers.iter().map(|(_, v)| v.clone()));
    for v in values {
        if v.len() < 22 {
            continue;
        }
        // Markers start with a tag; the random part is what must never appear.
        let start = v.find('-').map(|i| i + 1).unwrap_or(0);
        let fragment = &v[start..(start + 16).min(v.len())];
        if log.contains(fragment) {
            return Err("a secret value reached the logs".into());
        }
    }
    Ok(())
}

fn teardown(ctx: &mut Ctx) {
    clear(ctx);
    if let Some((p, len)) = ctx.map.take() {
        // SAFETY: unmapping the mapping made in `setup`.
        unsafe { libc::munmap(p, len) };
    }
    ctx.held = None;
    if let Some(m) = ctx.mount.as_mut() {
        // A daemon that is stuck must not keep the run waiting.
        if let Some(c) = m.child.as_mut() {
            let pid = c.id() as i32;
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let gone = wait_until(Duration::from_secs(10), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            if !gone {
                let _ = c.kill();
                let _ = c.wait();
            }
            m.child = None;
        }
    }
    ctx.mount = None;
    if is_mounted(&ctx.dir) {
        let _ = Command::new("umount").arg("-l").arg(&ctx.dir).status();
    }
}

/// Runs one case in one mode.
fn run_one(c: &Case, mode: Mode) -> Result<String, String> {
    let mut ctx = setup(c, mode)?;
    let r = observe(c, &mut ctx).and_then(|seen| finish(c, &mut ctx).map(|_| seen));
    if r.is_err() && std::env::var_os("FAULT_MATRIX_LOGS").is_some() {
        if let Some(m) = &ctx.mount {
            eprintln!("--- {} ({mode:?}) akvfs log:\n{}", c.name, m.log());
        }
    }
    teardown(&mut ctx);
    r
}

// ---------------------------------------------------------------------------
// Actions and checks used by the table.

fn nothing(_: &Ctx) {}

/// The token endpoint refuses the identity; the token issued before (2 s
/// lifetime) is let expire, so the next call needs a new one.
fn token_refused(c: &Ctx, status: u16, error: &str, code: u32) {
    c.extra(ExtraFault::TokenError(status, error.into(), code));
    std::thread::sleep(Duration::from_secs(3));
}

fn rotate(ctx: &Ctx) {
    ctx.rotate(marker("ROTATED"));
}

/// A rotation the refresher must fetch, and then `f`.
fn rotate_then(ctx: &Ctx, f: impl FnOnce(&Ctx)) {
    f(ctx);
    rotate(ctx);
}

fn throttle_all(ctx: &Ctx, retry_after: Option<u64>) {
    ctx.vault_fault(Fault::throttled(retry_after));
}

fn throttle_text(ctx: &Ctx, text: &str) {
    ctx.extra(ExtraFault::RetryAfterText(
        ExtraTarget::GetAndList,
        text.into(),
    ));
}

/// Reads enough other secrets to push the target out of a 64 KiB cache.
fn evict(ctx: &Ctx) {
    if ctx.mode == Mode::Cached {
        for (k, _) in &ctx.fillers {
            let _ = std::fs::read(ctx.m().file(k));
        }
    }
}

fn eviction_plan(p: &mut Plan) {
    p.value = format!("{}{}", marker("TARGET"), "t".repeat(20_000));
    p.fillers = 5;
    p.filler_len = 20_000;
    p.flags = vec!["--cache-bytes".into(), "64KiB".into()];
}

/// SIGTERM with a descriptor open: the daemon exits 0 and the mount is gone.
fn sigterm_with_fds(ctx: &mut Ctx) -> Result<(), String> {
    let _open = std::fs::File::open(ctx.m().file(CONTROL)).map_err(|e| e.to_string())?;
    let m = ctx.mount.as_mut().expect("mounted");
    let st = m.stop_with(libc::SIGTERM);
    if !st.is_some_and(|s| s.success()) {
        return Err(format!("akvfs exited with {st:?}"));
    }
    if is_mounted(&ctx.dir) {
        return Err("still mounted after SIGTERM".into());
    }
    let log = m.log();
    check_logs(ctx, &log)?;
    ctx.mount = None;
    Ok(())
}

/// Another user who may search the directory but read nothing looks up
/// 300 random names: the vault sees a bounded number of GETs.
fn lookup_flood(ctx: &mut Ctx) -> Result<(), String> {
    let before = ctx.emu.counts().get("get_secret");
    let started = Instant::now();
    let script =
        r#"i=0; while [ $i -lt 300 ]; do stat -- "$1/flood$i" >/dev/null 2>&1; i=$((i+1)); done"#;
    let st = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
            "flood",
        ])
        .arg(&ctx.dir)
        .status()
        .map_err(|e| format!("setpriv: {e}"))?;
    if !st.success() {
        return Err("the flood did not run".into());
    }
    let gets = ctx.emu.counts().get("get_secret") - before;
    if ctx.mode == Mode::Cached {
        let g = read_target(ctx)?;
        if !is_value(&g, &ctx.value) {
            return Err(format!(
                "the cached target got {} after the flood",
                show(&g)
            ));
        }
    }
    // The budget applies per 10 s window: the flood may span several.
    let windows = started.elapsed().as_secs() / 10 + 2;
    if gets > FLOOD_BUDGET * windows {
        return Err(format!(
            "300 lookups by another user caused {gets} vault GETs"
        ));
    }
    Ok(())
}

fn flood_plan(p: &mut Plan) {
    if supports("--max-cold-lookups-per-10s") {
        p.flags = vec![
            "--max-cold-lookups-per-10s".into(),
            FLOOD_BUDGET.to_string(),
        ];
    }
    p.flags.extend([
        "--allow-other".into(),
        "--dir-mode".into(),
        "0711".into(),
        "--file-mode".into(),
        "0400".into(),
    ]);
}

/// The lookup budget of the flood case (GETs per 10 s).
const FLOOD_BUDGET: u64 = 20;

/// Every extended attribute lists and reads (or is ENODATA) and the value is served.
fn xattrs_ok(ctx: &mut Ctx) -> Result<(), String> {
    let g = read_target(ctx)?;
    if !is_value(&g, &ctx.value) {
        return Err(format!("the target got {}", show(&g)));
    }
    let path = ctx.m().file(TARGET);
    let names = xattr::list(&path).map_err(|e| format!("listxattr: {e}"))?;
    let mut n = 0;
    for name in names {
        let s = name.to_string_lossy().into_owned();
        if s.contains('\n') || s.contains('\0') {
            return Err(format!(
                "an attribute name holds a control character: {s:?}"
            ));
        }
        match xattr::get(&path, &name) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(format!("getxattr {s}: {e}")),
        }
        n += 1;
    }
    if n == 0 {
        return Err("no extended attributes".into());
    }
    // Names and attributes never start a forged log line.
    let log = ctx.m().log();
    if log
        .lines()
        .any(|l| l.starts_with("X-Injected") || l.starts_with("break"))
    {
        return Err("a content type or tag key forged a log line".into());
    }
    Ok(())
}

/// A vault answering every 401 with a challenge for Azure Resource Manager:
/// no ARM token may reach the vault host. Cold: the challenge is there when
/// the mount starts. Cached: it comes with a 401 while serving.
fn foreign_challenge(ctx: &mut Ctx, verify: bool) -> Result<(), String> {
    let url = ctx.vault().to_string();
    ctx.extra(ExtraFault::ChallengeResource(ARM.into()));
    let mut args = ctx.args.clone();
    if verify {
        args.retain(|a| a != "--disable-challenge-resource-verification");
    }
    let env = {
        let mut e = wi_env(&ctx.emu);
        e.push(("AKVFS_LOG".into(), "debug".into()));
        e
    };
    match ctx.mode {
        Mode::Cold => match Mount::try_start_at(&ctx.emu, &env, &args, &ctx.dir) {
            Ok(m) => {
                ctx.mount = Some(m);
                let g = read_target(ctx)?;
                if matches!(g, Got::Bytes(_)) {
                    return Err("served a secret through a foreign-resource challenge".into());
                }
            }
            Err(out) => {
                let line = out
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                if !line.contains("management.azure.com") && !line.contains("resource") {
                    return Err(format!("the error does not name the resource: {line}"));
                }
                check_logs(ctx, &out)?;
            }
        },
        Mode::Cached => {
            clear_extra(&url);
            let m = Mount::try_start_at(&ctx.emu, &env, &args, &ctx.dir);
            let m = match (m, verify) {
                (Ok(m), _) => m,
                // With verification on, the emulator's own challenge already fails.
                (Err(_), true) => return Ok(()),
                (Err(e), false) => return Err(e),
            };
            ctx.mount = Some(m);
            let g = read_target(ctx)?;
            if !is_value(&g, &ctx.value) {
                return Err(format!("the target did not read: {}", show(&g)));
            }
            ctx.extra(ExtraFault::ChallengeResource(ARM.into()));
            ctx.fault(
                Fault::status(401)
                    .for_operation(Operation::ListSecrets)
                    .times(1),
            );
            ctx.fault(
                Fault::status(401)
                    .for_operation(Operation::GetSecret)
                    .times(1),
            );
            rotate(ctx);
            let start = ctx.faulted();
            wait_until(WAIT, || ctx.faulted() > start);
            // A few cycles after it.
            let c = ctx.cycles();
            wait_until(Duration::from_secs(10), || ctx.cycles() >= c + 2);
        }
    }
    let auds = vault_audiences(&url);
    if auds.iter().any(|a| a.contains("management.azure.com")) {
        return Err(format!(
            "a token for {ARM} was sent to the vault host: {auds:?}"
        ));
    }
    Ok(())
}

fn foreign_challenge_unverified(ctx: &mut Ctx) -> Result<(), String> {
    foreign_challenge(ctx, false)
}

fn foreign_challenge_verified(ctx: &mut Ctx) -> Result<(), String> {
    foreign_challenge(ctx, true)
}

/// The vault's certificate is not trusted: the mount refuses to start with a
/// clear error, and no request (no credential) ever reached the server.
fn untrusted_certificate(ctx: &mut Ctx) -> Result<(), String> {
    let other = Emulator::spawn(EmulatorConfig::default()).map_err(|e| e.to_string())?;
    let mut args = ctx.args.clone();
    if let Some(i) = args.iter().position(|a| a == "--ca-file") {
        args[i + 1] = other.info().ca_file.clone();
    }
    ctx.emu.reset_counts();
    let env = wi_env(&ctx.emu);
    match Mount::try_start_at(&ctx.emu, &env, &args, &ctx.dir) {
        Ok(m) => {
            ctx.mount = Some(m);
            Err("mounted although the vault's certificate is untrusted".into())
        }
        Err(out) => {
            let line = out
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let l = line.to_ascii_lowercase();
            if !(l.contains("certificate") || l.contains("tls") || l.contains("ca-file")) {
                return Err(format!("the error does not name the certificate: {line}"));
            }
            let served = ctx.emu.counts().get("total");
            if served != 0 {
                return Err(format!("{served} requests reached an untrusted server"));
            }
            Ok(())
        }
    }
}

/// A TCP forwarder whose target can be switched; switching cuts every open
/// connection, as a re-routed network path would.
struct Proxy {
    port: u16,
    target: Arc<AtomicU16>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let to = Arc::new(AtomicU16::new(target));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (t, c) = (to.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { break };
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", t.load(Ordering::SeqCst)))
                else {
                    continue;
                };
                let pairs = [
                    (inbound.try_clone(), outbound.try_clone()),
                    (outbound.try_clone(), inbound.try_clone()),
                ];
                {
                    let mut list = c.lock().unwrap();
                    list.extend(inbound.try_clone());
                    list.extend(outbound.try_clone());
                }
                for (a, b) in pairs {
                    if let (Ok(mut a), Ok(mut b)) = (a, b) {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut a, &mut b);
                            let _ = b.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        Proxy {
            port,
            target: to,
            conns,
        }
    }

    fn switch(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(0)
}

/// The vault's address starts answering with another certificate (an
/// impostor on the network path, holding other bytes for the same name).
/// Cold: reads fail (EIO) and never serve the impostor's bytes. Cached: the
/// cached value keeps being served. Back on the real server, all is served.
fn certificate_changes(ctx: &mut Ctx) -> Result<(), String> {
    let impostor = Emulator::spawn(EmulatorConfig::default()).map_err(|e| e.to_string())?;
    let fake = marker("IMPOSTOR");
    impostor.set_secret(TARGET, &fake);
    impostor.set_secret(CONTROL, &fake);
    let real = port_of(ctx.vault());
    let proxy = Proxy::start(real);
    let url = format!("https://127.0.0.1:{}", proxy.port);
    let mut env = wi_env(&ctx.emu);
    env.push(("AKVFS_LOG".into(), "debug".into()));
    let mut cmd_args = ctx.args.clone();
    cmd_args.insert(0, url.clone());
    let m = start_with_url(&ctx.emu, &env, &url, &ctx.args, &ctx.dir)?;
    ctx.mount = Some(m);
    if ctx.mode == Mode::Cached {
        let g = read_target(ctx)?;
        if !is_value(&g, &ctx.value) {
            return Err(format!("the target did not read: {}", show(&g)));
        }
    }
    proxy.switch(port_of(&impostor.info().vault_url));
    let impostor_seen = || -> bool {
        matches!(read_guarded(&ctx.m().file(TARGET)), Got::Bytes(b) if b == fake.as_bytes())
            || matches!(read_guarded(&ctx.m().file(CONTROL)), Got::Bytes(b) if b == fake.as_bytes())
    };
    match ctx.mode {
        Mode::Cold => {
            let g = read_target(ctx)?;
            if g != Got::Errno(libc::EIO) {
                return Err(format!("a read through the impostor got {}", show(&g)));
            }
        }
        Mode::Cached => {
            let c = ctx.emu.counts().get("total");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(4) {
                let g = read_target(ctx)?;
                if !is_value(&g, &ctx.value) {
                    return Err(format!("a cached read got {}", show(&g)));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c;
        }
    }
    if impostor_seen() {
        return Err("the impostor's bytes were served".into());
    }
    if impostor.counts().get("total") > 0 {
        return Err("a request (with its token) reached the impostor".into());
    }
    proxy.switch(real);
    let ok = wait_until(WAIT, || {
        is_value(&read_guarded(&ctx.m().file(TARGET)), &ctx.value)
    });
    if !ok {
        return Err("not served again on the real server".into());
    }
    Ok(())
}

fn start_with_url(
    emu: &Emulator,
    env: &[(String, String)],
    url: &str,
    args: &[String],
    dir: &Path,
) -> Result<Mount, String> {
    // The mount helper takes the vault first; only the URL differs from the emulator's.
    let _ = emu;
    let mut cmd = akvfs(env);
    cmd.arg("mount")
        .arg(url)
        .arg(dir)
        .arg("--foreground")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    Mount::adopt(child, dir)
}

// ---------------------------------------------------------------------------
// `akvfs run` with a config file, reloaded by SIGHUP.

struct Service {
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Service {
    fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = wait_until(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(ctx: &Ctx, vault: &str, extra: &str) -> String {
    format!(
        "[[mount]]\nvault = \"{vault}\"\npath = \"{}\"\nca_file = \"{}\"\n\
         disable_challenge_resource_verification = true\nrefresh_interval = \"1s\"\n{extra}\n",
        ctx.dir.display(),
        ctx.emu.info().ca_file
    )
}

fn start_service(ctx: &Ctx, config: &Path) -> Result<Service, String> {
    let mut env = wi_env(&ctx.emu);
    env.push(("AKVFS_LOG".into(), "debug".into()));
    let mut cmd = akvfs(&env);
    cmd.arg("run").arg("--config").arg(config);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let sink = log.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stderr, &mut SinkWriter(sink));
    });
    let svc = Service { child, log };
    if !wait_until(WAIT, || {
        is_mounted(&ctx.dir) && std::fs::read(ctx.dir.join(CONTROL)).is_ok()
    }) {
        return Err(format!(
            "the config mount did not serve:\n{}",
            tail(&svc.log())
        ));
    }
    Ok(svc)
}

struct SinkWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SinkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// SIGHUP after the config file changed to `new`; `want_mode` is the file
/// mode expected afterwards. The old mount keeps serving (or the new one
/// serves); the service stays up.
fn reload(ctx: &mut Ctx, new: fn(&Ctx) -> String, want_mode: u32) -> Result<(), String> {
    let config = ctx.dir.parent().ok_or("no parent")?.join("akvfs.toml");
    let vault = ctx.vault().to_string();
    std::fs::write(&config, config_text(ctx, &vault, "")).map_err(|e| e.to_string())?;
    let mut svc = start_service(ctx, &config)?;
    let path = ctx.dir.join(TARGET);
    let held = if ctx.mode == Mode::Cached {
        let g = read_guarded(&path);
        if !is_value(&g, &ctx.value) {
            return Err(format!("the target did not read: {}", show(&g)));
        }
        Some(std::fs::File::open(&path).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let text = new(ctx);
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let before = svc.log().matches("reload").count();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(svc.child.id() as i32, libc::SIGHUP) };
    wait_until(Duration::from_secs(10), || {
        svc.log().matches("reload").count() > before
    });
    // The mountpoint serves the secret, with the new mode, at every moment we look.
    let deadline = Instant::now() + WAIT;
    loop {
        if !matches!(svc.child.try_wait(), Ok(None)) {
            return Err(format!("the service died:\n{}", tail(&svc.log())));
        }
        let g = read_guarded(&path);
        if !is_value(&g, &ctx.value) {
            return Err(format!("after the reload the secret read {}", show(&g)));
        }
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o7777);
        if mode.as_ref().is_ok_and(|m| *m == want_mode) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the file mode is {mode:?}, not {want_mode:o}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    let log = svc.log();
    check_logs(ctx, &log)?;
    Ok(())
}

fn reload_invalid(ctx: &mut Ctx) -> Result<(), String> {
    reload(ctx, |_| "[[mount]\nthis is not toml".into(), 0o400)
}

fn reload_unreachable(ctx: &mut Ctx) -> Result<(), String> {
    reload(
        ctx,
        |c| config_text(c, "https://127.0.0.1:9", "fetch_timeout = \"2s\""),
        0o400,
    )
}

fn reload_mode(ctx: &mut Ctx) -> Result<(), String> {
    let vault = ctx.vault().to_string();
    let _ = vault;
    reload(
        ctx,
        |c| config_text(c, &c.emu.info().vault_url, "file_mode = \"0440\""),
        0o440,
    )
}

/// Readability checks far apart, so GETs counted are the refresher's change checks.
fn no_rechecks(p: &mut Plan) {
    p.flags = vec!["--max-unverified".into(), "1h".into()];
}

fn no_mount(p: &mut Plan) {
    p.no_mount = true;
}

// ---------------------------------------------------------------------------
// The table. docs/SECURITY.md ("Fault matrix") lists the same rows.

fn cases() -> Vec<Case> {
    use libc::{EACCES, EIO, ENOENT};
    use Sees::*;
    vec![
        // Revocation, on secrets written an hour before.
        case(
            "get removed, list kept",
            |c| {
                c.emu.inner().revoke(&c.client(), &["get"]).expect("identity");
            },
            Errno(EACCES),
            Errno(EACCES),
        )
        .bound(Bound::MaxUnverified, "--max-unverified")
        .control_lost(),
        case(
            "per-secret deny",
            |c| c.emu.deny_secret(&c.client(), TARGET),
            Errno(EACCES),
            Errno(EACCES),
        )
        .bound(Bound::MaxUnverified, "--max-unverified"),
        case(
            "all access removed",
            |c| {
                c.emu
                    .inner()
                    .set_permissions(&c.client(), Permissions::none())
                    .expect("identity");
            },
            Errno(EACCES),
            Errno(EACCES),
        )
        .bound(Bound::Cycles(1), "1 refresh interval")
        .control_lost(),
        case(
            "identity deleted",
            |c| c.emu.inner().remove_identity(&c.client()).expect("identity"),
            Errno(EACCES),
            Errno(EACCES),
        )
        .bound(Bound::Cycles(1), "1 refresh interval")
        .control_lost(),
        case(
            "token endpoint 400 unauthorized_client after the token expires",
            |c| token_refused(c, 400, "unauthorized_client", 700016),
            Errno(EACCES),
            Errno(EACCES),
        )
        .prep(|p| p.token_lifetime = Some(Duration::from_secs(2)))
        .bound(Bound::Cycles(2), "token lifetime + 1 refresh interval")
        .control_lost(),
        case(
            "token endpoint 401 invalid_client after the token expires",
            |c| token_refused(c, 401, "invalid_client", 7000215),
            Errno(EACCES),
            Errno(EACCES),
        )
        .prep(|p| p.token_lifetime = Some(Duration::from_secs(2)))
        .bound(Bound::Cycles(2), "token lifetime + 1 refresh interval")
        .control_lost(),
        case(
            "vault 401 to a fresh token",
            |c| c.vault_fault(Fault::status(401)),
            Errno(EACCES),
            Errno(EACCES),
        )
        .bound(Bound::Cycles(2), "1 refresh interval (after one retry)")
        .control_lost(),
        case(
            "delete after memory-budget eviction, descriptor open",
            |c| {
                evict(c);
                c.emu.delete_secret(TARGET);
            },
            Errno(ENOENT),
            Errno(ENOENT),
        )
        .prep(eviction_plan)
        .bound(Bound::Cycles(1), "1 refresh interval"),
        case(
            "disable after memory-budget eviction, mmap open",
            |c| {
                evict(c);
                c.emu.set_enabled(TARGET, false);
            },
            Errno(EACCES),
            Errno(EACCES),
        )
        .prep(|p| {
            eviction_plan(p);
            p.mmap = true;
        })
        .bound(Bound::Cycles(1), "1 refresh interval"),
        case(
            "latest version disabled, older one enabled and open",
            |c| {
                rotate(c);
                if c.mode == Mode::Cached {
                    let want = c.latest();
                    wait_until(WAIT, || is_value(&read_guarded(&c.m().file(TARGET)), &want));
                }
                c.emu.set_enabled(TARGET, false);
            },
            Errno(EACCES),
            Errno(EACCES),
        )
        .bound(Bound::Cycles(1), "1 refresh interval"),
        case(
            "delete, purge and re-create within one interval",
            |c| {
                c.emu.delete_secret(TARGET);
                c.emu.inner().purge_secret(TARGET).expect("deleted");
                rotate(c);
            },
            NewValue,
            NewValue,
        )
        .doc("1 refresh interval")
        .after(After::NewValue),
        case(
            "disable and re-enable within one interval",
            |c| {
                c.emu.set_enabled(TARGET, false);
                c.emu.set_enabled(TARGET, true);
            },
            Value,
            Value,
        )
        .doc("never unavailable")
        .after(After::Value),
        case(
            "GET failing past --max-stale while list works",
            |c| rotate_then(c, |c| c.fault(Fault::status(503).for_operation(Operation::GetSecret))),
            Errno(EIO),
            Errno(EIO),
        )
        .prep(|p| p.flags = vec!["--max-stale".into(), "3s".into()])
        .bound(Bound::Cycles(4), "--max-stale per secret")
        .after(After::NewValue),
        // Vault errors.
        case("429 without Retry-After", |c| throttle_all(c, None), Errno(EIO), Value)
            .doc("cold: --fetch-timeout; cached: --max-stale")
            .after(After::Value),
        case("429 Retry-After 0", |c| throttle_all(c, Some(0)), Errno(EIO), Value)
            .doc("cold: --fetch-timeout; cached: --max-stale")
            .after(After::Value),
        case("429 Retry-After 3600", |c| throttle_all(c, Some(3600)), Errno(EIO), Value)
            .doc("cold: --fetch-timeout; cached: --max-stale")
            .after(After::Value),
        case(
            "429 Retry-After u64::MAX (panic path)",
            |c| throttle_all(c, Some(u64::MAX)),
            Errno(EIO),
            Value,
        )
        .doc("cold: --fetch-timeout; cached: --max-stale")
        .after(After::Value),
        case("429 Retry-After -5", |c| throttle_text(c, "-5"), Errno(EIO), Value)
            .doc("cold: --fetch-timeout; cached: --max-stale")
            .after(After::Value),
        case("429 Retry-After soon", |c| throttle_text(c, "soon"), Errno(EIO), Value)
            .doc("cold: --fetch-timeout; cached: --max-stale")
            .after(After::Value),
        case(
            "503 on GET only, list works",
            |c| rotate_then(c, |c| c.fault(Fault::status(503).for_operation(Operation::GetSecret))),
            Errno(EIO),
            Value,
        )
        .doc("cached: --max-stale")
        .after(After::NewValue),
        case(
            "connection reset on GET only",
            |c| rotate_then(c, |c| c.fault(Fault::reset().for_operation(Operation::GetSecret))),
            Errno(EIO),
            Value,
        )
        .doc("cached: --max-stale")
        .after(After::NewValue),
        case(
            "5 s latency on GET only",
            |c| {
                rotate_then(c, |c| {
                    c.fault(Fault::latency(Duration::from_secs(5)).for_operation(Operation::GetSecret))
                })
            },
            Errno(EIO),
            Value,
        )
        .doc("a cached read never waits")
        .after(After::NewValue),
        case(
            "list failing, GET works",
            |c| c.fault(Fault::status(503).for_operation(Operation::ListSecrets)),
            Value,
            Value,
        )
        .doc("cached: --max-stale")
        .after(After::Value),
        case(
            "list page with an empty nextLink",
            |c| rotate_then(c, |c| c.extra(ExtraFault::NextLink(NextLink::Empty))),
            NewValue,
            NewValue,
        )
        .doc("1 refresh interval")
        .after(After::NewValue),
        case(
            "list page with a looping nextLink",
            |c| rotate_then(c, |c| c.extra(ExtraFault::NextLink(NextLink::Loop))),
            NewValue,
            Value,
        )
        .doc("cached: --max-stale")
        .after(After::NewValue),
        case(
            "GET answering a wrong version",
            |c| rotate_then(c, |c| c.extra(ExtraFault::WrongVersion)),
            NewValue,
            NewValue,
        )
        .doc("1 refresh interval")
        .after(After::NewValue),
        case(
            "GET answering a different-case name",
            |c| rotate_then(c, |c| c.extra(ExtraFault::NameCase)),
            Errno(ENOENT),
            Errno(ENOENT),
        )
        .bound(Bound::Cycles(1), "1 refresh interval")
        .after(After::NewValue),
        case(
            "GET answering without a value",
            |c| rotate_then(c, |c| c.extra(ExtraFault::NoValue)),
            Errno(EIO),
            Value,
        )
        .doc("cached: --max-stale")
        .after(After::NewValue),
        case(
            "GET answering a 10 MB body",
            |c| rotate_then(c, |c| c.extra(ExtraFault::HugeValue(10 << 20))),
            Errno(EIO),
            Value,
        )
        .doc("cached: --max-stale")
        .after(After::NewValue),
        // Authentication and transport.
        case(
            "challenge for a foreign resource, verification off",
            nothing,
            Custom(foreign_challenge_unverified),
            Custom(foreign_challenge_unverified),
        )
        .says("mount refused naming the resource; no ARM token sent", "no ARM token requested or sent")
        .prep(no_mount)
        .doc("no foreign token is ever requested or sent"),
        case(
            "challenge for a foreign resource, verification on",
            nothing,
            Custom(foreign_challenge_verified),
            Custom(foreign_challenge_verified),
        )
        .says("mount refused; no ARM token sent", "no ARM token sent")
        .prep(no_mount)
        .doc("no foreign token is ever requested or sent"),
        case(
            "untrusted server certificate",
            nothing,
            Custom(untrusted_certificate),
            Custom(untrusted_certificate),
        )
        .says("mount refused naming the certificate; no request reaches the server", "same (refused before any request)")
        .prep(no_mount)
        .doc("refused at mount; nothing sent"),
        case(
            "server certificate changes (impostor on the path)",
            nothing,
            Custom(certificate_changes),
            Custom(certificate_changes),
        )
        .says("EIO; impostor bytes never served, no request reaches it", "cached value served; impostor never served nor sent a token")
        .prep(no_mount)
        .doc("cold: EIO; cached: --max-stale"),
        // Clocks.
        case(
            "local clock behind the server (an hour)",
            nothing,
            Custom(server_ahead),
            Custom(server_ahead),
        )
        .says("new value; no GET per cycle for unchanged secrets", "new value; no GET per cycle for unchanged secrets")
        .prep(no_rechecks)
        .doc("1 refresh interval; no extra GETs"),
        case(
            "local clock ahead of the server (an hour), same-second write",
            nothing,
            Custom(server_behind),
            Custom(server_behind),
        )
        .prep(no_rechecks)
        .says("new value", "new value")
        .doc("1 refresh interval")
        .pending(Some(Mode::Cached), OPEN_CLOCK_STEP_BACK),
        case(
            "two writes in the same second",
            |c| {
                rotate(c);
                if c.mode == Mode::Cached {
                    let want = c.latest();
                    wait_until(WAIT, || is_value(&read_guarded(&c.m().file(TARGET)), &want));
                }
                rotate(c);
            },
            NewValue,
            NewValue,
        )
        .doc("1 refresh interval")
        .after(After::NewValue),
        // Local users.
        case(
            "lookup flood by a user who may search but not read",
            nothing,
            Custom(lookup_flood),
            Custom(lookup_flood),
        )
        .says("vault GETs bounded by the lookup budget", "same; cached value still served")
        .prep(flood_plan)
        .doc("cold fetches budgeted per mount"),
        case("empty value", rotate_empty, NewValue, NewValue)
            .prep(|p| p.value = String::new())
            .doc("1 refresh interval")
            .after(After::NewValue),
        case("25,600-byte value", rotate_big, NewValue, NewValue)
            .prep(|p| p.value = format!("{}{}", marker("BIG"), "b".repeat(25_600 - 38)))
            .doc("1 refresh interval")
            .after(After::NewValue),
        case("multi-line value", rotate_lines, NewValue, NewValue)
            .prep(|p| p.value = format!("{}\nline two\r\nline three\n", marker("LINES")))
            .doc("1 refresh interval")
            .after(After::NewValue),
        case("escaped JSON value", rotate_json, NewValue, NewValue)
            .prep(|p| {
                p.value = format!(
                    "{{\"k\":\"{}\",\"pem\":\"-----BEGIN-----\\nAAAA\\n\",\"u\":\"\u{e9}\\u0041\\t\"}}",
                    marker("JSON")
                )
            })
            .doc("1 refresh interval")
            .after(After::NewValue),
        case(
            "tag keys long, with a newline or a NUL; content type with a newline",
            nothing,
            Custom(xattrs_ok),
            Custom(xattrs_ok),
        )
        .says("value served; every listed attribute readable; no forged log line", "same")
        .prep(|p| {
            p.tags.insert("k".repeat(300), "long".into());
            p.tags.insert("line\nbreak".into(), "nl".into());
            p.tags.insert("nul\0key".into(), "nul".into());
            p.tags.insert("plain".into(), "value\nwith newline".into());
            p.content_type = Some("text/plain\nX-Injected: 1".into());
        })
        .doc("not applicable"),
        // Process life.
        case(
            "SIGHUP to akvfs mount",
            |c| {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(c.m().pid(), libc::SIGHUP) };
                std::thread::sleep(Duration::from_millis(300));
            },
            Value,
            Value,
        )
        .doc("logged and ignored")
        .after(After::Value),
        case(
            "SIGTERM with descriptors open",
            nothing,
            Custom(sigterm_with_fds),
            Custom(sigterm_with_fds),
        )
        .says("exit 0, unmounted", "exit 0, unmounted")
        .doc("clean (lazy) unmount, exit 0"),
        case(
            "SIGHUP with an invalid config",
            nothing,
            Custom(reload_invalid),
            Custom(reload_invalid),
        )
        .says("old mount keeps serving", "old mount keeps serving")
        .prep(no_mount)
        .doc("old mounts keep serving"),
        case(
            "SIGHUP with an unreachable vault",
            nothing,
            Custom(reload_unreachable),
            Custom(reload_unreachable),
        )
        .says("old mount keeps serving", "old mount keeps serving")
        .prep(no_mount)
        .doc("old mount keeps serving until the new one is ready"),
        case(
            "SIGHUP with a mode-changing config",
            nothing,
            Custom(reload_mode),
            Custom(reload_mode),
        )
        .says("served throughout, new mode applied", "served throughout, new mode applied")
        .prep(no_mount)
        .doc("new mode served without a gap"),
    ]
}

/// Open: the refresher settles same-second writes on the vault's own clock
/// (its `Date` header) and trusts that clock not to step back. This case
/// forges the same `updated` by stepping the server's clock back to a second
/// it had already answered in, long after the fetch; a real same-second write
/// (the fetch answered in the write's second) is caught, as the cold case and
/// "two writes in the same second" show.
const OPEN_CLOCK_STEP_BACK: &str =
    "open: a server clock stepped back to an already-answered second hides a write";

/// A server clock ahead of the local one: rotations still show, and an
/// unchanged secret costs no GET per cycle.
fn server_ahead(ctx: &mut Ctx) -> Result<(), String> {
    ctx.extra(ExtraFault::ClockSkew(3600));
    rotate(ctx);
    clock_check(ctx)
}

/// A server clock behind the local one, and a new version carrying the
/// cached version's `updated` (written in the same server second).
fn server_behind(ctx: &mut Ctx) -> Result<(), String> {
    let cached = ctx.emu.secret_updated(TARGET).ok_or("no target")?;
    ctx.extra(ExtraFault::ClockSkew(cached - unix_now()));
    rotate(ctx);
    clock_check(ctx)
}

fn clock_check(ctx: &mut Ctx) -> Result<(), String> {
    let want = ctx.latest();
    let ok = wait_until(WAIT, || read_target(ctx).is_ok_and(|g| is_value(&g, &want)));
    if !ok {
        return Err("the new version never showed".into());
    }
    // A value fetched in the same second (by the vault's clock) as its
    // write is settled by GETs until one is answered in a later second;
    // let that finish (three cycles span more than one second), then an
    // unchanged secret must cost no GET per cycle.
    let c = ctx.cycles();
    wait_until(WAIT, || ctx.cycles() >= c + 3);
    let gets = ctx.emu.counts().get("get_secret");
    let c = ctx.cycles();
    wait_until(WAIT, || ctx.cycles() >= c + 4);
    let more = ctx.emu.counts().get("get_secret") - gets;
    if more > 1 {
        return Err(format!(
            "an unchanged secret was fetched {more} times in 4 cycles"
        ));
    }
    Ok(())
}

fn rotate_empty(c: &Ctx) {
    c.rotate(String::new());
    // An empty value cannot be told apart from the seed; write a real one after.
    c.rotate(marker("AFTER-EMPTY"));
}

fn rotate_big(c: &Ctx) {
    c.rotate(format!("{}{}", marker("BIG2"), "c".repeat(25_600 - 38)));
}

fn rotate_lines(c: &Ctx) {
    c.rotate(format!("{}\r\n\n\nend\n", marker("LINES2")));
}

fn rotate_json(c: &Ctx) {
    c.rotate(format!(
        "{{\"k\":\"{}\",\"esc\":\"\\\\\\\"\\/\\b\\f\\n\\r\\t\\u0000\"}}",
        marker("JSON2")
    ));
}

fn in_words(c: &Case, mode: Mode) -> String {
    let sees = match mode {
        Mode::Cold => c.cold,
        Mode::Cached => c.cached,
    };
    let text = match sees {
        Sees::Value if mode == Mode::Cold => "value served".to_string(),
        Sees::Value => "cached value served".to_string(),
        Sees::NewValue => "new value".to_string(),
        Sees::Errno(e) => errno_name(e).to_string(),
        Sees::Custom(_) => c
            .says
            .map(|(a, b)| if mode == Mode::Cold { a } else { b })
            .unwrap_or("see test")
            .to_string(),
    };
    let after = match c.after {
        After::Nothing => "",
        After::Value => "; served again after",
        After::NewValue => "; new value after",
    };
    let pending = match mode {
        Mode::Cold => c.pending_cold,
        Mode::Cached => c.pending_cached,
    };
    let mark = match pending {
        Some(why) if why.starts_with("open") => " (open)",
        Some(_) => " (pending)",
        None => "",
    };
    format!("{text}{after}{mark}")
}

/// `FAULT_MATRIX_TABLE=1` prints the table of docs/SECURITY.md instead of running.
fn print_table(cases: &[Case]) {
    let mut out =
        String::from("| case | cold secret | cached secret | bound |\n|---|---|---|---|\n");
    for c in cases {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.name,
            in_words(c, Mode::Cold),
            in_words(c, Mode::Cached),
            c.bound_doc
        ));
    }
    println!("{out}");
}

#[test]
fn fault_matrix() {
    if std::env::var_os("FAULT_MATRIX_TABLE").is_some() {
        print_table(&cases());
        return;
    }
    let only = std::env::var("FAULT_MATRIX_ONLY").ok();
    let jobs: usize = std::env::var("FAULT_MATRIX_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(3)
        .max(1);
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o)))
        .collect();
    let work: Vec<(usize, Mode)> = (0..cases.len())
        .flat_map(|i| [(i, Mode::Cold), (i, Mode::Cached)])
        .collect();
    let work = Arc::new(Mutex::new(work.into_iter()));
    let cases = Arc::new(cases);
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (work, cases, results) = (work.clone(), cases.clone(), results.clone());
            std::thread::spawn(move || loop {
                let next = work.lock().unwrap().next();
                let Some((i, mode)) = next else { break };
                let c = &cases[i];
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_one(c, mode)))
                    .unwrap_or_else(|_| Err("the harness panicked".into()));
                results.lock().unwrap().push((i, mode, r));
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap());
    results.sort_by_key(|(i, m, _)| (*i, *m == Mode::Cached));
    let mut failures = Vec::new();
    let mut report = String::from("\nfault matrix:\n");
    for (i, mode, r) in &results {
        let c = &cases[*i];
        let pending = match mode {
            Mode::Cold => c.pending_cold,
            Mode::Cached => c.pending_cached,
        };
        let status = match (r, pending) {
            (Ok(_), None) => "ok".to_string(),
            (Ok(_), Some(why)) => format!("PASSES NOW (pending: {why}): enable it"),
            (Err(_), Some(why)) => format!("pending ({why})"),
            (Err(_), None) => "FAILED".to_string(),
        };
        let detail = match r {
            Ok(seen) => seen.clone(),
            Err(e) => e.lines().next().unwrap_or("").chars().take(160).collect(),
        };
        report.push_str(&format!(
            "  {:<62} {:<6} {:<40} {detail}\n",
            c.name,
            format!("{mode:?}"),
            status
        ));
        if let (Err(e), None) = (r, pending) {
            failures.push(format!("{} ({mode:?}): {e}", c.name));
        }
    }
    eprintln!("{report}");
    assert!(
        failures.is_empty(),
        "fault matrix failures:\n{}",
        failures.join("\n")
    );
}
