//! The identity mounts of this node and the pod targets bound to them.
//!
//! One FUSE mount per identity key (tenant, client id, service-account subject, vault, fsGroup,
//! options), under the state directory; each pod target is a read-only bind of it. A publish
//! joins an existing mount only after its own token was exchanged with Entra ID for that client
//! id; a republish with a new token swaps the mount's assertion in memory; the last unpublish
//! of an identity unmounts it, aborts its FUSE connection (cutting off copies in any mount
//! namespace), and drops its values (wiped on drop), its tokens and its metrics.
//!
//! Publishes and unpublishes run one at a time: they are rare next to reads, and one lock
//! keeps "is this identity mounted" and "mount it" a single step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::http::Transport;
use tokio::runtime::Runtime;
use zeroize::Zeroizing;

use super::bind;
use super::request::{NodeDefaults, Publish};
use super::state::{digest, identity_key, StateDir, TargetRecord};
use super::token::{self, Assertion, PodCredential};
use super::Refusal;
use crate::auth::{CountingCredential, Identity};
use crate::config::AuthMode;
use crate::metrics::{MountMetrics, Registry as MetricsRegistry};
use crate::service::{Connection, Error as ServiceError, MountHandle, PreparedMount};
use crate::vault::azure::AzureVault;
use crate::vault::metered::MeteredVault;
use crate::vault::VaultError;

/// One identity's mount.
struct IdentityMount {
    handle: MountHandle,
    dev: u64,
    assertion: Assertion,
    /// Each target's token digest and expiry; the assertion is the newest token.
    tokens: HashMap<PathBuf, (String, i64, Zeroizing<String>)>,
}

impl IdentityMount {
    /// Presents the token that expires last.
    fn refresh_assertion(&self) {
        if let Some((_, _, t)) = self.tokens.values().max_by_key(|(_, exp, _)| *exp) {
            self.assertion.set(t);
        }
    }
}

#[derive(Default)]
struct Inner {
    mounts: HashMap<String, IdentityMount>,
}

/// The node's identity mounts and targets.
pub struct Registry {
    rt: Arc<Runtime>,
    node: NodeDefaults,
    state: StateDir,
    transport: Transport,
    metrics: Arc<MetricsRegistry>,
    inner: Mutex<Inner>,
}

impl Registry {
    pub fn new(
        rt: Arc<Runtime>,
        node: NodeDefaults,
        state: StateDir,
        transport: Transport,
        metrics: Arc<MetricsRegistry>,
    ) -> Registry {
        Registry {
            rt,
            node,
            state,
            transport,
            metrics,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn node(&self) -> &NodeDefaults {
        &self.node
    }

    /// NodePublishVolume, after the request was parsed.
    pub fn publish(&self, p: Publish) -> Result<(), Refusal> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let exp = token::check(&p.token, &p.pod, now)?;
        let subject = p.pod.subject();
        let key = identity_key(
            &p.tenant_id,
            &p.client_id,
            &subject,
            &p.vault_url,
            p.group,
            &p.options,
        );
        let token_digest = digest(p.token.as_bytes());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());

        if let Some(rec) = self.state.find(&p.target) {
            if rec.key != key {
                return Err(Refusal::AlreadyExists(format!(
                    "{} is already published with other attributes or another identity; unpublish it first",
                    p.target.display()
                )));
            }
        }
        if let Some(m) = inner.mounts.get_mut(&key) {
            let known = m
                .tokens
                .get(&p.target)
                .is_some_and(|(d, _, _)| *d == token_digest);
            if known && bind::serves(&p.target, m.dev) {
                return Ok(());
            }
            // A new token (a rotation, or another pod joining): this token
            // itself must be accepted by Entra ID for this identity.
            self.exchange(&p)?;
            if !bind::serves(&p.target, m.dev) {
                bind::make_target(&p.target).map_err(Refusal::Internal)?;
                bind::bind_read_only(&self.state.mount_dir(&key), &p.target)
                    .map_err(Refusal::Internal)?;
            }
            m.tokens
                .insert(p.target.clone(), (token_digest, exp, p.token.clone()));
            m.refresh_assertion();
            self.record(&p, &key, &subject)?;
            tracing::info!(volume = %p.volume_id, target = %p.target.display(), identity = %key, "published");
            return Ok(());
        }

        self.check_vault_name(&p.vault_url)?;
        self.exchange(&p)?;
        let mount = self.start_mount(&p, &key)?;
        let dir = self.state.mount_dir(&key);
        let bound =
            bind::make_target(&p.target).and_then(|()| bind::bind_read_only(&dir, &p.target));
        if let Err(e) = bound {
            self.teardown(&key, mount);
            return Err(Refusal::Internal(e));
        }
        let mut mount = mount;
        mount
            .tokens
            .insert(p.target.clone(), (token_digest, exp, p.token.clone()));
        inner.mounts.insert(key.clone(), mount);
        self.record(&p, &key, &subject)?;
        tracing::info!(
            volume = %p.volume_id,
            target = %p.target.display(),
            identity = %key,
            vault = %p.vault_url,
            "published on a new identity mount"
        );
        Ok(())
    }

    fn record(&self, p: &Publish, key: &str, subject: &str) -> Result<(), Refusal> {
        self.state
            .save(&TargetRecord {
                target: p.target.clone(),
                volume_id: p.volume_id.clone(),
                key: key.to_string(),
                vault_url: p.vault_url.clone(),
                tenant_id: p.tenant_id.clone(),
                client_id: p.client_id.clone(),
                subject: subject.to_string(),
                group: p.group,
                options: p.options.clone(),
            })
            .map_err(Refusal::Internal)
    }

