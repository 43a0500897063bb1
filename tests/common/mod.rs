//! Shared harness for the mount tests: an in-process Key Vault emulator and
//! a real `akvfs mount` child process on a temporary directory.
//!
//! akvfs's stderr is collected in memory (never written to a file), so tests
//! can assert on log lines without putting anything on disk.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use akvfs_emulator::{EmulatorConfig, Fault};

pub mod ambient;
pub mod csi;

/// Connection facts of a running emulator, as strings.
#[derive(Clone, Debug)]
pub struct Info {
    pub vault_url: String,
    pub authority_host: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub federated_token_file: String,
    pub identity_endpoint: String,
    pub identity_header: String,
    pub ca_file: String,
    pub admin_url: String,
}

/// A running emulator with the few controls the mount tests use.
pub struct Emulator {
    inner: akvfs_emulator::Emulator,
    info: Info,
}

impl Emulator {
    pub fn spawn(cfg: EmulatorConfig) -> Result<Emulator, akvfs_emulator::EmulatorError> {
        let inner = akvfs_emulator::Emulator::spawn(cfg)?;
        let i = inner.info();
        let info = Info {
            vault_url: i.vault_url.clone(),
            authority_host: i.authority_host.clone(),
            tenant_id: i.tenant_id.clone(),
            client_id: i.client_id.clone(),
            client_secret: i.client_secret.clone().unwrap_or_default(),
            federated_token_file: i.federated_token_file.display().to_string(),
            identity_endpoint: i.identity_endpoint.clone(),
            identity_header: i.identity_header.clone(),
            ca_file: i.ca_file.display().to_string(),
            admin_url: i.admin_url.clone(),
        };
        Ok(Emulator { inner, info })
    }

    pub fn info(&self) -> &Info {
        &self.info
    }

    pub fn inner(&self) -> &akvfs_emulator::Emulator {
        &self.inner
    }

    /// Sets a new version; returns its version id.
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        self.inner
            .set_secret(name, value)
            .expect("emulator accepts the secret")
    }

    pub fn set_secret_full(
        &self,
        name: &str,
        value: &str,
        content_type: Option<&str>,
        tags: &[(&str, &str)],
    ) -> String {
        let spec = akvfs_emulator::SecretSpec {
            value: value.to_string(),
            content_type: content_type.map(str::to_string),
            tags: Some(
                tags.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        self.inner
            .set_secret_with(name, spec)
            .expect("emulator accepts the secret")
    }

    /// `updated` of the latest version.
    pub fn secret_updated(&self, name: &str) -> Option<i64> {
        self.inner.secret(name)?.versions.last().map(|v| v.updated)
    }

    pub fn set_enabled(&self, name: &str, enabled: bool) {
        self.inner
            .set_enabled(name, None, enabled)
            .expect("emulator knows the secret")
    }

    pub fn delete_secret(&self, name: &str) {
        self.inner
            .delete_secret(name)
            .expect("emulator knows the secret")
    }

    pub fn deny_secret(&self, client_id: &str, name: &str) {
        self.inner
            .deny_secret(client_id, name, true)
            .expect("identity exists")
    }

    pub fn counts(&self) -> akvfs_emulator::Counts {
        self.inner.counts()
    }

    pub fn reset_counts(&self) {
        self.inner.reset_counts()
    }

    pub fn inject_fault(&self, fault: Fault) {
        self.inner.inject_fault(fault).expect("fault accepted");
    }

    pub fn clear_faults(&self) {
        self.inner.clear_faults()
    }

    pub fn mint_token(&self, client_id: &str, lifetime: Duration) -> String {
        self.inner.mint_token(client_id, lifetime)
    }

    pub fn rotate_federated_token(&self) {
        self.inner.rotate_federated_token().expect("rotation works");
    }
}

pub fn akvfs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_akvfs")
}

/// Starts an emulator seeded with `secrets` (name, value).
pub fn emulator_with(secrets: &[(&str, &str)]) -> Emulator {
    emulator_cfg(secrets, |_| {})
}

pub fn emulator_cfg(secrets: &[(&str, &str)], tweak: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut cfg = EmulatorConfig::default();
    tweak(&mut cfg);
    let emu = Emulator::spawn(cfg).expect("emulator starts");
    for (name, value) in secrets {
        emu.set_secret(name, value);
    }
    emu.reset_counts();
    emu
}

