//! What is measured per mount, and the health and readiness verdicts built from it.
//!
//! Labels carry the mountpoint and the vault host; secret names appear only in
//! `akvfs_secret_lookups_total` and `akvfs_secret_expiry_timestamp_seconds`,
//! and only when asked for. No label or value ever carries secret bytes.
//! `exposition` renders the metrics with `prometheus-client`; `http` serves
//! them with hyper.

mod exposition;
mod http;

pub use http::{serve, MetricsError};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;

use crate::cache::SecretCache;
use crate::sync::lock;
use crate::vault::metered::CallRecorder;

/// Upper bounds (seconds) of the upstream latency histogram's buckets.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Everything measured for one mount.
pub struct MountMetrics {
    pub mountpoint: String,
    pub vault: String,
    pub lookups: AtomicU64,
    pub reads: AtomicU64,
    pub read_bytes: AtomicU64,
    pub stale_reads: AtomicU64,
    pub token_refreshes: AtomicU64,
    /// A token has been obtained at least once.
    pub token_ok: AtomicBool,
    pub up: AtomicBool,
    /// Reads of a value not confirmed for longer than this count as stale.
    pub stale_after: Duration,
    secret_names: bool,
    started: Instant,
    refresh_ok_at: Mutex<Option<Instant>>,
    refresh_cycles: Mutex<BTreeMap<&'static str, u64>>,
    upstream: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    secret_lookups: Mutex<BTreeMap<String, u64>>,
    /// notAfter (Unix seconds) of each certificate read, by name.
    cert_expiry: Mutex<BTreeMap<String, i64>>,
    cache: Mutex<Option<Arc<SecretCache>>>,
    /// Why the mount is not serving, for /readyz.
    down_reason: Mutex<String>,
    /// A /healthz check of the mountpoint has not returned yet.
    probing: Arc<AtomicBool>,
    /// The mount started with a listing (its identity may list, unlike a
    /// get-only access policy), so a refused listing means it lost access.
    pub lists: AtomicBool,
    /// The last listing's answer: 0 none yet, 1 ok, 2 refused (403).
    list_state: AtomicU8,
    /// The mount's other vaults (read by its views), each measured on its
    /// own: exposed with the mount, not checked as mounts of their own.
    vaults: Mutex<Vec<Arc<MountMetrics>>>,
}

impl MountMetrics {
    pub fn new(
        mountpoint: &str,
        vault: &str,
        stale_after: Duration,
        secret_names: bool,
    ) -> Arc<MountMetrics> {
        Arc::new(MountMetrics {
            mountpoint: mountpoint.to_string(),
            vault: vault.trim_start_matches("https://").to_string(),
            lookups: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            stale_reads: AtomicU64::new(0),
            token_refreshes: AtomicU64::new(0),
            token_ok: AtomicBool::new(false),
            up: AtomicBool::new(false),
            stale_after,
            secret_names,
            started: Instant::now(),
            refresh_ok_at: Mutex::new(None),
            refresh_cycles: Mutex::new(BTreeMap::new()),
            upstream: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(BTreeMap::new()),
            secret_lookups: Mutex::new(BTreeMap::new()),
            cert_expiry: Mutex::new(BTreeMap::new()),
            cache: Mutex::new(None),
            down_reason: Mutex::new("not mounted".into()),
            probing: Arc::new(AtomicBool::new(false)),
            lists: AtomicBool::new(false),
            list_state: AtomicU8::new(0),
            vaults: Mutex::new(Vec::new()),
        })
    }

    /// Metrics of another vault this mount's views read from: the same
    /// mountpoint label, that vault's label; exposed with this mount's. A
    /// mount started again (a retry) gets the same ones back.
    pub fn add_vault(&self, vault: &str) -> Arc<MountMetrics> {
        let m = MountMetrics::new(&self.mountpoint, vault, self.stale_after, self.secret_names);
        let mut vaults = lock(&self.vaults);
        if let Some(known) = vaults.iter().find(|v| v.vault == m.vault) {
            return Arc::clone(known);
        }
        vaults.push(Arc::clone(&m));
        m
    }

    /// Sets `up` of the mount and of its other vaults.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        for m in lock(&self.vaults).iter() {
            m.up.store(up, Ordering::Relaxed);
        }
    }

    /// Metrics for tests and tools that do not export them.
    pub fn detached() -> Arc<MountMetrics> {
        MountMetrics::new("", "", Duration::from_secs(3600), false)
    }

    /// Attaches the mount's cache; a restarted mount attaches its new one.
    pub fn attach_cache(&self, cache: &Arc<SecretCache>) {
        *lock(&self.cache) = Some(Arc::clone(cache));
    }

    pub fn set_down_reason(&self, why: &str) {
        *lock(&self.down_reason) = why.to_string();
    }

    pub fn upstream(&self, operation: &'static str, status: &'static str, took: Option<Duration>) {
        if operation == "list" {
            match status {
                "200" => self.list_state.store(1, Ordering::Relaxed),
                "403" => self.list_state.store(2, Ordering::Relaxed),
                _ => {}
            }
        }
        *lock(&self.upstream).entry((operation, status)).or_default() += 1;
        if let Some(t) = took {
            lock(&self.latency)
                .entry(operation)
                .or_insert_with(|| Histogram::new(BUCKETS))
                .observe(t.as_secs_f64());
        }
    }

    /// Records the notAfter of the certificate `name` as last read.
    pub fn certificate_expiry(&self, name: &str, not_after: i64) {
        lock(&self.cert_expiry).insert(name.to_string(), not_after);
    }

    /// Certificates read, with their notAfter.
    pub fn certificate_expiries(&self) -> Vec<(String, i64)> {
        lock(&self.cert_expiry)
            .iter()
            .map(|(n, t)| (n.clone(), *t))
            .collect()
    }

    pub fn lookup(&self, name: &str) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if self.secret_names {
            *lock(&self.secret_lookups)
                .entry(name.to_string())
                .or_default() += 1;
        }
    }

    pub fn refresh_cycle(&self, ok: bool) {
        *lock(&self.refresh_cycles)
            .entry(if ok { "ok" } else { "error" })
            .or_default() += 1;
        if ok {
            *lock(&self.refresh_ok_at) = Some(Instant::now());
        }
    }

    /// Seconds since the vault last confirmed the cache (since start if never).
    pub fn refresh_lag(&self) -> f64 {
        lock(&self.refresh_ok_at)
            .unwrap_or(self.started)
            .elapsed()
            .as_secs_f64()
    }
}

