//! A node's side of change notices.
//!
//! On each notice the node compares every secret it tracks with the notice:
//! a newer `updated`, a disable, or a name gone from the listing schedules
//! ONE GET of that secret at the node's own delay inside the window `W`
//! ([`super::window`]). A notice that does not advance what the node has is
//! ignored, and each (secret, version time) is fetched at most once. The GET
//! goes through the refresher ([`Refresher::verify_now`]), within its budget:
//! the vault's answer, not the notice, decides what is served.
//!
//! While notices are live (a notice for this vault with a fresh heartbeat),
//! the mount lists the vault only every `live_poll`. When the source is
//! down, the object is missing or invalid, or the heartbeat is older than
//! [`super::STALE_AFTER`], the mount goes back to its own interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::window::{delay_ms_for, window_secs};
use super::{Notice, NoticeSource, SecretMeta, SourceEvent, STALE_AFTER};
use crate::refresh::{Refresher, Verified};
use crate::secret::SecretName;

/// Secrets whose `updated` lies this far before `listedAt` count as changed
/// together when sizing `W` (so a burst of rotations split over two
/// listings is still spread as one).
pub const CHANGE_HORIZON_SECS: i64 = 300;
/// Transient failures of one notice GET before it is left to polling.
const MAX_ATTEMPTS: u32 = 5;

/// Counters, for logs, the simulation and tests.
#[derive(Debug, Default)]
pub struct NoticeStats {
    pub notices: AtomicU64,
    pub scheduled: AtomicU64,
    pub ignored: AtomicU64,
    pub gets: AtomicU64,
    pub changed: AtomicU64,
    pub revoked: AtomicU64,
    pub throttled: AtomicU64,
    pub failed: AtomicU64,
    /// 1 while notices are live.
    pub live: AtomicU64,
    /// The window `W` (seconds) of the last notice.
    pub window: AtomicU64,
}

impl NoticeStats {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What a scheduled GET is for: a version time, or `None` for a name gone
/// from the listing.
type Target = Option<i64>;

struct Pending {
    target: Target,
    due: Instant,
    attempts: u32,
}

/// The notice follower of one mount.
pub struct NoticeNode {
    refresher: Arc<Refresher>,
    node: String,
    live_poll: Duration,
    stats: Arc<NoticeStats>,
    live: bool,
    /// When the current notice's heartbeat turns stale.
    stale_at: Option<Instant>,
    /// The previous notice's secrets, to tell what a notice changed.
    last: Option<BTreeMap<SecretName, SecretMeta>>,
    /// Changes whose window is still open, until when: a change that arrives
    /// while earlier ones are still being fetched widens the window for both.
    open: HashMap<SecretName, Instant>,
    pending: HashMap<SecretName, Pending>,
    /// The last target fetched per name: never fetched twice.
    done: HashMap<SecretName, Target>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl NoticeNode {
    pub fn new(refresher: Arc<Refresher>, node: String, live_poll: Duration) -> NoticeNode {
        NoticeNode {
            refresher,
            node,
            live_poll,
            stats: Arc::default(),
            live: false,
            stale_at: None,
            last: None,
            open: HashMap::new(),
            pending: HashMap::new(),
            done: HashMap::new(),
        }
    }

    pub fn stats(&self) -> Arc<NoticeStats> {
        Arc::clone(&self.stats)
    }

    /// Follows `source` until `stop` turns true.
    pub async fn run(mut self, mut source: Box<dyn NoticeSource>, mut stop: watch::Receiver<bool>) {
        loop {
            let next_due = self.pending.values().map(|p| p.due).min();
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                ev = source.next() => self.on_event(ev, unix_now()),
                _ = tokio::time::sleep_until(next_due.unwrap_or(far)), if next_due.is_some() => {
                    self.fire_due().await
                }
                _ = tokio::time::sleep_until(self.stale_at.unwrap_or(far)), if self.stale_at.is_some() => {
                    self.stale_at = None;
                    self.set_live(false, "the notice's heartbeat is stale (the watcher may be down)");
                }
                _ = stop.changed() => {
                    if *stop.borrow() {
                        self.refresher.set_live_poll(None);
                        return;
                    }
                }
            }
        }
    }

