//! The real processes of the simulation: the Kubernetes API fake (tests/kubefake), `akvfs
//! watch` replicas publishing the notice to it, a handful of `akvfs mount` processes following
//! it through FUSE, and the relay that hands the same notice to the in-process agents.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akvfs::sim::{lock, ConfigMapSource, NoticeSource, SourceEvent};

use super::bus::Bus;
use super::kubefake::KubeFake;

/// The namespace the watcher publishes in, and the nodes read from.
pub const NS: &str = "akvfs";

/// What the real processes need to reach the emulator and the fake.
pub struct Procs {
    pub kube: KubeFake,
    pub kubeconfig: PathBuf,
    dir: PathBuf,
    vault_url: String,
    ca_file: String,
    fleet_size: u32,
    limit: u32,
    interval: Duration,
    next_watcher: AtomicUsize,
    watchers: Mutex<Vec<(String, Child)>>,
    pub mounts: Vec<RealMount>,
}

/// One `akvfs mount` process following the notice.
pub struct RealMount {
    pub name: String,
    pub dir: PathBuf,
    child: Mutex<Child>,
}

impl RealMount {
    /// The file's content as a local reader sees it (from the node's memory once cached).
    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }
}

impl Drop for RealMount {
    /// SIGTERM (akvfs unmounts and exits), then SIGKILL and a lazy unmount if it lingers.
    fn drop(&mut self) {
        let mut c = lock(&self.child);
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
    }
}

impl Procs {
    /// Starts the fake and writes its kubeconfig; `KUBECONFIG` points at it for this process
    /// too (the relay's client).
    pub fn start(
        dir: &Path,
        vault_url: &str,
        ca_file: &str,
        fleet_size: u32,
        limit: u32,
        interval: Duration,
    ) -> Procs {
        let kube = KubeFake::start(5.0);
        let kubeconfig = kube.kubeconfig(dir, NS);
        std::env::set_var("KUBECONFIG", &kubeconfig);
        Procs {
            kube,
            kubeconfig,
            dir: dir.to_path_buf(),
            vault_url: vault_url.to_string(),
            ca_file: ca_file.to_string(),
            fleet_size,
            limit,
            interval,
            next_watcher: AtomicUsize::new(0),
            watchers: Mutex::new(Vec::new()),
            mounts: Vec::new(),
        }
    }

    /// The notice object's name (`akvfs-notice-<first label of the vault's host>`).
    pub fn notice_name(&self) -> String {
        let host = self
            .vault_url
            .trim_start_matches("https://")
            .split([':', '/'])
            .next()
            .unwrap_or_default();
        format!(
            "akvfs-notice-{}",
            host.split('.').next().unwrap_or_default()
        )
    }

    pub fn notice_path(&self) -> String {
        format!("/api/v1/namespaces/{NS}/configmaps/{}", self.notice_name())
    }

    /// Starts akvfs as the simulation runs it: `command` (its subcommand and
    /// flags), then the emulator's identity and trust and the fake's
    /// kubeconfig; info logs go to `<name>.log` in the work directory.
    fn akvfs(
        &self,
        name: &str,
        command: impl FnOnce(&mut Command) -> &mut Command,
    ) -> Result<Child, String> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_akvfs"));
        command(&mut cmd)
            .args(["--auth", "workload-identity", "--ca-file", &self.ca_file])
            .arg("--disable-challenge-resource-verification")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("AKVFS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())
    }

    /// Starts one more `akvfs watch` replica.
    pub fn start_watcher(&self) -> Result<(), String> {
        let id = format!(
            "watch-{}",
            self.next_watcher.fetch_add(1, Ordering::Relaxed)
        );
        let child = self
            .akvfs(&id, |cmd| {
                cmd.args(["watch", "--vault", &self.vault_url])
                    .args(["--fleet-size", &self.fleet_size.to_string()])
                    .args(["--limit-per-10s", &self.limit.to_string()])
                    .args(["--interval", &format!("{}s", self.interval.as_secs())])
                    .args(["--namespace", NS, "--identity", &id])
                    .args(["--lease-duration", "15s", "--lease-renew-deadline", "10s"])
                    .args(["--lease-retry-period", "2s"])
            })
            .map_err(|e| format!("akvfs watch did not start: {e}"))?;
        lock(&self.watchers).push((id, child));
        Ok(())
    }

    /// The replica holding the lease, per the Lease object.
    pub fn leader(&self) -> Option<String> {
        let lease = self.kube.get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/akvfs-watch"
        ))?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_string)
    }

    /// Kills the replica `id` (SIGKILL: it gives nothing up).
    pub fn kill_watcher(&self, id: &str) {
        let mut ws = lock(&self.watchers);
        for (w, c) in ws.iter_mut().filter(|(w, _)| w == id) {
            let _ = c.kill();
            let _ = c.wait();
            let _ = w;
        }
        ws.retain(|(w, _)| w != id);
    }

    /// Starts `n` real mounts, each a node following the notice through the fake; waits
    /// until each lists the vault.
    pub fn start_mounts(&mut self, n: usize) -> Result<(), String> {
        for i in 0..n {
            let name = format!("real-{i}");
            let dir = self.dir.join(&name);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let child = self
                .akvfs(&name, |cmd| {
                    cmd.arg("mount")
                        .arg(&self.vault_url)
                        .arg(&dir)
                        .arg("--foreground")
                        .args(["--refresh-interval", "30s", "--max-unverified", "24h"])
                        .args(["--idle-timeout", "24h", "--notice-poll-interval", "6h"])
                        .args([
                            "--notice",
                            &format!("configmap:{NS}/{}", self.notice_name()),
                        ])
                        .args(["--node-name", &name])
                })
                .map_err(|e| format!("akvfs mount did not start: {e}"))?;
            self.mounts.push(RealMount {
                name,
                dir,
                child: Mutex::new(child),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for m in &self.mounts {
            while std::fs::read_dir(&m.dir)
                .map(|d| d.count() == 0)
                .unwrap_or(true)
            {
                if Instant::now() > deadline {
                    return Err(format!(
                        "{} did not list the vault within 2 min (see its log in {})",
                        m.name,
                        self.dir.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// Writes the notice's `secrets` as someone with write access to the object could.
    pub fn forge(&self, secrets: &str) -> bool {
        let patch = serde_json::json!({"data": {"secrets": secrets}});
        let (code, _) = self.kube.request(
            "PATCH",
            &self.notice_path(),
            "application/merge-patch+json",
            Some(&patch),
        );
        code == 200
    }

    /// The notice's `data` as the fake holds it.
    pub fn notice_data(&self) -> Option<serde_json::Value> {
        self.kube
            .get(&self.notice_path())
            .map(|cm| cm["data"].clone())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in lock(&self.watchers).iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Follows the notice in the fake with the nodes' own ConfigMap source, and hands each
/// notice to the in-process agents: one watch for all of them.
pub fn spawn_relay(name: String, bus: Arc<Bus>) {
    tokio::spawn(async move {
        let mut source = ConfigMapSource::new(NS.to_string(), name);
        loop {
            match source.next().await {
                SourceEvent::Notice(n) => bus.publish(n),
                SourceEvent::Down(_) | SourceEvent::Missing | SourceEvent::Invalid(_) => {}
            }
        }
    });
}
