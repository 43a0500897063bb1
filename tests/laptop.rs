//! The laptop path: a normal user with the default 8 MiB locked-memory limit
//! mounts a vault through fusermount3 with the Azure CLI's sign-in, and only
//! the memory that holds secret values is locked.
//!
//! These tests run as root and start akvfs as a dedicated unprivileged user
//! (created with useradd if missing). /dev/fuse is root-only on this kind of
//! machine, so the tests open it to other users for their duration and put
//! its mode back afterwards.

mod common;

use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::*;

const USER: &str = "akvfs-laptop";
const MEMLOCK_LIMIT: u64 = 8 << 20;

/// One test at a time: they share the user and /dev/fuse's mode.
static SERIAL: Mutex<()> = Mutex::new(());

struct Laptop {
    uid: u32,
    gid: u32,
    /// The user's working directory: fake `az`, the emulator's CA, mountpoints.
    dir: tempfile::TempDir,
    fuse_mode: u32,
    _serial: MutexGuard<'static, ()>,
}

impl Laptop {
    fn new() -> Laptop {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if !Command::new("id")
            .arg("-u")
            .arg(USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            let st = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    USER,
                ])
                .status()
                .expect("useradd runs");
            assert!(st.success(), "useradd {USER} failed");
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").arg(flag).arg(USER).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let fuse_mode = std::fs::metadata("/dev/fuse").unwrap().mode() & 0o7777;
        std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("akvfs-laptop")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        Laptop {
            uid,
            gid,
            dir,
            fuse_mode,
            _serial: serial,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A directory owned by the user.
    fn user_dir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid)).unwrap();
        p
    }

    /// The Azure CLI environment (fake `az` on PATH) and connection flags,
    /// with every file the user needs readable by the user.
    fn cli_setup(&self, emu: &Emulator) -> (Vec<(String, String)>, Vec<String>) {
        let bin = self.user_dir("bin");
        let mut env = cli_env(emu, &bin);
        env.push(("HOME".into(), self.dir.path().display().to_string()));
        let ca = self.path("ca.pem");
        std::fs::copy(&emu.info().ca_file, &ca).unwrap();
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
        // No --auth: on a machine without other identities, auto picks the
        // Azure CLI, as on a laptop.
        let args = vec![
            "--ca-file".into(),
            ca.display().to_string(),
            "--disable-challenge-resource-verification".into(),
        ];
        (env, args)
    }

    /// `cmd` run as the user, with the default 8 MiB locked-memory limit and
    /// no capabilities (setuid from root clears them).
    fn as_user(&self, mut cmd: Command) -> Command {
        cmd.uid(self.uid).gid(self.gid).current_dir(self.dir.path());
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: MEMLOCK_LIMIT,
                    rlim_max: MEMLOCK_LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// `cat FILE` as the user (a mount without allow_other serves its owner only).
    fn cat(&self, file: &Path) -> Result<Vec<u8>, String> {
        let mut cmd = Command::new("cat");
        cmd.arg(file);
        let out = self.as_user(cmd).output().unwrap();
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn akvfs(&self, env: &[(String, String)]) -> Command {
        self.as_user(akvfs(env))
    }
}

impl Drop for Laptop {
    fn drop(&mut self) {
        let _ =
            std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(self.fuse_mode));
        // Leave no mount behind if an assertion failed half way.
        for name in ["kv", "stale"] {
            let p = self.path(name);
            if is_mounted(&p) {
                let _ = Command::new("umount").arg("-l").arg(&p).status();
            }
        }
    }
}

/// The `pid=N` of akvfs's "serving" line.
fn serving_pid(log: &str) -> i32 {
    log.lines()
        .find(|l| l.contains(" serving "))
        .and_then(|l| l.split(" pid=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no serving line with a pid in:\n{log}"))
}

/// One mapping of /proc/PID/smaps.
#[derive(Debug)]
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    name: String,
    rss_kb: u64,
    swap_kb: u64,
    locked_kb: u64,
    flags: Vec<String>,
}

impl Mapping {
    fn is_locked(&self) -> bool {
        self.flags.iter().any(|f| f == "lo")
    }
}

