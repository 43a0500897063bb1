//! Start-up: binding, certificates, the state directory and the state, before serving.
//!
//! Start-up: binding the listeners (the vault, the extra vaults, the metadata endpoints),
//! generating the test certificates, writing the state directory and building the state, before
//! anything is served.

use crate::config::EmulatorConfig;
use crate::emulator::{Emulator, EmulatorError, ReadyInfo};
use crate::state::{Settings, Shared};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything prepared before serving.
pub(crate) struct Prepared {
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) shared: Arc<Shared>,
    pub(crate) info: ReadyInfo,
    pub(crate) ca_pem: String,
    pub(crate) temp_dir: Option<PathBuf>,
    /// Plain HTTP listeners: IMDS and Azure Arc.
    pub(crate) metadata: Vec<(tokio::net::TcpListener, crate::imds::Flavor)>,
    /// The extra vaults' listeners, state and ready-line fields.
    pub(crate) extras: Vec<Extra>,
}

/// An extra vault, prepared.
pub(crate) type Extra = (tokio::net::TcpListener, Arc<Shared>, ReadyInfo);

/// Starts serving the extra vaults on the current runtime; returns their controls.
pub(crate) fn spawn_extras(
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
pub(crate) fn spawn_metadata(
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

pub(crate) async fn prepare(cfg: EmulatorConfig) -> Result<Prepared, EmulatorError> {
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
