//! Keys in the refresh cycle. A key list shows neither a rotation's effect
//! on a name in use nor a lost `keys/get`, so every key the kernel may be
//! served (fetched and used within the idle timeout, or with a live inode)
//! is re-read with one GET per cycle, within the budget. A new version
//! makes the kernel drop `.keys/<name>.pem|.jwk` (an open descriptor keeps
//! its version); a key deleted, disabled or no longer readable fails closed
//! at once, open descriptors included; a key the vault has not confirmed
//! for `max_stale` (an outage) fails closed too.

use super::*;

impl Refresher {
    /// Re-reads the keys in use, one GET each, within the budget. The
    /// first transient failure ends the checks of this cycle.
    pub(super) async fn check_keys(&self, report: &mut CycleReport) {
        let tracked = self.core.tracked_keys(self.cfg.idle_timeout);
        {
            let now = Instant::now();
            let mut checks = lock(&self.key_checks);
            checks.retain(|n, _| tracked.contains_key(n));
            for name in tracked.keys() {
                checks.entry(name.clone()).or_insert(now);
            }
        }
        let mut failing = false;
        for (name, versions) in tracked {
            if failing || !self.budget.try_take() {
                report.deferred += 1;
                continue;
            }
            report.gets += 1;
            match self.core.refresh_key(&name).await {
                Ok(version) => {
                    lock(&self.key_checks).insert(name.clone(), Instant::now());
                    if !versions.contains(&version) {
                        report.forget_name(&name);
                        report.changed.push(format!(".keys/{name}"));
                    }
                }
                Err(e) if e.is_revocation() => self.revoke_key(&name, e, report),
                Err(e) => {
                    report.error = report
                        .error
                        .take()
                        .or_else(|| Some(format!("refreshing key {name}: {e}")));
                    report.retry_after = report.retry_after.or(e.retry_after());
                    failing = true;
                }
            }
        }
        let stale: Vec<SecretName> = lock(&self.key_checks)
            .iter()
            .filter(|(_, at)| at.elapsed() >= self.cfg.max_stale)
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            let why = VaultError::Unavailable(
                "not confirmed by the vault for longer than max_stale".into(),
            );
            self.revoke_key(&name, why, report);
        }
    }

    /// Every key in use fails closed (the identity itself was refused).
    pub(super) fn revoke_all_keys(&self, why: &VaultError, report: &mut CycleReport) {
        for name in self.core.tracked_keys(self.cfg.idle_timeout).into_keys() {
            self.revoke_key(&name, why.clone(), report);
        }
    }

    fn revoke_key(&self, name: &SecretName, why: VaultError, report: &mut CycleReport) {
        tracing::warn!(key = %name, vault = %self.core.cache().vault().url(), "{why}; removing the key");
        report
            .forget_inodes
            .extend(self.core.revoke_key(name, &why));
        report.forget_name(name);
        lock(&self.key_checks).remove(name);
        report.revoked.push(format!(".keys/{name}"));
    }
}
