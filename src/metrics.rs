//! Metric names in one place, their Prometheus rendering, and the
//! `/metrics`, `/healthz` and `/readyz` endpoints.
//!
//! Labels carry the mountpoint and the vault host; secret names appear only in
//! `akvfs_secret_lookups_total` and `akvfs_secret_expiry_timestamp_seconds`,
//! and only when asked for. No label or value
//! ever carries secret bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::cache::SecretCache;
use crate::vault::VaultError;

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// The status label of an upstream call.
pub fn status_label(r: &Result<(), &VaultError>) -> &'static str {
    match r {
        Ok(()) => "200",
        Err(VaultError::NotFound) => "404",
        Err(VaultError::Disabled) | Err(VaultError::Forbidden { .. }) => "403",
        Err(VaultError::Auth(_)) | Err(VaultError::IdentityRejected(_)) => "401",
        Err(VaultError::Throttled { .. }) => "429",
        Err(VaultError::Timeout(_)) => "timeout",
        Err(VaultError::Unavailable(_)) => "unavailable",
        Err(VaultError::BadResponse(_)) => "bad_response",
    }
}

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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            cache: Mutex::new(None),
            down_reason: Mutex::new("not mounted".into()),
            probing: Arc::new(AtomicBool::new(false)),
            lists: AtomicBool::new(false),
            list_state: AtomicU8::new(0),
        })
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
                .or_default()
                .observe(t.as_secs_f64());
        }
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

