//! Background change detection.
//!
//! Every refresh interval (jittered by up to 10%) the refresher lists the vault,
//! 25 secrets per call, and compares each cached secret's `updated`,
//! `enabled` and `contentType` with the list. It GETs only what changed,
//! then tells the kernel to drop the name's binding so the next open sees the
//! new version (an open file keeps the version it opened). Deleted and
//! disabled secrets, and secrets the identity may no longer read, are removed
//! and wiped: revocation fails closed. Secrets nobody used for the idle
//! timeout are evicted and wiped.
//!
//! A list shows neither a lost `get` permission nor a per-secret deny, so
//! every secret the kernel may still serve (cached, or evicted from the value
//! cache but with an inode the kernel holds) is also re-read with a GET at
//! least every `max_unverified`. Each secret's next check is drawn between
//! half and all of that interval, which spreads the checks out; the most
//! overdue go first, within the budget.
//!
//! When the vault is unreachable or throttling, cached values keep serving
//! for up to `max_stale` after the vault last confirmed each of them (a
//! failing list, or a GET of a changed secret that keeps failing); each
//! failed cycle costs one call, and a `Retry-After` longer than the interval
//! is honoured (at most [`crate::vault::MAX_SERVER_DELAY`]), so a fleet does
//! not storm a recovering vault. All calls stay within a per-mount budget.
//!
//! Keys in use (`.keys/`) are re-read once per cycle (see `keys`).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::time::Instant;

pub use crate::cache::Budget;
use crate::cache::{CachedSecret, SecretKey};
pub use crate::config::RefreshConfig;
use crate::fs::FsCore;
use crate::secret::{SecretName, SecretSummary};
use crate::sync::lock;
use crate::vault::{ListPacer, PageCount, VaultError};

/// Tells the kernel to forget cached names and inode contents. Implemented
/// over fuser's `Notifier`; a recording fake in tests.
pub trait KernelCache: Send + Sync {
    /// Drops the name -> inode binding of a secret in the root directory.
    fn forget_name(&self, name: &str);
    /// Drops the cached pages and attributes of an inode.
    fn forget_inode(&self, ino: u64);
}

/// What one refresh cycle did, for logs, metrics and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub list_pages: u32,
    pub gets: u32,
    /// GETs made to prove a value is still readable (part of `gets`).
    pub rechecks: u32,
    pub changed: Vec<String>,
    pub revoked: Vec<String>,
    pub evicted_idle: u32,
    pub deferred: u32,
    pub added_names: u32,
    pub removed_names: u32,
    pub error: Option<String>,
    /// A pause the vault asked for (429 Retry-After).
    pub retry_after: Option<Duration>,
    /// Names and inodes the kernel is told to forget at the end of the cycle.
    pub forget_names: Vec<String>,
    pub forget_inodes: Vec<u64>,
}

impl CycleReport {
    fn forget_name(&mut self, name: &SecretName) {
        self.forget_names.push(name.to_string());
    }
}

struct BudgetPacer<'a> {
    budget: &'a Budget,
    pages: PageCount,
}

#[async_trait::async_trait]
impl ListPacer for BudgetPacer<'_> {
    async fn before_page(&self) {
        self.pages.before_page().await;
        while !self.budget.try_take() {
            tokio::time::sleep(self.budget.wait_hint().max(Duration::from_millis(10))).await;
        }
    }
}

/// The refresher for one mount.
pub struct Refresher {
    core: Arc<FsCore>,
    kernel: Arc<dyn KernelCache>,
    cfg: RefreshConfig,
    budget: Budget,
    last_success: Mutex<Instant>,
    /// Per tracked name: the last GET that proved it readable, and when the
    /// next proof is due.
    checks: Mutex<HashMap<SecretName, Check>>,
    /// Per key in use: when the vault last confirmed it.
    key_checks: Mutex<HashMap<SecretName, Instant>>,
    /// Expired (or not yet valid) versions already warned about.
    validity_warned: Mutex<HashSet<SecretKey>>,
    /// Listing interval while change notices are live (see `notice_hook`).
    poll: notice_hook::PollOverride,
}

#[derive(Clone, Copy, Debug)]
struct Check {
    at: Instant,
    due_after: Duration,
}

