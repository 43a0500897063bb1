//! akvfs as a child process of a bench: an environment that names only the emulator, the
//! termination signals the bench blocks unblocked again, and the newest part of its stderr kept.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use akvfs::sim::lock;
use akvfs_emulator::ReadyInfo;

use crate::rig::Result;

#[path = "../../tests/common/ambient.rs"]
mod ambient;

/// Keeps at most this much of a daemon's stderr (the newest part).
const LOG_LIMIT: usize = 4 << 20;

/// What a daemon wrote to stderr so far.
pub type Log = Arc<Mutex<Vec<u8>>>;

/// `bin` with no Azure or logging settings of the bench's own environment, pointed at the
/// emulator's Entra ID and tenant; stdin and stdout closed, stderr piped for [`spawn`].
pub fn akvfs(bin: &Path, info: &ReadyInfo) -> Command {
    let mut cmd = Command::new(bin);
    ambient::without_ambient_settings(&mut cmd)
        .env("AZURE_AUTHORITY_HOST", &info.authority_host)
        .env("AZURE_TENANT_ID", &info.tenant_id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts `cmd` with an empty signal mask (akvfs must see the SIGTERM this process blocks) and
/// keeps its stderr.
pub fn spawn(cmd: &mut Command, bin: &Path) -> Result<(Child, Log)> {
    // SAFETY: between fork and exec only async-signal-safe calls are allowed;
    // pthread_sigmask is one.
    unsafe {
        cmd.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let log = Log::default();
    if let Some(mut stderr) = child.stderr.take() {
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut l = lock(&sink);
                l.extend_from_slice(&buf[..n]);
                if l.len() > LOG_LIMIT {
                    let cut = l.len() - LOG_LIMIT / 2;
                    l.drain(..cut);
                }
            }
        });
    }
    Ok((child, log))
}

/// The log as text.
pub fn text(log: &Log) -> String {
    String::from_utf8_lossy(&lock(log)).into_owned()
}