fn smaps(pid: i32) -> Vec<Mapping> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let f: Vec<&str> = line.split_whitespace().collect();
                out.push(Mapping {
                    start,
                    end,
                    perms: f.get(1).unwrap_or(&"").to_string(),
                    name: f.get(5..).map(|n| n.join(" ")).unwrap_or_default(),
                    rss_kb: 0,
                    swap_kb: 0,
                    locked_kb: 0,
                    flags: Vec::new(),
                });
                continue;
            }
        }
        let Some(m) = out.last_mut() else { continue };
        let kb = |rest: &str| -> u64 {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0)
        };
        if let Some(r) = line.strip_prefix("Rss:") {
            m.rss_kb = kb(r);
        } else if let Some(r) = line.strip_prefix("Swap:") {
            m.swap_kb = kb(r);
        } else if let Some(r) = line.strip_prefix("Locked:") {
            m.locked_kb = kb(r);
        } else if let Some(r) = line.strip_prefix("VmFlags:") {
            m.flags = r.split_whitespace().map(String::from).collect();
        }
    }
    out
}

/// Reads a mapping through /proc/PID/mem (root may, although the daemon is
/// not dumpable). Unreadable pieces (guard pages, [vvar]) are skipped.
fn read_mapping(mem: &std::fs::File, m: &Mapping) -> Vec<u8> {
    let mut out = Vec::with_capacity((m.end - m.start) as usize);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = m.start;
    while at < m.end {
        let n = ((m.end - at) as usize).min(buf.len());
        match mem.read_at(&mut buf[..n], at) {
            Ok(got) if got > 0 => {
                out.extend_from_slice(&buf[..got]);
                at += got as u64;
            }
            _ => {
                // Skip one page; a gap of zeroes joins no two matches.
                let skip = n.min(4096);
                out.extend(std::iter::repeat_n(0u8, skip));
                at += skip as u64;
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    hay.iter()
        .enumerate()
        .filter(|(_, &b)| b == first)
        .any(|(i, _)| hay[i..].starts_with(needle))
}

/// Where `needle` occurs in the process's memory: (locked mappings holding
/// it, unlocked mappings holding it).
fn find_in_memory(pid: i32, needle: &[u8]) -> (Vec<String>, Vec<String>) {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let (mut locked, mut unlocked) = (Vec::new(), Vec::new());
    for m in smaps(pid) {
        // Only pages that are present (or swapped out) can hold anything;
        // the rest read as zeroes or as the file they map.
        if !m.perms.starts_with('r') || m.rss_kb + m.swap_kb == 0 || m.name == "[vvar]" {
            continue;
        }
        if contains(&read_mapping(&mem, &m), needle) {
            let what = format!("{:x}-{:x} {} {}", m.start, m.end, m.perms, m.name);
            if m.is_locked() {
                locked.push(what);
            } else {
                unlocked.push(what);
            }
        }
    }
    (locked, unlocked)
}

fn exited(pid: i32) -> bool {
    wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z ") || s.contains(") X "))
            .unwrap_or(true)
    })
}