impl Check {
    fn new(at: Instant, max_unverified: Duration) -> Check {
        Check {
            at,
            due_after: max_unverified.mul_f64(0.5 + fastrand::f64() * 0.5),
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Refresher {
    pub fn new(
        core: Arc<FsCore>,
        kernel: Arc<dyn KernelCache>,
        cfg: RefreshConfig,
    ) -> Arc<Refresher> {
        Arc::new(Refresher {
            core,
            kernel,
            budget: Budget::new(cfg.max_requests_per_10s),
            cfg,
            last_success: Mutex::new(Instant::now()),
            checks: Mutex::new(HashMap::new()),
            key_checks: Mutex::new(HashMap::new()),
            validity_warned: Mutex::new(HashSet::new()),
            poll: Default::default(),
        })
    }

    /// Runs cycles until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut pause_until: Option<tokio::time::Instant> = None;
        loop {
            // Jitter only shortens the wait (90% to 100% of the interval):
            // it still spreads a fleet's calls over time, and no change
            // waits longer than one interval to be seen.
            let jitter = 0.9 + fastrand::f64() * 0.1;
            let mut next = tokio::time::Instant::now() + self.poll_interval().mul_f64(jitter);
            if let Some(p) = pause_until {
                next = next.max(p);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return,
                // The interval changed (notices went live or stopped): wait anew.
                _ = self.poll.changed() => continue,
            }
            pause_until = None;
            if *stop.borrow() {
                return;
            }
            // A bug in one cycle must not stop change detection for good
            // (that would serve revoked values forever): it counts as a
            // failed cycle and the next one runs as usual.
            let report = match AssertUnwindSafe(self.cycle()).catch_unwind().await {
                Ok(report) => report,
                Err(_) => CycleReport {
                    error: Some("internal error in the refresh cycle (please report this)".into()),
                    ..Default::default()
                },
            };
            self.core.metrics().refresh_cycle(report.error.is_none());
            if let Some(err) = &report.error {
                tracing::warn!(vault = %self.core.cache().vault().url(), "refresh failed: {err}; serving cached values");
            } else if !report.changed.is_empty() || !report.revoked.is_empty() {
                tracing::info!(
                    changed = ?report.changed,
                    revoked = ?report.revoked,
                    list_pages = report.list_pages,
                    gets = report.gets,
                    "refreshed"
                );
            } else {
                tracing::debug!(?report, "refreshed");
            }
            if let Some(wait) = report.retry_after {
                pause_until =
                    Some(tokio::time::Instant::now() + crate::vault::clamp_server_delay(wait));
            }
        }
    }

    /// One refresh cycle, then the kernel invalidations it decided on.
    pub async fn cycle(&self) -> CycleReport {
        let report = self.check().await;
        self.flush_kernel(&report).await;
        report
    }

    async fn check(&self) -> CycleReport {
        let mut report = CycleReport::default();
        self.evict_idle(&mut report);
        self.warn_validity();
        let listing = match self.list(&mut report).await {
            Ok(l) => l,
            Err(e) => {
                report.error = Some(e.to_string());
                report.retry_after = e.retry_after();
                if e.is_identity_loss() {
                    // Not an outage: the identity may no longer have a
                    // token, so nothing it fetched may be served.
                    // Every tracked name, evicted ones included: the kernel
                    // may still hold their pages.
                    for name in self.tracked().into_keys() {
                        self.revoke(&name, e.clone(), &mut report);
                    }
                    self.revoke_all_keys(&e, &mut report);
                    return report;
                }
                if matches!(e, VaultError::Forbidden { .. }) {
                    self.revalidate_without_listing(&mut report).await;
                } else if !matches!(e, VaultError::Throttled { .. }) {
                    // The list failing says nothing about GETs (a fault
                    // on one operation, a list permission lost): readability
                    // checks that are due still run, within the budget.
                    self.recheck_due(&mut report).await;
                }
                if !matches!(e, VaultError::Throttled { .. }) {
                    self.check_keys(&mut report).await;
                }
                self.expire_stale(&mut report);
                return report;
            }
        };
        *lock(&self.last_success) = Instant::now();
        let by_name: HashMap<&SecretName, &SecretSummary> =
            listing.iter().map(|s| (&s.name, s)).collect();

        let cached = self.core.cache().latest_entries();
        for entry in &cached {
            let name = entry.props.name.clone();
            match by_name.get(&name) {
                None => self.revoke(&name, VaultError::NotFound, &mut report),
                Some(s) if !s.enabled => self.revoke(&name, VaultError::Disabled, &mut report),
                Some(s) if may_have_changed(entry, s) => {
                    if !self.budget.try_take() {
                        report.deferred += 1;
                        continue;
                    }
                    report.gets += 1;
                    let _ = self.refetch(entry, &mut report).await;
                }
                Some(_) => entry.mark_verified(Instant::now()),
            }
        }
        // Values evicted from the cache whose inodes the kernel still holds
        // (an open descriptor, an mmap, cached pages): a delete or disable
        // must still drop those pages.
        let cached_names: HashSet<&SecretName> = cached.iter().map(|e| &e.props.name).collect();
        for (name, bound) in self.core.bound_names() {
            if cached_names.contains(&name) {
                continue;
            }
            match by_name.get(&name) {
                None => self.revoke(&name, VaultError::NotFound, &mut report),
                Some(s) if !s.enabled => self.revoke(&name, VaultError::Disabled, &mut report),
                Some(s) if !bound.iter().any(|p| p.updated == s.updated) => {
                    // A newer version: the next open looks the name up again.
                    report.forget_name(&name);
                }
                Some(_) => {}
            }
        }
        self.recheck_due(&mut report).await;
        self.check_keys(&mut report).await;
        self.expire_stale(&mut report);
        self.update_listing(listing, &mut report);
        report
    }

    /// Every name the kernel may be served from memory or its page cache:
    /// the cached latest versions, and names with a live inode.
    fn tracked(&self) -> HashMap<SecretName, Option<Arc<CachedSecret>>> {
        let mut tracked: HashMap<SecretName, Option<Arc<CachedSecret>>> = self
            .core
            .bound_names()
            .into_keys()
            .map(|n| (n, None))
            .collect();
        for e in self.core.cache().latest_entries() {
            tracked.insert(e.props.name.clone(), Some(e));
        }
        tracked
    }
}

/// Whether a list item may describe a version other than the cached one.
fn may_have_changed(cached: &CachedSecret, item: &SecretSummary) -> bool {
    if item.updated != cached.props.updated || item.content_type != cached.props.content_type {
        return true;
    }
    // `updated` has one-second resolution: a version written in the same
    // second as our fetch can carry the same `updated`. Decide it on the
    // vault's own clock (the `Date` of the GET's answer): a GET answered in a
    // later second than `updated` settles it, and one more GET after a
    // same-second answer does. Only without a `Date` fall back to the local
    // clock, which may disagree with the vault's by any amount.
    match (item.updated, cached.props.served_at) {
        (Some(u), Some(served)) => served <= u,
        (Some(u), None) => u >= cached.fetched_unix - 1,
        (None, _) => false,
    }
}

mod apply;
mod fetch;
mod keys;
mod notice_hook;
pub use notice_hook::Verified;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keys;
