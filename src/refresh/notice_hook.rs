//! What change notices (crate::notice) may ask of a refresher: which secrets
//! it tracks and at which version time, one GET of one of them now, and a
//! different listing interval while notices are live. Everything a GET
//! decides (new version, revocation, kernel invalidation) goes through the
//! refresher's own paths and budget, so a notice can never change a value
//! or revoke one by itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::{lock, CycleReport, Refresher};
use crate::secret::SecretName;

/// The listing interval while notices are live, and a wake-up for the loop
/// waiting on the old one.
#[derive(Default)]
pub(super) struct PollOverride {
    live: Mutex<Option<Duration>>,
    notify: Notify,
}

impl PollOverride {
    pub(super) async fn changed(&self) {
        self.notify.notified().await
    }
}

/// What one notice-driven GET found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The vault confirmed the cached version.
    Unchanged,
    /// A new version replaced the cached one.
    Changed,
    /// The vault refused it (deleted, disabled, forbidden): removed.
    Revoked,
    /// Nothing of it is cached or held by the kernel: no GET was made.
    NotTracked,
    /// The refresher's budget is spent; try again after this.
    NoBudget(Duration),
    /// A transient failure; `retry_after` is the vault's 429 `Retry-After`.
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
}

impl Refresher {
    /// The listing interval in force.
    pub fn poll_interval(&self) -> Duration {
        lock(&self.poll.live).unwrap_or(self.cfg.interval)
    }

    /// Lists every `live` while notices are live (never more often than the
    /// configured interval); `None` goes back to the configured interval.
    pub fn set_live_poll(&self, live: Option<Duration>) {
        let live = live.map(|d| d.max(self.cfg.interval));
        let mut cur = lock(&self.poll.live);
        if *cur != live {
            *cur = live;
            self.poll.notify.notify_one();
        }
    }

    /// The configured listing interval (used while notices are not live).
    pub fn interval(&self) -> Duration {
        self.cfg.interval
    }

    /// Every tracked secret (a cached value, or an inode the kernel holds)
    /// with the newest `updated` this node has for it.
    pub fn tracked_updated(&self) -> HashMap<SecretName, Option<i64>> {
        let mut out: HashMap<SecretName, Option<i64>> = HashMap::new();
        for (name, props) in self.core.bound_names() {
            let u = props.iter().filter_map(|p| p.updated).max();
            out.insert(name, u);
        }
        for e in self.core.cache().latest_entries() {
            let slot = out.entry(e.props.name.clone()).or_insert(None);
            *slot = (*slot).max(e.props.updated);
        }
        out
    }

    /// One GET of `name` now, within the budget, handled as a refresh cycle
    /// handles it (a new version is swapped in, a refusal revokes), then the
    /// kernel invalidations it decided on.
    pub async fn verify_now(&self, name: &SecretName) -> Verified {
        let Some(entry) = self.tracked().remove(name) else {
            return Verified::NotTracked;
        };
        if !self.budget.try_take() {
            return Verified::NoBudget(self.budget.wait_hint().max(Duration::from_millis(10)));
        }
        let mut report = CycleReport {
            gets: 1,
            ..Default::default()
        };
        let answered = match &entry {
            Some(entry) => self.refetch(entry, &mut report).await,
            None => self.recheck_evicted(name, &mut report).await,
        };
        self.flush_kernel(&report).await;
        if !answered {
            return Verified::Failed {
                error: report.error.unwrap_or_default(),
                retry_after: report.retry_after,
            };
        }
        if !report.revoked.is_empty() {
            Verified::Revoked
        } else if !report.changed.is_empty() || !report.forget_names.is_empty() {
            Verified::Changed
        } else {
            Verified::Unchanged
        }
    }

    /// The vault this refresher reads, for messages.
    pub fn vault_url(&self) -> &str {
        self.core.cache().vault().url()
    }
}
