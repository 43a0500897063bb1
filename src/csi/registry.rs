//! The identity mounts of this node and the pod targets bound to them.
//!
//! One FUSE mount per identity key (tenant, client id, service-account subject, vault, fsGroup,
//! options), under the state directory; each pod target is a read-only bind of it. A publish
//! joins an existing mount only after its own token was exchanged with Entra ID for that client
//! id; a republish with a new token swaps the mount's assertion in memory; the last unpublish
//! of an identity unmounts it, aborts its FUSE connection (cutting off copies in any mount
//! namespace), and drops its values (wiped on drop), its tokens and its metrics.
//!
//! Calls of one identity run one at a time (its lock keeps "is this identity mounted" and
//! "mount it" a single step); calls of different identities run side by side, so a vault that
//! answers slowly holds up only its own identity. Two calls for one target never interleave.

use std::path::Path;
use std::sync::Arc;

use azure_core::http::Transport;
use tokio::runtime::Runtime;

use super::bind;
use super::identity::{self, IdentityMount};
use super::request::{NodeDefaults, Publish};
use super::slots::{Claim, Claims, KeyedSlots};
use super::state::{digest, identity_key, StateDir, TargetRecord};
use super::token;
use super::Refusal;
use crate::metrics::Registry as MetricsRegistry;

/// The node's identity mounts and targets.
pub struct Registry {
    rt: Arc<Runtime>,
    node: NodeDefaults,
    state: StateDir,
    transport: Transport,
    metrics: Arc<MetricsRegistry>,
    mounts: KeyedSlots<IdentityMount>,
    targets: Claims,
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
            mounts: KeyedSlots::default(),
            targets: Claims::default(),
        }
    }

    pub fn node(&self) -> &NodeDefaults {
        &self.node
    }

    fn claim(&self, target: &Path) -> Result<Claim<'_>, Refusal> {
        self.targets.claim(target).ok_or_else(|| {
            Refusal::Aborted(format!(
                "another call for {} is still in progress; retry when it has finished",
                target.display()
            ))
        })
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
        let _claim = self.claim(&p.target)?;
        if let Some(rec) = self.state.find(&p.target) {
            if rec.key != key {
                return Err(Refusal::AlreadyExists(format!(
                    "{} is already published with other attributes or another identity; unpublish it first",
                    p.target.display()
                )));
            }
        }
        self.mounts.with(&key, |slot| {
            if let Some(m) = slot {
                if m.knows(&p.target, &token_digest) && bind::serves(&p.target, m.dev) {
                    return Ok(());
                }
                // A new token (a rotation, or another pod joining): this token
                // itself must be accepted by Entra ID for this identity.
                self.exchange(&p)?;
                if !bind::serves(&p.target, m.dev) {
                    bind::make_target(&p.target)?;
                    bind::bind_read_only(&self.state.mount_dir(&key), &p.target)?;
                }
                m.add_token(&p.target, token_digest, exp, p.token.clone());
                self.record(&p, &key, &subject)?;
                tracing::info!(volume = %p.volume_id, target = %p.target.display(), identity = %key, "published");
                return Ok(());
            }

            identity::check_vault_name(&self.rt, &p.vault_url)?;
            self.exchange(&p)?;
            let dir = self.state.mount_dir(&key);
            let mut mount = identity::start(&self.rt, &self.transport, &p, &dir)?;
            self.metrics.add(Arc::clone(&mount.metrics));
            let bound =
                bind::make_target(&p.target).and_then(|()| bind::bind_read_only(&dir, &p.target));
            if let Err(e) = bound {
                self.teardown(&key, mount);
                return Err(e.into());
            }
            mount.add_token(&p.target, token_digest, exp, p.token.clone());
            *slot = Some(mount);
            self.record(&p, &key, &subject)?;
            tracing::info!(
                volume = %p.volume_id,
                target = %p.target.display(),
                identity = %key,
                vault = %p.vault_url,
                "published on a new identity mount"
            );
            Ok(())
        })
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
            .map_err(Refusal::from)
    }

    fn exchange(&self, p: &Publish) -> Result<(), Refusal> {
        self.rt.block_on(token::exchange(
            &p.tenant_id,
            &p.client_id,
            &p.token,
            &self.transport,
        ))
    }

    /// NodeUnpublishVolume: idempotent; an unknown target succeeds.
    pub fn unpublish(&self, target: &Path) -> Result<(), Refusal> {
        let _claim = self.claim(target)?;
        let forget = || {
            bind::unmount_all(target);
            bind::remove_target(target);
            self.state.remove(target);
        };
        let Some(record) = self.state.find(target) else {
            forget();
            return Ok(());
        };
        let key = record.key;
        self.mounts.with(&key, |slot| {
            forget();
            let others = self.state.load().into_iter().any(|r| r.key == key);
            // Whether any target is left on the identity's mount.
            let in_use = match slot.as_mut() {
                Some(m) => m.remove_token(target) || others,
                None => others,
            };
            if in_use {
                return;
            }
            match slot.take() {
                Some(m) => self.teardown(&key, m),
                // Restarted since: only the dead mount is left to clear.
                None => {
                    let dir = self.state.mount_dir(&key);
                    bind::unmount_all(&dir);
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        });
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
        m.stop(&self.rt);
        bind::unmount_all(&dir);
        let _ = std::fs::remove_dir(&dir);
        super::heap::release_free_memory();
        tracing::info!(identity = %key, "identity mount removed; its values and tokens are dropped");
    }
}