impl CallRecorder for MountMetrics {
    fn upstream(&self, operation: &'static str, status: &'static str, took: Option<Duration>) {
        MountMetrics::upstream(self, operation, status, took)
    }
}

/// All mounts of the process, and their exposition.
pub struct Registry {
    mounts: Arc<exposition::Mounts>,
    exposition: prometheus_client::registry::Registry,
}

impl Default for Registry {
    fn default() -> Registry {
        let mounts = Arc::new(exposition::Mounts::default());
        let mut exposition = prometheus_client::registry::Registry::default();
        exposition.register_collector(Box::new(Arc::clone(&mounts)));
        Registry { mounts, exposition }
    }
}

impl Registry {
    pub fn add(&self, m: Arc<MountMetrics>) {
        lock(&self.mounts.0).push(m);
    }

    pub fn remove(&self, mountpoint: &str) {
        lock(&self.mounts.0).retain(|m| m.mountpoint != mountpoint);
    }

    /// The mounts (without the other vaults of their views).
    pub fn mounts(&self) -> Vec<Arc<MountMetrics>> {
        lock(&self.mounts.0).clone()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and the collector's own
        // encoding only fails when its writer does.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.exposition);
        out
    }

    /// The same metrics in the OpenMetrics text format, ending in `# EOF`.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.exposition);
        out
    }

    /// Ready when every mount is serving, has obtained a token, and (if it
    /// could list when it started) was not refused its last listing.
    pub fn readiness(&self) -> (bool, String) {
        let mounts = self.mounts();
        if mounts.is_empty() {
            return (false, "no mounts".into());
        }
        let mut not_ready = Vec::new();
        for m in &mounts {
            if !m.up.load(Ordering::Relaxed) {
                not_ready.push(format!("{}: {}", m.mountpoint, lock(&m.down_reason)));
            } else if !m.token_ok.load(Ordering::Relaxed) {
                not_ready.push(format!("{}: no token yet", m.mountpoint));
            } else if m.lists.load(Ordering::Relaxed) && m.list_state.load(Ordering::Relaxed) == 2 {
                not_ready.push(format!(
                    "{}: the vault refused the last listing (403): the identity lost its permission, or the vault's firewall now refuses this address; the log says which",
                    m.mountpoint
                ));
            }
        }
        if not_ready.is_empty() {
            (true, format!("ready: {} mounts serving", mounts.len()))
        } else {
            (false, not_ready.join("; "))
        }
    }

    /// Alive unless a mount is dead: its directory answers "Transport
    /// endpoint is not connected" (the FUSE session ended but the mount was
    /// not detached), or does not answer within `limit` (the daemon is
    /// stuck). A dead mount keeps serving whatever the kernel has cached and
    /// nothing refreshes or revokes it, so a liveness probe built on this
    /// restarts the process, and the restart detaches the mount.
    pub async fn liveness(&self, limit: Duration) -> (bool, String) {
        let mut dead = Vec::new();
        for m in self.mounts() {
            if m.mountpoint.is_empty() {
                continue;
            }
            if m.probing.swap(true, Ordering::AcqRel) {
                dead.push(format!(
                    "{}: the previous check of the mountpoint has not returned; the daemon is stuck",
                    m.mountpoint
                ));
                continue;
            }
            let path = std::path::PathBuf::from(&m.mountpoint);
            let probing = Arc::clone(&m.probing);
            let check = tokio::task::spawn_blocking(move || {
                let dead = crate::daemon::mounts::is_dead(&path);
                probing.store(false, Ordering::Release);
                dead
            });
            match tokio::time::timeout(limit, check).await {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => dead.push(format!(
                    "{}: dead mount (Transport endpoint is not connected); restart akvfs to detach and mount it again",
                    m.mountpoint
                )),
                Ok(Err(e)) => dead.push(format!("{}: the check failed: {e}", m.mountpoint)),
                Err(_) => dead.push(format!(
                    "{}: the mountpoint did not answer within {} s; the daemon is stuck",
                    m.mountpoint,
                    limit.as_secs()
                )),
            }
        }
        if dead.is_empty() {
            (true, "ok".into())
        } else {
            (false, dead.join("; "))
        }
    }
}
