//! The running emulator: start (in the caller's runtime or on its own thread), the ready line,
//! shutdown, and synchronous controls over the same state the admin API changes.

use crate::config::EmulatorConfig;
use crate::state::{Settings, Shared};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

/// Everything prepared before serving.
struct Prepared {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    info: ReadyInfo,
    ca_pem: String,
    temp_dir: Option<PathBuf>,
    /// Plain HTTP listeners: IMDS and Azure Arc.
    metadata: Vec<(tokio::net::TcpListener, crate::imds::Flavor)>,
    /// The extra vaults' listeners, state and ready-line fields.
    extras: Vec<Extra>,
}

/// An extra vault, prepared.
type Extra = (tokio::net::TcpListener, Arc<Shared>, ReadyInfo);

/// Starts serving the extra vaults on the current runtime; returns their controls.
fn spawn_extras(
    extras: Vec<Extra>,
    acceptor: &tokio_rustls::TlsAcceptor,
    ca_pem: &str,
    stopped: &watch::Receiver<bool>,
) -> Vec<Emulator> {
    extras
        .into_iter()
        .map(|(listener, shared, info)| {
            tokio::spawn(crate::server::serve(
                listener,
                acceptor.clone(),
                shared.clone(),
                stopped.clone(),
            ));
            Emulator::control_only(shared, info, ca_pem)
        })
        .collect()
}

/// Binds a plain HTTP listener; returns it with its base URL.
async fn bind_http(addr: SocketAddr) -> Result<(tokio::net::TcpListener, String), EmulatorError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| EmulatorError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind { addr, source })?;
    let base = format!("http://{}:{}", url_host(local.ip()), local.port());
    Ok((listener, base))
}

/// Starts serving the plain HTTP listeners on the current runtime.
fn spawn_metadata(
    listeners: Vec<(tokio::net::TcpListener, crate::imds::Flavor)>,
    shared: &Arc<Shared>,
    stopped: &watch::Receiver<bool>,
) {
    for (listener, flavor) in listeners {
        tokio::spawn(crate::imds::serve(
            listener,
            shared.clone(),
            flavor,
            stopped.clone(),
        ));
    }
}

pub(crate) fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `https://{host}`, with `:{port}` unless it is HTTPS's default port: Key Vault and Entra ID never
/// write a default port in ids, links or challenges, and the SDKs compare such URLs as strings.
pub(crate) fn https_origin(host: &str, port: u16) -> String {
    if port == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{port}")
    }
}

async fn prepare(cfg: EmulatorConfig) -> Result<Prepared, EmulatorError> {
    cfg.validate().map_err(EmulatorError::Config)?;
    let (state_dir, temp_dir) = match &cfg.state_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "akvfs-emulator-{}-{}",
                std::process::id(),
                crate::util::random_hex(6)
            ));
            (dir.clone(), Some(dir))
        }
    };
    std::fs::create_dir_all(&state_dir).map_err(|source| EmulatorError::StateDir {
        path: state_dir.clone(),
        source,
    })?;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let mut extra_listeners = Vec::new();
    for addr in &cfg.extra_vaults {
        extra_listeners.push(crate::extra::bind(*addr).await?);
    }
    let ip_host = url_host(address.ip());
    let port = address.port();
    let base = https_origin(&ip_host, port);
    let vault_url = https_origin(cfg.vault_host.as_deref().unwrap_or(&ip_host), port);
    let authority_host = https_origin(cfg.authority_host.as_deref().unwrap_or(&ip_host), port);

    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let listen_ip = ip_host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let extra_ips = extra_listeners.iter().map(|(_, e)| {
        let host = url_host(e.address.ip());
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    for name in std::iter::once(listen_ip)
        .chain(extra_ips)
        .chain(cfg.hostnames.iter().cloned())
        .chain(cfg.vault_host.iter().cloned())
        .chain(cfg.authority_host.iter().cloned())
    {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    let pki = crate::tls::generate(&names).map_err(EmulatorError::Tls)?;
    let ca_file = state_dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).map_err(|source| EmulatorError::StateDir {
        path: ca_file.clone(),
        source,
    })?;
    let federated_token_file = state_dir.join("federated-token");
    let identity_header = cfg
        .identity_header
        .clone()
        .unwrap_or_else(|| crate::util::random_hex(16));
    let mut metadata = Vec::new();
    let mut imds_endpoint = None;
    if let Some(addr) = cfg.imds_listen {
        let (listener, base) = bind_http(addr).await?;
        metadata.push((listener, crate::imds::Flavor::Imds));
        imds_endpoint = Some(base);
    }
    let mut arc_imds_endpoint = None;
    if let Some(addr) = cfg.arc_listen {
        let (listener, base) = bind_http(addr).await?;
        let dir = cfg
            .arc_key_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("arc-tokens"));
        let keys = Arc::new(crate::imds::ArcKeys::new(dir));
        metadata.push((listener, crate::imds::Flavor::Arc(keys)));
        arc_imds_endpoint = Some(base);
    }

    let info = ReadyInfo {
        vault_url: vault_url.clone(),
        authority_host: authority_host.clone(),
        tenant_id: cfg.tenant_id.clone(),
        client_id: cfg.client_id.clone(),
        client_secret: cfg.client_secret.clone(),
        federated_token_file: federated_token_file.clone(),
        identity_endpoint: format!("{base}{}", crate::msi::PATH),
        identity_header: identity_header.clone(),
        ca_file,
        admin_url: format!("{base}/_emulator"),
        address,
        state_dir,
        arc_identity_endpoint: arc_imds_endpoint
            .as_ref()
            .map(|b| format!("{b}{}", crate::imds::PATH)),
        imds_endpoint,
        arc_imds_endpoint,
        extra_vaults: extra_listeners.iter().map(|(_, e)| e.clone()).collect(),
    };
    let settings = Settings {
        tenant_id: cfg.tenant_id.clone(),
        vault_url,
        authority_host,
        default_client_id: cfg.client_id.clone(),
        federated_issuer: cfg.federated_issuer.clone(),
        federated_token_lifetime: cfg.federated_token_lifetime,
        federated_token_file: federated_token_file.clone(),
        identity_header,
        info: info.clone(),
    };
    let shared = Arc::new(Shared::new(
        settings,
        vec![cfg.default_identity()],
        cfg.token_lifetime,
        cfg.requests_per_10s,
    ));
    if let Some(seed) = &cfg.seed {
        shared.apply_seed(seed).map_err(EmulatorError::Seed)?;
    }
    shared
        .rotate_federated_token()
        .map_err(|source| EmulatorError::StateDir {
            path: federated_token_file,
            source,
        })?;
    let extras = extra_listeners
        .into_iter()
        .map(|(listener, e)| {
            let extra =
                crate::extra::shared_for(&shared, &e, cfg.token_lifetime, cfg.requests_per_10s);
            let info = extra.ready_info();
            (listener, extra, info)
        })
        .collect();
    Ok(Prepared {
        listener,
        acceptor: tokio_rustls::TlsAcceptor::from(pki.server_config),
        shared,
        info,
        ca_pem: pki.ca_pem,
        temp_dir,
        metadata,
        extras,
    })
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
    fn control_only(shared: Arc<Shared>, info: ReadyInfo, ca_pem: &str) -> Emulator {
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
    use super::*;

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
