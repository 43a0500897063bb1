//! A node's start-up while it follows notices: the first listing comes from
//! the notice (no LIST per node), and the vault calls of its first moments
//! are paced so that many nodes starting at once (a rolling update, a zone
//! coming back) spread themselves instead of storming the vault.
//!
//! Each starting node takes its place in the one-rotation window
//! `W = window_secs(fleetSize, 1, limitPer10s)`, capped at
//! [`MAX_START_WINDOW_SECS`]: its fetches (cold reads through the cache,
//! admitted before their fetch timeout starts) go out one every `W / 8` seconds,
//! the first at a deterministic offset (a hash of the node's name) inside
//! the first `W / 8`. The pacing stops once the node has been up `2 W` (or
//! as soon as its queue of calls is empty after `W`), so a cold read the
//! application asks for waits at most `2 W` — in practice its place in the
//! node's queue times `W / 8`. A value once cached is served from memory and
//! never waits. Without a usable notice (none within the start-up wait, for
//! another vault, stale) the node starts as a mount without notices does:
//! one LIST, no pacing.
//!
//! Pacing costs: a tenth of the fleet restarting with ten secrets each draws
//! `fleet / 10 * 8 / W` calls per second, about 24% of the limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::window::{delay_ms_for, window_secs};
use super::{Notice, NoticeSource, SourceEvent, STALE_AFTER};
use crate::secret::{Secret, SecretName, SecretSummary, VersionId};
use crate::sync::lock;
use crate::vault::{CertificateBundle, KeyBundle, ListPacer, Vault, VaultError, VersionItem};

/// The largest start-up window, whatever a notice says: it bounds how long a
/// forged `fleetSize` can hold a starting node's cold reads back.
pub const MAX_START_WINDOW_SECS: u64 = 120;
/// A node's start-up calls per window.
const CALLS_PER_WINDOW: u32 = 8;

/// How a node starts.
pub struct Start {
    /// The listing to serve first, taken from the notice; `None`: list the
    /// vault as a mount without notices does.
    pub listing: Option<Vec<SecretSummary>>,
    /// The vault client to read through: paced while starting when a notice
    /// was read, else the one given.
    pub vault: Arc<dyn Vault>,
    /// The source to follow from here; the event read at start is still in it.
    pub source: Box<dyn NoticeSource>,
    /// The start-up window in seconds, when pacing.
    pub window: Option<u64>,
}

/// Reads the first event of `source` (waiting at most `wait`) and plans the
/// node's start from it.
pub async fn begin(
    vault: Arc<dyn Vault>,
    node: &str,
    mut source: Box<dyn NoticeSource>,
    wait: Duration,
) -> Start {
    let first = tokio::time::timeout(wait, source.next()).await.ok();
    let usable = match &first {
        Some(SourceEvent::Notice(n)) if is_usable(n, vault.url()) => Some(n.clone()),
        _ => None,
    };
    let source: Box<dyn NoticeSource> = match first {
        Some(ev) => Box::new(Primed {
            first: Some(ev),
            rest: source,
        }),
        None => source,
    };
    let Some(notice) = usable else {
        tracing::info!(vault = %vault.url(), "no usable change notice at start; listing the vault");
        return Start {
            listing: None,
            vault,
            source,
            window: None,
        };
    };
    let window = window_secs(notice.fleet_size, 1, notice.limit_per_10s).min(MAX_START_WINDOW_SECS);
    tracing::info!(vault = %vault.url(), secrets = notice.secrets.len(), window_secs = window, "starting from the change notice's listing; vault calls paced for the first {window} s");
    Start {
        listing: Some(listing_of(&notice)),
        vault: Arc::new(PacedStart {
            inner: vault,
            gate: StartGate::new(node, window),
        }),
        source,
        window: Some(window),
    }
}

/// A notice a node may start from: for this vault, with a live heartbeat.
fn is_usable(n: &Notice, vault_url: &str) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    n.vault == vault_url.trim_end_matches('/')
        && now.saturating_sub(n.heartbeat) < STALE_AFTER.as_secs() as i64
}

/// The directory listing a notice describes (the watcher leaves out the
/// secrets that back certificates, as a mount's listing does).
pub fn listing_of(n: &Notice) -> Vec<SecretSummary> {
    n.secrets
        .iter()
        .map(|(name, m)| SecretSummary {
            name: name.clone(),
            enabled: m.enabled,
            content_type: m.content_type.clone(),
            updated: Some(m.updated),
            expires: m.expires,
            managed: false,
        })
        .collect()
}

/// A source that reports one event it already read, then the rest.
struct Primed {
    first: Option<SourceEvent>,
    rest: Box<dyn NoticeSource>,
}

#[async_trait]
impl NoticeSource for Primed {
    async fn next(&mut self) -> SourceEvent {
        match self.first.take() {
            Some(ev) => ev,
            None => self.rest.next().await,
        }
    }
}

/// The train a starting node's calls wait for.
pub struct StartGate {
    /// The next call's earliest time.
    next: Mutex<Instant>,
    gap: Duration,
    /// No call waits after this, whatever is queued.
    hard_end: Instant,
    /// After this, pacing ends as soon as nothing is queued.
    soft_end: Instant,
}

impl StartGate {
    /// The gate of `node` for a start-up window of `window` seconds, from now.
    pub fn new(node: &str, window: u64) -> StartGate {
        let now = Instant::now();
        let w = Duration::from_secs(window.max(1));
        let gap = w / CALLS_PER_WINDOW;
        let gap_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX).max(1);
        // The offset inside the first gap: the rotation delay of a pseudo
        // secret, so it is the same function every node already computes.
        let offset = delay_ms_for(node, "", 0, window) % gap_ms;
        StartGate {
            next: Mutex::new(now + Duration::from_millis(offset)),
            gap,
            hard_end: now + 2 * w,
            soft_end: now + w,
        }
    }

    /// When this call may go; `None`: now (start-up is over).
    fn slot(&self) -> Option<Instant> {
        let now = Instant::now();
        if now >= self.hard_end {
            return None;
        }
        let mut next = lock(&self.next);
        if now >= self.soft_end && *next <= now {
            return None;
        }
        let at = (*next).max(now);
        *next = at + self.gap;
        Some(at.min(self.hard_end))
    }

    /// Waits for this call's turn.
    pub async fn turn(&self) {
        if let Some(at) = self.slot() {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// The vault client of a starting node: each fetch through the cache waits
/// its turn at the gate ([`Vault::admit`], before the fetch timeout starts),
/// then every call goes to `inner` unchanged.
struct PacedStart {
    inner: Arc<dyn Vault>,
    gate: StartGate,
}

#[async_trait]
impl Vault for PacedStart {
    fn url(&self) -> &str {
        self.inner.url()
    }

    async fn admit(&self) {
        self.gate.turn().await;
        self.inner.admit().await;
    }

    async fn get(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<Secret, VaultError> {
        self.inner.get(name, version).await
    }

    async fn list(&self, pacer: &dyn ListPacer) -> Result<Vec<SecretSummary>, VaultError> {
        self.inner.list(pacer).await
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<VersionItem>, VaultError> {
        self.inner.versions(name).await
    }

    async fn certificate(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<CertificateBundle, VaultError> {
        self.inner.certificate(name, version).await
    }

    async fn key(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<KeyBundle, VaultError> {
        self.inner.key(name, version).await
    }

    async fn list_keys(&self) -> Result<Vec<SecretName>, VaultError> {
        self.inner.list_keys().await
    }
}
