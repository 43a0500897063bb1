//! The leader's loop for one vault: list, compare with the notice in the API
//! server, write it only when the metadata or the fleet size changed (or for
//! the heartbeat).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use tokio::sync::{watch, Mutex};

use super::args::FleetSource;
use super::lease::is_leading;
use super::notice::{self, Content};
use crate::notice::window::window_secs;
use crate::sync::lock;
use crate::vault::{ListPacer, Vault};

/// Secrets whose metadata differs between two notices, plus names gone: the
/// `changed` of the window formula, as a node counts it.
pub fn changed_count<M: PartialEq>(
    old: &std::collections::BTreeMap<String, M>,
    new: &std::collections::BTreeMap<String, M>,
) -> u32 {
    let differ = new.iter().filter(|(k, m)| old.get(*k) != Some(*m)).count();
    let gone = old.keys().filter(|k| !new.contains_key(*k)).count();
    u32::try_from(differ + gone).unwrap_or(u32::MAX)
}

/// Spaces list pages so that one vault sees at most `per_10s` of them in any
/// 10 seconds from this watcher.
pub struct Pacer {
    gap: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(per_10s: u32) -> Pacer {
        Pacer {
            gap: Duration::from_secs(10) / per_10s.max(1),
            next: Mutex::new(Instant::now()),
        }
    }
}

#[async_trait]
impl ListPacer for Pacer {
    async fn before_page(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep(*next - now).await;
        }
        *next = Instant::now().max(*next) + self.gap;
    }
}

/// Reads the fleet size from its source.
pub struct Fleet {
    pub source: FleetSource,
    pub client: kube::Client,
    pub namespace: String,
    last: std::sync::Mutex<Option<u64>>,
}

impl Fleet {
    pub fn new(source: FleetSource, client: kube::Client, namespace: String) -> Fleet {
        Fleet {
            source,
            client,
            namespace,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The fleet size now; on an API error the last one read, if any.
    pub async fn size(&self) -> Option<u64> {
        let (ns, name) = match &self.source {
            FleetSource::Fixed(n) => return Some(*n),
            FleetSource::DaemonSet { namespace, name } => (
                namespace.clone().unwrap_or_else(|| self.namespace.clone()),
                name,
            ),
        };
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
        let read = api.get(name).await;
        let mut last = lock(&self.last);
        match read {
            Ok(ds) => {
                let n = ds.status.map(|s| s.desired_number_scheduled).unwrap_or(0);
                *last = Some(u64::try_from(n).unwrap_or(0).max(1));
            }
            Err(e) => {
                tracing::warn!(daemonset = %name, namespace = %ns, error = %e, "could not read the node DaemonSet's status; check that it exists and that the watcher's Role allows get on it")
            }
        }
        *last
    }
}

/// One vault's publisher.
pub struct Publisher {
    pub vault: Arc<dyn Vault>,
    pub configmaps: Api<ConfigMap>,
    pub name: String,
    pub fleet: Arc<Fleet>,
    pub interval: Duration,
    pub heartbeat: Duration,
    pub limit_per_10s: u32,
    pub pacer: Pacer,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Publisher {
    /// Runs for ever: idle while a follower; while leading, one cycle every
    /// interval. Each new leadership starts from what the API server holds,
    /// so a new leader publishes the full current state.
    pub async fn run(self, mut leading: watch::Receiver<Option<Instant>>) {
        loop {
            while !is_leading(&leading) {
                if leading.changed().await.is_err() {
                    return;
                }
            }
            // None: not read yet this leadership; Some(None): absent.
            let mut known: Option<Option<ConfigMap>> = None;
            while is_leading(&leading) {
                self.cycle(&mut known, &leading).await;
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    r = leading.changed() => if r.is_err() { return },
                }
            }
        }
    }

    async fn cycle(
        &self,
        known: &mut Option<Option<ConfigMap>>,
        leading: &watch::Receiver<Option<Instant>>,
    ) {
        let url = self.vault.url().to_string();
        let listing = match self.vault.list(&self.pacer).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(vault = %url, error = %e, "could not list the vault; the notice is left as it is (nodes fall back to polling once its heartbeat is stale)");
                return;
            }
        };
        let listed_at = unix_now();
        let Some(fleet_size) = self.fleet.size().await else {
            return;
        };
        let content = Content {
            secrets: notice::secrets_from(&listing),
            fleet_size,
        };
        if known.is_none() {
            match self.configmaps.get_opt(&self.name).await {
                Ok(cm) => *known = Some(cm),
                Err(e) => {
                    tracing::warn!(vault = %url, configmap = %self.name, error = %e, "could not read the notice; check the API server and the watcher's Role on configmaps");
                    return;
                }
            }
        }
        let current = known.as_ref().and_then(|c| c.as_ref());
        let now = unix_now();
        let parsed = current.and_then(notice::parse);
        let (same, beat_due) = match &parsed {
            Some((old, hb)) => (
                *old == content,
                now.saturating_sub(*hb) >= self.heartbeat.as_secs() as i64,
            ),
            None => (false, true),
        };
        // The window every node will compute for this write (the same
        // formula, crate::notice::window), for the log.
        let window = parsed.as_ref().map(|(old, _)| {
            window_secs(
                u32::try_from(fleet_size).unwrap_or(u32::MAX),
                changed_count(&old.secrets, &content.secrets),
                self.limit_per_10s,
            )
        });
        if same && !beat_due {
            return;
        }
        // Leadership may have ended while the vault answered.
        if !is_leading(leading) {
            return;
        }
        let mut cm = notice::build(
            &self.name,
            &url,
            self.limit_per_10s,
            &content,
            listed_at,
            now,
        );
        let pp = PostParams::default();
        let written = match current {
            Some(old) => {
                cm.metadata.resource_version = old.metadata.resource_version.clone();
                self.configmaps.replace(&self.name, &pp, &cm).await
            }
            None => self.configmaps.create(&pp, &cm).await,
        };
        match written {
            Ok(cm) => {
                *known = Some(Some(cm));
                if same {
                    tracing::debug!(vault = %url, configmap = %self.name, "heartbeat");
                } else {
                    tracing::info!(vault = %url, configmap = %self.name, secrets = content.secrets.len(), fleet_size, window_secs = ?window, "published a notice");
                }
            }
            Err(kube::Error::Api(s))
                if s.is_conflict() || s.is_already_exists() || s.is_not_found() =>
            {
                // Someone else wrote or deleted it: read it again next cycle.
                tracing::info!(vault = %url, configmap = %self.name, reason = %s.reason, "the notice changed underneath; re-reading it");
                *known = None;
            }
            Err(e) => {
                tracing::warn!(vault = %url, configmap = %self.name, error = %e, "could not write the notice; check the API server and the watcher's Role on configmaps");
                *known = None;
            }
        }
    }
}