#[test]
fn a_normal_user_mounts_with_the_default_lock_limit_and_only_secrets_are_locked() {
    let laptop = Laptop::new();
    // Longer than the 32 bytes the FUSE library copies into a reply on its
    // stack, so a found copy can only come from akvfs's own buffers.
    let value = format!("{}{}", marker("laptop-secret"), marker("x"));
    assert!(value.len() > 64);
    let emu = emulator_with(&[("db-password", &value), ("other", "x")]);
    let (env, args) = laptop.cli_setup(&emu);
    let kv = laptop.user_dir("kv");

    // The README's laptop line: `akvfs mount VAULT ~/kv`, in the background.
    let mut cmd = laptop.akvfs(&env);
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&kv)
        .args(&args);
    let out = run(cmd);
    assert!(out.status.success(), "akvfs mount failed:\n{}", out.stderr);
    eprintln!("first run as a normal user:\n{}", out.stderr);
    assert!(is_mounted(&kv), "not mounted:\n{}", out.stderr);
    assert!(
        out.stderr.contains("memory: secrets ("),
        "the startup output names the mode:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("memory=\"secrets\""), "{}", out.stderr);
    assert!(
        out.stderr.contains("using azure-cli authentication"),
        "{}",
        out.stderr
    );
    let pid = serving_pid(&out.stderr);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&laptop.uid.to_string())),
        "the daemon runs as the user"
    );

    for _ in 0..3 {
        assert_eq!(
            laptop.cat(&kv.join("db-password")).unwrap(),
            value.as_bytes()
        );
    }

    // The secret region: locked, left out of core dumps, within the limit.
    let maps = smaps(pid);
    let region = maps
        .iter()
        .find(|m| m.name == "[anon:akvfs-secrets]")
        .or_else(|| maps.iter().find(|m| m.flags.iter().any(|f| f == "dd")))
        .unwrap_or_else(|| panic!("no secret region in smaps: {maps:#?}"));
    assert!(region.flags.iter().any(|f| f == "dd"), "{region:?}");
    assert!(region.is_locked(), "{region:?}");
    assert!(region.locked_kb > 0, "{region:?}");
    assert_eq!(
        region.locked_kb * 1024,
        region.end - region.start,
        "{region:?}"
    );
    let vmlck: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        vmlck > 0 && vmlck * 1024 <= MEMLOCK_LIMIT,
        "VmLck {vmlck} kB"
    );
    assert!(
        !maps
            .iter()
            .any(|m| m.is_locked() && m.start != region.start),
        "nothing but the region is locked"
    );

    // The method: read every present mapping of the daemon through
    // /proc/PID/mem and search it for the value's bytes. The value must be
    // found in the locked region (so the search works and reads memory as
    // it is), and in no mapping that is not locked: not in the heap (the
    // HTTP response and parsed JSON are wiped when freed), not on a stack,
    // not in the reply buffers.
    let (locked, unlocked) = find_in_memory(pid, value.as_bytes());
    assert!(!locked.is_empty(), "the value is not in the locked region");
    assert!(
        unlocked.is_empty(),
        "the value is in memory that may be swapped: {unlocked:?}"
    );
    // A control: the vault URL, which is no secret, is found in unlocked memory.
    let (_, url_unlocked) = find_in_memory(pid, emu.info().vault_url.as_bytes());
    assert!(
        !url_unlocked.is_empty(),
        "the search does not see ordinary memory"
    );

    // `akvfs unmount` works for the user who mounted.
    let mut cmd = laptop.akvfs(&[]);
    cmd.arg("unmount").arg(&kv);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "akvfs unmount as the user: {}",
        out.stderr
    );
    assert!(!is_mounted(&kv));
    assert!(exited(pid), "the daemon exits once unmounted");
}

#[test]
fn a_stale_mount_is_recovered_without_root_and_allow_other_names_fuse_conf() {
    let laptop = Laptop::new();
    let emu = emulator_with(&[("a", "first")]);
    let (env, args) = laptop.cli_setup(&emu);
    let dir = laptop.user_dir("stale");
    let start = |extra: &[&str]| -> Child {
        let mut cmd = laptop.akvfs(&env);
        cmd.arg("mount")
            .arg(&emu.info().vault_url)
            .arg(&dir)
            .arg("--foreground")
            .args(&args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let mut child = start(&[]);
    assert!(
        wait_until(Duration::from_secs(30), || is_mounted(&dir)),
        "the user's mount did not come up"
    );
    assert_eq!(laptop.cat(&dir.join("a")).unwrap(), b"first");
    // A crash: the mount stays behind, dead.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(is_mounted(&dir));
    // (A file read before the crash may still be served from the page
    // cache; the directory itself reaches the dead daemon.)
    let mut ls = Command::new("ls");
    ls.arg(&dir);
    let out = laptop.as_user(ls).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not connected"), "{err}");

    // The same user mounts again: the stale mount is detached through
    // fusermount3, without root.
    emu.set_secret("a", "second");
    let mut child = start(&[]);
    assert!(
        wait_until(Duration::from_secs(30), || laptop.cat(&dir.join("a")).ok()
            == Some(b"second".to_vec())),
        "the mount did not recover"
    );
    let mut log = String::new();
    let mut cmd = laptop.akvfs(&[]);
    cmd.arg("unmount").arg(&dir);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child.wait().unwrap();
    assert!(log.contains("stale mount"), "{log}");

    // --allow-other needs user_allow_other in /etc/fuse.conf.
    let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    if conf.lines().any(|l| l.trim() == "user_allow_other") {
        eprintln!("/etc/fuse.conf allows allow_other here; not checking the refusal");
        return;
    }
    let mut cmd = laptop.akvfs(&env);
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&dir)
        .args(&args)
        .arg("--allow-other");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let line = out.error_line();
    assert!(
        line.starts_with("akvfs: error: ")
            && line.contains("/etc/fuse.conf")
            && line.contains("user_allow_other"),
        "{line}"
    );
    assert_eq!(out.stderr.trim(), line, "one line, nothing else");
    assert!(!is_mounted(&dir));
}

#[test]
fn root_keeps_mlockall_and_check_names_the_mode() {
    let laptop = Laptop::new();
    let emu = emulator_with(&[("a", "root")]);
    let (env, args) = laptop.cli_setup(&emu);

    // Root (CAP_IPC_LOCK): the whole process is locked.
    let m = Mount::with_env(
        &emu,
        &cli_env(&emu, &laptop.user_dir("rootbin")),
        &["--auth", "azure-cli"],
    );
    assert_eq!(m.read("a").unwrap(), b"root");
    assert!(m.log().contains("memory: all (mlockall)"), "{}", m.log());
    assert!(m.log().contains("memory=\"all\""), "{}", m.log());
    let unlocked: Vec<Mapping> = smaps(m.pid())
        .into_iter()
        .filter(|x| x.rss_kb > 0 && !x.is_locked() && !x.name.starts_with("[v"))
        .collect();
    assert!(unlocked.is_empty(), "{unlocked:#?}");
    drop(m);

    let check = |cmd: Command| {
        let mut cmd = cmd;
        cmd.arg("check").arg(&emu.info().vault_url).args(&args);
        run(cmd)
    };
    let out = check(akvfs(&env));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("memory:   all (mlockall)"),
        "{}",
        out.stdout
    );
    let out = check(laptop.akvfs(&env));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("memory:   secrets (")
            && out.stdout.contains("8 MiB locked-memory limit"),
        "{}",
        out.stdout
    );
}