/// All mounts of the process.
#[derive(Default)]
pub struct Registry {
    mounts: Mutex<Vec<Arc<MountMetrics>>>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Registry {
    pub fn add(&self, m: Arc<MountMetrics>) {
        lock(&self.mounts).push(m);
    }

    pub fn remove(&self, mountpoint: &str) {
        lock(&self.mounts).retain(|m| m.mountpoint != mountpoint);
    }

    pub fn mounts(&self) -> Vec<Arc<MountMetrics>> {
        lock(&self.mounts).clone()
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
                let dead = crate::mounts::is_dead(&path);
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

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mounts = self.mounts();
        let mut out = String::new();
        let base = |m: &MountMetrics| {
            format!(
                "mountpoint=\"{}\",vault=\"{}\"",
                esc(&m.mountpoint),
                esc(&m.vault)
            )
        };
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let simple = |f: &dyn Fn(&MountMetrics) -> String| -> Vec<(String, String)> {
            mounts.iter().map(|m| (base(m), f(m))).collect()
        };
        family(
            "akvfs_mount_up",
            "gauge",
            "1 while the mount is serving.",
            simple(&|m| (m.up.load(Ordering::Relaxed) as u8).to_string()),
        );
        family(
            "akvfs_lookups_total",
            "counter",
            "Name lookups that reached the daemon.",
            simple(&|m| m.lookups.load(Ordering::Relaxed).to_string()),
        );
        family(
            "akvfs_reads_total",
            "counter",
            "Reads that reached the daemon; reads served from the kernel page cache are not seen.",
            simple(&|m| m.reads.load(Ordering::Relaxed).to_string()),
        );
        family(
            "akvfs_read_bytes_total",
            "counter",
            "Bytes returned by reads that reached the daemon.",
            simple(&|m| m.read_bytes.load(Ordering::Relaxed).to_string()),
        );
        let cache_stat = |m: &MountMetrics, f: &dyn Fn(&SecretCache) -> u64| {
            lock(&m.cache)
                .as_ref()
                .map(|c| f(c))
                .unwrap_or(0)
                .to_string()
        };
        family(
            "akvfs_cache_hits_total",
            "counter",
            "Lookups and reads answered from the value cache.",
            simple(&|m| cache_stat(m, &|c| c.stats.hits.load(Ordering::Relaxed))),
        );
        family(
            "akvfs_cache_misses_total",
            "counter",
            "Lookups and reads that had to fetch from the vault.",
            simple(&|m| cache_stat(m, &|c| c.stats.misses.load(Ordering::Relaxed))),
        );
        family(
            "akvfs_cache_evictions_total",
            "counter",
            "Values evicted to stay within the cache budget.",
            simple(&|m| cache_stat(m, &|c| c.stats.evictions.load(Ordering::Relaxed))),
        );
        family(
            "akvfs_cache_bytes",
            "gauge",
            "Bytes charged against the cache budget.",
            simple(&|m| cache_stat(m, &|c| c.bytes())),
        );
        family(
            "akvfs_cache_entries",
            "gauge",
            "Cached secret versions.",
            simple(&|m| cache_stat(m, &|c| c.len() as u64)),
        );
        family(
            "akvfs_cache_negative_entries",
            "gauge",
            "Remembered refusals (not found, forbidden); bounded.",
            simple(&|m| cache_stat(m, &|c| c.negative_len() as u64)),
        );
        family(
            "akvfs_lookups_refused_total",
            "counter",
            "Lookups of names missing from the listing answered without asking the vault because the cold-lookup budget was spent.",
            simple(&|m| cache_stat(m, &|c| c.stats.lookups_refused.load(Ordering::Relaxed))),
        );
        let expiries = |m: &MountMetrics| -> Vec<(String, i64)> {
            lock(&m.cache)
                .as_ref()
                .map(|c| {
                    c.latest_entries()
                        .iter()
                        .filter_map(|e| e.props.expires.map(|t| (e.props.name.to_string(), t)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut rows = Vec::new();
        let mut named_rows = Vec::new();
        for m in &mounts {
            let mut ex = expiries(m);
            if let Some(min) = ex.iter().map(|(_, t)| *t).min() {
                rows.push((base(m), min.to_string()));
            }
            if m.secret_names {
                ex.sort();
                for (name, t) in ex {
                    named_rows.push((
                        format!("{},secret=\"{}\"", base(m), esc(&name)),
                        t.to_string(),
                    ));
                }
            }
        }
        family(
            "akvfs_secret_earliest_expiry_timestamp_seconds",
            "gauge",
            "Earliest expiry (exp, Unix seconds) among cached secrets that have one; absent when none has.",
            rows,
        );
        if !named_rows.is_empty() {
            family(
                "akvfs_secret_expiry_timestamp_seconds",
                "gauge",
                "Expiry (exp, Unix seconds) of each cached secret that has one (only with metrics_secret_names).",
                named_rows,
            );
        }
        family("akvfs_stale_reads_total", "counter", "Lookups and reads served from a value the vault has not confirmed recently (vault unreachable or throttling).", simple(&|m| m.stale_reads.load(Ordering::Relaxed).to_string()));
        family(
            "akvfs_token_refreshes_total",
            "counter",
            "Access tokens obtained.",
            simple(&|m| m.token_refreshes.load(Ordering::Relaxed).to_string()),
        );
        family(
            "akvfs_refresh_lag_seconds",
            "gauge",
            "Seconds since the refresher last completed a check against the vault.",
            simple(&|m| format!("{:.3}", m.refresh_lag())),
        );
        let mut rows = Vec::new();
        for m in &mounts {
            for (result, n) in lock(&m.refresh_cycles).iter() {
                rows.push((format!("{},result=\"{result}\"", base(m)), n.to_string()));
            }
        }
        family(
            "akvfs_refresh_cycles_total",
            "counter",
            "Refresh cycles by result.",
            rows,
        );
        let mut rows = Vec::new();
        for m in &mounts {
            for ((op, status), n) in lock(&m.upstream).iter() {
                rows.push((
                    format!("{},operation=\"{op}\",status=\"{status}\"", base(m)),
                    n.to_string(),
                ));
            }
        }
        family(
            "akvfs_upstream_requests_total",
            "counter",
            "Calls to Key Vault by operation (get, list page) and outcome.",
            rows,
        );
        let mut rows = Vec::new();
        for m in &mounts {
            for (op, h) in lock(&m.latency).iter() {
                let l = format!("{},operation=\"{op}\"", base(m));
                for (i, b) in BUCKETS.iter().enumerate() {
                    rows.push((format!("{l},le=\"{b}\""), h.counts[i].to_string()));
                }
                rows.push((format!("{l},le=\"+Inf\""), h.count.to_string()));
            }
        }
        // Histogram series carry _bucket/_sum/_count suffixes.
        let _ = writeln!(
            out,
            "# HELP akvfs_upstream_request_duration_seconds Latency of calls to Key Vault."
        );
        let _ = writeln!(
            out,
            "# TYPE akvfs_upstream_request_duration_seconds histogram"
        );
        for (labels, v) in rows {
            let _ = writeln!(
                out,
                "akvfs_upstream_request_duration_seconds_bucket{{{labels}}} {v}"
            );
        }
        for m in &mounts {
            for (op, h) in lock(&m.latency).iter() {
                let l = format!("{},operation=\"{op}\"", base(m));
                let _ = writeln!(
                    out,
                    "akvfs_upstream_request_duration_seconds_sum{{{l}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "akvfs_upstream_request_duration_seconds_count{{{l}}} {}",
                    h.count
                );
            }
        }
        let named: Vec<(String, String)> = mounts
            .iter()
            .flat_map(|m| {
                lock(&m.secret_lookups)
                    .iter()
                    .map(|(s, n)| (format!("{},secret=\"{}\"", base(m), esc(s)), n.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if !named.is_empty() {
            let _ = writeln!(out, "# HELP akvfs_secret_lookups_total Lookups by secret name (only with metrics_secret_names).");
            let _ = writeln!(out, "# TYPE akvfs_secret_lookups_total counter");
            for (labels, v) in named {
                let _ = writeln!(out, "akvfs_secret_lookups_total{{{labels}}} {v}");
            }
        }
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `stop` turns true.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                accepted = listener.accept() => {
                    let Ok((conn, _)) = accepted else { continue };
                    let registry = Arc::clone(&registry);
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(10), answer(conn, &registry)).await;
                    });
                }
            }
        }
    });
    Ok(())
}

async fn answer(mut conn: tokio::net::TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", registry.render()),
        ("GET", "/healthz") => match registry.liveness(Duration::from_secs(2)).await {
            (true, why) => ("200 OK", "text/plain", format!("{why}\n")),
            (false, why) => ("503 Service Unavailable", "text/plain", format!("{why}\n")),
        },
        ("GET", "/readyz") => match registry.readiness() {
            (true, why) => ("200 OK", "text/plain", format!("{why}\n")),
            (false, why) => ("503 Service Unavailable", "text/plain", format!("{why}\n")),
        },
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}
