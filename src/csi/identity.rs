//! One identity's mount: started with the pod's token on the node's shared runtime, and the
//! tokens of the targets bound to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::Transport;
use tokio::runtime::Runtime;
use zeroize::Zeroizing;

use super::bind;
use super::request::Publish;
use super::token::{Assertion, PodCredential};
use super::{CsiError, Refusal};
use crate::auth::Identity;
use crate::config::AuthMode;
use crate::metrics::MountMetrics;
use crate::service::connect::Connection;
use crate::service::credential::CountingCredential;
use crate::service::mount::{MountHandle, PreparedMount};
use crate::vault::azure::AzureVault;
use crate::vault::metered::MeteredVault;

/// One identity's mount.
pub struct IdentityMount {
    pub handle: MountHandle,
    pub metrics: Arc<MountMetrics>,
    pub dev: u64,
    assertion: Assertion,
    /// Each target's token digest, expiry and token; the assertion is the one that expires last.
    tokens: HashMap<PathBuf, (String, i64, Zeroizing<String>)>,
}

impl IdentityMount {
    /// Whether `target` was published with the token of digest `digest`.
    pub fn knows(&self, target: &Path, digest: &str) -> bool {
        self.tokens.get(target).is_some_and(|(d, _, _)| d == digest)
    }

    /// Records `target`'s token and presents the one that expires last.
    pub fn add_token(&mut self, target: &Path, digest: String, exp: i64, token: Zeroizing<String>) {
        self.tokens
            .insert(target.to_path_buf(), (digest, exp, token));
        self.refresh_assertion();
    }

    /// Forgets `target`'s token; false when no target's token is left.
    pub fn remove_token(&mut self, target: &Path) -> bool {
        self.tokens.remove(target);
        self.refresh_assertion();
        !self.tokens.is_empty()
    }

    /// Stops the session; the cache (its values wiped on drop) and the tokens go with it.
    pub fn stop(self, rt: &Runtime) {
        self.handle.stop(rt);
    }

    fn refresh_assertion(&self) {
        if let Some((_, _, t)) = self.tokens.values().max_by_key(|(_, exp, _)| *exp) {
            self.assertion.set(t);
        }
    }
}

/// Connects with the pod's token, lists the vault and mounts it on `dir`.
pub fn start(
    rt: &Runtime,
    transport: &Transport,
    p: &Publish,
    dir: &Path,
) -> Result<IdentityMount, Refusal> {
    if bind::device(dir).is_none() || crate::daemon::mounts::is_dead(dir) {
        // Left by a plugin that was killed: nothing serves it any more.
        bind::unmount_all(dir);
    }
    std::fs::create_dir_all(dir).map_err(|source| CsiError::MountDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut cfg = p.config.clone();
    cfg.mountpoint = dir.to_path_buf();
    let metrics = MountMetrics::new(
        &dir.display().to_string(),
        &cfg.vault.url,
        cfg.refresh.interval * 2,
        false,
    );
    let assertion = Assertion::new(&p.token);
    let credential = PodCredential::new(&p.tenant_id, &p.client_id, assertion.clone(), transport)?;
    let credential = CountingCredential::wrap(Arc::new(credential), Arc::clone(&metrics));
    let client = AzureVault::new(
        &cfg.vault.url,
        Arc::clone(&credential),
        transport,
        cfg.vault.verify_challenge_resource,
    )
    .map_err(|source| Refusal::Client {
        vault: cfg.vault.url.clone(),
        source,
    })?;
    let conn = Connection {
        identity: Identity {
            mode: AuthMode::WorkloadIdentity,
            credential,
            reason: format!("the service-account token of {}", p.pod.subject()),
        },
        vault: Arc::new(MeteredVault::new(
            Arc::new(client),
            metrics.clone() as Arc<dyn crate::vault::metered::CallRecorder>,
        )),
        transport: transport.clone(),
    };
    let vault = cfg.vault.url.clone();
    let handle = PreparedMount::with_connection(rt, cfg, Arc::clone(&metrics), conn)
        .and_then(|m| m.mount(rt, dir.to_path_buf()))
        .map_err(|e| Refusal::Mount {
            vault,
            source: Box::new(e),
        })?;
    let dev = bind::device(dir).unwrap_or(0);
    Ok(IdentityMount {
        handle,
        metrics,
        dev,
        assertion,
        tokens: HashMap::new(),
    })
}

/// A vault name that does not resolve is a vault that does not exist
/// (Key Vault gives every vault its own DNS name); an outage of DNS
/// itself is left to the listing, which reports it as unreachable.
pub fn check_vault_name(rt: &Runtime, vault_url: &str) -> Result<(), Refusal> {
    let Some(host) = vault_url.strip_prefix("https://") else {
        return Ok(());
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        host.to_string()
    } else {
        format!("{host}:443")
    };
    let lookup = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host(host)).await
    });
    match lookup {
        Ok(Err(e)) if e.to_string().to_lowercase().contains("not known")
            || e.to_string().to_lowercase().contains("no address") =>
        {
            Err(Refusal::NotFound(format!(
                "vault {vault_url} does not exist: its name does not resolve; check the volume attribute keyvaultName"
            )))
        }
        _ => Ok(()),
    }
}
