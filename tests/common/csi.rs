//! A kubelet for the CSI tests: runs `akvfs csi` on a unix socket, lays out pod volume
//! directories as kubelet does (under a shared mount, like /var/lib/kubelet on a node), and
//! calls NodePublishVolume/NodeUnpublishVolume with realistic requests: pod information,
//! service-account tokens minted by the emulator, the pod's fsGroup.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use akvfs::csi_proto::node_client::NodeClient;
use akvfs::csi_proto::volume_capability::{access_mode::Mode, AccessMode, AccessType, MountVolume};
use akvfs::csi_proto::{NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability};
use akvfs_emulator::{Identity, ServiceAccountToken};

use super::{akvfs, wait_until, Emulator};

/// The audience the CSIDriver asks kubelet for.
pub const AUDIENCE: &str = "api://AzureADTokenExchange";

/// A pod on the simulated node.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub service_account: String,
}

impl Pod {
    pub fn new(namespace: &str, service_account: &str, name: &str) -> Pod {
        Pod {
            name: name.into(),
            namespace: namespace.into(),
            uid: format!("uid-{name}-{}", super::marker("p")),
            service_account: service_account.into(),
        }
    }

    pub fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// The token kubelet would obtain for this pod.
    pub fn token(&self, emu: &Emulator) -> String {
        emu.inner().mint_service_account_token(&self.token_spec())
    }

    pub fn token_spec(&self) -> ServiceAccountToken {
        ServiceAccountToken::for_pod(
            &self.namespace,
            &self.service_account,
            &self.name,
            &self.uid,
        )
    }
}

/// Adds an identity whose federated credential names `pod`'s service account, denied `denied`.
pub fn add_identity(emu: &Emulator, client_id: &str, subject: &str, denied: &[&str]) {
    let mut id = Identity::new(client_id);
    id.federated_subjects = vec![subject.to_string()];
    id.denied_secrets = denied.iter().map(|s| s.to_string()).collect();
    emu.inner().add_identity(id).expect("identity added");
}

/// A directory bind-mounted on itself and made shared, like /var/lib/kubelet. Unmounted on drop.
pub struct KubeletDir {
    pub path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl KubeletDir {
    pub fn new() -> KubeletDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("kubelet");
        std::fs::create_dir(&path).unwrap();
        for args in [vec!["--bind", "", ""], vec!["--make-shared", ""]] {
            let mut cmd = Command::new("mount");
            for a in args {
                if a.is_empty() {
                    cmd.arg(&path);
                } else {
                    cmd.arg(a);
                }
            }
            assert!(
                cmd.status().is_ok_and(|s| s.success()),
                "mount {cmd:?} failed"
            );
        }
        KubeletDir { path, _tmp: tmp }
    }

    /// `pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount`, with its parent created.
    pub fn target(&self, pod: &Pod, volume: &str) -> PathBuf {
        let dir = self
            .path
            .join("pods")
            .join(&pod.uid)
            .join("volumes/kubernetes.io~csi")
            .join(volume);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("mount")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path.join("plugins/csi.akvfs.io/state")
    }
}

impl Drop for KubeletDir {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// A running `akvfs csi` and a gRPC client to it.
pub struct Plugin {
    child: Option<Child>,
    pub socket: PathBuf,
    log: Arc<Mutex<Vec<u8>>>,
    rt: tokio::runtime::Runtime,
    client: NodeClient<tonic::transport::Channel>,
}

impl Plugin {
    /// Starts the plugin with its state under `kubelet` and waits until it answers.
    pub fn start(emu: &Emulator, kubelet: &KubeletDir) -> Plugin {
        Plugin::start_with(emu, kubelet, &[])
    }

    /// [`Plugin::start`] with extra flags.
    pub fn start_with(emu: &Emulator, kubelet: &KubeletDir, extra: &[String]) -> Plugin {
        let socket = kubelet.path.join("plugins/csi.akvfs.io/csi.sock");
        let env = vec![(
            "AZURE_AUTHORITY_HOST".to_string(),
            emu.info().authority_host.clone(),
        )];
        let mut cmd = akvfs(&env);
        cmd.arg("csi")
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(["--node-id", "node-1", "--state-dir"])
            .arg(kubelet.state_dir())
            .args([
                "--tenant-id",
                &emu.info().tenant_id,
                "--ca-file",
                &emu.info().ca_file,
            ])
            .arg("--disable-challenge-resource-verification")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let _ = std::fs::remove_file(&socket);
        let mut child = cmd.spawn().expect("akvfs csi starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
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
        let text =
            |l: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&l.lock().unwrap()).into_owned();
        let up = wait_until(Duration::from_secs(30), || {
            text(&log).contains("serving CSI") || matches!(child.try_wait(), Ok(Some(_)))
        });
        assert!(
            up && text(&log).contains("serving CSI"),
            "akvfs csi did not start:\n{}",
            text(&log)
        );
        let (rt, client) = connect(&socket);
        Plugin {
            child: Some(child),
            socket,
            log,
            rt,
            client,
        }
    }

    /// Everything the plugin logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// Kills the plugin (SIGKILL: no cleanup, as an OOM kill or node drain would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// NodePublishVolume as kubelet sends it for an inline ephemeral volume.
    pub fn publish(&mut self, v: &Volume) -> Result<(), tonic::Status> {
        let mut client = self.client.clone();
        self.rt
            .block_on(client.node_publish_volume(publish_request(v)))
            .map(|_| ())
    }