    fn set_live(&mut self, live: bool, why: &str) {
        if self.live == live {
            return;
        }
        self.live = live;
        self.stats.live.store(live as u64, Ordering::Relaxed);
        let vault = self.refresher.vault_url();
        if live {
            tracing::info!(vault = %vault, poll = ?self.live_poll, "change notices are live; listing the vault less often");
            self.refresher.set_live_poll(Some(self.live_poll));
        } else {
            tracing::warn!(vault = %vault, "{why}; polling the vault every {:?} again", self.refresher.interval());
            self.refresher.set_live_poll(None);
        }
    }

    /// Handles one event from the source; `now_unix` is this node's clock.
    pub fn on_event(&mut self, ev: SourceEvent, now_unix: i64) {
        match ev {
            SourceEvent::Notice(n) => self.on_notice(&n, now_unix),
            SourceEvent::Invalid(why) => {
                self.set_live(false, &format!("the change notice is unusable: {why}"))
            }
            SourceEvent::Missing => self.set_live(false, "the change notice object does not exist"),
            SourceEvent::Down(why) => {
                self.set_live(false, &format!("the change notice watch is down: {why}"))
            }
        }
    }

    fn on_notice(&mut self, n: &Notice, now_unix: i64) {
        bump(&self.stats.notices);
        let ours = self.refresher.vault_url().trim_end_matches('/');
        if n.vault != ours {
            self.set_live(
                false,
                &format!("the change notice is for {}, not {ours}", n.vault),
            );
            return;
        }
        let age = Duration::from_secs(now_unix.saturating_sub(n.heartbeat).max(0) as u64);
        if age >= STALE_AFTER {
            self.stale_at = None;
            self.set_live(
                false,
                "the notice's heartbeat is stale (the watcher may be down)",
            );
        } else {
            self.stale_at = Some(Instant::now() + (STALE_AFTER - age));
            self.set_live(true, "");
        }
        let window = self.window_for(n);
        let tracked = self.refresher.tracked_updated();
        self.done.retain(|name, _| tracked.contains_key(name));
        self.pending.retain(|name, _| tracked.contains_key(name));
        let now = Instant::now();
        for (name, have) in tracked {
            let target: Target = match n.secrets.get(&name) {
                None => None,
                Some(meta) => {
                    if self.done.get(&name) == Some(&None) {
                        // Listed again: a later disappearance is news.
                        self.done.remove(&name);
                    }
                    let advances = have.is_none_or(|h| meta.updated > h);
                    if meta.enabled && !advances {
                        continue;
                    }
                    Some(meta.updated)
                }
            };
            if self.done.get(&name) == Some(&target)
                || self
                    .pending
                    .get(&name)
                    .is_some_and(|p| p.target >= target && p.target.is_some() == target.is_some())
            {
                bump(&self.stats.ignored);
                continue;
            }
            let key = target.unwrap_or(n.listed_at);
            let delay = Duration::from_millis(delay_ms_for(&self.node, name.as_str(), key, window));
            bump(&self.stats.scheduled);
            self.pending.insert(
                name,
                Pending {
                    target,
                    due: now + delay,
                    attempts: 0,
                },
            );
        }
    }

