//! Process life: what a restart finds at the mountpoint (a dead mount, a
//! missing or non-empty directory, another filesystem), readiness that is true
//! only when every mount can read, the liveness check of a dead mount,
//! signals (created once: SIGHUP to `akvfs mount`, SIGTERM while a mount is
//! starting), reloads that keep the old mount serving until its replacement
//! can, and where a background `akvfs mount` logs.
//!
//! Waits are generous and nothing asserts how long anything took: absence is
//! only asserted at a point where the daemon has provably seen the state.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use akvfs_emulator::{Operation, Permissions};
use common::*;

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn mount_block(emu: &Emulator, path: &Path, extra: &str) -> String {
    let refresh = if extra.contains("refresh_interval") {
        ""
    } else {
        "refresh_interval = \"5m\"\n"
    };
    format!(
        "[[mount]]\nvault = \"{}\"\npath = \"{}\"\nca_file = \"{}\"\ndisable_challenge_resource_verification = true\n{refresh}{extra}\n",
        emu.info().vault_url,
        path.display(),
        emu.info().ca_file
    )
}

/// A systemd-style NOTIFY_SOCKET collecting the daemon's messages.
struct Notify {
    path: std::path::PathBuf,
    sock: std::os::unix::net::UnixDatagram,
    seen: Vec<String>,
}

impl Notify {
    fn new(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_nonblocking(true).unwrap();
        Notify {
            path,
            sock,
            seen: Vec::new(),
        }
    }

    fn poll(&mut self) -> &[String] {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        &self.seen
    }

