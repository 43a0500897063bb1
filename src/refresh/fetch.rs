//! The upstream calls of a cycle: listing within the budget, refetching
//! what changed, and the GETs that prove a cached secret is still readable.

use super::*;

impl Refresher {
    /// Re-reads, with one GET each, the tracked secrets whose readability
    /// has not been proven for their drawn share of `max_unverified`, most
    /// overdue first, within the budget. A 403 (or 404, or disabled) revokes
    /// the secret; a new version is picked up like a rotation. The first
    /// transient failure ends the checks of this cycle.
    pub(super) async fn recheck_due(&self, report: &mut CycleReport) {
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
    pub(super) async fn recheck_evicted(
        &self,
        name: &SecretName,
        report: &mut CycleReport,
    ) -> bool {
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

    pub(super) fn checked(&self, name: &SecretName) {
        lock(&self.checks).insert(
            name.clone(),
            Check::new(Instant::now(), self.cfg.max_unverified),
        );
    }

    /// Logs once per version a secret that is served although its `exp` has
    /// passed or its `nbf` has not come: Key Vault itself still returns such
    /// secrets, and akvfs serves what the vault serves.
    pub(super) fn warn_validity(&self) {
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
    pub(super) async fn list(
        &self,
        report: &mut CycleReport,
    ) -> Result<Vec<SecretSummary>, VaultError> {
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
    pub(super) async fn refetch(
        &self,
        entry: &Arc<CachedSecret>,
        report: &mut CycleReport,
    ) -> bool {
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
}
