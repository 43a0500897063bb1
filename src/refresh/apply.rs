//! Applying what a refresh cycle found: revocation (wipe and kernel
//! invalidation), dropping deleted secrets, idle eviction, expiry of values
//! past their stale bound, and the new listing.

use super::*;

impl Refresher {
    /// Fails closed: forget the value, wipe it, and make the kernel ask again.
    pub(super) fn revoke(&self, name: &SecretName, why: VaultError, report: &mut CycleReport) {
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
    pub(super) async fn revalidate_without_listing(&self, report: &mut CycleReport) {
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
    pub(super) fn drop_secret(&self, name: &SecretName, report: &mut CycleReport) {
        self.core.cache().remove(name);
        lock(&self.checks).remove(name);
        report.forget_inodes.extend(self.core.inodes_of(name));
        report.forget_name(name);
    }

    /// Sends the cycle's invalidations. Writing to /dev/fuse can wait on
    /// kernel locks held by requests in flight, so it runs off the async
    /// workers.
    pub(super) async fn flush_kernel(&self, report: &CycleReport) {
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

    pub(super) fn evict_idle(&self, report: &mut CycleReport) {
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
    pub(super) fn expire_stale(&self, report: &mut CycleReport) {
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

    pub(super) fn update_listing(&self, listing: Vec<SecretSummary>, report: &mut CycleReport) {
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