/// What the Azure CLI prints once its refresh token has expired.
const EXPIRED_AZ: &str =
    "#!/bin/sh\necho \"ERROR: AADSTS700082: The refresh token has expired due to inactivity. \
         The token was issued on 2026-01-01T00:00:00Z and was inactive for 90.00:00:00.\" >&2\n\
         echo \"Interactive authentication is needed. Please run:\" >&2\n\
         echo \"az login --scope https://vault.azure.net/.default\" >&2\nexit 1\n";

#[test]
fn an_expired_cli_sign_in_says_to_run_az_login_again() {
    let laptop = Laptop::new();
    let emu = emulator_with(&[("a", "x")]);
    let (mut env, args) = laptop.cli_setup(&emu);
    let bin = laptop.user_dir("expired");
    std::fs::write(bin.join("az"), EXPIRED_AZ).unwrap();
    std::fs::set_permissions(bin.join("az"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (k, v) in env.iter_mut() {
        if k == "PATH" {
            *v = format!("{}:/usr/bin:/bin", bin.display());
        }
    }
    let kv = laptop.user_dir("kv");
    let mut cmd = laptop.akvfs(&env);
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&kv)
        .args(&args)
        .args(["--fetch-timeout", "2s"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.error_line().contains("run az login again"),
        "{}",
        out.stderr
    );
    let mut cmd = laptop.akvfs(&env);
    cmd.arg("check").arg(&emu.info().vault_url).args(&args);
    let out = run(cmd);
    assert!(
        out.error_line().contains("run az login again"),
        "{}",
        out.stderr
    );

    // While serving: the sign-in expires under a running mount. The CLI
    // hands out a token that it says expires in 2 s, so once that has passed
    // the next request to the vault must ask `az` again.
    let bin = laptop.user_dir("rotating");
    let token = emu.mint_token(&emu.info().client_id, Duration::from_secs(3600));
    let expires = unix_now() + 2;
    fake_az(&bin, &token, expires);
    let mut env = base_env(&emu);
    env.push(("PATH".into(), format!("{}:/usr/bin:/bin", bin.display())));
    let m = Mount::with_env(&emu, &env, &["--auth", "azure-cli"]);
    std::fs::write(bin.join("az"), EXPIRED_AZ).unwrap();
    assert!(wait_until(Duration::from_secs(10), || unix_now() > expires));
    assert!(m.read("a").is_err(), "a value never fetched cannot be read");
    assert!(
        wait_until(Duration::from_secs(20), || m
            .log()
            .contains("run az login again")),
        "{}",
        m.log()
    );
}

#[test]
fn a_normal_user_granted_cap_ipc_lock_keeps_mlockall() {
    let laptop = Laptop::new();
    let emu = emulator_with(&[("a", "capable")]);
    let (env, args) = laptop.cli_setup(&emu);
    let kv = laptop.user_dir("kv");
    // The user, with CAP_IPC_LOCK as an ambient capability (as a unit's
    // AmbientCapabilities= would give it) and the default 8 MiB limit.
    let with_cap = |akvfs_args: &[&str]| -> Finished {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", laptop.uid))
            .arg(format!("--regid={}", laptop.gid))
            .args([
                "--clear-groups",
                "--inh-caps=+ipc_lock",
                "--ambient-caps=+ipc_lock",
                "--",
            ])
            .arg(akvfs_bin())
            .args(akvfs_args)
            .args(&args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(laptop.dir.path());
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: MEMLOCK_LIMIT,
                    rlim_max: MEMLOCK_LIMIT,
                };
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
                Ok(())
            });
        }
        run(cmd)
    };
    let url = emu.info().vault_url.clone();
    let out = with_cap(&["check", &url]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("memory:   all (mlockall)"),
        "{}",
        out.stdout
    );

    let out = with_cap(&["mount", &url, kv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("memory: all (mlockall)"),
        "{}",
        out.stderr
    );
    let pid = serving_pid(&out.stderr);
    assert_eq!(laptop.cat(&kv.join("a")).unwrap(), b"capable");
    let maps = smaps(pid);
    assert!(!maps.iter().any(|m| m.name == "[anon:akvfs-secrets]"));
    assert!(maps.iter().any(|m| m.name == "[heap]" && m.is_locked()));
    let mut cmd = laptop.akvfs(&[]);
    cmd.arg("unmount").arg(&kv);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(exited(pid));
}