    fn count(&mut self, line: &str) -> usize {
        self.poll()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}

/// `akvfs run --config FILE` with its stderr kept in memory.
struct Service {
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Service {
    fn start(env: &[(String, String)], config: &Path, extra: &[&str]) -> Service {
        let mut cmd = akvfs(env);
        cmd.arg("run").arg("--config").arg(config).args(extra);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Service { child, log }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let _ = wait_until(Duration::from_secs(30), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_restarted_service_recovers_a_dead_mount_creates_a_missing_directory_and_refuses_what_it_must_not_hide(
) {
    let value = marker("v");
    let emu = emulator_with(&[("a", &value)]);
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead");
    let missing = dir.path().join("missing/deeper");
    let foreign = dir.path().join("foreign");
    let full = dir.path().join("full");
    let allowed = dir.path().join("allowed");
    for d in [&dead, &foreign, &full, &allowed] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(full.join("keep.txt"), "x").unwrap();
    std::fs::write(allowed.join("keep.txt"), "x").unwrap();
    // Another filesystem at the mountpoint.
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&foreign)
        .status()
        .unwrap()
        .success());
    // A dead akvfs mount: its daemon was killed.
    let mut killed = Mount::start_at(&emu, &wi_env(&emu), &[], &dead);
    killed.stop_with(libc::SIGKILL);
    assert!(is_mounted(&dead), "a killed daemon leaves its mount behind");

    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        [
            mount_block(&emu, &dead, ""),
            mount_block(&emu, &missing, ""),
            mount_block(&emu, &foreign, ""),
            mount_block(&emu, &full, ""),
            mount_block(&emu, &allowed, "nonempty = true"),
        ]
        .concat(),
    )
    .unwrap();
    let port = free_port();
    let svc = Service::start(
        &wi_env(&emu),
        &config,
        &["--metrics-listen", &format!("127.0.0.1:{port}")],
    );
    assert!(
        wait_until(WAIT, || {
            is_mounted(&dead) && is_mounted(&missing) && is_mounted(&allowed)
        }) && wait_until(WAIT, || std::fs::read(dead.join("a")).is_ok()),
        "log:\n{}",
        svc.log()
    );
    assert!(svc.log().contains("stale mount"), "{}", svc.log());
    for d in [&dead, &missing, &allowed] {
        assert_eq!(std::fs::read(d.join("a")).unwrap(), value.as_bytes());
    }
    // What must not be hidden is refused, with the reason in /readyz.
    let refused = |path: &Path, why: &str| {
        let shown = path.display().to_string();
        wait_until(WAIT, || {
            let (status, body) = http_get(port, "/readyz");
            status == 503
                && body
                    .split("; ")
                    .any(|part| part.starts_with(&shown) && part.contains(why))
        })
    };
    assert!(
        refused(&foreign, "already a mount point (tmpfs"),
        "{}",
        http_get(port, "/readyz").1
    );
    assert!(
        refused(&full, "not empty"),
        "{}",
        http_get(port, "/readyz").1
    );
    assert!(std::fs::metadata(full.join("keep.txt")).is_ok());
    drop(svc);
    let _ = Command::new("umount").arg(&foreign).status();
}

#[test]
fn akvfs_mount_refuses_a_foreign_mount_and_a_non_empty_directory_unless_told() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "x").unwrap();
    let mut cmd = akvfs(&wi_env(&emu));
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&full)
        .args(conn_args(&emu));
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.error_line().contains("is not empty") && out.error_line().contains("nonempty"),
        "{}",
        out.stderr
    );
    let m = Mount::start_at(&emu, &wi_env(&emu), &["-o", "nonempty"], &full);
    assert_eq!(m.read("a").unwrap(), b"1");
    drop(m);
    assert_eq!(std::fs::read(full.join("keep.txt")).unwrap(), b"x");

    // A bind mount of a directory (a container volume, a hostPath) is a
    // directory like any other.
    let (source, bound) = (dir.path().join("source"), dir.path().join("bound"));
    std::fs::create_dir(&source).unwrap();
    std::fs::create_dir(&bound).unwrap();
    assert!(Command::new("mount")
        .arg("--bind")
        .arg(&source)
        .arg(&bound)
        .status()
        .unwrap()
        .success());
    let m = Mount::start_at(&emu, &wi_env(&emu), &[], &bound);
    assert_eq!(m.read("a").unwrap(), b"1");
    drop(m);
    let _ = Command::new("umount").arg(&bound).status();

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&foreign)
        .status()
        .unwrap()
        .success());
    let mut cmd = akvfs(&wi_env(&emu));
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&foreign)
        .args(conn_args(&emu))
        .arg("--nonempty");
    let out = run(cmd);
    let _ = Command::new("umount").arg(&foreign).status();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.error_line().contains("already a mount point (tmpfs"),
        "{}",
        out.stderr
    );
}

#[test]
fn ready_only_when_every_mount_can_read_with_no_permission_or_behind_the_firewall() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        [
            mount_block(&emu, &one, "fetch_timeout = \"2s\""),
            mount_block(&emu, &two, "fetch_timeout = \"2s\""),
        ]
        .concat(),
    )
    .unwrap();
    let client = emu.info().client_id.clone();

    // No permission at all (an access policy not yet granted).
    emu.inner()
        .set_permissions(&client, Permissions::none())
        .unwrap();
    let mut notify = Notify::new(dir.path());
    let port = free_port();
    let mut env = wi_env(&emu);
    env.push(("NOTIFY_SOCKET".into(), notify.path.display().to_string()));
    let _svc = Service::start(
        &env,
        &config,
        &[
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "--ready-timeout",
            "0",
        ],
    );
    assert!(
        wait_until(WAIT, || {
            let (status, body) = http_get(port, "/readyz");
            status == 503 && body.contains("access policies") && body.contains("ForbiddenByPolicy")
        }),
        "{}",
        http_get(port, "/readyz").1
    );
    assert!(!is_mounted(&one) && !is_mounted(&two));
    assert_eq!(notify.count("READY=1"), 0, "{:?}", notify.poll());

    // The vault's firewall refuses us: readiness says so, and still no READY.
    emu.inner()
        .set_permissions(&client, Permissions::all())
        .unwrap();
    emu.inject_fault(Fault::status(403).for_operation(Operation::ListSecrets));
    emu.inject_fault(Fault::status(403).for_operation(Operation::GetSecret));
    assert!(
        wait_until(Duration::from_secs(120), || {
            let (status, body) = http_get(port, "/readyz");
            status == 503 && body.contains("ForbiddenByFirewall") && body.contains("firewall")
        }),
        "{}",
        http_get(port, "/readyz").1
    );
    assert_eq!(notify.count("READY=1"), 0, "{:?}", notify.poll());

    emu.clear_faults();
    assert!(
        wait_until(Duration::from_secs(120), || notify.count("READY=1") == 1),
        "READY=1 once both mounts can read"
    );
    assert!(is_mounted(&one) && is_mounted(&two));
    assert_eq!(http_get(port, "/readyz").0, 200);
    assert_eq!(std::fs::read(one.join("a")).unwrap(), b"1");
}

