//! `akvfs csi` killed and started again: kubelet's next republish restores the identity's
//! mount, and a container that mounted the volume with HostToContainer propagation reads the
//! new mount without being restarted; one without it keeps the dead mount.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::csi::*;
use common::*;

const LIMIT: Duration = Duration::from_secs(60);
const CLIENT_A: &str = "a1a1a1a1-0000-4000-8000-00000000000a";

/// A container: its own mount namespace, the volume bound at `dir` with
/// `propagation` (rslave: HostToContainer; private: None); answers
/// `read NAME` with `ok VALUE` or `err MESSAGE`.
struct Consumer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

const CONSUMER: &str = r#"
mount --rbind "$1" "$2" || exit 1
mount --make-r"$3" "$2" || exit 1
echo started
while read -r cmd arg; do
  if v=$(cat -- "$2/$arg" 2>&1); then echo "ok $v"; else echo "err $v"; fi
done
"#;

impl Consumer {
    fn start(target: &Path, at: &Path, propagation: &str) -> Consumer {
        let mut child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "slave",
                "sh",
                "-c",
                CONSUMER,
                "consumer",
            ])
            .arg(target)
            .arg(at)
            .arg(propagation)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let c = Consumer {
            child,
            stdin,
            lines,
        };
        assert_eq!(c.lines.recv_timeout(LIMIT).unwrap(), "started");
        c
    }

    fn read(&mut self, name: &str) -> String {
        writeln!(self.stdin, "read {name}").unwrap();
        self.stdin.flush().unwrap();
        self.lines
            .recv_timeout(LIMIT)
            .expect("the consumer answers")
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_restarted_plugin_serves_after_republish_and_a_host_to_container_consumer_recovers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the CSI plugin mounts and binds, which needs root");
        return;
    }
    let emu = emulator_with(&[("a-only", "value-a"), ("shared", "value-shared")]);
    let a = Pod::new("ns-a", "sa-a", "app-a-1");
    add_identity(&emu, CLIENT_A, &a.subject(), &[]);
    let kubelet = KubeletDir::new();
    let mut plugin = Plugin::start(&emu, &kubelet);
    let mut v = Volume::new(&emu, &kubelet, &a, CLIENT_A);
    plugin.publish(&v).unwrap();
    let spots = tempfile::tempdir().unwrap();
    let (slave_at, private_at) = (spots.path().join("h2c"), spots.path().join("none"));
    std::fs::create_dir(&slave_at).unwrap();
    std::fs::create_dir(&private_at).unwrap();
    let mut h2c = Consumer::start(&v.target, &slave_at, "slave");
    let mut none = Consumer::start(&v.target, &private_at, "private");
    assert_eq!(h2c.read("a-only"), "ok value-a");
    assert_eq!(none.read("a-only"), "ok value-a");

    plugin.kill();
    let dead = h2c.read("shared");
    assert!(dead.starts_with("err "), "a dead mount answered: {dead}");
    emu.set_secret("a-only", "value-a-2");

    let mut plugin = Plugin::start(&emu, &kubelet);
    v.token = Some(a.token(&emu));
    plugin
        .publish(&v)
        .unwrap_or_else(|s| panic!("republish after restart: {s:?}\n{}", plugin.log()));
    assert_eq!(v.read("a-only").unwrap(), "value-a-2");
    assert!(
        wait_until(LIMIT, || h2c.read("a-only") == "ok value-a-2"),
        "the HostToContainer consumer did not recover: {}",
        h2c.read("a-only")
    );
    // Without HostToContainer the container keeps the dead mount: a file
    // it read before still shows the value the kernel cached (no rotation
    // reaches it), anything else fails, until the pod restarts.
    assert_eq!(none.read("a-only"), "ok value-a");
    let uncached = none.read("shared");
    assert!(uncached.starts_with("err "), "{uncached}");

    drop((h2c, none));
    plugin.unpublish(&v).unwrap();
    assert!(
        mount_at(&v.target).is_none(),
        "stacked mounts left on the target"
    );
    assert_eq!(akvfs_mounts_under(&kubelet.path), 0);
}
