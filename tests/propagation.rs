//! Mount propagation as a Kubernetes node sees it, emulated with Linux mount
//! namespaces: the host directory is a shared mount (like the kubelet's
//! hostPath with Bidirectional propagation on the akvfs side), and consumers
//! are processes in their own mount namespaces started before akvfs mounts.
//!
//! - A consumer whose namespace is a slave of the host (HostToContainer)
//!   sees the mount appear, sees rotations, and after akvfs is killed and
//!   started again on the same path (a DaemonSet pod restart) sees the new
//!   mount without being restarted itself.
//! - A consumer with private propagation (None) keeps seeing the empty
//!   directory.
//! - A consumer that bind-mounted the mountpoint itself after akvfs mounted
//!   stays pinned to the dead mount after the restart; this is why consumers
//!   mount the directory above the mountpoint (docs/DEPLOYMENT.md).
//!
//! The consumers answer one request per line on stdin, so the test asks for
//! exactly what it checks instead of sampling a loop; every wait is generous
//! and nothing asserts how long anything took.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::*;

/// Generous bound for anything to become visible (mounts, rotations).
const LIMIT: Duration = Duration::from_secs(60);

/// The consumer: `read NAME` prints `ok VALUE` or `err MESSAGE`; `fstype`
/// prints the type of the mount at the watched directory in the consumer's
/// own namespace, or `none`. With a second argument it first bind-mounts that
/// directory onto the watched one (what a container runtime does for a
/// hostPath volume), as a slave or private mount.
const CONSUMER: &str = r#"
dir="$1"
if [ -n "$2" ]; then
  mount --bind "$2" "$dir" || exit 1
  mount --make-"$3" "$dir" || exit 1
fi
echo started
while read -r cmd arg; do
  case "$cmd" in
    read)
      if v=$(cat -- "$dir/$arg" 2>&1); then echo "ok $v"; else echo "err $v"; fi ;;
    fstype)
      awk -v d="$dir" '$5 == d { split($0, p, " - "); split(p[2], f, " "); t = f[1] }
        END { print (t == "" ? "none" : t) }' /proc/self/mountinfo ;;
    *) echo "err unknown request" ;;
  esac
done
"#;