#[test]
fn under_systemd_a_start_that_cannot_get_ready_fails_with_the_reason() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        mount_block(&emu, &dir.path().join("m"), "fetch_timeout = \"1s\""),
    )
    .unwrap();
    emu.inject_fault(Fault::status(403).for_operation(Operation::ListSecrets));
    emu.inject_fault(Fault::status(403).for_operation(Operation::GetSecret));
    let mut notify = Notify::new(dir.path());
    let mut env = wi_env(&emu);
    env.push(("NOTIFY_SOCKET".into(), notify.path.display().to_string()));
    let mut cmd = akvfs(&env);
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--ready-timeout", "2s"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let line = out.error_line();
    assert!(
        line.contains("ready timeout") && line.contains("firewall"),
        "{line}"
    );
    assert_eq!(notify.count("READY=1"), 0);

    // akvfs mount: the same reason, at once.
    let mnt = dir.path().join("single");
    std::fs::create_dir(&mnt).unwrap();
    let mut cmd = akvfs(&wi_env(&emu));
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&mnt)
        .args(conn_args(&emu))
        .args(["--foreground", "--fetch-timeout", "1s"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.error_line().contains("cannot read secrets")
            && out.error_line().contains("ForbiddenByFirewall"),
        "{}",
        out.stderr
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn healthz_fails_on_a_dead_mount() {
    let emu = emulator_with(&[("a", "1")]);
    let mut m = Mount::new(&emu, &[]);
    let registry = Arc::new(akvfs::Registry::default());
    registry.add(akvfs::MountMetrics::new(
        &m.path.display().to_string(),
        &emu.info().vault_url,
        Duration::from_secs(60),
        false,
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    rt.block_on(akvfs::serve_metrics(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Arc::clone(&registry),
        stop_rx,
    ))
    .unwrap();
    let get = |path: &str| {
        rt.block_on(async {
            let p = path.to_string();
            tokio::task::spawn_blocking(move || http_get(port, &p))
                .await
                .unwrap()
        })
    };
    assert_eq!(get("/healthz").0, 200, "a serving mount is alive");
    m.stop_with(libc::SIGKILL);
    assert!(is_mounted(&m.path));
    let (status, body) = get("/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not connected"), "{body}");
}

#[test]
fn sighup_to_akvfs_mount_is_logged_and_ignored() {
    let emu = emulator_with(&[("a", "1")]);
    let m = Mount::new(&emu, &[]);
    unsafe { libc::kill(m.pid(), libc::SIGHUP) };
    assert!(
        wait_until(WAIT, || m.log().contains("received SIGHUP")),
        "{}",
        m.log()
    );
    assert!(is_mounted(&m.path));
    assert_eq!(m.read("a").unwrap(), b"1");
    let mut m = m;
    let status = m.stop_with(libc::SIGTERM).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(&m.path));
}

#[test]
fn sigterm_while_a_mount_is_starting_is_not_lost() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        [
            mount_block(&emu, &one, "fetch_timeout = \"30s\""),
            mount_block(&emu, &two, "fetch_timeout = \"30s\""),
        ]
        .concat(),
    )
    .unwrap();
    let mut svc = Service::start(&wi_env(&emu), &config, &[]);
    assert!(wait_until(WAIT, || is_mounted(&one) && is_mounted(&two)));
    // From now on every listing takes a while, so a restart of `two` is
    // inside its start when the signal arrives.
    emu.inject_fault(Fault::latency(Duration::from_secs(4)).for_operation(Operation::ListSecrets));
    let before = emu.counts().get("total");
    assert!(Command::new("umount")
        .arg("-l")
        .arg(&two)
        .status()
        .unwrap()
        .success());
    assert!(
        wait_until(WAIT, || emu.counts().get("total") > before),
        "the restart of the unmounted mount reached the vault"
    );
    svc.signal(libc::SIGTERM);
    assert!(
        wait_until(WAIT, || svc.exited().is_some()),
        "SIGTERM during a start was lost; log:\n{}",
        svc.log()
    );
    assert!(svc.exited().unwrap().success(), "{}", svc.log());
    assert!(!is_mounted(&one) && !is_mounted(&two));
}