/// /etc/fuse.conf with `user_allow_other` for as long as it lives; the file as it was afterwards.
struct FuseConf(Option<String>);

impl FuseConf {
    fn allowing_other() -> FuseConf {
        let before = std::fs::read_to_string("/etc/fuse.conf").ok();
        let mut text = before.clone().unwrap_or_default();
        text.push_str("\nuser_allow_other\n");
        std::fs::write("/etc/fuse.conf", text).unwrap();
        FuseConf(before)
    }
}

impl Drop for FuseConf {
    fn drop(&mut self) {
        let _ = match &self.0 {
            Some(text) => std::fs::write("/etc/fuse.conf", text),
            None => std::fs::remove_file("/etc/fuse.conf"),
        };
    }
}

#[test]
fn allow_root_lets_root_read_a_users_mount_and_nobody_else() {
    let laptop = Laptop::new();
    let emu = emulator_with(&[("db", "v1")]);
    let (env, args) = laptop.cli_setup(&emu);
    let kv = laptop.user_dir("kv");
    let _conf = FuseConf::allowing_other();
    let mount = |extra: &[&str]| {
        let mut cmd = laptop.akvfs(&env);
        cmd.arg("mount")
            .arg(&emu.info().vault_url)
            .arg(&kv)
            .args(&args)
            .args(extra);
        let out = run(cmd);
        assert!(out.status.success(), "akvfs mount failed:\n{}", out.stderr);
    };
    let unmount = || {
        let mut cmd = laptop.akvfs(&[]);
        cmd.arg("unmount").arg(&kv);
        let out = run(cmd);
        assert!(out.status.success(), "{}", out.stderr);
    };
    let as_nobody = || {
        let mut cat = Command::new("cat");
        cat.arg(kv.join("db")).uid(65534).gid(65534);
        cat.output().unwrap()
    };
    let errno = |r: std::io::Result<Vec<u8>>| r.map_err(|e| e.raw_os_error());

    // Without it, a normal user's mount serves that user only: not even root.
    mount(&[]);
    assert_eq!(laptop.cat(&kv.join("db")).unwrap(), b"v1");
    assert_eq!(errno(std::fs::read(kv.join("db"))), Err(Some(libc::EACCES)));
    unmount();

    // Modes that let others in would defeat it: refused before anything is mounted.
    let mut cmd = laptop.akvfs(&env);
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&kv)
        .args(&args)
        .args(["-o", "allow_root,file_mode=0444"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.error_line().contains("allow_root"), "{}", out.stderr);
    assert!(!is_mounted(&kv));

    // Read by the owner, and by root, and the value is in the page cache: another user is
    // still refused (by the mode bits, which the kernel checks on every open).
    mount(&["-o", "allow_root"]);
    assert_eq!(laptop.cat(&kv.join("db")).unwrap(), b"v1");
    assert_eq!(errno(std::fs::read(kv.join("db"))), Ok(b"v1".to_vec()));
    let out = as_nobody();
    assert!(!out.status.success(), "another user read the mount");
    assert!(out.stdout.is_empty());
    unmount();
}
