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

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::watch;

pub use crate::cache::Budget;
use crate::cache::{CachedSecret, SecretKey};
use crate::fs::FsCore;
use crate::secret::{SecretName, SecretSummary};
use crate::vault::{ListPacer, PageCount, VaultError};

/// Refresher settings.
#[derive(Clone, Copy, Debug)]
pub struct RefreshConfig {
    pub interval: Duration,
    pub idle_timeout: Duration,
    pub max_stale: Duration,
    /// Longest time a cached value is served without a GET proving the
    /// identity may still read it.
    pub max_unverified: Duration,
    /// Upstream calls the refresher may make in any 10 seconds.
    pub max_requests_per_10s: u32,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_stale: Duration::from_secs(24 * 3600),
            max_unverified: Duration::from_secs(600),
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Re-reads, with one GET each, the tracked secrets whose readability
    /// has not been proven for their drawn share of `max_unverified`, most
    /// overdue first, within the budget. A 403 (or 404, or disabled) revokes
    /// the secret; a new version is picked up like a rotation. The first
    /// transient failure ends the checks of this cycle.
    async fn recheck_due(&self, report: &mut CycleReport) {
        let now = Instant::now();
        let tracked = self.tracked();
        let mut due: Vec<(Duration, SecretName, Option<Arc<CachedSecret>>)> = Vec::new();
        {
            let mut checks = lock(&self.checks);
            checks.retain(|n, _| tracked.contains_key(n));
            for (name, entry) in tracked {
                let fetched = entry.as_ref().map(|e| e.fetched_at());
                // A name first seen without a cached value has no known
                // last GET: it is due at once.
                let c = checks.entry(name.clone()).or_insert_with(|| {
                    let at = fetched
                        .unwrap_or_else(|| now.checked_sub(self.cfg.max_unverified).unwrap_or(now));
                    Check::new(at, self.cfg.max_unverified)
                });
                // A GET made for any other reason (a cold fetch, a rotation)
                // proved readability too.
                if let Some(f) = fetched {
                    if f > c.at {
                        *c = Check::new(f, self.cfg.max_unverified);
                    }
                }
                let age = now.saturating_duration_since(c.at);
                if age >= c.due_after {
                    due.push((age - c.due_after, name, entry));
                }
            }
        }
        due.sort_by_key(|d| std::cmp::Reverse(d.0));
        for (_, name, entry) in due {
            if !self.budget.try_take() {
                report.deferred += 1;
                continue;
            }
            report.gets += 1;
            report.rechecks += 1;
            let answered = match entry {
                Some(entry) => self.refetch(&entry, report).await,
                None => self.recheck_evicted(&name, report).await,
            };
            if !answered {
                // The vault (or its GETs) is failing: one probe per cycle,
                // not a call per secret into an outage.
                break;
            }
        }
    }

    /// Proves an evicted name is still readable without caching its value
    /// again (which could evict a value in use).
    async fn recheck_evicted(&self, name: &SecretName, report: &mut CycleReport) -> bool {
        let bound = self.core.bound_names().remove(name).unwrap_or_default();
        match self.core.cache().vault().get(name, None).await {
            Ok(secret) => {
                self.checked(name);
                if !bound.iter().any(|p| p.version == secret.props.version) {
                    report.forget_name(name);
                }
                // `secret` drops here; its bytes are wiped.
            }
            Err(e) if e.is_revocation() => self.revoke(name, e, report),
            Err(e) => {
                report.error = Some(format!("checking {name}: {e}"));
                report.retry_after = report.retry_after.or(e.retry_after());
                return false;
            }
        }
        true
    }

    fn checked(&self, name: &SecretName) {
        lock(&self.checks).insert(
            name.clone(),
            Check::new(Instant::now(), self.cfg.max_unverified),
        );
    }

