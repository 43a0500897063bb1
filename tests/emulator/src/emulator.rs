//! The running emulator: start, the ready line, the extra vaults' controls and shutdown.
//!
//! The running emulator: start (in the caller's runtime or on its own thread), the ready line,
//! the extra vaults' controls and shutdown; the synchronous controls are in `emulator_api`.

use crate::config::EmulatorConfig;
use crate::prepare::{prepare, spawn_extras, spawn_metadata};
use crate::state::Shared;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a client needs to reach the emulator: the fields of the ready line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// Vault URL, e.g. `https://127.0.0.1:8443` (no trailing slash; no port when it is 443).
    pub vault_url: String,
    /// Value for `AZURE_AUTHORITY_HOST`, e.g. `https://127.0.0.1:8443` (the configured authority
    /// host name instead of the IP when there is one; no port when it is 443).
    pub authority_host: String,
    /// Value for `AZURE_TENANT_ID`.
    pub tenant_id: String,
    /// Value for `AZURE_CLIENT_ID`.
    pub client_id: String,
    /// Client secret of the default identity, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Value for `AZURE_FEDERATED_TOKEN_FILE`.
    pub federated_token_file: PathBuf,
    /// Value for `IDENTITY_ENDPOINT`.
    pub identity_endpoint: String,
    /// Value for `IDENTITY_HEADER`.
    pub identity_header: String,
    /// PEM file of the test CA (for `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, or a custom transport).
    pub ca_file: PathBuf,
    /// Base URL of the admin API, e.g. `https://127.0.0.1:8443/_emulator`.
    pub admin_url: String,
    /// The address actually listened on.
    pub address: SocketAddr,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Base URL of the IMDS listener, e.g. `http://169.254.169.254:80`, if it is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imds_endpoint: Option<String>,
    /// Value for `IDENTITY_ENDPOINT` on an Azure Arc machine, if the Arc listener is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arc_identity_endpoint: Option<String>,
    /// Value for `IMDS_ENDPOINT` on an Azure Arc machine, if the Arc listener is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arc_imds_endpoint: Option<String>,
    /// The extra vaults, in the order configured; left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_vaults: Vec<crate::extra::ExtraVaultInfo>,
}

impl ReadyInfo {
    /// The ready line: this as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}

/// Why the emulator could not start or a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The configuration is invalid.
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A file in the state directory could not be written.
    #[error("cannot write {path}: {source}; check that the state directory is writable")]
    StateDir {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The test certificates could not be generated.
    #[error("cannot generate the test certificates: {0}")]
    Tls(String),
    /// The seed was rejected.
    #[error("invalid seed: {0}")]
    Seed(String),
    /// The background runtime could not be started.
    #[error("cannot start the emulator's runtime thread: {0}")]
    Runtime(std::io::Error),
    /// A control call was refused (bad name, unknown secret or identity ...).
    #[error("{0}")]
    Refused(String),
}

/// A running emulator. Dropping it stops it (as [`Emulator::shutdown`] does).
pub struct Emulator {
    pub(crate) shared: Arc<Shared>,
    pub(crate) info: ReadyInfo,
    ca_pem: String,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    temp_dir: Option<PathBuf>,
    /// The extra vaults' controls (served by this emulator's runtime).
    extras: Vec<Emulator>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("vault_url", &self.info.vault_url)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts the emulator on the current tokio runtime.
    pub async fn start(cfg: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let p = prepare(cfg).await?;
        let (stop, stopped) = watch::channel(false);
        spawn_metadata(p.metadata, &p.shared, &stopped);
        let extras = spawn_extras(p.extras, &p.acceptor, &p.ca_pem, &stopped);
        let task = tokio::spawn(crate::server::serve(
            p.listener,
            p.acceptor,
            p.shared.clone(),
            stopped,
        ));
        tracing::info!(vault_url = %p.info.vault_url, "emulator ready");
        Ok(Emulator {
            shared: p.shared,
            info: p.info,
            ca_pem: p.ca_pem,
            stop,
            thread: None,
            task: Some(task),
            temp_dir: p.temp_dir,
            extras,
        })
    }

    /// Starts the emulator on its own thread and runtime, for synchronous tests (`std::process`,
    /// `std::fs`). Returns once it accepts connections.
    pub fn spawn(cfg: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        // Everything, including preparation, happens on the emulator's own thread: building or
        // entering a runtime from a thread that already runs one would panic, and callers may
        // well be inside `#[tokio::test]`.
        type Started = (
            Arc<Shared>,
            ReadyInfo,
            String,
            Option<PathBuf>,
            Vec<Emulator>,
        );
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Started, EmulatorError>>();
        let thread = std::thread::Builder::new()
            .name("akvfs-emulator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("akvfs-emulator")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(EmulatorError::Runtime(e)));
                        return;
                    }
                };
                let p = match runtime.block_on(prepare(cfg)) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let extras = {
                    let _guard = runtime.enter();
                    spawn_metadata(p.metadata, &p.shared, &stopped);
                    spawn_extras(p.extras, &p.acceptor, &p.ca_pem, &stopped)
                };
                let started = (p.shared.clone(), p.info, p.ca_pem, p.temp_dir, extras);
                if ready_tx.send(Ok(started)).is_err() {
                    return;
                }
                runtime.block_on(crate::server::serve(
                    p.listener, p.acceptor, p.shared, stopped,
                ));
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(EmulatorError::Runtime)?;
        let started = ready_rx.recv().map_err(|_| {
            EmulatorError::Runtime(std::io::Error::other(
                "the emulator thread ended before it was ready",
            ))
        });
        let (shared, info, ca_pem, temp_dir, extras) = match started.and_then(|r| r) {
            Ok(s) => s,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok(Emulator {
            shared,
            info,
            ca_pem,
            stop,
            thread: Some(thread),
            task: None,
            temp_dir,
            extras,
        })
    }

    /// The controls of a vault served by another emulator's runtime: stopping them stops nothing.
    pub(crate) fn control_only(shared: Arc<Shared>, info: ReadyInfo, ca_pem: &str) -> Emulator {
        Emulator {
            shared,
            info,
            ca_pem: ca_pem.to_string(),
            stop: watch::channel(false).0,
            thread: None,
            task: None,
            temp_dir: None,
            extras: Vec::new(),
        }
    }

    /// Extra vault `i` (in the order of [`EmulatorConfig::extra_vaults`]): the same controls as
    /// this emulator's, acting on that vault. Its `info()` has its vault and admin URLs.
    pub fn extra_vault(&self, i: usize) -> Option<&Emulator> {
        self.extras.get(i)
    }

    /// The ready line's fields.
    pub fn info(&self) -> &ReadyInfo {
        &self.info
    }

    /// PEM of the test CA (the content of `ca_file`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Stops serving and waits for the server to finish; removes a temporary state directory.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(dir) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use crate::prepare::https_origin;

    #[test]
    fn origins_leave_out_the_default_port() {
        assert_eq!(
            https_origin("myvault.vault.azure.net", 443),
            "https://myvault.vault.azure.net"
        );
        assert_eq!(https_origin("127.0.0.1", 8443), "https://127.0.0.1:8443");
        assert_eq!(https_origin("[::1]", 443), "https://[::1]");
    }
}