/// A process in its own mount namespace that reads files on request.
struct Consumer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Consumer {
    /// Starts a consumer watching `dir` in a new mount namespace whose mounts
    /// are slaves of the host's (`unshare --propagation slave`). With `bind`,
    /// it first bind-mounts `bind.0` onto `dir` with propagation `bind.1`
    /// ("rslave" or "rprivate").
    fn start(dir: &Path, bind: Option<(&Path, &str)>) -> Consumer {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "slave",
            "sh",
            "-c",
            CONSUMER,
            "consumer",
        ])
        .arg(dir);
        if let Some((source, propagation)) = bind {
            cmd.arg(source).arg(propagation);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare starts (util-linux)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Consumer {
            child,
            stdin,
            lines,
        };
        assert_eq!(
            c.next_line(),
            "started",
            "the consumer could not set up its namespace"
        );
        let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let theirs = std::fs::read_link(format!("/proc/{}/ns/mnt", c.child.id())).unwrap();
        assert_ne!(
            own, theirs,
            "the consumer must run in its own mount namespace"
        );
        c
    }

    fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(LIMIT)
            .expect("the consumer answers within the limit")
    }

    fn ask(&mut self, request: &str) -> String {
        writeln!(self.stdin, "{request}").expect("the consumer is running");
        self.stdin.flush().unwrap();
        self.next_line()
    }

    /// `ok VALUE` or `err MESSAGE`.
    fn read(&mut self, name: &str) -> String {
        self.ask(&format!("read {name}"))
    }

    fn fstype(&mut self) -> String {
        self.ask("fstype")
    }

    /// Asks until `read name` answers `ok want`.
    fn wait_for_value(&mut self, name: &str, want: &str) -> bool {
        let expected = format!("ok {want}");
        wait_until(LIMIT, || self.read(name) == expected)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory bind-mounted onto itself and made shared, like a kubelet
/// hostPath on a node whose root mount is shared. Unmounted on drop.
struct SharedDir {
    path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SharedDir {
    fn new() -> SharedDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("host");
        std::fs::create_dir(&path).unwrap();
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(&path)
            .arg(&path)
            .status();
        assert!(
            bind.is_ok_and(|s| s.success()),
            "mount --bind {0} {0} failed",
            path.display()
        );
        let shared = Command::new("mount")
            .arg("--make-shared")
            .arg(&path)
            .status();
        assert!(
            shared.is_ok_and(|s| s.success()),
            "mount --make-shared {} failed",
            path.display()
        );
        SharedDir { path, _tmp: tmp }
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// These tests need root (mount, unshare) like every mount test here, and
/// util-linux's unshare.
fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mount namespaces need root");
        return false;
    }
    true
}

fn refresh_args() -> [&'static str; 2] {
    ["--refresh-interval", "1s"]
}

#[test]
fn slave_consumer_follows_mount_rotation_and_daemon_restart() {
    if !can_run() {
        return;
    }
    let v1 = marker("v1");
    let emu = emulator_with(&[("db-password", &v1), ("api-key", &marker("key"))]);
    let host = SharedDir::new();
    let vault_dir = host.path.join("myvault");
    std::fs::create_dir(&vault_dir).unwrap();

    // Started before akvfs: sees the plain directory.
    let mut consumer = Consumer::start(&vault_dir, None);
    assert_eq!(consumer.fstype(), "none");
    assert!(consumer.read("db-password").starts_with("err "));

    let mut daemon = Mount::start_at(&emu, &wi_env(&emu), &refresh_args(), &vault_dir);
    assert!(
        wait_until(LIMIT, || consumer.fstype() == "fuse.akvfs"),
        "the mount did not propagate into the consumer's namespace"
    );
    assert!(
        consumer.wait_for_value("db-password", &v1),
        "last answer: {}",
        consumer.read("db-password")
    );

    // A rotation reaches the consumer through the same mount.
    let v2 = marker("v2");
    emu.set_secret("db-password", &v2);
    assert!(
        consumer.wait_for_value("db-password", &v2),
        "last answer: {}",
        consumer.read("db-password")
    );

    // The daemon dies without unmounting (SIGKILL, OOM): the mount stays, and
    // anything the kernel has not cached fails.
    daemon.stop_with(libc::SIGKILL);
    assert!(
        is_mounted(&vault_dir),
        "a killed daemon leaves its mount behind"
    );
    let uncached = consumer.read("api-key");
    assert!(
        uncached.starts_with("err ") && uncached.contains("not connected"),
        "reading an uncached file of a dead mount: {uncached}"
    );

    // The value changes while no daemon runs, so only the new mount can
    // serve it: seeing it proves the consumer reads the new mount.
    let v3 = marker("v3");
    emu.set_secret("db-password", &v3);
    let consumer_pid = consumer.pid();
    let restarted = Mount::start_at(&emu, &wi_env(&emu), &refresh_args(), &vault_dir);
    assert!(
        restarted.log().contains("stale mount"),
        "akvfs should report detaching the stale mount; log:\n{}",
        restarted.log()
    );
    assert!(
        consumer.wait_for_value("db-password", &v3),
        "the consumer did not see the restarted mount; last answer: {}",
        consumer.read("db-password")
    );
    assert_eq!(consumer.fstype(), "fuse.akvfs");
    assert_eq!(
        consumer.pid(),
        consumer_pid,
        "the consumer was not restarted"
    );
    assert!(consumer.child.try_wait().unwrap().is_none());

    // A clean stop unmounts, and the consumer sees the directory again.
    drop(restarted);
    assert!(
        wait_until(LIMIT, || consumer.fstype() == "none"),
        "the unmount did not propagate"
    );
}

#[test]
fn private_consumer_started_before_the_mount_sees_an_empty_directory() {
    if !can_run() {
        return;
    }
    let v1 = marker("v1");
    let emu = emulator_with(&[("db-password", &v1)]);
    let host = SharedDir::new();
    let vault_dir = host.path.join("myvault");
    std::fs::create_dir(&vault_dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let seen_private = tmp.path().join("private");
    let seen_slave = tmp.path().join("slave");
    std::fs::create_dir(&seen_private).unwrap();
    std::fs::create_dir(&seen_slave).unwrap();

    // Both bind the vault directory like a hostPath volume: one with
    // propagation None (rprivate), one HostToContainer (rslave).
    let mut private = Consumer::start(&seen_private, Some((&vault_dir, "rprivate")));
    let mut slave = Consumer::start(&seen_slave, Some((&vault_dir, "rslave")));

    let _daemon = Mount::start_at(&emu, &wi_env(&emu), &refresh_args(), &vault_dir);
    // Once the slave consumer sees the value, the mount has propagated
    // wherever it is going to.
    assert!(
        slave.wait_for_value("db-password", &v1),
        "last answer: {}",
        slave.read("db-password")
    );
    let answer = private.read("db-password");
    assert!(
        answer.starts_with("err ") && answer.contains("No such file"),
        "a consumer with private propagation should see the empty directory: {answer}"
    );
    assert_ne!(private.fstype(), "fuse.akvfs");
}

#[test]
fn consumer_that_binds_the_mountpoint_itself_is_pinned_to_the_old_mount() {
    if !can_run() {
        return;
    }
    let v1 = marker("v1");
    let emu = emulator_with(&[("db-password", &v1)]);
    let host = SharedDir::new();
    let vault_dir = host.path.join("myvault");
    std::fs::create_dir(&vault_dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pinned_dir = tmp.path().join("pinned");
    std::fs::create_dir(&pinned_dir).unwrap();

    // The parent-directory consumer: the layout the manifests use.
    let mut parent = Consumer::start(&host.path, None);

    let mut daemon = Mount::start_at(&emu, &wi_env(&emu), &refresh_args(), &vault_dir);
    // Started after the mount, binding the mountpoint itself (a hostPath of
    // exactly the mountpoint): the bind is of the FUSE mount.
    let mut pinned = Consumer::start(&pinned_dir, Some((&vault_dir, "rslave")));
    assert!(pinned.wait_for_value("db-password", &v1));
    assert!(parent.wait_for_value("myvault/db-password", &v1));

    daemon.stop_with(libc::SIGKILL);
    let v2 = marker("v2");
    emu.set_secret("db-password", &v2);
    let _restarted = Mount::start_at(&emu, &wi_env(&emu), &refresh_args(), &vault_dir);
    assert!(
        parent.wait_for_value("myvault/db-password", &v2),
        "the parent-directory consumer did not see the restarted mount; last answer: {}",
        parent.read("myvault/db-password")
    );
    // The new mount is serving v2 (the other consumer sees it), but the
    // pinned consumer still holds the dead mount: the old cached value, or
    // "Transport endpoint is not connected", never v2.
    let answer = pinned.read("db-password");
    assert_ne!(
        answer,
        format!("ok {v2}"),
        "the pinned consumer unexpectedly followed the restart"
    );
    assert_eq!(pinned.fstype(), "fuse.akvfs");
}

/// `akvfs run` (the DaemonSet's and akvfs.service's command) as a child with
/// its stderr kept in memory.
struct RunDaemon {
    child: Option<Child>,
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl RunDaemon {
    fn start(emu: &Emulator, config: &Path) -> RunDaemon {
        let mut child = akvfs(&wi_env(emu))
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("akvfs starts");
        let mut stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        RunDaemon {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    fn stop_with(&mut self, sig: i32) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, sig) };
            if !wait_until(LIMIT, || matches!(child.try_wait(), Ok(Some(_)))) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for RunDaemon {
    fn drop(&mut self) {
        self.stop_with(libc::SIGTERM);
    }
}

#[test]
fn akvfs_run_killed_and_restarted_detaches_the_dead_mount_and_the_consumer_reads_again() {
    if !can_run() {
        return;
    }
    let v1 = marker("v1");
    let emu = emulator_with(&[("db-password", &v1), ("api-key", &marker("key"))]);
    let host = SharedDir::new();
    // The manifests' layout: a per-vault directory the consumer mounts, and
    // the mountpoint below it, created by akvfs itself.
    let vault_dir = host.path.join("myvault");
    let mountpoint = vault_dir.join("secrets");
    std::fs::create_dir(&vault_dir).unwrap();
    let config = host._tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[mount]]\nvault = \"{}\"\npath = \"{}\"\nca_file = \"{}\"\ndisable_challenge_resource_verification = true\nrefresh_interval = \"1s\"\n",
            emu.info().vault_url,
            mountpoint.display(),
            emu.info().ca_file
        ),
    )
    .unwrap();

    let mut consumer = Consumer::start(&vault_dir, None);
    let mut daemon = RunDaemon::start(&emu, &config);
    assert!(
        consumer.wait_for_value("secrets/db-password", &v1),
        "last answer: {}; log:\n{}",
        consumer.read("secrets/db-password"),
        daemon.log()
    );

    // SIGKILL (an OOM kill): the mount stays behind, dead.
    daemon.stop_with(libc::SIGKILL);
    assert!(is_mounted(&mountpoint));
    let uncached = consumer.read("secrets/api-key");
    assert!(
        uncached.starts_with("err ") && uncached.contains("not connected"),
        "reading an uncached file of a dead mount: {uncached}"
    );

    // The value changes while no daemon runs: only the new mount has it.
    let v2 = marker("v2");
    emu.set_secret("db-password", &v2);
    let consumer_pid = consumer.pid();
    let restarted = RunDaemon::start(&emu, &config);
    assert!(
        consumer.wait_for_value("secrets/db-password", &v2),
        "the consumer did not see the restarted mount; last answer: {}; log:\n{}",
        consumer.read("secrets/db-password"),
        restarted.log()
    );
    assert!(
        restarted.log().contains("stale mount"),
        "akvfs run should report detaching the stale mount; log:\n{}",
        restarted.log()
    );
    assert!(
        !restarted
            .log()
            .contains("cannot create the mount directory"),
        "{}",
        restarted.log()
    );
    assert_eq!(
        consumer.pid(),
        consumer_pid,
        "the consumer was not restarted"
    );
    assert!(
        consumer.read("secrets/api-key").starts_with("ok "),
        "files not read before the kill are served again"
    );
    // Exactly one akvfs mount is left at the mountpoint.
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let target = mountpoint.display().to_string();
    let stacked = text
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(target.as_str()))
        .count();
    assert_eq!(stacked, 1, "the dead mount was detached, not covered");
    drop(restarted);
}