#[test]
fn sigterm_before_the_first_mount_has_started_unmounts_cleanly() {
    let emu = emulator_with(&[("a", "1")]);
    emu.inject_fault(Fault::latency(Duration::from_secs(4)).for_operation(Operation::ListSecrets));
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, mount_block(&emu, &one, "fetch_timeout = \"30s\"")).unwrap();
    let mut svc = Service::start(&wi_env(&emu), &config, &[]);
    // The first start has reached the vault (and waits on the listing).
    assert!(wait_until(WAIT, || emu.counts().get("total") > 0));
    svc.signal(libc::SIGTERM);
    assert!(wait_until(WAIT, || svc.exited().is_some()), "{}", svc.log());
    assert!(
        svc.exited().unwrap().success(),
        "ended by the signal instead of handling it: {:?}",
        svc.exited()
    );
    assert!(!is_mounted(&one));
}

#[test]
fn a_reload_keeps_the_old_mount_serving_when_the_new_one_cannot_start_and_replaces_it_when_it_can()
{
    let value = marker("v");
    let emu = emulator_with(&[("a", &value)]);
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, mount_block(&emu, &one, "")).unwrap();
    let mut notify = Notify::new(dir.path());
    let mut env = wi_env(&emu);
    env.push(("NOTIFY_SOCKET".into(), notify.path.display().to_string()));
    let svc = Service::start(&env, &config, &[]);
    assert!(wait_until(WAIT, || notify.count("READY=1") == 1));
    let id = mount_id(&one).unwrap();
    let held = std::fs::File::open(one.join("a")).unwrap();

    // A wrong vault: nothing answers there.
    let unreachable = format!("https://127.0.0.1:{}", free_port());
    std::fs::write(
        &config,
        mount_block(&emu, &one, "fetch_timeout = \"1s\"")
            .replace(&emu.info().vault_url, &unreachable),
    )
    .unwrap();
    svc.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || notify.count("READY=1") == 2),
        "the reload finished; log:\n{}",
        svc.log()
    );
    assert_eq!(mount_id(&one).as_ref(), Some(&id), "the old mount stayed");
    assert_eq!(std::fs::read(one.join("a")).unwrap(), value.as_bytes());
    assert!(
        svc.log()
            .contains("keeps serving with its previous settings"),
        "{}",
        svc.log()
    );

    // A change that can start (a new file mode) replaces the mount.
    std::fs::write(&config, mount_block(&emu, &one, "file_mode = \"0440\"")).unwrap();
    svc.signal(libc::SIGHUP);
    assert!(wait_until(WAIT, || notify.count("READY=1") == 3));
    assert!(is_mounted(&one));
    assert_ne!(mount_id(&one).as_ref(), Some(&id));
    assert_eq!(
        std::fs::metadata(one.join("a")).unwrap().mode() & 0o777,
        0o440
    );
    assert_eq!(std::fs::read(one.join("a")).unwrap(), value.as_bytes());
    drop(held);
}