    fn exchange(&self, p: &Publish) -> Result<(), Refusal> {
        self.rt.block_on(token::exchange(
            &p.tenant_id,
            &p.client_id,
            &p.token,
            &self.transport,
        ))
    }

    /// A vault name that does not resolve is a vault that does not exist
    /// (Key Vault gives every vault its own DNS name); an outage of DNS
    /// itself is left to the listing, which reports it as unreachable.
    fn check_vault_name(&self, vault_url: &str) -> Result<(), Refusal> {
        let Some(host) = vault_url.strip_prefix("https://") else {
            return Ok(());
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            host.to_string()
        } else {
            format!("{host}:443")
        };
        let lookup = self.rt.block_on(async {
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

    /// Connects with the pod's token, lists the vault and mounts it on the identity's directory.
    fn start_mount(&self, p: &Publish, key: &str) -> Result<IdentityMount, Refusal> {
        let dir = self.state.mount_dir(key);
        if bind::device(&dir).is_none() || crate::daemon::mounts::is_dead(&dir) {
            // Left by a plugin that was killed: nothing serves it any more.
            bind::unmount_all(&dir);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| Refusal::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let mut cfg = p.config.clone();
        cfg.mountpoint = dir.clone();
        let metrics = MountMetrics::new(
            &dir.display().to_string(),
            &cfg.vault.url,
            cfg.refresh.interval * 2,
            false,
        );
        let assertion = Assertion::new(&p.token);
        let credential = PodCredential::new(
            &p.tenant_id,
            &p.client_id,
            assertion.clone(),
            &self.transport,
        )
        .map_err(Refusal::Internal)?;
        let credential = CountingCredential::wrap(Arc::new(credential), Arc::clone(&metrics));
        let client = AzureVault::new(
            &cfg.vault.url,
            Arc::clone(&credential),
            &self.transport,
            cfg.vault.verify_challenge_resource,
        )
        .map_err(|e| Refusal::InvalidArgument(format!("vault {}: {e}", cfg.vault.url)))?;
        let conn = Connection {
            identity: Identity {
                mode: AuthMode::WorkloadIdentity,
                credential,
                reason: format!("the service-account token of {}", p.pod.subject()),
            },
            vault: Arc::new(MeteredVault::new(Arc::new(client), Arc::clone(&metrics))),
        };
        let vault = cfg.vault.url.clone();
        let handle = PreparedMount::with_connection(&self.rt, cfg, Arc::clone(&metrics), conn)
            .and_then(|m| m.mount(&self.rt, dir.clone()))
            .map_err(|e| refusal_of(&vault, e))?;
        self.metrics.add(Arc::clone(&metrics));
        let dev = bind::device(&dir).unwrap_or(0);
        Ok(IdentityMount {
            handle,
            dev,
            assertion,
            tokens: HashMap::new(),
        })
    }

    /// NodeUnpublishVolume: idempotent; an unknown target succeeds.
    pub fn unpublish(&self, target: &Path) -> Result<(), Refusal> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let record = self.state.find(target);
        bind::unmount_all(target);
        bind::remove_target(target);
        self.state.remove(target);
        let Some(record) = record else {
            return Ok(());
        };
        let key = record.key;
        let others = self.state.load().into_iter().any(|r| r.key == key);
        match inner.mounts.get_mut(&key) {
            Some(m) => {
                m.tokens.remove(target);
                if others || !m.tokens.is_empty() {
                    m.refresh_assertion();
                } else if let Some(m) = inner.mounts.remove(&key) {
                    self.teardown(&key, m);
                }
            }
            // Restarted since: only the dead mount is left to clear.
            None if !others => {
                let dir = self.state.mount_dir(&key);
                bind::unmount_all(&dir);
                let _ = std::fs::remove_dir(&dir);
            }
            None => {}
        }
        tracing::info!(target = %target.display(), identity = %key, "unpublished");
        Ok(())
    }

    /// Ends an identity's mount: its FUSE connection is aborted first, so
    /// no copy in any mount namespace keeps serving, then the session stops
    /// and the cache (and its values, wiped on drop) and tokens are dropped.
    fn teardown(&self, key: &str, m: IdentityMount) {
        let dir = self.state.mount_dir(key);
        bind::abort_connection(m.dev);
        self.metrics.remove(&dir.display().to_string());
        m.handle.stop(&self.rt);
        bind::unmount_all(&dir);
        let _ = std::fs::remove_dir(&dir);
        tracing::info!(identity = %key, "identity mount removed; its values and tokens are dropped");
    }

    /// How many identity mounts are serving.
    pub fn identities(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mounts
            .len()
    }
}

/// A mount that could not start, as the gRPC answer kubelet shows in the pod's events.
fn refusal_of(vault: &str, e: ServiceError) -> Refusal {
    let source = match &e {
        ServiceError::List { source, .. } | ServiceError::Read { source, .. } => Some(source),
        _ => None,
    };
    match source {
        Some(VaultError::Forbidden { .. }) | Some(VaultError::IdentityRejected(_)) => {
            Refusal::PermissionDenied(e.to_string())
        }
        Some(VaultError::NotFound) => Refusal::NotFound(format!("vault {vault}: {e}")),
        Some(s) if s.is_transient() => Refusal::Unavailable(e.to_string()),
        Some(_) => Refusal::Unavailable(e.to_string()),
        None => Refusal::Internal(e.to_string()),
    }
}
