//! The node plugin (`akvfs csi`) as a child process, and a kubelet stand-in that calls its CSI
//! Node service over the unix socket with the requests a real kubelet sends for an inline
//! ephemeral volume: pod info, a service-account token minted by the emulator for the pod's
//! subject, a target path laid out as kubelet lays it out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use akvfs::csi_proto as csi;
use akvfs_emulator::{Identity, ServiceAccountToken};
use csi::node_client::NodeClient;
use tonic::transport::Channel;

use crate::child;
use crate::rig::{self, Result, Vault};

/// The audience the CSIDriver object's tokenRequests names.
pub const AUDIENCE: &str = "api://AzureADTokenExchange";

/// One workload identity of the emulator, trusted for one service account.
#[derive(Clone, Debug)]
pub struct Ident {
    pub client_id: String,
    pub namespace: String,
    pub service_account: String,
}

impl Ident {
    /// Adds identity number `i` (client id, federated subject `system:serviceaccount:ns-i:sa-i`,
    /// every permission) to the emulator.
    pub fn add(vault: &Vault, i: usize) -> Result<Ident> {
        let id = Ident {
            client_id: format!("00000000-0000-4000-8000-{:012}", 100 + i),
            namespace: format!("ns-{i}"),
            service_account: format!("sa-{i}"),
        };
        let mut identity = Identity::new(&id.client_id);
        identity.federated_subjects = vec![id.subject()];
        vault
            .emu
            .add_identity(identity)
            .map_err(|e| format!("the emulator refused identity {i}: {e}"))?;
        Ok(id)
    }