    /// Logs once per version a secret that is served although its `exp` has
    /// passed or its `nbf` has not come: Key Vault itself still returns such
    /// secrets, and akvfs serves what the vault serves.
    fn warn_validity(&self) {
        let now = unix_now();
        let entries = self.core.cache().latest_entries();
        let mut warned = lock(&self.validity_warned);
        let live: HashSet<SecretKey> = entries.iter().map(|e| e.key()).collect();
        warned.retain(|k| live.contains(k));
        for e in &entries {
            let p = &e.props;
            let expired = p.expires.is_some_and(|t| t <= now);
            let early = p.not_before.is_some_and(|t| t > now);
            if (expired || early) && warned.insert(e.key()) {
                let vault = self.core.cache().vault().url();
                if expired {
                    tracing::warn!(secret = %p.name, vault = %vault, expires = p.expires.unwrap_or_default(), "secret has expired (exp is past); Key Vault still serves it, so akvfs does too: rotate it or set a new expiry");
                } else {
                    tracing::warn!(secret = %p.name, vault = %vault, not_before = p.not_before.unwrap_or_default(), "secret is not yet valid (nbf is in the future); Key Vault still serves it, so akvfs does too");
                }
            }
        }
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

    /// GETs the latest version of a cached secret. Returns whether the vault
    /// gave an answer (a value or a revocation) rather than a transient
    /// failure.
    async fn refetch(&self, entry: &Arc<CachedSecret>, report: &mut CycleReport) -> bool {
        let name = entry.props.name.clone();
        match self.core.cache().fetch_latest(&name).await {
            Ok(new) if new.props.version != entry.props.version => {
                self.checked(&name);
                self.core.cache().drop_old_versions(&name);
                report.forget_name(&name);
                report.changed.push(name.to_string());
            }
            Ok(same) => {
                self.checked(&name);
                same.mark_verified(Instant::now());
            }
            Err(e) if e.is_revocation() => self.revoke(&name, e, report),
            Err(e) => {
                report.error = Some(format!("refreshing {name}: {e}"));
                report.retry_after = report.retry_after.or(e.retry_after());
                return false;
            }
        }
        true
    }

    /// Fails closed: forget the value, wipe it, and make the kernel ask again.
    fn revoke(&self, name: &SecretName, why: VaultError, report: &mut CycleReport) {
        tracing::warn!(secret = %name, vault = %self.core.cache().vault().url(), "{why}; removing the cached value");
        // Every version's inode, not only the latest: a descriptor opened
        // on an older version must not fetch it back by version id.
        self.core.revoke_inodes(name, &why);
        self.core.cache().remember_refusal(name, why);
        self.drop_secret(name, report);
        report.revoked.push(name.to_string());
    }

    /// Without list permission, check tracked secrets one GET each (within
    /// the budget) so revocations are still seen.
    async fn revalidate_without_listing(&self, report: &mut CycleReport) {
        for (name, entry) in self.tracked() {
            if !self.budget.try_take() {
                report.deferred += 1;
                continue;
            }
            report.gets += 1;
            let _ = match entry {
                Some(entry) => self.refetch(&entry, report).await,
                None => self.recheck_evicted(&name, report).await,
            };
        }
    }

    /// Wipes every cached version of `name` and has the kernel drop its
    /// pages and name binding.
    fn drop_secret(&self, name: &SecretName, report: &mut CycleReport) {
        self.core.cache().remove(name);
        lock(&self.checks).remove(name);
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

    /// Drops, per secret, what the vault has not confirmed for `max_stale`:
    /// no matching list entry and no successful GET for that long (the vault
    /// or the list unreachable, or GETs of a changed secret failing), or no
    /// GET proving readability for `max_unverified + max_stale`.
    fn expire_stale(&self, report: &mut CycleReport) {
        let mut stale: Vec<SecretName> = self
            .core
            .cache()
            .latest_entries()
            .into_iter()
            .filter(|e| e.verified_at().elapsed() >= self.cfg.max_stale)
            .map(|e| e.props.name.clone())
            .collect();
        let limit = self.cfg.max_unverified.saturating_add(self.cfg.max_stale);
        stale.extend(
            lock(&self.checks)
                .iter()
                .filter(|(_, c)| c.at.elapsed() >= limit)
                .map(|(n, _)| n.clone()),
        );
        stale.sort();
        stale.dedup();
        for name in stale {
            tracing::warn!(secret = %name, vault = %self.core.cache().vault().url(), "not confirmed by the vault for longer than --max-stale; removing it");
            // Descriptors opened before hold the value itself: mark every
            // version's inode so they stop reading it too (fail closed), as
            // a revocation does; a later successful lookup clears the mark.
            self.core.revoke_inodes(
                &name,
                &VaultError::Unavailable(
                    "not confirmed by the vault for longer than max_stale".into(),
                ),
            );
            self.drop_secret(&name, report);
            report.revoked.push(name.to_string());
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

mod notice_hook;
pub use notice_hook::Verified;

#[cfg(test)]
mod tests;