/// Starts an emulator seeded with owned (name, value) pairs.
pub fn emulator_with_owned(secrets: &[(String, String)]) -> Emulator {
    let seed: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    emulator_with(&seed)
}

/// Authority and tenant only: the base of every non-workload-identity mode.
pub fn base_env(emu: &Emulator) -> Vec<(String, String)> {
    vec![
        (
            "AZURE_AUTHORITY_HOST".into(),
            emu.info().authority_host.clone(),
        ),
        ("AZURE_TENANT_ID".into(), emu.info().tenant_id.clone()),
    ]
}

/// Environment for App Service-style managed identity against `emu`.
pub fn mi_env(emu: &Emulator) -> Vec<(String, String)> {
    let mut env = base_env(emu);
    env.push((
        "IDENTITY_ENDPOINT".into(),
        emu.info().identity_endpoint.clone(),
    ));
    env.push(("IDENTITY_HEADER".into(), emu.info().identity_header.clone()));
    env
}

/// Environment for a service principal with a client secret against `emu`.
pub fn sp_env(emu: &Emulator) -> Vec<(String, String)> {
    let mut env = base_env(emu);
    env.push(("AZURE_CLIENT_ID".into(), emu.info().client_id.clone()));
    env.push((
        "AZURE_CLIENT_SECRET".into(),
        emu.info().client_secret.clone(),
    ));
    env
}

/// Environment whose PATH finds a fake `az` (written into `bin`) that
/// returns a token the emulator accepts.
pub fn cli_env(emu: &Emulator, bin: &Path) -> Vec<(String, String)> {
    let token = emu.mint_token(&emu.info().client_id, Duration::from_secs(3600));
    fake_az(bin, &token, unix_now() + 3600);
    let mut env = base_env(emu);
    env.push(("PATH".into(), format!("{}:/usr/bin:/bin", bin.display())));
    env
}

/// Environment for workload identity against `emu`.
pub fn wi_env(emu: &Emulator) -> Vec<(String, String)> {
    let i = emu.info();
    vec![
        ("AZURE_AUTHORITY_HOST".into(), i.authority_host.clone()),
        ("AZURE_TENANT_ID".into(), i.tenant_id.clone()),
        ("AZURE_CLIENT_ID".into(), i.client_id.clone()),
        (
            "AZURE_FEDERATED_TOKEN_FILE".into(),
            i.federated_token_file.clone(),
        ),
    ]
}

/// The usual connection flags for the emulator.
pub fn conn_args(emu: &Emulator) -> Vec<String> {
    vec![
        "--ca-file".into(),
        emu.info().ca_file.clone(),
        "--disable-challenge-resource-verification".into(),
    ]
}

/// An akvfs command with a clean environment (no ambient Azure variables).
pub fn akvfs(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(akvfs_bin());
    ambient::without_ambient_settings(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Output of a finished command.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The last non-empty stderr line.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}

pub fn run(mut cmd: Command) -> Finished {
    let out = cmd.stdin(Stdio::null()).output().expect("akvfs runs");
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `akvfs mount --foreground`.
pub struct Mount {
    pub child: Option<Child>,
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
    log: Arc<Mutex<Vec<u8>>>,
}

/// The id (first mountinfo field) of the topmost mount at `path`.
pub fn mount_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let target = path.to_string_lossy();
    text.lines()
        .filter(|l| l.split(' ').nth(4) == Some(&*target))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .next_back()
}

pub fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let target = path.to_string_lossy();
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(&*target) && l.contains(" - fuse.akvfs "))
}

/// Waits until `cond` holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// `akvfs mount --foreground` of `emu`'s vault on `path`, with the emulator's connection
/// flags and `extra`.
pub fn mount_command(
    emu: &Emulator,
    env: &[(String, String)],
    path: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = akvfs(env);
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(path)
        .arg("--foreground")
        .args(conn_args(emu))
        .args(extra);
    cmd
}

impl Mount {
    /// Mounts `emu` with workload identity and `extra` flags on a fresh directory.
    pub fn new(emu: &Emulator, extra: &[&str]) -> Mount {
        Mount::with_env(emu, &wi_env(emu), extra)
    }