    pub fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// `akvfs csi` with its socket and state directory below `dir`.
pub struct Plugin {
    child: Option<Child>,
    dir: PathBuf,
    kubelet_root: PathBuf,
    log: child::Log,
    rt: tokio::runtime::Runtime,
    node: NodeClient<Channel>,
    next_pod: u64,
}

impl Plugin {
    pub fn start(bin: &Path, vault: &Vault, dir: &Path) -> Result<Plugin> {
        let info = vault.emu.info();
        let socket = dir.join("plugin/csi.sock");
        let state = dir.join("plugin/state");
        let kubelet_root = dir.join("pods");
        for d in [dir.join("plugin"), kubelet_root.clone()] {
            std::fs::create_dir_all(&d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let mut cmd = child::akvfs(bin, info);
        cmd.arg("csi")
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--node-id")
            .arg("bench-node")
            .arg("--state-dir")
            .arg(&state)
            .arg("--ca-file")
            .arg(&info.ca_file)
            .arg("--disable-challenge-resource-verification");
        let (mut child, log) = child::spawn(&mut cmd, bin)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
        let start = Instant::now();
        let node = loop {
            if socket.exists() {
                if let Ok(ch) = rt.block_on(connect(&socket)) {
                    break NodeClient::new(ch);
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "akvfs csi exited ({status}) before serving; its log:\n{}",
                    child::text(&log)
                ));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "akvfs csi did not serve on {} within 30 s",
                    socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Plugin {
            child: Some(child),
            dir: dir.to_path_buf(),
            kubelet_root,
            log,
            rt,
            node,
            next_pod: 0,
        })
    }

    /// The identity mounts the plugin made below its state directory (FUSE mounts, not the
    /// binds on pods' targets).
    pub fn identity_mounts(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let state = format!("{}/plugin/state/", self.dir.display());
        text.lines()
            .filter_map(|l| {
                let point = l.split(' ').nth(4)?;
                let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
                (point.starts_with(&state) && fstype == "fuse.akvfs").then(|| PathBuf::from(point))
            })
            .collect()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// The last lines the plugin logged (it logs no token and no value), for an error message.
    fn log_tail(&self) -> String {
        let text = child::text(&self.log);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// A new pod of `ident`, with its volume directory created as kubelet creates it (the
    /// parent of the target path; the target itself is the plugin's to create).
    pub fn pod(&mut self, ident: &Ident) -> Result<Pod> {
        self.next_pod += 1;
        let uid = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            self.next_pod
        );
        let volume_dir = self
            .kubelet_root
            .join(&uid)
            .join("volumes/kubernetes.io~csi/kv");
        std::fs::create_dir_all(&volume_dir)
            .map_err(|e| format!("cannot create {}: {e}", volume_dir.display()))?;
        Ok(Pod {
            ident: ident.clone(),
            name: format!("bench-{}", self.next_pod),
            target: volume_dir.join("mount"),
            uid,
        })
    }

    /// NodePublishVolume of `pod`'s inline volume of `vault_url`, with a fresh token and the
    /// given extra volume attributes (akvfs options).
    pub fn publish(&mut self, vault: &Vault, pod: &Pod, options: &[(&str, &str)]) -> Result<()> {
        let token = vault
            .emu
            .mint_service_account_token(&ServiceAccountToken::for_pod(
                &pod.ident.namespace,
                &pod.ident.service_account,
                &pod.name,
                &pod.uid,
            ));
        let expiry = (time::OffsetDateTime::now_utc() + Duration::from_secs(3600))
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let tokens =
            serde_json::json!({ AUDIENCE: { "token": token, "expirationTimestamp": expiry } });
        let info = vault.emu.info();
        let mut ctx: HashMap<String, String> = HashMap::new();
        for (k, v) in [
            ("keyvaultName", info.vault_url.as_str()),
            ("clientID", pod.ident.client_id.as_str()),
            ("tenantId", info.tenant_id.as_str()),
            ("csi.storage.k8s.io/pod.name", pod.name.as_str()),
            (
                "csi.storage.k8s.io/pod.namespace",
                pod.ident.namespace.as_str(),
            ),
            ("csi.storage.k8s.io/pod.uid", pod.uid.as_str()),
            (
                "csi.storage.k8s.io/serviceAccount.name",
                pod.ident.service_account.as_str(),
            ),
            ("csi.storage.k8s.io/ephemeral", "true"),
        ] {
            ctx.insert(k.into(), v.into());
        }
        ctx.insert(
            "csi.storage.k8s.io/serviceAccount.tokens".into(),
            tokens.to_string(),
        );
        for (k, v) in options {
            ctx.insert((*k).into(), (*v).into());
        }
        let req = csi::NodePublishVolumeRequest {
            volume_id: format!("csi-{}-kv", pod.uid),
            target_path: pod.target.to_string_lossy().into_owned(),
            volume_capability: Some(csi::VolumeCapability {
                // kubelet sends SINGLE_NODE_WRITER for every inline volume; readonly says the rest.
                access_mode: Some(csi::volume_capability::AccessMode {
                    mode: csi::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
                }),
                access_type: Some(csi::volume_capability::AccessType::Mount(
                    csi::volume_capability::MountVolume::default(),
                )),
            }),
            readonly: true,
            volume_context: ctx,
            ..Default::default()
        };
        let mut node = self.node.clone();
        self.rt
            .block_on(node.node_publish_volume(req))
            .map(|_| rig::remember_unmount(&pod.target))
            .map_err(|s| {
                format!(
                    "NodePublishVolume of {}: {:?}: {}; the plugin's log ends:\n{}",
                    pod.name,
                    s.code(),
                    s.message(),
                    self.log_tail()
                )
            })
    }

    pub fn unpublish(&mut self, pod: &Pod) -> Result<()> {
        let req = csi::NodeUnpublishVolumeRequest {
            volume_id: format!("csi-{}-kv", pod.uid),
            target_path: pod.target.to_string_lossy().into_owned(),
        };
        let mut node = self.node.clone();
        self.rt
            .block_on(node.node_unpublish_volume(req))
            .map(|_| rig::forget_unmount(&pod.target))
            .map_err(|s| {
                format!(
                    "NodeUnpublishVolume of {}: {:?}: {}",
                    pod.name,
                    s.code(),
                    s.message()
                )
            })
    }

    /// Resident memory of the plugin and every process below it, KiB.
    pub fn rss_kib(&self) -> u64 {
        tree(self.pid())
            .iter()
            .map(|p| rig::ProcStatus::of(*p).map(|s| s.vm_rss).unwrap_or(0))
            .sum()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever is still mounted below the plugin's directory (targets not unpublished,
        // identity mounts of a plugin that did not clean up): deepest first.
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = format!("{}/", self.dir.display());
        let mut below: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in below {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            rig::forget_unmount(Path::new(m));
        }
    }
}

/// A pod with one inline volume.
pub struct Pod {
    pub ident: Ident,
    pub name: String,
    pub uid: String,
    pub target: PathBuf,
}

async fn connect(socket: &Path) -> std::result::Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

/// `pid` and its descendants.
fn tree(pid: i32) -> Vec<i32> {
    let mut parent: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // The parent pid is the second field after the parenthesized command name.
            if let Some(pp) = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
            {
                parent.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}