#[test]
fn a_background_mount_says_where_it_logs_and_logs_there() {
    let hidden = marker("h");
    let emu = emulator_with(&[("a", "1"), ("hidden", &hidden)]);
    emu.deny_secret(&emu.info().client_id.clone(), "hidden");
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let state = dir.path().join("state");
    let mut env = wi_env(&emu);
    env.push(("XDG_STATE_HOME".into(), state.display().to_string()));
    let mut cmd = akvfs(&env);
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&mnt)
        .args(conn_args(&emu));
    let out = run(cmd);
    // Unmounting ends the background daemon, also when an assertion fails.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            if is_mounted(self.0) {
                let _ = Command::new("umount").arg(self.0).status();
            }
        }
    }
    let _unmount = Unmount(&mnt);
    assert!(out.status.success(), "{}", out.stderr);
    let journald = Path::new("/run/systemd/journal/stdout").exists();
    let syslog = Path::new("/dev/log").exists();
    let file = state.join("akvfs/akvfs.log");
    let said = out.stderr.clone();
    if journald || syslog {
        assert!(said.contains("logs: "), "{said}");
        return;
    }
    assert!(
        said.contains(&format!("logs: {}", file.display())),
        "the output names the log file: {said}"
    );
    assert_eq!(std::fs::read(mnt.join("a")).unwrap(), b"1");
    let denied = std::fs::read(mnt.join("hidden"));
    assert!(denied.is_err());
    let found = wait_until(WAIT, || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        text.contains("serving") && text.contains("ForbiddenByRbac") && text.contains("WARN")
    });
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(found, "the warning reached the log file:\n{text}");
    assert!(!text.contains('\u{1b}'), "no terminal colours in the file");
    assert!(!text.contains(&hidden), "no secret value in the log");
    assert_eq!(
        std::fs::metadata(&file).unwrap().mode() & 0o777,
        0o600,
        "the log file is private to its user"
    );
}

#[test]
fn a_403_says_whether_the_firewall_a_role_assignment_or_an_access_policy_refused() {
    use akvfs::VaultError;
    let text = |detail: &str| {
        VaultError::Forbidden {
            operation: "list",
            detail: detail.to_string(),
        }
        .to_string()
    };
    let firewall = text("ForbiddenByFirewall: Client address is not authorized");
    assert!(
        firewall.contains("firewall") && !firewall.contains("role"),
        "{firewall}"
    );
    let rbac = text("ForbiddenByRbac: Caller is not authorized");
    assert!(
        rbac.contains("role assignment") && rbac.contains("Key Vault Secrets User"),
        "{rbac}"
    );
    let policy = text("ForbiddenByPolicy: The user, group or application");
    assert!(policy.contains("access policies"), "{policy}");
    let other = text("Forbidden");
    assert!(
        other.contains("firewall") && other.contains("role"),
        "{other}"
    );
}

#[test]
fn readiness_turns_false_when_a_serving_mount_loses_access_and_true_when_it_is_back() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        mount_block(&emu, &one, "refresh_interval = \"1s\""),
    )
    .unwrap();
    let port = free_port();
    let svc = Service::start(
        &wi_env(&emu),
        &config,
        &["--metrics-listen", &format!("127.0.0.1:{port}")],
    );
    assert!(
        wait_until(WAIT, || http_get(port, "/readyz").0 == 200),
        "{}",
        svc.log()
    );
    let client = emu.info().client_id.clone();
    emu.inner()
        .set_permissions(&client, Permissions::none())
        .unwrap();
    assert!(
        wait_until(WAIT, || {
            let (status, body) = http_get(port, "/readyz");
            status == 503 && body.contains("refused the last listing")
        }),
        "{}",
        http_get(port, "/readyz").1
    );
    emu.inner()
        .set_permissions(&client, Permissions::all())
        .unwrap();
    assert!(
        wait_until(WAIT, || http_get(port, "/readyz").0 == 200),
        "{}",
        http_get(port, "/readyz").1
    );
}