    pub fn with_env(emu: &Emulator, env: &[(String, String)], extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let mut m = Mount::start_at(emu, env, extra, &path);
        m._dir = Some(dir);
        m
    }

    /// Starts akvfs on an existing directory and waits until it serves.
    pub fn start_at(
        emu: &Emulator,
        env: &[(String, String)],
        extra: &[&str],
        path: &Path,
    ) -> Mount {
        Mount::from_command(mount_command(emu, env, path, extra), path, None)
    }

    /// Starts a prepared akvfs command (`mount --foreground` or `run`) that
    /// serves `path`, and waits until it does.
    pub fn from_command(mut cmd: Command, path: &Path, dir: Option<tempfile::TempDir>) -> Mount {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("akvfs starts");
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
        let mut m = Mount {
            child: Some(child),
            path: path.to_path_buf(),
            _dir: dir,
            log,
        };
        let ok = wait_until(Duration::from_secs(30), || {
            if let Some(Ok(Some(_))) = m.child.as_mut().map(|c| c.try_wait()) {
                return true;
            }
            m.log().contains(" serving ") && is_mounted(&m.path)
        });
        if !ok || !is_mounted(&m.path) {
            let status = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "akvfs did not mount (exit: {status:?}); stderr:\n{}",
                m.log()
            );
        }
        m
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.file(name))
    }

    /// Everything akvfs wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends `sig` and waits for the process to exit.
    pub fn stop_with(&mut self, sig: i32) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, sig) };
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop_with(libc::SIGTERM);
        if is_mounted(&self.path) || std::fs::metadata(&self.path).is_err() {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes an executable fake `az` into `dir` that prints `token`.
pub fn fake_az(dir: &Path, token: &str, expires_on: i64) -> PathBuf {
    let script = dir.join("az");
    let body = format!(
        "#!/bin/sh\n# fake Azure CLI for tests\ncase \"$*\" in\n  *get-access-token*) printf '%s' '{{\"accessToken\":\"{token}\",\"expires_on\":{expires_on},\"tokenType\":\"Bearer\"}}' ;;\n  *) echo \"unexpected: $*\" >&2; exit 1 ;;\nesac\n"
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A distinctive value, so log scans cannot match by accident.
pub fn marker(tag: &str) -> String {
    format!("{tag}-{:016x}{:016x}", fastrand_u64(), fastrand_u64())
}

fn fastrand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u64::from_le_bytes(b)
}

impl Mount {
    /// Like [`Mount::start_at`], but returns akvfs's output instead of
    /// panicking when it does not come up serving.
    pub fn try_start_at(
        emu: &Emulator,
        env: &[(String, String)],
        args: &[String],
        path: &Path,
    ) -> Result<Mount, String> {
        let mut cmd = akvfs(env);
        cmd.arg("mount")
            .arg(&emu.info().vault_url)
            .arg(path)
            .arg("--foreground")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| format!("akvfs does not start: {e}"))?;
        Mount::adopt(child, path)
    }

    /// Collects the stderr of a started `akvfs mount --foreground` at `path`
    /// and waits until it serves; returns its output if it exits instead.
    pub fn adopt(mut child: Child, path: &Path) -> Result<Mount, String> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let Some(mut stderr) = child.stderr.take() else {
            return Err("no stderr pipe".into());
        };
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
        let mut m = Mount {
            child: Some(child),
            path: path.to_path_buf(),
            _dir: None,
            log,
        };
        let mut exited = None;
        wait_until(Duration::from_secs(30), || {
            if let Some(Ok(Some(st))) = m.child.as_mut().map(|c| c.try_wait()) {
                exited = Some(st);
                return true;
            }
            m.log().contains(" serving ") && is_mounted(&m.path)
        });
        if let Some(st) = exited {
            // Let the reader thread drain the last lines.
            std::thread::sleep(Duration::from_millis(100));
            m.child = None;
            return Err(format!("akvfs exited ({st}):\n{}", m.log()));
        }
        if !is_mounted(&m.path) {
            return Err(format!("akvfs did not mount:\n{}", m.log()));
        }
        Ok(m)
    }

    /// Whether the daemon is still running (not exited, not killed).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}