    /// [`Plugin::publish`] on a thread of its own, over its own connection, as kubelet sends
    /// the publishes of different pods side by side.
    pub fn publish_in_background(
        &self,
        v: &Volume,
    ) -> std::thread::JoinHandle<Result<(), tonic::Status>> {
        let socket = self.socket.clone();
        let req = publish_request(v);
        std::thread::spawn(move || {
            let (rt, mut client) = connect(&socket);
            rt.block_on(client.node_publish_volume(req)).map(|_| ())
        })
    }

    /// NodeGetInfo's node id and NodeGetCapabilities' RPC types.
    pub fn node_info(&mut self) -> (String, Vec<i32>) {
        use akvfs::csi_proto::node_service_capability::Type;
        use akvfs::csi_proto::{NodeGetCapabilitiesRequest, NodeGetInfoRequest};
        let mut client = self.client.clone();
        let info = self
            .rt
            .block_on(client.node_get_info(NodeGetInfoRequest {}))
            .expect("NodeGetInfo");
        let caps = self
            .rt
            .block_on(client.node_get_capabilities(NodeGetCapabilitiesRequest {}))
            .expect("NodeGetCapabilities");
        let types = caps
            .into_inner()
            .capabilities
            .into_iter()
            .filter_map(|c| c.r#type.map(|Type::Rpc(r)| r.r#type))
            .collect();
        (info.into_inner().node_id, types)
    }

    pub fn unpublish(&mut self, v: &Volume) -> Result<(), tonic::Status> {
        let req = NodeUnpublishVolumeRequest {
            volume_id: format!("csi-{}", v.pod.uid),
            target_path: v.target.display().to_string(),
        };
        let mut client = self.client.clone();
        self.rt
            .block_on(client.node_unpublish_volume(req))
            .map(|_| ())
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        if let Some(mut c) = self.child.take() {
            if !wait_until(Duration::from_secs(10), || {
                matches!(c.try_wait(), Ok(Some(_)))
            }) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A client of the plugin's socket, on a runtime of its own.
fn connect(
    socket: &Path,
) -> (
    tokio::runtime::Runtime,
    NodeClient<tonic::transport::Channel>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = socket.to_path_buf();
    let client = rt
        .block_on(async move {
            let channel = tonic::transport::Endpoint::try_from("http://[::1]:50051")?
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await?;
            Ok::<_, tonic::transport::Error>(NodeClient::new(channel))
        })
        .expect("connects to the plugin's socket");
    (rt, client)
}

/// The NodePublishVolume request kubelet sends for `v`.
fn publish_request(v: &Volume) -> NodePublishVolumeRequest {
    let mut ctx: HashMap<String, String> = v.attributes.clone();
    let p = &v.pod;
    for (k, val) in [
        ("csi.storage.k8s.io/pod.name", &p.name),
        ("csi.storage.k8s.io/pod.namespace", &p.namespace),
        ("csi.storage.k8s.io/pod.uid", &p.uid),
        ("csi.storage.k8s.io/serviceAccount.name", &p.service_account),
    ] {
        ctx.insert(k.into(), val.clone());
    }
    ctx.insert("csi.storage.k8s.io/ephemeral".into(), "true".into());
    let mut secrets = HashMap::new();
    if let Some(token) = &v.token {
        let json = serde_json::json!({ AUDIENCE: {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"} })
                .to_string();
        if v.token_in_secrets {
            secrets.insert("csi.storage.k8s.io/serviceAccount.tokens".into(), json);
        } else {
            ctx.insert("csi.storage.k8s.io/serviceAccount.tokens".into(), json);
        }
    }
    NodePublishVolumeRequest {
        volume_id: format!("csi-{}", p.uid),
        target_path: v.target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: String::new(),
                mount_flags: Vec::new(),
                volume_mount_group: v.group.map(|g| g.to_string()).unwrap_or_default(),
            })),
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
        }),
        readonly: v.readonly,
        secrets,
        volume_context: ctx,
        ..Default::default()
    }
}

/// One pod's volume, as a publish request will carry it.
#[derive(Clone, Debug)]
pub struct Volume {
    pub pod: Pod,
    pub target: PathBuf,
    pub attributes: HashMap<String, String>,
    pub token: Option<String>,
    pub token_in_secrets: bool,
    pub readonly: bool,
    pub group: Option<u32>,
}

impl Volume {
    /// A read-only volume of `emu`'s vault for `client_id`, with the pod's own token.
    pub fn new(emu: &Emulator, kubelet: &KubeletDir, pod: &Pod, client_id: &str) -> Volume {
        let mut attributes = HashMap::new();
        attributes.insert("keyvaultName".into(), emu.info().vault_url.clone());
        attributes.insert("clientID".into(), client_id.into());
        attributes.insert("refresh_interval".into(), "1s".into());
        Volume {
            pod: pod.clone(),
            target: kubelet.target(pod, "secrets"),
            attributes,
            token: Some(pod.token(emu)),
            token_in_secrets: false,
            readonly: true,
            group: None,
        }
    }

    pub fn read(&self, name: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.target.join(name))
    }
}

/// The topmost mount at `path`: its filesystem type and options.
pub fn mount_at(path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_string_lossy();
    text.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(&*want))
        .map(|l| {
            let opts = l.split(' ').nth(5).unwrap_or("").to_string();
            let fs = l
                .split(" - ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("")
                .to_string();
            (fs, opts)
        })
}

/// A free local port for `--metrics-listen`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The body of `GET path` on 127.0.0.1:`port`.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Whether this process may run the plugin (it mounts and binds).
pub fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the CSI plugin mounts and binds, which needs root");
        return false;
    }
    true
}

/// How many akvfs mounts (identity mounts and their binds) lie below `dir`.
pub fn akvfs_mounts_under(dir: &Path) -> usize {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.to_string_lossy().to_string();
    text.lines()
        .filter(|l| l.contains(" - fuse.akvfs "))
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)))
        .count()
}