    /// Makes the GETs that are due, one at a time.
    pub async fn fire_due(&mut self) {
        let now = Instant::now();
        let mut due: Vec<(Instant, SecretName)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(n, p)| (p.due, n.clone()))
            .collect();
        due.sort();
        for (_, name) in due {
            let Some(p) = self.pending.remove(&name) else {
                continue;
            };
            let outcome = self.refresher.verify_now(&name).await;
            match outcome {
                Verified::NotTracked => {}
                Verified::Unchanged | Verified::Changed | Verified::Revoked => {
                    bump(&self.stats.gets);
                    if outcome == Verified::Changed {
                        bump(&self.stats.changed);
                    } else if outcome == Verified::Revoked {
                        bump(&self.stats.revoked);
                    }
                    self.done.insert(name, p.target);
                }
                Verified::NoBudget(wait) => {
                    self.pending.insert(
                        name,
                        Pending {
                            due: Instant::now() + wait,
                            ..p
                        },
                    );
                }
                Verified::Failed { error, retry_after } => {
                    bump(&self.stats.gets);
                    self.retry(name, p, &error, retry_after);
                    if retry_after.is_some() {
                        // The vault asked every caller to wait: no more now.
                        return;
                    }
                }
            }
        }
    }

    fn retry(&mut self, name: SecretName, p: Pending, error: &str, retry_after: Option<Duration>) {
        let vault = self.refresher.vault_url().to_string();
        if p.attempts + 1 >= MAX_ATTEMPTS {
            bump(&self.stats.failed);
            tracing::warn!(vault = %vault, secret = %name, "{error}; leaving this change to the regular refresh");
            return;
        }
        let wait = match retry_after {
            Some(ra) => {
                bump(&self.stats.throttled);
                let ra = crate::vault::clamp_server_delay(ra);
                // Everything pending waits at least as long: Retry-After
                // speaks for the vault, not for one secret.
                let until = Instant::now() + ra;
                for other in self.pending.values_mut() {
                    other.due = other.due.max(until);
                }
                ra + Duration::from_millis(fastrand::u64(0..1000))
            }
            None => {
                Duration::from_secs(1u64 << p.attempts.min(6))
                    + Duration::from_millis(fastrand::u64(0..1000))
            }
        };
        tracing::debug!(vault = %vault, secret = %name, "{error}; retrying in {wait:?}");
        self.pending.insert(
            name,
            Pending {
                target: p.target,
                due: Instant::now() + wait,
                attempts: p.attempts + 1,
            },
        );
    }

    /// `W` for a notice: its changes plus those whose window is still open.
    fn window_for(&mut self, n: &Notice) -> u64 {
        let now = Instant::now();
        self.open.retain(|_, until| *until > now);
        let changed: std::collections::HashSet<SecretName> =
            changed_names(n, self.last.as_ref()).into_iter().collect();
        let also_open = self.open.keys().filter(|k| !changed.contains(k)).count();
        let count = u32::try_from(changed.len() + also_open).unwrap_or(u32::MAX);
        let window = window_secs(n.fleet_size, count, n.limit_per_10s);
        // A first notice's changes are a guess from version times: they
        // size its own window but do not hold later ones open.
        if self.last.is_some() {
            for c in changed {
                self.open.insert(c, now + Duration::from_secs(window));
            }
        }
        self.last = Some(n.secrets.clone());
        self.stats.window.store(window, Ordering::Relaxed);
        window
    }

    /// GETs scheduled and not yet made.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn is_live(&self) -> bool {
        self.live
    }
}

/// What a notice changed: against the previous notice, every secret whose
/// metadata differs and every name gone; for a node's first notice (nothing
/// to compare with), the secrets whose `updated` lies within
/// [`CHANGE_HORIZON_SECS`] before `listedAt`.
pub fn changed_names(
    n: &Notice,
    previous: Option<&BTreeMap<SecretName, SecretMeta>>,
) -> Vec<SecretName> {
    match previous {
        None => n
            .secrets
            .iter()
            .filter(|(_, m)| m.updated > n.listed_at.saturating_sub(CHANGE_HORIZON_SECS))
            .map(|(k, _)| k.clone())
            .collect(),
        Some(p) => n
            .secrets
            .iter()
            .filter(|(k, m)| p.get(*k) != Some(*m))
            .map(|(k, _)| k.clone())
            .chain(p.keys().filter(|k| !n.secrets.contains_key(*k)).cloned())
            .collect(),
    }
}
