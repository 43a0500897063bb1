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
//! When the vault is unreachable or throttling, cached values keep serving
//! for up to `max_stale`; each failed cycle costs one call, and a
//! `Retry-After` longer than the interval is honoured, so a fleet does not
//! storm a recovering vault. All calls stay within a per-mount budget.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cache::CachedSecret;
use crate::fs::FsCore;
use crate::secret::{SecretName, SecretSummary};
use crate::vault::{ListPacer, PageCount, VaultError};

/// Refresher settings.
#[derive(Clone, Copy, Debug)]
pub struct RefreshConfig {
    pub interval: Duration,
    pub idle_timeout: Duration,
    pub max_stale: Duration,
    /// Upstream calls the refresher may make in any 10 seconds.
    pub max_requests_per_10s: u32,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_stale: Duration::from_secs(24 * 3600),
            max_requests_per_10s: 50,
        }
    }
}

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

/// A sliding 10-second window of upstream calls.
pub struct Budget {
    limit: u32,
    calls: Mutex<VecDeque<Instant>>,
}

impl Budget {
    pub fn new(limit: u32) -> Budget {
        Budget {
            limit: limit.max(1),
            calls: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes one call from the budget if there is room.
    pub fn try_take(&self) -> bool {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(10))
        {
            calls.pop_front();
        }
        if calls.len() < self.limit as usize {
            calls.push_back(now);
            true
        } else {
            false
        }
    }

    /// Time until a call will be available.
    pub fn wait_hint(&self) -> Duration {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .front()
            .map(|t| Duration::from_secs(10).saturating_sub(t.elapsed()))
            .unwrap_or_default()
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
            let mut next = tokio::time::Instant::now() + self.cfg.interval.mul_f64(jitter);
            if let Some(p) = pause_until.take() {
                next = next.max(p);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let report = self.cycle().await;
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
                    Some(tokio::time::Instant::now() + wait.min(Duration::from_secs(3600)));
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
        let listing = match self.list(&mut report).await {
            Ok(l) => l,
            Err(e) => {
                report.error = Some(e.to_string());
                if let VaultError::Throttled { retry_after } = &e {
                    report.retry_after = *retry_after;
                }
                self.expire_stale(&mut report);
                if e.is_identity_loss() {
                    // Not an outage: the identity may no longer have a
                    // token, so nothing it fetched may be served.
                    for entry in self.core.cache().latest_entries() {
                        self.revoke(&entry.props.name, e.clone(), &mut report);
                    }
                    return report;
                }
                if matches!(e, VaultError::Forbidden { .. }) {
                    self.revalidate_without_listing(&mut report).await;
                }
                return report;
            }
        };
        *self.last_success.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let by_name: HashMap<&SecretName, &SecretSummary> =
            listing.iter().map(|s| (&s.name, s)).collect();

        for entry in self.core.cache().latest_entries() {
            let name = entry.props.name.clone();
            match by_name.get(&name) {
                None => self.revoke(&name, VaultError::NotFound, &mut report),
                Some(s) if !s.enabled => self.revoke(&name, VaultError::Disabled, &mut report),
                Some(s) if may_have_changed(&entry, s) => {
                    if !self.budget.try_take() {
                        report.deferred += 1;
                        continue;
                    }
                    report.gets += 1;
                    self.refetch(&entry, &mut report).await;
                }
                Some(_) => entry.mark_verified(Instant::now()),
            }
        }
        self.update_listing(listing, &mut report);
        report
    }

    /// Lists every page, each within the budget (waiting for room when the
    /// budget is spent, so a large vault is listed more slowly, not more
    /// often than allowed).
    async fn list(&self, report: &mut CycleReport) -> Result<Vec<SecretSummary>, VaultError> {
        let pacer = BudgetPacer {
            budget: &self.budget,
            pages: PageCount::default(),
        };
        // Each page gets the fetch timeout (at least 10 s) on top of any wait
        // for the budget.
        let per_page = self
            .core
            .cache()
            .config()
            .fetch_timeout
            .max(Duration::from_secs(10));
        let limit = per_page * (self.core.file_count() as u32 / 25 + 2);
        let r = tokio::time::timeout(limit, self.core.cache().vault().list(&pacer)).await;
        report.list_pages = pacer.pages.get();
        r.unwrap_or(Err(VaultError::Timeout(limit)))
    }

    async fn refetch(&self, entry: &Arc<CachedSecret>, report: &mut CycleReport) {
        let name = entry.props.name.clone();
        match self.core.cache().fetch_latest(&name).await {
            Ok(new) if new.props.version != entry.props.version => {
                self.core.cache().drop_old_versions(&name);
                report.forget_name(&name);
                report.changed.push(name.to_string());
            }
            Ok(same) => same.mark_verified(Instant::now()),
            Err(e) if e.is_revocation() => self.revoke(&name, e, report),
            Err(e) => report.error = Some(format!("refreshing {name}: {e}")),
        }
    }

    /// Fails closed: forget the value, wipe it, and make the kernel ask again.
    fn revoke(&self, name: &SecretName, why: VaultError, report: &mut CycleReport) {
        tracing::warn!(secret = %name, vault = %self.core.cache().vault().url(), "{why}; removing the cached value");
        self.core.cache().remember_refusal(name, why);
        self.drop_secret(name, report);
        report.revoked.push(name.to_string());
    }

    /// Without list permission, check cached secrets one GET each (within
    /// the budget) so revocations are still seen.
    async fn revalidate_without_listing(&self, report: &mut CycleReport) {
        for entry in self.core.cache().latest_entries() {
            if !self.budget.try_take() {
                report.deferred += 1;
                continue;
            }
            report.gets += 1;
            self.refetch(&entry, report).await;
        }
    }

    /// Wipes every cached version of `name` and has the kernel drop its
    /// pages and name binding.
    fn drop_secret(&self, name: &SecretName, report: &mut CycleReport) {
        self.core.cache().remove(name);
        report.forget_inodes.extend(self.core.inodes_of(name));
        report.forget_name(name);
    }

    /// Sends the cycle's invalidations. Writing to /dev/fuse can wait on
    /// kernel locks held by requests in flight, so it runs off the async
    /// workers.
    async fn flush_kernel(&self, report: &CycleReport) {
        if report.forget_names.is_empty() && report.forget_inodes.is_empty() {
            return;
        }
        let kernel = Arc::clone(&self.kernel);
        let (names, inodes) = (report.forget_names.clone(), report.forget_inodes.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for ino in inodes {
                kernel.forget_inode(ino);
            }
            for name in names {
                kernel.forget_name(&name);
            }
        })
        .await;
    }

    fn evict_idle(&self, report: &mut CycleReport) {
        for entry in self.core.cache().latest_entries() {
            if entry.accessed_at().elapsed() >= self.cfg.idle_timeout {
                self.drop_secret(&entry.props.name, report);
                report.evicted_idle += 1;
            }
        }
    }

    /// After `max_stale` without a successful check, cached values are
    /// removed rather than served indefinitely.
    fn expire_stale(&self, report: &mut CycleReport) {
        for entry in self.core.cache().latest_entries() {
            if entry.verified_at().elapsed() >= self.cfg.max_stale {
                let name = entry.props.name.clone();
                tracing::warn!(secret = %name, "not confirmed by the vault for longer than --max-stale; removing it");
                self.drop_secret(&name, report);
                report.revoked.push(name.to_string());
            }
        }
    }

    fn update_listing(&self, listing: Vec<SecretSummary>, report: &mut CycleReport) {
        let old: HashSet<SecretName> = self
            .core
            .current_listing()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let new: HashSet<SecretName> = listing.iter().map(|s| s.name.clone()).collect();
        for gone in old.difference(&new) {
            report.forget_name(gone);
            report.removed_names += 1;
        }
        report.added_names = new.difference(&old).count() as u32;
        self.core.set_listing(listing);
    }
}

/// Whether a list item may describe a version other than the cached one.
fn may_have_changed(cached: &CachedSecret, item: &SecretSummary) -> bool {
    if item.updated != cached.props.updated || item.content_type != cached.props.content_type {
        return true;
    }
    // `updated` has one-second resolution: a version written in the same
    // second as (or just before) our fetch can carry the same `updated`.
    item.updated.is_some_and(|u| u >= cached.fetched_unix - 1)
}

#[cfg(test)]
mod tests;
